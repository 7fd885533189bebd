"""Least privilege, against a real Redis 7: ``deploy/redis/users.acl.in`` rendered by
``deploy/redis/render-acl`` and loaded as the server's ACL file lets each tickcast command run
under its own user — ``ingest``, ``worker`` (quarantining a tick and setting an unreadable
checkpoint aside on the way), ``subscribe``, ``status`` (and ``run`` under a user holding the
rules of both ``ingest`` and ``worker``) — without a single command refused (the server's ACL
LOG stays empty), and refuses every user what is not its job: a subscriber cannot write, an
ingester cannot publish signals nor read checkpoints, a worker cannot write ticks."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from tickcast.service.bus import codec, keys
from tickcast.service.bus.embedded import free_port
from tickcast.service.ticks import trade

from support import CLI, environment, http, start, wait_until

REPO = Path(__file__).resolve().parents[3]
TEMPLATE = REPO / "deploy" / "redis" / "users.acl.in"
RENDER = REPO / "deploy" / "redis" / "render-acl"
PASSWORDS = {
    "admin": "admin-pw-1",
    "ingest": "ingest-pw-2",
    "worker": "worker-pw-3",
    "subscriber": "subscriber-pw-4",
    "monitor": "monitor-pw-5",
}
USERS = {role: f"tickcast-{role}" for role in PASSWORDS} | {"admin": "admin"}
SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT")
BTC = SYMBOLS[0]
TICKS = keys.ticks_key("tickcast", "sim", BTC)
SIGNALS = keys.signals_key("tickcast", "sim", BTC)
CKPT = keys.ckpt_key("tickcast", "sim", BTC)
OWNER = keys.symbol_key("tickcast", "sim", BTC, "owner")
INGESTER = keys.symbol_key("tickcast", "sim", BTC, "ingester")
SIGNAL = {
    "v": 1, "venue": "sim", "symbol": BTC, "t_ms": 1_700_000_000_000, "horizon_ms": 1000,
    "ret_bps": 0.5, "p_up": 0.6, "ref_price": 60000.0, "model_version": 3, "hit_rate": None,
    "ic": None, "skill_vs_zero": None, "latency_us": 200,
}  # fmt: skip


def render(*args: str, passwords: dict[str, str] = PASSWORDS) -> subprocess.CompletedProcess[str]:
    """Run ``render-acl [args] < users.acl.in`` with ``passwords`` in its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKCAST")}
    env |= {f"TICKCAST_{role.upper()}_PASSWORD": pw for role, pw in passwords.items()}
    with TEMPLATE.open() as template:
        return subprocess.run([str(RENDER), *args], stdin=template, capture_output=True,
                              text=True, env=env, timeout=30)  # fmt: skip


def start_with_acl(start_system_redis: Callable[..., Any], where: Path, acl: str) -> Any:
    """A Redis 7 on a loopback port with ``acl`` as its ACL file."""
    where.mkdir(parents=True)
    (where / "users.acl").write_text(acl)
    return start_system_redis(where, ["--aclfile", str(where / "users.acl")])


@pytest.fixture(scope="module")
def acl_server(
    start_system_redis: Callable[..., Any], tmp_path_factory: pytest.TempPathFactory
) -> Any:
    """A Redis 7 whose users are the rendered template's (default prefix)."""
    rendered = render()
    assert rendered.returncode == 0, rendered.stderr
    return start_with_acl(
        start_system_redis, tmp_path_factory.mktemp("acl") / "redis", rendered.stdout
    )


def login(server: Any, role: str) -> redis.Redis:
    """A sync client of ``server`` authenticated as the user of ``role``."""
    return redis.Redis.from_url(server.url(), username=USERS[role], password=PASSWORDS[role],
                                socket_timeout=5.0)  # fmt: skip


@pytest.fixture
def admin(acl_server: Any) -> Iterator[redis.Redis]:
    """The administrator, on an emptied server with an empty ACL LOG."""
    client = login(acl_server, "admin")
    client.flushall()
    client.acl_log_reset()
    try:
        yield client
    finally:
        client.close()


def as_user(server: Any, role: str, state_dir: Path) -> dict[str, str]:
    """The environment of a tickcast command run as ``role``'s user on ``server``."""
    return environment(state_dir, TICKCAST__REDIS__URL=server.url(),
                       TICKCAST__REDIS__USERNAME=USERS[role],
                       TICKCAST__REDIS__PASSWORD=PASSWORDS[role])  # fmt: skip


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=60)


