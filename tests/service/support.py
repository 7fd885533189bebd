"""Helpers shared by the service tests (imported by name: the pytest ``pythonpath`` setting
puts this folder on ``sys.path``): worker settings, running tickcast commands as subprocesses
or in-process, signals published and taken, and the pool scenario both the single-server and the
cluster pool tests run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis

from tickcast.model.learner import OnlineLearner
from tickcast.service.bus import codec, keys
from tickcast.service.bus.connection import AsyncClient, is_cluster, probe
from tickcast.service.bus.lease import held_by_dead_local_process
from tickcast.service.bus.writer import TickWriter
from tickcast.service.live.pool import members_key
from tickcast.service.live.worker import Worker
from tickcast.service.offline.backtest import Backtest
from tickcast.service.offline.modelfile import load_model
from tickcast.service.offline.training import WarmBacktest
from tickcast.service.ops.config import Settings, load_settings
from tickcast.service.schema import Signal, decode_signal, encode_signal, signal_fields
from tickcast.service.ticks import Tick

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


def use_environment(monkeypatch: pytest.MonkeyPatch, state_dir: Path, **extra: str) -> None:
    """This process's environment as :func:`environment` makes it, for commands run in-process
    (``main([...])``); undone at the end of the test."""
    for name in list(os.environ):
        if name.startswith("TICKCAST"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TICKCAST_STATE_DIR", str(state_dir))
    for name, value in extra.items():
        monkeypatch.setenv(name, value)


@contextlib.contextmanager
def reaping() -> Iterator[list[subprocess.Popen[bytes]]]:
    """A list to put started processes in: those still running at the end are killed (and
    waited for)."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


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


# -- the worker against its reference ---------------------------------------------------------


async def write_ticks(client: AsyncClient, ticks: Sequence[Tick]) -> None:
    """Write ``ticks`` to their streams as an ingester does, 500 per batch (``client``: a
    plain or a cluster asyncio client)."""

    writer = TickWriter(client, Settings())
    for i in range(0, len(ticks), 500):
        await writer.write(ticks[i : i + 500])


async def drain(worker: Worker) -> int:
    """Step ``worker`` without blocking until nothing is left; the ticks it processed."""
    total = 0
    while n := await worker.step(block_ms=0):
        total += n
    return total


def reference(
    ticks: Sequence[Tick], symbol: str, model: Path | None = None
) -> tuple[OnlineLearner, list[tuple[int, float]]]:
    """The offline engine on the same ticks, from scratch or with its learners started from
    the ``model`` file: the backtest's learner of ``symbol`` and its ``(t_ms, ret_bps)``
    predictions."""

    clock = {"horizon_ms": 1000, "sample_ms": 100}
    backtest = Backtest(clock) if model is None else WarmBacktest(clock, load_model(model))
    out: list[tuple[int, float]] = []
    for tick in ticks:
        predictions = backtest.feed(tick)
        if tick.symbol == symbol:
            out.extend((p.t_ms, p.ret_bps) for p in predictions)
    return backtest.symbols[symbol].learner, out


# -- signals, as the client receives them -----------------------------------------------------


def publish_signal(client: Any, symbol: str, t_ms: int, stream_id: str = "*") -> str:
    """Add a valid signal of ``symbol`` (venue ``sim``) at ``t_ms``, ``ret_bps`` = ``t_ms`` /
    1000, to its stream as ``stream_id`` (plain or cluster client); its stream ID."""
    fields = signal_fields(
        venue="sim",
        symbol=symbol,
        t_ms=t_ms,
        horizon_ms=1000,
        ret_bps=t_ms / 1000.0,
        p_up=0.5,
        ref_price=100.0,
        model_version=t_ms // 100,
        hit_rate=0.5,
        ic=0.0,
        skill_vs_zero=0.0,
        latency_us=10,
    )
    key = keys.signals_key("tickcast", "sim", symbol)
    return client.xadd(key, encode_signal(fields), id=stream_id).decode()  # type: ignore[no-any-return]


