"""The store's contract (SPEC §2-4), run on fakeredis and on a real redis-server."""

from __future__ import annotations

import time

import pytest
import redis

from rexec import (
    App,
    InvalidPriorityError,
    JobState,
    OptimisticLockingError,
    ProcessInstanceNotFoundError,
    UnknownJobTypeError,
    ValidationError,
)
from rexec.retry import RetryCycle
from rexec.status import Status
from rexec.store import NewJob, Store


def ids_of(acquired_jobs: list) -> list[str]:  # type: ignore[type-arg]
    return [job.id for job in acquired_jobs]


def drain_order(store: Store, owner: str = "w", n: int = 1000) -> list[str]:
    order = []
    while True:
        acquired = store.acquire_jobs(owner, n, lock_ms=60_000)
        if not acquired.batches:
            return order
        for job in acquired.jobs:
            order.append(job.id)
            store.complete(job)


class TestOrder:
    def test_priority_desc_then_due_then_fifo(self, store: Store) -> None:
        now = store.time_ms()
        specs = [
            NewJob("a", priority=0, due_ms=now - 500),  # 1
            NewJob("a", priority=5, due_ms=now - 100),  # 2
            NewJob("a", priority=5, due_ms=now - 300),  # 3
            NewJob("a", priority=-3, due_ms=now - 900),  # 4
            NewJob("a", priority=5, due_ms=now - 300),  # 5
            NewJob("a", priority=2**63 - 1, due_ms=now),  # 6
            NewJob("a", priority=-(2**63), due_ms=now - 999),  # 7
        ]
        ids = store.enqueue(specs)
        assert drain_order(store) == [ids[i] for i in (5, 2, 4, 1, 0, 3, 6)]

    def test_fifo_survives_id_digit_boundaries(self, store: Store) -> None:
        now = store.time_ms()
        ids = store.enqueue([NewJob("a", due_ms=now) for _ in range(120)])
        assert drain_order(store) == ids

    def test_order_spans_job_types(self, store: Store) -> None:
        ids = store.enqueue(
            [NewJob("low", priority=1), NewJob("high", priority=9), NewJob("mid", priority=5)]
        )
        acquired = store.acquire_jobs("w", 3, lock_ms=10_000)
        assert ids_of(acquired.jobs) == [ids[1], ids[2], ids[0]]
        assert all(len(batch) == 1 for batch in acquired.batches)

    def test_acquire_takes_at_most_n(self, store: Store) -> None:
        store.enqueue([NewJob("a") for _ in range(10)])
        assert len(store.acquire_jobs("w", 4, lock_ms=10_000).batches) == 4
        assert len(store.acquire_jobs("w", 100, lock_ms=10_000).batches) == 6
        assert store.acquire_jobs("w", 100, lock_ms=10_000).batches == []


class TestLocking:
    def test_acquire_locks_and_bumps_revision(self, store: Store) -> None:
        (job_id,) = store.enqueue([NewJob("a")])
        before = store.get_job(job_id)
        assert before is not None and before.state is JobState.READY and before.revision == 0
        acquired = store.acquire_jobs("w1", 1, lock_ms=5000)
        job = acquired.jobs[0]
        assert job.id == job_id and job.revision == 1
        assert job.lock_owner == "w1" and job.state is JobState.LOCKED
        assert job.lock_expires_ms == acquired.now_ms + 5000
        stored = store.get_job(job_id)
        assert stored == job
        assert store.acquire_jobs("w2", 10, lock_ms=5000).batches == []

    def test_complete_removes_the_job_once(self, store: Store) -> None:
        (job_id,) = store.enqueue([NewJob("a", payload_raw=b"\x01")])
        job = store.acquire_jobs("w", 1, lock_ms=5000).jobs[0]
        assert job.payload_raw == b"\x01"
        store.complete(job)
        assert store.get_job(job_id) is None
        with pytest.raises(OptimisticLockingError):
            store.complete(job)

    def test_complete_by_another_owner_or_revision_is_refused(self, store: Store) -> None:
        store.enqueue([NewJob("a")])
        job = store.acquire_jobs("w", 1, lock_ms=5000).jobs[0]
        forged = type(job)(**{**_fields(job), "lock_owner": "intruder"})
        with pytest.raises(OptimisticLockingError):
            store.complete(forged)
        stale = type(job)(**{**_fields(job), "revision": job.revision - 1})
        with pytest.raises(OptimisticLockingError):
            store.complete(stale)
        assert store.get_job(job.id) == job  # unchanged
        store.complete(job)

    def test_expired_lock_is_reclaimed_and_old_owner_cannot_commit(self, store: Store) -> None:
        (job_id,) = store.enqueue([NewJob("a")])
        old = store.acquire_jobs("w1", 1, lock_ms=100).jobs[0]
        time.sleep(0.15)
        acquired = store.acquire_jobs("w2", 1, lock_ms=5000)
        assert acquired.reclaimed == 1
        new = acquired.jobs[0]
        assert new.id == job_id and new.lock_owner == "w2" and new.revision == old.revision + 1
        with pytest.raises(OptimisticLockingError):
            store.complete(old)
        with pytest.raises(OptimisticLockingError):
            store.fail(old, "late")
        store.complete(new)
        assert store.get_job(job_id) is None

    def test_same_owner_reacquiring_after_expiry_cannot_commit_old_copy(self, store: Store) -> None:
        store.enqueue([NewJob("a")])
        old = store.acquire_jobs("w", 1, lock_ms=100).jobs[0]
        time.sleep(0.15)
        new = store.acquire_jobs("w", 1, lock_ms=5000).jobs[0]
        with pytest.raises(OptimisticLockingError):
            store.complete(old)
        store.complete(new)

    def test_extend_lock_keeps_the_job(self, store: Store) -> None:
        store.enqueue([NewJob("a")])
        job = store.acquire_jobs("w", 1, lock_ms=400).jobs[0]
        for _ in range(5):  # 0.5 s in all: longer than the first lock
            time.sleep(0.1)
            expires = store.extend_lock(job, 400)
        assert store.acquire_jobs("w2", 1, lock_ms=1000).batches == []
        assert store.get_job(job.id).lock_expires_ms == expires  # type: ignore[union-attr]
        store.complete(job)

    def test_extend_lock_of_a_lost_job_raises(self, store: Store) -> None:
        store.enqueue([NewJob("a")])
        job = store.acquire_jobs("w", 1, lock_ms=100).jobs[0]
        time.sleep(0.15)
        store.acquire_jobs("w2", 1, lock_ms=5000)
        with pytest.raises(OptimisticLockingError):
            store.extend_lock(job, 1000)

    def test_unlock_gives_the_job_back_in_its_place(self, store: Store) -> None:
        ids = store.enqueue([NewJob("a", priority=3), NewJob("a", priority=1)])
        job = store.acquire_jobs("w", 1, lock_ms=5000).jobs[0]
        assert job.id == ids[0]
        store.unlock(job)
        assert store.get_job(job.id).state is JobState.READY  # type: ignore[union-attr]
        assert drain_order(store) == ids

    def test_complete_many_reports_each_job(self, store: Store) -> None:
        store.enqueue([NewJob("a") for _ in range(3)])
        jobs = store.acquire_jobs("w", 3, lock_ms=5000).jobs
        store.complete(jobs[1])
        statuses = store.complete_many(jobs)
        assert [int(s) for s in statuses] == [0, 1, 0]


