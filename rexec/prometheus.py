"""Prometheus metrics of one rexec namespace, read from Redis at each scrape.

Workers keep their counters (SPEC §7, Camunda's names) in Redis (see
:mod:`rexec.metrics`); every scrape reads them and renders them in the Prometheus text
format through a fresh ``CollectorRegistry``, so no state lives in this process and any
number of exporters (the cockpit's ``/metrics``, each node's ``--metrics-port``) agree.

What is exported, every sample labelled with ``namespace``:

- ``rexec_<counter>_total{node}``: each SPEC §7 counter (``job-successful`` becomes
  ``rexec_job_successful_total``), summed over the worker processes of each node. The
  workers count per process, not per job type, so counters carry no ``job_type``.
- ``rexec_lock_expired_total``: locks reclaimed (a cluster-wide count).
- ``rexec_jobs_finished_total{job_type, outcome}``: completed, failed, incident and
  deleted jobs per job type, counted by the scripts themselves.
- ``rexec_jobs{state}``: jobs by state; ``rexec_jobs_by_type{job_type, state}`` when the
  caller counted them (the cockpit does); ``rexec_job_definition_suspended{job_type}``.
- ``rexec_workers{node}``, ``rexec_worker_heartbeat_age_seconds{node, worker}``,
  ``rexec_worker_idle_level`` and ``rexec_worker_backoff_level``: the live workers.
- ``rexec_pickup_latency_seconds{node}``: a histogram from the workers'
  ``pickup-latency-le-<ms>`` counters; likewise ``rexec_execution_time_seconds`` from
  ``execution-time-le-<ms>`` counters, once workers record them. A histogram gets its
  ``_sum`` and ``_count`` only when the workers also count ``<name>-sum-ms``.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import re
import threading
from collections import defaultdict
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import redis
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from rexec.errors import ConfigurationError, RexecError
from rexec.metrics import COUNTERS, LATENCY_BUCKETS_MS, cluster_stats, live_workers

if TYPE_CHECKING:
    from rexec.app import App

log = logging.getLogger(__name__)

OUTCOMES = ("completed", "failed", "incident", "deleted")

METRICS_TOKEN_ENV = "REXEC_METRICS_TOKEN"

# Histograms the workers record as bucket counters, and what each measures.
HISTOGRAMS: dict[str, str] = {
    "pickup-latency": "Time from a job being due to a worker starting it.",
    "execution-time": "Time a handler ran, per job.",
}
COUNTER_HELP: dict[str, str] = {
    "job-acquisition-attempt": "Acquisition cycles run by worker processes.",
    "job-acquired-success": "Jobs locked by acquisitions.",
    "job-acquired-failure": "Jobs an acquisition tried to lock that another worker got first.",
    "job-execution-rejected": "Batches rejected because every executor slot was busy.",
    "job-successful": "Jobs completed.",
    "job-failed": "Job executions that failed.",
    "job-locked-exclusive": "Exclusive follow-up jobs locked at once for the same worker.",
    "job-commit-refused": "Completions refused because the lock was lost.",
    "job-commit-conflict": "Commits refused because the process variables changed.",
}
_BUCKET_RE = re.compile(r"^(?P<base>[a-z][a-z-]*?)-(?P<op>le|gt)-(?P<ms>\d+)$")
_SUM_SUFFIX = "-sum-ms"
INF = float("inf")


# -- reading the counters -----------------------------------------------------------------


def node_of(worker_id: str) -> str:
    """The node of a worker id ``<node id>.<index>.<pid>`` (a node id may hold dots,
    as a host name does)."""
    parts = worker_id.rsplit(".", 2)
    if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
        return parts[0]
    return worker_id.partition(".")[0]


def parse_bucket(name: str) -> tuple[str, float] | None:
    """``pickup-latency-le-250`` -> ("pickup-latency", 250.0); ``…-gt-<ms>`` -> +Inf."""
    match = _BUCKET_RE.match(name)
    if match is None:
        return None
    bound = float(match["ms"]) if match["op"] == "le" else INF
    return match["base"], bound


def by_node(stats: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    """Counter name -> node -> count, from ``cluster_stats``' per-worker counts."""
    result: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for name, per in stats.items():
        for worker, count in per.items():
            if worker != "total":
                result[name][node_of(worker)] += count
    return result


def histogram_buckets(counts: Mapping[str, int]) -> dict[str, list[tuple[float, int]]]:
    """Histogram name -> [(upper bound ms, count in that bucket)] sorted, +Inf last,
    from counter name -> count (one worker's, a node's or the total). Every bound of
    ``LATENCY_BUCKETS_MS`` is there, so the set of buckets never changes over time."""
    found: dict[str, dict[float, int]] = defaultdict(
        lambda: dict.fromkeys((*map(float, LATENCY_BUCKETS_MS), INF), 0)
    )
    for name, count in counts.items():
        parsed = parse_bucket(name)
        if parsed is not None:
            base, bound = parsed
            found[base][bound] = found[base].get(bound, 0) + count
    return {base: sorted(buckets.items()) for base, buckets in found.items()}


