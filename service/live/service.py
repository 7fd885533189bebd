"""The live service in one process: simulators (optional), feeds, ingesters, worker, metrics.

:class:`Service` composes the parts as asyncio tasks around one Redis URL. ``tickcast run``
runs them all; ``tickcast ingest`` the ingest side alone (``work=False``) and ``tickcast worker``
the worker alone (``ingest=False``), each with its own metrics endpoint:

- one *source* per ``exchange.name`` item (:mod:`tickcast.service.venues.registry`): a live
  venue, the simulated market in a venue's dialect on loopback (``sim``, ``sim:<venue>``), or a
  ccxt.pro client (``ccxt:<id>``); each source's markets are resolved before anything starts,
  so that a symbol the venue does not list stops the service at once (exit code 2);
- per source, an :class:`~tickcast.service.live.ingest.Ingester` (its feed -> bounded queue ->
  batched XADD);
- one :class:`~tickcast.service.live.worker.Worker` (ticks -> one learner per (venue, symbol)
  -> signals, checkpoints), which, when both run here, takes the ticks the ingesters wrote
  from a :class:`~tickcast.service.live.handoff.Handoff` once it has caught up with the streams
  (``worker.handoff``);
- :class:`~tickcast.service.ops.metrics.Metrics` on ``metrics.host:metrics.port`` with
  ``/healthz`` and ``/readyz`` (Redis answers PING and ticks arrived in the last ``stale_s``
  seconds).

Ownership (:mod:`tickcast.service.bus.lease`): the worker takes the instruments' ``owner``
leases before restoring them, the ingest side their ``ingester`` leases before connecting the
feeds (and renews them; losing one stops the service with exit code 1): a second process on the
same instruments waits for the first.

Shutdown (:meth:`Service.request_stop`, wired to SIGTERM, SIGINT and SIGHUP by :meth:`Service.run`):
stop the feeds, flush the ingest buffers, let the worker finish its step and checkpoint, stop the
simulators and the metrics server — all within ``stop_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import signal
import time
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio

from tickcast.service import TickcastError
from tickcast.service.bus import connection, keys
from tickcast.service.bus.lease import SymbolLeases
from tickcast.service.bus.writer import TickWriter
from tickcast.service.feed.reconnect import REDIS_TRANSIENT, is_retryable
from tickcast.service.feed.shell import Feed
from tickcast.service.live.handoff import Handoff
from tickcast.service.live.ingest import Ingester
from tickcast.service.live.sources import OpenSource, open_source, resolve_markets
from tickcast.service.live.worker import Worker
from tickcast.service.ops.config import Settings
from tickcast.service.ops.health import (
    MetricsServer,
    Readiness,
    RedisProbe,
    readiness_stale_s,
    serve_metrics,
)
from tickcast.service.ops.logs import log_context
from tickcast.service.ops.metrics import IngestSnapshot, Metrics
from tickcast.service.ticks import Instrument
from tickcast.service.venues.markets import MarketInfo
from tickcast.service.venues.registry import Source

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
"""Signals that stop the service cleanly (a closed terminal sends SIGHUP)."""
SILENCE_SIGNALS = {signal.SIGUSR1: True, signal.SIGUSR2: False}
"""Simulated sources go silent on SIGUSR1 and send again on SIGUSR2 (as ``tickcast sim``)."""


class ServiceError(TickcastError):
    """The service cannot go on (a lease lost...)."""


# -- the ingesters' counters for the metrics ------------------------------------------------


def ingest_snapshot(venue: str, ingester: Ingester, started_monotonic: float) -> IngestSnapshot:
    """Read one venue's ingester (and feed) counters for :class:`Metrics`."""
    c = ingester.counters()
    st = ingester.stats
    now = time.monotonic()
    routes = getattr(ingester.feed, "routes", {})
    rejected, skipped = ingester.reasons()
    return IngestSnapshot(
        venue=venue,
        received=dict(st.received_by),
        written=dict(st.written_by),
        dropped=dict(st.dropped_by),
        rejected=rejected,
        skipped=skipped,
        reconnects=int(c.get("reconnects", 0)),
        connect_errors=int(c.get("errors", 0)),
        gaps=int(c.get("gaps", 0)),
        missed_trades=int(c.get("missed_trades", 0)),
        watchdog_trips=int(c.get("watchdog_trips", 0)),
        keepalive_timeouts=int(c.get("keepalive_timeouts", 0)),
        duplicates=int(getattr(getattr(ingester.writer, "stats", None), "duplicates", 0)),
        lost_at_failover=int(getattr(getattr(ingester.writer, "stats", None), "lost", 0)),
        queue_depth=int(c.get("queue_depth", 0)),
        batch_sizes=st.batch_sizes,
        routes={
            name: (rs.connected, now - (rs.last_frame_monotonic or started_monotonic))
            for name, rs in routes.items()
        },
    )


