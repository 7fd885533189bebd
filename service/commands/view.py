"""The live view of ``tickcast run`` and ``tickcast worker`` in a terminal.

A header with the Redis URL (its password hidden) and the metrics address; each venue's feed:
connecting, connected, silent for N s, or retrying in N s with the last error; the table of
``tickcast subscribe``, where a symbol without signals yet says why (its feed's state, no ticks
yet, or the ticks and samples so far); and the latest log lines, drawn again every
:data:`REFRESH_S`. :class:`Keys` reads Ctrl-C and q as keys that stop the service cleanly (so
that under ``make run`` only tickcast stops, and make ends with status 0).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import os
import shutil
import signal
import termios
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from tickcast.service.tasks import cancel_and_wait

if TYPE_CHECKING:
    from tickcast.service.feed.stats import RouteState
    from tickcast.service.live.service import Service

log = logging.getLogger("tickcast.service.run")


REFRESH_S = 0.25
"""The view is drawn again this often (s)."""
SILENT_AFTER_S = 2.0
"""A connected feed that received nothing for this long (s) is shown silent."""
LOG_LINES = 6
"""The latest log lines shown under the table (fewer when the terminal is short)."""
CONNECTING, CONNECTED, SILENT, RETRYING = "connecting", "connected", "silent", "retrying"
HOME, CLEAR_SCREEN, ERASE_LINE, ERASE_DOWN = "\x1b[H", "\x1b[2J", "\x1b[K", "\x1b[J"
BOLD, DIM, RESET = "\x1b[1m", "\x1b[2m", "\x1b[0m"
STATE_COLORS = {
    CONNECTED: "\x1b[32m",
    SILENT: "\x1b[33m",
    CONNECTING: "\x1b[33m",
    RETRYING: "\x1b[31m",
}
"""The colour of a feed's line by its worst connection: green, yellow, red."""


@dataclass(frozen=True)
class RouteView:
    """What the view says of one of a feed's connections."""

    route: str
    state: str
    """:data:`CONNECTING`, :data:`CONNECTED`, :data:`SILENT` or :data:`RETRYING`."""
    seconds: float = 0.0
    """Silent: for how long; retrying: in how long."""
    error: str = ""
    """The latest failure, while not connected."""


def route_view(route: str, state: RouteState, now: float, connected_since: float) -> RouteView:
    """The state of one connection at ``now`` (``time.monotonic()``); ``connected_since``:
    when the view first saw it connected (its silence counts from then at the latest).

    Examples
    --------
    >>> from tickcast.service.feed.stats import RouteState
    >>> route_view("public", RouteState(True, 98.5), 100.0, 90.0).state
    'connected'
    >>> route_view("public", RouteState(True, 95.0), 100.0, 90.0)
    RouteView(route='public', state='silent', seconds=5.0, error='')
    >>> route_view("public", RouteState(False, 0.0, 103.0, "gaierror: no DNS"), 100.0, 0.0)
    RouteView(route='public', state='retrying', seconds=3.0, error='gaierror: no DNS')
    """
    if state.connected:
        quiet = now - max(state.last_frame_monotonic, connected_since)
        if quiet >= SILENT_AFTER_S:
            return RouteView(route, SILENT, quiet)
        return RouteView(route, CONNECTED)
    if state.retry_at_monotonic > now:
        return RouteView(route, RETRYING, state.retry_at_monotonic - now, state.last_error)
    return RouteView(route, CONNECTING, 0.0, state.last_error)


def brief(text: str, width: int = 72) -> str:
    """``text`` on one line, at most ``width`` characters (cut with an ellipsis)."""
    one = " ".join(text.split())
    return one if len(one) <= width else one[: width - 1] + "…"


def describe(view: RouteView, *, error: bool = True) -> str:
    """The state of a connection in words: ``connected``, ``silent for 4 s``, ``retrying in
    3 s (gaierror: ...)``, ``connecting`` (the last error in brackets when ``error``).

    Examples
    --------
    >>> describe(RouteView("public", RETRYING, 2.2, "gaierror: [Errno -2] Name not known"))
    'retrying in 3 s (gaierror: [Errno -2] Name not known)'
    >>> describe(RouteView("public", SILENT, 7.4))
    'silent for 7 s'
    """
    if view.state == SILENT:
        return f"silent for {view.seconds:.0f} s"
    text = f"retrying in {math.ceil(view.seconds)} s" if view.state == RETRYING else view.state
    return f"{text} ({brief(view.error)})" if view.error and error else text


