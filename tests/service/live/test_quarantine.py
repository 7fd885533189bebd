"""No tick stops the worker: entries it cannot use are quarantined, a learner that raised is
rebuilt, signals are never null, checkpoints are verified before they are written and set aside
when they would not restore."""

from __future__ import annotations

import dataclasses
import logging
import math
import socket
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import pytest
import redis
import redis.asyncio

from tickcast.model.learner import OnlineLearner, Prediction
from tickcast.service.bus import codec, keys
from tickcast.service.bus.checkpoint import UNREADABLE_KEPT, set_aside
from tickcast.service.bus.writer import TickWriter
from tickcast.service.live.handoff import Handoff
from tickcast.service.live.worker import Worker, WorkerError
from tickcast.service.offline.backtest import Backtest
from tickcast.service.ops.config import Settings
from tickcast.service.ops.metrics import Metrics
from tickcast.service.schema import decode_signal
from tickcast.service.sim.market import DEFAULT_SYMBOLS, SyntheticMarket
from tickcast.service.ticks import Instrument, Tick

from support import worker_settings

SYMBOLS = ("BTC/USDT:USDT", "SOL/USDT:USDT")
SICK = Instrument("sim", SYMBOLS[0])
WELL = Instrument("sim", SYMBOLS[1])
QUARANTINE = keys.quarantine_key("tickcast", "sim", SYMBOLS[0])
CKPT = keys.ckpt_key("tickcast", "sim", SYMBOLS[0])


def settings(**worker: object) -> Settings:
    return worker_settings(SYMBOLS, **worker)


@pytest.fixture(scope="module")
def ticks() -> list[Tick]:
    specs = [s for s in DEFAULT_SYMBOLS if s.symbol in SYMBOLS]
    return list(SyntheticMarket(specs, seed=5).ticks(40.0))


# -- learners that misbehave ----------------------------------------------------------------


class Poisoned:
    """An OnlineLearner that raises on the marked ticks: in ``update`` after learning from
    them half-way (``where="update"``), or in the learning deferred after them
    (``where="flush"``: in ``flush``, ``snapshot`` or the next ``update``, whichever comes
    first)."""

    def __init__(self, inner: OnlineLearner, marked: Callable[[Tick], bool], where: str):
        self.inner, self.marked, self.where = inner, marked, where
        self.horizon_ms, self.sample_ms = inner.horizon_ms, inner.sample_ms
        self.seen = 0
        self._armed = False

    def update(self, tick: Tick) -> Sequence[Any]:
        if self._armed:
            self._blow()
        if self.marked(tick):
            self.seen += 1
            if self.where == "update":
                self.inner.update(tick)  # its features and clock moved: half-updated
                raise FloatingPointError("poisoned tick")
            self._armed = True
        return self.inner.update(tick)

    def flush(self) -> None:
        if self._armed:
            self._blow()
        self.inner.flush()

    def _blow(self) -> None:
        self._armed = False
        self.inner.flush()
        raise FloatingPointError("poisoned learning")

    def snapshot(self) -> bytes:
        if self._armed:
            self._blow()
        return self.inner.snapshot()

    @property
    def model_version(self) -> int:
        return self.inner.model_version

    def counters(self) -> dict[str, int]:
        return self.inner.counters()


def poisoned(
    marked: Callable[[Tick], bool], where: str = "update"
) -> tuple[Callable[[str], Poisoned], Callable[[bytes], Poisoned]]:
    """A learner factory and loader of :class:`Poisoned` learners."""
    return (
        lambda symbol: Poisoned(OnlineLearner(), marked, where),
        lambda blob: Poisoned(OnlineLearner.from_snapshot(blob), marked, where),
    )


def inner(worker: Worker, instrument: Instrument) -> OnlineLearner:
    learner = worker.states[instrument].learner
    out = learner.inner if isinstance(learner, Poisoned) else learner
    assert isinstance(out, OnlineLearner)
    return out


# -- helpers --------------------------------------------------------------------------------


