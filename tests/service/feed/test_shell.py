"""The websocket shell against the simulated exchange (Binance USDⓈ-M dialect): delivery,
subscriptions, reconnects, watchdog, keepalive, gaps and renewal."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from tickcast.service.feed.sequence import TradeSequence
from tickcast.service.feed.shell import Feed, FeedConfig
from tickcast.service.feed.stats import FeedStats
from tickcast.service.sim.faults import FaultConfig
from tickcast.service.sim.market import SyntheticMarket
from tickcast.service.sim.server import SimExchange
from tickcast.service.ticks import Tick
from tickcast.service.venues.binance.usdm import VENUE, BinanceUsdm
from tickcast.service.venues.markets import (
    MarketError,
    ccxt_markets,
    from_ccxt,
    load_markets,
)
from tickcast.service.venues.venue import SimKeepalive

from support import running, until

SYMBOLS = ["BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"]
MARKETS = [VENUE.market(s) for s in SYMBOLS]


def feed_for(
    sim: SimExchange,
    *,
    channels: Sequence[str] = ("trade", "bookTicker"),
    subscribe_by: str = "url",
    urls: dict[str, str] | None = None,
    **kwargs: Any,
) -> Feed:
    """A Binance USDⓈ-M feed pointed at ``sim``, with test-sized timeouts."""
    base: dict[str, Any] = {
        "watchdog_s": 5.0,
        "backoff_base_s": 0.02,
        "backoff_cap_s": 0.1,
        "close_timeout_s": 0.2,
    }
    base.update(kwargs)
    venue = BinanceUsdm(channels, subscribe_by)
    return Feed(
        venue,
        MARKETS,
        urls or sim.urls_for(venue),
        FeedConfig(**base),
        label="sim",
        rng=np.random.default_rng(0),
    )


def key(tick: Tick) -> Tick:
    return tick._replace(recv_ns=0)


async def test_every_tick_of_the_market_arrives_once_in_order_by_url_subscription() -> None:
    ticks = list(SyntheticMarket(seed=1).ticks(20.0))
    async with SimExchange(iter(ticks), speed=0) as sim:
        feed = feed_for(sim)
        async with running(feed) as got:
            await until(lambda: len(got) >= len(ticks))
            await sim.wait_sent(5.0)
    assert [key(t) for t in got] == [key(t) for t in ticks]
    assert all(t.recv_ns > 0 for t in got)
    assert feed.stats.connects == 1 and feed.stats.reconnects == 0
    assert feed.stats.gaps == feed.stats.duplicate_trades == 0
    assert feed.parser.stats.total_rejected == 0


async def test_subscribing_by_message_gets_an_ack_and_the_same_ticks() -> None:
    ticks = list(SyntheticMarket(seed=2).ticks(10.0))
    async with SimExchange(iter(ticks), speed=0) as sim:
        feed = feed_for(sim, subscribe_by="message")
        async with running(feed) as got:
            await until(lambda: len(got) >= len(ticks))
    assert [key(t) for t in got] == [key(t) for t in ticks]
    assert feed.stats.acks == 1


async def test_agg_trades_and_mark_prices_come_over_a_second_connection_on_the_market_route() -> (
    None
):
    ticks = list(SyntheticMarket(seed=3).ticks(10.0))
    trades = [t for t in ticks if t.kind == "trade"]
    async with SimExchange(iter(ticks), speed=0, min_streams=3 * len(SYMBOLS)) as sim:
        feed = feed_for(sim, channels=("trade", "aggTrade", "markPrice@1s"))
        async with running(feed) as got:
            await until(lambda: len(got) >= 2 * len(trades))
            paths = sorted(c.path.split("?")[0] for c in sim.clients)
    assert paths == ["/market/stream", "/public/stream"]
    assert len(got) == 2 * len(trades)
    for symbol, n in Counter(t.symbol for t in trades).items():
        # one aggTrade per trade, numbered like the trades: every id arrives twice
        ids = Counter(int(t.trade_id) for t in got if t.symbol == symbol)
        assert ids == dict.fromkeys(range(1, n + 1), 2)
    assert feed.parser.stats.skipped.get("mark price", 0) >= 9 * len(SYMBOLS)
    assert feed.stats.connects == 2 and feed.stats.reconnects == 0, "two routes, no reconnect"


async def test_a_dropped_connection_is_reopened_and_the_missed_trades_are_counted() -> None:
    faults = FaultConfig(drop_every_s=0.3)
    market = SyntheticMarket(seed=4, oracle_memory_s=None).ticks()
    async with SimExchange(market, speed=40.0, faults=faults) as sim:
        feed = feed_for(sim, backoff_base_s=0.05)
        async with running(feed) as got:
            await until(lambda: feed.stats.reconnects >= 2 and feed.stats.gaps >= 1)
            seen = len(got)
            await until(lambda: len(got) > seen + 50)
    assert feed.stats.errors >= 2
    assert feed.stats.missed_trades > 0
    assert feed.stats.duplicate_trades == 0
    assert sim.stats.fault_drops >= 2


async def test_a_silent_stream_trips_the_watchdog_and_the_feed_recovers_when_data_returns() -> None:
    faults = FaultConfig(silent=True)
    market = SyntheticMarket(seed=5, oracle_memory_s=None).ticks()
    async with SimExchange(market, speed=20.0, faults=faults) as sim:
        feed = feed_for(sim, watchdog_s=0.2)
        async with running(feed) as got:
            await until(lambda: feed.stats.watchdog_trips >= 2)
            assert got == []
            faults.silent = False
            await until(lambda: len(got) > 20)
    assert feed.stats.reconnects >= 2


async def test_an_ack_but_no_data_stream_trips_the_watchdog() -> None:
    faults = FaultConfig(ack_only=True)
    market = SyntheticMarket(seed=6, oracle_memory_s=None).ticks()
    async with SimExchange(market, speed=20.0, faults=faults) as sim:
        feed = feed_for(sim, subscribe_by="message", watchdog_s=0.2)
        async with running(feed) as got:
            await until(lambda: feed.stats.watchdog_trips >= 2)
    assert got == []
    assert feed.stats.acks >= 2


async def test_the_old_unrouted_url_acks_and_stays_silent_so_the_watchdog_fires() -> None:
    market = SyntheticMarket(seed=7, oracle_memory_s=None).ticks()
    async with SimExchange(market, speed=20.0) as sim:
        unrouted = {"public": sim.url, "market": sim.url}
        feed = feed_for(sim, urls=unrouted, subscribe_by="message", watchdog_s=0.2)
        async with running(feed) as got:
            await until(lambda: feed.stats.watchdog_trips >= 1)
    assert got == [] and feed.stats.acks >= 1


async def test_a_hung_peer_is_detected_by_the_feeds_own_keepalive() -> None:
    faults = FaultConfig()
    market = SyntheticMarket(seed=8, oracle_memory_s=None).ticks()
    async with SimExchange(market, speed=20.0, faults=faults) as sim:
        feed = feed_for(sim, watchdog_s=60.0, ping_every_s=0.05, pong_timeout_s=0.15)
        async with running(feed) as got:
            await until(lambda: len(got) > 10)
            faults.freeze = True
            await until(lambda: feed.stats.keepalive_timeouts >= 1)
            faults.freeze = False
            seen = len(got)
            await until(lambda: len(got) > seen + 10)
    assert feed.stats.watchdog_trips == 0 and feed.stats.reconnects >= 1


async def test_the_feed_answers_the_servers_pings_and_stays_connected() -> None:
    market = SyntheticMarket(seed=9, oracle_memory_s=None).ticks()
    keepalive = SimKeepalive(ws_ping_s=0.05, ws_ping_timeout_s=0.2)
    async with SimExchange(market, speed=5.0, keepalive=keepalive) as sim:
        feed = feed_for(sim, ping_every_s=60.0)
        async with running(feed):
            await asyncio.sleep(0.5)
            assert [c.latency_s > 0.0 for c in sim.clients] == [True]
    assert feed.stats.connects == 1 and feed.stats.errors == 0


async def test_malformed_frames_are_counted_and_skipped_without_losing_a_tick() -> None:
    ticks = list(SyntheticMarket(seed=10).ticks(20.0))
    async with SimExchange(iter(ticks), speed=0, faults=FaultConfig(malformed_every=25)) as sim:
        feed = feed_for(sim)
        async with running(feed) as got:
            await until(lambda: len(got) >= len(ticks))
            await sim.wait_sent(5.0)
            await asyncio.sleep(0.05)
    assert [key(t) for t in got] == [key(t) for t in ticks]
    stats = feed.parser.stats
    assert stats.total_rejected + stats.total_skipped == sim.stats.malformed_sent > 0
    assert feed.stats.frames == len(ticks) + sim.stats.malformed_sent


async def test_duplicated_trades_are_dropped_and_late_ones_kept() -> None:
    ticks = list(SyntheticMarket(seed=11).ticks(30.0))
    faults = FaultConfig(duplicate_every=7, reorder_every=11)
    async with SimExchange(iter(ticks), speed=0, faults=faults) as sim:
        feed = feed_for(sim)
        async with running(feed) as got:
            await until(lambda: len(got) >= len(ticks))
            await sim.wait_sent(5.0)
            await asyncio.sleep(0.05)
    assert sorted(key(t) for t in got) == sorted(key(t) for t in ticks)
    n_trades = sum(t.kind == "trade" for t in ticks)
    stats = feed.stats
    assert stats.duplicate_trades == sim.stats.events - len(ticks) > n_trades // 10
    assert stats.late_trades >= n_trades // 11 - len(SYMBOLS)
    assert stats.missed_trades == 0 and stats.gaps <= stats.late_trades


async def test_a_connection_is_renewed_before_it_reaches_its_age_limit() -> None:
    market = SyntheticMarket(seed=12, oracle_memory_s=None).ticks()
    async with SimExchange(market, speed=10.0) as sim:
        feed = feed_for(sim, max_connection_age_s=0.3, watchdog_s=0.4)
        async with running(feed) as got:
            await until(lambda: feed.stats.planned_reconnects >= 2)
            seen = len(got)
            await until(lambda: len(got) > seen + 10)
    assert feed.stats.errors == 0 and feed.stats.reconnects >= 2


async def test_an_unreachable_venue_is_retried_with_backoff_without_crashing() -> None:
    sim = SimExchange(iter(()), speed=0)
    await sim.start()
    feed = feed_for(sim)
    await sim.stop()  # the port is now closed
    async with running(feed) as got:
        await until(lambda: feed.stats.errors >= 3)
    assert got == [] and feed.stats.connects == 0
    assert feed.stats.attempts >= 3, "every attempt counts"
    assert feed.stats.reconnects == feed.stats.attempts - 1, "failed reconnects count too"
    assert not feed.routes["public"].connected


def test_trade_sequences_are_kept_per_symbol() -> None:
    seq = TradeSequence(FeedStats(), window=8)
    assert all(seq.accept("A", i) for i in (10, 11, 12))
    assert seq.accept("B", 500)
    assert seq.accept("A", 100)  # a gap too large to remember
    assert seq.stats.gaps == 1 and seq.stats.missed_trades == 87
    assert seq.accept("A", 50)  # late, but from a gap too large to remember
    assert seq.stats.late_trades == 1 and seq.stats.missed_trades == 87
    assert not seq.accept("A", 11)  # seen: a duplicate
    assert seq.accept("B", 501) and seq.stats.duplicate_trades == 1


def test_the_shipped_metadata_maps_unified_symbols_to_venue_ids() -> None:
    btc = VENUE.market("BTC/USDT:USDT")
    assert (btc.venue_id, btc.contract_size, btc.linear) == ("BTCUSDT", 1.0, True)
    with pytest.raises(MarketError, match="FOO/BAR:BAR"):
        VENUE.market("FOO/BAR:BAR")


def test_ccxt_market_dicts_round_trip_through_from_ccxt() -> None:
    assert [from_ccxt(m) for m in ccxt_markets(MARKETS)] == MARKETS
    real_shape = {
        "id": "1000PEPEUSDT",
        "symbol": "1000PEPE/USDT:USDT",
        "base": "1000PEPE",
        "quote": "USDT",
        "settle": "USDT",
        "contractSize": 1,
        "linear": True,
        "precision": {"price": 1e-07, "amount": 1.0},
    }
    info = from_ccxt(real_shape)
    assert (info.venue_id, info.price_tick, info.contract_size) == ("1000PEPEUSDT", 1e-07, 1.0)


async def test_offline_loading_never_calls_the_venue_and_refuses_an_unlisted_symbol() -> None:
    found = await load_markets(VENUE.name, VENUE.ccxt_id, VENUE.markets(), SYMBOLS, online=False)
    assert [m.venue_id for m in found.values()] == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    with pytest.raises(MarketError, match="FOO/BAR:BAR"):
        await load_markets(VENUE.name, None, VENUE.markets(), ["FOO/BAR:BAR"], online=True)
