"""Fixtures shared by every test: the location of the recorded data beside the checkout, and
a Redis >= 7 built with TLS (Debian's ``redis-server``, installed by ``make system-deps``) for
the ACL and TLS tests."""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tickcast.service.bus.embedded import free_port
from tickcast.service.bus.lifetime import spawn_owned

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ``../shared`` folder that CI lays beside the checkout (data and wire samples)."""
    if not SHARED.is_dir():
        raise RuntimeError(f"expected the shared data folder at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def binance_recording(shared_dir: Path) -> Path:
    """Real Binance USD-M BTCUSDT traffic, ``<ns> <json>`` lines, gzipped."""
    return shared_dir / "data" / "binance-usdm-btcusdt-20240808.gz"


@pytest.fixture(scope="session")
def samples_dir(shared_dir: Path) -> Path:
    """Real wire messages of each venue, one per file."""
    return shared_dir / "exchange-samples"


# -- a Redis >= 7 built with TLS (Debian's redis-server), for the ACL and TLS tests ------------

SYSTEM_DEPS_HINT = "run `make system-deps` (Debian: apt-get install redis-server openssl)"


def system_redis_server() -> Path:
    """The ``redis-server`` on ``PATH`` (Debian's, from ``make system-deps``), checked to be
    Redis >= 7 (read/write key permissions and selectors in ACLs); ``pytest.fail`` naming the
    way to install it when there is none or it is older."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(f"no redis-server on PATH: {SYSTEM_DEPS_HINT}", pytrace=False)
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    found = re.search(r"v=(\d+)\.", version.stdout)
    if found is None or int(found.group(1)) < 7:
        why = f"{binary} is not Redis >= 7 ({version.stdout.strip()})"
        pytest.fail(f"{why}: {SYSTEM_DEPS_HINT}", pytrace=False)
    return Path(binary)


@dataclass
class RedisProcess:
    """A redis-server child process on a loopback port: ``port`` (its TLS port when started
    with TLS), ``log`` (its log file); :meth:`stop` ends it."""

    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def url(self, scheme: str = "redis") -> str:
        """``<scheme>://127.0.0.1:<port>/0``."""
        return f"{scheme}://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        """SIGTERM, then wait (SIGKILL after 10 s)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def launch_redis(
    binary: Path, data_dir: Path, options: Sequence[str], *, tls: bool = False
) -> RedisProcess:
    """Start ``binary`` on a free loopback port (its ``--tls-port`` with ``tls``, the plain port
    off) with ``options`` (``--name value`` pairs), no persistence, data and log in
    ``data_dir``; return once the port accepts connections.

    Raises
    ------
    RuntimeError
        When the server exits at start (the message quotes its log) or does not listen in time.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "redis.log"
    for _ in range(5):  # another process may take the free port first
        port = free_port()
        listen = ["--port", "0", "--tls-port", str(port)] if tls else ["--port", str(port)]
        argv = [str(binary), "--bind", "127.0.0.1", *listen, "--save", "", "--appendonly", "no",
                "--dir", str(data_dir), "--logfile", str(log), *options]  # fmt: skip
        server = RedisProcess(port, spawn_owned(argv), log)
        deadline = time.monotonic() + 10.0
        while server.proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                return server
            time.sleep(0.01)
        server.stop()
        text = log.read_text(errors="replace") if log.exists() else "(no log)"
        if "already in use" not in text:
            raise RuntimeError(f"{binary} did not start:\n{text[-3000:]}")
    raise RuntimeError(f"{binary}: no free port after 5 attempts")


@pytest.fixture(scope="session")
def start_system_redis() -> Iterator[Callable[..., RedisProcess]]:
    """``start(data_dir, options, *, tls=False)``: :func:`launch_redis` of
    :func:`system_redis_server` (the fixture fails when there is none); every server started
    is stopped at the end of the session."""
    binary = system_redis_server()
    started: list[RedisProcess] = []

    def start(data_dir: Path, options: Sequence[str], *, tls: bool = False) -> RedisProcess:
        server = launch_redis(binary, data_dir, options, tls=tls)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
