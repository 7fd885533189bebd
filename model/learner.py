"""The online learner of one symbol: sample clock, predictions, delayed labels, metrics.

:class:`OnlineLearner` turns a stream of ticks into predictions on a regular event-time grid
and learns from each prediction once its label is known (test-then-train, Dawid 1984).

The events of the tick stream (sample boundaries, labelling times, gaps) are ordered by
:class:`~tickcast.model.clock.SampleClock`, which this class extends. At a sample boundary
``T`` the features are read (they reflect the ticks with ``event_ms < T``), the forecaster
standardises them and predicts, and the sample joins the pending queue (bounded by
``ceil(horizon / sample) + 1``). At ``t + H`` the label ``y = log(ref(t + H) / ref(t))`` (bps)
is read; the prediction made at ``t`` is then scored (prequential metrics) and the model
learns from the ``x`` of time ``t`` -- in :meth:`OnlineLearner.flush`, so that a live caller
can publish an update's predictions before the learning it triggers.

The model is a :class:`~tickcast.model.forecaster.Forecaster`. In short: a subset of the
features (:data:`DEFAULT_INPUTS`: near-duplicates left out, since every extra input slows
learning from scratch) is standardised on running moments and clipped (not the ratios bounded
by construction), except that the signed order-flow inputs (book imbalance, microprice
deviation, trade flows) keep their zero and are only scaled; the target is the label over a
running robust scale; a linear expert learned by recursive least squares from a prior centred
on the book-imbalance rule forecasts what the rule says from the first sample, and the
published return is that expert plus a learned share of a tanh network's departure from it
(the share starts at 0), so the forecast is the rule's while data is scarce or the relation
weak, and moves to the network as it proves itself. The linear prior and the network's step
are per label, whatever the overlap of consecutive labels (the half-lives of the forgetting
and of Hedge are in samples). The linear baseline of the metrics is kept apart.

Finite in, finite out. No finite tick makes the learner raise or publish a non-finite value:
the features stay finite whatever the magnitudes (:mod:`tickcast.model.features`), a label
whose price ratio under- or overflows is taken as a difference of logs, the forecaster
refuses to learn moments from a non-finite input (and reads it as 0), and a forecast that
would still not be finite is replaced by :data:`FALLBACK_RET_BPS` and :data:`FALLBACK_P_UP`
and counted in :attr:`OnlineLearner.n_nonfinite_predictions`.

Examples
--------
>>> from types import SimpleNamespace
>>> def mid_quote(ms, mid):
...     return SimpleNamespace(kind="quote", event_ms=ms, bid=mid - 0.5, bid_size=1.0,
...                            ask=mid + 0.5, ask_size=3.0)
>>> learner = OnlineLearner(horizon_ms=200, sample_ms=100)
>>> learner.update(mid_quote(1000, 100.0))
[]
>>> [(p.t_ms, p.ref_price) for p in learner.update(mid_quote(1250, 101.0))]
[(1100, 100.0), (1200, 100.0)]
>>> learner.n_pending, learner.update(mid_quote(1420, 102.0))[0].t_ms, learner.n_scored
(2, 1300, 2)
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from . import ModelError
from .clock import SampleClock
from .features import BOUNDED_FEATURES, StreamingFeatures
from .forecaster import Forecaster
from .metrics import PrequentialMetrics
from .rules import RULES
from .samples import Pending, Prediction, Scored, pending_from_state, pending_state
from .state import LearnerError, pack_state, unpack_state

__all__ = [
    "FALLBACK_P_UP",
    "FALLBACK_RET_BPS",
    "MODEL_FORMAT",
    "MODEL_VERSION",
    "LearnerError",
    "OnlineLearner",
    "Prediction",
    "Scored",
    "pack_state",
    "unpack_state",
]

Array = NDArray[np.float64]

_BPS = 1e4
_INF = math.inf
_isfinite = math.isfinite
_SNAPSHOT_VERSION = 4
_COUNTERS = ("n_samples", "_n_scored", "n_unpriced", "n_nonfinite_predictions")
#: Counters added to the version-2 snapshot later: 0 when restoring a snapshot without them.
_LATER_COUNTERS = frozenset({"n_nonfinite_predictions"})

#: What a prediction publishes in place of a forecast that is not finite: no expected move,
#: even odds (counted in :attr:`OnlineLearner.n_nonfinite_predictions`).
FALLBACK_RET_BPS = 0.0
FALLBACK_P_UP = 0.5

#: The format name and version of :meth:`OnlineLearner.model_state` (a trained model).
MODEL_FORMAT = "tickcast-model"
MODEL_VERSION = 2
#: Settings a warm-started learner may choose for itself: they do not shape the model.
_LOCAL_SETTINGS = frozenset({"rolling_window", "max_gap_ms", "seed"})

#: Features the model reads by default (name prefixes). Left out, as near-duplicates that
#: only slow down learning from scratch: the trade-count imbalances (the size-weighted trade
#: flows carry the same sign), the RSI (a normalised ``return``) and the times since the last
#: trade and quote (bookkeeping; the trade intensities carry the activity).
DEFAULT_INPUTS: tuple[str, ...] = (
    "book_imbalance",
    "microprice_dev",
    "spread",
    "trade_flow_",
    "trade_intensity_",
    "realised_vol_",
    "vwap_dev_",
    "return_",
)

#: Inputs (name prefixes) kept uncentred: signed order-flow features whose zero is neutral.
DEFAULT_UNCENTRED: tuple[str, ...] = ("book_imbalance", "microprice_dev", "trade_flow_")


class OnlineLearner(SampleClock):
    """Online learner of one symbol; see the module docstring.

    Parameters
    ----------
    horizon_ms : int
        Label horizon ``H``, ms.
    sample_ms : int
        Sample interval, ms (samples at multiples of it, in event time).
    hidden : sequence of int
        Hidden layer widths of the network expert.
    lr : float
        Adam step of the network expert per label's worth of samples: labels that overlap
        (``ceil(horizon / sample)`` consecutive ones carry about one label's information),
        so each sample takes a step of ``lr / ceil(horizon_ms / sample_ms)``. A network
        stepping per sample learned a 10 s horizon ten times as fast as a 1 s one from the
        same information: on the shared BTCUSDT recording it memorised the half-dozen
        10 s trends it saw and the forecast's IC fell to -0.14 (the rule's: +0.06).
    fast_lr : float
        SGD step of the linear expert and of the linear baseline.
    activation : {"tanh", "relu"}
        Hidden activation.
    seed : int
        Seed of the initial weights.
    features : StreamingFeatures, optional
        The features to drive; default ``StreamingFeatures(feature_windows_ms)``.
    feature_windows_ms : sequence of int
        EW windows of the default features, ms.
    rolling_window : int
        Rolling-metrics window, in scored samples.
    max_gap_ms : int
        Longest silence (ms between consecutive ticks) sampled through.
    clip : float
        Standardised inputs are clipped to ``[-clip, clip]``.
    scale_halflife : float
        Half-life, in samples, of the input standardiser.
    huber_delta : float
        Huber threshold of the return losses, in target-scale units.
    direction_weight : float
        Weight of the networks' P(up) loss.
    clip_norm : float
        Global gradient-norm clip of every optimizer.
    hedge_eta : float
        Hedge learning rate, per unit of squared error (errors in units of the labels' root
        mean square since the start, capped at 5).
    hedge_halflife : float
        Half-life, in labels, of the discounted losses Hedge compares.
    linear_prior : float
        Prior Hedge weight of the linear expert, relative to the network's 1.
    inputs : sequence of str or None
        Prefixes of the feature names the model reads (:data:`DEFAULT_INPUTS`); None: all.
    uncentred : sequence of str
        Prefixes of the inputs scaled by their running RMS without centring
        (:data:`DEFAULT_UNCENTRED`); see :class:`~tickcast.model.forecaster.Forecaster`.
    prior_input : str or None
        The input of the parameter-free rule the linear expert starts from: the first of
        :data:`~tickcast.model.rules.RULES`, the book imbalance, whose sign is the same on
        every market; None: a zero prior.
    prior_slope : float
        The rule's prior correlation with the label: the linear expert's prior slope on
        the standardised input, in units of the labels' RMS (converted to target units at
        the end of the warm-up; see :mod:`~tickcast.model.forecaster`).
    prior_labels : float
        The prior's worth in independent labels. Labels overlap (a sample every
        ``sample_ms`` for a return over ``horizon_ms``): ``ceil(horizon / sample)``
        consecutive labels carry about one label's information, so the linear expert's
        prior precision is ``prior_labels * ceil(horizon_ms / sample_ms)`` samples.
    rls_halflife : float
        Half-life, in labels, of the linear expert's memory.
    feed_features : bool
        Feed each tick to ``features`` (default). False: ``features`` is fed by another
        learner of the same symbol (another horizon), whose :meth:`update` must run after
        this one's for each tick.

    Attributes
    ----------
    n_nonfinite_predictions : int
        Predictions whose forecast was not finite (or P(up) outside [0, 1]) and was replaced
        by :data:`FALLBACK_RET_BPS` / :data:`FALLBACK_P_UP` (a non-finite linear baseline by
        0); 0 unless something upstream broke.
    on_score : callable or None
        Called with a :class:`Scored` each time a sample is scored, i.e. in :meth:`flush`
        (not kept in snapshots).
    on_sample : callable or None
        Called as ``on_sample(t_ms, raw)`` at each sample taken, with the raw feature values
        as of ``t_ms`` (all of :attr:`feature_names`, a sequence of floats the callee must not
        keep); for reports such as the reference rules of a backtest (not kept in snapshots).
    forecaster : Forecaster
        Input standardisation, target scale, experts, Hedge mix and linear baseline.
    """

    DEFAULT_HORIZON_MS: ClassVar[int] = 1000

    def __init__(
        self,
        *,
        horizon_ms: int = 1000,
        sample_ms: int = 100,
        hidden: Sequence[int] = (32, 16),
        lr: float = 3e-3,
        fast_lr: float = 1e-2,
        activation: str = "tanh",
        seed: int = 0,
        features: StreamingFeatures | None = None,
        feature_windows_ms: Sequence[int] = (1000, 5000),
        rolling_window: int = 3000,
        max_gap_ms: int = 10_000,
        clip: float = 1.5,
        scale_halflife: float = 1000.0,
        huber_delta: float = 1.0,
        direction_weight: float = 2.0,
        clip_norm: float = 1.0,
        hedge_eta: float = 0.2,
        hedge_halflife: float = 5000.0,
        linear_prior: float = 20.0,
        inputs: Sequence[str] | None = DEFAULT_INPUTS,
        uncentred: Sequence[str] = DEFAULT_UNCENTRED,
        prior_input: str | None = RULES[0].feature,
        prior_slope: float = 0.2,
        prior_labels: float = 1000.0,
        rls_halflife: float = 20000.0,
        feed_features: bool = True,
    ) -> None:
        self.rolling_window = int(rolling_window)
        self._model_kwargs: dict[str, Any] = {
            "hidden": tuple(int(h) for h in hidden),
            "lr": float(lr),
            "fast_lr": float(fast_lr),
            "activation": str(activation),
            "seed": int(seed),
            "clip": float(clip),
            "scale_halflife": float(scale_halflife),
            "huber_delta": float(huber_delta),
            "direction_weight": float(direction_weight),
            "clip_norm": float(clip_norm),
            "hedge_eta": float(hedge_eta),
            "hedge_halflife": float(hedge_halflife),
            "linear_prior": float(linear_prior),
            "prior_slope": float(prior_slope),
            "prior_labels": float(prior_labels),
            "rls_halflife": float(rls_halflife),
        }
        if features is None:
            features = StreamingFeatures(windows_ms=tuple(feature_windows_ms))
        self.features = features
        feed = features.update if feed_features else _no_feed
        super().__init__(horizon_ms, sample_ms, max_gap_ms, feed)
        self.feature_names = tuple(features.names)
        self.inputs = None if inputs is None else tuple(str(n) for n in inputs)
        chosen = [
            i
            for i, name in enumerate(self.feature_names)
            if self.inputs is None or name.startswith(self.inputs)
        ]
        if not chosen:
            raise LearnerError(f"no feature matches the inputs {self.inputs}")
        self.input_names = tuple(self.feature_names[i] for i in chosen)
        self.uncentred = tuple(str(n) for n in uncentred)
        self.prior_input = None if prior_input is None else str(prior_input)
        if self.prior_input is not None and self.prior_input not in self.input_names:
            raise LearnerError(f"the prior's input {self.prior_input!r} is not among the inputs")
        self._pick = _picker(chosen)
        self.on_score: Callable[[Scored], None] | None = None
        self.on_sample: Callable[[int, Sequence[float] | Array], None] | None = None
        self.forecaster = self._fresh_forecaster()
        self._metrics = PrequentialMetrics(self.rolling_window)
        self._x_raw: Array = np.zeros(features.n_features)
        self.n_samples = 0
        self._n_scored = 0
        self.n_unpriced = 0
        self.n_nonfinite_predictions = 0
        self._refresh()

    def _fresh_forecaster(self) -> Forecaster:
        """A forecaster of this learner's settings, learning from zero."""
        kwargs = dict(self._model_kwargs)
        slope = kwargs.pop("prior_slope")
        overlap = -(-self.horizon_ms // self.sample_ms)
        kwargs["prior_samples"] = kwargs.pop("prior_labels") * overlap
        kwargs["lr"] /= overlap
        try:
            return Forecaster(
                len(self.input_names),
                **kwargs,
                centre=[not n.startswith(self.uncentred) for n in self.input_names],
                bounded=[n.startswith(BOUNDED_FEATURES) for n in self.input_names],
                prior_slopes=[slope if n == self.prior_input else 0.0 for n in self.input_names],
            )
        except ModelError as exc:
            raise LearnerError(f"bad model hyperparameters: {exc}") from exc

    # -- the events ---------------------------------------------------------------------------

    def _label(self, p: Pending) -> float:
        """log(ref now / ref at ``p.t_ms``) in bps; finite for any two finite positive
        prices (a ratio that under- or overflows is taken as a difference of logs)."""
        ref = self.features.reference_price
        ratio = ref / p.ref
        if 0.0 < ratio < _INF:
            return math.log(ratio) * _BPS
        return (math.log(ref) - math.log(p.ref)) * _BPS

    def _mature(self, p: Pending, y: float) -> None:
        """Score the prediction made at ``p.t_ms``, then learn from its label ``y`` (bps)."""
        self._metrics.update(y, p.ret_bps, p.linear_bps)
        self._n_scored += 1
        if self.on_score is not None:
            self.on_score(Scored(p.t_ms, y, p.ret_bps, p.linear_bps, p.p_up))
        self.forecaster.learn(p.x, y, p.experts)
        self._refresh()

    def _refresh(self) -> None:
        """Read what a prediction publishes and only scoring and learning change: the
        rolling metrics and the model version (kept off the prediction path)."""
        self._rolling = self._metrics.rolling()
        self._version = self.forecaster.n_updates

    def _observe(self, t_ms: int) -> tuple[float, Sequence[float] | Array]:
        """The reference price and the raw feature values as of ``t_ms``, shape
        (n_features,): a list, or an array such as ``features.vector(t_ms, out=self._x_raw)``."""
        features = self.features
        return features.reference_price, features.values(t_ms)

    def _sample(self, t_ms: int) -> tuple[Pending, Prediction] | None:
        """Take the sample at boundary ``t_ms``; None before any price is known.

        The hot path of a live worker: the inputs are picked from the feature values straight
        into one new array, and the rolling metrics and the model version published are those
        read at the last scoring (:meth:`_refresh`).
        """
        ref, raw = self._observe(t_ms)
        if not 0.0 < ref < _INF:
            self.n_unpriced += 1
            return None
        if self.on_sample is not None:
            self.on_sample(t_ms, raw)
        forecaster = self.forecaster
        x = forecaster.standardise(np.array(self._pick(raw), dtype=np.float64))
        ret_bps, p_up, linear_bps, experts = forecaster.predict(x)
        if not (_isfinite(ret_bps) and 0.0 <= p_up <= 1.0 and _isfinite(linear_bps)):
            ret_bps, p_up, linear_bps = self._fallback(ret_bps, p_up, linear_bps)
        self.n_samples += 1
        r = self._rolling
        return Pending(t_ms, x, ref, ret_bps, linear_bps, p_up, experts), Prediction(
            t_ms,
            ret_bps,
            p_up,
            ref,
            self._version,
            linear_bps,
            r.hit_rate,
            r.ic,
            r.skill_vs_zero,
            r.n_scored,
        )

    def _fallback(
        self, ret_bps: float, p_up: float, linear_bps: float
    ) -> tuple[float, float, float]:
        """The forecast to publish in place of one that is not finite; counted."""
        self.n_nonfinite_predictions += 1
        if not (_isfinite(ret_bps) and 0.0 <= p_up <= 1.0):
            ret_bps, p_up = FALLBACK_RET_BPS, FALLBACK_P_UP
        return ret_bps, p_up, linear_bps if _isfinite(linear_bps) else 0.0

    # -- introspection ------------------------------------------------------------------------

    @property
    def metrics(self) -> PrequentialMetrics:
        """Rolling and cumulative figures of every scored sample (after :meth:`flush`)."""
        self.flush()
        return self._metrics

    @property
    def n_scored(self) -> int:
        """Samples scored (after :meth:`flush`)."""
        self.flush()
        return self._n_scored

    @property
    def model_version(self) -> int:
        """Labels the model has learned (after :meth:`flush`)."""
        self.flush()
        return self.forecaster.n_updates

    @property
    def expert_weights(self) -> tuple[float, ...]:
        """Hedge weights of the network and the linear expert (they sum to 1)."""
        self.flush()
        return tuple(float(w) for w in self.forecaster.mix.weights())

    def counters(self) -> dict[str, int]:
        """Event counts: ticks, samples, scored, unpriced boundaries, gaps and what they cost,
        skipped updates, samples whose inputs were not finite and predictions replaced by the
        fallback (:attr:`n_nonfinite_predictions`)."""
        self.flush()
        return {
            "n_ticks": self.n_ticks,
            "n_predictions": self.n_samples,
            "n_scored": self._n_scored,
            "n_pending": len(self._pending),
            "n_unpriced": self.n_unpriced,
            "n_gaps": self.n_gaps,
            "n_gap_skipped": self.n_gap_skipped,
            "n_gap_dropped": self.n_gap_dropped,
            "n_updates": self.forecaster.n_updates,
            "n_update_skipped": self.forecaster.n_skipped,
            "n_nonfinite_inputs": self.forecaster.n_nonfinite_inputs,
            "n_nonfinite_predictions": self.n_nonfinite_predictions,
        }

    # -- snapshots ----------------------------------------------------------------------------

    def hyperparameters(self) -> dict[str, Any]:
        """Constructor arguments that rebuild an equivalent fresh learner (JSON-ready)."""
        model = {k: list(v) if isinstance(v, tuple) else v for k, v in self._model_kwargs.items()}
        return {
            "horizon_ms": self.horizon_ms,
            "sample_ms": self.sample_ms,
            **model,
            "feature_windows_ms": list(self.features.state_dict()["windows_ms"]),
            "rolling_window": self.rolling_window,
            "max_gap_ms": self.max_gap_ms,
            "inputs": None if self.inputs is None else list(self.inputs),
            "uncentred": list(self.uncentred),
            "prior_input": self.prior_input,
        }

    def state_dict(self) -> dict[str, Any]:
        """The whole learner: hyperparameters, features, model, pending queue, metrics, clock
        and counters (arrays are copies); calls :meth:`flush` first."""
        self.flush()
        fstate = self.features.state_dict()
        n_experts = self.forecaster.mix.n_experts
        return {
            "version": _SNAPSHOT_VERSION,
            "hyperparameters": self.hyperparameters(),
            "features_kwargs": {
                k: fstate[k] for k in ("return_windows_ms", "rsi_window_ms") if k in fstate
            },
            "features": fstate,
            "model": self.forecaster.state_dict(),
            "metrics": self._metrics.state_dict(),
            "pending": pending_state(self._pending, len(self.input_names), n_experts),
            "clock": self.clock_state(),
            "counters": {k.lstrip("_"): getattr(self, k) for k in _COUNTERS},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` of a learner with the same hyperparameters; later
        outputs are bit-identical to the original's."""
        if state.get("version") != _SNAPSHOT_VERSION:
            raise LearnerError(f"unsupported learner state version {state.get('version')!r}")
        if _jsonish(state.get("hyperparameters")) != _jsonish(self.hyperparameters()):
            raise LearnerError("the state belongs to a learner with other hyperparameters")
        try:
            pending = pending_from_state(state["pending"])
            saved = state["counters"]
            counters = {
                k: int(saved[k.lstrip("_")] if k not in _LATER_COUNTERS else saved.get(k, 0))
                for k in _COUNTERS
            }
            self.features.load_state_dict(state["features"])
            self.forecaster.load_state_dict(state["model"])
            self._metrics.load_state_dict(state["metrics"])
            self.load_clock_state(state["clock"], pending)
        except (KeyError, IndexError, TypeError, ValueError, ModelError) as exc:
            self._refresh()  # a part may have been restored
            raise LearnerError(f"cannot restore the learner: {exc}") from exc
        for k, v in counters.items():
            setattr(self, k, v)
        self._refresh()

    # -- trained models -----------------------------------------------------------------------

    def model_state(self) -> dict[str, Any]:
        """What a warm start of another learner takes from this one (see :meth:`warm_start`):
        the format and its version, the feature and input names, the hyperparameters and the
        forecaster (experts, Hedge mix, linear baseline); calls :meth:`flush` first."""
        self.flush()
        return {
            "format": MODEL_FORMAT,
            "version": MODEL_VERSION,
            "feature_names": list(self.feature_names),
            "input_names": list(self.input_names),
            "hyperparameters": self.hyperparameters(),
            "forecaster": self.forecaster.state_dict(),
            "n_labels": self._n_scored,
        }

    def warm_start(self, model: dict[str, Any]) -> None:
        """Start this learner's model from a :meth:`model_state` (of any symbol).

        The experts, the Hedge mix and the linear baseline are taken over; the input moments
        and the target scale are re-learned from this symbol's samples (see
        :meth:`~tickcast.model.forecaster.Forecaster.forget_scales`), as are the features,
        the metrics and the clock. Call it before the first tick.

        Raises
        ------
        LearnerError
            Another format or version, other features or inputs, or hyperparameters that
            shape the model differently (every such difference is named).
        """
        if model.get("format") != MODEL_FORMAT or model.get("version") != MODEL_VERSION:
            raise LearnerError(
                f"not a tickcast model of version {MODEL_VERSION} "
                f"(format {model.get('format')!r}, version {model.get('version')!r})"
            )
        mine = {
            "feature_names": list(self.feature_names),
            "input_names": list(self.input_names),
            **{k: v for k, v in self.hyperparameters().items() if k not in _LOCAL_SETTINGS},
        }
        theirs = {
            "feature_names": model.get("feature_names"),
            "input_names": model.get("input_names"),
            **{
                k: v
                for k, v in dict(model.get("hyperparameters") or {}).items()
                if k not in _LOCAL_SETTINGS
            },
        }
        differ = sorted(
            k
            for k in mine.keys() | theirs.keys()
            if _jsonish(mine.get(k)) != _jsonish(theirs.get(k))
        )
        if differ:
            shown = ", ".join(f"{k}: model {theirs.get(k)!r}, here {mine.get(k)!r}" for k in differ)
            raise LearnerError(f"the model was trained with other settings ({shown})")
        if self.n_ticks:
            raise LearnerError("warm start a learner before its first tick")
        try:
            self.forecaster.load_state_dict(model["forecaster"])
        except (KeyError, IndexError, TypeError, ValueError, ModelError) as exc:
            self.forecaster = self._fresh_forecaster()
            raise LearnerError(f"cannot read the model: {exc}") from exc
        self.forecaster.forget_scales()
        self._refresh()

    def snapshot(self) -> bytes:
        """The whole learner as bytes (no pickle); see :meth:`state_dict`."""
        return pack_state(self.state_dict())

    def restore(self, data: bytes) -> None:
        """Restore a :meth:`snapshot` into this learner (same hyperparameters)."""
        self.load_state_dict(unpack_state(data))

    @classmethod
    def from_snapshot(cls, data: bytes) -> OnlineLearner:
        """Build a learner from a :meth:`snapshot`, hyperparameters included."""
        state = unpack_state(data)
        try:
            hp = dict(state["hyperparameters"])
            features = StreamingFeatures(hp["feature_windows_ms"], **state["features_kwargs"])
            learner = cls(**hp, features=features)
        except (KeyError, TypeError, ModelError) as exc:
            raise LearnerError(f"snapshot hyperparameters unusable: {exc}") from exc
        learner.load_state_dict(state)
        return learner


def _no_feed(tick: Any) -> None:
    """The feed of a learner whose features another learner feeds."""


def _picker(index: Sequence[int]) -> Callable[[Sequence[float] | Array], tuple[Any, ...]]:
    """A function that returns the items at ``index`` of a sequence, as a tuple."""
    if len(index) == 1:
        i = index[0]
        return lambda values: (values[i],)
    return operator.itemgetter(*index)


def _jsonish(obj: Any) -> Any:
    """``obj`` with tuples as lists, as it comes back from JSON."""
    return json.loads(json.dumps(obj))
