"""Extra horizons live (``worker.extra_horizons_ms``, ``--horizons``): version-2 signals whose
every horizon is what a backtest of the same ticks predicts, exact restarts, checkpoints that
refuse other horizons, warm starts of the first horizon, and ``tickcast run --horizons``."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio

from tickcast.model.horizons import MultiHorizonLearner
from tickcast.model.learner import OnlineLearner
from tickcast.service.bus import keys
from tickcast.service.bus.embedded import free_port
from tickcast.service.commands.subscribe import Table
from tickcast.service.live.symbolstate import DefaultLearnerFactory
from tickcast.service.live.worker import Worker, WorkerError
from tickcast.service.offline.backtest import Backtest
from tickcast.service.offline.modelfile import save_model
from tickcast.service.offline.training import train
from tickcast.service.ops.config import ConfigError, Settings
from tickcast.service.schema import Signal, decode_signal, horizon_fields, signal_fields
from tickcast.service.sim.market import DEFAULT_SYMBOLS, SyntheticMarket
from tickcast.service.ticks import Instrument, Tick

from support import CLI, drain, environment, http, wait_until, worker_settings, write_ticks

SYMBOLS = ("BTC/USDT:USDT", "SOL/USDT:USDT")
EXTRA = [5000, 300]


def settings(**worker: object) -> Settings:
    return worker_settings(SYMBOLS, **{"extra_horizons_ms": EXTRA, **worker})


@pytest.fixture(scope="module")
def ticks() -> list[Tick]:
    specs = [s for s in DEFAULT_SYMBOLS if s.symbol in SYMBOLS]
    return list(SyntheticMarket(specs, seed=4).ticks(40.0))


Row = tuple[int, float, tuple[tuple[int, float, float], ...]]


def reference(ticks: list[Tick], symbol: str) -> tuple[Backtest, list[Row]]:
    """The offline engine with the same horizons on the same ticks."""
    engine = Backtest({"horizon_ms": 1000, "sample_ms": 100}, extra_horizons_ms=EXTRA)
    out: list[Row] = []
    for tick in ticks:
        predictions = engine.feed(tick)
        if tick.symbol == symbol:
            out.extend(_row(p) for p in predictions)
    return engine, out


def _row(p: Any) -> Row:
    """A multi-horizon prediction as (t, main return, ((horizon, return, P(up)), ...))."""
    others = zip(p.horizons_ms[1:], p.others, strict=True)
    return p.t_ms, p.ret_bps, tuple((h, q.ret_bps, q.p_up) for h, q in others)


def signals(client: redis.Redis, symbol: str) -> list[Signal]:
    key = keys.signals_key("tickcast", "sim", symbol)
    return [decode_signal(f) for _, f in client.xrange(key)]


def rows(sigs: list[Signal]) -> list[Row]:
    return [
        (s.t_ms, s.ret_bps, tuple((h.horizon_ms, h.ret_bps, h.p_up) for h in s.horizons or ()))
        for s in sigs
    ]


async def test_the_worker_publishes_every_horizon_exactly_as_a_backtest_predicts_it(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis, ticks: list[Tick]
) -> None:
    await write_ticks(async_redis_client, ticks)
    worker = Worker(async_redis_client, settings())
    await worker.restore()
    await drain(worker)
    for symbol in SYMBOLS:
        engine, expected = reference(ticks, symbol)
        sigs = signals(redis_client, symbol)
        assert len(expected) > 300
        assert rows(sigs) == expected
        assert all(s.v == 2 and s.horizon_ms == 1000 for s in sigs)
        last = sigs[-1].horizons or ()
        assert [h.horizon_ms for h in last] == EXTRA
        for h in last:  # each extra horizon is scored and learns
            assert h.hit_rate is not None and h.ic is not None and h.model_version > 0
        assert last[1].model_version > last[0].model_version, "300 ms labels mature sooner"
        live = worker.states[Instrument("sim", symbol)].learner
        assert isinstance(live, MultiHorizonLearner) and live.horizons_ms == (1000, *EXTRA)
        for h, member in zip(live.horizons_ms, live.learners, strict=True):
            assert member.snapshot() == engine.by_horizon[h][symbol].learner.snapshot()


async def test_a_restored_multi_horizon_worker_continues_bit_identically(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis, ticks: list[Tick]
) -> None:
    cut = len(ticks) // 3
    await write_ticks(async_redis_client, ticks[:cut])
    first = Worker(async_redis_client, settings())
    await first.restore()
    await drain(first)
    await first.checkpoint(force=True)
    await write_ticks(async_redis_client, ticks[cut : 2 * cut])
    await drain(first)  # publishes past its checkpoint, then dies without another one
    await write_ticks(async_redis_client, ticks[2 * cut :])
    second = Worker(async_redis_client, settings())
    await second.restore()
    await drain(second)
    for symbol in SYMBOLS:
        _, expected = reference(ticks, symbol)
        assert rows(signals(redis_client, symbol)) == expected, "each sample once, in order"
        assert second.states[Instrument("sim", symbol)].stats.duplicates_skipped > 0


@pytest.mark.parametrize(
    ("made_with", "restored_with"),
    [
        ({"extra_horizons_ms": EXTRA}, {"extra_horizons_ms": []}),
        ({"extra_horizons_ms": []}, {"extra_horizons_ms": EXTRA}),
        ({"extra_horizons_ms": EXTRA}, {"extra_horizons_ms": EXTRA[::-1]}),
    ],
)
async def test_a_checkpoint_made_with_other_horizons_stops_the_worker_and_is_kept(
    async_redis_client: redis.asyncio.Redis,
    redis_client: redis.Redis,
    ticks: list[Tick],
    made_with: dict[str, Any],
    restored_with: dict[str, Any],
) -> None:
    await write_ticks(async_redis_client, ticks[:300])
    worker = Worker(async_redis_client, settings(**made_with))
    await worker.restore()
    await drain(worker)
    await worker.checkpoint(force=True)
    ckpt_key = keys.ckpt_key("tickcast", "sim", SYMBOLS[0])
    model = redis_client.hget(ckpt_key, "model")
    with pytest.raises(WorkerError, match=r"horizons .* settings ask for horizons"):
        await Worker(async_redis_client, settings(**restored_with)).restore()
    assert redis_client.hget(ckpt_key, "model") == model, "a settings mistake, not damage"


def test_the_settings_refuse_repeated_horizons() -> None:
    with pytest.raises(ConfigError, match=r"extra_horizons_ms .* distinct and differ"):
        settings(extra_horizons_ms=[1000, 5000])
    with pytest.raises(ConfigError, match="extra_horizons_ms"):
        settings(extra_horizons_ms="5000,5000")
    with pytest.raises(ConfigError, match="extra_horizons_ms"):
        settings(extra_horizons_ms=[-5])
    assert settings(extra_horizons_ms="5000, 300").worker.extra_horizons_ms == [5000, 300]


def test_a_model_warm_starts_the_first_horizon_and_the_others_start_fresh(
    ticks: list[Tick], tmp_path: Path
) -> None:
    trained = train([t for t in ticks if t.symbol == SYMBOLS[0]], {"horizon_ms": 1000})
    model = save_model(trained.learner, tmp_path / "btc.model")
    factory = DefaultLearnerFactory(settings(init_model=str(model)))
    learner = factory(SYMBOLS[1])
    assert isinstance(learner, MultiHorizonLearner)
    first, *others = learner.learners
    assert first.model_version == trained.learner.model_version > 0
    assert all(o.model_version == 0 for o in others)
    single = DefaultLearnerFactory(settings(extra_horizons_ms=[]))(SYMBOLS[1])
    assert type(single) is OnlineLearner, "one horizon: the plain learner, as before"


def test_run_with_horizons_publishes_version_2_signals_that_score_and_learn(
    tmp_path: Path,
) -> None:
    state_dir = tmp_path / "state"
    port = free_port()
    env = environment(state_dir)
    log = tmp_path / "run.log"
    args = ["run", "--exchange", "sim", "--no-view", "--speed", "8", "--horizons", "1000,2000"]
    args += ["--symbols", SYMBOLS[0], "--metrics-port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen([*CLI, *args], env=env, stdout=out, stderr=subprocess.STDOUT)

    def subscribe(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, "subscribe", "--symbols", SYMBOLS[0], *flags],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def scored() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"tickcast run exited early:\n{log.read_text()}")
        if http(f"http://127.0.0.1:{port}/readyz")[0] != 200:
            return False
        out = subscribe("--json", "--count", "1")
        (h,) = Signal.model_validate_json(out.stdout).horizons or ()
        return h.hit_rate is not None and h.model_version > 0

    try:
        wait_until("the 2 s horizon scored and learning", scored, timeout=60.0)
        out = subscribe("--json", "--count", "3")
        assert out.returncode == 0, out.stderr
        for line in out.stdout.splitlines():
            raw = json.loads(line)
            assert raw["v"] == 2 and raw["horizon_ms"] == 1000
            assert [h["horizon_ms"] for h in raw["horizons"]] == [2000]
            assert "null" not in line
        text = subscribe("--count", "2")
        assert text.returncode == 0, text.stderr
        assert all(" +2s: pred=" in line for line in text.stdout.splitlines()), text.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=15) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def horizon(horizon_ms: int) -> dict[str, Any]:
    return horizon_fields(
        horizon_ms=horizon_ms,
        ret_bps=-1.2,
        p_up=0.4,
        model_version=30,
        hit_rate=0.55,
        ic=None,
        skill_vs_zero=0.01,
    )


def test_the_live_table_shows_a_line_per_extra_horizon() -> None:
    fields = signal_fields(
        venue="sim",
        symbol=SYMBOLS[0],
        t_ms=1_767_225_600_100,
        horizon_ms=1000,
        ret_bps=0.25,
        p_up=0.61,
        ref_price=60_000.05,
        model_version=42,
        hit_rate=0.58,
        ic=0.21,
        skill_vs_zero=0.04,
        latency_us=87,
        horizons=[horizon(h) for h in (10_000, 500)],
    )
    table = Table({"sim": [SYMBOLS[0]]})
    table.add(Signal.model_validate(fields))
    lines = table.render(color=False).splitlines()
    main_row = next(i for i, line in enumerate(lines) if line.startswith(SYMBOLS[0]))
    assert lines[main_row + 1].split()[:4] == ["10s", "horizon", "-1.200", "0.400"]
    assert lines[main_row + 2].split()[:2] == ["500ms", "horizon"]
    assert "55.0%" in lines[main_row + 1]
