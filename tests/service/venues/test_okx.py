"""OKX v5 swap: the real wire samples, sizes in contracts, malformed frames, render -> parse round
trips, the subscription plan and frame classes, the feed against the simulated OKX, and
ccxt.pro's own okx client against it."""

from __future__ import annotations

import asyncio
import contextlib
import math
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
from tickcast.service.ticks import QUOTE, TRADE, Tick, invalid_reason, quote, trade
from tickcast.service.venues import base
from tickcast.service.venues.base import FeedParseError, Parser
from tickcast.service.venues.markets import MarketError, MarketInfo, ccxt_markets
from tickcast.service.venues.okx import (
    ARGS_PER_REQUEST,
    MALFORMED_FRAMES,
    VENUE,
    OkxRenderer,
    render_bbo,
    render_trade,
)
from tickcast.service.venues.venue import ACK, DATA, ERROR, PONG, Keepalive, SimKeepalive

from support import running, until

BTC, ETH, SOL = "BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"
SYMBOLS = [BTC, ETH, SOL]
MARKETS = [VENUE.market(s) for s in SYMBOLS]
LABEL = "sim-okx"


def sample(samples_dir: Path, name: str) -> bytes:
    return (samples_dir / "okx-swap" / name).read_bytes().strip()


def close(a: Tick, b: Tick) -> bool:
    """Equal but for recv_ns, sizes to 1e-12 relative (contracts <-> base units rounds)."""
    sizes = ("size", "bid_size", "ask_size")
    blank = {"recv_ns": 0, "size": 0.0, "bid_size": 0.0, "ask_size": 0.0}
    same = a._replace(**blank) == b._replace(**blank)
    return same and all(math.isclose(getattr(a, s), getattr(b, s), rel_tol=1e-12) for s in sizes)


def market_ticks(seconds: float, seed: int) -> list[Tick]:
    return list(SyntheticMarket(seed=seed, venue=LABEL).ticks(seconds))


def trade_frame(**fields: object) -> bytes:
    item: dict[str, object] = {
        "instId": "BTC-USDT-SWAP", "tradeId": "148266905", "px": "48938.5", "sz": "5",
        "side": "buy", "ts": "1640131236050",
    }  # fmt: skip
    item.update(fields)
    data = {k: v for k, v in item.items() if v is not None}
    return orjson.dumps({"arg": {"channel": "trades", "instId": "BTC-USDT-SWAP"}, "data": [data]})


def bbo_frame(**fields: object) -> bytes:
    item: dict[str, object] = {
        "asks": [["38632.4", "727", "0", "22"]], "bids": [["38632.3", "990", "0", "22"]],
        "ts": "1651761120004", "seqId": 363996337,
    }  # fmt: skip
    item.update(fields)
    data = {k: v for k, v in item.items() if v is not None}
    return orjson.dumps({"arg": {"channel": "bbo-tbt", "instId": "BTC-USDT-SWAP"}, "data": [data]})


# -- the real samples -------------------------------------------------------------------------

#: What each sample file of the venue's folder is (a new file there fails the coverage test).
SAMPLE_FILES = {
    "trades_swap.json",
    "bbo_tbt_swap.json",
    "bbo_tbt_nautilus_fixture.json",
    "subscribe_ack.json",
    "tickers_swap.json",
    "instrument-btc-usdt-swap.txt",
}


def test_every_sample_file_of_the_okx_folder_is_covered_here(samples_dir: Path) -> None:
    assert {p.name for p in (samples_dir / "okx-swap").iterdir()} == SAMPLE_FILES


def test_the_trade_sample_becomes_a_trade_of_five_contracts_of_a_hundredth_bitcoin(
    samples_dir: Path,
) -> None:
    parser = VENUE.parser()
    ticks = parser.parse(sample(samples_dir, "trades_swap.json"), 7)
    assert ticks == [trade("okx", BTC, 1640131236050, 7, 48938.5, 0.05, 1, "148266905")]
    assert (parser.stats.parsed_trades, parser.stats.skipped, parser.stats.rejected) == (1, {}, {})


def test_the_bbo_sample_becomes_a_quote_in_bitcoin_without_an_update_id(samples_dir: Path) -> None:
    parser = VENUE.parser()
    ticks = parser.parse(sample(samples_dir, "bbo_tbt_swap.json"), 3)
    assert ticks == [quote("okx", BTC, 1651761120004, 3, 38632.3, 9.9, 38632.4, 7.27, 0)]
    assert (parser.stats.parsed_quotes, parser.stats.skipped, parser.stats.rejected) == (1, {}, {})


def test_the_nautilus_bbo_fixture_names_a_spot_id_which_is_no_market_of_the_swap_venue(
    samples_dir: Path,
) -> None:
    frame = sample(samples_dir, "bbo_tbt_nautilus_fixture.json")
    reader = VENUE.parser()  # a file reader: every id the table names
    assert reader.parse(frame, 1) == []
    assert (reader.stats.rejected, reader.stats.skipped) == ({base.REJECT_SYMBOL: 1}, {})
    feed = VENUE.parser([VENUE.market(BTC)])  # a feed subscribed to BTC-USDT-SWAP
    assert feed.parse(frame, 1) == []
    assert (feed.stats.skipped, feed.stats.rejected) == ({base.SKIP_UNSUBSCRIBED: 1}, {})
    assert not VENUE.recognises(frame)
    as_swap = frame.replace(b'"BTC-USDT"', b'"BTC-USDT-SWAP"')
    assert VENUE.parser().parse(as_swap, 1) == [
        quote("okx", BTC, 1597026383085, 1, 8476.97, 2.56, 8476.98, 4.15, 123456)
    ]


