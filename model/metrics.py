"""Prequential (test-then-train) metrics of a streaming regressor, rolling and cumulative.

Every scored sample brings a realised label ``y`` (log return, bps), the model's prediction and
the linear baseline's prediction; the zero predictor is the third, implicit, baseline. From
these the module keeps, in O(1) per update:

* ``hit_rate`` — share of samples with a nonzero label whose predicted sign matches it (a
  prediction of exactly zero counts as half a hit: it is a coin toss);
* ``ic`` — Pearson correlation of prediction and label (the information coefficient);
* ``skill_vs_zero`` = 1 - MSE_model / MSE_zero and ``skill_vs_linear`` = 1 - MSE_model /
  MSE_linear;
* counts (scored samples, nonzero labels).

:class:`RollingMetrics` covers the last ``window`` samples with ring buffers and running sums
(recomputed from the buffers once per ``window`` updates so rounding cannot drift);
:class:`CumulativeMetrics` covers every sample since the start with Welford's co-moment update
(Welford 1962; the bivariate form in Pébay 2008, "Formulas for robust, one-pass parallel
computation of covariances and arbitrary-order statistical moments"), which stays accurate over
millions of samples. :func:`summarize` computes the same figures in one batch over arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tickcast.model import ModelError

FloatArray = npt.NDArray[np.float64]

__all__ = [
    "CumulativeMetrics",
    "MetricsError",
    "MetricsSummary",
    "PrequentialMetrics",
    "RollingMetrics",
    "summarize",
]


class MetricsError(ModelError):
    """Raised on a bad window size or an inconsistent state dict."""


@dataclass(frozen=True, slots=True)
class MetricsSummary:
    """Figures of one scored population (NaN where undefined, e.g. before any sample).

    Attributes
    ----------
    n_scored : int
        Samples scored.
    n_nonzero : int
        Samples whose label is nonzero (the hit-rate population).
    hit_rate : float
        Sign agreement on nonzero labels, in [0, 1].
    ic : float
        Pearson correlation of prediction and label, in [-1, 1].
    skill_vs_zero : float
        1 - MSE_model / MSE_zero.
    skill_vs_linear : float
        1 - MSE_model / MSE_linear.
    mse, mse_zero, mse_linear : float
        Mean squared errors (bps^2) of the model and of the two baselines.
    """

    n_scored: int
    n_nonzero: int
    hit_rate: float
    ic: float
    skill_vs_zero: float
    skill_vs_linear: float
    mse: float
    mse_zero: float
    mse_linear: float

    def as_dict(self) -> dict[str, float | int]:
        """Return the figures as a plain dict (JSON-ready apart from NaN)."""
        return {name: getattr(self, name) for name in self.__slots__}


def _hit(y: float, pred: float) -> float:
    """Return 1 on a sign match, 0 on a mismatch, 0.5 for a zero prediction (y must be != 0)."""
    if pred == 0.0:
        return 0.5
    return 1.0 if (pred > 0.0) == (y > 0.0) else 0.0


def _ratio_skill(sse: float, sse_base: float) -> float:
    return 1.0 - sse / sse_base if sse_base > 0.0 else math.nan


def _pearson(n: int, cov: float, var_y: float, var_p: float) -> float:
    """Correlation from (co)moments; NaN when either side is constant or n < 2."""
    if n < 2 or var_y <= 0.0 or var_p <= 0.0:
        return math.nan
    r = cov / math.sqrt(var_y * var_p)
    return max(-1.0, min(1.0, r))


class CumulativeMetrics:
    """Prequential figures over every sample since the start, O(1) per update.

    Examples
    --------
    >>> m = CumulativeMetrics()
    >>> for y, p in [(1.0, 0.5), (-2.0, -1.0), (0.0, 0.2), (3.0, -0.1)]:
    ...     m.update(y, p, 0.0)
    >>> s = m.summary()
    >>> s.n_scored, s.n_nonzero, round(s.hit_rate, 3)
    (4, 3, 0.667)
    """

    def __init__(self) -> None:
        self._n = 0
        self._n_nonzero = 0
        self._hits = 0.0
        self._mean_y = 0.0
        self._mean_p = 0.0
        self._m2_y = 0.0
        self._m2_p = 0.0
        self._c_yp = 0.0
        self._sse = 0.0
        self._sse_zero = 0.0
        self._sse_linear = 0.0

    def update(self, y: float, pred: float, pred_linear: float) -> None:
        """Score one sample: label ``y``, model ``pred``, linear baseline ``pred_linear`` (bps)."""
        self._n += 1
        if y != 0.0:
            self._n_nonzero += 1
            self._hits += _hit(y, pred)
        dy = y - self._mean_y
        dp = pred - self._mean_p
        self._mean_y += dy / self._n
        self._mean_p += dp / self._n
        self._m2_y += dy * (y - self._mean_y)
        self._m2_p += dp * (pred - self._mean_p)
        self._c_yp += dy * (pred - self._mean_p)
        self._sse += (pred - y) ** 2
        self._sse_zero += y * y
        self._sse_linear += (pred_linear - y) ** 2

    @property
    def n_scored(self) -> int:
        """Samples scored so far."""
        return self._n

    def summary(self) -> MetricsSummary:
        """Return the figures over every sample scored so far."""
        n = self._n
        nan = math.nan
        return MetricsSummary(
            n_scored=n,
            n_nonzero=self._n_nonzero,
            hit_rate=self._hits / self._n_nonzero if self._n_nonzero else nan,
            ic=_pearson(n, self._c_yp, self._m2_y, self._m2_p),
            skill_vs_zero=_ratio_skill(self._sse, self._sse_zero),
            skill_vs_linear=_ratio_skill(self._sse, self._sse_linear),
            mse=self._sse / n if n else nan,
            mse_zero=self._sse_zero / n if n else nan,
            mse_linear=self._sse_linear / n if n else nan,
        )

    def state_dict(self) -> dict[str, Any]:
        """Return the learned state as plain Python numbers."""
        return {k: getattr(self, k) for k in vars(self)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state made by :meth:`state_dict`."""
        expected = set(vars(self))
        if set(state) != expected:
            raise MetricsError(f"cumulative metrics state has keys {sorted(state)}")
        for k in expected:
            setattr(self, k, type(getattr(self, k))(state[k]))


