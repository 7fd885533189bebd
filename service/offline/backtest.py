"""The backtest engine: ticks -> one online learner per symbol -> prequential results.

It is the live worker's loop without Redis: each tick goes to the learner of its symbol
(created on the symbol's first tick), exactly as the worker will feed them; every scored sample
is recorded so that figures can be pooled over symbols, compared with the simulator's Bayes
rate and plotted. Every figure is prequential over every scored sample (nothing is excluded as
warm-up).

The raw features of every scored sample are recorded too, for two references computed on the
same samples and labels (:mod:`tickcast.model.rules`): the parameter-free rules (``rules``,
``best_rule``) and the hindsight least-squares fit on all features (``hindsight_linear``),
an upper reference that sees the future.

Extra horizons (``extra_horizons_ms``): each symbol's learner is then a
:class:`~tickcast.model.horizons.MultiHorizonLearner` (one learner per horizon over one set of
features, as the live worker runs it), every horizon's learner is recorded apart (its own
labels, scores and references), and the result holds one :class:`BacktestResult` per horizon:
the first horizon's, with the others in :attr:`BacktestResult.others`.
"""

from __future__ import annotations

import logging
import math
import time
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Protocol

import numpy as np

from tickcast.model.horizons import MultiHorizonLearner, MultiPrediction, learner_for
from tickcast.model.learner import OnlineLearner, Prediction, Scored
from tickcast.model.metrics import MetricsSummary, summarize
from tickcast.model.rules import best_rule, hindsight_linear, rule_forecasts
from tickcast.service.ticks import Tick

logger = logging.getLogger(__name__)

__all__ = [
    "Backtest",
    "BacktestResult",
    "Oracle",
    "SymbolRecord",
    "json_ready",
]

_BPS = 1e4

#: Report progress every this many ticks.
PROGRESS_EVERY = 50_000


class Oracle(Protocol):
    """What the simulator exposes: the true expected log return of a sample."""

    def expected_return(self, symbol: str, t_ms: int, horizon_ms: int) -> float:
        """Expected log return (not bps) from ``t_ms`` to ``t_ms + horizon_ms``."""
        ...


@dataclass
class SymbolRecord:
    """Everything recorded for one symbol: its learner, tick count and scored samples.

    Attributes
    ----------
    learner : OnlineLearner
        The symbol's learner (its counters and metrics are live).
    t_ms, label_bps, ret_bps, linear_bps, p_up, expected_bps : array
        One entry per scored sample, in scoring order (``expected_bps`` only with an oracle).
    raw : array
        The raw features of the scored samples as of their sample times, row after row (one
        row of ``len(feature_names)`` values per entry of ``t_ms``).
    feature_names : tuple of str
        Names of the columns of ``raw`` (the learner's :attr:`feature_names`).
    pending_raw : dict
        The raw features of the latest samples taken and not yet scored, by sample time: a
        row goes when its sample is scored, or, for a sample dropped at a gap (never scored),
        when a later sample is scored or the row falls out of the newest
        ``learner.max_pending`` (a bound on the samples pending at once).
    """

    learner: OnlineLearner
    feature_names: tuple[str, ...] = ()
    t_ms: array[int] = field(default_factory=lambda: array("q"))
    label_bps: array[float] = field(default_factory=lambda: array("d"))
    ret_bps: array[float] = field(default_factory=lambda: array("d"))
    linear_bps: array[float] = field(default_factory=lambda: array("d"))
    p_up: array[float] = field(default_factory=lambda: array("d"))
    expected_bps: array[float] = field(default_factory=lambda: array("d"))
    raw: array[float] = field(default_factory=lambda: array("d"))
    pending_raw: dict[int, list[float]] = field(default_factory=dict, repr=False)

    def arrays(self) -> dict[str, np.ndarray]:
        """Return the recorded columns as float64 / int64 arrays of equal length; ``raw`` is
        2-D, shape (n, len(feature_names))."""
        raw = np.frombuffer(self.raw, dtype=np.float64).copy()
        return {
            "t_ms": np.frombuffer(self.t_ms, dtype=np.int64).copy(),
            "label_bps": np.frombuffer(self.label_bps, dtype=np.float64).copy(),
            "ret_bps": np.frombuffer(self.ret_bps, dtype=np.float64).copy(),
            "linear_bps": np.frombuffer(self.linear_bps, dtype=np.float64).copy(),
            "p_up": np.frombuffer(self.p_up, dtype=np.float64).copy(),
            "expected_bps": np.frombuffer(self.expected_bps, dtype=np.float64).copy(),
            "raw": raw.reshape(-1, len(self.feature_names)) if self.feature_names else raw,
        }


