"""What Binance's two futures venues share: subscriptions, keepalive, frame classification.

:class:`BinanceFutures` subscribes ``trade`` and ``bookTicker`` (optionally ``aggTrade`` and
``markPrice@1s``) by URL, one combined-stream connection per route (``/stream?streams=a/b``), or
by a ``SUBSCRIBE`` message on ``/ws``. Keepalive is the websocket protocol's own: the server
pings every 3 minutes (the websockets library answers), the client pings every 20 s. Trade ids
are consecutive per symbol, so the shell counts gaps; connections are cut by the venue after
24 h, so the shell renews them before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import ClassVar, Final

import orjson

from tickcast.service.venues.binance.dialect import BinanceDialect
from tickcast.service.venues.binance.parse import BinanceParser
from tickcast.service.venues.binance.streams import PUBLIC, stream_route
from tickcast.service.venues.markets import MarketInfo
from tickcast.service.venues.venue import ACK, DATA, ERROR, Connection, Control, Keepalive, Venue

#: Most streams per connection (the venue allows 1024; URLs stay short below this).
STREAMS_PER_CONNECTION: Final = 200


class BinanceFutures(Venue):
    """Binance futures market data (see the module docstring).

    Parameters
    ----------
    channels : sequence of str
        Per-symbol channels: ``trade``, ``bookTicker`` (public route), ``aggTrade``,
        ``markPrice@1s`` (market route).
    subscribe_by : {"url", "message"}
        Combined-stream URL, or ``/ws`` plus a ``SUBSCRIBE`` message.
    """

    routed: ClassVar[bool] = True
    channels = "`trade`, `bookTicker`"
    keepalive = Keepalive(ws_ping=True, ping_every_s=20.0)
    max_connection_s = 24 * 3600.0
    sequential_trade_ids = True
    subscribe_per_s = 5.0

    def __init__(
        self, channels: Sequence[str] = ("trade", "bookTicker"), subscribe_by: str = "url"
    ) -> None:
        if subscribe_by not in ("url", "message"):
            raise ValueError(f"subscribe_by must be 'url' or 'message', not {subscribe_by!r}")
        for channel in channels:
            if stream_route(f"x@{channel}") is None:
                raise ValueError(f"unknown Binance channel {channel!r}")
        self.stream_channels = tuple(channels)
        self.subscribe_by = subscribe_by

    def parser(self, markets: Iterable[MarketInfo] | None = None, label: str = "") -> BinanceParser:
        """A :class:`BinanceParser` of this venue's ids and contract sizes."""
        return BinanceParser(label or self.name, markets, self.derive)

    def recognises(self, raw: bytes) -> bool:
        """A Binance event (``"e":``) or combined-stream frame whose id this venue names.

        Examples
        --------
        >>> from tickcast.service.venues.binance.coinm import VENUE as COINM
        >>> from tickcast.service.venues.binance.usdm import VENUE as USDM
        >>> frame = b'{"stream":"btcusd_perp@trade","data":{"e":"trade","s":"BTCUSD_PERP"}}'
        >>> COINM.recognises(frame), USDM.recognises(frame)
        (True, False)
        """
        if b'"e":' not in raw:
            return False
        start = raw.find(b'"s":"')
        if start < 0:
            return False
        end = raw.find(b'"', start + 5)
        return self.derive(raw[start + 5 : end].decode(errors="replace")) is not None

    def streams(self, markets: Sequence[MarketInfo]) -> dict[str, list[str]]:
        """Stream names by route (``btcusdt@trade``...)."""
        by_route: dict[str, list[str]] = {}
        for market in markets:
            lower = market.venue_id.lower()
            for channel in self.stream_channels:
                name = f"{lower}@{channel}"
                route = stream_route(name) if self.routed else PUBLIC
                by_route.setdefault(route or PUBLIC, []).append(name)
        return by_route

    def connections(
        self, markets: Sequence[MarketInfo], urls: Mapping[str, str]
    ) -> list[Connection]:
        """One combined-stream connection per route and :data:`STREAMS_PER_CONNECTION` streams."""
        out: list[Connection] = []
        for route, names in self.streams(markets).items():
            base = urls[route].rstrip("/")
            for i in range(0, len(names), STREAMS_PER_CONNECTION):
                chunk = names[i : i + STREAMS_PER_CONNECTION]
                label = route if i == 0 else f"{route}-{i // STREAMS_PER_CONNECTION + 1}"
                if self.subscribe_by == "url":
                    out.append(Connection(label, f"{base}/stream?streams={'/'.join(chunk)}"))
                else:
                    request = {"method": "SUBSCRIBE", "params": chunk, "id": 1}
                    out.append(Connection(label, f"{base}/ws", (orjson.dumps(request),)))
        return out

    def classify(self, raw: bytes) -> Control:
        """Acks (``{"result":null,"id":N}``) and error answers; anything else is data.

        Examples
        --------
        >>> from tickcast.service.venues.binance.usdm import VENUE
        >>> VENUE.classify(b'{"result":null,"id":1}').kind, VENUE.classify(b'{"e":"x"}').kind
        ('ack', 'data')
        """
        if raw[:1] != b"{" or b'"id"' not in raw:
            return Control(DATA)
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return Control(DATA)
        if type(msg) is dict and "id" in msg:
            if "error" in msg:
                return Control(ERROR, detail=str(msg["error"]))
            if "result" in msg:
                return Control(ACK)
        return Control(DATA)

    def dialect(self) -> BinanceDialect:
        """The server side, routed as this venue is."""
        return BinanceDialect(self, self.routed)
