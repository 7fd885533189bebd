"""Binance USDⓈ-M stream routing: which base URL (``/public`` or ``/market``) serves a stream.

Since 2026-04-23 the venue serves ``trade``, ``bookTicker`` and ``depth`` streams under
``/public`` and ``aggTrade``, ``markPrice``, ``kline`` and tickers under ``/market``. The feed
uses this to open one connection per route; the simulated exchange to serve each stream where
the venue does.
"""

from __future__ import annotations

import re
from typing import Final

PUBLIC: Final = "public"
MARKET: Final = "market"

#: Route of each channel (the part of a stream name after the first ``@``, up to the next).
CHANNEL_ROUTE: Final[dict[str, str]] = {
    "trade": PUBLIC,
    "bookTicker": PUBLIC,
    "depth": PUBLIC,
    "depth5": PUBLIC,
    "depth10": PUBLIC,
    "depth20": PUBLIC,
    "aggTrade": MARKET,
    "markPrice": MARKET,
    "kline_1m": MARKET,
    "ticker": MARKET,
    "miniTicker": MARKET,
}

_STREAM_RE = re.compile(r"^([a-z0-9_]+)@([A-Za-z0-9_]+)(@[A-Za-z0-9]+)?$")


def stream_route(stream: str) -> str | None:
    """Route (:data:`PUBLIC` / :data:`MARKET`) that serves ``stream``, None if not a stream.

    Examples
    --------
    >>> stream_route("btcusdt@trade"), stream_route("btcusdt@markPrice@1s"), stream_route("0")
    ('public', 'market', None)
    """
    match = _STREAM_RE.match(stream)
    if match is None:
        return None
    channel = match.group(2)
    if channel.startswith("kline_"):
        return MARKET
    return CHANNEL_ROUTE.get(channel)
