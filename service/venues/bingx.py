"""BingX perpetual swap (USDT-M): linear perpetuals quoted and settled in USDT (and USDC).

Wire format (``../shared/exchange-samples/bingx-swap``; the BingX API docs v3, "WebSocket
Rules"; ccxt.pro 4.5.90 ``bingx``):

- URL ``wss://open-api-swap.bingx.com/swap-market`` (USDT-M and USDC-M perpetuals share it;
  coin-M lives on another host). No subscription in the URL.
- **Every server frame is gzip-compressed and sent as a binary websocket frame**: acks, pings
  and data alike. The parser gunzips (``zlib.decompress(raw, 31)``: about 30 % cheaper than
  ``gzip.decompress``, whose header is read in Python) before ``orjson.loads``; plain JSON text
  (recorded files) is accepted as it is; a frame that starts like gzip but does not inflate is
  rejected as ``undecompressible frame``.
- Subscribe: one text message per topic, ``{"id":"<uuid>","reqType":"sub",
  "dataType":"BTC-USDT@trade"}`` (``"reqType":"unsub"`` to leave); at most 200 topics per
  connection (the 201st is refused with code 80403 ``your topic num over max 200``), and the
  venue asks for fewer than 10 subscriptions a second. A feed subscribes 5 a second, up to the
  venue's 200 topics per connection (the shell answers the pings that arrive meanwhile). Ack
  ``{"id":..,"code":0,"msg":""}`` (recorded in 2026 with ``"dataType":"","data":null``
  appended; both are read). A refused topic answers a non-zero code: ``{"id":..,"code":80015,
  "msg":"dataType not support","dataType":"","data":null}``; errors without an id
  (``{"code":100400,"msg":..,"timestamp":..}``) exist too.
- Keepalive: the server sends ``Ping`` (gzipped, binary) every 5 s and expects the text frame
  ``Pong``; the client sends no pings of its own, and the server sends no websocket pings. A
  client that does not answer is cut: a 2026 probe saw the socket close after about 30.5 s
  (six unanswered pings), which the docs do not quantify. No connection age limit is
  documented or was observed.
- ``<id>@trade``: ``{"code":0,"dataType":"ETH-USDT@trade","data":[{"q":"1.92","p":"2983.48",
  "T":1714650253104,"m":false,"s":"ETH-USDT"}, ...]}`` — a **list, newest first**, of trades:
  ``q`` size (base units), ``p`` price, ``T`` trade time (ms), ``m`` buyer is maker (the
  aggressor sold: side -1). **No trade id**: ticks carry ``trade_id ""``, and identical trades
  (same price, size, time and side) are distinct real trades — every one counts.
- ``<id>@bookTicker``: ``{"code":0,"dataType":"ETH-USDT@bookTicker","data":{"e":"bookTicker",
  "u":309869207,"E":..,"T":..,"s":"ETH-USDT","b":"2993.59","B":"13.24","a":"2993.67",
  "A":"9.78"}}``: best bid/ask, sizes in base units, update id ``u``; event time ``T``
  (falling back to ``E``). ``T`` can lag ``E`` by minutes on a quiet book (seen in 2026).
- Other channels on the same socket are skipped and counted: ``@ticker`` (24 h statistics),
  ``@markPrice``, ``@lastPrice``, ``@kline_*``, ``@depth<N>[@<ms>ms]`` and ``@incrDepth``.
- Value types are read as sent, never coerced: prices and sizes are decimal strings, times
  (``T``, ``E``) and update ids (``u``) JSON integers; a value of another JSON type (a bool,
  a float, a number for a price) is rejected as ``wrong value type``.
- Ids: ``BTC-USDT`` is ``BTC/USDT:USDT``. Sizes are base coins (ccxt's ``contractSize`` 1 for
  every linear BingX swap).

Pitfall of a third-party client: ccxt.pro's ``bingx`` de-duplicates id-less trades by default
(``options["watchTrades"]["ignoreDuplicates"]``): identical trades vanish (the 23 trades of the
recorded frame become 8).

The simulated dialect (:class:`BingxDialect`) serves ``/swap-market`` with gzip binary frames,
the venue's acks, errors and ``Ping``/``Pong`` rule, and renders a few trades of one symbol into
one push (newest first) when they share a millisecond. Besides ``@trade`` and
``@bookTicker`` it serves ``@depth<N>`` as a one-level book built from the best bid/ask:
ccxt.pro has no best-bid/ask watcher for BingX, and its order-book watcher subscribes
``<id>@depth100``. The other channels are acknowledged and stay silent.
"""

from __future__ import annotations

import logging
import re
import uuid
import zlib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from functools import cache
from typing import Any, ClassVar, Final, NamedTuple
from urllib.parse import urlsplit

import orjson

