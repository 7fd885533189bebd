"""The tick writer: ticks -> their per-symbol Redis streams, one pipelined batch per call."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import orjson
import redis.asyncio

from tickcast.service.bus.codec import (
    JSON_NULL,
    T_FIELD,
    V_FIELD,
    V_VALUE,
    BusEncodeError,
    encode_tick,
)
from tickcast.service.bus.keys import ticks_key
from tickcast.service.bus.resp import Lane, bulk
from tickcast.service.ops.config import Settings
from tickcast.service.ticks import Tick

log = logging.getLogger(__name__)


@dataclass
class WriterStats:
    """Counters of a :class:`TickWriter`."""

    written: int = 0
    """Ticks sent in pipelines that Redis executed."""
    rejected: int = 0
    """Ticks that could not be encoded (non-finite floats), skipped."""
    batches: int = 0
    """Pipelines executed."""


class WriteTap(Protocol):
    """What a :class:`TickWriter` tells of its batches (see :attr:`TickWriter.tap`)."""

    def written(self, ticks: Sequence[Tick], ids: Sequence[bytes]) -> None:
        """Redis acknowledged ``ticks``, in order, as the stream entries ``ids``."""
        ...

    def failed(self) -> None:
        """A batch failed (part of it may be in Redis unacknowledged)."""
        ...


class TickWriter:
    """Write ticks to their per-symbol streams, one batch of commands (no MULTI) per call.

    The XADDs are packed by hand (their constant head cached per stream) and sent on a
    :class:`~tickcast.service.bus.resp.Lane` of the client: one buffer out, the replies parsed by
    hiredis.

    Parameters
    ----------
    redis
        An asyncio client (see :func:`connect`).
    settings
        ``redis.prefix`` names the keys, ``redis.tick_maxlen`` bounds each stream (``~``).
    """

    def __init__(self, redis: redis.asyncio.Redis, settings: Settings) -> None:
        self.redis = redis
        self.prefix = settings.redis.prefix
        self.maxlen = settings.redis.tick_maxlen
        self.stats = WriterStats()
        self._keys: dict[tuple[str, str], str] = {}
        self._heads: dict[tuple[str, str], bytes] = {}
        self._lane = Lane(redis)
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

    def _head(self, venue: str, symbol: str) -> bytes:
        """``XADD <key> MAXLEN ~ <maxlen> * v 1 t`` packed, without the blob."""
        key = self.key(venue, symbol).encode()
        fields = (b"XADD", key, b"MAXLEN", b"~", b"%d" % self.maxlen, b"*", V_FIELD, V_VALUE)
        head = self._heads[venue, symbol] = b"*10\r\n" + b"".join(map(bulk, (*fields, T_FIELD)))
        return head

    async def write(self, ticks: Sequence[Tick]) -> list[Tick]:
        """XADD every tick (``MAXLEN ~``) in one batch; Redis errors propagate unchanged.

        Ticks that cannot be encoded are skipped, counted in ``stats.rejected`` and returned
        (the list is empty when every tick was written). When an error is raised, some of the
        batch may have been written (no transaction).
        """
        rejected: list[Tick] = []
        if not ticks:
            return rejected
        heads, parts = self._heads, []
        dumps = orjson.dumps
        for tick in ticks:
            try:
                blob = dumps(tuple(tick))
                if JSON_NULL in blob:
                    blob = encode_tick(tick)
            except (BusEncodeError, TypeError):  # TypeError: orjson (an int over 64 bits)
                self.stats.rejected += 1
                rejected.append(tick)
                log.debug("skipping unencodable tick %r", tick)
                continue
            head = heads.get((tick.venue, tick.symbol)) or self._head(tick.venue, tick.symbol)
            parts.append(b"%b$%d\r\n%b\r\n" % (head, len(blob), blob))
        if not parts:
            return rejected
        tap = self.tap
        try:
            ids = await self._lane.call(b"".join(parts), len(parts))
        except BaseException:
            if tap is not None:
                tap.failed()
            raise
        self.stats.written += len(parts)
        self.stats.batches += 1
        if tap is not None:
            if rejected:
                refused = {id(t) for t in rejected}
                ticks = [t for t in ticks if id(t) not in refused]
            tap.written(ticks, ids)
        return rejected
