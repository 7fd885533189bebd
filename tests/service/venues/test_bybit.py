"""Bybit v5 linear: the parser on the real wire samples and on broken frames, the level-1 book,
rendering back to the venue's frames, the subscription plan, the simulated venue, the feed
against it, and ccxt.pro's own client against it."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import ccxt.pro as ccxtpro
import numpy as np
import orjson
import pytest

from tickcast.service import ticks as contract
from tickcast.service.feed.shell import Feed, FeedConfig
from tickcast.service.sim.faults import FaultConfig
from tickcast.service.sim.market import SyntheticMarket
from tickcast.service.sim.server import SimExchange
from tickcast.service.sim.symbols import specs_for
from tickcast.service.ticks import QUOTE, TRADE, Tick, invalid_reason, quote, trade
from tickcast.service.venues import base
from tickcast.service.venues.base import FeedParseError, Parser
from tickcast.service.venues.binance.usdm import VENUE as USDM
from tickcast.service.venues.bybit import (
    ARGS_CHARS_PER_CONNECTION,
    ARGS_PER_MESSAGE,
    MALFORMED_FRAMES,
    SIM_CLIENT_SILENCE_S,
    SNAPSHOT_EVERY,
    VENUE,
    BybitRenderer,
    render_book,
    render_trade,
    tick_direction,
    trades_frame,
)
from tickcast.service.venues.markets import MarketError, MarketInfo, ccxt_markets
from tickcast.service.venues.venue import ACK, DATA, ERROR, PONG, SimKeepalive

from support import running, until

BTC, ETH, SOL = "BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"
SYMBOLS = [BTC, ETH, SOL]
MARKETS = [VENUE.market(s) for s in SYMBOLS]
LABEL = f"sim-{VENUE.name}"
NAME = VENUE.name


@pytest.fixture(scope="module")
def bybit_samples(samples_dir: Path) -> Path:
    return samples_dir / "bybit-linear"


def sample(folder: Path, name: str) -> bytes:
    return (folder / name).read_bytes().strip()


def book_frame(kind: str, bids: list[list[str]], asks: list[list[str]], **fields: Any) -> bytes:
    """An ``orderbook.1.BTCUSDT`` frame; ``fields`` replace (None: drop) top-level keys, or
    ``data`` keys when prefixed ``d_``."""
    frame: dict[str, Any] = {
        "topic": "orderbook.1.BTCUSDT",
        "type": kind,
        "ts": 1680673821137,
        "data": {"s": "BTCUSDT", "b": bids, "a": asks, "u": 7003306, "seq": 50193543147},
    }
    for key, value in fields.items():
        target, name = (frame["data"], key[2:]) if key.startswith("d_") else (frame, key)
        if value is None:
            target.pop(name, None)
        else:
            target[name] = value
    return orjson.dumps(frame)


SNAPSHOT = book_frame("snapshot", [["28552.00", "0.047"]], [["28552.10", "25.433"]])


def trade_frame(*entries: dict[str, Any], **fields: Any) -> bytes:
    """A ``publicTrade.BTCUSDT`` frame of one default trade updated by ``fields`` (None: drop),
    or of ``entries``."""
    entry: dict[str, Any] = {
        "T": 1672304486865, "s": "BTCUSDT", "S": "Buy", "v": "0.001", "p": "16578.50",
        "L": "PlusTick", "i": "20f43950-d8dd-5b31-9112-a178eb6023af", "BT": False,
    }  # fmt: skip
    entry.update(fields)
    data = list(entries) or [{k: v for k, v in entry.items() if v is not None}]
    return orjson.dumps(
        {"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": 1672304486868, "data": data}
    )


def key(tick: Tick) -> Tick:
    return tick._replace(recv_ns=0)


def market_ticks(seconds: float, seed: int, symbols: list[str] = SYMBOLS) -> list[Tick]:
    market = SyntheticMarket(specs_for(symbols), seed=seed, venue=LABEL, oracle_memory_s=None)
    return list(market.ticks(seconds))


# -- the real wire samples ----------------------------------------------------------------------

#: Every sample file: (trades, quotes, skipped, rejected) when parsed alone by a fresh parser.
SAMPLE_COUNTS: dict[str, tuple[int, int, dict[str, int], dict[str, int]]] = {
    "publicTrade.json": (1, 0, {}, {}),
    "publicTrade.real-2023.json": (1, 0, {}, {}),
    "orderbook1.snapshot.json": (0, 1, {}, {}),
    "orderbook1.delta.json": (0, 0, {base.SKIP_NO_BOOK: 1}, {}),
    "orderbook1.delta-with-removals.json": (0, 0, {base.SKIP_NO_BOOK: 1}, {}),
    "tickers.snapshot.json": (0, 0, {base.SKIP_OTHER_EVENT: 1}, {}),
    "subscribe.ack.json": (0, 0, {base.SKIP_ACK: 1}, {}),
    "subscribe.request.json": (0, 0, {base.SKIP_ACK: 1}, {}),
    "ping.request.json": (0, 0, {base.SKIP_KEEPALIVE: 1}, {}),
}


def test_every_sample_file_is_counted_as_a_tick_a_skip_or_a_reject(bybit_samples: Path) -> None:
    assert sorted(p.name for p in bybit_samples.iterdir()) == sorted(SAMPLE_COUNTS)
    for name, (trades, quotes, skipped, rejected) in SAMPLE_COUNTS.items():
        parser = VENUE.parser()
        ticks = parser.parse(sample(bybit_samples, name), 1)
        stats = parser.stats
        assert (stats.parsed_trades, stats.parsed_quotes) == (trades, quotes), name
        assert (stats.skipped, stats.rejected) == (skipped, rejected), name
        assert len(ticks) == trades + quotes and all(invalid_reason(t) is None for t in ticks)


def test_the_trade_sample_becomes_a_buy_with_its_uuid_and_trade_time(bybit_samples: Path) -> None:
    ticks = VENUE.parser().parse(sample(bybit_samples, "publicTrade.json"), 7)
    assert ticks == [
        trade(
            NAME, BTC, 1672304486865, 7, 16578.5, 0.001, 1, "20f43950-d8dd-5b31-9112-a178eb6023af"
        )
    ]


def test_the_2023_trade_without_seq_is_a_litecoin_trade_in_coins(bybit_samples: Path) -> None:
    ticks = VENUE.parser().parse(sample(bybit_samples, "publicTrade.real-2023.json"), 3)
    assert ticks == [
        trade(NAME, "LTC/USDT:USDT", 1680688979983, 3, 94.53, 0.4, 1,
              "4c7b6bdc-b4a3-5716-9c7b-bbe01dc7072f")
    ]  # fmt: skip


def test_the_book_snapshot_is_a_quote_with_its_update_id_and_push_time(bybit_samples: Path) -> None:
    (tick,) = VENUE.parser().parse(sample(bybit_samples, "orderbook1.snapshot.json"), 5)
    assert tick == quote(NAME, BTC, 1680673820717, 5, 28552.0, 0.047, 28552.1, 25.433, 7003305)


def test_the_recorded_delta_updates_the_snapshot_s_bid_and_keeps_its_ask(
    bybit_samples: Path,
) -> None:
    parser = VENUE.parser()
    parser.parse(sample(bybit_samples, "orderbook1.snapshot.json"), 0)
    (tick,) = parser.parse(sample(bybit_samples, "orderbook1.delta.json"), 9)
    assert tick == quote(NAME, BTC, 1680673821137, 9, 28552.0, 0.012, 28552.1, 25.433, 7003306)


def test_a_delta_with_removals_moves_both_sides_to_the_new_levels(bybit_samples: Path) -> None:
    parser = VENUE.parser()
    before = book_frame("snapshot", [["27994.60", "1.5"]], [["27994.80", "2.5"]], d_u=1188471)
    parser.parse(before, 0)
    (tick,) = parser.parse(sample(bybit_samples, "orderbook1.delta-with-removals.json"), 4)
    assert tick == quote(NAME, BTC, 1682092584425, 4, 27991.7, 0.777, 27994.4, 0.058, 1188472)
    assert parser.stats.rejected == {} and parser.stats.parsed_quotes == 2


@pytest.mark.parametrize(
    ("name", "kind"),
    [("subscribe.ack.json", ACK), ("publicTrade.json", DATA), ("orderbook1.delta.json", DATA),
     ("tickers.snapshot.json", DATA), ("ping.request.json", DATA)],
)  # fmt: skip
def test_classify_tells_the_real_ack_from_data(bybit_samples: Path, name: str, kind: str) -> None:
    assert VENUE.classify(sample(bybit_samples, name)).kind == kind


def test_classify_knows_the_pong_and_a_refusal_with_its_message() -> None:
    pong = b'{"success":true,"ret_msg":"pong","conn_id":"c1","req_id":"ping","op":"ping"}'
    private_pong = b'{"req_id":"test","op":"pong","args":["1675418560633"],"conn_id":"c2"}'
    refusal = (
        b'{"success":false,"ret_msg":"error:handler not found,topic:dcp.future",'
        b'"conn_id":"d9jhogatbetvf6evjmc0-8eoj","req_id":"dcp.future","op":"subscribe"}'
    )
    assert VENUE.classify(pong).kind == VENUE.classify(private_pong).kind == PONG
    control = VENUE.classify(refusal)
    assert (control.kind, control.detail) == (ERROR, "error:handler not found,topic:dcp.future")
    assert VENUE.classify(b"not json").kind == DATA


def test_a_feed_parser_counts_the_pong_and_the_refusal_without_ticks() -> None:
    parser = VENUE.parser(MARKETS)
    assert parser.parse(b'{"success":true,"ret_msg":"pong","conn_id":"c","op":"ping"}', 0) == []
    assert parser.parse(b'{"success":false,"ret_msg":"error:x","op":"subscribe"}', 0) == []
    assert parser.stats.skipped == {base.SKIP_KEEPALIVE: 1, base.SKIP_ERROR_REPLY: 1}


def test_recordings_are_recognised_by_their_bybit_topic_and_no_other_venue_s(
    bybit_samples: Path, samples_dir: Path
) -> None:
    ours = [n for n in SAMPLE_COUNTS if VENUE.recognises(sample(bybit_samples, n))]
    assert sorted(ours) == sorted(
        n for n in SAMPLE_COUNTS if n.startswith(("publicTrade", "orderbook1", "tickers"))
    )
    for other in ("bitget-futures/v3_publicTrade.json", "binance-usdm/trade.combined.json"):
        assert not VENUE.recognises((samples_dir / other).read_bytes())
    assert not USDM.recognises(sample(bybit_samples, "publicTrade.json"))


# -- malformed frames ---------------------------------------------------------------------------

MALFORMED: list[tuple[str, bytes, str, str]] = [
    ("garbage", b"not json", "rejected", base.REJECT_JSON),
    ("empty", b"", "rejected", base.REJECT_JSON),
    ("bad utf-8", b'{"topic":"\xff"}', "rejected", base.REJECT_JSON),
    ("array", b"[1, 2]", "rejected", base.REJECT_NOT_OBJECT),
    ("string", b'"publicTrade"', "rejected", base.REJECT_NOT_OBJECT),
    ("topic not a string", b'{"topic":5,"data":[]}', "rejected", base.REJECT_MISSING),
    ("no topic and no op", b'{"s":"BTCUSDT","p":"1"}', "rejected", base.REJECT_MISSING),
    ("trades missing", b'{"topic":"publicTrade.BTCUSDT","ts":1}', "rejected",
     base.REJECT_MISSING),
    ("trades not a list", b'{"topic":"publicTrade.BTCUSDT","data":{"p":"1"}}', "rejected",
     base.REJECT_NOT_OBJECT),
    ("no trades", b'{"topic":"publicTrade.BTCUSDT","data":[]}', "rejected", base.REJECT_MISSING),
    ("trade not an object", b'{"topic":"publicTrade.BTCUSDT","data":[7]}', "rejected",
     base.REJECT_NOT_OBJECT),
    ("missing price", trade_frame(p=None), "rejected", base.REJECT_MISSING),
    ("missing size", trade_frame(v=None), "rejected", base.REJECT_MISSING),
    ("missing trade time", trade_frame(T=None), "rejected", base.REJECT_MISSING),
    ("missing trade id", trade_frame(i=None), "rejected", base.REJECT_MISSING),
    ("missing side", trade_frame(S=None), "rejected", base.REJECT_MISSING),
    ("text price", trade_frame(p="abc"), "rejected", base.REJECT_NOT_NUMERIC),
    ("object size", trade_frame(v={"x": 1}), "rejected", base.REJECT_TYPE),
    ("text time", trade_frame(T="1.5"), "rejected", base.REJECT_TYPE),
    ("nan price", trade_frame(p="NaN"), "rejected", contract.REJECT_NON_FINITE),
    ("infinite size", trade_frame(v="inf"), "rejected", contract.REJECT_NON_FINITE),
    ("zero price", trade_frame(p="0.00"), "rejected", contract.REJECT_PRICE),
    ("negative price", trade_frame(p="-16578.50"), "rejected", contract.REJECT_PRICE),
    ("negative size", trade_frame(v="-0.001"), "rejected", contract.REJECT_SIZE),
    ("zero time", trade_frame(T=0), "rejected", contract.REJECT_TIME),
    ("lower-case side", trade_frame(S="buy"), "rejected", contract.REJECT_SIDE),
    ("numeric side", trade_frame(S=1), "rejected", contract.REJECT_SIDE),
    ("numeric symbol", trade_frame(s=42), "rejected", base.REJECT_SYMBOL),
    ("inverse symbol", trade_frame(s="BTCUSD"), "rejected", base.REJECT_SYMBOL),
    ("book data missing", book_frame("snapshot", [], [], data=None), "rejected",
     base.REJECT_MISSING),
    ("book data a list", b'{"topic":"orderbook.1.BTCUSDT","type":"snapshot","data":[]}',
     "rejected", base.REJECT_NOT_OBJECT),
    ("book type missing", book_frame("x", [], [], type=None), "rejected", base.REJECT_MISSING),
    ("update id missing", book_frame("snapshot", [], [], d_u=None), "rejected",
     base.REJECT_MISSING),
    ("bids missing", book_frame("snapshot", [], [], d_b=None), "rejected", base.REJECT_MISSING),
    ("push time missing", book_frame("snapshot", [], [], ts=None), "rejected",
     base.REJECT_MISSING),
    ("text update id", book_frame("snapshot", [], [], d_u="x"), "rejected",
     base.REJECT_TYPE),
    ("level not a pair", book_frame("snapshot", [["28552.00"]], [["28552.10", "1"]]),
     "rejected", base.REJECT_NOT_NUMERIC),
    ("levels not a list", book_frame("snapshot", [["28552.00", "1"]], [], d_a=5), "rejected",
     base.REJECT_TYPE),
    ("text level price", book_frame("snapshot", [["abc", "1"]], [["28552.10", "1"]]),
     "rejected", base.REJECT_NOT_NUMERIC),
    ("nan level size", book_frame("snapshot", [["28552.00", "NaN"]], [["28552.10", "1"]]),
     "rejected", contract.REJECT_NON_FINITE),
    ("zero level price", book_frame("snapshot", [["0", "1"]], [["28552.10", "1"]]),
     "rejected", contract.REJECT_PRICE),
    ("negative level size", book_frame("snapshot", [["28552.00", "1"]], [["28552.10", "-1"]]),
     "rejected", contract.REJECT_SIZE),
    ("crossed book", book_frame("snapshot", [["28552.20", "1"]], [["28552.10", "1"]]),
     "rejected", contract.REJECT_CROSSED),
    ("zero push time", book_frame("snapshot", [["28552.00", "1"]], [["28552.10", "1"]], ts=0),
     "rejected", contract.REJECT_TIME),
    ("one-sided book", book_frame("snapshot", [["28552.00", "1"]], []), "skipped",
     base.SKIP_ONE_SIDED),
    ("delta before snapshot", book_frame("delta", [["28552.00", "1"]], []), "skipped",
     base.SKIP_NO_BOOK),
    ("unknown book type", book_frame("partial", [], []), "skipped", base.SKIP_UNKNOWN_EVENT),
    ("deeper book", b'{"topic":"orderbook.50.BTCUSDT","type":"delta","data":{}}', "skipped",
     base.SKIP_DEPTH),
    ("kline", b'{"topic":"kline.1.BTCUSDT","type":"snapshot","data":[]}', "skipped",
     base.SKIP_OTHER_EVENT),
    ("unknown channel", b'{"topic":"mystery.BTCUSDT","data":{}}', "skipped",
     base.SKIP_UNKNOWN_EVENT),
    ("refusal", b'{"success":false,"ret_msg":"error:handler not found,topic:x","op":"subscribe"}',
     "skipped", base.SKIP_ERROR_REPLY),
    ("unsubscribe ack", b'{"success":true,"ret_msg":"","conn_id":"c","op":"unsubscribe"}',
     "skipped", base.SKIP_ACK),
    ("private pong", b'{"req_id":"1","op":"pong","args":["1675418560633"]}', "skipped",
     base.SKIP_KEEPALIVE),
]  # fmt: skip


BOOK_TOP = ([["28552.00", "1"]], [["28552.10", "1"]])

#: The fault campaign's values (issue 10), one frame each: Bybit sends prices and sizes as
#: decimal strings and times and update ids as JSON integers; nothing else is coerced, and what
#: is a number still meets the tick contract's ranges.
CAMPAIGN: list[tuple[str, bytes, str]] = [
    ("bool price", trade_frame(p=True), base.REJECT_TYPE),
    ("number price", trade_frame(p=16578.5), base.REJECT_TYPE),
    ("number size", trade_frame(v=1), base.REJECT_TYPE),
    ("float time", trade_frame(T=1e300), base.REJECT_TYPE),
    ("bool time", trade_frame(T=True), base.REJECT_TYPE),
    ("year 2100", trade_frame(T=4102444800000), contract.REJECT_TIME_RANGE),
    ("absurd price", trade_frame(p="1e308"), contract.REJECT_PRICE_RANGE),
    ("NaN price", trade_frame(p="NaN"), contract.REJECT_NON_FINITE),
    ("Infinity size", trade_frame(v="Infinity"), contract.REJECT_NON_FINITE),
    ("negative size -1", trade_frame(v="-1"), contract.REJECT_SIZE),
    ("bool level price", book_frame("snapshot", [[True, "1"]], BOOK_TOP[1]), base.REJECT_TYPE),
    ("number level size", book_frame("snapshot", [["28552.00", 1]], BOOK_TOP[1]),
     base.REJECT_TYPE),
    ("float push time", book_frame("snapshot", *BOOK_TOP, ts=1.68e12), base.REJECT_TYPE),
    ("bool engine time", book_frame("snapshot", *BOOK_TOP, cts=True), base.REJECT_TYPE),
    ("bool update id", book_frame("snapshot", *BOOK_TOP, d_u=True), base.REJECT_TYPE),
    ("book in 2100", book_frame("snapshot", *BOOK_TOP, cts=4102444800000),
     contract.REJECT_TIME_RANGE),
    ("absurd book", book_frame("snapshot", [["1.7e308", "1e308"]], [["1.7e308", "1e308"]]),
     contract.REJECT_PRICE_RANGE),
    ("Infinity level size", book_frame("snapshot", [["28552.00", "Infinity"]], BOOK_TOP[1]),
     contract.REJECT_NON_FINITE),
]  # fmt: skip
MALFORMED += [(name, frame, "rejected", reason) for name, frame, reason in CAMPAIGN]


@pytest.mark.parametrize(
    ("frame", "outcome", "reason"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_a_bad_frame_is_counted_with_its_reason_and_never_raised(
    frame: bytes, outcome: str, reason: str
) -> None:
    parser = VENUE.parser()
    assert parser.parse(frame, 1) == []
    counted = parser.stats.rejected if outcome == "rejected" else parser.stats.skipped
    other = parser.stats.skipped if outcome == "rejected" else parser.stats.rejected
    assert (counted, other, parser.stats.total_parsed) == ({reason: 1}, {}, 0)


def test_the_campaign_frames_are_counted_and_the_valid_frames_between_them_still_parse() -> None:
    parser = VENUE.parser()
    ticks = parser.parse(SNAPSHOT, 1)
    for _, frame, _ in CAMPAIGN:
        assert parser.parse(frame, 1) == []
        ticks += parser.parse(trade_frame(), 1)
    good = orjson.loads(trade_frame())["data"][0]
    ticks += parser.parse(trade_frame(good, {**good, "p": True}, {**good, "T": 1.5}, good), 1)
    assert len(ticks) == 1 + len(CAMPAIGN) + 2
    assert all(invalid_reason(t) is None for t in ticks)
    assert parser.stats.rejected == Counter(reason for *_, reason in CAMPAIGN) + Counter(
        {base.REJECT_TYPE: 2}
    )
    assert parser.stats.skipped == {}


def test_a_delta_of_wrong_value_types_is_rejected_and_leaves_the_book_as_it_was() -> None:
    parser = VENUE.parser()
    (before,) = parser.parse(SNAPSHOT, 0)
    new_top = book_frame("delta", [[True, "2"], ["28552.00", "0"]], [])
    new_size = book_frame("delta", [["28552.00", 5]], [])
    removal = book_frame("delta", [], [["28552.10", 0], [28553.0, "4"]])
    assert parser.parse(new_top, 0) == parser.parse(new_size, 0) == parser.parse(removal, 0) == []
    assert parser.stats.rejected == {base.REJECT_TYPE: 3}
    (after,) = parser.parse(book_frame("delta", [], []), 0)
    assert after == before


def test_the_simulated_venue_s_broken_frames_are_each_rejected_or_skipped() -> None:
    parser = VENUE.parser(MARKETS)
    assert all(parser.parse(frame, 1) == [] for frame in MALFORMED_FRAMES)
    assert parser.stats.rejected == {
        base.REJECT_JSON: 2, base.REJECT_NOT_OBJECT: 1, contract.REJECT_PRICE: 1,
        contract.REJECT_NON_FINITE: 1, base.REJECT_MISSING: 1, contract.REJECT_CROSSED: 1,
    }  # fmt: skip
    assert parser.stats.skipped == {base.SKIP_UNKNOWN_EVENT: 1}
    assert all(VENUE.classify(frame).kind == DATA for frame in MALFORMED_FRAMES)


def test_mutated_frames_never_raise_and_only_yield_valid_ticks(bybit_samples: Path) -> None:
    rng = np.random.default_rng(5)
    seeds = [sample(bybit_samples, n) for n in SAMPLE_COUNTS] + [SNAPSHOT] * 4
    parser = VENUE.parser()
    produced = 0
    for i in range(3000):
        frame = bytearray(seeds[i % len(seeds)])
        for pos in rng.integers(0, len(frame), size=int(rng.integers(1, 4))):
            frame[pos] = int(rng.integers(32, 127))
        if rng.random() < 0.2:
            del frame[int(rng.integers(1, len(frame))) :]
        ticks = parser.parse(bytes(frame), 1)
        assert all(invalid_reason(t) is None for t in ticks)
        produced += len(ticks)
    stats = parser.stats
    assert stats.total_parsed == produced
    assert stats.total_parsed + stats.total_skipped + stats.total_rejected == 3000
    assert stats.total_rejected > 500 and len(stats.rejected) >= 4, stats.rejected


# -- the level-1 book ---------------------------------------------------------------------------


def test_a_rejected_frame_leaves_the_book_as_it_was() -> None:
    parser = VENUE.parser()
    parser.parse(SNAPSHOT, 0)
    crossed = book_frame("delta", [["28552.00", "0"], ["28552.30", "2"]], [], d_u=7003307)
    assert parser.parse(crossed, 0) == []
    assert parser.parse(book_frame("delta", [["bad", "1"]], []), 0) == []
    (tick,) = parser.parse(book_frame("delta", [], [["28552.10", "3"]], d_u=7003308), 0)
    assert (tick.bid, tick.bid_size, tick.ask, tick.ask_size) == (28552.0, 0.047, 28552.1, 3.0)
    assert parser.stats.rejected == {contract.REJECT_CROSSED: 1, base.REJECT_NOT_NUMERIC: 1}


def test_a_delta_that_changes_nothing_repeats_the_top_with_its_own_update_id_and_time() -> None:
    parser = VENUE.parser()
    (first,) = parser.parse(SNAPSHOT, 0)
    (again,) = parser.parse(book_frame("delta", [], [], d_u=7003400, ts=1680673821999), 0)
    assert again == first._replace(update_id=7003400, event_ms=1680673821999)


def test_a_level_below_the_top_is_not_kept_by_a_depth_one_book() -> None:
    parser = VENUE.parser()
    parser.parse(SNAPSHOT, 0)
    (tick,) = parser.parse(book_frame("delta", [["28551.00", "9"]], []), 0)
    assert (tick.bid, tick.bid_size) == (28552.0, 0.047), "the better top stays"
    assert parser.parse(book_frame("delta", [["28552.00", "0"]], []), 0) == []
    assert parser.stats.skipped == {base.SKIP_ONE_SIDED: 1}, "no stale level resurfaces"
    (back,) = parser.parse(book_frame("delta", [["28550.00", "4"]], []), 0)
    assert (back.bid, back.bid_size, back.ask) == (28550.0, 4.0, 28552.1)


def test_a_removal_written_as_a_decimal_zero_or_before_the_new_level_also_moves_the_top() -> None:
    parser = VENUE.parser()
    parser.parse(SNAPSHOT, 0)
    (tick,) = parser.parse(
        book_frame("delta", [["28552.0", "0.000"], ["28551.90", "1"]], [["28552.10", "0"],
                   ["28552.40", "2"]]), 0
    )  # fmt: skip
    assert (tick.bid, tick.bid_size, tick.ask, tick.ask_size) == (28551.9, 1.0, 28552.4, 2.0)


def test_random_deltas_give_the_best_levels_of_a_book_that_keeps_only_its_top() -> None:
    """The parser's book against a plain one: apply the levels to a dict, keep its best."""
    rng = np.random.default_rng(11)
    parser = VENUE.parser()
    book: dict[str, dict[float, float]] = {"b": {1000.0: 1.0}, "a": {1000.5: 1.0}}
    parser.parse(book_frame("snapshot", [["1000.00", "1"]], [["1000.50", "1"]]), 0)
    outcomes: Counter[str] = Counter()
    for i in range(2000):
        levels: dict[str, list[list[str]]] = {}
        after = {}
        for side, best in (("b", max), ("a", min)):
            top = best(book[side]) if book[side] else 999.0 + (side == "a")
            steps = rng.choice([-3, -2, -1, 1, 2, 3], 3)  # distinct from the top, as Bybit's
            prices = [round(top + 0.1 * float(d), 1) for d in steps]
            shape = int(rng.integers(0, 8))
            new = round(float(rng.integers(1, 9)) / 4, 2)
            side_levels = [
                [], [[top, new]], [[prices[0], new], [top, 0.0]], [[top, 0.0], [prices[0], new]],
                [[prices[0], new]], [[top, 0.0]],
                [[p, float(rng.integers(0, 3))] for p in dict.fromkeys([top, *prices])],
                [[prices[0], new], [prices[1], 0.0]] if prices[0] != prices[1] else [],
            ][shape]  # fmt: skip
            levels[side] = [[f"{p:.2f}", "0" if s == 0.0 else f"{s:g}"] for p, s in side_levels]
            kept = dict(book[side])
            for p, s in side_levels:
                if s == 0.0:
                    kept.pop(p, None)
                else:
                    kept[p] = s
            after[side] = {best(kept): kept[best(kept)]} if kept else {}
        frame = book_frame("delta", levels["b"], levels["a"], d_u=i)
        ticks = parser.parse(frame, 0)
        if not (after["b"] and after["a"]):
            outcome = "one-sided"
            book = after
        elif max(after["b"]) > min(after["a"]):
            outcome = "crossed"
        else:
            outcome = "quote"
            book = after
            ((bid, bid_size),) = after["b"].items()
            ((ask, ask_size),) = after["a"].items()
            assert ticks[0][9:] == (bid, bid_size, ask, ask_size, i), frame
        assert (ticks != []) == (outcome == "quote"), frame
        outcomes[outcome] += 1
    assert parser.stats.skipped == {base.SKIP_ONE_SIDED: outcomes["one-sided"]}
    assert parser.stats.rejected == {contract.REJECT_CROSSED: outcomes["crossed"]}
    assert min(outcomes.values()) > 50, outcomes


