"""Chaos on a replicated Redis: ``rexec bench chaos --topology sentinel|cluster``.

Starts the topology as local processes (rexec/topology.py), worker nodes running the
chaos app (rexec/chaos.py), and a producer that enqueues batches all along. Mid-drain it
SIGKILLs the master that holds the namespace, waits for the failover, then starts the
killed server again (it comes back as a replica, as a repaired machine would). At the end
it counts, per job the producer was told was enqueued (*acknowledged*):

- **committed**: its commit counter (a process variable the commit script increments
  atomically with the job's removal) is 1; **committed twice**: more than 1;
- **lost**: acknowledged, never committed, and no longer in the store;
- **run twice**: more than one execution record. The records go to a Redis of their own
  (the *ledger*), so killing a master cannot lose them. Each extra execution is
  explained by a lost lock: the next run locked the job after the previous lock
  expired, or the previous lock was taken on the killed master before the failover
  (the master it was taken on is gone, and with it the lock).

Run with ``durability="default"`` and ``"replicated"``; docs/scaling.md has the figures.
"""

from __future__ import annotations

import itertools
import os
import random
import shutil
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import redis

from rexec import metrics as m
from rexec.app import App
from rexec.chaos import (
    APP_PATH,
    EXCLUSIVE_GROUP,
    LEDGER_URL_ENV,
    NAMESPACE,
    RETRIES,
    _Node,
    counter_name,
    executions_key,
)
from rexec.codec import unpack
from rexec.errors import ConfigurationError, ReplicationTimeoutError, safe_str
from rexec.redis_server import RedisServer
from rexec.settings import WorkerSettings
from rexec.topology import ClusterTopology, SentinelTopology, Topology

if TYPE_CHECKING:
    from rich.console import Console

TOPOLOGIES = ("sentinel", "cluster")
PLAIN_PER_BATCH = 12  # plain jobs (an instance each) per producer batch, + one exclusive group


@dataclass(frozen=True)
class FailoverConfig:
    """One failover run."""

    topology: str = "sentinel"
    durability: str = "default"
    jobs: int = 4000  # the backlog enqueued before the nodes start
    produce_per_s: float = 500.0  # then enqueued all along, until after the failover
    nodes: int = 2
    processes: int = 2
    concurrency: int = 8
    lock_ms: int = 1000
    job_ms: float = 5.0
    kill_at: float = 0.4  # the master dies once this share of the jobs has run
    drain_timeout_s: float = 120.0
    seed: int | None = None
    work_dir: str | None = None


@dataclass
class _Produced:
    """What the producer was told: job id -> (type, instance), and what it was refused."""

    acked: dict[str, tuple[str, str]] = field(default_factory=dict)
    unconfirmed: int = 0  # ReplicationTimeoutError: written on a master, not confirmed
    errors: Counter[str] = field(default_factory=Counter)
    longest_stall_s: float = 0.0


def _start_topology(kind: str) -> Topology:
    if kind == "cluster":
        return ClusterTopology(masters=3, replicas=1, node_timeout_ms=1000).start()
    if kind == "sentinel":
        return SentinelTopology(
            replicas=1, sentinels=3, down_after_ms=500, failover_timeout_ms=2000
        ).start()
    raise ConfigurationError(f"topology must be one of {', '.join(TOPOLOGIES)}, got {kind!r}")


def _master(topology: Topology) -> RedisServer:
    if isinstance(topology, ClusterTopology):
        return topology.master_of(f"rexec:{{{NAMESPACE}}}:jobs")
    assert isinstance(topology, SentinelTopology)
    return topology.master()


def _wait_failed_over(topology: Topology, old: RedisServer) -> RedisServer:
    if isinstance(topology, ClusterTopology):
        return topology.wait_failed_over(f"rexec:{{{NAMESPACE}}}:jobs", old, timeout_s=60)
    assert isinstance(topology, SentinelTopology)
    return topology.wait_failed_over(old, timeout_s=60)


