"""The ingester: feed -> bounded buffer -> batched, pipelined writes to Redis streams.

The feed pushes the ticks of each frame into :meth:`Ingester.sink` (synchronous, a few hundred
nanoseconds); a writer task takes them out in batches of at most ``batch_max`` and hands each
batch to a :class:`~tickcast.service.bus.writer.TickWriter` (one pipeline of ``XADD MAXLEN ~``).

Bounded: at most ``queue_max`` ticks wait (counting the batch being written). While Redis is
unreachable the writer retries the same batch with a capped, jittered backoff and the buffer
fills; ticks arriving at a full buffer are dropped and counted (``dropped``), never silently.
A batch is retried as it was prepared (same entry IDs): entries a failed attempt stored are
refused by Redis the second time, so a tick is stored once (see
:class:`~tickcast.service.bus.writer.TickWriter`).

:meth:`Ingester.run` is a composable asyncio task: it runs until cancelled or :meth:`stop`, then
stops the feed, flushes what is buffered (for at most ``drain_timeout_s``) and returns; after
:meth:`Ingester.abandon` it writes nothing more. Whatever it could not write is counted in
``dropped_at_stop`` (and ``dropped_by``) and logged as an error before it returns or raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from tickcast.service.bus.writer import Batch
from tickcast.service.feed.reconnect import Backoff, is_retryable
from tickcast.service.ops.metrics import BATCH_BUCKETS, Histogram
from tickcast.service.ticks import Tick
from tickcast.service.venues.base import REJECT_UNENCODABLE

logger = logging.getLogger(__name__)


class Feed(Protocol):
    """What the ingester needs from a venue feed."""

    async def run(self, sink: Callable[[list[Tick]], None]) -> None:
        """Push ticks into ``sink`` until cancelled."""
        ...


class Writer(Protocol):
    """What the ingester needs from Redis (:class:`~tickcast.service.bus.writer.TickWriter`)."""

    async def prepare(self, ticks: Sequence[Tick]) -> Batch:
        """Encode one batch and fix its entry IDs; raise on failure (retried)."""
        ...

    async def send(self, batch: Batch) -> None:
        """Store a prepared batch, idempotently; raise on failure (the same batch is re-sent)."""
        ...


def _per_key() -> defaultdict[tuple[str, str], int]:
    return defaultdict(int)


@dataclass
class IngestStats:
    """Counters of one ingester (plain ints)."""

    received: int = 0
    """Ticks handed over by the feed."""
    written: int = 0
    """Ticks in batches that Redis accepted."""
    dropped: int = 0
    """Ticks refused because the buffer was full."""
    dropped_at_stop: int = 0
    """Ticks still buffered or in flight when the ingester stopped without writing them (the
    shutdown flush timed out, Redis refused them for good, or the lease was lost); also in
    ``dropped_by``."""
    batches: int = 0
    """Batches written."""
    write_errors: int = 0
    """Failed write attempts (each retried after a backoff delay)."""
    queue_depth: int = 0
    """Ticks waiting (including the batch in flight), updated at every batch."""
    queue_peak: int = 0
    """Largest ``queue_depth`` seen."""
    received_by: defaultdict[tuple[str, str], int] = field(default_factory=_per_key)
    """``received`` per ``(symbol, kind)``."""
    written_by: defaultdict[tuple[str, str], int] = field(default_factory=_per_key)
    """``written`` per ``(symbol, kind)``."""
    dropped_by: defaultdict[tuple[str, str], int] = field(default_factory=_per_key)
    """``dropped`` per ``(symbol, kind)`` (buffer full)."""
    batch_sizes: Histogram = field(default_factory=lambda: Histogram(BATCH_BUCKETS))
    """Ticks per written batch."""


class Ingester:
    """Move ticks from a feed into Redis through a bounded buffer.

    Parameters
    ----------
    feed : Feed
        Anything with ``async run(sink)``; a ``stats`` dataclass and a ``parser.stats`` are
        folded into :meth:`counters` when present.
    writer : Writer
        Anything with ``async prepare(ticks)`` and ``async send(batch)``, usually a
        ``TickWriter``.
    queue_max : int
        Most ticks buffered (including the batch being written).
    batch_max : int
        Most ticks per write.
    flush_interval_s : float
        Longest wait for a batch to fill once a tick is buffered (0 = write at once).
    retry_base_s, retry_cap_s : float
        Backoff of write retries while Redis is unreachable.
    drain_timeout_s : float
        Longest shutdown flush.
    rng : numpy.random.Generator, optional
        Jitter source of the retry backoff.
    """

    def __init__(
        self,
        feed: Feed,
        writer: Writer,
        *,
        queue_max: int = 100_000,
        batch_max: int = 1_000,
        flush_interval_s: float = 0.0,
        retry_base_s: float = 0.05,
        retry_cap_s: float = 2.0,
        drain_timeout_s: float = 5.0,
        rng: np.random.Generator | None = None,
    ) -> None:
        if queue_max < 1 or batch_max < 1:
            raise ValueError("queue_max and batch_max must be positive")
        self.feed = feed
        self.writer = writer
        self.queue_max = queue_max
        self.batch_max = min(batch_max, queue_max)
        self.flush_interval_s = flush_interval_s
        self.drain_timeout_s = drain_timeout_s
        self.stats = IngestStats()
        self._retry = Backoff(
            retry_base_s,
            max(retry_cap_s, retry_base_s),
            rng if rng is not None else np.random.default_rng(),
        )
        self._buffer: deque[Tick] = deque()
        self._in_flight = 0
        self._batch: list[Tick] = []
        self._abandon = False
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._stop = asyncio.Event()

    @classmethod
    def from_settings(
        cls, feed: Feed, writer: Writer, settings: Any, rng: np.random.Generator | None = None
    ) -> Ingester:
        """Build with the ``ingest`` and ``redis`` sections of a ``Settings`` object."""
        return cls(
            feed,
            writer,
            queue_max=settings.ingest.queue_max,
            batch_max=settings.ingest.batch_max,
            flush_interval_s=settings.ingest.flush_interval_ms / 1000.0,
            retry_base_s=settings.redis.retry_base_s,
            retry_cap_s=settings.redis.retry_cap_s,
            rng=rng,
        )

    # -- the feed side -------------------------------------------------------------------------

    def sink(self, ticks: list[Tick]) -> None:
        """Buffer the ticks of one frame; those beyond the bound are dropped and counted."""
        n = len(ticks)
        stats = self.stats
        stats.received += n
        received_by = stats.received_by
        for t in ticks:
            received_by[t.symbol, t.kind] += 1
        buffer = self._buffer
        space = self.queue_max - len(buffer) - self._in_flight
        if n > space:
            space = max(space, 0)
            stats.dropped += n - space
            dropped_by = stats.dropped_by
            for t in ticks[space:]:
                dropped_by[t.symbol, t.kind] += 1
            if space == 0:
                return
            ticks = ticks[:space]
        buffer.extend(ticks)
        if not self._wake.is_set():
            self._wake.set()
        if len(buffer) >= self.batch_max and not self._full.is_set():
            self._full.set()

    @property
    def depth(self) -> int:
        """Ticks waiting, including the batch being written."""
        return len(self._buffer) + self._in_flight

    def counters(self) -> dict[str, int]:
        """Every counter as one flat dict: ingester, feed and parser.

        The integer counters only (the per-key ones are on ``stats``). Always has ``received``,
        ``written``, ``rejected``, ``dropped``, ``reconnects``,
        ``gaps``, ``watchdog_trips`` and ``queue_depth``.
        """
        out: dict[str, int] = {"reconnects": 0, "gaps": 0, "watchdog_trips": 0}
        feed_stats = getattr(self.feed, "stats", None)
        if dataclasses.is_dataclass(feed_stats) and not isinstance(feed_stats, type):
            for key, value in dataclasses.asdict(feed_stats).items():
                out[f"feed_{key}" if key in ("ticks", "frames") else key] = int(value)
        parser = getattr(self.feed, "parser", None)
        rejected = int(getattr(getattr(parser, "stats", None), "total_rejected", 0))
        writer_stats = getattr(self.writer, "stats", None)
        rejected += int(getattr(writer_stats, "rejected", 0))
        for f in dataclasses.fields(self.stats):
            value = getattr(self.stats, f.name)
            if isinstance(value, int):
                out[f.name] = value
        out["rejected"] = rejected
        out["queue_depth"] = self.depth
        return out

    def reasons(self) -> tuple[dict[str, int], dict[str, int]]:
        """Ticks rejected and frames skipped so far, each by reason: the feed's parser's
        (and edge guard's) counts, plus the writer's unencodable ticks."""
        stats = getattr(getattr(self.feed, "parser", None), "stats", None)
        rejected = dict(getattr(stats, "rejected", {}))
        skipped = dict(getattr(stats, "skipped", {}))
        unencodable = int(getattr(getattr(self.writer, "stats", None), "rejected", 0))
        if unencodable:
            rejected[REJECT_UNENCODABLE] = rejected.get(REJECT_UNENCODABLE, 0) + unencodable
        return rejected, skipped

    # -- the Redis side ------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to stop the feed, flush and return."""
        self._stop.set()

    def abandon(self) -> None:
        """Ask :meth:`run` to stop the feed and return without writing anything more (the
        streams are no longer this process's to write: its lease was taken). What it still
        holds is counted as dropped and logged."""
        self._abandon = True
        self._stop.set()

    async def run(self) -> None:
        """Run the feed and the writer until :meth:`stop` or cancellation, then flush."""
        loop = asyncio.get_running_loop()
        feed_task = loop.create_task(self.feed.run(self.sink), name="ingest-feed")
        write_task = loop.create_task(self._write_loop(), name="ingest-writer")
        stop_task = loop.create_task(self._stop.wait(), name="ingest-stop")
        cancelled = False
        try:
            done, _ = await asyncio.wait(
                {feed_task, write_task, stop_task}, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:
            cancelled, done = True, set()
        stop_task.cancel()
        feed_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feed_task
        try:
            if not self._abandon:
                await self._drain(write_task)
        finally:
            write_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await write_task
        self._count_unwritten()
        for task in done:
            error = None if task is stop_task or task.cancelled() else task.exception()
            if error is not None:
                raise error
        if cancelled:
            raise asyncio.CancelledError

    async def _drain(self, write_task: asyncio.Task[None]) -> None:
        """Let the writer empty the buffer, for at most ``drain_timeout_s``."""
        self.flush_interval_s = 0.0
        self._full.set()
        self._wake.set()
        try:
            async with asyncio.timeout(self.drain_timeout_s):
                while self.depth and not write_task.done():
                    await asyncio.sleep(0.005)
        except TimeoutError:
            logger.error("shutdown flush timed out after %.1f s", self.drain_timeout_s)

    def _count_unwritten(self) -> None:
        """Count what is still buffered or in flight (not confirmed written: a batch cut off
        may be partly in Redis) as dropped at stop, and say so."""
        left = [*(self._batch if self._in_flight else ()), *self._buffer]
        self._buffer.clear()
        self._batch, self._in_flight = [], 0
        self.stats.queue_depth = 0
        if not left:
            return
        stats = self.stats
        stats.dropped_at_stop += len(left)
        per_key: dict[tuple[str, str], int] = defaultdict(int)
        for t in left:
            per_key[t.symbol, t.kind] += 1
        for k, n in per_key.items():
            stats.dropped_by[k] += n
        logger.error(
            "%d ticks not written to Redis, dropped (%s)",
            len(left),
            ", ".join(f"{symbol} {kind}: {n}" for (symbol, kind), n in sorted(per_key.items())),
        )

    async def _write_loop(self) -> None:
        buffer = self._buffer
        while True:
            if not buffer:
                self._wake.clear()
                await self._wake.wait()
                continue
            if len(buffer) < self.batch_max and self.flush_interval_s > 0.0:
                self._full.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.flush_interval_s)
            take = min(len(buffer), self.batch_max)
            popleft = buffer.popleft
            batch = self._batch = [popleft() for _ in range(take)]
            self._in_flight = take
            depth = len(buffer) + take
            self.stats.queue_depth = depth
            if depth > self.stats.queue_peak:
                self.stats.queue_peak = depth
            await self._write(batch)
            self._in_flight = 0

    def _count_written(self, batch: list[Tick], rejected: Sequence[Tick]) -> None:
        """Count a batch Redis accepted, less the ticks the writer refused."""
        stats = self.stats
        stats.written += len(batch) - len(rejected)
        stats.batches += 1
        stats.batch_sizes.observe(len(batch))
        written_by = stats.written_by
        for t in batch:
            written_by[t.symbol, t.kind] += 1
        for t in rejected:
            written_by[t.symbol, t.kind] -= 1

    async def _write(self, batch: list[Tick]) -> None:
        """Write one batch, retrying retryable errors with backoff until it succeeds (the
        prepared batch is re-sent as it is: what a failed attempt stored is not stored twice)."""
        prepared: Batch | None = None
        while True:
            try:
                if prepared is None:
                    prepared = await self.writer.prepare(batch)
                await self.writer.send(prepared)
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                self.stats.write_errors += 1
                delay = self._retry.next_delay()
                if self._retry.attempts == 1:
                    logger.warning(
                        "Redis write failed (%s: %s); buffering %d ticks and retrying",
                        type(exc).__name__,
                        exc,
                        self.depth,
                    )
                await asyncio.sleep(delay)
                continue
            self._count_written(batch, prepared.rejected)
            if self._retry.attempts:
                logger.info("Redis writes resumed after %d failures", self._retry.attempts)
                self._retry.reset()
            return
