"""What a venue module provides: the sans-I/O description of one exchange's market data.

A venue module (``service/venues/<name>.py``, or a small package) holds everything tickcast knows
about one exchange's public market data, and nothing that does I/O:

* its ids: the ccxt id, the unified-symbol mapping and contract sizes of its markets (a
  metadata table shipped for the main symbols; online, ccxt's market list), see
  :mod:`tickcast.service.venues.markets`;
* its websocket URLs (defaults; the settings may point them elsewhere), the subscription plan
  (which connections, what each one sends once open) and the keepalive rules;
* the pure parser (frame -> ticks, every skip and reject counted) and :meth:`Venue.classify`,
  which tells the shell what a frame without ticks was (an ack, a pong, a ping to answer...);
* its :class:`Dialect`: the server side of the same protocol, which the simulated exchange
  (:mod:`tickcast.service.sim.server`) speaks — endpoints, subscription and ping handling, and
  the renderer (ticks -> that venue's frames).

The one websocket shell (:mod:`tickcast.service.feed.shell`) runs any :class:`Venue`; the registry
(:mod:`tickcast.service.venues.registry`) names them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Final, NamedTuple

from tickcast.service import TickcastError
from tickcast.service.ticks import Tick
from tickcast.service.venues.base import FeedParseError, Parser
from tickcast.service.venues.markets import MarketError, MarketInfo, derived_market


class VenueError(TickcastError):
    """A venue cannot be used as asked (unknown, retired, not reachable through ccxt...)."""


# What a frame that made no tick was, for the shell (see Venue.classify).
DATA: Final = "data"
"""Market data (or something unrecognised): proof that the stream is alive."""
ACK: Final = "ack"
"""The answer to a subscription request."""
PONG: Final = "pong"
"""The answer to the client's own ping."""
PING: Final = "ping"
"""The server's application-level ping, to be answered with :attr:`Control.reply`."""
ERROR: Final = "error"
"""An error answer (a refused subscription...); logged, and the stream may stay silent."""


class Control(NamedTuple):
    """What :meth:`Venue.classify` made of a frame that carried no tick."""

    kind: str
    """One of :data:`DATA`, :data:`ACK`, :data:`PONG`, :data:`PING`, :data:`ERROR`."""
    reply: bytes | None = None
    """Text frame to send back (the answer to a server ping)."""
    detail: str = ""
    """What an error answer said (for the log)."""


@dataclass(frozen=True)
class Keepalive:
    """How a client keeps its connection alive on this venue.

    Attributes
    ----------
    ping : bytes or None
        The venue's own ping message (a text frame) the client sends every
        ``ping_every_s``; None when the venue wants websocket ping frames instead (or none).
    ping_every_s : float
        Interval of the client's pings, websocket frames or ``ping`` messages (s).
    ws_ping : bool
        Send websocket ping frames (the protocol's own keepalive) every ``ping_every_s``.

    A server's own application-level pings (BingX's ``Ping``) are answered whatever these say:
    :meth:`Venue.classify` names them with the answer to send.
    """

    ping: bytes | None = None
    ping_every_s: float = 20.0
    ws_ping: bool = True


@dataclass(frozen=True)
class Connection:
    """One websocket connection of a feed: its route label, URL and subscription messages.

    ``subscribe`` holds the text frames sent once the connection is open (empty when the URL
    itself subscribes), at most ``Venue.subscribe_per_s`` per second.
    """

    route: str
    url: str
    subscribe: tuple[bytes, ...] = ()


class Venue(ABC):
    """One exchange's public market data, described without I/O (see the module docstring).

    Subclasses set the class attributes and implement the abstract methods; the module then
    exposes one instance as ``VENUE`` for the registry.
    """

    name: ClassVar[str]
    """Registry name and the ``venue`` label of its ticks, keys and metrics (``bybit``)."""
    title: ClassVar[str]
    """Human name (``Bybit v5 linear``)."""
    ccxt_id: ClassVar[str | None]
    """ccxt's id of the venue (market lists, independent-client tests); None if ccxt has none."""
    routes: ClassVar[Mapping[str, str]]
    """Route label -> default websocket URL (``exchange.urls.<name>.<route>`` overrides it)."""
    channels: ClassVar[str]
    """The channels a feed subscribes, as `tickcast venues` and the README list them."""
    keepalive: ClassVar[Keepalive] = Keepalive()
    max_connection_s: ClassVar[float | None] = None
    """The venue's connection age limit (s); the shell renews a connection before it."""
    sequential_trade_ids: ClassVar[bool] = False
    """Trade ids are consecutive integers per symbol: gaps are counted, duplicates dropped."""
    subscribe_per_s: ClassVar[float] = 5.0
    """Most subscription messages sent per second on one connection."""
    retired: ClassVar[str | None] = None
    """Why the venue cannot be used live any more (its recorded frames still parse)."""

    # -- markets -----------------------------------------------------------------------------

    @abstractmethod
    def markets(self) -> Mapping[str, MarketInfo]:
        """The metadata table shipped for the venue's main symbols, by unified symbol."""

    @abstractmethod
    def venue_id(self, symbol: str) -> str:
        """The venue's id of a unified symbol, by the venue's naming rule (``BTCUSDT``)."""

    @abstractmethod
    def derive(self, venue_id: str) -> MarketInfo | None:
        """The market a venue id names, by the venue's naming rule and with its table's
        contract sizes (recorded files name markets by id only); None when it names none."""

    def market(self, symbol: str) -> MarketInfo:
        """The shipped metadata of ``symbol``.

        Raises
        ------
        MarketError
            When the table does not list ``symbol``.
        """
        info = self.markets().get(symbol)
        if info is None:
            raise MarketError(f"{self.name} lists no market {symbol} (offline metadata)")
        return info

    def assumed_market(self, symbol: str) -> MarketInfo:
        """The shipped metadata of ``symbol`` when there is some, else a market derived from
        the symbol by the venue's naming rule (contract size 1): for simulated markets, which
        list whatever they simulate, and files named after a symbol."""
        info = self.markets().get(symbol)
        if info is not None:
            return info
        try:
            return derived_market(symbol, self.venue_id(symbol))
        except FeedParseError as exc:
            raise MarketError(str(exc)) from exc

    # -- the client side ---------------------------------------------------------------------

    @abstractmethod
    def parser(self, markets: Iterable[MarketInfo] | None = None, label: str = "") -> Parser:
        """A pure parser of the venue's frames.

        Parameters
        ----------
        markets : iterable of MarketInfo, optional
            The subscribed markets (ids and contract sizes); frames of other symbols are
            skipped. None: every market :meth:`derive` names (file readers).
        label : str
            Venue label written into the ticks (default :attr:`name`; ``sim-<name>`` for a
            simulated dialect).
        """

    @abstractmethod
    def connections(
        self, markets: Sequence[MarketInfo], urls: Mapping[str, str]
    ) -> list[Connection]:
        """The connections that subscribe the trades and best bid/ask of ``markets``.

        ``urls`` maps each of :attr:`routes` to its (configured) URL.
        """

    @abstractmethod
    def classify(self, raw: bytes) -> Control:
        """What a frame that made no tick was (acks, pongs and pings are not data)."""

    @abstractmethod
    def recognises(self, raw: bytes) -> bool:
        """Whether ``raw`` is a market-data frame of this venue (file readers tell the venue of
        a recording by its first recognised frame); a cheap look, not a parse."""

    # -- the server side ---------------------------------------------------------------------

    @abstractmethod
    def dialect(self) -> Dialect:
        """The server side of this venue's protocol, for the simulated exchange."""


