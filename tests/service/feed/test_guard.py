"""The live edge's plausibility checks: a tick stamped far from the local clock, or a price
far from the symbol's last one, is refused and counted; a real move is followed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tickcast.service.feed.guard import CONFIRMATIONS, REJECT_CLOCK, REJECT_JUMP, EdgeGuard
from tickcast.service.feed.shell import Feed, FeedConfig
from tickcast.service.live.sources import open_source
from tickcast.service.ops.config import load_settings
from tickcast.service.sim.market import SyntheticMarket
from tickcast.service.sim.server import SimExchange
from tickcast.service.ticks import Tick, quote, trade
from tickcast.service.venues.base import ParseStats
from tickcast.service.venues.binance.usdm import VENUE, BinanceUsdm
from tickcast.service.venues.registry import source

from support import running, until

NOW_MS = 1_767_225_600_000
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"


def at(price: float, *, symbol: str = BTC, event_ms: int = NOW_MS, recv_ms: int = NOW_MS) -> Tick:
    return trade("binanceusdm", symbol, event_ms, recv_ms * 1_000_000, price, 1.0, 1, "1")


def prices(ticks: list[Tick]) -> list[float]:
    return [t.price for t in ticks]


def test_a_tick_stamped_outside_the_window_is_refused_either_way() -> None:
    guard = EdgeGuard(ParseStats(), window_ms=60_000)
    ticks = [
        at(1.0, event_ms=NOW_MS - 60_000),
        at(2.0, event_ms=NOW_MS - 60_001),
        at(3.0, event_ms=NOW_MS + 60_000),
        at(4.0, event_ms=NOW_MS + 3_600_000),
        at(5.0, event_ms=0 + 1),
    ]
    assert prices(guard.admit(ticks)) == [1.0, 3.0]
    assert guard.stats.rejected == {REJECT_CLOCK: 3}


def test_with_no_limits_every_tick_passes_untouched() -> None:
    guard = EdgeGuard(ParseStats())
    ticks = [at(60_000.0), at(1e-6, event_ms=1), at(1e6)]
    assert guard.admit(ticks) is ticks
    assert guard.stats.total_rejected == 0


def test_a_lone_spike_is_refused_and_the_level_stays() -> None:
    guard = EdgeGuard(ParseStats(), max_jump=0.5)
    got = guard.admit([at(100.0), at(151.0), at(149.0), at(66.0), at(67.0), at(100.0)])
    assert prices(got) == [100.0, 149.0, 100.0]
    assert guard.stats.rejected == {REJECT_JUMP: 3}


def test_a_confirmed_move_becomes_the_new_level() -> None:
    guard = EdgeGuard(ParseStats(), max_jump=0.5)
    moved = [at(300.0 + i) for i in range(CONFIRMATIONS + 2)]
    got = guard.admit([at(100.0), *moved])
    assert prices(got) == [100.0, *prices(moved[CONFIRMATIONS - 1 :])]
    assert guard.stats.rejected == {REJECT_JUMP: CONFIRMATIONS - 1}


def test_a_tick_inside_the_band_resets_the_confirmation_count() -> None:
    guard = EdgeGuard(ParseStats(), max_jump=0.5)
    outside = [at(300.0)] * (CONFIRMATIONS - 1)
    got = guard.admit([at(100.0), *outside, at(101.0), *outside])
    assert prices(got) == [100.0, 101.0]
    assert guard.stats.rejected == {REJECT_JUMP: 2 * (CONFIRMATIONS - 1)}


def test_levels_are_per_symbol_and_quotes_are_judged_by_their_mid() -> None:
    guard = EdgeGuard(ParseStats(), max_jump=0.5)
    ns = NOW_MS * 1_000_000
    got = guard.admit(
        [
            at(60_000.0),
            at(3_000.0, symbol=ETH),
            quote("binanceusdm", BTC, NOW_MS, ns, 59_999.0, 1.0, 60_001.0, 1.0, 7),
            quote("binanceusdm", ETH, NOW_MS, ns, 59_999.0, 1.0, 60_001.0, 1.0, 8),
        ]
    )
    assert [(t.symbol, t.kind) for t in got] == [(BTC, "trade"), (ETH, "trade"), (BTC, "quote")]
    assert guard.stats.rejected == {REJECT_JUMP: 1}


@pytest.mark.parametrize("jump", [0.0, -0.1, float("nan"), float("inf")])
def test_a_meaningless_jump_limit_is_refused(jump: float) -> None:
    with pytest.raises(ValueError, match="max_price_jump"):
        FeedConfig(max_price_jump=jump)


@pytest.mark.parametrize("window", [0.0, -1.0, float("nan")])
def test_a_meaningless_clock_window_is_refused(window: float) -> None:
    with pytest.raises(ValueError, match="event_time_window_s"):
        FeedConfig(event_time_window_s=window)


def test_settings_turn_the_checks_on_by_default_and_zero_turns_them_off() -> None:
    on = FeedConfig.from_settings(load_settings(None, {}).exchange)
    assert (on.event_time_window_s, on.max_price_jump) == (600.0, 0.5)
    off_settings = {"exchange.event_time_window_s": 0, "exchange.max_price_jump": 0}
    off = FeedConfig.from_settings(load_settings(None, off_settings).exchange)
    assert (off.event_time_window_s, off.max_price_jump) == (None, None)


async def delivered_and_refused(ticks: list[Tick], config: FeedConfig) -> tuple[int, int]:
    """How many of ``ticks`` a live Binance feed delivers, and how many it refuses for their
    clock, when the simulated exchange serves them."""
    venue = BinanceUsdm()
    markets = [VENUE.market(s) for s in (BTC, ETH, "SOL/USDT:USDT")]
    async with SimExchange(iter(ticks), speed=0) as sim:
        feed = Feed(venue, markets, sim.urls_for(venue), config, label="sim")
        feed.rng = np.random.default_rng(0)
        async with running(feed) as got:
            await sim.wait_sent(5.0)
            await until(lambda: feed.stats.frames >= len(ticks))
    return len(got), feed.parser.stats.rejected.get(REJECT_CLOCK, 0)


async def test_a_live_feed_refuses_a_venue_whose_clock_is_an_hour_ahead() -> None:
    now_ms = time.time_ns() // 1_000_000
    ahead = list(SyntheticMarket(seed=3, start_ms=now_ms + 3_600_000).ticks(5.0))
    on_time = list(SyntheticMarket(seed=3, start_ms=now_ms).ticks(5.0))
    config = FeedConfig(event_time_window_s=600.0, max_price_jump=0.5, backoff_base_s=0.02)
    assert await delivered_and_refused(ahead, config) == (0, len(ahead))
    assert await delivered_and_refused(on_time, config) == (len(on_time), 0)


@pytest.mark.parametrize(("speed", "window"), [(1.0, 600.0), (8.0, None)])
async def test_a_simulator_off_real_time_skips_the_clock_check(
    speed: float, window: float | None
) -> None:
    settings = load_settings(None, {"sim.speed": speed, "sim.port": 0})
    sim_source = source("sim")
    opened = await open_source(sim_source, [VENUE.market(BTC)], settings)
    try:
        assert opened.feed.guard.window_ms == (None if window is None else int(window * 1000))
        assert opened.feed.guard.max_jump == 0.5
    finally:
        await opened.sim.stop()
