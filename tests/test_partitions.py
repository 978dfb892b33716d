"""Partitioned namespaces (rexec/partitions.py): the layout and its conflicts, routing by
id and instance, priority across partitions, management, paging and the invariant
check over every partition, and real worker nodes committing exactly once."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
import redis
from redis.crc import key_slot

from rexec import App, JobState
from rexec.check import check
from rexec.errors import ValidationError
from rexec.keys import Keys
from rexec.paging import JobPager
from rexec.partitions import (
    ID_STRIDE,
    SLOTS,
    PartitionCountError,
    PartitionedStore,
    choose_tags,
    open_layout,
    read_layout,
)
from rexec.status import Status
from rexec.store import NewJob, Store
from rexec.topology import ClusterTopology
from tests.harness import Cluster


def partitioned(client: redis.Redis, namespace: str, count: int = 3) -> App:
    app = App.with_client(client, namespace=namespace, partitions=count)
    assert isinstance(app.store, PartitionedStore)
    return app


def parts(app: App) -> list[Store]:
    return app.store.partition_stores


# -- layout ------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [2, 3, 6, 16, 256])
def test_each_partition_takes_its_own_slice_of_the_slots(count: int) -> None:
    width = SLOTS / count
    for namespace in ("shop", "default", "t0"):
        tags = choose_tags(namespace, count)
        assert tags[0] == "" and len(tags) == count
        slots = [key_slot((tag or namespace).encode()) for tag in tags]
        slices = [int(slot // width) for slot in slots]
        assert sorted(slices) == list(range(count)), (namespace, slots)
        for slot, slice_ in zip(slots[1:], slices[1:], strict=True):
            assert abs(slot + 0.5 - (slice_ + 0.5) * width) <= width / 4  # its middle half
        assert choose_tags(namespace, count) == tags  # deterministic


def owners(namespace: str, tags: tuple[str, ...], masters: int) -> list[int]:
    """The master of each partition, with the slot ranges of equal masters."""
    ranges = [(i * SLOTS // masters, (i + 1) * SLOTS // masters - 1) for i in range(masters)]
    slots = [key_slot((tag or namespace).encode()) for tag in tags]
    return [next(m for m, (lo, hi) in enumerate(ranges) if lo <= s <= hi) for s in slots]


@pytest.mark.parametrize("masters", [2, 3, 4])
def test_as_many_partitions_as_masters_put_one_on_each(masters: int) -> None:
    for i in range(100):
        namespace = f"ns{i}"
        home = key_slot(namespace.encode())
        if any(abs(home - b * SLOTS / masters) < 1 for b in range(1, masters)):
            continue  # partition 0 right on a rounded range edge
        one = owners(namespace, choose_tags(namespace, masters), masters)
        assert sorted(one) == list(range(masters)), namespace
        two = owners(namespace, choose_tags(namespace, 2 * masters), masters)
        assert sorted(two) == sorted(list(range(masters)) * 2), namespace


def test_one_partition_namespace_is_the_namespace_of_before(
    client: redis.Redis, namespace: str
) -> None:
    for partitions in (None, 1):
        app = App.with_client(client, namespace=namespace, partitions=partitions)
        assert type(app.store) is Store
        assert app.store.keys == Keys(namespace)
        job_id = app.enqueue("a")
        assert int(job_id) < ID_STRIDE
    assert client.get(Keys(namespace).partitions) is None  # nothing new is written
    assert client.hexists(f"rexec:{{{namespace}}}:jobs", job_id)


def test_the_count_is_stored_and_read_by_everyone_else(client: redis.Redis, namespace: str) -> None:
    app = partitioned(client, namespace, 4)
    other = App.with_client(client, namespace=namespace)
    assert isinstance(other.store, PartitionedStore)
    assert other.store.layout == app.store.layout
    assert read_layout(client, namespace).count == 4


def test_a_conflicting_count_is_a_clear_error_that_writes_nothing(
    client: redis.Redis, namespace: str
) -> None:
    partitioned(client, namespace, 3)
    with pytest.raises(PartitionCountError) as caught:
        _ = App.with_client(client, namespace=namespace, partitions=2).store
    message = str(caught.value)
    assert "\n" not in message
    assert f"namespace {namespace!r} has 3 partitions, not 2" in message
    # A namespace of one partition that already holds data cannot become partitioned.
    plain = namespace + "x"
    App.with_client(client, namespace=plain).enqueue("a")
    with pytest.raises(PartitionCountError, match="has 1 partition, not 4"):
        _ = App.with_client(client, namespace=plain, partitions=4).store
    assert client.get(Keys(plain).partitions) is None


@pytest.mark.parametrize("bad", [0, -1, 257, True, 2.0, "3"])
def test_bad_partition_counts(bad: object) -> None:
    with pytest.raises(ValidationError, match="partitions must be"):
        App(namespace="shop", partitions=bad)  # type: ignore[arg-type]


def test_an_unreadable_layout_is_a_clear_error(client: redis.Redis, namespace: str) -> None:
    client.set(Keys(namespace).partitions, b"{not json")
    with pytest.raises(Exception, match="unreadable partition layout"):
        open_layout(client, namespace)


# -- routing -----------------------------------------------------------------------------


def test_job_ids_name_their_partition_and_route_every_operation(
    client: redis.Redis, namespace: str
) -> None:
    app = partitioned(client, namespace)
    ids = app.enqueue_many([{"type": "a", "priority": 1} for _ in range(30)])
    layout = app.store.layout
    by_part = Counter(layout.of_job(job_id) for job_id in ids)
    assert by_part == {0: 10, 1: 10, 2: 10}  # jobs without an instance spread evenly
    for job_id in ids:
        k = layout.of_job(job_id)
        assert client.hexists(parts(app)[k].keys.jobs, job_id)
    m = app.management
    for job_id in ids[:3]:
        m.set_job_priority(job_id, 50)
        job = m.get_job(job_id)
        assert job is not None and job.priority == 50
    m.delete_job(ids[3])
    assert m.get_job(ids[3]) is None
    # An id of no partition of this namespace is simply not found.
    assert m.get_job(str(7 * ID_STRIDE + 1)) is None
    assert app.store.delete([str(7 * ID_STRIDE + 1)]) == [Status.NO_SUCH_JOB]
    got = app.store.acquire_jobs("w1", 3)
    assert sorted(job.id for job in got.jobs) == sorted(ids[:3])
    app.store.complete_many(got.jobs)
    assert m.counts()["total"] == 26


def test_an_instance_and_all_its_jobs_live_in_one_partition(
    client: redis.Redis, namespace: str
) -> None:
    app = partitioned(client, namespace)
    layout = app.store.layout
    instances = [app.start_process_instance({"n": i}) for i in range(6)]
    assert Counter(layout.of_instance(pi) for pi in instances) == {0: 2, 1: 2, 2: 2}
    for pi in instances:
        ids = app.enqueue_many([{"type": "x", "process_instance_id": pi} for _ in range(3)])
        assert {layout.of_job(job_id) for job_id in ids} == {layout.of_instance(pi)}
        assert app.get_variables(pi)["n"] == instances.index(pi)
        assert app.management.instance_job_ids(pi) == ids
    pi = instances[1]
    assert app.set_variables(pi, {"m": 1}) == 1
    assert app.management.process_instance(pi)["variables"] == {"n": 1, "m": 1}
    # Exclusive: one batch per instance, never two of one instance at once.
    got = app.store.acquire_jobs("w1", 100)
    assert len(got.batches) == 6
    assert all(len({job.process_instance_id for job in b}) == 1 for b in got.batches)
    assert app.store.acquire_jobs("w2", 100).batches == []
    assert app.management.suspend_process_instance(instances[0]) == 3
    assert app.end_process_instance(instances[2])
    assert check(app.store) == []


# -- priority across partitions ------------------------------------------------------------


def test_high_priority_jobs_of_one_partition_are_acquired_before_low_ones_of_another(
    client: redis.Redis, namespace: str
) -> None:
    app = partitioned(client, namespace)
    low, _, high = parts(app)
    low_ids = low.enqueue([NewJob("a", priority=1, exclusive=False) for _ in range(20)])
    high_ids = high.enqueue([NewJob("a", priority=9, exclusive=False) for _ in range(20)])
    order: list[str] = []
    while got := app.store.acquire_jobs("w", 3).jobs:
        order += [job.id for job in got]
    assert order[:20] == high_ids  # every high one first, in FIFO order
    assert order[20:] == low_ids


def test_one_acquisition_takes_the_best_n_over_all_partitions(
    client: redis.Redis, namespace: str
) -> None:
    app = partitioned(client, namespace)
    jobs = []
    for k, part in enumerate(parts(app)):
        for p in range(10):
            priority = (p * 7 + k * 3) % 17
            [job_id] = part.enqueue([NewJob("a", priority=priority, exclusive=False)])
            jobs.append((priority, job_id))
    best = sorted(p for p, _ in jobs)[-8:]
    got = app.store.acquire_jobs("w", 8)
    assert sorted(job.priority for job in got.jobs) == best
    assert [job.priority for job in got.jobs] == sorted(best, reverse=True)
    assert check(app.store) == []


def test_a_priority_filter_holds_in_every_partition(client: redis.Redis, namespace: str) -> None:
    app = partitioned(client, namespace)
    for k, part in enumerate(parts(app)):
        part.enqueue([NewJob("a", priority=p, exclusive=False) for p in (k, 10 + k)])
    got = app.store.acquire_jobs("w", 10, priority_max=5)
    assert sorted(job.priority for job in got.jobs) == [0, 1, 2]


# -- management, paging and check over the partitions ---------------------------------------


def test_management_lists_counts_and_changes_across_partitions(
    client: redis.Redis, namespace: str
) -> None:
    app = partitioned(client, namespace)
    priorities = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8]
    app.enqueue_many([{"type": "a", "priority": p} for p in priorities])
    app.enqueue("b", delay_ms=60_000)
    m = app.management
    assert m.counts()["ready"] == 12 and m.counts()["scheduled"] == 1
    assert [job.priority for job in m.jobs("ready", limit=100)] == sorted(priorities, reverse=True)
    assert m.counts_by_type()["a"]["ready"] == 12
    assert m.suspend_job_definition("a") == 12
    assert app.store.acquire_jobs("w", 100).jobs == []
    assert m.activate_job_definition("a") == 12
    assert m.set_overriding_job_priority("a", 77, cascade=True) == 12
    assert {job.priority for job in m.jobs("ready", limit=100)} == {77}
    assert {d.type for d in m.job_definitions()} == {"a", "b"}
    assert len(m.job_ids(JobState.READY)) == 12


def test_pages_cover_every_partition_once(client: redis.Redis, namespace: str) -> None:
    app = partitioned(client, namespace)
    ids = app.enqueue_many([{"type": "a", "priority": i % 4} for i in range(25)])
    pager = JobPager(app.store, lambda: ["a"])
    seen: list[str] = []
    cursor = None
    for _ in range(20):
        page, cursor = pager.page(None, None, cursor, 7)
        seen += [job.id for job in page]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids)
    with pytest.raises(ValidationError):
        pager.page(None, None, "P9.r:", 5)


def test_check_runs_on_every_partition_and_names_the_partition(
    client: redis.Redis, namespace: str
) -> None:
    app = partitioned(client, namespace)
    ids = app.enqueue_many([{"type": "a"} for _ in range(9)])
    assert check(app.store) == []
    victim = next(job_id for job_id in ids if app.store.layout.of_job(job_id) == 2)
    client.hdel(parts(app)[2].keys.jobs, victim)  # leaves its index entries behind
    found = check(app.store)
    assert found and {v.partition for v in found} == {2}
    assert {v.job_id for v in found} == {victim}


def test_counters_sum_over_partitions(client: redis.Redis, namespace: str) -> None:
    app = partitioned(client, namespace)
    app.enqueue_many([{"type": "a"} for _ in range(6)])
    got = app.store.acquire_jobs("w", 6)
    app.store.complete_many(got.jobs)
    totals = app.store.counter_totals()
    completed = sum(int(v) for f, v in totals.items() if f.startswith(b"completed|"))
    assert completed == 6


# -- real worker nodes -----------------------------------------------------------------------


@pytest.mark.slow
def test_worker_nodes_commit_each_job_once_over_partitions(cluster: Cluster) -> None:
    layout = open_layout(cluster.app.client, cluster.namespace, 3)
    assert layout.count == 3
    n = 900
    nodes = [cluster.start_node(processes=2, concurrency=4) for _ in range(2)]
    cluster.wait_for_workers(4)
    instances = [cluster.app.start_process_instance({"i": i}) for i in range(6)]
    ids = cluster.app.enqueue_many([{"type": "work", "payload": i} for i in range(n)])
    exclusive: dict[str, list[str]] = {pi: [] for pi in instances}
    for _ in range(4):
        for pi in instances:
            exclusive[pi].append(
                cluster.app.enqueue("work", {"sleep": 0.01}, process_instance_id=pi, exclusive=True)
            )
    assert {layout.of_job(job_id) for job_id in ids} == {0, 1, 2}
    cluster.wait_for(
        lambda: cluster.app.management.counts()["total"] == 0, "every job to be committed"
    )
    for node in nodes:
        assert cluster.stop_node(node) == 0, cluster.node_logs()
    ends = cluster.records("end")
    executions = Counter(r["id"] for r in ends)
    assert set(executions) == set(ids) | {i for pi in instances for i in exclusive[pi]}
    assert [i for i, k in executions.items() if k != 1] == [], "jobs executed more than once"
    assert cluster.stats("job-successful") == n + 24
    for pi in instances:
        runs = sorted((r for r in ends if r["pi"] == pi), key=lambda r: r["started"])
        assert [r["id"] for r in runs] == exclusive[pi]
        for before, after in itertools.pairwise(runs):
            assert after["started"] >= before["time"], "exclusive jobs of an instance overlapped"
    assert check(cluster.app.store) == []


# -- on a Redis Cluster of 3 masters ---------------------------------------------------------


@pytest.mark.slow
def test_partitions_spread_over_a_clusters_masters_and_nodes_drain_them(
    redis_cluster: ClusterTopology, namespace: str, tmp_path: Path
) -> None:
    nodes = Cluster(redis_cluster.url, namespace, tmp_path)
    try:
        app = App(redis_cluster.url, namespace=namespace, partitions=3)
        store = app.store
        masters = {redis_cluster.master_of(part.keys.jobs).port for part in parts(app)}
        assert len(masters) == 3, "each partition on its own master"
        low, high = parts(app)[0], parts(app)[2]
        low_ids = low.enqueue([NewJob("work", priority=1, exclusive=False) for _ in range(10)])
        high_ids = high.enqueue([NewJob("work", priority=9, exclusive=False) for _ in range(10)])
        got = store.acquire_jobs("w", 10)
        assert sorted(job.id for job in got.jobs) == sorted(high_ids)
        store.unlock_many(got.jobs)
        instances = app.start_process_instances([{"i": i} for i in range(6)])
        assert {store.layout.of_instance(pi) for pi in instances} == {0, 1, 2}  # type: ignore[attr-defined]
        ids = app.enqueue_many([{"type": "work", "payload": i} for i in range(300)])
        ids += app.enqueue_many([{"type": "work", "process_instance_id": pi} for pi in instances])
        node = nodes.start_node(processes=2, concurrency=4)
        nodes.wait_for(lambda: app.management.counts()["total"] == 0, "every job to commit")
        assert nodes.stop_node(node) == 0, nodes.node_logs()
        executions = Counter(r["id"] for r in nodes.records("end"))
        assert set(executions) == {*ids, *low_ids, *high_ids}
        assert set(executions.values()) == {1}
        assert check(store) == []
        app.close()
    finally:
        nodes.close()


# -- the CLI -----------------------------------------------------------------------------------


def test_namespace_create_and_show_on_the_command_line(redis_url: str, namespace: str) -> None:
    from click.testing import CliRunner

    from rexec.cli import main

    runner = CliRunner(env={"COLUMNS": "200", "REXEC_REDIS_URL": redis_url})
    created = runner.invoke(main, ["namespace", "create", namespace, "--partitions", "3"])
    assert created.exit_code == 0, created.output
    assert "3 partitions" in created.output
    again = runner.invoke(main, ["namespace", "create", namespace, "--partitions", "3"])
    assert again.exit_code == 0, again.output
    shown = runner.invoke(main, ["namespace", "show", namespace, "--json"])
    assert shown.exit_code == 0, shown.output
    rows = orjson.loads(shown.output)["partitions"]
    assert [row["tag"] for row in rows] == [namespace, *choose_tags(namespace, 3)[1:]]
    conflict = runner.invoke(main, ["namespace", "create", namespace, "--partitions", "5"])
    assert conflict.exit_code != 0
    assert f"namespace {namespace!r} has 3 partitions, not 5" in conflict.output
    assert len(conflict.output.strip().splitlines()) == 1
    enqueued = runner.invoke(main, ["enqueue", "a", "--count", "6", "--namespace", namespace])
    assert enqueued.exit_code == 0, enqueued.output
    listed = runner.invoke(main, ["jobs", "--json", "--namespace", namespace])
    assert listed.exit_code == 0, listed.output
    job_ids = [job["id"] for job in orjson.loads(listed.output)]
    assert len(job_ids) == 6
    app = App(redis_url, namespace=namespace)
    assert {app.store.layout.of_job(job_id) for job_id in job_ids} == {0, 1, 2}  # type: ignore[attr-defined]
    one = runner.invoke(main, ["job", job_ids[-1], "--json", "--namespace", namespace])
    assert one.exit_code == 0, one.output
    assert orjson.loads(one.output)["id"] == job_ids[-1]
    app.close()


def test_a_commit_refuses_a_follow_up_for_an_instance_of_another_partition(
    client: redis.Redis, namespace: str
) -> None:
    from rexec.store import Effects, NewBranch

    app = partitioned(client, namespace)
    layout = app.store.layout
    instances = [app.start_process_instance({}) for _ in range(3)]
    here, elsewhere = instances[0], instances[1]
    assert layout.of_instance(here) != layout.of_instance(elsewhere)
    app.enqueue("a", process_instance_id=here)
    [job] = app.store.acquire_jobs("w", 1).jobs
    foreign = Effects(jobs=(NewBranch(NewJob("b", process_instance_id=elsewhere)),))
    with pytest.raises(ValidationError, match="lives in partition"):
        app.store.commit(job, foreign)
    own = Effects(jobs=(NewBranch(NewJob("b", process_instance_id=here)),))
    assert app.store.commit(job, own) == []
    assert [j.type for j in app.management.instance_jobs(here)] == ["b"]
    assert check(app.store) == []


def test_prometheus_metrics_span_the_partitions(client: redis.Redis, namespace: str) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from rexec.prometheus import render_metrics

    app = partitioned(client, namespace)
    app.enqueue_many([{"type": "mail"}] * 6 + [{"type": "report", "retries": 1}] * 3)
    got = app.store.acquire_jobs("n-1.0.5", 4, types=["mail"])
    app.store.complete_many(got.jobs)
    for job in app.store.acquire_jobs("n-1.0.5", 10, types=["report"]).jobs:
        app.store.fail(job, "boom")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(render_metrics(app).decode())
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float | None:
        wanted = {"namespace": namespace, **labels}
        return samples.get((name, tuple(sorted(wanted.items()))))

    assert value("rexec_jobs", state="ready") == 2
    assert value("rexec_jobs", state="incident") == 3
    assert value("rexec_jobs_finished_total", job_type="mail", outcome="completed") == 4
    assert value("rexec_jobs_finished_total", job_type="report", outcome="incident") == 3


def test_a_worker_process_waits_for_redis_to_open_its_namespace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Opening a store reads the partition layout: a worker process started while
    Redis is away waits for it (as its loops do) instead of dying."""
    from rexec.executor.process import open_store_when_reachable
    from rexec.health import ProcessHealth

    class Flaky:
        def __init__(self, failures: list[BaseException]) -> None:
            self.failures = failures
            self.opened = 0

        def open_store(self) -> object:
            if self.failures:
                raise self.failures.pop(0)
            self.opened += 1
            return object()

    app = Flaky([redis.ConnectionError("refused"), redis.BusyLoadingError("loading")])
    health = ProcessHealth()
    open_store_when_reachable(app, "n1.0.1", health, max_wait_s=0.01)  # type: ignore[arg-type]
    assert app.opened == 1 and not app.failures
    said = [r.getMessage() for r in caplog.records if r.name == "rexec.worker"]
    assert [m.split(" (")[0].split(" after")[0] for m in said] == [
        "n1.0.1: Redis unreachable",
        "n1.0.1: Redis reachable again",
    ]
    bad = Flaky([PartitionCountError("namespace 'x' has 3 partitions, not 2")])
    with pytest.raises(PartitionCountError):
        open_store_when_reachable(bad, "n1.0.1", None)  # type: ignore[arg-type]


