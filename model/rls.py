"""A linear expert learned by recursive least squares from a prior: fast, and rule-led at first.

:class:`BayesLinear` is the posterior mean of a linear regression ``y = w . x + noise`` under a
Gaussian prior ``w ~ N(w0, I / prior_samples)``, updated one label at a time by recursive least
squares (RLS) with exponential forgetting (Haykin, *Adaptive Filter Theory*, ch. 10). Why it is
the mix's fast expert:

* **It starts from the rules.** ``w0`` is the slope a parameter-free rule implies (the
  forecaster's caller sets it: the top-of-book imbalance, whose sign is the same on every
  market). Before any label the expert already forecasts what that single input says.
* **It converges in a handful of labels.** RLS is second order: each label moves ``w`` by the
  exact least-squares amount, whatever the scales and correlations of the inputs, where plain
  SGD on correlated inputs needs thousands of steps. ``prior_samples`` is the prior's worth in
  labels (with standardised inputs of unit RMS, ``I / prior_samples`` is the covariance of
  ``w`` after that many labels of unit-variance noise): the data overrule the rule once
  they are more numerous than that, so the expert improves on the rule instead of staying
  with it, and a market where the rule does not hold is learned as fast.
* **It tracks drift.** Past labels are discounted by ``forgetting = 0.5 ** (1 / halflife)``.
  The inverse-covariance is only inflated while the posterior is tighter than the prior, so
  inputs that stop moving cannot blow it up ("covariance wind-up").
* **It is robust.** A residual is capped at ``residual_cap`` target units before it moves
  ``w``: one jump of the price cannot tilt the slope.

P(up) is the predictive probability of a positive target under a normal predictive
distribution, ``Phi(w . x / s)``, with ``s^2`` the exponentially weighted mean squared residual
(starting at 1, the target's unit). No gradients, so nothing to gradient-check: the update is
the closed-form least-squares one, checked against a batch solve in the tests.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> expert = BayesLinear(2, prior_samples=10.0, halflife=1e6)
>>> for _ in range(500):
...     x = rng.normal(size=2)
...     expert.learn_one(x, 0.5 * x[0] - 0.2 * x[1] + 0.1 * rng.normal())
>>> np.round(expert.weights, 1).tolist(), expert.n_updates
([0.5, -0.2], 500)
>>> r, logit = expert.forward_one(np.array([1.0, 0.0])).tolist()
>>> round(r, 1), logit > 0
(0.5, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import ModelError

__all__ = ["BayesLinear"]

Array = NDArray[np.float64]

_P_LIMIT = 1.0 - 1e-12  # P(up) is kept inside (1 - limit, limit): a finite logit
_SQRT2 = math.sqrt(2.0)


class BayesLinear:
    """Linear expert: RLS with forgetting from a Gaussian prior; see the module docstring.

    Parameters
    ----------
    n_inputs : int
        Length of ``x``.
    prior_slopes : sequence of float, optional
        Prior mean ``w0`` of the weights, shape (n_inputs,); zeros by default.
    prior_samples : float
        Prior precision, in labels' worth (``P0 = I / prior_samples``).
    halflife : float
        Half-life of the past labels' weight, in labels.
    residual_cap : float
        A residual moves the weights by at most this many target units.
    """

    def __init__(
        self,
        n_inputs: int,
        *,
        prior_slopes: Sequence[float] | None = None,
        prior_samples: float = 3000.0,
        halflife: float = 5000.0,
        residual_cap: float = 10.0,
    ) -> None:
        d = int(n_inputs)
        w0 = np.zeros(d) if prior_slopes is None else np.array(prior_slopes, dtype=np.float64)
        if d < 1 or w0.shape != (d,) or not np.all(np.isfinite(w0)):
            raise ModelError(f"need n_inputs >= 1 and {d} finite prior slopes")
        if not (prior_samples > 0.0 and halflife > 0.0 and residual_cap > 0.0):
            raise ModelError("prior_samples, halflife and residual_cap must be positive")
        self.n_inputs = d
        self.prior_slopes = tuple(float(v) for v in w0)
        self.prior_samples = float(prior_samples)
        self.halflife = float(halflife)
        self.residual_cap = float(residual_cap)
        self._keep = 0.5 ** (1.0 / self.halflife)
        self._trace_cap = d / self.prior_samples  # the prior's trace: P is inflated up to it
        self._w: Array = w0
        self._P: Array = np.eye(d) / self.prior_samples
        self._s2 = 1.0  # EW mean squared residual, target units
        self._out: Array = np.zeros(2)
        self._outer: Array = np.zeros((d, d))
        self.n_updates = 0
        self.n_skipped = 0

    @property
    def weights(self) -> Array:
        """The posterior mean of the weights, shape (n_inputs,) (a copy)."""
        return self._w.copy()

    def mean_one(self, x: Array) -> float:
        """The expected return ``w . x`` for ``x``, shape (n_inputs,), target units."""
        return float(self._w.dot(x))

    def forward_one(self, x: Array) -> Array:
        """``[return, logit of P(up)]`` for ``x``, shape (n_inputs,) -> (2,), target units
        (the buffer is reused: read it before the next call)."""
        r = self.mean_one(x)
        p = 0.5 * (1.0 + math.erf(r / (_SQRT2 * math.sqrt(self._s2))))
        p = min(max(p, 1.0 - _P_LIMIT), _P_LIMIT)
        out = self._out
        out[0] = r
        out[1] = math.log(p / (1.0 - p))
        return out

    def predict_one(self, x: Array) -> tuple[float, float]:
        """``(return, P(up))`` for ``x``, shape (n_inputs,), target units."""
        r, logit = self.forward_one(x).tolist()
        return r, 1.0 / (1.0 + math.exp(-logit))

    def rescale_prior(self, factor: float) -> None:
        """Multiply the prior slopes by ``factor`` (finite, positive): only before the first
        update, while the weights are still the prior's.

        >>> expert = BayesLinear(2, prior_slopes=[0.2, 0.0])
        >>> expert.rescale_prior(2.0)
        >>> expert.weights.tolist()
        [0.4, 0.0]
        """
        if self.n_updates or self.n_skipped:
            raise ModelError("the prior can only be rescaled before any update")
        if not (math.isfinite(factor) and factor > 0.0):
            raise ModelError(f"a prior's scale factor must be finite and positive, not {factor}")
        self._w *= factor

    def learn_one(self, x: Array, y: float) -> None:
        """One RLS step on ``(x, y)`` (``x`` shape (n_inputs,), ``y`` in target units); a
        non-finite step is refused and counted in ``n_skipped``."""
        P, w = self._P, self._w
        keep = self._keep if P.trace() < self._trace_cap else 1.0
        Px = P.dot(x)
        denom = keep + float(x.dot(Px))
        e = y - float(w.dot(x))
        if not (math.isfinite(e) and math.isfinite(denom) and denom > 0.0):
            self.n_skipped += 1
            return
        cap = self.residual_cap
        step = Px * (min(cap, max(-cap, e)) / denom)
        w += step
        outer = self._outer
        np.multiply.outer(Px, Px, out=outer)  # Px_i Px_j: exactly symmetric, so P stays so
        outer *= 1.0 / (denom * keep)
        if keep != 1.0:
            P *= 1.0 / keep
        P -= outer
        self._s2 += (1.0 - self._keep) * (min(cap * cap, e * e) - self._s2)
        self.n_updates += 1

    def state_dict(self) -> dict[str, Any]:
        """Weights, inverse-covariance, residual variance and counters (arrays are copies)."""
        return {
            "kind": "BayesLinear",
            "w": self._w.copy(),
            "P": self._P.copy(),
            "s2": self._s2,
            "n_updates": self.n_updates,
            "n_skipped": self.n_skipped,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` of an expert with the same number of inputs."""
        d = self.n_inputs
        w = np.array(state["w"], dtype=np.float64)
        P = np.array(state["P"], dtype=np.float64)
        s2 = float(state["s2"])
        if state.get("kind") != "BayesLinear" or w.shape != (d,) or P.shape != (d, d):
            raise ModelError(f"not the state of a BayesLinear expert of {d} inputs")
        if not (np.all(np.isfinite(w)) and np.all(np.isfinite(P)) and s2 > 0.0):
            raise ModelError("BayesLinear state is not finite")
        self._w, self._P, self._s2 = w, P, s2
        self.n_updates = int(state["n_updates"])
        self.n_skipped = int(state["n_skipped"])
