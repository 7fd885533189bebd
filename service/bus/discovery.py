"""Finding a running embedded Redis through its discovery file, ``<state_dir>/redis.json``.

While an :class:`~tickcast.service.bus.embedded.EmbeddedRedis` runs, that file records its URL, pid
and endpoint (:func:`write_discovery`); :func:`discover` reads it so that another ``tickcast``
process (``subscribe``, ``status``, a ``worker`` beside a ``run``) finds the server on its own. A
file left behind by a killed process is recognised as stale (dead pid or no answer to ``PING``)
and ignored; :func:`remove_discovery` deletes the file when its server stops.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import redis

log = logging.getLogger(__name__)

DISCOVERY_FILE: Final = "redis.json"
"""Name of the discovery file inside the state directory."""


def discovery_path(state_dir: Path | str) -> Path:
    """``<state_dir>/redis.json``."""
    return Path(state_dir).expanduser() / DISCOVERY_FILE


def write_discovery(state_dir: Path | str, record: Mapping[str, Any]) -> None:
    """Atomically write ``record`` (JSON: ``url``, ``pid``, ...) as the discovery file."""
    path = discovery_path(state_dir)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record), encoding="utf-8")
    os.replace(tmp, path)


def remove_discovery(state_dir: Path | str, pid: int | None) -> None:
    """Remove the discovery file unless it describes a server other than ``pid``.

    ``pid=None`` (no server was started) removes whatever file is there.
    """
    record = _read_discovery(state_dir)
    if record is not None and pid is not None and record.get("pid") != pid:
        return
    with contextlib.suppress(FileNotFoundError):
        discovery_path(state_dir).unlink()


def discover(state_dir: Path | str, *, timeout_s: float = 0.5) -> str | None:
    """Return the URL of a live embedded Redis serving ``state_dir``, else ``None``.

    A discovery file whose pid is gone or whose server does not answer PING within
    ``timeout_s`` is stale and ignored.
    """
    record = _read_discovery(state_dir)
    if record is None:
        return None
    url, pid = record.get("url"), record.get("pid")
    if not isinstance(url, str) or not isinstance(pid, int) or not _pid_alive(pid):
        log.debug("stale discovery file in %s (pid %s)", state_dir, pid)
        return None
    if not _answers_ping(url, timeout_s):
        log.debug("discovery file in %s names %s, which does not answer", state_dir, url)
        return None
    return url


def probe_client(url: str, timeout_s: float) -> redis.Redis:
    """A short-lived sync client for PING probes (the caller closes it)."""
    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)


def _read_discovery(state_dir: Path | str) -> dict[str, Any] | None:
    """The parsed discovery file, or ``None`` when it is missing or unreadable."""
    path = discovery_path(state_dir)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        log.debug("unreadable discovery file %s", path, exc_info=True)
        return None
    return record if isinstance(record, dict) else None


def _pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists (callers also PING: a zombie still has a pid)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _answers_ping(url: str, timeout_s: float = 0.5) -> bool:
    """Whether a Redis at ``url`` answers PING within ``timeout_s``."""
    client = probe_client(url, timeout_s)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()
