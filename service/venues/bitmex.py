"""BitMEX — retired: the venue closed on 2026-09-23. Recorded BitMEX frames still parse.

Choosing ``bitmex`` (or ``sim:bitmex``) for a live service stops at start with the one-line
reason :attr:`BitMex.retired`; ``tickcast backtest`` still reads ``<ns> <json>`` recordings of
its realtime API.

Wire format (``../shared/exchange-samples/bitmex``): ``{"table": "trade", "action": "insert",
"data": [...]}``; each trade has an ISO-8601 ``timestamp``, ``symbol`` (``XBTUSD``,
``UNIUSDT``), ``side`` (taker ``Buy``/``Sell``), ``size`` in contracts, ``price``,
``trdMatchID`` and ``homeNotional`` — the size in the base currency, which the parser uses, so
no contract multiplier is needed. Other tables (``quote``, ``orderBookL2``, ``instrument``...)
and ``partial`` images are skipped and counted: quote sizes are contracts whose multipliers
tickcast does not ship.

Symbols: ``XBT`` is ccxt's ``BTC``; ids ending in ``USDT`` are linear (``UNIUSDT`` is
``UNI/USDT:USDT``), ids ending in ``USD`` settle in bitcoin (``XBTUSD`` is ``BTC/USD:BTC``,
``ETHUSD`` the quanto ``ETH/USD:BTC``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from functools import cache
from typing import Any, ClassVar, Final

import orjson

from tickcast.service.ticks import Tick
from tickcast.service.venues import base
from tickcast.service.venues.markets import MarketInfo, derived_market, market_table
from tickcast.service.venues.parser import VenueParser
from tickcast.service.venues.venue import DATA, Connection, Control, Dialect, Venue, VenueError

logger = logging.getLogger(__name__)

RETIRED: Final = (
    "BitMEX closed on 2026-09-23: it cannot be ingested live; recorded BitMEX frames still "
    "parse (tickcast backtest FILE)"
)

#: A few BitMEX perpetuals (contract sizes unused: trades carry their base size).
MARKETS = """
    BTC/USD:BTC    XBTUSD    1  0.5
    ETH/USD:BTC    ETHUSD    1  0.05
    BTC/USDT:USDT  XBTUSDT   1  0.5
    ETH/USDT:USDT  ETHUSDT   1  0.05
    UNI/USDT:USDT  UNIUSDT   1  -
