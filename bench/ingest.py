"""Ingest throughput: simulated exchange -> feed -> parser -> ingester -> Redis, vs a raw floor.

The simulated exchange runs in a child process, replaying the real Binance USDⓈ-M recording
(``../shared/data/binance-usdm-btcusdt-20240808.gz``: 87,402 ``trade`` and ``bookTicker``
frames) as fast as the client reads, one event per frame as the venue sends them. Redis is the
embedded redis-server on a unix socket (AOF on), flushed before each run. Two clients are timed
in this process, alternately, on the same frames:

* **floor**: websockets ``recv`` + ``orjson.loads`` + pipelined ``XADD`` of the raw frame in
  batches of ``--batch`` — no validation, no ticks, no buffer;
* **tickcast**: :class:`~tickcast.service.feed.shell.Feed` (parser, trade-id
  sequencing, watchdog) -> :class:`~tickcast.service.live.ingest.Ingester` (bounded buffer, batches
  of ``--batch``) -> :class:`~tickcast.service.bus.writer.TickWriter` (encode, ``XADD MAXLEN ~``).

Each run is timed from its first frame to the last entry written; the CPU time of this process
(one core: the pipeline is one thread) is reported per tick too. Target: tickcast >= 0.6x the
floor and >= 50,000 ticks/s.

Usage: ``python bench/ingest.py [--repeats R] [--batch B]``. It prints figures and never asserts
on time.

Measured on the 2-core development machine, shared with other jobs (best of 5)::

    client         ticks/s    median/s   cpu us/tick   ratio
    floor           52,261      51,452          17.3    1.00
    tickcast        42,582      41,447          21.0    0.81
    per core: floor 57,767, tickcast 47,664 ticks per CPU-second

Of tickcast's 21 us per tick, redis-py's pure-Python command packing and reply parsing take
about 13 (as in the floor); the parser about 2.8, the tick encoding 0.7, sequencing and
buffering 0.6. With ``hiredis`` installed the same run gave 53,914 ticks per CPU-second.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import redis
import redis.asyncio
from redis.utils import HIREDIS_AVAILABLE
from websockets.asyncio.client import connect as ws_connect

from tickcast.service.bus.connection import connect
from tickcast.service.bus.embedded import EmbeddedRedis
from tickcast.service.bus.writer import TickWriter
from tickcast.service.feed.shell import Feed
from tickcast.service.live.ingest import Ingester
from tickcast.service.ops.config import Settings
from tickcast.service.sim.server import SimExchange
from tickcast.service.venues.binance.dialect import read_recording
from tickcast.service.venues.binance.usdm import VENUE

RECORDING = Path(__file__).resolve().parents[2] / "shared/data/binance-usdm-btcusdt-20240808.gz"
STREAMS = ("btcusdt@trade", "btcusdt@bookTicker")
SYMBOL = "BTC/USDT:USDT"


def serve(path: str, port_out: Any, stop: Any) -> None:
    """Child process: run the simulated exchange replaying ``path`` until ``stop`` is set."""

    async def main() -> None:
        async with SimExchange(None, replay_path=path, speed=0, preload=True) as sim:
            port_out.put(sim.port)
            while not stop.is_set():
                await asyncio.sleep(0.05)

    asyncio.run(main())


class Server:
    """A fresh simulated exchange process per run (each run replays the file from the start)."""

    def __init__(self, path: Path) -> None:
        ctx = mp.get_context("spawn")
        self.port_q: Any = ctx.Queue()
        self.stop = ctx.Event()
        self.proc = ctx.Process(target=serve, args=(str(path), self.port_q, self.stop))

    def __enter__(self) -> str:
        self.proc.start()
        return f"ws://127.0.0.1:{self.port_q.get(timeout=30)}"

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()


async def floor_run(url: str, redis_url: str, n: int, batch: int) -> tuple[float, float]:
    """Raw client: recv + loads + pipelined XADD; returns (wall s, cpu s)."""
    client = connect(redis_url, Settings())
    maxlen = Settings().redis.tick_maxlen
    keys: dict[str, str] = {}
    async with ws_connect(
        f"{url}/public/stream?streams={'/'.join(STREAMS)}", compression=None, max_size=2**22
    ) as ws:
        raw = await ws.recv(decode=False)
        t0, c0 = time.perf_counter(), time.process_time()
        pipe = client.pipeline(transaction=False)
        queued = 0
        for i in range(n):
            if i:
                raw = await ws.recv(decode=False)
            msg = orjson.loads(raw)
            venue_id = msg["data"]["s"]
            key = keys.get(venue_id)
            if key is None:
                key = keys[venue_id] = f"floor:{{{venue_id}}}:ticks"
            pipe.execute_command("XADD", key, "MAXLEN", "~", maxlen, "*", "d", raw)
            queued += 1
            if queued == batch:
                await pipe.execute()
                pipe = client.pipeline(transaction=False)
                queued = 0
        if queued:
            await pipe.execute()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    await client.aclose()
    return wall, cpu


async def tickcast_run(url: str, redis_url: str, n: int, batch: int) -> tuple[float, float]:
    """The real pipeline; returns (wall s, cpu s) from the first tick to the last written."""
    settings = Settings(ingest={"batch_max": batch, "flush_interval_ms": 0})
    client = connect(redis_url, settings)
    urls = {"public": url + "/public", "market": url + "/market"}
    feed = Feed(VENUE, [VENUE.market(SYMBOL)], urls)
    ingester = Ingester.from_settings(feed, TickWriter(client, settings), settings)
    task = asyncio.get_running_loop().create_task(ingester.run())
    while ingester.stats.received == 0:
        await asyncio.sleep(0.0005)
    t0, c0 = time.perf_counter(), time.process_time()
    while ingester.stats.written < n:
        await asyncio.sleep(0.001)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    ingester.stop()
    await task
    await client.aclose()
    if ingester.stats.dropped or feed.parser.stats.total_rejected:
        raise RuntimeError(f"lost ticks: {ingester.counters()}")
    return wall, cpu


async def flush(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    await client.flushall()
    await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()

    n = sum(1 for f in read_recording(RECORDING) if f.stream in STREAMS)
    runs: dict[str, list[tuple[float, float]]] = {"floor": [], "tickcast": []}
    kinds: dict[str, Callable[..., Any]] = {"floor": floor_run, "tickcast": tickcast_run}
    with tempfile.TemporaryDirectory() as state, EmbeddedRedis(state, discovery=False) as rds:
        for _ in range(args.repeats):
            for name, run in kinds.items():
                asyncio.run(flush(rds.url))
                with Server(RECORDING) as url:
                    runs[name].append(asyncio.run(run(url, rds.url, n, args.batch)))

    print(f"ingest throughput: {n:,} real frames (trade + bookTicker), batches of {args.batch},")
    print(f"best of {args.repeats}; Python {platform.python_version()}, {platform.machine()}")
    print(f"{'client':<10}{'ticks/s':>12}{'median/s':>12}{'cpu us/tick':>14}{'ratio':>8}")
    best = {k: n / min(w for w, _ in v) for k, v in runs.items()}
    for name, values in runs.items():
        median = n / statistics.median(w for w, _ in values)
        cpu_us = 1e6 * min(c for _, c in values) / n
        ratio = best[name] / best["floor"]
        print(f"{name:<10}{best[name]:>12,.0f}{median:>12,.0f}{cpu_us:>14.1f}{ratio:>8.2f}")
    print("per core (ticks per CPU-second of this process, the pipeline being one thread):")
    for name, values in runs.items():
        print(f"  {name:<10}{n / min(c for _, c in values):>12,.0f}")
    parser_name = "hiredis" if HIREDIS_AVAILABLE else "pure-Python (no hiredis)"
    print(f"redis-py {redis.__version__}, reply parser: {parser_name}")


if __name__ == "__main__":
    main()
