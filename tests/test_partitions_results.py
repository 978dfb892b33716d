"""Handles, kept results, unique keys, retry policies and periodic schedules on a
partitioned namespace (rexec/partitions.py): each routed to the right partition, the
namespace-wide ones fanned out, and ``rexec check`` clean over every partition."""

from __future__ import annotations

import asyncio
import threading
import traceback
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
import redis.asyncio

from rexec import App, JobFailedError, JobState, JobStatus
from rexec import periodic as p
from rexec.check import Kind, check, repair
from rexec.codec import pack
from rexec.connection import connect
from rexec.job import Job
from rexec.partitions import PartitionedStore, open_layout
from rexec.status import Status
from rexec.store import NewJob, Store
from rexec.topology import ClusterTopology
from tests.harness import Cluster
from tests.test_handles import Transient, make
from tests.test_periodic import day_ago, jobs_of


def partitioned(client: redis.Redis, namespace: str, count: int = 3, **kwargs: Any) -> App:
    app = App.with_client(client, namespace=namespace, partitions=count, **kwargs)
    assert isinstance(app.store, PartitionedStore)
    return app


def store_of(app: App) -> PartitionedStore:
    assert isinstance(app.store, PartitionedStore)
    return app.store


def part_of(app: App, job_id: str) -> int:
    part = store_of(app).layout.of_job(job_id)
    assert part is not None
    return part


def take_all(app: App, n: int, owner: str = "w1") -> list[Job]:
    jobs = app.store.acquire_jobs(owner, n).jobs
    assert len(jobs) == n, jobs
    return jobs


def one_in_each(app: App, job_type: str, payloads: list[Any]) -> list[str]:
    """Enqueues ``payloads`` (round-robin: they spread over the partitions)."""
    ids = app.enqueue_many([{"type": job_type, "payload": x} for x in payloads])
    assert {part_of(app, i) for i in ids} == {0, 1, 2}
    return ids


# -- handles and results -----------------------------------------------------------------------


def test_handles_follow_jobs_of_every_partition_to_their_results(
    client: redis.Redis, namespace: str
) -> None:
    app = partitioned(client, namespace)
    make(app)
    ids = one_in_each(app, "add", [{"a": i, "b": 1} for i in range(6)])
    handles = [app.handle(i) for i in ids]
    assert [h.status() for h in handles] == [JobStatus.QUEUED] * 6
    jobs = take_all(app, 6)
    assert {h.status() for h in handles} == {JobStatus.RUNNING}
    by_id = {job.id: job for job in jobs}
    ordered = [by_id[i] for i in ids]
    # One call over three partitions (one pipeline per server), each result kept in its
    # own job's partition.
    values = [pack(i + 1) for i in range(6)]
    assert app.store.complete_many(ordered, values, [None] * 6) == [Status.OK] * 6
    assert [h.result(timeout=5) for h in handles] == [1, 2, 3, 4, 5, 6]
    for handle in handles:
        part = store_of(app).parts[part_of(app, handle.id)]
        assert client.hexists(part.keys.results, handle.id)
        assert handle.info().attempts == 1


def test_failures_and_retry_policies_in_every_partition(
    client: redis.Redis, namespace: str
) -> None:
    app = partitioned(client, namespace)
    make(app)
    ids = one_in_each(app, "picky", [None] * 3)
    for job in take_all(app, 3):
        # retry_on=ConnectionError, no_retry_on=Transient: Transient is not retried
        error: BaseException = Transient("not this") if job.id == ids[0] else KeyError("x")
        details = "".join(traceback.format_exception(error))
        assert app.store.fail(job, error, details=details) is JobState.INCIDENT
    for job_id in ids:
        with pytest.raises(JobFailedError) as caught:
            app.handle(job_id).result(timeout=1)
        assert caught.value.error is not None
        assert caught.value.error.exception in ("tests.test_handles.Transient", "builtins.KeyError")
    retried = one_in_each(app, "picky", [None] * 3)
    for job in take_all(app, 3):
        assert app.store.fail(job, ConnectionError("again"), started_ms=1) is JobState.READY
    assert {app.handle(i).status() for i in retried} == {JobStatus.QUEUED}
    assert {len(app.handle(i).info().errors) for i in retried} == {1}
    for job in take_all(app, 3):
        assert app.store.fail(job, "gave up", give_up=True) is JobState.INCIDENT
    assert {app.handle(i).status() for i in retried} == {JobStatus.INCIDENT}


