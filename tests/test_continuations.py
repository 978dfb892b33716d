"""Asynchronous continuations at the store level (SPEC §3): a job's completion, its
variable changes, follow-up jobs and joins commit together or not at all."""

from __future__ import annotations

import time

import pytest

from rexec import App, JobState, OptimisticLockingError
from rexec.context import JobContext
from rexec.job import Job


def take(app: App, owner: str = "w", n: int = 10) -> list[Job]:
    return app.store.acquire_jobs(owner, n, lock_ms=5000).jobs


def ctx_for(app: App, job: Job, lockable: frozenset[str] | None = None) -> JobContext:
    return JobContext(job, app, "w", lockable)


def test_variables_follow_ups_and_completion_commit_together(app: App) -> None:
    pi = app.start_process_instance({"order": 7})
    app.enqueue("charge", process_instance_id=pi)
    (job,) = take(app)
    ctx = ctx_for(app, job)
    assert ctx.variables == {"order": 7}
    ctx.set_variable("charged", True)
    ctx.enqueue("ship", {"to": "Berlin"}, exclusive=False)
    assert app.get_variables(pi) == {"order": 7}  # nothing before the commit
    assert app.management.counts()["total"] == 1
    assert app.store.commit(job, ctx.effects()) == []
    assert app.get_variables(pi) == {"order": 7, "charged": True}
    (ship,) = app.management.jobs()
    assert ship.type == "ship" and ship.payload == {"to": "Berlin"}
    assert ship.process_instance_id == pi and ship.state is JobState.READY


def test_a_handler_that_raises_leaves_nothing_but_its_failure(app: App) -> None:
    pi = app.start_process_instance({"n": 1})
    app.enqueue("step", process_instance_id=pi)
    (job,) = take(app)
    ctx = ctx_for(app, job)
    ctx.set_variable("n", 2)
    ctx.enqueue("next")
    # the handler raises here: the worker records the failure and drops ctx's effects
    app.store.fail(job, RuntimeError("boom"))
    assert app.get_variables(pi) == {"n": 1}
    (again,) = app.management.jobs()
    assert again.id == job.id and again.retries == 2 and "boom" in (again.exception or "")


def test_a_commit_whose_lock_expired_writes_nothing(app: App) -> None:
    pi = app.start_process_instance({"n": 1})
    app.enqueue("step", process_instance_id=pi)
    old = app.store.acquire_jobs("w1", 1, lock_ms=100).jobs[0]
    ctx = ctx_for(app, old)
    ctx.set_variable("n", 2)
    ctx.enqueue("next")
    time.sleep(0.15)
    (new,) = app.store.acquire_jobs("w2", 1, lock_ms=5000).jobs
    with pytest.raises(OptimisticLockingError):
        app.store.commit(old, ctx.effects())
    assert app.get_variables(pi) == {"n": 1}
    assert [j.id for j in app.management.jobs()] == [new.id]


def test_concurrent_variable_changes_conflict_and_the_loser_reruns(app: App) -> None:
    pi = app.start_process_instance({"seen": []})
    app.enqueue_many([{"type": "b", "process_instance_id": pi, "exclusive": False}] * 2)
    first, second = take(app)
    a, b = ctx_for(app, first), ctx_for(app, second)
    a.set_variable("a", 1)
    b.set_variable("b", 1)
    app.store.commit(first, a.effects())
    with pytest.raises(OptimisticLockingError):
        app.store.commit(second, b.effects())
    assert app.get_variables(pi) == {"seen": [], "a": 1}
    app.store.fail(second, OptimisticLockingError("conflict"))  # what the worker does
    (rerun,) = take(app)
    assert rerun.id == second.id and rerun.retries == second.retries  # no retry consumed
    again = ctx_for(app, rerun)
    again.set_variable("b", 1)
    app.store.commit(rerun, again.effects())
    assert app.get_variables(pi) == {"seen": [], "a": 1, "b": 1}


def test_fork_creates_the_join_exactly_once_after_the_last_branch(app: App) -> None:
    pi = app.start_process_instance()
    app.enqueue("order", process_instance_id=pi)
    (order,) = take(app)
    ctx = ctx_for(app, order)
    ctx.fork(
        [{"type": "reserve", "exclusive": False}, {"type": "charge", "exclusive": False}],
        join="deliver",
        join_payload={"pi": pi},
    )
    app.store.commit(order, ctx.effects())
    branches = take(app)
    assert sorted(j.type for j in branches) == ["charge", "reserve"]
    app.store.commit(branches[0], ctx_for(app, branches[0]).effects())
    assert [j.type for j in app.management.jobs()] == [branches[1].type]  # locked one left
    app.store.complete(branches[1])  # a branch without effects arrives too
    (join,) = app.management.jobs()
    assert join.type == "deliver" and join.payload == {"pi": pi}
    assert join.process_instance_id == pi
    assert app.client.hlen(app.store.keys.joins) == 0
    assert app.client.hlen(app.store.keys.branches) == 0


