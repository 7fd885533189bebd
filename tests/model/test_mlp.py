"""MLP: whole-network gradient checks, per-sample semantics, state, seeds, the guard, learning."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from tickcast.model import ModelError
from tickcast.model.losses import Huber
from tickcast.model.mlp import MLP, ShapeError, StateError, TwoHeadMLP
from tickcast.model.optim import SGD, Adam


def relative_error(a: np.ndarray, n: np.ndarray) -> float:
    return float(np.linalg.norm(a - n) / (np.linalg.norm(a) + np.linalg.norm(n)))


def check_network_gradients(model: MLP | TwoHeadMLP, X: np.ndarray, y: np.ndarray) -> None:
    """Central differences of ``loss_and_grads`` over every parameter, relative error < 1e-6."""
    _, grads = model.loss_and_grads(X, y)
    assert len(grads) == len(model.params)
    h = 1e-6
    for p, g in zip(model.params, grads, strict=True):
        assert g.shape == p.shape
        numeric = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + h
            up = model.loss_and_grads(X, y)[0]
            p[i] = old - h
            down = model.loss_and_grads(X, y)[0]
            p[i] = old
            numeric[i] = (up - down) / (2.0 * h)
        assert relative_error(g, numeric) < 1e-6


def nonlinear_stream(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``y = sin(2 x0) + x1 x2 + N(0, 0.1^2)``, ``x ~ U(-1.5, 1.5)^3`` (noise floor MSE 0.01)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.5, 1.5, size=(n, 3))
    y = np.sin(2.0 * X[:, 0]) + X[:, 1] * X[:, 2] + 0.1 * rng.standard_normal(n)
    return X, y


def prequential_mse(model: MLP, X: np.ndarray, y: np.ndarray, last: int) -> float:
    """Predict each sample before learning it; MSE over the ``last`` samples."""
    preds = np.empty(len(y))
    for i, (x, target) in enumerate(zip(X, y, strict=True)):
        preds[i] = model.predict_one(x)
        model.learn_one(x, target)
    return float(np.mean((preds[-last:] - y[-last:]) ** 2))


@pytest.mark.parametrize(
    ("hidden", "activation", "loss"),
    [
        ((5,), "tanh", "huber"),
        ((4, 3), "tanh", "squared"),
        ((5,), "relu", "squared"),
        ((), "tanh", "huber"),
        ((4,), "tanh", "logistic"),
    ],
)
def test_network_gradients_match_finite_differences(
    hidden: tuple[int, ...], activation: str, loss: str
) -> None:
    rng = np.random.default_rng(11)
    model = MLP(3, hidden, activation=activation, loss=loss, seed=4)
    X = rng.normal(size=(6, 3))
    y = (rng.random(6) < 0.5).astype(float) if loss == "logistic" else 2.0 * rng.normal(size=6)
    check_network_gradients(model, X, y)


def test_params_are_the_layers_weights_in_a_fixed_order() -> None:
    model = MLP(4, (6, 5))
    assert [p.shape for p in model.params] == [(4, 6), (6,), (6, 5), (5,), (5, 1), (1,)]
    x = np.linspace(-1.0, 1.0, 4)
    W0, b0, W1, b1, W2, b2 = model.params
    by_hand = np.tanh(np.tanh(x @ W0 + b0) @ W1 + b1) @ W2 + b2
    assert model.predict_one(x) == pytest.approx(float(by_hand[0]), rel=1e-13)


def test_an_empty_hidden_tuple_is_the_linear_model() -> None:
    model = MLP(3, hidden=(), optimizer=SGD(lr=0.05))
    W, b = model.params
    x = np.array([1.0, -2.0, 0.5])
    assert model.predict_one(x) == pytest.approx(float(x @ W[:, 0] + b[0]), rel=1e-14)
    rng = np.random.default_rng(0)
    for _ in range(3000):
        x = rng.normal(size=3)
        model.learn_one(x, 0.5 * x[0] - x[1] + 0.25)
    np.testing.assert_allclose(W[:, 0], [0.5, -1.0, 0.0], atol=1e-3)
    assert b[0] == pytest.approx(0.25, abs=1e-3)


def test_learn_one_is_one_optimizer_step_on_that_sample() -> None:
    model, twin = MLP(3, (5,), optimizer=SGD(lr=0.1)), MLP(3, (5,), optimizer=SGD(lr=0.1))
    x, y = np.array([0.3, -0.7, 1.1]), 0.4
    _, grads = twin.loss_and_grads(x[None, :], [y])
    expected = [p - 0.1 * g for p, g in zip(twin.params, grads, strict=True)]
    model.learn_one(x, y)
    for p, e in zip(model.params, expected, strict=True):
        np.testing.assert_allclose(p, e, rtol=1e-13, atol=1e-15)
    twin.learn_many(x[None, :], [y])
    for p, q in zip(model.params, twin.params, strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-13, atol=1e-15)
    assert model.n_updates == twin.n_updates == 1


def test_learn_many_takes_one_step_on_the_batch_mean() -> None:
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(8, 3)), rng.normal(size=8)
    model, twin = MLP(3, (4,), optimizer=SGD(lr=0.2)), MLP(3, (4,), optimizer=SGD(lr=0.2))
    _, grads = twin.loss_and_grads(X, y)
    model.learn_many(X, y)
    assert model.n_updates == 1
    for p, q, g in zip(model.params, twin.params, grads, strict=True):
        np.testing.assert_allclose(p, q - 0.2 * g, rtol=1e-13, atol=1e-15)


def test_predict_many_matches_predict_one_row_by_row() -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(10, 4))
    for model in (MLP(4, (7,)), MLP(4, (7,), activation="relu"), MLP(4, loss="logistic")):
        many = model.predict_many(X)
        assert many.shape == (10,)
        np.testing.assert_allclose(many, [model.predict_one(x) for x in X], rtol=1e-13)


def test_the_same_seed_gives_the_same_results_and_another_seed_does_not() -> None:
    X, y = nonlinear_stream(300, seed=1)
    runs = []
    for seed in (7, 7, 8):
        model = MLP(3, (8,), seed=seed)
        preds = []
        for x, target in zip(X, y, strict=True):
            preds.append(model.predict_one(x))
            model.learn_one(x, target)
        runs.append((np.array(preds), np.concatenate([p.ravel() for p in model.params])))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert not np.array_equal(runs[0][1], runs[2][1])


@pytest.mark.parametrize("via", ["bytes", "state_dict"])
def test_a_state_round_trip_gives_bit_identical_later_predictions(via: str) -> None:
    X, y = nonlinear_stream(400, seed=2)
    model = MLP(3, (6, 4), loss=Huber(0.5), optimizer=Adam(lr=3e-3, clip_norm=0.5), seed=3)
    for x, target in zip(X[:200], y[:200], strict=True):
        model.learn_one(x, target)
    model.learn_one(X[0], math.nan)  # a skipped update is part of the state too
    if via == "bytes":
        data = model.to_bytes()
        assert isinstance(data, bytes)
        clone = MLP.from_bytes(data)
    else:
        clone = MLP(3, (6, 4), loss=Huber(0.5), optimizer=Adam(lr=3e-3, clip_norm=0.5), seed=99)
        clone.load_state_dict(model.state_dict())
    assert (clone.n_updates, clone.n_skipped) == (200, 1)
    assert clone._rng.bit_generator.state == model._rng.bit_generator.state
    a, b = [], []
    for x, target in zip(X[200:], y[200:], strict=True):
        a.append(model.predict_one(x))
        b.append(clone.predict_one(x))
        model.learn_one(x, target)
        clone.learn_one(x, target)
    np.testing.assert_array_equal(a, b)
    for p, q in zip(model.params, clone.params, strict=True):
        np.testing.assert_array_equal(p, q)
    assert repr(clone) == repr(model)


def test_a_state_whose_scalars_came_back_as_one_element_arrays_still_loads() -> None:
    model = MLP(3, (4,), seed=1)
    model.learn_one(np.ones(3), 0.5)
    state = {k: np.atleast_1d(v) for k, v in model.state_dict().items()}
    clone = MLP(3, (4,), seed=2)
    clone.load_state_dict(state)
    assert clone.n_updates == 1
    assert clone.predict_one(np.ones(3)) == model.predict_one(np.ones(3))


def test_loading_a_state_of_another_shape_or_kind_raises_a_state_error() -> None:
    state = MLP(3, (5,)).state_dict()
    with pytest.raises(StateError):
        MLP(3, (6,)).load_state_dict(state)
    with pytest.raises(StateError):
        MLP(4, (5,)).load_state_dict(state)
    with pytest.raises(StateError):
        TwoHeadMLP.from_bytes(MLP(3, (5,)).to_bytes())
    with pytest.raises(StateError):
        MLP.from_bytes(b"not an npz file")
    with pytest.raises(StateError):
        MLP(3, (5,)).load_state_dict({"theta": state["theta"]})


def test_a_corrupt_state_is_refused_before_anything_changes() -> None:
    model = MLP(3, (5,), seed=1)
    model.learn_one(np.ones(3), 1.0)
    before = model.state_dict()
    state = MLP(3, (5,), seed=2).state_dict()
    state["rng"] = np.array('{"bit_generator": "PCG64", "state": "garbage"}')
    with pytest.raises(StateError):
        model.load_state_dict(state)
    after = model.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value)


@pytest.mark.parametrize(
    ("x", "y"),
    [([0.1, 0.2, 0.3], math.nan), ([0.1, math.inf, 0.3], 1.0), ([math.nan, 0.2, 0.3], 1.0)],
    ids=["nan-target", "inf-input", "nan-input"],
)
def test_a_non_finite_sample_is_skipped_counted_and_harmless(x: list[float], y: float) -> None:
    model = MLP(3, (4,))
    model.learn_one(np.array([0.5, 0.5, 0.5]), 1.0)
    before = [p.copy() for p in model.params]
    with np.errstate(invalid="ignore"):  # inf inputs may make numpy warn about inf - inf
        model.learn_one(np.array(x), y)
    assert (model.n_updates, model.n_skipped) == (1, 1)
    for p, q in zip(model.params, before, strict=True):
        np.testing.assert_array_equal(p, q)
    model.learn_one(np.array([0.5, 0.5, 0.5]), 1.0)
    assert model.n_updates == 2 and all(np.isfinite(p).all() for p in model.params)


def test_the_network_learns_a_nonlinear_target_online() -> None:
    # Measured: MLP(3, (32,)) reaches a prequential MSE of 0.028 over the last 5,000 of 20,000
    # samples (noise floor 0.01, var(y) 1.07); the linear model stays near 0.71.
    X, y = nonlinear_stream(20_000, seed=42)
    mlp_mse = prequential_mse(MLP(3), X, y, last=5_000)
    linear_mse = prequential_mse(MLP(3, hidden=()), X, y, last=5_000)
    assert mlp_mse < 0.05
    assert linear_mse > 0.5
    assert mlp_mse < linear_mse / 10


def test_a_logistic_mlp_learns_a_nonlinear_boundary_with_probabilities() -> None:
    rng = np.random.default_rng(9)
    model = MLP(2, (16,), loss="logistic", optimizer=Adam(lr=1e-2), seed=1)
    hits = []
    for i in range(6_000):
        x = rng.uniform(-1.0, 1.0, size=2)
        label = float(x[0] * x[1] > 0.0)  # XOR of the signs: no linear model can do it
        p = model.predict_one(x)
        assert 0.0 < p < 1.0
        if i >= 5_000:
            hits.append((p > 0.5) == (label == 1.0))
        model.learn_one(x, label)
    assert np.mean(hits) > 0.9


def test_the_one_sample_hot_path_allocates_no_arrays() -> None:
    model = MLP(16, (32,))
    x = np.random.default_rng(0).normal(size=16)
    for _ in range(10):  # warm up lazily built state
        model.predict_one(x)
        model.learn_one(x, 0.1)
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(200):
            model.predict_one(x)
            model.learn_one(x, 0.1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # one (16, 32) float64 array alone is 4 KiB; views and floats are a few hundred bytes
    assert peak - base < 2048


def test_bad_inputs_raise_model_errors() -> None:
    model = MLP(3, (4,))
    with pytest.raises(ShapeError):
        model.predict_one(np.zeros(4))
    with pytest.raises(ShapeError):
        model.learn_many(np.zeros((5, 3)), np.zeros(4))
    with pytest.raises(ShapeError):
        model.predict_many(np.zeros(3))
    with pytest.raises(ModelError):
        MLP(3, (0,))
    with pytest.raises(ModelError):
        MLP(3, activation="swish")
    assert model.predict_one([0.1, 0.2, 0.3]) == model.predict_one(np.array([0.1, 0.2, 0.3]))


def test_the_constructor_keeps_the_given_optimizer_untouched() -> None:
    opt = Adam(lr=0.01)
    model = MLP(2, (3,), optimizer=opt)
    model.learn_one(np.ones(2), 1.0)
    assert model.optimizer is opt and opt.n_updates == 0 and model.n_updates == 1
