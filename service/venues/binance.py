"""Binance USDⓈ-M futures: a pure parser of market-data frames, and the venue's symbol names.

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

Sizes on Binance USDⓈ-M are already in base units (contract size 1); a ``contract_size`` mapping
can still scale them. :func:`unified_symbol` and :func:`venue_symbol` translate between the
venue's ids (``BTCUSDT``) and ccxt unified symbols. The inverse of the parser — ticks rendered
as the venue's event dicts, for the simulated exchange — is
:mod:`tickcast.service.venues.binance_render`.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Final

import orjson

from tickcast.service.ticks import QUOTE, TRADE, Tick
from tickcast.service.venues import base
from tickcast.service.venues.base import FeedParseError, ParseStats, join_unified, split_unified

__all__ = ["VENUE", "BinanceParser", "unified_symbol", "venue_symbol"]

logger = logging.getLogger(__name__)

VENUE: Final = "binanceusdm"

#: Quote assets recognised when deriving a unified symbol offline, longest first.
QUOTE_ASSETS: Final = ("FDUSD", "USDT", "USDC", "BUSD", "BTC")

#: Events that are understood but carry no tick, and the skip reason counted for each.
_SKIPPED_EVENTS: Final[dict[str, str]] = {
    "depthUpdate": base.SKIP_DEPTH,
    "markPriceUpdate": base.SKIP_MARK_PRICE,
} | dict.fromkeys(
    ("kline", "continuous_kline", "24hrTicker", "24hrMiniTicker", "forceOrder", "compositeIndex",
     "contractInfo", "assetIndexUpdate"),
    base.SKIP_OTHER_EVENT,
)  # fmt: skip

_VENUE_ID = re.compile(r"^([A-Z0-9]+?)(?:_(\d{6}))?$")
_CACHE_LIMIT: Final = 4096
_new_tick = tuple.__new__
_isfinite = math.isfinite
_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError

#: A resolved symbol: (unified symbol, contract size), or None for an unsubscribed one.
_Resolved = tuple[str, float] | None


def unified_symbol(venue_id: str) -> str:
    """Derive the ccxt unified symbol of a Binance USDⓈ-M id without the exchange's market list.

    Perpetuals quoted in USDT, USDC, FDUSD or BUSD settle in their quote asset; a ``_YYMMDD``
    suffix marks a dated future. Other quote assets are a best effort.

    Raises
    ------
    FeedParseError
        When no known quote asset ends ``venue_id``.

    Examples
    --------
    >>> unified_symbol("BTCUSDT"), unified_symbol("1000PEPEUSDC")
    ('BTC/USDT:USDT', '1000PEPE/USDC:USDC')
    >>> unified_symbol("ETHUSDT_240927")
    'ETH/USDT:USDT-240927'
    """
    match = _VENUE_ID.match(venue_id)
    if match is not None:
        pair, expiry = match.group(1), match.group(2) or ""
        for quote in QUOTE_ASSETS:
            if pair.endswith(quote) and len(pair) > len(quote):
                return join_unified(pair[: -len(quote)], quote, quote, expiry)
    raise FeedParseError(f"cannot derive a unified symbol from Binance id {venue_id!r}")


@lru_cache(maxsize=1024)
def venue_symbol(unified: str) -> str:
    """Binance USDⓈ-M id of a ccxt unified symbol.

    Examples
    --------
    >>> venue_symbol("BTC/USDT:USDT"), venue_symbol("ETH/USDT:USDT-240927")
    ('BTCUSDT', 'ETHUSDT_240927')
    """
    parts = split_unified(unified)
    venue_id = f"{parts.base}{parts.quote}"
    return f"{venue_id}_{parts.expiry}" if parts.expiry else venue_id


class BinanceParser:
    """Pure parser of Binance USDⓈ-M market-data frames into :class:`Tick` objects.

    Parameters
    ----------
    symbols : Mapping[str, str] or None
        Venue id -> unified symbol (``{"BTCUSDT": "BTC/USDT:USDT"}``). When given, frames of
        other symbols are skipped as ``"unsubscribed symbol"``; when None, every symbol is
        accepted and named with :func:`unified_symbol`.
    venue : str
        Venue id written into every tick.
    contract_size : Mapping[str, float] or None
        Base units per contract, by venue id (or unified symbol); 1 when absent.

    Attributes
    ----------
    stats : ParseStats
        Counters of ticks made and messages skipped or rejected.

    Examples
    --------
    >>> p = BinanceParser()
    >>> frame = '{"e":"trade","T":1723161256322,"s":"BTCUSDT","t":7,"p":"61800.30",'
    >>> frame += '"q":"0.006","m":true}'
    >>> p.parse(frame, 0)[0][:9]
    ('binanceusdm', 'BTC/USDT:USDT', 'trade', 1723161256322, 0, 61800.3, 0.006, -1, '7')
    >>> p.parse("not json", 0), p.stats.rejected
    ([], {'invalid json': 1})
    """

    def __init__(
        self,
        symbols: Mapping[str, str] | None = None,
        venue: str = VENUE,
        contract_size: Mapping[str, float] | None = None,
    ) -> None:
        self.symbols = dict(symbols) if symbols is not None else None
        self.venue = venue
        self.contract_size = dict(contract_size) if contract_size is not None else {}
        for name, size in self.contract_size.items():
            if not (_isfinite(size) and size > 0.0):
                raise FeedParseError(f"contract size of {name} must be positive, got {size!r}")
        self.stats = ParseStats()
        self._resolved: dict[str, _Resolved] = {}

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
            return self._reject(base.REJECT_JSON, raw)
        if type(msg) is not dict:
            return self._reject(base.REJECT_NOT_OBJECT, raw)
        data = msg.get("data", msg)
        if type(data) is dict:
            return self._event(data, recv_ns)
        if type(data) is list:
            out: list[Tick] = []
            for item in data:
                if type(item) is dict:
                    out += self._event(item, recv_ns)
                else:
                    self._reject(base.REJECT_NOT_OBJECT, raw)
            return out
        return self._reject(base.REJECT_NOT_OBJECT, raw)

    def _event(self, d: dict[str, Any], recv_ns: int) -> list[Tick]:
        e = d.get("e")
        if e == "bookTicker":
            return self._book_ticker(d, recv_ns)
        if e == "trade":
            return self._trade(d, recv_ns, "t")
        if e == "aggTrade":
            return self._trade(d, recv_ns, "a")
        if e is None:
            return self._reply(d)
        reason = _SKIPPED_EVENTS.get(e) if type(e) is str else None
        if reason is None:
            logger.debug("unknown Binance event type %r", e)
            reason = base.SKIP_UNKNOWN_EVENT
        self.stats.skip(reason)
        return []

    def _reply(self, d: dict[str, Any]) -> list[Tick]:
        """Classify an object without an event type: ack, error reply, snapshot or garbage."""
        if "lastUpdateId" in d:
            reason = base.SKIP_SNAPSHOT
        elif "result" in d and "id" in d:
            reason = base.SKIP_ACK
        elif "error" in d or ("code" in d and "msg" in d):
            logger.debug("Binance error reply: %r", d)
            reason = base.SKIP_ERROR_REPLY
        else:
            return self._reject(base.REJECT_MISSING, d)
        self.stats.skip(reason)
        return []

    def _trade(self, d: dict[str, Any], recv_ns: int, id_key: str) -> list[Tick]:
        try:
            resolved = self._symbol(d["s"])
            price = float(d["p"])
            size = float(d["q"])
            event_ms = int(d["T"])
            trade_id = str(d[id_key])
            maker = d["m"]
        except KeyError:
            return self._reject(base.REJECT_MISSING, d)
        except (TypeError, ValueError, OverflowError):
            return self._reject(base.REJECT_NOT_NUMERIC, d)
        if resolved is None:
            return self._unresolved(d)
        if maker is True:
            side = -1
        elif maker is False:
            side = 1
        else:
            return self._reject(base.REJECT_SIDE, d)
        if not (_isfinite(price) and _isfinite(size)):
            return self._reject(base.REJECT_NON_FINITE, d)
        if price <= 0.0:
            return self._reject(base.REJECT_PRICE, d)
        if size < 0.0:
            return self._reject(base.REJECT_SIZE, d)
        if event_ms <= 0:
            return self._reject(base.REJECT_TIME, d)
        symbol, contract = resolved
        if contract != 1.0:
            size *= contract
        self.stats.parsed_trades += 1
        return [
            _new_tick(
                Tick,
                (self.venue, symbol, TRADE, event_ms, recv_ns, price, size, side, trade_id,
                 0.0, 0.0, 0.0, 0.0, 0),
            )
        ]  # fmt: skip

    def _book_ticker(self, d: dict[str, Any], recv_ns: int) -> list[Tick]:
        try:
            resolved = self._symbol(d["s"])
            bid = float(d["b"])
            bid_size = float(d["B"])
            ask = float(d["a"])
            ask_size = float(d["A"])
            event_ms = int(d.get("T") or d["E"])
            update_id = int(d["u"])
        except KeyError:
            return self._reject(base.REJECT_MISSING, d)
        except (TypeError, ValueError, OverflowError):
            return self._reject(base.REJECT_NOT_NUMERIC, d)
        if resolved is None:
            return self._unresolved(d)
        if not (_isfinite(bid) and _isfinite(ask) and _isfinite(bid_size) and _isfinite(ask_size)):
            return self._reject(base.REJECT_NON_FINITE, d)
        if bid <= 0.0 or ask <= 0.0:
            return self._reject(base.REJECT_PRICE, d)
        if bid_size < 0.0 or ask_size < 0.0:
            return self._reject(base.REJECT_SIZE, d)
        if bid > ask:
            return self._reject(base.REJECT_CROSSED, d)
        if event_ms <= 0:
            return self._reject(base.REJECT_TIME, d)
        symbol, contract = resolved
        if contract != 1.0:
            bid_size *= contract
            ask_size *= contract
        self.stats.parsed_quotes += 1
        return [
            _new_tick(
                Tick,
                (self.venue, symbol, QUOTE, event_ms, recv_ns, 0.0, 0.0, 0, "",
                 bid, bid_size, ask, ask_size, update_id),
            )
        ]  # fmt: skip

    def _symbol(self, venue_id: str) -> _Resolved:
        """Unified symbol and contract size of ``venue_id``; None when unsubscribed or unnamed."""
        try:
            return self._resolved[venue_id]
        except KeyError:
            pass
        except TypeError:  # unhashable: not a symbol at all
            return None
        resolved: _Resolved = None
        if type(venue_id) is not str:
            return None
        if self.symbols is not None:
            unified = self.symbols.get(venue_id)
            if unified is not None:
                resolved = (unified, self._contract(venue_id, unified))
        else:
            try:
                unified = unified_symbol(venue_id)
            except FeedParseError:
                unified = None
            if unified is not None:
                resolved = (unified, self._contract(venue_id, unified))
        if len(self._resolved) < _CACHE_LIMIT:
            self._resolved[venue_id] = resolved
        return resolved

    def _contract(self, venue_id: str, unified: str) -> float:
        return float(self.contract_size.get(venue_id, self.contract_size.get(unified, 1.0)))

    def _unresolved(self, d: dict[str, Any]) -> list[Tick]:
        if self.symbols is None or type(d.get("s")) is not str:
            return self._reject(base.REJECT_SYMBOL, d)
        self.stats.skip(base.SKIP_UNSUBSCRIBED)
        return []

    def _reject(self, reason: str, what: object) -> list[Tick]:
        self.stats.reject(reason)
        logger.debug("rejected Binance frame (%s): %.200r", reason, what)
        return []
