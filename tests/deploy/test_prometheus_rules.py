"""The Prometheus rules of deploy/prometheus: promtool's checks, its unit tests, their contract.

``promtool`` (Debian's ``prometheus`` package, installed by ``make system-deps``) checks the
scrape configuration and the rule files and runs the rule unit tests of
``deploy/prometheus/tests``. Beside it, these tests hold the rules to their contract: every
alert has a case where it fires and one where it stays quiet, a severity, a summary, a
description and a runbook section; every recorded series that alerts or dashboards read is
recorded; and every metric the rules and the Grafana dashboards query is one tickcast exports
(read from :class:`tickcast.service.ops.metrics.Metrics` itself) or one Prometheus makes.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tickcast.service.bus.lease import SymbolLeases
from tickcast.service.ops.metrics import (
    BATCH_BUCKETS,
    Histogram,
    IngestSnapshot,
    Metrics,
    RedisReading,
)
from tickcast.service.ticks import Instrument

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy" / "prometheus"
CONFIG = PROMETHEUS / "prometheus.yml"
ALERTS = PROMETHEUS / "alerts.yml"
RECORDING = PROMETHEUS / "recording.yml"
RUNBOOK = PROMETHEUS / "RUNBOOK.md"
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
DASHBOARDS = sorted((REPO / "deploy" / "grafana" / "dashboards").glob("*.json"))

SEVERITIES = {"page", "ticket"}
RUNBOOK_PARTS = ("**What it means.**", "**Check first.**", "**What to do.**")
PROMETHEUS_OWN = {"up": "Prometheus's own series: whether the target's last scrape worked"}
"""Series the rules may query that no tickcast process exports, and why."""


# -- reading the rule files ------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    """Parse one YAML file."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rules(path: Path) -> list[dict[str, Any]]:
    """Every rule of a rule file, in order."""
    return [rule for group in load_yaml(path)["groups"] for rule in group["rules"]]


def alert_rules() -> list[dict[str, Any]]:
    """The alerting rules of alerts.yml."""
    return [rule for rule in rules(ALERTS) if "alert" in rule]


def dashboard_queries() -> Iterator[str]:
    """Every PromQL expression of the dashboards: panel targets and variable queries."""
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                yield target["expr"]
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                query = variable["query"]
                yield query["query"] if isinstance(query, dict) else query


