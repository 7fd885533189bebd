"""The simulated exchange's side of the Binance futures protocol (USDⓈ-M and COIN-M).

USDⓈ-M is routed as on the real venue since 2026-04-23: ``/public/...`` carries ``trade``,
``bookTicker`` and ``depth`` streams, ``/market/...`` carries ``aggTrade``, ``markPrice``,
``kline`` and tickers. Under each route, ``/ws/<stream>[/<stream>...]`` is a raw endpoint (each
frame is the bare event) and ``/stream?streams=a/b`` a combined one (frames are wrapped as
``{"stream": name, "data": event}``). The unrouted ``/ws`` and ``/stream`` still accept
connections and acknowledge subscriptions, but serve no ``/public`` streams. COIN-M is not
routed: ``/ws`` and ``/stream`` serve every stream.

Control messages: ``SUBSCRIBE`` / ``UNSUBSCRIBE`` (answered ``{"result":null,"id":N}``) and
``LIST_SUBSCRIPTIONS``; the server sends websocket pings every 3 minutes and waits 10 for the
pong. A ``<ns> <json>`` recording of the venue can be replayed as it was received
(:func:`read_recording`).
"""

from __future__ import annotations

import gzip
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, urlsplit

import orjson

from tickcast.service.ticks import TRADE, Tick
from tickcast.service.venues.binance.render import (
    render_book_ticker,
    render_mark_price,
    render_trade,
)
from tickcast.service.venues.binance.streams import MARKET, PUBLIC, stream_route
from tickcast.service.venues.markets import MarketInfo
from tickcast.service.venues.venue import Dialect, Endpoint, Renderer, Reply, SimKeepalive

if TYPE_CHECKING:
    from tickcast.service.venues.venue import Venue

LEGACY: Final = "legacy"
"""The route of the unrouted USDⓈ-M URLs (``/ws``, ``/stream``)."""

FUNDING_PERIOD_MS: Final = 8 * 3600 * 1000
FUNDING_RATE: Final = 0.0001

#: Malformed frames the ``malformed_every`` fault cycles through: broken JSON, a non-object, a
#: bad price, a NaN size, an unknown event type, a trade with a missing field, bid above ask.
MALFORMED_FRAMES: Final[tuple[bytes, ...]] = (
    b'{"stream":"btcusdt@trade","data":{"e":"trade","E":17',
    b"not json at all",
    b"[1,2,3]",
    b'{"e":"trade","E":1,"T":1,"s":"BTCUSDT","t":1,"p":"-5","q":"1","X":"MARKET","m":false}',
    b'{"e":"trade","E":1,"T":1,"s":"BTCUSDT","t":1,"p":"100","q":"NaN","X":"MARKET","m":true}',
    b'{"e":"mysteryEvent","E":1,"s":"BTCUSDT"}',
    b'{"e":"trade","E":1,"T":1,"s":"BTCUSDT","p":"100.0","X":"MARKET","m":true}',
    b'{"e":"bookTicker","u":1,"s":"BTCUSDT","b":"101","B":"1","a":"100","A":"1","T":1,"E":1}',
)


def parse_endpoint(path: str, routed: bool = True) -> Endpoint | None:
    """Return the :class:`Endpoint` of a request path, or None for an unknown path (HTTP 404).

    Examples
    --------
    >>> parse_endpoint("/public/stream?streams=btcusdt@trade/btcusdt@bookTicker")
    Endpoint(route='public', topics=('btcusdt@trade', 'btcusdt@bookTicker'), combined=True)
    >>> parse_endpoint("/market/ws/btcusdt@aggTrade")
    Endpoint(route='market', topics=('btcusdt@aggTrade',), combined=False)
    >>> parse_endpoint("/ws"), parse_endpoint("/nowhere")
    (Endpoint(route='legacy', topics=(), combined=False), None)
    >>> parse_endpoint("/public/ws", routed=False) is None
    True
    """
    parts = urlsplit(path)
    segments = [s for s in parts.path.split("/") if s]
    route = LEGACY if routed else PUBLIC
    if routed and segments and segments[0] in (PUBLIC, MARKET):
        route = segments.pop(0)
    if not segments or segments[0] not in ("ws", "stream"):
        return None
    if segments[0] == "stream":
        if len(segments) > 1:
            return None
        values = parse_qs(parts.query).get("streams", [])
        names = [n for v in values for n in v.split("/") if n]
        return Endpoint(route, _streams(names), combined=True)
    return Endpoint(route, _streams(segments[1:]))


def _streams(names: Sequence[str]) -> tuple[str, ...]:
    """The stream names among ``names``, normalised (``/ws/0``'s ``0`` is none)."""
    return tuple(n for n in map(normalise, names) if stream_route(n) is not None)


def normalise(stream: str) -> str:
    """Lower-case the symbol part of a stream name (``BTCUSDT@trade`` -> ``btcusdt@trade``)."""
    symbol, at, rest = stream.partition("@")
    return f"{symbol.lower()}{at}{rest}"


