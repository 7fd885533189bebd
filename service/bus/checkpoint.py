"""Worker checkpoints: the learner, its tick stream position and the last published sample.

One Redis hash per symbol, ``<prefix>:{<venue>:<SYMBOLID>}:ckpt``, written in one MULTI so a
reader never sees a snapshot with another checkpoint's stream ID:

============ ==================================================================================
field        value
============ ==================================================================================
``v``        checkpoint format version (:data:`CKPT_VERSION`)
``model``    ``OnlineLearner.snapshot()`` bytes (net, optimizer, scalers, features, pending)
``last_id``  ID of the last tick stream entry the snapshot has consumed (``0-0``: none)
``last_t``   sample time (ms) of the last signal published (``0``: none)
``ticks``    ticks consumed since the stream start (status)
``samples``  samples taken (status)
``saved_ms`` local wall time of the save (ms since the epoch; checkpoint age)
``owner``    lease token of the worker that wrote it (optional: who checkpointed the symbol)
============ ==================================================================================

Between checkpoints the worker refreshes ``ticks`` and ``samples`` about once a second
(:func:`write_status`) so that ``tickcast status`` reads live counts.

Restoring and feeding the ticks after ``last_id`` gives the state of a worker that never
stopped (DESIGN.md, invariant 5).

The worker writes a checkpoint only once its snapshot has restored (see
:mod:`tickcast.service.live.symbolstate`). A checkpoint found unreadable at start all the same
(another version wrote it, or a hand) is not deleted: :func:`set_aside` renames it to
``<key>:unreadable:<wall ms>`` (:func:`~tickcast.service.bus.keys.unreadable_key`) and lists it
first in ``<key>:unreadable``, which keeps the :data:`UNREADABLE_KEPT` newest copies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Final

import orjson
import redis
import redis.asyncio

from tickcast.service import TickcastError
from tickcast.service.bus.connection import AsyncClient
from tickcast.service.bus.keys import unreadable_index_key, unreadable_key
from tickcast.service.ticks import MAX_EVENT_MS

CKPT_VERSION: Final = 1
UNREADABLE_KEPT: Final = 5
"""Set-aside copies of unreadable checkpoints kept per symbol (the newest)."""
PUBLISHED_LOOK_BACK: Final = 100
"""Newest signals :func:`last_published_t` looks through for a sample time."""
STATUS_FIELDS: Final = ("samples", "ticks")
"""Hash fields refreshed between checkpoints (live counts for ``tickcast status``)."""


class CheckpointError(TickcastError):
    """A checkpoint hash is malformed or of an unknown version."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One symbol's checkpoint (see the module docstring for the fields)."""

    model: bytes
    last_id: str
    last_t: int
    ticks: int = 0
    samples: int = 0
    saved_ms: int = 0
    owner: str = ""

    def fields(self) -> dict[bytes, bytes]:
        """The hash fields of this checkpoint (``saved_ms`` = now when it is 0)."""
        saved = self.saved_ms or time.time_ns() // 1_000_000
        owner = {b"owner": self.owner.encode()} if self.owner else {}
        return {
            **owner,
            b"v": str(CKPT_VERSION).encode(),
            b"model": self.model,
            b"last_id": self.last_id.encode(),
            b"last_t": str(self.last_t).encode(),
            b"ticks": str(self.ticks).encode(),
            b"samples": str(self.samples).encode(),
            b"saved_ms": str(saved).encode(),
        }

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> Checkpoint:
        """Parse the hash fields; raise :class:`CheckpointError` when malformed."""
        version = fields.get(b"v")
        if version != str(CKPT_VERSION).encode():
            raise CheckpointError(f"unsupported checkpoint version {version!r}")
        try:
            return cls(
                model=fields[b"model"],
                last_id=fields[b"last_id"].decode(),
                last_t=int(fields[b"last_t"]),
                ticks=int(fields.get(b"ticks", b"0")),
                samples=int(fields.get(b"samples", b"0")),
                saved_ms=int(fields.get(b"saved_ms", b"0")),
                owner=fields.get(b"owner", b"").decode(),
            )
        except (KeyError, ValueError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"malformed checkpoint: {exc!r}") from exc


