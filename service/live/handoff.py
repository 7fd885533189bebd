"""In-process handoff: ticks Redis just accepted, from the ingester straight to the worker.

When ``tickcast run`` holds both halves in one process, reading each tick back from Redis costs
the worker an XREAD round trip, a decode and a turn of the event loop per batch. With a
:class:`Handoff` attached, the :class:`~tickcast.service.bus.writer.TickWriter` hands every batch
Redis acknowledged to the worker together with the stream IDs Redis gave its entries
(:meth:`Handoff.written`): the worker sees the very entries of the streams, in stream order,
one round trip earlier. Every signal is still made from ticks that are in Redis, and the
worker's checkpointed stream ID is exact.

The worker reads a symbol from Redis until it has caught up (restart backlog) and then
switches to the handoff; see :class:`~tickcast.service.live.worker.Worker`. The handoff is bounded:
a symbol's queue that reaches ``limit`` entries (the worker fell behind) is emptied and the
symbol's break counter bumped, and a failed write bumps every symbol's (a pipeline cut off
mid-way may have left entries in Redis that were never acknowledged). A break sends the worker
back to Redis from its last stream ID: nothing is lost, only read the slow way.

Only one writer per tick stream: entries another process adds to the same streams are not
handed off (``tickcast ingest`` + ``tickcast worker`` read everything from Redis).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from tickcast.service.bus.keys import id_key
from tickcast.service.live.symbolstate import SymbolState
from tickcast.service.ticks import Instrument, Tick

log = logging.getLogger(__name__)

Entry = tuple[bytes, Tick]
"""One stream entry: its ID (``b"<ms>-<seq>"``) and its tick."""


class Handoff:
    """Per-instrument bounded queues of acknowledged stream entries; see the module docstring.

    Parameters
    ----------
    instruments : iterable of Instrument
        The worker's (venue, symbol) pairs (entries of others are ignored).
    limit : int
        Most entries queued per instrument.
    """

    def __init__(self, instruments: Iterable[Instrument], limit: int = 10_000) -> None:
        if limit < 1:
            raise ValueError("limit must be positive")
        self.limit = limit
        self.queues: dict[tuple[str, str], deque[Entry]] = {i: deque() for i in instruments}
        self.breaks: dict[tuple[str, str], int] = dict.fromkeys(self.queues, 0)
        """Per instrument: times entries were lost to the queue (overflow, failed write)."""
        self.overflowed = 0
        """Entries dropped from full queues (the worker reads them from Redis instead)."""
        self.wake = asyncio.Event()
        """Set when entries were queued."""

    def written(self, ticks: Sequence[Tick], ids: Sequence[bytes]) -> None:
        """Queue a batch Redis acknowledged: ``ticks[i]`` is the entry ``ids[i]``."""
        queues, limit = self.queues, self.limit
        for tick, stream_id in zip(ticks, ids, strict=True):
            key = (tick.venue, tick.symbol)
            queue = queues.get(key)
            if queue is None:
                continue
            if len(queue) >= limit:
                self.overflowed += len(queue)
                queue.clear()
                self.breaks[key] += 1
            queue.append((stream_id, tick))
        self.wake.set()

    def failed(self) -> None:
        """A write failed: what it applied before failing is only in Redis. Break every queue."""
        for key, queue in self.queues.items():
            queue.clear()
            self.breaks[key] += 1
        self.wake.set()

    def pending(self) -> bool:
        """Whether any queue holds entries."""
        return any(self.queues.values())

    # -- the worker's side ----------------------------------------------------------------------

    @staticmethod
    def join(state: SymbolState, breaks: int) -> None:
        """Take ``state``'s ticks from the handoff from now on: its last read from Redis
        reached the stream's end when the break count was ``breaks``."""
        state.live, state.breaks, state.behind = True, breaks, id_key(state.last_id)
        log.debug("%s: caught up at %s; taking ticks from the handoff", state.symbol, state.last_id)

    def take(self, states: Iterable[SymbolState]) -> list[list[Any]]:
        """``[state, entries, 0]`` per live state with entries queued (emptying its queue),
        less those its last read returned; a state whose queue broke goes back to Redis."""
        cursors: list[list[Any]] = []
        for state in states:
            if not state.live:
                continue
            if self.breaks[state.instrument] != state.breaks:
                state.live = False
                log.info(
                    "%s: handoff broke; reading Redis after %s", state.instrument, state.last_id
                )
                continue
            queue = self.queues[state.instrument]
            if not queue:
                continue
            entries = list(queue)
            queue.clear()
            if state.behind is not None:
                entries = _unread(state, entries)
            if entries:
                cursors.append([state, entries, 0])
        return cursors


def _unread(state: SymbolState, entries: list[Entry]) -> list[Entry]:
    """Drop the entries the catch-up read already returned (IDs up to ``state.behind``)."""
    behind = state.behind
    if behind is None:
        return entries
    for i, (stream_id, _) in enumerate(entries):
        if id_key(stream_id) > behind:
            state.behind = None
            return entries[i:]
    return []
