"""Reference forecasts for a report: fixed, parameter-free rules and the hindsight linear fit.

A learner's prequential figures mean little alone. Two references put them in context, on
the same samples and labels:

* the **rules** (:data:`RULES`): each takes one raw feature, as of the sample time, as the
  forecast, with the sign it has by construction (more size on the bid, a microprice above
  the mid, buyer-initiated trade flow: up). They have no parameter, learn nothing and see
  nothing after the sample time, so their figures are prequential as they stand; only their
  sign and correlation mean something (a rule is not in bps), i.e. their hit rate and IC.
* the **hindsight linear fit** (:func:`hindsight_linear`): ordinary least squares of the
  labels on every feature plus an intercept, fitted once on all the samples. It **sees the
  future** -- each fitted value comes from coefficients that were estimated with that very
  sample's label and every later one -- so it is not a forecast anyone could have made; it is
  an upper reference for what a fixed linear map of the features achieves in sample. Its IC
  is the multiple correlation, never below the absolute IC of any single feature.

Examples
--------
>>> import numpy as np
>>> names = ("book_imbalance", "microprice_dev", "spread", "trade_flow_1000")
>>> [r.name for r in rules_for(names)]
['book_imbalance', 'microprice_dev', 'trade_flow_1000']
>>> raw = np.array([[0.5, 0.1, 1.0, -0.2], [-0.25, -0.05, 1.0, 0.4]])
>>> {k: v.tolist() for k, v in rule_forecasts(raw, names).items()}
{'book_imbalance': [0.5, -0.25], 'microprice_dev': [0.1, -0.05], 'trade_flow_1000': [-0.2, 0.4]}
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numpy.typing import NDArray

from . import ModelError

__all__ = [
    "RULES",
    "Rule",
    "RulesError",
    "best_rule",
    "hindsight_linear",
    "rule_forecasts",
    "rules_for",
]

Array = NDArray[np.float64]

#: The trade-flow window of the trade-flow rule (the "1 s trade flow"), ms.
TRADE_FLOW_MS = 1000

_TRADE_FLOW = "trade_flow_"


class RulesError(ModelError):
    """Raised on inputs of inconsistent shapes (features, names, labels)."""


@dataclass(frozen=True, slots=True)
class Rule:
    """A parameter-free forecast: ``sign * feature`` as of the sample time.

    Attributes
    ----------
    name : str
        Name in reports.
    feature : str
        The raw feature it reads (a name of
        :attr:`~tickcast.model.features.StreamingFeatures.names`).
    sign : int
        +1 when a positive feature value forecasts an up move, -1 for the opposite.
    """

    name: str
    feature: str
    sign: int


#: The reference rules, each with its natural sign: book imbalance, microprice deviation and
#: the 1 s trade flow. A learner whose windows have no 1 s trade flow gets the shortest
#: trade-flow window instead (see :func:`rules_for`).
RULES: tuple[Rule, ...] = (
    Rule("book_imbalance", "book_imbalance", +1),
    Rule("microprice_dev", "microprice_dev", +1),
    Rule(f"{_TRADE_FLOW}{TRADE_FLOW_MS}", f"{_TRADE_FLOW}{TRADE_FLOW_MS}", +1),
)


def _window_ms(name: str) -> int | None:
    """The window of a ``trade_flow_<ms>`` feature name, or None for any other name."""
    suffix = name[len(_TRADE_FLOW) :] if name.startswith(_TRADE_FLOW) else ""
    return int(suffix) if suffix.isdigit() else None


def rules_for(feature_names: Iterable[str], rules: Sequence[Rule] = RULES) -> tuple[Rule, ...]:
    """The rules that can be read from features named ``feature_names``, in ``rules`` order.

    A rule whose feature is absent is left out, except a ``trade_flow_<ms>`` rule: it falls
    back to the shortest trade-flow window present, and is then named by that feature.

    Parameters
    ----------
    feature_names : iterable of str
        Names of the raw features (columns of the matrix the rules will read).
    rules : sequence of Rule
        The rules wanted; default :data:`RULES`.

    Returns
    -------
    tuple of Rule

    Examples
    --------
    >>> [(r.name, r.sign) for r in rules_for(["book_imbalance", "trade_flow_5000",
    ...                                       "trade_flow_2000"])]
    [('book_imbalance', 1), ('trade_flow_2000', 1)]
    """
    names = list(feature_names)
    present = set(names)
    flows = sorted((w, n) for n in names if (w := _window_ms(n)) is not None)
    out: list[Rule] = []
    for rule in rules:
        if rule.feature in present:
            out.append(rule)
        elif _window_ms(rule.feature) is not None and flows:
            feature = flows[0][1]
            out.append(Rule(feature, feature, rule.sign))
    return tuple(out)


def rule_forecasts(
    raw: npt.ArrayLike, feature_names: Sequence[str], rules: Sequence[Rule] = RULES
) -> dict[str, Array]:
    """Each rule's forecasts: ``sign`` times its feature's column of ``raw``.

    Parameters
    ----------
    raw : array_like, shape (n, n_features)
        Raw feature values, one row per sample, columns in ``feature_names`` order.
    feature_names : sequence of str
        Names of the columns.
    rules : sequence of Rule
        The rules wanted (default :data:`RULES`), resolved with :func:`rules_for`: one whose
        feature is absent is left out.

    Returns
    -------
    dict
        ``{rule name: forecasts, shape (n,)}``, in rule order (new arrays).

    Raises
    ------
    RulesError
        If ``raw`` is not 2-D with one column per name.

    Examples
    --------
    >>> rule = Rule("fade_flow", "trade_flow_1000", -1)
    >>> rule_forecasts([[0.5, 0.2], [0.1, -0.4]], ["book_imbalance", "trade_flow_1000"],
    ...                [rule])["fade_flow"].tolist()
    [-0.2, 0.4]
    """
    x = _matrix(raw, len(feature_names))
    index = {name: i for i, name in enumerate(feature_names)}
    return {r.name: float(r.sign) * x[:, index[r.feature]] for r in rules_for(index, rules)}


def best_rule(ics: Mapping[str, float]) -> str | None:
    """The name with the highest IC (NaN ignored; the first on ties); None if none is finite.

    Examples
    --------
    >>> best_rule({"a": 0.1, "b": float("nan"), "c": 0.3})
    'c'
    >>> best_rule({"a": float("nan")}) is None
    True
    """
    finite = [(ic, -i, name) for i, (name, ic) in enumerate(ics.items()) if math.isfinite(ic)]
    return max(finite)[2] if finite else None


def hindsight_linear(raw: npt.ArrayLike, y: npt.ArrayLike) -> Array:
    """In-sample least-squares fit of ``y`` on every feature plus an intercept -- sees the future.

    The coefficients are fitted once on all the samples (:func:`numpy.linalg.lstsq`) and the
    fitted values returned: each is a "forecast" made with its own label and every later one,
    so this is an upper reference for a fixed linear map of the features, not a forecast that
    could have been made. Rows with a non-finite feature or label are left out of the fit and
    get NaN. The columns are centred and scaled before the fit (the fitted values do not
    change; the solve is better conditioned), and a column that is constant over the rows kept
    is left to the intercept; a rank-deficient design gets the minimum-norm solution, whose
    fitted values are still the projection of ``y``.

    Parameters
    ----------
    raw : array_like, shape (n, n_features)
        Raw feature values, one row per sample.
    y : array_like, shape (n,)
        Labels.

    Returns
    -------
    ndarray, shape (n,)
        Fitted values (NaN on the rows left out).

    Raises
    ------
    RulesError
        If ``raw`` is not 2-D or ``y`` has not one value per row.

    Examples
    --------
    >>> raw = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0], [np.nan, 1.0]])
    >>> y = 1.0 + 2.0 * raw[:, 0] - 3.0 * raw[:, 1]
    >>> hindsight_linear(raw, y).round(12).tolist()
    [-2.0, 3.0, 2.0, 7.0, nan]
    """
    ya = np.asarray(y, dtype=np.float64).ravel()
    x = _matrix(raw, None)
    if x.shape[0] != ya.size:
        raise RulesError(f"{x.shape[0]} rows of features but {ya.size} labels")
    fitted = np.full(ya.size, np.nan)
    keep = np.isfinite(ya) & np.isfinite(x).all(axis=1)
    n = int(keep.sum())
    if n == 0:
        return fitted
    xk, yk = x[keep], ya[keep]
    mean = xk.mean(axis=0)
    scale = xk.std(axis=0)
    varying = (scale > 0.0) & np.isfinite(scale)
    design = np.empty((n, 1 + int(varying.sum())))
    design[:, 0] = 1.0
    design[:, 1:] = (xk[:, varying] - mean[varying]) / scale[varying]
    coef = np.linalg.lstsq(design, yk, rcond=None)[0]
    fitted[keep] = design @ coef
    return fitted


def _matrix(raw: npt.ArrayLike, n_columns: int | None) -> Array:
    """``raw`` as a 2-D float64 array, checked to have ``n_columns`` columns when given."""
    x = np.asarray(raw, dtype=np.float64)
    if x.ndim != 2:
        raise RulesError(f"expected a 2-D feature matrix, got shape {x.shape}")
    if n_columns is not None and x.shape[1] != n_columns:
        raise RulesError(f"{x.shape[1]} feature columns but {n_columns} names")
    return x
