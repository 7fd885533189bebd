"""Predictions -> signals: build the Signal of each prediction and XADD it to its stream.

:class:`Predictor` serves one symbol. The worker calls :meth:`Predictor.add` for each
prediction a tick produced (with that tick's local receive time), then :meth:`Predictor.pack`
to pack the XADDs (``MAXLEN ~ redis.signal_maxlen``) for a :class:`~tickcast.service.bus.resp.Lane`
and, once Redis acknowledged them, :meth:`Predictor.published` to count them and record the
tick->signal latency.

Each signal's stream entry ID is its sample time: ``<t_ms>-0`` (one signal per sample, sample
times strictly increasing per symbol). Signals re-sent after a failure whose first attempt
Redis did execute are refused as :data:`~tickcast.service.bus.resp.DUPLICATE_ID` (the worker's
lane tolerates that reply), so no sample is ever published twice.

A prediction whose return, P(up) or reference price the signal contract forbids (a non-finite
value: :func:`~tickcast.service.schema.signal_fault`) is not published: :meth:`Predictor.add`
counts it (``stats.signals_suppressed``), logs the first ones and every
:data:`LOG_EVERY`-th, and returns False. Undefined rolling scores are left out of the signal
(:func:`~tickcast.service.schema.signal_fields`): no published value is ever null.

A prediction of a learner with extra horizons (a
:class:`~tickcast.model.horizons.MultiPrediction`) becomes a version-2 signal: the main fields
are the first horizon's, ``horizons`` holds the others'
(:func:`~tickcast.service.schema.horizon_fields`); a non-finite value in any horizon
suppresses the whole signal, as in the main fields.

Latency, from the local receive time (``recv_ns``) of the tick that closed the sample, which
each signal carries as ``recv_us``: ``Signal.latency_us`` runs to the signal's hand-off to
Redis (it cannot include its own XADD); the ``tickcast_tick_to_signal_acked_seconds``
histogram runs to Redis acknowledging the XADD (the signal readable by subscribers), and a
subscriber on the same clock measures its own receive time minus ``recv_us``.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final, Protocol

import orjson

from tickcast.model.horizons import MultiPrediction
from tickcast.service.bus.resp import bulk
from tickcast.service.ops.metrics import SymbolStats
from tickcast.service.schema import FIELD, horizon_fields, signal_fault, signal_fields

log = logging.getLogger(__name__)

LOG_FIRST: Final = 10
LOG_EVERY: Final = 1000


def _horizons(p: MultiPrediction) -> list[dict[str, Any]]:
    """The ``horizons`` of the signal of ``p``: its other horizons' forecasts and scores."""
    return [
        horizon_fields(
            horizon_ms=h,
            ret_bps=q.ret_bps,
            p_up=q.p_up,
            model_version=q.model_version,
            hit_rate=q.hit_rate,
            ic=q.ic,
            skill_vs_zero=q.skill_vs_zero,
        )
        for h, q in zip(p.horizons_ms[1:], p.others, strict=True)
    ]


def worth_logging(count: int) -> bool:
    """Whether the ``count``-th occurrence of a per-symbol problem is logged: the first
    :data:`LOG_FIRST`, then every :data:`LOG_EVERY`-th (each is counted in a metric).

    Examples
    --------
    >>> [n for n in range(1, 3001) if worth_logging(n)]
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1000, 2000, 3000]
    """
    return count <= LOG_FIRST or count % LOG_EVERY == 0


class PredictionLike(Protocol):
    """The fields of :class:`~tickcast.model.learner.Prediction` a signal is made of."""

    @property
    def t_ms(self) -> int: ...
    @property
    def ret_bps(self) -> float: ...
    @property
    def p_up(self) -> float: ...
    @property
    def ref_price(self) -> float: ...
    @property
    def model_version(self) -> int: ...
    @property
    def hit_rate(self) -> float: ...
    @property
    def ic(self) -> float: ...
    @property
    def skill_vs_zero(self) -> float: ...


