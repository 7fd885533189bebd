"""OKX v5 swap: USDT-margined perpetuals (``BTC-USDT-SWAP``), sized in contracts.

Wire format (samples in ``../shared/exchange-samples/okx-swap``):

- URL: ``wss://ws.okx.com:8443/ws/v5/public`` (route ``public``; ``/ws/v5/business`` and
  ``/ws/v5/private`` are not used). Text frames, JSON except the keepalive.
- Subscribe: ``{"op":"subscribe","args":[{"channel":"trades","instId":"BTC-USDT-SWAP"},
  {"channel":"bbo-tbt","instId":"BTC-USDT-SWAP"}]}``; the venue answers every arg with its own
  ack ``{"event":"subscribe","arg":{"channel":..,"instId":..},"connId":"a4d3ae55"}`` (older
  captures lack ``connId``); ``unsubscribe`` likewise. A refused request is answered
  ``{"event":"error","msg":"...","code":"60012","connId":".."}`` (60012: invalid request; 60018:
  ``Wrong URL or channel:<c>,instId:<i> doesn't exist...``); live captures put ``msg`` before
  ``code``, the parser and :meth:`Okx.classify` do not care. At most 3 subscription requests per
  second and 480 an hour per connection; a request's args at most 64 KB. tickcast sends one
  request per :data:`ARGS_PER_REQUEST` args, at most 2 a second.
- Keepalive: the text ``ping``, answered by the text ``pong`` (no websocket ping frames). The
  venue cuts a connection that had no traffic for 30 s; its clients send ``ping`` when idle,
  tickcast every 20 s regardless.
- ``trades``: ``{"arg":{"channel":"trades","instId":..},"data":[{"instId","tradeId","px","sz",
  "side","ts","count","source","seqId"}]}`` (``count``, ``source``, ``seqId`` only in recent
  captures); ``side`` is the taker's (``buy``/``sell``), ``ts`` ms as a string, ``sz`` in
  contracts. A push aggregates the fills of one taker order (``count``), so trade ids increase
  but are not consecutive. ``trades-all`` (business URL) has the same layout and parses alike.
- ``bbo-tbt``: ``{"arg":{"channel":"bbo-tbt","instId":..},"data":[{"asks":[[px,sz,"0",orders]],
  "bids":[[...]],"ts":"..","seqId":N}]}``, sizes in contracts; ``seqId`` (absent in older
  captures) becomes the update id, else 0.
- Value types are read as sent, never coerced: ``px``, ``sz`` and book levels are decimal
  strings, ``ts`` a string of digits (``"1640131236050"``; ``"1e3"`` or ``"-5"`` is
  ``non-numeric value``), ``seqId`` a JSON integer; a value of another JSON type (a number
  for ``ts`` or ``px``, a bool) is rejected as ``wrong value type``.
- Skipped and counted: acks, ``pong``, error and other events (``notice``, ``login``...),
  ``tickers`` and the other channels (books -> depth update, ``mark-price`` -> mark price).

Sizes: ``sz`` is a number of contracts; a USDT swap's contract is ``ctVal`` base units
(BTC-USDT-SWAP 0.01 BTC: 5 contracts are 0.05 BTC). The parser multiplies by ``ctVal`` (by
dividing by its exact reciprocal when it is 1/10^k, so that 727 contracts of 0.01 are 7.27, not
7.2700000000000005). Ids the shipped table does not list cannot be sized offline:
:meth:`Okx.derive` names none (a file reader rejects their frames as unrecognised symbols;
online, ccxt's market list gives the contract sizes).

Pitfalls: ccxt.pro 4.5.90 returns OKX swap trade amounts and bid/ask volumes in contracts, not
base units. A spot id (``BTC-USDT``, as in the nautilus ``bbo-tbt`` fixture) is no market of this
venue: a feed skips it as unsubscribed, a file reader rejects it as an unrecognised symbol.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from functools import cache
from operator import attrgetter
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit

import orjson

from tickcast.service.ticks import QUOTE, TRADE, Tick, quote_fault, trade_fault
from tickcast.service.venues import base
from tickcast.service.venues.base import FeedParseError, decimal_text, split_unified
from tickcast.service.venues.markets import MarketInfo, market_table
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
    "MARKETS",
    "VENUE",
    "Okx",
    "OkxDialect",
    "OkxParser",
    "OkxRenderer",
    "render_bbo",
    "render_trade",
    "swap_id",
]

logger = logging.getLogger(__name__)

PUBLIC: Final = "public"
PUBLIC_PATH: Final = "/ws/v5/public"
TRADES: Final = "trades"
TRADES_ALL: Final = "trades-all"
BBO: Final = "bbo-tbt"
CHANNELS: Final = (TRADES, BBO)
"""The channels a feed subscribes per market, in this order."""
ARGS_PER_REQUEST: Final = 50
"""Most args in one subscription request (about 2.7 KB; the venue takes up to 64 KB)."""
PING: Final = b"ping"
PONG_FRAME: Final = b"pong"

#: The main USDT perpetuals: unified symbol, id, contract size ``ctVal`` (base units), price
#: tick (``-``: not verified). Checked against the venue's instrument records: BTC in
#: ``instrument-btc-usdt-swap.txt``; BTC, ETH, SOL and DOGE in records of 2026; every row in
#: the linear-swap list that crypto-contract-value generated from the venue's REST API.
MARKETS = """
    BTC/USDT:USDT   BTC-USDT-SWAP   0.01  0.1
    ETH/USDT:USDT   ETH-USDT-SWAP   0.1   0.01
    SOL/USDT:USDT   SOL-USDT-SWAP   1     0.01
    XRP/USDT:USDT   XRP-USDT-SWAP   100   -
    DOGE/USDT:USDT  DOGE-USDT-SWAP  1000  0.00001
    ADA/USDT:USDT   ADA-USDT-SWAP   100   -
    LTC/USDT:USDT   LTC-USDT-SWAP   1     -
    LINK/USDT:USDT  LINK-USDT-SWAP  1     -
    DOT/USDT:USDT   DOT-USDT-SWAP   1     -
    AVAX/USDT:USDT  AVAX-USDT-SWAP  1     -
    BCH/USDT:USDT   BCH-USDT-SWAP   0.1   -
    TRX/USDT:USDT   TRX-USDT-SWAP   1000  -
    ETC/USDT:USDT   ETC-USDT-SWAP   10    -
