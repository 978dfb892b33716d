"""The store at scale and at its edges (issue 15): large acquisitions and argument lists,
n counting jobs, bounded state (retired workers, job types that come and go, one
instance's backlog), all-or-nothing enqueue, the checker racing a join, error texts that
cannot be encoded. Each case runs on fakeredis and on a real redis-server; most failed on
the code before the issue (see each docstring).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from rexec import App, JobState
from rexec.check import _Checker, check
from rexec.context import JobContext
from rexec.errors import ProcessInstanceNotFoundError, RexecError, ScriptError
from rexec.store import NewJob, Store
from tests.test_check import acquire_one, drain, fork


def assert_clean(store: Store) -> None:
    assert check(store) == []


def zcard(store: Store, name: str) -> int:
    return int(store.client.zcard(store.keys.key(name)))  # type: ignore[arg-type]


# -- large acquisitions ---------------------------------------------------------------------


def test_acquiring_9000_plain_jobs_in_one_call_loses_none(store: Store) -> None:
    """Was: HMGET ... unpack(ids) failed past ~8,000 ids after the jobs had left the
    ready queue: every one of them was in no index."""
    ids = store.enqueue([NewJob("a", exclusive=False) for _ in range(9000)], chunk=5000)
    acquired = store.acquire_jobs("w", 9000, lock_ms=60_000)
    assert sorted(job.id for job in acquired.jobs) == sorted(ids)
    assert all(len(batch) == 1 for batch in acquired.batches)
    assert zcard(store, "locked") == 9000
    assert_clean(store)
    assert store.complete_many(acquired.jobs) == [0] * 9000
    assert store.client.hlen(store.keys.jobs) == 0
    assert_clean(store)


def test_90_instances_of_100_exclusive_jobs_in_one_call(store: Store) -> None:
    """Was: the same unpack failure with 90 batches of 100 (a worker with --max-jobs 90)."""
    pis = store.start_process_instances([(b"\x80", None, "")] * 90)
    jobs = [NewJob("x", process_instance_id=pi) for pi in pis for _ in range(100)]
    store.enqueue(jobs, chunk=5000)
    acquired = store.acquire_jobs("w", 9000, lock_ms=60_000)
    assert len(acquired.batches) == 90
    assert all(len(batch) == 100 for batch in acquired.batches)
    assert {batch[0].process_instance_id for batch in acquired.batches} == set(pis)
    assert_clean(store)
    store.complete_many(acquired.jobs)
    assert store.client.hlen(store.keys.pilocks) == 0
    assert_clean(store)


def test_n_counts_jobs_and_bounds_an_exclusive_batch(store: Store) -> None:
    """Was: n counted batches, so acquire(1) could lock 100 jobs."""
    first, second = store.start_process_instances([(b"\x80", None, "")] * 2)
    store.enqueue([NewJob("x", process_instance_id=first, priority=5) for _ in range(10)])
    store.enqueue([NewJob("x", process_instance_id=second, priority=4) for _ in range(10)])
    store.enqueue([NewJob("plain", exclusive=False, priority=3) for _ in range(5)])
    one = store.acquire_jobs("w", 1, lock_ms=60_000)
    assert [len(batch) for batch in one.batches] == [1]
    store.unlock(one.jobs[0])
    taken = store.acquire_jobs("w", 15, lock_ms=60_000)
    assert [len(batch) for batch in taken.batches] == [10, 5]
    assert [batch[0].process_instance_id for batch in taken.batches] == [first, second]
    rest = store.acquire_jobs("w2", 100, lock_ms=60_000)
    # second's other 5 wait for its lock (parked); the plain ones come
    assert [job.type for job in rest.jobs] == ["plain"] * 5
    assert_clean(store)
    store.complete_many(taken.jobs)
    assert [len(b) for b in store.acquire_jobs("w", 100, lock_ms=60_000).batches] == [5]
    assert_clean(store)


# -- one instance's backlog -------------------------------------------------------------------


def test_a_batch_of_a_large_instance_leaves_its_other_jobs_in_place(store: Store) -> None:
    """Was: a batch read the instance's whole pijobs range, acquire parked up to 10,000
    of its jobs, and the release put every one of them back (O(backlog) per batch)."""
    (pi,) = store.start_process_instances([(b"\x80", None, "")])
    store.enqueue([NewJob("x", process_instance_id=pi) for _ in range(1000)])
    acquired = store.acquire_jobs("w", 100, lock_ms=60_000)
    assert [len(batch) for batch in acquired.batches] == [100]
    assert zcard(store, "ready") == 900  # nothing else touched
    assert zcard(store, "parked") == 0
    assert_clean(store)
    # a job enqueued while the instance is locked is parked at once, and only it comes
    # back when the instance is released
    (late,) = store.enqueue([NewJob("x", process_instance_id=pi, priority=9)])
    assert zcard(store, "parked") == 1
    store.complete_many(acquired.jobs)
    assert zcard(store, "parked") == 0
    assert zcard(store, "ready") == 901
    assert_clean(store)
    nxt = store.acquire_jobs("w", 100, lock_ms=60_000)
    assert nxt.jobs[0].id == late and len(nxt.jobs) == 100


def test_jobs_parked_by_acquisition_come_back_in_order(store: Store) -> None:
    (pi,) = store.start_process_instances([(b"\x80", None, "")])
    early = store.enqueue([NewJob("x", process_instance_id=pi) for _ in range(3)])
    plain = store.enqueue([NewJob("y", exclusive=False, priority=-1)])
    holder = store.acquire_jobs("w", 1, lock_ms=60_000).jobs  # locks the instance
    assert [job.id for job in holder] == early[:1]
    # the other two are met by the next acquisition and parked
    nxt = store.acquire_jobs("w2", 10, lock_ms=60_000)
    assert [job.id for job in nxt.jobs] == plain
    assert zcard(store, "parked") == 2
    assert_clean(store)
    store.complete_many(holder)
    assert zcard(store, "parked") == 0
    assert [job.id for job in store.acquire_jobs("w", 10, lock_ms=60_000).jobs] == early[1:]
    assert_clean(store)


# -- job types come and go ----------------------------------------------------------------------


def test_types_without_jobs_or_definition_leave_the_active_set(app: App) -> None:
    """Was: the types set never shrank, and each acquisition looked at every type ever
    seen (1.2 ms -> 54 ms after 20,000 short-lived types)."""
    store, mgmt = app.store, app.management
    for i in range(300):
        store.enqueue([NewJob(f"short-{i}"), NewJob(f"short-{i}")])
    assert store.client.scard(store.keys.types) == 300
    mgmt.suspend_job_definition("short-7")
    mgmt.set_overriding_job_priority("short-8", 5)
    assert len(drain(store)) == 598  # short-7 is suspended
    assert {t.decode() for t in store.client.smembers(store.keys.types)} == {  # type: ignore[union-attr]
        "short-7",
        "short-8",
    }
    assert_clean(store)
    # a type that comes back is counted again, and leaves again
    app.enqueue("short-1")
    assert store.client.sismember(store.keys.types, "short-1")
    job = acquire_one(store)
    assert job.type == "short-1"
    store.fail(job, "once")  # failing keeps it
    assert store.client.sismember(store.keys.types, "short-1")
    drain(store)
    assert not store.client.sismember(store.keys.types, "short-1")
    assert_clean(store)


def test_deleted_and_committed_jobs_count_down_and_follow_ups_count_up(app: App) -> None:
    store = app.store
    doomed = app.enqueue("doomed")
    store.delete([doomed])
    assert not store.client.sismember(store.keys.types, "doomed")
    app.enqueue("step")
    job = acquire_one(store)
    ctx = JobContext(job, app, "w", frozenset())
    ctx.enqueue("next")
    store.commit(job, ctx.effects())
    assert not store.client.sismember(store.keys.types, "step")
    assert store.client.sismember(store.keys.types, "next")
    fork(app, branches=2)
    assert drain(store)
    assert store.client.scard(store.keys.types) == 0
    assert store.client.hlen(store.keys.type_jobs) == 0
    assert_clean(store)


def test_a_type_known_without_a_count_is_never_dropped(store: Store) -> None:
    """Types known before counting began (or re-added by a repair) have no count: they
    stay, so no job of theirs is ever hidden from acquisition."""
    store.client.sadd(store.keys.types, "legacy")
    store.enqueue([NewJob("legacy")])
    assert not store.client.hexists(store.keys.type_jobs, "legacy")
    drain(store)
    assert store.client.sismember(store.keys.types, "legacy")


def test_a_count_that_says_no_job_is_repaired(store: Store) -> None:
    (job_id,) = store.enqueue([NewJob("a")])
    store.client.hset(store.keys.type_jobs, "a", 0)
    violations = check(store)
    assert [(str(v.kind), v.job_id) for v in violations] == [("unknown-type", job_id)]
    from rexec.check import repair

    repair(store)
    assert_clean(store)
    assert drain(store) == [job_id]


# -- workers retire ------------------------------------------------------------------------------


def test_many_stale_workers_retire_in_one_call(app: App) -> None:
    """Was: HDEL/ZREM ... unpack(stale) failed past ~8,000 workers, after the counters had
    been folded in: counted twice on the next run."""
    from rexec import metrics as m

    store, client, keys = app.store, app.client, app.store.keys
    now = store.time_ms()
    count = 9000
    client.hset(keys.metrics, mapping={f"dead.{i}.1|job-successful": 2 for i in range(count)})
    client.hset(keys.metrics, "live.0.1|job-successful", 5)
    client.hset(keys.workers, mapping={f"dead.{i}.1": b"{}" for i in range(count)})
    client.zadd(keys.heartbeats, {f"dead.{i}.1": now - 120_000 for i in range(count)})
    client.zadd(keys.heartbeats, {"live.0.1": now})
    assert m.retire_stale_workers(store) == count
    assert m.retire_stale_workers(store) == 0
    assert m.cluster_stats(store)["job-successful"]["total"] == 2 * count + 5
    assert client.hlen(keys.metrics) == 2  # retired|job-successful and live.0.1|...
    assert client.hlen(keys.workers) == 0
    assert client.zcard(keys.heartbeats) == 1


def test_a_cleanly_stopped_worker_retires_itself(app: App) -> None:
    from rexec import metrics as m

    store, client, keys = app.store, app.client, app.store.keys
    worker = m.WorkerMetrics("node.0.42")
    worker.add(m.SUCCESSFUL, 3)
    worker.pickup_latency(4)
    pipe = client.pipeline()
    worker.flush(pipe, keys)
    pipe.hset(keys.workers, "node.0.42", b"{}")
    pipe.zadd(keys.heartbeats, {"node.0.42": store.time_ms()})
    pipe.hset(keys.metrics, "other.0.1|job-successful", 1)
    pipe.execute()
    assert store.retire_worker("node.0.42") is True
    fields = {f.decode() for f in client.hkeys(keys.metrics)}  # type: ignore[union-attr]
    assert not any(f.startswith("node.0.42|") for f in fields)
    assert "retired|pickup-latency-le-5" in fields
    assert m.cluster_stats(store)["job-successful"]["total"] == 4
    assert not client.hexists(keys.workers, "node.0.42")
    assert client.zscore(keys.heartbeats, "node.0.42") is None
    assert store.retire_worker("node.0.42") is False  # twice: nothing more happens
    assert m.cluster_stats(store)["job-successful"]["total"] == 4
    with pytest.raises(RexecError):
        store.retire_worker("bad|id")


# -- enqueue is never silently partial ---------------------------------------------------------


def test_enqueue_racing_an_instance_end_reports_what_it_wrote(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was: an instance ending between the Python check and a later chunk left the earlier
    chunks written and the caller with an exception and no ids."""
    from rexec.errors import PartialEnqueueError

    store = app.store
    stays, ends = app.start_process_instance(), app.start_process_instance()
    checked = store._check_instances

    def check_then_end(pis: set[str | None]) -> None:
        checked(pis)
        store.end_process_instance(ends)  # another client ends it right now

    monkeypatch.setattr(store, "_check_instances", check_then_end)
    specs: list[dict[str, Any]] = [{"type": "a", "process_instance_id": stays}] * 1000
    specs += [{"type": "a", "process_instance_id": ends}] * 1000
    specs += [{"type": "a"}] * 500
    with pytest.raises(PartialEnqueueError) as caught:
        app.enqueue_many(specs)
    error = caught.value
    assert isinstance(error.cause, ProcessInstanceNotFoundError)
    assert error.missing == list(range(1000, 2000))
    assert len(error.ids) == 1500
    assert len(store.get_jobs(error.ids)) == 1500
    assert store.client.hlen(store.keys.jobs) == 1500
    assert_clean(store)