def test_a_snapshot_resets_the_book_and_a_one_sided_one_waits_for_the_other_side() -> None:
    parser = VENUE.parser()
    parser.parse(SNAPSHOT, 0)
    assert parser.parse(book_frame("snapshot", [["100.00", "1"]], []), 0) == []
    (tick,) = parser.parse(book_frame("delta", [], [["100.50", "2"]]), 0)
    assert (tick.bid, tick.bid_size, tick.ask, tick.ask_size) == (100.0, 1.0, 100.5, 2.0)


def test_the_matching_engine_time_is_preferred_to_the_push_time() -> None:
    parser = VENUE.parser()
    (tick,) = parser.parse(book_frame("snapshot", [["1", "1"]], [["2", "1"]], cts=1680673821100), 0)
    assert tick.event_ms == 1680673821100


def test_books_are_kept_per_symbol() -> None:
    parser = VENUE.parser()
    parser.parse(SNAPSHOT, 0)
    eth = book_frame("delta", [["3000.00", "1"]], [], topic="orderbook.1.ETHUSDT", d_s="ETHUSDT")
    assert parser.parse(eth, 0) == [] and parser.stats.skipped == {base.SKIP_NO_BOOK: 1}


def test_trades_of_a_frame_come_out_in_trade_time_order_and_a_bad_one_is_counted() -> None:
    base_entry = orjson.loads(trade_frame())["data"][0]
    entries = [
        base_entry | {"T": t, "i": str(t), "S": side}
        for t, side in ((1672304486867, "Sell"), (1672304486865, "Buy"), (1672304486866, "Buy"))
    ]
    parser = VENUE.parser()
    ticks = parser.parse(trade_frame(*entries, base_entry | {"p": "NaN"}), 0)
    assert [(t.event_ms, t.side) for t in ticks] == [
        (1672304486865, 1), (1672304486866, 1), (1672304486867, -1),
    ]  # fmt: skip
    assert parser.stats.rejected == {contract.REJECT_NON_FINITE: 1}
    in_order = parser.parse(trade_frame(*sorted(entries, key=lambda e: e["T"])), 0)
    assert [t.trade_id for t in in_order] == ["1672304486865", "1672304486866", "1672304486867"]


