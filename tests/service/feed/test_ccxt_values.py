"""ccxt's unified structures are read as ccxt builds them (issue 10): prices and amounts are
numbers, timestamps integers, an absent value None. Anything else is counted, never coerced
(``float(True)`` is 1.0, ``int(5.9)`` is 5)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tickcast.service import ticks as contract
from tickcast.service.feed.ccxtfeed import CcxtTicks
from tickcast.service.ticks import TRADE, invalid_reason
from tickcast.service.venues import base
from tickcast.service.venues.binance.usdm import VENUE as USDM

MARKETS = [USDM.market("BTC/USDT:USDT")]
TRADE_DICT: dict[str, Any] = {
    "symbol": "BTC/USDT:USDT", "price": 100.0, "amount": 2, "timestamp": 1723161256322,
    "side": "sell", "id": "7",
}  # fmt: skip
TICKER: dict[str, Any] = {
    "symbol": "BTC/USDT:USDT", "bid": 99.5, "bidVolume": 1.0, "ask": 100.5, "askVolume": 3,
    "timestamp": 1723161256322,
}  # fmt: skip
BOOK: dict[str, Any] = {
    "symbol": "BTC/USDT:USDT", "bids": [[99.5, 1.0]], "asks": [[100.5, 3.0]],
    "timestamp": 1723161256322,
}  # fmt: skip

BAD_TRADES: list[tuple[str, dict[str, Any], str]] = [
    ("bool price", {"price": True}, base.REJECT_TYPE),
    ("string amount", {"amount": "2"}, base.REJECT_TYPE),
    ("float timestamp", {"timestamp": 1723161256322.5}, base.REJECT_TYPE),
    ("bool timestamp", {"timestamp": True}, base.REJECT_TYPE),
    ("list side", {"side": ["sell"]}, base.REJECT_TYPE),
    ("absent price", {"price": None}, base.REJECT_MISSING),
    ("absent timestamp", {"timestamp": None}, base.REJECT_MISSING),
    ("year 2100", {"timestamp": 4102444800000}, contract.REJECT_TIME_RANGE),
    ("absurd price", {"price": 1e308}, contract.REJECT_PRICE_RANGE),
    ("integer price beyond floats", {"price": 10**400}, contract.REJECT_NON_FINITE),
    ("nan amount", {"amount": float("nan")}, contract.REJECT_NON_FINITE),
    ("negative amount", {"amount": -1.0}, contract.REJECT_SIZE),
]
BAD_QUOTES: list[tuple[str, dict[str, Any], str]] = [
    ("bool bid", {**TICKER, "bid": True}, base.REJECT_TYPE),
    ("string ask volume", {**TICKER, "askVolume": "3"}, base.REJECT_TYPE),
    ("float timestamp", {**TICKER, "timestamp": 1.7e12}, base.REJECT_TYPE),
    ("absent bid volume", {**TICKER, "bidVolume": None}, base.REJECT_MISSING),
    ("bool book price", {**BOOK, "bids": [[True, 1.0]]}, base.REJECT_TYPE),
    ("book level without size", {**BOOK, "asks": [[100.5]]}, base.REJECT_MISSING),
    ("book in 2100", {**BOOK, "timestamp": 4102444800000}, contract.REJECT_TIME_RANGE),
]


@pytest.mark.parametrize(
    ("change", "reason"), [c[1:] for c in BAD_TRADES], ids=[c[0] for c in BAD_TRADES]
)
def test_a_ccxt_trade_of_a_wrong_type_or_range_is_counted_never_coerced(
    change: dict[str, Any], reason: str
) -> None:
    convert = CcxtTicks("kraken", MARKETS)
    assert convert.from_trade({**TRADE_DICT, **change}, 1) == []
    assert convert.stats.rejected == {reason: 1} and convert.stats.total_parsed == 0


@pytest.mark.parametrize(
    ("quote", "reason"), [c[1:] for c in BAD_QUOTES], ids=[c[0] for c in BAD_QUOTES]
)
def test_a_ccxt_quote_of_a_wrong_type_or_range_is_counted_never_coerced(
    quote: dict[str, Any], reason: str
) -> None:
    convert = CcxtTicks("kraken", MARKETS)
    assert convert.from_quote(quote, 1) == []
    assert convert.stats.rejected == {reason: 1} and convert.stats.total_parsed == 0


def test_good_structures_between_bad_ones_all_become_ticks() -> None:
    convert = CcxtTicks("kraken", MARKETS)
    ticks = convert.from_trade(TRADE_DICT, 1) + convert.from_quote(TICKER, 1)
    for _, change, _ in BAD_TRADES:
        convert.from_trade({**TRADE_DICT, **change}, 1)
        ticks += convert.from_trade(TRADE_DICT, 1) + convert.from_quote(BOOK, 1)
    assert len(ticks) == 2 + 2 * len(BAD_TRADES)
    assert all(invalid_reason(t) is None for t in ticks)
    assert ticks[0].kind == TRADE and (ticks[0].price, ticks[0].size) == (100.0, 2.0)
    assert convert.stats.rejected == Counter(reason for *_, reason in BAD_TRADES)
