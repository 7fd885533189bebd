"""The ``tickcast`` command line: one settings object built here and passed down."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

import redis

from tickcast.service import TickcastError, __version__


def command_modules() -> list[str]:
    """Names of the subcommand modules under ``tickcast.service.commands``, sorted."""
    import tickcast.service.commands as commands

    return sorted(info.name for info in pkgutil.iter_modules(commands.__path__))


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="tickcast",
        description="Live streaming prediction service for crypto futures.",
    )
    parser.add_argument("--version", action="version", version=f"tickcast {__version__}")
    parser.add_argument(
        "--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING; default INFO)"
    )
    parser.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="log line format"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in command_modules():
        module = importlib.import_module(f"tickcast.service.commands.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from tickcast.service.ops.logs import configure_logging

    configure_logging(args.log_level, args.log_format)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        code: int = args.func(args)
    except TickcastError as exc:
        logging.getLogger("tickcast").debug("command failed", exc_info=True)
        print(f"tickcast: error: {exc}", file=sys.stderr)
        return 2
    except redis.exceptions.AuthenticationError as exc:
        logging.getLogger("tickcast").debug("command failed", exc_info=True)
        print(f"tickcast: error: Redis refused the credentials: {exc}", file=sys.stderr)
        return 2
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        from tickcast.service.feed.reconnect import certificate_refused

        logging.getLogger("tickcast").debug("command failed", exc_info=True)
        if certificate_refused(exc):
            message = f"Redis's TLS certificate did not verify: {exc}"
            print(f"tickcast: error: {message}", file=sys.stderr)
            return 2
        print(f"tickcast: error: Redis unreachable: {exc}", file=sys.stderr)
        return 1
    except redis.exceptions.NoPermissionError as exc:
        logging.getLogger("tickcast").debug("command failed", exc_info=True)
        print(f"tickcast: error: Redis refused a command: {exc} (see its ACL)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
