"""The Compose deployment of deploy/compose, validated offline (``make compose-check``).

No Docker daemon or registry is needed. The file is validated against the Compose
specification's JSON schema (the copy vendored in the ``check-jsonschema`` package), before
and after interpolation with a ``.env`` made by ``deploy/compose/make-env``; then held to the
project's rules: every published port on 127.0.0.1, every mounted file present, Prometheus
loading the rule files promtool tests, one ACL user per tickcast service, no password in a
committed file. Finally the services run as Compose would run them, each on this machine
instead of in a container: the ``redis-acl`` command renders the ACL with the ``.env``
passwords, Debian's ``redis-server`` starts with the ``redis`` service's arguments and that ACL,
and ``tickcast ingest`` and ``tickcast worker`` start with their services' commands and
environments (Redis host and metrics port moved to loopback test ports) until their own
healthchecks pass, then stop cleanly on SIGTERM.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import yaml
from redis.backoff import NoBackoff
from redis.retry import Retry

from tickcast.service.bus.embedded import free_port

from deploy_support import (
    ACL_TEMPLATE,
    COMPOSE_DIR,
    ENV_EXAMPLE,
    INTERPOLATION,
    LOOPBACK,
    METRICS_PORT,
    PROMETHEUS_DIR,
    REPO,
    TICKCAST_SERVICES,
    Running,
    bind_mounts,
    healthcheck,
    in_container,
    interpolate,
    make_env,
    passes,
    read_compose,
    read_env,
    run_service,
    seconds,
    validate_compose,
)
from support import http

COMPOSE = COMPOSE_DIR / "compose.yaml"


# -- a .env made by make-env, and the file interpolated with it ------------------------------


@pytest.fixture(scope="module")
def env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("compose") / ".env"
    result = make_env(path)
    assert result.returncode == 0, result.stderr
    return path


@pytest.fixture(scope="module")
def compose(env_file: Path) -> dict[str, Any]:
    """compose.yaml as Compose sees it with that .env."""
    return read_compose(COMPOSE, env_file)


def test_the_compose_file_follows_the_compose_specification() -> None:
    result = validate_compose(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_misspelt_key_fails_the_schema(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("stop_grace_period:", "stop_grace_periods:"))
    result = validate_compose(broken)
    assert result.returncode != 0 and "stop_grace_periods" in result.stdout


def test_the_interpolated_file_follows_the_specification_too(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(compose))
    result = validate_compose(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_variable_has_a_line_in_env_example_and_passwords_are_required() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    used = {m.group(1) or m.group(4) for m in INTERPOLATION.finditer(text) if m.group(0) != "$$"}
    documented = read_env(ENV_EXAMPLE)
    assert used - set(documented) == set(), "variables .env.example does not list"
    passwords = {name for name in used if name.endswith("_PASSWORD")}
    assert passwords >= {f"TICKCAST_{n}_PASSWORD" for n in ("ADMIN", "INGEST", "WORKER")}
    for name in passwords:
        forms = re.findall(rf"\$\{{{name}(\W{{0,2}})", text)  # ":?" of ${NAME:?error}
        assert forms and set(forms) == {":?"}, f"{name}: write ${{{name}:?...}} (required)"
    with pytest.raises(KeyError, match=r"_PASSWORD: run \./make-env first"):
        interpolate(read_compose(COMPOSE), {k: v for k, v in documented.items() if v})


def test_no_password_is_committed() -> None:
    for name, value in read_env(ENV_EXAMPLE).items():
        if "PASSWORD" in name:
            assert value == "", f".env.example sets {name}"
    text = COMPOSE.read_text(encoding="utf-8")
    assert not re.search(r"redis://[^:@/\s]+:[^$@\s]+@", text), "a literal password in a URL"
    assert not re.search(r"(?m)^\s*\w*PASSWORD\w*:\s*(?!\$\{)\S", text), "a literal password"
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(COMPOSE_DIR / ".env")], cwd=REPO, timeout=30
    )
    assert ignored.returncode == 0, "deploy/compose/.env is not git-ignored"


def test_make_env_writes_distinct_random_passwords_for_its_owner_only(env_file: Path) -> None:
    values = read_env(env_file)
    passwords = [v for k, v in values.items() if k.endswith("_PASSWORD")]
    assert len(passwords) == 6 and len(set(passwords)) == 6
    assert all(re.fullmatch(r"[0-9a-f]{64}", p) for p in passwords)
    assert env_file.stat().st_mode & 0o777 == 0o600
    example = read_env(ENV_EXAMPLE)
    assert {k: v for k, v in values.items() if not k.endswith("_PASSWORD")} == {
        k: v for k, v in example.items() if not k.endswith("_PASSWORD")
    }


def test_make_env_never_overwrites_an_env_file(env_file: Path) -> None:
    before = env_file.read_bytes()
    result = make_env(env_file)
    assert result.returncode == 1 and "exists" in result.stderr
    assert env_file.read_bytes() == before


# -- the project's rules ---------------------------------------------------------------------


def test_every_published_port_is_bound_to_loopback(compose: dict[str, Any]) -> None:
    published = 0
    for name, service in compose["services"].items():
        assert service.get("network_mode") != "host", name
        for port in service.get("ports", []):
            if isinstance(port, dict):
                assert port.get("host_ip") == LOOPBACK, f"{name}: {port}"
            else:
                fields = str(port).split(":")
                assert len(fields) == 3, f"{name}: {port} (want 127.0.0.1:HOST:CONTAINER)"
                host_ip, host_port, container = fields
                assert host_ip == LOOPBACK and host_port.isdigit(), f"{name}: {port}"
                assert container.isdigit(), f"{name}: {port}"
            published += 1
    assert published >= 5  # redis, ingest, worker, prometheus, grafana


def test_every_mounted_file_exists_and_named_volumes_are_declared() -> None:
    data = read_compose(COMPOSE)
    declared = set(data.get("volumes", {}))
    for name, service in data["services"].items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), f"{name}: {source} missing"
            else:
                assert source in declared, f"{name}: volume {source} not declared"
    expected = {
        "redis-acl": [ACL_TEMPLATE, REPO / "deploy" / "redis" / "render-acl"],
        "prometheus": [
            PROMETHEUS_DIR / f for f in ("prometheus.yml", "alerts.yml", "recording.yml")
        ],
        "grafana": [
            REPO / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml",
            REPO / "deploy" / "grafana" / "provisioning" / "dashboards" / "tickcast.yml",
            REPO / "deploy" / "grafana" / "dashboards" / "tickcast.json",
        ],
    }
    for name, files in expected.items():
        roots = [source for source, _ in bind_mounts(data["services"][name])]
        for path in files:
            assert path.is_file() and any(root in path.parents for root in roots), (name, path)


def test_prometheus_loads_the_config_and_rules_promtool_tests(compose: dict[str, Any]) -> None:
    service = compose["services"]["prometheus"]
    translate = in_container(service, {})
    flags = dict(arg.split("=", 1) for arg in service["command"] if "=" in arg)
    config = Path(translate(flags["--config.file"]))
    assert config == PROMETHEUS_DIR / "prometheus.yml"
    rule_files = yaml.safe_load(config.read_text())["rule_files"]
    loaded = {(config.parent / f).resolve() for f in rule_files}
    assert loaded == {PROMETHEUS_DIR / "alerts.yml", PROMETHEUS_DIR / "recording.yml"}
    tested = {
        (test.parent / f).resolve()
        for test in (PROMETHEUS_DIR / "tests").glob("*.yml")
        for f in yaml.safe_load(test.read_text())["rule_files"]
    }
    assert loaded <= tested
    jobs = yaml.safe_load(config.read_text())["scrape_configs"]
    targets = {t for job in jobs for c in job["static_configs"] for t in c["targets"]}
    assert {f"{name}:{METRICS_PORT}" for name in TICKCAST_SERVICES} <= targets


@pytest.mark.parametrize(("name", "user"), sorted(TICKCAST_SERVICES.items()))
def test_each_tickcast_service_connects_as_its_own_acl_user(
    compose: dict[str, Any], env_file: Path, name: str, user: str
) -> None:
    service = compose["services"][name]
    url = urlsplit(service["environment"]["TICKCAST__REDIS__URL"])
    assert url.scheme == "redis" and url.username == user and url.hostname == "redis"
    assert url.password == read_env(env_file)[f"TICKCAST_{name.upper()}_PASSWORD"]
    assert re.search(rf"^user {re.escape(user)} on ", ACL_TEMPLATE.read_text(), re.MULTILINE)
    acl_env = compose["services"]["redis-acl"]["environment"]
    assert acl_env[f"TICKCAST_{name.upper()}_PASSWORD"] == url.password


@pytest.mark.parametrize("name", sorted(TICKCAST_SERVICES))
def test_each_tickcast_service_is_built_supervised_and_checked(
    compose: dict[str, Any], name: str
) -> None:
    service = compose["services"][name]
    assert service["image"] == "tickcast:latest"
    assert (COMPOSE_DIR / service["build"]["context"]).resolve() == REPO
    assert (REPO / service["build"].get("dockerfile", "Dockerfile")).is_file()
    assert service["command"][0] == name
    assert service["restart"] in {"always", "unless-stopped", "on-failure"}
    assert seconds(service["stop_grace_period"]) >= 10  # flush (<= 5 s), final checkpoints
    assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    env = service["environment"]
    assert env["TICKCAST__METRICS__HOST"] == "0.0.0.0"
    assert env["TICKCAST__METRICS__PORT"] == str(METRICS_PORT)
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD" and f"127.0.0.1:{METRICS_PORT}/readyz" in " ".join(test)
    ports = [str(p).split(":")[-1] for p in service["ports"]]
    assert ports == [str(METRICS_PORT)]


def test_redis_keeps_an_append_only_file_and_loads_the_rendered_acl(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    command = services["redis"]["command"]
    assert command[0] == "redis-server"
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--appendonly"] == "yes"
    mounts = dict(str(volume).split(":")[:2] for volume in services["redis"]["volumes"])
    assert options["--aclfile"].startswith(mounts["redis-acl"] + "/")
    assert services["redis"]["depends_on"]["redis-acl"] == {
        "condition": "service_completed_successfully"
    }
    assert services["redis-acl"]["restart"] == "no"


# -- the services, run as Compose runs them --------------------------------------------------


@dataclass
class Stack:
    """A redis-server started as the ``redis`` service, with the ACL ``redis-acl`` rendered."""

    compose: dict[str, Any]
    env: dict[str, str]
    port: int
    acl: Path
    data: Path

    def url(self, service: str) -> str:
        """A tickcast service's Redis URL, pointed at this server."""
        url: str = self.compose["services"][service]["environment"]["TICKCAST__REDIS__URL"]
        return url.replace("@redis:6379/", f"@127.0.0.1:{self.port}/")

    def client(self, user: str | None = None, password: str | None = None) -> redis.Redis:
        """A client of this server as ``user``."""
        return redis.Redis(
            host=LOOPBACK,
            port=self.port,
            username=user,
            password=password,
            socket_timeout=5,
            retry=Retry(NoBackoff(), 0),  # a refused login is the answer, not a blip
        )


