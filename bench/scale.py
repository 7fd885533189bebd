"""Capacity model: ticks/s and signals/s per core of ingest and worker, and the per-shard limit.

Measured on this machine, with one Redis (a redis-server on a loopback port, AOF on, as the
deployments run it) and with a Redis Cluster of 3 masters and 3 replicas (the test suite's
:class:`localcluster.LocalCluster`: no persistence, 1 s node timeout). When this tickcast has
no cluster data path or the suite no cluster, the bench says "cluster: not measured" and why.

1. **Grid.** For each layout, symbols per process (default 1, 10, 50, 200) and
   ``worker.sample_ms`` (default 100 and 1000 ms), plus 50 symbols at 100 ticks/s each, four
   processes run for a measured window:

   - a *simulator* (the synthetic market in Binance USDⓈ-M's dialect on loopback, paced in
     real time, its rates scaled by ``sim_rate_scale`` to ``--rate`` ticks/s per symbol);
   - an *ingest* process: the websocket feed -> :class:`~tickcast.service.live.ingest.Ingester`
     -> :class:`~tickcast.service.bus.writer.TickWriter`, as ``tickcast ingest`` runs them;
   - a *worker* process: :class:`~tickcast.service.live.service.Service` without ingest, as
     ``tickcast worker``: tick streams -> learners -> signals, leases included;
   - the Redis server(s).

   The window is the same for all of them (the parent tells the children when it starts and
   ends). Each process's CPU time (user + system) over it gives its *per core* figures: ticks
   (or signals) handled per CPU-second — what one core would carry at that cost — and the
   Redis masters' CPU per tick (the shards' load; replicas and all servers shown apart).

2. **Per-shard limit.** ``redis-benchmark`` (C, pipelined ``XADD MAXLEN ~`` of a tick-sized
   entry over 200 streams) on one Redis: its Redis CPU per XADD is the reference every XADD
   figure is set against; then 1, 2, 3 writer processes running tickcast's own ``TickWriter``
   as fast as they can (batches of 1,000, as the ingester sends them), with Redis's CPU share
   and the PING round trip measured meanwhile.

3. **References** measured in the same run: the learner alone (decode + update, CPU per 1k
   ticks, in this process), and the ``redis-benchmark`` figure above.

4. **Model and sizing.** Least squares over each layout's rows: worker CPU = fixed + per tick
   + per signal; ingest CPU = fixed + per tick; the masters' CPU = fixed + per tick + per
   signal (one Redis: also split by the keys the worker's XREADs name). The sizing takes the
   costs per symbol measured at ``--rate`` ticks/s, 100 ms sampling and the most symbols per
   process, and gives the processes and shards for 50, 500 and 5,000 symbols, each process and
   shard at most ``--headroom`` busy (a Python process runs on one core, a shard too).

Usage: ``.venv/bin/python bench/scale.py [--quick] [--symbols 1,10,50,200]
[--sample-ms 100,1000] [--rate 20] [--seconds 20] [--layouts one,cluster] [--json FILE]``
(``make bench-scale``). ``--quick``: 10 and 200 symbols, 5 s windows, in about 100 s; the full
run takes about 11 minutes. Prints figures; asserts nothing.

Measured on the 2-core development machine, shared with other jobs (2026-12-06, full run; the
cluster's six servers share the same two cores)::

    per-shard limit: redis-benchmark 2.45 us of Redis CPU per XADD = 408,000 XADD/s per core;
    TickWriter's batches 2.7-2.8 us (0.88-0.90 x the reference) = 357,000 XADD/s per core;
    1 -> 3 writers: 167,000 -> 266,000 XADD/s, Redis 47 -> 74 % of a core (the writers take
    the other one), PING p50 0.64 -> 1.36 ms

    layout       sym   smp  ticks/s  sig/s ingest t/c-s worker t/c-s   sig/c-s  master%  us/t
    one Redis      1   100       23     10        1,814        1,315       575      1.2   530
    one Redis     10   100      188    100        3,456        2,118     1,121      3.3   178
    one Redis     50   100    1,017    501        9,253        4,000     1,969      9.9    98
    one Redis    200   100    3,946  2,004       22,862        6,495     3,298     22.0    56
    one Redis    200  1000    3,945    200       18,614       10,721       543     23.7    60
    one Redis     50   100    4,999    500       25,478       15,801     1,580     13.9    28
    cluster 3+3   10   100      189    100        2,858          929       491      3.0   480
    cluster 3+3  200   100    3,945  2,000       17,179        6,237     3,163      8.1    61
    cluster 3+3  200  1000    3,945    200       15,340        8,831       447     11.0    84
    cluster 3+3   50   100    5,000    500       20,649       11,954     1,195      8.1    49
    (t/c-s: ticks per core-second; master%: each master's CPU; us/t: the masters' CPU per tick)

    model, one Redis: worker 49.8 us per tick + 179 us per signal + 5.6 % of a core;
    ingest 35.7 us per tick + 4.3 %; the shard 32.5 us per tick + 27.1 us per signal
    (13.9 us per tick + 27.0 per signal + 0.97 us per stream key named by a worker's XREAD);
    the learner alone: 48.1 ms CPU per 1k ticks at 20 ticks/s and 100 ms sampling

    sizing at 20 ticks/s per symbol, 100 ms sampling, at most 50 % busy: one shard carries
    17,900 ticks/s of the whole pipeline (900 symbols)
    symbols  ticks/s  signals/s  ingest  workers  sym/worker  shards  sym/shard
         50      987        501       1        1          50       1         50
        500    9,865      5,010       1        4         125       2        250
      5,000   98,654     50,099       9       31         162      11        455

A shard's XADDs alone would carry 20 times more: Redis's work per tick is mostly the worker's
reading, one XREAD per wake-up naming every stream of its symbols (about 1 us per stream named),
and the signals. On the cluster the worker polls each master (no BLOCK across slots), which
costs about 18 % of a core at any load, and the replicas add about 40 % to the masters' CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import e2e  # bench/e2e.py: the simulator child, the learner reference

REPO = Path(__file__).resolve().parents[1]
VENUE = "binanceusdm"  # the feed reads the simulator as it reads the venue
TICK_MAXLEN = 20_000
"""``redis.tick_maxlen`` of the runs: streams are trimmed as in production once full."""
WRITER_BATCH = 1_000
"""Ticks per ``TickWriter`` call in the per-shard experiment (``ingest.batch_max``)."""
BENCH_STREAMS = 200
"""Streams the ``redis-benchmark`` reference and the writers spread their XADDs over."""
SIZING_SYMBOLS = (50, 500, 5_000)


# -- symbols and settings --------------------------------------------------------------------


def symbol_names(n: int) -> list[str]:
    """``n`` unified symbols; the first ones real, then ``S0001/USDT:USDT``... (the simulator
    gives unknown names a renamed copy of a real symbol's parameters)."""
    real = list(e2e.NAMES)
    return real[:n] + [f"S{i:04d}/USDT:USDT" for i in range(max(0, n - len(real)))]


def settings_for(url: str, symbols: list[str], sample_ms: int, prefix: str, cluster: bool) -> Any:
    """The settings every child of a run loads (metrics off, checkpoints at their defaults)."""
    from tickcast.service.ops.config import load_settings

    values: dict[str, Any] = {
        "redis.url": url,
        "redis.prefix": prefix,
        "redis.tick_maxlen": TICK_MAXLEN,
        "exchange.name": VENUE,
        "exchange.symbols": symbols,
        "metrics.enabled": False,
        "worker.sample_ms": sample_ms,
    }
    if cluster:
        values["redis.cluster"] = True
    return load_settings(None, values)


# -- child processes: each prints "ready", then answers "start" and "stop" on stdin ----------


async def command() -> str:
    """The next line the parent writes to this child's stdin ("" at end of file)."""
    return (await asyncio.to_thread(sys.stdin.readline)).strip()


def cpu_self() -> float:
    """User + system CPU seconds of this process (every thread)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def measured(counters: Any) -> None:
    """Print "ready", wait for "start", read ``counters()``, wait for "stop", print the
    difference as one JSON line (``cpu_s``, ``wall_s`` and the counters)."""
    print("ready", flush=True)
    while await command() not in ("start", ""):
        pass
    before, cpu0, wall0 = counters(), cpu_self(), time.monotonic()
    while await command() not in ("stop", ""):
        pass
    after, cpu1, wall1 = counters(), cpu_self(), time.monotonic()
    out = {k: after[k] - before[k] for k in after}
    print(json.dumps({**out, "cpu_s": cpu1 - cpu0, "wall_s": wall1 - wall0}), flush=True)


async def child_worker(args: argparse.Namespace) -> None:
    """``tickcast worker`` (the Service without ingest) over the run's symbols."""
    from tickcast.service.live.service import Service

    symbols = args.symbol_list.split(",")
    settings = settings_for(args.redis, symbols, args.sample_ms, args.prefix, args.cluster)
    service = Service(settings, args.redis, ingest=False)
    task = asyncio.create_task(service.run())
    await service.ready.wait()

    def counters() -> dict[str, int]:
        stats = service.metrics.symbol_stats.values()
        worker = service.worker
        return {
            "ticks": sum(s.ticks for s in stats),
            "signals": sum(s.signals for s in stats),
            "reads": worker.reads if worker is not None else 0,
        }

    await measured(counters)
    service.request_stop()
    await task


async def child_ingest(args: argparse.Namespace) -> None:
    """The ingest pipeline of ``tickcast ingest``: websocket feed -> ingester -> TickWriter."""
    from tickcast.service.bus.connection import connect
    from tickcast.service.bus.writer import TickWriter
    from tickcast.service.feed.shell import Feed, FeedConfig
    from tickcast.service.live.ingest import Ingester
    from tickcast.service.venues.registry import venue

    symbols = args.symbol_list.split(",")
    settings = settings_for(args.redis, symbols, 100, args.prefix, args.cluster)
    exchange = venue(VENUE)
    markets = [exchange.assumed_market(s) for s in symbols]
    urls = {"public": args.sim_url + "/public", "market": args.sim_url + "/market"}
    feed = Feed(exchange, markets, urls, FeedConfig.from_settings(settings.exchange))
    client = connect(args.redis, settings)
    ingester = Ingester.from_settings(feed, TickWriter(client, settings), settings)
    task = asyncio.create_task(ingester.run())

    def counters() -> dict[str, int]:
        return {"written": ingester.stats.written, "batches": ingester.stats.batches}

    await measured(counters)
    ingester.stop()
    await task
    await client.aclose()


async def child_writer(args: argparse.Namespace) -> None:
    """A synthetic ingester: tickcast's ``TickWriter`` writing batches of simulated ticks
    over :data:`BENCH_STREAMS` symbols as fast as it can."""
    from tickcast.service.bus.connection import connect
    from tickcast.service.bus.writer import TickWriter
    from tickcast.service.sim.market import SyntheticMarket
    from tickcast.service.sim.symbols import specs_for

    symbols = symbol_names(BENCH_STREAMS)
    settings = settings_for(args.redis, symbols, 100, args.prefix, args.cluster)
    market = SyntheticMarket(specs_for(symbols, 10.0), seed=args.seed)
    ticks = list(market.ticks(1.0))
    batches = [ticks[i : i + WRITER_BATCH] for i in range(0, len(ticks), WRITER_BATCH)]
    client = connect(args.redis, settings)
    writer = TickWriter(client, settings)

    async def pump() -> None:
        while True:
            for batch in batches:
                await writer.write(batch)

    task = asyncio.create_task(pump())
    await measured(lambda: {"written": writer.stats.written})
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await client.aclose()


# -- Redis servers: one, or a cluster --------------------------------------------------------


@dataclass
class Shards:
    """Where a run's Redis is: the URL clients get, the server pids, what it is."""

    label: str
    url: str
    pids: list[int]
    masters: int
    cluster: bool = False
    master_pids: list[int] = field(default_factory=list)


class NotMeasured(Exception):  # noqa: N818 - a reason to print, not an error
    """A part of the bench cannot run here; the message says why."""


@contextlib.contextmanager
def one_redis(state: Path) -> Iterator[Shards]:
    """A redis-server on a loopback port (AOF on, everysec), as the deployments run it."""
    from tickcast.service.bus.embedded import EmbeddedRedis

    with EmbeddedRedis(state / "one", unix_socket=False, discovery=False) as server:
        assert server.pid is not None
        yield Shards("one Redis", server.url, [server.pid], 1, master_pids=[server.pid])


def cluster_support() -> None:
    """Raise :class:`NotMeasured` unless tickcast and the test suite can run a cluster."""
    from tickcast.service.ops.config import Settings

    if "cluster" not in type(Settings().redis).model_fields:
        raise NotMeasured("this tickcast has no redis.cluster setting")
    if importlib.util.find_spec("tickcast.service.bus.cluster") is None:
        raise NotMeasured(
            "the service's cluster data path (tickcast.service.bus.cluster: the write and read "
            "lanes routed per slot) is not there yet"
        )
    if not (REPO / "tests" / "cluster" / "localcluster.py").is_file():
        raise NotMeasured("the test suite's cluster (tests/cluster/localcluster.py) is not there")


@contextlib.contextmanager
def redis_cluster(state: Path) -> Iterator[Shards]:
    """3 masters + 3 replicas on loopback ports: the test suite's
    :class:`localcluster.LocalCluster` (no persistence, 1 s node timeout)."""
    cluster_support()
    sys.path.insert(0, str(REPO / "tests" / "cluster"))
    from localcluster import LocalCluster

    with LocalCluster(state / "cluster") as cluster:
        masters = {node.port for node in cluster.masters_now()}
        pids = [node.proc.pid for node in cluster.nodes if node.proc is not None]
        master_pids = [
            node.proc.pid for node in cluster.nodes if node.proc and node.port in masters
        ]
        label = f"cluster {len(master_pids)}+{len(pids) - len(master_pids)}"
        yield Shards(label, cluster.url, pids, len(master_pids), True, master_pids)


def proc_cpu(pids: Sequence[int]) -> float:
    """Summed user + system CPU seconds of live processes (Linux /proc)."""
    return sum(e2e.cpu_of(pid) for pid in pids)


# -- running children ------------------------------------------------------------------------


class Child:
    """A child process of this script, driven through its stdin and stdout."""

    def __init__(self, role: str, shards: Shards, extra: Sequence[str] = ()) -> None:
        cmd = [sys.executable, __file__, "--child", role, "--redis", shards.url, *extra]
        if shards.cluster:
            cmd.append("--cluster")
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        self.role = role
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
        )

    def line(self, timeout: float = 60.0) -> str:
        """The next line the child prints (fails when it exits or stays silent)."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line:
                return line.strip()
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.role} exited with {self.proc.returncode}")
        raise RuntimeError(f"{self.role}: nothing printed within {timeout:.0f} s")

    def tell(self, word: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()

    def report(self) -> dict[str, Any]:
        """Tell "stop" and read the JSON line of the measured window."""
        self.tell("stop")
        result: dict[str, Any] = json.loads(self.line())
        return result

    def end(self) -> None:
        """Stop the child (SIGTERM, then SIGKILL after 15 s)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def children() -> Iterator[list[Child]]:
    """A list to put children in; every one is ended on the way out."""
    started: list[Child] = []
    try:
        yield started
    finally:
        for child in started:
            if child.proc.stdin is not None:
                with contextlib.suppress(BrokenPipeError, OSError):
                    child.proc.stdin.close()
        for child in started:
            child.end()


