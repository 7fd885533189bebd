"""Market metadata: unified symbols, venue ids and contract sizes, online or offline.

Online, ccxt's market list of the venue (``load_markets``, one REST call) is the source of truth
for ids and contract sizes. Offline — in tests, against the simulated exchange, or when the
venue's REST API is unreachable — each venue module ships a table of its main symbols
(:func:`market_table`). A symbol that neither lists is refused at start (:class:`MarketError`),
never retried. :func:`ccxt_markets` turns either into ccxt market dicts, so that a ccxt.pro client
can be used without any REST call (``exchange.set_markets(ccxt_markets(...))``).

Sizes: a *linear* contract is worth ``contract_size`` base units (1 on most USDT-margined
venues; OKX's BTC-USDT-SWAP 0.01 BTC); an *inverse* one is worth ``contract_size`` units of the
quote currency (Binance COIN-M's BTCUSD_PERP: 100 USD), so its base size depends on the price
(:meth:`MarketInfo.base_size`).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tickcast.service import TickcastError
from tickcast.service.venues.base import split_unified

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
        Value of one contract on the wire: base units (linear) or quote units (inverse).
    price_tick : float or None
        Price increment, when known.
    linear : bool
        False for inverse contracts (sized in quote currency, settled in the base).
    """

    symbol: str
    venue_id: str
    base: str
    quote: str
    settle: str
    contract_size: float = 1.0
    price_tick: float | None = None
    linear: bool = True
    in_base_units: bool = field(init=False, repr=False, compare=False)
    """Sizes on the wire are base units already (linear, contract size 1): set from the
    others, so that parsers test one flag per frame."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.contract_size) and self.contract_size > 0.0):
            raise MarketError(f"{self.symbol}: contract size must be positive")
        object.__setattr__(self, "in_base_units", self.linear and self.contract_size == 1.0)

    def base_size(self, contracts: float, price: float) -> float:
        """Base units of ``contracts`` contracts traded (or quoted) at ``price``.

        Examples
        --------
        >>> okx = MarketInfo("BTC/USDT:USDT", "BTC-USDT-SWAP", "BTC", "USDT", "USDT", 0.01)
        >>> okx.base_size(5.0, 48938.5)
        0.05
        >>> coinm = MarketInfo("BTC/USD:BTC", "BTCUSD_PERP", "BTC", "USD", "BTC", 100.0,
        ...                    linear=False)
        >>> coinm.base_size(3.0, 60000.0)
        0.005
        """
        if self.linear:
            return contracts * self.contract_size
        return contracts * self.contract_size / price

    def contracts(self, base_size: float, price: float) -> float:
        """Contracts on the wire for ``base_size`` base units at ``price`` (the inverse of
        :meth:`base_size`, for renderers).

        Examples
        --------
        >>> okx = MarketInfo("BTC/USDT:USDT", "BTC-USDT-SWAP", "BTC", "USDT", "USDT", 0.01)
        >>> okx.contracts(0.05, 48938.5)
        5.0
        """
        if self.linear:
            return base_size / self.contract_size
        return base_size * price / self.contract_size


def derived_market(symbol: str, venue_id: str, contract_size: float = 1.0) -> MarketInfo:
    """A market derived from its unified symbol alone: linear unless it settles in its base.

    Raises
    ------
    MarketError
        When ``symbol`` is not ``BASE/QUOTE:SETTLE[-EXPIRY]``.

    Examples
    --------
    >>> derived_market("BTC/USD:BTC", "BTCUSD_PERP", 100.0).linear
    False
    """
    try:
        parts = split_unified(symbol)
    except TickcastError as exc:
        raise MarketError(str(exc)) from exc
    return MarketInfo(
        symbol=symbol,
        venue_id=venue_id,
        base=parts.base,
        quote=parts.quote,
        settle=parts.settle,
        contract_size=contract_size,
        linear=parts.settle != parts.base,
    )


def market_table(rows: str) -> dict[str, MarketInfo]:
    """Parse a venue's shipped metadata table: one market per line,
    ``UNIFIED VENUE_ID CONTRACT_SIZE PRICE_TICK`` (``-`` for an unknown tick).

    Examples
    --------
    >>> table = market_table('''
    ...     BTC/USDT:USDT  BTC-USDT-SWAP  0.01  0.1
    ... ''')
    >>> table["BTC/USDT:USDT"].contract_size, table["BTC/USDT:USDT"].price_tick
    (0.01, 0.1)
    """
    out: dict[str, MarketInfo] = {}
    for line in rows.strip().splitlines():
        symbol, venue_id, size, tick = line.split()
        market = derived_market(symbol, venue_id, float(size))
        if tick != "-":
            market = replace(market, price_tick=float(tick))
        out[symbol] = market
    return out


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
        linear=market.get("linear") is not False,
    )


def ccxt_markets(markets: Iterable[MarketInfo]) -> list[dict[str, Any]]:
    """ccxt market dicts (perpetual swaps) for ``exchange.set_markets``: no REST call needed."""
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
                "info": {"symbol": m.venue_id, "instId": m.venue_id},
            }
        )
    return out


def offline_markets(
    table: Mapping[str, MarketInfo], symbols: Sequence[str], venue: str
) -> dict[str, MarketInfo]:
    """``symbols``' entries of a shipped table.

    Raises
    ------
    MarketError
        Naming every symbol the table does not list.
    """
    missing = [s for s in symbols if s not in table]
    if missing:
        known = ", ".join(sorted(table)[:8])
        raise MarketError(
            f"{venue} lists no market {', '.join(missing)} in tickcast's offline metadata "
            f"(known: {known}, ...); check the symbol, or let tickcast ask the venue online"
        )
    return {s: table[s] for s in symbols}


async def load_markets(
    venue: str,
    ccxt_id: str | None,
    table: Mapping[str, MarketInfo],
    symbols: Sequence[str],
    *,
    online: bool = True,
    timeout_s: float = 15.0,
) -> dict[str, MarketInfo]:
    """Markets of ``symbols`` on ``venue``: from ccxt's REST market list (``ccxt_id``) when
    ``online``, else ``table``.

    A failed or slow REST call (no network, venue down) falls back to ``table`` with a
    warning.

    Raises
    ------
    MarketError
        When the venue answered and a symbol is not among its markets, or (offline) when the
        table does not list it.
    """
    if not online or ccxt_id is None:
        return offline_markets(table, symbols, venue)
    import ccxt.async_support as ccxt_async

    exchange = getattr(ccxt_async, ccxt_id)({"enableRateLimit": True, "timeout": 10000})
    try:
        listed: Mapping[str, Any] = await asyncio.wait_for(exchange.load_markets(), timeout_s)
    except Exception as exc:  # network, DNS, venue errors: any of them means "offline"
        logger.warning(
            "could not load %s markets (%s: %s); using offline metadata",
            ccxt_id,
            type(exc).__name__,
            exc,
        )
        return offline_markets(table, symbols, venue)
    finally:
        await exchange.close()
    missing = [s for s in symbols if s not in listed]
    if missing:
        raise MarketError(f"{venue} lists no market {', '.join(missing)}")
    return {s: from_ccxt(listed[s]) for s in symbols}
