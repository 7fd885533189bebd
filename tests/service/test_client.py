"""The async client: validated signals, in order, resumable, surviving a Redis restart."""

from __future__ import annotations

import asyncio

import redis

from tickcast.service.bus.embedded import EmbeddedRedis
from tickcast.service.client import NEW, START, Subscription, subscribe
from tickcast.service.schema import Signal

from support import publish_signal, take

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
KEYS = {BTC: "tickcast:{sim:BTCUSDT}:signals", ETH: "tickcast:{sim:ETHUSDT}:signals"}


async def test_subscribing_from_the_start_yields_every_signal_validated(
    redis_url: str, redis_client: redis.Redis
) -> None:
    for t in (100, 200, 300):
        publish_signal(redis_client, BTC, t)
    publish_signal(redis_client, ETH, 150)
    async with subscribe(redis_url, [BTC, ETH], from_id=START, block_ms=100) as sub:
        got = await take(aiter(sub), 4)
    assert [(s.symbol, s.t_ms) for s in got if s.symbol == BTC] == [
        (BTC, 100),
        (BTC, 200),
        (BTC, 300),
    ]
    assert [s.t_ms for s in got if s.symbol == ETH] == [150]
    assert all(isinstance(s, Signal) and s.ret_bps == s.t_ms / 1000 for s in got)


async def test_a_new_subscription_sees_only_signals_published_after_it_started(
    redis_url: str, redis_client: redis.Redis
) -> None:
    publish_signal(redis_client, BTC, 100)
    async with subscribe(redis_url, [BTC], from_id=NEW, block_ms=100) as sub:
        it = aiter(sub)
        task = asyncio.create_task(take(it, 2))
        await asyncio.sleep(0.3)
        publish_signal(redis_client, BTC, 200)
        publish_signal(redis_client, BTC, 300)
        got = await task
    assert [s.t_ms for s in got] == [200, 300]


async def test_last_ids_resume_exactly_after_the_last_signal_delivered(
    redis_url: str, redis_client: redis.Redis
) -> None:
    ids = [publish_signal(redis_client, BTC, t) for t in (100, 200, 300, 400)]
    async with Subscription(redis_url, [BTC], from_id=START, block_ms=100) as first:
        await take(aiter(first), 2)
        assert first.last_ids == {BTC: ids[1]}
        resume = dict(first.last_ids)
    async with subscribe(redis_url, [BTC], from_id=resume, block_ms=100) as second:
        got = await take(aiter(second), 2)
    assert [s.t_ms for s in got] == [300, 400]


async def test_invalid_entries_are_skipped_and_counted(
    redis_url: str, redis_client: redis.Redis
) -> None:
    redis_client.xadd(KEYS[BTC], {"s": b'{"v": 1, "symbol": "BTC/USDT:USDT"}'})
    redis_client.xadd(KEYS[BTC], {"other": b"x"})
    publish_signal(redis_client, BTC, 500)
    async with subscribe(redis_url, [BTC], from_id=START, block_ms=100) as sub:
        got = await take(aiter(sub), 1)
        assert sub.invalid == 2
    assert [s.t_ms for s in got] == [500]


async def test_entries_carry_the_symbol_and_stream_id(
    redis_url: str, redis_client: redis.Redis
) -> None:
    sid = publish_signal(redis_client, ETH, 700)
    async with subscribe(redis_url, [ETH], from_id=START, block_ms=100) as sub:
        async with asyncio.timeout(10):
            async for symbol, stream_id, signal in sub.entries():
                assert (symbol, stream_id, signal.t_ms) == (ETH, sid, 700)
                break


async def test_the_subscription_survives_a_redis_restart(
    redis_url: str, redis_client: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    publish_signal(redis_client, BTC, 100)
    async with subscribe(redis_url, [BTC], from_id=START, block_ms=100) as sub:
        it = aiter(sub)
        assert [s.t_ms for s in await take(it, 1)] == [100]
        redis_server.stop()
        task = asyncio.create_task(take(it, 2, timeout=30.0))
        await asyncio.sleep(0.5)
        redis_server.start()
        restarted = redis.Redis.from_url(redis_server.url)
        try:
            publish_signal(restarted, BTC, 200)
            publish_signal(restarted, BTC, 300)
        finally:
            restarted.close()
        got = await task
    assert [s.t_ms for s in got] == [200, 300]
