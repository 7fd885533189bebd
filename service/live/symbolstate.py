"""What the worker keeps per symbol: its learner, stream position and checkpoint bookkeeping.

:class:`SymbolBook` holds one :class:`SymbolState` per symbol: it restores them from their
checkpoints (:mod:`tickcast.service.bus.checkpoint`), says which are due for a new one and writes
them.

Checkpoints are defended on both sides:

* **verified before they are written**: a snapshot is restored with the learner loader (and
  its horizon and sample interval checked) before it replaces the previous checkpoint; one
  that would not restore is not written (``stats.checkpoints_refused``, an ERROR line), and
  the previous checkpoint stays;
* **set aside when unreadable at start**: a checkpoint that does not load or restore (not a
  hash, an unknown version, a snapshot the loader refuses) is renamed aside
  (:func:`~tickcast.service.bus.checkpoint.set_aside`; ``stats.checkpoints_unreadable``, an
  ERROR line naming the new key) and the symbol starts as on a first start: a fresh learner
  reads its tick stream **from the start** (what ``redis.tick_maxlen`` kept), the ticks
  quarantined before excepted, and publishes no sample already in its signal stream. From the
  start rather than from the stream's end: the learner gets back every tick still retained,
  the result is what a backtest of the stream gives, and one rule serves both starts. A
  checkpoint made with other horizons or another sample interval is a configuration mistake,
  not damage: it still stops the worker (:class:`WorkerError`).

Horizons. With ``worker.extra_horizons_ms`` each symbol's learner is a
:class:`~tickcast.model.horizons.MultiHorizonLearner` (one learner per horizon over one set of
features; its checkpoints hold every horizon); without, it is a plain
:class:`~tickcast.model.learner.OnlineLearner`, checkpoints included, as before extra horizons
existed. A checkpoint restores only into the same horizons (``horizon_ms`` first, then
``extra_horizons_ms``, in that order).

A symbol without a usable checkpoint starts from ``worker.init_model`` when it is set (a model
file written by ``tickcast train``, read and checked once when the book is made: see
:class:`DefaultLearnerFactory`); with extra horizons the model starts the first horizon's
learner (a model is trained for one horizon) and the others start fresh. A symbol restored
from its checkpoint never looks at it.

Each state keeps the snapshot of its last checkpoint written or restored (``good``, at
``good_id``): the worker rebuilds a learner that raised from it
(:mod:`tickcast.service.live.quarantine`).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis
import redis.asyncio

from tickcast.model.horizons import horizons_of, learner_for, load_learner
from tickcast.service import TickcastError
from tickcast.service.bus import keys
from tickcast.service.bus.checkpoint import (
    Checkpoint,
    last_published_t,
    load,
    queue_status,
    save,
    set_aside,
)
from tickcast.service.bus.connection import AsyncClient
from tickcast.service.bus.keys import START_ID, id_key
from tickcast.service.bus.quarantine import Quarantined, quarantined_after
from tickcast.service.live.predictor import Predictor
from tickcast.service.ops.config import Settings
from tickcast.service.ops.logs import instrument_fields
from tickcast.service.ops.metrics import SymbolStats
from tickcast.service.ticks import Instrument

log = logging.getLogger(__name__)

STATUS_EVERY_S = 1.0
"""How often the live ``samples`` / ``ticks`` counts of the checkpoint hashes are refreshed."""


class WorkerError(TickcastError):
    """The worker cannot run (e.g. a checkpoint made with other learner settings)."""


class Learner(Protocol):
    """What the worker needs from :class:`~tickcast.model.learner.OnlineLearner` (or
    :class:`~tickcast.model.horizons.MultiHorizonLearner`)."""

    @property
    def horizon_ms(self) -> int:
        """The (first) horizon, ms."""
        ...

    @property
    def sample_ms(self) -> int:
        """The sample interval, ms."""
        ...

    def update(self, tick: Any) -> Sequence[Any]:
        """Feed one tick; return the predictions of the samples it closed."""
        ...

    def flush(self) -> None:
        """Do the learning that ``update`` deferred."""
        ...

    def snapshot(self) -> bytes:
        """Serialise the whole learner."""
        ...


LearnerFactory = Callable[[str], Learner]
LearnerLoader = Callable[[bytes], Learner]


def learner_kwargs(settings: Settings) -> dict[str, Any]:
    """The arguments of the worker's :class:`~tickcast.model.learner.OnlineLearner` (of its
    first horizon): the ``worker`` clock settings, every other hyperparameter the default
    (seed 0)."""
    return {"horizon_ms": settings.worker.horizon_ms, "sample_ms": settings.worker.sample_ms}


def worker_horizons(settings: Settings) -> tuple[int, ...]:
    """The worker's horizons, ms: ``worker.horizon_ms``, then ``worker.extra_horizons_ms``."""
    return (settings.worker.horizon_ms, *settings.worker.extra_horizons_ms)


