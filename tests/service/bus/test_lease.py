"""Symbol ownership: one worker per symbol at a time, against a real redis-server."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys

import pytest
import redis
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tickcast.service.bus import keys, lease
from tickcast.service.bus.embedded import free_port
from tickcast.service.bus.lease import SymbolLeases
from tickcast.service.live.service import Service
from tickcast.service.live.symbolstate import WorkerError
from tickcast.service.live.worker import Worker
from tickcast.service.ops.config import ConfigError, Settings, load_settings

from support import worker_settings

SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT")
KEYS = {s: keys.symbol_key("tickcast", "sim", s, "owner") for s in SYMBOLS}


def leases(client: redis.asyncio.Redis, ttl_s: float = 1.0) -> SymbolLeases:
    return SymbolLeases(client, KEYS, ttl_s=ttl_s)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


async def test_symbols_are_taken_all_or_nothing_once_the_other_owner_is_gone(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis
) -> None:
    redis_client.set(KEYS[SYMBOLS[1]], "elsewhere:1:aa", px=1500)
    mine = leases(async_redis_client)
    task = asyncio.create_task(mine.acquire(asyncio.Event()))
    await asyncio.sleep(0.3)
    assert not task.done(), "waits while another worker owns one of the symbols"
    assert redis_client.get(KEYS[SYMBOLS[0]]) is None, "the free one is not kept meanwhile"
    assert await asyncio.wait_for(task, 5.0)
    assert all(redis_client.get(k) == mine.token.encode() for k in KEYS.values())
    assert 0 < redis_client.pttl(KEYS[SYMBOLS[0]]) <= 1000


async def test_a_lease_of_a_dead_process_of_this_host_is_taken_over_at_once(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis
) -> None:
    token = f"{socket.gethostname()}:{dead_pid()}:{lease.pid_namespace()}:aa"
    redis_client.set(KEYS[SYMBOLS[0]], token, px=60_000)
    mine = leases(async_redis_client, ttl_s=60.0)
    assert await asyncio.wait_for(mine.acquire(asyncio.Event()), 2.0)
    assert redis_client.get(KEYS[SYMBOLS[0]]) == mine.token.encode()


async def test_waiting_ends_when_asked_to_stop(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis
) -> None:
    redis_client.set(KEYS[SYMBOLS[0]], "elsewhere:1:aa", px=60_000)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.2, stop.set)
    assert not await asyncio.wait_for(leases(async_redis_client).acquire(stop), 5.0)


async def test_renew_reports_a_taken_lease_and_release_keeps_what_is_not_ours(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis
) -> None:
    mine = leases(async_redis_client, ttl_s=5.0)
    assert await mine.acquire(asyncio.Event())
    redis_client.set(KEYS[SYMBOLS[1]], "elsewhere:1:bb")
    assert await mine.renew() == [SYMBOLS[1]]
    assert redis_client.pttl(KEYS[SYMBOLS[0]]) > 4000
    await mine.release()
    assert redis_client.get(KEYS[SYMBOLS[0]]) is None
    assert redis_client.get(KEYS[SYMBOLS[1]]) == b"elsewhere:1:bb"


async def test_an_expired_lease_nobody_took_is_taken_back_only_when_asked(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis
) -> None:
    mine = leases(async_redis_client, ttl_s=5.0)
    assert await mine.acquire(asyncio.Event())
    redis_client.delete(KEYS[SYMBOLS[0]])  # expired while Redis was out of reach
    assert await mine.renew() == [SYMBOLS[0]] and mine.retaken == []
    assert not mine.holds(SYMBOLS[0])
    assert await mine.renew(retake=True) == [] and mine.retaken == [SYMBOLS[0]]
    assert mine.holds(SYMBOLS[0])  # what the last renewal found: taken back
    assert redis_client.get(KEYS[SYMBOLS[0]]) == mine.token.encode()
    assert redis_client.pttl(KEYS[SYMBOLS[0]]) > 4000
    redis_client.set(KEYS[SYMBOLS[1]], "elsewhere:1:dd")  # taken: never taken back
    assert await mine.renew(retake=True) == [SYMBOLS[1]] and mine.retaken == []
    assert redis_client.get(KEYS[SYMBOLS[1]]) == b"elsewhere:1:dd"


async def test_a_worker_that_lost_a_symbol_stops_without_checkpointing(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis
) -> None:
    worker = Worker(
        async_redis_client,
        worker_settings(SYMBOLS),
        leases=leases(async_redis_client, ttl_s=0.3),
    )
    await worker.restore()
    assert worker.restored
    redis_client.set(KEYS[SYMBOLS[0]], "elsewhere:1:cc")
    await asyncio.sleep(0.15)  # a renewal is due
    with pytest.raises(WorkerError, match="lost ownership"):
        await asyncio.wait_for(worker.run(), 5.0)
    assert worker.lost == [SYMBOLS[0]]
    assert not redis_client.exists(keys.ckpt_key("tickcast", "sim", SYMBOLS[1]))


async def test_a_second_service_waits_and_takes_over_from_the_first_checkpoint(
    redis_url: str, redis_client: redis.Redis
) -> None:
    settings = load_settings(
        None,
        {
            "exchange.symbols": list(SYMBOLS),
            "metrics.enabled": False,
            "sim.speed": 4.0,
            "worker.lease_ttl_s": 30.0,
        },
    )
    first = Service(settings, redis_url)
    first_run = asyncio.create_task(first.run(handle_signals=False))
    await asyncio.wait_for(first.ready.wait(), 15.0)
    second = Service(settings, redis_url)
    second_run = asyncio.create_task(second.run(handle_signals=False))
    await asyncio.sleep(1.5)
    assert not second.ready.is_set() and not second.ingesters, "waits, and does not ingest"
    first.request_stop()
    assert await asyncio.wait_for(first_run, 15.0) == 0
    assert first.worker is not None
    handed = {s: st.ticks for s, st in first.worker.states.items()}
    await asyncio.wait_for(second.ready.wait(), 15.0)  # at once: the lease was given back
    assert second.worker is not None
    assert {s: st.ticks for s, st in second.worker.states.items()} == handed, "its checkpoint"
    second.request_stop()
    assert await asyncio.wait_for(second_run, 15.0) == 0
    assert all(redis_client.get(k) is None for k in KEYS.values()), "released on the way out"


def test_a_lease_shorter_than_three_blocked_reads_is_refused() -> None:
    with pytest.raises(ConfigError, match="lease_ttl_s"):
        load_settings(None, {"worker.lease_ttl_s": 1.0, "worker.block_ms": 500})


async def test_waiting_outlasts_an_unreachable_redis(caplog: pytest.LogCaptureFixture) -> None:
    nowhere = redis.asyncio.Redis(port=free_port(), retry=Retry(NoBackoff(), 0))
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.5, stop.set)
    try:
        assert not await asyncio.wait_for(leases(nowhere, ttl_s=0.3).acquire(stop), 5.0)
    finally:
        await nowhere.aclose()
    assert "Redis unreachable" in caplog.text


def ingest_settings(**extra: object) -> Settings:
    return load_settings(
        None,
        {"exchange.symbols": list(SYMBOLS), "metrics.enabled": False, "sim.speed": 4.0, **extra},
    )


async def test_a_second_ingester_waits_until_the_first_has_flushed_and_let_go(
    redis_url: str, redis_client: redis.Redis
) -> None:
    first = Service(ingest_settings(), redis_url, work=False)
    first_run = asyncio.create_task(first.run(handle_signals=False))
    await asyncio.wait_for(first.ready.wait(), 15.0)
    second = Service(ingest_settings(), redis_url, work=False)
    second_run = asyncio.create_task(second.run(handle_signals=False))
    await asyncio.sleep(1.0)
    assert not second.ingesters, "one ingester per symbol: the second waits"
    first.request_stop()
    assert await asyncio.wait_for(first_run, 15.0) == 0
    await asyncio.wait_for(second.ready.wait(), 15.0)
    assert second.ingesters
    second.request_stop()
    assert await asyncio.wait_for(second_run, 15.0) == 0
    owners = [keys.symbol_key("tickcast", "sim", s, "ingester") for s in SYMBOLS]
    assert all(redis_client.get(k) is None for k in owners), "released on the way out"


async def test_an_ingester_that_lost_its_lease_stops_with_an_error(
    redis_url: str, redis_client: redis.Redis
) -> None:
    settings = ingest_settings(**{"worker.lease_ttl_s": 0.6, "worker.block_ms": 100})
    service = Service(settings, redis_url, work=False)
    run = asyncio.create_task(service.run(handle_signals=False))
    await asyncio.wait_for(service.ready.wait(), 15.0)
    redis_client.set(keys.symbol_key("tickcast", "sim", SYMBOLS[0], "ingester"), "elsewhere:1:dd")
    assert await asyncio.wait_for(run, 15.0) == 1
    assert service.ingesters["sim"].stats.written > 0


@pytest.mark.parametrize("meanwhile", ["nothing", "its own late checkpoint", "another's"])
async def test_a_worker_takes_back_an_expired_lease_unless_another_checkpointed_meanwhile(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis, meanwhile: str
) -> None:
    named = {f"sim:{s}": key for s, key in KEYS.items()}  # as the service names them
    mine = SymbolLeases(async_redis_client, named, ttl_s=0.3)
    worker = Worker(async_redis_client, worker_settings(SYMBOLS), leases=mine)
    await worker.restore()
    redis_client.delete(KEYS[SYMBOLS[0]])  # expired while Redis was out of reach
    ckpt = keys.ckpt_key("tickcast", "sim", SYMBOLS[0])
    if meanwhile == "its own late checkpoint":  # a save that timed out, executed on resume
        redis_client.hset(ckpt, mapping={"saved_ms": "123", "owner": mine.token})
    elif meanwhile == "another's":  # another worker took it, checkpointed and let it go
        redis_client.hset(ckpt, mapping={"saved_ms": "123", "owner": "elsewhere:1:ee"})
    await asyncio.sleep(0.15)  # a renewal is due
    if meanwhile == "another's":
        with pytest.raises(WorkerError, match="lost ownership"):
            await asyncio.wait_for(worker.run(), 5.0)
        assert worker.lost == [f"sim:{SYMBOLS[0]}"]
        return
    await worker.step(block_ms=0)
    assert worker.lost == [] and mine.retaken == [f"sim:{SYMBOLS[0]}"]
    assert redis_client.get(KEYS[SYMBOLS[0]]) == mine.token.encode()


async def test_checkpoints_name_the_worker_that_wrote_them(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis
) -> None:
    mine = SymbolLeases(async_redis_client, {f"sim:{s}": k for s, k in KEYS.items()}, ttl_s=5.0)
    worker = Worker(async_redis_client, worker_settings(SYMBOLS), leases=mine)
    await worker.restore()
    await worker.checkpoint(force=True)
    for symbol in SYMBOLS:
        owner = redis_client.hget(keys.ckpt_key("tickcast", "sim", symbol), "owner")
        assert owner == mine.token.encode()
