"""``App.run_until_empty``: due jobs run in the calling process through the real store."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta
from typing import Any

import pytest

from rexec import App, JobState, ValidationError
from rexec.context import JobContext


def test_sync_handlers_run_in_the_calling_thread(app: App) -> None:
    seen: list[tuple[Any, str]] = []

    @app.job("work")
    def work(ctx: JobContext, payload: Any) -> None:
        seen.append((payload, threading.current_thread().name))

    app.enqueue_many([{"type": "work", "payload": n} for n in range(5)])
    assert app.run_until_empty() == 5
    me = threading.current_thread().name
    assert sorted(seen) == [(n, me) for n in range(5)]
    assert app.management.counts()["total"] == 0
    assert app.run_until_empty() == 0  # nothing left


def test_priority_order_is_the_stores(app: App) -> None:
    order: list[int] = []

    @app.job("work")
    def work(ctx: JobContext, payload: Any) -> None:
        order.append(payload)

    for p in (1, 50, -3, 20):
        app.enqueue("work", p, priority=p)
    assert app.run_until_empty() == 4
    assert order == [50, 20, 1, -3]


def test_async_handlers_run_on_an_event_loop(app: App) -> None:
    seen: list[int] = []

    @app.job("fetch")
    async def fetch(ctx: JobContext, payload: Any) -> None:
        await asyncio.sleep(0)
        seen.append(payload)

    @app.job("plain")
    def plain(ctx: JobContext, payload: Any) -> None:
        seen.append(-payload)

    app.enqueue_many([{"type": "fetch", "payload": 1}, {"type": "plain", "payload": 2}])
    assert app.run_until_empty() == 2
    assert sorted(seen) == [-2, 1]


def test_async_handlers_run_when_called_from_async_code(app: App) -> None:
    seen: list[int] = []

    @app.job("fetch")
    async def fetch(ctx: JobContext, payload: Any) -> None:
        await asyncio.sleep(0)
        seen.append(payload)

    async def an_async_test() -> int:
        app.enqueue("fetch", 7)
        return app.run_until_empty()

    assert asyncio.run(an_async_test()) == 1
    assert seen == [7]


def test_follow_ups_and_joins_run_with_their_variables(app: App) -> None:
    ran: list[str] = []

    @app.job("place")
    def place(ctx: JobContext, payload: Any) -> None:
        ran.append("place")
        ctx.fork([{"type": "reserve"}, {"type": "charge"}], join="ship")

    @app.job("reserve")
    def reserve(ctx: JobContext, payload: Any) -> None:
        ran.append("reserve")
        ctx.set_variable("reserved", True)

    @app.job("charge", exclusive=False)
    def charge(ctx: JobContext, payload: Any) -> None:
        ran.append("charge")
        ctx.set_variable("charged", True)

    @app.job("ship")
    def ship(ctx: JobContext, payload: Any) -> None:
        ran.append("ship")
        assert ctx.variables == {"customer": "ACME", "reserved": True, "charged": True}
        ctx.enqueue("confirm", {"to": ctx.variables["customer"]})

    @app.job("confirm")
    async def confirm(ctx: JobContext, payload: Any) -> None:
        ran.append(f"confirm {payload['to']}")
        ctx.end_process_instance()

    order = app.start_process_instance({"customer": "ACME"})
    app.enqueue("place", process_instance_id=order)
    assert app.run_until_empty() == 5
    assert ran[0] == "place"
    assert sorted(ran[1:3]) == ["charge", "reserve"]
    assert ran[3:] == ["ship", "confirm ACME"]
    assert app.management.counts()["total"] == 0
    assert not app.client.hexists(app.store.keys.pis, order)  # ended by its last job


def test_a_failure_uses_up_its_retries_into_an_incident(app: App) -> None:
    attempts: list[int] = []

    @app.job("flaky")  # the default cycle: 3 executions, no wait
    def flaky(ctx: JobContext, payload: Any) -> None:
        attempts.append(ctx.job.retries)
        raise ValueError("the partner is down")

    job_id = app.enqueue("flaky")
    assert app.run_until_empty() == 3
    assert attempts == [3, 2, 1]
    job = app.management.get_job(job_id)
    assert job is not None and job.state is JobState.INCIDENT and job.retries == 0
    assert job.exception is not None and "ValueError: the partner is down" in job.exception
    assert "Traceback" in job.exception  # recorded as a worker records it
    assert app.run_until_empty() == 0  # an incident is never acquired


def test_a_retry_that_recovers_completes(app: App) -> None:
    calls: list[int] = []

    @app.job("flaky")
    def flaky(ctx: JobContext, payload: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("once")

    app.enqueue("flaky")
    assert app.run_until_empty() == 2
    assert app.management.counts()["total"] == 0


def test_a_retry_due_later_is_left_scheduled_without_a_timeout(app: App) -> None:
    @app.job("slow-retry", retry_cycle="R3/PT1M")
    def slow_retry(ctx: JobContext, payload: Any) -> None:
        raise RuntimeError("later")

    app.deploy()  # the stored retry cycle is the one a failure follows
    job_id = app.enqueue("slow-retry")
    assert app.run_until_empty() == 1
    job = app.management.get_job(job_id)
    assert job is not None and job.state is JobState.SCHEDULED and job.retries == 2
    assert app.run_until_empty(timeout=0.2) == 0  # due in a minute: past the deadline


def test_a_retry_due_before_the_timeout_is_waited_for(app: App) -> None:
    calls: list[int] = []

    @app.job("quick-retry", retry_cycle="R3/PT0.2S")
    def quick_retry(ctx: JobContext, payload: Any) -> None:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("not yet")

    app.deploy()
    app.enqueue("quick-retry")
    assert app.run_until_empty() == 1  # the retry waits 200 ms: not due yet
    assert app.run_until_empty(timeout=timedelta(seconds=30)) == 2
    assert app.management.counts()["total"] == 0


def test_a_delayed_job_runs_only_when_it_falls_due_before_the_deadline(app: App) -> None:
    ran: list[Any] = []

    @app.job("later")
    def later(ctx: JobContext, payload: Any) -> None:
        ran.append(payload)

    app.enqueue("later", "soon", delay_ms=200)
    app.enqueue("later", "tomorrow", delay_ms=86_400_000)
    assert app.run_until_empty() == 0
    assert app.run_until_empty(timeout=30) == 1  # returns once nothing falls due in time
    assert ran == ["soon"]
    assert app.management.counts()["scheduled"] == 1


def test_types_without_a_handler_are_left_for_other_workers(app: App) -> None:
    ran: list[str] = []

    @app.job("mine")
    def mine(ctx: JobContext, payload: Any) -> None:
        ran.append(ctx.job.type)
        ctx.enqueue("theirs", process_instance_id=None)

    app.enqueue("theirs", delay_ms=100)
    app.enqueue("mine")
    assert app.run_until_empty(timeout=1) == 1
    assert ran == ["mine"]
    left = app.management.jobs()
    assert sorted(job.type for job in left) == ["theirs", "theirs"]
    assert all(job.lock_owner is None and job.retries == 3 for job in left)


def test_an_app_without_handlers_runs_nothing(app: App) -> None:
    app.enqueue("theirs")
    assert app.run_until_empty() == 0
    assert app.management.counts()["ready"] == 1


@pytest.mark.parametrize("timeout", [-1, "5", True, timedelta(seconds=-1)])
def test_a_bad_timeout_is_refused_before_anything_runs(app: App, timeout: Any) -> None:
    @app.job("work")
    def work(ctx: JobContext, payload: Any) -> None:
        raise AssertionError("must not run")

    app.enqueue("work")
    with pytest.raises(ValidationError, match="timeout"):
        app.run_until_empty(timeout=timeout)
    assert app.management.counts()["ready"] == 1


def test_a_keyboard_interrupt_gives_the_jobs_back_and_propagates(app: App) -> None:
    @app.job("stop")
    def stop(ctx: JobContext, payload: Any) -> None:
        if payload == 0:
            raise KeyboardInterrupt

    app.enqueue_many([{"type": "stop", "payload": n, "priority": 10 - n} for n in range(3)])
    with pytest.raises(KeyboardInterrupt):
        app.run_until_empty()
    jobs = app.management.jobs(JobState.READY)
    assert len(jobs) == 3  # none lost, none left locked, no retry consumed
    assert all(job.lock_owner is None and job.retries == 3 for job in jobs)


def test_a_self_enqueuing_handler_stops_at_the_deadline(app: App) -> None:
    @app.job("again")
    def again(ctx: JobContext, payload: Any) -> None:
        ctx.enqueue("again", process_instance_id=None)

    app.enqueue("again")
    ran = app.run_until_empty(timeout=0.3)
    assert ran >= 1
    jobs = app.management.jobs(JobState.READY)
    assert len(jobs) == 1 and jobs[0].lock_owner is None  # the next one, left for later


def test_jobs_locked_by_a_worker_are_not_taken(app: App) -> None:
    @app.job("work")
    def work(ctx: JobContext, payload: Any) -> None:
        raise AssertionError("locked elsewhere")

    app.enqueue("work")
    held = app.store.acquire_jobs("other-worker", 1, types=["work"])
    assert len(held.jobs) == 1
    assert app.run_until_empty() == 0
    app.store.complete(held.jobs[0])


def test_a_long_handler_keeps_its_lock(app: App) -> None:
    from rexec.executor.inline import InlineRunner

    stolen: list[int] = []

    @app.job("long")
    def long(ctx: JobContext, payload: Any) -> None:
        time.sleep(2.5)  # 2.5 lock times: renewed meanwhile, never reclaimed
        stolen.append(len(app.store.acquire_jobs("other-worker", 1, types=["long"]).jobs))

    app.enqueue("long")
    assert InlineRunner(app, None, lock_ms=1000).run() == 1
    assert stolen == [0]
    assert app.management.counts()["total"] == 0


def test_results_are_kept_as_a_worker_keeps_them(app: App) -> None:
    from rexec import Fail, JobFailedError, JobStatus

    @app.job("double", keep_result=60)
    def double(ctx: JobContext, payload: Any) -> int:
        return int(payload) * 2

    @app.job("triple", keep_result=60)
    async def triple(ctx: JobContext, payload: Any) -> int:
        return int(payload) * 3

    @app.job("refuse", keep_result=60)
    def refuse(ctx: JobContext, payload: Any) -> None:
        raise Fail("bad order")

    doubled, tripled, refused = double.enqueue(21), triple.enqueue(5), refuse.enqueue()
    assert app.run_until_empty() == 3  # the Fail is not retried
    assert doubled.result() == 42 and tripled.result() == 15
    assert refused.status() is JobStatus.INCIDENT
    with pytest.raises(JobFailedError, match="bad order"):
        refused.result()
    info = doubled.info()
    assert info.attempts == 1 and len(info.worker_ids) == 1
    assert info.worker_ids[0].startswith("inline-")


def test_on_a_partitioned_namespace_it_runs_and_waits_for_every_partitions_jobs(
    redis_url: str, namespace: str
) -> None:
    app = App(redis_url, namespace=namespace, partitions=3)
    ran: list[Any] = []

    @app.job("spread")
    def spread(ctx: JobContext, payload: Any) -> None:
        ran.append(payload)

    app.deploy()
    first = app.store.partition_stores[0].keys.prefix
    now = [app.enqueue("spread", i) for i in range(6)]  # round-robin over the partitions
    assert len({app.store.keys_of_job(i).prefix for i in now}) == 3
    # delayed jobs only outside partition 0, so waiting must look at every partition
    later: list[str] = []
    while len(later) < 4:
        job_id = app.enqueue("spread", 10 + len(later), delay_ms=300)
        if app.store.keys_of_job(job_id).prefix == first:
            app.management.delete_job(job_id)
        else:
            later.append(job_id)
    assert app.run_until_empty() == 6
    assert sorted(ran) == list(range(6))
    assert app.run_until_empty(timeout=30) == 4
    assert sorted(ran) == [*range(6), *range(10, 14)]
    assert app.management.counts()["total"] == 0
    app.close()
