"""A real 3-master, 3-replica Redis Cluster on loopback ports (:mod:`localcluster`).

Fixtures:

``redis_cluster_session`` (session)
    The :class:`~localcluster.LocalCluster`, started once (a few seconds), stopped at the end.
``redis_cluster`` (function)
    The same cluster, whole again (a node a previous test killed is restarted, the cluster
    ``ok`` on every node) and emptied (``FLUSHALL`` on every master).
``cluster_url`` (function)
    ``redis_cluster``'s URL (one node: the others are found from it).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localcluster import LocalCluster


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
