"""``tickcast subscribe``: follow the signals, as a live table or one JSON object per line.

Signals with extra horizons (schema version 2) show each extra horizon compactly: a line under
the symbol's in the table, a ``+<horizon>:`` group at the end of a plain line, the
``horizons`` list in JSON.

On embedded defaults it finds the running service's Redis through the state directory; with
``TICKCAST__REDIS__URL`` (or ``--set redis.url=...``) it reads that Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from tickcast.service.ops.config import Settings
    from tickcast.service.schema import Signal

CLEAR = "\x1b[H\x1b[J"
BLOCK_MS = 250
"""Longest wait of one signal read (ms): how long stopping may take."""
GREEN, RED, DIM, BOLD, RESET = "\x1b[32m", "\x1b[31m", "\x1b[2m", "\x1b[1m", "\x1b[0m"


def register(subparsers: Any) -> None:
    """Add the ``subscribe`` subcommand."""
    from tickcast.service.commands.config import add_config_arguments

    parser = subparsers.add_parser(
        "subscribe",
        help="follow the published signals",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(parser)
    parser.add_argument("--symbols", help="comma-separated unified symbols (default: configured)")
    parser.add_argument(
        "--exchange", help="only this venue's signals (bybit, sim:okx...; default: every venue)"
    )
    parser.add_argument(
        "--from-start", action="store_true", help="replay the retained signals first"
    )
    parser.add_argument("--count", type=int, default=None, help="exit after N signals")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.set_defaults(func=run)


def find_redis(settings: Settings) -> str:
    """The configured Redis URL, else the running embedded one; raise when there is none."""
    from tickcast.service import TickcastError
    from tickcast.service.bus.discovery import discover

    if settings.redis.url is not None:
        return settings.redis.url.get_secret_value()
    url = discover(settings.state_dir)
    if url is None:
        raise TickcastError(
            f"no running tickcast service found under {settings.state_dir}: start "
            "`tickcast run`, or point TICKCAST__REDIS__URL at its Redis"
        )
    return url


def venue_label(exchange: str | None) -> str | None:
    """The venue label an ``--exchange`` value names (``sim:bybit`` -> ``sim-bybit``)."""
    if exchange is None:
        return None
    from tickcast.service.venues.registry import source
    from tickcast.service.venues.venue import VenueError

    try:
        return source(exchange, live=False).label
    except VenueError:
        return exchange  # a label already (sim-bybit), or a venue of an older version


def configured_streams(settings: Settings, venue: str | None) -> dict[str, list[str]]:
    """The configured symbols of each venue label (of ``venue`` only, when given)."""
    out: dict[str, list[str]] = {}
    for instrument in settings.exchange.instruments():
        out.setdefault(instrument.venue, []).append(instrument.symbol)
    if venue is not None:
        return {venue: out.get(venue, list(settings.exchange.symbols))}
    return out


async def resolve_streams(
    url: str, settings: Settings, venue: str | None, symbols_given: bool
) -> dict[str, list[str]]:
    """Which venues and symbols to show, by venue label: the ``--symbols`` given, else every
    tick stream found in Redis (of ``venue`` when given), else the configured ones."""
    from tickcast.service.bus.connection import connect
    from tickcast.service.client import list_streams

    configured = configured_streams(settings, venue)
    if symbols_given:
        return configured
    client = connect(url, settings)
    try:
        found = await list_streams(client, settings.redis.prefix)
    finally:
        await client.aclose()
    if venue is not None:
        found = {venue: found[venue]} if venue in found else {}
    return found or configured


def settings_for(args: argparse.Namespace) -> Settings:
    """Settings with the command's ``--symbols`` flag on top (``--exchange`` filters)."""
    from tickcast.service.ops.config import settings_from_args

    return settings_from_args(args, {"exchange.symbols": args.symbols})


# -- the live table ------------------------------------------------------------------------


@dataclass
class Row:
    """What the table shows for one symbol: its latest signal and counts."""

    signal: Signal | None = None
    n: int = 0
    up: int = 0


