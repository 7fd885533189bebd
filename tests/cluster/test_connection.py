"""On a Redis Cluster, :func:`connect` and :func:`probe` (``redis.cluster`` auto, the default)
make cluster clients that reach every node; and the fixture is what it says: 3 masters, each
with a replica, serving the 16384 slots."""

from __future__ import annotations

import pytest
import redis
import redis.asyncio.cluster
import redis.cluster
from redis.crc import key_slot

from tickcast.service.bus import connection
from tickcast.service.bus.connection import cluster_mode, connect, is_cluster, probe
from tickcast.service.bus.keys import ticks_key
from tickcast.service.ops.config import Settings

from localcluster import LocalCluster

SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT", "XRP/USDT:USDT", "DOGE/USDT:USDT")


def test_the_fixture_is_three_masters_with_a_replica_each_over_every_slot(
    redis_cluster: LocalCluster,
) -> None:
    layout = redis_cluster.layout()
    masters = {a: i for a, i in layout.items() if i["role"] == "master"}
    replicas = [i for i in layout.values() if i["role"] == "slave"]
    assert len(masters) == 3 and len(replicas) == 3
    assert sorted(r["master"] for r in replicas) == sorted(i["id"] for i in masters.values())
    covered = sum(b - a + 1 for i in masters.values() for a, b in i["slots"])
    assert covered == 16384


async def test_auto_detects_the_cluster_and_the_client_reaches_every_master(
    cluster_url: str, redis_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection, "_DETECTED", {})
    settings = Settings()
    assert cluster_mode(cluster_url, settings) is True
    client = connect(cluster_url, settings)
    assert type(client) is redis.asyncio.cluster.RedisCluster and is_cluster(client)
    keys = [ticks_key("tickcast", "sim", s) for s in SYMBOLS]
    try:
        for key in keys:
            await client.xadd(key, {b"v": b"1"}, id="5-0")
        assert {redis_cluster.master_of(k).port for k in keys} == {
            n.port for n in redis_cluster.masters_now()
        }  # these symbols span the three masters
        for key in keys:
            node = redis_cluster.master_of(key)
            assert key.encode() in redis_cluster.keys_on(node)
            assert (await client.xrange(key))[0][0] == b"5-0"
    finally:
        await client.aclose()


def test_the_probe_is_a_sync_cluster_client_with_bytes_replies(cluster_url: str) -> None:
    client = probe(cluster_url, Settings(), 1.0)
    try:
        assert type(client) is redis.cluster.RedisCluster and is_cluster(client)
        key = ticks_key("tickcast", "sim", "ETH/USDT:USDT")
        client.xadd(key, {b"v": b"1"}, id="7-0")
        assert client.xrevrange(key, count=1)[0][0] == b"7-0"
        assert client.keyslot(key) == key_slot(key.encode())
    finally:
        client.close()


def test_a_cluster_nobody_answers_is_a_connection_error_for_the_probe() -> None:
    url = "redis://127.0.0.1:1/0"
    with pytest.raises(redis.ConnectionError, match="no node of the cluster"):
        probe(url, Settings(redis={"cluster": True}), 0.2)
