"""Binance futures stream names, routes and symbol ids (USDⓈ-M and COIN-M).

Since 2026-04-23 USDⓈ-M serves ``trade``, ``bookTicker`` and ``depth`` streams under
``/public`` and ``aggTrade``, ``markPrice``, ``kline`` and tickers under ``/market``; COIN-M
(``dstream``) is not routed: one base URL serves every stream. The feed opens one connection per
route it needs; the simulated exchange serves each stream where the venue does.

Ids: USDⓈ-M ``BTCUSDT`` is ``BTC/USDT:USDT`` (dated: ``ETHUSDT_240927``); COIN-M ``BTCUSD_PERP``
is the inverse perpetual ``BTC/USD:BTC`` (dated: ``BTCUSD_240927``).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

from tickcast.service.venues.base import FeedParseError, join_unified, split_unified

PUBLIC: Final = "public"
MARKET: Final = "market"

#: Route of each USDⓈ-M channel (the part of a stream name after the first ``@``).
CHANNEL_ROUTE: Final[dict[str, str]] = {
    "trade": PUBLIC,
    "bookTicker": PUBLIC,
    "depth": PUBLIC,
    "depth5": PUBLIC,
    "depth10": PUBLIC,
    "depth20": PUBLIC,
    "aggTrade": MARKET,
    "markPrice": MARKET,
    "kline_1m": MARKET,
    "ticker": MARKET,
    "miniTicker": MARKET,
}

#: Quote assets recognised when deriving a USDⓈ-M unified symbol, longest first.
QUOTE_ASSETS: Final = ("FDUSD", "USDT", "USDC", "BUSD", "BTC")

_STREAM_RE = re.compile(r"^([a-z0-9_]+)@([A-Za-z0-9_]+)(@[A-Za-z0-9]+)?$")
_USDM_ID = re.compile(r"^([A-Z0-9]+?)(?:_(\d{6}))?$")
_COINM_ID = re.compile(r"^([A-Z0-9]+?)USD_(PERP|\d{6})$")


def stream_route(stream: str) -> str | None:
    """USDⓈ-M route (:data:`PUBLIC` / :data:`MARKET`) that serves ``stream``; None if not a
    stream.

    Examples
    --------
    >>> stream_route("btcusdt@trade"), stream_route("btcusdt@markPrice@1s"), stream_route("0")
    ('public', 'market', None)
    """
    match = _STREAM_RE.match(stream)
    if match is None:
        return None
    channel = match.group(2)
    if channel.startswith("kline_"):
        return MARKET
    return CHANNEL_ROUTE.get(channel)


def usdm_unified(venue_id: str) -> str:
    """The ccxt unified symbol of a USDⓈ-M id, by the venue's naming rule.

    Perpetuals quoted in USDT, USDC, FDUSD or BUSD settle in their quote asset; a ``_YYMMDD``
    suffix marks a dated future.

    Raises
    ------
    FeedParseError
        When no known quote asset ends ``venue_id``.

    Examples
    --------
    >>> usdm_unified("BTCUSDT"), usdm_unified("1000PEPEUSDC"), usdm_unified("ETHUSDT_240927")
    ('BTC/USDT:USDT', '1000PEPE/USDC:USDC', 'ETH/USDT:USDT-240927')
    """
    match = _USDM_ID.match(venue_id)
    if match is not None:
        pair, expiry = match.group(1), match.group(2) or ""
        for quote in QUOTE_ASSETS:
            if pair.endswith(quote) and len(pair) > len(quote):
                return join_unified(pair[: -len(quote)], quote, quote, expiry)
    raise FeedParseError(f"cannot derive a unified symbol from Binance id {venue_id!r}")


@lru_cache(maxsize=1024)
def usdm_id(unified: str) -> str:
    """The USDⓈ-M id of a ccxt unified symbol.

    Examples
    --------
    >>> usdm_id("BTC/USDT:USDT"), usdm_id("ETH/USDT:USDT-240927")
    ('BTCUSDT', 'ETHUSDT_240927')
    """
    parts = split_unified(unified)
    venue_id = f"{parts.base}{parts.quote}"
    return f"{venue_id}_{parts.expiry}" if parts.expiry else venue_id


def coinm_unified(venue_id: str) -> str:
    """The ccxt unified symbol of a COIN-M id: inverse, quoted in USD, settled in the base.

    Raises
    ------
    FeedParseError
        When ``venue_id`` is not ``<BASE>USD_PERP`` or ``<BASE>USD_<YYMMDD>``.

    Examples
    --------
    >>> coinm_unified("BTCUSD_PERP"), coinm_unified("ETHUSD_240927")
    ('BTC/USD:BTC', 'ETH/USD:ETH-240927')
    """
    match = _COINM_ID.match(venue_id)
    if match is None or not match.group(1):
        raise FeedParseError(f"cannot derive a unified symbol from Binance COIN-M id {venue_id!r}")
    base, suffix = match.group(1), match.group(2)
    return join_unified(base, "USD", base, "" if suffix == "PERP" else suffix)


@lru_cache(maxsize=1024)
def coinm_id(unified: str) -> str:
    """The COIN-M id of a ccxt unified symbol.

    Examples
    --------
    >>> coinm_id("BTC/USD:BTC"), coinm_id("ETH/USD:ETH-240927")
    ('BTCUSD_PERP', 'ETHUSD_240927')
    """
    parts = split_unified(unified)
    return f"{parts.base}{parts.quote}_{parts.expiry or 'PERP'}"
