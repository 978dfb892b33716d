"""The invariant checker (rexec/check.py): each invariant is broken on purpose in a fresh
namespace, on fakeredis and on a real redis-server; ``check`` must find exactly that,
``repair`` must fix it without losing a job, and the namespace must check clean after.
Healthy namespaces, after realistic and after random operations, must check clean too.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import uuid
from collections.abc import Iterator

import fakeredis
import orjson
import pytest
import redis
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rexec import App, JobState, OptimisticLockingError, RexecError
from rexec.check import Kind, Violation, check, repair
from rexec.cli import main
from rexec.context import JobContext
from rexec.job import Job
from rexec.store import NewJob, Store

# -- helpers -----------------------------------------------------------------------------


def found(violations: list[Violation]) -> set[tuple[str, str | None, str]]:
    """(kind, job id or item, key) of each violation."""
    return {(str(v.kind), v.job_id or v.item, v.key) for v in violations}


def assert_clean(store: Store) -> None:
    assert check(store) == []


def check_repair_clean(store: Store, expected: set[tuple[str, str | None, str]]) -> None:
    """check finds exactly ``expected``; repair fixes all of it; check is clean after."""
    violations = check(store)
    assert found(violations) == expected, violations
    assert all(v.repairable for v in violations), violations
    fixed = repair(store)
    assert found(fixed) == expected
    assert_clean(store)


def members_of(store: Store, index: str, job_id: str) -> list[bytes]:
    """The members of ``index`` that name job ``job_id``."""
    members: list[bytes] = store.client.zrange(store.keys.key(index), 0, -1)  # type: ignore[assignment]
    result = []
    for member in members:
        text = member.decode()
        if index in ("locked", "incidents"):
            named = text
        elif index == "scheduled":  # key|type[|pi]
            named = text.split("|")[0][29:]
        else:  # type|key[|pi], pi|key|type
            named = text.split("|")[1][29:]
        if named == job_id:
            result.append(member)
    return result


def member_for(store: Store, index: str, job_id: str) -> bytes:
    """The member job ``job_id`` has in ``index`` by its current record (schema §4.2)."""
    raw: bytes = store.client.hget(store.keys.jobs, job_id)  # type: ignore[assignment]
    t, p, d, _, x, pi, *_ = raw.decode().split("|")
    key = p + format(int(d), "012x") + chr(96 + len(job_id)) + job_id
    suffix = f"|{pi}" if x == "1" and pi else ""
    if index == "scheduled":
        return f"{key}|{t}{suffix}".encode()
    if index == "pijobs":
        return f"{pi}|{key}|{t}".encode()
    return f"{t}|{key}{suffix}".encode()


def drain(store: Store, types: list[str] | None = None) -> list[str]:
    """Acquires and completes every acquirable job (of ``types``); returns their ids in
    order."""
    done: list[str] = []
    while True:
        acquired = store.acquire_jobs("drain", 100, lock_ms=60_000, types=types)
        if not acquired.batches:
            return done
        for job in acquired.jobs:
            store.complete(job)
            done.append(job.id)


def acquire_one(store: Store, owner: str = "w") -> Job:
    acquired = store.acquire_jobs(owner, 1, lock_ms=60_000)
    assert len(acquired.jobs) == 1, acquired
    return acquired.jobs[0]


def set_record(store: Store, job_id: str, **fields: str) -> None:
    """Rewrites fields of a job record behind the scripts' back."""
    raw: bytes = store.client.hget(store.keys.jobs, job_id)  # type: ignore[assignment]
    names = ("t", "p", "d", "r", "x", "pi", "v", "o", "e", "s")
    values = dict(zip(names, raw.decode().split("|"), strict=True))
    values.update(fields)
    store.client.hset(store.keys.jobs, job_id, "|".join(values[n] for n in names))


def fork(app: App, branches: int = 2, pi: str | None = None) -> tuple[list[str], str]:
    """Runs an ``order`` job that forks ``branches`` plain ``branch`` jobs joining into
    ``joined``; returns the branch ids and the join id."""
    app.enqueue("order", process_instance_id=pi)
    job = acquire_one(app.store)
    ctx = JobContext(job, app, "w")
    ctx.fork([{"type": "branch", "exclusive": False} for _ in range(branches)], join="joined")
    app.store.commit(job, ctx.effects())
    entries: dict[bytes, bytes] = app.client.hgetall(app.store.keys.branches)  # type: ignore[assignment]
    ids = sorted((k.decode() for k in entries), key=int)
    (join,) = {v.decode() for v in entries.values()}
    return ids, join


