"""A one-page PNG of a backtest: rolling hit rate and IC, a toy PnL, predicted vs realised.

Drawn with matplotlib's Agg backend (no display needed); matplotlib is the ``plot`` extra
(``pip install 'tickcast[plot]'``), and without it :func:`plot_backtest` raises
:class:`PlotUnavailable`, which the CLI prints as one line. The toy PnL trades the sign of each
prediction whose size beats the round-trip fee: every sample opens a position of ``1 / k`` of
the book (``k = horizon / sample interval``, the number of overlapping positions), held for the
horizon, so the curve is the cumulative return, in bps, of a book that is always at most fully
invested; fees are charged per side on each position opened.

The reference rules are drawn beside the learner: each symbol's best parameter-free rule
(highest IC over the run) as a dashed rolling-IC curve, the pooled hindsight least-squares IC
(which sees the future) as a dotted level, and every rule's pooled IC in the title.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tickcast.model.metrics import summarize
from tickcast.model.rules import best_rule, rule_forecasts
from tickcast.service import TickcastError

if TYPE_CHECKING:
    from tickcast.service.offline.backtest import BacktestResult

logger = logging.getLogger(__name__)

__all__ = ["PlotUnavailable", "plot_backtest", "rolling_mean", "toy_pnl"]


def rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean of ``x`` over ``window`` points (shorter at the start), shape of ``x``.

    Examples
    --------
    >>> rolling_mean(np.array([1.0, 2.0, 3.0, 4.0]), 2).tolist()
    [1.0, 1.5, 2.5, 3.5]
    """
    c = np.concatenate(([0.0], np.cumsum(x, dtype=np.float64)))
    n = np.arange(1, x.size + 1)
    lo = np.maximum(n - window, 0)
    out: np.ndarray = (c[n] - c[lo]) / (n - lo)
    return out


def _rolling_ic(y: np.ndarray, p: np.ndarray, window: int) -> np.ndarray:
    """Trailing Pearson correlation of ``y`` and ``p`` (NaN where undefined)."""
    my, mp = rolling_mean(y, window), rolling_mean(p, window)
    cov = rolling_mean(y * p, window) - my * mp
    vy = rolling_mean(y * y, window) - my * my
    vp = rolling_mean(p * p, window) - mp * mp
    with np.errstate(invalid="ignore", divide="ignore"):
        r: np.ndarray = cov / np.sqrt(vy * vp)
    r[(vy <= 1e-12) | (vp <= 1e-12)] = np.nan
    return r


def toy_pnl(label_bps: np.ndarray, ret_bps: np.ndarray, overlap: int, fee_bps: float) -> np.ndarray:
    """Cumulative toy PnL (bps) of trading the predicted sign; see the module docstring.

    Parameters
    ----------
    label_bps, ret_bps : ndarray, shape (n,)
        Realised and predicted returns of the samples, bps.
    overlap : int
        Positions open at once (horizon / sample interval); each is ``1 / overlap`` of the book.
    fee_bps : float
        Fee per side, bps; a position is opened only when ``|ret_bps| > 2 * fee_bps``.

    Examples
    --------
    >>> toy_pnl(np.array([1.0, -2.0, 3.0]), np.array([0.5, 0.5, -0.1]), 1, 0.0).tolist()
    [1.0, -1.0, -4.0]
    """
    trade = np.abs(ret_bps) > 2.0 * fee_bps
    pos = np.where(trade, np.sign(ret_bps), 0.0)
    per = (pos * label_bps - np.abs(pos) * 2.0 * fee_bps) / max(overlap, 1)
    out: np.ndarray = np.cumsum(per)
    return out