def _fields(job: object) -> dict[str, object]:
    return {name: getattr(job, name) for name in job.__dataclass_fields__}  # type: ignore[attr-defined]


class TestFailure:
    def test_fail_consumes_a_retry_and_stores_the_error(self, store: Store) -> None:
        (job_id,) = store.enqueue([NewJob("a", retries=3)])
        job = store.acquire_jobs("w", 1, lock_ms=5000).jobs[0]
        assert store.fail(job, ValueError("bad data"), details="Traceback ...") is JobState.READY
        failed = store.get_job(job_id)
        assert failed is not None
        assert failed.retries == 2 and failed.lock_owner is None
        assert failed.exception is not None and "ValueError: bad data" in failed.exception
        assert "Traceback" in failed.exception

    def test_retry_cycle_delays_the_next_execution(self, store: Store) -> None:
        cycle = RetryCycle.parse("PT1M,PT5M")
        (job_id,) = store.enqueue([NewJob("a", retries=cycle.executions)])
        job = store.acquire_jobs("w", 1, lock_ms=5000).jobs[0]
        now = store.time_ms()
        assert store.fail(job, "x", retry_cycle=cycle) is JobState.SCHEDULED
        failed = store.get_job(job_id)
        assert failed is not None and failed.state is JobState.SCHEDULED
        assert now + 60_000 - 50 <= failed.due_ms <= now + 60_000 + 1000
        assert store.acquire_jobs("w", 1, lock_ms=5000).next_due_ms == failed.due_ms

    def test_optimistic_locking_failure_keeps_the_retry(self, store: Store) -> None:
        (job_id,) = store.enqueue([NewJob("a", retries=1)])
        job = store.acquire_jobs("w", 1, lock_ms=5000).jobs[0]
        store.fail(job, OptimisticLockingError("conflict"))
        again = store.get_job(job_id)
        assert again is not None and again.retries == 1 and again.state is JobState.READY

    def test_last_retry_makes_an_incident_that_set_retries_resolves(self, app: App) -> None:
        store = app.store
        (job_id,) = store.enqueue([NewJob("a", retries=1)])
        job = store.acquire_jobs("w", 1, lock_ms=5000).jobs[0]
        assert store.fail(job, "boom") is JobState.INCIDENT
        incident = store.get_job(job_id)
        assert incident is not None and incident.state is JobState.INCIDENT
        assert store.acquire_jobs("w", 1, lock_ms=5000).batches == []
        assert app.management.counts()["incident"] == 1
        app.management.set_job_retries(job_id, 2)
        resolved = store.acquire_jobs("w", 1, lock_ms=5000).jobs
        assert ids_of(resolved) == [job_id] and resolved[0].retries == 2


