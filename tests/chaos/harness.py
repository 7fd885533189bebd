"""The chaos harness: real processes, faults injected from outside, every trade accounted for.

A :class:`Lab` runs what a deployment runs, each as its own process: a redis-server
(:class:`~tickcast.service.bus.embedded.EmbeddedRedis`, whose pid the faults stop, kill and
restart), the simulated exchange (``tickcast sim``, Binance USDⓈ-M dialect, real time) and
``tickcast run`` / ``ingest`` / ``worker --exchange binanceusdm --offline`` pointed at the
simulator's URLs, with a short lease, short socket timeouts and frequent checkpoints. The
scenarios (``test_chaos.py``) kill and restart those processes, stall Redis, make the venue
misbehave, then stop everything cleanly and read Redis:

* **trades sent**: the simulator numbers each symbol's trades consecutively, so the span of the
  ids stored is what the venue sent while tickcast was listening (the ground truth);
* **stored**: distinct trade ids in the tick streams; **duplicated**: ids stored twice;
* **gaps** and **dropped**: what the processes *counted* as lost, from their metrics
  (``tickcast_feed_missed_trades_total``, ``tickcast_ticks_dropped_total``, scraped before every
  kill and stop) and their logs ("N ticks not written to Redis, dropped (...)"): a trade that is
  missing must be among them (no silent loss);
* **signals**: compared with a replay of the stored tick streams through the same learner
  (``OnlineLearner``): a signal missing is *lost*, one published twice *duplicated*, one with
  other values *differing*.

Sizes: ``TICKCAST_CHAOS=long`` (``make chaos``) runs the same scenarios longer (more kills,
more frames); the default is the short version that ``make test`` runs. Every random choice
comes from the scenario's seed (``TICKCAST_CHAOS_SEED`` changes the base seed), printed with the
processes' logs when a scenario fails.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import re
import signal
import subprocess
import time
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import redis
from prometheus_client.parser import text_string_to_metric_families

from tickcast.model.learner import OnlineLearner
from tickcast.service.bus import keys
from tickcast.service.bus.embedded import EmbeddedRedis, free_port
from tickcast.service.bus.reader import iter_range
from tickcast.service.schema import decode_signal
from tickcast.service.ticks import TRADE, Tick, invalid_reason

from support import CLI, environment, http, wait_until

LONG = os.environ.get("TICKCAST_CHAOS", "short") == "long"
"""``TICKCAST_CHAOS=long``: the long version (``make chaos``)."""
BASE_SEED = int(os.environ.get("TICKCAST_CHAOS_SEED", "20261205"))
VENUE = "binanceusdm"
SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT")
PREFIX = "tickcast"
LEASE_TTL_S = 2.0
"""``worker.lease_ttl_s`` of every process: Redis stalls are measured against it."""
SOCKET_TIMEOUT_S = 0.5
HORIZON_MS, SAMPLE_MS = 1000, 100
"""The worker's defaults, which the replay uses too."""


@dataclass(frozen=True)
class Sizes:
    """How much chaos a scenario makes."""

    kills: int
    """``kill -9`` per kill loop."""
    alive_s: tuple[float, float]
    """A process lives a random time in this range (s) after it wrote or published."""
    stalls: int
    """Redis stalls (or kills) per stall scenario."""
    fault_s: float
    """Seconds of venue faults."""
    fuzz_frames: int
    """Frames of the fuzzing websocket server."""
    oversized: int
    """Frames over 4 MiB among them."""
    timeout_s: float
    """Bound on one scenario (pytest-timeout)."""


SIZES = (
    Sizes(
        kills=12,
        alive_s=(0.3, 6.0),
        stalls=3,
        fault_s=60.0,
        fuzz_frames=120_000,
        oversized=6,
        timeout_s=600.0,
    )
    if LONG
    else Sizes(
        kills=3,
        alive_s=(0.2, 2.0),
        stalls=1,
        fault_s=8.0,
        fuzz_frames=12_000,
        oversized=2,
        timeout_s=120.0,
    )
)


def seed_of(scenario: str) -> int:
    """The seed of ``scenario``: the base seed mixed with its name (reproducible, distinct)."""
    return (BASE_SEED ^ zlib.crc32(scenario.encode())) & 0x7FFF_FFFF


# -- the report ----------------------------------------------------------------------------


