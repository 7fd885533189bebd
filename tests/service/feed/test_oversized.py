"""Frames larger than ``max_frame_bytes`` are counted as rejected and never parsed, the
connection staying open (issue 10: a 5 MiB frame used to close it with 1009, the frame lost
uncounted). A plain websocket server on loopback sends the frames: the simulated exchange
renders only what a venue sends."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np
import orjson
import pytest
from websockets.asyncio.server import Server, ServerConnection, serve

from tickcast.service.feed.shell import FRAME_READ_FACTOR, Feed, FeedConfig
from tickcast.service.ops.config import load_settings
from tickcast.service.ticks import TRADE
from tickcast.service.venues import base
from tickcast.service.venues.binance.usdm import VENUE, BinanceUsdm

from support import running, until

MIB = 2**20
MARKETS = [VENUE.market("BTC/USDT:USDT")]


def trade(trade_id: int, pad: int = 0) -> bytes:
    """A combined-stream Binance trade frame, valid, padded to about ``pad`` more bytes."""
    data: dict[str, object] = {
        "e": "trade", "E": 1723161256323, "T": 1723161256322 + trade_id, "s": "BTCUSDT",
        "t": trade_id, "p": "61800.30", "q": "0.006", "X": "MARKET", "m": False,
    }  # fmt: skip
    if pad:
        data["pad"] = "x" * pad
    return orjson.dumps({"stream": "btcusdt@trade", "data": data})


def sender(frames: Sequence[bytes]) -> Callable[[ServerConnection], Awaitable[None]]:
    """A server handler sending ``frames`` (text) to each connection, then keeping it open."""

    async def handler(ws: ServerConnection) -> None:
        for frame in frames:
            await ws.send(frame.decode())
        await ws.wait_closed()

    return handler


def feed_for(server: Server, **config: Any) -> Feed:
    """A Binance USDⓈ-M trade feed pointed at ``server``, test-sized backoff."""
    port = server.sockets[0].getsockname()[1]
    venue = BinanceUsdm(("trade",), "url")
    urls = {route: f"ws://127.0.0.1:{port}/public" for route in venue.routes}
    cfg = FeedConfig(watchdog_s=30.0, backoff_base_s=0.02, backoff_cap_s=0.1, **config)
    return Feed(venue, MARKETS, urls, cfg, label="oversized", rng=np.random.default_rng(0))


async def feed_against(frames: Sequence[bytes], expected_ticks: int, **config: Any) -> Feed:
    """Run a feed against a loopback server sending ``frames``; return it once
    ``expected_ticks`` ticks arrived (and no more)."""
    async with serve(sender(frames), "127.0.0.1", 0) as server:
        feed = feed_for(server, **config)
        async with running(feed) as got:
            await until(lambda: len(got) >= expected_ticks)
        assert len(got) == expected_ticks
    return feed


async def test_a_5_mib_frame_is_counted_and_the_connection_keeps_every_valid_tick() -> None:
    frames = [trade(1), trade(2), trade(3, pad=5 * MIB), trade(4), trade(5)]
    assert len(frames[2]) > FeedConfig().max_frame_bytes, "over the default 4 MiB"
    feed = await feed_against(frames, expected_ticks=4)
    assert feed.parser.stats.rejected == {base.REJECT_OVERSIZED: 1}
    assert feed.parser.stats.parsed_trades == 4, "the oversized frame was never parsed"
    assert feed.stats.connects == 1 and feed.stats.reconnects == 0
    assert feed.stats.errors == 0 and feed.stats.frames == 5
    assert (feed.stats.gaps, feed.stats.missed_trades) == (1, 1), "trade 3 counted missing"


async def test_the_limit_is_a_setting_and_a_frame_at_the_limit_is_parsed() -> None:
    limit = 64 * 1024
    at_limit = trade(2, pad=limit)
    at_limit = trade(2, pad=limit - (len(at_limit) - limit))
    assert len(at_limit) == limit
    over = trade(3, pad=limit)
    feed = await feed_against([trade(1), at_limit, over, trade(3)], 3, max_frame_bytes=limit)
    assert feed.parser.stats.rejected == {base.REJECT_OVERSIZED: 1}
    assert feed.stats.reconnects == 0


async def test_a_frame_beyond_the_read_bound_still_closes_the_connection_and_reconnects() -> None:
    limit = 16 * 1024
    frames = [trade(1), trade(2, pad=FRAME_READ_FACTOR * limit + 1)]
    async with serve(sender(frames), "127.0.0.1", 0) as server:
        feed = feed_for(server, max_frame_bytes=limit)
        async with running(feed):
            await until(lambda: feed.stats.reconnects >= 1)
    assert feed.parser.stats.rejected == {}, "never read, so never counted as a rejection"


def test_the_exchange_setting_reaches_the_feed_config() -> None:
    settings = load_settings(None, {"exchange.max_frame_bytes": 1024})
    assert FeedConfig.from_settings(settings.exchange).max_frame_bytes == 1024
    assert FeedConfig.from_settings(load_settings(None, {}).exchange).max_frame_bytes == 4 * MIB
    with pytest.raises(ValueError, match="max_frame_bytes"):
        FeedConfig(max_frame_bytes=0)


def test_a_trade_frame_parses_when_the_feed_does_not_stop_it() -> None:
    """The oversized frame of the first test is a valid trade: only its size stops it."""
    parser = VENUE.parser(MARKETS)
    (tick,) = parser.parse(trade(3, pad=5 * MIB), 0)
    assert tick.kind == TRADE and tick.trade_id == "3"