def served_on(stream: str, route: str) -> bool:
    """Whether a client on USDⓈ-M ``route`` receives data for ``stream``.

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


class BinanceDialect(Dialect):
    """The server side of Binance futures: routed (USDⓈ-M) or not (COIN-M)."""

    keepalive = SimKeepalive(ws_ping_s=180.0, ws_ping_timeout_s=600.0)

    def __init__(self, venue: Venue, routed: bool) -> None:
        self.venue = venue
        self.routed = routed

    def endpoint(self, path: str) -> Endpoint | None:
        """See :func:`parse_endpoint`."""
        return parse_endpoint(path, self.routed)

    def served(self, topic: str, endpoint: Endpoint) -> bool:
        """Every stream on COIN-M; USDⓈ-M streams on their route (see :func:`served_on`)."""
        if not self.routed:
            return stream_route(topic) is not None
        return served_on(topic, endpoint.route)

    def frame(self, topic: str, event: bytes, endpoint: Endpoint) -> bytes:
        """Wrapped for combined endpoints, bare otherwise."""
        return combined_frame(topic.encode(), event) if endpoint.combined else event

    def on_message(self, message: bytes, requested: Sequence[str]) -> Reply:
        """Answer one ``SUBSCRIBE`` / ``UNSUBSCRIBE`` / ``LIST_SUBSCRIPTIONS`` request."""
        try:
            request: Any = orjson.loads(message)
        except orjson.JSONDecodeError:
            return Reply((error_reply(None, 3, "Invalid JSON"),))
        if not isinstance(request, dict):
            return Reply((error_reply(None, 3, "Invalid request"),))
        method, params, rid = request.get("method"), request.get("params"), request.get("id")
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not (isinstance(params, list) and all(isinstance(p, str) for p in params)):
                return Reply((error_reply(rid, 2, "Invalid request: params"),))
            names = tuple(n for n in map(normalise, params) if stream_route(n) is not None)
            if method == "SUBSCRIBE":
                return Reply((reply(rid),), subscribe=names, request=True)
            return Reply((reply(rid),), unsubscribe=names, request=True)
        if method == "LIST_SUBSCRIPTIONS":
            return Reply((reply(rid, list(requested)),))
        return Reply((error_reply(rid, 1, f"Unknown method {method!r}"),))

    def renderer(self) -> MarketRenderer:
        """A :class:`MarketRenderer` on the venue's simulated markets."""
        return MarketRenderer(self.venue.assumed_market)

    def malformed(self) -> tuple[bytes, ...]:
        """:data:`MALFORMED_FRAMES`."""
        return MALFORMED_FRAMES


class MarketRenderer(Renderer):
    """Turn market ticks into the venue's stream events, each encoded once.

    A trade becomes ``<id>@trade`` and ``<id>@aggTrade`` (one aggregate per trade, numbered
    from 1 per symbol); a quote becomes ``<id>@bookTicker``; every second of event time a symbol
    also gets ``<id>@markPrice@1s`` (and every third second ``<id>@markPrice``) at its last mid
    or trade price. Only the streams in ``wanted`` are rendered; the numbering advances anyway.

    Parameters
    ----------
    market_of : callable
        Unified symbol -> its :class:`MarketInfo` (venue id, contract size).

    Examples
    --------
    >>> from tickcast.service.ticks import trade
    >>> from tickcast.service.venues.binance.usdm import VENUE
    >>> t = trade("sim", "BTC/USDT:USDT", 1_767_225_600_000, 0, 60000.5, 0.002, -1, "7")
    >>> render = MarketRenderer(VENUE.assumed_market)
    >>> [stream for stream, _ in render.events(t, {"btcusdt@aggTrade"})]
    ['btcusdt@aggTrade']
    """

    def __init__(self, market_of: Any) -> None:
        self._market_of = market_of
        self._agg_ids: dict[str, int] = {}
        self._last_price: dict[str, float] = {}
        self._next_mark_ms: dict[str, int] = {}
        self._markets: dict[str, tuple[MarketInfo, str]] = {}

    def events(self, tick: Tick, wanted: Collection[str]) -> list[tuple[str, bytes]]:
        """The ``(stream, encoded event)`` pairs of ``tick`` for the streams in ``wanted``."""
        symbol = tick.symbol
        known = self._markets.get(symbol)
        if known is None:
            market = self._market_of(symbol)
            known = self._markets[symbol] = (market, market.venue_id.lower())
        market, name = known
        out: list[tuple[str, bytes]] = []
        if tick.kind == TRADE:
            self._last_price[symbol] = tick.price
            agg_id = self._agg_ids[symbol] = self._agg_ids.get(symbol, 0) + 1
            if f"{name}@trade" in wanted:
                out.append((f"{name}@trade", orjson.dumps(render_trade(tick, market))))
            if f"{name}@aggTrade" in wanted:
                event = render_trade(tick, market, agg=True, agg_id=agg_id)
                out.append((f"{name}@aggTrade", orjson.dumps(event)))
        else:
            self._last_price[symbol] = 0.5 * (tick.bid + tick.ask)
            if f"{name}@bookTicker" in wanted:
                event = render_book_ticker(tick, market)
                out.append((f"{name}@bookTicker", orjson.dumps(event)))
        if tick.event_ms >= self._next_mark_ms.get(symbol, 0):
            out.extend(self._mark_price(symbol, market.venue_id, name, tick.event_ms, wanted))
        return out

    def _mark_price(
        self, symbol: str, venue_id: str, name: str, event_ms: int, wanted: Collection[str]
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
            render_mark_price(venue_id, event_ms, mark, mark, FUNDING_RATE, next_funding)
        )
        return [(s, event) for s in streams]


# -- replaying a recording -------------------------------------------------------------------


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
