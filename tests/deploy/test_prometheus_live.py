"""A real Prometheus scraping a running tickcast.

Debian's ``prometheus`` server (``make system-deps``) runs on loopback with a 1 s scrape and
evaluation interval, scraping a running ``tickcast run --exchange sim``, whose simulated
exchange is told to go silent with SIGUSR1 and to send again with SIGUSR2. Its rule files are
the project's recording rules and its alert rules, the feed-silence alert with a ``for:`` of
seconds instead of minutes (its expression as shipped). Through Prometheus' HTTP API the tests
check that

* every series the alerts, the recording rules and the Grafana dashboards query exists, and
  every series the recording rules record;
* the tick->signal latency p99 query answers a finite, positive number;
* the feed-silence alert fires when the simulator goes silent and resolves once it sends
  again;
* every rule evaluated on the live series without an error.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tickcast.service.bus.embedded import free_port
from tickcast.service.bus.lifetime import parent_death_hook

from support import CLI, environment, http

REPO = Path(__file__).resolve().parents[2]
RULES_DIR = REPO / "deploy" / "prometheus"
ALERTS = RULES_DIR / "alerts.yml"
RECORDING = RULES_DIR / "recording.yml"
DASHBOARDS = REPO / "deploy" / "grafana" / "dashboards"
PROMETHEUS_HINT = "run `make system-deps` (Debian: apt-get install prometheus)"

VENUE = "sim"
SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT")
SILENCE_ALERT = re.compile(r"silen", re.IGNORECASE)
"""How the feed-silence alert is known among the alert rules: by its name."""
SHORT_FOR = "2s"
"""The feed-silence alert's ``for:`` in the test's copy of the alert rules."""
LATENCY_P99 = (
    "histogram_quantile(0.99, sum by (le) "
    "(rate(tickcast_tick_to_signal_acked_seconds_bucket[30s])))"
)
ABSENT_HERE: dict[str, str] = {
    "ALERTS": "Prometheus' own series of the alerts pending or firing: none on a healthy service",
    "ALERTS_FOR_STATE": "Prometheus' own series of the alerts pending or firing",
}
"""Queried names that cannot have a series in this scenario, and why."""

T = TypeVar("T")


# -- the metric names a PromQL expression reads ----------------------------------------------

_NAME_MATCHER = re.compile(r"""__name__\s*=\s*["']([A-Za-z_:][A-Za-z0-9_:]*)["']""")
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_MODIFIER = re.compile(r"\boffset\s+-?\w+|@\s*(?:start\(\)|end\(\)|[\d.]+)", re.IGNORECASE)
_NUMBER = re.compile(r"\b\d+(?:\.\d*)?(?:[eE][+-]?\d+)?\b|\B\.\d+(?:[eE][+-]?\d+)?\b")
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
     "unless", "offset", "inf", "nan"}
)  # fmt: skip
_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*[A-Za-z_]\w*\s*\)\s*$", re.DOTALL)
_LABEL_VALUES_ANY = re.compile(r"^\s*label_values\(\s*[A-Za-z_]\w*\s*\)\s*$")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (Grafana's ``$variables`` allowed).

    Parameters
    ----------
    expr : str
        A PromQL expression, or a Grafana variable query (``label_values(metric, label)``).

    Returns
    -------
    set of str
        Every name of a vector or range selector, ``{__name__="..."}`` included; functions,
        aggregations, keywords, labels and numbers left out.
    """
    if _LABEL_VALUES_ANY.match(expr):
        return set()
    values = _LABEL_VALUES.match(expr)
    if values is not None:
        expr = values.group(1)
    names = set(_NAME_MATCHER.findall(expr))
    for pattern in (_GRAFANA_VARIABLE, _STRING, _MATCHERS, _RANGE, _GROUPING, _MODIFIER, _NUMBER):
        expr = pattern.sub(" ", expr)
    for match in _IDENTIFIER.finditer(expr):
        name = match.group()
        calls = expr[match.end() :].lstrip().startswith("(")
        if not calls and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def rules_of(path: Path) -> list[dict[str, Any]]:
    """Every rule of a Prometheus rule file."""
    doc = yaml.safe_load(path.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_queries(node: object) -> Iterator[str]:
    """Every PromQL expression of a Grafana dashboard (panels, rows' panels, annotations) and
    its variables' queries."""
    if isinstance(node, dict):
        if isinstance(node.get("expr"), str):
            yield node["expr"]
        if node.get("type") == "query" and "query" in node:
            query = node["query"]
            yield query["query"] if isinstance(query, dict) else str(query)
        for value in node.values():
            yield from dashboard_queries(value)
    elif isinstance(node, list):
        for value in node:
            yield from dashboard_queries(value)


def queried_names() -> dict[str, set[str]]:
    """Metric name -> the files that query it: the alert rules, the recording rules' inputs
    and the dashboards."""
    boards = sorted(DASHBOARDS.glob("*.json"))
    assert boards, f"no dashboard in {DASHBOARDS}"
    sources: list[tuple[str, Iterable[str]]] = [
        (ALERTS.name, [r["expr"] for r in rules_of(ALERTS)]),
        (RECORDING.name, [r["expr"] for r in rules_of(RECORDING)]),
    ]
    for board in boards:
        sources.append((board.name, list(dashboard_queries(json.loads(board.read_text())))))
    out: dict[str, set[str]] = {}
    for where, exprs in sources:
        for expr in exprs:
            for name in metric_names(str(expr)):
                out.setdefault(name, set()).add(where)
    return out


def test_metric_names_come_from_selectors_only() -> None:
    expr = (
        'sum by (venue) (rate(tickcast_ticks_received_total{kind="trade", venue=~"$venue"}'
        "[$__rate_interval])) == bool 0 unless on (venue) max_over_time("
        'up{job="tickcast"}[10m:1m]) and {__name__="tickcast_feed_connected"} < 0.5'
    )
    assert metric_names(expr) == {
        "tickcast_ticks_received_total",
        "up",
        "tickcast_feed_connected",
    }
    expr = (
        'histogram_quantile(0.99, sum by (le, venue) (rate(a_bucket{venue=~"$venue"}[5m])))'
        " > on (venue) group_left (x) b:c:rate1m offset 5m * 1e3 or vector(0)"
    )
    assert metric_names(expr) == {"a_bucket", "b:c:rate1m"}
    assert metric_names('label_values(tickcast_build_info{role="run"}, venue)') == {
        "tickcast_build_info"
    }
    assert metric_names("label_values(venue)") == set()
    assert metric_names('count_values("v", tickcast_build_info)') == {"tickcast_build_info"}


# -- processes --------------------------------------------------------------------------------


def spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``argv`` with its output to ``log``; it gets SIGTERM if this process dies first."""
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            preexec_fn=parent_death_hook(os.getpid()),
        )


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """SIGTERM, wait, SIGKILL after ``timeout`` s; the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    return proc.returncode


def wait_for_line(
    proc: subprocess.Popen[bytes], log: Path, pattern: str, *, after: int = 0, timeout: float = 60.0
) -> re.Match[str]:
    """Wait until ``log`` has a line matching ``pattern`` past its first ``after`` characters
    (the process must stay up meanwhile); the match."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        found = re.search(pattern, log.read_text(errors="replace")[after:], re.MULTILINE)
        if found is not None:
            return found
        time.sleep(0.1)
    stop(proc)
    raise AssertionError(f"no line matching {pattern!r} in {log.name}\n{tail(log)}")


def tail(log: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of ``log``, headed by its name."""
    text = log.read_text(errors="replace").splitlines() if log.exists() else ["(no log)"]
    return "\n".join([f"---- {log.name}", *text[-lines:]])


@dataclass
class Lab:
    """The two processes, tickcast (with its simulated exchange) and Prometheus, and their logs."""

    root: Path
    tickcast: subprocess.Popen[bytes]
    prometheus: subprocess.Popen[bytes]
    prometheus_port: int
    silence_alert: str

    def logs(self) -> str:
        """The tail of every log, for failure messages."""
        return "\n".join(tail(log) for log in sorted(self.root.glob("*.log")))

    def api(self, path: str, *params: tuple[str, str]) -> Any:
        """GET Prometheus' ``/api/v1/<path>``; its ``data`` (the test fails on an error)."""
        query = urllib.parse.urlencode(params)
        code, body = http(f"http://127.0.0.1:{self.prometheus_port}/api/v1/{path}?{query}")
        assert code == 200, f"/api/v1/{path} answered {code}: {body[:500]}"
        answer = json.loads(body)
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's vector."""
        data = self.api("query", ("query", expr))
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result

    def wait(self, what: str, check: Callable[[], T | None], timeout: float = 60.0) -> T:
        """Poll ``check`` every 0.5 s until it returns something other than ``None``; fail
        naming ``what`` (with the logs) after ``timeout`` s or when a process exited."""
        deadline = time.monotonic() + timeout
        while True:
            for name, proc in (("tickcast", self.tickcast), ("prometheus", self.prometheus)):
                assert proc.poll() is None, f"{name} exited ({proc.returncode})\n{self.logs()}"
            got = check()
            if got is not None:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{self.logs()}")
            time.sleep(0.5)

    def signal_sim(self, sig: signal.Signals, says: str) -> None:
        """Send ``sig`` to tickcast and wait until it logs ``says`` (its simulated exchange
        went silent or sends again)."""
        log = self.root / "tickcast.log"
        before = len(log.read_text(errors="replace"))
        self.tickcast.send_signal(sig)
        wait_for_line(self.tickcast, log, re.escape(says), after=before, timeout=10.0)

    def state(self) -> str | None:
        """The silence alert's state on the venue: pending, firing, or None when inactive."""
        alerts = self.api("alerts")["alerts"]
        for alert in alerts:
            labels = alert["labels"]
            if labels.get("alertname") == self.silence_alert and labels.get("venue") == VENUE:
                return str(alert["state"])
        return None

    def quiet(self) -> bool:
        """Whether the silence alert is inactive while ticks of the venue arrive."""
        rate = f'rate(tickcast_ticks_received_total{{venue="{VENUE}"}}[5s]) > 0'
        return self.state() is None and bool(self.query(rate))


def prometheus_binary() -> str:
    """Debian's prometheus server; the test fails (it never skips) when it is missing."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail(f"no prometheus server on PATH: {PROMETHEUS_HINT}", pytrace=False)
    return binary


def silence_alert_rules(out: Path) -> str:
    """Write ``out``: the alert rules as shipped, but the feed-silence alert's ``for:`` set to
    :data:`SHORT_FOR`; return that alert's name."""
    doc = yaml.safe_load(ALERTS.read_text())
    found = [
        r for g in doc["groups"] for r in g["rules"] if SILENCE_ALERT.search(r.get("alert", ""))
    ]
    names = [r["alert"] for r in found]
    assert len(found) == 1, f"expected one feed-silence alert in {ALERTS}, found {names}"
    found[0]["for"] = SHORT_FOR
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(names[0])


def start_tickcast(root: Path) -> tuple[subprocess.Popen[bytes], int]:
    """``tickcast run --exchange sim`` with its own embedded Redis and metrics on a free port:
    the process and that port."""
    argv = [*CLI, "run", "--exchange", VENUE, "--symbols", ",".join(SYMBOLS)]
    argv += ["--metrics-port", "0", "--no-view", "--log-format", "json"]
    log = root / "tickcast.log"
    proc = spawn(argv, log, environment(root / "state"))
    return proc, int(wait_for_line(proc, log, r"metrics on http://127\.0\.0\.1:(\d+)/").group(1))


def start_prometheus(root: Path, metrics_port: int) -> tuple[subprocess.Popen[bytes], int]:
    """The prometheus server on a free loopback port, scraping tickcast every second and
    evaluating the recording rules and the test's alert rules every second."""
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RECORDING), str(root / "alerts.yml")],
        "scrape_configs": [
            {
                "job_name": "tickcast-run",
                "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}],
            }
        ],
    }
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = root / "prometheus.log"
    for _ in range(5):  # another process may take the free port first
        port = free_port()
        argv = [
            prometheus_binary(),
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        proc = spawn(argv, log)
        deadline = time.monotonic() + 30.0
        while proc.poll() is None and time.monotonic() < deadline:
            if http(f"http://127.0.0.1:{port}/-/ready")[0] == 200:
                return proc, port
            time.sleep(0.1)
        stop(proc)
        if "address already in use" not in log.read_text():
            break
    raise AssertionError(f"prometheus did not start\n{tail(log)}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """tickcast and Prometheus, running; both stopped on the way out."""
    root = tmp_path_factory.mktemp("prometheus-live")
    prometheus_binary()
    alert = silence_alert_rules(root / "alerts.yml")
    started: list[subprocess.Popen[bytes]] = []
    try:
        tickcast, metrics_port = start_tickcast(root)
        started.append(tickcast)
        prometheus, prometheus_port = start_prometheus(root, metrics_port)
        started.append(prometheus)
        yield Lab(root, tickcast, prometheus, prometheus_port, alert)
    finally:
        for proc in reversed(started):
            stop(proc)


# -- the tests --------------------------------------------------------------------------------


def test_every_series_the_alerts_rules_and_dashboards_query_exists(lab: Lab) -> None:
    queried = queried_names()
    recorded = {r["record"] for r in rules_of(RECORDING) if "record" in r}
    assert recorded, f"no recording rule in {RECORDING}"
    assert "tickcast_ticks_received_total" in queried, sorted(queried)
    expected = (set(queried) | recorded) - set(ABSENT_HERE)

    def missing() -> set[str]:
        matches = [("match[]", f'{{__name__="{name}"}}') for name in sorted(expected)]
        found = {s["__name__"] for s in lab.api("series", *matches)}
        return expected - found

    def none_missing() -> bool | None:
        return True if not missing() else None

    try:
        lab.wait("every queried series", none_missing, timeout=45.0)
    except AssertionError:
        still = {name: sorted(queried.get(name, {RECORDING.name + " (recorded)"}))
                 for name in sorted(missing())}  # fmt: skip
        raise AssertionError(f"series that never appeared (name: queried in): {still}") from None


def test_the_latency_p99_query_answers_a_finite_positive_number(lab: Lab) -> None:
    def p99() -> float | None:
        result = lab.query(LATENCY_P99)
        value = float(result[0]["value"][1]) if result else math.nan
        return value if math.isfinite(value) else None

    value = lab.wait(f"a finite answer to {LATENCY_P99}", p99)
    assert 0.0 < value <= 1.0, value


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_feed_silence_alert_fires_while_the_venue_is_silent_and_resolves(lab: Lab) -> None:
    """The alert's window is a minute of no ticks: this test waits that long."""
    lab.wait(f"{lab.silence_alert} quiet while ticks flow", lambda: lab.quiet() or None)
    lab.signal_sim(signal.SIGUSR1, "simulated exchanges silent")
    lab.wait(f"{lab.silence_alert} to fire", lambda: lab.state() == "firing" or None, 150.0)
    lab.signal_sim(signal.SIGUSR2, "simulated exchanges sending again")
    lab.wait(f"{lab.silence_alert} to resolve", lambda: lab.quiet() or None)


def test_every_rule_evaluated_without_an_error(lab: Lab) -> None:
    groups = lab.api("rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == len(rules_of(ALERTS)) + len(rules_of(RECORDING)), "rules not loaded"
    broken = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert not broken, broken
