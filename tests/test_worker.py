"""Real worker processes on a real Redis: the executor's behaviour end to end.

Every test starts one or more nodes (``rexec.node.run_node`` in a subprocess of its
own session, so real signals can be sent and the whole process tree killed at the
end) running ``tests.apps.recording:app`` against the session's private redis-server,
in a namespace of its own. The handlers log what they do to a Redis list (see
tests/apps/recording.py); the tests read that log and the store.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
from collections import Counter

import pytest

from rexec import JobState
from tests.harness import Cluster

pytestmark = pytest.mark.slow


# -- 1. throughput and exactly-once commit ------------------------------------------------


def test_two_nodes_drain_all_jobs_each_committed_once(cluster: Cluster) -> None:
    n = 3000
    nodes = [cluster.start_node(processes=2, concurrency=4) for _ in range(2)]
    cluster.wait_for_workers(4)
    ids = cluster.app.enqueue_many([{"type": "work", "payload": i} for i in range(n)])
    assert len(set(ids)) == n

    cluster.wait_for(
        lambda: cluster.app.management.counts()["total"] == 0, f"all {n} jobs to be committed"
    )
    for node in nodes:
        assert cluster.stop_node(node) == 0, cluster.node_logs()

    ends = cluster.records("end")
    executions = Counter(r["id"] for r in ends)
    assert set(executions) == set(ids)
    assert [i for i, k in executions.items() if k != 1] == [], "jobs executed more than once"
    assert len(cluster.records("start")) == n
    assert sorted(r["payload"] for r in ends) == list(range(n))
    assert len({r["pid"] for r in ends}) >= 2, "one worker process did all the work"
    # Workers flush their metrics when they stop: the cluster sums are final.
    assert cluster.stats("job-successful") == n
    assert cluster.stats("job-failed") == 0
    assert cluster.stats("job-commit-refused") == 0
    assert cluster.stats("job-acquired-success") == n


# -- 2. priority order ---------------------------------------------------------------------


def test_one_slot_runs_jobs_in_priority_then_fifo_order(cluster: Cluster) -> None:
    priorities = [0, 5, -3, 5, 100, 0, -3, 7, 100, 0, 5, -10, 7, 0, 42, -10, 5, 100, 0, 1]
    ids = cluster.app.enqueue_many(
        [{"type": "work", "payload": p, "priority": p, "exclusive": False} for p in priorities]
    )
    expected = [
        job_id
        for job_id, _ in sorted(zip(ids, priorities, strict=True), key=lambda t: (-t[1], int(t[0])))
    ]
    cluster.start_node(processes=1, concurrency=1, queue_size=0)
    cluster.wait_for(lambda: len(cluster.records("end")) == len(ids), "every job to run")

    started = [r["id"] for r in cluster.records("start")]
    assert started == expected
    assert [r["payload"] for r in cluster.records("start")] == sorted(priorities, reverse=True)


# -- 3. exclusive jobs ---------------------------------------------------------------------


def test_exclusive_jobs_of_an_instance_never_overlap_but_instances_run_in_parallel(
    cluster: Cluster,
) -> None:
    instances = [cluster.app.start_process_instance({"n": i}) for i in range(4)]
    cluster.start_node(processes=2, concurrency=4)
    cluster.wait_for_workers(2)
    ids: dict[str, list[str]] = {pi: [] for pi in instances}
    # Rounds of one job per instance, some while earlier ones run: later jobs of an
    # instance must wait for its lock, whichever worker process acquires them.
    for round_ in range(5):
        for pi in instances:
            job_id = cluster.app.enqueue(
                "work", {"sleep": 0.02}, process_instance_id=pi, exclusive=True
            )
            ids[pi].append(job_id)
        if round_ == 1:
            cluster.wait_for(lambda: cluster.records("start"), "the first job to start")
    cluster.wait_for(lambda: len(cluster.records("end")) == 20, "all 20 jobs to end")

    ends = cluster.records("end")
    assert Counter(r["id"] for r in ends) == Counter(i for pi in instances for i in ids[pi])
    for pi in instances:
        runs = sorted((r for r in ends if r["pi"] == pi), key=lambda r: r["started"])
        assert [r["id"] for r in runs] == ids[pi], "an instance's jobs ran out of order"
        for before, after in itertools.pairwise(runs):
            assert after["started"] >= before["time"], (
                f"exclusive jobs {before['id']} and {after['id']} of {pi} overlapped"
            )
    overlaps = [
        (a["id"], b["id"])
        for a in ends
        for b in ends
        if a["pi"] != b["pi"] and a["started"] < b["time"] and b["started"] < a["time"]
    ]
    assert overlaps, "jobs of different process instances never ran in parallel"


# -- 4. crash recovery ---------------------------------------------------------------------


def test_killed_worker_job_runs_again_and_commits_once_and_worker_restarts(
    cluster: Cluster,
) -> None:
    node = cluster.start_node(processes=2, concurrency=2)
    original = cluster.wait_for_workers(2)
    job_id = cluster.app.enqueue("block", "crash me")
    first = cluster.wait_for(lambda: cluster.records("start"), "the job to start")[0]
    victim = first["pid"]
    assert victim in original

    os.kill(victim, signal.SIGKILL)
    cluster.wait_for(lambda: cluster.records("end"), "the job to run again and end")
    cluster.wait_for(
        lambda: cluster.app.management.get_job(job_id) is None, "the job to be committed"
    )
    cluster.wait_for(
        lambda: cluster.live_pids() - original, "the supervisor to restart the killed worker"
    )
    assert cluster.stop_node(node) == 0, cluster.node_logs()

    starts = cluster.records("start")
    ends = cluster.records("end")
    assert [r["id"] for r in starts] == [job_id, job_id]
    assert [r["id"] for r in ends] == [job_id]
    assert ends[0]["pid"] != victim
    assert cluster.app.management.counts()["total"] == 0
    assert cluster.stats("lock-expired") >= 1
    assert cluster.stats("job-successful") == 1
    assert cluster.stats("job-commit-refused") == 0


# -- 5. graceful shutdown ------------------------------------------------------------------


def test_sigterm_finishes_running_jobs_and_releases_the_rest(cluster: Cluster) -> None:
    shutdown_timeout_s = 5.0
    ids = cluster.app.enqueue_many(
        [{"type": "work", "payload": {"sleep": 0.8}, "exclusive": False} for _ in range(10)]
    )
    node = cluster.start_node(processes=1, concurrency=2, shutdown_timeout_s=shutdown_timeout_s)
    cluster.wait_for(lambda: len(cluster.records("start")) >= 2, "both slots to start a job")
    # The worker holds all 10: 2 running, 2 queued for its slots, 6 rejected (kept locked).
    assert cluster.app.management.counts()["locked"] == 10

    signalled = time.time()
    node.send_signal(signal.SIGTERM)
    try:
        code = node.wait(shutdown_timeout_s)
    except subprocess.TimeoutExpired:
        pytest.fail(f"node still running {shutdown_timeout_s} s after SIGTERM")
    assert code == 0, cluster.node_logs()

    started = [r["id"] for r in cluster.records("start")]
    ends = cluster.records("end")
    assert len(started) == 2, "jobs started after the stop signal"
    assert sorted(r["id"] for r in ends) == sorted(started), "a running job did not finish"
    assert all(r["time"] >= signalled for r in ends)
    management = cluster.app.management
    for job_id in started:
        assert management.get_job(job_id) is None, "a finished job was not committed"
    rest = cluster.app.store.get_jobs([i for i in ids if i not in started])
    assert len(rest) == 8
    for job in rest:
        assert job.state is JobState.READY, job
        assert job.lock_owner is None and job.lock_expires_ms is None, job
    counts = management.counts()
    assert (counts["ready"], counts["locked"], counts["total"]) == (8, 0, 8)


# -- 6. wake-up of an idle worker ----------------------------------------------------------


def test_idle_worker_is_woken_by_a_new_job(cluster: Cluster) -> None:
    # Long idle waits make the test decisive: 3 s after its first empty cycle and then
    # 6 s (the max). Without the wake-up the job would wait several seconds.
    strategy = {"base_idle_wait_ms": 3000, "idle_increase_factor": 2.0, "max_idle_wait_ms": 6000}
    cluster.start_node(processes=1, concurrency=1, strategy=strategy)
    cluster.wait_for_workers(1)
    time.sleep(3.5)  # deliberately idle: now inside the 6 s (max) idle wait

    before = time.time()
    cluster.app.enqueue("work", "wake up")
    start = cluster.wait_for(lambda: cluster.records("start"), "the job to start")[0]
    latency = start["time"] - before
    assert latency < 1.0, f"an idle worker took {latency:.2f} s to pick up a new job"


# -- 7. failures ---------------------------------------------------------------------------


def test_failing_job_becomes_an_incident_and_a_type_without_handler_is_left_alone(
    cluster: Cluster,
) -> None:
    # Deployment awareness (issue 10): a worker no longer acquires, and turns into an
    # incident, a job of a type its app has no handler for; the job waits for its app.
    boom = cluster.app.enqueue("boom", "fails", exclusive=False)
    orphan = cluster.app.enqueue("nohandler", "nobody home", exclusive=False)
    node = cluster.start_node(processes=1, concurrency=2)
    management = cluster.app.management

    def incident() -> bool:
        job = management.get_job(boom)
        return job is not None and job.state is JobState.INCIDENT

    cluster.wait_for(incident, "the failing job to become an incident")
    assert cluster.stop_node(node) == 0, cluster.node_logs()

    failed = management.get_job(boom)
    assert failed is not None
    assert failed.retries == 0
    assert failed.lock_owner is None
    assert failed.exception is not None
    assert f"ValueError: boom from job {boom}" in failed.exception
    assert "Traceback" in failed.exception
    # Default retry cycle: 3 executions in total, then the incident.
    assert [r["id"] for r in cluster.records("start")] == [boom] * 3

    unknown = management.get_job(orphan)
    assert unknown is not None
    assert (unknown.state, unknown.retries, unknown.exception) == (JobState.READY, 3, None)

    counts = management.counts()
    assert (counts["incident"], counts["ready"], counts["total"]) == (1, 1, 2)
    assert cluster.stats("job-failed") == 3
    assert cluster.stats("job-successful") == 0


def test_two_apps_with_disjoint_types_share_a_namespace(cluster: Cluster) -> None:
    """Real worker processes of two apps: each runs only its own types, with zero
    incidents, and each deploys its definitions at start, so a producer without
    handlers gets the other app's priority and retry cycle."""
    from rexec import App

    producer = App(cluster.redis_url, namespace=cluster.namespace)
    mine = producer.enqueue_many([{"type": "work", "payload": {"i": i}} for i in range(5)])
    theirs = producer.enqueue_many([{"type": "other", "payload": i} for i in range(5)])
    node = cluster.start_node(processes=2, concurrency=2)
    cluster.wait_for(
        lambda: {r["id"] for r in cluster.records("end")} >= set(mine), "the work jobs to run"
    )
    time.sleep(1.0)  # time enough for a worker that took every type to take them
    counts = producer.management.counts()
    assert (counts["incident"], counts["ready"]) == (0, 5)
    assert {j.id for j in producer.management.jobs(state="ready")} == set(theirs)

    other = cluster.start_node(processes=1, concurrency=2, app_path="tests.apps.other:app")
    cluster.wait_for(
        lambda: producer.management.counts()["total"] == 0, "the other app to run its jobs"
    )
    assert {r["id"] for r in cluster.records("start") if r["type"] == "other"} == set(theirs)
    # The other app deployed at start: a handler-less producer gets its definition.
    slow = producer.enqueue("other_slow")
    job = producer.management.get_job(slow)
    assert job is not None and job.priority == 7  # (it may be running already)
    cluster.wait_for(
        lambda: (
            (j := producer.management.get_job(slow)) is not None and j.state is JobState.INCIDENT
        ),
        "other_slow to fail twice into an incident",
    )
    assert [r["id"] for r in cluster.records("start") if r["type"] == "other_slow"] == [slow] * 2
    assert cluster.stop_node(other) == 0, cluster.node_logs()
    assert cluster.stop_node(node) == 0, cluster.node_logs()
    assert producer.management.counts()["incident"] == 1
    infos = {i.type: i for i in producer.management.job_definitions()}
    assert infos["other"].app == "tests.apps.other:app"
    assert infos["work"].app == "tests.apps.recording:app"
    producer.close()


