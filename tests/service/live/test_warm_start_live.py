"""``worker.init_model`` / ``run --init`` / ``worker --init``: fresh symbols start from a trained
model, checkpointed ones ignore it, a bad model stops the command before anything connects."""

from __future__ import annotations

import logging
import signal
import subprocess
from pathlib import Path

import pytest
import redis
import redis.asyncio

from tickcast.model.learner import OnlineLearner
from tickcast.service.bus import codec, keys
from tickcast.service.bus.embedded import free_port
from tickcast.service.live.symbolstate import DefaultLearnerFactory
from tickcast.service.live.worker import Worker
from tickcast.service.offline.modelfile import ModelFileError, load_model, save_model
from tickcast.service.offline.training import train
from tickcast.service.ops.config import Settings
from tickcast.service.schema import decode_signal
from tickcast.service.sim.market import DEFAULT_SYMBOLS, SyntheticMarket
from tickcast.service.ticks import Instrument, Tick

from support import (
    CLI,
    drain,
    environment,
    reference,
    start,
    wait_until,
    worker_settings,
    write_ticks,
)

ETH, SOL = "ETH/USDT:USDT", "SOL/USDT:USDT"
SYMBOLS = (ETH, SOL)
CLOCK = {"horizon_ms": 1000, "sample_ms": 100}


def sim_ticks(seconds: float, seed: int, *symbols: str) -> list[Tick]:
    specs = [s for s in DEFAULT_SYMBOLS if s.symbol in symbols]
    return list(SyntheticMarket(specs, seed=seed).ticks(seconds))


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained on the simulator's BTC (another symbol than the ones it starts)."""
    trained = train(sim_ticks(40.0, 21, "BTC/USDT:USDT"), CLOCK)
    return save_model(trained.learner, tmp_path_factory.mktemp("model") / "btc.model")


@pytest.fixture(scope="module")
def ticks() -> list[Tick]:
    return sim_ticks(30.0, 3, *SYMBOLS)


def settings(*symbols: str, **worker: object) -> Settings:
    return worker_settings(symbols or SYMBOLS, **worker)


def warm_version(model: Path) -> int:
    """The model version of a learner just started from ``model``."""
    learner = OnlineLearner(**CLOCK)
    learner.warm_start(load_model(model))
    return learner.model_version


def published(client: redis.Redis, symbol: str) -> list[tuple[int, float]]:
    key = keys.signals_key("tickcast", "sim", symbol)
    return [(s.t_ms, s.ret_bps) for s in map(decode_signal, (f for _, f in client.xrange(key)))]


def test_the_factory_warm_starts_every_learner_and_refuses_a_model_that_does_not_fit(
    model_path: Path, tmp_path: Path
) -> None:
    factory = DefaultLearnerFactory(settings(init_model=str(model_path)))
    a, b = factory(ETH), factory(SOL)
    assert isinstance(a, OnlineLearner) and isinstance(b, OnlineLearner)
    assert a.model_version == b.model_version == warm_version(model_path) > 0
    assert a.forecaster is not b.forecaster
    fresh = DefaultLearnerFactory(settings())(ETH)
    assert isinstance(fresh, OnlineLearner) and fresh.model_version == 0
    with pytest.raises(ModelFileError, match=r"horizon_ms: model 1000, here 2000"):
        DefaultLearnerFactory(settings(init_model=str(model_path), horizon_ms=2000))
    with pytest.raises(ModelFileError, match="no such model file"):
        DefaultLearnerFactory(settings(init_model=str(tmp_path / "missing.model")))


