"""The cluster layout of Docker Compose (deploy/compose/compose.cluster.yaml), checked offline.

As the single-Redis layout (``test_compose.py``; the Compose readers both use are in
``deploy_support.py``): the Compose specification's JSON schema before and after interpolation
with a ``.env`` made by ``make-env``, then the project's rules — every published port on
127.0.0.1 and none for the Redis nodes, mounted files present, each tickcast service its own
ACL user, in a pool (``--pool``), on the cluster (``TICKCAST__REDIS__CLUSTER``), started after
the cluster is made; the nodes' fixed addresses in their network and in the init service's
list; the Prometheus configuration checked by ``promtool`` with the rules mounted as Compose
mounts them.

Then the cluster itself, as Compose would make it, on this machine: the ``redis-acl`` command
renders the ACL and the replicas' credentials, six Debian ``redis-server`` processes start with
the node command (loopback ports instead of the fixed addresses), the ``redis-cluster-init``
script joins them into 3 masters with a replica each, every replica authenticates to its
master, a second run of the script changes nothing, and each tickcast user reaches the
cluster through tickcast's own cluster client. Finally ``ingest`` and the ``worker`` replicas
run with their Compose commands and environments on that cluster (loopback instead of the
nodes' addresses) until their healthchecks pass and the workers split the symbols between
them, then stop cleanly on SIGTERM.
"""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import yaml

from tickcast.service.bus.embedded import free_port

from deploy_support import (
    ACL_TEMPLATE,
    COMPOSE_DIR,
    ENV_EXAMPLE,
    INTERPOLATION,
    LOOPBACK,
    METRICS_PORT,
    PROMETHEUS_DIR,
    TICKCAST_SERVICES,
    Running,
    admin_client,
    healthcheck,
    in_container,
    in_sync,
    joined,
    leases_held,
    make_env,
    passes,
    read_compose,
    read_env,
    replication,
    run_service,
    seconds,
    validate_compose,
)
from support import assert_user_on_cluster, wait_until

COMPOSE = COMPOSE_DIR / "compose.cluster.yaml"
PROMETHEUS_CONFIG = COMPOSE_DIR / "prometheus-cluster.yml"
NODES = [f"redis-{i}" for i in range(6)]
"""The Redis Cluster's nodes: 3 masters and 3 replicas once joined."""
NODE_PORT = 6379


@pytest.fixture(scope="module")
def env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("compose-cluster") / ".env"
    made = make_env(path)
    assert made.returncode == 0, made.stderr
    return path


@pytest.fixture(scope="module")
def compose(env_file: Path) -> dict[str, Any]:
    """compose.cluster.yaml as Compose sees it with that .env."""
    return read_compose(COMPOSE, env_file)


# -- the Compose specification ---------------------------------------------------------------