def test_enqueue_refused_whole_raises_the_cause(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    store = app.store
    ends = app.start_process_instance()
    checked = store._check_instances

    def check_then_end(pis: set[str | None]) -> None:
        checked(pis)
        store.end_process_instance(ends)

    monkeypatch.setattr(store, "_check_instances", check_then_end)
    with pytest.raises(ProcessInstanceNotFoundError):
        app.enqueue_many([{"type": "a", "process_instance_id": ends}] * 1500)
    assert store.client.hlen(store.keys.jobs) == 0


# -- the checker and a join firing meanwhile -----------------------------------------------------


def test_a_join_firing_during_the_check_is_not_a_bad_join(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was: the join's fields, seen by the scan, were gone on the atomic re-read: a false,
    unrepairable bad-join."""
    store = app.store
    branches, _ = fork(app, branches=2)
    jobs = store.acquire_jobs("w", 10, lock_ms=60_000).jobs
    assert sorted(job.id for job in jobs) == branches
    scan = _Checker.hscan

    def hscan_then_fire(self: _Checker, name: str) -> Any:
        yield from scan(self, name)
        if name == "branches":
            # a branch arrives after the scan counted two branches naming the join,
            # so the join's count (1) looks wrong and is read again atomically...
            store.complete(jobs[0])
        if name == "joins":
            store.complete(jobs[1])  # ...after the last one arrived: the join fired

    monkeypatch.setattr(_Checker, "hscan", hscan_then_fire)
    assert check(store) == []
    monkeypatch.undo()
    assert [job.type for job in app.management.jobs()] == ["joined"]
    assert_clean(store)


def test_a_join_left_with_only_its_payload_is_still_a_bad_join(app: App) -> None:
    _, join = fork(app)
    app.client.hdel(app.store.keys.joins, f"{join}|n", f"{join}|f")
    app.client.delete(app.store.keys.branches)
    kinds = {(str(v.kind), v.item) for v in check(app.store)}
    assert ("bad-join", join) in kinds


# -- error texts ---------------------------------------------------------------------------------


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no")


def test_error_texts_with_lone_surrogates_are_stored_replaced(store: Store) -> None:
    """Was: UnicodeEncodeError out of Store.fail (the committer thread died of it)."""
    store.enqueue([NewJob("a", retries=5)])
    job = acquire_one(store)
    assert store.fail(job, "bad \ud800 text", details="trace \udfff") is JobState.READY
    stored = store.client.hget(store.keys.errors, job.id)
    assert stored == b"bad ? text\n\ntrace ?"
    job = acquire_one(store)
    assert store.fail(job, ValueError("x\ud83d")) is JobState.READY
    assert store.client.hget(store.keys.errors, job.id) == b"ValueError: x?"
    job = acquire_one(store)
    assert store.fail(job, Unprintable()) is JobState.READY
    assert b"Unprintable" in store.client.hget(store.keys.errors, job.id)  # type: ignore[operator]
    assert_clean(store)


# -- scripts check their arguments before the first write ---------------------------------------


def snapshot(store: Store) -> dict[bytes, Any]:
    """Every key of the namespace with its content (for 'nothing was written')."""
    out: dict[bytes, Any] = {}
    for key in store.client.scan_iter(match=f"{store.keys.prefix}*"):
        kind = store.client.type(key)
        if kind == b"hash":
            out[key] = store.client.hgetall(key)
        elif kind == b"zset":
            out[key] = store.client.zrange(key, 0, -1, withscores=True)
        elif kind == b"set":
            out[key] = store.client.smembers(key)
        elif kind == b"string":
            out[key] = store.client.get(key)
        else:
            out[key] = kind
    return out


def commit_args(store: Store, job: Any, new_jobs: list[list[Any]], joins: int = 0) -> list[Any]:
    args: list[Any] = [store.keys.wake_channel, job.lock_owner, job.id, job.revision, 30_000]
    args += [0, 0, "", 0, b"", joins]
    args += [len(new_jobs)]
    for fields in new_jobs:
        args += fields
    return [*args, "0"]


GOOD = ["next", "", "", 3, "0", "", b"", 0, "0"]


@pytest.mark.parametrize(
    "bad",
    [
        ["ne|xt", "", "", 3, "0", "", b"", 0, "0"],  # type with a bar
        ["next", "zz", "", 3, "0", "", b"", 0, "0"],  # priority key
        ["next", "", "soon", 3, "0", "", b"", 0, "0"],  # due
        ["next", "", "", "x", "0", "", b"", 0, "0"],  # retries
        ["next", "", "", 3, "2", "", b"", 0, "0"],  # exclusive
        ["next", "", "", 3, "0", "", b"", 4, "0"],  # join that does not exist
        ["next", "", "", 3, "0", "", b"", 0, "yes"],  # lock-now flag
    ],
)
def test_commit_checks_every_new_job_before_writing(store: Store, bad: list[Any]) -> None:
    """Was: commit created the good follow-ups (and ended the job) before a bad field of a
    later one stopped it half-way."""
    store.enqueue([NewJob("a")])
    job = acquire_one(store)
    before = snapshot(store)
    with pytest.raises(ScriptError, match="BAD_ARGUMENT"):
        store._run("commit", commit_args(store, job, [GOOD, GOOD, bad]))
    assert snapshot(store) == before
    store.complete(job)


def test_fail_and_pairs_check_their_arguments_before_writing(store: Store) -> None:
    store.enqueue([NewJob("a"), NewJob("a")])
    first, second = store.acquire_jobs("w", 2, lock_ms=60_000).jobs
    before = snapshot(store)
    wake = store.keys.wake_channel
    calls: list[tuple[str, list[Any]]] = [
        ("fail", [wake, "w", first.id, first.revision, "e", "x", 0]),
        ("fail", [wake, "w", first.id, first.revision, "e", 1, -5]),
        ("complete", [wake, "w", 0, 0, first.id, first.revision, second.id]),
        ("unlock", [wake, "w", first.id, first.revision, second.id]),
        ("extend_lock", ["w", 1000, first.id, first.revision, second.id]),
        ("optimistic_lock", ["w", "soon", first.id, first.revision]),
        ("reclaim", [wake, "all"]),
        ("start_process", ["not-a-key", b"\x80"]),
        ("retire_workers", ["yesterday"]),
        ("check_repair", [wake, first.id, 1, "nowhere", "m"]),
        ("check_joins", [wake, "maybe", "j1"]),
        ("check_pilocks", [wake, "maybe", "p1"]),
        ("acquire", ["w", 10, 1000, "", "", 100, "x", 10]),
        ("optimistic_read", [10, "", "", 10, "x"]),
        ("peek", ["many", "", ""]),
    ]
    for name, args in calls:
        with pytest.raises(ScriptError, match="BAD_ARGUMENT"):
            store._run(name, args)
        assert snapshot(store) == before, name


# -- every script with argument lists far beyond Lua's limits -----------------------------------

BIG = 12_000  # past LUAI_MAXCSTACK (8,000): what unpack of a whole list cannot take


def assert_partition(store: Store) -> None:
    """The cheap part of the invariants, after every call: each job is in exactly one
    state index (a parked one in parked), and pijobs holds exactly the ready and parked
    exclusive jobs. The full checker runs at the end (it is slow on fakeredis)."""
    client, keys = store.client, store.keys
    pipe = client.pipeline(transaction=True)
    for name in ("jobs", "ready", "scheduled", "locked", "suspended", "incidents", "parked"):
        (pipe.hlen if name == "jobs" else pipe.zcard)(keys.key(name))
    pipe.zrange(keys.ready, 0, -1)
    pipe.zcard(keys.pijobs)
    jobs, *indexed, ready, pijobs = pipe.execute()
    assert jobs == sum(indexed)
    exclusive_ready = sum(1 for m in ready if m.count(b"|") == 2)
    assert pijobs == exclusive_ready + indexed[-1]


def test_every_script_takes_argument_lists_far_beyond_luas_limits(
    real_client: Any, namespace: str
) -> None:
    """On a real redis-server only: fakeredis's Lua bridge needs ten minutes for it (the
    9,000-job and many-worker cases above run on both)."""
    app = App.with_client(real_client, namespace=namespace)
    store, client, keys = app.store, app.client, app.store.keys
    wake = keys.wake_channel
    ran: set[str] = set()

    def run(name: str, args: list[Any]) -> Any:
        ran.add(name)
        reply = store._run(name, args)
        assert_partition(store)
        return reply

    # enqueue: 12,000 jobs in ONE call (84,002 arguments)
    args: list[Any] = [wake, BIG]
    for _ in range(BIG):
        args += NewJob("big", exclusive=False).script_args()
    first = int(run("enqueue", args))
    ids = [str(first + i) for i in range(BIG)]
    (pi,) = store.start_process_instances([(b"\x80", None, "")])
    ran.add("start_process")
    store.enqueue([NewJob("ex", process_instance_id=pi) for _ in range(BIG)], chunk=BIG)
    # acquire: 12,000 plain jobs, under a filter of 10,000 more types
    filters = [f"t{i}" for i in range(10_000)]
    reply = run("acquire", ["w", BIG, 600_000, "", "", 100, 2000, 1000, "big", *filters])
    assert sum(len(batch) // 3 for batch in reply[4]) == BIG
    assert_clean(store)
    revisions = {job.id: job.revision for job in store.get_jobs(ids)}
    pairs = [x for i in ids for x in (i, revisions[i])]
    run("extend_lock", ["w", 600_000, *pairs])
    run("check_read", ["jobs", *ids])
    run("check_read", ["locked", *ids])
    run("check_pilocks", [wake, "0", pi, *ids])
    run("check_repair", [wake, *[x for i in ids for x in (i, 0)]])
    run("check_joins", [wake, "0", *[f"j{i}" for i in range(BIG)]])
    run("unlock", [wake, "w", *pairs])
    run("set_priority", ["7ffffffffffffff0", "", *ids])
    run("set_suspended", [wake, "1", "", *ids])
    run("set_suspended", [wake, "0", "", *ids])
    run("set_retries", [wake, 5, *ids])
    # peek (a partitioned namespace's head) over 12,000 jobs and thousands of types
    peeked = run("peek", [BIG, "", "", "big", *filters])
    assert len(peeked) == 3 + BIG
    # optimistic_read / optimistic_lock over 12,000 jobs
    found = run("optimistic_read", [BIG, "", "", 2000, 1000, "big", *filters])[3]
    assert len(found) == 2 * BIG
    locked = run("optimistic_lock", ["w", 600_000, *found])
    assert locked[1] == 0 and len(locked) == 2 + BIG
    revisions = {job.id: job.revision for job in store.get_jobs(ids)}
    # complete takes 4 fields per job: id, revision, result, start time
    quads = [x for i in ids for x in (i, revisions[i], "", "")]
    assert run("complete", [wake, "w", 0, 0, *quads]) == [0] * BIG
    # the instance's 12,000 exclusive jobs: one batch per call, at most the cap
    batch = store.acquire_jobs("w", BIG, lock_ms=600_000).batches
    assert [len(b) for b in batch] == [100]
    # commit: one job creating 12,000 follow-ups
    (job, *others) = batch[0]
    store.complete_many(others)
    new_jobs = [["follow", "", "", 3, "0", "", b"", 0, "0"] for _ in range(BIG)]
    assert run("commit", commit_args(store, job, new_jobs))[0] == 0
    follow = [job.id for job in store.acquire_jobs("w", BIG, types=["follow"]).jobs]
    assert len(follow) == BIG
    run("delete_job", [wake, *follow])
    # fail with a 1 MB error text
    job = store.acquire_jobs("w", 1, lock_ms=600_000).jobs[0]
    run("fail", [wake, "w", job.id, job.revision, "e" * 1_000_000, 1, 0])
    # reclaim 12,000 expired locks
    store.enqueue([NewJob("short", exclusive=False) for _ in range(BIG)], chunk=BIG)
    assert len(store.acquire_jobs("w", BIG, lock_ms=100, types=["short"]).jobs) == BIG
    time.sleep(0.2)
    assert run("reclaim", [wake, BIG * 2]) == BIG
    # retire 12,000 workers by name
    client.hset(keys.metrics, mapping={f"w{i}.0.1|job-successful": 1 for i in range(BIG)})
    client.hset(keys.workers, mapping={f"w{i}.0.1": b"{}" for i in range(BIG)})
    assert run("retire_workers", ["", *[f"w{i}.0.1" for i in range(BIG)]]) == BIG
    assert client.hlen(keys.workers) == 0
    # deploy 12,000 job definitions in one call; the instance index over 12,000 jobs
    definitions: list[Any] = [BIG]
    for i in range(BIG):
        definitions += [f"d{i}", "3|0|1|30000|0|", "f", "host", "app:app"]
    assert run("deploy", definitions) == [0] * BIG
    run("check_instances", ["1", *[x for i in ids for x in ("j", i)]])
    # the unique-key index over 12,000 keys, and 12,000 keyed jobs in one call
    keyed = [NewJob("keyed", exclusive=False, unique_key=f"k{i}") for i in range(BIG)]
    keyed_ids = store.enqueue(keyed, chunk=BIG)
    assert len(set(keyed_ids)) == BIG
    assert run("check_keys", ["1", *[x for i in range(BIG) for x in ("u", f"k{i}")]]) == []
    run("delete_job", [wake, *keyed_ids])
    assert run("check_results", ["1", *keyed_ids]) == []
    assert client.hlen(keys.unique_keys) == 0 and client.hlen(keys.job_keys) == 0
    # variables from outside, 1 MB of them
    revision = int(client.hget(keys.pis, pi).split(b"|")[0])
    assert (
        run(
            "set_variables",
            [
                pi,
                revision,
                b"\x81\xa1v\xc6" + (1_000_000).to_bytes(4, "big") + b"x" * 1_000_000,
                "",
            ],
        )
        == 0
    )
    # deploy 12,000 periodic schedules in one call, one with a 1 MB payload; tick it
    schedules: list[Any] = ["app:app", "host", BIG]
    for i in range(BIG):
        payload = b"\xc6" + (1_000_000).to_bytes(4, "big") + b"x" * 1_000_000 if i == 0 else b""
        schedules += [f"s{i}", "f", "* * * * *", "UTC", "0", 60_000, "tick", "", "", "0",
                      payload, 60_000]  # fmt: skip
    assert run("deploy_periodic", schedules) == [[0] * BIG, []]
    reply = run("tick", [wake, "s0", "f", 60_000, 120_000, "1", "created"])
    assert reply[0] == 0 and len(client.hget(keys.payloads, reply[1])) == 1_000_005
    run("delete_job", [wake, reply[1]])
    from rexec.scripts import SCRIPT_NAMES

    assert ran == set(SCRIPT_NAMES)
    # everything left is still there and acquirable
    left = client.hlen(keys.jobs)
    assert left == BIG - 100 + BIG  # the instance's other jobs and the short ones
    drained = 0
    while acquired := store.acquire_jobs("w", 5000, lock_ms=600_000).jobs:
        assert store.complete_many(acquired) == [0] * len(acquired)
        drained += len(acquired)
    assert drained == left
    assert client.hlen(keys.jobs) == 0
    assert_clean(store)


def test_a_job_parked_before_the_parked_index_is_found_and_refiled(store: Store) -> None:
    """Data written before `parked` existed: a parked job in pijobs only would never come
    back on release; the checker finds it and the repair files it into parked."""
    from rexec.check import repair

    (pi,) = store.start_process_instances([(b"\x80", None, "")])
    store.enqueue([NewJob("x", process_instance_id=pi)])
    holder = acquire_one(store)
    (late,) = store.enqueue([NewJob("x", process_instance_id=pi)])
    store.client.delete(store.keys.parked)  # as the old scripts left it
    assert [(str(v.kind), v.job_id) for v in check(store)] == [("job-misfiled", late)]
    repair(store)
    assert_clean(store)
    store.complete(holder)
    assert [job.id for job in store.acquire_jobs("w", 10, lock_ms=60_000).jobs] == [late]