class DefaultLearnerFactory:
    """``symbol -> learner`` with the ``worker`` settings: an ``OnlineLearner``, or with
    ``worker.extra_horizons_ms`` a :class:`~tickcast.model.horizons.MultiHorizonLearner`
    (:func:`~tickcast.model.horizons.learner_for`); with ``worker.init_model``, each learner's
    first horizon is warm-started from that model file (read and checked once, here).

    Raises
    ------
    ModelFileError
        ``worker.init_model`` is unreadable, or does not fit the worker's learner.
    """

    def __init__(self, settings: Settings) -> None:
        self.kwargs = learner_kwargs(settings)
        self.extra_horizons_ms = tuple(settings.worker.extra_horizons_ms)
        self.init_model = settings.worker.init_model
        self.model: dict[str, Any] | None = None
        if self.init_model is not None:
            from tickcast.service.offline.modelfile import load_init_model

            self.model = load_init_model(self.init_model, self.kwargs)

    def __call__(self, symbol: str) -> Learner:
        """A fresh learner for ``symbol`` (warm-started with ``worker.init_model``)."""
        learner = learner_for(self.kwargs, self.extra_horizons_ms)
        if self.model is not None:  # a copy: learners started from one model share no array
            learner.warm_start(copy.deepcopy(self.model))
        return learner


def default_learner_factory(settings: Settings) -> LearnerFactory:
    """Return ``symbol -> learner`` with the ``worker`` settings (seed 0), started from
    ``worker.init_model`` when set (see :class:`DefaultLearnerFactory`)."""
    return DefaultLearnerFactory(settings)


def check_init_model(settings: Settings) -> None:
    """Read and check ``worker.init_model`` (when set) against the worker's learner; raise
    :class:`~tickcast.service.offline.modelfile.ModelFileError` if it cannot start it. The
    commands call it before anything connects."""
    if settings.worker.init_model is not None:
        DefaultLearnerFactory(settings)


def default_learner_loader(data: bytes) -> Learner:
    """Restore a checkpoint's learner of either kind
    (:func:`~tickcast.model.horizons.load_learner`: an ``OnlineLearner``, or a
    ``MultiHorizonLearner``)."""
    learner: Learner = load_learner(data)
    return learner


def _ms(horizons: Sequence[int]) -> str:
    """Horizons for a message: ``1000, 10000 ms``."""
    return ", ".join(str(h) for h in horizons) + " ms"


@dataclass(frozen=True, slots=True)
class Fault:
    """The learner of a symbol raised: on the entry ``stream_id`` (``consumed`` False: in
    ``update``) or in the learning deferred after it (``consumed`` True: in ``flush``)."""

    stream_id: str
    error: Exception
    consumed: bool