async def take(it: AsyncIterator[Signal], n: int, timeout: float = 20.0) -> list[Signal]:
    """The next ``n`` signals of ``it``; ``TimeoutError`` after ``timeout`` s."""
    out: list[Signal] = []
    async with asyncio.timeout(timeout):
        async for signal in it:
            out.append(signal)
            if len(out) == n:
                break
    return out


# -- pools: who holds what, and what they published -------------------------------------------


class Owners:
    """Samples the worker lease of each of ``symbols`` (venue ``sim``) every 20 ms in a
    thread, through a plain or a cluster client (one key per slot): the owners seen, in order,
    per symbol. A read that fails (a failover in progress) is counted in ``errors``."""

    def __init__(self, url: str, symbols: Sequence[str]) -> None:

        self.client = probe(url, Settings(), 10.0)
        self.keys = {s: keys.symbol_key("tickcast", "sim", s, "owner") for s in symbols}
        self.seen: dict[str, list[str | None]] = {s: [] for s in symbols}
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:

        while not self._stop.wait(0.02):
            try:
                now = self.now()
            except (redis.RedisError, OSError):
                self.errors += 1
                continue
            for symbol, owner in now.items():
                if not self.seen[symbol] or self.seen[symbol][-1] != owner:
                    self.seen[symbol].append(owner)

    def now(self) -> dict[str, str | None]:
        """Each symbol's owner token now (None: held by nobody)."""
        out: dict[str, str | None] = {}
        for symbol, key in self.keys.items():
            raw = self.client.get(key)
            out[symbol] = raw.decode() if isinstance(raw, bytes) else None
        return out

    def split(self, *procs: subprocess.Popen[bytes]) -> list[int]:
        """How many symbols each of ``procs`` holds, sorted; [] while one is held by nobody
        (or the owners cannot be read)."""

        try:
            owners = self.now()
        except (redis.RedisError, OSError):
            return []
        if None in owners.values():
            return []
        pids = Counter(int(str(o).split(":")[1]) for o in owners.values())
        return sorted(pids[p.pid] for p in procs)

    def held_only_by(self, *procs: subprocess.Popen[bytes]) -> bool:
        """Whether every owner seen so far was one of ``procs``."""
        pids = {str(p.pid) for p in procs}
        seen = (o for owners in self.seen.values() for o in owners if o is not None)
        return all(o.split(":")[1] in pids for o in seen)

    def __enter__(self) -> Owners:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.client.close()


def replay(client: Any, symbol: str) -> list[tuple[int, float, float]]:
    """What one uninterrupted learner predicts over the symbol's whole tick stream (venue
    ``sim``): ``(t_ms, ret_bps, p_up)`` per sample."""

    learner = OnlineLearner(horizon_ms=1000, sample_ms=100)
    out: list[tuple[int, float, float]] = []
    for _, fields in client.xrange(keys.ticks_key("tickcast", "sim", symbol)):
        out.extend((p.t_ms, p.ret_bps, p.p_up) for p in learner.update(codec.decode(fields)))
    return out


def published(client: Any, symbol: str) -> list[tuple[int, float, float]]:
    """The symbol's published signals (venue ``sim``): ``(t_ms, ret_bps, p_up)`` each."""

    entries = client.xrange(keys.signals_key("tickcast", "sim", symbol))
    signals = [decode_signal(fields) for _, fields in entries]
    return [(s.t_ms, s.ret_bps, s.p_up) for s in signals]


def stop_cleanly(proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    """SIGTERM ``proc``; it must exit 0 (its log in the failure message)."""

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=timeout) == 0, log.read_text()


