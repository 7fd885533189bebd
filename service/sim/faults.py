"""Fault switches of the simulated exchange, and the pure parts that apply them.

A :class:`FaultConfig` is read by the server at run time, so a test may flip a switch on a
running :class:`~tickcast.service.sim.server.SimExchange` (``sim.faults.silent = True``).

Connection faults (applied per client connection by the server):

* ``drop_every_s`` — abort the TCP connection this many seconds after it opened (no close
  frame: the client sees an abnormal closure, as when a NAT or the venue drops it);
* ``silent`` — keep the connection and answer pings, but send no data frames;
* ``ack_only`` — acknowledge SUBSCRIBE requests and never send data (what the real venue's
  unrouted URL does since 2026-04-23);
* ``freeze`` — stop reading the socket: no data, no pongs, no acks (a hung peer);
* ``malformed_every`` — after every N data frames insert one malformed frame of the dialect's
  (:meth:`~tickcast.service.venues.venue.Dialect.malformed`; inserted, so no real frame is
  lost).

Tick faults (applied once to the shared market stream, so every client sees them):

* ``duplicate_every`` — send every Nth trade twice;
* ``reorder_every`` — hold back every Nth trade and send it after the next trade of the same
  symbol (the two trade ids arrive swapped).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from tickcast.service.ticks import TRADE, Tick


@dataclass
class FaultConfig:
    """Fault switches; ``None`` / ``False`` everywhere means a well-behaved exchange."""

    drop_every_s: float | None = None
    silent: bool = False
    ack_only: bool = False
    freeze: bool = False
    malformed_every: int | None = None
    duplicate_every: int | None = None
    reorder_every: int | None = None


def apply_tick_faults(ticks: Iterator[Tick], faults: FaultConfig) -> Iterator[Tick]:
    """Yield ``ticks`` with trades duplicated or swapped as ``faults`` asks (read lazily).

    Parameters
    ----------
    ticks : iterator of Tick
        The market stream in event-time order.
    faults : FaultConfig
        Read at every trade, so switches flipped while iterating take effect at once.

    Yields
    ------
    Tick
        The same ticks; with ``duplicate_every=N`` every Nth trade appears twice in a row;
        with ``reorder_every=N`` every Nth trade is held and yielded right after the next
        trade of its symbol.

    Examples
    --------
    >>> from tickcast.service.ticks import trade
    >>> ts = [trade("sim", "X/USDT:USDT", i, i, 1.0, 1.0, 1, str(i)) for i in range(1, 6)]
    >>> [t.trade_id for t in apply_tick_faults(iter(ts), FaultConfig(reorder_every=2))]
    ['1', '3', '2', '5', '4']
    >>> [t.trade_id for t in apply_tick_faults(iter(ts), FaultConfig(duplicate_every=3))]
    ['1', '2', '3', '3', '4', '5']
    """
    held: dict[str, Tick] = {}
    trades = 0
    for tick in ticks:
        if tick.kind != TRADE:
            yield tick
            continue
        trades += 1
        late = held.pop(tick.symbol, None)
        if late is None and faults.reorder_every and trades % faults.reorder_every == 0:
            held[tick.symbol] = tick
            continue
        yield tick
        if late is not None:
            yield late
        if faults.duplicate_every and trades % faults.duplicate_every == 0:
            yield tick
    yield from held.values()
