"""Job handles, kept results, unique keys and retry policies: the contract on both
backends (fakeredis and a real Redis), driven through the store as a worker drives it,
and then through a real worker node."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
import redis.asyncio

import rexec
from rexec import (
    App,
    Fail,
    JobDeletedError,
    JobFailedError,
    JobHandle,
    JobResultTimeoutError,
    JobStatus,
    ResultNotKeptError,
    UniqueKeyError,
    ValidationError,
)
from rexec.codec import pack
from rexec.definitions import parse_definition
from rexec.errors import JobNotFoundError, PayloadError
from rexec.job import Job
from rexec.redis_server import RedisServer
from rexec.store import MAX_UNIQUE_KEY_BYTES
from tests.harness import Cluster


class Transient(ConnectionError):
    pass


def make(app: App) -> dict[str, Any]:
    """Job types of the contract tests, deployed."""

    @app.job("add", keep_result=60, exclusive=False, retry_cycle="R3/PT0S")
    def add(ctx: Any, payload: Any) -> int:
        return int(payload["a"]) + int(payload["b"])

    @app.job("plain", exclusive=False)
    def plain(ctx: Any, payload: Any) -> None:
        return None

    @app.job(
        "picky", keep_result=timedelta(minutes=1), exclusive=False, retry_cycle="R5/PT0S",
        retry_on=(ConnectionError,), no_retry_on=(Transient,),
    )  # fmt: skip
    def picky(ctx: Any, payload: Any) -> None:
        return None

    @app.job("lookup", keep_result=60, exclusive=False, retry_cycle="R5/PT0S",
             no_retry_on=LookupError)  # fmt: skip
    def lookup(ctx: Any, payload: Any) -> None:
        return None

    app.deploy()
    return {"add": add, "plain": plain, "picky": picky, "lookup": lookup}


@pytest.fixture
def types(app: App) -> dict[str, Any]:
    return make(app)


def take(app: App, owner: str = "w1") -> Job:
    jobs = app.store.acquire_jobs(owner, 1).jobs
    assert len(jobs) == 1, jobs
    return jobs[0]


def complete(app: App, job: Job, value: Any, started_ms: int | None = None) -> None:
    assert app.store.complete_many([job], [pack(value)], [started_ms]) == [rexec.store.Status.OK]


def fail(app: App, job: Job, error: BaseException, **kwargs: Any) -> rexec.JobState:
    details = "".join(traceback.format_exception(error))
    return app.store.fail(job, error, details=details, **kwargs)


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def written(app: App) -> int:
    k = app.store.keys
    return sum(int(app.client.hlen(key)) for key in (k.jobs, k.unique_keys, k.results))


# -- handles ---------------------------------------------------------------------------------


def test_a_job_type_is_still_the_plain_function(app: App, types: dict[str, Any]) -> None:
    add = types["add"]
    assert add(None, {"a": 2, "b": 5}) == 7
    assert add.type == "add" and add.__name__ == "add"
    assert isinstance(add, rexec.JobType)
    assert app.definitions["add"].handler is add.handler


def test_a_handle_follows_its_job_to_its_result(app: App, types: dict[str, Any]) -> None:
    handle = types["add"].enqueue({"a": 1, "b": 2})
    assert isinstance(handle, JobHandle) and handle.status() is JobStatus.QUEUED
    assert handle == app.handle(handle.id)
    job = take(app, "worker-7")
    assert handle.status() is JobStatus.RUNNING
    complete(app, job, 3, started_ms=job.due_ms + 1)
    assert handle.status() is JobStatus.COMPLETED
    assert handle.result() == 3 and app.handle(handle.id).result(timeout=0) == 3
    info = handle.info()
    assert info.type == "add" and info.return_value == 3 and info.errors == ()
    assert info.attempts == 1 and info.worker_ids == ("worker-7",)
    assert info.enqueued_at_ms == job.due_ms and info.started_at_ms == job.due_ms + 1
    assert info.finished_at_ms is not None and info.finished_at_ms >= info.enqueued_at_ms
    assert info.priority == 0 and info.process_instance_id is None
    # The store kept nothing else of the job.
    assert app.store.get_job(handle.id) is None


def test_a_failed_attempt_then_success_keeps_both(app: App, types: dict[str, Any]) -> None:
    handle = types["add"].enqueue({"a": 1, "b": 1})
    assert fail(app, take(app, "w1"), raised(OSError("disk"))) is rexec.JobState.READY
    assert handle.status() is JobStatus.QUEUED
    assert [e.message for e in handle.info().errors] == ["disk"]
    complete(app, take(app, "w2"), 2)
    info = handle.info()
    assert info.status is JobStatus.COMPLETED and info.return_value == 2
    assert info.attempts == 2 and info.worker_ids == ("w1", "w2")
    assert info.errors[0].exception == "builtins.OSError"
    assert "OSError: disk" in info.errors[0].traceback and info.errors[0].at_ms > 0


def test_scheduled_delay_and_at(app: App, types: dict[str, Any]) -> None:
    later = types["add"].enqueue({"a": 1, "b": 1}, delay=timedelta(hours=1))
    assert later.status() is JobStatus.SCHEDULED
    at = datetime.now(UTC) + timedelta(days=1)
    handle = types["add"].enqueue({"a": 1, "b": 1}, at=at)
    assert handle.status() is JobStatus.SCHEDULED
    assert handle.info().due_ms == int(at.timestamp() * 1000)
    ms = types["add"].enqueue({"a": 1, "b": 1}, delay=60_000)
    assert ms.status() is JobStatus.SCHEDULED


def test_an_incident_and_its_deletion_are_failures(app: App, types: dict[str, Any]) -> None:
    handle = types["add"].enqueue({"a": 1, "b": 1})
    for _ in range(3):
        fail(app, take(app), raised(ValueError("bad input")))
    assert handle.status() is JobStatus.INCIDENT
    with pytest.raises(JobFailedError) as caught:
        handle.result(timeout=5)
    assert caught.value.error is not None and caught.value.error.message == "bad input"
    assert "ValueError: bad input" in caught.value.error.traceback
    assert caught.value.info.attempts == 3
    assert app.store.delete([handle.id]) == [rexec.store.Status.OK]
    assert handle.status() is JobStatus.FAILED
    with pytest.raises(JobFailedError, match="failed"):
        handle.result()


def test_a_deleted_job_is_deleted(app: App, types: dict[str, Any]) -> None:
    handle = types["add"].enqueue({"a": 1, "b": 1})
    app.store.delete([handle.id])
    assert handle.status() is JobStatus.DELETED
    with pytest.raises(JobDeletedError):
        handle.result()


def test_result_waits_and_times_out(app: App, types: dict[str, Any]) -> None:
    handle = types["add"].enqueue({"a": 1, "b": 1})
    with pytest.raises(JobResultTimeoutError, match="still queued"):
        handle.result(timeout=timedelta(milliseconds=30))
    job = take(app)
    threading.Timer(0.1, complete, (app, job, 2)).start()
    assert handle.result(timeout=20) == 2


def test_damaged_records_give_clear_errors(app: App, types: dict[str, Any]) -> None:
    handle = types["add"].enqueue({"a": 1, "b": 1})
    k = app.store.keys
    app.client.hset(k.results, handle.id, b"garbage")
    app.client.hset(k.results, handle.id + "|e", b"12,x:broken")
    assert handle.status() is JobStatus.QUEUED and handle.info().errors == ()
    app.client.hset(k.jobs, handle.id, b"not|a|record")
    with pytest.raises(rexec.ScriptError, match="not one rexec wrote"):
        handle.status()


def test_types_without_results(app: App, types: dict[str, Any]) -> None:
    handle = types["plain"].enqueue()
    with pytest.raises(ResultNotKeptError, match="keeps no results"):
        handle.result(timeout=10)
    app.store.complete_many([take(app)])
    assert handle.status() is JobStatus.UNKNOWN
    assert app.handle("123456").status() is JobStatus.UNKNOWN
    with pytest.raises(JobNotFoundError):
        app.handle("123456").result()


def test_results_expire(app: App, types: dict[str, Any]) -> None:
    @app.job("brief", keep_result=1, exclusive=False)
    def brief(ctx: Any, payload: Any) -> int:
        return 1

    app.deploy()
    first = brief.enqueue()
    complete(app, take(app), "first")
    assert first.result() == "first"
    time.sleep(1.05)
    assert first.status() is JobStatus.UNKNOWN  # past its time, even before it is trimmed
    second = brief.enqueue()
    complete(app, take(app), "second")
    k = app.store.keys
    assert app.client.hexists(k.results, first.id) is False
    assert app.client.zscore(k.result_expiry, first.id) is None
    assert second.result() == "second"


def test_a_type_that_stops_keeping_results_leaves_nothing(app: App) -> None:
    @app.job("fickle", keep_result=60, exclusive=False)
    def fickle(ctx: Any, payload: Any) -> int:
        return 1

    app.deploy()
    handles = fickle.enqueue_many([1, 2, 3])
    fail(app, take(app), raised(OSError("first try")))
    k = app.store.keys
    assert app.client.hlen(k.results) == 5  # three metas, an error and a worker id
    del app.definitions["fickle"]
    app.job("fickle", exclusive=False)(fickle.handler)
    app.deploy()
    complete(app, take(app), 1)
    pi = app.start_process_instance({})
    app.store.commit(take(app), rexec.store.Effects(variables_pi=None), result=pack(2))
    assert app.store.delete([h.id for h in handles]).count(rexec.store.Status.OK) == 1
    assert app.client.hlen(k.results) == 0 and pi
    assert [h.status() for h in handles] == [JobStatus.UNKNOWN] * 3


def test_check_finds_and_repairs_results_that_would_never_go(
    app: App, types: dict[str, Any]
) -> None:
    from rexec.check import Kind, check, repair

    done = types["add"].enqueue({"a": 1, "b": 1})
    complete(app, take(app), 2)
    live = types["add"].enqueue({"a": 1, "b": 1})
    k = app.store.keys
    app.client.zrem(k.result_expiry, done.id)
    app.client.hset(k.results, "777777", b"|add||7fffffffffffffff|1|1||||0|")
    app.client.hset(k.results, "777777|e", b"junk")
    found = {(v.kind, v.job_id) for v in check(app.store)}
    assert found == {(Kind.RESULT, done.id), (Kind.RESULT, "777777")}
    assert len(repair(app.store)) == 2
    assert check(app.store) == []
    assert app.client.hget(k.results, "777777|e") is None
    assert live.status() is JobStatus.QUEUED
    complete(app, take(app), 2)  # the next write trims the one given an expiry now
    assert done.status() is JobStatus.UNKNOWN and not app.client.hexists(k.results, done.id)
    assert live.result() == 2


def test_results_are_capped_per_namespace(app: App, types: dict[str, Any]) -> None:
    app.store.set_result_cap(3)
    assert app.store.result_cap() == 3
    handles = types["add"].enqueue_many([{"a": i, "b": 0} for i in range(6)])
    for i in range(6):
        complete(app, take(app), i)
    k = app.store.keys
    assert app.client.zcard(k.result_expiry) == 3
    kept = [h.status() for h in handles]
    assert kept.count(JobStatus.COMPLETED) == 3 and kept.count(JobStatus.UNKNOWN) == 3
    # Only finished jobs' results count (and go); a live job keeps its meta.
    live = types["add"].enqueue({"a": 0, "b": 0})
    complete(app, take(app), 0)
    assert app.client.hexists(k.results, live.id)
    app.store.set_result_cap(None)
    assert app.store.result_cap() == rexec.handles.DEFAULT_RESULT_CAP
    with pytest.raises(ValidationError):
        app.store.set_result_cap(0)


def test_keep_result_is_in_the_stored_definition(app: App, types: dict[str, Any]) -> None:
    stored = app.store.definitions()
    assert stored["add"].keep_result_ms == 60_000 and stored["plain"].keep_result_ms is None
    assert stored["picky"].retry_on == ("builtins.ConnectionError",)
    assert stored["picky"].no_retry_on == (f"{__name__}.Transient",)
    # A producer without the handlers reads results all the same.
    other = App.with_client(app.client, namespace=app.namespace)
    handle = other.enqueue("add", {"a": 2, "b": 2})
    complete(app, take(app), 4)
    assert other.handle(handle).result() == 4
    # A plain definition keeps its old record (and fingerprint).
    record = app.client.hget(app.store.keys.definitions, "plain")
    assert record is not None and len(record.split(b"|")) == 14
    assert parse_definition("plain", record.decode()) is not None


def test_results_of_a_commit_with_effects(app: App, types: dict[str, Any]) -> None:
    pi = app.start_process_instance({"n": 1})
    handle = types["add"].enqueue({"a": 1, "b": 1}, process_instance_id=pi)
    job = take(app)
    effects = rexec.store.Effects(jobs=(rexec.store.NewBranch(rexec.NewJob(type="plain")),))
    app.store.commit(job, effects, result=pack({"ok": [1, 2]}), started_ms=5)
    info = handle.info()
    assert info.status is JobStatus.COMPLETED and info.return_value == {"ok": [1, 2]}
    assert info.started_at_ms == 5 and info.process_instance_id == pi


# -- unique keys -----------------------------------------------------------------------------


def test_a_key_gives_the_existing_job(app: App, types: dict[str, Any]) -> None:
    add = types["add"]
    first = add.enqueue({"a": 1, "b": 1}, key="order-42")
    again = add.enqueue({"a": 9, "b": 9}, key="order-42")
    assert again.id == first.id
    assert app.enqueue("plain", key="order-42") == first.id  # across the namespace
    assert app.store.state_counts(app.store.time_ms())["total"] == 1
    other = add.enqueue({"a": 1, "b": 1}, key="order-43")
    assert other.id != first.id
    # Running still holds it; completion frees it.
    job = take(app)
    assert job.id == first.id and add.enqueue(key="order-42").id == first.id
    complete(app, job, 2)
    fresh = add.enqueue({"a": 1, "b": 1}, key="order-42")
    assert fresh.id not in (first.id, other.id)


def test_every_way_out_frees_a_key(app: App, types: dict[str, Any]) -> None:
    add = types["add"]
    k = app.store.keys
    deleted = add.enqueue(key="k")
    app.store.delete([deleted.id])
    first = add.enqueue(key="k")
    assert first.id != deleted.id
    assert fail(app, take(app), raised(Fail("stop")), give_up=True) is rexec.JobState.INCIDENT
    # An incident frees its key: the next enqueue makes a new job.
    second = add.enqueue(key="k")
    assert second.id != first.id and add.enqueue(key="k").id == second.id
    # Resolving the incident while another job holds the key: it runs without one.
    app.store.set_retries([first.id], 1)
    assert add.enqueue(key="k").id == second.id
    assert app.client.hget(k.job_keys, first.id) is None
    # Resolving it while nobody holds it: it takes its key back.
    complete(app, take(app), 0)
    complete(app, take(app), 0)
    third = add.enqueue(key="k3")
    fail(app, take(app), raised(Fail("stop")), give_up=True)
    assert app.client.hget(k.unique_keys, "k3") is None
    app.store.set_retries([third.id], 2)
    assert add.enqueue(key="k3").id == third.id
    app.store.set_retries([third.id], 0)  # an operator makes it an incident: key freed
    assert add.enqueue(key="k3").id != third.id
    app.store.delete([third.id])
    complete(app, take(app), 0)
    assert app.client.hlen(k.unique_keys) == 0 and app.client.hlen(k.job_keys) == 0
    assert check_clean(app)


def check_clean(app: App) -> bool:
    from rexec.check import check

    return check(app.store) == []


def test_keys_within_one_call(app: App, types: dict[str, Any]) -> None:
    ids = app.enqueue_many(
        [
            {"type": "add", "payload": 1, "key": "a"},
            {"type": "add", "payload": 2},
            {"type": "add", "payload": 3, "key": "a"},
            {"type": "add", "payload": 4, "key": "b"},
        ]
    )
    assert ids[0] == ids[2] and len(set(ids)) == 3
    assert app.store.get_job(ids[0]).payload == 1  # type: ignore[union-attr]


def test_keys_across_chunks_and_not_on_follow_ups(app: App, types: dict[str, Any]) -> None:
    jobs = [rexec.NewJob("add", unique_key=f"c{i % 3}") for i in range(7)]
    ids = app.store.enqueue(jobs, chunk=2)
    assert len(ids) == 7 and len(set(ids)) == 3
    assert ids[:3] * 2 + ids[:1] == ids
    from rexec.context import JobContext

    job = take(app)
    ctx = JobContext(job, app, "w1", frozenset({"add"}))
    with pytest.raises(ValidationError, match="cannot take a unique key"):
        ctx.enqueue("add", key="follow")
    with pytest.raises(ValidationError, match="cannot take a unique key"):
        ctx.fork([{"type": "add", "key": "branch"}], join="add")
    assert ctx.effects().empty


def test_bad_keys_write_nothing(app: App, types: dict[str, Any]) -> None:
    add = types["add"]
    for bad in ("", "x" * (MAX_UNIQUE_KEY_BYTES + 1), "é" * 129, 42, "\udcff"):
        with pytest.raises(UniqueKeyError):
            add.enqueue(key=bad)  # type: ignore[arg-type]
    with pytest.raises(UniqueKeyError):
        app.enqueue_many([{"type": "add"}, {"type": "add", "key": "y" * 300}])
    assert written(app) == 0
    assert add.enqueue(key="y" * MAX_UNIQUE_KEY_BYTES).status() is JobStatus.QUEUED


def _enqueue_keyed(url: str, namespace: str, barrier: Any, out: Any) -> None:
    app = App(url, namespace=namespace)
    barrier.wait()
    out.put(app.enqueue("add", {"a": 1, "b": 1}, key="race"))
    app.close()


def test_racing_enqueuers_get_one_job(app: App, types: dict[str, Any]) -> None:
    ids: list[str] = []
    barrier = threading.Barrier(8)
    lock = threading.Lock()

    def enqueue() -> None:
        barrier.wait()
        job_id = types["add"].enqueue({"a": 1, "b": 1}, key="race").id
        with lock:
            ids.append(job_id)

    threads = [threading.Thread(target=enqueue) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 8 and len(set(ids)) == 1
    assert app.store.state_counts(app.store.time_ms())["total"] == 1


def test_racing_processes_get_one_job(redis_url: str, namespace: str) -> None:
    app = App(redis_url, namespace=namespace)
    make(app)
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(4), ctx.Queue()
    procs = [
        ctx.Process(target=_enqueue_keyed, args=(redis_url, namespace, barrier, out))
        for _ in range(4)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    ids = {out.get(timeout=10) for _ in procs}
    assert len(ids) == 1
    assert app.store.state_counts(app.store.time_ms())["total"] == 1
    app.close()


def test_check_finds_and_repairs_stale_keys(app: App, types: dict[str, Any]) -> None:
    from rexec.check import Kind, check, repair

    handle = types["add"].enqueue(key="kept")
    unpaired = types["add"].enqueue(key="unpaired")
    k = app.store.keys
    app.client.hset(k.unique_keys, "ghost", "999999")
    app.client.hset(k.job_keys, "999998", "nobody")
    app.client.hdel(k.job_keys, unpaired.id)
    incident = types["add"].enqueue(key="incident")
    raw = app.client.hget(k.jobs, incident.id)
    fields = raw.split(b"|")
    fields[3] = b"0"  # an incident written by hand, still holding its key
    app.client.hset(k.jobs, incident.id, b"|".join(fields))
    found = check(app.store)
    assert {(v.kind, v.key, v.item or v.job_id) for v in found} == {
        (Kind.UNIQUE_KEY, "unique_keys", "ghost"),
        (Kind.UNIQUE_KEY, "job_keys", "999998"),
        (Kind.UNIQUE_KEY, "unique_keys", "unpaired"),
        (Kind.UNIQUE_KEY, "unique_keys", "incident"),
    } | {(v.kind, v.key, v.item or v.job_id) for v in found if v.kind != Kind.UNIQUE_KEY}
    assert len([v for v in repair(app.store) if v.kind == Kind.UNIQUE_KEY]) == 4
    assert [v for v in check(app.store) if v.kind == Kind.UNIQUE_KEY] == []
    assert app.client.hget(k.unique_keys, "kept") == handle.id.encode()
    assert app.client.hget(k.unique_keys, "ghost") is None
    app.store.complete_many([take(app), take(app)])
    assert app.client.hkeys(k.unique_keys) == []  # the repaired key is freed on leaving


# -- retry policies ----------------------------------------------------------------------------


def test_retry_on_retries_only_what_it_names(app: App, types: dict[str, Any]) -> None:
    h = types["picky"].enqueue()
    assert fail(app, take(app), raised(ConnectionResetError("reset"))) is rexec.JobState.READY
    assert fail(app, take(app), raised(KeyError("nope"))) is rexec.JobState.INCIDENT
    assert h.status() is JobStatus.INCIDENT
    assert [e.exception for e in h.info().errors] == [
        "builtins.ConnectionResetError",
        "builtins.KeyError",
    ]


def test_no_retry_on_wins(app: App, types: dict[str, Any]) -> None:
    types["picky"].enqueue()
    assert fail(app, take(app), raised(Transient("named"))) is rexec.JobState.INCIDENT
    types["lookup"].enqueue()
    assert fail(app, take(app), raised(KeyError("sub"))) is rexec.JobState.INCIDENT
    types["lookup"].enqueue()
    assert fail(app, take(app), raised(ValueError("other"))) is rexec.JobState.READY


def test_fail_goes_straight_to_an_incident(app: App, types: dict[str, Any]) -> None:
    h = types["add"].enqueue()
    assert fail(app, take(app), raised(Fail("no way")), give_up=True) is rexec.JobState.INCIDENT
    job = app.store.get_job(h.id)
    assert job is not None and job.retries == 0
    with pytest.raises(JobFailedError, match="no way") as caught:
        h.result()
    assert caught.value.error is not None and caught.value.error.exception == "rexec.errors.Fail"


# -- bad input ------------------------------------------------------------------------------


def test_bad_enqueue_input_writes_nothing(app: App, types: dict[str, Any]) -> None:
    add = types["add"]
    naive = datetime.now() + timedelta(hours=1)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"at": naive}, "timezone-aware"),
        ({"at": "tomorrow"}, "must be a datetime"),
        ({"delay": 5, "at": datetime.now(UTC)}, "not both"),
        ({"delay": timedelta(seconds=-1)}, "negative"),
        ({"delay": -5}, "between 0"),
        ({"delay": 1.5}, "integer"),
        ({"priority": "high"}, "priority"),
        ({"process_instance_id": "no-such"}, "no process instance"),
    ]
    for kwargs, text in cases:
        with pytest.raises(rexec.RexecError, match=text):
            add.enqueue(1, **kwargs)
    with pytest.raises(PayloadError):
        add.enqueue({1, 2})
    with pytest.raises(ValidationError, match="iterable of payloads"):
        add.enqueue_many("abc")
    with pytest.raises(PayloadError):
        add.enqueue_many([1, 2, object()])
    assert written(app) == 0


def test_bad_job_options_are_refused(app: App) -> None:
    for kwargs, text in [
        ({"keep_result": 0}, "1 s to 366 days"),
        ({"keep_result": "1h"}, "seconds or a timedelta"),
        ({"keep_result": timedelta(days=400)}, "366 days"),
        ({"retry_on": (ValueError, "KeyError")}, "exception classes"),
        ({"retry_on": "ValueError"}, "tuple of exception classes"),
        ({"no_retry_on": (int,)}, "exception classes"),
    ]:
        with pytest.raises(ValidationError, match=text):
            app.job("t", **kwargs)
    assert app.definitions == {}


def test_unknown_types_are_said(app: App, caplog: pytest.LogCaptureFixture) -> None:
    make(app)
    app.enqueue("add")
    app.enqueue("emial")
    app.enqueue("emial")
    said = [r.getMessage() for r in caplog.records if "neither registered" in r.getMessage()]
    assert len(said) == 1 and "'emial'" in said[0]


# -- async producers -------------------------------------------------------------------------


@pytest.fixture
def async_app(client: redis.Redis, namespace: str, redis_url: str) -> Iterator[App]:
    if isinstance(client, fakeredis.FakeRedis):
        server = client.connection_pool.connection_kwargs["server"]
        aclient: Any = fakeredis.FakeAsyncRedis(server=server)
    else:
        aclient = redis.asyncio.Redis.from_url(redis_url)
    yield App.with_client(client, namespace=namespace, aclient=aclient)


def test_async_producers_and_handles(async_app: App) -> None:
    app = async_app
    types = make(app)

    async def main() -> None:
        handle = await types["add"].aenqueue({"a": 4, "b": 5}, key="async")
        again = await types["add"].aenqueue({"a": 4, "b": 5}, key="async")
        assert again.id == handle.id
        assert await handle.astatus() is JobStatus.QUEUED
        ids = await app.aenqueue_many([{"type": "plain"}, {"type": "plain"}])
        assert len(set(ids)) == 2
        assert await app.aenqueue("add", {"a": 0, "b": 0}, delay_ms=60_000)
        many = await types["add"].aenqueue_many([{"a": 1, "b": 1}])
        assert await many[0].astatus() is JobStatus.QUEUED
        job = take(app)
        assert job.id == handle.id
        threading.Timer(0.05, complete, (app, job, 9)).start()
        assert await handle.aresult(timeout=20) == 9
        assert (await handle.ainfo()).return_value == 9
        with pytest.raises(JobResultTimeoutError):
            await many[0].aresult(timeout=0.02)
        with pytest.raises(ValidationError):
            await types["add"].aenqueue(at=datetime.now())
        await app.aclose()

    asyncio.run(main())


# -- a real worker node ------------------------------------------------------------------------


@pytest.fixture
def results_cluster(redis_url: str, namespace: str, tmp_path: Path) -> Iterator[Cluster]:
    from tests.apps.results import make_app

    cluster = Cluster(redis_url, namespace, tmp_path, app_path="tests.apps.results:app")
    cluster.app.close()
    cluster.app = make_app(redis_url, namespace)
    try:
        yield cluster
    finally:
        cluster.close()


def test_a_worker_node_keeps_results_and_errors(results_cluster: Cluster) -> None:
    cluster = results_cluster
    app = cluster.app
    cluster.start_node(processes=1, concurrency=4)
    cluster.wait_for_workers(1)
    add, aadd = app.definitions["add"], app.definitions["aadd"]
    assert add.keep_result_ms == 60_000 and aadd.is_async
    handles = [app.handle(app.enqueue("add", {"a": i, "b": 1})) for i in range(5)]
    ahandle = app.handle(app.enqueue("aadd", {"a": 20, "b": 22}))
    assert [h.result(timeout=20) for h in handles] == [1, 2, 3, 4, 5]
    assert ahandle.result(timeout=20) == 42
    info = handles[0].info()
    assert info.attempts == 1 and len(info.worker_ids) == 1 and info.worker_ids[0]
    assert info.started_at_ms is not None and info.finished_at_ms is not None

    boom = app.handle(app.enqueue("explode", "kaboom"))
    with pytest.raises(JobFailedError) as caught:
        boom.result(timeout=20)
    error = caught.value.error
    assert error is not None and error.exception == "builtins.ValueError"
    assert error.message == "kaboom"
    assert "Traceback" in error.traceback and "raise ValueError(str(payload))" in error.traceback

    odd = app.handle(app.enqueue("unencodable"))
    with pytest.raises(JobFailedError, match="msgpack cannot encode"):
        odd.result(timeout=20)

    stop = app.handle(app.enqueue("give_up", "enough"))
    with pytest.raises(JobFailedError, match="enough"):
        stop.result(timeout=20)
    assert stop.info().attempts == 1  # not retried, though 5 executions were allowed

    picky = app.handle(app.enqueue("picky", "key"))
    with pytest.raises(JobFailedError):
        picky.result(timeout=20)
    assert picky.info().attempts == 1
    retried = app.handle(app.enqueue("picky", "connection"))
    with pytest.raises(JobFailedError):
        retried.result(timeout=20)
    assert retried.info().attempts == 3

    pi = app.start_process_instance({"forwarded": False})
    forward = app.handle(app.enqueue("forward", process_instance_id=pi))
    assert forward.result(timeout=20) == "forwarded"
    assert app.get_variables(pi)["forwarded"] is True


def test_results_survive_a_real_redis(namespace: str) -> None:
    """A result written by one connection is read by another after the first closed."""
    server = RedisServer().start()
    try:
        app = App(server.url, namespace=namespace)
        types = make(app)
        handle = types["add"].enqueue({"a": 1, "b": 2})
        complete(app, take(app), 3)
        app.close()
        reader = App(server.url, namespace=namespace)
        assert reader.handle(handle.id).result() == 3
        reader.close()
    finally:
        server.stop()


# -- operators see finished jobs -----------------------------------------------------------------


def test_rexec_job_shows_a_kept_result(monkeypatch: pytest.MonkeyPatch, namespace: str) -> None:
    import json

    from click.testing import CliRunner

    import rexec.app
    from rexec.cli import main

    server = fakeredis.FakeServer()
    monkeypatch.setattr(rexec.app, "connect", lambda url: fakeredis.FakeRedis(server=server))
    app = App("redis://fake", namespace=namespace)
    types = make(app)
    done = types["add"].enqueue({"a": 1, "b": 2})
    complete(app, take(app, "w9"), {"sum": 3})
    broken = types["add"].enqueue({"a": 1, "b": 2})
    fail(app, take(app), raised(Fail("cannot")), give_up=True)
    app.store.delete([broken.id])
    runner = CliRunner(env={"COLUMNS": "200", "REXEC_REDIS_URL": None, "REXEC_NAMESPACE": None})
    where = ["--redis-url", "redis://fake", "--namespace", namespace]
    shown = runner.invoke(main, ["job", done.id, "--json", *where])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert data["result"]["status"] == "completed"
    assert data["result"]["return_value"] == {"sum": 3}
    assert data["result"]["worker_ids"] == ["w9"]
    table = runner.invoke(main, ["job", broken.id, *where])
    assert table.exit_code == 0, table.output
    assert "failed" in table.stdout and "rexec.errors.Fail" in table.stdout
    gone = runner.invoke(main, ["job", "424242", *where])
    assert gone.exit_code != 0 and "no result kept" in gone.stderr
    app.close()
