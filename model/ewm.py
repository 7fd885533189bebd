"""Exponentially weighted sums on event time, for the streaming features.

An accumulator ``A`` with time constant ``tau`` decays as ``A <- A * exp(-(t - t_prev) / tau)``
before a contribution ``c`` at event time ``t`` is added, so that after contributions
``c_i`` at ``t_i``: ``A(t) = sum_i c_i * exp(-(t - t_i) / tau)`` (the discrete-event form of
an exponential moving sum; see e.g. Müller, "Operators on inhomogeneous time series", 2001).
Accumulators sharing a time constant share one ``math.exp`` per update, and none is needed
for contributions at the same event time. Reading at a later ``t`` decays a copy, never the
state, so reads do not change later updates.

Finite in, finite out. Every value read from these sums is finite for any finite input: a
trade whose size or notional would overflow an EW sum is refused (:meth:`TradeWindows.add`
returns False), ratios are read only over positive denominators, and the VWAP deviation
falls back to a difference of logs when its ratio under- or overflows. The mid's log
changes are bounded by the range of floats (``|dx| < 1.5e7`` bps).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from . import ModelError

__all__ = ["EWError", "MidChanges", "TradeWindows", "check_windows"]

_BPS = 1e4
_INF = math.inf
_EPS = 1e-9  # an EW denominator below this is ~0 (trade counts, or bps for the RSI)


class EWError(ModelError, ValueError):
    """Invalid window lengths or an incompatible accumulator state."""


def check_windows(name: str, values: Sequence[int]) -> tuple[int, ...]:
    """Return ``values`` as a tuple of distinct positive whole milliseconds, or raise.

    >>> check_windows("windows_ms", [1000, 5000])
    (1000, 5000)
    >>> check_windows("windows_ms", [1000, 1000])
    Traceback (most recent call last):
    ...
    tickcast.model.ewm.EWError: windows_ms must be distinct positive whole ms, got [1000, 1000]
    """
    out = tuple(int(v) for v in values)
    if (
        not out
        or any(v <= 0 for v in out)
        or len(set(out)) != len(out)
        or any(v != w for v, w in zip(out, values, strict=True))
    ):
        raise EWError(f"{name} must be distinct positive whole ms, got {values!r}")
    return out


def _log_ratio(ref: float, a: Sequence[float]) -> float:
    """``log(ref * a[0] / a[4])`` as a sum of logs, for when the ratio under- or overflows
    (``ref``, ``a[0]`` and ``a[4]`` positive and finite, so the result is finite).

    >>> round(_log_ratio(1e308, [1e10, 0.0, 0.0, 0.0, 1e-300]), 1)  # log(1e618): 1e308 * 1e10 = inf
    1423.0
    """
    return math.log(ref) + math.log(a[0]) - math.log(a[4])


def _floats(rows: Any, width: int, n_rows: int) -> list[list[float]]:
    """Validate and copy an ``(n_rows, width)`` nested list of floats."""
    try:
        out = [[float(v) for v in row] for row in rows]
    except (TypeError, ValueError) as exc:
        raise EWError(f"accumulators are not numbers: {exc!r}") from exc
    if [len(row) for row in out] != [width] * n_rows:
        raise EWError(f"accumulators must have shape ({n_rows}, {width})")
    return out


class TradeWindows:
    """EW sums of trades over several time constants.

    Per window ``w`` (ms) it keeps ``[sum size, sum side * size, sum side, sum 1,
    sum price * size]``, each EW with time constant ``w``. The sums of sizes and notionals
    of the longest window bound those of the others (their terms decay less), so a trade
    that keeps them finite keeps every sum finite.

    Parameters
    ----------
    windows_ms : sequence of int
        Time constants, ms.

    Examples
    --------
    >>> tw = TradeWindows((1000,))
    >>> tw.add(1000, 100.0, 3.0, 1.0), tw.add(1000, 102.0, 1.0, -1.0)
    (True, True)
    >>> [[round(v, 4) for v in col] for col in tw.columns(2000, 101.0)]
    [[0.5], [0.0], [0.5514], [49.6279]]
    >>> tw.add(2000, 1e308, 2.0, 1.0)  # its notional overflows: refused, nothing changes
    False
    """

    def __init__(self, windows_ms: Sequence[int]) -> None:
        self.windows_ms = check_windows("windows_ms", windows_ms)
        self.n = 0  # trades added
        self.t = 0  # event time of the last trade, ms
        self.last_price = 0.0
        self._acc = [[0.0] * 5 for _ in self.windows_ms]
        self._longest = self.windows_ms.index(max(self.windows_ms))

    def add(self, t: int, price: float, size: float, side: float) -> bool:
        """Add a trade at event time ``t`` (>= the last one), ``side`` +1.0 buy / -1.0 sell.

        ``price > 0`` and ``size >= 0`` finite. Returns False, and adds nothing, when the
        trade would make a sum of sizes or notionals overflow (e.g. a price of 1e308 times a
        size of 2): the caller counts it as invalid.
        """
        signed = side * size
        notional = price * size
        longest = self._acc[self._longest]
        if not (longest[0] + size < _INF and longest[4] + notional < _INF):
            return False
        dt = t - self.t
        if self.n and dt:
            exp = math.exp
            for w, a in zip(self.windows_ms, self._acc, strict=True):
                d = exp(-dt / w)
                a[0] = a[0] * d + size
                a[1] = a[1] * d + signed
                a[2] = a[2] * d + side
                a[3] = a[3] * d + 1.0
                a[4] = a[4] * d + notional
        else:
            for a in self._acc:
                a[0] += size
                a[1] += signed
                a[2] += side
                a[3] += 1.0
                a[4] += notional
        self.n += 1
        self.t = t
        self.last_price = price
        return True

    def columns(self, t_ms: int, ref: float) -> tuple[list[float], ...]:
        """Per window, as of ``t_ms``: flow, count imbalance, intensity and VWAP deviation.

        Flow = EW sum(side * size) / EW sum(size); count imbalance = EW sum(side) / EW sum(1)
        (both 0 when the EW count is ~0); intensity = log1p(EW count per second); VWAP
        deviation = log(ref / EW VWAP) in bps (0 without trades, when ``ref`` is not finite
        and positive, or when the EW notional underflowed to 0). Every value is finite.
        """
        n = len(self.windows_ms)
        flow, count_imb, intensity, vwap_dev = [0.0] * n, [0.0] * n, [0.0] * n, [0.0] * n
        dt = max(t_ms - self.t, 0)
        log = math.log
        priced = 0.0 < ref < _INF
        for k, (w, a) in enumerate(zip(self.windows_ms, self._acc, strict=True)):
            count = a[3] * math.exp(-dt / w)
            intensity[k] = math.log1p(count * 1000.0 / w)
            if count > _EPS:
                count_imb[k] = a[2] / a[3]
                if a[0] > 0.0:
                    flow[k] = a[1] / a[0]
                    if priced and a[4] > 0.0:
                        r = ref * a[0] / a[4]  # ref / VWAP
                        vwap_dev[k] = (log(r) if 0.0 < r < _INF else _log_ratio(ref, a)) * _BPS
        return flow, count_imb, intensity, vwap_dev

    def get_state(self) -> dict[str, Any]:
        """Return the state as plain python values (copies)."""
        acc = [list(a) for a in self._acc]
        return {"n": self.n, "t": self.t, "last_price": self.last_price, "acc": acc}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state` of trade windows with the same time constants."""
        self._acc = _floats(state["acc"], 5, len(self.windows_ms))
        self.n, self.t = int(state["n"]), int(state["t"])
        self.last_price = float(state["last_price"])


