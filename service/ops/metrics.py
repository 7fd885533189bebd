"""Prometheus metrics and health endpoints of the live service.

The hot paths (feed, ingester, worker) only bump plain ints and floats in their own counter
objects; :class:`Metrics` reads them when Prometheus scrapes, through a custom collector on a
private :class:`~prometheus_client.CollectorRegistry`. Histograms on hot paths use
:class:`Histogram`, a single-writer bucket counter about five times cheaper than
``prometheus_client.Histogram.observe``.

Every name has the ``tickcast_`` prefix and base units (seconds, ratios); counters end in
``_total``. Labels stay bounded: ``venue`` (the configured venue labels), the configured symbols
(anything else is reported as ``symbol="other"``), the tick kind, and a feed's ``route``.

:mod:`tickcast.service.ops.health` serves them on ``/metrics`` beside ``/healthz`` and ``/readyz``.
"""

from __future__ import annotations

import logging
import math
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Protocol

from prometheus_client import (
    GC_COLLECTOR,
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from tickcast.service import __version__
from tickcast.service.ticks import Instrument

log = logging.getLogger(__name__)

OTHER: Final = "other"
KINDS: Final = ("trade", "quote")
#: Tick->signal latency buckets, seconds: 50 us .. 1 s, about 25 % apart between 0.25 and 10 ms
#: (so that ``histogram_quantile`` gives a p99 within a quarter of the true one there).
LATENCY_BUCKETS: Final = (
    50e-6, 100e-6, 150e-6, 200e-6, 250e-6, 300e-6, 400e-6, 500e-6, 600e-6, 750e-6,
    1e-3, 1.25e-3, 1.5e-3, 2e-3, 2.5e-3, 3e-3, 4e-3, 5e-3, 6e-3, 7.5e-3,
    10e-3, 15e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1.0,
)  # fmt: skip
#: Feed lag (local receive - exchange event time) buckets, seconds.
FEED_LAG_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
#: XADD batch size buckets, ticks.
BATCH_BUCKETS: Final = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


class Histogram:
    """A single-writer histogram: ``observe`` is one bisect and two adds.

    Parameters
    ----------
    bounds : sequence of float
        Upper bucket bounds (inclusive, ascending); ``+Inf`` is implicit.

    Examples
    --------
    >>> h = Histogram((1.0, 2.0))
    >>> for v in (0.5, 1.0, 1.5, 9.0):
    ...     h.observe(v)
    >>> h.cumulative()
    [('1.0', 2), ('2.0', 3), ('+Inf', 4)]
    >>> h.count, h.sum
    (4, 12.0)
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(float(b) for b in bounds)
        if list(self.bounds) != sorted(set(self.bounds)):
            raise ValueError("histogram bounds must be strictly ascending")
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one observation of ``value``."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        """Number of observations."""
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """Return ``[(le, cumulative count), ..., ("+Inf", count)]`` (Prometheus buckets)."""
        out: list[tuple[str, int]] = []
        total = 0
        for bound, n in zip((*self.bounds, math.inf), self.counts, strict=True):
            total += n
            out.append(("+Inf" if math.isinf(bound) else repr(bound), total))
        return out

    def quantile(self, q: float) -> float:
        """Return the upper bound of the bucket holding quantile ``q`` (``nan`` when empty)."""
        n = self.count
        if n == 0:
            return math.nan
        rank = q * n
        total = 0
        for bound, c in zip((*self.bounds, math.inf), self.counts, strict=True):
            total += c
            if total >= rank:
                return bound
        return math.inf


@dataclass(slots=True)
class SymbolStats:
    """What the worker knows about one symbol; bumped on the hot path, read at scrape time.

    Times: ``last_event_ms`` is exchange event time (ms); ``checkpoint_wall_s`` is the local
    wall time (s since the epoch) of the latest checkpoint written or restored.
    """

    ticks: int = 0
    undecodable: int = 0
    """Tick entries that did not decode (also counted in ``quarantined``)."""
    quarantined: int = 0
    """Tick entries skipped into the quarantine stream: undecodable, breaking the tick
    contract, or making the learner raise."""
    learner_rebuilds: int = 0
    """Times the learner was rebuilt from its last good state after raising."""
    samples: int = 0
    signals: int = 0
    signals_suppressed: int = 0
    """Predictions not published: a value the signal contract forbids (non-finite...)."""
    duplicates_skipped: int = 0
    trimmed: int = 0
    """Times the tick stream was found trimmed past the worker's position (ticks missed)."""
    updates: int = 0
    skipped_updates: int = 0
    nonfinite_predictions: int = 0
    """Forecasts that were not finite, published as the fallback (0 bps, P(up) 0.5)."""
    nonfinite_inputs: int = 0
    """Samples whose inputs were not finite (read as 0, not learned)."""
    model_version: int = 0
    hit_rate: float = math.nan
    ic: float = math.nan
    skill_vs_zero: float = math.nan
    n_scored: int = 0
    last_event_ms: int = 0
    checkpoints: int = 0
    checkpoints_refused: int = 0
    """Checkpoints not written because their snapshot would not restore."""
    checkpoints_unreadable: int = 0
    """Checkpoints found unreadable at start and set aside (the symbol started afresh)."""
    checkpoint_wall_s: float = 0.0
    latency: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    feed_lag: Histogram = field(default_factory=lambda: Histogram(FEED_LAG_BUCKETS))


@dataclass(slots=True)
class IngestSnapshot:
    """Counters of one venue's feed + ingester, as :class:`Metrics` exports them.

    The per-(symbol, kind) mappings use unified symbols and kinds ``"trade"`` / ``"quote"``;
    ``rejected`` (ticks) and ``skipped`` (frames that carry no tick) are keyed by reason, the
    parsers' constants (:mod:`tickcast.service.venues.base`). The ingest side fills this from
    its own counter objects (see ``live.service``). ``routes`` maps each of the feed's
    connections to ``(connected, seconds since its last frame)``.
    """

    venue: str
    received: Mapping[tuple[str, str], int]
    written: Mapping[tuple[str, str], int]
    dropped: Mapping[tuple[str, str], int]
    rejected: Mapping[str, int] = field(default_factory=dict)
    skipped: Mapping[str, int] = field(default_factory=dict)
    reconnects: int = 0
    connect_errors: int = 0
    gaps: int = 0
    missed_trades: int = 0
    watchdog_trips: int = 0
    keepalive_timeouts: int = 0
    duplicates: int = 0
    lost_at_failover: int = 0
    queue_depth: int = 0
    batch_sizes: Histogram | None = None
    routes: Mapping[str, tuple[bool, float]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RedisReading:
    """What a process's Redis says at a scrape (:class:`~.health.RedisProbe` reads it).

    ``lag_s``: for each instrument the worker serves, the receive time of the newest entry of
    its tick stream minus that of the last entry the worker processed (s; 0 when caught up).
    Memory figures are NaN when unknown (INFO refused).
    """

    up: bool
    used_memory_bytes: float = math.nan
    maxmemory_bytes: float = math.nan
    lag_s: Mapping[Instrument, float] = field(default_factory=dict)


class LeaseHolder(Protocol):
    """What the lease metrics read of a :class:`~tickcast.service.bus.lease.SymbolLeases`,
    keyed by instrument name (``venue:symbol``)."""

    @property
    def acquisitions(self) -> Mapping[str, int]: ...

    @property
    def losses(self) -> Mapping[str, int]: ...

    def holds(self, symbol: str) -> bool: ...


class Metrics:
    """Every tickcast metric, on a private registry.

    Parameters
    ----------
    instruments : sequence of Instrument
        The configured (venue label, unified symbol) pairs: the only values the ``venue`` and
        ``symbol`` labels take (besides ``symbol="other"``).
    role : {"run", "ingest", "worker"}
        What the process runs (``tickcast_build_info{role}``); the per-symbol worker metrics
        are exported by ``run`` and ``worker`` processes only.

    Besides tickcast's own metrics the registry holds prometheus_client's ``process_*`` and
    ``python_*`` collectors.
    """

    def __init__(self, instruments: Sequence[Instrument], role: str = "run") -> None:
        self.instruments = tuple(Instrument(*i) for i in instruments)
        self.venues = tuple(dict.fromkeys(i.venue for i in self.instruments))
        self.role = role
        self.symbol_stats: dict[Instrument, SymbolStats] = {
            i: SymbolStats() for i in self.instruments
        }
        self._ingest: list[Callable[[], IngestSnapshot]] = []
        self._retired_ingest: dict[str, IngestSnapshot] = {}
        """Per venue, what the ingest sources :meth:`retire` forgot had counted."""
        self._leases: list[tuple[str, LeaseHolder]] = []
        self._retired_leases: dict[str, tuple[Counter[str], Counter[str]]] = {}
        """Per role, the acquisitions and losses of the leases :meth:`retire` forgot."""
        self.redis_source: Callable[[], RedisReading] | None = None
        """Read at every scrape for the ``tickcast_redis_*`` and worker lag metrics."""
        self.started_wall_s = time.time()
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_Collector(self))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        if GC_COLLECTOR is not None:
            GCCollector(registry=self.registry)

    @property
    def exports_worker(self) -> bool:
        """Whether this process exports the per-symbol worker metrics."""
        return self.role != "ingest"

    def add_leases(self, role: str, leases: LeaseHolder) -> None:
        """Export the lease metrics of ``leases`` (``role``: ``"ingester"`` or ``"owner"``)."""
        self._leases.append((role, leases))

    def retire(self) -> None:
        """Keep what the ingest sources and leases added so far counted, and stop reading them.

        A process that replaces its service by another on other symbols (``--pool``) keeps
        one :class:`Metrics`: the next service adds its own sources and leases, and every
        counter goes on from these totals (routes, queue depth and held leases are the live
        service's only).
        """
        for snap in self._live_ingest_snapshots():
            kept = self._retired_ingest.get(snap.venue)
            frozen = replace(snap, routes={}, queue_depth=0)
            self._retired_ingest[snap.venue] = frozen if kept is None else _fold(kept, frozen)
        for role, leases in self._leases:
            taken, lost = self._retired_leases.setdefault(role, (Counter(), Counter()))
            taken.update(dict(leases.acquisitions))
            lost.update(dict(leases.losses))
        self._ingest.clear()
        self._leases.clear()

    def redis_reading(self) -> RedisReading | None:
        """Call the Redis source (errors are logged: a scrape never fails)."""
        if self.redis_source is None:
            return None
        try:
            return self.redis_source()
        except Exception:
            log.exception("redis metrics source failed")
            return RedisReading(up=False)

    def stats(self, venue: str, symbol: str) -> SymbolStats:
        """Return the worker stats of a configured instrument."""
        return self.symbol_stats[Instrument(venue, symbol)]

    def add_ingest_source(self, source: Callable[[], IngestSnapshot]) -> None:
        """Read ``source()`` at every scrape for the feed and ingest metrics."""
        self._ingest.append(source)

    def label(self, venue: str, symbol: str) -> str:
        """Return the ``symbol`` label of ``symbol`` on ``venue`` (``"other"`` when not
        configured)."""
        return symbol if (venue, symbol) in self.symbol_stats else OTHER

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """Return the scrape body and its content type for an HTTP ``Accept`` header."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    def ingest_snapshots(self) -> list[IngestSnapshot]:
        """Call every ingest source (errors are logged, not raised: a scrape never fails),
        after the totals of those :meth:`retire` forgot."""
        return [*self._retired_ingest.values(), *self._live_ingest_snapshots()]

    def _live_ingest_snapshots(self) -> list[IngestSnapshot]:
        out = []
        for source in self._ingest:
            try:
                out.append(source())
            except Exception:
                log.exception("metrics source failed")
        return out


class _Collector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        reading = self.m.redis_reading()
        yield from self._process_families(reading)
        yield from self._ingest_families()
        if self.m.exports_worker:
            yield from self._worker_families(reading)

    def _process_families(self, reading: RedisReading | None) -> Iterable[Metric]:
        m = self.m
        info = GaugeMetricFamily(
            "tickcast_build_info",
            "tickcast's version, the venues it serves and what the process runs (always 1).",
            labels=["version", "venues", "role"],
        )
        info.add_metric([__version__, ",".join(m.venues), m.role], 1.0)
        yield info
        if reading is not None:
            up = GaugeMetricFamily(
                "tickcast_redis_up", "Whether the process's Redis answers PING (1) or not (0)."
            )
            up.add_metric([], 1.0 if reading.up else 0.0)
            yield up
            for name, value, doc in (
                ("used_memory_bytes", reading.used_memory_bytes, "Redis used_memory (INFO)."),
                ("maxmemory_bytes", reading.maxmemory_bytes, "Redis maxmemory (0: no limit)."),
            ):
                if not math.isnan(value):
                    fam = GaugeMetricFamily(f"tickcast_redis_{name}", doc)
                    fam.add_metric([], value)
                    yield fam
        labels = ["venue", "symbol", "role"]
        held = GaugeMetricFamily(
            "tickcast_lease_held", "Whether this process holds the symbol's lease.", labels=labels
        )
        taken = CounterMetricFamily(
            "tickcast_lease_acquisitions",
            "Times this process took the symbol's lease (at start, or back after it expired).",
            labels=labels,
        )
        lost = CounterMetricFamily(
            "tickcast_lease_losses",
            "Times this process found the symbol's lease taken by another (it then stops).",
            labels=labels,
        )
        for role in dict.fromkeys([*m._retired_leases, *(r for r, _ in m._leases)]):
            holders = [leases for r, leases in m._leases if r == role]
            base_taken, base_lost = m._retired_leases.get(role, (Counter(), Counter()))
            for instrument in m.instruments:
                name, values = str(instrument), [*instrument, role]
                is_held = any(leases.holds(name) for leases in holders)
                held.add_metric(values, 1.0 if is_held else 0.0)
                n_taken = base_taken[name] + sum(h.acquisitions.get(name, 0) for h in holders)
                taken.add_metric(values, n_taken)
                n_lost = base_lost[name] + sum(h.losses.get(name, 0) for h in holders)
                lost.add_metric(values, n_lost)
        yield held
        yield taken
        yield lost

    def _ingest_families(self) -> Iterable[Metric]:
        m = self.m
        snaps = m.ingest_snapshots()
        sym_kind = ["venue", "symbol", "kind"]
        for name, attr, doc in (
            ("ticks_received", "received", "Ticks received from the feed."),
            ("ticks_written", "written", "Ticks written to Redis."),
            ("ticks_dropped", "dropped", "Ticks dropped (queue full or Redis away too long)."),
        ):
            fam = CounterMetricFamily(f"tickcast_{name}", doc, labels=sym_kind)
            totals: dict[tuple[str, str, str], int] = {
                (v, s, k): 0 for v, s in m.instruments for k in KINDS
            }
            for snap in snaps:
                counts: Mapping[tuple[str, str], int] = getattr(snap, attr)
                for (sym, kind), n in counts.items():
                    key = (snap.venue, m.label(snap.venue, sym), kind if kind in KINDS else OTHER)
                    totals[key] = totals.get(key, 0) + n
            for labels, n in sorted(totals.items()):
                fam.add_metric(list(labels), n)
            yield fam
        venues = list(dict.fromkeys([*m.venues, *(s.venue for s in snaps)]))
        for name, attr, doc in (
            ("ticks_rejected", "rejected", "Ticks (or frames meant to carry ticks) refused, by "
             "reason: invalid, implausible or unencodable."),
            ("feed_frames_skipped", "skipped", "Feed frames understood but carrying no tick "
             "(acks, keepalives, other events, unsubscribed symbols), by reason."),
        ):  # fmt: skip
            by_reason = CounterMetricFamily(f"tickcast_{name}", doc, labels=["venue", "reason"])
            counted: dict[tuple[str, str], int] = {}
            for snap in snaps:
                for reason, n in getattr(snap, attr).items():
                    counted[snap.venue, reason] = counted.get((snap.venue, reason), 0) + n
            for (venue, reason), n in sorted(counted.items()):
                by_reason.add_metric([venue, reason], n)
            yield by_reason
        for name, attr, doc in _VENUE_COUNTERS:
            per_venue = CounterMetricFamily(f"tickcast_{name}", doc, labels=["venue"])
            for venue in venues:
                total = sum(getattr(s, attr) for s in snaps if s.venue == venue)
                per_venue.add_metric([venue], total)
            yield per_venue
        connected = GaugeMetricFamily(
            "tickcast_feed_connected",
            "Whether the feed's connection on this route is open (1) or not (0).",
            labels=["venue", "route"],
        )
        silence = GaugeMetricFamily(
            "tickcast_feed_seconds_since_last_frame",
            "Seconds since the feed's connection on this route received a frame (since the "
            "feed started, when none yet).",
            labels=["venue", "route"],
        )
        for snap in snaps:
            for route, (is_open, quiet_s) in sorted(snap.routes.items()):
                connected.add_metric([snap.venue, route], 1.0 if is_open else 0.0)
                silence.add_metric([snap.venue, route], quiet_s)
        yield connected
        yield silence
        depth = GaugeMetricFamily(
            "tickcast_ingest_queue_depth", "Ticks waiting in the ingest queue.", labels=["venue"]
        )
        batch = HistogramMetricFamily(
            "tickcast_xadd_batch_size", "Ticks per pipelined XADD batch.", labels=["venue"]
        )
        for venue in venues:
            mine = [s for s in snaps if s.venue == venue]
            depth.add_metric([venue], sum(s.queue_depth for s in mine))
            merged = Histogram(BATCH_BUCKETS)
            for snap in mine:
                if snap.batch_sizes is not None:
                    _merge(merged, snap.batch_sizes)
            batch.add_metric([venue], merged.cumulative(), merged.sum)
        yield depth
        yield batch

    def _worker_families(self, reading: RedisReading | None) -> Iterable[Metric]:
        m = self.m
        labels = ["venue", "symbol"]
        now = time.time()
        items = sorted(m.symbol_stats.items())

        def counter(name: str, doc: str, attr: str) -> Metric:
            fam = CounterMetricFamily(f"tickcast_{name}", doc, labels=labels)
            for instrument, st in items:
                fam.add_metric(list(instrument), getattr(st, attr))
            return fam

        def gauge(name: str, doc: str, value: Callable[[SymbolStats], float]) -> Metric:
            fam = GaugeMetricFamily(f"tickcast_{name}", doc, labels=labels)
            for instrument, st in items:
                fam.add_metric(list(instrument), value(st))
            return fam

        yield counter("worker_ticks", "Ticks read by the worker.", "ticks")
        yield counter(
            "worker_undecodable_ticks",
            "Tick entries the worker could not decode (a part of the quarantined ones).",
            "undecodable",
        )
        yield counter(
            "worker_quarantined_ticks",
            "Tick entries the worker skipped into the quarantine stream: undecodable, breaking "
            "the tick contract, or making the learner raise.",
            "quarantined",
        )
        yield counter(
            "worker_learner_rebuilds",
            "Times a learner that raised was rebuilt from its last checkpoint and the ticks since.",
            "learner_rebuilds",
        )
        yield counter(
            "worker_stream_trimmed",
            "Times the tick stream was trimmed (MAXLEN) past the worker's position: ticks missed.",
            "trimmed",
        )
        yield counter("samples", "Samples taken (predictions made).", "samples")
        yield counter("signals_published", "Signals published.", "signals")
        yield counter(
            "signals_suppressed",
            "Predictions not published because a value broke the signal contract (non-finite "
            "return, P(up) or reference price).",
            "signals_suppressed",
        )
        yield counter(
            "signals_deduplicated",
            "Samples not published again because a restored checkpoint had published them.",
            "duplicates_skipped",
        )
        yield counter("updates", "Weight updates (labels learned).", "updates")
        yield counter(
            "skipped_updates", "Updates skipped (non-finite loss or gradient).", "skipped_updates"
        )
        yield counter(
            "nonfinite_predictions",
            "Forecasts that were not finite, published as 0 bps with P(up) 0.5.",
            "nonfinite_predictions",
        )
        yield counter(
            "nonfinite_inputs",
            "Samples whose model inputs were not finite (read as 0, not learned).",
            "nonfinite_inputs",
        )
        yield counter("checkpoints", "Checkpoints written.", "checkpoints")
        yield counter(
            "checkpoints_refused",
            "Checkpoints not written because their snapshot would not restore (the previous "
            "one is kept).",
            "checkpoints_refused",
        )
        yield counter(
            "checkpoints_unreadable",
            "Checkpoints that would not restore at start, set aside (the symbol started afresh).",
            "checkpoints_unreadable",
        )
        yield gauge("hit_rate", "Rolling hit rate on nonzero labels (ratio).", lambda s: s.hit_rate)
        yield gauge("ic", "Rolling Pearson information coefficient.", lambda s: s.ic)
        yield gauge(
            "skill_vs_zero",
            "Rolling skill vs the zero predictor: 1 - MSE / MSE_zero.",
            lambda s: s.skill_vs_zero,
        )
        yield gauge(
            "model_version", "Model version (weight updates so far).", lambda s: s.model_version
        )
        yield gauge(
            "last_tick_event_time_seconds",
            "Exchange event time of the latest tick the worker read (s since the epoch).",
            lambda s: s.last_event_ms / 1000.0,
        )
        yield gauge(
            "checkpoint_age_seconds",
            "Seconds since the latest checkpoint written or restored (since start when none).",
            lambda s: now - (s.checkpoint_wall_s or m.started_wall_s),
        )
        if reading is not None and reading.up:
            lag = GaugeMetricFamily(
                "tickcast_worker_lag_seconds",
                "Receive time of the newest tick in the symbol's stream minus that of the last "
                "tick the worker processed (0 when caught up).",
                labels=labels,
            )
            for instrument, seconds in sorted(reading.lag_s.items()):
                lag.add_metric(list(instrument), seconds)
            yield lag
        for name, attr, doc in (
            (
                "tick_to_signal_acked_seconds",
                "latency",
                "Local receive time of the tick that closed the sample to Redis acknowledging "
                "the signal (readable by subscribers from then on).",
            ),
            (
                "feed_lag_seconds",
                "feed_lag",
                "Local receive time minus exchange event time of each tick.",
            ),
        ):
            fam = HistogramMetricFamily(f"tickcast_{name}", doc, labels=labels)
            for instrument, st in items:
                h: Histogram = getattr(st, attr)
                fam.add_metric(list(instrument), h.cumulative(), h.sum)
            yield fam


_VENUE_COUNTERS: Final = (
    ("feed_reconnects", "reconnects", "Feed connection attempts after each connection's "
     "first one, successful or not."),
    ("feed_connect_errors", "connect_errors", "Feed connection attempts or connections "
     "that ended in an error."),
    ("feed_watchdog_trips", "watchdog_trips", "Feed reconnections forced by the silence "
     "watchdog."),
    ("feed_keepalive_timeouts", "keepalive_timeouts", "Feed connections dropped because "
     "the venue stopped answering pings."),
    ("feed_gaps", "gaps", "Trade-id gaps seen by the feed."),
    ("feed_missed_trades", "missed_trades", "Trades missing in trade-id gaps (never "
     "received)."),
    ("ticks_duplicates_refused", "duplicates", "Tick entries of a batch sent again "
     "after a failure that Redis already had (refused: not stored twice)."),
    ("ticks_lost_at_failover", "lost_at_failover", "Ticks a Redis Cluster master "
     "acknowledged and lost when it failed before replicating them (a gap)."),
)  # fmt: skip
"""The per-venue counters of an :class:`IngestSnapshot`: metric name, attribute, help."""
_VENUE_COUNTS: Final = tuple(attr for _, attr, _ in _VENUE_COUNTERS)


def _fold(a: IngestSnapshot, b: IngestSnapshot) -> IngestSnapshot:
    """One venue's two snapshots as one: every count summed (routes and depth are ``b``'s)."""

    def add(x: Mapping[Any, int], y: Mapping[Any, int]) -> dict[Any, int]:
        return dict(Counter(x) + Counter(y))

    sizes = Histogram(BATCH_BUCKETS)
    for h in (a.batch_sizes, b.batch_sizes):
        if h is not None:
            _merge(sizes, h)
    counts = {name: getattr(a, name) + getattr(b, name) for name in _VENUE_COUNTS}
    return replace(
        b,
        received=add(a.received, b.received),
        written=add(a.written, b.written),
        dropped=add(a.dropped, b.dropped),
        rejected=add(a.rejected, b.rejected),
        skipped=add(a.skipped, b.skipped),
        batch_sizes=sizes,
        **counts,
    )


def _merge(into: Histogram, other: Histogram) -> None:
    if other.bounds == into.bounds:
        for i, n in enumerate(other.counts):
            into.counts[i] += n
    else:  # re-bucket by upper bound (conservative)
        for bound, n in zip((*other.bounds, math.inf), other.counts, strict=True):
            into.counts[bisect_left(into.bounds, bound)] += n
    into.sum += other.sum
