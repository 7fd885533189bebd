"""Binance COIN-M: inverse contracts sized in USD, the USDⓈ-M frame layout, its own simulator
dialect (unrouted), recordings that backtests read, and ccxt.pro's client against it."""

from __future__ import annotations

import asyncio
import gzip
import json
import math
from pathlib import Path

import ccxt.pro as ccxtpro
import numpy as np
import orjson
import pytest

from tickcast.service.cli import main
from tickcast.service.feed.shell import Feed, FeedConfig
from tickcast.service.offline.readers import read_ticks
from tickcast.service.sim.market import SyntheticMarket
from tickcast.service.sim.server import SimExchange
from tickcast.service.sim.symbols import specs_for
from tickcast.service.ticks import QUOTE, TRADE, Tick
from tickcast.service.venues import base
from tickcast.service.venues.binance.coinm import VENUE as COINM
from tickcast.service.venues.binance.dialect import MarketRenderer, combined_frame
from tickcast.service.venues.binance.streams import coinm_id, coinm_unified
from tickcast.service.venues.binance.usdm import VENUE as USDM
from tickcast.service.venues.markets import ccxt_markets

from support import running, until

BTC, ETH = "BTC/USD:BTC", "ETH/USD:ETH"
SYMBOLS = [BTC, ETH]


def close(a: Tick, b: Tick) -> bool:
    """Equal but for recv_ns, sizes to 1e-12 relative (contract conversion rounds)."""
    sizes = ("size", "bid_size", "ask_size")
    same = a._replace(recv_ns=0, size=0.0, bid_size=0.0, ask_size=0.0) == b._replace(
        recv_ns=0, size=0.0, bid_size=0.0, ask_size=0.0
    )
    return same and all(math.isclose(getattr(a, s), getattr(b, s), rel_tol=1e-12) for s in sizes)


def market_ticks(seconds: float, seed: int = 1) -> list[Tick]:
    return list(
        SyntheticMarket(specs_for(SYMBOLS), seed=seed, venue="sim-binancecoinm").ticks(seconds)
    )


# -- ids and sizes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("venue_id", "unified"),
    [("BTCUSD_PERP", BTC), ("ETHUSD_PERP", ETH), ("BTCUSD_250926", "BTC/USD:BTC-250926")],
)
def test_coin_m_ids_and_unified_symbols_map_both_ways(venue_id: str, unified: str) -> None:
    assert coinm_unified(venue_id) == unified
    assert coinm_id(unified) == venue_id


def test_contracts_are_worth_100_usd_for_bitcoin_and_10_usd_for_the_other_coins() -> None:
    btc, eth = COINM.market(BTC), COINM.market(ETH)
    assert (btc.venue_id, btc.contract_size, btc.linear) == ("BTCUSD_PERP", 100.0, False)
    assert (eth.contract_size, eth.linear) == (10.0, False)
    unlisted = COINM.derive("FOOUSD_PERP")
    assert unlisted is not None and (unlisted.symbol, unlisted.contract_size) == (
        "FOO/USD:FOO",
        10.0,
    )
    assert COINM.derive("BTCUSDT") is None and USDM.derive("BTCUSD_PERP") is None


def test_a_trade_in_contracts_becomes_a_trade_in_coins_at_its_price() -> None:
    frame = {
        "stream": "btcusd_perp@trade",
        "data": {"e": "trade", "E": 1723161256322, "T": 1723161256321, "s": "BTCUSD_PERP",
                 "t": 815592351, "p": "60000.0", "q": "3", "X": "MARKET", "m": False},
    }  # fmt: skip
    parser = COINM.parser()
    (tick,) = parser.parse(orjson.dumps(frame), 7)
    assert tick == Tick(
        "binancecoinm", BTC, TRADE, 1723161256321, 7, 60000.0, 0.005, 1, "815592351"
    )


def test_book_sizes_are_converted_at_their_own_side_price() -> None:
    frame = {
        "stream": "ethusd_perp@bookTicker",
        "data": {"e": "bookTicker", "u": 91, "s": "ETHUSD_PERP", "b": "2500.00", "B": "250",
                 "a": "2500.50", "A": "5001", "T": 1723161256313, "E": 1723161256314},
    }  # fmt: skip
    (tick,) = COINM.parser().parse(orjson.dumps(frame), 0)
    assert tick.kind == QUOTE and (tick.bid, tick.ask) == (2500.0, 2500.5)
    assert tick.bid_size == pytest.approx(1.0) and tick.ask_size == pytest.approx(20.0)


def test_frames_of_a_coin_m_id_are_rejected_by_a_usd_m_parser_and_the_reverse() -> None:
    trade = b'{"e":"trade","T":1,"s":"BTCUSD_PERP","t":1,"p":"1","q":"1","m":true}'
    parser = USDM.parser()
    assert parser.parse(trade, 0) == [] and parser.stats.rejected == {base.REJECT_SYMBOL: 1}
    assert COINM.recognises(trade) and not USDM.recognises(trade)


