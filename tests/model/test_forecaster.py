"""The learner's parts: Hedge mix, forecaster standardisation, input choice, sample clock."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tickcast.model import ModelError
from tickcast.model.ensemble import HedgeMix
from tickcast.model.forecaster import Forecaster
from tickcast.model.learner import DEFAULT_INPUTS, LearnerError, OnlineLearner
from tickcast.model.mlp import TwoHeadMLP
from tickcast.model.optim import SGD

MODEL = {
    "hidden": (8,),
    "lr": 1e-3,
    "fast_lr": 1e-2,
    "activation": "tanh",
    "seed": 0,
    "clip": 5.0,
    "scale_halflife": 100.0,
    "huber_delta": 1.0,
    "direction_weight": 1.0,
    "clip_norm": 1.0,
    "hedge_eta": 0.2,
    "hedge_halflife": 500.0,
    "linear_prior": 4.0,
}


def _experts(n: int) -> list[TwoHeadMLP]:
    return [TwoHeadMLP(2, (), optimizer=SGD(lr=0.01), seed=s) for s in range(n)]


def test_hedge_starts_at_the_prior_and_moves_to_the_expert_with_lower_errors() -> None:
    mix = HedgeMix(_experts(2), eta=0.2, halflife=1000.0, prior=[1.0, 4.0])
    assert mix.weights() == pytest.approx([0.2, 0.8])
    rng = np.random.default_rng(0)
    for _ in range(300):
        y = float(rng.normal())
        mix.observe([y + 0.3 * float(rng.normal()), y + 1.0 * float(rng.normal())], y)
    w = mix.weights()
    assert w[0] > 0.99 and w.sum() == pytest.approx(1.0)


def test_one_huge_error_cannot_decide_the_mix() -> None:
    mix = HedgeMix(_experts(2), eta=0.2, halflife=1000.0, loss_cap=25.0)
    mix.observe([1e6, 0.0], 0.0)
    assert mix.weights()[0] == pytest.approx(1.0 / (1.0 + np.exp(0.2 * 25.0)))


def test_the_mix_state_round_trips_and_bad_settings_are_refused() -> None:
    mix = HedgeMix(_experts(3), eta=0.1, halflife=50.0)
    mix.observe([0.5, -1.0, 2.0], 0.2)
    other = HedgeMix(_experts(3), eta=0.1, halflife=50.0)
    other.load_state_dict(mix.state_dict())
    assert other.weights().tolist() == mix.weights().tolist()
    with pytest.raises(ModelError):
        HedgeMix(_experts(2), eta=0.1, halflife=50.0).load_state_dict(mix.state_dict())
    with pytest.raises(ModelError):
        HedgeMix(_experts(2), eta=0.1, halflife=50.0, prior=[1.0, 0.0])
    with pytest.raises(ModelError):
        HedgeMix([], eta=0.1, halflife=50.0)


def test_an_uncentred_input_keeps_its_zero_and_a_centred_one_loses_its_mean() -> None:
    f = Forecaster(2, **MODEL, centre=[False, True])
    rng = np.random.default_rng(1)
    for _ in range(2000):
        f.standardise(np.array([0.5 + 0.1 * rng.normal(), 0.5 + 0.1 * rng.normal()]))
    x = f.standardise(np.array([0.0, 0.5]))
    # uncentred: 0 stays 0; centred: the mean maps to ~0
    assert x[0] == 0.0
    assert abs(x[1]) < 0.3
    x = f.standardise(np.array([0.5, 0.0]))
    rms = np.sqrt(0.5**2 + 0.1**2)
    assert x[0] == pytest.approx(0.5 / rms, rel=0.1)
    assert -5.0 < x[1] < -3.0  # the mean is 0.5 and the standard deviation 0.1


def test_a_ratio_bounded_by_construction_is_not_clipped_and_others_are() -> None:
    f = Forecaster(2, **MODEL, centre=[False, False], bounded=[True, False])
    rng = np.random.default_rng(4)
    for _ in range(2000):  # a mostly balanced book: RMS about 0.05
        f.standardise(0.05 * rng.normal(size=2))
    x = f.standardise(np.array([1.0, 1.0]))  # a lopsided book, 20 RMS out
    assert x[1] == MODEL["clip"] and 10.0 < x[0] < 25.0
    alpha = 1.0 - 0.5 ** (1.0 / MODEL["scale_halflife"])
    assert f.standardise(np.array([np.nan, 0.0]))[0] == 0.0
    guarded = f.standardise(np.array([1e9, np.nan]))  # moments not learnt: the guard binds
    assert guarded[0] == pytest.approx(1.0 / math.sqrt(alpha * (1 - alpha))) and guarded[1] == 0.0
    with pytest.raises(ModelError, match="bounded needs 2 flags"):
        Forecaster(2, **MODEL, bounded=[True])


def test_a_forecast_starts_at_zero_and_learns_a_planted_linear_relation() -> None:
    f = Forecaster(3, **MODEL)
    rng = np.random.default_rng(2)
    first = f.predict(f.standardise(rng.normal(size=3)))
    assert first.ret_bps == 0.0 and first.linear_bps == 0.0 and first.p_up == 0.5
    hits = 0
    for i in range(4000):
        x = f.standardise(rng.normal(size=3))
        out = f.predict(x)
        y = 2.0 * x[0] + rng.normal()
        hits += i >= 3000 and np.sign(out.ret_bps) == np.sign(y)
        f.learn(x, y, out.experts)
    assert hits / 1000 > 0.75
    assert f.n_updates == 4000 and f.n_skipped == 0


def test_the_return_is_the_linear_expert_plus_a_learned_share_of_the_networks_departure() -> None:
    f = Forecaster(3, **MODEL)
    rng = np.random.default_rng(3)
    for _ in range(3000):
        x = f.standardise(rng.normal(size=3))
        out = f.predict(x)
        net, lin = out.experts.tolist()
        share = f.stack.weights.item(0)
        assert out.ret_bps == pytest.approx(lin + share * (net - lin), rel=1e-12, abs=1e-12)
        f.learn(x, np.tanh(2.0 * x[0]) * 3.0 + 0.3 * rng.normal(), out.experts)
    assert f.stack.weights.shape == (1,)  # one share: the weights sum to one
    assert 0.5 < f.stack.weights.item(0) < 1.5  # a nonlinear relation: the network earns it
    noise = Forecaster(3, **MODEL)
    for _ in range(3000):
        x = noise.standardise(rng.normal(size=3))
        noise.learn(x, float(rng.normal()), noise.predict(x).experts)
    assert abs(noise.stack.weights.item(0)) < 0.1  # nothing to add: it stays near the prior 0


def test_the_learner_reads_only_its_chosen_inputs() -> None:
    learner = OnlineLearner()
    assert all(n.startswith(DEFAULT_INPUTS) for n in learner.input_names)
    assert "rsi" in learner.feature_names and "rsi" not in learner.input_names
    every = OnlineLearner(inputs=None)
    assert every.input_names == every.feature_names
    clone = OnlineLearner.from_snapshot(every.snapshot())
    assert clone.input_names == every.feature_names
    with pytest.raises(LearnerError):
        OnlineLearner(inputs=("no_such_feature",))


def test_the_target_unit_is_the_warm_ups_mean_then_drifts_slowly() -> None:
    f = Forecaster(2, **MODEL)
    x = np.zeros(2)
    experts = np.zeros(2)
    for i in range(100):  # the warm-up: mean |y| = 1.5
        f.learn(x, 1.0 if i % 2 else -2.0, experts)
    assert f.target_scale() == pytest.approx(1.5 * math.sqrt(math.pi / 2.0))
    assert f.n_updates == 100 and f.linear_expert.n_updates == 0  # only the scales learned
    for _ in range(1000):  # a regime four times as volatile moves the unit by ~1%
        f.learn(x, 6.0, experts)
    assert 1.5 < f.target_scale() / math.sqrt(math.pi / 2.0) < 1.5 * 1.05
    assert f.linear_expert.n_updates == 1000


def test_the_warm_ups_unit_leans_on_one_bps_until_its_labels_outweigh_it() -> None:
    f = Forecaster(2, **MODEL)
    x, experts = np.zeros(2), np.zeros(2)
    for _ in range(5):  # five labels of 0.02 bps: alone they would make a unit of 0.025
        f.learn(x, 0.02, experts)
    robust = 0.02 * math.sqrt(math.pi / 2.0)
    assert f.target_scale() == pytest.approx((5 * robust + 10.0) / 15.0)
    for _ in range(95):
        f.learn(x, 0.02, experts)
    assert f.target_scale() == pytest.approx(robust)  # the warm-up is over: its labels alone


def test_the_prior_slope_is_a_correlation_turned_into_target_units_at_the_first_step() -> None:
    slopes = [0.2, 0.0]
    f = Forecaster(2, **MODEL, prior_slopes=slopes)
    x, experts = np.zeros(2), np.zeros(2)
    labels = [0.0, 0.0, 0.0, 3.0] * 25  # a market that mostly does not move: RMS 1.5 > unit
    for y in labels:
        f.learn(x, y, experts)
    assert f.linear_expert.weights.tolist() == slopes  # the warm-up learns nothing
    f.learn(x, 0.0, experts)  # x = 0: the step itself leaves the weights where the prior is
    rms = math.sqrt(float(np.mean(np.square([*labels, 0.0]))))  # the step's label counts
    unit = 0.75 * math.sqrt(math.pi / 2.0)  # the warm-up's (0 moves the slow mean by 1e-5)
    assert f.linear_expert.weights[0] == pytest.approx(0.2 * rms / unit, rel=1e-4)
    warm = Forecaster(2, **MODEL, prior_slopes=slopes)
    warm.load_state_dict(f.state_dict())
    warm.forget_scales()  # a trained model started on another symbol keeps its slopes
    before = warm.linear_expert.weights
    for y in [*labels, 0.0]:
        warm.learn(x, y, experts)
    assert warm.linear_expert.weights.tolist() == pytest.approx(before.tolist())


def test_the_prior_conversion_is_bounded_when_a_warm_up_saw_one_move() -> None:
    f = Forecaster(2, **MODEL, prior_slopes=[0.2, 0.0])
    x, experts = np.zeros(2), np.zeros(2)
    for y in [0.0] * 99 + [5.0, 0.0]:  # RMS / unit = 10 / sqrt(pi / 2): capped at 3
        f.learn(x, y, experts)
    assert f.linear_expert.weights[0] == pytest.approx(0.2 * 3.0)


def test_a_warm_up_of_zero_labels_lasts_until_the_first_move() -> None:
    f = Forecaster(2, **MODEL)
    x, experts = np.zeros(2), np.zeros(2)
    for _ in range(300):
        f.learn(x, 0.0, experts)
    assert f.target_scale() == 1.0 and f.linear_expert.n_updates == 0
    f.learn(x, 0.6, experts)  # still the warm-up's mean: 0.6 / 301
    assert f.target_scale() == pytest.approx(0.6 / 301 * math.sqrt(math.pi / 2.0))
    f.learn(x, 0.6, experts)
    assert f.linear_expert.n_updates == 1