def test_an_ack_without_conn_id_and_a_tickers_push_are_skipped_with_their_reasons(
    samples_dir: Path,
) -> None:
    parser = VENUE.parser()
    assert parser.parse(sample(samples_dir, "subscribe_ack.json"), 1) == []
    assert parser.parse(sample(samples_dir, "tickers_swap.json"), 1) == []
    assert parser.stats.skipped == {base.SKIP_ACK: 1, base.SKIP_OTHER_EVENT: 1}
    assert parser.stats.rejected == {} and parser.stats.total_parsed == 0


def test_all_sample_frames_through_one_parser_give_exact_counts(samples_dir: Path) -> None:
    parser = VENUE.parser()
    ticks: list[Tick] = []
    for name in sorted(SAMPLE_FILES - {"instrument-btc-usdt-swap.txt"}):
        ticks += parser.parse(sample(samples_dir, name), 0)
    assert [t.kind for t in ticks] == [QUOTE, TRADE]
    assert (parser.stats.parsed_trades, parser.stats.parsed_quotes) == (1, 1)
    assert parser.stats.skipped == {base.SKIP_ACK: 1, base.SKIP_OTHER_EVENT: 1}
    assert parser.stats.rejected == {base.REJECT_SYMBOL: 1}
    assert all(invalid_reason(t) is None for t in ticks)


def test_the_shipped_btc_swap_matches_the_venues_instrument_record(samples_dir: Path) -> None:
    record = orjson.loads(b"{" + sample(samples_dir, "instrument-btc-usdt-swap.txt") + b"}")
    btc = VENUE.market(BTC)
    assert (btc.venue_id, btc.base, btc.settle) == (record["instId"], record["ctValCcy"], "USDT")
    assert btc.contract_size == float(record["ctVal"]) == 0.01
    assert btc.price_tick == float(record["tickSz"]) == 0.1
    assert record["settleCcy"] == "USDT" and record["instType"] == "SWAP" and btc.linear


@pytest.mark.parametrize(
    ("name", "recognised"),
    [("trades_swap.json", True), ("bbo_tbt_swap.json", True), ("tickers_swap.json", False),
     ("subscribe_ack.json", False), ("bbo_tbt_nautilus_fixture.json", False)],
)  # fmt: skip
def test_a_push_is_recognised_as_okx_only_when_the_table_names_its_id(
    samples_dir: Path, name: str, recognised: bool
) -> None:
    assert VENUE.recognises(sample(samples_dir, name)) is recognised


# -- markets and sizes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("symbol", "venue_id", "contract_size"),
    [(BTC, "BTC-USDT-SWAP", 0.01), (ETH, "ETH-USDT-SWAP", 0.1), (SOL, "SOL-USDT-SWAP", 1.0),
     ("DOGE/USDT:USDT", "DOGE-USDT-SWAP", 1000.0), ("XRP/USDT:USDT", "XRP-USDT-SWAP", 100.0)],
)  # fmt: skip
def test_the_main_swaps_carry_their_real_contract_values(
    symbol: str, venue_id: str, contract_size: float
) -> None:
    market = VENUE.market(symbol)
    assert (market.venue_id, market.contract_size, market.linear) == (
        venue_id,
        contract_size,
        True,
    )
    assert VENUE.venue_id(symbol) == venue_id
    assert VENUE.derive(venue_id) == market
    assert market.in_base_units is (contract_size == 1.0)


def test_an_id_the_table_does_not_size_names_no_market() -> None:
    assert VENUE.derive("PEPE-USDT-SWAP") is None, "contract size unknown offline"
    assert VENUE.derive("BTC-USDT") is None and VENUE.derive("BTCUSDT") is None
    frame = trade_frame().replace(b"BTC-USDT-SWAP", b"PEPE-USDT-SWAP")
    parser = VENUE.parser()
    assert parser.parse(frame, 0) == [] and parser.stats.rejected == {base.REJECT_SYMBOL: 1}


def test_unified_symbols_map_to_swap_ids_and_dated_futures_are_refused() -> None:
    assert VENUE.venue_id("PEPE/USDT:USDT") == "PEPE-USDT-SWAP"
    assert VENUE.venue_id("BTC/USD:BTC") == "BTC-USD-SWAP"
    with pytest.raises(FeedParseError, match="dated future"):
        VENUE.venue_id("BTC/USDT:USDT-261030")
    with pytest.raises(MarketError):
        VENUE.assumed_market("BTCUSDT")
    simulated = VENUE.assumed_market("PEPE/USDT:USDT")
    assert (simulated.venue_id, simulated.contract_size) == ("PEPE-USDT-SWAP", 1.0)


def test_contract_counts_become_exact_decimal_base_sizes() -> None:
    parser = VENUE.parser()
    (tr,) = parser.parse(trade_frame(sz="31.27"), 0)
    (qt,) = parser.parse(bbo_frame(), 0)
    assert (tr.size, qt.ask_size, qt.bid_size, qt.update_id) == (0.3127, 7.27, 9.9, 363996337)
    eth = trade_frame(sz="3").replace(b"BTC-USDT-SWAP", b"ETH-USDT-SWAP")
    doge = trade_frame(sz="2.5").replace(b"BTC-USDT-SWAP", b"DOGE-USDT-SWAP")
    assert [t.size for t in parser.parse(eth, 0) + parser.parse(doge, 0)] == [0.3, 2500.0]


