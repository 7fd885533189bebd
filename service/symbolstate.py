"""What the worker keeps per symbol: its learner, stream position and checkpoint bookkeeping."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tickcast.service.config import Settings
from tickcast.service.metrics import SymbolStats
from tickcast.service.predictor import Predictor

START_ID = "0-0"


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
    """One symbol's learner, stream position and checkpoint bookkeeping.

    ``live`` is True while the symbol's ticks come from the in-process handoff
    (:mod:`tickcast.service.handoff`) rather than from XREAD; ``breaks`` is the handoff's break
    count it last saw, and ``behind`` the stream ID below which handed-off entries were
    already read from Redis (set when it goes live, cleared at the first newer entry).
    """

    symbol: str
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
