"""The encoding of a tick stream entry.

A tick stream entry has two fields: ``v`` (the encoding version, :data:`TICK_VERSION`) and
``t``, an orjson array of the 14 :class:`~tickcast.service.ticks.Tick` fields in order. One blob
field is about twice as fast to write with redis-py as a flat field map (bench/bus.py), every
entry has the same field names (Redis then stores them once per stream node), and orjson
writes floats in shortest round-trip form, so a decoded tick equals the encoded one exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson

from tickcast.service.bus import BusError
from tickcast.service.ticks import Tick

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


class BusEncodeError(BusError):
    """A tick cannot be encoded (a non-finite float has no JSON form)."""


class BusDecodeError(BusError):
    """A stream entry is not a tick of a known encoding version."""


def encode_tick(tick: Tick) -> bytes:
    """Return the ``t`` field of a tick entry: an orjson array of the tick's 14 fields.

    Raises
    ------
    BusEncodeError
        When a float field is NaN or infinite, or an integer does not fit in 64 bits (the
        parsers reject those; JSON, as orjson writes it, has no form for them).
    """
    try:
        blob = orjson.dumps(tuple(tick))
    except TypeError as exc:  # orjson.JSONEncodeError is one
        raise BusEncodeError(f"cannot encode {tick!r}: {exc}") from exc
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
