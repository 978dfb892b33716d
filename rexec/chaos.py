"""Chaos: drain a mixed workload on a local cluster while processes and Redis die, then
prove from Redis's side that every job was committed exactly once.

Two parts live here, because the worker processes must import the app from the
installed package (``rexec.chaos:app``), wherever ``rexec bench chaos`` runs:

- the **app** the chaos workers run. Every job belongs to a process instance and its
  handler increments a per-job counter variable ``<type>:<job id>`` of that instance.
  The variable write is applied by the commit script atomically with the job's removal,
  and only if the instance's revision is still the one the handler read, so the final
  counter is the number of times the job was committed. Before returning, the handler
  also pushes an *execution record* (job, revision, lock expiry, owner, pid) to a list:
  the executions, as opposed to the commits.
- the **driver** (:func:`run_chaos`): a private ``redis-server`` (append-only file), N
  nodes of P worker processes, and while they drain the workload: SIGKILL a random
  worker process or a whole node every 0.5-2 s (restarting killed nodes, as an
  orchestrator would; the node supervisor restarts its workers), SIGSTOP one worker for
  longer than its lock time, restart Redis once and take it away for 5 s once. At the
  end :func:`verify` checks the counters and the execution records, :func:`scan_logs`
  the nodes' output, and ``rexec.check`` (when present) the data model.

No variable write ever conflicts: plain jobs each have an instance of their own;
exclusive jobs and fork/join branches share an instance but run one at a time. So a job
runs again only when its lock expired (its owner was killed, stopped, cut off from Redis
or too slow to renew) or when its handler failed; :func:`verify` demands one of these
for every extra execution. docs/reliability.md states the guarantees and the figures.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import itertools
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from rexec import metrics as m
from rexec.app import App
from rexec.cluster import node_command
from rexec.codec import unpack
from rexec.context import JobContext
from rexec.errors import ConfigurationError
from rexec.executor.node import STOP_WITH_PARENT_ENV
from rexec.redis_server import RedisServer, RedisServerConfig
from rexec.settings import WorkerSettings
from rexec.store import Store

if TYPE_CHECKING:
    from rich.console import Console

APP_PATH = "rexec.chaos:app"
NAMESPACE = "chaos"
RETRY_CYCLE = "R10/PT0S"  # a handler that fails while Redis is away must not become an incident
RETRIES = 10
EXCLUSIVE_GROUP = 8  # exclusive jobs per process instance
FORK_BRANCHES = 3  # a fork group: the fork, its branches and the join
FORK_GROUP = FORK_BRANCHES + 2
SHARES = {"plain": 0.4, "exclusive": 0.4, "fork": 0.2}
MAX_MESSAGES = 25  # violations listed one by one; the rest are counted


def executions_key(namespace: str) -> str:
    """The list of execution records (orjson), one per handler run that got to its end."""
    return f"rexec:{{{namespace}}}:chaos:executions"


def counter_name(job_type: str, job_id: str) -> str:
    return f"{job_type}:{job_id}"


# -- the app ----------------------------------------------------------------------------


def _execute(ctx: JobContext, payload: Mapping[str, Any], **extra: Any) -> None:
    """The work of every chaos job: count one commit of this job, atomically with it."""
    name = counter_name(ctx.job.type, ctx.job.id)
    count = int(ctx.variables.get(name, 0)) + 1  # read at a known instance revision
    if delay := float(payload.get("ms", 0)):
        time.sleep(delay / 1000)
    ctx.set_variable(name, count)
    job = ctx.job
    record = {
        "id": job.id,
        "type": job.type,
        "pi": job.process_instance_id,
        "rev": job.revision,
        "retries": job.retries,
        "exp": job.lock_expires_ms,
        "owner": ctx.worker_id,
        "pid": os.getpid(),
        "n": count,
        "t": time.time(),
        # redis-py resends a command whose connection broke: the token tells the copies.
        "tok": uuid.uuid4().hex,
        **extra,
    }
    _push(ledger_client(ctx.app), executions_key(ctx.app.namespace), orjson.dumps(record))


LEDGER_URL_ENV = "REXEC_CHAOS_LEDGER_URL"


@functools.cache
def _ledger(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def ledger_client(app: App) -> redis.Redis:
    """Where execution records go: the app's Redis, or (``REXEC_CHAOS_LEDGER_URL``) a
    Redis of their own, which survives when a master of the app's Redis is killed."""
    url = os.environ.get(LEDGER_URL_ENV)
    return _ledger(url) if url else app.client


def _push(client: redis.Redis, key: str, record: bytes) -> None:
    """Appends an execution record, waiting out a Redis outage: a handler that got this
    far has executed, and must not fail now (that would be a rerun for another reason
    than a lost lock). Its commit may be refused afterwards: that is what is tested."""
    while True:
        try:
            client.rpush(key, record)
            return
        except redis.ConnectionError:
            time.sleep(0.2)


