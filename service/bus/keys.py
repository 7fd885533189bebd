"""Redis key names of a symbol's streams and checkpoint, and stream-ID ordering.

Keys (DESIGN.md §3), one hash slot per symbol thanks to the ``{...}`` Redis Cluster hash tag::

    <prefix>:{<venue>:<SYMBOLID>}:ticks     tick stream (XADD MAXLEN ~ redis.tick_maxlen)
    <prefix>:{<venue>:<SYMBOLID>}:signals   signal stream
    <prefix>:{<venue>:<SYMBOLID>}:ckpt      checkpoint
    <prefix>:{<venue>:<SYMBOLID>}:quarantine
                                            ticks the worker could not process, each under the
                                            tick's own stream ID (XADD MAXLEN ~
                                            redis.quarantine_maxlen)
    <prefix>:{<venue>:<SYMBOLID>}:ckpt:unreadable
                                            list of the checkpoints set aside because they
                                            would not restore, newest first, each renamed to
                                            ``...:ckpt:unreadable:<wall ms>``

``SYMBOLID`` is :func:`symbol_tag` of the unified symbol (``BTC/USDT:USDT`` -> ``BTCUSDT``).
"""

from __future__ import annotations

from typing import Final

from tickcast.service.bus import BusError


class InvalidSymbolError(BusError, ValueError):
    """A symbol that is not in ccxt's unified form, or cannot be put in a key."""


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
    """``<prefix>:{<venue>:<symbol_tag(symbol)>}:<kind>`` (``kind``: ticks, signals, ckpt,
    quarantine, or a lease's)."""
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


def quarantine_key(prefix: str, venue: str, symbol: str) -> str:
    """Key of the quarantine (dead-letter) stream of ``symbol`` on ``venue``."""
    return symbol_key(prefix, venue, symbol, "quarantine")


def unreadable_index_key(ckpt: str) -> str:
    """Key of the list of a checkpoint's set-aside copies (:func:`unreadable_key`).

    Examples
    --------
    >>> unreadable_index_key("tickcast:{sim:BTCUSDT}:ckpt")
    'tickcast:{sim:BTCUSDT}:ckpt:unreadable'
    """
    return f"{ckpt}:unreadable"


def unreadable_key(ckpt: str, wall_ms: int) -> str:
    """Key a checkpoint that would not restore is renamed to (same hash slot).

    Examples
    --------
    >>> unreadable_key("tickcast:{sim:BTCUSDT}:ckpt", 1767225600000)
    'tickcast:{sim:BTCUSDT}:ckpt:unreadable:1767225600000'
    """
    return f"{unreadable_index_key(ckpt)}:{wall_ms}"


START_ID: Final = "0-0"
"""The stream position before the first entry (a reader there reads the whole stream)."""


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
