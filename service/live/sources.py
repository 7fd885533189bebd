"""Where each venue's ticks come from: its markets, its simulator (if simulated), its feed.

A :class:`~tickcast.service.venues.registry.Source` is resolved in two steps, so that a bad
symbol stops the service before anything starts:

1. :func:`resolve_markets` — the markets of the source's symbols: the simulated venue lists
   whatever it is asked to simulate (contract sizes from the venue's table); a live venue's
   come from ccxt's REST market list (online) or the metadata table shipped with the venue
   module, and a symbol neither lists raises :class:`~tickcast.service.venues.markets.MarketError`;
2. :func:`open_source` — start the simulated exchange on loopback in the venue's dialect (for
   ``sim`` sources) and build the feed: the one websocket shell on the venue (pointed at the
   simulator, or at the configured URLs), or ccxt.pro's client for ``ccxt:<id>`` sources.
   A simulator running faster or slower than real time stamps its ticks away from the wall
   clock, so its feed skips the clock check (``exchange.event_time_window_s``).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tickcast.service.feed.shell import Feed, FeedConfig
from tickcast.service.feed.stats import is_loopback
from tickcast.service.ops.config import Settings
from tickcast.service.venues.markets import MarketInfo, load_markets
from tickcast.service.venues.registry import SIM, Source


@dataclass
class OpenSource:
    """A source ready to run: its feed, and the simulated exchange behind it (if any)."""

    source: Source
    feed: Any
    """A :class:`~tickcast.service.feed.shell.Feed`, or a ccxt feed: ``run(sink)``, ``stats``,
    ``routes``, ``parser.stats``."""
    sim: Any = None
    """The :class:`~tickcast.service.sim.server.SimExchange` on loopback, for ``sim`` sources."""
    started_monotonic: float = field(default_factory=time.monotonic)


async def resolve_markets(
    source: Source, symbols: Sequence[str], settings: Settings, *, online: bool
) -> list[MarketInfo]:
    """The markets of ``symbols`` on ``source`` (see the module docstring).

    Raises
    ------
    MarketError
        A symbol the venue does not list (online: in its market list; offline: in the
        metadata shipped with tickcast).
    """
    if source.venue is None:
        from tickcast.service.feed.ccxtfeed import ccxt_markets_of

        return await ccxt_markets_of(source, symbols, online=online)
    venue = source.venue
    if source.simulated:
        return [venue.assumed_market(s) for s in symbols]
    urls = settings.exchange.urls[venue.name]
    online = online and not all(is_loopback(u) for u in urls.values())
    found = await load_markets(venue.name, venue.ccxt_id, venue.markets(), symbols, online=online)
    return [found[s] for s in symbols]


async def open_source(
    source: Source, markets: Sequence[MarketInfo], settings: Settings, *, rate_scale: float = 1.0
) -> OpenSource:
    """Start what ``source`` needs and build its feed of ``markets``."""
    config = FeedConfig.from_settings(settings.exchange)
    if source.venue is None:
        from tickcast.service.feed.ccxtfeed import CcxtFeed

        return OpenSource(source, CcxtFeed(source, markets, config))
    venue = source.venue
    if not source.simulated:
        urls = settings.exchange.urls[venue.name]
        return OpenSource(source, Feed(venue, markets, urls, config, label=source.label))
    if settings.sim.speed != 1.0:
        config = replace(config, event_time_window_s=None)  # its clock is not the wall's
    sim = await start_simulator(source, [m.symbol for m in markets], settings, rate_scale)
    urls = sim.urls_for(venue)
    feed = Feed(venue, markets, urls, config, label=source.label)
    return OpenSource(source, feed, sim)


async def start_simulator(
    source: Source, symbols: Sequence[str], settings: Settings, rate_scale: float = 1.0
) -> Any:
    """The built-in synthetic market (live: event time and trade ids from now, no oracle
    history; see :meth:`~tickcast.service.sim.market.SyntheticMarket.live`) served on
    loopback in ``source``'s dialect; started. Each simulated venue has its own market: the
    seed of ``sim-<venue>`` is ``sim.seed`` mixed with the venue's name."""
    from tickcast.service.sim.market import SyntheticMarket
    from tickcast.service.sim.server import SimExchange
    from tickcast.service.sim.symbols import specs_for

    assert source.venue is not None
    cfg = settings.sim
    market = SyntheticMarket.live(
        specs_for(symbols, rate_scale),
        seed=cfg.seed if source.label == SIM else cfg.seed ^ zlib.crc32(source.label.encode()),
        venue=source.label,
    )
    sim = SimExchange(
        market.ticks(),
        dialect=source.venue.dialect(),
        host=cfg.host,
        port=cfg.port if len(settings.exchange.name) == 1 else 0,
        speed=cfg.speed,
    )
    await sim.start()
    return sim
