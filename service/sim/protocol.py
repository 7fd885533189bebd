"""Pure pieces of the simulated exchange's Binance USDⓈ-M wire protocol.

Routing as on the real venue since 2026-04-23: ``/public/...`` carries ``trade``,
``bookTicker`` and ``depth`` streams, ``/market/...`` carries ``aggTrade``, ``markPrice``,
``kline`` and tickers. Under each route, ``/ws/<stream>[/<stream>...]`` is a raw endpoint (each
frame is the bare event) and ``/stream?streams=a/b`` a combined one (frames are wrapped as
``{"stream": name, "data": event}``). The unrouted ``/ws`` and ``/stream`` still accept
connections and acknowledge subscriptions, but serve no ``/public`` streams.
"""

from __future__ import annotations

import gzip
from collections.abc import Container, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import parse_qs, urlsplit

import orjson

from tickcast.service.ticks import TRADE, Tick
from tickcast.service.venues.binance import venue_symbol
from tickcast.service.venues.binance_render import (
    render_book_ticker,
    render_mark_price,
    render_trade,
)
from tickcast.service.venues.binance_routes import MARKET, PUBLIC, stream_route

LEGACY: Final = "legacy"

FUNDING_PERIOD_MS: Final = 8 * 3600 * 1000
FUNDING_RATE: Final = 0.0001


@dataclass(frozen=True)
class Endpoint:
    """Where a client connected: route, raw or combined, and the streams named in the URL."""

    route: str
    combined: bool
    streams: tuple[str, ...]


def parse_endpoint(path: str) -> Endpoint | None:
    """Return the :class:`Endpoint` of a request path, or None for an unknown path (HTTP 404).

    Examples
    --------
    >>> parse_endpoint("/public/stream?streams=btcusdt@trade/btcusdt@bookTicker")
    Endpoint(route='public', combined=True, streams=('btcusdt@trade', 'btcusdt@bookTicker'))
    >>> parse_endpoint("/market/ws/btcusdt@aggTrade")
    Endpoint(route='market', combined=False, streams=('btcusdt@aggTrade',))
    >>> parse_endpoint("/ws"), parse_endpoint("/nowhere")
    (Endpoint(route='legacy', combined=False, streams=()), None)
    """
    parts = urlsplit(path)
    segments = [s for s in parts.path.split("/") if s]
    route = LEGACY
    if segments and segments[0] in (PUBLIC, MARKET):
        route = segments.pop(0)
    if not segments or segments[0] not in ("ws", "stream"):
        return None
    if segments[0] == "stream":
        if len(segments) > 1:
            return None
        values = parse_qs(parts.query).get("streams", [])
        names = [n for v in values for n in v.split("/") if n]
        return Endpoint(route, True, tuple(normalise(n) for n in names))
    return Endpoint(route, False, tuple(normalise(n) for n in segments[1:]))


def normalise(stream: str) -> str:
    """Lower-case the symbol part of a stream name (``BTCUSDT@trade`` -> ``btcusdt@trade``)."""
    symbol, at, rest = stream.partition("@")
    return f"{symbol.lower()}{at}{rest}"


def served_on(stream: str, route: str) -> bool:
    """Whether a client on ``route`` receives data for ``stream``.

    The unrouted (legacy) URL serves the ``/market`` streams only: its ``/public`` streams are
    acknowledged and then stay silent, as on the real venue.
    """
    wanted = stream_route(stream)
    if wanted is None:
        return False
    return wanted == route or (route == LEGACY and wanted == MARKET)


def combined_frame(stream: bytes, event: bytes) -> bytes:
    """Wrap an encoded event for a combined endpoint: ``{"stream":...,"data":...}``.

    Examples
    --------
    >>> combined_frame(b"btcusdt@trade", b'{"e":"trade"}')
    b'{"stream":"btcusdt@trade","data":{"e":"trade"}}'
    """
    return b'{"stream":"' + stream + b'","data":' + event + b"}"


def reply(request_id: object, result: object = None) -> bytes:
    """Encode the answer to a control request: ``{"result":...,"id":N}``."""
    return orjson.dumps({"result": result, "id": request_id})


def error_reply(request_id: object, code: int, msg: str) -> bytes:
    """Encode an error answer: ``{"error":{"code":..,"msg":..},"id":N}``."""
    return orjson.dumps({"error": {"code": code, "msg": msg}, "id": request_id})


def open_text(path: Path) -> Iterator[bytes]:
    """Yield the lines of a plain or gzipped file (detected by its magic bytes)."""
    with path.open("rb") as probe:
        gz = probe.read(2) == b"\x1f\x8b"
    with gzip.open(path, "rb") if gz else path.open("rb") as handle:
        yield from handle


@dataclass(frozen=True)
class RecordedFrame:
    """One recorded combined-stream frame: receive time (ns), stream name, raw and event bytes."""

    recv_ns: int
    stream: str
    combined: bytes
    event: bytes


