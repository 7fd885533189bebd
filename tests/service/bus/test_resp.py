"""The fast lane: pre-packed command batches on one pool connection, redis-py's error types."""

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio

from tickcast.service.bus.connection import connect
from tickcast.service.bus.embedded import EmbeddedRedis
from tickcast.service.bus.resp import Lane, pack
from tickcast.service.ops.config import Settings, load_settings


async def test_a_batch_returns_every_reply_in_order(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis
) -> None:
    lane = Lane(async_redis_client)
    batch = [pack("SET", "a", b"\x00bin\r\n"), pack("INCRBY", "n", 41), pack("GET", "a")]
    batch.append(pack("XADD", "s", "MAXLEN", "~", 10, "*", "f", "v"))
    replies = await lane.call(b"".join(batch), len(batch))
    assert replies[:3] == [b"OK", 41, b"\x00bin\r\n"]
    assert redis_client.xrange("s")[0][0] == replies[3]
    assert redis_client.get("n") == b"41"
    assert len(lane.times_ns) == 4 and lane.times_ns == sorted(lane.times_ns)


async def test_an_error_reply_raises_after_the_batch_and_the_lane_stays_usable(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis
) -> None:
    redis_client.set("str", "x")
    lane = Lane(async_redis_client)
    batch = [pack("XADD", "str", "*", "f", "v"), pack("SET", "after", "1")]
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        await lane.call(b"".join(batch), 2)
    assert redis_client.get("after") == b"1"  # the whole batch ran
    assert await lane.call(pack("PING"), 1) == [b"PONG"]


async def test_replies_of_sent_commands_are_read_before_the_next_calls_own(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis
) -> None:
    lane = Lane(async_redis_client)
    assert not lane.send(pack("SET", "early", "1"), 1)  # not connected yet: nothing sent
    await lane.call(pack("PING"), 1)
    assert lane.send(pack("SET", "k", "1") + pack("INCR", "k"), 2)
    assert await lane.call(pack("GET", "k"), 1) == [b"2"]
    assert redis_client.get("early") is None


async def test_a_blocking_read_waits_beyond_the_socket_timeout_it_extends(
    redis_url: str, redis_client: redis.Redis
) -> None:
    settings = load_settings(None, {"redis.socket_timeout_s": 0.2})
    client = connect(redis_url, settings)
    try:
        lane = Lane(client)
        reply = await lane.call(pack("XREAD", "BLOCK", 300, "STREAMS", "none", "$"), 1, 0.3)
        assert reply == [None]
        with pytest.raises(redis.TimeoutError):
            await lane.call(pack("XREAD", "BLOCK", 600, "STREAMS", "none", "$"), 1)
        assert await lane.call(pack("PING"), 1) == [b"PONG"]  # reconnected
    finally:
        await client.aclose()


async def test_a_lost_server_raises_connection_errors_and_the_lane_reconnects(
    redis_server: EmbeddedRedis, redis_url: str
) -> None:
    settings = load_settings(None, {"redis.retry_attempts": 0, "redis.connect_timeout_s": 1.0})
    client = connect(redis_url, settings)
    try:
        lane = Lane(client)
        await lane.call(pack("PING"), 1)
        await asyncio.to_thread(redis_server.stop)
        lane.send(pack("SET", "lost", "1"), 1)  # its reply can never come
        with pytest.raises(redis.ConnectionError):
            await lane.call(pack("PING"), 1)
        with pytest.raises(redis.ConnectionError):
            await lane.call(pack("PING"), 1)
        await asyncio.to_thread(redis_server.start)
        assert await lane.call(pack("PING"), 1) == [b"PONG"]
    finally:
        await client.aclose()


async def test_closing_the_client_closes_the_lane_connection(redis_url: str) -> None:
    client = connect(redis_url, Settings())
    lane = Lane(client)
    await lane.call(pack("PING"), 1)
    await client.aclose()
    assert not lane.send(pack("PING"), 1)


async def test_poll_tells_whether_the_owed_replies_are_in_without_waiting(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis
) -> None:
    lane = Lane(async_redis_client)
    await lane.call(pack("PING"), 1)
    assert lane.send(pack("SET", "x", "1") + pack("XREAD", "BLOCK", 2000, "STREAMS", "s", "$"), 2)
    assert lane.owed == 2
    for _ in range(20):
        assert not await lane.poll()  # the XREAD is blocked
    await asyncio.sleep(0.05)
    assert not await lane.poll()  # reads the SET reply, long in
    redis_client.xadd("s", {"f": "v"})
    for _ in range(10_000):
        if await lane.poll():
            break
        await asyncio.sleep(0.001)
    ok, streams = await lane.collect()
    assert ok == b"OK" and streams[0][0] == b"s" and streams[0][1][0][1] == [b"f", b"v"]
    assert lane.owed == 0
    set_at, read_at = lane.times_ns
    assert 0 < set_at < read_at, "the SET reply was read before the XREAD one came"
