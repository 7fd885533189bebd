"""The tick writer: ticks -> their per-symbol Redis streams, one pipelined batch per call,
idempotent when re-sent."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import hiredis
import orjson
import redis
import redis.asyncio
import redis.asyncio as redis_asyncio
from redis._parsers.base import BaseParser

from tickcast.service.bus.cluster import (
    ClusterRoutes,
    slot_of,
)
from tickcast.service.bus.codec import (
    JSON_NULL,
    T_FIELD,
    V_FIELD,
    V_VALUE,
    BusDecodeError,
    BusEncodeError,
    decode,
    encode_tick,
)
from tickcast.service.bus.connection import AsyncClient
from tickcast.service.bus.keys import id_key, ticks_key
from tickcast.service.bus.resp import DUPLICATE_ID, Lane, bulk
from tickcast.service.ops.config import Settings
from tickcast.service.ticks import TRADE, Tick

log = logging.getLogger(__name__)

ReplyError = hiredis.ReplyError

FIELDS: Final = bulk(V_FIELD) + bulk(V_VALUE) + bulk(T_FIELD)
"""``v 1 t`` packed: the fields between an entry's ID and its blob."""
TRADE_SCAN: Final = 1000
"""Entries :meth:`TickWriter.last_trade_ids` looks back through for a stream's latest trade."""
LOSS_WINDOW: Final = 256
"""Entry IDs acknowledged per stream kept, on a cluster, to count what a failover lost (a
replica is normally well under a batch behind its master; more lost than this is counted as
this many)."""


@dataclass
class WriterStats:
    """Counters of a :class:`TickWriter`."""

    written: int = 0
    """Ticks Redis stored."""
    rejected: int = 0
    """Ticks that could not be encoded (non-finite floats, integers over 64 bits), skipped."""
    batches: int = 0
    """Batches sent that Redis executed."""
    duplicates: int = 0
    """Entries of a re-sent batch that Redis had already stored (not stored twice)."""
    lost: int = 0
    """Ticks a Redis Cluster acknowledged and then lost: their master died (a failover)
    before its replica copied them. A gap in the stream, counted, never silent."""


class WriteTap(Protocol):
    """What a :class:`TickWriter` tells of its batches (see :attr:`TickWriter.tap`)."""

    def written(self, ticks: Sequence[Tick], ids: Sequence[bytes]) -> None:
        """Redis stored ``ticks``, in order, as the stream entries ``ids``."""
        ...

    def failed(self) -> None:
        """A batch failed (part of it may be in Redis unacknowledged)."""
        ...


@dataclass
class Batch:
    """Ticks packed for Redis by :meth:`TickWriter.prepare`: their XADDs, with the entry IDs
    fixed once, so that sending the batch again stores nothing twice."""

    ticks: list[Tick]
    """The ticks to store, in order (without ``rejected``)."""
    ids: list[bytes]
    """The stream entry ID of each tick, ``b"<ms>-<seq>"``."""
    payload: bytes
    """The packed XADD commands, one per tick."""
    rejected: list[Tick] = field(default_factory=list)
    """Ticks that cannot be encoded: counted, never sent."""
    commands: list[bytes] = field(default_factory=list)
    """Each tick's packed XADD (``payload`` is their concatenation): a cluster's are sent to
    the master of each stream's slot."""


