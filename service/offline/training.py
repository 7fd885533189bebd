"""Learning from recordings: the backtest engine with warm-started learners, and training.

:class:`WarmBacktest` is :class:`~tickcast.service.offline.backtest.Backtest` whose learners all
start from one trained model (``--init``): each symbol's learner is made as in a backtest, then
:meth:`~tickcast.model.learner.OnlineLearner.warm_start`\\ ed before its first tick (with extra
horizons, the first horizon's learner: a model is trained for one horizon; the others start
fresh).

:func:`train` is what ``tickcast train`` runs: the backtest engine over the ticks (same
parser, features and labels, event time; each sample is predicted before its label is known and
learnt from once it is, so the training figures are prequential), on exactly one symbol, and
returns the learner to save with :func:`~tickcast.service.offline.modelfile.save_model`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tickcast.model.learner import OnlineLearner
from tickcast.model.metrics import summarize
from tickcast.service import TickcastError
from tickcast.service.offline.backtest import Backtest, Oracle, SymbolRecord
from tickcast.service.ticks import Tick

__all__ = ["TrainError", "Trained", "WarmBacktest", "train"]


class TrainError(TickcastError):
    """Nothing to train on: no ticks, several symbols and none chosen, no label learnt."""


class WarmBacktest(Backtest):
    """A :class:`Backtest` whose learners start from ``model`` (a
    :meth:`~tickcast.model.learner.OnlineLearner.model_state`; check it first with
    :func:`~tickcast.service.offline.modelfile.check_model`). ``model_path`` is reported in
    :meth:`settings` as ``init_model``."""

    def __init__(
        self,
        learner_kwargs: Mapping[str, Any] | None,
        model: Mapping[str, Any],
        *,
        oracle: Oracle | None = None,
        model_path: str | None = None,
        extra_horizons_ms: Sequence[int] = (),
    ) -> None:
        super().__init__(learner_kwargs, oracle=oracle, extra_horizons_ms=extra_horizons_ms)
        self.model = dict(model)
        self.model_path = model_path

    def _record(self, symbol: str) -> SymbolRecord:
        rec = super()._record(symbol)
        rec.learner.warm_start(copy.deepcopy(self.model))
        return rec

    def settings(self) -> dict[str, Any]:
        """The learners' hyperparameters and the model they started from (``init_model``)."""
        return {**super().settings(), "init_model": self.model_path}


@dataclass
class Trained:
    """The outcome of :func:`train`: the symbol's learner and what it learnt from.

    ``ic`` and ``hit_rate`` are the prequential figures of the training run (each prediction
    made before its label was known); ``first_ms`` / ``last_ms`` the event times of the first
    and last tick."""

    symbol: str
    learner: OnlineLearner
    n_ticks: int
    n_labels: int
    ic: float
    hit_rate: float
    first_ms: int
    last_ms: int

    def info(self, sources: Iterable[str] = ()) -> dict[str, Any]:
        """What the model file records about the training (informative)."""
        return {
            "symbol": self.symbol,
            "n_ticks": self.n_ticks,
            "n_labels": self.n_labels,
            "first_event_ms": self.first_ms,
            "last_event_ms": self.last_ms,
            "train_ic": None if math.isnan(self.ic) else self.ic,
            "train_hit_rate": None if math.isnan(self.hit_rate) else self.hit_rate,
            "sources": list(sources),
        }


class _OneSymbol:
    """The ticks of the first symbol met; on meeting a second one, reads the rest of the ticks
    for their symbols (learning nothing more) and raises :class:`TrainError` naming them."""

    def __init__(self, ticks: Iterable[Tick]) -> None:
        self._ticks = iter(ticks)
        self.symbol: str | None = None
        self.first_ms = self.last_ms = 0

    def __iter__(self) -> Iterator[Tick]:
        for tick in self._ticks:
            if self.symbol is None:
                self.symbol, self.first_ms = tick.symbol, tick.event_ms
            elif tick.symbol != self.symbol:
                found = {self.symbol, tick.symbol, *(t.symbol for t in self._ticks)}
                raise TrainError(
                    f"the files hold {len(found)} symbols ({', '.join(sorted(found))}): "
                    "train on one with --symbols SYMBOL"
                )
            self.last_ms = tick.event_ms
            yield tick


def train(
    ticks: Iterable[Tick],
    learner_kwargs: Mapping[str, Any],
    *,
    init: Mapping[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Trained:
    """Learn from ``ticks`` (all of one symbol), starting from ``init`` if given.

    Raises
    ------
    TrainError
        No ticks, ticks of several symbols, or no label learnt (the ticks span less than a
        horizon).
    """
    engine = Backtest(learner_kwargs) if init is None else WarmBacktest(learner_kwargs, init)
    source = _OneSymbol(ticks)
    engine.run(source, progress=progress)
    if source.symbol is None:
        raise TrainError("no ticks to train on (check the files and --symbols)")
    rec = engine.symbols[source.symbol]
    learner = rec.learner
    cols = rec.arrays()
    figures = summarize(cols["label_bps"], cols["ret_bps"])
    n_labels = learner.n_scored
    if n_labels == 0:
        raise TrainError(
            f"{source.symbol}: no label learnt from {learner.n_ticks} ticks (they span "
            f"{source.last_ms - source.first_ms} ms; the horizon is {learner.horizon_ms} ms)"
        )
    return Trained(
        symbol=source.symbol,
        learner=learner,
        n_ticks=learner.n_ticks,
        n_labels=n_labels,
        ic=figures.ic,
        hit_rate=figures.hit_rate,
        first_ms=source.first_ms,
        last_ms=source.last_ms,
    )
