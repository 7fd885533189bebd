"""Losses: values by hand, float64 finite-difference gradients, the scalar fast path."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tickcast.model import ModelError
from tickcast.model.losses import Huber, Logistic, Loss, Squared, make_loss, sigmoid


def numerical_gradient(loss: Loss, yhat: np.ndarray, y: np.ndarray, h: float = 1e-6) -> np.ndarray:
    grad = np.zeros_like(yhat)
    for i in range(yhat.size):
        up, down = yhat.copy(), yhat.copy()
        up[i] += h
        down[i] -= h
        grad[i] = (loss.value(up, y) - loss.value(down, y)) / (2.0 * h)
    return grad


def relative_error(a: np.ndarray, n: np.ndarray) -> float:
    return float(np.linalg.norm(a - n) / (np.linalg.norm(a) + np.linalg.norm(n)))


REGRESSION_CASES = [
    (Squared(), np.array([0.3, -1.2, 2.5, 0.0, 4.0])),
    # residuals on both sides of the kink at |r| = 1, none within 1e-3 of it
    (Huber(1.0), np.array([0.3, -1.2, 2.5, -0.99, 4.0])),
    (Huber(0.25), np.array([0.1, -0.3, 0.2, -0.05, 1.5])),
]


@pytest.mark.parametrize(
    ("loss", "residual"), REGRESSION_CASES, ids=["squared", "huber", "huber-small"]
)
def test_regression_loss_gradients_match_finite_differences(
    loss: Loss, residual: np.ndarray
) -> None:
    y = np.linspace(-1.0, 1.0, residual.size)
    yhat = y + residual
    assert relative_error(loss.gradient(yhat, y), numerical_gradient(loss, yhat, y)) < 1e-6


def test_logistic_gradient_matches_finite_differences() -> None:
    z = np.array([-30.0, -2.0, -0.1, 0.0, 0.7, 3.0, 25.0])
    labels = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0])
    loss = Logistic()
    assert relative_error(loss.gradient(z, labels), numerical_gradient(loss, z, labels)) < 1e-6


def test_squared_and_huber_values_by_hand() -> None:
    yhat, y = np.array([0.5, 3.0, -4.0]), np.zeros(3)
    assert Squared().value(yhat, y) == pytest.approx((0.125 + 4.5 + 8.0) / 3)
    # inside delta: r^2/2; outside: delta * (|r| - delta/2) = 1 * 2.5 and 1 * 3.5
    assert Huber(1.0).value(yhat, y) == pytest.approx((0.125 + 2.5 + 3.5) / 3)
    np.testing.assert_allclose(Huber(1.0).gradient(yhat, y), np.array([0.5, 1.0, -1.0]) / 3)


def test_huber_equals_squared_within_delta_and_bounds_its_gradient() -> None:
    r = np.linspace(-0.9, 0.9, 19)
    zeros = np.zeros_like(r)
    np.testing.assert_allclose(
        Huber(1.0).elementwise(r, zeros)[0], Squared().elementwise(r, zeros)[0]
    )
    _, d = Huber(0.5).elementwise(np.array([-100.0, 100.0, 1e300]), np.zeros(3))
    np.testing.assert_array_equal(d, [-0.5, 0.5, 0.5])


def test_logistic_is_stable_for_huge_logits_and_log2_at_zero() -> None:
    loss, d = Logistic().elementwise(np.array([-1000.0, 1000.0, 0.0]), np.array([1.0, 1.0, 0.0]))
    np.testing.assert_allclose(loss, [1000.0, 0.0, math.log(2.0)], atol=1e-12)
    np.testing.assert_allclose(d, [-1.0, 0.0, 0.5], atol=1e-12)
    assert Logistic().one(-1000.0, 1.0) == pytest.approx((1000.0, -1.0))
    np.testing.assert_allclose(sigmoid(np.array([-2.0, 2.0])), 1.0 / (1.0 + np.exp([2.0, -2.0])))


@pytest.mark.parametrize("loss", [Squared(), Huber(1.0), Huber(0.3), Logistic()], ids=repr)
def test_the_scalar_path_matches_the_array_path(loss: Loss) -> None:
    rng = np.random.default_rng(3)
    yhat = rng.normal(scale=2.0, size=50)
    y = (rng.random(50) < 0.5).astype(float) if isinstance(loss, Logistic) else rng.normal(size=50)
    values, derivs = loss.elementwise(yhat, y)
    for i in range(50):
        value, deriv = loss.one(float(yhat[i]), float(y[i]))
        assert value == pytest.approx(values[i], rel=1e-12, abs=1e-15)
        assert deriv == pytest.approx(derivs[i], rel=1e-12, abs=1e-15)
    assert loss.predict_one(0.25) == pytest.approx(float(loss.predict(np.array([0.25]))[0]))


@pytest.mark.parametrize("loss", [Squared(), Huber(1.0), Logistic()], ids=repr)
def test_a_nan_output_gives_a_nan_loss(loss: Loss) -> None:
    value, deriv = loss.one(math.nan, 1.0)
    assert math.isnan(value) and math.isnan(deriv)


def test_losses_rebuild_from_their_spec_and_reject_unknown_names() -> None:
    for loss in (Squared(), Huber(0.7), Logistic()):
        rebuilt = make_loss(loss.spec())
        assert type(rebuilt) is type(loss) and rebuilt.spec() == loss.spec()
    assert isinstance(make_loss("huber"), Huber)
    with pytest.raises(ModelError):
        make_loss("hinge")
    with pytest.raises(ModelError):
        Huber(0.0)
