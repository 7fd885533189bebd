"""Ownership of symbols: one worker at a time per symbol, as expiring Redis keys.

Two workers on one symbol (two ``tickcast run`` on one Redis, or overlapping pods during a rolling
update) would both publish its signals and overwrite each other's checkpoints. A worker that
holds :class:`SymbolLeases` owns its symbols: one key per symbol,
``<prefix>:{<venue>:<SYMBOLID>}:owner`` (the symbol's hash slot), set with ``NX`` and a time
to live, holding an owner token ``<host>:<pid>:<pid namespace>:<random>``.

- :meth:`SymbolLeases.acquire` takes every key or none (no deadlock between workers with
  overlapping symbol sets), retrying until they are free. A key whose token names a process of
  this host and PID namespace that no longer runs (a killed worker) is taken over at once; any
  other waits for its owner to release it or for its time to live to run out.
- :meth:`SymbolLeases.renew` extends the keys still holding this owner's token and returns the
  symbols lost (expired while Redis was out of reach, or taken): the worker must stop at once,
  without checkpointing them. With ``retake`` (the ingester), a key that expired while Redis was
  out of reach and that nobody took since is taken back instead of lost
  (:attr:`SymbolLeases.retaken`): a Redis outage longer than the time to live then costs no
  restart, and no tick.
- :meth:`SymbolLeases.release` deletes the keys still holding this owner's token, after the
  final checkpoint, so that the next owner restores it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections import Counter
from collections.abc import Mapping

from tickcast.service.bus.connection import AsyncClient
from tickcast.service.feed.reconnect import REDIS_TRANSIENT, is_retryable

log = logging.getLogger(__name__)

_RENEW = """
local holder = redis.call('get', KEYS[1])
if holder == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
if holder == false and ARGV[3] == '1' then
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""
WAIT_LOG_EVERY_S = 10.0
"""How often a worker waiting for its symbols says who holds them."""