# Column order of the rolling ring buffer and of its running sums.
_Y, _P, _YY, _PP, _YP, _SE, _SEL, _NZ, _HIT = range(9)
_N_COLS = 9


class RollingMetrics:
    """Prequential figures over the last ``window`` scored samples, O(1) per update.

    One ring buffer row per sample holds its contributions (y, p, y^2, p^2, y*p, squared
    errors, nonzero flag, hit); running sums (Python floats: cheaper than numpy at this size)
    add the new row and subtract the evicted one. The sums are recomputed from the buffer
    every ``window`` updates, so rounding error never accumulates beyond one window.

    Parameters
    ----------
    window : int
        Number of most recent samples covered (>= 2).

    Examples
    --------
    >>> m = RollingMetrics(window=2)
    >>> for y, p in [(1.0, -1.0), (1.0, 1.0), (-1.0, -1.0)]:
    ...     m.update(y, p, 0.0)
    >>> m.summary().hit_rate
    1.0
    """

    def __init__(self, window: int = 3000) -> None:
        if window < 2:
            raise MetricsError(f"rolling window must be >= 2, got {window}")
        self.window = int(window)
        self._rows: FloatArray = np.zeros((self.window, _N_COLS))
        self._sums: list[float] = [0.0] * _N_COLS
        self._count = 0
        self._pos = 0
        self._since_refresh = 0

    def update(self, y: float, pred: float, pred_linear: float) -> None:
        """Score one sample: label ``y``, model ``pred``, linear baseline ``pred_linear`` (bps)."""
        nonzero = y != 0.0
        row = (
            y,
            pred,
            y * y,
            pred * pred,
            y * pred,
            (pred - y) ** 2,
            (pred_linear - y) ** 2,
            1.0 if nonzero else 0.0,
            _hit(y, pred) if nonzero else 0.0,
        )
        pos = self._pos
        sums = self._sums
        if self._count == self.window:
            old = self._rows[pos].tolist()
            for i in range(_N_COLS):
                sums[i] += row[i] - old[i]
        else:
            self._count += 1
            for i in range(_N_COLS):
                sums[i] += row[i]
        self._rows[pos] = row
        self._pos = (pos + 1) % self.window
        self._since_refresh += 1
        if self._since_refresh >= self.window:
            self._sums = self._rows[: self._count].sum(axis=0).tolist()
            self._since_refresh = 0

    @property
    def n_scored(self) -> int:
        """Samples currently in the window."""
        return self._count

    def summary(self) -> MetricsSummary:
        """Return the figures over the samples in the window."""
        n = self._count
        s = self._sums
        nan = math.nan
        n_nonzero = round(s[_NZ])
        if n == 0:
            return MetricsSummary(0, 0, nan, nan, nan, nan, nan, nan, nan)
        cov = s[_YP] - s[_Y] * s[_P] / n
        var_y = s[_YY] - s[_Y] ** 2 / n
        var_p = s[_PP] - s[_P] ** 2 / n
        # Relative guard: a variance below rounding noise of its sum of squares is zero.
        eps = 1e-12
        var_y = var_y if var_y > eps * s[_YY] else 0.0
        var_p = var_p if var_p > eps * s[_PP] else 0.0
        return MetricsSummary(
            n_scored=n,
            n_nonzero=n_nonzero,
            hit_rate=s[_HIT] / n_nonzero if n_nonzero else nan,
            ic=_pearson(n, cov, var_y, var_p),
            skill_vs_zero=_ratio_skill(s[_SE], s[_YY]),
            skill_vs_linear=_ratio_skill(s[_SE], s[_SEL]),
            mse=s[_SE] / n,
            mse_zero=s[_YY] / n,
            mse_linear=s[_SEL] / n,
        )

    def state_dict(self) -> dict[str, Any]:
        """Return the state (buffer copied)."""
        return {
            "window": self.window,
            "rows": self._rows.copy(),
            "sums": list(self._sums),
            "count": self._count,
            "pos": self._pos,
            "since_refresh": self._since_refresh,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state made by :meth:`state_dict` (the window must match)."""
        if int(state["window"]) != self.window:
            raise MetricsError(f"window mismatch: state {state['window']} vs {self.window}")
        rows = np.asarray(state["rows"], dtype=np.float64)
        if rows.shape != self._rows.shape:
            raise MetricsError(f"rolling buffer shape {rows.shape} != {self._rows.shape}")
        self._rows = rows.copy()
        self._sums = [float(v) for v in state["sums"]]
        if len(self._sums) != _N_COLS:
            raise MetricsError(f"rolling sums must have {_N_COLS} entries")
        self._count = int(state["count"])
        self._pos = int(state["pos"])
        self._since_refresh = int(state["since_refresh"])


class PrequentialMetrics:
    """Rolling and cumulative metrics updated together.

    Parameters
    ----------
    window : int
        Rolling window, in scored samples.

    Examples
    --------
    >>> m = PrequentialMetrics(window=100)
    >>> m.update(2.0, 1.0, 0.5)
    >>> m.cumulative().n_scored, m.rolling().hit_rate
    (1, 1.0)
    """

    def __init__(self, window: int = 3000) -> None:
        self.window = int(window)
        self._rolling = RollingMetrics(self.window)
        self._cumulative = CumulativeMetrics()

    def update(self, y: float, pred: float, pred_linear: float) -> None:
        """Score one sample in both views."""
        self._rolling.update(y, pred, pred_linear)
        self._cumulative.update(y, pred, pred_linear)

    def rolling(self) -> MetricsSummary:
        """Figures over the last ``window`` samples."""
        return self._rolling.summary()

    def cumulative(self) -> MetricsSummary:
        """Figures over every sample scored."""
        return self._cumulative.summary()

    def state_dict(self) -> dict[str, Any]:
        """Return the state of both views."""
        return {
            "window": self.window,
            "rolling": self._rolling.state_dict(),
            "cumulative": self._cumulative.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state made by :meth:`state_dict`."""
        self._rolling.load_state_dict(state["rolling"])
        self._cumulative.load_state_dict(state["cumulative"])


def summarize(
    y: npt.ArrayLike, pred: npt.ArrayLike, pred_linear: npt.ArrayLike | None = None
) -> MetricsSummary:
    """Compute the figures in one batch.

    Parameters
    ----------
    y, pred : array_like, shape (n,)
        Labels and model predictions (bps).
    pred_linear : array_like, shape (n,), optional
        Linear-baseline predictions; zeros when omitted.

    Returns
    -------
    MetricsSummary

    Examples
    --------
    >>> s = summarize([1.0, -1.0, 2.0, 0.0], [0.5, -0.5, 1.0, 0.1])
    >>> s.hit_rate, round(s.ic, 3)
    (1.0, 0.997)
    """
    ya = np.asarray(y, dtype=np.float64).ravel()
    pa = np.asarray(pred, dtype=np.float64).ravel()
    la = np.zeros_like(ya) if pred_linear is None else np.asarray(pred_linear, np.float64).ravel()
    if not (ya.shape == pa.shape == la.shape):
        raise MetricsError(f"shape mismatch: {ya.shape}, {pa.shape}, {la.shape}")
    n = int(ya.size)
    nan = math.nan
    nz = ya != 0.0
    n_nonzero = int(nz.sum())
    hits = np.where(pa[nz] == 0.0, 0.5, (pa[nz] > 0.0) == (ya[nz] > 0.0)).sum()
    sse = float(((pa - ya) ** 2).sum())
    sse_zero = float((ya * ya).sum())
    sse_linear = float(((la - ya) ** 2).sum())
    if n >= 2:
        dy = ya - ya.mean()
        dp = pa - pa.mean()
        ic = _pearson(n, float(dy @ dp), float(dy @ dy), float(dp @ dp))
    else:
        ic = nan
    return MetricsSummary(
        n_scored=n,
        n_nonzero=n_nonzero,
        hit_rate=float(hits) / n_nonzero if n_nonzero else nan,
        ic=ic,
        skill_vs_zero=_ratio_skill(sse, sse_zero),
        skill_vs_linear=_ratio_skill(sse, sse_linear),
        mse=sse / n if n else nan,
        mse_zero=sse_zero / n if n else nan,
        mse_linear=sse_linear / n if n else nan,
    )
