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

On a Redis Cluster (told by the server, or by ``redis.cluster`` in the settings) each symbol's
signal stream lives in its own hash slot, and one ``XREAD`` may not name several slots: a
subscription then keeps one blocking ``XREAD`` per stream in flight, each on a connection to
the node that owns the stream's slot, and hands out what each one returns as it returns
(per symbol in stream order, as on a single Redis). The cluster client follows ``MOVED`` and
``ASK`` replies and a failover; a read that fails is retried as above.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from tickcast.service import TickcastError
from tickcast.service.bus import connection
from tickcast.service.bus.keys import signals_key
from tickcast.service.feed.reconnect import REDIS_TRANSIENT
from tickcast.service.ops.config import Settings
from tickcast.service.schema import Signal, SignalDecodeError, decode_signal

log = logging.getLogger(__name__)

START = "0-0"
"""``from_id`` that replays each stream from its oldest retained signal."""
NEW = "$"
"""``from_id`` that delivers only signals published after the subscription starts."""
RETRIED = (*REDIS_TRANSIENT, OSError)
"""What a read retries: Redis (or a cluster node) out of reach, and a cluster between a
master's failure and its replica's promotion (``CLUSTERDOWN``, ``TRYAGAIN``, a slot no node
serves yet)."""


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
    client : redis.asyncio.Redis or redis.asyncio.cluster.RedisCluster, optional
        A client to use instead of opening one from ``url`` (it is not closed here).
    settings : Settings, optional
        Where the credentials, TLS files and ``redis.cluster`` of the client opened from
        ``url`` come from (default: the environment's ``TICKCAST__REDIS__*``, as for tickcast's
        commands).
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
        client: connection.AsyncClient | None = None,
        settings: Settings | None = None,
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
        self._client = client or connection.connect(url, reading_settings(settings, block_ms))
        self._cluster = connection.is_cluster(self._client)
        self._reads: dict[str, asyncio.Task[Any]] = {}
        """On a cluster: the blocking read in flight of each stream (by key)."""
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
        if self._cluster:
            reply = await self._read_each()
        else:
            reply = await self._xread({k: self.last_ids[s] for k, s in self.keys.items()})
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

    async def _xread(self, streams: dict[Any, Any]) -> Any:
        """``XREAD COUNT count BLOCK block_ms STREAMS ...`` (a reply, or None after the wait)."""
        return await self._client.xread(streams, count=self.count, block=self.block_ms)

    async def _read_each(self) -> list[Any]:
        """A cluster's read: one ``XREAD BLOCK`` per stream in flight (started from the last
        ID handed out), waiting for the first to answer; the answers that came, as one XREAD
        reply. Raises what a failed read raised (the streams it returned are read again)."""
        loop = asyncio.get_running_loop()
        for key, symbol in self.keys.items():
            if key not in self._reads:
                self._reads[key] = loop.create_task(self._xread({key: self.last_ids[symbol]}))
        await asyncio.wait(self._reads.values(), return_when=asyncio.FIRST_COMPLETED)
        done = [key for key, task in self._reads.items() if task.done()]
        tasks = [self._reads.pop(key) for key in done]
        errors = [error for error in (t.exception() for t in tasks) if error is not None]
        if errors:  # (every one retrieved: none is reported as lost)
            raise errors[0]
        return [stream for task in tasks for stream in task.result() or ()]

    async def _finish_reads(self) -> None:
        """Let the reads in flight end (each within ``block_ms``), then forget them."""
        reads = list(self._reads.values())
        self._reads.clear()
        if not reads:
            return
        _, late = await asyncio.wait(reads, timeout=self.block_ms / 1000.0 + 1.0)
        for task in late:
            task.cancel()
        await asyncio.gather(*reads, return_exceptions=True)

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
            except RETRIED as exc:
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
        """Wait for the reads in flight (a cluster's), then close the Redis client when this
        subscription opened it."""
        await self._finish_reads()
        if self._own_client:
            await self._client.aclose()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def list_streams(
    client: connection.AsyncClient, prefix: str = "tickcast"
) -> dict[str, list[str]]:
    """Venues and unified symbols that have a tick stream under ``prefix``: ``{venue: [...]}``.

    Each stream's symbol is read from its newest tick (key tags hold venue ids only). On a
    Redis Cluster the keys are scanned on every master (redis-py's cluster ``scan_iter``).
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


def reading_settings(settings: Settings | None, block_ms: int) -> Settings:
    """``settings`` (default: from the environment) with a socket timeout above a blocking
    read of ``block_ms``.

    Examples
    --------
    >>> reading_settings(Settings(), 30_000).redis.socket_timeout_s
    35.0
    """
    base = settings if settings is not None else Settings()
    cfg = base.redis
    timeout_s = max(cfg.socket_timeout_s, block_ms / 1000.0 + 5.0)
    return base.model_copy(update={"redis": cfg.model_copy(update={"socket_timeout_s": timeout_s})})


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