def test_an_inverse_swap_given_by_the_caller_is_sized_at_the_trade_price() -> None:
    inverse = MarketInfo("BTC/USD:BTC", "BTC-USD-SWAP", "BTC", "USD", "BTC", 100.0, linear=False)
    parser = VENUE.parser([inverse])
    frame = trade_frame(px="60000", sz="3").replace(b"BTC-USDT-SWAP", b"BTC-USD-SWAP")
    (tick,) = parser.parse(frame, 0)
    assert (tick.symbol, tick.size) == ("BTC/USD:BTC", pytest.approx(0.005))


def test_the_trades_of_one_push_come_out_oldest_first() -> None:
    items = [
        {"instId": "BTC-USDT-SWAP", "tradeId": str(i), "px": "100", "sz": "1", "side": "sell",
         "ts": str(ts)}
        for i, ts in ((12, 1002), (11, 1002), (10, 1001))
    ]  # fmt: skip
    arg = {"channel": "trades", "instId": "BTC-USDT-SWAP"}
    parser = VENUE.parser()
    newest_first = parser.parse(orjson.dumps({"arg": arg, "data": items}), 0)
    oldest_first = parser.parse(orjson.dumps({"arg": arg, "data": items[::-1]}), 0)
    assert [t.trade_id for t in newest_first] == ["10", "11", "12"]
    assert newest_first == oldest_first


# -- malformed frames -------------------------------------------------------------------------

MALFORMED: list[tuple[str, bytes, str, str]] = [
    ("garbage", b"not json", "rejected", base.REJECT_JSON),
    ("empty", b"", "rejected", base.REJECT_JSON),
    ("bad utf-8", b'{"arg":"\xff"}', "rejected", base.REJECT_JSON),
    ("array", b"[1, 2]", "rejected", base.REJECT_NOT_OBJECT),
    ("string", b'"pong"', "rejected", base.REJECT_NOT_OBJECT),
    ("data not a list", b'{"arg":{"channel":"trades","instId":"BTC-USDT-SWAP"},"data":5}',
     "rejected", base.REJECT_NOT_OBJECT),
    ("trade not an object", b'{"arg":{"channel":"trades","instId":"BTC-USDT-SWAP"},"data":[7]}',
     "rejected", base.REJECT_NOT_OBJECT),
    ("no arg", b'{"data":[]}', "rejected", base.REJECT_MISSING),
    ("neither arg nor event", b'{"op":"subscribe"}', "rejected", base.REJECT_MISSING),
    ("numeric inst id", trade_frame().replace(b'"instId":"BTC-USDT-SWAP"}', b'"instId":7}'),
     "rejected", base.REJECT_SYMBOL),
    ("missing price", trade_frame(px=None), "rejected", base.REJECT_MISSING),
    ("missing time", trade_frame(ts=None), "rejected", base.REJECT_MISSING),
    ("missing side", trade_frame(side=None), "rejected", base.REJECT_MISSING),
    ("missing trade id", trade_frame(tradeId=None), "rejected", base.REJECT_MISSING),
    ("text price", trade_frame(px="abc"), "rejected", base.REJECT_NOT_NUMERIC),
    ("list size", trade_frame(sz=[1]), "rejected", base.REJECT_TYPE),
    ("fractional time", trade_frame(ts="1.5"), "rejected", base.REJECT_NOT_NUMERIC),
    ("list side", trade_frame(side=["buy"]), "rejected", base.REJECT_TYPE),
    ("nan price", trade_frame(px="NaN"), "rejected", contract.REJECT_NON_FINITE),
    ("infinite size", trade_frame(sz="inf"), "rejected", contract.REJECT_NON_FINITE),
    ("zero price", trade_frame(px="0"), "rejected", contract.REJECT_PRICE),
    ("negative size", trade_frame(sz="-5"), "rejected", contract.REJECT_SIZE),
    ("zero time", trade_frame(ts="0"), "rejected", contract.REJECT_TIME),
    ("unknown side", trade_frame(side="hold"), "rejected", contract.REJECT_SIDE),
    ("crossed book", bbo_frame(bids=[["38632.5", "1", "0", "1"]]), "rejected",
     contract.REJECT_CROSSED),
    ("nan ask", bbo_frame(asks=[["nan", "1", "0", "1"]]), "rejected",
     contract.REJECT_NON_FINITE),
    ("zero bid", bbo_frame(bids=[["0", "1", "0", "1"]]), "rejected", contract.REJECT_PRICE),
    ("negative ask size", bbo_frame(asks=[["38632.4", "-1", "0", "1"]]), "rejected",
     contract.REJECT_SIZE),
    ("missing bids", bbo_frame(bids=None), "rejected", base.REJECT_MISSING),
    ("level without size", bbo_frame(asks=[["38632.4"]]), "rejected", base.REJECT_MISSING),
    ("asks not a list", bbo_frame(asks="38632.4"), "rejected", base.REJECT_NOT_OBJECT),
    ("text sequence id", bbo_frame(seqId="x"), "rejected", base.REJECT_TYPE),
    ("empty asks", bbo_frame(asks=[]), "skipped", base.SKIP_ONE_SIDED),
    ("pong", b"pong", "skipped", base.SKIP_KEEPALIVE),
    ("error answer", b'{"event":"error","msg":"Invalid request: x","code":"60012","connId":"a"}',
     "skipped", base.SKIP_ERROR_REPLY),
    ("unsubscribe ack", b'{"event":"unsubscribe","arg":{"channel":"trades","instId":"X"}}',
     "skipped", base.SKIP_ACK),
    ("notice", b'{"event":"notice","code":"64008","msg":"The connection will soon be closed"}',
     "skipped", base.SKIP_OTHER_EVENT),
    ("books push", b'{"arg":{"channel":"books5","instId":"BTC-USDT-SWAP"},"data":[]}',
     "skipped", base.SKIP_DEPTH),
    ("mark price", b'{"arg":{"channel":"mark-price","instId":"BTC-USDT-SWAP"},"data":[]}',
     "skipped", base.SKIP_MARK_PRICE),
    ("candle", b'{"arg":{"channel":"candle1m","instId":"BTC-USDT-SWAP"},"data":[]}',
     "skipped", base.SKIP_OTHER_EVENT),
    ("unknown channel", b'{"arg":{"channel":"whatever","instId":"BTC-USDT-SWAP"},"data":[]}',
     "skipped", base.SKIP_UNKNOWN_EVENT),
]  # fmt: skip

