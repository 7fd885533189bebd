"""``tickcast backtest`` and its engine: figures, JSON, plot, on the simulator and real data."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tickcast.model.features import StreamingFeatures
from tickcast.model.metrics import summarize
from tickcast.service.cli import main
from tickcast.service.commands.backtest import ProgressBar, format_table
from tickcast.service.offline.backtest import Backtest, json_ready
from tickcast.service.offline.readers import read_ticks
from tickcast.service.sim.market import SyntheticMarket

REQUIRED = ("n_samples", "hit_rate", "ic", "skill_vs_zero", "skill_vs_linear", "ticks_per_s")
RULE_NAMES = ["book_imbalance", "microprice_dev", "trade_flow_1000"]


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


# -- the reference rules and the hindsight fit -----------------------------------------------


@pytest.fixture(scope="module")
def full_run(
    tmp_path_factory: pytest.TempPathFactory, binance_recording: Path
) -> tuple[dict[str, Any], str]:
    """``tickcast backtest --json`` of the whole shared recording: the JSON and the table."""
    out = tmp_path_factory.mktemp("full") / "full.json"
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        argv = ["backtest", str(binance_recording), "--no-progress", "--json", str(out)]
        assert main(argv) == 0
    return json.loads(out.read_text()), text.getvalue()


def test_every_backtest_reports_the_rules_and_the_hindsight_fit(
    full_run: tuple[dict[str, Any], str],
) -> None:
    figures, _ = full_run
    overall = figures["overall"]
    assert overall["n_samples"] > 3000
    for fig in (overall, figures["symbols"]["BTC/USDT:USDT"]):
        assert list(fig["rules"]) == RULE_NAMES
        ics = {name: rule["ic"] for name, rule in fig["rules"].items()}
        assert all(0.0 <= rule["hit_rate"] <= 1.0 for rule in fig["rules"].values())
        assert fig["best_rule"] == max(ics, key=ics.__getitem__) == "book_imbalance"
        assert fig["best_rule_ic"] == ics["book_imbalance"]
        hindsight = fig["hindsight_linear"]
        assert hindsight["sees_future"] is True
        assert hindsight["n_samples"] == fig["n_samples"]
        assert 0.0 <= hindsight["hit_rate"] <= 1.0 and 0.0 < hindsight["skill_vs_zero"] < 1.0
        # the in-sample fit on every feature beats any single feature and the learner
        assert hindsight["ic"] >= max(ics.values())
        assert hindsight["ic"] >= fig["ic"]
        assert hindsight["ic"] >= fig["linear_ic"]
    # the raw book imbalance alone carries an IC of about 0.2 on this recording
    assert 0.18 <= overall["rules"]["book_imbalance"]["ic"] <= 0.23


def test_the_table_shows_the_reference_block(full_run: tuple[dict[str, Any], str]) -> None:
    figures, text = full_run
    assert text == format_table(figures) + "\n"
    block = text.split("reference rules (parameter-free, same samples)")[1]
    for name in RULE_NAMES:
        assert f"rule {name}" in block
    assert "best rule: book_imbalance" in block and "hindsight LS (sees the future)" in block
    ic = figures["overall"]["rules"]["book_imbalance"]["ic"]
    assert f"{ic:.4f}" in block
    assert max(len(line) for line in text.splitlines()) <= 100


def test_the_rules_read_the_features_of_each_scored_sample_at_its_time(
    recording_slice: Path,
) -> None:
    # short gaps allowed, so that samples pending at a gap are dropped unscored
    engine = Backtest({"max_gap_ms": 100})
    result = engine.run(read_ticks([recording_slice]))
    rec = result.symbols["BTC/USDT:USDT"]
    assert rec.learner.n_gap_dropped > 0
    cols = rec.arrays()
    t_ms, raw = cols["t_ms"], cols["raw"]
    assert raw.shape == (t_ms.size, len(rec.feature_names)) and t_ms.size > 100
    # the rows of samples dropped at the gaps were let go
    assert all(t > t_ms[-1] for t in rec.pending_raw)
    assert len(rec.pending_raw) <= rec.learner.max_pending
    # replay: the features as of each scored sample's time, i.e. of the ticks before it
    features = StreamingFeatures(rec.learner.hyperparameters()["feature_windows_ms"])
    assert features.names == rec.feature_names
    expected, i = [], 0
    for tick in read_ticks([recording_slice]):
        while i < t_ms.size and t_ms[i] <= tick.event_ms:
            expected.append(features.values(int(t_ms[i])))
            i += 1
        features.update(tick)
    assert i == t_ms.size
    np.testing.assert_array_equal(raw, np.array(expected))
    rules = result.to_dict()["overall"]["rules"]
    for name in RULE_NAMES:
        column = raw[:, rec.feature_names.index(name)]
        assert rules[name]["ic"] == pytest.approx(summarize(cols["label_bps"], column).ic)


def test_a_simulated_backtest_reports_the_rules_per_symbol_and_pooled() -> None:
    market = SyntheticMarket(seed=5)
    result = Backtest({"horizon_ms": 500}, oracle=market.oracle).run(market.ticks(30.0))
    figures = result.to_dict()
    for fig in [figures["overall"], *figures["symbols"].values()]:
        assert list(fig["rules"]) == RULE_NAMES
        assert fig["hindsight_linear"]["ic"] >= fig["best_rule_ic"]
    assert figures["overall"]["hindsight_linear"]["n_samples"] == figures["overall"]["n_samples"]