from tickcast.service.ticks import QUOTE, REJECT_SIDE, TRADE, Tick, trade_fault
from tickcast.service.venues import base
from tickcast.service.venues.base import FeedParseError, decimal_text, join_unified, split_unified
from tickcast.service.venues.binance.parse import book_ticker
from tickcast.service.venues.markets import MarketInfo, derived_market, market_table
from tickcast.service.venues.parser import VenueParser
from tickcast.service.venues.venue import (
    ACK,
    DATA,
    ERROR,
    PING,
    Connection,
    Control,
    Dialect,
    Endpoint,
    Keepalive,
    Renderer,
    Reply,
    SimKeepalive,
    Venue,
)

__all__ = [
    "VENUE",
    "BingxDialect",
    "BingxParser",
    "BingxRenderer",
    "BingxSwap",
    "bingx_id",
    "gzip_frame",
    "inflate",
    "render_book_ticker",
    "render_depth",
    "render_trades",
    "unified_symbol",
]

logger = logging.getLogger(__name__)

PUBLIC: Final = "public"
PATH: Final = "/swap-market"
CHANNELS: Final = ("trade", "bookTicker")
"""The per-symbol channels a feed subscribes."""
MAX_TOPICS: Final = 200
"""The venue's topic limit per connection (error 80403 beyond it)."""
SUBSCRIBE_PER_S: Final = 5.0
"""Subscription messages per second (the venue asks for fewer than 10)."""
QUOTE_ASSETS: Final = ("USDT", "USDC")
"""Quote (and settlement) assets of the perpetuals served on the swap URL."""

SERVER_PING: Final = b"Ping"
CLIENT_PONG: Final = b"Pong"
GZIP_MAGIC: Final = b"\x1f\x8b"
GZIP_LEVEL: Final = 1
"""Compression level of the simulated venue's frames. The real venue's level is not
observable from the frames held (the samples are stored decompressed); level 1 with a 4 KiB
window and a small hash table costs about 5 µs a frame, a sixth of zlib's defaults, for the
same size on frames this small."""
_GZIP_WBITS: Final = 16 + 12
_GZIP_MEMLEVEL: Final = 4

CODE_NOT_SUPPORTED: Final = 80015
CODE_TOO_MANY_TOPICS: Final = 80403

#: The main USDT-M perpetuals: unified symbol, id, contract size (base units), price tick.
#: Ticks: BTC-USDT's ``pricePrecision`` 1 (ccxt's recorded contracts reply) and ETH-USDT's two
#: decimals on the recorded frames; the others are not shipped (``-``).
MARKETS = """
    BTC/USDT:USDT   BTC-USDT   1  0.1
    ETH/USDT:USDT   ETH-USDT   1  0.01
    SOL/USDT:USDT   SOL-USDT   1  -
    XRP/USDT:USDT   XRP-USDT   1  -
    DOGE/USDT:USDT  DOGE-USDT  1  -
    BNB/USDT:USDT   BNB-USDT   1  -
    ADA/USDT:USDT   ADA-USDT   1  -
    LINK/USDT:USDT  LINK-USDT  1  -
    AVAX/USDT:USDT  AVAX-USDT  1  -
    LTC/USDT:USDT   LTC-USDT   1  -
    DOT/USDT:USDT   DOT-USDT   1  -
    TRX/USDT:USDT   TRX-USDT   1  -
    BCH/USDT:USDT   BCH-USDT   1  -
    SUI/USDT:USDT   SUI-USDT   1  -
    TON/USDT:USDT   TON-USDT   1  -
    NEAR/USDT:USDT  NEAR-USDT  1  -
    APT/USDT:USDT   APT-USDT   1  -
    ARB/USDT:USDT   ARB-USDT   1  -
    OP/USDT:USDT    OP-USDT    1  -
    ETC/USDT:USDT   ETC-USDT   1  -
    BTC/USDC:USDC   BTC-USDC   1  -
"""

_ID = re.compile(r"^([A-Z0-9]+)-(USDT|USDC)$")
_KLINES: Final = "1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|3d|1w|1M"
_TOPIC = re.compile(
    r"^[A-Z0-9]+-(?:USDT|USDC)@(trade|bookTicker|depth(?:5|10|20|50|100)(?:@(?:200|500)ms)?"
    rf"|incrDepth|ticker|markPrice|lastPrice|kline_(?:{_KLINES}))$"
)
_DEPTH_TOPICS: Final = tuple(
    f"depth{level}{interval}"
    for level in (5, 10, 20, 50, 100)
    for interval in ("", "@200ms", "@500ms")
)
_UUID_NAMESPACE: Final = uuid.UUID("5d1c2b7e-9a41-4f0e-8c3b-6b1f0d2a9e47")

_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError
_decompressobj = zlib.decompressobj
MAX_INFLATED: Final = 4 << 20
"""Largest inflated frame (bytes); larger ones are rejected as undecompressible."""
_ZlibError = zlib.error
_trade_fault = trade_fault
_new_tick = tuple.__new__
_KEEPALIVE_FRAMES: Final = frozenset({b"Ping", b"Pong", "Ping", "Pong"})


# -- frames and ids ---------------------------------------------------------------------------


