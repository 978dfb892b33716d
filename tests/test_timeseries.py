"""The cockpit's time series: rings in Redis, sampled once per step cluster-wide."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from rexec import App
from rexec import timeseries as ts
from rexec.metrics import WorkerMetrics
from tests.harness import Cluster

T0 = 1_800_000_000_000  # a step boundary (ms)


def run_jobs(app: App, job_type: str, n: int, *, fail: bool = False) -> None:
    app.enqueue_many([{"type": job_type, "retries": 1}] * n)
    for job in app.store.acquire_jobs("node-a.0.1", n, lock_ms=5000, types=[job_type]).jobs:
        if fail:
            app.store.fail(job, "no")
        else:
            app.store.complete(job)


def worker_counts(app: App, worker: str, successful: int, latency_ms: int) -> None:
    metrics = WorkerMetrics(worker)
    metrics.add("job-successful", successful)
    for _ in range(successful):
        metrics.pickup_latency(latency_ms)
    pipe = app.client.pipeline()
    metrics.flush(pipe, app.store.keys)
    pipe.execute()


def test_one_sample_per_step_and_rates_from_neighbours(app: App) -> None:
    store = app.store
    assert ts.record(store, T0) is True
    assert ts.record(store, T0 + 5_000) is False  # same step: nobody samples twice
    run_jobs(app, "mail", 30)
    run_jobs(app, "ship", 4, fail=True)
    app.enqueue_many([{"type": "mail"}] * 7)
    worker_counts(app, "node-a.0.1", 30, 3)
    assert ts.record(store, T0 + ts.STEP_MS) is True
    charts = ts.read(store, T0 + ts.STEP_MS)
    assert charts["step_ms"] == ts.STEP_MS and len(charts["times_ms"]) == ts.SLOTS
    assert charts["throughput_per_s"]["mail"][-1] == 3.0  # 30 jobs in 10 s
    assert charts["throughput_per_s"]["mail"][-2] is None  # nothing before the first sample
    assert charts["failures_per_s"]["ship"][-1] == 0.4  # 4 incidents in 10 s
    assert charts["depth"]["ready"][-1] == 7 and charts["depth"]["incident"][-1] == 4
    assert charts["node_rates_per_s"]["node-a"][-1] == 3.0
    assert charts["pickup_latency_ms"]["p50"][-1] == 5  # the bucket holding 3 ms
    assert charts["pickup_latency_ms"]["p99"][-1] == 5


def test_the_rings_stay_bounded_and_stale_slots_read_as_gaps(app: App) -> None:
    store = app.store
    run_jobs(app, "mail", 2)
    for step in range(ts.SLOTS * 2 + 5):  # two hours and more
        ts.record(store, T0 + step * ts.STEP_MS)
    fields = app.client.hlen(store.keys.series)
    metrics = len(ts.sample(store, T0))
    assert fields <= metrics * ts.SLOTS + 1
    # an hour later with nobody sampling: everything is a gap
    later = ts.read(store, T0 + (ts.SLOTS * 4) * ts.STEP_MS)
    assert all(v is None for v in later["depth"]["ready"])
    assert later["throughput_per_s"] == {} or all(
        v is None for v in later["throughput_per_s"]["mail"]
    )


def test_a_bad_sample_never_stops_a_worker(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> Any:
        raise ValueError("garbage")

    monkeypatch.setattr(ts, "sample", broken)
    assert ts.record(app.store, T0) is False  # logged, not raised
    monkeypatch.setattr(ts, "sample", lambda *a: (_ for _ in ()).throw(redis.ConnectionError()))
    with pytest.raises(redis.ConnectionError):  # Redis down: the worker's loop handles it
        ts.record(app.store, T0 + ts.STEP_MS)


def test_garbage_in_the_hash_is_ignored(app: App) -> None:
    key = app.store.keys.series
    app.client.hset(key, mapping={"depth|ready|x": "1:2", "depth|ready|3": "zz", "|": "1"})
    charts = ts.read(app.store, T0)
    assert all(v is None for v in charts["depth"]["ready"])


def test_real_workers_record_the_series(cluster: Cluster) -> None:
    cluster.start_node(processes=1, concurrency=2, metrics_interval_s=0.2)
    cluster.wait_for_workers(1)
    cluster.app.enqueue_many([{"type": "work", "payload": i, "exclusive": False} for i in range(5)])
    key = cluster.app.store.keys.series
    cluster.wait_for(
        lambda: any(f.startswith(b"completed|work|") for f in cluster.app.client.hkeys(key)),
        "a worker to record the completions in the time series",
        timeout=30,
    )