"""

#: Channels understood but not ingested, and the skip reason of their frames.
_SKIPPED_CHANNELS: Final[dict[str, str]] = {
    "mark-price": base.SKIP_MARK_PRICE,
} | dict.fromkeys(
    ("books", "books5", "books-l2-tbt", "books50-l2-tbt", "books-rpi"),
    base.SKIP_DEPTH,
) | dict.fromkeys(
    ("tickers", "index-tickers", "funding-rate", "open-interest", "price-limit",
     "liquidation-orders", "estimated-price", "opt-summary", "block-tickers", "sprd-tickers"),
    base.SKIP_OTHER_EVENT,
)  # fmt: skip
_CANDLE_PREFIXES: Final = ("candle", "mark-price-candle", "index-candle")
_INGESTED: Final = (TRADES, BBO, TRADES_ALL)  # a tuple: compared by ==, safe for any JSON value
_SIDES: Final[dict[object, int]] = {"buy": 1, "sell": -1}

_new_tick = tuple.__new__
_trade_fault = trade_fault
_quote_fault = quote_fault
_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError
_event_ms = attrgetter("event_ms")


def swap_id(symbol: str) -> str:
    """The OKX perpetual swap id of a unified symbol: ``BASE-QUOTE-SWAP``.

    Raises
    ------
    FeedParseError
        When ``symbol`` is not a unified perpetual symbol (dated futures are not swaps).

    Examples
    --------
    >>> swap_id("BTC/USDT:USDT"), swap_id("BTC/USD:BTC")
    ('BTC-USDT-SWAP', 'BTC-USD-SWAP')
    """
    parts = split_unified(symbol)
    if parts.expiry:
        raise FeedParseError(f"{symbol} is a dated future, not an OKX swap")
    return f"{parts.base}-{parts.quote}-SWAP"


def _scale(market: MarketInfo) -> tuple[float, float, bool]:
    """``(multiplier, divisor, inverse)`` turning contracts into base units: ``sz * m / d``
    (linear), or ``sz * m / price`` (inverse). A contract size of 1/10^k divides by 10^k,
    which gives the float nearest the decimal product (``727 / 100 == 7.27``); multiplying by
    the inexact float 10^-k does not always (``727 * 0.01 == 7.2700000000000005``)."""
    size = market.contract_size
    if not market.linear:
        return size, 1.0, True
    if size < 1.0:
        reciprocal = round(1.0 / size)
        if reciprocal > 0 and 1.0 / reciprocal == size:
            return 1.0, float(reciprocal), False
    return size, 1.0, False


def _id_order(trade_id: str) -> tuple[int, str]:
    """Sort key of a numeric trade id given as a string."""
    return len(trade_id), trade_id


def _chronological(ticks: list[Tick]) -> list[Tick]:
    """The trades of one push in event-time order (newest-first lists reversed)."""
    first, last = ticks[0], ticks[-1]
    if (first.event_ms, _id_order(first.trade_id)) > (last.event_ms, _id_order(last.trade_id)):
        ticks.reverse()
    ticks.sort(key=_event_ms)
    return ticks


class OkxParser(VenueParser):
    """Pure parser of OKX v5 public frames into :class:`Tick` objects (see the module
    docstring); sizes in base units, never raises on bad input.

    Parameters
    ----------
    venue : str
        Venue label written into every tick.
    markets : iterable of MarketInfo, optional
        The subscribed markets; frames of other ids are skipped as ``"unsubscribed symbol"``.
        None: every id ``derive`` names (the shipped table).
    derive : callable
        The venue's naming rule (:meth:`Okx.derive`).

    Examples
    --------
    >>> p = VENUE.parser()
    >>> frame = ('{"arg":{"channel":"trades","instId":"BTC-USDT-SWAP"},"data":[{"instId":'
    ...          '"BTC-USDT-SWAP","tradeId":"148266905","px":"48938.5","sz":"5","side":"buy",'
    ...          '"ts":"1640131236050"}]}')
    >>> p.parse(frame, 0)[0][:9]
    ('okx', 'BTC/USDT:USDT', 'trade', 1640131236050, 0, 48938.5, 0.05, 1, '148266905')
    >>> p.parse(b"pong", 0), p.stats.skipped
    ([], {'keepalive': 1})
    """

    def __init__(self, venue: str, markets: Iterable[MarketInfo] | None, derive: Derive) -> None:
        super().__init__(venue, markets, derive)
        self._scales: dict[str, tuple[MarketInfo, float, float, bool]] = {}

    def parse(self, raw: bytes | str, recv_ns: int) -> list[Tick]:
        """Parse one frame received at ``recv_ns`` (ns since the epoch).

        Returns
        -------
        list[Tick]
            The frame's ticks, trades in chronological order (empty for skipped or rejected
            frames).
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
            return self._event(msg)
        arg = msg.get("arg")
        if type(arg) is not dict:
            return self.reject(base.REJECT_MISSING, msg)
        channel = arg.get("channel")
        if channel in _INGESTED:
            if type(data) is not list:
                return self.reject(base.REJECT_NOT_OBJECT, msg)
            inst_id = arg.get("instId")
            entry = self._scales.get(inst_id) if type(inst_id) is str else None
            if entry is None:
                market = self.market(inst_id)
                if market is None:
                    return self.unresolved(inst_id, msg)
                entry = self._scales[market.venue_id] = (market, *_scale(market))
            if channel == BBO:
                return self._quotes(data, entry, recv_ns)
            return self._trades(data, entry, recv_ns)
        return self._other_channel(channel)

    def _event(self, msg: dict[str, Any]) -> list[Tick]:
        event = msg.get("event")
        if event == "subscribe" or event == "unsubscribe":
            self.stats.skip(base.SKIP_ACK)
        elif event == "error":
            logger.debug("OKX error answer: %r", msg)
            self.stats.skip(base.SKIP_ERROR_REPLY)
        elif type(event) is str:
            self.stats.skip(base.SKIP_OTHER_EVENT)
        else:
            return self.reject(base.REJECT_MISSING, msg)
        return []

    def _other_channel(self, channel: object) -> list[Tick]:
        reason = _SKIPPED_CHANNELS.get(channel) if type(channel) is str else None
        if reason is None:
            if type(channel) is str and channel.startswith(_CANDLE_PREFIXES):
                reason = base.SKIP_OTHER_EVENT
            else:
                logger.debug("unknown OKX channel %r", channel)
                reason = base.SKIP_UNKNOWN_EVENT
        self.stats.skip(reason)
        return []

    def _trades(
        self, data: list[Any], entry: tuple[MarketInfo, float, float, bool], recv_ns: int
    ) -> list[Tick]:
        market, mult, div, inverse = entry
        venue, symbol = self.venue, market.symbol
        out: list[Tick] = []
        for d in data:
            if type(d) is not dict:
                self.reject(base.REJECT_NOT_OBJECT, d)
                continue
            try:
                px, sz, ts = d["px"], d["sz"], d["ts"]
                trade_id = str(d["tradeId"])
                side = _SIDES.get(d["side"], 0)
                if type(px) is not str or type(sz) is not str or type(ts) is not str:
                    self.reject(base.REJECT_TYPE, d)  # decimal strings, ms as digits
                    continue
                if not ts.isdecimal():
                    self.reject(base.REJECT_NOT_NUMERIC, d)
                    continue
                price = float(px)
                size = float(sz) * mult
            except KeyError:
                self.reject(base.REJECT_MISSING, d)
                continue
            except TypeError:  # an unhashable side
                self.reject(base.REJECT_TYPE, d)
                continue
            except ValueError:
                self.reject(base.REJECT_NOT_NUMERIC, d)
                continue
            event_ms = int(ts)
            size = size / div if not inverse else size / price if price > 0.0 else size
            reason = _trade_fault(price, size, side, event_ms)
            if reason is not None:
                self.reject(reason, d)
                continue
            self.stats.parsed_trades += 1
            out.append(
                _new_tick(
                    Tick,
                    (venue, symbol, TRADE, event_ms, recv_ns, price, size, side, trade_id,
                     0.0, 0.0, 0.0, 0.0, 0),
                )
            )  # fmt: skip
        return _chronological(out) if len(out) > 1 else out

    def _quotes(
        self, data: list[Any], entry: tuple[MarketInfo, float, float, bool], recv_ns: int
    ) -> list[Tick]:
        market, mult, div, inverse = entry
        out: list[Tick] = []
        for d in data:
            if type(d) is not dict:
                self.reject(base.REJECT_NOT_OBJECT, d)
                continue
            try:
                asks = d["asks"]
                bids = d["bids"]
                ts = d["ts"]
            except KeyError:
                self.reject(base.REJECT_MISSING, d)
                continue
            update_id = d.get("seqId", 0)
            if type(ts) is not str or type(update_id) is not int:
                self.reject(base.REJECT_TYPE, d)  # ms as digits, an integer sequence id
                continue
            if not ts.isdecimal():
                self.reject(base.REJECT_NOT_NUMERIC, d)
                continue
            event_ms = int(ts)
            if type(asks) is not list or type(bids) is not list:
                self.reject(base.REJECT_NOT_OBJECT, d)
                continue
            if not asks or not bids:
                self.stats.skip(base.SKIP_ONE_SIDED)
                continue
            try:
                ask_level, bid_level = asks[0], bids[0]
                a, aq, b, bq = ask_level[0], ask_level[1], bid_level[0], bid_level[1]
                if (
                    type(a) is not str or type(aq) is not str or type(b) is not str
                    or type(bq) is not str
                ):  # fmt: skip
                    self.reject(base.REJECT_TYPE, d)  # decimal strings
                    continue
                ask = float(a)
                ask_size = float(aq) * mult
                bid = float(b)
                bid_size = float(bq) * mult
            except IndexError:
                self.reject(base.REJECT_MISSING, d)
                continue
            except (TypeError, KeyError):  # a level that is no list
                self.reject(base.REJECT_TYPE, d)
                continue
            except ValueError:
                self.reject(base.REJECT_NOT_NUMERIC, d)
                continue
            if inverse:
                if bid > 0.0 and ask > 0.0:
                    bid_size, ask_size = bid_size / bid, ask_size / ask
            else:
                bid_size, ask_size = bid_size / div, ask_size / div
            reason = _quote_fault(bid, bid_size, ask, ask_size, event_ms)
            if reason is not None:
                self.reject(reason, d)
                continue
            self.stats.parsed_quotes += 1
            out.append(
                _new_tick(
                    Tick,
                    (self.venue, market.symbol, QUOTE, event_ms, recv_ns, 0.0, 0.0, 0, "",
                     bid, bid_size, ask, ask_size, update_id),
                )
            )  # fmt: skip
        return out


