"""The Kubernetes manifests of ``deploy/k8s``, checked with the real tools offline.

* ``kubernetes-validate`` (it ships the Kubernetes JSON schemas) validates every manifest of a
  built-in kind in strict mode (unknown fields refused) against the oldest and the newest
  Kubernetes versions it ships; the negative control shows that a misspelt field, a wrong type
  and a misspelt kind are caught.
* The Prometheus operator's kinds, which it has no schema for, are checked structurally: the
  ServiceMonitor selects exactly the metrics Services by their labels and names a port they
  have; the PrometheusRule carries the groups of ``deploy/prometheus`` (rendered by
  ``deploy/k8s/render-prometheusrule``, which must have been re-run after every change).
* The project's rules: every Deployment replaces its pod with ``Recreate`` (the leases), has
  its probes on ``/healthz`` and ``/readyz``, resource requests, the hardened security context
  (non-root, read-only root filesystem, no privilege escalation, every capability dropped,
  RuntimeDefault seccomp: the "restricted" Pod Security Standard its namespace enforces), a
  pinned image of this version, and reads Secret keys that exist.
* The settings the pods get — the ConfigMap's TOML file, the Deployments' environment and
  arguments — load with tickcast's own CLI and settings loader; the reference Redis's
  configuration runs in a real redis-server with the rendered ACL, and the ingester and the
  worker, started with the Deployments' arguments and environment, serve their probes and
  publish signals through it.

``kubectl kustomize`` is not needed: the kustomizations' resource lists are checked to cover
every manifest file instead.
"""

from __future__ import annotations

import json
import re
import secrets
import signal
import subprocess
import sys
import tomllib
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from tickcast.service import __version__

from deploy_support import (
    ACL_PASSWORDS,
    ACL_TEMPLATE,
    CRD_KINDS,
    K8S,
    REPO,
    ROLES,
    SECRET_TEMPLATE,
    Resource,
    answering,
    config_toml,
    container,
    documents,
    expected_passes,
    find,
    kustomization,
    manifest_files,
    matches,
    mount_path,
    passed,
    pod_environment,
    pod_settings,
    rendered_acl,
    resources,
    role_url,
    run_pod,
    secret_value,
    validate_manifests,
)
from support import CLI, environment, http, wait_until

BASE = K8S / "base"
REDIS_COMPONENT = K8S / "redis"
WITH_REDIS = K8S / "with-redis"
RENDER_RULES = K8S / "render-prometheusrule"
PROMETHEUS = REPO / "deploy" / "prometheus"
OPERATOR_API = "monitoring.coreos.com/v1"


# -- reading the manifests (the readers test_k8s_cluster.py uses too: deploy_support.py) ------


def of_kind(kind: str) -> list[dict[str, Any]]:
    """The resources of ``kind``."""
    return [doc for _, doc in resources() if doc["kind"] == kind]


# -- kubernetes-validate ---------------------------------------------------------------------


def test_every_manifest_of_a_builtin_kind_passes_the_strict_kubernetes_schemas() -> None:
    result = validate_manifests(manifest_files())
    assert result.returncode == 0, result.stdout + result.stderr
    assert passed(result.stdout) == expected_passes(resources())
    warned = set(re.findall(r"^WARN \S+ Couldn't find schema for kind (\S+) ", result.stdout, re.M))
    assert warned == CRD_KINDS


def test_the_validation_catches_a_misspelt_field_a_wrong_type_and_a_misspelt_kind(
    tmp_path: Path,
) -> None:
    deployment, service = documents(BASE / "ingest.yaml")
    container(deployment)["imagePullPolcy"] = "Always"
    service["spec"]["ports"][0]["port"] = "9464"
    typo = documents(BASE / "worker.yaml")[0]
    typo["kind"] = "Deploymnet"
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump_all([deployment, service, typo]))
    result = validate_manifests([broken])
    assert result.returncode == 1
    assert "'imagePullPolcy' was unexpected" in result.stdout
    assert "'9464' is not of type 'integer'" in result.stdout
    # the misspelt kind only draws a warning from the validator: the comparison with the
    # expected passes is what catches it
    items: list[Resource] = [(broken, deployment), (broken, service), (broken, typo)]
    assert passed(result.stdout) != expected_passes(items)


# -- kustomize -------------------------------------------------------------------------------