def test_a_symbol_mapping_names_its_symbols_and_skips_the_others() -> None:
    parser = VENUE.parser([VENUE.market(BTC)], "bybit-test")
    (tick,) = parser.parse(trade_frame(), 0)
    assert (tick.venue, tick.symbol) == ("bybit-test", BTC)
    assert parser.parse(trade_frame(s="ETHUSDT"), 0) == []
    assert parser.parse(book_frame("snapshot", [["1", "1"]], [["2", "1"]], d_s="ETHUSDT"), 0) == []
    assert parser.stats.skipped == {base.SKIP_UNSUBSCRIBED: 2}


def test_a_contract_size_other_than_one_scales_trade_and_quote_sizes() -> None:
    halves = MarketInfo(BTC, "BTCUSDT", "BTC", "USDT", "USDT", contract_size=0.5)
    parser = VENUE.parser([halves])
    (tr,) = parser.parse(trade_frame(v="4"), 0)
    (qt,) = parser.parse(book_frame("snapshot", [["100", "2"]], [["101", "6"]]), 0)
    assert (tr.size, qt.bid_size, qt.ask_size) == (2.0, 1.0, 3.0)


def test_the_bybit_parser_satisfies_the_parser_protocol() -> None:
    parser = VENUE.parser()
    assert isinstance(parser, Parser) and parser.venue == NAME == "bybit"


