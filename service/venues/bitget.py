"""Bitget USDT-M futures: trades and level-1 books over the v2 public websocket.

Wire format (``../shared/exchange-samples/bitget-futures``):

- URL ``wss://ws.bitget.com/v2/ws/public``. Subscribe with one text frame per batch of
  channels: ``{"op":"subscribe","args":[{"instType":"USDT-FUTURES","channel":"trade",
  "instId":"BTCUSDT"},{"instType":"USDT-FUTURES","channel":"books1","instId":"BTCUSDT"}]}``
  (``"op":"unsubscribe"`` gives them up). Each arg is acknowledged on its own:
  ``{"event":"subscribe","arg":{...}}``; a refused request is answered
  ``{"event":"error","code":30001,"msg":"..."}`` (30001: no such channel or instrument, 30003:
  invalid op, 30016: parameter error). At most 10 messages per second per connection (pings
  count); the venue cuts connections after 24 h.
- Keepalive: the client sends the text ``ping`` every 30 s and the server answers ``pong``;
  a client that has not pinged for 2 minutes is disconnected. The client sends no websocket
  ping frames.
- Data frames: ``{"action": ..., "arg": {"instType", "channel", "instId"}, "data": [...],
  "ts": push_ms}``; the symbol is only in ``arg.instId``.
- ``trade``: the first push after subscribing is ``action:"snapshot"`` — a backfill of recent
  trades, not new ones: it is skipped (:data:`~tickcast.service.venues.base.SKIP_BACKFILL`,
  once per frame). Then ``action:"update"`` pushes. Entries ``{ts (ms, string), price, size,
  side (taker buy/sell), tradeId}``, newest first (the snapshot sample, and ccxt reverses
  every push): the parser returns them in chronological order. Trade ids are neither
  consecutive nor, in the docs' own example, unique: nothing is de-duplicated on them.
- ``books1``: every push is a full level-1 snapshot ``{asks: [[px, sz]], bids: [[px, sz]],
  checksum, ts}``; one side may be empty (skipped as
  :data:`~tickcast.service.venues.base.SKIP_ONE_SIDED`). There is no update id on v2 frames
  (``update_id`` 0; a ``seq`` is read where present).
- ``ticker`` frames are skipped (:data:`~tickcast.service.venues.base.SKIP_OTHER_EVENT`),
  ``books``/``books5``/``books15`` as depth, candles as other events.
- The v3 "unified" feed (``wss://ws.bitget.com/v3/ws/public``) is Bitget's too and parses the
  same way, so that recorded v3 traffic is readable: ``arg {instType "usdt-futures", topic,
  symbol}``, trades ``publicTrade`` ``{i, p, v, S, T, L, isRPI}`` (trade id ``i``), book
  ``books1`` ``{a, b, checksum, seq, pseq, ts}`` (``update_id`` = ``seq``). The live feed and
  the simulator speak v2.
- Value types are read as sent, never coerced: prices and sizes are decimal strings, times
  (``ts``, v3 ``T``) strings of digits (``"1730332859962"``), v3's ``seq`` an integer; a
  value of another JSON type is rejected as ``wrong value type``, a time string that is not all
  digits (``"1e3"``, ``"-5"``) as ``non-numeric value``.

Ids and sizes: ``BTCUSDT`` is ``BTC/USDT:USDT`` (USDT-FUTURES), ``BTCPERP`` is ``BTC/USDC:USDC``
(USDC-FUTURES), ``DOGEUSD`` is the inverse ``DOGE/USD:DOGE`` (COIN-FUTURES). Every size on the
wire is in the base coin, inverse contracts included (``trade_update.json`` is a real
COIN-FUTURES frame: ``"size":"447"`` is 447 DOGE); ccxt gives every Bitget contract a size of
1. So the parser never converts a size, whatever a :class:`MarketInfo` says (an inverse
market's contract size would otherwise be read as USD), and the renderer writes the tick's base
size as it is.

Pitfalls: ccxt.pro 4.5.90's Bitget client de-duplicates trades by ``tradeId`` unless
``options["watchTrades"]["ignoreDuplicates"]`` is False, and it takes the subscription backfill
for new trades; tickcast's shell does neither (``sequential_trade_ids`` is False).

The simulated venue (:class:`BitgetDialect`) serves ``/v2/ws/public`` with the ``trade`` and
``books1`` channels: a new ``trade`` subscriber first gets a snapshot of the last
:data:`BACKFILL_TRADES` trades, then one update per trade; each quote is a ``books1`` snapshot.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from functools import cache
from typing import Any, ClassVar, Final, NamedTuple
from urllib.parse import urlsplit

import orjson

from tickcast.service.ticks import QUOTE, TRADE, Tick
from tickcast.service.venues import base
from tickcast.service.venues.base import FeedParseError, decimal_text, split_unified
from tickcast.service.venues.markets import MarketInfo, derived_market, market_table
from tickcast.service.venues.parser import VenueParser
from tickcast.service.venues.venue import (
    ACK,
    DATA,
    ERROR,
    PONG,
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
    "BitgetDialect",
    "BitgetFutures",
    "BitgetParser",
    "BitgetRenderer",
    "error_frame",
    "inst_type",
    "render_books1",
    "render_trades",
    "topic",
    "unified_symbol",
]

logger = logging.getLogger(__name__)

PUBLIC: Final = "public"
"""The one route: the v2 public websocket."""
PUBLIC_URL: Final = "wss://ws.bitget.com/v2/ws/public"
PING_FRAME: Final = b"ping"
PONG_FRAME: Final = b"pong"
PING_EVERY_S: Final = 30.0
CLIENT_SILENCE_S: Final = 120.0
"""The venue disconnects a client that has not pinged for this long (s)."""
MAX_CONNECTION_S: Final = 24 * 3600.0

CHANNELS_PER_CONNECTION: Final = 50
"""Channels (args) per connection, all in one subscription message: Bitget's docs advise fewer
than 50 channels per connection, and a request of 50 args stays under their 4096-byte limit."""
BACKFILL_TRADES: Final = 50
"""Recent trades the simulated venue sends in a ``trade`` snapshot."""

#: Error codes of the venue's ``{"event":"error"}`` answers.
ERR_NO_CHANNEL: Final = 30001
ERR_INVALID_OP: Final = 30003
ERR_PARAM: Final = 30016

#: The main USDT perpetuals: unified symbol, id, contract size (sizes are base coins), price
#: tick (``pricePlace`` of Bitget's contracts list, with ``priceEndStep`` 1; ``-``: unknown).
MARKETS = """
    BTC/USDT:USDT   BTCUSDT   1  0.1
    ETH/USDT:USDT   ETHUSDT   1  0.01
    SOL/USDT:USDT   SOLUSDT   1  0.001
    XRP/USDT:USDT   XRPUSDT   1  -
    DOGE/USDT:USDT  DOGEUSDT  1  -
    ADA/USDT:USDT   ADAUSDT   1  -
    BNB/USDT:USDT   BNBUSDT   1  -
    LTC/USDT:USDT   LTCUSDT   1  -
    LINK/USDT:USDT  LINKUSDT  1  -
    AVAX/USDT:USDT  AVAXUSDT  1  -
    DOT/USDT:USDT   DOTUSDT   1  -
    TRX/USDT:USDT   TRXUSDT   1  -
    BCH/USDT:USDT   BCHUSDT   1  -
    SUI/USDT:USDT   SUIUSDT   1  -
    NEAR/USDT:USDT  NEARUSDT  1  -
    APT/USDT:USDT   APTUSDT   1  -
    ARB/USDT:USDT   ARBUSDT   1  -
    OP/USDT:USDT    OPUSDT    1  -
    ETC/USDT:USDT   ETCUSDT   1  -
