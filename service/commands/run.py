"""``tickcast run``: ingest + worker + metrics in one process (on ``sim`` and ``sim:<venue>``,
the simulated exchange too), with a live view when stdout is a terminal.

``--exchange binanceusdm,bybit --symbols BTC/USDT:USDT,ETH/USDT:USDT`` runs several venues, one
learner per (venue, symbol); ``exchange.venue_symbols`` in the config file gives a venue its own
symbols. A symbol a venue does not list stops the command at once (exit code 2).

With no ``redis.url`` configured it runs a private Redis under the state directory, which
``tickcast subscribe`` and ``tickcast status`` in another terminal find by themselves.
``--init MODEL`` (``worker.init_model``) starts every symbol that has no checkpoint from a model
file written by ``tickcast train``; it keeps learning online from there. ``--horizons
1000,10000`` learns and publishes several horizons per symbol (``worker.horizon_ms``, then
``worker.extra_horizons_ms``): one signal per sample, version 2 of the schema.

The live view (``--view`` / ``--no-view``; on when stdout is a terminal) keeps on screen the
Redis URL (its password hidden) and the metrics address; each venue's feed: connecting,
connected, silent for N s, or retrying in N s with the last error; the table of ``tickcast
subscribe``, where a symbol without signals yet says why (its feed's state, no ticks yet, or
the ticks and samples so far); and the latest log lines.

Ctrl-C or q in the view, SIGTERM, SIGINT or SIGHUP: stop the feed, flush, checkpoint, exit 0
(within 10 s). The view reads Ctrl-C as a key, so that under ``make run`` it stops tickcast
alone, cleanly, and make ends with status 0; Ctrl-\\ and Ctrl-Z keep their usual meaning.
SIGUSR1 makes the simulated exchanges go silent (connections open, pings answered, no data) and
SIGUSR2 makes them send again, as with ``tickcast sim``: a way to try the feed alerts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from typing import TYPE_CHECKING, Any

from tickcast.service.commands.view import Keys, live_view
from tickcast.service.tasks import cancel_and_wait

if TYPE_CHECKING:
    from tickcast.service.live.service import Service
    from tickcast.service.ops.config import Settings

log = logging.getLogger("tickcast.service.run")


def add_service_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by ``run`` and ``worker``."""
    from tickcast.service.commands.config import add_config_arguments

    add_config_arguments(parser)
    parser.add_argument(
        "--symbols", help="comma-separated unified symbols, e.g. BTC/USDT:USDT,ETH/USDT:USDT"
    )
    parser.add_argument("--metrics-port", type=int, help="Prometheus port (0 = a free one)")
    parser.add_argument(
        "--log-format",
        dest="command_log_format",
        choices=("text", "json"),
        help="log line format (json for daemons)",
    )


def add_init_argument(parser: argparse.ArgumentParser) -> None:
    """``--init MODEL`` of ``run`` and ``worker`` (``worker.init_model``)."""
    parser.add_argument(
        "--init",
        metavar="MODEL",
        help="start every symbol that has no checkpoint from this model file (tickcast train); "
        "a checkpoint always wins",
    )


def add_horizons_argument(parser: argparse.ArgumentParser) -> None:
    """``--horizons`` of ``run`` and ``worker`` (``worker.horizon_ms`` and
    ``worker.extra_horizons_ms``)."""
    from tickcast.service.commands.backtest import parse_horizons

    parser.add_argument(
        "--horizons",
        type=parse_horizons,
        metavar="MS,MS...",
        help="prediction horizons in ms, the main one first (e.g. 1000,10000): sets "
        "worker.horizon_ms and worker.extra_horizons_ms",
    )


def _horizon_overrides(horizons: list[int] | None) -> dict[str, Any]:
    """The dotted settings ``--horizons`` sets (none when not given)."""
    if horizons is None:
        return {}
    return {"worker.horizon_ms": horizons[0], "worker.extra_horizons_ms": horizons[1:]}


def check_settings(settings: Settings) -> None:
    """What ``run`` and ``worker`` check before anything connects: ``worker.init_model``."""
    from tickcast.service.live.symbolstate import check_init_model

    check_init_model(settings)


