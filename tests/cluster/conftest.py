"""A real 3-master, 3-replica Redis Cluster on loopback ports (:mod:`localcluster`).

Fixtures:

``redis_cluster_session`` (session)
    The :class:`~localcluster.LocalCluster`, started once (a few seconds), stopped at the end.
``redis_cluster`` (function)
    The same cluster, whole again (a node a previous test killed is restarted, the cluster
    ``ok`` on every node) and emptied (``FLUSHALL`` on every master).
``cluster_url`` (function)
    ``redis_cluster``'s URL (one node: the others are found from it).
``cluster_client`` (function)
    A sync :class:`redis.cluster.RedisCluster` (bytes replies) on ``redis_cluster``, made by
    tickcast's ``probe``; closed after the test.
``procs`` (function)
    A list for the test to put the processes it starts in: those still running at its end are
    killed.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
import redis.cluster

from tickcast.service.bus.connection import probe
from tickcast.service.ops.config import Settings

from localcluster import LocalCluster
from support import reaping


@pytest.fixture(scope="session")
def redis_cluster_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A 3 + 3 Redis Cluster for the whole session."""
    cluster = LocalCluster(tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def redis_cluster(redis_cluster_session: LocalCluster) -> LocalCluster:
    """The session cluster, whole and emptied."""
    cluster = redis_cluster_session
    for node in cluster.nodes:
        if not node.running:
            cluster.restart(node, wait=False)
    cluster.wait_ok()
    cluster.flushall()
    return cluster


@pytest.fixture
def cluster_url(redis_cluster: LocalCluster) -> str:
    """The cluster's URL."""
    return redis_cluster.url


@pytest.fixture
def cluster_client(cluster_url: str) -> Iterator[redis.cluster.RedisCluster]:
    """A sync cluster client (bytes replies) on the emptied cluster."""
    client = probe(cluster_url, Settings(), 10.0)
    assert isinstance(client, redis.cluster.RedisCluster)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """The test's processes, killed at its end if still running."""
    with reaping() as started:
        yield started