def test_a_commit_keeps_its_result_in_the_jobs_partition(
    client: redis.Redis, namespace: str
) -> None:
    from rexec.store import Effects

    app = partitioned(client, namespace)
    make(app)
    ids = one_in_each(app, "add", [{"a": 1, "b": 1}] * 3)
    for job in take_all(app, 3):
        app.store.commit(job, Effects(), result=pack(f"r{job.id}"), started_ms=5)
    assert [app.handle(i).result(timeout=1) for i in ids] == [f"r{i}" for i in ids]


def test_an_id_beyond_the_layout_is_unknown(client: redis.Redis, namespace: str) -> None:
    app = partitioned(client, namespace)
    make(app)
    assert app.handle(str(10**13 * 200)).status() is JobStatus.UNKNOWN


def test_the_result_cap_is_per_partition(client: redis.Redis, namespace: str) -> None:
    app = partitioned(client, namespace)
    make(app)
    app.store.set_result_cap(2)
    assert app.store.result_cap() == 2
    parts = store_of(app).parts
    assert [part.result_cap() for part in parts] == [2, 2, 2]
    ids = one_in_each(app, "add", [{"a": i, "b": 0} for i in range(12)])
    jobs = {job.id: job for job in take_all(app, 12)}
    for job_id in ids:
        app.store.complete_many([jobs[job_id]], [pack(1)], [None])
    kept = [int(client.zcard(part.keys.result_expiry)) for part in parts]
    assert kept == [2, 2, 2]
    with pytest.raises(Exception, match="result cap"):
        app.store.set_result_cap(0)
    assert [part.result_cap() for part in parts] == [2, 2, 2]  # nothing written
    app.store.set_result_cap(None)
    assert [part.result_cap() for part in parts] == [100_000] * 3


# -- unique keys -------------------------------------------------------------------------------


def test_a_key_finds_its_job_in_whichever_partition_its_key_routes_to(
    client: redis.Redis, namespace: str
) -> None:
    app = partitioned(client, namespace)
    types = make(app)
    store = store_of(app)
    first = {f"k{i}": types["add"].enqueue({"a": i, "b": 0}, key=f"k{i}").id for i in range(12)}
    assert {part_of(app, i) for i in first.values()} == {0, 1, 2}
    for key, job_id in first.items():
        assert part_of(app, job_id) == store.partition_of_key(key)
    # Another producer (its round-robin elsewhere) gets the same jobs back.
    other = partitioned(client, namespace)
    for _ in range(3):
        again = {key: other.enqueue("add", {"a": 0, "b": 0}, key=key) for key in first}
        assert again == first
    assert app.store.state_counts(app.store.time_ms())["total"] == 12
    # Done, the key is free again: the next job with it goes to the same partition.
    jobs = {job.id: job for job in take_all(app, 12)}
    app.store.complete_many([jobs[first["k3"]]], [pack(3)], [None])
    fresh = app.enqueue("add", {"a": 0, "b": 0}, key="k3")
    assert fresh != first["k3"] and part_of(app, fresh) == part_of(app, first["k3"])


def test_a_key_with_an_instance_is_unique_within_the_instances_partition(
    client: redis.Redis, namespace: str
) -> None:
    app = partitioned(client, namespace)
    make(app)
    store = store_of(app)
    pis = app.start_process_instances([{} for _ in range(3)])
    by_part = {store.layout.of_instance(pi): pi for pi in pis}
    assert set(by_part) == {0, 1, 2}
    home = store.partition_of_key("shared")
    elsewhere = by_part[(home + 1) % 3]
    plain = app.enqueue("add", key="shared")
    with_pi = app.enqueue("add", key="shared", process_instance_id=elsewhere)
    assert part_of(app, plain) == home
    assert part_of(app, with_pi) == store.layout.of_instance(elsewhere)
    assert with_pi != plain  # two partitions, two jobs: documented
    at_home = app.enqueue("add", key="shared", process_instance_id=by_part[home])
    assert at_home == plain  # the same partition: the same job
    assert app.enqueue("add", key="shared", process_instance_id=elsewhere) == with_pi


