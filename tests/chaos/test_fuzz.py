"""The fuzzing websocket server against ``tickcast run`` (see ``fuzz.py``): the process never
exits, every valid tick is stored once and exactly as sent, no hostile value reaches Redis or a
signal, and every hostile frame is counted (``tickcast_ticks_rejected_total`` and
``tickcast_feed_frames_skipped_total``, by reason)."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest
from fuzz import MARKETS, Frame, FrameMaker, FuzzServer
from harness import REPORTS, SIZES, Lab, seed_of

from tickcast.service.feed.guard import EdgeGuard
from tickcast.service.feed.sequence import TradeSequence
from tickcast.service.feed.stats import FeedStats
from tickcast.service.ticks import TRADE, Tick
from tickcast.service.venues.binance.usdm import VENUE

from support import wait_until

pytestmark = pytest.mark.timeout(SIZES.timeout_s)


def key_of(tick: Tick) -> tuple[str, str, int]:
    """``(symbol, kind, trade id or update id)`` (-1 for a trade id that is not an integer)."""
    if tick.kind != TRADE:
        return (tick.symbol, tick.kind, tick.update_id)
    return (tick.symbol, tick.kind, int(tick.trade_id) if tick.trade_id.isdigit() else -1)


def values_of(tick: Tick) -> tuple[float, ...]:
    if tick.kind == TRADE:
        return (tick.event_ms, tick.price, tick.size, tick.side)
    return (tick.event_ms, tick.bid, tick.bid_size, tick.ask, tick.ask_size)


def test_each_hostile_frame_is_refused_and_counted_once_by_the_edge() -> None:
    """The frames of the fuzzer through the live edge in process, as the feed applies it
    (parser, trade-id sequence, clock and price-jump guard): valid frames become exactly their
    tick, hostile ones none, each counted once. Names the category of any frame that leaks."""
    markets = [VENUE.market(m.symbol) for m in MARKETS]
    parser = VENUE.parser(markets)
    guard = EdgeGuard(parser.stats, window_ms=600_000, max_jump=0.5)
    sequence = TradeSequence(FeedStats())
    maker = FrameMaker(seed_of("edge fuzz"))
    leaked: list[tuple[str, str | bytes, list[Tick]]] = []
    hostile = 0
    for _ in range(20_000):
        frame: Frame = maker.next()
        before = parser.stats.total_rejected + sum(parser.stats.skipped.values())
        raw = frame.data.encode() if isinstance(frame.data, str) else frame.data
        ticks = parser.parse(raw, maker.clock() * 1_000_000)
        ticks = [
            t
            for t in ticks
            if t.kind != TRADE
            or not t.trade_id.isdigit()
            or sequence.accept(t.symbol, int(t.trade_id))
        ]
        ticks = guard.admit(ticks) if ticks else ticks
        counted = parser.stats.total_rejected + sum(parser.stats.skipped.values()) - before
        if frame.key is None:
            hostile += 1
            if ticks or counted != 1:
                leaked.append((frame.category, frame.data[:200], ticks))
        else:
            assert counted == 0 and [(key_of(t), values_of(t)) for t in ticks] == [
                (frame.key, frame.expected)
            ], frame
    by_category = Counter(category for category, _, _ in leaked)
    assert not leaked, f"hostile frames not refused once: {dict(by_category)}; e.g. {leaked[:3]}"
    assert hostile > 4000
    assert sequence.stats.gaps == 0


def test_a_fuzzing_websocket_server_takes_nothing_down_and_nothing_hostile_in(
    tmp_path: Path,
) -> None:
    seed = seed_of("fuzzing websocket server")
    with FuzzServer(seed, SIZES.fuzz_frames, SIZES.oversized) as server:
        urls = {"public": server.url + "/public", "market": server.url + "/market"}
        symbols = [m.symbol for m in MARKETS]
        with Lab("fuzzing websocket server", tmp_path, urls=urls, symbols=symbols) as lab:
            run = lab.start("run")
            stats = server.stats

            def all_sent() -> bool:
                assert run.alive(), "tickcast run exited"
                return server.done.is_set()

            wait_until("every frame sent", all_sent, SIZES.timeout_s / 2)

            def all_accounted() -> bool:
                """Every frame stored or counted (or more: a hostile one stored)."""
                assert run.alive(), "tickcast run exited"
                counters = run.scrape() or {}
                refused = counters.get("rejected", 0) + counters.get("skipped", 0)
                stored = sum(len(t) for t in lab.stored_ticks().values())
                return stored + refused >= len(stats.valid) + stats.hostile_total

            wait_until("every frame stored or counted", all_accounted, 60)
            counters = run.scrape()
            assert counters is not None
            lab.live_for(1.0)  # the worker publishes the last samples
            assert run.alive(), "the process never exits"
            assert lab.stop("run") == 0
            stored = lab.account_trades()
            report = lab.report
            report.hostile = stats.hostile_total
            report.refused = int(counters["rejected"] + counters["skipped"])
            valid_trades = [k for k in stats.valid if k[1] == TRADE]
            report.sent = len(valid_trades)
            signals = lab.account_signals(stored)
            REPORTS.append(report)

            assert not lab.bad_ticks, f"hostile values stored: {lab.bad_ticks[:5]}"
            ticks = [t for s in stored.values() for t in s]
            keys = Counter(key_of(t) for t in ticks)
            twice = [k for k, n in keys.items() if n > 1]
            assert not twice, f"valid ticks stored twice: {twice[:5]}"
            foreign = [t for t in ticks if key_of(t) not in stats.valid]
            assert not foreign, f"ticks stored that no valid frame carried: {foreign[:5]}"
            differing = [t for t in ticks if stats.valid[key_of(t)] != values_of(t)]
            assert not differing, f"ticks stored with other values: {differing[:5]}"
            assert len(ticks) == len(stats.valid), "every valid tick stored"
            for symbol, (expected, got) in signals.items():
                assert got == expected, f"{symbol}: signals differ from a replay: {report}"
                assert all(math.isfinite(v) for _, r, p in got for v in (r, p))
            counted_by_reason = {k: v for k, v in counters.items() if " " in k}
            assert report.refused == report.hostile, (
                f"hostile frames sent: {report.hostile} ({dict(stats.hostile)}); counted as "
                f"rejected or skipped: {report.refused} ({counted_by_reason})"
            )
