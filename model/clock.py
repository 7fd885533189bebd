"""The sample clock of a learner: event-time grid, bounded pending queue, deferred labels.

:class:`SampleClock` orders the events of one symbol's tick stream and leaves what happens at
them to a subclass. Before a tick is applied (by the ``apply`` callable), every event it
passes is processed in time order: the sample boundaries (multiples of ``sample_ms``), where
the subclass takes a sample (:meth:`SampleClock._sample`) that joins the pending queue, and
the labelling times ``t + horizon_ms`` of pending samples, where the label is read
(:meth:`SampleClock._label`). At equal times the sample comes first. A tick stamped exactly
at a boundary belongs to the next interval.

Reading a label and learning from it are split: the learning (:meth:`SampleClock._mature`)
of the labels read at the last time an :meth:`SampleClock.update` processes is deferred to
:meth:`SampleClock.flush`, which runs before any later event, at the start of the next
update, or when a caller asks (after publishing the update's predictions). The outcome does
not depend on when a caller flushes.

Gaps. When a tick arrives more than ``max_gap_ms`` after the previous one, events up to
``previous + max_gap_ms`` are processed as usual; the samples still pending are dropped
unlabelled (their label would straddle the gap), the boundaries in the rest of the gap are
skipped, and the clock resumes after the tick. Both are counted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from .samples import Pending, Prediction
from .state import LearnerError

__all__ = ["SampleClock"]


class SampleClock:
    """Event-time sample clock with a bounded pending queue (see the module docstring).

    Parameters
    ----------
    horizon_ms : int
        Label horizon, ms.
    sample_ms : int
        Sample interval, ms.
    max_gap_ms : int
        Longest silence (ms between consecutive ticks) sampled through.
    apply : callable
        Applies a tick (after the events before it), e.g. ``features.update``.
    """

    _CLOCK_COUNTERS = ("n_ticks", "n_gaps", "n_gap_skipped", "n_gap_dropped")

    def __init__(
        self, horizon_ms: int, sample_ms: int, max_gap_ms: int, apply: Callable[[Any], object]
    ) -> None:
        if not (0 < sample_ms <= max_gap_ms and horizon_ms > 0):
            raise LearnerError(
                "need horizon_ms > 0 and 0 < sample_ms <= max_gap_ms, got "
                f"{horizon_ms}, {sample_ms}, {max_gap_ms}"
            )
        self.horizon_ms = int(horizon_ms)
        self.sample_ms = int(sample_ms)
        self.max_gap_ms = int(max_gap_ms)
        self._apply = apply
        self.max_pending = -(-self.horizon_ms // self.sample_ms) + 1
        self._pending: deque[Pending] = deque()
        self._deferred: list[tuple[Pending, float]] = []  # labels read at _deferred_t
        self._deferred_t = 0
        self._next_t = 0  # next sample boundary, ms (0: clock not started)
        self._last_event_ms = 0
        self.n_ticks = 0
        self.n_gaps = 0
        self.n_gap_skipped = 0
        self.n_gap_dropped = 0

    # -- what a subclass does at the events ---------------------------------------------------

    def _sample(self, t_ms: int) -> tuple[Pending, Prediction] | None:
        """Take the sample at boundary ``t_ms``; None to skip it."""
        raise NotImplementedError

    def _label(self, p: Pending) -> float:
        """The label of ``p``, read now (at its labelling time)."""
        raise NotImplementedError

    def _mature(self, p: Pending, y: float) -> None:
        """Score ``p`` and learn from its label ``y``."""
        raise NotImplementedError

    # -- the event loop -----------------------------------------------------------------------

    def update(self, tick: Any) -> list[Prediction]:
        """Feed one tick; return the predictions of the sample boundaries it passed (in order).

        ``tick`` needs an ``event_ms`` attribute (and whatever ``apply`` reads). The
        learning of the labels read at the last event time processed waits for :meth:`flush`.
        """
        if self._deferred:
            self.flush()
        e = tick.event_ms
        out: list[Prediction] = []
        if self._next_t == 0:
            self._next_t = (e // self.sample_ms + 1) * self.sample_ms
        elif e >= self._next_t or (self._pending and e >= self._pending[0].t_ms + self.horizon_ms):
            if e - self._last_event_ms > self.max_gap_ms:
                self._cross_gap(e, out)
            else:
                self._process_until(e, out)
        self._apply(tick)
        self.n_ticks += 1
        if e > self._last_event_ms:
            self._last_event_ms = e
        return out

    def flush(self) -> None:
        """Score and learn the labels read so far but not yet learned (idempotent).

        Every later :meth:`update` and every snapshot, metric or counter read calls it first:
        results are the same whether or not a caller does.
        """
        items, self._deferred = self._deferred, []
        for p, y in items:
            self._mature(p, y)

    def _cross_gap(self, e: int, out: list[Prediction]) -> None:
        """Process events up to ``max_gap_ms`` after the last tick, then skip to ``e``."""
        self._process_until(self._last_event_ms + self.max_gap_ms, out)
        self.n_gaps += 1
        self.n_gap_dropped += len(self._pending)
        self._pending.clear()
        resume = (e // self.sample_ms + 1) * self.sample_ms
        self.n_gap_skipped += max(0, (resume - self._next_t) // self.sample_ms)
        self._next_t = resume

    def _process_until(self, limit: int, out: list[Prediction]) -> None:
        """Process sample boundaries and labelling times ``<= limit`` in time order (at equal
        times, the sample first)."""
        pending = self._pending
        horizon = self.horizon_ms
        while True:
            t_sample = self._next_t
            if pending and pending[0].t_ms + horizon < t_sample:
                t_label = pending[0].t_ms + horizon
                if t_label > limit:
                    return
                if self._deferred and self._deferred_t < t_label:
                    self.flush()
                p = pending.popleft()
                self._deferred.append((p, self._label(p)))
                self._deferred_t = t_label
                continue
            if t_sample > limit:
                return
            if self._deferred and self._deferred_t < t_sample:
                self.flush()
            taken = self._sample(t_sample)
            if taken is not None:
                pending.append(taken[0])
                if len(pending) > self.max_pending:
                    raise AssertionError(f"pending queue over its bound {self.max_pending}")
                out.append(taken[1])
            self._next_t = t_sample + self.sample_ms

    # -- introspection and state --------------------------------------------------------------

    @property
    def n_deferred(self) -> int:
        """Labels read but not yet scored and learned (:meth:`flush` learns them)."""
        return len(self._deferred)

    @property
    def n_pending(self) -> int:
        """Samples waiting for their label."""
        return len(self._pending)

    def clock_state(self) -> dict[str, int]:
        """Clock position and counters (call :meth:`flush` first)."""
        state = {k: int(getattr(self, k)) for k in self._CLOCK_COUNTERS}
        return {"next_t": self._next_t, "last_event_ms": self._last_event_ms, **state}

    def load_clock_state(self, state: dict[str, Any], pending: deque[Pending]) -> None:
        """Restore :meth:`clock_state` and the pending queue; drop anything deferred."""
        values = {k: int(state[k]) for k in ("next_t", "last_event_ms", *self._CLOCK_COUNTERS)}
        if len(pending) > self.max_pending:
            raise LearnerError(f"pending queue of {len(pending)} over its bound")
        self._pending = pending
        self._deferred = []
        self._next_t = values.pop("next_t")
        self._last_event_ms = values.pop("last_event_ms")
        for k, v in values.items():
            setattr(self, k, v)
