"""``tickcast backtest``: recorded files (or the synthetic market) through the live learner.

Ticks go through the parser, the streaming features and one online learner per symbol exactly
as the live worker feeds them; the command prints a per-symbol table of prequential figures
(every scored sample counts, warm-up included), then the reference rules on the same samples
(parameter-free forecasts read off one feature, and the hindsight least-squares fit, which
sees the future), and can write them as JSON and draw a PNG.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any, TextIO

from tickcast.service import TickcastError

__all__ = ["BacktestError", "ProgressBar", "register", "run"]


class BacktestError(TickcastError):
    """Bad backtest arguments (no source, unknown symbol, bad model option)."""


def _hidden(text: str) -> tuple[int, ...]:
    """Parse ``--hidden``: comma-separated widths (``32,16``); ``0`` or empty is linear."""
    text = text.strip()
    if text in ("", "0"):
        return ()
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected widths like 32,16, got {text!r}") from exc
    if any(w < 1 for w in widths):
        raise argparse.ArgumentTypeError(f"widths must be >= 1, got {text!r}")
    return widths


def parse_horizons(text: str) -> list[int]:
    """Parse ``--horizons``: comma-separated distinct positive horizons in ms, the main one
    first (``1000,10000``).

    Examples
    --------
    >>> parse_horizons("1000, 10000")
    [1000, 10000]
    """
    try:
        horizons = [int(part) for part in text.split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected ms like 1000,10000, got {text!r}") from exc
    if any(h < 1 for h in horizons) or len(set(horizons)) != len(horizons):
        raise argparse.ArgumentTypeError(f"horizons must be distinct and >= 1 ms, got {text!r}")
    return horizons


def _symbols(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def add_model_options(p: argparse.ArgumentParser, *, horizons: bool = False) -> None:
    """The learner's options of ``backtest`` and ``train`` (read by :func:`learner_kwargs`);
    with ``horizons``, ``--horizons`` too, instead of ``--horizon-ms`` (``backtest``)."""
    clock = p.add_mutually_exclusive_group() if horizons else p
    clock.add_argument("--horizon-ms", type=int, default=1000, help="label horizon, ms")
    if horizons:
        clock.add_argument(
            "--horizons",
            type=parse_horizons,
            metavar="MS,MS...",
            help="several label horizons, ms, each reported (e.g. 500,1000,10000; the first is "
            "the main one: the plot's); default: --horizon-ms alone",
        )
    p.add_argument("--sample-ms", type=int, default=100, help="sample interval, ms")
    m = p.add_argument_group("model options (defaults: the live learner's)")
    m.add_argument("--hidden", type=_hidden, help="hidden widths, e.g. 32,16 (0: linear)")
    m.add_argument(
        "--lr", type=float, help="network step per label (a sample's: lr / overlapping labels)"
    )
    m.add_argument("--activation", choices=("tanh", "relu"), help="hidden activation")
    m.add_argument("--model-seed", type=int, help="seed of the initial weights")
    m.add_argument("--rolling-window", type=int, help="rolling-metrics window, samples")
    m.add_argument("--max-gap-ms", type=int, help="longest silence sampled through, ms")


def register(subparsers: Any) -> None:
    """Add the ``backtest`` subcommand."""
    p = subparsers.add_parser(
        "backtest",
        help="replay recorded files or the synthetic market through the online learner",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="recorded tick files (any format)")
    p.add_argument("--sim", action="store_true", help="use the seeded synthetic market")
    p.add_argument("--sim-seconds", type=float, default=600.0, help="market seconds with --sim")
    p.add_argument("--symbols", type=_symbols, help="comma-separated unified symbols to keep")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic market")
    p.add_argument("--json", type=Path, metavar="PATH", help="write the figures as JSON")
    p.add_argument("--plot", type=Path, metavar="PATH", help="write a PNG of the run")
    p.add_argument("--fee-bps", type=float, default=0.5, help="toy PnL fee per side, bps")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument(
        "--init", type=Path, metavar="MODEL", help="start every symbol from a trained model"
    )
    add_model_options(p, horizons=True)
    p.set_defaults(func=run)


def extra_horizons(args: argparse.Namespace) -> list[int]:
    """The horizons ``--horizons`` gives after its first (none without it)."""
    return list(getattr(args, "horizons", None) or ())[1:]


def learner_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`~tickcast.model.learner.OnlineLearner` arguments the options set (with
    ``--horizons``, of its first horizon)."""
    several = getattr(args, "horizons", None)
    horizon = several[0] if several else args.horizon_ms
    kwargs: dict[str, Any] = {"horizon_ms": horizon, "sample_ms": args.sample_ms}
    options = {
        "hidden": args.hidden,
        "lr": args.lr,
        "activation": args.activation,
        "seed": args.model_seed,
        "rolling_window": args.rolling_window,
        "max_gap_ms": args.max_gap_ms,
    }
    kwargs.update({k: v for k, v in options.items() if v is not None})
    return kwargs


