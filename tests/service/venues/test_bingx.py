"""BingX perpetual swap: the real wire samples, gzip frames, id-less trade pushes newest first,
malformed frames, the simulated dialect (acks, errors, ``Ping``/``Pong``), the feed against it,
and ccxt.pro's own client against it (with its de-duplication pitfall pinned)."""

from __future__ import annotations

import asyncio
import zlib
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import ccxt.pro as ccxtpro
import numpy as np
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tickcast.service import ticks as contract
from tickcast.service.feed.shell import Feed, FeedConfig
from tickcast.service.sim.faults import FaultConfig
from tickcast.service.sim.market import SyntheticMarket
from tickcast.service.sim.server import SimExchange
from tickcast.service.sim.symbols import specs_for
from tickcast.service.ticks import QUOTE, TRADE, Tick, invalid_reason, quote, trade
from tickcast.service.venues import base
from tickcast.service.venues.base import FeedParseError, Parser
from tickcast.service.venues.bingx import (
    MALFORMED_FRAMES,
    VENUE,
    BingxRenderer,
    gzip_frame,
    render_book_ticker,
    render_trades,
    subscribe_request,
)
from tickcast.service.venues.markets import MarketError, ccxt_markets
from tickcast.service.venues.venue import ACK, DATA, ERROR, PING, Endpoint, Reply, SimKeepalive

from support import running, until

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
SYMBOLS = [BTC, ETH]
MARKETS = [VENUE.market(s) for s in SYMBOLS]
LABEL = "sim-bingx"


@pytest.fixture(scope="module")
def bingx_samples(samples_dir: Path) -> Path:
    return samples_dir / "bingx-swap"


def sample(folder: Path, name: str) -> bytes:
    return (folder / name).read_bytes().strip()


def key(tick: Tick) -> Tick:
    """A tick as the venue can send it back: no receive time, no trade id."""
    return tick._replace(recv_ns=0, trade_id="")


def market_ticks(seconds: float, seed: int, rate_scale: float = 8.0) -> list[Tick]:
    """A busy synthetic market of BTC and ETH (several trades of a symbol share a millisecond
    now and then), ending on a quote: the simulated venue holds a trade until the next tick
    shows whether that tick joins its push."""
    market = SyntheticMarket(specs_for(SYMBOLS, rate_scale), seed=seed, venue=LABEL)
    ticks = list(market.ticks(seconds))
    while ticks[-1].kind != QUOTE:
        ticks.pop()
    return ticks


def pushes_of(ticks: list[Tick]) -> int:
    """How many pushes the simulated venue sends for ``ticks``: one per quote, one per run of
    trades of one symbol in one millisecond."""
    return sum(t.kind == QUOTE for t in ticks) + len(trade_runs(ticks))


def trade_runs(ticks: list[Tick]) -> list[list[Tick]]:
    """The trades of ``ticks`` grouped as the simulated venue pushes them: runs of consecutive
    trades of one symbol in one millisecond."""
    runs: list[list[Tick]] = []
    before: Tick | None = None
    for tick in ticks:
        if tick.kind == TRADE:
            joins = (
                before is not None
                and before.kind == TRADE
                and (before.symbol, before.event_ms) == (tick.symbol, tick.event_ms)
            )
            if joins:
                runs[-1].append(tick)
            else:
                runs.append([tick])
        before = tick
    return runs


def trade_frame(*trades: object, data_type: str = "BTC-USDT@trade") -> bytes:
    return orjson.dumps({"code": 0, "dataType": data_type, "data": list(trades)})


def one_trade(**fields: object) -> dict[str, object]:
    item: dict[str, object] = {
        "q": "0.0421", "p": "29023.5", "T": 1690221401344, "m": False, "s": "BTC-USDT",
    }  # fmt: skip
    item.update(fields)
    return {k: v for k, v in item.items() if v is not None}


def book_frame(**fields: object) -> bytes:
    data: dict[str, object] = {
        "e": "bookTicker", "u": 285099199, "E": 1725205790747, "T": 1725205790748,
        "s": "BTC-USDT", "b": "58279.4", "B": "3.3588", "a": "58280.0", "A": "0.5331",
    }  # fmt: skip
    data.update(fields)
    data = {k: v for k, v in data.items() if v is not None}
    return orjson.dumps({"code": 0, "dataType": "BTC-USDT@bookTicker", "data": data})


# -- the real wire samples ------------------------------------------------------------------

#: The 23 trades of trade.json, oldest first: (trade time, price, size, side).
SAMPLE_TRADES = [
    (1714650252503, 2984.42, 6.78, 1),
    (1714650252628, 2983.92, 0.01, -1),
    *[(1714650252639, 2983.92, 0.01, -1)] * 5,
    *[(1714650252640, 2983.92, 0.01, -1)] * 11,
    *[(1714650252641, 2983.92, 0.01, -1)] * 2,
    (1714650252757, 2983.94, 0.13, 1),
    (1714650252893, 2983.66, 8.26, 1),
    (1714650253104, 2983.48, 1.92, 1),
]


def test_the_sample_folder_holds_the_four_files_these_tests_read(bingx_samples: Path) -> None:
    assert sorted(p.name for p in bingx_samples.iterdir()) == [
        "bookTicker.json", "subscribe-exchange.txt", "ticker_ccxt_comment.json", "trade.json",
    ]  # fmt: skip


@pytest.mark.parametrize("gzipped", [False, True], ids=["recorded text", "gzip as on the wire"])
def test_the_recorded_trade_push_makes_all_23_trades_oldest_first_identical_ones_included(
    bingx_samples: Path, gzipped: bool
) -> None:
    frame = sample(bingx_samples, "trade.json")
    parser = VENUE.parser()
    ticks = parser.parse(gzip_frame(frame) if gzipped else frame, 42)
    assert ticks == [
        Tick("bingx", ETH, TRADE, ms, 42, price, size, side, "")
        for ms, price, size, side in SAMPLE_TRADES
    ]
    assert parser.stats.parsed_trades == 23
    assert (parser.stats.skipped, parser.stats.rejected) == ({}, {})
    identical = Counter((t.event_ms, t.price, t.size, t.side) for t in ticks)
    assert len(identical) == 8 and identical.most_common(1)[0][1] == 11