class _Producer(threading.Thread):
    def __init__(self, app: App, config: FailoverConfig, rng: random.Random) -> None:
        super().__init__(name="chaos-producer", daemon=True)
        self.app = app
        self.config = config
        self.rng = rng
        self.produced = _Produced()
        self.stop = threading.Event()

    def run(self) -> None:
        pause = (PLAIN_PER_BATCH + EXCLUSIVE_GROUP) / self.config.produce_per_s
        while not self.stop.is_set():
            self.batch()
            self.stop.wait(pause)

    def batch(self) -> bool:
        """Enqueues one batch; True if it was acknowledged."""
        payload = {"ms": self.config.job_ms}
        started = time.monotonic()
        while True:
            try:
                pis = self.app.start_process_instances([{} for _ in range(PLAIN_PER_BATCH + 1)])
                specs: list[dict[str, Any]] = [
                    {"type": "plain", "exclusive": False, "process_instance_id": pi}
                    for pi in pis[:-1]
                ]
                specs += [
                    {"type": "exclusive", "exclusive": True, "process_instance_id": pis[-1]}
                ] * EXCLUSIVE_GROUP
                for spec in specs:
                    spec["payload"], spec["retries"] = payload, RETRIES
                ids = self.app.enqueue_many(specs)
            except ReplicationTimeoutError:
                self.produced.unconfirmed += 1
            except Exception as exc:
                self.produced.errors[f"{type(exc).__name__}: {_short(safe_str(exc))}"] += 1
                if self.stop.wait(0.05):
                    return False
                continue
            else:
                for spec, job_id in zip(specs, ids, strict=True):
                    self.produced.acked[job_id] = (spec["type"], spec["process_instance_id"])
            stall = time.monotonic() - started
            self.produced.longest_stall_s = max(self.produced.longest_stall_s, stall)
            return True


def _explain(
    runs: list[Mapping[str, Any]], lock_ms: int, killed_at: float | None
) -> tuple[Counter[str], list[str]]:
    """Why each execution of one job after its first happened."""
    causes: Counter[str] = Counter()
    unexplained: list[str] = []
    # In the order the runs were locked (server time: one clock on this machine), not
    # the order they ended: a run cut off by the failover may end after its successor.
    runs = sorted(runs, key=lambda r: (int(r["exp"]), float(r["t"])))
    for before, after in itertools.pairwise(runs):
        relocked = int(after["exp"]) - lock_ms
        locked = int(before["exp"]) - lock_ms
        if relocked >= int(before["exp"]):
            causes["lock expired"] += 1
        elif killed_at is not None and locked / 1000 <= killed_at <= relocked / 1000 + 0.001:
            causes["lock lost with the master"] += 1
        elif int(after["retries"]) < int(before["retries"]):
            causes["handler failed"] += 1
        else:
            causes["unexplained"] += 1
            unexplained.append(
                f"job {after['id']} ran again (rev {before['rev']} -> {after['rev']}, locked"
                f" at {locked} then {relocked} ms, the master killed at"
                f" {killed_at and int(killed_at * 1000)} ms) before the lock of"
                f" {before['owner']} expired and not across the failover"
            )
    return causes, unexplained


