"""Several horizons per symbol: one online learner per horizon over one set of features.

:class:`MultiHorizonLearner` holds an :class:`~tickcast.model.learner.OnlineLearner` per
horizon, all with the same sample interval and reading one shared
:class:`~tickcast.model.features.StreamingFeatures`. The first horizon's learner feeds the
features (``feed_features=True``); the others do not. For each tick the others are updated
first and the first horizon's learner last, so that every learner processes the events the
tick passes (samples, labelling times) with the features as of before the tick, and the tick
reaches the features once, after all of them. Each horizon's predictions are therefore,
bit for bit, those of a standalone :class:`~tickcast.model.learner.OnlineLearner` of that
horizon fed the same ticks (no look-ahead, no cross-talk), for one feature update per tick
instead of one per horizon.

Every learner samples the same boundaries: the same sample interval, the same clock start
(the first tick), the same gaps (``max_gap_ms``) and the same features deciding that a
boundary has no price yet. :meth:`MultiHorizonLearner.update` returns the first horizon's
predictions as :class:`MultiPrediction`\\ s, each carrying the other horizons' predictions of
the same sample time (checked: a misalignment raises :class:`~tickcast.model.state.LearnerError`).

A snapshot is one blob holding every horizon's whole learner state (:data:`SNAPSHOT_MAGIC`
followed by :func:`~tickcast.model.state.pack_state`), restored bit-exactly.
:func:`learner_for` makes the learner of a set of horizons (a plain ``OnlineLearner`` for one
horizon, whose snapshots stay ``OnlineLearner``'s), :func:`load_learner` restores either kind
of snapshot, and :func:`horizons_of` tells the horizons of either kind.

Examples
--------
>>> from types import SimpleNamespace
>>> def mid_quote(ms, mid):
...     return SimpleNamespace(kind="quote", event_ms=ms, bid=mid - 0.5, bid_size=1.0,
...                            ask=mid + 0.5, ask_size=3.0)
>>> learner = MultiHorizonLearner([200, 500], sample_ms=100)
>>> learner.update(mid_quote(1000, 100.0))
[]
>>> [(p.t_ms, p.horizons_ms, len(p.others)) for p in learner.update(mid_quote(1250, 101.0))]
[(1100, (200, 500), 1), (1200, (200, 500), 1)]
>>> horizons_of(load_learner(learner.snapshot()))
(200, 500)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from . import ModelError
from .features import StreamingFeatures
from .learner import OnlineLearner
from .samples import Prediction
from .state import LearnerError, pack_state, unpack_state

__all__ = [
    "SNAPSHOT_MAGIC",
    "MultiHorizonLearner",
    "MultiPrediction",
    "horizons_of",
    "learner_for",
    "load_learner",
]

#: The first bytes of a :meth:`MultiHorizonLearner.snapshot` (an ``OnlineLearner`` snapshot
#: starts otherwise), then the :func:`~tickcast.model.state.pack_state` of its state.
SNAPSHOT_MAGIC: Final = b"TCHORIZ1"
_FORMAT: Final = "tickcast-horizons"
_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class MultiPrediction:
    """The first horizon's prediction of a sample, with the other horizons' of the same time.

    It reads as the first horizon's :class:`~tickcast.model.samples.Prediction` (``t_ms``,
    ``ret_bps``, ... are ``primary``'s), so that code written for one horizon takes it as is.

    Attributes
    ----------
    primary : Prediction
        The first horizon's prediction.
    others : tuple of Prediction
        The other horizons' predictions of the same sample time, in the learner's order.
    horizons_ms : tuple of int
        The horizon of ``primary``, then of each of ``others``, ms.
    """

    primary: Prediction
    others: tuple[Prediction, ...]
    horizons_ms: tuple[int, ...]

    def by_horizon(self) -> Iterator[tuple[int, Prediction]]:
        """``(horizon_ms, prediction)`` of every horizon, the first horizon's first."""
        yield self.horizons_ms[0], self.primary
        yield from zip(self.horizons_ms[1:], self.others, strict=True)

    @property
    def t_ms(self) -> int:
        """Sample event time, ms."""
        return self.primary.t_ms

    @property
    def ret_bps(self) -> float:
        """The first horizon's predicted log return, bps."""
        return self.primary.ret_bps

    @property
    def p_up(self) -> float:
        """The first horizon's predicted probability of an up move."""
        return self.primary.p_up

    @property
    def ref_price(self) -> float:
        """Reference price at ``t_ms`` (the same for every horizon)."""
        return self.primary.ref_price

    @property
    def model_version(self) -> int:
        """Labels the first horizon's model has learned."""
        return self.primary.model_version

    @property
    def linear_bps(self) -> float:
        """The first horizon's online linear baseline, bps."""
        return self.primary.linear_bps

    @property
    def hit_rate(self) -> float:
        """The first horizon's rolling hit rate (NaN until defined)."""
        return self.primary.hit_rate

    @property
    def ic(self) -> float:
        """The first horizon's rolling IC (NaN until defined)."""
        return self.primary.ic

    @property
    def skill_vs_zero(self) -> float:
        """The first horizon's rolling skill vs the zero predictor (NaN until defined)."""
        return self.primary.skill_vs_zero

    @property
    def n_scored(self) -> int:
        """Samples in the first horizon's rolling window."""
        return self.primary.n_scored


