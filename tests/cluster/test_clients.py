"""``tickcast status``, ``tickcast subscribe`` and the client library on a real Redis Cluster:
the symbols of every master are found and read, and every symbol's signals are received —
also across a failover of the master that serves one of them."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis.cluster

from tickcast.service.bus import codec, keys
from tickcast.service.cli import main
from tickcast.service.client import NEW, START, Subscription
from tickcast.service.live.pool import members_key
from tickcast.service.schema import Signal
from tickcast.service.ticks import trade

from localcluster import LocalCluster
from support import publish_signal, take, use_environment

SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT", "XRP/USDT:USDT", "DOGE/USDT:USDT")


@pytest.fixture
def env(cluster_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The commands read the cluster and no other settings than the test gives."""
    use_environment(monkeypatch, tmp_path, TICKCAST__REDIS__URL=cluster_url)
    return cluster_url


def masters_of(cluster: LocalCluster, kind: str) -> set[int]:
    """The ports of the masters that serve the symbols' ``kind`` keys."""
    return {cluster.master_of(keys.symbol_key("tickcast", "sim", s, kind)).port for s in SYMBOLS}


def wait_replicated(replica: Any, key: str, n: int, timeout_s: float = 10.0) -> None:
    """Wait until ``replica`` holds ``n`` entries of the stream ``key``."""
    conn = replica.client()
    try:
        conn.execute_command("READONLY")
        deadline = time.monotonic() + timeout_s
        while conn.xlen(key) < n:
            assert time.monotonic() < deadline, "the replica did not get the entries"
            time.sleep(0.02)
    finally:
        conn.close()


def publish(client: redis.cluster.RedisCluster, symbol: str, t_ms: int) -> None:
    """A signal of ``symbol`` at ``t_ms``, with the stream ID ``<t_ms>-0``."""
    publish_signal(client, symbol, t_ms, stream_id=f"{t_ms}-0")


def by_symbol(signals: list[Signal]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for s in signals:
        out.setdefault(s.symbol, []).append(s.t_ms)
    return out


def test_status_finds_and_reads_the_symbols_of_every_master(
    env: str,
    redis_cluster: LocalCluster,
    cluster_client: redis.cluster.RedisCluster,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert len(masters_of(redis_cluster, "ticks")) == 3, "the symbols span the three masters"
    now_ms = time.time_ns() // 1_000_000
    for n, symbol in enumerate(SYMBOLS, start=1):
        for i in range(n):
            tick = trade("sim", symbol, now_ms + i, time.time_ns(), 100.0, 1.0, 1, str(i + 1))
            cluster_client.xadd(keys.ticks_key("tickcast", "sim", symbol), codec.encode(tick))  # type: ignore[arg-type]
        publish(cluster_client, symbol, now_ms - 1000)
    owner, other = "node-a:101:4026531836:aa", "node-b:102:4026531836:bb"
    for symbol in SYMBOLS[:3]:
        cluster_client.set(keys.symbol_key("tickcast", "sim", symbol, "owner"), owner)
    cluster_client.set(keys.symbol_key("tickcast", "sim", SYMBOLS[3], "owner"), other)
    cluster_client.set(keys.symbol_key("tickcast", "sim", SYMBOLS[0], "ingester"), other)
    cluster_client.zadd(
        members_key("tickcast", "worker"), {owner: now_ms + 60_000, other: now_ms - 1}
    )

    assert main(["status", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    rows = {row["symbol"]: row for row in found["symbols"]}
    assert sorted(rows) == sorted(SYMBOLS)
    assert [rows[s]["ticks_in_stream"] for s in SYMBOLS] == [1, 2, 3, 4, 5]
    assert all(rows[s]["last_signal_t_ms"] == now_ms - 1000 for s in SYMBOLS)
    assert rows[SYMBOLS[0]]["ingester_owner"] == other
    assert rows[SYMBOLS[4]]["worker_owner"] is None
    assert found["pools"] == {
        "worker": [{"member": owner, "symbols": 3}],
        "ingest": [],
    }, "the member whose entry expired is not listed"
    assert main(["status"]) == 0
    table = capsys.readouterr().out
    assert "worker pool: 1 members, symbols held: node-a:101 3" in table


async def test_the_client_receives_every_symbols_signals_from_every_master(
    cluster_url: str, redis_cluster: LocalCluster, cluster_client: redis.cluster.RedisCluster
) -> None:
    assert len(masters_of(redis_cluster, "signals")) == 3
    for symbol in SYMBOLS:
        for t in (100, 200):
            publish(cluster_client, symbol, t)
    async with Subscription(cluster_url, SYMBOLS, from_id=START, block_ms=200) as sub:
        got = await take(aiter(sub), 2 * len(SYMBOLS))
        assert by_symbol(got) == {s: [100, 200] for s in SYMBOLS}
        later = asyncio.create_task(take(aiter(sub), len(SYMBOLS)))
        await asyncio.sleep(0.3)  # the reads block on every master
        for symbol in SYMBOLS:
            publish(cluster_client, symbol, 300)
        assert by_symbol(await later) == {s: [300] for s in SYMBOLS}
        assert sub.last_ids == dict.fromkeys(SYMBOLS, "300-0")


async def test_a_new_subscription_on_the_cluster_starts_after_the_signals_already_there(
    cluster_url: str, cluster_client: redis.cluster.RedisCluster
) -> None:
    for symbol in SYMBOLS:
        publish(cluster_client, symbol, 100)
    async with Subscription(cluster_url, SYMBOLS, from_id=NEW, block_ms=200) as sub:
        later = asyncio.create_task(take(aiter(sub), len(SYMBOLS)))
        await asyncio.sleep(0.5)
        for symbol in SYMBOLS:
            publish(cluster_client, symbol, 200)
        assert by_symbol(await later) == {s: [200] for s in SYMBOLS}


def test_subscribe_prints_the_signals_of_every_master(
    env: str, cluster_client: redis.cluster.RedisCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    for symbol in SYMBOLS:
        for t in (100, 200, 300):
            publish(cluster_client, symbol, t)
    symbols = ",".join(SYMBOLS)
    args = ["subscribe", "--json", "--from-start", "--symbols", symbols, "--count", "15"]
    assert main(args) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    got: dict[str, list[Any]] = {}
    for line in lines:
        got.setdefault(line["symbol"], []).append(line["t_ms"])
    assert got == {s: [100, 200, 300] for s in SYMBOLS}


async def test_the_client_follows_a_symbol_through_a_failover_of_its_master(
    cluster_url: str, redis_cluster: LocalCluster, cluster_client: redis.cluster.RedisCluster
) -> None:
    victim = SYMBOLS[0]
    key = keys.signals_key("tickcast", "sim", victim)
    master = redis_cluster.master_of(key)
    for symbol in SYMBOLS:
        publish(cluster_client, symbol, 100)
    wait_replicated(redis_cluster.replicas_of(master)[0], key, 1)
    async with Subscription(cluster_url, SYMBOLS, from_id=START, block_ms=200) as sub:
        got = await take(aiter(sub), len(SYMBOLS))
        assert by_symbol(got) == {s: [100] for s in SYMBOLS}
        later = asyncio.create_task(take(aiter(sub), len(SYMBOLS), timeout=60.0))
        redis_cluster.kill(master)
        await asyncio.to_thread(redis_cluster.wait_failover, master, cluster_client.keyslot(key))
        cluster_client.nodes_manager.initialize()
        for symbol in SYMBOLS:
            publish(cluster_client, symbol, 200)
        assert by_symbol(await later) == {s: [200] for s in SYMBOLS}