#: The fault campaign's values (issue 10), one frame each: OKX sends prices, sizes and book
#: levels as decimal strings, ``ts`` as a string of digits and ``seqId`` as a JSON integer;
#: nothing else is coerced, and what is a number still meets the tick contract's ranges.
CAMPAIGN: list[tuple[str, bytes, str]] = [
    ("bool price", trade_frame(px=True), base.REJECT_TYPE),
    ("number price", trade_frame(px=48938.5), base.REJECT_TYPE),
    ("number size", trade_frame(sz=5), base.REJECT_TYPE),
    ("number time", trade_frame(ts=1640131236050), base.REJECT_TYPE),
    ("float time", trade_frame(ts=1.6e12), base.REJECT_TYPE),
    ("bool time", trade_frame(ts=True), base.REJECT_TYPE),
    ("exponent time", trade_frame(ts="1e3"), base.REJECT_NOT_NUMERIC),
    ("negative time", trade_frame(ts="-5"), base.REJECT_NOT_NUMERIC),
    ("signed time", trade_frame(ts="+1640131236050"), base.REJECT_NOT_NUMERIC),
    ("year 2100", trade_frame(ts="4102444800000"), contract.REJECT_TIME_RANGE),
    ("absurd price", trade_frame(px="1e308"), contract.REJECT_PRICE_RANGE),
    ("NaN price", trade_frame(px="NaN"), contract.REJECT_NON_FINITE),
    ("Infinity size", trade_frame(sz="Infinity"), contract.REJECT_NON_FINITE),
    ("negative size -1", trade_frame(sz="-1"), contract.REJECT_SIZE),
    ("bool ask", bbo_frame(asks=[[True, "727", "0", "22"]]), base.REJECT_TYPE),
    ("number bid size", bbo_frame(bids=[["38632.3", 990, "0", "22"]]), base.REJECT_TYPE),
    ("number book time", bbo_frame(ts=1651761120004), base.REJECT_TYPE),
    ("negative book time", bbo_frame(ts="-5"), base.REJECT_NOT_NUMERIC),
    ("bool sequence id", bbo_frame(seqId=True), base.REJECT_TYPE),
    ("float sequence id", bbo_frame(seqId=3.5), base.REJECT_TYPE),
    ("book in 2100", bbo_frame(ts="4102444800000"), contract.REJECT_TIME_RANGE),
    ("absurd book", bbo_frame(asks=[["1.7e308", "1e308", "0", "1"]],
                              bids=[["1.7e308", "1e308", "0", "1"]]), contract.REJECT_PRICE_RANGE),
]  # fmt: skip
MALFORMED += [(name, frame, "rejected", reason) for name, frame, reason in CAMPAIGN]

#: The simulator's own broken frames, in the order of MALFORMED_FRAMES.
SIM_MALFORMED_REASONS = [
    ("rejected", base.REJECT_JSON),
    ("rejected", base.REJECT_JSON),
    ("rejected", base.REJECT_NOT_OBJECT),
    ("rejected", contract.REJECT_PRICE),
    ("rejected", contract.REJECT_NON_FINITE),
    ("skipped", base.SKIP_UNKNOWN_EVENT),
    ("rejected", base.REJECT_MISSING),
    ("rejected", contract.REJECT_CROSSED),
]
MALFORMED += [
    (f"simulator's #{i}", frame, outcome, reason)
    for i, (frame, (outcome, reason)) in enumerate(
        zip(MALFORMED_FRAMES, SIM_MALFORMED_REASONS, strict=True)
    )
]


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
    with contextlib.suppress(UnicodeDecodeError):  # text frames parse alike
        assert parser.parse(frame.decode(), 1) == []
    counted = parser.stats.rejected if outcome == "rejected" else parser.stats.skipped
    other = parser.stats.skipped if outcome == "rejected" else parser.stats.rejected
    assert counted == {reason: 1 if b"\xff" in frame else 2} and other == {}
    assert parser.stats.total_parsed == 0


