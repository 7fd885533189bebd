"""The worker: tick streams -> learners -> signals, checkpoints and exact restarts."""

from __future__ import annotations

import pytest
import redis
import redis.asyncio

from tickcast.model.learner import OnlineLearner
from tickcast.service.bus import keys
from tickcast.service.bus.writer import TickWriter
from tickcast.service.live.worker import Worker, WorkerError
from tickcast.service.ops.config import Settings
from tickcast.service.schema import decode_signal
from tickcast.service.sim.market import DEFAULT_SYMBOLS, SyntheticMarket
from tickcast.service.ticks import Instrument, Tick

from support import drain, reference, worker_settings, write_ticks

SYMBOLS = ("BTC/USDT:USDT", "SOL/USDT:USDT")


def settings(**worker: object) -> Settings:
    return worker_settings(SYMBOLS, **worker)


@pytest.fixture(scope="module")
def ticks() -> list[Tick]:
    specs = [s for s in DEFAULT_SYMBOLS if s.symbol in SYMBOLS]
    return list(SyntheticMarket(specs, seed=3).ticks(45.0))


def published(client: redis.Redis, symbol: str) -> list[tuple[int, float]]:
    key = keys.signals_key("tickcast", "sim", symbol)
    return [(s.t_ms, s.ret_bps) for s in map(decode_signal, (f for _, f in client.xrange(key)))]


async def test_the_worker_publishes_exactly_what_a_backtest_of_the_same_ticks_predicts(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis, ticks: list[Tick]
) -> None:
    await write_ticks(async_redis_client, ticks)
    worker = Worker(async_redis_client, settings())
    await worker.restore()
    assert await drain(worker) == len(ticks)
    for symbol in SYMBOLS:
        learner, expected = reference(ticks, symbol)
        assert len(expected) > 400
        assert published(redis_client, symbol) == expected
        live = worker.states[Instrument("sim", symbol)].learner
        assert isinstance(live, OnlineLearner)
        assert live.snapshot() == learner.snapshot(), "bit-identical weights and state"
        stats = worker.states[Instrument("sim", symbol)].stats
        assert stats.signals == len(expected) == stats.samples
        assert stats.latency.count == len(expected)
        assert stats.model_version == learner.model_version > 0


async def test_signals_validate_and_carry_their_latency_and_horizon(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis, ticks: list[Tick]
) -> None:
    await write_ticks(async_redis_client, ticks[:2000])
    worker = Worker(async_redis_client, settings())
    await worker.restore()
    await drain(worker)
    key = keys.signals_key("tickcast", "sim", SYMBOLS[0])
    signals = [decode_signal(f) for _, f in redis_client.xrange(key)]
    assert signals and all(s.horizon_ms == 1000 and s.venue == "sim" for s in signals)
    assert all(s.latency_us > 0 for s in signals)  # recv_ns is in the past
    assert signals[-1].hit_rate is not None and 0.0 <= signals[-1].hit_rate <= 1.0


async def test_a_restored_worker_continues_bit_identically_without_republishing(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis, ticks: list[Tick]
) -> None:
    cut = len(ticks) // 3
    await write_ticks(async_redis_client, ticks[:cut])
    first = Worker(async_redis_client, settings())
    await first.restore()
    await drain(first)
    await first.checkpoint(force=True)
    # The first worker goes on publishing past its checkpoint, then dies without another one.
    await write_ticks(async_redis_client, ticks[cut : 2 * cut])
    await drain(first)
    published_before = {s: published(redis_client, s) for s in SYMBOLS}
    await write_ticks(async_redis_client, ticks[2 * cut :])

    second = Worker(async_redis_client, settings())
    await second.restore()
    await drain(second)
    for symbol in SYMBOLS:
        learner, expected = reference(ticks, symbol)
        got = published(redis_client, symbol)
        assert got == expected, "every sample published exactly once, in order"
        assert got[: len(published_before[symbol])] == published_before[symbol]
        restored = second.states[Instrument("sim", symbol)].learner
        assert isinstance(restored, OnlineLearner)
        assert restored.snapshot() == learner.snapshot()
        assert second.states[Instrument("sim", symbol)].stats.duplicates_skipped > 0


async def test_checkpoints_are_written_every_n_samples_and_on_stop(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis, ticks: list[Tick]
) -> None:
    await write_ticks(async_redis_client, ticks)
    worker = Worker(async_redis_client, settings(checkpoint_every_samples=100, read_count=50))
    await worker.restore()
    await drain(worker)
    stats = worker.states[Instrument("sim", SYMBOLS[0])].stats
    assert stats.samples // 100 - 1 <= stats.checkpoints <= stats.samples // 100 + 1
    worker.stop()
    await worker.run()  # stopped at once: restores nothing new, checkpoints on the way out
    ckpt_key = keys.ckpt_key("tickcast", "sim", SYMBOLS[0])
    fields = redis_client.hgetall(ckpt_key)
    last_id = redis_client.xrevrange(keys.ticks_key("tickcast", "sim", SYMBOLS[0]), count=1)[0][0]
    assert fields[b"last_id"] == last_id
    assert int(fields[b"samples"]) == stats.samples