def test_the_recorded_book_ticker_uses_its_trade_time_and_update_id(bingx_samples: Path) -> None:
    parser = VENUE.parser()
    (tick,) = parser.parse(gzip_frame(sample(bingx_samples, "bookTicker.json")), 3)
    assert tick == quote("bingx", ETH, 1714650946596, 3, 2993.59, 13.24, 2993.67, 9.78, 309869207)
    assert (parser.stats.parsed_quotes, parser.stats.skipped, parser.stats.rejected) == (1, {}, {})


def test_the_recorded_ticker_push_is_skipped_as_another_event(bingx_samples: Path) -> None:
    frame = (bingx_samples / "ticker_ccxt_comment.json").read_bytes()
    parser = VENUE.parser()
    assert parser.parse(frame, 0) == [] and parser.parse(gzip_frame(frame), 0) == []
    assert parser.stats.skipped == {base.SKIP_OTHER_EVENT: 2}
    assert parser.stats.rejected == {} and parser.stats.total_parsed == 0
    assert VENUE.classify(gzip_frame(frame)).kind == DATA


def test_a_gzip_bomb_is_rejected_without_inflating_it_whole() -> None:
    bomb = gzip_frame(b'{"dataType":"BTC-USDT@trade","data":"' + b"0" * (64 << 20) + b'"}')
    assert len(bomb) < 1 << 20  # 64 MiB of zeros in a frame under the 4 MiB limit
    parser = VENUE.parser()
    assert parser.parse(bomb, 0) == []
    assert parser.stats.rejected == {base.REJECT_COMPRESSED: 1}


def test_the_recorded_subscription_is_what_the_feed_sends_and_its_ack_is_an_ack(
    bingx_samples: Path,
) -> None:
    lines = (bingx_samples / "subscribe-exchange.txt").read_text().splitlines()
    request = orjson.loads(lines[0].removeprefix(">"))
    answer = lines[1].removeprefix("<").strip().encode()
    ours = orjson.loads(subscribe_request(request["dataType"]))
    assert list(ours) == list(request) and ours["reqType"] == request["reqType"] == "sub"
    assert ours["dataType"] == "ETH-USDT@trade"
    parser = VENUE.parser()
    assert parser.parse(answer, 0) == [] and parser.parse(gzip_frame(answer), 0) == []
    assert parser.stats.skipped == {base.SKIP_ACK: 2}
    assert VENUE.classify(answer).kind == VENUE.classify(gzip_frame(answer)).kind == ACK


@pytest.mark.parametrize(
    ("name", "trades", "quotes", "skipped"),
    [
        ("trade.json", 23, 0, {}),
        ("bookTicker.json", 0, 1, {}),
        ("ticker_ccxt_comment.json", 0, 0, {base.SKIP_OTHER_EVENT: 1}),
    ],
)
def test_every_sample_frame_is_counted_once_by_a_file_reader_without_markets(
    bingx_samples: Path, name: str, trades: int, quotes: int, skipped: dict[str, int]
) -> None:
    parser = VENUE.parser(None, "bingx-file")
    ticks = parser.parse((bingx_samples / name).read_text(), 0)  # str, as a file reader passes
    assert (parser.stats.parsed_trades, parser.stats.parsed_quotes) == (trades, quotes)
    assert parser.stats.skipped == skipped and parser.stats.rejected == {}
    assert len(ticks) == trades + quotes and {t.venue for t in ticks} <= {"bingx-file"}


# -- malformed frames ---------------------------------------------------------------------

GOOD_TRADE = trade_frame(one_trade())