class TestScheduling:
    def test_delayed_job_waits_until_due(self, store: Store) -> None:
        (job_id,) = store.enqueue([NewJob("a", delay_ms=300)])
        assert store.get_job(job_id).state is JobState.SCHEDULED  # type: ignore[union-attr]
        first = store.acquire_jobs("w", 1, lock_ms=5000)
        assert first.batches == [] and first.next_due_ms is not None
        time.sleep(0.35)
        assert ids_of(store.acquire_jobs("w", 1, lock_ms=5000).jobs) == [job_id]

    def test_due_jobs_promote_in_priority_order(self, store: Store) -> None:
        due = store.time_ms() + 200
        ids = store.enqueue([NewJob("a", priority=p, due_ms=due) for p in (1, 3, 2)])
        time.sleep(0.25)
        assert drain_order(store, n=1) == [ids[1], ids[2], ids[0]]


class TestExclusive:
    def test_exclusive_jobs_of_an_instance_come_as_one_batch(self, app: App) -> None:
        store = app.store
        pi = app.start_process_instance({"k": 1})
        other = app.start_process_instance()
        ids = app.enqueue_many(
            [
                {"type": "a", "process_instance_id": pi, "priority": 5},
                {"type": "b", "process_instance_id": pi, "priority": 1},
                {"type": "a", "process_instance_id": other, "priority": 3},
                {"type": "a", "process_instance_id": pi, "priority": 2},
            ]
        )
        acquired = store.acquire_jobs("w", 10, lock_ms=5000)
        assert [ids_of(b) for b in acquired.batches] == [[ids[0], ids[3], ids[1]], [ids[2]]]

    def test_locked_instance_holds_back_its_other_exclusive_jobs(self, app: App) -> None:
        store = app.store
        pi = app.start_process_instance()
        first = app.enqueue("a", process_instance_id=pi)
        batch = store.acquire_jobs("w1", 10, lock_ms=5000).batches
        assert [ids_of(b) for b in batch] == [[first]]
        later = app.enqueue("a", process_instance_id=pi, priority=100)
        free = app.enqueue("a", priority=-1)
        assert ids_of(store.acquire_jobs("w2", 10, lock_ms=5000).jobs) == [free]
        store.complete(batch[0][0])
        assert ids_of(store.acquire_jobs("w2", 10, lock_ms=5000).jobs) == [later]

    def test_parked_jobs_come_back_after_the_instance_is_released(self, app: App) -> None:
        store = app.store
        pi = app.start_process_instance()
        ids = app.enqueue_many([{"type": "a", "process_instance_id": pi} for _ in range(3)])
        # w1 only handles "b", so it cannot take a's jobs; lock the instance via a "b" job
        blocker = app.enqueue("b", process_instance_id=pi, priority=10)
        held = store.acquire_jobs("w1", 10, lock_ms=5000, types=["b"])
        assert [ids_of(b) for b in held.batches] == [[blocker]]
        free = app.enqueue_many([{"type": "a", "exclusive": False} for _ in range(2)])
        acquired = store.acquire_jobs("w2", 10, lock_ms=5000, types=["a"])
        assert ids_of(acquired.jobs) == free and acquired.parked == 3
        store.complete(held.jobs[0])
        back = store.acquire_jobs("w2", 10, lock_ms=5000, types=["a"])
        assert [ids_of(b) for b in back.batches] == [ids]

    def test_expired_instance_lock_is_released_by_reclaim(self, app: App) -> None:
        store = app.store
        pi = app.start_process_instance()
        ids = app.enqueue_many([{"type": "a", "process_instance_id": pi} for _ in range(2)])
        store.acquire_jobs("w1", 1, lock_ms=100)
        time.sleep(0.15)
        again = store.acquire_jobs("w2", 10, lock_ms=5000)
        assert [ids_of(b) for b in again.batches] == [ids]

    def test_non_exclusive_jobs_of_an_instance_run_apart(self, app: App) -> None:
        pi = app.start_process_instance()
        ids = app.enqueue_many(
            [{"type": "a", "process_instance_id": pi, "exclusive": False} for _ in range(3)]
        )
        first = app.store.acquire_jobs("w1", 1, lock_ms=5000)
        second = app.store.acquire_jobs("w2", 5, lock_ms=5000)
        assert ids_of(first.jobs) == ids[:1] and ids_of(second.jobs) == ids[1:]

    def test_exclusive_cap_limits_a_batch(self, store: Store, app: App) -> None:
        from rexec.store import AcquireOptions

        pi = app.start_process_instance()
        app.enqueue_many([{"type": "a", "process_instance_id": pi} for _ in range(5)])
        options = AcquireOptions(lock_ms=5000, exclusive_cap=2)
        first = app.store.acquire_jobs("w", 10, options=options)
        assert [len(b) for b in first.batches] == [2]
        for job in first.jobs:
            app.store.complete(job)
        assert [len(b) for b in app.store.acquire_jobs("w", 10, options=options).batches] == [2]


