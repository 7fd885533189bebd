"""The worker's read lane on one Redis vs a Redis Cluster: wake-up latency and CPU, one run.

On one Redis the worker waits in one ``XREAD BLOCK`` over every stream and wakes as soon as a
tick lands; on a cluster it reads each stream with its own ``XREAD`` (pipelined per master) and
pauses between rounds that find nothing (:mod:`tickcast.service.live.workerlane`). This bench
starts, on loopback TCP both, an embedded redis-server and a local 3-master, 3-replica cluster
(``tests/cluster/localcluster.py``) and, for each, writes ticks at a steady rate (one tick per
write, round-robin over the symbols, :class:`~tickcast.service.bus.writer.TickWriter`) while a
worker's lane reads them in the same process. It prints, per rate and symbol count:

- latency: tick written (its receive time, taken just before the XADD) -> entry returned by
  the worker's lane, p50 / p99 (µs);
- reads/s: XREAD rounds of the lane;
- CPU: this process's CPU time (writer + lane) per second of wall time, and the cluster's ratio.

Usage: ``.venv/bin/python bench/lanes.py [--seconds 5] [--rates 20,1000]
[--symbols 10,100]``. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "cluster"))

from tickcast.service.bus import codec
from tickcast.service.bus.connection import connect
from tickcast.service.bus.embedded import EmbeddedRedis
from tickcast.service.bus.writer import TickWriter
from tickcast.service.live.worker import Worker
from tickcast.service.ops.config import load_settings
from tickcast.service.ticks import trade

from localcluster import LocalCluster


def symbols_of(n: int) -> list[str]:
    return [f"S{i:04d}/USDT:USDT" for i in range(n)]


async def measure(url: str, n_symbols: int, rate: float, seconds: float) -> dict[str, float]:
    """Write ``rate`` ticks/s over ``n_symbols`` symbols for ``seconds``, read them with a
    worker's lane; latency percentiles (µs), reads/s and CPU share."""
    symbols = symbols_of(n_symbols)
    settings = load_settings(None, {"redis.url": url, "exchange.symbols": symbols})
    reader, writer_client = connect(url, settings), connect(url, settings)
    worker = Worker(reader, settings)
    await worker.restore()
    io, states = worker.io, list(worker.states.values())
    writer = TickWriter(writer_client, settings)
    latencies: list[int] = []
    done = asyncio.Event()

    async def produce() -> None:
        i = 0
        period = 1.0 / rate
        next_at = time.monotonic()
        while not done.is_set():
            now_ns = time.time_ns()
            tick = trade("sim", symbols[i % n_symbols], now_ns // 1_000_000, now_ns, 100.0,
                         1.0, 1, str(i))  # fmt: skip
            await writer.write([tick])
            i += 1
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def consume(until: float) -> None:
        by_key = worker.book.by_key
        while time.monotonic() < until:
            pairs = await io.read(200, states, lambda: False, lambda: None)
            now_ns = time.time_ns()
            for key, entries in pairs:
                for _, fields in entries:
                    latencies.append(now_ns - codec.decode_flat(fields).recv_ns)
                by_key[key].last_id = entries[-1][0].decode()

    try:
        producer = asyncio.create_task(produce())
        await consume(time.monotonic() + 1.0)  # warm-up: connections, first reads
        latencies.clear()
        reads0, cpu0, wall0 = io.reads, time.process_time(), time.monotonic()
        await consume(wall0 + seconds)
        wall = time.monotonic() - wall0
        cpu, reads = time.process_time() - cpu0, io.reads - reads0
        done.set()
        await producer
    finally:
        await reader.aclose()
        await writer_client.aclose()
    lat = np.asarray(latencies, dtype=float) / 1000.0
    return {
        "p50_us": float(np.percentile(lat, 50)) if lat.size else float("nan"),
        "p99_us": float(np.percentile(lat, 99)) if lat.size else float("nan"),
        "reads_per_s": reads / wall,
        "cpu": cpu / wall,
        "ticks": float(lat.size),
    }


def flush(url: str) -> None:
    client = redis.Redis.from_url(url)
    client.flushall()
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window, s")
    parser.add_argument("--rates", default="20,1000", help="ticks/s written, comma-separated")
    parser.add_argument("--symbols", default="10,100", help="symbol counts, comma-separated")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    counts = [int(n) for n in args.symbols.split(",")]
    rows: list[tuple[int, float, dict[str, Any], dict[str, Any]]] = []
    with (
        tempfile.TemporaryDirectory(prefix="tickcast-lanes-") as tmp,
        EmbeddedRedis(Path(tmp) / "one", discovery=False, unix_socket=False) as one,
        LocalCluster(Path(tmp) / "cluster") as cluster,
    ):
        for n in counts:
            for rate in rates:
                flush(one.url)
                cluster.flushall()
                single = asyncio.run(measure(one.url, n, rate, args.seconds))
                multi = asyncio.run(measure(cluster.url, n, rate, args.seconds))
                rows.append((n, rate, single, multi))
    print(
        "worker read lane: one redis-server vs a 3+3 Redis Cluster, loopback TCP, "
        f"{args.seconds:.0f} s per row; latency = tick written -> returned by the lane"
    )
    print(
        f"{'symbols':>7} {'ticks/s':>7} | {'one p50':>8} {'p99':>8} {'reads/s':>8} {'cpu %':>6}"
        f" | {'cluster p50':>11} {'p99':>8} {'reads/s':>8} {'cpu %':>6} | {'cpu x':>5}"
    )
    for n, rate, a, b in rows:
        print(
            f"{n:>7} {rate:>7.0f} | {a['p50_us']:>8.0f} {a['p99_us']:>8.0f} "
            f"{a['reads_per_s']:>8.0f} {100 * a['cpu']:>6.1f} | {b['p50_us']:>11.0f} "
            f"{b['p99_us']:>8.0f} {b['reads_per_s']:>8.0f} {100 * b['cpu']:>6.1f} | "
            f"{b['cpu'] / a['cpu']:>5.2f}"
        )


if __name__ == "__main__":
    main()