class Okx(Venue):
    """OKX v5 USDT-margined perpetual swaps (see the module docstring)."""

    name = "okx"
    title = "OKX swap"
    ccxt_id = "okx"
    routes: ClassVar[Mapping[str, str]] = {PUBLIC: "wss://ws.okx.com:8443/ws/v5/public"}
    channels = "`trades`, `bbo-tbt`"
    keepalive = Keepalive(ping=PING, ping_every_s=20.0, ws_ping=False)
    max_connection_s = None
    sequential_trade_ids = False
    subscribe_per_s = 2.0

    def markets(self) -> Mapping[str, MarketInfo]:
        """The shipped table (:data:`MARKETS`)."""
        return _table()

    def venue_id(self, symbol: str) -> str:
        """``BTC/USDT:USDT`` -> ``BTC-USDT-SWAP`` (see :func:`swap_id`)."""
        return swap_id(symbol)

    def derive(self, venue_id: str) -> MarketInfo | None:
        """The table's market of ``venue_id``; None for any other id, whose contract size is
        unknown offline (spot ids such as ``BTC-USDT`` included).

        Examples
        --------
        >>> VENUE.derive("ETH-USDT-SWAP").contract_size, VENUE.derive("BTC-USDT")
        (0.1, None)
        """
        return _by_id().get(venue_id)

    def parser(self, markets: Iterable[MarketInfo] | None = None, label: str = "") -> OkxParser:
        """An :class:`OkxParser` of this venue's ids and contract sizes."""
        return OkxParser(label or self.name, markets, self.derive)

    def connections(
        self, markets: Sequence[MarketInfo], urls: Mapping[str, str]
    ) -> list[Connection]:
        """One connection to the public URL subscribing ``trades`` and ``bbo-tbt`` of every
        market, :data:`ARGS_PER_REQUEST` args per request.

        Examples
        --------
        >>> (c,) = VENUE.connections([VENUE.market("BTC/USDT:USDT")], VENUE.routes)
        >>> c.url
        'wss://ws.okx.com:8443/ws/v5/public'
        >>> [orjson.loads(request) for request in c.subscribe]
        [{'op': 'subscribe', 'args': [{'channel': 'trades', 'instId': 'BTC-USDT-SWAP'},
                                      {'channel': 'bbo-tbt', 'instId': 'BTC-USDT-SWAP'}]}]
        """
        args = [{"channel": c, "instId": m.venue_id} for m in markets for c in CHANNELS]
        requests = tuple(
            orjson.dumps({"op": "subscribe", "args": args[i : i + ARGS_PER_REQUEST]})
            for i in range(0, len(args), ARGS_PER_REQUEST)
        )
        return [Connection(PUBLIC, urls[PUBLIC], requests)]

    def classify(self, raw: bytes) -> Control:
        """``pong``, acks (``subscribe``/``unsubscribe`` events) and errors; a ``notice``
        (such as 64008, the connection will be closed for an upgrade) is reported as an error
        so that it is logged. Anything else is data.

        Examples
        --------
        >>> VENUE.classify(b"pong").kind, VENUE.classify(b'{"event":"subscribe","arg":{}}').kind
        ('pong', 'ack')
        >>> VENUE.classify(b'{"event":"error","msg":"Invalid request","code":"60012"}')
        Control(kind='error', reply=None, detail='60012: Invalid request')
        """
        if raw == PONG_FRAME:
            return Control(PONG)
        if b'"event"' not in raw:
            return Control(DATA)
        try:
            msg = _loads(raw)
        except _JSONDecodeError:
            return Control(DATA)
        event = msg.get("event") if type(msg) is dict else None
        if event in ("subscribe", "unsubscribe", "channel-conn-count"):
            return Control(ACK)
        if event in ("error", "notice"):
            return Control(ERROR, detail=f"{msg.get('code')}: {msg.get('msg')}")
        return Control(DATA)

    def recognises(self, raw: bytes) -> bool:
        """A channel push (``"arg"`` and ``"data"``) of an id the table names.

        Examples
        --------
        >>> VENUE.recognises(b'{"arg":{"channel":"trades","instId":"BTC-USDT-SWAP"},"data":[]}')
        True
        >>> VENUE.recognises(b'{"arg":{"channel":"bbo-tbt","instId":"BTC-USDT"},"data":[]}')
        False
        """
        if b'"arg":' not in raw or b'"data":' not in raw:
            return False
        start = raw.find(b'"instId":"')
        if start < 0:
            return False
        end = raw.find(b'"', start + 10)
        return self.derive(raw[start + 10 : end].decode(errors="replace")) is not None

    def dialect(self) -> OkxDialect:
        """The server side, for the simulated exchange."""
        return OkxDialect(self)


