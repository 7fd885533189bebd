"""What a feed reports: the tick sink, its counters, the state of each connection.

A feed pushes ticks to a synchronous :data:`Sink`, one call per frame, and keeps its counters in
a :class:`FeedStats` (read by the ingester with :func:`dataclasses.asdict` and exported as
metrics) and the state of each of its connections in a :class:`RouteState`.
"""

from __future__ import annotations

import time
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
    """Data frames received (malformed ones included; acks, pings and pongs excepted)."""
    ticks: int = 0
    """Ticks handed to the sink."""
    acks: int = 0
    """Subscription answers received."""
    error_replies: int = 0
    """Error answers received (a refused subscription...)."""
    attempts: int = 0
    """Connection attempts, successful or not."""
    connects: int = 0
    """Connections opened."""
    reconnects: int = 0
    """Connection attempts after each connection's first one, successful or not."""
    errors: int = 0
    """Connection attempts or connections that ended in an error (then retried)."""
    watchdog_trips: int = 0
    """Connections dropped for silence."""
    keepalive_timeouts: int = 0
    """Connections dropped because the peer stopped answering pings."""
    pings_sent: int = 0
    """The venue's own ping messages sent."""
    pings_answered: int = 0
    """Server pings answered."""
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


@dataclass
class RouteState:
    """The state of one of a feed's connections (a route of the venue)."""

    connected: bool = False
    """Whether the connection is open."""
    last_frame_monotonic: float = 0.0
    """``time.monotonic()`` of the latest frame received (0: none yet)."""
    retry_at_monotonic: float = 0.0
    """``time.monotonic()`` when the next connection attempt starts, once a connection failed
    or ended (0: none yet); in the past while that attempt is under way."""
    last_error: str = ""
    """The latest failure in one line (``gaierror: [Errno -2] Name or service not known``);
    empty after a connection that ended without an error."""

    def retry(self, error: BaseException | None, delay_s: float) -> None:
        """Note that the connection failed (``error``) or ended, and that the next attempt
        starts in ``delay_s`` seconds.

        Examples
        --------
        >>> state = RouteState(connected=True)
        >>> state.retry(ConnectionRefusedError("refused"), 2.0)
        >>> state.connected, state.last_error, state.retry_at_monotonic > time.monotonic()
        (False, 'ConnectionRefusedError: refused', True)
        """
        self.connected = False
        self.retry_at_monotonic = time.monotonic() + delay_s
        self.last_error = "" if error is None else f"{type(error).__name__}: {error}"


def is_loopback(url: str) -> bool:
    """Whether ``url`` points at this machine (127.0.0.0/8, ::1, localhost).

    Examples
    --------
    >>> is_loopback("ws://127.0.0.1:9443/public"), is_loopback("wss://fstream.binance.com/public")
    (True, False)
    """
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")
