"""``tickcast schema signal``: print the published JSON schema of a contract."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``schema`` subcommand."""
    parser = subparsers.add_parser(
        "schema",
        help="print the JSON schema of a published contract",
        description="Print the JSON schema (draft 2020-12) of a published contract.",
    )
    parser.add_argument("name", choices=("signal",), help="contract name")
    parser.add_argument("--compact", action="store_true", help="one line instead of indented")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the schema to stdout."""
    import json

    from tickcast.service.schema import signal_json_schema

    schema = signal_json_schema()
    print(json.dumps(schema, indent=None if args.compact else 2, ensure_ascii=False))
    return 0
