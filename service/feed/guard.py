"""Plausibility at the live edge: what a valid tick may still not be, coming from a venue now.

The tick contract (:func:`~tickcast.service.ticks.trade_fault`) bounds every tick wherever it
comes from. A live feed knows two more things, and :class:`EdgeGuard` checks them on every tick
a parser made, counting what it drops in the parser's statistics:

* **the clock**: a venue's event time is within ``window_ms`` of the local receive time (a
  frame stamped in 2100, or in 1970, is refused);
* **the price**: a trade's price, or a quote's mid, is within a factor ``1 + max_jump`` of the
  last one accepted for the symbol. The first tick of a symbol sets the level. A tick outside
  the band is refused; when :data:`CONFIRMATIONS` ticks in a row are outside it, the market
  has moved (or the first level was wrong): the last of them is accepted and becomes the
  level, and the move is logged.

Either check is off when its limit is None (replays of old recordings need the clock check
off).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Final

from tickcast.service.ticks import TRADE, Tick
from tickcast.service.venues.base import ParseStats

logger = logging.getLogger(__name__)

REJECT_CLOCK: Final = "event time far from the local clock"
REJECT_JUMP: Final = "price jump"
CONFIRMATIONS: Final = 5
"""Consecutive ticks outside the band that move the level (the last of them is accepted)."""


@dataclass
class EdgeGuard:
    """Clock and price-jump checks of a live feed (see the module docstring).

    Parameters
    ----------
    stats : ParseStats
        Where refused ticks are counted (the feed's parser's).
    window_ms : int or None
        Largest distance between a tick's event time and its local receive time (ms).
    max_jump : float or None
        Largest relative move from the last accepted price (0.5: half up, a third down).

    Examples
    --------
    >>> from tickcast.service.ticks import trade
    >>> guard = EdgeGuard(ParseStats(), window_ms=60_000, max_jump=0.5)
    >>> now_ms = 1_767_225_600_000
    >>> ticks = [trade("x", "BTC/USDT:USDT", now_ms, now_ms * 10**6, p, 1.0, 1, "1")
    ...          for p in (60000.0, 1.0, 60010.0)]
    >>> [t.price for t in guard.admit(ticks)], guard.stats.rejected
    ([60000.0, 60010.0], {'price jump': 1})
    """

    stats: ParseStats
    window_ms: int | None = None
    max_jump: float | None = None
    _last: dict[str, float] = field(default_factory=dict)
    _outside: dict[str, int] = field(default_factory=dict)

    def admit(self, ticks: list[Tick]) -> list[Tick]:
        """The ``ticks`` that pass both checks (the others are counted as rejected)."""
        window, jump = self.window_ms, self.max_jump
        if window is None and jump is None:
            return ticks
        kept: list[Tick] | None = None
        for i, tick in enumerate(ticks):
            reason = None
            if window is not None and abs(tick.event_ms - tick.recv_ns // 1_000_000) > window:
                reason = REJECT_CLOCK
            elif jump is not None and not self._within(tick, jump):
                reason = REJECT_JUMP
            if reason is None:
                if kept is not None:
                    kept.append(tick)
                continue
            if kept is None:
                kept = ticks[:i]
            self.stats.reject(reason)
            logger.debug("refused %r: %s", tick, reason)
        return ticks if kept is None else kept

    def _within(self, tick: Tick, jump: float) -> bool:
        """Whether ``tick``'s price is in the band of its symbol's level (updating it)."""
        price = tick.price if tick.kind == TRADE else 0.5 * (tick.bid + tick.ask)
        symbol = tick.symbol
        last = self._last.get(symbol)
        if last is None or last / (1.0 + jump) <= price <= last * (1.0 + jump):
            self._last[symbol] = price
            self._outside[symbol] = 0
            return True
        outside = self._outside.get(symbol, 0) + 1
        if outside < CONFIRMATIONS:
            self._outside[symbol] = outside
            return False
        logger.warning(
            "%s: %d ticks in a row more than %.0f%% from %.10g; the level is now %.10g",
            symbol,
            outside,
            100.0 * jump,
            last,
            price,
        )
        self._last[symbol] = price
        self._outside[symbol] = 0
        return True
