"""A small asyncio client for the signal streams.

>>> import asyncio
>>> from tickcast.service.client import subscribe
>>> async def main() -> None:  # doctest: +SKIP
...     async for signal in subscribe("redis://127.0.0.1:6379/0", ["BTC/USDT:USDT"]):
...         print(signal.symbol, signal.t_ms, signal.ret_bps, signal.p_up)
>>> asyncio.run(main())  # doctest: +SKIP

:func:`subscribe` returns a :class:`Subscription`: iterate it for validated
:class:`~tickcast.service.schema.Signal` objects (or :meth:`Subscription.entries` for
``(symbol, stream_id, signal)``). ``Subscription.last_ids`` holds the stream ID of the last
signal delivered per symbol: pass it back as ``from_id`` to resume exactly after it. The
client survives Redis restarts: connection errors are retried with a capped, jittered backoff
and reading resumes from ``last_ids``. Signals of a worker with extra horizons (schema version 2)
carry them in ``signal.horizons`` (``None`` in version 1).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import redis
import redis.asyncio

from tickcast.service import TickcastError
from tickcast.service.bus.keys import signals_key
from tickcast.service.schema import Signal, SignalDecodeError, decode_signal

log = logging.getLogger(__name__)

START = "0-0"
"""``from_id`` that replays each stream from its oldest retained signal."""
NEW = "$"
"""``from_id`` that delivers only signals published after the subscription starts."""


class SubscribeError(TickcastError):
    """The subscription gave up (Redis unreachable past the retry budget)."""


class Subscription:
    """An async iterator over the signals of some symbols; see the module docstring.

    Parameters
    ----------
    url : str
        Redis URL (``redis://``, ``rediss://``, ``unix://``).
    symbols : sequence of str
        Unified symbols, e.g. ``["BTC/USDT:USDT"]``.
    venue : str
        Venue id the signals were made for (``"sim"``, ``"binanceusdm"``).
    prefix : str
        Key prefix (settings ``redis.prefix``).
    from_id : str or mapping of str to str
        Where to start: :data:`NEW` (default), :data:`START`, a stream ID (exclusive) for every
        symbol, or a per-symbol mapping such as a previous ``last_ids``.
    count : int
        Most entries per stream per read.
    block_ms : int
        Longest wait of one read (ms); the socket timeout is set above it.
    max_retries : int or None
        Consecutive failed reads before :class:`SubscribeError`; ``None`` retries forever.
    client : redis.asyncio.Redis, optional
        A client to use instead of opening one from ``url`` (it is not closed here).
    """

    def __init__(
        self,
        url: str,
        symbols: Sequence[str],
        *,
        venue: str = "sim",
        prefix: str = "tickcast",
        from_id: str | Mapping[str, str] = NEW,
        count: int = 500,
        block_ms: int = 1000,
        max_retries: int | None = None,
        client: redis.asyncio.Redis | None = None,
    ) -> None:
        if not symbols:
            raise ValueError("subscribe to at least one symbol")
        self.symbols = tuple(symbols)
        self.venue = venue
        self.keys = {signals_key(prefix, venue, s): s for s in self.symbols}
        if isinstance(from_id, str):
            self.last_ids = dict.fromkeys(self.symbols, from_id)
        else:
            self.last_ids = {s: from_id.get(s, NEW) for s in self.symbols}
        self.count = count
        self.block_ms = block_ms
        self.max_retries = max_retries
        self.invalid = 0
        self._own_client = client is None
        self._client = client or redis.asyncio.Redis.from_url(
            url,
            decode_responses=False,
            socket_timeout=block_ms / 1000.0 + 5.0,
            socket_connect_timeout=5.0,
        )
        self._rng = random.Random()
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """End the iteration after the read in progress (at most ``block_ms``).

        The way to end a subscription from another task: redis-py 8.2 can lose a cancellation
        that lands in the middle of a blocking read, leaving the reading task stuck.
        """
        self._stopping.set()

    async def _resolve_new(self) -> None:
        """Pin ``$`` to each stream's current last ID, so nothing slips between reads."""
        for key, symbol in self.keys.items():
            if self.last_ids[symbol] == NEW:
                last: Any = await self._client.xrevrange(key, count=1)
                self.last_ids[symbol] = last[0][0].decode() if last else START

    async def _read(self) -> list[tuple[str, str, Signal | None]]:
        streams: dict[Any, Any] = {k: self.last_ids[s] for k, s in self.keys.items()}
        reply: Any = await self._client.xread(streams, count=self.count, block=self.block_ms)
        out: list[tuple[str, str, Signal | None]] = []
        for raw_key, entries in reply or ():
            symbol = self.keys[raw_key.decode() if isinstance(raw_key, bytes) else raw_key]
            for raw_id, fields in entries:
                stream_id = raw_id.decode()
                try:
                    out.append((symbol, stream_id, decode_signal(fields)))
                except SignalDecodeError as exc:
                    out.append((symbol, stream_id, None))
                    log.debug("skipping invalid signal %s %s: %s", symbol, stream_id, exc)
        return out

    async def entries(self) -> AsyncIterator[tuple[str, str, Signal]]:
        """Yield ``(symbol, stream_id, signal)`` forever, in stream order per symbol.

        ``last_ids`` advances as each entry is yielded (invalid entries are skipped, counted
        in ``invalid``), so it always names the last signal handed out.
        """
        failures, delay = 0, 0.1
        while not self._stopping.is_set():
            try:
                await self._resolve_new()
                batch = await self._read()
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                failures += 1
                if self.max_retries is not None and failures > self.max_retries:
                    raise SubscribeError(f"Redis unreachable: {exc}") from exc
                wait = self._rng.uniform(0.0, delay)
                log.warning("signal read failed (%s); retrying in %.2f s", exc, wait)
                await asyncio.sleep(wait)
                delay = min(delay * 2.0, 5.0)
                continue
            failures, delay = 0, 0.1
            for symbol, stream_id, signal in batch:
                if self._stopping.is_set():
                    return
                self.last_ids[symbol] = stream_id
                if signal is None:
                    self.invalid += 1
                else:
                    yield symbol, stream_id, signal

    async def __aiter__(self) -> AsyncIterator[Signal]:
        async for _, _, signal in self.entries():
            yield signal

    async def aclose(self) -> None:
        """Close the Redis client when this subscription opened it."""
        if self._own_client:
            await self._client.aclose()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def list_streams(
    client: redis.asyncio.Redis, prefix: str = "tickcast"
) -> dict[str, list[str]]:
    """Venues and unified symbols that have a tick stream under ``prefix``: ``{venue: [...]}``.

    Each stream's symbol is read from its newest tick (key tags hold venue ids only).
    """
    from tickcast.service.bus import codec

    found: dict[str, set[str]] = {}
    async for raw_key in client.scan_iter(match=f"{prefix}:{{*}}:ticks", count=1000):
        last: Any = await client.xrevrange(raw_key, count=1)
        if not last:
            continue
        try:
            tick = codec.decode(last[0][1])
        except codec.BusDecodeError:
            continue
        found.setdefault(tick.venue, set()).add(tick.symbol)
    return {venue: sorted(symbols) for venue, symbols in sorted(found.items())}


def subscribe(
    url: str,
    symbols: Sequence[str],
    *,
    venue: str = "sim",
    prefix: str = "tickcast",
    from_id: str | Mapping[str, str] = NEW,
    **kwargs: Any,
) -> Subscription:
    """Return a :class:`Subscription`: ``async for signal in subscribe(url, symbols): ...``."""
    return Subscription(url, symbols, venue=venue, prefix=prefix, from_id=from_id, **kwargs)
