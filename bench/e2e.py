"""End-to-end benchmark: tick->signal latency and the worker's CPU per 1k ticks.

For each target rate (default 1k and 10k ticks/s across 10 symbols) it runs, on a fresh
embedded redis-server (unix socket):

- a *simulator* process: the simulated exchange, paced in real time, the synthetic market's
  trade and quote rates scaled to the target;
- ``--layout one`` (default, what ``tickcast run`` does): one *service* process, Binance
  websocket feed -> ingester -> Redis, and the worker (learners -> signals) taking the ticks
  from the in-process handoff once caught up; ``--layout split``: an *ingest* process and
  ``--workers`` *worker* processes (the symbols split between them) reading the tick streams
  from Redis, as ``tickcast ingest`` + ``tickcast worker``;
- this process: a :mod:`tickcast.service.client` subscription measuring, for every signal,
  tick -> signal *readable*: its own receive time minus the signal's ``recv_us`` (local
  receive of the tick that closed the sample; same machine, same clock) — what a subscriber
  sees, the figure the README's latency table quotes — beside the signal's ``latency_us``
  (receive -> signal handed to Redis, the publisher's own figure).

After a warm-up, it measures for ``--seconds``: ticks/s actually processed, signals/s, latency
percentiles, and the worker processes' CPU time (user + system) per 1k ticks. References
measured in the same run: the Redis round trip (PING) and the learner alone (decode + update on
the same kind of ticks, in this process) — the worker's CPU is printed as a ratio to the latter.

Usage: ``.venv/bin/python bench/e2e.py [--rates 1000,10000] [--seconds 20] [--symbols 10]
[--flush-ms 0] [--layout one|split] [--workers 1] [--cluster | --tcp]``. Prints figures;
asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

VENUE = "binanceusdm"  # the feed reads the simulator as it reads the venue
NAMES = (
    "BTC/USDT:USDT",
    "ETH/USDT:USDT",
    "SOL/USDT:USDT",
    "XRP/USDT:USDT",
    "DOGE/USDT:USDT",
    "ADA/USDT:USDT",
    "BNB/USDT:USDT",
    "AVAX/USDT:USDT",
    "LINK/USDT:USDT",
    "LTC/USDT:USDT",
    "DOT/USDT:USDT",
    "TRX/USDT:USDT",
)


def base_rate(symbols: list[str]) -> float:
    """Mean ticks/s of the unscaled simulator over ``symbols``."""
    from tickcast.service.sim.symbols import specs_for

    return sum(s.trade_rate + s.quote_rate for s in specs_for(symbols))


def settings_for(url: str, symbols: list[str], flush_ms: int, sim_url: str = "") -> Any:
    from tickcast.service.ops.config import load_settings

    return load_settings(
        None,
        {
            "redis.url": url,
            "exchange.name": VENUE,
            "exchange.urls.binanceusdm.public": sim_url + "/public",
            "exchange.urls.binanceusdm.market": sim_url + "/market",
            "exchange.symbols": symbols,
            "metrics.enabled": False,
            "ingest.flush_interval_ms": flush_ms,
            "sim.speed": 1.0,
            "worker.checkpoint_every_s": 3600.0,
            "worker.checkpoint_every_samples": 10**9,
        },
    )


# -- child processes -----------------------------------------------------------------------


async def child_sim(args: argparse.Namespace) -> None:
    """The simulated exchange alone, paced in real time; prints its URL, then its CPU."""
    from tickcast.service.sim.market import SyntheticMarket
    from tickcast.service.sim.server import SimExchange
    from tickcast.service.sim.symbols import specs_for

    specs = specs_for(args.symbol_list.split(","), args.scale)
    market = SyntheticMarket(specs, seed=7, start_ms=time.time_ns() // 1_000_000)
    sim = SimExchange(market.ticks(), speed=1.0, start_on_subscribe=True)
    await sim.start()
    print(sim.url, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await sim.stop()


async def child_ingest(args: argparse.Namespace) -> None:
    """Feed + ingester (the ingest half of ``tickcast run``) against the simulator."""
    from tickcast.service.live.service import Service

    symbols = args.symbol_list.split(",")
    settings = settings_for(args.redis, symbols, args.flush_ms, args.sim_url)
    service = Service(settings, args.redis, work=False)
    await service.run()


async def child_worker(args: argparse.Namespace, ingest: bool = False) -> None:
    """The worker (with ``ingest``: feed + ingester + worker in one process, as ``tickcast
    run``); prints its figures over the measured window as one JSON line."""
    from tickcast.service.live.service import Service

    symbols = args.symbol_list.split(",")
    settings = settings_for(args.redis, symbols, args.flush_ms, args.sim_url)
    service = Service(settings, args.redis, ingest=ingest)
    task = asyncio.create_task(service.run())
    await service.ready.wait()
    await asyncio.sleep(args.warmup)

    def totals() -> tuple[float, int, int, int, int, int, int]:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        stats = service.metrics.symbol_stats.values()
        worker = service.worker
        return (
            ru.ru_utime + ru.ru_stime,
            sum(s.ticks for s in stats),
            sum(s.signals for s in stats),
            worker.reads if worker is not None else 0,
            worker.publishes if worker is not None else 0,
            sum(i.stats.batches for i in service.ingesters.values()),
            worker.handed_off if worker is not None else 0,
        )

    cpu0, ticks0, sig0, reads0, pubs0, batches0, handed0 = totals()
    wall0 = time.monotonic()
    await asyncio.sleep(args.seconds)
    cpu1, ticks1, sig1, reads1, pubs1, batches1, handed1 = totals()
    wall = time.monotonic() - wall0
    hist = [s.latency for s in service.metrics.symbol_stats.values()]
    counts = np.sum([h.counts for h in hist], axis=0)
    out = {
        "wall_s": wall,
        "cpu_s": cpu1 - cpu0,
        "ticks": ticks1 - ticks0,
        "signals": sig1 - sig0,
        "reads": reads1 - reads0,
        "publishes": pubs1 - pubs0,
        "ingest_batches": batches1 - batches0,
        "handed_off": handed1 - handed0,
        "ack_buckets": list(hist[0].bounds),
        "ack_counts": counts.tolist(),
    }
    print(json.dumps(out), flush=True)
    service.request_stop()
    await task


# -- references ------------------------------------------------------------------------------


def learner_reference(symbols: list[str], scale: float) -> float:
    """CPU seconds per 1k ticks of decode + ``OnlineLearner.update`` alone (this process)."""
    from tickcast.model.learner import OnlineLearner
    from tickcast.service.bus import codec
    from tickcast.service.sim.market import SyntheticMarket
    from tickcast.service.sim.symbols import specs_for

    market = SyntheticMarket(specs_for(symbols, scale), seed=5)
    entries = [codec.encode(t) for t in market.ticks(20.0)]
    learners = {s: OnlineLearner() for s in symbols}
    start = time.process_time()
    for fields in entries:
        tick = codec.decode(fields)
        learners[tick.symbol].update(tick)
    return (time.process_time() - start) / len(entries) * 1000.0


def ping_us(url: str, n: int = 2000) -> float:
    """Median Redis PING round trip, µs."""
    import redis

    client = redis.Redis.from_url(url)
    samples = []
    for _ in range(n):
        t = time.perf_counter_ns()
        client.ping()
        samples.append((time.perf_counter_ns() - t) / 1000.0)
    client.close()
    return float(np.median(samples))


# -- the driver ------------------------------------------------------------------------------


async def collect(
    url: str, symbols: list[str], warmup: float, seconds: float
) -> tuple[list[int], list[int]]:
    """For every signal published during the measured window: tick -> readable at this
    subscriber (its receive time minus ``recv_us``) and ``latency_us`` (to the hand-off), µs."""
    from tickcast.service.client import subscribe

    readable: list[int] = []
    handoff: list[int] = []
    start = time.monotonic()
    async with subscribe(url, symbols, venue=VENUE, block_ms=200) as sub:
        try:
            async with asyncio.timeout(warmup + seconds):
                async for signal in sub:
                    now_us = time.time_ns() // 1000
                    if time.monotonic() - start >= warmup and signal.recv_us is not None:
                        readable.append(now_us - signal.recv_us)
                        handoff.append(signal.latency_us)
        except TimeoutError:
            pass
    return readable, handoff


def spawn(
    role: str, url: str, args: argparse.Namespace, symbols: list[str], scale: float, sim: str = ""
) -> Any:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        role,
        "--redis",
        url,
        "--symbol-list",
        ",".join(symbols),
        "--scale",
        repr(scale),
        "--flush-ms",
        str(args.flush_ms),
        "--warmup",
        repr(args.warmup),
        "--seconds",
        repr(args.seconds),
        "--sim-url",
        sim,
    ]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bucket_quantile(bounds: list[float], counts: list[int], q: float) -> float:
    total = sum(counts)
    if not total:
        return float("nan")
    run = 0
    for bound, c in zip([*bounds, float("inf")], counts, strict=True):
        run += c
        if run >= q * total:
            return bound
    return float("inf")


def redis_for(args: argparse.Namespace, state: Path) -> Any:
    """The Redis of a run: a fresh embedded redis-server, or with ``--cluster`` a local
    3-master, 3-replica Redis Cluster (``tests/cluster/localcluster.py``)."""
    if not args.cluster:
        from tickcast.service.bus.embedded import EmbeddedRedis

        return EmbeddedRedis(state, discovery=False, unix_socket=not args.tcp)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "cluster"))
    from localcluster import LocalCluster

    return LocalCluster(state)


def run_rate(rate: float, args: argparse.Namespace, state: Path) -> dict[str, Any]:
    symbols = list(NAMES[: args.symbols])
    scale = rate / base_rate(symbols)
    with redis_for(args, state / f"rate-{int(rate)}") as server:
        url = server.url
        rtt = ping_us(url)
        sim = spawn("sim", url, args, symbols, scale)
        sim_url = sim.stdout.readline().decode().strip() if sim.stdout else ""
        if args.layout == "one":
            workers = [spawn("service", url, args, symbols, scale, sim_url)]
            procs = {"sim": sim, "worker0": workers[0]}
        else:
            shards = [symbols[i :: args.workers] for i in range(args.workers)]
            workers = [spawn("worker", url, args, shard, scale) for shard in shards]
            time.sleep(1.5)  # imports, restore
            ingest = spawn("ingest", url, args, symbols, scale, sim_url)
            procs = {"sim": sim, "ingest": ingest}
            procs.update({f"worker{i}": w for i, w in enumerate(workers)})
        cpu0 = {name: cpu_of(p.pid) for name, p in procs.items()}
        wall0 = time.monotonic()
        try:
            latencies, handoffs = asyncio.run(
                collect(url, symbols, args.warmup + 1.0, args.seconds - 1.0)
            )
            lines = [w.stdout.readline() if w.stdout else b"" for w in workers]
            reports = [json.loads(line) for line in lines if line]
            elapsed = time.monotonic() - wall0
            shares = {n: (cpu_of(p.pid) - cpu0[n]) / elapsed for n, p in procs.items()}
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs.values():
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    report: dict[str, Any] = {
        "wall_s": float(np.mean([r["wall_s"] for r in reports])) if reports else 0.0,
        "ticks": sum(r["ticks"] for r in reports),
        "signals": sum(r["signals"] for r in reports),
        "reads": sum(r["reads"] for r in reports),
        "publishes": sum(r["publishes"] for r in reports),
        "ingest_batches": sum(r["ingest_batches"] for r in reports),
        "handed_off": sum(r["handed_off"] for r in reports),
        "cpu_s": sum(r["cpu_s"] for r in reports),
        "ack_buckets": reports[0]["ack_buckets"] if reports else [],
        "ack_counts": np.sum([r["ack_counts"] for r in reports], axis=0).tolist()
        if reports
        else [0],
    }
    lat = np.asarray(latencies, dtype=float)
    handoff = np.asarray(handoffs, dtype=float)
    ticks = report.get("ticks", 0)
    wall = report.get("wall_s", float("nan"))
    return {
        "target": rate,
        "ticks_per_s": ticks / wall if wall else float("nan"),
        "signals_per_s": report.get("signals", 0) / wall if wall else float("nan"),
        "n_signals": lat.size,
        "p50_us": float(np.percentile(lat, 50)) if lat.size else float("nan"),
        "p90_us": float(np.percentile(lat, 90)) if lat.size else float("nan"),
        "p99_us": float(np.percentile(lat, 99)) if lat.size else float("nan"),
        "max_us": float(lat.max()) if lat.size else float("nan"),
        "handoff_p50_us": float(np.percentile(handoff, 50)) if handoff.size else float("nan"),
        "ack_p50_us": 1e6
        * bucket_quantile(report.get("ack_buckets", []), report.get("ack_counts", [0]), 0.5),
        "ack_p99_us": 1e6
        * bucket_quantile(report.get("ack_buckets", []), report.get("ack_counts", [0]), 0.99),
        "cpu_ms_per_1k": 1e6 * report.get("cpu_s", 0.0) / ticks if ticks else float("nan"),
        "cpu_util": report.get("cpu_s", 0.0) / wall if wall else float("nan"),
        "workers": args.workers,
        "reads_per_s": report["reads"] / wall if wall else float("nan"),
        "publishes_per_s": report["publishes"] / wall if wall else float("nan"),
        "ingest_batches_per_s": report["ingest_batches"] / wall if wall else float("nan"),
        "handed_off_share": report["handed_off"] / ticks if ticks else float("nan"),
        "ping_us": rtt,
        "sim_cpu": shares["sim"],
        "ingest_cpu": shares.get("ingest", float("nan")),
        "learner_ms_per_1k": 1e3 * learner_reference(symbols, scale),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="1000,10000", help="target ticks/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window, s")
    parser.add_argument("--warmup", type=float, default=5.0, help="warm-up before measuring, s")
    parser.add_argument("--symbols", type=int, default=10, help="number of symbols (<= 12)")
    parser.add_argument("--flush-ms", type=int, default=0, help="ingest.flush_interval_ms")
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes (symbols split between them)"
    )
    parser.add_argument(
        "--layout",
        choices=("one", "split"),
        default="one",
        help="one: ingester and worker in one process, as `tickcast run` (the simulator stays "
        "apart); split: `tickcast ingest` and `tickcast worker` processes",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="a local 3-master, 3-replica Redis Cluster instead of one embedded redis-server",
    )
    parser.add_argument(
        "--tcp",
        action="store_true",
        help="the embedded redis-server on a loopback port (as the cluster), not a unix socket",
    )
    parser.add_argument(
        "--child", choices=("sim", "ingest", "worker", "service"), help=argparse.SUPPRESS
    )
    parser.add_argument("--sim-url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    parser.add_argument("--symbol-list", help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "sim":
        asyncio.run(child_sim(args))
        return
    if args.child == "ingest":
        asyncio.run(child_ingest(args))
        return
    if args.child in ("worker", "service"):
        asyncio.run(child_worker(args, ingest=args.child == "service"))
        return
    print(
        f"tickcast e2e: sim | feed -> ingester -> Redis | {args.workers} worker(s) -> signals "
        f"(layout {args.layout}{', Redis Cluster 3+3' if args.cluster else ''}); "
        f"{args.symbols} "
        f"symbols, flush_interval_ms={args.flush_ms}, {args.warmup:.0f} s warm-up + "
        f"{args.seconds:.0f} s measured per rate, {os.cpu_count()} cores"
    )
    with tempfile.TemporaryDirectory(prefix="tickcast-e2e-") as tmp:
        rows = [run_rate(float(r), args, Path(tmp)) for r in args.rates.split(",")]
    print(
        f"{'target/s':>9} {'ticks/s':>9} {'signals/s':>9} {'p50 us':>8} {'p90 us':>8} "
        f"{'p99 us':>8} {'max us':>8} {'hand p50':>8} {'ack p50<=':>9} {'ack p99<=':>9} "
        f"{'cpu ms/1k':>9} "
        f"{'cpu %':>6} {'x learner':>9}"
    )
    for r in rows:
        print(
            f"{r['target']:>9.0f} {r['ticks_per_s']:>9.0f} {r['signals_per_s']:>9.0f} "
            f"{r['p50_us']:>8.0f} {r['p90_us']:>8.0f} {r['p99_us']:>8.0f} {r['max_us']:>8.0f} "
            f"{r['handoff_p50_us']:>8.0f} {r['ack_p50_us']:>9.0f} {r['ack_p99_us']:>9.0f} "
            f"{r['cpu_ms_per_1k']:>9.1f} "
            f"{100 * r['cpu_util']:>6.1f} {r['cpu_ms_per_1k'] / r['learner_ms_per_1k']:>9.2f}"
        )
    print(
        "latency (p50..max): local receive of the tick closing a sample -> signal readable, "
        "measured at a subscriber on the same clock (its receive time - recv_us); hand: to the "
        "signal handed to Redis (latency_us); ack: to the XADD acknowledged (histogram bucket "
        "bounds); cpu: user+system per 1k ticks of the worker processes"
        + (" (feed + ingester + worker: one process)." if args.layout == "one" else ".")
    )
    for r in rows:
        ingest = "" if args.layout == "one" else f"feed + ingester {100 * r['ingest_cpu']:.0f}%, "
        print(
            f"at {r['target']:.0f}/s: CPU share of the simulator {100 * r['sim_cpu']:.0f}%, "
            f"{ingest}worker {100 * r['cpu_util']:.0f}%"
        )
    for r in rows:
        batches = (
            f", ingest XADD batches {r['ingest_batches_per_s']:.0f}/s, ticks taken from the "
            f"in-process handoff {100 * r['handed_off_share']:.0f}%"
            if args.layout == "one"
            else ""
        )
        print(
            f"at {r['target']:.0f}/s: worker XREADs {r['reads_per_s']:.0f}/s, signal batches "
            f"{r['publishes_per_s']:.0f}/s{batches}"
        )
    for r in rows:
        print(
            f"references at {r['target']:.0f}/s: Redis PING {r['ping_us']:.0f} us; learner alone "
            f"(decode + update) {r['learner_ms_per_1k']:.1f} ms CPU per 1k ticks"
        )


if __name__ == "__main__":
    main()
