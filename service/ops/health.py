"""Health endpoints of a tickcast process: ``/metrics``, ``/healthz`` and ``/readyz``.

:class:`MetricsServer` serves them from a daemon thread, so that a scrape or a probe never
waits for a busy event loop. ``/healthz`` answers 200 while the process runs; ``/readyz`` runs a
readiness callback — for the live service, :class:`Readiness`: Redis answers PING and ticks
arrived in the last ``stale_s`` seconds.

On a Redis Cluster (:func:`~tickcast.service.bus.connection.probe` gives a cluster client, made
on first use so that a cluster out of reach at start reads as down), PING goes to every master
and the memory gauges are the fullest master's (:meth:`RedisProbe._memory`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import redis
import redis.cluster

from tickcast.service import TickcastError
from tickcast.service.bus.connection import SyncClient, probe
from tickcast.service.bus.keys import START_ID, id_key
from tickcast.service.ops.config import Settings
from tickcast.service.ops.metrics import Metrics, RedisReading
from tickcast.service.ticks import Instrument

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], tuple[bool, str]]
Positions = Callable[[], Mapping[Instrument, tuple[str, str]]]
"""``() -> {instrument: (tick stream key, ID of the last entry the worker processed)}``."""


class MetricsError(TickcastError):
    """The metrics server could not start."""


class _Probe:
    """A :func:`probe` client made on first use (a cluster client reads the slot map as it is
    made) and closed by :meth:`close`; not thread-safe (callers hold a lock)."""

    def __init__(self, url: str, settings: Settings, timeout_s: float) -> None:
        self.url = url
        self.settings = settings
        self.timeout_s = timeout_s
        self._client: SyncClient | None = None

    def get(self) -> SyncClient:
        """The client (made now if need be; raises ``redis.RedisError`` when that fails)."""
        if self._client is None:
            self._client = probe(self.url, self.settings, self.timeout_s)
        return self._client

    def ping(self) -> None:
        """PING Redis (every master of a cluster)."""
        client = self.get()
        if isinstance(client, redis.cluster.RedisCluster):
            client.ping(target_nodes=redis.cluster.RedisCluster.PRIMARIES)
        else:
            client.ping()

    def close(self) -> None:
        """Close the client's connections, if it was made."""
        if self._client is not None:
            self._client.close()
            self._client = None


class Readiness:
    """``/readyz``: Redis answers PING (from the server thread) and ticks are flowing.

    Ticks flow when ``tick_clock()`` (a monotonic time of the latest tick) is within
    ``stale_s`` seconds. Thread-safe: the probe only reads a float and pings with timeouts.
    """

    def __init__(
        self,
        url: str,
        tick_clock: Callable[[], float],
        stale_s: float,
        settings: Settings | None = None,
    ) -> None:
        self.probe = _Probe(url, settings if settings is not None else Settings(), 0.5)
        self.tick_clock = tick_clock
        self.stale_s = stale_s
        self._lock = threading.Lock()

    def __call__(self) -> tuple[bool, str]:
        try:
            with self._lock:
                self.probe.ping()
        except (redis.RedisError, redis.exceptions.RedisClusterException, OSError) as exc:
            return False, f"redis unreachable: {exc}"
        last = self.tick_clock()
        if last <= 0.0:
            return False, "no ticks yet"
        age = time.monotonic() - last
        if age > self.stale_s:
            return False, f"no ticks for {age:.1f} s"
        return True, "ready"

    def close(self) -> None:
        """Close the probe's Redis connections."""
        with self._lock:
            self.probe.close()


class RedisProbe:
    """The ``tickcast_redis_*`` gauges and the worker lag, read from Redis at each scrape.

    PING, ``INFO memory``, and for each symbol the worker serves the ID of its tick stream's
    newest entry (``XREVRANGE + - COUNT 1``, one pipelined round trip; an entry ID is the
    tick's receive time in ms) and, for a symbol not read yet, the oldest. Every wait is bounded
    by ``timeout_s``; a command the user may not run (ACL) is logged once and its figures left
    out. Thread-safe (called from the metrics server's threads).

    On a Redis Cluster: PING and ``INFO memory`` go to every master, the gauges are those of
    the fullest one (see :meth:`_memory`), and the streams are read from their masters.
    """

    def __init__(
        self,
        url: str,
        settings: Settings,
        positions: Positions | None = None,
        timeout_s: float = 0.5,
    ) -> None:
        self.probe = _Probe(url, settings, timeout_s)
        self.positions = positions
        self._lock = threading.Lock()
        self._refused: set[str] = set()

    def __call__(self) -> RedisReading:
        with self._lock:
            try:
                self.probe.ping()
                used, limit = self._memory()
                lag = self._lag()
            except (redis.RedisError, redis.exceptions.RedisClusterException, OSError):
                return RedisReading(up=False)
            return RedisReading(True, used, limit, lag)

    def _memory(self) -> tuple[float, float]:
        """``used_memory`` and ``maxmemory`` (bytes). On a cluster, those of the master
        closest to its ``maxmemory`` (the one with most ``used_memory`` when none has a
        limit): a shard fills on its own, and the summed figures of every master would hide
        it (a full shard refuses the writes of its slots while the others have room)."""
        client = self.probe.get()
        try:
            if isinstance(client, redis.cluster.RedisCluster):
                found: Any = client.info(
                    "memory", target_nodes=redis.cluster.RedisCluster.PRIMARIES
                )
                infos = list(found.values()) if _per_node(found) else [found]
            else:
                infos = [client.info("memory")]
        except redis.ResponseError as exc:
            self._refused_once("INFO", exc)
            return math.nan, math.nan
        readings = [
            (float(i.get("used_memory", math.nan)), float(i.get("maxmemory", math.nan)))
            for i in infos
        ]
        return max(readings, key=_fill)

    def _lag(self) -> dict[Instrument, float]:
        positions = dict(self.positions()) if self.positions is not None else {}
        if not positions:
            return {}
        pipe = self.probe.get().pipeline(transaction=False)
        for key, last_id in positions.values():
            pipe.xrevrange(key, count=1)
            if last_id == START_ID:
                pipe.xrange(key, count=1)
        try:
            replies = iter(pipe.execute())
        except redis.ResponseError as exc:
            self._refused_once("XREVRANGE", exc)
            return {}
        lag: dict[Instrument, float] = {}
        for instrument, (_, last_id) in positions.items():
            newest = next(replies)
            oldest = next(replies) if last_id == START_ID else None
            if not newest:
                lag[instrument] = 0.0
                continue
            top_ms = id_key(newest[0][0])[0]
            done_ms = id_key(oldest[0][0])[0] if oldest else id_key(last_id)[0]
            lag[instrument] = max(0.0, (top_ms - done_ms) / 1000.0)
        return lag

    def _refused_once(self, command: str, exc: Exception) -> None:
        if command not in self._refused:
            self._refused.add(command)
            log.warning("metrics: Redis refused %s (%s); its figures are left out", command, exc)

    def close(self) -> None:
        """Close the probe's Redis connections."""
        with self._lock:
            self.probe.close()


