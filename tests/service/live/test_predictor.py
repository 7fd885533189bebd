"""The predictor: a prediction becomes a validated signal in its stream, latency measured."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import orjson
import pytest
import redis
import redis.asyncio

from tickcast.model.horizons import MultiPrediction
from tickcast.model.samples import Prediction
from tickcast.service.bus.resp import DUPLICATE_ID, Lane
from tickcast.service.live.predictor import Predictor
from tickcast.service.ops.metrics import SymbolStats
from tickcast.service.schema import Signal, decode_signal

KEY = "tickcast:{sim:BTCUSDT}:signals"


@dataclass(frozen=True)
class FakePrediction:
    t_ms: int
    ret_bps: float = 0.5
    p_up: float = 0.6
    ref_price: float = 60_000.1
    model_version: int = 12
    hit_rate: float = 0.55
    ic: float = 0.2
    skill_vs_zero: float = 0.01


@dataclass
class LearnerInfo:
    horizon_ms: int = 1000
    model_version: int = 12
    n_samples: int = 3
    n_skipped: int = 0
    n_fallbacks: int = 0

    def counters(self) -> dict[str, int]:
        return {
            "n_updates": self.model_version,
            "n_update_skipped": self.n_skipped,
            "n_predictions": self.n_samples,
            "n_nonfinite_predictions": self.n_fallbacks,
            "n_nonfinite_inputs": 2 * self.n_fallbacks,
        }


def signals(client: redis.Redis) -> list[Signal]:
    return [decode_signal(fields) for _, fields in client.xrange(KEY)]


async def send(pred: Predictor, client: redis.asyncio.Redis) -> int:
    """XADD the predictor's pending signals on a fast lane, as the worker does; how many."""
    parts: list[bytes] = []
    n = pred.pack(parts)
    await Lane(client, tolerate=DUPLICATE_ID).call(b"".join(parts), n)
    return n


async def test_a_prediction_becomes_a_signal_with_its_values(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis
) -> None:
    stats = SymbolStats()
    pred = Predictor("sim", "BTC/USDT:USDT", KEY, 1000, stats)
    recv_ns = time.time_ns() - 2_000_000  # the tick arrived 2 ms ago
    pred.add(FakePrediction(1_767_225_600_100), LearnerInfo(), recv_ns)
    assert pred.pending == 1
    assert await send(pred, async_redis_client) == 1
    pred.published()
    (sig,) = signals(redis_client)
    assert sig.symbol == "BTC/USDT:USDT" and sig.venue == "sim"
    assert sig.t_ms == 1_767_225_600_100 and sig.horizon_ms == 1000
    assert (sig.ret_bps, sig.p_up, sig.ref_price) == (0.5, 0.6, 60_000.1)
    assert 2_000 <= sig.latency_us < 2_000_000
    assert sig.recv_us == recv_ns // 1000  # a subscriber's end-to-end latency starts there
    assert stats.signals == 1 and stats.latency.count == 1
    assert stats.latency.sum >= sig.latency_us * 1e-6  # the histogram runs on to the ack


async def test_undefined_rolling_scores_are_left_out_of_the_signal(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis
) -> None:
    pred = Predictor("sim", "BTC/USDT:USDT", KEY, 1000, SymbolStats())
    nan = FakePrediction(100, hit_rate=math.nan, ic=math.nan, skill_vs_zero=-math.inf)
    assert pred.add(nan, LearnerInfo(), time.time_ns())
    await send(pred, async_redis_client)
    ((_, entry),) = redis_client.xrange(KEY)
    raw = orjson.loads(entry[b"s"])
    assert not {"hit_rate", "ic", "skill_vs_zero"} & set(raw) and None not in raw.values()
    (sig,) = signals(redis_client)
    assert sig.hit_rate is None and sig.ic is None and sig.skill_vs_zero is None


@pytest.mark.parametrize(
    "bad",
    [
        {"ret_bps": math.nan},
        {"ret_bps": -math.inf},
        {"p_up": math.nan},
        {"ref_price": math.inf},
        {"ref_price": np.float64("nan")},
    ],
)
async def test_a_prediction_with_a_non_finite_value_is_counted_never_published(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis, bad: dict[str, float]
) -> None:
    stats = SymbolStats()
    pred = Predictor("sim", "BTC/USDT:USDT", KEY, 1000, stats)
    assert not pred.add(FakePrediction(100, **bad), LearnerInfo(), time.time_ns())
    assert pred.add(FakePrediction(200), LearnerInfo(), time.time_ns())
    assert pred.pending == 1 and stats.signals_suppressed == 1
    await send(pred, async_redis_client)
    assert [s.t_ms for s in signals(redis_client)] == [200]


def prediction(t_ms: int, ret_bps: float = 1.5, p_up: float = 0.7) -> Prediction:
    """A learner's prediction: hit rate 0.52, IC 0.05, skill undefined."""
    return Prediction(t_ms, ret_bps, p_up, 60_000.1, 7, 0.0, 0.52, 0.05, math.nan, 10)


