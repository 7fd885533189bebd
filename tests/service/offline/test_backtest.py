"""``tickcast backtest`` and its engine: figures, JSON, plot, on the simulator and real data."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest

from tickcast.model.metrics import summarize
from tickcast.service.cli import main
from tickcast.service.commands.backtest import ProgressBar, format_table
from tickcast.service.offline.backtest import Backtest, json_ready
from tickcast.service.sim.market import SyntheticMarket

REQUIRED = ("n_samples", "hit_rate", "ic", "skill_vs_zero", "skill_vs_linear", "ticks_per_s")


@pytest.fixture(scope="module")
def recording_slice(tmp_path_factory: pytest.TempPathFactory, binance_recording: Path) -> Path:
    """The first 12,000 lines (about 45 s) of the real BTCUSDT recording, gzipped."""
    path = tmp_path_factory.mktemp("data") / "btcusdt-head.gz"
    with gzip.open(binance_recording, "rb") as src, gzip.open(path, "wb") as dst:
        for i, line in enumerate(src):
            if i == 12_000:
                break
            dst.write(line)
    return path


def _check_figures(figures: dict[str, object], *, bayes: bool) -> None:
    for key in REQUIRED:
        assert key in figures, key
    assert isinstance(figures["n_samples"], int) and figures["n_samples"] > 100
    assert 0.0 <= figures["hit_rate"] <= 1.0  # type: ignore[operator]
    assert -1.0 <= figures["ic"] <= 1.0  # type: ignore[operator]
    assert figures["skill_vs_zero"] <= 1.0  # type: ignore[operator]
    assert figures["ticks_per_s"] > 0  # type: ignore[operator]
    assert ("bayes_hit_rate" in figures) == bayes
    if bayes:
        assert 0.5 < figures["bayes_hit_rate"] <= 1.0  # type: ignore[operator]


def test_a_short_simulated_backtest_writes_json_and_a_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, png = tmp_path / "sim.json", tmp_path / "sim.png"
    argv = ["backtest", "--sim", "--sim-seconds", "90", "--seed", "3", "--json", str(out)]
    assert main([*argv, "--plot", str(png)]) == 0
    figures = json.loads(out.read_text())
    assert set(figures) >= {"overall", "symbols", "settings"}
    assert set(figures["symbols"]) == {"BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"}
    _check_figures(figures["overall"], bayes=True)
    for sym in figures["symbols"].values():
        _check_figures(sym, bayes=True)
    total = sum(s["n_samples"] for s in figures["symbols"].values())
    assert figures["overall"]["n_samples"] == total
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = capsys.readouterr().out
    assert "BTC/USDT:USDT" in table and "overall" in table and "bayes" in table


def test_a_backtest_of_real_data_learns_something(
    recording_slice: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "real.json"
    argv = ["backtest", str(recording_slice), "--horizon-ms", "1000", "--sample-ms", "100"]
    assert main([*argv, "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert list(figures["symbols"]) == ["BTC/USDT:USDT"]
    overall = figures["overall"]
    _check_figures(overall, bayes=False)
    only = figures["symbols"]["BTC/USDT:USDT"]
    assert (overall["hit_rate"], overall["ic"]) == (only["hit_rate"], only["ic"])
    assert overall["n_ticks"] > 10_000
    assert overall["ic"] > 0.0  # even 45 s of book imbalance carries some signal
    assert figures["settings"]["horizon_ms"] == 1000
    assert "BTC/USDT:USDT" in capsys.readouterr().out


def test_model_options_reach_the_learner(recording_slice: Path, tmp_path: Path) -> None:
    out = tmp_path / "opts.json"
    argv = ["backtest", str(recording_slice), "--hidden", "8,4", "--lr", "0.001"]
    assert main([*argv, "--model-seed", "5", "--sample-ms", "200", "--json", str(out)]) == 0
    settings = json.loads(out.read_text())["settings"]
    assert settings["hidden"] == [8, 4] and settings["lr"] == 0.001
    assert settings["seed"] == 5 and settings["sample_ms"] == 200


def test_the_symbol_filter_keeps_only_the_named_symbols(tmp_path: Path) -> None:
    out = tmp_path / "one.json"
    argv = ["backtest", "--sim", "--sim-seconds", "30", "--symbols", "ETH/USDT:USDT"]
    assert main([*argv, "--json", str(out)]) == 0
    assert list(json.loads(out.read_text())["symbols"]) == ["ETH/USDT:USDT"]


def test_bad_arguments_are_reported_not_raised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["backtest"]) == 2
    assert main(["backtest", "--sim", "--symbols", "DOGE/USDT:USDT"]) == 2
    assert main(["backtest", str(tmp_path / "missing.gz")]) == 2
    assert "error" in capsys.readouterr().err


def test_overall_figures_pool_every_symbols_samples() -> None:
    market = SyntheticMarket(seed=4)
    engine = Backtest({"horizon_ms": 500}, oracle=market.oracle)
    result = engine.run(market.ticks(40.0))
    figures = result.to_dict()
    cols = [rec.arrays() for rec in result.symbols.values()]
    y = np.concatenate([c["label_bps"] for c in cols])
    p = np.concatenate([c["ret_bps"] for c in cols])
    lin = np.concatenate([c["linear_bps"] for c in cols])
    pooled = summarize(y, p, lin)
    assert figures["overall"]["n_samples"] == pooled.n_scored == y.size
    assert figures["overall"]["ic"] == pytest.approx(pooled.ic)
    assert figures["overall"]["skill_vs_linear"] == pytest.approx(pooled.skill_vs_linear)
    for name, rec in result.symbols.items():
        assert figures["symbols"][name]["n_samples"] == rec.learner.n_scored
        # the per-symbol figures are the learner's own cumulative prequential metrics
        assert figures["symbols"][name]["ic"] == pytest.approx(rec.learner.metrics.cumulative().ic)
    assert all(np.isfinite(c["expected_bps"]).all() for c in cols)


def test_json_ready_replaces_non_finite_numbers() -> None:
    data = {"a": math.nan, "b": [1.0, math.inf], "c": np.float64(2.5), "d": np.int64(3)}
    assert json_ready(data) == {"a": None, "b": [1.0, None], "c": 2.5, "d": 3}
    json.dumps(json_ready(data), allow_nan=False)


def test_the_table_shows_a_dash_for_undefined_figures() -> None:
    row = {"n_ticks": 10, "n_samples": 0, "hit_rate": math.nan, "ic": math.nan}
    text = format_table({"overall": row, "symbols": {"X/USDT:USDT": row}})
    assert text.splitlines()[1].startswith("X/USDT:USDT") and " - " in text


def test_the_progress_bar_draws_a_bar_when_the_span_is_known(tmp_path: Path) -> None:
    path = tmp_path / "bar.txt"
    with path.open("w") as stream:
        bar = ProgressBar(stream, start_ms=0, end_ms=1000, interval=0.0)
        bar(100, 500)
        bar.close()
    text = path.read_text()
    assert " 50.0%" in text and text.endswith("\n")
