"""The planted short-horizon effect of the synthetic market, and the oracle that knows it.

The planted model
-----------------
Between top-of-book updates the latent log-price of a symbol drifts at the rate

.. math::

    \\mu = \\sigma \\, a \\, \\Big(\\tanh(b I) + c \\tanh(d F) \\big(1 - (I / I_0)^2\\big)\\Big)

per second, where ``I`` is the book imbalance of the latest quote, ``F`` the trade flow over
:data:`FLOW_WINDOW_MS` (both exactly as the features compute them, see the features contract),
``sigma`` the current volatility (per square-root second) and ``a`` the symbol's effect
strength; ``b, c, d, I_0`` are :data:`SATURATION`, :data:`FLOW_COUPLING`, :data:`FLOW_SATURATION`
and :data:`ABSORPTION`. A lopsided book pushes the price its way, with saturation. Aggressive
flow moves the price its way while the book is balanced (``|I| < I_0``); against a lopsided
book it has been absorbed and the price moves back against it. The sign of the drift is thus a
curved function of (I, F) that no linear model reproduces. The drift accrued since the last
quote and a Gaussian increment are applied to the mid, on the tick grid, at the next quote.

The book imbalance follows ``I = tanh(z)`` with ``z`` an AR(1) process stepped at each quote,
``z' = phi z + scale sqrt(1 - phi^2) eps`` (``z`` restarts from ``atanh`` of the quoted
imbalance, so the observable is the whole state). Quotes arrive as a Poisson process.

The oracle
----------
For a sample at event time ``t`` (information: every event with ``event_ms < t``) and horizon
``H`` the label is ``log(mid_{t+H} / mid_t)``, the mids being those of the last quotes before
``t + H`` and before ``t``. Its conditional expectation is

.. math::

    A_t \\, P(N_{[t, t+H)} > 0) + \\int_t^{t+H} E[\\mu_u] \\, P(N_{(u, t+H)} > 0) \\, du,

with ``A_t`` the drift accrued since the last quote and ``N`` the quote counts. ``E[mu_u]``
integrates the imbalance's AR(1) over the Poisson number of quotes by Gauss-Hermite quadrature,
tabulated once per (symbol, horizon) on a grid of ``z``. The 5 s flow is taken at its expected
value half a horizon ahead (new trades at the mean volume rate, their side leaning with the
book) and the volatility at its value at ``t``: both change little within a few seconds. Realised
labels regress on the oracle with a slope close to one, and least-squares fits on the
observables, with hindsight, do not beat its hit rate (see the tests).

The oracle reads the market's state after the last event before ``t``: the observables above
and the latent volatility. Every term is proportional to that volatility (constant between
quotes), so the sign of the expectation, which is what a hit rate scores, is a function of the
ticks before ``t`` alone: its hit rate is the best any predictor fed those ticks can reach.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.polynomial.hermite_e import hermegauss

from tickcast.service import TickcastError

SATURATION = 2.5
"""``b``: the book-imbalance push saturates as ``tanh(b I)``."""
FLOW_COUPLING = 1.1
"""``c``: weight of the trade-flow term."""
FLOW_SATURATION = 3.0
"""``d``: the trade-flow term saturates as ``tanh(d F)``."""
ABSORPTION = 0.6
"""``I_0``: beyond this book imbalance the flow's effect turns into a reversal."""
FLOW_WINDOW_MS = 5000
"""EW time constant of the trade flow the drift reads (the features' ``trade_flow_5000``)."""
IMBALANCE_SCALE = 1.0
"""Stationary standard deviation of ``z = atanh(I)``."""
SIDE_RESPONSE = 0.6
"""The aggressor mix leans to the heavy side of the book: ``P(buy) = (1 + SIDE_RESPONSE I) / 2``."""

_Z_MAX = 8.0
_Z_POINTS = 801
_U_POINTS = 400
_GH_POINTS = 40


class OracleError(TickcastError):
    """The oracle cannot answer: unknown symbol, disabled, or a time outside its memory."""