def inflate(raw: bytes) -> bytes | None:
    """The text of a frame: gunzipped when it starts with the gzip magic bytes, else ``raw``
    itself; None when it starts like gzip and does not inflate, or inflates past
    :data:`MAX_INFLATED` bytes (a few kilobytes of gzip can hold gigabytes of zeros).

    Examples
    --------
    >>> inflate(gzip_frame(b"Ping")), inflate(b'{"code":0}'), inflate(b"\\x1f\\x8bbroken")
    (b'Ping', b'{"code":0}', None)
    """
    if raw[:2] != GZIP_MAGIC:
        return raw
    inflater = _decompressobj(31)
    try:
        text = inflater.decompress(raw, MAX_INFLATED)
    except _ZlibError:
        return None
    return text if inflater.eof else None  # else truncated, or larger than MAX_INFLATED


def gzip_frame(frame: bytes) -> bytes:
    """``frame`` as the venue sends it: one gzip member (see :data:`GZIP_LEVEL`).

    Examples
    --------
    >>> packed = gzip_frame(b"Ping")
    >>> packed[:2] == GZIP_MAGIC, zlib.decompress(packed, 31)
    (True, b'Ping')
    """
    packer = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, _GZIP_WBITS, _GZIP_MEMLEVEL)
    return packer.compress(frame) + packer.flush()


def unified_symbol(venue_id: str) -> str | None:
    """The ccxt unified symbol of a BingX perpetual id (None when it names none).

    Examples
    --------
    >>> unified_symbol("BTC-USDT"), unified_symbol("1000PEPE-USDT"), unified_symbol("BTC-USD")
    ('BTC/USDT:USDT', '1000PEPE/USDT:USDT', None)
    """
    match = _ID.match(venue_id)
    if match is None:
        return None
    return join_unified(match.group(1), match.group(2))


def bingx_id(symbol: str) -> str:
    """The BingX id of a unified USDT-M (or USDC-M) perpetual symbol.

    Raises
    ------
    FeedParseError
        When ``symbol`` is not a perpetual quoted and settled in USDT or USDC.

    Examples
    --------
    >>> bingx_id("BTC/USDT:USDT"), bingx_id("BTC/USDC:USDC")
    ('BTC-USDT', 'BTC-USDC')
    """
    parts = split_unified(symbol)
    if parts.expiry or parts.quote != parts.settle or parts.quote not in QUOTE_ASSETS:
        raise FeedParseError(
            f"BingX swap serves USDT- and USDC-settled perpetuals only, not {symbol!r}"
        )
    return f"{parts.base}-{parts.quote}"


def subscribe_request(topic: str, req_type: str = "sub") -> bytes:
    """The subscription message of ``topic``, with a UUID derived from the topic (the same on
    every connection, so that logs of an answer can be matched to its request).

    Examples
    --------
    >>> request = orjson.loads(subscribe_request("BTC-USDT@trade"))
    >>> list(request), request["reqType"], request["dataType"], len(request["id"])
    (['id', 'reqType', 'dataType'], 'sub', 'BTC-USDT@trade', 36)
    """
    request_id = str(uuid.uuid5(_UUID_NAMESPACE, f"{req_type}:{topic}"))
    return orjson.dumps({"id": request_id, "reqType": req_type, "dataType": topic})


def _other_channel_reason(data_type: str) -> str:
    """The skip reason of a data frame of a channel that makes no tick."""
    channel = data_type.partition("@")[2]
    if channel.startswith(("depth", "incrDepth")):
        return base.SKIP_DEPTH
    if channel == "markPrice":
        return base.SKIP_MARK_PRICE
    if channel in ("ticker", "lastPrice") or channel.startswith("kline_"):
        return base.SKIP_OTHER_EVENT
    return base.SKIP_UNKNOWN_EVENT


# -- the parser -------------------------------------------------------------------------------


