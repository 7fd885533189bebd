"""Bitget USDT-M futures: the parser on the real wire samples and on broken frames, the
subscription plan and frame classification, the simulated v2 dialect against tickcast's feed,
and ccxt.pro's own Bitget client against the simulator."""

from __future__ import annotations

import asyncio
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
from tickcast.service.venues.base import FeedParseError
from tickcast.service.venues.binance.usdm import VENUE as BINANCE_USDM
from tickcast.service.venues.bitget import (
    BACKFILL_TRADES,
    CHANNELS_PER_CONNECTION,
    MALFORMED_FRAMES,
    VENUE,
    BitgetRenderer,
    render_books1,
    render_trades,
)
from tickcast.service.venues.markets import MarketInfo, ccxt_markets
from tickcast.service.venues.venue import ACK, DATA, ERROR, PONG, Reply, SimKeepalive

from support import running, until

NAME = VENUE.name
LABEL = f"sim-{NAME}"
BTC = "BTC/USDT:USDT"
SYMBOLS = [BTC, "ETH/USDT:USDT", "SOL/USDT:USDT"]
MARKETS = [VENUE.market(s) for s in SYMBOLS]
RECV = 17


@pytest.fixture(scope="module")
def samples(samples_dir: Path) -> Path:
    return samples_dir / "bitget-futures"


def _sample(folder: Path, name: str) -> bytes:
    return (folder / name).read_bytes().strip()


# -- conformance on every real sample ----------------------------------------------------------

#: Each sample file -> the ticks it makes (received at RECV) and what is skipped, by reason.
SAMPLES: dict[str, tuple[list[Tick], dict[str, int]]] = {
    "books1.json": (
        [quote(NAME, "ADA/USDT:USDT", 1730332859988, RECV, 0.3553, 112096.0, 0.3555, 10230.0)],
        {},
    ),
    "books1_empty_side.json": ([], {base.SKIP_ONE_SIDED: 1}),
    "subscribe_ack.json": ([], {base.SKIP_ACK: 1}),
    "ticker.json": ([], {base.SKIP_OTHER_EVENT: 1}),
    "ticker_tardis.json": ([], {base.SKIP_OTHER_EVENT: 1}),
    "trade_snapshot.json": ([], {base.SKIP_BACKFILL: 1}),
    "trade_update.json": (
        [trade(NAME, "DOGE/USD:DOGE", 1730332859962, RECV, 0.168385, 447.0, 1,
               "1235671063871070209")],
        {},
    ),
    "v3_books1.json": (
        [quote(NAME, BTC, 1777358880027, RECV, 76631.2, 0.9608, 76631.3, 8.8086, 483415090019)],
        {},
    ),
    "v3_publicTrade.json": (
        [trade(NAME, BTC, 1777358881008, RECV, 76631.3, 0.01, 1, "1432912492051054592")],
        {},
    ),
}  # fmt: skip