def refused(admin: redis.Redis) -> list[str]:
    """What the server refused since the ACL LOG was reset: ``user: object``."""
    return [f"{e['username']}: {e['object']}" for e in admin.acl_log()]


def running(*procs: tuple[subprocess.Popen[bytes], Path]) -> None:
    """Fail at once, with its log, when one of the commands has exited."""
    for proc, log in procs:
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode}:\n{log.read_text()}")


def stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    """SIGTERM ``proc`` and check that it exits 0."""
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=20) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def snapshot(admin: redis.Redis) -> dict[bytes, bytes | None]:
    """Every key and its serialized value (DUMP): equal snapshots, nothing changed."""
    return {key: admin.dump(key) for key in sorted(admin.scan_iter())}  # type: ignore[misc]


# -- every command under its own user -----------------------------------------------------


def test_ingest_worker_subscribe_and_status_run_under_their_own_users_with_nothing_refused(
    acl_server: Any, admin: redis.Redis, tmp_path: Path
) -> None:
    eth_ticks = keys.ticks_key("tickcast", "sim", SYMBOLS[1])
    admin.xadd(eth_ticks, {"v": "1", "t": "not a tick"}, id="1-1")  # quarantined by the worker
    admin.hset(CKPT, mapping={"v": "1", "model": "junk", "last_id": "0-0", "last_t": "0"})
    port, worker_port = free_port(), free_port()
    ingest_log, worker_log = tmp_path / "ingest.log", tmp_path / "worker.log"
    ingest = start(["ingest", "--exchange", "sim", "--metrics-port", str(port), "--stats-every",
                    "0"], as_user(acl_server, "ingest", tmp_path / "i"), ingest_log)  # fmt: skip
    worker = start(["worker", "--exchange", "sim", "--metrics-port", str(worker_port)],
                   as_user(acl_server, "worker", tmp_path / "w"), worker_log)  # fmt: skip
    try:
        both = ((ingest, ingest_log), (worker, worker_log))

        def ready() -> bool:
            running(*both)
            return http(f"http://127.0.0.1:{port}/readyz")[0] == 200

        def published() -> bool:
            running(*both)
            return all(admin.xlen(keys.signals_key("tickcast", "sim", s)) for s in SYMBOLS)

        wait_until("the ingester ready (its health check's PING as its user)", ready, 60)
        wait_until("signals of every symbol", published, 60)
        for at, series in ((port, "tickcast_redis_used_memory_bytes "),
                           (worker_port, "tickcast_worker_lag_seconds{")):  # fmt: skip
            code, scraped = http(f"http://127.0.0.1:{at}/metrics")  # INFO, XREVRANGE as the user
            assert code == 200 and "tickcast_redis_up 1.0" in scraped and series in scraped
        got = cli(["subscribe", "--json", "--from-start", "--count", "3", "--symbols", BTC],
                  as_user(acl_server, "subscriber", tmp_path / "s"))  # fmt: skip
        assert got.returncode == 0, got.stderr
        assert [orjson.loads(line)["symbol"] for line in got.stdout.splitlines()] == [BTC] * 3
        status = cli(["status", "--json"], as_user(acl_server, "monitor", tmp_path / "m"))
        assert status.returncode == 0, status.stderr
        rows = orjson.loads(status.stdout)["symbols"]
        assert sorted(r["symbol"] for r in rows) == sorted(SYMBOLS)
        assert all(r["last_tick_age_s"] is not None and r["worker_owner"] for r in rows), rows
    finally:
        stop(worker, worker_log)
        stop(ingest, ingest_log)
    assert admin.hget(CKPT, "model") not in (None, b"junk"), "the worker's final checkpoint"
    (aside,) = admin.lrange(keys.unreadable_index_key(CKPT), 0, -1)
    assert admin.hget(aside, "model") == b"junk", "the unreadable checkpoint, set aside"
    eth_quarantine = keys.quarantine_key("tickcast", "sim", SYMBOLS[1])
    assert [i for i, _ in admin.xrange(eth_quarantine)] == [b"1-1"]
    assert not admin.exists(OWNER, INGESTER), "both leases given back (EVAL of DEL)"
    assert refused(admin) == []


