"""Layers of the network: each ``backward`` sits beside its ``forward``.

Every layer has two faces.

* ``forward(x) -> (out, cache)`` and ``backward(dout, cache) -> (dx, grads)`` work on a batch
  ``(n, d)`` or a single row ``(d,)``, allocate their results, and are what gradient checks and
  batch learning use. ``backward`` returns gradients; it never updates anything.
* ``forward_one`` / ``backward_one`` do the same maths for one sample into buffers the layer
  allocated once (``out=`` ufuncs, C-contiguous float64). They are the live learner's hot path.
  Their results are views of those buffers, valid until the layer's next call.

Parameters are not owned: :class:`Dense` wraps the ``W`` and ``b`` arrays it is given, so a
network can lay all its parameters out in one flat vector and hand views of it to its layers.

Notation (Nielsen, *Neural Networks and Deep Learning*, ch. 2): ``z = a W + b`` is a layer's
pre-activation, ``a = f(z)`` its activation, ``delta = dL/dz``; ``dW`` and ``db`` are the loss
gradients of ``W`` and ``b``.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from . import ModelError

Array = NDArray[np.float64]

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "Array",
    "Dense",
    "Layer",
    "ReLU",
    "Tanh",
    "glorot_uniform",
    "he_normal",
    "make_activation",
]


class Layer(Protocol):
    """What every layer provides (see the module docstring)."""

    def forward(self, x: Array) -> tuple[Array, Array]:
        """Return the layer's output and the cache its backward needs."""
        ...

    def backward(self, dout: Array, cache: Array) -> tuple[Array, list[Array]]:
        """Return ``dL/dx`` and the parameter gradients (empty for activations)."""
        ...


class Dense:
    """Affine layer ``z = x W + b``.

    Parameters
    ----------
    W : ndarray, shape (n_in, n_out)
        Weights, float64, C-contiguous; wrapped, not copied.
    b : ndarray, shape (n_out,)
        Biases, float64; wrapped, not copied.

    Examples
    --------
    >>> import numpy as np
    >>> layer = Dense(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([0.5, -0.5]))
    >>> z, cache = layer.forward(np.array([[1.0, 1.0]]))
    >>> z
    array([[4.5, 5.5]])
    >>> dx, (dW, db) = layer.backward(np.array([[1.0, 0.0]]), cache)
    >>> dx, db
    (array([[1., 3.]]), array([1., 0.]))
    """

    def __init__(self, W: Array, b: Array) -> None:
        if W.ndim != 2 or b.shape != (W.shape[1],):
            raise ModelError(
                f"Dense needs W (n_in, n_out) and b (n_out,), got {W.shape}, {b.shape}"
            )
        if W.dtype != np.float64 or b.dtype != np.float64 or not W.flags.c_contiguous:
            raise ModelError("Dense parameters must be C-contiguous float64 arrays")
        self.W = W
        self.b = b
        self.n_in, self.n_out = W.shape
        self._z = np.zeros(self.n_out)
        self._dx = np.zeros(self.n_in)

    def forward(self, x: Array) -> tuple[Array, Array]:
        """Return ``z = x W + b``, shape (n, n_out) or (n_out,), and ``x`` as the cache."""
        z: Array = x @ self.W + self.b
        return z, x

    def backward(self, dout: Array, cache: Array) -> tuple[Array, list[Array]]:
        """Return ``dx = delta W^T`` and ``[dW, db]``, summed over the batch rows.

        Parameters
        ----------
        dout : ndarray, shape (n, n_out) or (n_out,)
            ``delta = dL/dz``.
        cache : ndarray, shape (n, n_in) or (n_in,)
            The ``x`` of the forward pass.
        """
        x = cache
        if x.ndim == 1:
            dW: Array = np.outer(x, dout)
            db: Array = np.array(dout, dtype=np.float64)
        else:
            dW = x.T @ dout
            db = dout.sum(axis=0)
        dx: Array = dout @ self.W.T
        return dx, [dW, db]

    def forward_one(self, x: Array) -> Array:
        """One sample: ``z = x W + b`` for ``x`` of shape (n_in,), into the layer's buffer."""
        z = self._z
        np.dot(x, self.W, out=z)
        z += self.b
        return z

    def grads_one(self, delta: Array, x: Array, dW: Array, db: Array) -> None:
        """One sample: write ``dW = x^T delta`` (an outer product) and ``db = delta``.

        Parameters
        ----------
        delta : ndarray, shape (n_out,)
            ``dL/dz`` for this sample.
        x : ndarray, shape (n_in,)
            The input of the matching :meth:`forward_one`.
        dW : ndarray, shape (n_in, n_out)
            Output buffer (C-contiguous float64) for the weight gradient.
        db : ndarray, shape (n_out,)
            Output buffer for the bias gradient.
        """
        np.dot(x[:, None], delta[None, :], out=dW)
        db[...] = delta

    def backward_one(self, delta: Array, x: Array, dW: Array, db: Array) -> Array:
        """One sample: :meth:`grads_one`, then return ``dx = W delta``, shape (n_in,).

        Parameters
        ----------
        delta, x : ndarray
            As in :meth:`grads_one`.
        dW, db : ndarray
            Output buffers for the parameter gradients, as in :meth:`grads_one`.
        """
        np.dot(x[:, None], delta[None, :], out=dW)
        db[...] = delta
        return np.dot(self.W, delta, out=self._dx)