def ping_rtts(url: str, cluster: bool, seconds: float) -> list[float]:
    """PING round trips to the (first) Redis for ``seconds``, one every 10 ms, µs."""
    from tickcast.service.bus.connection import probe
    from tickcast.service.ops.config import Settings

    settings = Settings(redis={"cluster": True}) if cluster else Settings()
    client = probe(url, settings, 5.0)
    rtts = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.perf_counter_ns()
        client.ping()
        rtts.append((time.perf_counter_ns() - t) / 1000.0)
        time.sleep(0.01)
    client.close()
    return rtts


# -- 1. the grid -----------------------------------------------------------------------------


@dataclass
class GridRun:
    """One cell of the grid: a layout, symbols per process, a sample interval."""

    shards: Shards
    symbols: int
    sample_ms: int
    rate: float
    warmup: float
    seconds: float
    prefix: str


def run_cell(cell: GridRun) -> dict[str, Any]:
    """Run simulator, worker and ingest for one cell; return its figures."""
    names = symbol_names(cell.symbols)
    scale = cell.rate * cell.symbols / e2e.base_rate(names)
    common = ["--symbol-list", ",".join(names), "--prefix", cell.prefix]
    with children() as kids:
        worker = Child("worker", cell.shards, [*common, "--sample-ms", str(cell.sample_ms)])
        kids.append(worker)
        worker.line()  # ready: leases held, nothing to restore
        sim = Child("sim", cell.shards, [*common, "--scale", repr(scale)])
        kids.append(sim)
        sim_url = sim.line()
        ingest = Child("ingest", cell.shards, [*common, "--sim-url", sim_url])
        kids.append(ingest)
        ingest.line()
        time.sleep(cell.warmup)
        for child in (worker, ingest):
            child.tell("start")
        servers = (cell.shards.pids, cell.shards.master_pids, [sim.proc.pid])
        cpu0, wall0 = [proc_cpu(pids) for pids in servers], time.monotonic()
        rtts = ping_rtts(cell.shards.url, cell.shards.cluster, cell.seconds)
        cpu1, wall = [proc_cpu(pids) for pids in servers], time.monotonic() - wall0
        w, i = worker.report(), ingest.report()
    shares = [(b - a) / wall for a, b in zip(cpu0, cpu1, strict=True)]
    return cell_figures(cell, w, i, shares, rtts)