def test_the_cluster_file_follows_the_compose_specification(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    result = validate_compose(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr
    interpolated = tmp_path / "compose.cluster.yaml"
    interpolated.write_text(yaml.safe_dump(compose))
    result = validate_compose(interpolated)
    assert result.returncode == 0, result.stdout + result.stderr


def test_its_variables_are_those_of_env_example_and_passwords_are_required() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    pattern = INTERPOLATION
    used = {m.group(1) or m.group(4) for m in pattern.finditer(text) if m.group(0) != "$$"}
    assert used - set(read_env(ENV_EXAMPLE)) == set()
    for name in (n for n in used if n.endswith("_PASSWORD")):
        forms = re.findall(rf"\$\{{{name}(\W{{0,2}})", text)
        assert forms and set(forms) == {":?"}, f"{name}: write ${{{name}:?...}} (required)"
    assert not re.search(r"redis://[^:@/\s]+:[^$@\s]+@", text), "a literal password in a URL"


# -- the project's rules ---------------------------------------------------------------------


def published(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(host address, host port or range, container port) of each published port."""
    out = []
    for port in service.get("ports", []):
        fields = str(port).split(":")
        assert len(fields) == 3, f"{port}: want 127.0.0.1:HOST:CONTAINER"
        out.append((fields[0], fields[1], fields[2]))
    return out


def test_every_published_port_is_on_loopback_and_no_redis_node_publishes_one(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    count = 0
    for name, service in services.items():
        assert service.get("network_mode") != "host", name
        for host_ip, host_port, container in published(service):
            assert host_ip == LOOPBACK, name
            assert re.fullmatch(r"\d+(-\d+)?", host_port) and container.isdigit(), name
            count += 1
    assert count == 4  # ingest, the workers (a range), prometheus, grafana
    for node in NODES:
        assert "ports" not in services[node], node
    first, _, last = published(services["worker"])[0][1].partition("-")
    assert int(last) - int(first) + 1 >= services["worker"]["deploy"]["replicas"]


def test_mounted_files_exist_and_volumes_and_networks_are_declared() -> None:
    data = read_compose(COMPOSE)
    for name, service in data["services"].items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), f"{name}: {source} missing"
            else:
                assert source in data["volumes"], f"{name}: volume {source} not declared"
        for network in service.get("networks", []):
            assert network in data["networks"] or network == "default", (name, network)
    data_volumes = {str(data["services"][n]["volumes"][0]).split(":")[0] for n in NODES}
    assert len(data_volumes) == len(NODES)  # each node its own nodes.conf and AOF


def node_addresses(compose: dict[str, Any]) -> dict[str, str]:
    """Each node's fixed address on the Redis network."""
    return {n: compose["services"][n]["networks"]["redis"]["ipv4_address"] for n in NODES}


def test_the_nodes_have_fixed_addresses_in_their_network_that_the_init_service_joins(
    compose: dict[str, Any],
) -> None:
    subnet = ipaddress.ip_network(compose["networks"]["redis"]["ipam"]["config"][0]["subnet"])
    addresses = node_addresses(compose)
    assert len(set(addresses.values())) == len(NODES)
    assert all(ipaddress.ip_address(a) in subnet for a in addresses.values())
    init = compose["services"]["redis-cluster-init"]
    listed = init["environment"]["REDIS_NODES"].split()
    assert listed == [f"{addresses[n]}:{NODE_PORT}" for n in NODES]
    assert set(init["depends_on"]) == set(NODES)
    assert all(d["condition"] == "service_healthy" for d in init["depends_on"].values())
    assert init["restart"] == "no"


def test_every_node_runs_in_cluster_mode_with_aof_and_the_rendered_acl(
    compose: dict[str, Any],
) -> None:
    commands = [compose["services"][n]["command"] for n in NODES]
    assert all(c == commands[0] for c in commands)
    command = commands[0]
    assert command[0] == "redis-server"
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--cluster-enabled"] == "yes" and options["--appendonly"] == "yes"
    assert options["--cluster-config-file"].startswith("/data/")
    assert int(options["--cluster-node-timeout"]) <= 15_000
    assert options["--cluster-require-full-coverage"] == "no"
    for node in NODES:
        mounts = dict(str(v).split(":")[:2] for v in compose["services"][node]["volumes"])
        assert options["--aclfile"].startswith(mounts["redis-acl"] + "/")
        assert options["--include"].startswith(mounts["redis-acl"] + "/")
        assert mounts[f"{node}-data"] == "/data"


@pytest.mark.parametrize(("name", "user"), sorted(TICKCAST_SERVICES.items()))
def test_each_tickcast_service_is_a_pool_on_the_cluster_as_its_own_acl_user(
    compose: dict[str, Any], env_file: Path, name: str, user: str
) -> None:
    service = compose["services"][name]
    assert service["command"][:2] == [name, "--pool"]
    env = service["environment"]
    assert env["TICKCAST__REDIS__CLUSTER"] == "true"
    url = urlsplit(env["TICKCAST__REDIS__URL"])
    assert url.scheme == "redis" and url.username == user and url.hostname in NODES
    assert url.port == NODE_PORT
    assert url.password == read_env(env_file)[f"TICKCAST_{name.upper()}_PASSWORD"]
    assert re.search(rf"^user {re.escape(user)} on ", ACL_TEMPLATE.read_text(), re.MULTILINE)
    assert set(service["networks"]) == {"redis", "default"}
    assert service["depends_on"] == {
        "redis-cluster-init": {"condition": "service_completed_successfully"}
    }
    assert service["restart"] in {"always", "unless-stopped", "on-failure"}
    assert seconds(service["stop_grace_period"]) >= 10
    assert (env["TICKCAST__METRICS__HOST"], env["TICKCAST__METRICS__PORT"]) == (
        "0.0.0.0",
        str(METRICS_PORT),
    )
    assert f"127.0.0.1:{METRICS_PORT}/readyz" in " ".join(service["healthcheck"]["test"])
    assert [p[2] for p in published(service)] == [str(METRICS_PORT)]
    assert compose["services"]["worker"]["deploy"]["replicas"] >= 2


def test_prometheus_finds_every_pool_member_and_loads_the_tested_rules(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    service = compose["services"]["prometheus"]
    translate = in_container(service, {})
    flags = dict(arg.split("=", 1) for arg in service["command"] if "=" in arg)
    config = Path(translate(flags["--config.file"]))
    assert config == PROMETHEUS_CONFIG
    # the container's layout, here: the config file with the rules directory beside it
    rules_dir = Path(translate("/etc/prometheus-cluster/rules"))
    assert rules_dir == PROMETHEUS_DIR
    (tmp_path / "rules").symlink_to(rules_dir)
    (tmp_path / "prometheus.yml").write_text(config.read_text())
    checked = subprocess.run(
        ["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "2 rule files found" in checked.stdout
    jobs = {j["job_name"]: j for j in yaml.safe_load(config.read_text())["scrape_configs"]}
    for name in TICKCAST_SERVICES:
        [sd] = jobs[f"tickcast-{name}"]["dns_sd_configs"]
        assert sd["names"] == [name] and sd["type"] == "A" and sd["port"] == METRICS_PORT


# -- the cluster, made as Compose makes it ---------------------------------------------------


@dataclass
class Cluster:
    """Six redis-server processes started with the node command, and what made them."""

    compose: dict[str, Any]
    env: dict[str, str]
    ports: dict[str, int]
    acl_dir: Path
    chown_calls: list[str]

    def nodes_list(self) -> str:
        """The init service's REDIS_NODES, the nodes' loopback ports instead."""
        return " ".join(f"{LOOPBACK}:{self.ports[n]}" for n in NODES)

    @property
    def admin_password(self) -> str:
        return self.env["TICKCAST_ADMIN_PASSWORD"]

    def admin(self, node: str) -> redis.Redis:
        return admin_client(self.ports[node], self.admin_password)

    def url(self, service: str) -> str:
        """A tickcast service's Redis URL, pointed at the first node's loopback port."""
        url: str = self.compose["services"][service]["environment"]["TICKCAST__REDIS__URL"]
        return url.replace(f"@{NODES[0]}:{NODE_PORT}/", f"@{LOOPBACK}:{self.ports[NODES[0]]}/")


def render(compose: dict[str, Any], out: Path, shim: Path) -> list[str]:
    """Run the ``redis-acl`` command here (its volume ``out``), with a ``chown`` that records
    its arguments (the container's root gives the file to the redis user); return them."""
    service = compose["services"]["redis-acl"]
    assert service["entrypoint"] == ["bash", "-c"]
    script = in_container(service, {"redis-acl": out})(service["command"][0])
    log = shim / "chown.log"
    (shim / "chown").write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    (shim / "chown").chmod(0o755)
    env = {"PATH": f"{shim}:{os.environ['PATH']}", **service["environment"]}
    done = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return log.read_text().splitlines()


def init_script(cluster: Cluster) -> subprocess.CompletedProcess[str]:
    """Run the ``redis-cluster-init`` command with its environment, the loopback nodes."""
    service = cluster.compose["services"]["redis-cluster-init"]
    assert service["entrypoint"] == ["bash", "-c"]
    env = {**os.environ, **service["environment"], "REDIS_NODES": cluster.nodes_list()}
    return subprocess.run(
        ["bash", "-c", service["command"][0]], env=env, capture_output=True, text=True, timeout=90
    )


@pytest.fixture(scope="module")
def cluster(
    compose: dict[str, Any],
    env_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
    start_system_redis: Callable[..., Any],
) -> Cluster:
    acl_dir = tmp_path_factory.mktemp("redis-acl")
    calls = render(compose, acl_dir, tmp_path_factory.mktemp("shim"))
    ports = {}
    for node in NODES:
        service = compose["services"][node]
        data = tmp_path_factory.mktemp(f"{node}-data")
        translate = in_container(service, {"redis-acl": acl_dir, f"{node}-data": data})
        # the cluster bus on a free port of its own (a container's is its port + 10000)
        options = [translate(a) for a in service["command"][1:]]
        options += ["--cluster-port", str(free_port())]
        ports[node] = start_system_redis(data, options).port
    made = Cluster(compose, read_env(env_file), ports, acl_dir, calls)
    created = init_script(made)
    assert created.returncode == 0, created.stdout + created.stderr
    assert "Performing hash slots allocation" in created.stdout  # made here, the first time
    return made


def test_the_replicas_credentials_are_kept_from_everyone_but_redis(cluster: Cluster) -> None:
    conf = cluster.acl_dir / "replication.conf"
    assert conf.read_text() == (
        f"masteruser admin\nmasterauth {cluster.env['TICKCAST_ADMIN_PASSWORD']}\n"
    )
    assert conf.stat().st_mode & 0o077 == 0
    assert cluster.chown_calls == [f"redis:redis {cluster.acl_dir}/replication.conf.new"]
    acl = (cluster.acl_dir / "users.acl").read_text()
    assert cluster.env["TICKCAST_ADMIN_PASSWORD"] not in acl


def node_ports(cluster: Cluster) -> list[int]:
    """The nodes' loopback ports, in the order of :data:`NODES`."""
    return [cluster.ports[n] for n in NODES]


def test_the_init_script_joins_three_masters_each_with_a_replica_in_sync(cluster: Cluster) -> None:
    ports, password = node_ports(cluster), cluster.admin_password
    wait_until("every node ok, knowing the six", lambda: joined(ports, password), timeout=30)
    for node in NODES:
        with cluster.admin(node) as admin:
            assert admin.config_get("appendonly") == {"appendonly": "yes"}
    wait_until("every replica in sync with its master", lambda: in_sync(ports, password), 30)
    roles = replication(ports, password)
    masters = [r for r in roles if r["role"] == "master"]
    assert len(masters) == 3 and len(roles) - len(masters) == 3
    assert all(r["connected_slaves"] == 1 for r in masters)


def test_a_second_run_of_the_init_script_creates_nothing(cluster: Cluster) -> None:
    with cluster.admin(NODES[0]) as admin:
        before = sorted(line.split()[0] for line in admin.execute_command("CLUSTER", "NODES")
                        .decode().splitlines())  # fmt: skip
    again = init_script(cluster)
    assert again.returncode == 0 and "redis cluster ok" in again.stdout, again.stderr
    assert "Performing hash slots allocation" not in again.stdout
    with cluster.admin(NODES[0]) as admin:
        after = sorted(line.split()[0] for line in admin.execute_command("CLUSTER", "NODES")
                       .decode().splitlines())  # fmt: skip
    assert after == before


def test_anonymous_clients_get_nothing(cluster: Cluster) -> None:
    anonymous = redis.Redis(port=cluster.ports[NODES[0]])
    with anonymous, pytest.raises(redis.AuthenticationError):
        anonymous.ping()


@pytest.mark.parametrize("name", sorted(TICKCAST_SERVICES))
def test_each_tickcast_user_reaches_the_cluster_through_tickcasts_client(
    cluster: Cluster, name: str
) -> None:
    assert_user_on_cluster(cluster.url(name), writes_ticks=name == "ingest")


# -- tickcast's pools on that cluster, run as Compose runs them ------------------------------


def start_member(cluster: Cluster, name: str, index: int, state: Path) -> Running:
    """Start one container of ``name`` with its Compose command and environment, the Redis
    URL pointed at the first node's loopback port, the metrics on a free loopback port."""
    service = cluster.compose["services"][name]
    state.mkdir(parents=True)
    return run_service(name, service, cluster.url(name), state, state / f"{name}-{index}.log")


def test_the_pools_become_healthy_on_the_cluster_split_the_symbols_and_stop_cleanly(
    cluster: Cluster, tmp_path: Path
) -> None:
    compose = cluster.compose
    symbols = compose["services"]["worker"]["environment"]["TICKCAST__EXCHANGE__SYMBOLS"]
    replicas = compose["services"]["worker"]["deploy"]["replicas"]
    members = [start_member(cluster, "ingest", 0, tmp_path / "ingest")]
    members += [
        start_member(cluster, "worker", i, tmp_path / f"worker-{i}") for i in range(replicas)
    ]
    try:
        for member in members:
            check = healthcheck(compose["services"][member.name], member.port)

            def healthy(member: Running = member, check: list[str] = check) -> bool:
                assert member.proc.poll() is None, member.log.read_text()[-3000:]
                return passes(check)

            wait_until(f"{member.name} healthy", healthy, timeout=90)
        workers = [m for m in members if m.name == "worker"]
        n = len(symbols.split(","))
        share = [n // replicas + (i < n % replicas) for i in range(replicas)]

        def split() -> list[int]:
            return sorted((leases_held(w.port, "owner") for w in workers), reverse=True)

        wait_until(f"the workers splitting {n} symbols", lambda: split() == share, timeout=60)
    finally:
        for member in members:
            if member.proc.poll() is None:
                member.proc.send_signal(signal.SIGTERM)
        grace = seconds(compose["services"]["worker"]["stop_grace_period"])
        codes = {m.log.name: m.proc.wait(timeout=grace) for m in members}
    assert set(codes.values()) == {0}, {m.log.name: m.log.read_text()[-2000:] for m in members}
