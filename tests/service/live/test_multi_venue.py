"""Several venues in one service: one feed and ingester per venue, one learner per
(venue, symbol), keys and metrics labelled by venue, and a symbol a venue does not list
refused before anything starts."""

from __future__ import annotations

import asyncio

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tickcast.service.bus import keys
from tickcast.service.live.service import Service
from tickcast.service.ops.config import Settings, load_settings
from tickcast.service.ticks import Instrument
from tickcast.service.venues.markets import MarketError

USDM = ["BTC/USDT:USDT", "ETH/USDT:USDT"]
COINM = ["BTC/USD:BTC"]


def two_venue_settings(exchanges: str, own: dict[str, list[str]]) -> Settings:
    return load_settings(
        None,
        {
            "exchange.name": exchanges,
            "exchange.symbols": USDM,
            "exchange.venue_symbols": own,
            "metrics.enabled": False,
            "sim.speed": 8.0,
        },
    )


@pytest.mark.parametrize(
    ("exchanges", "own", "venues"),
    [
        ("sim,sim:binancecoinm", {"sim:binancecoinm": COINM}, ("sim", "sim-binancecoinm")),
        ("sim:bybit,sim:okx", {}, ("sim-bybit", "sim-okx")),
        ("sim:bitget,sim:bingx", {}, ("sim-bitget", "sim-bingx")),
    ],
)
async def test_two_simulated_venues_fill_their_streams_and_publish_signals_for_both(
    redis_url: str,
    redis_client: redis.Redis,
    exchanges: str,
    own: dict[str, list[str]],
    venues: tuple[str, str],
) -> None:
    service = Service(two_venue_settings(exchanges, own), redis_url)
    run = asyncio.create_task(service.run(handle_signals=False))
    await asyncio.wait_for(service.ready.wait(), 15.0)
    first, second = venues
    expected = [
        *(Instrument(first, s) for s in USDM),
        *(Instrument(second, s) for s in (COINM if own else USDM)),
    ]
    assert list(service.instruments) == expected
    assert set(service.ingesters) == set(venues)

    def signals(i: Instrument) -> int:
        return int(redis_client.xlen(keys.signals_key("tickcast", i.venue, i.symbol)))

    async with asyncio.timeout(30.0):
        while not all(signals(i) >= 5 for i in expected):
            await asyncio.sleep(0.1)
    body, _ = service.metrics.exposition()
    service.request_stop()
    assert await asyncio.wait_for(run, 15.0) == 0
    for i in expected:
        assert redis_client.xlen(keys.ticks_key("tickcast", i.venue, i.symbol)) > 0
        assert redis_client.exists(keys.ckpt_key("tickcast", i.venue, i.symbol))
    written: dict[tuple[str, str], float] = {}
    connected = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "tickcast_ticks_written_total":
                key = (labels["venue"], labels["symbol"])
                written[key] = written.get(key, 0.0) + sample.value
            if sample.name == "tickcast_feed_connected":
                connected[labels["venue"], labels["route"]] = sample.value
    assert all(written[i] > 0 for i in expected), written
    assert connected == {(first, "public"): 1.0, (second, "public"): 1.0}
    assert service.worker is not None and service.worker.handed_off > 0


async def test_a_symbol_the_venue_does_not_list_stops_the_service_before_it_starts(
    redis_url: str, redis_client: redis.Redis
) -> None:
    settings = load_settings(
        None,
        {
            "exchange.name": "binanceusdm",
            "exchange.symbols": ["BTC/USDT:USDT", "FOO/BAR:BAR"],
            "metrics.enabled": False,
        },
    )
    service = Service(settings, redis_url, online=False)
    with pytest.raises(MarketError, match="FOO/BAR:BAR"):
        await asyncio.wait_for(service.run(handle_signals=False), 15.0)
    assert not service.ingesters and service.worker is None
    assert not redis_client.keys("tickcast:*"), "nothing started, nothing written"
