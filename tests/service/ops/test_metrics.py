"""Metrics: the collector reads plain counters at scrape time; the health server answers
/metrics, /healthz and /readyz."""

from __future__ import annotations

import itertools
import math
import time
import urllib.error
import urllib.request

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tickcast.service import __version__
from tickcast.service.bus import keys
from tickcast.service.bus.embedded import free_port
from tickcast.service.ops.config import Settings
from tickcast.service.ops.health import MetricsError, MetricsServer, Readiness, RedisProbe
from tickcast.service.ops.metrics import (
    LATENCY_BUCKETS,
    Histogram,
    IngestSnapshot,
    Metrics,
    RedisReading,
)
from tickcast.service.ticks import Instrument

SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT")


def instruments(venue: str) -> list[Instrument]:
    return [Instrument(venue, s) for s in SYMBOLS]


def scrape(metrics: Metrics) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    body, _ = metrics.exposition()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def labels(**kw: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(kw.items()))


def test_a_histogram_counts_inclusive_upper_bounds() -> None:
    h = Histogram((1.0, 2.0, 4.0))
    for v in (0.0, 1.0, 1.0001, 4.0, 100.0):
        h.observe(v)
    assert h.cumulative() == [("1.0", 2), ("2.0", 3), ("4.0", 4), ("+Inf", 5)]
    assert h.quantile(0.5) == 2.0
    assert h.quantile(1.0) == math.inf
    assert math.isnan(Histogram((1.0,)).quantile(0.5))


def test_histogram_bounds_must_ascend() -> None:
    with pytest.raises(ValueError):
        Histogram((2.0, 1.0))


def test_the_latency_histogram_resolves_sub_millisecond_latencies() -> None:
    assert sum(b < 1e-3 for b in LATENCY_BUCKETS) >= 5


def test_latency_buckets_are_at_most_a_third_apart_between_a_quarter_ms_and_10_ms() -> None:
    inside = [b for b in LATENCY_BUCKETS if 0.25e-3 <= b <= 10e-3]
    assert inside[0] == 0.25e-3 and inside[-1] == 10e-3
    ratios = [hi / lo for lo, hi in itertools.pairwise(inside)]
    assert max(ratios) < 1.34, "histogram_quantile's p99 stays within a third of the truth"


def test_every_process_exports_build_info_and_the_process_and_python_collectors() -> None:
    got = scrape(Metrics(instruments("sim"), role="worker"))
    assert got["tickcast_build_info"] == {
        labels(version=__version__, venues="sim", role="worker"): 1.0
    }
    assert got["process_start_time_seconds"][()] > 0
    assert "python_info" in got and "python_gc_collections_total" in got


def test_an_ingest_process_exports_no_worker_metrics() -> None:
    got = scrape(Metrics(instruments("sim"), role="ingest"))
    assert not {"tickcast_samples_total", "tickcast_checkpoint_age_seconds"} & set(got)
    worker = scrape(Metrics(instruments("sim"), role="worker"))
    assert {"tickcast_samples_total", "tickcast_checkpoint_age_seconds"} <= set(worker)


class _Leases:
    def __init__(self) -> None:
        self.acquisitions = {"sim:BTC/USDT:USDT": 2, "sim:ETH/USDT:USDT": 1}
        self.losses = {"sim:BTC/USDT:USDT": 1}

    def holds(self, symbol: str) -> bool:
        return symbol != "sim:BTC/USDT:USDT"


def test_leases_are_exported_per_symbol_and_role() -> None:
    m = Metrics(instruments("sim"))
    m.add_leases("owner", _Leases())
    got = scrape(m)
    btc = labels(venue="sim", symbol="BTC/USDT:USDT", role="owner")
    eth = labels(venue="sim", symbol="ETH/USDT:USDT", role="owner")
    assert got["tickcast_lease_held"] == {btc: 0.0, eth: 1.0}
    assert got["tickcast_lease_acquisitions_total"] == {btc: 2.0, eth: 1.0}
    assert got["tickcast_lease_losses_total"] == {btc: 1.0, eth: 0.0}


def test_the_redis_reading_gives_the_redis_gauges_and_the_worker_lag() -> None:
    m = Metrics(instruments("sim"))
    btc = Instrument("sim", SYMBOLS[0])
    m.redis_source = lambda: RedisReading(True, 1e6, 0.0, {btc: 2.5})
    got = scrape(m)
    assert got["tickcast_redis_up"][()] == 1.0
    assert got["tickcast_redis_used_memory_bytes"][()] == 1e6
    assert got["tickcast_worker_lag_seconds"] == {labels(venue="sim", symbol=SYMBOLS[0]): 2.5}
    m.redis_source = lambda: RedisReading(False)
    down = scrape(m)
    assert down["tickcast_redis_up"][()] == 0.0
    assert (
        "tickcast_redis_used_memory_bytes" not in down and "tickcast_worker_lag_seconds" not in down
    )


