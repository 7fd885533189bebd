"""``tickcast config show``: print the merged settings (file < environment < flags), secrets
redacted, as TOML (default) or JSON.

Other subcommands add the same settings flags with :func:`add_config_arguments` (light: no
pydantic import at parser build time) and load with
:func:`tickcast.service.ops.config.settings_from_args` inside their ``run``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config PATH`` and repeatable ``--set KEY=VALUE`` to a subcommand's parser."""
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="PATH",
        help="TOML settings file (environment TICKCAST__SECTION__KEY and flags override it)",
    )
    parser.add_argument(
        "--set",
        dest="set_overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting by dotted key, e.g. --set sim.seed=7 (repeatable; "
        "VALUE is a TOML literal or a plain string)",
    )


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def to_toml(data: Mapping[str, Any], _table: str = "") -> str:
    """Render nested plain data as TOML (``None`` values become comments: TOML has no null)."""
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            tables.append((f"{_table}.{key}" if _table else key, value))
        elif value is None:
            lines.append(f"# {key} = (unset)")
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    out = ""
    if _table:
        out += f"[{_table}]\n"
    out += "".join(line + "\n" for line in lines)
    for name, table in tables:
        out += "\n" + to_toml(table, name)
    return out.lstrip("\n") if not _table else out


def register(subparsers: Any) -> None:
    """Add ``config`` and its ``show`` action."""
    parser = subparsers.add_parser("config", help="inspect the settings")
    actions = parser.add_subparsers(dest="config_action", metavar="ACTION", required=True)
    show = actions.add_parser(
        "show",
        help="print the merged settings with secrets redacted",
        description="Print the merged settings (defaults < --config file < TICKCAST__* "
        "environment < flags) with secrets redacted.",
    )
    add_config_arguments(show)
    show.add_argument("--format", choices=("toml", "json"), default="toml", help="output format")
    show.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the merged settings; return 0."""
    from tickcast.service.ops.config import settings_from_args

    data = settings_from_args(args).display()
    if args.format == "json":
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        print(to_toml(data), end="")
    return 0