class BingxParser(VenueParser):
    """Pure parser of BingX swap frames (gzip or plain JSON) into :class:`Tick` objects.

    Parameters
    ----------
    venue : str
        Venue label written into every tick.
    markets : iterable of MarketInfo, optional
        The subscribed markets; frames of other ids are skipped as ``"unsubscribed symbol"``.
        None: every id ``derive`` names.
    derive : callable
        The venue's naming rule (:meth:`BingxSwap.derive`).

    Examples
    --------
    >>> p = VENUE.parser()
    >>> frame = gzip_frame(b'{"code":0,"dataType":"BTC-USDT@trade","data":['
    ...     b'{"q":"0.5","p":"60000.1","T":1714650253105,"m":true,"s":"BTC-USDT"},'
    ...     b'{"q":"0.2","p":"60000.0","T":1714650253104,"m":false,"s":"BTC-USDT"}]}')
    >>> [(t.event_ms, t.price, t.size, t.side, t.trade_id) for t in p.parse(frame, 0)]
    [(1714650253104, 60000.0, 0.2, 1, ''), (1714650253105, 60000.1, 0.5, -1, '')]
    >>> p.parse(gzip_frame(b"Ping"), 0), p.stats.skipped
    ([], {'keepalive': 1})
    """

    def parse(self, raw: bytes | str, recv_ns: int) -> list[Tick]:
        """Parse one frame received at ``recv_ns`` (ns since the epoch); never raises on bad
        input.

        Returns
        -------
        list[Tick]
            The frame's ticks, trades in chronological order (empty for skipped or rejected
            frames).
        """
        if type(raw) is bytes and raw[:2] == GZIP_MAGIC:
            text = inflate(raw)
            if text is None:
                return self.reject(base.REJECT_COMPRESSED, raw)
            raw = text
        try:
            msg = _loads(raw)
        except _JSONDecodeError:
            if raw in _KEEPALIVE_FRAMES:
                self.stats.skip(base.SKIP_KEEPALIVE)
                return []
            return self.reject(base.REJECT_JSON, raw)
        if type(msg) is not dict:
            return self.reject(base.REJECT_NOT_OBJECT, raw)
        data_type = msg.get("dataType")
        if type(data_type) is str and data_type:
            if data_type.endswith("@trade"):
                return self._trades(msg.get("data"), recv_ns, msg)
            if data_type.endswith("@bookTicker"):
                return self._book_ticker(msg.get("data"), recv_ns, msg)
            reason = _other_channel_reason(data_type)
            if reason == base.SKIP_UNKNOWN_EVENT:
                logger.debug("unknown BingX dataType %r", data_type)
            self.stats.skip(reason)
            return []
        if data_type:
            return self.reject(base.REJECT_MISSING, msg)
        return self._reply(msg)

    def _reply(self, msg: dict[str, Any]) -> list[Tick]:
        """An ack (code 0 and the request's id) or an error answer (a non-zero code)."""
        code = msg.get("code")
        if code == 0 and "id" in msg:
            self.stats.skip(base.SKIP_ACK)
        elif code is not None and code != 0:
            logger.debug("BingX error reply: %r", msg)
            self.stats.skip(base.SKIP_ERROR_REPLY)
        else:
            return self.reject(base.REJECT_MISSING, msg)
        return []

    def _trades(self, data: Any, recv_ns: int, msg: dict[str, Any]) -> list[Tick]:
        """The ticks of a trade push, oldest first (the venue lists them newest first)."""
        if type(data) is not list:
            if type(data) is not dict:
                return self.reject(base.REJECT_MISSING, msg)
            data = [data]
        if not data:
            return self.reject(base.REJECT_MISSING, msg)
        # One pass, no method call per trade: a push may carry dozens of trades. The values
        # go through the one tick validation (trade_fault) as VenueParser.trade does.
        out: list[Tick] = []
        append = out.append
        venue = self.venue
        last_id: object = None
        market: MarketInfo | None = None
        symbol = ""
        for d in reversed(data):
            if type(d) is not dict:
                self.reject(base.REJECT_NOT_OBJECT, d)
                continue
            try:
                venue_id = d["s"]
                p, q, event_ms = d["p"], d["q"], d["T"]
                maker = d["m"]
                if type(p) is not str or type(q) is not str or type(event_ms) is not int:
                    self.reject(base.REJECT_TYPE, d)  # decimal strings, integer ms
                    continue
                price = float(p)
                size = float(q)
            except KeyError:
                self.reject(base.REJECT_MISSING, d)
                continue
            except ValueError:
                self.reject(base.REJECT_NOT_NUMERIC, d)
                continue
            if venue_id != last_id:
                last_id, market = venue_id, self.market(venue_id)
                symbol = market.symbol if market is not None else ""
            if market is None:
                self.unresolved(venue_id, d)
                continue
            if maker is True:
                side = -1
            elif maker is False:
                side = 1
            else:
                self.reject(REJECT_SIDE, d)
                continue
            if not market.in_base_units and price > 0.0:
                size = market.base_size(size, price)
            reason = _trade_fault(price, size, side, event_ms)
            if reason is not None:
                self.reject(reason, d)
                continue
            append(
                _new_tick(
                    Tick,
                    (venue, symbol, TRADE, event_ms, recv_ns, price, size, side, "",
                     0.0, 0.0, 0.0, 0.0, 0),
                )
            )  # fmt: skip
        self.stats.parsed_trades += len(out)
        return out

    def _book_ticker(self, d: Any, recv_ns: int, msg: dict[str, Any]) -> list[Tick]:
        if type(d) is not dict:
            return self.reject(base.REJECT_MISSING if d is None else base.REJECT_NOT_OBJECT, msg)
        return self._binance_book_ticker(d, recv_ns)

    _binance_book_ticker = book_ticker
    """Binance's reading of the same ``bookTicker`` layout."""


# -- the venue --------------------------------------------------------------------------------


