"""What the worker keeps per symbol: its learner, stream position and checkpoint bookkeeping.

:class:`SymbolBook` holds one :class:`SymbolState` per symbol: it restores them from their
checkpoints (:mod:`tickcast.service.bus.checkpoint`), says which are due for a new one and writes
them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis.asyncio

from tickcast.model import ModelError
from tickcast.service import TickcastError
from tickcast.service.bus import keys
from tickcast.service.bus.checkpoint import Checkpoint, last_published_t, load, queue_status, save
from tickcast.service.bus.keys import id_key
from tickcast.service.live.predictor import Predictor
from tickcast.service.ops.config import Settings
from tickcast.service.ops.metrics import SymbolStats
from tickcast.service.ticks import Instrument

log = logging.getLogger(__name__)

START_ID = "0-0"
STATUS_EVERY_S = 1.0
"""How often the live ``samples`` / ``ticks`` counts of the checkpoint hashes are refreshed."""


class WorkerError(TickcastError):
    """The worker cannot run (e.g. a checkpoint made with other learner settings)."""


class Learner(Protocol):
    """What the worker needs from :class:`~tickcast.model.learner.OnlineLearner`."""

    horizon_ms: int
    sample_ms: int

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


def default_learner_factory(settings: Settings) -> LearnerFactory:
    """Return ``symbol -> OnlineLearner`` with the ``worker`` settings (seed 0)."""
    from tickcast.model.learner import OnlineLearner

    def make(symbol: str) -> Learner:
        learner: Learner = OnlineLearner(
            horizon_ms=settings.worker.horizon_ms, sample_ms=settings.worker.sample_ms
        )
        return learner

    return make


def default_learner_loader(data: bytes) -> Learner:
    """Return ``OnlineLearner.from_snapshot(data)``."""
    from tickcast.model.learner import OnlineLearner

    learner: Learner = OnlineLearner.from_snapshot(data)
    return learner


@dataclass
class SymbolState:
    """One instrument's learner, stream position and checkpoint bookkeeping.

    ``live`` is True while the symbol's ticks come from the in-process handoff
    (:mod:`tickcast.service.live.handoff`) rather than from XREAD; ``breaks`` is the handoff's break
    count it last saw, and ``behind`` the stream ID below which handed-off entries were
    already read from Redis (set when it goes live, cleared at the first newer entry).
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

    @property
    def symbol(self) -> str:
        """The unified symbol."""
        return self.instrument.symbol


class SymbolBook:
    """The worker's instruments: their states, restored from and saved to checkpoints.

    Parameters
    ----------
    client : redis.asyncio.Redis
        Bytes-mode client.
    settings : Settings
        ``redis.prefix``, ``redis.signal_maxlen`` and the ``worker`` section are used.
    instruments : iterable of Instrument
        (venue label, unified symbol) pairs.
    stats : mapping of Instrument to SymbolStats, optional
        Counter objects to bump (``Metrics.symbol_stats``); private ones otherwise.
    learner_factory, learner_loader : callable, optional
        Make a fresh learner / restore one from a snapshot (default: ``OnlineLearner``).
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
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
        self.states: dict[Instrument, SymbolState] = {}
        self.by_key: dict[bytes, SymbolState] = {}
        """The states by tick stream key."""
        self._status_monotonic = 0.0

    async def restore(self) -> None:
        """Load each symbol's checkpoint (or make a fresh learner) and its publish mark.

        Raises
        ------
        WorkerError
            A checkpoint cannot be read, or was made with another horizon or sample interval.
        """
        prefix = self.settings.redis.prefix
        for instrument in self.instruments:
            venue, symbol = instrument
            ckpt_key = keys.ckpt_key(prefix, venue, symbol)
            signals_key = keys.signals_key(prefix, venue, symbol)
            ckpt = await load(self.client, ckpt_key)
            stats = self._stats.setdefault(instrument, SymbolStats())
            predictor = Predictor(
                venue, symbol, signals_key, self.settings.redis.signal_maxlen, stats
            )
            ticks_key = keys.ticks_key(prefix, venue, symbol)
            if ckpt is None:
                learner = self._factory(symbol)
                state = SymbolState(instrument, learner, ticks_key, ckpt_key, predictor, stats)
            else:
                learner = self._restore_learner(symbol, ckpt.model, ckpt_key)
                state = SymbolState(instrument, learner, ticks_key, ckpt_key, predictor, stats)
                state.last_id, state.last_published = ckpt.last_id, ckpt.last_t
                state.ticks = state.ticks_at_ckpt = state.ticks_at_status = ckpt.ticks
                stats.samples = ckpt.samples
                stats.checkpoint_wall_s = ckpt.saved_ms / 1000.0
            published = await last_published_t(self.client, signals_key)
            state.last_published = max(state.last_published, published)
            predictor.sync_stats(learner)
            state.samples_at_ckpt = stats.samples
            self.states[instrument] = state
            self.by_key[ticks_key.encode()] = state
            log.info(
                "%s %s: %s at tick stream ID %s, last signal t=%d",
                venue,
                symbol,
                "restored" if ckpt is not None else "fresh learner",
                state.last_id,
                state.last_published,
            )
        await self.check_trimmed()

    def _restore_learner(self, symbol: str, model: bytes, key: str) -> Learner:
        try:
            learner = self._loader(model)
        except ModelError as exc:
            raise WorkerError(
                f"cannot restore checkpoint {key} of {symbol}: {exc}; delete it to start afresh"
            ) from exc
        want = (self.cfg.horizon_ms, self.cfg.sample_ms)
        got = (learner.horizon_ms, learner.sample_ms)
        if got != want:
            raise WorkerError(
                f"checkpoint {key} of {symbol} was made with horizon/sample {got} ms, settings "
                f"ask for {want} ms: use the same settings or delete the checkpoint"
            )
        return learner

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
                )

    def due(self) -> list[SymbolState]:
        """The states due for a checkpoint (``worker.checkpoint_every_samples`` / ``_s``)."""
        now, cfg = time.monotonic(), self.cfg
        return [
            s
            for s in self.states.values()
            if s.stats.samples - s.samples_at_ckpt >= cfg.checkpoint_every_samples
            or (now - s.ckpt_monotonic >= cfg.checkpoint_every_s and s.ticks > s.ticks_at_ckpt)
        ]

    async def checkpoint(
        self, states: Sequence[SymbolState] | None = None, *, force: bool = False
    ) -> None:
        """Checkpoint ``states`` (default all; unchanged ones only with ``force``)."""
        for state in states if states is not None else list(self.states.values()):
            if not force and state.ticks == state.ticks_at_ckpt:
                continue
            ckpt = Checkpoint(
                model=state.learner.snapshot(),
                last_id=state.last_id,
                last_t=state.last_published,
                ticks=state.ticks,
                samples=state.stats.samples,
            )
            saved_ms = await save(self.client, state.ckpt_key, ckpt)
            state.samples_at_ckpt = state.stats.samples
            state.ticks_at_ckpt = state.ticks
            state.ckpt_monotonic = time.monotonic()
            state.stats.checkpoints += 1
            state.stats.checkpoint_wall_s = saved_ms / 1000.0
            log.debug("%s: checkpoint at %s (%d ticks)", state.symbol, state.last_id, state.ticks)