class TestFilters:
    def test_priority_range(self, store: Store) -> None:
        ids = store.enqueue([NewJob("a", priority=p) for p in (-10, 0, 5, 10, 20)])
        got = store.acquire_jobs("w", 10, lock_ms=5000, priority_min=0, priority_max=10)
        assert ids_of(got.jobs) == [ids[3], ids[2], ids[1]]
        assert ids_of(store.acquire_jobs("w", 10, lock_ms=5000, priority_min=15).jobs) == [ids[4]]

    def test_types(self, store: Store) -> None:
        ids = store.enqueue([NewJob("a"), NewJob("b"), NewJob("c")])
        got = store.acquire_jobs("w", 10, lock_ms=5000, types=["c", "a", "unknown"])
        assert sorted(ids_of(got.jobs)) == sorted([ids[0], ids[2]])

    def test_bad_filters(self, store: Store) -> None:
        with pytest.raises(ValidationError):
            store.acquire_jobs("w", 1, lock_ms=5000, priority_min=5, priority_max=1)
        with pytest.raises(ValidationError):
            store.acquire_jobs("w", 1, lock_ms=5000, types=["bad|type"])
        with pytest.raises(ValidationError):
            store.acquire_jobs("w", -1, lock_ms=5000)
        with pytest.raises(ValidationError):
            store.acquire_jobs("bad|owner", 1, lock_ms=5000)


class TestPriorityManagement:
    def test_set_job_priority_resorts_at_once(self, app: App) -> None:
        ids = app.enqueue_many([{"type": "a"} for _ in range(3)])
        app.management.set_job_priority(ids[2], 7)
        assert drain_order(app.store, n=1) == [ids[2], ids[0], ids[1]]

    def test_precedence(self, app: App) -> None:
        app.job("ruled", priority=lambda payload, variables: variables.get("vip", 0) * 100)(
            lambda ctx, p: None
        )
        vip = app.start_process_instance({"vip": 1}, priority=7)
        plain = app.start_process_instance({}, priority=lambda v: 3)
        m = app.management
        get = m.get_job
        assert get(app.enqueue("x")).priority == 0  # type: ignore[union-attr]
        assert get(app.enqueue("x", process_instance_id=plain)).priority == 3  # type: ignore[union-attr]
        assert get(app.enqueue("ruled", process_instance_id=vip)).priority == 100  # type: ignore[union-attr]
        assert get(app.enqueue("ruled", process_instance_id=vip, priority=-5)).priority == -5  # type: ignore[union-attr]
        m.set_overriding_job_priority("ruled", 42)
        assert get(app.enqueue("ruled", priority=-5)).priority == 42  # type: ignore[union-attr]
        m.clear_overriding_job_priority("ruled")
        assert get(app.enqueue("ruled", priority=-5)).priority == -5  # type: ignore[union-attr]

    def test_override_without_cascade_leaves_existing_jobs(self, app: App) -> None:
        m = app.management
        old = app.enqueue("n", priority=5)
        assert m.set_overriding_job_priority("n", 0) == 0
        new = app.enqueue("n", priority=5)
        assert m.get_job(old).priority == 5 and m.get_job(new).priority == 0  # type: ignore[union-attr]

    def test_override_with_cascade_moves_existing_jobs_out_of_the_way(self, app: App) -> None:
        m = app.management
        notes = app.enqueue_many([{"type": "notify", "priority": 50} for _ in range(3)])
        later = app.enqueue("notify", priority=50, delay_ms=60_000)
        other = app.enqueue_many([{"type": "deliver", "priority": 10} for _ in range(2)])
        assert m.set_overriding_job_priority("notify", 0, cascade=True) == 4
        assert m.get_job(later).priority == 0  # type: ignore[union-attr]
        assert drain_order(app.store, n=1) == other + notes
        m.clear_overriding_job_priority("notify")
        assert m.get_job(later).priority == 0  # type: ignore[union-attr]

    def test_cascade_reaches_locked_jobs_when_they_come_back(self, app: App) -> None:
        job_id = app.enqueue("notify", priority=50)
        job = app.store.acquire_jobs("w", 1, lock_ms=5000).jobs[0]
        app.management.set_overriding_job_priority("notify", -1, cascade=True)
        app.store.unlock(job)
        assert app.management.get_job(job_id).priority == -1  # type: ignore[union-attr]