class MidChanges:
    """EW sums of the mid's log changes (bps) over several time constants.

    Per time constant it keeps ``[sum dx, sum dx^2, sum |dx|]``, where ``dx`` is the change of
    ``1e4 * log(mid)`` at each mid update after the first.

    Parameters
    ----------
    taus_ms : sequence of int
        Time constants, ms.

    Examples
    --------
    >>> mc = MidChanges((1000,))
    >>> for t, mid in [(0, 100.0), (500, 100.01), (1000, 100.0)]:
    ...     mc.add(t, mid)
    >>> [round(v, 3) for v in mc.sums(0, 1000)]  # sum dx, sum dx^2, sum |dx|
    [-0.393, 1.606, 1.606]
    """

    def __init__(self, taus_ms: Sequence[int]) -> None:
        self.taus_ms = check_windows("taus_ms", taus_ms)
        self.mid = 0.0  # last mid (0: none yet)
        self.log_mid = 0.0
        self.t = 0  # event time of the last mid change, ms
        self._acc = [[0.0] * 3 for _ in self.taus_ms]

    def add(self, t: int, mid: float) -> None:
        """Record the mid ``0 < mid < inf`` at event time ``t`` (>= the last one)."""
        if mid == self.mid:
            return
        log_mid = math.log(mid)
        if self.mid:
            dx = (log_mid - self.log_mid) * _BPS
            dx2 = dx * dx
            adx = abs(dx)
            dt = t - self.t
            if dt:
                exp = math.exp
                for tau, a in zip(self.taus_ms, self._acc, strict=True):
                    d = exp(-dt / tau)
                    a[0] = a[0] * d + dx
                    a[1] = a[1] * d + dx2
                    a[2] = a[2] * d + adx
            else:
                for a in self._acc:
                    a[0] += dx
                    a[1] += dx2
                    a[2] += adx
        self.mid = mid
        self.log_mid = log_mid
        self.t = t

    def sums(self, k: int, t_ms: int) -> tuple[float, float, float]:
        """EW sum dx, sum dx^2, sum |dx| (bps units) of time constant ``taus_ms[k]`` at ``t_ms``."""
        a = self._acc[k]
        d = math.exp(-max(t_ms - self.t, 0) / self.taus_ms[k])
        return a[0] * d, a[1] * d, a[2] * d

    def ret(self, k: int, t_ms: int) -> float:
        """EW sum of log changes in bps: log mid minus its continuous-time EMA."""
        return self.sums(k, t_ms)[0]

    def vol(self, k: int, t_ms: int) -> float:
        """sqrt(EW sum dx^2 / tau in s): realised volatility in bps per sqrt(second)."""
        return math.sqrt(self.sums(k, t_ms)[1] * 1000.0 / self.taus_ms[k])

    def rsi(self, k: int, t_ms: int) -> float:
        """EW sum dx / EW sum |dx| = (RSI - 50) / 50, in [-1, 1]; 0 when the sum is ~0."""
        s, _, a = self.sums(k, t_ms)
        return s / a if a > _EPS else 0.0

    def read(
        self, t_ms: int, vol_idx: Sequence[int], ret_idx: Sequence[int], rsi_idx: int
    ) -> tuple[list[float], list[float], float]:
        """:meth:`vol` of each ``vol_idx``, :meth:`ret` of each ``ret_idx`` and :meth:`rsi` of
        ``rsi_idx`` at ``t_ms``, with one ``math.exp`` per time constant (same values)."""
        dt = max(t_ms - self.t, 0)
        exp, sqrt = math.exp, math.sqrt
        taus = self.taus_ms
        acc = self._acc
        d = [0.0] * len(taus)  # plain loops: comprehensions cost a frame each
        for k, tau in enumerate(taus):
            d[k] = exp(-dt / tau)
        vol = []
        for k in vol_idx:
            vol.append(sqrt(acc[k][1] * d[k] * 1000.0 / taus[k]))
        ret = []
        for k in ret_idx:
            ret.append(acc[k][0] * d[k])
        a = acc[rsi_idx]
        s, m = a[0] * d[rsi_idx], a[2] * d[rsi_idx]
        return vol, ret, (s / m if m > _EPS else 0.0)

    def get_state(self) -> dict[str, Any]:
        """Return the state as plain python values (copies)."""
        acc = [list(a) for a in self._acc]
        return {"mid": self.mid, "log_mid": self.log_mid, "t": self.t, "acc": acc}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state` of mid changes with the same time constants."""
        self._acc = _floats(state["acc"], 3, len(self.taus_ms))
        self.mid, self.log_mid = float(state["mid"]), float(state["log_mid"])
        self.t = int(state["t"])