class BingxSwap(Venue):
    """BingX perpetual swap, USDT-M (see the module docstring)."""

    name = "bingx"
    title = "BingX perpetual swap"
    ccxt_id = "bingx"
    routes: ClassVar[Mapping[str, str]] = {PUBLIC: "wss://open-api-swap.bingx.com/swap-market"}
    channels = "`<symbol>@trade`, `<symbol>@bookTicker`"
    keepalive = Keepalive(ping=None, ws_ping=False)
    max_connection_s = None
    sequential_trade_ids = False
    subscribe_per_s = SUBSCRIBE_PER_S

    def markets(self) -> Mapping[str, MarketInfo]:
        """The shipped table (:data:`MARKETS`)."""
        return _table()

    def venue_id(self, symbol: str) -> str:
        """``BTC/USDT:USDT`` -> ``BTC-USDT`` (see :func:`bingx_id`)."""
        return bingx_id(symbol)

    def derive(self, venue_id: str) -> MarketInfo | None:
        """Any ``<BASE>-USDT`` / ``<BASE>-USDC`` id, by the naming rule (contract size 1).

        Examples
        --------
        >>> VENUE.derive("PEPE-USDT").symbol, VENUE.derive("btc-usdt")
        ('PEPE/USDT:USDT', None)
        """
        symbol = unified_symbol(venue_id)
        if symbol is None:
            return None
        return self.markets().get(symbol) or derived_market(symbol, venue_id)

    def parser(self, markets: Iterable[MarketInfo] | None = None, label: str = "") -> BingxParser:
        """A :class:`BingxParser` of this venue's ids."""
        return BingxParser(label or self.name, markets, self.derive)

    def connections(
        self, markets: Sequence[MarketInfo], urls: Mapping[str, str]
    ) -> list[Connection]:
        """One connection per :data:`MAX_TOPICS` topics (10 markets), each sending
        one ``sub`` message per topic.

        Examples
        --------
        >>> (c,) = VENUE.connections([VENUE.market("BTC/USDT:USDT")], VENUE.routes)
        >>> c.route, [orjson.loads(m)["dataType"] for m in c.subscribe]
        ('public', ['BTC-USDT@trade', 'BTC-USDT@bookTicker'])
        """
        topics = [f"{m.venue_id}@{channel}" for m in markets for channel in CHANNELS]
        url = urls[PUBLIC]
        out: list[Connection] = []
        for i in range(0, len(topics), MAX_TOPICS):
            chunk = topics[i : i + MAX_TOPICS]
            label = PUBLIC if i == 0 else f"{PUBLIC}-{i // MAX_TOPICS + 1}"
            out.append(Connection(label, url, tuple(map(subscribe_request, chunk))))
        return out

    def classify(self, raw: bytes) -> Control:
        """The server's ``Ping`` (answered ``Pong``), acks (code 0) and error answers; anything
        else is data.

        Examples
        --------
        >>> VENUE.classify(gzip_frame(b"Ping"))
        Control(kind='ping', reply=b'Pong', detail='')
        >>> VENUE.classify(gzip_frame(b'{"id":"a","code":0,"msg":""}')).kind
        'ack'
        >>> VENUE.classify(b'{"id":"a","code":80015,"msg":"dataType not support"}').detail
        'code 80015: dataType not support (id a)'
        """
        body = inflate(raw)
        if body is None:
            return Control(DATA)
        if body == SERVER_PING:
            return Control(PING, reply=CLIENT_PONG)
        if body[:1] != b"{" or b'"code"' not in body:
            return Control(DATA)
        try:
            msg = _loads(body)
        except _JSONDecodeError:
            return Control(DATA)
        if type(msg) is not dict or msg.get("dataType"):
            return Control(DATA)
        code = msg.get("code")
        if code == 0 and "id" in msg:
            return Control(ACK)
        if code is not None and code != 0:
            detail = f"code {code}: {msg.get('msg', '')}"
            if "id" in msg:
                detail += f" (id {msg['id']})"
            return Control(ERROR, detail=detail)
        return Control(DATA)

    def recognises(self, raw: bytes) -> bool:
        """A BingX trade or best bid/ask push (gzip or plain) whose id this venue names.

        Examples
        --------
        >>> VENUE.recognises(b'{"code":0,"dataType":"ETH-USDT@trade","data":[]}')
        True
        >>> VENUE.recognises(b'{"stream":"btcusdt@trade","data":{}}')
        False
        """
        body = inflate(raw)
        if body is None:
            return False
        key = b'"dataType":"'
        start = body.find(key)
        if start < 0:
            return False
        start += len(key)
        end = body.find(b'"', start)
        venue_id, _, channel = body[start:end].decode(errors="replace").partition("@")
        return channel in CHANNELS and self.derive(venue_id) is not None

    def dialect(self) -> BingxDialect:
        """The server side (:class:`BingxDialect`)."""
        return BingxDialect(self)


@cache
def _table() -> dict[str, MarketInfo]:
    return market_table(MARKETS)


# -- rendering (the simulated venue) ----------------------------------------------------------