@cache
def _table() -> dict[str, MarketInfo]:
    return market_table(MARKETS)


@cache
def _by_id() -> dict[str, MarketInfo]:
    return {m.venue_id: m for m in _table().values()}


# -- the simulated exchange's side ----------------------------------------------------------


def _contracts_text(base_size: float, price: float, market: MarketInfo) -> str:
    """Contracts on the wire for ``base_size``, as a decimal string (12 significant digits:
    drops the float noise of the division, ``1.2999999999999998`` -> ``1.3``)."""
    return decimal_text(float(f"{market.contracts(base_size, price):.12g}"))


def _arg(channel: str, inst_id: str) -> dict[str, str]:
    return {"channel": channel, "instId": inst_id}


def render_trade(tick: Tick, market: MarketInfo, *, count: int | None = 1) -> dict[str, object]:
    """The ``trades`` push of a trade tick on ``market``, keys and strings as on the wire.

    ``count`` (fills aggregated) and ``source`` (``"0"``: an ordinary order) are in recent
    pushes; ``count=None`` gives the older layout without them. The size is in contracts.

    Raises
    ------
    FeedParseError
        When ``tick`` is not a trade or has a non-finite value.

    Examples
    --------
    >>> from tickcast.service.ticks import trade
    >>> t = trade("okx", "BTC/USDT:USDT", 1640131236050, 0, 48938.5, 0.05, 1, "148266905")
    >>> render_trade(t, VENUE.market("BTC/USDT:USDT"))["data"]
    [{'instId': 'BTC-USDT-SWAP', 'tradeId': '148266905', 'px': '48938.5', 'sz': '5',
      'side': 'buy', 'ts': '1640131236050', 'count': '1', 'source': '0'}]
    """
    if tick.kind != TRADE:
        raise FeedParseError(f"render_trade needs a trade tick, got a {tick.kind!r}")
    item: dict[str, object] = {
        "instId": market.venue_id,
        "tradeId": tick.trade_id,
        "px": decimal_text(tick.price),
        "sz": _contracts_text(tick.size, tick.price, market),
        "side": "buy" if tick.side == 1 else "sell",
        "ts": str(tick.event_ms),
    }
    if count is not None:
        item["count"] = str(count)
        item["source"] = "0"
    return {"arg": _arg(TRADES, market.venue_id), "data": [item]}


