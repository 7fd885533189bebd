"""Parse throughput on the real Binance USDⓈ-M recording: µs per frame, by frame type.

Prints, for each frame type, the parser's cost per frame beside ``orjson.loads`` alone measured
in the same run (the floor any JSON parser pays), then the cost of reading the whole gzipped
file through :func:`tickcast.service.offline.readers.read_ticks` and of the JSONL tick format.

    .venv/bin/python bench/parse.py [--repeat N]
"""

from __future__ import annotations

import argparse
import gzip
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import orjson

from tickcast.service.offline.readers import read_ticks
from tickcast.service.offline.tickjson import decode, encode
from tickcast.service.venues.base import ParseStats
from tickcast.service.venues.binance.usdm import VENUE

RECORDING = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
RECORDING = RECORDING / "binance-usdm-btcusdt-20240808.gz"


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    """Smallest wall time of ``repeat`` calls of ``fn``, seconds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _loads(frame: bytes, recv_ns: int) -> object:
    return orjson.loads(frame)


def each(frames: list[tuple[int, bytes]], fn: Callable[[bytes, int], object]) -> None:
    """Call ``fn(frame, recv_ns)`` on every frame, keeping nothing."""
    for recv_ns, frame in frames:
        fn(frame, recv_ns)


def by_type(path: Path) -> dict[str, list[tuple[int, bytes]]]:
    """The recording's ``(recv_ns, frame)`` pairs grouped by stream type."""
    groups: dict[str, list[tuple[int, bytes]]] = {}
    with gzip.open(path, "rb") as fh:
        for line in fh:
            ns, _, frame = line.partition(b" ")
            stream = frame[11:48].split(b'"')[0] if frame.startswith(b'{"stream"') else b"@rest"
            kind = stream.split(b"@")[1]
            groups.setdefault(kind.decode(), []).append((int(ns), frame))
    groups["all"] = [pair for frames in list(groups.values()) for pair in frames]
    return groups


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--repeat", type=int, default=5, help="timed runs per figure (best kept)")
    args = cli.parse_args()
    groups = by_type(RECORDING)
    print(f"{'frames':>12} {'n':>7} {'parse µs':>9} {'loads µs':>9} {'ratio':>6}")
    for name, frames in groups.items():
        parser = VENUE.parser()
        parse = parser.parse
        t_parse = best_of(args.repeat, partial(each, frames, parse))
        t_loads = best_of(args.repeat, partial(each, frames, _loads))
        n = len(frames)
        print(
            f"{name:>12} {n:>7} {t_parse / n * 1e6:>9.2f} {t_loads / n * 1e6:>9.2f}"
            f" {t_parse / t_loads:>6.2f}"
        )
    stats = ParseStats()
    t_read = best_of(1, lambda: sum(1 for _ in read_ticks([RECORDING], stats=stats)))
    print(f"read_ticks(gz): {stats.total_parsed / t_read:,.0f} ticks/s ({t_read:.2f} s)")
    ticks = list(read_ticks([RECORDING]))
    lines = [encode(t) for t in ticks]
    t_enc = best_of(args.repeat, lambda: [encode(t) for t in ticks])
    t_dec = best_of(args.repeat, lambda: [decode(x) for x in lines])
    n = len(ticks)
    print(f"tickjson: encode {t_enc / n * 1e6:.2f} µs/tick, decode {t_dec / n * 1e6:.2f} µs/tick")


if __name__ == "__main__":
    main()
