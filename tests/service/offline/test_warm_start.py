"""Model files, ``tickcast train`` and ``backtest --init``: round trip, refusals, warm starts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tickcast.model.learner import MODEL_VERSION, OnlineLearner, Prediction
from tickcast.service.cli import main
from tickcast.service.offline.backtest import Backtest
from tickcast.service.offline.modelfile import (
    ModelFileError,
    check_model,
    load_init_model,
    load_model,
    read_model,
    save_model,
)
from tickcast.service.offline.readers import read_ticks
from tickcast.service.offline.tickjson import encode_many
from tickcast.service.offline.training import TrainError, WarmBacktest, train
from tickcast.service.sim.market import DEFAULT_SYMBOLS, SyntheticMarket
from tickcast.service.ticks import Tick

BTC = "BTC/USDT:USDT"


def sim_ticks(seconds: float, seed: int, *symbols: str) -> list[Tick]:
    specs = [s for s in DEFAULT_SYMBOLS if s.symbol in symbols]
    return list(SyntheticMarket(specs, seed=seed).ticks(seconds))


@pytest.fixture(scope="module")
def recording_ticks(binance_recording: Path) -> list[Tick]:
    """Every tick of the shared BTCUSDT recording, in event-time order."""
    return list(read_ticks([binance_recording]))


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory: pytest.TempPathFactory, binance_recording: Path) -> Path:
    """``tickcast train`` on the whole shared recording."""
    out = tmp_path_factory.mktemp("model") / "btc.model"
    assert main(["train", str(binance_recording), "--out", str(out), "--no-progress"]) == 0
    return out


def assert_same_tree(a: object, b: object) -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for k in a:
            assert_same_tree(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same_tree(x, y)
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b or (a != a and b != b)  # NaN == NaN here


def learnt(seconds: float = 40.0, **kwargs: object) -> OnlineLearner:
    learner = OnlineLearner(**kwargs)  # type: ignore[arg-type]
    for tick in sim_ticks(seconds, 5, BTC):
        learner.update(tick)
    return learner


# -- the file ------------------------------------------------------------------------------


def test_a_model_file_round_trips_exactly(tmp_path: Path) -> None:
    learner = learnt()
    state = learner.model_state()
    path = save_model(learner, tmp_path / "sub" / "m.model", info={"symbol": BTC})
    assert path.read_bytes().startswith(f"tickcast-model {MODEL_VERSION} ".encode())
    assert not [p for p in path.parent.iterdir() if p != path], "no temporary file left"
    back = read_model(path)
    assert back.info == {"symbol": BTC}
    assert_same_tree(state, back.model)
    assert_same_tree(state, load_model(save_model(state, tmp_path / "again.model")))
    # Two learners warm-started from the file predict alike: nothing is lost on the way.
    ticks = sim_ticks(20.0, 9, "ETH/USDT:USDT")
    direct, loaded = OnlineLearner(), OnlineLearner()
    direct.warm_start(state)
    loaded.warm_start(load_model(path))
    for tick in ticks:
        assert direct.update(tick) == loaded.update(tick)
    assert direct.snapshot() == loaded.snapshot()


def test_a_file_that_is_not_a_model_is_refused(tmp_path: Path, binance_recording: Path) -> None:
    for path in (binance_recording, tmp_path / "empty"):
        if not path.exists():
            path.write_bytes(b"")
        with pytest.raises(ModelFileError, match="is not a tickcast model file"):
            load_model(path)
    with pytest.raises(ModelFileError, match="no such model file"):
        load_model(tmp_path / "missing.model")
    with pytest.raises(ModelFileError, match="cannot read"):
        load_model(tmp_path)  # a folder


def test_a_truncated_or_damaged_model_is_refused(tmp_path: Path) -> None:
    data = save_model(learnt(10.0), tmp_path / "m.model").read_bytes()
    cut = tmp_path / "cut.model"
    for n in (len(data) - 1, len(data) // 2, data.index(b"\n") + 1, 20):
        cut.write_bytes(data[:n])
        with pytest.raises(ModelFileError, match=r"truncated|malformed|not a tickcast model"):
            load_model(cut)
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match=r"is truncated \(\d+ of \d+ body bytes\)"):
        load_model(cut)
    damaged = bytearray(data)
    damaged[-10] ^= 0xFF
    cut.write_bytes(bytes(damaged))
    with pytest.raises(ModelFileError, match="damaged"):
        load_model(cut)


def test_a_model_file_of_another_version_is_refused(tmp_path: Path) -> None:
    path = save_model(learnt(10.0), tmp_path / "m.model")
    data = path.read_bytes()
    other = data.replace(f"tickcast-model {MODEL_VERSION} ".encode(), b"tickcast-model 99 ", 1)
    path.write_bytes(other)
    reads = f"format version 99; this tickcast reads version {MODEL_VERSION}"
    with pytest.raises(ModelFileError, match=reads):
        load_model(path)
    # A model dict of another version inside a current file is refused too.
    state = learnt(10.0).model_state()
    with pytest.raises(ModelFileError, match="version"):
        save_model({**state, "version": MODEL_VERSION + 1}, tmp_path / "v.model")


def test_a_model_trained_with_other_settings_is_refused_naming_them(tmp_path: Path) -> None:
    path = save_model(learnt(20.0, hidden=(8,)), tmp_path / "h8.model")
    with pytest.raises(ModelFileError, match=r"hidden: model \[8\], here \[32, 16\]"):
        load_init_model(path, {})
    model = load_model(path)
    with pytest.raises(ModelFileError, match=r"horizon_ms: model 1000, here 500"):
        check_model(model, {"hidden": (8,), "horizon_ms": 500})
    check_model(model, {"hidden": (8,), "seed": 3, "rolling_window": 50, "max_gap_ms": 2000})
    names = dict(model, feature_names=[*model["feature_names"][:-1], "other"])
    with pytest.raises(ModelFileError, match="feature_names"):
        check_model(names, {"hidden": (8,)})


# -- the commands --------------------------------------------------------------------------


def test_train_on_the_recording_writes_a_model_that_backtest_init_accepts(
    trained_model: Path, binance_recording: Path, tmp_path: Path
) -> None:
    model_file = read_model(trained_model)
    assert model_file.info["symbol"] == BTC and model_file.info["n_ticks"] > 80_000
    assert model_file.model["n_labels"] == model_file.info["n_labels"] > 3000
    assert model_file.model["hyperparameters"]["hidden"] == [32, 16]
    assert "feature_names" in model_file.model
    out = tmp_path / "warm.json"
    argv = ["backtest", str(binance_recording), "--init", str(trained_model), "--no-progress"]
    assert main([*argv, "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["settings"]["init_model"] == str(trained_model)
    assert figures["symbols"][BTC]["n_samples"] > 3000


def test_train_prints_its_summary_and_can_continue_from_a_model(
    trained_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "sim.jsonl"
    data.write_bytes(encode_many(sim_ticks(30.0, 2, "ETH/USDT:USDT")))
    out = tmp_path / "eth.model"
    argv = ["train", str(data), "--out", str(out), "--init", str(trained_model)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "trained ETH/USDT:USDT on" in printed and "labels learnt" in printed
    assert "IC " in printed and "hit " in printed and f"wrote {out}" in printed
    info = read_model(out).info
    assert info["symbol"] == "ETH/USDT:USDT" and info["init_model"] == str(trained_model)


def test_train_refuses_several_symbols_unless_one_is_chosen(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "two.jsonl"
    data.write_bytes(encode_many(sim_ticks(20.0, 2, BTC, "SOL/USDT:USDT")))
    out = tmp_path / "m.model"
    assert main(["train", str(data), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "2 symbols (BTC/USDT:USDT, SOL/USDT:USDT)" in err and "--symbols" in err
    assert not out.exists()
    assert main(["train", str(data), "--out", str(out), "--symbols", f"{BTC},ETH/USDT:USDT"]) == 2
    assert main(["train", str(data), "--out", str(out), "--symbols", "SOL/USDT:USDT"]) == 0
    assert read_model(out).info["symbol"] == "SOL/USDT:USDT"
    with pytest.raises(TrainError, match="no label learnt"):
        train(sim_ticks(0.5, 2, BTC), {})


def test_init_refusals_are_one_line_errors_with_exit_code_2(
    tmp_path: Path, binance_recording: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    h8 = save_model(learnt(20.0, hidden=(8,)), tmp_path / "h8.model")
    assert main(["backtest", "--sim", "--sim-seconds", "5", "--init", str(h8)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "hidden: model [8], here [32, 16]" in err
    assert main(["backtest", "--sim", "--init", str(binance_recording)]) == 2
    assert "is not a tickcast model file" in capsys.readouterr().err
    out = tmp_path / "never.model"
    assert main(["train", str(binance_recording), "--out", str(out), "--init", str(h8)]) == 2
    assert "hidden" in capsys.readouterr().err and not out.exists()


# -- what a warm start does ----------------------------------------------------------------


def test_a_warm_start_on_the_second_half_starts_from_what_the_first_half_taught(
    recording_ticks: list[Tick],
) -> None:
    half = len(recording_ticks) // 2
    trained = train(recording_ticks[:half], {})
    model = trained.learner.model_state()
    scratch, warm = Backtest({}), WarmBacktest({}, model)
    first: dict[str, Prediction] = {}
    for name, engine in (("scratch", scratch), ("warm", warm)):
        for tick in recording_ticks[half:]:
            if predictions := engine.feed(tick):
                first[name] = predictions[0]
                break
    cold, hot = first["scratch"], first["warm"]
    assert cold.t_ms == hot.t_ms
    assert hot.ret_bps != cold.ret_bps
    assert cold.model_version == 0 < trained.n_labels <= hot.model_version
    # The experts and their Hedge mix came over from the first half.
    learner = warm.symbols[BTC].learner
    assert learner.expert_weights == pytest.approx(trained.learner.expert_weights)


def test_a_model_trained_on_btc_starts_the_simulators_other_symbols(
    trained_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sim.json"
    argv = ["backtest", "--sim", "--sim-seconds", "60", "--init", str(trained_model)]
    assert main([*argv, "--symbols", "ETH/USDT:USDT,SOL/USDT:USDT", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert set(figures["symbols"]) == {"ETH/USDT:USDT", "SOL/USDT:USDT"}
    assert all(s["n_samples"] > 500 for s in figures["symbols"].values())
    # Bit for bit what a warm start of a fresh learner on the same ticks gives.
    model = load_model(trained_model)
    eth = sim_ticks(60.0, 0, "ETH/USDT:USDT", "SOL/USDT:USDT")
    learner = OnlineLearner()
    learner.warm_start(model)
    for tick in eth:
        if tick.symbol == "ETH/USDT:USDT":
            learner.update(tick)
    assert learner.n_scored == figures["symbols"]["ETH/USDT:USDT"]["n_samples"]
    assert learner.metrics.cumulative().ic == pytest.approx(
        figures["symbols"]["ETH/USDT:USDT"]["ic"]
    )
