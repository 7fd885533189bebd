"""The worker's Redis traffic on one fast lane: XREADs of tick streams, XADDs of signals.

:class:`WorkerLane` wraps a :class:`~tickcast.service.bus.resp.Lane`. Signals are written as soon as
they are made (:meth:`WorkerLane.send`) and their replies read later: with the next XREAD
(:meth:`WorkerLane.read`), when the worker is idle (:meth:`WorkerLane.confirm`), or with a
batch of its own (:meth:`WorkerLane.publish`). Once read, a signal counts as published; when
the lane fails, every signal not yet confirmed is requeued, to be sent again: their entry IDs
are their sample times, so Redis refuses those it already stored (the lane tolerates
:data:`~tickcast.service.bus.resp.DUPLICATE_ID`).

On a Redis Cluster, :class:`ClusterWorkerLane` does the same on one lane per master
(:class:`~tickcast.service.bus.cluster.ClusterRoutes`). A cluster refuses an XREAD naming
streams of different slots (``CROSSSLOT``), and ``BLOCK`` cannot wait on several commands: a
read is one ``XREAD`` per stream, without ``BLOCK``, pipelined per master, every master's batch
written before any reply is read; when no stream has anything new, the lane pauses before
reading again, from :data:`PAUSE_MIN_S`, doubling up to a cap that grows with the streams read
(:func:`pause_cap`), back to the minimum as soon as a tick comes. A tick arriving on an idle
worker thus waits for at most the current pause beyond the single-Redis path's wake-up.
What it costs, measured with ``bench/lanes.py`` (2 cores, loopback TCP both, tick written ->
returned by the lane): at 20 ticks/s, p50 0.4 -> 1.7 ms with 10 symbols and 1.0 -> 3.3 ms with
100 (the pause), about 400 rounds/s instead of 20 wake-ups, 13 to 18% of a core instead of 1
to 3%; at 1,000 ticks/s, p50 0.1 -> 0.5 ms, p99 0.4 -> 2 ms, 2.1 to 2.4 times the CPU.

:func:`make` picks the lane for a client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

import hiredis
import redis.asyncio
import redis.asyncio.cluster
from redis._parsers.base import BaseParser

from tickcast.service.bus.cluster import (
    ClusterRoutes,
    SlotMapError,
    redirection,
    slot_of,
)
from tickcast.service.bus.connection import AsyncClient
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


PAUSE_MIN_S: Final = 0.0005
"""A cluster worker's first pause after a read that found nothing new (s)."""
PAUSE_PER_STREAM_S: Final = 20e-6
"""Cap of the pause per stream read (s): idle polling costs at most about 50,000 XREADs/s."""
PAUSE_CAP_S: Final = (0.002, 0.05)
"""Bounds of the pause cap (s)."""


def pause_cap(streams: int) -> float:
    """The longest pause (s) between reads that find nothing, for ``streams`` streams.

    Examples
    --------
    >>> pause_cap(3), pause_cap(500), pause_cap(10_000)
    (0.002, 0.01, 0.05)
    """
    return round(min(max(streams * PAUSE_PER_STREAM_S, PAUSE_CAP_S[0]), PAUSE_CAP_S[1]), 6)