@dataclass
class BacktestResult:
    """The outcome of a run: per-symbol records, tick count and wall time of the loop, for
    one horizon; ``others`` holds the results of the extra horizons of the same run."""

    symbols: dict[str, SymbolRecord]
    n_ticks: int
    wall_s: float
    horizon_ms: int
    with_oracle: bool
    others: tuple[BacktestResult, ...] = ()

    @property
    def ticks_per_s(self) -> float:
        """Ticks processed per wall second of the processing loop."""
        return self.n_ticks / self.wall_s if self.wall_s > 0 else math.nan

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"overall": {...}, "symbols": {symbol: {...}}}`` (NaN kept as float nan),
        and with extra horizons ``"horizons": {"<horizon_ms>": {"overall": ..., "symbols":
        ...}}`` for every horizon, this one first (the top level is this one's)."""
        out = self._horizon_dict()
        if self.others:
            horizons = {str(self.horizon_ms): dict(out)}
            horizons.update({str(r.horizon_ms): r._horizon_dict() for r in self.others})
            out["horizons"] = horizons
        return out

    def _horizon_dict(self) -> dict[str, Any]:
        """This horizon's ``{"overall": {...}, "symbols": {...}}``."""
        per_symbol = {name: self._figures([rec]) for name, rec in sorted(self.symbols.items())}
        for name, rec in self.symbols.items():
            per_symbol[name].update(_learner_counters(rec.learner))
            n = rec.learner.n_ticks
            per_symbol[name]["ticks_per_s"] = n / self.wall_s if self.wall_s else math.nan
        overall = self._figures(list(self.symbols.values()))
        overall["n_ticks"] = self.n_ticks
        overall["n_symbols"] = len(self.symbols)
        overall["wall_s"] = self.wall_s
        overall["ticks_per_s"] = self.ticks_per_s
        return {"overall": overall, "symbols": per_symbol}

    def _figures(self, records: list[SymbolRecord]) -> dict[str, Any]:
        cols = [r.arrays() for r in records]
        y = _concat(cols, "label_bps")
        pred = _concat(cols, "ret_bps")
        lin = _concat(cols, "linear_bps")
        model = summarize(y, pred, lin)
        linear = summarize(y, lin)
        out: dict[str, Any] = {
            "n_samples": model.n_scored,
            **_public(model),
            "linear_hit_rate": linear.hit_rate,
            "linear_ic": linear.ic,
            "linear_skill_vs_zero": linear.skill_vs_zero,
            "label_std_bps": float(np.std(y)) if y.size else math.nan,
            "pnl_bps_per_sample": float(np.mean(np.sign(pred) * y)) if y.size else math.nan,
        }
        if self.with_oracle:
            from tickcast.service.sim.market import bayes_hit_rate

            expected = _concat(cols, "expected_bps")
            out["bayes_hit_rate"] = float(bayes_hit_rate(expected, y)) if y.size else math.nan
            out["bayes_ic"] = summarize(y, expected).ic
            out["hit_rate_vs_bayes"] = out["hit_rate"] / out["bayes_hit_rate"]
        out.update(_references(records, cols, y))
        return out


def _concat(cols: list[dict[str, np.ndarray]], key: str) -> np.ndarray:
    if not cols:
        return np.zeros(0)
    return np.concatenate([c[key] for c in cols])


def _references(
    records: list[SymbolRecord], cols: list[dict[str, np.ndarray]], y: np.ndarray
) -> dict[str, Any]:
    """The reference figures on the samples of ``records``: ``rules`` (hit rate and IC of
    each parameter-free rule), ``best_rule`` and ``best_rule_ic`` (the highest IC), and
    ``hindsight_linear`` (least squares on all features fitted on these very samples: it sees
    the future). Empty when the records hold no features or features of different names."""
    names = {r.feature_names for r in records}
    if len(names) != 1 or not (feature_names := names.pop()):
        return {}
    raw = np.concatenate([c["raw"] for c in cols])
    rules: dict[str, Any] = {}
    for name, forecast in rule_forecasts(raw, feature_names).items():
        s = summarize(y, forecast)
        rules[name] = {"hit_rate": s.hit_rate, "ic": s.ic}
    best = best_rule({name: fig["ic"] for name, fig in rules.items()})
    fitted = hindsight_linear(raw, y)
    kept = np.isfinite(fitted)
    hindsight = summarize(y[kept], fitted[kept])
    return {
        "rules": rules,
        "best_rule": best,
        "best_rule_ic": rules[best]["ic"] if best is not None else math.nan,
        "hindsight_linear": {
            "n_samples": hindsight.n_scored,
            "hit_rate": hindsight.hit_rate,
            "ic": hindsight.ic,
            "skill_vs_zero": hindsight.skill_vs_zero,
            "sees_future": True,
        },
    }


def _public(s: MetricsSummary) -> dict[str, Any]:
    d = s.as_dict()
    d.pop("n_scored")
    return d


def _learner_counters(learner: OnlineLearner) -> dict[str, int]:
    return dict(learner.counters())


class Backtest:
    """Feed ticks to per-symbol learners and record every scored sample.

    Parameters
    ----------
    learner_kwargs : mapping, optional
        Keyword arguments of every :class:`~tickcast.model.learner.OnlineLearner` (with
        extra horizons: of each horizon's, ``horizon_ms`` being the first horizon).
    oracle : Oracle, optional
        The simulator's oracle; when given, the expected return of each sample is recorded
        (queried when the sample is scored, for the sample's time and horizon) and the results
        carry ``bayes_hit_rate``.
    extra_horizons_ms : sequence of int
        More horizons learned beside ``learner_kwargs["horizon_ms"]``, on the same features
        (:func:`~tickcast.model.horizons.learner_for`); none by default.

    Attributes
    ----------
    symbols : dict
        The first horizon's :class:`SymbolRecord` of each symbol.
    by_horizon : dict
        Every horizon's records, ``{horizon_ms: {symbol: SymbolRecord}}`` (the first horizon's
        is :attr:`symbols`).
    """

    def __init__(
        self,
        learner_kwargs: Mapping[str, Any] | None = None,
        *,
        oracle: Oracle | None = None,
        extra_horizons_ms: Sequence[int] = (),
    ) -> None:
        self.learner_kwargs = dict(learner_kwargs or {})
        self.oracle = oracle
        self.extra_horizons_ms = tuple(int(h) for h in extra_horizons_ms)
        first = int(self.learner_kwargs.get("horizon_ms", OnlineLearner.DEFAULT_HORIZON_MS))
        self.horizons_ms = (first, *self.extra_horizons_ms)
        if len(set(self.horizons_ms)) != len(self.horizons_ms):
            raise ValueError(f"the horizons repeat: {list(self.horizons_ms)}")
        self.symbols: dict[str, SymbolRecord] = {}
        self.by_horizon: dict[int, dict[str, SymbolRecord]] = {h: {} for h in self.horizons_ms}
        self.by_horizon[first] = self.symbols
        self._learners: dict[str, OnlineLearner | MultiHorizonLearner] = {}

    def _record(self, symbol: str) -> SymbolRecord:
        """Make ``symbol``'s learner and the records of each of its horizons; return the
        first horizon's record."""
        learner = learner_for(self.learner_kwargs, self.extra_horizons_ms)
        members = learner.learners if isinstance(learner, MultiHorizonLearner) else (learner,)
        for horizon, member in zip(self.horizons_ms, members, strict=True):
            self.by_horizon[horizon][symbol] = self._hook(symbol, member)
        self._learners[symbol] = learner
        return self.symbols[symbol]

    def _hook(self, symbol: str, learner: OnlineLearner) -> SymbolRecord:
        """A record of ``learner``'s scored samples (its hooks set to fill it)."""
        rec = SymbolRecord(learner, learner.feature_names)
        oracle = self.oracle
        pending_raw = rec.pending_raw
        missing = [math.nan] * len(rec.feature_names)
        max_pending = learner.max_pending
        horizon = learner.horizon_ms

        def on_sample(t_ms: int, raw: Sequence[float] | np.ndarray) -> None:
            pending_raw[t_ms] = list(raw)
            if len(pending_raw) > max_pending:
                del pending_raw[next(iter(pending_raw))]

        def on_score(s: Scored) -> None:
            t_ms = s.t_ms
            rec.raw.extend(pending_raw.pop(t_ms, missing))
            if pending_raw and next(iter(pending_raw)) < t_ms:
                for stale in [t for t in pending_raw if t < t_ms]:
                    del pending_raw[stale]
            rec.t_ms.append(t_ms)
            rec.label_bps.append(s.label_bps)
            rec.ret_bps.append(s.ret_bps)
            rec.linear_bps.append(s.linear_bps)
            rec.p_up.append(s.p_up)
            if oracle is not None:
                expected = oracle.expected_return(symbol, s.t_ms, horizon)
                rec.expected_bps.append(expected * _BPS)

        learner.on_sample = on_sample
        learner.on_score = on_score
        return rec

    def _update(self, symbol: str) -> Callable[[Tick], Sequence[Prediction | MultiPrediction]]:
        """The ``update`` of ``symbol``'s learner (made on its first tick)."""
        learner = self._learners.get(symbol)
        if learner is None:
            self._record(symbol)
            learner = self._learners[symbol]
        return learner.update

    def feed(self, tick: Tick) -> Sequence[Prediction | MultiPrediction]:
        """Feed one tick to its symbol's learner; return the predictions it released (with
        extra horizons, :class:`~tickcast.model.horizons.MultiPrediction`\\ s)."""
        return self._update(tick.symbol)(tick)

    @property
    def n_ticks(self) -> int:
        """Ticks fed so far."""
        return sum(rec.learner.n_ticks for rec in self.symbols.values())

    def run(
        self,
        ticks: Iterable[Tick],
        progress: Callable[[int, int], None] | None = None,
    ) -> BacktestResult:
        """Feed every tick; return the result.

        ``progress(n_ticks, event_ms)`` is called every :data:`PROGRESS_EVERY` ticks. The wall
        time covers the whole loop: reading and parsing (the iterator), features, learners.
        """
        updates: dict[str, Callable[[Tick], Sequence[Prediction | MultiPrediction]]] = {}
        it = iter(ticks)
        start = time.perf_counter()
        while True:
            last: Tick | None = None
            for last in islice(it, PROGRESS_EVERY):
                update = updates.get(last.symbol)
                if update is None:
                    update = updates[last.symbol] = self._update(last.symbol)
                update(last)
            if last is None:
                break
            if progress is not None:
                progress(self.n_ticks, last.event_ms)
        wall = time.perf_counter() - start
        return self.result(wall)

    def settings(self) -> dict[str, Any]:
        """The first horizon's learners' hyperparameters (those of a fresh learner when none
        was made), with ``extra_horizons_ms`` when there are extra horizons."""
        extra = (
            {"extra_horizons_ms": list(self.extra_horizons_ms)} if self.extra_horizons_ms else {}
        )
        for rec in self.symbols.values():
            return {**rec.learner.hyperparameters(), **extra}
        return {**OnlineLearner(**self.learner_kwargs).hyperparameters(), **extra}

    def result(self, wall_s: float) -> BacktestResult:
        """Return the result so far (the first horizon's, the others in its ``others``),
        with ``wall_s`` as the loop's wall time."""
        for learner in self._learners.values():
            learner.flush()
        n_ticks = self.n_ticks
        results = [
            BacktestResult(
                symbols=dict(self.by_horizon[h]),
                n_ticks=n_ticks,
                wall_s=wall_s,
                horizon_ms=h,
                with_oracle=self.oracle is not None,
            )
            for h in self.horizons_ms
        ]
        first, *others = results
        first.others = tuple(others)
        return first


def json_ready(obj: Any) -> Any:
    """Replace non-finite floats by None, recursively, so that the result is strict JSON."""
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_ready(v) for v in obj]
    if isinstance(obj, float | np.floating):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
