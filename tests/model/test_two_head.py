"""TwoHeadMLP: a return head and a direction head over shared layers, one backward pass."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tickcast.model import ModelError
from tickcast.model.mlp import MLP, StateError, TwoHeadMLP
from tickcast.model.optim import SGD, Adam


def relative_error(a: np.ndarray, n: np.ndarray) -> float:
    return float(np.linalg.norm(a - n) / (np.linalg.norm(a) + np.linalg.norm(n)))


def numeric_grads(model: TwoHeadMLP, X: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    h, out = 1e-6, []
    for p in model.params:
        numeric = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + h
            up = model.loss_and_grads(X, y)[0]
            p[i] = old - h
            down = model.loss_and_grads(X, y)[0]
            p[i] = old
            numeric[i] = (up - down) / (2.0 * h)
        out.append(numeric)
    return out


def stream(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.5, 1.5, size=(n, 3))
    y = np.sin(2.0 * X[:, 0]) + X[:, 1] * X[:, 2] + 0.1 * rng.standard_normal(n)
    return X, y


@pytest.mark.parametrize(("hidden", "activation"), [((5,), "tanh"), ((4, 3), "relu"), ((), "tanh")])
def test_two_head_gradients_match_finite_differences(
    hidden: tuple[int, ...], activation: str
) -> None:
    rng = np.random.default_rng(12)
    model = TwoHeadMLP(3, hidden, activation=activation, huber_delta=0.8, direction_weight=0.7)
    X = rng.normal(size=(7, 3))
    y = np.array([1.5, -0.2, 0.0, 0.3, -2.5, 0.0, 0.05])  # both signs, no-moves, both Huber regimes
    _, grads = model.loss_and_grads(X, y)
    for g, n in zip(grads, numeric_grads(model, X, y), strict=True):
        assert relative_error(g, n) < 1e-6


def test_the_loss_is_huber_plus_the_weighted_cross_entropy_by_hand() -> None:
    model = TwoHeadMLP(2, (3,), huber_delta=1.0, direction_weight=0.5)
    X = np.array([[0.2, -0.4], [1.0, 0.5]])
    W0, b0, W1, b1 = model.params
    out = np.tanh(X @ W0 + b0) @ W1 + b1
    r, z = out[:, 0], out[:, 1]
    y = np.array([-3.0, 0.0])
    # sample 0: |r - y| > 1 almost surely -> linear Huber; label 0. sample 1: no move, no BCE
    huber = [abs(r[0] - y[0]) - 0.5, 0.5 * (r[1] - y[1]) ** 2]
    assert abs(r[0] - y[0]) > 1.0 and abs(r[1]) < 1.0
    bce0 = math.log1p(math.exp(z[0]))  # -log(1 - sigmoid(z)) for the label 0
    expected = (huber[0] + huber[1] + 0.5 * bce0) / 2
    assert model.loss_and_grads(X, y)[0] == pytest.approx(expected, rel=1e-12)


def test_a_zero_target_gives_the_direction_head_no_gradient() -> None:
    model = TwoHeadMLP(3, (4,), direction_weight=2.0)
    huber_only = TwoHeadMLP(3, (4,), direction_weight=0.0)
    X = np.random.default_rng(1).normal(size=(5, 3))
    y = np.zeros(5)
    _, grads = model.loss_and_grads(X, y)
    dW_out, db_out = grads[-2], grads[-1]
    np.testing.assert_array_equal(dW_out[:, 1], 0.0)
    assert db_out[1] == 0.0
    assert np.abs(dW_out[:, 0]).sum() > 0.0
    # the shared layers see the return head only, exactly as with direction_weight = 0
    for g, h in zip(grads, huber_only.loss_and_grads(X, y)[1], strict=True):
        np.testing.assert_array_equal(g, h)
    # and one learn_one on y == 0 leaves the direction column as it was
    w_dir = model.params[-2][:, 1].copy()
    model.learn_one(X[0], 0.0)
    np.testing.assert_array_equal(model.params[-2][:, 1], w_dir)


def test_both_heads_reach_the_shared_layers_in_one_backward_pass() -> None:
    X = np.array([[0.5, -0.5, 1.0]])
    y = np.array([0.4])
    both = TwoHeadMLP(3, (4,), direction_weight=1.0).loss_and_grads(X, y)[1][0]
    ret_only = TwoHeadMLP(3, (4,), direction_weight=0.0).loss_and_grads(X, y)[1][0]
    assert not np.allclose(both, ret_only)


def test_learn_one_is_one_step_on_that_samples_two_head_loss() -> None:
    model = TwoHeadMLP(3, (5,), optimizer=SGD(lr=0.1))
    twin = TwoHeadMLP(3, (5,), optimizer=SGD(lr=0.1))
    for x, y in [(np.array([0.3, -0.7, 1.1]), -0.4), (np.array([1.0, 0.2, -0.1]), 0.0)]:
        _, grads = twin.loss_and_grads(x[None, :], [y])
        expected = [p - 0.1 * g for p, g in zip(twin.params, grads, strict=True)]
        model.learn_one(x, y)
        twin.learn_many(x[None, :], [y])
        for p, e, q in zip(model.params, expected, twin.params, strict=True):
            np.testing.assert_allclose(p, e, rtol=1e-13, atol=1e-15)
            np.testing.assert_allclose(p, q, rtol=1e-13, atol=1e-15)


def test_predict_one_returns_the_return_and_a_probability_matching_predict_many() -> None:
    model = TwoHeadMLP(4, (6,))
    X = np.random.default_rng(5).normal(size=(9, 4))
    ret, p_up = model.predict_many(X)
    assert ret.shape == p_up.shape == (9,)
    for i, x in enumerate(X):
        r, p = model.predict_one(x)
        assert isinstance(r, float) and isinstance(p, float) and 0.0 < p < 1.0
        assert r == pytest.approx(ret[i], rel=1e-13) and p == pytest.approx(p_up[i], rel=1e-13)


def test_both_heads_learn_a_nonlinear_target_online() -> None:
    # Measured: return MSE 0.036 (noise floor 0.01, var(y) 1.07), direction hit rate 0.94 over
    # the last 5,000 of 20,000 samples.
    X, y = stream(20_000, seed=42)
    model = TwoHeadMLP(3, optimizer=Adam(lr=3e-3, clip_norm=1.0))
    ret, p_up = np.empty(len(y)), np.empty(len(y))
    for i, (x, target) in enumerate(zip(X, y, strict=True)):
        ret[i], p_up[i] = model.predict_one(x)
        model.learn_one(x, target)
    assert np.mean((ret[-5000:] - y[-5000:]) ** 2) < 0.08
    assert np.mean((p_up[-5000:] > 0.5) == (y[-5000:] > 0.0)) > 0.88


def test_a_state_round_trip_gives_bit_identical_later_predictions() -> None:
    X, y = stream(300, seed=3)
    model = TwoHeadMLP(3, (6,), huber_delta=0.5, direction_weight=0.3, seed=5)
    for x, target in zip(X[:150], y[:150], strict=True):
        model.learn_one(x, target)
    clone = TwoHeadMLP.from_bytes(model.to_bytes())
    assert clone.n_updates == model.n_updates == 150
    assert (clone.huber_delta, clone.direction_weight) == (0.5, 0.3)
    for x, target in zip(X[150:], y[150:], strict=True):
        assert clone.predict_one(x) == model.predict_one(x)
        model.learn_one(x, target)
        clone.learn_one(x, target)
    with pytest.raises(StateError):
        MLP.from_bytes(model.to_bytes())


def test_the_same_seed_gives_the_same_two_head_model() -> None:
    X, y = stream(200, seed=4)
    a, b = TwoHeadMLP(3, (5,), seed=8), TwoHeadMLP(3, (5,), seed=8)
    a.learn_many(X, y)
    b.learn_many(X, y)
    for x, target in zip(X, y, strict=True):
        a.learn_one(x, target)
        b.learn_one(x, target)
    for p, q in zip(a.params, b.params, strict=True):
        np.testing.assert_array_equal(p, q)


def test_a_nan_target_is_skipped_by_the_guard() -> None:
    model = TwoHeadMLP(3, (4,))
    before = [p.copy() for p in model.params]
    model.learn_one(np.ones(3), math.nan)
    model.learn_many(np.ones((2, 3)), [1.0, math.nan])
    assert (model.n_updates, model.n_skipped) == (0, 2)
    for p, q in zip(model.params, before, strict=True):
        np.testing.assert_array_equal(p, q)


def test_a_negative_direction_weight_is_refused() -> None:
    with pytest.raises(ModelError):
        TwoHeadMLP(3, direction_weight=-1.0)