def test_rendered_coin_m_frames_parse_back_into_the_same_ticks() -> None:
    ticks = market_ticks(20.0)
    render = MarketRenderer(COINM.assumed_market)
    wanted = {f"{coinm_id(s).lower()}@{c}" for s in SYMBOLS for c in ("trade", "bookTicker")}
    parser = COINM.parser(label="sim-binancecoinm")
    back = []
    for tick in ticks:
        for _, event in render.events(tick, wanted):
            back += parser.parse(event, tick.recv_ns)
    assert len(back) == len(ticks) > 100
    assert all(close(a, b) for a, b in zip(back, ticks, strict=True))


# -- recordings -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def coinm_recording(tmp_path_factory: pytest.TempPathFactory, binance_recording: Path) -> Path:
    """The first 6,000 lines of the real USDⓈ-M BTCUSDT traffic, as BTCUSD_PERP would have
    sent it: ``<ns> <json>`` combined-stream frames, quantities in 100-USD contracts."""
    ticks: list[Tick] = []
    parser = USDM.parser()
    with gzip.open(binance_recording, "rb") as fh:
        for i, line in enumerate(fh):
            if i == 6_000:
                break
            ns, _, frame = line.partition(b" ")
            ticks += [t._replace(symbol=BTC) for t in parser.parse(frame, int(ns))]
    path = tmp_path_factory.mktemp("coinm") / "btcusd_perp.gz"
    render = MarketRenderer(COINM.assumed_market)
    wanted = {"btcusd_perp@trade", "btcusd_perp@bookTicker"}
    with gzip.open(path, "wb") as out:
        for tick in ticks:
            for stream, event in render.events(tick, wanted):
                out.write(b"%d %b\n" % (tick.recv_ns, combined_frame(stream.encode(), event)))
    return path


def test_a_coin_m_recording_reads_as_coin_m_ticks_in_coins(coinm_recording: Path) -> None:
    stats = base.ParseStats()
    ticks = list(read_ticks([coinm_recording], stats=stats))
    assert len(ticks) > 5_000 and stats.total_rejected == 0
    assert {(t.venue, t.symbol) for t in ticks} == {("binancecoinm", BTC)}
    trades = [t for t in ticks if t.kind == TRADE]
    assert trades and all(0.0 < t.size < 50.0 for t in trades), "coins, not contracts"


def test_tickcast_backtest_reads_a_coin_m_recording_like_a_usd_m_one(
    coinm_recording: Path, tmp_path: Path
) -> None:
    out = tmp_path / "coinm.json"
    assert main(["backtest", str(coinm_recording), "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert list(figures["symbols"]) == [BTC]
    assert figures["overall"]["n_ticks"] > 5_000 and figures["overall"]["n_samples"] > 100


# -- the feed and ccxt.pro against the simulated COIN-M ---------------------------------------


async def test_the_feed_reads_every_tick_from_the_unrouted_simulated_coin_m() -> None:
    ticks = market_ticks(15.0, seed=2)
    async with SimExchange(iter(ticks), dialect=COINM.dialect(), speed=0) as sim:
        urls = sim.urls_for(COINM)
        assert urls == {"public": sim.url}, "COIN-M serves every stream on one base URL"
        markets = [COINM.market(s) for s in SYMBOLS]
        config = FeedConfig(backoff_base_s=0.02, backoff_cap_s=0.1)
        feed = Feed(
            COINM, markets, urls, config, label="sim-binancecoinm", rng=np.random.default_rng(0)
        )
        async with running(feed) as got:
            await until(lambda: len(got) >= len(ticks))
            paths = [c.path.split("?")[0] for c in sim.clients]
    assert paths == ["/stream"]
    assert len(got) == len(ticks)
    assert all(close(a, b) for a, b in zip(got, ticks, strict=True))
    assert feed.stats.gaps == feed.stats.duplicate_trades == 0


async def test_ccxt_pro_binancecoinm_receives_the_simulated_trades_in_contracts() -> None:
    ticks = [t for t in market_ticks(30.0, seed=3) if t.symbol == BTC]
    async with SimExchange(iter(ticks), dialect=COINM.dialect(), speed=20.0) as sim:
        exchange = ccxtpro.binancecoinm()
        exchange.urls["api"]["ws"]["inverse"] = sim.url + "/ws"
        exchange.set_markets(ccxt_markets([COINM.market(BTC)]))
        try:
            trades = await asyncio.wait_for(exchange.watch_trades(BTC), 10.0)
            book = await asyncio.wait_for(exchange.watch_bids_asks([BTC]), 10.0)
        finally:
            await exchange.close()
    sent = {t.trade_id: t for t in ticks if t.kind == TRADE}
    for trade in trades:
        tick = sent[trade["id"]]
        assert (trade["price"], trade["timestamp"]) == (tick.price, tick.event_ms)
        assert trade["side"] == ("buy" if tick.side == 1 else "sell")
        # ccxt leaves COIN-M amounts in contracts: tickcast converts, ccxt does not
        assert trade["amount"] == pytest.approx(tick.size * tick.price / 100.0)
    quote = book[BTC]
    assert any((quote["bid"], quote["ask"]) == (t.bid, t.ask) for t in ticks if t.kind == QUOTE)
