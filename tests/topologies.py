"""Fixtures that start real local Redis topologies (rexec/topology.py): a Redis Cluster
of 3 masters with a replica each, and a master with a replica watched by 3 Sentinels.

Each is started once per test session (they take a few seconds) and stopped at its end;
tests use their own namespaces. Timeouts are short (cluster-node-timeout 1000 ms,
down-after-milliseconds 500, failover-timeout 2000) so a failover takes 1-3 s. A
topology that cannot be started fails the test; it never skips. A test that kills a
master asks for the function-scoped ``fresh_cluster`` / ``fresh_sentinel``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rexec.redis_server import RedisServerError
from rexec.topology import ClusterTopology, SentinelTopology


def _start_cluster() -> ClusterTopology:
    try:
        return ClusterTopology(masters=3, replicas=1, node_timeout_ms=1000).start()
    except RedisServerError as exc:
        pytest.fail(f"cannot start a Redis Cluster for the tests: {exc}")


def _start_sentinel() -> SentinelTopology:
    try:
        return SentinelTopology(
            replicas=1, sentinels=3, down_after_ms=500, failover_timeout_ms=2000
        ).start()
    except RedisServerError as exc:
        pytest.fail(f"cannot start a Sentinel group for the tests: {exc}")


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[ClusterTopology]:
    topology = _start_cluster()
    try:
        yield topology
    finally:
        topology.stop()


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[SentinelTopology]:
    topology = _start_sentinel()
    try:
        yield topology
    finally:
        topology.stop()


@pytest.fixture
def fresh_cluster() -> Iterator[ClusterTopology]:
    topology = _start_cluster()
    try:
        yield topology
    finally:
        topology.stop()


@pytest.fixture
def fresh_sentinel() -> Iterator[SentinelTopology]:
    topology = _start_sentinel()
    try:
        yield topology
    finally:
        topology.stop()