@dataclass
class SymbolState:
    """One instrument's learner, stream position and checkpoint bookkeeping.

    ``live`` is True while the symbol's ticks come from the in-process handoff
    (:mod:`tickcast.service.live.handoff`) rather than from XREAD; ``breaks`` is the handoff's break
    count it last saw, and ``behind`` the stream ID below which handed-off entries were
    already read from Redis (set when it goes live, cleared at the first newer entry).

    Quarantine (:mod:`tickcast.service.live.quarantine`): ``good`` is the snapshot of the last
    checkpoint written or restored (None: a fresh learner), taken at the stream ID
    ``good_id``; ``skip`` the IDs after ``good_id`` already quarantined (never fed again);
    ``quarantined`` the entries quarantined and not yet written to the quarantine stream;
    ``fault`` set when the learner raised, until it is rebuilt; ``ckpt_now`` asks for a
    checkpoint at the end of the step (after a rebuild).
    """

    instrument: Instrument
    learner: Learner
    ticks_key: str
    ckpt_key: str
    predictor: Predictor
    stats: SymbolStats
    last_id: str = START_ID
    last_published: int = 0
    ticks: int = 0
    samples_at_ckpt: int = 0
    ticks_at_ckpt: int = 0
    ticks_at_status: int = 0
    last_prediction: Any = None
    ckpt_monotonic: float = field(default_factory=time.monotonic)
    live: bool = False
    breaks: int = 0
    behind: tuple[int, int] | None = None
    quarantine_key: str = ""
    good: bytes | None = None
    good_id: str = START_ID
    skip: set[bytes] = field(default_factory=set)
    quarantined: list[Quarantined] = field(default_factory=list)
    fault: Fault | None = None
    ckpt_now: bool = False
    saved_ms: int = 0
    """``saved_ms`` of the checkpoint this worker last wrote or restored (0: none): another
    value in Redis means another worker checkpointed the symbol since."""

    @property
    def symbol(self) -> str:
        """The unified symbol."""
        return self.instrument.symbol

    def offer(self, predictions: Sequence[Any], recv_ns: int) -> int:
        """Hand the predictions a tick received at ``recv_ns`` made to the predictor, except
        samples already published (counted as deduplicated); return how many were new."""
        new = 0
        for p in predictions:
            if p.t_ms > self.last_published:
                self.predictor.add(p, self.learner, recv_ns)
                self.last_published = p.t_ms
                new += 1
            else:
                self.stats.duplicates_skipped += 1
        return new


