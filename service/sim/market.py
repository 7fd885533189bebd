"""A seeded synthetic market: trades and top-of-book quotes with a planted, learnable effect.

Each symbol is simulated in continuous event time by its own
:class:`~tickcast.service.sim.symbolsim.SymbolSim` (see :mod:`tickcast.service.sim.symbolsim`
for the dynamics: Poisson quotes, Hawkes trades, clustered volatility). The latent log-price
drifts at :func:`tickcast.service.sim.oracle.drift_rate` of the book imbalance and the 5 s
trade flow, observables the features compute exactly; :class:`~tickcast.service.sim.oracle.Oracle`
knows the model and gives the Bayes-optimal expected return.

Symbols are generated in blocks of :data:`BLOCK_MS` and merged in event-time order (ties keep
symbol order, then generation order). Each symbol has its own random stream derived from the
seed and its name, so a symbol's ticks do not depend on which other symbols are simulated.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Iterator, Sequence
from operator import itemgetter

from tickcast.service.sim.oracle import (
    History,
    Oracle,
    OracleError,
    OracleSymbol,
    bayes_hit_rate,
)
from tickcast.service.sim.symbols import DEFAULT_SYMBOLS, MarketError, SymbolSpec
from tickcast.service.sim.symbolsim import SIZE_DISPERSION, SymbolSim
from tickcast.service.ticks import Tick

__all__ = [
    "BLOCK_MS",
    "DEFAULT_SYMBOLS",
    "LIVE_IDS_PER_MS",
    "MarketError",
    "Oracle",
    "OracleError",
    "SymbolSpec",
    "SyntheticMarket",
    "bayes_hit_rate",
]

log = logging.getLogger(__name__)

BLOCK_MS = 100
"""Market time generated per step (all symbols), ms: short, so that a paced simulator at
thousands of ticks per second pauses for milliseconds, not tens of them. The ticks do not
depend on it."""

LIVE_IDS_PER_MS = 1000
"""Trade ids a live simulator reserves per millisecond of its start time: one started at
``start_ms`` numbers each symbol's trades from ``start_ms * LIVE_IDS_PER_MS + 1`` (about
1.8e15 in 2026: exact in a JSON double, far from 2**63), so that a restarted simulator's ids are
larger than any of an earlier run's, as long as that run made fewer than a million trades per
second of its life."""

_EVENT_MS = itemgetter(3)


def live_first_trade_id(start_ms: int) -> int:
    """The first trade id of each symbol of a simulator started live at ``start_ms``.

    Examples
    --------
    >>> live_first_trade_id(1_767_225_600_000)
    1767225600000001
    """
    return start_ms * LIVE_IDS_PER_MS + 1


class SyntheticMarket:
    """Seeded synthetic market over several symbols, with an oracle of its planted effect.

    Parameters
    ----------
    symbols : sequence of SymbolSpec
        The simulated symbols (unique names).
    seed : int
        Seed of every random stream; the same seed gives the same ticks.
    start_ms : int
        Event time of the first quote of every symbol, ms since the Unix epoch.
    venue : str
        Venue id put on every tick.
    oracle_memory_s : float or None
        How far back (market seconds) :attr:`oracle` can answer; ``None`` disables the oracle
        and keeps no history (for endless live runs).
    first_trade_id : int
        The id of each symbol's first trade (1: a seeded market's ids are the same on every
        run; :meth:`live` starts from :func:`live_first_trade_id`).

    Examples
    --------
    >>> market = SyntheticMarket(seed=1)
    >>> ticks = list(market.ticks(2.0))
    >>> ticks[0].kind, ticks[0].event_ms == market.start_ms
    ('quote', True)
    >>> all(a.event_ms <= b.event_ms for a, b in zip(ticks, ticks[1:]))
    True
    """

    def __init__(
        self,
        symbols: Sequence[SymbolSpec] = DEFAULT_SYMBOLS,
        *,
        seed: int = 0,
        start_ms: int = 1_767_225_600_000,
        venue: str = "sim",
        oracle_memory_s: float | None = 3600.0,
        first_trade_id: int = 1,
    ) -> None:
        self.symbols = tuple(symbols)
        names = [s.symbol for s in self.symbols]
        if not names or len(set(names)) != len(names):
            raise MarketError(f"need at least one symbol and unique names, got {names}")
        if seed < 0:
            raise MarketError(f"seed must be non-negative, got {seed}")
        if start_ms <= 0:
            raise MarketError(f"start_ms must be positive, got {start_ms}")
        if oracle_memory_s is not None and not oracle_memory_s > 0.0:
            raise MarketError(f"oracle_memory_s must be positive or None, got {oracle_memory_s}")
        if not 1 <= first_trade_id < 2**53:
            raise MarketError(f"first_trade_id must be in [1, 2**53), got {first_trade_id}")
        self.seed = seed
        self.start_ms = int(start_ms)
        self.venue = venue
        histories = (
            None
            if oracle_memory_s is None
            else {name: History(1000.0 * oracle_memory_s) for name in names}
        )
        self._sims = [
            SymbolSim(
                spec,
                venue,
                self.start_ms,
                seed,
                None if histories is None else histories[name],
                first_trade_id,
            )
            for spec, name in zip(self.symbols, names, strict=True)
        ]
        self._buffer: deque[Tick] = deque()
        self._generated_ms = self.start_ms
        self._clock_ms = float(self.start_ms)
        self.oracle = Oracle(
            {
                s.symbol: OracleSymbol(
                    s.quote_rate,
                    s.imbalance_phi,
                    s.effect,
                    s.imbalance_tau_s,
                    s.trade_rate * s.trade_size * math.exp(0.5 * SIZE_DISPERSION**2),
                )
                for s in self.symbols
            },
            histories,
            self._extend,
        )
        log.debug("synthetic market: %s, seed %d, start %d", ", ".join(names), seed, start_ms)

    @classmethod
    def live(
        cls,
        symbols: Sequence[SymbolSpec] = DEFAULT_SYMBOLS,
        *,
        seed: int = 0,
        venue: str = "sim",
        now_ms: int | None = None,
    ) -> SyntheticMarket:
        """The market of a live simulator: event time from ``now_ms`` (default: the wall
        clock), no oracle history, and trade ids from :func:`live_first_trade_id`, so that the
        ids of a restarted simulator continue upwards (a client that resumes from the last id
        it stored counts the restart as a gap, never as old ids coming back).

        Event time runs at the simulator's speed from ``now_ms``: a simulator run faster than
        real time (``sim.speed`` > 1) and restarted starts again from the wall clock, earlier
        than the event times it had reached, so a worker that stored those waits until the new
        market's clock passes them (a learner's clock never goes back).

        Examples
        --------
        >>> first = SyntheticMarket.live(now_ms=1_000)
        >>> again = SyntheticMarket.live(now_ms=2_000)  # restarted a second later
        >>> def first_id(market: SyntheticMarket) -> int:
        ...     return int(next(t for t in market.ticks(60.0) if t.kind == "trade").trade_id)
        >>> first_id(first), first_id(again)
        (1000001, 2000001)
        """
        start_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        return cls(
            symbols,
            seed=seed,
            start_ms=start_ms,
            venue=venue,
            oracle_memory_s=None,
            first_trade_id=live_first_trade_id(start_ms),
        )

    def _generate_block(self) -> None:
        end = self._generated_ms + BLOCK_MS
        block: list[Tick] = []
        for sim in self._sims:
            block.extend(sim.run(end))
        block.sort(key=_EVENT_MS)  # stable: ties keep symbol order, then generation order
        self._buffer.extend(block)
        self._generated_ms = end

    def _extend(self, until_ms: float) -> None:
        while self._generated_ms < until_ms:
            self._generate_block()

    def ticks(self, seconds: float | None = None) -> Iterator[Tick]:
        """Ticks of every symbol in event-time order, continuing the market.

        Each finite call yields the ticks of the next ``seconds`` of market time (event_ms
        below the end of the window); ``None`` yields forever (and leaves the window where it
        was). Every tick is valid (:func:`tickcast.service.ticks.invalid_reason` is None);
        ``recv_ns`` is ``event_ms * 1_000_000`` plus a simulated network latency (0.3 ms plus
        an exponential of mean 1.2 ms); trade ids run consecutively per symbol from
        ``first_trade_id`` ("1", "2", ... by default); update ids increase per symbol.
        """
        if seconds is None:
            return self._iterate(math.inf)
        if not (math.isfinite(seconds) and seconds >= 0.0):
            raise MarketError(f"seconds must be finite and non-negative, got {seconds}")
        self._clock_ms += 1000.0 * seconds
        return self._iterate(self._clock_ms)

    def _iterate(self, end_ms: float) -> Iterator[Tick]:
        buffer = self._buffer
        while True:
            if not buffer:
                if self._generated_ms >= end_ms:
                    return
                self._generate_block()
                continue
            if buffer[-1].event_ms < end_ms:
                for _ in range(len(buffer)):  # the oracle may append blocks meanwhile
                    yield buffer.popleft()
                continue
            while buffer and buffer[0].event_ms < end_ms:
                yield buffer.popleft()
            return
