"""The Redis bus: key names, tick encode/decode, connections and stream readers.

The writer is :class:`tickcast.service.writer.TickWriter`.

Keys (DESIGN.md §3), one hash slot per symbol thanks to the ``{...}`` Redis Cluster hash tag::

    <prefix>:{<venue>:<SYMBOLID>}:ticks     tick stream (XADD MAXLEN ~ redis.tick_maxlen)
    <prefix>:{<venue>:<SYMBOLID>}:signals   signal stream
    <prefix>:{<venue>:<SYMBOLID>}:ckpt      checkpoint

``SYMBOLID`` is :func:`symbol_tag` of the unified symbol (``BTC/USDT:USDT`` -> ``BTCUSDT``).

A tick stream entry has two fields: ``v`` (the encoding version, :data:`TICK_VERSION`) and
``t``, an orjson array of the 14 :class:`~tickcast.service.ticks.Tick` fields in order. One blob
field is about twice as fast to write with redis-py as a flat field map (bench/bus.py), every
entry has the same field names (Redis then stores them once per stream node), and orjson
writes floats in shortest round-trip form, so a decoded tick equals the encoded one exactly.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import orjson
import redis
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.typing import KeyT, StreamIdT

from tickcast.service import TickcastError
from tickcast.service.config import Settings
from tickcast.service.ticks import Tick

log = logging.getLogger(__name__)

TICK_VERSION: Final = 1
"""Version of the tick entry encoding, stored in each entry's ``v`` field."""

V_FIELD: Final = b"v"
T_FIELD: Final = b"t"
V_VALUE: Final = str(TICK_VERSION).encode()
_FIELD_TYPES: Final = (
    str,
    str,
    str,
    int,
    int,
    float,
    float,
    int,
    str,
    float,
    float,
    float,
    float,
    int,
)
JSON_NULL: Final = b"null"


class BusError(TickcastError):
    """Root of the bus errors."""


class BusEncodeError(BusError):
    """A tick cannot be encoded (a non-finite float has no JSON form)."""


class BusDecodeError(BusError):
    """A stream entry is not a tick of a known encoding version."""


class InvalidSymbolError(BusError, ValueError):
    """A symbol that is not in ccxt's unified form, or cannot be put in a key."""


# -- key names ------------------------------------------------------------------------------


def symbol_tag(unified: str) -> str:
    """Return the venue-style id used in key tags for a ccxt unified symbol.

    ``BASE/QUOTE`` -> ``BASEQUOTE``; a settle currency is appended as ``_SETTLE`` only when it
    differs from the quote; further dash-separated parts (expiry, strike, option type) follow
    as ``_PART``. Pure and total over unified symbols; venues' real ids may differ.

    Examples
    --------
    >>> symbol_tag("BTC/USDT:USDT")
    'BTCUSDT'
    >>> symbol_tag("BTC/USD:BTC")
    'BTCUSD_BTC'
    >>> symbol_tag("ETH/USDT")
    'ETHUSDT'
    >>> symbol_tag("BTC/USDT:USDT-250926")
    'BTCUSDT_250926'

    Raises
    ------
    InvalidSymbolError
        When ``unified`` has no ``BASE/QUOTE`` part or holds characters unsafe in a key tag.
    """
    base, slash, rest = unified.partition("/")
    quote, colon, settle_part = rest.partition(":")
    settle, *extra = settle_part.split("-") if colon else ("",)
    unsafe = any(c.isspace() or c in "{}:/" for c in base + quote + settle_part)
    if not slash or not base or not quote or (colon and not settle) or unsafe:
        raise InvalidSymbolError(f"{unified!r} is not a unified symbol like 'BTC/USDT:USDT'")
    parts = [base + quote]
    if settle and settle != quote:
        parts.append(settle)
    parts.extend(extra)
    return "_".join(parts)


def symbol_key(prefix: str, venue: str, symbol: str, kind: str) -> str:
    """``<prefix>:{<venue>:<symbol_tag(symbol)>}:<kind>`` for ``kind`` in ticks/signals/ckpt."""
    if not venue or any(c.isspace() or c in "{}:" for c in venue):
        raise InvalidSymbolError(f"venue {venue!r} cannot be put in a key")
    return f"{prefix}:{{{venue}:{symbol_tag(symbol)}}}:{kind}"


def ticks_key(prefix: str, venue: str, symbol: str) -> str:
    """Key of the tick stream of ``symbol`` on ``venue``."""
    return symbol_key(prefix, venue, symbol, "ticks")


def signals_key(prefix: str, venue: str, symbol: str) -> str:
    """Key of the signal stream of ``symbol`` on ``venue``."""
    return symbol_key(prefix, venue, symbol, "signals")


def ckpt_key(prefix: str, venue: str, symbol: str) -> str:
    """Key of the checkpoint of ``symbol`` on ``venue``."""
    return symbol_key(prefix, venue, symbol, "ckpt")