class TickWriter:
    """Write ticks to their per-symbol streams, one batch of commands (no MULTI) at a time.

    Every entry gets an explicit ID, fixed when the batch is prepared: ``<ms>-0`` with ``ms`` the
    tick's receive time in milliseconds when that is past the stream's last ID, else the last
    ID's millisecond with the next sequence number (IDs strictly increase per stream, whatever
    the clock does). A batch re-sent after a
    failure (a timeout after which Redis executed the first attempt anyway) is therefore
    idempotent: Redis refuses the entries it already has ("equal or smaller than the target
    stream top item"), which are counted in ``stats.duplicates`` and not stored twice. The last
    ID of a stream is read from Redis (``XINFO STREAM``) before the first write to it, and again
    after :meth:`forget_tops` (another writer may have written since).

    The XADDs are packed by hand (their constant parts cached per stream) and sent on a
    :class:`~tickcast.service.bus.resp.Lane` of the client: one buffer out, the replies parsed by
    hiredis.

    On a Redis Cluster (a cluster client), each XADD goes to the master of its stream's slot
    (:class:`~tickcast.service.bus.cluster.ClusterRoutes`: one lane per master, the parts of a
    batch sent concurrently, ``ASK`` followed, ``MOVED`` re-routed after reading the slot map;
    a lane that fails makes the next attempt read the map first, so a promoted replica is
    found). The last :data:`LOSS_WINDOW` IDs acknowledged per stream are kept: when a slot's
    master changed or failed, its streams' newest entries are read before writing on, and the
    acknowledged entries above them, lost with the old master, are counted in ``stats.lost``
    and logged (one warning). New IDs stay above the lost ones (the stream's last ID is not
    read again), hence above the new top.

    Parameters
    ----------
    redis
        An asyncio client (see :func:`connect`), plain or cluster.
    settings
        ``redis.prefix`` names the keys, ``redis.tick_maxlen`` bounds each stream (``~``).
    """

    def __init__(self, redis: AsyncClient, settings: Settings) -> None:
        self.redis = redis
        self.prefix = settings.redis.prefix
        self.maxlen = settings.redis.tick_maxlen
        self.stats = WriterStats()
        self._keys: dict[tuple[str, str], str] = {}
        self._streams: dict[tuple[str, str], list[Any]] = {}
        """Per stream: ``[packed XADD head, ms, seq]`` of its last entry ID."""
        self._lane: Lane | None = None
        self._routes: ClusterRoutes | None = None
        if isinstance(redis, redis_asyncio.Redis):
            self._lane = Lane(redis)
        else:
            self._routes = ClusterRoutes(redis)
        self._slots: dict[tuple[str, str], int] = {}
        self._acked: dict[tuple[str, str], deque[bytes]] = {}
        """Cluster: per stream, the last :data:`LOSS_WINDOW` entry IDs Redis acknowledged."""
        self.tap: WriteTap | None = None
        """Told of every batch Redis acknowledged, with its entry IDs, and of every failure
        (:class:`~tickcast.service.live.handoff.Handoff`)."""

    def key(self, venue: str, symbol: str) -> str:
        """The (cached) tick stream key of ``symbol`` on ``venue``."""
        try:
            return self._keys[venue, symbol]
        except KeyError:
            key = self._keys[venue, symbol] = ticks_key(self.prefix, venue, symbol)
            return key

    def forget_tops(self) -> None:
        """Read each stream's last ID from Redis again before writing to it (after a lease
        was lost and taken back: another writer may have added entries)."""
        self._streams.clear()

    async def _stream(self, venue: str, symbol: str) -> list[Any]:
        """``[head, ms, seq]`` of a stream met for the first time: its packed ``XADD <key>
        MAXLEN ~ <maxlen>`` and its last entry ID, read from Redis (0-0 for a new stream)."""
        key = self.key(venue, symbol)
        try:
            info: Any = await self.redis.xinfo_stream(key)
            ms, seq = id_key(info["last-generated-id"])
        except redis.ResponseError as exc:
            if "no such key" not in str(exc).lower():
                raise
            ms, seq = 0, 0
        fields = (b"XADD", key.encode(), b"MAXLEN", b"~", b"%d" % self.maxlen)
        head = b"*10\r\n" + b"".join(map(bulk, fields))
        state = self._streams[venue, symbol] = [head, ms, seq]
        return state

    async def last_trade_ids(self, venue: str, symbols: Sequence[str]) -> dict[str, int]:
        """The numeric id of the latest trade stored for each of ``symbols`` on ``venue``,
        among each stream's last :data:`TRADE_SCAN` entries (symbols with none are left out):
        where a restarted feed's trade-id sequence resumes, so that the trades nobody received
        in between are counted as a gap."""
        pipe = self.redis.pipeline(transaction=False)
        for symbol in symbols:
            pipe.xrevrange(self.key(venue, symbol), count=TRADE_SCAN)
        found: dict[str, int] = {}
        for symbol, entries in zip(symbols, await pipe.execute(), strict=True):
            for _, fields in entries or ():
                try:
                    tick = decode(fields)
                except BusDecodeError:
                    continue
                if tick.kind == TRADE:
                    if tick.trade_id.isdigit():
                        found[symbol] = int(tick.trade_id)
                    break
        return found

    async def prepare(self, ticks: Sequence[Tick]) -> Batch:
        """Encode ``ticks`` and fix their entry IDs (reading unknown streams' last IDs first).

        Raises
        ------
        redis.RedisError
            Reading a new stream's last ID failed (prepare the batch again).
        """
        batch = Batch([], [], b"")
        streams, parts, ids = self._streams, [], batch.ids
        dumps = orjson.dumps
        for tick in ticks:
            try:
                blob = dumps(tuple(tick))
                if JSON_NULL in blob:
                    blob = encode_tick(tick)
            except (BusEncodeError, TypeError):  # TypeError: orjson (an int over 64 bits)
                self.stats.rejected += 1
                batch.rejected.append(tick)
                log.debug("skipping unencodable tick %r", tick)
                continue
            stream = streams.get((tick.venue, tick.symbol))
            if stream is None:
                stream = await self._stream(tick.venue, tick.symbol)
            recv_ms = tick.recv_ns // 1_000_000
            if recv_ms > stream[1]:
                stream[1], stream[2] = recv_ms, 0
            else:
                stream[2] += 1
            entry_id = b"%d-%d" % (stream[1], stream[2])
            parts.append(
                b"%b$%d\r\n%b\r\n%b$%d\r\n%b\r\n"
                % (stream[0], len(entry_id), entry_id, FIELDS, len(blob), blob)
            )
            ids.append(entry_id)
            batch.ticks.append(tick)
        batch.payload = b"".join(parts)
        batch.commands = parts
        return batch

    async def send(self, batch: Batch) -> None:
        """XADD every tick of ``batch``; the entries Redis already has are counted as
        ``duplicates``. Redis errors propagate unchanged (some of the batch may have been
        stored: send the same batch again)."""
        if not batch.ticks:
            return
        tap = self.tap
        try:
            if self._lane is not None:
                replies = await self._lane.call(batch.payload, len(batch.ticks), check=False)
            else:
                replies = await self._route(batch)
            refused = [i for i, r in enumerate(replies) if type(r) is ReplyError]
            for i in refused:
                if DUPLICATE_ID not in str(replies[i]):
                    raise BaseParser.parse_error(str(replies[i]))  # type: ignore[no-untyped-call]
        except BaseException:
            if tap is not None:
                tap.failed()
            raise
        self.stats.written += len(replies) - len(refused)
        self.stats.duplicates += len(refused)
        self.stats.batches += 1
        if tap is not None:
            if not refused:
                tap.written(batch.ticks, batch.ids)
            else:
                kept = sorted(set(range(len(replies))) - set(refused))
                tap.written([batch.ticks[i] for i in kept], [batch.ids[i] for i in kept])

    async def write(self, ticks: Sequence[Tick]) -> list[Tick]:
        """:meth:`prepare` and :meth:`send` ``ticks`` once; return those that cannot be encoded
        (to retry a failed write without storing anything twice, send the prepared batch)."""
        batch = await self.prepare(ticks)
        await self.send(batch)
        return batch.rejected

    # -- on a Redis Cluster -----------------------------------------------------------------

    def _slot(self, venue: str, symbol: str) -> int:
        """The (cached) hash slot of ``symbol``'s stream."""
        try:
            return self._slots[venue, symbol]
        except KeyError:
            slot = self._slots[venue, symbol] = slot_of(self.key(venue, symbol))
            return slot

    async def _route(self, batch: Batch) -> list[Any]:
        """Send ``batch``'s XADDs to the masters of their slots; return the replies in order
        (error replies as ``hiredis.ReplyError``). Streams of slots whose master changed are
        checked for lost entries first."""
        routes = self._routes
        assert routes is not None
        slot = self._slot
        slots = [slot(t.venue, t.symbol) for t in batch.ticks]
        replies = await routes.send(slots, batch.commands, lambda: self._check_losses(routes))
        self._remember(batch, replies)
        return replies

    def _remember(self, batch: Batch, replies: list[Any]) -> None:
        """Keep the IDs Redis acknowledged, per stream (the last :data:`LOSS_WINDOW`)."""
        acked = self._acked
        for tick, entry_id, reply in zip(batch.ticks, batch.ids, replies, strict=True):
            if type(reply) is ReplyError:
                continue
            window = acked.get((tick.venue, tick.symbol))
            if window is None:
                window = acked[tick.venue, tick.symbol] = deque(maxlen=LOSS_WINDOW)
            window.append(entry_id)

    async def _check_losses(self, routes: ClusterRoutes) -> None:
        """For the streams of the slots whose master changed or failed: count the entries
        acknowledged above the stream's newest one now (lost with the old master)."""
        suspect = routes.take_suspect()
        if not suspect:
            return
        streams = [s for s, ids in self._acked.items() if ids and self._slots[s] in suspect]
        if not streams:
            return
        pipe = self.redis.pipeline(transaction=False)
        for venue, symbol in streams:
            pipe.xrevrange(self.key(venue, symbol), count=1)
        try:
            tops = await pipe.execute()
        except BaseException:
            routes.suspect |= suspect  # checked at the next attempt
            raise
        found: list[str] = []
        for stream, top in zip(streams, tops, strict=True):
            top_id = id_key(top[0][0]) if top else (0, 0)
            window = self._acked[stream]
            lost = sum(1 for entry_id in window if id_key(entry_id) > top_id)
            if lost:
                self.stats.lost += lost
                newest = window[-1].decode()
                found.append(
                    f"{stream[0]} {stream[1]}: {lost}{'+' if lost == len(window) else ''} "
                    f"(up to {newest}, the stream ends at {top_id[0]}-{top_id[1]})"
                )
            window.clear()
        if found:
            log.warning(
                "Redis Cluster failover lost ticks it had acknowledged (a gap): %s",
                "; ".join(found),
            )
