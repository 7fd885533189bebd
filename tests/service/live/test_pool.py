"""The self-balancing pool (``--pool``): the plan every member applies, simulated round after
round; its metrics across services; and real ``tickcast worker --pool`` processes sharing the
symbols of a ``tickcast ingest`` against a real redis-server, joined, killed and stopped."""

from __future__ import annotations

import json
import random
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import redis

from tickcast.service.bus import keys
from tickcast.service.bus.embedded import free_port
from tickcast.service.live.balance import Balancer, Snapshot, plan
from tickcast.service.live.pool import restrict
from tickcast.service.ops.config import load_settings
from tickcast.service.ops.metrics import Histogram, IngestSnapshot, Metrics
from tickcast.service.ticks import Instrument

from support import (
    CLI,
    Owners,
    assert_pool_members_left,
    environment,
    http,
    pool_environment,
    reaping,
    split_join_and_kill,
    start,
    stop_and_compare_signals,
    wait_until,
)

# -- the plan, simulated ----------------------------------------------------------------------


def names_of(m: int) -> list[str]:
    return [f"sim:S{i}/USDT:USDT" for i in range(m)]


class Simulation:
    """Members applying their :class:`Balancer` to one shared snapshot per round (all at
    once: the harshest case for races), their takes applied in a random order, first come
    first served, as the leases are."""

    def __init__(self, names: Sequence[str], members: Sequence[str], seed: int = 0) -> None:
        self.names = list(names)
        self.holders: dict[str, str | None] = dict.fromkeys(names)
        self.balancers = {m: Balancer(names, m) for m in members}
        self.rng = random.Random(seed)
        self.moves: list[tuple[str, str | None, str | None]] = []

    def join(self, member: str) -> None:
        self.balancers[member] = Balancer(self.names, member)

    def die(self, member: str) -> None:
        """The member stops renewing: its entry and leases expire."""
        del self.balancers[member]
        for name, holder in self.holders.items():
            if holder == member:
                self.holders[name] = None

    def counts(self) -> Counter[str]:
        return Counter({m: 0 for m in self.balancers} | Counter(self.holders.values()))

    def round(self, members: Sequence[str] | None = None) -> int:
        """One round; ``members``: who the snapshot lists (default: every member). Returns
        the number of lease changes."""
        listed = tuple(sorted(self.balancers if members is None else members))
        snapshot = Snapshot(listed, dict(self.holders))
        decisions = {}
        for member, balancer in self.balancers.items():
            current = {n for n, h in self.holders.items() if h == member}
            decisions[member] = (current, balancer.decide(snapshot, current).wanted)
        changes = 0
        for member, (current, wanted) in decisions.items():
            for name in current - wanted:
                self.holders[name] = None
                self.moves.append((name, member, None))
                changes += 1
        order = list(decisions.items())
        self.rng.shuffle(order)
        for member, (current, wanted) in order:
            for name in wanted - current:
                if self.holders[name] is None:
                    self.holders[name] = member
                    self.moves.append((name, None, member))
                    changes += 1
        return changes

    def settle(self, limit: int = 50) -> int:
        """Run rounds until 5 in a row change nothing; return the rounds it took."""
        quiet = 0
        for n in range(limit):
            quiet = quiet + 1 if self.round() == 0 else 0
            if quiet == 5:
                return n
        raise AssertionError(f"not settled after {limit} rounds: {self.counts()}")


@pytest.mark.parametrize(
    ("m", "n"), [(6, 2), (6, 3), (5, 2), (4, 3), (7, 3), (1, 3), (3, 7), (50, 4), (500, 7)]
)
def test_members_split_the_symbols_about_evenly_and_then_stay_put(m: int, n: int) -> None:
    sim = Simulation(names_of(m), [f"host:{100 + i}:ns:{i:02x}" for i in range(n)], seed=m * n)
    sim.settle()
    counts = sim.counts()
    assert None not in counts, "every symbol has a worker"
    assert max(counts.values()) - min(counts.values()) <= 1, counts
    assert sum(1 for _, _, to in sim.moves if to is not None) < m + n, "few races and retries"


def test_a_newcomer_takes_symbols_from_the_most_loaded_and_nothing_else_moves() -> None:
    sim = Simulation(names_of(6), ["a", "b"])
    sim.settle()
    before = dict(sim.holders)
    sim.moves.clear()
    sim.join("c")
    sim.settle()
    assert sorted(sim.counts().values()) == [2, 2, 2]
    moved = {name for name, _, _ in sim.moves}
    assert len(moved) == 2, "only the newcomer's share changed hands"
    assert {before[name] for name in moved} == {"a", "b"}, "one from each of the most loaded"
    assert all(sim.holders[name] == "c" for name in moved)


