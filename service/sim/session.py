"""One client connection of the simulated exchange: its queue, its sender, its counters."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass, field

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from tickcast.service.sim.faults import FaultConfig
from tickcast.service.venues.venue import Endpoint

#: Most frames framed before one socket write.
SEND_BATCH = 256


@dataclass
class SimStats:
    """Counters of the simulated exchange (all plain ints)."""

    connections: int = 0
    events: int = 0
    frames_sent: int = 0
    malformed_sent: int = 0
    suppressed: int = 0
    subscribe_requests: int = 0
    fault_drops: int = 0
    slow_consumer_closes: int = 0
    server_pings: int = 0
    keepalive_cuts: int = 0


@dataclass(frozen=True)
class ClientInfo:
    """A snapshot of one connection, for tests and logs."""

    path: str
    streams: tuple[str, ...]
    frames_sent: int
    queued: int
    latency_s: float


@dataclass
class Session:
    """One connected client: where it came, what it wants, and its outgoing queue.

    ``last_keepalive`` is the monotonic time of its latest ping (or answer to the server's
    ping), ``last_ping`` of the server's latest ping to it, ``last_sent`` of the latest data
    frames written to it; ``binary`` frames go out as binary websocket frames (compressed
    dialects), the others as text.
    """

    ws: ServerConnection
    endpoint: Endpoint
    opened: float
    binary: bool = False
    requested: list[str] = field(default_factory=list)
    queue: deque[bytes] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    frames_sent: int = 0
    frozen: bool = False
    last_keepalive: float = 0.0
    last_ping: float = 0.0
    last_sent: float = 0.0

    def __post_init__(self) -> None:
        self.last_keepalive = self.last_ping = self.last_sent = self.opened

    def push(self, frame: bytes) -> None:
        """Queue one encoded frame."""
        self.queue.append(frame)
        if not self.wake.is_set():
            self.wake.set()

    def info(self) -> ClientInfo:
        """A snapshot of this connection."""
        request = self.ws.request
        return ClientInfo(
            request.path if request is not None else "",
            tuple(self.requested),
            self.frames_sent,
            len(self.queue),
            self.ws.latency,
        )

    async def send_now(self, frame: bytes) -> None:
        """Send one control frame (an answer, a ping) at once, ahead of the queue."""
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(frame, text=not self.binary)

    async def send_loop(
        self, faults: FaultConfig, stats: SimStats, low_water: int, malformed: tuple[bytes, ...]
    ) -> None:
        """Write the queue to the socket until the connection closes, applying ``faults``.

        Frames queued together are framed one by one (one event per websocket frame, as the
        venue sends them) and written to the socket in one call, with flow control.
        ``drained`` is set whenever the queue is below ``low_water``; ``malformed`` holds the
        dialect's broken frames for the ``malformed_every`` fault.
        """
        ws, queue = self.ws, self.queue
        try:
            while True:
                if not queue:
                    self.drained.set()
                    self.wake.clear()
                    await self.wake.wait()
                    continue
                if ws.state is not State.OPEN:
                    return
                if self._frame_batch(faults, stats, malformed):
                    ws.transport.write(b"".join(ws.protocol.data_to_send()))
                    self.last_sent = time.monotonic()
                    await ws.drain()
                if len(queue) < low_water:
                    self.drained.set()
        except (ConnectionClosed, ConnectionError):
            self.drained.set()

    def _frame_batch(
        self, faults: FaultConfig, stats: SimStats, malformed: tuple[bytes, ...]
    ) -> int:
        """Frame up to :data:`SEND_BATCH` queued events (and injected faults); return how many."""
        queue = self.queue
        take = min(len(queue), SEND_BATCH)
        if faults.silent or faults.ack_only or self.frozen:
            for _ in range(take):
                queue.popleft()
            stats.suppressed += take
            return 0
        send = self.ws.protocol.send_binary if self.binary else self.ws.protocol.send_text
        every = faults.malformed_every
        for _ in range(take):
            send(queue.popleft())
            self.frames_sent += 1
            if every and self.frames_sent % every == 0:
                send(malformed[(self.frames_sent // every) % len(malformed)])
                stats.malformed_sent += 1
        stats.frames_sent += take
        return take
