"""Reading tick streams back: XREAD from stream IDs on, and whole-stream XRANGE pages."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import redis
import redis.asyncio
from redis.typing import KeyT, StreamIdT

from tickcast.service.bus.codec import BusDecodeError, decode
from tickcast.service.bus.connection import AsyncClient
from tickcast.service.bus.keys import ticks_key
from tickcast.service.ops.config import Settings
from tickcast.service.ticks import Tick

log = logging.getLogger(__name__)


class StreamTick(NamedTuple):
    """One tick read from a stream: its unified symbol, stream entry ID and the tick."""

    symbol: str
    stream_id: str
    tick: Tick


@dataclass
class ReaderStats:
    """Counters of a :class:`TickReader`."""

    read: int = 0
    """Ticks decoded and returned."""
    undecodable: int = 0
    """Entries skipped because they did not decode (counted, logged at debug)."""


def _entries(reply: Any) -> Iterator[tuple[str, list[Any]]]:
    """Normalise an XREAD reply (RESP2 list or RESP3 dict) to (key, entries) pairs."""
    if not reply:
        return
    pairs = reply.items() if isinstance(reply, dict) else reply
    for key, entries in pairs:
        name = key.decode() if isinstance(key, bytes) else str(key)
        yield name, entries


class TickReader:
    """Read ticks from stream IDs on (XREAD), skipping and counting undecodable entries.

    ``positions`` holds, per stream key, the ID of the last entry seen (decodable or not):
    pass it back to :meth:`read` to continue where the last read stopped.
    """

    def __init__(self, redis: AsyncClient, settings: Settings) -> None:
        self.redis = redis
        self.prefix = settings.redis.prefix
        self._max_block_ms = int(settings.redis.socket_timeout_s * 1000)
        self.positions: dict[str, str] = {}
        self.stats = ReaderStats()

    def key(self, venue: str, symbol: str) -> str:
        """Tick stream key of ``symbol`` on ``venue`` under this reader's prefix."""
        return ticks_key(self.prefix, venue, symbol)

    async def read(
        self, streams: Mapping[str, str], count: int = 1000, block_ms: int | None = None
    ) -> list[StreamTick]:
        """Return up to ``count`` ticks per stream after the given IDs (``"0-0"`` = start).

        Parameters
        ----------
        streams
            Stream key -> last ID already processed (exclusive).
        count
            Most entries per stream.
        block_ms
            Wait up to this long (ms, > 0 and below the socket timeout) when nothing is new;
            ``None`` returns at once.
        """
        if block_ms is not None and not 0 < block_ms < self._max_block_ms:
            raise ValueError(
                f"block_ms must be in (0, {self._max_block_ms}) (redis.socket_timeout_s)"
            )
        if not streams:
            return []
        request: dict[KeyT, StreamIdT] = {key: last for key, last in streams.items()}
        reply: Any = await self.redis.xread(request, count=count, block=block_ms)
        out: list[StreamTick] = []
        for key, entries in _entries(reply):
            for raw_id, fields in entries:
                stream_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                self.positions[key] = stream_id
                try:
                    tick = decode(fields)
                except BusDecodeError as exc:
                    self.stats.undecodable += 1
                    log.debug("skipping undecodable entry %s %s: %s", key, stream_id, exc)
                    continue
                out.append(StreamTick(tick.symbol, stream_id, tick))
        self.stats.read += len(out)
        return out


def read_range(
    client: redis.Redis, key: str, start: str = "-", end: str = "+", count: int | None = None
) -> list[tuple[str, Tick]]:
    """Sync XRANGE of a tick stream: ``(stream_id, tick)`` pairs, oldest first.

    Raises
    ------
    BusDecodeError
        On the first entry that does not decode (tests and replay want to know).
    """
    entries: Any = client.xrange(key, min=start, max=end, count=count)
    return [(raw_id.decode(), decode(fields)) for raw_id, fields in entries or ()]


def iter_range(
    client: redis.Redis, key: str, start: str = "-", batch: int = 10_000
) -> Iterator[tuple[str, Tick]]:
    """Iterate a whole tick stream from ``start`` (inclusive) in XRANGE pages of ``batch``."""
    lower = start
    while True:
        page = read_range(client, key, lower, "+", batch)
        yield from page
        if len(page) < batch:
            return
        lower = "(" + page[-1][0]