async def save(client: AsyncClient, key: str, ckpt: Checkpoint) -> int:
    """Write ``ckpt`` to the hash ``key`` in one MULTI; return the save time (ms)."""
    fields = ckpt.fields()
    async with client.pipeline(transaction=True) as pipe:
        pipe.delete(key)
        pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
        await pipe.execute()
    return int(fields[b"saved_ms"])


def queue_status(pipe: Any, key: str, samples: int, ticks: int) -> None:
    """Queue the refresh of the live ``samples`` / ``ticks`` fields of a checkpoint hash."""
    pipe.hset(key, mapping={"samples": samples, "ticks": ticks})


async def load(client: AsyncClient, key: str) -> Checkpoint | None:
    """Return the checkpoint in ``key``, or ``None`` when there is none.

    Raises
    ------
    CheckpointError
        When ``key`` is not a hash, or a malformed or unknown-version one.
    """
    try:
        fields: Any = await client.hgetall(key)
    except redis.ResponseError as exc:
        if "WRONGTYPE" not in str(exc):
            raise
        raise CheckpointError(f"{key} is not a hash: {exc}") from exc
    if not fields or b"model" not in fields:  # nothing, or live counts only
        return None
    return Checkpoint.from_fields(fields)


async def set_aside(client: AsyncClient, key: str) -> str:
    """Rename the checkpoint ``key`` to ``<key>:unreadable:<wall ms>``, list it first in
    ``<key>:unreadable`` and delete the copies beyond the :data:`UNREADABLE_KEPT` newest;
    return the new key. ``key`` holds no checkpoint afterwards.

    The suffix is the wall time in ms, or one more than the newest copy's when the clock has
    not moved past it (two set-asides in one millisecond keep two copies).

    Raises
    ------
    redis.ResponseError
        When ``key`` does not exist.
    """
    index = unreadable_index_key(key)
    newest: Any = await client.lrange(index, 0, 0)  # (LRANGE: the worker's ACL has no LINDEX)
    newest_ms = int(newest[0].rpartition(b":")[2] or 0) if newest else 0
    wall_ms = max(time.time_ns() // 1_000_000, newest_ms + 1)
    aside = unreadable_key(key, wall_ms)
    async with client.pipeline(transaction=True) as pipe:
        pipe.execute_command("RENAME", key, aside)  # (a cluster pipeline refuses .rename())
        pipe.lpush(index, aside)
        pipe.lrange(index, UNREADABLE_KEPT, -1)
        pipe.ltrim(index, 0, UNREADABLE_KEPT - 1)
        replies = await pipe.execute()
    if replies[2]:
        await client.delete(*replies[2])
    return aside


async def last_published_t(client: AsyncClient, signals_key: str) -> int:
    """Sample time (ms) of the newest signal in a signals stream (0 when empty).

    A worker killed after publishing but before its next checkpoint learns here which samples
    it must not publish again. The sample time is read from the newest of the last
    :data:`PUBLISHED_LOOK_BACK` entries that carries one, valid signal or not: a signal an
    earlier version published with a ``null`` value was published all the same.
    """
    entries: Any = await client.xrevrange(signals_key, count=PUBLISHED_LOOK_BACK)
    for _, fields in entries or ():
        t_ms = _sample_time(fields)
        if t_ms:
            return t_ms
    return 0


def _sample_time(fields: dict[Any, Any]) -> int:
    """The ``t_ms`` of a signals stream entry; 0 when it has none, or one outside the tick
    contract's event times (a signal stamped in 2100 must not silence the symbol).

    Examples
    --------
    >>> _sample_time({b"s": b'{"t_ms": 1700000000000, "ret_bps": null}'})
    1700000000000
    >>> _sample_time({b"s": b"not json"}), _sample_time({b"s": b'{"t_ms": 4102444800000}'})
    (0, 0)
    """
    from tickcast.service.schema import FIELD

    try:
        t_ms = orjson.loads(fields.get(FIELD) or fields.get("s") or b"")["t_ms"]
    except (orjson.JSONDecodeError, TypeError, KeyError):
        return 0
    return t_ms if type(t_ms) is int and 0 < t_ms < MAX_EVENT_MS else 0