# -- the simulated exchange's side --------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """Where a client connected: the route, topics subscribed by the URL, framing flags."""

    route: str
    topics: tuple[str, ...] = ()
    combined: bool = False
    """Frames are wrapped as ``{"stream": topic, "data": event}`` (Binance combined streams)."""


class Reply(NamedTuple):
    """The simulated venue's reaction to one client message."""

    frames: tuple[bytes, ...] = ()
    """Answers to send (acks, pongs, errors), unencoded."""
    subscribe: tuple[str, ...] = ()
    """Topics the client asked for."""
    unsubscribe: tuple[str, ...] = ()
    """Topics the client gave up."""
    keepalive: bool = False
    """The message was the client's ping or its answer to a server ping."""
    request: bool = False
    """The message was a (un)subscription request."""


@dataclass(frozen=True)
class SimKeepalive:
    """How the simulated venue keeps connections alive and cuts silent clients.

    Attributes
    ----------
    ws_ping_s, ws_ping_timeout_s : float or None
        Websocket ping frames sent by the server, and how long it waits for the pong.
    server_ping : bytes or None
        Application-level ping the server sends every ``server_ping_s`` (BingX's ``Ping``).
    server_ping_s : float or None
        Interval of ``server_ping``.
    client_silence_s : float or None
        A client whose last ping (or answer to ``server_ping``) is older than this is cut, as
        the venue does; None: clients need not ping.
    idle_s : float or None
        A client that was sent nothing and sent no ping for this long is cut (OKX cuts
        connections without traffic after 30 s); None: no such rule.
    """

    ws_ping_s: float | None = None
    ws_ping_timeout_s: float | None = None
    server_ping: bytes | None = None
    server_ping_s: float | None = None
    client_silence_s: float | None = None
    idle_s: float | None = None


class Renderer(ABC):
    """Ticks -> a venue's frames, for the topics some client wants (stateful: ids, books)."""

    @abstractmethod
    def events(self, tick: Tick, wanted: Collection[str]) -> list[tuple[str, bytes]]:
        """The ``(topic, encoded frame)`` pairs of ``tick`` for the topics in ``wanted``."""

    def welcome(self, topic: str) -> list[bytes]:
        """Frames a new subscriber of ``topic`` gets first (snapshots); none by default."""
        return []

    def flush(self, wanted: Collection[str]) -> list[tuple[str, bytes]]:
        """Frames still held when the market ends (a renderer that batches ticks into one
        push sends what it holds); none by default."""
        return []


class Dialect(ABC):
    """The server side of a venue's protocol: what the simulated exchange needs to speak it."""

    venue: Venue
    keepalive: SimKeepalive = SimKeepalive()
    binary: bool = False
    """Frames go out gzip-compressed in binary websocket frames (BingX)."""

    @abstractmethod
    def endpoint(self, path: str) -> Endpoint | None:
        """The :class:`Endpoint` of a request path, or None to refuse it (HTTP 404)."""

    @abstractmethod
    def on_message(self, message: bytes, requested: Sequence[str]) -> Reply:
        """React to one client message; ``requested`` lists the client's topics so far."""

    @abstractmethod
    def renderer(self) -> Renderer:
        """A fresh renderer of the market's ticks."""

    @abstractmethod
    def malformed(self) -> tuple[bytes, ...]:
        """Broken frames the ``malformed_every`` fault inserts (unencoded)."""

    def served(self, topic: str, endpoint: Endpoint) -> bool:
        """Whether a client on ``endpoint`` receives ``topic`` (it was acknowledged anyway)."""
        return True

    def frame(self, topic: str, event: bytes, endpoint: Endpoint) -> bytes:
        """The frame a client on ``endpoint`` gets for ``event`` of ``topic`` (unencoded)."""
        return event

    def encode(self, frame: bytes) -> bytes:
        """The bytes on the wire for ``frame`` (gzip for binary dialects)."""
        return frame