def feed_line(
    venue: str, views: Sequence[RouteView], received: int, reconnects: int, stopping: str = ""
) -> str:
    """One venue's line: each connection's state (``stopping`` instead, when given), the
    ticks received, the reconnects.

    Examples
    --------
    >>> feed_line("sim", [RouteView("public", CONNECTED)], 12345, 0)
    'feed sim: connected · 12,345 ticks'
    >>> feed_line("okx", [RouteView("public", CONNECTING)], 0, 0)
    'feed okx: connecting · no ticks yet'
    """
    if stopping:
        states = stopping
    elif not views:
        return f"feed {venue}: starting"
    elif len(views) == 1:
        states = describe(views[0])
    else:
        states = ", ".join(f"{v.route} {describe(v)}" for v in views)
    parts = [states, f"{received:,} ticks" if received else "no ticks yet"]
    if reconnects:
        parts.append(f"{reconnects:,} reconnect{'s' if reconnects > 1 else ''}")
    return f"feed {venue}: " + " · ".join(parts)


def waiting_text(views: Sequence[RouteView] | None, ticks: int, samples: int) -> str:
    """What a symbol without a signal yet shows: the worker's progress once ticks came, else
    why none came (its feed's state; its last error is on the feed's line); ``views`` None:
    the feed is stopped.

    Examples
    --------
    >>> waiting_text([RouteView("public", RETRYING, 4.0, "OSError: down")], 0, 0)
    'no ticks: feed retrying in 4 s'
    >>> waiting_text([RouteView("public", CONNECTED)], 0, 0)
    'no ticks yet (feed connected)'
    >>> waiting_text([RouteView("public", CONNECTED)], 310, 4)
    '310 ticks, 4 samples, no signal yet'
    """
    if ticks:
        return f"{ticks:,} ticks, {samples:,} samples, no signal yet"
    if views is None:
        return "no ticks"
    if not views:
        return "no ticks: starting"
    if any(v.state == CONNECTED for v in views):
        return "no ticks yet (feed connected)"
    return f"no ticks: feed {describe(views[0], error=False)}"


def header_line(redis_url: str, metrics: str) -> str:
    """The first line of the view: where the streams and the metrics are.

    Examples
    --------
    >>> header_line("redis://worker:s3cret@redis:6379/0", "http://127.0.0.1:9464/metrics")
    'tickcast run · redis redis://worker:***@redis:6379/0 · metrics http://127.0.0.1:9464/metrics'
    """
    from tickcast.service.ops.redaction import redact_url

    return f"tickcast run · redis {redact_url(redis_url)} · metrics {metrics}"


def frame_lines(
    header: str, feeds: Sequence[str], table: str, logs: Sequence[str], *, color: bool = True
) -> list[str]:
    """The lines of one frame: header, feeds, the signal table, the latest log lines."""
    lines = [f"{BOLD}{header}{RESET}" if color else header, *feeds, ""]
    lines += table.rstrip("\n").splitlines()
    if logs:
        lines += ["", *(f"{DIM}{line}{RESET}" if color else line for line in logs)]
    return lines


def paint(lines: Sequence[str], *, first: bool = False) -> str:
    """The text that draws ``lines`` over the previous frame (the whole screen cleared
    first when ``first``): each line erased to its end, the rest of the screen below."""
    body = "".join(f"{line}{ERASE_LINE}\n" for line in lines)
    return HOME + (CLEAR_SCREEN if first else "") + body + ERASE_DOWN


class LogTail(logging.Handler):
    """Keeps the latest log lines, one line each, for the view (a terminal would scroll them
    away under the redrawn table)."""

    def __init__(self, size: int = 50) -> None:
        super().__init__()
        self.lines: collections.deque[str] = collections.deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        """Keep ``record`` as one line."""
        try:
            self.lines.append(log_line(record))
        except Exception:  # pragma: no cover - logging must not raise
            self.handleError(record)


def log_line(record: logging.LogRecord) -> str:
    """``HH:MM:SS LEVEL message`` on one line, URLs without their passwords.

    Examples
    --------
    >>> record = logging.LogRecord("x", logging.WARNING, "", 0, "cannot reach %s\\nretrying",
    ...                            ("redis://u:pw@h/0",), None)
    >>> log_line(record)[9:]
    'WARNING cannot reach redis://u:***@h/0 retrying'
    """
    from tickcast.service.ops.logs import redact_url_in_text

    text = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        text += f" ({type(exc).__name__}: {exc})"
    clock = time.strftime("%H:%M:%S", time.localtime(record.created))
    return f"{clock} {record.levelname:<7} {redact_url_in_text(' '.join(text.split()))}"


def _on_terminal(handler: logging.Handler) -> bool:
    stream = getattr(handler, "stream", None)
    try:
        return isinstance(handler, logging.StreamHandler) and bool(stream and stream.isatty())
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def logs_into(tail: LogTail) -> Iterator[None]:
    """Send the log records to ``tail`` instead of the terminal for the duration of the block
    (handlers writing elsewhere, a file say, keep theirs)."""
    root = logging.getLogger()
    moved = [h for h in root.handlers if _on_terminal(h)]
    for handler in moved:
        root.removeHandler(handler)
    root.addHandler(tail)
    try:
        yield
    finally:
        root.removeHandler(tail)
        for handler in moved:
            root.addHandler(handler)