def make_app(redis_url: str | None = None, namespace: str | None = None) -> App:
    """The chaos app: ``plain``, ``exclusive``, and ``fork`` (branches, then a join)."""
    app = App(redis_url, namespace=namespace)

    @app.job("plain", exclusive=False, retry_cycle=RETRY_CYCLE)
    def plain(ctx: JobContext, payload: Mapping[str, Any]) -> None:
        _execute(ctx, payload)

    @app.job("exclusive", retry_cycle=RETRY_CYCLE)
    def exclusive(ctx: JobContext, payload: Mapping[str, Any]) -> None:
        _execute(ctx, payload)

    @app.job("fork", retry_cycle=RETRY_CYCLE)
    def fork(ctx: JobContext, payload: Mapping[str, Any]) -> None:
        branches = int(payload["branches"])
        # Exclusive branches (Camunda's default): one instance's branches run one after
        # another, in this slot, so their variable writes never conflict.
        ctx.fork(
            [
                {"type": "branch", "payload": {"ms": payload["ms"]}, "retries": RETRIES}
                for _ in range(branches)
            ],
            join="join",
            join_payload={"ms": payload["ms"]},
            retries=RETRIES,
        )
        _execute(ctx, payload)

    @app.job("branch", retry_cycle=RETRY_CYCLE)
    def branch(ctx: JobContext, payload: Mapping[str, Any]) -> None:
        _execute(ctx, payload)

    @app.job("join", retry_cycle=RETRY_CYCLE)
    def join(ctx: JobContext, payload: Mapping[str, Any]) -> None:
        # The join must see every branch's commit: it is created by the last one.
        seen = sum(1 for name in ctx.variables if name.startswith("branch:"))
        _execute(ctx, payload, seen=seen)

    return app


app = make_app()


# -- the workload -----------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """What was enqueued: process instance -> the ids of the jobs enqueued into it."""

    plain: dict[str, str]
    exclusive: dict[str, list[str]]
    forks: dict[str, str]
    branches: int = FORK_BRANCHES

    @property
    def jobs(self) -> int:
        """Every job the workload makes, the branches and joins created on the way too."""
        return (
            len(self.plain)
            + sum(len(ids) for ids in self.exclusive.values())
            + len(self.forks) * (self.branches + 2)
        )

    def instances(self) -> list[str]:
        return [*self.plain, *self.exclusive, *self.forks]


def plan_mix(jobs: int) -> tuple[int, int, int]:
    """(plain jobs, exclusive instances, fork groups) making up ``jobs`` jobs."""
    groups = int(jobs * SHARES["fork"]) // FORK_GROUP
    instances = int(jobs * SHARES["exclusive"]) // EXCLUSIVE_GROUP
    plain = jobs - groups * FORK_GROUP - instances * EXCLUSIVE_GROUP
    return plain, instances, groups


def enqueue_workload(producer: App, jobs: int, job_ms: float, rng: random.Random) -> Workload:
    """Starts the process instances and enqueues the jobs, their kinds shuffled."""
    plain_n, exclusive_n, forks_n = plan_mix(jobs)
    pis = producer.start_process_instances([{} for _ in range(plain_n + exclusive_n + forks_n)])
    plain_pis = pis[:plain_n]
    exclusive_pis = pis[plain_n : plain_n + exclusive_n]
    fork_pis = pis[plain_n + exclusive_n :]
    payload = {"ms": job_ms}
    specs: list[dict[str, Any]] = [
        {"type": "plain", "exclusive": False, "process_instance_id": pi} for pi in plain_pis
    ]
    specs += [
        {"type": "exclusive", "exclusive": True, "process_instance_id": pi}
        for pi in exclusive_pis
        for _ in range(EXCLUSIVE_GROUP)
    ]
    specs += [
        {
            "type": "fork",
            "exclusive": True,
            "process_instance_id": pi,
            "payload": {**payload, "branches": FORK_BRANCHES},
        }
        for pi in fork_pis
    ]
    rng.shuffle(specs)
    for spec in specs:
        spec.setdefault("payload", payload)
        spec["retries"] = RETRIES
    ids = producer.enqueue_many(specs)
    plain: dict[str, str] = {}
    exclusive: dict[str, list[str]] = defaultdict(list)
    forks: dict[str, str] = {}
    for spec, job_id in zip(specs, ids, strict=True):
        pi = spec["process_instance_id"]
        if spec["type"] == "plain":
            plain[pi] = job_id
        elif spec["type"] == "exclusive":
            exclusive[pi].append(job_id)
        else:
            forks[pi] = job_id
    return Workload(plain, dict(exclusive), forks)


# -- verification ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Disruptions:
    """What the driver did, for explaining extra executions (pids, epoch seconds)."""

    killed: Mapping[int, float] = field(default_factory=dict)  # pid -> when
    stopped: tuple[tuple[int, float, float], ...] = ()  # (pid, from, to)
    redis_down: tuple[tuple[float, float], ...] = ()  # (from, to)


@dataclass
class Verdict:
    """The figures of a run and what contradicts the guarantees (empty: none)."""

    figures: dict[str, Any]
    violations: list[str] = field(default_factory=list)


class _Violations:
    def __init__(self) -> None:
        self.messages: list[str] = []
        self.counts: Counter[str] = Counter()

    def add(self, kind: str, message: str) -> None:
        self.counts[kind] += 1
        if self.counts[kind] <= MAX_MESSAGES:
            self.messages.append(message)

    def result(self) -> list[str]:
        more = [
            f"... and {n - MAX_MESSAGES} more: {kind}"
            for kind, n in self.counts.items()
            if n > MAX_MESSAGES
        ]
        return self.messages + more