async def test_undecodable_entries_are_counted_and_skipped(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis, ticks: list[Tick]
) -> None:
    key = keys.ticks_key("tickcast", "sim", SYMBOLS[0])
    redis_client.xadd(key, {"v": "1", "t": "[not a tick"})
    redis_client.xadd(key, {"v": "7", "t": "[]"})
    await write_ticks(async_redis_client, ticks[:500])
    worker = Worker(async_redis_client, settings())
    await worker.restore()
    await drain(worker)
    stats = worker.states[Instrument("sim", SYMBOLS[0])].stats
    assert stats.undecodable == 2
    assert stats.ticks == 2 + sum(t.symbol == SYMBOLS[0] for t in ticks[:500])


async def test_a_checkpoint_made_with_another_horizon_is_refused(
    async_redis_client: redis.asyncio.Redis, ticks: list[Tick]
) -> None:
    await write_ticks(async_redis_client, ticks[:300])
    worker = Worker(async_redis_client, settings(horizon_ms=2000))
    await worker.restore()
    await drain(worker)
    await worker.checkpoint(force=True)
    with pytest.raises(WorkerError, match="horizon"):
        await Worker(async_redis_client, settings()).restore()


def closing_index(ticks: list[Tick], symbol: str, after_ms: int) -> int:
    """Index in ``ticks`` of the first tick of ``symbol`` past ``after_ms`` (event time) that
    closes a sample boundary and matures a label (so its learning is deferred)."""
    learner = OnlineLearner()
    for i, tick in enumerate(ticks):
        if tick.symbol != symbol:
            continue
        made = learner.update(tick)
        if tick.event_ms > after_ms and made and learner.n_deferred:
            return i
    raise AssertionError(f"no closing tick of {symbol}")


async def test_a_boundarys_signals_are_all_published_before_any_learning(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis, ticks: list[Tick]
) -> None:
    after = ticks[0].event_ms + 5_000
    closing = {s: closing_index(ticks, s, after) for s in SYMBOLS}
    before = [t for i, t in enumerate(ticks) if i < closing[t.symbol]]
    await write_ticks(async_redis_client, before)
    worker = Worker(async_redis_client, settings())
    await worker.restore()
    await drain(worker)
    await worker.step(block_ms=0)  # nothing new: the last deferred learning is done
    counts = {s: len(published(redis_client, s)) for s in SYMBOLS}
    learners = {s: worker.states[Instrument("sim", s)].learner for s in SYMBOLS}
    assert all(isinstance(x, OnlineLearner) and x.n_deferred == 0 for x in learners.values())

    await write_ticks(async_redis_client, [ticks[closing[s]] for s in SYMBOLS])
    assert await worker.step(block_ms=0) == len(SYMBOLS)
    assert all(len(published(redis_client, s)) > counts[s] for s in SYMBOLS)
    deferred = [s for s, x in learners.items() if isinstance(x, OnlineLearner) and x.n_deferred]
    assert deferred == list(SYMBOLS), "published, not learned yet: that waits for the next read"
    assert await worker.step(block_ms=0) == 0
    assert not any(isinstance(x, OnlineLearner) and x.n_deferred for x in learners.values())
    for symbol in SYMBOLS:  # and nothing changed: the same as the offline engine
        learner, _ = reference([t for i, t in enumerate(ticks) if i <= closing[t.symbol]], symbol)
        assert worker.states[Instrument("sim", symbol)].learner.snapshot() == learner.snapshot()


async def test_ticks_trimmed_before_the_worker_read_them_are_counted(
    async_redis_client: redis.asyncio.Redis, ticks: list[Tick]
) -> None:
    await write_ticks(async_redis_client, ticks[:400])
    worker = Worker(async_redis_client, settings())
    await worker.restore()
    await drain(worker)
    await worker.checkpoint(force=True)
    assert all(s.stats.trimmed == 0 for s in worker.states.values()), "no false alarm"
    short = Settings.model_validate({"redis": {"tick_maxlen": 200}})
    writer = TickWriter(async_redis_client, short)
    for i in range(400, len(ticks), 100):  # MAXLEN ~ 200 drops what the worker had not read
        await writer.write(ticks[i : i + 100])
    restarted = Worker(async_redis_client, settings())
    await restarted.restore()
    assert all(s.stats.trimmed == 1 for s in restarted.states.values())