# -- healthy namespaces ----------------------------------------------------------------------


def test_empty_namespace_is_clean(store: Store) -> None:
    assert_clean(store)


def test_realistic_mix_of_operations_checks_clean(app: App) -> None:
    store = app.store
    mgmt = app.management
    pi1 = app.start_process_instance({"n": 1}, priority=7)
    pi2 = app.start_process_instance({"n": 2})
    app.enqueue_many(
        [{"type": "plain", "payload": {"i": i}, "priority": i % 3} for i in range(20)]
        + [{"type": "excl", "process_instance_id": pi1, "payload": i} for i in range(5)]
        + [{"type": "excl", "process_instance_id": pi2} for _ in range(3)]
        + [{"type": "shared", "process_instance_id": pi1, "exclusive": False}]
        + [{"type": "later", "delay_ms": 3_600_000}, {"type": "fragile", "retries": 1}]
    )
    assert_clean(store)
    # n counts jobs: pi1's 5 exclusive jobs, the shared one and 2 plain ones
    acquired = store.acquire_jobs("w1", 8, lock_ms=60_000)
    assert_clean(store)
    # A locked instance's other jobs are parked lazily: some still sit in ready.
    more = store.acquire_jobs("w2", 10, lock_ms=60_000, types=["excl", "fragile"])
    assert_clean(store)
    jobs = acquired.jobs + more.jobs
    assert {"fragile", "excl", "shared", "plain"} <= {job.type for job in jobs}
    committed = False
    for job in jobs:
        if job.type == "fragile":
            assert store.fail(job, RuntimeError("boom")) is JobState.INCIDENT
        elif job.type == "excl" and job.process_instance_id == pi1 and not committed:
            ctx = JobContext(job, app, job.lock_owner or "", frozenset({"excl"}))
            ctx.set_variable("seen", job.id)
            ctx.enqueue("excl", {"follow": job.id})
            ctx.fork([{"type": "branch", "exclusive": False}] * 2, join="joined")
            follow_ups = store.commit(job, ctx.effects())
            assert follow_ups  # locked at once for this owner
            assert_clean(store)
            for follow_up in follow_ups:
                store.unlock(follow_up)
            committed = True
        elif job.priority == 1:
            store.fail(job, ValueError("again"))
        else:
            store.extend_lock(job, 30_000)
            store.complete(job)
        assert_clean(store)
    for job in jobs:
        if store.get_job(job.id) is not None and job.lock_owner:
            with contextlib.suppress(OptimisticLockingError):
                store.unlock(job)
    assert_clean(store)
    # oldest first: HSCAN's order is random on a real Redis, and these must not pick the
    # one incident (the last job enqueued above), which the test needs further down
    ids = sorted((i for chunk in store.scan_job_ids() for i in chunk), key=int)
    mgmt.set_job_priority(ids[0], 99)
    mgmt.suspend_job(ids[1])
    mgmt.suspend_job_definition("plain", include_jobs=True)
    assert_clean(store)
    mgmt.set_overriding_job_priority("excl", 50, cascade=True)
    mgmt.activate_job_definition("plain", include_jobs=True)
    mgmt.delete_job(ids[2])
    incidents = mgmt.jobs(state=JobState.INCIDENT)
    assert incidents
    mgmt.set_job_retries(incidents[0].id, 2)
    assert_clean(store)
    optimistic = Store(app.client, app.namespace, acquisition="optimistic")
    for job in optimistic.acquire_jobs("w3", 5, lock_ms=60_000).jobs:
        optimistic.complete(job)
    assert_clean(store)
    drain(store)
    assert_clean(store)


def test_expired_locks_reclaimed_and_resolved_incident_check_clean(store: Store) -> None:
    store.enqueue([NewJob("a", retries=1), NewJob("b")])
    store.acquire_jobs("crashed", 2, lock_ms=100)
    time.sleep(0.15)  # the locks expire; reclaim is lazy, so both are still "locked"
    assert_clean(store)
    assert len(store.acquire_jobs("w", 5, lock_ms=60_000).jobs) == 2
    assert_clean(store)


OPERATIONS = (
    "enqueue",
    "enqueue",
    "acquire",
    "acquire",
    "acquire_optimistic",
    "complete",
    "fail",
    "unlock",
    "extend",
    "commit",
    "priority",
    "suspend",
    "activate",
    "retries",
    "delete",
    "suspend_type",
    "activate_type",
    "override",
)


