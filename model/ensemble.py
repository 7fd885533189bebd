"""Experts mixed by exponentially weighted Hedge on their discounted prequential losses.

:class:`HedgeMix` holds a few online models (:class:`Expert`: a return head and a P(up)
head each, such as :class:`~tickcast.model.mlp.TwoHeadMLP` or
:class:`~tickcast.model.rls.BayesLinear`) that all learn every label, and predicts the
weighted mean of their outputs with weights ``w_i ~ prior_i * exp(-eta * L_i)``, where
``L_i`` is expert ``i``'s exponentially discounted sum of past losses (Hedge: Freund and
Schapire 1997; with discounting, Cesa-Bianchi and Lugosi 2006, ch. 2). The loss is the
squared error in units chosen by the caller, capped so that one jump cannot decide the mix.

Examples
--------
>>> import numpy as np
>>> from tickcast.model.mlp import TwoHeadMLP
>>> from tickcast.model.optim import SGD
>>> experts = [TwoHeadMLP(2, (), optimizer=SGD(lr=0.1), seed=s) for s in (0, 1)]
>>> mix = HedgeMix(experts, eta=1.0, halflife=10.0)
>>> mix.weights().tolist()
[0.5, 0.5]
>>> mix.observe(np.array([0.0, 2.0]), 0.0)  # expert 1 was wrong by 2 units
>>> bool(mix.weights()[0] > 0.9)
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from . import ModelError

__all__ = ["Expert", "HedgeMix"]

Array = NDArray[np.float64]


class Expert(Protocol):
    """What the mix needs of an expert (:class:`~tickcast.model.mlp.TwoHeadMLP`,
    :class:`~tickcast.model.rls.BayesLinear`)."""

    @property
    def n_updates(self) -> int:
        """Learning steps applied."""
        ...

    @property
    def n_skipped(self) -> int:
        """Learning steps refused as non-finite."""
        ...

    def forward_one(self, x: Array) -> Array:
        """``[return, logit of P(up)]`` for ``x``, shape (2,)."""
        ...

    def learn_one(self, x: Array, y: float) -> None:
        """One learning step on ``(x, y)``."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """The expert's learned state."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`."""
        ...


class HedgeMix:
    """Online experts mixed by discounted exponentially weighted Hedge.

    Parameters
    ----------
    experts : sequence of Expert
        The experts, in a fixed order (the mix keeps references; it learns them).
    eta : float
        Hedge learning rate, per unit of loss.
    halflife : float
        Half-life of the discounted losses, in observations.
    loss_cap : float
        Cap of one observation's loss (squared error in the caller's units).
    prior : sequence of float, optional
        Prior weights (normalised); uniform by default.
    """

    def __init__(
        self,
        experts: Sequence[Expert],
        *,
        eta: float,
        halflife: float,
        loss_cap: float = 25.0,
        prior: Sequence[float] | None = None,
    ) -> None:
        if not experts:
            raise ModelError("a Hedge mix needs at least one expert")
        if not (eta >= 0.0 and halflife > 0.0 and loss_cap > 0.0):
            raise ModelError("need eta >= 0, halflife > 0 and loss_cap > 0")
        n = len(experts)
        p = np.ones(n) if prior is None else np.asarray(prior, dtype=np.float64)
        if p.shape != (n,) or not bool(np.all(p > 0.0)):
            raise ModelError("prior weights must be positive, one per expert")
        self.experts = list(experts)
        self.eta = float(eta)
        self.halflife = float(halflife)
        self.loss_cap = float(loss_cap)
        self._log_prior = [math.log(v) for v in p / p.sum()]
        self._keep = 0.5 ** (1.0 / self.halflife)
        self._loss = [0.0] * n  # discounted capped squared errors
        self._w: list[float] = []
        self._reweigh()

    @property
    def n_experts(self) -> int:
        """Number of experts."""
        return len(self.experts)

    def weights(self) -> Array:
        """Current mixing weights, shape (n_experts,), summing to 1 (a copy)."""
        return np.array(self._w)

    def predict_one(self, x: Array, outputs: Array) -> tuple[float, float]:
        """Mixed ``(return, P(up))`` for ``x``; each expert's return goes into ``outputs``.

        Parameters
        ----------
        x : ndarray, shape (n_inputs,)
            Standardised inputs.
        outputs : ndarray, shape (n_experts,)
            Filled with the experts' return predictions (target units).
        """
        ret, p_up, returns = self.predict_parts(x)
        outputs[:] = returns
        return ret, p_up

    def predict_parts(self, x: Array) -> tuple[float, float, list[float]]:
        """Mixed ``(return, P(up))`` for ``x``, shape (n_inputs,), and the list of the
        experts' return predictions (target units)."""
        ret = 0.0
        p_up = 0.0
        returns = []
        tanh = math.tanh
        for w, expert in zip(self._w, self.experts, strict=True):
            r, logit = expert.forward_one(x).tolist()
            returns.append(r)
            ret += w * r
            p_up += w * (0.5 * (1.0 + tanh(0.5 * logit)))  # TwoHeadMLP.predict_one's P(up)
        return ret, p_up, returns

    def learn_one(self, x: Array, target: float) -> None:
        """Every expert takes one step on ``(x, target)``."""
        for expert in self.experts:
            expert.learn_one(x, target)

    def observe(self, predictions: Sequence[float], y: float) -> None:
        """Charge each expert the capped squared error of its prediction ``predictions[i]`` of
        ``y`` (same units) and update the weights. A non-finite error is charged the cap, so
        the weights stay finite."""
        keep, cap, loss = self._keep, self.loss_cap, self._loss
        for i, pred in enumerate(predictions):
            e = float(pred) - y
            loss[i] = keep * loss[i] + min(cap, e * e)  # min(cap, nan) is the cap
        self._reweigh()

    def _reweigh(self) -> None:
        eta = self.eta
        z = [lp - eta * v for lp, v in zip(self._log_prior, self._loss, strict=True)]
        top = max(z)
        w = [math.exp(v - top) for v in z]
        total = sum(w)
        self._w = [v / total for v in w]

    def state_dict(self) -> dict[str, Any]:
        """The discounted losses (the experts' own states are the caller's to keep)."""
        return {"loss": list(self._loss)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` of a mix with the same number of experts."""
        loss = [float(v) for v in state["loss"]]
        if len(loss) != self.n_experts or not all(math.isfinite(v) for v in loss):
            raise ModelError("Hedge state does not fit the experts")
        self._loss = loss
        self._reweigh()
