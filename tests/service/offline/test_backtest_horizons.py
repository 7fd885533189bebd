"""``tickcast backtest --horizons``: every horizon reported, each exactly what a backtest of
that horizon alone reports, in the table, the reference blocks and the JSON."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from tickcast.service.cli import main
from tickcast.service.commands.backtest import format_table
from tickcast.service.offline.backtest import Backtest
from tickcast.service.offline.readers import read_ticks
from tickcast.service.offline.training import WarmBacktest, train
from tickcast.service.sim.market import SyntheticMarket

SYMBOL = "BTC/USDT:USDT"
#: Figures of the wall clock: the only ones that differ between two runs of the same ticks.
TIMING = {"ticks_per_s", "wall_s"}


def backtest(tmp_path: Path, *argv: str) -> tuple[dict[str, Any], str]:
    """Run ``tickcast backtest ARGV --json``; the JSON and the printed table."""
    out = tmp_path / f"bt-{len(list(tmp_path.iterdir()))}.json"
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        assert main(["backtest", *argv, "--no-progress", "--json", str(out)]) == 0
    return json.loads(out.read_text()), text.getvalue()


def untimed(view: dict[str, Any]) -> dict[str, Any]:
    """``{"overall", "symbols"}`` without the wall-clock figures."""
    return {
        "overall": {k: v for k, v in view["overall"].items() if k not in TIMING},
        "symbols": {
            s: {k: v for k, v in fig.items() if k not in TIMING}
            for s, fig in view["symbols"].items()
        },
    }


@pytest.fixture(scope="module")
def two_horizons(
    tmp_path_factory: pytest.TempPathFactory, binance_recording: Path
) -> tuple[dict[str, Any], str]:
    """``--horizons 1000,5000`` on the whole shared recording."""
    return backtest(tmp_path_factory.mktemp("h"), str(binance_recording), "--horizons", "1000,5000")


def test_each_horizon_reports_what_a_backtest_of_that_horizon_alone_reports(
    two_horizons: tuple[dict[str, Any], str], binance_recording: Path, tmp_path: Path
) -> None:
    figures, _ = two_horizons
    assert list(figures["horizons"]) == ["1000", "5000"]
    assert figures["settings"]["horizon_ms"] == 1000
    assert figures["settings"]["extra_horizons_ms"] == [5000]
    # the top level keeps the single-horizon layout: the first horizon's figures
    assert untimed(figures) == untimed(figures["horizons"]["1000"])
    for horizon in ("1000", "5000"):
        alone, _ = backtest(tmp_path, str(binance_recording), "--horizon-ms", horizon)
        assert "horizons" not in alone and "extra_horizons_ms" not in alone["settings"]
        assert untimed(figures["horizons"][horizon]) == untimed(alone), horizon
        overall = figures["horizons"][horizon]["overall"]
        assert overall["n_samples"] > 3000 and list(overall["rules"]) == [
            "book_imbalance",
            "microprice_dev",
            "trade_flow_1000",
        ]
    one, five = (figures["horizons"][h]["overall"] for h in ("1000", "5000"))
    assert one["n_ticks"] == five["n_ticks"] > 80_000
    assert one["n_samples"] > five["n_samples"], "the last 5 s of samples are never labelled"


def test_the_table_has_a_row_per_symbol_and_horizon_and_a_reference_block_per_horizon(
    two_horizons: tuple[dict[str, Any], str],
) -> None:
    figures, text = two_horizons
    assert text == format_table(figures) + "\n"
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["symbol", "horizon", "ticks"]
    assert [line.split()[:2] for line in lines[1:5]] == [
        [SYMBOL, "1000"],
        [SYMBOL, "5000"],
        ["overall", "1000"],
        ["overall", "5000"],
    ]
    blocks = text.split("reference rules (parameter-free, same samples), horizon ")[1:]
    assert [b.split(" ms\n")[0] for b in blocks] == ["1000", "5000"]
    for block, horizon in zip(blocks, ("1000", "5000"), strict=True):
        overall = figures["horizons"][horizon]["overall"]
        assert "best rule:" in block and f"{overall['best_rule_ic']:.4f}" in block
    assert max(len(line) for line in lines) <= 100


def test_one_horizon_prints_the_table_as_before(tmp_path: Path, binance_recording: Path) -> None:
    figures, text = backtest(tmp_path, str(binance_recording), "--horizons", "1000")
    assert "horizons" not in figures
    assert text.splitlines()[0].split()[:2] == ["symbol", "ticks"]
    assert "reference rules (parameter-free, same samples)\n" in text


@pytest.mark.parametrize(
    "argv",
    [
        ["--horizons", "1000,1000"],
        ["--horizons", "1000,x"],
        ["--horizons", "0,1000"],
        ["--horizons", "1000,5000", "--horizon-ms", "2000"],
    ],
)
def test_bad_horizons_stop_the_command_in_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["backtest", "--sim", *argv])
    assert stop.value.code == 2
    assert "--horizon" in capsys.readouterr().err


def test_the_simulator_gives_each_horizon_its_own_bayes_rate() -> None:
    market = SyntheticMarket(seed=5)
    engine = Backtest({"horizon_ms": 500}, oracle=market.oracle, extra_horizons_ms=[2000])
    figures = engine.run(market.ticks(30.0)).to_dict()
    bayes = {h: view["overall"]["bayes_hit_rate"] for h, view in figures["horizons"].items()}
    assert set(bayes) == {"500", "2000"} and bayes["500"] != bayes["2000"]
    assert all(0.5 < b <= 1.0 for b in bayes.values())


def test_a_warm_backtest_starts_the_first_horizon_from_the_model(binance_recording: Path) -> None:
    ticks = list(read_ticks([binance_recording]))[:15_000]
    model = train(ticks, {"horizon_ms": 1000}).learner.model_state()
    engine = WarmBacktest({"horizon_ms": 1000}, model, extra_horizons_ms=[5000])
    engine.feed(ticks[0])
    first, other = (engine.by_horizon[h][SYMBOL].learner for h in (1000, 5000))
    assert first.model_version > 0 and other.model_version == 0
