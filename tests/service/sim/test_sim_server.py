"""The simulated exchange in its default dialect, Binance USDⓈ-M: routes, streams, control
messages, faults."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import itertools
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus

from tickcast.service.sim.faults import FaultConfig, apply_tick_faults
from tickcast.service.sim.server import SimExchange
from tickcast.service.ticks import Tick, quote, trade
from tickcast.service.venues.binance.dialect import MALFORMED_FRAMES
from tickcast.service.venues.binance.usdm import VENUE
from tickcast.service.venues.venue import SimKeepalive

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
T0 = 1_767_225_600_000


def market(n: int, step_ms: int = 10, symbols: tuple[str, ...] = (BTC,)) -> Iterator[Tick]:
    """``n`` rounds of one trade and one quote per symbol, ``step_ms`` apart in event time."""
    for i in range(1, n + 1):
        for k, symbol in enumerate(symbols):
            px = (60_000.0 if symbol == BTC else 3_000.0) + 0.1 * (i % 50)
            ms = T0 + i * step_ms
            yield trade("sim", symbol, ms, 0, px, 0.001 * (i % 7 + 1), 1 if i % 3 else -1, str(i))
            yield quote("sim", symbol, ms + k, 0, px - 0.1, 1.5, px, 2.25, 10 * i)


@contextlib.asynccontextmanager
async def open_ws(url: str, **kwargs: Any) -> AsyncIterator[ClientConnection]:
    """A client connection, aborted on exit (a test client may leave frames unread, which
    would stall a polite closing handshake for its whole timeout)."""
    ws = await connect(url, **kwargs)
    try:
        yield ws
    finally:
        ws.transport.abort()


def comparable(tick: Tick) -> Tick:
    return tick._replace(venue="sim", recv_ns=0)


async def recv_json(ws: ClientConnection, timeout: float = 5.0) -> object:
    return orjson.loads(await asyncio.wait_for(ws.recv(decode=False), timeout))


async def recv_n(ws: ClientConnection, n: int, timeout: float = 10.0) -> list[bytes]:
    async def take() -> list[bytes]:
        return [await ws.recv(decode=False) for _ in range(n)]

    return await asyncio.wait_for(take(), timeout)


async def assert_quiet(ws: ClientConnection, seconds: float) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.recv(), seconds)


async def subscribe(ws: ClientConnection, streams: list[str], rid: int = 1) -> None:
    await ws.send(orjson.dumps({"method": "SUBSCRIBE", "params": streams, "id": rid}).decode())
    assert await recv_json(ws) == {"result": None, "id": rid}


async def test_a_combined_public_stream_carries_every_tick_wrapped_and_in_order() -> None:
    ticks = list(market(200))
    async with SimExchange(iter(ticks), speed=0) as sim:
        path = "/public/stream?streams=btcusdt@trade/btcusdt@bookTicker"
        async with open_ws(sim.url + path) as ws:
            frames = await recv_n(ws, len(ticks))
    wrapped = [orjson.loads(f) for f in frames]
    assert {w["stream"] for w in wrapped} == {"btcusdt@trade", "btcusdt@bookTicker"}
    parser = VENUE.parser(label="sim")
    parsed = [t for f in frames for t in parser.parse(f, 0)]
    assert [comparable(t) for t in parsed] == [comparable(t) for t in ticks]
    assert parser.stats.total_rejected == 0


async def test_a_raw_endpoint_sends_bare_events_of_the_streams_in_its_path() -> None:
    ticks = list(market(50, symbols=(BTC, ETH)))
    async with (
        SimExchange(iter(ticks), speed=0) as sim,
        open_ws(sim.url + "/public/ws/ethusdt@trade") as ws,
    ):
        frames = [orjson.loads(f) for f in await recv_n(ws, 50)]
        await assert_quiet(ws, 0.2)
    assert all(f["e"] == "trade" and f["s"] == "ETHUSDT" for f in frames)
    assert [f["t"] for f in frames] == list(range(1, 51))


async def test_the_market_route_serves_agg_trades_and_mark_prices() -> None:
    ticks = list(market(300, step_ms=20))  # 6 s of event time
    async with SimExchange(iter(ticks), speed=0) as sim:
        path = "/market/stream?streams=btcusdt@aggTrade/btcusdt@markPrice@1s"
        async with open_ws(sim.url + path) as ws:
            await sim.wait_sent(10.0)
            frames = []
            with pytest.raises(TimeoutError):
                while True:
                    frames.append(orjson.loads(await asyncio.wait_for(ws.recv(), 0.3)))
    aggs = [f["data"] for f in frames if f["stream"] == "btcusdt@aggTrade"]
    marks = [f["data"] for f in frames if f["stream"] == "btcusdt@markPrice@1s"]
    assert len(aggs) == 300
    assert [a["a"] for a in aggs] == list(range(1, 301))
    assert 5 <= len(marks) <= 7
    assert all(m["e"] == "markPriceUpdate" and float(m["p"]) > 0 for m in marks)
    assert VENUE.parser(label="sim").parse(orjson.dumps(frames[0]), 0)


async def test_subscribe_unsubscribe_and_list_are_answered_like_the_venue() -> None:
    async with (
        SimExchange(market(10**5, step_ms=1), speed=1.0) as sim,
        open_ws(sim.url + "/public/ws") as ws,
    ):
        await subscribe(ws, ["btcusdt@trade"], rid=7)
        assert orjson.loads(await ws.recv())["e"] == "trade"
        await ws.send('{"method":"LIST_SUBSCRIPTIONS","id":8}')
        reply = None
        while not (isinstance(reply, dict) and reply.get("id") == 8):
            reply = await recv_json(ws)
        assert reply == {"result": ["btcusdt@trade"], "id": 8}
        await ws.send('{"method":"UNSUBSCRIBE","params":["btcusdt@trade"],"id":9}')
        while reply != {"result": None, "id": 9}:
            reply = await recv_json(ws)
        assert sim.subscribers("btcusdt@trade") == 0
        await ws.send("{not json")
        while not (isinstance(reply, dict) and "error" in reply):
            reply = await recv_json(ws)
        assert reply["error"]["code"] == 3


async def test_the_unrouted_url_acknowledges_public_streams_and_then_sends_nothing() -> None:
    async with (
        SimExchange(market(10**6, step_ms=1), speed=0) as sim,
        open_ws(sim.url + "/ws") as legacy,
        open_ws(sim.url + "/public/ws/btcusdt@trade") as routed,
    ):
        await subscribe(legacy, ["btcusdt@trade", "btcusdt@bookTicker"])
        assert len(await recv_n(routed, 100)) == 100
        await assert_quiet(legacy, 0.3)
        await subscribe(legacy, ["btcusdt@aggTrade"], rid=2)
        assert orjson.loads(await legacy.recv())["e"] == "aggTrade"


async def test_a_stream_on_the_wrong_route_stays_silent() -> None:
    async with (
        SimExchange(market(10**6, step_ms=1), speed=0) as sim,
        open_ws(sim.url + "/market/ws/btcusdt@trade") as wrong,
        open_ws(sim.url + "/public/ws/btcusdt@trade") as right,
    ):
        assert await recv_n(right, 10)
        await assert_quiet(wrong, 0.3)


async def test_an_unknown_path_is_refused_at_the_handshake() -> None:
    async with SimExchange(market(10), speed=0) as sim:
        with pytest.raises(InvalidStatus) as info:
            async with open_ws(sim.url + "/api/v3/ticker"):
                pass
    assert info.value.response.status_code == 404


async def test_unpaced_markets_wait_for_the_first_subscriber() -> None:
    async with SimExchange(market(20), speed=0) as sim:
        await asyncio.sleep(0.2)
        assert sim.stats.events == 0
        async with open_ws(sim.url + "/public/ws/btcusdt@trade") as ws:
            first = orjson.loads(await ws.recv())
    assert first["t"] == 1


async def test_paced_markets_follow_event_time_scaled_by_speed() -> None:
    ticks = [t for t in market(3, step_ms=400) if t.kind == "trade"]  # 0.4 s apart
    async with (
        SimExchange(iter(ticks), speed=2.0, start_on_subscribe=True) as sim,
        open_ws(sim.url + "/public/ws/btcusdt@trade") as ws,
    ):
        loop = asyncio.get_running_loop()
        stamps = []
        for _ in range(3):
            await recv_json(ws)
            stamps.append(loop.time())
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert all(g >= 0.15 for g in gaps), gaps  # 0.4 s of event time at 2x = 0.2 s


async def test_replay_serves_the_recorded_frames_with_their_original_spacing(
    tmp_path: Path, binance_recording: Path
) -> None:
    with gzip.open(binance_recording, "rb") as handle:
        lines = [next(handle) for _ in range(400)]
    frames = [line.split(b" ", 1)[1].strip() for line in lines]
    path = tmp_path / "head.gz"
    path.write_bytes(gzip.compress(b"".join(lines)))
    async with SimExchange(None, replay_path=path, speed=0) as sim:
        url = sim.url + "/public/stream?streams=btcusdt@trade/btcusdt@bookTicker/btcusdt@depth@0ms"
        async with open_ws(url) as ws:
            got = await recv_n(ws, sum(1 for f in frames if b'"stream"' in f))
    assert got == [f for f in frames if b'"stream"' in f]

    spaced = tmp_path / "spaced.txt"
    t = 1_723_161_256_000_000_000
    spaced.write_bytes(
        b"".join(f"{t + i * 250_000_000} ".encode() + frames[i] + b"\n" for i in (2, 3, 4))
    )
    stream = orjson.loads(frames[2])["stream"]
    async with (
        SimExchange(None, replay_path=spaced, speed=1.0, start_on_subscribe=True) as sim,
        open_ws(f"{sim.url}/public/ws/{stream}") as ws,
    ):
        loop = asyncio.get_running_loop()
        first = orjson.loads(await asyncio.wait_for(ws.recv(), 5.0))
        start = loop.time()
        assert first == orjson.loads(frames[2])["data"]  # raw endpoint: the bare event
        await sim.wait_sent(5.0)
        assert loop.time() - start >= 0.2  # 0.5 s of recorded time, paced


async def test_the_server_pings_and_a_websockets_client_answers() -> None:
    async with (
        SimExchange(market(10), speed=0, keepalive=SimKeepalive(0.05, 0.5)) as sim,
        open_ws(sim.url + "/public/ws/btcusdt@trade", ping_interval=None) as ws,
    ):
        await asyncio.sleep(0.4)
        assert [c.latency_s > 0.0 for c in sim.clients] == [True]
        await recv_n(ws, 10)


async def test_a_drop_fault_aborts_each_connection_after_its_period() -> None:
    faults = FaultConfig(drop_every_s=0.2)
    async with (
        SimExchange(market(10**6, step_ms=1), speed=0, faults=faults) as sim,
        open_ws(sim.url + "/public/ws/btcusdt@trade") as ws,
    ):
        with pytest.raises(ConnectionClosedError):
            async with asyncio.timeout(5.0):
                while True:
                    await ws.recv()
        assert sim.stats.fault_drops == 1


async def test_silent_and_ack_only_faults_keep_the_connection_but_send_no_data() -> None:
    for faults in (FaultConfig(silent=True), FaultConfig(ack_only=True)):
        async with (
            SimExchange(market(10**6, step_ms=1), speed=0, faults=faults) as sim,
            open_ws(sim.url + "/public/ws") as ws,
        ):
            await subscribe(ws, ["btcusdt@trade"])
            await assert_quiet(ws, 0.3)
            await ws.ping()
            faults.silent = faults.ack_only = False
            assert orjson.loads(await ws.recv())["e"] == "trade"
            assert sim.stats.suppressed > 0


async def test_a_frozen_server_stops_answering_pings() -> None:
    faults = FaultConfig()
    async with SimExchange(market(10**6, step_ms=1), speed=0, faults=faults) as sim:
        url = sim.url + "/public/ws/btcusdt@trade"
        async with open_ws(url, ping_interval=0.05, ping_timeout=0.2, close_timeout=0.2) as ws:
            await recv_n(ws, 10)
            faults.freeze = True
            with pytest.raises(ConnectionClosed) as info:
                async with asyncio.timeout(5.0):
                    while True:
                        await ws.recv()
    assert info.value.sent is not None and info.value.sent.code == 1011


async def test_malformed_frames_are_inserted_without_losing_real_ones() -> None:
    ticks = [t for t in market(100) if t.kind == "trade"]
    faults = FaultConfig(malformed_every=10)
    async with (
        SimExchange(iter(ticks), speed=0, faults=faults) as sim,
        open_ws(sim.url + "/public/ws/btcusdt@trade") as ws,
    ):
        frames = await recv_n(ws, 110)
    assert sum(f in MALFORMED_FRAMES for f in frames) == 10
    parser = VENUE.parser(label="sim")
    parsed = [t for f in frames for t in parser.parse(f, 0)]
    assert [comparable(t) for t in parsed] == [comparable(t) for t in ticks]
    assert parser.stats.total_rejected + parser.stats.total_skipped == 10


def test_tick_faults_duplicate_and_swap_trades_but_leave_quotes_alone() -> None:
    ticks = list(market(30))
    dup = list(apply_tick_faults(iter(ticks), FaultConfig(duplicate_every=5)))
    assert len(dup) == len(ticks) + 6
    swapped = list(apply_tick_faults(iter(ticks), FaultConfig(reorder_every=4)))
    assert sorted(swapped) == sorted(ticks)
    ids = [int(t.trade_id) for t in swapped if t.kind == "trade"]
    assert ids != sorted(ids)
    assert [t for t in swapped if t.kind == "quote"] == [t for t in ticks if t.kind == "quote"]


async def test_the_sim_command_serves_a_market_until_it_is_told_to_stop() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tickcast.service.cli",
        "sim",
        "--symbols",
        "ETH/USDT:USDT",
        "--speed",
        "20",
        "--seed",
        "3",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        first = await asyncio.wait_for(proc.stdout.readline(), 30.0)
        base = first.decode().split()[-1]
        assert base.startswith("ws://127.0.0.1:")
        async with open_ws(base + "/public/stream?streams=ethusdt@trade") as ws:
            frame = await recv_json(ws, 10.0)
        assert isinstance(frame, dict) and frame["data"]["s"] == "ETHUSDT"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30.0)
    assert code == 0


async def test_the_sim_command_speaks_the_dialect_it_is_asked_for_and_prints_the_plan() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tickcast.service.cli", "sim", "--dialect", "okx",
        "--symbols", "BTC/USDT:USDT", "--speed", "20", "--seconds", "20",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = [(await asyncio.wait_for(proc.stdout.readline(), 30.0)).decode() for _ in range(3)]
        assert lines[0].startswith("simulated OKX swap on ws://127.0.0.1:")
        route, url = lines[1].split()
        assert route == "public:" and url.endswith("/ws/v5/public")
        request = lines[2].split("subscribe: ", 1)[1]
        async with open_ws(url) as ws:
            await ws.send(request)
            answers = [await recv_json(ws, 10.0) for _ in range(3)]
        assert {"event": "subscribe"}.items() <= answers[0].items()  # type: ignore[union-attr]
        trades = [a for a in answers if a.get("arg", {}).get("channel") == "trades" and "data" in a]  # type: ignore[union-attr]
        assert all(t["data"][0]["instId"] == "BTC-USDT-SWAP" for t in trades)  # type: ignore[index]
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30.0)
    assert code == 0


async def first_and_last_trade_ids(n: int) -> tuple[int, int]:
    """Run ``tickcast sim`` (real time), read ``n`` ETH trades from it, stop it: the first and
    the last trade id read."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tickcast.service.cli", "sim", "--symbols", "ETH/USDT:USDT",
        "--seed", "3", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        base = (await asyncio.wait_for(proc.stdout.readline(), 30.0)).decode().split()[-1]
        async with open_ws(base + "/public/stream?streams=ethusdt@trade") as ws:
            frames = [await recv_json(ws, 10.0) for _ in range(n)]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30.0) == 0
    ids = [f["data"]["t"] for f in frames]  # type: ignore[index]
    assert ids == list(range(ids[0], ids[0] + n)), "consecutive within a run"
    return ids[0], ids[-1]


async def test_a_restarted_sim_command_numbers_its_trades_above_the_last_run() -> None:
    """A client that resumes from the last trade id it stored (Binance) must see a restarted
    simulator's ids continue upwards: ids starting again at 1 would read as old trades."""
    _, last = await first_and_last_trade_ids(3)
    first, _ = await first_and_last_trade_ids(3)
    assert first > last
    assert first < 2**53, "exact as a JSON number"
