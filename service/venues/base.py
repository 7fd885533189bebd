"""Pieces shared by every venue parser: parse counters, the parser protocol, symbol helpers.

A venue parser is pure and synchronous: ``parse(raw, recv_ns) -> list[Tick]``. It never raises on
bad input; it counts what it skipped (messages it understands but that carry no tick: depth
updates, acks, snapshots) and what it rejected (messages that should carry a tick but break the
contract: invalid JSON, missing fields, NaN prices, crossed books) in a :class:`ParseStats`.

Skip and reject reasons are short fixed strings (the constants below), so that they can become
metric labels without growing without bound.

Symbols follow ccxt's unified form ``BASE/QUOTE:SETTLE`` (``BTC/USDT:USDT``), with an expiry
suffix for dated futures (``BTC/USDT:USDT-240927``); :func:`split_unified` and
:func:`join_unified` take them apart and put them together.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Final, NamedTuple, Protocol, runtime_checkable

from tickcast.service import TickcastError
from tickcast.service.ticks import Tick

# Skip reasons: understood messages that carry no tick.
SKIP_DEPTH: Final = "depth update"
SKIP_SNAPSHOT: Final = "depth snapshot"
SKIP_MARK_PRICE: Final = "mark price"
SKIP_ACK: Final = "subscription ack"
SKIP_KEEPALIVE: Final = "keepalive"
SKIP_ERROR_REPLY: Final = "error reply"
SKIP_OTHER_EVENT: Final = "other event"
SKIP_UNKNOWN_EVENT: Final = "unknown event type"
SKIP_UNSUBSCRIBED: Final = "unsubscribed symbol"
SKIP_BACKFILL: Final = "trade backfill"
SKIP_ONE_SIDED: Final = "one-sided book"
SKIP_NO_BOOK: Final = "book delta before snapshot"

# Reject reasons: messages (or lines) that should carry a tick but cannot make one. Ticks that
# break the contract are rejected with the reasons of tickcast.service.ticks.invalid_reason.
REJECT_JSON: Final = "invalid json"
REJECT_NOT_OBJECT: Final = "not a json object"
REJECT_MISSING: Final = "missing field"
REJECT_NOT_NUMERIC: Final = "non-numeric value"
REJECT_TYPE: Final = "wrong value type"
"""A value of another JSON type than the venue sends (a bool or a float where an integer time
belongs, a number where a decimal string does): never coerced."""
REJECT_SYMBOL: Final = "unrecognised symbol"
REJECT_LINE: Final = "malformed line"
REJECT_COMPRESSED: Final = "undecompressible frame"
REJECT_OVERSIZED: Final = "oversized frame"
"""A frame larger than the feed's ``max_frame_bytes``: counted by the feed, never parsed."""
REJECT_UNENCODABLE: Final = "unencodable value"
"""A tick the bus cannot encode (an integer over 64 bits): counted by the writer."""


class FeedParseError(TickcastError):
    """A programmer error in a feed module (bad symbol configuration, unrenderable tick).

    Bad input from a venue is never raised: it is counted in :class:`ParseStats`.
    """


