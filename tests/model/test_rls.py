"""BayesLinear: the closed-form least-squares update from a prior, robust and restorable."""

from __future__ import annotations

import numpy as np
import pytest

from tickcast.model import ModelError
from tickcast.model.rls import BayesLinear


def test_without_forgetting_the_weights_are_the_batch_ridge_solution_around_the_prior() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = X @ np.array([0.3, -0.1, 0.0, 0.2]) + rng.normal(size=300)
    w0, delta = np.array([0.5, 0.0, 0.0, 0.0]), 50.0
    expert = BayesLinear(4, prior_slopes=w0, prior_samples=delta, halflife=1e12, residual_cap=1e9)
    for x, t in zip(X, y, strict=True):
        expert.learn_one(x, float(t))
    batch = np.linalg.solve(delta * np.eye(4) + X.T @ X, delta * w0 + X.T @ y)
    np.testing.assert_allclose(expert.weights, batch, rtol=1e-7, atol=1e-9)


def test_before_any_label_it_forecasts_what_the_prior_rule_says() -> None:
    expert = BayesLinear(2, prior_slopes=[0.2, 0.0])
    r, p_up = expert.predict_one(np.array([1.5, -3.0]))
    assert r == pytest.approx(0.3) and p_up > 0.5
    r, p_up = expert.predict_one(np.array([-1.0, 3.0]))
    assert r == pytest.approx(-0.2) and p_up < 0.5


def test_one_huge_residual_moves_the_weights_at_most_by_the_cap() -> None:
    capped = BayesLinear(1, prior_samples=1.0, residual_cap=3.0)
    free = BayesLinear(1, prior_samples=1.0, residual_cap=1e9)
    for expert in (capped, free):
        expert.learn_one(np.array([1.0]), 1e6)
    assert capped.weights[0] == pytest.approx(1.5)  # gain 1/2 times the capped residual 3
    assert free.weights[0] == pytest.approx(5e5)


def test_a_constant_input_does_not_wind_up_the_covariance() -> None:
    expert = BayesLinear(2, prior_samples=10.0, halflife=10.0)
    for _ in range(5000):
        expert.learn_one(np.array([1.0, 0.0]), 0.5)  # the second input never moves
    P = expert.state_dict()["P"]
    assert np.trace(P) <= (2 / 10.0) / 0.5 ** (1 / 10.0) and np.all(np.isfinite(P))  # one step over
    assert expert.weights[0] == pytest.approx(0.5, rel=1e-2)


def test_non_finite_steps_are_refused_and_counted() -> None:
    expert = BayesLinear(2)
    expert.learn_one(np.array([np.nan, 1.0]), 1.0)
    expert.learn_one(np.array([1.0, 1.0]), np.inf)
    assert expert.n_skipped == 2 and expert.n_updates == 0
    assert np.all(expert.weights == 0.0)


def test_state_round_trip_is_bit_exact_and_foreign_states_are_refused() -> None:
    rng = np.random.default_rng(1)
    a = BayesLinear(3, prior_slopes=[0.1, 0.0, 0.0])
    for _ in range(50):
        a.learn_one(rng.normal(size=3), float(rng.normal()))
    b = BayesLinear(3)
    b.load_state_dict(a.state_dict())
    x = rng.normal(size=3)
    for _ in range(20):
        t = float(rng.normal())
        a.learn_one(x, t)
        b.learn_one(x, t)
    assert a.forward_one(x).tolist() == b.forward_one(x).tolist()
    with pytest.raises(ModelError):
        BayesLinear(2).load_state_dict(a.state_dict())
    with pytest.raises(ModelError):
        BayesLinear(3, prior_samples=0.0)


def test_the_prior_is_rescaled_only_before_any_update() -> None:
    expert = BayesLinear(2, prior_slopes=[0.2, -0.1])
    expert.rescale_prior(3.0)
    assert expert.weights.tolist() == pytest.approx([0.6, -0.3])
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ModelError, match="finite and positive"):
            expert.rescale_prior(bad)
    expert.learn_one(np.array([1.0, 0.0]), 1.0)
    with pytest.raises(ModelError, match="before any update"):
        expert.rescale_prior(2.0)
    skipped = BayesLinear(1)
    skipped.learn_one(np.array([np.nan]), 1.0)
    with pytest.raises(ModelError, match="before any update"):
        skipped.rescale_prior(2.0)
