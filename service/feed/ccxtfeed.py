"""Any other venue, through ccxt.pro's own client: ``--exchange ccxt:<id>``.

:class:`CcxtFeed` runs two loops on a ccxt.pro exchange: trades (``watch_trades_for_symbols``,
or one ``watch_trades`` per symbol where the venue lacks it) and best bid/ask (``watch_bids_asks``,
else a one-level order book per symbol), and maps what ccxt returns to the same ticks the native
venues make. ccxt manages the websocket; each loop is run by
:func:`~tickcast.service.feed.reconnect.reconnect_loop` (capped, jittered backoff; every attempt
after the first counts as a reconnect), and a loop that receives nothing for ``watchdog_s`` is
restarted.

The known ccxt pitfalls are handled:

* de-duplication of trades: ccxt.pro drops repeated id-less trades on some venues
  (``ignoreDuplicates``); identical trades are real, so the option is turned off;
* sizes in contracts: ccxt's ``amount`` and bid/ask volumes are contracts on contract markets
  (OKX swaps); they are converted to base units with the market's contract size (at the price,
  for inverse contracts);
* every tick goes through the one tick validation, and what fails is counted, never raised.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from tickcast.service.feed.reconnect import Backoff, is_retryable, reconnect_loop
from tickcast.service.feed.shell import FeedConfig
from tickcast.service.feed.stats import FeedStats, RouteState, Sink
from tickcast.service.ticks import Tick
from tickcast.service.venues.base import REJECT_MISSING, REJECT_SYMBOL, REJECT_TYPE
from tickcast.service.venues.markets import MarketError, MarketInfo, ccxt_markets, from_ccxt
from tickcast.service.venues.parser import VenueParser, wire_number
from tickcast.service.venues.registry import Source

logger = logging.getLogger(__name__)

TRADES = "trades"
QUOTES = "quotes"
_SIDES = {"buy": 1, "sell": -1}


async def ccxt_markets_of(
    source: Source, symbols: Sequence[str], *, online: bool
) -> list[MarketInfo]:
    """The markets of ``symbols`` on a ``ccxt:<id>`` source, from the venue's market list.

    Raises
    ------
    MarketError
        Offline (tickcast ships no metadata for venues it reaches through ccxt), when the list
        cannot be loaded, or when it lacks a symbol.
    """
    ccxt_id = source.ccxt_id or source.label
    if not online:
        raise MarketError(f"ccxt:{ccxt_id} needs the venue's market list: it cannot run offline")
    import ccxt.async_support as ccxt_async

    exchange = getattr(ccxt_async, ccxt_id)({"enableRateLimit": True, "timeout": 10000})
    try:
        listed: Mapping[str, Any] = await asyncio.wait_for(exchange.load_markets(), 20.0)
    except Exception as exc:
        raise MarketError(f"cannot load the markets of ccxt:{ccxt_id}: {exc}") from exc
    finally:
        await exchange.close()
    missing = [s for s in symbols if s not in listed]
    if missing:
        raise MarketError(f"ccxt:{ccxt_id} lists no market {', '.join(missing)}")
    return [from_ccxt(listed[s]) for s in symbols]


class CcxtTicks(VenueParser):
    """ccxt's unified trades and bid/ask tickers -> ticks (validated, counted like a parser).

    ccxt gives prices and amounts as JSON-like numbers (floats, ``safe_number``), timestamps as
    integers (``safe_integer``) and an absent value as None: a None is counted as a missing
    field, any other value of another type (a bool, a string, a float timestamp) as a wrong
    value type (:func:`~tickcast.service.venues.parser.wire_number`); nothing is coerced.
    """

    def __init__(self, venue: str, markets: Sequence[MarketInfo]) -> None:
        super().__init__(venue, markets, lambda _: None)
        self.by_symbol = {m.symbol: m for m in markets}

    def from_trade(self, t: Mapping[str, Any], recv_ns: int) -> list[Tick]:
        """One ccxt trade structure -> a trade tick (sizes in base units)."""
        market = self.by_symbol.get(t.get("symbol"))  # type: ignore[arg-type]
        if market is None:
            return self.reject(REJECT_SYMBOL, t)
        try:
            price, amount, event_ms = t["price"], t["amount"], t["timestamp"]
            side = _SIDES[t["side"]]
            if price is None or amount is None or event_ms is None:
                return self.reject(REJECT_MISSING, t)
            if type(event_ms) is not int:
                return self.reject(REJECT_TYPE, t)
            price, amount = wire_number(price), wire_number(amount)
        except KeyError:
            return self.reject(REJECT_MISSING, t)
        except TypeError:
            return self.reject(REJECT_TYPE, t)
        size = market.base_size(amount, price) if price > 0.0 else amount
        trade_id = "" if t.get("id") is None else str(t["id"])
        return self.trade(market.symbol, event_ms, recv_ns, price, size, side, trade_id, t)

    def from_quote(self, q: Mapping[str, Any], recv_ns: int) -> list[Tick]:
        """One ccxt bid/ask ticker or one-level order book -> a quote tick."""
        market = self.by_symbol.get(q.get("symbol"))  # type: ignore[arg-type]
        if market is None:
            return self.reject(REJECT_SYMBOL, q)
        try:
            if "bids" in q:
                (bid, bid_size, *_), (ask, ask_size, *_) = q["bids"][0], q["asks"][0]
            else:
                bid, bid_size, ask, ask_size = q["bid"], q["bidVolume"], q["ask"], q["askVolume"]
            event_ms = q["timestamp"]
            if None in (bid, bid_size, ask, ask_size, event_ms):
                return self.reject(REJECT_MISSING, q)
            bid, ask = wire_number(bid), wire_number(ask)
            bid_size, ask_size = wire_number(bid_size), wire_number(ask_size)
            if type(event_ms) is not int:
                return self.reject(REJECT_TYPE, q)
        except (KeyError, IndexError, ValueError):  # ValueError: a level without a size
            return self.reject(REJECT_MISSING, q)
        except TypeError:
            return self.reject(REJECT_TYPE, q)
        if bid > 0.0 and ask > 0.0:
            bid_size, ask_size = market.base_size(bid_size, bid), market.base_size(ask_size, ask)
        return self.quote(market.symbol, event_ms, recv_ns, bid, bid_size, ask, ask_size, 0, q)

    def parse(self, raw: bytes | str, recv_ns: int) -> list[Tick]:
        """ccxt delivers structures, not frames: nothing to parse (the Parser protocol)."""
        return []


def ccxt_client(ccxt_id: str, markets: Sequence[MarketInfo]) -> Any:
    """A ccxt.pro exchange with ``markets`` set (no REST call) and duplicate-dropping off."""
    import ccxt.pro

    exchange = getattr(ccxt.pro, ccxt_id)({"enableRateLimit": True, "newUpdates": True})
    for method in ("watchTrades", "watchTradesForSymbols"):
        exchange.options.setdefault(method, {})["ignoreDuplicates"] = False
    exchange.set_markets(ccxt_markets(markets))
    return exchange


class CcxtFeed:
    """Trades and best bid/ask of ``markets`` through ccxt.pro; see the module docstring.

    Parameters
    ----------
    source : Source
        A ``ccxt:<id>`` source.
    markets : sequence of MarketInfo
        The subscribed markets (contract sizes convert ccxt's amounts).
    config : FeedConfig
        Watchdog and backoff.
    exchange : ccxt.pro exchange, optional
        The client to use (default: :func:`ccxt_client`; tests point one at the simulator).
    rng : numpy.random.Generator, optional
        Jitter of the backoff.
    """

    def __init__(
        self,
        source: Source,
        markets: Sequence[MarketInfo],
        config: FeedConfig | None = None,
        *,
        exchange: Any = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.label = source.label
        self.markets = list(markets)
        self.config = config if config is not None else FeedConfig()
        self.exchange = exchange or ccxt_client(source.ccxt_id or source.label, self.markets)
        self.parser = CcxtTicks(self.label, self.markets)
        self.guard = self.config.guard(self.parser.stats)
        self.stats = FeedStats()
        self.watches = self._watches()
        self.routes = {route: RouteState() for route in self.watches}
        self.rng = rng if rng is not None else np.random.default_rng()
        self._tried: set[str] = set()
        self._since = time.monotonic()
        """When the connections were last (re)opened: a loop silent since then is stale."""

    @property
    def symbols(self) -> list[str]:
        """The subscribed unified symbols."""
        return [m.symbol for m in self.markets]

    def _watches(self) -> dict[str, Callable[[], Any]]:
        """One watch loop per route: all symbols at once where the venue can, else one per
        symbol (``trades BTC/USDT:USDT``)."""
        has = self.exchange.has
        out: dict[str, Callable[[], Any]] = {}
        if has.get("watchTradesForSymbols"):
            out[TRADES] = self._trades_of(None)
        else:
            out.update({f"{TRADES} {s}": self._trades_of(s) for s in self.symbols})
        if has.get("watchBidsAsks"):
            out[QUOTES] = self._bids_asks
        else:
            out.update({f"{QUOTES} {s}": self._book_of(s) for s in self.symbols})
        return out

    async def run(self, sink: Sink) -> None:
        """Watch trades and quotes into ``sink`` until cancelled; close the client after."""
        try:
            async with asyncio.TaskGroup() as group:
                for route, watch in self.watches.items():
                    group.create_task(self._loop(route, watch, sink))
                group.create_task(self._watchdog())
        finally:
            await self.exchange.close()

    async def _watchdog(self) -> None:
        """Reopen ccxt's connections when a loop receives nothing for ``watchdog_s`` (a venue
        that acknowledged a subscription and then stays silent included)."""
        limit = self.config.watchdog_s
        while True:
            await asyncio.sleep(min(limit / 4.0, 1.0))
            now = time.monotonic()
            silent = [
                route
                for route, state in self.routes.items()
                if now - max(state.last_frame_monotonic, self._since) >= limit
            ]
            if silent:
                self.stats.watchdog_trips += 1
                logger.warning("%s: no data for %.1f s on %s; reconnecting", self.label,
                               limit, ", ".join(silent))  # fmt: skip
                self._since = now
                await self.exchange.close_ws_clients()

    async def _loop(self, route: str, watch: Callable[[], Any], sink: Sink) -> None:
        policy = Backoff(self.config.backoff_base_s, self.config.backoff_cap_s, self.rng)

        async def session(policy: Backoff) -> bool:
            self.stats.attempts += 1
            if route in self._tried:
                self.stats.reconnects += 1
            self._tried.add(route)
            await self._pump(route, watch, sink, policy)
            return False

        def on_retry(exc: BaseException | None, delay: float) -> None:
            self.routes[route].retry(exc, delay)
            if exc is not None:
                self.stats.errors += 1

        await reconnect_loop(
            session, policy, classify=_retryable, on_retry=on_retry, name=f"{self.label} {route}"
        )

    async def _pump(
        self, route: str, watch: Callable[[], Any], sink: Sink, policy: Backoff
    ) -> None:
        """Call ``watch`` until it fails.

        ``watch`` is awaited as it is (not under a timeout that would cancel ccxt's shared
        futures): :meth:`_watchdog` closes ccxt's connections instead, which cancels the
        awaited future and ends the session like a dropped connection.
        """
        state = self.routes[route]
        task = asyncio.current_task()
        while True:
            try:
                ticks = await watch()
            except asyncio.CancelledError:
                if task is not None and task.cancelling() == 0:
                    raise ConnectionError(f"{self.label} {route}: connection closed") from None
                raise
            if not state.connected:
                state.connected = True
                self.stats.connects += 1
                policy.reset()
            state.last_frame_monotonic = time.monotonic()
            self.stats.frames += 1
            if ticks:
                ticks = self.guard.admit(ticks)
            if ticks:
                self.stats.ticks += len(ticks)
                sink(ticks)

    def _trades_of(self, symbol: str | None) -> Callable[[], Any]:
        async def watch() -> list[Tick]:
            ex = self.exchange
            if symbol is None:
                trades = await ex.watch_trades_for_symbols(self.symbols)
            else:
                trades = await ex.watch_trades(symbol)
            recv_ns = time.time_ns()
            out: list[Tick] = []
            for t in trades:
                out += self.parser.from_trade(t, recv_ns)
            return out

        return watch

    async def _bids_asks(self) -> list[Tick]:
        tickers = await self.exchange.watch_bids_asks(self.symbols)
        recv_ns = time.time_ns()
        out: list[Tick] = []
        for ticker in tickers.values():
            out += self.parser.from_quote(ticker, recv_ns)
        return out

    def _book_of(self, symbol: str) -> Callable[[], Any]:
        async def watch() -> list[Tick]:
            book = await self.exchange.watch_order_book(symbol, 1)
            return self.parser.from_quote(book, time.time_ns())

        return watch


def _retryable(exc: BaseException) -> bool:
    """ccxt's network errors and the usual transient ones are retried."""
    import ccxt

    return isinstance(exc, ccxt.NetworkError | ccxt.ExchangeNotAvailable) or is_retryable(exc)
