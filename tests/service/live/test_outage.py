"""No silent loss around outages: a Redis outage longer than the lease costs no tick and no
restart; ticks a process cannot write are counted before it stops; and a restart counts the
trades nobody received while no process ingested."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from typing import Any

import pytest
import redis

from tickcast.service.bus import keys
from tickcast.service.bus.embedded import EmbeddedRedis
from tickcast.service.bus.reader import iter_range
from tickcast.service.live.service import Service
from tickcast.service.ops.config import Settings, load_settings
from tickcast.service.sim.market import SyntheticMarket
from tickcast.service.sim.server import SimExchange
from tickcast.service.ticks import TRADE
from tickcast.service.venues.binance.usdm import VENUE

from support import until

SYMBOLS = ["BTC/USDT:USDT", "ETH/USDT:USDT"]


def ingest_settings(redis_url: str, **more: Any) -> Settings:
    """An ingest-only service with a one-second lease and test-sized timeouts."""
    return load_settings(
        None,
        {
            "redis.url": redis_url,
            "redis.socket_timeout_s": 0.3,
            "redis.connect_timeout_s": 0.3,
            "redis.retry_attempts": 0,
            "worker.lease_ttl_s": 1.0,
            "worker.block_ms": 100,
            "exchange.symbols": SYMBOLS,
            "metrics.enabled": False,
            **more,
        },
    )


def stored_trade_ids(client: redis.Redis, venue: str, symbol: str) -> list[int]:
    stream = keys.ticks_key("tickcast", venue, symbol)
    return [int(t.trade_id) for _, t in iter_range(client, stream) if t.kind == TRADE]


@pytest.mark.parametrize("work", [False, True], ids=["ingest", "run"])
async def test_a_redis_outage_longer_than_the_lease_loses_no_tick_and_no_process(
    redis_server: EmbeddedRedis, redis_url: str, redis_client: redis.Redis, work: bool
) -> None:
    settings = ingest_settings(redis_url, **{"exchange.name": "sim", "sim.speed": 4.0})
    service = Service(settings, redis_url, work=work)
    run = asyncio.create_task(service.run(handle_signals=False))
    await asyncio.wait_for(service.ready.wait(), 15.0)
    ingester = service.ingesters["sim"]
    await until(lambda: ingester.stats.written > 50)
    assert redis_server.pid is not None
    os.kill(redis_server.pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(2.5)  # the 1 s leases expire meanwhile
    finally:
        os.kill(redis_server.pid, signal.SIGCONT)
    during = ingester.stats.received
    await until(lambda: ingester.stats.written > during and ingester.depth < 100, timeout=15.0)
    await asyncio.sleep(1.0)  # three lease renewals
    assert not run.done(), "the service took its leases back and went on"
    assert service.ingest_leases is not None
    for symbol in SYMBOLS:
        owner = redis_client.get(keys.symbol_key("tickcast", "sim", symbol, "ingester"))
        assert owner == service.ingest_leases.token.encode()
    if work:
        assert service.worker is not None and service.worker.leases is not None
        worker_token = service.worker.leases.token.encode()
        for symbol in SYMBOLS:
            assert redis_client.get(keys.symbol_key("tickcast", "sim", symbol, "owner")) == (
                worker_token
            )
    service.request_stop()
    assert await asyncio.wait_for(run, 15.0) == 0
    assert ingester.stats.write_errors > 0  # the outage was felt
    assert ingester.stats.dropped == ingester.stats.dropped_at_stop == 0
    assert ingester.stats.written == ingester.stats.received
    for symbol in SYMBOLS:
        ids = stored_trade_ids(redis_client, "sim", symbol)
        assert ids == list(range(ids[0], ids[0] + len(ids))), "every trade, once, in order"


async def test_ticks_held_when_the_lease_is_taken_are_dropped_counted_not_written(
    redis_url: str, redis_client: redis.Redis
) -> None:
    settings = ingest_settings(redis_url, **{"exchange.name": "sim", "sim.speed": 4.0})
    service = Service(settings, redis_url, work=False)
    run = asyncio.create_task(service.run(handle_signals=False))
    await asyncio.wait_for(service.ready.wait(), 15.0)
    ingester = service.ingesters["sim"]
    await until(lambda: ingester.stats.written > 20)
    ingester.flush_interval_s = 60.0  # hold what arrives from now on
    ingester.batch_max = 10**6
    await until(lambda: ingester.depth > 5)
    for symbol in SYMBOLS:  # another ingester took over
        redis_client.set(keys.symbol_key("tickcast", "sim", symbol, "ingester"), "elsewhere:1:x")
    assert await asyncio.wait_for(run, 15.0) == 1
    held = ingester.stats.dropped_at_stop
    assert held > 5
    assert ingester.stats.written + held == ingester.stats.received
    assert sum(ingester.stats.dropped_by.values()) == held
    stored = sum(redis_client.xlen(keys.ticks_key("tickcast", "sim", s)) for s in SYMBOLS)
    assert stored == ingester.stats.written, "nothing written after the lease was lost"


async def test_a_restart_counts_the_trades_nobody_received_as_a_gap(
    redis_url: str, redis_client: redis.Redis
) -> None:
    now_ms = time.time_ns() // 1_000_000
    market = SyntheticMarket(seed=41, start_ms=now_ms).ticks()
    async with SimExchange(market, speed=4.0) as sim:
        urls = sim.urls_for(VENUE)
        settings = ingest_settings(
            redis_url,
            **{"exchange.name": "binanceusdm", "exchange.urls": {"binanceusdm": urls}},
        )
        first_gaps = 0
        for run_no in range(2):
            service = Service(settings, redis_url, work=False, online=False)
            run = asyncio.create_task(service.run(handle_signals=False))
            await asyncio.wait_for(service.ready.wait(), 15.0)
            ingester = service.ingesters["binanceusdm"]
            feed = ingester.feed
            await until(lambda ingester=ingester: ingester.stats.written > 30)
            service.request_stop()
            assert await asyncio.wait_for(run, 15.0) == 0
            if run_no == 0:
                first_gaps = feed.stats.gaps
                await asyncio.sleep(1.0)  # the market goes on; nobody ingests
    assert first_gaps == 0
    missed = 0
    for symbol in SYMBOLS:
        ids = stored_trade_ids(redis_client, "binanceusdm", symbol)
        holes = [(a, b) for a, b in itertools.pairwise(ids) if b != a + 1]
        assert len(holes) == 1, "one hole per symbol: the restart"
        missed += holes[0][1] - holes[0][0] - 1
    assert feed.stats.gaps == len(SYMBOLS)
    assert feed.stats.missed_trades == missed > 0
