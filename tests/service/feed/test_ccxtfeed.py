"""``ccxt:<id>``: any venue through ccxt.pro's own client, mapped to the same ticks — here
pointed at the simulated exchange, whose ticks are known."""

from __future__ import annotations

import math
from typing import Any

import ccxt.pro as ccxtpro
import pytest

from tickcast.service.feed.ccxtfeed import CcxtFeed, CcxtTicks, ccxt_client, ccxt_markets_of
from tickcast.service.feed.shell import FeedConfig
from tickcast.service.sim.market import SyntheticMarket
from tickcast.service.sim.server import SimExchange
from tickcast.service.sim.symbols import specs_for
from tickcast.service.ticks import QUOTE, TRADE, Tick
from tickcast.service.venues import base
from tickcast.service.venues.binance.coinm import VENUE as COINM
from tickcast.service.venues.binance.usdm import VENUE as USDM
from tickcast.service.venues.markets import MarketError
from tickcast.service.venues.registry import source

from support import running, until

SYMBOLS = ["BTC/USDT:USDT", "ETH/USDT:USDT"]


def fields(tick: Tick) -> tuple[Any, ...]:
    return (tick.symbol, tick.kind, tick.event_ms, tick.price, tick.side, tick.trade_id,
            tick.bid, tick.ask)  # fmt: skip


async def test_ccxt_trades_and_best_bid_ask_become_the_simulators_ticks() -> None:
    ticks = list(SyntheticMarket(specs_for(SYMBOLS), seed=4, oracle_memory_s=None).ticks(40.0))
    markets = [USDM.market(s) for s in SYMBOLS]
    async with SimExchange(iter(ticks), speed=10.0) as sim:
        client = ccxt_client("binanceusdm", markets)
        client.urls["api"]["ws"]["linear"] = sim.url + "/ws"
        feed = CcxtFeed(source("ccxt:binanceusdm"), markets, FeedConfig(), exchange=client)
        assert set(feed.routes) == {"trades", "quotes"}, "one loop for all symbols each"
        async with running(feed) as got:
            await until(lambda: sum(t.kind == TRADE for t in got) >= 60)
    sent = {fields(t): t for t in ticks}
    assert {t.venue for t in got} == {"binanceusdm"}
    for tick in got:
        match = sent[fields(tick)]  # every tick is one the simulator sent...
        assert math.isclose(tick.size + tick.bid_size, match.size + match.bid_size)
    trades = [t for t in got if t.kind == TRADE]
    ids = [(t.symbol, int(t.trade_id)) for t in trades]
    assert len(ids) == len(set(ids)), "...and no trade twice"
    for symbol in SYMBOLS:
        mine = [i for s, i in ids if s == symbol]
        assert mine == list(range(mine[0], mine[0] + len(mine))), "none missed, in order"
    assert any(t.kind == QUOTE for t in got)
    assert feed.stats.connects == 2 and feed.parser.stats.total_rejected == 0


async def test_ccxt_sizes_in_contracts_are_converted_to_base_units() -> None:
    symbol = "BTC/USD:BTC"
    ticks = list(SyntheticMarket(specs_for([symbol]), seed=5, oracle_memory_s=None).ticks(30.0))
    markets = [COINM.market(symbol)]
    async with SimExchange(iter(ticks), dialect=COINM.dialect(), speed=10.0) as sim:
        client = ccxt_client("binancecoinm", markets)
        client.urls["api"]["ws"]["inverse"] = sim.url + "/ws"
        feed = CcxtFeed(source("ccxt:binancecoinm"), markets, exchange=client)
        async with running(feed) as got:
            await until(lambda: sum(t.kind == TRADE for t in got) >= 20)
    sent = {t.trade_id: t for t in ticks if t.kind == TRADE}
    for tick in (t for t in got if t.kind == TRADE):
        assert tick.size == pytest.approx(sent[tick.trade_id].size, rel=1e-12)


def test_bad_ccxt_structures_are_counted_never_raised() -> None:
    convert = CcxtTicks("kraken", [USDM.market("BTC/USDT:USDT")])
    good = {"symbol": "BTC/USDT:USDT", "price": 100.0, "amount": 2.0, "timestamp": 5,
            "side": "sell", "id": None}  # fmt: skip
    assert convert.from_trade(good, 1) == [
        Tick("kraken", "BTC/USDT:USDT", TRADE, 5, 1, 100.0, 2.0, -1, "")
    ]
    assert convert.from_trade({**good, "symbol": "XRP/USDT:USDT"}, 1) == []
    assert convert.from_trade({**good, "side": None}, 1) == []
    assert convert.from_trade({**good, "price": float("nan")}, 1) == []
    book = {"symbol": "BTC/USDT:USDT", "bids": [[99.0, 1.0]], "asks": [], "timestamp": 5}
    assert convert.from_quote(book, 1) == []
    assert convert.stats.rejected == {
        base.REJECT_SYMBOL: 1, base.REJECT_MISSING: 2, "non-finite value": 1,
    }  # fmt: skip


async def test_a_ccxt_venue_needs_its_market_list_online() -> None:
    with pytest.raises(MarketError, match="cannot run offline"):
        await ccxt_markets_of(source("ccxt:kraken"), ["BTC/USD:BTC"], online=False)


def test_ccxts_duplicate_dropping_is_turned_off() -> None:
    client = ccxt_client("bingx", [USDM.market("BTC/USDT:USDT")])
    assert isinstance(client, ccxtpro.bingx)
    assert client.options["watchTrades"]["ignoreDuplicates"] is False
    assert client.handle_option("watchTrades", "ignoreDuplicates", True) is False
