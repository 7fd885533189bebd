"""The bookkeeping every venue parser shares: counters, the id -> market lookup, validation.

A venue's parser subclasses :class:`VenueParser` and implements ``parse(raw, recv_ns)``; it
checks the values of each tick with the one tick validation
(:func:`~tickcast.service.ticks.trade_fault`, :func:`~tickcast.service.ticks.quote_fault`)
before it builds it, and counts what it made, skipped and rejected in :attr:`stats`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Final

from tickcast.service.ticks import Tick
from tickcast.service.venues.base import (
    REJECT_SYMBOL,
    SKIP_UNSUBSCRIBED,
    ParseStats,
)
from tickcast.service.venues.markets import MarketInfo

logger = logging.getLogger(__name__)

_CACHE_LIMIT: Final = 4096

Derive = Callable[[str], MarketInfo | None]
"""A venue's naming rule: the market of a venue id, or None when the id names none."""


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