def test_the_redis_probe_reads_memory_and_the_lag_behind_each_tick_stream(
    redis_url: str, redis_client: redis.Redis
) -> None:
    btc, eth = (Instrument("sim", s) for s in SYMBOLS)
    btc_key, eth_key = (keys.ticks_key("tickcast", "sim", i.symbol) for i in (btc, eth))
    for ms in (1_000, 2_000, 4_500):
        redis_client.xadd(btc_key, {"t": "x"}, id=f"{ms}-0")
    redis_client.xadd(eth_key, {"t": "x"}, id="7000-0")
    positions = {btc: (btc_key, "2000-0"), eth: (eth_key, "0-0")}
    probe = RedisProbe(redis_url, Settings(), lambda: positions)
    try:
        reading = probe()
        assert reading.up and reading.used_memory_bytes > 0
        assert reading.lag_s == {btc: 2.5, eth: 0.0}  # eth: not read yet, one entry only
        positions[btc] = (btc_key, "4500-0")
        assert probe().lag_s[btc] == 0.0
    finally:
        probe.close()
    gone = RedisProbe(f"redis://127.0.0.1:{free_port()}/0", Settings(), lambda: positions)
    try:
        assert gone() == RedisReading(up=False)
    finally:
        gone.close()


def test_worker_stats_appear_with_base_units_and_bounded_labels() -> None:
    m = Metrics(instruments("sim"))
    st = m.stats("sim", "BTC/USDT:USDT")
    st.samples, st.updates, st.model_version = 7, 5, 5
    st.hit_rate, st.ic = 0.6, 0.2
    st.last_event_ms = 1_700_000_000_500
    st.latency.observe(250e-6)
    got = scrape(m)
    btc = labels(venue="sim", symbol="BTC/USDT:USDT")
    assert got["tickcast_samples_total"][btc] == 7
    assert got["tickcast_updates_total"][btc] == 5
    assert got["tickcast_model_version"][btc] == 5
    assert got["tickcast_hit_rate"][btc] == 0.6
    assert got["tickcast_last_tick_event_time_seconds"][btc] == 1_700_000_000.5
    lat = got["tickcast_tick_to_signal_acked_seconds_bucket"]
    assert lat[labels(venue="sim", symbol="BTC/USDT:USDT", le="0.0002")] == 0
    assert lat[labels(venue="sim", symbol="BTC/USDT:USDT", le="0.00025")] == 1
    assert math.isnan(got["tickcast_ic"][labels(venue="sim", symbol="ETH/USDT:USDT")])
    symbols = {dict(k)["symbol"] for k in got["tickcast_samples_total"]}
    assert symbols == set(SYMBOLS)


def test_every_retire_keeps_each_services_counts_once() -> None:
    m = Metrics(instruments("binanceusdm"), "ingest")

    def snapshot(n: int) -> IngestSnapshot:
        received = {("BTC/USDT:USDT", "trade"): n}
        return IngestSnapshot("binanceusdm", received, {}, {}, {}, reconnects=1, gaps=n)

    for n in (7, 3):  # two services replaced in turn, as a pool member's are
        m.add_ingest_source(lambda n=n: snapshot(n))
        m.retire()
    m.add_ingest_source(lambda: snapshot(1))
    got = scrape(m)
    v = labels(venue="binanceusdm")
    assert (
        got["tickcast_ticks_received_total"][
            labels(venue="binanceusdm", symbol="BTC/USDT:USDT", kind="trade")
        ]
        == 11
    )
    assert got["tickcast_feed_reconnects_total"][v] == 3
    assert got["tickcast_feed_gaps_total"][v] == 11


