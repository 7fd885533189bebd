"""Binance COIN-M futures (``dstream``): inverse perpetuals quoted in USD, settled in the coin.

One unrouted base URL (``wss://dstream.binance.com``) serves every stream, with the USDⓈ-M frame
layout (``btcusd_perp@trade``, ``btcusd_perp@bookTicker``). Quantities are contracts of a fixed
USD value — 100 USD for BTC, 10 USD for the other coins — converted to base units at the tick's
price (a 3-contract BTC trade at 60,000 is 0.005 BTC).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import ClassVar

from tickcast.service.venues.base import FeedParseError
from tickcast.service.venues.binance.futures import BinanceFutures
from tickcast.service.venues.binance.streams import PUBLIC, coinm_id, coinm_unified
from tickcast.service.venues.markets import MarketError, MarketInfo, derived_market, market_table

#: USD value of one contract of the coins not in :data:`MARKETS`.
DEFAULT_CONTRACT_USD = 10.0

#: The main COIN-M perpetuals: unified symbol, id, contract size (USD), price tick.
MARKETS = """
    BTC/USD:BTC   BTCUSD_PERP   100  0.1
    ETH/USD:ETH   ETHUSD_PERP   10   0.01
    BNB/USD:BNB   BNBUSD_PERP   10   0.01
    SOL/USD:SOL   SOLUSD_PERP   10   0.01
    XRP/USD:XRP   XRPUSD_PERP   10   0.0001
    DOGE/USD:DOGE DOGEUSD_PERP  10   0.00001
    ADA/USD:ADA   ADAUSD_PERP   10   0.0001
    LINK/USD:LINK LINKUSD_PERP  10   0.001
    LTC/USD:LTC   LTCUSD_PERP   10   0.01
    DOT/USD:DOT   DOTUSD_PERP   10   0.001
    BCH/USD:BCH   BCHUSD_PERP   10   0.01
    AVAX/USD:AVAX AVAXUSD_PERP  10   0.001
    ETC/USD:ETC   ETCUSD_PERP   10   0.001
    TRX/USD:TRX   TRXUSD_PERP   10   0.00001
"""


class BinanceCoinm(BinanceFutures):
    """Binance COIN-M futures."""

    name = "binancecoinm"
    title = "Binance COIN-M"
    ccxt_id = "binancecoinm"
    routed = False
    routes: ClassVar[Mapping[str, str]] = {PUBLIC: "wss://dstream.binance.com"}

    def markets(self) -> Mapping[str, MarketInfo]:
        """The shipped table (:data:`MARKETS`)."""
        return _table()

    def venue_id(self, symbol: str) -> str:
        """``BTC/USD:BTC`` -> ``BTCUSD_PERP`` (see :func:`.streams.coinm_id`)."""
        return coinm_id(symbol)

    def derive(self, venue_id: str) -> MarketInfo | None:
        """Any COIN-M id, by the naming rule (10 USD contracts unless in the table)."""
        try:
            symbol = coinm_unified(venue_id)
        except FeedParseError:
            return None
        return self.markets().get(symbol) or derived_market(symbol, venue_id, DEFAULT_CONTRACT_USD)

    def assumed_market(self, symbol: str) -> MarketInfo:
        """The table's entry, else an inverse market of :data:`DEFAULT_CONTRACT_USD` contracts."""
        known = self.markets().get(symbol)
        if known is not None:
            return known
        try:
            return derived_market(symbol, self.venue_id(symbol), DEFAULT_CONTRACT_USD)
        except FeedParseError as exc:
            raise MarketError(str(exc)) from exc


@cache
def _table() -> dict[str, MarketInfo]:
    return market_table(MARKETS)


VENUE = BinanceCoinm()
