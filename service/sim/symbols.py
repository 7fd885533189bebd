"""Parameters of the simulated symbols: :class:`SymbolSpec` and the default three.

Each symbol has its own price level, tick and lot sizes, volatility, trade and quote rates,
top-of-book depth, trade size and strength of the planted effect; see
:mod:`tickcast.service.sim.symbolsim` for the dynamics they drive.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from tickcast.service import TickcastError

__all__ = ["DEFAULT_SYMBOLS", "MarketError", "SymbolSpec", "specs_for", "step_decimals"]


class MarketError(TickcastError):
    """Invalid market or symbol parameters."""


def step_decimals(step: float) -> int:
    """Number of decimals of a step size such as 0.01 -> 2."""
    exponent = Decimal(repr(step)).normalize().as_tuple().exponent
    return max(0, -int(exponent))


@dataclass(frozen=True)
class SymbolSpec:
    """Parameters of one simulated symbol.

    Attributes
    ----------
    symbol : str
        ccxt unified symbol, e.g. ``"BTC/USDT:USDT"``.
    price : float
        Start price (quote currency).
    tick_size, lot_size : float
        Price and size increments.
    volatility_bps : float
        Typical volatility of the random-walk part of the log mid, bps per square-root second
        (the 1-second standard deviation of the mid is somewhat larger: the planted drift and
        the volatility clustering add to it).
    trade_rate : float
        Mean trades per second.
    quote_rate : float
        Top-of-book updates per second.
    depth : float
        Median total top-of-book size (bid + ask), base units.
    trade_size : float
        Median trade size, base units.
    effect : float
        Strength ``a`` of the planted drift, in volatility units per second.
    imbalance_tau_s : float
        Time constant of the book-imbalance process, seconds.
    """

    symbol: str
    price: float
    tick_size: float
    lot_size: float
    volatility_bps: float
    trade_rate: float
    quote_rate: float
    depth: float
    trade_size: float
    effect: float = 1.0
    imbalance_tau_s: float = 3.0

    def __post_init__(self) -> None:
        positive = "price tick_size lot_size volatility_bps trade_rate quote_rate depth trade_size"
        for name in [*positive.split(), "imbalance_tau_s"]:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise MarketError(f"{self.symbol}: {name} must be finite and positive")
        if not (math.isfinite(self.effect) and self.effect >= 0.0):
            raise MarketError(f"{self.symbol}: effect must be finite and non-negative")
        if self.price < 10.0 * self.tick_size:
            raise MarketError(f"{self.symbol}: price must be at least ten ticks")

    @property
    def imbalance_phi(self) -> float:
        """AR(1) coefficient of ``z = atanh(I)`` per quote."""
        return math.exp(-1.0 / (self.quote_rate * self.imbalance_tau_s))


DEFAULT_SYMBOLS: tuple[SymbolSpec, ...] = (
    SymbolSpec(
        symbol="BTC/USDT:USDT",
        price=60_000.0,
        tick_size=0.1,
        lot_size=0.001,
        volatility_bps=1.0,
        trade_rate=12.0,
        quote_rate=10.0,
        depth=6.0,
        trade_size=0.01,
        effect=1.1,
        imbalance_tau_s=3.0,
    ),
    SymbolSpec(
        symbol="ETH/USDT:USDT",
        price=3_000.0,
        tick_size=0.01,
        lot_size=0.001,
        volatility_bps=1.3,
        trade_rate=10.0,
        quote_rate=8.0,
        depth=60.0,
        trade_size=0.15,
        effect=1.0,
        imbalance_tau_s=4.0,
    ),
    SymbolSpec(
        symbol="SOL/USDT:USDT",
        price=150.0,
        tick_size=0.01,
        lot_size=1.0,
        volatility_bps=2.5,
        trade_rate=8.0,
        quote_rate=7.0,
        depth=1_500.0,
        trade_size=4.0,
        effect=1.2,
        imbalance_tau_s=2.5,
    ),
)


def specs_for(symbols: Sequence[str], rate_scale: float = 1.0) -> list[SymbolSpec]:
    """Specs for ``symbols``: the default spec where there is one, else a renamed copy of one.

    Trade and quote rates are multiplied by ``rate_scale`` (benchmarks speed the market up).
    """
    known = {spec.symbol: spec for spec in DEFAULT_SYMBOLS}
    specs = []
    for i, symbol in enumerate(symbols):
        spec = known.get(symbol)
        if spec is None:
            base = DEFAULT_SYMBOLS[i % len(DEFAULT_SYMBOLS)]
            spec = dataclasses.replace(base, symbol=symbol)
        if rate_scale != 1.0:
            spec = dataclasses.replace(
                spec,
                trade_rate=spec.trade_rate * rate_scale,
                quote_rate=spec.quote_rate * rate_scale,
            )
        specs.append(spec)
    return specs
