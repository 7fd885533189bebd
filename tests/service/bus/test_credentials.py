"""Credentials given as settings (``redis.username`` / ``redis.password``, the URL without
them) reach every client tickcast makes: the service's, its health check, ``status`` and
``subscribe`` — against a real redis-server whose default user is switched off."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis

from tickcast.service.bus import codec, keys
from tickcast.service.bus.embedded import EmbeddedRedis
from tickcast.service.ops.config import load_settings
from tickcast.service.ops.health import Readiness
from tickcast.service.ticks import trade

from support import CLI, environment

USER, PASSWORD = "alice", "s3cret-pass"
SIGNAL = {
    "v": 1, "venue": "sim", "symbol": "BTC/USDT:USDT", "t_ms": 1_700_000_000_000,
    "horizon_ms": 1000, "ret_bps": 0.5, "p_up": 0.6, "ref_price": 60000.0, "model_version": 3,
    "hit_rate": None, "ic": None, "skill_vs_zero": None, "latency_us": 200,
}  # fmt: skip


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[str]:
    """A redis-server that only ``alice`` may use; yields its URL (without credentials)."""
    server = EmbeddedRedis(tmp_path / "locked", unix_socket=False, discovery=False)
    server.start()
    admin = redis.Redis.from_url(server.url)
    try:
        admin.acl_setuser(USER, enabled=True, passwords=[f"+{PASSWORD}"], keys=["*"],
                          channels=["*"], commands=["+@all"])  # fmt: skip
        admin.acl_setuser("default", enabled=False)
        yield server.url
    finally:
        admin.close()
        server.kill()


def test_the_health_check_authenticates_with_the_settings_credentials(locked: str) -> None:
    bare = Readiness(locked, lambda: 1.0e12, stale_s=1e15)
    settings = load_settings(None, {"redis.username": USER, "redis.password": PASSWORD})
    authed = Readiness(locked, lambda: 1.0e12, 1e15, settings)
    try:
        ok, why = bare()
        assert not ok and "redis unreachable" in why, "the URL alone is refused"
        assert authed() == (True, "ready")
    finally:
        bare.close()
        authed.close()


def test_status_and_subscribe_authenticate_with_the_settings_credentials(
    locked: str, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(locked, username=USER, password=PASSWORD)
    try:
        tick = trade("sim", "BTC/USDT:USDT", 1_700_000_000_000, 1, 60000.0, 0.5, 1, "7")
        client.xadd(keys.ticks_key("tickcast", "sim", tick.symbol), codec.encode(tick))
        client.xadd(keys.signals_key("tickcast", "sim", tick.symbol), {"s": orjson.dumps(SIGNAL)})
    finally:
        client.close()
    env = environment(
        tmp_path,
        TICKCAST__REDIS__URL=locked,
        TICKCAST__REDIS__USERNAME=USER,
        TICKCAST__REDIS__PASSWORD=PASSWORD,
    )
    status = subprocess.run([*CLI, "status", "--json"], env=env, capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert orjson.loads(status.stdout)["symbols"][0]["last_tick_age_s"] is not None
    assert PASSWORD not in status.stdout + status.stderr
    args = ["subscribe", "--json", "--from-start", "--count", "1", "--symbols", "BTC/USDT:USDT"]
    out = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert orjson.loads(out.stdout)["model_version"] == 3