@dataclass
class Table:
    """The latest signal per (venue, symbol), rendered as a fixed-width table."""

    streams: dict[str, list[str]]
    rows: dict[tuple[str, str], Row] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def add(self, signal: Signal) -> None:
        """Record a signal."""
        row = self.rows.setdefault((signal.venue, signal.symbol), Row())
        row.signal, row.n = signal, row.n + 1
        row.up += signal.ret_bps > 0.0

    def render(self, color: bool = True, waiting: Callable[[str, str], str] | None = None) -> str:
        """Return the table as text (ANSI colours when ``color``); a symbol without a signal
        yet reads ``waiting(venue, symbol)`` (default: waiting for signals...)."""

        def c(code: str, text: str) -> str:
            return f"{code}{text}{RESET}" if color else text

        up_s = time.monotonic() - self.started
        pairs = [(v, s) for v, symbols in self.streams.items() for s in symbols]
        several = len(self.streams) > 1
        name_w = 16 + (max(len(v) for v in self.streams) + 1 if several else 0)
        head = (
            f"{'symbol':<{name_w}} {'time (UTC)':<12} {'ref price':>12} {'pred bps':>9} "
            f"{'P(up)':>6}   {'hit rate':>8} {'IC':>7} {'skill':>7} {'model v':>8} "
            f"{'latency':>9} {'signals':>8}"
        )
        venues = ", ".join(self.streams)
        lines = [
            c(BOLD, f"tickcast signals · {venues} · {len(pairs)} symbols · {up_s:.0f} s"),
            c(DIM, head),
        ]
        for venue, symbol in pairs:
            row = self.rows.get((venue, symbol), Row())
            name = f"{venue} {symbol}" if several else symbol
            s = row.signal
            if s is None:
                note = waiting(venue, symbol) if waiting else "waiting for signals..."
                lines.append(f"{name:<{name_w}} {c(DIM, note)}")
                continue
            lines.append(
                f"{name:<{name_w}} {_clock(s.t_ms):<12} {s.ref_price:>12.6g} {s.ret_bps:>+9.3f} "
                f"{s.p_up:>6.3f} {_arrow(s.p_up, c)} {_pct(s.hit_rate):>8} {_num(s.ic):>7} "
                f"{_num(s.skill_vs_zero):>7} {s.model_version:>8} "
                f"{_latency(s.latency_us):>9} {row.n:>8}"
            )
            for h in s.horizons or ():
                label = f"  {_span(h.horizon_ms)} horizon"
                lines.append(
                    f"{label:<{name_w}} {'':<12} {'':>12} {h.ret_bps:>+9.3f} {h.p_up:>6.3f} "
                    f"{_arrow(h.p_up, c)} {_pct(h.hit_rate):>8} {_num(h.ic):>7} "
                    f"{_num(h.skill_vs_zero):>7} {h.model_version:>8}"
                )
        lines.append(
            c(DIM, "hit rate, IC and skill are rolling prequential scores; Ctrl-C to quit")
        )
        return "\n".join(lines) + "\n"


def _arrow(p_up: float, c: Callable[[str, str], str]) -> str:
    """The arrow beside P(up): up above 0.5, down below, a dot at 0.5."""
    return c(GREEN, "▲") if p_up > 0.5 else c(RED, "▼") if p_up < 0.5 else "·"


def _span(ms: int) -> str:
    """A horizon, short: ``500ms``, ``1s``, ``2.5s``, ``10s``."""
    return f"{ms}ms" if ms < 1000 else f"{ms / 1000:g}s"


def _clock(t_ms: int) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(t_ms / 1000)) + f".{t_ms % 1000:03d}"


