"""The worker's quarantine: tick stream entries it cannot use are set aside, never fatal.

An entry of a symbol's tick stream is **quarantined** when

* it does not decode (:class:`~tickcast.service.bus.codec.BusDecodeError`: another writer, an
  older encoding) -- kind ``undecodable``;
* it decodes but breaks the tick contract (:func:`tickcast.service.ticks.invalid_reason`, the
  one validation) or is a tick of another instrument -- kind ``invalid``;
* the learner raises on it, in ``update`` or in the learning ``update`` deferred to ``flush``
  -- kind ``learner``.

A quarantined entry is counted (``stats.quarantined``; ``stats.undecodable`` too when it did not
decode), logged with its reason (the first ones of each symbol and every
:data:`~tickcast.service.live.predictor.LOG_EVERY`-th), written to the symbol's quarantine
stream under its own stream ID (:mod:`tickcast.service.bus.quarantine`), and skipped: the
worker's position moves past it, and a restarted worker skips the IDs quarantined after its
checkpoint without looking at them again.

**The rebuild rule.** A learner that raised may be half-updated, and snapshotting before every
tick to undo one is far too slow (a snapshot costs about a millisecond; ticks arrive every
0.1 ms). So the learner is rebuilt instead (:meth:`Quarantine.rebuild`): restored from the
snapshot of its last checkpoint (kept in memory, ``state.good``), it is fed again the entries
after that checkpoint up to the one it raised on, read back from Redis, each learned at once
(``update`` then ``flush``), the quarantined ones left out. The first entry it raises on is
quarantined and the replay starts over without it; the replay that goes through is the new
learner, and the symbol reads on from Redis after that entry. Its samples already published are
not published again (a replayed prediction made anew is). A checkpoint follows at once, so that
the next rebuild (and a restart) replays little.

Because the learner is deterministic (same ticks in, same state out, whenever ``flush`` runs),
the result is the learner of the symbol's ticks less the quarantined ones -- what a worker that
never stopped has, and what a restarted one reaches: the restart invariant holds across a
quarantined tick. A learner that raises on a different tick at every replay is not
deterministic: after :data:`MAX_REPLAYS` replays every entry since the checkpoint is quarantined
(the learner restarts from the checkpoint) rather than replayed forever.

A rebuild costs a replay of at most ``worker.checkpoint_every_s`` seconds of the symbol's ticks
(about the learner's cost of those ticks), during which the worker's other symbols wait.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Final

from tickcast.service.bus import codec
from tickcast.service.bus.connection import AsyncClient
from tickcast.service.bus.keys import START_ID, id_key
from tickcast.service.bus.quarantine import (
    INVALID,
    LEARNER,
    UNDECODABLE,
    Quarantined,
    flat,
    write,
)
from tickcast.service.live.predictor import worth_logging
from tickcast.service.live.symbolstate import Learner, SymbolBook, SymbolState
from tickcast.service.ops.config import Settings
from tickcast.service.ops.logs import instrument_fields
from tickcast.service.ticks import Instrument, Tick, invalid_reason

log = logging.getLogger(__name__)

OTHER_INSTRUMENT: Final = "tick of another instrument"
MAX_REPLAYS: Final = 4
"""Replays of one rebuild before the entries since the checkpoint are quarantined instead."""
PAGE: Final = 1000
"""Entries per XRANGE page of a replay."""
NOT_DETERMINISTIC: Final = (
    f"not learned: the learner raised on a different tick at each of {MAX_REPLAYS} replays"
)


def tick_fault(tick: Tick, instrument: Instrument) -> str | None:
    """Why a decoded tick must not reach ``instrument``'s learner, or None: it breaks the tick
    contract (:func:`~tickcast.service.ticks.invalid_reason`) or belongs elsewhere.

    Examples
    --------
    >>> from tickcast.service.ticks import trade
    >>> btc = Instrument("sim", "BTC/USDT:USDT")
    >>> tick_fault(trade("sim", "BTC/USDT:USDT", 1, 0, 100.0, 0.5, 1), btc)
    >>> tick_fault(trade("sim", "BTC/USDT:USDT", 1, 0, 1e308, 0.5, 1), btc)
    'price out of range'
    >>> tick_fault(trade("sim", "ETH/USDT:USDT", 1, 0, 100.0, 0.5, 1), btc)
    'tick of another instrument'
    """
    if tick.symbol != instrument.symbol or tick.venue != instrument.venue:
        return OTHER_INSTRUMENT
    return invalid_reason(tick)


def describe(exc: BaseException) -> str:
    """``"<type>: <message>"`` of an exception, the reason of a ``learner`` quarantine."""
    return f"{type(exc).__name__}: {exc}"


def entry_fields(fields: Any) -> list[bytes]:
    """The fields of the entry behind ``fields`` (a raw or redis-py entry, or a decoded
    :class:`Tick` from the handoff, re-encoded as the stream holds it), flat."""
    if isinstance(fields, Tick):
        try:
            return flat(codec.encode(fields))
        except codec.BusEncodeError:
            return [b"repr", repr(fields).encode()]
    return flat(fields)


class Quarantine:
    """Quarantine entries and rebuild learners for a worker's symbols; see the module
    docstring.

    Parameters
    ----------
    client : redis.asyncio.Redis or redis.asyncio.cluster.RedisCluster
        Bytes-mode client.
    settings : Settings
        ``redis.quarantine_maxlen`` is used.
    book : SymbolBook
        The worker's symbols (their last good learners).
    """

    def __init__(self, client: AsyncClient, settings: Settings, book: SymbolBook):
        self.client = client
        self.maxlen = settings.redis.quarantine_maxlen
        self.book = book
        self.dirty = False
        """Set when an entry was quarantined or a learner raised (``state.fault``): the worker
        then rebuilds and writes (one flag to test per step, not every symbol)."""

    def reject(
        self, state: SymbolState, stream_id: bytes, fields: Any, kind: str, why: str
    ) -> None:
        """Quarantine the entry ``stream_id`` (``fields``: as :func:`entry_fields` takes them):
        count it, log it, queue it for the quarantine stream (:meth:`write`), never feed it
        again."""
        self.dirty = True
        stats = state.stats
        stats.quarantined += 1
        if kind == UNDECODABLE:
            stats.undecodable += 1
        state.skip.add(stream_id)
        state.quarantined.append(Quarantined(stream_id, kind, why, entry_fields(fields)))
        if worth_logging(stats.quarantined):
            log.warning(
                "%s: tick %s quarantined (%s: %s) into %s; %d so far "
                "(tickcast_worker_quarantined_ticks_total)",
                state.instrument,
                stream_id.decode(errors="replace"),
                kind,
                why,
                state.quarantine_key,
                stats.quarantined,
                extra=instrument_fields(state.instrument),
            )

    async def write(self, states: Iterable[SymbolState]) -> None:
        """Write the quarantined entries of ``states`` to their quarantine streams (each
        symbol's in one pipeline); they stay queued when Redis fails."""
        for state in states:
            if state.quarantined:
                await write(self.client, state.quarantine_key, self.maxlen, state.quarantined)
                state.quarantined.clear()

    def screen(self, state: SymbolState, stream_id: bytes, fields: Any) -> Tick | None:
        """The tick of a raw entry, or None when it is quarantined (undecodable, invalid)."""
        try:
            tick = codec.decode_flat(fields)
        except codec.BusDecodeError as exc:
            self.reject(state, stream_id, fields, UNDECODABLE, str(exc))
            return None
        why = tick_fault(tick, state.instrument)
        if why is not None:
            self.reject(state, stream_id, fields, INVALID, why)
            return None
        return tick

    # -- the rebuild ------------------------------------------------------------------------

    async def rebuild(self, state: SymbolState) -> int:
        """Rebuild ``state``'s learner after its fault (see the module docstring); return the
        entries consumed anew (1 when the learner raised in ``update``, else 0).

        A Redis error propagates with the fault still set: the symbol consumes nothing until a
        later call rebuilds it."""
        fault = state.fault
        if fault is None:
            return 0
        state.stats.learner_rebuilds += 1
        log.error(
            "%s: the learner raised %s %s tick %s; rebuilding it from its last checkpoint (at %s) "
            "and the ticks since, less those it raises on (quarantined into %s)",
            state.instrument,
            describe(fault.error),
            "after" if fault.consumed else "on",
            fault.stream_id,
            state.good_id,
            state.quarantine_key,
            extra=instrument_fields(state.instrument),
        )
        await self._check_trimmed(state)
        learned = False
        for _ in range(MAX_REPLAYS):
            state.learner = self.book.rebuild(state)
            if await self._replay(state, state.learner, fault.stream_id) is None:
                learned = True
                break
        if not learned:
            state.learner = self.book.rebuild(state)
            await self._replay(state, None, fault.stream_id)
        state.fault = None  # only now: a Redis error above leaves it for the next attempt
        state.predictor.sync_stats(state.learner, state.last_prediction)
        state.last_id = fault.stream_id
        state.live = False  # the handoff's queue went on: read on from Redis
        state.ckpt_now = True
        n = 0 if fault.consumed else 1
        state.ticks += n
        state.stats.ticks += n
        return n

    async def _replay(self, state: SymbolState, learner: Learner | None, upto: str) -> bytes | None:
        """Feed ``learner`` the entries after ``state.good_id`` up to ``upto`` (included), each
        learned at once, the quarantined ones left out; return the ID of the first entry it
        raises on (quarantined), or None. Without a learner, quarantine them all."""
        lower = "(" + state.good_id
        while True:
            page: Any = await self.client.xrange(state.ticks_key, min=lower, max=upto, count=PAGE)
            for raw_id, fields in page or ():
                if raw_id in state.skip:
                    continue
                tick = self.screen(state, raw_id, flat(fields))
                if tick is None:
                    continue
                if learner is None:
                    self.reject(state, raw_id, tick, LEARNER, NOT_DETERMINISTIC)
                    continue
                try:
                    predictions = learner.update(tick)
                    learner.flush()
                except Exception as exc:  # whatever the learner raises: it does no I/O
                    self.reject(state, raw_id, tick, LEARNER, describe(exc))
                    return bytes(raw_id)
                if predictions:
                    state.offer(predictions, tick.recv_ns)
                    state.last_prediction = predictions[-1]
            if not page or len(page) < PAGE:
                return None
            lower = "(" + page[-1][0].decode()

    async def _check_trimmed(self, state: SymbolState) -> None:
        """Count and log a replay that cannot be exact: the stream no longer holds the entries
        right after the last checkpoint."""
        if state.good_id == START_ID:
            return
        first: Any = await self.client.xrange(state.ticks_key, count=1)
        if first and id_key(first[0][0]) > id_key(state.good_id):
            state.stats.trimmed += 1
            log.warning(
                "%s: tick stream trimmed past the last checkpoint (%s, stream starts at %s): the "
                "rebuilt learner misses ticks; raise redis.tick_maxlen",
                state.instrument,
                state.good_id,
                first[0][0].decode(),
                extra=instrument_fields(state.instrument),
            )
