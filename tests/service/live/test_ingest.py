"""Simulator -> feed -> ingester -> Redis: every tick accounted for, Redis outages survived."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import redis
import redis.asyncio

from tickcast.service.bus.connection import connect
from tickcast.service.bus.embedded import EmbeddedRedis
from tickcast.service.bus.keys import ticks_key
from tickcast.service.bus.reader import iter_range
from tickcast.service.bus.writer import TickWriter
from tickcast.service.feed.shell import Feed, FeedConfig
from tickcast.service.live.ingest import Ingester
from tickcast.service.ops.config import Settings
from tickcast.service.sim.market import SyntheticMarket
from tickcast.service.sim.server import SimExchange
from tickcast.service.ticks import Tick
from tickcast.service.venues.binance.usdm import VENUE

from support import until

SYMBOLS = ["BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"]


def settings_for(url: str) -> Settings:
    return Settings(
        redis={"url": url, "retry_attempts": 0, "socket_timeout_s": 1.0, "connect_timeout_s": 1.0}
    )


def feed_for(sim: SimExchange, **kwargs: Any) -> Feed:
    cfg = FeedConfig(backoff_base_s=0.02, backoff_cap_s=0.1, **kwargs)
    markets = [VENUE.market(s) for s in SYMBOLS]
    return Feed(VENUE, markets, sim.urls_for(VENUE), cfg, label="sim", rng=np.random.default_rng(0))


@contextlib.asynccontextmanager
async def ingesting(ingester: Ingester) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``ingester`` for the duration of the block, then stop it and wait for its flush."""
    task = asyncio.get_running_loop().create_task(ingester.run())
    try:
        yield task
    finally:
        ingester.stop()
        await asyncio.wait_for(task, 10.0)


def stored(client: redis.Redis, symbol: str) -> list[Tick]:
    return [t for _, t in iter_range(client, ticks_key("tickcast", "sim", symbol))]


def key(tick: Tick) -> Tick:
    return tick._replace(recv_ns=0)


async def test_every_tick_of_the_simulator_lands_in_its_symbols_stream_in_order(
    redis_url: str, redis_client: redis.Redis
) -> None:
    ticks = list(SyntheticMarket(seed=31).ticks(40.0))
    settings = settings_for(redis_url)
    client = connect(redis_url, settings)
    async with SimExchange(iter(ticks), speed=0) as sim:
        feed = feed_for(sim)
        ingester = Ingester.from_settings(feed, TickWriter(client, settings), settings)
        async with ingesting(ingester):
            await until(lambda: ingester.stats.written >= len(ticks))
    await client.aclose()
    for symbol in SYMBOLS:
        assert [key(t) for t in stored(redis_client, symbol)] == [
            key(t) for t in ticks if t.symbol == symbol
        ]
    counters = ingester.counters()
    assert counters["received"] == counters["written"] == len(ticks)
    assert counters["dropped"] == counters["rejected"] == counters["queue_depth"] == 0
    assert counters["reconnects"] == counters["gaps"] == counters["watchdog_trips"] == 0
    assert counters["batches"] < len(ticks)  # batched, not one write per tick
    per_key = Counter((t.symbol, t.kind) for t in ticks)
    assert ingester.stats.received_by == ingester.stats.written_by == per_key
    assert ingester.stats.batch_sizes.count == counters["batches"]


