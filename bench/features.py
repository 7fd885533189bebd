"""Streaming features: µs per update and per vector on the real recording, and each feature's IC.

Usage: ``.venv/bin/python bench/features.py [FILE] [--repeat N]``. Ticks are read once into a
list (parsing is not timed); the update loop is timed against a reference loop that only reads
each tick's ``kind``, in the same run. Samples are taken every 100 ms of event time, as the
learner does; the IC of each feature is its Pearson correlation with the next 1000 ms log
return of the reference price (a quick check of what the features carry, not a model).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tickcast.model.features import StreamingFeatures
from tickcast.service.ticks import Tick, quote, trade

RECORDING = Path(__file__).resolve().parents[2] / "shared/data/binance-usdm-btcusdt-20240808.gz"
SAMPLE_MS = 100
HORIZON_MS = 1000


def load_ticks(path: Path) -> list[Tick]:
    """The recording's ticks, or a synthetic stream when the file or the reader is missing."""
    if path.exists():
        try:
            from tickcast.service.offline.readers import read_ticks
        except ImportError:
            print("tickcast.service.offline.readers is missing")
        else:
            return list(read_ticks([path]))
    print(f"cannot read {path}: using synthetic ticks")
    return synthetic_ticks(np.random.default_rng(0), 100_000)


def synthetic_ticks(rng: np.random.Generator, n: int) -> list[Tick]:
    """A random walk mid with trades at the touch, for when the recording is unavailable."""
    t, mid, out = 1_700_000_000_000, 60_000.0, []
    for _ in range(n):
        t += int(rng.integers(0, 8))
        if rng.random() < 0.25:
            side = 1 if rng.random() < 0.5 else -1
            out.append(trade("sim", "X", t, 0, mid + 0.05 * side, 0.01, side))
        else:
            mid += 0.1 * int(rng.integers(-1, 2))
            out.append(quote("sim", "X", t, 0, mid - 0.05, rng.random(), mid + 0.05, rng.random()))
    return out


def time_updates(ticks: Sequence[Tick], repeat: int) -> tuple[float, float]:
    """Best-of-``repeat`` µs per tick of ``update`` and of a loop that only reads ``kind``."""
    best, reference = float("inf"), float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        n_trades = 0
        for tick in ticks:
            if tick.kind == "trade":
                n_trades += 1
        reference = min(reference, time.perf_counter() - t0)
        features = StreamingFeatures()
        update = features.update
        t0 = time.perf_counter()
        for tick in ticks:
            update(tick)
        best = min(best, time.perf_counter() - t0)
    return best / len(ticks) * 1e6, reference / len(ticks) * 1e6


def sample(ticks: Sequence[Tick]) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Features (n, F) and reference log prices (n,) at each sample time; µs per vector."""
    features = StreamingFeatures()
    xs, refs, times = [], [], []
    due = (ticks[0].event_ms // SAMPLE_MS + 1) * SAMPLE_MS
    spent = 0.0
    for tick in ticks:
        while tick.event_ms >= due:
            t0 = time.perf_counter()
            x = features.vector(due)
            spent += time.perf_counter() - t0
            xs.append(x)
            refs.append(np.log(features.reference_price))
            times.append(due)
            due += SAMPLE_MS
        features.update(tick)
    return np.array(xs), np.array(refs), np.array(times), spent / len(xs) * 1e6


def information_coefficients(x: np.ndarray, log_ref: np.ndarray) -> np.ndarray:
    """Pearson correlation of each column of ``x`` with the next ``HORIZON_MS`` log return."""
    lag = HORIZON_MS // SAMPLE_MS
    y = log_ref[lag:] - log_ref[:-lag]
    x = x[:-lag]
    ok = np.isfinite(y)
    x, y = x[ok], y[ok]
    xc, yc = x - x.mean(axis=0), y - y.mean()
    denom = np.sqrt((xc**2).sum(axis=0) * (yc**2).sum())
    ic: np.ndarray = np.divide(xc.T @ yc, denom, out=np.zeros(x.shape[1]), where=denom > 0)
    return ic


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=Path, default=RECORDING)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    ticks = load_ticks(args.file)
    n_trades = sum(1 for tick in ticks if tick.kind == "trade")
    print(f"{len(ticks):,} ticks ({n_trades:,} trades), {args.repeat} runs")
    per_update, per_read = time_updates(ticks, args.repeat)
    print(
        f"update: {per_update:.3f} µs/tick ({1 / per_update:.2f} M ticks/s); a loop reading only"
        f" tick.kind: {per_read:.3f} µs/tick (ratio {per_update / per_read:.0f}x)"
    )
    x, log_ref, _, per_vector = sample(ticks)
    print(f"vector: {per_vector:.2f} µs/sample over {len(x):,} samples every {SAMPLE_MS} ms")
    assert np.isfinite(x).all(), "non-finite feature values"
    names = StreamingFeatures().names
    ic = information_coefficients(x, log_ref)
    print(f"IC with the next {HORIZON_MS} ms log return, and the spread of each feature:")
    for name, value, column in zip(names, ic, x.T, strict=True):
        print(f"  {name:24s} IC {value:+.3f}   mean {column.mean():+10.3f}  sd {column.std():9.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