def _apply(op: str, rnd: random.Random, app: App, pis: list[str], held: list[Job]) -> None:
    store, mgmt = app.store, app.management
    if op == "enqueue":
        app.enqueue_many(
            [
                {
                    "type": rnd.choice("abc"),
                    "payload": rnd.randint(0, 9),
                    "priority": rnd.choice([None, 1, 5, -3]),
                    "process_instance_id": rnd.choice([None, *pis]),
                    "exclusive": rnd.choice([True, False]),
                    "delay_ms": rnd.choice([None, None, 3_600_000]),
                    "retries": rnd.randint(1, 3),
                }
                for _ in range(rnd.randint(1, 4))
            ]
        )
    elif op in ("acquire", "acquire_optimistic"):
        target = store if op == "acquire" else Store(app.client, app.namespace, acquisition=op[8:])
        held += target.acquire_jobs(
            rnd.choice(["w1", "w2"]),
            rnd.randint(1, 4),
            lock_ms=60_000,
            types=rnd.choice([None, ["a"], ["b", "c"]]),
            priority_min=rnd.choice([None, 0]),
        ).jobs
    elif op in ("complete", "fail", "unlock", "extend", "commit"):
        if not held:
            return
        job = held.pop(rnd.randrange(len(held)))
        if op == "complete":
            store.complete(job)
        elif op == "fail":
            store.fail(job, "boom")
        elif op == "unlock":
            store.unlock(job)
        elif op == "extend":
            store.extend_lock(job, 50_000)
            held.append(job)
        else:
            ctx = JobContext(job, app, job.lock_owner or "", frozenset("abc"))
            shape = rnd.randint(0, 2)
            if shape == 0:
                ctx.enqueue(rnd.choice("abc"), 1)
            elif shape == 1:
                ctx.fork([{"type": "a"}, {"type": "b", "exclusive": False}], join="c")
            elif job.process_instance_id:
                ctx.set_variable("v", rnd.randint(0, 9))
            held += store.commit(job, ctx.effects(), lock_ms=60_000)
    elif op in ("priority", "suspend", "activate", "retries", "delete"):
        ids = [i for chunk in store.scan_job_ids() for i in chunk]
        if not ids:
            return
        job_id = rnd.choice(ids)
        if op == "priority":
            mgmt.set_job_priority(job_id, rnd.randint(-5, 5))
        elif op == "suspend":
            mgmt.suspend_job(job_id)
        elif op == "activate":
            mgmt.activate_job(job_id)
        elif op == "retries":
            mgmt.set_job_retries(job_id, rnd.randint(0, 2))
        else:
            mgmt.delete_job(job_id)
    # force: a type may not exist yet (operator actions refuse unknown types otherwise).
    elif op == "suspend_type":
        mgmt.suspend_job_definition(rnd.choice("abc"), include_jobs=rnd.random() < 0.5, force=True)
    elif op == "activate_type":
        mgmt.activate_job_definition(rnd.choice("abc"), include_jobs=rnd.random() < 0.5, force=True)
    else:
        mgmt.set_overriding_job_priority(
            rnd.choice("abc"), rnd.randint(-5, 5), cascade=rnd.random() < 0.5, force=True
        )


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(OPERATIONS), st.integers(0, 2**16)), max_size=30))
def test_random_operations_keep_every_invariant(steps: list[tuple[str, int]]) -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    try:
        app = App.with_client(client, namespace="random")
        pis = [app.start_process_instance({}) for _ in range(2)]
        held: list[Job] = []
        for op, seed in steps:
            # A job held here may have been deleted or taken over meanwhile.
            with contextlib.suppress(OptimisticLockingError):
                _apply(op, random.Random(seed), app, pis, held)
            assert check(app.store) == [], (op, seed)
        drain(app.store)
        assert check(app.store) == []
    finally:
        client.close()


def test_check_reads_in_chunks(store: Store) -> None:
    ids = store.enqueue([NewJob("a", payload_raw=b"\x01") for _ in range(250)])
    for job_id in ids[10:13]:
        (member,) = members_of(store, "ready", job_id)
        store.client.zrem(store.keys.ready, member)
    expected = {("job-unindexed", job_id, "jobs") for job_id in ids[10:13]}
    assert found(check(store, chunk=7)) == expected
    assert found(repair(store, chunk=7)) == expected
    assert_clean(store)
    assert sorted(drain(store), key=int) == ids


