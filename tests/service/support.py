"""Helpers shared by the service tests (imported by name: the pytest ``pythonpath`` setting
puts this folder on ``sys.path``): worker settings, and running tickcast commands as
subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from tickcast.service.ops.config import Settings, load_settings

CLI = [sys.executable, "-m", "tickcast.service.cli"]
INGEST_METRICS = frozenset(
    {
        "tickcast_ticks_received_total",
        "tickcast_ticks_written_total",
        "tickcast_ticks_dropped_total",
        "tickcast_feed_reconnects_total",
        "tickcast_feed_connect_errors_total",
        "tickcast_feed_keepalive_timeouts_total",
        "tickcast_feed_connected",
        "tickcast_feed_seconds_since_last_frame",
        "tickcast_feed_gaps_total",
        "tickcast_feed_watchdog_trips_total",
        "tickcast_ingest_queue_depth",
        "tickcast_xadd_batch_size_bucket",
    }
)
"""The metric families (sample names) every ingesting service serves (the feed lag histogram is
the worker's: it observes each tick's receive - event time as it reads it)."""


def worker_settings(symbols: Sequence[str], **worker: object) -> Settings:
    """Default settings for ``symbols``, with ``worker.<key>`` overrides."""
    return load_settings(
        None,
        {"exchange.symbols": list(symbols), **{f"worker.{k}": v for k, v in worker.items()}},
    )


def start(args: Sequence[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``tickcast <args>``, appending its output to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen([*CLI, *args], env=env, stdout=out, stderr=subprocess.STDOUT)


def environment(state_dir: Path, **extra: str) -> dict[str, str]:
    """This environment without any ``TICKCAST*`` variable, with its own state directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKCAST")}
    env["TICKCAST_STATE_DIR"] = str(state_dir)
    env.update(extra)
    return env


def wait_until(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll ``check`` every 0.1 s; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def http(url: str) -> tuple[int, str]:
    """GET ``url``: status and body (status 0 and the error when nothing answers)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


@contextlib.asynccontextmanager
async def running(feed: Any) -> AsyncIterator[list[Any]]:
    """Run a feed (anything with ``async run(sink)``) into a list for the duration of the
    block; cancel it after."""
    got: list[Any] = []
    task = asyncio.get_running_loop().create_task(feed.run(got.extend))
    try:
        yield got
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(condition: Callable[[], object], timeout: float = 15.0) -> None:
    """Poll ``condition`` every 10 ms until it holds; ``TimeoutError`` after ``timeout`` s."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