def test_a_dead_members_symbols_are_taken_by_the_others_and_only_those() -> None:
    sim = Simulation(names_of(6), ["a", "b", "c"])
    sim.settle()
    before = dict(sim.holders)
    sim.moves.clear()
    sim.die("c")
    sim.settle()
    assert sorted(sim.counts().values()) == [3, 3]
    assert {name for name, _, _ in sim.moves} == {n for n, h in before.items() if h == "c"}


def test_a_member_seen_for_one_round_only_moves_nothing() -> None:
    sim = Simulation(names_of(6), ["a", "b"])
    sim.settle()
    sim.moves.clear()
    sim.round(members=["a", "b", "ghost"])  # a slow scrape of the members, say
    sim.round()
    sim.round()
    assert sim.moves == [], "a giving back waits for the same plan twice in a row"


def test_symbols_held_outside_the_pool_are_left_to_their_holder() -> None:
    names = names_of(6)
    sim = Simulation(names, ["a", "b"])
    sim.holders[names[0]] = sim.holders[names[1]] = "worker-without-pool"
    sim.settle()
    counts = sim.counts()
    assert counts["worker-without-pool"] == 2
    assert counts["a"] == counts["b"] == 2, "the pool shares what is within its reach"


def test_members_reading_one_snapshot_take_different_free_symbols() -> None:
    rng = random.Random(7)
    for _ in range(200):
        names = names_of(rng.randint(1, 40))
        members = [f"h{rng.randint(0, 9)}:{rng.randint(1, 99999)}:ns:x" for _ in range(4)]
        snapshot = Snapshot(tuple(members), dict.fromkeys(names))
        takes = [plan(names, snapshot, me, set()).take for me in set(members)]
        flat = [name for take in takes for name in take]
        assert len(flat) == len(set(flat)) == len(names)


def test_a_restricted_settings_keeps_the_sources_and_symbols_named() -> None:
    settings = load_settings(None, {"exchange.name": ["sim", "sim:okx"]})
    narrowed = restrict(settings, {"sim:BTC/USDT:USDT", "sim-okx:SOL/USDT:USDT"})
    assert narrowed.exchange.instruments() == [
        Instrument("sim", "BTC/USDT:USDT"),
        Instrument("sim-okx", "SOL/USDT:USDT"),
    ]
    assert restrict(settings, set()).exchange.instruments() == []


# -- metrics across the services of one process ------------------------------------------------


class _Leases:
    def __init__(self, held: set[str]) -> None:
        self.acquisitions = Counter(held)
        self.losses: Counter[str] = Counter()
        self.held = held

    def holds(self, symbol: str) -> bool:
        return symbol in self.held


def _snapshot(received: int) -> IngestSnapshot:
    sizes = Histogram((1, 10))
    sizes.observe(2)
    return IngestSnapshot(
        venue="sim",
        received={("BTC/USDT:USDT", "trade"): received},
        written={("BTC/USDT:USDT", "trade"): received},
        dropped={},
        reconnects=1,
        queue_depth=5,
        batch_sizes=sizes,
        routes={"public": (True, 0.1)},
    )


def _samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    body, _ = m.exposition()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def test_counters_go_on_across_the_services_of_a_pool_process() -> None:
    btc, eth = "sim:BTC/USDT:USDT", "sim:ETH/USDT:USDT"
    m = Metrics([Instrument("sim", "BTC/USDT:USDT"), Instrument("sim", "ETH/USDT:USDT")], "ingest")
    m.add_ingest_source(lambda: _snapshot(7))
    m.add_leases("ingester", _Leases({btc}))
    m.retire()
    m.add_ingest_source(lambda: _snapshot(3))
    m.add_leases("ingester", _Leases({eth}))
    got = _samples(m)
    btc_trade = (("kind", "trade"), ("symbol", "BTC/USDT:USDT"), ("venue", "sim"))
    assert got["tickcast_ticks_received_total", btc_trade] == 10
    assert got["tickcast_feed_reconnects_total", (("venue", "sim"),)] == 2
    assert got["tickcast_ingest_queue_depth", (("venue", "sim"),)] == 5, "the live one's only"
    assert got["tickcast_xadd_batch_size_count", (("venue", "sim"),)] == 2
    routes = [k for k in got if k[0] == "tickcast_feed_connected"]
    assert len(routes) == 1, "one series per route: the retired service has none"

    def lease(name: str, symbol: str) -> float:
        labels = (("role", "ingester"), ("symbol", symbol), ("venue", "sim"))
        return got[name, labels]

    assert lease("tickcast_lease_held", "BTC/USDT:USDT") == 0.0
    assert lease("tickcast_lease_held", "ETH/USDT:USDT") == 1.0
    assert lease("tickcast_lease_acquisitions_total", "BTC/USDT:USDT") == 1.0
    assert lease("tickcast_lease_acquisitions_total", "ETH/USDT:USDT") == 1.0


# -- real processes -----------------------------------------------------------------------------

SYMBOLS = [f"{base}/USDT:USDT" for base in ("BTC", "ETH", "SOL", "XRP", "ADA", "DOGE")]
TTL_S = 2.0


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """The test's processes, killed at its end if still running."""
    with reaping() as started:
        yield started


