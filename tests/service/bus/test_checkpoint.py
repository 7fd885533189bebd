"""Checkpoints: one hash per symbol, written in one MULTI, read back exactly."""

from __future__ import annotations

import orjson
import pytest
import redis
import redis.asyncio

from tickcast.service.bus.checkpoint import (
    CKPT_VERSION,
    Checkpoint,
    CheckpointError,
    last_published_t,
    load,
    queue_status,
    save,
)
from tickcast.service.schema import encode_signal, signal_fields

KEY = "tickcast:{sim:BTCUSDT}:ckpt"


async def test_a_saved_checkpoint_loads_back_field_for_field(
    async_redis_client: redis.asyncio.Redis,
) -> None:
    model = bytes(range(256)) * 40  # arbitrary binary, NULs included
    ckpt = Checkpoint(model=model, last_id="1767225600000-3", last_t=1_767_225_600_100, ticks=9)
    saved_ms = await save(async_redis_client, KEY, ckpt)
    back = await load(async_redis_client, KEY)
    assert back is not None
    assert back.model == model
    assert (back.last_id, back.last_t, back.ticks, back.saved_ms) == (
        "1767225600000-3",
        1_767_225_600_100,
        9,
        saved_ms,
    )


async def test_a_checkpoint_replaces_every_field_of_the_previous_one(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis
) -> None:
    redis_client.hset(KEY, mapping={"stale": "x"})
    await save(async_redis_client, KEY, Checkpoint(b"a", "1-0", 5))
    await save(async_redis_client, KEY, Checkpoint(b"b", "2-0", 6))
    fields = redis_client.hgetall(KEY)
    assert b"stale" not in fields
    assert fields[b"model"] == b"b" and fields[b"last_id"] == b"2-0"
    assert fields[b"v"] == str(CKPT_VERSION).encode()


async def test_the_save_is_one_multi_exec_transaction(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis
) -> None:
    before = redis_client.info("commandstats").get("cmdstat_exec", {}).get("calls", 0)
    await save(async_redis_client, KEY, Checkpoint(b"m", "3-0", 7))
    after = redis_client.info("commandstats")["cmdstat_exec"]["calls"]
    assert after == before + 1


async def test_no_checkpoint_and_live_counts_only_both_load_as_none(
    async_redis_client: redis.asyncio.Redis,
) -> None:
    assert await load(async_redis_client, KEY) is None
    pipe = async_redis_client.pipeline(transaction=False)
    queue_status(pipe, KEY, samples=10, ticks=20)
    await pipe.execute()
    assert await load(async_redis_client, KEY) is None


async def test_live_counts_refresh_without_touching_the_model(
    async_redis_client: redis.asyncio.Redis,
) -> None:
    await save(async_redis_client, KEY, Checkpoint(b"model", "3-0", 7, ticks=1, samples=1))
    pipe = async_redis_client.pipeline(transaction=False)
    queue_status(pipe, KEY, samples=50, ticks=60)
    await pipe.execute()
    back = await load(async_redis_client, KEY)
    assert back is not None
    assert (back.model, back.last_id, back.samples, back.ticks) == (b"model", "3-0", 50, 60)


@pytest.mark.parametrize(
    "fields",
    [
        {b"v": b"99", b"model": b"x", b"last_id": b"1-0", b"last_t": b"1"},
        {b"v": b"1", b"model": b"x", b"last_t": b"1"},
        {b"v": b"1", b"model": b"x", b"last_id": b"1-0", b"last_t": b"soon"},
    ],
)
def test_malformed_checkpoints_raise_a_checkpoint_error(fields: dict[bytes, bytes]) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint.from_fields(fields)


async def test_the_last_published_sample_time_is_read_from_the_signal_stream(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis
) -> None:
    key = "tickcast:{sim:BTCUSDT}:signals"
    assert await last_published_t(async_redis_client, key) == 0
    for t in (1_000, 1_100, 1_200):
        fields = signal_fields(
            venue="sim",
            symbol="BTC/USDT:USDT",
            t_ms=t,
            horizon_ms=1000,
            ret_bps=0.0,
            p_up=0.5,
            ref_price=1.0,
            model_version=0,
            hit_rate=None,
            ic=None,
            skill_vs_zero=None,
            latency_us=1,
        )
        redis_client.xadd(key, encode_signal(fields))  # type: ignore[arg-type]
    assert await last_published_t(async_redis_client, key) == 1_200


async def test_a_signal_an_older_version_published_with_nulls_still_marks_its_sample(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis
) -> None:
    key = "tickcast:{sim:BTCUSDT}:signals"
    null_valued = {"v": 1, "venue": "sim", "t_ms": 1_200, "ret_bps": None, "p_up": None}
    redis_client.xadd(key, {"s": orjson.dumps({**null_valued, "t_ms": 1_100})})
    redis_client.xadd(key, {"s": orjson.dumps(null_valued)})
    redis_client.xadd(key, {"s": orjson.dumps({**null_valued, "t_ms": 4_102_444_800_000})})
    redis_client.xadd(key, {"s": b"not json"})
    assert await last_published_t(async_redis_client, key) == 1_200
