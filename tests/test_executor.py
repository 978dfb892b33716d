"""The worker runtime under attack: misbehaving handlers, stages that raise, Redis that
answers OOM or READONLY — on real worker processes and a real Redis.

After each attack the accounting invariant must hold: every job completed exactly once,
failed as its retry cycle says, or still present and acquirable; no job locked past
its lock time without a live execution; every worker thread alive. The regression
tests at the end reproduce the issue-15 cases that broke the previous runtime.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from rexec import JobState
from rexec.metrics import live_workers
from rexec.redis_server import RedisServer
from tests.apps.faulty import log_key
from tests.apps.faulty import make_app as make_faulty_app
from tests.harness import REPO_ROOT, Cluster

pytestmark = pytest.mark.slow

FAULTY = "tests.apps.faulty:app"
NODE = {"processes": 1, "concurrency": 2, "lock_ms": 1000, "metrics_interval_s": 0.2}


def faulty_cluster(redis_url: str, namespace: str, tmp_path: Path, **env: str) -> Cluster:
    cluster = Cluster(redis_url, namespace, tmp_path, app_path=FAULTY, env=env)
    cluster.app.close()
    cluster.app = make_faulty_app(redis_url, namespace)
    return cluster


@pytest.fixture
def faulty(redis_url: str, namespace: str, tmp_path: Path) -> Iterator[Cluster]:
    cluster = faulty_cluster(redis_url, namespace, tmp_path)
    try:
        yield cluster
    finally:
        cluster.close()


def records(cluster: Cluster, event: str | None = None) -> list[dict[str, Any]]:
    raw: list[bytes] = cluster.app.client.lrange(log_key(cluster.namespace), 0, -1)  # type: ignore[assignment]
    found = [orjson.loads(item) for item in raw]
    return [r for r in found if event is None or r["event"] == event]


def completions(cluster: Cluster) -> Counter[str]:
    keys = cluster.app.store.keys
    entries = cluster.app.client.xrange(keys.history, "-", "+")
    return Counter(
        fields[b"id"].decode()
        for _, fields in entries  # type: ignore[union-attr]
        if fields[b"outcome"] == b"completed"
    )


def settled(cluster: Cluster, ids: list[str]) -> bool:
    """Every job completed or an incident: nothing left to run."""
    return all(job.state is JobState.INCIDENT for job in cluster.app.store.get_jobs(ids))


def assert_accounting(cluster: Cluster, ids: list[str]) -> dict[str, Any]:
    """The invariant; returns the jobs still present by id."""
    done = completions(cluster)
    present = {job.id: job for job in cluster.app.store.get_jobs(ids)}
    now = cluster.app.store.time_ms()
    for job_id in ids:
        assert done[job_id] <= 1, f"job {job_id} completed {done[job_id]} times"
        job = present.get(job_id)
        if job is None:
            assert done[job_id] == 1, f"job {job_id} vanished without completing"
            continue
        assert done[job_id] == 0, f"job {job_id} completed and is still there: {job}"
        assert job.state is not JobState.LOCKED or (job.lock_expires_ms or 0) > now, job
        if job.state is JobState.INCIDENT:
            assert job.retries == 0 and job.lock_owner is None, job
    workers = live_workers(cluster.app.store)
    assert workers, "no live worker"
    for worker in workers:
        assert worker.get("threads_alive") == worker.get("threads_expected"), worker
    return present


# -- the fault-injection harness ------------------------------------------------------------

MISBEHAVIOURS = {
    "raise": "ValueError: plain failure",
    "surrogate": "ValueError: bad text ?? here",
    "exit": "SystemExit: 3",
    "base": "Boom: a BaseException",
    "keyboard": "KeyboardInterrupt",
    "garbage": "returned a dict that msgpack cannot encode",
    "coroutine": "returned a coroutine",
}
ASYNC_MISBEHAVIOURS = {
    "raise": "ValueError: plain failure",
    "exit": "SystemExit: 3",
    "base": "Boom: a BaseException",
    "garbage": "returned a dict",
}


def workload(cluster: Cluster) -> tuple[list[str], dict[str, str]]:
    """Plain, async and chained jobs that must complete, and misbehaving ones that
    must end as incidents with a clear error (id -> expected text)."""
    app = cluster.app
    ids = app.enqueue_many([{"type": "work", "payload": i} for i in range(20)])
    ids += app.enqueue_many([{"type": "awork", "payload": i} for i in range(10)])
    ids += [app.enqueue("amisbehave", "break-loop")]
    for _ in range(3):
        pi = app.start_process_instance({"n": 0})
        ids.append(app.enqueue("step", 1, process_instance_id=pi))
    bad = {app.enqueue("misbehave", kind): text for kind, text in MISBEHAVIOURS.items()}
    bad |= {app.enqueue("amisbehave", kind): text for kind, text in ASYNC_MISBEHAVIOURS.items()}
    return ids, bad


@pytest.mark.parametrize("stage", ["handler", "effects", "commit", "renewal", "metrics", "wakeup"])
def test_each_stage_raising_in_turn_keeps_the_accounting(
    redis_url: str, namespace: str, tmp_path: Path, stage: str
) -> None:
    env = {} if stage == "handler" else {"REXEC_TEST_FAULT": stage}
    cluster = faulty_cluster(redis_url, namespace, tmp_path, **env)
    try:
        cluster.start_node(**NODE)
        cluster.wait_for_workers(1)
        ids, bad = workload(cluster)
        everything = ids + list(bad)
        # The three chains grow by follow-ups: wait for each to reach its last link.
        cluster.wait_for(
            lambda: (
                settled(cluster, everything)
                and sum(1 for r in records(cluster, "end") if r["payload"] == 3) >= 3
            ),
            f"every job to complete or become an incident ({stage} raising)",
        )
        time.sleep(0.5)  # a flush of the workers' thread census
        present = assert_accounting(cluster, everything)
        assert not set(present) & set(ids), f"jobs that should complete: {present}"
        for job_id, text in bad.items():
            job = present[job_id]
            assert job.state is JobState.INCIDENT and text in (job.exception or ""), job
        chains = [r for r in records(cluster, "end") if r["type"] in ("step", "astep")]
        assert Counter(r["pi"] for r in chains if r["payload"] == 3).total() == 3
        for r in chains:
            expected = "rexec-event-loop" if r["type"] == "astep" else "rexec-slot-"
            assert r["thread"].startswith(expected), r
        assert cluster.app.management.counts()["locked"] == 0
    finally:
        cluster.close()


def test_oom_and_readonly_replies_from_a_real_redis_are_waited_out(
    namespace: str, tmp_path: Path
) -> None:
    server = RedisServer().start()
    cluster = faulty_cluster(server.url, namespace, tmp_path)
    admin = cluster.app.client
    try:
        cluster.start_node(**NODE)
        cluster.wait_for_workers(1)
        ids = cluster.app.enqueue_many(
            [{"type": "work", "payload": {"sleep": 0.01}} for _ in range(150)]
        )
        cluster.wait_for(lambda: len(records(cluster, "end")) >= 10, "the drain to start")
        admin.config_set("maxmemory", 1)  # every write refused: OOM
        time.sleep(1.0)
        admin.config_set("maxmemory", 0)
        cluster.wait_for(lambda: len(records(cluster, "end")) >= 60, "the drain to go on")
        admin.replicaof("127.0.0.1", 1)  # a master that never answers: READONLY
        time.sleep(1.0)
        admin.replicaof("NO", "ONE")
        cluster.wait_for(lambda: settled(cluster, ids), "every job to complete")
        time.sleep(0.5)
        present = assert_accounting(cluster, ids)
        # A handler caught by OOM fails and runs again; only a job whose three
        # executions all hit the outage could be an incident.
        assert len(present) <= 3, present
        logs = (tmp_path / "node-0.log").read_text()
        assert "Redis unreachable" in logs and "Redis reachable again" in logs, logs
    finally:
        admin.config_set("maxmemory", 0)
        admin.replicaof("NO", "ONE")
        cluster.close()
        server.stop()


# -- regressions ------------------------------------------------------------------------------


def test_timed_out_exclusive_job_keeps_its_instance_until_its_handler_returns(
    faulty: Cluster,
) -> None:
    app = faulty.app
    pi = app.start_process_instance()
    hung = app.enqueue("hang", 1.0, process_instance_id=pi)
    after = app.enqueue("work", "after", process_instance_id=pi, exclusive=True)
    faulty.start_node(**NODE)
    faulty.wait_for(lambda: settled(faulty, [hung, after]), "both jobs to complete")
    starts = {(r["id"], i): r for i, r in enumerate(records(faulty, "start"))}
    ends = records(faulty, "end")
    first_hang_end = min(r["time"] for r in ends if r["id"] == hung)
    after_start = next(r["time"] for r in starts.values() if r["id"] == after)
    assert after_start >= first_hang_end, "the instance's next job overlapped the abandoned one"
    assert completions(faulty)[hung] == 1 and completions(faulty)[after] == 1
    assert "once its handler returns" in faulty.node_logs()


def test_timeouts_free_their_slot_and_never_run_a_job_twice_at_once(faulty: Cluster) -> None:
    app = faulty.app
    ids = []
    for i in range(4):
        ids.append(app.enqueue("hang", 0.4, priority=10 - i))  # no instance: not exclusive
        ids += app.enqueue_many([{"type": "work", "payload": i, "priority": 9 - i}] * 2)
    faulty.start_node(**{**NODE, "concurrency": 1, "queue_size": 0})
    faulty.wait_for(lambda: settled(faulty, ids), "every job to complete")
    assert_accounting(faulty, ids)
    assert all(completions(faulty)[i] == 1 for i in ids)
    runs: dict[str, list[float]] = {}
    for r in records(faulty):
        runs.setdefault(f"{r['id']}-{r['event']}", []).append(r["time"])
    for job_id in ids:
        starts, ends = runs.get(f"{job_id}-start", []), runs.get(f"{job_id}-end", [])
        # Two executions of one job may exist (timeout, retry); they never overlap
        # while the job was still this slot's: the retry starts after the timeout.
        assert len(starts) <= 2, (job_id, starts)
        assert ends, job_id


def test_refused_commits_and_bad_effects_fail_the_job_and_the_slot_goes_on(
    faulty: Cluster,
) -> None:
    app = faulty.app
    ender = app.enqueue("ender", None, process_instance_id=app.start_process_instance())
    unset = app.enqueue("unset", None, process_instance_id=app.start_process_instance())
    surrogate = app.enqueue("misbehave", "surrogate")
    plain = app.enqueue_many([{"type": "work", "payload": i, "priority": -1} for i in range(5)])
    faulty.start_node(**{**NODE, "concurrency": 1})
    everything = [ender, unset, surrogate, *plain]
    faulty.wait_for(lambda: settled(faulty, everything), "every job to end")
    time.sleep(0.5)
    present = assert_accounting(faulty, everything)
    assert set(present) == {ender, unset, surrogate}
    assert "ValidationError" in (present[ender].exception or "")
    assert "creates jobs in it" in (present[ender].exception or "")
    assert "ProcessInstanceNotFoundError" in (present[unset].exception or "")
    assert "bad text ?? here" in (present[surrogate].exception or "")


def test_a_chain_mixing_def_and_async_def_runs_each_job_once_in_order(faulty: Cluster) -> None:
    app = faulty.app
    pi = app.start_process_instance()
    kinds = ["work", "awork", "work", "awork", "awork", "work"]
    ids = [app.enqueue(kind, i, process_instance_id=pi, exclusive=True) for i, kind in
           enumerate(kinds)]  # fmt: skip
    faulty.start_node(**NODE)
    faulty.wait_for(lambda: settled(faulty, ids), "the chain to complete")
    starts = records(faulty, "start")
    assert [r["id"] for r in starts] == ids, "a job ran twice, out of order or not at all"
    for r in starts:
        expected = "rexec-event-loop" if r["type"] == "awork" else "rexec-slot-"
        assert r["thread"].startswith(expected), r
    for before, after in itertools.pairwise(records(faulty)):
        assert before["time"] <= after["time"]
    assert all(completions(faulty)[i] == 1 for i in ids)


def test_a_process_holding_an_abandoned_handler_too_long_is_recycled(faulty: Cluster) -> None:
    app = faulty.app
    pi = app.start_process_instance()
    hung = app.enqueue("hang", 60.0, process_instance_id=pi)
    after = app.enqueue("work", "after", process_instance_id=pi, exclusive=True)
    faulty.start_node(**NODE, abandoned_max_age_s=1.0, shutdown_timeout_s=2.0)
    first = faulty.wait_for_workers(1)
    faulty.wait_for(lambda: settled(faulty, [hung, after]), "the instance to go on")
    assert faulty.live_pids() - first, "the worker process was not recycled"
    assert "recycling it" in faulty.node_logs()
    assert completions(faulty)[after] == 1


# -- workers that talk ----------------------------------------------------------------------


def test_node_banner_failure_lines_and_json_logs(faulty: Cluster) -> None:
    app = faulty.app
    bad = app.enqueue("misbehave", "raise")
    node = faulty.start_node(**NODE, log_format="json")
    faulty.wait_for(lambda: settled(faulty, [bad]), "the failure")
    faulty.stop_node(node)
    text = (faulty.tmp_path / "node-0.log").read_text()
    lines = [orjson.loads(x) for x in text.splitlines() if x.startswith("{")]
    assert not [x for x in lines if x["level"] == "ERROR"], lines
    messages = [x["message"] for x in lines]
    assert any("rexec 0.1.0 node" in m and faulty.namespace in m for m in messages), messages
    assert any("job type 'misbehave'" in m and "RetryCycle" in m for m in messages)
    incident = [x for x in lines if bad in x["message"] and "incident" in x["message"]]
    assert incident and incident[0]["level"] == "WARNING", lines
    assert "ValueError: plain failure" in incident[0]["message"]


def test_a_node_waiting_for_redis_says_so_and_gives_up_at_its_connect_timeout(
    tmp_path: Path,
) -> None:
    code = (
        "import sys\n"
        "from rexec.executor.node import run_node\n"
        "from rexec.settings import WorkerSettings\n"
        "sys.exit(run_node(WorkerSettings(app_path='tests.apps.faulty:app',"
        " redis_url='redis://user:s3cret@127.0.0.1:1/0', namespace='x',"
        " connect_timeout_s=1.2)))\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert time.monotonic() - started < 15
    assert "waiting for Redis at redis://user:***@127.0.0.1:1/0" in output, output
    assert "s3cret" not in output
    assert "--connect-timeout 1.2" in output


# -- batch handlers ---------------------------------------------------------------------------


def test_a_batch_handler_gets_many_jobs_and_decides_each_one(faulty: Cluster) -> None:
    app = faulty.app
    ok = app.enqueue_many([{"type": "bwork", "payload": i} for i in range(40)])
    failing = app.enqueue_many([{"type": "bwork", "payload": "fail"}] * 3)
    pi = app.start_process_instance()
    stepper = app.enqueue("bwork", "step", process_instance_id=pi, exclusive=True)
    faulty.start_node(**NODE)
    everything = [*ok, *failing, stepper]
    faulty.wait_for(lambda: settled(faulty, everything), "every job to end")
    faulty.wait_for(lambda: app.management.counts()["total"] == len(failing), "the follow-up")
    present = assert_accounting(faulty, everything)
    assert set(present) == set(failing)
    for job_id in failing:
        assert "ValueError: job said fail" in (present[job_id].exception or "")
    done = completions(faulty)
    assert all(done[i] == 1 for i in [*ok, stepper])
    starts = records(faulty, "start")
    sizes = [r["payload"]["size"] for r in starts if r["type"] == "bwork"]
    assert max(sizes) > 1, "the batch handler was only ever given one job"
    # an exclusive job of an instance comes alone, and its follow-up runs after it
    assert [r["payload"]["size"] for r in starts if r["id"] == stepper] == [1]
    assert any(r["type"] == "step" for r in records(faulty, "end"))


def test_an_async_batch_handler_gets_many_jobs_and_decides_each_one(faulty: Cluster) -> None:
    app = faulty.app
    ok = app.enqueue_many([{"type": "abwork", "payload": i} for i in range(40)])
    failing = app.enqueue_many([{"type": "abwork", "payload": "fail"}] * 2)
    faulty.start_node(**NODE)
    everything = [*ok, *failing]
    faulty.wait_for(lambda: settled(faulty, everything), "every job to end")
    present = assert_accounting(faulty, everything)
    assert set(present) == set(failing)
    for job_id in failing:
        assert "ValueError: job said fail" in (present[job_id].exception or "")
    assert all(completions(faulty)[i] == 1 for i in ok)
    starts = records(faulty, "start")
    assert max(r["payload"]["size"] for r in starts) > 1
    assert {r["thread"] for r in starts} == {"rexec-event-loop"}


@pytest.mark.parametrize(
    ("payload", "text"),
    [("raise", "ValueError: the whole call failed"), ("garbage", "returned a dict")],
)
def test_a_batch_handler_that_raises_or_returns_garbage_fails_its_whole_call(
    faulty: Cluster, payload: str, text: str
) -> None:
    app = faulty.app
    ids = app.enqueue_many([{"type": "bwork", "payload": payload}] * 3)
    faulty.start_node(**NODE)
    faulty.wait_for(lambda: settled(faulty, ids), "the jobs to become incidents")
    present = assert_accounting(faulty, ids)
    assert set(present) == set(ids)
    for job in present.values():
        assert text in (job.exception or ""), job.exception


def test_a_timed_out_batch_fails_all_its_jobs_and_abandons_one_handler(faulty: Cluster) -> None:
    app = faulty.app
    ids = app.enqueue_many([{"type": "bhang", "payload": 1.5}] * 10)
    faulty.start_node(**NODE)  # 2 slots: recycled at 2 abandoned handlers
    faulty.wait_for(
        lambda: all(completions(faulty)[i] == 1 for i in ids), "every job to complete at last"
    )
    assert_accounting(faulty, ids)
    starts = records(faulty, "start")
    assert max(r["payload"] for r in starts) > 1, "the jobs were never run as one batch"
    first = [r for r in starts if r["thread"] == starts[0]["thread"]][: starts[0]["payload"]]
    hung = [r["id"] for r in first]
    # every job of the timed-out call ran again (its failure was committed at once)
    runs = Counter(r["id"] for r in starts)
    assert all(runs[i] == 2 for i in hung), runs
    logs = faulty.node_logs()
    assert "ran past its timeout of 300 ms" in logs
    assert "recycling it" not in logs, "one abandoned call counted as many handlers"


def test_a_timed_out_async_batch_is_cancelled_and_all_its_jobs_run_again(faulty: Cluster) -> None:
    app = faulty.app
    ids = app.enqueue_many([{"type": "abhang", "payload": 5.0}] * 10)
    faulty.start_node(**NODE)
    faulty.wait_for(
        lambda: all(completions(faulty)[i] == 1 for i in ids), "every job to complete at last"
    )
    assert_accounting(faulty, ids)
    starts = records(faulty, "start")
    assert starts[0]["payload"] > 1, "the jobs were never run as one batch"
    runs = Counter(r["id"] for r in starts)
    assert all(runs[r["id"]] == 2 for r in starts[: starts[0]["payload"]]), runs
    # cancelled at the timeout: the call never reached its end records
    ends = Counter(r["id"] for r in records(faulty, "end"))
    assert all(ends[i] == 1 for i in ids), ends
    assert "ran past its timeout of 300 ms (in a batch of" in faulty.node_logs()