def multi(t_ms: int, *others: Prediction) -> MultiPrediction:
    horizons = (1000, *(5000 * (i + 1) for i in range(len(others))))
    return MultiPrediction(prediction(t_ms, 0.5, 0.6), tuple(others), horizons)


async def test_extra_horizons_make_a_version_2_signal_with_each_horizons_values(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis
) -> None:
    pred = Predictor("sim", "BTC/USDT:USDT", KEY, 1000, SymbolStats())
    assert pred.add(multi(100, prediction(100), prediction(100, -2.0, 0.2)), LearnerInfo(), 0)
    await send(pred, async_redis_client)
    (sig,) = signals(redis_client)
    assert sig.v == 2 and (sig.horizon_ms, sig.ret_bps, sig.p_up) == (1000, 0.5, 0.6)
    assert sig.horizons is not None
    assert [(h.horizon_ms, h.ret_bps, h.p_up, h.model_version) for h in sig.horizons] == [
        (5000, 1.5, 0.7, 7),
        (10_000, -2.0, 0.2, 7),
    ]
    assert all(h.hit_rate == 0.52 and h.skill_vs_zero is None for h in sig.horizons)
    ((_, entry),) = redis_client.xrange(KEY)
    assert b"null" not in entry[b"s"], "an undefined score is left out"


@pytest.mark.parametrize("bad", [{"ret_bps": math.nan}, {"p_up": 1.5}, {"ret_bps": math.inf}])
async def test_a_non_finite_extra_horizon_suppresses_the_whole_signal(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis, bad: dict[str, float]
) -> None:
    stats = SymbolStats()
    pred = Predictor("sim", "BTC/USDT:USDT", KEY, 1000, stats)
    assert not pred.add(multi(100, prediction(100), prediction(100, **bad)), LearnerInfo(), 0)
    assert pred.add(multi(200, prediction(200), prediction(200)), LearnerInfo(), 0)
    assert pred.pending == 1 and stats.signals_suppressed == 1
    await send(pred, async_redis_client)
    assert [s.t_ms for s in signals(redis_client)] == [200]


async def test_signals_of_a_failed_pipeline_are_requeued_not_lost(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis
) -> None:
    stats = SymbolStats()
    pred = Predictor("sim", "BTC/USDT:USDT", KEY, 1000, stats)
    for t in (100, 200):
        pred.add(FakePrediction(t), LearnerInfo(), time.time_ns())
    pred.pack([])  # never sent: "failed"
    pred.requeue()
    pred.add(FakePrediction(300), LearnerInfo(), time.time_ns())
    assert pred.pending == 3
    await send(pred, async_redis_client)
    pred.published()
    assert [s.t_ms for s in signals(redis_client)] == [100, 200, 300]
    assert stats.signals == 3


async def test_the_signal_stream_is_trimmed_near_its_maxlen(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis
) -> None:
    pred = Predictor("sim", "BTC/USDT:USDT", KEY, 200, SymbolStats())
    for t in range(1, 3001):
        pred.add(FakePrediction(t), LearnerInfo(), time.time_ns())
    await send(pred, async_redis_client)
    assert 200 <= redis_client.xlen(KEY) < 400


def test_stats_follow_the_learner_and_the_latest_prediction() -> None:
    stats = SymbolStats()
    pred = Predictor("sim", "BTC/USDT:USDT", KEY, 1000, stats)
    info = LearnerInfo(model_version=40, n_samples=50, n_skipped=2, n_fallbacks=3)
    pred.sync_stats(info, FakePrediction(1, ic=0.3))
    assert (stats.model_version, stats.updates, stats.samples) == (40, 40, 50)
    assert (stats.skipped_updates, stats.ic) == (2, 0.3)
    assert (stats.nonfinite_predictions, stats.nonfinite_inputs) == (3, 6)


async def test_a_signal_is_stored_under_its_sample_time_and_never_twice(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis
) -> None:
    stats = SymbolStats()
    pred = Predictor("sim", "BTC/USDT:USDT", KEY, 1000, stats)
    for t in (100, 200):
        pred.add(FakePrediction(t), LearnerInfo(), time.time_ns())
    assert await send(pred, async_redis_client) == 2
    pred.requeue()  # as if the replies were lost with the connection: sent again
    numpy_valued = FakePrediction(300, ret_bps=np.float64(0.5), ref_price=np.float64(60_000.1))
    pred.add(numpy_valued, LearnerInfo(), time.time_ns())
    assert pred.unconfirmed == 3
    assert await send(pred, async_redis_client) == 3
    pred.published()
    assert pred.unconfirmed == 0 and stats.signals == 3
    entries = redis_client.xrange(KEY)
    assert [entry_id for entry_id, _ in entries] == [b"100-0", b"200-0", b"300-0"]
    assert [s.t_ms for s in signals(redis_client)] == [100, 200, 300]