async def write(client: redis.asyncio.Redis, ticks: Sequence[Tick]) -> None:
    writer = TickWriter(client, Settings())
    for i in range(0, len(ticks), 500):
        await writer.write(ticks[i : i + 500])


async def drain(worker: Worker) -> None:
    while await worker.step(block_ms=0):
        pass
    await worker.step(block_ms=0)  # the last deferred learning


async def started(client: redis.asyncio.Redis, **kwargs: Any) -> Worker:
    worker = Worker(client, settings(), **kwargs)
    await worker.restore()
    return worker


def reference(ticks: Sequence[Tick]) -> dict[str, tuple[bytes, list[tuple[int, float]]]]:
    """Per symbol: the backtest's learner snapshot and (t_ms, ret_bps) of its predictions."""
    backtest = Backtest({"horizon_ms": 1000, "sample_ms": 100})
    out: dict[str, list[tuple[int, float]]] = {s: [] for s in SYMBOLS}
    for t in ticks:
        out[t.symbol].extend((p.t_ms, p.ret_bps) for p in backtest.feed(t))
    return {s: (backtest.symbols[s].learner.snapshot(), out[s]) for s in SYMBOLS}


def published(client: redis.Redis, symbol: str) -> list[tuple[int, float]]:
    key = keys.signals_key("tickcast", "sim", symbol)
    return [(s.t_ms, s.ret_bps) for s in map(decode_signal, (f for _, f in client.xrange(key)))]


def assert_like_reference(worker: Worker, client: redis.Redis, ticks: Sequence[Tick]) -> None:
    """Every symbol's learner bit-identical to a backtest of ``ticks``, every sample
    published exactly once."""
    expected = reference(ticks)
    for instrument in (SICK, WELL):
        snapshot, signals = expected[instrument.symbol]
        assert len(signals) > 200
        assert published(client, instrument.symbol) == signals, "each sample once, in order"
        assert inner(worker, instrument).snapshot() == snapshot, "bit-identical learner"


def stream_id_of(client: redis.Redis, tick: Tick) -> bytes:
    """The ID of ``tick``'s entry in its tick stream."""
    key = keys.ticks_key("tickcast", tick.venue, tick.symbol)
    for raw_id, fields in client.xrange(key):
        if codec.decode(fields) == tick:
            stream_id: bytes = raw_id
            return stream_id
    raise AssertionError(f"{tick} is not in {key}")


def quarantined(client: redis.Redis) -> list[tuple[bytes, dict[bytes, bytes]]]:
    return list(client.xrange(QUARANTINE))


def middle_tick(ticks: Sequence[Tick], symbol: str, fraction: float = 0.6) -> Tick:
    mine = [t for t in ticks if t.symbol == symbol]
    return mine[int(len(mine) * fraction)]


def deferring_tick(ticks: Sequence[Tick], symbol: str, after_ms: int) -> Tick:
    """The first tick of ``symbol`` past ``after_ms`` whose update defers learning."""
    learner = OnlineLearner()
    for tick in ticks:
        closing = tick.symbol == symbol and learner.update(tick) and learner.n_deferred
        if closing and tick.event_ms > after_ms:
            return tick
    raise AssertionError("no deferring tick")


# -- a tick the learner raises on -----------------------------------------------------------


