"""The bookkeeping every venue parser shares: counters, the id -> market lookup, validation.

A venue's parser subclasses :class:`VenueParser` and implements ``parse(raw, recv_ns)``: it
resolves the frame's id with :meth:`VenueParser.market`, reads the values, and makes each tick
with :meth:`VenueParser.trade` / :meth:`VenueParser.quote`, which apply the one tick validation
(:func:`~tickcast.service.ticks.trade_fault`, :func:`~tickcast.service.ticks.quote_fault`) and
count what was made and rejected in :attr:`VenueParser.stats`.

Wire values are read as the venue sends them, never coerced (issue 10: a bool is not a number, a
float is not a timestamp). Each parser checks the JSON type of every value where it reads it,
inline (a function call per value would add a tenth to a frame's parse):

================  ===================================================  =====================
the venue sends   the check, then the conversion                       used for
================  ===================================================  =====================
decimal string    ``type(x) is str``, then ``float(x)``                prices, sizes
JSON integer      ``type(x) is int`` (a bool's type is ``bool``)       ms times, update ids
string of digits  ``type(x) is str and x.isdecimal()``, ``int(x)``     OKX's, Bitget's times
JSON number       :func:`wire_number`                                  ccxt's structures
================  ===================================================  =====================

A value of another type is rejected as :data:`~tickcast.service.venues.base.REJECT_TYPE`, a
string that is no such number (``"abc"``; for a time ``"1e3"``, ``"-5"``, ``"1.5"``) as
:data:`~tickcast.service.venues.base.REJECT_NOT_NUMERIC`, an absent key as
:data:`~tickcast.service.venues.base.REJECT_MISSING`. What passes still has to meet the tick
contract: ``"NaN"``, ``"1e308"`` and ``4102444800000`` are numbers, rejected by its ranges.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Final

from tickcast.service.ticks import QUOTE, TRADE, Tick, quote_fault, trade_fault
from tickcast.service.venues.base import (
    REJECT_SYMBOL,
    SKIP_UNSUBSCRIBED,
    ParseStats,
)
from tickcast.service.venues.markets import MarketInfo

logger = logging.getLogger(__name__)

_CACHE_LIMIT: Final = 4096
_new_tick = tuple.__new__

Derive = Callable[[str], MarketInfo | None]
"""A venue's naming rule: the market of a venue id, or None when the id names none."""


def wire_number(value: object) -> float:
    """The float of a JSON number (``int`` or ``float``, not a bool), as ccxt's unified
    structures carry prices and amounts; an integer too large for a float is infinite (the tick
    contract rejects it).

    Raises
    ------
    TypeError
        When ``value`` is not an ``int`` or a ``float`` (a bool, a string, null...).

    Examples
    --------
    >>> wire_number(2), wire_number(0.5), wire_number(10**400)
    (2.0, 0.5, inf)
    >>> wire_number(True)
    Traceback (most recent call last):
    TypeError: a bool where a number belongs
    """
    if type(value) is float:
        return value
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    raise TypeError(f"a {type(value).__name__} where a number belongs")


class VenueParser:
    """Counters, symbol lookup and validation for a venue's parser.

    Parameters
    ----------
    venue : str
        Venue label written into every tick.
    markets : iterable of MarketInfo, optional
        The subscribed markets: frames of other ids are skipped as ``"unsubscribed symbol"``.
        None: every id the naming rule ``derive`` names is accepted.
    derive : callable
        The venue's naming rule, used when ``markets`` is None.

    Attributes
    ----------
    stats : ParseStats
        Ticks made, frames skipped and rejected.
    """

    def __init__(self, venue: str, markets: Iterable[MarketInfo] | None, derive: Derive) -> None:
        self.venue = venue
        self.stats = ParseStats()
        self.subscribed = {m.venue_id: m for m in markets} if markets is not None else None
        self._derive = derive
        self._resolved: dict[str, MarketInfo | None] = {}

    def market(self, venue_id: object) -> MarketInfo | None:
        """The market of ``venue_id``; None when it is unsubscribed or names no market."""
        try:
            return self._resolved[venue_id]  # type: ignore[index]
        except KeyError:
            pass
        except TypeError:  # unhashable: not an id at all
            return None
        if type(venue_id) is not str:
            return None
        if self.subscribed is not None:
            market = self.subscribed.get(venue_id)
        else:
            market = self._derive(venue_id)
        if len(self._resolved) < _CACHE_LIMIT:
            self._resolved[venue_id] = market
        return market

    def unresolved(self, venue_id: object, what: object) -> list[Tick]:
        """Count a frame whose id :meth:`market` did not resolve: skipped when subscriptions
        filter it, rejected when it names no market."""
        if self.subscribed is None or type(venue_id) is not str:
            return self.reject(REJECT_SYMBOL, what)
        self.stats.skip(SKIP_UNSUBSCRIBED)
        return []

    def reject(self, reason: str, what: object) -> list[Tick]:
        """Count a rejected frame (logged at debug); returns no ticks."""
        self.stats.reject(reason)
        logger.debug("rejected %s frame (%s): %.200r", self.venue, reason, what)
        return []

    def trade(
        self,
        symbol: str,
        event_ms: int,
        recv_ns: int,
        price: float,
        size: float,
        side: int,
        trade_id: str,
        what: object,
    ) -> list[Tick]:
        """The trade tick of these values, validated (:func:`~tickcast.service.ticks.trade_fault`)
        and counted; none, counted as rejected, when they break the contract."""
        reason = trade_fault(price, size, side, event_ms)
        if reason is not None:
            return self.reject(reason, what)
        self.stats.parsed_trades += 1
        return [
            _new_tick(
                Tick,
                (self.venue, symbol, TRADE, event_ms, recv_ns, price, size, side, trade_id,
                 0.0, 0.0, 0.0, 0.0, 0),
            )
        ]  # fmt: skip

    def quote(
        self,
        symbol: str,
        event_ms: int,
        recv_ns: int,
        bid: float,
        bid_size: float,
        ask: float,
        ask_size: float,
        update_id: int,
        what: object,
    ) -> list[Tick]:
        """The quote tick of these values, validated (:func:`~tickcast.service.ticks.quote_fault`)
        and counted; none, counted as rejected, when they break the contract."""
        reason = quote_fault(bid, bid_size, ask, ask_size, event_ms)
        if reason is not None:
            return self.reject(reason, what)
        self.stats.parsed_quotes += 1
        return [
            _new_tick(
                Tick,
                (self.venue, symbol, QUOTE, event_ms, recv_ns, 0.0, 0.0, 0, "",
                 bid, bid_size, ask, ask_size, update_id),
            )
        ]  # fmt: skip
