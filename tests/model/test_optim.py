"""Optimizers: steps against hand-computed values, clipping, decay, the non-finite guard."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tickcast.model import ModelError
from tickcast.model.optim import SGD, Adam, Momentum, Optimizer, make_optimizer


def test_sgd_steps_against_hand_computed_values() -> None:
    W, b = np.array([[1.0, -1.0]]), np.array([0.5])
    assert SGD(lr=0.1).step([W, b], [np.array([[2.0, 4.0]]), np.array([-1.0])], loss=3.0)
    np.testing.assert_allclose(W, [[0.8, -1.4]], rtol=1e-15)
    np.testing.assert_allclose(b, [0.6], rtol=1e-15)


def test_momentum_accumulates_velocity_by_hand() -> None:
    p, opt = np.array([1.0]), Momentum(lr=0.1, momentum=0.9)
    for g in (2.0, -1.0, 0.5):
        opt.step([p], [np.array([g])], loss=0.0)
    # v = 2, then 0.9*2 - 1 = 0.8, then 0.9*0.8 + 0.5 = 1.22; p = 1 - 0.1 * (2 + 0.8 + 1.22)
    assert p[0] == pytest.approx(1.0 - 0.1 * (2.0 + 0.8 + 1.22), rel=1e-14)
    assert opt.n_updates == 3


def test_adam_steps_against_the_papers_formulas_by_hand() -> None:
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    p = np.array([0.5, -0.25])
    opt = Adam(lr=lr, beta1=b1, beta2=b2, eps=eps)
    expected = [0.5, -0.25]
    m, v = [0.0, 0.0], [0.0, 0.0]
    for t, g in enumerate([(0.2, -3.0), (-0.1, 1.0), (0.4, 0.0)], start=1):
        opt.step([p], [np.array(g)], loss=1.0)
        for i in range(2):
            m[i] = b1 * m[i] + (1 - b1) * g[i]
            v[i] = b2 * v[i] + (1 - b2) * g[i] ** 2
            m_hat, v_hat = m[i] / (1 - b1**t), v[i] / (1 - b2**t)
            expected[i] -= lr * m_hat / (math.sqrt(v_hat) + eps)
        np.testing.assert_allclose(p, expected, rtol=1e-13)
    state = opt.state_dict()
    np.testing.assert_allclose(state["m.0"], m, rtol=1e-13)
    np.testing.assert_allclose(state["v.0"], v, rtol=1e-13)
    assert int(state["t"]) == 3


def test_adams_first_step_moves_each_weight_by_lr_against_its_gradient_sign() -> None:
    p = np.zeros(3)
    Adam(lr=0.05).step([p], [np.array([1e-3, -7.0, 250.0])], loss=0.0)
    np.testing.assert_allclose(p, [-0.05, 0.05, -0.05], rtol=1e-4)


def test_global_norm_clipping_scales_every_gradient_and_leaves_them_untouched() -> None:
    a, b = np.zeros(2), np.zeros(1)
    ga, gb = np.array([3.0, 0.0]), np.array([4.0])  # global norm 5
    opt = SGD(lr=1.0, clip_norm=1.0)
    opt.step([a, b], [ga, gb], loss=0.0)
    np.testing.assert_allclose(a, [-0.6, 0.0], rtol=1e-15)
    np.testing.assert_allclose(b, [-0.8], rtol=1e-15)
    np.testing.assert_array_equal(ga, [3.0, 0.0])
    assert opt.last_grad_norm == pytest.approx(5.0)
    small = np.zeros(1)
    opt.step([small], [np.array([0.5])], loss=0.0)  # below the threshold: unchanged
    assert small[0] == pytest.approx(-0.5)


def test_clipped_adam_moments_see_the_clipped_gradient() -> None:
    p, q = np.zeros(2), np.zeros(2)
    Adam(lr=0.1, clip_norm=2.0).step([p], [np.array([6.0, 8.0])], loss=0.0)
    opt = Adam(lr=0.1)
    opt.step([q], [np.array([1.2, 1.6])], loss=0.0)
    np.testing.assert_allclose(p, q, rtol=1e-14)


@pytest.mark.parametrize("opt", [SGD(lr=0.1, weight_decay=0.5), Adam(lr=0.1, weight_decay=0.5)])
def test_weight_decay_is_decoupled_from_the_gradient(opt: Optimizer) -> None:
    p = np.array([2.0])
    opt.step([p], [np.array([0.0])], loss=0.0)
    # p <- p * (1 - lr * wd); a zero gradient adds nothing (Adam: m = 0, so no move)
    assert p[0] == pytest.approx(2.0 * (1.0 - 0.1 * 0.5), rel=1e-14)


@pytest.mark.parametrize("cls", [SGD, Momentum, Adam])
@pytest.mark.parametrize(
    ("loss", "grad"),
    [(math.nan, 1.0), (math.inf, 1.0), (1.0, math.nan), (1.0, -math.inf), (1.0, 1e200)],
    ids=["nan-loss", "inf-loss", "nan-grad", "inf-grad", "overflowing-norm"],
)
def test_the_guard_skips_and_counts_non_finite_updates(
    cls: type[Optimizer], loss: float, grad: float
) -> None:
    p, reference = np.array([1.0, 2.0]), np.array([1.0, 2.0])
    opt, clean = cls(lr=0.1), cls(lr=0.1)
    opt.step([p], [np.array([0.5, -0.5])], loss=1.0)
    clean.step([reference], [np.array([0.5, -0.5])], loss=1.0)
    before = p.copy()
    with np.errstate(over="ignore"):  # numpy's own warning for the overflowing squared norm
        assert opt.step([p], [np.array([grad, 0.0])], loss=loss) is False
    np.testing.assert_array_equal(p, before)
    assert (opt.n_skipped, opt.n_updates) == (1, 1)
    # the skipped step leaves no trace: later steps equal those of an optimizer that never saw it
    opt.step([p], [np.array([0.1, 0.3])], loss=1.0)
    clean.step([reference], [np.array([0.1, 0.3])], loss=1.0)
    np.testing.assert_array_equal(p, reference)


@pytest.mark.parametrize("cls", [SGD, Momentum, Adam])
def test_state_round_trip_gives_bit_identical_later_steps(cls: type[Optimizer]) -> None:
    rng = np.random.default_rng(5)
    p = rng.normal(size=(3, 4))
    opt = cls(lr=0.05, clip_norm=1.0)
    for _ in range(7):
        opt.step([p], [rng.normal(size=(3, 4))], loss=1.0)
    opt.step([p], [np.full((3, 4), np.nan)], loss=1.0)
    twin, q = cls(lr=0.05, clip_norm=1.0), p.copy()
    twin.load_state_dict(opt.state_dict())
    assert (twin.n_updates, twin.n_skipped) == (7, 1)
    for _ in range(5):
        g = rng.normal(size=(3, 4))
        opt.step([p], [g], loss=1.0)
        twin.step([q], [g], loss=1.0)
    np.testing.assert_array_equal(p, q)


def test_a_state_dict_is_a_copy_not_a_view() -> None:
    p, opt = np.zeros(2), Adam()
    opt.step([p], [np.ones(2)], loss=0.0)
    state = opt.state_dict()
    opt.step([p], [np.ones(2)], loss=0.0)
    assert state["m.0"][0] == pytest.approx(0.1)


def test_optimizers_rebuild_from_their_spec_without_state() -> None:
    opt = Momentum(lr=0.2, momentum=0.5, weight_decay=0.01, clip_norm=3.0)
    opt.step([np.zeros(1)], [np.ones(1)], loss=0.0)
    fresh = make_optimizer(opt.spec())
    assert isinstance(fresh, Momentum) and fresh.spec() == opt.spec()
    assert fresh.n_updates == 0 and opt.clone().n_updates == 0


@pytest.mark.parametrize(
    "build",
    [
        lambda: SGD(lr=0.0),
        lambda: SGD(lr=math.nan),
        lambda: Adam(beta1=1.0),
        lambda: Adam(eps=0.0),
        lambda: Momentum(momentum=-0.1),
        lambda: Adam(clip_norm=0.0),
        lambda: SGD(weight_decay=-1.0),
        lambda: make_optimizer({"name": "rmsprop"}),
    ],
)
def test_bad_hyperparameters_raise_a_model_error(build: object) -> None:
    with pytest.raises(ModelError):
        build()  # type: ignore[operator]


def test_loading_a_foreign_state_raises_a_model_error() -> None:
    with pytest.raises(ModelError):
        Adam().load_state_dict({"t": np.array(3)})