class Tanh:
    """Hyperbolic tangent ``a = tanh(z)``; ``dz = da * (1 - a**2)``.

    Parameters
    ----------
    size : int
        Width of the layer (length of the one-sample buffers).

    Attributes
    ----------
    a : ndarray, shape (size,)
        Output of the latest :meth:`forward_one` (the buffer it writes into).

    Examples
    --------
    >>> import numpy as np
    >>> a, cache = Tanh(2).forward(np.array([0.0, 1.0]))
    >>> a.round(4)
    array([0.    , 0.7616])
    >>> Tanh(2).backward(np.ones(2), cache)[0].round(4)
    array([1.   , 0.42])
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.a = np.zeros(size)
        self._dz = np.zeros(size)

    def forward(self, x: Array) -> tuple[Array, Array]:
        """Return ``a = tanh(z)`` and ``a`` as the cache (any shape)."""
        a: Array = np.tanh(x)
        return a, a

    def backward(self, dout: Array, cache: Array) -> tuple[Array, list[Array]]:
        """Return ``dz = da * (1 - a**2)`` and no parameter gradients."""
        a = cache
        dz: Array = dout * (1.0 - a * a)
        return dz, []

    def forward_one(self, z: Array) -> Array:
        """One sample: ``a = tanh(z)`` into the layer's buffer, shape (size,)."""
        return np.tanh(z, out=self.a)

    def backward_one(self, da: Array, a: Array) -> Array:
        """One sample: ``dz = da * (1 - a**2)`` into the layer's buffer, shape (size,)."""
        dz = self._dz
        np.multiply(a, a, out=dz)
        np.subtract(1.0, dz, out=dz)
        dz *= da
        return dz


class ReLU:
    """Rectified linear unit ``a = max(z, 0)``; ``dz = da * [z > 0]``.

    Parameters
    ----------
    size : int
        Width of the layer (length of the one-sample buffers).

    Attributes
    ----------
    a : ndarray, shape (size,)
        Output of the latest :meth:`forward_one` (the buffer it writes into).

    Examples
    --------
    >>> import numpy as np
    >>> a, cache = ReLU(3).forward(np.array([-1.0, 0.5, 2.0]))
    >>> a
    array([0. , 0.5, 2. ])
    >>> ReLU(3).backward(np.array([1.0, 1.0, 3.0]), cache)[0]
    array([0., 1., 3.])
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.a = np.zeros(size)
        self._dz = np.zeros(size)
        self._on = np.zeros(size, dtype=bool)

    def forward(self, x: Array) -> tuple[Array, Array]:
        """Return ``a = max(z, 0)`` and ``z`` as the cache (any shape)."""
        a: Array = np.maximum(x, 0.0)
        return a, x

    def backward(self, dout: Array, cache: Array) -> tuple[Array, list[Array]]:
        """Return ``dz = da * [z > 0]`` and no parameter gradients."""
        dz: Array = dout * (cache > 0.0)
        return dz, []

    def forward_one(self, z: Array) -> Array:
        """One sample: ``a = max(z, 0)`` into the layer's buffer, shape (size,)."""
        return np.maximum(z, 0.0, out=self.a)

    def backward_one(self, da: Array, a: Array) -> Array:
        """One sample: ``dz = da * [a > 0]`` (``a > 0`` exactly where ``z > 0``)."""
        np.greater(a, 0.0, out=self._on)
        return np.multiply(da, self._on, out=self._dz)


Activation = Tanh | ReLU

ACTIVATIONS: dict[str, type[Tanh] | type[ReLU]] = {"tanh": Tanh, "relu": ReLU}


def make_activation(name: str, size: int) -> Activation:
    """Build the activation layer called ``name`` (``"tanh"`` or ``"relu"``) of width ``size``."""
    try:
        return ACTIVATIONS[name](size)
    except KeyError:
        raise ModelError(
            f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}"
        ) from None


def glorot_uniform(rng: np.random.Generator, n_in: int, n_out: int) -> Array:
    """Glorot & Bengio (2010) weights for tanh: U(-r, r), ``r = sqrt(6 / (n_in + n_out))``.

    Returns
    -------
    ndarray, shape (n_in, n_out)
    """
    r = math.sqrt(6.0 / (n_in + n_out))
    return rng.uniform(-r, r, size=(n_in, n_out))


def he_normal(rng: np.random.Generator, n_in: int, n_out: int) -> Array:
    """He et al. (2015) weights for ReLU: N(0, 2 / n_in).

    Returns
    -------
    ndarray, shape (n_in, n_out)
    """
    return rng.normal(0.0, math.sqrt(2.0 / n_in), size=(n_in, n_out))