class ProgressBar:
    """A one-line progress report on a terminal, redrawn at most every ``interval`` seconds.

    With a known event-time span it draws a bar; otherwise it shows ticks, rate and the event
    time reached.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        interval: float = 0.25,
    ) -> None:
        self.stream = stream
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.interval = interval
        self._t0 = time.perf_counter()
        self._last = 0.0
        self._drawn = False

    def __call__(self, n_ticks: int, event_ms: int) -> None:
        """Report that ``n_ticks`` ticks were processed, the latest at ``event_ms``."""
        now = time.perf_counter()
        if now - self._last < self.interval:
            return
        self._last = now
        rate = n_ticks / max(now - self._t0, 1e-9)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(event_ms / 1000.0))
        if self.start_ms is not None and self.end_ms is not None and self.end_ms > self.start_ms:
            frac = min(1.0, max(0.0, (event_ms - self.start_ms) / (self.end_ms - self.start_ms)))
            filled = int(30 * frac)
            bar = "#" * filled + "-" * (30 - filled)
            line = f"[{bar}] {100 * frac:5.1f}%  {n_ticks:,} ticks  {rate:,.0f}/s"
        else:
            line = f"{n_ticks:,} ticks  {rate:,.0f}/s  at {stamp} UTC"
        self.stream.write("\r" + line)
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """End the line if anything was drawn."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()


_COLUMNS = (
    ("symbol", "{:<16}", "symbol"),
    ("n_ticks", "{:>9,}", "ticks"),
    ("n_samples", "{:>8,}", "samples"),
    ("hit_rate", "{:>7.4f}", "hit"),
    ("ic", "{:>7.4f}", "IC"),
    ("skill_vs_zero", "{:>8.4f}", "skill0"),
    ("skill_vs_linear", "{:>8.4f}", "skill_lin"),
    ("linear_ic", "{:>7.4f}", "lin_IC"),
    ("bayes_hit_rate", "{:>7.4f}", "bayes"),
    ("ticks_per_s", "{:>10,.0f}", "ticks/s"),
)


def format_table(figures: dict[str, Any]) -> str:
    """The per-symbol table (plus an ``overall`` row) as text, then the reference block
    (:func:`format_references`) when the figures carry the reference rules. With several
    horizons (``figures["horizons"]``), a row per (symbol, horizon) and a reference block per
    horizon."""
    views = _horizon_views(figures)
    with_bayes = "bayes_hit_rate" in figures["overall"]
    cols = [c for c in _COLUMNS if with_bayes or c[0] != "bayes_hit_rate"]
    if len(views) > 1:
        cols.insert(1, _HORIZON_COLUMN)
    widths = [len(fmt.format(0 if key != "symbol" else "")) for key, fmt, _ in cols]
    header = " ".join(
        f"{title:<{w}}" if key == "symbol" else f"{title:>{w}}"
        for (key, _, title), w in zip(cols, widths, strict=True)
    )
    rows = [header]
    for name in [*sorted(figures["symbols"]), "overall"]:
        for horizon, view in views:
            fig = view["overall"] if name == "overall" else view["symbols"][name]
            cells = []
            for (key, fmt, _), w in zip(cols, widths, strict=True):
                value = {"symbol": name, "horizon_ms": horizon}.get(key, fig.get(key))
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    cells.append(f"{'-':>{w}}")
                else:
                    cells.append(fmt.format(value))
            rows.append(" ".join(cells))
    references = "\n\n".join(
        block for horizon, view in views if (block := format_references(view, horizon))
    )
    return "\n".join(rows) + ("\n\n" + references if references else "")


_HORIZON_COLUMN = ("horizon_ms", "{:>7}", "horizon")


def _horizon_views(figures: dict[str, Any]) -> list[tuple[int | None, dict[str, Any]]]:
    """``(horizon_ms, {"overall", "symbols"})`` of each horizon of ``figures["horizons"]``;
    ``[(None, figures)]`` for the figures of one horizon."""
    several = figures.get("horizons")
    if several:
        return [(int(h), view) for h, view in several.items()]
    return [(None, figures)]


_REF_TITLE = "reference rules (parameter-free, same samples)"
_HINDSIGHT = "hindsight LS (sees the future)"


