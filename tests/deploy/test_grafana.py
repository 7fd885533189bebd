"""The Grafana dashboard of deploy/grafana and its provisioning, checked structurally.

Grafana itself is not at hand offline, so these tests read the dashboard JSON the way Grafana
would need it: every panel placed on the 24-column grid without overlapping another, with a
unique id, a Prometheus data source and queries; every template variable a query or a data
source names defined; the per-venue-and-symbol panels the issue lists present; and the
provisioning files pointing at the Compose layout's Prometheus and at the folder Compose
mounts the dashboards in. Which series the queries read is checked against tickcast's
metrics and the recording rules by tests/deploy/test_prometheus_rules.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "tickcast.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "tickcast.yml"
COMPOSE = REPO / "deploy" / "compose" / "compose.yaml"

GRID_COLUMNS = 24
OLDEST_SCHEMA = 39
"""schemaVersion of Grafana 11.0: older dashboards are migrated on load."""
BUILTIN_VARIABLES = {"__interval", "__rate_interval", "__range", "__interval_ms", "__range_s"}
PROMETHEUS_SOURCE = {"type": "prometheus", "uid": "${datasource}"}
REQUIRED = {
    "ticks/s": "venue_symbol_kind:tickcast_ticks_received:rate1m",
    "feed lag p50": "venue_symbol:tickcast_feed_lag_seconds:p50_5m",
    "feed lag p99": "venue_symbol:tickcast_feed_lag_seconds:p99_5m",
    "reconnects": "venue:tickcast_feed_reconnects:increase5m",
    "latency p50": "venue_symbol:tickcast_tick_to_signal_acked_seconds:p50_5m",
    "latency p99": "venue_symbol:tickcast_tick_to_signal_acked_seconds:p99_5m",
    "signals/s": "venue_symbol:tickcast_signals_published:rate1m",
    "hit rate": "venue_symbol:tickcast_hit_rate:owner",
    "IC": "venue_symbol:tickcast_ic:owner",
    "skill": "venue_symbol:tickcast_skill_vs_zero:owner",
    "model version": "venue_symbol:tickcast_model_version:owner",
    "checkpoint age": "venue_symbol:tickcast_checkpoint_age_seconds:owner",
    "Redis memory": "tickcast_redis_used_memory_bytes",
}
"""What the dashboard shows (the issue's list) -> the series its panel reads."""
PER_SYMBOL = {k for k in REQUIRED if k not in {"reconnects", "Redis memory"}}
"""Of those, the panels filtered by both the venue and the symbol variables."""

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def load() -> dict[str, Any]:
    """The dashboard."""
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def panels() -> list[dict[str, Any]]:
    """Every panel, rows and the panels of collapsed rows included."""
    out: list[dict[str, Any]] = []
    for panel in load()["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def graphs() -> list[dict[str, Any]]:
    """The panels that query (all but rows)."""
    return [panel for panel in panels() if panel["type"] != "row"]


def variables_used(value: Any) -> Iterator[str]:
    """Names of the template variables referenced anywhere in ``value`` (a JSON tree)."""
    if isinstance(value, str):
        for match in _VARIABLE.finditer(value):
            yield next(name for name in match.groups() if name)
    elif isinstance(value, dict):
        for item in value.values():
            yield from variables_used(item)
    elif isinstance(value, list):
        for item in value:
            yield from variables_used(item)


def test_the_dashboard_is_a_current_grafana_dashboard() -> None:
    dashboard = load()
    assert dashboard["uid"] == "tickcast" and dashboard["title"]
    assert dashboard["schemaVersion"] >= OLDEST_SCHEMA
    assert "id" not in dashboard or dashboard["id"] is None  # provisioned: Grafana assigns it
    assert dashboard["time"]["from"].startswith("now-")


def test_panel_ids_are_unique() -> None:
    ids = [panel["id"] for panel in panels()]
    assert len(ids) == len(set(ids)), ids


def test_every_panel_lies_on_the_grid_without_overlapping_another() -> None:
    boxes = []
    for panel in panels():
        grid = panel["gridPos"]
        x, y, w, h = (grid[k] for k in ("x", "y", "w", "h"))
        assert all(isinstance(v, int) and v >= 0 for v in (x, y, w, h)), panel["title"]
        assert w > 0 and h > 0 and x + w <= GRID_COLUMNS, panel["title"]
        boxes.append((panel["title"], x, y, w, h))
    for i, (a, ax, ay, aw, ah) in enumerate(boxes):
        for b, bx, by, bw, bh in boxes[i + 1 :]:
            apart = ax + aw <= bx or bx + bw <= ax or ay + ah <= by or by + bh <= ay
            assert apart, f"panels {a!r} and {b!r} overlap"


@pytest.mark.parametrize("panel", graphs(), ids=lambda panel: panel["title"])
def test_every_panel_has_a_prometheus_source_and_queries(panel: dict[str, Any]) -> None:
    assert panel["datasource"] == PROMETHEUS_SOURCE
    assert panel.get("title") and panel.get("description")
    targets = panel.get("targets", [])
    assert targets, "no query"
    ref_ids = [target["refId"] for target in targets]
    assert len(ref_ids) == len(set(ref_ids))
    for target in targets:
        assert target["expr"].strip(), target
        assert target.get("datasource", PROMETHEUS_SOURCE) == PROMETHEUS_SOURCE


def test_the_template_variables_come_from_label_values_and_every_one_used_exists() -> None:
    dashboard = load()
    defined = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert defined["datasource"]["type"] == "datasource"
    assert defined["datasource"]["query"] == "prometheus"
    for name, label in (("venue", "venue"), ("symbol", "symbol")):
        query = defined[name]["query"]
        text = query["query"] if isinstance(query, dict) else query
        assert re.fullmatch(rf"label_values\(\w+(\{{.*\}})?, {label}\)", text), text
        assert defined[name]["datasource"] == PROMETHEUS_SOURCE
    assert "$venue" in defined["symbol"]["query"]["query"], "symbols of the chosen venues only"
    used = set(variables_used(dashboard["panels"])) | set(variables_used(dashboard["templating"]))
    assert {"datasource", "venue", "symbol"} <= used
    assert used - set(defined) - BUILTIN_VARIABLES == set()


@pytest.mark.parametrize(("what", "series"), sorted(REQUIRED.items()))
def test_the_dashboard_shows(what: str, series: str) -> None:
    showing = [
        (panel, target["expr"])
        for panel in graphs()
        for target in panel["targets"]
        if re.search(rf"(?<![\w:]){re.escape(series)}(?![\w:])", target["expr"])
    ]
    assert showing, f"no panel shows {what} ({series})"
    if what in PER_SYMBOL:
        for _, expr in showing:
            assert 'venue=~"$venue"' in expr and 'symbol=~"$symbol"' in expr, expr


def test_the_provisioned_datasource_is_the_compose_prometheus_and_the_default() -> None:
    sources = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    assert len(sources) == 1
    source = sources[0]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    services = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]
    assert source["url"] == "http://prometheus:9090" and "prometheus" in services


def compose_mounts(service: str) -> dict[Path, str]:
    """Host path (resolved) -> container path of a Compose service's bind mounts."""
    spec = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"][service]
    out: dict[Path, str] = {}
    for volume in spec.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            out[(COMPOSE.parent / source).resolve()] = target
    return out


def test_compose_mounts_the_provisioning_and_the_dashboards_where_the_provider_reads() -> None:
    mounts = compose_mounts("grafana")
    assert mounts[(GRAFANA / "provisioning").resolve()] == "/etc/grafana/provisioning"
    providers = yaml.safe_load(PROVIDERS.read_text(encoding="utf-8"))["providers"]
    assert [p["type"] for p in providers] == ["file"]
    assert mounts[DASHBOARD.parent.resolve()] == providers[0]["options"]["path"]
