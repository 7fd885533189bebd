"""Market metadata: unified symbols, venue ids and contract sizes, online or offline.

Online, ccxt's market list (``binanceusdm``'s ``load_markets``, one REST call) is the source of
truth for ids, contract sizes and tick sizes. Offline — in tests, against the simulated
exchange, or when the venue's REST API is unreachable — the same facts are derived from the
unified symbol (Binance USDⓈ-M linear contracts are quoted in base units: contract size 1).
:func:`ccxt_markets` turns either into ccxt market dicts, so that a ccxt.pro client can be used
without any REST call (``exchange.set_markets(ccxt_markets(...))``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tickcast.service import TickcastError
from tickcast.service.venues.base import split_unified
from tickcast.service.venues.binance import venue_symbol

logger = logging.getLogger(__name__)


class MarketError(TickcastError):
    """A symbol is not a market of the venue (or not a unified futures symbol at all)."""


@dataclass(frozen=True)
class MarketInfo:
    """What a feed needs to know about one market.

    Attributes
    ----------
    symbol : str
        ccxt unified symbol, ``BTC/USDT:USDT``.
    venue_id : str
        The venue's id, ``BTCUSDT``.
    base, quote, settle : str
        Currencies.
    contract_size : float
        Base units per contract (sizes on the wire are multiplied by it).
    price_tick : float or None
        Price increment, when known.
    linear : bool
        Settled in the quote currency.
    """

    symbol: str
    venue_id: str
    base: str
    quote: str
    settle: str
    contract_size: float = 1.0
    price_tick: float | None = None
    linear: bool = True


def offline_market(symbol: str) -> MarketInfo:
    """Derive a Binance USDⓈ-M market from its unified symbol alone.

    Raises
    ------
    MarketError
        When ``symbol`` is not ``BASE/QUOTE:SETTLE[-YYMMDD]``.

    Examples
    --------
    >>> offline_market("ETH/USDT:USDT-240927").venue_id
    'ETHUSDT_240927'
    """
    try:
        parts = split_unified(symbol)
    except TickcastError as exc:
        raise MarketError(str(exc)) from exc
    return MarketInfo(
        symbol=symbol,
        venue_id=venue_symbol(symbol),
        base=parts.base,
        quote=parts.quote,
        settle=parts.settle,
        linear=parts.settle == parts.quote,
    )


def offline_markets(symbols: Iterable[str]) -> dict[str, MarketInfo]:
    """:func:`offline_market` for each symbol, keyed by unified symbol."""
    return {symbol: offline_market(symbol) for symbol in symbols}


def from_ccxt(market: Mapping[str, Any]) -> MarketInfo:
    """Read one ccxt market dict (as ``exchange.markets[symbol]``) into a :class:`MarketInfo`."""
    precision = market.get("precision") or {}
    tick = precision.get("price")
    return MarketInfo(
        symbol=str(market["symbol"]),
        venue_id=str(market["id"]),
        base=str(market["base"]),
        quote=str(market["quote"]),
        settle=str(market.get("settle") or market["quote"]),
        contract_size=float(market.get("contractSize") or 1.0),
        price_tick=float(tick) if tick is not None else None,
        linear=bool(market.get("linear", True)),
    )


def ccxt_markets(markets: Iterable[MarketInfo]) -> list[dict[str, Any]]:
    """ccxt market dicts for ``exchange.set_markets`` (swap markets of ``binanceusdm``)."""
    out: list[dict[str, Any]] = []
    for m in markets:
        out.append(
            {
                "id": m.venue_id,
                "lowercaseId": m.venue_id.lower(),
                "symbol": m.symbol,
                "base": m.base,
                "quote": m.quote,
                "settle": m.settle,
                "baseId": m.base,
                "quoteId": m.quote,
                "settleId": m.settle,
                "type": "swap",
                "spot": False,
                "margin": False,
                "swap": True,
                "future": False,
                "option": False,
                "index": False,
                "active": True,
                "contract": True,
                "linear": m.linear,
                "inverse": not m.linear,
                "contractSize": m.contract_size,
                "expiry": None,
                "expiryDatetime": None,
                "strike": None,
                "optionType": None,
                "precision": {"amount": 0.001, "price": m.price_tick or 0.01},
                "limits": {
                    "amount": {"min": None, "max": None},
                    "price": {"min": None, "max": None},
                    "cost": {"min": None, "max": None},
                    "leverage": {"min": None, "max": None},
                },
                "info": {},
            }
        )
    return out


async def load_markets(
    symbols: Sequence[str],
    *,
    online: bool = True,
    exchange_id: str = "binanceusdm",
    timeout_s: float = 15.0,
) -> dict[str, MarketInfo]:
    """Markets of ``symbols``: from ccxt's REST market list when ``online``, else offline.

    A failed or slow REST call (no network, venue down) falls back to :func:`offline_markets`
    with a warning; a symbol the venue does not list raises.

    Raises
    ------
    MarketError
        When the venue answered and a symbol is not among its markets.
    """
    if not online:
        return offline_markets(symbols)
    import ccxt.async_support as ccxt_async

    exchange = getattr(ccxt_async, exchange_id)({"enableRateLimit": True, "timeout": 10000})
    try:
        listed: Mapping[str, Any] = await asyncio.wait_for(exchange.load_markets(), timeout_s)
    except Exception as exc:  # network, DNS, venue errors: any of them means "offline"
        logger.warning(
            "could not load %s markets (%s: %s); using offline metadata",
            exchange_id,
            type(exc).__name__,
            exc,
        )
        return offline_markets(symbols)
    finally:
        await exchange.close()
    missing = [s for s in symbols if s not in listed]
    if missing:
        raise MarketError(f"{exchange_id} lists no market {', '.join(missing)}")
    return {s: from_ccxt(listed[s]) for s in symbols}
