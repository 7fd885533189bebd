"""The worker: tick streams in, one online learner per (venue, symbol), signals out.

Each configured instrument (a venue and a symbol) has a
:class:`~tickcast.service.live.symbolstate.SymbolState`: its learner, the ID of the last tick
stream entry consumed and the sample time of the last signal published. One loop does, per step:

1. gets the next entries of each symbol's tick stream: one ``XREAD BLOCK`` over every stream
   after its last ID (``worker.read_count`` each), on a :class:`~tickcast.service.bus.resp.Lane`
   (commands packed once, replies parsed by hiredis); or, with a
   :class:`~tickcast.service.live.handoff.Handoff` (``tickcast run``), the entries the in-process
   ingester just wrote, once the symbol has caught up with its stream;
2. feeds each tick to its symbol's :class:`~tickcast.model.learner.OnlineLearner`, exactly as
   the backtest does (same ticks in, same signals and weights out);
3. turns the predictions into signals (:mod:`tickcast.service.live.predictor`) and writes their
   XADDs to Redis at once, skipping samples already published before a restart; the replies
   are read later (with the next XREAD, or when there is nothing else to do);
4. lets one learner that made a signal learn (``flush()``: ``update`` defers the learning of a
   sample boundary so that its signal goes out first);
5. checkpoints a symbol (:mod:`tickcast.service.bus.checkpoint`) every
   ``worker.checkpoint_every_samples`` samples or ``worker.checkpoint_every_s`` seconds, once
   its snapshot restores (:mod:`tickcast.service.live.symbolstate`).

No tick stops the worker: an entry that does not decode, breaks the tick contract or makes the
learner raise is quarantined (:mod:`tickcast.service.live.quarantine`): counted, logged,
written to the symbol's quarantine stream and skipped; a learner that raised is rebuilt from
its last checkpoint and the ticks since, without the quarantined ones, before the symbol reads
on. The other symbols are not affected.

:meth:`Worker.run` restores the checkpoints first and checkpoints every symbol on the way out
(:meth:`Worker.stop` or cancellation). Redis errors while running are retried with a capped
backoff: a worker outlives a Redis restart.

With a handoff, a symbol is read from Redis (``XREAD``, no ``BLOCK``) until a read returns fewer
than ``read_count`` entries: every entry written after that read is in the handoff, unless the
handoff broke since the read was sent (see :mod:`~tickcast.service.live.handoff`), which sends the
symbol back to Redis, as any later break does. Handed-off entries the read already returned
are skipped by stream ID.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from tickcast.service.bus import codec
from tickcast.service.bus.connection import AsyncClient
from tickcast.service.bus.keys import START_ID
from tickcast.service.bus.lease import SymbolLeases
from tickcast.service.bus.quarantine import INVALID, UNDECODABLE
from tickcast.service.feed.reconnect import REDIS_TRANSIENT
from tickcast.service.live.handoff import Handoff
from tickcast.service.live.quarantine import OTHER_INSTRUMENT, Quarantine
from tickcast.service.live.symbolstate import (
    Fault,
    Learner,
    LearnerFactory,
    LearnerLoader,
    SymbolBook,
    SymbolState,
    WorkerError,
)
from tickcast.service.live.workerlane import make as make_lane
from tickcast.service.ops.config import Settings
from tickcast.service.ops.metrics import SymbolStats
from tickcast.service.ticks import Instrument, Tick, invalid_reason

__all__ = ["START_ID", "Learner", "SymbolState", "Worker", "WorkerError"]

log = logging.getLogger(__name__)

FRESH_NS = 1_000_000_000
"""A signal made on a tick received less than this long ago (ns) is published at once."""
RETRYABLE = (*REDIS_TRANSIENT, ConnectionError, OSError)


class Worker:
    """Own some instruments (venue, symbol), of one venue or several; see the module docstring.

    Parameters
    ----------
    client : redis.asyncio.Redis or redis.asyncio.cluster.RedisCluster
        Bytes-mode client (:func:`tickcast.service.connection.connect`).
    settings : Settings
        ``redis.prefix``, ``redis.signal_maxlen`` and the ``worker`` section are used.
    instruments : sequence of Instrument, optional
        (venue label, unified symbol) pairs; default ``settings.exchange.instruments()``.
    stats : mapping of Instrument to SymbolStats, optional
        Counter objects to bump (``Metrics.symbol_stats``); private ones otherwise.
    learner_factory, learner_loader : callable, optional
        Make a fresh learner for a symbol / restore one from a snapshot (default: the
        ``OnlineLearner`` of :mod:`tickcast.model.learner`).
    handoff : Handoff, optional
        The in-process ingester's handoff (its ``TickWriter.tap``); without one, every tick
        is read from Redis.
    leases : SymbolLeases, optional
        Ownership of the symbols (:mod:`tickcast.service.bus.lease`), one per instrument named
        ``venue:symbol``: taken before the checkpoints are restored, renewed while running,
        given back after the final checkpoint. One that expired while Redis was out of reach
        is taken back if nobody took it and nobody checkpointed its symbol meanwhile; losing
        one otherwise stops the worker (:class:`WorkerError`) without checkpointing.
    """

    def __init__(
        self,
        client: AsyncClient,
        settings: Settings,
        *,
        instruments: Sequence[Instrument] | None = None,
        stats: dict[Instrument, SymbolStats] | None = None,
        learner_factory: LearnerFactory | None = None,
        learner_loader: LearnerLoader | None = None,
        handoff: Handoff | None = None,
        leases: SymbolLeases | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.cfg = settings.worker
        self.book = SymbolBook(
            client,
            settings,
            instruments if instruments is not None else settings.exchange.instruments(),
            stats=stats,
            learner_factory=learner_factory,
            learner_loader=learner_loader,
        )
        self.instruments = self.book.instruments
        self.book.owner = leases.token if leases is not None else ""
        self.states = self.book.states
        self._by_key = self.book.by_key
        self._stop = asyncio.Event()
        self.last_tick_monotonic = 0.0
        self.restored = False
        self.redis_errors = 0
        self.handed_off = 0
        """Ticks taken from the handoff rather than read from Redis."""
        self.handoff = handoff
        self.leases = leases
        self.lost: list[str] = []
        """Symbols whose lease was lost (the worker then stops without checkpointing)."""
        self.io = make_lane(client, self.cfg.read_count)
        self.quarantine = Quarantine(client, settings, self.book)
        self._touched: list[SymbolState] = []

    @property
    def reads(self) -> int:
        """XREADs sent (each one Redis round trip)."""
        return self.io.reads

    @property
    def publishes(self) -> int:
        """Signal batches sent."""
        return self.io.publishes

    # -- start ------------------------------------------------------------------------------

    async def restore(self) -> None:
        """Own the symbols (with leases: waits until they are free, or :meth:`stop`, which
        leaves :attr:`restored` False), then load each symbol's checkpoint (or make a fresh
        learner) and its publish mark."""
        if self.leases is not None and not await self.leases.acquire(self._stop):
            return
        await self.book.restore()
        self.io.use(list(self.states.values()))
        self.restored = True

    # -- the loop ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to finish the current step, checkpoint and return."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop.is_set()

    async def run(self, drain_s: float = 3.0) -> None:
        """Restore, then step until :meth:`stop` or cancellation; checkpoint on the way out.

        After :meth:`stop` the ticks already in the streams are still processed (for at most
        ``drain_s`` seconds), so that a clean stop leaves nothing to replay.
        """
        if not self.restored:
            await self.restore()
            if not self.restored:
                return  # stopped while waiting for the symbols
        delay = 0.05
        try:
            while not self._stop.is_set():
                try:
                    await self.step()
                    delay = 0.05
                except RETRYABLE as exc:
                    self.redis_errors += 1
                    log.warning("worker: Redis error (%s); retrying in %.2f s", exc, delay)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), delay)
                    delay = min(delay * 2.0, 2.0)
            deadline = time.monotonic() + drain_s
            with contextlib.suppress(*RETRYABLE):
                while time.monotonic() < deadline and await self.step(block_ms=0):
                    pass
        finally:
            await asyncio.shield(self._final_checkpoint())

    async def _final_checkpoint(self) -> None:
        if self.lost:
            log.error("worker: no final checkpoint: %s owned by another worker", self.lost)
            return
        try:
            await self.io.publish()
            self._settle()
            await self._rebuild_faulted()
            await self.io.publish()
            await self.checkpoint(force=True)
            if self.leases is not None:
                await self.leases.release()
        except RETRYABLE as exc:
            log.error("worker: final checkpoint failed, Redis unreachable: %s", exc)

    async def step(self, block_ms: int | None = None) -> int:
        """Read, learn, publish and checkpoint once; return the ticks processed.

        ``block_ms`` overrides ``worker.block_ms`` (0 = do not block). Each stream is processed
        up to its next signal made on a fresh tick (received less than :data:`FRESH_NS` ago),
        and a stream's signals are written to Redis as soon as they are made; their replies
        are read with the next XREAD's (or when idle).

        Learning comes last: ``update`` defers a boundary's learning to ``flush()``, and the
        learners that made signals learn one at a time while the next ticks are on their way,
        until they arrive (or all of them when no tick came). Every symbol crosses a boundary
        at about the same time: the signal of a tick arriving meanwhile thus waits for at most
        one learner's learning, not every symbol's.
        """
        block = self.cfg.block_ms if block_ms is None else block_ms
        if self.leases is not None and self.leases.due():
            await self._keep_leases(self.leases)
        await self.book.refresh_status()  # every second; before a read can skip trimmed ticks
        if self.handoff is None:
            reply = await self._read(block, list(self.states.values()))
            n = self._sweep(self._cursors(reply), decoded=False)
        else:
            n = await self._step_handoff(self.handoff, block)
        if any(s.predictor.pending for s in self.states.values()):
            await self.io.publish()  # the lane was down: send them the slow way
        if n:
            self.last_tick_monotonic = time.monotonic()
        else:
            self._settle()
        if self.quarantine.dirty:
            n += await self._rebuild_faulted()
            await self.io.publish()  # a rebuild may have made signals
        await self._maybe_checkpoint()
        return n

    async def _keep_leases(self, leases: SymbolLeases) -> None:
        """Renew the leases; a lease that expired while Redis was out of reach is taken back
        when nobody took it and nobody checkpointed its symbol since (else it is lost)."""
        lost = await leases.renew(retake=True)
        if leases.retaken:
            lost += await self._checkpointed_by_others(leases.retaken)
        if lost:
            self.lost = lost
            raise WorkerError(
                f"lost ownership of {', '.join(lost)} (lease expired or taken): stopping without "
                "checkpointing them; another worker owns them now"
            )

    async def _checkpointed_by_others(self, names: Sequence[str]) -> list[str]:
        """Those of ``names`` (instruments as ``venue:symbol``) whose checkpoint in Redis was
        written by another worker since this one last wrote or restored it (its ``owner`` is
        not this worker's token, its ``saved_ms`` not the one restored)."""
        by_name = {str(i): s for i, s in self.states.items()}
        states = [by_name[n] for n in names if n in by_name]
        pipe = self.client.pipeline(transaction=False)
        for state in states:
            pipe.hmget(state.ckpt_key, ["saved_ms", "owner"])
        found = await pipe.execute()
        mine = self.book.owner.encode()
        return [
            str(state.instrument)
            for state, (saved, owner) in zip(states, found, strict=True)
            if owner != mine and int(saved or 0) != state.saved_ms
        ]

    def _cursors(self, reply: Any) -> list[list[Any]]:
        """``[state, entries, 0]`` per stream of an XREAD reply."""
        by_key = self._by_key
        return [[by_key[key], entries, 0] for key, entries in reply or ()]

    def _sweep(self, cursors: list[list[Any]], *, decoded: bool) -> int:
        """Consume every cursor's entries, each stream up to its next fresh signal in turn
        (whose XADD is sent at once); return the entries consumed."""
        n = 0
        send = self.io.send
        while cursors:
            for cursor in cursors:
                state, entries, i = cursor
                cursor[2] = self._consume(state, entries, i, decoded)
                n += cursor[2] - i
                if state.predictor.pending:
                    send(state.predictor)
            cursors = [c for c in cursors if c[2] < len(c[1]) and c[0].fault is None]
        return n

    # -- the handoff ------------------------------------------------------------------------

    async def _step_handoff(self, handoff: Handoff, block_ms: int) -> int:
        """Catch the symbols not yet live up from Redis (one XREAD, no BLOCK), or wait for the
        handoff when every symbol is live and nothing is queued; then take what it holds."""
        reading = [s for s in self.states.values() if not s.live]
        n = 0
        if reading:
            marks = [handoff.breaks[s.instrument] for s in reading]
            reply = await self._read(0, reading)
            cursors = self._cursors(reply)
            got = {id(c[0]): len(c[1]) for c in cursors}
            n += self._sweep(cursors, decoded=False)
            for state, mark in zip(reading, marks, strict=True):
                if got.get(id(state), 0) < self.cfg.read_count:  # the stream's end was reached
                    handoff.join(state, mark)  # (a break since the read sends it back)
        elif not handoff.pending():
            await self._idle(handoff, block_ms)
        taken = handoff.take(self.states.values())
        self.handed_off += sum(len(c[1]) for c in taken)
        n += self._sweep(taken, decoded=True)
        if self.io.owed and await self.io.poll():
            await self.io.confirm()  # every reply is in: counted as acknowledged now, not later
        return n

    async def _idle(self, handoff: Handoff, block_ms: int) -> None:
        """Nothing queued: let the learners that made signals learn, confirm the signals sent,
        then wait up to ``block_ms`` for the handoff."""
        wake, io = handoff.wake, self.io
        wake.clear()
        while self._touched:
            self._settle(1)
            await asyncio.sleep(0)
            if io.owed and await io.poll():
                await io.confirm()
            if handoff.pending():
                return
        if io.owed:
            await io.confirm()
            if handoff.pending():
                return
        if block_ms:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(block_ms / 1000.0):
                    await wake.wait()

    async def _read(self, block_ms: int, states: Sequence[SymbolState]) -> Any:
        """One XREAD over ``states``' tick streams; the learners that made signals learn,
        one at a time, until its answer arrives."""
        return await self.io.read(block_ms, states, self._learning_left, self._settle_one)

    def _learning_left(self) -> bool:
        return bool(self._touched)

    def _settle_one(self) -> None:
        self._settle(1)

    def _settle(self, limit: int | None = None) -> None:
        """Let up to ``limit`` (default all) learners that made signals learn (``flush()``),
        oldest first, then copy their stats."""
        touched = self._touched
        k = len(touched) if limit is None else min(limit, len(touched))
        for state in touched[:k]:
            if state.fault is None:
                try:
                    state.learner.flush()
                except Exception as exc:  # the deferred learning of the last tick consumed
                    state.fault = Fault(state.last_id, exc, consumed=True)
                    self.quarantine.dirty = True
                else:
                    state.predictor.sync_stats(state.learner, state.last_prediction)
            state.last_prediction = None
        del touched[:k]

    def _consume(self, state: SymbolState, entries: list[Any], start: int, decoded: bool) -> int:
        """Feed ``entries[start:]`` (``(id, fields)`` pairs, ``(id, tick)`` if ``decoded``) to
        the symbol's learner, stopping after a tick that made a signal while fresh, or at one
        the learner raised on (``state.fault``; it is rebuilt before the symbol goes on);
        quarantine the entries it must not see; return the index of the first entry not
        consumed."""
        if state.fault is not None:
            return start
        learner, stats, (venue, symbol) = state.learner, state.stats, state.instrument
        update, decode, observe_lag = learner.update, codec.decode_flat, stats.feed_lag.observe
        skip, reject, invalid = state.skip, self.quarantine.reject, invalid_reason
        last_event_ms = stats.last_event_ms
        fresh_after = time.time_ns() - FRESH_NS
        end = len(entries)
        i = start
        while i < end:
            raw_id, fields = entries[i]
            i += 1
            if skip and raw_id in skip:
                continue  # quarantined already (by an earlier run)
            if decoded:
                tick: Tick = fields
            else:
                try:
                    tick = decode(fields)
                except codec.BusDecodeError as exc:
                    reject(state, raw_id, fields, UNDECODABLE, str(exc))
                    continue
            if tick.symbol != symbol or tick.venue != venue:  # tick_fault(), inlined
                reject(state, raw_id, fields, INVALID, OTHER_INSTRUMENT)
                continue
            why = invalid(tick)
            if why is not None:
                reject(state, raw_id, fields, INVALID, why)
                continue
            try:
                predictions = update(tick)
            except Exception as exc:  # whatever the learner raises: it does no I/O
                state.fault = Fault(raw_id.decode(), exc, consumed=False)
                self.quarantine.dirty = True
                i -= 1
                break
            last_event_ms = tick.event_ms
            observe_lag((tick.recv_ns * 1e-6 - last_event_ms) * 1e-3)
            if predictions:
                new = state.offer(predictions, tick.recv_ns)
                stats.samples += len(predictions)
                if state.last_prediction is None:
                    self._touched.append(state)
                state.last_prediction = predictions[-1]
                if new and tick.recv_ns > fresh_after:
                    break
        if i > start:
            state.last_id = entries[i - 1][0].decode()
        state.ticks += i - start
        stats.ticks += i - start
        stats.last_event_ms = last_event_ms
        return i

    async def _rebuild_faulted(self) -> int:
        """Rebuild the learners that raised (:meth:`Quarantine.rebuild`) and write the
        quarantined entries; return the entries consumed anew."""
        n = 0
        for state in self.states.values():
            if state.fault is not None:
                n += await self.quarantine.rebuild(state)
                if state.last_prediction is not None and state not in self._touched:
                    self._touched.append(state)  # its stats are copied with the others'
        await self.quarantine.write(self.states.values())
        self.quarantine.dirty = False  # (left set when Redis failed above)
        return n

    # -- checkpoints ------------------------------------------------------------------------

    async def _maybe_checkpoint(self) -> None:
        """Checkpoint one symbol due for it, if any: a verified checkpoint holds the loop for
        about 1.5 ms (snapshot, restore, MULTI), so symbols due together (they cross sample
        boundaries together) are spread over consecutive steps."""
        due = self.book.due()
        if due:
            await self.io.publish()  # a checkpoint never runs ahead of acknowledged signals
            state = max(due, key=lambda s: s.ckpt_now)  # a rebuilt one first
            await self.book.checkpoint([state])
            self.quarantine.dirty |= state.fault is not None  # its snapshot raised

    async def checkpoint(
        self, states: Sequence[SymbolState] | None = None, *, force: bool = False
    ) -> None:
        """Checkpoint ``states`` (default all; unchanged ones only with ``force``), after
        writing their quarantined entries; a learner that raised is not checkpointed."""
        await self.quarantine.write(self.states.values())
        await self.book.checkpoint(states, force=force)
        self.quarantine.dirty |= any(s.fault is not None for s in self.states.values())
