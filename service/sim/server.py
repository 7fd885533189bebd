"""The simulated exchange: a websockets server speaking any venue's market-data dialect.

One producer task walks the market (synthetic ticks, or the frames of a recording) in event
time, paced against the wall clock by ``speed`` (``speed=inf`` or ``0``: as fast as the clients
read), renders each event once per topic that some client wants, and fans the encoded frame
out to per-client queues; one sender task per client writes its queue to the socket, one event
per frame as the real venue does. Clients connecting later see the live stream from then on.

Everything venue-specific — endpoints, topic names, subscription and ping messages, frame
layouts, contract sizes, compression, who pings whom — is the venue's
:class:`~tickcast.service.venues.venue.Dialect` (Binance USDⓈ-M unless told otherwise). The
server enforces the dialect's keepalive: it pings (websocket frames or the venue's own ping
message) and cuts a client whose keepalive is late, as the venue does. Fault switches follow
:mod:`tickcast.service.sim.faults` and work for every dialect.

Back-pressure: when paced, a client whose queue passes ``max_client_queue`` frames is
disconnected (close code 1008), as a venue drops slow consumers; as fast as possible, the
producer waits for slow clients instead, so that nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tickcast.service.sim.faults import FaultConfig, apply_tick_faults
from tickcast.service.sim.session import ClientInfo, Session, SimStats
from tickcast.service.tasks import cancel_and_wait
from tickcast.service.ticks import Tick
from tickcast.service.venues.binance.dialect import BinanceDialect, RecordedFrame, read_recording
from tickcast.service.venues.venue import Dialect, Renderer, SimKeepalive, Venue

logger = logging.getLogger(__name__)

_YIELD_EVERY = 64


class SimExchange:
    """Serve a market over websockets on ``host`` in a venue's wire format.

    Parameters
    ----------
    market_ticks : iterator of Tick or None
        Ticks in event-time order (e.g. ``SyntheticMarket(...).ticks()``); None with
        ``replay_path``.
    dialect : Dialect, optional
        The venue protocol to speak (default: Binance USDⓈ-M's).
    host, port : str, int
        Listen address; ``port=0`` picks a free port (see :attr:`port`).
    speed : float
        Event time per wall time (1 = real time); ``inf`` or ``0`` = as fast as clients read.
    faults : FaultConfig
        Fault switches, read while running.
    replay_path : Path or None
        Serve this ``<ns> <json>`` Binance recording instead, paced by its receive times
        (Binance dialects only).
    preload : bool
        Read the whole recording into memory at :meth:`start` (benchmarks: keeps file
        reading out of the served stream's timing).
    keepalive : SimKeepalive, optional
        Pings and client deadlines (default: the dialect's, as on the venue).
    max_client_queue : int
        Frames queued per client before back-pressure (see the module docstring).
    start_on_subscribe : bool or None
        Hold the market until ``min_streams`` streams have subscribers; default: only when
        unpaced.
    min_streams : int
        Streams that must have a subscriber before a held market starts.
    """

    def __init__(
        self,
        market_ticks: Iterator[Tick] | None,
        *,
        dialect: Dialect | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float = 1.0,
        faults: FaultConfig | None = None,
        replay_path: Path | str | None = None,
        preload: bool = False,
        keepalive: SimKeepalive | None = None,
        max_client_queue: int = 100_000,
        start_on_subscribe: bool | None = None,
        min_streams: int = 1,
    ) -> None:
        if market_ticks is None and replay_path is None:
            raise ValueError("SimExchange needs market_ticks or replay_path")
        if dialect is None:
            from tickcast.service.venues.binance.usdm import VENUE

            dialect = VENUE.dialect()
        if replay_path is not None and not isinstance(dialect, BinanceDialect):
            raise ValueError("a recording can only be replayed in a Binance dialect")
        self.dialect = dialect
        self.keepalive = keepalive if keepalive is not None else dialect.keepalive
        self.market_ticks = market_ticks
        self.host = host
        self.requested_port = port
        self.speed = math.inf if speed <= 0.0 else float(speed)
        self.faults = faults if faults is not None else FaultConfig()
        self.replay_path = Path(replay_path) if replay_path is not None else None
        self.preload = preload
        self._frames: list[RecordedFrame] | None = None
        self.max_client_queue = max_client_queue
        self.start_on_subscribe = (
            math.isinf(self.speed) if start_on_subscribe is None else start_on_subscribe
        )
        self.min_streams = min_streams
        self.stats = SimStats()
        self.done = asyncio.Event()
        self._clients: list[Session] = []
        self._subs: dict[str, list[Session]] = {}
        self._subscribed = asyncio.Event()
        self._server: Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing: set[asyncio.Task[None]] = set()
        self._renderer: Renderer = dialect.renderer()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen, then start the producer and the fault ticker."""
        if self.preload and self.replay_path is not None:
            self._frames = list(read_recording(self.replay_path))
        self._server = await serve(
            self._handle,
            self.host,
            self.requested_port,
            process_request=self._check_path,
            compression=None,
            ping_interval=self.keepalive.ws_ping_s,
            ping_timeout=self.keepalive.ws_ping_timeout_s,
            close_timeout=1.0,
            max_size=65536,
        )
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._produce(), name="sim-producer"),
            loop.create_task(self._fault_ticker(), name="sim-faults"),
            loop.create_task(self._keepalive_ticker(), name="sim-keepalive"),
        ]
        logger.info(
            "simulated %s listening on %s (speed %s)",
            self.dialect.venue.title,
            self.url,
            self.speed,
        )

    async def stop(self) -> None:
        """Stop producing, close every connection and the listener."""
        await cancel_and_wait(*self._tasks)
        self._tasks = []
        for client in self._clients:
            if client.frozen:
                client.ws.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> SimExchange:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The port actually listened on."""
        if self._server is None:
            raise RuntimeError("SimExchange is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """Base URL, ``ws://HOST:PORT`` (the dialect's paths follow)."""
        return f"ws://{self.host}:{self.port}"

    def urls_for(self, venue: Venue) -> dict[str, str]:
        """The URL of each of ``venue``'s routes on this server: its real path, on loopback.

        Examples: Bybit's ``wss://stream.bybit.com/v5/public/linear`` is served at
        ``ws://127.0.0.1:<port>/v5/public/linear``.
        """
        return {route: self.url + urlsplit(url).path for route, url in venue.routes.items()}

    @property
    def clients(self) -> list[ClientInfo]:
        """The connected clients, newest last."""
        return [c.info() for c in self._clients]

    async def wait_sent(self, timeout: float) -> None:
        """Wait until a finite market is exhausted and every queue written (bounded)."""
        async with asyncio.timeout(timeout):
            await self.done.wait()
            while any(c.queue for c in self._clients):
                await asyncio.sleep(0.01)

    def subscribers(self, topic: str) -> int:
        """Clients currently receiving ``topic``."""
        return len(self._subs.get(topic, ()))

    # -- connections ---------------------------------------------------------------------------

    def _check_path(self, ws: ServerConnection, request: Request) -> Response | None:
        if self.dialect.endpoint(request.path) is None:
            body = b'{"code":-1,"msg":"Not found"}'
            return Response(404, "Not Found", Headers({"Content-Length": str(len(body))}), body)
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        endpoint = self.dialect.endpoint(ws.request.path if ws.request is not None else "")
        assert endpoint is not None  # _check_path refused the others
        client = Session(ws, endpoint, time.monotonic(), binary=self.dialect.binary)
        self.stats.connections += 1
        self._clients.append(client)
        self._subscribe(client, endpoint.topics)
        malformed = tuple(map(self.dialect.encode, self.dialect.malformed()))
        sender = asyncio.get_running_loop().create_task(
            client.send_loop(self.faults, self.stats, self.max_client_queue // 2, malformed)
        )
        try:
            async for message in ws:
                await self._control(client, message)
        except ConnectionClosed:
            pass
        finally:
            self._unsubscribe(client, list(client.requested))
            self._clients.remove(client)
            client.drained.set()
            await cancel_and_wait(sender)

    async def _control(self, client: Session, message: str | bytes) -> None:
        """Let the dialect answer one client message (subscriptions, pings)."""
        raw = message.encode() if isinstance(message, str) else message
        answer = self.dialect.on_message(raw, tuple(client.requested))
        if answer.keepalive:
            client.last_keepalive = time.monotonic()
        if answer.request:
            self.stats.subscribe_requests += 1
        self._unsubscribe(client, list(answer.unsubscribe))
        self._subscribe(client, answer.subscribe)
        for frame in answer.frames:
            await client.send_now(self.dialect.encode(frame))

    def _subscribe(self, client: Session, names: tuple[str, ...] | list[str]) -> None:
        for name in names:
            if name in client.requested:
                continue
            client.requested.append(name)
            if self.dialect.served(name, client.endpoint):
                for frame in self._renderer.welcome(name):
                    client.push(self.dialect.encode(frame))
                self._subs.setdefault(name, []).append(client)
                if len(self._subs) >= self.min_streams:
                    self._subscribed.set()

    def _unsubscribe(self, client: Session, names: list[str]) -> None:
        for name in names:
            if name in client.requested:
                client.requested.remove(name)
            listeners = self._subs.get(name)
            if listeners is not None and client in listeners:
                listeners.remove(client)
                if not listeners:
                    del self._subs[name]

    async def _fault_ticker(self) -> None:
        """Apply connection drops and freezes every 20 ms."""
        while True:
            await asyncio.sleep(0.02)
            now = time.monotonic()
            for client in list(self._clients):
                every = self.faults.drop_every_s
                if every is not None and now - client.opened >= every:
                    client.opened = now
                    self.stats.fault_drops += 1
                    logger.debug("fault: dropping %s", client.ws.remote_address)
                    client.ws.transport.abort()
                    continue
                if self.faults.freeze != client.frozen:
                    client.frozen = self.faults.freeze
                    if client.frozen:
                        client.ws.transport.pause_reading()
                    else:
                        client.ws.transport.resume_reading()

    async def _keepalive_ticker(self) -> None:
        """Send the dialect's own pings and cut clients whose keepalive is late."""
        keep = self.keepalive
        if keep.server_ping is None and keep.client_silence_s is None and keep.idle_s is None:
            return
        limits = (keep.server_ping_s, keep.client_silence_s, keep.idle_s, 1.0)
        step = min(x for x in limits if x) / 4.0
        ping = self.dialect.encode(keep.server_ping) if keep.server_ping is not None else None
        while True:
            await asyncio.sleep(step)
            now = time.monotonic()
            for client in list(self._clients):
                if client.frozen:
                    continue
                silence, idle = keep.client_silence_s, keep.idle_s
                quiet = now - max(client.last_keepalive, client.last_sent)
                if (silence is not None and now - client.last_keepalive > silence) or (
                    idle is not None and quiet > idle
                ):
                    self.stats.keepalive_cuts += 1
                    logger.debug("cutting %s: no keepalive", client.ws.remote_address)
                    client.last_keepalive = client.last_sent = math.inf
                    self._close(client, 1008, "keepalive timeout")
                elif ping is not None and now - client.last_ping >= (keep.server_ping_s or 0.0):
                    client.last_ping = now
                    self.stats.server_pings += 1
                    await client.send_now(ping)

    def _close(self, client: Session, code: int, reason: str) -> None:
        task = asyncio.get_running_loop().create_task(client.ws.close(code, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # -- the market --------------------------------------------------------------------------

    async def _produce(self) -> None:
        try:
            if self.start_on_subscribe:
                await self._subscribed.wait()
            if self.replay_path is not None:
                await self._produce_replay(self.replay_path)
            else:
                assert self.market_ticks is not None
                await self._produce_market(apply_tick_faults(self.market_ticks, self.faults))
        finally:
            self.done.set()

    async def _pace(self, event_ms: float, origin: list[float], count: int) -> None:
        """Sleep until ``event_ms`` is due (paced), or yield and wait for slow clients."""
        if math.isinf(self.speed):
            if count % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
                for client in self._clients:
                    if len(client.queue) >= self.max_client_queue:
                        client.drained.clear()
                        await client.drained.wait()
            return
        loop = asyncio.get_running_loop()
        if not origin:
            origin.extend((event_ms, loop.time()))
        due = origin[1] + (event_ms - origin[0]) / (1000.0 * self.speed)
        wait = due - loop.time()
        if wait > 0.001:
            await asyncio.sleep(wait)
        elif count % _YIELD_EVERY == 0:
            await asyncio.sleep(0)
        if count % _YIELD_EVERY == 0:
            self._close_slow_clients()

    def _close_slow_clients(self) -> None:
        for client in self._clients:
            if len(client.queue) > self.max_client_queue:
                client.queue.clear()
                self.stats.slow_consumer_closes += 1
                logger.warning("closing slow client %s", client.ws.remote_address)
                self._close(client, 1008, "slow consumer")

    async def _produce_market(self, ticks: Iterator[Tick]) -> None:
        origin: list[float] = []
        render = self._renderer.events
        for count, tick in enumerate(ticks):
            await self._pace(tick.event_ms, origin, count)
            self.stats.events += 1
            for stream, event in render(tick, self._subs):
                self._emit(stream, event)
        for stream, event in self._renderer.flush(self._subs):
            self._emit(stream, event)

    async def _produce_replay(self, path: Path) -> None:
        origin: list[float] = []
        frames = self._frames if self._frames is not None else read_recording(path)
        for count, frame in enumerate(frames):
            await self._pace(frame.recv_ns / 1e6, origin, count)
            self.stats.events += 1
            listeners = self._subs.get(frame.stream)
            if listeners:
                for client in list(listeners):
                    client.push(frame.combined if client.endpoint.combined else frame.event)

    def _emit(self, topic: str, event: bytes) -> None:
        """Queue one rendered event to every client of ``topic``, framed for its endpoint
        (once per kind of endpoint) and encoded."""
        framed: dict[bool, bytes] = {}
        dialect = self.dialect
        for client in self._subs.get(topic, ()):
            endpoint = client.endpoint
            frame = framed.get(endpoint.combined)
            if frame is None:
                frame = dialect.encode(dialect.frame(topic, event, endpoint))
                framed[endpoint.combined] = frame
            client.push(frame)
