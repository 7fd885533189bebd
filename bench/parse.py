"""Parse cost per frame of every venue, beside ``orjson.loads`` of the same frames.

For each registered live venue, the frames are what a feed of the venue receives from its
simulated dialect for the same synthetic market (trades and best bid/ask of three symbols: the
venue's own topics, layouts, contract sizes and compression); Binance USDⓈ-M is also measured
on the real 2024 recording, by frame type. Each figure is the best of ``--repeat`` runs; the
reference is ``orjson.loads`` of the same frames in the same run (after gunzip for a
compressing venue: decompression is in both), the floor any JSON parser pays. Target: parse
<= 3x the reference for every venue. Then the cost of reading the whole gzipped recording
through :func:`tickcast.service.offline.readers.read_ticks` and of the JSONL tick format.

    .venv/bin/python bench/parse.py [--repeat N] [--seconds S]
"""

from __future__ import annotations

import argparse
import gzip
import time
import zlib
from collections.abc import Callable
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import orjson

from tickcast.service.offline.readers import read_ticks
from tickcast.service.offline.tickjson import decode, encode
from tickcast.service.sim.market import SyntheticMarket
from tickcast.service.sim.symbols import specs_for
from tickcast.service.venues.base import ParseStats
from tickcast.service.venues.binance.usdm import VENUE as USDM
from tickcast.service.venues.registry import VENUES, venue
from tickcast.service.venues.venue import Venue

RECORDING = Path(__file__).resolve().parents[2] / "shared/data/binance-usdm-btcusdt-20240808.gz"
SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT")
TARGET = 3.0

Frames = list[tuple[int, bytes]]


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    """Smallest wall time of ``repeat`` calls of ``fn``, seconds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def each(frames: Frames, fn: Callable[[bytes, int], object]) -> None:
    """Call ``fn(frame, recv_ns)`` on every frame, keeping nothing."""
    for recv_ns, frame in frames:
        fn(frame, recv_ns)


def _loads(frame: bytes, recv_ns: int) -> object:
    return orjson.loads(frame)


def _gunzip_loads(frame: bytes, recv_ns: int) -> object:
    return orjson.loads(zlib.decompress(frame, 31) if frame[:2] == b"\x1f\x8b" else frame)


def rendered(target: Venue, seconds: float) -> Frames:
    """The frames a feed of ``target`` receives from its simulated dialect for ``seconds`` of
    the synthetic market: its connections' topics, framed for their endpoints and encoded."""
    dialect = target.dialect()
    render = dialect.renderer().events
    markets = [target.assumed_market(s) for s in SYMBOLS]
    base = "ws://127.0.0.1:1"
    urls = {route: base + urlsplit(url).path for route, url in target.routes.items()}
    plans = []
    for connection in target.connections(markets, urls):
        endpoint = dialect.endpoint(connection.url.removeprefix(base))
        assert endpoint is not None, connection.url
        topics = set(endpoint.topics)
        for message in connection.subscribe:
            topics.update(dialect.on_message(message, ()).subscribe)
        plans.append((endpoint, topics))
    wanted = set().union(*(topics for _, topics in plans))
    market = SyntheticMarket(specs_for(SYMBOLS), seed=1, oracle_memory_s=None)
    frames: Frames = []
    for tick in market.ticks(seconds):
        for topic, event in render(tick, wanted):
            for endpoint, topics in plans:
                if topic in topics and dialect.served(topic, endpoint):
                    framed = dialect.frame(topic, event, endpoint)
                    frames.append((tick.recv_ns, dialect.encode(framed)))
    return frames


def recording_by_type(path: Path) -> dict[str, Frames]:
    """The real recording's ``(recv_ns, frame)`` pairs grouped by stream type."""
    groups: dict[str, Frames] = {}
    with gzip.open(path, "rb") as fh:
        for line in fh:
            ns, _, frame = line.partition(b" ")
            stream = frame[11:48].split(b'"')[0] if frame.startswith(b'{"stream"') else b"@rest"
            kind = stream.split(b"@")[1]
            groups.setdefault(kind.decode(), []).append((int(ns), frame))
    return groups


def row(name: str, target: Venue, frames: Frames, repeat: int) -> float:
    """Print one venue's figures; return the ratio to the reference."""
    parse = target.parser().parse
    t_parse = best_of(repeat, partial(each, frames, parse))
    t_ref = best_of(repeat, partial(each, frames, _gunzip_loads))
    n, ratio = len(frames), t_parse / t_ref
    flag = "" if ratio <= TARGET else f"  > {TARGET:g}x"
    print(
        f"{name:>28} {n:>7} {t_parse / n * 1e6:>9.2f} {t_ref / n * 1e6:>9.2f} {ratio:>6.2f}{flag}"
    )
    return ratio


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--repeat", type=int, default=5, help="timed runs per figure (best kept)")
    cli.add_argument("--seconds", type=float, default=120.0, help="market seconds per venue")
    args = cli.parse_args()
    print(f"{'venue (frames)':>28} {'n':>7} {'parse µs':>9} {'loads µs':>9} {'ratio':>6}")
    worst = 0.0
    for name in VENUES:
        target = venue(name)
        if target.retired is not None:
            continue
        worst = max(
            worst, row(f"{name} (simulated)", target, rendered(target, args.seconds), args.repeat)
        )
    for kind, frames in recording_by_type(RECORDING).items():
        if kind in ("trade", "bookTicker"):
            worst = max(worst, row(f"binanceusdm real {kind}", USDM, frames, args.repeat))
    print(f"worst ratio {worst:.2f} (target <= {TARGET:g})")
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
