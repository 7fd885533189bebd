"""Venue-independent parts of a feed's connection shell: the tick sink, counters, loopback test.

Every venue shell (``feeds/<venue>_ws.py``) pushes ticks to a synchronous :data:`Sink`, one call
per frame, and keeps its connection and sequence counters in a :class:`FeedStats`, which the
ingester reads with :func:`dataclasses.asdict` and exports as metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from tickcast.service.ticks import Tick

Sink = Callable[[list[Tick]], None]
"""Where a feed hands the ticks of one frame (a synchronous callback)."""


@dataclass
class FeedStats:
    """Counters of one feed (plain ints; exported as metrics by the service)."""

    frames: int = 0
    """Frames received, subscription answers excepted (malformed ones included)."""
    ticks: int = 0
    """Ticks handed to the sink."""
    acks: int = 0
    """Subscription answers received."""
    connects: int = 0
    """Connections opened."""
    reconnects: int = 0
    """Connections opened after the first one."""
    errors: int = 0
    """Connection attempts or connections that ended in an error (then retried)."""
    watchdog_trips: int = 0
    """Connections dropped for silence."""
    keepalive_timeouts: int = 0
    """Connections dropped because the peer stopped answering pings."""
    planned_reconnects: int = 0
    """Connections renewed before the venue's age limit."""
    gaps: int = 0
    """Jumps in a symbol's trade ids."""
    missed_trades: int = 0
    """Trade ids skipped by gaps and not received late."""
    late_trades: int = 0
    """Trades received after a higher id (passed on)."""
    duplicate_trades: int = 0
    """Trades received again (dropped)."""


def is_loopback(url: str) -> bool:
    """Whether ``url`` points at this machine (127.0.0.0/8, ::1, localhost).

    Examples
    --------
    >>> is_loopback("ws://127.0.0.1:9443/public"), is_loopback("wss://fstream.binance.com/public")
    (True, False)
    """
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")
