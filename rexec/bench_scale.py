"""``rexec bench scale``: the same drain on 1, 2 and 3 Redis masters.

Each run starts a local Redis Cluster of ``m`` masters (no replicas), creates a namespace
of ``m`` partitions (one per master, rexec/partitions.py), enqueues the same no-op jobs,
and drains them with one worker node. It reports the total jobs/s and, per master, the
Redis CPU (INFO CPU: user + sys) and script time (INFO commandstats) spent per job of the
whole drain: the share of the work each master carries. On a machine with few cores the
total cannot grow much (the workers and every master share the same cores); what the
figure shows is that each master's cost per job falls to about 1/m, which is what lets a
cluster of many masters on many machines scale out. docs/scaling.md reads the figures.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import redis

from rexec import metrics as m
from rexec.app import App
from rexec.cluster import LocalCluster
from rexec.settings import WorkerSettings
from rexec.store import NewJob
from rexec.topology import ClusterTopology

SCRIPT_COMMANDS = ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_evalsha_ro", "cmdstat_eval_ro")


def _usage(port: int) -> tuple[float, int, int]:
    """A master's CPU seconds (user + sys), script microseconds and script calls."""
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        cpu = client.info("cpu")
        stats: dict[str, dict[str, Any]] = client.info("commandstats")
    finally:
        client.close()
    scripts = [entry for name, entry in stats.items() if name in SCRIPT_COMMANDS]
    return (
        float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
        sum(int(e["usec"]) for e in scripts),
        sum(int(e["calls"]) for e in scripts),
    )


def drain_on_masters(
    masters: int, jobs: int, processes: int, concurrency: int, timeout_s: float = 600.0
) -> dict[str, Any]:
    """One drain of ``jobs`` no-op jobs on a fresh local cluster of ``masters`` masters."""
    topology = ClusterTopology(masters=masters, replicas=0).start()
    try:
        namespace = "scale-" + uuid.uuid4().hex[:8]
        app = App(topology.url, namespace=namespace, partitions=masters)
        store = app.store
        chunk = 10_000
        for start in range(0, jobs, chunk):
            store.enqueue(
                [NewJob("noop", exclusive=False) for _ in range(min(chunk, jobs - start))]
            )
        ports = sorted(
            {int(topology.master_of(p.keys.jobs).port or 0) for p in store.partition_stores}
        )
        before = {port: _usage(port) for port in ports}
        settings = WorkerSettings(
            app_path="rexec.bench_app:app",
            redis_url=topology.url,
            namespace=namespace,
            processes=processes,
            concurrency=concurrency,
            shutdown_timeout_s=10,
        )
        cluster = LocalCluster(settings, 1)
        try:
            started = time.perf_counter()
            cluster.start()
            deadline = time.monotonic() + timeout_s
            while app.management.counts()["total"] > 0:
                cluster.check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the drain on {masters} masters took over {timeout_s} s")
                time.sleep(0.02)
            elapsed = time.perf_counter() - started
            after = {port: _usage(port) for port in ports}
        finally:
            cluster.stop()
        committed = m.cluster_stats(store)[m.SUCCESSFUL]["total"]
        app.close()
    finally:
        topology.stop()
    per_master = []
    for port in ports:
        cpu = after[port][0] - before[port][0]
        usec = after[port][1] - before[port][1]
        calls = after[port][2] - before[port][2]
        per_master.append(
            {
                "port": port,
                "cpu_us_per_job": round(cpu * 1e6 / jobs, 1),
                "script_us_per_job": round(usec / jobs, 1),
                "script_calls": calls,
            }
        )
    total_cpu = sum(p["cpu_us_per_job"] for p in per_master) or 1.0
    for p in per_master:
        p["cpu_share"] = round(p["cpu_us_per_job"] / total_cpu, 3)
    return {
        "masters": masters,
        "partitions": masters,
        "jobs": jobs,
        "committed": committed,
        "seconds": round(elapsed, 3),
        "jobs_per_s": round(jobs / elapsed),
        "redis_cpu_us_per_job_total": round(total_cpu, 1),
        "redis_cpu_us_per_job_busiest_master": max(p["cpu_us_per_job"] for p in per_master),
        "per_master": per_master,
    }


def bench_scale(
    jobs: int, processes: int, concurrency: int, masters: tuple[int, ...] = (1, 2, 3)
) -> dict[str, Any]:
    """The same drain on each number of masters in ``masters``."""
    runs = [drain_on_masters(n, jobs, processes, concurrency) for n in masters]
    base = runs[0]["redis_cpu_us_per_job_busiest_master"] or 1.0
    for run in runs:
        run["busiest_master_vs_one_master"] = round(
            run["redis_cpu_us_per_job_busiest_master"] / base, 3
        )
    return {
        "benchmark": "scale",
        "parameters": {
            "jobs": jobs,
            "nodes": 1,
            "processes": processes,
            "concurrency": concurrency,
        },
        "runs": runs,
    }