def test_check_while_workers_run_reports_nothing(redis_url: str, namespace: str) -> None:
    """Workers change the namespace all the time: every chunk is read atomically, and
    what a whole instance or join looks like is counted again atomically, so a job that
    moves between indexes meanwhile is never reported."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def work(index: int) -> None:
        with redis.Redis.from_url(redis_url) as conn:
            app = App.with_client(conn, namespace=namespace)
            store = app.store
            rnd = random.Random(index)
            pi = app.start_process_instance({})
            try:
                while not stop.is_set():
                    app.enqueue_many(
                        [{"type": "a", "priority": rnd.randint(0, 3)} for _ in range(20)]
                        + [{"type": "x", "process_instance_id": pi} for _ in range(5)]
                    )
                    for job in store.acquire_jobs(f"w{index}", 15, lock_ms=60_000).jobs:
                        if rnd.random() < 0.3:
                            store.fail(job, "flaky")
                        else:
                            store.complete(job)
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    try:
        with redis.Redis.from_url(redis_url) as conn:
            store = Store(conn, namespace)
            deadline = time.monotonic() + 1.0
            runs = 0
            while time.monotonic() < deadline or runs < 3:
                assert check(store, chunk=10) == []
                assert repair(store, chunk=10) == []  # nothing to repair, nothing harmed
                runs += 1
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert not errors, errors
    assert runs >= 3
    with redis.Redis.from_url(redis_url) as conn:
        assert check(Store(conn, namespace)) == []


# -- one broken invariant at a time --------------------------------------------------------------


def test_deleted_record_leaves_orphan_member_payload_and_error(store: Store) -> None:
    keep = store.enqueue([NewJob("a", payload_raw=b"\x01")])
    (gone,) = store.enqueue([NewJob("a", payload_raw=b"\x02", priority=5)])
    job = acquire_one(store)
    assert job.id == gone
    store.fail(job, "first try failed")  # an error text, and back to ready
    store.client.hdel(store.keys.jobs, gone)
    check_repair_clean(
        store,
        {
            ("orphan-member", gone, "ready"),
            ("orphan-payload", gone, "payloads"),
            ("orphan-error", gone, "errors"),
        },
    )
    assert not store.client.hexists(store.keys.payloads, gone)
    assert drain(store) == keep


def test_ready_job_missing_from_ready_is_refiled(store: Store) -> None:
    (job_id,) = store.enqueue([NewJob("a")])
    (member,) = members_of(store, "ready", job_id)
    store.client.zrem(store.keys.ready, member)
    assert store.acquire_jobs("w", 1).jobs == []  # lost without a repair
    check_repair_clean(store, {("job-unindexed", job_id, "jobs")})
    assert drain(store) == [job_id]


def test_locked_job_missing_from_the_lock_index(store: Store) -> None:
    store.enqueue([NewJob("a")])
    job = acquire_one(store)
    store.client.zrem(store.keys.locked, job.id)
    check_repair_clean(store, {("lock-index", job.id, "locked")})
    assert store.client.zscore(store.keys.locked, job.id) == job.lock_expires_ms
    store.complete(job)
    assert_clean(store)


def test_lock_index_score_differs_from_the_expiry(store: Store) -> None:
    store.enqueue([NewJob("a")])
    job = acquire_one(store)
    store.client.zadd(store.keys.locked, {job.id: 1})  # would be reclaimed at once
    check_repair_clean(store, {("lock-index", job.id, "locked")})
    assert store.acquire_jobs("thief", 1).jobs == []
    store.complete(job)


def test_locked_job_also_in_ready_is_misfiled(store: Store) -> None:
    (job_id,) = store.enqueue([NewJob("a")])
    (member,) = members_of(store, "ready", job_id)
    job = acquire_one(store)
    store.client.zadd(store.keys.ready, {member: 0})  # could be acquired twice
    check_repair_clean(store, {("job-misfiled", job_id, "jobs")})
    assert store.acquire_jobs("thief", 1).jobs == []
    store.complete(job)
    assert_clean(store)


def test_lock_owner_without_expiry_and_expiry_without_owner(store: Store) -> None:
    locked_id, free_id = store.enqueue([NewJob("a", priority=9), NewJob("a")])
    acquire_one(store)
    set_record(store, locked_id, e="")
    set_record(store, free_id, e="12345")
    check_repair_clean(
        store, {("lock-fields", locked_id, "jobs"), ("lock-fields", free_id, "jobs")}
    )
    time.sleep(0.01)
    # The lock without an expiry now expires at once, so the job is not lost.
    assert sorted(drain(store), key=int) == [locked_id, free_id]


def test_incident_missing_from_incidents(store: Store) -> None:
    (job_id,) = store.enqueue([NewJob("a", retries=1)])
    assert store.fail(acquire_one(store), "boom") is JobState.INCIDENT
    store.client.zrem(store.keys.incidents, job_id)
    check_repair_clean(store, {("job-unindexed", job_id, "jobs")})
    assert members_of(store, "incidents", job_id) == [job_id.encode()]
    store.set_retries([job_id], 1)
    assert drain(store) == [job_id]


def test_incident_also_in_ready_is_misfiled(store: Store) -> None:
    (job_id,) = store.enqueue([NewJob("a", retries=1)])
    store.fail(acquire_one(store), "boom")
    store.client.zadd(store.keys.ready, {member_for(store, "ready", job_id): 0})
    check_repair_clean(store, {("job-misfiled", job_id, "jobs")})
    assert drain(store) == []
    store.set_retries([job_id], 1)
    assert drain(store) == [job_id]


def test_suspended_job_missing_from_suspended(store: Store) -> None:
    (job_id,) = store.enqueue([NewJob("a")])
    store.set_suspended([job_id], True)
    (member,) = members_of(store, "suspended", job_id)
    store.client.zrem(store.keys.suspended, member)
    check_repair_clean(store, {("job-unindexed", job_id, "jobs")})
    assert drain(store) == []
    store.set_suspended([job_id], False)
    assert drain(store) == [job_id]


def test_scheduled_job_under_a_wrong_score(store: Store) -> None:
    (job_id,) = store.enqueue([NewJob("a", delay_ms=3_600_000)])
    (member,) = members_of(store, "scheduled", job_id)
    due = store.client.zscore(store.keys.scheduled, member)
    store.client.zadd(store.keys.scheduled, {member: 0})  # would run an hour early
    check_repair_clean(store, {("bad-score", job_id, "scheduled")})
    assert store.client.zscore(store.keys.scheduled, member) == due
    assert drain(store) == []


def test_due_job_in_ready_and_scheduled_is_misfiled(store: Store) -> None:
    (job_id,) = store.enqueue([NewJob("a")])
    job = store.get_job(job_id)
    assert job is not None
    store.client.zadd(store.keys.scheduled, {member_for(store, "scheduled", job_id): job.due_ms})
    check_repair_clean(store, {("job-misfiled", job_id, "jobs")})
    assert drain(store) == [job_id]


def test_record_changed_behind_its_member_leaves_a_stale_member(store: Store) -> None:
    low, high = store.enqueue([NewJob("a", priority=1), NewJob("a", priority=2)])
    set_record(store, low, p="0000000000000000")  # the highest priority, not re-sorted
    check_repair_clean(store, {("stale-member", low, "ready"), ("job-unindexed", low, "jobs")})
    assert drain(store) == [low, high]  # filed under its new priority


def test_member_naming_no_job(store: Store) -> None:
    (job_id,) = store.enqueue([NewJob("a")])
    store.client.zadd(store.keys.ready, {"a|garbage": 0})
    store.client.zadd(store.keys.pijobs, {"nonsense": 0})
    violations = check(store)
    assert found(violations) == {
        ("bad-member", "a|garbage", "ready"),
        ("bad-member", "nonsense", "pijobs"),
    }
    assert len(repair(store)) == 2
    assert_clean(store)
    assert drain(store) == [job_id]


def test_orphan_members_in_every_index(store: Store) -> None:
    ids = store.enqueue([NewJob("a") for _ in range(6)])
    names = ("ready", "scheduled", "suspended", "pijobs", "locked", "incidents")
    members = {}
    for index, job_id in zip(names, ids, strict=True):
        key = "7fffffffffffffff" + format(1, "012x") + chr(96 + len(job_id)) + job_id
        member = {
            "locked": job_id,
            "incidents": job_id,
            "pijobs": f"p1|{key}|a",
            "scheduled": f"{key}|a",
        }.get(index, f"a|{key}")
        members[index] = member
    drain(store)
    for index, member in members.items():
        store.client.zadd(store.keys.key(index), {member: 0})
    expected: set[tuple[str, str | None, str]] = {
        ("orphan-member", job_id, index) for index, job_id in zip(names, ids, strict=True)
    }
    check_repair_clean(store, expected)


def test_exclusive_job_missing_from_pijobs(store: Store) -> None:
    pi = store.start_process_instance(b"\x80")
    first, second = store.enqueue([NewJob("x", process_instance_id=pi) for _ in range(2)])
    (member,) = members_of(store, "pijobs", first)
    store.client.zrem(store.keys.pijobs, member)
    check_repair_clean(store, {("pijobs-missing", first, "pijobs")})
    batch = store.acquire_jobs("w", 2, lock_ms=60_000).batches[0]
    assert [job.id for job in batch] == [first, second]


def test_parked_job_of_an_unlocked_instance(store: Store) -> None:
    pi = store.start_process_instance(b"\x80")
    (job_id,) = store.enqueue([NewJob("x", process_instance_id=pi)])
    (member,) = members_of(store, "ready", job_id)
    store.client.zrem(store.keys.ready, member)
    assert drain(store) == []  # stranded
    check_repair_clean(store, {("parked-unlocked", job_id, "pijobs")})
    assert drain(store) == [job_id]


def test_job_of_a_locked_instance_may_still_sit_in_ready(store: Store) -> None:
    """Parking is lazy: acquisition parks such a job only when it meets it."""
    pi = store.start_process_instance(b"\x80")
    first, plain = store.enqueue([NewJob("x", process_instance_id=pi), NewJob("y")])
    job = acquire_one(store)
    assert job.id == first
    (later,) = store.enqueue([NewJob("x", process_instance_id=pi, priority=-1)])
    # A new job of a locked instance is parked at once; one enqueued before the lock
    # stays in ready until acquisition meets it. Put this one back to look like that.
    (pm,) = members_of(store, "pijobs", later)
    key = pm.decode().split("|")[1]
    store.client.zadd(store.keys.ready, {f"x|{key}|{pi}": 0})
    store.client.zrem(store.keys.parked, pm)
    assert_clean(store)
    store.complete(job)
    assert sorted(drain(store), key=int) == sorted([later, plain], key=int)


@pytest.mark.parametrize("corrupt", ["too-high", "missing", "stale", "garbage"])
def test_pilocks_recomputed(store: Store, corrupt: str) -> None:
    pi = store.start_process_instance(b"\x80")
    other = store.start_process_instance(b"\x80")
    ids = store.enqueue([NewJob("x", process_instance_id=pi) for _ in range(3)])
    (waiting,) = store.enqueue([NewJob("x", process_instance_id=other)])
    batch = store.acquire_jobs("w", 3, lock_ms=60_000, types=["x"]).batches[0]
    assert [job.id for job in batch] == ids
    assert store.client.hget(store.keys.pilocks, pi) == b"3"
    if corrupt == "too-high":
        store.client.hset(store.keys.pilocks, pi, 5)
        subject = pi
    elif corrupt == "missing":
        store.client.hdel(store.keys.pilocks, pi)
        subject = pi
    elif corrupt == "garbage":
        store.client.hset(store.keys.pilocks, pi, "three")
        subject = pi
    else:  # an instance with nothing locked, whose job is parked for ever
        store.client.hset(store.keys.pilocks, other, 1)
        (member,) = members_of(store, "ready", waiting)
        store.client.zrem(store.keys.ready, member)
        (parked,) = members_of(store, "pijobs", waiting)
        store.client.zadd(store.keys.parked, {parked: 0})
        subject = other
    check_repair_clean(store, {("pilocks", subject, "pilocks")})
    assert store.client.hget(store.keys.pilocks, pi) == b"3"
    assert not store.client.hexists(store.keys.pilocks, other)
    for job in batch:
        store.complete(job)
    assert not store.client.hexists(store.keys.pilocks, pi)
    assert drain(store) == [waiting]
    assert_clean(store)


def test_exclusive_jobs_of_one_instance_locked_by_two_owners(store: Store) -> None:
    pi = store.start_process_instance(b"\x80")
    store.enqueue([NewJob("x", process_instance_id=pi) for _ in range(2)])
    _, second = store.acquire_jobs("w", 2, lock_ms=60_000).batches[0]
    set_record(store, second.id, o="intruder")
    violations = check(store)
    assert found(violations) == {("exclusive-owners", pi, "jobs")}
    assert not violations[0].repairable
    assert repair(store) == []
    assert found(check(store)) == {("exclusive-owners", pi, "jobs")}


def test_orphan_payload_and_error(store: Store) -> None:
    (job_id,) = store.enqueue([NewJob("a")])
    store.client.hset(store.keys.payloads, "424242", b"\x01")
    store.client.hset(store.keys.errors, "424243", "old failure")
    check_repair_clean(
        store,
        {("orphan-payload", "424242", "payloads"), ("orphan-error", "424243", "errors")},
    )
    assert drain(store) == [job_id]


def test_unknown_type_is_never_acquired_until_repaired(store: Store) -> None:
    (job_id,) = store.enqueue([NewJob("lost")])
    store.client.srem(store.keys.types, "lost")
    assert drain(store) == []
    check_repair_clean(store, {("unknown-type", job_id, "types")})
    assert drain(store) == [job_id]


def test_id_counter_behind_the_ids_in_use(store: Store) -> None:
    ids = store.enqueue([NewJob("a") for _ in range(3)])
    store.client.set(store.keys.seq, 1)
    check_repair_clean(store, {("seq", ids[-1], "seq")})
    (new,) = store.enqueue([NewJob("b")])
    assert int(new) > int(ids[-1])
    assert sorted(drain(store), key=int) == [*ids, new]


def test_join_waiting_for_a_gone_branch(app: App) -> None:
    branches, _ = fork(app)
    app.client.hdel(app.store.keys.jobs, branches[0])  # gone without arriving
    check_repair_clean(
        app.store,
        {("orphan-branch", branches[0], "branches"), ("orphan-member", branches[0], "ready")},
    )
    assert drain(app.store, ["branch"]) == [branches[1]]
    (joined,) = app.management.jobs()
    assert joined.type == "joined"
    assert drain(app.store) == [joined.id]
    assert_clean(app.store)


def test_deleted_branch_arrives_at_its_join(app: App) -> None:
    branches, _ = fork(app)
    app.management.delete_job(branches[0])
    assert_clean(app.store)
    assert drain(app.store, ["branch"]) == [branches[1]]
    (joined,) = app.management.jobs()
    assert joined.type == "joined"


def test_branch_of_a_gone_join(app: App) -> None:
    branches, join = fork(app)
    app.client.hdel(app.store.keys.joins, f"{join}|n", f"{join}|f", f"{join}|pl")
    check_repair_clean(app.store, {("dangling-branch", job_id, "branches") for job_id in branches})
    assert drain(app.store) == branches


def test_join_count_differs_from_its_branches(app: App) -> None:
    branches, join = fork(app, branches=3)
    app.client.hset(app.store.keys.joins, f"{join}|n", 5)
    check_repair_clean(app.store, {("join-count", join, "joins")})
    assert app.client.hget(app.store.keys.joins, f"{join}|n") == b"3"
    assert drain(app.store)[:3] == branches
    assert [job.type for job in app.management.jobs()] == []  # the join job ran too


def test_join_waiting_for_no_branch_creates_its_job(app: App) -> None:
    (branch,), join = fork(app, branches=1)
    app.client.hdel(app.store.keys.branches, branch)
    check_repair_clean(app.store, {("join-count", join, "joins")})
    assert sorted(job.type for job in app.management.jobs()) == ["branch", "joined"]


def test_join_without_job_fields_is_reported_not_repaired(app: App) -> None:
    _, join = fork(app)
    app.client.hdel(app.store.keys.joins, f"{join}|f")
    violations = check(app.store)
    assert found(violations) == {("bad-join", join, "joins")}
    assert repair(app.store) == []
    assert found(check(app.store)) == {("bad-join", join, "joins")}


def test_unreadable_record_is_reported_not_repaired(store: Store) -> None:
    (job_id,) = store.enqueue([NewJob("a")])
    store.client.incrby(store.keys.seq, 100)  # ids in use count, readable or not
    store.client.hset(store.keys.jobs, "77", "not|a|record")
    store.client.hset(store.keys.jobs, "x1", "a|7fffffffffffffff|1|3|0||0|||0")
    violations = check(store)
    assert found(violations) == {("bad-record", "77", "jobs"), ("bad-record", "x1", "jobs")}
    assert not any(v.repairable for v in violations)
    assert repair(store) == []
    assert store.client.hget(store.keys.jobs, "77") == b"not|a|record"
    assert drain(store) == [job_id]


def test_bad_counter_is_reported(store: Store) -> None:
    store.client.hset(store.keys.counters, "incidents", "many")
    assert found(check(store)) == {("bad-counter", "incidents", "counters")}


def test_key_of_the_wrong_type_stops_the_check(store: Store) -> None:
    store.enqueue([NewJob("a")])
    store.client.delete(store.keys.ready)
    store.client.set(store.keys.ready, "oops")
    violations = check(store)
    assert found(violations) == {("key-type", None, "ready")}
    assert repair(store) == []
    with pytest.raises(RexecError):
        store.acquire_jobs("w", 1)


def test_violation_is_a_frozen_value() -> None:
    violation = Violation(Kind.SEQ, None, "seq", "behind", True, "7")
    with pytest.raises(AttributeError):
        violation.kind = "other"  # type: ignore[misc]
    assert violation.as_dict() == {
        "kind": "seq",
        "job_id": None,
        "key": "seq",
        "item": "7",
        "detail": "behind",
        "repairable": True,
    }


# -- the command -------------------------------------------------------------------------------


@pytest.fixture
def cli_store(redis_url: str) -> Iterator[Store]:
    with redis.Redis.from_url(redis_url) as conn:
        yield Store(conn, "cli" + uuid.uuid4().hex[:10])


def run_check(store: Store, redis_url: str, *extra: str) -> tuple[int, str]:
    args = ["check", "--redis-url", redis_url, "--namespace", store.keys.namespace, *extra]
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.output


def test_cli_check_clean_and_with_violations(cli_store: Store, redis_url: str) -> None:
    (job_id,) = cli_store.enqueue([NewJob("a")])
    code, output = run_check(cli_store, redis_url)
    assert code == 0, output
    assert "no violations" in output
    (member,) = members_of(cli_store, "ready", job_id)
    cli_store.client.zrem(cli_store.keys.ready, member)
    code, output = run_check(cli_store, redis_url, "--json")
    assert code == 1
    report = orjson.loads(output)
    assert [(v["kind"], v["job_id"]) for v in report["violations"]] == [("job-unindexed", job_id)]
    assert report["repaired"] == []
    code, output = run_check(cli_store, redis_url, "--repair", "--json")
    assert code == 0, output
    report = orjson.loads(output)
    assert [v["kind"] for v in report["repaired"]] == ["job-unindexed"]
    assert report["violations"] == []
    assert drain(cli_store) == [job_id]


def test_cli_check_exits_1_when_violations_remain_after_repair(
    cli_store: Store, redis_url: str
) -> None:
    cli_store.client.set(cli_store.keys.seq, 10)
    cli_store.client.hset(cli_store.keys.jobs, "5", "garbage")
    cli_store.client.hset(cli_store.keys.payloads, "6", b"\x01")
    code, output = run_check(cli_store, redis_url, "--repair", "--json")
    assert code == 1
    report = orjson.loads(output)
    assert [v["kind"] for v in report["repaired"]] == ["orphan-payload"]
    assert [v["kind"] for v in report["violations"]] == ["bad-record"]
    code, output = run_check(cli_store, redis_url)
    assert code == 1
    assert "1 violations" in output


def test_cli_check_on_an_unreachable_redis_is_one_line() -> None:
    result = CliRunner().invoke(main, ["check", "--redis-url", "redis://127.0.0.1:1/0"])
    assert result.exit_code == 1
    assert "cannot reach Redis" in result.output


# -- the process-instance index (invariant 17) ------------------------------------------------


def test_instance_index_gaps_are_found_and_backfilled(store: Store) -> None:
    app = App.with_client(store.client, namespace=store.keys.namespace)
    pi = app.start_process_instance({"n": 1})
    old = app.enqueue("t", process_instance_id=pi)
    kept = app.enqueue("t", process_instance_id=pi, exclusive=False)
    app.enqueue("free")
    assert_clean(store)
    key = store.keys.instance_jobs
    store.client.zrem(key, f"{pi}|{old}")  # as an older rexec left it
    store.client.zadd(key, {f"{pi}|999999": 0, f"p0|{kept}": 0})  # gone job, wrong instance
    check_repair_clean(
        store,
        {
            ("instance-unindexed", old, "instance_jobs"),
            ("instance-stale", "999999", "instance_jobs"),
            ("instance-stale", kept, "instance_jobs"),
        },
    )
    assert app.management.instance_job_ids(pi) == [old, kept]
