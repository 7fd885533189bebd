"""Benchmark the synthetic market: ticks generated per second, and the oracle's cost.

Prints, for each default symbol simulated alone and for all of them merged, the ticks generated
per CPU second (the machine may be shared; CPU time is steadier than wall time) and per wall
second, against a reference measured in the same run (building the same number of ``Tick``
tuples in a plain loop, the floor any generator pays), plus the oracle's cost per call.
Usage: ``.venv/bin/python bench/market.py [SECONDS]`` (market seconds, default 600).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from tickcast.service.sim.market import DEFAULT_SYMBOLS, SymbolSpec, SyntheticMarket
from tickcast.service.ticks import quote


def _generate(
    symbols: tuple[SymbolSpec, ...], seconds: float
) -> tuple[SyntheticMarket, int, float, float]:
    """The market, its tick count, and the CPU and wall seconds it took to generate them."""
    market = SyntheticMarket(symbols, seed=0)
    cpu, wall = time.process_time(), time.perf_counter()
    n = sum(1 for _ in market.ticks(seconds))
    return market, n, time.process_time() - cpu, time.perf_counter() - wall


def _reference(n: int) -> float:
    """CPU seconds to build ``n`` quote ticks in a plain loop."""
    start = time.process_time()
    for i in range(n):
        quote("sim", "BTC/USDT:USDT", i, i, 1.0, 1.0, 1.1, 1.0, i)
    return time.process_time() - start


def main(seconds: float) -> None:
    print(f"synthetic market, {seconds:g} market seconds, seed 0")
    print(
        f"{'symbols':<26} {'ticks':>7} {'ticks/CPU s':>12} {'ticks/wall s':>13} {'vs Tick()':>10}"
    )
    for symbols in [(s,) for s in DEFAULT_SYMBOLS] + [DEFAULT_SYMBOLS]:
        _, n, cpu, wall = _generate(symbols, seconds)
        ratio = _reference(n) / cpu
        name = ", ".join(s.symbol for s in symbols)
        print(f"{name:<26} {n:>7} {n / cpu:>12,.0f} {n / wall:>13,.0f} {ratio:>9.2f}x")
    market = _generate(DEFAULT_SYMBOLS, seconds)[0]
    symbol = DEFAULT_SYMBOLS[0].symbol
    t = np.arange(market.start_ms + 1000, market.start_ms + 1000 * seconds - 1000, 100)
    market.oracle.expected_return(symbol, int(t[0]), 1000)  # builds the horizon's table
    start = time.perf_counter()
    for ti in t.tolist():
        market.oracle.expected_return(symbol, ti, 1000)
    scalar = (time.perf_counter() - start) / len(t)
    start = time.perf_counter()
    market.oracle.expected_returns(symbol, t, 1000)
    vector = (time.perf_counter() - start) / len(t)
    print(f"oracle: {scalar * 1e6:.2f} us per expected_return, {vector * 1e6:.3f} us per sample")
    print(f"        when vectorised over {len(t)} samples (expected_returns)")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 600.0)