async def test_a_redis_restart_mid_run_loses_no_tick_within_the_buffer_bound(
    redis_server: EmbeddedRedis, redis_url: str, redis_client: redis.Redis
) -> None:
    ticks = list(SyntheticMarket(seed=32).ticks(120.0))
    settings = settings_for(redis_url)
    client = connect(redis_url, settings)
    async with SimExchange(iter(ticks), speed=40.0, start_on_subscribe=True) as sim:
        feed = feed_for(sim)
        writer = TickWriter(client, settings)
        ingester = Ingester(feed, writer, queue_max=len(ticks), batch_max=100, retry_cap_s=0.1)
        async with ingesting(ingester):
            await until(lambda: ingester.stats.written > len(ticks) // 10)
            await asyncio.to_thread(redis_server.stop)
            failures = ingester.stats.write_errors
            await until(lambda: ingester.stats.write_errors > failures + 2)
            buffered = ingester.depth
            await asyncio.sleep(0.3)
            assert ingester.depth > buffered  # the feed kept going while Redis was down
            await asyncio.to_thread(redis_server.start)
            await until(lambda: ingester.stats.received >= len(ticks))
            await until(lambda: ingester.depth == 0)
    await client.aclose()
    assert ingester.stats.dropped == 0
    assert ingester.stats.write_errors > 2
    for symbol in SYMBOLS:
        got = Counter(key(t) for t in stored(redis_client, symbol))
        want = [key(t) for t in ticks if t.symbol == symbol]
        assert set(got) == set(want)  # nothing lost (at-least-once: a cut batch may repeat)
        assert sum(got.values()) - len(want) <= 100


async def test_ticks_beyond_the_bound_are_dropped_and_counted_while_redis_is_down(
    redis_server: EmbeddedRedis, redis_url: str, redis_client: redis.Redis
) -> None:
    ticks = list(SyntheticMarket(seed=33).ticks(20.0))
    settings = settings_for(redis_url)
    await asyncio.to_thread(redis_server.stop)
    client = connect(redis_url, settings)
    bound = 300
    async with SimExchange(iter(ticks), speed=0) as sim:
        feed = feed_for(sim)
        ingester = Ingester(
            feed, TickWriter(client, settings), queue_max=bound, batch_max=50, retry_cap_s=0.05
        )
        async with ingesting(ingester):
            await until(lambda: ingester.stats.received >= len(ticks))
            assert ingester.depth == bound
            assert ingester.stats.dropped == len(ticks) - bound
            assert ingester.stats.written == 0
            await asyncio.to_thread(redis_server.start)
            await until(lambda: ingester.stats.written >= bound)
    await client.aclose()
    kept = sorted(key(t) for s in SYMBOLS for t in stored(redis_client, s))
    assert kept == sorted(key(t) for t in ticks[:bound])  # the oldest are kept, the tail dropped
    assert ingester.counters()["dropped"] == len(ticks) - bound
    assert ingester.stats.dropped_by == Counter((t.symbol, t.kind) for t in ticks[bound:])


async def test_stopping_flushes_a_partly_filled_batch_before_returning(
    redis_url: str, redis_client: redis.Redis
) -> None:
    ticks = list(SyntheticMarket(seed=34).ticks(10.0))
    settings = settings_for(redis_url)
    client = connect(redis_url, settings)
    async with SimExchange(iter(ticks), speed=0) as sim:
        feed = feed_for(sim)
        ingester = Ingester(
            feed, TickWriter(client, settings), batch_max=10**5, flush_interval_s=60.0
        )
        async with ingesting(ingester):
            await until(lambda: ingester.stats.received >= len(ticks))
            assert ingester.stats.written == 0  # waiting for a full batch
    await client.aclose()
    assert ingester.stats.written == len(ticks) and ingester.stats.dropped_at_stop == 0
    assert sum(len(stored(redis_client, s)) for s in SYMBOLS) == len(ticks)


async def test_cancelling_the_ingester_also_flushes_then_propagates(
    redis_url: str, redis_client: redis.Redis
) -> None:
    ticks = list(SyntheticMarket(seed=35).ticks(10.0))
    settings = settings_for(redis_url)
    client = connect(redis_url, settings)
    async with SimExchange(iter(ticks), speed=0) as sim:
        ingester = Ingester(
            feed_for(sim), TickWriter(client, settings), batch_max=10**5, flush_interval_s=60.0
        )
        task = asyncio.get_running_loop().create_task(ingester.run())
        await until(lambda: ingester.stats.received >= len(ticks))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10.0)
    await client.aclose()
    assert ingester.stats.written == len(ticks)
    assert sum(len(stored(redis_client, s)) for s in SYMBOLS) == len(ticks)


