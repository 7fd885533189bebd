"""Helpers shared by the deployment tests (imported by name: ``conftest.py`` puts this folder
on ``sys.path``; not ``support``, which is tests/service/support.py).

* Compose (deploy/compose): its files read the way Compose reads them (interpolation,
  ``.env`` files, durations, bind mounts), the Compose specification's schema, healthchecks,
  and tickcast services started with their Compose command and environment — for
  ``test_compose.py`` and ``test_compose_cluster.py``.
* Kubernetes (deploy/k8s): the manifests, ``kubernetes-validate``, label selectors, the
  Secret template, the settings a pod loads and a pod run as a process — for ``test_k8s.py``
  and ``test_k8s_cluster.py``.
* A Redis Cluster run here: joined, replicas in sync, the leases a tickcast process holds —
  for both cluster variants.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from tickcast.service.bus.embedded import free_port
from tickcast.service.cli import build_parser
from tickcast.service.commands import ingest as ingest_command
from tickcast.service.commands.run import overrides
from tickcast.service.ops.config import Settings, settings_from_args

from support import environment, http, start

REPO = Path(__file__).resolve().parents[2]
ACL_TEMPLATE = REPO / "deploy" / "redis" / "users.acl.in"
RENDER_ACL = REPO / "deploy" / "redis" / "render-acl"
ACL_PASSWORDS = ("ADMIN", "INGEST", "WORKER", "SUBSCRIBER", "MONITOR")
"""The users of users.acl.in whose passwords render-acl takes (``TICKCAST_<NAME>_PASSWORD``)."""
LOOPBACK = "127.0.0.1"


def rendered_acl(passwords: dict[str, str]) -> str:
    """users.acl.in rendered by render-acl with ``passwords`` (``ADMIN`` -> its password...)."""
    env = {**os.environ, **{f"TICKCAST_{k}_PASSWORD": v for k, v in passwords.items()}}
    rendered = subprocess.run(
        [str(RENDER_ACL)],
        input=ACL_TEMPLATE.read_text(),
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=True,
    )
    return rendered.stdout


# -- Compose's own rules, read the way Compose reads them -------------------------------------

COMPOSE_DIR = REPO / "deploy" / "compose"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"
MAKE_ENV = COMPOSE_DIR / "make-env"
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
TICKCAST_SERVICES = {"ingest": "tickcast-ingest", "worker": "tickcast-worker"}
"""Each tickcast service and the ACL user it must connect as."""
METRICS_PORT = 9464

INTERPOLATION = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?+])([^}]*))?\}|\$(\w+)")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable interpolation of every string in ``value`` (a YAML tree).

    ``$$`` is a literal ``$``; ``${VAR}`` and ``$VAR``; ``${VAR:-default}`` (unset or empty)
    and ``${VAR-default}`` (unset); ``${VAR:?error}`` and ``${VAR?error}`` raise ``KeyError``;
    ``${VAR:+other}`` and ``${VAR+other}``.
    """
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        operator, argument = match.group(2) or "", match.group(3) or ""
        present = name in env and (env[name] != "" or not operator.startswith(":"))
        if operator.endswith("-"):
            return env[name] if present else argument
        if operator.endswith("?"):
            if not present:
                raise KeyError(f"{name}: {argument}")
            return env[name]
        if operator.endswith("+"):
            return argument if present else ""
        return env.get(name, "")

    return INTERPOLATION.sub(substitute, value)


