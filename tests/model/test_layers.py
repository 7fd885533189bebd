"""Layers: float64 finite-difference gradient checks, the one-sample path, no side effects."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from tickcast.model import ModelError
from tickcast.model.layers import (
    Dense,
    ReLU,
    Tanh,
    glorot_uniform,
    he_normal,
    make_activation,
)

Array = np.ndarray


def numerical_gradient(f: Callable[[], float], a: Array, h: float = 1e-6) -> Array:
    """Central differences of ``f()`` over every element of ``a`` (perturbed in place)."""
    grad = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        old = a[i]
        a[i] = old + h
        up = f()
        a[i] = old - h
        down = f()
        a[i] = old
        grad[i] = (up - down) / (2.0 * h)
    return grad


def relative_error(analytic: Array, numeric: Array) -> float:
    """``||a - n|| / (||a|| + ||n||)``, the usual gradient-check measure."""
    num = float(np.linalg.norm(analytic - numeric))
    den = float(np.linalg.norm(analytic) + np.linalg.norm(numeric))
    return num / den if den > 0.0 else num


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240808)


def make_dense(rng: np.random.Generator, n_in: int = 4, n_out: int = 3) -> Dense:
    return Dense(rng.normal(size=(n_in, n_out)), rng.normal(size=n_out))


@pytest.mark.parametrize("batch", [(5,), ()])
def test_dense_gradients_match_finite_differences(rng: np.random.Generator, batch: tuple) -> None:
    layer = make_dense(rng)
    x = rng.normal(size=(*batch, 4))
    r = rng.normal(size=(*batch, 3))  # random projection: L = sum(r * z)

    def loss() -> float:
        return float(np.sum(r * layer.forward(x)[0]))

    _, cache = layer.forward(x)
    dx, (dW, db) = layer.backward(r, cache)
    assert relative_error(dx, numerical_gradient(loss, x)) < 1e-6
    assert relative_error(dW, numerical_gradient(loss, layer.W)) < 1e-6
    assert relative_error(db, numerical_gradient(loss, layer.b)) < 1e-6


@pytest.mark.parametrize("cls", [Tanh, ReLU])
def test_activation_gradients_match_finite_differences(
    rng: np.random.Generator, cls: type[Tanh] | type[ReLU]
) -> None:
    layer = cls(6)
    z = rng.normal(size=(4, 6))
    z[np.abs(z) < 0.05] += 0.2  # keep ReLU's kink out of the finite-difference window
    r = rng.normal(size=(4, 6))

    def loss() -> float:
        return float(np.sum(r * layer.forward(z)[0]))

    _, cache = layer.forward(z)
    dz, grads = layer.backward(r, cache)
    assert grads == []
    assert relative_error(dz, numerical_gradient(loss, z)) < 1e-6


def test_backward_changes_neither_parameters_nor_cache(rng: np.random.Generator) -> None:
    layer = make_dense(rng)
    W, b = layer.W.copy(), layer.b.copy()
    x = rng.normal(size=(5, 4))
    _, cache = layer.forward(x)
    cache_before = cache.copy()
    layer.backward(rng.normal(size=(5, 3)), cache)
    np.testing.assert_array_equal(layer.W, W)
    np.testing.assert_array_equal(layer.b, b)
    np.testing.assert_array_equal(cache, cache_before)


def test_the_one_sample_path_matches_the_batch_path(rng: np.random.Generator) -> None:
    dense, act = make_dense(rng, 5, 7), Tanh(7)
    x = rng.normal(size=5)
    z = dense.forward_one(x)
    a = act.forward_one(z)
    np.testing.assert_allclose(a, act.forward(dense.forward(x[None, :])[0])[0][0], rtol=1e-14)
    da = rng.normal(size=7)
    dz_one = act.backward_one(da, a).copy()
    dz_batch, _ = act.backward(da, np.tanh(dense.forward(x)[0]))
    np.testing.assert_allclose(dz_one, dz_batch, rtol=1e-14)
    dW, db = np.zeros((5, 7)), np.zeros(7)
    dx = dense.backward_one(dz_one, x, dW, db)
    dx_ref, (dW_ref, db_ref) = dense.backward(dz_one[None, :], x[None, :])
    np.testing.assert_allclose(dx, dx_ref[0], rtol=1e-14)
    np.testing.assert_array_equal(dW, dW_ref)
    np.testing.assert_array_equal(db, db_ref)


def test_relu_one_sample_backward_passes_gradient_only_where_active() -> None:
    relu = ReLU(4)
    a = relu.forward_one(np.array([-2.0, 0.0, 0.5, 3.0]))
    np.testing.assert_array_equal(a, [0.0, 0.0, 0.5, 3.0])
    np.testing.assert_array_equal(relu.backward_one(np.full(4, 2.0), a), [0.0, 0.0, 2.0, 2.0])


def test_dense_wraps_the_arrays_it_is_given_without_copying(rng: np.random.Generator) -> None:
    flat = rng.normal(size=4 * 3 + 3)
    layer = Dense(flat[:12].reshape(4, 3), flat[12:])
    flat[12:] = 0.0
    flat[:12] = 1.0
    np.testing.assert_array_equal(layer.forward(np.ones(4))[0], [4.0, 4.0, 4.0])


def test_dense_rejects_mismatched_or_non_float64_parameters() -> None:
    with pytest.raises(ModelError):
        Dense(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ModelError):
        Dense(np.zeros((3, 2), dtype=np.float32), np.zeros(2, dtype=np.float32))
    with pytest.raises(ModelError):
        make_activation("sigmoidish", 3)


def test_initialisers_follow_glorot_and_he_scales(rng: np.random.Generator) -> None:
    W = glorot_uniform(rng, 200, 100)
    bound = np.sqrt(6.0 / 300)
    assert W.shape == (200, 100)
    assert np.abs(W).max() <= bound
    assert W.std() == pytest.approx(bound / np.sqrt(3.0), rel=0.02)
    H = he_normal(rng, 200, 100)
    assert H.std() == pytest.approx(np.sqrt(2.0 / 200), rel=0.02)
