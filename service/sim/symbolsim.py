"""The event loop of one synthetic symbol: Hawkes trades, clustered volatility, quotes.

Each symbol is simulated in continuous event time (ms):

- **Quotes** arrive as a Poisson process (``quote_rate`` per second). At each quote the mid moves
  on the tick grid by the drift accrued since the previous quote plus a Gaussian increment
  (geometric, rounded stochastically to the half-tick lattice, so ``E[log mid]`` is exact), the
  spread is redrawn (mostly one tick, wider when volatile), and the sizes are redrawn: total
  depth lognormal, split by the book imbalance ``I = tanh(z)``, ``z`` an AR(1) process per quote.
  Sizes are rounded to the lot size.
- **Trades** arrive as a Hawkes process (exponential kernel; bursts), at the prevailing bid or
  ask according to the aggressor side, whose mix leans towards the heavy side of the book
  (``P(buy) = (1 + SIDE_RESPONSE I) / 2``); sizes are lognormal (heavy-tailed), rounded to lots.
- **Volatility** clusters: its log follows an Ornstein-Uhlenbeck process (minutes); the trade
  rate and the spread follow it.
- **The planted effect**: the latent log-price drifts at
  :func:`tickcast.service.sim.oracle.drift_rate` of the book imbalance and the 5 s trade flow,
  observables the features compute exactly; every event appends the state the oracle needs
  to the symbol's :class:`~tickcast.service.sim.oracle.History`.

:class:`tickcast.service.sim.market.SyntheticMarket` runs one :class:`SymbolSim` per symbol and
merges their ticks in event time.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator

import numpy as np

from tickcast.service.sim.oracle import (
    FLOW_WINDOW_MS,
    IMBALANCE_SCALE,
    SIDE_RESPONSE,
    History,
    drift_rate,
)
from tickcast.service.sim.symbols import SymbolSpec, step_decimals
from tickcast.service.ticks import QUOTE, TRADE, Tick

__all__ = ["SIZE_DISPERSION", "SymbolSim"]

HAWKES_BRANCHING = 0.65
"""Mean number of trades each trade triggers (burstiness)."""
HAWKES_DECAY = 3.0
"""Decay rate of a trade's excitation, per second."""
VOL_TAU_S = 300.0
"""Time constant of the log-volatility process, seconds."""
VOL_OF_VOL = 0.4
"""Stationary standard deviation of log-volatility."""
SPREAD_WIDEN = 0.12
"""Probability of each extra tick of spread at the typical volatility (scales with it)."""
MAX_SPREAD_TICKS = 8
DEPTH_DISPERSION = 0.5
"""Lognormal sigma of the total top-of-book size."""
SIZE_DISPERSION = 1.2
"""Lognormal sigma of trade sizes (heavy tail: mean is about twice the median)."""
LATENCY_MIN_NS = 300_000
LATENCY_MEAN_NS = 1_200_000


def _uniforms(rng: np.random.Generator) -> Iterator[float]:
    """Endless uniforms on (0, 1], drawn from ``rng`` in batches."""
    while True:
        yield from (1.0 - rng.random(4096)).tolist()


def _normals(rng: np.random.Generator) -> Iterator[float]:
    """Endless standard normals, drawn from ``rng`` in batches."""
    while True:
        yield from rng.standard_normal(4096).tolist()


_new_tick = tuple.__new__