def render_acl(compose: dict[str, Any], out: Path) -> Path:
    """Run the ``redis-acl`` service's command here, its volume being ``out``."""
    service = compose["services"]["redis-acl"]
    assert service["entrypoint"] == ["bash", "-c"]
    script = in_container(service, {"redis-acl": out})(service["command"][0])
    env = {"PATH": os.environ["PATH"], **service["environment"]}
    result = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    return out / "users.acl"


@pytest.fixture(scope="module")
def stack(
    compose: dict[str, Any],
    env_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
    start_system_redis: Callable[..., Any],
) -> Stack:
    acl_volume = tmp_path_factory.mktemp("redis-acl")
    acl = render_acl(compose, acl_volume)
    service = compose["services"]["redis"]
    translate = in_container(service, {"redis-acl": acl_volume})
    data = tmp_path_factory.mktemp("redis-data")
    server = start_system_redis(data, [translate(arg) for arg in service["command"][1:]])
    return Stack(compose, read_env(env_file), server.port, acl, data)


def test_the_rendered_acl_holds_hashes_never_the_passwords(stack: Stack) -> None:
    text = stack.acl.read_text()
    assert text.startswith("user default off\n")
    for name, value in stack.env.items():
        if name.startswith("TICKCAST_") and name.endswith("_PASSWORD"):
            assert value not in text, name
    assert stack.acl.stat().st_mode & 0o044 == 0o044  # readable by the redis user