def _per_node(found: Any) -> bool:
    """Whether an ``INFO`` reply of a cluster client is per node (``{name: info}``), not one
    node's (a cluster of one master)."""
    return isinstance(found, dict) and all(isinstance(v, dict) for v in found.values())


def _fill(reading: tuple[float, float]) -> tuple[float, float]:
    """Sort key of ``(used, maxmemory)`` readings: the fill ratio first (0 without a limit),
    then the bytes used.

    Examples
    --------
    >>> max([(5.0, 0.0), (3.0, 4.0), (9.0, 100.0)], key=_fill)
    (3.0, 4.0)
    >>> max([(5.0, 0.0), (7.0, 0.0)], key=_fill)
    (7.0, 0.0)
    """
    used, limit = reading
    ratio = used / limit if limit > 0 and math.isfinite(used) else 0.0
    return ratio, used if math.isfinite(used) else 0.0


def readiness_stale_s(settings: Settings) -> float:
    """How long without a tick a process stays ready (s): the feed watchdog's, at least 10."""
    return max(10.0, settings.exchange.watchdog_s)


def serve_metrics(
    metrics: Metrics,
    settings: Settings,
    redis_url: str,
    tick_clock: Callable[[], float],
    stale_s: float,
    positions: Positions | None,
) -> tuple[MetricsServer, list[Readiness | RedisProbe]]:
    """Serve ``metrics`` on the address of ``settings.metrics``, ready while Redis answers and
    ticks arrive (:class:`Readiness`), with the Redis figures of ``redis_url``
    (:class:`RedisProbe`, the worker lag of ``positions``); return the started server and the
    probes to close after it."""
    readiness = Readiness(redis_url, tick_clock, stale_s, settings)
    redis_probe = RedisProbe(redis_url, settings, positions)
    metrics.redis_source = redis_probe
    cfg = settings.metrics
    server = MetricsServer(metrics, cfg.host, cfg.port, readiness=readiness)
    server.start()
    return server, [readiness, redis_probe]


class MetricsServer:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` from a daemon thread.

    Parameters
    ----------
    metrics : Metrics
        What ``/metrics`` exposes.
    host, port : str, int
        Listen address (``port=0`` picks a free port; read :attr:`port` after :meth:`start`).
    readiness : callable, optional
        ``() -> (ready, reason)``, called from the server thread for each ``/readyz``; it must
        be thread-safe and quick (bounded timeouts). Ready when omitted.
    """

    def __init__(
        self,
        metrics: Metrics,
        host: str = "127.0.0.1",
        port: int = 9464,
        *,
        readiness: ReadinessCheck | None = None,
    ) -> None:
        self.metrics = metrics
        self.host = host
        self.port = port
        self.readiness = readiness
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:9464``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Bind and serve in a daemon thread; raise :class:`MetricsError` when the bind fails."""
        handler = type("Handler", (_Handler,), {"server_ref": self})
        try:
            self._httpd = ThreadingHTTPServer((self.host, self.port), handler)
        except OSError as exc:
            raise MetricsError(f"cannot serve metrics on {self.host}:{self.port}: {exc}") from exc
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )
        self._thread.name = "tickcast-metrics"
        self._thread.start()
        log.info("metrics on %s/metrics", self.url)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def check_ready(self) -> tuple[bool, str]:
        """Run the readiness callback (a raising callback means not ready)."""
        if self.readiness is None:
            return True, "ready"
        try:
            return self.readiness()
        except Exception as exc:
            return False, f"readiness check failed: {exc}"


class _Handler(BaseHTTPRequestHandler):
    server_ref: MetricsServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            body, ctype = self.server_ref.metrics.exposition(self.headers.get("Accept", ""))
            self._reply(200, body, ctype)
        elif path == "/healthz":
            self._reply(200, b"ok\n")
        elif path == "/readyz":
            ready, reason = self.server_ref.check_ready()
            self._reply(200 if ready else 503, (reason + "\n").encode())
        else:
            self._reply(404, b"not found: try /metrics, /healthz, /readyz\n")

    def _reply(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("metrics http: " + format, *args)
