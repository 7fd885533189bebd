"""Bybit v5 linear: USDT perpetuals, trades and the level-1 order book.

Wire format (see ``../shared/exchange-samples/bybit-linear``):

- URL ``wss://stream.bybit.com/v5/public/linear`` (one public route; nothing in the URL
  subscribes). Subscribe by message: ``{"req_id":"1","op":"subscribe","args":[
  "publicTrade.BTCUSDT","orderbook.1.BTCUSDT"]}`` — at most :data:`ARGS_PER_MESSAGE` topics per
  message (Bybit's limit for spot; none is documented for linear, ten keeps requests short), and
  no more than 21,000 characters of topics per connection (Bybit's documented limit; further
  connections take the rest, :data:`ARGS_CHARS_PER_CONNECTION`). The answer is
  ``{"success":true,"ret_msg":"","conn_id":"...","req_id":"1","op":"subscribe"}``; a refused
  topic answers ``success:false`` with the reason in ``ret_msg``
  (``"error:handler not found,topic:dcp.future"``), which the shell logs as an error.
- Keepalive: the client sends ``{"req_id":"ping","op":"ping"}`` every 20 s (Bybit's
  recommendation; websocket ping frames are not used); the server answers
  ``{"success":true,"ret_msg":"pong","conn_id":"...","req_id":"ping","op":"ping"}``. Bybit
  documents that a connection with neither ping-pong nor data for 10 minutes is cut; the server
  sends no pings of its own. No connection age limit is documented.
- ``publicTrade.<ID>``: ``{"topic","type":"snapshot","ts","data":[trade...]}``, each trade
  ``T`` (trade time, ms), ``s`` (id), ``S`` (taker side ``Buy``/``Sell``), ``v`` (size, base
  coin), ``p`` (price), ``L`` (tick direction), ``i`` (trade id: a UUID, not sequential),
  ``BT`` (block trade; kept: a real trade) and, in newer frames, ``seq``. A frame may carry
  several trades (up to 1024); they come out in trade-time order.
- ``orderbook.1.<ID>``: ``{"topic","type","ts","data":{"s","b":[[px,sz]],"a":[[px,sz]],"u",
  "seq"},"cts"}`` pushed every 10 ms. Documented as snapshots, but recorded traffic also has
  ``type:"delta"`` frames in which size ``"0"`` removes a price level. The parser keeps a
  one-level book per symbol: a snapshot resets it, a delta is applied to it (a level below the
  top is no longer in a depth-1 book, so only the best level of each side is kept), and every
  frame that leaves both sides non-empty gives a quote of the best bid/ask — also a delta that
  leaves the top unchanged (a quote repeating the top with the frame's update id and time). A
  delta before the symbol's first snapshot is skipped (``book delta before snapshot``), a book
  with an empty side is skipped (``one-sided book``), and a frame that cannot be applied
  (non-numeric or non-positive prices, negative sizes, a crossed result) is rejected and leaves
  the book as it was. Event time: ``cts`` (the matching engine's time) when present, else
  ``ts``; update id ``u``.
- Value types are read as sent, never coerced: prices and sizes (``p``, ``v``, book levels)
  are decimal strings, times (``T``, ``ts``, ``cts``) and update ids (``u``) JSON integers; a
  value of another JSON type is rejected as ``wrong value type``.
- Skipped: ``tickers`` and other channels (``other event``), deeper books
  (``orderbook.50.<ID>``... : ``depth update``), subscription answers and requests
  (``subscription ack``), pings and pongs (``keepalive``), refusals (``error reply``).

Sizes are base units: a linear contract is one coin (contract size 1). Ids are
``<BASE>USDT`` (``BTCUSDT`` is ``BTC/USDT:USDT``; ``1000PEPEUSDT`` is ``1000PEPE/USDT:USDT``).

Pitfalls: ccxt.pro's client takes the quote time from ``ts`` (the push time), tickcast from
``cts``; after a reconnect the parser keeps the symbol's last book until the fresh snapshot
arrives (Bybit sends one on every subscription).

The simulated venue (:class:`BybitDialect`) serves ``/v5/public/linear``, answers
subscriptions, unsubscriptions and pings with Bybit's own frames, and cuts a client that has
not pinged for :data:`SIM_CLIENT_SILENCE_S` (stricter than the venue's 10 minutes without ping
or data, so that a client that forgets to ping is caught; ccxt.pro pings every 18 s, the shell
every 20 s). It renders each trade as a one-trade ``publicTrade`` frame and each quote as an
``orderbook.1`` frame: a snapshot of the top of book for a new subscriber and every
:data:`SNAPSHOT_EVERY` frames, deltas (with ``"0"`` removals when a price level changes) in
between.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from operator import itemgetter
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit

import orjson

from tickcast.service.ticks import (
    QUOTE,
    REJECT_NON_FINITE,
    REJECT_PRICE,
    REJECT_SIDE,
    REJECT_SIZE,
    TRADE,
    Tick,
    quote_fault,
)
from tickcast.service.venues import base
from tickcast.service.venues.base import FeedParseError, decimal_text, split_unified
from tickcast.service.venues.markets import MarketInfo, derived_market, market_table
from tickcast.service.venues.parser import Derive, VenueParser
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
    "Bybit",
    "BybitDialect",
    "BybitParser",
    "BybitRenderer",
    "render_book",
    "render_trade",
    "subscribe_message",
    "tick_direction",
    "trades_frame",
    "unified_symbol",
]

logger = logging.getLogger(__name__)

PUBLIC: Final = "public"
"""The one route: ``/v5/public/linear``."""
PATH: Final = "/v5/public/linear"

TRADE_CHANNEL: Final = "publicTrade"
BOOK_CHANNEL: Final = "orderbook.1"

ARGS_PER_MESSAGE: Final = 10
"""Most topics in one subscription message."""
ARGS_CHARS_PER_CONNECTION: Final = 21_000
"""Bybit's limit on the length of one public connection's topics (characters)."""

PING: Final = b'{"req_id":"ping","op":"ping"}'
"""The client's keepalive message."""