"""

#: Id suffix -> quote currency of a perpetual (``settle`` is the quote, or the base for USD).
_ID_SUFFIXES: Final = (("USDT", "USDT"), ("PERP", "USDC"), ("USD", "USD"))
_COIN = re.compile(r"[A-Z0-9]+")
_FUTURES_TYPES: Final = frozenset({"USDT-FUTURES", "USDC-FUTURES", "COIN-FUTURES"})
_ACK_EVENTS: Final = frozenset({"subscribe", "unsubscribe", "login"})

#: Channels (v2) and topics (v3) that carry no tick, and the skip reason of each.
_SKIPPED_CHANNELS: Final[dict[str, str]] = dict.fromkeys(
    ("books", "books5", "books15", "books50"), base.SKIP_DEPTH
) | dict.fromkeys(("ticker", "kline"), base.SKIP_OTHER_EVENT)

#: Field names of one trade: price, size, time, trade id, side (v2 and v3 layouts).
_V2_TRADE: Final = ("price", "size", "ts", "tradeId", "side")
_V3_TRADE: Final = ("p", "v", "T", "i", "S")

_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError


# -- ids ---------------------------------------------------------------------------------------


def unified_symbol(venue_id: str) -> str | None:
    """The ccxt unified symbol of a Bitget perpetual id, by the venue's naming rule.

    ``<COIN>USDT`` is a USDT-FUTURES perpetual, ``<COIN>PERP`` a USDC-FUTURES one, and
    ``<COIN>USD`` the COIN-FUTURES (inverse) perpetual settled in the coin. None for any other
    id (dated futures, spot pairs, other venues' ids).

    Examples
    --------
    >>> unified_symbol("BTCUSDT"), unified_symbol("ETHPERP"), unified_symbol("DOGEUSD")
    ('BTC/USDT:USDT', 'ETH/USDC:USDC', 'DOGE/USD:DOGE')
    >>> unified_symbol("BTC-USDT-SWAP") is None, unified_symbol("USDT") is None
    (True, True)
    """
    for suffix, quote in _ID_SUFFIXES:
        if venue_id.endswith(suffix):
            coin = venue_id[: -len(suffix)]
            if not _COIN.fullmatch(coin):
                return None
            return f"{coin}/{quote}:{coin if quote == 'USD' else quote}"
    return None


def inst_type(market: MarketInfo) -> str:
    """Bitget's product type (``instType``) of a market.

    Examples
    --------
    >>> inst_type(VENUE.market("BTC/USDT:USDT")), inst_type(VENUE.assumed_market("DOGE/USD:DOGE"))
    ('USDT-FUTURES', 'COIN-FUTURES')
    """
    if not market.linear:
        return "COIN-FUTURES"
    return "USDC-FUTURES" if market.settle == "USDC" else "USDT-FUTURES"


def _arg(market: MarketInfo, channel: str) -> dict[str, str]:
    """One subscription arg (also the ``arg`` of every data frame), keys in wire order."""
    return {"instType": inst_type(market), "channel": channel, "instId": market.venue_id}


# -- the parser --------------------------------------------------------------------------------


class BitgetParser(VenueParser):
    """Pure parser of Bitget futures frames (v2, and v3 "unified") into :class:`Tick` objects.

    Parameters
    ----------
    venue : str
        Venue label written into every tick.
    markets : iterable of MarketInfo, optional
        The subscribed markets; frames of other ids are skipped. None: every id
        :func:`unified_symbol` names.
    derive : callable
        The venue's naming rule (:meth:`BitgetFutures.derive`).

    Examples
    --------
    >>> p = VENUE.parser()
    >>> frame = (b'{"action":"update","arg":{"instType":"USDT-FUTURES","channel":"trade",'
    ...          b'"instId":"BTCUSDT"},"data":[{"ts":"1695716760565","price":"27000.5",'
    ...          b'"size":"0.001","side":"sell","tradeId":"7"}],"ts":1695716761589}')
    >>> p.parse(frame, 0)[0][:9]
    ('bitget', 'BTC/USDT:USDT', 'trade', 1695716760565, 0, 27000.5, 0.001, -1, '7')
    >>> p.parse(b"pong", 0), p.stats.skipped
    ([], {'keepalive': 1})
    """

    def parse(self, raw: bytes | str, recv_ns: int) -> list[Tick]:
        """Parse one frame received at ``recv_ns`` (ns since the epoch); never raises on bad input.

        Returns
        -------
        list[Tick]
            The frame's ticks in chronological order (empty for skipped or rejected frames).
        """
        try:
            msg = _loads(raw)
        except _JSONDecodeError:
            if raw == PONG_FRAME or raw == "pong":
                self.stats.skip(base.SKIP_KEEPALIVE)
                return []
            return self.reject(base.REJECT_JSON, raw)
        if type(msg) is not dict:
            return self.reject(base.REJECT_NOT_OBJECT, raw)
        data = msg.get("data")
        if data is None:
            return self._control(msg)
        arg = msg.get("arg")
        if type(arg) is not dict:
            return self.reject(base.REJECT_MISSING if arg is None else base.REJECT_NOT_OBJECT, msg)
        channel = arg.get("channel")
        if channel is None:  # v3: {"instType": "usdt-futures", "topic": ..., "symbol": ...}
            channel = arg.get("topic")
            venue_id = arg.get("symbol")
            v3 = True
        else:
            venue_id = arg.get("instId")
            v3 = False
        if channel == "books1":
            return self._books1(msg, arg, venue_id, data, v3, recv_ns)
        if channel == "trade" or channel == "publicTrade":
            if msg.get("action") == "snapshot":
                self.stats.skip(base.SKIP_BACKFILL)
                return []
            return self._trades(msg, arg, venue_id, data, v3, recv_ns)
        return self._other_channel(channel, msg)

    def _control(self, msg: dict[str, Any]) -> list[Tick]:
        """A frame without data: an ack, an error answer, or a broken data frame."""
        event = msg.get("event")
        if event == "error":
            logger.debug("Bitget error answer: %r", msg)
            self.stats.skip(base.SKIP_ERROR_REPLY)
        elif type(event) is str and event in _ACK_EVENTS:
            self.stats.skip(base.SKIP_ACK)
        else:
            return self.reject(base.REJECT_MISSING, msg)
        return []

    def _other_channel(self, channel: object, msg: dict[str, Any]) -> list[Tick]:
        if type(channel) is not str:
            return self.reject(base.REJECT_MISSING, msg)
        reason = _SKIPPED_CHANNELS.get(channel)
        if reason is None:
            if channel.startswith("candle"):
                reason = base.SKIP_OTHER_EVENT
            else:
                logger.debug("unknown Bitget channel %r", channel)
                reason = base.SKIP_UNKNOWN_EVENT
        self.stats.skip(reason)
        return []

    def _trades(
        self,
        msg: dict[str, Any],
        arg: dict[str, Any],
        venue_id: object,
        data: object,
        v3: bool,
        recv_ns: int,
    ) -> list[Tick]:
        kind = arg.get("instType")
        market = None if kind == "SPOT" or kind == "spot" else self.market(venue_id)
        if market is None:  # unknown id, unsubscribed, or a spot pair of the same name
            return self.unresolved(venue_id, msg)
        if type(data) is not list:
            return self.reject(base.REJECT_NOT_OBJECT, msg)
        if not data:
            return self.reject(base.REJECT_MISSING, msg)
        k_price, k_size, k_time, k_id, k_side = _V3_TRADE if v3 else _V2_TRADE
        symbol, make = market.symbol, self.trade
        out: list[Tick] | None = None  # the first entry's list, extended by the others
        for d in reversed(data):  # newest first on the wire
            if type(d) is not dict:
                self.reject(base.REJECT_NOT_OBJECT, d)
                continue
            try:
                p, q, ts = d[k_price], d[k_size], d[k_time]
                trade_id = str(d[k_id])
                taker = d[k_side]
                if type(p) is not str or type(q) is not str or type(ts) is not str:
                    self.reject(base.REJECT_TYPE, d)  # decimal strings, ms as digits
                    continue
                if not ts.isdecimal():
                    self.reject(base.REJECT_NOT_NUMERIC, d)
                    continue
                price = float(p)
                size = float(q)
            except KeyError:
                self.reject(base.REJECT_MISSING, d)
                continue
            except ValueError:
                self.reject(base.REJECT_NOT_NUMERIC, d)
                continue
            event_ms = int(ts)
            side = 1 if taker == "buy" else -1 if taker == "sell" else 0
            made = make(symbol, event_ms, recv_ns, price, size, side, trade_id, d)
            if out is None:
                out = made
            else:
                out += made
        return [] if out is None else out

    def _books1(
        self,
        msg: dict[str, Any],
        arg: dict[str, Any],
        venue_id: object,
        data: object,
        v3: bool,
        recv_ns: int,
    ) -> list[Tick]:
        kind = arg.get("instType")
        market = None if kind == "SPOT" or kind == "spot" else self.market(venue_id)
        if market is None:  # unknown id, unsubscribed, or a spot pair of the same name
            return self.unresolved(venue_id, msg)
        if type(data) is not list:
            return self.reject(base.REJECT_NOT_OBJECT, msg)
        if not data:
            return self.reject(base.REJECT_MISSING, msg)
        d = data[0]
        if type(d) is not dict:
            return self.reject(base.REJECT_NOT_OBJECT, msg)
        try:
            asks = d["a"] if v3 else d["asks"]
            bids = d["b"] if v3 else d["bids"]
            ts = d["ts"]
            update_id = d.get("seq", 0)
            if type(ts) is not str or type(update_id) is not int:
                return self.reject(base.REJECT_TYPE, msg)  # ms as digits, an integer seq
            if not ts.isdecimal():
                return self.reject(base.REJECT_NOT_NUMERIC, msg)
            if not asks or not bids:
                self.stats.skip(base.SKIP_ONE_SIDED)
                return []
            ask_level = asks[0]
            bid_level = bids[0]
            a, aq, b, bq = ask_level[0], ask_level[1], bid_level[0], bid_level[1]
            if (
                type(a) is not str or type(aq) is not str or type(b) is not str
                or type(bq) is not str
            ):  # fmt: skip
                return self.reject(base.REJECT_TYPE, msg)  # decimal strings
            ask = float(a)
            ask_size = float(aq)
            bid = float(b)
            bid_size = float(bq)
        except (KeyError, IndexError):
            return self.reject(base.REJECT_MISSING, msg)
        except TypeError:  # sides or levels that are no lists
            return self.reject(base.REJECT_TYPE, msg)
        except ValueError:
            return self.reject(base.REJECT_NOT_NUMERIC, msg)
        event_ms = int(ts)
        return self.quote(
            market.symbol, event_ms, recv_ns, bid, bid_size, ask, ask_size, update_id, msg
        )


# -- the venue ---------------------------------------------------------------------------------


class BitgetFutures(Venue):
    """Bitget USDT-M futures over the v2 public websocket (see the module docstring)."""

    name = "bitget"
    title = "Bitget USDT-M futures"
    ccxt_id = "bitget"
    routes: ClassVar[Mapping[str, str]] = {PUBLIC: PUBLIC_URL}
    channels = "`trade`, `books1`"
    keepalive = Keepalive(ping=PING_FRAME, ping_every_s=PING_EVERY_S, ws_ping=False)
    max_connection_s = MAX_CONNECTION_S
    sequential_trade_ids = False
    subscribe_per_s = 5.0

    def markets(self) -> Mapping[str, MarketInfo]:
        """The shipped table (:data:`MARKETS`)."""
        return _table()

    def venue_id(self, symbol: str) -> str:
        """``BTC/USDT:USDT`` -> ``BTCUSDT``, ``BTC/USDC:USDC`` -> ``BTCPERP``, ``BTC/USD:BTC``
        -> ``BTCUSD``.

        Raises
        ------
        FeedParseError
            For a symbol that is no Bitget perpetual by the naming rule (dated futures too).

        Examples
        --------
        >>> VENUE.venue_id("ETH/USDC:USDC"), VENUE.venue_id("DOGE/USD:DOGE")
        ('ETHPERP', 'DOGEUSD')
        """
        parts = split_unified(symbol)
        if not parts.expiry:
            if parts.quote == parts.settle == "USDT":
                return f"{parts.base}USDT"
            if parts.quote == parts.settle == "USDC":
                return f"{parts.base}PERP"
            if parts.quote == "USD" and parts.settle == parts.base:
                return f"{parts.base}USD"
        raise FeedParseError(f"{symbol!r} is not a Bitget perpetual tickcast can name")

    def derive(self, venue_id: str) -> MarketInfo | None:
        """The table's entry of ``venue_id``, else the market its name gives (contract size 1).

        Examples
        --------
        >>> VENUE.derive("BTCUSDT").price_tick, VENUE.derive("DOGEUSD").linear
        (0.1, False)
        """
        known = _by_id().get(venue_id)
        if known is not None:
            return known
        symbol = unified_symbol(venue_id)
        return None if symbol is None else derived_market(symbol, venue_id)

    def parser(self, markets: Iterable[MarketInfo] | None = None, label: str = "") -> BitgetParser:
        """A :class:`BitgetParser` of this venue's ids."""
        return BitgetParser(label or self.name, markets, self.derive)

    def connections(
        self, markets: Sequence[MarketInfo], urls: Mapping[str, str]
    ) -> list[Connection]:
        """One connection (and one subscribe message) per :data:`CHANNELS_PER_CONNECTION`
        channels: ``trade`` and ``books1`` of each market.

        Examples
        --------
        >>> (c,) = VENUE.connections([VENUE.market("BTC/USDT:USDT")], VENUE.routes)
        >>> c.route, c.url
        ('public', 'wss://ws.bitget.com/v2/ws/public')
        >>> c.subscribe[0]  # doctest: +ELLIPSIS
        b'{"op":"subscribe","args":[{"instType":"USDT-FUTURES","channel":"trade",...}]}'
        """
        url = urls[PUBLIC]
        args = [_arg(m, channel) for m in markets for channel in ("trade", "books1")]
        out: list[Connection] = []
        for i in range(0, len(args), CHANNELS_PER_CONNECTION):
            chunk = args[i : i + CHANNELS_PER_CONNECTION]
            label = PUBLIC if i == 0 else f"{PUBLIC}-{i // CHANNELS_PER_CONNECTION + 1}"
            request = orjson.dumps({"op": "subscribe", "args": chunk})
            out.append(Connection(label, url, (request,)))
        return out

    def classify(self, raw: bytes) -> Control:
        """``pong``, acks (``{"event":"subscribe",...}``) and error answers; the rest is data.

        Examples
        --------
        >>> VENUE.classify(b"pong").kind, VENUE.classify(b'{"event":"subscribe","arg":{}}').kind
        ('pong', 'ack')
        >>> VENUE.classify(b'{"event":"error","code":30001,"msg":"no such channel"}')
        Control(kind='error', reply=None, detail='30001 no such channel')
        """
        if raw == PONG_FRAME:
            return Control(PONG)
        if raw[:1] != b"{" or b'"event"' not in raw:
            return Control(DATA)
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return Control(DATA)
        if type(msg) is not dict:
            return Control(DATA)
        event = msg.get("event")
        if event == "error":
            return Control(ERROR, detail=f"{msg.get('code')} {msg.get('msg')}")
        if type(event) is str and event in _ACK_EVENTS:
            return Control(ACK)
        return Control(DATA)

    def recognises(self, raw: bytes) -> bool:
        """A data frame with a futures ``instType`` whose ``instId`` (v3: ``symbol``) this venue
        names.

        Examples
        --------
        >>> VENUE.recognises(b'{"action":"update","arg":{"instType":"USDT-FUTURES",'
        ...                  b'"channel":"trade","instId":"BTCUSDT"},"data":[]}')
        True
        >>> VENUE.recognises(b'{"arg":{"channel":"trades","instId":"BTC-USDT-SWAP"},"data":[]}')
        False
        """
        if b'"data"' not in raw or not (b'-FUTURES"' in raw or b'-futures"' in raw):
            return False
        for key in (b'"instId":"', b'"symbol":"'):
            start = raw.find(key)
            if start >= 0:
                start += len(key)
                end = raw.find(b'"', start)
                return self.derive(raw[start:end].decode(errors="replace")) is not None
        return False

    def dialect(self) -> BitgetDialect:
        """The server side of the v2 public websocket."""
        return BitgetDialect(self)


@cache
def _table() -> dict[str, MarketInfo]:
    return market_table(MARKETS)


@cache
def _by_id() -> dict[str, MarketInfo]:
    return {m.venue_id: m for m in _table().values()}


# -- rendering (the simulated venue) -----------------------------------------------------------


def _price_decimals(market: MarketInfo) -> int:
    """Decimals of the market's price tick (0 when unknown: shortest exact text)."""
    if market.price_tick is None:
        return 0
    return len(decimal_text(market.price_tick).partition(".")[2])


def render_trades(
    ticks: Sequence[Tick],
    market: MarketInfo,
    *,
    action: str = "update",
    push_ms: int | None = None,
) -> dict[str, object]:
    """The ``trade`` push of ``ticks`` (trades of ``market`` in chronological order).

    Entries are listed newest first, as the venue does; prices carry at least the decimals of
    the market's price tick, sizes are the base sizes (Bitget's unit) as exact decimals. The
    frame's ``ts`` (push time) is ``push_ms``, by default the newest trade's time.
    ``action="snapshot"`` makes the backfill a new subscriber gets first.

    Raises
    ------
    FeedParseError
        When a tick is not a trade, or has a non-finite value.

    Examples
    --------
    >>> from tickcast.service.ticks import trade
    >>> t = trade("bitget", "BTC/USDT:USDT", 1695716759514, 0, 27000.0, 0.001, -1, "7")
    >>> frame = render_trades([t], VENUE.market("BTC/USDT:USDT"))
    >>> frame["data"]
    [{'ts': '1695716759514', 'price': '27000.0', 'size': '0.001', 'side': 'sell', 'tradeId': '7'}]
    """
    decimals = _price_decimals(market)
    entries = []
    for tick in reversed(ticks):
        if tick.kind != TRADE:
            raise FeedParseError(f"render_trades needs trade ticks, got a {tick.kind!r}")
        entries.append(
            {
                "ts": str(tick.event_ms),
                "price": decimal_text(tick.price, decimals),
                "size": decimal_text(tick.size),
                "side": "buy" if tick.side == 1 else "sell",
                "tradeId": tick.trade_id,
            }
        )
    pushed = push_ms if push_ms is not None else max((t.event_ms for t in ticks), default=0)
    return {"action": action, "arg": _arg(market, "trade"), "data": entries, "ts": pushed}


def render_books1(
    tick: Tick, market: MarketInfo, *, push_ms: int | None = None
) -> dict[str, object]:
    """The ``books1`` snapshot of a quote tick on ``market`` (checksum 0, as the venue sends
    for level 1; no update id: v2 frames carry none).

    Raises
    ------
    FeedParseError
        When ``tick`` is not a quote, or has a non-finite value.

    Examples
    --------
    >>> from tickcast.service.ticks import quote
    >>> q = quote("bitget", "BTC/USDT:USDT", 1730332859988, 0, 60000.0, 1.5, 60000.1, 0.25)
    >>> render_books1(q, VENUE.market("BTC/USDT:USDT"))["data"]
    [{'asks': [['60000.1', '0.25']], 'bids': [['60000.0', '1.5']], 'checksum': 0,
      'ts': '1730332859988'}]
    """
    if tick.kind != QUOTE:
        raise FeedParseError(f"render_books1 needs a quote tick, got a {tick.kind!r}")
    decimals = _price_decimals(market)
    level = {
        "asks": [[decimal_text(tick.ask, decimals), decimal_text(tick.ask_size)]],
        "bids": [[decimal_text(tick.bid, decimals), decimal_text(tick.bid_size)]],
        "checksum": 0,
        "ts": str(tick.event_ms),
    }
    pushed = tick.event_ms if push_ms is None else push_ms
    return {"action": "snapshot", "arg": _arg(market, "books1"), "data": [level], "ts": pushed}


def topic(instrument_type: str, channel: str, venue_id: str) -> str:
    """The simulator's topic name of one subscription arg.

    Examples
    --------
    >>> topic("USDT-FUTURES", "trade", "BTCUSDT")
    'USDT-FUTURES.trade.BTCUSDT'
    """
    return f"{instrument_type}.{channel}.{venue_id}"


class _Served(NamedTuple):
    market: MarketInfo
    trade_topic: str
    books_topic: str


class BitgetRenderer(Renderer):
    """Market ticks -> Bitget v2 pushes: one ``trade`` update per trade, one ``books1``
    snapshot per quote; a new ``trade`` subscriber first gets a snapshot of the last
    :data:`BACKFILL_TRADES` trades (newest first), as on the venue.

    Parameters
    ----------
    market_of : callable
        Unified symbol -> its :class:`MarketInfo` (venue id, product type, price tick).

    Examples
    --------
    >>> from tickcast.service.ticks import trade
    >>> render = BitgetRenderer(VENUE.assumed_market)
    >>> t = trade("sim", "BTC/USDT:USDT", 1_767_225_600_000, 0, 60000.5, 0.002, -1, "7")
    >>> render.events(t, set()), len(render.welcome("USDT-FUTURES.trade.BTCUSDT"))
    ([], 1)
    """

    def __init__(self, market_of: Callable[[str], MarketInfo]) -> None:
        self._market_of = market_of
        self._served: dict[str, _Served] = {}
        self._recent: dict[str, tuple[MarketInfo, deque[Tick]]] = {}

    def _learn(self, symbol: str) -> _Served:
        market = self._market_of(symbol)
        kind = inst_type(market)
        served = _Served(
            market,
            topic(kind, "trade", market.venue_id),
            topic(kind, "books1", market.venue_id),
        )
        self._served[symbol] = served
        self._recent[served.trade_topic] = (market, deque(maxlen=BACKFILL_TRADES))
        return served

    def events(self, tick: Tick, wanted: Collection[str]) -> list[tuple[str, bytes]]:
        """The ``(topic, encoded frame)`` of ``tick`` if its topic is in ``wanted``."""
        served = self._served.get(tick.symbol) or self._learn(tick.symbol)
        if tick.kind == TRADE:
            self._recent[served.trade_topic][1].append(tick)
            if served.trade_topic in wanted:
                frame = orjson.dumps(render_trades((tick,), served.market))
                return [(served.trade_topic, frame)]
        elif served.books_topic in wanted:
            return [(served.books_topic, orjson.dumps(render_books1(tick, served.market)))]
        return []

    def welcome(self, topic: str) -> list[bytes]:
        """The ``trade`` snapshot (backfill) of a new subscriber; nothing before any trade."""
        recent = self._recent.get(topic)
        if recent is None or not recent[1]:
            return []
        market, trades = recent
        return [orjson.dumps(render_trades(trades, market, action="snapshot"))]


# -- the simulated venue's protocol ------------------------------------------------------------

#: Broken frames the ``malformed_every`` fault cycles through: broken JSON, a non-object, a bad
#: price, a NaN size, an unknown channel, a trade without price, bid above ask.
MALFORMED_FRAMES: Final[tuple[bytes, ...]] = (
    b'{"action":"update","arg":{"instType":"USDT-FUTURES","channel":"trade","instId":"BTCUSDT"'
    b'},"data":[{"ts":"17',
    b"[1,2,3]",
    b'{"action":"update","arg":{"instType":"USDT-FUTURES","channel":"trade","instId":"BTCUSDT"'
    b'},"data":[{"ts":"1767225600000","price":"-5","size":"1","side":"buy","tradeId":"1"}],'
    b'"ts":1767225600001}',
    b'{"action":"update","arg":{"instType":"USDT-FUTURES","channel":"trade","instId":"BTCUSDT"'
    b'},"data":[{"ts":"1767225600000","price":"100","size":"NaN","side":"buy","tradeId":"1"}],'
    b'"ts":1767225600001}',
    b'{"action":"snapshot","arg":{"instType":"USDT-FUTURES","channel":"mysteryChannel",'
    b'"instId":"BTCUSDT"},"data":[{}],"ts":1767225600001}',
    b'{"action":"update","arg":{"instType":"USDT-FUTURES","channel":"trade","instId":"BTCUSDT"'
    b'},"data":[{"ts":"1767225600000","size":"1","side":"sell","tradeId":"1"}],'
    b'"ts":1767225600001}',
    b'{"action":"snapshot","arg":{"instType":"USDT-FUTURES","channel":"books1","instId":"BTCUSDT"'
    b'},"data":[{"asks":[["100.0","1"]],"bids":[["101.0","1"]],"checksum":0,'
    b'"ts":"1767225600000"}],"ts":1767225600001}',
)


def error_frame(code: int, msg: str) -> bytes:
    """Encode the venue's error answer.

    Examples
    --------
    >>> error_frame(ERR_INVALID_OP, "invalid op")
    b'{"event":"error","code":30003,"msg":"invalid op"}'
    """
    return orjson.dumps({"event": "error", "code": code, "msg": msg})


class BitgetDialect(Dialect):
    """The server side of Bitget's v2 public websocket, for the simulated exchange.

    One endpoint, ``/v2/ws/public``; ``subscribe``/``unsubscribe`` requests are acknowledged
    per arg (an arg of another channel than ``trade``/``books1``, a non-futures product type
    or an id the naming rule does not know is refused with error 30001, as the venue refuses
    what does not exist); ``ping`` is answered ``pong``; a client that has not pinged for
    2 minutes is cut.
    """

    keepalive = SimKeepalive(client_silence_s=CLIENT_SILENCE_S)

    def __init__(self, venue: BitgetFutures) -> None:
        self.venue = venue

    def endpoint(self, path: str) -> Endpoint | None:
        """The public endpoint for ``/v2/ws/public``, None for any other path.

        Examples
        --------
        >>> d = VENUE.dialect()
        >>> d.endpoint("/v2/ws/public"), d.endpoint("/v3/ws/public")
        (Endpoint(route='public', topics=(), combined=False), None)
        """
        if urlsplit(path).path != urlsplit(PUBLIC_URL).path:
            return None
        return Endpoint(PUBLIC)

    def on_message(self, message: bytes, requested: Sequence[str]) -> Reply:
        """Answer one client message: ``ping``, or a (un)subscription request.

        Examples
        --------
        >>> d = VENUE.dialect()
        >>> d.on_message(b"ping", ())
        Reply(frames=(b'pong',), subscribe=(), unsubscribe=(), keepalive=True, request=False)
        >>> req = b'{"op":"subscribe","args":[{"instType":"USDT-FUTURES","channel":"trade",'
        >>> req += b'"instId":"BTCUSDT"}]}'
        >>> d.on_message(req, ()).subscribe
        ('USDT-FUTURES.trade.BTCUSDT',)
        """
        if message.strip() == PING_FRAME:
            return Reply((PONG_FRAME,), keepalive=True)
        try:
            request: Any = orjson.loads(message)
        except orjson.JSONDecodeError:
            return Reply((error_frame(ERR_PARAM, "Param error"),))
        if type(request) is not dict:
            return Reply((error_frame(ERR_PARAM, "Param error"),))
        op, args = request.get("op"), request.get("args")
        if op != "subscribe" and op != "unsubscribe":
            return Reply((error_frame(ERR_INVALID_OP, "invalid op"),))
        if type(args) is not list or not args:
            return Reply((error_frame(ERR_PARAM, "Param error"),))
        frames: list[bytes] = []
        topics: list[str] = []
        for arg in args:
            name = self._topic(arg)
            if name is None:
                frames.append(error_frame(ERR_NO_CHANNEL, f"{_describe(arg)} doesn't exist"))
                continue
            topics.append(name)
            frames.append(orjson.dumps({"event": op, "arg": arg}))
        if op == "subscribe":
            return Reply(tuple(frames), subscribe=tuple(topics), request=True)
        return Reply(tuple(frames), unsubscribe=tuple(topics), request=True)

    def _topic(self, arg: object) -> str | None:
        """The topic of a valid subscription arg (product types in any case), else None."""
        if type(arg) is not dict:
            return None
        kind, channel, venue_id = arg.get("instType"), arg.get("channel"), arg.get("instId")
        if not (type(kind) is str and type(channel) is str and type(venue_id) is str):
            return None
        kind = kind.upper()
        market = self.venue.derive(venue_id)
        if (
            kind not in _FUTURES_TYPES
            or channel not in ("trade", "books1")
            or market is None
            or inst_type(market) != kind
        ):
            return None
        return topic(kind, channel, venue_id)

    def renderer(self) -> BitgetRenderer:
        """A :class:`BitgetRenderer` on the venue's simulated markets."""
        return BitgetRenderer(self.venue.assumed_market)

    def malformed(self) -> tuple[bytes, ...]:
        """:data:`MALFORMED_FRAMES`."""
        return MALFORMED_FRAMES


def _describe(arg: object) -> str:
    """How the venue names an arg in its error message."""
    if type(arg) is not dict:
        return f"arg:{arg!r}"
    return ",".join(f"{k}:{arg.get(k)}" for k in ("instType", "channel", "instId"))


VENUE = BitgetFutures()
