"""``tickcast venues``: the venues tickcast reads natively, with what each one is given.

One line per registered venue: its ``--exchange`` name, title, channels, keepalive and websocket
URLs (the defaults; ``exchange.urls`` overrides them). Any other venue ccxt.pro supports is
``--exchange ccxt:<id>``; ``sim:<venue>`` serves a venue's dialect on loopback.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``venues`` subcommand."""
    parser = subparsers.add_parser(
        "venues",
        help="list the venues tickcast reads natively",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per venue")
    parser.set_defaults(func=run)


def describe(name: str) -> dict[str, Any]:
    """What ``tickcast venues`` shows of one venue."""
    from tickcast.service.venues.registry import venue

    found = venue(name)
    keep = found.keepalive
    if keep.ping is not None:
        keepalive = f"sends {keep.ping.decode()} every {keep.ping_every_s:g} s"
    elif keep.ws_ping:
        keepalive = f"websocket pings every {keep.ping_every_s:g} s"
    else:
        keepalive = "answers the venue's pings"
    return {
        "exchange": name,
        "title": found.title,
        "channels": found.channels.replace("`", ""),
        "keepalive": keepalive,
        "urls": dict(found.routes),
        "markets_shipped": len(found.markets()),
        "retired": found.retired,
    }


def run(args: argparse.Namespace) -> int:
    """Print the registry; return 0."""
    import json

    from tickcast.service.venues.registry import VENUES

    for name in VENUES:
        row = describe(name)
        if args.json:
            print(json.dumps(row, ensure_ascii=False))
            continue
        state = "retired: recordings only" if row["retired"] else row["keepalive"]
        print(f"{name:<13} {row['title']:<27} {row['channels']:<36} {state}")
    if not args.json:
        print("ccxt:<id>     any other ccxt.pro venue; sim:<venue> serves a venue on loopback")
    return 0