SIM_CLIENT_SILENCE_S: Final = 45.0
"""The simulated venue cuts a client whose last ping is older than this (s): more than twice
ccxt.pro's 18 s and the shell's 20 s, so one lost ping is forgiven."""
SNAPSHOT_EVERY: Final = 100
"""The simulated venue sends an ``orderbook.1`` snapshot instead of a delta every this many
frames of a symbol."""

PRICE_DECIMALS: Final = 2
"""Least decimals of rendered prices (BTCUSDT's and LTCUSDT's ``priceScale``)."""

#: The main USDT perpetuals: unified symbol, id, contract size (base units), price tick.
MARKETS = """
    BTC/USDT:USDT       BTCUSDT       1  0.1
    ETH/USDT:USDT       ETHUSDT       1  -
    SOL/USDT:USDT       SOLUSDT       1  -
    XRP/USDT:USDT       XRPUSDT       1  -
    DOGE/USDT:USDT      DOGEUSDT      1  -
    BNB/USDT:USDT       BNBUSDT       1  -
    ADA/USDT:USDT       ADAUSDT       1  -
    LINK/USDT:USDT      LINKUSDT      1  -
    LTC/USDT:USDT       LTCUSDT       1  -
    AVAX/USDT:USDT      AVAXUSDT      1  -
    DOT/USDT:USDT       DOTUSDT       1  -
    TRX/USDT:USDT       TRXUSDT       1  -
    BCH/USDT:USDT       BCHUSDT       1  -
    SUI/USDT:USDT       SUIUSDT       1  -
    TON/USDT:USDT       TONUSDT       1  -
    NEAR/USDT:USDT      NEARUSDT      1  -
    APT/USDT:USDT       APTUSDT       1  -
    ARB/USDT:USDT       ARBUSDT       1  -
    OP/USDT:USDT        OPUSDT        1  -
    ETC/USDT:USDT       ETCUSDT       1  -
    1000PEPE/USDT:USDT  1000PEPEUSDT  1  -
"""

#: Channels (the part of a topic before its first dot) skipped, and the reason counted.
_SKIPPED_CHANNELS: Final[dict[str, str]] = {"orderbook": base.SKIP_DEPTH} | dict.fromkeys(
    ("tickers", "kline", "liquidation", "allLiquidation", "insurance", "adlAlert", "priceLimit",
     "tickers_lt", "lt"),
    base.SKIP_OTHER_EVENT,
)  # fmt: skip

_ID = re.compile(r"^([A-Z0-9]+)USDT$")
_SIM_TOPIC = re.compile(r"^(publicTrade|orderbook\.1)\.[A-Z0-9]+$")
_INF: Final = float("inf")
_BOOK_LIMIT: Final = 4096
_SIDES: Final = {"Buy": 1, "Sell": -1}
_EVENT_MS = itemgetter(3)
_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError
_new_tick = tuple.__new__
_quote_fault = quote_fault


def unified_symbol(venue_id: str) -> str | None:
    """The ccxt unified symbol of a linear USDT perpetual's id; None when it names none.

    Examples
    --------
    >>> unified_symbol("BTCUSDT"), unified_symbol("1000PEPEUSDT"), unified_symbol("BTCPERP")
    ('BTC/USDT:USDT', '1000PEPE/USDT:USDT', None)
    """
    match = _ID.match(venue_id)
    return f"{match.group(1)}/USDT:USDT" if match is not None else None


def subscribe_message(topics: Sequence[str], req_id: str, op: str = "subscribe") -> bytes:
    """One (un)subscription message, keys in Bybit's order.

    Examples
    --------
    >>> subscribe_message(["publicTrade.BTCUSDT"], "1")
    b'{"req_id":"1","op":"subscribe","args":["publicTrade.BTCUSDT"]}'
    """
    return orjson.dumps({"req_id": req_id, "op": op, "args": list(topics)})


# -- the parser ---------------------------------------------------------------------------------


class _BadLevelError(Exception):
    """A book level with a non-finite or non-positive price, or a negative or non-finite size."""

    def __init__(self, price: float, size: float) -> None:
        super().__init__(price, size)
        if not (price - price == 0.0 and size - size == 0.0):  # NaN or infinite
            self.reason = REJECT_NON_FINITE
        elif price <= 0.0:
            self.reason = REJECT_PRICE
        else:
            self.reason = REJECT_SIZE


Level = tuple[float, float, str]
"""One side's top in a book: price, size (wire units) and the price as the venue wrote it
(price 0: an empty side)."""
_NO_LEVEL: Final[Level] = (0.0, 0.0, "")
_EMPTY: Final = (_NO_LEVEL, _NO_LEVEL)


