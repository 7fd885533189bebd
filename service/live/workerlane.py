"""The worker's Redis traffic on one fast lane: XREADs of tick streams, XADDs of signals.

:class:`WorkerLane` wraps a :class:`~tickcast.service.bus.resp.Lane`. Signals are written as soon as
they are made (:meth:`WorkerLane.send`) and their replies read later: with the next XREAD
(:meth:`WorkerLane.read`), when the worker is idle (:meth:`WorkerLane.confirm`), or with a
batch of its own (:meth:`WorkerLane.publish`). Once read, a signal counts as published; when
the lane fails, every signal not yet confirmed is requeued, to be sent again: their entry IDs
are their sample times, so Redis refuses those it already stored (the lane tolerates
:data:`~tickcast.service.bus.resp.DUPLICATE_ID`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio

from tickcast.service.bus.resp import DUPLICATE_ID, Lane, bulk, pack
from tickcast.service.live.predictor import Predictor
from tickcast.service.live.symbolstate import SymbolState


class WorkerLane:
    """XREAD / XADD traffic of one worker; see the module docstring.

    Parameters
    ----------
    client : redis.asyncio.Redis
        Bytes-mode client (its pool provides the lane's connection).
    read_count : int
        Entries per stream and XREAD.
    """

    def __init__(self, client: redis.asyncio.Redis, read_count: int) -> None:
        self.lane = Lane(client, tolerate=DUPLICATE_ID)  # signals sent again after a failure
        self.reads = 0
        """XREADs sent (each one Redis round trip)."""
        self.publishes = 0
        """Signal batches sent."""
        self._count = pack("XREAD", "COUNT", read_count)[4:]
        self._states: list[SymbolState] = []
        self._streams = b""

    def use(self, states: Sequence[SymbolState]) -> None:
        """The worker's states, restored: every read names their streams in this order."""
        self._states = list(states)
        keys = [bulk(s.ticks_key.encode()) for s in self._states]
        self._streams = b"".join((bulk(b"STREAMS"), *keys))

    @property
    def owed(self) -> int:
        """Replies of sent commands not read yet."""
        return self.lane.owed

    def xread(self, block_ms: int, states: Sequence[SymbolState]) -> bytes:
        """``XREAD COUNT <read_count> [BLOCK <block_ms>] STREAMS <keys> <last IDs>``, packed."""
        n = len(states)
        head = b"*%d\r\n%b" % (2 * n + (6 if block_ms else 4), self._count)
        if block_ms:
            head += b"$5\r\nBLOCK\r\n" + bulk(b"%d" % block_ms)
        if n == len(self._states):
            keys = self._streams
        else:
            keys = b"".join((bulk(b"STREAMS"), *(bulk(s.ticks_key.encode()) for s in states)))
        ids = [bulk(s.last_id.encode()) for s in states]
        return b"".join((head, keys, *ids))

    async def read(
        self,
        block_ms: int,
        states: Sequence[SymbolState],
        busy: Callable[[], bool],
        work: Callable[[], None],
    ) -> Any:
        """One XREAD over the tick streams of ``states``; return its ``(key, entries)`` pairs.

        While ``busy()`` and the answer is not in, ``work()`` runs (one learner learning). The
        replies of the signals sent since the last read come first: once they are in, those
        signals count as published (every unconfirmed one is requeued when the read fails).
        """
        data, lane = self.xread(block_ms, states), self.lane
        self.reads += 1
        try:
            if busy() and lane.send(data, 1):
                while busy() and not await lane.poll():
                    work()
                replies = await lane.collect(block_ms / 1000.0)
            else:
                replies = await lane.call(data, 1, block_ms / 1000.0, owed=True)
        except BaseException:
            self._requeue()
            raise
        if len(replies) > 1:  # acknowledged when the last signal's reply was read
            self._published(lane.times_ns[-2])
        reply = replies[-1]
        return reply.items() if isinstance(reply, dict) else reply

    def send(self, predictor: Predictor) -> None:
        """Write one symbol's pending signals now; their replies are read later."""
        parts: list[bytes] = []
        n = predictor.pack(parts)
        if self.lane.send(b"".join(parts), n):
            self.publishes += 1
        else:
            predictor.requeue()

    async def poll(self) -> bool:
        """Parse the replies that arrived (no wait); True once every owed one is in."""
        return await self.lane.poll(yield_first=False)

    async def confirm(self) -> None:
        """Wait for the replies of the signals sent; count them as published."""
        try:
            await self.lane.collect()
        except BaseException:
            self._requeue()
            raise
        self._published(self.lane.times_ns[-1] if self.lane.times_ns else time.time_ns())

    async def publish(self) -> None:
        """XADD every pending signal in one batch and confirm those already sent (all are
        requeued when that fails)."""
        predictors = [s.predictor for s in self._states if s.predictor.unconfirmed]
        if not predictors:
            return
        parts: list[bytes] = []
        for predictor in predictors:
            predictor.pack(parts)
        if parts:
            self.publishes += 1
        try:
            await self.lane.call(b"".join(parts), len(parts))
        except BaseException:
            for predictor in predictors:
                predictor.requeue()
            raise
        now_ns = time.time_ns()
        for predictor in predictors:
            predictor.published(now_ns)

    def _published(self, acked_ns: int) -> None:
        for state in self._states:
            state.predictor.published(acked_ns)

    def _requeue(self) -> None:
        for state in self._states:
            state.predictor.requeue()