# -- 8. async handlers ---------------------------------------------------------------------


def test_async_handler_runs_and_completes(cluster: Cluster) -> None:
    ids = cluster.app.enqueue_many(
        [{"type": "async_work", "payload": {"sleep": 0.2}, "exclusive": False} for _ in range(3)]
    )
    node = cluster.start_node(processes=1, concurrency=1)
    cluster.wait_for(
        lambda: cluster.app.management.counts()["total"] == 0, "the async jobs to be committed"
    )
    assert cluster.stop_node(node) == 0, cluster.node_logs()

    ends = cluster.records("end")
    assert sorted(r["id"] for r in ends) == sorted(ids)
    for r in ends:
        assert r["thread"] == "rexec-event-loop"
        assert r["time"] - r["started"] >= 0.19, "the coroutine was not awaited to the end"
    assert cluster.stats("job-successful") == 3
    assert cluster.stats("job-failed") == 0


# -- 9. lock renewal -----------------------------------------------------------------------


def test_job_longer_than_its_lock_time_keeps_its_lock(cluster: Cluster) -> None:
    # Both processes poll at least every 200 ms, so an expired lock would be taken over.
    node = cluster.start_node(
        processes=2, concurrency=2, lock_ms=1000, strategy={"max_idle_wait_ms": 200}
    )
    cluster.wait_for_workers(2)
    job_id = cluster.app.enqueue("work", {"sleep": 2.5}, exclusive=False)
    # Without renewal the job would be taken over and run again (and again): stop
    # waiting at the second start too, so the assertions below say what went wrong.
    cluster.wait_for(
        lambda: cluster.app.management.get_job(job_id) is None or len(cluster.records("start")) > 1,
        "the long job to be committed",
    )
    assert cluster.stop_node(node) == 0, cluster.node_logs()

    assert [r["id"] for r in cluster.records("start")] == [job_id]
    ends = cluster.records("end")
    assert [r["id"] for r in ends] == [job_id]
    assert ends[0]["time"] - ends[0]["started"] >= 2.5
    assert cluster.stats("lock-expired") == 0
    assert cluster.stats("job-successful") == 1
    assert cluster.stats("job-commit-refused") == 0


