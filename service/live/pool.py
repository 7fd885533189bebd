"""A pool that balances itself: ``tickcast worker --pool`` and ``tickcast ingest --pool``.

N pool processes of one role split the M configured instruments about evenly between them
(each holds ``floor(M / N)`` or ``ceil(M / N)``), through the leases every process already
takes (:mod:`tickcast.service.bus.lease`: a worker holds a symbol's ``owner`` key, an ingester
its ``ingester`` key). Nobody assigns symbols: every member reads the same two things each
round and decides for itself.

Membership
    A sorted set ``<prefix>:{pool:<role>}:members`` (:func:`members_key`; its own hash slot)
    holds each member's owner token, scored by its expiry in Redis's own clock (``TIME`` inside
    the script, so that hosts' clocks do not matter). A member renews its entry every third of
    ``worker.lease_ttl_s`` (at each round, and in between while a service takes its time to
    stop) and removes it when it stops; a killed member's entry expires with its leases, after
    the lease's time to live (at once when it ran on this host:
    :func:`~tickcast.service.bus.lease.held_by_dead_local_process` reads its token).

A round (:class:`Pool`, every third of the lease's time to live)
    reads the live members and every instrument's lease holder (a
    :class:`~tickcast.service.live.balance.Snapshot`) and applies
    :func:`~tickcast.service.live.balance.plan`, a pure function of it:

    - *fair share* ``ceil(M' / N)``, where ``M'`` counts the instruments free or held by a
      member (one a non-pool process holds is out of the pool's reach);
    - *taking*: each free instrument goes, in turn, to the member holding fewest (below its
      share), ties to the member that ranks it highest (rendezvous hashing of member and
      instrument). Every member computes the same assignment from the same snapshot, so two
      members rarely go for the same symbol; one left free for ``patience`` rounds (its
      member is slow or its view differs) may be taken by any member below its share;
    - *giving back*: a member above the share gives back the excess; the member holding the
      most (the first such token) gives one back when another holds two fewer and nothing is
      free. Both only once the same round has said so ``patience`` times in a row
      (hysteresis): a member seen late, or gone for one round, moves nothing. A newcomer thus
      takes symbols from the most loaded: they give back, it takes what is free.

    The rule converges to counts differing by at most one, and moves a symbol only towards
    that: nobody flaps.

Hand-over
    A member serves its symbols with the ordinary :class:`~tickcast.service.live.service.Service`
    on settings restricted to them (:func:`restrict`). When its set changes, it stops that
    service gracefully — a worker checkpoints every symbol and releases its leases, an
    ingester flushes its buffer — and starts a new one on the new set, which takes the leases
    and restores each symbol from its last checkpoint: a worker publishes no sample its
    checkpoint says was published (signal IDs are sample times: Redis refuses one sent
    twice), and the symbols it kept resume where it stopped them. A change restarts the whole
    service, kept symbols included: membership changes are rare, and one service keeps one
    read loop and one feed connection per venue.

Races
    A new service only gets instruments its member saw free. Another member may take one of
    them meanwhile; :meth:`SymbolLeases.acquire` then waits for it, all or nothing, holding
    none. The next round sees the instrument held by someone else while the service still
    waits: it stops that service and plans again without it. A running service that lost a
    lease (after a Redis outage longer than the lease) is left to stop itself at its next
    renewal — a worker then writes no checkpoint over the new owner's — and is replaced, after
    a backoff, like any service that fails; a configuration error (a symbol a venue does not
    list, an ACL that refuses a command) ends the pool.

Metrics
    One :class:`~tickcast.service.ops.metrics.Metrics` over every configured instrument and
    one endpoint serve the process for its whole life: each service counts into them and
    :meth:`Metrics.retire` keeps its totals when it ends, so a restart neither rebinds the
    port nor resets a counter. ``/readyz``: Redis answers and ticks flow through the symbols
    held, or the member holds none by the plan's choice (it stands by to take over).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Final, Literal

import numpy as np
import redis

from tickcast.service.bus import connection, keys
from tickcast.service.bus.lease import held_by_dead_local_process, owner_token
from tickcast.service.feed.reconnect import REDIS_TRANSIENT, Backoff, is_retryable
from tickcast.service.live.balance import PATIENCE, Balancer, Decision, Snapshot, taken_by_others
from tickcast.service.live.service import SILENCE_SIGNALS, STOP_SIGNALS, Service
from tickcast.service.ops.config import Settings
from tickcast.service.ops.health import (
    MetricsServer,
    Readiness,
    RedisProbe,
    readiness_stale_s,
    serve_metrics,
)
from tickcast.service.ops.metrics import Metrics
from tickcast.service.tasks import cancel_and_wait
from tickcast.service.ticks import Instrument

log = logging.getLogger(__name__)

Role = Literal["worker", "ingest"]
LEASE_KIND: Final[Mapping[str, str]] = {"worker": "owner", "ingest": "ingester"}
"""The lease a pool member of each role takes on its instruments (:func:`keys.symbol_key`)."""

_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[1], string.format('%d', now + tonumber(ARGV[2])), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], 3 * tonumber(ARGV[2]))
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""


def members_key(prefix: str, role: str) -> str:
    """Key of the sorted set of a pool's members (token -> expiry, Redis ms).

    Examples
    --------
    >>> members_key("tickcast", "worker")
    'tickcast:{pool:worker}:members'
    """
    return f"{prefix}:{{pool:{role}}}:members"


def restrict(settings: Settings, names: AbstractSet[str]) -> Settings:
    """``settings`` with only the instruments in ``names`` (``venue:symbol``); sources left
    with none are left out.

    Examples
    --------
    >>> from tickcast.service.ops.config import load_settings
    >>> s = load_settings(None, {"exchange.name": ["sim", "sim:okx"]})
    >>> [str(i) for i in restrict(s, {"sim-okx:ETH/USDT:USDT"}).exchange.instruments()]
    ['sim-okx:ETH/USDT:USDT']
    """
    exchange = settings.exchange
    kept: dict[str, list[str]] = {}
    for source in exchange.sources():
        symbols = [
            s for s in exchange.symbols_of(source) if str(Instrument(source.label, s)) in names
        ]
        if symbols:
            kept[source.spec] = symbols
    narrowed = exchange.model_copy(update={"name": list(kept), "venue_symbols": kept})
    return settings.model_copy(update={"exchange": narrowed})


class Membership:
    """This member's entry in its pool's sorted set (see the module docstring).

    Parameters
    ----------
    client : redis.asyncio.Redis
        Bytes-mode client (:func:`~tickcast.service.bus.connection.connect`).
    key : str
        :func:`members_key`.
    token : str
        This member's owner token.
    ttl_s : float
        How long an entry lives without renewal (the lease's time to live).
    """

    def __init__(self, client: connection.AsyncClient, key: str, token: str, ttl_s: float) -> None:
        self.client = client
        self.key = key
        self.token = token
        self.ttl_ms = max(1, int(ttl_s * 1000))

    async def _call(self, join: bool) -> tuple[str, ...]:
        reply: Any = await self.client.eval(
            _HEARTBEAT, 1, self.key, self.token, self.ttl_ms, "1" if join else "0"
        )
        return tuple(sorted(m.decode() if isinstance(m, bytes) else str(m) for m in reply))

    async def renew(self) -> tuple[str, ...]:
        """Renew this member's entry, drop the expired ones; return the live members."""
        return await self._call(True)

    async def leave(self) -> None:
        """Remove this member's entry (when it stops)."""
        await self._call(False)


async def read_holders(
    client: connection.AsyncClient, prefix: str, kind: str, instruments: Sequence[Instrument]
) -> dict[str, str | None]:
    """Each instrument's lease holder (its ``kind`` key's token, ``None`` when free), in one
    pipelined round trip (one key per hash slot: also on a cluster)."""
    pipe = client.pipeline(transaction=False)
    for i in instruments:
        pipe.get(keys.symbol_key(prefix, i.venue, i.symbol, kind))
    replies = await pipe.execute()
    return {
        str(i): raw.decode() if isinstance(raw, bytes) else raw
        for i, raw in zip(instruments, replies, strict=True)
    }


class Pool:
    """One pool member: plans every round and runs a :class:`Service` on its share.

    Parameters
    ----------
    settings : Settings
        Every instrument of the pool (``exchange``), ``worker.lease_ttl_s`` (the round is a
        third of it), ``metrics``.
    redis_url : str
        Where the streams, leases and the pool live.
    role : {"worker", "ingest"}
        What each member runs.
    online : bool
        Live venues: market metadata from the venue's REST API (as :class:`Service`).
    stop_timeout_s : float
        Bound on each service's shutdown.
    patience : int
        Rounds in a row a giving back (or a free symbol another member should take) waits.
    rng : numpy.random.Generator, optional
        Jitter of the backoff after a failed service (default: a fresh generator).
    """

    def __init__(
        self,
        settings: Settings,
        redis_url: str,
        *,
        role: Role,
        online: bool = True,
        stop_timeout_s: float = 9.0,
        patience: int = PATIENCE,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.role = role
        self.online = online
        self.stop_timeout_s = stop_timeout_s
        self.instruments = tuple(settings.exchange.instruments())
        self.names = [str(i) for i in self.instruments]
        self.kind = LEASE_KIND[role]
        self.token = owner_token()
        self.ttl_s = settings.worker.lease_ttl_s
        self.metrics = Metrics(self.instruments, role=role)
        self.metrics_server: MetricsServer | None = None
        self.stale_s = readiness_stale_s(settings)
        self.service: Service | None = None
        self.serving: frozenset[str] = frozenset()
        """The instruments of the current service (held, or being taken)."""
        self.changes = 0
        """Services started so far."""
        self.planned = False
        """Whether a round has planned yet (a member holding nothing is then standing by)."""
        self._task: asyncio.Task[int] | None = None
        self._stop = asyncio.Event()
        self.balancer = Balancer(self.names, self.token, patience)
        rng = rng if rng is not None else np.random.default_rng()
        self._backoff = Backoff(self.period_s, max(30.0, self.period_s), rng)

    @property
    def period_s(self) -> float:
        """Time between rounds: a third of the lease's time to live."""
        return self.ttl_s / 3.0

    def request_stop(self) -> None:
        """Stop the pool: its service stops gracefully, the member leaves (signal-safe)."""
        self._stop.set()

    def silence(self, silent: bool) -> None:
        """Silence the current service's simulated exchanges (SIGUSR1), or not (SIGUSR2)."""
        if self.service is not None:
            self.service.silence(silent)

    def tick_clock(self) -> float:
        """For ``/readyz``: the service's latest tick; ``now`` for a member standing by."""
        if self.service is not None:
            return self.service.tick_clock()
        return time.monotonic() if self.planned and not self.serving else 0.0

    def positions(self) -> dict[Instrument, tuple[str, str]]:
        """The service's worker positions, for the lag metric (none between services)."""
        service = self.service
        return service.positions() if service is not None else {}

    # -- the loop ---------------------------------------------------------------------------

    async def run(self, *, handle_signals: bool = True) -> int:
        """Take part in the pool until :meth:`request_stop` (or SIGTERM/SIGINT/SIGHUP); return
        0.

        Raises
        ------
        redis.RedisError
            A command Redis refuses (ACL...): a configuration error.
        TickcastError
            What stops a service at its start: a symbol a venue does not list
            (``MarketError``), a checkpoint of other settings (``WorkerError``)...
        """
        loop = asyncio.get_running_loop()
        if handle_signals:
            for sig in STOP_SIGNALS:
                loop.add_signal_handler(sig, self.request_stop)
            for sig, silent in SILENCE_SIGNALS.items():
                loop.add_signal_handler(sig, self.silence, silent)
        client = connection.connect(self.redis_url, self.settings)
        membership = Membership(
            client, members_key(self.settings.redis.prefix, self.role), self.token, self.ttl_s
        )
        probes = self._start_metrics()
        log.info("pool %s: member %s of %d instruments", self.role, self.token, len(self.names))
        heartbeat = loop.create_task(self._heartbeat(membership), name="pool heartbeat")
        try:
            await self._rounds(client, membership)
            return 0
        finally:
            await self._end_service()
            await cancel_and_wait(heartbeat)
            with contextlib.suppress(redis.RedisError, OSError):
                await membership.leave()
            for sig in (*STOP_SIGNALS, *SILENCE_SIGNALS) if handle_signals else ():
                loop.remove_signal_handler(sig)
            if self.metrics_server is not None:
                self.metrics_server.stop()
            for probe in probes:
                probe.close()
            await client.aclose()

    async def _rounds(self, client: connection.AsyncClient, membership: Membership) -> None:
        """Plan and apply a round every :attr:`period_s` until stopped."""
        while not self._stop.is_set():
            delay = self.period_s
            if not await self._reap():
                delay = self._backoff.next_delay()  # the service failed: not at once again
            else:
                try:
                    snapshot = await self._look(client, membership)
                except REDIS_TRANSIENT as exc:
                    if not is_retryable(exc):
                        raise
                    log.warning("pool %s: Redis unreachable (%s); retrying", self.role, exc)
                else:
                    await self._apply(snapshot)
            await self._wait(delay)

    async def _heartbeat(self, membership: Membership) -> None:
        """Renew this member every :attr:`period_s` whatever the rounds are doing (a service
        that takes seconds to stop must not make the member look gone)."""
        while True:
            await asyncio.sleep(self.period_s)
            with contextlib.suppress(*REDIS_TRANSIENT, redis.RedisError, OSError):
                await membership.renew()  # (the rounds raise what is not transient)

    async def _wait(self, seconds: float) -> None:
        """Sleep ``seconds``, less when the pool stops or its service ends."""
        stop = asyncio.get_running_loop().create_task(self._stop.wait())
        waits: set[asyncio.Task[Any]] = {stop}
        if self._task is not None:
            waits.add(self._task)
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(stop)

    async def _look(self, client: connection.AsyncClient, membership: Membership) -> Snapshot:
        """Renew this member and read the others and every lease holder; a dead process of
        this host is neither a member nor a holder."""
        members = await membership.renew()
        prefix = self.settings.redis.prefix
        holders = await read_holders(client, prefix, self.kind, self.instruments)
        alive = tuple(m for m in members if not held_by_dead_local_process(m))
        free = {
            name: None if holder is None or held_by_dead_local_process(holder) else holder
            for name, holder in holders.items()
        }
        return Snapshot(alive, free)

    async def _apply(self, snapshot: Snapshot) -> None:
        """Plan this round and change the service when the plan says so."""
        lost = taken_by_others(snapshot, self.token, self.serving)
        if lost and self._ready():
            return  # its next renewal stops it, without a checkpoint of what it lost
        if lost:
            log.warning("pool %s: %s taken by another member meanwhile", self.role, lost)
            await self._end_service()  # it waits for them, holding none: plan without it
        decision = self.balancer.decide(snapshot, self.serving)
        self.planned = True
        if decision.wanted != self.serving:
            await self._switch(decision)

    def _ready(self) -> bool:
        """Whether the service holds its leases (it is running, not waiting for them)."""
        return self.service is not None and self.service.ready.is_set()

    async def _reap(self) -> bool:
        """Handle a service that ended on its own; False when it failed (a backoff follows).

        Raises what ended it unless it was transient (Redis or the network out of reach): a
        configuration error, or a bug, ends the pool.
        """
        task = self._task
        if task is None or not task.done():
            if task is not None and self._ready():
                self._backoff.reset()
            return True
        try:
            code = task.result()
        except Exception as exc:
            if not is_retryable(exc):
                raise
            log.error("pool %s: the service failed (%s)", self.role, exc)
        else:  # a lease taken by another process (after a long Redis outage...)
            log.error("pool %s: the service stopped (exit code %d)", self.role, code)
        await self._end_service()
        return False

    async def _switch(self, decision: Decision) -> None:
        """Replace the service by one on the decision's instruments."""
        wanted = decision.wanted
        log.info(
            "pool %s: %d instruments -> %d (share %d; taking %s; giving back %s)",
            self.role,
            len(self.serving),
            len(wanted),
            decision.share,
            ", ".join(sorted(wanted - self.serving)) or "none",
            ", ".join(sorted(self.serving - wanted)) or "none",
        )
        await self._end_service()
        if wanted:
            self._start_service(wanted)

    def _start_service(self, wanted: frozenset[str]) -> None:
        service = Service(
            restrict(self.settings, wanted),
            self.redis_url,
            ingest=self.role == "ingest",
            work=self.role == "worker",
            stop_timeout_s=self.stop_timeout_s,
            stale_s=self.stale_s,
            online=self.online,
            metrics=self.metrics,
            token=self.token,
        )
        self.changes += 1
        self.service, self.serving = service, wanted
        self._task = asyncio.get_running_loop().create_task(
            service.run(handle_signals=False), name=f"pool service {self.changes}"
        )

    async def _end_service(self) -> None:
        """Stop the service gracefully (checkpoint or flush, release its leases) and keep its
        counters; its objects become collectable again."""
        service, task = self.service, self._task
        self.service, self._task, self.serving = None, None, frozenset()
        if service is None or task is None:
            return
        service.request_stop()
        with contextlib.suppress(Exception):
            await asyncio.shield(task)
        self.metrics.retire()
        gc.unfreeze()  # the service froze the heap it started with (settle_heap)

    def _start_metrics(self) -> list[Readiness | RedisProbe]:
        """Serve the process's metrics for its whole life (when enabled)."""
        if not self.settings.metrics.enabled:
            return []
        positions = self.positions if self.role == "worker" else None
        self.metrics_server, probes = serve_metrics(
            self.metrics, self.settings, self.redis_url, self.tick_clock, self.stale_s, positions
        )
        return probes
