"""Continuations on real worker processes: forks and joins under optimistic locking,
and exclusive follow-ups run in the same slot (SPEC §3, §6)."""

from __future__ import annotations

from collections import Counter, defaultdict
from itertools import pairwise

import pytest

from tests.harness import Cluster

pytestmark = pytest.mark.slow

INSTANCES = 1000
BRANCHES = 10


def run_forks(cluster: Cluster, *, exclusive: bool) -> None:
    app = cluster.app
    for _ in range(2):
        cluster.start_node(processes=2, concurrency=4, lock_ms=5000)
    cluster.wait_for_workers(4)
    pis = app.start_process_instances([{"n": i} for i in range(INSTANCES)])
    app.enqueue_many(
        [
            {
                "type": "order",
                "process_instance_id": pi,
                "payload": {"branches": BRANCHES, "exclusive": exclusive},
            }
            for pi in pis
        ]
    )
    cluster.wait_for(
        lambda: len(cluster.records("join")) >= INSTANCES and app.management.counts()["total"] == 0,
        f"{INSTANCES} joins",
        timeout=180,
    )
    joins = cluster.records("join")
    assert Counter(r["pi"] for r in joins) == Counter(dict.fromkeys(pis, 1)), "one join each"
    for record in joins:
        variables = record["payload"]
        assert {f"b{i}" for i in range(BRANCHES)} <= set(variables), "a branch write was lost"
    for node in cluster.nodes:
        assert cluster.stop_node(node) == 0
    assert cluster.app.client.hlen(app.store.keys.joins) == 0
    assert cluster.app.client.hlen(app.store.keys.branches) == 0


def test_join_exactly_once_under_load_with_conflicts(cluster: Cluster) -> None:
    run_forks(cluster, exclusive=False)
    conflicts = cluster.stats("job-commit-conflict")
    assert conflicts > 0, "non-exclusive branches of one instance never collided"
    # every conflicting execution ran again, and each branch committed exactly once
    assert cluster.stats("job-successful") == INSTANCES * (BRANCHES + 2)
    assert cluster.stats("job-failed") == 0


def test_exclusive_branches_never_conflict_nor_overlap(cluster: Cluster) -> None:
    run_forks(cluster, exclusive=True)
    assert cluster.stats("job-commit-conflict") == 0
    runs: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for record in cluster.records("end"):
        runs[record["pi"]].append((record["started"], record["time"]))
    for pi, spans in runs.items():
        spans.sort()
        for (_, end), (start, _) in pairwise(spans):
            assert start >= end, f"branches of {pi} overlapped"


def test_exclusive_follow_up_runs_next_in_the_same_slot(cluster: Cluster) -> None:
    app = cluster.app
    cluster.start_node(processes=1, concurrency=4)
    cluster.wait_for_workers(1)
    pis = app.start_process_instances([{} for _ in range(20)])
    app.enqueue_many(
        [{"type": "first", "process_instance_id": pi, "payload": i} for i, pi in enumerate(pis)]
    )
    cluster.wait_for(lambda: len(cluster.records("end")) == 40, "every first and second job")
    by_pi: dict[str, list[dict[str, object]]] = defaultdict(list)
    for record in cluster.records("end"):
        by_pi[str(record["pi"])].append(record)
    for pi, records in by_pi.items():
        first, second = sorted(records, key=lambda r: float(r["time"]))  # type: ignore[arg-type]
        assert (first["type"], second["type"]) == ("first", "second"), pi
        assert first["thread"] == second["thread"], "the follow-up ran in another slot"
    assert cluster.stop_node(cluster.nodes[0]) == 0
    assert cluster.stats("job-locked-exclusive") == 20
    assert cluster.stats("job-acquired-success") == 20  # the follow-ups never were acquired
