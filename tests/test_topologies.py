"""Real worker nodes on a Redis Cluster and on a Sentinel group (tests/topologies.py):
exactly-once commits, exclusivity within instances, a clean ``rexec check``, a master
failover under load with nothing acknowledged lost (durability="replicated"), and the
one-line errors of URLs that lead nowhere.

The handlers' records go to the session's plain redis-server, so killing a master of
the topology under test never loses the evidence.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from rexec.check import check
from rexec.errors import ReplicationTimeoutError
from rexec.redis_server import RedisServer
from rexec.topology import ClusterTopology, SentinelTopology, Topology, free_cluster_port
from tests.harness import REPO_ROOT, Cluster

TOPOLOGIES = ["cluster", "sentinel"]


def _topology(request: pytest.FixtureRequest, kind: str, fresh: bool = False) -> Topology:
    name = ("fresh_" if fresh else "redis_") + kind
    topology: Topology = request.getfixturevalue(name)
    return topology


def _nodes(topology: Topology, namespace: str, tmp_path: Path, log_server: RedisServer) -> Cluster:
    return Cluster(topology.url, namespace, tmp_path, log_url=log_server.url)


def _enqueue_mix(nodes: Cluster, plain: int, instances: int, per_instance: int) -> list[str]:
    app = nodes.app
    ids = app.enqueue_many(
        [{"type": "work", "payload": {"sleep": 0.002}, "exclusive": False}] * plain
    )
    for _ in range(instances):
        pi = app.start_process_instance({})
        ids += app.enqueue_many(
            [{"type": "work", "payload": {"sleep": 0.005}, "process_instance_id": pi}]
            * per_instance
        )
    return ids


def _assert_exclusive(records: list[dict[str, Any]]) -> None:
    by_pi: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in records:
        if r["pi"] is not None:
            by_pi[r["pi"]].append((r["started"], r["time"]))
    for pi, spans in by_pi.items():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end, f"jobs of instance {pi} overlapped"


@pytest.mark.parametrize("kind", TOPOLOGIES)
def test_workers_commit_each_job_once_and_check_is_clean(
    request: pytest.FixtureRequest,
    kind: str,
    namespace: str,
    tmp_path: Path,
    redis_server: RedisServer,
) -> None:
    topology = _topology(request, kind)
    nodes = _nodes(topology, namespace, tmp_path, redis_server)
    try:
        ids = _enqueue_mix(nodes, plain=60, instances=3, per_instance=10)
        nodes.start_node(processes=2, concurrency=4)
        nodes.wait_for(
            lambda: {r["id"] for r in nodes.records("end")} >= set(ids), "every job to end"
        )
        nodes.wait_for(lambda: nodes.app.management.counts()["total"] == 0, "an empty store")
        ends = Counter(r["id"] for r in nodes.records("end"))
        assert set(ends) == set(ids)
        assert max(ends.values()) == 1, "a job ran to its end twice without a failover"
        _assert_exclusive(nodes.records("end"))
        assert check(nodes.app.store) == []
        nodes.wait_for(
            lambda: nodes.stats("job-successful") == len(ids), "the metrics to count every job"
        )
    finally:
        nodes.close()


def _produce(nodes: Cluster, stop: threading.Event, acked: list[str], refused: list[str]) -> None:
    """Enqueues small batches until stopped; keeps the ids of acknowledged ones."""
    while not stop.is_set():
        try:
            acked += nodes.app.enqueue_many(
                [{"type": "work", "payload": {"sleep": 0.002}, "exclusive": False}] * 5
            )
        except ReplicationTimeoutError as exc:
            refused.append(f"not confirmed: {exc}")
        except Exception as exc:
            refused.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.05)
        time.sleep(0.01)


def _kill_master(topology: Topology, namespace: str) -> tuple[RedisServer, RedisServer]:
    """SIGKILLs the master holding ``namespace``; returns it and its successor once the
    topology has failed over."""
    if isinstance(topology, ClusterTopology):
        key = f"rexec:{{{namespace}}}:jobs"
        old = topology.master_of(key)
        old.kill()
        return old, topology.wait_failed_over(key, old)
    assert isinstance(topology, SentinelTopology)
    old = topology.master()
    old.kill()
    return old, topology.wait_failed_over(old)


@pytest.mark.parametrize("kind", TOPOLOGIES)
def test_a_master_failover_under_load_loses_no_acknowledged_job(
    request: pytest.FixtureRequest,
    kind: str,
    namespace: str,
    tmp_path: Path,
    redis_server: RedisServer,
) -> None:
    topology = _topology(request, kind, fresh=True)
    nodes = _nodes(topology, namespace, tmp_path, redis_server)
    nodes.app.durability = "replicated"
    try:
        acked = _enqueue_mix(nodes, plain=200, instances=4, per_instance=10)
        node = nodes.start_node(processes=2, concurrency=4, durability="replicated")
        nodes.wait_for(lambda: len(nodes.records("end")) >= 60, "the drain to be under way")
        stop, refused = threading.Event(), []
        producer = threading.Thread(target=_produce, args=(nodes, stop, acked, refused))
        producer.start()
        try:
            old, _new = _kill_master(topology, namespace)
            # The failed machine comes back (as a replica), so writes can be confirmed again.
            old.restart()
            time.sleep(1.0)
        finally:
            stop.set()
            producer.join(30)
        assert not producer.is_alive()
        ended = lambda: {r["id"] for r in nodes.records("end")}  # noqa: E731
        nodes.wait_for(lambda: ended() >= set(acked), "every acknowledged job to end", 60)
        assert node.poll() is None, "the node died in the failover"
        workers = nodes.wait_for(lambda: _live(nodes), "live workers")
        assert all(not w.get("threads_dead") for w in workers), workers
        nodes.wait_for(lambda: nodes.app.management.counts()["total"] == 0, "an empty store", 30)
        assert check(nodes.app.store) == []
    finally:
        nodes.close()


def _live(nodes: Cluster) -> list[dict[str, Any]]:
    from rexec.metrics import live_workers

    return live_workers(nodes.app.store)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REXEC_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run(
        [sys.executable, "-m", "rexec", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_cluster_url_with_no_reachable_node_is_one_line() -> None:
    port = free_cluster_port(set())
    line = _one_line_error(_cli("counts", "--redis-url", f"redis+cluster://127.0.0.1:{port}"))
    assert "no node of the Redis Cluster" in line and str(port) in line


def test_an_unknown_sentinel_service_is_one_line(redis_sentinel: SentinelTopology) -> None:
    url = redis_sentinel.url.rsplit("/", 1)[0] + "/nosuchservice"
    line = _one_line_error(_cli("counts", "--redis-url", url))
    assert "nosuchservice" in line


@pytest.mark.parametrize("kind", TOPOLOGIES)
def test_operator_commands_cockpit_and_metrics_work_on_the_topology(
    request: pytest.FixtureRequest, kind: str, namespace: str
) -> None:
    from click.testing import CliRunner
    from starlette.testclient import TestClient

    from rexec import App
    from rexec.cli import main
    from rexec.cockpit.app import create_app
    from rexec.prometheus import render_metrics

    topology = _topology(request, kind)
    with App(topology.url, namespace=namespace, durability="replicated") as app:
        pi = app.start_process_instance({"a": 1})
        ids = app.enqueue_many([{"type": "t", "payload": i, "priority": i} for i in range(5)])
        app.enqueue("t", {"x": 1}, process_instance_id=pi)
        assert app.end_process_instance(pi) is True
        runner = CliRunner(env={"REXEC_REDIS_URL": topology.url, "REXEC_NAMESPACE": namespace})

        def cli(*args: str) -> str:
            result = runner.invoke(main, list(args))
            assert result.exit_code == 0, result.output
            return result.output

        assert json.loads(cli("counts", "--json"))["ready"] == 6
        cli("priority", "set", ids[0], "99")
        cli("suspend", "job", ids[1])
        cli("retries", ids[2], "5")
        cli("delete", ids[3])
        assert app.store.get_job(ids[0]) is not None
        assert app.store.get_job(ids[0]).priority == 99  # type: ignore[union-attr]
        assert app.store.get_job(ids[3]) is None
        assert "no violations" in cli("check")
        with TestClient(create_app(app)) as api:
            overview = api.get("/api/overview")
            assert overview.status_code == 200, overview.text
            jobs = api.get("/api/jobs", params={"state": "ready"})
            assert jobs.status_code == 200 and jobs.json()["jobs"][0]["id"] == ids[0]
        assert b"rexec_jobs" in render_metrics(app)


def test_a_node_waits_for_a_cluster_that_does_not_answer(
    namespace: str, tmp_path: Path, redis_server: RedisServer
) -> None:
    url = f"redis+cluster://127.0.0.1:{free_cluster_port(set())}"
    nodes = Cluster(url, namespace, tmp_path, log_url=redis_server.url)
    try:
        node = nodes.start_node(processes=1, connect_timeout_s=1.5)
        assert node.wait(60) == 1
        logs = (tmp_path / "node-0.log").read_text()
        assert "waiting for Redis" in logs and "no node of the Redis Cluster" in logs
        # run_node raises it; `rexec worker` prints it as one line.
        assert logs.strip().splitlines()[-1].startswith("rexec.errors.ConfigurationError")
        assert "unreachable for" in logs
    finally:
        nodes.close()