def test_exclusive_follow_up_is_locked_at_once_for_the_same_owner(app: App) -> None:
    pi = app.start_process_instance()
    app.enqueue("one", process_instance_id=pi)
    (job,) = take(app)
    ctx = ctx_for(app, job, frozenset({"two"}))
    ctx.enqueue("two", {"k": 2})
    (follow_up,) = app.store.commit(job, ctx.effects())
    assert follow_up.type == "two" and follow_up.lock_owner == "w"
    assert follow_up.payload == {"k": 2}
    assert take(app, "other") == []  # locked, and the instance is still held
    app.store.complete(follow_up)
    assert app.management.counts()["total"] == 0


def test_follow_up_of_a_type_this_worker_cannot_run_is_queued(app: App) -> None:
    pi = app.start_process_instance()
    app.enqueue("one", process_instance_id=pi)
    (job,) = take(app)
    ctx = ctx_for(app, job, frozenset({"one"}))
    ctx.enqueue("elsewhere")
    assert app.store.commit(job, ctx.effects()) == []
    assert [j.type for j in take(app, "other")] == ["elsewhere"]


def test_follow_up_priority_follows_the_precedence(app: App) -> None:
    app.job("vip-check", priority=lambda payload, variables: 100 if variables.get("vip") else 1)(
        lambda ctx, p: None
    )
    pi = app.start_process_instance({"vip": True}, priority=5)
    app.enqueue("start", process_instance_id=pi)
    (job,) = take(app)
    ctx = ctx_for(app, job)
    ctx.enqueue("vip-check")
    ctx.enqueue("plain")
    ctx.enqueue("explicit", priority=-3)
    app.store.commit(job, ctx.effects())
    got = {j.type: j.priority for j in app.management.jobs()}
    assert got == {"vip-check": 100, "plain": 5, "explicit": -3}


def test_bad_follow_up_fails_in_the_handler(app: App) -> None:
    from rexec import ValidationError

    app.enqueue("a")
    (job,) = take(app)
    ctx = ctx_for(app, job)
    with pytest.raises(ValidationError):
        ctx.enqueue("bad|type")
    with pytest.raises(ValidationError):
        ctx.set_variable("x", 1)  # no process instance
    with pytest.raises(ValidationError):
        ctx.fork([], join="j")


def test_follow_up_for_an_unknown_instance_writes_nothing(app: App) -> None:
    from rexec import ProcessInstanceNotFoundError

    pi = app.start_process_instance({"n": 1})
    app.enqueue("a", process_instance_id=pi)
    (job,) = take(app)
    ctx = ctx_for(app, job)
    ctx.set_variable("n", 2)
    ctx.enqueue("b", process_instance_id="p999999")
    with pytest.raises(ProcessInstanceNotFoundError):
        app.store.commit(job, ctx.effects())
    assert app.get_variables(pi) == {"n": 1}
    assert [j.id for j in app.management.jobs()] == [job.id]


def test_deleting_a_branch_counts_as_its_arrival(app: App) -> None:
    pi = app.start_process_instance()
    app.enqueue("order", process_instance_id=pi)
    (order,) = take(app)
    ctx = ctx_for(app, order)
    ctx.fork([{"type": "x", "exclusive": False}] * 2, join="joined")
    app.store.commit(order, ctx.effects())
    first, _second = (j.id for j in app.management.jobs())
    app.management.delete_job(first)
    (branch,) = take(app)
    app.store.complete(branch)
    assert [j.type for j in app.management.jobs()] == ["joined"]


def test_releasing_an_instance_by_failure_wakes_workers(app: App) -> None:
    pi = app.start_process_instance()
    app.enqueue("a", process_instance_id=pi)
    (job,) = take(app)
    app.enqueue("a", process_instance_id=pi)  # parked behind the lock
    pubsub = app.client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(app.store.keys.wake_channel)
    try:
        pubsub.get_message(timeout=0.1)
        app.store.fail(job, "boom", retry_cycle=None)
        message = pubsub.get_message(timeout=1.0)
        assert message is not None and message["type"] == "message"
    finally:
        pubsub.close()


def test_ending_the_instance_removes_it_with_the_last_job(app: App) -> None:
    from rexec import ProcessInstanceNotFoundError, ValidationError
    from rexec.check import check

    pi = app.start_process_instance({"order": 1})
    app.enqueue("finish", process_instance_id=pi)
    (job,) = take(app)
    ctx = ctx_for(app, job)
    ctx.set_variable("done", True)
    ctx.enqueue("audit", process_instance_id=None, exclusive=False)  # elsewhere: allowed
    ctx.end_process_instance()
    app.store.commit(job, ctx.effects())
    with pytest.raises(ProcessInstanceNotFoundError):
        app.get_variables(pi)
    assert app.client.hexists(app.store.keys.pis, pi) == 0
    assert [j.type for j in app.management.jobs()] == ["audit"]
    assert check(app.store) == []

    other = app.start_process_instance()
    app.enqueue("step", process_instance_id=other)
    (step,) = app.store.acquire_jobs("w", 1, lock_ms=5000, types=["step"]).jobs
    wrong = ctx_for(app, step)
    wrong.enqueue("next")  # in the same instance
    wrong.end_process_instance()
    with pytest.raises(ValidationError):
        wrong.effects()
    assert app.end_process_instance(other) is True
    assert app.end_process_instance(other) is False
