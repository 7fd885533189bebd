"""A real Redis Cluster on loopback ports, for the tests and the benchmarks.

:class:`LocalCluster` starts ``masters`` masters and as many replicas each as asked (3 + 3 by
default) from the ``redis-server`` the rest of the suite runs (:func:`find_redis_server`:
``PATH`` first), each in cluster mode (``--cluster-enabled yes``, a short
``--cluster-node-timeout``, no persistence) with its own directory, joins them with
``redis-cli --cluster create ... --cluster-replicas N --cluster-yes`` and waits until every node
says ``cluster_state:ok``, knows every other node and each replica's link to its master is up.

Then: :meth:`LocalCluster.master_of` (the node serving a key's slot), :meth:`LocalCluster.kill`
(SIGKILL, a crash), :meth:`LocalCluster.wait_failover` (a replica of the dead master promoted
and the cluster ``ok`` again), :meth:`LocalCluster.restart` (the dead node back, as a replica),
:meth:`LocalCluster.flushall` and :meth:`LocalCluster.stop`. Importable without pytest
(``bench/scale.py`` uses it): put ``tests/cluster`` on ``sys.path``.

Every child is started with :func:`~tickcast.service.bus.lifetime.spawn_owned`: it dies with
the process that started it.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.crc import key_slot

from tickcast.service.bus.embedded import find_redis_server
from tickcast.service.bus.lifetime import spawn_owned

BUS_OFFSET = 10_000
"""A node's cluster bus listens on its port + this (Redis's rule)."""
PORTS = (20_000, 45_000)
"""Ports picked from (their bus ports stay below 65536)."""


class ClusterError(RuntimeError):
    """The cluster could not be started, or did not reach the state waited for in time."""


@dataclass
class Node:
    """One redis-server of the cluster."""

    port: int
    directory: Path
    proc: subprocess.Popen[bytes] | None = None
    node_id: str = ""

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``."""
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Whether its process runs."""
        return self.proc is not None and self.proc.poll() is None

    def client(self, timeout_s: float = 2.0) -> redis.Redis:
        """A plain sync client on this node alone (close it)."""
        return redis.Redis(
            "127.0.0.1", self.port, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )

    def call(self, *args: Any, timeout_s: float = 2.0) -> Any:
        """Run one command on this node."""
        client = self.client(timeout_s)
        try:
            return client.execute_command(*args)
        finally:
            client.close()


@dataclass
class LocalCluster:
    """A Redis Cluster of child processes; see the module docstring.

    Parameters
    ----------
    base_dir : Path
        Each node's directory (``nodes.conf``, log) is made under it.
    masters, replicas : int
        Masters, and replicas per master.
    node_timeout_ms : int
        ``cluster-node-timeout``: how long a node may be silent before it is judged failed
        (a failover takes about twice this).
    """

    base_dir: Path
    masters: int = 3
    replicas: int = 1
    node_timeout_ms: int = 1000
    nodes: list[Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0`` of the first node still running."""
        node = next((n for n in self.nodes if n.running), self.nodes[0])
        return f"redis://127.0.0.1:{node.port}/0"

    @property
    def startup_urls(self) -> list[str]:
        """Every node's URL."""
        return [f"redis://{n.address}/0" for n in self.nodes]

    # -- start and stop ---------------------------------------------------------------------

    def start(self, timeout_s: float = 60.0) -> LocalCluster:
        """Start the nodes, create the cluster and wait until it is ``ok`` everywhere."""
        binary = find_redis_server()
        cli = _redis_cli(binary)
        try:
            ports = _free_ports(self.masters * (1 + self.replicas))
            for i, port in enumerate(ports):
                node = Node(port, self.base_dir / f"node-{i}-{port}")
                node.directory.mkdir(parents=True, exist_ok=True)
                self.nodes.append(node)
                self._launch(node, binary)
            for node in self.nodes:
                _wait_ping(node, 10.0)
            create = subprocess.run(
                [cli, "--cluster", "create", *(n.address for n in self.nodes),
                 "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                capture_output=True, text=True, timeout=timeout_s, check=False,
            )  # fmt: skip
            if create.returncode != 0:
                raise ClusterError(f"redis-cli --cluster create failed:\n{create.stdout}")
            for node in self.nodes:
                node.node_id = str(node.call("CLUSTER", "MYID").decode())
            self.wait_ok(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self, node: Node, binary: Path | None = None) -> None:
        argv = [
            str(binary or find_redis_server()),
            "--bind", "127.0.0.1", "--port", str(node.port), "--protected-mode", "yes",
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(self.node_timeout_ms),
            "--cluster-replica-validity-factor", "0",
            "--appendonly", "no", "--save", "",
            "--dir", str(node.directory), "--logfile", str(node.directory / "redis.log"),
        ]  # fmt: skip
        node.proc = spawn_owned(argv)

    def stop(self) -> None:
        """SIGTERM every node and wait for it (SIGKILL after 10 s)."""
        for node in self.nodes:
            if node.running and node.proc is not None:
                node.proc.terminate()
        for node in self.nodes:
            if node.proc is None:
                continue
            try:
                node.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait(timeout=10)

    def __enter__(self) -> LocalCluster:
        return self.start() if not self.nodes else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the layout -------------------------------------------------------------------------

    def node(self, address: str) -> Node:
        """The node at ``host:port``."""
        port = int(address.rpartition(":")[2].partition("@")[0])
        return next(n for n in self.nodes if n.port == port)

    def layout(self) -> dict[str, dict[str, Any]]:
        """``CLUSTER NODES`` as one running node sees it: per address, ``id``, ``role``
        (``master`` / ``slave``), ``master`` (its master's id), ``flags``, ``slots``
        (``(first, last)`` ranges)."""
        for node in self.nodes:
            if not node.running:
                continue
            with contextlib.suppress(redis.RedisError, OSError):
                text = node.call("CLUSTER", "NODES").decode()
                return _parse_nodes(text)
        raise ClusterError("no node of the cluster answers")

    def masters_now(self) -> list[Node]:
        """The nodes serving slots now, as a running node sees it."""
        return [
            self.node(addr)
            for addr, info in self.layout().items()
            if info["role"] == "master" and info["slots"] and "fail" not in info["flags"]
        ]

    def master_of(self, key: str | bytes) -> Node:
        """The node that serves ``key``'s hash slot now."""
        return self.master_of_slot(key_slot(key.encode() if isinstance(key, str) else key))

    def master_of_slot(self, slot: int) -> Node:
        """The node that serves ``slot`` now (as a running node sees it)."""
        for addr, info in self.layout().items():
            failed = "fail" in info["flags"]
            if not failed and any(a <= slot <= b for a, b in info["slots"]):
                return self.node(addr)
        raise ClusterError(f"no live node serves slot {slot}")

    def replicas_of(self, master: Node) -> list[Node]:
        """The nodes replicating ``master``."""
        return [
            self.node(addr)
            for addr, info in self.layout().items()
            if info["master"] == master.node_id
        ]

    # -- failures ---------------------------------------------------------------------------

    def kill(self, node: Node) -> None:
        """SIGKILL ``node`` (a crash: nothing flushed, nothing said to the others)."""
        if node.proc is not None and node.running:
            os.kill(node.proc.pid, signal.SIGKILL)
            node.proc.wait(timeout=10)

    def pause(self, node: Node) -> None:
        """SIGSTOP ``node`` (it answers nothing, its sockets stay open)."""
        if node.proc is not None and node.running:
            os.kill(node.proc.pid, signal.SIGSTOP)

    def resume(self, node: Node) -> None:
        """SIGCONT a paused ``node``."""
        if node.proc is not None and node.running:
            os.kill(node.proc.pid, signal.SIGCONT)

    def cut_replication(self, master: Node) -> None:
        """Close ``master``'s links to its replicas (``CLIENT KILL TYPE replica``): until a
        replica connects again (its next replication cron, within a second, unless paused),
        what the master acknowledges is on the master only."""
        master.call("CLIENT", "KILL", "TYPE", "replica")

    def wait_replicated(self, master: Node, timeout_s: float = 10.0) -> None:
        """Wait until every replica of ``master`` has acknowledged its replication offset."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            client = master.client()
            try:
                info: Any = client.info("replication")
            finally:
                client.close()
            offset = info["master_repl_offset"]
            links = [v for k, v in info.items() if k.startswith("slave") and k[5:].isdigit()]
            if links and all(int(link["offset"]) >= offset for link in links):
                return
            time.sleep(0.02)
        raise ClusterError(f"the replicas of {master.address} did not catch up in {timeout_s} s")

    def wait_failover(self, dead: Node, slot: int, timeout_s: float = 30.0) -> Node:
        """Wait until another node serves ``slot`` (that ``dead`` served) and every running
        node says ``cluster_state:ok``; return the new master."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(ClusterError, redis.RedisError, OSError, StopIteration):
                master = self.master_of_slot(slot)
                if master.port != dead.port and self._all_ok():
                    return master
            time.sleep(0.05)
        raise ClusterError(f"no replica of {dead.address} took slot {slot} in {timeout_s} s")

    def restart(self, node: Node, timeout_s: float = 30.0, *, wait: bool = True) -> None:
        """Start a killed node again (same port and ``nodes.conf``: it rejoins as a replica of
        the master that replaced it); with ``wait``, wait until the cluster is whole and
        ``ok``."""
        self._launch(node)
        _wait_ping(node, 10.0)
        if wait:
            self.wait_ok(timeout_s)

    # -- resharding -------------------------------------------------------------------------

    def start_migration(self, slot: int, target: Node) -> Node:
        """Mark ``slot`` as migrating from its master to ``target`` (``CLUSTER SETSLOT ...
        IMPORTING`` / ``MIGRATING``); return the source. Its keys stay where they are until
        :meth:`move_keys`; the source answers ``ASK`` for a key it no longer has."""
        source = self.master_of_slot(slot)
        target.call("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
        source.call("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id)
        return source

    def move_keys(self, slot: int, source: Node, target: Node) -> int:
        """``MIGRATE`` every key of ``slot`` from ``source`` to ``target``; return how many."""
        keys = source.call("CLUSTER", "GETKEYSINSLOT", slot, 100_000)
        if keys:
            source.call("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
        return len(keys)

    def finish_migration(self, slot: int, target: Node) -> None:
        """Give ``slot`` to ``target`` on every master (``CLUSTER SETSLOT ... NODE``), then
        wait until every node agrees."""
        target.call("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
        for node in self.masters_now():
            if node.port != target.port:
                node.call("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            views = []
            for node in self.nodes:
                if node.running:
                    view = _parse_nodes(node.call("CLUSTER", "NODES").decode())
                    views.append(view[target.address]["slots"])
            if all(any(a <= slot <= b for a, b in v) for v in views):
                return
            time.sleep(0.05)
        raise ClusterError(f"the nodes do not agree that {target.address} serves slot {slot}")

    def migrate(self, slot: int, target: Node) -> Node:
        """Move ``slot`` and its keys to ``target`` at once; return the former master."""
        source = self.start_migration(slot, target)
        self.move_keys(slot, source, target)
        self.finish_migration(slot, target)
        return source

    # -- state ------------------------------------------------------------------------------

    def wait_ok(self, timeout_s: float = 30.0) -> None:
        """Wait until every running node says ``cluster_state:ok``, knows every node as
        connected and not failed, and every replica's link to its master is up."""
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            try:
                if self._all_ok() and self._whole():
                    return
            except (redis.RedisError, OSError) as exc:
                last = str(exc)
            time.sleep(0.05)
        raise ClusterError(f"the cluster is not ok after {timeout_s} s {last}".strip())

    def _all_ok(self) -> bool:
        for node in self.nodes:
            if node.running:
                info = node.call("CLUSTER", "INFO").decode()
                if "cluster_state:ok" not in info:
                    return False
        return True

    def _whole(self) -> bool:
        """Every node connected and seen by every other, each replica synced."""
        expected = len(self.nodes)
        masters = 0
        for node in self.nodes:
            if not node.running:
                return False
            view = _parse_nodes(node.call("CLUSTER", "NODES").decode())
            if len(view) != expected or any(
                "fail" in i["flags"] or not i["connected"] for i in view.values()
            ):
                return False
            client = node.client()
            try:
                repl: Any = client.info("replication")
            finally:
                client.close()
            if repl["role"] == "slave" and repl.get("master_link_status") != "up":
                return False
            masters += repl["role"] == "master"
        return masters == self.masters

    def flushall(self) -> None:
        """Empty every master (replicas follow)."""
        for node in self.masters_now():
            node.call("FLUSHALL")

    def keys_on(self, node: Node, pattern: str = "*") -> list[bytes]:
        """The keys ``node`` holds."""
        client = node.client()
        try:
            return list(client.scan_iter(pattern))
        finally:
            client.close()


def _parse_nodes(text: str) -> dict[str, dict[str, Any]]:
    """``CLUSTER NODES`` lines by address (``host:port``, without the bus port).

    Examples
    --------
    >>> line = "ab 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460 5462"
    >>> info = _parse_nodes(line)["127.0.0.1:7000"]
    >>> info["role"], info["slots"], info["connected"]
    ('master', [(0, 5460), (5462, 5462)], True)
    """
    out: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        node_id, addr, flags, master = parts[0], parts[1], parts[2].split(","), parts[3]
        slots: list[tuple[int, int]] = []
        for item in parts[8:]:
            if item.startswith("["):
                continue  # a slot being imported or migrated
            first, _, last = item.partition("-")
            slots.append((int(first), int(last or first)))
        role = "master" if "master" in flags else "slave"
        out[addr.partition("@")[0]] = {
            "id": node_id,
            "flags": flags,
            "role": role,
            "master": master if master != "-" else "",
            "connected": parts[7] == "connected",
            "slots": slots,
        }
    return out


def _redis_cli(server: Path) -> str:
    """The ``redis-cli`` beside ``server``, else on ``PATH``."""
    beside = server.with_name("redis-cli")
    if beside.exists():
        return str(beside)
    found = shutil.which("redis-cli")
    if found is None:
        raise ClusterError("no redis-cli beside redis-server nor on PATH (make system-deps)")
    return found


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(n: int) -> list[int]:
    """``n`` distinct ports, each with its bus port (+ :data:`BUS_OFFSET`) free a moment ago."""
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < n:
        port = rng.randrange(*PORTS)
        if port in ports or port + BUS_OFFSET in ports or port - BUS_OFFSET in ports:
            continue
        if _port_free(port) and _port_free(port + BUS_OFFSET):
            ports.append(port)
    return ports


def _wait_ping(node: Node, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not node.running:
            log = node.directory / "redis.log"
            text = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
            raise ClusterError(f"redis-server on port {node.port} exited:\n{text}")
        with contextlib.suppress(redis.RedisError, OSError):
            if node.call("PING", timeout_s=0.5):
                return
        time.sleep(0.02)
    raise ClusterError(f"redis-server on port {node.port} did not answer PING in {timeout_s} s")
