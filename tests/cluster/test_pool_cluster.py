"""``tickcast ingest`` and ``tickcast worker --pool`` processes on a real 3-master, 3-replica
Redis Cluster: the pool splits symbols spread over the three masters, a newcomer takes its
share, a killed worker's symbols move to the others; a master SIGKILLed mid-run is replaced by
its replica while ticks keep flowing and the ticks it took with it, if any, are counted; and
through it all every sample is published once, as one uninterrupted learner over each stream
would."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import redis.cluster

from tickcast.service.bus import codec, keys
from tickcast.service.ticks import TRADE, Tick

from localcluster import LocalCluster
from support import (
    Owners,
    assert_pool_members_left,
    pool_environment,
    split_join_and_kill,
    start,
    stop_and_compare_signals,
    wait_until,
)

SYMBOLS = [f"{base}/USDT:USDT" for base in ("BTC", "ETH", "SOL", "XRP", "ADA", "DOGE")]
SYMBOL_ARGS = ["--exchange", "sim", "--symbols", ",".join(SYMBOLS)]
INGEST = ["ingest", *SYMBOL_ARGS, "--speed", "3", "--stats-every", "0"]


def tick_key(symbol: str) -> str:
    return keys.ticks_key("tickcast", "sim", symbol)


@pytest.fixture
def client(
    redis_cluster: LocalCluster, cluster_client: redis.cluster.RedisCluster
) -> redis.cluster.RedisCluster:
    """The cluster client; the symbols' streams checked to span the three masters."""
    masters = {redis_cluster.master_of(tick_key(s)).port for s in SYMBOLS}
    assert len(masters) == 3, "the symbols span the three masters"
    return cluster_client


def stream(client: redis.cluster.RedisCluster, symbol: str) -> list[Tick]:
    return [codec.decode(f) for _, f in client.xrange(tick_key(symbol))]


def test_a_worker_pool_on_the_cluster_splits_hands_over_and_takes_over(
    redis_cluster: LocalCluster,
    client: redis.cluster.RedisCluster,
    tmp_path: Path,
    procs: list[subprocess.Popen[bytes]],
) -> None:
    ttl_s = 2.0
    env = pool_environment(tmp_path, redis_cluster.url, ttl_s)
    logs = {name: tmp_path / f"{name}.log" for name in ("ingest", "a", "b", "c")}

    def worker(name: str) -> subprocess.Popen[bytes]:
        procs.append(start(["worker", *SYMBOL_ARGS, "--pool"], env, logs[name]))
        return procs[-1]

    ingest = start(INGEST, env, logs["ingest"])
    procs.append(ingest)
    with Owners(redis_cluster.url, SYMBOLS) as owners:
        a, b, c = split_join_and_kill(owners, worker, ttl_s)
        stop_and_compare_signals(client, SYMBOLS, ingest, {"a": a, "c": c}, logs)
    assert owners.held_only_by(a, b, c), owners.seen
    assert_pool_members_left(client)


def counted_losses(log: str) -> Counter[str]:
    """Ticks the ingester says a failover lost, per symbol (its warning lines)."""
    out: Counter[str] = Counter()
    for line in log.splitlines():
        if "failover lost ticks" in line:
            for venue, symbol, n in re.findall(r"(\S+) (\S+): (\d+)\+? \(up to", line):
                out[symbol] += int(n) if venue == "sim" else 0
    return out


@pytest.mark.slow
def test_the_pool_rides_a_master_failover_and_counts_what_the_cluster_lost(
    redis_cluster: LocalCluster,
    client: redis.cluster.RedisCluster,
    tmp_path: Path,
    procs: list[subprocess.Popen[bytes]],
) -> None:
    env = pool_environment(tmp_path, redis_cluster.url, 6.0)  # leases outlive the failover (~2 s)
    logs = {name: tmp_path / f"{name}.log" for name in ("ingest", "a", "b")}
    ingest = start(INGEST, env, logs["ingest"])
    procs.append(ingest)
    workers = {n: start(["worker", *SYMBOL_ARGS, "--pool"], env, logs[n]) for n in ("a", "b")}
    procs += workers.values()
    victim_key = tick_key(SYMBOLS[0])

    def xlen(symbol: str) -> int:
        return int(client.xlen(tick_key(symbol)))

    with Owners(redis_cluster.url, SYMBOLS) as owners:
        wait_until("the pool's split", lambda: owners.split(*workers.values()) == [3, 3])
        master = redis_cluster.master_of(victim_key)
        on_victim = [s for s in SYMBOLS if redis_cluster.master_of(tick_key(s)) == master]
        wait_until(
            "ticks on every stream",
            lambda: all(xlen(s) > 50 for s in SYMBOLS),
        )
        redis_cluster.kill(master)
        redis_cluster.wait_failover(master, client.keyslot(victim_key))
        client.nodes_manager.initialize()
        lengths = {s: xlen(s) for s in SYMBOLS}
        wait_until(
            "ticks flowing again on every stream, those of the failed master's slots too",
            lambda: all(xlen(s) > lengths[s] + 20 for s in SYMBOLS),
            timeout=30.0,
        )
        assert all(p.poll() is None for p in (ingest, *workers.values())), "nobody stopped"
        assert owners.split(*workers.values()) == [3, 3], "the pool kept its split"
        stop_and_compare_signals(client, SYMBOLS, ingest, workers, logs)
    counted = counted_losses(logs["ingest"].read_text())
    for symbol in on_victim:
        ids = [int(t.trade_id) for t in stream(client, symbol) if t.kind == TRADE]
        missing = max(ids) - min(ids) + 1 - len(set(ids))
        assert len(ids) == len(set(ids)), "no tick stored twice"
        assert missing <= counted[symbol], (
            f"{symbol}: {missing} trades lost, {counted[symbol]} counted"
        )
