"""Online multilayer perceptrons: :class:`MLP` (one output) and :class:`TwoHeadMLP`.

Both follow River's estimator protocol: ``predict_one`` / ``learn_one`` for the live
per-sample loop (each ``learn_one`` is one optimizer step on that sample), ``predict_many`` /
``learn_many`` for batches (one step on the batch's mean loss), hyperparameters stored under
their constructor names, learned state in underscore attributes. The parameter layout, the
allocation-free one-sample path and the state format are those of
:class:`~tickcast.model.network.Network`.

Defaults, chosen for noisy, standardised, fat-tailed financial targets learned one sample at a
time: ``tanh`` units with Glorot init (bounded activations, no dead units), Huber loss with
``delta = 1`` (bounded gradient), ``Adam(lr=1e-3, clip_norm=1.0)`` (per-weight step sizes
near ``lr`` whatever the feature scales, and no single sample can move the weights by more
than a clipped step).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike

from . import ModelError
from .layers import Array
from .losses import Huber, Logistic, Loss, make_loss
from .network import Network, ShapeError, StateError
from .optim import Optimizer, make_optimizer

__all__ = ["MLP", "ShapeError", "StateError", "TwoHeadMLP"]


class MLP(Network):
    """Fully connected network with one output, learned online.

    Parameters
    ----------
    n_inputs : int
        Length of ``x``.
    hidden : sequence of int
        Hidden layer widths; ``()`` is the linear model ``x W + b``.
    activation : {"tanh", "relu"}
        Hidden activation (Glorot init for tanh, He init for ReLU; output layer Glorot).
    loss : {"huber", "squared", "logistic"} or Loss
        Training loss; ``"huber"`` is ``Huber(delta=1.0)``. With ``"logistic"`` the targets
        are labels in {0, 1} and predictions are ``P(y = 1)``.
    optimizer : Optimizer or None
        Copied (hyperparameters only); ``None`` means ``Adam(lr=1e-3, clip_norm=1.0)``.
    seed : int
        Seed of the generator that draws the initial weights.

    Examples
    --------
    >>> import numpy as np
    >>> model = MLP(2, hidden=(8,), seed=1)
    >>> x = np.array([0.5, -1.0])
    >>> before = abs(model.predict_one(x) - 1.0)
    >>> for _ in range(200):
    ...     model.learn_one(x, 1.0)
    >>> abs(model.predict_one(x) - 1.0) < before, model.n_updates
    (True, 200)
    >>> clone = MLP.from_bytes(model.to_bytes())
    >>> clone.predict_one(x) == model.predict_one(x)
    True
    """

    kind = "MLP"

    def __init__(
        self,
        n_inputs: int,
        hidden: Sequence[int] = (32,),
        *,
        activation: str = "tanh",
        loss: str | Loss = "huber",
        optimizer: Optimizer | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(n_inputs, hidden, activation, optimizer, seed)
        self.loss = loss
        self._loss = make_loss(loss)

    def predict_one(self, x: ArrayLike) -> float:
        """Prediction for one ``x`` of shape (n_inputs,)."""
        return self._loss.predict_one(self.forward_one(self._check_one(x)).item(0))

    def learn_one(self, x: ArrayLike, y: float) -> None:
        """One optimizer step on the loss of one sample ``(x, y)``."""
        self._learn_one(x, y)

    def predict_many(self, X: ArrayLike) -> Array:
        """Predictions for a batch ``X`` of shape (n, n_inputs); returns shape (n,)."""
        X, _ = self._check_many(X)
        out, _ = self._forward_many(X)
        return self._loss.predict(out[:, 0])

    def learn_many(self, X: ArrayLike, y: ArrayLike) -> None:
        """One optimizer step on the mean loss of a batch; ``y`` of shape (n,)."""
        self._learn_many(X, y)

    def _head_one(self, out: Array, y: float) -> float:
        loss, self._delta[0] = self._loss.one(float(out[0]), y)
        return loss

    def _head_many(self, out: Array, y: Array) -> tuple[float, Array]:
        loss, d = self._loss.value_and_gradient(out[:, 0], y)
        return loss, d[:, None]

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "loss": self._loss.spec()}

    @classmethod
    def _from_config(cls, config: dict[str, Any]) -> Self:
        return cls(
            config["n_inputs"],
            tuple(config["hidden"]),
            activation=config["activation"],
            loss=make_loss(config["loss"]),
            optimizer=make_optimizer(config["optimizer"]),
            seed=config["seed"],
        )

    def _repr_args(self) -> dict[str, Any]:
        return {**super()._repr_args(), "loss": self._loss}


class TwoHeadMLP(Network):
    """Shared hidden layers with a return head and a direction head, learned together.

    The output layer has two columns: column 0 is the return ``r`` (Huber loss against ``y``,
    in the target's units, standardised by the caller), column 1 the logit ``z`` of
    ``P(y > 0)`` (logistic loss against the label ``1`` if ``y > 0``, ``0`` if ``y < 0``).
    One backward pass carries both heads' gradients into the shared layers. The loss per
    sample is::

        L = huber(r - y) + direction_weight * [y != 0] * bce(z, y > 0)

    so a sample with ``y == 0`` (no move) trains the return head only: the direction head gets
    no gradient from it. Batches use the mean of ``L`` over all their samples.

    Parameters
    ----------
    n_inputs, hidden, activation, optimizer, seed
        As in :class:`MLP`.
    huber_delta : float
        Huber threshold of the return head, in target units.
    direction_weight : float
        Weight of the direction loss (``>= 0``). The default 1.0 weighs the two heads equally:
        on standardised targets both losses are O(1) and both gradients are bounded by 1
        (``huber_delta = 1`` and ``|sigmoid(z) - label| < 1``).

    Examples
    --------
    >>> import numpy as np
    >>> model = TwoHeadMLP(3, hidden=(8,), seed=2)
    >>> x = np.array([1.0, 0.0, -1.0])
    >>> model.predict_one(x)[1] < 0.5  # starts out betting on a fall
    True
    >>> for _ in range(300):
    ...     model.learn_one(x, 0.8)
    >>> ret, p_up = model.predict_one(x)
    >>> abs(ret - 0.8) < 0.1, p_up > 0.8
    (True, True)
    """

    kind = "TwoHeadMLP"
    n_outputs = 2

    def __init__(
        self,
        n_inputs: int,
        hidden: Sequence[int] = (32,),
        *,
        activation: str = "tanh",
        huber_delta: float = 1.0,
        direction_weight: float = 1.0,
        optimizer: Optimizer | None = None,
        seed: int = 0,
    ) -> None:
        if not direction_weight >= 0.0:
            raise ModelError(f"direction_weight must be >= 0, got {direction_weight!r}")
        super().__init__(n_inputs, hidden, activation, optimizer, seed)
        self.huber_delta = huber_delta
        self.direction_weight = direction_weight
        self._huber = Huber(huber_delta)
        self._logistic = Logistic()
        self._w = float(direction_weight)

    def predict_one(self, x: ArrayLike) -> tuple[float, float]:
        """``(return, P(up))`` for one ``x`` of shape (n_inputs,)."""
        ret, logit = self.forward_one(self._check_one(x)).tolist()
        return ret, self._logistic.predict_one(logit)

    def learn_one(self, x: ArrayLike, y: float) -> None:
        """One optimizer step on the two-head loss of one sample; ``y`` is the real target."""
        self._learn_one(x, y)

    def predict_many(self, X: ArrayLike) -> tuple[Array, Array]:
        """Returns and ``P(up)`` for a batch ``X`` of shape (n, n_inputs); each shape (n,)."""
        X, _ = self._check_many(X)
        out, _ = self._forward_many(X)
        return out[:, 0].copy(), self._logistic.predict(out[:, 1])

    def learn_many(self, X: ArrayLike, y: ArrayLike) -> None:
        """One optimizer step on the mean two-head loss of a batch; ``y`` of shape (n,)."""
        self._learn_many(X, y)

    def _head_one(self, out: Array, y: float) -> float:
        loss, self._delta[0] = self._huber.one(float(out[0]), y)
        if y > 0.0 or y < 0.0:
            bce, d = self._logistic.one(float(out[1]), 1.0 if y > 0.0 else 0.0)
            loss += self._w * bce
            self._delta[1] = self._w * d
        else:
            self._delta[1] = 0.0
        return loss

    def _head_many(self, out: Array, y: Array) -> tuple[float, Array]:
        n = out.shape[0]
        h, dh = self._huber.elementwise(out[:, 0], y)
        moved = (y > 0.0) | (y < 0.0)
        b, db = self._logistic.elementwise(out[:, 1], (y > 0.0).astype(np.float64))
        w = self._w * moved
        delta: Array = np.empty_like(out)
        delta[:, 0] = dh / n
        delta[:, 1] = w * db / n
        return float((h + w * b).sum()) / n, delta

    def _config(self) -> dict[str, Any]:
        return {
            **super()._config(),
            "huber_delta": self._huber.delta,
            "direction_weight": self._w,
        }

    @classmethod
    def _from_config(cls, config: dict[str, Any]) -> Self:
        return cls(
            config["n_inputs"],
            tuple(config["hidden"]),
            activation=config["activation"],
            huber_delta=config["huber_delta"],
            direction_weight=config["direction_weight"],
            optimizer=make_optimizer(config["optimizer"]),
            seed=config["seed"],
        )

    def _repr_args(self) -> dict[str, Any]:
        return {
            **super()._repr_args(),
            "huber_delta": self.huber_delta,
            "direction_weight": self.direction_weight,
        }
