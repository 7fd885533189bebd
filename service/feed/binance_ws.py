"""Binance USDⓈ-M websocket shell: connect, subscribe, keep alive, pump frames into the parser.

Since 2026-04-23 the venue routes market data: ``trade`` and ``bookTicker`` are served under
``<base>/public``, ``aggTrade`` and ``markPrice`` under ``<base>/market`` (the unrouted URL
acknowledges a subscription and then stays silent). :class:`BinanceFeed` opens one connection
per route it needs, each run by :func:`~tickcast.service.feed.reconnect.reconnect_loop`:

* subscription by URL (combined stream ``/stream?streams=a/b``) or by a ``SUBSCRIBE`` message
  on ``/ws`` — after a reconnect the subscription is simply made again;
* keepalive: the client answers the venue's pings and sends its own (a peer that stops
  answering is dropped, counted in ``keepalive_timeouts``);
* silence watchdog: connected but no data frame for ``watchdog_s`` -> reconnect, counted;
* trade-id sequence per symbol (:class:`~tickcast.service.feed.sequence.TradeSequence`): gaps
  (and the number of trades missed), late trades (filling a gap, passed on) and duplicates
  (dropped) are counted;
* planned reconnect before the venue's 24 h connection limit.

The parser (:class:`~tickcast.service.venues.binance.BinanceParser`) stays pure; this module is
the only one with sockets. Ticks go to a synchronous ``sink(list[Tick])`` callback, per frame;
the counters are a :class:`~tickcast.service.feed.shell.FeedStats`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tickcast.service.feed.reconnect import Backoff, reconnect_loop
from tickcast.service.feed.sequence import TradeSequence
from tickcast.service.feed.shell import FeedStats, Sink, is_loopback
from tickcast.service.ticks import TRADE
from tickcast.service.venues.binance import VENUE, BinanceParser
from tickcast.service.venues.binance_routes import MARKET, PUBLIC, stream_route
from tickcast.service.venues.markets import MarketInfo, offline_markets

if TYPE_CHECKING:
    from tickcast.service.ops.config_sections import ExchangeSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BinanceWsConfig:
    """Connection settings (URLs live here, not in code paths).

    Attributes
    ----------
    public_url, market_url : str
        Route bases; the simulator's are ``<sim.url>/public`` and ``<sim.url>/market``.
    channels : tuple of str
        Per-symbol channels: ``trade``, ``bookTicker`` (public), ``aggTrade``, ``markPrice@1s``
        (market).
    subscribe_by : str
        ``"url"`` (combined stream URL) or ``"message"`` (``/ws`` + ``SUBSCRIBE``).
    watchdog_s : float
        Reconnect when no data frame arrived for this long (s).
    ping_interval_s, ping_timeout_s : float or None
        Client keepalive pings; None disables them.
    open_timeout_s, close_timeout_s : float
        Handshake and closing-handshake limits (s).
    backoff_base_s, backoff_cap_s : float
        Reconnect delays, see :func:`~tickcast.service.feed.reconnect.backoff`.
    max_connection_age_s : float
        Planned reconnect before the venue's 24 h cut.
    gap_window : int
        Largest gap whose missing ids are remembered (to tell late trades from duplicates).
    """

    public_url: str = "wss://fstream.binance.com/public"
    market_url: str = "wss://fstream.binance.com/market"
    channels: tuple[str, ...] = ("trade", "bookTicker")
    subscribe_by: str = "url"
    watchdog_s: float = 10.0
    ping_interval_s: float | None = 20.0
    ping_timeout_s: float | None = 20.0
    open_timeout_s: float = 10.0
    close_timeout_s: float = 2.0
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    max_connection_age_s: float = 23.5 * 3600.0
    gap_window: int = 1024

    @classmethod
    def from_settings(
        cls, exchange: ExchangeSettings, public_url: str, market_url: str
    ) -> BinanceWsConfig:
        """Build from the ``exchange`` section of the settings, on the given route bases."""
        return cls(
            public_url=public_url,
            market_url=market_url,
            watchdog_s=exchange.watchdog_s,
            ping_interval_s=exchange.ping_interval_s,
            ping_timeout_s=exchange.ping_timeout_s,
            backoff_base_s=exchange.reconnect_base_s,
            backoff_cap_s=exchange.reconnect_cap_s,
            max_connection_age_s=exchange.max_connection_s,
        )

    def __post_init__(self) -> None:
        if self.subscribe_by not in ("url", "message"):
            raise ValueError(f"subscribe_by must be 'url' or 'message', not {self.subscribe_by!r}")
        if not self.watchdog_s > 0.0:
            raise ValueError("watchdog_s must be positive")


class BinanceFeed:
    """Live Binance USDⓈ-M market data for ``symbols``, pushed to a sink as ticks.

    Parameters
    ----------
    symbols : sequence of str
        Unified symbols (``BTC/USDT:USDT``).
    config : BinanceWsConfig
        URLs, channels, timeouts.
    markets : mapping of str to MarketInfo, optional
        Venue ids and contract sizes (default: derived offline).
    venue : str
        Venue id written into ticks (``"sim"`` against the simulated exchange).
    rng : numpy.random.Generator, optional
        Jitter source of the reconnect backoff.

    Attributes
    ----------
    stats : FeedStats
        Connection and sequence counters.
    parser : BinanceParser
        The pure parser; ``parser.stats`` counts parsed, skipped and rejected frames.
    """

    def __init__(
        self,
        symbols: Sequence[str],
        config: BinanceWsConfig | None = None,
        *,
        markets: Mapping[str, MarketInfo] | None = None,
        venue: str = VENUE,
        rng: np.random.Generator | None = None,
    ) -> None:
        if not symbols:
            raise ValueError("BinanceFeed needs at least one symbol")
        self.config = config if config is not None else BinanceWsConfig()
        self.markets = dict(markets) if markets is not None else offline_markets(symbols)
        self.symbols = list(symbols)
        ids = {self.markets[s].venue_id: s for s in self.symbols}
        sizes = {self.markets[s].venue_id: self.markets[s].contract_size for s in self.symbols}
        self.parser = BinanceParser(ids, venue=venue, contract_size=sizes)
        self.stats = FeedStats()
        self.rng = rng if rng is not None else np.random.default_rng()
        self._connected_routes: set[str] = set()
        self._connections: dict[str, ClientConnection] = {}

    def streams(self) -> dict[str, list[str]]:
        """Stream names by route (``public`` / ``market``), e.g. ``btcusdt@trade``."""
        by_route: dict[str, list[str]] = {}
        for symbol in self.symbols:
            lower = self.markets[symbol].venue_id.lower()
            for channel in self.config.channels:
                name = f"{lower}@{channel}"
                route = stream_route(name)
                if route is None:
                    raise ValueError(f"unknown Binance channel {channel!r}")
                by_route.setdefault(route, []).append(name)
        return by_route

    def url(self, route: str, streams: Sequence[str]) -> str:
        """Connection URL of ``route`` for ``streams`` (combined stream, or bare ``/ws``)."""
        base = self.config.public_url if route == PUBLIC else self.config.market_url
        base = base.rstrip("/")
        if self.config.subscribe_by == "url":
            return f"{base}/stream?streams={'/'.join(streams)}"
        return f"{base}/ws"

    async def run(self, sink: Sink) -> None:
        """Pump every route into ``sink`` until cancelled (reconnecting as needed)."""
        routes = self.streams()
        async with asyncio.TaskGroup() as group:
            for route in (PUBLIC, MARKET):
                if route in routes:
                    group.create_task(self._route_loop(route, routes[route], sink))

    async def _route_loop(self, route: str, streams: list[str], sink: Sink) -> None:
        policy = Backoff(self.config.backoff_base_s, self.config.backoff_cap_s, self.rng)
        sequence = TradeSequence(self.stats, self.config.gap_window)

        async def session(policy: Backoff) -> bool:
            return await self._session(route, streams, sink, sequence, policy)

        def on_retry(exc: BaseException | None, delay: float) -> None:
            if exc is not None:
                self.stats.errors += 1

        await reconnect_loop(session, policy, on_retry=on_retry, name=f"binance {route} feed")

    async def _session(
        self,
        route: str,
        streams: list[str],
        sink: Sink,
        sequence: TradeSequence,
        policy: Backoff,
    ) -> bool:
        """One connection: returns True for a planned reconnect, False when it ended otherwise."""
        cfg = self.config
        url = self.url(route, streams)
        ws = await connect(
            url,
            open_timeout=cfg.open_timeout_s,
            close_timeout=cfg.close_timeout_s,
            ping_interval=cfg.ping_interval_s,
            ping_timeout=cfg.ping_timeout_s,
            compression=None,
            max_size=2**22,
            proxy=None if is_loopback(url) else True,
        )
        self.stats.connects += 1
        if route in self._connected_routes:  # each route's first connection is no reconnect
            self.stats.reconnects += 1
        self._connected_routes.add(route)
        self._connections[route] = ws
        logger.info("connected to %s", url)
        state = _SessionState()
        guard = asyncio.get_running_loop().create_task(self._guard(ws, state))
        try:
            if cfg.subscribe_by == "message":
                request = {"method": "SUBSCRIBE", "params": streams, "id": self.stats.connects}
                await ws.send(orjson.dumps(request), text=True)
            await self._pump(ws, sink, sequence, policy, state)
        except ConnectionClosed as exc:
            if state.reason is None:
                if exc.rcvd is None and exc.sent is not None and exc.sent.code == 1011:
                    self.stats.keepalive_timeouts += 1
                    logger.warning("%s: keepalive ping timeout", url)
                raise
        finally:
            guard.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await guard
            self._connections.pop(route, None)
            if state.reason is None:
                ws.transport.abort()
        return state.reason == "age"

    async def _pump(
        self,
        ws: ClientConnection,
        sink: Sink,
        sequence: TradeSequence,
        policy: Backoff,
        state: _SessionState,
    ) -> None:
        """Receive frames until the connection closes; parse, sequence and sink them."""
        parse = self.parser.parse
        stats = self.stats
        accept = sequence.accept
        recv = ws.recv
        time_ns = time.time_ns
        while True:
            raw = await recv(decode=False)
            recv_ns = time_ns()
            ticks = parse(raw, recv_ns)
            if not ticks:
                if raw[:10] == b'{"result":':
                    stats.acks += 1
                    continue
                stats.frames += 1
                state.frames += 1
            else:
                stats.frames += 1
                state.frames += 1
                for tick in ticks:
                    if (
                        tick.kind == TRADE
                        and tick.trade_id.isdigit()
                        and not accept(tick.symbol, int(tick.trade_id))
                    ):
                        ticks = [t for t in ticks if t is not tick]
                stats.ticks += len(ticks)
                if ticks:
                    sink(ticks)
            if not state.data:
                state.data = True
                policy.reset()

    async def _guard(self, ws: ClientConnection, state: _SessionState) -> None:
        """Watchdog and connection-age check; closes ``ws`` and sets ``state.reason``."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        opened = loop.time()
        seen = state.frames
        quiet_since = loop.time()
        step = min(cfg.watchdog_s / 4.0, 1.0)
        while True:
            await asyncio.sleep(step)
            now = loop.time()
            if state.frames != seen:
                seen, quiet_since = state.frames, now
            elif now - quiet_since >= cfg.watchdog_s:
                self.stats.watchdog_trips += 1
                state.reason = "watchdog"
                logger.warning("no data for %.1f s; reconnecting", now - quiet_since)
                ws.transport.abort()
                return
            if now - opened >= cfg.max_connection_age_s:
                self.stats.planned_reconnects += 1
                state.reason = "age"
                logger.info("connection %.0f s old; planned reconnect", now - opened)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), cfg.close_timeout_s)
                ws.transport.abort()
                return


@dataclass
class _SessionState:
    frames: int = 0
    data: bool = False
    reason: str | None = None