# -- rendering ----------------------------------------------------------------------------------


def test_rendered_market_frames_parse_back_into_the_same_ticks() -> None:
    ticks = market_ticks(60.0, seed=1)
    render = BybitRenderer(VENUE.assumed_market)
    wanted = {t for m in MARKETS for t in VENUE.topics(m)}
    parser = VENUE.parser(label=LABEL)
    back: list[Tick] = []
    kinds: Counter[str] = Counter()
    for tick in ticks:
        for topic, frame in render.events(tick, wanted):
            if topic.startswith("orderbook.1."):
                kinds[orjson.loads(frame)["type"]] += 1
            back += parser.parse(frame, tick.recv_ns)
    assert back == ticks and len(ticks) > 1000, "exactly: contract size 1, exact decimals"
    assert parser.stats.skipped == parser.stats.rejected == {}
    quotes = sum(t.kind == QUOTE for t in ticks)
    assert kinds["snapshot"] == sum(
        -(-n // SNAPSHOT_EVERY)
        for n in Counter(t.symbol for t in ticks if t.kind == QUOTE).values()
    )
    assert kinds["delta"] == quotes - kinds["snapshot"] > 0


def test_rendering_reproduces_the_trade_samples(bybit_samples: Path) -> None:
    for name in ("publicTrade.json", "publicTrade.real-2023.json"):
        frame = orjson.loads(sample(bybit_samples, name))
        (tick,) = VENUE.parser().parse(sample(bybit_samples, name), 0)
        wire = frame["data"][0]
        entry = render_trade(
            tick, VENUE.assumed_market(tick.symbol), direction=wire["L"], seq=wire.get("seq")
        )
        rendered = trades_frame(wire["s"], [entry], frame["ts"])
        assert rendered == frame and list(rendered) == list(frame)
        assert list(entry) == list(wire), "same key order as the venue"


def test_rendering_reproduces_the_book_snapshot_sample(bybit_samples: Path) -> None:
    frame = orjson.loads(sample(bybit_samples, "orderbook1.snapshot.json"))
    data = frame["data"]
    rendered = render_book("BTCUSDT", "snapshot", data["b"], data["a"], data["u"], data["seq"],
                           frame["ts"])  # fmt: skip
    assert orjson.dumps(rendered) == sample(bybit_samples, "orderbook1.snapshot.json")


@pytest.mark.parametrize(
    ("name", "before"),
    [("orderbook1.delta.json", (28552.0, 0.047, 28552.1, 25.433)),
     ("orderbook1.delta-with-removals.json", (27994.6, 1.5, 27994.8, 2.5))],
)  # fmt: skip
def test_the_renderer_writes_the_recorded_deltas_from_the_previous_top(
    bybit_samples: Path, name: str, before: tuple[float, float, float, float]
) -> None:
    wire = orjson.loads(sample(bybit_samples, name))
    parser = VENUE.parser()
    parser.parse(book_frame("snapshot", [[f"{before[0]:.2f}", str(before[1])]],
                            [[f"{before[2]:.2f}", str(before[3])]]), 0)  # fmt: skip
    (tick,) = parser.parse(sample(bybit_samples, name), 0)
    render = BybitRenderer(VENUE.assumed_market, cts=False)
    render.events(quote(NAME, BTC, wire["ts"] - 1, 0, *before, 1), {"orderbook.1.BTCUSDT"})
    ((topic, frame),) = render.events(tick, {"orderbook.1.BTCUSDT"})
    rendered = orjson.loads(frame)
    rendered["data"]["seq"] = wire["data"]["seq"]  # the renderer numbers its own frames
    assert topic == "orderbook.1.BTCUSDT" and rendered == wire
    assert orjson.dumps(rendered) == sample(bybit_samples, name), "same key order, same text"


def test_a_new_book_subscriber_is_welcomed_with_a_snapshot_of_the_current_top() -> None:
    render = BybitRenderer(VENUE.assumed_market)
    assert render.welcome("orderbook.1.BTCUSDT") == []
    first = quote(LABEL, BTC, 1_767_225_600_000, 0, 60000.0, 1.0, 60000.1, 2.0, 10)
    second = first._replace(event_ms=first.event_ms + 5, bid=59999.9, update_id=11)
    for tick in (first, second):
        render.events(tick, set())
    (welcome,) = render.welcome("orderbook.1.BTCUSDT")
    assert orjson.loads(welcome)["type"] == "snapshot"
    assert VENUE.parser(label=LABEL).parse(welcome, 0) == [second._replace(recv_ns=0)]
    assert render.welcome("publicTrade.BTCUSDT") == render.welcome("orderbook.1.ETHUSDT") == []


def test_tick_directions_follow_the_last_trade_price() -> None:
    assert tick_direction(10.0, None, "ZeroPlusTick") == "ZeroPlusTick"
    assert [tick_direction(p, 10.0, "MinusTick") for p in (11.0, 9.0, 10.0)] == [
        "PlusTick", "MinusTick", "ZeroMinusTick",
    ]  # fmt: skip
    assert tick_direction(10.0, 10.0, "PlusTick") == "ZeroPlusTick"


def test_rendering_refuses_a_quote_as_a_trade() -> None:
    with pytest.raises(FeedParseError, match="trade tick"):
        render_trade(quote(NAME, BTC, 1, 0, 1.0, 1.0, 2.0, 1.0), VENUE.market(BTC))


# -- the venue: markets, subscriptions --------------------------------------------------------


def test_the_shipped_table_lists_linear_usdt_perpetuals_of_contract_size_one() -> None:
    table = VENUE.markets()
    assert len(table) >= 20 and all(
        (m.venue_id, m.contract_size, m.linear, m.settle) == (VENUE.venue_id(s), 1.0, True, "USDT")
        for s, m in table.items()
    )
    assert table[BTC].price_tick == 0.1
    with pytest.raises(MarketError, match="FOO/BAR:BAR"):
        VENUE.market("FOO/BAR:BAR")


@pytest.mark.parametrize(
    ("venue_id", "unified"),
    [("BTCUSDT", BTC), ("1000PEPEUSDT", "1000PEPE/USDT:USDT"), ("WIFUSDT", "WIF/USDT:USDT")],
)
def test_ids_and_unified_symbols_map_both_ways(venue_id: str, unified: str) -> None:
    derived = VENUE.derive(venue_id)
    assert derived is not None and (derived.symbol, derived.contract_size) == (unified, 1.0)
    assert VENUE.venue_id(unified) == venue_id


@pytest.mark.parametrize("venue_id", ["BTCUSD", "BTCPERP", "USDT", "btcusdt", "BTC-26DEC25"])
def test_an_id_of_no_usdt_perpetual_names_no_market(venue_id: str) -> None:
    assert VENUE.derive(venue_id) is None


@pytest.mark.parametrize("symbol", ["BTC/USDC:USDC", "BTC/USD:BTC", "BTC/USDT:USDT-251226"])
def test_symbols_that_are_no_usdt_perpetual_have_no_id(symbol: str) -> None:
    with pytest.raises(FeedParseError, match="USDT perpetuals"):
        VENUE.venue_id(symbol)


def test_three_symbols_are_one_connection_and_one_subscription_message(
    bybit_samples: Path,
) -> None:
    (connection,) = VENUE.connections(MARKETS, VENUE.routes)
    assert (connection.route, connection.url) == ("public", VENUE.routes["public"])
    url = urlsplit(connection.url)
    assert (url.scheme, url.path) == ("wss", "/v5/public/linear")
    (message,) = connection.subscribe
    request = orjson.loads(message)
    assert list(request) == list(orjson.loads(sample(bybit_samples, "subscribe.request.json")))
    assert request == {
        "req_id": "1", "op": "subscribe",
        "args": ["publicTrade.BTCUSDT", "orderbook.1.BTCUSDT", "publicTrade.ETHUSDT",
                 "orderbook.1.ETHUSDT", "publicTrade.SOLUSDT", "orderbook.1.SOLUSDT"],
    }  # fmt: skip


def test_many_symbols_are_split_into_messages_of_ten_topics_and_connections_within_the_limit() -> (
    None
):
    markets = [VENUE.assumed_market(f"COIN{i:04d}/USDT:USDT") for i in range(600)]
    plan = VENUE.connections(markets, {"public": "ws://127.0.0.1:1/v5/public/linear"})
    assert len(plan) > 1 and len({c.route for c in plan}) == len(plan)
    topics: list[str] = []
    for connection in plan:
        args = [orjson.loads(m)["args"] for m in connection.subscribe]
        assert all(0 < len(a) <= ARGS_PER_MESSAGE for a in args)
        flat = [t for a in args for t in a]
        assert len(orjson.dumps(flat)) <= ARGS_CHARS_PER_CONNECTION
        topics += flat
    assert topics == [t for m in markets for t in VENUE.topics(m)], "every topic once, in order"


def test_the_client_pings_every_twenty_seconds_with_its_own_message(
    bybit_samples: Path,
) -> None:
    keepalive = VENUE.keepalive
    assert (keepalive.ping_every_s, keepalive.ws_ping) == (20.0, False)
    assert keepalive.ping is not None
    assert list(orjson.loads(keepalive.ping)) == list(
        orjson.loads(sample(bybit_samples, "ping.request.json"))
    )
    assert VENUE.sequential_trade_ids is False and VENUE.max_connection_s is None


# -- the simulated venue's protocol -------------------------------------------------------------


def test_the_simulated_venue_acknowledges_a_subscription_like_bybit(bybit_samples: Path) -> None:
    dialect = VENUE.dialect()
    request = sample(bybit_samples, "subscribe.request.json")
    reply = dialect.on_message(request, ())
    assert reply.subscribe == ("orderbook.1.BTCUSDT", "publicTrade.BTCUSDT") and reply.request
    (ack,) = reply.frames
    real = orjson.loads(sample(bybit_samples, "subscribe.ack.json"))
    assert list(orjson.loads(ack)) == list(real)
    assert orjson.loads(ack) | {"conn_id": real["conn_id"]} == real
    assert VENUE.classify(ack).kind == ACK
    gone = dialect.on_message(b'{"req_id":"2","op":"unsubscribe","args":["publicTrade.BTCUSDT"]}',
                              ())  # fmt: skip
    assert (
        gone.unsubscribe == ("publicTrade.BTCUSDT",) and VENUE.classify(gone.frames[0]).kind == ACK
    )


def test_the_simulated_venue_answers_a_ping_with_bybit_s_pong(bybit_samples: Path) -> None:
    reply = VENUE.dialect().on_message(sample(bybit_samples, "ping.request.json"), ())
    assert reply.keepalive and not reply.request
    pong = orjson.loads(reply.frames[0])
    assert list(pong) == ["success", "ret_msg", "conn_id", "req_id", "op"]
    assert (pong["success"], pong["ret_msg"], pong["req_id"], pong["op"]) == (
        True, "pong", "100001", "ping",
    )  # fmt: skip
    assert VENUE.classify(reply.frames[0]).kind == PONG


@pytest.mark.parametrize(
    ("message", "ret_msg"),
    [
        (b'{"req_id":"1","op":"subscribe","args":["dcp.future"]}',
         "error:handler not found,topic:dcp.future"),
        (b'{"req_id":"1","op":"subscribe","args":["publicTrade.BTCUSDT","orderbook.50.BTCUSDT"]}',
         "error:not served by the simulator,topic:orderbook.50.BTCUSDT"),
        (b'{"req_id":"1","op":"subscribe","args":"publicTrade.BTCUSDT"}',
         "error:args must be a list of topics"),
        (b'{"req_id":"1","op":"auth","args":[]}', "error:invalid op"),
        (b"[1]", "error:invalid op"),
        (b"{nope", "error:request is not json"),
    ],
)  # fmt: skip
def test_the_simulated_venue_refuses_what_it_cannot_serve(message: bytes, ret_msg: str) -> None:
    reply = VENUE.dialect().on_message(message, ())
    assert reply.subscribe == () and not reply.request
    (frame,) = reply.frames
    assert orjson.loads(frame)["success"] is False
    assert VENUE.classify(frame) == VENUE.classify(frame)._replace(kind=ERROR, detail=ret_msg)


def test_the_simulated_venue_serves_the_real_path_only_and_cuts_clients_that_do_not_ping() -> None:
    dialect = VENUE.dialect()
    assert dialect.endpoint("/v5/public/linear") is not None
    assert dialect.endpoint("/v5/public/spot") is dialect.endpoint("/ws") is None
    assert dialect.keepalive == SimKeepalive(client_silence_s=SIM_CLIENT_SILENCE_S)
    # ccxt.pro pings every 18 s and the shell every 20 s: one lost ping is forgiven
    ccxt_ping_s = ccxtpro.bybit().streaming["keepAlive"] / 1000.0
    assert ccxt_ping_s == 18.0
    assert 2 * max(ccxt_ping_s, VENUE.keepalive.ping_every_s) < SIM_CLIENT_SILENCE_S


# -- the feed against the simulated venue -------------------------------------------------------


def feed_for(sim: SimExchange, **config: Any) -> Feed:
    """A Bybit feed of :data:`MARKETS` pointed at ``sim``, with test-sized timeouts."""
    settings: dict[str, Any] = {
        "watchdog_s": 5.0, "backoff_base_s": 0.02, "backoff_cap_s": 0.1, "close_timeout_s": 0.2,
    }  # fmt: skip
    settings.update(config)
    return Feed(
        VENUE, MARKETS, sim.urls_for(VENUE), FeedConfig(**settings), label=LABEL,
        rng=np.random.default_rng(0),
    )  # fmt: skip


def control_skips(feed: Feed) -> int:
    """Frames the feed's parser skipped that were acks or pongs, not data."""
    skipped = feed.parser.stats.skipped
    return skipped.get(base.SKIP_ACK, 0) + skipped.get(base.SKIP_KEEPALIVE, 0)


async def test_every_tick_of_the_market_arrives_once_and_in_order() -> None:
    ticks = market_ticks(20.0, seed=2)
    async with SimExchange(
        iter(ticks), dialect=VENUE.dialect(), speed=0, min_streams=2 * len(SYMBOLS)
    ) as sim:
        feed = feed_for(sim)
        async with running(feed) as got:
            await until(lambda: len(got) >= len(ticks))
            await sim.wait_sent(5.0)
            paths = [c.path for c in sim.clients]
    assert [key(t) for t in got] == [key(t) for t in ticks]
    assert paths == ["/v5/public/linear"]
    assert feed.stats.connects == 1 and feed.stats.reconnects == 0 and feed.stats.acks == 1
    assert feed.parser.stats.skipped == {base.SKIP_ACK: 1} and feed.parser.stats.rejected == {}


async def test_the_feed_that_pings_stays_connected_and_one_that_does_not_is_cut() -> None:
    keepalive = SimKeepalive(client_silence_s=0.4)
    market = SyntheticMarket(specs_for(SYMBOLS), seed=3, venue=LABEL, oracle_memory_s=None)
    async with SimExchange(
        market.ticks(), dialect=VENUE.dialect(), speed=5.0, keepalive=keepalive
    ) as sim:
        pinging = feed_for(sim, ping_every_s=0.1, pong_timeout_s=0.3)
        async with running(pinging) as got:
            await asyncio.sleep(1.2)
        assert got and sim.stats.keepalive_cuts == 0
        assert pinging.stats.connects == 1 and pinging.stats.pings_sent >= 5
        assert pinging.stats.keepalive_timeouts == 0, "every ping was answered in time"
        assert pinging.parser.stats.skipped.get(base.SKIP_KEEPALIVE, 0) >= 5
        silent = feed_for(sim, ping_every_s=60.0)
        async with running(silent):
            await until(lambda: sim.stats.keepalive_cuts >= 2 and silent.stats.reconnects >= 2)
    assert silent.stats.pings_sent == 0


async def test_a_dropped_connection_is_reopened_and_resubscribed_without_duplicate_trades() -> None:
    faults = FaultConfig(drop_every_s=0.3)
    ticks = market_ticks(120.0, seed=4)
    sent = set(map(key, ticks))
    async with SimExchange(iter(ticks), dialect=VENUE.dialect(), speed=40.0, faults=faults) as sim:
        feed = feed_for(sim)
        async with running(feed) as got:
            await until(lambda: feed.stats.reconnects >= 2)
            seen = len(got)
            await until(lambda: len(got) > seen + 50)
    assert sim.stats.fault_drops >= 2 and sim.stats.subscribe_requests >= 3
    assert feed.stats.acks >= 3
    assert all(key(t) in sent for t in got), "nothing but the market's ticks"
    trade_ids = Counter((t.symbol, t.trade_id) for t in got if t.kind == TRADE)
    assert max(trade_ids.values()) == 1
    repeated = sum(n - 1 for n in Counter(map(key, got)).values() if n > 1)
    assert repeated <= feed.stats.reconnects * len(SYMBOLS), "only the welcome snapshots repeat"


async def test_a_silent_stream_trips_the_watchdog_and_the_feed_recovers() -> None:
    faults = FaultConfig(silent=True)
    market = SyntheticMarket(specs_for(SYMBOLS), seed=5, venue=LABEL, oracle_memory_s=None)
    async with SimExchange(
        market.ticks(), dialect=VENUE.dialect(), speed=20.0, faults=faults
    ) as sim:
        feed = feed_for(sim, watchdog_s=0.2)
        async with running(feed) as got:
            await until(lambda: feed.stats.watchdog_trips >= 2)
            assert got == []
            faults.silent = False
            await until(lambda: len(got) > 20)
    assert feed.stats.reconnects >= 2 and feed.parser.stats.rejected == {}


async def test_acknowledged_subscriptions_without_data_trip_the_watchdog() -> None:
    faults = FaultConfig(ack_only=True)
    market = SyntheticMarket(specs_for(SYMBOLS), seed=6, venue=LABEL, oracle_memory_s=None)
    async with SimExchange(
        market.ticks(), dialect=VENUE.dialect(), speed=20.0, faults=faults
    ) as sim:
        feed = feed_for(sim, watchdog_s=0.2)
        async with running(feed) as got:
            await until(lambda: feed.stats.watchdog_trips >= 2)
    assert got == [] and feed.stats.acks >= 2 and feed.stats.frames == 0


async def test_malformed_frames_are_counted_without_losing_a_tick() -> None:
    ticks = market_ticks(20.0, seed=7)
    faults = FaultConfig(malformed_every=25)
    async with SimExchange(
        iter(ticks), dialect=VENUE.dialect(), speed=0, faults=faults, min_streams=6
    ) as sim:
        feed = feed_for(sim)
        async with running(feed) as got:
            await until(lambda: len(got) >= len(ticks))
            await sim.wait_sent(5.0)
            await asyncio.sleep(0.05)
    assert [key(t) for t in got] == [key(t) for t in ticks]
    stats = feed.parser.stats
    broken = stats.total_rejected + stats.total_skipped - control_skips(feed)
    assert broken == sim.stats.malformed_sent > 0
    assert stats.rejected.get(contract.REJECT_CROSSED, 0) > 0, "a crossed book spoils no book"
    assert feed.stats.frames == len(ticks) + sim.stats.malformed_sent


# -- ccxt.pro's own client against the simulated venue ------------------------------------------


def ccxt_client(sim: SimExchange, **options: Any) -> Any:
    """ccxt.pro's bybit pointed at ``sim`` with offline markets (no REST call)."""
    exchange = ccxtpro.bybit({"options": options} if options else {})
    exchange.urls["api"]["ws"]["public"]["linear"] = sim.urls_for(VENUE)["public"]
    exchange.set_markets(ccxt_markets(MARKETS))
    return exchange


async def test_ccxt_pro_receives_every_trade_and_the_last_best_bid_ask_as_sent() -> None:
    ticks = market_ticks(15.0, seed=8, symbols=[BTC])
    trades = [t for t in ticks if t.kind == TRADE]
    last = [t for t in ticks if t.kind == QUOTE][-1]
    async with SimExchange(iter(ticks), dialect=VENUE.dialect(), speed=0, min_streams=2) as sim:
        exchange = ccxt_client(sim)
        try:
            await asyncio.wait_for(
                asyncio.gather(exchange.watch_trades(BTC), exchange.watch_bids_asks([BTC])), 10.0
            )
            await sim.wait_sent(10.0)
            await until(lambda: len(exchange.trades.get(BTC, ())) >= len(trades))
            await until(lambda: exchange.bidsasks[BTC]["timestamp"] == last.event_ms)
            received, book = list(exchange.trades[BTC]), exchange.bidsasks[BTC]
        finally:
            await exchange.close()
    # Linear contracts are one coin: ccxt's amounts are the venue's sizes, base units as ours.
    assert [
        (r["id"], r["timestamp"], r["price"], r["amount"], r["side"]) for r in received
    ] == [(t.trade_id, t.event_ms, t.price, t.size, "buy" if t.side == 1 else "sell")
          for t in trades]  # fmt: skip
    assert (book["bid"], book["bidVolume"], book["ask"], book["askVolume"]) == (
        last.bid, last.bid_size, last.ask, last.ask_size,
    )  # fmt: skip


async def test_ccxt_pro_s_own_pings_keep_it_connected_under_the_venue_s_ping_rule() -> None:
    keepalive = SimKeepalive(client_silence_s=0.5)
    market = SyntheticMarket(specs_for([BTC]), seed=9, venue=LABEL, oracle_memory_s=None)
    async with SimExchange(
        market.ticks(), dialect=VENUE.dialect(), speed=5.0, keepalive=keepalive
    ) as sim:
        exchange = ccxt_client(sim, ws={"keepAlive": 150})  # ms; 18,000 by default
        try:
            await asyncio.wait_for(exchange.watch_trades(BTC), 10.0)
            await asyncio.sleep(1.5)
            more = await asyncio.wait_for(exchange.watch_trades(BTC), 5.0)
        finally:
            await exchange.close()
        assert more and sim.stats.keepalive_cuts == 0 and sim.stats.connections == 1
        lazy = ccxt_client(sim, ws={"keepAlive": 60_000})
        try:
            await asyncio.wait_for(lazy.watch_trades(BTC), 10.0)
            await until(lambda: sim.stats.keepalive_cuts >= 1)
        finally:
            await lazy.close()
