"""EWStandardizer: exact moments in warm-up, explicit exponential weights after, state, guards."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tickcast.model import ModelError
from tickcast.model.scaling import EWStandardizer


def ew_weights(n: int, alpha: float) -> np.ndarray:
    """Weights of each of ``n`` samples in the estimate: equal while ``1/k > alpha``, then EW."""
    n0 = math.ceil(1.0 / alpha)  # samples learned with a = 1/k
    w = np.empty(n)
    w[:n0] = (1.0 / n0) * (1.0 - alpha) ** (n - n0)
    w[n0:] = alpha * (1.0 - alpha) ** (n - 1 - np.arange(n0, n))
    return w


def test_warm_up_moments_are_the_exact_running_mean_and_variance() -> None:
    x = np.random.default_rng(0).normal(5.0, 3.0, size=40)
    scaler = EWStandardizer(alpha=0.02)  # 1/k > alpha for the first 49 samples
    for k, v in enumerate(x, start=1):
        scaler.learn_one(float(v))
        assert scaler.mean == pytest.approx(x[:k].mean(), rel=1e-13)
        assert scaler.var == pytest.approx(x[:k].var(), rel=1e-11, abs=1e-13)


def test_moments_after_warm_up_equal_explicitly_weighted_ones() -> None:
    x = np.random.default_rng(1).normal(-2.0, 0.5, size=600)
    alpha = 0.05
    scaler = EWStandardizer(alpha=alpha)
    for v in x:
        scaler.learn_one(float(v))
    w = ew_weights(len(x), alpha)
    assert w.sum() == pytest.approx(1.0)
    mean = float(np.sum(w * x))
    assert scaler.mean == pytest.approx(mean, rel=1e-12)
    assert scaler.var == pytest.approx(float(np.sum(w * (x - mean) ** 2)), rel=1e-10)


def test_a_vector_is_standardised_element_wise_like_independent_scalars() -> None:
    rng = np.random.default_rng(2)
    X = rng.normal([0.0, 10.0, -3.0], [1.0, 0.01, 100.0], size=(300, 3))
    vec = EWStandardizer(alpha=0.03, warmup=10)
    scalars = [EWStandardizer(alpha=0.03, warmup=10) for _ in range(3)]
    for row in X:
        for s, v in zip(scalars, row, strict=True):
            s.learn_one(float(v))
        vec.learn_one(row)
    probe = np.array([1.0, 10.02, 50.0])
    z = vec.transform_one(probe)
    assert z.shape == (3,)
    expected = [s.transform_one(float(v)) for s, v in zip(scalars, probe, strict=True)]
    np.testing.assert_allclose(z, expected)
    np.testing.assert_allclose(vec.mean, [s.mean for s in scalars], rtol=1e-13)


def test_transform_returns_zeros_until_warm_up_then_unit_scale_values() -> None:
    rng = np.random.default_rng(3)
    scaler = EWStandardizer(alpha=0.01, warmup=50)
    z = []
    for v in rng.normal(100.0, 7.0, size=3000):
        out = scaler.transform_one(float(v))  # transform before learn: no look-ahead
        if not scaler.ready:
            assert out == 0.0
        else:
            z.append(out)
        scaler.learn_one(float(v))
    assert scaler.n_seen == 3000 and len(z) == 3000 - 50
    assert abs(np.mean(z)) < 0.1
    assert np.std(z) == pytest.approx(1.0, abs=0.1)
    vec = EWStandardizer(warmup=2)
    vec.learn_one(np.ones(4))
    np.testing.assert_array_equal(vec.transform_one(np.full(4, 9.0)), np.zeros(4))


def test_clip_bounds_the_standardised_value() -> None:
    scaler = EWStandardizer(alpha=0.1, warmup=2, clip=3.0)
    for v in (0.0, 1.0, 0.0, 1.0):
        scaler.learn_one(v)
    assert scaler.transform_one(1e6) == 3.0
    assert scaler.transform_one(-1e6) == -3.0


def test_inverse_transform_undoes_transform() -> None:
    scaler = EWStandardizer(alpha=0.1, warmup=1)
    for v in (3.0, 5.0, 4.0, 8.0):
        scaler.learn_one(v)
    assert scaler.inverse_transform_one(scaler.transform_one(6.5)) == pytest.approx(6.5)
    vec = EWStandardizer(alpha=0.1, warmup=1)
    for row in ([1.0, 2.0], [3.0, -2.0], [2.0, 0.0]):
        vec.learn_one(np.array(row))
    x = np.array([0.5, 7.0])
    np.testing.assert_allclose(vec.inverse_transform_one(vec.transform_one(x)), x)


def test_a_constant_input_standardises_to_zero_not_to_nan() -> None:
    scaler = EWStandardizer(warmup=5)
    for _ in range(10):
        scaler.learn_one(np.array([2.0, 0.0]))
    np.testing.assert_array_equal(scaler.transform_one(np.array([2.0, 0.0])), [0.0, 0.0])


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_samples_are_skipped_and_counted(bad: float) -> None:
    scaler = EWStandardizer(alpha=0.1)
    scaler.learn_one(1.0)
    scaler.learn_one(bad)
    assert (scaler.n_seen, scaler.n_skipped, scaler.mean) == (1, 1, 1.0)
    vec = EWStandardizer(alpha=0.1)
    vec.learn_one(np.array([1.0, 2.0]))
    vec.learn_one(np.array([3.0, bad]))
    assert (vec.n_seen, vec.n_skipped) == (1, 1)
    np.testing.assert_array_equal(vec.mean, [1.0, 2.0])


def test_a_sample_whose_squared_distance_overflows_is_skipped_and_the_moments_stay_finite() -> None:
    scaler = EWStandardizer(alpha=0.1, warmup=1)
    scaler.learn_one(1.0)
    scaler.learn_one(1e300)  # (1e300 - 1)^2 overflows: it would make the variance inf
    assert (scaler.n_seen, scaler.n_skipped, scaler.mean, scaler.var) == (1, 1, 1.0, 0.0)
    vec = EWStandardizer(alpha=0.1, warmup=1)
    vec.learn_one(np.array([1.0, 2.0]))
    vec.learn_one(np.array([3.0, -1e300]))
    assert (vec.n_seen, vec.n_skipped) == (1, 1)
    assert np.isfinite(vec.var).all()
    vec.learn_one(np.array([3.0, 1e100]))  # large, but its square is finite: learned
    assert vec.n_seen == 2 and np.isfinite(vec.var).all()


@pytest.mark.parametrize("clip", [None, 3.0])
def test_transform_never_returns_a_non_finite_value(clip: float | None) -> None:
    scaler = EWStandardizer(alpha=0.1, warmup=1, clip=clip)
    scaler.learn_one(1.0)
    scaler.learn_one(2.0)
    for bad in (math.nan, math.inf, -math.inf):
        assert scaler.transform_one(bad) == 0.0  # no information
    assert math.isfinite(scaler.transform_one(-1.7e308))
    vec = EWStandardizer(alpha=0.1, warmup=1, clip=clip)
    vec.learn_one(np.array([1.0, 2.0, 0.0]))
    vec.learn_one(np.array([2.0, 2.0, 1.0]))
    z = vec.transform_one(np.array([math.nan, math.inf, 1.7e308]))
    assert np.isfinite(z).all() and z[0] == 0.0 and z[1] == 0.0


def test_a_zero_scale_standardises_to_zero_instead_of_dividing_by_zero() -> None:
    scaler = EWStandardizer(alpha=0.1, warmup=1, eps=0.0)
    scaler.learn_one(2.0)  # variance 0, and no eps to lift it
    assert scaler.transform_one(3.0) == 0.0
    vec = EWStandardizer(alpha=0.1, warmup=1, eps=0.0)
    vec.learn_one(np.array([2.0, 0.0]))
    with np.errstate(all="raise"):
        np.testing.assert_array_equal(vec.transform_one(np.array([3.0, 0.0])), [0.0, 0.0])


@pytest.mark.parametrize("sample", [2.5, np.array([2.5, -1.0, 0.0])], ids=["scalar", "vector"])
def test_a_state_round_trip_is_exact(sample: float | np.ndarray) -> None:
    rng = np.random.default_rng(4)
    scaler = EWStandardizer(alpha=0.07, warmup=3)
    for _ in range(40):
        scaler.learn_one(sample * rng.normal() + 1.0)
    twin = EWStandardizer(alpha=0.07, warmup=3)
    twin.load_state_dict(scaler.state_dict())
    for _ in range(20):
        v = sample * rng.normal() + 1.0
        np.testing.assert_array_equal(twin.transform_one(v), scaler.transform_one(v))
        scaler.learn_one(v)
        twin.learn_one(v)
    np.testing.assert_array_equal(twin.var, scaler.var)
    fresh = EWStandardizer()
    fresh.load_state_dict(EWStandardizer().state_dict())
    assert fresh.n_seen == 0


def test_shape_changes_and_bad_settings_raise_model_errors() -> None:
    vec = EWStandardizer()
    vec.learn_one(np.zeros(3))
    with pytest.raises(ModelError):
        vec.learn_one(np.zeros(4))
    with pytest.raises(ModelError):
        vec.learn_one(1.0)
    scalar = EWStandardizer()
    scalar.learn_one(1.0)
    with pytest.raises(ModelError):
        scalar.learn_one(np.zeros(2))
    with pytest.raises(ModelError):
        EWStandardizer().learn_one(np.zeros((2, 2)))
    for kwargs in ({"alpha": 0.0}, {"alpha": 1.5}, {"warmup": 0}, {"eps": -1.0}, {"clip": 0.0}):
        with pytest.raises(ModelError):
            EWStandardizer(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ModelError):
        EWStandardizer().load_state_dict({"n": np.array(1)})


def test_a_state_whose_scalars_came_back_as_one_element_arrays_still_loads() -> None:
    scaler = EWStandardizer(alpha=0.2, warmup=1)
    for v in (1.0, 4.0, 2.0):
        scaler.learn_one(v)
    state = {k: np.atleast_1d(v) for k, v in scaler.state_dict().items()}
    twin = EWStandardizer(alpha=0.2, warmup=1)
    twin.load_state_dict(state)
    assert (twin.mean, twin.var, twin.n_seen) == (scaler.mean, scaler.var, 3)
