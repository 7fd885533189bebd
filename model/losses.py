"""Losses with their value and gradient, per element, as a batch mean, and for one scalar.

A loss compares a raw network output ``yhat`` with a target ``y``. ``elementwise`` returns the
per-element loss and its derivative; ``value`` / ``gradient`` reduce it to the batch mean (the
gradient is that of the mean, so it carries the ``1/n``); ``one`` does a single scalar in pure
Python for the live learner's hot path. ``predict`` maps a raw output to a prediction: the
identity for regression losses, the logistic sigmoid for the logistic loss.

========== =============================================== ==========================
loss       value                                           d value / d yhat
========== =============================================== ==========================
squared    ``r**2 / 2`` with ``r = yhat - y``              ``r``
huber      ``r**2 / 2`` if ``|r| <= delta``,               ``clip(r, -delta, delta)``
           else ``delta * (|r| - delta / 2)``
logistic   ``log(1 + exp(yhat)) - y * yhat`` (BCE on the   ``sigmoid(yhat) - y``
           logit ``yhat``, label ``y`` in {0, 1})
========== =============================================== ==========================
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from . import ModelError
from .layers import Array

__all__ = ["LOSSES", "Huber", "Logistic", "Loss", "Squared", "make_loss", "sigmoid"]


def sigmoid(z: Array) -> Array:
    """Logistic sigmoid ``1 / (1 + exp(-z))``, computed as ``(1 + tanh(z / 2)) / 2`` (no overflow).

    Examples
    --------
    >>> import numpy as np
    >>> sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    array([0. , 0.5, 1. ])
    """
    s: Array = 0.5 * (1.0 + np.tanh(0.5 * z))
    return s


class Loss:
    """Base class: subclasses define ``elementwise`` and ``one``; ``name`` keys :data:`LOSSES`.

    Examples
    --------
    >>> import numpy as np
    >>> loss, yhat, y = Squared(), np.array([1.0, 2.0]), np.zeros(2)
    >>> loss.value(yhat, y), loss.gradient(yhat, y)
    (1.25, array([0.5, 1. ]))
    """

    name: ClassVar[str] = ""

    def elementwise(self, yhat: Array, y: Array) -> tuple[Array, Array]:
        """Return the per-element loss and ``d loss / d yhat``, both shaped like ``yhat``."""
        raise NotImplementedError

    def one(self, yhat: float, y: float) -> tuple[float, float]:
        """Return the loss and ``d loss / d yhat`` for one scalar output."""
        raise NotImplementedError

    def predict(self, yhat: Array) -> Array:
        """Map raw outputs to predictions (identity unless overridden)."""
        return yhat

    def predict_one(self, yhat: float) -> float:
        """Map one raw output to a prediction (identity unless overridden)."""
        return yhat

    def value(self, yhat: Array, y: Array) -> float:
        """Mean loss over all elements."""
        return float(self.elementwise(yhat, y)[0].mean())

    def gradient(self, yhat: Array, y: Array) -> Array:
        """Gradient of the mean loss with respect to ``yhat`` (shape of ``yhat``)."""
        return self.value_and_gradient(yhat, y)[1]

    def value_and_gradient(self, yhat: Array, y: Array) -> tuple[float, Array]:
        """Mean loss and its gradient with respect to ``yhat``, in one pass."""
        loss, dloss = self.elementwise(yhat, y)
        n = max(loss.size, 1)
        g: Array = dloss / n
        return float(loss.sum()) / n, g

    def spec(self) -> dict[str, Any]:
        """The loss's name and hyperparameters, enough to rebuild it with :func:`make_loss`."""
        return {"name": self.name}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.spec().items() if k != "name")
        return f"{type(self).__name__}({args})"


class Squared(Loss):
    """Half squared error ``(yhat - y)**2 / 2``; its gradient is the residual.

    Examples
    --------
    >>> import numpy as np
    >>> Squared().value_and_gradient(np.array([1.0, 3.0]), np.array([0.0, 0.0]))
    (2.5, array([0.5, 1.5]))
    >>> Squared().one(1.0, 0.5)
    (0.125, 0.5)
    """

    name = "squared"

    def elementwise(self, yhat: Array, y: Array) -> tuple[Array, Array]:
        """Per-element ``r**2 / 2`` and ``r``, with ``r = yhat - y``."""
        r: Array = yhat - y
        return 0.5 * r * r, r

    def one(self, yhat: float, y: float) -> tuple[float, float]:
        """Scalar ``r**2 / 2`` and ``r``."""
        r = yhat - y
        return 0.5 * r * r, r


