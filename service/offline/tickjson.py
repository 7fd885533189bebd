"""tickcast's own tick file format: JSON Lines, one versioned tick object per line.

:func:`encode_many` writes it and the readers of :mod:`tickcast.service.offline.readers` read
it. A file is UTF-8 text (optionally gzipped), one JSON object per line, each line independent,
in the order the ticks were received (so roughly event-time order). Format version 1:

Common keys, in this order:

=========== ====== ==========================================================================
key         type   meaning
=========== ====== ==========================================================================
``v``       int    format version, ``1``
``venue``   str    venue id (``"binanceusdm"``)
``symbol``  str    ccxt unified symbol (``"BTC/USDT:USDT"``)
``kind``    str    ``"trade"`` or ``"quote"``
``event_ms`` int   exchange event time, ms since the Unix epoch
``recv_ns`` int    local receive time, ns since the Unix epoch
=========== ====== ==========================================================================

then, for a trade: ``price`` (number), ``size`` (number, base units), ``side`` (+1 buyer
aggressor, −1 seller aggressor), ``trade_id`` (string, may be empty); for a quote: ``bid``,
``bid_size``, ``ask``, ``ask_size`` (numbers) and ``update_id`` (int). Numbers are written with
the shortest digits that read back to the same float64, so a file round-trips bit-exactly.
Example lines::

    {"v":1,"venue":"binanceusdm","symbol":"BTC/USDT:USDT","kind":"trade","event_ms":1723161256322,"recv_ns":1723161255088176367,"price":61800.3,"size":0.006,"side":1,"trade_id":"5266583935"}
    {"v":1,"venue":"binanceusdm","symbol":"BTC/USDT:USDT","kind":"quote","event_ms":1723161256313,"recv_ns":1723161255088169167,"bid":61800.2,"bid_size":2.507,"ask":61800.3,"ask_size":2.51,"update_id":5123107839020}

Readers ignore keys they do not know (later minor additions stay readable) and refuse other
versions. Only ticks that satisfy the contract of :mod:`tickcast.service.ticks` are written or
read back: :func:`encode` and :func:`decode` raise :class:`TickJsonError`, chained to the cause.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import orjson

from tickcast.service import TickcastError
from tickcast.service.ticks import QUOTE, TRADE, Tick, invalid_reason

__all__ = ["VERSION", "TickJsonError", "decode", "encode", "encode_many"]

#: The format version written by :func:`encode` and the only one :func:`decode` accepts.
VERSION: Final = 1

_new_tick = tuple.__new__


class TickJsonError(TickcastError):
    """A tick that cannot be written, or a line that is not a valid version-1 tick."""


def encode(tick: Tick) -> bytes:
    """One tick as one JSON line (UTF-8, without the trailing newline).

    Raises
    ------
    TickJsonError
        When ``tick`` breaks the tick contract (non-finite price, bad side, unknown kind, ...).

    Examples
    --------
    >>> from tickcast.service.ticks import trade
    >>> encode(trade("sim", "BTC/USDT:USDT", 1000, 5, 100.5, 0.25, -1, "7"))[:46]
    b'{"v":1,"venue":"sim","symbol":"BTC/USDT:USDT",'
    """
    reason = invalid_reason(tick)
    if reason is not None:
        raise TickJsonError(f"cannot encode an invalid tick ({reason}): {tick!r}")
    obj: dict[str, object] = {
        "v": VERSION,
        "venue": tick.venue,
        "symbol": tick.symbol,
        "kind": tick.kind,
        "event_ms": tick.event_ms,
        "recv_ns": tick.recv_ns,
    }
    if tick.kind == TRADE:
        obj["price"] = tick.price
        obj["size"] = tick.size
        obj["side"] = tick.side
        obj["trade_id"] = tick.trade_id
    else:
        obj["bid"] = tick.bid
        obj["bid_size"] = tick.bid_size
        obj["ask"] = tick.ask
        obj["ask_size"] = tick.ask_size
        obj["update_id"] = tick.update_id
    try:
        return orjson.dumps(obj)
    except TypeError as exc:  # a field of the wrong type (a str where an int belongs, ...)
        raise TickJsonError(f"cannot encode {tick!r}: {exc}") from exc


def encode_many(ticks: Iterable[Tick]) -> bytes:
    """Many ticks as JSON lines, each followed by ``\\n``."""
    return b"".join(encode(t) + b"\n" for t in ticks)


def decode(line: bytes | str) -> Tick:
    """The tick of one JSON line (surrounding whitespace allowed).

    Raises
    ------
    TickJsonError
        When the line is not JSON, not an object, has another version, misses a key, has a
        value of the wrong type, or describes a tick that breaks the contract.

    Examples
    --------
    >>> from tickcast.service.ticks import quote
    >>> q = quote("sim", "BTC/USDT:USDT", 1000, 5, 99.5, 1.0, 100.5, 2.0, 42)
    >>> decode(encode(q)) == q
    True
    """
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise TickJsonError(f"not JSON: {exc}") from exc
    if type(obj) is not dict:
        raise TickJsonError(f"not a JSON object: {_clip(line)}")
    version = obj.get("v")
    if version != VERSION or type(version) is not int:
        raise TickJsonError(f"unsupported tick format version {version!r} (expected {VERSION})")
    try:
        tick = _build(obj)
    except KeyError as exc:
        raise TickJsonError(f"missing key {exc.args[0]!r}: {_clip(line)}") from exc
    except TypeError as exc:
        raise TickJsonError(f"{exc}: {_clip(line)}") from exc
    reason = invalid_reason(tick)
    if reason is not None:
        raise TickJsonError(f"invalid tick ({reason}): {_clip(line)}")
    return tick


def _build(obj: dict[str, Any]) -> Tick:
    """Tick of a decoded object; KeyError for a missing key, TypeError for a wrong type."""
    kind = _typed(obj, "kind", str)
    head = (
        _typed(obj, "venue", str),
        _typed(obj, "symbol", str),
        kind,
        _typed(obj, "event_ms", int),
        _typed(obj, "recv_ns", int),
    )
    if kind == TRADE:
        body: tuple[object, ...] = (
            _number(obj, "price"),
            _number(obj, "size"),
            _typed(obj, "side", int),
            _typed(obj, "trade_id", str),
            0.0,
            0.0,
            0.0,
            0.0,
            0,
        )
    elif kind == QUOTE:
        body = (
            0.0,
            0.0,
            0,
            "",
            _number(obj, "bid"),
            _number(obj, "bid_size"),
            _number(obj, "ask"),
            _number(obj, "ask_size"),
            _typed(obj, "update_id", int),
        )
    else:
        raise TypeError(f"unknown kind {kind!r}")
    return _new_tick(Tick, head + body)


def _typed(obj: dict[str, Any], key: str, kind: type) -> Any:
    value = obj[key]
    if type(value) is not kind:
        raise TypeError(f"{key} must be {kind.__name__}, got {type(value).__name__}")
    return value


def _number(obj: dict[str, Any], key: str) -> float:
    value = obj[key]
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    raise TypeError(f"{key} must be a number, got {type(value).__name__}")


def _clip(line: bytes | str, limit: int = 200) -> str:
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "..."
