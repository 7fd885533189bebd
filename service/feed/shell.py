"""The one websocket shell: connect, subscribe, keep alive, pump frames into any venue's parser.

:class:`Feed` runs the subscription plan of a :class:`~tickcast.service.venues.venue.Venue` —
one or more connections, each by :func:`~tickcast.service.feed.reconnect.reconnect_loop`:

* connect (an HTTP(S) proxy from the environment unless the URL is on loopback), then send the
  plan's subscription messages, no faster than the venue accepts them;
* keepalive as the venue wants it: websocket ping frames, the venue's own ping message (a peer
  that does not answer within ``pong_timeout_s`` is dropped, counted in
  ``keepalive_timeouts``), and answers to the server's own pings;
* silence watchdog: connected but no data frame for ``watchdog_s`` -> reconnect, counted; acks,
  pings and pongs are not data, so a stream that is acknowledged and then stays silent trips it;
* capped, jittered backoff between attempts, reset once data flows; every attempt after a
  connection's first one counts as a reconnect, whether it succeeds or not;
* trade-id sequence per symbol where the venue numbers trades consecutively
  (:class:`~tickcast.service.feed.sequence.TradeSequence`): gaps (and the trades missed), late
  trades (filling a gap, passed on) and duplicates (dropped) are counted;
* planned reconnect before the venue's connection age limit.

The venue's parser stays pure (binary and gzip frames are the parser's to decode); this module is
the only one with sockets. Ticks go to a synchronous ``sink(list[Tick])`` callback, per frame;
the counters are a :class:`~tickcast.service.feed.stats.FeedStats`, the state of each
connection a :class:`~tickcast.service.feed.stats.RouteState`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tickcast.service.feed.guard import EdgeGuard
from tickcast.service.feed.reconnect import Backoff, reconnect_loop
from tickcast.service.feed.sequence import TradeSequence
from tickcast.service.feed.stats import FeedStats, RouteState, Sink, is_loopback
from tickcast.service.ops.logs import log_context
from tickcast.service.tasks import cancel_and_wait
from tickcast.service.ticks import TRADE
from tickcast.service.venues.base import REJECT_OVERSIZED, ParseStats
from tickcast.service.venues.markets import MarketInfo
from tickcast.service.venues.venue import ACK, DATA, ERROR, PING, PONG, Connection, Venue

if TYPE_CHECKING:
    from tickcast.service.ops.config_sections import ExchangeSettings

logger = logging.getLogger(__name__)

#: How long before the venue's connection age limit a connection is renewed (s).
RENEW_MARGIN_S = 1800.0
#: The websocket reads frames up to this many times ``max_frame_bytes`` (a hard memory bound):
#: a frame between the two is rejected and counted, the connection staying open; a larger one
#: closes it (1009, message too big) and the feed reconnects.
FRAME_READ_FACTOR = 4


@dataclass(frozen=True)
class FeedConfig:
    """Connection settings of a feed (the venue's URLs are given separately).

    Attributes
    ----------
    watchdog_s : float
        Reconnect when no data frame arrived for this long (s).
    ping_every_s : float or None
        Interval of the client's keepalive pings (websocket frames or the venue's own ping
        message); None: the venue's own interval.
    pong_timeout_s : float
        Longest wait for the answer to a ping (s).
    open_timeout_s, close_timeout_s : float
        Handshake and closing-handshake limits (s).
    backoff_base_s, backoff_cap_s : float
        Reconnect delays, see :func:`~tickcast.service.feed.reconnect.backoff`.
    max_connection_age_s : float
        Planned reconnect after this long (s); also kept :data:`RENEW_MARGIN_S` below the
        venue's own limit.
    gap_window : int
        Largest gap whose missing ids are remembered (to tell late trades from duplicates).
    event_time_window_s : float or None
        Refuse ticks whose event time is further than this from the local receive time
        (:class:`~tickcast.service.feed.guard.EdgeGuard`); None: no check.
    max_price_jump : float or None
        Refuse ticks whose price moves more than this fraction from the symbol's last
        accepted one (see the guard for the rule); None: no check.
    max_frame_bytes : int
        Largest frame parsed (bytes, as received: compressed for a gzip venue); a larger one
        is rejected unparsed as ``"oversized frame"`` (up to :data:`FRAME_READ_FACTOR` times
        this, beyond which the connection closes).
    """

    watchdog_s: float = 10.0
    ping_every_s: float | None = None
    pong_timeout_s: float = 20.0
    open_timeout_s: float = 10.0
    close_timeout_s: float = 2.0
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    max_connection_age_s: float = 23.5 * 3600.0
    gap_window: int = 1024
    event_time_window_s: float | None = None
    max_price_jump: float | None = None
    max_frame_bytes: int = 4 * 2**20

    def __post_init__(self) -> None:
        if not self.watchdog_s > 0.0:
            raise ValueError("watchdog_s must be positive")
        if not self.max_frame_bytes > 0:
            raise ValueError("max_frame_bytes must be positive")
        if self.ping_every_s is not None and not self.ping_every_s > 0.0:
            raise ValueError("ping_every_s must be positive")
        for name in ("event_time_window_s", "max_price_jump"):
            limit = getattr(self, name)
            if limit is not None and not 0.0 < limit < math.inf:
                raise ValueError(f"{name} must be positive and finite (None: no check)")

    @classmethod
    def from_settings(cls, exchange: ExchangeSettings) -> FeedConfig:
        """Build from the ``exchange`` section of the settings."""
        return cls(
            watchdog_s=exchange.watchdog_s,
            ping_every_s=exchange.ping_interval_s,
            pong_timeout_s=exchange.ping_timeout_s,
            backoff_base_s=exchange.reconnect_base_s,
            backoff_cap_s=exchange.reconnect_cap_s,
            max_connection_age_s=exchange.max_connection_s,
            event_time_window_s=exchange.event_time_window_s or None,
            max_price_jump=exchange.max_price_jump or None,
            max_frame_bytes=exchange.max_frame_bytes,
        )

    def guard(self, stats: ParseStats) -> EdgeGuard:
        """The :class:`EdgeGuard` of these limits, counting into ``stats``."""
        window = self.event_time_window_s
        window_ms = None if window is None else int(window * 1000.0)
        return EdgeGuard(stats, window_ms, self.max_price_jump)


class Feed:
    """Live market data of ``markets`` on ``venue``, pushed to a sink as ticks.

    Parameters
    ----------
    venue : Venue
        The venue's protocol (subscription plan, keepalive, parser).
    markets : sequence of MarketInfo
        The subscribed markets (ids and contract sizes).
    urls : mapping of str to str
        URL of each of the venue's routes (default: the venue's own).
    config : FeedConfig
        Timeouts, keepalive, backoff.
    label : str
        Venue label written into the ticks (default the venue's name; ``sim-<name>`` against
        the simulated exchange).
    rng : numpy.random.Generator, optional
        Jitter source of the reconnect backoff.

    Attributes
    ----------
    stats : FeedStats
        Connection and sequence counters.
    routes : dict of str to RouteState
        The state of each connection, by route label.
    parser
        The venue's pure parser; ``parser.stats`` counts parsed, skipped and rejected frames.
    """

    def __init__(
        self,
        venue: Venue,
        markets: Sequence[MarketInfo],
        urls: Mapping[str, str] | None = None,
        config: FeedConfig | None = None,
        *,
        label: str = "",
        rng: np.random.Generator | None = None,
    ) -> None:
        if not markets:
            raise ValueError("a feed needs at least one market")
        self.venue = venue
        self.label = label or venue.name
        self.markets = list(markets)
        self.config = config if config is not None else FeedConfig()
        self.urls = dict(urls) if urls is not None else dict(venue.routes)
        self.plan = venue.connections(self.markets, self.urls)
        self.parser = venue.parser(self.markets, self.label)
        self.guard = self.config.guard(self.parser.stats)
        self.last_trade_ids: dict[str, int] = {}
        """Trade id each symbol's sequence resumes after (the latest stored, at a restart)."""
        self.stats = FeedStats()
        self.routes = {c.route: RouteState() for c in self.plan}
        self.rng = rng if rng is not None else np.random.default_rng()
        self._tried: set[str] = set()
        keepalive = venue.keepalive
        self.ping_every_s = self.config.ping_every_s or keepalive.ping_every_s
        self.max_age_s = self.config.max_connection_age_s
        if venue.max_connection_s is not None:
            limit = max(venue.max_connection_s - RENEW_MARGIN_S, venue.max_connection_s / 2)
            self.max_age_s = min(self.max_age_s, limit)

    @property
    def symbols(self) -> list[str]:
        """The subscribed unified symbols."""
        return [m.symbol for m in self.markets]

    async def run(self, sink: Sink) -> None:
        """Pump every connection of the plan into ``sink`` until cancelled (reconnecting)."""
        async with asyncio.TaskGroup() as group:
            for connection in self.plan:
                group.create_task(self._connection_loop(connection, sink))

    async def _connection_loop(self, connection: Connection, sink: Sink) -> None:
        policy = Backoff(self.config.backoff_base_s, self.config.backoff_cap_s, self.rng)
        window = self.config.gap_window
        sequence = TradeSequence(self.stats, window) if self.venue.sequential_trade_ids else None
        if sequence is not None:
            sequence.resume(self.last_trade_ids)

        async def session(policy: Backoff) -> bool:
            return await self._session(connection, sink, sequence, policy)

        def on_retry(exc: BaseException | None, delay: float) -> None:
            self.routes[connection.route].retry(exc, delay)
            if exc is not None:
                self.stats.errors += 1

        name = f"{self.label} {connection.route} feed"
        with log_context(route=connection.route, url=connection.url):
            await reconnect_loop(session, policy, on_retry=on_retry, name=name)

    async def _open(self, connection: Connection) -> ClientConnection:
        """Connect (counting the attempt), then send the subscription messages, paced."""
        cfg, stats, url = self.config, self.stats, connection.url
        stats.attempts += 1
        if connection.route in self._tried:  # each connection's first attempt is no reconnect
            stats.reconnects += 1
        self._tried.add(connection.route)
        ws_ping = self.ping_every_s if self.venue.keepalive.ws_ping else None
        ws = await connect(
            url,
            open_timeout=cfg.open_timeout_s,
            close_timeout=cfg.close_timeout_s,
            ping_interval=ws_ping,
            ping_timeout=cfg.pong_timeout_s if ws_ping is not None else None,
            compression=None,
            max_size=cfg.max_frame_bytes * FRAME_READ_FACTOR,
            proxy=None if is_loopback(url) else True,
        )
        stats.connects += 1
        self.routes[connection.route].connected = True
        logger.info("%s: connected to %s", self.label, url.partition("?")[0])
        return ws

    async def _subscribe(
        self, ws: ClientConnection, connection: Connection, state: _SessionState
    ) -> None:
        """Send the subscription messages, no faster than the venue takes them (frames are
        read meanwhile: the first topics' data flows and the venue's pings are answered)."""
        pause = 1.0 / self.venue.subscribe_per_s
        for i, message in enumerate(connection.subscribe):
            if i:
                await asyncio.sleep(pause)
            await ws.send(message, text=True)
        state.subscribed = True

    async def _session(
        self,
        connection: Connection,
        sink: Sink,
        sequence: TradeSequence | None,
        policy: Backoff,
    ) -> bool:
        """One connection: returns True for a planned reconnect, False when it ended otherwise."""
        ws = await self._open(connection)
        route = self.routes[connection.route]
        state = _SessionState()
        loop = asyncio.get_running_loop()
        guard = loop.create_task(self._guard(ws, state))
        subscriber = loop.create_task(self._subscribe(ws, connection, state))
        try:
            await self._pump(ws, sink, sequence, policy, state, route)
        except ConnectionClosed as exc:
            if state.reason is None:
                if exc.rcvd is None and exc.sent is not None and exc.sent.code == 1011:
                    self.stats.keepalive_timeouts += 1
                    logger.warning("%s: keepalive ping timeout", self.label)
                raise
        finally:
            route.connected = False
            try:
                await cancel_and_wait(subscriber, guard)
            finally:
                if state.reason is None:
                    ws.transport.abort()
        return state.reason == "age"

    async def _pump(
        self,
        ws: ClientConnection,
        sink: Sink,
        sequence: TradeSequence | None,
        policy: Backoff,
        state: _SessionState,
        route: RouteState,
    ) -> None:
        """Receive frames until the connection closes; parse, sequence and sink them."""
        parse = self.parser.parse
        admit = self.guard.admit
        classify = self.venue.classify
        stats = self.stats
        accept = sequence.accept if sequence is not None else None
        recv = ws.recv
        time_ns = time.time_ns
        monotonic = time.monotonic
        max_frame = self.config.max_frame_bytes
        while True:
            raw = await recv(decode=False)
            recv_ns = time_ns()
            route.last_frame_monotonic = monotonic()
            if len(raw) > max_frame:  # counted, never parsed; the connection stays open
                self.parser.stats.reject(REJECT_OVERSIZED)
                logger.warning("%s: rejected a frame of %d bytes (max_frame_bytes %d)",
                               self.label, len(raw), max_frame)  # fmt: skip
                stats.frames += 1
                state.frames += 1
                continue
            ticks = parse(raw, recv_ns)
            if not ticks:
                control = classify(raw)
                if control.kind != DATA:
                    await self._control(ws, control.kind, control.reply, control.detail, state)
                    continue
            elif accept is not None:
                for tick in ticks:
                    if (
                        tick.kind == TRADE
                        and tick.trade_id.isdigit()
                        and not accept(tick.symbol, int(tick.trade_id))
                    ):
                        ticks = [t for t in ticks if t is not tick]
            stats.frames += 1
            state.frames += 1
            if ticks:
                ticks = admit(ticks)
            if ticks:
                stats.ticks += len(ticks)
                sink(ticks)
            if not state.data:
                state.data = True
                policy.reset()

    async def _control(
        self,
        ws: ClientConnection,
        kind: str,
        reply: bytes | None,
        detail: str,
        state: _SessionState,
    ) -> None:
        """Act on a frame that is not data: count acks, note pongs, answer server pings."""
        if kind == ACK:
            self.stats.acks += 1
        elif kind == PONG:
            state.ping_sent = 0.0
        elif kind == PING:
            if reply is not None:
                await ws.send(reply, text=True)
                self.stats.pings_answered += 1
        elif kind == ERROR:
            self.stats.error_replies += 1
            logger.warning("%s answered with an error: %s", self.label, detail)

    async def _guard(self, ws: ClientConnection, state: _SessionState) -> None:
        """Watchdog, the venue's own pings and their answers, connection age; closes ``ws``
        and sets ``state.reason`` when one of them ends the connection."""
        cfg = self.config
        ping = self.venue.keepalive.ping
        loop = asyncio.get_running_loop()
        opened = quiet_since = last_ping = loop.time()
        seen = state.frames
        step = min(cfg.watchdog_s / 4.0, 1.0)
        if ping is not None:
            step = min(step, self.ping_every_s / 4.0, cfg.pong_timeout_s / 4.0)
        while True:
            await asyncio.sleep(step)
            now = loop.time()
            if state.frames != seen or not state.subscribed:
                seen, quiet_since = state.frames, now  # the watchdog starts once subscribed
            elif now - quiet_since >= cfg.watchdog_s:
                self.stats.watchdog_trips += 1
                logger.warning(
                    "%s: no data for %.1f s; reconnecting", self.label, now - quiet_since
                )
                await self._end(ws, state, "watchdog", graceful=False)
                return
            if ping is not None:
                if state.ping_sent and now - state.ping_sent >= cfg.pong_timeout_s:
                    self.stats.keepalive_timeouts += 1
                    logger.warning(
                        "%s: no pong for %.1f s; reconnecting", self.label, now - last_ping
                    )
                    await self._end(ws, state, "keepalive", graceful=False)
                    return
                if now - last_ping >= self.ping_every_s:
                    last_ping = now
                    state.ping_sent = state.ping_sent or now
                    await ws.send(ping, text=True)
                    self.stats.pings_sent += 1
            if now - opened >= self.max_age_s:
                self.stats.planned_reconnects += 1
                logger.info(
                    "%s: connection %.0f s old; planned reconnect", self.label, now - opened
                )
                await self._end(ws, state, "age", graceful=True)
                return

    async def _end(
        self, ws: ClientConnection, state: _SessionState, reason: str, *, graceful: bool
    ) -> None:
        state.reason = reason
        if graceful:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), self.config.close_timeout_s)
        ws.transport.abort()


@dataclass
class _SessionState:
    frames: int = 0
    data: bool = False
    subscribed: bool = False
    reason: str | None = None
    ping_sent: float = 0.0
    """Loop time of the oldest ping not answered yet (0: none outstanding)."""