def test_the_campaign_frames_are_counted_and_the_valid_frames_between_them_still_parse() -> None:
    parser = VENUE.parser()
    ticks = parser.parse(bbo_frame(), 1)
    for _, frame, _ in CAMPAIGN:
        assert parser.parse(frame, 1) == []
        ticks += parser.parse(trade_frame(), 1)
    push = orjson.loads(trade_frame())
    good = push["data"][0]
    push["data"] = [good, {**good, "px": True}, {**good, "ts": 1640131236050}, good]
    ticks += parser.parse(orjson.dumps(push), 1)
    assert len(ticks) == 1 + len(CAMPAIGN) + 2
    assert all(invalid_reason(t) is None for t in ticks)
    assert parser.stats.rejected == Counter(reason for *_, reason in CAMPAIGN) + Counter(
        {base.REJECT_TYPE: 2}
    )
    assert parser.stats.skipped == {}


def test_mutated_real_frames_never_raise_and_only_yield_valid_ticks(samples_dir: Path) -> None:
    frames = [sample(samples_dir, n) for n in ("trades_swap.json", "bbo_tbt_swap.json")]
    frames += [trade_frame(), bbo_frame()]
    rng = np.random.default_rng(2026)
    parser = VENUE.parser()
    produced = 0
    for i in range(3000):
        frame = bytearray(frames[i % len(frames)])
        for pos in rng.integers(0, len(frame), size=int(rng.integers(1, 4))):
            frame[pos] = int(rng.integers(32, 127))
        if rng.random() < 0.3:
            del frame[int(rng.integers(1, len(frame))) :]
        ticks = parser.parse(bytes(frame), 1)
        assert all(invalid_reason(t) is None for t in ticks)
        produced += len(ticks)
    stats = parser.stats
    assert stats.total_parsed == produced
    assert stats.total_parsed + stats.total_skipped + stats.total_rejected >= 3000
    assert stats.total_rejected > 1000 and len(stats.rejected) >= 4, stats.rejected


# -- rendering --------------------------------------------------------------------------------


def test_synthetic_ticks_render_and_parse_back_into_the_same_ticks() -> None:
    ticks = market_ticks(20.0, seed=1)
    render = OkxRenderer(VENUE.assumed_market)
    wanted = {f"{c}:{m.venue_id}" for m in MARKETS for c in ("trades", "bbo-tbt")}
    parser = VENUE.parser(MARKETS, LABEL)
    back: list[Tick] = []
    for tick in ticks:
        for _, frame in render.events(tick, wanted):
            back += parser.parse(frame, tick.recv_ns)
    assert len(back) == len(ticks) > 300
    assert all(close(a, b) for a, b in zip(back, ticks, strict=True))
    sol = [(a, b) for a, b in zip(back, ticks, strict=True) if a.symbol == SOL]
    assert sol and all(a == b for a, b in sol), "a contract of 1 SOL converts exactly"
    assert parser.stats.skipped == {} and parser.stats.rejected == {}


def test_a_topic_nobody_wants_is_not_rendered() -> None:
    (tick,) = market_ticks(0.5, seed=1)[:1]
    assert OkxRenderer(VENUE.assumed_market).events(tick, {"trades:BTC-USDT-SWAP"}) == []


def test_the_trade_sample_renders_back_exactly_in_the_older_layout(samples_dir: Path) -> None:
    wire = orjson.loads(sample(samples_dir, "trades_swap.json"))
    (tick,) = VENUE.parser().parse(sample(samples_dir, "trades_swap.json"), 0)
    rendered = render_trade(tick, VENUE.market(BTC), count=None)
    assert rendered == wire and list(rendered["data"][0]) == list(wire["data"][0])
    assert orjson.dumps(rendered) == sample(samples_dir, "trades_swap.json")
    current = render_trade(tick, VENUE.market(BTC))["data"][0]
    assert (current["count"], current["source"]) == ("1", "0")


@pytest.mark.parametrize("name", ["bbo_tbt_swap.json", "bbo_tbt_nautilus_fixture.json"])
def test_the_bbo_samples_render_back_exactly(samples_dir: Path, name: str) -> None:
    frame = sample(samples_dir, name).replace(b'"BTC-USDT"', b'"BTC-USDT-SWAP"')
    wire = orjson.loads(frame)
    (tick,) = VENUE.parser().parse(frame, 0)
    asks, bids = wire["data"][0]["asks"][0], wire["data"][0]["bids"][0]
    rendered = render_bbo(tick, VENUE.market(BTC), ask_orders=int(asks[3]), bid_orders=int(bids[3]))
    assert rendered == wire and list(rendered["data"][0]) == list(wire["data"][0])


def test_rendering_refuses_what_okx_cannot_send() -> None:
    tr = trade("okx", BTC, 1, 0, 100.0, 0.01, 1, "1")
    qt = quote("okx", BTC, 1, 0, 99.0, 1.0, 100.0, 1.0)
    with pytest.raises(FeedParseError, match="quote tick"):
        render_bbo(tr, VENUE.market(BTC))
    with pytest.raises(FeedParseError, match="trade tick"):
        render_trade(qt, VENUE.market(BTC))
    with pytest.raises(FeedParseError, match="non-finite"):
        render_trade(tr._replace(price=math.nan), VENUE.market(BTC))


