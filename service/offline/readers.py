"""Recorded market data -> ticks: every supported file format, merged across files by event time.

Accepted formats, recognised from the content of the first non-empty line (never from the file
name), after transparent decompression of gzip (``1f 8b``) and zip (one member) files:

``recording``
    ``<recv ns> <raw JSON frame>`` per line, as captured from a venue's websocket
    (``../shared/data/binance-usdm-btcusdt-20240808.gz``); the venue is told by the frames
    (Binance USDⓈ-M or COIN-M, Bybit, OKX, Bitget, BitMEX...: see
    :func:`~tickcast.service.offline.format_readers.detect_venue`) and its parser reads them
    with the line's receive time.
``ws-session``
    ``<url> <-> <epoch s>`` then ``<epoch s>: <raw JSON frame>`` per line (the older capture
    layout of ``recording-2021-07-22.ws.txt``); frames as above, receive time from the line.
``aggTrades``
    Binance public-data ``aggTrades`` CSV: ``agg_trade_id, price, quantity, first_trade_id,
    last_trade_id, transact_time, is_buyer_maker``, with or without the header row.
``bookTicker``
    Binance public-data ``bookTicker`` CSV: ``update_id, best_bid_price, best_bid_qty,
    best_ask_price, best_ask_qty, transaction_time, event_time``, with or without the header.
``tickjson``
    tickcast's own JSON Lines tick format (:mod:`tickcast.service.offline.tickjson`).

The CSV files do not name their symbol: it is read from the file name, as Binance names them
(``BTCUSDT-aggTrades-2024-08-08.csv`` for USDⓈ-M, ``BTCUSD_PERP-aggTrades-...`` for COIN-M,
whose quantities in contracts are converted to base units; ``.csv.gz``, ``.zip``), unless
``symbol=`` is given. CSV ticks get ``recv_ns = event_ms * 1_000_000``. Times above 10^14
(microseconds, as in newer public-data files) are converted to milliseconds.

Each file is read as a stream, line by line, and is assumed to be (roughly) in event-time
order, as captures and public-data files are; :func:`read_ticks` merges files with
``heapq.merge`` on ``(event_ms, file index, line number)``, which is stable and keeps each
file's own order, but does not re-sort a file that is out of order. Malformed lines are counted
in a :class:`~tickcast.service.venues.base.ParseStats` and skipped, never raised.

This module tells the format of a file, opens it and merges files; the reader of each format is
in :mod:`tickcast.service.offline.format_readers`.
"""

from __future__ import annotations

import gzip
import heapq
import itertools
import logging
import re
import zipfile
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final, Protocol

import orjson

from tickcast.service import TickcastError
from tickcast.service.offline.format_readers import (
    AGG_HEADER,
    BOOK_HEADER,
    CSV_BOOLS,
    WS_HEADER_LINE,
    read_agg_trades,
    read_book_ticker,
    read_frames,
    read_tickjson,
)
from tickcast.service.offline.tickjson import VERSION
from tickcast.service.ticks import Tick
from tickcast.service.venues.base import ParseStats
from tickcast.service.venues.markets import MarketError, MarketInfo, derived_market
from tickcast.service.venues.registry import venue

__all__ = ["FORMATS", "RecordingFormatError", "detect_format", "iter_file", "read_ticks"]

logger = logging.getLogger(__name__)

#: The formats :func:`iter_file` recognises, as named in error messages.
FORMATS: Final = ("recording", "ws-session", "aggTrades", "bookTicker", "tickjson")

_GZIP_MAGIC: Final = b"\x1f\x8b"
_ZIP_MAGIC: Final = b"PK\x03\x04"
_RECORDING_LINE = re.compile(rb"^\d+ [\[{]")
_WS_FRAME_LINE = re.compile(rb"^\d+(\.\d+)?: [\[{]")
_CSV_NAME = re.compile(r"^([A-Z0-9]+(?:_(?:\d{6}|PERP))?)-(?:aggTrades|bookTicker)-")
_ACCEPTED: Final = (
    "accepted formats: '<ns> <json frame>' recordings, '<ts>: <json frame>' ws sessions, "
    "Binance public-data aggTrades and bookTicker CSV, tickcast JSONL ticks"
)