MALFORMED: list[tuple[str, bytes | str, str, str]] = [
    ("gzip magic then junk", b"\x1f\x8b\x08\x00junk", "rejected", base.REJECT_COMPRESSED),
    ("truncated gzip", gzip_frame(GOOD_TRADE)[:-12], "rejected", base.REJECT_COMPRESSED),
    ("garbage", b"not json", "rejected", base.REJECT_JSON),
    ("gzipped garbage", gzip_frame(b"not json"), "rejected", base.REJECT_JSON),
    ("empty", b"", "rejected", base.REJECT_JSON),
    ("array", b"[1, 2]", "rejected", base.REJECT_NOT_OBJECT),
    ("string", b'"Ping"', "rejected", base.REJECT_NOT_OBJECT),
    ("numeric dataType", b'{"code":0,"dataType":5,"data":[]}', "rejected", base.REJECT_MISSING),
    ("neither data nor answer", b'{"msg":"hello"}', "rejected", base.REJECT_MISSING),
    ("trade data null", trade_frame().replace(b"[]", b"null"), "rejected", base.REJECT_MISSING),
    ("empty trade list", trade_frame(), "rejected", base.REJECT_MISSING),
    ("trade list of numbers", trade_frame().replace(b"[]", b"[5]"), "rejected",
     base.REJECT_NOT_OBJECT),
    ("missing price", trade_frame(one_trade(p=None)), "rejected", base.REJECT_MISSING),
    ("missing trade time", trade_frame(one_trade(T=None)), "rejected", base.REJECT_MISSING),
    ("missing maker flag", trade_frame(one_trade(m=None)), "rejected", base.REJECT_MISSING),
    ("missing symbol", trade_frame(one_trade(s=None)), "rejected", base.REJECT_MISSING),
    ("text price", trade_frame(one_trade(p="abc")), "rejected", base.REJECT_NOT_NUMERIC),
    ("object size", trade_frame(one_trade(q={"x": 1})), "rejected", base.REJECT_TYPE),
    ("text time", trade_frame(one_trade(T="1.5")), "rejected", base.REJECT_TYPE),
    ("nan price", trade_frame(one_trade(p="NaN")), "rejected", contract.REJECT_NON_FINITE),
    ("infinite size", trade_frame(one_trade(q="inf")), "rejected", contract.REJECT_NON_FINITE),
    ("zero price", trade_frame(one_trade(p="0.0")), "rejected", contract.REJECT_PRICE),
    ("negative size", trade_frame(one_trade(q="-1")), "rejected", contract.REJECT_SIZE),
    ("zero time", trade_frame(one_trade(T=0)), "rejected", contract.REJECT_TIME),
    ("maker flag as text", trade_frame(one_trade(m="false")), "rejected", contract.REJECT_SIDE),
    ("numeric symbol", trade_frame(one_trade(s=42)), "rejected", base.REJECT_SYMBOL),
    ("lower-case id", trade_frame(one_trade(s="btc-usdt")), "rejected", base.REJECT_SYMBOL),
    ("coin-m id", trade_frame(one_trade(s="BTC-USD")), "rejected", base.REJECT_SYMBOL),
    ("crossed book", book_frame(b="58280.1"), "rejected", contract.REJECT_CROSSED),
    ("negative bid size", book_frame(B="-1"), "rejected", contract.REJECT_SIZE),
    ("nan ask", book_frame(a="nan"), "rejected", contract.REJECT_NON_FINITE),
    ("zero bid", book_frame(b="0"), "rejected", contract.REJECT_PRICE),
    ("missing update id", book_frame(u=None), "rejected", base.REJECT_MISSING),
    ("book data null", b'{"code":0,"dataType":"BTC-USDT@bookTicker","data":null}', "rejected",
     base.REJECT_MISSING),
    ("book data list", b'{"code":0,"dataType":"BTC-USDT@bookTicker","data":[]}', "rejected",
     base.REJECT_NOT_OBJECT),
    ("unknown channel", b'{"code":0,"dataType":"BTC-USDT@mystery","data":{}}', "skipped",
     base.SKIP_UNKNOWN_EVENT),
    ("partial depth", b'{"code":0,"dataType":"BTC-USDT@depth20@200ms","ts":1,"data":{}}',
     "skipped", base.SKIP_DEPTH),
    ("incremental depth", b'{"code":0,"dataType":"BTC-USDT@incrDepth","data":{}}', "skipped",
     base.SKIP_DEPTH),
    ("mark price", b'{"code":0,"dataType":"BTC-USDT@markPrice","data":{"p":"1"}}', "skipped",
     base.SKIP_MARK_PRICE),
    ("kline", b'{"code":0,"dataType":"BTC-USDT@kline_1m","data":[]}', "skipped",
     base.SKIP_OTHER_EVENT),
    ("ack as recorded in 2026", b'{"id":"a","code":0,"msg":"","dataType":"","data":null}',
     "skipped", base.SKIP_ACK),
    ("refused topic", b'{"id":"a","code":80015,"msg":"dataType not support","dataType":"",'
     b'"data":null}', "skipped", base.SKIP_ERROR_REPLY),
    ("error without id", b'{"code":100400,"msg":"not supported","timestamp":1790126693749}',
     "skipped", base.SKIP_ERROR_REPLY),
    ("server ping", gzip_frame(b"Ping"), "skipped", base.SKIP_KEEPALIVE),
    ("recorded ping", b"Ping", "skipped", base.SKIP_KEEPALIVE),
    ("recorded pong", "Pong", "skipped", base.SKIP_KEEPALIVE),
]  # fmt: skip


#: The fault campaign's values (issue 10), one frame each (gzipped, as the venue sends them):
#: BingX sends prices and sizes as decimal strings and times and update ids as JSON integers;
#: nothing else is coerced, and what is a number still meets the tick contract's ranges.
CAMPAIGN: list[tuple[str, bytes, str]] = [
    (name, gzip_frame(frame), reason)
    for name, frame, reason in [
        ("bool price", trade_frame(one_trade(p=True)), base.REJECT_TYPE),
        ("number price", trade_frame(one_trade(p=29023.5)), base.REJECT_TYPE),
        ("number size", trade_frame(one_trade(q=1)), base.REJECT_TYPE),
        ("float time", trade_frame(one_trade(T=1e300)), base.REJECT_TYPE),
        ("bool time", trade_frame(one_trade(T=True)), base.REJECT_TYPE),
        ("year 2100", trade_frame(one_trade(T=4102444800000)), contract.REJECT_TIME_RANGE),
        ("absurd price", trade_frame(one_trade(p="1e308")), contract.REJECT_PRICE_RANGE),
        ("NaN price", trade_frame(one_trade(p="NaN")), contract.REJECT_NON_FINITE),
        ("Infinity size", trade_frame(one_trade(q="Infinity")), contract.REJECT_NON_FINITE),
        ("negative size -1", trade_frame(one_trade(q="-1")), contract.REJECT_SIZE),
        ("bool bid", book_frame(b=True), base.REJECT_TYPE),
        ("number ask size", book_frame(A=0.5331), base.REJECT_TYPE),
        ("float book time", book_frame(T=1.7e12), base.REJECT_TYPE),
        ("bool update id", book_frame(u=True), base.REJECT_TYPE),
        ("book in 2100", book_frame(T=4102444800000), contract.REJECT_TIME_RANGE),
        ("absurd book", book_frame(b="1.7e308", a="1.7e308", B="1e308", A="1e308"),
         contract.REJECT_PRICE_RANGE),
    ]
]  # fmt: skip
MALFORMED += [(name, frame, "rejected", reason) for name, frame, reason in CAMPAIGN]


