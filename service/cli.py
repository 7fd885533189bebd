"""The ``tickcast`` command line: one settings object built here and passed down.

Each subcommand's ``--help`` shows its module docstring as plain text: :func:`plain_text` takes
the reST markup out (the docstrings keep it for the API documentation), :class:`HelpFormatter`
fills each paragraph to the terminal's width and names an option's default only when it has
one.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import re
import sys
from collections.abc import Sequence
from typing import Any

import redis

from tickcast.service import TickcastError, __version__


def command_modules() -> list[str]:
    """Names of the subcommand modules under ``tickcast.service.commands``, sorted: those with
    a ``register(subparsers)`` (the others, such as ``view``, serve the commands)."""
    import tickcast.service.commands as commands

    names = sorted(info.name for info in pkgutil.iter_modules(commands.__path__))
    return [n for n in names if hasattr(_command(n), "register")]


def _command(name: str) -> Any:
    return importlib.import_module(f"tickcast.service.commands.{name}")


_LITERAL = re.compile(r"``(.+?)``", re.DOTALL)
_ROLE = re.compile(r":(?:[a-z]+:)+`([^`]+)`")
_DEFAULT_ROLE = re.compile(r"`([^`]+)`")
_ITEM = re.compile(r"^\s*(?:[-*•]|\d+\.)\s")


def _role_text(match: re.Match[str]) -> str:
    """What a cross-reference shows: ``~a.b.C`` -> ``C``, ``title <target>`` -> ``title``."""
    text = match.group(1)
    title, bracket, _ = text.partition(" <")
    if bracket:
        return title.strip()
    return text[1:].rsplit(".", 1)[-1] if text.startswith("~") else text


def plain_text(text: str | None) -> str | None:
    """``text`` without reST markup: literals, roles and default-role references as plain text.

    Examples
    --------
    >>> plain_text("``tickcast run``: see :mod:`tickcast.service.bus.lease` and "
    ...            ":class:`~tickcast.service.live.service.Service`")
    'tickcast run: see tickcast.service.bus.lease and Service'
    >>> plain_text(":func:`the leases <tickcast.service.bus.lease>`, `x`"), plain_text(None)
    ('the leases, x', None)
    """
    if text is None:
        return None
    text = _LITERAL.sub(r"\1", text)
    text = _ROLE.sub(_role_text, text)
    return _DEFAULT_ROLE.sub(r"\1", text)


class HelpFormatter(argparse.HelpFormatter):
    """Help with each paragraph of a description filled on its own (blank lines and list
    items kept), and ``(default: X)`` after an option's help when the option has a value by
    default that its help does not already state (never for ``None`` or a flag)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        blocks = []
        for paragraph in re.split(r"\n\s*\n", text.strip()):
            items: list[list[str]] = []
            for line in paragraph.splitlines():
                if not items or _ITEM.match(line):
                    items.append([])
                items[-1].append(line.strip())
            fill = super()._fill_text
            blocks.append("\n".join(fill(" ".join(item), width, indent) for item in items))
        return "\n\n".join(blocks)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        shown = "default" in text.lower() or default is None or default is argparse.SUPPRESS
        positional_optional = action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE)
        if shown or action.nargs == 0 or not (action.option_strings or positional_optional):
            return action.help
        return f"{text} (default: %(default)s)"


class _FlagsOnlyFormatter(HelpFormatter):
    """:class:`HelpFormatter` for a parser that did not ask for its defaults to be shown."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help


def tidy_help(parser: argparse.ArgumentParser) -> None:
    """Make ``parser``'s help and every subcommand's plain text (:func:`plain_text`), with
    :class:`HelpFormatter` (defaults shown where the parser asked for them)."""
    formatter = parser.formatter_class
    wants_defaults = isinstance(formatter, type) and issubclass(
        formatter, argparse.ArgumentDefaultsHelpFormatter
    )
    parser.formatter_class = HelpFormatter if wants_defaults else _FlagsOnlyFormatter
    parser.description = plain_text(parser.description)
    parser.epilog = plain_text(parser.epilog)
    for group in parser._action_groups:
        group.description = plain_text(group.description)
    for action in parser._actions:
        if action.help is not argparse.SUPPRESS:
            action.help = plain_text(action.help)
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                choice.help = plain_text(choice.help)
            for sub in dict.fromkeys(action.choices.values()):
                tidy_help(sub)


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
        _command(name).register(subparsers)
    tidy_help(parser)
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
