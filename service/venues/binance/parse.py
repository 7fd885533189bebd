"""Binance futures: a pure parser of market-data frames (USDⓈ-M and COIN-M share the layout).

Wire format (see ``../shared/exchange-samples/binance-usdm``):

- combined-stream frames ``{"stream": "btcusdt@trade", "data": {...event...}}`` and raw frames
  (the event object alone) are both accepted; a ``data`` list (``!…@arr`` streams) is read
  element by element;
- ``trade`` → trade tick, trade id ``t``; ``aggTrade`` → trade tick, trade id ``a``; both use the
  trade time ``T`` (ms) and ``m`` (buyer is maker, so the aggressor sold: side −1);
- ``bookTicker`` → quote tick: ``b``/``B`` bid price/size, ``a``/``A`` ask price/size, ``u``
  update id, event time ``T`` (transaction time), falling back to ``E``;
- ``depthUpdate``, ``markPriceUpdate``, other known events (klines, tickers, liquidations),
  subscription acks ``{"result": null, "id": n}``, error replies and REST depth snapshots
  (``lastUpdateId``) are recognised and counted as skipped;
- anything else that cannot become a valid tick is counted as rejected (see
  :mod:`tickcast.service.venues.base` for the reasons) and logged at debug; nothing is raised.

Sizes: USDⓈ-M quantities are base units; COIN-M quantities are contracts of a fixed USD value
(100 USD for BTC, 10 USD for the others), converted to base units at the tick's price
(:meth:`~tickcast.service.venues.markets.MarketInfo.base_size`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Final

import orjson

from tickcast.service.ticks import REJECT_SIDE, Tick
from tickcast.service.venues import base
from tickcast.service.venues.markets import MarketInfo
from tickcast.service.venues.parser import Derive, VenueParser

__all__ = ["BinanceParser", "book_ticker", "classify_reply"]

logger = logging.getLogger(__name__)

#: Events that are understood but carry no tick, and the skip reason counted for each.
_SKIPPED_EVENTS: Final[dict[str, str]] = {
    "depthUpdate": base.SKIP_DEPTH,
    "markPriceUpdate": base.SKIP_MARK_PRICE,
} | dict.fromkeys(
    ("kline", "continuous_kline", "24hrTicker", "24hrMiniTicker", "forceOrder", "compositeIndex",
     "contractInfo", "assetIndexUpdate", "indexPriceUpdate"),
    base.SKIP_OTHER_EVENT,
)  # fmt: skip

_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError


def classify_reply(d: dict[str, Any]) -> str | None:
    """The skip reason of an object without an event type (ack, error, snapshot); None if it is
    none of them.

    Examples
    --------
    >>> classify_reply({"result": None, "id": 1}), classify_reply({"x": 1})
    ('subscription ack', None)
    """
    if "lastUpdateId" in d:
        return base.SKIP_SNAPSHOT
    if "result" in d and "id" in d:
        return base.SKIP_ACK
    if "error" in d or ("code" in d and "msg" in d):
        return base.SKIP_ERROR_REPLY
    return None


def book_ticker(self: VenueParser, d: dict[str, Any], recv_ns: int) -> list[Tick]:
    """The quote tick of a ``bookTicker`` event ``{e, u, E, T, s, b, B, a, A}``: bid/ask and
    their sizes, update id ``u``, event time ``T`` (transaction time), else ``E``.

    A method of :class:`BinanceParser`, and of BingX's parser, whose book ticker has the same
    layout.
    """
    try:
        market = self.market(d["s"])
        b, bq, a, aq = d["b"], d["B"], d["a"], d["A"]
        event_ms = d.get("T") or d["E"]
        update_id = d["u"]
        if (
            type(b) is not str or type(bq) is not str or type(a) is not str
            or type(aq) is not str or type(event_ms) is not int or type(update_id) is not int
        ):  # fmt: skip
            return self.reject(base.REJECT_TYPE, d)  # decimal strings, integer ms and ids
        bid, bid_size, ask, ask_size = float(b), float(bq), float(a), float(aq)
    except KeyError:
        return self.reject(base.REJECT_MISSING, d)
    except ValueError:
        return self.reject(base.REJECT_NOT_NUMERIC, d)
    if market is None:
        return self.unresolved(d.get("s"), d)
    if not market.in_base_units and bid > 0.0 and ask > 0.0:
        bid_size = market.base_size(bid_size, bid)
        ask_size = market.base_size(ask_size, ask)
    return self.quote(market.symbol, event_ms, recv_ns, bid, bid_size, ask, ask_size, update_id, d)


class BinanceParser(VenueParser):
    """Pure parser of Binance futures market-data frames into :class:`Tick` objects.

    Parameters
    ----------
    venue : str
        Venue label written into every tick.
    markets : iterable of MarketInfo, optional
        The subscribed markets; frames of other ids are skipped as ``"unsubscribed symbol"``.
        None: every id ``derive`` names.
    derive : callable
        The venue's naming rule (USDⓈ-M or COIN-M, see :mod:`.usdm` and :mod:`.coinm`).

    Examples
    --------
    >>> from tickcast.service.venues.binance.usdm import VENUE
    >>> p = VENUE.parser()
    >>> frame = '{"e":"trade","T":1723161256322,"s":"BTCUSDT","t":7,"p":"61800.30",'
    >>> frame += '"q":"0.006","m":true}'
    >>> p.parse(frame, 0)[0][:9]
    ('binanceusdm', 'BTC/USDT:USDT', 'trade', 1723161256322, 0, 61800.3, 0.006, -1, '7')
    >>> p.parse("not json", 0), p.stats.rejected
    ([], {'invalid json': 1})
    """

    def __init__(self, venue: str, markets: Iterable[MarketInfo] | None, derive: Derive) -> None:
        super().__init__(venue, markets, derive)

    def parse(self, raw: bytes | str, recv_ns: int) -> list[Tick]:
        """Parse one frame received at ``recv_ns`` (ns since the epoch); never raises on bad input.

        Returns
        -------
        list[Tick]
            The frame's ticks (usually one; empty for skipped or rejected frames).
        """
        try:
            msg = _loads(raw)
        except _JSONDecodeError:
            return self.reject(base.REJECT_JSON, raw)
        if type(msg) is not dict:
            return self.reject(base.REJECT_NOT_OBJECT, raw)
        data = msg.get("data", msg)
        if type(data) is dict:
            return self._event(data, recv_ns)
        if type(data) is list:
            out: list[Tick] = []
            for item in data:
                if type(item) is dict:
                    out += self._event(item, recv_ns)
                else:
                    self.reject(base.REJECT_NOT_OBJECT, raw)
            return out
        return self.reject(base.REJECT_NOT_OBJECT, raw)

    def _event(self, d: dict[str, Any], recv_ns: int) -> list[Tick]:
        e = d.get("e")
        if e == "bookTicker":
            return self._book_ticker(d, recv_ns)
        if e == "trade":
            return self._trade(d, recv_ns, "t")
        if e == "aggTrade":
            return self._trade(d, recv_ns, "a")
        if e is None:
            reason = classify_reply(d)
            if reason is None:
                return self.reject(base.REJECT_MISSING, d)
            if reason == base.SKIP_ERROR_REPLY:
                logger.debug("Binance error reply: %r", d)
        else:
            reason = _SKIPPED_EVENTS.get(e) if type(e) is str else None
            if reason is None:
                logger.debug("unknown Binance event type %r", e)
                reason = base.SKIP_UNKNOWN_EVENT
        self.stats.skip(reason)
        return []

    def _trade(self, d: dict[str, Any], recv_ns: int, id_key: str) -> list[Tick]:
        try:
            market = self.market(d["s"])
            p, q, event_ms, number = d["p"], d["q"], d["T"], d[id_key]
            maker = d["m"]
            if (
                type(p) is not str or type(q) is not str
                or type(event_ms) is not int or type(number) is not int
            ):  # fmt: skip
                return self.reject(base.REJECT_TYPE, d)  # decimal strings, integer ms and ids
            trade_id = str(number)
            price = float(p)
            size = float(q)
        except KeyError:
            return self.reject(base.REJECT_MISSING, d)
        except ValueError:
            return self.reject(base.REJECT_NOT_NUMERIC, d)
        if market is None:
            return self.unresolved(d.get("s"), d)
        if maker is True:
            side = -1
        elif maker is False:
            side = 1
        else:
            return self.reject(REJECT_SIDE, d)
        if not market.in_base_units and price > 0.0:
            size = market.base_size(size, price)
        return self.trade(market.symbol, event_ms, recv_ns, price, size, side, trade_id, d)

    _book_ticker = book_ticker