def _decimals(step: float | None) -> int:
    """Decimals of a price tick (0 when unknown).

    Examples
    --------
    >>> _decimals(0.1), _decimals(0.0001), _decimals(None), _decimals(5.0)
    (1, 4, 0, 0)
    """
    if step is None:
        return 0
    return len(decimal_text(step).partition(".")[2])


def render_trades(
    trades: Sequence[Tick], market: MarketInfo, price_decimals: int | None = None
) -> dict[str, object]:
    """The ``@trade`` push of ``trades`` (oldest first) on ``market``: the venue's list,
    newest first.

    Prices are decimal strings with at least ``price_decimals`` digits (default: those of the
    market's price tick), sizes in the market's contracts with as many digits as they need.

    Raises
    ------
    FeedParseError
        When ``trades`` is empty, holds a quote, or a non-finite value.

    Examples
    --------
    >>> from tickcast.service.ticks import trade
    >>> eth = VENUE.market("ETH/USDT:USDT")
    >>> a = trade("bingx", eth.symbol, 1714650252503, 0, 2984.42, 6.78, 1)
    >>> b = trade("bingx", eth.symbol, 1714650253104, 0, 2983.48, 1.92, 1)
    >>> frame = render_trades([a, b], eth)
    >>> frame["dataType"], [(d["T"], d["p"], d["q"]) for d in frame["data"]]
    ('ETH-USDT@trade', [(1714650253104, '2983.48', '1.92'), (1714650252503, '2984.42', '6.78')])
    """
    if not trades:
        raise FeedParseError("a BingX trade push needs at least one trade")
    decimals = _decimals(market.price_tick) if price_decimals is None else price_decimals
    venue_id = market.venue_id
    data: list[dict[str, object]] = []
    for tick in reversed(trades):
        if tick.kind != TRADE:
            raise FeedParseError(f"render_trades needs trade ticks, got a {tick.kind!r}")
        data.append(
            {
                "q": decimal_text(market.contracts(tick.size, tick.price)),
                "p": decimal_text(tick.price, decimals),
                "T": tick.event_ms,
                "m": tick.side == -1,
                "s": venue_id,
            }
        )
    return {"code": 0, "dataType": f"{venue_id}@trade", "data": data}


def render_book_ticker(
    tick: Tick,
    market: MarketInfo,
    price_decimals: int | None = None,
    push_ms: int | None = None,
) -> dict[str, object]:
    """The ``@bookTicker`` push of a quote tick on ``market``; ``E`` (push time) is
    ``push_ms``, by default the event time. Decimals as in :func:`render_trades`.

    Raises
    ------
    FeedParseError
        When ``tick`` is not a quote or has a non-finite value.

    Examples
    --------
    >>> from tickcast.service.ticks import quote
    >>> btc = VENUE.market("BTC/USDT:USDT")
    >>> q = quote("bingx", btc.symbol, 1725205790748, 0, 58279.4, 3.3588, 58280.0, 0.5331, 7)
    >>> data = render_book_ticker(q, btc)["data"]
    >>> data["u"], data["b"], data["B"], data["a"], data["A"]
    (7, '58279.4', '3.3588', '58280.0', '0.5331')
    """
    if tick.kind != QUOTE:
        raise FeedParseError(f"render_book_ticker needs a quote tick, got a {tick.kind!r}")
    decimals = _decimals(market.price_tick) if price_decimals is None else price_decimals
    venue_id = market.venue_id
    return {
        "code": 0,
        "dataType": f"{venue_id}@bookTicker",
        "data": {
            "e": "bookTicker",
            "u": tick.update_id,
            "E": tick.event_ms if push_ms is None else push_ms,
            "T": tick.event_ms,
            "s": venue_id,
            "b": decimal_text(tick.bid, decimals),
            "B": decimal_text(market.contracts(tick.bid_size, tick.bid)),
            "a": decimal_text(tick.ask, decimals),
            "A": decimal_text(market.contracts(tick.ask_size, tick.ask)),
        },
    }


def render_depth(
    tick: Tick, market: MarketInfo, topic: str, price_decimals: int | None = None
) -> dict[str, object]:
    """A partial-depth push (``<id>@depth<N>[@<ms>ms]``) holding the one level a quote tick
    knows per side, laid out as the venue's linear-swap depth frames (``ts`` in ms).

    Raises
    ------
    FeedParseError
        When ``tick`` is not a quote or has a non-finite value.
    """
    if tick.kind != QUOTE:
        raise FeedParseError(f"render_depth needs a quote tick, got a {tick.kind!r}")
    decimals = _decimals(market.price_tick) if price_decimals is None else price_decimals
    bid_size = decimal_text(market.contracts(tick.bid_size, tick.bid))
    ask_size = decimal_text(market.contracts(tick.ask_size, tick.ask))
    return {
        "code": 0,
        "dataType": topic,
        "ts": tick.event_ms,
        "data": {
            "bids": [[decimal_text(tick.bid, decimals), bid_size]],
            "asks": [[decimal_text(tick.ask, decimals), ask_size]],
        },
    }