@dataclass
class Report:
    """The figures of one scenario (trades; the fuzz scenario counts every valid tick)."""

    scenario: str
    seed: int
    sent: int = 0
    """Trades the venue sent while tickcast listened (the span of the stored ids)."""
    stored: int = 0
    """Distinct trades stored."""
    dropped: int = 0
    """Trades the processes counted as dropped (received, never written)."""
    gaps: int = 0
    """Trades the processes counted as missed (trade-id gaps)."""
    duplicated: int = 0
    """Trades stored more than once."""
    signals: int = 0
    """Signals published (distinct sample times)."""
    signals_duplicated: int = 0
    signals_lost: int = 0
    """Sample times of the replay that were never published."""
    signals_differing: int = 0
    """Sample times published with values other than the replay's."""
    kills: int = 0
    """Faults injected: processes killed, Redis stalls and restarts."""
    exits: int = 0
    """Process exits nobody asked for (the harness restarted them, as a supervisor would)."""
    hostile: int = 0
    """Fuzz: hostile frames sent."""
    refused: int = 0
    """Fuzz: frames the process counted as rejected or skipped."""

    @property
    def missing(self) -> int:
        """Trades sent and not stored."""
        return self.sent - self.stored

    @property
    def counted(self) -> int:
        """Trades the processes counted as lost (dropped or missed)."""
        return self.dropped + self.gaps


REPORTS: list[Report] = []
"""Every scenario's report, in run order (the terminal summary prints them)."""

_COLUMNS = (
    ("scenario", "scenario"),
    ("seed", "seed"),
    ("faults", "kills"),
    ("sent", "sent"),
    ("stored", "stored"),
    ("missing", "missing"),
    ("dropped", "dropped"),
    ("gaps", "gaps"),
    ("dup", "duplicated"),
    ("signals", "signals"),
    ("sig dup", "signals_duplicated"),
    ("sig lost", "signals_lost"),
    ("sig diff", "signals_differing"),
    ("exits", "exits"),
    ("hostile", "hostile"),
    ("refused", "refused"),
)


def table(reports: Sequence[Report]) -> str:
    """A Markdown table of ``reports``, one row per scenario (as the README quotes it)."""
    head = [title for title, _ in _COLUMNS]
    rows = [[_cell(attr, getattr(r, attr)) for _, attr in _COLUMNS] for r in reports]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(attr: str, value: object) -> str:
    if attr == "seed":
        return str(value)
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


# -- processes -----------------------------------------------------------------------------


_NOT_WRITTEN = re.compile(r"(\d+) ticks not written to Redis, dropped \((.*)\)")
_PER_KEY = re.compile(r"(\S+) (trade|quote): (\d+)")


@dataclass
class Proc:
    """One incarnation of a tickcast process, with the counters last scraped from it."""

    role: str
    popen: subprocess.Popen[bytes]
    port: int
    log: Path
    log_start: int
    counters: dict[str, float] = field(default_factory=dict)
    ended: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.popen.poll() is None

    def scrape(self) -> dict[str, float] | None:
        """Read the counters the scenarios need from ``/metrics`` (None when it does not
        answer); kept in :attr:`counters`."""
        code, body = http(self.url + "/metrics")
        if code != 200:
            return None
        out: Counter[str] = Counter()
        for family in text_string_to_metric_families(body):
            for s in family.samples:
                labels = s.labels
                if s.name == "tickcast_feed_missed_trades_total":
                    out["missed"] += s.value
                elif s.name == "tickcast_ticks_dropped_total" and labels["kind"] == TRADE:
                    out["dropped_trades"] += s.value
                elif s.name == "tickcast_ticks_written_total":
                    out[f"written {labels['symbol']}"] += s.value
                elif s.name == "tickcast_signals_published_total":
                    out[f"signals {labels['symbol']}"] += s.value
                elif s.name == "tickcast_ticks_rejected_total":
                    out["rejected"] += s.value
                    out[f"rejected {labels['reason']}"] += s.value
                elif s.name == "tickcast_feed_frames_skipped_total":
                    out["skipped"] += s.value
                    out[f"skipped {labels['reason']}"] += s.value
                elif s.name == "tickcast_feed_reconnects_total":
                    out["reconnects"] += s.value
        self.counters = dict(out)
        return self.counters

    def progressed(self, what: str, symbols: Sequence[str]) -> bool:
        """Whether this incarnation counted ``what`` (``written`` or ``signals``) for every
        symbol."""
        got = self.scrape()
        return got is not None and all(got.get(f"{what} {s}", 0.0) > 0.0 for s in symbols)

    def text(self) -> str:
        """This incarnation's part of its (shared) log file."""
        with self.log.open("rb") as f:
            f.seek(self.log_start)
            return f.read().decode(errors="replace")

    def logged_dropped_trades(self) -> int:
        """Trades this incarnation logged as not written when it stopped."""
        total = 0
        for match in _NOT_WRITTEN.finditer(self.text()):
            total += sum(int(n) for _, kind, n in _PER_KEY.findall(match[2]) if kind == TRADE)
        return total