def _side(levels: Any, top: Level, bids: bool) -> Level:
    """The top of one side of a one-level book after a frame's ``levels`` (``[[px, sz]...]``;
    size ``"0"`` removes the level) are applied to its ``top``.

    A depth-1 book keeps no level below its top: the result is the best of the old top (unless
    removed or replaced) and the levels added. The levels of one frame have distinct prices, as
    Bybit sends them; a removal's price is only compared with the top's (by its text first, so
    that the usual removal of the old top costs no conversion).

    Raises
    ------
    _BadLevelError
        On a level with a bad value.
    TypeError
        On a level that is not a list, or holds other values than strings.
    ValueError, LookupError
        On a level that is not a pair, or a string that is no number.

    Examples
    --------
    >>> _side([["99.5", "4"], ["100.0", "0"]], (100.0, 2.0, "100.0"), True)
    (99.5, 4.0, '99.5')
    >>> _side([["101.0", "1"]], (100.5, 3.0, "100.5"), False)
    (100.5, 3.0, '100.5')
    """
    price, _, text = top
    # The usual frames first: a new top and the old one's removal, the top's new size, a
    # snapshot's level. Values must be decimal strings, never coerced (the rule of
    # tickcast.service.venues.parser): a level of other values falls through to the loop,
    # which raises TypeError.
    n = len(levels)
    if n == 2:
        (p_text, s_text), (q_text, t_text) = levels
        if t_text == "0" and q_text == text and type(p_text) is str and type(s_text) is str:
            p, s = float(p_text), float(s_text)
        elif s_text == "0" and p_text == text and type(q_text) is str and type(t_text) is str:
            p_text, p, s = q_text, float(q_text), float(t_text)
        else:
            p = s = 0.0
        if 0.0 < p < _INF and 0.0 < s < _INF:
            return p, s, p_text
    elif n == 1:
        p_text, s_text = levels[0]
        if type(p_text) is str and type(s_text) is str and s_text != "0":
            if not price:  # a snapshot's level, or the first of a one-sided book
                p, s = float(p_text), float(s_text)
                if 0.0 < p < _INF and 0.0 < s < _INF:
                    return p, s, p_text
            elif p_text == text:
                s = float(s_text)
                if 0.0 < s < _INF:
                    return price, s, text
    kept = price != 0.0
    best: Level | None = None
    for p_text, s_text in levels:
        if type(p_text) is not str or type(s_text) is not str:
            raise TypeError("a book level of other values than decimal strings")
        if s_text == "0":
            if kept and (p_text == text or float(p_text) == price):
                kept = False
            continue
        p = float(p_text)
        s = float(s_text)
        if not (0.0 < p < _INF and 0.0 <= s < _INF):
            raise _BadLevelError(p, s)
        if p == price:
            kept = False
        if s != 0.0 and (best is None or (p > best[0] if bids else p < best[0])):
            best = (p, s, p_text)
    if kept and (best is None or (price > best[0] if bids else price < best[0])):
        return top
    return _NO_LEVEL if best is None else best