# -- subscription plan, frame classes, the simulated venue's answers --------------------------


def test_the_venue_pings_with_text_every_20_seconds_and_never_with_websocket_frames() -> None:
    assert VENUE.keepalive == Keepalive(ping=b"ping", ping_every_s=20.0, ws_ping=False)
    assert VENUE.dialect().keepalive == SimKeepalive(idle_s=30.0)
    (url,) = (urlsplit(u) for u in VENUE.routes.values())
    assert (set(VENUE.routes), url.scheme, url.port, url.path) == (
        {"public"},
        "wss",
        8443,
        "/ws/v5/public",
    )
    assert (VENUE.name, VENUE.ccxt_id, VENUE.title) == ("okx", "okx", "OKX swap")
    assert not VENUE.sequential_trade_ids, "a push aggregates fills: ids are not consecutive"


def test_one_connection_subscribes_trades_and_bbo_of_every_market_in_bounded_requests() -> None:
    markets = list(VENUE.markets().values()) * 3  # 39 markets, 78 args
    (connection,) = VENUE.connections(markets, {"public": "ws://127.0.0.1:1/ws/v5/public"})
    assert (connection.route, connection.url) == ("public", "ws://127.0.0.1:1/ws/v5/public")
    requests = [orjson.loads(r) for r in connection.subscribe]
    assert [len(r["args"]) for r in requests] == [ARGS_PER_REQUEST, 78 - ARGS_PER_REQUEST]
    assert all(r["op"] == "subscribe" for r in requests)
    args = [a for r in requests for a in r["args"]]
    assert args[:2] == [
        {"channel": "trades", "instId": "BTC-USDT-SWAP"},
        {"channel": "bbo-tbt", "instId": "BTC-USDT-SWAP"},
    ]
    assert all(len(r) < 65536 for r in connection.subscribe)


@pytest.mark.parametrize(
    ("frame", "kind", "detail"),
    [
        (b"pong", PONG, ""),
        (b'{"event":"subscribe","arg":{"channel":"tickers","instId":"UNI-USD-SWAP"}}', ACK, ""),
        (b'{"event":"subscribe","arg":{"channel":"trades","instId":"BTC-USDT-SWAP"},'
         b'"connId":"a4d3ae55"}', ACK, ""),
        (b'{"event":"unsubscribe","arg":{"channel":"trades","instId":"BTC-USDT-SWAP"},'
         b'"connId":"a4d3ae55"}', ACK, ""),
        (b'{"event":"error","code":"60012","msg":"Invalid request: {\\"op\\":\\"sub\\"}",'
         b'"connId":"a4d3ae55"}', ERROR, '60012: Invalid request: {"op":"sub"}'),
        (b'{"event":"error","msg":"Wrong URL or channel:tickers,instId:BTC-X doesn\'t exist.",'
         b'"code":"60018","connId":"ed8c407d"}', ERROR,
         "60018: Wrong URL or channel:tickers,instId:BTC-X doesn't exist."),
        (b'{"event":"notice","code":"64008","msg":"The connection will soon be closed"}', ERROR,
         "64008: The connection will soon be closed"),
        (b"not json", DATA, ""),
        (b'{"arg":{"channel":"tickers","instId":"WNCG-USDT-SWAP"},"data":[]}', DATA, ""),
    ],
)  # fmt: skip
def test_acks_pongs_and_errors_are_told_apart_from_data(
    frame: bytes, kind: str, detail: str
) -> None:
    control = VENUE.classify(frame)
    assert (control.kind, control.detail, control.reply) == (kind, detail, None)


def test_the_real_samples_classify_as_ack_and_data(samples_dir: Path) -> None:
    assert VENUE.classify(sample(samples_dir, "subscribe_ack.json")).kind == ACK
    for name in ("trades_swap.json", "bbo_tbt_swap.json", "tickers_swap.json"):
        assert VENUE.classify(sample(samples_dir, name)).kind == DATA


def test_the_simulated_venue_serves_only_the_public_path() -> None:
    dialect = VENUE.dialect()
    assert dialect.endpoint("/ws/v5/public") == dialect.endpoint("/ws/v5/public?brokerId=9999")
    assert dialect.endpoint("/ws/v5/public") is not None
    assert dialect.endpoint("/ws/v5/business") is None and dialect.endpoint("/") is None


def test_the_simulated_venue_acks_each_arg_and_refuses_unknown_channels_and_bad_requests() -> None:
    dialect = VENUE.dialect()
    assert dialect.on_message(b"ping", ()) == ((b"pong",), (), (), True, False)
    request = {"op": "subscribe", "args": [
        {"channel": "trades", "instId": "BTC-USDT-SWAP"},
        {"channel": "nope", "instId": "BTC-USDT-SWAP"},
        {"channel": "bbo-tbt", "instId": "ETH-USDT-SWAP"},
    ]}  # fmt: skip
    reply = dialect.on_message(orjson.dumps(request), ())
    assert reply.subscribe == ("trades:BTC-USDT-SWAP", "bbo-tbt:ETH-USDT-SWAP") and reply.request
    answers = [orjson.loads(f) for f in reply.frames]
    assert answers[0] == {"event": "subscribe", "arg": request["args"][0], "connId": "a4d3ae55"}
    assert (answers[1]["event"], answers[1]["code"]) == ("error", "60018")
    assert "channel:nope,instId:BTC-USDT-SWAP doesn't exist" in answers[1]["msg"]
    assert [VENUE.classify(f).kind for f in reply.frames] == [ACK, ERROR, ACK]
    request["op"] = "unsubscribe"
    reply = dialect.on_message(orjson.dumps(request), ())
    assert reply.unsubscribe == ("trades:BTC-USDT-SWAP", "bbo-tbt:ETH-USDT-SWAP")
    assert orjson.loads(reply.frames[0])["event"] == "unsubscribe"
    for bad in (b"{", b"[]", b'{"op":"login","args":[]}', b'{"op":"subscribe"}'):
        (answer,) = dialect.on_message(bad, ()).frames
        parsed = orjson.loads(answer)
        assert (parsed["code"], parsed["msg"]) == ("60012", f"Invalid request: {bad.decode()}")


