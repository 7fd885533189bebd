"""MultiHorizonLearner: every horizon is exactly a standalone learner of that horizon, the
horizons stay aligned, and snapshots restore bit for bit."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from tickcast.model.features import StreamingFeatures
from tickcast.model.horizons import (
    SNAPSHOT_MAGIC,
    MultiHorizonLearner,
    MultiPrediction,
    horizons_of,
    learner_for,
    load_learner,
)
from tickcast.model.learner import LearnerError, OnlineLearner, Prediction, Scored
from tickcast.service.ticks import Tick, quote, trade

START = 1_700_000_000_000
#: Off the grid (250), shorter than the sample interval (50), long (3000): every case of the
#: clock's event order.
HORIZONS = (1000, 50, 250, 3000)


def _market(seconds: float, seed: int, *, gap_at: float | None = None) -> list[Tick]:
    """Quotes and trades of a random walk whose moves lean towards the heavy side of the book;
    ``gap_at`` (fraction of the run) puts a 15 s silence there (longer than ``max_gap_ms``)."""
    rng = np.random.default_rng(seed)
    ticks: list[Tick] = []
    t, mid2, imbalance = float(START), 200_000, 0.0
    end = START + seconds * 1000.0
    gap_ms = START + gap_at * seconds * 1000.0 if gap_at is not None else math.inf
    while t < end:
        t += rng.exponential(60.0)
        if t > gap_ms:
            t, gap_ms = t + 15_000.0, math.inf
        ms = int(t)
        if rng.random() < 0.3:
            side = 1 if rng.random() < 0.5 else -1
            price = (mid2 + side) * 0.25
            ticks.append(trade("sim", "X/USDT:USDT", ms, ms * 1_000_000, price, 0.1, side))
            continue
        if rng.random() < 0.5:
            mid2 += 2 if rng.random() < 0.5 + 0.3 * imbalance else -2
        if rng.random() < 0.2:
            imbalance = float(np.tanh(rng.normal()))
        bid_size = round(5.0 * (1 + imbalance) + 0.1, 3)
        ask_size = round(5.0 * (1 - imbalance) + 0.1, 3)
        bid, ask = (mid2 - 1) * 0.25, (mid2 + 1) * 0.25
        ticks.append(quote("sim", "X/USDT:USDT", ms, ms * 1_000_000, bid, bid_size, ask, ask_size))
    return ticks


def _run(learner: Any, ticks: Sequence[Tick]) -> list[Any]:
    out: list[Any] = []
    for tick in ticks:
        out += learner.update(tick)
    return out


def _key(p: Prediction) -> tuple[Any, ...]:
    """A prediction's values, NaN made comparable."""
    return tuple(None if isinstance(v, float) and math.isnan(v) else v for v in _values(p))


def _values(p: Prediction | MultiPrediction) -> tuple[Any, ...]:
    """Every field of a :class:`Prediction`, read from ``p``."""
    return tuple(getattr(p, f.name) for f in dataclasses.fields(Prediction))


@pytest.fixture(scope="module")
def ticks() -> list[Tick]:
    return _market(260, seed=5, gap_at=0.6)


def test_each_horizon_predicts_exactly_what_a_standalone_learner_of_that_horizon_does(
    ticks: list[Tick],
) -> None:
    multi = MultiHorizonLearner(HORIZONS, seed=3)
    alone = {h: OnlineLearner(horizon_ms=h, seed=3) for h in HORIZONS}
    scored: dict[str, list[Scored]] = {}
    for h, member, solo in zip(HORIZONS, multi.learners, alone.values(), strict=True):
        member.on_score = scored.setdefault(f"multi {h}", []).append
        solo.on_score = scored.setdefault(f"solo {h}", []).append
    got = _run(multi, ticks)
    multi.flush()
    assert len(got) > 1000
    assert multi.counters()["n_gaps"] == 1, "the run crosses a gap"
    for h, solo in alone.items():
        expected = _run(solo, ticks)
        solo.flush()
        mine = [p for mp in got for k, p in mp.by_horizon() if k == h]
        assert [_key(p) for p in mine] == [_key(p) for p in expected], h
        assert scored[f"multi {h}"] == scored[f"solo {h}"] and scored[f"solo {h}"], h
    for h, member in zip(HORIZONS, multi.learners, strict=True):
        assert member.snapshot() == alone[h].snapshot(), "bit-identical state, features included"


