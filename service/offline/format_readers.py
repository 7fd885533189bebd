"""One reader per recorded-data format: the lines of one file in, ticks out.

Each reader takes a file's lines (decompressed, the first one included), yields its ticks in file
order and counts every tick made, line skipped and line rejected into a
:class:`~tickcast.service.venues.base.ParseStats`; a malformed line is counted, never raised.
Telling the format of a file, opening it and merging files by event time is
:mod:`tickcast.service.offline.readers`, which also describes each format.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Final

from tickcast.service.offline.tickjson import TickJsonError, decode
from tickcast.service.ticks import QUOTE, TRADE, Tick, invalid_reason
from tickcast.service.venues.base import REJECT_LINE, SKIP_UNSUBSCRIBED, ParseStats
from tickcast.service.venues.markets import MarketInfo
from tickcast.service.venues.registry import VENUES, venue
from tickcast.service.venues.venue import Venue

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
_HELD_MAX: Final = 1000
"""Frames read before the venue of a capture is known, at most (then Binance USDⓈ-M)."""
_FALLBACK: Final = "binanceusdm"
_new_tick = tuple.__new__


def detect_venue(frame: bytes) -> Venue | None:
    """The registered venue whose market-data layout ``frame`` has, if any.

    Examples
    --------
    >>> detect_venue(b'{"e":"trade","s":"BTCUSD_PERP","p":"1"}').name
    'binancecoinm'
    >>> detect_venue(b'{"result":null,"id":1}') is None
    True
    """
    for name in VENUES:
        candidate = venue(name)
        if candidate.recognises(frame):
            return candidate
    return None


def read_frames(
    rows: Iterable[bytes], fmt: str, wanted: frozenset[str] | None, stats: ParseStats
) -> Iterator[Tick]:
    """Ticks of a websocket capture: per line a receive time, then a raw frame of a venue.

    The venue is told by the first frame one of the registered venues recognises
    (:func:`detect_venue`); frames before it carry no tick (acks, snapshots) and are parsed
    as that venue's once it is known.

    Parameters
    ----------
    rows : iterable of bytes
        The file's lines.
    fmt : {"recording", "ws-session"}
        ``<recv ns> <frame>`` lines, or ``<epoch s>: <frame>`` lines after a ``<url> <-> <s>``
        header.
    wanted : frozenset of str, optional
        Unified symbols to keep (``None``: all); ticks of others count as skipped.
    stats : ParseStats
        Receives the counts.
    """
    split_time: Callable[[bytes], tuple[int, bytes] | None] = (
        _split_recording if fmt == "recording" else _split_ws_session
    )
    rows = iter(rows)
    held: list[tuple[int, bytes]] = []  # frames before the venue is known
    parse: Callable[[bytes, int], list[Tick]] | None = None
    for row in rows:
        parts = _timed(row, split_time, stats)
        if parts is None:
            continue
        held.append(parts)
        found = detect_venue(parts[1])
        if found is not None or len(held) > _HELD_MAX:
            parse = _frame_parser(found or venue(_FALLBACK), stats)
            break
    if parse is None:
        if not held:
            return
        parse = _frame_parser(venue(_FALLBACK), stats)
    for recv_ns, frame in held:
        yield from _kept(parse(frame, recv_ns), wanted, stats)
    yield from _parsed(rows, split_time, parse, wanted, stats)


def _timed(
    row: bytes, split_time: Callable[[bytes], tuple[int, bytes] | None], stats: ParseStats
) -> tuple[int, bytes] | None:
    """``(receive ns, frame)`` of a line; None for a blank line, a header, or a bad line
    (counted)."""
    if not row or row.isspace():
        return None
    parts = split_time(row)
    if parts is None and not WS_HEADER_LINE.match(row.strip()):
        stats.reject(REJECT_LINE)
    return parts


def _parsed(
    rows: Iterator[bytes],
    split_time: Callable[[bytes], tuple[int, bytes] | None],
    parse: Callable[[bytes, int], list[Tick]],
    wanted: frozenset[str] | None,
    stats: ParseStats,
) -> Iterator[Tick]:
    """The ticks of the remaining lines, once the venue is known (the reader's hot loop:
    ``<ns> <frame>`` lines are split inline)."""
    if split_time is not _split_recording:
        for row in rows:
            parts = _timed(row, split_time, stats)
            if parts is not None:
                yield from _kept(parse(parts[1], parts[0]), wanted, stats)
        return
    for row in rows:
        ns, _, frame = row.partition(b" ")
        try:
            recv_ns = int(ns)
        except ValueError:
            _timed(row, split_time, stats)  # blank, a header, or counted as a bad line
            continue
        if wanted is None:
            yield from parse(frame, recv_ns)
        else:
            yield from _kept(parse(frame, recv_ns), wanted, stats)


def _frame_parser(found: Venue, stats: ParseStats) -> Callable[[bytes, int], list[Tick]]:
    parser = found.parser()
    parser.stats = stats
    logger.debug("frames of %s", found.name)
    return parser.parse


def _kept(ticks: list[Tick], wanted: frozenset[str] | None, stats: ParseStats) -> list[Tick]:
    if wanted is None or not ticks:
        return ticks
    kept = [t for t in ticks if t.symbol in wanted]
    if len(kept) < len(ticks):
        stats.skip(SKIP_UNSUBSCRIBED, len(ticks) - len(kept))
    return kept


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


def read_agg_trades(
    rows: Iterable[bytes], market: MarketInfo, label: str, stats: ParseStats
) -> Iterator[Tick]:
    """Trades of an aggTrades CSV: agg id, price, qty, first id, last id, time, is_buyer_maker.

    ``market`` is the file's (its quantities are contracts: COIN-M files are converted to base
    units), ``label`` the venue label of the ticks; a header row is passed over, other bad rows
    are rejected into ``stats``. ``recv_ns`` is the event time; microsecond times become ms.
    """
    symbol, convert = market.symbol, market.contract_size != 1.0 or not market.linear
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
        if convert and price > 0.0:
            size = market.base_size(size, price)
        tick = _new_tick(
            Tick,
            (label, symbol, TRADE, event_ms, event_ms * 1_000_000, price, size,
             -1 if flag == b"true" else 1, trade_id, 0.0, 0.0, 0.0, 0.0, 0),
        )  # fmt: skip
        if _admitted(tick, stats, row):
            yield tick


def read_book_ticker(
    rows: Iterable[bytes], market: MarketInfo, label: str, stats: ParseStats
) -> Iterator[Tick]:
    """Quotes of a bookTicker CSV: update id, bid, bid qty, ask, ask qty, transaction time,
    event time (used when the transaction time is empty or 0).

    As :func:`read_agg_trades` otherwise.
    """
    symbol, convert = market.symbol, market.contract_size != 1.0 or not market.linear
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
        if convert and bid > 0.0 and ask > 0.0:
            bid_size, ask_size = market.base_size(bid_size, bid), market.base_size(ask_size, ask)
        tick = _new_tick(
            Tick,
            (label, symbol, QUOTE, event_ms, event_ms * 1_000_000, 0.0, 0.0, 0, "",
             bid, bid_size, ask, ask_size, update_id),
        )  # fmt: skip
        if _admitted(tick, stats, row):
            yield tick


def _admitted(tick: Tick, stats: ParseStats, row: bytes) -> bool:
    """Validate ``tick`` (the one tick validation), counting it as parsed or rejected."""
    reason = invalid_reason(tick)
    if reason is not None:
        _reject_row(stats, reason, row)
        return False
    if tick.kind == TRADE:
        stats.parsed_trades += 1
    else:
        stats.parsed_quotes += 1
    return True


def _reject_row(stats: ParseStats, reason: str, row: bytes) -> None:
    stats.reject(reason)
    logger.debug("rejected CSV row (%s): %.200r", reason, row)