def drift_rate(sigma: float, strength: float, imbalance: float, flow: float) -> float:
    """Planted drift of the log-price, per second.

    Parameters
    ----------
    sigma : float
        Volatility of the log-price, per square-root second.
    strength : float
        The symbol's effect strength ``a`` (in volatility units).
    imbalance : float
        Book imbalance of the latest quote, in [-1, 1].
    flow : float
        EW trade flow over :data:`FLOW_WINDOW_MS`, in [-1, 1].

    Examples
    --------
    >>> drift_rate(1e-4, 1.0, 0.0, 0.0)
    0.0
    >>> drift_rate(1e-4, 1.0, 0.0, 0.5) > 0.0  # balanced book: flow moves the price its way
    True
    >>> drift_rate(1e-4, 1.0, 0.9, 0.5) < drift_rate(1e-4, 1.0, 0.9, -0.5)  # lopsided: reversal
    True
    """
    return (
        sigma
        * strength
        * (
            math.tanh(SATURATION * imbalance)
            + FLOW_COUPLING
            * math.tanh(FLOW_SATURATION * flow)
            * (1.0 - (imbalance / ABSORPTION) ** 2)
        )
    )


@dataclass(frozen=True)
class _Table:
    """Horizon-dependent pieces of the oracle for one symbol, ``z`` on a uniform grid."""

    z0: float
    inv_dz: float
    push: list[float]  # integral of w(u) E[tanh(b I_u)] du, seconds, per grid z
    gain: list[float]  # integral of w(u) E[1 - (I_u / I_0)^2] du, seconds, per grid z
    p_quote: float  # P(at least one quote within the horizon)

    def lookup(self, z: float) -> tuple[float, float]:
        """Linear interpolation of (push, gain) at ``z`` (clamped to the grid)."""
        x = (z - self.z0) * self.inv_dz
        last = len(self.push) - 1
        if x <= 0.0:
            return self.push[0], self.gain[0]
        if x >= last:
            return self.push[last], self.gain[last]
        i = int(x)
        f = x - i
        p, g = self.push, self.gain
        return p[i] + f * (p[i + 1] - p[i]), g[i] + f * (g[i + 1] - g[i])


def _build_table(quote_rate: float, phi: float, horizon_ms: int) -> _Table:
    """Tabulate the expected integrated push over ``horizon_ms`` for each starting ``z``."""
    horizon = horizon_ms / 1000.0
    lam = quote_rate
    du = horizon / _U_POINTS
    u = (np.arange(_U_POINTS) + 0.5) * du  # (U,) seconds after t
    w = -np.expm1(-lam * (horizon - u))  # P(a quote in (u, t + H))
    mean_n = lam * horizon
    n_max = int(mean_n + 10.0 * math.sqrt(mean_n) + 10.0)
    n = np.arange(n_max + 1, dtype=np.float64)  # (N,)
    log_fact = np.array([math.lgamma(k + 1.0) for k in range(n_max + 1)])
    log_pois = n[None, :] * np.log(lam * u)[:, None] - lam * u[:, None] - log_fact[None, :]
    weight_n = (w[:, None] * np.exp(log_pois)).sum(axis=0) * du  # (N,) seconds

    nodes, gh_w = hermegauss(_GH_POINTS)
    gh_w = gh_w / math.sqrt(2.0 * math.pi)
    z = np.linspace(-_Z_MAX, _Z_MAX, _Z_POINTS)  # (Z,)
    phi_n = phi**n
    sd_n = IMBALANCE_SCALE * np.sqrt(1.0 - phi_n**2)
    push = np.zeros(_Z_POINTS)
    gain = np.zeros(_Z_POINTS)
    for k in range(n_max + 1):  # z after k quotes: Normal(phi^k z, sd_k^2)
        zk = phi_n[k] * z[:, None] + sd_n[k] * nodes[None, :]  # (Z, G)
        imbalance = np.tanh(zk)
        push += weight_n[k] * (np.tanh(SATURATION * imbalance) @ gh_w)
        gain += weight_n[k] * ((1.0 - (imbalance / ABSORPTION) ** 2) @ gh_w)
    return _Table(
        z0=-_Z_MAX,
        inv_dz=(_Z_POINTS - 1) / (2.0 * _Z_MAX),
        push=push.tolist(),
        gain=gain.tolist(),
        p_quote=float(-math.expm1(-lam * horizon)),
    )


