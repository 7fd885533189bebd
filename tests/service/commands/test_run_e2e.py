"""The live service as a user runs it: ``tickcast run`` / ``worker`` / ``subscribe`` /
``status`` in subprocesses, against real redis-servers and the simulated exchange.

The ``live`` fixture runs ``tickcast run --exchange sim`` on its own embedded Redis (no URL
configured); ``subscribe`` and ``status`` find it through the state directory alone.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tickcast.model.learner import OnlineLearner
from tickcast.service.bus import codec, keys
from tickcast.service.bus.discovery import DISCOVERY_FILE
from tickcast.service.bus.embedded import EmbeddedRedis, free_port
from tickcast.service.schema import Signal, decode_signal
from tickcast.service.sim.market import DEFAULT_SYMBOLS, SyntheticMarket
from tickcast.service.ticks import Tick

from support import CLI, INGEST_METRICS, environment, http, start, wait_until

SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT")
SYMBOL_ARGS = ("--symbols", ",".join(SYMBOLS))


@dataclass
class Live:
    proc: subprocess.Popen[bytes]
    state_dir: Path
    metrics_url: str
    env: dict[str, str]
    log: Path

    def redis_pid(self) -> int:
        return int(json.loads((self.state_dir / DISCOVERY_FILE).read_text())["pid"])

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"tickcast run exited early:\n{self.log.read_text()}")
        return http(self.metrics_url + "/readyz")[0] == 200


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    state_dir = tmp_path_factory.mktemp("live")
    port = free_port()
    env = environment(state_dir)
    log = state_dir / "run.log"
    args = ["run", "--exchange", "sim", "--no-view", "--speed", "4"]
    args += ["--symbols", ",".join(SYMBOLS), "--metrics-port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen([*CLI, *args], env=env, stdout=out, stderr=subprocess.STDOUT)
    live = Live(proc, state_dir, f"http://127.0.0.1:{port}", env, log)
    try:
        wait_until("readiness", live.ready)
        yield live
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def cli(live: Live, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=live.env, capture_output=True, text=True, timeout=timeout
    )


def test_subscribe_finds_the_service_and_prints_its_signals_as_json(live: Live) -> None:
    out = cli(live, "subscribe", "--json", "--count", "6")
    assert out.returncode == 0, out.stderr
    signals = [Signal.model_validate_json(line) for line in out.stdout.splitlines()]
    assert len(signals) == 6
    assert {s.symbol for s in signals} <= set(SYMBOLS)
    assert all(s.venue == "sim" and s.horizon_ms == 1000 for s in signals)
    now_ms = time.time() * 1000
    assert all(abs(now_ms - s.t_ms) < 600_000 for s in signals), "sim event time is now"


def test_subscribe_from_the_start_replays_signals_in_order(live: Live) -> None:
    out = cli(live, "subscribe", "--json", "--from-start", "--count", "40", "--symbols", SYMBOLS[0])
    assert out.returncode == 0, out.stderr
    times = [json.loads(line)["t_ms"] for line in out.stdout.splitlines()]
    assert len(times) == 40
    assert times == sorted(set(times)), "one signal per sample, in order"
    assert all(b - a == 100 for a, b in itertools.pairwise(times)), "sample_ms grid"


def test_status_reports_each_symbol_of_the_running_service(live: Live) -> None:
    wait_until(
        "live counts",
        lambda: (
            json.loads(cli(live, "status", "--json").stdout)["symbols"][0]["samples"] is not None
        ),
    )
    out = cli(live, "status", "--json")
    assert out.returncode == 0, out.stderr
    rows = {row["symbol"]: row for row in json.loads(out.stdout)["symbols"]}
    assert set(rows) == set(SYMBOLS)
    for row in rows.values():
        assert 0.0 <= row["last_tick_age_s"] < 30.0
        assert row["samples"] > 0 and row["model_version"] > 0
        assert 0.0 <= row["hit_rate"] <= 1.0
        for owner in (row["worker_owner"], row["ingester_owner"]):
            assert owner.split(":")[1] == str(live.proc.pid), "the running service owns it"
    table = cli(live, "status")
    assert table.returncode == 0 and SYMBOLS[0] in table.stdout and "hit rate" in table.stdout


EXPECTED_METRICS = INGEST_METRICS | {
    "tickcast_samples_total",
    "tickcast_updates_total",
    "tickcast_skipped_updates_total",
    "tickcast_hit_rate",
    "tickcast_ic",
    "tickcast_skill_vs_zero",
    "tickcast_model_version",
    "tickcast_tick_to_signal_acked_seconds_bucket",
    "tickcast_feed_lag_seconds_bucket",
    "tickcast_worker_lag_seconds",
    "tickcast_lease_held",
    "tickcast_redis_up",
    "tickcast_build_info",
    "process_start_time_seconds",
    "tickcast_last_tick_event_time_seconds",
    "tickcast_checkpoint_age_seconds",
    "tickcast_signals_published_total",
    "tickcast_signals_deduplicated_total",
    "tickcast_worker_ticks_total",
    "tickcast_worker_undecodable_ticks_total",
    "tickcast_worker_stream_trimmed_total",
}


def scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    code, body = http(url + "/metrics")
    assert code == 200
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_every_metric_appears_on_the_metrics_endpoint_with_live_values(live: Live) -> None:
    got = scrape(live.metrics_url)
    assert set(got) >= EXPECTED_METRICS
    btc = (("symbol", SYMBOLS[0]), ("venue", "sim"))
    assert got["tickcast_samples_total"][btc] > 0
    assert got["tickcast_model_version"][btc] > 0
    assert got["tickcast_ticks_written_total"][(("kind", "trade"), *btc)] > 0
    assert got["tickcast_tick_to_signal_acked_seconds_count"][btc] > 0
    sub_ms = {dict(k)["le"] for k in got["tickcast_tick_to_signal_acked_seconds_bucket"]}
    assert {"0.0001", "0.0005"} <= sub_ms
    assert abs(got["tickcast_last_tick_event_time_seconds"][btc] - time.time()) < 600
    labels = {dict(k).get("symbol") for k in got["tickcast_samples_total"]}
    assert labels == set(SYMBOLS), "symbol labels are the configured symbols only"
    assert http(live.metrics_url + "/healthz") == (200, "ok\n")


def test_readiness_flips_when_redis_goes_away_and_back(live: Live) -> None:
    pid = live.redis_pid()
    os.kill(pid, signal.SIGSTOP)  # Redis stops answering
    try:
        wait_until("not ready", lambda: http(live.metrics_url + "/readyz")[0] == 503, 15)
        _, body = http(live.metrics_url + "/readyz")
        assert "redis" in body
        assert http(live.metrics_url + "/healthz")[0] == 200, "alive all the same"
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_until("ready again", live.ready, 30)


def test_sigterm_exits_zero_in_time_with_a_fresh_checkpoint(live: Live) -> None:
    sent_ms = time.time_ns() // 1_000_000
    live.proc.send_signal(signal.SIGTERM)
    assert live.proc.wait(timeout=10) == 0, live.log.read_text()
    assert not (live.state_dir / DISCOVERY_FILE).exists(), "embedded Redis stopped cleanly"
    with EmbeddedRedis(live.state_dir, discovery=False) as server:  # its AOF survived
        client = redis.Redis.from_url(server.url)
        try:
            for symbol in SYMBOLS:
                fields = client.hgetall(keys.ckpt_key("tickcast", "sim", symbol))
                assert int(fields[b"saved_ms"]) >= sent_ms
                newest = client.xrevrange(keys.ticks_key("tickcast", "sim", symbol), count=1)
                assert fields[b"last_id"] == newest[0][0], "every flushed tick was consumed"
        finally:
            client.close()


# -- SIGKILL and restart ------------------------------------------------------------------


def deterministic_ticks() -> list[Tick]:
    specs = [s for s in DEFAULT_SYMBOLS if s.symbol in SYMBOLS]
    return list(SyntheticMarket(specs, seed=11).ticks(90.0))


def write_ticks(client: redis.Redis, ticks: list[Tick]) -> None:
    pipe = client.pipeline(transaction=False)
    for tick in ticks:
        pipe.xadd(keys.ticks_key("tickcast", "sim", tick.symbol), codec.encode(tick))  # type: ignore[arg-type]
    pipe.execute()


def reference(ticks: list[Tick], symbol: str) -> tuple[bytes, list[tuple[int, float, float]]]:
    learner = OnlineLearner(horizon_ms=1000, sample_ms=100)
    preds = []
    for tick in ticks:
        if tick.symbol == symbol:
            preds.extend((p.t_ms, p.ret_bps, p.p_up) for p in learner.update(tick))
    return learner.snapshot(), preds


def signals_of(client: redis.Redis, symbol: str) -> list[Signal]:
    key = keys.signals_key("tickcast", "sim", symbol)
    return [decode_signal(fields) for _, fields in client.xrange(key)]


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return start(["worker", *SYMBOL_ARGS], env, log)


def test_a_sigkilled_worker_restarts_to_the_bit_identical_model_without_duplicates(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    ticks = deterministic_ticks()
    cut = int(len(ticks) * 0.4)
    first_part = {s: reference(ticks[:cut], s)[1] for s in SYMBOLS}
    env = environment(
        tmp_path,
        TICKCAST__REDIS__URL=redis_url,
        TICKCAST__METRICS__ENABLED="false",
        TICKCAST__WORKER__CHECKPOINT_EVERY_SAMPLES="97",
        TICKCAST__WORKER__READ_COUNT="64",
    )
    log = tmp_path / "worker.log"
    write_ticks(redis_client, ticks[:cut])
    worker = start_worker(env, log)
    try:
        wait_until(
            "the first part published",
            lambda: all(len(signals_of(redis_client, s)) == len(first_part[s]) for s in SYMBOLS),
        )
        ckpt_t = int(redis_client.hget(keys.ckpt_key("tickcast", "sim", SYMBOLS[0]), "last_t") or 0)
        assert 0 < ckpt_t < first_part[SYMBOLS[0]][-1][0], "the checkpoint lags the signals"
        worker.kill()  # SIGKILL: no final checkpoint
        worker.wait(timeout=10)
        write_ticks(redis_client, ticks[cut:])
        worker = start_worker(env, log)
        expected = {s: reference(ticks, s) for s in SYMBOLS}
        wait_until(
            "every sample published",
            lambda: all(len(signals_of(redis_client, s)) >= len(expected[s][1]) for s in SYMBOLS),
        )
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=10) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    for symbol in SYMBOLS:
        snapshot, preds = expected[symbol]
        got = [(s.t_ms, s.ret_bps, s.p_up) for s in signals_of(redis_client, symbol)]
        assert got == preds, "no duplicate, no gap, the same values as one uninterrupted run"
        model = redis_client.hget(keys.ckpt_key("tickcast", "sim", symbol), "model")
        assert OnlineLearner.from_snapshot(model).model_version > 0  # type: ignore[arg-type]
        assert model == snapshot, "bit-identical weights and learner state"


def start_run(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return start(["run", "--exchange", "sim", "--no-view", "--speed", "4", *SYMBOL_ARGS], env, log)


def test_a_sigkilled_run_catches_up_and_ends_as_a_backtest_of_its_streams(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """``tickcast run`` takes ticks from its ingester in process (the handoff); killed and
    restarted, it reads its backlog from Redis first. Either way its model and signals are
    those of one uninterrupted pass over the tick streams."""
    env = environment(
        tmp_path,
        TICKCAST__REDIS__URL=redis_url,
        TICKCAST__METRICS__ENABLED="false",
        TICKCAST__WORKER__CHECKPOINT_EVERY_SAMPLES="41",
    )
    log = tmp_path / "run.log"
    run = start_run(env, log)
    try:
        wait_until("signals", lambda: all(len(signals_of(redis_client, s)) > 60 for s in SYMBOLS))
        run.kill()  # SIGKILL: ticks and signals past the last checkpoint stay in Redis
        run.wait(timeout=10)
        killed_at = {s: len(signals_of(redis_client, s)) for s in SYMBOLS}
        run = start_run(env, log)
        wait_until(
            "more signals",
            lambda: all(len(signals_of(redis_client, s)) > killed_at[s] + 60 for s in SYMBOLS),
        )
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=10) == 0, log.read_text()
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    for symbol in SYMBOLS:
        entries = redis_client.xrange(keys.ticks_key("tickcast", "sim", symbol))
        snapshot, preds = reference([codec.decode(fields) for _, fields in entries], symbol)
        got = [(s.t_ms, s.ret_bps, s.p_up) for s in signals_of(redis_client, symbol)]
        assert got == preds, "no duplicate, no gap, the values of one pass over the stream"
        fields = redis_client.hgetall(keys.ckpt_key("tickcast", "sim", symbol))
        assert fields[b"last_id"] == entries[-1][0]
        assert fields[b"model"] == snapshot, "bit-identical weights and learner state"


def test_a_two_venue_run_fills_both_venues_and_subscribe_and_status_show_both(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = environment(tmp_path)
    args = ["run", "--exchange", "sim:bybit,sim:okx", "--no-view", "--speed", "4",
            "--symbols", SYMBOLS[0], "--metrics-port", str(port)]  # fmt: skip
    proc = start(args, env, tmp_path / "run.log")
    live = Live(proc, tmp_path, f"http://127.0.0.1:{port}", env, tmp_path / "run.log")
    try:
        wait_until("readiness", live.ready)
        out = cli(live, "subscribe", "--json", "--count", "20")
        assert out.returncode == 0, out.stderr
        venues = {Signal.model_validate_json(line).venue for line in out.stdout.splitlines()}
        assert venues == {"sim-bybit", "sim-okx"}
        status = json.loads(cli(live, "status", "--json").stdout)["symbols"]
        assert {(row["venue"], row["symbol"]) for row in status} == {
            ("sim-bybit", SYMBOLS[0]),
            ("sim-okx", SYMBOLS[0]),
        }
        only_okx = cli(live, "subscribe", "--json", "--count", "3", "--exchange", "sim:okx")
        assert {Signal.model_validate_json(x).venue for x in only_okx.stdout.splitlines()} == {
            "sim-okx"
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