def _expected_counters(
    workload: Workload, variables: Mapping[str, Mapping[str, Any]], bad: _Violations
) -> dict[str, int]:
    """Job id -> commits, from the counters; checks each instance holds what it should."""
    commits: dict[str, int] = {}

    def take(pi: str, wanted: Mapping[str, Sequence[str] | int]) -> None:
        found: dict[str, list[str]] = defaultdict(list)
        for name, value in variables.get(pi, {}).items():
            job_type, _, job_id = str(name).partition(":")
            if not isinstance(value, int) or not job_id:
                bad.add("foreign", f"instance {pi}: unexpected variable {name!r}={value!r}")
                continue
            found[job_type].append(job_id)
            commits[job_id] = value
        for job_type in found.keys() - wanted.keys():
            bad.add("foreign", f"instance {pi}: jobs of type {job_type!r} committed")
        for job_type, want in wanted.items():
            got = found.get(job_type, [])
            if isinstance(want, int):
                if len(got) != want:
                    bad.add(
                        "missing",
                        f"instance {pi}: {len(got)} {job_type} job(s) committed, {want} expected",
                    )
                continue
            for job_id in set(want) - set(got):
                bad.add("missing", f"job {job_id} ({job_type}, instance {pi}) never committed")
            for job_id in set(got) - set(want):
                bad.add("foreign", f"instance {pi}: unknown {job_type} job {job_id} committed")

    for pi, job_id in workload.plain.items():
        take(pi, {"plain": [job_id]})
    for pi, ids in workload.exclusive.items():
        take(pi, {"exclusive": ids})
    for pi, job_id in workload.forks.items():
        take(pi, {"fork": [job_id], "branch": workload.branches, "join": 1})
    return commits


def verify(
    workload: Workload,
    variables: Mapping[str, Mapping[str, Any]],
    records: Iterable[Mapping[str, Any]],
    *,
    lock_ms: int,
    lock_expiries: int,
    disruptions: Disruptions = Disruptions(),
) -> Verdict:
    """Checks the end state of a chaos run against the guarantees.

    ``variables``: every instance's variables (the commit counters); ``records``: the
    execution records; ``lock_expiries``: the ``lock-expired`` counter of the store.
    Every job must be committed exactly once (counter 1), none missing, none unknown;
    every job executed at least once and never committed without an execution. Of the
    executions of one job, sorted by revision, each but the last must be explained: the
    next one was locked no earlier than this one's lock expired, or (failing that) ran
    with fewer retries: the handler failed. Each expiry-explained rerun needs a
    reclaimed lock.
    """
    bad = _Violations()
    commits = _expected_counters(workload, variables, bad)
    for job_id, n in commits.items():
        if n != 1:
            bad.add("commits", f"job {job_id} committed {n} times")

    executions: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    tokens: set[str] = set()
    resent = 0
    for record in records:
        if record["tok"] in tokens:
            resent += 1
            continue
        tokens.add(record["tok"])
        executions[str(record["id"])].append(record)
    for job_id in commits.keys() - executions.keys():
        bad.add("unexecuted", f"job {job_id} committed without an execution record")
    for job_id in executions.keys() - commits.keys():
        bad.add("lost", f"job {job_id} executed but never committed")

    causes: Counter[str] = Counter()
    late: list[str] = []  # examples of reruns no disruption explains but a slow owner
    failed_reruns = 0
    expired_reruns = 0
    for job_id, runs in executions.items():
        runs.sort(key=lambda r: (int(r["rev"]), float(r["t"])))
        for record in runs:
            if record["type"] == "join" and record.get("seen") != workload.branches:
                bad.add(
                    "join",
                    f"join {job_id} ran having seen {record.get('seen')} of"
                    f" {workload.branches} branches committed",
                )
        for before, after in itertools.pairwise(runs):
            if int(after["rev"]) == int(before["rev"]):
                bad.add("twice", f"job {job_id} executed twice under one lock (rev {after['rev']})")
            elif int(after["exp"]) - lock_ms >= int(before["exp"]):
                # (Attempts may have failed in between, before recording anything.)
                expired_reruns += 1
                cause = _cause(before, after, lock_ms, disruptions)
                causes[cause] += 1
                if cause == "renewal late" and len(late) < 5:
                    late.append(
                        f"job {job_id} ({before['type']}) locked by {before['owner']} until"
                        f" {before['exp']}, run at {before['t'] * 1000:.0f}; locked again by"
                        f" {after['owner']} at {int(after['exp']) - lock_ms} (ms since epoch)"
                    )
            elif int(after["retries"]) < int(before["retries"]):
                failed_reruns += 1
            else:
                bad.add(
                    "unexplained",
                    f"job {job_id} ran again (rev {before['rev']} -> {after['rev']}, by"
                    f" {after['owner']}) before its lock of {before['owner']} expired, and"
                    " not after a failure",
                )
    if expired_reruns > lock_expiries:
        bad.add(
            "expiries",
            f"{expired_reruns} reruns after a lock expiry, but only {lock_expiries} locks"
            " were reclaimed",
        )

    executed = sum(len(runs) for runs in executions.values())
    committed = sum(commits.values())
    figures = {
        "jobs": workload.jobs,
        "executed": executed,
        "committed": committed,
        "committed_exactly_once": sum(1 for n in commits.values() if n == 1),
        "duplicated_executions": executed - len(executions),
        "reruns_after_lock_expiry": expired_reruns,
        "reruns_after_failure": failed_reruns,
        "rerun_causes": dict(sorted(causes.items())),
        "renewal_late_examples": late,
        "lock_expiries_reclaimed": lock_expiries,
        "records_resent": resent,
    }
    return Verdict(figures, bad.result())