class MultiHorizonLearner:
    """One :class:`~tickcast.model.learner.OnlineLearner` per horizon of one symbol, over one
    shared set of features; see the module docstring.

    Parameters
    ----------
    horizons_ms : sequence of int
        The label horizons, ms, distinct; the first is the main one (its learner feeds the
        features, its predictions carry the others').
    **learner_kwargs
        Every other :class:`~tickcast.model.learner.OnlineLearner` argument (``features``
        included), the same for every horizon; not ``horizon_ms`` nor ``feed_features``.

    Attributes
    ----------
    horizons_ms : tuple of int
        The horizons, the first one first.
    learners : tuple of OnlineLearner
        The learner of each horizon, in the same order (their hooks ``on_score`` and
        ``on_sample``, metrics and counters are each horizon's own).
    """

    def __init__(self, horizons_ms: Sequence[int], **learner_kwargs: Any) -> None:
        horizons = tuple(int(h) for h in horizons_ms)
        if not horizons or len(set(horizons)) != len(horizons):
            raise LearnerError(f"need one or more distinct horizons, got {list(horizons)}")
        clash = {"horizon_ms", "feed_features"} & learner_kwargs.keys()
        if clash:
            raise LearnerError(f"{', '.join(sorted(clash))}: set by horizons_ms, not given")
        first = OnlineLearner(horizon_ms=horizons[0], **learner_kwargs)
        shared = {**learner_kwargs, "features": first.features, "feed_features": False}
        others = tuple(OnlineLearner(horizon_ms=h, **shared) for h in horizons[1:])
        self.horizons_ms = horizons
        self.learners: tuple[OnlineLearner, ...] = (first, *others)
        self._first = first
        self._others = others

    # -- the clock ------------------------------------------------------------------------------

    @property
    def horizon_ms(self) -> int:
        """The first horizon, ms."""
        return self._first.horizon_ms

    @property
    def sample_ms(self) -> int:
        """The sample interval, ms (every horizon's)."""
        return self._first.sample_ms

    @property
    def features(self) -> StreamingFeatures:
        """The features every horizon reads."""
        return self._first.features

    @property
    def n_ticks(self) -> int:
        """Ticks fed so far."""
        return self._first.n_ticks

    def update(self, tick: Any) -> list[MultiPrediction]:
        """Feed one tick to every horizon (the others first, the first horizon's learner last:
        it feeds the features); return the samples it closed, as :class:`MultiPrediction`.

        Raises
        ------
        LearnerError
            The horizons sampled different times (an internal fault; never with ticks alone).
        """
        others = [learner.update(tick) for learner in self._others]
        primary = self._first.update(tick)
        if not primary:
            if any(others):
                raise _misaligned(primary, others)
            return []
        return self._join(primary, others)

    def _join(
        self, primary: list[Prediction], others: list[list[Prediction]]
    ) -> list[MultiPrediction]:
        """Pair each of the first horizon's predictions with the others' of its time."""
        if any(len(o) != len(primary) for o in others):
            raise _misaligned(primary, others)
        out = []
        horizons = self.horizons_ms
        for i, p in enumerate(primary):
            row = tuple(o[i] for o in others)
            if any(q.t_ms != p.t_ms for q in row):
                raise _misaligned(primary, others)
            out.append(MultiPrediction(p, row, horizons))
        return out

    def flush(self) -> None:
        """Score and learn, in every horizon, the labels read but not yet learned."""
        for learner in self.learners:
            learner.flush()

    # -- introspection --------------------------------------------------------------------------

    @property
    def model_version(self) -> int:
        """Labels the first horizon's model has learned (after :meth:`flush`)."""
        return self._first.model_version

    def counters(self) -> dict[str, int]:
        """The first horizon's :meth:`~tickcast.model.learner.OnlineLearner.counters` (the
        samples, ticks and gaps are every horizon's; each horizon's own:
        ``learners[i].counters()``)."""
        return self._first.counters()

    def hyperparameters(self) -> dict[str, Any]:
        """Constructor arguments that rebuild an equivalent fresh learner (JSON-ready):
        ``horizons_ms`` and the first horizon's other hyperparameters."""
        hp = self._first.hyperparameters()
        del hp["horizon_ms"]
        return {"horizons_ms": list(self.horizons_ms), **hp}

    # -- warm start and snapshots ---------------------------------------------------------------

    def warm_start(self, model: dict[str, Any]) -> None:
        """Start the first horizon's model from a trained model (see
        :meth:`~tickcast.model.learner.OnlineLearner.warm_start`: a model is trained for one
        horizon); the other horizons start fresh. Call it before the first tick."""
        self._first.warm_start(model)

    def state_dict(self) -> dict[str, Any]:
        """Every horizon's whole learner state (each an ``OnlineLearner.state_dict``, the
        shared features in each); calls :meth:`flush` first."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "horizons_ms": list(self.horizons_ms),
            "learners": [learner.state_dict() for learner in self.learners],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` of a learner with the same horizons and
        hyperparameters; later outputs are bit-identical to the original's."""
        if state.get("format") != _FORMAT or state.get("version") != _VERSION:
            raise LearnerError(
                f"not a multi-horizon learner state of version {_VERSION} "
                f"(format {state.get('format')!r}, version {state.get('version')!r})"
            )
        saved = [int(h) for h in state.get("horizons_ms") or ()]
        if saved != list(self.horizons_ms):
            raise LearnerError(
                f"the state has the horizons {saved} ms, this learner {list(self.horizons_ms)}"
            )
        members = state.get("learners")
        if not isinstance(members, list) or len(members) != len(self.learners):
            raise LearnerError("the state does not hold one learner per horizon")
        for learner, member in zip(self.learners, members, strict=True):
            learner.load_state_dict(member)

    def snapshot(self) -> bytes:
        """The whole learner as bytes (no pickle): :data:`SNAPSHOT_MAGIC`, then the packed
        :meth:`state_dict`."""
        return SNAPSHOT_MAGIC + pack_state(self.state_dict())

    def restore(self, data: bytes) -> None:
        """Restore a :meth:`snapshot` into this learner (same horizons and hyperparameters)."""
        self.load_state_dict(_unpack(data))

    @classmethod
    def from_snapshot(cls, data: bytes) -> MultiHorizonLearner:
        """Build a learner from a :meth:`snapshot`, horizons and hyperparameters included."""
        state = _unpack(data)
        try:
            first = state["learners"][0]
            hp = dict(first["hyperparameters"])
            del hp["horizon_ms"]
            features = StreamingFeatures(hp["feature_windows_ms"], **first["features_kwargs"])
            learner = cls(state["horizons_ms"], **hp, features=features)
        except (KeyError, IndexError, TypeError, ModelError) as exc:
            raise LearnerError(f"snapshot hyperparameters unusable: {exc}") from exc
        learner.load_state_dict(state)
        return learner


