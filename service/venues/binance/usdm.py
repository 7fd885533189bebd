"""Binance USDⓈ-M futures (``fstream``): linear perpetuals quoted and settled in USDT or USDC.

Routed since 2026-04-23: ``wss://fstream.binance.com/public`` carries ``trade`` and
``bookTicker``, ``wss://fstream.binance.com/market`` carries ``aggTrade`` and ``markPrice``; the
unrouted URL acknowledges a subscription and then stays silent. Sizes are base units (contract
size 1). See :mod:`.futures` for what both Binance venues share.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import ClassVar

from tickcast.service.venues.base import FeedParseError
from tickcast.service.venues.binance.futures import BinanceFutures
from tickcast.service.venues.binance.streams import MARKET, PUBLIC, usdm_id, usdm_unified
from tickcast.service.venues.markets import MarketInfo, derived_market, market_table

#: The main USDⓈ-M perpetuals: unified symbol, id, contract size (base units), price tick.
MARKETS = """
    BTC/USDT:USDT       BTCUSDT       1  0.1
    ETH/USDT:USDT       ETHUSDT       1  0.01
    SOL/USDT:USDT       SOLUSDT       1  0.01
    BNB/USDT:USDT       BNBUSDT       1  0.01
    XRP/USDT:USDT       XRPUSDT       1  0.0001
    DOGE/USDT:USDT      DOGEUSDT      1  0.00001
    ADA/USDT:USDT       ADAUSDT       1  0.0001
    AVAX/USDT:USDT      AVAXUSDT      1  0.001
    LINK/USDT:USDT      LINKUSDT      1  0.001
    LTC/USDT:USDT       LTCUSDT       1  0.01
    DOT/USDT:USDT       DOTUSDT       1  0.001
    TRX/USDT:USDT       TRXUSDT       1  0.00001
    BCH/USDT:USDT       BCHUSDT       1  0.01
    SUI/USDT:USDT       SUIUSDT       1  0.0001
    TON/USDT:USDT       TONUSDT       1  0.0001
    NEAR/USDT:USDT      NEARUSDT      1  0.001
    APT/USDT:USDT       APTUSDT       1  0.0001
    ARB/USDT:USDT       ARBUSDT       1  0.0001
    OP/USDT:USDT        OPUSDT        1  0.0001
    ETC/USDT:USDT       ETCUSDT       1  0.001
    1000PEPE/USDT:USDT  1000PEPEUSDT  1  0.0000001
    1000SHIB/USDT:USDT  1000SHIBUSDT  1  0.000001
    BTC/USDC:USDC       BTCUSDC       1  0.1
    ETH/USDC:USDC       ETHUSDC       1  0.01
    SOL/USDC:USDC       SOLUSDC       1  0.01
"""


class BinanceUsdm(BinanceFutures):
    """Binance USDⓈ-M futures."""

    name = "binanceusdm"
    title = "Binance USDⓈ-M"
    ccxt_id = "binanceusdm"
    routes: ClassVar[Mapping[str, str]] = {
        PUBLIC: "wss://fstream.binance.com/public",
        MARKET: "wss://fstream.binance.com/market",
    }

    def markets(self) -> Mapping[str, MarketInfo]:
        """The shipped table (:data:`MARKETS`)."""
        return _table()

    def venue_id(self, symbol: str) -> str:
        """``BTC/USDT:USDT`` -> ``BTCUSDT`` (see :func:`.streams.usdm_id`)."""
        return usdm_id(symbol)

    def derive(self, venue_id: str) -> MarketInfo | None:
        """Any USDⓈ-M id, by the naming rule (contract size 1)."""
        try:
            symbol = usdm_unified(venue_id)
        except FeedParseError:
            return None
        return self.markets().get(symbol) or derived_market(symbol, venue_id)


@cache
def _table() -> dict[str, MarketInfo]:
    return market_table(MARKETS)


VENUE = BinanceUsdm()