def read_env(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of a ``.env`` file (comments and blank lines skipped)."""
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def read_compose(path: Path, env_file: Path | None = None) -> dict[str, Any]:
    """A Compose file as written (YAML anchors and merge keys resolved), or, given an
    ``env_file``, as Compose sees it with that ``.env`` (interpolated)."""
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    if env_file is None:
        return data
    interpolated: dict[str, Any] = interpolate(data, read_env(env_file))
    return interpolated


def make_env(path: Path) -> subprocess.CompletedProcess[str]:
    """Run deploy/compose/make-env: a ``.env`` at ``path`` with new random passwords."""
    return subprocess.run(
        [str(MAKE_ENV), str(path)], capture_output=True, text=True, timeout=30, check=False
    )


def seconds(duration: str) -> float:
    """A Compose duration (``1m30s``, ``30s``, ``500ms``) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def check_jsonschema() -> Path:
    """The ``check-jsonschema`` command of this environment (the ``dev`` extra)."""
    exe = Path(sys.executable).parent / "check-jsonschema"
    assert exe.exists(), f"{exe} missing: pip install -e '.[dev]' (make install)"
    return exe


def validate_compose(path: Path) -> subprocess.CompletedProcess[str]:
    """Validate ``path`` against the Compose specification's schema, offline."""
    return subprocess.run(
        [str(check_jsonschema()), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    """(host path, container path) of a service's bind mounts (relative host paths)."""
    out = []
    for volume in service.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if source.startswith("."):
            out.append(((COMPOSE_DIR / source).resolve(), target))
    return out


def in_container(service: dict[str, Any], host: dict[str, Path]) -> Callable[[str], str]:
    """Map a service's container paths to this machine's: its bind mounts, and its named
    volumes to the directories ``host`` gives for them."""
    mounts = {target: str(source) for source, target in bind_mounts(service)}
    for volume in service.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if source in host:
            mounts[target] = str(host[source])

    def translate(text: str) -> str:
        for target in sorted(mounts, key=len, reverse=True):
            text = text.replace(target, mounts[target])
        return text

    return translate


def healthcheck(service: dict[str, Any], port: int) -> list[str]:
    """A service's healthcheck command (``CMD-SHELL`` through ``sh -c``), for a test port."""
    kind, *argv = service["healthcheck"]["test"]
    if kind == "CMD-SHELL":
        return ["sh", "-c", argv[0].replace("redis-cli", f"redis-cli -p {port}")]
    assert kind == "CMD"
    argv = [arg.replace(f":{METRICS_PORT}/", f":{port}/") for arg in argv]
    return [sys.executable if arg.endswith("/python") else arg for arg in argv]


def passes(argv: list[str]) -> bool:
    """Whether a healthcheck command exits 0."""
    return subprocess.run(argv, capture_output=True, timeout=30, check=False).returncode == 0


@dataclass
class Running:
    """A tickcast service's container, here a process: its Compose command and environment."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path


def run_service(
    name: str, service: dict[str, Any], redis_url: str, state: Path, log: Path
) -> Running:
    """Start the Compose service ``name`` (``service``) with its command and environment, the
    Redis URL ``redis_url``, the metrics on a free loopback port, its state in ``state``."""
    port = free_port()
    env = environment(state, **service["environment"])
    env |= {
        "TICKCAST__REDIS__URL": redis_url,
        "TICKCAST__METRICS__HOST": LOOPBACK,  # a container's 0.0.0.0, here loopback
        "TICKCAST__METRICS__PORT": str(port),
    }
    return Running(name, start(service["command"], env, log), port, log)


# -- the Kubernetes manifests ------------------------------------------------------------------

K8S = REPO / "deploy" / "k8s"
SECRET_TEMPLATE = K8S / "redis-secret.example.yaml"
VALIDATOR = Path(sys.executable).with_name("kubernetes-validate")
KUBERNETES_VERSIONS = ("1.32.0", "1.37.0")
"""Validated against: the oldest and the newest schemas kubernetes-validate 1.37 ships."""
CRD_KINDS = frozenset({"ServiceMonitor", "PrometheusRule"})
"""The Prometheus operator's kinds: no schema in the validator, checked structurally here."""
ROLES = ("ingest", "worker")

Resource = tuple[Path, dict[str, Any]]


def manifest_files() -> list[Path]:
    """Every manifest under deploy/k8s (the kustomization files are not manifests), but the
    cluster variant's (deploy/k8s/cluster: tests/deploy/test_k8s_cluster.py)."""
    return sorted(
        p
        for p in K8S.rglob("*.yaml")
        if p.name != "kustomization.yaml" and K8S / "cluster" not in p.parents
    )


def documents(path: Path) -> list[dict[str, Any]]:
    """The YAML documents of ``path`` (empty ones left out)."""
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def resources() -> list[Resource]:
    """Every resource of every manifest file, with its file."""
    return [(path, doc) for path in manifest_files() for doc in documents(path)]


def find(kind: str, name: str, docs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The one resource of ``kind`` named ``name`` in ``docs`` (by default, in the manifest
    files of :func:`manifest_files`)."""
    if docs is None:
        docs = [doc for _, doc in resources()]
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def kustomization(directory: Path) -> dict[str, Any]:
    """``directory``'s kustomization.yaml."""
    data: dict[str, Any] = yaml.safe_load((directory / "kustomization.yaml").read_text())
    return data


def container(workload: dict[str, Any]) -> dict[str, Any]:
    """The one container of a Deployment's or StatefulSet's pod."""
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, workload["metadata"]["name"]
    result: dict[str, Any] = containers[0]
    return result


def secret_value(name: str, key: str) -> str:
    """A key of the Secret template (the real Secret has the same keys)."""
    secret = documents(SECRET_TEMPLATE)[0]
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == name
    value: str = secret["stringData"][key]
    return value


def pod_environment(deployment: dict[str, Any]) -> dict[str, str]:
    """The container's environment, Secret references read from the Secret template."""
    env: dict[str, str] = {}
    for item in container(deployment)["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secret_value(ref["name"], ref["key"])
    return env


def mount_path(workload: dict[str, Any], volume: str) -> str:
    """Where the container mounts ``volume``."""
    paths = [m["mountPath"] for m in container(workload)["volumeMounts"] if m["name"] == volume]
    assert len(paths) == 1, f"{workload['metadata']['name']}: volume {volume}"
    return str(paths[0])


def config_toml() -> str:
    """The settings file of the ConfigMap."""
    data: str = find("ConfigMap", "tickcast-config")["data"]["tickcast.toml"]
    return data


def holds(expression: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether one ``matchExpressions`` item (In, NotIn, Exists, DoesNotExist) holds."""
    key, operator = expression["key"], expression["operator"]
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    inside = labels.get(key) in expression["values"]
    return inside if operator == "In" else not inside


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (``matchLabels`` and ``matchExpressions``) selects ``labels``."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    return all(holds(e, labels) for e in selector.get("matchExpressions", []))


def validate_manifests(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    """Run kubernetes-validate in strict mode on ``paths`` (relative to the checkout when
    inside it) for every version of :data:`KUBERNETES_VERSIONS`."""
    if not VALIDATOR.exists():
        pytest.fail(f"no {VALIDATOR}: run `make install` (dev extra)", pytrace=False)
    versions = [arg for v in KUBERNETES_VERSIONS for arg in ("-k", v)]
    names = [str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p) for p in paths]
    return subprocess.run(
        [str(VALIDATOR), "--strict", *versions, *names],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


def passed(output: str) -> set[tuple[str, str, str]]:
    """(file, kind/name, version) of every resource the validator checked and passed."""
    pattern = r"^INFO (\S+) passed for resource (\S+) against version (\S+)$"
    return set(re.findall(pattern, output, re.MULTILINE))


def expected_passes(items: list[Resource]) -> set[tuple[str, str, str]]:
    """What :func:`passed` must hold for ``items``: every resource of a built-in kind, once
    per version (a kind the validator has no schema for is only warned about, exit code 0)."""
    out = set()
    for path, doc in items:
        if doc["kind"] in CRD_KINDS:
            continue
        name = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)
        for version in KUBERNETES_VERSIONS:
            minor = ".".join(version.split(".")[:2])
            out.add((name, f"{doc['kind'].lower()}/{doc['metadata']['name']}", minor))
    return out


# -- the pods, their settings and their processes ---------------------------------------------


def pod_settings(
    deployment: dict[str, Any], config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """The settings a pod's process loads: the Deployment's arguments parsed by tickcast's
    own parser, its environment, the ConfigMap's file (at ``config_file``)."""
    role = deployment["metadata"]["name"].removeprefix("tickcast-")
    for name, value in pod_environment(deployment).items():
        monkeypatch.setenv(name, value)
    args = build_parser().parse_args(container(deployment)["args"])
    assert args.command == role and args.command_log_format == "json"
    assert args.config == Path(mount_path(deployment, "config")) / "tickcast.toml"
    args.config = config_file
    if role == "ingest":
        return ingest_command.load_settings(args)
    return settings_from_args(args, overrides(args))


def role_url(role: str, port: int, password: str) -> str:
    """The Secret template's URL for ``role``, its host and port this test's server's."""
    url = urllib.parse.urlsplit(secret_value("tickcast-redis", f"{role}-url"))
    netloc = f"{url.username}:{password}@{LOOPBACK}:{port}"
    return urllib.parse.urlunsplit(url._replace(netloc=netloc))


def run_pod(
    deployment: dict[str, Any], redis_url: str, config_file: Path, state: Path, log: Path
) -> tuple[subprocess.Popen[bytes], int]:
    """Run a Deployment's container command as a process: its arguments and environment, the
    Redis URL ``redis_url``, and — the test's own — the simulated venue instead of the live
    one (no network), metrics on a free loopback port, the ConfigMap's file at
    ``config_file``, the state directory ``state``. Returns the process and its metrics port."""
    port = free_port()
    env = environment(
        state,
        **{
            **pod_environment(deployment),
            "TICKCAST__REDIS__URL": redis_url,
            "TICKCAST__EXCHANGE__NAME": "sim",
            "TICKCAST__METRICS__HOST": LOOPBACK,
            "TICKCAST__METRICS__PORT": str(port),
            "TICKCAST__STATE_DIR": str(state),
        },
    )
    args = [str(config_file) if a == "/etc/tickcast/tickcast.toml" else a
            for a in container(deployment)["args"]]  # fmt: skip
    return start(args, env, log), port


def answering(proc: subprocess.Popen[bytes], log: Path, url: str) -> Callable[[], bool]:
    """A check for :func:`wait_until`: ``url`` answers 200 (the test fails at once, with the
    process's log, when the process has exited)."""

    def check() -> bool:
        assert proc.poll() is None, log.read_text()
        return http(url)[0] == 200

    return check


# -- a Redis Cluster run here, and tickcast's pools on it -------------------------------------


def admin_client(port: int, password: str) -> redis.Redis:
    """A client of the node on ``port`` as the ACL's admin user."""
    return redis.Redis(port=port, username="admin", password=password)


def replication(ports: Sequence[int], password: str) -> list[dict[str, Any]]:
    """``INFO replication`` of every node (``password``: the admin user's)."""
    out = []
    for port in ports:
        with admin_client(port, password) as admin:
            out.append(admin.info("replication"))
    return out


def in_sync(ports: Sequence[int], password: str) -> bool:
    """Every replica's link to its master up (it logged in to its master as admin)."""
    roles = replication(ports, password)
    return all(r.get("master_link_status") == "up" for r in roles if r["role"] == "slave")


def joined(ports: Sequence[int], password: str) -> bool:
    """Every node sees the cluster ok and knows all of them (gossip takes a moment after the
    cluster is made: one node may still count one less)."""
    for port in ports:
        with admin_client(port, password) as admin:
            info = admin.execute_command("CLUSTER", "INFO").decode()
        if "cluster_state:ok" not in info or f"cluster_known_nodes:{len(ports)}" not in info:
            return False
    return True


def leases_held(port: int, kind: str) -> int:
    """How many symbols the process serving metrics on ``port`` holds the ``kind`` lease of
    (its tickcast_lease_held gauges); -1 while its /metrics does not answer."""
    status, body = http(f"http://{LOOPBACK}:{port}/metrics")
    if status != 200:
        return -1
    return sum(
        round(float(line.rsplit(" ", 1)[1]))
        for line in body.splitlines()
        if line.startswith("tickcast_lease_held{") and f'role="{kind}"' in line
    )