def _unpack(data: bytes) -> dict[str, Any]:
    """The state of a :meth:`MultiHorizonLearner.snapshot`."""
    if not data.startswith(SNAPSHOT_MAGIC):
        raise LearnerError("not a multi-horizon learner snapshot")
    state = unpack_state(data[len(SNAPSHOT_MAGIC) :])
    if not isinstance(state, dict):
        raise LearnerError("not a multi-horizon learner snapshot")
    return state


def _misaligned(primary: list[Prediction], others: list[list[Prediction]]) -> LearnerError:
    """The error of horizons that sampled different times."""
    times = [[p.t_ms for p in preds] for preds in (primary, *others)]
    return LearnerError(f"the horizons sampled different times: {times}")


def learner_for(
    learner_kwargs: Mapping[str, Any], extra_horizons_ms: Sequence[int] = ()
) -> OnlineLearner | MultiHorizonLearner:
    """The learner of ``OnlineLearner(**learner_kwargs)``'s horizon plus ``extra_horizons_ms``:
    that very ``OnlineLearner`` when there is no extra horizon, else a
    :class:`MultiHorizonLearner` whose first horizon is ``learner_kwargs["horizon_ms"]``.

    Examples
    --------
    >>> type(learner_for({"horizon_ms": 1000})).__name__
    'OnlineLearner'
    >>> learner_for({"horizon_ms": 1000, "sample_ms": 50}, [10_000]).horizons_ms
    (1000, 10000)
    """
    if not extra_horizons_ms:
        return OnlineLearner(**learner_kwargs)
    kwargs = dict(learner_kwargs)
    first = kwargs.pop("horizon_ms", OnlineLearner.DEFAULT_HORIZON_MS)
    return MultiHorizonLearner((first, *extra_horizons_ms), **kwargs)


def load_learner(data: bytes) -> OnlineLearner | MultiHorizonLearner:
    """Restore a snapshot of either kind: a :class:`MultiHorizonLearner`'s (it starts with
    :data:`SNAPSHOT_MAGIC`) or an ``OnlineLearner``'s."""
    if data.startswith(SNAPSHOT_MAGIC):
        return MultiHorizonLearner.from_snapshot(data)
    return OnlineLearner.from_snapshot(data)


def horizons_of(learner: Any) -> tuple[int, ...]:
    """The horizons of a learner, ms: a :class:`MultiHorizonLearner`'s ``horizons_ms``, else
    its one ``horizon_ms``."""
    if isinstance(learner, MultiHorizonLearner):
        return learner.horizons_ms
    return (int(learner.horizon_ms),)
