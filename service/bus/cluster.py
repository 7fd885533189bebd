"""Routing the fast lanes on a Redis Cluster: each symbol's commands to the master of its slot.

Every key of a symbol carries the hash tag ``{<venue>:<SYMBOLID>}``
(:mod:`~tickcast.service.bus.keys`), so all of them live in one slot (``redis.crc.key_slot`` of
the tag) and one master serves them.
The hot paths (:class:`~tickcast.service.bus.writer.TickWriter`,
:class:`~tickcast.service.live.workerlane.ClusterWorkerLane`) pack their commands as on a single
Redis; :class:`ClusterRoutes` sends them to the masters that own their slots:

- one :class:`~tickcast.service.bus.resp.Lane` per master, on a connection of redis-py's own
  :class:`~redis.asyncio.cluster.ClusterNode` for it (the cluster client's credentials, TLS and
  timeouts; closed with the cluster client);
- the slot map is redis-py's (``nodes_manager``); the owner of each slot used is cached here,
  and read again (:meth:`ClusterRoutes.refresh`) when a lane failed or a node answered
  ``MOVED``, before the next command;
- a batch is split per master and every part is written before any reply is read (the masters
  work at once; :meth:`ClusterRoutes.post`, :meth:`ClusterRoutes.collect`,
  :meth:`ClusterRoutes.round`);
  an ``ASK`` reply (a slot being migrated) is followed at once (``ASKING`` + the command, on the
  node named); a ``MOVED`` reply is left in place for the caller, who refreshes the map and
  sends that command again (XADDs with explicit IDs are idempotent: Redis refuses what it
  already has).

After a refresh, :attr:`ClusterRoutes.suspect` lists the slots whose master changed or failed
since the previous one: a master that died before its replica had copied its last writes lost
them, and the writer compares those slots' streams with what it had acknowledged
(:meth:`~tickcast.service.bus.writer.TickWriter.send`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

import hiredis
import redis
import redis.asyncio.cluster
from redis.crc import key_slot
from redis.exceptions import RedisClusterException

from tickcast.service.bus.resp import Lane

log = logging.getLogger(__name__)

ASKING: Final = b"*1\r\n$6\r\nASKING\r\n"
MAX_ROUNDS: Final = 5
"""Rounds of :meth:`ClusterRoutes.round` :meth:`ClusterRoutes.send` tries while masters
answer ``MOVED``."""


class SlotMapError(redis.ConnectionError):
    """The cluster's slot map could not be read, or names no reachable master for a slot (a
    failover in progress): retryable, like a lost connection."""


def slot_of(key: str | bytes) -> int:
    """The hash slot of ``key`` (its ``{...}`` tag's).

    Examples
    --------
    >>> slot_of("tickcast:{sim:BTCUSDT}:ticks") == slot_of(b"tickcast:{sim:BTCUSDT}:ckpt")
    True
    """
    return int(key_slot(key.encode() if isinstance(key, str) else key))


def redirection(reply: Any) -> tuple[str, int, str] | None:
    """``(kind, slot, "host:port")`` of a ``MOVED`` or ``ASK`` error reply, else None.

    Examples
    --------
    >>> redirection(hiredis.ReplyError("MOVED 3999 127.0.0.1:6381"))
    ('MOVED', 3999, '127.0.0.1:6381')
    >>> redirection(b"1-0") is None, redirection(hiredis.ReplyError("ERR no")) is None
    (True, True)
    """
    if type(reply) is not hiredis.ReplyError:
        return None
    text = str(reply)
    if not text.startswith(("MOVED ", "ASK ")):
        return None
    kind, slot, address = text.split(" ", 2)
    return kind, int(slot), address


class ClusterRoutes:
    """Per-master lanes of a cluster client, and where each slot goes; see the module docstring.

    Parameters
    ----------
    cluster : redis.asyncio.cluster.RedisCluster
        The client (:func:`~tickcast.service.bus.connection.connect`); its nodes provide the
        lanes' connections.
    tolerate : str, optional
        Passed to each :class:`~tickcast.service.bus.resp.Lane`.
    """

    def __init__(
        self, cluster: redis.asyncio.cluster.RedisCluster, *, tolerate: str | None = None
    ) -> None:
        self.cluster = cluster
        self.tolerate = tolerate
        self.lanes: dict[str, Lane] = {}
        """The lane of each master, by node name (``host:port``)."""
        self.stale = True
        """Whether the slot map must be read before the next command."""
        self.suspect: set[int] = set()
        """Slots whose master changed or failed at a refresh, until the caller takes them."""
        self.refreshes = 0
        """Slot map reads after the first."""
        self.redirects = 0
        """``MOVED`` and ``ASK`` replies met."""
        self._owner: dict[int, str] = {}
        self._failed: set[str] = set()
        self._started = False

    # -- the slot map -----------------------------------------------------------------------

    async def ensure(self) -> None:
        """Read the slot map if it is stale (first use, a failed lane, a ``MOVED``)."""
        if self.stale:
            await self.refresh()

    async def refresh(self) -> None:
        """Read the slot map from the cluster; add the slots whose master changed or failed
        to :attr:`suspect`; drop the lanes of nodes that no longer serve a slot used (once
        they owe no reply).

        Raises
        ------
        SlotMapError
            No node answered, or the map leaves a used slot without a master.
        """
        try:
            if not self._started:
                await self.cluster.initialize()
                self._started = True
            else:
                await self.cluster.nodes_manager.initialize()
                self.refreshes += 1
        except RedisClusterException as exc:
            raise SlotMapError(f"cannot read the cluster's slot map: {exc}") from exc
        before, failed = self._owner, self._failed
        self._owner, self._failed = {}, set()
        self.stale = False
        for slot, old in before.items():
            try:
                new = self.owner(slot)
            except SlotMapError:
                new = ""  # (stale again: read at the next command)
            if new != old or old in failed:
                self.suspect.add(slot)
        serving = set(self._owner.values())
        for name in [n for n, lane in self.lanes.items() if n not in serving and not lane.owed]:
            await self.lanes.pop(name).close()  # (one that owes replies is read first)

    def owner(self, slot: int) -> str:
        """The name (``host:port``) of the master serving ``slot``, as last read."""
        name = self._owner.get(slot)
        if name is None:
            try:
                node = self.cluster.nodes_manager.get_node_from_slot(slot)
            except (RedisClusterException, AttributeError) as exc:
                self.stale = True
                raise SlotMapError(f"no master known for slot {slot}: {exc}") from exc
            name = self._owner[slot] = node.name
        return name

    def lane(self, name: str) -> Lane:
        """The lane of node ``name`` (made on first use)."""
        lane = self.lanes.get(name)
        if lane is None:
            node = self.cluster.nodes_manager.nodes_cache.get(name)
            if node is None:
                self.stale = True
                raise SlotMapError(f"node {name} is not in the cluster's slot map")
            lane = self.lanes[name] = Lane(node, tolerate=self.tolerate)
        return lane

    def failed(self, name: str) -> None:
        """Node ``name``'s lane failed: read the slot map before the next command, and count
        its slots as suspect then."""
        self._failed.add(name)
        self.stale = True

    def take_suspect(self) -> set[int]:
        """:attr:`suspect`, emptied."""
        out, self.suspect = self.suspect, set()
        return out

    async def aclose(self) -> None:
        """Drop every lane's connection."""
        for lane in self.lanes.values():
            await lane.close()
        self.lanes.clear()

    # -- sending ----------------------------------------------------------------------------

    def plan(self, slots: Sequence[int]) -> dict[str, list[int]]:
        """The indexes of ``slots`` grouped by the master serving each, in order."""
        groups: dict[str, list[int]] = {}
        owner = self.owner
        for i, slot in enumerate(slots):
            name = owner(slot)
            group = groups.get(name)
            if group is None:
                groups[name] = [i]
            else:
                group.append(i)
        return groups

    def post(self, batches: Mapping[str, tuple[bytes, int]]) -> dict[str, tuple[bytes, int]]:
        """Write each node's batch (``data``, ``n`` commands) now on its lane, without
        waiting: every master works on its part at once. Return the batches not written (a
        lane not connected yet): :meth:`collect` sends them."""
        left: dict[str, tuple[bytes, int]] = {}
        for name, (data, n) in batches.items():
            lane = self.lanes.get(name)
            if lane is None or not lane.send(data, n):
                left[name] = (data, n)
        return left

    async def collect(
        self, names: Sequence[str], left: Mapping[str, tuple[bytes, int]], extra_s: float = 0.0
    ) -> dict[str, list[Any] | Exception]:
        """Every owed reply of the lanes of ``names`` (after sending their ``left`` batch),
        error replies as ``hiredis.ReplyError``; a node that fails gives its exception, and
        the slot map is read again before the next command."""
        out: dict[str, list[Any] | Exception] = {}
        for name in names:
            data, n = left.get(name, (b"", 0))
            try:
                out[name] = await self.lane(name).call(data, n, extra_s, owed=True, check=False)
            except Exception as exc:
                self.failed(name)
                out[name] = exc
        return out

    async def send(
        self,
        slots: Sequence[int],
        commands: Sequence[bytes],
        before: Callable[[], Awaitable[None]] | None = None,
    ) -> list[Any]:
        """:meth:`round` again for the commands answered ``MOVED``, with the slot map read
        again in between, until none is (``before()`` runs ahead of each round, once the
        map is current); the replies in order, error replies as ``hiredis.ReplyError``.

        Raises
        ------
        SlotMapError
            Slots still moved after :data:`MAX_ROUNDS` rounds; and what :meth:`round` raises.
        """
        replies: list[Any] = [None] * len(commands)
        todo = list(range(len(commands)))
        for _ in range(MAX_ROUNDS):
            if not todo:
                return replies
            await self.ensure()
            if before is not None:
                await before()
            got = await self.round([slots[i] for i in todo], [commands[i] for i in todo])
            moved = []
            for i, reply in zip(todo, got, strict=True):
                replies[i] = reply
                if redirection(reply) is not None:
                    moved.append(i)
            todo = moved
        if todo:
            raise SlotMapError(f"slots kept moving after {MAX_ROUNDS} reads of the slot map")
        return replies

    async def round(
        self, slots: Sequence[int], commands: Sequence[bytes], extra_s: float = 0.0
    ) -> list[Any]:
        """Send each packed command to the master of its slot (one batch per master, all in
        flight at once) and return the replies in order, error replies as
        ``hiredis.ReplyError`` (never raised). ``ASK`` replies are followed; ``MOVED`` ones
        are returned (the map is then stale: :meth:`ensure`, and send those again). The lanes
        must owe nothing before (replies of :meth:`post` not collected).

        Raises
        ------
        redis.ConnectionError, redis.TimeoutError, SlotMapError
            A master could not be reached (the others' commands were sent: some may be
            stored); the slot map is read again before the next round.
        """
        await self.ensure()
        groups = self.plan(slots)
        batches = {
            name: (b"".join([commands[i] for i in idx]), len(idx)) for name, idx in groups.items()
        }
        for name in batches:
            self.lane(name)
        results = await self.collect(list(batches), self.post(batches), extra_s)
        replies: list[Any] = [None] * len(commands)
        error: Exception | None = None
        asks: list[tuple[int, str]] = []
        for name, result in results.items():
            if isinstance(result, Exception):
                error = error or result
                continue
            for i, reply in zip(groups[name], result, strict=True):
                replies[i] = reply
                moved = redirection(reply)
                if moved is not None:
                    self.redirects += 1
                    if moved[0] == "ASK":
                        asks.append((i, moved[2]))
                    else:
                        self.stale = True
        if error is not None:
            raise error
        for i, address in asks:
            replies[i] = await self.ask(address, commands[i], extra_s)
        return replies

    async def ask(self, address: str, command: bytes, extra_s: float = 0.0) -> Any:
        """``ASKING`` + ``command`` on the node at ``address`` (importing the slot): the
        command's reply (an error reply as ``hiredis.ReplyError``)."""
        try:
            lane = self.lane(address)
        except SlotMapError:
            await self.refresh()  # a node added since the map was read
            lane = self.lane(address)
        try:
            _, reply = await lane.call(ASKING + command, 2, extra_s, check=False)
        except BaseException:
            self.failed(address)
            raise
        return reply