def _cumulative(buckets: list[tuple[float, int]]) -> list[tuple[str, float]]:
    rendered: list[tuple[str, float]] = []
    running = 0
    for bound, count in buckets:
        running += count
        if bound != INF:
            rendered.append((_seconds_text(bound), running))
    rendered.append(("+Inf", running))
    return rendered


def _seconds_text(bound_ms: float) -> str:
    return format(bound_ms / 1000, "g")


def _metric_name(counter: str) -> str:
    return "rexec_" + counter.replace("-", "_")


# -- the collector -------------------------------------------------------------------------


class RexecCollector(Collector):
    """Reads one namespace's counters, counts and workers from Redis when collected."""

    def __init__(
        self,
        app: App,
        *,
        node: str | None = None,
        type_counts: Mapping[str, Mapping[str, int]] | None = None,
    ) -> None:
        self.app = app
        self.node = node
        self.type_counts = type_counts

    def collect(self) -> Iterator[Metric]:
        store = self.app.store
        ns = self.app.namespace
        stats = cluster_stats(store)
        per_node = by_node(stats)
        if self.node is not None:
            per_node = {
                name: {n: c for n, c in nodes.items() if n == self.node}
                for name, nodes in per_node.items()
            }
        yield from self._counters(ns, stats, per_node)
        yield from self._histograms(ns, per_node)
        yield from self._jobs(ns)
        yield from self._workers(ns, live_workers(store))

    def _counters(
        self,
        ns: str,
        stats: Mapping[str, Mapping[str, int]],
        per_node: Mapping[str, Mapping[str, int]],
    ) -> Iterator[Metric]:
        names = list(COUNTERS) + sorted(
            name
            for name in per_node
            if name not in COUNTERS and parse_bucket(name) is None and _SUM_SUFFIX not in name
        )
        for name in names:
            family = CounterMetricFamily(
                _metric_name(name),
                COUNTER_HELP.get(name, f"Worker counter {name}."),
                labels=["namespace", "node"],
            )
            for node, count in sorted(per_node.get(name, {}).items()):
                family.add_metric([ns, node], count)
            yield family
        expired = CounterMetricFamily(
            "rexec_lock_expired",
            "Expired locks reclaimed (their jobs became acquirable again).",
            labels=["namespace"],
        )
        expired.add_metric([ns], stats.get("lock-expired", {}).get("total", 0))
        yield expired
        yield self._outcomes(ns)

    def _outcomes(self, ns: str) -> Metric:
        """Jobs finished by type and outcome, from the scripts' per-type counters."""
        family = CounterMetricFamily(
            "rexec_jobs_finished",
            "Job executions and removals by job type and outcome (completed, failed,"
            " incident, deleted), counted by the scripts.",
            labels=["namespace", "job_type", "outcome"],
        )
        raw = self.app.store.counter_totals()
        for field, value in sorted(raw.items()):
            outcome, _, job_type = field.decode().partition("|")
            if outcome in OUTCOMES and job_type:
                family.add_metric([ns, job_type, outcome], int(value))
        return family

    def _histograms(self, ns: str, per_node: Mapping[str, Mapping[str, int]]) -> Iterator[Metric]:
        nodes = sorted({node for counts in per_node.values() for node in counts})
        for base, help_text in HISTOGRAMS.items():
            family = HistogramMetricFamily(
                _metric_name(base) + "_seconds", help_text, labels=["namespace", "node"]
            )
            for node in nodes:
                counts = {name: per.get(node, 0) for name, per in per_node.items()}
                buckets = histogram_buckets(counts).get(base)
                if not buckets:
                    continue
                total_ms = counts.get(base + _SUM_SUFFIX)
                family.add_metric(
                    [ns, node],
                    _cumulative(buckets),
                    None if total_ms is None else total_ms / 1000,
                )
            if family.samples or base == "pickup-latency":
                yield family

    def _jobs(self, ns: str) -> Iterator[Metric]:
        management = self.app.management
        counts = management.counts()
        jobs = GaugeMetricFamily("rexec_jobs", "Jobs by state.", labels=["namespace", "state"])
        for state, count in counts.items():
            if state != "total":
                jobs.add_metric([ns, state], count)
        yield jobs
        if self.type_counts is not None:
            by_type = GaugeMetricFamily(
                "rexec_jobs_by_type",
                "Jobs by job type and state.",
                labels=["namespace", "job_type", "state"],
            )
            for job_type, states in sorted(self.type_counts.items()):
                for state, count in states.items():
                    if state != "total":
                        by_type.add_metric([ns, job_type, state], count)
            yield by_type
        suspended = GaugeMetricFamily(
            "rexec_job_definition_suspended",
            "1 when the job definition is suspended (none of its jobs is acquired).",
            labels=["namespace", "job_type"],
        )
        for info in management.job_definitions():
            suspended.add_metric([ns, info.type], 1 if info.suspended else 0)
        yield suspended

    def _workers(self, ns: str, workers: list[dict[str, Any]]) -> Iterator[Metric]:
        if self.node is not None:
            workers = [w for w in workers if str(w.get("node")) == self.node]
        count = GaugeMetricFamily(
            "rexec_workers", "Live worker processes.", labels=["namespace", "node"]
        )
        per_node: dict[str, int] = defaultdict(int)
        labels = ["namespace", "node", "worker"]
        age = GaugeMetricFamily(
            "rexec_worker_heartbeat_age_seconds", "Time since the last heartbeat.", labels=labels
        )
        idle = GaugeMetricFamily(
            "rexec_worker_idle_level", "The acquisition strategy's idle level.", labels=labels
        )
        backoff = GaugeMetricFamily(
            "rexec_worker_backoff_level", "The acquisition strategy's backoff level.", labels=labels
        )
        for worker in workers:
            node = str(worker.get("node") or node_of(str(worker.get("id"))))
            wid = str(worker.get("id"))
            per_node[node] += 1
            age.add_metric([ns, node, wid], int(worker.get("heartbeat_age_ms", 0)) / 1000)
            idle.add_metric([ns, node, wid], int(worker.get("idle_level", 0)))
            backoff.add_metric([ns, node, wid], int(worker.get("backoff_level", 0)))
        for node, n in sorted(per_node.items()):
            count.add_metric([ns, node], n)
        yield from (count, age, idle, backoff)