async def resume_sequences(opened: OpenSource, writer: TickWriter) -> None:
    """Let a live feed with consecutive trade ids continue from the latest trade stored
    (before this process started), so that the trades nobody received while no process
    ingested are counted as a gap. Simulated sources start a new market: not continued."""
    feed = opened.feed
    if opened.source.simulated or not isinstance(feed, Feed):
        return
    if feed.venue.sequential_trade_ids:
        feed.last_trade_ids = await writer.last_trade_ids(opened.source.label, feed.symbols)


def merged_counters(ingesters: Sequence[Ingester]) -> dict[str, int]:
    """Every ingester's :meth:`~Ingester.counters`, summed key by key."""
    out: dict[str, int] = {}
    for ingester in ingesters:
        for key, value in ingester.counters().items():
            out[key] = out.get(key, 0) + value
    return out


def settle_heap() -> None:
    """Collect, then move every object alive to the collector's permanent generation.

    What start-up leaves (modules, ccxt, pydantic, numpy, the restored learners) lives as long
    as the process; without this every full collection walks it again: tens of milliseconds
    with the event loop stopped, every few seconds at thousands of ticks per second.
    """
    gc.collect()
    gc.freeze()


# -- the service -----------------------------------------------------------------------------


class Service:
    """Ingest and/or worker, metrics (+ simulators) in one process; see the module docstring.

    Parameters
    ----------
    settings : Settings
        ``exchange.name`` lists the sources, ``exchange.symbols`` / ``venue_symbols`` their
        symbols.
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
        Simulated sources only: multiply every symbol's trade and quote rates (benchmarks).
    online : bool
        Live venues: load market metadata from the venue's REST API (``False``: the metadata
        shipped with tickcast, no REST call).
    metrics : Metrics, optional
        Count into these metrics, which their owner serves (``--pool``: one endpoint for the
        process across its services); by default the service makes and serves its own.
    token : str, optional
        Owner token of its leases (default: a new :func:`~tickcast.service.bus.lease.owner_token`).
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
        metrics: Metrics | None = None,
        token: str | None = None,
    ) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.sources: list[Source] = settings.exchange.sources()
        self.instruments: tuple[Instrument, ...] = tuple(settings.exchange.instruments())
        self.run_ingest = ingest
        self.run_worker = work
        self.stop_timeout_s = stop_timeout_s
        self.stale_s = stale_s if stale_s is not None else readiness_stale_s(settings)
        self.sim_rate_scale = sim_rate_scale
        self.online = online
        role = "run" if ingest and work else "ingest" if ingest else "worker"
        self.metrics = metrics if metrics is not None else Metrics(self.instruments, role=role)
        self.serve_metrics = metrics is None
        self.token = token
        self.opened: list[OpenSource] = []
        self.ingesters: dict[str, Ingester] = {}
        """The ingester of each source, by venue label."""
        self.worker: Worker | None = None
        self.ingest_leases: SymbolLeases | None = None
        self.ingest_lease_lost = False
        """Another process took an ingest lease: the ingesters stop without writing more."""
        self.writers: list[TickWriter] = []
        self.metrics_server: MetricsServer | None = None
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._last_received = 0
        self._last_flow = 0.0

    @property
    def sims(self) -> list[Any]:
        """The simulated exchanges this service runs."""
        return [o.sim for o in self.opened if o.sim is not None]

    def counters(self) -> dict[str, int]:
        """Every ingester's counters, summed (see :func:`merged_counters`)."""
        return merged_counters(list(self.ingesters.values()))

    def _leases(self, client: connection.AsyncClient, kind: str) -> SymbolLeases:
        """Leases on the instruments' ``owner`` (worker) or ``ingester`` keys."""
        prefix = self.settings.redis.prefix
        lease_keys = {
            str(i): keys.symbol_key(prefix, i.venue, i.symbol, kind) for i in self.instruments
        }
        leases = SymbolLeases(
            client, lease_keys, ttl_s=self.settings.worker.lease_ttl_s, token=self.token
        )
        self.metrics.add_leases(kind, leases)
        return leases

    async def _keep(self, leases: SymbolLeases) -> None:
        """Renew the ingest leases until cancelled (taking back those that expired while Redis
        was out of reach, if nobody took them); raise when one was taken."""
        while True:
            await asyncio.sleep(leases.renew_every_s)
            try:
                lost = await leases.renew(retake=True)
            except REDIS_TRANSIENT as exc:
                log.warning("cannot renew the ingest leases, Redis unreachable (%s)", exc)
                continue
            if leases.retaken:
                for writer in self.writers:
                    writer.forget_tops()  # another writer may have added entries meanwhile
            if lost:
                self.ingest_lease_lost = True
                raise ServiceError(
                    f"the ingest lease of {', '.join(lost)} was taken by another process: "
                    "stopping without writing the ticks still buffered"
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

    def silence(self, silent: bool) -> None:
        """Make this service's simulated exchanges send no data (``silent``) or send again:
        the ``silent`` fault, which keeps connections open and answers pings."""
        for sim in self.sims:
            sim.faults.silent = silent
        log.warning("simulated exchanges %s", "silent" if silent else "sending again")

    def tick_clock(self) -> float:
        """Monotonic time of the latest tick received (ingest) or read (worker); 0 if none."""
        worker = self.worker.last_tick_monotonic if self.worker is not None else 0.0
        return max(self._last_flow, worker)

    async def _markets(self) -> dict[str, list[MarketInfo]]:
        """Every source's markets, by venue label; raises on a symbol a venue does not list."""
        exchange = self.settings.exchange
        out: dict[str, list[MarketInfo]] = {}
        for source in self.sources:
            symbols = exchange.symbols_of(source)
            out[source.label] = await resolve_markets(
                source, symbols, self.settings, online=self.online
            )
        return out

    async def _build_ingest(
        self,
        client: connection.AsyncClient,
        handoff: Handoff | None,
        markets: dict[str, list[MarketInfo]],
    ) -> None:
        for source in self.sources:
            opened = await open_source(
                source, markets[source.label], self.settings, rate_scale=self.sim_rate_scale
            )
            self.opened.append(opened)
            writer = TickWriter(client, self.settings)
            writer.tap = handoff
            self.writers.append(writer)
            await resume_sequences(opened, writer)
            ingester = Ingester.from_settings(opened.feed, writer, self.settings)
            self.ingesters[source.label] = ingester
            self.metrics.add_ingest_source(
                functools.partial(ingest_snapshot, source.label, ingester, opened.started_monotonic)
            )

    def positions(self) -> dict[Instrument, tuple[str, str]]:
        """The worker's position in each tick stream (for the lag metric; read from the
        metrics server's thread: plain attribute reads)."""
        worker = self.worker
        if worker is None or not worker.restored:
            return {}
        return {i: (s.ticks_key, s.last_id) for i, s in list(worker.states.items())}

    def _start_metrics(self) -> list[Readiness | RedisProbe]:
        """Serve the metrics (when enabled); return the probes to close at the end."""
        if not self.settings.metrics.enabled or not self.serve_metrics:
            return []
        positions = self.positions if self.run_worker else None
        self.metrics_server, probes = serve_metrics(
            self.metrics, self.settings, self.redis_url, self.tick_clock, self.stale_s, positions
        )
        return probes

    async def _watch_flow(self) -> None:
        """Track when the ingesters last received ticks (for readiness)."""
        while True:
            received = sum(i.stats.received for i in self.ingesters.values())
            if received != self._last_received:
                self._last_received = received
                self._last_flow = time.monotonic()
            await asyncio.sleep(0.2)

    async def run(self, *, handle_signals: bool = True) -> int:
        """Run until :meth:`request_stop` (or SIGTERM/SIGINT/SIGHUP); return the exit code (0).

        Raises
        ------
        MarketError
            Before anything starts, when a venue does not list a configured symbol.
        """
        markets = await self._markets() if self.run_ingest else {}
        loop = asyncio.get_running_loop()
        if handle_signals:
            for sig in STOP_SIGNALS:
                loop.add_signal_handler(sig, self.request_stop)
        ingest_client = connection.connect(self.redis_url, self.settings)
        worker_client = connection.connect(self.redis_url, self.settings)
        probes: list[Readiness | RedisProbe] = []
        tasks: dict[str, asyncio.Task[Any]] = {}
        try:
            probes = self._start_metrics()
            handoff = None
            if self.run_worker and self.run_ingest and self.settings.worker.handoff:
                handoff = Handoff(self.instruments)
            if self.run_worker:
                self.worker = Worker(
                    worker_client,
                    self.settings,
                    instruments=self.instruments,
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
                await self._build_ingest(ingest_client, handoff, markets)
                for label, ingester in self.ingesters.items():
                    with log_context(venue=label):  # the task's log lines carry the venue
                        tasks[f"ingest {label}"] = loop.create_task(
                            ingester.run(), name=f"ingest {label}"
                        )
            tasks["flow"] = loop.create_task(self._watch_flow(), name="flow")
            if handle_signals and self.sims:
                for sig, silent in SILENCE_SIGNALS.items():
                    loop.add_signal_handler(sig, self.silence, silent)
            settle_heap()
            self.ready.set()
            stop = loop.create_task(self._stop.wait(), name="stop")
            done, _ = await asyncio.wait(
                {stop, *tasks.values()}, return_when=asyncio.FIRST_COMPLETED
            )
            stop.cancel()
            failed = [t for t in done if t is not stop and not t.cancelled() and t.exception()]
            refused: BaseException | None = None
            for task in failed:
                exc = task.exception()
                if isinstance(exc, redis.RedisError) and not is_retryable(exc):
                    refused = exc  # the CLI says it in one line (exit code 2)
                    log.error("%s failed: %s", task.get_name(), exc)
                else:
                    log.error("%s failed", task.get_name(), exc_info=exc)
            await self._shutdown(tasks)
            if refused is not None:
                raise refused
            return 1 if failed else 0
        finally:
            if handle_signals:
                for sig in (*STOP_SIGNALS, *SILENCE_SIGNALS):
                    loop.remove_signal_handler(sig)
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            for sim in self.sims:
                await sim.stop()
            if self.metrics_server is not None:
                self.metrics_server.stop()
            for health_probe in probes:
                health_probe.close()
            await ingest_client.aclose()
            await worker_client.aclose()

    async def _shutdown(self, tasks: dict[str, asyncio.Task[Any]]) -> None:
        """Stop the feeds and flush, then stop the worker (checkpoint), within the timeout."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.stop_timeout_s):
                for ingester in self.ingesters.values():
                    if self.ingest_lease_lost:
                        ingester.abandon()
                    else:
                        ingester.stop()
                for label in self.ingesters:
                    with contextlib.suppress(Exception):
                        await tasks[f"ingest {label}"]
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