def test_redis_answers_each_user_and_nobody_else(stack: Stack) -> None:
    with pytest.raises(redis.AuthenticationError):
        stack.client().ping()
    admin = stack.client("admin", stack.env["TICKCAST_ADMIN_PASSWORD"])
    assert admin.config_get("appendonly") == {"appendonly": "yes"}
    for service in TICKCAST_SERVICES:
        assert redis.Redis.from_url(stack.url(service), socket_timeout=5).ping()
    subscriber = stack.client("tickcast-subscriber", stack.env["TICKCAST_SUBSCRIBER_PASSWORD"])
    with pytest.raises(redis.exceptions.NoPermissionError):
        subscriber.xadd("tickcast:{sim:BTCUSDT}:signals", {"s": "{}"})
    with pytest.raises(redis.AuthenticationError):
        stack.client("tickcast-worker", stack.env["TICKCAST_INGEST_PASSWORD"]).ping()


def test_the_redis_healthcheck_passes_on_the_server_and_fails_without_one(stack: Stack) -> None:
    service = stack.compose["services"]["redis"]
    assert passes(healthcheck(service, stack.port))
    assert not passes(healthcheck(service, free_port()))


@pytest.fixture(scope="module")
def services(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Running]]:
    started: list[Running] = []
    for name in sorted(TICKCAST_SERVICES):
        service = stack.compose["services"][name]
        state = tmp_path_factory.mktemp(f"{name}-state")
        started.append(run_service(name, service, stack.url(name), state, state / f"{name}.log"))
    yield started
    for running in started:
        if running.proc.poll() is None:
            running.proc.kill()
            running.proc.wait(timeout=10)