def per_second(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("nan")


def cell_figures(
    cell: GridRun,
    w: dict[str, Any],
    i: dict[str, Any],
    shares: list[float],
    rtts: list[float],
) -> dict[str, Any]:
    """The figures of one cell from the children's reports and the CPU shares (cores) of the
    Redis servers, of their masters and of the simulator."""
    written = per_second(i["written"], i["wall_s"])
    redis_share, master_share, sim_share = shares
    return {
        "layout": cell.shards.label,
        "symbols": cell.symbols,
        "sample_ms": cell.sample_ms,
        "target_ticks_per_s": cell.rate * cell.symbols,
        "ticks_per_s": written,
        "worker_ticks_per_s": per_second(w["ticks"], w["wall_s"]),
        "signals_per_s": per_second(w["signals"], w["wall_s"]),
        "ingest_cpu": per_second(i["cpu_s"], i["wall_s"]),
        "worker_cpu": per_second(w["cpu_s"], w["wall_s"]),
        "ingest_ticks_per_core_s": per_second(i["written"], i["cpu_s"]),
        "worker_ticks_per_core_s": per_second(w["ticks"], w["cpu_s"]),
        "worker_signals_per_core_s": per_second(w["signals"], w["cpu_s"]),
        "worker_reads_per_s": per_second(w["reads"], w["wall_s"]),
        "ingest_batches_per_s": per_second(i["batches"], i["wall_s"]),
        "keys_read_per_s": per_second(w["reads"] * cell.symbols, w["wall_s"]),
        "redis_cpu": redis_share,
        "masters_cpu": master_share,
        "master_cpu": master_share / cell.shards.masters,
        "redis_us_per_tick": 1e6 * redis_share / written if written else float("nan"),
        "masters_us_per_tick": 1e6 * master_share / written if written else float("nan"),
        "sim_cpu": sim_share,
        "ping_p50_us": float(np.percentile(rtts, 50)) if rtts else float("nan"),
        "ping_p99_us": float(np.percentile(rtts, 99)) if rtts else float("nan"),
    }


def grid(shards: Shards, args: argparse.Namespace, counter: Iterator[int]) -> list[dict[str, Any]]:
    """Every (symbols, sample_ms) cell of the grid on ``shards``, plus the extra-rate cell."""
    cells = [(n, ms, args.rate) for n in args.symbol_counts for ms in args.sample_list]
    if args.high_rate:
        cells.append((args.high_rate_symbols, args.sample_list[0], args.high_rate))
    rows = []
    for n, ms, rate in cells:
        cell = GridRun(shards, n, ms, rate, args.warmup, args.seconds, f"scale{next(counter)}")
        rows.append(run_cell(cell))
        print_row(rows[-1], header=len(rows) == 1)
    return rows


# -- 2. the per-shard limit ------------------------------------------------------------------


def redis_benchmark(shards: Shards, requests: int) -> dict[str, float]:
    """``redis-benchmark``'s pipelined XADD on the first master: ops/s and Redis's CPU."""
    exe = shutil.which("redis-benchmark")
    if exe is None:
        raise NotMeasured("no redis-benchmark (Debian: redis-tools, with redis-server)")
    from tickcast.service.sim.market import SyntheticMarket
    from tickcast.service.sim.symbols import specs_for

    tick = next(iter(SyntheticMarket(specs_for(["BTC/USDT:USDT"]), seed=1).ticks(1.0)))
    blob = json.dumps(list(tick), separators=(",", ":"))
    port = str(shards.url.rsplit(":", 1)[1].split("/")[0])
    cmd = [exe, "-h", "127.0.0.1", "-p", port, "-c", "4", "-P", "64", "-n", str(requests)]
    cmd += ["-r", str(BENCH_STREAMS), "-q", "XADD", "bench:{__rand_int__}:ticks", "MAXLEN", "~"]
    cmd += [str(TICK_MAXLEN // 4), "*", "v", "1", "t", blob]
    cpu0, wall0 = proc_cpu(shards.master_pids[:1]), time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True).stdout
    cpu, wall = proc_cpu(shards.master_pids[:1]) - cpu0, time.monotonic() - wall0
    rates = re.findall(r"([\d.]+) requests per second", out)
    if not rates:
        raise NotMeasured(f"redis-benchmark printed no rate: {out[-300:]!r}")
    return {
        "xadd_per_s": float(rates[-1]),
        "redis_cpu": cpu / wall,
        "redis_us_per_xadd": 1e6 * cpu / requests,
        "entry_bytes": len(blob),
    }


def writers(shards: Shards, n: int, seconds: float, warmup: float) -> dict[str, float]:
    """``n`` TickWriter processes as fast as they can for ``seconds``: XADD/s, Redis CPU share,
    PING round trips meanwhile."""
    with children() as kids:
        for k in range(n):
            kids.append(Child("writer", shards, ["--prefix", f"w{n}x{k}", "--seed", str(k)]))
        for child in kids:
            child.line()
        time.sleep(warmup)
        for child in kids:
            child.tell("start")
        cpu0, wall0 = proc_cpu(shards.master_pids[:1]), time.monotonic()
        rtts = ping_rtts(shards.url, shards.cluster, seconds)
        cpu, wall = proc_cpu(shards.master_pids[:1]) - cpu0, time.monotonic() - wall0
        reports = [child.report() for child in kids]
    written = sum(r["written"] for r in reports)
    writer_cpu = sum(r["cpu_s"] for r in reports)
    return {
        "writers": n,
        "xadd_per_s": written / wall,
        "redis_cpu": cpu / wall,
        "redis_us_per_xadd": 1e6 * cpu / written if written else float("nan"),
        "writer_cpu": writer_cpu / wall,
        "writer_us_per_tick": 1e6 * writer_cpu / written if written else float("nan"),
        "ping_p50_us": float(np.percentile(rtts, 50)),
        "ping_p99_us": float(np.percentile(rtts, 99)),
    }


# -- 4. the model ----------------------------------------------------------------------------


def fit(rows: list[dict[str, Any]], cost: str, terms: Sequence[str]) -> dict[str, float]:
    """Least squares ``cost = fixed + sum(coef * term)`` over ``rows`` (CPU s per s ~ rates
    per s); coefficients in µs per unit, ``fixed`` in µs per second."""
    a = np.array([[1.0] + [r[t] for t in terms] for r in rows])
    y = np.array([r[cost] for r in rows])
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    out = {"fixed": 1e6 * float(coef[0])}
    out.update({t: 1e6 * float(c) for t, c in zip(terms, coef[1:], strict=True)})
    return out


WORKER_TERMS = ("worker_ticks_per_s", "signals_per_s")
REDIS_TERMS = ("ticks_per_s", "signals_per_s")
READ_TERMS = ("ticks_per_s", "signals_per_s", "keys_read_per_s")


def model(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Worker, ingest and Redis CPU as fitted functions of the rates of ``rows`` (one layout):
    ``redis`` is the masters' CPU (the shards' load), ``reads`` the same split further by the
    stream keys the worker's XREADs name (reads/s x symbols)."""
    return {
        "worker": fit(rows, "worker_cpu", WORKER_TERMS),
        "ingest": fit(rows, "ingest_cpu", ("ticks_per_s",)),
        "redis": fit(rows, "masters_cpu", REDIS_TERMS),
        "reads": fit(rows, "masters_cpu", READ_TERMS),
    }


def ceil_div(x: float, per: float) -> int:
    return max(1, int(np.ceil(x / per - 1e-9)))


def operating_point(rows: list[dict[str, Any]], rate: float, sample_ms: int) -> dict[str, Any]:
    """The row measured closest to a deployment: ``rate`` ticks/s per symbol, ``sample_ms``
    sampling, the most symbols per process."""
    fitting = [
        r
        for r in rows
        if r["sample_ms"] == sample_ms and abs(r["target_ticks_per_s"] - rate * r["symbols"]) < 1
    ]
    return max(fitting or rows, key=lambda r: r["symbols"])


def sizing(row: dict[str, Any], headroom: float) -> list[dict[str, Any]]:
    """Processes and shards for :data:`SIZING_SYMBOLS` at the costs per symbol measured in
    ``row`` (each process's and the shard's CPU over its symbols: fixed costs included),
    each process and shard at most ``headroom`` busy."""
    n0 = row["symbols"]
    per_symbol = {
        "ingest": row["ingest_cpu"] / n0,
        "worker": row["worker_cpu"] / n0,
        "shard": row["masters_cpu"] / n0,
    }
    out = []
    for n in SIZING_SYMBOLS:
        cores = {part: n * cost for part, cost in per_symbol.items()}
        counts = {part: ceil_div(c, headroom) for part, c in cores.items()}
        out.append(
            {
                "symbols": n,
                "ticks_per_s": n * row["ticks_per_s"] / n0,
                "signals_per_s": n * row["signals_per_s"] / n0,
                **{f"{part}_cores": c for part, c in cores.items()},
                "ingests": counts["ingest"],
                "workers": counts["worker"],
                "shards": counts["shard"],
                "symbols_per_worker": int(np.ceil(n / counts["worker"])),
                "symbols_per_shard": int(np.ceil(n / counts["shard"])),
            }
        )
    return out


# -- printing --------------------------------------------------------------------------------


def print_row(r: dict[str, Any], header: bool) -> None:
    if header:
        print(
            f"{'layout':<14}{'sym':>5}{'smp ms':>7}{'ticks/s':>9}{'sig/s':>8}"
            f"{'ing cpu%':>9}{'ing t/core-s':>13}{'wrk cpu%':>9}{'wrk t/core-s':>13}"
            f"{'wrk s/core-s':>13}{'wrk/ing':>8}{'XREAD/s':>8}{'redis%':>7}{'master%':>8}"
            f"{'shard us/t':>11}{'sim%':>6}{'ping p99':>9}"
        )
    print(
        f"{r['layout']:<14}{r['symbols']:>5}{r['sample_ms']:>7}{r['ticks_per_s']:>9.0f}"
        f"{r['signals_per_s']:>8.0f}{100 * r['ingest_cpu']:>9.1f}"
        f"{r['ingest_ticks_per_core_s']:>13,.0f}{100 * r['worker_cpu']:>9.1f}"
        f"{r['worker_ticks_per_core_s']:>13,.0f}{r['worker_signals_per_core_s']:>13,.0f}"
        f"{r['worker_ticks_per_s'] / r['ticks_per_s']:>8.2f}{r['worker_reads_per_s']:>8.0f}"
        f"{100 * r['redis_cpu']:>7.1f}{100 * r['master_cpu']:>8.1f}"
        f"{r['masters_us_per_tick']:>11.1f}{100 * r['sim_cpu']:>6.0f}"
        f"{r['ping_p99_us']:>9.0f}",
        flush=True,
    )


def print_shard(bench: dict[str, float] | None, load: list[dict[str, float]]) -> None:
    print("\nper-shard limit (one Redis, one core; XADD MAXLEN ~ of one tick each):")
    if bench is not None:
        print(
            f"  redis-benchmark (C client, pipelined 64, {bench['entry_bytes']:.0f}-byte "
            f"entries): {bench['xadd_per_s']:,.0f} XADD/s at Redis CPU "
            f"{100 * bench['redis_cpu']:.0f}% = {bench['redis_us_per_xadd']:.2f} us per XADD: "
            f"{1e6 / bench['redis_us_per_xadd']:,.0f} XADD/s per core of Redis (the reference)"
        )
    print(
        f"  {'writers':>7}{'XADD/s':>10}{'Redis cpu%':>11}{'us/XADD':>9}{'writers cpu%':>13}"
        f"{'writer us/t':>12}{'PING p50':>9}{'PING p99':>9}{'x ref':>7}"
    )
    for r in load:
        ratio = bench["redis_us_per_xadd"] / r["redis_us_per_xadd"] if bench else float("nan")
        print(
            f"  {r['writers']:>7}{r['xadd_per_s']:>10,.0f}{100 * r['redis_cpu']:>11.0f}"
            f"{r['redis_us_per_xadd']:>9.2f}{100 * r['writer_cpu']:>13.0f}"
            f"{r['writer_us_per_tick']:>12.1f}{r['ping_p50_us']:>9.0f}{r['ping_p99_us']:>9.0f}"
            f"{ratio:>7.2f}"
        )
    if load:
        best = max(load, key=lambda r: r["xadd_per_s"])
        print(
            f"  one core of Redis at TickWriter's cost: {1e6 / best['redis_us_per_xadd']:,.0f} "
            f"XADD/s (1 / Redis CPU per XADD at {best['writers']} writer(s)); x ref: the "
            "reference's Redis CPU per XADD over the writers'"
        )


def print_model(name: str, m: dict[str, dict[str, float]], rows: list[dict[str, Any]]) -> None:
    print(f"\nmodel, {name} (least squares over its rows; CPU per unit, fixed per process):")
    w, i, r, k = m["worker"], m["ingest"], m["redis"], m["reads"]
    print(
        f"  worker: {w['worker_ticks_per_s']:.1f} us per tick + {w['signals_per_s']:.0f} us per "
        f"signal + {w['fixed'] / 1e4:.2f}% of a core fixed"
    )
    print(f"  ingest: {i['ticks_per_s']:.1f} us per tick + {i['fixed'] / 1e4:.2f}% of a core fixed")
    print(
        f"  Redis (the shard): {r['ticks_per_s']:.1f} us per tick + {r['signals_per_s']:.1f} us "
        f"per signal (the masters: XADD in, XREAD out, signal XADD)"
    )
    if len(rows) >= 2 * len(READ_TERMS) and not rows[0]["layout"].startswith("cluster"):
        print(
            f"  the same, split by the keys the worker's XREADs name: {k['ticks_per_s']:.1f} us "
            f"per tick + {k['signals_per_s']:.1f} us per signal + {k['keys_read_per_s']:.2f} us "
            f"per key read (XREAD/s x symbols per worker)"
        )
    for what, coef, terms, cost in (
        ("worker", w, WORKER_TERMS, "worker_cpu"),
        ("Redis", r, REDIS_TERMS, "masters_cpu"),
    ):
        worst = max(abs(fit_value(coef, row, terms) - row[cost]) for row in rows)
        print(f"  {what} fit: largest residual {100 * worst:.1f}% of a core")


def fit_value(coef: dict[str, float], row: dict[str, Any], terms: Sequence[str]) -> float:
    return (coef["fixed"] + sum(coef[t] * row[t] for t in terms)) / 1e6


def print_sizing(table: list[dict[str, Any]], row: dict[str, Any], headroom: float) -> None:
    rate = row["target_ticks_per_s"] / row["symbols"]
    print(
        f"\nsizing at {rate:.0f} ticks/s per symbol, {row['sample_ms']} ms sampling, from the "
        f"costs per symbol measured with {row['symbols']} symbols per process ({row['layout']}); "
        f"every process and shard at most {100 * headroom:.0f}% busy:"
    )
    per_core = row["ticks_per_s"] / row["masters_cpu"]
    print(
        f"  one shard (a core of Redis) carries {per_core:,.0f} ticks/s of the whole pipeline "
        f"here ({per_core / rate:,.0f} symbols: their XADDs, the worker's XREADs, the signals)"
    )
    print(
        f"  {'symbols':>7}{'ticks/s':>9}{'signals/s':>10}{'ingest':>8}{'workers':>8}"
        f"{'sym/worker':>11}{'shards':>7}{'sym/shard':>10}   cores: ingest, worker, shards"
    )
    for s in table:
        print(
            f"  {s['symbols']:>7,}{s['ticks_per_s']:>9,.0f}{s['signals_per_s']:>10,.0f}"
            f"{s['ingests']:>8}{s['workers']:>8}{s['symbols_per_worker']:>11}{s['shards']:>7}"
            f"{s['symbols_per_shard']:>10}   {s['ingest_cores']:.2f}, {s['worker_cores']:.2f}, "
            f"{s['shard_cores']:.2f}"
        )


# -- main ------------------------------------------------------------------------------------


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="a short run (under two minutes)")
    p.add_argument("--symbols", default="1,10,50,200", help="symbols per process, comma-separated")
    p.add_argument("--sample-ms", default="100,1000", help="worker.sample_ms values")
    p.add_argument("--rate", type=float, default=20.0, help="ticks/s per symbol")
    p.add_argument("--seconds", type=float, default=20.0, help="measured window per cell, s")
    p.add_argument("--warmup", type=float, default=4.0, help="before each window, s")
    p.add_argument("--headroom", type=float, default=0.5, help="sizing: busy share per core")
    p.add_argument("--layouts", default="one,cluster", help="one (one Redis), cluster (3+3)")
    p.add_argument("--json", type=Path, help="write every figure to this file")
    p.add_argument("--child", choices=("sim", "ingest", "worker", "writer"), help=argparse.SUPPRESS)
    p.add_argument("--redis", help=argparse.SUPPRESS)
    p.add_argument("--cluster", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--symbol-list", help=argparse.SUPPRESS)
    p.add_argument("--prefix", default="tickcast", help=argparse.SUPPRESS)
    p.add_argument("--scale", type=float, default=1.0, help=argparse.SUPPRESS)
    p.add_argument("--sim-url", default="", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.symbols, args.sample_ms = "10,200", "100,1000"
        args.seconds, args.warmup = min(args.seconds, 5.0), min(args.warmup, 2.0)
    args.layout_list = args.layouts.split(",")
    args.symbol_counts = [int(x) for x in args.symbols.split(",")]
    args.sample_list = [int(x) for x in str(args.sample_ms).split(",")]
    args.high_rate = 0.0 if args.quick else 100.0
    args.high_rate_symbols = 50
    args.writer_counts = (1, 2) if args.quick else (1, 2, 3)
    return args


def run_child(args: argparse.Namespace) -> None:
    if args.child == "sim":
        asyncio.run(e2e.child_sim(args))
    elif args.child == "worker":
        args.sample_ms = int(args.sample_ms)
        asyncio.run(child_worker(args))
    elif args.child == "ingest":
        asyncio.run(child_ingest(args))
    else:
        asyncio.run(child_writer(args))


def layouts(state: Path, names: Sequence[str]) -> Iterator[tuple[str, Any]]:
    """(name, context manager) of each layout measured."""
    if "one" in names:
        yield "one", one_redis(state)
    if "cluster" in names:
        yield "cluster", redis_cluster(state)


def measure(args: argparse.Namespace, state: Path) -> dict[str, Any]:
    """Everything: references, the per-shard limit, the grid on each layout."""
    results: dict[str, Any] = {"grid": {}, "not_measured": {}}
    counter = iter(range(10**6))
    print("learner alone (decode + update): ", end="", flush=True)
    learner_ms = 1e3 * e2e.learner_reference(symbol_names(10), 1.0)
    results["learner_ms_per_1k"] = learner_ms
    print(f"{learner_ms:.1f} ms CPU per 1k ticks = {1e6 / learner_ms:,.0f} ticks per core-s")
    for name, layout in layouts(state, args.layout_list):
        try:
            with layout as shards:
                print(f"\n== {shards.label} ({shards.url})", flush=True)
                if name == "one":
                    results["shard"] = shard_limit(shards, args)
                results["grid"][name] = grid(shards, args, counter)
        except NotMeasured as why:
            results["not_measured"][name] = str(why)
            print(f"\n== {name}: not measured ({why})", flush=True)
        except RuntimeError as exc:  # a child failed: said, not hidden
            if name == "one":
                raise
            results["not_measured"][name] = f"a process failed: {exc}"
            print(f"\n== {name}: not measured (a process failed: {exc})", flush=True)
    return results


def shard_limit(shards: Shards, args: argparse.Namespace) -> dict[str, Any]:
    """The ``redis-benchmark`` ceiling and the TickWriter load levels, printed."""
    try:
        bench: dict[str, float] | None = redis_benchmark(
            shards, 200_000 if args.quick else 1_000_000
        )
    except NotMeasured as why:
        print(f"redis-benchmark: not measured ({why})")
        bench = None
    seconds = 4.0 if args.quick else 10.0
    load = [writers(shards, n, seconds, 1.0 if args.quick else 2.0) for n in args.writer_counts]
    print_shard(bench, load)
    print()
    return {"redis_benchmark": bench, "writers": load}


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    if args.child:
        run_child(args)
        return
    print(
        f"tickcast capacity: symbols per process {args.symbol_counts}, sample_ms "
        f"{args.sample_list}, {args.rate:.0f} ticks/s per symbol, {args.warmup:.0f} s warm-up + "
        f"{args.seconds:.0f} s measured per cell, {os.cpu_count()} cores"
    )
    with tempfile.TemporaryDirectory(prefix="tickcast-scale-") as tmp:
        results = measure(args, Path(tmp))
    results["model"] = {}
    for name, rows in results["grid"].items():
        if len(rows) >= 6:  # a fit of 3 to 4 terms needs more rows than --quick has
            results["model"][name] = model(rows)
            print_model(rows[0]["layout"], results["model"][name], rows)
    results["sizing"] = {}
    for name, rows in results["grid"].items():
        if rows:
            row = operating_point(rows, args.rate, 100)
            results["sizing"][name] = sizing(row, args.headroom)
            print_sizing(results["sizing"][name], row, args.headroom)
    for name, why in results["not_measured"].items():
        print(f"{name}: not measured ({why})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
