"""The tick writer on a real Redis Cluster: each stream's XADDs on the master of its slot, a
re-sent batch stored once, ``MOVED`` after a slot migrated and ``ASK`` while it migrates
followed, and the ticks a failover loses counted."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence

import pytest
import redis
import redis.asyncio.cluster

from tickcast.service.bus.cluster import slot_of
from tickcast.service.bus.connection import AsyncClient, connect
from tickcast.service.bus.keys import id_key, ticks_key
from tickcast.service.bus.reader import read_range
from tickcast.service.bus.writer import TickWriter
from tickcast.service.feed.reconnect import is_retryable
from tickcast.service.ops.config import Settings
from tickcast.service.ticks import Tick, trade

from localcluster import LocalCluster, Node

CANDIDATES = [f"{base}/USDT:USDT" for base in (
    "BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "AVAX", "LINK", "DOT", "LTC", "BCH", "ATOM",
)]  # fmt: skip
T0_MS = 1_767_225_600_000


def spread(cluster: LocalCluster, per_master: int = 1) -> list[str]:
    """Symbols of :data:`CANDIDATES`, ``per_master`` on each master (in candidate order)."""
    taken: dict[int, list[str]] = {}
    for symbol in CANDIDATES:
        port = cluster.master_of(ticks_key("tickcast", "sim", symbol)).port
        if len(taken.setdefault(port, [])) < per_master:
            taken[port].append(symbol)
    assert len(taken) == 3 and all(len(v) == per_master for v in taken.values()), taken
    return [s for s in CANDIDATES if any(s in v for v in taken.values())]


def ticks(symbols: Sequence[str], n: int, start: int = 0) -> list[Tick]:
    """``n`` trades per symbol, interleaved, received 1 ms apart."""
    out = []
    for i in range(start, start + n):
        for symbol in symbols:
            ms = T0_MS + i
            out.append(trade("sim", symbol, ms, ms * 1_000_000, 100.0 + i, 1.0, 1, str(i)))
    return out


def key(symbol: str) -> str:
    return ticks_key("tickcast", "sim", symbol)


def stored(cluster: LocalCluster, symbol: str) -> list[tuple[str, Tick]]:
    """The stream of ``symbol``, read from the master that serves it."""
    client = cluster.master_of(key(symbol)).client()
    try:
        return read_range(client, key(symbol))
    finally:
        client.close()


@pytest.fixture
async def client(cluster_url: str) -> AsyncIterator[AsyncClient]:
    c = connect(cluster_url, Settings())
    assert isinstance(c, redis.asyncio.cluster.RedisCluster)
    try:
        yield c
    finally:
        await c.aclose()


async def send_retrying(writer: TickWriter, batch: list[Tick], timeout_s: float = 30.0) -> None:
    """Send ``batch`` as the ingester does: the same prepared batch again after each
    retryable error."""
    prepared = None
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                if prepared is None:
                    prepared = await writer.prepare(batch)
                await writer.send(prepared)
                return
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                await asyncio.sleep(0.05)


async def test_each_stream_is_written_on_the_master_of_its_slot(
    redis_cluster: LocalCluster, client: AsyncClient
) -> None:
    symbols = spread(redis_cluster, 2)
    writer = TickWriter(client, Settings())
    batch = ticks(symbols, 50)
    assert await writer.write(batch) == []
    assert writer.stats.written == len(batch) and writer.stats.duplicates == 0
    for symbol in symbols:
        master = redis_cluster.master_of(key(symbol))
        assert key(symbol).encode() in redis_cluster.keys_on(master)
        entries = stored(redis_cluster, symbol)
        assert [t for _, t in entries] == [t for t in batch if t.symbol == symbol]
        ids = [id_key(i) for i, _ in entries]
        assert ids == sorted(set(ids))
    assert writer._routes is not None
    assert len(writer._routes.lanes) == 3 and writer._routes.redirects == 0


async def test_a_batch_sent_again_is_stored_once(
    redis_cluster: LocalCluster, client: AsyncClient
) -> None:
    symbols = spread(redis_cluster)
    writer = TickWriter(client, Settings())
    prepared = await writer.prepare(ticks(symbols, 20))
    await writer.send(prepared)
    await writer.send(prepared)
    assert writer.stats.written == 60 and writer.stats.duplicates == 60
    assert all(len(stored(redis_cluster, s)) == 20 for s in symbols)


async def test_a_slot_migrated_since_the_last_write_answers_moved_and_is_followed(
    redis_cluster: LocalCluster, client: AsyncClient
) -> None:
    symbols = spread(redis_cluster)
    moving = symbols[0]
    writer = TickWriter(client, Settings())
    await writer.write(ticks(symbols, 10))
    slot = slot_of(key(moving))
    target = next(
        n for n in redis_cluster.masters_now() if n.port != redis_cluster.master_of_slot(slot).port
    )
    source = redis_cluster.migrate(slot, target)
    try:
        await writer.write(ticks(symbols, 10, start=10))
        routes = writer._routes
        assert routes is not None and routes.redirects >= 1 and routes.refreshes >= 1
        assert key(moving).encode() in redis_cluster.keys_on(target)
        assert key(moving).encode() not in redis_cluster.keys_on(source)
    finally:
        redis_cluster.migrate(slot, source)  # the layout the other tests expect
    assert [int(t.trade_id) for _, t in stored(redis_cluster, moving)] == list(range(20))
    assert writer.stats.written == 60 and writer.stats.lost == 0


async def test_a_slot_being_migrated_answers_ask_and_the_write_goes_to_the_importing_node(
    redis_cluster: LocalCluster, client: AsyncClient
) -> None:
    symbols = spread(redis_cluster)
    moving = symbols[1]
    writer = TickWriter(client, Settings())
    await writer.write(ticks(symbols, 5))
    slot = slot_of(key(moving))
    source = redis_cluster.master_of_slot(slot)
    target = next(n for n in redis_cluster.masters_now() if n.port != source.port)
    redis_cluster.start_migration(slot, target)
    try:
        assert redis_cluster.move_keys(slot, source, target) == 1
        await writer.write(ticks(symbols, 5, start=5))
        routes = writer._routes
        assert routes is not None and routes.redirects >= 1
        on_target = target.client()
        try:
            pipe = on_target.pipeline(transaction=False)  # one connection: ASKING, then XRANGE
            pipe.execute_command("ASKING")
            pipe.execute_command("XRANGE", key(moving), "-", "+")
            _, entries = pipe.execute()
        finally:
            on_target.close()
        assert len(entries) == 10
    finally:
        redis_cluster.finish_migration(slot, target)
    assert [int(t.trade_id) for _, t in stored(redis_cluster, moving)] == list(range(10))
    redis_cluster.migrate(slot, source)  # the layout the other tests expect


async def test_ticks_a_failover_loses_are_counted_and_the_stream_goes_on_above_them(
    redis_cluster: LocalCluster, client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    symbols = spread(redis_cluster)
    victim_symbol = symbols[2]
    master: Node = redis_cluster.master_of(key(victim_symbol))
    (replica,) = redis_cluster.replicas_of(master)
    writer = TickWriter(client, Settings())
    await writer.write(ticks(symbols, 5))
    redis_cluster.wait_replicated(master)
    redis_cluster.pause(replica)  # it will not reconnect to its master...
    redis_cluster.cut_replication(master)  # ...whose next writes are then on the master only
    lost = await writer.prepare(ticks([victim_symbol], 7, start=5))
    await writer.send(lost)  # acknowledged by the master alone
    redis_cluster.kill(master)
    redis_cluster.resume(replica)
    caplog.set_level(logging.WARNING)
    await send_retrying(writer, ticks(symbols, 3, start=12))
    assert redis_cluster.master_of(key(victim_symbol)).port == replica.port
    assert writer.stats.lost == 7
    assert "lost ticks it had acknowledged" in caplog.text and victim_symbol in caplog.text
    entries = stored(redis_cluster, victim_symbol)
    assert [int(t.trade_id) for _, t in entries] == [0, 1, 2, 3, 4, 12, 13, 14]
    ids = [id_key(i) for i, _ in entries]
    assert ids == sorted(set(ids))
    assert ids[5] > id_key(lost.ids[-1])  # written on above the lost entries
    for symbol in symbols:
        if symbol != victim_symbol:
            assert len(stored(redis_cluster, symbol)) == 8
