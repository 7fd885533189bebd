"""Child processes that live no longer than the process that started them (Linux).

:func:`spawn_owned` starts a command in its own session, silenced, and on Linux with
``prctl(PR_SET_PDEATHSIG, SIGTERM)``: when the starting process dies without stopping the
child (SIGKILL, a hard crash), the kernel sends the child SIGTERM. The embedded redis-server
(:mod:`tickcast.service.bus.embedded`) is started this way, so it shuts down cleanly, flushing its
AOF, instead of lingering as an orphan. Other platforms have no such hook: the child is a plain
child process there.
"""

from __future__ import annotations

import ctypes
import functools
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Final

PR_SET_PDEATHSIG: Final = 1
"""``prctl`` option from ``<linux/prctl.h>``: the signal a child gets when its parent dies."""

ORPHANED_EXIT_CODE: Final = 70
"""Exit code of a child whose parent died between ``fork`` and ``prctl`` (it never execs)."""


Spawn = Callable[[], subprocess.Popen[bytes]]


@functools.cache
def _libc_prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, looked up in the parent (the forked child must not ``dlopen``)."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    prctl.restype = ctypes.c_int
    return prctl


def parent_death_hook(parent_pid: int, platform: str = sys.platform) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when its parent dies, or ``None``.

    Linux only (``None`` elsewhere, and when libc has no ``prctl``). The hook runs in the
    forked child before ``exec``: it sets ``PR_SET_PDEATHSIG`` (kept across ``exec`` unless
    the binary is set-uid, set-gid or has file capabilities), then exits with
    :data:`ORPHANED_EXIT_CODE` if ``parent_pid`` already died (``getppid()`` then names a
    reaper), since the signal would never come. A failing ``prctl`` is ignored: the child
    then runs as it would on another platform.
    """
    if not platform.startswith("linux"):
        return None
    prctl = _libc_prctl()
    if prctl is None:
        return None

    def hook() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:
            os._exit(ORPHANED_EXIT_CODE)

    return hook


class _Launcher:
    """A daemon thread that forks the servers of this process.

    The kernel sends the parent-death signal when the *thread* that forked the child exits,
    not when its process does. Forking from whichever thread calls :meth:`EmbeddedRedis.start`
    (a short-lived ``threading.Thread``, an ``asyncio.to_thread`` worker) would have the
    server stopped as soon as that thread ends. This thread is never asked to stop: it lives
    as long as the process (a daemon thread is only torn down at interpreter exit, when the
    servers are due to stop anyway).
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._jobs: queue.SimpleQueue[tuple[Spawn, Future[subprocess.Popen[bytes]]]]
        self._jobs = queue.SimpleQueue()
        name = "tickcast-redis-launcher"
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    def _serve(self) -> None:
        while True:
            spawn, result = self._jobs.get()
            try:
                result.set_result(spawn())
            except BaseException as exc:  # handed to the waiting caller
                result.set_exception(exc)

    def run(self, spawn: Spawn) -> subprocess.Popen[bytes]:
        """Call ``spawn`` on the launcher thread and return (or raise) what it did."""
        result: Future[subprocess.Popen[bytes]] = Future()
        self._jobs.put((spawn, result))
        return result.result()


_launcher: _Launcher | None = None
_launcher_lock = threading.Lock()


def _reset_launcher() -> None:
    """After ``fork``: the launcher thread is not in the child, nor is the lock's owner."""
    global _launcher, _launcher_lock
    _launcher, _launcher_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_reset_launcher)


def _get_launcher() -> _Launcher:
    """This process's :class:`_Launcher`, started on first use."""
    global _launcher
    with _launcher_lock:
        if _launcher is None or _launcher.pid != os.getpid():
            _launcher = _Launcher()
        return _launcher


def spawn_owned(argv: list[str]) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session, silenced, and on Linux tied to this process's life.

    On Linux the fork happens on the :class:`_Launcher` thread, so the parent-death signal
    fires when this process dies, not when the calling thread ends. Elsewhere the caller
    forks, as a plain child process.
    """
    hook = parent_death_hook(os.getpid())

    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            # Runs between fork and exec: prctl (resolved beforehand), getppid, _exit only.
            preexec_fn=hook,
        )

    return spawn() if hook is None else _get_launcher().run(spawn)
