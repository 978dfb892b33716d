"""``rexec bench``: the figures the project promises, measured on this machine.

Each benchmark prints JSON (with the core count, the Redis version and its parameters)
and, unless ``--json``, a table. They run on a private ``redis-server`` unless
``--redis-url`` names one (use an empty database: the store benchmark fills it).
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import click
import orjson
import redis
from rich.console import Console
from rich.table import Table

from rexec import metrics as m
from rexec.app import App
from rexec.bench_app import stamp_key
from rexec.cluster import LocalCluster
from rexec.connection import connect
from rexec.demo import Scenario, redis_for_demo
from rexec.options import redis_url_option
from rexec.settings import WorkerSettings
from rexec.store import DEFAULT_EXCLUSIVE_CAP, AcquireOptions, NewJob, Store


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def environment(client: redis.Redis) -> dict[str, Any]:
    info = client.info("server")
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "redis_version": info.get("redis_version"),
        "machine": platform.machine(),
    }


def fresh_namespace(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def drop_namespace(client: redis.Redis, namespace: str) -> None:
    keys = list(client.scan_iter(match=f"rexec:{{{namespace}}}:*", count=1000))
    for i in range(0, len(keys), 1000):
        client.delete(*keys[i : i + 1000])


def timed_calls(call: Callable[[], object], count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def redis_time_us(client: redis.Redis) -> int:
    """Microseconds Redis spent running scripts so far (INFO commandstats). Only the
    script calls count: the commands a script runs are counted inside its time too."""
    stats: dict[str, dict[str, Any]] = client.info("commandstats")
    return sum(
        int(entry["usec"])
        for name, entry in stats.items()
        if name in ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_evalsha_ro", "cmdstat_eval_ro")
    )


def bench_one_instance(
    client: redis.Redis, console: Console, *, ready: int = 100_000, exclusive: bool = True
) -> dict[str, Any]:
    """Redis time of one batch's acquire + complete when one process instance has
    ``ready`` exclusive jobs ready: each call pays for its batch (and the parked jobs it
    releases), never for the instance's whole backlog. With ``exclusive=False`` the same
    number of plain jobs, for comparison: the cost of a batch of that size as such."""
    ns = fresh_namespace("bench-store")
    app = App.with_client(client, namespace=ns)
    pi = app.start_process_instance() if exclusive else None
    what = "exclusive jobs of one process instance" if exclusive else "plain jobs"
    console.print(f"store: {ready:,} ready {what}, batches of {DEFAULT_EXCLUSIVE_CAP} ...")
    spec = {"type": "noop", "process_instance_id": pi, "exclusive": exclusive}
    for start in range(0, ready, 20_000):
        app.enqueue_many([spec] * min(20_000, ready - start))
    store = app.store
    options = AcquireOptions(lock_ms=600_000)
    acquire_us, complete_us, sizes = [], [], []
    for _ in range(20):
        before = redis_time_us(client)
        acquired = store.acquire_jobs("bench", DEFAULT_EXCLUSIVE_CAP, options=options)
        middle = redis_time_us(client)
        store.complete_many(acquired.jobs)
        after = redis_time_us(client)
        acquire_us.append(middle - before)
        complete_us.append(after - middle)
        sizes.append(len(acquired.jobs))
    drop_namespace(client, ns)
    total = [a + c for a, c in zip(acquire_us, complete_us, strict=True)]
    return {
        "ready_jobs": ready,
        "batch_jobs_median": statistics.median(sizes),
        "acquire_redis_ms_median": round(statistics.median(acquire_us) / 1000, 3),
        "complete_redis_ms_median": round(statistics.median(complete_us) / 1000, 3),
        "batch_redis_ms_median": round(statistics.median(total) / 1000, 3),
        "batch_redis_ms_max": round(max(total) / 1000, 3),
    }


def enqueue_plain(store: Store, count: int, job_type: str = "noop", **fields: Any) -> None:
    chunk = 20_000
    for start in range(0, count, chunk):
        store.enqueue(
            [NewJob(job_type, exclusive=False, **fields) for _ in range(min(chunk, count - start))]
        )


DRAIN_JOBS = ("noop", "rpush", "rpush-batch", "arpush", "arpush-batch", "sleep-ms")


# -- store ----------------------------------------------------------------------------------


def bench_store(url: str, big: int, console: Console) -> dict[str, Any]:
    client = connect(url)
    results: dict[str, Any] = {"benchmark": "store", "environment": environment(client)}
    options = AcquireOptions(lock_ms=600_000)

    def acquire_median(store: Store, calls: int = 200) -> tuple[float, float]:
        times = timed_calls(lambda: store.acquire_jobs("bench", 50, options=options), calls)
        return statistics.median(times), times[0]

    # 1. acquire(50) with 1,000 and with `big` ready jobs
    sizes = {}
    for size in (1000, big):
        ns = fresh_namespace("bench-store")
        store = Store(client, ns)
        console.print(f"store: enqueueing {size:,} ready jobs ...")
        enqueue_plain(store, size + 200 * 50)
        median, first = acquire_median(store)
        sizes[size] = median
        drop_namespace(client, ns)
    results["acquire_50_median_ms"] = {str(k): round(v, 3) for k, v in sizes.items()}
    results["acquire_ratio_big_vs_1000"] = round(sizes[big] / sizes[1000], 2)

    # 2. 100,000 exclusive jobs of one locked process instance queued ahead of free jobs
    ns = fresh_namespace("bench-store")
    app = App.with_client(client, namespace=ns)
    pi = app.start_process_instance()
    console.print("store: 100,000 exclusive jobs of one process instance ahead of free jobs ...")
    for _ in range(5):
        app.enqueue_many(
            [{"type": "noop", "process_instance_id": pi, "priority": 10} for _ in range(20_000)]
        )
    holder = app.store.acquire_jobs("holder", 1, lock_ms=600_000)  # locks the instance
    enqueue_plain(app.store, 200 * 50 + 1000, priority=0)
    median, first = acquire_median(app.store)
    results["acquire_50_behind_locked_instance_median_ms"] = round(median, 3)
    results["acquire_50_behind_locked_instance_first_call_ms"] = round(first, 3)
    results["acquire_ratio_locked_instance_vs_1000"] = round(median / sizes[1000], 2)
    assert holder.batches
    drop_namespace(client, ns)

    # 3. one batch of a process instance with 100,000 ready exclusive jobs: Redis time
    # (INFO commandstats) of its acquire + complete, which must not grow with the backlog
    results["one_instance_batch"] = bench_one_instance(client, console)
    results["plain_batch_same_size"] = bench_one_instance(client, console, exclusive=False)

    # 4. bulk enqueue
    ns = fresh_namespace("bench-store")
    app = App.with_client(client, namespace=ns)
    count = 200_000
    specs = [{"type": "noop", "exclusive": False} for _ in range(count)]
    started = time.perf_counter()
    for start in range(0, count, 20_000):
        app.enqueue_many(specs[start : start + 20_000])
    results["enqueue_jobs_per_s"] = round(count / (time.perf_counter() - started))

    # 5. memory per queued job without payload
    client.memory_purge()
    before = int(client.info("memory")["used_memory"])
    ns2 = fresh_namespace("bench-store")
    enqueue_plain(Store(client, ns2), 100_000)
    after = int(client.info("memory")["used_memory"])
    results["memory_bytes_per_queued_job"] = round((after - before) / 100_000)
    drop_namespace(client, ns2)

    # 6. store-level acquire + complete, batches of 50, one process, no handler
    store = app.store
    done = 0
    started = time.perf_counter()
    while True:
        acquired = store.acquire_jobs("bench", 50, options=options)
        if not acquired.batches:
            break
        store.complete_many(acquired.jobs)
        done += len(acquired.jobs)
    results["acquire_complete_jobs_per_s"] = round(done / (time.perf_counter() - started))
    drop_namespace(client, ns)

    # 6. strict order among due jobs: a backlog of due jobs nobody promoted yet
    for size in (1000, big):
        console.print(f"store: {size:,} jobs falling due at once, then a high-priority one ...")
        for key, value in due_backlog(client, size, options).items():
            results.setdefault(key, {})[str(size)] = value
    client.close()
    return results


def due_backlog(client: redis.Redis, size: int, options: AcquireOptions) -> dict[str, Any]:
    """Acquisition while ``size`` jobs fall due at once (each call promotes only a few of
    them), and how long after its due time a priority-100 job falling due behind them
    is acquired, and by which acquisition after its due time (1 = the first)."""
    ns = fresh_namespace("bench-store")
    store = Store(client, ns)
    # Due after the enqueue (about 0.1 ms a job, with room), so all of them are still
    # waiting among the scheduled jobs when they fall due together.
    backlog_due = store.time_ms() + size // 8 + 2000
    enqueue_plain(store, size, due_ms=backlog_due)
    while store.time_ms() <= backlog_due:
        time.sleep(0.01)
    times = timed_calls(lambda: store.acquire_jobs("bench", 50, options=options), 200)
    due = store.time_ms() + 100
    (high,) = store.enqueue([NewJob("noop", due_ms=due, priority=100, exclusive=False)])
    calls_after_due = 0
    latency_ms = None
    for _ in range(100_000):
        acquired = store.acquire_jobs("bench", 10, options=options)
        if acquired.now_ms >= due:
            calls_after_due += 1
        if any(job.id == high for job in acquired.jobs):
            latency_ms = acquired.now_ms - due
            break
    drop_namespace(client, ns)
    return {
        "acquire_50_median_ms_while_backlog_falls_due": round(statistics.median(times), 3),
        "high_priority_due_to_acquired_ms": latency_ms,
        "high_priority_acquired_by_call_after_due": calls_after_due,
    }


# -- drain and latency ------------------------------------------------------------------


def _node_settings(url: str, namespace: str, processes: int, concurrency: int) -> WorkerSettings:
    return WorkerSettings(
        app_path="rexec.bench_app:app",
        redis_url=url,
        namespace=namespace,
        processes=processes,
        concurrency=concurrency,
        shutdown_timeout_s=10,
    )


def _wait_for_workers(app: App, cluster: LocalCluster, count: int) -> None:
    deadline = time.monotonic() + 60
    while len(m.live_workers(app.store)) < count:
        cluster.check_alive()
        if time.monotonic() > deadline:
            raise click.ClickException("the worker node did not start within 60 s")
        time.sleep(0.05)


def bench_drain(
    url: str,
    jobs: int,
    processes: int,
    concurrency: int,
    console: Console,
    *,
    job: str = "noop",
    sleep_ms: float = 1.0,
    rtt_ms: float = 0.0,
) -> dict[str, Any]:
    """Drains ``jobs`` jobs of body ``job`` with one node; the clock includes its
    start-up. With ``rtt_ms``, the workers reach Redis through a delay proxy."""
    from rexec.bench_app import rpush_key
    from rexec.bench_proxy import DelayProxy
    from rexec.codec import pack

    ns = fresh_namespace("bench-drain")
    app = App(url, namespace=ns)
    results: dict[str, Any] = {
        "benchmark": "drain",
        "environment": {**environment(app.client), "load_average": os.getloadavg()},
        "parameters": {
            "jobs": jobs,
            "job": job if job != "sleep-ms" else f"sleep-ms {sleep_ms:g}",
            "rtt_ms": rtt_ms,
            "nodes": 1,
            "processes": processes,
            "concurrency": concurrency,
        },
    }
    console.print(f"drain: enqueueing {jobs:,} {job} jobs ...")
    if job == "sleep-ms":
        enqueue_plain(app.store, jobs, "sleep", payload_raw=pack(sleep_ms, "payload"))
    else:
        enqueue_plain(app.store, jobs, job)
    proxy = DelayProxy(url, rtt_ms).start() if rtt_ms > 0 else None
    worker_url = proxy.url if proxy is not None else url
    cluster = LocalCluster(_node_settings(worker_url, ns, processes, concurrency), 1)
    try:
        # The clock starts when the node starts: process start-up is part of the figure.
        started = time.perf_counter()
        cluster.start()
        while app.management.counts()["total"] > 0:
            cluster.check_alive()
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
    finally:
        cluster.stop()
        if proxy is not None:
            proxy.close()
    if job in ("rpush", "rpush-batch", "arpush", "arpush-batch"):
        results["handler_rpushes"] = app.client.llen(rpush_key(ns))
    stats = m.cluster_stats(app.store)
    results["seconds"] = round(elapsed, 3)
    results["jobs_per_s"] = round(jobs / elapsed)
    results["committed"] = stats[m.SUCCESSFUL]["total"]
    results["acquisition_attempts"] = stats[m.ACQUISITION_ATTEMPT]["total"]
    drop_namespace(app.client, ns)
    app.close()
    return results


def bench_latency(url: str, samples: int, console: Console) -> dict[str, Any]:
    ns = fresh_namespace("bench-latency")
    app = App(url, namespace=ns)
    app.definitions.update(__import__("rexec.bench_app", fromlist=["app"]).app.definitions)
    results: dict[str, Any] = {
        "benchmark": "latency",
        "environment": environment(app.client),
        "parameters": {"samples": samples, "nodes": 1, "processes": 2},
    }
    cluster = LocalCluster(_node_settings(url, ns, 2, 8), 1)
    try:
        cluster.start()
        _wait_for_workers(app, cluster, 2)
        # An idle node: let the idle wait climb to its maximum first.
        console.print("latency: letting the node go idle ...")
        time.sleep(3)
        client = app.client
        client.config_resetstat()
        time.sleep(10)
        calls = sum(
            int(v["calls"])
            for k, v in client.info("commandstats").items()
            if k.startswith("cmdstat_")
        )
        results["idle_node_redis_commands_per_s"] = round((calls - 1) / 10, 1)  # less our INFO
        console.print(f"latency: {samples} jobs, one at a time, on the idle node ...")
        for i in range(samples):
            # Every tenth sample waits long enough for the top idle level.
            time.sleep(2.2 if i % 10 == 9 else 0.05)
            app.enqueue("stamp", time.time())
        deadline = time.monotonic() + 30
        while client.llen(stamp_key(ns)) < samples and time.monotonic() < deadline:
            time.sleep(0.05)
        raw: list[bytes] = client.lrange(stamp_key(ns), 0, -1)  # type: ignore[assignment]
    finally:
        cluster.stop()
    latencies = [float(x) for x in raw]
    results["pickup_latency_ms"] = {
        "samples": len(latencies),
        "p50": round(percentile(latencies, 0.50), 3),
        "p99": round(percentile(latencies, 0.99), 3),
        "max": round(max(latencies, default=0.0), 3),
    }
    drop_namespace(app.client, ns)
    app.close()
    return results


def bench_cluster(url: str, jobs: int, nodes: int, processes: int, job_ms: float) -> dict[str, Any]:
    report = Scenario(url, jobs=jobs, nodes=nodes, processes=processes, job_ms=job_ms).run(None)
    with contextlib.closing(connect(url)) as client:
        env = environment(client)
    return {"benchmark": "cluster", "environment": env, **report.as_dict()}


def _rss_bytes(pid: int) -> int:
    try:
        for line in open(f"/proc/{pid}/status", encoding="ascii"):  # noqa: SIM115
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def bench_soak(
    url: str, duration_s: float, rate: int, sample_s: float, console: Console
) -> dict[str, Any]:
    """A node under a steady load for ``duration_s``: Redis memory and worker RSS over time
    should stay flat (completed jobs leave nothing behind)."""
    ns = fresh_namespace("bench-soak")
    app = App(url, namespace=ns)
    results: dict[str, Any] = {
        "benchmark": "soak",
        "environment": environment(app.client),
        "parameters": {"seconds": duration_s, "jobs_per_s": rate, "nodes": 1, "processes": 2},
    }
    cluster = LocalCluster(_node_settings(url, ns, 2, 8), 1)
    samples: list[dict[str, float]] = []
    enqueued = 0
    try:
        cluster.start()
        _wait_for_workers(app, cluster, 2)
        started = time.monotonic()
        next_sample = started
        while (elapsed := time.monotonic() - started) < duration_s:
            due = int(elapsed * rate) - enqueued
            if due > 0:
                enqueue_plain(app.store, due)
                enqueued += due
            if time.monotonic() >= next_sample:
                next_sample += sample_s
                pids = [int(w["pid"]) for w in m.live_workers(app.store)]
                memory = app.client.info("memory")
                sample = {
                    "t_s": round(elapsed, 1),
                    "redis_used_memory": int(memory["used_memory"]),
                    "worker_rss": sum(_rss_bytes(pid) for pid in pids),
                    "queued": app.management.counts()["total"],
                }
                samples.append(sample)
                console.print(f"soak: {sample}")
            time.sleep(0.05)
    finally:
        cluster.stop()
    stats = m.cluster_stats(app.store)
    # Compare the last quarter with the first (after a warm-up sample) to see growth.
    body = samples[1:] or samples
    quarter = max(1, len(body) // 4)

    def mean(key: str, part: list[dict[str, float]]) -> float:
        return sum(s[key] for s in part) / len(part)

    for key in ("redis_used_memory", "worker_rss"):
        first, last = mean(key, body[:quarter]), mean(key, body[-quarter:])
        results[key] = {
            "first_quarter_mean": round(first),
            "last_quarter_mean": round(last),
            "max": max(s[key] for s in body),
            "growth_pct": round(100 * (last - first) / first, 2) if first else 0.0,
        }
    results["enqueued"] = enqueued
    results["committed"] = stats[m.SUCCESSFUL]["total"]
    results["samples"] = samples
    drop_namespace(app.client, ns)
    app.close()
    return results


# -- command ----------------------------------------------------------------------------------


def render(console: Console, result: dict[str, Any]) -> None:
    table = Table(title=f"rexec bench {result['benchmark']}", header_style="bold", show_header=True)
    table.add_column("figure")
    table.add_column("value", justify="right")

    def rows(prefix: str, value: Any) -> Iterator[tuple[str, str]]:
        if isinstance(value, dict):
            for key, inner in value.items():
                yield from rows(
                    f"{prefix}{key}." if isinstance(inner, dict) else f"{prefix}{key}", inner
                )
        else:
            yield (
                prefix,
                f"{value:,}"
                if isinstance(value, int | float) and not isinstance(value, bool)
                else str(value),
            )

    for key, value in result.items():
        if key in ("benchmark", "classes", "node_share", "operator_actions", "samples"):
            continue
        for name, text in rows(key + ("." if isinstance(value, dict) else ""), value):
            table.add_row(name, text)
    console.print(table)


@click.command("bench")
@click.argument(
    "which",
    type=click.Choice(["store", "drain", "latency", "cluster", "soak", "chaos", "scale", "all"]),
    default="all",
)
@redis_url_option("Use this Redis (an empty one).")
@click.option("--json", "as_json", is_flag=True, help="Print only JSON.")
@click.option(
    "--big",
    default=1_000_000,
    show_default=True,
    type=click.IntRange(10_000, 50_000_000),
    help="store: the large queue size.",
)
@click.option(
    "--jobs",
    default=200_000,
    show_default=True,
    type=click.IntRange(1000, 50_000_000),
    help="drain: jobs to drain.",
)
@click.option(
    "--processes",
    default=2,
    show_default=True,
    type=click.IntRange(1, 64),
    help="drain: worker processes.",
)
@click.option(
    "--concurrency",
    default=8,
    show_default=True,
    type=click.IntRange(1, 1024),
    help="drain: slots per process.",
)
@click.option(
    "--samples",
    default=200,
    show_default=True,
    type=click.IntRange(10, 100_000),
    help="latency: jobs to time.",
)
@click.option(
    "--duration",
    default=3600.0,
    show_default=True,
    type=click.FloatRange(10, 7 * 86_400),
    help="soak: seconds to run.",
)
@click.option(
    "--rate",
    default=2000,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="soak: jobs enqueued per second.",
)
@click.option(
    "--chaos-jobs",
    default=20_000,
    show_default=True,
    type=click.IntRange(100, 10_000_000),
    help="chaos: jobs to drain while processes and Redis are killed.",
)
@click.option(
    "--chaos-seconds",
    default=60.0,
    show_default=True,
    type=click.FloatRange(5, 86_400),
    help="chaos: seconds of disruptions.",
)
@click.option("--seed", default=None, type=int, help="chaos: random seed, to repeat a run.")
@click.option(
    "--topology",
    type=click.Choice(["sentinel", "cluster"]),
    default=None,
    help="chaos: instead, on a local Sentinel group or Redis Cluster, SIGKILL the master"
    " mid-drain, with default and with replicated durability (--chaos-jobs jobs).",
)
@click.option(
    "--job",
    type=click.Choice(DRAIN_JOBS),
    default="noop",
    show_default=True,
    help="drain: the job body (rpush: one Redis RPUSH; rpush-batch: the same from a batch"
    " handler, pipelined; arpush, arpush-batch: the same, async;"
    " sleep-ms: a handler blocked for --sleep-ms).",
)
@click.option(
    "--sleep-ms",
    type=click.FloatRange(0, 60_000),
    default=1.0,
    show_default=True,
    help="drain: milliseconds each sleep-ms job blocks.",
)
@click.option(
    "--rtt-ms",
    type=click.FloatRange(0, 1000),
    default=0.0,
    show_default=True,
    help="drain: round-trip delay added between the workers and Redis by a proxy.",
)
def bench_command(  # noqa: PLR0917 - one parameter per click option
    which: str,
    redis_url: str | None,
    as_json: bool,
    big: int,
    jobs: int,
    processes: int,
    concurrency: int,
    samples: int,
    duration: float,
    rate: int,
    chaos_jobs: int,
    chaos_seconds: float,
    seed: int | None,
    topology: str | None,
    job: str,
    sleep_ms: float,
    rtt_ms: float,
) -> None:
    """Measure rexec on this machine: store, drain, latency, cluster, soak, or all.

    ``scale`` drains --jobs no-op jobs on local Redis Clusters of 1, 2 and 3 masters
    (a partition per master) and reports jobs/s and each master's Redis CPU per job.

    ``all`` runs store, drain, latency and cluster; ``soak`` (an hour by default) and
    ``chaos`` (kills processes and Redis while 20,000 jobs drain, on its own Redis) run
    only when asked for."""
    console = Console(stderr=True)
    chosen = ["store", "drain", "latency", "cluster"] if which == "all" else [which]
    if which == "chaos" and topology is not None:
        from rexec.chaos_failover import render_failover, run_failover_pair

        pair = run_failover_pair(
            topology, min(chaos_jobs, 20_000), seed, console=None if as_json else console
        )
        if not as_json:
            render_failover(console, pair)
        click.echo(orjson.dumps(pair, option=orjson.OPT_INDENT_2, default=str).decode())
        if pair["violations"]:
            raise SystemExit(1)
        return
    if topology is not None:
        raise click.UsageError("--topology goes with chaos: rexec bench chaos --topology ...")
    if which == "chaos":
        from rexec.chaos import ChaosConfig, render_report, run_chaos

        report = run_chaos(
            ChaosConfig(jobs=chaos_jobs, duration_s=chaos_seconds, seed=seed),
            console=None if as_json else console,
        )
        if not as_json:
            render_report(console, report)
        click.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2, default=str).decode())
        if report.get("violations"):
            raise SystemExit(1)
        return
    if which == "scale":
        from rexec.bench_scale import bench_scale

        console.print(f"scale: draining {jobs:,} no-op jobs on 1, 2 and 3 local masters ...")
        result = bench_scale(jobs, processes, concurrency)
        if not as_json:
            render(console, result)
        click.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        return
    results = []
    with redis_for_demo(redis_url) as url:
        for name in chosen:
            if name == "store":
                result = bench_store(url, big, console)
            elif name == "drain":
                result = bench_drain(
                    url,
                    jobs,
                    processes,
                    concurrency,
                    console,
                    job=job,
                    sleep_ms=sleep_ms,
                    rtt_ms=rtt_ms,
                )
            elif name == "latency":
                result = bench_latency(url, samples, console)
            elif name == "soak":
                result = bench_soak(url, duration, rate, max(1.0, duration / 120), console)
            else:
                console.print(
                    "cluster: the midnight scenario, 50,000 no-op jobs on 4 nodes x 2 processes ..."
                )
                result = bench_cluster(url, 50_000, 4, 2, 0.0)
            results.append(result)
            if not as_json:
                render(console, result)
    click.echo(
        orjson.dumps(
            results[0] if len(results) == 1 else results, option=orjson.OPT_INDENT_2
        ).decode()
    )