def format_references(figures: dict[str, Any], horizon_ms: int | None = None) -> str:
    """The reference block as text, per symbol and overall: each rule's IC and hit rate, the
    best rule, the learner and its online linear baseline beside them, and the hindsight
    least-squares fit on all features (which sees the future); empty without ``rules``.
    ``horizon_ms``: named in the title (one block per horizon)."""
    named = [*sorted(figures["symbols"].items()), ("overall", figures["overall"])]
    if not any("rules" in fig for _, fig in named):
        return ""
    title = _REF_TITLE if horizon_ms is None else f"{_REF_TITLE}, horizon {horizon_ms} ms"
    rows = [title, f"{'symbol':<16} {'forecast':<32} {'IC':>7} {'hit':>7}"]
    for name, fig in named:
        if "rules" not in fig:
            continue
        lines: list[tuple[str, Any, Any]] = [
            (f"rule {rule}", values.get("ic"), values.get("hit_rate"))
            for rule, values in fig["rules"].items()
        ]
        best = fig.get("best_rule")
        best_hit = fig["rules"][best].get("hit_rate") if best in fig["rules"] else None
        lines.append((f"best rule: {best or '-'}", fig.get("best_rule_ic"), best_hit))
        lines.append(("learner", fig.get("ic"), fig.get("hit_rate")))
        lines.append(("online linear", fig.get("linear_ic"), fig.get("linear_hit_rate")))
        hindsight = fig.get("hindsight_linear") or {}
        lines.append((_HINDSIGHT, hindsight.get("ic"), hindsight.get("hit_rate")))
        for i, (label, ic, hit) in enumerate(lines):
            symbol = name if i == 0 else ""
            rows.append(f"{symbol:<16} {label:<32} {_cell(ic)} {_cell(hit)}")
    return "\n".join(rows)


def _cell(value: Any) -> str:
    """A figure as a 7-wide cell: four decimals, or a dash when undefined."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{'-':>7}"
    return f"{value:>7.4f}"


def run(args: argparse.Namespace) -> int:
    """Run the backtest; print the table; write the JSON and the PNG when asked."""
    from tickcast.service.offline.backtest import Backtest, json_ready
    from tickcast.service.offline.modelfile import load_init_model
    from tickcast.service.offline.training import WarmBacktest

    if bool(args.files) == bool(args.sim):
        raise BacktestError("give recorded FILEs or --sim (one of the two)")
    kwargs, extra = learner_kwargs(args), extra_horizons(args)
    init = None if args.init is None else load_init_model(args.init, kwargs)
    show = not args.no_progress and sys.stderr.isatty()
    if args.sim:
        ticks, oracle, bar = _sim_source(args, show)
    else:
        ticks, oracle, bar = _file_source(args, show)
    try:
        if init is None:
            engine = Backtest(kwargs, oracle=oracle, extra_horizons_ms=extra)
        else:
            engine = WarmBacktest(
                kwargs, init, oracle=oracle, model_path=str(args.init), extra_horizons_ms=extra
            )
        result = engine.run(ticks, progress=bar)
    except (ValueError, ArithmeticError) as exc:
        raise BacktestError(f"backtest failed: {exc}") from exc
    finally:
        if bar is not None:
            bar.close()
    if not result.symbols:
        raise BacktestError("no ticks to backtest (check the files and --symbols)")
    figures = result.to_dict()
    figures["settings"] = {**engine.settings(), "source": "sim" if args.sim else args.files}
    print(format_table(figures))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(json_ready(figures), indent=2) + "\n")
    if args.plot is not None:
        from tickcast.service.offline.plot import plot_backtest

        plot_backtest(
            result,
            args.plot,
            fee_bps=args.fee_bps,
            window=int(figures["settings"]["rolling_window"]),
            sample_ms=args.sample_ms,
        )
    return 0


def _sim_source(args: argparse.Namespace, show: bool) -> tuple[Any, Any, ProgressBar | None]:
    from tickcast.service.sim.market import DEFAULT_SYMBOLS, SyntheticMarket

    specs = list(DEFAULT_SYMBOLS)
    if args.symbols:
        known = {s.symbol: s for s in specs}
        unknown = [s for s in args.symbols if s not in known]
        if unknown:
            raise BacktestError(f"unknown simulated symbols {unknown}; known: {sorted(known)}")
        specs = [known[s] for s in args.symbols]
    if not args.sim_seconds > 0:
        raise BacktestError("--sim-seconds must be positive")
    market = SyntheticMarket(specs, seed=args.seed)
    start = market.start_ms
    bar = ProgressBar(sys.stderr, start_ms=start, end_ms=start + int(1000 * args.sim_seconds))
    return market.ticks(args.sim_seconds), market.oracle, bar if show else None


def _file_source(args: argparse.Namespace, show: bool) -> tuple[Any, Any, ProgressBar | None]:
    from tickcast.service.offline.readahead import read_ahead
    from tickcast.service.offline.readers import read_ticks

    missing = [f for f in args.files if not Path(f).is_file()]
    if missing:
        raise BacktestError(f"no such file: {', '.join(missing)}")
    ticks = read_ahead(partial(read_ticks, args.files, symbols=args.symbols))
    return ticks, None, ProgressBar(sys.stderr) if show else None
