"""``tickcast ingest``: the ingest service alone, with metrics and signal handling, against a
real redis-server and the simulated exchange on loopback."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tickcast.service.bus import keys
from tickcast.service.bus.embedded import free_port
from tickcast.service.cli import build_parser
from tickcast.service.commands import ingest as ingest_command
from tickcast.service.commands import run as run_command
from tickcast.service.ops.config import settings_from_args

from support import CLI, INGEST_METRICS, environment, http, wait_until

SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT")
INGEST = ["ingest", "--exchange", "sim", "--speed", "4", "--symbols", ",".join(SYMBOLS)]
STOPPED = re.compile(r"ingest stopped: received=\d+ written=(\d+)")


def written_by_symbol(metrics_url: str) -> dict[str, float]:
    """``tickcast_ticks_written_total`` summed over kinds, per symbol; asserts the families."""
    code, body = http(metrics_url + "/metrics")
    assert code == 200
    names = set()
    out = dict.fromkeys(SYMBOLS, 0.0)
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            names.add(sample.name)
            if sample.name == "tickcast_ticks_written_total":
                assert sample.labels["venue"] == "sim"
                assert sample.labels["kind"] in ("trade", "quote")
                out[sample.labels["symbol"]] += sample.value
    assert names >= INGEST_METRICS
    assert "tickcast_samples_total" not in names, "an ingester exports no worker metrics"
    return out


def stream_lengths(client: redis.Redis) -> int:
    return sum(int(client.xlen(keys.ticks_key("tickcast", "sim", s))) for s in SYMBOLS)


def final_written(log: str) -> int:
    found = STOPPED.findall(log)
    assert len(found) == 1, log
    return int(found[0])


def assert_clean(log: str) -> None:
    for bad in ("WARNING", "ERROR", "Traceback"):
        assert bad not in log, log


def test_ingest_serves_its_metrics_and_flushes_every_tick_on_sighup(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    port = free_port()
    metrics_url = f"http://127.0.0.1:{port}"
    env = environment(tmp_path, TICKCAST__REDIS__URL=redis_url)
    log = tmp_path / "ingest.log"
    args = [*INGEST, "--metrics-port", str(port), "--stats-every", "0.5"]
    with log.open("wb") as out:
        proc = subprocess.Popen([*CLI, *args], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"tickcast ingest exited early:\n{log.read_text()}")
            return http(metrics_url + "/readyz")[0] == 200

        wait_until("readiness", ready)
        first = written_by_symbol(metrics_url)
        wait_until(
            "more ticks written for every symbol",
            lambda: all(v > first[s] for s, v in written_by_symbol(metrics_url).items()),
        )
        assert http(metrics_url + "/healthz") == (200, "ok\n")
        wait_until("a counters log line", lambda: "ingest sim: received=" in log.read_text())
        last_scraped = sum(written_by_symbol(metrics_url).values())
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=15) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert_clean(text)
    written = final_written(text)
    assert written >= last_scraped > 0
    assert stream_lengths(redis_client) == written, "every counted tick is in Redis"
    assert http(metrics_url + "/healthz")[0] == 0, "the metrics server stopped"


def test_ingest_stops_by_itself_after_the_given_seconds(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    env = environment(tmp_path, TICKCAST__REDIS__URL=redis_url)
    args = [*INGEST, "--seconds", "2", "--metrics-port", "0", "--stats-every", "0"]
    out = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert_clean(out.stderr)
    assert "metrics on http://127.0.0.1:" in out.stderr
    assert "ingest sim: received=" not in out.stderr, "--stats-every 0 logs no counters"
    written = final_written(out.stderr)
    assert written > 0
    assert stream_lengths(redis_client) == written


async def test_ingest_returns_the_exit_code_and_the_counters_of_what_it_wrote(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    args = build_parser().parse_args([*INGEST, "--redis-url", redis_url, "--metrics-port", "0"])
    settings = ingest_command.load_settings(args)
    code, counters = await ingest_command.ingest(
        settings, redis_url, seconds=1.5, stats_every=0.2, handle_signals=False
    )
    assert code == 0
    assert counters["written"] > 0 and counters["queue_depth"] == 0
    assert counters["dropped"] == 0 and counters["rejected"] == 0
    assert counters["received"] == counters["written"]
    assert stream_lengths(redis_client) == counters["written"]


@pytest.mark.parametrize(
    ("flags", "env", "port"),
    [
        ((), {}, ingest_command.METRICS_PORT),
        (("--set", "metrics.enabled=true"), {}, ingest_command.METRICS_PORT),
        (("--metrics-port", "9500"), {}, 9500),
        (("--metrics-port", "0"), {}, 0),
        (("--set", "metrics.port=9464"), {}, 9464),
        ((), {"TICKCAST__METRICS__PORT": "9601"}, 9601),
    ],
)
def test_ingest_takes_its_own_metrics_port_unless_one_is_configured(
    flags: tuple[str, ...], env: dict[str, str], port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [k for k in os.environ if k.startswith("TICKCAST")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = ingest_command.load_settings(build_parser().parse_args(["ingest", *flags]))
    assert settings.metrics.port == port
    assert settings.metrics.host == "127.0.0.1"
    run_args = build_parser().parse_args(["worker", *flags])
    worker = settings_from_args(run_args, run_command.overrides(run_args))
    expected = port if port != ingest_command.METRICS_PORT else 9464
    assert worker.metrics.port == expected, "the worker keeps 9464: the two do not collide"


def test_ingest_reads_its_flags_into_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("TICKCAST")]:
        monkeypatch.delenv(name)
    args = build_parser().parse_args(
        [*INGEST, "--redis-url", "redis://127.0.0.1:1/0", "--offline", "--seconds", "3"]
    )
    settings = ingest_command.load_settings(args)
    assert settings.exchange.name == ["sim"] and tuple(settings.exchange.symbols) == SYMBOLS
    assert settings.sim.speed == 4.0
    assert settings.redis.url is not None
    assert settings.redis.url.get_secret_value() == "redis://127.0.0.1:1/0"
    assert args.offline and args.seconds == 3.0


def test_ingest_reads_several_simulated_venues_at_once_into_their_own_streams(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    env = environment(tmp_path, TICKCAST__REDIS__URL=redis_url)
    args = ["ingest", "--exchange", "sim:bybit,sim:bingx", "--symbols", SYMBOLS[0], "--speed",
            "4", "--seconds", "3", "--metrics-port", "0", "--stats-every", "0"]  # fmt: skip
    out = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert_clean(out.stderr)
    lengths = {
        venue: int(redis_client.xlen(keys.ticks_key("tickcast", venue, SYMBOLS[0])))
        for venue in ("sim-bybit", "sim-bingx")
    }
    assert all(n > 0 for n in lengths.values()), lengths
    assert final_written(out.stderr) == sum(lengths.values())
    assert "sim-bybit: connected to ws://127.0.0.1:" in out.stderr
    assert "/v5/public/linear" in out.stderr and "/swap-market" in out.stderr