def test_an_expired_lock_in_an_otherwise_idle_partition_is_reclaimed(
    client: redis.Redis, namespace: str
) -> None:
    """Acquire is what reclaims expired locks: a partition with nothing ready but an
    expired lock still gets its acquire call, so a crashed worker's job runs again."""
    app = partitioned(client, namespace)
    [job_id] = parts(app)[2].enqueue([NewJob("a", exclusive=False)])
    [taken] = app.store.acquire_jobs("crashed", 1, lock_ms=100).jobs
    assert taken.id == job_id
    time.sleep(0.15)
    first = app.store.acquire_jobs("alive", 5)
    assert first.reclaimed == 1
    got = first.jobs or app.store.acquire_jobs("alive", 5).jobs
    assert [(job.id, job.lock_owner) for job in got] == [(job_id, "alive")]
    assert check(app.store) == []


def test_an_app_without_redis_opens_partition_zero_for_now_and_reads_the_layout_later(
    redis_url: str, namespace: str
) -> None:
    """Opening a store reads the layout; while Redis is away an app gets partition 0's
    store (whose calls fail as before), not kept, so the next use reads the layout."""
    created = App(redis_url, namespace=namespace, partitions=3)
    _ = created.store
    created.close()
    app = App("redis://127.0.0.1:1/0", namespace=namespace)
    offline = app.store
    assert type(offline) is Store and offline.keys == Keys(namespace)
    with pytest.raises(redis.ConnectionError):
        offline.time_ms()
    with pytest.raises(redis.ConnectionError):
        app.open_store()  # what a worker process waits on
    app.close()
    app.redis_url = redis_url  # Redis is back
    assert isinstance(app.store, PartitionedStore)
    app.close()
    with pytest.raises(redis.ConnectionError):
        _ = App("redis://127.0.0.1:1/0", namespace=namespace, partitions=3).store


def test_namespace_commands_never_start_an_embedded_redis_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like every operator command, they read the Redis named (or the embedded one
    running): with none, one line, exit 2, and no Redis started in a fresh home."""
    from click.testing import CliRunner

    from rexec.cli import main

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("REXEC_REDIS_URL", raising=False)
    monkeypatch.delenv("REXEC_APP", raising=False)
    monkeypatch.setenv("REXEC_HOME", str(tmp_path / "rexec"))
    for args in (["namespace", "show"], ["namespace", "create", "shop", "--partitions", "2"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error: no Redis to read"), result.output
        assert len(result.output.strip().splitlines()) == 1
    from rexec.embedded import running_server_url

    assert running_server_url() is None
