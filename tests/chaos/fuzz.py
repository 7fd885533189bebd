"""A fuzzing websocket server in the Binance USDⓈ-M dialect: valid trades and quotes mixed
with hostile frames, every one of them known.

:class:`FrameMaker` makes a seeded sequence of frames, combined-stream frames as the venue sends
them: valid ``trade`` frames (consecutive ids per symbol) and ``bookTicker`` frames
(consecutive update ids), stamped with the wall clock, at prices that move a few basis points
at a time; and hostile frames of the :data:`CATEGORIES`: malformed JSON, wrong value types,
``NaN`` / ``Infinity`` / ``1e308``, negative and zero values, missing fields, binary frames,
frames over 4 MiB, far-future and 1970 timestamps, unicode junk, deeply nested JSON, huge
integers, crossed books, implausible price jumps, unknown events and unsubscribed symbols.
Each hostile frame, on its own, must be refused (rejected or skipped) by the Binance parser or
the live edge guard and counted exactly once, and nothing of it stored.

Valid frames come first for every symbol (its first price sets the edge guard's level), and a
price-jump frame is never followed by another one of the same symbol before a valid frame (five
in a row would move the level). Hostile trade frames that get past the parser carry ids far
below the valid ones, each used once, so that the feed's trade-id sequence passes them on as
late trades instead of opening a gap.

:class:`FuzzServer` serves one frame sequence on loopback (any path: the feed subscribes by
URL), in a thread of its own, to whichever client is connected, continuing on the next
connection when one closes. After an oversized frame it waits for a ping's answer: the frames
before it were read, and none after it is sent on a connection the client closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tickcast.service.ticks import QUOTE, TRADE

Spoil = Callable[[str, dict[str, Any]], None]
"""Changes an event (of the stream named first) in place."""
VALID_TRADE_ID = 10**9
"""Valid trade ids start above this; hostile ones that reach the trade-id sequence are below."""
OVERSIZED_BYTES = 4 * 2**20 + 4096
"""Size of an oversized frame (the feed takes frames up to 4 MiB)."""
MAX_EVENT_MS_2100 = 4_102_444_800_000


@dataclass(frozen=True)
class Market:
    """A symbol the fuzzer trades: unified symbol, venue id, start price, decimals."""

    symbol: str
    venue_id: str
    price: float
    price_dp: int
    size_dp: int


MARKETS = (
    Market("BTC/USDT:USDT", "BTCUSDT", 60_000.0, 1, 3),
    Market("ETH/USDT:USDT", "ETHUSDT", 3_000.0, 2, 3),
)


@dataclass
class Frame:
    """One frame to send: its category, payload, and for a valid frame the tick it must become
    (``(symbol, kind, id)`` -> ``(event_ms, price, size, side)`` or ``(event_ms, bid,
    bid_size, ask, ask_size)``)."""

    category: str
    data: str | bytes
    key: tuple[str, str, int] | None = None
    expected: tuple[float, ...] | None = None


@dataclass
class _Book:
    market: Market
    price: float
    trade_id: int
    update_id: int
    late_id: int = 0
    valid_sent: int = 0
    jumped: bool = False

    def late_id_next(self) -> int:
        """A trade id below the valid ones, never used before."""
        self.late_id += 1
        return self.late_id


class FrameMaker:
    """The seeded frame sequence (see the module docstring).

    Parameters
    ----------
    seed : int
        Every choice comes from it (only the timestamps of the wall clock differ per run).
    hostile_share : float
        Fraction of hostile frames.
    clock : callable
        Wall clock in ms (the event time of valid frames).
    without : collection of str
        Hostile categories not to make.
    """

    def __init__(
        self,
        seed: int,
        hostile_share: float = 0.3,
        clock: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        without: Collection[str] = (),
    ) -> None:
        self.rng = random.Random(seed)
        self.hostile_share = hostile_share
        self.clock = clock
        self.books = [
            _Book(m, m.price, VALID_TRADE_ID + self.rng.randrange(10**6), 10**6) for m in MARKETS
        ]
        self.makers: dict[str, Callable[[_Book], Frame]] = {
            "malformed json": self._malformed,
            "wrong type": self._wrong_type,
            "wrong id type": self._wrong_id_type,
            "non-finite or 1e308": self._non_finite,
            "negative or zero": self._negative,
            "missing field": self._missing,
            "binary": self._binary,
            "far-future time": self._future,
            "past time": self._past,
            "unicode junk": self._unicode,
            "deep nesting": self._nested,
            "huge integer": self._huge_integer,
            "crossed book": self._crossed,
            "price jump": self._jump,
            "huge size": self._huge_size,
            "unknown event": self._unknown_event,
            "unsubscribed symbol": self._unsubscribed,
        }
        for category in without:
            del self.makers[category]

    # -- the sequence -----------------------------------------------------------------------

    def next(self) -> Frame:
        """The next frame."""
        book = self.rng.choice(self.books)
        if book.valid_sent < 3 or book.jumped or self.rng.random() >= self.hostile_share:
            return self.valid(book)
        category = self.rng.choice(list(self.makers))
        return self.makers[category](book)

    def valid(self, book: _Book) -> Frame:
        """A valid trade or quote of ``book``'s symbol (the price moves a little first)."""
        book.valid_sent += 1
        book.jumped = False
        book.price *= 1.0 + self.rng.gauss(0.0, 2e-4)
        if self.rng.random() < 0.5:
            return self._trade_frame(book)
        return self._quote_frame(book)

    def oversized(self) -> Frame:
        """A trade frame over 4 MiB (its price a decimal string of 4 Mi digits: infinite)."""
        book = self.books[0]
        event = self._trade_event(book, book.late_id_next())
        event["p"] = "1" + "0" * OVERSIZED_BYTES
        return Frame("oversized", _combined(book, "trade", event))

    # -- valid frames -----------------------------------------------------------------------

    def _decimal(self, value: float, dp: int) -> str:
        return f"{value:.{dp}f}"

    def _trade_event(self, book: _Book, trade_id: int) -> dict[str, Any]:
        m = book.market
        size = self.rng.randint(1, 500) * 10.0**-m.size_dp
        now = self.clock()
        return {
            "e": "trade",
            "E": now,
            "T": now,
            "s": m.venue_id,
            "t": trade_id,
            "p": self._decimal(book.price, m.price_dp),
            "q": self._decimal(size, m.size_dp),
            "X": "MARKET",
            "m": self.rng.random() < 0.5,
        }

    def _quote_event(self, book: _Book, update_id: int) -> dict[str, Any]:
        m = book.market
        step = 10.0**-m.price_dp
        bid = round(book.price - step * self.rng.randint(1, 3), m.price_dp)
        ask = round(bid + step * self.rng.randint(1, 4), m.price_dp)
        now = self.clock()
        return {
            "e": "bookTicker",
            "u": update_id,
            "s": m.venue_id,
            "b": self._decimal(bid, m.price_dp),
            "B": self._decimal(self.rng.randint(1, 900) * 10.0**-m.size_dp, m.size_dp),
            "a": self._decimal(ask, m.price_dp),
            "A": self._decimal(self.rng.randint(1, 900) * 10.0**-m.size_dp, m.size_dp),
            "T": now,
            "E": now,
        }

    def _trade_frame(self, book: _Book) -> Frame:
        book.trade_id += 1
        e = self._trade_event(book, book.trade_id)
        expected = (e["T"], float(e["p"]), float(e["q"]), -1 if e["m"] else 1)
        key = (book.market.symbol, TRADE, book.trade_id)
        return Frame("valid", _combined(book, "trade", e), key, expected)

    def _quote_frame(self, book: _Book) -> Frame:
        book.update_id += self.rng.randint(1, 5)
        e = self._quote_event(book, book.update_id)
        expected = (e["T"], float(e["b"]), float(e["B"]), float(e["a"]), float(e["A"]))
        key = (book.market.symbol, QUOTE, book.update_id)
        return Frame("valid", _combined(book, "bookTicker", e), key, expected)

    def _event(self, book: _Book) -> tuple[str, dict[str, Any]]:
        """A plausible trade or quote event to spoil (a trade with an id below the valid ones,
        used once; a quote with a fresh update id)."""
        if self.rng.random() < 0.5:
            return "trade", self._trade_event(book, book.late_id_next())
        book.update_id += 1
        return "bookTicker", self._quote_event(book, book.update_id)

    def _spoiled(self, book: _Book, category: str, spoil: Spoil) -> Frame:
        stream, event = self._event(book)
        spoil(stream, event)
        return Frame(category, _combined(book, stream, event))

    # -- hostile frames ---------------------------------------------------------------------

    def _malformed(self, book: _Book) -> Frame:
        stream, event = self._event(book)
        text = _combined(book, stream, event)
        choice = self.rng.randrange(4)
        if choice == 0:
            data = text[: self.rng.randrange(1, len(text) - 1)]
        elif choice == 1:
            data = text.replace(":", "=", 1)
        elif choice == 2:
            data = text + "}"
        else:
            data = "".join(self.rng.choice("{}[],:\"'0123456789abc ") for _ in range(40))
            data = "{" + data
        return Frame("malformed json", data)

    def _wrong_type(self, book: _Book) -> Frame:
        def spoil(stream: str, e: dict[str, Any]) -> None:
            if stream == "trade":
                name = self.rng.choice(["p", "q", "T", "m"])
            else:
                name = self.rng.choice(["b", "B", "a", "A", "T", "u"])
            value = e[name]
            if name == "m":
                e[name] = self.rng.choice(["true", 1, None, "false"])
            elif isinstance(value, str):  # a number, a bool, null or a list for a decimal string
                e[name] = self.rng.choice([float(value), True, False, None, [value]])
            else:  # a string, a float, a bool for an integer
                e[name] = self.rng.choice([str(value), value + 0.5, True, None])
            if name == "T" and stream == "bookTicker":
                e["E"] = e["T"]  # a quote falls back on E when T is falsy

        return self._spoiled(book, "wrong type", spoil)

    def _wrong_id_type(self, book: _Book) -> Frame:
        def spoil(stream: str, e: dict[str, Any]) -> None:
            e["t"] = self.rng.choice([True, False, 1.5, "abc", None, [1], {"id": 1}])

        event = self._trade_event(book, 0)
        spoil("trade", event)
        return Frame("wrong id type", _combined(book, "trade", event))

    def _non_finite(self, book: _Book) -> Frame:
        def spoil(stream: str, e: dict[str, Any]) -> None:
            name = self.rng.choice(["p", "q"] if stream == "trade" else ["b", "B", "a", "A"])
            e[name] = self.rng.choice(["NaN", "Infinity", "-Infinity", "1e308", "1.7e308", "inf"])
            if name in ("b", "a") and e[name] in ("1e308", "1.7e308"):
                e["b"] = e["a"] = e[name]  # not crossed: out of range

        return self._spoiled(book, "non-finite or 1e308", spoil)

    def _negative(self, book: _Book) -> Frame:
        def spoil(stream: str, e: dict[str, Any]) -> None:
            if stream == "trade":
                name = self.rng.choice(["p", "q"])
                e[name] = "0" if name == "p" and self.rng.random() < 0.5 else "-" + e[name]
            else:
                name = self.rng.choice(["b", "B", "A"])
                e[name] = "0" if name == "b" and self.rng.random() < 0.5 else "-" + e[name]

        return self._spoiled(book, "negative or zero", spoil)

    def _missing(self, book: _Book) -> Frame:
        def spoil(stream: str, e: dict[str, Any]) -> None:
            required = ["s", "p", "q", "T", "t", "m"] if stream == "trade" else "sbBaAu"
            del e[self.rng.choice(list(required))]
            if stream == "bookTicker" and "T" in e and self.rng.random() < 0.3:
                del e["T"], e["E"]

        return self._spoiled(book, "missing field", spoil)

    def _binary(self, book: _Book) -> Frame:
        n = self.rng.randint(1, 300)
        return Frame("binary", bytes([0xFF]) + self.rng.randbytes(n))

    def _future(self, book: _Book) -> Frame:
        def spoil(stream: str, e: dict[str, Any]) -> None:
            e["T"] = e["E"] = self.rng.choice(
                [MAX_EVENT_MS_2100, MAX_EVENT_MS_2100 - 1, e["T"] + 86_400_000, e["T"] + 700_000]
            )

        return self._spoiled(book, "far-future time", spoil)

    def _past(self, book: _Book) -> Frame:
        def spoil(stream: str, e: dict[str, Any]) -> None:
            e["T"] = e["E"] = self.rng.choice([1, 1000, 0, -5, e["T"] - 86_400_000])

        return self._spoiled(book, "past time", spoil)

    def _unicode(self, book: _Book) -> Frame:
        alphabet = "☃€ß中文\u200b\u202e\ufeff\x00\x7fÆØÅ😀" + "".join(
            chr(self.rng.randint(0x80, 0xD7FF)) for _ in range(8)
        )
        junk = "".join(self.rng.choice(alphabet) for _ in range(self.rng.randint(1, 200)))
        if self.rng.random() < 0.5:
            return Frame("unicode junk", "☃" + junk)

        def spoil(stream: str, e: dict[str, Any]) -> None:
            name = self.rng.choice(["s", "T", "p" if stream == "trade" else "b"])
            e[name] = junk

        return self._spoiled(book, "unicode junk", spoil)

    def _nested(self, book: _Book) -> Frame:
        depth = self.rng.choice([64, 500, 5000])
        if self.rng.random() < 0.5:
            return Frame("deep nesting", "[" * depth + "]" * depth)
        return Frame("deep nesting", '{"data":' * depth + "{}" + "}" * depth)

    def _huge_integer(self, book: _Book) -> Frame:
        def spoil(stream: str, e: dict[str, Any]) -> None:
            name = self.rng.choice(["T", "u"] if stream == "bookTicker" else ["T"])
            big = self.rng.choice([10**30, 2**64, -(2**63) - 1] + ([2**63] if name == "T" else []))
            e[name] = big
            if name == "T":
                e["E"] = big

        return self._spoiled(book, "huge integer", spoil)

    def _crossed(self, book: _Book) -> Frame:
        book.update_id += 1
        e = self._quote_event(book, book.update_id)
        e["b"], e["a"] = e["a"], e["b"]
        if e["b"] == e["a"]:
            e["b"] = self._decimal(float(e["a"]) * 1.001, book.market.price_dp)
        return Frame("crossed book", _combined(book, "bookTicker", e))

    def _jump(self, book: _Book) -> Frame:
        book.jumped = True
        factor = self.rng.choice([100.0, 0.01, 3.0, 0.3])

        def spoil(stream: str, e: dict[str, Any]) -> None:
            dp = book.market.price_dp + 4
            for name in ("p",) if stream == "trade" else ("b", "a"):
                e[name] = self._decimal(float(e[name]) * factor, dp)

        return self._spoiled(book, "price jump", spoil)

    def _huge_size(self, book: _Book) -> Frame:
        def spoil(stream: str, e: dict[str, Any]) -> None:
            e["q" if stream == "trade" else "B"] = self.rng.choice(["1e13", "1e300", "9e15"])

        return self._spoiled(book, "huge size", spoil)

    def _unknown_event(self, book: _Book) -> Frame:
        event = {"e": self.rng.choice(["mysteryEvent", "TRADE", "", "trade "]), "E": 1, "s": "X"}
        return Frame("unknown event", orjson.dumps(event).decode())

    def _unsubscribed(self, book: _Book) -> Frame:
        stream, event = self._event(book)
        event["s"] = self.rng.choice(["XRPUSDT", "DOGEUSDT", "LTCUSDT"])
        return Frame("unsubscribed symbol", _combined(book, stream, event))