# -- the feed against the simulated OKX -------------------------------------------------------


def feed_for(sim: SimExchange, **config: Any) -> Feed:
    settings: dict[str, Any] = {
        "watchdog_s": 5.0,
        "backoff_base_s": 0.02,
        "backoff_cap_s": 0.1,
        "close_timeout_s": 0.2,
    }
    settings.update(config)
    return Feed(
        VENUE,
        MARKETS,
        sim.urls_for(VENUE),
        FeedConfig(**settings),
        label=LABEL,
        rng=np.random.default_rng(0),
    )


def endless_market(seed: int) -> Any:
    return SyntheticMarket(seed=seed, venue=LABEL, oracle_memory_s=None).ticks()


async def test_every_tick_of_the_market_arrives_once_and_in_order_in_base_units() -> None:
    ticks = market_ticks(20.0, seed=2)
    async with SimExchange(iter(ticks), dialect=VENUE.dialect(), speed=0, min_streams=6) as sim:
        feed = feed_for(sim)
        assert sim.urls_for(VENUE) == {"public": sim.url + "/ws/v5/public"}
        async with running(feed) as got:
            await until(lambda: len(got) >= len(ticks))
            await sim.wait_sent(5.0)
            await asyncio.sleep(0.05)
            clients = sim.clients
    assert len(got) == len(ticks)
    assert all(close(a, b) for a, b in zip(got, ticks, strict=True))
    assert [(c.path, len(c.streams)) for c in clients] == [("/ws/v5/public", 6)]
    assert feed.stats.acks == 6 and feed.stats.connects == 1 and feed.stats.reconnects == 0
    assert feed.parser.stats.rejected == {}
    assert feed.parser.stats.skipped == {base.SKIP_ACK: 6}


async def test_the_simulator_cuts_a_silent_client_and_a_pinging_feed_stays_connected() -> None:
    keepalive = SimKeepalive(idle_s=0.3)
    faults = FaultConfig(silent=True)  # no data: only pings keep a connection alive
    async with SimExchange(
        endless_market(3), dialect=VENUE.dialect(), speed=5.0, faults=faults, keepalive=keepalive
    ) as sim:
        pinging = feed_for(sim, watchdog_s=60.0, ping_every_s=0.05, pong_timeout_s=0.5)
        async with running(pinging):
            await asyncio.sleep(1.0)
        assert sim.stats.keepalive_cuts == 0
        assert pinging.stats.connects == 1 and pinging.stats.reconnects == 0
        assert pinging.stats.pings_sent >= 10 and pinging.stats.keepalive_timeouts == 0
        quiet = feed_for(sim, watchdog_s=60.0, ping_every_s=60.0)
        async with running(quiet):
            await until(lambda: sim.stats.keepalive_cuts >= 2)
            await until(lambda: quiet.stats.reconnects >= 2)
    assert quiet.stats.watchdog_trips == 0, "cut by the venue, not by its own watchdog"


async def test_pongs_are_not_data_and_a_busy_pinging_feed_is_never_cut() -> None:
    async with SimExchange(
        endless_market(4), dialect=VENUE.dialect(), speed=5.0, keepalive=SimKeepalive(idle_s=0.3)
    ) as sim:
        feed = feed_for(sim, ping_every_s=0.1, pong_timeout_s=0.5)
        async with running(feed) as got:
            await until(lambda: len(got) > 50 and feed.stats.pings_sent >= 3)
    assert sim.stats.keepalive_cuts == 0 and feed.stats.keepalive_timeouts == 0
    assert feed.parser.stats.skipped.get(base.SKIP_KEEPALIVE, 0) >= 2, "pongs are not data"


async def test_a_dropped_connection_is_reopened_without_duplicating_a_trade() -> None:
    faults = FaultConfig(drop_every_s=0.3)
    async with SimExchange(
        endless_market(5), dialect=VENUE.dialect(), speed=40.0, faults=faults
    ) as sim:
        feed = feed_for(sim, backoff_base_s=0.05)
        async with running(feed) as got:
            await until(lambda: feed.stats.reconnects >= 2)
            seen = len(got)
            await until(lambda: len(got) > seen + 50)
    assert feed.stats.errors >= 2 and sim.stats.fault_drops >= 2
    assert feed.stats.acks >= 3 * 6, "every connection subscribes again"
    trades = [(t.symbol, t.trade_id) for t in got if t.kind == TRADE]
    assert len(trades) == len(set(trades)) > 50