def test_run_works_under_a_user_holding_the_ingester_and_worker_rules(
    acl_server: Any, admin: redis.Redis, tmp_path: Path
) -> None:
    lines = {line.split()[1]: line.split()[4:] for line in render().stdout.splitlines()}
    rules = [*lines["tickcast-ingest"], *lines["tickcast-worker"]]  # after "user NAME on #hash"
    admin.acl_setuser("tickcast-run", enabled=True, passwords=["+run-pw"], reset=True)
    admin.execute_command("ACL", "SETUSER", "tickcast-run", *rules)
    env = environment(tmp_path, TICKCAST__REDIS__URL=acl_server.url(),
                      TICKCAST__REDIS__USERNAME="tickcast-run",
                      TICKCAST__REDIS__PASSWORD="run-pw")  # fmt: skip
    log = tmp_path / "run.log"
    proc = start(["run", "--exchange", "sim", "--no-view", "--metrics-port", "0"], env, log)
    try:
        wait_until("signals", lambda: running((proc, log)) or admin.xlen(SIGNALS) > 0, 60)
    finally:
        stop(proc, log)
        admin.acl_deluser("tickcast-run")
    assert admin.hget(CKPT, "model")
    assert refused(admin) == []


# -- and nothing else ---------------------------------------------------------------------

XADD_TICK = ("XADD", TICKS, "*", "v", "1")
XADD_SIGNAL = ("XADD", SIGNALS, "*", "s", orjson.dumps(SIGNAL))
DENIED = {
    "subscriber": [XADD_TICK, XADD_SIGNAL, ("DEL", SIGNALS), ("XTRIM", SIGNALS, "MAXLEN", "0"),
                   ("XREAD", "STREAMS", TICKS, "0"), ("HGETALL", CKPT), ("SET", OWNER, "me"),
                   ("SCAN", "0"), ("FLUSHALL",)],
    "ingest": [XADD_SIGNAL, ("HGETALL", CKPT), ("HSET", CKPT, "model", "x"), ("DEL", TICKS),
               ("XREAD", "STREAMS", SIGNALS, "0"), ("SET", OWNER, "me"), ("FLUSHALL",)],
    "worker": [XADD_TICK, ("DEL", TICKS), ("DEL", SIGNALS), ("SET", INGESTER, "me"),
               ("SET", SIGNALS, "a string"), ("XTRIM", TICKS, "MAXLEN", "0"), ("FLUSHALL",)],
    "monitor": [XADD_TICK, XADD_SIGNAL, ("HSET", CKPT, "model", "x"), ("DEL", OWNER),
                ("SET", OWNER, "me"), ("CONFIG", "GET", "*")],
}  # fmt: skip


@pytest.mark.parametrize(
    ("role", "command"),
    [(role, command) for role, commands in DENIED.items() for command in commands],
    ids=lambda v: v if isinstance(v, str) else " ".join(map(str, v[:2]))[:40],
)
def test_each_user_is_refused_what_is_not_its_job_and_nothing_changes(
    acl_server: Any, admin: redis.Redis, role: str, command: tuple[Any, ...]
) -> None:
    tick = trade("sim", BTC, 1_700_000_000_000, 1, 60000.0, 0.5, 1, "7")
    admin.xadd(TICKS, codec.encode(tick))  # type: ignore[arg-type]
    admin.xadd(SIGNALS, {"s": orjson.dumps(SIGNAL)})
    admin.hset(CKPT, mapping={"v": "1", "model": "m"})
    admin.set(OWNER, "worker-1")
    before = snapshot(admin)
    client = login(acl_server, role)
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command(*command)
    finally:
        client.close()
    assert snapshot(admin) == before


def test_a_subscriber_reads_the_signals_and_its_status_is_refused_in_one_line(
    acl_server: Any, admin: redis.Redis, tmp_path: Path
) -> None:
    admin.xadd(SIGNALS, {"s": orjson.dumps(SIGNAL)})
    client = login(acl_server, "subscriber")
    try:
        assert len(client.xrevrange(SIGNALS, count=1)) == 1
    finally:
        client.close()
    status = cli(["status"], as_user(acl_server, "subscriber", tmp_path))
    assert status.returncode == 2
    assert status.stderr.startswith("tickcast: error: Redis refused a command:"), status.stderr
    assert "'scan'" in status.stderr and "Traceback" not in status.stderr


@pytest.mark.parametrize(
    ("role", "command", "says"),
    [
        ("subscriber", ["ingest"], "Redis refused a command:"),  # its lease: a write
        ("ingest", ["worker"], "Redis refused a command:"),
    ],
)
def test_a_service_under_the_wrong_user_stops_in_one_line_without_retrying(
    acl_server: Any, tmp_path: Path, role: str, command: list[str], says: str
) -> None:
    args = [*command, "--exchange", "sim", "--set", "metrics.enabled=false"]
    out = cli(args, as_user(acl_server, role, tmp_path))
    assert out.returncode == 2, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"tickcast: error: {says}"), out.stderr
    assert "Traceback" not in out.stderr


