"""One reader per recorded-data format: the lines of one file in, ticks out.

Each reader takes a file's lines (decompressed, the first one included), yields its ticks in file
order and counts every tick made, line skipped and line rejected into a
:class:`~tickcast.service.venues.base.ParseStats`; a malformed line is counted, never raised.
Telling the format of a file, opening it and merging files by event time is
:mod:`tickcast.service.offline.readers`, which also describes each format.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Final

from tickcast.service.offline.tickjson import TickJsonError, decode
from tickcast.service.ticks import QUOTE, TRADE, Tick
from tickcast.service.venues.base import (
    REJECT_CROSSED,
    REJECT_LINE,
    REJECT_NON_FINITE,
    REJECT_PRICE,
    REJECT_SIZE,
    REJECT_TIME,
    SKIP_UNSUBSCRIBED,
    ParseStats,
)
from tickcast.service.venues.binance import VENUE, BinanceParser, venue_symbol

__all__ = [
    "AGG_HEADER",
    "BOOK_HEADER",
    "CSV_BOOLS",
    "WS_HEADER_LINE",
    "read_agg_trades",
    "read_book_ticker",
    "read_frames",
    "read_tickjson",
]

logger = logging.getLogger(__name__)

#: The header line of a ws-session capture: ``<url> <-> <epoch s>``.
WS_HEADER_LINE = re.compile(rb"^wss?://\S+ <-> \d+(\.\d+)?$")
#: First column name of an aggTrades CSV header row.
AGG_HEADER: Final = b"agg_trade_id"
#: First column name of a bookTicker CSV header row.
BOOK_HEADER: Final = b"update_id"
#: The values of aggTrades' ``is_buyer_maker`` column.
CSV_BOOLS: Final = (b"true", b"false")
_MICROS: Final = 10**14
_new_tick = tuple.__new__


def read_frames(
    rows: Iterable[bytes], fmt: str, wanted: frozenset[str] | None, stats: ParseStats
) -> Iterator[Tick]:
    """Ticks of a websocket capture: per line a receive time, then a raw Binance frame.

    Parameters
    ----------
    rows : iterable of bytes
        The file's lines.
    fmt : {"recording", "ws-session"}
        ``<recv ns> <frame>`` lines, or ``<epoch s>: <frame>`` lines after a ``<url> <-> <s>``
        header.
    wanted : frozenset of str, optional
        Unified symbols to keep (``None``: all); frames of others count as skipped.
    stats : ParseStats
        Receives the counts.
    """
    mapping = None if wanted is None else {venue_symbol(u): u for u in wanted}
    parser = BinanceParser(symbols=mapping)
    parser.stats = stats
    parse = parser.parse
    split_time: Callable[[bytes], tuple[int, bytes] | None] = (
        _split_recording if fmt == "recording" else _split_ws_session
    )
    for row in rows:
        if not row.strip():
            continue
        parts = split_time(row)
        if parts is None:
            if not WS_HEADER_LINE.match(row.strip()):
                stats.reject(REJECT_LINE)
            continue
        yield from parse(parts[1], parts[0])


def _split_recording(row: bytes) -> tuple[int, bytes] | None:
    ns, _, frame = row.partition(b" ")
    try:
        return int(ns), frame
    except ValueError:
        return None


def _split_ws_session(row: bytes) -> tuple[int, bytes] | None:
    stamp, sep, frame = row.partition(b": ")
    if not sep:
        return None
    whole, _, frac = stamp.partition(b".")
    if not (whole.isdigit() and (not frac or frac.isdigit())):
        return None
    return int(whole) * 1_000_000_000 + int(frac[:9].ljust(9, b"0") or b"0"), frame


def read_tickjson(
    rows: Iterable[bytes], wanted: frozenset[str] | None, stats: ParseStats
) -> Iterator[Tick]:
    """Ticks of tickcast's JSON Lines format (:mod:`tickcast.service.offline.tickjson`).

    ``wanted`` and ``stats`` as in :func:`read_frames`.
    """
    for row in rows:
        if not row.strip():
            continue
        try:
            tick = decode(row)
        except TickJsonError as exc:
            stats.reject(REJECT_LINE)
            logger.debug("rejected tick line: %s", exc)
            continue
        if wanted is not None and tick.symbol not in wanted:
            stats.skip(SKIP_UNSUBSCRIBED)
            continue
        if tick.kind == TRADE:
            stats.parsed_trades += 1
        else:
            stats.parsed_quotes += 1
        yield tick


def _millis(value: bytes) -> int:
    ms = int(value)
    return ms // 1000 if ms > _MICROS else ms


def read_agg_trades(rows: Iterable[bytes], symbol: str, stats: ParseStats) -> Iterator[Tick]:
    """Trades of an aggTrades CSV: agg id, price, qty, first id, last id, time, is_buyer_maker.

    ``symbol`` (unified) is the file's; a header row is passed over, other bad rows are
    rejected into ``stats``. ``recv_ns`` is the event time; microsecond times become ms.
    """
    for row in rows:
        fields = row.split(b",")
        try:
            agg_id, p, q, _, _, t, maker = fields
            price = float(p)
            size = float(q)
            event_ms = _millis(t)
            flag = maker.strip().lower()
            trade_id = agg_id.decode("ascii").strip()
        except ValueError:
            if row.strip() and not row.startswith(AGG_HEADER):
                _reject_row(stats, REJECT_LINE, row)
            continue
        if flag not in CSV_BOOLS:
            _reject_row(stats, REJECT_LINE, row)
            continue
        reason = _check_trade(price, size, event_ms)
        if reason is not None:
            _reject_row(stats, reason, row)
            continue
        stats.parsed_trades += 1
        yield _new_tick(
            Tick,
            (VENUE, symbol, TRADE, event_ms, event_ms * 1_000_000, price, size,
             -1 if flag == b"true" else 1, trade_id, 0.0, 0.0, 0.0, 0.0, 0),
        )  # fmt: skip


def read_book_ticker(rows: Iterable[bytes], symbol: str, stats: ParseStats) -> Iterator[Tick]:
    """Quotes of a bookTicker CSV: update id, bid, bid qty, ask, ask qty, transaction time,
    event time (used when the transaction time is empty or 0).

    As :func:`read_agg_trades` otherwise.
    """
    for row in rows:
        fields = row.split(b",")
        try:
            u, b, bq, a, aq, t, e = fields
            bid, bid_size, ask, ask_size = float(b), float(bq), float(a), float(aq)
            event_ms = _millis(t) if t.strip() not in (b"", b"0") else _millis(e)
            update_id = int(u)
        except ValueError:
            if row.strip() and not row.startswith(BOOK_HEADER):
                _reject_row(stats, REJECT_LINE, row)
            continue
        reason = _check_quote(bid, bid_size, ask, ask_size, event_ms)
        if reason is not None:
            _reject_row(stats, reason, row)
            continue
        stats.parsed_quotes += 1
        yield _new_tick(
            Tick,
            (VENUE, symbol, QUOTE, event_ms, event_ms * 1_000_000, 0.0, 0.0, 0, "",
             bid, bid_size, ask, ask_size, update_id),
        )  # fmt: skip


def _check_trade(price: float, size: float, event_ms: int) -> str | None:
    if not (math.isfinite(price) and math.isfinite(size)):
        return REJECT_NON_FINITE
    if price <= 0.0:
        return REJECT_PRICE
    if size < 0.0:
        return REJECT_SIZE
    return REJECT_TIME if event_ms <= 0 else None


def _check_quote(
    bid: float, bid_size: float, ask: float, ask_size: float, event_ms: int
) -> str | None:
    finite = math.isfinite
    if not (finite(bid) and finite(bid_size) and finite(ask) and finite(ask_size)):
        return REJECT_NON_FINITE
    if bid <= 0.0 or ask <= 0.0:
        return REJECT_PRICE
    if bid_size < 0.0 or ask_size < 0.0:
        return REJECT_SIZE
    if bid > ask:
        return REJECT_CROSSED
    return REJECT_TIME if event_ms <= 0 else None


def _reject_row(stats: ParseStats, reason: str, row: bytes) -> None:
    stats.reject(reason)
    logger.debug("rejected CSV row (%s): %.200r", reason, row)