def run_failover(config: FailoverConfig, *, console: Console | None = None) -> dict[str, Any]:
    """One run; returns its report (JSON-ready). ``report["violations"]`` lists what
    contradicts the guarantees of its durability."""
    rng = random.Random(config.seed if config.seed is not None else random.randrange(2**32))
    work = Path(config.work_dir or tempfile.mkdtemp(prefix="rexec-failover-"))
    work.mkdir(parents=True, exist_ok=True)

    def say(text: str) -> None:
        if console is not None:
            console.print(f"[dim]{config.topology}/{config.durability}[/dim] {text}")

    began = time.monotonic()
    ledger = RedisServer().start()
    topology: Topology | None = None
    nodes: list[_Node] = []
    producer: _Producer | None = None
    try:
        topology = _start_topology(config.topology)
        say(f"{config.topology} up at {topology.url}")
        app = App(topology.url, namespace=NAMESPACE, durability=config.durability)
        os.environ[LEDGER_URL_ENV] = ledger.url
        for index in range(config.nodes):
            settings = WorkerSettings(
                app_path=APP_PATH,
                redis_url=topology.url,
                namespace=NAMESPACE,
                processes=config.processes,
                concurrency=config.concurrency,
                lock_ms=config.lock_ms,
                shutdown_timeout_s=10.0,
                node_id=f"n{index + 1}",
                metrics_interval_s=0.5,
                durability=config.durability,
            )
            node = _Node(settings, work / f"node-n{index + 1}.log")
            node.start()
            nodes.append(node)
        producer = _Producer(app, config, rng)
        while len(producer.produced.acked) < config.jobs:
            producer.batch()
        backlog = len(producer.produced.acked)
        say(f"{backlog} jobs enqueued; the producer goes on at {config.produce_per_s:g}/s")
        producer.start()
        ledger_client = ledger.client()
        key = executions_key(NAMESPACE)
        deadline = time.monotonic() + config.drain_timeout_s
        while int(ledger_client.llen(key)) < config.kill_at * backlog:
            if time.monotonic() > deadline:
                raise ConfigurationError(f"the drain did not get going; see {work}")
            time.sleep(0.05)
        old = _master(topology)
        killed_at = time.time()
        old.kill()
        say(f"SIGKILL master :{old.port} after {int(ledger_client.llen(key))} executions")
        new = _wait_failed_over(topology, old)
        failover_s = time.time() - killed_at
        say(f"new master :{new.port} after {failover_s:.1f}s; the old one starts again")
        old.restart()
        time.sleep(3.0)  # the producer goes on a while with the new master
        producer.stop.set()
        producer.join(config.drain_timeout_s)
        produced = producer.produced
        say(f"{len(produced.acked)} jobs acknowledged; draining")
        drained_s: float | None = None
        while time.monotonic() < deadline:
            try:
                if int(app.client.hlen(app.store.keys.jobs)) == 0:
                    drained_s = time.time() - killed_at
                    break
            except redis.RedisError:
                pass
            time.sleep(0.1)
        time.sleep(1.0)  # the last metrics flush
        exit_codes = [node.stop(timeout_s=30) for node in nodes]
        logs = "".join(node.log_path.read_text(errors="replace") for node in nodes)
        raws: list[bytes] = ledger_client.lrange(key, 0, -1)  # type: ignore[assignment]
        records = [orjson.loads(raw) for raw in raws]
        instances = sorted({pi for _, pi in produced.acked.values()})
        variables: dict[str, dict[str, Any]] = {}
        for start in range(0, len(instances), 1000):
            chunk = instances[start : start + 1000]
            found: list[bytes | None] = app.client.hmget(app.store.keys.vars, chunk)  # type: ignore[assignment]
            for pi, raw in zip(chunk, found, strict=True):
                variables[pi] = dict(unpack(raw, "variables")) if raw else {}
        left = {
            job_id
            for job_id, present in zip(
                produced.acked,
                app.client.hmget(app.store.keys.jobs, list(produced.acked))
                if produced.acked
                else [],
                strict=True,
            )
            if present is not None
        }
        stats = m.cluster_stats(app.store)
        app.close()
        ledger_client.close()
    finally:
        os.environ.pop(LEDGER_URL_ENV, None)
        if producer is not None:
            producer.stop.set()
        for node in nodes:
            node.kill()
        if topology is not None:
            topology.stop()
        ledger.stop()

    runs: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    seen: set[str] = set()
    for record in records:
        if record["tok"] not in seen:
            seen.add(record["tok"])
            runs[str(record["id"])].append(record)
    commits = {
        job_id: int(variables.get(pi, {}).get(counter_name(job_type, job_id), 0))
        for job_id, (job_type, pi) in produced.acked.items()
    }
    committed = sum(1 for n in commits.values() if n >= 1)
    twice = sorted(job_id for job_id, n in commits.items() if n > 1)
    lost = sorted(job_id for job_id, n in commits.items() if n == 0 and job_id not in left)
    never_run = sorted(job_id for job_id in lost if job_id not in runs)
    causes: Counter[str] = Counter()
    unexplained: list[str] = []
    for job_runs in runs.values():
        if len(job_runs) > 1:
            found_causes, why = _explain(job_runs, config.lock_ms, killed_at)
            causes += found_causes
            unexplained += why
    violations: list[str] = []
    if config.durability == "replicated":
        violations += [f"acknowledged job {job_id} lost" for job_id in lost[:20]]
        if len(lost) > 20:
            violations.append(f"... and {len(lost) - 20} more acknowledged jobs lost")
    violations += [f"job {job_id} committed more than once" for job_id in twice[:20]]
    violations += unexplained[:20]
    if "Traceback" in logs:
        violations.append(f"a traceback in the node logs (see {work})")
    if "died with exit code" in logs:
        violations.append(f"a worker process died (see {work})")
    violations += [f"a node exited with {code} when stopped" for code in exit_codes if code]
    if left:
        violations.append(f"{len(left)} acknowledged job(s) still in the store at the end")
    report: dict[str, Any] = {
        "benchmark": "chaos-failover",
        "parameters": {**{k: v for k, v in asdict(config).items() if k != "work_dir"}},
        "acknowledged": len(produced.acked),
        "committed": committed,
        "lost": len(lost),
        "lost_never_run": len(never_run),
        "lost_examples": lost[:10],
        "committed_twice": len(twice),
        "run_twice": sum(1 for job_runs in runs.values() if len(job_runs) > 1),
        "extra_executions": dict(sorted(causes.items())),
        "enqueues_not_confirmed": produced.unconfirmed,
        "enqueue_errors": dict(produced.errors),
        "producer_longest_stall_s": round(produced.longest_stall_s, 2),
        "failover_s": round(failover_s, 2),
        "drained_after_kill_s": None if drained_s is None else round(drained_s, 2),
        "commit_refused": stats.get(m.COMMIT_REFUSED, {"total": 0})["total"],
        "seconds": round(time.monotonic() - began, 1),
        "work_dir": str(work),
        "violations": violations,
    }
    if not violations:
        shutil.rmtree(work, ignore_errors=True)
        report["work_dir"] = None
    return report