class TestSuspension:
    def test_suspended_definition_is_not_acquired_and_comes_back_in_order(self, app: App) -> None:
        m = app.management
        ids = app.enqueue_many([{"type": "hk", "priority": p} for p in (1, 3, 2)])
        assert m.suspend_job_definition("hk") == 3
        assert all(m.get_job(i).state is JobState.SUSPENDED for i in ids)  # type: ignore[union-attr]
        new = app.enqueue("hk", priority=9)
        assert app.store.acquire_jobs("w", 10, lock_ms=5000).batches == []
        assert m.activate_job_definition("hk") == 3
        assert drain_order(app.store, n=1) == [new, ids[1], ids[2], ids[0]]

    def test_definition_without_jobs(self, app: App) -> None:
        m = app.management
        job_id = app.enqueue("hk")
        m.suspend_job_definition("hk", include_jobs=False)
        # Its job is not suspended itself, but shows as suspended: it is not acquired.
        job = m.get_job(job_id)
        assert job is not None and job.state is JobState.SUSPENDED and not job.suspended
        assert app.store.acquire_jobs("w", 10, lock_ms=5000).batches == []
        m.activate_job_definition("hk", include_jobs=False)
        assert ids_of(app.store.acquire_jobs("w", 10, lock_ms=5000).jobs) == [job_id]

    def test_jobs_suspended_with_the_definition_stay_suspended_if_it_alone_is_activated(
        self, app: App
    ) -> None:
        m = app.management
        job_id = app.enqueue("hk")
        m.suspend_job_definition("hk", include_jobs=True)
        m.activate_job_definition("hk", include_jobs=False)
        assert app.store.acquire_jobs("w", 10, lock_ms=5000).batches == []
        m.activate_job(job_id)
        assert ids_of(app.store.acquire_jobs("w", 10, lock_ms=5000).jobs) == [job_id]

    def test_single_job(self, app: App) -> None:
        m = app.management
        ids = app.enqueue_many([{"type": "a"}, {"type": "a"}])
        m.suspend_job(ids[0])
        assert ids_of(app.store.acquire_jobs("w", 10, lock_ms=5000).jobs) == [ids[1]]
        m.activate_job(ids[0])
        assert ids_of(app.store.acquire_jobs("w", 10, lock_ms=5000).jobs) == [ids[0]]

    def test_definitions_listing(self, app: App) -> None:
        app.enqueue("a")
        with pytest.raises(UnknownJobTypeError):  # never deployed, no jobs
            app.management.set_overriding_job_priority("b", 4)
        app.management.set_overriding_job_priority("b", 4, force=True)
        app.management.suspend_job_definition("a", include_jobs=False)
        infos = {d.type: d for d in app.management.job_definitions()}
        assert infos["a"].suspended and infos["a"].overriding_priority is None
        assert infos["b"].overriding_priority == 4 and not infos["b"].suspended


class TestManagementReads:
    def test_counts_and_listing_by_state(self, app: App) -> None:
        m = app.management
        app.enqueue_many([{"type": "a", "priority": p} for p in (1, 2)])
        app.enqueue("a", delay_ms=60_000)
        suspended = app.enqueue("b")
        m.suspend_job(suspended)
        app.store.acquire_jobs("w", 1, lock_ms=5000)
        assert m.counts() == {
            "ready": 1,
            "scheduled": 1,
            "locked": 1,
            "suspended": 1,
            "incident": 0,
            "total": 4,
        }
        assert [j.priority for j in m.jobs(state="locked")] == [2]
        assert [j.type for j in m.jobs(state="suspended")] == ["b"]
        assert len(m.jobs()) == 4 and len(m.jobs(limit=2, offset=3)) == 1
        assert [j.type for j in m.jobs(type="b")] == ["b"]
        with pytest.raises(ValidationError):
            m.jobs(state="nonsense")

    def test_delete(self, app: App) -> None:
        from rexec import JobNotFoundError

        ids = app.enqueue_many([{"type": "a"}, {"type": "a"}])
        app.management.delete_job(ids[0])
        assert app.management.get_job(ids[0]) is None
        with pytest.raises(JobNotFoundError):
            app.management.delete_job(ids[0])
        assert ids_of(app.store.acquire_jobs("w", 10, lock_ms=5000).jobs) == [ids[1]]

    def test_deleting_a_locked_exclusive_job_frees_its_instance(self, app: App) -> None:
        pi = app.start_process_instance()
        first = app.enqueue("a", process_instance_id=pi)
        app.store.acquire_jobs("w", 1, lock_ms=5000)
        second = app.enqueue("a", process_instance_id=pi)
        app.management.delete_job(first)
        assert ids_of(app.store.acquire_jobs("w", 10, lock_ms=5000).jobs) == [second]


class TestBadInput:
    @pytest.mark.parametrize("priority", ["1", 1.5, True, 2**63, -(2**63) - 1, None])
    def test_bad_priorities(self, app: App, priority: object) -> None:
        if priority is None:
            return
        with pytest.raises(InvalidPriorityError):
            app.enqueue("a", priority=priority)  # type: ignore[arg-type]
        with pytest.raises(InvalidPriorityError):
            app.management.set_job_priority("1", priority)  # type: ignore[arg-type]
        assert app.management.counts()["total"] == 0

    def test_bad_times_types_payloads(self, app: App) -> None:
        from rexec import InvalidJobTypeError, PayloadError

        with pytest.raises(ValidationError):
            app.enqueue("a", delay_ms=-1)
        with pytest.raises(ValidationError):
            app.enqueue("a", due_ms=1, delay_ms=1)
        with pytest.raises(InvalidJobTypeError):
            app.enqueue("has|pipe")
        with pytest.raises(InvalidJobTypeError):
            app.enqueue("")
        with pytest.raises(PayloadError):
            app.enqueue("a", payload=object())
        with pytest.raises(ValidationError):
            app.enqueue("a", retries=0)
        assert app.management.counts()["total"] == 0

    def test_a_bad_spec_in_a_batch_writes_nothing(self, app: App) -> None:
        with pytest.raises(ValidationError):
            app.enqueue_many([{"type": "a"}] * 5 + [{"type": "a", "priority": "x"}])
        with pytest.raises(ValidationError):
            app.enqueue_many([{"type": "a", "colour": "red"}])
        assert app.management.counts()["total"] == 0

    def test_unknown_process_instance_writes_nothing(self, app: App) -> None:
        with pytest.raises(ProcessInstanceNotFoundError):
            app.enqueue_many([{"type": "a"}, {"type": "a", "process_instance_id": "p999"}])
        assert app.management.counts()["total"] == 0
        with pytest.raises(ProcessInstanceNotFoundError):
            app.get_variables("p999")

    def test_unknown_ids(self, app: App) -> None:
        from rexec import JobNotFoundError

        for call in (
            lambda: app.management.set_job_priority("12345", 1),
            lambda: app.management.suspend_job("12345"),
            lambda: app.management.set_job_retries("12345", 1),
        ):
            with pytest.raises(JobNotFoundError):
                call()
        with pytest.raises(ValidationError):
            app.management.get_job("not-an-id")

    def test_malformed_retry_cycles(self, app: App) -> None:
        from rexec import InvalidRetryCycleError

        for bad in ("R5", "R0/PT5M", "5 minutes", "PT", "PT5M,,PT1M", "R3/PTxM", ""):
            with pytest.raises(InvalidRetryCycleError):
                app.job("a", retry_cycle=bad)