def test_the_kustomizations_cover_every_manifest_but_the_secret_template() -> None:
    base = kustomization(BASE)
    assert base["kind"] == "Kustomization" and base["namespace"] == "tickcast"
    base_files = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(base["resources"]) == sorted(base_files)
    component = kustomization(REDIS_COMPONENT)
    assert component["kind"] == "Component"
    redis_files = {p.name for p in REDIS_COMPONENT.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(component["resources"]) == sorted(redis_files)
    assert kustomization(K8S)["resources"] == ["base"]
    overlay = kustomization(WITH_REDIS)
    assert overlay["resources"] == ["../base"] and overlay["components"] == ["../redis"]
    assert overlay["namespace"] == "tickcast"
    covered = {BASE / f for f in base_files} | {REDIS_COMPONENT / f for f in redis_files}
    assert set(manifest_files()) - covered == {SECRET_TEMPLATE}
    for path, doc in resources():
        assert doc["metadata"].get("namespace", "tickcast") == "tickcast", path
    names = [(doc["kind"], doc["metadata"]["name"]) for _, doc in resources()]
    assert len(names) == len(set(names))


# -- the project's rules ---------------------------------------------------------------------


def pyproject_version() -> str:
    """The project's version, the image tag the Deployments run."""
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    version: str = data["project"]["version"]
    return version


@pytest.mark.parametrize("role", ROLES)
def test_each_deployment_is_recreated_probed_bounded_and_hardened(role: str) -> None:
    deployment = find("Deployment", f"tickcast-{role}")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    main = container(deployment)
    image, _, tag = main["image"].rpartition(":")
    assert image == "tickcast" and tag == pyproject_version() == __version__
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    probes = {kind: main[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe")}
    probes["readinessProbe"] = main["readinessProbe"]["httpGet"]
    assert {k: p["path"] for k, p in probes.items()} == {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    assert {p["port"] for p in probes.values()} == {"metrics"} and "metrics" in ports
    env = pod_environment(deployment)
    assert env["TICKCAST__METRICS__HOST"] == "0.0.0.0"
    assert int(env["TICKCAST__METRICS__PORT"]) == ports["metrics"]
    requests = main["resources"]["requests"]
    assert {"cpu", "memory"} <= requests.keys() and "memory" in main["resources"]["limits"]
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert main["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for scratch in ("/tmp", "/var/lib/tickcast"):
        name = next(m["name"] for m in main["volumeMounts"] if m["mountPath"] == scratch)
        assert "emptyDir" in volumes[name], scratch
    config = next(m for m in main["volumeMounts"] if m["name"] == "config")
    assert config["readOnly"] is True
    assert volumes["config"]["configMap"]["name"] == "tickcast-config"
    assert tag != "latest"


@pytest.mark.parametrize("role", ROLES)
def test_each_deployment_reads_its_own_acl_user_from_secret_keys_that_exist(role: str) -> None:
    deployment = find("Deployment", f"tickcast-{role}")
    refs = [
        e["valueFrom"]["secretKeyRef"] for e in container(deployment)["env"] if "valueFrom" in e
    ]
    assert refs == [{"name": "tickcast-redis", "key": f"{role}-url"}]
    url = urllib.parse.urlsplit(secret_value("tickcast-redis", f"{role}-url"))
    assert url.scheme == "redis" and url.username == f"tickcast-{role}"
    assert url.hostname == find("Service", "tickcast-redis")["metadata"]["name"]
    assert url.port == find("Service", "tickcast-redis")["spec"]["ports"][0]["port"]
    assert re.search(rf"^user {url.username} on ", ACL_TEMPLATE.read_text(), re.MULTILINE)


def pod_specs() -> list[tuple[str, dict[str, Any]]]:
    """(name, pod spec) of every workload."""
    workloads = of_kind("Deployment") + of_kind("StatefulSet")
    return [(w["metadata"]["name"], w["spec"]["template"]["spec"]) for w in workloads]


def test_every_pod_meets_the_restricted_pod_security_standard_its_namespace_enforces() -> None:
    labels = find("Namespace", "tickcast")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    allowed_volumes = {"configMap", "secret", "emptyDir", "persistentVolumeClaim", "projected"}
    specs = pod_specs()
    assert {name for name, _ in specs} == {"tickcast-ingest", "tickcast-worker", "tickcast-redis"}
    for name, pod in specs:
        assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), name
        for volume in pod.get("volumes", []):
            assert set(volume) - {"name"} <= allowed_volumes, (name, volume)
        pod_context = pod["securityContext"]
        assert pod_context["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod_context["runAsUser"] != 0, name
        for item in pod["containers"] + pod.get("initContainers", []):
            context = item["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context.get("privileged", False) is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert set(context["capabilities"].get("add", [])) <= {"NET_BIND_SERVICE"}, name
            assert context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is True, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert all("hostPort" not in p for p in item.get("ports", [])), name
            assert ":" in item["image"] and not item["image"].endswith(":latest"), name


def test_each_service_selects_its_pods_on_a_named_port_and_scrapes_unready_ones() -> None:
    services = {s["metadata"]["name"]: s for s in of_kind("Service")}
    workloads = {w["metadata"]["name"]: w for w in of_kind("Deployment") + of_kind("StatefulSet")}
    assert services.keys() == workloads.keys()
    for name, service in services.items():
        workload = workloads[name]
        assert matches(
            {"matchLabels": service["spec"]["selector"]},
            workload["spec"]["template"]["metadata"]["labels"],
        )
        names = {p["name"] for p in container(workload)["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= names, name
    for role in ROLES:
        assert services[f"tickcast-{role}"]["spec"]["publishNotReadyAddresses"] is True


def alert_job_patterns() -> list[str]:
    """The ``job=~"..."`` patterns of the alert and recording rules."""
    text = (PROMETHEUS / "alerts.yml").read_text() + (PROMETHEUS / "recording.yml").read_text()
    return re.findall(r'job\s*=~\s*"([^"]+)"', text)


def test_the_servicemonitor_scrapes_exactly_the_metrics_services_as_the_rules_expect() -> None:
    monitor = find("ServiceMonitor", "tickcast")
    assert monitor["apiVersion"] == OPERATOR_API
    selected = [
        s
        for s in of_kind("Service")
        if matches(monitor["spec"]["selector"], s["metadata"]["labels"])
    ]
    assert sorted(s["metadata"]["name"] for s in selected) == ["tickcast-ingest", "tickcast-worker"]
    endpoints = monitor["spec"]["endpoints"]
    assert [e["port"] for e in endpoints] == ["metrics"] and endpoints[0]["path"] == "/metrics"
    for service in selected:
        assert "metrics" in {p["name"] for p in service["spec"]["ports"]}
        # the job label is the Service's name: the rules' job selectors must take it
        for pattern in alert_job_patterns():
            assert re.fullmatch(pattern, service["metadata"]["name"]), pattern


def rule_groups(path: Path) -> list[Any]:
    """The ``groups`` of a Prometheus rule file."""
    groups: list[Any] = yaml.safe_load(path.read_text())["groups"]
    return groups


DURATION = re.compile(r"0|(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?")
"""A Prometheus duration, as the PrometheusRule resource's schema takes it."""
GROUP_KEYS = {"name", "interval", "rules", "limit", "labels", "query_offset"}
RULE_KEYS = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}


def rule_problems(groups: list[Any]) -> list[str]:
    """What the Prometheus operator's PrometheusRule schema would refuse in ``groups``:
    unknown keys, a group name twice, a rule both or neither alert and record, no
    expression, a malformed duration, a label or annotation value that is not a string."""
    problems = []
    names = [group.get("name") for group in groups]
    if len(set(names)) != len(names) or not all(names):
        problems.append(f"group names missing or repeated: {names}")
    for group in groups:
        problems += [f"{group.get('name')}: key {k}" for k in set(group) - GROUP_KEYS]
        for rule in group["rules"]:
            what = f"{group.get('name')}/{rule.get('alert') or rule.get('record')}"
            problems += [f"{what}: key {k}" for k in set(rule) - RULE_KEYS]
            if ("alert" in rule) == ("record" in rule) or not rule.get("expr"):
                problems.append(f"{what}: alert or record, and expr")
            for key in ("for", "keep_firing_for"):
                if key in rule and not DURATION.fullmatch(str(rule[key])):
                    problems.append(f"{what}: {key} {rule[key]!r}")
            for key in ("labels", "annotations"):
                problems += [
                    f"{what}: {key}.{k} is not a string"
                    for k, v in rule.get(key, {}).items()
                    if not isinstance(v, str)
                ]
    return problems


def test_the_prometheusrule_carries_the_groups_of_the_prometheus_rule_files() -> None:
    rule = find("PrometheusRule", "tickcast")
    assert rule["apiVersion"] == OPERATOR_API
    groups = rule["spec"]["groups"]
    assert groups == rule_groups(PROMETHEUS / "recording.yml") + rule_groups(
        PROMETHEUS / "alerts.yml"
    )
    assert rule_problems(groups) == []
    check = subprocess.run(
        [sys.executable, str(RENDER_RULES), "--check"], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stderr


def test_the_rule_checks_catch_what_the_operator_would_refuse() -> None:
    groups = rule_groups(PROMETHEUS / "alerts.yml")
    alert = next(r for g in groups for r in g["rules"] if "alert" in r)
    broken = [
        {"name": "a", "rules": [{**alert, "for": "10 minutes"}]},
        {"name": "a", "rules": [{**alert, "record": "x:y:z"}]},
        {"name": "b", "rules": [{**alert, "labels": {"severity": 1}}], "evaluation": "1m"},
    ]
    assert len(rule_problems(broken)) == 5


def test_the_rule_renderer_notices_a_stale_copy(tmp_path: Path) -> None:
    copy = tmp_path / "k8s"
    (copy / "base").mkdir(parents=True)
    script = copy / RENDER_RULES.name
    script.write_text(RENDER_RULES.read_text())
    (tmp_path / "prometheus").mkdir()
    for name in ("recording.yml", "alerts.yml"):
        (tmp_path / "prometheus" / name).write_text((PROMETHEUS / name).read_text())
    stale = (BASE / "prometheusrule.yaml").read_text().replace("for: ", "for: 1", 1)
    (copy / "base" / "prometheusrule.yaml").write_text(stale)
    check = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 1 and "out of date" in check.stderr


# -- the settings the pods get ---------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_each_pod_loads_its_settings_from_the_configmap_environment_and_arguments(
    role: str, tmp_path: Path, clean_environment: pytest.MonkeyPatch
) -> None:
    config_file = tmp_path / "tickcast.toml"
    config_file.write_text(config_toml())
    deployment = find("Deployment", f"tickcast-{role}")
    settings = pod_settings(deployment, config_file, clean_environment)
    # metrics on the container port, also for the ingester (whose default is 9465)
    assert (settings.metrics.host, settings.metrics.port) == ("0.0.0.0", 9464)
    assert settings.state_dir == Path(mount_path(deployment, "state"))
    assert settings.exchange.name == ["binanceusdm"]
    assert settings.exchange.symbols == ["BTC/USDT:USDT", "ETH/USDT:USDT"]
    assert settings.redis.url is not None
    assert urllib.parse.urlsplit(settings.redis.url.get_secret_value()).username == (
        f"tickcast-{role}"
    )


def test_tickcast_config_show_loads_the_configmap_file(tmp_path: Path) -> None:
    config_file = tmp_path / "tickcast.toml"
    config_file.write_text(config_toml())
    env = environment(tmp_path / "state", **pod_environment(find("Deployment", "tickcast-worker")))
    shown = subprocess.run(
        [*CLI, "config", "show", "--config", str(config_file), "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["exchange"]["name"] == ["binanceusdm"]
    assert data["metrics"] == {"enabled": True, "host": "0.0.0.0", "port": 9464}
    assert "CHANGE-ME" not in shown.stdout  # the password, redacted
    broken = tmp_path / "broken.toml"
    broken.write_text(config_toml().replace("[worker]", "[worker]\nhorizon = 5"))
    refused = subprocess.run(
        [*CLI, "config", "show", "--config", str(broken)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert refused.returncode == 2 and "worker.horizon" in refused.stderr


# -- the reference Redis, and the pods running against it ------------------------------------


def redis_conf() -> dict[str, str]:
    """The reference Redis's configuration directives (first word -> the rest)."""
    text: str = find("ConfigMap", "tickcast-redis-config")["data"]["redis.conf"]
    lines = [line.strip() for line in text.splitlines()]
    pairs = [line.split(None, 1) for line in lines if line and not line.startswith("#")]
    return {pair[0]: pair[1] if len(pair) > 1 else "" for pair in pairs}


LOCAL_DIRECTIVES = frozenset({"bind", "port", "dir", "aclfile"})
"""Where the server listens and keeps its files: the test's own (loopback, a free port, its
temporary directory); every other directive is the ConfigMap's."""


@pytest.fixture
def reference_redis(
    tmp_path: Path, start_system_redis: Callable[..., Any]
) -> tuple[Any, dict[str, str]]:
    """A redis-server on the reference Redis's configuration and the ACL rendered from
    deploy/redis/users.acl.in; returns it and the users' passwords."""
    passwords = {name: secrets.token_hex(16) for name in ACL_PASSWORDS}
    acl = tmp_path / "users.acl"
    acl.write_text(rendered_acl(passwords))
    conf = tmp_path / "redis.conf"
    conf.write_text(
        "".join(f"{k} {v}\n" for k, v in redis_conf().items() if k not in LOCAL_DIRECTIVES)
    )
    server = start_system_redis(tmp_path / "data", ["--include", str(conf), "--aclfile", str(acl)])
    return server, passwords


def test_the_reference_redis_configuration_runs_with_the_acl_users(
    reference_redis: tuple[Any, dict[str, str]],
) -> None:
    server, passwords = reference_redis
    statefulset = find("StatefulSet", "tickcast-redis")
    conf = redis_conf()
    assert conf["aclfile"] == mount_path(statefulset, "acl") + "/users.acl"
    assert conf["dir"] == mount_path(statefulset, "data")
    assert int(conf["port"]) == container(statefulset)["ports"][0]["containerPort"]
    admin = redis.Redis(port=server.port, username="admin", password=passwords["ADMIN"])
    with admin:
        assert admin.config_get("appendonly") == {"appendonly": "yes"}
        assert admin.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert int(admin.config_get("maxmemory")["maxmemory"]) > 0
    ticks, signals = (
        "tickcast:{binanceusdm:BTCUSDT}:ticks",
        "tickcast:{binanceusdm:BTCUSDT}:signals",
    )
    with redis.Redis(port=server.port) as anonymous, pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    ingest = redis.Redis.from_url(role_url("ingest", server.port, passwords["INGEST"]))
    worker = redis.Redis.from_url(role_url("worker", server.port, passwords["WORKER"]))
    with ingest, worker:
        assert ingest.xadd(ticks, {"t": "1"}, id="1-1") == b"1-1"
        with pytest.raises(redis.exceptions.NoPermissionError):
            ingest.xadd(signals, {"s": "{}"})
        assert worker.xrange(ticks) == [(b"1-1", {b"t": b"1"})]
        with pytest.raises(redis.exceptions.NoPermissionError):
            worker.xadd(ticks, {"t": "2"})


def start_pod(
    role: str, tmp_path: Path, redis_url: str, config_file: Path
) -> tuple[subprocess.Popen[bytes], int, Path]:
    """Run ``role``'s Deployment's container as :func:`run_pod` does, pointed at the test's
    server, the state directory in ``tmp_path``."""
    log = tmp_path / f"{role}.log"
    deployment = find("Deployment", f"tickcast-{role}")
    proc, port = run_pod(deployment, redis_url, config_file, tmp_path / f"state-{role}", log)
    return proc, port, log


def metric_total(port: int, name: str) -> float:
    """The sum of a metric's samples on ``port``'s /metrics."""
    status, body = http(f"http://127.0.0.1:{port}/metrics")
    if status != 200:
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.startswith(name + "{")
    )


def test_the_pods_run_with_their_arguments_environment_and_the_reference_redis(
    tmp_path: Path, reference_redis: tuple[Any, dict[str, str]]
) -> None:
    server, passwords = reference_redis
    config_file = tmp_path / "tickcast.toml"
    config_file.write_text(config_toml())
    pods = {
        role: start_pod(
            role, tmp_path, role_url(role, server.port, passwords[role.upper()]), config_file
        )
        for role in ROLES
    }
    try:
        for role, (proc, port, log) in pods.items():
            for path in ("/healthz", "/readyz"):
                url = f"http://127.0.0.1:{port}{path}"
                wait_until(f"{role} {path}", answering(proc, log, url), timeout=60)
        worker_port = pods["worker"][1]
        wait_until(
            "signals",
            lambda: metric_total(worker_port, "tickcast_signals_published_total") > 0,
            timeout=60,
        )
    finally:
        for proc, _, _ in pods.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        grace = find("Deployment", "tickcast-worker")["spec"]["template"]["spec"][
            "terminationGracePeriodSeconds"
        ]
        codes = {role: proc.wait(timeout=grace) for role, (proc, _, _) in pods.items()}
    assert codes == {"ingest": 0, "worker": 0}, {
        r: p[2].read_text()[-2000:] for r, p in pods.items()
    }