class Predictor:
    """Turn one symbol's predictions into signals; see the module docstring.

    Parameters
    ----------
    venue, symbol : str
        What the signals are about.
    key : str
        The symbol's signals stream key.
    maxlen : int
        Approximate stream length bound (``XADD MAXLEN ~``).
    stats : SymbolStats
        Counters and histograms to update.
    """

    def __init__(self, venue: str, symbol: str, key: str, maxlen: int, stats: SymbolStats):
        self.venue = venue
        self.symbol = symbol
        self.key = key
        self.maxlen = maxlen
        self.stats = stats
        self._pending: list[tuple[dict[str, Any], int]] = []
        self._inflight: list[tuple[dict[str, Any], int]] = []
        head = (b"XADD", key.encode(), b"MAXLEN", b"~", b"%d" % maxlen)
        self._head = b"*8\r\n" + b"".join(map(bulk, head))
        self._field = bulk(FIELD)

    @property
    def pending(self) -> int:
        """Signals added and not yet queued."""
        return len(self._pending)

    @property
    def unconfirmed(self) -> int:
        """Signals added and not yet counted as published (pending or sent)."""
        return len(self._pending) + len(self._inflight)

    def add(self, p: PredictionLike, learner: Any, recv_ns: int) -> bool:
        """Build the signal of prediction ``p`` made on the tick received at ``recv_ns`` (a
        :class:`~tickcast.model.horizons.MultiPrediction`: with its other horizons); False
        (counted, not published) when a value breaks the signal contract."""
        ret_bps, p_up, ref_price = float(p.ret_bps), float(p.p_up), float(p.ref_price)
        horizons = _horizons(p) if isinstance(p, MultiPrediction) else ()
        fault = signal_fault(ret_bps, p_up, ref_price, horizons)
        if fault is not None:
            self._suppress(p, fault)
            return False
        fields = signal_fields(
            venue=self.venue,
            symbol=self.symbol,
            t_ms=p.t_ms,
            horizon_ms=learner.horizon_ms,
            ret_bps=ret_bps,
            p_up=p_up,
            ref_price=ref_price,
            model_version=p.model_version,
            hit_rate=p.hit_rate,
            ic=p.ic,
            skill_vs_zero=p.skill_vs_zero,
            latency_us=0,
            horizons=horizons,
            recv_us=recv_ns // 1000 or None,
        )
        self._pending.append((fields, recv_ns))
        return True

    def _suppress(self, p: PredictionLike, fault: str) -> None:
        self.stats.signals_suppressed += 1
        if worth_logging(self.stats.signals_suppressed):
            log.warning(
                "%s %s: signal of sample t=%d not published: %s (ret_bps=%r, p_up=%r, "
                "ref_price=%r); %d suppressed so far (tickcast_signals_suppressed_total)",
                self.venue,
                self.symbol,
                p.t_ms,
                fault,
                p.ret_bps,
                p.p_up,
                p.ref_price,
                self.stats.signals_suppressed,
                extra={"venue": self.venue, "symbol": self.symbol, "error": fault},
            )

    def pack(self, out: list[bytes]) -> int:
        """Append the pending signals' XADDs (ID ``<t_ms>-0``), RESP-packed for a
        :class:`~tickcast.service.bus.resp.Lane`, to ``out``; return how many."""
        if not self._pending:
            return 0
        now_ns = time.time_ns()
        head, field, dumps = self._head, self._field, orjson.dumps
        for fields, recv_ns in self._pending:
            fields["latency_us"] = max(0, (now_ns - recv_ns) // 1000)
            blob = dumps(fields)
            entry_id = b"%d-0" % fields["t_ms"]
            out.append(
                b"%b$%d\r\n%b\r\n%b$%d\r\n%b\r\n"
                % (head, len(entry_id), entry_id, field, len(blob), blob)
            )
        n = len(self._pending)
        self._inflight.extend(self._pending)
        self._pending.clear()
        return n

    def published(self, now_ns: int | None = None) -> None:
        """Count the queued signals as published at ``now_ns`` and record their latency."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        observe = self.stats.latency.observe
        for _, recv_ns in self._inflight:
            observe(max(0, now_ns - recv_ns) * 1e-9)
        self.stats.signals += len(self._inflight)
        self._inflight.clear()

    def requeue(self) -> None:
        """Put queued signals back in front of the pending ones (their batch failed; those
        Redis did store are refused when sent again: none is lost, none stored twice)."""
        self._pending[:0] = self._inflight
        self._inflight.clear()

    def sync_stats(self, learner: Any, last: PredictionLike | None = None) -> None:
        """Copy the learner's counters (``model_version``, ``counters()``) and the latest
        rolling scores into the stats."""
        st = self.stats
        st.model_version = int(getattr(learner, "model_version", 0))
        counters = learner.counters() if hasattr(learner, "counters") else {}
        st.updates = int(counters.get("n_updates", st.model_version))
        st.skipped_updates = int(counters.get("n_update_skipped", 0))
        st.nonfinite_predictions = int(counters.get("n_nonfinite_predictions", 0))
        st.nonfinite_inputs = int(counters.get("n_nonfinite_inputs", 0))
        st.samples = int(counters.get("n_predictions", st.samples))
        if last is not None:
            st.hit_rate, st.ic, st.skill_vs_zero = last.hit_rate, last.ic, last.skill_vs_zero
