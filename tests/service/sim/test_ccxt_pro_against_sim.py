"""A third-party client, ccxt.pro's ``binanceusdm``, works against the simulated exchange.

The client is pointed at the simulator by overriding its websocket URL and given its markets
offline (no REST call); it then connects to the routed endpoints itself (``/public/ws/<n>`` for
trades and book tickers, ``/market/ws/<n>`` for mark prices) and subscribes by message — so
these tests check that the simulator speaks the venue's real protocol, not just our own client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import ccxt.pro as ccxtpro
import pytest

from tickcast.service.sim.market import SyntheticMarket
from tickcast.service.sim.server import SimExchange
from tickcast.service.venues.binance.usdm import VENUE
from tickcast.service.venues.markets import ccxt_markets

SYMBOLS = ["BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"]


@pytest.fixture
async def sim() -> AsyncIterator[SimExchange]:
    market = SyntheticMarket(seed=21, oracle_memory_s=None).ticks()
    async with SimExchange(market, speed=10.0) as exchange:
        yield exchange


def client_for(ws_base: str) -> ccxtpro.binanceusdm:
    exchange = ccxtpro.binanceusdm()
    exchange.urls["api"]["ws"]["linear"] = ws_base
    exchange.set_markets(ccxt_markets([VENUE.market(s) for s in SYMBOLS]))
    return exchange


async def test_ccxt_pro_receives_trades_from_the_routed_public_endpoint(sim: SimExchange) -> None:
    exchange = client_for(sim.url + "/ws")
    try:
        trades = await asyncio.wait_for(exchange.watch_trades("BTC/USDT:USDT"), 10.0)
        more = await asyncio.wait_for(exchange.watch_trades("ETH/USDT:USDT"), 10.0)
        paths = [c.path for c in sim.clients]
    finally:
        await exchange.close()
    assert trades and more
    first = trades[-1]
    assert first["symbol"] == "BTC/USDT:USDT"
    assert first["side"] in ("buy", "sell")
    assert first["price"] > 1000.0 and first["amount"] > 0.0
    assert int(first["id"]) >= 1
    assert more[-1]["symbol"] == "ETH/USDT:USDT"
    assert paths and all(p.startswith("/public/ws/") for p in paths)


async def test_ccxt_pro_receives_bids_and_asks_for_several_symbols(sim: SimExchange) -> None:
    exchange = client_for(sim.url + "/ws")
    try:
        seen: dict[str, dict[str, object]] = {}
        async with asyncio.timeout(10.0):
            while len(seen) < len(SYMBOLS):
                seen.update(await exchange.watch_bids_asks(SYMBOLS))
    finally:
        await exchange.close()
    for symbol in SYMBOLS:
        book = seen[symbol]
        bid, ask = book["bid"], book["ask"]
        assert isinstance(bid, float) and isinstance(ask, float)
        assert 0.0 < bid < ask
        assert book["bidVolume"] and book["askVolume"]


async def test_ccxt_pro_receives_mark_prices_from_the_market_route(sim: SimExchange) -> None:
    exchange = client_for(sim.url + "/ws")
    try:
        mark = await asyncio.wait_for(exchange.watch_mark_price("SOL/USDT:USDT"), 10.0)
        paths = [c.path for c in sim.clients]
    finally:
        await exchange.close()
    assert mark["symbol"] == "SOL/USDT:USDT"
    assert mark["markPrice"] > 0.0
    assert paths and all(p.startswith("/market/ws/") for p in paths)


async def test_a_client_on_the_old_unrouted_url_is_acknowledged_and_then_starves(
    sim: SimExchange,
) -> None:
    exchange = client_for(sim.url + "/ws/")  # not ending in "/ws": ccxt does not add a route
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(exchange.watch_trades("BTC/USDT:USDT"), 0.5)
        clients = sim.clients
    finally:
        await exchange.close()
    assert sim.stats.subscribe_requests == 1
    assert [(c.path, c.streams, c.frames_sent) for c in clients] == [
        ("/ws//0", ("btcusdt@trade",), 0)
    ]