"""

_SIDES: Final = {"Buy": 1, "Sell": -1}
_loads = orjson.loads


def unified_symbol(venue_id: str) -> str | None:
    """The ccxt unified symbol of a BitMEX perpetual id (None when it names none).

    Examples
    --------
    >>> unified_symbol("XBTUSD"), unified_symbol("UNIUSDT"), unified_symbol("ETHUSD")
    ('BTC/USD:BTC', 'UNI/USDT:USDT', 'ETH/USD:BTC')
    """
    for quote, settle in (("USDT", "USDT"), ("USD", "BTC")):
        if venue_id.endswith(quote) and len(venue_id) > len(quote):
            coin = venue_id[: -len(quote)]
            return f"{'BTC' if coin == 'XBT' else coin}/{quote}:{settle}"
    return None


def event_ms(timestamp: str) -> int:
    """Milliseconds since the epoch of a BitMEX ISO-8601 timestamp.

    Examples
    --------
    >>> event_ms("2021-07-22T22:36:10.014Z")
    1626993370014
    """
    return int(datetime.fromisoformat(timestamp).timestamp() * 1000.0 + 0.5)


class BitMexParser(VenueParser):
    """Pure parser of recorded BitMEX realtime frames (trades; see the module docstring).

    Examples
    --------
    >>> p = VENUE.parser()
    >>> frame = ('{"table":"trade","action":"insert","data":[{"timestamp":'
    ...          '"2021-07-22T22:36:10.014Z","symbol":"XBTUSD","side":"Sell","size":100,'
    ...          '"price":32000.5,"trdMatchID":"a1","homeNotional":0.003125}]}')
    >>> p.parse(frame, 0)[0][:9]
    ('bitmex', 'BTC/USD:BTC', 'trade', 1626993370014, 0, 32000.5, 0.003125, -1, 'a1')
    """

    def parse(self, raw: bytes | str, recv_ns: int) -> list[Tick]:
        """Parse one frame; never raises on bad input."""
        try:
            msg = _loads(raw)
        except orjson.JSONDecodeError:
            return self.reject(base.REJECT_JSON, raw)
        if type(msg) is not dict:
            return self.reject(base.REJECT_NOT_OBJECT, raw)
        table = msg.get("table")
        if table is None:
            return self._reply(msg)
        if table != "trade" or msg.get("action") == "partial":
            self.stats.skip(base.SKIP_OTHER_EVENT)
            return []
        data = msg.get("data")
        if type(data) is not list:
            return self.reject(base.REJECT_MISSING, msg)
        out: list[Tick] = []
        for item in data:
            out += self._trade(item, recv_ns)
        return out

    def _reply(self, msg: dict[str, Any]) -> list[Tick]:
        if "success" in msg or "subscribe" in msg or "info" in msg:
            self.stats.skip(base.SKIP_ACK)
        elif "error" in msg:
            self.stats.skip(base.SKIP_ERROR_REPLY)
        else:
            return self.reject(base.REJECT_MISSING, msg)
        return []

    def _trade(self, d: Any, recv_ns: int) -> list[Tick]:
        if type(d) is not dict:
            return self.reject(base.REJECT_NOT_OBJECT, d)
        try:
            market = self.market(d["symbol"])
            price = float(d["price"])
            size = float(d["homeNotional"])
            side = _SIDES.get(d["side"], 0)
            when = event_ms(d["timestamp"])
            trade_id = str(d["trdMatchID"])
        except KeyError:
            return self.reject(base.REJECT_MISSING, d)
        except (TypeError, ValueError, OverflowError):
            return self.reject(base.REJECT_NOT_NUMERIC, d)
        if market is None:
            return self.unresolved(d.get("symbol"), d)
        return self.trade(market.symbol, when, recv_ns, price, size, side, trade_id, d)


class BitMex(Venue):
    """BitMEX, for its recordings only (see the module docstring)."""

    name = "bitmex"
    title = "BitMEX (closed 2026-09-23)"
    ccxt_id = None
    routes: ClassVar[Mapping[str, str]] = {"public": "wss://ws.bitmex.com/realtime"}
    channels = "`trade` (recordings only)"
    retired = RETIRED

    def markets(self) -> Mapping[str, MarketInfo]:
        """The few perpetuals of :data:`MARKETS`."""
        return _table()

    def venue_id(self, symbol: str) -> str:
        """``BTC/USD:BTC`` -> ``XBTUSD``."""
        known = self.markets().get(symbol)
        if known is not None:
            return known.venue_id
        coin, _, rest = symbol.partition("/")
        return f"{'XBT' if coin == 'BTC' else coin}{rest.partition(':')[0]}"

    def derive(self, venue_id: str) -> MarketInfo | None:
        """Any perpetual id, by the naming rule (see :func:`unified_symbol`)."""
        symbol = unified_symbol(venue_id)
        if symbol is None:
            return None
        return self.markets().get(symbol) or derived_market(symbol, venue_id)

    def parser(self, markets: Iterable[MarketInfo] | None = None, label: str = "") -> BitMexParser:
        """A :class:`BitMexParser`."""
        return BitMexParser(label or self.name, markets, self.derive)

    def connections(
        self, markets: Sequence[MarketInfo], urls: Mapping[str, str]
    ) -> list[Connection]:
        """None: the venue is closed.

        Raises
        ------
        VenueError
            Always.
        """
        raise VenueError(RETIRED)

    def classify(self, raw: bytes) -> Control:
        """Everything is data (there is no live connection to keep)."""
        return Control(DATA)

    def recognises(self, raw: bytes) -> bool:
        """A realtime frame of a BitMEX table.

        Examples
        --------
        >>> VENUE.recognises(b'{"table":"trade","action":"insert","data":[]}')
        True
        """
        return raw[:10] == b'{"table":"'

    def dialect(self) -> Dialect:
        """None: the venue is closed.

        Raises
        ------
        VenueError
            Always.
        """
        raise VenueError(RETIRED)


@cache
def _table() -> dict[str, MarketInfo]:
    return market_table(MARKETS)


VENUE = BitMex()
