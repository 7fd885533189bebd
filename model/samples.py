"""The records of a sample's life: published, queued, scored.

A sample taken at time ``t`` is published as a :class:`Prediction`, waits in the learner's
pending queue as a :class:`Pending` until its label is known, and is reported as
:class:`Scored` once labelled. :func:`pending_state` and :func:`pending_from_state` give the
queue's exact array form for snapshots.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

__all__ = ["Pending", "Prediction", "Scored", "pending_from_state", "pending_state"]

Array = NDArray[np.float64]

_FLOATS = ("ref", "ret_bps", "linear_bps", "p_up")


@dataclass(frozen=True, slots=True)
class Prediction:
    """A prediction made at sample time ``t_ms`` with the weights of that time.

    Attributes
    ----------
    t_ms : int
        Sample event time, ms (a multiple of ``sample_ms``).
    ret_bps : float
        Predicted log return from ``t_ms`` to ``t_ms + horizon_ms``, bps.
    p_up : float
        Predicted probability that the return is positive, given that it is nonzero.
    ref_price : float
        Reference price at ``t_ms`` (mid, or last trade before any quote).
    model_version : int
        Updates the networks have applied (labels learned).
    linear_bps : float
        The online linear baseline's prediction, bps.
    hit_rate, ic, skill_vs_zero : float
        Rolling prequential metrics at ``t_ms`` (NaN until defined).
    n_scored : int
        Samples in the rolling window.
    """

    t_ms: int
    ret_bps: float
    p_up: float
    ref_price: float
    model_version: int
    linear_bps: float
    hit_rate: float
    ic: float
    skill_vs_zero: float
    n_scored: int


class Scored(NamedTuple):
    """A labelled sample: what was predicted at ``t_ms`` (bps) and what happened."""

    t_ms: int
    label_bps: float
    ret_bps: float
    linear_bps: float
    p_up: float


class Pending(NamedTuple):
    """A sample waiting for its label: its standardised inputs and what was forecast."""

    t_ms: int
    x: Array
    ref: float
    ret_bps: float
    linear_bps: float
    p_up: float
    experts: Array  # each expert's return prediction, bps


def pending_state(queue: Iterable[Pending], n_inputs: int, n_experts: int) -> dict[str, Any]:
    """The queue as arrays: ``t_ms`` (n,), ``x`` (n, n_inputs), ``experts`` (n, n_experts)
    and one (n,) column per float field."""
    items = list(queue)
    n = len(items)
    return {
        "t_ms": np.array([p.t_ms for p in items], dtype=np.int64),
        "x": np.array([p.x for p in items], dtype=np.float64).reshape(n, n_inputs),
        **{c: np.array([getattr(p, c) for p in items], dtype=np.float64) for c in _FLOATS},
        "experts": np.array([p.experts for p in items], dtype=np.float64).reshape(n, n_experts),
    }


def pending_from_state(state: dict[str, Any]) -> deque[Pending]:
    """Inverse of :func:`pending_state` (raises KeyError, IndexError or ValueError if
    malformed)."""
    x = np.asarray(state["x"], dtype=np.float64)
    outs = np.asarray(state["experts"], dtype=np.float64)
    ref, ret, lin, p_up = (np.asarray(state[c], dtype=np.float64) for c in _FLOATS)
    t_ms = [int(t) for t in state["t_ms"]]
    if not all(len(a) == len(t_ms) for a in (x, outs, ref, ret, lin, p_up)):
        raise ValueError("pending columns of unequal lengths")
    return deque(
        Pending(
            t, x[i].copy(), float(ref[i]), float(ret[i]), float(lin[i]), float(p_up[i]), outs[i]
        )
        for i, t in enumerate(t_ms)
    )