async def test_a_tick_the_learner_raises_on_is_quarantined_and_the_worker_goes_on(
    async_redis_client: redis.asyncio.Redis,
    redis_client: redis.Redis,
    ticks: list[Tick],
    caplog: pytest.LogCaptureFixture,
) -> None:
    poison = middle_tick(ticks, SICK.symbol)
    cut = ticks.index(poison) // 2
    metrics = Metrics([SICK, WELL])
    factory, loader = poisoned(lambda t: t == poison)
    await write(async_redis_client, ticks[:cut])
    worker = await started(
        async_redis_client,
        stats=metrics.symbol_stats,
        learner_factory=factory,
        learner_loader=loader,
    )
    await drain(worker)
    await worker.checkpoint(force=True)  # the last good state the rebuild starts from
    await write(async_redis_client, ticks[cut:])
    with caplog.at_level(logging.WARNING):
        await drain(worker)

    poison_id = stream_id_of(redis_client, poison)
    ((entry_id, entry),) = quarantined(redis_client)
    assert entry_id == poison_id
    assert entry[b"kind"] == b"learner" and b"poisoned tick" in entry[b"reason"]
    assert codec.decode_tick(entry[b"f:t"]) == poison, "the entry as the stream holds it"
    stats = worker.states[SICK].stats
    assert (stats.quarantined, stats.learner_rebuilds, stats.undecodable) == (1, 1, 0)
    assert worker.states[WELL].stats.quarantined == 0
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "poisoned tick" in warned[0].getMessage()
    body = metrics.exposition()[0].decode()
    assert 'tickcast_worker_quarantined_ticks_total{symbol="BTC/USDT:USDT",venue="sim"} 1.0' in body
    assert 'tickcast_worker_learner_rebuilds_total{symbol="BTC/USDT:USDT",venue="sim"} 1.0' in body
    last = redis_client.xrevrange(keys.ticks_key("tickcast", "sim", SICK.symbol), count=1)
    assert worker.states[SICK].last_id.encode() == last[0][0]
    assert_like_reference(worker, redis_client, [t for t in ticks if t != poison])
    ckpt = redis_client.hgetall(CKPT)
    assert keys.id_key(ckpt[b"last_id"]) >= keys.id_key(poison_id), "checkpointed past it"


async def test_the_learning_deferred_after_a_tick_raising_quarantines_that_tick(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis, ticks: list[Tick]
) -> None:
    poison = deferring_tick(ticks, SICK.symbol, ticks[0].event_ms + 15_000)
    factory, loader = poisoned(lambda t: t == poison, where="flush")
    cut = ticks.index(poison) // 2
    await write(async_redis_client, ticks[:cut])
    worker = await started(async_redis_client, learner_factory=factory, learner_loader=loader)
    await drain(worker)
    await worker.checkpoint(force=True)
    await write(async_redis_client, ticks[cut:])
    await drain(worker)
    ((entry_id, entry),) = quarantined(redis_client)
    assert entry_id == stream_id_of(redis_client, poison)
    assert b"poisoned learning" in entry[b"reason"]
    assert_like_reference(worker, redis_client, [t for t in ticks if t != poison])


async def test_a_snapshot_raising_in_the_deferred_learning_is_a_fault_of_that_tick(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis, ticks: list[Tick]
) -> None:
    poison = deferring_tick(ticks, SICK.symbol, ticks[0].event_ms + 15_000)
    factory, loader = poisoned(lambda t: t == poison, where="flush")
    upto = ticks.index(poison) + 1
    await write(async_redis_client, ticks[:upto])  # the poison is the last tick of its stream
    worker = Worker(
        async_redis_client,
        settings(checkpoint_every_samples=1, read_count=100_000),
        learner_factory=factory,
        learner_loader=loader,
    )
    await worker.restore()
    assert await worker.step(block_ms=0) == upto  # all in one read; then the checkpoint...
    state = worker.states[SICK]
    assert state.fault is not None and state.fault.consumed, "...found the learning raising"
    assert state.stats.checkpoints == 0
    await write(async_redis_client, ticks[upto:])
    await drain(worker)
    ((entry_id, _),) = quarantined(redis_client)
    assert entry_id == stream_id_of(redis_client, poison)
    assert_like_reference(worker, redis_client, [t for t in ticks if t != poison])