class BybitParser(VenueParser):
    """Pure parser of Bybit v5 linear frames into :class:`Tick` objects (see the module
    docstring); keeps one level-1 book per symbol.

    Parameters
    ----------
    venue : str
        Venue label written into every tick.
    markets : iterable of MarketInfo, optional
        The subscribed markets; frames of other ids are skipped as ``"unsubscribed symbol"``.
        None: every id ``derive`` names.
    derive : callable
        The venue's naming rule.

    Examples
    --------
    >>> p = VENUE.parser()
    >>> book = '{"topic":"orderbook.1.BTCUSDT","type":"%s","ts":%d,"data":{"s":"BTCUSDT",'
    >>> book += '"b":[%s],"a":[%s],"u":%d,"seq":1}}'
    >>> snapshot = book % ("snapshot", 5, '["100.0","2"]', '["100.5","3"]', 7)
    >>> p.parse(snapshot, 0)[0][9:]
    (100.0, 2.0, 100.5, 3.0, 7)
    >>> delta = book % ("delta", 6, '["100.0","0"],["99.5","4"]', "", 8)
    >>> p.parse(delta, 0)[0][9:]
    (99.5, 4.0, 100.5, 3.0, 8)
    >>> p.parse("not json", 0), p.stats.rejected
    ([], {'invalid json': 1})
    """

    def __init__(self, venue: str, markets: Iterable[MarketInfo] | None, derive: Derive) -> None:
        super().__init__(venue, markets, derive)
        self._books: dict[str, tuple[Level, Level]] = {}

    def parse(self, raw: bytes | str, recv_ns: int) -> list[Tick]:
        """Parse one frame received at ``recv_ns`` (ns since the epoch); never raises on bad input.

        Returns
        -------
        list[Tick]
            The frame's ticks (trades in trade-time order; one quote for a book frame; empty
            for skipped or rejected frames).
        """
        try:
            msg = _loads(raw)
        except _JSONDecodeError:
            return self.reject(base.REJECT_JSON, raw)
        if type(msg) is not dict:
            return self.reject(base.REJECT_NOT_OBJECT, raw)
        topic = msg.get("topic")
        if type(topic) is str:
            head = topic[:12]
            if head == "orderbook.1.":  # the most frequent: pushed every 10 ms per symbol
                return self._book(msg, recv_ns)
            if head == "publicTrade.":
                return self._trades(msg, recv_ns)
            reason = _SKIPPED_CHANNELS.get(topic.partition(".")[0])
            if reason is None:
                logger.debug("unknown Bybit topic %r", topic)
                reason = base.SKIP_UNKNOWN_EVENT
            self.stats.skip(reason)
            return []
        if topic is None:
            return self._reply(msg)
        return self.reject(base.REJECT_MISSING, msg)

    def _reply(self, msg: dict[str, Any]) -> list[Tick]:
        """Count an answer (or a client request) without a topic."""
        op = msg.get("op")
        success = msg.get("success")
        if success is False:
            logger.debug("Bybit refused a request: %r", msg)
            self.stats.skip(base.SKIP_ERROR_REPLY)
        elif op == "ping" or op == "pong" or msg.get("ret_msg") == "pong":
            self.stats.skip(base.SKIP_KEEPALIVE)
        elif op == "subscribe" or op == "unsubscribe" or success is True:
            self.stats.skip(base.SKIP_ACK)
        else:
            return self.reject(base.REJECT_MISSING, msg)
        return []

    def _trades(self, msg: dict[str, Any], recv_ns: int) -> list[Tick]:
        data = msg.get("data")
        if type(data) is not list:
            return self.reject(base.REJECT_MISSING if data is None else base.REJECT_NOT_OBJECT, msg)
        if len(data) == 1:
            return self._trade(data[0], recv_ns)
        if not data:
            return self.reject(base.REJECT_MISSING, msg)
        out: list[Tick] = []
        for item in data:
            out += self._trade(item, recv_ns)
        for earlier, later in pairwise(out):
            if later[3] < earlier[3]:
                out.sort(key=_EVENT_MS)
                break
        return out

    def _trade(self, d: Any, recv_ns: int) -> list[Tick]:
        if type(d) is not dict:
            return self.reject(base.REJECT_NOT_OBJECT, d)
        try:
            market = self.market(d["s"])
            p, v, event_ms = d["p"], d["v"], d["T"]
            trade_id = d["i"]
            taker = d["S"]
            if type(p) is not str or type(v) is not str or type(event_ms) is not int:
                return self.reject(base.REJECT_TYPE, d)  # decimal strings, integer ms
            price = float(p)
            size = float(v)
        except KeyError:
            return self.reject(base.REJECT_MISSING, d)
        except ValueError:
            return self.reject(base.REJECT_NOT_NUMERIC, d)
        if market is None:
            return self.unresolved(d.get("s"), d)
        side = _SIDES.get(taker, 0) if type(taker) is str else 0
        if not side:
            return self.reject(REJECT_SIDE, d)
        if not market.in_base_units and price > 0.0:
            size = market.base_size(size, price)
        if type(trade_id) is not str:
            trade_id = str(trade_id)
        return self.trade(market.symbol, event_ms, recv_ns, price, size, side, trade_id, d)

    def _book(self, msg: dict[str, Any], recv_ns: int) -> list[Tick]:
        data = msg.get("data")
        if type(data) is not dict:
            return self.reject(base.REJECT_MISSING if data is None else base.REJECT_NOT_OBJECT, msg)
        try:
            venue_id = data["s"]
            market = self.market(venue_id)
            kind = msg["type"]
            bids = data["b"]
            asks = data["a"]
            event_ms = msg.get("cts") or msg["ts"]
            update_id = data["u"]
        except KeyError:
            return self.reject(base.REJECT_MISSING, msg)
        if type(event_ms) is not int or type(update_id) is not int:
            return self.reject(base.REJECT_TYPE, msg)  # integer ms and update ids
        if market is None:
            return self.unresolved(venue_id, msg)
        books = self._books
        if kind == "delta":
            book = books.get(venue_id)
            if book is None:
                self.stats.skip(base.SKIP_NO_BOOK)
                return []
        elif kind == "snapshot":
            book = _EMPTY
        else:
            logger.debug("unknown Bybit book frame type %r", kind)
            self.stats.skip(base.SKIP_UNKNOWN_EVENT)
            return []
        bid_top, ask_top = book
        try:
            if bids:
                bid_top = _side(bids, bid_top, True)
            if asks:
                ask_top = _side(asks, ask_top, False)
        except _BadLevelError as bad:
            return self.reject(bad.reason, msg)
        except TypeError:
            return self.reject(base.REJECT_TYPE, msg)
        except (ValueError, LookupError):
            return self.reject(base.REJECT_NOT_NUMERIC, msg)
        bid, bid_size, _ = bid_top
        ask, ask_size, _ = ask_top
        if not (bid and ask):
            if venue_id in books or len(books) < _BOOK_LIMIT:
                books[venue_id] = (bid_top, ask_top)
            self.stats.skip(base.SKIP_ONE_SIDED)
            return []
        if not market.in_base_units:
            bid_size, ask_size = market.base_size(bid_size, bid), market.base_size(ask_size, ask)
        # the quote is built here rather than by self.quote(): the book frame is the venue's
        # most frequent, and one call less keeps its parse within 3x orjson.loads
        reason = _quote_fault(bid, bid_size, ask, ask_size, event_ms)
        if reason is not None:
            return self.reject(reason, msg)  # a rejected frame leaves the book as it was
        if book is not _EMPTY or venue_id in books or len(books) < _BOOK_LIMIT:
            books[venue_id] = (bid_top, ask_top)
        self.stats.parsed_quotes += 1
        return [
            _new_tick(
                Tick,
                (self.venue, market.symbol, QUOTE, event_ms, recv_ns, 0.0, 0.0, 0, "",
                 bid, bid_size, ask, ask_size, update_id),
            )
        ]  # fmt: skip