class _Topics(NamedTuple):
    """One symbol's market, topic names and price decimals, for the renderer."""

    market: MarketInfo
    trade: str
    book: str
    depths: tuple[str, ...]
    price_decimals: int


class BingxRenderer(Renderer):
    """Market ticks -> BingX pushes (JSON, not yet gzipped) for the topics some client wants.

    A quote becomes ``<id>@bookTicker`` (and ``<id>@depth<N>...`` pushes for the depth topics
    wanted). Trades are held until the next tick shows whether it shares their symbol and
    millisecond: consecutive trades of one symbol in one millisecond go out together as one
    ``<id>@trade`` push, newest first, as the venue batches them; :meth:`flush` sends the
    last push of a market that ends on a trade.

    Parameters
    ----------
    market_of : callable
        Unified symbol -> its :class:`MarketInfo` (venue id, contract size, price tick).

    Examples
    --------
    >>> from tickcast.service.ticks import quote, trade
    >>> render = BingxRenderer(VENUE.assumed_market)
    >>> wanted = {"BTC-USDT@trade", "BTC-USDT@bookTicker"}
    >>> t1 = trade("sim", "BTC/USDT:USDT", 5, 0, 60000.0, 0.1, 1)
    >>> t2 = trade("sim", "BTC/USDT:USDT", 5, 0, 60000.1, 0.2, -1)
    >>> q = quote("sim", "BTC/USDT:USDT", 6, 0, 60000.0, 1.0, 60000.1, 2.0, 9)
    >>> render.events(t1, wanted), render.events(t2, wanted)
    ([], [])
    >>> [(topic, len(orjson.loads(frame)["data"])) for topic, frame in render.events(q, wanted)]
    [('BTC-USDT@trade', 2), ('BTC-USDT@bookTicker', 9)]
    """

    def __init__(self, market_of: Callable[[str], MarketInfo]) -> None:
        self._market_of = market_of
        self._topics: dict[str, _Topics] = {}
        self._held: list[Tick] = []

    def _names(self, symbol: str) -> _Topics:
        known = self._topics.get(symbol)
        if known is None:
            market = self._market_of(symbol)
            venue_id = market.venue_id
            known = self._topics[symbol] = _Topics(
                market,
                f"{venue_id}@trade",
                f"{venue_id}@bookTicker",
                tuple(f"{venue_id}@{depth}" for depth in _DEPTH_TOPICS),
                _decimals(market.price_tick),
            )
        return known

    def events(self, tick: Tick, wanted: Collection[str]) -> list[tuple[str, bytes]]:
        """The ``(topic, JSON frame)`` pairs due once ``tick`` is known (see the class)."""
        out: list[tuple[str, bytes]] = []
        held = self._held
        if held:
            first = held[0]
            if (
                tick.kind == TRADE
                and tick.event_ms == first.event_ms
                and tick.symbol == first.symbol
            ):
                held.append(tick)
                return out
            out += self._release(wanted)
        if tick.kind == TRADE:
            self._held = [tick]
            return out
        names = self._names(tick.symbol)
        if names.book in wanted:
            event = render_book_ticker(tick, names.market, names.price_decimals)
            out.append((names.book, orjson.dumps(event)))
        for topic in names.depths:
            if topic in wanted:
                event = render_depth(tick, names.market, topic, names.price_decimals)
                out.append((topic, orjson.dumps(event)))
        return out

    def flush(self, wanted: Collection[str]) -> list[tuple[str, bytes]]:
        """The push of the trades still held when the market ends."""
        return self._release(wanted) if self._held else []

    def _release(self, wanted: Collection[str]) -> list[tuple[str, bytes]]:
        """The push of the held trades, if its topic is wanted; the hold is emptied."""
        held, self._held = self._held, []
        names = self._names(held[0].symbol)
        if names.trade not in wanted:
            return []
        event = render_trades(held, names.market, names.price_decimals)
        return [(names.trade, orjson.dumps(event))]


# -- the simulated venue's protocol ---------------------------------------------------------


#: Broken frames the ``malformed_every`` fault inserts (gzipped like every frame): broken JSON,
#: a non-object, a bad price, a NaN size, an unknown channel, a trade without its time, a
#: crossed book.
MALFORMED_FRAMES: Final[tuple[bytes, ...]] = (
    b'{"code":0,"dataType":"BTC-USDT@trade","data":[{"q":"0.1","p":"6',
    b"[1,2,3]",
    b'{"code":0,"dataType":"BTC-USDT@trade","data":[{"q":"0.010","p":"-5","T":1714650253104,'
    b'"m":false,"s":"BTC-USDT"}]}',
    b'{"code":0,"dataType":"BTC-USDT@trade","data":[{"q":"NaN","p":"60000.0","T":1714650253104,'
    b'"m":true,"s":"BTC-USDT"}]}',
    b'{"code":0,"dataType":"BTC-USDT@mysteryChannel","data":{"s":"BTC-USDT"}}',
    b'{"code":0,"dataType":"BTC-USDT@trade","data":[{"q":"0.010","p":"60000.0","m":true,'
    b'"s":"BTC-USDT"}]}',
    b'{"code":0,"dataType":"BTC-USDT@bookTicker","data":{"e":"bookTicker","u":1,'
    b'"E":1714650946618,"T":1714650946596,"s":"BTC-USDT","b":"60000.1","B":"1.0",'
    b'"a":"60000.0","A":"1.0"}}',
)