def _pct(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{100 * x:.1f}%"


def _num(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:+.3f}"


def _latency(us: int) -> str:
    return f"{us} µs" if us < 10_000 else f"{us / 1000:.0f} ms"


def signal_line(signal: Signal) -> str:
    """One plain line per signal (for a non-terminal stdout); each extra horizon adds a
    ``+<horizon>: pred=... p_up=... hit=... ic=...`` group."""
    extra = "".join(
        f" +{_span(h.horizon_ms)}: pred={h.ret_bps:+.3f}bps p_up={h.p_up:.3f} "
        f"hit={_pct(h.hit_rate)} ic={_num(h.ic)}"
        for h in signal.horizons or ()
    )
    return (
        f"{signal.venue} {signal.symbol} t={signal.t_ms} ref={signal.ref_price:.10g} "
        f"pred={signal.ret_bps:+.3f}bps p_up={signal.p_up:.3f} hit={_pct(signal.hit_rate)} "
        f"ic={_num(signal.ic)} skill={_num(signal.skill_vs_zero)} v={signal.model_version} "
        f"latency={signal.latency_us}us{extra}"
    )


class Merged:
    """The signals of several venues' streams (one subscription per venue), as they come."""

    def __init__(self, url: str, settings: Settings, streams: dict[str, list[str]], from_id: str):
        from tickcast.service.bus.connection import connect
        from tickcast.service.client import Subscription

        self.queue: asyncio.Queue[Signal] = asyncio.Queue(maxsize=10_000)
        prefix = settings.redis.prefix
        self.clients = [connect(url, settings) for _ in streams]
        self.subs = [
            Subscription(
                url, s, venue=v, prefix=prefix, from_id=from_id, block_ms=BLOCK_MS, client=c
            )
            for (v, s), c in zip(streams.items(), self.clients, strict=True)
        ]
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self._pump(sub)) for sub in self.subs]

    async def _pump(self, sub: Any) -> None:
        async with sub:
            async for signal in sub:
                await self.queue.put(signal)

    async def next(self) -> Signal:
        """The next signal of any venue; raises what ended a venue's subscription."""
        if not self.queue.empty():
            return self.queue.get_nowait()
        getter = asyncio.get_running_loop().create_task(self.queue.get())
        done, _ = await asyncio.wait({getter, *self.tasks}, return_when=asyncio.FIRST_COMPLETED)
        if getter in done:
            return getter.result()
        getter.cancel()
        failed = next(iter(done))
        failed.result()  # raises what ended it
        raise RuntimeError("a subscription ended")  # pragma: no cover - Subscription is endless

    async def close(self) -> None:
        """Stop every subscription (after its read in progress; one waiting for room in the
        queue is cancelled)."""
        for sub in self.subs:
            sub.stop()
        _, waiting = await asyncio.wait(self.tasks, timeout=BLOCK_MS / 1000.0 + 1.0)
        for task in waiting:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for client in self.clients:
            await client.aclose()


async def follow(
    url: str,
    settings: Settings,
    streams: dict[str, list[str]],
    *,
    from_id: str,
    count: int | None,
    as_json: bool,
    out: TextIO,
    live: bool,
) -> int:
    """Print the signals of ``streams`` (symbols by venue label) until ``count`` were printed
    (or forever); return how many."""
    table = Table(streams)
    n, last_draw = 0, 0.0
    if live:
        out.write(CLEAR + table.render())
        out.flush()
    signals = Merged(url, settings, streams, from_id)
    try:
        while True:
            signal = await signals.next()
            n += 1
            if as_json:
                out.write(signal.model_dump_json(exclude_none=True) + "\n")
                out.flush()
            elif live:
                table.add(signal)
                now = time.monotonic()
                if now - last_draw >= 0.25 or n == count:
                    out.write(CLEAR + table.render())
                    out.flush()
                    last_draw = now
            else:
                out.write(signal_line(signal) + "\n")
                out.flush()
            if count is not None and n >= count:
                break
    finally:
        await signals.close()
    return n


def run(args: argparse.Namespace) -> int:
    """Follow the signals; return 0."""
    from tickcast.service.client import NEW, START

    settings = settings_for(args)
    url = find_redis(settings)
    live = not args.json and sys.stdout.isatty()
    venue = venue_label(args.exchange)
    streams = asyncio.run(resolve_streams(url, settings, venue, bool(args.symbols)))
    try:
        asyncio.run(
            follow(
                url,
                settings,
                streams,
                from_id=START if args.from_start else NEW,
                count=args.count,
                as_json=args.json,
                out=sys.stdout,
                live=live,
            )
        )
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        return 0
    return 0
