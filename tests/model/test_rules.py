"""The reference rules and the hindsight least-squares fit (tickcast.model.rules)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tickcast.model import ModelError
from tickcast.model.features import StreamingFeatures
from tickcast.model.metrics import summarize
from tickcast.model.rules import (
    RULES,
    Rule,
    RulesError,
    best_rule,
    hindsight_linear,
    rule_forecasts,
    rules_for,
)

NAMES = StreamingFeatures().names


def _raw(n: int, seed: int = 0) -> np.ndarray:
    """A raw-feature matrix whose column ``j`` holds ``j + fraction``: each column is told by
    its values."""
    rng = np.random.default_rng(seed)
    return np.arange(len(NAMES), dtype=float) + rng.uniform(0.0, 0.5, (n, len(NAMES)))


def test_the_rules_read_book_imbalance_microprice_and_the_1s_trade_flow_with_a_plus_sign() -> None:
    assert [(r.name, r.feature, r.sign) for r in RULES] == [
        ("book_imbalance", "book_imbalance", 1),
        ("microprice_dev", "microprice_dev", 1),
        ("trade_flow_1000", "trade_flow_1000", 1),
    ]
    assert rules_for(NAMES) == RULES


def test_each_rule_is_its_features_column() -> None:
    raw = _raw(50)
    forecasts = rule_forecasts(raw, NAMES)
    assert list(forecasts) == ["book_imbalance", "microprice_dev", "trade_flow_1000"]
    for name, values in forecasts.items():
        np.testing.assert_array_equal(values, raw[:, NAMES.index(name)])
    # the columns are found by name, whatever their order
    order = np.random.default_rng(1).permutation(len(NAMES))
    shuffled = rule_forecasts(raw[:, order], [NAMES[i] for i in order])
    for name, values in forecasts.items():
        np.testing.assert_array_equal(shuffled[name], values)


def test_a_rule_forecasts_with_its_sign_and_a_missing_feature_is_left_out() -> None:
    raw = np.array([[0.5, -0.2], [-0.1, 0.3]])
    names = ["book_imbalance", "trade_flow_5000"]
    rules = [Rule("fade_book", "book_imbalance", -1), Rule("mp", "microprice_dev", 1)]
    forecasts = rule_forecasts(raw, names, rules)
    assert list(forecasts) == ["fade_book"]
    np.testing.assert_array_equal(forecasts["fade_book"], [-0.5, 0.1])
    # the natural signs: a book leaning to the bid, or a positive flow, forecasts an up move
    assert list(rule_forecasts(raw, names)) == ["book_imbalance", "trade_flow_5000"]
    np.testing.assert_array_equal(rule_forecasts(raw, names)["trade_flow_5000"], raw[:, 1])


def test_without_a_1s_window_the_shortest_trade_flow_stands_in_under_its_own_name() -> None:
    names = StreamingFeatures(windows_ms=(5000, 2000, 30_000)).names
    assert [r.name for r in rules_for(names)] == [
        "book_imbalance",
        "microprice_dev",
        "trade_flow_2000",
    ]
    assert rules_for(["spread", "rsi"]) == ()


def test_the_best_rule_has_the_highest_ic() -> None:
    assert best_rule({"a": 0.1, "b": 0.3, "c": -0.5}) == "b"
    assert best_rule({"a": math.nan, "b": -0.2}) == "b"
    assert best_rule({"a": 0.2, "b": 0.2}) == "a"
    assert best_rule({}) is None


def test_hindsight_recovers_an_exact_linear_relation() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 4)) * [1.0, 1e3, 1e-3, 50.0]
    y = 3.0 + x @ [2.0, -0.001, 400.0, 0.02]
    np.testing.assert_allclose(hindsight_linear(x, y), y, rtol=0, atol=1e-9)


def test_hindsight_is_the_least_squares_fit_with_an_intercept() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 5))
    y = x @ [0.5, 0.0, -1.0, 0.2, 0.0] + rng.normal(size=500) + 7.0
    design = np.column_stack([np.ones(500), x])
    expected = design @ np.linalg.lstsq(design, y, rcond=None)[0]
    fitted = hindsight_linear(x, y)
    np.testing.assert_allclose(fitted, expected, rtol=0, atol=1e-10)
    # the residuals are orthogonal to the intercept and every feature
    np.testing.assert_allclose(design.T @ (y - fitted), 0.0, atol=1e-9)


def test_a_constant_or_duplicated_feature_does_not_break_the_fit() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(100, 2))
    y = 1.0 + x @ [1.0, -2.0] + 0.1 * rng.normal(size=100)
    wide = np.column_stack([x, np.full(100, 5.0), x[:, 0]])  # a constant and a copy
    np.testing.assert_allclose(hindsight_linear(wide, y), hindsight_linear(x, y), atol=1e-10)


def test_non_finite_rows_are_left_out_of_the_fit_and_get_nan() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 3))
    y = x @ [1.0, 2.0, 3.0] + rng.normal(size=300)
    x[10, 1] = np.nan
    x[20, 0] = np.inf
    y[30] = -np.inf
    y[40] = np.nan
    dropped = [10, 20, 30, 40]
    fitted = hindsight_linear(x, y)
    assert np.isnan(fitted[dropped]).all()
    kept = np.delete(np.arange(300), dropped)
    design = np.column_stack([np.ones(kept.size), x[kept]])
    expected = design @ np.linalg.lstsq(design, y[kept], rcond=None)[0]
    np.testing.assert_allclose(fitted[kept], expected, rtol=0, atol=1e-10)
    assert np.isnan(hindsight_linear(np.full((3, 2), np.nan), np.ones(3))).all()
    assert hindsight_linear(np.zeros((0, 4)), np.zeros(0)).shape == (0,)


def test_the_hindsight_ic_is_at_least_every_rules_ic() -> None:
    rng = np.random.default_rng(6)
    raw = rng.normal(size=(2000, len(NAMES)))
    y = raw @ rng.normal(size=len(NAMES)) + 3.0 * rng.normal(size=2000)
    hindsight = summarize(y, hindsight_linear(raw, y)).ic
    for forecast in rule_forecasts(raw, NAMES).values():
        assert hindsight >= abs(summarize(y, forecast).ic)


def test_bad_shapes_raise_a_model_error() -> None:
    with pytest.raises(RulesError, match="2-D"):
        rule_forecasts(np.zeros(3), ["book_imbalance"])
    with pytest.raises(RulesError, match="names"):
        rule_forecasts(np.zeros((3, 2)), ["book_imbalance"])
    with pytest.raises(RulesError, match="labels"):
        hindsight_linear(np.zeros((3, 2)), np.zeros(4))
    assert issubclass(RulesError, ModelError)
