"""The live service in one process: simulator (optional), feed, ingester, worker, metrics.

:class:`Service` composes the parts as asyncio tasks around one Redis URL. ``tickcast run``
runs them all; ``tickcast ingest`` the ingest side alone (``work=False``) and ``tickcast worker``
the worker alone (``ingest=False``), each with its own metrics endpoint:

- ``exchange.name == "sim"``: a :class:`~tickcast.service.sim.server.SimExchange` serving
  :class:`~tickcast.service.sim.market.SyntheticMarket` (event time starting now, no oracle
  history) on loopback, read back by the Binance feed under venue ``"sim"``; ``"binanceusdm"``:
  the real venue (market metadata from its REST API unless ``online=False``);
- the :class:`~tickcast.service.live.ingest.Ingester` (feed -> bounded queue -> batched XADD);
- the :class:`~tickcast.service.live.worker.Worker` (ticks -> learners -> signals, checkpoints),
  which, when both run here, takes the ticks the ingester wrote from a
  :class:`~tickcast.service.live.handoff.Handoff` once it has caught up with the streams
  (``worker.handoff``);
- :class:`~tickcast.service.ops.metrics.Metrics` on ``metrics.host:metrics.port`` with ``/healthz``
  and ``/readyz`` (Redis answers PING and ticks arrived in the last ``stale_s`` seconds).

Ownership (:mod:`tickcast.service.bus.lease`): the worker takes the symbols' ``owner`` leases
before restoring them, the ingest side their ``ingester`` leases before connecting the feed (and
renews them; losing one stops the service with exit code 1): a second process on the same
symbols waits for the first.

Shutdown (:meth:`Service.request_stop`, wired to SIGTERM, SIGINT and SIGHUP by :meth:`Service.run`):
stop the feed, flush the ingest buffer, let the worker finish its step and checkpoint, stop the
simulator and the metrics server — all within ``stop_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from typing import Any

import redis
import redis.asyncio

from tickcast.service import TickcastError
from tickcast.service.bus import connection, keys
from tickcast.service.bus.lease import SymbolLeases
from tickcast.service.bus.writer import TickWriter
from tickcast.service.live.handoff import Handoff
from tickcast.service.live.worker import Worker
from tickcast.service.ops.config import Settings
from tickcast.service.ops.health import MetricsServer, Readiness
from tickcast.service.ops.metrics import OTHER, IngestSnapshot, Metrics

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
"""Signals that stop the service cleanly (a closed terminal sends SIGHUP)."""

SIM = "sim"
SUPPORTED = (SIM, "binanceusdm")


class ServiceError(TickcastError):
    """The service cannot be composed (unknown exchange, bad symbols...)."""


# -- the ingester's counters for the metrics -----------------------------------------------


def ingest_snapshot(ingester: Any) -> IngestSnapshot:
    """Read an ingester's counters (totals and per ``(symbol, kind)``) for :class:`Metrics`."""
    c = ingester.counters()
    st = ingester.stats
    return IngestSnapshot(
        received=dict(st.received_by),
        written=dict(st.written_by),
        rejected={(OTHER, OTHER): int(c.get("rejected", 0))},
        dropped=dict(st.dropped_by),
        reconnects=int(c.get("reconnects", 0)),
        gaps=int(c.get("gaps", 0)),
        missed_trades=int(c.get("missed_trades", 0)),
        watchdog_trips=int(c.get("watchdog_trips", 0)),
        queue_depth=int(c.get("queue_depth", 0)),
        batch_sizes=st.batch_sizes,
    )


def settle_heap() -> None:
    """Collect, then move every object alive to the collector's permanent generation.

    What start-up leaves (modules, ccxt, pydantic, numpy, the restored learners) lives as long
    as the process; without this every full collection walks it again: tens of milliseconds
    with the event loop stopped, every few seconds at thousands of ticks per second.
    """
    gc.collect()
    gc.freeze()


# -- building the parts ----------------------------------------------------------------------


async def build_feed(
    settings: Settings, venue: str, public_url: str, market_url: str, *, online: bool = False
) -> Any:
    """A Binance USD-M websocket feed of the configured symbols on the given route URLs.

    Market metadata (venue ids, contract sizes) comes from ccxt's REST markets when ``online``
    and the feed points off this machine (falling back to the offline table when that fails);
    from the offline table otherwise: a feed on loopback reads a simulator, not the venue.
    """
    from tickcast.service.feed.binance_ws import BinanceFeed, BinanceWsConfig
    from tickcast.service.feed.shell import is_loopback
    from tickcast.service.venues.markets import load_markets

    ex = settings.exchange
    config = BinanceWsConfig.from_settings(ex, public_url, market_url)
    online = online and not is_loopback(public_url)
    markets = await load_markets(ex.symbols, online=online)
    return BinanceFeed(list(ex.symbols), config, markets=markets, venue=venue)