def test_ingest_counters_are_summed_and_unknown_symbols_fold_into_other() -> None:
    m = Metrics([*instruments("binanceusdm"), Instrument("bybit", "BTC/USDT:USDT")])
    batches = Histogram((10, 100))
    batches.observe(3)
    batches.observe(50)

    def source() -> IngestSnapshot:
        return IngestSnapshot(
            venue="binanceusdm",
            received={("BTC/USDT:USDT", "trade"): 10, ("DOGE/USDT:USDT", "quote"): 4},
            written={("BTC/USDT:USDT", "trade"): 9},
            dropped={("XRP/USDT:USDT", "quote"): 2},
            rejected={"price jump": 1, "invalid json": 2},
            skipped={"subscription ack": 3},
            reconnects=3,
            gaps=1,
            missed_trades=5,
            watchdog_trips=1,
            duplicates=7,
            lost_at_failover=3,
            queue_depth=12,
            batch_sizes=batches,
            routes={"public": (True, 0.25), "market": (False, 30.0)},
        )

    def bybit() -> IngestSnapshot:
        received = {("BTC/USDT:USDT", "trade"): 1, ("ETH/USDT:USDT", "trade"): 2}
        return IngestSnapshot("bybit", received, {}, {}, {"price jump": 5}, reconnects=1)

    m.add_ingest_source(source)
    m.add_ingest_source(source)
    m.add_ingest_source(bybit)
    got = scrape(m)
    v = "binanceusdm"
    rec = got["tickcast_ticks_received_total"]
    assert rec[labels(venue=v, symbol="BTC/USDT:USDT", kind="trade")] == 20
    assert rec[labels(venue=v, symbol="other", kind="quote")] == 8
    assert got["tickcast_ticks_dropped_total"][labels(venue=v, symbol="other", kind="quote")] == 4
    assert got["tickcast_feed_reconnects_total"][labels(venue=v)] == 6
    assert got["tickcast_feed_gaps_total"][labels(venue=v)] == 2
    assert got["tickcast_feed_missed_trades_total"][labels(venue=v)] == 10
    assert got["tickcast_ticks_duplicates_refused_total"][labels(venue=v)] == 14
    assert got["tickcast_ticks_lost_at_failover_total"][labels(venue=v)] == 6
    assert got["tickcast_ingest_queue_depth"][labels(venue=v)] == 24
    assert got["tickcast_xadd_batch_size_count"][labels(venue=v)] == 4
    assert got["tickcast_xadd_batch_size_sum"][labels(venue=v)] == 106
    assert got["tickcast_feed_connected"][labels(venue=v, route="public")] == 1
    assert got["tickcast_feed_connected"][labels(venue=v, route="market")] == 0
    assert got["tickcast_feed_seconds_since_last_frame"][labels(venue=v, route="market")] == 30
    by = "bybit"
    assert rec[labels(venue=by, symbol="BTC/USDT:USDT", kind="trade")] == 1
    assert rec[labels(venue=by, symbol="other", kind="trade")] == 2, "ETH is not bybit's"
    assert rec[labels(venue=v, symbol="ETH/USDT:USDT", kind="trade")] == 0
    assert got["tickcast_feed_reconnects_total"][labels(venue=by)] == 1
    rejected = got["tickcast_ticks_rejected_total"]
    assert rejected[labels(venue=v, reason="price jump")] == 2
    assert rejected[labels(venue=v, reason="invalid json")] == 4
    assert rejected[labels(venue=by, reason="price jump")] == 5
    skipped = got["tickcast_feed_frames_skipped_total"]
    assert skipped[labels(venue=v, reason="subscription ack")] == 6


def test_a_failing_source_does_not_break_the_scrape(caplog: pytest.LogCaptureFixture) -> None:
    m = Metrics(instruments("sim"))

    def broken() -> IngestSnapshot:
        raise RuntimeError("boom")

    m.add_ingest_source(broken)
    assert "tickcast_samples_total" in scrape(m)
    assert "metrics source failed" in caplog.text


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_the_server_answers_metrics_health_and_readiness() -> None:
    state = {"ready": True}

    def readiness() -> tuple[bool, str]:
        return (True, "ready") if state["ready"] else (False, "redis unreachable")

    server = MetricsServer(Metrics(instruments("sim")), "127.0.0.1", 0, readiness=readiness)
    server.start()
    try:
        code, body = get(server.url + "/metrics")
        assert code == 200 and "tickcast_samples_total" in body
        assert get(server.url + "/healthz") == (200, "ok\n")
        assert get(server.url + "/readyz") == (200, "ready\n")
        state["ready"] = False
        assert get(server.url + "/readyz") == (503, "redis unreachable\n")
        assert get(server.url + "/nope")[0] == 404
    finally:
        server.stop()


def test_a_raising_readiness_check_reports_not_ready() -> None:
    def readiness() -> tuple[bool, str]:
        raise ConnectionError("down")

    server = MetricsServer(Metrics(instruments("sim")), "127.0.0.1", 0, readiness=readiness)
    server.start()
    try:
        code, body = get(server.url + "/readyz")
        assert code == 503 and "down" in body
    finally:
        server.stop()


def test_a_busy_port_raises_a_clear_error() -> None:
    first = MetricsServer(Metrics(instruments("sim")), "127.0.0.1", 0)
    first.start()
    try:
        with pytest.raises(MetricsError, match="cannot serve metrics"):
            MetricsServer(Metrics(instruments("sim")), "127.0.0.1", first.port).start()
    finally:
        first.stop()


def test_readiness_needs_redis_and_recent_ticks(redis_url: str) -> None:
    clock = {"t": 0.0}
    ready = Readiness(redis_url, lambda: clock["t"], stale_s=5.0)
    try:
        assert ready() == (False, "no ticks yet")
        clock["t"] = time.monotonic()
        assert ready() == (True, "ready")
        clock["t"] = time.monotonic() - 60.0
        ok, reason = ready()
        assert not ok and reason.startswith("no ticks for")
    finally:
        ready.close()
    gone = Readiness(f"redis://127.0.0.1:{free_port()}/0", time.monotonic, stale_s=5.0)
    try:
        ok, reason = gone()
        assert not ok and reason.startswith("redis unreachable")
    finally:
        gone.close()
