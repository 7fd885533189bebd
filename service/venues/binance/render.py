"""Binance futures renderers: ticks -> the venue's own event dicts, for the simulated exchange.

The inverse of :class:`~tickcast.service.venues.binance.parse.BinanceParser`: field names, key
order and decimal strings are as on the wire, such that
``parser.parse(orjson.dumps(render_trade(t, market)), t.recv_ns) == [t]`` (exactly for linear
contracts of size 1; to the last digit of the size otherwise). Only the simulator
(:mod:`tickcast.service.venues.binance.dialect`) and tests use these; the live path never
renders.
"""

from __future__ import annotations

from tickcast.service.ticks import QUOTE, TRADE, Tick
from tickcast.service.venues.base import FeedParseError, decimal_text
from tickcast.service.venues.markets import MarketInfo

__all__ = ["render_book_ticker", "render_mark_price", "render_trade"]


def render_trade(
    tick: Tick,
    market: MarketInfo,
    *,
    agg: bool = False,
    agg_id: int = 0,
    price_decimals: int = 2,
    size_decimals: int = 3,
    push_ms: int | None = None,
) -> dict[str, object]:
    """The ``trade`` (or, with ``agg``, ``aggTrade``) event of a trade tick on ``market``.

    Prices and sizes are decimal strings with at least ``price_decimals`` / ``size_decimals``
    digits (BTCUSDT's 2 and 3 by default) and as many more as the value needs to stay exact;
    the size is in the market's contracts. A ``trade`` event carries ``int(tick.trade_id)`` as
    ``t``; an ``aggTrade`` carries ``agg_id`` as ``a`` and the tick's trade id (``agg_id``
    when not an integer) as ``f``/``l``, so it parses back with ``trade_id == str(agg_id)``.
    ``E`` (the time the venue pushed the event) is ``push_ms``, by default the event time.

    Raises
    ------
    FeedParseError
        When ``tick`` is not a trade, has a non-numeric trade id, or a non-finite value.

    Examples
    --------
    >>> from tickcast.service.ticks import trade
    >>> from tickcast.service.venues.binance.usdm import VENUE
    >>> t = trade(VENUE.name, "BTC/USDT:USDT", 1723161256322, 0, 61800.3, 0.006, 1, "5")
    >>> event = render_trade(t, VENUE.market("BTC/USDT:USDT"))
    >>> event["e"], event["s"], event["t"], event["p"], event["q"], event["m"]
    ('trade', 'BTCUSDT', 5, '61800.30', '0.006', False)
    """
    if tick.kind != TRADE:
        raise FeedParseError(f"render_trade needs a trade tick, got a {tick.kind!r}")
    price = decimal_text(tick.price, price_decimals)
    size = decimal_text(market.contracts(tick.size, tick.price), size_decimals)
    maker = tick.side == -1
    pushed = tick.event_ms if push_ms is None else push_ms
    if not (agg or tick.trade_id.isdigit()):
        raise FeedParseError(f"Binance trade ids are integers; cannot render {tick.trade_id!r}")
    trade_id = int(tick.trade_id) if tick.trade_id.isdigit() else agg_id
    if agg:
        return {
            "e": "aggTrade",
            "E": pushed,
            "a": agg_id,
            "s": market.venue_id,
            "p": price,
            "q": size,
            "f": trade_id,
            "l": trade_id,
            "T": tick.event_ms,
            "m": maker,
        }
    return {
        "e": "trade",
        "E": pushed,
        "T": tick.event_ms,
        "s": market.venue_id,
        "t": trade_id,
        "p": price,
        "q": size,
        "X": "MARKET",
        "m": maker,
    }


def render_book_ticker(
    tick: Tick,
    market: MarketInfo,
    *,
    price_decimals: int = 2,
    size_decimals: int = 3,
    push_ms: int | None = None,
) -> dict[str, object]:
    """The ``bookTicker`` event of a quote tick on ``market``; options as in
    :func:`render_trade`.

    Raises
    ------
    FeedParseError
        When ``tick`` is not a quote or has a non-finite value.
    """
    if tick.kind != QUOTE:
        raise FeedParseError(f"render_book_ticker needs a quote tick, got a {tick.kind!r}")
    return {
        "e": "bookTicker",
        "u": tick.update_id,
        "s": market.venue_id,
        "b": decimal_text(tick.bid, price_decimals),
        "B": decimal_text(market.contracts(tick.bid_size, tick.bid), size_decimals),
        "a": decimal_text(tick.ask, price_decimals),
        "A": decimal_text(market.contracts(tick.ask_size, tick.ask), size_decimals),
        "T": tick.event_ms,
        "E": tick.event_ms if push_ms is None else push_ms,
    }


def render_mark_price(
    symbol_id: str,
    event_ms: int,
    mark: float,
    index: float,
    funding: float,
    next_funding_ms: int,
) -> dict[str, object]:
    """The ``markPriceUpdate`` event: mark and index price, funding rate (fraction per period).

    Examples
    --------
    >>> render_mark_price("BTCUSDT", 1597536008000, 11857.56, 11851.86949091, 0.0001564,
    ...                   1597564800000)["r"]
    '0.00015640'
    """
    return {
        "e": "markPriceUpdate",
        "E": event_ms,
        "s": symbol_id,
        "p": f"{mark:.8f}",
        "i": f"{index:.8f}",
        "r": f"{funding:.8f}",
        "T": next_funding_ms,
    }
