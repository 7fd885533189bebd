"""Tick bus throughput: TickWriter vs a raw redis-py pipelined XADD floor, measured in one run.

Prints ticks/s for: the raw floor (pipelined XADD of a 1-byte field, no encoding), TickWriter
(orjson blob, the bus format), a flat field map (the alternative encoding), TickReader decode
throughput, and the memory per stream entry. Run: ``.venv/bin/python bench/bus.py [--ticks N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence

import numpy as np
import redis.asyncio

from tickcast.service.bus.connection import connect
from tickcast.service.bus.embedded import EmbeddedRedis
from tickcast.service.bus.reader import TickReader
from tickcast.service.bus.writer import TickWriter
from tickcast.service.ops.config import Settings
from tickcast.service.ticks import Tick, quote, trade

SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT")


def make_ticks(n: int, seed: int = 0) -> list[Tick]:
    """Realistic-looking trades and quotes over three symbols."""
    rng = np.random.default_rng(seed)
    out: list[Tick] = []
    price = 60_000.0
    for i in range(n):
        price = round(price + float(rng.choice((-0.1, 0.0, 0.1))), 1)
        event_ms = 1_722_000_000_000 + i
        recv_ns = event_ms * 1_000_000 + int(rng.integers(1_000_000))
        symbol = SYMBOLS[i % 3]
        if i % 2:
            size = round(float(rng.lognormal(-3.0, 1.5)), 3) or 0.001
            out.append(trade("sim", symbol, event_ms, recv_ns, price, size, 1, str(i)))
        else:
            out.append(quote("sim", symbol, event_ms, recv_ns, price, 1.5, price + 0.1, 2.5, i))
    return out


async def timed(
    client: redis.asyncio.Redis,
    batches: Sequence[Sequence[Tick]],
    write: Callable[[Sequence[Tick]], Awaitable[None]],
) -> float:
    """Flush, write every batch, return ticks/s."""
    await client.flushall()
    gc.collect()
    start = time.perf_counter()
    for batch in batches:
        await write(batch)
    elapsed = time.perf_counter() - start
    return sum(len(b) for b in batches) / elapsed


async def run(url: str, n: int, batch: int, rounds: int) -> None:
    settings = Settings()
    client = connect(url, settings)
    ticks = make_ticks(n)
    batches = [ticks[i : i + batch] for i in range(0, n, batch)]
    writer = TickWriter(client, settings)
    maxlen = settings.redis.tick_maxlen

    async def floor(chunk: Sequence[Tick]) -> None:
        pipe = client.pipeline(transaction=False)
        for tick in chunk:
            pipe.execute_command("XADD", writer.key(tick.venue, tick.symbol), "MAXLEN", "~",
                                 maxlen, "*", "x", "1")  # fmt: skip
        await pipe.execute()

    async def flat(chunk: Sequence[Tick]) -> None:
        pipe = client.pipeline(transaction=False)
        for t in chunk:
            fields = (b"v", b"1", b"k", t.kind, b"e", t.event_ms, b"r", t.recv_ns, b"p", t.price,
                      b"s", t.size, b"d", t.side, b"i", t.trade_id, b"b", t.bid,
                      b"B", t.bid_size, b"a", t.ask, b"A", t.ask_size, b"u", t.update_id,
                      b"y", t.venue, b"m", t.symbol)  # fmt: skip
            pipe.execute_command("XADD", writer.key(t.venue, t.symbol), "MAXLEN", "~", maxlen,
                                 "*", *fields)  # fmt: skip
        await pipe.execute()

    results: dict[str, list[float]] = {"floor": [], "writer": [], "flat": []}
    for _ in range(rounds):
        results["floor"].append(await timed(client, batches, floor))
        results["flat"].append(await timed(client, batches, flat))
        results["writer"].append(await timed(client, batches, writer.write))
    key = writer.key("sim", SYMBOLS[0])
    entries = await client.xlen(key)
    memory = await client.memory_usage(key, samples=0) or 0

    reader = TickReader(client, settings)
    start = time.perf_counter()
    positions = {writer.key("sim", s): "0-0" for s in SYMBOLS}
    read = 0
    while chunk := await reader.read(positions, count=5000):
        read += len(chunk)
        positions = dict(reader.positions)
    read_rate = read / (time.perf_counter() - start)
    await client.aclose()

    best = {name: max(values) for name, values in results.items()}
    print(f"ticks {n:,}, batch {batch}, best of {rounds}, {url.split(':')[0]} socket")
    print(f"  raw pipelined XADD floor : {best['floor']:>10,.0f} ticks/s")
    print(f"  TickWriter (orjson blob) : {best['writer']:>10,.0f} ticks/s  "
          f"{best['writer'] / best['floor']:.2f}x floor")  # fmt: skip
    print(f"  flat field map           : {best['flat']:>10,.0f} ticks/s  "
          f"{best['flat'] / best['floor']:.2f}x floor")  # fmt: skip
    print(f"  TickReader XREAD+decode  : {read_rate:>10,.0f} ticks/s")
    print(f"  memory per entry         : {memory / max(entries, 1):>10.1f} bytes (blob format)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ticks", type=int, default=60_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tcp", action="store_true", help="loopback TCP instead of unix socket")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as state,
        EmbeddedRedis(state, unix_socket=not args.tcp, discovery=False) as server,
    ):
        asyncio.run(run(server.url, args.ticks, args.batch, args.rounds))


if __name__ == "__main__":
    main()
