"""The Kubernetes cluster variant (deploy/k8s/cluster), checked with the real tools offline.

* ``kubectl kustomize`` renders ``deploy/k8s/cluster`` (the pools on your Redis Cluster) and
  ``deploy/k8s/cluster/with-redis`` (with the reference cluster); ``kubernetes-validate``
  validates every rendered resource of a built-in kind in strict mode, against the Kubernetes
  versions ``test_k8s.py`` uses (the readers both use are in ``deploy_support.py``).
* The pools: each Deployment of base/ with ``--pool`` in its arguments (parsed by tickcast's
  own CLI), two replicas, ``RollingUpdate`` with no pod less, ``TICKCAST__REDIS__CLUSTER``,
  and otherwise exactly base/'s pod; its settings load with ``redis.cluster`` true.
* The reference cluster: every pod of the rendering meets the "restricted" Pod Security
  Standard; the clients' Service is the host the Secret template names; six redis-servers run
  on the ConfigMap's configuration and the rendered ACL, the Job's script joins them into 3
  masters with a replica each (the replicas logged in to their masters), a second run changes
  nothing, the nodes hand their names to clients, and the tickcast users reach the cluster
  through tickcast's cluster client; the nodes' init container's script points ``nodes.conf``
  at its peers' current addresses.
* The pools' pods, run as processes with the rendered Deployments' arguments and environment
  (the simulated venue instead of the live one), serve their probes on that cluster, each pool
  splits the ConfigMap's symbols between its two members, and every pod stops cleanly.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from tickcast.service.bus.embedded import free_port
from tickcast.service.cli import build_parser

from deploy_support import (
    ACL_PASSWORDS,
    K8S,
    ROLES,
    Resource,
    admin_client,
    answering,
    config_toml,
    container,
    documents,
    expected_passes,
    find,
    in_sync,
    joined,
    kustomization,
    leases_held,
    matches,
    mount_path,
    passed,
    pod_settings,
    rendered_acl,
    replication,
    role_url,
    run_pod,
    secret_value,
    validate_manifests,
)
from support import assert_user_on_cluster, wait_until

CLUSTER = K8S / "cluster"
POOL = CLUSTER / "pool"
COMPONENT = CLUSTER / "redis"
WITH_REDIS = CLUSTER / "with-redis"
NODES = 6
SCRIPTS = "tickcast-redis-cluster-scripts"


# -- kustomize -------------------------------------------------------------------------------


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize directory``: the resources it renders."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("no kubectl on PATH (it renders the kustomizations)", pytrace=False)
    done = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """The renderings of deploy/k8s/cluster and deploy/k8s/cluster/with-redis."""
    return {"cluster": kustomize(CLUSTER), "with-redis": kustomize(WITH_REDIS)}


def test_every_rendered_resource_passes_the_strict_kubernetes_schemas(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    for name, docs in rendered.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(docs))
        result = validate_manifests([path])
        assert result.returncode == 0, result.stdout + result.stderr
        items: list[Resource] = [(path, doc) for doc in docs]
        assert passed(result.stdout) == expected_passes(items)


def test_the_kustomizations_cover_every_manifest_and_build_on_base() -> None:
    assert kustomization(CLUSTER)["resources"] == ["pool"]
    pool = kustomization(POOL)
    assert pool["resources"] == ["../../base"] and pool["namespace"] == "tickcast"
    component = kustomization(COMPONENT)
    assert component["kind"] == "Component"
    manifests = {p for p in CLUSTER.rglob("*.yaml") if p.name != "kustomization.yaml"}
    assert manifests == {COMPONENT / f for f in component["resources"]}
    overlay = kustomization(WITH_REDIS)
    assert overlay["resources"] == ["../pool"] and overlay["components"] == ["../redis"]


def test_with_redis_adds_the_reference_cluster_and_nothing_else(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    def names(docs: list[dict[str, Any]]) -> set[tuple[str, str]]:
        return {(d["kind"], d["metadata"]["name"]) for d in docs}

    added = names(rendered["with-redis"]) - names(rendered["cluster"])
    component = documents(COMPONENT / "redis-cluster.yaml")
    assert added == names(component)
    assert all(d["metadata"]["namespace"] == "tickcast" for d in rendered["with-redis"]
               if d["kind"] != "Namespace")  # fmt: skip


# -- the pools -------------------------------------------------------------------------------


def base_deployment(role: str) -> dict[str, Any]:
    """base/'s Deployment of ``role``, as written."""
    return find("Deployment", f"tickcast-{role}")


