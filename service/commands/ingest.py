"""``tickcast ingest``: a venue's websocket feed into Redis streams, with metrics, nothing else.

The ingest half of ``tickcast run`` (the same service with the worker off): pair it with
``tickcast worker`` processes to scale out. With ``--exchange sim`` the simulated exchange runs
in the same process and the Binance feed connects to it over loopback, exactly as it would to
the venue. Redis: ``redis.url`` (``TICKCAST__REDIS__URL``, ``--redis-url``) when set, else the
embedded one under the state directory.

Metrics (``/metrics``: ticks received / written / rejected / dropped, reconnects, gaps,
watchdog trips, feed lag, queue depth, batch sizes; ``/healthz``; ``/readyz``) listen on
``metrics.host`` (127.0.0.1 unless configured) and port 9465 unless ``metrics.port`` is
configured (settings file, ``TICKCAST__METRICS__PORT``, ``--set metrics.port=N``) or
``--metrics-port`` is given (0 = a free one): ``run`` and ``worker`` default to 9464, so an
ingester and a worker on one machine do not collide. ``--set metrics.enabled=false``: none.

One ingester per symbol: it takes the symbols' ``ingester`` leases in Redis before connecting
(a second one on the same symbols waits; see :mod:`tickcast.service.bus.lease`).

``--pool``: this process is one of a pool of ``tickcast ingest --pool`` processes on the same
Redis and settings, which split the configured symbols about evenly between them (each runs
one feed per venue on its share), take a stopped or killed member's symbols over within the
lease's time to live, and hand symbols to a new member (see :mod:`tickcast.service.live.pool`).

SIGTERM / SIGINT / SIGHUP (or ``--seconds``): stop the feed, flush the buffer, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from tickcast.service.tasks import cancel_and_wait

if TYPE_CHECKING:
    from tickcast.service.live.service import Service
    from tickcast.service.ops.config import Settings

log = logging.getLogger("tickcast.service.live.ingest")

METRICS_PORT = 9465
"""Metrics port of ``tickcast ingest`` when ``metrics.port`` is not configured."""


def register(subparsers: Any) -> None:
    """Add the ``ingest`` subcommand."""
    from tickcast.service.commands.run import add_service_arguments

    parser = subparsers.add_parser(
        "ingest",
        help="ingest a venue's trades and quotes into Redis streams (with metrics)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--exchange",
        help="sources, comma-separated: sim (default), sim:<venue>, a venue "
        "(binanceusdm, binancecoinm, bybit, bitget, bingx, okx) or ccxt:<id>",
    )
    add_service_arguments(parser)
    parser.add_argument("--redis-url", help="Redis URL (default: configured, else embedded)")
    parser.add_argument("--speed", type=float, help="simulated sources: x real time (0 = flat out)")
    parser.add_argument("--seconds", type=float, help="stop after this long (default: never)")
    parser.add_argument(
        "--stats-every", type=float, default=10.0, help="log the counters every N s (0 = never)"
    )
    parser.add_argument(
        "--offline",
        action="store_true",
        help="live venues: market metadata from the table shipped with tickcast, no REST call",
    )
    parser.add_argument(
        "--pool",
        action="store_true",
        help="share the configured symbols with the other ingest --pool processes on this "
        "Redis, about evenly, and take over those of a member that stops",
    )
    parser.set_defaults(func=run)


def load_settings(args: argparse.Namespace) -> Settings:
    """The command's settings: ``run``'s flags, ``--redis-url``, and the ingest metrics port.

    ``metrics.port`` becomes :data:`METRICS_PORT` unless a source (file, environment,
    ``--set``, ``--metrics-port``) sets it.
    """
    from tickcast.service.commands.run import overrides
    from tickcast.service.ops.config import settings_from_args

    settings = settings_from_args(args, {**overrides(args), "redis.url": args.redis_url})
    if "port" in settings.metrics.model_fields_set:
        return settings
    metrics = settings.metrics.model_copy(update={"port": METRICS_PORT})
    return settings.model_copy(update={"metrics": metrics})


def run(args: argparse.Namespace) -> int:
    """Ingest until a signal or ``--seconds``; return the exit code."""
    from tickcast.service.bus.embedded import redis_url_for
    from tickcast.service.commands.run import configure_logs

    configure_logs(args)
    settings = load_settings(args)
    with redis_url_for(settings) as url:
        online = not args.offline
        if args.pool:
            return asyncio.run(ingest_pool(settings, url, args.seconds, args.stats_every, online))
        code, _ = asyncio.run(ingest(settings, url, args.seconds, args.stats_every, online=online))
    return code


async def ingest(
    settings: Settings,
    redis_url: str,
    seconds: float | None = None,
    stats_every: float = 10.0,
    *,
    online: bool = True,
    handle_signals: bool = True,
) -> tuple[int, dict[str, int]]:
    """Run the ingest service of ``settings`` into ``redis_url`` until a stop signal or
    ``seconds``.

    Returns
    -------
    tuple of (int, dict)
        The service's exit code (0: stopped cleanly) and the ingester's final counters
        (``{}`` when it never started).
    """
    from tickcast.service.live.service import Service
    from tickcast.service.ops.redaction import redact_url

    service = Service(settings, redis_url, work=False, online=online)
    log.info(
        "ingesting %s into %s",
        " ".join(str(i) for i in settings.exchange.instruments()),
        redact_url(redis_url),
    )
    async with _timed_and_reported(service.request_stop, lambda: service, seconds, stats_every):
        code = await service.run(handle_signals=handle_signals)
    counters = service.counters()
    log.info("ingest stopped: %s", format_counters(counters))
    return code, counters


async def ingest_pool(
    settings: Settings,
    redis_url: str,
    seconds: float | None = None,
    stats_every: float = 10.0,
    online: bool = True,
) -> int:
    """Take part in the ingest pool of ``settings`` on ``redis_url`` until a stop signal or
    ``seconds``; return the exit code."""
    from tickcast.service.live.pool import Pool
    from tickcast.service.ops.redaction import redact_url

    pool = Pool(settings, redis_url, role="ingest", online=online)
    log.info("ingest pool on %s", redact_url(redis_url))
    async with _timed_and_reported(pool.request_stop, lambda: pool.service, seconds, stats_every):
        return await pool.run()


@contextlib.asynccontextmanager
async def _timed_and_reported(
    stop: Callable[[], None],
    current: Callable[[], Service | None],
    seconds: float | None,
    every: float,
) -> AsyncIterator[None]:
    """While the body runs: ``stop()`` after ``seconds`` (never when None), and :func:`report`
    of the service ``current()`` returns every ``every`` seconds."""
    loop = asyncio.get_running_loop()
    timer = loop.call_later(seconds, stop) if seconds is not None else None
    reporter = loop.create_task(report(current, every))
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()
        await cancel_and_wait(reporter)


async def report(current: Callable[[], Service | None], every: float) -> None:
    """Log the ingesters' counters of the service ``current()`` returns every ``every``
    seconds (never when ``every <= 0``)."""
    if every <= 0:
        return
    while True:
        await asyncio.sleep(every)
        service = current()
        for label, ingester in service.ingesters.items() if service is not None else ():
            log.info("ingest %s: %s", label, format_counters(ingester.counters()))


_SHOWN = ("received", "written", "rejected", "dropped", "reconnects", "gaps", "watchdog_trips")


def format_counters(counters: dict[str, int]) -> str:
    """``received=N written=N ... queue_depth=N``: the counters of the log lines."""
    shown = [f"{k}={counters.get(k, 0)}" for k in _SHOWN]
    return " ".join([*shown, f"queue_depth={counters.get('queue_depth', 0)}"])