class Keys:
    """The terminal's keys while the live view runs.

    A terminal turns Ctrl-C into SIGINT for its whole foreground process group: under ``make
    run``, make itself, which then ends with an error whatever tickcast's exit code. While the
    view runs, the terminal's line discipline is told not to (no ``ISIG``, and no echo nor line
    editing, so that typing does not tear the table): the view reads Ctrl-C and ``q`` as keys
    that stop the service cleanly. Ctrl-\\ and Ctrl-Z still send SIGQUIT and SIGTSTP to the
    process group, with the terminal's modes given back first (and taken again once the process
    is continued in the foreground). :meth:`restore` (leaving the ``with`` block) gives them back.

    Parameters
    ----------
    fd : int
        The terminal (standard input).
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.saved = termios.tcgetattr(fd)
        cc = self.saved[6]
        self.intr, self.quit, self.susp = cc[termios.VINTR], cc[termios.VQUIT], cc[termios.VSUSP]
        self.on_stop: Callable[[], None] | None = None
        self.reading = False

    @classmethod
    def of(cls, stream: TextIO) -> Keys | None:
        """The keys of ``stream`` when it is a terminal whose foreground is this process's
        group; None otherwise (a pipe, a file, a job in the background)."""
        try:
            fd = stream.fileno()
            if not os.isatty(fd) or os.tcgetpgrp(fd) != os.getpgrp():
                return None
            return cls(fd)
        except (AttributeError, OSError, ValueError, termios.error):
            return None

    def __enter__(self) -> Keys:
        self.apply()
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()

    def foreground(self) -> bool:
        """Whether this process's group is the terminal's foreground (the only one that may
        change its modes without being stopped)."""
        try:
            return os.tcgetpgrp(self.fd) == os.getpgrp()
        except OSError:
            return False

    def apply(self) -> None:
        """Keys as keys: no signals, no echo, no line editing (in the foreground only)."""
        if not self.foreground():
            return
        mode = termios.tcgetattr(self.fd)
        mode[3] &= ~(termios.ICANON | termios.ECHO | termios.ISIG)
        mode[6][termios.VMIN], mode[6][termios.VTIME] = 1, 0
        with contextlib.suppress(termios.error, OSError):
            termios.tcsetattr(self.fd, termios.TCSANOW, mode)

    def restore(self) -> None:
        """Give the terminal its modes back (keys typed meanwhile are dropped)."""
        if self.foreground():
            with contextlib.suppress(termios.error, OSError):
                termios.tcsetattr(self.fd, termios.TCSAFLUSH, self.saved)

    def start(self, on_stop: Callable[[], None]) -> None:
        """Read keys on the running loop: Ctrl-C and ``q`` call ``on_stop``."""
        loop = asyncio.get_running_loop()
        self.on_stop = on_stop
        loop.add_reader(self.fd, self._read)
        loop.add_signal_handler(signal.SIGCONT, self.apply)
        self.reading = True

    def stop(self) -> None:
        """Stop reading keys (the modes stay until :meth:`restore`)."""
        if self.reading:
            loop = asyncio.get_running_loop()
            loop.remove_reader(self.fd)
            loop.remove_signal_handler(signal.SIGCONT)
            self.reading = False

    def _read(self) -> None:
        try:
            data = os.read(self.fd, 64)
        except OSError:
            data = b""
        if not data:  # the terminal hung up: SIGHUP stops the service
            asyncio.get_running_loop().remove_reader(self.fd)
            return
        for i in range(len(data)):
            self.press(data[i : i + 1])

    def press(self, key: bytes) -> None:
        """Act on one key."""
        if key in (self.intr, b"q", b"Q"):
            if self.on_stop is not None:
                self.on_stop()
        elif key in (self.quit, self.susp):
            self.restore()
            os.killpg(os.getpgrp(), signal.SIGQUIT if key == self.quit else signal.SIGTSTP)
            self.apply()  # continued (SIGCONT applies them again if continued later)


class LiveView:
    """The frames of ``tickcast run``'s view of ``service`` (see the module docstring)."""

    def __init__(self, service: Service) -> None:
        from tickcast.service.commands.subscribe import Table

        self.service = service
        streams: dict[str, list[str]] = {}
        for venue, symbol in service.instruments:
            streams.setdefault(venue, []).append(symbol)
        self.streams = streams
        self.table = Table(streams)
        self.tail = LogTail()
        self.stopping = ""
        """What the feeds are shown doing once a stop was asked: stopping, then stopped."""
        self._connected_since: dict[tuple[str, str], float] = {}

    def request_stop(self) -> None:
        """Stop the service (Ctrl-C or q)."""
        self.stopping = "stopping"
        self.service.request_stop()

    def feed_views(self, now: float) -> dict[str, list[RouteView]]:
        """Each running feed's connections, by venue label."""
        out: dict[str, list[RouteView]] = {}
        for label, ingester in list(self.service.ingesters.items()):
            views = []
            for route, state in getattr(ingester.feed, "routes", {}).items():
                key = (label, route)
                if state.connected:
                    self._connected_since.setdefault(key, now)
                else:
                    self._connected_since.pop(key, None)
                views.append(route_view(route, state, now, self._connected_since.get(key, now)))
            out[label] = views
        return out

    def feed_lines(self, views: dict[str, list[RouteView]], *, color: bool = True) -> list[str]:
        """One line per venue of the service (coloured by its worst connection)."""
        lines = []
        for source in self.service.sources:
            ingester = self.service.ingesters.get(source.label)
            received = ingester.stats.received if ingester is not None else 0
            stats = getattr(ingester.feed, "stats", None) if ingester is not None else None
            reconnects = int(getattr(stats, "reconnects", 0))
            views_of = views.get(source.label, [])
            line = feed_line(source.label, views_of, received, reconnects, self.stopping)
            states = [v.state for v in views_of]
            worst = max(states, key=list(STATE_COLORS).index) if states else CONNECTING
            code = STATE_COLORS[worst] if color and not self.stopping else ""
            lines.append(f"{code}{line}{RESET}" if code else line)
        return lines

    def metrics(self) -> str:
        """Where ``/metrics`` is served (or why it is not)."""
        server = self.service.metrics_server
        cfg = self.service.settings.metrics
        if server is not None:
            return f"{server.url}/metrics"
        if not cfg.enabled:
            return "off"
        return f"http://{cfg.host}:{cfg.port}/metrics" if cfg.port else "(starting)"

    def lines(self, rows: int, *, color: bool = True) -> list[str]:
        """The frame at this moment, with as many of the latest log lines as fit in ``rows``
        rows (at most :data:`LOG_LINES`)."""
        from tickcast.service.ticks import Instrument

        now = time.monotonic()
        views = self.feed_views(now)
        stats = self.service.metrics.symbol_stats

        def waiting(venue: str, symbol: str) -> str:
            st = stats.get(Instrument(venue, symbol))
            ticks, samples = (st.ticks, st.samples) if st is not None else (0, 0)
            feed = None if self.stopping else views.get(venue, [])
            return waiting_text(feed, ticks, samples)

        header = header_line(self.service.redis_url, self.metrics())
        table = self.table.render(color=color, waiting=waiting)
        feeds = self.feed_lines(views, color=color)
        room = min(LOG_LINES, rows - len(frame_lines(header, feeds, table, [])) - 2)
        logs = list(self.tail.lines)[-room:] if room > 0 else []
        return frame_lines(header, feeds, table, logs, color=color)