def test_the_positive_control_feeding_first_would_let_the_tick_leak_into_its_own_sample(
    ticks: list[Tick],
) -> None:
    """The order matters: a learner updated after the one that feeds the shared features
    samples them with the tick already in; the test above would catch that."""
    feeder = OnlineLearner(horizon_ms=1000)
    late = OnlineLearner(horizon_ms=250, features=feeder.features, feed_features=False)
    leaked: list[Prediction] = []
    for tick in ticks:
        feeder.update(tick)
        leaked += late.update(tick)
    honest = _run(OnlineLearner(horizon_ms=250), ticks)
    assert [p.t_ms for p in leaked] == [p.t_ms for p in honest]
    assert [_key(p) for p in leaked] != [_key(p) for p in honest]


def test_every_prediction_carries_the_other_horizons_of_its_sample_time(
    ticks: list[Tick],
) -> None:
    multi = MultiHorizonLearner(HORIZONS)
    out = _run(multi, ticks[:3000])
    assert out and all(isinstance(mp, MultiPrediction) for mp in out)
    for mp in out:
        assert mp.horizons_ms == HORIZONS and len(mp.others) == len(HORIZONS) - 1
        assert {p.t_ms for p in mp.others} == {mp.t_ms}
        assert {p.ref_price for p in mp.others} == {mp.ref_price}, "one reference price"
        assert _values(mp) == _values(mp.primary), "it reads as the first horizon's prediction"
        assert [h for h, _ in mp.by_horizon()] == list(HORIZONS)
    assert [mp.t_ms for mp in out] == sorted({mp.t_ms for mp in out})
    assert multi.horizon_ms == 1000 and multi.sample_ms == 100 and horizons_of(multi) == HORIZONS


def test_horizons_that_sample_different_times_raise() -> None:
    multi = MultiHorizonLearner([1000, 2000])
    p = Prediction(100, 0.0, 0.5, 1.0, 0, 0.0, math.nan, math.nan, math.nan, 0)
    q = Prediction(200, 0.0, 0.5, 1.0, 0, 0.0, math.nan, math.nan, math.nan, 0)
    with pytest.raises(LearnerError, match="different times"):
        multi._join([p], [[q]])
    with pytest.raises(LearnerError, match="different times"):
        multi._join([p], [[]])


@pytest.fixture(scope="module")
def uninterrupted(ticks: list[Tick]) -> tuple[list[tuple[Any, ...]], bytes]:
    """Every horizon's predictions of an uninterrupted run, and its final snapshot."""
    whole = MultiHorizonLearner(HORIZONS, seed=1)
    expected = [_key(p) for mp in _run(whole, ticks) for _, p in mp.by_horizon()]
    return expected, whole.snapshot()


@pytest.mark.parametrize("cut", [1, 900, 2222, 4000])
def test_restore_then_the_remaining_ticks_is_bit_identical_to_an_uninterrupted_run(
    cut: int, ticks: list[Tick], uninterrupted: tuple[list[tuple[Any, ...]], bytes]
) -> None:
    assert cut < len(ticks)
    expected, final = uninterrupted
    first = MultiHorizonLearner(HORIZONS, seed=1)
    head = _run(first, ticks[:cut])
    blob = first.snapshot()
    assert blob.startswith(SNAPSHOT_MAGIC)
    if cut > 100:  # labels pending (always, for the horizons of a sample interval or more)
        assert all(learner.n_pending > 0 for learner in first.learners if learner.horizon_ms >= 100)
    resumed = MultiHorizonLearner.from_snapshot(blob)
    tail = _run(resumed, ticks[cut:])
    assert [_key(p) for mp in head + tail for _, p in mp.by_horizon()] == expected
    assert resumed.snapshot() == final

    same = MultiHorizonLearner(HORIZONS, seed=1)
    same.restore(blob)
    assert [_key(mp.primary) for mp in _run(same, ticks[cut:])] == [_key(mp.primary) for mp in tail]
    assert same.snapshot() == final


