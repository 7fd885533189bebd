"""Trade-id sequencing, venue-independent: gaps, late trades and duplicates per symbol.

Venues number each symbol's trades consecutively; a feed that sees every id once, in order,
missed nothing. :class:`TradeSequence` checks that as frames arrive and keeps the count of what
did not hold in the feed's :class:`~tickcast.service.feed.stats.FeedStats`.
"""

from __future__ import annotations

from collections import deque

from tickcast.service.feed.stats import FeedStats


class TradeSequence:
    """Per-symbol trade-id bookkeeping: gaps, late arrivals and duplicates.

    ``accept(symbol, trade_id)`` returns False for a duplicate (an id among the last
    ``window`` ids seen), to be dropped. An id above the last one opens a gap (counted, with the
    number of ids skipped); an unseen id below it is a late trade (passed on, counted, and no
    longer missed).

    Examples
    --------
    >>> seq = TradeSequence(FeedStats())
    >>> [seq.accept("X", i) for i in (1, 2, 4, 3, 3, 5)]
    [True, True, True, True, False, True]
    >>> seq.stats.gaps, seq.stats.missed_trades, seq.stats.late_trades, seq.stats.duplicate_trades
    (1, 0, 1, 1)
    """

    def __init__(self, stats: FeedStats, window: int = 1024) -> None:
        self.stats = stats
        self.window = window
        self._last: dict[str, int] = {}
        self._seen: dict[str, tuple[set[int], deque[int]]] = {}
        self._missing: dict[str, dict[int, None]] = {}

    def resume(self, last_ids: dict[str, int]) -> None:
        """Continue from trade ids seen before (by a previous process: the latest stored),
        so that the first new trade of a symbol counts the trades missed in between.

        Examples
        --------
        >>> seq = TradeSequence(FeedStats())
        >>> seq.resume({"X": 100})
        >>> seq.accept("X", 105), seq.stats.gaps, seq.stats.missed_trades
        (True, 1, 4)
        """
        for symbol, trade_id in last_ids.items():
            self._last.setdefault(symbol, trade_id)

    def accept(self, symbol: str, trade_id: int) -> bool:
        """Record ``trade_id`` of ``symbol``; False when it is a duplicate."""
        try:
            seen, order = self._seen[symbol]
        except KeyError:
            seen, order = self._seen[symbol] = (set(), deque())
        if trade_id in seen:
            self.stats.duplicate_trades += 1
            return False
        seen.add(trade_id)
        order.append(trade_id)
        if len(order) > self.window:
            seen.discard(order.popleft())
        last = self._last.get(symbol)
        if last is None or trade_id == last + 1:
            self._last[symbol] = trade_id
        elif trade_id > last:
            self._last[symbol] = trade_id
            self._gap(symbol, last, trade_id)
        else:
            self.stats.late_trades += 1
            missing = self._missing.get(symbol)
            if missing is not None and trade_id in missing:
                del missing[trade_id]
                self.stats.missed_trades -= 1
        return True

    def _gap(self, symbol: str, last: int, trade_id: int) -> None:
        missed = trade_id - last - 1
        self.stats.gaps += 1
        self.stats.missed_trades += missed
        if missed <= self.window:
            missing = self._missing.setdefault(symbol, {})
            missing.update(dict.fromkeys(range(last + 1, trade_id)))
            while len(missing) > self.window:
                del missing[next(iter(missing))]