def _enqueue_keyed(url: str, namespace: str, barrier: Any, out: Any) -> None:
    app = App(url, namespace=namespace)
    barrier.wait()
    out.put([app.enqueue("add", {"a": 1, "b": 1}, key=f"race{i}") for i in range(6)])
    app.close()


def test_racing_processes_get_one_job_per_key_across_partitions(
    redis_url: str, namespace: str
) -> None:
    import multiprocessing

    app = App(redis_url, namespace=namespace, partitions=3)
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
    got = [out.get(timeout=10) for _ in procs]
    assert all(ids == got[0] for ids in got), got
    assert {part_of(app, i) for i in got[0]} == {0, 1, 2}
    assert app.store.state_counts(app.store.time_ms())["total"] == 6
    assert check(app.store) == []
    app.close()


def test_racing_threads_each_with_its_own_producer(
    real_client: redis.Redis, namespace: str
) -> None:
    base = partitioned(real_client, namespace)
    make(base)
    ids: list[str] = []
    barrier = threading.Barrier(8)
    lock = threading.Lock()

    def enqueue() -> None:
        app = App.with_client(real_client, namespace=namespace)  # reads the stored layout
        barrier.wait()
        job_id = app.enqueue("add", {"a": 1, "b": 1}, key="race")
        with lock:
            ids.append(job_id)

    threads = [threading.Thread(target=enqueue) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 8 and len(set(ids)) == 1
    assert base.store.state_counts(base.store.time_ms())["total"] == 1


@pytest.fixture
def async_app(client: redis.Redis, namespace: str, redis_url: str) -> Iterator[App]:
    if isinstance(client, fakeredis.FakeRedis):
        server = client.connection_pool.connection_kwargs["server"]
        aclient: Any = fakeredis.FakeAsyncRedis(server=server)
    else:
        aclient = redis.asyncio.Redis.from_url(redis_url)
    yield partitioned(client, namespace, aclient=aclient)


def test_async_producers_route_as_the_sync_ones(async_app: App) -> None:
    app = async_app
    types = make(app)
    store = store_of(app)
    pis = app.start_process_instances([{} for _ in range(3)])

    async def main() -> None:
        ids = await app.aenqueue_many([{"type": "plain"} for _ in range(6)])
        assert {part_of(app, i) for i in ids} == {0, 1, 2}
        keyed = [(await types["add"].aenqueue(key=f"a{i}")).id for i in range(9)]
        assert [part_of(app, i) for i in keyed] == [
            store.partition_of_key(f"a{i}") for i in range(9)
        ]
        assert [app.enqueue("add", key=f"a{i}") for i in range(9)] == keyed
        for pi in pis:
            job_id = await app.aenqueue("add", process_instance_id=pi)
            assert part_of(app, job_id) == store.layout.of_instance(pi)
        with pytest.raises(Exception, match="no process instance"):
            await app.aenqueue_many(
                [{"type": "plain"}, {"type": "plain", "process_instance_id": "p999"}]
            )
        assert await app.handle(keyed[0]).astatus() is JobStatus.QUEUED
        job = next(j for j in take_all(app, 18) if j.id == keyed[2])
        app.store.complete_many([job], [pack("done")], [None])
        assert await app.handle(keyed[2]).aresult(timeout=5) == "done"
        await app.aclose()

    asyncio.run(main())
    assert app.store.state_counts(app.store.time_ms())["total"] == 6 + 9 + 3 - 1


# -- check -------------------------------------------------------------------------------------


def test_check_is_clean_with_results_and_keys_in_every_partition_and_finds_their_faults(
    client: redis.Redis, namespace: str
) -> None:
    app = partitioned(client, namespace)
    make(app)
    keyed = [app.enqueue("add", {"a": i, "b": 0}, key=f"c{i}") for i in range(9)]
    plain = one_in_each(app, "add", [{"a": i, "b": 0} for i in range(3)])
    jobs = {job.id: job for job in take_all(app, 12)}
    done = [jobs[i] for i in plain]
    app.store.complete_many(done, [pack(1)] * 3, [None] * 3)
    assert check(app.store) == []
    # A key left pointing at a job that is gone, in the partition of that key.
    store = store_of(app)
    victim = keyed[0]
    part = store.parts[part_of(app, victim)]
    client.hdel(part.keys.jobs, victim)
    found = [v for v in check(app.store) if v.kind is Kind.UNIQUE_KEY]
    assert found and {v.partition for v in found} == {part_of(app, victim)}
    repair(app.store)
    assert [v for v in check(app.store) if v.kind is Kind.UNIQUE_KEY] == []


def test_check_finds_keys_and_schedules_out_of_their_partition(
    client: redis.Redis, namespace: str
) -> None:
    app = partitioned(client, namespace)
    make(app)
    store = store_of(app)
    home = store.partition_of_key("moved")
    away = (home + 1) % 3
    # A producer that routed the key wrongly (written straight into another partition).
    (job_id,) = store.parts[away].enqueue([NewJob("add", unique_key="moved")])
    pi = app.start_process_instances([{} for _ in range(3)])
    for one in pi:  # keys of instance jobs are at home wherever their instance is
        app.enqueue("add", key="inst", process_instance_id=one)
    client.hset(store.parts[away].keys.periodic, "stray", b"x")
    found = {(v.kind, v.partition, v.item, v.job_id) for v in check(app.store)}
    assert found == {
        (Kind.KEY_PARTITION, away, "moved", job_id),
        (Kind.PERIODIC_PARTITION, away, None, None),
    }
    assert not any(v.repairable for v in check(app.store) if v.partition == away)


# -- periodic schedules ------------------------------------------------------------------------


def test_schedules_live_in_partition_0_and_tick_once_per_tick(
    redis_url: str, namespace: str
) -> None:
    producer = App(redis_url, namespace=namespace, partitions=3)
    base = day_ago(producer.store)
    producer.periodic("* * * * * *", "tock", name="fast")
    producer.deploy_periodic(now_ms=base)
    assert [s.name for s in producer.periodic_schedules()] == ["fast"]
    parts = store_of(producer).parts
    assert [int(producer.client.hlen(part.keys.periodic)) for part in parts] == [1, 0, 0]
    steps = [base + 1000 * i for i in range(1, 21)]
    barrier = threading.Barrier(6)
    outcomes: list[p.TickResult] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def ticker() -> None:
        app = App.with_client(connect(redis_url), namespace=namespace)  # the stored layout
        try:
            for now in steps:
                barrier.wait(10)
                result = p.tick(app.store, now)
                with lock:
                    outcomes.extend(result.results)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()
        finally:
            app.client.close()

    threads = [threading.Thread(target=ticker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    created = [r for r in outcomes if r.status == p.CREATED]
    assert sorted(r.tick_ms for r in created) == steps  # one job per tick
    jobs = jobs_of(producer.store, "tock")
    assert sorted(j.due_ms for j in jobs) == steps
    assert {part_of(producer, j.id) for j in jobs} == {0}
    assert producer.unschedule("fast")
    assert producer.periodic_schedules() == []
    assert check(producer.store) == []
    producer.close()


# -- real worker nodes -------------------------------------------------------------------------


@pytest.fixture
def results_cluster(redis_url: str, namespace: str, tmp_path: Path) -> Iterator[Cluster]:
    from tests.apps.results import make_app

    cluster = Cluster(redis_url, namespace, tmp_path, app_path="tests.apps.results:app")
    cluster.app.close()
    assert open_layout(connect(redis_url), namespace, 3).count == 3
    cluster.app = make_app(redis_url, namespace)
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.mark.slow
def test_a_worker_node_keeps_results_and_errors_in_every_partition(
    results_cluster: Cluster,
) -> None:
    cluster = results_cluster
    app = cluster.app
    assert isinstance(app.store, PartitionedStore)
    app.deploy()
    cluster.start_node(processes=2, concurrency=4)
    cluster.wait_for_workers(2)
    ids = app.enqueue_many([{"type": "add", "payload": {"a": i, "b": 1}} for i in range(12)])
    assert {part_of(app, i) for i in ids} == {0, 1, 2}
    assert [app.handle(i).result(timeout=30) for i in ids] == list(range(1, 13))
    keyed = [app.enqueue("aadd", {"a": i, "b": 0}, key=f"w{i}") for i in range(6)]
    assert [app.handle(i).result(timeout=30) for i in keyed] == list(range(6))
    failing = app.enqueue_many([{"type": "explode", "payload": "boom"} for _ in range(3)])
    for job_id in failing:
        with pytest.raises(JobFailedError) as caught:
            app.handle(job_id).result(timeout=30)
        assert caught.value.error is not None
        assert caught.value.error.exception == "builtins.ValueError"
    picky = app.enqueue_many([{"type": "picky", "payload": "connection"} for _ in range(3)])
    for job_id in picky:
        with pytest.raises(JobFailedError):
            app.handle(job_id).result(timeout=30)
        assert app.handle(job_id).info().attempts == 3
    give_up = app.enqueue_many([{"type": "give_up", "payload": "enough"} for _ in range(3)])
    for job_id in give_up:
        with pytest.raises(JobFailedError, match="enough"):
            app.handle(job_id).result(timeout=30)
        assert app.handle(job_id).info().attempts == 1
    assert check(app.store) == []


# -- on a Redis Cluster of 3 masters -----------------------------------------------------------


@pytest.mark.slow
def test_handles_keys_and_schedules_on_a_three_master_cluster(
    redis_cluster: ClusterTopology, namespace: str
) -> None:
    app = App(redis_cluster.url, namespace=namespace, partitions=3)
    make(app)
    store = store_of(app)
    masters = {redis_cluster.master_of(part.keys.jobs).port for part in store.parts}
    assert len(masters) == 3
    ids = one_in_each(app, "add", [{"a": i, "b": 1} for i in range(6)])
    keyed = [app.enqueue("add", {"a": 0, "b": 0}, key=f"x{i}") for i in range(6)]
    assert [app.enqueue("add", key=f"x{i}") for i in range(6)] == keyed
    jobs = {job.id: job for job in take_all(app, 12)}
    assert (
        app.store.complete_many([jobs[i] for i in ids], [pack(n) for n in range(6)], [None] * 6)
        == [Status.OK] * 6
    )
    assert [app.handle(i).result(timeout=5) for i in ids] == list(range(6))
    assert {app.handle(i).status() for i in keyed} == {JobStatus.RUNNING}

    async def from_asyncio() -> list[str]:
        got = [await app.aenqueue("add", key=f"x{i}") for i in range(6)]
        assert await app.handle(ids[0]).aresult(timeout=5) == 0
        await app.aclose()
        return got

    assert asyncio.run(from_asyncio()) == keyed
    base = day_ago(app.store)
    app.periodic("* * * * * *", "tock", name="fast")
    app.deploy_periodic(now_ms=base)
    round_ = p.tick(app.store, base + 3000)
    assert Counter(r.status for r in round_.results) == Counter({p.SKIPPED: 1})
    app.unschedule("fast")
    assert check(app.store) == []
    app.close()


def test_plain_store_keys_of_job_is_its_own(client: redis.Redis, namespace: str) -> None:
    store = Store(client, namespace)
    assert store.keys_of_job("12") == store.keys


def test_the_cockpit_and_rexec_job_tell_a_finished_job_of_any_partition(
    redis_url: str, namespace: str
) -> None:
    from click.testing import CliRunner
    from starlette.testclient import TestClient

    from rexec.cli import main
    from rexec.cockpit.app import create_app

    app = App(redis_url, namespace=namespace, partitions=3)
    make(app)
    ids = one_in_each(app, "add", [{"a": 1, "b": 1}] * 3)
    jobs = {job.id: job for job in take_all(app, 3)}
    app.store.complete_many([jobs[i] for i in ids], [pack("sent")] * 3, [None] * 3)
    with TestClient(create_app(app)) as client:
        for job_id in ids:
            response = client.get(f"/api/jobs/{job_id}")
            assert response.status_code == 404
            assert "no longer queued: completed after 1 attempt(s)" in response.text
            assert "returned 'sent'" in response.text
    env = {"REXEC_REDIS_URL": redis_url, "REXEC_NAMESPACE": namespace}
    shown = CliRunner().invoke(main, ["job", ids[2]], env=env)
    assert shown.exit_code == 0, shown.output
    assert "sent" in shown.output
    app.close()