def test_every_sample_file_of_the_venue_has_an_expectation(samples: Path) -> None:
    assert sorted(p.name for p in samples.iterdir()) == sorted(SAMPLES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_each_real_sample_makes_exactly_its_ticks_and_counts(samples: Path, name: str) -> None:
    expected, skipped = SAMPLES[name]
    parser = VENUE.parser()
    ticks = parser.parse(_sample(samples, name), RECV)
    assert ticks == expected
    assert parser.stats.skipped == skipped
    assert parser.stats.rejected == {}
    assert parser.stats.parsed_trades == sum(t.kind == TRADE for t in expected)
    assert parser.stats.parsed_quotes == sum(t.kind == QUOTE for t in expected)
    assert all(invalid_reason(t) is None for t in ticks)


def test_the_coin_futures_sample_is_an_inverse_market_sized_in_coins(samples: Path) -> None:
    doge = VENUE.derive("DOGEUSD")
    assert doge is not None
    assert (doge.symbol, doge.linear, doge.contract_size) == ("DOGE/USD:DOGE", False, 1.0)
    (tick,) = VENUE.parser([doge]).parse(_sample(samples, "trade_update.json"), 0)
    assert tick.size == 447.0, "447 DOGE as sent, not 447 USD contracts at the price"


def test_a_trade_snapshot_is_skipped_once_and_the_same_trades_as_an_update_come_oldest_first(
    samples: Path,
) -> None:
    frame = orjson.loads(_sample(samples, "trade_snapshot.json"))
    parser = VENUE.parser()
    assert parser.parse(orjson.dumps(frame), RECV) == []
    frame["action"] = "update"
    ticks = parser.parse(orjson.dumps(frame), RECV)
    assert ticks == [
        trade(NAME, BTC, 1695716759514, RECV, 27000.0, 0.001, -1, "1111111111"),
        trade(NAME, BTC, 1695716760565, RECV, 27000.5, 0.001, 1, "1111111111"),
    ], "chronological, and the docs' repeated placeholder id does not drop a trade"
    assert parser.stats.skipped == {base.SKIP_BACKFILL: 1}
    assert parser.stats.parsed_trades == 2


def test_a_v3_trade_snapshot_is_a_backfill_too(samples: Path) -> None:
    frame = orjson.loads(_sample(samples, "v3_publicTrade.json"))
    frame["action"] = "snapshot"
    parser = VENUE.parser()
    assert parser.parse(orjson.dumps(frame), 0) == []
    assert parser.stats.skipped == {base.SKIP_BACKFILL: 1}


def test_a_text_frame_parses_like_its_bytes(samples: Path) -> None:
    raw = _sample(samples, "books1.json")
    parser = VENUE.parser()
    assert parser.parse(raw.decode(), RECV) == parser.parse(raw, RECV)
    assert parser.parse("pong", 0) == [] and parser.stats.skipped == {base.SKIP_KEEPALIVE: 1}


def test_subscribed_markets_name_their_ids_and_other_ids_are_skipped(samples: Path) -> None:
    parser = VENUE.parser([VENUE.market(BTC)], "bitget-test")
    (tick,) = parser.parse(_sample(samples, "v3_publicTrade.json"), 0)
    assert (tick.venue, tick.symbol) == ("bitget-test", BTC)
    assert parser.parse(_sample(samples, "books1.json"), 0) == []
    assert parser.parse(_sample(samples, "trade_update.json"), 0) == []
    assert parser.stats.skipped == {base.SKIP_UNSUBSCRIBED: 2}


# -- broken frames -----------------------------------------------------------------------------


def _trade_frame(**entry: object) -> bytes:
    fields: dict[str, object] = {
        "ts": "1730332859962", "price": "60000.5", "size": "0.01", "side": "buy",
        "tradeId": "1235671063871070209",
    }  # fmt: skip
    fields.update(entry)
    arg = {"instType": "USDT-FUTURES", "channel": "trade", "instId": "BTCUSDT"}
    data = [{k: v for k, v in fields.items() if v is not None}]
    return orjson.dumps({"action": "update", "arg": arg, "data": data, "ts": 1730332859979})


def _book_frame(**level: object) -> bytes:
    fields: dict[str, object] = {
        "asks": [["60000.5", "1.2"]], "bids": [["60000.4", "0.8"]], "checksum": 0,
        "ts": "1730332859988",
    }  # fmt: skip
    fields.update(level)
    arg = {"instType": "USDT-FUTURES", "channel": "books1", "instId": "BTCUSDT"}
    data = [{k: v for k, v in fields.items() if v is not None}]
    return orjson.dumps({"action": "snapshot", "arg": arg, "data": data, "ts": 1730332859989})


def _frame(arg: object, data: object = None, **extra: object) -> bytes:
    msg: dict[str, object] = {"action": "update", "arg": arg, **extra}
    if data is not None:
        msg["data"] = data
    return orjson.dumps(msg)


def _arg(
    channel: str, inst_id: object = "BTCUSDT", kind: str = "USDT-FUTURES"
) -> dict[str, object]:
    return {"instType": kind, "channel": channel, "instId": inst_id}


V3_TRADE = {"i": "1", "p": "60000.5", "v": "0.01", "S": "sell", "T": "1777358881008"}
V3_ARG = {"instType": "usdt-futures", "topic": "publicTrade", "symbol": "BTCUSDT"}

MALFORMED: list[tuple[str, bytes | str, str, str]] = [
    ("garbage", b"not json", "rejected", base.REJECT_JSON),
    ("empty", b"", "rejected", base.REJECT_JSON),
    ("bad utf-8", b'{"event":"\xff"}', "rejected", base.REJECT_JSON),
    ("upper-case pong", b"PONG", "rejected", base.REJECT_JSON),
    ("array", b"[1, 2]", "rejected", base.REJECT_NOT_OBJECT),
    ("string", '"trade"', "rejected", base.REJECT_NOT_OBJECT),
    ("no data and no event", _frame(_arg("trade")), "rejected", base.REJECT_MISSING),
    ("unknown event", b'{"event":"mystery"}', "rejected", base.REJECT_MISSING),
    ("event as a list", b'{"event":["subscribe"]}', "rejected", base.REJECT_MISSING),
    ("data without arg", b'{"action":"update","data":[]}', "rejected", base.REJECT_MISSING),
    ("arg not an object", _frame("trade", []), "rejected", base.REJECT_NOT_OBJECT),
    ("arg without channel", _frame({"instId": "BTCUSDT"}, []), "rejected", base.REJECT_MISSING),
    ("channel as a list", _frame({"channel": ["trade"]}, []), "rejected", base.REJECT_MISSING),
    ("trade data not a list", _frame(_arg("trade"), {"ts": "1"}), "rejected",
     base.REJECT_NOT_OBJECT),
    ("empty trade data", _frame(_arg("trade"), []), "rejected", base.REJECT_MISSING),
    ("trade entry not an object", _frame(_arg("trade"), [7]), "rejected",
     base.REJECT_NOT_OBJECT),
    ("missing price", _trade_frame(price=None), "rejected", base.REJECT_MISSING),
    ("missing time", _trade_frame(ts=None), "rejected", base.REJECT_MISSING),
    ("missing side", _trade_frame(side=None), "rejected", base.REJECT_MISSING),
    ("missing trade id", _trade_frame(tradeId=None), "rejected", base.REJECT_MISSING),
    ("text price", _trade_frame(price="abc"), "rejected", base.REJECT_NOT_NUMERIC),
    ("list size", _trade_frame(size=[1]), "rejected", base.REJECT_TYPE),
    ("fractional time", _trade_frame(ts="1.5"), "rejected", base.REJECT_NOT_NUMERIC),
    ("nan price", _trade_frame(price="NaN"), "rejected", contract.REJECT_NON_FINITE),
    ("infinite size", _trade_frame(size="inf"), "rejected", contract.REJECT_NON_FINITE),
    ("zero price", _trade_frame(price="0"), "rejected", contract.REJECT_PRICE),
    ("negative size", _trade_frame(size="-0.01"), "rejected", contract.REJECT_SIZE),
    ("zero time", _trade_frame(ts="0"), "rejected", contract.REJECT_TIME),
    ("upper-case side", _trade_frame(side="BUY"), "rejected", contract.REJECT_SIDE),
    ("side as a list", _trade_frame(side=["buy"]), "rejected", contract.REJECT_SIDE),
    ("unnamed id", _frame(_arg("trade", "NOQUOTE"), [{}]), "rejected", base.REJECT_SYMBOL),
    ("numeric id", _frame(_arg("books1", 42), [{}]), "rejected", base.REJECT_SYMBOL),
    ("id as a list", _frame(_arg("trade", ["BTCUSDT"]), [{}]), "rejected", base.REJECT_SYMBOL),
    ("spot pair of a futures name", _frame(_arg("trade", kind="SPOT"), [{}]), "rejected",
     base.REJECT_SYMBOL),
    ("crossed book", _book_frame(bids=[["60000.6", "1"]]), "rejected", contract.REJECT_CROSSED),
    ("negative bid size", _book_frame(bids=[["60000.4", "-1"]]), "rejected",
     contract.REJECT_SIZE),
    ("nan ask", _book_frame(asks=[["nan", "1"]]), "rejected", contract.REJECT_NON_FINITE),
    ("zero bid", _book_frame(bids=[["0", "1"]]), "rejected", contract.REJECT_PRICE),
    ("level without size", _book_frame(asks=[["60000.5"]]), "rejected", base.REJECT_MISSING),
    ("level as text", _book_frame(asks=["abc"]), "rejected", base.REJECT_NOT_NUMERIC),
    ("side as a number", _book_frame(bids=5), "rejected", base.REJECT_TYPE),
    ("book without time", _book_frame(ts=None), "rejected", base.REJECT_MISSING),
    ("book without bids", _book_frame(bids=None), "rejected", base.REJECT_MISSING),
    ("book data not a list", _frame(_arg("books1"), {"asks": []}), "rejected",
     base.REJECT_NOT_OBJECT),
    ("empty book data", _frame(_arg("books1"), []), "rejected", base.REJECT_MISSING),
    ("book entry not an object", _frame(_arg("books1"), ["x"]), "rejected",
     base.REJECT_NOT_OBJECT),
    ("text seq", _book_frame(seq="x"), "rejected", base.REJECT_TYPE),
    ("v3 null price", _frame(V3_ARG, [{**V3_TRADE, "p": None}]), "rejected",
     base.REJECT_TYPE),
    ("v3 trade without size", _frame(V3_ARG, [{k: v for k, v in V3_TRADE.items() if k != "v"}]),
     "rejected", base.REJECT_MISSING),
    ("both sides empty", _book_frame(asks=[], bids=[]), "skipped", base.SKIP_ONE_SIDED),
    ("pong", b"pong", "skipped", base.SKIP_KEEPALIVE),
    ("error answer", b'{"event":"error","code":30016,"msg":"Param error"}', "skipped",
     base.SKIP_ERROR_REPLY),
    ("unsubscribe ack", b'{"event":"unsubscribe","arg":{"instType":"USDT-FUTURES"}}', "skipped",
     base.SKIP_ACK),
    ("unknown channel", _frame(_arg("mystery"), [{}]), "skipped", base.SKIP_UNKNOWN_EVENT),
    ("depth", _frame(_arg("books5"), [{}]), "skipped", base.SKIP_DEPTH),
    ("candles", _frame(_arg("candle1m"), [[]]), "skipped", base.SKIP_OTHER_EVENT),
    ("v3 klines", _frame({**V3_ARG, "topic": "kline"}, [{}]), "skipped", base.SKIP_OTHER_EVENT),
]  # fmt: skip


#: The fault campaign's values (issue 10), one frame each: Bitget sends prices and sizes as
#: decimal strings, times as strings of digits (``"1730332859962"``) and v3's ``seq`` as a JSON
#: integer; nothing else is coerced, and what is a number still meets the contract's ranges.
CAMPAIGN: list[tuple[str, bytes, str]] = [
    ("bool price", _trade_frame(price=True), base.REJECT_TYPE),
    ("number price", _trade_frame(price=60000.5), base.REJECT_TYPE),
    ("number size", _trade_frame(size=1), base.REJECT_TYPE),
    ("number time", _trade_frame(ts=1730332859962), base.REJECT_TYPE),
    ("float time", _trade_frame(ts=1.7e12), base.REJECT_TYPE),
    ("bool time", _trade_frame(ts=True), base.REJECT_TYPE),
    ("exponent time", _trade_frame(ts="1e3"), base.REJECT_NOT_NUMERIC),
    ("negative time", _trade_frame(ts="-5"), base.REJECT_NOT_NUMERIC),
    ("signed time", _trade_frame(ts="+1730332859962"), base.REJECT_NOT_NUMERIC),
    ("spaced time", _trade_frame(ts=" 1730332859962"), base.REJECT_NOT_NUMERIC),
    ("year 2100", _trade_frame(ts="4102444800000"), contract.REJECT_TIME_RANGE),
    ("absurd price", _trade_frame(price="1e308"), contract.REJECT_PRICE_RANGE),
    ("NaN price", _trade_frame(price="NaN"), contract.REJECT_NON_FINITE),
    ("Infinity size", _trade_frame(size="Infinity"), contract.REJECT_NON_FINITE),
    ("negative size -1", _trade_frame(size="-1"), contract.REJECT_SIZE),
    ("v3 number time", _frame(V3_ARG, [{**V3_TRADE, "T": 1777358881008}]), base.REJECT_TYPE),
    ("v3 bool price", _frame(V3_ARG, [{**V3_TRADE, "p": True}]), base.REJECT_TYPE),
    ("bool ask", _book_frame(asks=[[True, "1.2"]]), base.REJECT_TYPE),
    ("number bid size", _book_frame(bids=[["60000.4", 0.8]]), base.REJECT_TYPE),
    ("number book time", _book_frame(ts=1730332859988), base.REJECT_TYPE),
    ("exponent book time", _book_frame(ts="1e3"), base.REJECT_NOT_NUMERIC),
    ("bool seq", _book_frame(seq=True), base.REJECT_TYPE),
    ("book in 2100", _book_frame(ts="4102444800000"), contract.REJECT_TIME_RANGE),
    ("absurd book", _book_frame(asks=[["1.7e308", "1e308"]], bids=[["1.7e308", "1e308"]]),
     contract.REJECT_PRICE_RANGE),
]  # fmt: skip
MALFORMED += [(name, frame, "rejected", reason) for name, frame, reason in CAMPAIGN]


@pytest.mark.parametrize(
    ("frame", "outcome", "reason"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_a_bad_frame_is_counted_once_with_its_reason_and_never_raised(
    frame: bytes | str, outcome: str, reason: str
) -> None:
    parser = VENUE.parser()
    assert parser.parse(frame, 1) == []
    counted = parser.stats.rejected if outcome == "rejected" else parser.stats.skipped
    other = parser.stats.skipped if outcome == "rejected" else parser.stats.rejected
    assert counted == {reason: 1}
    assert other == {}
    assert parser.stats.total_parsed == 0


def test_the_campaign_frames_are_counted_and_the_valid_frames_between_them_still_parse() -> None:
    parser = VENUE.parser()
    ticks = parser.parse(_book_frame(), 1)
    for _, frame, _ in CAMPAIGN:
        assert parser.parse(frame, 1) == []
        ticks += parser.parse(_trade_frame(), 1)
    push = orjson.loads(_trade_frame())
    good = push["data"][0]
    push["data"] = [good, {**good, "price": True}, {**good, "ts": 1730332859962}, good]
    ticks += parser.parse(orjson.dumps(push), 1)
    assert len(ticks) == 1 + len(CAMPAIGN) + 2
    assert all(invalid_reason(t) is None for t in ticks)
    assert parser.stats.rejected == Counter(reason for *_, reason in CAMPAIGN) + Counter(
        {base.REJECT_TYPE: 2}
    )
    assert parser.stats.skipped == {}


def test_good_entries_of_a_push_survive_a_bad_one() -> None:
    frame = orjson.loads(_trade_frame())
    good = frame["data"][0]
    frame["data"] = [{**good, "ts": "1730332859963"}, {**good, "price": "x"}, good]
    parser = VENUE.parser()
    ticks = parser.parse(orjson.dumps(frame), 0)
    assert [t.event_ms for t in ticks] == [1730332859962, 1730332859963]
    assert parser.stats.rejected == {base.REJECT_NOT_NUMERIC: 1}
    assert parser.stats.parsed_trades == 2


def test_the_simulators_malformed_frames_each_count_once_and_make_no_tick() -> None:
    reasons = []
    for frame in MALFORMED_FRAMES:
        parser = VENUE.parser(MARKETS)
        assert parser.parse(frame, 0) == []
        stats = parser.stats
        assert stats.total_skipped + stats.total_rejected == 1, frame
        reasons += [*stats.skipped, *stats.rejected]
        assert VENUE.classify(frame).kind == DATA, "the feed counts them as data frames"
    assert reasons == [
        base.REJECT_JSON, base.REJECT_NOT_OBJECT, contract.REJECT_PRICE,
        contract.REJECT_NON_FINITE, base.SKIP_UNKNOWN_EVENT, base.REJECT_MISSING,
        contract.REJECT_CROSSED,
    ]  # fmt: skip


def test_mutated_real_frames_never_raise_and_only_yield_valid_ticks(samples: Path) -> None:
    frames = [orjson.dumps(orjson.loads(_sample(samples, name))) for name in sorted(SAMPLES)]
    rng = np.random.default_rng(2024)
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
    assert stats.total_parsed == produced > 0
    assert stats.total_parsed + stats.total_skipped + stats.total_rejected >= 3000
    assert stats.total_rejected > 1000 and len(stats.rejected) >= 4, stats.rejected


# -- rendering ---------------------------------------------------------------------------------


def render(tick: Tick, market: MarketInfo) -> dict[str, object]:
    """The v2 push of one tick."""
    if tick.kind == TRADE:
        return render_trades([tick], market)
    return render_books1(tick, market)


def test_render_then_parse_gives_back_every_synthetic_tick() -> None:
    ticks = list(SyntheticMarket(seed=41).ticks(30.0))
    parser = VENUE.parser(label="sim")
    for tick in ticks:
        frame = orjson.dumps(render(tick, VENUE.assumed_market(tick.symbol)))
        # v2 books carry no update id
        assert parser.parse(frame, tick.recv_ns) == [tick._replace(update_id=0)]
    assert parser.stats.total_parsed == len(ticks) > 500
    assert parser.stats.skipped == parser.stats.rejected == {}


def test_render_reproduces_the_real_trade_and_book_samples_byte_for_byte(samples: Path) -> None:
    parser = VENUE.parser()
    for name, venue_id in (("books1.json", "ADAUSDT"), ("trade_update.json", "DOGEUSD")):
        sample = orjson.loads(_sample(samples, name))
        ticks = parser.parse(orjson.dumps(sample), 0)
        market = VENUE.derive(venue_id)
        assert market is not None and len(ticks) == 1
        if ticks[0].kind == TRADE:
            frame = render_trades(ticks, market, push_ms=sample["ts"])
        else:
            frame = render_books1(ticks[0], market, push_ms=sample["ts"])
        assert orjson.dumps(frame) == orjson.dumps(sample), "same values and key order"
    # (the v3 samples have another layout: the simulator speaks v2 only)


def test_render_reproduces_the_snapshot_sample_newest_first(samples: Path) -> None:
    sample = orjson.loads(_sample(samples, "trade_snapshot.json"))
    ticks = VENUE.parser().parse(orjson.dumps({**sample, "action": "update"}), 0)
    frame = render_trades(ticks, VENUE.market(BTC), action="snapshot", push_ms=sample["ts"])
    assert orjson.dumps(frame) == orjson.dumps(sample), "27000.0 keeps BTCUSDT's one decimal"


def test_rendering_refuses_what_bitget_cannot_send() -> None:
    btc = VENUE.market(BTC)
    tr = trade(NAME, BTC, 1, 1, 100.0, 1.0, 1, "7")
    with pytest.raises(FeedParseError, match="quote tick"):
        render_books1(tr, btc)
    with pytest.raises(FeedParseError, match="trade ticks"):
        render_trades([quote(NAME, BTC, 1, 1, 1.0, 1.0, 2.0, 1.0)], btc)
    with pytest.raises(FeedParseError, match="non-finite"):
        render_trades([tr._replace(price=math.nan)], btc)


def test_a_new_trade_subscriber_first_gets_a_backfill_of_the_last_trades_newest_first() -> None:
    render = BitgetRenderer(VENUE.assumed_market)
    topic = "USDT-FUTURES.trade.BTCUSDT"
    assert render.welcome(topic) == [], "nothing to backfill before the first trade"
    trades = [trade("sim", BTC, 1_000 + i, 0, 100.0 + i, 1.0, 1, str(i)) for i in range(80)]
    for t in trades:
        assert render.events(t, {topic})[0][0] == topic
    (snapshot,) = render.welcome(topic)
    frame = orjson.loads(snapshot)
    assert frame["action"] == "snapshot" and frame["ts"] == 1079
    assert [e["tradeId"] for e in frame["data"]] == [str(i) for i in range(79, 79 - 50, -1)]
    assert len(frame["data"]) == BACKFILL_TRADES
    assert render.welcome("USDT-FUTURES.books1.BTCUSDT") == []
    parser = VENUE.parser()
    assert parser.parse(snapshot, 0) == [] and parser.stats.skipped == {base.SKIP_BACKFILL: 1}


# -- the venue: ids, plan, classification ------------------------------------------------------


def test_the_venue_declares_bitgets_rules() -> None:
    assert (VENUE.name, VENUE.ccxt_id, VENUE.title) == ("bitget", "bitget", "Bitget USDT-M futures")
    (url,) = (urlsplit(u) for u in VENUE.routes.values())
    assert (set(VENUE.routes), url.scheme, url.path) == ({"public"}, "wss", "/v2/ws/public")
    keep = VENUE.keepalive
    assert (keep.ping, keep.ping_every_s, keep.ws_ping) == (b"ping", 30.0, False)
    assert VENUE.max_connection_s == 24 * 3600.0
    assert 0.0 < VENUE.subscribe_per_s < 10.0, "pings count toward the 10 messages a second"
    assert VENUE.sequential_trade_ids is False
    assert VENUE.dialect().keepalive == SimKeepalive(client_silence_s=120.0)


def test_one_market_subscribes_its_trades_and_level1_book_in_one_message() -> None:
    (connection,) = VENUE.connections([VENUE.market(BTC)], {"public": "ws://x/v2/ws/public"})
    assert (connection.route, connection.url) == ("public", "ws://x/v2/ws/public")
    assert connection.subscribe == (
        b'{"op":"subscribe","args":[{"instType":"USDT-FUTURES","channel":"trade",'
        b'"instId":"BTCUSDT"},{"instType":"USDT-FUTURES","channel":"books1","instId":"BTCUSDT"}]}',
    )


def test_many_markets_are_spread_over_connections_of_at_most_fifty_channels() -> None:
    markets = [*VENUE.markets().values()]
    markets += [VENUE.assumed_market(f"COIN{i}/USDT:USDT") for i in range(40)]
    plan = VENUE.connections(markets, VENUE.routes)
    assert [c.route for c in plan] == ["public", "public-2", "public-3"]
    args = []
    for connection in plan:
        (message,) = connection.subscribe
        assert len(message) < 4096, "Bitget's request size limit"
        request = orjson.loads(message)
        assert request["op"] == "subscribe" and len(request["args"]) <= CHANNELS_PER_CONNECTION
        args += request["args"]
    assert sorted((a["instId"], a["channel"]) for a in args) == sorted(
        (m.venue_id, channel) for m in markets for channel in ("trade", "books1")
    )


def test_real_acks_pongs_and_errors_are_classified_and_data_is_data(samples: Path) -> None:
    assert VENUE.classify(_sample(samples, "subscribe_ack.json")) == (ACK, None, "")
    assert VENUE.classify(b"pong").kind == PONG
    error = VENUE.classify(b'{"event":"error","code":30006,"msg":"request too many"}')
    assert (error.kind, error.detail) == (ERROR, "30006 request too many")
    for name in ("books1.json", "trade_snapshot.json", "ticker.json", "v3_publicTrade.json"):
        assert VENUE.classify(_sample(samples, name)).kind == DATA
    assert VENUE.classify(b"not json").kind == DATA
    assert VENUE.classify(b'{"event":').kind == DATA


def test_a_recording_is_told_bitgets_by_its_data_frames_only(samples: Path) -> None:
    for name in ("books1.json", "trade_update.json", "v3_books1.json", "v3_publicTrade.json"):
        frame = _sample(samples, name)
        assert VENUE.recognises(frame) and not BINANCE_USDM.recognises(frame), name
    assert not VENUE.recognises(_sample(samples, "subscribe_ack.json"))
    others = (
        b'{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","p":"1"}}',
        b'{"arg":{"channel":"trades","instId":"BTC-USDT-SWAP"},"data":[{"px":"1"}]}',
        b'{"topic":"publicTrade.BTCUSDT","type":"snapshot","data":[{"s":"BTCUSDT"}]}',
        b'{"action":"update","arg":{"instType":"USDT-FUTURES","channel":"trade",'
        b'"instId":"BTC_USDT"},"data":[]}',
    )
    assert not any(VENUE.recognises(frame) for frame in others)


@pytest.mark.parametrize(
    ("symbol", "venue_id", "linear"),
    [
        ("BTC/USDT:USDT", "BTCUSDT", True),
        ("1000PEPE/USDT:USDT", "1000PEPEUSDT", True),
        ("ETH/USDC:USDC", "ETHPERP", True),
        ("DOGE/USD:DOGE", "DOGEUSD", False),
    ],
)
def test_unified_symbols_and_bitget_ids_map_both_ways(
    symbol: str, venue_id: str, linear: bool
) -> None:
    assert VENUE.venue_id(symbol) == venue_id
    market = VENUE.derive(venue_id)
    assert market is not None
    assert (market.symbol, market.venue_id, market.linear) == (symbol, venue_id, linear)
    assert market.contract_size == 1.0


def test_the_shipped_table_uses_the_naming_rule_and_sizes_in_coins() -> None:
    for symbol, market in VENUE.markets().items():
        assert VENUE.venue_id(symbol) == market.venue_id
        assert VENUE.derive(market.venue_id) is market
        assert market.contract_size == 1.0 and market.in_base_units
    ticks = {s: VENUE.market(s).price_tick for s in SYMBOLS}
    assert ticks == {BTC: 0.1, "ETH/USDT:USDT": 0.01, "SOL/USDT:USDT": 0.001}


@pytest.mark.parametrize("venue_id", ["USDT", "BTC-USDT-SWAP", "btcusdt", "BTCUSD_PERP", ""])
def test_an_id_outside_the_naming_rule_names_no_market(venue_id: str) -> None:
    assert VENUE.derive(venue_id) is None


@pytest.mark.parametrize("symbol", ["BTC/USDT:USDT-240927", "ETH/BTC:BTC", "BTCUSDT"])
def test_a_symbol_bitget_has_no_perpetual_for_cannot_be_named(symbol: str) -> None:
    with pytest.raises(FeedParseError):
        VENUE.venue_id(symbol)


# -- the simulated dialect -----------------------------------------------------------------------


def test_the_dialect_serves_the_v2_public_path_only() -> None:
    dialect = VENUE.dialect()
    endpoint = dialect.endpoint("/v2/ws/public")
    assert endpoint is not None and endpoint.route == "public" and endpoint.topics == ()
    assert dialect.endpoint("/v3/ws/public") is None and dialect.endpoint("/ws") is None


def test_the_dialect_acks_each_arg_and_refuses_what_does_not_exist() -> None:
    dialect = VENUE.dialect()
    good = [_arg("trade"), _arg("books1", "ETHUSDT", kind="usdt-futures")]
    bad = [_arg("ticker"), _arg("trade", "NOQUOTE"), _arg("trade", kind="COIN-FUTURES"), "x"]
    reply = dialect.on_message(orjson.dumps({"op": "subscribe", "args": good + bad}), ())
    assert reply.subscribe == ("USDT-FUTURES.trade.BTCUSDT", "USDT-FUTURES.books1.ETHUSDT")
    assert reply.request and not reply.keepalive
    acks = [orjson.loads(f) for f in reply.frames[:2]]
    assert acks == [{"event": "subscribe", "arg": arg} for arg in good]
    assert [VENUE.classify(f).kind for f in reply.frames] == [ACK, ACK] + [ERROR] * 4
    assert {orjson.loads(f)["code"] for f in reply.frames[2:]} == {30001}
    off = dialect.on_message(orjson.dumps({"op": "unsubscribe", "args": good[:1]}), ())
    assert off == Reply(
        (b'{"event":"unsubscribe","arg":{"instType":"USDT-FUTURES","channel":"trade",'
         b'"instId":"BTCUSDT"}}',),
        unsubscribe=("USDT-FUTURES.trade.BTCUSDT",), request=True,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (b"not json", 30016),
        (b"[1]", 30016),
        (b'{"op":"subscribe","args":[]}', 30016),
        (b'{"op":"subscribe","args":{"channel":"trade"}}', 30016),
        (b'{"op":"login","args":[]}', 30003),
        (b'{"args":[]}', 30003),
    ],
)
def test_the_dialect_answers_a_bad_request_with_the_venues_error(message: bytes, code: int) -> None:
    reply = VENUE.dialect().on_message(message, ())
    (frame,) = reply.frames
    answer = orjson.loads(frame)
    assert (answer["event"], answer["code"]) == ("error", code)
    assert reply.subscribe == () and not reply.keepalive and not reply.request


def test_the_dialect_answers_ping_with_pong_as_keepalive() -> None:
    assert VENUE.dialect().on_message(b"ping", ()) == Reply((b"pong",), keepalive=True)


# -- the feed against the simulated venue ------------------------------------------------------


def feed_for(sim: SimExchange, **config: Any) -> Feed:
    """A Bitget feed of :data:`MARKETS` pointed at ``sim``, with test-sized timeouts."""
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


def as_received(ticks: list[Tick]) -> list[Tick]:
    """The market's ticks as the feed delivers them: its label, no update id (v2 books carry
    none), receive time ignored."""
    return [t._replace(venue=LABEL, recv_ns=0, update_id=0) for t in ticks]


def key(tick: Tick) -> Tick:
    return tick._replace(recv_ns=0)


def simulate(ticks: list[Tick], **kwargs: Any) -> SimExchange:
    return SimExchange(iter(ticks), dialect=VENUE.dialect(), **kwargs)


def endless(seed: int, **kwargs: Any) -> SimExchange:
    market = SyntheticMarket(seed=seed, oracle_memory_s=None).ticks()
    return SimExchange(market, dialect=VENUE.dialect(), **kwargs)


@pytest.mark.parametrize("speed", [0.0, 40.0])
async def test_every_tick_of_the_market_arrives_once_and_in_order(speed: float) -> None:
    ticks = list(SyntheticMarket(seed=1).ticks(15.0))
    async with simulate(ticks, speed=speed, start_on_subscribe=True) as sim:
        feed = feed_for(sim)
        async with running(feed) as got:
            await until(lambda: len(got) >= len(ticks))
            await sim.wait_sent(5.0)
            paths = [c.path for c in sim.clients]
    assert [key(t) for t in got] == as_received(ticks)
    assert all(t.recv_ns > 0 for t in got)
    assert paths == ["/v2/ws/public"]
    assert feed.stats.connects == 1 and feed.stats.reconnects == 0
    assert feed.stats.acks == 2 * len(MARKETS), "one ack per arg"
    assert feed.parser.stats.rejected == {}
    assert feed.parser.stats.skipped == {base.SKIP_ACK: 2 * len(MARKETS)}


async def test_a_feed_that_pings_stays_connected_and_its_pongs_are_not_data() -> None:
    keepalive = SimKeepalive(client_silence_s=0.3)
    async with endless(2, speed=5.0, keepalive=keepalive) as sim:
        feed = feed_for(sim, ping_every_s=0.05, pong_timeout_s=0.5)
        async with running(feed) as got:
            await asyncio.sleep(1.0)
    assert sim.stats.keepalive_cuts == 0
    assert feed.stats.connects == 1 and feed.stats.reconnects == 0
    assert feed.stats.pings_sent >= 10 and feed.stats.keepalive_timeouts == 0
    assert feed.parser.stats.skipped[base.SKIP_KEEPALIVE] >= 10, "pongs came back"
    assert len(got) > 10


async def test_the_simulator_cuts_a_client_that_stops_pinging_and_the_feed_reconnects() -> None:
    keepalive = SimKeepalive(client_silence_s=0.3)
    async with endless(3, speed=5.0, keepalive=keepalive) as sim:
        feed = feed_for(sim, ping_every_s=60.0)
        async with running(feed) as got:
            await until(lambda: sim.stats.keepalive_cuts >= 2 and feed.stats.reconnects >= 2)
    assert feed.stats.pings_sent == 0 and got


async def test_after_a_drop_the_feed_resubscribes_and_skips_the_backfill_so_no_trade_repeats() -> (
    None
):
    ticks = list(SyntheticMarket(seed=4).ticks(60.0))
    expected = as_received(ticks)
    assert len(set(expected)) == len(expected)
    async with simulate(ticks, speed=40.0, faults=FaultConfig(drop_every_s=0.25)) as sim:
        feed = feed_for(sim, backoff_base_s=0.05)
        async with running(feed) as got:
            await until(lambda: feed.stats.reconnects >= 3)
            await sim.wait_sent(10.0)
    received = [key(t) for t in got]
    assert len(set(received)) == len(received), "no tick twice"
    position = {t: i for i, t in enumerate(expected)}
    order = [position[t] for t in received]
    assert order == sorted(order), "a subsequence of the market, in order"
    assert 0 < len(received) < len(expected)
    assert sim.stats.fault_drops >= 3 and feed.stats.errors >= 3
    backfills = feed.parser.stats.skipped[base.SKIP_BACKFILL]
    assert backfills >= feed.stats.connects - 1 >= 3, "each resubscription got its backfill"


async def test_a_silent_stream_trips_the_watchdog_and_recovers_when_data_returns() -> None:
    faults = FaultConfig(silent=True)
    async with endless(5, speed=20.0, faults=faults) as sim:
        feed = feed_for(sim, watchdog_s=0.2)
        async with running(feed) as got:
            await until(lambda: feed.stats.watchdog_trips >= 2)
            assert got == []
            faults.silent = False
            await until(lambda: len(got) > 20)
    assert feed.stats.reconnects >= 2


async def test_acks_are_not_data_so_an_ack_only_stream_trips_the_watchdog() -> None:
    async with endless(6, speed=20.0, faults=FaultConfig(ack_only=True)) as sim:
        feed = feed_for(sim, watchdog_s=0.2)
        async with running(feed) as got:
            await until(lambda: feed.stats.watchdog_trips >= 2)
    assert got == []
    assert feed.stats.acks >= 2 * 2 * len(MARKETS)


async def test_malformed_frames_are_counted_and_no_real_tick_is_lost() -> None:
    ticks = list(SyntheticMarket(seed=7).ticks(15.0))
    async with simulate(ticks, speed=0, faults=FaultConfig(malformed_every=20)) as sim:
        feed = feed_for(sim)
        async with running(feed) as got:
            await until(lambda: len(got) >= len(ticks))
            await sim.wait_sent(5.0)
            await asyncio.sleep(0.05)
    assert [key(t) for t in got] == as_received(ticks)
    stats = feed.parser.stats
    acks = stats.skipped[base.SKIP_ACK]
    assert stats.total_rejected + stats.total_skipped - acks == sim.stats.malformed_sent > 0
    assert feed.stats.frames == len(ticks) + sim.stats.malformed_sent


# -- ccxt.pro's own client against the simulated venue -----------------------------------------


def ccxt_client(url: str) -> ccxtpro.bitget:
    """ccxt.pro's Bitget client on ``url`` with offline markets and duplicate-dropping off (as
    tickcast's ccxt adapter does: ccxt drops trades whose ``tradeId`` repeats, and the venue's
    own docs repeat one)."""
    exchange = ccxtpro.bitget({"newUpdates": True})
    exchange.urls["api"]["ws"]["public"] = url
    exchange.options["watchTrades"]["ignoreDuplicates"] = False
    exchange.set_markets(ccxt_markets(MARKETS))
    return exchange


async def test_ccxt_pro_receives_the_simulated_trades_and_level1_books() -> None:
    ticks = list(SyntheticMarket(seed=8).ticks(60.0))
    trades_sent = [t for t in ticks if t.symbol == BTC and t.kind == TRADE]
    quotes_sent = [
        (t.event_ms, t.bid, t.bid_size, t.ask, t.ask_size)
        for t in ticks
        if t.symbol == BTC and t.kind == QUOTE
    ]
    # the market waits for both subscriptions, so ccxt sees it from its first tick
    async with simulate(ticks, speed=0, start_on_subscribe=True, min_streams=2) as sim:
        exchange = ccxt_client(sim.urls_for(VENUE)["public"])

        async def watch_trades() -> list[dict[str, Any]]:
            got: list[dict[str, Any]] = []
            while len(got) < 100:
                got += await exchange.watch_trades(BTC)
            return got

        async def watch_books() -> list[tuple[int, float, float, float, float]]:
            seen: list[tuple[int, float, float, float, float]] = []
            while len(seen) < 20:
                book = await exchange.watch_order_book(BTC, 1)  # books1, as tickcast's feed
                (bid, bid_size), (ask, ask_size) = book["bids"][0], book["asks"][0]
                seen.append((book["timestamp"], bid, bid_size, ask, ask_size))
            return seen

        try:
            async with asyncio.timeout(10.0):
                trades, books = await asyncio.gather(watch_trades(), watch_books())
        finally:
            await exchange.close()
    # ccxt applies no contract size to Bitget (every contract is 1 coin): amounts are base
    # units, as the venue sends them and as tickcast's ticks carry them.
    assert [
        (t["symbol"], t["timestamp"], t["price"], t["amount"], t["side"], t["id"]) for t in trades
    ] == [
        (BTC, t.event_ms, t.price, t.size, "buy" if t.side == 1 else "sell", t.trade_id)
        for t in trades_sent[: len(trades)]
    ]
    # ccxt hands out the latest book when its caller comes back: some books are passed over,
    # but each one it shows is one the simulator sent, in the order sent
    position = {q: i for i, q in enumerate(quotes_sent)}
    order = [position[b] for b in books]
    assert order == sorted(order) and len(set(order)) == len(order)
