"""``tickcast worker``: the worker alone (tick streams -> learners -> signals) with metrics.

It reads the tick streams an ingester (``tickcast ingest`` or ``tickcast run``) writes, from
each symbol's checkpoint on; give it the same ``--exchange`` and ``--symbols`` as the ingester
(one learner per venue and symbol). Several workers may split the symbols between them.
``--init MODEL`` (``worker.init_model``) starts every symbol that has no checkpoint from a model
file written by ``tickcast train``. ``--horizons 1000,10000`` learns and publishes several
horizons per symbol (``worker.horizon_ms``, then ``worker.extra_horizons_ms``).

``--pool``: rather than serving every configured symbol, this process is one of a pool of
``tickcast worker --pool`` processes on the same Redis and settings: they split the symbols
about evenly, a new member takes symbols from the most loaded, and a stopped or killed
member's symbols are taken over within the lease's time to live (``worker.lease_ttl_s``),
each from its last checkpoint, without a signal published twice (see
:mod:`tickcast.service.live.pool`). ``tickcast status`` shows who holds what.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tickcast.service.ops.config import Settings


def register(subparsers: Any) -> None:
    """Add the ``worker`` subcommand."""
    from tickcast.service.commands.run import (
        add_horizons_argument,
        add_init_argument,
        add_service_arguments,
    )

    parser = subparsers.add_parser(
        "worker",
        help="run the worker alone: tick streams in, signals out",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--exchange",
        help="the sources whose tick streams it reads, as for run and ingest "
        "(binanceusdm,bybit; default: configured)",
    )
    add_service_arguments(parser)
    add_init_argument(parser)
    add_horizons_argument(parser)
    parser.add_argument(
        "--pool",
        action="store_true",
        help="share the configured symbols with the other worker --pool processes on this "
        "Redis, about evenly, and take over those of a member that stops",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the worker until SIGTERM/SIGINT; return its exit code."""
    from tickcast.service.bus.embedded import redis_url_for
    from tickcast.service.commands.run import (
        check_settings,
        configure_logs,
        overrides,
        run_service,
    )
    from tickcast.service.ops.config import settings_from_args

    configure_logs(args)
    settings = settings_from_args(args, overrides(args))
    check_settings(settings)
    with redis_url_for(settings) as url:
        if args.pool:
            return run_pool(settings, url)
        return run_service(settings, url, ingest=False, view=False)


def run_pool(settings: Settings, url: str) -> int:
    """Take part in the worker pool until SIGTERM/SIGINT; return the exit code."""
    import asyncio

    from tickcast.service.live.pool import Pool

    return asyncio.run(Pool(settings, url, role="worker").run())