# -- the service -----------------------------------------------------------------------------


class Service:
    """Ingest and/or worker, metrics (+ simulator) in one process; see the module docstring.

    Parameters
    ----------
    settings : Settings
        ``exchange.name`` picks the source (``sim`` or ``binanceusdm``).
    redis_url : str
        Where the streams live.
    ingest, work : bool
        Run the ingest side / the worker (``tickcast ingest`` and ``tickcast worker`` run one
        of them alone).
    stop_timeout_s : float
        Bound on the whole shutdown.
    stale_s : float
        Readiness: longest tolerated silence of the tick flow.
    sim_rate_scale : float
        Simulator only: multiply every symbol's trade and quote rates (benchmarks).
    online : bool
        ``binanceusdm`` only: load market metadata from the venue's REST API (``False``: the
        offline table, no REST call).
    """

    def __init__(
        self,
        settings: Settings,
        redis_url: str,
        *,
        ingest: bool = True,
        work: bool = True,
        stop_timeout_s: float = 9.0,
        stale_s: float | None = None,
        sim_rate_scale: float = 1.0,
        online: bool = True,
    ) -> None:
        name = settings.exchange.name
        if ingest and name not in SUPPORTED:
            raise ServiceError(f"exchange {name!r} is not supported: use one of {SUPPORTED}")
        self.settings = settings
        self.redis_url = redis_url
        self.venue = name
        self.symbols = tuple(settings.exchange.symbols)
        self.run_ingest = ingest
        self.run_worker = work
        self.stop_timeout_s = stop_timeout_s
        self.stale_s = stale_s if stale_s is not None else max(10.0, settings.exchange.watchdog_s)
        self.sim_rate_scale = sim_rate_scale
        self.online = online
        self.metrics = Metrics(self.venue, self.symbols)
        self.sim: Any = None
        self.ingester: Any = None
        self.worker: Worker | None = None
        self.ingest_leases: SymbolLeases | None = None
        self.metrics_server: MetricsServer | None = None
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._last_received = 0
        self._last_flow = 0.0

    def _leases(self, client: redis.asyncio.Redis, kind: str) -> SymbolLeases:
        """Leases on the symbols' ``owner`` (worker) or ``ingester`` keys."""
        prefix = self.settings.redis.prefix
        lease_keys = {s: keys.symbol_key(prefix, self.venue, s, kind) for s in self.symbols}
        return SymbolLeases(client, lease_keys, ttl_s=self.settings.worker.lease_ttl_s)

    async def _keep(self, leases: SymbolLeases) -> None:
        """Renew the ingest leases until cancelled; raise when one is lost."""
        while True:
            await asyncio.sleep(leases.renew_every_s)
            try:
                lost = await leases.renew()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("cannot renew the ingest leases, Redis unreachable (%s)", exc)
                continue
            if lost:
                raise ServiceError(
                    f"lost the ingest lease of {', '.join(lost)} (expired or taken): stopping"
                )

    def request_stop(self) -> None:
        """Begin a graceful shutdown (safe to call more than once, and from signal handlers)."""
        if self.worker is not None and not self.worker.restored:
            self.worker.stop()  # still waiting to own its symbols
        if not self._stop.is_set():
            flush = "flushing ticks" if self.run_ingest else ""
            ckpt = "checkpointing" if self.run_worker else ""
            log.info("stopping: %s", " and ".join(filter(None, (flush, ckpt))))
        self._stop.set()

    def tick_clock(self) -> float:
        """Monotonic time of the latest tick received (ingest) or read (worker); 0 if none."""
        worker = self.worker.last_tick_monotonic if self.worker is not None else 0.0
        return max(self._last_flow, worker)

    async def _start_sim(self) -> tuple[str, str]:
        from tickcast.service.sim.market import SyntheticMarket
        from tickcast.service.sim.server import SimExchange
        from tickcast.service.sim.symbols import specs_for

        cfg = self.settings.sim
        market = SyntheticMarket(
            specs_for(self.symbols, self.sim_rate_scale),
            seed=cfg.seed,
            start_ms=time.time_ns() // 1_000_000,
            venue=SIM,
            oracle_memory_s=None,
        )
        self.sim = SimExchange(market.ticks(), host=cfg.host, port=cfg.port, speed=cfg.speed)
        await self.sim.start()
        return self.sim.url + "/public", self.sim.url + "/market"

    async def _build_ingest(self, client: redis.asyncio.Redis, handoff: Handoff | None) -> Any:
        from tickcast.service.live.ingest import Ingester

        if self.venue == SIM:
            public, market = await self._start_sim()
        else:
            urls = self.settings.exchange.urls.binanceusdm
            public, market = urls.public, urls.market
        online = self.online and self.venue != SIM
        feed = await build_feed(self.settings, self.venue, public, market, online=online)
        writer = TickWriter(client, self.settings)
        writer.tap = handoff
        ingester = Ingester.from_settings(feed, writer, self.settings)
        self.metrics.add_ingest_source(lambda: ingest_snapshot(ingester))
        return ingester

    def _start_metrics(self) -> Readiness | None:
        cfg = self.settings.metrics
        if not cfg.enabled:
            return None
        readiness = Readiness(self.redis_url, self.tick_clock, self.stale_s)
        self.metrics_server = MetricsServer(self.metrics, cfg.host, cfg.port, readiness=readiness)
        self.metrics_server.start()
        return readiness

    async def _watch_flow(self) -> None:
        """Track when the ingester last received ticks (for readiness)."""
        while True:
            if self.ingester is not None:
                received = self.ingester.stats.received
                if received != self._last_received:
                    self._last_received = received
                    self._last_flow = time.monotonic()
            await asyncio.sleep(0.2)

    async def run(self, *, handle_signals: bool = True) -> int:
        """Run until :meth:`request_stop` (or SIGTERM/SIGINT/SIGHUP); return the exit code (0)."""
        loop = asyncio.get_running_loop()
        if handle_signals:
            for sig in STOP_SIGNALS:
                loop.add_signal_handler(sig, self.request_stop)
        ingest_client = connection.connect(self.redis_url, self.settings)
        worker_client = connection.connect(self.redis_url, self.settings)
        readiness: Readiness | None = None
        tasks: dict[str, asyncio.Task[Any]] = {}
        try:
            readiness = self._start_metrics()
            handoff = None
            if self.run_worker and self.run_ingest and self.settings.worker.handoff:
                handoff = Handoff(self.symbols)
            if self.run_worker:
                self.worker = Worker(
                    worker_client,
                    self.settings,
                    venue=self.venue,
                    symbols=self.symbols,
                    stats=self.metrics.symbol_stats,
                    handoff=handoff,
                    leases=self._leases(worker_client, "owner"),
                )
                await self.worker.restore()
                if not self.worker.restored:
                    return 0  # stopped while another process owned the symbols
                tasks["worker"] = loop.create_task(self.worker.run(), name="worker")
            if self.run_ingest:
                self.ingest_leases = self._leases(ingest_client, "ingester")
                if not await self.ingest_leases.acquire(self._stop):
                    await self._shutdown(tasks)  # stopped while another ingester held them
                    return 0
                tasks["leases"] = loop.create_task(self._keep(self.ingest_leases), name="leases")
                self.ingester = await self._build_ingest(ingest_client, handoff)
                tasks["ingest"] = loop.create_task(self.ingester.run(), name="ingest")
            tasks["flow"] = loop.create_task(self._watch_flow(), name="flow")
            settle_heap()
            self.ready.set()
            stop = loop.create_task(self._stop.wait(), name="stop")
            done, _ = await asyncio.wait(
                {stop, *tasks.values()}, return_when=asyncio.FIRST_COMPLETED
            )
            stop.cancel()
            failed = [t for t in done if t is not stop and not t.cancelled() and t.exception()]
            code = 0
            for task in failed:
                log.error("%s failed", task.get_name(), exc_info=task.exception())
                code = 1
            await self._shutdown(tasks)
            return code
        finally:
            if handle_signals:
                for sig in STOP_SIGNALS:
                    loop.remove_signal_handler(sig)
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            if self.sim is not None:
                await self.sim.stop()
                self.sim = None
            if self.metrics_server is not None:
                self.metrics_server.stop()
            if readiness is not None:
                readiness.close()
            await ingest_client.aclose()
            await worker_client.aclose()

    async def _shutdown(self, tasks: dict[str, asyncio.Task[Any]]) -> None:
        """Stop the feed and flush, then stop the worker (checkpoint), within the timeout."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.stop_timeout_s):
                if self.ingester is not None:
                    self.ingester.stop()
                    with contextlib.suppress(Exception):
                        await tasks["ingest"]
                if "leases" in tasks:
                    tasks["leases"].cancel()
                if self.ingest_leases is not None:
                    with contextlib.suppress(Exception):
                        await self.ingest_leases.release()  # only what is still ours
                if self.worker is not None:
                    self.worker.stop()
                    with contextlib.suppress(Exception):
                        await tasks["worker"]
        except TimeoutError:
            log.error("shutdown took over %.1f s; abandoning what is left", self.stop_timeout_s)
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        log.info("stopped in %.2f s", time.monotonic() - started)
