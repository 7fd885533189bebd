"""The Redis bus: key names, exact tick encoding, batched writes and reads by stream ID."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import orjson
import pytest
import redis
import redis.asyncio
from redis.crc import key_slot

from tickcast.service.bus.codec import (
    TICK_VERSION,
    BusDecodeError,
    BusEncodeError,
    decode,
    decode_flat,
    decode_tick,
    encode,
    encode_tick,
)
from tickcast.service.bus.connection import connect
from tickcast.service.bus.embedded import EmbeddedRedis
from tickcast.service.bus.keys import (
    InvalidSymbolError,
    ckpt_key,
    signals_key,
    symbol_tag,
    ticks_key,
)
from tickcast.service.bus.reader import TickReader, iter_range, read_range
from tickcast.service.bus.writer import TickWriter
from tickcast.service.ops.config import Settings, load_settings
from tickcast.service.ticks import Tick, quote, trade

SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT")


def make_ticks(n: int, rng: np.random.Generator, venue: str = "sim") -> list[Tick]:
    """``n`` valid trades and quotes over SYMBOLS with awkward float values."""
    out: list[Tick] = []
    for i in range(n):
        symbol = SYMBOLS[int(rng.integers(len(SYMBOLS)))]
        event_ms = 1_722_000_000_000 + i
        recv_ns = event_ms * 1_000_000 + int(rng.integers(1_000_000))
        price = float(rng.uniform(0.5, 2.0) * 10.0 ** rng.integers(-8, 6))
        size = float(rng.lognormal(0.0, 2.0))
        if rng.random() < 0.5:
            side = 1 if rng.random() < 0.5 else -1
            out.append(trade(venue, symbol, event_ms, recv_ns, price, size, side, str(i)))
        else:
            ask = price * (1.0 + float(rng.uniform(0.0, 1e-3)))
            out.append(quote(venue, symbol, event_ms, recv_ns, price, size, ask, size / 3, i))
    return out


def settings_with(**overrides: object) -> Settings:
    return load_settings(None, dict(overrides))


# -- keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unified", "tag"),
    [
        ("BTC/USDT:USDT", "BTCUSDT"),
        ("ETH/USDT:USDT", "ETHUSDT"),
        ("1000PEPE/USDT:USDT", "1000PEPEUSDT"),
        ("BTC/USD:BTC", "BTCUSD_BTC"),
        ("BTC/USDC:USDC", "BTCUSDC"),
        ("ETH/USDT", "ETHUSDT"),
        ("BTC/USDT:USDT-250926", "BTCUSDT_250926"),
        ("BTC/USD:BTC-250926-60000-C", "BTCUSD_BTC_250926_60000_C"),
    ],
)
def test_symbol_tag_maps_unified_symbols_to_venue_style_ids(unified: str, tag: str) -> None:
    assert symbol_tag(unified) == tag


@pytest.mark.parametrize(
    "bad", ["BTCUSDT", "BTC/", "/USDT", "BTC/USDT:", "BT{C/USDT:USDT", "BTC /USDT", "A/B:C:D"]
)
def test_symbol_tag_rejects_what_is_not_a_unified_symbol(bad: str) -> None:
    with pytest.raises(InvalidSymbolError):
        symbol_tag(bad)


def test_the_keys_of_a_symbol_share_one_cluster_hash_slot() -> None:
    keys = [
        f("tickcast", "binanceusdm", "BTC/USDT:USDT") for f in (ticks_key, signals_key, ckpt_key)
    ]
    assert keys == [
        "tickcast:{binanceusdm:BTCUSDT}:ticks",
        "tickcast:{binanceusdm:BTCUSDT}:signals",
        "tickcast:{binanceusdm:BTCUSDT}:ckpt",
    ]
    slots = {key_slot(key.encode()) for key in keys}
    assert slots == {key_slot(b"binanceusdm:BTCUSDT")}
    assert key_slot(ticks_key("tickcast", "binanceusdm", "ETH/USDT:USDT").encode()) not in slots


def test_a_venue_that_would_break_the_hash_tag_is_rejected() -> None:
    for venue in ("", "bin}ance", "a:b", "has space"):
        with pytest.raises(InvalidSymbolError):
            ticks_key("tickcast", venue, "BTC/USDT:USDT")


# -- encode / decode ------------------------------------------------------------------------


def test_encode_then_decode_is_exact_for_every_field_and_type() -> None:
    ticks = make_ticks(3000, np.random.default_rng(7))
    ticks += [
        trade("v", "X/Y:Y", 1, 2**62, 5e-324, 1.7976931348623157e308, -1, "ü-id-☃"),
        trade("v", "X/Y:Y", 1, 2, 0.1 + 0.2, 1e-300, 1, ""),
        quote("v", "X/Y:Y", 1, 2, 1 / 3, 0.0, 2 / 3, 7.0, 2**63 - 1),
    ]
    for tick in ticks:
        entry = encode(tick)
        assert entry[b"v"] == str(TICK_VERSION).encode()
        back = decode(entry)
        assert back == tick
        assert [type(x) for x in back] == [type(x) for x in tick]


def test_integers_in_float_fields_decode_as_equal_floats() -> None:
    tick = trade("sim", "BTC/USDT:USDT", 10, 20, 60000, 2, 1, "7")
    back = decode_tick(encode_tick(tick))
    assert back == tick
    assert type(back.price) is float and type(back.size) is float


def test_non_finite_floats_cannot_be_encoded() -> None:
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(BusEncodeError):
            encode_tick(trade("sim", "BTC/USDT:USDT", 1, 2, bad, 1.0, 1, "1"))
    named_null = trade("null", "BTC/USDT:USDT", 1, 2, 1.0, 1.0, 1, "null")
    assert decode_tick(encode_tick(named_null)) == named_null


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({b"t": b"[]"}, "version"),
        ({b"v": b"99", b"t": b"[]"}, "version"),
        ({b"v": b"1"}, "no 't' field"),
        ({b"v": b"1", b"t": b"{not json"}, "not JSON"),
        ({b"v": b"1", b"t": b'{"a": 1}'}, "array of 14"),
        ({b"v": b"1", b"t": b'["sim", "X/Y:Y", "trade", 1, 2]'}, "array of 14"),
        (
            {b"v": b"1", b"t": b'["s","X/Y:Y","trade",1,2,"1.0",1.0,1,"1",0.0,0.0,0.0,0.0,0]'},
            "price is str",
        ),
        (
            {b"v": b"1", b"t": b'["s","X/Y:Y","trade",1,2,null,1.0,1,"1",0.0,0.0,0.0,0.0,0]'},
            "price is NoneType",
        ),
        (
            {b"v": b"1", b"t": b'["s","X/Y:Y","trade",1,2,1.0,1.0,true,"1",0.0,0.0,0.0,0.0,0]'},
            "side is bool",
        ),
    ],
)
def test_malformed_entries_raise_a_bus_decode_error(fields: dict[bytes, bytes], match: str) -> None:
    with pytest.raises(BusDecodeError, match=match):
        decode(fields)
    flat = [x for pair in fields.items() for x in pair]
    with pytest.raises(BusDecodeError, match=match):
        decode_flat(flat)


def test_a_flat_field_list_decodes_like_the_field_map_in_any_order() -> None:
    tick = quote("sim", "ETH/USDT:USDT", 5, 6, 10.5, 2.0, 10.75, 3.0, 99)
    fields = encode(tick)
    assert decode_flat([b"v", fields[b"v"], b"t", fields[b"t"]]) == tick
    assert decode_flat([b"t", fields[b"t"], b"v", fields[b"v"]]) == tick


def test_a_decode_error_is_chained_to_its_cause() -> None:
    with pytest.raises(BusDecodeError) as info:
        decode_tick(b"\xff garbage")
    assert isinstance(info.value.__cause__, orjson.JSONDecodeError)


# -- writer ---------------------------------------------------------------------------------


async def test_written_ticks_land_in_their_symbol_streams_in_order(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis
) -> None:
    ticks = make_ticks(5000, np.random.default_rng(1))
    redis_client.config_resetstat()
    writer = TickWriter(async_redis_client, Settings())
    for start in range(0, len(ticks), 1000):
        await writer.write(ticks[start : start + 1000])
    assert (writer.stats.written, writer.stats.batches, writer.stats.rejected) == (5000, 5, 0)
    for symbol in SYMBOLS:
        key = ticks_key("tickcast", "sim", symbol)
        stored = [tick for _, tick in read_range(redis_client, key)]
        assert stored == [t for t in ticks if t.symbol == symbol]
    stats = redis_client.info("commandstats")["cmdstat_xadd"]
    assert stats["calls"] == 5000


async def test_the_key_prefix_comes_from_the_settings(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis
) -> None:
    writer = TickWriter(async_redis_client, settings_with(**{"redis.prefix": "tc-other"}))
    await writer.write(make_ticks(10, np.random.default_rng(2)))
    keys = {k.decode() for k in redis_client.keys("*")}
    assert keys and all(k.startswith("tc-other:{sim:") and k.endswith("}:ticks") for k in keys)


async def test_streams_are_trimmed_near_the_configured_maxlen(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis
) -> None:
    ticks = [trade("sim", "BTC/USDT:USDT", i + 1, i, 1.0, 1.0, 1, str(i)) for i in range(3000)]
    writer = TickWriter(async_redis_client, settings_with(**{"redis.tick_maxlen": 200}))
    await writer.write(ticks)
    key = ticks_key("tickcast", "sim", "BTC/USDT:USDT")
    length = redis_client.xlen(key)
    assert 200 <= length < 400
    assert [t for _, t in read_range(redis_client, key)] == ticks[-length:]


async def test_an_unencodable_tick_is_counted_and_the_rest_are_written(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis
) -> None:
    good = make_ticks(20, np.random.default_rng(3))
    bad = trade("sim", "BTC/USDT:USDT", 5, 5, math.nan, 1.0, 1, "x")
    writer = TickWriter(async_redis_client, Settings())
    await writer.write([*good[:10], bad, *good[10:]])
    assert (writer.stats.written, writer.stats.rejected) == (20, 1)
    await writer.write([bad])
    assert (writer.stats.written, writer.stats.rejected, writer.stats.batches) == (20, 2, 1)
    assert sum(redis_client.xlen(ticks_key("tickcast", "sim", s)) for s in SYMBOLS) == 20
    # an integer orjson cannot write (a time of 1e300 once reached the writer): counted too
    huge = bad._replace(price=1.0, event_ms=10**300)
    assert await writer.write([huge, good[0]]) == [huge]
    assert (writer.stats.written, writer.stats.rejected) == (21, 3)


async def test_redis_errors_reach_the_caller(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis
) -> None:
    tick = trade("sim", "BTC/USDT:USDT", 1, 1, 1.0, 1.0, 1, "1")
    redis_client.set(ticks_key("tickcast", "sim", "BTC/USDT:USDT"), "not a stream")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        await TickWriter(async_redis_client, Settings()).write([tick])


async def test_entry_ids_are_receive_times_kept_strictly_increasing_per_stream(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis
) -> None:
    ms = 1_722_000_000_000
    ticks = [
        trade("sim", "BTC/USDT:USDT", ms, recv_ms * 1_000_000, 60_000.0, 1.0, 1, str(i))
        for i, recv_ms in enumerate((ms + 5, ms + 5, ms + 3, ms + 9))  # the clock stepped back
    ]
    writer = TickWriter(async_redis_client, Settings())
    await writer.write(ticks)
    key = ticks_key("tickcast", "sim", "BTC/USDT:USDT")
    ids = [entry_id for entry_id, _ in redis_client.xrange(key)]
    assert ids == [b"%d-0" % (ms + 5), b"%d-1" % (ms + 5), b"%d-2" % (ms + 5), b"%d-0" % (ms + 9)]
    restarted = TickWriter(async_redis_client, Settings())  # a new process: reads the top first
    await restarted.write([ticks[0]._replace(trade_id="4")])
    assert redis_client.xrevrange(key, count=1)[0][0] == b"%d-1" % (ms + 9)


async def test_a_prepared_batch_sent_twice_is_stored_once(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis
) -> None:
    ticks = make_ticks(300, np.random.default_rng(7))
    writer = TickWriter(async_redis_client, Settings())
    batch = await writer.prepare(ticks)
    await writer.send(batch)
    await writer.send(batch)  # as after a timeout whose first attempt Redis did execute
    stored = [
        t for s in SYMBOLS for _, t in read_range(redis_client, ticks_key("tickcast", "sim", s))
    ]
    assert sorted(stored) == sorted(ticks)
    assert (writer.stats.written, writer.stats.duplicates) == (300, 300)


async def test_a_write_while_redis_is_down_raises_and_a_later_one_succeeds(
    redis_server: EmbeddedRedis, redis_url: str
) -> None:
    settings = settings_with(**{"redis.retry_attempts": 0, "redis.connect_timeout_s": 1.0})
    client = connect(redis_url, settings)
    writer = TickWriter(client, settings)
    ticks = make_ticks(10, np.random.default_rng(4))
    try:
        await writer.write(ticks[:5])
        redis_server.stop()
        with pytest.raises(redis.ConnectionError):
            await writer.write(ticks[5:])
        redis_server.start()
        await writer.write(ticks[5:])
        sync = redis.Redis.from_url(redis_url)
        stored = [t for s in SYMBOLS for _, t in read_range(sync, ticks_key("tickcast", "sim", s))]
        sync.close()
        assert sorted(stored) == sorted(ticks)
        assert writer.stats.written == 10
    finally:
        await client.aclose()


def test_the_session_fixture_restarts_on_the_same_port_with_its_data(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    port = redis_server.port
    redis_client.set("kept", "yes")
    redis_server.stop()
    assert not redis_server.running
    redis_server.start()
    assert redis_server.port == port
    assert redis_client.get("kept") == b"yes"


# -- connecting -----------------------------------------------------------------------------


async def whoami(url: str, settings: Settings) -> str:
    client = connect(url, settings)
    try:
        name = await client.acl_whoami()
        return name.decode() if isinstance(name, bytes) else str(name)
    finally:
        await client.aclose()


async def test_a_url_with_username_and_password_works(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    redis_client.acl_setuser(
        "alice", enabled=True, passwords=["+pw-alice"], keys="*", commands=["+@all"]
    )
    try:
        with_creds = f"redis://alice:pw-alice@127.0.0.1:{redis_server.port}/0"
        assert await whoami(with_creds, Settings()) == "alice"
        client = connect(with_creds, Settings())
        tick = trade("sim", "BTC/USDT:USDT", 1, 1, 1.0, 1.0, 1, "1")
        try:
            await TickWriter(client, Settings()).write([tick])
        finally:
            await client.aclose()
        assert read_range(redis_client, ticks_key("tickcast", "sim", tick.symbol))[0][1] == tick
        from_settings = settings_with(**{"redis.username": "alice", "redis.password": "pw-alice"})
        assert await whoami(redis_server.url, from_settings) == "alice"
        with pytest.raises(redis.AuthenticationError):
            await whoami(f"redis://alice:nope@127.0.0.1:{redis_server.port}/0", Settings())
    finally:
        redis_client.acl_deluser("alice")


# -- readers --------------------------------------------------------------------------------


async def test_the_reader_continues_from_stream_ids_across_symbols(
    async_redis_client: redis.asyncio.Redis,
) -> None:
    ticks = make_ticks(600, np.random.default_rng(5))
    settings = Settings()
    await TickWriter(async_redis_client, settings).write(ticks)
    reader = TickReader(async_redis_client, settings)
    positions = {reader.key("sim", s): "0-0" for s in SYMBOLS}
    got: dict[str, list[Tick]] = {s: [] for s in SYMBOLS}
    while True:
        batch = await reader.read(positions, count=64)
        if not batch:
            break
        for symbol, stream_id, tick in batch:
            assert tick.symbol == symbol
            got[symbol].append(tick)
            positions[reader.key("sim", symbol)] = stream_id
    assert positions == reader.positions
    for symbol in SYMBOLS:
        assert got[symbol] == [t for t in ticks if t.symbol == symbol]
    assert reader.stats.read == 600


async def test_a_blocking_read_wakes_up_when_a_tick_arrives(
    async_redis_client: redis.asyncio.Redis, redis_url: str
) -> None:
    settings = Settings()
    reader = TickReader(async_redis_client, settings)
    key = reader.key("sim", "BTC/USDT:USDT")
    assert await reader.read({key: "0-0"}, block_ms=10) == []
    writer_client = connect(redis_url, settings)
    tick = trade("sim", "BTC/USDT:USDT", 1, 1, 1.0, 1.0, 1, "1")

    async def write_later() -> None:
        await asyncio.sleep(0.05)
        await TickWriter(writer_client, settings).write([tick])

    got, _ = await asyncio.wait_for(
        asyncio.gather(reader.read({key: "$"}, block_ms=4000), write_later()), timeout=10
    )
    await writer_client.aclose()
    assert [t for _, _, t in got] == [tick]


async def test_a_block_longer_than_the_socket_timeout_is_refused(
    async_redis_client: redis.asyncio.Redis,
) -> None:
    reader = TickReader(async_redis_client, settings_with(**{"redis.socket_timeout_s": 1.0}))
    for block_ms in (0, 1000, 5000):
        with pytest.raises(ValueError, match="block_ms"):
            await reader.read({"k": "0-0"}, block_ms=block_ms)


async def test_undecodable_entries_are_skipped_counted_and_passed_over(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis
) -> None:
    settings = Settings()
    tick = trade("sim", "BTC/USDT:USDT", 1, 1, 1.0, 1.0, 1, "1")
    key = ticks_key("tickcast", "sim", "BTC/USDT:USDT")
    await TickWriter(async_redis_client, settings).write([tick])
    bad_id = redis_client.xadd(key, {"v": "99", "t": "[]"}).decode()
    reader = TickReader(async_redis_client, settings)
    got = await reader.read({key: "0-0"})
    assert [t for _, _, t in got] == [tick]
    assert reader.stats.undecodable == 1
    assert reader.positions[key] == bad_id
    assert await reader.read(reader.positions) == []
    with pytest.raises(BusDecodeError):
        read_range(redis_client, key)


async def test_iter_range_pages_through_a_whole_stream(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis
) -> None:
    ticks = [trade("sim", "SOL/USDT:USDT", i + 1, i, 150.0, 1.0, 1, str(i)) for i in range(50)]
    await TickWriter(async_redis_client, Settings()).write(ticks)
    key = ticks_key("tickcast", "sim", "SOL/USDT:USDT")
    pages = list(iter_range(redis_client, key, batch=7))
    assert [t for _, t in pages] == ticks
    ids = [stream_id for stream_id, _ in pages]
    assert [t for _, t in iter_range(redis_client, key, start=ids[10], batch=4)] == ticks[10:]
    assert list(iter_range(redis_client, key, batch=50))[-1][0] == ids[-1]