class SymbolBook:
    """The worker's instruments: their states, restored from and saved to checkpoints.

    Parameters
    ----------
    client : redis.asyncio.Redis or redis.asyncio.cluster.RedisCluster
        Bytes-mode client.
    settings : Settings
        ``redis.prefix``, ``redis.signal_maxlen`` and the ``worker`` section are used.
    instruments : iterable of Instrument
        (venue label, unified symbol) pairs.
    stats : mapping of Instrument to SymbolStats, optional
        Counter objects to bump (``Metrics.symbol_stats``); private ones otherwise.
    learner_factory, learner_loader : callable, optional
        Make a fresh learner / restore one from a snapshot (default: ``OnlineLearner``,
        fresh ones started from ``worker.init_model`` when set).
    """

    def __init__(
        self,
        client: AsyncClient,
        settings: Settings,
        instruments: Iterable[Instrument],
        *,
        stats: dict[Instrument, SymbolStats] | None = None,
        learner_factory: LearnerFactory | None = None,
        learner_loader: LearnerLoader | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.instruments = tuple(instruments)
        self.cfg = settings.worker
        self._stats = stats if stats is not None else {}
        self._factory = learner_factory or default_learner_factory(settings)
        self._loader = learner_loader or default_learner_loader
        self.owner = ""
        """Lease token written into each checkpoint (who checkpointed a symbol)."""
        self.states: dict[Instrument, SymbolState] = {}
        self.by_key: dict[bytes, SymbolState] = {}
        """The states by tick stream key."""
        self._status_monotonic = 0.0

    async def restore(self) -> None:
        """Load each symbol's checkpoint (or make a fresh learner), its publish mark and the
        IDs quarantined after its position; set unreadable checkpoints aside.

        Raises
        ------
        WorkerError
            A checkpoint was made with another horizon or sample interval.
        """
        prefix = self.settings.redis.prefix
        for instrument in self.instruments:
            venue, symbol = instrument
            ckpt_key = keys.ckpt_key(prefix, venue, symbol)
            signals_key = keys.signals_key(prefix, venue, symbol)
            stats = self._stats.setdefault(instrument, SymbolStats())
            ckpt, learner = await self._load(instrument, ckpt_key, stats)
            predictor = Predictor(
                venue, symbol, signals_key, self.settings.redis.signal_maxlen, stats
            )
            ticks_key = keys.ticks_key(prefix, venue, symbol)
            state = SymbolState(instrument, learner, ticks_key, ckpt_key, predictor, stats)
            state.quarantine_key = keys.quarantine_key(prefix, venue, symbol)
            if ckpt is not None:
                state.last_id, state.last_published = ckpt.last_id, ckpt.last_t
                state.ticks = state.ticks_at_ckpt = state.ticks_at_status = ckpt.ticks
                state.good, state.good_id = ckpt.model, ckpt.last_id
                stats.samples = ckpt.samples
                stats.checkpoint_wall_s = ckpt.saved_ms / 1000.0
                state.saved_ms = ckpt.saved_ms
            published = await last_published_t(self.client, signals_key)
            state.last_published = max(state.last_published, published)
            state.skip = await quarantined_after(self.client, state.quarantine_key, state.last_id)
            predictor.sync_stats(learner)
            state.samples_at_ckpt = stats.samples
            self.states[instrument] = state
            self.by_key[ticks_key.encode()] = state
            log.info(
                "%s %s: %s at tick stream ID %s, last signal t=%d%s",
                venue,
                symbol,
                "restored" if ckpt is not None else self._fresh_what(),
                state.last_id,
                state.last_published,
                f", {len(state.skip)} quarantined ticks ahead skipped" if state.skip else "",
            )
        await self.check_trimmed()

    def _fresh_what(self) -> str:
        """How a symbol without a checkpoint starts, for the log."""
        model = getattr(self._factory, "init_model", None)
        return "fresh learner" if model is None else f"fresh learner from the model {model}"

    async def _load(
        self, instrument: Instrument, key: str, stats: SymbolStats
    ) -> tuple[Checkpoint | None, Learner]:
        """The checkpoint in ``key`` and its learner; no checkpoint and a fresh learner when
        there is none or it would not restore (then it is set aside). Redis errors propagate."""
        try:
            ckpt = await load(self.client, key)
            learner = None if ckpt is None else self._loader(ckpt.model)
        except Exception as exc:
            if isinstance(exc, redis.RedisError | OSError):
                raise  # Redis out of reach or refusing: the checkpoint itself may be fine
            await self._set_aside(instrument, key, stats, exc)
            return None, self._factory(instrument.symbol)
        if ckpt is None or learner is None:
            return None, self._factory(instrument.symbol)
        self._check_clock(
            learner,
            f"checkpoint {key} of {instrument.symbol}",
            f" (redis-cli DEL '{key}': the symbol then learns again from its tick stream)",
        )
        return ckpt, learner

    async def _set_aside(
        self, instrument: Instrument, key: str, stats: SymbolStats, exc: Exception
    ) -> None:
        aside = await set_aside(self.client, key)
        stats.checkpoints_unreadable += 1
        log.error(
            "%s: checkpoint %s would not restore (%s: %s); moved aside to %s. The symbol starts "
            "afresh: a new learner reads its tick stream from the start, skipping the ticks "
            "quarantined before, and publishes no sample already in its signal stream",
            instrument,
            key,
            type(exc).__name__,
            exc,
            aside,
            extra=instrument_fields(instrument),
        )

    def _check_clock(self, learner: Learner, what: str, how: str = "") -> None:
        """Raise :class:`WorkerError` when ``learner`` runs on other horizons or another sample
        interval than the settings (``how``: how to delete the checkpoint)."""
        want = (worker_horizons(self.settings), self.cfg.sample_ms)
        got = (horizons_of(learner), learner.sample_ms)
        if got != want:
            raise WorkerError(
                f"{what} was made with horizons {_ms(got[0])} and sample interval {got[1]} ms, "
                f"settings ask for horizons {_ms(want[0])} and {want[1]} ms "
                "(worker.horizon_ms, worker.extra_horizons_ms, worker.sample_ms): use the same "
                f"settings or delete the checkpoint{how}"
            )

    def rebuild(self, state: SymbolState) -> Learner:
        """A learner in ``state``'s last good state: its last checkpoint's (``state.good``),
        or a fresh one."""
        if state.good is None:
            return self._factory(state.symbol)
        return self._loader(state.good)

    def refusal(self, snapshot: bytes) -> str | None:
        """Why ``snapshot`` must not become a checkpoint (it does not restore, or restores
        with another clock), or None."""
        try:
            learner = self._loader(snapshot)
            self._check_clock(learner, "the snapshot")
        except Exception as exc:  # whatever the loader raises: no I/O there
            return f"{type(exc).__name__}: {exc}"
        return None

    async def refresh_status(self) -> None:
        """Every :data:`STATUS_EVERY_S`, in one round trip: write the changed ``samples`` /
        ``ticks`` counts and :meth:`check_trimmed`."""
        now = time.monotonic()
        if now - self._status_monotonic < STATUS_EVERY_S:
            return
        self._status_monotonic = now
        pipe = self.client.pipeline(transaction=False)
        for s in self.states.values():
            if s.ticks != s.ticks_at_status:
                queue_status(pipe, s.ckpt_key, s.stats.samples, s.ticks)
                s.ticks_at_status = s.ticks
        await self.check_trimmed(pipe)

    async def check_trimmed(self, pipe: Any = None) -> None:
        """Count (``stats.trimmed``) and log each symbol whose tick stream now starts after the
        worker's position: ``MAXLEN`` trimmed ticks the worker had not read (it fell behind by
        more than ``redis.tick_maxlen``, or was down that long). A stream trimmed exactly up to
        the position is indistinguishable in Redis < 7 and counted too.

        ``pipe``: a pipeline with other commands queued, executed together with the check."""
        pipe = pipe if pipe is not None else self.client.pipeline(transaction=False)
        states = [s for s in self.states.values() if s.last_id != START_ID]
        for state in states:
            pipe.xrange(state.ticks_key, count=1)
        if not len(pipe):
            return
        replies = await pipe.execute()
        firsts = replies[len(replies) - len(states) :]
        for state, first in zip(states, firsts, strict=True):
            if first and id_key(first[0][0]) > id_key(state.last_id):
                state.stats.trimmed += 1
                log.warning(
                    "%s: tick stream trimmed past the worker's position %s (it starts at %s): "
                    "ticks were missed; raise redis.tick_maxlen or keep the worker up",
                    state.instrument,
                    state.last_id,
                    first[0][0].decode(),
                    extra=instrument_fields(state.instrument),
                )

    def due(self) -> list[SymbolState]:
        """The states due for a checkpoint (``worker.checkpoint_every_samples`` / ``_s``, or
        asked for with ``ckpt_now``)."""
        now, cfg = time.monotonic(), self.cfg
        return [
            s
            for s in self.states.values()
            if s.ckpt_now
            or s.stats.samples - s.samples_at_ckpt >= cfg.checkpoint_every_samples
            or (now - s.ckpt_monotonic >= cfg.checkpoint_every_s and s.ticks > s.ticks_at_ckpt)
        ]

    async def checkpoint(
        self, states: Sequence[SymbolState] | None = None, *, force: bool = False
    ) -> None:
        """Checkpoint ``states`` (default all; unchanged ones only with ``force``), each once
        its snapshot restores; never a state whose learner raised and is not rebuilt yet, and
        never ahead of its quarantined entries (write them first)."""
        for state in states if states is not None else list(self.states.values()):
            if state.fault is not None or state.quarantined:
                continue
            if not force and not state.ckpt_now and state.ticks == state.ticks_at_ckpt:
                continue
            snapshot = self._snapshot(state)
            if snapshot is not None:
                await self._save(state, snapshot)

    def _snapshot(self, state: SymbolState) -> bytes | None:
        """``state``'s learner snapshot if it restores; None (counted, logged, the cadence
        restarted) otherwise, or when the snapshot itself raised (a fault of the learner)."""
        state.ckpt_now = False
        try:
            snapshot = state.learner.snapshot()  # flushes the deferred learning first
        except Exception as exc:
            state.fault = Fault(state.last_id, exc, consumed=True)
            return None
        refusal = self.refusal(snapshot)
        if refusal is None:
            return snapshot
        state.samples_at_ckpt = state.stats.samples
        state.ckpt_monotonic = time.monotonic()
        state.stats.checkpoints_refused += 1
        log.error(
            "%s: checkpoint NOT written: the learner's snapshot at %s would not restore (%s); "
            "the previous checkpoint (at %s) is kept, a restart resumes from there",
            state.instrument,
            state.last_id,
            refusal,
            state.good_id,
            extra=instrument_fields(state.instrument),
        )
        return None

    async def _save(self, state: SymbolState, snapshot: bytes) -> None:
        ckpt = Checkpoint(
            model=snapshot,
            last_id=state.last_id,
            last_t=state.last_published,
            ticks=state.ticks,
            samples=state.stats.samples,
            owner=self.owner,
        )
        saved_ms = state.saved_ms = await save(self.client, state.ckpt_key, ckpt)
        state.good, state.good_id = snapshot, state.last_id
        if state.skip:  # what a rebuild or a restart can still meet
            good = id_key(state.good_id)
            state.skip = {i for i in state.skip if id_key(i) > good}
        state.samples_at_ckpt = state.stats.samples
        state.ticks_at_ckpt = state.ticks
        state.ckpt_monotonic = time.monotonic()
        state.stats.checkpoints += 1
        state.stats.checkpoint_wall_s = saved_ms / 1000.0
        log.debug("%s: checkpoint at %s (%d ticks)", state.symbol, state.last_id, state.ticks)