def render_bbo(
    tick: Tick, market: MarketInfo, *, ask_orders: int = 1, bid_orders: int = 1
) -> dict[str, object]:
    """The ``bbo-tbt`` push of a quote tick on ``market``: levels ``[px, sz, "0", orders]``
    with sizes in contracts, ``seqId`` the update id (left out when it is 0).

    Raises
    ------
    FeedParseError
        When ``tick`` is not a quote or has a non-finite value.

    Examples
    --------
    >>> from tickcast.service.ticks import quote
    >>> q = quote("okx", "ETH/USDT:USDT", 1651761120004, 0, 3000.1, 1.5, 3000.2, 0.2, 7)
    >>> render_bbo(q, VENUE.market("ETH/USDT:USDT"))["data"]
    [{'asks': [['3000.2', '2', '0', '1']], 'bids': [['3000.1', '15', '0', '1']],
      'ts': '1651761120004', 'seqId': 7}]
    """
    if tick.kind != QUOTE:
        raise FeedParseError(f"render_bbo needs a quote tick, got a {tick.kind!r}")
    item: dict[str, object] = {
        "asks": [
            [decimal_text(tick.ask), _contracts_text(tick.ask_size, tick.ask, market), "0",
             str(ask_orders)]
        ],
        "bids": [
            [decimal_text(tick.bid), _contracts_text(tick.bid_size, tick.bid, market), "0",
             str(bid_orders)]
        ],
        "ts": str(tick.event_ms),
    }  # fmt: skip
    if tick.update_id:
        item["seqId"] = tick.update_id
    return {"arg": _arg(BBO, market.venue_id), "data": [item]}