@pytest.mark.parametrize(
    ("frame", "outcome", "reason"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_a_bad_or_tickless_frame_is_counted_with_its_reason_and_never_raised(
    frame: bytes | str, outcome: str, reason: str
) -> None:
    parser = VENUE.parser()
    assert parser.parse(frame, 1) == []
    counted = parser.stats.rejected if outcome == "rejected" else parser.stats.skipped
    other = parser.stats.skipped if outcome == "rejected" else parser.stats.rejected
    assert counted == {reason: 1}
    assert other == {}
    assert parser.stats.total_parsed == 0


def test_a_bad_trade_in_a_push_is_rejected_alone_and_its_neighbours_are_kept() -> None:
    frame = trade_frame(
        one_trade(T=1690221401346, p="29023.7"),
        one_trade(T=1690221401345, p="-1"),
        5,
        one_trade(T=1690221401344),
    )
    parser = VENUE.parser()
    ticks = parser.parse(frame, 0)
    assert [(t.event_ms, t.price) for t in ticks] == [
        (1690221401344, 29023.5),
        (1690221401346, 29023.7),
    ]
    assert parser.stats.rejected == {contract.REJECT_PRICE: 1, base.REJECT_NOT_OBJECT: 1}
    assert parser.stats.parsed_trades == 2


def test_the_campaign_frames_are_counted_and_the_valid_frames_between_them_still_parse() -> None:
    parser = VENUE.parser()
    ticks: list[Tick] = []
    for _, frame, _ in CAMPAIGN:
        assert parser.parse(frame, 1) == []
        ticks += parser.parse(gzip_frame(GOOD_TRADE), 1)
    push = trade_frame(one_trade(), one_trade(p=True), one_trade(T=1.5), one_trade())
    ticks += parser.parse(gzip_frame(push), 1)
    assert len(ticks) == len(CAMPAIGN) + 2
    assert all(invalid_reason(t) is None for t in ticks)
    assert parser.stats.rejected == Counter(reason for *_, reason in CAMPAIGN) + Counter(
        {base.REJECT_TYPE: 2}
    )
    assert parser.stats.skipped == {}


def test_the_dialects_malformed_frames_are_each_counted_once_with_their_reason() -> None:
    parser = VENUE.parser(MARKETS)
    dialect = VENUE.dialect()
    for frame in dialect.malformed():
        assert parser.parse(dialect.encode(frame), 0) == []
    assert parser.stats.rejected == {
        base.REJECT_JSON: 1, base.REJECT_NOT_OBJECT: 1, contract.REJECT_PRICE: 1,
        contract.REJECT_NON_FINITE: 1, base.REJECT_MISSING: 1, contract.REJECT_CROSSED: 1,
    }  # fmt: skip
    assert parser.stats.skipped == {base.SKIP_UNKNOWN_EVENT: 1}
    assert len(MALFORMED_FRAMES) == 7


def test_a_book_ticker_without_trade_time_falls_back_to_the_event_time() -> None:
    parser = VENUE.parser()
    (tick,) = parser.parse(book_frame(T=None), 0)
    assert tick.event_ms == 1725205790747
    (tick,) = parser.parse(book_frame(), 0)
    assert tick.event_ms == 1725205790748


def test_subscribed_markets_name_their_ids_and_other_ids_are_skipped_per_trade() -> None:
    parser = VENUE.parser([VENUE.market(ETH)], LABEL)
    assert parser.parse(trade_frame(one_trade(), one_trade()), 0) == []
    assert parser.parse(book_frame(), 0) == []
    assert parser.stats.skipped == {base.SKIP_UNSUBSCRIBED: 3}
    (tick,) = parser.parse(trade_frame(one_trade(s="ETH-USDT"), data_type="ETH-USDT@trade"), 5)
    assert (tick.venue, tick.symbol, tick.recv_ns) == (LABEL, ETH, 5)


def test_without_markets_any_id_of_the_naming_rule_is_named_with_contract_size_1() -> None:
    (tick,) = VENUE.parser().parse(trade_frame(one_trade(s="NCCOGOLD2USD-USDT", q="3")), 0)
    assert (tick.symbol, tick.size) == ("NCCOGOLD2USD/USDT:USDT", 3.0)


def test_the_bingx_parser_satisfies_the_parser_protocol() -> None:
    parser = VENUE.parser()
    assert isinstance(parser, Parser) and parser.venue == "bingx"


# -- rendering: the simulated venue's frames ------------------------------------------------


def test_rendering_the_recorded_trades_gives_back_the_recorded_push_byte_for_byte(
    bingx_samples: Path,
) -> None:
    frame = sample(bingx_samples, "trade.json")
    ticks = VENUE.parser().parse(frame, 0)
    assert orjson.dumps(render_trades(ticks, VENUE.market(ETH))) == frame


def test_rendering_the_recorded_book_ticker_gives_back_the_recorded_push_byte_for_byte(
    bingx_samples: Path,
) -> None:
    frame = sample(bingx_samples, "bookTicker.json")
    (tick,) = VENUE.parser().parse(frame, 0)
    pushed = orjson.loads(frame)["data"]["E"]
    assert orjson.dumps(render_book_ticker(tick, VENUE.market(ETH), push_ms=pushed)) == frame


def test_a_simulated_market_renders_and_parses_back_tick_for_tick_with_batched_pushes() -> None:
    ticks = market_ticks(10.0, seed=3)
    dialect = VENUE.dialect()
    render = dialect.renderer()
    wanted = {f"{m.venue_id}@{c}" for m in MARKETS for c in ("trade", "bookTicker")}
    parser = VENUE.parser(MARKETS, LABEL)
    back: list[Tick] = []
    batches: list[list[Any]] = []
    for tick in ticks:
        for topic, event in render.events(tick, wanted):
            assert topic in wanted
            back += parser.parse(dialect.encode(event), tick.recv_ns)
            data = orjson.loads(event)["data"]
            if isinstance(data, list) and len(data) > 1:
                batches.append(data)
    assert [key(t) for t in back] == [key(t) for t in ticks]
    assert parser.stats.total_rejected == parser.stats.total_skipped == 0
    assert len(batches) >= 5 and max(map(len, batches)) >= 3, "several trades share a push"
    for data in batches:  # one symbol and one millisecond per push; newest first
        assert len({(d["s"], d["T"]) for d in data}) == 1
    ordered = {(t.symbol, t.event_ms, t.price, t.size): i for i, t in enumerate(ticks)}
    first = batches[0]
    symbol = "BTC/USDT:USDT" if first[0]["s"] == "BTC-USDT" else ETH
    places = [ordered[(symbol, d["T"], float(d["p"]), float(d["q"]))] for d in first]
    assert places == sorted(places, reverse=True), "the newest trade comes first"


def test_trades_are_released_by_the_next_tick_and_only_for_wanted_topics() -> None:
    render = BingxRenderer(VENUE.assumed_market)
    t1 = trade(LABEL, BTC, 10, 0, 60000.0, 0.1, 1)
    t2 = trade(LABEL, BTC, 11, 0, 60000.1, 0.2, -1)
    q = quote(LABEL, ETH, 11, 0, 3000.0, 1.0, 3000.01, 1.0, 1)
    assert render.events(t1, {"BTC-USDT@trade"}) == []
    (released,) = render.events(t2, {"BTC-USDT@trade"})  # another millisecond
    assert released[0] == "BTC-USDT@trade" and len(orjson.loads(released[1])["data"]) == 1
    (only,) = render.events(q, {"ETH-USDT@bookTicker"})  # releases t2, whose topic is unwanted
    assert only[0] == "ETH-USDT@bookTicker"
    assert render.events(q, {"BTC-USDT@trade"}) == [], "t2 was released once, not held again"


def test_a_market_that_ends_on_a_trade_still_sends_its_last_push() -> None:
    render = VENUE.dialect().renderer()
    wanted = {"BTC-USDT@trade"}
    last = trade(LABEL, BTC, 5, 0, 60000.0, 0.25, -1)
    assert render.events(last, wanted) == [], "held: the next tick may join its push"
    ((topic, frame),) = render.flush(wanted)
    assert topic == "BTC-USDT@trade"
    assert [t._replace(recv_ns=0) for t in VENUE.parser(label=LABEL).parse(frame, 0)] == [last]
    assert render.flush(wanted) == [], "sent once"


def test_rendering_refuses_what_the_venue_cannot_send() -> None:
    market = VENUE.market(BTC)
    t = trade(LABEL, BTC, 1, 0, 100.0, 1.0, 1)
    q = quote(LABEL, BTC, 1, 0, 1.0, 1.0, 2.0, 1.0)
    with pytest.raises(FeedParseError, match="at least one"):
        render_trades([], market)
    with pytest.raises(FeedParseError, match="trade ticks"):
        render_trades([t, q], market)
    with pytest.raises(FeedParseError, match="quote tick"):
        render_book_ticker(t, market)
    with pytest.raises(FeedParseError, match="non-finite"):
        render_trades([t._replace(price=float("nan"))], market)


# -- the venue: ids, connections, classification ---------------------------------------------


@pytest.mark.parametrize(
    ("venue_id", "unified"),
    [("BTC-USDT", BTC), ("1000PEPE-USDT", "1000PEPE/USDT:USDT"), ("BTC-USDC", "BTC/USDC:USDC")],
)
def test_ids_and_unified_symbols_map_both_ways(venue_id: str, unified: str) -> None:
    market = VENUE.derive(venue_id)
    assert market is not None and market.symbol == unified and market.contract_size == 1.0
    assert VENUE.venue_id(unified) == venue_id


@pytest.mark.parametrize("symbol", ["BTC/USD:BTC", "BTC/USDT:USDT-261225", "BTCUSDT"])
def test_symbols_the_swap_socket_does_not_serve_are_refused(symbol: str) -> None:
    with pytest.raises(FeedParseError):
        VENUE.venue_id(symbol)
    with pytest.raises(MarketError):
        VENUE.assumed_market(symbol)


@pytest.mark.parametrize("venue_id", ["btc-usdt", "BTCUSDT", "BTC-USD", "BTC-USDT-SWAP", ""])
def test_an_id_outside_the_naming_rule_names_no_market(venue_id: str) -> None:
    assert VENUE.derive(venue_id) is None


def test_the_shipped_table_lists_base_unit_contracts_and_the_known_ticks() -> None:
    table = VENUE.markets()
    assert len(table) >= 20 and {m.contract_size for m in table.values()} == {1.0}
    assert all(m.venue_id == VENUE.venue_id(s) for s, m in table.items())
    assert (table[BTC].price_tick, table[ETH].price_tick) == (0.1, 0.01)
    assert VENUE.assumed_market("FOO/USDT:USDT").venue_id == "FOO-USDT"


def test_the_venue_describes_the_swap_socket_and_its_keepalive() -> None:
    assert (VENUE.name, VENUE.title, VENUE.ccxt_id) == ("bingx", "BingX perpetual swap", "bingx")
    (url,) = (urlsplit(u) for u in VENUE.routes.values())
    assert (set(VENUE.routes), url.scheme, url.path) == ({"public"}, "wss", "/swap-market")
    keepalive = VENUE.keepalive
    assert (keepalive.ping, keepalive.ws_ping) == (None, False)
    assert not VENUE.sequential_trade_ids and 0.0 < VENUE.subscribe_per_s < 10.0
    assert VENUE.max_connection_s is None and VENUE.retired is None
    dialect = VENUE.dialect()
    assert dialect.binary and dialect.keepalive == SimKeepalive(
        server_ping=b"Ping", server_ping_s=5.0, client_silence_s=30.0
    )


def test_connections_send_one_subscription_per_topic_with_stable_uuids() -> None:
    urls = {"public": "ws://127.0.0.1:1/swap-market"}
    (connection,) = VENUE.connections(MARKETS, urls)
    assert (connection.route, connection.url) == ("public", urls["public"])
    requests = [orjson.loads(m) for m in connection.subscribe]
    assert [r["dataType"] for r in requests] == [
        "BTC-USDT@trade", "BTC-USDT@bookTicker", "ETH-USDT@trade", "ETH-USDT@bookTicker",
    ]  # fmt: skip
    assert {r["reqType"] for r in requests} == {"sub"}
    assert len({r["id"] for r in requests}) == 4 and all(len(r["id"]) == 36 for r in requests)
    assert VENUE.connections(MARKETS, urls) == [connection], "the same plan on every call"


def test_many_markets_are_split_over_connections_of_20_topics() -> None:
    markets = [VENUE.assumed_market(f"C{i}/USDT:USDT") for i in range(250)]
    plan = VENUE.connections(markets, VENUE.routes)
    assert [(c.route, len(c.subscribe)) for c in plan] == [
        ("public", 200), ("public-2", 200), ("public-3", 100),
    ]  # fmt: skip
    last = orjson.loads(plan[0].subscribe[-1])["dataType"]
    assert last == "C99-USDT@bookTicker", "a market's two topics share a connection"


@pytest.mark.parametrize(
    ("frame", "kind", "reply", "detail"),
    [
        (gzip_frame(b"Ping"), PING, b"Pong", ""),
        (gzip_frame(b'{"id":"|1|","code":0,"msg":""}'), ACK, None, ""),
        (gzip_frame(b'{"id":"a","code":0,"msg":"","dataType":"","data":null}'), ACK, None, ""),
        (gzip_frame(b'{"id":"a","code":80015,"msg":"dataType not support","dataType":"",'
                    b'"data":null}'), ERROR, None, "code 80015: dataType not support (id a)"),
        (b'{"code":100400,"msg":"not supported","timestamp":1}', ERROR, None,
         "code 100400: not supported"),
        (gzip_frame(GOOD_TRADE), DATA, None, ""),
        (gzip_frame(b'{"code":0,"dataType":"BTC-USDT@depth5","data":{}}'), DATA, None, ""),
        (b"\x1f\x8b\x08\x00junk", DATA, None, ""),
        (gzip_frame(b"[1,2]"), DATA, None, ""),
    ],
    ids=["ping", "ack", "ack 2026", "refused", "error without id", "trade", "depth", "junk",
         "array"],
)  # fmt: skip
def test_classify_tells_pings_acks_and_errors_from_data(
    frame: bytes, kind: str, reply: bytes | None, detail: str
) -> None:
    control = VENUE.classify(frame)
    assert (control.kind, control.reply, control.detail) == (kind, reply, detail)


def test_recognises_bingx_trade_and_book_pushes_gzipped_or_not(bingx_samples: Path) -> None:
    for name in ("trade.json", "bookTicker.json"):
        frame = sample(bingx_samples, name)
        assert VENUE.recognises(frame) and VENUE.recognises(gzip_frame(frame))
    assert not VENUE.recognises(sample(bingx_samples, "ticker_ccxt_comment.json"))
    assert not VENUE.recognises(b'{"stream":"btcusdt@trade","data":{"e":"trade"}}')
    assert not VENUE.recognises(b'{"code":0,"dataType":"btc-usdt@trade","data":[]}')
    assert not VENUE.recognises(b"\x1f\x8bjunk")


# -- the dialect ----------------------------------------------------------------------------


def test_the_dialect_serves_the_swap_path_only() -> None:
    dialect = VENUE.dialect()
    assert dialect.endpoint("/swap-market") is not None
    assert dialect.endpoint("/swap-market?listenKey=x") is not None
    assert dialect.endpoint("/market") is None and dialect.endpoint("/") is None


def test_the_dialect_acks_refuses_and_counts_topics_as_the_venue_does() -> None:
    dialect = VENUE.dialect()
    sub = dialect.on_message(subscribe_request("BTC-USDT@trade"), ())
    (ack,) = sub.frames
    assert orjson.loads(ack) == {
        "id": orjson.loads(subscribe_request("BTC-USDT@trade"))["id"],
        "code": 0, "msg": "", "dataType": "", "data": None,
    }  # fmt: skip
    assert (sub.subscribe, sub.request, sub.keepalive) == (("BTC-USDT@trade",), True, False)
    unsub = dialect.on_message(subscribe_request("BTC-USDT@trade", "unsub"), ("BTC-USDT@trade",))
    assert unsub.unsubscribe == ("BTC-USDT@trade",) and orjson.loads(unsub.frames[0])["code"] == 0
    for refused in ("btc-usdt@trade", "BTC-USDT@nope", "BTC-USDT@depth30@200ms", "BTC-USD@trade"):
        reply = dialect.on_message(subscribe_request(refused), ())
        assert reply.subscribe == () and orjson.loads(reply.frames[0])["code"] == 80015
    full = tuple(f"C{i}-USDT@trade" for i in range(200))
    over = dialect.on_message(subscribe_request("BTC-USDT@trade"), full)
    assert over.subscribe == () and orjson.loads(over.frames[0])["msg"] == (
        "your topic num over max 200"
    )
    assert dialect.on_message(subscribe_request("C0-USDT@trade"), full).subscribe == (
        "C0-USDT@trade",
    ), "a topic already held is no new one"
    silent = dialect.on_message(subscribe_request("BTC-USDT@ticker"), ())
    assert silent.subscribe == ("BTC-USDT@ticker",)
    assert not dialect.served("BTC-USDT@ticker", Endpoint("public"))
    assert dialect.served("BTC-USDT@depth100", Endpoint("public"))


@pytest.mark.parametrize(
    "message", [b"hello", b"[1]", b'{"id":"1","reqType":"sub","dataType":["BTC-USDT@trade"]}',
                b'{"id":"1","dataType":"BTC-USDT@trade"}', b"Ping"],
)  # fmt: skip
def test_messages_that_are_no_request_get_no_answer(message: bytes) -> None:
    assert VENUE.dialect().on_message(message, ()) == Reply()


def test_pong_is_the_clients_keepalive_and_every_frame_goes_out_gzipped() -> None:
    dialect = VENUE.dialect()
    assert dialect.on_message(b"Pong", ()).keepalive
    packed = dialect.encode(GOOD_TRADE)
    assert packed[:2] == b"\x1f\x8b" and zlib.decompress(packed, 31) == GOOD_TRADE


# -- the feed against the simulated venue ----------------------------------------------------


def feed_for(sim: SimExchange, **config: Any) -> Feed:
    settings: dict[str, Any] = {
        "watchdog_s": 5.0, "backoff_base_s": 0.02, "backoff_cap_s": 0.1, "close_timeout_s": 0.2,
    }  # fmt: skip
    settings.update(config)
    return Feed(
        VENUE, MARKETS, sim.urls_for(VENUE), FeedConfig(**settings), label=LABEL,
        rng=np.random.default_rng(0),
    )  # fmt: skip


def is_subsequence(part: list[Tick], whole: list[Tick]) -> bool:
    rest = iter(whole)
    return all(any(tick == other for other in rest) for tick in part)


async def test_every_tick_of_the_market_arrives_once_in_order_over_gzip_frames() -> None:
    ticks = market_ticks(6.0, seed=1)
    async with SimExchange(
        iter(ticks), dialect=VENUE.dialect(), speed=0, min_streams=2 * len(SYMBOLS)
    ) as sim:
        feed = feed_for(sim)
        async with running(feed) as got:
            await until(lambda: len(got) >= len(ticks))
            await sim.wait_sent(5.0)
            paths = [c.path for c in sim.clients]
    assert [key(t) for t in got] == [key(t) for t in ticks]
    assert all(t.recv_ns > 0 and t.trade_id == "" for t in got)
    assert paths == ["/swap-market"] and sim.stats.subscribe_requests == 4
    assert feed.stats.acks == 4 and feed.stats.connects == 1 and feed.stats.reconnects == 0
    assert feed.stats.frames == pushes_of(ticks) < len(ticks), "some pushes carried trades"
    assert feed.parser.stats.total_rejected == 0
    assert feed.parser.stats.skipped.get(base.SKIP_ACK) == 4
    assert set(feed.parser.stats.skipped) <= {base.SKIP_ACK, base.SKIP_KEEPALIVE}


async def test_the_feed_answers_every_ping_and_a_client_that_does_not_is_cut() -> None:
    keepalive = SimKeepalive(server_ping=b"Ping", server_ping_s=0.05, client_silence_s=1.0)
    market = SyntheticMarket(specs_for(SYMBOLS), seed=2, venue=LABEL, oracle_memory_s=None)
    async with SimExchange(
        market.ticks(), dialect=VENUE.dialect(), speed=5.0, keepalive=keepalive
    ) as sim:
        feed = feed_for(sim)
        async with running(feed) as got:
            async with connect(sim.url + "/swap-market", compression=None) as mute:
                await mute.send(subscribe_request("BTC-USDT@bookTicker").decode())
                received: list[bytes] = []
                with pytest.raises(ConnectionClosed) as cut:
                    async with asyncio.timeout(5.0):
                        while True:
                            received.append(zlib.decompress(await mute.recv(decode=False), 31))
            await asyncio.sleep(0.5)
    assert cut.value.rcvd is not None and cut.value.rcvd.code == 1008
    assert b"Ping" in received, "it was pinged, gzipped, and never answered"
    assert sim.stats.keepalive_cuts == 1, "the mute client only"
    assert feed.stats.connects == 1 and feed.stats.errors == 0 and feed.stats.reconnects == 0
    assert feed.stats.pings_answered >= 10 and feed.stats.pings_sent == 0
    assert got and feed.parser.stats.skipped[base.SKIP_KEEPALIVE] >= 10


async def test_pings_are_answered_and_data_flows_while_a_long_subscription_is_sent() -> None:
    class SlowToSubscribe(type(VENUE)):  # type: ignore[misc]
        subscribe_per_s = 2.0  # 4 topics: 1.5 s of subscribing, three times the deadline

    venue = SlowToSubscribe()
    keepalive = SimKeepalive(server_ping=b"Ping", server_ping_s=0.05, client_silence_s=0.5)
    market = SyntheticMarket(specs_for(SYMBOLS), seed=6, venue=LABEL, oracle_memory_s=None)
    async with SimExchange(
        market.ticks(), dialect=venue.dialect(), speed=5.0, keepalive=keepalive
    ) as sim:
        config = FeedConfig(watchdog_s=0.4, backoff_base_s=0.02, backoff_cap_s=0.1)
        feed = Feed(venue, MARKETS, sim.urls_for(venue), config, label=LABEL)
        async with running(feed) as got:
            await until(lambda: sim.stats.subscribe_requests >= 4)
            early = len(got)
            await asyncio.sleep(0.6)
    assert early > 0, "the first topics' ticks arrived before the last subscription"
    assert sim.stats.keepalive_cuts == 0 and feed.stats.pings_answered >= 20
    assert feed.stats.watchdog_trips == 0 and feed.stats.connects == 1


async def test_a_dropped_connection_is_reopened_and_resubscribed_without_a_duplicate() -> None:
    ticks = market_ticks(120.0, seed=4, rate_scale=1.0)
    faults = FaultConfig(drop_every_s=1.0)
    async with SimExchange(
        iter(ticks), dialect=VENUE.dialect(), speed=20.0, faults=faults, start_on_subscribe=True
    ) as sim:
        feed = feed_for(sim, backoff_base_s=0.05)
        async with running(feed) as got:
            await until(lambda: feed.stats.reconnects >= 2)
            seen = len(got)
            await until(lambda: len(got) > seen + 20)
    assert sim.stats.fault_drops >= 2 and feed.stats.errors >= 2
    assert feed.stats.connects >= 3
    assert feed.stats.acks >= 4 * (feed.stats.connects - 1), "each subscribes its topics again"
    mine, sent = [key(t) for t in got], [key(t) for t in ticks]
    assert not Counter(mine) - Counter(sent), "no tick twice"
    assert is_subsequence(mine, sent), "in market order"


async def test_a_silent_stream_trips_the_watchdog_though_pings_keep_coming() -> None:
    faults = FaultConfig(silent=True)
    keepalive = SimKeepalive(server_ping=b"Ping", server_ping_s=0.05, client_silence_s=1.0)
    market = SyntheticMarket(specs_for(SYMBOLS), seed=5, venue=LABEL, oracle_memory_s=None)
    async with SimExchange(
        market.ticks(), dialect=VENUE.dialect(), speed=20.0, faults=faults, keepalive=keepalive
    ) as sim:
        feed = feed_for(sim, watchdog_s=0.8)  # the subscriptions take 0.6 s
        async with running(feed) as got:
            await until(lambda: feed.stats.watchdog_trips >= 2)
            assert got == [] and feed.stats.pings_answered > 0
            faults.silent = False
            await until(lambda: len(got) > 20)
    assert feed.stats.reconnects >= 2 and sim.stats.keepalive_cuts == 0


async def test_acks_without_data_trip_the_watchdog() -> None:
    faults = FaultConfig(ack_only=True)
    market = SyntheticMarket(specs_for(SYMBOLS), seed=6, venue=LABEL, oracle_memory_s=None)
    async with SimExchange(
        market.ticks(), dialect=VENUE.dialect(), speed=20.0, faults=faults
    ) as sim:
        feed = feed_for(sim, watchdog_s=0.8)  # the subscriptions take 0.6 s
        async with running(feed) as got:
            await until(lambda: feed.stats.watchdog_trips >= 2)
    assert got == [] and feed.stats.acks >= 8 and feed.stats.frames == 0


async def test_malformed_frames_are_counted_and_no_real_tick_is_lost() -> None:
    ticks = market_ticks(6.0, seed=7)
    faults = FaultConfig(malformed_every=20)
    async with SimExchange(
        iter(ticks), dialect=VENUE.dialect(), speed=0, faults=faults, min_streams=4
    ) as sim:
        feed = feed_for(sim)
        async with running(feed) as got:
            await until(lambda: len(got) >= len(ticks))
            await sim.wait_sent(5.0)
            await asyncio.sleep(0.05)
    assert [key(t) for t in got] == [key(t) for t in ticks]
    stats = feed.parser.stats
    unknown = stats.skipped.get(base.SKIP_UNKNOWN_EVENT, 0)
    assert stats.total_rejected + unknown == sim.stats.malformed_sent > 10
    assert feed.stats.frames == pushes_of(ticks) + sim.stats.malformed_sent


# -- ccxt.pro's own client against the simulated venue --------------------------------------


def ccxt_client(url: str, symbols: list[str]) -> Any:
    exchange = ccxtpro.bingx()
    exchange.urls["api"]["ws"]["linear"] = url
    exchange.set_markets(ccxt_markets([VENUE.market(s) for s in symbols]))
    return exchange


async def test_ccxt_pro_receives_the_simulated_trades_and_book_and_answers_the_pings() -> None:
    ticks = [t for t in market_ticks(30.0, seed=8) if t.symbol == BTC]
    keepalive = SimKeepalive(server_ping=b"Ping", server_ping_s=0.05, client_silence_s=0.3)
    async with SimExchange(
        iter(ticks), dialect=VENUE.dialect(), speed=10.0, keepalive=keepalive,
        start_on_subscribe=True,
    ) as sim:  # fmt: skip
        exchange = ccxt_client(sim.url + "/swap-market", [BTC])
        exchange.options["watchTrades"]["ignoreDuplicates"] = False
        try:
            trades: list[dict[str, Any]] = []
            async with asyncio.timeout(10.0):
                while len(trades) < 100:
                    trades += await exchange.watch_trades(BTC)
                book = await exchange.watch_order_book(BTC)
            await asyncio.sleep(0.4)  # longer than the 0.3 s the simulator allows a mute client
            paths = [c.path for c in sim.clients]
        finally:
            await exchange.close()
    assert sim.stats.keepalive_cuts == 0 and sim.stats.server_pings >= 10, "ccxt answers Pong"
    assert paths == ["/swap-market"]
    sent = [t for t in ticks if t.kind == TRADE][: len(trades)]
    # amounts are base units (BingX's contract size is 1: ccxt converts nothing)
    got = sorted((t["timestamp"], t["price"], t["amount"], t["side"]) for t in trades)
    want = sorted((t.event_ms, t.price, t.size, "buy" if t.side == 1 else "sell") for t in sent)
    assert got == want
    # ccxt sorts a push by time but keeps the venue's newest-first order within a millisecond
    received = [(t["timestamp"], t["price"], t["amount"]) for t in trades]
    runs = [run for run in trade_runs(ticks) if run[-1] in sent]
    alone = Counter(run[0].event_ms for run in runs)
    shared = [run for run in runs if len(run) > 1 and alone[run[0].event_ms] == 1]
    assert shared, "some pushes carried several trades"
    for run in shared:
        in_ccxt = [r for r in received if r[0] == run[0].event_ms]
        assert in_ccxt == [(t.event_ms, t.price, t.size) for t in reversed(run)]
    assert {t["symbol"] for t in trades} == {BTC} and {t["id"] for t in trades} == {None}
    tops = [
        ([[t.bid, t.bid_size]], [[t.ask, t.ask_size]])
        for t in ticks
        if t.kind == QUOTE and t.event_ms == book["timestamp"]
    ]
    assert (book["bids"], book["asks"]) in tops, "a one-level book of a quote the venue sent"


@pytest.mark.parametrize(
    ("ignore_duplicates", "received"),
    [(False, 23), (None, 8)],
    ids=["option turned off: every trade", "ccxt default: identical trades lost"],
)
async def test_ccxt_pro_drops_identical_bingx_trades_unless_told_not_to(
    bingx_samples: Path, ignore_duplicates: bool | None, received: int
) -> None:
    recorded = VENUE.parser(None, LABEL).parse(sample(bingx_samples, "trade.json"), 0)
    last = recorded[-1]
    closing = trade(LABEL, ETH, last.event_ms + 1000, 0, 2990.0, 1.0, 1)
    release = quote(LABEL, ETH, last.event_ms + 1001, 0, 2989.99, 1.0, 2990.01, 1.0, 1)
    async with SimExchange(
        iter([*recorded, closing, release]), dialect=VENUE.dialect(), speed=0
    ) as sim:
        exchange = ccxt_client(sim.url + "/swap-market", [ETH])
        if ignore_duplicates is not None:
            exchange.options["watchTrades"]["ignoreDuplicates"] = ignore_duplicates
        try:
            trades: list[dict[str, Any]] = []
            async with asyncio.timeout(10.0):
                while not any(t["timestamp"] == closing.event_ms for t in trades):
                    trades += await exchange.watch_trades(ETH)
        finally:
            await exchange.close()
    assert sim.stats.frames_sent == 8 + 1, "8 pushes of the recorded trades, the closing one"
    got = [(t["timestamp"], t["price"], t["amount"], 1 if t["side"] == "buy" else -1)
           for t in trades if t["timestamp"] < closing.event_ms]  # fmt: skip
    assert len(got) == received
    if received == len(SAMPLE_TRADES):
        assert got == SAMPLE_TRADES
    else:
        assert got == sorted(set(SAMPLE_TRADES)), "one of each identical group survives"