def answer(request_id: object, code: int = 0, msg: str = "") -> bytes:
    """The venue's answer to a (un)subscription request: an ack for code 0, else an error.

    Examples
    --------
    >>> answer("a")
    b'{"id":"a","code":0,"msg":"","dataType":"","data":null}'
    """
    return orjson.dumps({"id": request_id, "code": code, "msg": msg, "dataType": "", "data": None})


class BingxDialect(Dialect):
    """The server side of BingX swap: ``/swap-market``, gzip binary frames, ``Ping``/``Pong``.

    Topics are the venue's: ``<id>@trade``, ``<id>@bookTicker`` and ``<id>@depth<N>[@<ms>ms]``
    are served; ``@incrDepth``, ``@ticker``, ``@markPrice``, ``@lastPrice`` and ``@kline_*`` are
    acknowledged and stay silent; any other ``dataType`` (lower-case ids, unknown channels) is
    refused with code 80015, a topic beyond the 200th with code 80403. Messages that are not a
    ``sub``/``unsub`` request get no answer, as on the venue.

    Keepalive: ``Ping`` every 5 s; a client silent for 30 s (no ``Pong``) is cut — the venue
    cut an unanswering socket after about 30.5 s in a 2026 probe (six pings), and documents
    only the 5 s ping.
    """

    keepalive = SimKeepalive(server_ping=SERVER_PING, server_ping_s=5.0, client_silence_s=30.0)
    binary = True

    def __init__(self, venue: Venue) -> None:
        self.venue = venue

    def endpoint(self, path: str) -> Endpoint | None:
        """``/swap-market`` (with any query), else None.

        Examples
        --------
        >>> VENUE.dialect().endpoint("/swap-market"), VENUE.dialect().endpoint("/market")
        (Endpoint(route='public', topics=(), combined=False), None)
        """
        return Endpoint(PUBLIC) if urlsplit(path).path == PATH else None

    def served(self, topic: str, endpoint: Endpoint) -> bool:
        """Trades, best bid/ask and partial depth are rendered; the other channels are not."""
        match = _TOPIC.match(topic)
        return match is not None and match.group(1).startswith(("trade", "bookTicker", "depth"))

    def on_message(self, message: bytes, requested: Sequence[str]) -> Reply:
        """Answer ``Pong`` (keepalive) and ``sub``/``unsub`` requests (see the class).

        Examples
        --------
        >>> d = VENUE.dialect()
        >>> d.on_message(b"Pong", ()).keepalive
        True
        >>> d.on_message(b'{"id":"1","reqType":"sub","dataType":"BTC-USDT@trade"}', ()).subscribe
        ('BTC-USDT@trade',)
        >>> d.on_message(b'{"id":"2","reqType":"sub","dataType":"btc-usdt@trade"}', ()).frames
        (b'{"id":"2","code":80015,"msg":"dataType not support","dataType":"","data":null}',)
        """
        if message == CLIENT_PONG:
            return Reply(keepalive=True)
        try:
            request: Any = orjson.loads(message)
        except orjson.JSONDecodeError:
            return Reply()
        if not isinstance(request, dict):
            return Reply()
        req_type, topic, request_id = (
            request.get("reqType"),
            request.get("dataType"),
            request.get("id"),
        )
        if req_type not in ("sub", "unsub") or not isinstance(topic, str):
            return Reply()
        if _TOPIC.match(topic) is None:
            refused = answer(request_id, CODE_NOT_SUPPORTED, "dataType not support")
            return Reply((refused,), request=True)
        if req_type == "unsub":
            return Reply((answer(request_id),), unsubscribe=(topic,), request=True)
        if topic not in requested and len(requested) >= MAX_TOPICS:
            too_many = f"your topic num over max {MAX_TOPICS}"
            return Reply((answer(request_id, CODE_TOO_MANY_TOPICS, too_many),), request=True)
        return Reply((answer(request_id),), subscribe=(topic,), request=True)

    def renderer(self) -> BingxRenderer:
        """A :class:`BingxRenderer` on the venue's simulated markets."""
        return BingxRenderer(self.venue.assumed_market)

    def malformed(self) -> tuple[bytes, ...]:
        """:data:`MALFORMED_FRAMES`."""
        return MALFORMED_FRAMES

    def encode(self, frame: bytes) -> bytes:
        """Gzip, as the venue sends every frame (:func:`gzip_frame`)."""
        return gzip_frame(frame)


VENUE = BingxSwap()
