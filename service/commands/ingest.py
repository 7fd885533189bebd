"""``tickcast ingest``: a venue's websocket feed into Redis streams, and nothing else.

With ``--exchange sim`` the simulated exchange runs in the same process and the Binance feed
connects to it over loopback, exactly as it would to the venue. Redis: ``redis.url``
(``TICKCAST__REDIS__URL``, ``--redis-url``) when set, else the embedded one under the state
directory. SIGINT / SIGTERM (or ``--seconds``): stop the feed, flush the buffer, exit 0.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tickcast.service.config import Settings
    from tickcast.service.feeds.binance_ws import BinanceFeed
    from tickcast.service.ingest import Ingester
    from tickcast.service.sim.server import SimExchange

SIM_VENUE = "sim"


def register(subparsers: Any) -> None:
    """Add the ``ingest`` subcommand."""
    from tickcast.service.commands.config import add_config_arguments

    parser = subparsers.add_parser(
        "ingest",
        help="ingest a venue's trades and quotes into Redis streams",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--exchange", choices=("sim", "binanceusdm"), help="data source")
    parser.add_argument("--symbols", help="comma-separated unified symbols, e.g. BTC/USDT:USDT")
    parser.add_argument("--redis-url", help="Redis URL (default: configured, else embedded)")
    parser.add_argument("--speed", type=float, help="sim only: x real time (0 = flat out)")
    parser.add_argument("--seconds", type=float, help="stop after this long (default: never)")
    parser.add_argument(
        "--stats-every", type=float, default=10.0, help="log the counters every N s (0 = never)"
    )
    parser.add_argument(
        "--offline", action="store_true", help="binanceusdm: no REST call for market metadata"
    )
    add_config_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Ingest until a signal or ``--seconds``; return the exit code."""
    import asyncio

    from tickcast.service.config import settings_from_args
    from tickcast.service.embedded import redis_url_for

    settings = settings_from_args(
        args,
        {
            "exchange.name": args.exchange,
            "exchange.symbols": args.symbols,
            "redis.url": args.redis_url,
            "sim.speed": args.speed,
        },
    )
    with redis_url_for(settings) as url:
        asyncio.run(ingest(settings, url, args.seconds, args.stats_every, online=not args.offline))
    return 0


async def ingest(
    settings: Settings,
    redis_url: str,
    seconds: float | None = None,
    stats_every: float = 10.0,
    *,
    online: bool = True,
) -> dict[str, int]:
    """Run the ingester of ``settings`` into ``redis_url``; return its final counters."""
    import asyncio
    import contextlib
    import logging
    import signal

    from tickcast.service.bus import connect
    from tickcast.service.ingest import Ingester
    from tickcast.service.writer import TickWriter

    log = logging.getLogger("tickcast.service.ingest")
    sim = await start_sim(settings) if settings.exchange.name == SIM_VENUE else None
    client = connect(redis_url, settings)
    try:
        feed = await build_feed(settings, sim, online=online)
        ingester = Ingester.from_settings(feed, TickWriter(client, settings), settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, ingester.stop)
        if seconds is not None:
            loop.call_later(seconds, ingester.stop)
        reporter = loop.create_task(report(ingester, stats_every))
        log.info(
            "ingesting %s %s into %s",
            settings.exchange.name,
            ",".join(settings.exchange.symbols),
            _redacted(redis_url),
        )
        try:
            await ingester.run()
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        counters = ingester.counters()
        log.info("ingest stopped: %s", _format(counters))
        return counters
    finally:
        await client.aclose()
        if sim is not None:
            await sim.stop()


async def start_sim(settings: Settings) -> SimExchange:
    """Start the simulated exchange for ``settings.exchange.symbols`` (event time = now)."""
    import time

    from tickcast.service.sim.market import SyntheticMarket
    from tickcast.service.sim.server import SimExchange
    from tickcast.service.sim.symbols import specs_for

    market = SyntheticMarket(
        specs_for(settings.exchange.symbols),
        seed=settings.sim.seed,
        start_ms=time.time_ns() // 1_000_000,
        venue=SIM_VENUE,
        oracle_memory_s=None,
    )
    cfg = settings.sim
    sim = SimExchange(market.ticks(), host=cfg.host, port=cfg.port, speed=cfg.speed)
    await sim.start()
    return sim


async def build_feed(
    settings: Settings, sim: SimExchange | None, *, online: bool = True
) -> BinanceFeed:
    """The Binance USDⓈ-M feed of ``settings``, pointed at ``sim`` when given."""
    from tickcast.service import service
    from tickcast.service.feeds.binance import VENUE

    if sim is not None:
        public, market = sim.url + "/public", sim.url + "/market"
        feed: BinanceFeed = await service.build_feed(settings, SIM_VENUE, public, market)
        return feed
    urls = settings.exchange.urls.binanceusdm
    feed = await service.build_feed(settings, VENUE, urls.public, urls.market, online=online)
    return feed


async def report(ingester: Ingester, every: float) -> None:
    """Log the ingester's counters every ``every`` seconds (never when ``every <= 0``)."""
    import asyncio
    import logging

    if every <= 0:
        return
    log = logging.getLogger("tickcast.service.ingest")
    while True:
        await asyncio.sleep(every)
        log.info("ingest: %s", _format(ingester.counters()))


_SHOWN = ("received", "written", "rejected", "dropped", "reconnects", "gaps", "watchdog_trips")


def _format(counters: dict[str, int]) -> str:
    shown = [f"{k}={counters.get(k, 0)}" for k in _SHOWN]
    return " ".join([*shown, f"queue_depth={counters.get('queue_depth', 0)}"])


def _redacted(url: str) -> str:
    from tickcast.service.config import redact_url

    return redact_url(url)
