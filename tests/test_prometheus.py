"""Prometheus metrics (rexec.prometheus): what a scrape reads from a real Redis."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from rexec import App
from rexec.errors import ConfigurationError
from rexec.metrics import WorkerMetrics
from rexec.prometheus import node_of, parse_bucket, render_metrics, serve_metrics


@pytest.fixture
def rapp(redis_url: str, namespace: str) -> Iterator[App]:
    with App(redis_url, namespace=namespace) as app:
        yield app


def record(app: App, worker_id: str, **counts: int) -> WorkerMetrics:
    metrics = WorkerMetrics(worker_id)
    for name, amount in counts.items():
        metrics.add(name.replace("_", "-"), amount)
    pipe = app.client.pipeline(transaction=False)
    metrics.flush(pipe, app.store.keys)
    pipe.execute()
    return metrics


def samples(text: bytes, name: str) -> list[Sample]:
    """The samples called ``name`` (the text must parse as the Prometheus format)."""
    families = text_string_to_metric_families(text.decode())
    return [sample for family in families for sample in family.samples if sample.name == name]


def value(text: bytes, name: str, **labels: str) -> float | None:
    for sample in samples(text, name):
        if all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    return None


def test_node_of_a_worker_id() -> None:
    assert node_of("web-1-4242.0.4243") == "web-1-4242"
    assert node_of("web-1.example.org-4242.3.4250") == "web-1.example.org-4242"
    assert node_of("odd") == "odd"
    assert parse_bucket("pickup-latency-le-250") == ("pickup-latency", 250.0)
    assert parse_bucket("pickup-latency-gt-10000") == ("pickup-latency", float("inf"))
    assert parse_bucket("job-successful") is None


def test_counters_are_summed_per_node_with_namespace_labels(rapp: App) -> None:
    record(rapp, "a.example.org-1.0.11", job_successful=5, job_failed=1)
    record(rapp, "a.example.org-1.1.12", job_successful=7, job_acquisition_attempt=30)
    record(rapp, "b-2.0.21", job_successful=2, job_acquired_failure=3)

    text = render_metrics(rapp)

    ns = rapp.namespace
    done = {s.labels["node"]: s.value for s in samples(text, "rexec_job_successful_total")}
    assert done == {"a.example.org-1": 12.0, "b-2": 2.0}
    assert {s.labels["namespace"] for s in samples(text, "rexec_job_successful_total")} == {ns}
    assert value(text, "rexec_job_failed_total", node="a.example.org-1") == 1.0
    assert value(text, "rexec_job_acquired_failure_total", node="b-2") == 3.0
    assert value(text, "rexec_job_acquisition_attempt_total", node="a.example.org-1") == 30.0
    assert value(text, "rexec_lock_expired_total", namespace=ns) == 0.0
    for name in ("job_execution_rejected", "job_locked_exclusive"):
        assert f"# TYPE rexec_{name}_total counter" in text.decode()

    only_b = render_metrics(rapp, node="b-2")
    assert {s.labels["node"] for s in samples(only_b, "rexec_job_successful_total")} == {"b-2"}


def test_pickup_latency_is_a_histogram(rapp: App) -> None:
    metrics = WorkerMetrics("n-1.0.5")
    for latency_ms in (0, 1, 7, 300, 20_000):
        metrics.pickup_latency(latency_ms)
    pipe = rapp.client.pipeline(transaction=False)
    metrics.flush(pipe, rapp.store.keys)
    pipe.execute()

    text = render_metrics(rapp)

    buckets = {
        s.labels["le"]: s.value
        for s in samples(text, "rexec_pickup_latency_seconds_bucket")
        if s.labels["node"] == "n-1"
    }
    assert buckets["0.001"] == 2  # 0 and 1 ms
    assert buckets["0.005"] == 2
    assert buckets["0.01"] == 3
    assert buckets["0.25"] == 3
    assert buckets["0.5"] == 4
    assert buckets["10"] == 4
    assert buckets["+Inf"] == 5
    assert list(buckets) == sorted(buckets, key=float)
    # Workers also count the sum and the number of observations.
    (total,) = [
        s for s in samples(text, "rexec_pickup_latency_seconds_sum") if s.labels["node"] == "n-1"
    ]
    assert total.value == pytest.approx(20.308)
    (count,) = [
        s for s in samples(text, "rexec_pickup_latency_seconds_count") if s.labels["node"] == "n-1"
    ]
    assert count.value == 5


def test_an_execution_time_histogram_appears_once_workers_record_it(rapp: App) -> None:
    assert "rexec_execution_time_seconds" not in render_metrics(rapp).decode()
    record(rapp, "n-1.0.5", **{"execution_time_le_50": 3, "execution_time_sum_ms": 90})

    text = render_metrics(rapp)

    assert value(text, "rexec_execution_time_seconds_bucket", le="0.05") == 3
    assert value(text, "rexec_execution_time_seconds_bucket", le="+Inf") == 3
    assert value(text, "rexec_execution_time_seconds_sum") == pytest.approx(0.09)
    assert value(text, "rexec_execution_time_seconds_count") == 3


def test_job_gauges_and_lock_expiries(rapp: App) -> None:
    rapp.enqueue_many([{"type": "mail"}] * 3)
    rapp.enqueue("report", delay_ms=600_000)
    rapp.management.suspend_job_definition("report")
    rapp.store.acquire_jobs("n-1.0.5", 1, lock_ms=100, types=["mail"])
    time.sleep(0.15)
    rapp.store.acquire_jobs("n-1.0.5", 0)
    rapp.store.acquire_jobs("n-2.0.6", 1, types=["other"])  # reclaims the expired lock

    text = render_metrics(
        rapp, type_counts={"mail": {"ready": 3, "total": 3}, "report": {"suspended": 1}}
    )

    counts = rapp.management.counts()
    for state in ("ready", "scheduled", "locked", "suspended", "incident"):
        assert value(text, "rexec_jobs", state=state) == counts[state]
    assert value(text, "rexec_lock_expired_total") == 1.0
    assert value(text, "rexec_jobs_by_type", job_type="mail", state="ready") == 3
    assert value(text, "rexec_jobs_by_type", job_type="mail", state="total") is None
    assert value(text, "rexec_job_definition_suspended", job_type="report") == 1
    assert value(text, "rexec_job_definition_suspended", job_type="mail") == 0


def test_finished_jobs_by_type_and_outcome(rapp: App) -> None:
    rapp.enqueue_many([{"type": "mail"}] * 2 + [{"type": "report", "retries": 1}])
    for job in rapp.store.acquire_jobs("n-1.0.5", 10, lock_ms=5000).jobs:
        if job.type == "mail":
            rapp.store.complete(job)
        else:
            rapp.store.fail(job, "boom")
    rapp.management.delete_job(rapp.enqueue("mail"))
    text = render_metrics(rapp)
    finished = "rexec_jobs_finished_total"
    assert value(text, finished, job_type="mail", outcome="completed") == 2
    assert value(text, finished, job_type="mail", outcome="deleted") == 1
    assert value(text, finished, job_type="report", outcome="incident") == 1
    assert value(text, finished, job_type="report", outcome="completed") is None


def test_live_workers_are_gauges(rapp: App) -> None:
    keys = rapp.store.keys
    now = rapp.store.time_ms()
    announcement = b'{"id": "n-1.0.5", "node": "n-1", "idle_level": 2, "backoff_level": 1}'
    rapp.client.hset(keys.workers, "n-1.0.5", announcement)
    rapp.client.zadd(keys.heartbeats, {"n-1.0.5": now - 1500})

    text = render_metrics(rapp)

    assert value(text, "rexec_workers", node="n-1") == 1
    assert value(text, "rexec_worker_idle_level", worker="n-1.0.5") == 2
    assert value(text, "rexec_worker_backoff_level", worker="n-1.0.5") == 1
    age = value(text, "rexec_worker_heartbeat_age_seconds", worker="n-1.0.5")
    assert age is not None and 1.4 <= age < 10
    assert samples(render_metrics(rapp, node="other"), "rexec_workers") == []


def test_serve_metrics_answers_scrapes(rapp: App) -> None:
    record(rapp, "n-1.0.5", job_successful=4)
    server = serve_metrics(rapp, 0, host="127.0.0.1", node="n-1")
    try:
        base = f"http://127.0.0.1:{server.port}"
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            body = response.read()
        assert value(body, "rexec_job_successful_total", node="n-1") == 4
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{base}/elsewhere", timeout=10)
        assert missing.value.code == 404
        missing.value.close()
    finally:
        server.stop()
        server.join(5)
    assert not server.is_alive()


def test_metrics_stay_on_loopback_unless_a_token_guards_them(
    rapp: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REXEC_METRICS_TOKEN", raising=False)
    with pytest.raises(ConfigurationError, match="token"):
        serve_metrics(rapp, 0, host="0.0.0.0")
    server = serve_metrics(rapp, 0)  # loopback by default
    try:
        assert server.server.server_address[0] == "127.0.0.1"
    finally:
        server.stop()
    monkeypatch.setenv("REXEC_METRICS_TOKEN", "s3cret")
    server = serve_metrics(rapp, 0, host="0.0.0.0")
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=10)
        assert refused.value.code == 401
        refused.value.close()
        request = urllib.request.Request(url, headers={"Authorization": "Bearer s3cret"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
    finally:
        server.stop()


def test_serve_metrics_says_503_when_redis_is_down(namespace: str) -> None:
    with App("redis://127.0.0.1:1/0", namespace=namespace) as app:
        server = serve_metrics(app, 0, host="127.0.0.1")
        try:
            with pytest.raises(urllib.error.HTTPError) as failed:
                urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10)
            assert failed.value.code == 503
            assert b"cannot read metrics" in failed.value.read()
            failed.value.close()
        finally:
            server.stop()