def _combined(book: _Book, stream: str, event: dict[str, Any]) -> str:
    name = f"{book.market.venue_id.lower()}@{stream}"
    frame = {"stream": name, "data": event}
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)  # any integer


# -- the server ----------------------------------------------------------------------------


@dataclass
class FuzzStats:
    """What the server sent."""

    valid: dict[tuple[str, str, int], tuple[float, ...]] = field(default_factory=dict)
    """Each valid frame's tick key and expected values."""
    hostile: Counter[str] = field(default_factory=Counter)
    """Hostile frames sent, by category (``oversized`` included)."""
    connections: int = 0
    frames: int = 0

    @property
    def hostile_total(self) -> int:
        return sum(self.hostile.values())


class FuzzServer:
    """Serve ``total`` frames of a :class:`FrameMaker` (``oversized`` of them over 4 MiB,
    spread out; no hostile frame of the categories ``without``) on ``ws://127.0.0.1:<port>``,
    in a thread; a context manager."""

    def __init__(
        self, seed: int, total: int, oversized: int, without: Collection[str] = ()
    ) -> None:
        self.maker = FrameMaker(seed, without=without)
        self.total = total
        rng = random.Random(seed + 1)
        self.oversized_at = set(rng.sample(range(total // 10, total), oversized))
        self.stats = FuzzStats()
        self.done = threading.Event()
        self._pending: Frame | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="fuzz-server", daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def __enter__(self) -> FuzzServer:
        self._thread.start()
        if not self._ready.wait(10.0):
            raise RuntimeError("the fuzzing server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10.0)

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server: Server
        async with serve(
            self._handle, "127.0.0.1", 0, compression=None, ping_interval=None, max_size=2**20
        ) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()
            server.close()

    def _next(self) -> Frame:
        if self._pending is not None:
            return self._pending
        if self.stats.frames in self.oversized_at:
            self._pending = self.maker.oversized()
        else:
            self._pending = self.maker.next()
        return self._pending

    async def _handle(self, ws: ServerConnection) -> None:
        self.stats.connections += 1
        with contextlib.suppress(ConnectionClosed):
            while self.stats.frames < self.total:
                frame = self._next()
                await ws.send(frame.data)
                self._pending = None
                self._record(frame)
                if frame.category == "oversized":  # read up to here, or closed by the client
                    pong = await ws.ping()
                    await asyncio.wait_for(pong, 10.0)
                elif self.stats.frames % 256 == 0:
                    await asyncio.sleep(0)
            self.done.set()
            await ws.wait_closed()

    def _record(self, frame: Frame) -> None:
        stats = self.stats
        stats.frames += 1
        if frame.key is None:
            stats.hostile[frame.category] += 1
        else:
            assert frame.expected is not None
            stats.valid[frame.key] = frame.expected