async def test_fresh_symbols_start_from_the_model_and_keep_learning(
    async_redis_client: redis.asyncio.Redis,
    redis_client: redis.Redis,
    ticks: list[Tick],
    model_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await write_ticks(async_redis_client, ticks)
    worker = Worker(async_redis_client, settings(init_model=str(model_path)))
    with caplog.at_level(logging.INFO, logger="tickcast.service.live.symbolstate"):
        await worker.restore()
    for symbol in SYMBOLS:
        assert f"sim {symbol}: fresh learner from the model {model_path}" in caplog.text
    await drain(worker)
    start_version = warm_version(model_path)
    for symbol in SYMBOLS:
        learner, expected = reference(ticks, symbol, model_path)
        assert len(expected) > 200
        assert published(redis_client, symbol) == expected
        live = worker.states[Instrument("sim", symbol)].learner
        assert isinstance(live, OnlineLearner)
        assert live.snapshot() == learner.snapshot(), "the learner of a warm backtest"
        assert live.model_version > start_version, "it goes on learning online"
        assert expected != reference(ticks, symbol, None)[1]


async def test_a_symbol_restored_from_its_checkpoint_ignores_the_model(
    async_redis_client: redis.asyncio.Redis,
    redis_client: redis.Redis,
    ticks: list[Tick],
    model_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cut = len(ticks) // 2
    await write_ticks(async_redis_client, ticks[:cut])
    first = Worker(async_redis_client, settings(SOL))  # SOL alone, from scratch
    await first.restore()
    await drain(first)
    await first.checkpoint(force=True)
    await write_ticks(async_redis_client, ticks[cut:])

    second = Worker(async_redis_client, settings(init_model=str(model_path)))
    with caplog.at_level(logging.INFO, logger="tickcast.service.live.symbolstate"):
        await second.restore()
    assert f"sim {SOL}: restored" in caplog.text
    assert f"sim {ETH}: fresh learner from the model" in caplog.text
    await drain(second)
    for symbol, model in ((SOL, None), (ETH, model_path)):
        learner, expected = reference(ticks, symbol, model)
        assert published(redis_client, symbol) == expected
        live = second.states[Instrument("sim", symbol)].learner
        assert isinstance(live, OnlineLearner)
        assert live.snapshot() == learner.snapshot()


# -- the commands --------------------------------------------------------------------------


def test_a_bad_init_model_stops_run_and_worker_before_anything_connects(
    tmp_path: Path, model_path: Path
) -> None:
    h8 = save_model(
        train(sim_ticks(10.0, 1, SOL), {**CLOCK, "hidden": (8,)}).learner, tmp_path / "h8"
    )
    nowhere = f"redis://127.0.0.1:{free_port()}/0"  # a connection attempt would exit 1
    cases = [
        (["worker", "--init", str(h8)], {"TICKCAST__REDIS__URL": nowhere}, "hidden: model [8]"),
        (["worker"], {"TICKCAST__REDIS__URL": nowhere,
                      "TICKCAST__WORKER__INIT_MODEL": str(tmp_path)}, "cannot read the model file"),
        (["run", "--exchange", "sim", "--no-view", "--init", str(tmp_path / "none")], {},
         "no such model file"),
        (["run", "--exchange", "sim", "--no-view", "--init", str(model_path),
          "--set", "worker.sample_ms=50"], {}, "sample_ms: model 100, here 50"),
    ]  # fmt: skip
    for i, (args, extra, message) in enumerate(cases):
        state = tmp_path / f"state{i}"
        env = environment(state, TICKCAST__METRICS__ENABLED="false", **extra)
        done = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("tickcast: error: ")
        assert message in done.stderr
        assert not state.exists(), "no embedded Redis was started"


def test_worker_init_serves_the_warm_started_signals(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path, model_path: Path
) -> None:
    some = sim_ticks(20.0, 7, *SYMBOLS)
    pipe = redis_client.pipeline(transaction=False)
    for tick in some:
        pipe.xadd(keys.ticks_key("tickcast", "sim", tick.symbol), codec.encode(tick))  # type: ignore[arg-type]
    pipe.execute()
    expected = {s: reference(some, s, model_path)[1] for s in SYMBOLS}
    env = environment(tmp_path, TICKCAST__REDIS__URL=redis_url, TICKCAST__METRICS__ENABLED="false")
    log = tmp_path / "worker.log"
    worker = start(["worker", "--symbols", ",".join(SYMBOLS), "--init", str(model_path)], env, log)
    try:
        wait_until(
            "every sample published",
            lambda: all(len(published(redis_client, s)) >= len(expected[s]) for s in SYMBOLS),
        )
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=10) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    for symbol in SYMBOLS:
        assert published(redis_client, symbol) == expected[symbol]
    text = log.read_text()
    assert text.count(f"fresh learner from the model {model_path}") == len(SYMBOLS)
