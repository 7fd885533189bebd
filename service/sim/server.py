"""The simulated exchange: a websockets server speaking Binance USDⓈ-M market data.

One producer task walks the market (synthetic ticks, or the frames of a recording) in event
time, paced against the wall clock by ``speed`` (``speed=inf`` or ``0``: as fast as the clients
read), renders each event once per stream that some client wants, and fans the encoded frame
out to per-client queues; one sender task per client writes its queue to the socket, one event
per text frame as the real venue does. Clients connecting later see the live stream from then
on. Endpoints, stream names and control messages follow :mod:`tickcast.service.sim.protocol`;
fault switches follow :mod:`tickcast.service.sim.faults`.

Back-pressure: when paced, a client whose queue passes ``max_client_queue`` frames is
disconnected (close code 1008), as a venue drops slow consumers; as fast as possible, the
producer waits for slow clients instead, so that nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tickcast.service.sim.faults import FaultConfig, apply_tick_faults
from tickcast.service.sim.protocol import (
    MarketRenderer,
    RecordedFrame,
    combined_frame,
    error_reply,
    normalise,
    parse_endpoint,
    read_recording,
    reply,
    served_on,
)
from tickcast.service.sim.session import ClientInfo, Session, SimStats
from tickcast.service.ticks import Tick
from tickcast.service.venues.binance_routes import stream_route

logger = logging.getLogger(__name__)

_YIELD_EVERY = 64


class SimExchange:
    """Serve a market over websockets on ``host`` in the Binance USDⓈ-M wire format.

    Parameters
    ----------
    market_ticks : iterator of Tick or None
        Ticks in event-time order (e.g. ``SyntheticMarket(...).ticks()``); None with
        ``replay_path``.
    host, port : str, int
        Listen address; ``port=0`` picks a free port (see :attr:`port`).
    speed : float
        Event time per wall time (1 = real time); ``inf`` or ``0`` = as fast as clients read.
    faults : FaultConfig
        Fault switches, read while running.
    replay_path : Path or None
        Serve this ``<ns> <json>`` recording instead, paced by its receive times.
    preload : bool
        Read the whole recording into memory at :meth:`start` (benchmarks: keeps file
        reading out of the served stream's timing).
    ping_interval_s, ping_timeout_s : float or None
        Server keepalive (the venue pings every 3 min and wants a pong within 10 min).
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
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float = 1.0,
        faults: FaultConfig | None = None,
        replay_path: Path | str | None = None,
        preload: bool = False,
        ping_interval_s: float | None = 180.0,
        ping_timeout_s: float | None = 600.0,
        max_client_queue: int = 100_000,
        start_on_subscribe: bool | None = None,
        min_streams: int = 1,
    ) -> None:
        if market_ticks is None and replay_path is None:
            raise ValueError("SimExchange needs market_ticks or replay_path")
        self.market_ticks = market_ticks
        self.host = host
        self.requested_port = port
        self.speed = math.inf if speed <= 0.0 else float(speed)
        self.faults = faults if faults is not None else FaultConfig()
        self.replay_path = Path(replay_path) if replay_path is not None else None
        self.preload = preload
        self._frames: list[RecordedFrame] | None = None
        self.ping_interval_s = ping_interval_s
        self.ping_timeout_s = ping_timeout_s
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
            ping_interval=self.ping_interval_s,
            ping_timeout=self.ping_timeout_s,
            close_timeout=1.0,
            max_size=65536,
        )
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._produce(), name="sim-producer"),
            loop.create_task(self._fault_ticker(), name="sim-faults"),
        ]
        logger.info("simulated exchange listening on %s (speed %s)", self.url, self.speed)

    async def stop(self) -> None:
        """Stop producing, close every connection and the listener."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
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
        """Base URL, ``ws://HOST:PORT`` (append ``/public`` or ``/market`` for the routes)."""
        return f"ws://{self.host}:{self.port}"

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

    def subscribers(self, stream: str) -> int:
        """Clients currently receiving ``stream``."""
        return len(self._subs.get(stream, ()))

    # -- connections ---------------------------------------------------------------------------

    def _check_path(self, ws: ServerConnection, request: Request) -> Response | None:
        if parse_endpoint(request.path) is None:
            body = b'{"code":-1,"msg":"Not found"}'
            return Response(404, "Not Found", Headers({"Content-Length": str(len(body))}), body)
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        endpoint = parse_endpoint(ws.request.path if ws.request is not None else "")
        assert endpoint is not None  # _check_path refused the others
        client = Session(ws, endpoint, time.monotonic())
        self.stats.connections += 1
        self._clients.append(client)
        self._subscribe(client, endpoint.streams)
        sender = asyncio.get_running_loop().create_task(
            client.send_loop(self.faults, self.stats, self.max_client_queue // 2)
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
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def _control(self, client: Session, message: str | bytes) -> None:
        """Answer one SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS request."""
        try:
            request: Any = orjson.loads(message)
        except orjson.JSONDecodeError:
            await client.ws.send(error_reply(None, 3, "Invalid JSON"), text=True)
            return
        if not isinstance(request, dict):
            await client.ws.send(error_reply(None, 3, "Invalid request"), text=True)
            return
        method, params, rid = request.get("method"), request.get("params"), request.get("id")
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not (isinstance(params, list) and all(isinstance(p, str) for p in params)):
                await client.ws.send(error_reply(rid, 2, "Invalid request: params"), text=True)
                return
            self.stats.subscribe_requests += 1
            names = [normalise(p) for p in params]
            if method == "SUBSCRIBE":
                self._subscribe(client, names)
            else:
                self._unsubscribe(client, names)
            await client.ws.send(reply(rid), text=True)
        elif method == "LIST_SUBSCRIPTIONS":
            await client.ws.send(reply(rid, list(client.requested)), text=True)
        else:
            await client.ws.send(error_reply(rid, 1, f"Unknown method {method!r}"), text=True)

    def _subscribe(
        self, client: Session, names: Iterator[str] | tuple[str, ...] | list[str]
    ) -> None:
        for name in names:
            if name in client.requested or stream_route(name) is None:
                continue
            client.requested.append(name)
            if served_on(name, client.endpoint.route):
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
                task = asyncio.get_running_loop().create_task(
                    client.ws.close(1008, "slow consumer")
                )
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    async def _produce_market(self, ticks: Iterator[Tick]) -> None:
        origin: list[float] = []
        render = MarketRenderer().events
        for count, tick in enumerate(ticks):
            await self._pace(tick.event_ms, origin, count)
            self.stats.events += 1
            for stream, event in render(tick, self._subs):
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

    def _emit(self, stream: str, event: bytes) -> None:
        """Queue one encoded event to every client of ``stream`` (wrapped for combined ones)."""
        wrapped: bytes | None = None
        for client in self._subs.get(stream, ()):
            if client.endpoint.combined:
                if wrapped is None:
                    wrapped = combined_frame(stream.encode(), event)
                client.push(wrapped)
            else:
                client.push(event)