async def test_a_restart_neither_feeds_nor_records_a_quarantined_tick_again(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis, ticks: list[Tick]
) -> None:
    poison = middle_tick(ticks, SICK.symbol)
    cut = ticks.index(poison) // 2
    factory, loader = poisoned(lambda t: t == poison)
    await write(async_redis_client, ticks[:cut])
    first = await started(async_redis_client, learner_factory=factory, learner_loader=loader)
    await drain(first)
    await first.checkpoint(force=True)
    before_poison = redis_client.hgetall(CKPT)
    await write(async_redis_client, ticks[cut:])
    await drain(first)
    assert len(quarantined(redis_client)) == 1
    # It died after quarantining the tick but before checkpointing past it.
    redis_client.delete(CKPT)
    redis_client.hset(CKPT, mapping=before_poison)

    second = await started(async_redis_client, learner_factory=factory, learner_loader=loader)
    assert stream_id_of(redis_client, poison) in second.states[SICK].skip
    await drain(second)
    learner = second.states[SICK].learner
    assert isinstance(learner, Poisoned) and learner.seen == 0, "never fed to the learner again"
    assert second.states[SICK].stats.quarantined == 0 and len(quarantined(redis_client)) == 1
    assert second.states[SICK].stats.duplicates_skipped > 0
    assert inner(second, SICK).snapshot() == inner(first, SICK).snapshot()
    assert_like_reference(second, redis_client, [t for t in ticks if t != poison])


async def test_a_tick_met_again_is_quarantined_again_recorded_once_and_learned_the_same(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis, ticks: list[Tick]
) -> None:
    poison = middle_tick(ticks, SICK.symbol)
    factory, loader = poisoned(lambda t: t == poison)
    await write(async_redis_client, ticks)
    first = await started(async_redis_client, learner_factory=factory, learner_loader=loader)
    await drain(first)
    redis_client.delete(CKPT)  # a restart from the start...
    second = await started(async_redis_client, learner_factory=factory, learner_loader=loader)
    second.states[SICK].skip.clear()  # ...that does not know the tick (its entry was trimmed)
    await drain(second)
    assert second.states[SICK].stats.quarantined == 1
    assert len(quarantined(redis_client)) == 1, "the same entry is not recorded twice"
    assert inner(second, SICK).snapshot() == inner(first, SICK).snapshot()
    assert_like_reference(second, redis_client, [t for t in ticks if t != poison])


async def test_a_rebuild_cut_short_by_redis_is_done_again_before_the_symbol_goes_on(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis, ticks: list[Tick]
) -> None:
    poison = middle_tick(ticks, SICK.symbol)
    factory, loader = poisoned(lambda t: t == poison)
    await write(async_redis_client, ticks)
    worker = await started(async_redis_client, learner_factory=factory, learner_loader=loader)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        nowhere = redis.asyncio.Redis(port=probe.getsockname()[1], socket_connect_timeout=1)
    worker.quarantine.client = nowhere
    with pytest.raises(redis.ConnectionError):
        await drain(worker)
    state = worker.states[SICK]
    assert state.fault is not None, "not rebuilt: the symbol waits"
    assert keys.id_key(state.last_id) < keys.id_key(stream_id_of(redis_client, poison))
    worker.quarantine.client = async_redis_client
    await drain(worker)
    await nowhere.aclose()
    assert state.fault is None and state.stats.quarantined == 1
    assert_like_reference(worker, redis_client, [t for t in ticks if t != poison])


async def test_a_tick_the_learner_raises_on_in_the_handoff_is_quarantined_too(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis, ticks: list[Tick]
) -> None:
    poison = middle_tick(ticks, SICK.symbol)
    factory, loader = poisoned(lambda t: t == poison)
    handoff = Handoff([SICK, WELL])
    writer = TickWriter(async_redis_client, Settings())
    writer.tap = handoff
    worker = Worker(
        async_redis_client,
        settings(checkpoint_every_samples=50),
        handoff=handoff,
        learner_factory=factory,
        learner_loader=loader,
    )
    await worker.restore()
    await worker.step(block_ms=0)
    for i in range(0, len(ticks), 37):
        await writer.write(ticks[i : i + 37])
        await worker.step(block_ms=0)
    await drain(worker)
    assert worker.handed_off > len(ticks) // 2
    ((entry_id, _),) = quarantined(redis_client)
    assert entry_id == stream_id_of(redis_client, poison)
    assert_like_reference(worker, redis_client, [t for t in ticks if t != poison])


