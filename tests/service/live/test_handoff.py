"""The in-process handoff: the worker takes the entries the ingester wrote, once caught up, and
ends exactly where reading every tick back from Redis would."""

from __future__ import annotations

import pytest
import redis
import redis.asyncio

from tickcast.model.learner import OnlineLearner
from tickcast.service.bus import keys
from tickcast.service.bus.keys import id_key
from tickcast.service.bus.writer import TickWriter
from tickcast.service.live.handoff import Handoff
from tickcast.service.live.worker import Worker
from tickcast.service.offline.backtest import Backtest
from tickcast.service.ops.config import Settings
from tickcast.service.schema import decode_signal
from tickcast.service.sim.market import SyntheticMarket
from tickcast.service.sim.symbols import specs_for
from tickcast.service.ticks import Instrument, Tick

from support import worker_settings

SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT")


def settings(**worker: object) -> Settings:
    return worker_settings(SYMBOLS, **worker)


@pytest.fixture(scope="module")
def ticks() -> list[Tick]:
    return list(SyntheticMarket(specs_for(SYMBOLS), seed=11).ticks(30.0))


def tick(symbol: str, n: int) -> Tick:
    return Tick("sim", symbol, "trade", n, n, price=1.0, size=1.0, side=1, trade_id=str(n))


# -- the queue ------------------------------------------------------------------------------


def test_stream_ids_sort_as_numbers_not_text() -> None:
    assert id_key(b"1700000000000-9") < id_key(b"1700000000000-10") < id_key("1700000000001-0")
    assert id_key("0-0") == (0, 0)


A, B = Instrument("sim", "A"), Instrument("sim", "B")


def test_written_entries_queue_per_instrument_in_order_and_others_are_ignored() -> None:
    handoff = Handoff([A], limit=10)
    other_venue = tick("A", 4)._replace(venue="bybit")
    ticks = [tick("A", 1), tick("B", 2), tick("A", 3), other_venue]
    handoff.written(ticks, [b"1-0", b"2-0", b"3-0", b"4-0"])
    assert [(i, t.event_ms) for i, t in handoff.queues[A]] == [(b"1-0", 1), (b"3-0", 3)]
    assert handoff.pending() and handoff.wake.is_set() and handoff.breaks == {A: 0}


def test_a_full_queue_is_emptied_and_counted_as_a_break() -> None:
    handoff = Handoff([A], limit=3)
    handoff.written([tick("A", n) for n in range(5)], [b"%d-0" % n for n in range(5)])
    assert [t.event_ms for _, t in handoff.queues[A]] == [3, 4]
    assert handoff.breaks[A] == 1 and handoff.overflowed == 3


def test_a_failed_write_breaks_every_queue() -> None:
    handoff = Handoff([A, B])
    handoff.written([tick("A", 1)], [b"1-0"])
    handoff.failed()
    assert not handoff.pending() and handoff.breaks == {A: 1, B: 1}


def test_a_handoff_needs_room() -> None:
    with pytest.raises(ValueError, match="positive"):
        Handoff([A], limit=0)


# -- the worker on a handoff ----------------------------------------------------------------


def reference(ticks: list[Tick]) -> dict[str, tuple[bytes, list[tuple[int, float]]]]:
    """Per symbol: the backtest's learner snapshot and (t_ms, ret_bps) of its predictions."""
    backtest = Backtest({"horizon_ms": 1000, "sample_ms": 100})
    out: dict[str, list[tuple[int, float]]] = {s: [] for s in SYMBOLS}
    for t in ticks:
        out[t.symbol].extend((p.t_ms, p.ret_bps) for p in backtest.feed(t))
    return {s: (backtest.symbols[s].learner.snapshot(), out[s]) for s in SYMBOLS}


def published(client: redis.Redis, symbol: str) -> list[tuple[int, float]]:
    key = keys.signals_key("tickcast", "sim", symbol)
    return [(s.t_ms, s.ret_bps) for s in map(decode_signal, (f for _, f in client.xrange(key)))]


async def wired(
    client: redis.asyncio.Redis, limit: int = 10_000, **worker: object
) -> tuple[Handoff, TickWriter, Worker]:
    """A writer handing off to a restored worker, as ``tickcast run`` wires them."""
    handoff = Handoff([Instrument("sim", s) for s in SYMBOLS], limit=limit)
    writer = TickWriter(client, Settings())
    writer.tap = handoff
    worker_ = Worker(client, settings(**worker), handoff=handoff)
    await worker_.restore()
    return handoff, writer, worker_


