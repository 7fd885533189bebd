"""Per-symbol streaming features in O(1) per tick, on event time.

Every window is exponentially weighted in event time: an accumulator ``A`` with time constant
``tau`` decays as ``A <- A * exp(-(t - t_prev) / tau)`` before a contribution at ``t`` is added,
so that ``A(t) = sum_i c_i * exp(-(t - t_i) / tau)`` over the contributions so far.
:meth:`StreamingFeatures.update` only moves accumulators (a few float operations and at most
one ``math.exp`` per window); :meth:`StreamingFeatures.vector` decays them to the sample time,
without changing them, and builds the feature vector.

Features (``w`` = a window of ``windows_ms``, ``r`` = one of ``return_windows_ms``; ``dx_i`` =
change of the log mid at quote ``i``, in bps; "bps" = 1e-4):

======================== ====================================================================
name                     definition
======================== ====================================================================
``book_imbalance``       (bid_size - ask_size) / (bid_size + ask_size) of the latest quote
``microprice_dev``       (microprice - mid) / mid in bps
``spread``               (ask - bid) / mid in bps
``trade_flow_w``         EW sum(side * size) / EW sum(size), in [-1, 1]
``trade_count_imb_w``    EW sum(side) / EW sum(1), in [-1, 1]
``trade_intensity_w``    log1p(EW trade count / (w in s)): log1p of trades per second
``realised_vol_w``       sqrt(EW sum(dx_i^2) / (w in s)): bps per sqrt(second)
``vwap_dev_w``           log(reference price / EW VWAP) in bps, EW VWAP = EW sum(price * size)
                         / EW sum(size)
``return_r``             EW sum(dx_i) with time constant r, in bps
``rsi``                  EW sum(dx_i) / EW sum(abs(dx_i)) = (RSI - 50) / 50, in [-1, 1]
``time_since_trade``     log1p(seconds since the last trade)
``time_since_quote``     log1p(seconds since the last quote)
======================== ====================================================================

``return_r`` is the log mid minus its continuous-time exponential moving average with time
constant ``r`` (the mid held constant between quotes): that difference equals the EW sum of
the mid's log changes, which is how it is kept in O(1). The RSI is Wilder-like on event time:
up moves over the sum of absolute moves, both EW with ``rsi_window_ms``.

Finite in, finite out: for any finite tick values every feature is finite, whatever the
magnitudes (a price of 1e308 or 1e-300 included). Mids and book imbalances are computed from
halves when a sum would overflow, the VWAP deviation from a sum of logs when its ratio would
under- or overflow, and a trade that would overflow the EW sums is refused (:attr:`n_invalid`);
ordinary values take the direct formulas, bit for bit. The features then range within the
floats' own bounds: a log change of the mid stays below 1.5e7 bps in magnitude, the VWAP
deviation below 2.2e7 bps, the spread within [0, 2e4] bps.

Neutral values before data: every feature is 0 until the data it needs has arrived; a ratio
is 0 when its EW denominator is ~0 (trade ratios and the VWAP deviation: an EW trade count
below ``1e-9``, i.e. no trade in the last ~20 windows; the RSI: an EW sum of absolute moves
below ``1e-9`` bps). "Time since" counts from the first tick of any kind when no tick of that
kind has been seen yet (0 before any tick). Features read at sample time ``t`` reflect the
ticks fed so far: to keep ticks at or after ``t`` out, read before feeding them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from .ewm import EWError, MidChanges, TradeWindows, check_windows

__all__ = ["BOUNDED_FEATURES", "FeaturesError", "StreamingFeatures", "TickLike"]

#: Name prefixes of the features bounded by construction, in [-1, 1] (see the table).
BOUNDED_FEATURES: tuple[str, ...] = ("book_imbalance", "trade_flow_", "trade_count_imb_", "rsi")

_TRADE = "trade"
_QUOTE = "quote"
_BPS = 1e4
_INF = math.inf
_STATE_VERSION = 1


def _plain(value: Any) -> Any:
    """A tuple as a list, anything else unchanged (states may come back with tuples)."""
    return list(value) if isinstance(value, tuple) else value


class FeaturesError(EWError):
    """Invalid feature hyperparameters, output buffer or state dict."""


class TickLike(Protocol):
    """The tick attributes the features read (``tickcast.service.ticks.Tick`` has them)."""

    @property
    def kind(self) -> str: ...
    @property
    def event_ms(self) -> int: ...
    @property
    def price(self) -> float: ...
    @property
    def size(self) -> float: ...
    @property
    def side(self) -> int: ...
    @property
    def bid(self) -> float: ...
    @property
    def bid_size(self) -> float: ...
    @property
    def ask(self) -> float: ...
    @property
    def ask_size(self) -> float: ...


class StreamingFeatures:
    """Streaming market features of one symbol; see the module docstring for the definitions.

    Parameters
    ----------
    windows_ms : sequence of int
        EW time constants (ms) of the trade flow, trade count imbalance, trade intensity,
        realised volatility and VWAP deviation features.
    return_windows_ms : sequence of int, optional
        Time constants (ms) of the ``return_r`` features; default ``windows_ms``.
    rsi_window_ms : int
        Time constant (ms) of the RSI.

    Attributes
    ----------
    names : tuple of str
        Feature names, in vector order.
    n_features : int
        Length of :meth:`vector`.
    n_stale : int
        Ticks skipped because older than the last accepted tick of their kind.
    n_invalid : int
        Ticks skipped because of an unknown kind, a non-finite / non-positive price or size,
        a crossed book, or a trade whose size or notional (price * size) would overflow the
        EW sums (only possible near the float limit, 1.8e308).

    Examples
    --------
    >>> from types import SimpleNamespace as T
    >>> f = StreamingFeatures(windows_ms=(1000,))
    >>> f.update(T(kind="quote", event_ms=1000, bid=99.0, bid_size=3.0, ask=101.0, ask_size=1.0))
    True
    >>> f.update(T(kind="trade", event_ms=1500, price=101.0, size=2.0, side=1))
    True
    >>> f.update(T(kind="trade", event_ms=1400, price=101.0, size=2.0, side=-1))  # stale
    False
    >>> x = f.vector(2000)
    >>> dict(zip(f.names, x.round(3).tolist()))  # doctest: +NORMALIZE_WHITESPACE
    {'book_imbalance': 0.5, 'microprice_dev': 50.0, 'spread': 200.0, 'trade_flow_1000': 1.0,
     'trade_count_imb_1000': 1.0, 'trade_intensity_1000': 0.474, 'realised_vol_1000': 0.0,
     'vwap_dev_1000': -99.503, 'return_1000': 0.0, 'rsi': 0.0, 'time_since_trade': 0.405,
     'time_since_quote': 0.693}
    >>> f.reference_price, f.mid, f.microprice, f.n_stale, f.last_event_ms
    (100.0, 100.0, 100.5, 1, 1500)
    """

    def __init__(
        self,
        windows_ms: Sequence[int] = (1000, 5000, 30000),
        *,
        return_windows_ms: Sequence[int] | None = None,
        rsi_window_ms: int = 10000,
    ) -> None:
        try:
            self.windows_ms = check_windows("windows_ms", windows_ms)
            self.return_windows_ms = check_windows(
                "return_windows_ms",
                self.windows_ms if return_windows_ms is None else return_windows_ms,
            )
            self.rsi_window_ms = check_windows("rsi_window_ms", (rsi_window_ms,))[0]
        except EWError as exc:
            raise FeaturesError(str(exc)) from exc
        # Mid changes are accumulated once per distinct time constant.
        taus = tuple(sorted({*self.windows_ms, *self.return_windows_ms, self.rsi_window_ms}))
        self._vol_idx = tuple(taus.index(w) for w in self.windows_ms)
        self._ret_idx = tuple(taus.index(w) for w in self.return_windows_ms)
        self._rsi_idx = taus.index(self.rsi_window_ms)
        self.names: tuple[str, ...] = (
            "book_imbalance",
            "microprice_dev",
            "spread",
            *(f"trade_flow_{w}" for w in self.windows_ms),
            *(f"trade_count_imb_{w}" for w in self.windows_ms),
            *(f"trade_intensity_{w}" for w in self.windows_ms),
            *(f"realised_vol_{w}" for w in self.windows_ms),
            *(f"vwap_dev_{w}" for w in self.windows_ms),
            *(f"return_{w}" for w in self.return_windows_ms),
            "rsi",
            "time_since_trade",
            "time_since_quote",
        )
        self.n_features = len(self.names)
        self.n_stale = 0
        self.n_invalid = 0
        self._t_first = 0  # event time of the first accepted tick (0: none)
        self._t_last = 0  # newest accepted event time, any kind
        self._trades = TradeWindows(self.windows_ms)
        self._mids = MidChanges(taus)
        self._n_quotes = 0
        self._t_quote = 0
        self._bid = self._bid_size = self._ask = self._ask_size = 0.0

    # -- per tick -------------------------------------------------------------------------------

    def update(self, tick: TickLike) -> bool:
        """Apply one tick; return False when it is skipped (stale or invalid), else True.

        A trade older (event time) than the last trade, or a quote older than the last quote,
        is stale: skipped and counted in :attr:`n_stale`. Equal event times are accepted.
        """
        kind = tick.kind
        if kind == _QUOTE:
            return self._update_quote(
                tick.event_ms, tick.bid, tick.bid_size, tick.ask, tick.ask_size
            )
        if kind == _TRADE:
            return self._update_trade(tick.event_ms, tick.price, tick.size, tick.side)
        self.n_invalid += 1
        return False

    def _update_trade(self, t: int, price: float, size: float, side: int) -> bool:
        if t < self._trades.t:
            self.n_stale += 1
            return False
        if not (0.0 < price < _INF and 0.0 <= size < _INF) or not self._trades.add(
            t, price, size, 1.0 if side > 0 else -1.0
        ):
            self.n_invalid += 1
            return False
        if t > self._t_last:
            self._t_last = t
            if not self._t_first:
                self._t_first = t
        return True

    def _update_quote(
        self, t: int, bid: float, bid_size: float, ask: float, ask_size: float
    ) -> bool:
        if t < self._t_quote:
            self.n_stale += 1
            return False
        if not (0.0 < bid <= ask < _INF and 0.0 <= bid_size < _INF and 0.0 <= ask_size < _INF):
            self.n_invalid += 1
            return False
        if t > self._t_last:
            self._t_last = t
            if not self._t_first:
                self._t_first = t
        self._n_quotes += 1
        self._t_quote = t
        self._bid = bid
        self._bid_size = bid_size
        self._ask = ask
        self._ask_size = ask_size
        mid = (bid + ask) * 0.5
        if mid == _INF:  # prices near the float limit: the same mid from halves
            mid = 0.5 * bid + 0.5 * ask
        self._mids.add(t, mid)
        return True

    # -- at sample time -------------------------------------------------------------------------

    def vector(self, t_ms: int, out: np.ndarray | None = None) -> np.ndarray:
        """Return the features as of event time ``t_ms``; the state is not changed.

        EW windows are decayed to ``t_ms`` and "time since" is measured to ``t_ms`` (a ``t_ms``
        before the newest tick of a kind counts as that tick's time).

        Parameters
        ----------
        t_ms : int
            Event time of the sample, ms.
        out : ndarray of shape (n_features,), float64, optional
            Filled and returned when given.

        Returns
        -------
        ndarray of shape (n_features,), float64
            Finite values in :attr:`names` order.
        """
        values = self.values(t_ms)
        if out is None:
            return np.array(values, dtype=np.float64)
        if out.shape != (self.n_features,):
            raise FeaturesError(f"out must have shape ({self.n_features},), got {out.shape}")
        out[:] = values
        return out

    def values(self, t_ms: int) -> list[float]:
        """The features as of event time ``t_ms`` as a list of floats (:meth:`vector`'s
        values, without building an array); the state is not changed."""
        trades = self._trades
        flow, count_imb, intensity, vwap_dev = trades.columns(t_ms, self.reference_price)
        vol, ret, rsi = self._mids.read(t_ms, self._vol_idx, self._ret_idx, self._rsi_idx)
        return [
            *self._book_values(),
            *flow,
            *count_imb,
            *intensity,
            *vol,
            *vwap_dev,
            *ret,
            rsi,
            self._since(t_ms, trades.t if trades.n else self._t_first),
            self._since(t_ms, self._t_quote if self._n_quotes else self._t_first),
        ]

    def _book_values(self) -> tuple[float, float, float]:
        """book_imbalance, microprice_dev (bps) and spread (bps) of the latest quote."""
        if not self._n_quotes:
            return 0.0, 0.0, 0.0
        bid_size, ask_size = self._bid_size, self._ask_size
        depth = bid_size + ask_size
        if depth == _INF:  # sizes near the float limit: the same ratio from halves
            bid_size, ask_size = 0.5 * bid_size, 0.5 * ask_size
            depth = bid_size + ask_size
        imbalance = (bid_size - ask_size) / depth if depth > 0.0 else 0.0
        spread = (self._ask - self._bid) / self._mids.mid * _BPS  # in [0, 2e4]: bid > 0
        return imbalance, 0.5 * spread * imbalance, spread

    @staticmethod
    def _since(t_ms: int, t_event: int) -> float:
        """log1p of the seconds from ``t_event`` to ``t_ms`` (0 when ``t_event`` is 0)."""
        if not t_event:
            return 0.0
        return math.log1p(max(t_ms - t_event, 0) / 1000.0)

    # -- levels ---------------------------------------------------------------------------------

    @property
    def mid(self) -> float:
        """Mid price of the latest quote, nan before any quote."""
        return self._mids.mid if self._n_quotes else math.nan

    @property
    def microprice(self) -> float:
        """Size-weighted mid of the latest quote, nan before any quote."""
        if not self._n_quotes:
            return math.nan
        depth = self._bid_size + self._ask_size
        if depth <= 0.0:
            return self._mids.mid
        micro = (self._bid * self._ask_size + self._ask * self._bid_size) / depth
        if micro < _INF:
            return micro
        # products near the float limit: mid + half spread * imbalance, the same value
        imbalance = self._book_values()[0]
        return self._mids.mid + 0.5 * (self._ask - self._bid) * imbalance

    @property
    def reference_price(self) -> float:
        """Mid if any quote was seen, else the last trade price, else nan."""
        if self._n_quotes:
            return self._mids.mid
        if self._trades.n:
            return self._trades.last_price
        return math.nan

    @property
    def last_event_ms(self) -> int:
        """Newest event time accepted (any kind), 0 before any tick."""
        return self._t_last

    # -- persistence ----------------------------------------------------------------------------

    def _hyperparameters(self) -> dict[str, Any]:
        return {
            "windows_ms": list(self.windows_ms),
            "return_windows_ms": list(self.return_windows_ms),
            "rsi_window_ms": self.rsi_window_ms,
        }

    def state_dict(self) -> dict[str, Any]:
        """Return the hyperparameters and the whole state as plain python values (copies)."""
        book = [self._bid, self._bid_size, self._ask, self._ask_size]
        return {
            "version": _STATE_VERSION,
            **self._hyperparameters(),
            "n_stale": self.n_stale,
            "n_invalid": self.n_invalid,
            "t_first": self._t_first,
            "t_last": self._t_last,
            "n_quotes": self._n_quotes,
            "t_quote": self._t_quote,
            "book": book,
            "trades": self._trades.get_state(),
            "mids": self._mids.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` of features with the same hyperparameters.

        Raises
        ------
        FeaturesError
            When the version, hyperparameters, keys or shapes do not match; the features are
            then left unchanged.
        """
        if state.get("version") != _STATE_VERSION:
            raise FeaturesError(f"unsupported features state version {state.get('version')!r}")
        theirs = {k: _plain(state.get(k)) for k in self._hyperparameters()}
        if theirs != self._hyperparameters():
            raise FeaturesError(f"state hyperparameters {theirs} != {self._hyperparameters()}")
        trades = TradeWindows(self.windows_ms)
        mids = MidChanges(self._mids.taus_ms)
        try:
            trades.set_state(state["trades"])
            mids.set_state(state["mids"])
            ints = [int(state[k]) for k in ("n_stale", "n_invalid", "t_first", "t_last")]
            n_quotes, t_quote = int(state["n_quotes"]), int(state["t_quote"])
            bid, bid_size, ask, ask_size = (float(v) for v in state["book"])
        except (KeyError, TypeError, ValueError) as exc:
            raise FeaturesError(f"malformed features state: {exc!r}") from exc
        self.n_stale, self.n_invalid, self._t_first, self._t_last = ints
        self._n_quotes, self._t_quote = n_quotes, t_quote
        self._bid, self._bid_size, self._ask, self._ask_size = bid, bid_size, ask, ask_size
        self._trades, self._mids = trades, mids
