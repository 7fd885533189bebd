"""The live view of ``tickcast run``: its header, each venue's feed state, the arrow beside
P(up), the log lines it keeps.

The rendering functions are checked on their own; the feed states on a real service (the
simulated exchange, or a venue URL on loopback that nothing listens on) against the session
redis-server, the view reading the service's own objects as it does in ``tickcast run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tickcast.service.bus.embedded import free_port
from tickcast.service.commands import view
from tickcast.service.commands.subscribe import Table
from tickcast.service.feed.stats import RouteState
from tickcast.service.live.service import Service
from tickcast.service.ops.config import load_settings
from tickcast.service.ops.redaction import redact_url
from tickcast.service.schema import Signal, horizon_fields, signal_fields

from support import until

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
SYMBOL = "BTC/USDT:USDT"


def signal(p_up: float, ret_bps: float, *, horizons: list[dict[str, Any]] | None = None) -> Signal:
    fields = signal_fields(
        venue="sim",
        symbol=SYMBOL,
        t_ms=1_767_225_600_100,
        horizon_ms=1000,
        ret_bps=ret_bps,
        p_up=p_up,
        ref_price=60_000.0,
        model_version=7,
        hit_rate=0.5,
        ic=0.1,
        skill_vs_zero=0.0,
        latency_us=90,
        horizons=horizons,
    )
    return Signal.model_validate(fields)


# -- rendering --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p_up", "ret_bps", "arrow"),
    [(0.61, -0.4, "▲"), (0.39, +0.7, "▼"), (0.5, +0.3, "·"), (0.52, 0.0, "▲"), (0.48, 0.0, "▼")],
)
def test_the_arrow_beside_p_up_follows_p_up_not_the_expected_return(
    p_up: float, ret_bps: float, arrow: str
) -> None:
    table = Table({"sim": [SYMBOL]})
    table.add(signal(p_up, ret_bps))
    row = next(x for x in table.render(color=False).splitlines() if x.startswith(SYMBOL))
    cells = row.split()
    assert cells[cells.index(f"{p_up:.3f}") + 1] == arrow


def test_an_extra_horizon_row_has_the_arrow_of_its_own_p_up() -> None:
    extra = horizon_fields(
        horizon_ms=10_000, ret_bps=-2.0, p_up=0.7, model_version=3, hit_rate=0.5, ic=0.1,
        skill_vs_zero=0.0,
    )  # fmt: skip
    table = Table({"sim": [SYMBOL]})
    table.add(signal(0.3, 1.0, horizons=[extra]))
    lines = table.render(color=False).splitlines()
    main = next(i for i, x in enumerate(lines) if x.startswith(SYMBOL))
    assert lines[main].split()[5] == "▼"
    assert lines[main + 1].split()[:5] == ["10s", "horizon", "-2.000", "0.700", "▲"]


def test_the_route_states_read_as_the_operator_needs_them() -> None:
    now = 1000.0
    connected = RouteState(connected=True, last_frame_monotonic=now - 0.5)
    silent = RouteState(connected=True, last_frame_monotonic=now - 7.2)
    failed = RouteState(retry_at_monotonic=now + 11.3, last_error="gaierror: no such host")
    again = RouteState(retry_at_monotonic=now - 0.1, last_error="gaierror: no such host")
    fresh = RouteState()
    texts = [
        view.describe(view.route_view("public", state, now, now - 60.0))
        for state in (connected, silent, failed, again, fresh)
    ]
    assert texts == [
        "connected",
        "silent for 7 s",
        "retrying in 12 s (gaierror: no such host)",
        "connecting (gaierror: no such host)",
        "connecting",
    ]


def test_a_connection_just_opened_is_not_silent_for_the_time_before_it() -> None:
    now = 1000.0
    reopened = RouteState(connected=True, last_frame_monotonic=now - 30.0)
    assert view.route_view("public", reopened, now, now - 0.5).state == view.CONNECTED
    assert view.route_view("public", reopened, now, now - 3.0).seconds == pytest.approx(3.0)


def test_each_venue_line_and_each_waiting_symbol_say_what_the_feed_does() -> None:
    retrying = view.RouteView("public", view.RETRYING, 4.2, "ConnectionRefusedError: refused")
    line = view.feed_line("binanceusdm", [retrying], 0, 3)
    assert line == (
        "feed binanceusdm: retrying in 5 s (ConnectionRefusedError: refused) · no ticks yet "
        "· 3 reconnects"
    )
    two = [view.RouteView("trades", view.CONNECTED), view.RouteView("quotes", view.SILENT, 3.0)]
    assert view.feed_line("ccxt:kraken", two, 12, 1) == (
        "feed ccxt:kraken: trades connected, quotes silent for 3 s · 12 ticks · 1 reconnect"
    )
    assert view.feed_line("sim", [retrying], 5, 0, "stopping") == "feed sim: stopping · 5 ticks"
    assert view.waiting_text([retrying], 0, 0) == "no ticks: feed retrying in 5 s"
    assert view.waiting_text([view.RouteView("public", view.SILENT, 9.0)], 0, 0) == (
        "no ticks: feed silent for 9 s"
    )
    assert view.waiting_text([], 0, 0) == "no ticks: starting"
    assert view.waiting_text(None, 0, 0) == "no ticks"
    assert "waiting for signals" not in view.waiting_text([retrying], 0, 0)


def test_a_long_error_is_cut_to_one_line() -> None:
    text = view.describe(view.RouteView("public", view.CONNECTING, 0.0, "OSError:\n" + "x" * 200))
    assert "\n" not in text and len(text) < 100 and text.endswith("…)")


def test_the_header_names_the_redis_url_without_its_password_and_the_metrics_address() -> None:
    line = view.header_line("rediss://tickcast-worker:pw123@redis.example:6380/0", "off")
    assert line == (
        "tickcast run · redis rediss://tickcast-worker:***@redis.example:6380/0 · metrics off"
    )
    assert "pw123" not in line


def test_a_frame_redraws_in_place_and_only_the_first_clears_the_screen() -> None:
    lines = view.frame_lines("HEADER", ["feed sim: connected"], "T1\nT2\n", ["log"], color=False)
    assert lines == ["HEADER", "feed sim: connected", "", "T1", "T2", "", "log"]
    first, later = view.paint(lines, first=True), view.paint(lines)
    assert first.startswith(view.HOME + view.CLEAR_SCREEN)
    assert later.startswith(view.HOME) and view.CLEAR_SCREEN not in later
    assert later.split(view.ERASE_LINE)[0] == view.HOME + "HEADER"
    assert later.endswith(view.ERASE_DOWN)


def test_the_log_lines_go_to_the_view_while_it_runs_and_back_to_the_terminal_after() -> None:
    leader, follower = os.openpty()
    terminal = os.fdopen(follower, "w")
    handler = logging.StreamHandler(terminal)
    elsewhere = logging.StreamHandler(io.StringIO())
    root = logging.getLogger()
    root.addHandler(handler)
    root.addHandler(elsewhere)
    tail = view.LogTail()
    try:
        with view.logs_into(tail):
            assert handler not in root.handlers and elsewhere in root.handlers
            logging.getLogger("tickcast.test").warning("cannot reach %s", "redis://u:pw@h/0")
        assert handler in root.handlers and tail not in root.handlers
    finally:
        root.removeHandler(handler)
        root.removeHandler(elsewhere)
        terminal.close()
        os.close(leader)
    assert len(tail.lines) == 1 and tail.lines[0].endswith("WARNING cannot reach redis://u:***@h/0")
    assert "cannot reach" in elsewhere.stream.getvalue()  # type: ignore[attr-defined]


# -- a real service ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running(service: Service) -> AsyncIterator[asyncio.Task[int]]:
    task = asyncio.get_running_loop().create_task(service.run(handle_signals=False))
    try:
        yield task
    finally:
        service.request_stop()
        assert await asyncio.wait_for(task, 15) == 0


def settings(**values: Any) -> Any:
    base = {"exchange.symbols": [SYMBOL], "metrics.port": 0, "exchange.reconnect_base_s": 4.0}
    return load_settings(None, {**base, **values})


def text(frame: list[str]) -> str:
    return ANSI.sub("", "\n".join(frame))


async def frame_with(live: view.LiveView, needle: str, timeout: float = 20.0) -> str:
    found: list[str] = []

    def has() -> bool:
        found[:] = [text(live.lines(40))]
        return needle in found[0]

    try:
        await until(has, timeout)
    except TimeoutError:
        raise AssertionError(f"no {needle!r} in the view:\n{found[0]}") from None
    return found[0]


async def test_an_unreachable_venue_is_shown_retrying_with_its_error(redis_url: str) -> None:
    port = free_port()  # nothing listens there
    url = f"ws://127.0.0.1:{port}/public"
    service = Service(
        settings(**{"exchange.name": ["binanceusdm"], "exchange.urls.binanceusdm.public": url}),
        redis_url,
        online=False,
    )
    live = view.LiveView(service)
    assert "feed binanceusdm: starting" in text(live.lines(40))
    out = io.StringIO()
    async with running(service):
        side = asyncio.get_running_loop().create_task(view.live_view(service, out))
        frame = await frame_with(live, "feed binanceusdm: retrying in")
        assert "ConnectionRefusedError" in frame
        row = next(x for x in frame.splitlines() if x.startswith(SYMBOL))
        assert re.search(r"no ticks: feed (retrying in \d+ s|connecting)$", row), row
        assert "waiting for signals" not in frame
        await until(lambda: out.getvalue().count("retrying in") >= 4)  # redrawn, no signal
        side.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await side


async def test_a_silenced_simulator_is_shown_silent_then_connected_again(redis_url: str) -> None:
    service = Service(settings(**{"sim.speed": 4.0}), redis_url)
    live = view.LiveView(service)
    async with running(service):
        await service.ready.wait()
        await frame_with(live, "feed sim: connected")
        service.sims[0].faults.silent = True
        frame = await frame_with(live, "feed sim: silent for 2 s")
        assert frame.splitlines()[1].startswith("feed sim: silent for")
        service.sims[0].faults.silent = False
        await frame_with(live, "feed sim: connected")


async def test_every_frame_keeps_the_header_while_the_table_fills(redis_url: str) -> None:
    service = Service(settings(**{"sim.speed": 4.0}), redis_url)
    out = io.StringIO()
    async with running(service):
        side = asyncio.get_running_loop().create_task(view.live_view(service, out))
        await service.ready.wait()
        signal_row = re.compile(re.escape(SYMBOL) + r" +\d\d:\d\d:\d\d\.\d{3} ")
        await until(lambda: signal_row.search(ANSI.sub("", out.getvalue())) is not None, 30.0)
        side.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await side
        assert service.metrics_server is not None
        metrics = f"metrics {service.metrics_server.url}/metrics"
    frames = out.getvalue().split(view.HOME)[1:]
    assert len(frames) >= 3
    assert frames[0].startswith(view.CLEAR_SCREEN)
    for frame in frames:
        lines = ANSI.sub("", frame).splitlines()
        assert lines[0].startswith(f"tickcast run · redis {redact_url(redis_url)} · metrics ")
        assert lines[1].startswith("feed sim: ")
    assert ANSI.sub("", frames[-1]).splitlines()[0].endswith(metrics)
    assert any(signal_row.search(ANSI.sub("", frame)) for frame in frames)
    assert "feed sim: stopped" in ANSI.sub("", frames[-1]), "the last frame says it stopped"
    assert sum(view.CLEAR_SCREEN in f for f in frames) == 1, "no later frame wipes the screen"