class ParseStats:
    """Counters of one parser (or reader): ticks made, messages skipped and rejected.

    Attributes
    ----------
    parsed_trades, parsed_quotes : int
        Trade and quote ticks produced.
    skipped : dict[str, int]
        Understood messages that carry no tick, by reason (``SKIP_*``).
    rejected : dict[str, int]
        Messages that broke the contract, by reason (``REJECT_*``).

    Examples
    --------
    >>> s = ParseStats()
    >>> s.skip("depth update"); s.reject("invalid json"); s.reject("invalid json")
    >>> s.total_skipped, s.total_rejected, s.rejected
    (1, 2, {'invalid json': 2})
    """

    __slots__ = ("parsed_quotes", "parsed_trades", "rejected", "skipped")

    def __init__(self) -> None:
        self.parsed_trades = 0
        self.parsed_quotes = 0
        self.skipped: dict[str, int] = {}
        self.rejected: dict[str, int] = {}

    @property
    def total_skipped(self) -> int:
        """Messages skipped, all reasons."""
        return sum(self.skipped.values())

    @property
    def total_rejected(self) -> int:
        """Messages rejected, all reasons."""
        return sum(self.rejected.values())

    @property
    def total_parsed(self) -> int:
        """Ticks produced, trades and quotes."""
        return self.parsed_trades + self.parsed_quotes

    def skip(self, reason: str, n: int = 1) -> None:
        """Count ``n`` skipped messages under ``reason``."""
        self.skipped[reason] = self.skipped.get(reason, 0) + n

    def reject(self, reason: str, n: int = 1) -> None:
        """Count ``n`` rejected messages under ``reason``."""
        self.rejected[reason] = self.rejected.get(reason, 0) + n

    def merge(self, other: ParseStats) -> None:
        """Add ``other``'s counts into this object."""
        self.parsed_trades += other.parsed_trades
        self.parsed_quotes += other.parsed_quotes
        for reason, n in other.skipped.items():
            self.skip(reason, n)
        for reason, n in other.rejected.items():
            self.reject(reason, n)

    def as_dict(self) -> dict[str, object]:
        """Plain-data copy (for logs, JSON and metrics)."""
        return {
            "parsed_trades": self.parsed_trades,
            "parsed_quotes": self.parsed_quotes,
            "skipped": dict(self.skipped),
            "rejected": dict(self.rejected),
        }

    def __repr__(self) -> str:
        return (
            f"ParseStats(parsed_trades={self.parsed_trades}, parsed_quotes={self.parsed_quotes},"
            f" skipped={self.skipped!r}, rejected={self.rejected!r})"
        )


@runtime_checkable
class Parser(Protocol):
    """What every venue parser provides: a venue id, counters, and a pure ``parse``."""

    venue: str
    stats: ParseStats

    def parse(self, raw: bytes | str, recv_ns: int) -> list[Tick]:
        """Turn one wire frame into zero or more ticks; count, never raise, on bad input."""
        ...


class UnifiedSymbol(NamedTuple):
    """The parts of a ccxt unified symbol; ``expiry`` is ``""`` for perpetuals."""

    base: str
    quote: str
    settle: str
    expiry: str = ""


def split_unified(unified: str) -> UnifiedSymbol:
    """Split ``"BTC/USDT:USDT"`` (or ``"BTC/USDT:USDT-240927"``) into its parts.

    Raises
    ------
    FeedParseError
        When ``unified`` is not of the form ``BASE/QUOTE:SETTLE[-EXPIRY]``.

    Examples
    --------
    >>> split_unified("BTC/USDT:USDT-240927")
    UnifiedSymbol(base='BTC', quote='USDT', settle='USDT', expiry='240927')
    """
    base, slash, rest = unified.partition("/")
    quote, colon, settle = rest.partition(":")
    settle, _, expiry = settle.partition("-")
    if not (slash and colon and base and quote and settle):
        raise FeedParseError(
            f"not a unified futures symbol: {unified!r} (expected BASE/QUOTE:SETTLE)"
        )
    return UnifiedSymbol(base, quote, settle, expiry)


def join_unified(base: str, quote: str, settle: str | None = None, expiry: str = "") -> str:
    """Build a ccxt unified futures symbol; ``settle`` defaults to ``quote``.

    Examples
    --------
    >>> join_unified("BTC", "USDT")
    'BTC/USDT:USDT'
    """
    symbol = f"{base}/{quote}:{settle or quote}"
    return f"{symbol}-{expiry}" if expiry else symbol


def decimal_text(x: float, min_decimals: int = 0) -> str:
    """Exact decimal string of ``x`` (shortest round-trip digits), padded to ``min_decimals``.

    Venues send prices and sizes as decimal strings; this renders a float the way they do,
    never in exponent notation and never losing a digit.

    Raises
    ------
    FeedParseError
        When ``x`` is NaN or infinite.

    Examples
    --------
    >>> decimal_text(61800.3, 2), decimal_text(0.006, 3), decimal_text(2.0), decimal_text(1e-07)
    ('61800.30', '0.006', '2', '0.0000001')
    """
    if not math.isfinite(x):
        raise FeedParseError(f"cannot render the non-finite value {x!r}")
    text = repr(float(x))
    if "e" in text:
        text = format(Decimal(text), "f")
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0").ljust(min_decimals, "0")
    return f"{whole}.{frac}" if frac else whole