def read_recording(path: Path) -> Iterator[RecordedFrame]:
    """Yield the stream frames of a ``<ns> <json>`` recording; other lines are skipped.

    Lines without a ``stream`` (REST snapshots) and unreadable lines are skipped: the replay
    serves what a client of the real venue would have received over the websocket.
    """
    for line in open_text(path):
        stamp, _, body = line.strip().partition(b" ")
        try:
            recv_ns = int(stamp)
        except ValueError:
            continue
        split = _split_combined(body)
        if split is None:
            try:
                message = orjson.loads(body)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(message, dict) or "stream" not in message or "data" not in message:
                continue
            split = str(message["stream"]), orjson.dumps(message["data"])
        yield RecordedFrame(recv_ns, normalise(split[0]), body, split[1])


def _split_combined(body: bytes) -> tuple[str, bytes] | None:
    """Cut ``{"stream":"NAME","data":EVENT}`` into ``(NAME, EVENT)`` without parsing EVENT.

    Returns None for any other layout (the caller then parses the frame properly).

    Examples
    --------
    >>> _split_combined(b'{"stream":"btcusdt@trade","data":{"e":"trade"}}')
    ('btcusdt@trade', b'{"e":"trade"}')
    >>> _split_combined(b'{"data":{},"stream":"x"}') is None
    True
    """
    head = b'{"stream":"'
    if not (body.startswith(head) and body.endswith(b"}")):
        return None
    end = body.find(b'"', len(head))
    if end < 0 or body[end : end + 9] != b'","data":' or b"\\" in body[len(head) : end]:
        return None
    return body[len(head) : end].decode(), body[end + 9 : -1]


class MarketRenderer:
    """Turn market ticks into the venue's stream events, each encoded once.

    A trade becomes ``<id>@trade`` and ``<id>@aggTrade`` (one aggregate per trade, numbered
    from 1 per symbol); a quote becomes ``<id>@bookTicker``; every second of event time a symbol
    also gets ``<id>@markPrice@1s`` (and every third second ``<id>@markPrice``) at its last mid
    or trade price. Only the streams in ``wanted`` are rendered; the numbering advances anyway.

    Examples
    --------
    >>> from tickcast.service.ticks import trade
    >>> t = trade("sim", "BTC/USDT:USDT", 1_767_225_600_000, 0, 60000.5, 0.002, -1, "7")
    >>> [stream for stream, _ in MarketRenderer().events(t, {"btcusdt@aggTrade"})]
    ['btcusdt@aggTrade']
    """

    def __init__(self) -> None:
        self._agg_ids: dict[str, int] = {}
        self._last_price: dict[str, float] = {}
        self._next_mark_ms: dict[str, int] = {}
        self._names: dict[str, str] = {}

    def events(self, tick: Tick, wanted: Container[str]) -> list[tuple[str, bytes]]:
        """The ``(stream, encoded event)`` pairs of ``tick`` for the streams in ``wanted``."""
        symbol = tick.symbol
        name = self._names.get(symbol)
        if name is None:
            name = self._names[symbol] = venue_symbol(symbol).lower()
        out: list[tuple[str, bytes]] = []
        if tick.kind == TRADE:
            self._last_price[symbol] = tick.price
            agg_id = self._agg_ids[symbol] = self._agg_ids.get(symbol, 0) + 1
            if f"{name}@trade" in wanted:
                out.append((f"{name}@trade", orjson.dumps(render_trade(tick))))
            if f"{name}@aggTrade" in wanted:
                event = render_trade(tick, agg=True, agg_id=agg_id)
                out.append((f"{name}@aggTrade", orjson.dumps(event)))
        else:
            self._last_price[symbol] = 0.5 * (tick.bid + tick.ask)
            if f"{name}@bookTicker" in wanted:
                out.append((f"{name}@bookTicker", orjson.dumps(render_book_ticker(tick))))
        if tick.event_ms >= self._next_mark_ms.get(symbol, 0):
            out.extend(self._mark_price(symbol, name, tick.event_ms, wanted))
        return out

    def _mark_price(
        self, symbol: str, name: str, event_ms: int, wanted: Container[str]
    ) -> list[tuple[str, bytes]]:
        self._next_mark_ms[symbol] = (event_ms // 1000 + 1) * 1000
        streams = [f"{name}@markPrice@1s"]
        if (event_ms // 1000) % 3 == 0:
            streams.append(f"{name}@markPrice")
        streams = [s for s in streams if s in wanted]
        if not streams:
            return []
        mark = self._last_price[symbol]
        next_funding = (event_ms // FUNDING_PERIOD_MS + 1) * FUNDING_PERIOD_MS
        event = orjson.dumps(
            render_mark_price(
                venue_symbol(symbol), event_ms, mark, mark, FUNDING_RATE, next_funding
            )
        )
        return [(s, event) for s in streams]