def _cause(
    before: Mapping[str, Any], after: Mapping[str, Any], lock_ms: int, d: Disruptions
) -> str:
    """What made the first execution's lock expire, as far as the driver's log tells:
    something that happened to its owner between the two lockings of the job."""
    pid = int(before["pid"])
    locked, relocked = ((int(r["exp"]) - lock_ms) / 1000 for r in (before, after))
    if any(p == pid and locked <= until and since <= relocked for p, since, until in d.stopped):
        return "owner stopped"
    if locked <= d.killed.get(pid, -1.0) <= relocked:
        return "owner killed"
    if any(locked <= up and down <= relocked for down, up in d.redis_down):
        return "redis away"
    return "renewal late"  # the owner lived but did not renew in time (an overloaded host)


# -- node logs ----------------------------------------------------------------------------------

_UNREACHABLE = re.compile(r"rexec\.worker (\S+): Redis unreachable")
_REACHABLE = re.compile(r"rexec\.worker (\S+): Redis reachable again")
_DIED = re.compile(r"worker (\d+) \(pid (\d+)\) died with exit code (\S+);")


def scan_logs(texts: Iterable[str], killed_pids: Iterable[int], outages: int) -> Verdict:
    """Checks the nodes' output: no traceback, no worker death but the ones we caused,
    and per worker process at most one "Redis unreachable" per outage, each followed by
    "reachable again" unless the process was killed first."""
    bad = _Violations()
    killed = set(killed_pids)
    down: dict[str, bool] = {}
    unreachable: Counter[str] = Counter()
    reachable = tracebacks = deaths = 0
    for text in texts:
        for line in text.splitlines():
            if line.startswith("Traceback"):
                tracebacks += 1
                bad.add("traceback", f"traceback in a node log: {line}")
            if match := _UNREACHABLE.search(line):
                worker = match.group(1)
                if down.get(worker):
                    bad.add("spam", f"{worker} logged 'Redis unreachable' twice in one outage")
                down[worker] = True
                unreachable[worker] += 1
            elif match := _REACHABLE.search(line):
                down[match.group(1)] = False
                reachable += 1
            elif match := _DIED.search(line):
                deaths += 1
                pid, code = int(match.group(2)), match.group(3)
                if pid not in killed or code != str(-signal.SIGKILL):
                    bad.add("crash", f"a worker died on its own: {line.strip()}")
    for worker, n in unreachable.items():
        if n > outages:
            bad.add("spam", f"{worker} logged 'Redis unreachable' {n} times in {outages} outages")
        if down.get(worker) and _pid_of(worker) not in killed:
            bad.add("stuck", f"{worker} never logged 'Redis reachable again'")
    figures = {
        "workers_logging_unreachable": len(unreachable),
        "unreachable_lines": sum(unreachable.values()),
        "reachable_again_lines": reachable,
        "tracebacks": tracebacks,
        "worker_deaths_seen_by_supervisors": deaths,
    }
    return Verdict(figures, bad.result())


# -- the cluster under test -----------------------------------------------------------------


class _Node:
    """One ``python -m rexec.node`` process in a session of its own (so the whole node,
    supervisor and workers, can be killed), restartable under the same node id."""

    def __init__(self, settings: WorkerSettings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def node_id(self) -> str:
        return self.settings.node_id or ""

    def start(self) -> None:
        argv, env = node_command(self.settings)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **env, STOP_WITH_PARENT_ENV: str(os.getpid())},
                start_new_session=True,
            )
        self.starts += 1

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def workers(self) -> list[int]:
        return worker_pids(self.proc.pid) if self.alive and self.proc is not None else []

    def kill(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout_s: float) -> int | None:
        """SIGTERM (graceful: workers finish and flush their metrics), then SIGKILL."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        # Workers outliving their supervisor would be orphans: the group goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.returncode


def worker_pids(node_pid: int) -> list[int]:
    """The live worker processes of a node: its children started by multiprocessing's
    spawn (not its resource tracker), read from /proc (Linux)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
            state, ppid = stat.rsplit(b")", 1)[1].split()[:2]
            if int(ppid) != node_pid or state in (b"Z", b"X"):
                continue
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if b"spawn_main" in cmdline:
            pids.append(int(entry))
    return sorted(pids)


def held_jobs(store: Store, pids: Iterable[int] | None = None) -> dict[str, str]:
    """The jobs locked by the worker processes ``pids`` (None: by anyone), each with
    its lock (``owner|revision``)."""
    client = store.client
    ids: list[bytes] = client.zrange(store.keys.locked, 0, -1)  # type: ignore[assignment]
    if not ids:
        return {}
    records: list[bytes | None] = client.hmget(store.keys.jobs, ids)  # type: ignore[assignment]
    suffixes = None if pids is None else tuple(f".{pid}" for pid in pids)
    held = {}
    for job_id, record in zip(ids, records, strict=True):
        if record is None:
            continue
        owner, lock = _lock_of(record)
        if owner and (suffixes is None or owner.endswith(suffixes)):
            held[job_id.decode()] = lock
    return held


def _lock_of(record: bytes) -> tuple[str, str]:
    """(owner, ``owner|revision``) of a job record."""
    fields = record.decode().split("|")
    return fields[7], f"{fields[7]}|{fields[6]}"


