"""Chaos scenarios against real processes (see ``harness.py``): ``kill -9`` loops of ``run``,
``ingest`` and ``worker``, Redis stalled shorter and longer than the lease, Redis killed and
restarted, venue faults from the simulator.

Each asserts the guarantees the README states:

* no trade is stored twice;
* no silent loss: every trade sent and not stored was counted by a process, as a trade-id gap
  or as dropped;
* the signals are those of one uninterrupted learner over the stored tick streams: none lost,
  none twice, the same values.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import LEASE_TTL_S, REPORTS, SIZES, Lab

pytestmark = pytest.mark.timeout(SIZES.timeout_s)


def assert_guarantees(lab: Lab, *, exact_gaps: bool = False) -> None:
    """Account for every trade and signal (the report joins the table), then assert."""
    stored = lab.account_trades()
    signals = lab.account_signals(stored)
    report = lab.report
    REPORTS.append(report)
    assert not lab.bad_ticks, f"invalid ticks stored: {lab.bad_ticks[:3]}"
    assert report.sent > 0 and report.stored > 0, report
    assert report.duplicated == 0, f"trades stored twice: {report}"
    assert report.missing <= report.counted, f"trades lost without being counted: {report}"
    if exact_gaps:
        assert report.missing == report.gaps, f"gaps counted for trades stored: {report}"
    for symbol, (expected, got) in signals.items():
        assert got == expected, (
            f"{symbol}: the signals differ from a replay of the stored ticks "
            f"({len(got)} published, {len(expected)} replayed): {report}"
        )


def finish_split(lab: Lab) -> None:
    """Stop the ingester, let the worker read every stored tick, stop the worker."""
    assert lab.stop("ingest") == 0
    lab.wait_worker_caught_up(lab.stored_ticks())
    assert lab.stop("worker") == 0


def kill_loop(lab: Lab, role: str) -> None:
    """Kill ``role`` at random moments (once it made progress), restarting it each time."""
    lab.wait_progress(lab.start(role))
    for _ in range(SIZES.kills):
        lab.live_for(lab.random_lifetime())
        lab.kill(role)
        lab.wait_progress(lab.start(role))
    lab.live_for(lab.random_lifetime())


def test_kill_loop_of_run(tmp_path: Path) -> None:
    with Lab("kill -9 run", tmp_path) as lab:
        kill_loop(lab, "run")
        assert lab.stop("run") == 0
        assert lab.report.exits == 0
        assert_guarantees(lab)


def test_kill_loop_of_ingest_beside_a_worker(tmp_path: Path) -> None:
    with Lab("kill -9 ingest", tmp_path) as lab:
        lab.start("worker")
        kill_loop(lab, "ingest")
        lab.wait_progress(lab.current["worker"])
        finish_split(lab)
        assert lab.report.exits == 0
        assert_guarantees(lab)


def test_kill_loop_of_worker_beside_an_ingester(tmp_path: Path) -> None:
    with Lab("kill -9 worker", tmp_path) as lab:
        lab.wait_progress(lab.start("ingest"))
        kill_loop(lab, "worker")
        finish_split(lab)
        assert lab.report.exits == 0
        assert_guarantees(lab)


def start_layout(lab: Lab, layout: str) -> str:
    """Start ``run``, or ``worker`` and ``ingest``; the role that ingests."""
    if layout == "run":
        lab.wait_progress(lab.start("run"))
        return "run"
    lab.start("worker")
    lab.wait_progress(lab.start("ingest"))
    return "ingest"


def finish_layout(lab: Lab, layout: str) -> None:
    if layout == "run":
        assert lab.stop("run") == 0
    else:
        finish_split(lab)


@pytest.mark.parametrize("layout", ["run", "ingest + worker"])
def test_redis_stalls_shorter_and_longer_than_the_lease(tmp_path: Path, layout: str) -> None:
    """SIGSTOP of Redis for half the lease (longer than the socket timeouts) and for two and
    a half leases. A process that lost its lease exits 1 (its supervisor, here the harness,
    restarts it: ``exits``); nothing is lost uncounted, stored twice or published twice."""
    with Lab(f"Redis SIGSTOP ({layout})", tmp_path) as lab:
        ingester = start_layout(lab, layout)
        for _ in range(SIZES.stalls):
            lab.live_for(lab.random_lifetime())
            lab.stall_redis(0.5 * LEASE_TTL_S)
            lab.live_for(lab.random_lifetime())
            lab.stall_redis(2.5 * LEASE_TTL_S)
        lab.wait_progress(lab.current[ingester])
        lab.live_for(1.0)
        finish_layout(lab, layout)
        assert_guarantees(lab)


def test_redis_killed_and_restarted_on_its_data(tmp_path: Path) -> None:
    """SIGKILL of Redis, down for a fraction of the lease or longer than it, restarted on its
    AOF; the ingester and the worker run apart."""
    with Lab("Redis kill -9 + restart", tmp_path) as lab:
        start_layout(lab, "ingest + worker")
        for _ in range(SIZES.stalls):
            lab.live_for(lab.random_lifetime())
            lab.restart_redis(0.2 * LEASE_TTL_S)
            lab.live_for(lab.random_lifetime())
            lab.restart_redis(0.2 * LEASE_TTL_S)
            lab.live_for(lab.random_lifetime())
            lab.restart_redis(2.5 * LEASE_TTL_S)
        lab.wait_progress(lab.current["ingest"])
        lab.live_for(1.0)
        finish_split(lab)
        assert_guarantees(lab)


def test_venue_faults_from_the_simulator(tmp_path: Path) -> None:
    """Connections aborted every 3 s, trades sent twice or swapped, malformed frames: every
    trade not stored is a counted gap (and only those), none is stored twice."""
    faults = ["--drop-every", "3", "--duplicate-every", "13", "--reorder-every", "17"]
    faults += ["--malformed-every", "40"]
    with Lab("venue faults", tmp_path, sim_args=faults) as lab:
        run = lab.start("run")
        lab.wait_progress(run)
        lab.live_for(SIZES.fault_s)
        counters = run.scrape()
        assert lab.stop("run") == 0
        assert lab.report.exits == 0
        assert counters is not None
        assert counters["reconnects"] >= 1, "the simulator's drops were felt"
        assert counters["rejected"] > 0, "the malformed frames were counted"
        assert_guarantees(lab, exact_gaps=True)
