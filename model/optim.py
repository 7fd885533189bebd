"""Optimizers: apply gradients to parameters in place.

``step(params, grads, loss) -> bool`` does, in this order:

1. **Non-finite guard.** If ``loss`` or the global gradient norm ``||g|| = sqrt(sum g**2)``
   over every array is not finite (NaN, inf, or a norm that overflows), nothing changes, the
   step is counted in ``n_skipped`` and ``False`` is returned.
2. **Global-norm clipping** (Pascanu et al. 2013): if ``clip_norm`` is set and
   ``||g|| > clip_norm``, every gradient is scaled by ``clip_norm / ||g||`` (the caller's
   arrays are not modified; the scale is folded into the update).
3. **Decoupled weight decay** (Loshchilov & Hutter 2019): ``p <- p * (1 - lr * weight_decay)``,
   never fed into the moments. It applies to every array it is given, biases included.
4. The method's own update; ``n_updates`` counts the steps applied.

Moments are created on the first step with the shapes of ``params``; give an optimizer the same
list of arrays every time. ``state_dict`` / ``load_state_dict`` round-trip the learned state
(moments, step counts) exactly; hyperparameters belong to the constructor (``spec``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from . import ModelError
from .layers import Array

__all__ = ["OPTIMIZERS", "SGD", "Adam", "Momentum", "Optimizer", "make_optimizer"]


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ModelError(message)


class Optimizer:
    """Base class: the guard, clipping, decay and bookkeeping shared by every method.

    Parameters
    ----------
    lr : float
        Learning rate (``> 0``).
    weight_decay : float
        Decoupled decay rate per unit of ``lr`` (``>= 0``).
    clip_norm : float or None
        Largest global gradient norm let through; ``None`` disables clipping.

    Examples
    --------
    >>> import numpy as np
    >>> opt = SGD(lr=0.5, clip_norm=1.0)
    >>> p = np.zeros(2)
    >>> opt.step([p], [np.array([3.0, 4.0])], loss=1.0), p  # norm 5 clipped to 1
    (True, array([-0.3, -0.4]))
    >>> opt.step([p], [np.array([np.nan, 0.0])], loss=1.0), opt.n_updates, opt.n_skipped
    (False, 1, 1)
    """

    name: ClassVar[str] = ""
    _slots: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, lr: float, weight_decay: float = 0.0, clip_norm: float | None = None
    ) -> None:
        _check(lr > 0.0 and math.isfinite(lr), f"lr must be positive and finite, got {lr!r}")
        _check(weight_decay >= 0.0, f"weight_decay must be >= 0, got {weight_decay!r}")
        _check(
            clip_norm is None or clip_norm > 0.0, f"clip_norm must be positive, got {clip_norm!r}"
        )
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.clip_norm = None if clip_norm is None else float(clip_norm)
        self._t = 0
        self._n_skipped = 0
        self._last_norm = math.nan
        self._state: dict[str, list[Array]] = {}
        self._tmp: list[Array] = []

    @property
    def n_updates(self) -> int:
        """Steps applied (the guard's skips excluded)."""
        return self._t

    @property
    def n_skipped(self) -> int:
        """Steps refused by the non-finite guard."""
        return self._n_skipped

    @property
    def last_grad_norm(self) -> float:
        """Global gradient norm of the latest step, before clipping (NaN before any step)."""
        return self._last_norm

    def step(self, params: Sequence[Array], grads: Sequence[Array], loss: float) -> bool:
        """Apply one update to ``params`` in place; ``False`` if the guard skipped it.

        Parameters
        ----------
        params : sequence of ndarray
            Parameter arrays, float64, updated in place.
        grads : sequence of ndarray
            Gradients of ``loss``, same shapes as ``params``; read, never written, and not
            read at all when ``loss`` is not finite. (Gradients so large that their squared
            norm overflows are refused too; numpy may warn about the overflow.)
        loss : float
            The loss the gradients belong to (only its finiteness is used).
        """
        if not math.isfinite(loss):  # checked first: the gradients are then not even read
            self._last_norm = math.nan
            self._n_skipped += 1
            return False
        sq = 0.0
        for g in grads:
            sq += float(g.dot(g) if g.ndim == 1 else np.vdot(g, g))
        norm = math.sqrt(sq)  # NaN or inf when any gradient is, or when sq overflows
        self._last_norm = norm
        if not math.isfinite(norm):
            self._n_skipped += 1
            return False
        if len(self._tmp) != len(params):
            self._init_state(params)
        scale = 1.0
        clip = self.clip_norm
        if clip is not None and norm > clip:
            scale = clip / norm
        self._t += 1
        if self.weight_decay:
            keep = 1.0 - self.lr * self.weight_decay
            for p in params:
                p *= keep
        self._update(params, grads, scale)
        return True

    def _update(self, params: Sequence[Array], grads: Sequence[Array], scale: float) -> None:
        """Apply the method's update with the gradients scaled by ``scale``."""
        raise NotImplementedError

    def _init_state(self, params: Sequence[Array]) -> None:
        """Allocate scratch buffers and zero moments shaped like ``params``."""
        self._tmp = [np.zeros_like(p) for p in params]
        self._state = {k: [np.zeros_like(p) for p in params] for k in self._slots}

    def _set_state(self, slots: dict[str, list[Array]]) -> None:
        """Adopt loaded moments (one list of arrays per slot) and allocate scratch buffers."""
        self._state = slots
        self._tmp = [np.zeros_like(a) for a in slots[self._slots[0]]]

    def _moments(self) -> dict[str, list[Array]]:
        """The moments by slot name, as the plain arrays of the method's equations."""
        return self._state

    def reset(self) -> None:
        """Forget moments and counts, as if newly built."""
        self._t = 0
        self._n_skipped = 0
        self._last_norm = math.nan
        self._state = {}
        self._tmp = []

    def spec(self) -> dict[str, Any]:
        """Name and hyperparameters, enough to rebuild a fresh copy with :func:`make_optimizer`."""
        return {
            "name": self.name,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "clip_norm": self.clip_norm,
        }

    def clone(self) -> Optimizer:
        """A fresh optimizer with the same hyperparameters and no learned state."""
        return make_optimizer(self.spec())

    def state_dict(self) -> dict[str, NDArray[Any]]:
        """Learned state as arrays: ``t``, ``n_skipped``, ``last_norm`` and ``<slot>.<i>``."""
        out: dict[str, NDArray[Any]] = {
            "t": np.array(self._t, dtype=np.int64),
            "n_skipped": np.array(self._n_skipped, dtype=np.int64),
            "last_norm": np.array(self._last_norm, dtype=np.float64),
        }
        for slot, arrays in self._moments().items():
            for i, a in enumerate(arrays):
                out[f"{slot}.{i}"] = a.copy()
        return out

    def load_state_dict(self, state: dict[str, NDArray[Any]]) -> None:
        """Restore what :meth:`state_dict` returned (arrays are copied)."""
        try:
            t = int(np.asarray(state["t"]).item())
            n_skipped = int(np.asarray(state["n_skipped"]).item())
            last_norm = float(np.asarray(state["last_norm"]).item())
            n = sum(1 for k in state if k.startswith(f"{self._slots[0]}.")) if self._slots else 0
            if self._slots and n == 0 and t > 0:
                raise KeyError(f"{self._slots[0]}.0")
            slots = {
                s: [np.array(state[f"{s}.{i}"], dtype=np.float64, order="C") for i in range(n)]
                for s in self._slots
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"bad {type(self).__name__} state: {exc}") from exc
        self.reset()
        self._t, self._n_skipped, self._last_norm = t, n_skipped, last_norm
        if n:
            self._set_state(slots)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.spec().items() if k != "name")
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Plain stochastic gradient descent ``p <- p - lr * g``.

    Examples
    --------
    >>> import numpy as np
    >>> p = np.array([1.0, 2.0])
    >>> SGD(lr=0.1).step([p], [np.array([1.0, -1.0])], loss=0.0)
    True
    >>> p
    array([0.9, 2.1])
    """

    name = "sgd"

    def __init__(
        self, lr: float = 0.01, weight_decay: float = 0.0, clip_norm: float | None = None
    ) -> None:
        super().__init__(lr, weight_decay, clip_norm)

    def _update(self, params: Sequence[Array], grads: Sequence[Array], scale: float) -> None:
        a = -self.lr * scale
        for p, g, tmp in zip(params, grads, self._tmp, strict=True):
            np.multiply(g, a, out=tmp)
            p += tmp


class Momentum(Optimizer):
    """Heavy-ball momentum (Polyak 1964): ``v <- momentum * v + g``, ``p <- p - lr * v``.

    Parameters
    ----------
    lr, weight_decay, clip_norm
        See :class:`Optimizer`.
    momentum : float
        Velocity decay in [0, 1).

    Examples
    --------
    >>> import numpy as np
    >>> p, opt = np.array([0.0]), Momentum(lr=1.0, momentum=0.5)
    >>> for _ in range(2):
    ...     _ = opt.step([p], [np.array([1.0])], loss=0.0)
    >>> p  # -1 then -(0.5 * 1 + 1)
    array([-2.5])
    """

    name = "momentum"
    _slots = ("velocity",)

    def __init__(
        self,
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
    ) -> None:
        _check(0.0 <= momentum < 1.0, f"momentum must be in [0, 1), got {momentum!r}")
        super().__init__(lr, weight_decay, clip_norm)
        self.momentum = float(momentum)

    def _update(self, params: Sequence[Array], grads: Sequence[Array], scale: float) -> None:
        mu, lr = self.momentum, self.lr
        for p, g, v, tmp in zip(params, grads, self._state["velocity"], self._tmp, strict=True):
            v *= mu
            np.multiply(g, scale, out=tmp)
            v += tmp
            np.multiply(v, lr, out=tmp)
            p -= tmp

    def spec(self) -> dict[str, Any]:
        """Base hyperparameters plus ``momentum``."""
        return {**super().spec(), "momentum": self.momentum}


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015, Algorithm 1) with bias correction.

    ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g**2``,
    ``p <- p - lr * m_hat / (sqrt(v_hat) + eps)`` with ``m_hat = m / (1 - b1**t)``,
    ``v_hat = v / (1 - b2**t)``; evaluated as ``p <- p - a_t m / (sqrt(v) + eps_t)``,
    ``a_t = lr sqrt(1 - b2**t) / (1 - b1**t)``, ``eps_t = eps sqrt(1 - b2**t)`` (the same
    value, without dividing the moments). The step count ``t`` counts applied steps only.

    Parameters
    ----------
    lr, weight_decay, clip_norm
        See :class:`Optimizer`; with ``weight_decay`` this is AdamW.
    beta1, beta2 : float
        Decay rates of the first and second moments, in [0, 1).
    eps : float
        Denominator floor (``> 0``).

    Examples
    --------
    >>> import numpy as np
    >>> p = np.array([1.0, 1.0])
    >>> Adam(lr=0.1).step([p], [np.array([3.0, -0.5])], loss=1.0)  # first step: lr * sign(g)
    True
    >>> p.round(6)
    array([0.9, 1.1])
    """

    name = "adam"
    _slots = ("m", "v")

    def __init__(
        self,
        lr: float = 1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
    ) -> None:
        _check(0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0, "beta1 and beta2 must be in [0, 1)")
        _check(eps > 0.0, f"eps must be positive, got {eps!r}")
        super().__init__(lr, weight_decay, clip_norm)
        self.beta1 = float(beta1)
        self.beta2 = float(beta2)
        self.eps = float(eps)
        self._plan: list[tuple[Array, ...]] = []

    # Each parameter's two moments share one (2, *shape) array ``mv = [m, v]`` so that their
    # decay and increment are one ufunc call each: ``mv = beta * mv + u`` with the constant
    # ``beta = [beta1, beta2]`` (laid out in full, no broadcasting) and ``u = [g1 g, g2 g**2]``.

    def reset(self) -> None:
        """Forget moments and counts, as if newly built."""
        super().reset()
        self._plan = []

    def _init_state(self, params: Sequence[Array]) -> None:
        self._set_state(
            {"m": [np.zeros_like(p) for p in params], "v": [np.zeros_like(p) for p in params]}
        )

    def _set_state(self, slots: dict[str, list[Array]]) -> None:
        self._plan = []
        for m, v in zip(slots["m"], slots["v"], strict=True):
            mv = np.stack([m, v])
            u = np.zeros_like(mv)
            beta = np.empty_like(mv)
            beta[0], beta[1] = self.beta1, self.beta2
            self._plan.append((mv, mv[0], mv[1], u, u[0], u[1], beta, np.zeros_like(m)))
        self._tmp = [step[-1] for step in self._plan]
        self._state = {"m": [step[1] for step in self._plan], "v": [step[2] for step in self._plan]}

    def _update(self, params: Sequence[Array], grads: Sequence[Array], scale: float) -> None:
        b1, b2, t = self.beta1, self.beta2, self._t
        c2 = math.sqrt(1.0 - b2**t)
        a_t = self.lr * c2 / (1.0 - b1**t)
        eps_t = self.eps * c2
        g1 = (1.0 - b1) * scale
        g2 = (1.0 - b2) * scale * scale
        for p, g, (mv, m, v, u, u_m, u_v, beta, tmp) in zip(params, grads, self._plan, strict=True):
            np.multiply(g, g1, out=u_m)
            np.multiply(g, g, out=u_v)
            u_v *= g2
            mv *= beta
            mv += u
            np.sqrt(v, out=tmp)
            tmp += eps_t
            np.divide(m, tmp, out=tmp)
            tmp *= a_t
            p -= tmp

    def spec(self) -> dict[str, Any]:
        """Base hyperparameters plus ``beta1``, ``beta2``, ``eps``."""
        return {**super().spec(), "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}


OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "momentum": Momentum, "adam": Adam}


def make_optimizer(spec: dict[str, Any]) -> Optimizer:
    """Build a fresh optimizer from :meth:`Optimizer.spec` output.

    Examples
    --------
    >>> make_optimizer({"name": "adam", "lr": 0.01, "clip_norm": 1.0})
    Adam(lr=0.01, weight_decay=0.0, clip_norm=1.0, beta1=0.9, beta2=0.999, eps=1e-08)
    """
    params = dict(spec)
    name = params.pop("name", None)
    cls = OPTIMIZERS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ModelError(f"unknown optimizer {name!r}; choose from {sorted(OPTIMIZERS)}")
    return cls(**params)