async def run_along(worker: Worker, writer: TickWriter, ticks: list[Tick], batch: int = 37) -> None:
    """Write ``ticks`` in batches, the worker stepping before and between them, then drain
    it."""
    await worker.step(block_ms=0)
    for i in range(0, len(ticks), batch):
        await writer.write(ticks[i : i + batch])
        await worker.step(block_ms=0)
    while await worker.step(block_ms=0):
        pass
    await worker.step(block_ms=0)


def assert_like_reference(
    worker: Worker, client: redis.Redis, ticks: list[Tick], *, last_id: bytes
) -> None:
    expected = reference(ticks)
    for symbol in SYMBOLS:
        snapshot, signals = expected[symbol]
        assert len(signals) > 200
        assert published(client, symbol) == signals, "each sample published once, in order"
        learner = worker.states[Instrument("sim", symbol)].learner
        assert isinstance(learner, OnlineLearner)
        assert learner.snapshot() == snapshot, "bit-identical to the backtest"
    assert worker.states[Instrument("sim", SYMBOLS[-1])].last_id.encode() == last_id


def last_entry_id(client: redis.Redis, symbol: str) -> bytes:
    entry: bytes = client.xrevrange(keys.ticks_key("tickcast", "sim", symbol), count=1)[0][0]
    return entry


async def test_a_live_worker_takes_every_tick_from_the_handoff_and_matches_the_backtest(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis, ticks: list[Tick]
) -> None:
    _, writer, worker = await wired(async_redis_client)
    await run_along(worker, writer, ticks)
    assert worker.handed_off == len(ticks), "no tick read back from Redis"
    assert worker.reads == 1, "one XREAD to find the streams empty"
    assert_like_reference(
        worker, redis_client, ticks, last_id=last_entry_id(redis_client, SYMBOLS[-1])
    )


async def test_a_restarted_worker_catches_up_from_redis_then_joins_the_handoff(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis, ticks: list[Tick]
) -> None:
    cut = len(ticks) // 3
    plain = TickWriter(async_redis_client, Settings())
    for i in range(0, 2 * cut, 500):  # a checkpoint at `cut`, then a backlog the worker missed
        await plain.write(ticks[i : min(i + 500, 2 * cut)])
        if i <= cut < i + 500:
            first = Worker(async_redis_client, settings())
            await first.restore()
            while await first.step(block_ms=0):
                pass
            await first.checkpoint(force=True)
    _, writer, worker = await wired(async_redis_client, read_count=64)
    await run_along(worker, writer, ticks[2 * cut :])
    assert 0 < worker.handed_off < len(ticks) - 2 * cut, "read from Redis first, then handed off"
    assert all(s.live for s in worker.states.values())
    assert_like_reference(
        worker, redis_client, ticks, last_id=last_entry_id(redis_client, SYMBOLS[-1])
    )


async def test_breaks_send_the_worker_back_to_redis_without_losing_or_repeating_a_tick(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis, ticks: list[Tick]
) -> None:
    handoff, writer, worker = await wired(async_redis_client, limit=50, read_count=64)
    third = len(ticks) // 3
    await run_along(worker, writer, ticks[:third])
    for i in range(third, 2 * third, 200):  # batches over the limit: the queues overflow
        await writer.write(ticks[i : min(i + 200, 2 * third)])
        if i // 200 % 3 == 0:
            handoff.failed()  # as a write that failed half-way would
        await worker.step(block_ms=0)
    await run_along(worker, writer, ticks[2 * third :])
    assert handoff.overflowed > 0 and worker.reads > 3
    assert worker.handed_off < len(ticks)
    assert_like_reference(
        worker, redis_client, ticks, last_id=last_entry_id(redis_client, SYMBOLS[-1])
    )


async def test_a_break_during_the_catch_up_read_keeps_the_symbol_reading(
    async_redis_client: redis.asyncio.Redis, redis_client: redis.Redis, ticks: list[Tick]
) -> None:
    handoff, writer, worker = await wired(async_redis_client)
    read = worker._read
    cut = len(ticks) // 2

    async def read_then_break(block_ms: int, states: object) -> object:
        reply = await read(block_ms, states)
        if worker.reads == 1:  # written after the first XREAD, then lost from the queues
            await writer.write(ticks[:cut])
            handoff.failed()
        return reply

    worker._read = read_then_break  # type: ignore[method-assign]
    await run_along(worker, writer, ticks[cut:])
    assert worker.reads >= 2
    assert_like_reference(
        worker, redis_client, ticks, last_id=last_entry_id(redis_client, SYMBOLS[-1])
    )