def test_variables_round_trip(app: App) -> None:
    pi = app.start_process_instance({"customer": "ACME", "vip": True, "n": [1, 2]})
    assert app.get_variables(pi) == {"customer": "ACME", "vip": True, "n": [1, 2]}


def test_payloads_are_msgpack_not_pickle(app: App, client: redis.Redis) -> None:
    import pickle

    class Boom:
        def __reduce__(self) -> tuple[object, ...]:
            return (exec, ("raise SystemExit('pickle was executed')",))

    job_id = app.enqueue("a", payload={"x": 1})
    client.hset(app.store.keys.payloads, job_id, pickle.dumps(Boom()))
    job = app.management.get_job(job_id)
    from rexec import PayloadError

    with pytest.raises(PayloadError):
        _ = job.payload  # type: ignore[union-attr]


def test_suspending_twice_is_fine_and_unknown_ids_are_not(app: App) -> None:
    from rexec import JobNotFoundError

    job_id = app.enqueue("a")
    app.management.suspend_job(job_id)
    app.management.suspend_job(job_id)
    app.management.activate_job(job_id)
    app.management.activate_job(job_id)
    with pytest.raises(JobNotFoundError):
        app.management.activate_job("999999")


class TestOptimisticMode:
    def test_two_readers_collide_and_one_loses_each_job(
        self, client: redis.Redis, namespace: str
    ) -> None:
        store = Store(client, namespace, acquisition="optimistic")
        ids = store.enqueue([NewJob("a", priority=p) for p in (3, 2, 1)])
        first = store.acquire_jobs("w1", 2, lock_ms=5000)
        assert ids_of(first.jobs) == ids[:2] and first.failed_to_lock == 0
        assert all(len(batch) == 1 for batch in first.batches)
        # a stale read: replay w1's candidate revisions for w2 after w1 locked them
        found = [ids[0], 0, ids[1], 0, ids[2], 0]
        lost: list = store._run("optimistic_lock", ["w2", 5000, *found])  # type: ignore[assignment]
        assert lost[1] == 2 and len(lost[2:]) == 1
        assert store.get_job(ids[2]).lock_owner == "w2"  # type: ignore[union-attr]
        for job in first.jobs:
            store.complete(job)

    def test_optimistic_mode_keeps_order_and_exclusivity(
        self, client: redis.Redis, namespace: str
    ) -> None:
        app = App.with_client(client, namespace=namespace)
        app.acquisition = "optimistic"
        pi = app.start_process_instance()
        ids = app.enqueue_many(
            [
                {"type": "a", "process_instance_id": pi, "priority": 9},
                {"type": "a", "process_instance_id": pi},
            ]
        )
        free = app.enqueue("a", priority=1)
        got = app.store.acquire_jobs("w", 10, lock_ms=5000)
        assert ids_of(got.jobs) == [ids[0], free] and got.failed_to_lock == 0
        assert app.store.acquire_jobs("w2", 10, lock_ms=5000).jobs == []
        app.store.complete(got.jobs[0])
        assert ids_of(app.store.acquire_jobs("w2", 10, lock_ms=5000).jobs) == [ids[1]]


def test_activating_a_definition_wakes_idle_workers(app: App, client: redis.Redis) -> None:
    app.enqueue("hk")
    app.management.suspend_job_definition("hk", include_jobs=False)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(app.store.keys.wake_channel)
    try:
        pubsub.get_message(timeout=0.1)  # the subscription confirmation
        app.management.activate_job_definition("hk", include_jobs=False)
        message = pubsub.get_message(timeout=1.0)
        assert message is not None and message["type"] == "message"
    finally:
        pubsub.close()


def test_large_batches_stream_in_chunks_and_keep_order(store: Store) -> None:
    now = store.time_ms()
    ids = store.enqueue([NewJob("a", due_ms=now) for _ in range(2500)], chunk=1000)
    assert ids == [str(int(ids[0]) + i) for i in range(2500)]
    assert drain_order(store) == ids


def test_a_large_batch_naming_an_unknown_instance_writes_nothing(app: App) -> None:
    specs = [{"type": "a"}] * 2500 + [{"type": "a", "process_instance_id": "p424242"}]
    with pytest.raises(ProcessInstanceNotFoundError):
        app.enqueue_many(specs)
    assert app.management.counts()["total"] == 0