async def test_a_silent_stream_trips_the_watchdog_and_the_feed_recovers_when_data_returns() -> None:
    faults = FaultConfig(silent=True)
    async with SimExchange(
        endless_market(6), dialect=VENUE.dialect(), speed=20.0, faults=faults
    ) as sim:
        feed = feed_for(sim, watchdog_s=0.2)
        async with running(feed) as got:
            await until(lambda: feed.stats.watchdog_trips >= 2)
            assert got == []
            faults.silent = False
            await until(lambda: len(got) > 20)
    assert feed.stats.reconnects >= 2


async def test_acks_without_data_trip_the_watchdog() -> None:
    faults = FaultConfig(ack_only=True)
    async with SimExchange(
        endless_market(7), dialect=VENUE.dialect(), speed=20.0, faults=faults
    ) as sim:
        feed = feed_for(sim, watchdog_s=0.2)
        async with running(feed) as got:
            await until(lambda: feed.stats.watchdog_trips >= 2)
    assert got == [] and feed.stats.frames == 0
    assert feed.stats.acks >= 2 * 6


async def test_malformed_frames_are_counted_and_no_real_tick_is_lost() -> None:
    ticks = market_ticks(20.0, seed=8)
    faults = FaultConfig(malformed_every=25)
    async with SimExchange(
        iter(ticks), dialect=VENUE.dialect(), speed=0, faults=faults, min_streams=6
    ) as sim:
        feed = feed_for(sim)
        async with running(feed) as got:
            await until(lambda: len(got) >= len(ticks))
            await sim.wait_sent(5.0)
            await asyncio.sleep(0.05)
    assert len(got) == len(ticks)
    assert all(close(a, b) for a, b in zip(got, ticks, strict=True))
    stats = feed.parser.stats
    acks = stats.skipped.get(base.SKIP_ACK, 0)
    assert acks == 6
    assert stats.total_rejected + stats.total_skipped - acks == sim.stats.malformed_sent > 0
    assert feed.stats.frames == len(ticks) + sim.stats.malformed_sent


# -- ccxt.pro's own okx client ----------------------------------------------------------------


def ccxt_client(sim: SimExchange) -> Any:
    exchange = ccxtpro.okx()
    exchange.urls["api"]["ws"] = sim.url + "/ws/v5"  # ccxt appends /public
    exchange.set_markets(ccxt_markets(MARKETS))
    return exchange


async def test_ccxt_pro_okx_receives_the_simulated_trades_in_contracts() -> None:
    ticks = market_ticks(10.0, seed=9)
    sent = {t.trade_id: t for t in ticks if t.kind == TRADE and t.symbol == BTC}
    async with SimExchange(iter(ticks), dialect=VENUE.dialect(), speed=0) as sim:
        exchange = ccxt_client(sim)
        received: dict[str, dict[str, Any]] = {}
        try:
            async with asyncio.timeout(10.0):
                while len(received) < len(sent):
                    for t in await exchange.watch_trades(BTC):
                        received[t["id"]] = t
            clients = sim.clients
        finally:
            await exchange.close()
    assert [(c.path, c.streams) for c in clients] == [("/ws/v5/public", ("trades:BTC-USDT-SWAP",))]
    assert received.keys() == sent.keys() and len(sent) > 40
    contract_size = VENUE.market(BTC).contract_size
    for trade_id, got in received.items():
        tick = sent[trade_id]
        assert got["symbol"] == BTC
        assert (got["price"], got["timestamp"]) == (tick.price, tick.event_ms)
        assert got["side"] == ("buy" if tick.side == 1 else "sell")
        # ccxt.pro leaves OKX swap amounts in contracts (0.01 BTC each): tickcast converts
        assert got["amount"] == pytest.approx(tick.size / contract_size, rel=1e-12)
        assert got["amount"] * contract_size == pytest.approx(tick.size, rel=1e-12)


async def test_ccxt_pro_okx_receives_the_simulated_best_bids_and_asks_in_contracts() -> None:
    ticks = market_ticks(30.0, seed=10)
    quotes: dict[tuple[str, int], list[Tick]] = {}
    for t in ticks:
        if t.kind == QUOTE:
            quotes.setdefault((t.symbol, t.event_ms), []).append(t)
    async with SimExchange(iter(ticks), dialect=VENUE.dialect(), speed=20.0) as sim:
        exchange = ccxt_client(sim)
        seen: list[dict[str, Any]] = []
        try:
            async with asyncio.timeout(10.0):
                while {b["symbol"] for b in seen} != {BTC, ETH} or len(seen) < 5:
                    seen += (await exchange.watch_bids_asks([BTC, ETH])).values()
        finally:
            await exchange.close()
    for book in seen:
        size = VENUE.market(book["symbol"]).contract_size
        # bid/ask volumes are contracts too (ETH: 0.1 ETH each): converted here to compare
        sent = [
            (t.bid, t.ask, t.bid_size, t.ask_size)
            for t in quotes[(book["symbol"], book["timestamp"])]
        ]
        got = (book["bid"], book["ask"], book["bidVolume"] * size, book["askVolume"] * size)
        assert any(got == pytest.approx(s, rel=1e-12) for s in sent), (got, sent)


def test_the_okx_parser_satisfies_the_parser_protocol() -> None:
    parser = VENUE.parser(label="okx-test")
    assert isinstance(parser, Parser) and parser.venue == "okx-test"
