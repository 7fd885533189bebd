"""Prequential metrics: streaming figures agree with a direct batch computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tickcast.model.metrics import (
    CumulativeMetrics,
    MetricsError,
    PrequentialMetrics,
    RollingMetrics,
    summarize,
)


def _stream(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.round(rng.standard_t(3, n) * 2.0)  # fat tails and many exact zeros
    pred = 0.3 * y + rng.normal(0.0, 1.0, n)
    pred[rng.random(n) < 0.05] = 0.0
    lin = 0.1 * y + rng.normal(0.0, 1.0, n)
    return y, pred, lin


def _naive(y: np.ndarray, p: np.ndarray, lin: np.ndarray) -> dict[str, float]:
    nz = y != 0
    pairs = zip(y[nz], p[nz], strict=True)
    hits = [0.5 if pi == 0 else float(np.sign(pi) == np.sign(yi)) for yi, pi in pairs]
    return {
        "n_scored": float(len(y)),
        "n_nonzero": float(nz.sum()),
        "hit_rate": float(np.mean(hits)),
        "ic": float(np.corrcoef(y, p)[0, 1]),
        "skill_vs_zero": 1 - float(np.sum((p - y) ** 2) / np.sum(y**2)),
        "skill_vs_linear": 1 - float(np.sum((p - y) ** 2) / np.sum((lin - y) ** 2)),
    }


def _assert_matches(summary_dict: dict[str, float | int], expected: dict[str, float]) -> None:
    for key, value in expected.items():
        assert summary_dict[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_cumulative_metrics_match_a_batch_computation() -> None:
    y, p, lin = _stream(5000, seed=1)
    m = CumulativeMetrics()
    for yi, pi, li in zip(y, p, lin, strict=True):
        m.update(float(yi), float(pi), float(li))
    _assert_matches(m.summary().as_dict(), _naive(y, p, lin))
    _assert_matches(summarize(y, p, lin).as_dict(), _naive(y, p, lin))


def test_rolling_metrics_cover_exactly_the_last_window() -> None:
    y, p, lin = _stream(2345, seed=2)
    m = RollingMetrics(window=500)
    for i, (yi, pi, li) in enumerate(zip(y, p, lin, strict=True)):
        m.update(float(yi), float(pi), float(li))
        if i in (10, 499, 500, 1000, 1733, 2344):
            lo = max(0, i + 1 - 500)
            _assert_matches(
                m.summary().as_dict(), _naive(y[lo : i + 1], p[lo : i + 1], lin[lo : i + 1])
            )
            assert m.n_scored == i + 1 - lo


def test_rolling_sums_do_not_drift_over_a_long_stream() -> None:
    rng = np.random.default_rng(3)
    m = RollingMetrics(window=100)
    # Huge values early, small ones late: naive add/subtract would keep the residue.
    for _ in range(300):
        m.update(1e8 * float(rng.normal()), 1e8 * float(rng.normal()), 0.0)
    y = rng.normal(size=100)
    p = y + rng.normal(size=100)
    for yi, pi in zip(y, p, strict=True):
        m.update(float(yi), float(pi), 0.0)
    assert m.summary().ic == pytest.approx(float(np.corrcoef(y, p)[0, 1]), rel=1e-9)


def test_a_zero_prediction_counts_as_half_a_hit() -> None:
    s = summarize([1.0, -1.0], [0.0, 0.0])
    assert s.hit_rate == 0.5
    m = PrequentialMetrics(window=10)
    m.update(1.0, 0.0, 0.0)
    assert m.rolling().hit_rate == 0.5 and m.cumulative().hit_rate == 0.5


def test_zero_labels_are_scored_but_excluded_from_the_hit_rate() -> None:
    m = PrequentialMetrics(window=10)
    for y in (0.0, 0.0, 2.0):
        m.update(y, 1.0, 0.0)
    for s in (m.rolling(), m.cumulative()):
        assert (s.n_scored, s.n_nonzero, s.hit_rate) == (3, 1, 1.0)


def test_figures_are_nan_before_they_are_defined() -> None:
    m = PrequentialMetrics(window=10)
    for s in (m.rolling(), m.cumulative()):
        assert s.n_scored == 0
        assert math.isnan(s.hit_rate) and math.isnan(s.ic) and math.isnan(s.skill_vs_zero)
    m.update(1.0, 1.0, 1.0)
    assert math.isnan(m.cumulative().ic)  # one sample has no correlation


def test_a_constant_prediction_has_no_ic_but_has_skill() -> None:
    m = PrequentialMetrics(window=50)
    for y in (1.0, -1.0, 2.0, 3.0):
        m.update(y, 0.5, 0.0)
    assert math.isnan(m.rolling().ic) and math.isnan(m.cumulative().ic)
    expected = 1 - (0.25 + 2.25 + 2.25 + 6.25) / (1 + 1 + 4 + 9)
    assert m.cumulative().skill_vs_zero == pytest.approx(expected)
    assert m.rolling().skill_vs_zero == pytest.approx(expected)


def test_a_perfect_predictor_has_ic_one_and_full_skill() -> None:
    y = np.linspace(-3, 3, 61)
    s = summarize(y, 2 * y, np.zeros_like(y))
    assert s.ic == pytest.approx(1.0) and s.hit_rate == 1.0
    s = summarize(y, y, 0.5 * y)
    assert s.skill_vs_zero == 1.0 and s.skill_vs_linear == 1.0


def test_state_dict_round_trip_continues_identically() -> None:
    y, p, lin = _stream(900, seed=4)
    a = PrequentialMetrics(window=64)
    for i in range(400):
        a.update(float(y[i]), float(p[i]), float(lin[i]))
    b = PrequentialMetrics(window=64)
    b.load_state_dict(a.state_dict())
    for i in range(400, 900):
        a.update(float(y[i]), float(p[i]), float(lin[i]))
        b.update(float(y[i]), float(p[i]), float(lin[i]))
    assert a.rolling() == b.rolling()
    assert a.cumulative() == b.cumulative()


def test_a_window_mismatch_is_rejected() -> None:
    a = PrequentialMetrics(window=64)
    with pytest.raises(MetricsError):
        PrequentialMetrics(window=32).load_state_dict(a.state_dict())
    with pytest.raises(MetricsError):
        RollingMetrics(window=1)
    with pytest.raises(MetricsError):
        summarize([1.0, 2.0], [1.0])