def test_streamed_enqueue_survives_a_script_cache_flush(store: Store, client: redis.Redis) -> None:
    store.enqueue([NewJob("a") for _ in range(1500)], chunk=1000)
    client.script_flush()
    ids = store.enqueue([NewJob("a") for _ in range(1500)], chunk=1000)
    assert len(ids) == 1500 and store.get_job(ids[-1]) is not None


def test_stale_workers_are_retired_and_their_counts_kept(app: App, client: redis.Redis) -> None:
    from rexec import metrics as m

    keys = app.store.keys
    now = app.store.time_ms()
    client.hset(keys.metrics, mapping={"dead.0.1|job-successful": 7, "live.0.2|job-successful": 3})
    client.hset(keys.workers, mapping={"dead.0.1": b"{}", "live.0.2": b"{}"})
    client.zadd(keys.heartbeats, {"dead.0.1": now - 120_000, "live.0.2": now})
    assert m.retire_stale_workers(app.store) == 1
    stats = m.cluster_stats(app.store)
    assert stats["job-successful"]["total"] == 10  # nothing lost from the sums
    assert client.hget(keys.metrics, "dead.0.1|job-successful") is None
    assert client.hexists(keys.workers, "dead.0.1") == 0
    assert client.zscore(keys.heartbeats, "dead.0.1") is None
    assert client.hexists(keys.workers, "live.0.2") == 1
    assert m.retire_stale_workers(app.store) == 0


class TestHistory:
    def test_off_by_default_completed_jobs_leave_nothing(
        self, app: App, client: redis.Redis
    ) -> None:
        app.enqueue("a", {"big": "x" * 100})
        (job,) = app.store.acquire_jobs("w", 1, lock_ms=5000).jobs
        app.store.complete(job)
        leftovers = [
            k
            for k in client.scan_iter(match=f"rexec:{{{app.namespace}}}:*")
            if not k.endswith((b":seq", b":types", b":counters"))
        ]
        assert leftovers == []
        assert app.management.history() == []
        # Outcomes are counted per type (for the cockpit's throughput): one field per
        # type and outcome, however many jobs complete.
        assert client.hgetall(app.store.keys.counters) == {b"completed|a": b"1"}

    def test_history_keeps_finished_jobs_within_its_cap(
        self, client: redis.Redis, namespace: str
    ) -> None:
        app = App.with_client(client, namespace=namespace)
        app.history_max_len = 5
        app.history_ttl_ms = 60_000
        pi = app.start_process_instance()
        ids = app.enqueue_many(
            [{"type": "a", "priority": 1}] * 3 + [{"type": "b", "process_instance_id": pi}]
        )
        for job in app.store.acquire_jobs("w", 10, lock_ms=5000).jobs:
            if job.process_instance_id:
                from rexec.context import JobContext

                ctx = JobContext(job, app, "w")
                ctx.set_variable("x", 1)
                app.store.commit(job, ctx.effects())
            else:
                app.store.complete(job)
        history = app.management.history()
        assert {h["id"] for h in history} == set(ids)
        assert all(h["outcome"] == "completed" for h in history)
        assert next(h for h in history if h["type"] == "b")["process_instance_id"] == pi
        more = app.enqueue_many([{"type": "a"}] * 50)
        app.store.complete_many(app.store.acquire_jobs("w", 100, lock_ms=5000).jobs)
        assert client.xlen(app.store.keys.history) == 5  # the cap
        assert app.management.history(limit=1)[0]["id"] in more

    def test_history_entries_expire(self, client: redis.Redis, namespace: str) -> None:
        app = App.with_client(client, namespace=namespace)
        app.history_max_len = 100
        app.history_ttl_ms = 100
        app.enqueue("a")
        app.store.complete_many(app.store.acquire_jobs("w", 10, lock_ms=5000).jobs)
        time.sleep(0.15)
        app.enqueue("a")
        app.store.complete_many(app.store.acquire_jobs("w", 10, lock_ms=5000).jobs)
        assert len(app.management.history()) == 1


def test_counts_by_type_agree_with_every_jobs_state(app: App) -> None:
    from collections import Counter

    m = app.management
    pi = app.start_process_instance({"v": 1}, priority=3)
    app.enqueue_many([{"type": "a", "priority": p} for p in range(5)])
    app.enqueue_many([{"type": "b", "delay_ms": 60_000}, {"type": "b", "delay_ms": 50}])
    app.enqueue_many([{"type": "c", "process_instance_id": pi} for _ in range(3)])
    app.store.acquire_jobs("w", 1, lock_ms=5000, types=["c"])  # locks the instance
    app.enqueue("c", process_instance_id=pi)  # parked at once
    app.store.acquire_jobs("w2", 10, lock_ms=5000, types=["c"])  # meets and parks the rest
    (boom,) = app.store.acquire_jobs("w3", 1, lock_ms=5000, types=["a"]).jobs
    app.store.set_retries([boom.id], 1)
    app.store.fail(boom, "x")  # incident
    m.suspend_job(app.enqueue("d"))
    time.sleep(0.06)  # one b job is now due but not promoted
    by_type = m.counts_by_type()
    truth: dict[str, Counter[str]] = {}
    for job in m.jobs(limit=10_000):
        truth.setdefault(job.type, Counter())[job.state.value] += 1
    for job_type, states in truth.items():
        assert {k: v for k, v in by_type[job_type].items() if v and k != "total"} == dict(states)
        assert by_type[job_type]["total"] == sum(states.values())
    assert sum(t["total"] for t in by_type.values()) == m.counts()["total"]
    assert m.process_instance(pi) == {"id": pi, "revision": 0, "priority": 3, "variables": {"v": 1}}