def topic(channel: str, inst_id: str) -> str:
    """The simulator's name of one subscription: ``trades:BTC-USDT-SWAP``."""
    return f"{channel}:{inst_id}"


class OkxRenderer(Renderer):
    """Ticks -> ``trades`` and ``bbo-tbt`` pushes, one tick per push, each encoded once.

    Parameters
    ----------
    market_of : callable
        Unified symbol -> its :class:`MarketInfo` (id, contract size).

    Examples
    --------
    >>> from tickcast.service.ticks import trade
    >>> t = trade("sim", "SOL/USDT:USDT", 1_767_225_600_000, 0, 150.25, 4.0, -1, "9")
    >>> OkxRenderer(VENUE.assumed_market).events(t, {"trades:SOL-USDT-SWAP"})[0][1][:61]
    b'{"arg":{"channel":"trades","instId":"SOL-USDT-SWAP"},"data":['
    """

    def __init__(self, market_of: Callable[[str], MarketInfo]) -> None:
        self._market_of = market_of
        self._known: dict[str, tuple[MarketInfo, str, str]] = {}

    def events(self, tick: Tick, wanted: Collection[str]) -> list[tuple[str, bytes]]:
        """The ``(topic, encoded push)`` of ``tick`` when its topic is in ``wanted``."""
        known = self._known.get(tick.symbol)
        if known is None:
            market = self._market_of(tick.symbol)
            known = (market, topic(TRADES, market.venue_id), topic(BBO, market.venue_id))
            self._known[tick.symbol] = known
        market, trades, bbo = known
        if tick.kind == TRADE:
            if trades in wanted:
                return [(trades, orjson.dumps(render_trade(tick, market)))]
        elif bbo in wanted:
            return [(bbo, orjson.dumps(render_bbo(tick, market)))]
        return []