class RecordingFormatError(TickcastError):
    """A file whose format is not one of :data:`FORMATS` (or whose symbol cannot be told)."""


def read_ticks(
    paths: Sequence[str | Path],
    *,
    symbols: Collection[str] | None = None,
    stats: ParseStats | None = None,
    symbol: str | None = None,
) -> Iterator[Tick]:
    """Ticks of every file in ``paths``, merged in event-time order (stable across files).

    Parameters
    ----------
    paths : sequence of str or Path
        Files in any of :data:`FORMATS`, gzipped, zipped or plain, mixed freely.
    symbols : collection of str, optional
        Keep only these unified symbols (a Binance id such as ``"BTCUSDT"`` is also accepted);
        other ticks are counted as skipped ``"unsubscribed symbol"``, except that a CSV file
        of another symbol is not read at all.
    stats : ParseStats, optional
        Receives the counts of every file (ticks made, lines skipped and rejected).
    symbol : str, optional
        Symbol of CSV files whose name does not carry one (unified or Binance id).

    Raises
    ------
    RecordingFormatError
        When a file is in none of the formats (raised when that file is first read).
    """
    if len(paths) == 1:  # nothing to merge
        yield from iter_file(paths[0], symbols=symbols, stats=stats, symbol=symbol)
        return
    sources = [_keyed(iter_file(p, symbols=symbols, stats=stats, symbol=symbol), i)
               for i, p in enumerate(paths)]  # fmt: skip
    for _, _, _, tick in heapq.merge(*sources):
        yield tick


def _keyed(ticks: Iterator[Tick], index: int) -> Iterator[tuple[int, int, int, Tick]]:
    for seq, tick in enumerate(ticks):
        yield tick.event_ms, index, seq, tick


def iter_file(
    path: str | Path,
    *,
    symbols: Collection[str] | None = None,
    stats: ParseStats | None = None,
    symbol: str | None = None,
) -> Iterator[Tick]:
    """Ticks of one file, in file order (see :func:`read_ticks` for the parameters).

    Raises
    ------
    RecordingFormatError
        When the file is in none of :data:`FORMATS`. An empty file yields nothing.
    """
    path = Path(path)
    stats = stats if stats is not None else ParseStats()
    wanted = _wanted(symbols)
    with _open_lines(path) as lines:
        first = _first_line(lines)
        if first is None:
            return
        fmt = detect_format(first, path)
        logger.debug("reading %s as %s", path, fmt)
        rows = _prepend(first, lines)
        if fmt in ("recording", "ws-session"):
            yield from read_frames(rows, fmt, wanted, stats)
        elif fmt == "tickjson":
            yield from read_tickjson(rows, wanted, stats)
        else:
            label, market = _csv_market(path, symbol)
            if wanted is not None and market.symbol not in wanted:
                return
            reader = read_agg_trades if fmt == "aggTrades" else read_book_ticker
            yield from reader(rows, market, label, stats)


def detect_format(first_line: bytes, path: str | Path = "<data>") -> str:
    """Name (one of :data:`FORMATS`) of the format whose first non-empty line is ``first_line``.

    Raises
    ------
    RecordingFormatError
        When the line belongs to none of them.

    Examples
    --------
    >>> detect_format(b'1723161255088169167 {"stream":"btcusdt@trade","data":{}}')
    'recording'
    >>> detect_format(b"26129,0.01633102,4.70443515,27781,27781,1498793709153,true")
    'aggTrades'
    """
    line = first_line.strip()
    if _RECORDING_LINE.match(line):
        return "recording"
    if WS_HEADER_LINE.match(line) or _WS_FRAME_LINE.match(line):
        return "ws-session"
    if line.startswith(b"{"):
        try:
            version = orjson.loads(line).get("v")
        except (orjson.JSONDecodeError, AttributeError):
            version = None
        if version is None:
            raise RecordingFormatError(
                f"{path}: a JSON line that is not a tickcast tick; {_ACCEPTED}"
            )
        if version != VERSION or type(version) is not int:
            raise RecordingFormatError(
                f"{path}: tickcast tick format version {version!r}, this reader knows {VERSION}"
            )
        return "tickjson"
    fields = line.split(b",")
    if len(fields) >= 7:
        head = fields[0].strip().lower()
        if head == AGG_HEADER or (head.isdigit() and fields[6].strip().lower() in CSV_BOOLS):
            return "aggTrades"
        if head == BOOK_HEADER or (head.isdigit() and fields[6].strip().isdigit()):
            return "bookTicker"
    raise RecordingFormatError(f"{path}: unrecognised first line {line[:80]!r}; {_ACCEPTED}")