def test_worker_pool_splits_hands_over_and_takes_over_without_a_duplicate_signal(
    redis_url: str,
    redis_client: redis.Redis,
    tmp_path: Path,
    procs: list[subprocess.Popen[bytes]],
) -> None:
    env = pool_environment(tmp_path, redis_url, TTL_S)
    symbols = ["--exchange", "sim", "--symbols", ",".join(SYMBOLS)]
    logs = {name: tmp_path / f"{name}.log" for name in ("ingest", "a", "b", "c")}

    def worker(name: str) -> subprocess.Popen[bytes]:
        proc = start(["worker", *symbols, "--pool"], env, logs[name])
        procs.append(proc)
        return proc

    ingest = start(["ingest", *symbols, "--speed", "3", "--stats-every", "0"], env, logs["ingest"])
    procs.append(ingest)
    with Owners(redis_url, SYMBOLS) as owners:
        a, b, c = split_join_and_kill(owners, worker, TTL_S)
        status = subprocess.run(
            [*CLI, "status", "--json", *symbols[2:]], env=env, capture_output=True, timeout=30
        )
        pool = json.loads(status.stdout)["pools"]["worker"]
        assert sorted(m["symbols"] for m in pool) == [3, 3]
        assert {m["member"].split(":")[1] for m in pool} == {str(a.pid), str(c.pid)}
        stop_and_compare_signals(redis_client, SYMBOLS, ingest, {"a": a, "c": c}, logs)
    assert owners.held_only_by(a, b, c), owners.seen
    assert_pool_members_left(redis_client)


def scrape(port: int) -> Counter[str]:
    """``/metrics`` of a process, summed by sample name (and ``held <symbol>`` per lease)."""
    from prometheus_client.parser import text_string_to_metric_families

    code, body = http(f"http://127.0.0.1:{port}/metrics")
    assert code == 200, body
    out: Counter[str] = Counter()
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            out[s.name] += s.value
            if s.name == "tickcast_lease_held" and s.value:
                out[f"held {s.labels['symbol']}"] += 1
    return out


def test_ingest_pool_splits_the_feeds_and_a_killed_members_streams_keep_flowing(
    redis_url: str,
    redis_client: redis.Redis,
    tmp_path: Path,
    procs: list[subprocess.Popen[bytes]],
) -> None:
    symbols = SYMBOLS[:4]
    env = environment(
        tmp_path, TICKCAST__REDIS__URL=redis_url, TICKCAST__WORKER__LEASE_TTL_S=str(TTL_S)
    )
    ports = [free_port(), free_port()]
    args = ["ingest", "--pool", "--exchange", "sim", "--symbols", ",".join(symbols)]
    args += ["--speed", "3", "--stats-every", "0"]
    a, b = (
        start([*args, "--metrics-port", str(port)], env, tmp_path / f"ingest-{port}.log")
        for port in ports
    )
    procs += [a, b]
    lease_keys = [keys.symbol_key("tickcast", "sim", s, "ingester") for s in symbols]

    def holders() -> Counter[int]:
        """How many feeds each process holds, by pid (0: nobody)."""
        raw: list[bytes | None] = redis_client.mget(lease_keys)  # type: ignore[assignment]
        return Counter(int(v.split(b":")[1]) if v else 0 for v in raw)

    def split() -> list[int]:
        held = holders()
        return sorted(held.values()) if 0 not in held else []

    def lengths() -> list[int]:
        return [int(redis_client.xlen(keys.ticks_key("tickcast", "sim", s))) for s in symbols]  # type: ignore[arg-type]

    wait_until("two feeds of two symbols", lambda: split() == [2, 2])
    wait_until("ticks on every stream", lambda: min(lengths()) > 0)
    before = scrape(ports[0])
    assert before["tickcast_lease_held"] == holders()[a.pid] == 2
    b.kill()
    b.wait()
    wait_until("a's four feeds", lambda: holders() == Counter({a.pid: 4}), timeout=5 * TTL_S)
    taken_over = lengths()
    wait_until(
        "ticks flowing on every stream",
        lambda: all(n > m for n, m in zip(lengths(), taken_over, strict=True)),
    )
    after = scrape(ports[0])
    assert after["tickcast_lease_held"] == 4 and all(after[f"held {s}"] == 1 for s in symbols)
    ready = f"http://127.0.0.1:{ports[0]}/readyz"
    wait_until("its readiness (ticks flow through it)", lambda: http(ready) == (200, "ready\n"))
    assert after["tickcast_ticks_written_total"] > before["tickcast_ticks_written_total"]
    assert after["tickcast_lease_acquisitions_total"] > before["tickcast_lease_acquisitions_total"]
    a.send_signal(signal.SIGTERM)
    assert a.wait(timeout=20) == 0
    assert redis_client.mget(lease_keys) == [None] * 4, "released at the stop"
