"""The online learner of one symbol: sample clock, predictions, delayed labels, metrics.

:class:`OnlineLearner` turns a stream of ticks into predictions on a regular event-time grid
and learns from each prediction once its label is known (test-then-train, Dawid 1984):

1. Ticks are fed in event-time order with :meth:`OnlineLearner.update`. Before a tick is
   applied, every *event* it passes is processed in time order: the labelling time
   ``t + horizon_ms`` of a pending sample and the sample boundaries (multiples of
   ``sample_ms``). A tick stamped exactly at a boundary belongs to the next interval, so the
   features and the reference price seen at time ``T`` reflect the ticks with ``event_ms < T``.
2. At a labelling time the label ``y = log(ref(t + H) / ref(t))`` (bps) is known: the
   prediction made at ``t`` is scored (prequential metrics), then the networks, the linear
   baseline and the target scale learn from the ``x`` of time ``t``.
3. At a sample boundary ``T`` the features are read, standardised (EW mean and variance) and
   clipped, the networks and the linear baseline predict, and the sample joins the pending
   queue (bounded by ``ceil(horizon / sample) + 1``).

The model. Two networks (:class:`~tickcast.model.mlp.TwoHeadMLP`: a return head and a P(up)
head on shared tanh layers) learn every label: a *steady* one, two hidden layers trained by
Adam at a small step (low noise once a stable, possibly nonlinear relation is found), and an
*agile* one, one hidden layer trained by plain SGD at a large step (its output layer moves
fast, its hidden layer slowly: it tracks drifting, mostly linear relations). Their
predictions are mixed by exponentially weighted Hedge (Freund and Schapire 1997) on their
discounted prequential squared errors, so the learner follows whichever has predicted better
lately. Every model learns a target in units of a running robust scale of the labels (EW mean
absolute label, bias-corrected, times sqrt(pi / 2)), so predictions follow changes of
volatility and the losses see targets of order one. Output layers start at zero: the learner
begins as the zero predictor. The linear baseline is an online linear regression (LMS: SGD on
the Huber loss, the agile network's step) on the same standardised inputs.

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

Gaps. When a tick arrives more than ``max_gap_ms`` after the previous one, events up to
``previous + max_gap_ms`` are processed as usual; the samples still pending are dropped
unlabelled (their label would straddle the gap), the boundaries in the rest of the gap are
skipped, and the clock resumes after the tick. Both are counted.
"""

from __future__ import annotations

import io
import json
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np
from numpy.typing import NDArray

from . import ModelError
from .features import StreamingFeatures
from .metrics import PrequentialMetrics
from .mlp import MLP, TwoHeadMLP
from .optim import SGD, Adam

__all__ = [
    "LearnerError",
    "OnlineLearner",
    "Prediction",
    "Scored",
    "pack_state",
    "unpack_state",
]

Array = NDArray[np.float64]

_BPS = 1e4
_SQRT_HALF_PI = math.sqrt(math.pi / 2.0)  # E|y| * this = sigma for a normal y
_VAR_FLOOR = 1e-12  # added to input variances: a constant input standardises to 0
_HEDGE_CAP = 25.0  # squared standardised error, i.e. 5 robust standard deviations
_MAGIC = b"TCLEARN1"
_SNAPSHOT_VERSION = 1


class LearnerError(ModelError):
    """Invalid learner hyperparameters or a snapshot that cannot be restored."""


@dataclass(frozen=True, slots=True)
class Prediction:
    """A prediction made at sample time ``t_ms`` with the weights of that time.

    Attributes
    ----------
    t_ms : int
        Sample event time, ms (a multiple of ``sample_ms``).
    ret_bps : float
        Predicted log return from ``t_ms`` to ``t_ms + horizon_ms``, bps.
    p_up : float
        Predicted probability that the return is positive, given that it is nonzero.
    ref_price : float
        Reference price at ``t_ms`` (mid, or last trade before any quote).
    model_version : int
        Updates the networks have applied (labels learned).
    linear_bps : float
        The online linear baseline's prediction, bps.
    hit_rate, ic, skill_vs_zero : float
        Rolling prequential metrics at ``t_ms`` (NaN until defined).
    n_scored : int
        Samples in the rolling window.
    """

    t_ms: int
    ret_bps: float
    p_up: float
    ref_price: float
    model_version: int
    linear_bps: float
    hit_rate: float
    ic: float
    skill_vs_zero: float
    n_scored: int


