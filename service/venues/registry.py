"""The registry of venues, and what an ``--exchange`` value names.

:data:`VENUES` maps each venue's name to its module (imported on first use); the module's
``VENUE`` is its :class:`~tickcast.service.venues.venue.Venue`. Adding a venue is writing its
module and adding its line here.

An exchange *source* (``--exchange``, ``exchange.name``) is one of:

``<venue>``
    The live venue (``binanceusdm``, ``bybit``...), its ticks labelled with its name.
``sim``
    The built-in simulated market on loopback, speaking Binance USDⓈ-M; label ``sim``.
``sim:<venue>``
    The simulated market speaking ``<venue>``'s protocol; label ``sim-<venue>``.
``ccxt:<id>``
    Any other venue ccxt.pro supports, through ccxt's own client; label ``<id>``.

Several sources are separated by commas: ``binanceusdm,bybit``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Final

from tickcast.service.venues.venue import Venue, VenueError

#: Venue name -> the module holding its ``VENUE``.
VENUES: Final[dict[str, str]] = {
    "binanceusdm": "tickcast.service.venues.binance.usdm",
    "binancecoinm": "tickcast.service.venues.binance.coinm",
    "bybit": "tickcast.service.venues.bybit",
    "bingx": "tickcast.service.venues.bingx",
    "bitget": "tickcast.service.venues.bitget",
    "okx": "tickcast.service.venues.okx",
    "bitmex": "tickcast.service.venues.bitmex",
}

SIM: Final = "sim"
"""The zero-setup source: the simulated market in Binance USDⓈ-M's dialect."""
SIM_DIALECT: Final = "binanceusdm"
CCXT: Final = "ccxt"


@cache
def venue(name: str) -> Venue:
    """The registered venue called ``name``.

    Raises
    ------
    VenueError
        When no venue has that name.

    Examples
    --------
    >>> venue("binanceusdm").title
    'Binance USDⓈ-M'
    """
    module = VENUES.get(name)
    if module is None:
        raise VenueError(
            f"unknown venue {name!r}: use sim, sim:<venue>, ccxt:<id> or a venue: "
            + ", ".join(n for n in VENUES if venue(n).retired is None)
        )
    found: Venue = importlib.import_module(module).VENUE
    return found


@dataclass(frozen=True)
class Source:
    """Where one venue's ticks come from (see the module docstring).

    Attributes
    ----------
    spec : str
        As given: ``bybit``, ``sim:okx``, ``ccxt:kraken``.
    label : str
        The venue label of its ticks, keys and metrics.
    venue : Venue or None
        The venue whose protocol is spoken (None for ``ccxt:<id>``).
    simulated : bool
        The built-in simulated market is served on loopback.
    ccxt_id : str or None
        ccxt's id of the venue (``ccxt:<id>`` sources, and market lists of native ones).
    """

    spec: str
    label: str
    venue: Venue | None
    simulated: bool = False
    ccxt_id: str | None = None


def source(spec: str, *, live: bool = True) -> Source:
    """The :class:`Source` an ``--exchange`` item names.

    Parameters
    ----------
    spec : str
        ``<venue>``, ``sim``, ``sim:<venue>`` or ``ccxt:<id>``.
    live : bool
        Refuse retired venues (recorded frames of theirs still parse).

    Raises
    ------
    VenueError
        For an unknown venue, a retired one, or a ccxt id ccxt.pro does not have.

    Examples
    --------
    >>> source("sim").label, source("sim:binancecoinm").label, source("binanceusdm").label
    ('sim', 'sim-binancecoinm', 'binanceusdm')
    """
    spec = spec.strip()
    kind, colon, rest = spec.partition(":")
    if spec == SIM:
        return Source(spec, SIM, venue(SIM_DIALECT), simulated=True)
    if colon and kind == SIM:
        if rest == SIM_DIALECT:
            return Source(spec, SIM, venue(SIM_DIALECT), simulated=True)
        found = _usable(rest, live)
        return Source(spec, f"{SIM}-{rest}", found, simulated=True)
    if colon and kind == CCXT:
        return Source(spec, _ccxt_id(rest), None, ccxt_id=rest)
    if colon:
        raise VenueError(f"{spec!r}: expected <venue>, sim, sim:<venue> or ccxt:<id>")
    found = _usable(spec, live)
    return Source(spec, found.name, found, ccxt_id=found.ccxt_id)


def sources(specs: Iterable[str], *, live: bool = True) -> list[Source]:
    """:func:`source` of each item; labels must be distinct.

    Raises
    ------
    VenueError
        As :func:`source`, or when two items name the same label.
    """
    out = [source(s, live=live) for s in specs]
    labels = [s.label for s in out]
    twice = sorted({x for x in labels if labels.count(x) > 1})
    if twice:
        raise VenueError(f"exchange {', '.join(twice)} given twice")
    return out


def _usable(name: str, live: bool) -> Venue:
    found = venue(name)
    if live and found.retired is not None:
        raise VenueError(f"{name}: {found.retired}")
    return found


def _ccxt_id(ccxt_id: str) -> str:
    """Check that ccxt.pro has a client called ``ccxt_id``."""
    import ccxt.pro

    if not ccxt_id or ccxt_id not in ccxt.pro.exchanges:
        raise VenueError(f"ccxt.pro has no exchange {ccxt_id!r} (see ccxt.pro.exchanges)")
    return ccxt_id