# -- the venue ----------------------------------------------------------------------------------


class Bybit(Venue):
    """Bybit v5 linear USDT perpetuals (see the module docstring)."""

    name = "bybit"
    title = "Bybit v5 linear"
    ccxt_id = "bybit"
    routes: ClassVar[Mapping[str, str]] = {PUBLIC: "wss://stream.bybit.com" + PATH}
    channels = "`publicTrade`, `orderbook.1`"
    keepalive = Keepalive(ping=PING, ping_every_s=20.0, ws_ping=False)
    max_connection_s = None
    sequential_trade_ids = False
    subscribe_per_s = 5.0

    def markets(self) -> Mapping[str, MarketInfo]:
        """The shipped table (:data:`MARKETS`)."""
        return _table()

    def venue_id(self, symbol: str) -> str:
        """``BTC/USDT:USDT`` -> ``BTCUSDT``.

        Raises
        ------
        FeedParseError
            When ``symbol`` is not a USDT perpetual.

        Examples
        --------
        >>> VENUE.venue_id("1000PEPE/USDT:USDT")
        '1000PEPEUSDT'
        """
        known = self.markets().get(symbol)
        if known is not None:
            return known.venue_id
        parts = split_unified(symbol)
        if parts.expiry or parts.quote != "USDT" or parts.settle != "USDT":
            raise FeedParseError(f"{symbol}: tickcast's Bybit venue covers USDT perpetuals only")
        return f"{parts.base}{parts.quote}"

    def derive(self, venue_id: str) -> MarketInfo | None:
        """The table's market of ``venue_id``, else any ``<BASE>USDT`` id (contract size 1).

        Examples
        --------
        >>> VENUE.derive("BTCUSDT").price_tick, VENUE.derive("WIFUSDT").symbol
        (0.1, 'WIF/USDT:USDT')
        >>> VENUE.derive("BTCUSD") is None
        True
        """
        known = _by_id().get(venue_id)
        if known is not None:
            return known
        symbol = unified_symbol(venue_id)
        return derived_market(symbol, venue_id) if symbol is not None else None

    def parser(self, markets: Iterable[MarketInfo] | None = None, label: str = "") -> BybitParser:
        """A :class:`BybitParser` of this venue's ids."""
        return BybitParser(label or self.name, markets, self.derive)

    def topics(self, market: MarketInfo) -> tuple[str, str]:
        """The topics of one market: its trades and its level-1 book.

        Examples
        --------
        >>> VENUE.topics(VENUE.market("BTC/USDT:USDT"))
        ('publicTrade.BTCUSDT', 'orderbook.1.BTCUSDT')
        """
        return f"{TRADE_CHANNEL}.{market.venue_id}", f"{BOOK_CHANNEL}.{market.venue_id}"

    def connections(
        self, markets: Sequence[MarketInfo], urls: Mapping[str, str]
    ) -> list[Connection]:
        """Connections to the public URL, each subscribing its markets' topics
        :data:`ARGS_PER_MESSAGE` at a time, no more than :data:`ARGS_CHARS_PER_CONNECTION`
        characters of topics each.

        Examples
        --------
        >>> plan = VENUE.connections([VENUE.market("BTC/USDT:USDT")], VENUE.routes)
        >>> [(c.route, c.url, len(c.subscribe)) for c in plan]
        [('public', 'wss://stream.bybit.com/v5/public/linear', 1)]
        """
        groups: list[list[str]] = []
        chars = ARGS_CHARS_PER_CONNECTION
        for market in markets:
            pair = self.topics(market)
            cost = sum(len(t) + 3 for t in pair)  # quotes and comma
            if chars + cost > ARGS_CHARS_PER_CONNECTION:
                groups.append([])
                chars = 0
            groups[-1].extend(pair)
            chars += cost
        url = urls[PUBLIC]
        out: list[Connection] = []
        for i, topics in enumerate(groups):
            messages = tuple(
                subscribe_message(topics[j : j + ARGS_PER_MESSAGE], str(j // ARGS_PER_MESSAGE + 1))
                for j in range(0, len(topics), ARGS_PER_MESSAGE)
            )
            out.append(Connection(PUBLIC if i == 0 else f"{PUBLIC}-{i + 1}", url, messages))
        return out

    def classify(self, raw: bytes) -> Control:
        """Subscription answers, pongs and refusals; anything else is data.

        Examples
        --------
        >>> ack = b'{"success":true,"ret_msg":"","conn_id":"c","req_id":"1","op":"subscribe"}'
        >>> pong = b'{"success":true,"ret_msg":"pong","conn_id":"c","req_id":"1","op":"ping"}'
        >>> VENUE.classify(ack).kind, VENUE.classify(pong).kind
        ('ack', 'pong')
        >>> VENUE.classify(b'{"success":false,"ret_msg":"error:x","op":"subscribe"}')
        Control(kind='error', reply=None, detail='error:x')
        """
        if raw[:9] == b'{"topic":' or b'"op"' not in raw:
            return Control(DATA)
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return Control(DATA)
        if type(msg) is not dict or "topic" in msg:
            return Control(DATA)
        op, success = msg.get("op"), msg.get("success")
        if success is False:
            return Control(ERROR, detail=str(msg.get("ret_msg", "")))
        if op == "pong" or (success is True and (op == "ping" or msg.get("ret_msg") == "pong")):
            return Control(PONG)
        if success is True:
            return Control(ACK)
        return Control(DATA)

    def recognises(self, raw: bytes) -> bool:
        """A frame of a Bybit topic (``{"topic":"publicTrade.BTCUSDT",...``) whose id this venue
        names.

        Examples
        --------
        >>> VENUE.recognises(b'{"topic":"orderbook.1.BTCUSDT","type":"delta"}')
        True
        >>> VENUE.recognises(b'{"action":"update","arg":{"topic":"publicTrade"}}')
        False
        """
        if raw[:10] != b'{"topic":"':
            return False
        end = raw.find(b'"', 10)
        channel, dot, rest = raw[10:end].partition(b".")
        if not dot or channel not in (b"publicTrade", b"orderbook", b"tickers"):
            return False
        return self.derive(rest.rpartition(b".")[2].decode(errors="replace")) is not None

    def dialect(self) -> BybitDialect:
        """The server side, for the simulated exchange."""
        return BybitDialect(self)


@cache
def _table() -> dict[str, MarketInfo]:
    return market_table(MARKETS)


@cache
def _by_id() -> dict[str, MarketInfo]:
    return {m.venue_id: m for m in _table().values()}


# -- rendering (the simulated venue) ------------------------------------------------------------


def render_trade(
    tick: Tick,
    market: MarketInfo,
    *,
    direction: str = "ZeroPlusTick",
    seq: int | None = None,
    block: bool = False,
    price_decimals: int = PRICE_DECIMALS,
    size_decimals: int = 0,
) -> dict[str, object]:
    """One entry of a ``publicTrade`` frame's ``data`` list, keys in Bybit's order.

    Prices are padded to ``price_decimals``, sizes (contracts: base units on linear markets)
    to ``size_decimals``; both keep every digit the value needs. ``seq`` is left out when None
    (older frames have none).

    Raises
    ------
    FeedParseError
        When ``tick`` is not a trade or has a non-finite value.

    Examples
    --------
    >>> from tickcast.service.ticks import trade
    >>> t = trade("bybit", "LTC/USDT:USDT", 1680688979983, 0, 94.53, 0.4, 1, "4c7b")
    >>> render_trade(t, VENUE.market("LTC/USDT:USDT"), direction="ZeroMinusTick")
    {'T': 1680688979983, 's': 'LTCUSDT', 'S': 'Buy', 'v': '0.4', 'p': '94.53', \
'L': 'ZeroMinusTick', 'i': '4c7b', 'BT': False}
    """
    if tick.kind != TRADE:
        raise FeedParseError(f"render_trade needs a trade tick, got a {tick.kind!r}")
    entry: dict[str, object] = {
        "T": tick.event_ms,
        "s": market.venue_id,
        "S": "Buy" if tick.side == 1 else "Sell",
        "v": decimal_text(market.contracts(tick.size, tick.price), size_decimals),
        "p": decimal_text(tick.price, price_decimals),
        "L": direction,
        "i": tick.trade_id,
        "BT": block,
    }
    if seq is not None:
        entry["seq"] = seq
    return entry


def trades_frame(
    venue_id: str, entries: Sequence[Mapping[str, object]], push_ms: int
) -> dict[str, object]:
    """A ``publicTrade`` frame of ``entries`` (see :func:`render_trade`) pushed at ``push_ms``.

    Examples
    --------
    >>> list(trades_frame("BTCUSDT", [], 1))
    ['topic', 'type', 'ts', 'data']
    """
    return {
        "topic": f"{TRADE_CHANNEL}.{venue_id}",
        "type": "snapshot",
        "ts": push_ms,
        "data": list(entries),
    }


def render_book(
    venue_id: str,
    kind: str,
    bids: Sequence[Sequence[str]],
    asks: Sequence[Sequence[str]],
    update_id: int,
    seq: int,
    push_ms: int,
    cts: int | None = None,
) -> dict[str, object]:
    """An ``orderbook.1`` frame (``kind`` ``"snapshot"`` or ``"delta"``) of the given levels
    (``[price, size]`` decimal strings, size ``"0"`` to remove a level), keys in Bybit's order;
    ``cts`` (the matching engine's time) is left out when None, as in older frames.

    Examples
    --------
    >>> frame = render_book("BTCUSDT", "delta", [["28552.00", "0.012"]], [], 7, 9, 5, cts=4)
    >>> orjson.dumps(frame).decode()
    '{"topic":"orderbook.1.BTCUSDT","type":"delta","ts":5,"data":{"s":"BTCUSDT",\
"b":[["28552.00","0.012"]],"a":[],"u":7,"seq":9},"cts":4}'
    """
    frame: dict[str, object] = {
        "topic": f"{BOOK_CHANNEL}.{venue_id}",
        "type": kind,
        "ts": push_ms,
        "data": {
            "s": venue_id,
            "b": [list(level) for level in bids],
            "a": [list(level) for level in asks],
            "u": update_id,
            "seq": seq,
        },
    }
    if cts is not None:
        frame["cts"] = cts
    return frame


def _side_delta(
    before: tuple[float, str, str], after: tuple[float, str, str], bids: bool
) -> list[list[str]]:
    """The delta levels that turn one side's top ``before`` into ``after`` (each ``(price,
    price text, size text)``), best price first as Bybit lists them."""
    price, price_text, size_text = after
    old_price, old_text, old_size = before
    if price_text == old_text:
        return [] if size_text == old_size else [[price_text, size_text]]
    new, gone = [price_text, size_text], [old_text, "0"]
    better = price > old_price if bids else price < old_price
    return [new, gone] if better else [gone, new]


def tick_direction(price: float, last_price: float | None, last_direction: str) -> str:
    """Bybit's ``L`` of a trade at ``price`` after one at ``last_price``.

    Examples
    --------
    >>> tick_direction(10.0, 9.0, "MinusTick"), tick_direction(9.0, 9.0, "MinusTick")
    ('PlusTick', 'ZeroMinusTick')
    """
    if last_price is None or price == last_price:
        return "ZeroPlusTick" if last_direction in ("PlusTick", "ZeroPlusTick") else "ZeroMinusTick"
    return "PlusTick" if price > last_price else "MinusTick"


@dataclass(slots=True)
class _SymbolState:
    """What the renderer remembers of one symbol."""

    market: MarketInfo
    trade_topic: str
    book_topic: str
    seq: int = 0
    last_price: float | None = None
    direction: str = "ZeroPlusTick"
    top: tuple[tuple[float, str, str], tuple[float, str, str]] | None = None
    top_ms: int = 0
    update_id: int = 0
    since_snapshot: int = 0


class BybitRenderer(Renderer):
    """Turn market ticks into Bybit frames: one ``publicTrade`` frame per trade, one
    ``orderbook.1`` frame per quote (a snapshot for a symbol's first quote and every
    :data:`SNAPSHOT_EVERY` frames, deltas between; a new subscriber is welcomed with a snapshot
    of the current top). Trade ids are the market's own; ``seq`` counts a symbol's frames.

    Parameters
    ----------
    market_of : callable
        Unified symbol -> its :class:`MarketInfo`.
    cts : bool
        Put the matching engine's time (``cts``, the tick's event time) in book frames, as
        Bybit does since 2023; ``ts`` is the event time either way.

    Examples
    --------
    >>> from tickcast.service.ticks import quote
    >>> render = BybitRenderer(VENUE.assumed_market)
    >>> q = quote("sim", "BTC/USDT:USDT", 1_767_225_600_000, 0, 60000.0, 1.5, 60000.1, 2.0, 3)
    >>> [(topic, orjson.loads(frame)["type"]) for topic, frame in
    ...  render.events(q, {"orderbook.1.BTCUSDT"})]
    [('orderbook.1.BTCUSDT', 'snapshot')]
    >>> orjson.loads(render.events(q._replace(bid_size=1.0), {"orderbook.1.BTCUSDT"})[0][1])["data"]
    {'s': 'BTCUSDT', 'b': [['60000.00', '1']], 'a': [], 'u': 3, 'seq': 2}
    """

    def __init__(self, market_of: Callable[[str], MarketInfo], *, cts: bool = True) -> None:
        self._market_of = market_of
        self._cts = cts
        self._symbols: dict[str, _SymbolState] = {}
        self._books: dict[str, _SymbolState] = {}

    def _state(self, symbol: str) -> _SymbolState:
        market = self._market_of(symbol)
        state = _SymbolState(
            market, f"{TRADE_CHANNEL}.{market.venue_id}", f"{BOOK_CHANNEL}.{market.venue_id}"
        )
        self._symbols[symbol] = self._books[state.book_topic] = state
        return state

    def events(self, tick: Tick, wanted: Collection[str]) -> list[tuple[str, bytes]]:
        """The ``(topic, encoded frame)`` pairs of ``tick`` for the topics in ``wanted``."""
        state = self._symbols.get(tick.symbol) or self._state(tick.symbol)
        state.seq += 1
        if tick.kind == TRADE:
            direction = tick_direction(tick.price, state.last_price, state.direction)
            state.last_price, state.direction = tick.price, direction
            if state.trade_topic not in wanted:
                return []
            entry = render_trade(tick, state.market, direction=direction, seq=state.seq)
            frame = trades_frame(state.market.venue_id, [entry], tick.event_ms)
            return [(state.trade_topic, orjson.dumps(frame))]
        market = state.market
        top = (
            (tick.bid, decimal_text(tick.bid, PRICE_DECIMALS),
             decimal_text(market.contracts(tick.bid_size, tick.bid))),
            (tick.ask, decimal_text(tick.ask, PRICE_DECIMALS),
             decimal_text(market.contracts(tick.ask_size, tick.ask))),
        )  # fmt: skip
        before = state.top
        snapshot = before is None or state.since_snapshot + 1 >= SNAPSHOT_EVERY
        state.since_snapshot = 0 if snapshot else state.since_snapshot + 1
        state.top, state.top_ms, state.update_id = top, tick.event_ms, tick.update_id
        if state.book_topic not in wanted:
            return []
        if snapshot or before is None:
            return [(state.book_topic, self._snapshot(state))]
        frame = render_book(
            market.venue_id,
            "delta",
            _side_delta(before[0], top[0], bids=True),
            _side_delta(before[1], top[1], bids=False),
            tick.update_id,
            state.seq,
            tick.event_ms,
            tick.event_ms if self._cts else None,
        )
        return [(state.book_topic, orjson.dumps(frame))]

    def _snapshot(self, state: _SymbolState) -> bytes:
        assert state.top is not None
        bid, ask = state.top
        frame = render_book(
            state.market.venue_id,
            "snapshot",
            [[bid[1], bid[2]]],
            [[ask[1], ask[2]]],
            state.update_id,
            state.seq,
            state.top_ms,
            state.top_ms if self._cts else None,
        )
        return orjson.dumps(frame)

    def welcome(self, topic: str) -> list[bytes]:
        """A snapshot of the current top of book for a new ``orderbook.1`` subscriber."""
        state = self._books.get(topic)
        if state is None or state.top is None:
            return []
        return [self._snapshot(state)]


#: Malformed frames the ``malformed_every`` fault cycles through: broken JSON, a non-object, a
#: bad price, a NaN size, an unknown channel, a trade with a missing field, a crossed book (which
#: the parser rejects without touching its book).
MALFORMED_FRAMES: Final[tuple[bytes, ...]] = (
    b'{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":17',
    b"not json at all",
    b'[{"T":1,"s":"BTCUSDT","S":"Buy","v":"1","p":"100"}]',
    b'{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[{"T":1,"s":"BTCUSDT",'
    b'"S":"Buy","v":"1","p":"-5","L":"MinusTick","i":"x","BT":false}]}',
    b'{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[{"T":1,"s":"BTCUSDT",'
    b'"S":"Sell","v":"NaN","p":"100","L":"PlusTick","i":"x","BT":false}]}',
    b'{"topic":"mysteryChannel.BTCUSDT","type":"snapshot","ts":1,"data":{}}',
    b'{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[{"T":1,"s":"BTCUSDT",'
    b'"S":"Buy","v":"1","L":"PlusTick","i":"x","BT":false}]}',
    b'{"topic":"orderbook.1.BTCUSDT","type":"snapshot","ts":1,"data":{"s":"BTCUSDT",'
    b'"b":[["101.00","1"]],"a":[["100.00","1"]],"u":1,"seq":1}}',
)


class BybitDialect(Dialect):
    """The server side of Bybit v5 linear: ``/v5/public/linear``, subscription by message, the
    client's pings answered, silent clients cut (see the module docstring).

    Examples
    --------
    >>> dialect = VENUE.dialect()
    >>> dialect.endpoint("/v5/public/linear"), dialect.endpoint("/v5/public/spot")
    (Endpoint(route='public', topics=(), combined=False), None)
    >>> answer = dialect.on_message(b'{"req_id":"7","op":"ping"}', ())
    >>> orjson.loads(answer.frames[0])["ret_msg"], answer.keepalive
    ('pong', True)
    """

    keepalive = SimKeepalive(client_silence_s=SIM_CLIENT_SILENCE_S)

    def __init__(self, venue: Venue) -> None:
        self.venue = venue
        self.conn_id = str(uuid.uuid4())

    def endpoint(self, path: str) -> Endpoint | None:
        """The public route at :data:`PATH`; anything else is refused."""
        return Endpoint(PUBLIC) if urlsplit(path).path == PATH else None

    def answer(self, success: bool, ret_msg: str, req_id: object, op: object) -> bytes:
        """Bybit's answer to a request, keys in its order (``req_id`` only when sent)."""
        frame: dict[str, object] = {"success": success, "ret_msg": ret_msg, "conn_id": self.conn_id}
        if req_id is not None:
            frame["req_id"] = req_id
        frame["op"] = op
        return orjson.dumps(frame)

    def on_message(self, message: bytes, requested: Sequence[str]) -> Reply:
        """Answer one ``subscribe`` / ``unsubscribe`` / ``ping`` request.

        A subscription naming a topic the simulator does not serve is refused whole with
        ``success:false`` (``"error:handler not found,topic:..."`` for an unknown channel, as
        Bybit answers).
        """
        try:
            request: Any = orjson.loads(message)
        except orjson.JSONDecodeError:
            return Reply((self.answer(False, "error:request is not json", None, ""),))
        if type(request) is not dict:
            return Reply((self.answer(False, "error:invalid op", None, ""),))
        op, req_id, args = request.get("op"), request.get("req_id"), request.get("args")
        if op == "ping":
            return Reply((self.answer(True, "pong", req_id, "ping"),), keepalive=True)
        if op not in ("subscribe", "unsubscribe"):
            return Reply((self.answer(False, "error:invalid op", req_id, op),))
        if not (type(args) is list and args and all(type(a) is str for a in args)):
            return Reply((self.answer(False, "error:args must be a list of topics", req_id, op),))
        refused = [a for a in args if _SIM_TOPIC.match(a) is None]
        if refused:
            known = refused[0].partition(".")[0] in (TRADE_CHANNEL, *_SKIPPED_CHANNELS)
            why = "not served by the simulator" if known else "handler not found"
            return Reply((self.answer(False, f"error:{why},topic:{refused[0]}", req_id, op),))
        ack = (self.answer(True, "", req_id, op),)
        if op == "subscribe":
            return Reply(ack, subscribe=tuple(args), request=True)
        return Reply(ack, unsubscribe=tuple(args), request=True)

    def renderer(self) -> BybitRenderer:
        """A :class:`BybitRenderer` on the venue's simulated markets."""
        return BybitRenderer(self.venue.assumed_market)

    def malformed(self) -> tuple[bytes, ...]:
        """:data:`MALFORMED_FRAMES`."""
        return MALFORMED_FRAMES


VENUE = Bybit()
"""Bybit v5 linear."""