# -- 10. timeouts ----------------------------------------------------------------------------


def test_a_hanging_handler_times_out_and_frees_its_slot(cluster: Cluster) -> None:
    app = cluster.app
    cluster.start_node(processes=1, concurrency=1, queue_size=0)
    cluster.wait_for_workers(1)
    hung = app.enqueue("hang", 3.0, priority=10)
    after = app.enqueue("work", "after", exclusive=False)
    # the only slot is freed at the timeout, long before the handler would return
    cluster.wait_for(lambda: any(r["id"] == after for r in cluster.records("end")), "the next job")
    ends = {r["id"]: r["time"] for r in cluster.records("end")}
    starts = {r["id"]: r["time"] for r in cluster.records("start") if r["id"] == hung}
    assert ends[after] - starts[hung] < 2.5
    cluster.wait_for(
        lambda: (
            (job := app.management.get_job(hung)) is not None and job.state is JobState.INCIDENT
        ),
        "the hanging job to become an incident after its second timeout",
    )
    job = app.management.get_job(hung)
    assert job is not None and "JobTimeoutError" in (job.exception or "")
    assert "300 ms" in (job.exception or "")


# -- 11. a node's own Prometheus endpoint ---------------------------------------------------


def test_worker_metrics_port_serves_the_nodes_counters(cluster: Cluster) -> None:
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cluster.start_node(processes=1, concurrency=2, metrics_port=port, metrics_interval_s=0.2)
    cluster.wait_for_workers(1)
    cluster.app.enqueue_many([{"type": "work", "payload": i, "exclusive": False} for i in range(5)])

    def scrape() -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
                return str(reply.read().decode())
        except OSError:
            return ""

    def successful() -> str | None:
        # The sample line itself: " 5.0" alone also matches other gauges (5 ready jobs).
        lines = scrape().splitlines()
        found = [x for x in lines if x.startswith("rexec_job_successful_total{")]
        return found[0] if found and found[0].endswith(" 5.0") else None

    line = cluster.wait_for(successful, "the node's /metrics to count 5 successful jobs")
    assert f'namespace="{cluster.namespace}"' in line and line.endswith(" 5.0")


# -- 12. a worker dead at the stop signal does not make the stop unclean ----------------------


def test_sigterm_while_a_worker_awaits_its_restart_exits_zero(cluster: Cluster) -> None:
    node = cluster.start_node(processes=2, concurrency=1)
    pids = cluster.wait_for_workers(2)
    os.kill(min(pids), signal.SIGKILL)
    time.sleep(0.05)  # dead, its restart pending (the first restart waits 0.1 s)
    assert cluster.stop_node(node) == 0, cluster.node_logs()