class SymbolSim:
    """The event loop of one symbol; see the module docstring for the dynamics.

    Parameters
    ----------
    spec : SymbolSpec
        The simulated symbol.
    venue : str
        Venue id put on every tick.
    start_ms : int
        Event time of the first quote, ms since the Unix epoch.
    seed : int
        Market seed; the random stream is derived from it and the symbol name, so the ticks do
        not depend on which other symbols are simulated.
    history : History or None
        Filled with the oracle's state rows after every event; ``None`` keeps none.
    first_trade_id : int
        The id of the symbol's first trade; the next ones follow consecutively.

    Examples
    --------
    >>> from tickcast.service.sim.symbols import DEFAULT_SYMBOLS
    >>> sim = SymbolSim(DEFAULT_SYMBOLS[0], "sim", 1_000, seed=1, history=None)
    >>> ticks = sim.run(2_000.0)
    >>> ticks[0].kind, ticks[0].event_ms, all(t.event_ms < 2_000 for t in ticks)
    ('quote', 1000, True)
    >>> sim.run(2_000.0)  # already generated up to there
    []
    """

    def __init__(
        self,
        spec: SymbolSpec,
        venue: str,
        start_ms: int,
        seed: int,
        history: History | None,
        first_trade_id: int = 1,
    ) -> None:
        self.spec = spec
        self.venue = venue
        self.history = history
        rng = np.random.default_rng([seed, zlib.crc32(spec.symbol.encode())])
        self.uniform = _uniforms(rng)
        self.normal = _normals(rng)
        self.price_dp = step_decimals(spec.tick_size)
        self.size_dp = step_decimals(spec.lot_size)
        self.sigma_bar = spec.volatility_bps * 1e-4
        self.log_sigma_bar = math.log(self.sigma_bar)
        self.log_sigma = self.log_sigma_bar + VOL_OF_VOL * next(self.normal)
        self.sigma = math.exp(self.log_sigma)
        self.phi = spec.imbalance_phi
        self.z_noise = IMBALANCE_SCALE * math.sqrt(1.0 - self.phi**2)
        self.depth_lots = spec.depth / spec.lot_size
        self.size_lots = spec.trade_size / spec.lot_size
        self.base_rate = spec.trade_rate * (1.0 - HAWKES_BRANCHING) / math.exp(0.5 * VOL_OF_VOL**2)
        self.jump = HAWKES_BRANCHING * HAWKES_DECAY
        # book: mid in half ticks, with mid2 - spread even so that the bid is on the grid
        self.spread = 1
        self.mid2 = round(2.0 * spec.price / spec.tick_size)
        if (self.mid2 - self.spread) % 2:
            self.mid2 += 1
        self.bid = self.ask = 0.0
        self.z = IMBALANCE_SCALE * next(self.normal)
        self.imbalance = math.tanh(self.z)  # of the latest quote; z restarts from its atanh
        # trade flow accumulators, exactly as the features compute them
        self.flow_num = self.flow_den = self.flow = 0.0
        self.last_trade_ms = start_ms
        # planted drift: accrued since the last quote, and its current rate per second
        self.acc = self.mu = 0.0
        self.last_t = self.last_quote_t = float(start_ms)
        self.next_quote = float(start_ms)
        self.excess = 0.0
        self.last_trade_t = float(start_ms)
        self.next_trade = start_ms + 1000.0 * self._trade_gap_s()
        self.trade_id = first_trade_id - 1
        self.update_id = 1000

    def _trade_gap_s(self) -> float:
        """Seconds to the next trade of the Hawkes process.

        Exact simulation for an exponential kernel (Dassios & Zhao, 2013, Electron. Commun.
        Probab. 18(62)); the baseline rate follows the volatility as it is when the gap is drawn.
        """
        base = self.base_rate * self.sigma / self.sigma_bar
        gap = -math.log(next(self.uniform)) / base
        u = next(self.uniform)
        if self.excess > 0.0:
            dd = 1.0 + HAWKES_DECAY * math.log(u) / self.excess
            if dd > 0.0:
                gap = min(gap, -math.log(dd) / HAWKES_DECAY)
        return gap

    def _move_mid(self, x: float, spread: int) -> None:
        """Move the mid by ``expm1(x)`` relatively, stochastically rounded to the grid."""
        parity = (spread - self.spread) & 1
        y = 0.5 * (math.expm1(x) * self.mid2 - parity)
        floor = math.floor(y)
        step = floor + (1 if next(self.uniform) < y - floor else 0)
        self.mid2 += parity + 2 * step
        self.spread = spread
        if self.mid2 - spread < 2:  # keep the bid at least one tick above zero
            self.mid2 = spread + 2

    def _quote(self, t: float) -> Tick:
        """Quote at ``t`` (ms): move the mid and volatility, redraw spread and sizes."""
        normal, uniform = self.normal, self.uniform
        self.acc += self.mu * (t - self.last_t) * 0.001
        gap = (t - self.last_quote_t) * 0.001
        x = self.acc + self.sigma * math.sqrt(gap) * next(normal)
        decay = math.exp(-gap / VOL_TAU_S)
        bar = self.log_sigma_bar
        log_sigma = self.log_sigma = (
            bar
            + (self.log_sigma - bar) * decay
            + VOL_OF_VOL * math.sqrt(1.0 - decay * decay) * next(normal)
        )
        sigma = self.sigma = math.exp(log_sigma)
        widen = min(0.9, SPREAD_WIDEN * sigma / self.sigma_bar)
        spread = 1
        u = next(uniform)
        while u < widen and spread < MAX_SPREAD_TICKS:
            spread += 1
            u /= widen
        self._move_mid(x, spread)
        lean = math.tanh(self.phi * self.z + self.z_noise * next(normal))
        depth = self.depth_lots * math.exp(DEPTH_DISPERSION * next(normal))
        bid_lots = max(1, int(0.5 * depth * (1.0 + lean) + 0.5))
        ask_lots = max(1, int(0.5 * depth * (1.0 - lean) + 0.5))
        imbalance = self.imbalance = (bid_lots - ask_lots) / (bid_lots + ask_lots)
        z = self.z = math.atanh(imbalance)
        spec = self.spec
        tick, lot, price_dp, size_dp = spec.tick_size, spec.lot_size, self.price_dp, self.size_dp
        bid_ticks = (self.mid2 - spread) // 2
        bid = self.bid = round(bid_ticks * tick, price_dp)
        ask = self.ask = round((bid_ticks + spread) * tick, price_dp)
        self.update_id += 1 + int(-3.0 * math.log(next(uniform)))
        self.acc = 0.0
        self.last_t = self.last_quote_t = t
        mu = self.mu = drift_rate(sigma, spec.effect, imbalance, self.flow)
        if self.history is not None:
            self.history.rows.append((t, 0.0, mu, z, self.flow, self.flow_den, sigma))
        self.next_quote = t - 1000.0 * math.log(next(uniform)) / spec.quote_rate
        ms = int(t)
        recv = ms * 1_000_000 + LATENCY_MIN_NS - int(LATENCY_MEAN_NS * math.log(next(uniform)))
        return _new_tick(
            Tick,
            (
                self.venue,
                spec.symbol,
                QUOTE,
                ms,
                recv,
                0.0,
                0.0,
                0,
                "",
                bid,
                round(bid_lots * lot, size_dp),
                ask,
                round(ask_lots * lot, size_dp),
                self.update_id,
            ),
        )

    def _trade(self, t: float) -> Tick:
        """Trade at ``t`` (ms) at the touch; update the flow, drift and Hawkes excitation."""
        uniform = self.uniform
        acc = self.acc = self.acc + self.mu * (t - self.last_t) * 0.001
        self.last_t = t
        side = 1 if next(uniform) < 0.5 * (1.0 + SIDE_RESPONSE * self.imbalance) else -1
        lots = max(1, int(self.size_lots * math.exp(SIZE_DISPERSION * next(self.normal)) + 0.5))
        size = round(lots * self.spec.lot_size, self.size_dp)
        ms = int(t)
        if ms != self.last_trade_ms:
            decay = math.exp((self.last_trade_ms - ms) / FLOW_WINDOW_MS)
            self.flow_num *= decay
            self.flow_den *= decay
            self.last_trade_ms = ms
        self.flow_num += side * size
        self.flow_den += size
        flow = self.flow = self.flow_num / self.flow_den if self.flow_den > 1e-12 else 0.0
        mu = self.mu = drift_rate(self.sigma, self.spec.effect, self.imbalance, flow)
        if self.history is not None:
            self.history.rows.append((t, acc, mu, self.z, flow, self.flow_den, self.sigma))
        self.excess = (
            self.excess * math.exp(-HAWKES_DECAY * (t - self.last_trade_t) * 0.001) + self.jump
        )
        self.last_trade_t = t
        self.next_trade = t + 1000.0 * self._trade_gap_s()
        self.trade_id += 1
        recv = ms * 1_000_000 + LATENCY_MIN_NS - int(LATENCY_MEAN_NS * math.log(next(uniform)))
        return _new_tick(
            Tick,
            (
                self.venue,
                self.spec.symbol,
                TRADE,
                ms,
                recv,
                self.ask if side > 0 else self.bid,
                size,
                side,
                str(self.trade_id),
                0.0,
                0.0,
                0.0,
                0.0,
                0,
            ),
        )

    def run(self, until_ms: float) -> list[Tick]:
        """Generate every event with time < ``until_ms``, in time order (quotes first on ties)."""
        out: list[Tick] = []
        append = out.append
        while True:
            if self.next_quote <= self.next_trade:
                if self.next_quote >= until_ms:
                    break
                append(self._quote(self.next_quote))
            else:
                if self.next_trade >= until_ms:
                    break
                append(self._trade(self.next_trade))
        if self.history is not None:
            self.history.seal(until_ms)
        return out