async def _pump_signals(service: Service, view: LiveView) -> None:
    """Add the signals the service publishes to the view's table, read from Redis as a
    subscriber reads them, once the service runs."""
    from tickcast.service.client import NEW
    from tickcast.service.commands.subscribe import Merged

    await service.ready.wait()
    signals = Merged(service.redis_url, service.settings, view.streams, NEW)
    try:
        while True:
            view.table.add(await signals.next())
    finally:
        await signals.close()


async def live_view(service: Service, out: TextIO, keys: Keys | None = None) -> None:
    """Draw the live view of ``service`` on ``out`` until cancelled; ``keys`` (Ctrl-C, q)
    stop the service. Should the view fail, the service goes on with its logs on the terminal
    and the terminal's Ctrl-C as a signal again."""
    view = LiveView(service)
    pump = asyncio.get_running_loop().create_task(_pump_signals(service, view), name="view")
    if keys is not None:
        keys.start(view.request_stop)
    try:
        with logs_into(view.tail):
            await _draw(view, out)
    except Exception:
        if keys is not None:
            keys.stop()
            keys.restore()
        log.exception("the live view stopped")
    finally:
        await cancel_and_wait(pump)
        if keys is not None:
            keys.stop()


async def _draw(view: LiveView, out: TextIO) -> None:
    """Draw a frame every :data:`REFRESH_S` until cancelled, then a last one."""
    out.write(paint(view.lines(_rows()), first=True))
    out.flush()
    try:
        while True:
            await asyncio.sleep(REFRESH_S)
            out.write(paint(view.lines(_rows())))
            out.flush()
    except asyncio.CancelledError:
        view.stopping = "stopped"
        out.write(paint(view.lines(_rows())))
        out.flush()
        raise


def _rows() -> int:
    return shutil.get_terminal_size((120, 40)).lines
