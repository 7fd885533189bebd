"""The predictive core of a learner: standardised inputs -> a Hedge mix of experts, in bps.

:class:`Forecaster` owns what turns a raw feature vector into a forecast and learns from a
label, with no notion of time: the online learner (:mod:`tickcast.model.learner`) decides when
to call it.

* **Inputs.** Each feature is standardised by its exponentially weighted mean and variance
  (bias-corrected, half-life ``scale_halflife`` samples) and clipped to ``[-clip, clip]``: the
  scales of real features drift and their tails are fat, and a bounded input keeps one
  outlier from moving the weights much. Signed features whose zero means something (a
  balanced book, no net flow) are not centred, only scaled by their running root mean
  square: centring them on a drifting mean would move the zero the models' decision
  boundaries are anchored to. Ratios bounded by construction (``bounded``: the book
  imbalance, trade flows, the RSI, all in [-1, 1]) have no tails to clip, and clipping them
  at ``clip`` cut off their most telling values, the lopsided books (clipped at 1.5, the
  book imbalance lost 0.001 of IC on the shared BTCUSDT recording, 0.006 on its second
  half): their bound is one a standardised [-1, 1] value cannot reach, ``1 / sqrt(a (1 -
  a))`` for the moments' step ``a`` (38 at the default half-life), kept only as a guard.
  A raw vector with a non-finite value (or one so large that
  its square overflows) carries no information: the moments do not learn from it, its
  non-finite inputs read as 0, and it is counted (``n_nonfinite_inputs``).
* **Target.** Every model learns ``y / s``, ``s`` a robust scale of the labels (mean absolute
  label times sqrt(pi / 2)), so that the losses (Huber on the return, logistic on the
  direction) see targets of order one on any instrument. ``s`` is the mean over the warm-up's
  labels, then an exponentially weighted mean with a long half-life (``target_halflife``,
  100,000 labels: hours): it is a unit, not a volatility forecast. Forecasts are published as
  ``s`` times the models' outputs, and multiplying them by a fast, noisy estimate of recent
  volatility cost about 0.01 of IC on the shared BTCUSDT recording; the inputs (realised
  volatility, spread, trade rates) carry the volatility the models can use.
* **Experts**, each a return head and a P(up) head learning every label: a *network*
  (:class:`~tickcast.model.mlp.TwoHeadMLP`, tanh layers starting as the zero predictor, Adam
  at a small step: low noise once a stable, possibly nonlinear relation is found) and a
  *linear* expert (:class:`~tickcast.model.rls.BayesLinear`: recursive least squares from a
  prior centred on the slopes a parameter-free rule implies, ``prior_slopes``; it forecasts
  what the rule says from the first sample, learns the other inputs in a handful of labels
  and tracks drifting linear relations).
* **Mix.** The expected return is a *constrained stacking* of the experts' returns (Granger
  and Ramanathan 1984, the variant whose weights sum to one): the linear expert's forecast
  plus a share ``lambda`` of the network's departure from it, ``lin + lambda (net - lin)``,
  ``lambda`` learned by a one-input :class:`~tickcast.model.rls.BayesLinear` from the prior
  0 (the linear expert alone). The stacking only weighs the experts; each expert scales its
  own forecast. An unconstrained least-squares stacking also learned the forecasts' scale
  a second time, on top of the linear expert: its weights drifted from (0, 1.02) to (0.07,
  1.12) over the shared BTCUSDT recording, the published amplitude with them, and the
  forecast lost 0.003 of IC to the linear expert it was meant to improve on. Constrained,
  ``lambda`` stays near 0 on that recording (the network adds nothing there) and the
  simulated market's IC rose on every symbol and seed (the network ranks its moves
  better). P(up) is the :class:`~tickcast.model.ensemble.HedgeMix` of the experts' P(up)
  heads, weighed by their discounted squared errors (in units of the labels' RMS) from a
  prior favouring the linear expert. (Hedge alone for the return kept one expert: on the
  simulated market the better-scaled linear one, though the network ranked the moves
  better.)
* **Warm-up.** The first 100 labels only teach the scales: the target scale of a
  handful of labels, most of them 0 on a quiet market, would feed the experts targets tens of
  times too large and charge Hedge losses that decide the mix for thousands of labels. The
  linear expert's prior forecasts meanwhile, in a unit that leans on 1 bps as much as on
  ``_UNIT_PRIOR_LABELS`` labels: the mean of the first few labels swings by a factor of 40
  on the shared BTCUSDT recording (0.02 to 1 bps), and a forecast published in it would
  swing as much (the warm-up's IC fell from the rule's 0.235 to 0.10).
* **The prior in correlation units.** The linear expert's prior slope is the correlation
  the rule is expected to have with the label (a least-squares slope between standardised
  variables is their correlation). At the first label it learns from, the slope is
  converted to target units by the labels' RMS over the target unit ``s`` (bounded by
  ``_PRIOR_RATIO_CAP``): ``s`` is a robust scale, and the labels of a market that often
  does not move in a horizon (most 1 s returns of BTCUSDT are 0) have an RMS well above
  it, so a slope in units of ``s`` would under-scale the rule's forecast and the expert
  would spend its first thousands of labels growing it.
* **Baseline.** The online linear regression the metrics compare with (LMS: SGD on the Huber
  loss at the linear expert's step, on the same inputs and target) is kept apart from the
  mix: it is a benchmark, not an expert.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from . import ModelError
from .ensemble import HedgeMix
from .mlp import MLP, TwoHeadMLP
from .optim import SGD, Adam, Optimizer
from .rls import BayesLinear

__all__ = ["Forecast", "Forecaster"]

Array = NDArray[np.float64]

_SQRT_HALF_PI = math.sqrt(math.pi / 2.0)  # E|y| * this = sigma for a normal y
_VAR_FLOOR = 1e-12  # added to input variances: a constant input standardises to 0
_HEDGE_CAP = 25.0  # squared error in units of the labels' RMS, i.e. 5 of them
_isfinite = math.isfinite
#: Labels that only teach the scales: the target scale (and the unit of the Hedge losses)
#: means nothing over the first few labels, most of them 0 on a quiet market, so that
#: learning from them would feed the experts targets tens of times too large and charge
#: Hedge losses that decide the mix for thousands of labels.
_WARMUP = 100
#: The warm-up's target unit leans on 1 bps with the weight of this many labels.
_UNIT_PRIOR_LABELS = 10.0
#: Bound of the labels' RMS over the target unit that converts the prior slopes (a warm-up
#: with one or two moves among zeros would otherwise set it from those alone).
_PRIOR_RATIO_CAP = 3.0
#: Prior precision of the network's share in the stacking, relative to the linear expert's
#: prior: the share is learned on the gap between the two experts' forecasts, a fraction of
#: a target unit, so that even this tenth makes the network earn its share over thousands
#: of labels.
_STACK_PRIOR_SHARE = 0.1


class Forecast(NamedTuple):
    """One forecast, in bps: the mix, its P(up), the linear baseline and each expert."""

    ret_bps: float
    p_up: float
    linear_bps: float
    experts: Array


class Forecaster:
    """Input standardisation, target scale, Hedge mix of experts and linear baseline.

    Parameters
    ----------
    n_inputs : int
        Length of the raw feature vector.
    hidden, lr : sequence of int, float
        Hidden widths and Adam step of the network expert.
    fast_lr : float
        SGD step of the linear baseline.
    activation : {"tanh", "relu"}
        Hidden activation.
    seed : int
        Seed of the initial weights.
    clip : float
        Standardised inputs are clipped to ``[-clip, clip]``.
    scale_halflife : float
        Half-life, in samples, of the input moments.
    huber_delta, direction_weight : float
        Huber threshold (target units) and weight of the P(up) loss of the experts.
    clip_norm : float
        Global gradient-norm clip of every optimizer.
    hedge_eta, hedge_halflife : float
        Hedge learning rate per unit of squared error, and half-life of the discounted
        losses, in labels.
    linear_prior : float
        Prior weight of the linear expert in the mix, relative to each network's 1.
    bounded : sequence of bool, optional
        Per input: a ratio bounded by construction in [-1, 1], not clipped at ``clip``
        (default: none).
    centre : sequence of bool, optional
        Per input: centre it on its running mean (default), or keep its zero and scale it
        by its running root mean square.
    prior_slopes : sequence of float, optional
        Prior mean of the linear expert's slopes (target units per standardised input);
        zeros by default.
    prior_samples : float
        The prior's worth, in labels (see :class:`~tickcast.model.rls.BayesLinear`).
    rls_halflife : float
        Half-life, in labels, of the linear expert's memory.
    target_halflife : float
        Half-life, in labels, of the target scale after the warm-up.
    """

    def __init__(
        self,
        n_inputs: int,
        *,
        hidden: Sequence[int],
        lr: float,
        fast_lr: float,
        activation: str,
        seed: int,
        clip: float,
        scale_halflife: float,
        huber_delta: float,
        direction_weight: float,
        clip_norm: float,
        hedge_eta: float,
        hedge_halflife: float,
        linear_prior: float,
        centre: Sequence[bool] | None = None,
        bounded: Sequence[bool] | None = None,
        prior_slopes: Sequence[float] | None = None,
        prior_samples: float = 3000.0,
        rls_halflife: float = 5000.0,
        target_halflife: float = 100_000.0,
    ) -> None:
        positive = [clip, scale_halflife, hedge_halflife, target_halflife, lr, fast_lr]
        positive += [clip_norm, linear_prior]
        if not all(v > 0.0 for v in positive) or not hedge_eta >= 0.0:
            raise ModelError("clip, half-lives, steps, clip_norm and prior must be positive")
        self.clip = float(clip)
        self._net_kwargs: dict[str, Any] = {
            "activation": activation,
            "huber_delta": huber_delta,
            "direction_weight": direction_weight,
        }
        d = int(n_inputs)
        net_opt = Adam(lr=lr, clip_norm=clip_norm)
        fast_opt = SGD(lr=fast_lr, clip_norm=clip_norm)
        self.network = self._network(d, hidden, net_opt, seed)
        self.linear_expert = BayesLinear(
            d, prior_slopes=prior_slopes, prior_samples=prior_samples, halflife=rls_halflife
        )
        self.mix = HedgeMix(
            [self.network, self.linear_expert],
            eta=hedge_eta,
            halflife=hedge_halflife,
            loss_cap=_HEDGE_CAP,
            prior=[1.0, float(linear_prior)],
        )
        self.stack = BayesLinear(  # the shares of the experts before the linear one (last)
            self.mix.n_experts - 1,
            prior_samples=_STACK_PRIOR_SHARE * prior_samples,
            halflife=hedge_halflife,
        )
        self._returns: Array = np.zeros(self.mix.n_experts)
        self._gaps: Array = np.zeros(self.mix.n_experts - 1)
        self.linear = MLP(d, (), loss="huber", optimizer=fast_opt, seed=seed)
        self.linear.params[0][...] = 0.0
        self._alpha = 1.0 - 0.5 ** (1.0 / float(scale_halflife))
        self._tmp: Array = np.zeros(d)
        self._x_mean: Array = np.zeros(d)
        self._x_var: Array = np.zeros(d)
        self._centre: Array = np.ones(d) if centre is None else np.array(centre, dtype=np.float64)
        if self._centre.shape != (d,):
            raise ModelError(f"centre needs {d} flags, got {self._centre.shape}")
        self._off: Array = np.zeros(d)
        # constant operands as arrays: a ufunc takes them faster than Python floats
        self._floor: Array = np.full(d, _VAR_FLOOR)
        self._hi: Array = np.full(d, self.clip)
        if bounded is not None:
            if len(bounded) != d:
                raise ModelError(f"bounded needs {d} flags, got {len(bounded)}")
            unreachable = 1.0 / math.sqrt(self._alpha * (1.0 - self._alpha))
            self._hi[np.array(bounded, dtype=bool)] = unreachable
        self._lo: Array = -self._hi
        self._x_weight = 0.0  # 1 - (1 - alpha)^n: bias correction of the EW input moments
        self._y_abs = 0.0  # mean |label| (bps): of the warm-up's labels, then EW
        self._target_alpha = 1.0 - 0.5 ** (1.0 / float(target_halflife))
        self._y_sq = 0.0  # mean squared label (bps^2) since the start: the Hedge loss unit
        self._n_labels = 0  # since the scales started
        self._n_learned = 0
        self.n_nonfinite_inputs = 0

    def _network(
        self, d: int, hidden: Sequence[int], optimizer: Optimizer, seed: int
    ) -> TwoHeadMLP:
        net = TwoHeadMLP(d, hidden, optimizer=optimizer, seed=seed, **self._net_kwargs)
        net.params[-2][...] = 0.0  # output layer: start as the zero predictor
        return net

    @property
    def n_updates(self) -> int:
        """Labels learned, the first ones that only teach the scales included (the model
        version; a warm start keeps the trained model's count)."""
        return self._n_learned

    @property
    def n_skipped(self) -> int:
        """Expert updates refused as non-finite."""
        return sum(e.n_skipped for e in self.mix.experts)

    def standardise(self, raw: Array) -> Array:
        """Update the input moments with ``raw``, shape (n_inputs,); return it standardised
        and clipped (a new array, finite: see :meth:`_standardise_unlearned` for a ``raw``
        with non-finite values)."""
        if not _isfinite(raw.dot(raw)):  # a non-finite value, or squares that overflow
            return self._standardise_unlearned(raw)
        self._x_weight += self._alpha * (1.0 - self._x_weight)
        k = self._alpha / self._x_weight
        mean, var, tmp = self._x_mean, self._x_var, self._tmp
        delta = raw - mean
        np.multiply(delta, k, out=tmp)
        mean += tmp  # mean' = mean + k delta
        tmp *= delta
        var += tmp
        var *= 1.0 - k  # var' = (1 - k) (var + k delta^2)
        off = self._off
        np.multiply(mean, self._centre, out=off)
        np.subtract(raw, off, out=delta)  # centred inputs: raw - mean; the others: raw
        np.subtract(mean, off, out=off)
        off *= off
        np.add(var, off, out=tmp)  # the others: scaled by their RMS, sqrt(var + mean^2)
        tmp += self._floor
        np.sqrt(tmp, out=tmp)
        delta /= tmp
        np.minimum(delta, self._hi, out=delta)  # np.clip's result, with less overhead
        np.maximum(delta, self._lo, out=delta)
        return delta

    def _standardise_unlearned(self, raw: Array) -> Array:
        """``raw`` standardised and clipped with the current moments, which do not learn from
        it; non-finite inputs read as 0 (no information), all of them before any moments.
        Counted in ``n_nonfinite_inputs``."""
        self.n_nonfinite_inputs += 1
        if not self._x_weight:
            return np.zeros_like(raw)
        mean = self._x_mean
        off = mean * self._centre
        with np.errstate(over="ignore", invalid="ignore"):
            z: Array = (raw - off) / np.sqrt(self._x_var + (mean - off) ** 2 + self._floor)
        np.clip(z, self._lo, self._hi, out=z)
        z[~np.isfinite(raw)] = 0.0
        return z

    def target_scale(self) -> float:
        """The target unit (bps): a robust standard deviation of the labels (see the module
        docstring); 1 before any nonzero label, and leaning on 1 during the warm-up."""
        if self._y_abs <= 0.0:
            return 1.0
        s = self._y_abs * _SQRT_HALF_PI
        n = self._n_labels
        if n >= _WARMUP:
            return s
        return (n * s + _UNIT_PRIOR_LABELS) / (n + _UNIT_PRIOR_LABELS)

    def predict(self, x: Array) -> Forecast:
        """Forecast from standardised inputs ``x``, a float64 array of shape (n_inputs,) as
        :meth:`standardise` returns (not checked: this is the live prediction path)."""
        scale = self.target_scale()
        _, p_up, returns = self.mix.predict_parts(x)
        inputs = self._returns
        inputs[:] = returns
        anchor = inputs.item(-1)  # the linear expert
        np.subtract(inputs[:-1], anchor, out=self._gaps)
        ret = anchor + self.stack.mean_one(self._gaps)
        experts = inputs * scale
        linear = self.linear.forward_one(x).item(0)  # its Huber loss predicts the raw output
        return Forecast(ret * scale, p_up, linear * scale, experts)

    def learn(self, x: Array, y_bps: float, experts_bps: Array) -> None:
        """Learn the label ``y_bps`` of the standardised inputs ``x`` whose experts forecast
        ``experts_bps`` (bps, shape (n_experts,)): Hedge weights, target scale, models."""
        self._n_labels += 1
        self._n_learned += 1
        n = self._n_labels
        self._y_sq += (y_bps * y_bps - self._y_sq) / n
        warming = n <= _WARMUP or self._y_abs <= 0.0
        self._y_abs += (1.0 / n if warming else self._target_alpha) * (abs(y_bps) - self._y_abs)
        if warming:
            return
        unit = math.sqrt(self._y_sq) or 1.0
        scale = self.target_scale()
        if self.linear_expert.n_updates + self.linear_expert.n_skipped == 0:
            self.linear_expert.rescale_prior(min(unit / scale, _PRIOR_RATIO_CAP))
        self.mix.observe([v / unit for v in experts_bps.tolist()], y_bps / unit)
        target = y_bps / scale
        returns = experts_bps / scale
        anchor = returns.item(-1)
        self.stack.learn_one(returns[:-1] - anchor, target - anchor)
        self.mix.learn_one(x, target)
        self.linear.learn_one(x, target)

    def forget_scales(self) -> None:
        """Forget the input moments and the target scale (not the experts, the mix or the
        baseline): they are re-learned from the next samples, as for a fresh forecaster. A
        model trained on one instrument starts another this way: the experts work in
        standardised units, which transfer; the scales (spreads, volatilities, trade rates)
        belong to each instrument."""
        self._x_mean[...] = 0.0
        self._x_var[...] = 0.0
        self._x_weight = self._y_abs = self._y_sq = 0.0
        self._n_labels = 0

    def state_dict(self) -> dict[str, Any]:
        """Experts, mix, baseline, input moments and target scale (arrays are copies)."""
        return {
            "experts": [e.state_dict() for e in self.mix.experts],
            "mix": self.mix.state_dict(),
            "stack": self.stack.state_dict(),
            "linear": self.linear.state_dict(),
            "x_mean": self._x_mean.copy(),
            "x_var": self._x_var.copy(),
            "floats": [self._x_weight, self._y_abs, self._y_sq],
            "n_labels": self._n_labels,
            "n_learned": self._n_learned,
            "n_nonfinite_inputs": self.n_nonfinite_inputs,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` of a forecaster with the same configuration."""
        experts = state["experts"]
        x_mean = np.array(state["x_mean"], dtype=np.float64)
        x_var = np.array(state["x_var"], dtype=np.float64)
        floats = [float(v) for v in state["floats"]]
        if len(experts) != self.mix.n_experts or len(floats) != 3:
            raise ModelError("the state has another number of experts or scalers")
        if x_mean.shape != self._x_mean.shape or x_var.shape != self._x_var.shape:
            raise ModelError("input moments do not fit the features")
        for expert, expert_state in zip(self.mix.experts, experts, strict=True):
            expert.load_state_dict(expert_state)
        self.mix.load_state_dict(state["mix"])
        self.stack.load_state_dict(state["stack"])
        self.linear.load_state_dict(state["linear"])
        self._x_mean, self._x_var = x_mean, x_var
        self._x_weight, self._y_abs, self._y_sq = floats
        self._n_labels = int(state["n_labels"])
        self._n_learned = int(state["n_learned"])
        self.n_nonfinite_inputs = int(state.get("n_nonfinite_inputs", 0))  # 0: an older state