def register(subparsers: Any) -> None:
    """Add the ``run`` subcommand."""
    parser = subparsers.add_parser(
        "run",
        help="run the live service: ingest, worker and metrics in one process",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--exchange",
        help="sources, comma-separated: sim (default), sim:<venue>, a venue "
        "(binanceusdm, binancecoinm, bybit, bitget, bingx, okx) or ccxt:<id>",
    )
    add_service_arguments(parser)
    add_init_argument(parser)
    add_horizons_argument(parser)
    parser.add_argument("--speed", type=float, help="simulated sources: x real time (0 = flat out)")
    parser.add_argument(
        "--offline",
        action="store_true",
        help="live venues: market metadata from the table shipped with tickcast, no REST call",
    )
    view = parser.add_mutually_exclusive_group()
    view.add_argument(
        "--view", dest="view", action="store_true", default=None, help="show the live table"
    )
    view.add_argument("--no-view", dest="view", action="store_false", help="logs only")
    parser.set_defaults(func=run)


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Dotted settings overrides from the command's flags."""
    return {
        "exchange.name": getattr(args, "exchange", None),
        "exchange.symbols": args.symbols,
        "metrics.port": args.metrics_port,
        "sim.speed": getattr(args, "speed", None),
        "worker.init_model": getattr(args, "init", None),
        **_horizon_overrides(getattr(args, "horizons", None)),
    }


def configure_logs(args: argparse.Namespace) -> None:
    """Apply ``--log-format`` given after the subcommand."""
    if args.command_log_format is not None:
        from tickcast.service.ops.logs import configure_logging

        configure_logging(args.log_level, args.command_log_format)


async def _log_summaries(service: Service, every_s: float) -> None:
    """Log one line per symbol every ``every_s`` seconds (the view for daemons)."""
    while True:
        await asyncio.sleep(every_s)
        for instrument, st in service.metrics.symbol_stats.items():
            log.info(
                "%s: %d ticks, %d samples, %d signals, hit %.3f, IC %.3f, skill %.3f, "
                "model v%d, latency p50 <= %.0f us",
                instrument,
                st.ticks,
                st.samples,
                st.signals,
                st.hit_rate,
                st.ic,
                st.skill_vs_zero,
                st.model_version,
                st.latency.quantile(0.5) * 1e6,
            )


async def serve(
    settings: Settings,
    redis_url: str,
    *,
    ingest: bool = True,
    view: bool = False,
    online: bool = True,
    keys: Keys | None = None,
) -> int:
    """Run a :class:`Service` (plus the live view on stdout, or periodic summary logs);
    return its code."""
    from tickcast.service.live.service import Service

    service = Service(settings, redis_url, ingest=ingest, online=online)
    loop = asyncio.get_running_loop()
    side = loop.create_task(
        live_view(service, sys.stdout, keys) if view else _log_summaries(service, 30.0)
    )
    await asyncio.sleep(0)  # the view takes the log lines before the service writes any
    try:
        return await service.run()
    finally:
        await cancel_and_wait(side)


def run_service(
    settings: Settings,
    redis_url: str,
    *,
    ingest: bool = True,
    view: bool = False,
    online: bool = True,
    keys: Keys | None = None,
) -> int:
    """Blocking entry point of ``tickcast run`` / ``tickcast worker``."""
    return asyncio.run(
        serve(settings, redis_url, ingest=ingest, view=view, online=online, keys=keys)
    )


def run(args: argparse.Namespace) -> int:
    """Run the service until SIGTERM/SIGINT (or Ctrl-C or q in the view); return its exit
    code."""
    from tickcast.service.bus.embedded import redis_url_for
    from tickcast.service.ops.config import settings_from_args

    configure_logs(args)
    settings = settings_from_args(args, overrides(args))
    check_settings(settings)
    view = args.view if args.view is not None else sys.stdout.isatty()
    keys = Keys.of(sys.stdin) if view else None
    with keys or contextlib.nullcontext(), redis_url_for(settings) as url:
        return run_service(settings, url, view=view, online=not args.offline, keys=keys)
