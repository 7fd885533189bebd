"""Which client :func:`connect` and :func:`probe` make: ``redis.cluster`` true, false or auto
(the server asked once, ``HELLO``) — against a real single redis-server here; the cluster
side is in ``tests/cluster/test_connection.py``."""

from __future__ import annotations

import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster

from tickcast.service.bus import connection
from tickcast.service.bus.connection import cluster_mode, connect, is_cluster, probe
from tickcast.service.bus.embedded import free_port
from tickcast.service.ops.config import ConfigError, Settings


async def test_auto_on_a_single_redis_makes_plain_clients(redis_url: str) -> None:
    settings = Settings(redis={"cluster": "auto"})
    client = connect(redis_url, settings)
    try:
        assert type(client) is redis.asyncio.Redis
        assert not is_cluster(client)
        assert await client.ping()
    finally:
        await client.aclose()
    sync = probe(redis_url, settings, 1.0)
    try:
        assert type(sync) is redis.Redis and not is_cluster(sync)
    finally:
        sync.close()


def test_auto_asks_the_server_once_per_url(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "_DETECTED", {})
    asked: list[str] = []
    real = connection._ask_cluster_enabled

    def counting(url: str, settings: Settings) -> bool | None:
        asked.append(url)
        return real(url, settings)

    monkeypatch.setattr(connection, "_ask_cluster_enabled", counting)
    settings = Settings()
    assert settings.redis.cluster == "auto"
    assert [cluster_mode(redis_url, settings) for _ in range(3)] == [False] * 3
    assert asked == [redis_url]


def test_a_server_out_of_reach_is_taken_for_a_single_redis_and_asked_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(connection, "_DETECTED", {})
    caplog.set_level("DEBUG", logger=connection.__name__)
    url = f"redis://127.0.0.1:{free_port()}/0"
    settings = Settings(redis={"connect_timeout_s": 0.5})
    assert cluster_mode(url, settings) is False
    assert "cannot ask" in caplog.text and "redis.cluster" in caplog.text
    assert url not in connection._DETECTED  # asked again next time


async def test_explicit_false_never_asks_and_explicit_true_makes_a_cluster_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(url: str, settings: Settings) -> bool:
        raise AssertionError("asked the server")

    monkeypatch.setattr(connection, "_ask_cluster_enabled", refuse)
    url = f"redis://127.0.0.1:{free_port()}/0"
    plain = connect(url, Settings(redis={"cluster": False}))
    assert type(plain) is redis.asyncio.Redis
    await plain.aclose()
    client = connect(url, Settings(redis={"cluster": "true"}))  # as the environment gives it
    try:
        assert type(client) is redis.asyncio.cluster.RedisCluster and is_cluster(client)
        kwargs = client.get_connection_kwargs()
        assert kwargs["decode_responses"] is False and kwargs["protocol"] == 2
        assert kwargs["socket_timeout"] == Settings().redis.socket_timeout_s
    finally:
        await client.aclose()


def test_a_unix_socket_is_never_a_cluster_and_refused_as_one() -> None:
    assert cluster_mode("unix:///run/redis.sock", Settings()) is False
    with pytest.raises(ConfigError, match="unix socket"):
        cluster_mode("unix:///run/redis.sock", Settings(redis={"cluster": True}))


def test_the_setting_accepts_true_false_auto_only() -> None:
    assert Settings(redis={"cluster": "false"}).redis.cluster is False
    assert Settings(redis={"cluster": "auto"}).redis.cluster == "auto"
    with pytest.raises(ValueError, match="cluster"):
        Settings(redis={"cluster": "sometimes"})


def test_a_cluster_url_naming_another_database_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="Redis Cluster"):
        connect("redis://127.0.0.1:7000/3", Settings(redis={"cluster": True}))