#: Channels the simulated venue acknowledges (it pushes ``trades`` and ``bbo-tbt`` only).
KNOWN_CHANNELS: Final = frozenset(
    (TRADES, BBO, "tickers", "books", "books5", "mark-price", "funding-rate", "open-interest")
)

_MALFORMED_TRADE = (
    b'{"arg":{"channel":"trades","instId":"BTC-USDT-SWAP"},"data":[{"instId":"BTC-USDT-SWAP",'
)
#: Broken frames the ``malformed_every`` fault cycles through: broken JSON, plain text, a
#: non-object, a bad price, a NaN size, an unknown channel, a trade without its price, a
#: crossed book.
MALFORMED_FRAMES: Final[tuple[bytes, ...]] = (
    _MALFORMED_TRADE + b'"tradeId":"1","px":"1',
    b"not json at all",
    b'[{"channel":"trades"}]',
    _MALFORMED_TRADE + b'"tradeId":"1","px":"-5","sz":"1","side":"buy","ts":"1"}]}',
    _MALFORMED_TRADE + b'"tradeId":"1","px":"100","sz":"NaN","side":"sell","ts":"1"}]}',
    b'{"arg":{"channel":"mystery","instId":"BTC-USDT-SWAP"},"data":[{"ts":"1"}]}',
    _MALFORMED_TRADE + b'"tradeId":"1","sz":"1","side":"buy","ts":"1"}]}',
    b'{"arg":{"channel":"bbo-tbt","instId":"BTC-USDT-SWAP"},"data":[{"asks":[["100","1","0",'
    b'"1"]],"bids":[["101","1","0","1"]],"ts":"1","seqId":1}]}',
)