def test_ingest_and_worker_become_healthy_then_stop_cleanly(
    stack: Stack, services: list[Running]
) -> None:
    deadline = time.monotonic() + 90
    pending = {running.name: running for running in services}
    while pending and time.monotonic() < deadline:
        for name, running in list(pending.items()):
            assert running.proc.poll() is None, f"{name} exited:\n{running.log.read_text()}"
            if passes(healthcheck(stack.compose["services"][name], running.port)):
                del pending[name]
        time.sleep(0.5)
    assert not pending, {name: r.log.read_text()[-3000:] for name, r in pending.items()}
    roles = {"ingest": ("ingest", "ingester"), "worker": ("worker", "owner")}
    for running in services:
        status, body = http(f"http://{LOOPBACK}:{running.port}/metrics")
        assert status == 200
        role, lease = roles[running.name]
        assert f'role="{role}"' in body and re.search(
            rf'tickcast_lease_held{{[^}}]*role="{lease}"[^}}]*}} 1\.0', body
        ), body[:2000]
    grace = seconds(stack.compose["services"]["ingest"]["stop_grace_period"])
    for running in services:
        running.proc.send_signal(signal.SIGTERM)
    for running in services:
        assert running.proc.wait(timeout=grace) == 0, running.log.read_text()[-3000:]