# -- entries that are not ticks, or break the contract --------------------------------------


def bad_entries(ticks: Sequence[Tick]) -> list[tuple[dict[str, Any], str, bytes]]:
    """Hand-written entries of the sick symbol's stream: fields, kind, a part of the reason."""
    model = next(t for t in ticks if t.symbol == SICK.symbol and t.kind == "trade")
    quote = next(t for t in ticks if t.symbol == SICK.symbol and t.kind == "quote")

    def entry(tick: Tick) -> dict[str, Any]:
        return {"v": "1", "t": codec.encode_tick(tick)}

    return [
        ({"v": "1", "t": "[not a tick"}, "undecodable", b"not JSON"),
        ({"v": "7", "t": "[]"}, "undecodable", b"version"),
        ({"x": "y"}, "undecodable", b"version"),
        (entry(model._replace(price=1e308)), "invalid", b"price out of range"),
        (entry(model._replace(event_ms=4_102_444_800_000)), "invalid", b"event time"),
        (entry(quote._replace(bid=quote.ask * 2)), "invalid", b"bid above ask"),
        (entry(model._replace(symbol=SYMBOLS[1])), "invalid", b"another instrument"),
    ]


async def test_undecodable_and_contract_breaking_entries_are_quarantined_with_their_reason(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis, ticks: list[Tick]
) -> None:
    half = len(ticks) // 2
    await write(async_redis_client, ticks[:half])
    stream = keys.ticks_key("tickcast", "sim", SICK.symbol)
    bad = bad_entries(ticks)
    ids = [redis_client.xadd(stream, fields) for fields, _, _ in bad]
    await write(async_redis_client, ticks[half:])
    worker = await started(async_redis_client)
    await drain(worker)

    entries = quarantined(redis_client)
    assert [i for i, _ in entries] == ids
    for (_, entry), (fields, kind, why) in zip(entries, bad, strict=True):
        assert entry[b"kind"] == kind.encode() and why in entry[b"reason"]
        assert {k: v for k, v in entry.items() if k.startswith(b"f:")} == {
            b"f:" + k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in fields.items()
        }
    stats = worker.states[SICK].stats
    assert (stats.quarantined, stats.undecodable) == (7, 3)
    assert stats.ticks == 7 + sum(t.symbol == SICK.symbol for t in ticks)
    assert_like_reference(worker, redis_client, ticks)

    again = await started(async_redis_client)  # no checkpoint: from the start, knowing them
    assert again.states[SICK].skip == set(ids)
    await drain(again)
    assert again.states[SICK].stats.quarantined == 0 and len(quarantined(redis_client)) == 7


async def test_a_contract_breaking_tick_in_the_handoff_is_quarantined(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis, ticks: list[Tick]
) -> None:
    handoff = Handoff([SICK, WELL])
    worker = await started(async_redis_client, handoff=handoff)
    await worker.step(block_ms=0)  # empty streams: both symbols go live
    trades = (t for t in ticks if t.symbol == SICK.symbol and t.kind == "trade")
    sick = next(trades)._replace(price=-1.0)
    handoff.written([sick], [b"5-1"])  # as a writer without the parsers' validation would
    await worker.step(block_ms=0)
    ((entry_id, entry),) = quarantined(redis_client)
    assert entry_id == b"5-1" and entry[b"reason"] == b"price not positive"
    assert codec.decode_tick(entry[b"f:t"]) == sick


# -- signals --------------------------------------------------------------------------------