class OkxDialect(Dialect):
    """The server side of OKX's public websocket, for the simulated exchange.

    ``/ws/v5/public`` only; ``ping`` is answered ``pong``; each arg of a ``subscribe`` /
    ``unsubscribe`` request gets its own ack, an arg of an unknown channel or without an
    ``instId`` a 60018 error, anything else a 60012 error. A client that was sent nothing and
    sent no ping for 30 s is cut, as the venue does.

    Parameters
    ----------
    venue : Venue
        The venue whose markets are simulated (contract sizes).
    conn_id : str
        The ``connId`` of the answers.

    Examples
    --------
    >>> d = VENUE.dialect()
    >>> d.on_message(b"ping", ()).frames
    (b'pong',)
    >>> r = d.on_message(
    ...     b'{"op":"subscribe","args":[{"channel":"trades","instId":"BTC-USDT-SWAP"}]}', ()
    ... )
    >>> r.subscribe, [orjson.loads(frame) for frame in r.frames]
    (('trades:BTC-USDT-SWAP',), [{'event': 'subscribe',
      'arg': {'channel': 'trades', 'instId': 'BTC-USDT-SWAP'}, 'connId': 'a4d3ae55'}])
    """

    keepalive = SimKeepalive(idle_s=30.0)

    def __init__(self, venue: Venue, conn_id: str = "a4d3ae55") -> None:
        self.venue = venue
        self.conn_id = conn_id

    def endpoint(self, path: str) -> Endpoint | None:
        """The public endpoint (``/ws/v5/public``, any query); None for any other path."""
        if urlsplit(path).path.rstrip("/") != PUBLIC_PATH:
            return None
        return Endpoint(PUBLIC)

    def on_message(self, message: bytes, requested: Sequence[str]) -> Reply:
        """Answer a ``ping`` or a ``subscribe`` / ``unsubscribe`` request."""
        if message.strip() == PING:
            return Reply((PONG_FRAME,), keepalive=True)
        try:
            request: Any = orjson.loads(message)
        except orjson.JSONDecodeError:
            return Reply((self._invalid(message),))
        if type(request) is not dict or type(request.get("args")) is not list:
            return Reply((self._invalid(message),))
        op = request.get("op")
        if op not in ("subscribe", "unsubscribe"):
            return Reply((self._invalid(message),))
        frames: list[bytes] = []
        topics: list[str] = []
        for arg in request["args"]:
            channel = arg.get("channel") if type(arg) is dict else None
            inst_id = arg.get("instId") if type(arg) is dict else None
            if channel not in KNOWN_CHANNELS or type(inst_id) is not str or not inst_id:
                frames.append(self._missing(channel, inst_id))
                continue
            frames.append(
                orjson.dumps({"event": op, "arg": _arg(channel, inst_id), "connId": self.conn_id})
            )
            topics.append(topic(channel, inst_id))
        if op == "subscribe":
            return Reply(tuple(frames), subscribe=tuple(topics), request=True)
        return Reply(tuple(frames), unsubscribe=tuple(topics), request=True)

    def _error(self, code: str, msg: str) -> bytes:
        return orjson.dumps({"event": "error", "msg": msg, "code": code, "connId": self.conn_id})

    def _invalid(self, message: bytes) -> bytes:
        return self._error("60012", f"Invalid request: {message.decode(errors='replace')}")

    def _missing(self, channel: object, inst_id: object) -> bytes:
        return self._error(
            "60018",
            f"Wrong URL or channel:{channel},instId:{inst_id} doesn't exist. Please use the "
            "correct URL, channel and parameters referring to API document.",
        )

    def renderer(self) -> OkxRenderer:
        """An :class:`OkxRenderer` on the venue's simulated markets."""
        return OkxRenderer(self.venue.assumed_market)

    def malformed(self) -> tuple[bytes, ...]:
        """:data:`MALFORMED_FRAMES`."""
        return MALFORMED_FRAMES


VENUE = Okx()
