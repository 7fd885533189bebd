"""``ccxt:<id>``: any venue through ccxt.pro's own client, mapped to the same ticks — here
pointed at the simulated exchange, whose ticks are known."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import ccxt.pro as ccxtpro
import pytest

from tickcast.service.feed.ccxtfeed import CcxtFeed, CcxtTicks, ccxt_client, ccxt_markets_of
from tickcast.service.feed.shell import FeedConfig
from tickcast.service.sim.faults import FaultConfig
from tickcast.service.sim.market import SyntheticMarket
from tickcast.service.sim.server import SimExchange
from tickcast.service.sim.symbols import specs_for
from tickcast.service.ticks import QUOTE, TRADE, Tick
from tickcast.service.venues import base
from tickcast.service.venues.binance.coinm import VENUE as COINM
from tickcast.service.venues.binance.usdm import VENUE as USDM
from tickcast.service.venues.bingx import VENUE as BINGX
from tickcast.service.venues.markets import MarketError
from tickcast.service.venues.okx import VENUE as OKX
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


async def test_every_identical_id_less_trade_arrives_through_ccxt_on_bingx(
    samples_dir: Path,
) -> None:
    eth = "ETH/USDT:USDT"
    frame = (samples_dir / "bingx-swap" / "trade.json").read_bytes()
    recorded = BINGX.parser(label="sim-bingx").parse(frame, 0)
    assert len(recorded) == 23 and len(set(recorded)) < 23, "identical trades in the sample"
    last = recorded[-1]
    closing = Tick("sim-bingx", eth, TRADE, last.event_ms + 1000, 0, 2990.0, 1.0, 1)
    # ccxt hands over what arrived since its last call only when the next frame comes: the
    # market goes on after the closing trade, as a live one does
    after = [
        Tick("sim-bingx", eth, QUOTE, closing.event_ms + 100 * i, 0, bid=2989.99, bid_size=1.0,
             ask=2990.01, ask_size=1.0, update_id=i)
        for i in range(1, 200)
    ]  # fmt: skip
    markets = [BINGX.market(eth)]
    market = iter([*recorded, closing, *after])
    async with SimExchange(
        market, dialect=BINGX.dialect(), speed=10.0, min_streams=2, start_on_subscribe=True
    ) as sim:
        client = ccxt_client("bingx", markets)
        client.urls["api"]["ws"]["linear"] = sim.url + "/swap-market"
        feed = CcxtFeed(source("ccxt:bingx"), markets, exchange=client)
        assert set(feed.routes) == {f"trades {eth}", f"quotes {eth}"}, "one loop per symbol"
        async with running(feed) as got:
            await until(lambda: any(t.event_ms == closing.event_ms for t in got))
    trades = [t._replace(venue="", recv_ns=0) for t in got if t.event_ms < closing.event_ms]
    assert sorted(trades) == sorted(t._replace(venue="", recv_ns=0) for t in recorded)


async def test_okx_contracts_from_ccxt_become_base_units() -> None:
    ticks = list(SyntheticMarket(specs_for(SYMBOLS), seed=6, oracle_memory_s=None).ticks(30.0))
    markets = [OKX.market(s) for s in SYMBOLS]
    assert {m.contract_size for m in markets} == {0.01, 0.1}
    async with SimExchange(iter(ticks), dialect=OKX.dialect(), speed=10.0) as sim:
        client = ccxt_client("okx", markets)
        client.urls["api"]["ws"] = sim.url + "/ws/v5"  # ccxt appends /public
        feed = CcxtFeed(source("ccxt:okx"), markets, exchange=client)
        async with running(feed) as got:
            await until(lambda: sum(t.kind == TRADE for t in got) >= 30)
    sent = {(t.symbol, t.trade_id): t for t in ticks if t.kind == TRADE}
    for tick in (t for t in got if t.kind == TRADE):
        assert tick.size == pytest.approx(sent[tick.symbol, tick.trade_id].size, rel=1e-9)


async def test_a_silent_venue_trips_the_watchdog_and_ccxt_reconnects_when_data_returns() -> None:
    faults = FaultConfig(silent=True)
    market = SyntheticMarket(specs_for(SYMBOLS), seed=7, oracle_memory_s=None).ticks()
    markets = [USDM.market(s) for s in SYMBOLS]
    async with SimExchange(market, speed=10.0, faults=faults) as sim:
        client = ccxt_client("binanceusdm", markets)
        client.urls["api"]["ws"]["linear"] = sim.url + "/ws"
        config = FeedConfig(watchdog_s=0.4, backoff_base_s=0.02, backoff_cap_s=0.1)
        feed = CcxtFeed(source("ccxt:binanceusdm"), markets, config, exchange=client)
        async with running(feed) as got:
            await until(lambda: feed.stats.watchdog_trips >= 2)
            assert got == []
            faults.silent = False
            await until(lambda: sum(t.kind == TRADE for t in got) > 10)
    assert feed.stats.reconnects >= 2 and sim.stats.connections >= 3
