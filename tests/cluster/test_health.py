"""The health probes on a real Redis Cluster: PING to every master, the fullest master's
memory, the lag of streams on different masters; not ready while a master is down, ready again
once its replica took over — without a new probe."""

from __future__ import annotations

import time

import redis.cluster

from tickcast.service.bus import keys
from tickcast.service.ops.config import Settings
from tickcast.service.ops.health import Readiness, RedisProbe
from tickcast.service.ticks import Instrument

from localcluster import LocalCluster

SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT", "XRP/USDT:USDT")


def test_the_probe_reads_the_fullest_master_and_the_lag_of_streams_on_every_master(
    redis_cluster: LocalCluster,
) -> None:
    instruments = [Instrument("sim", s) for s in SYMBOLS]
    stream_keys = [keys.ticks_key("tickcast", "sim", s) for s in SYMBOLS]
    assert len({redis_cluster.master_of(k).port for k in stream_keys}) == 3
    client = redis.cluster.RedisCluster.from_url(redis_cluster.url)
    for i, key in enumerate(stream_keys):
        client.xadd(key, {b"t": b"x"}, id=f"{1000 * (i + 1)}-0")
        client.xadd(key, {b"t": b"x"}, id=f"{1000 * (i + 1) + 1500}-0")
    client.close()
    full = redis_cluster.master_of(stream_keys[1])
    used = int(full.call("INFO", "memory")["used_memory"])
    limit = used * 4  # a quarter full: the others have no limit
    full.call("CONFIG", "SET", "maxmemory", limit)
    positions = {i: (k, "0-0") for i, k in zip(instruments, stream_keys, strict=True)}
    probe = RedisProbe(redis_cluster.url, Settings(), lambda: positions)
    try:
        reading = probe()
        assert reading.up
        assert reading.maxmemory_bytes == limit
        assert 0 < reading.used_memory_bytes < limit
        assert reading.lag_s == dict.fromkeys(instruments, 1.5)
    finally:
        probe.close()
        full.call("CONFIG", "SET", "maxmemory", 0)


def test_readiness_is_lost_with_a_master_and_back_once_its_replica_took_over(
    redis_cluster: LocalCluster,
) -> None:
    ready = Readiness(redis_cluster.url, time.monotonic, stale_s=60.0)
    key = keys.ticks_key("tickcast", "sim", SYMBOLS[0])
    master = redis_cluster.master_of(key)
    try:
        assert ready() == (True, "ready")
        redis_cluster.kill(master)
        ok, reason = ready()
        assert not ok and reason.startswith("redis unreachable")
        redis_cluster.wait_failover(master, redis.cluster.key_slot(key.encode()))
        deadline = time.monotonic() + 10.0
        while ready() != (True, "ready"):
            assert time.monotonic() < deadline, ready()
            time.sleep(0.1)
    finally:
        ready.close()