def pool_environment(state_dir: Path, url: str, lease_ttl_s: float) -> dict[str, str]:
    """:func:`environment` for pool processes on the Redis at ``url``: no metrics server,
    leases of ``lease_ttl_s``, a worker checkpoint every 40 samples."""
    return environment(
        state_dir,
        TICKCAST__REDIS__URL=url,
        TICKCAST__METRICS__ENABLED="false",
        TICKCAST__WORKER__LEASE_TTL_S=str(lease_ttl_s),
        TICKCAST__WORKER__CHECKPOINT_EVERY_SAMPLES="40",
    )


def split_join_and_kill(
    owners: Owners, worker: Callable[[str], subprocess.Popen[bytes]], lease_ttl_s: float
) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    """The pool scenario on the six symbols ``owners`` watches: ``worker("a")`` and
    ``worker("b")`` share them 3 + 3, a newcomer ``worker("c")`` takes its share (2 + 2 + 2),
    then ``b`` is SIGKILLed and its symbols, and only those, move to the other two (3 + 3)
    within 5 lease TTLs. Returns the workers a, b and c."""
    a, b = worker("a"), worker("b")
    wait_until("two workers sharing six symbols", lambda: owners.split(a, b) == [3, 3])
    c = worker("c")
    wait_until("the newcomer's share", lambda: owners.split(a, b, c) == [2, 2, 2])
    before = owners.now()
    b.kill()  # SIGKILL: no final checkpoint, leases left to expire
    b.wait()
    wait_until(
        "b's symbols taken over", lambda: owners.split(a, c) == [3, 3], timeout=5 * lease_ttl_s
    )
    after = owners.now()
    moved = {s for s in owners.keys if before[s] != after[s]}
    assert moved == {s for s in owners.keys if f":{b.pid}:" in str(before[s])}
    return a, b, c


def stop_and_compare_signals(
    client: Any,
    symbols: Sequence[str],
    ingest: subprocess.Popen[bytes],
    workers: Mapping[str, subprocess.Popen[bytes]],
    logs: Mapping[str, Path],
) -> None:
    """Stop the ingester, let the workers publish every sample of the streams, stop them
    (``logs``: by ``"ingest"`` and the workers' names); then every symbol's signals are one
    uninterrupted learner's over its stream (``client``: plain or cluster)."""
    stop_cleanly(ingest, logs["ingest"])
    expected = {s: replay(client, s) for s in symbols}
    wait_until(
        "every sample published",
        lambda: all(len(published(client, s)) >= len(expected[s]) for s in symbols),
        timeout=60.0,
    )
    for name, proc in workers.items():
        stop_cleanly(proc, logs[name])
    for symbol in symbols:
        assert published(client, symbol) == expected[symbol], (
            f"{symbol}: each sample once, as one uninterrupted learner over the stream: no "
            "duplicate, no gap, through every hand-over"
        )


def assert_pool_members_left(client: Any) -> None:
    """Every member of the worker pool that stopped removed its entry (a SIGKILLed one's
    stays until it expires: it is told apart by its process being gone)."""
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    entries = client.zrangebyscore(members_key("tickcast", "worker"), now_ms, "+inf")
    live = [m.decode() for m in entries if not held_by_dead_local_process(m.decode())]
    assert live == [], "the members that stopped removed themselves"


def assert_user_on_cluster(url: str, writes_ticks: bool) -> None:
    """The Redis user of ``url`` reaches a cluster through tickcast's client and may write a
    tick stream when ``writes_ticks`` (the ingester), else only read it (writing refused)."""
    client = probe(url, Settings(redis={"cluster": True}), 5.0)
    try:
        assert is_cluster(client)
        key = "tickcast:{binanceusdm:BTCUSDT}:ticks"
        if writes_ticks:
            assert client.xadd(key, {"t": "1"}, id="1-1") == b"1-1"
        else:
            assert client.xrange(key) in ([], [(b"1-1", {b"t": b"1"})])
            try:
                client.xadd(key, {"t": "2"})
            except redis.exceptions.NoPermissionError:
                return
            raise AssertionError(f"{url.split('@')[0]}... could write a tick stream")
    finally:
        client.close()