class TestInstanceIndex:
    """Each process instance's jobs are read through an index kept by the scripts."""

    def test_index_follows_jobs_in_and_out(self, client: redis.Redis, namespace: str) -> None:
        from rexec.context import JobContext

        app = App.with_client(client, namespace=namespace)
        pi, other = app.start_process_instance(), app.start_process_instance()
        a = app.enqueue("a", process_instance_id=pi)
        b = app.enqueue("b", process_instance_id=pi, exclusive=False)
        c = app.enqueue("c", process_instance_id=pi, delay_ms=60_000)
        app.enqueue("x", process_instance_id=other)
        app.enqueue("free")
        management = app.management
        assert management.instance_job_ids(pi) == [a, b, c]
        # a follow-up created by a commit joins the index; the committed job leaves it
        (job,) = app.store.acquire_jobs("w", 1, lock_ms=5000, types=["a"]).jobs
        ctx = JobContext(job, app, "w")
        ctx.enqueue("d")
        app.store.commit(job, ctx.effects())
        ids = management.instance_job_ids(pi)
        assert a not in ids and len(ids) == 3 and ids[:2] == [b, c]
        (job,) = app.store.acquire_jobs("w", 1, lock_ms=5000, types=["b"]).jobs
        app.store.complete(job)
        management.delete_job(c)
        assert [job.type for job in management.instance_jobs(pi)] == ["d"]
        assert management.jobs(process_instance_id=pi, state="ready")[0].type == "d"
        assert management.jobs(process_instance_id=pi, state="locked") == []
        assert [j.type for j in management.instance_jobs(other)] == ["x"]

    def test_outcomes_are_counted_per_type(self, client: redis.Redis, namespace: str) -> None:
        app = App.with_client(client, namespace=namespace)
        app.enqueue("a")
        app.enqueue("b", retries=1)
        gone = app.enqueue("c")
        for job in app.store.acquire_jobs("w", 10, lock_ms=5000).jobs:
            if job.type == "a":
                app.store.complete(job)
            elif job.type == "b":
                app.store.fail(job, "no")
        app.management.delete_job(gone)
        counters = {k.decode(): int(v) for k, v in client.hgetall(app.store.keys.counters).items()}
        assert counters["completed|a"] == 1
        assert counters["incident|b"] == 1
        assert counters["deleted|c"] == 1

    def test_variables_set_from_outside_bump_the_revision(
        self, client: redis.Redis, namespace: str
    ) -> None:
        from rexec.context import JobContext
        from rexec.errors import OptimisticLockingError

        app = App.with_client(client, namespace=namespace)
        pi = app.start_process_instance({"a": 1}, priority=5)
        app.enqueue("t", process_instance_id=pi)
        (job,) = app.store.acquire_jobs("w", 1, lock_ms=5000).jobs
        ctx = JobContext(job, app, "w")
        ctx.set_variable("b", 2)
        effects = ctx.effects()  # read at revision 0
        assert app.set_variables(pi, {"c": 3}) == 1
        assert app.get_variables(pi) == {"a": 1, "c": 3}
        assert app.management.process_instance(pi)["priority"] == 5  # kept
        with pytest.raises(OptimisticLockingError):
            app.store.commit(job, effects)  # the handler's view is stale: it reruns
        assert app.store.set_variables(pi, 0, b"\x80", "") == Status.VARIABLES_CHANGED  # stale
        with pytest.raises(ProcessInstanceNotFoundError):
            app.set_variables("p999999", {"x": 1})
        with pytest.raises(ValidationError):
            app.set_variables(pi, {1: "not a name"})  # type: ignore[dict-item]

    def test_failures_and_deletes_respect_the_history_cap(
        self, client: redis.Redis, namespace: str
    ) -> None:
        kept = Store(client, namespace, history_max_len=3)
        app = App.with_client(client, namespace=namespace)
        app.enqueue_many([{"type": "f", "retries": 5}] * 6)
        for job in kept.acquire_jobs("w", 10, lock_ms=5000).jobs:
            kept.fail(job, "no")
        assert client.xlen(kept.keys.history) == 3  # capped like completions
        assert {e["outcome"] for e in app.management.history()} == {"failed"}
        # an app without a history records no failures and starts no stream
        other = Store(client, namespace + "x")
        App.with_client(client, namespace=namespace + "x").enqueue("f")
        (job,) = other.acquire_jobs("w", 1, lock_ms=5000).jobs
        other.fail(job, "no")
        assert client.exists(other.keys.history) == 0
        # deleting writes a history entry only where the history is on
        App.with_client(client, namespace=namespace + "x").management.delete_job(job.id)
        assert client.exists(other.keys.history) == 0