async def test_a_batch_resent_after_a_redis_stall_is_stored_once(
    redis_server: EmbeddedRedis, redis_url: str, redis_client: redis.Redis
) -> None:
    """A stall longer than the socket timeout: the writer gives up on a batch that Redis
    executes when it wakes, and sends it again; the second copy must not be stored."""
    ticks = list(SyntheticMarket(seed=38).ticks(60.0))
    settings = Settings(redis={"url": redis_url, "retry_attempts": 0, "socket_timeout_s": 0.3})
    client = connect(redis_url, settings)
    assert redis_server.pid is not None
    async with SimExchange(iter(ticks), speed=20.0, start_on_subscribe=True) as sim:
        feed = feed_for(sim)
        writer = TickWriter(client, settings)
        ingester = Ingester(feed, writer, batch_max=50, retry_base_s=0.05, retry_cap_s=0.2)
        async with ingesting(ingester):
            for _ in range(2):
                await until(lambda: ingester.depth > 0)  # a batch is about to go out
                os.kill(redis_server.pid, signal.SIGSTOP)
                try:
                    await until(
                        lambda errors=ingester.stats.write_errors: (
                            ingester.stats.write_errors > errors
                        )
                    )  # the batch timed out
                finally:
                    os.kill(redis_server.pid, signal.SIGCONT)
            await until(lambda: ingester.stats.received >= len(ticks))
            await until(lambda: ingester.depth == 0)
    await client.aclose()
    kept = [key(t) for s in SYMBOLS for t in stored(redis_client, s)]
    assert len(kept) == len(set(kept)) == len(ticks)
    assert sorted(kept) == sorted(key(t) for t in ticks)
    assert writer.stats.duplicates > 0  # the stall did make Redis see a batch twice
    assert writer.stats.written + writer.stats.duplicates == ingester.stats.written == len(ticks)


async def test_refused_ticks_are_counted_by_reason_and_never_stored(
    redis_url: str, redis_client: redis.Redis
) -> None:
    ticks = list(SyntheticMarket(seed=37).ticks(10.0))
    trade = next(i for i, t in enumerate(ticks) if t.kind == "trade" and i > 10)
    spiked = ticks[trade]._replace(price=ticks[trade].price * 10.0)
    ticks[trade] = spiked
    huge_id = ticks[-1]._replace(update_id=2**70, kind="quote")  # more than the bus encodes
    settings = settings_for(redis_url)
    client = connect(redis_url, settings)
    async with SimExchange(iter(ticks), speed=0) as sim:
        feed = feed_for(sim, max_price_jump=0.5)
        ingester = Ingester.from_settings(feed, TickWriter(client, settings), settings)
        async with ingesting(ingester):
            await until(lambda: ingester.stats.received >= len(ticks) - 1)
            ingester.sink([huge_id])  # as a feed would hand it over
            await until(lambda: ingester.depth == 0)
    await client.aclose()
    rejected, _ = ingester.reasons()
    assert rejected == {"price jump": 1, "unencodable value": 1}
    kept = [key(t) for s in SYMBOLS for t in stored(redis_client, s)]
    assert len(kept) == len(ticks) - 1
    assert key(spiked) not in kept and key(huge_id) not in kept


async def test_a_redis_that_refuses_the_credentials_stops_the_ingester(redis_url: str) -> None:
    settings = settings_for(redis_url)
    client = redis.asyncio.Redis.from_url(redis_url.replace("redis://", "redis://who:wrong@"))
    async with SimExchange(SyntheticMarket(seed=36).ticks(5.0), speed=0) as sim:
        ingester = Ingester(feed_for(sim), TickWriter(client, settings), drain_timeout_s=0.5)
        with pytest.raises(redis.exceptions.AuthenticationError):
            await asyncio.wait_for(ingester.run(), 10.0)
    await client.aclose()
    assert ingester.stats.written == 0 and ingester.stats.write_errors == 0


def test_the_ingest_command_fills_redis_from_the_simulated_exchange(
    redis_url: str, redis_client: redis.Redis
) -> None:
    env = {**os.environ, "TICKCAST__REDIS__URL": redis_url}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tickcast.service.cli",
            "ingest",
            "--exchange",
            "sim",
            "--symbols",
            "BTC/USDT:USDT,SOL/USDT:USDT",
            "--speed",
            "20",
            "--seconds",
            "1.5",
            "--metrics-port",
            "0",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    btc = stored(redis_client, "BTC/USDT:USDT")
    sol = stored(redis_client, "SOL/USDT:USDT")
    assert len(btc) > 20 and len(sol) > 20
    assert stored(redis_client, "ETH/USDT:USDT") == []
    assert {t.venue for t in btc + sol} == {"sim"}
    assert "written" in out.stderr