class History:
    """Bounded per-symbol record of the planted state after each event.

    Rows are appended one event at a time and sealed into numpy chunks by :meth:`seal`;
    chunks older than ``memory_ms`` before the newest sealed time are dropped.

    Columns: event time (ms, float), drift accrued since the last quote (log units), drift
    rate (per second), ``z = atanh(I)`` of the latest quote, trade flow, its EW weight (sum of
    sizes), volatility.
    """

    N_COLUMNS = 7

    def __init__(self, memory_ms: float) -> None:
        self.memory_ms = memory_ms
        self.rows: list[tuple[float, float, float, float, float, float, float]] = []
        self._chunks: deque[np.ndarray] = deque()
        self._firsts: deque[float] = deque()
        self._pruned = False
        self.sealed_until = -math.inf

    def seal(self, until_ms: float) -> None:
        """Close the rows of events before ``until_ms`` into a chunk and prune old chunks."""
        if self.rows:
            chunk = np.array(self.rows, dtype=np.float64)
            self._chunks.append(chunk)
            self._firsts.append(float(chunk[0, 0]))
            self.rows = []
        self.sealed_until = until_ms
        horizon = until_ms - self.memory_ms
        while (
            len(self._chunks) > 1 and self._chunks[0][-1, 0] < horizon and self._firsts[1] < horizon
        ):
            self._chunks.popleft()
            self._firsts.popleft()
            self._pruned = True

    def state_before(self, t_ms: float) -> np.ndarray | None:
        """Row of the last event with time < ``t_ms``; ``None`` when there was none."""
        j = bisect.bisect_left(self._firsts, t_ms) - 1
        if j < 0:
            if self._pruned:
                raise OracleError(f"t={t_ms} is older than the oracle's memory")
            return None
        chunk = self._chunks[j]
        i = int(np.searchsorted(chunk[:, 0], t_ms, side="left")) - 1
        row: np.ndarray = chunk[i]
        return row

    def states_before(self, t_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows (n, 7) of the last events before each time, and a mask of times with one."""
        if not self._chunks:
            return np.zeros((len(t_ms), self.N_COLUMNS)), np.zeros(len(t_ms), dtype=bool)
        table = np.concatenate(list(self._chunks))
        idx = np.searchsorted(table[:, 0], t_ms, side="left") - 1
        found = idx >= 0
        if self._pruned and not bool(found.all()):
            raise OracleError("a requested time is older than the oracle's memory")
        return table[np.maximum(idx, 0)], found


@dataclass(frozen=True)
class OracleSymbol:
    """What the oracle needs to know of one symbol's planted model."""

    quote_rate: float  # quotes per second
    phi: float  # AR(1) coefficient of z per quote
    strength: float  # effect strength a
    imbalance_tau_s: float  # time constant of the book imbalance, seconds
    volume_rate: float  # mean traded size per second, base units

    def flow_terms(self, horizon_ms: int) -> tuple[float, float, float]:
        """Terms of the expected trade flow half a horizon ahead.

        New trades arrive at ``volume_rate`` with mean side ``SIDE_RESPONSE * E[I]`` and mix
        into the EW flow, whose weight (EW sum of sizes) decays meanwhile. With ``(keep, new,
        lean)`` returned, the expected flow is ``flow + new / (weight * keep + new) * (lean *
        tanh(z) - flow)``.
        """
        ahead = 0.5 * horizon_ms / 1000.0
        tau = FLOW_WINDOW_MS / 1000.0
        keep = math.exp(-ahead / tau)
        new = self.volume_rate * tau * (1.0 - keep)
        lean = SIDE_RESPONSE * math.exp(-0.5 * ahead / self.imbalance_tau_s)
        return keep, new, lean


class Oracle:
    """Bayes-optimal expected returns under the planted model (see the module docstring).

    Parameters
    ----------
    symbols : dict
        ``{symbol: OracleSymbol}``.
    histories : dict or None
        ``{symbol: History}`` filled by the market; ``None`` disables the oracle.
    extend : callable
        ``extend(t_ms)`` makes the market generate (and buffer) events up to ``t_ms``.
    """

    def __init__(
        self,
        symbols: dict[str, OracleSymbol],
        histories: dict[str, History] | None,
        extend: Callable[[float], None],
    ) -> None:
        self._symbols = symbols
        self._histories = histories
        self._extend = extend
        self._tables: dict[tuple[str, int], _Table] = {}

    def _table(self, symbol: str, horizon_ms: int) -> _Table:
        key = (symbol, horizon_ms)
        table = self._tables.get(key)
        if table is None:
            spec = self._symbols[symbol]
            table = _build_table(spec.quote_rate, spec.phi, horizon_ms)
            self._tables[key] = table
        return table

    def _history(self, symbol: str, until_ms: float, horizon_ms: int) -> History:
        if self._histories is None:
            raise OracleError("the oracle is disabled (oracle_memory_s=None)")
        if symbol not in self._symbols:
            raise OracleError(f"unknown symbol {symbol!r}")
        if horizon_ms <= 0:
            raise OracleError(f"horizon_ms must be positive, got {horizon_ms}")
        history = self._histories[symbol]
        if until_ms > history.sealed_until:
            self._extend(until_ms)
        return history

    def expected_return(self, symbol: str, t_ms: int, horizon_ms: int) -> float:
        """E[log(mid_{t+H} / mid_t) | events with event_ms < t] under the planted model.

        Returns 0.0 before the symbol's first event. Raises :class:`OracleError` for an unknown
        symbol, a disabled oracle or a time older than the oracle's memory.
        """
        history = self._history(symbol, float(t_ms), horizon_ms)
        row = history.state_before(float(t_ms))
        if row is None:
            return 0.0
        spec = self._symbols[symbol]
        table = self._table(symbol, horizon_ms)
        values: list[float] = row.tolist()
        t_e, acc, mu, z, flow, weight, sigma = values
        accrued = acc + mu * (t_ms - t_e) / 1000.0
        push, gain = table.lookup(z)
        keep, new, side = spec.flow_terms(horizon_ms)
        weight *= math.exp((t_e - t_ms) / FLOW_WINDOW_MS)
        flow += new / (weight * keep + new) * (side * math.tanh(z) - flow)
        lean = math.tanh(FLOW_SATURATION * flow)
        future = sigma * spec.strength * (push + FLOW_COUPLING * lean * gain)
        return accrued * table.p_quote + future

    def expected_returns(
        self, symbol: str, t_ms: Sequence[int] | np.ndarray, horizon_ms: int
    ) -> np.ndarray:
        """Vectorised :meth:`expected_return` over sample times, shape (n,)."""
        t = np.asarray(t_ms, dtype=np.float64)
        if t.size == 0:
            return np.zeros(0)
        history = self._history(symbol, float(t.max()), horizon_ms)
        rows, found = history.states_before(t)
        spec = self._symbols[symbol]
        table = self._table(symbol, horizon_ms)
        t_e, acc, mu, z, flow, weight, sigma = rows.T
        accrued = acc + mu * (t - t_e) / 1000.0
        grid = np.linspace(-_Z_MAX, _Z_MAX, _Z_POINTS)
        push = np.interp(z, grid, np.asarray(table.push))
        gain = np.interp(z, grid, np.asarray(table.gain))
        keep, new, side = spec.flow_terms(horizon_ms)
        weight = weight * np.exp((t_e - t) / FLOW_WINDOW_MS)
        flow = flow + new / (weight * keep + new) * (side * np.tanh(z) - flow)
        lean = np.tanh(FLOW_SATURATION * flow)
        future = sigma * spec.strength * (push + FLOW_COUPLING * lean * gain)
        out: np.ndarray = np.where(found, accrued * table.p_quote + future, 0.0)
        return out


def bayes_hit_rate(expected: np.ndarray, realised: np.ndarray) -> float:
    """Hit rate of ``sign(expected)`` against ``sign(realised)`` over nonzero ``realised``.

    An expectation of exactly zero scores half a hit (a coin flip). NaN when no realised value
    is nonzero.

    Parameters
    ----------
    expected, realised : ndarray, shape (n,)
        Predicted and realised returns (any common unit).

    Examples
    --------
    >>> bayes_hit_rate(np.array([1.0, -1.0, 2.0, 0.5]), np.array([0.1, 0.2, 0.0, 0.3]))
    0.6666666666666666
    """
    e = np.asarray(expected, dtype=np.float64)
    r = np.asarray(realised, dtype=np.float64)
    if e.shape != r.shape:
        raise OracleError(f"shapes differ: {e.shape} vs {r.shape}")
    mask = (r != 0.0) & np.isfinite(r) & np.isfinite(e)
    n = int(mask.sum())
    if n == 0:
        return math.nan
    score = np.where(np.sign(e[mask]) == np.sign(r[mask]), 1.0, 0.0)
    score[e[mask] == 0.0] = 0.5
    return float(score.mean())
