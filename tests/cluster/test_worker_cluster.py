"""The worker on a real Redis Cluster: per-stream XREADs routed to each master, signals to
their masters, checkpoints (MULTI of same-slot keys), leases and quarantine through the cluster
client — the signals exactly a backtest's, a restored worker publishing nothing twice, a slot
migrated under a running worker followed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio.cluster

from tickcast.model.learner import OnlineLearner
from tickcast.service.bus import keys
from tickcast.service.bus.cluster import slot_of
from tickcast.service.bus.connection import AsyncClient, connect
from tickcast.service.bus.lease import SymbolLeases
from tickcast.service.live.worker import Worker
from tickcast.service.live.workerlane import ClusterWorkerLane
from tickcast.service.ops.config import Settings
from tickcast.service.schema import decode_signal
from tickcast.service.sim.market import SyntheticMarket
from tickcast.service.sim.symbols import specs_for
from tickcast.service.ticks import Instrument, Tick

from localcluster import LocalCluster
from support import drain, reference, worker_settings, write_ticks

SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT", "XRP/USDT:USDT")


@pytest.fixture(scope="module")
def ticks() -> list[Tick]:
    return list(SyntheticMarket(specs_for(SYMBOLS), seed=5).ticks(30.0))


@pytest.fixture
async def client(redis_cluster: LocalCluster) -> AsyncIterator[AsyncClient]:
    masters = {redis_cluster.master_of(keys.ticks_key("tickcast", "sim", s)).port for s in SYMBOLS}
    assert len(masters) == 3, "the symbols span the three masters"
    c = connect(redis_cluster.url, Settings())
    assert isinstance(c, redis.asyncio.cluster.RedisCluster)
    try:
        yield c
    finally:
        await c.aclose()


@pytest.fixture
def sync_client(redis_cluster: LocalCluster) -> Iterator[redis.cluster.RedisCluster]:
    c = redis.cluster.RedisCluster.from_url(redis_cluster.url)
    yield c
    c.close()


def published(client: redis.cluster.RedisCluster, symbol: str) -> list[tuple[int, float]]:
    entries = client.xrange(keys.signals_key("tickcast", "sim", symbol))
    return [(s.t_ms, s.ret_bps) for s in (decode_signal(f) for _, f in entries)]


def leases(client: AsyncClient) -> SymbolLeases:
    names = {f"sim:{s}": keys.symbol_key("tickcast", "sim", s, "owner") for s in SYMBOLS}
    return SymbolLeases(client, names, ttl_s=5.0)


async def test_the_worker_publishes_exactly_what_a_backtest_predicts(
    client: AsyncClient, sync_client: redis.cluster.RedisCluster, ticks: list[Tick]
) -> None:
    await write_ticks(client, ticks)
    worker = Worker(client, worker_settings(SYMBOLS), leases=leases(client))
    assert isinstance(worker.io, ClusterWorkerLane)
    await worker.restore()
    assert await drain(worker) == len(ticks)
    assert len(worker.io.routes.lanes) == 3
    for symbol in SYMBOLS:
        learner, expected = reference(ticks, symbol)
        assert len(expected) > 200
        assert published(sync_client, symbol) == expected
        state = worker.states[Instrument("sim", symbol)]
        assert isinstance(state.learner, OnlineLearner)
        assert state.learner.snapshot() == learner.snapshot()
        assert state.stats.signals == len(expected)
    worker.stop()
    await worker.run()  # final checkpoint (MULTI on each symbol's master), leases released
    for symbol in SYMBOLS:
        fields = sync_client.hgetall(keys.ckpt_key("tickcast", "sim", symbol))
        top = sync_client.xrevrange(keys.ticks_key("tickcast", "sim", symbol), count=1)[0][0]
        assert fields[b"last_id"] == top
        assert not sync_client.exists(keys.symbol_key("tickcast", "sim", symbol, "owner"))


async def test_a_restored_worker_goes_on_without_publishing_a_sample_twice(
    client: AsyncClient, sync_client: redis.cluster.RedisCluster, ticks: list[Tick]
) -> None:
    cut = len(ticks) // 3
    await write_ticks(client, ticks[:cut])
    first = Worker(client, worker_settings(SYMBOLS))
    await first.restore()
    await drain(first)
    await first.checkpoint(force=True)
    await write_ticks(client, ticks[cut : 2 * cut])
    await drain(first)  # published past its checkpoint, then "dies"
    await write_ticks(client, ticks[2 * cut :])
    second = Worker(client, worker_settings(SYMBOLS))
    await second.restore()
    await drain(second)
    for symbol in SYMBOLS:
        learner, expected = reference(ticks, symbol)
        assert published(sync_client, symbol) == expected
        restored = second.states[Instrument("sim", symbol)]
        assert isinstance(restored.learner, OnlineLearner)
        assert restored.learner.snapshot() == learner.snapshot()
        assert restored.stats.duplicates_skipped > 0


async def test_a_running_worker_waits_for_ticks_and_follows_a_slot_that_moves(
    redis_cluster: LocalCluster,
    client: AsyncClient,
    sync_client: redis.cluster.RedisCluster,
    ticks: list[Tick],
) -> None:
    worker = Worker(client, worker_settings(SYMBOLS, block_ms=200))
    await worker.restore()
    task = asyncio.create_task(worker.run())
    moving = keys.ticks_key("tickcast", "sim", SYMBOLS[0])
    slot = slot_of(moving)
    source = redis_cluster.master_of_slot(slot)
    target = next(n for n in redis_cluster.masters_now() if n.port != source.port)
    half = len(ticks) // 2
    try:
        await write_ticks(client, ticks[:half])
        while worker.states[Instrument("sim", SYMBOLS[0])].stats.ticks < 100:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(redis_cluster.migrate, slot, target)
        for i in range(half, len(ticks), 200):
            await write_ticks(client, ticks[i : i + 200])
            await asyncio.sleep(0.01)  # the worker catches up, then waits (pauses)
        async with asyncio.timeout(30):
            while sum(s.stats.ticks for s in worker.states.values()) < len(ticks):
                await asyncio.sleep(0.02)
    finally:
        worker.stop()
        await task
        await asyncio.to_thread(redis_cluster.migrate, slot, source)
    assert isinstance(worker.io, ClusterWorkerLane)
    assert worker.io.routes.redirects >= 1 and worker.io.pauses > 0
    for symbol in SYMBOLS:
        assert published(sync_client, symbol) == reference(ticks, symbol)[1]


async def test_quarantine_and_a_checkpoint_set_aside_live_on_the_symbol_s_master(
    redis_cluster: LocalCluster,
    client: AsyncClient,
    sync_client: redis.cluster.RedisCluster,
    ticks: list[Tick],
) -> None:
    sick = SYMBOLS[3]
    stream, ckpt = (keys.symbol_key("tickcast", "sim", sick, k) for k in ("ticks", "ckpt"))
    half = len(ticks) // 2
    await write_ticks(client, ticks[:half])
    bad = sync_client.xadd(stream, {b"v": b"1", b"t": b"[not a tick"})
    sync_client.hset(ckpt, mapping={b"v": b"99", b"model": b"?"})  # not a readable checkpoint
    await write_ticks(client, ticks[half:])
    worker = Worker(client, worker_settings(SYMBOLS))
    await worker.restore()
    await drain(worker)
    await worker.checkpoint(force=True)
    master = redis_cluster.master_of(stream)
    held = set(redis_cluster.keys_on(master))
    quarantine = keys.quarantine_key("tickcast", "sim", sick)
    assert [i for i, _ in sync_client.xrange(quarantine)] == [bad]
    (aside,) = sync_client.lrange(keys.unreadable_index_key(ckpt), 0, -1)
    assert {quarantine.encode(), aside, ckpt.encode()} <= held
    state = worker.states[Instrument("sim", sick)]
    assert state.stats.checkpoints_unreadable == 1 and state.stats.undecodable == 1
    assert published(sync_client, sick) == reference(ticks, sick)[1]


async def test_a_stream_whose_slot_is_being_migrated_is_read_from_the_importing_node(
    redis_cluster: LocalCluster,
    client: AsyncClient,
    sync_client: redis.cluster.RedisCluster,
    ticks: list[Tick],
) -> None:
    moving = keys.ticks_key("tickcast", "sim", SYMBOLS[2])
    slot = slot_of(moving)
    source = redis_cluster.master_of_slot(slot)
    target = next(n for n in redis_cluster.masters_now() if n.port != source.port)
    worker = Worker(client, worker_settings(SYMBOLS))
    await worker.restore()
    await write_ticks(client, ticks)
    redis_cluster.start_migration(slot, target)
    try:
        assert redis_cluster.move_keys(slot, source, target) >= 1  # the ticks, on the target
        await drain(worker)  # the source answers ASK for them
        assert isinstance(worker.io, ClusterWorkerLane) and worker.io.routes.redirects >= 1
        assert worker.states[Instrument("sim", SYMBOLS[2])].stats.ticks == sum(
            t.symbol == SYMBOLS[2] for t in ticks
        )
    finally:
        redis_cluster.finish_migration(slot, target)
        redis_cluster.migrate(slot, source)
    for symbol in SYMBOLS:
        assert published(sync_client, symbol) == reference(ticks, symbol)[1]
