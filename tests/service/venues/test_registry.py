"""The registry of venues and what ``--exchange`` / ``exchange.name`` name: live venues,
simulated dialects, ccxt.pro venues; several at once, each with its own symbols."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickcast.service.ops.config import ConfigError, load_settings
from tickcast.service.ticks import Instrument
from tickcast.service.venues.registry import VENUES, source, sources, venue
from tickcast.service.venues.venue import Venue, VenueError


def test_every_registered_venue_is_a_venue_named_as_registered() -> None:
    for name in VENUES:
        found = venue(name)
        assert isinstance(found, Venue) and found.name == name
        assert found.routes and all(u.startswith("wss://") for u in found.routes.values())


@pytest.mark.parametrize(
    ("spec", "label", "simulated", "venue_name"),
    [
        ("sim", "sim", True, "binanceusdm"),
        ("sim:binanceusdm", "sim", True, "binanceusdm"),
        ("sim:binancecoinm", "sim-binancecoinm", True, "binancecoinm"),
        ("binancecoinm", "binancecoinm", False, "binancecoinm"),
    ],
)
def test_an_exchange_names_a_source_and_the_label_of_its_ticks(
    spec: str, label: str, simulated: bool, venue_name: str
) -> None:
    found = source(spec)
    assert (found.label, found.simulated) == (label, simulated)
    assert found.venue is not None and found.venue.name == venue_name


def test_a_ccxt_source_names_any_ccxt_pro_venue_by_its_id() -> None:
    found = source("ccxt:kraken")
    assert (found.label, found.venue, found.ccxt_id) == ("kraken", None, "kraken")
    with pytest.raises(VenueError, match=r"ccxt\.pro has no exchange"):
        source("ccxt:nowhere")


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (["nowhere"], "unknown venue 'nowhere'"),
        (["sim:nowhere"], "unknown venue 'nowhere'"),
        (["odd:thing"], "expected <venue>, sim, sim:<venue> or ccxt:<id>"),
        (["binanceusdm", "binanceusdm"], "binanceusdm given twice"),
        (["sim", "sim:binanceusdm"], "sim given twice"),
    ],
)
def test_bad_exchange_lists_are_refused_with_a_clear_reason(specs: list[str], message: str) -> None:
    with pytest.raises(VenueError, match=message):
        sources(specs)


def test_several_venues_each_get_their_symbols_one_instrument_per_pair(tmp_path: Path) -> None:
    path = tmp_path / "tickcast.toml"
    path.write_text(
        '[exchange]\nname = ["binanceusdm", "sim:binancecoinm"]\n'
        'symbols = ["BTC/USDT:USDT", "ETH/USDT:USDT"]\n'
        '[exchange.venue_symbols]\n"sim:binancecoinm" = ["BTC/USD:BTC"]\n'
    )
    exchange = load_settings(path).exchange
    assert [s.label for s in exchange.sources()] == ["binanceusdm", "sim-binancecoinm"]
    assert exchange.instruments() == [
        Instrument("binanceusdm", "BTC/USDT:USDT"),
        Instrument("binanceusdm", "ETH/USDT:USDT"),
        Instrument("sim-binancecoinm", "BTC/USD:BTC"),
    ]
    flags = load_settings(None, {"exchange.name": "binanceusdm,sim:binancecoinm"}).exchange
    assert flags.name == ["binanceusdm", "sim:binancecoinm"]


def test_venue_symbols_must_name_a_configured_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="venue_symbols names 'bybit'"):
        load_settings(None, {"exchange.venue_symbols": {"bybit": ["BTC/USDT:USDT"]}})


def test_urls_override_route_by_route_and_a_single_url_names_a_one_route_venue() -> None:
    urls = load_settings(
        None,
        {
            "exchange.urls.binancecoinm": "ws://127.0.0.1:1",
            "exchange.urls.binanceusdm.market": "ws://127.0.0.1:2/market",
        },
    ).exchange.urls
    assert urls["binancecoinm"] == {"public": "ws://127.0.0.1:1"}
    assert urls["binanceusdm"] == {
        "public": "wss://fstream.binance.com/public",
        "market": "ws://127.0.0.1:2/market",
    }
    with pytest.raises(ConfigError, match="binanceusdm has no route trade"):
        load_settings(None, {"exchange.urls.binanceusdm.trade": "ws://x"})
    with pytest.raises(ConfigError, match="no live venue 'bitmex'"):
        load_settings(None, {"exchange.urls.bitmex": "ws://x"})