def id_key(stream_id: bytes | str) -> tuple[int, int]:
    """A stream entry ID as a sortable ``(ms, seq)`` pair.

    Examples
    --------
    >>> id_key(b"1700000000000-9") < id_key("1700000000000-10")
    True
    """
    text = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


# -- encode / decode ------------------------------------------------------------------------


def encode_tick(tick: Tick) -> bytes:
    """Return the ``t`` field of a tick entry: an orjson array of the tick's 14 fields.

    Raises
    ------
    BusEncodeError
        When a float field is NaN or infinite (the parser rejects those; JSON has no form).
    """
    blob = orjson.dumps(tuple(tick))
    if JSON_NULL in blob and not all(
        map(
            math.isfinite, (tick.price, tick.size, tick.bid, tick.bid_size, tick.ask, tick.ask_size)
        )
    ):
        raise BusEncodeError(f"non-finite float in {tick!r}")
    return blob


def encode(tick: Tick) -> dict[bytes, bytes]:
    """Return the field map of a tick stream entry: ``{b"v": b"1", b"t": encode_tick(tick)}``."""
    return {V_FIELD: V_VALUE, T_FIELD: encode_tick(tick)}


def _coerce(values: list[Any]) -> Tick:
    """Slow path of :func:`decode_tick`: accept ints in float slots, reject anything else."""
    out: list[Any] = []
    for i, (value, kind) in enumerate(zip(values, _FIELD_TYPES, strict=True)):
        if type(value) is kind:
            out.append(value)
        elif kind is float and type(value) is int:
            out.append(float(value))
        else:
            raise BusDecodeError(
                f"field {Tick._fields[i]} is {type(value).__name__}, expected {kind.__name__}"
            )
    return Tick._make(out)


def decode_tick(blob: bytes) -> Tick:
    """Inverse of :func:`encode_tick`.

    Raises
    ------
    BusDecodeError
        When ``blob`` is not JSON or not an array of 14 values of the Tick field types; the
        original error is chained.
    """
    try:
        values = orjson.loads(blob)
    except orjson.JSONDecodeError as exc:
        raise BusDecodeError(f"tick entry is not JSON: {exc}") from exc
    if type(values) is not list or len(values) != len(_FIELD_TYPES):
        raise BusDecodeError(f"tick entry is not an array of {len(_FIELD_TYPES)} values")
    if tuple(map(type, values)) == _FIELD_TYPES:
        return Tick._make(values)
    return _coerce(values)


def decode(fields: Mapping[bytes, bytes]) -> Tick:
    """Inverse of :func:`encode`: a tick from a stream entry's field map.

    Raises
    ------
    BusDecodeError
        On an unknown or missing version, a missing ``t`` field, or a malformed blob.
    """
    version = fields.get(V_FIELD)
    if version != V_VALUE:
        raise BusDecodeError(f"unsupported tick entry version {version!r}")
    blob = fields.get(T_FIELD)
    if blob is None:
        raise BusDecodeError("tick entry has no 't' field")
    return decode_tick(blob)


def decode_flat(fields: Sequence[bytes]) -> Tick:
    """:func:`decode` of an entry's fields as a raw RESP2 reply has them: ``[f1, v1, f2, ...]``.

    Raises
    ------
    BusDecodeError
        As :func:`decode`.
    """
    if len(fields) == 4 and fields[0] == V_FIELD and fields[2] == T_FIELD:
        if fields[1] != V_VALUE:
            raise BusDecodeError(f"unsupported tick entry version {fields[1]!r}")
        return decode_tick(fields[3])
    return decode(dict(zip(fields[::2], fields[1::2], strict=False)))


# -- connections ----------------------------------------------------------------------------


def connect(url: str, settings: Settings) -> redis.asyncio.Redis:
    """Open an asyncio Redis client on ``url`` (bytes responses, RESP2, timeouts and
    client-level retries from ``settings.redis``; its username/password fill in when the URL
    has none)."""
    cfg = settings.redis
    kwargs: dict[str, Any] = {
        "decode_responses": False,
        "protocol": 2,
        "socket_timeout": cfg.socket_timeout_s,
        "socket_connect_timeout": cfg.connect_timeout_s,
        "retry": Retry(
            ExponentialWithJitterBackoff(cfg.retry_cap_s, cfg.retry_base_s), cfg.retry_attempts
        ),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
    }
    if cfg.password is not None and "@" not in url.partition("?")[0]:
        kwargs["password"] = cfg.password.get_secret_value()
        if cfg.username:
            kwargs["username"] = cfg.username
    return redis.asyncio.Redis.from_url(url, **kwargs)


# -- readers --------------------------------------------------------------------------------


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

    def __init__(self, redis: redis.asyncio.Redis, settings: Settings) -> None:
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