class Scored(NamedTuple):
    """A labelled sample: what was predicted at ``t_ms`` (bps) and what happened."""

    t_ms: int
    label_bps: float
    ret_bps: float
    linear_bps: float
    p_up: float


class _Pending(NamedTuple):
    t_ms: int
    x: Array
    ref: float
    ret_bps: float
    linear_bps: float
    p_up: float
    steady_bps: float
    agile_bps: float


_COUNTERS = (
    "n_ticks",
    "n_samples",
    "n_scored",
    "n_unpriced",
    "n_gaps",
    "n_gap_skipped",
    "n_gap_dropped",
)


def _hedge_loss(e: float) -> float:
    """Squared error (the metric the skill figures use), capped so one jump cannot decide."""
    return min(e * e, _HEDGE_CAP)


class OnlineLearner:
    """Online learner of one symbol; see the module docstring.

    Parameters
    ----------
    horizon_ms : int
        Label horizon ``H``, ms.
    sample_ms : int
        Sample interval, ms (samples at multiples of it, in event time).
    hidden : sequence of int
        Hidden layer widths of the steady network.
    lr : float
        Adam step of the steady network.
    fast_hidden : sequence of int
        Hidden layer widths of the agile network.
    fast_lr : float
        SGD step of the agile network and of the linear baseline.
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
        Half-life, in samples, of the input standardiser and of the target scale.
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

    Attributes
    ----------
    on_score : callable or None
        Called with a :class:`Scored` each time a sample is labelled (not kept in snapshots).
    metrics : PrequentialMetrics
        Rolling and cumulative figures of every scored sample.
    """

    DEFAULT_HORIZON_MS: ClassVar[int] = 1000

    def __init__(
        self,
        *,
        horizon_ms: int = 1000,
        sample_ms: int = 100,
        hidden: Sequence[int] = (32, 16),
        lr: float = 3e-4,
        fast_hidden: Sequence[int] = (32,),
        fast_lr: float = 1e-2,
        activation: str = "tanh",
        seed: int = 0,
        features: StreamingFeatures | None = None,
        feature_windows_ms: Sequence[int] = (1000, 5000, 30000),
        rolling_window: int = 3000,
        max_gap_ms: int = 10_000,
        clip: float = 2.0,
        scale_halflife: float = 1000.0,
        huber_delta: float = 1.0,
        direction_weight: float = 2.0,
        clip_norm: float = 1.0,
        hedge_eta: float = 0.05,
        hedge_halflife: float = 5000.0,
    ) -> None:
        if not (0 < sample_ms <= max_gap_ms and horizon_ms > 0):
            raise LearnerError(
                "need horizon_ms > 0 and 0 < sample_ms <= max_gap_ms, got "
                f"{horizon_ms}, {sample_ms}, {max_gap_ms}"
            )
        positive = (clip, scale_halflife, hedge_halflife, lr, fast_lr, clip_norm)
        if not all(v > 0.0 for v in positive) or hedge_eta < 0.0:
            raise LearnerError("clip, half-lives, steps and clip_norm must be positive")
        self.horizon_ms = int(horizon_ms)
        self.sample_ms = int(sample_ms)
        self.hidden = tuple(int(h) for h in hidden)
        self.fast_hidden = tuple(int(h) for h in fast_hidden)
        self.lr = float(lr)
        self.fast_lr = float(fast_lr)
        self.activation = activation
        self.seed = int(seed)
        self.rolling_window = int(rolling_window)
        self.max_gap_ms = int(max_gap_ms)
        self.clip = float(clip)
        self.scale_halflife = float(scale_halflife)
        self.huber_delta = float(huber_delta)
        self.direction_weight = float(direction_weight)
        self.clip_norm = float(clip_norm)
        self.hedge_eta = float(hedge_eta)
        self.hedge_halflife = float(hedge_halflife)
        if features is None:
            features = StreamingFeatures(windows_ms=tuple(feature_windows_ms))
        self.features = features
        self.feature_names = tuple(features.names)
        self.on_score: Callable[[Scored], None] | None = None
        d = features.n_features
        steady_opt = Adam(lr=self.lr, clip_norm=self.clip_norm)
        agile_opt = SGD(lr=self.fast_lr, clip_norm=self.clip_norm)
        self.steady = self._network(d, self.hidden, steady_opt, self.seed)
        self.agile = self._network(d, self.fast_hidden, agile_opt, self.seed + 1)
        self.linear = MLP(d, (), loss="huber", optimizer=agile_opt, seed=self.seed)
        self.linear.params[0][...] = 0.0
        self.metrics = PrequentialMetrics(self.rolling_window)
        self.max_pending = -(-self.horizon_ms // self.sample_ms) + 1
        self._alpha = 1.0 - 0.5 ** (1.0 / self.scale_halflife)
        self._hedge_keep = 0.5 ** (1.0 / self.hedge_halflife)
        self._x_raw: Array = np.zeros(d)
        self._tmp: Array = np.zeros(d)
        self._x_mean: Array = np.zeros(d)
        self._x_var: Array = np.zeros(d)
        self._x_weight = 0.0  # 1 - (1 - alpha)^n: bias correction of the EW input moments
        self._y_abs = 0.0  # EW mean |label| (bps), not bias-corrected
        self._y_weight = 0.0
        self._y_sq = 0.0  # mean squared label (bps^2) since the start: the Hedge loss unit
        self._loss = [0.0, 0.0]  # discounted losses of the steady and agile networks
        self._pending: deque[_Pending] = deque()
        self._next_t = 0  # next sample boundary, ms (0: clock not started)
        self._last_event_ms = 0
        self.n_ticks = 0
        self.n_samples = 0
        self.n_scored = 0
        self.n_unpriced = 0
        self.n_gaps = 0
        self.n_gap_skipped = 0
        self.n_gap_dropped = 0

    def _network(
        self, d: int, hidden: tuple[int, ...], optimizer: Adam | SGD, seed: int
    ) -> TwoHeadMLP:
        net = TwoHeadMLP(
            d,
            hidden,
            activation=self.activation,
            huber_delta=self.huber_delta,
            direction_weight=self.direction_weight,
            optimizer=optimizer,
            seed=seed,
        )
        net.params[-2][...] = 0.0  # output layer: start as the zero predictor
        return net

    # -- the event loop -----------------------------------------------------------------------

    def update(self, tick: Any) -> list[Prediction]:
        """Feed one tick; return the predictions of the sample boundaries it passed (in order).

        ``tick`` is any object with the attributes of ``tickcast.service.ticks.Tick``. Before
        it is applied to the features, every labelling time and sample boundary at or before
        its event time is processed (see the module docstring).
        """
        e = tick.event_ms
        out: list[Prediction] = []
        if self._next_t == 0:
            self._next_t = (e // self.sample_ms + 1) * self.sample_ms
        elif e >= self._next_t or (self._pending and e >= self._pending[0].t_ms + self.horizon_ms):
            if e - self._last_event_ms > self.max_gap_ms:
                self._cross_gap(e, out)
            else:
                self._process_until(e, out)
        self.features.update(tick)
        self.n_ticks += 1
        if e > self._last_event_ms:
            self._last_event_ms = e
        return out

    def _cross_gap(self, e: int, out: list[Prediction]) -> None:
        """Process events up to ``max_gap_ms`` after the last tick, then skip to ``e``."""
        self._process_until(self._last_event_ms + self.max_gap_ms, out)
        self.n_gaps += 1
        self.n_gap_dropped += len(self._pending)
        self._pending.clear()
        resume = (e // self.sample_ms + 1) * self.sample_ms
        self.n_gap_skipped += max(0, (resume - self._next_t) // self.sample_ms)
        self._next_t = resume

    def _process_until(self, limit: int, out: list[Prediction]) -> None:
        """Process labelling times and sample boundaries ``<= limit`` in time order."""
        pending = self._pending
        horizon = self.horizon_ms
        while True:
            t_sample = self._next_t
            if pending and pending[0].t_ms + horizon <= t_sample:
                if pending[0].t_ms + horizon > limit:
                    return
                self._mature(pending.popleft())
                continue
            if t_sample > limit:
                return
            prediction = self._sample(t_sample)
            if prediction is not None:
                out.append(prediction)
            self._next_t = t_sample + self.sample_ms

    def _mature(self, p: _Pending) -> None:
        """Score the prediction made at ``p.t_ms``, then learn from its label."""
        y = math.log(self.features.reference_price / p.ref) * _BPS
        self.metrics.update(y, p.ret_bps, p.linear_bps)
        self.n_scored += 1
        if self.on_score is not None:
            self.on_score(Scored(p.t_ms, y, p.ret_bps, p.linear_bps, p.p_up))
        a = self._alpha
        self._y_weight += a * (1.0 - self._y_weight)
        self._y_abs += a * (abs(y) - self._y_abs)
        scale = self._y_scale()
        self._y_sq += (y * y - self._y_sq) / self.n_scored
        unit = math.sqrt(self._y_sq) or 1.0
        keep = self._hedge_keep
        self._loss[0] = keep * self._loss[0] + _hedge_loss((p.steady_bps - y) / unit)
        self._loss[1] = keep * self._loss[1] + _hedge_loss((p.agile_bps - y) / unit)
        target = y / scale
        self.steady.learn_one(p.x, target)
        self.agile.learn_one(p.x, target)
        self.linear.learn_one(p.x, target)

    def _y_scale(self) -> float:
        """Robust standard deviation of the labels (bps); 1 before any nonzero label."""
        if self._y_abs <= 0.0:
            return 1.0
        return self._y_abs / self._y_weight * _SQRT_HALF_PI

    def _standardise(self, x: Array) -> Array:
        """Update the EW input moments with ``x``; return it standardised and clipped (a copy)."""
        self._x_weight += self._alpha * (1.0 - self._x_weight)
        k = self._alpha / self._x_weight
        mean, var, tmp = self._x_mean, self._x_var, self._tmp
        delta = x - mean
        np.multiply(delta, k, out=tmp)
        mean += tmp  # mean' = mean + k delta
        tmp *= delta
        var += tmp
        var *= 1.0 - k  # var' = (1 - k) (var + k delta^2)
        np.subtract(x, mean, out=delta)
        np.add(var, _VAR_FLOOR, out=tmp)
        np.sqrt(tmp, out=tmp)
        delta /= tmp
        np.clip(delta, -self.clip, self.clip, out=delta)
        return delta

    def _observe(self, t_ms: int) -> tuple[float, Array]:
        """The reference price and the raw feature vector as of ``t_ms``."""
        return self.features.reference_price, self.features.vector(t_ms, out=self._x_raw)

    @property
    def expert_weights(self) -> tuple[float, float]:
        """Hedge weights of the steady and the agile network (they sum to 1)."""
        d = self.hedge_eta * (self._loss[1] - self._loss[0])
        w_agile = 1.0 / (1.0 + math.exp(d)) if d > -700.0 else 1.0
        return 1.0 - w_agile, w_agile

    def _sample(self, t_ms: int) -> Prediction | None:
        """Take the sample at boundary ``t_ms``; None before any price is known."""
        ref, raw = self._observe(t_ms)
        if not ref > 0.0:
            self.n_unpriced += 1
            return None
        x = self._standardise(raw)
        scale = self._y_scale()
        r_steady, p_steady = self.steady.predict_one(x)
        r_agile, p_agile = self.agile.predict_one(x)
        w_steady, w_agile = self.expert_weights
        p = _Pending(
            t_ms=t_ms,
            x=x,
            ref=ref,
            ret_bps=(w_steady * r_steady + w_agile * r_agile) * scale,
            linear_bps=self.linear.predict_one(x) * scale,
            p_up=w_steady * p_steady + w_agile * p_agile,
            steady_bps=r_steady * scale,
            agile_bps=r_agile * scale,
        )
        self._pending.append(p)
        if len(self._pending) > self.max_pending:
            raise AssertionError(f"pending queue over its bound {self.max_pending}")
        self.n_samples += 1
        r = self.metrics.rolling()
        return Prediction(
            t_ms=t_ms,
            ret_bps=p.ret_bps,
            p_up=p.p_up,
            ref_price=ref,
            model_version=self.steady.n_updates,
            linear_bps=p.linear_bps,
            hit_rate=r.hit_rate,
            ic=r.ic,
            skill_vs_zero=r.skill_vs_zero,
            n_scored=r.n_scored,
        )

    # -- introspection ------------------------------------------------------------------------

    @property
    def n_pending(self) -> int:
        """Samples waiting for their label."""
        return len(self._pending)

    @property
    def model_version(self) -> int:
        """Updates the networks have applied."""
        return self.steady.n_updates

    def counters(self) -> dict[str, int]:
        """Event counts: ticks, samples, scored, unpriced boundaries, gaps and what they cost."""
        return {
            "n_ticks": self.n_ticks,
            "n_predictions": self.n_samples,
            "n_scored": self.n_scored,
            "n_pending": len(self._pending),
            "n_unpriced": self.n_unpriced,
            "n_gaps": self.n_gaps,
            "n_gap_skipped": self.n_gap_skipped,
            "n_gap_dropped": self.n_gap_dropped,
            "n_updates": self.steady.n_updates,
            "n_update_skipped": self.steady.n_skipped + self.agile.n_skipped,
        }

    # -- snapshots ----------------------------------------------------------------------------

    def hyperparameters(self) -> dict[str, Any]:
        """Constructor arguments that rebuild an equivalent fresh learner (JSON-ready)."""
        return {
            "horizon_ms": self.horizon_ms,
            "sample_ms": self.sample_ms,
            "hidden": list(self.hidden),
            "lr": self.lr,
            "fast_hidden": list(self.fast_hidden),
            "fast_lr": self.fast_lr,
            "activation": self.activation,
            "seed": self.seed,
            "feature_windows_ms": list(self.features.state_dict()["windows_ms"]),
            "rolling_window": self.rolling_window,
            "max_gap_ms": self.max_gap_ms,
            "clip": self.clip,
            "scale_halflife": self.scale_halflife,
            "huber_delta": self.huber_delta,
            "direction_weight": self.direction_weight,
            "clip_norm": self.clip_norm,
            "hedge_eta": self.hedge_eta,
            "hedge_halflife": self.hedge_halflife,
        }

    def state_dict(self) -> dict[str, Any]:
        """The whole learner: hyperparameters, features, networks, baseline, scalers, pending
        queue, metrics, clock and counters (arrays are copies)."""
        fstate = self.features.state_dict()
        pend = list(self._pending)
        columns = ("ref", "ret_bps", "linear_bps", "p_up", "steady_bps", "agile_bps")
        return {
            "version": _SNAPSHOT_VERSION,
            "hyperparameters": self.hyperparameters(),
            "features_kwargs": {
                k: fstate[k] for k in ("return_windows_ms", "rsi_window_ms") if k in fstate
            },
            "features": fstate,
            "steady": self.steady.state_dict(),
            "agile": self.agile.state_dict(),
            "linear": self.linear.state_dict(),
            "metrics": self.metrics.state_dict(),
            "scaler": {
                "x_mean": self._x_mean.copy(),
                "x_var": self._x_var.copy(),
                "floats": [self._x_weight, self._y_abs, self._y_weight, self._y_sq, *self._loss],
            },
            "pending": {
                "t_ms": np.array([p.t_ms for p in pend], dtype=np.int64),
                "x": np.array([p.x for p in pend]).reshape(len(pend), len(self.feature_names)),
                **{c: np.array([getattr(p, c) for p in pend], dtype=np.float64) for c in columns},
            },
            "clock": [self._next_t, self._last_event_ms],
            "counters": {k: getattr(self, k) for k in _COUNTERS},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` of a learner with the same hyperparameters; later
        outputs are bit-identical to the original's."""
        if state.get("version") != _SNAPSHOT_VERSION:
            raise LearnerError(f"unsupported learner state version {state.get('version')!r}")
        if _jsonish(state.get("hyperparameters")) != _jsonish(self.hyperparameters()):
            raise LearnerError("the state belongs to a learner with other hyperparameters")
        try:
            self.features.load_state_dict(state["features"])
            self.steady.load_state_dict(state["steady"])
            self.agile.load_state_dict(state["agile"])
            self.linear.load_state_dict(state["linear"])
            self.metrics.load_state_dict(state["metrics"])
            sc = state["scaler"]
            x_mean = np.array(sc["x_mean"], dtype=np.float64)
            x_var = np.array(sc["x_var"], dtype=np.float64)
            floats = [float(v) for v in sc["floats"]]
            pend = state["pending"]
            x = np.asarray(pend["x"], dtype=np.float64)
            cols = [pend[c] for c in ("ref", "ret_bps", "linear_bps", "p_up")]
            experts = [pend["steady_bps"], pend["agile_bps"]]
            pending = deque(
                _Pending(int(t), x[i].copy(), *(float(c[i]) for c in cols + experts))
                for i, t in enumerate(pend["t_ms"])
            )
            clock = [int(v) for v in state["clock"]]
            counters = {k: int(state["counters"][k]) for k in _COUNTERS}
        except (KeyError, IndexError, TypeError, ValueError, ModelError) as exc:
            raise LearnerError(f"cannot restore the learner: {exc}") from exc
        if x_mean.shape != self._x_mean.shape or len(floats) != 6:
            raise LearnerError("scaler state does not fit the features")
        if len(pending) > self.max_pending:
            raise LearnerError(f"pending queue of {len(pending)} over its bound")
        self._x_mean, self._x_var = x_mean, x_var
        self._x_weight, self._y_abs, self._y_weight, self._y_sq = floats[:4]
        self._loss = floats[4:]
        self._pending = pending
        self._next_t, self._last_event_ms = clock
        for k, v in counters.items():
            setattr(self, k, v)

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


def _jsonish(obj: Any) -> Any:
    """``obj`` with tuples as lists, as it comes back from JSON."""
    return json.loads(json.dumps(obj))


# -- byte form of a state tree ---------------------------------------------------------------


def pack_state(tree: Any) -> bytes:
    """Serialise a tree of dicts, lists, scalars and numpy arrays without pickle.

    Layout: ``MAGIC``, an 8-byte little-endian header length, a JSON header (the tree with
    each array replaced by ``{"__array__": i}``, plus dtype and shape of each array), then
    the arrays' raw bytes back to back. Floats round-trip exactly (JSON writes the shortest
    repr; NaN and infinities as JSON extensions).

    Examples
    --------
    >>> tree = {"a": np.arange(3.0), "b": [1, 0.1, "x"], "c": {"d": np.int64(7)}}
    >>> back = unpack_state(pack_state(tree))
    >>> back["a"].tolist(), back["b"], back["c"]
    ([0.0, 1.0, 2.0], [1, 0.1, 'x'], {'d': 7})
    """
    arrays: list[np.ndarray] = []

    def encode(obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            arrays.append(obj if obj.flags.c_contiguous else obj.copy(order="C"))
            return {"__array__": len(arrays) - 1}
        if isinstance(obj, dict):
            return {str(k): encode(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [encode(v) for v in obj]
        if isinstance(obj, np.generic):
            return obj.item()
        return obj

    body = encode(tree)
    meta = [{"dtype": a.dtype.str, "shape": list(a.shape)} for a in arrays]
    header = json.dumps({"tree": body, "arrays": meta}, separators=(",", ":")).encode()
    buf = io.BytesIO()
    buf.write(_MAGIC)
    buf.write(len(header).to_bytes(8, "little"))
    buf.write(header)
    for a in arrays:
        buf.write(a.tobytes())
    return buf.getvalue()


def unpack_state(data: bytes) -> Any:
    """Inverse of :func:`pack_state`; raises :class:`LearnerError` on malformed bytes."""
    try:
        if data[: len(_MAGIC)] != _MAGIC:
            raise ValueError("bad magic")
        start = len(_MAGIC) + 8
        size = int.from_bytes(data[len(_MAGIC) : start], "little")
        header = json.loads(data[start : start + size])
        offset = start + size
        arrays = []
        for meta in header["arrays"]:
            dtype = np.dtype(meta["dtype"])
            if dtype.hasobject:
                raise ValueError("object arrays are not allowed")
            shape = tuple(int(n) for n in meta["shape"])
            nbytes = dtype.itemsize * math.prod(shape)
            if offset + nbytes > len(data):
                raise ValueError("truncated array data")
            arrays.append(
                np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=offset)
                .reshape(shape)
                .copy()
            )
            offset += nbytes
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise LearnerError(f"not a learner snapshot: {exc}") from exc

    def decode(obj: Any) -> Any:
        if isinstance(obj, dict):
            if set(obj) == {"__array__"}:
                return arrays[obj["__array__"]]
            return {k: decode(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [decode(v) for v in obj]
        return obj

    return decode(header["tree"])