def run_failover_pair(
    topology: str, jobs: int, seed: int | None, *, console: Console | None = None
) -> dict[str, Any]:
    """The same failover with default and with replicated durability."""
    runs = {}
    for durability in ("default", "replicated"):
        runs[durability] = run_failover(
            FailoverConfig(topology=topology, durability=durability, jobs=jobs, seed=seed),
            console=console,
        )
    return {
        "benchmark": "chaos-failover",
        "topology": topology,
        "runs": runs,
        "violations": [f"{d}: {v}" for d, r in runs.items() for v in r["violations"]],
    }


def render_failover(console: Console, report: Mapping[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"rexec bench chaos --topology {report['topology']}", header_style="bold")
    table.add_column("figure")
    runs = report["runs"]
    for durability in runs:
        table.add_column(f"durability={durability}", justify="right")
    for name in (
        "acknowledged",
        "committed",
        "lost",
        "lost_never_run",
        "committed_twice",
        "run_twice",
        "extra_executions",
        "enqueues_not_confirmed",
        "enqueue_errors",
        "producer_longest_stall_s",
        "failover_s",
        "drained_after_kill_s",
        "commit_refused",
        "seconds",
    ):
        table.add_row(name, *(safe_str(r.get(name)) for r in runs.values()))
    console.print(table)
    for violation in report["violations"]:
        console.print(f"[red]violation:[/red] {violation}")


def _short(text: str, width: int = 160) -> str:
    """The start and the end of a long message (a pipeline's error ends with the cause)."""
    return text if len(text) <= width else f"{text[: width // 2]}…{text[-width // 2 :]}"
