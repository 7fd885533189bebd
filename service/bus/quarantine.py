"""The quarantine stream: tick stream entries the worker skipped, with the reason.

One stream per symbol, ``<prefix>:{<venue>:<SYMBOLID>}:quarantine``
(:func:`~tickcast.service.bus.keys.quarantine_key`, the hash slot of the symbol's other keys),
bounded with ``XADD MAXLEN ~ redis.quarantine_maxlen``. Each entry has **the stream ID of the
tick entry it quarantines**, so that

* writing the same entry twice (a replay after a restart, a batch re-sent after a failure)
  stores it once: Redis refuses an ID that is not above the stream's last one
  (:data:`DUPLICATE_ID`);
* the entries quarantined after a checkpoint's position are one ``XRANGE`` away
  (:func:`quarantined_after`): a restarted worker skips them without looking at them again.

Fields of an entry:

============ ==================================================================================
field        value
============ ==================================================================================
``kind``     ``undecodable``, ``invalid`` (breaks the tick contract) or ``learner`` (the
             learner raised on it): :data:`KINDS`
``reason``   the reason, one line (the decode error, the contract rule, the learner's exception)
``f:<name>`` each field of the original entry (``f:v``, ``f:t`` for a tick entry), its value cut
             to :data:`MAX_VALUE` bytes; at most :data:`MAX_FIELDS` fields
============ ==================================================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import redis
import redis.asyncio

from tickcast.service.bus.connection import AsyncClient
from tickcast.service.bus.resp import DUPLICATE_ID

UNDECODABLE: Final = "undecodable"
INVALID: Final = "invalid"
LEARNER: Final = "learner"
KINDS: Final = (UNDECODABLE, INVALID, LEARNER)
MAX_FIELDS: Final = 16
"""Most fields of the original entry copied into a quarantine entry."""
MAX_VALUE: Final = 1024
"""Longest value (bytes) copied from the original entry; longer ones are cut."""
MAX_REASON: Final = 300
"""Longest reason (characters) stored."""
PAGE: Final = 1000
"""Entries per XRANGE page of :func:`quarantined_after`."""


@dataclass(frozen=True, slots=True)
class Quarantined:
    """One tick stream entry set aside: its ID, why, and its original fields.

    Parameters
    ----------
    stream_id : bytes
        The entry's ID in the tick stream, ``b"<ms>-<seq>"``.
    kind : str
        One of :data:`KINDS`.
    reason : str
        Why, one line.
    fields : sequence of bytes
        The entry's fields as a flat ``[name, value, ...]`` list (as XREAD returns them).
    """

    stream_id: bytes
    kind: str
    reason: str
    fields: Sequence[bytes]

    def entry(self) -> list[bytes]:
        """The quarantine entry's fields, flat: ``kind``, ``reason``, then ``f:<name>`` ones.

        Examples
        --------
        >>> Quarantined(b"5-0", INVALID, "price out of range", [b"v", b"1", b"t", b"[]"]).entry()
        [b'kind', b'invalid', b'reason', b'price out of range', b'f:v', b'1', b'f:t', b'[]']
        """
        reason = " ".join(self.reason.split())[:MAX_REASON]
        out = [b"kind", self.kind.encode(), b"reason", reason.encode()]
        copied = self.fields[: 2 * MAX_FIELDS]
        for name, value in zip(copied[::2], copied[1::2], strict=False):
            out += (b"f:" + _bytes(name)[:MAX_VALUE], _bytes(value)[:MAX_VALUE])
        return out


def flat(fields: Any) -> list[bytes]:
    """An entry's fields as a flat ``[name, value, ...]`` list, from a redis-py dict (RESP3,
    or ``XRANGE``) or a raw RESP2 list."""
    if isinstance(fields, dict):
        return [x for pair in fields.items() for x in pair]
    return list(fields)


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "backslashreplace")


async def write(client: AsyncClient, key: str, maxlen: int, records: Iterable[Quarantined]) -> int:
    """Add ``records`` (in stream order) to the quarantine stream ``key`` in one pipeline;
    return how many were new (the others were there already).

    Raises
    ------
    redis.RedisError
        Connection errors, and any refusal other than :data:`DUPLICATE_ID`.
    """
    pipe = client.pipeline(transaction=False)
    for r in records:
        pipe.execute_command("XADD", key, "MAXLEN", "~", maxlen, r.stream_id, *r.entry())
    replies = await pipe.execute(raise_on_error=False)
    new = 0
    for reply in replies:
        if isinstance(reply, redis.ResponseError):
            if DUPLICATE_ID not in str(reply):
                raise reply
        elif isinstance(reply, BaseException):
            raise reply
        else:
            new += 1
    return new


async def quarantined_after(client: AsyncClient, key: str, after: str) -> set[bytes]:
    """The tick stream IDs quarantined in ``key`` after the tick stream ID ``after``."""
    out: set[bytes] = set()
    lower = "(" + after
    while True:
        page: Any = await client.xrange(key, min=lower, max="+", count=PAGE)
        out.update(raw_id for raw_id, _ in page or ())
        if not page or len(page) < PAGE:
            return out
        lower = "(" + page[-1][0].decode()
