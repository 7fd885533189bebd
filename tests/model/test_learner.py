"""OnlineLearner: the sample clock, labels, gaps, determinism and exact snapshot/restore."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tickcast.model.learner import (
    LearnerError,
    OnlineLearner,
    Prediction,
    Scored,
    pack_state,
    unpack_state,
)
from tickcast.service.ticks import Tick, quote, trade

START = 1_700_000_000_000


def _market(seconds: float, seed: int, *, signal: float = 0.0) -> list[Tick]:
    """Quotes and trades of a random-walk mid on a 0.5 grid; ``signal`` plants an effect.

    With ``signal > 0`` the mid's moves lean towards the heavy side of the book.
    """
    rng = np.random.default_rng(seed)
    ticks: list[Tick] = []
    t = float(START)
    mid2 = 200_000  # mid in half ticks of 0.5
    imbalance = 0.0
    end = START + seconds * 1000.0
    while t < end:
        t += rng.exponential(60.0)
        ms = int(t)
        if rng.random() < 0.3:
            side = 1 if rng.random() < 0.5 else -1
            price = (mid2 + side) * 0.25
            ticks.append(trade("sim", "X/USDT:USDT", ms, ms * 1_000_000, price, 0.1, side))
            continue
        p_up = 0.5 + 0.5 * signal * imbalance
        if rng.random() < 0.5:
            mid2 += 2 if rng.random() < p_up else -2
        if rng.random() < 0.2:  # the book's lean persists for a few quotes
            imbalance = float(np.tanh(rng.normal()))
        depth = 10.0
        bid_size = round(depth * (1 + imbalance) / 2 + 0.1, 3)
        ask_size = round(depth * (1 - imbalance) / 2 + 0.1, 3)
        bid, ask = (mid2 - 1) * 0.25, (mid2 + 1) * 0.25
        ticks.append(quote("sim", "X/USDT:USDT", ms, ms * 1_000_000, bid, bid_size, ask, ask_size))
    return ticks


def _run(learner: OnlineLearner, ticks: list[Tick]) -> list[Prediction]:
    out: list[Prediction] = []
    for tick in ticks:
        out += learner.update(tick)
    return out


def _q(ms: int, bid: float, ask: float, bid_size: float = 1.0, ask_size: float = 1.0) -> Tick:
    return quote("sim", "X", ms, ms * 1_000_000, bid, bid_size, ask, ask_size)


def test_samples_fall_on_the_grid_and_exclude_the_tick_at_the_boundary() -> None:
    learner = OnlineLearner(horizon_ms=300, sample_ms=100)
    preds = _run(learner, [_q(1050, 99.0, 101.0), _q(1100, 109.0, 111.0), _q(1250, 119.0, 121.0)])
    assert [p.t_ms for p in preds] == [1100, 1200]
    # The quote stamped 1100 belongs to the interval after the sample at 1100.
    assert preds[0].ref_price == 100.0
    assert preds[1].ref_price == 110.0


def test_each_label_is_the_log_return_of_the_mid_over_the_horizon() -> None:
    learner = OnlineLearner(horizon_ms=300, sample_ms=100)
    scored: list[Scored] = []
    learner.on_score = scored.append
    mids = {1000: 100.0, 1120: 101.0, 1310: 99.5, 1390: 102.0, 1560: 103.0, 1900: 104.0}
    _run(learner, [_q(ms, m - 0.5, m + 0.5) for ms, m in mids.items()])
    learner.flush()  # the labels read at the last tick's time are scored by flush()

    def mid_before(t: int) -> float:
        return [m for ms, m in mids.items() if ms < t][-1]

    assert [s.t_ms for s in scored] == [1100, 1200, 1300, 1400, 1500, 1600]
    for s in scored:
        expected = math.log(mid_before(s.t_ms + 300) / mid_before(s.t_ms)) * 1e4
        assert s.label_bps == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_a_horizon_off_the_grid_is_labelled_at_its_exact_time() -> None:
    learner = OnlineLearner(horizon_ms=250, sample_ms=100)
    scored: list[Scored] = []
    learner.on_score = scored.append
    _run(learner, [_q(1000, 99.5, 100.5), _q(1340, 100.5, 101.5), _q(1360, 101.5, 102.5)])
    _run(learner, [_q(1400, 101.5, 102.5)])
    learner.flush()
    # Sample at 1100 is labelled at 1350: the mid then is 101 (the quote at 1360 is later).
    first = scored[0]
    assert first.t_ms == 1100
    assert first.label_bps == pytest.approx(math.log(101.0 / 100.0) * 1e4)


def test_the_pending_queue_never_exceeds_horizon_over_sample_plus_one() -> None:
    learner = OnlineLearner(horizon_ms=1000, sample_ms=100)
    assert learner.max_pending == 11
    worst = 0
    for tick in _market(60, seed=3):
        learner.update(tick)
        worst = max(worst, learner.n_pending)
    assert 10 <= worst <= learner.max_pending


def test_nothing_is_predicted_before_a_price_is_known() -> None:
    learner = OnlineLearner()
    assert learner.update(_q(1000, 99.0, 101.0)) == []
    preds = learner.update(_q(1500, 99.0, 101.0))
    assert [p.t_ms for p in preds] == [1100, 1200, 1300, 1400, 1500]
    assert all(p.model_version == 0 for p in preds)


def test_a_long_gap_skips_samples_and_drops_labels_that_would_straddle_it() -> None:
    learner = OnlineLearner(horizon_ms=1000, sample_ms=100, max_gap_ms=2000)
    scored: list[Scored] = []
    learner.on_score = scored.append
    preds = _run(learner, [_q(1000 + 50 * i, 99.5, 100.5) for i in range(40)])  # to 2950
    assert preds[-1].t_ms == 2900
    preds = learner.update(_q(60_000, 109.5, 110.5))
    # Events up to 2950 + 2000 ms are processed; nothing after that is sampled.
    assert [p.t_ms for p in preds] == list(range(3000, 4901, 100))
    counters = learner.counters()
    assert counters["n_gaps"] == 1
    assert counters["n_gap_dropped"] == 10  # samples 4000..4900 would be labelled in the gap
    assert counters["n_gap_skipped"] == (60_000 - 5000) // 100 + 1
    assert max(s.t_ms for s in scored) == 3900
    assert all(s.label_bps == 0.0 for s in scored)  # no label spans the jump to 110
    preds = learner.update(_q(60_250, 109.5, 110.5))
    assert [p.t_ms for p in preds] == [60_100, 60_200]


def test_predictions_carry_the_rolling_metrics_of_their_time() -> None:
    learner = OnlineLearner(rolling_window=500)
    preds = _run(learner, _market(120, seed=5, signal=0.8))
    last = preds[-1]
    deferred = learner.n_deferred  # labels of the last sample's time, learned after it
    rolling = learner.metrics.rolling()
    assert last.n_scored == rolling.n_scored
    assert 0.0 <= last.hit_rate <= 1.0 and -1.0 <= last.ic <= 1.0
    assert rolling.n_scored == 500
    assert last.model_version + deferred == learner.model_version
    assert 0.0 < last.p_up < 1.0
    assert math.isfinite(last.linear_bps)


def test_a_planted_book_imbalance_effect_is_learned() -> None:
    learner = OnlineLearner()
    _run(learner, _market(900, seed=7, signal=0.9))
    summary = learner.metrics.cumulative()
    assert summary.n_scored > 8000
    assert summary.hit_rate > 0.6
    assert summary.ic > 0.2
    assert summary.skill_vs_zero > 0.0


def test_the_same_ticks_give_bit_identical_predictions_and_weights() -> None:
    ticks = _market(120, seed=11, signal=0.5)
    a, b = OnlineLearner(seed=3), OnlineLearner(seed=3)
    pa, pb = _run(a, ticks), _run(b, ticks)
    assert pa == pb
    assert a.snapshot() == b.snapshot()
    c = OnlineLearner(seed=4)
    assert _run(c, ticks) != pa


def test_a_sample_is_predicted_before_the_label_of_its_own_time_is_learned() -> None:
    learner = OnlineLearner(horizon_ms=300, sample_ms=100)
    _run(learner, [_q(1000 + 50 * i, 99.5 + i, 100.5 + i) for i in range(8)])  # to 1350
    assert learner.forecaster.n_updates == 0 and learner.n_deferred == 0
    (at_1400,) = learner.update(_q(1420, 120.0, 121.0))
    # The label of the 1100 sample matures at 1400 too: it is read, not yet learned.
    assert at_1400.t_ms == 1400 and at_1400.model_version == 0
    assert learner.n_deferred == 1 and learner.forecaster.n_updates == 0
    learner.flush()
    assert learner.n_deferred == 0 and learner.forecaster.n_updates == 1
    learner.flush()  # idempotent
    assert learner.forecaster.n_updates == 1 and learner.n_scored == 1
    (at_1500,) = learner.update(_q(1510, 120.0, 121.0))
    assert at_1500.model_version == 1 and learner.n_deferred == 1


def test_calling_flush_after_every_update_changes_nothing() -> None:
    ticks = _market(150, seed=17, signal=0.6)
    lazy, eager = OnlineLearner(seed=2), OnlineLearner(seed=2)
    lazy_scored: list[Scored] = []
    eager_scored: list[Scored] = []
    lazy.on_score, eager.on_score = lazy_scored.append, eager_scored.append
    lazy_preds: list[Prediction] = []
    eager_preds: list[Prediction] = []
    for i, tick in enumerate(ticks):
        lazy_preds += lazy.update(tick)
        eager_preds += eager.update(tick)
        eager.flush()
        if i % 1000 == 999:
            assert lazy.snapshot() == eager.snapshot()
    assert lazy_preds == eager_preds and len(lazy_preds) > 1000
    assert lazy.snapshot() == eager.snapshot()
    assert lazy_scored == eager_scored
    assert lazy.counters() == eager.counters()


@pytest.mark.parametrize("cut", [1, 777, 1500, 2999])
def test_restore_then_the_remaining_ticks_is_bit_identical_to_an_uninterrupted_run(
    cut: int,
) -> None:
    ticks = _market(200, seed=13, signal=0.6)
    assert cut < len(ticks)
    whole = OnlineLearner(seed=1)
    expected = _run(whole, ticks)

    first = OnlineLearner(seed=1)
    head = _run(first, ticks[:cut])
    blob = first.snapshot()
    if cut > 100:
        assert first.n_pending > 0  # the cut falls with labels still pending
    resumed = OnlineLearner.from_snapshot(blob)
    tail = _run(resumed, ticks[cut:])
    assert head + tail == expected
    assert resumed.snapshot() == whole.snapshot()

    same = OnlineLearner(seed=1)
    same.restore(blob)
    assert _run(same, ticks[cut:]) == tail


def test_a_snapshot_keeps_the_hyperparameters() -> None:
    learner = OnlineLearner(horizon_ms=500, sample_ms=50, hidden=(8, 4), lr=2e-3, seed=9)
    clone = OnlineLearner.from_snapshot(learner.snapshot())
    assert clone.hyperparameters() == learner.hyperparameters()
    assert clone.max_pending == 11


def test_restoring_into_another_configuration_or_garbage_fails() -> None:
    blob = OnlineLearner(hidden=(8,)).snapshot()
    with pytest.raises(LearnerError):
        OnlineLearner(hidden=(16,)).restore(blob)
    with pytest.raises(LearnerError):
        OnlineLearner.from_snapshot(b"not a snapshot")
    with pytest.raises(LearnerError):
        OnlineLearner.from_snapshot(blob[:-10])


def test_packed_state_round_trips_arrays_and_scalars_exactly() -> None:
    tree = {
        "f": [0.1, math.pi, -0.0, math.nan],
        "a": np.array([[1.5, 2.5]]),
        "e": np.zeros((0, 3)),
        "i": np.arange(3, dtype=np.int64),
        "s": np.array("text"),
    }
    back = unpack_state(pack_state(tree))
    assert back["f"][:3] == [0.1, math.pi, -0.0] and math.isnan(back["f"][3])
    assert back["a"].tobytes() == tree["a"].tobytes() and back["a"].shape == (1, 2)
    assert back["e"].shape == (0, 3)
    assert back["i"].dtype == np.dtype(np.int64) and str(back["s"]) == "text"


def test_bad_hyperparameters_are_rejected() -> None:
    with pytest.raises(LearnerError):
        OnlineLearner(sample_ms=0)
    with pytest.raises(LearnerError):
        OnlineLearner(horizon_ms=1000, sample_ms=100, max_gap_ms=50)


def test_a_fresh_learner_forecasts_with_the_book_imbalance_before_any_label() -> None:
    learner = OnlineLearner(horizon_ms=1000, sample_ms=100)
    ticks = [_q(1000 + 10 * i, 99.5, 100.5, bid_size=3.0) for i in range(5)]
    bid_heavy = _run(learner, [*ticks, _q(1205, 99.5, 100.5, bid_size=3.0)])
    assert bid_heavy and all(p.ret_bps > 0 and p.p_up > 0.5 for p in bid_heavy)
    other = OnlineLearner(horizon_ms=1000, sample_ms=100)
    ticks = [_q(1000 + 10 * i, 99.5, 100.5, ask_size=3.0) for i in range(5)]
    ask_heavy = _run(other, [*ticks, _q(1205, 99.5, 100.5, ask_size=3.0)])
    assert ask_heavy and all(p.ret_bps < 0 and p.p_up < 0.5 for p in ask_heavy)


def test_the_linear_experts_prior_is_worth_prior_labels_independent_labels() -> None:
    short = OnlineLearner(horizon_ms=1000, sample_ms=100, prior_labels=50.0)
    long = OnlineLearner(horizon_ms=10_000, sample_ms=100, prior_labels=50.0)
    assert short.forecaster.linear_expert.prior_samples == 50.0 * 10
    assert long.forecaster.linear_expert.prior_samples == 50.0 * 100
    with pytest.raises(LearnerError, match="prior"):
        OnlineLearner(prior_input="no_such_feature")


def test_the_networks_step_is_per_label_so_each_of_k_overlapping_samples_takes_a_kth() -> None:
    short = OnlineLearner(horizon_ms=1000, sample_ms=100, lr=2e-3)
    long = OnlineLearner(horizon_ms=10_000, sample_ms=100, lr=2e-3)
    fine = OnlineLearner(horizon_ms=1000, sample_ms=50, lr=2e-3)
    assert short.forecaster.network.optimizer.lr == pytest.approx(2e-4)
    assert long.forecaster.network.optimizer.lr == pytest.approx(2e-5)
    assert fine.forecaster.network.optimizer.lr == pytest.approx(1e-4)
    assert long.hyperparameters()["lr"] == 2e-3  # the setting, as given