def pid_namespace() -> str:
    """An id of this process's PID namespace (Linux: the inode of ``/proc/self/ns/pid``), so
    that containers sharing a host name (host networking) do not judge each other's pids;
    ``"-"`` where there is none."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "-"


def owner_token() -> str:
    """``<host>:<pid>:<pid namespace>:<random>``: who holds a lease (the random part tells
    restarts apart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{pid_namespace()}:{secrets.token_hex(4)}"


def held_by_dead_local_process(token: str) -> bool:
    """Whether ``token`` names a process of this host and PID namespace that no longer runs.

    Examples
    --------
    >>> held_by_dead_local_process(owner_token())
    False
    >>> held_by_dead_local_process(f"elsewhere:1:{pid_namespace()}:ab")
    False
    >>> held_by_dead_local_process(f"{socket.gethostname()}:1:another-namespace:ab")
    False
    """
    parts = token.split(":")
    if len(parts) != 4 or not parts[1].isdigit():
        return False
    host, pid, namespace, _ = parts
    if host != socket.gethostname() or namespace != pid_namespace():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class SymbolLeases:
    """Leases on some symbols' owner keys; see the module docstring.

    Parameters
    ----------
    client : redis.asyncio.Redis or redis.asyncio.cluster.RedisCluster
        Bytes-mode client.
    keys : mapping of str to str
        Owner key of each symbol.
    ttl_s : float
        Time to live of a lease: renew well within it (:attr:`renew_every_s`).
    token : str, optional
        Owner token (default :func:`owner_token`).
    """

    def __init__(
        self,
        client: AsyncClient,
        keys: Mapping[str, str],
        ttl_s: float = 10.0,
        token: str | None = None,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self.client = client
        self.keys = dict(keys)
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.token = token or owner_token()
        self.held = False
        self.retaken: list[str] = []
        """Symbols whose expired key the last :meth:`renew` took back."""
        self.acquisitions: Counter[str] = Counter()
        """Times each symbol's lease was taken (:meth:`acquire`, or taken back by :meth:`renew`)."""
        self.losses: Counter[str] = Counter()
        """Times each symbol's lease was found held by another process (or gone) at a renewal."""
        self.lost: set[str] = set()
        """Symbols whose lease the last :meth:`renew` found lost (no longer held)."""
        self._renewed = 0.0

    @property
    def renew_every_s(self) -> float:
        """A third of the time to live."""
        return self.ttl_ms / 3000.0

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Take every key, retrying until they are all free (and while Redis is out of reach);
        False if ``stop`` was set first."""
        logged = 0.0
        while not stop.is_set():
            try:
                holders = await self._try_all()
            except REDIS_TRANSIENT as exc:
                if not is_retryable(exc):
                    raise  # a certificate that does not verify: a configuration error
                log.warning(
                    "cannot take the symbols' leases, Redis unreachable (%s); retrying", exc
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.renew_every_s)
                continue
            if not holders:
                self.held, self._renewed = True, time.monotonic()
                self.acquisitions.update(list(self.keys))
                self.lost.clear()
                log.info("owning %s as %s", ", ".join(self.keys), self.token)
                return True
            now = time.monotonic()
            if now - logged >= WAIT_LOG_EVERY_S:
                logged = now
                log.warning(
                    "waiting for %s: held by %s (until released or expired, <= %.0f s)",
                    ", ".join(holders),
                    ", ".join(sorted(set(holders.values()))),
                    self.ttl_ms / 1000.0,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.renew_every_s / 2.0)
        return False

    async def _try_all(self) -> dict[str, str]:
        """One all-or-nothing attempt: ``{}`` when every key was taken, else the holders of
        the keys that were not (the keys taken meanwhile are given back)."""
        taken: list[str] = []
        holders: dict[str, str] = {}
        for symbol, key in self.keys.items():
            if await self.client.set(key, self.token, nx=True, px=self.ttl_ms):
                taken.append(key)
                continue
            holder = await self.client.get(key)
            text = holder.decode() if isinstance(holder, bytes) else str(holder)
            if holder is not None and held_by_dead_local_process(text):
                log.info("%s: its owner %s is gone; taking it over", symbol, text)
                await self.client.eval(_RELEASE, 1, key, text)
                if await self.client.set(key, self.token, nx=True, px=self.ttl_ms):
                    taken.append(key)
                    continue
            holders[symbol] = text
        if holders:
            for key in taken:
                await self.client.eval(_RELEASE, 1, key, self.token)
        return holders

    def due(self) -> bool:
        """Whether :meth:`renew` should run now (every :attr:`renew_every_s`)."""
        return self.held and time.monotonic() - self._renewed >= self.renew_every_s

    async def renew(self, *, retake: bool = False) -> list[str]:
        """Extend every lease; return the symbols whose key no longer holds this token.

        With ``retake``, a key that no longer exists (it expired while Redis was out of reach)
        is set again with this token: listed in :attr:`retaken`, not lost.
        """
        pipe = self.client.pipeline(transaction=False)  # one round trip for every symbol
        for key in self.keys.values():
            pipe.eval(_RENEW, 1, key, self.token, self.ttl_ms, "1" if retake else "0")
        kept = await pipe.execute()
        self._renewed = time.monotonic()
        self.retaken = [symbol for symbol, ok in zip(self.keys, kept, strict=True) if ok == 2]
        self.acquisitions.update(self.retaken)
        lost = [symbol for symbol, ok in zip(self.keys, kept, strict=True) if not ok]
        self.losses.update(lost)
        self.lost = set(lost)
        if self.retaken:
            log.warning(
                "%s: lease expired while Redis was out of reach and nobody took it; taken back",
                ", ".join(self.retaken),
            )
        return lost

    def holds(self, symbol: str) -> bool:
        """Whether this process holds ``symbol``'s lease (as far as its last renewal knows)."""
        return self.held and symbol in self.keys and symbol not in self.lost

    async def release(self) -> None:
        """Give back every key still holding this token (after the final checkpoint)."""
        if not self.held:
            return
        for key in self.keys.values():
            await self.client.eval(_RELEASE, 1, key, self.token)
        self.held = False
        log.info("released %s", ", ".join(self.keys))