def render_metrics(
    app: App,
    *,
    node: str | None = None,
    type_counts: Mapping[str, Mapping[str, int]] | None = None,
) -> bytes:
    """The namespace's metrics in the Prometheus text format, read now. ``node`` keeps
    only that node's counters and workers (job counts are the namespace's);
    ``type_counts`` (job type -> state -> count) adds ``rexec_jobs_by_type``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RexecCollector(app, node=node, type_counts=type_counts))
    return generate_latest(registry)


# -- a tiny exporter for worker nodes ------------------------------------------------------


class MetricsServer(threading.Thread):
    """A daemon thread serving ``GET /metrics`` over HTTP; :meth:`stop` ends it."""

    def __init__(
        self, app: App, host: str, port: int, node: str | None, token: str | None = None
    ) -> None:
        super().__init__(name=f"rexec-metrics-{port}", daemon=True)
        check_exposure(host, token)
        self.app = app
        self.node = node
        self.token = token.encode() if token else None
        handler = _handler_for(self)
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.port: int = self.server.server_address[1]

    def run(self) -> None:
        self.server.serve_forever(poll_interval=0.5)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler_for(owner: MetricsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] not in ("/metrics", "/"):
                self._reply(404, b"not found: try /metrics\n", "text/plain; charset=utf-8")
                return
            if owner.token is not None:
                scheme, _, given = self.headers.get("Authorization", "").partition(" ")
                if scheme.lower() != "bearer" or not hmac.compare_digest(
                    given.strip().encode(), owner.token
                ):
                    self._reply(401, b"send 'Authorization: Bearer <token>'\n", "text/plain")
                    return
            try:
                body = render_metrics(owner.app, node=owner.node)
            except (RexecError, redis.RedisError) as exc:
                log.warning("metrics scrape failed: %s", exc)
                self._reply(503, f"cannot read metrics: {exc}\n".encode(), "text/plain")
                return
            self._reply(200, body, CONTENT_TYPE_LATEST)

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("metrics: " + format, *args)

    return Handler


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` keeps a server on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None) -> None:
    """The cockpit's rule: anything but loopback needs a token."""
    if not is_loopback(host) and not token:
        raise ConfigurationError(
            f"serving metrics on {host} would open them to other machines: give a token"
            f" ({METRICS_TOKEN_ENV}; scrapers send 'Authorization: Bearer <token>')"
        )


def serve_metrics(
    app: App,
    port: int,
    *,
    host: str = "127.0.0.1",
    node: str | None = None,
    token: str | None = None,
) -> MetricsServer:
    """Starts serving the metrics of ``app``'s namespace on ``host:port`` (``port`` 0:
    any free port, see ``.port``) in a daemon thread, and returns the thread. ``node``
    limits the counters and workers to that node's, for ``rexec worker --metrics-port``.
    Loopback by default; another host needs a bearer ``token`` (default: the
    ``REXEC_METRICS_TOKEN`` environment variable, so it never shows on a command line)."""
    token = token or os.environ.get(METRICS_TOKEN_ENV) or None
    server = MetricsServer(app, host, port, node, token)
    server.start()
    return server