def test_a_snapshot_keeps_the_horizons_features_and_hyperparameters() -> None:
    features = StreamingFeatures((500, 2000), return_windows_ms=(250, 1000, 4000))
    multi = MultiHorizonLearner([500, 5000], sample_ms=50, hidden=(8,), features=features)
    _run(multi, _market(20, seed=2))
    clone = load_learner(multi.snapshot())
    assert isinstance(clone, MultiHorizonLearner)
    assert clone.hyperparameters() == multi.hyperparameters()
    assert clone.hyperparameters()["horizons_ms"] == [500, 5000]
    assert clone.features.names == multi.features.names
    assert clone.snapshot() == multi.snapshot()
    assert MultiHorizonLearner(**multi.hyperparameters()).hyperparameters() == (
        multi.hyperparameters()
    )
    assert all(learner.features is clone.features for learner in clone.learners), "shared"


def test_snapshots_restore_only_into_the_same_horizons_and_garbage_is_refused() -> None:
    blob = MultiHorizonLearner([1000, 10_000]).snapshot()
    with pytest.raises(LearnerError, match="horizons"):
        MultiHorizonLearner([1000, 5000]).restore(blob)
    with pytest.raises(LearnerError):
        MultiHorizonLearner([1000, 10_000], hidden=(4,)).restore(blob)
    with pytest.raises(LearnerError):
        MultiHorizonLearner.from_snapshot(OnlineLearner().snapshot())
    with pytest.raises(LearnerError):
        MultiHorizonLearner.from_snapshot(blob[:-10])
    with pytest.raises(LearnerError):
        load_learner(b"not a snapshot")


def test_one_horizon_stays_a_plain_online_learner_with_its_own_snapshots() -> None:
    single = learner_for({"horizon_ms": 2000, "sample_ms": 50})
    assert type(single) is OnlineLearner and horizons_of(single) == (2000,)
    back = load_learner(single.snapshot())
    assert type(back) is OnlineLearner and back.snapshot() == single.snapshot()
    multi = learner_for({"horizon_ms": 2000, "sample_ms": 50}, [500])
    assert isinstance(multi, MultiHorizonLearner) and horizons_of(multi) == (2000, 500)


def test_a_warm_start_starts_the_first_horizon_only() -> None:
    trained = OnlineLearner(horizon_ms=1000)
    _run(trained, _market(30, seed=8))
    multi = MultiHorizonLearner([1000, 5000])
    multi.warm_start(trained.model_state())
    assert multi.model_version == trained.model_version > 0
    assert multi.learners[1].model_version == 0


def test_counters_are_the_first_horizons_and_each_horizon_has_its_own(
    ticks: list[Tick],
) -> None:
    multi = MultiHorizonLearner([250, 3000])
    _run(multi, ticks[:4000])
    first, other = (learner.counters() for learner in multi.learners)
    assert multi.counters() == first
    assert multi.n_ticks == first["n_ticks"] == other["n_ticks"] == 4000
    assert first["n_predictions"] == other["n_predictions"]
    assert first["n_scored"] > other["n_scored"], "the longer horizon's labels mature later"


@pytest.mark.parametrize(
    ("horizons", "kwargs"),
    [
        ([], {}),
        ([1000, 1000], {}),
        ([1000, 2000], {"horizon_ms": 500}),
        ([1000], {"feed_features": True}),
    ],
)
def test_bad_horizons_are_refused(horizons: list[int], kwargs: dict[str, Any]) -> None:
    with pytest.raises(LearnerError):
        MultiHorizonLearner(horizons, **kwargs)