class Huber(Loss):
    """Huber (1964) loss: quadratic within ``delta`` of the target, linear beyond.

    Bounded gradient ``|dL/dyhat| <= delta``: one fat-tailed return cannot throw the weights.

    Parameters
    ----------
    delta : float
        Threshold on ``|yhat - y|``, in the target's units (``> 0``).

    Examples
    --------
    >>> import numpy as np
    >>> Huber(1.0).elementwise(np.array([0.5, 3.0]), np.array([0.0, 0.0]))
    (array([0.125, 2.5  ]), array([0.5, 1. ]))
    >>> Huber(1.0).one(-3.0, 0.0)
    (2.5, -1.0)
    """

    name = "huber"

    def __init__(self, delta: float = 1.0) -> None:
        if not delta > 0.0 or not math.isfinite(delta):
            raise ModelError(f"Huber delta must be positive and finite, got {delta!r}")
        self.delta = float(delta)

    def elementwise(self, yhat: Array, y: Array) -> tuple[Array, Array]:
        """Per-element Huber loss and its derivative ``clip(r, -delta, delta)``."""
        d = self.delta
        r: Array = yhat - y
        ar = np.abs(r)
        c = np.minimum(ar, d)  # loss = c (|r| - c / 2): r**2 / 2 inside delta, linear beyond
        loss: Array = c * (ar - 0.5 * c)
        return loss, np.clip(r, -d, d)

    def one(self, yhat: float, y: float) -> tuple[float, float]:
        """Scalar Huber loss and derivative."""
        d = self.delta
        r = yhat - y
        if -d <= r <= d:
            return 0.5 * r * r, r
        if r > d:
            return d * (r - 0.5 * d), d
        if r < -d:
            return d * (-r - 0.5 * d), -d
        return math.nan, math.nan

    def spec(self) -> dict[str, Any]:
        """``{"name": "huber", "delta": delta}``."""
        return {"name": self.name, "delta": self.delta}


class Logistic(Loss):
    """Binary cross-entropy on a logit: ``log(1 + exp(z)) - y z`` for labels ``y`` in {0, 1}.

    Computed as ``max(z, 0) - y z + log1p(exp(-|z|))`` so large logits never overflow.
    :meth:`predict` turns the logit into ``P(y = 1) = sigmoid(z)``.

    Examples
    --------
    >>> import numpy as np
    >>> loss, grad = Logistic().value_and_gradient(np.array([0.0, 0.0]), np.array([1.0, 0.0]))
    >>> round(loss, 6), grad
    (0.693147, array([-0.25,  0.25]))
    >>> Logistic().predict_one(0.0)
    0.5
    """

    name = "logistic"

    def elementwise(self, yhat: Array, y: Array) -> tuple[Array, Array]:
        """Per-element BCE on the logit and its derivative ``sigmoid(z) - y``."""
        z = yhat
        loss: Array = np.maximum(z, 0.0) - y * z + np.log1p(np.exp(-np.abs(z)))
        return loss, sigmoid(z) - y

    def one(self, yhat: float, y: float) -> tuple[float, float]:
        """Scalar BCE on the logit and its derivative."""
        z = yhat
        if not math.isfinite(z):
            return math.nan, math.nan
        loss = max(z, 0.0) - y * z + math.log1p(math.exp(-abs(z)))
        return loss, 0.5 * (1.0 + math.tanh(0.5 * z)) - y

    def predict(self, yhat: Array) -> Array:
        """``P(y = 1) = sigmoid(z)``."""
        return sigmoid(yhat)

    def predict_one(self, yhat: float) -> float:
        """``P(y = 1) = sigmoid(z)`` for one logit."""
        return 0.5 * (1.0 + math.tanh(0.5 * yhat))


LOSSES: dict[str, type[Loss]] = {"squared": Squared, "huber": Huber, "logistic": Logistic}


def make_loss(spec: str | Loss | dict[str, Any]) -> Loss:
    """Build a loss from a name (``"squared"``, ``"huber"``, ``"logistic"``), a spec, or a loss.

    Examples
    --------
    >>> make_loss({"name": "huber", "delta": 2.0})
    Huber(delta=2.0)
    """
    if isinstance(spec, Loss):
        return spec
    params = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = params.pop("name", None)
    cls = LOSSES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ModelError(f"unknown loss {name!r}; choose from {sorted(LOSSES)}")
    return cls(**params)