class ClusterWorkerLane:
    """:class:`WorkerLane`'s traffic on a Redis Cluster; see the module docstring.

    Parameters
    ----------
    client : redis.asyncio.cluster.RedisCluster
        Bytes-mode cluster client (its nodes provide the lanes' connections).
    read_count : int
        Entries per stream and XREAD.
    """

    def __init__(self, client: redis.asyncio.cluster.RedisCluster, read_count: int) -> None:
        self.routes = ClusterRoutes(client, tolerate=DUPLICATE_ID)
        self.reads = 0
        """Read rounds (each one round trip to every master, concurrently)."""
        self.publishes = 0
        """Signal batches sent."""
        self.pauses = 0
        """Pauses after a round that found nothing new."""
        self._count = read_count
        self._states: list[SymbolState] = []
        self._heads: dict[str, bytes] = {}
        self._slots: dict[str, int] = {}
        self._pause = PAUSE_MIN_S
        self._cap = pause_cap(1)

    def use(self, states: Sequence[SymbolState]) -> None:
        """The worker's states, restored."""
        self._states = list(states)
        self._cap = pause_cap(len(self._states))

    def _slot(self, key: str) -> int:
        try:
            return self._slots[key]
        except KeyError:
            slot = self._slots[key] = slot_of(key)
            return slot

    def xread(self, state: SymbolState) -> bytes:
        """``XREAD COUNT <read_count> STREAMS <key> <last ID>`` of one stream, packed."""
        head = self._heads.get(state.ticks_key)
        if head is None:
            head = pack("XREAD", "COUNT", self._count, "STREAMS", state.ticks_key)
            head = self._heads[state.ticks_key] = b"*6" + head[2:]
        return head + bulk(state.last_id.encode())

    @property
    def owed(self) -> int:
        """Replies of sent commands not read yet."""
        return sum(lane.owed for lane in self.routes.lanes.values())

    async def read(
        self,
        block_ms: int,
        states: Sequence[SymbolState],
        busy: Callable[[], bool],
        work: Callable[[], None],
    ) -> Any:
        """Read the tick streams of ``states`` (a round per :meth:`_round`), pausing between
        rounds that find nothing until ``block_ms`` have passed; return the ``(key, entries)``
        pairs."""
        deadline = time.monotonic() + block_ms / 1000.0
        while True:
            self.reads += 1
            pairs = await self._round(states, busy, work)
            if pairs:
                self._pause = PAUSE_MIN_S
                return pairs
            left = deadline - time.monotonic()
            if left <= 0:
                return pairs
            self.pauses += 1
            await asyncio.sleep(min(self._pause, left))
            self._pause = min(self._pause * 2.0, self._cap)

    async def _round(
        self, states: Sequence[SymbolState], busy: Callable[[], bool], work: Callable[[], None]
    ) -> list[Any]:
        """One XREAD per stream, pipelined per master, all in flight at once; the replies owed
        for signals come first on each lane (every signal counts as published once they are
        all in). ``work()`` runs while ``busy()`` and the answers are not in."""
        try:
            return await self._exchange(states, busy, work)
        except BaseException:
            self._requeue()
            raise

    async def _exchange(
        self, states: Sequence[SymbolState], busy: Callable[[], bool], work: Callable[[], None]
    ) -> list[Any]:
        routes = self.routes
        await routes.ensure()
        groups = routes.plan([self._slot(s.ticks_key) for s in states])
        for name, lane in routes.lanes.items():
            if lane.owed and name not in groups:
                groups[name] = []  # only signal replies to read there
        lanes = {name: routes.lane(name) for name in groups}
        owed = {name: lane.owed for name, lane in lanes.items()}
        batches = {
            name: (b"".join([self.xread(states[i]) for i in idx]), len(idx))
            for name, idx in groups.items()
        }
        left = routes.post(batches)
        if len(left) < len(batches):
            while busy() and not await self._all_in(lanes):
                work()
        results = await routes.collect(list(lanes), left)
        return await self._replies(results, groups, owed, states)

    async def _replies(
        self,
        results: dict[str, list[Any] | Exception],
        groups: dict[str, list[int]],
        owed: dict[str, int],
        states: Sequence[SymbolState],
    ) -> list[Any]:
        """The ``(key, entries)`` pairs of a round; signals confirmed or requeued."""
        error: BaseException | None = None
        requeue = False
        acked_ns = 0
        pairs: list[Any] = []
        for name, result in results.items():
            if isinstance(result, Exception):
                error = error or result
                continue
            lane, k = self.routes.lanes.get(name), owed[name]
            for reply in result[:k]:
                if type(reply) is hiredis.ReplyError and DUPLICATE_ID not in str(reply):
                    requeue = True  # sent again by publish(), wherever the slot is now
                    if redirection(reply) is None:
                        error = error or BaseParser.parse_error(str(reply))  # type: ignore[no-untyped-call]
                    else:
                        self.routes.stale = True
            if k and lane is not None and len(lane.times_ns) >= k:
                acked_ns = max(acked_ns, lane.times_ns[k - 1])
            for i, reply in zip(groups[name], result[k:], strict=True):
                if type(reply) is hiredis.ReplyError:
                    pairs.extend(await self._redirected(states[i], reply))
                elif reply:
                    pairs.extend(reply.items() if isinstance(reply, dict) else reply)
        if error is not None or requeue:
            self._requeue()
        if error is not None:
            raise error
        if acked_ns:
            self._published(acked_ns)
        return pairs

    async def _redirected(self, state: SymbolState, reply: Any) -> list[Any]:
        """The ``(key, entries)`` pairs of an XREAD answered by an error reply: none for a
        ``MOVED`` (read again next round, after the slot map), those of the importing node
        for an ``ASK``; any other error is raised."""
        moved = redirection(reply)
        if moved is None:
            raise BaseParser.parse_error(str(reply))  # type: ignore[no-untyped-call]
        self.routes.redirects += 1
        if moved[0] == "MOVED":
            self.routes.stale = True
            return []
        asked = await self.routes.ask(moved[2], self.xread(state))
        if type(asked) is hiredis.ReplyError:
            raise BaseParser.parse_error(str(asked))  # type: ignore[no-untyped-call]
        return list(asked or ())

    async def _all_in(self, lanes: dict[str, Lane]) -> bool:
        await asyncio.sleep(0)  # one turn of the event loop lets every lane's replies in
        done = True
        for lane in lanes.values():
            done = await lane.poll(yield_first=False) and done
        return done

    def send(self, predictor: Predictor) -> None:
        """Write one symbol's pending signals to its master now; their replies are read later
        (requeued, for :meth:`publish`, when the slot map is being read again)."""
        routes = self.routes
        if routes.stale:
            return  # left pending: publish() sends them
        try:
            lane = routes.lane(routes.owner(self._slot(predictor.key)))
        except SlotMapError:
            return
        parts: list[bytes] = []
        n = predictor.pack(parts)
        if lane.send(b"".join(parts), n):
            self.publishes += 1
        else:
            predictor.requeue()

    async def poll(self) -> bool:
        """Parse the replies that arrived (no wait); True once every owed one is in."""
        done = True
        for lane in list(self.routes.lanes.values()):
            if lane.owed:
                done = await lane.poll(yield_first=False) and done
        return done

    async def confirm(self) -> None:
        """Wait for the replies of the signals sent; count them as published."""
        await self._round([], lambda: False, lambda: None)

    async def publish(self) -> None:
        """XADD every pending signal, each to its master, and confirm those already sent
        (all are requeued when that fails)."""
        predictors = [s.predictor for s in self._states if s.predictor.unconfirmed]
        if not predictors:
            return
        if self.owed:
            await self.confirm()
        parts: list[bytes] = []
        slots: list[int] = []
        for predictor in predictors:
            n = predictor.pack(parts)
            slots += [self._slot(predictor.key)] * n
        if parts:
            self.publishes += 1
        try:
            await self._publish(slots, parts)
        except BaseException:
            for predictor in predictors:
                predictor.requeue()
            raise
        now_ns = time.time_ns()
        for predictor in predictors:
            predictor.published(now_ns)

    async def _publish(self, slots: list[int], parts: list[bytes]) -> None:
        for reply in await self.routes.send(slots, parts):
            if type(reply) is hiredis.ReplyError and DUPLICATE_ID not in str(reply):
                raise BaseParser.parse_error(str(reply))  # type: ignore[no-untyped-call]

    def _published(self, acked_ns: int) -> None:
        for state in self._states:
            state.predictor.published(acked_ns)

    def _requeue(self) -> None:
        for state in self._states:
            state.predictor.requeue()


def make(client: AsyncClient, read_count: int) -> WorkerLane | ClusterWorkerLane:
    """The worker lane for ``client``: :class:`ClusterWorkerLane` on a cluster client."""
    if isinstance(client, redis.asyncio.Redis):
        return WorkerLane(client, read_count)
    return ClusterWorkerLane(client, read_count)
