"""``tickcast status``: per symbol, the last tick's age, samples, scores, model version,
checkpoint age and who serves it (the ``host:pid`` holding its worker lease and its ingester
lease), read from Redis (the running service's embedded one by default); then, per role, the
members of the ``--pool`` processes and how many of the symbols shown each one holds.

On a Redis Cluster it finds the tick streams on every master (each symbol's keys share one
hash slot, so every per-symbol read goes to one node).

Without ``--symbols`` it shows every symbol with a tick stream in Redis (of ``--exchange``
when given), then the configured symbols that have no ticks yet: every symbol the settings name
(``--config`` file, ``TICKCAST__EXCHANGE__*``, ``--set exchange...``), or, on the built-in
defaults, those a process has taken (a lease) or checkpointed.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tickcast.service.bus.connection import AsyncClient
    from tickcast.service.ops.config import Settings


def register(subparsers: Any) -> None:
    """Add the ``status`` subcommand."""
    from tickcast.service.commands.config import add_config_arguments

    parser = subparsers.add_parser(
        "status", help="show the state of each symbol", description=__doc__
    )
    add_config_arguments(parser)
    parser.add_argument(
        "--symbols",
        help="comma-separated unified symbols (default: those with ticks, and the configured ones)",
    )
    parser.add_argument("--exchange", help="venue (default: all found)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


async def symbol_status(
    client: AsyncClient, prefix: str, venue: str, symbol: str
) -> dict[str, Any]:
    """Collect one symbol's status from its tick stream, signal stream and checkpoint."""
    from tickcast.service.bus import codec, keys
    from tickcast.service.bus.checkpoint import STATUS_FIELDS
    from tickcast.service.schema import SignalDecodeError, decode_signal

    now_ms = time.time_ns() // 1_000_000
    out: dict[str, Any] = {"venue": venue, "symbol": symbol, "last_tick_age_s": None}
    ticks_key = keys.ticks_key(prefix, venue, symbol)
    ticks: Any = await client.xrevrange(ticks_key, count=1)
    if ticks:
        try:
            tick = codec.decode(ticks[0][1])
            out["last_tick_age_s"] = max(0.0, (now_ms - tick.recv_ns // 1_000_000) / 1000.0)
        except codec.BusDecodeError:
            pass
    out["ticks_in_stream"] = int(await client.xlen(ticks_key))
    sigs: Any = await client.xrevrange(keys.signals_key(prefix, venue, symbol), count=1)
    signal = None
    if sigs:
        try:
            signal = decode_signal(sigs[0][1])
        except SignalDecodeError:
            signal = None
    out["last_signal_t_ms"] = signal.t_ms if signal else None
    out["hit_rate"] = signal.hit_rate if signal else None
    out["ic"] = signal.ic if signal else None
    out["skill_vs_zero"] = signal.skill_vs_zero if signal else None
    out["model_version"] = signal.model_version if signal else None
    key = keys.ckpt_key(prefix, venue, symbol)
    fields: Any = await client.hmget(key, [*STATUS_FIELDS, "saved_ms"])
    live = dict(zip(STATUS_FIELDS, fields[: len(STATUS_FIELDS)], strict=True))
    out["samples"] = int(live["samples"]) if live["samples"] is not None else None
    out["ticks_processed"] = int(live["ticks"]) if live["ticks"] is not None else None
    saved = fields[-1]
    out["checkpoint_age_s"] = (now_ms - int(saved)) / 1000.0 if saved is not None else None
    for role, kind in (("worker_owner", "owner"), ("ingester_owner", "ingester")):
        holder = await client.get(keys.symbol_key(prefix, venue, symbol, kind))
        out[role] = holder.decode() if isinstance(holder, bytes) else holder
    return out


def names_symbols(settings: Settings) -> bool:
    """Whether the settings name the venues or symbols (a file, the environment, a flag)
    rather than leaving the built-in defaults.

    Examples
    --------
    >>> from tickcast.service.ops.config import load_settings
    >>> names_symbols(load_settings(None, {})), names_symbols(
    ...     load_settings(None, {"exchange.symbols": ["BTC/USDT:USDT"]}))
    (False, True)
    """
    return bool(settings.exchange.model_fields_set & {"name", "symbols", "venue_symbols"})


def taken(row: dict[str, Any]) -> bool:
    """Whether a process holds a lease on the row's symbol or has checkpointed it."""
    keys = ("worker_owner", "ingester_owner", "checkpoint_age_s")
    return any(row[key] is not None for key in keys)


async def configured_without_ticks(
    client: AsyncClient,
    settings: Settings,
    venue: str | None,
    shown: dict[str, list[str]],
) -> list[dict[str, Any]]:
    """Status rows of the configured symbols (of ``venue`` when given) that are not in
    ``shown`` (those with a tick stream): all of them when the settings name the symbols,
    else (the built-in defaults) those a process has taken or checkpointed."""
    from tickcast.service.commands.subscribe import configured_streams

    explicit = names_symbols(settings)
    rows = []
    for label, symbols in configured_streams(settings, venue).items():
        for symbol in symbols:
            if symbol in shown.get(label, ()):
                continue
            row = await symbol_status(client, settings.redis.prefix, label, symbol)
            if explicit or taken(row):
                rows.append(row)
    return rows


async def pool_members(
    client: AsyncClient, prefix: str, rows: list[dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """The live members of each role's pool (:mod:`tickcast.service.live.pool`) and how many
    of ``rows``' symbols each holds: ``{"worker": [{"member": token, "symbols": n}], ...}``.
    A member whose entry has not expired yet but whose process, on this host, is gone is left
    out (as the pool itself does)."""
    from tickcast.service.bus.lease import held_by_dead_local_process
    from tickcast.service.live.pool import LEASE_KIND, members_key

    now_ms = time.time_ns() // 1_000_000
    out: dict[str, list[dict[str, Any]]] = {}
    for role, kind in LEASE_KIND.items():
        raw: Any = await client.zrangebyscore(members_key(prefix, role), now_ms, "+inf")
        column = "worker_owner" if kind == "owner" else "ingester_owner"
        held = Counter(row[column] for row in rows)
        tokens = (m.decode() if isinstance(m, bytes) else str(m) for m in raw)
        members = sorted(m for m in tokens if not held_by_dead_local_process(m))
        out[role] = [{"member": m, "symbols": held[m]} for m in members]
    return out


async def collect(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Status rows of every requested or discovered (venue, symbol), then of the configured
    symbols without ticks (see the module docstring), and the pools' members:
    ``{"symbols": [...], "pools": {...}}``."""
    from tickcast.service.bus.connection import connect
    from tickcast.service.commands.subscribe import resolve_streams, settings_for, venue_label

    settings = settings_for(args)
    venue = venue_label(args.exchange)
    streams = await resolve_streams(url, settings, venue, bool(args.symbols))
    client = connect(url, settings)
    try:
        prefix = settings.redis.prefix
        rows = [
            await symbol_status(client, prefix, label, symbol)
            for label, symbols in streams.items()
            for symbol in symbols
        ]
        if not args.symbols:
            rows += await configured_without_ticks(client, settings, venue, streams)
        return {"symbols": rows, "pools": await pool_members(client, prefix, rows)}
    finally:
        await client.aclose()


def short_token(token: str) -> str:
    """``host:pid`` of an owner token (``host:pid:namespace:random``).

    Examples
    --------
    >>> short_token("vm:3314:4026531836:73a66ec8")
    'vm:3314'
    """
    return ":".join(token.split(":")[:2])


def _fmt(value: Any, kind: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if kind == "age":
        v = float(value)
        return f"{v:.1f} s" if v < 120 else f"{v / 60:.1f} min" if v < 7200 else f"{v / 3600:.1f} h"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "num":
        return f"{value:+.3f}"
    if kind == "owner":  # host:pid:namespace:random -> host:pid
        return short_token(str(value))
    return str(value)


COLUMNS = (
    ("venue", "venue", "str", 11),
    ("symbol", "symbol", "str", 16),
    ("last tick", "last_tick_age_s", "age", 12),
    ("samples", "samples", "str", 9),
    ("hit rate", "hit_rate", "pct", 8),
    ("IC", "ic", "num", 7),
    ("skill", "skill_vs_zero", "num", 7),
    ("model v", "model_version", "str", 8),
    ("checkpoint", "checkpoint_age_s", "age", 10),
    ("worker", "worker_owner", "owner", 16),
    ("ingester", "ingester_owner", "owner", 16),
)


def render(rows: list[dict[str, Any]], url: str, pools: dict[str, list[dict[str, Any]]]) -> str:
    """The status rows as a plain table (ages: since the last tick's receipt / the save; a
    symbol without ticks says so), then a line per pool that has members."""

    def cell(text: str, i: int, width: int) -> str:
        return f"{text:<{width}}" if i < 2 else f"{text:>{width}}"

    lines = [f"tickcast status · redis {url}"]
    lines.append(" ".join(cell(h, i, w) for i, (h, _, _, w) in enumerate(COLUMNS)))
    for row in rows:
        texts = [_fmt(row[key], kind) for _, key, kind, _ in COLUMNS]
        if not row["ticks_in_stream"]:
            texts[2] = "no ticks yet"
        lines.append(
            " ".join(cell(t, i, c[3]) for i, (t, c) in enumerate(zip(texts, COLUMNS, strict=True)))
        )
    if not rows:
        lines.append("(no tick streams yet)")
    for role, members in pools.items():
        if members:
            shares = ", ".join(f"{short_token(m['member'])} {m['symbols']}" for m in members)
            lines.append(f"{role} pool: {len(members)} members, symbols held: {shares}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Print the status; return 0 (1 when no symbol has any tick)."""
    import asyncio
    import json

    from tickcast.service.commands.subscribe import find_redis, settings_for
    from tickcast.service.ops.redaction import redact_url

    url = find_redis(settings_for(args))
    found = asyncio.run(collect(url, args))
    if args.json:
        print(json.dumps(found, indent=2))
    else:
        print(render(found["symbols"], redact_url(url), found["pools"]))
    return 0 if any(r["last_tick_age_s"] is not None for r in found["symbols"]) else 1