class Erratic:
    """An OnlineLearner whose predictions carry NaN and infinities now and then."""

    def __init__(self, inner: OnlineLearner) -> None:
        self.inner = inner
        self.horizon_ms, self.sample_ms = inner.horizon_ms, inner.sample_ms
        self.made = 0
        self.bad = 0

    def update(self, tick: Tick) -> list[Prediction]:
        out = []
        for p in self.inner.update(tick):
            self.made += 1
            n = self.made
            self.bad += n % 2 == 1 and (n % 3 == 0 or n % 5 == 0 or n % 7 == 0)
            out.append(self._spoil(p, n))
        return out

    @staticmethod
    def _spoil(p: Prediction, n: int) -> Prediction:
        nan, inf = math.nan, math.inf
        if n % 2 == 0:  # undefined scores only: published, without them
            return dataclasses.replace(p, hit_rate=nan, ic=inf, skill_vs_zero=-inf)
        if n % 3 == 0:
            return dataclasses.replace(p, ret_bps=nan)
        if n % 5 == 0:
            return dataclasses.replace(p, p_up=nan)
        if n % 7 == 0:
            return dataclasses.replace(p, ref_price=inf)
        return p

    def flush(self) -> None:
        self.inner.flush()

    def snapshot(self) -> bytes:
        return self.inner.snapshot()


async def test_a_learner_producing_nan_never_gets_a_null_or_non_finite_value_published(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis, ticks: list[Tick]
) -> None:
    await write(async_redis_client, ticks)
    worker = await started(async_redis_client, learner_factory=lambda s: Erratic(OnlineLearner()))
    await drain(worker)
    learner = worker.states[SICK].learner
    assert isinstance(learner, Erratic) and learner.bad > 50
    raw = [
        orjson.loads(f[b"s"])
        for s in SYMBOLS
        for _, f in redis_client.xrange(keys.signals_key("tickcast", "sim", s))
    ]
    assert len(raw) > 400
    for signal in raw:
        assert None not in signal.values(), signal
        assert all(math.isfinite(v) for v in signal.values() if isinstance(v, float)), signal
        decode_signal({b"s": orjson.dumps(signal)})
    assert any("hit_rate" not in s for s in raw) and any("hit_rate" in s for s in raw)
    stats = worker.states[SICK].stats
    assert stats.signals_suppressed == learner.bad
    assert stats.signals == learner.made - learner.bad


# -- checkpoints ----------------------------------------------------------------------------


GARBAGE: dict[str, Callable[[redis.Redis], None]] = {
    "not a hash": lambda c: c.set(CKPT, b"\x00garbage"),
    "a snapshot the learner refuses": lambda c: c.hset(
        CKPT, mapping={"v": "1", "model": b"\x00garbage", "last_id": "1-0", "last_t": "5"}
    ),
    "an unknown version": lambda c: c.hset(CKPT, mapping={"v": "99", "model": b"x"}),
    "a field missing": lambda c: c.hset(CKPT, mapping={"v": "1", "model": b"x"}),
}


@pytest.mark.parametrize("garbage", list(GARBAGE))
async def test_an_unreadable_checkpoint_is_set_aside_and_the_symbol_starts_afresh(
    async_redis_client: redis.asyncio.Redis,
    redis_client: redis.Redis,
    ticks: list[Tick],
    caplog: pytest.LogCaptureFixture,
    garbage: str,
) -> None:
    half = len(ticks) // 2
    await write(async_redis_client, ticks[:half])
    first = await started(async_redis_client)
    await drain(first)
    await first.checkpoint(force=True)
    redis_client.delete(CKPT)
    GARBAGE[garbage](redis_client)
    dump = redis_client.dump(CKPT)
    await write(async_redis_client, ticks[half:])

    with caplog.at_level(logging.ERROR):
        second = await started(async_redis_client)
    (aside,) = redis_client.lrange(keys.unreadable_index_key(CKPT), 0, -1)
    assert aside.startswith(keys.unreadable_index_key(CKPT).encode() + b":")
    assert redis_client.dump(aside) == dump, "the very checkpoint, kept for a post-mortem"
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert CKPT in line and aside.decode() in line and "from the start" in line
    state = second.states[SICK]
    assert state.stats.checkpoints_unreadable == 1 and state.last_id == "0-0"
    assert second.states[WELL].stats.checkpoints_unreadable == 0
    await drain(second)
    assert state.stats.duplicates_skipped > 0, "what the first worker published is not repeated"
    assert_like_reference(second, redis_client, ticks)
    await second.checkpoint(force=True)
    third = await started(async_redis_client)
    assert third.states[SICK].last_id == state.last_id, "the new checkpoint restores"