@pytest.mark.parametrize("role", ROLES)
def test_each_role_is_a_pool_of_two_rolled_one_pod_at_a_time_on_the_cluster(
    rendered: dict[str, list[dict[str, Any]]], role: str
) -> None:
    deployment = find("Deployment", f"tickcast-{role}", rendered["cluster"])
    spec = deployment["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    main = container(deployment)
    args = build_parser().parse_args(main["args"])
    assert args.command == role and args.pool is True
    base = base_deployment(role)
    assert main["args"] == [role, "--pool", *container(base)["args"][1:]]
    env = {e["name"]: e for e in main["env"]}
    assert env.pop("TICKCAST__REDIS__CLUSTER") == {
        "name": "TICKCAST__REDIS__CLUSTER",
        "value": "true",
    }
    assert list(env.values()) == container(base)["env"]
    # everything else is base/'s pod
    pod, base_pod = spec["template"]["spec"], base["spec"]["template"]["spec"]
    strip = {"args", "env"}
    assert {k: v for k, v in pod.items() if k != "containers"} == {
        k: v for k, v in base_pod.items() if k != "containers"
    }
    assert {k: v for k, v in main.items() if k not in strip} == {
        k: v for k, v in container(base).items() if k not in strip
    }


@pytest.mark.parametrize("role", ROLES)
def test_each_pool_loads_settings_on_the_cluster(
    rendered: dict[str, list[dict[str, Any]]],
    role: str,
    tmp_path: Path,
    clean_environment: pytest.MonkeyPatch,
) -> None:
    deployment = find("Deployment", f"tickcast-{role}", rendered["cluster"])
    config = tmp_path / "tickcast.toml"
    config.write_text(config_toml())
    settings = pod_settings(deployment, config, clean_environment)
    assert settings.redis.cluster is True
    assert settings.exchange.symbols == ["BTC/USDT:USDT", "ETH/USDT:USDT"]


def test_every_pod_meets_the_restricted_pod_security_standard(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["with-redis"]
    namespace = find("Namespace", "tickcast", docs)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    allowed = {"configMap", "secret", "emptyDir", "persistentVolumeClaim", "projected"}
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job")]
    assert {w["metadata"]["name"] for w in workloads} == {
        "tickcast-ingest",
        "tickcast-worker",
        "tickcast-redis-cluster",
        "tickcast-redis-cluster-init",
    }
    for workload in workloads:
        name, pod = workload["metadata"]["name"], workload["spec"]["template"]["spec"]
        assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), name
        assert all(set(v) - {"name"} <= allowed for v in pod.get("volumes", [])), name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["securityContext"]["runAsUser"] != 0, name
        if any("secret" in v for v in pod.get("volumes", [])):
            assert "fsGroup" in pod["securityContext"], f"{name}: a Secret its user cannot read"
        for item in pod["containers"] + pod.get("initContainers", []):
            context = item["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context.get("runAsNonRoot", pod["securityContext"].get("runAsNonRoot")), name
            assert ":" in item["image"] and not item["image"].endswith(":latest"), name


def test_the_secret_template_names_the_clients_service_of_the_reference_cluster(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["with-redis"]
    service = find("Service", "tickcast-redis", docs)
    statefulset = find("StatefulSet", "tickcast-redis-cluster", docs)
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert matches({"matchLabels": service["spec"]["selector"]}, labels)
    headless = find("Service", statefulset["spec"]["serviceName"], docs)
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    for role in ROLES:
        url = urllib.parse.urlsplit(secret_value("tickcast-redis", f"{role}-url"))
        assert (url.hostname, url.port) == ("tickcast-redis", service["spec"]["ports"][0]["port"])
    assert statefulset["spec"]["replicas"] == NODES


# -- the reference cluster, run here ---------------------------------------------------------


def component(kind: str, name: str) -> dict[str, Any]:
    """A resource of redis-cluster.yaml."""
    return find(kind, name, documents(COMPONENT / "redis-cluster.yaml"))


def node_conf() -> dict[str, str]:
    """The nodes' redis.conf directives (first word -> the rest)."""
    text: str = component("ConfigMap", "tickcast-redis-cluster-config")["data"]["redis.conf"]
    lines = [line.strip() for line in text.splitlines()]
    pairs = [line.split(None, 1) for line in lines if line and not line.startswith("#")]
    return {pair[0]: pair[1] if len(pair) > 1 else "" for pair in pairs}


def script(name: str) -> str:
    """A script of the ConfigMap tickcast-redis-cluster-scripts."""
    text: str = component("ConfigMap", SCRIPTS)["data"][name]
    return text


LOCAL = frozenset({"bind", "port", "dir", "aclfile", "include", "cluster-config-file"})
"""Where a node listens and keeps its files: the test's own; the rest is the ConfigMap's."""


@dataclass
class Cluster:
    """Six redis-servers on the nodes' configuration, joined by the Job's script."""

    ports: list[int]
    dirs: list[Path]
    passwords: dict[str, str]
    secret_dir: Path

    def admin(self, i: int) -> redis.Redis:
        return admin_client(self.ports[i], self.passwords["ADMIN"])


def run_job(cluster: Cluster) -> subprocess.CompletedProcess[str]:
    """The Job's script with its environment, the loopback nodes and the Secret's files."""
    job = component("Job", "tickcast-redis-cluster-init")
    main = container(job)
    assert main["command"] == ["bash", "/scripts/create-cluster.sh"]
    env = {e["name"]: e["value"] for e in main["env"]}
    assert len(env["REDIS_NODES"].split()) == NODES
    assert env["REPLICATION_CONF"] == mount_path(job, "acl") + "/replication.conf"
    env |= {
        "REDIS_NODES": " ".join(f"127.0.0.1:{port}" for port in cluster.ports),
        "REPLICATION_CONF": str(cluster.secret_dir / "replication.conf"),
    }
    return subprocess.run(
        ["bash", "-c", script("create-cluster.sh")],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=100,
    )


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, start_system_redis: Callable[..., Any]
) -> Cluster:
    """The Secret's two files as README.md makes them, six nodes, the Job run once."""
    passwords = {name: secrets.token_hex(16) for name in ACL_PASSWORDS}
    secret_dir = tmp_path_factory.mktemp("tickcast-redis-acl")
    (secret_dir / "users.acl").write_text(rendered_acl(passwords))
    (secret_dir / "replication.conf").write_text(
        f"masteruser admin\nmasterauth {passwords['ADMIN']}\n"
    )
    conf = tmp_path_factory.mktemp("conf") / "redis.conf"
    conf.write_text("".join(f"{k} {v}\n" for k, v in node_conf().items() if k not in LOCAL))
    ports, dirs = [], []
    for i in range(NODES):
        data = tmp_path_factory.mktemp(f"node-{i}")
        options = ["--include", str(conf), "--aclfile", str(secret_dir / "users.acl")]
        options += ["--include", str(secret_dir / "replication.conf")]
        options += ["--cluster-config-file", str(data / "nodes.conf")]
        # a pod's name, here the loopback's; the bus port a free one (a pod's is 16379)
        options += ["--cluster-announce-hostname", "localhost"]
        options += ["--cluster-port", str(free_port())]
        ports.append(start_system_redis(data, options).port)
        dirs.append(data)
    made = Cluster(ports, dirs, passwords, secret_dir)
    joined = run_job(made)
    assert joined.returncode == 0, joined.stdout + joined.stderr
    assert "Performing hash slots allocation" in joined.stdout  # made here, the first time
    return made


def test_the_configuration_matches_the_pods_mounts() -> None:
    statefulset = component("StatefulSet", "tickcast-redis-cluster")
    conf = node_conf()
    assert conf["aclfile"] == mount_path(statefulset, "acl") + "/users.acl"
    assert conf["include"] == mount_path(statefulset, "acl") + "/replication.conf"
    assert conf["dir"] == mount_path(statefulset, "data")
    assert conf["cluster-config-file"].startswith(conf["dir"] + "/")
    assert conf["cluster-enabled"] == "yes" and conf["appendonly"] == "yes"
    assert conf["cluster-preferred-endpoint-type"] == "hostname"
    main = container(statefulset)
    assert main["args"] == ["--cluster-announce-hostname", "$(POD_NAME).tickcast-redis-cluster"]
    assert {e["name"] for e in main["env"]} == {"POD_NAME"}
    [init] = statefulset["spec"]["template"]["spec"]["initContainers"]
    assert init["command"] == ["bash", "/scripts/fix-addresses.sh"]
    assert {e["name"]: e["value"] for e in init["env"]} == {
        "NODES_CONF": conf["cluster-config-file"]
    }


def test_the_job_joins_three_masters_each_with_a_replica_in_sync(cluster: Cluster) -> None:
    ports, password = cluster.ports, cluster.passwords["ADMIN"]
    wait_until("every node ok, knowing the six", lambda: joined(ports, password), timeout=30)
    roles = [r["role"] for r in replication(ports, password)]
    assert sorted(roles) == ["master"] * 3 + ["slave"] * 3
    wait_until("every replica in sync with its master", lambda: in_sync(ports, password), 30)


def test_a_second_run_of_the_job_creates_nothing(cluster: Cluster) -> None:
    with cluster.admin(0) as admin:
        before = admin.execute_command("CLUSTER", "MYID")
        epoch = admin.execute_command("CLUSTER", "INFO").decode()
    again = run_job(cluster)
    assert again.returncode == 0 and "redis cluster ok" in again.stdout, again.stderr
    assert "Performing hash slots allocation" not in again.stdout
    with cluster.admin(0) as admin:
        assert admin.execute_command("CLUSTER", "MYID") == before
        after = admin.execute_command("CLUSTER", "INFO").decode()
    assert _field(after, "cluster_current_epoch") == _field(epoch, "cluster_current_epoch")


def _field(info: str, name: str) -> str:
    return next(
        line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith(name)
    )


def test_the_nodes_hand_their_names_to_clients(cluster: Cluster) -> None:
    with cluster.admin(0) as admin:
        slots = admin.execute_command("CLUSTER", "SLOTS")
    endpoints = {node[0] for rng in slots for node in rng[2:]}
    assert endpoints == {b"localhost"}


@pytest.mark.parametrize("role", ROLES)
def test_each_tickcast_user_reaches_the_cluster_through_tickcasts_client(
    cluster: Cluster, role: str
) -> None:
    url = role_url(role, cluster.ports[0], cluster.passwords[role.upper()])
    assert_user_on_cluster(url, writes_ticks=role == "ingest")


# -- the nodes' init container ---------------------------------------------------------------


def fix_addresses(
    conf: Path, names: dict[str, str], shim: Path
) -> subprocess.CompletedProcess[str]:
    """Run fix-addresses.sh on ``conf`` with a ``getent`` that knows ``names`` (name -> IP)."""
    table = "\n".join(f"{ip} {name}" for name, ip in names.items())
    (shim / "getent").write_text(
        f'#!/bin/sh\n[ "$1" = hosts ] || exit 2\nprintf "%s\\n" "{table}" | '
        "awk -v n=\"$2\" '$2 == n { print; found = 1 } END { exit !found }'\n"
    )
    (shim / "getent").chmod(0o755)
    env = {"PATH": f"{shim}:{os.environ['PATH']}", "NODES_CONF": str(conf)}
    return subprocess.run(
        ["bash", "-c", script("fix-addresses.sh")], env=env, capture_output=True, text=True
    )


def test_the_init_container_points_nodes_conf_at_the_peers_current_addresses(
    cluster: Cluster, tmp_path: Path
) -> None:
    real = (cluster.dirs[0] / "nodes.conf").read_text()
    lines = real.splitlines()
    peers = [line for line in lines if "@" in line]
    assert len(peers) == NODES and all(",localhost" in line for line in peers)
    # each node under its pod's name and an address it no longer has; a 7.4-style line with
    # auxiliary fields after the name; a name that does not resolve (its pod not scheduled)
    stale = []
    for i, line in enumerate(peers):
        node_id, address, rest = line.split(" ", 2)
        port_part = address.split(":", 1)[1].split(",", 1)[0]
        name = f"tickcast-redis-cluster-{i}.tickcast-redis-cluster"
        aux = ",tls-port=0,shard-id=ab12" if i == 1 else ""
        stale.append(f"{node_id} 10.1.1.{i}:{port_part},{name}{aux} {rest}")
    others = [line for line in lines if "@" not in line]
    conf = tmp_path / "nodes.conf"
    conf.write_text("\n".join(stale + others) + "\n")
    names = {f"tickcast-redis-cluster-{i}.tickcast-redis-cluster": f"10.2.2.{i}" for i in range(5)}
    shim = tmp_path / "bin"
    shim.mkdir()
    done = fix_addresses(conf, names, shim)
    assert done.returncode == 0, done.stderr
    fixed = conf.read_text().splitlines()
    for i in range(5):
        assert fixed[i] == stale[i].replace(f" 10.1.1.{i}:", f" 10.2.2.{i}:", 1)
    assert fixed[5] == stale[5]  # not resolvable: left as it was
    assert fixed[NODES:] == others
    assert ",tls-port=0,shard-id=ab12 " in fixed[1]


def test_the_init_container_leaves_a_new_node_alone(tmp_path: Path) -> None:
    shim = tmp_path / "bin"
    shim.mkdir()
    done = fix_addresses(tmp_path / "nodes.conf", {}, shim)
    assert done.returncode == 0 and not (tmp_path / "nodes.conf").exists()


# -- the pools' pods on the reference cluster ------------------------------------------------


@dataclass
class Pod:
    """A pool Deployment's container, run here as a process."""

    role: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path


def start_pod(deployment: dict[str, Any], cluster: Cluster, index: int, tmp_path: Path) -> Pod:
    """Run ``deployment``'s container: its arguments and environment, the Secret template's
    URL pointed at the first node, and — the test's own — the simulated venue instead of the
    live one, metrics on a free loopback port, the ConfigMap's file and a state directory in
    ``tmp_path``."""
    role = deployment["metadata"]["name"].removeprefix("tickcast-")
    state = tmp_path / f"{role}-{index}"
    state.mkdir(parents=True)
    config = state / "tickcast.toml"
    config.write_text(config_toml())
    url = role_url(role, cluster.ports[0], cluster.passwords[role.upper()])
    proc, port = run_pod(deployment, url, config, state, state / "log")
    return Pod(role, proc, port, state / "log")


def test_the_pools_pods_serve_their_probes_split_the_symbols_and_stop_cleanly(
    rendered: dict[str, list[dict[str, Any]]], cluster: Cluster, tmp_path: Path
) -> None:
    docs = rendered["with-redis"]
    deployments = [find("Deployment", f"tickcast-{role}", docs) for role in ROLES]
    pods = [
        start_pod(d, cluster, i, tmp_path)
        for d in deployments
        for i in range(d["spec"]["replicas"])
    ]
    try:
        for pod in pods:
            for path in ("/healthz", "/readyz"):
                url = f"http://127.0.0.1:{pod.port}{path}"
                wait_until(f"{pod.role} {path}", answering(pod.proc, pod.log, url), 90)
        for role, kind in (("ingest", "ingester"), ("worker", "owner")):
            members = [p for p in pods if p.role == role]

            def split(members: list[Pod] = members, kind: str = kind) -> list[int]:
                return sorted(leases_held(p.port, kind) for p in members)

            wait_until(f"the {role} pool's split", lambda split=split: split() == [1, 1], 60)
    finally:
        for pod in pods:
            if pod.proc.poll() is None:
                pod.proc.send_signal(signal.SIGTERM)
        grace = deployments[1]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        codes = [pod.proc.wait(timeout=grace) for pod in pods]
    assert codes == [0] * len(pods), [p.log.read_text()[-2000:] for p in pods]