def split_rules(rules: str) -> list[str]:
    """``ACL LIST`` rules as ``ACL SETUSER`` arguments: a selector ``(...)`` is one argument.

    >>> split_rules("on -@all (~a +get +set) +ping")
    ['on', '-@all', '(~a +get +set)', '+ping']
    """
    out: list[str] = []
    for part in rules.split(" "):
        if out and out[-1].startswith("(") and not out[-1].endswith(")"):
            out[-1] += " " + part
        else:
            out.append(part)
    return out


def test_a_command_refused_while_running_stops_the_service_in_one_line(
    acl_server: Any, admin: redis.Redis, tmp_path: Path
) -> None:
    (line,) = [u for u in admin.acl_list() if u.startswith(f"user {USERS['ingest']} ")]
    rules = line.split(" ", 2)[2].replace(" +xadd", "")  # its leases work, its writes do not
    admin.execute_command("ACL", "SETUSER", "tickcast-noxadd", "reset", *split_rules(rules))
    try:
        env = as_user(acl_server, "ingest", tmp_path)
        env["TICKCAST__REDIS__USERNAME"] = "tickcast-noxadd"
        out = cli(["ingest", "--exchange", "sim", "--set", "metrics.enabled=false"], env)
    finally:
        admin.acl_deluser("tickcast-noxadd")
    assert out.returncode == 2, out.stderr
    assert "ingest sim failed: " in out.stderr and "Traceback" not in out.stderr, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("tickcast: error: Redis refused a command:"), out.stderr


def test_a_wrong_password_stops_a_service_in_one_line(acl_server: Any, tmp_path: Path) -> None:
    env = as_user(acl_server, "worker", tmp_path)
    env["TICKCAST__REDIS__PASSWORD"] = "not-the-password"
    out = cli(["worker", "--exchange", "sim", "--set", "metrics.enabled=false"], env)
    assert out.returncode == 2, out.stderr
    assert (
        out.stderr.strip()
        .splitlines()[-1]
        .startswith("tickcast: error: Redis refused the credentials:")
    ), out.stderr


def test_clients_that_do_not_authenticate_or_give_a_wrong_password_get_nothing(
    acl_server: Any, admin: redis.Redis
) -> None:
    anonymous = redis.Redis.from_url(acl_server.url(), socket_timeout=5.0)
    wrong = redis.Redis.from_url(acl_server.url(), username="tickcast-worker",
                                 password=PASSWORDS["ingest"], socket_timeout=5.0)  # fmt: skip
    try:
        with pytest.raises(redis.exceptions.AuthenticationError):
            anonymous.ping()
        with pytest.raises(redis.exceptions.AuthenticationError):
            wrong.ping()
    finally:
        anonymous.close()
        wrong.close()


# -- the recipe itself --------------------------------------------------------------------


def test_another_prefix_is_rendered_into_every_key_pattern(
    start_system_redis: Callable[..., Any], tmp_path: Path
) -> None:
    rendered = render("desk-1")
    assert rendered.returncode == 0, rendered.stderr
    assert "~tickcast:" not in rendered.stdout
    server = start_with_acl(start_system_redis, tmp_path / "redis", rendered.stdout)
    client = login(server, "ingest")
    try:
        client.xadd(keys.ticks_key("desk-1", "sim", BTC), {"v": "1"})
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.xadd(TICKS, {"v": "1"})
    finally:
        client.close()
        server.stop()


def test_the_template_refuses_to_load_unrendered(
    start_system_redis: Callable[..., Any], tmp_path: Path
) -> None:
    with pytest.raises(RuntimeError, match="ACL errors"):
        start_with_acl(start_system_redis, tmp_path / "redis", TEMPLATE.read_text())


def test_rendering_needs_every_password_and_a_prefix_without_pattern_characters() -> None:
    missing = render(passwords={k: v for k, v in PASSWORDS.items() if k != "monitor"})
    assert missing.returncode == 1 and missing.stdout == ""
    assert "set TICKCAST_MONITOR_PASSWORD" in missing.stderr
    globbing = render("desk*")
    assert globbing.returncode == 2 and globbing.stdout == ""
    rendered = render().stdout
    assert all(pw not in rendered for pw in PASSWORDS.values()), "only hashes are written"
