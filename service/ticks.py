"""The tick: one normalised market event, a trade or a top-of-book quote.

Every parser returns ``Tick`` objects; every consumer (Redis bus, features, learner) reads them.
A tick is a ``NamedTuple`` because millions are made per minute: construction costs about a
third of a microsecond and attribute access is a C-level tuple lookup.

Field contract (validated by the parser that builds the tick, see :func:`validate`):

========== ======= ===========================================================================
field      type    meaning
========== ======= ===========================================================================
venue      str     venue id, e.g. ``"binanceusdm"``, ``"sim"``
symbol     str     ccxt unified symbol, e.g. ``"BTC/USDT:USDT"``
kind       str     ``"trade"`` or ``"quote"`` (:data:`TRADE`, :data:`QUOTE`)
event_ms   int     exchange event time, ms since the Unix epoch
recv_ns    int     local receive time, ns since the Unix epoch (latency measurements only)
price      float   trade price (quote currency); 0.0 on quotes
size       float   trade size in base units, contract size applied; 0.0 on quotes
side       int     aggressor side, +1 buy / -1 sell; 0 on quotes
trade_id   str     venue trade id ("" when the venue sends none); "" on quotes
bid        float   best bid price; 0.0 on trades
bid_size   float   best bid size, base units; 0.0 on trades
ask        float   best ask price; 0.0 on trades
ask_size   float   best ask size, base units; 0.0 on trades
update_id  int     venue book update id (0 when none); 0 on trades
========== ======= ===========================================================================
"""

from __future__ import annotations

import math
from typing import Final, NamedTuple

TRADE: Final = "trade"
QUOTE: Final = "quote"


class Tick(NamedTuple):
    """One trade or top-of-book quote; see the module docstring for the field contract."""

    venue: str
    symbol: str
    kind: str
    event_ms: int
    recv_ns: int
    price: float = 0.0
    size: float = 0.0
    side: int = 0
    trade_id: str = ""
    bid: float = 0.0
    bid_size: float = 0.0
    ask: float = 0.0
    ask_size: float = 0.0
    update_id: int = 0


def trade(
    venue: str,
    symbol: str,
    event_ms: int,
    recv_ns: int,
    price: float,
    size: float,
    side: int,
    trade_id: str = "",
) -> Tick:
    """Build a trade tick (unvalidated; call :func:`validate` where input is untrusted)."""
    return Tick(venue, symbol, TRADE, event_ms, recv_ns, price, size, side, trade_id)


def quote(
    venue: str,
    symbol: str,
    event_ms: int,
    recv_ns: int,
    bid: float,
    bid_size: float,
    ask: float,
    ask_size: float,
    update_id: int = 0,
) -> Tick:
    """Build a quote tick (unvalidated; call :func:`validate` where input is untrusted)."""
    return Tick(
        venue,
        symbol,
        QUOTE,
        event_ms,
        recv_ns,
        0.0,
        0.0,
        0,
        "",
        bid,
        bid_size,
        ask,
        ask_size,
        update_id,
    )


#: Why a tick breaks the contract: short fixed strings, counted as parse rejections by reason.
REJECT_NON_FINITE: Final = "non-finite value"
REJECT_PRICE: Final = "price not positive"
REJECT_PRICE_RANGE: Final = "price out of range"
REJECT_SIZE: Final = "size negative"
REJECT_SIZE_RANGE: Final = "size out of range"
REJECT_CROSSED: Final = "bid above ask"
REJECT_TIME: Final = "event time not positive"
REJECT_TIME_RANGE: Final = "event time out of range"
REJECT_SIDE: Final = "bad side flag"
REJECT_KIND: Final = "unknown tick kind"

#: The sane ranges of the contract, whatever the market: no listed contract trades outside
#: them, and every value inside keeps the features' arithmetic (logs, products, squares) finite.
MIN_PRICE: Final = 1e-12
MAX_PRICE: Final = 1e9
MAX_SIZE: Final = 1e12
MAX_EVENT_MS: Final = 4_102_444_800_000
"""2100-01-01 (exclusive); a live feed also bounds event times by the local clock."""

_isfinite = math.isfinite


