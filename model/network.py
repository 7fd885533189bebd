"""The body shared by :class:`~tickcast.model.mlp.MLP` and :class:`~tickcast.model.mlp.TwoHeadMLP`.

Layout. All parameters live in one flat float64 vector; ``params`` are views of it, in the
order ``W0, b0, W1, b1, ...`` (``Wi`` of shape (n_in, n_out), ``bi`` of shape (n_out,), input
layer first). Gradients live in a second flat vector with the same layout. The optimizer is
handed the two flat vectors, so its update is a handful of ufunc calls whatever the depth.

Hot path. ``predict_one`` and ``learn_one`` run the layers' one-sample maths (the forward
pass inlined in :meth:`Network.forward_one`, then each layer's ``backward_one``) into buffers
allocated once: no array is created per sample. ``learn_one``
always recomputes its forward pass (a few microseconds) rather than trusting one cached by
``predict_one``, so that nothing done to the weights in between (``params`` are writable
views) can be missed.

State. ``state_dict`` holds the config (JSON), the flat weights, the optimizer's moments and
step counts and the generator's state; ``to_bytes`` is that dict as an ``.npz`` (no pickle).
Restoring it gives bit-identical later predictions and updates.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import math
from collections.abc import Sequence
from typing import Any, ClassVar, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import ModelError
from .layers import Activation, Array, Dense, glorot_uniform, he_normal, make_activation
from .optim import Adam, Optimizer

__all__ = ["Network", "ShapeError", "StateError", "default_optimizer"]

log = logging.getLogger(__name__)

_F64 = np.dtype(np.float64)


class ShapeError(ModelError, ValueError):
    """An input or target does not have the shape the model was built for."""


class StateError(ModelError):
    """A state dict or byte string does not fit the model it is loaded into."""


def default_optimizer() -> Optimizer:
    """``Adam(lr=1e-3, clip_norm=1.0)``: the optimizer used when none is given."""
    return Adam(lr=1e-3, clip_norm=1.0)


class Network:
    """Base of the online networks: layers over one flat parameter vector (see module doc).

    Subclasses set ``kind`` and ``n_outputs`` and define the output loss (``_head_one``,
    ``_head_many``) and their config; this class is not used on its own.

    Examples
    --------
    >>> from tickcast.model.mlp import MLP
    >>> model = MLP(3, hidden=(4,))
    >>> isinstance(model, Network), [p.shape for p in model.params]
    (True, [(3, 4), (4,), (4, 1), (1,)])
    """

    kind: ClassVar[str] = ""
    n_outputs: ClassVar[int] = 1

    def __init__(
        self,
        n_inputs: int,
        hidden: Sequence[int],
        activation: str,
        optimizer: Optimizer | None,
        seed: int,
    ) -> None:
        if n_inputs < 1 or any(h < 1 for h in hidden):
            raise ModelError(f"layer sizes must be >= 1, got {n_inputs} inputs, {hidden}")
        self.n_inputs = n_inputs
        self.hidden = tuple(int(h) for h in hidden)
        self.activation = activation
        self.optimizer = optimizer
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._optimizer = default_optimizer() if optimizer is None else optimizer.clone()
        self._acts: list[Activation] = [make_activation(activation, h) for h in self.hidden]
        sizes = (n_inputs, *self.hidden, self.n_outputs)
        shapes = [s for a, b in itertools.pairwise(sizes) for s in ((a, b), (b,))]
        n_params = sum(math.prod(s) for s in shapes)
        self._theta = np.zeros(n_params)
        self._grad = np.zeros(n_params)
        self._params = _views(self._theta, shapes)
        self._grads = _views(self._grad, shapes)
        self._init_weights(sizes)
        n_layers = len(sizes) - 1
        self._dense = [Dense(self._params[2 * i], self._params[2 * i + 1]) for i in range(n_layers)]
        self._delta = np.zeros(self.n_outputs)
        self._in_shape = (n_inputs,)
        # the one-sample path's plan: forward (dense, activation) pairs, then the output
        # layer; backward (dense, activation below it, dW, db) from the top, then the first dW, db
        self._pairs = list(zip(self._dense[:-1], self._acts, strict=True))
        self._out = self._dense[-1]
        self._back = [
            (self._dense[i], self._acts[i - 1], self._grads[2 * i], self._grads[2 * i + 1])
            for i in range(n_layers - 1, 0, -1)
        ]
        self._first = (self._dense[0], self._grads[0], self._grads[1])
        # the forward pass as (W, b, z buffer, activation output, is ReLU) steps, looked up
        # once; the activations write into their own buffers, which the backward pass reads
        self._plan = [(d.W, d.b, d._z, act.a, activation == "relu") for d, act in self._pairs]
        self._out_step = (self._out.W, self._out.b, self._out._z)
        self._flat_theta = [self._theta]
        self._flat_grad = [self._grad]

    def _init_weights(self, sizes: Sequence[int]) -> None:
        """Draw every ``W`` from the seeded generator (He for ReLU layers, Glorot otherwise,
        Glorot for the output layer); biases start at zero."""
        n_layers = len(sizes) - 1
        for i in range(n_layers):
            relu = self.activation == "relu" and i < n_layers - 1
            draw = he_normal if relu else glorot_uniform
            self._params[2 * i][...] = draw(self._rng, sizes[i], sizes[i + 1])

    # -- learned state ---------------------------------------------------------------------

    @property
    def params(self) -> list[Array]:
        """Parameter arrays (views of the flat vector): ``W0, b0, W1, b1, ...``."""
        return list(self._params)

    @property
    def n_updates(self) -> int:
        """Optimizer steps applied (the model version)."""
        return self._optimizer.n_updates

    @property
    def n_skipped(self) -> int:
        """Updates refused by the non-finite guard (bad loss or gradient)."""
        return self._optimizer.n_skipped

    @property
    def last_grad_norm(self) -> float:
        """Global gradient norm of the latest update, before clipping."""
        return self._optimizer.last_grad_norm

    # -- the one-sample hot path -----------------------------------------------------------

    def _check_one(self, x: ArrayLike) -> Array:
        if type(x) is not np.ndarray or x.dtype is not _F64:
            x = np.asarray(x, dtype=np.float64)
        if x.shape != self._in_shape:
            raise ShapeError(f"expected x of shape {self._in_shape}, got {x.shape}")
        return x

    def forward_one(self, x: Array) -> Array:
        """Raw outputs for one sample, without input checks.

        The maths of each layer's ``forward_one``, inlined: ``z = a W + b`` and the activation,
        into the layers' buffers.

        Parameters
        ----------
        x : ndarray, shape (n_inputs,), float64
            The inputs (not checked).

        Returns
        -------
        ndarray, shape (n_outputs,)
            The output layer's buffer, overwritten by the next pass.
        """
        a = x
        dot = np.dot
        for W, b, z, act_out, relu in self._plan:
            dot(a, W, out=z)
            z += b
            a = np.maximum(z, 0.0, out=act_out) if relu else np.tanh(z, out=act_out)
        W, b, z = self._out_step
        dot(a, W, out=z)
        z += b
        return z

    def _backward_one(self, x: Array, delta: Array) -> None:
        for dense, act, dW, db in self._back:
            a = act.a
            delta = act.backward_one(dense.backward_one(delta, a, dW, db), a)
        first, dW, db = self._first
        first.grads_one(delta, x, dW, db)

    def _head_one(self, out: Array, y: float) -> float:
        """Write ``dL/d out`` into ``self._delta``; return the loss."""
        raise NotImplementedError

    def _learn_one(self, x: ArrayLike, y: float) -> None:
        x = self._check_one(x)
        loss = self._head_one(self.forward_one(x), float(y))
        if math.isfinite(loss):  # NaN and inf losses skip the backward pass
            self._backward_one(x, self._delta)
        if not self._optimizer.step(self._flat_theta, self._flat_grad, loss):
            log.debug("skipped a non-finite update (loss %r)", loss)

    # -- batches ---------------------------------------------------------------------------

    def _check_many(self, X: ArrayLike, y: ArrayLike | None = None) -> tuple[Array, Array]:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_inputs:
            raise ShapeError(f"expected X of shape (n, {self.n_inputs}), got {X.shape}")
        if y is None:
            return X, np.zeros(0)
        y = np.asarray(y, dtype=np.float64)
        if y.shape != (X.shape[0],):
            raise ShapeError(f"expected y of shape ({X.shape[0]},), got {y.shape}")
        return X, y

    def _forward_many(self, X: Array) -> tuple[Array, list[Array]]:
        caches = []
        a = X
        for dense, act in self._pairs:
            z, cache = dense.forward(a)
            caches.append(cache)
            a, cache = act.forward(z)
            caches.append(cache)
        out, cache = self._out.forward(a)
        caches.append(cache)
        return out, caches

    def _head_many(self, out: Array, y: Array) -> tuple[float, Array]:
        """Mean loss over the batch and its gradient with respect to ``out`` (n, n_outputs)."""
        raise NotImplementedError

    def loss_and_grads(self, X: ArrayLike, y: ArrayLike) -> tuple[float, list[Array]]:
        """Mean loss on a batch and its gradients, in :attr:`params` order (nothing changes).

        Parameters
        ----------
        X : array_like, shape (n, n_inputs)
        y : array_like, shape (n,)
        """
        X, y = self._check_many(X, y)
        out, caches = self._forward_many(X)
        loss, delta = self._head_many(out, y)
        grads: list[Array] = []
        layers: list[Dense | Activation] = [*itertools.chain.from_iterable(self._pairs), self._out]
        for layer, cache in zip(reversed(layers), reversed(caches), strict=True):
            delta, g = layer.backward(delta, cache)
            grads[:0] = g
        return loss, grads

    def _learn_many(self, X: ArrayLike, y: ArrayLike) -> None:
        X, y = self._check_many(X, y)
        if X.shape[0] == 0:
            return
        loss, grads = self.loss_and_grads(X, y)
        for view, g in zip(self._grads, grads, strict=True):
            view[...] = g
        if not self._optimizer.step(self._flat_theta, self._flat_grad, loss):
            log.debug("skipped a non-finite batch update (loss %r)", loss)

    # -- state -----------------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "n_inputs": self.n_inputs,
            "hidden": list(self.hidden),
            "activation": self.activation,
            "optimizer": self._optimizer.spec(),
            "seed": self.seed,
        }

    @classmethod
    def _from_config(cls, config: dict[str, Any]) -> Self:
        raise NotImplementedError

    def state_dict(self) -> dict[str, NDArray[Any]]:
        """Everything learned, as arrays: config, weights, optimizer state, RNG state.

        Keys: ``config`` (JSON), ``theta`` (flat parameters), ``rng`` (JSON of the bit
        generator state) and ``optim.<key>`` for :meth:`Optimizer.state_dict`.
        """
        state: dict[str, NDArray[Any]] = {
            "config": np.array(json.dumps(self._config())),
            "theta": self._theta.copy(),
            "rng": np.array(json.dumps(self._rng.bit_generator.state)),
        }
        for key, value in self._optimizer.state_dict().items():
            state[f"optim.{key}"] = value
        return state

    def load_state_dict(self, state: dict[str, NDArray[Any]]) -> None:
        """Restore :meth:`state_dict` output; later predictions and updates are bit-identical.

        Raises
        ------
        StateError
            If the state belongs to another architecture or is incomplete.
        """
        try:
            config = json.loads(np.asarray(state["config"]).item())
            theta = np.asarray(state["theta"], dtype=np.float64)
            rng_state = json.loads(np.asarray(state["rng"]).item())
        except (KeyError, ValueError) as exc:
            raise StateError(f"incomplete state dict: {exc}") from exc
        mine = self._config()
        arch = ("kind", "n_inputs", "hidden", "activation")
        if any(config.get(k) != mine[k] for k in arch) or theta.shape != self._theta.shape:
            got = {k: config.get(k) for k in arch}
            want = {k: mine[k] for k in arch}
            raise StateError(f"a state of {got} does not fit {want}")
        try:
            type(self._rng.bit_generator)().state = rng_state  # validate before changing anything
            self._optimizer.load_state_dict(
                {k.removeprefix("optim."): v for k, v in state.items() if k.startswith("optim.")}
            )
        except (ModelError, TypeError, ValueError) as exc:
            raise StateError(f"unusable state: {exc}") from exc
        self._rng.bit_generator.state = rng_state
        self._theta[...] = theta

    def to_bytes(self) -> bytes:
        """The state dict as an ``.npz`` byte string (no pickle)."""
        buffer = io.BytesIO()
        np.savez(buffer, **self.state_dict())  # type: ignore[arg-type]
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Rebuild a model from :meth:`to_bytes` output."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                state = {key: npz[key] for key in npz.files}
            config = json.loads(np.asarray(state["config"]).item())
        except (OSError, ValueError, KeyError) as exc:
            raise StateError(f"not a model byte string: {exc}") from exc
        if config.get("kind") != cls.kind:
            raise StateError(f"bytes hold a {config.get('kind')!r}, not a {cls.kind!r}")
        model = cls._from_config(config)
        model.load_state_dict(state)
        return model

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._repr_args().items())
        return f"{type(self).__name__}({args})"

    def _repr_args(self) -> dict[str, Any]:
        return {"n_inputs": self.n_inputs, "hidden": self.hidden, "activation": self.activation}


def _views(flat: Array, shapes: Sequence[tuple[int, ...]]) -> list[Array]:
    """Cut ``flat`` into consecutive C-contiguous views of the given shapes."""
    views, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        views.append(flat[start : start + size].reshape(shape))
        start += size
    return views
