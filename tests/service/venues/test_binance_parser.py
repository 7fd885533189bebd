"""The Binance USDⓈ-M parser against real traffic, real wire samples and malformed frames."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import orjson
import pytest

from tickcast.service import ticks as contract
from tickcast.service.ticks import QUOTE, TRADE, Tick, invalid_reason, quote, trade
from tickcast.service.venues import base
from tickcast.service.venues.base import FeedParseError, Parser, ParseStats
from tickcast.service.venues.binance.parse import BinanceParser
from tickcast.service.venues.binance.render import (
    render_book_ticker,
    render_mark_price,
    render_trade,
)
from tickcast.service.venues.binance.streams import usdm_id, usdm_unified
from tickcast.service.venues.binance.usdm import VENUE as USDM
from tickcast.service.venues.markets import MarketError, MarketInfo

BTC = "BTC/USDT:USDT"
VENUE = USDM.name


def market_of(tick: Tick) -> MarketInfo:
    return USDM.assumed_market(tick.symbol)


Frames = list[tuple[int, bytes]]


@pytest.fixture(scope="module")
def recording_frames(binance_recording: Path) -> Frames:
    """Every ``(recv_ns, frame)`` of the real 2024 recording."""
    with gzip.open(binance_recording, "rb") as fh:
        return [(int(ns), frame) for ns, _, frame in (line.partition(b" ") for line in fh)]


@pytest.fixture(scope="module")
def recording_ticks(recording_frames: Frames) -> list[tuple[bytes, Tick]]:
    """Each tick of the real recording beside the frame it came from."""
    parser = USDM.parser()
    out = []
    for recv_ns, frame in recording_frames:
        out += [(frame, t) for t in parser.parse(frame, recv_ns)]
    return out


@pytest.fixture(scope="module")
def binance_samples(samples_dir: Path) -> Path:
    return samples_dir / "binance-usdm"


def _sample(folder: Path, name: str) -> bytes:
    return (folder / name).read_bytes().strip()


def _trade_frame(**fields: object) -> bytes:
    event: dict[str, object] = {
        "e": "trade", "E": 1723161256322, "T": 1723161256322, "s": "BTCUSDT",
        "t": 5266583935, "p": "61800.30", "q": "0.006", "X": "MARKET", "m": False,
    }  # fmt: skip
    event.update(fields)
    return orjson.dumps({k: v for k, v in event.items() if v is not None})


def _book_frame(**fields: object) -> bytes:
    event: dict[str, object] = {
        "e": "bookTicker", "u": 5123107839020, "s": "BTCUSDT", "b": "61800.20", "B": "2.507",
        "a": "61800.30", "A": "2.510", "T": 1723161256313, "E": 1723161256314,
    }  # fmt: skip
    event.update(fields)
    data = {k: v for k, v in event.items() if v is not None}
    return orjson.dumps({"stream": "btcusdt@bookTicker", "data": data})


def test_every_frame_of_the_real_recording_parses_with_exact_counts(
    recording_frames: Frames,
) -> None:
    parser = USDM.parser()
    ticks = [t for recv_ns, frame in recording_frames for t in parser.parse(frame, recv_ns)]
    assert len(recording_frames) == 93_954
    assert parser.stats.parsed_trades == 21_313
    assert parser.stats.parsed_quotes == 66_089
    assert parser.stats.skipped == {base.SKIP_DEPTH: 6_551, base.SKIP_SNAPSHOT: 1}
    assert parser.stats.rejected == {}
    assert len(ticks) == 21_313 + 66_089
    assert all(invalid_reason(t) is None for t in ticks)
    assert {(t.venue, t.symbol) for t in ticks} == {(VENUE, BTC)}
    trade_ids = [int(t.trade_id) for t in ticks if t.kind == TRADE]
    assert trade_ids == sorted(set(trade_ids)), "trade ids are unique and increasing"
    sides = {t.side for t in ticks if t.kind == TRADE}
    assert sides == {1, -1}


def test_the_recorded_trade_sample_becomes_the_documented_tick(binance_samples: Path) -> None:
    parser = USDM.parser()
    ticks = parser.parse(_sample(binance_samples, "trade.combined.json"), 7)
    assert ticks == [
        trade(VENUE, BTC, 1723161256322, 7, 61800.3, 0.006, 1, "5266583935"),
    ]


def test_an_aggtrade_uses_the_aggregate_id_and_trade_time(binance_samples: Path) -> None:
    parser = USDM.parser()
    ticks = parser.parse(_sample(binance_samples, "aggTrade.combined.json"), 9)
    assert ticks == [trade(VENUE, "CTK/USDT:USDT", 1626992741421, 9, 1.011, 10.0, 1, "16599292")]


def test_a_bookticker_uses_the_transaction_time_and_update_id(binance_samples: Path) -> None:
    parser = USDM.parser()
    ticks = parser.parse(_sample(binance_samples, "bookTicker.combined.json"), 3)
    expected = quote(VENUE, "SUSHI/USDT:USDT", 1626992741012, 3, 7.611, 2.0, 7.612, 297.0)
    assert ticks == [expected._replace(update_id=600859600576)]


@pytest.mark.parametrize(
    "name", ["trade.combined.json", "aggTrade.combined.json", "bookTicker.combined.json"]
)
def test_a_raw_frame_parses_like_its_combined_form(binance_samples: Path, name: str) -> None:
    combined = _sample(binance_samples, name)
    raw = orjson.dumps(orjson.loads(combined)["data"])
    parser = USDM.parser()
    from_combined = parser.parse(combined, 11)
    assert parser.parse(raw, 11) == from_combined
    assert parser.parse(raw.decode(), 11) == from_combined
    assert len(from_combined) == 1
    assert parser.stats.total_parsed == 3


@pytest.mark.parametrize(
    ("name", "reason"),
    [("markPrice.combined.json", base.SKIP_MARK_PRICE), ("subscribe.ack.json", base.SKIP_ACK)],
)
def test_mark_prices_and_acks_are_skipped(binance_samples: Path, name: str, reason: str) -> None:
    parser = USDM.parser()
    frame = _sample(binance_samples, name)
    assert parser.parse(frame, 0) == []
    unwrapped = orjson.loads(frame).get("data")
    if unwrapped is not None:
        assert parser.parse(orjson.dumps(unwrapped), 0) == []
    assert parser.stats.skipped == {reason: 1 if unwrapped is None else 2}
    assert parser.stats.rejected == {}


def test_the_2021_session_recording_parses_every_frame(binance_samples: Path) -> None:
    lines = (binance_samples / "recording-2021-07-22.ws.txt").read_bytes().splitlines()
    assert b" <-> " in lines[0]
    parser = USDM.parser()
    ticks: list[Tick] = []
    for line in lines[1:]:
        stamp, _, frame = line.partition(b": ")
        ticks += parser.parse(frame, int(float(stamp) * 1e9))
    assert parser.stats.parsed_trades == 91
    assert parser.stats.parsed_quotes == 613
    assert parser.stats.skipped == {base.SKIP_DEPTH: 764, base.SKIP_OTHER_EVENT: 67}
    assert parser.stats.rejected == {}
    assert {t.symbol for t in ticks} == {
        "SUSHI/USDT:USDT", "AKRO/USDT:USDT", "KEEP/USDT:USDT", "CTK/USDT:USDT",
    }  # fmt: skip
    assert all(invalid_reason(t) is None for t in ticks)


MALFORMED: list[tuple[str, bytes, str, str]] = [
    ("garbage", b"not json", "rejected", base.REJECT_JSON),
    ("empty", b"", "rejected", base.REJECT_JSON),
    ("bad utf-8", b'{"e":"\xff"}', "rejected", base.REJECT_JSON),
    ("array", b"[1, 2]", "rejected", base.REJECT_NOT_OBJECT),
    ("string", b'"trade"', "rejected", base.REJECT_NOT_OBJECT),
    ("data not object", b'{"stream":"btcusdt@trade","data":5}', "rejected",
     base.REJECT_NOT_OBJECT),
    ("no event type", b'{"s":"BTCUSDT","p":"1"}', "rejected", base.REJECT_MISSING),
    ("missing price", _trade_frame(p=None), "rejected", base.REJECT_MISSING),
    ("missing trade time", _trade_frame(T=None), "rejected", base.REJECT_MISSING),
    ("missing maker flag", _trade_frame(m=None), "rejected", base.REJECT_MISSING),
    ("text price", _trade_frame(p="abc"), "rejected", base.REJECT_NOT_NUMERIC),
    ("object size", _trade_frame(q={"x": 1}), "rejected", base.REJECT_TYPE),
    ("text time", _trade_frame(T="1.5"), "rejected", base.REJECT_TYPE),
    # the fault campaign's frames (issue 10): never coerced, never out of range
    ("absurd price", _trade_frame(p="1e308"), "rejected", contract.REJECT_PRICE_RANGE),
    ("float time", _trade_frame(T=1e300), "rejected", base.REJECT_TYPE),
    ("bool time", _trade_frame(T=True), "rejected", base.REJECT_TYPE),
    ("bool price", _trade_frame(p=True), "rejected", base.REJECT_TYPE),
    ("number price", _trade_frame(p=61800.3), "rejected", base.REJECT_TYPE),
    ("year 2100", _trade_frame(T=4102444800000), "rejected", contract.REJECT_TIME_RANGE),
    ("absurd book", _book_frame(b="1.7e308", a="1.7e308", B="1e308", A="1e308"), "rejected",
     contract.REJECT_PRICE_RANGE),
    ("absurd book size", _book_frame(B="1e308"), "rejected", contract.REJECT_SIZE_RANGE),
    ("bool update id", _book_frame(u=True), "rejected", base.REJECT_TYPE),
    ("bool trade id", _trade_frame(t=True), "rejected", base.REJECT_TYPE),
    ("float trade id", _trade_frame(t=1.5), "rejected", base.REJECT_TYPE),
    ("huge float trade id", _trade_frame(t=1e30), "rejected", base.REJECT_TYPE),
    ("null trade id", _trade_frame(t=None), "rejected", base.REJECT_MISSING),
    ("text trade id", _trade_frame(t="abc"), "rejected", base.REJECT_TYPE),
    ("list trade id", _trade_frame(t=[1]), "rejected", base.REJECT_TYPE),
    ("nan price", _trade_frame(p="NaN"), "rejected", contract.REJECT_NON_FINITE),
    ("infinite size", _trade_frame(q="inf"), "rejected", contract.REJECT_NON_FINITE),
    ("zero price", _trade_frame(p="0.00"), "rejected", contract.REJECT_PRICE),
    ("negative price", _trade_frame(p="-61800.30"), "rejected", contract.REJECT_PRICE),
    ("negative size", _trade_frame(q="-0.006"), "rejected", contract.REJECT_SIZE),
    ("zero time", _trade_frame(T=0), "rejected", contract.REJECT_TIME),
    ("maker flag as text", _trade_frame(m="false"), "rejected", contract.REJECT_SIDE),
    ("numeric symbol", _trade_frame(s=42), "rejected", base.REJECT_SYMBOL),
    ("unnamed symbol", _trade_frame(s="NOQUOTE"), "rejected", base.REJECT_SYMBOL),
    ("crossed book", _book_frame(b="61800.40"), "rejected", contract.REJECT_CROSSED),
    ("negative bid size", _book_frame(B="-1"), "rejected", contract.REJECT_SIZE),
    ("nan ask", _book_frame(a="nan"), "rejected", contract.REJECT_NON_FINITE),
    ("zero bid", _book_frame(b="0"), "rejected", contract.REJECT_PRICE),
    ("missing update id", _book_frame(u=None), "rejected",
     base.REJECT_MISSING),
    ("unknown event", b'{"e":"somethingNew","s":"BTCUSDT"}', "skipped",
     base.SKIP_UNKNOWN_EVENT),
    ("kline", b'{"e":"kline","s":"BTCUSDT","k":{}}', "skipped", base.SKIP_OTHER_EVENT),
    ("depth", b'{"e":"depthUpdate","s":"BTCUSDT","b":[],"a":[]}', "skipped", base.SKIP_DEPTH),
    ("error reply", b'{"error":{"code":2,"msg":"Invalid request"},"id":1}', "skipped",
     base.SKIP_ERROR_REPLY),
    ("rest snapshot", b'{"lastUpdateId":1,"E":1,"T":1,"bids":[],"asks":[]}', "skipped",
     base.SKIP_SNAPSHOT),
]  # fmt: skip


@pytest.mark.parametrize(
    ("frame", "outcome", "reason"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_a_bad_frame_is_counted_with_its_reason_and_never_raised(
    frame: bytes, outcome: str, reason: str
) -> None:
    parser = USDM.parser()
    assert parser.parse(frame, 1) == []
    counted = parser.stats.rejected if outcome == "rejected" else parser.stats.skipped
    other = parser.stats.skipped if outcome == "rejected" else parser.stats.rejected
    assert counted == {reason: 1}
    assert other == {}
    assert parser.stats.total_parsed == 0


def test_a_bookticker_without_transaction_time_falls_back_to_the_event_time() -> None:
    parser = USDM.parser()
    frame = orjson.loads(_book_frame())
    del frame["data"]["T"]
    (tick,) = parser.parse(orjson.dumps(frame), 0)
    assert tick.event_ms == 1723161256314
    (tick,) = parser.parse(_book_frame(), 0)
    assert tick.event_ms == 1723161256313


def test_a_symbol_mapping_names_its_symbols_and_skips_the_others() -> None:
    parser = USDM.parser([USDM.market(BTC)])
    assert parser.parse(_trade_frame(), 0)[0].symbol == BTC
    assert parser.parse(_trade_frame(s="ETHUSDT"), 0) == []
    assert parser.parse(_book_frame(s="ETHUSDT"), 0) == []
    assert parser.stats.skipped == {base.SKIP_UNSUBSCRIBED: 2}
    xbt = MarketInfo("XBT/USDT:USDT", "BTCUSDT", "XBT", "USDT", "USDT")
    renamed = USDM.parser([xbt], "binance-test")
    (tick,) = renamed.parse(_trade_frame(), 0)
    assert (tick.venue, tick.symbol) == ("binance-test", "XBT/USDT:USDT")


def test_a_contract_size_scales_trade_and_quote_sizes() -> None:
    halves = MarketInfo(BTC, "BTCUSDT", "BTC", "USDT", "USDT", contract_size=0.5)
    parser = USDM.parser([halves])
    (tr,) = parser.parse(_trade_frame(q="4"), 0)
    (qt,) = parser.parse(_book_frame(B="2", A="6"), 0)
    assert (tr.size, qt.bid_size, qt.ask_size) == (2.0, 1.0, 3.0)
    with pytest.raises(MarketError, match="contract size"):
        MarketInfo(BTC, "BTCUSDT", "BTC", "USDT", "USDT", contract_size=0.0)


def test_a_data_list_yields_a_tick_per_element() -> None:
    events = [orjson.loads(_book_frame(s=s))["data"] for s in ("BTCUSDT", "ETHUSDC")]
    frame = orjson.dumps({"stream": "!bookTicker", "data": [*events, 3]})
    parser = USDM.parser()
    ticks = parser.parse(frame, 0)
    assert [t.symbol for t in ticks] == [BTC, "ETH/USDC:USDC"]
    assert parser.stats.rejected == {base.REJECT_NOT_OBJECT: 1}


def test_mutated_real_frames_never_raise_and_only_yield_valid_ticks(
    recording_frames: Frames,
) -> None:
    rng = np.random.default_rng(20240808)
    frames = [f.strip() for _, f in recording_frames[:400] if len(f) < 400]
    parser = USDM.parser()
    produced = 0
    for i in range(4000):
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
    assert stats.total_parsed + stats.total_skipped + stats.total_rejected == 4000
    assert stats.total_rejected > 1000
    assert len(stats.rejected) >= 4, stats.rejected


def test_render_then_parse_gives_back_every_real_tick(
    recording_ticks: list[tuple[bytes, Tick]],
) -> None:
    parser = USDM.parser()
    for frame, tick in recording_ticks:
        data = orjson.loads(frame)["data"]
        if tick.kind == TRADE:
            event = render_trade(tick, market_of(tick), push_ms=data["E"])
        else:
            event = render_book_ticker(tick, market_of(tick), push_ms=data["E"])
        assert event == data, "renders the venue's exact event"
        assert parser.parse(orjson.dumps(event), tick.recv_ns) == [tick]
    assert parser.stats.total_parsed == len(recording_ticks) == 87_402


def test_render_reproduces_the_wire_samples(binance_samples: Path) -> None:
    parser = USDM.parser()
    for name in ("trade.combined.json", "aggTrade.combined.json", "bookTicker.combined.json"):
        data = orjson.loads(_sample(binance_samples, name))["data"]
        (tick,) = parser.parse(orjson.dumps(data), 0)
        if data["e"] == "trade":
            event = render_trade(tick, market_of(tick))
        elif data["e"] == "aggTrade":
            event = render_trade(
                tick._replace(trade_id=str(data["f"])), market_of(tick), agg=True, agg_id=data["a"],
                price_decimals=5, size_decimals=0, push_ms=data["E"],
            )  # fmt: skip
        else:
            event = render_book_ticker(
                tick, market_of(tick), price_decimals=4, size_decimals=0, push_ms=data["E"]
            )
        assert event == data
        assert list(event) == list(data), "same key order as the venue"
    mark = orjson.loads(_sample(binance_samples, "markPrice.combined.json"))["data"]
    assert render_mark_price("BTCUSDT", 1597536008000, 11857.56, 11851.86949091, 0.0001564,
                             1597564800000) == mark  # fmt: skip


def test_an_aggtrade_render_parses_back_with_the_aggregate_id() -> None:
    tick = trade(VENUE, "ETH/USDT:USDT", 1_700_000_000_000, 5, 2000.125, 1e-07, -1, "42")
    event = render_trade(tick, market_of(tick), agg=True, agg_id=42)
    assert (event["p"], event["q"], event["m"]) == ("2000.125", "0.0000001", True)
    assert USDM.parser().parse(orjson.dumps(event), 5) == [tick]
    sim_id = render_trade(tick._replace(trade_id="sim-1"), market_of(tick), agg=True, agg_id=9)
    assert (sim_id["a"], sim_id["f"], sim_id["l"]) == (9, 9, 9)


def test_rendering_refuses_what_binance_cannot_send() -> None:
    tick = trade(VENUE, BTC, 1, 1, 100.0, 1.0, 1, "7")
    with pytest.raises(FeedParseError, match="quote tick"):
        render_book_ticker(tick, USDM.market(BTC))
    with pytest.raises(FeedParseError, match="trade tick"):
        render_trade(quote(VENUE, BTC, 1, 1, 1.0, 1.0, 2.0, 1.0), USDM.market(BTC))
    with pytest.raises(FeedParseError, match="integers"):
        render_trade(tick._replace(trade_id="abc"), USDM.market(BTC))
    with pytest.raises(FeedParseError, match="non-finite"):
        render_trade(tick._replace(price=math.nan), USDM.market(BTC))
    with pytest.raises(MarketError, match="unified"):
        USDM.assumed_market("BTCUSDT")


@pytest.mark.parametrize(
    ("venue_id", "unified"),
    [
        ("BTCUSDT", "BTC/USDT:USDT"),
        ("ETHUSDC", "ETH/USDC:USDC"),
        ("1000PEPEUSDT", "1000PEPE/USDT:USDT"),
        ("BTCUSDT_240927", "BTC/USDT:USDT-240927"),
        ("ETHBTC", "ETH/BTC:BTC"),
    ],
)
def test_venue_ids_and_unified_symbols_map_both_ways(venue_id: str, unified: str) -> None:
    assert usdm_unified(venue_id) == unified
    assert usdm_id(unified) == venue_id


@pytest.mark.parametrize("venue_id", ["USDT", "btcusdt", "BTC-USDT", ""])
def test_an_id_without_a_known_quote_asset_cannot_be_named(venue_id: str) -> None:
    with pytest.raises(FeedParseError):
        usdm_unified(venue_id)


def test_parse_stats_add_up_and_merge() -> None:
    a, b = ParseStats(), ParseStats()
    a.parsed_trades, b.parsed_quotes = 2, 5
    a.skip(base.SKIP_DEPTH)
    b.skip(base.SKIP_DEPTH, 3)
    b.reject(base.REJECT_JSON)
    a.merge(b)
    assert (a.total_parsed, a.total_skipped, a.total_rejected) == (7, 4, 1)
    assert a.as_dict() == {
        "parsed_trades": 2, "parsed_quotes": 5,
        "skipped": {base.SKIP_DEPTH: 4}, "rejected": {base.REJECT_JSON: 1},
    }  # fmt: skip
    assert "parsed_quotes=5" in repr(a)


def test_the_binance_parser_satisfies_the_parser_protocol() -> None:
    assert isinstance(USDM.parser(), Parser) and isinstance(USDM.parser(), BinanceParser)
    assert USDM.parser().venue == VENUE == "binanceusdm"


def test_unified_symbols_split_and_join() -> None:
    parts = base.split_unified("BTC/USDT:USDT-240927")
    assert base.join_unified(*parts) == "BTC/USDT:USDT-240927"
    with pytest.raises(FeedParseError):
        base.split_unified("BTCUSDT")


def test_a_quote_tick_has_no_trade_fields(recording_ticks: list[tuple[bytes, Tick]]) -> None:
    quotes = [t for _, t in recording_ticks if t.kind == QUOTE]
    assert {(t.price, t.size, t.side, t.trade_id) for t in quotes} == {(0.0, 0.0, 0, "")}
    assert all(t.update_id > 0 for t in quotes)