@dataclass
class ChaosEvent:
    """One disruption and how long the cluster took to recover from it, in three steps:
    until every job its victims held was released (its lock expired and an acquisition
    reclaimed it; or it was committed), taken over (locked by another worker, or
    committed), and committed."""

    kind: str  # worker-kill, node-kill, worker-stop, redis-restart, redis-down
    at_s: float  # since the chaos began
    target: str
    held: dict[str, str] = field(default_factory=dict)  # job id -> its victim's lock
    started: float = 0.0  # monotonic time recovery is measured from
    released_s: float | None = None
    taken_over_s: float | None = None
    committed_s: float | None = None
    _not_released: set[str] = field(default_factory=set, repr=False)
    _not_taken: set[str] = field(default_factory=set, repr=False)
    _not_committed: set[str] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        self._not_released = set(self.held)
        self._not_taken = set(self.held)
        self._not_committed = set(self.held)
        self.observe({})

    @property
    def open(self) -> bool:
        return self.committed_s is None

    @property
    def pending(self) -> set[str]:
        return self._not_committed

    def observe(self, records: Mapping[str, bytes | None]) -> None:
        """Takes the current records of (some of) the held jobs into account."""
        for job_id, record in records.items():
            if record is None:
                self._not_committed.discard(job_id)
                self._not_taken.discard(job_id)
                self._not_released.discard(job_id)
                continue
            owner, lock = _lock_of(record)
            if lock != self.held[job_id]:
                self._not_released.discard(job_id)
                if owner:
                    self._not_taken.discard(job_id)
        elapsed = time.monotonic() - self.started if self.held else 0.0
        if self.released_s is None and not self._not_released:
            self.released_s = elapsed
        if self.taken_over_s is None and not self._not_taken:
            self.taken_over_s = elapsed
        if self.committed_s is None and not self._not_committed:
            self.committed_s = elapsed

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "at_s": round(self.at_s, 2),
            "target": self.target,
            "jobs_held": len(self.held),
            "released_s": _round(self.released_s),
            "taken_over_s": _round(self.taken_over_s),
            "committed_s": _round(self.committed_s),
        }


# -- the driver -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChaosConfig:
    """One chaos run. The defaults are the full run of ``rexec bench chaos``."""

    jobs: int = 20_000
    duration_s: float = 60.0  # of disruptions; the drain may end sooner or later
    nodes: int = 2
    processes: int = 2
    concurrency: int = 8
    lock_ms: int = 1000
    job_ms: float = 40.0  # each handler sleeps this long
    kill_every_s: tuple[float, float] = (0.5, 2.0)
    node_kill_share: float = 0.25  # of the kills, whole nodes (the rest: one worker)
    node_restart_delay_s: float = 0.5  # the "orchestrator" restarting a killed node
    stop_extra_s: float = 1.0  # a stopped worker stays stopped lock time + this
    redis_down_s: float = 5.0
    appendfsync: str = "always"
    drain_timeout_s: float = 300.0
    seed: int | None = None
    work_dir: str | None = None  # node logs and the Redis data (default: a temp dir)