def trade_fault(price: float, size: float, side: int, event_ms: int) -> str | None:
    """Why a trade with these values would break the contract (a ``REJECT_*`` reason), or
    None: a finite price in [:data:`MIN_PRICE`, :data:`MAX_PRICE`], a finite size in
    [0, :data:`MAX_SIZE`], side +1/-1, an event time in (0, :data:`MAX_EVENT_MS`).

    Together with :func:`quote_fault`, the one validation of the tick contract: every parser
    and file reader calls it on the values of each tick it builds (parsers call it before
    building the tick, the cheapest point), and counts the reason of the ones it drops.

    Examples
    --------
    >>> trade_fault(100.0, 0.5, 1, 1), trade_fault(float("nan"), 0.5, 1, 1)
    (None, 'non-finite value')
    >>> trade_fault(1e308, 0.5, 1, 1), trade_fault(100.0, 0.5, 1, 10**300)
    ('price out of range', 'event time out of range')
    """
    if not (_isfinite(price) and _isfinite(size)):
        return REJECT_NON_FINITE
    if not MIN_PRICE <= price <= MAX_PRICE:
        return REJECT_PRICE if price <= 0.0 else REJECT_PRICE_RANGE
    if not 0.0 <= size <= MAX_SIZE:
        return REJECT_SIZE if size < 0.0 else REJECT_SIZE_RANGE
    if side != 1 and side != -1:
        return REJECT_SIDE
    if not 0 < event_ms < MAX_EVENT_MS:
        return REJECT_TIME if event_ms <= 0 else REJECT_TIME_RANGE
    return None


def quote_fault(
    bid: float, bid_size: float, ask: float, ask_size: float, event_ms: int
) -> str | None:
    """Why a quote with these values would break the contract, or None: finite bid and ask in
    the price range with bid <= ask, finite sizes in the size range, an event time in range
    (see :func:`trade_fault`).

    Examples
    --------
    >>> quote_fault(101.0, 1.0, 100.0, 1.0, 1), quote_fault(1.7e308, 1.0, 1.7e308, 1.0, 1)
    ('bid above ask', 'price out of range')
    """
    if not (_isfinite(bid) and _isfinite(ask) and _isfinite(bid_size) and _isfinite(ask_size)):
        return REJECT_NON_FINITE
    if not (MIN_PRICE <= bid <= MAX_PRICE and MIN_PRICE <= ask <= MAX_PRICE):
        return REJECT_PRICE if bid <= 0.0 or ask <= 0.0 else REJECT_PRICE_RANGE
    if not (0.0 <= bid_size <= MAX_SIZE and 0.0 <= ask_size <= MAX_SIZE):
        return REJECT_SIZE if bid_size < 0.0 or ask_size < 0.0 else REJECT_SIZE_RANGE
    if bid > ask:
        return REJECT_CROSSED
    if not 0 < event_ms < MAX_EVENT_MS:
        return REJECT_TIME if event_ms <= 0 else REJECT_TIME_RANGE
    return None


def invalid_reason(tick: Tick) -> str | None:
    """Return why ``tick`` breaks the contract (a ``REJECT_*`` reason), or None when valid:
    :func:`trade_fault` or :func:`quote_fault` of its values.

    Examples
    --------
    >>> invalid_reason(trade("sim", "BTC/USDT:USDT", 1, 0, 100.0, 0.5, 1))
    >>> invalid_reason(quote("sim", "BTC/USDT:USDT", 1, 0, 101.0, 1.0, 100.0, 1.0))
    'bid above ask'
    """
    if tick.kind == TRADE:
        return trade_fault(tick.price, tick.size, tick.side, tick.event_ms)
    if tick.kind == QUOTE:
        return quote_fault(tick.bid, tick.bid_size, tick.ask, tick.ask_size, tick.event_ms)
    return REJECT_KIND


class Instrument(NamedTuple):
    """What a tick stream, a learner and a signal stream belong to: a venue and a symbol.

    ``venue`` is the venue label of the ticks (``"binanceusdm"``, ``"sim"``, ``"sim-bybit"``),
    ``symbol`` the ccxt unified symbol.

    Examples
    --------
    >>> str(Instrument("bybit", "BTC/USDT:USDT"))
    'bybit:BTC/USDT:USDT'
    """

    venue: str
    symbol: str

    def __str__(self) -> str:
        return f"{self.venue}:{self.symbol}"