# ---------------------------------------------------------------------------------------------
# Opening and sniffing.


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


@contextmanager
def _open_lines(path: Path) -> Iterator[Iterator[bytes]]:
    """Binary lines of ``path``, decompressed when it is gzip or zip (by magic bytes)."""
    with path.open("rb") as raw:
        magic = raw.read(4)
        raw.seek(0)
        if magic.startswith(_GZIP_MAGIC):
            with gzip.GzipFile(fileobj=raw) as gz:
                yield _lines(gz)
        elif magic == _ZIP_MAGIC:
            with zipfile.ZipFile(raw) as archive:
                members = [m for m in archive.infolist() if not m.is_dir()]
                if len(members) != 1:
                    raise RecordingFormatError(
                        f"{path}: a zip must hold exactly one file, found {len(members)}"
                    )
                with archive.open(members[0]) as member:
                    yield _lines(member)
        else:
            yield _lines(raw)


def _lines(stream: _Readable, chunk: int = 1 << 20) -> Iterator[bytes]:
    """The lines of ``stream``, without their ``\\n``, read a chunk at a time: much faster
    than line by line through a decompressor."""
    rest = b""
    while block := stream.read(chunk):
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


def _first_line(lines: Iterator[bytes]) -> bytes | None:
    for line in lines:
        if line.strip():
            return line
    return None


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    return itertools.chain((first,), rest)


def _wanted(symbols: Collection[str] | None) -> frozenset[str] | None:
    """Unified symbols to keep; Binance ids (``BTCUSDT``, ``BTCUSD_PERP``) are accepted too."""
    if symbols is None:
        return None
    out = set()
    for s in symbols:
        if "/" in s:
            out.add(s)
            continue
        found = _binance_market(s)
        if found is None:
            raise RecordingFormatError(f"{s!r} is neither a unified symbol nor a Binance id")
        out.add(found[1].symbol)
    return frozenset(out)


def _binance_market(venue_id: str) -> tuple[str, MarketInfo] | None:
    """The Binance venue (USDⓈ-M or COIN-M) and market a futures id names, if any."""
    for name in ("binanceusdm", "binancecoinm"):
        market = venue(name).derive(venue_id)
        if market is not None:
            return name, market
    return None


def _csv_market(path: Path, symbol: str | None) -> tuple[str, MarketInfo]:
    """Venue and market of a Binance public-data CSV: from ``symbol``, else the id in its name
    (``BTCUSDT-aggTrades-...`` is USDⓈ-M, ``BTCUSD_PERP-aggTrades-...`` COIN-M)."""
    name = symbol
    if name is None:
        match = _CSV_NAME.match(path.name)
        if match is None:
            raise RecordingFormatError(
                f"{path}: cannot tell the symbol of a CSV from its name; name it like "
                "BTCUSDT-aggTrades-2024-08-08.csv or pass symbol="
            )
        name = match.group(1)
    if "/" in name:
        try:
            market = derived_market(name, "")
        except MarketError as exc:
            raise RecordingFormatError(f"{path}: {exc}") from exc
        which = "binanceusdm" if market.linear else "binancecoinm"
        return which, venue(which).assumed_market(name)
    found = _binance_market(name)
    if found is None:
        raise RecordingFormatError(f"{path}: {name!r} is not a Binance futures id")
    return found
