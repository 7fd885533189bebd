"""``tickcast sim``: run the simulated exchange alone, for any client of the venue it speaks.

It serves the seeded synthetic market (or, with ``--replay``, a Binance ``<ns> <json>``
recording at its original pace) on ``ws://HOST:PORT`` in the protocol of ``--dialect`` (Binance
USDⓈ-M by default: ``/public/stream?streams=btcusdt@trade/...``, ``/public/ws/<stream>``,
``/market/...`` for ``aggTrade`` and ``markPrice``; Bybit: ``/v5/public/linear``; OKX:
``/ws/v5/public``...): the venue's own paths, subscription messages, keepalive, compression and
contract sizes. Fault flags make it misbehave on purpose. Stops on SIGINT / SIGTERM (or
``--seconds``).

The synthetic market starts at the wall clock and numbers each symbol's trades from its start
time in ms x 1000 + 1, so a restarted simulator's trade ids continue upwards (a Binance client
that resumes from its last stored id counts the restart as one gap). Event time runs ``--speed``
times faster than the wall clock: a simulator restarted after running faster than real time
starts again from the wall clock, behind the event times it had sent, and a worker that stored
those publishes no new signal until the new market's clock catches up (restart such a
simulator at speed 1, or clear the streams). A client whose clock check is on
(``exchange.event_time_window_s``, 600 s) refuses ticks once ``--speed`` puts event time that
far ahead of the wall clock.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``sim`` subcommand."""
    from tickcast.service.commands.config import add_config_arguments

    parser = subparsers.add_parser(
        "sim",
        help="run the simulated exchange (any venue's wire format)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--dialect", default="binanceusdm", help="the venue whose protocol it speaks"
    )
    parser.add_argument("--host", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (0 = a free one)")
    parser.add_argument("--speed", type=float, help="x real time (0 = as fast as clients read)")
    parser.add_argument("--seed", type=int, help="seed of the synthetic market")
    parser.add_argument("--symbols", help="comma-separated unified symbols")
    parser.add_argument("--replay", type=Path, help="serve this recording instead")
    parser.add_argument("--seconds", type=float, help="stop after this long (default: never)")
    faults = parser.add_argument_group(
        "faults",
        "A running simulator goes silent on SIGUSR1 (as with --silent) and sends again\n"
        "on SIGUSR2; it prints a line for each.",
    )
    faults.add_argument("--drop-every", type=float, metavar="S", help="abort connections every S s")
    faults.add_argument("--silent", action="store_true", help="send no data frames")
    faults.add_argument("--ack-only", action="store_true", help="ack subscriptions, send nothing")
    faults.add_argument("--malformed-every", type=int, metavar="N", help="a bad frame every N")
    faults.add_argument("--duplicate-every", type=int, metavar="N", help="repeat every Nth trade")
    faults.add_argument("--reorder-every", type=int, metavar="N", help="swap every Nth trade")
    add_config_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve until a signal or ``--seconds``; return the exit code."""
    import asyncio

    from tickcast.service.ops.config import settings_from_args
    from tickcast.service.sim.faults import FaultConfig

    settings = settings_from_args(
        args,
        {
            "sim.host": args.host,
            "sim.port": args.port,
            "sim.speed": args.speed,
            "sim.seed": args.seed,
            "exchange.symbols": args.symbols,
        },
    )
    faults = FaultConfig(
        drop_every_s=args.drop_every,
        silent=args.silent,
        ack_only=args.ack_only,
        malformed_every=args.malformed_every,
        duplicate_every=args.duplicate_every,
        reorder_every=args.reorder_every,
    )
    from tickcast.service.venues.registry import venue

    asyncio.run(serve(settings, faults, args.replay, args.seconds, venue(args.dialect)))
    return 0


async def serve(
    settings: Any, faults: Any, replay: Path | None, seconds: float | None, venue: Any
) -> None:
    """Run the simulated exchange of ``settings`` in ``venue``'s dialect until a signal or
    ``seconds``."""
    import asyncio
    import signal

    from tickcast.service.sim.market import SyntheticMarket
    from tickcast.service.sim.server import SimExchange
    from tickcast.service.sim.symbols import specs_for

    cfg = settings.sim
    symbols = list(settings.exchange.symbols)
    market = None
    if replay is None:
        market = SyntheticMarket.live(specs_for(symbols), seed=cfg.seed).ticks()
    sim = SimExchange(
        market,
        dialect=venue.dialect(),
        host=cfg.host,
        port=cfg.port,
        speed=cfg.speed,
        faults=faults,
        replay_path=replay,
    )
    await sim.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, set_silent, faults, True)
    loop.add_signal_handler(signal.SIGUSR2, set_silent, faults, False)
    if seconds is not None:
        loop.call_later(seconds, stop.set)
    markets = [venue.assumed_market(s) for s in symbols]
    print(f"simulated {venue.title} on {sim.url}", flush=True)
    for connection in venue.connections(markets, sim.urls_for(venue)):
        print(f"  {connection.route}: {connection.url}", flush=True)
        for message in connection.subscribe:
            print(f"    subscribe: {message.decode()}", flush=True)
    try:
        await stop.wait()
    finally:
        await sim.stop()
        print(f"served {sim.stats.frames_sent} frames to {sim.stats.connections} connections")


def set_silent(faults: Any, silent: bool) -> None:
    """Switch the ``silent`` fault of a running simulator (SIGUSR1 on, SIGUSR2 off) and say so
    on stdout."""
    faults.silent = silent
    print("silent: sending no data" if silent else "sending data again", flush=True)