class Lab:
    """A scenario's processes and figures; see the module docstring. A context manager: on the
    way out every process still running is killed, the simulator and Redis stopped, and, when
    the scenario failed, its seed and the tail of every log printed.

    Parameters
    ----------
    scenario : str
        Its name (the seed derives from it).
    root : Path
        A fresh directory for logs, state and Redis data.
    sim_args : sequence of str
        Extra ``tickcast sim`` flags (faults).
    urls : dict, optional
        The venue's route URLs when something else serves them (no simulator is started).
    symbols : sequence of str
        The symbols simulated and ingested.
    """

    def __init__(
        self,
        scenario: str,
        root: Path,
        *,
        sim_args: Sequence[str] = (),
        urls: dict[str, str] | None = None,
        symbols: Sequence[str] = SYMBOLS,
    ) -> None:
        self.seed = seed_of(scenario)
        self.rng = random.Random(self.seed)
        self.report = Report(scenario, self.seed)
        self.root = root
        self.symbols = tuple(symbols)
        self.sim_args = tuple(sim_args)
        self.urls = urls
        self.redis = EmbeddedRedis(root / "redis", unix_socket=False, discovery=False)
        self.sim: subprocess.Popen[bytes] | None = None
        self.procs: list[Proc] = []
        self.current: dict[str, Proc] = {}
        self.env: dict[str, str] = {}
        self.bad_ticks: list[Tick] = []
        """Stored ticks that break the contract (or Binance's integer trade ids)."""

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> Lab:
        print(f"chaos scenario {self.report.scenario}: seed {self.seed}", flush=True)
        self.redis.start()
        if self.urls is None:
            self.urls = self._start_sim()
        env = {
            "TICKCAST__REDIS__URL": self.redis.url,
            "TICKCAST__REDIS__SOCKET_TIMEOUT_S": str(SOCKET_TIMEOUT_S),
            "TICKCAST__REDIS__CONNECT_TIMEOUT_S": str(SOCKET_TIMEOUT_S),
            "TICKCAST__WORKER__LEASE_TTL_S": str(LEASE_TTL_S),
            "TICKCAST__WORKER__BLOCK_MS": "200",
            "TICKCAST__WORKER__CHECKPOINT_EVERY_SAMPLES": "37",
            "TICKCAST__WORKER__CHECKPOINT_EVERY_S": "2",
            "TICKCAST__EXCHANGE__RECONNECT_BASE_S": "0.05",
            "TICKCAST__EXCHANGE__RECONNECT_CAP_S": "0.5",
            "TICKCAST__EXCHANGE__WATCHDOG_S": "3",
            "TICKCAST__SIM__SEED": str(self.seed),
        }
        for route, url in self.urls.items():
            env[f"TICKCAST__EXCHANGE__URLS__{VENUE.upper()}__{route.upper()}"] = url
        self.env = environment(self.root / "state", **env)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for proc in self.procs:
            if proc.alive():
                proc.popen.kill()
                proc.popen.wait()
        if self.sim is not None:
            if self.sim.poll() is None:
                self.sim.send_signal(signal.SIGTERM)
                try:
                    self.sim.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.sim.kill()
                    self.sim.wait()
            if self.sim.stdout is not None:
                self.sim.stdout.close()
        if self.redis.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.redis.pid, signal.SIGCONT)
        if self.redis.running:
            self.redis.stop()
        if exc is not None:
            print(f"chaos scenario {self.report.scenario} failed: seed {self.seed}", flush=True)
            print(f"report: {self.report}", flush=True)
            for log in sorted(self.root.glob("*.log")):
                lines = log.read_text(errors="replace").splitlines()
                print(f"---- {log.name} (last 40 lines)", *lines[-40:], sep="\n", flush=True)

    def _start_sim(self) -> dict[str, str]:
        args = ["sim", "--port", "0", "--symbols", ",".join(self.symbols)]
        args += ["--seed", str(self.seed), *self.sim_args]
        env = environment(self.root / "sim-state")
        with (self.root / "sim.log").open("wb") as log:
            self.sim = subprocess.Popen([*CLI, *args], env=env, stdout=subprocess.PIPE, stderr=log)
        assert self.sim.stdout is not None
        first = self.sim.stdout.readline().decode()
        assert first.startswith("simulated"), f"tickcast sim did not start: {first!r}"
        base = first.split()[-1]
        return {"public": base + "/public", "market": base + "/market"}

    # -- tickcast processes -----------------------------------------------------------------

    def start(self, role: str) -> Proc:
        """Start ``tickcast <role>`` (``run``, ``ingest`` or ``worker``) on the lab's venue."""
        port = free_port()
        args = [role, "--exchange", VENUE, "--symbols", ",".join(self.symbols)]
        args += ["--metrics-port", str(port)]
        if role in ("run", "ingest"):
            args.append("--offline")
        if role == "run":
            args.append("--no-view")
        if role == "ingest":
            args += ["--stats-every", "0"]
        log = self.root / f"{role}.log"
        start = log.stat().st_size if log.exists() else 0
        with log.open("ab") as out:
            popen = subprocess.Popen(
                [*CLI, *args], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        proc = Proc(role, popen, port, log, start)
        self.procs.append(proc)
        self.current[role] = proc
        return proc

    def wait_progress(self, proc: Proc, timeout: float = 60.0) -> None:
        """Wait until ``proc`` (or the process that replaced it, if it exited) wrote ticks
        (ingest, run) or published signals (worker) of every symbol; restart what exits
        meanwhile."""
        what = "signals" if proc.role == "worker" else "written"
        deadline = time.monotonic() + timeout
        while True:
            current = self.supervise()
            if current[proc.role].progressed(what, self.symbols):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"tickcast {proc.role} made no progress in {timeout} s")
            time.sleep(0.1)

    def supervise(self) -> dict[str, Proc]:
        """Restart, as a supervisor would, every current process that exited unasked (each
        counted in ``exits``); return the current processes."""
        for role, proc in list(self.current.items()):
            if not proc.alive():
                proc.ended = True
                self.report.exits += 1
                print(f"tickcast {role} exited with {proc.popen.returncode}; restarting")
                self.start(role)
        return self.current

    def live_for(self, seconds: float) -> None:
        """Let the processes run ``seconds``, scraping them and restarting what exits."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for proc in self.supervise().values():
                proc.scrape()
            time.sleep(0.2)

    def kill(self, role: str) -> None:
        """``kill -9`` the current ``role`` process (its counters scraped just before)."""
        proc = self.current[role]
        proc.scrape()
        proc.popen.kill()
        proc.popen.wait()
        proc.ended = True
        self.report.kills += 1

    def stop(self, role: str, timeout: float = 20.0) -> int:
        """SIGTERM the current ``role`` process once it serves its metrics (its signal
        handlers are in place by then); its exit code."""
        wait_until(
            f"tickcast {role} to serve its metrics",
            lambda: self.supervise()[role].scrape() is not None,
            60.0,
        )
        proc = self.current.pop(role)
        proc.popen.send_signal(signal.SIGTERM)
        try:
            code = proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            code = proc.popen.wait()
        proc.ended = True
        return code

    def random_lifetime(self) -> float:
        low, high = SIZES.alive_s
        return self.rng.uniform(low, high)

    # -- Redis faults -----------------------------------------------------------------------

    def stall_redis(self, seconds: float) -> None:
        """SIGSTOP Redis for ``seconds`` (the processes keep running and are watched)."""
        assert self.redis.pid is not None
        os.kill(self.redis.pid, signal.SIGSTOP)
        try:
            self.live_for(seconds)
        finally:
            os.kill(self.redis.pid, signal.SIGCONT)
        self.report.kills += 1

    def restart_redis(self, down_s: float) -> None:
        """SIGKILL Redis, keep it down ``down_s``, start it again on its data (AOF)."""
        self.redis.kill()
        self.live_for(down_s)
        self.redis.start()
        self.report.kills += 1

    # -- accounting -------------------------------------------------------------------------

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis.url, socket_timeout=10.0)

    def stored_ticks(self) -> dict[str, list[Tick]]:
        """Every symbol's tick stream, oldest first."""
        client = self.client()
        try:
            return {
                s: [t for _, t in iter_range(client, keys.ticks_key(PREFIX, VENUE, s))]
                for s in self.symbols
            }
        finally:
            client.close()

    def signals(self) -> dict[str, list[tuple[int, float, float]]]:
        """Every symbol's published signals as ``(t_ms, ret_bps, p_up)``, in stream order;
        every number finite."""
        client = self.client()
        out: dict[str, list[tuple[int, float, float]]] = {}
        try:
            for s in self.symbols:
                entries = client.xrange(keys.signals_key(PREFIX, VENUE, s))
                signals = [decode_signal(fields) for _, fields in entries]
                for sig in signals:
                    numbers = (sig.ret_bps, sig.p_up, sig.ref_price, sig.hit_rate, sig.ic)
                    assert all(x is None or math.isfinite(x) for x in numbers), sig
                out[s] = [(sig.t_ms, sig.ret_bps, sig.p_up) for sig in signals]
        finally:
            client.close()
        return out

    def account_trades(self) -> dict[str, list[Tick]]:
        """Fill the trade figures of the report from Redis and the processes' counters; the
        stored ticks, by symbol. Those breaking the tick contract, and trades whose id is not
        an integer, are kept in :attr:`bad_ticks`."""
        stored = self.stored_ticks()
        report = self.report
        for ticks in stored.values():
            self.bad_ticks += [t for t in ticks if invalid_reason(t) is not None]
            self.bad_ticks += [t for t in ticks if t.kind == TRADE and not t.trade_id.isdigit()]
            ids = [int(t.trade_id) for t in ticks if t.kind == TRADE and t.trade_id.isdigit()]
            if not ids:
                continue
            distinct = set(ids)
            report.sent += max(ids) - min(ids) + 1
            report.stored += len(distinct)
            report.duplicated += len(ids) - len(distinct)
        for proc in self.procs:
            report.gaps += int(proc.counters.get("missed", 0))
            report.dropped += max(
                int(proc.counters.get("dropped_trades", 0)), proc.logged_dropped_trades()
            )
        return stored

    def account_signals(self, stored: dict[str, list[Tick]]) -> dict[str, list[object]]:
        """Fill the signal figures from the signal streams and a replay of ``stored``; the
        replay's predictions and the signals, by symbol, for the assertions."""
        report = self.report
        published = self.signals()
        out: dict[str, list[object]] = {}
        for symbol, ticks in stored.items():
            expected = replay(ticks)
            got = published[symbol]
            times = [t for t, _, _ in got]
            report.signals += len(set(times))
            report.signals_duplicated += len(times) - len(set(times))
            by_time = {p[0]: p for p in expected}
            report.signals_lost += len(set(by_time) - set(times))
            report.signals_differing += sum(1 for g in got if by_time.get(g[0], g) != g)
            report.signals_differing += sum(1 for t in times if t not in by_time)
            out[symbol] = [expected, got]
        return out

    def wait_worker_caught_up(self, stored: dict[str, list[Tick]], timeout: float = 60.0) -> None:
        """Wait until the signals cover the replay of ``stored`` (the worker read every tick)."""
        wanted = {s: len(replay(ticks)) for s, ticks in stored.items()}

        def caught_up() -> bool:
            self.supervise()
            got = self.signals()
            return all(len(got[s]) >= n for s, n in wanted.items())

        wait_until("the worker to publish every sample of the stored ticks", caught_up, timeout)


def replay(ticks: Sequence[Tick]) -> list[tuple[int, float, float]]:
    """The predictions ``(t_ms, ret_bps, p_up)`` of one uninterrupted learner over ``ticks``
    (one symbol's stream): what the worker must have published, once each."""
    learner = OnlineLearner(horizon_ms=HORIZON_MS, sample_ms=SAMPLE_MS)
    out: list[tuple[int, float, float]] = []
    for tick in ticks:
        out.extend((p.t_ms, p.ret_bps, p.p_up) for p in learner.update(tick))
    return out