# -- the names a PromQL expression reads -----------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_OFFSET = re.compile(r"\boffset\s+\w+")
_NUMBER = re.compile(r"(?<![\w:.])\d+(?:\.\d*)?(?:[eE][+-]?\d+)?")
_LABEL_VALUES = re.compile(r"\blabel_values\s*\(\s*([A-Za-z_:][\w:]*)?[^()]*\)")
_IDENTIFIER = re.compile(r"[A-Za-z_:][\w:]*(?!\w)(?!\s*\()")
_KEYWORDS = {"and", "or", "unless", "bool", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The series names ``expr`` selects (functions, labels and keywords left out).

    Grafana's ``label_values(metric, label)`` reads ``metric``.
    """
    text = _STRING.sub('""', expr)
    text = _LABEL_VALUES.sub(lambda m: f" {m.group(1) or ''} ", text)
    for pattern in (_MATCHERS, _RANGE, _GROUPING, _OFFSET, _NUMBER):
        text = pattern.sub(" ", text)
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in _KEYWORDS}


def queried_names() -> dict[str, set[str]]:
    """Series name -> the files whose expressions read it."""
    sources: list[tuple[str, str]] = [(ALERTS.name, rule["expr"]) for rule in alert_rules()]
    sources += [(RECORDING.name, rule["expr"]) for rule in rules(RECORDING)]
    sources += [("dashboards", expr) for expr in dashboard_queries()]
    out: dict[str, set[str]] = {}
    for origin, expr in sources:
        for name in metric_names(expr):
            out.setdefault(name, set()).add(origin)
    return out


@functools.cache
def exported_names() -> frozenset[str]:
    """The sample names a ``tickcast run`` process exports, every source registered."""
    instrument = Instrument("binanceusdm", "BTC/USDT:USDT")
    metrics = Metrics([instrument], role="run")
    sizes = Histogram(BATCH_BUCKETS)
    sizes.observe(3)
    one = {(instrument.symbol, "trade"): 1}
    metrics.add_ingest_source(
        lambda: IngestSnapshot(
            venue=instrument.venue,
            received=one,
            written=one,
            dropped=one,
            rejected={"invalid": 1},
            skipped={"ack": 1},
            batch_sizes=sizes,
            routes={"public": (True, 0.5)},
        )
    )
    # The lease metrics read only the leases' own bookkeeping: the client never connects.
    client = redis.asyncio.Redis(host="127.0.0.1", port=1)
    metrics.add_leases("owner", SymbolLeases(client, {str(instrument): "owner-key"}))
    metrics.redis_source = lambda: RedisReading(
        up=True, used_memory_bytes=1e6, maxmemory_bytes=0.0, lag_s={instrument: 0.0}
    )
    body, _ = metrics.exposition()
    return frozenset(
        sample.name
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    )


# -- promtool --------------------------------------------------------------------------------


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool; fails the test with a hint when it is not installed."""
    exe = shutil.which("promtool")
    assert exe is not None, "promtool not found: run `make system-deps` (Debian: prometheus)"
    return subprocess.run(
        [exe, *args], capture_output=True, text=True, timeout=60, check=False, cwd=REPO
    )


def test_promtool_accepts_the_rule_files() -> None:
    result = promtool("check", "rules", str(RECORDING), str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_accepts_the_scrape_config_and_the_rules_it_loads() -> None:
    result = promtool("check", "config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    loaded = {CONFIG.parent / name for name in load_yaml(CONFIG)["rule_files"]}
    assert loaded == {RECORDING, ALERTS}


def test_the_scrape_config_scrapes_ingest_and_worker_in_tickcast_jobs() -> None:
    jobs = {job["job_name"]: job for job in load_yaml(CONFIG)["scrape_configs"]}
    targets = {
        name: [t for c in job["static_configs"] for t in c["targets"]]
        for name, job in jobs.items()
        if name.startswith("tickcast")  # what TickcastTargetDown and ...Restarting select
    }
    assert targets == {"tickcast-ingest": ["ingest:9464"], "tickcast-worker": ["worker:9464"]}


def test_the_rule_unit_tests_pass() -> None:
    assert RULE_TESTS, "no promtool unit test in deploy/prometheus/tests"
    result = promtool("test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS), result.stdout


def test_the_unit_tests_load_the_shipped_rule_files() -> None:
    tested: set[Path] = set()
    for path in RULE_TESTS:
        files = {(path.parent / name).resolve() for name in load_yaml(path)["rule_files"]}
        assert files <= {RECORDING, ALERTS}, f"{path.name} tests other rule files: {files}"
        tested |= files
    assert tested == {RECORDING, ALERTS}


# -- the rules' contract ---------------------------------------------------------------------


def test_every_alert_has_a_case_where_it_fires_and_one_where_it_stays_quiet() -> None:
    kinds: dict[str, set[str]] = {rule["alert"]: set() for rule in alert_rules()}
    for path in RULE_TESTS:
        for test in load_yaml(path)["tests"]:
            for case in test.get("alert_rule_test", []):
                assert case["alertname"] in kinds, f"{path.name}: unknown {case['alertname']}"
                kinds[case["alertname"]].add("fires" if case.get("exp_alerts") else "quiet")
    missing = {name: {"fires", "quiet"} - seen for name, seen in kinds.items() if len(seen) < 2}
    assert not missing, f"alerts without a firing or a quiet test case: {missing}"


def test_every_recording_rule_has_a_unit_test() -> None:
    tested = {
        name
        for path in RULE_TESTS
        for test in load_yaml(path)["tests"]
        for case in test.get("promql_expr_test", [])
        for name in metric_names(case["expr"])
    }
    read_by_others = {n for rule in rules(RECORDING) for n in metric_names(rule["expr"])}
    untested = {r["record"] for r in rules(RECORDING)} - tested - read_by_others
    assert not untested, f"recording rules no test evaluates: {sorted(untested)}"


def runbook_sections() -> dict[str, str]:
    """Anchor (GitHub's: the heading in lower case) -> the text of its section."""
    parts = re.split(r"^## (.+)$", RUNBOOK.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {
        title.strip().lower(): body for title, body in zip(parts[1::2], parts[2::2], strict=True)
    }


def test_every_alert_has_a_severity_a_summary_a_description_and_a_runbook_section() -> None:
    sections = runbook_sections()
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names)), "alert names repeat"
    for rule in alert_rules():
        name = rule["alert"]
        assert re.fullmatch(r"Tickcast[A-Z][A-Za-z]+", name), name
        assert rule.get("labels", {}).get("severity") in SEVERITIES, name
        annotations = rule.get("annotations", {})
        assert annotations.get("summary") and annotations.get("description"), name
        anchor = name.lower()
        assert annotations.get("runbook") == f"deploy/prometheus/RUNBOOK.md#{anchor}", name
        assert anchor in sections, f"{RUNBOOK.name} has no section {name}"
        for part in RUNBOOK_PARTS:
            assert part in sections[anchor], f"{RUNBOOK.name}#{anchor} lacks {part}"
    assert set(sections) == {name.lower() for name in names}, "runbook sections without alert"


def test_every_runbook_link_points_to_a_section() -> None:
    anchors = set(runbook_sections())
    links = set(re.findall(r"\]\(#([\w-]+)\)", RUNBOOK.read_text(encoding="utf-8")))
    assert links, "the runbook links none of its sections"
    assert links <= anchors, f"links to missing sections: {links - anchors}"


def test_recorded_names_follow_the_convention_and_are_recorded_once() -> None:
    records = [rule["record"] for rule in rules(RECORDING)]
    assert len(records) == len(set(records))
    for name in records:
        level, metric, operation = name.split(":")
        assert level and operation and metric.startswith("tickcast_"), name


def test_every_recorded_series_read_is_recorded_and_every_recorded_one_is_read() -> None:
    recorded = {rule["record"] for rule in rules(RECORDING)}
    read = {name: origins for name, origins in queried_names().items() if ":" in name}
    assert set(read) - recorded == set(), f"read but never recorded: {set(read) - recorded}"
    assert recorded - set(read) == set(), f"recorded but never read: {recorded - set(read)}"


def test_the_dashboards_read_the_recording_rules_for_rates_and_quantiles() -> None:
    heavy = re.compile(r"\b(?:rate|increase|histogram_quantile)\s*\(")
    raw = [expr for expr in dashboard_queries() if heavy.search(expr)]
    assert raw == [], f"dashboard queries to move into recording rules: {raw}"


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (venue) (rate(a_total{venue=~"$v"}[5m])) > 0 and on (job) up', {"a_total", "up"}),
        ("histogram_quantile(0.99, lvl:b_bucket:rate5m) > 1e-3", {"lvl:b_bucket:rate5m"}),
        ('label_values(c_total{venue=~"$venue"}, symbol)', {"c_total"}),
        ('(d > 5) and on (job, instance) (e{role="owner"} == 1) offset 5m', {"d", "e"}),
    ],
)
def test_metric_names_reads_series_not_functions_labels_or_keywords(
    expr: str, names: set[str]
) -> None:
    assert metric_names(expr) == names


def test_the_name_extraction_reads_what_the_expressions_read() -> None:
    names = queried_names()
    assert "tickcast_ic" in names and "venue:tickcast_tick_to_signal_acked_seconds:p99_5m" in names
    assert not {"venue", "symbol", "le", "job", "instance", "role"} & set(names)


def test_every_metric_queried_is_exported_by_tickcast_or_prometheus() -> None:
    exported = exported_names()
    assert "tickcast_ticks_written_total" in exported  # the exposition was read
    raw = {name: origins for name, origins in queried_names().items() if ":" not in name}
    unknown = {
        name: sorted(origins)
        for name, origins in raw.items()
        if name not in exported and name not in PROMETHEUS_OWN
    }
    assert not unknown, f"queried, not exported by tickcast.service.ops.metrics: {unknown}"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_each_alert_reads_only_exported_or_recorded_series(rule: dict[str, Any]) -> None:
    recorded = {r["record"] for r in rules(RECORDING)}
    names = metric_names(rule["expr"])
    assert names, f"{rule['alert']} reads no series"
    assert names <= exported_names() | recorded | set(PROMETHEUS_OWN), names
