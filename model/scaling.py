"""Online standardisation with exponentially weighted mean and variance."""

from __future__ import annotations

import math
from typing import Any, overload

import numpy as np
from numpy.typing import NDArray

from . import ModelError
from .layers import Array

__all__ = ["EWStandardizer"]


class EWStandardizer:
    """Standardise a scalar or a 1-D vector with exponentially weighted moments, online.

    Update for one sample ``x`` (Finch 2009, *Incremental calculation of weighted mean and
    variance*, University of Cambridge, the exponentially weighted form)::

        diff = x - mean
        incr = a * diff
        mean = mean + incr
        var  = (1 - a) * (var + diff * incr)

    with ``a = max(alpha, 1 / n)`` for the n-th sample. While ``1 / n > alpha`` this is exactly
    the running mean and population variance of the samples so far (Welford 1962), so the first
    estimates carry no bias from a zero start; afterwards it forgets with half-life
    ``ln 2 / -ln(1 - alpha)`` samples. Vectors are standardised element-wise.

    ``transform_one`` returns ``(x - mean) / sqrt(var + eps)``, clipped to ``[-clip, clip]`` if
    ``clip`` is set, once ``warmup`` samples have been learned, and zeros before (too few
    samples to scale by). It never learns: call ``transform_one`` then ``learn_one`` so a
    sample is not scaled with statistics that already include it.

    Finite in, finite out. A sample with a NaN or infinite element, or one so far from the
    mean that its squared distance overflows (beyond about 1e154), is not learned; it is
    counted in ``n_skipped``, so the moments stay finite. ``transform_one`` returns finite
    values: an element that would not be -- a non-finite input, a zero scale (``eps = 0``
    and a constant input), an overflow with no ``clip`` -- reads as 0, no information.

    Parameters
    ----------
    alpha : float
        Weight of the newest sample once warmed up, in (0, 1].
    warmup : int
        Samples to learn before ``transform_one`` returns anything but zeros (``>= 1``).
    eps : float
        Added to the variance before the square root (``>= 0``), in squared input units.
    clip : float or None
        Bound on the standardised values; ``None`` leaves them unbounded.

    Examples
    --------
    >>> import numpy as np
    >>> scaler = EWStandardizer(alpha=0.1, warmup=3)
    >>> for v in [1.0, 2.0, 3.0]:
    ...     scaler.learn_one(v)
    >>> round(scaler.mean, 6), round(scaler.var, 6)  # exact mean and variance of 1, 2, 3
    (2.0, 0.666667)
    >>> round(scaler.transform_one(4.0), 4)
    2.4495
    >>> vec = EWStandardizer(alpha=0.5, warmup=1)
    >>> vec.learn_one(np.array([1.0, -1.0])); vec.learn_one(np.array([3.0, -1.0]))
    >>> vec.transform_one(np.array([3.0, -1.0]))
    array([1., 0.])
    >>> vec.learn_one(np.array([1e300, 0.0])); vec.n_skipped  # its square would overflow
    1
    >>> vec.transform_one(np.array([np.nan, -1.0]))  # a NaN carries no information
    array([0., 0.])
    """

    def __init__(
        self,
        alpha: float = 0.01,
        warmup: int = 100,
        eps: float = 1e-12,
        clip: float | None = None,
    ) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ModelError(f"alpha must be in (0, 1], got {alpha!r}")
        if warmup < 1:
            raise ModelError(f"warmup must be >= 1, got {warmup!r}")
        if not eps >= 0.0:
            raise ModelError(f"eps must be >= 0, got {eps!r}")
        if clip is not None and not clip > 0.0:
            raise ModelError(f"clip must be positive, got {clip!r}")
        self.alpha = alpha
        self.warmup = warmup
        self.eps = eps
        self.clip = clip
        self._n = 0
        self._n_skipped = 0
        self._ndim = -1  # -1 before the first sample, then 0 (scalar) or 1 (vector)
        self._mean_s = 0.0
        self._var_s = 0.0
        self._mean_v = np.zeros(0)
        self._var_v = np.zeros(0)
        self._diff = np.zeros(0)
        self._incr = np.zeros(0)

    # -- learned state ---------------------------------------------------------------------

    @property
    def n_seen(self) -> int:
        """Samples learned."""
        return self._n

    @property
    def n_skipped(self) -> int:
        """Samples refused because an element was NaN or infinite."""
        return self._n_skipped

    @property
    def ready(self) -> bool:
        """Whether ``warmup`` samples have been learned."""
        return self._n >= self.warmup

    @property
    def mean(self) -> Any:
        """Current mean: a float for scalars, a copy of the (d,) array for vectors."""
        return self._mean_v.copy() if self._ndim == 1 else self._mean_s

    @property
    def var(self) -> Any:
        """Current variance: a float for scalars, a copy of the (d,) array for vectors."""
        return self._var_v.copy() if self._ndim == 1 else self._var_s

    # -- learning --------------------------------------------------------------------------

    def learn_one(self, x: float | Array) -> None:
        """Fold one sample (a float, or an array of shape (d,)) into the moments."""
        if self._ndim != 1 and np.ndim(x) == 0:
            self._learn_scalar(float(x))
        else:
            self._learn_vector(np.asarray(x, dtype=np.float64))

    def _alpha_n(self) -> float:
        n = self._n + 1
        return 1.0 / n if n * self.alpha < 1.0 else self.alpha

    def _learn_scalar(self, x: float) -> None:
        diff = x - self._mean_s
        if not math.isfinite(diff * diff):
            self._n_skipped += 1
            return
        self._ndim = 0
        a = self._alpha_n()
        incr = a * diff
        self._mean_s += incr
        self._var_s = (1.0 - a) * (self._var_s + diff * incr)
        self._n += 1

    def _learn_vector(self, x: Array) -> None:
        if self._ndim == 0:
            raise ModelError(f"this standardiser learned scalars, got shape {x.shape}")
        if self._ndim < 0:
            if x.ndim != 1:
                raise ModelError(f"EWStandardizer takes a scalar or a 1-D array, got {x.shape}")
            d = x.shape[0]
            self._mean_v, self._var_v = np.zeros(d), np.zeros(d)
            self._diff, self._incr = np.zeros(d), np.zeros(d)
            self._ndim = 1
        if x.shape != self._mean_v.shape:
            raise ModelError(f"expected shape {self._mean_v.shape}, got {x.shape}")
        diff, incr = self._diff, self._incr
        with np.errstate(over="ignore", invalid="ignore"):
            np.subtract(x, self._mean_v, out=diff)
            if not math.isfinite(diff.dot(diff)):
                self._n_skipped += 1
                return
        a = self._alpha_n()
        np.multiply(diff, a, out=incr)
        self._mean_v += incr
        diff *= incr
        self._var_v += diff
        self._var_v *= 1.0 - a
        self._n += 1

    # -- transforming ----------------------------------------------------------------------

    @overload
    def transform_one(self, x: float) -> float: ...

    @overload
    def transform_one(self, x: Array) -> Array: ...

    def transform_one(self, x: float | Array) -> float | Array:
        """Standardised ``x`` (a new float or array); zeros until :attr:`ready`."""
        if self._ndim != 1 and np.ndim(x) == 0:
            z = float(x)
            if self._n < self.warmup or not math.isfinite(z):
                return 0.0
            sd = math.sqrt(self._var_s + self.eps)
            z = (z - self._mean_s) / sd if sd > 0.0 else 0.0
            c = self.clip
            if c is not None:
                z = min(max(z, -c), c)
            return z if math.isfinite(z) else 0.0
        xv = np.asarray(x, dtype=np.float64)
        if self._ndim == 0:
            raise ModelError(f"this standardiser learned scalars, got shape {xv.shape}")
        if self._n < self.warmup:
            return np.zeros(xv.shape)
        if xv.shape != self._mean_v.shape:
            raise ModelError(f"expected shape {self._mean_v.shape}, got {xv.shape}")
        scale = np.sqrt(self._var_v + self.eps)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            zv: Array = np.subtract(xv, self._mean_v)
            zv /= scale
        if self.clip is not None:
            np.clip(zv, -self.clip, self.clip, out=zv)
        zv[~(np.isfinite(zv) & np.isfinite(xv) & (scale > 0.0))] = 0.0
        return zv

    @overload
    def inverse_transform_one(self, z: float) -> float: ...

    @overload
    def inverse_transform_one(self, z: Array) -> Array: ...

    def inverse_transform_one(self, z: float | Array) -> float | Array:
        """Back to input units: ``z * sqrt(var + eps) + mean`` (e.g. a predicted target)."""
        if self._ndim == 1:
            out: Array = np.asarray(z, dtype=np.float64) * np.sqrt(self._var_v + self.eps)
            out += self._mean_v
            return out
        return float(z) * math.sqrt(self._var_s + self.eps) + self._mean_s

    # -- state -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, NDArray[Any]]:
        """Learned state as arrays: ``n``, ``n_skipped``, ``ndim``, ``mean``, ``var``."""
        vector = self._ndim == 1
        return {
            "n": np.array(self._n, dtype=np.int64),
            "n_skipped": np.array(self._n_skipped, dtype=np.int64),
            "ndim": np.array(self._ndim, dtype=np.int64),
            "mean": self._mean_v.copy() if vector else np.array(self._mean_s),
            "var": self._var_v.copy() if vector else np.array(self._var_s),
        }

    def load_state_dict(self, state: dict[str, NDArray[Any]]) -> None:
        """Restore :meth:`state_dict` output exactly."""
        try:
            ndim = int(np.asarray(state["ndim"]).item())
            n = int(np.asarray(state["n"]).item())
            n_skipped = int(np.asarray(state["n_skipped"]).item())
            mean = np.array(state["mean"], dtype=np.float64)
            var = np.array(state["var"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"bad EWStandardizer state: {exc}") from exc
        vector = ndim == 1
        fits = mean.ndim == 1 if vector else mean.size == 1  # a scalar may come back as (1,)
        if ndim not in (-1, 0, 1) or mean.shape != var.shape or not fits:
            raise ModelError(f"bad EWStandardizer state: ndim {ndim}, mean {mean.shape}")
        self._n, self._n_skipped, self._ndim = n, n_skipped, ndim
        if vector:
            self._mean_v, self._var_v = mean, var
            self._diff, self._incr = np.zeros_like(mean), np.zeros_like(mean)
            self._mean_s = self._var_s = 0.0
        else:
            self._mean_s, self._var_s = float(mean.item()), float(var.item())
            self._mean_v = self._var_v = self._diff = self._incr = np.zeros(0)

    def __repr__(self) -> str:
        return (
            f"EWStandardizer(alpha={self.alpha!r}, warmup={self.warmup!r}, eps={self.eps!r}, "
            f"clip={self.clip!r})"
        )