def _binned(p: np.ndarray, y: np.ndarray, bins: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Mean prediction and mean realised return per prediction quantile bin."""
    if p.size < bins:
        return p, y
    order = np.argsort(p, kind="stable")
    chunks = np.array_split(order, bins)
    return (
        np.array([p[c].mean() for c in chunks]),
        np.array([y[c].mean() for c in chunks]),
    )


def _reference_line(overall: dict[str, Any]) -> str:
    """A second title line: the pooled IC of the learner, of each rule and of the hindsight
    fit; empty without rules."""
    rules = overall.get("rules")
    if not rules:
        return ""
    parts = [f"learner {overall.get('ic', np.nan):.3f}"]
    parts += [f"{name} {fig['ic']:.3f}" for name, fig in rules.items()]
    hindsight = overall.get("hindsight_linear", {}).get("ic", np.nan)
    return (
        "\nIC, all symbols: "
        + ", ".join(parts)
        + " (parameter-free rules)"
        + f"; hindsight LS {hindsight:.3f} (sees the future)"
    )


class PlotUnavailable(TickcastError):  # noqa: N818 - read as a sentence at the CLI
    """matplotlib is not installed (the ``plot`` extra)."""


def _pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend.

    Raises
    ------
    PlotUnavailable
        When matplotlib is not installed; the message names the extra that brings it.
    """
    try:
        import matplotlib
    except ImportError as exc:
        raise PlotUnavailable(
            "plotting needs matplotlib, which is not installed: "
            "pip install 'tickcast[plot]' (the plot extra)"
        ) from exc
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_backtest(
    result: BacktestResult,
    path: str | Path,
    *,
    fee_bps: float = 0.5,
    window: int = 3000,
    sample_ms: int = 100,
) -> Path:
    """Write the backtest PNG to ``path`` and return it.

    Parameters
    ----------
    result : BacktestResult
        The run to draw.
    path : str or Path
        Output file (PNG).
    fee_bps : float
        Fee per side of the toy PnL, bps.
    window : int
        Rolling window of the hit-rate and IC curves, in samples.
    sample_ms : int
        Sample interval (sets the number of overlapping toy positions).
    """
    plt = _pyplot()

    path = Path(path)
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    ax_hit, ax_ic, ax_pnl, ax_cal = axes.ravel()
    overlap = max(1, result.horizon_ms // max(sample_ms, 1))
    pooled_p: list[np.ndarray] = []
    pooled_y: list[np.ndarray] = []
    for symbol, rec in sorted(result.symbols.items()):
        cols = rec.arrays()
        if cols["t_ms"].size == 0:
            continue
        t = (cols["t_ms"] - cols["t_ms"][0]) / 60_000.0
        y, p = cols["label_bps"], cols["ret_bps"]
        nz = y != 0.0
        hits = np.where(p[nz] == 0.0, 0.5, (np.sign(p[nz]) == np.sign(y[nz])).astype(float))
        ax_hit.plot(t[nz], rolling_mean(hits, window), lw=1, label=symbol)
        line = ax_ic.plot(t, _rolling_ic(y, p, window), lw=1, label=symbol)[0]
        rules = rule_forecasts(cols["raw"], rec.feature_names) if rec.feature_names else {}
        best = best_rule({name: summarize(y, f).ic for name, f in rules.items()})
        if best is not None:
            ax_ic.plot(
                t,
                _rolling_ic(y, rules[best], window),
                lw=1,
                ls="--",
                color=line.get_color(),
                label=f"{symbol} rule {best}",
            )
        ax_pnl.plot(t, toy_pnl(y, p, overlap, 0.0), lw=1, label=f"{symbol} gross")
        ax_pnl.plot(t, toy_pnl(y, p, overlap, fee_bps), lw=1, ls="--", label=f"{symbol} net")
        pooled_p.append(p)
        pooled_y.append(y)
    if pooled_p:
        bp, by = _binned(np.concatenate(pooled_p), np.concatenate(pooled_y))
        ax_cal.plot(bp, by, "o-", ms=4, label="mean realised per prediction bin")
        lo, hi = float(min(bp.min(), by.min())), float(max(bp.max(), by.max()))
        ax_cal.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls=":", label="y = x")
    ax_hit.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax_ic.axhline(0.0, color="grey", lw=0.8, ls=":")
    overall = result.to_dict()["overall"] if result.symbols else {}
    hindsight_ic = overall.get("hindsight_linear", {}).get("ic", np.nan)
    if np.isfinite(hindsight_ic):
        label = f"hindsight LS, all symbols (sees the future): {hindsight_ic:.3f}"
        ax_ic.axhline(hindsight_ic, color="black", lw=1, ls=":", label=label)
    ax_hit.set(title=f"rolling hit rate ({window} samples)", xlabel="minutes", ylabel="hit rate")
    ax_ic.set(title=f"rolling IC ({window} samples)", xlabel="minutes", ylabel="IC")
    ax_pnl.set(
        title=f"toy PnL: trade the sign, fee {fee_bps:g} bps/side",
        xlabel="minutes",
        ylabel="cumulative bps",
    )
    ax_cal.set(title="predicted vs realised", xlabel="predicted bps", ylabel="realised bps")
    for ax in axes.ravel():
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7, loc="best")
    fig.suptitle(
        f"tickcast backtest: horizon {result.horizon_ms} ms, {result.n_ticks} ticks"
        + _reference_line(overall)
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    logger.info("wrote %s", path)
    return path