class _Run:
    """The state of one chaos run."""

    def __init__(self, config: ChaosConfig, console: Console | None) -> None:
        self.config = config
        self.console = console
        self.seed = config.seed if config.seed is not None else random.randrange(2**32)
        self.rng = random.Random(self.seed)
        self.dir = Path(config.work_dir or tempfile.mkdtemp(prefix="rexec-chaos-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.server = RedisServer(
            RedisServerConfig(
                appendonly=True,
                appendfsync=config.appendfsync,
                dir=str(self.dir / "redis"),
            )
        )
        self.nodes: list[_Node] = []
        self.events: list[ChaosEvent] = []
        self.killed: dict[int, float] = {}  # pid -> when (epoch s)
        self.stopped: list[tuple[int, float, float]] = []  # (pid, SIGSTOP, SIGCONT), epoch s
        self.redis_down: list[tuple[float, float]] = []
        # The stopped worker and its node are not killed until a while after SIGCONT,
        # so that its refused late commits get counted (flushed to Redis).
        self.spared: tuple[_Node, int] | None = None
        self.spared_until = 0.0
        self.resumed_at = 0.0  # when the stopped worker got SIGCONT (monotonic)
        self.drained_s: float | None = None  # when the store was first seen empty
        self.crash_check: threading.Thread | None = None
        self.crash_violations: list[str] = []
        self.exit_codes: dict[str, int | None] = {}  # of the nodes' graceful stop
        self.t0 = 0.0
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        assert self._store is not None
        return self._store

    def say(self, text: str) -> None:
        if self.console is not None:
            self.console.print(f"[dim]{self.elapsed():6.1f}s[/dim] {text}")

    def elapsed(self) -> float:
        return time.monotonic() - self.t0 if self.t0 else 0.0

    # -- set-up --

    def start(self) -> Workload:
        self.server.start()
        # No retries inside redis-py: the driver notices an outage at once and moves on.
        client = self.server.client(retry=Retry(NoBackoff(), 0), socket_timeout=10)
        producer = App.with_client(client, namespace=NAMESPACE)
        self._store = producer.store
        started = time.monotonic()
        workload = enqueue_workload(producer, self.config.jobs, self.config.job_ms, self.rng)
        self.say(
            f"enqueued {workload.jobs - len(workload.forks) * (workload.branches + 1):,} jobs"
            f" ({workload.jobs:,} with the branches and joins to come) in"
            f" {time.monotonic() - started:.1f}s"
        )
        c = self.config
        for index in range(c.nodes):
            settings = WorkerSettings(
                app_path=APP_PATH,
                redis_url=self.server.url,
                namespace=NAMESPACE,
                processes=c.processes,
                concurrency=c.concurrency,
                lock_ms=c.lock_ms,
                shutdown_timeout_s=10.0,
                node_id=f"n{index + 1}",
                metrics_interval_s=0.5,
            )
            node = _Node(settings, self.dir / f"node-n{index + 1}.log")
            node.start()
            self.nodes.append(node)
        deadline = time.monotonic() + 60
        while len(m.live_workers(self.store)) < c.nodes * c.processes:
            if time.monotonic() > deadline:
                raise ConfigurationError(f"the nodes did not start within 60 s; see {self.dir}")
            time.sleep(0.05)
        self.t0 = time.monotonic()
        self.say(f"{c.nodes} nodes x {c.processes} worker processes up; chaos begins")
        return workload

    # -- disruptions --

    def _event(self, kind: str, target: str, held: dict[str, str]) -> ChaosEvent:
        event = ChaosEvent(kind, self.elapsed(), target, held, time.monotonic())
        self.events.append(event)
        return event

    def _snapshot(self, pids: Iterable[int] | None) -> dict[str, str]:
        try:
            return held_jobs(self.store, pids)
        except redis.RedisError:
            return {}

    def kill_something(self) -> None:
        alive = [n for n in self.nodes if n.alive]
        spared_node, spared_pid = (None, 0)
        if self.spared is not None and time.monotonic() < self.spared_until:
            spared_node, spared_pid = self.spared
        candidates = [n for n in alive if n is not spared_node]
        whole_node = (
            len(alive) == len(self.nodes)
            and candidates
            and self.rng.random() < self.config.node_kill_share
        )
        if whole_node:
            node = self.rng.choice(candidates)
            pids = node.workers()
            node.kill()
            self.killed.update(dict.fromkeys(pids, time.time()))
            time.sleep(0.05)  # commands already in Redis's hands land first
            self._event("node-kill", node.node_id, self._snapshot(pids))
            self.say(f"SIGKILL node {node.node_id} (workers {pids})")
            return
        workers = [(n, pid) for n in alive for pid in n.workers() if pid != spared_pid]
        if not workers:
            return
        # A worker with jobs in hand, when there is one: killing one that has just
        # started (or restarted) and holds nothing tests nothing.
        holding = [(n, pid) for n, pid in workers if self._snapshot([pid])]
        node, pid = self.rng.choice(holding or workers)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self.killed[pid] = time.time()
        time.sleep(0.05)
        self._event("worker-kill", f"{node.node_id} pid {pid}", self._snapshot([pid]))
        self.say(f"SIGKILL worker {pid} of {node.node_id}")

    def stop_worker(self) -> tuple[int, float] | None:
        """SIGSTOPs a worker holding jobs for longer than its lock time."""
        choices = [(n, pid) for n in self.nodes for pid in n.workers()]
        if not choices:
            return None
        holding = [(n, pid) for n, pid in choices if self._snapshot([pid])]
        node, pid = self.rng.choice(holding or choices)
        os.kill(pid, signal.SIGSTOP)
        self.stopped.append((pid, time.time(), 0.0))
        self.spared, self.spared_until = (node, pid), float("inf")
        time.sleep(0.05)
        self._event("worker-stop", f"{node.node_id} pid {pid}", self._snapshot([pid]))
        stop_s = self.config.lock_ms / 1000 + self.config.stop_extra_s
        self.say(f"SIGSTOP worker {pid} of {node.node_id} for {stop_s:.1f}s")
        return pid, time.monotonic() + stop_s

    def resume(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
        self.resumed_at = time.monotonic()
        self.spared_until = self.resumed_at + 5.0
        self.stopped = [
            (p, since, time.time() if p == pid else until) for p, since, until in self.stopped
        ]
        self.say(f"SIGCONT worker {pid}")

    def restart_redis(self) -> None:
        held = self._snapshot(None)
        down = time.time()
        self.server.restart()
        self.redis_down.append((down, time.time()))
        self._event("redis-restart", "redis-server", held)
        self.say(f"restarted Redis (SIGTERM, start) in {time.time() - down:.2f}s")

    def take_redis_away(self) -> None:
        held = self._snapshot(None)
        down = time.time()
        self.server.kill()
        time.sleep(self.config.redis_down_s)
        self.server.restart()
        self.redis_down.append((down, time.time()))
        self._event("redis-down", "redis-server", held)
        self.say(f"Redis SIGKILLed, away {time.time() - down:.1f}s, started again")
        # The data model as the append-only file brought it back, checked while the
        # workers carry on (the checker reads consistent snapshots, chunk by chunk).
        self.crash_check = threading.Thread(target=self._check_after_crash, daemon=True)
        self.crash_check.start()

    def _check_after_crash(self) -> None:
        try:
            self.crash_violations.extend(_invariant_violations(self.store) or [])
        except Exception as exc:  # reported, not raised: this is a side thread
            self.crash_violations.append(f"the checker failed: {exc!r}")

    # -- the orchestrator and the trackers --

    def tend(self, restart_at: dict[int, float]) -> None:
        """Restarts nodes found dead (after a delay, as an orchestrator would) and
        notes which disruptions have been recovered from."""
        now = time.monotonic()
        for index, node in enumerate(self.nodes):
            if node.alive:
                continue
            when = restart_at.setdefault(index, now + self.config.node_restart_delay_s)
            if now >= when:
                del restart_at[index]
                node.start()
                self.say(f"restarted node {node.node_id}")
        if self.drained_s is None:
            try:
                if self.store.client.hlen(self.store.keys.jobs) == 0:
                    self.drained_s = self.elapsed()
                    self.say("the store is empty: every job committed")
            except redis.RedisError:
                pass
        open_events = [e for e in self.events if e.open]
        if not open_events:
            return
        pending = sorted({job for e in open_events for job in e.pending})
        try:
            found: list[bytes | None] = self.store.client.hmget(self.store.keys.jobs, pending)  # type: ignore[assignment]
        except redis.RedisError:
            return
        records = dict(zip(pending, found, strict=True))
        for event in open_events:
            event.observe({job: records[job] for job in event.pending})

    def chaos(self) -> None:
        c = self.config
        end = self.t0 + c.duration_s
        stop_at = self.t0 + 0.15 * c.duration_s
        redis_restart_at = self.t0 + 0.35 * c.duration_s
        redis_down_at = self.t0 + 0.6 * c.duration_s
        next_kill = self.t0 + self.rng.uniform(*c.kill_every_s)
        stopped: tuple[int, float] | None = None
        restart_at: dict[int, float] = {}
        while (now := time.monotonic()) < end:
            if stopped is not None and now >= stopped[1]:
                self.resume(stopped[0])
                stopped = None
            elif stop_at and now >= stop_at:
                # No worker may be alive just then (both nodes restarting after kills):
                # try again shortly rather than never stopping one.
                stopped = self.stop_worker()
                stop_at = 0.0 if stopped is not None else now + 0.25
            elif redis_restart_at and now >= redis_restart_at and stopped is None:
                redis_restart_at = 0.0
                self.restart_redis()
            elif redis_down_at and now >= redis_down_at and stopped is None:
                redis_down_at = 0.0
                self.take_redis_away()
            elif now >= next_kill:
                self.kill_something()
                next_kill = time.monotonic() + self.rng.uniform(*c.kill_every_s)
            self.tend(restart_at)
            time.sleep(0.02)
        if stopped is not None:
            self.resume(stopped[0])
        while restart_at or not all(n.alive for n in self.nodes):
            self.tend(restart_at)
            time.sleep(0.02)

    def drain(self) -> None:
        """Waits (up to the drain timeout) for the store to be empty."""
        deadline = time.monotonic() + self.config.drain_timeout_s
        restart_at: dict[int, float] = {}
        while self.drained_s is None and time.monotonic() < deadline:
            self.tend(restart_at)
            time.sleep(0.05)

    def settle(self) -> None:
        """Waits (a little) for the last recoveries to be seen and for the supervisors
        to have replaced the last workers killed, then stops the nodes gracefully."""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and (
            any(e.open for e in self.events) or not self._all_workers_up()
        ):
            self.tend({})
            time.sleep(0.05)
        for node in self.nodes:
            self.exit_codes[node.node_id] = node.stop(timeout_s=30)

    def _all_workers_up(self) -> bool:
        """Every node has all its worker processes, and each has announced itself (a
        process still starting up would die of SIGTERM instead of stopping)."""
        try:
            announced = {int(w["pid"]) for w in m.live_workers(self.store)}
        except redis.RedisError:
            return False
        for node in self.nodes:
            pids = node.workers()
            if len(pids) < self.config.processes or not announced.issuperset(pids):
                return False
        return True

    def close(self) -> None:
        for node in self.nodes:
            node.kill()
        if self._store is not None:
            self._store.client.close()
        self.server.stop()

    # -- the end --

    def collect(self, workload: Workload) -> tuple[dict[str, dict[str, Any]], list[Any], int]:
        client = self.store.client
        instances = workload.instances()
        variables: dict[str, dict[str, Any]] = {}
        for start in range(0, len(instances), 1000):
            chunk = instances[start : start + 1000]
            raws: list[bytes | None] = client.hmget(self.store.keys.vars, chunk)  # type: ignore[assignment]
            for pi, raw in zip(chunk, raws, strict=True):
                variables[pi] = dict(unpack(raw, "variables")) if raw else {}
        raw_records: list[bytes] = client.lrange(executions_key(NAMESPACE), 0, -1)  # type: ignore[assignment]
        records = [orjson.loads(r) for r in raw_records]
        expired = int(client.hget(self.store.keys.counters, "lock-expired") or 0)
        return variables, records, expired


def _invariant_violations(store: Store) -> list[str] | None:
    """``rexec.check.check(store)`` if that module exists yet (None: not available)."""
    try:
        module = importlib.import_module("rexec.check")
    except ImportError:
        return None
    check: Callable[[Store], Sequence[Any]] = module.check
    return [
        f"{v.kind} ({v.key}{'' if v.job_id is None else ', job ' + v.job_id}): {v.detail}"
        if hasattr(v, "detail")
        else str(v)
        for v in check(store)
    ]


def _percentile(values: Sequence[float], q: float) -> float | None:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


def run_chaos(
    config: ChaosConfig | None = None, *, console: Console | None = None
) -> dict[str, Any]:
    """Runs the chaos scenario on a private Redis and returns its report (a dict of
    figures, JSON-ready); ``report["violations"]`` lists whatever contradicts the
    guarantees, empty on success. With a ``console``, prints progress and tables."""
    config = config or ChaosConfig()
    run = _Run(config, console)
    began = time.monotonic()
    try:
        workload = run.start()
        run.chaos()
        run.drain()
        run.settle()
        variables, records, expired = run.collect(workload)
        verdict = verify(
            workload,
            variables,
            records,
            lock_ms=config.lock_ms,
            lock_expiries=expired,
            disruptions=Disruptions(dict(run.killed), tuple(run.stopped), tuple(run.redis_down)),
        )
        logs = scan_logs(
            (node.log_path.read_text(errors="replace") for node in run.nodes),
            run.killed,
            outages=len(run.redis_down),
        )
        stats = m.cluster_stats(run.store)
        left = run.store.client.hlen(run.store.keys.jobs)
        if run.crash_check is not None:
            run.crash_check.join(120)
        invariants = _invariant_violations(run.store)
        redis_version = run.store.client.info("server").get("redis_version")
    finally:
        run.close()

    violations = verdict.violations + logs.violations
    if run.drained_s is None:
        violations.append(f"{left} job(s) left {config.drain_timeout_s} s after the chaos")
    violations += [f"data model at the end: {v}" for v in invariants or []]
    violations += [f"data model after the Redis crash: {v}" for v in run.crash_violations]
    violations += [
        f"node {node} exited with {code} when stopped at the end"
        for node, code in run.exit_codes.items()
        if code != 0
    ]
    violations += [
        f"the jobs held at {e.kind} of {e.target} were never all committed"
        for e in run.events
        if e.open
    ]
    stopped_pids = {pid for pid, _, _ in run.stopped}
    refused = stats.get(m.COMMIT_REFUSED, {"total": 0})
    stopped_refused = sum(n for worker, n in refused.items() if _pid_of(worker) in stopped_pids)
    # Jobs of the stopped worker committed by others while it was stopped: its own
    # commits of them, once it resumed, must have been refused.
    if stopped_refused == 0 and any(
        e.kind == "worker-stop" and e.held and e.started + (e.committed_s or 1e9) < run.resumed_at
        for e in run.events
    ):
        violations.append("the stopped worker's late commits were not refused")

    kinds = Counter(e.kind for e in run.events)
    report: dict[str, Any] = {
        "benchmark": "chaos",
        "environment": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "redis_version": redis_version,
            "machine": platform.machine(),
        },
        "parameters": {
            **{k: v for k, v in dataclasses.asdict(config).items() if k != "work_dir"},
            "seed": run.seed,
        },
        **verdict.figures,
        "commit_refused": refused["total"],
        "stopped_worker_commits_refused": stopped_refused,
        "disruptions": {
            "worker_kills": kinds["worker-kill"],
            "node_kills": kinds["node-kill"],
            "worker_stops": kinds["worker-stop"],
            "redis_restarts": kinds["redis-restart"],
            "redis_outages": kinds["redis-down"],
            "node_restarts": sum(n.starts - 1 for n in run.nodes),
        },
        "recovery_s": _recovery_figures(run.events),
        "logs": logs.figures,
        "data_model_checked": (
            "no (rexec.check missing)"
            if invariants is None
            else "after the Redis crash and at the end"
            if run.crash_check is not None
            else "at the end"
        ),
        "drained_s": _round(run.drained_s),
        "seconds": round(time.monotonic() - began, 1),
        "work_dir": str(run.dir),
        "violations": violations,
    }
    if not violations:
        shutil.rmtree(run.dir / "redis", ignore_errors=True)  # the node logs stay
    if console is not None:
        render_report(console, report)
    return report


def _pid_of(worker_id: str) -> int | None:
    """The pid in a worker id (``<node>.<index>.<pid>``)."""
    tail = worker_id.rsplit(".", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _recovery_figures(events: Sequence[ChaosEvent]) -> dict[str, Any]:
    """Median and maximum of each recovery step over the disruptions whose victims held
    jobs (for a Redis restart or outage, measured from Redis being back)."""
    figures: dict[str, Any] = {}
    for step in ("released_s", "taken_over_s", "committed_s"):
        values = [v for e in events if e.held and (v := getattr(e, step)) is not None]
        figures[step[:-2]] = {
            "p50": _round(_percentile(values, 0.5)),
            "max": _round(max(values, default=None)),
        }
    figures["events"] = [e.as_dict() for e in events]
    return figures


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def render_report(console: Console, report: Mapping[str, Any]) -> None:
    """Prints the figures of a chaos run as tables."""
    from rich.table import Table

    table = Table(title="rexec bench chaos", header_style="bold")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name in (
        "jobs",
        "executed",
        "committed",
        "committed_exactly_once",
        "duplicated_executions",
        "reruns_after_lock_expiry",
        "reruns_after_failure",
        "lock_expiries_reclaimed",
        "commit_refused",
        "stopped_worker_commits_refused",
        "data_model_checked",
        "drained_s",
        "seconds",
    ):
        table.add_row(name, _fmt(report.get(name)))
    for group in ("rerun_causes", "disruptions", "logs"):
        for name, value in report.get(group, {}).items():
            table.add_row(f"{group}.{name}", _fmt(value))
    recovery = report["recovery_s"]
    for name, value in recovery.items():
        if name != "events":
            table.add_row(
                f"recovery_s.{name}", f"p50 {_fmt(value['p50'])} / max {_fmt(value['max'])}"
            )
    table.add_row("violations", str(len(report["violations"])))
    console.print(table)
    events = Table(title="time to recover after each disruption, s", header_style="bold")
    for column in (
        "at s",
        "disruption",
        "target",
        "jobs held",
        "released",
        "taken over",
        "committed",
    ):
        events.add_column(column, justify="right" if column != "target" else "left")
    for event in recovery["events"]:
        held = event["jobs_held"]
        events.add_row(
            f"{event['at_s']:.1f}",
            event["kind"],
            event["target"],
            str(held),
            _fmt(event["released_s"]) if held else "-",
            _fmt(event["taken_over_s"]) if held else "-",
            _fmt(event["committed_s"]) if held else "-",
        )
    console.print(events)
    for example in report.get("renewal_late_examples", []):
        console.print(f"[yellow]rerun after a late renewal:[/yellow] {example}")
    for violation in report["violations"]:
        console.print(f"[red]violation:[/red] {violation}")


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3f}"
    return str(value)