async def test_a_checkpoint_of_another_horizon_still_stops_the_worker_and_is_kept(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis, ticks: list[Tick]
) -> None:
    await write(async_redis_client, ticks[:300])
    other = Worker(async_redis_client, settings(horizon_ms=2000))
    await other.restore()
    await drain(other)
    await other.checkpoint(force=True)
    with pytest.raises(WorkerError, match="horizon"):
        await started(async_redis_client)
    assert redis_client.exists(CKPT) and not redis_client.exists(keys.unreadable_index_key(CKPT))


async def test_set_aside_keeps_only_the_newest_copies(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis
) -> None:
    made = []
    for n in range(UNREADABLE_KEPT + 3):
        redis_client.set(CKPT, b"copy %d" % n)
        made.append(await set_aside(async_redis_client, CKPT))
    index = [k.decode() for k in redis_client.lrange(keys.unreadable_index_key(CKPT), 0, -1)]
    assert index == made[::-1][:UNREADABLE_KEPT]
    assert len(set(made)) == len(made), "one key per copy, even within a millisecond"
    assert redis_client.get(index[0]) == b"copy %d" % (UNREADABLE_KEPT + 2)
    assert not any(redis_client.exists(k) for k in made[:3]) and not redis_client.exists(CKPT)


class Unrestorable:
    """An OnlineLearner whose snapshots stop restoring once ``broken`` is set."""

    broken = False

    def __init__(self, inner: OnlineLearner) -> None:
        self.inner = inner
        self.horizon_ms, self.sample_ms = inner.horizon_ms, inner.sample_ms

    def update(self, tick: Tick) -> Sequence[Any]:
        return self.inner.update(tick)

    def flush(self) -> None:
        self.inner.flush()

    def snapshot(self) -> bytes:
        blob = self.inner.snapshot()
        return blob[: len(blob) // 2] if Unrestorable.broken else blob


async def test_a_snapshot_that_would_not_restore_is_never_written(
    async_redis_client: redis.asyncio.Redis,
    redis_client: redis.Redis,
    ticks: list[Tick],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    half = len(ticks) // 2
    await write(async_redis_client, ticks[:half])
    worker = Worker(
        async_redis_client,
        settings(checkpoint_every_samples=100),
        learner_factory=lambda s: Unrestorable(OnlineLearner()),
        learner_loader=lambda b: Unrestorable(OnlineLearner.from_snapshot(b)),
    )
    await worker.restore()
    await drain(worker)
    await worker.checkpoint(force=True)
    good = redis_client.hmget(CKPT, ["model", "last_id"])
    written = worker.states[SICK].stats.checkpoints
    monkeypatch.setattr(Unrestorable, "broken", True)
    await write(async_redis_client, ticks[half:])
    with caplog.at_level(logging.ERROR):
        await drain(worker)
        await worker.checkpoint(force=True)
    stats = worker.states[SICK].stats
    assert stats.checkpoints == written and stats.checkpoints_refused >= 2
    assert redis_client.hmget(CKPT, ["model", "last_id"]) == good, "the previous one is kept"
    assert any("NOT written" in r.getMessage() for r in caplog.records)
    samples = stats.samples
    assert stats.checkpoints_refused <= samples // 100 + 2, "refusals follow the cadence"
    monkeypatch.setattr(Unrestorable, "broken", False)

    restarted = await started(async_redis_client)  # resumes from the kept checkpoint
    assert restarted.states[SICK].last_id == good[1].decode()
    await drain(restarted)
    assert_like_reference(restarted, redis_client, ticks)
