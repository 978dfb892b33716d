"""``rexec demo``: the midnight scenario on a local cluster, live.

50,000 jobs fall due at "midnight", a couple of seconds after start, on 4 nodes x 2
worker processes. Midway, the partners' notification service slows down and the demo
does what an operator would: it overrides the notification job type's priority to 0
with cascade, so those jobs get out of the deliveries' way, and clears the override
when the service recovers. The report says how fast it all went, how long each class
waited, how the work spread over the nodes, and whether any job was lost or ran twice.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import click
import msgpack
import orjson
import redis
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from rexec import metrics as m
from rexec import scenario
from rexec.app import App
from rexec.cluster import LocalCluster
from rexec.options import namespace_option, redis_url_option
from rexec.redis_server import RedisServer, RedisServerConfig
from rexec.settings import WorkerSettings

SLOW_AT = 0.10  # share of jobs done when the notification service slows down
RECOVER_AT = 0.60  # ... and when it recovers
NO_BACKOFF = {"base_backoff_wait_ms": 0, "max_backoff_wait_ms": 0}


@dataclass
class ClassReport:
    jobs: int
    done: int = 0
    wait_p50_ms: float = 0.0
    wait_p95_ms: float = 0.0
    wait_max_ms: float = 0.0


@dataclass
class Report:
    label: str
    jobs: int
    nodes: int
    processes: int
    concurrency: int
    acquisition: str
    backoff: bool
    job_ms: float
    committed: int = 0
    executed: int = 0
    lost: int = 0
    ran_twice: int = 0
    drain_s: float = 0.0
    throughput_per_s: float = 0.0
    vip_before_housekeeping: bool = False
    partitions: int = 1
    # Priority inversions between the first and the last class: housekeeping jobs that
    # started before the last VIP delivery did, and VIP deliveries that started after the
    # first housekeeping job did (both 0 when every VIP delivery starts first).
    housekeeping_before_last_vip: int = 0
    vip_after_first_housekeeping: int = 0
    acquisition_attempts: int = 0
    jobs_acquired: int = 0
    locking_failures: int = 0
    conflicted_attempts: int = 0
    lock_expiries: int = 0
    classes: dict[str, ClassReport] = field(default_factory=dict)
    node_share: dict[str, float] = field(default_factory=dict)
    operator_actions: list[str] = field(default_factory=list)

    @property
    def failure_rate(self) -> float:
        """Share of acquisition attempts that lost at least one job to another worker."""
        attempts = self.acquisition_attempts
        return self.conflicted_attempts / attempts if attempts else 0.0

    @property
    def lost_lock_rate(self) -> float:
        """Share of the jobs workers tried to lock that another worker got first."""
        tried = self.locking_failures + self.jobs_acquired
        return self.locking_failures / tried if tried else 0.0

    @property
    def acquired_per_attempt(self) -> float:
        return self.jobs_acquired / self.acquisition_attempts if self.acquisition_attempts else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["attempts_with_locking_failure_rate"] = round(self.failure_rate, 4)
        data["lost_lock_rate"] = round(self.lost_lock_rate, 4)
        data["jobs_acquired_per_attempt"] = round(self.acquired_per_attempt, 2)
        return data


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextlib.contextmanager
def redis_for_demo(redis_url: str | None) -> Iterator[str]:
    """The given Redis, or a private embedded one that is stopped (and removed) on exit."""
    if redis_url:
        yield redis_url
        return
    server = RedisServer(RedisServerConfig(unix_socket=True)).start()
    try:
        yield server.url
    finally:
        server.stop()


class Scenario:
    """One run of the midnight workload on a local cluster."""

    def __init__(
        self,
        redis_url: str,
        *,
        label: str = "rexec",
        jobs: int = 50_000,
        nodes: int = 4,
        processes: int = 2,
        concurrency: int = 8,
        job_ms: float = 2.0,
        acquisition: str = "atomic",
        backoff: bool = True,
        lead_ms: int | None = None,
        timeout_s: float = 300.0,
        operator: bool = True,
        partitions: int = 1,
    ) -> None:
        self.namespace = "demo-" + uuid.uuid4().hex[:8]
        self.redis_url = redis_url
        self.timeout_s = timeout_s
        # Every job must be in Redis before midnight, or the late ones are simply taken
        # as they come. None: midnight is set once the order instances are started, from
        # how long that took, so the jobs are written before it on a busy machine too.
        self.lead_ms = lead_ms
        self.operator = operator
        self.report = Report(
            label, jobs, nodes, processes, concurrency, acquisition, backoff, job_ms
        )
        self.report.partitions = partitions
        self.app = App(redis_url, namespace=self.namespace, partitions=partitions)
        self.app.definitions.update(scenario.app.definitions)  # the types' priority rules
        self.settings = WorkerSettings(
            app_path="rexec.scenario:app",
            redis_url=redis_url,
            namespace=self.namespace,
            processes=processes,
            concurrency=concurrency,
            acquisition=acquisition,
            strategy={} if backoff else dict(NO_BACKOFF),
            shutdown_timeout_s=10.0,
            retire_on_stop=False,  # the final frame shows each node's counts after the stop
        )
        self.cluster = LocalCluster(self.settings, nodes, env={"REXEC_DEMO_JOB_MS": str(job_ms)})
        self.counts: dict[str, int] = {}
        self.rows: list[list[Any]] = []
        self._cursor = 0
        self.midnight_ms = 0
        self.phase = "waiting for midnight"

    # -- running ----------------------------------------------------------------------------

    def run(self, console: Console | None = None) -> Report:
        try:
            _ = self.app.store  # creates the namespace with its partitions first
            self.cluster.start()
            self._wait_for_workers()
            load = scenario.prepare_midnight(self.app, self.report.jobs)
            self.midnight_ms = self.app.store.time_ms() + self._lead_ms(load)
            load.enqueue(self.midnight_ms)
            self.counts = load.counts
            self.report.classes = {c: ClassReport(n) for c, n in self.counts.items()}
            if console is not None:
                with Live(self._render(), console=console, refresh_per_second=8) as live:
                    self._drive(lambda: live.update(self._render()))
                    # Workers flush their last counts as they stop: the final frame
                    # shows the final counters, not those of the last flush before.
                    self.cluster.stop()
                    self.phase = "done"
                    live.update(self._render(), refresh=True)
            else:
                self._drive(lambda: None)
        finally:
            self.cluster.stop()
            self._finish()
            self._cleanup()
        return self.report

    def _lead_ms(self, load: scenario.MidnightLoad) -> int:
        """How far ahead midnight is: as given, or at least 2 s and twice the time that
        writing the jobs should take (at the pace the order instances were started)."""
        if self.lead_ms is None:
            estimate_s = load.seconds_per_job * len(load.specs)
            self.lead_ms = max(2000, int(2000 * estimate_s) + 500)
        return self.lead_ms

    def _wait_for_workers(self) -> None:
        wanted = self.report.nodes * self.report.processes
        deadline = time.monotonic() + 60
        while len(m.live_workers(self.app.store)) < wanted:
            self.cluster.check_alive()
            if time.monotonic() > deadline:
                raise click.ClickException("the local cluster did not start within 60 s")
            time.sleep(0.1)

    def _drive(self, refresh: Any) -> None:
        deadline = time.monotonic() + self.timeout_s + (self.lead_ms or 0) / 1000
        slowed = recovered = not self.operator
        while time.monotonic() < deadline:
            self._read_rows()
            done = len(self.rows)
            now = self.app.store.time_ms()
            if now >= self.midnight_ms and self.phase == "waiting for midnight":
                self.phase = "draining"
            if not slowed and done >= SLOW_AT * self.report.jobs:
                slowed = True
                self._service_slows_down()
            elif slowed and not recovered and done >= RECOVER_AT * self.report.jobs:
                recovered = True
                self._service_recovers()
            refresh()
            if done >= self.report.jobs and self.app.management.counts()["total"] == 0:
                break
            self.cluster.check_alive()
            time.sleep(0.1)
        time.sleep(0.2)  # the recorders flush every 50 ms
        self._read_rows()
        refresh()

    def _service_slows_down(self) -> None:
        client = self.app.client
        client.set(scenario.slow_key(self.namespace), 1)
        changed = self.app.management.set_overriding_job_priority(
            "notify", scenario.SLOW_SERVICE_PRIORITY, cascade=True
        )
        self.phase = "notification service SLOW: notify overridden to priority 0"
        self.report.operator_actions.append(
            f"+{self._since_midnight():.2f}s: service slow -> override notify priority"
            f" {scenario.SLOW_SERVICE_PRIORITY} with cascade ({changed} queued jobs re-sorted)"
        )

    def _service_recovers(self) -> None:
        self.app.client.delete(scenario.slow_key(self.namespace))
        self.app.management.clear_overriding_job_priority("notify")
        self.phase = "notification service recovered: override cleared"
        self.report.operator_actions.append(
            f"+{self._since_midnight():.2f}s: service recovered -> override cleared"
        )

    def _since_midnight(self) -> float:
        return (self.app.store.time_ms() - self.midnight_ms) / 1000

    def _read_rows(self) -> None:
        raw: list[bytes] = self.app.client.lrange(  # type: ignore[assignment]
            scenario.log_key(self.namespace), self._cursor, -1
        )
        self._cursor += len(raw)
        self.rows.extend(msgpack.unpackb(r) for r in raw)

    # -- reporting -------------------------------------------------------------------------

    def _finish(self) -> None:
        r = self.report
        with contextlib.suppress(redis.RedisError):
            self._read_rows()
            stats = m.cluster_stats(self.app.store)
            r.acquisition_attempts = stats[m.ACQUISITION_ATTEMPT]["total"]
            r.jobs_acquired = stats[m.ACQUIRED_SUCCESS]["total"]
            r.locking_failures = stats[m.ACQUIRED_FAILURE]["total"]
            r.conflicted_attempts = stats[m.ATTEMPT_CONFLICTED]["total"]
            r.lock_expiries = stats.get("lock-expired", {}).get("total", 0)
            left = self.app.management.counts()["total"]
            r.committed = r.jobs - left
        runs = Counter(row[0] for row in self.rows)
        r.executed = len(self.rows)
        r.ran_twice = sum(1 for n in runs.values() if n > 1)
        r.lost = r.jobs - len(runs) if r.committed == r.jobs else r.jobs - r.committed
        r.lost = max(0, r.lost)
        if not self.rows:
            return
        last_end = max(row[4] for row in self.rows)
        r.drain_s = round(max(0.0, last_end - self.midnight_ms) / 1000, 3)
        r.throughput_per_s = round(len(runs) / r.drain_s) if r.drain_s else 0.0
        waits: dict[str, list[float]] = defaultdict(list)
        starts: dict[str, list[float]] = defaultdict(list)
        per_node: Counter[str] = Counter()
        for _job_id, klass, due, started, _end, worker in self.rows:
            name = scenario.CLASSES[klass]
            waits[name].append(max(0.0, started - due))
            starts[name].append(started)
            per_node[str(worker).split(".")[0]] += 1
        for name, rep in r.classes.items():
            values = waits.get(name, [])
            rep.done = len(values)
            rep.wait_p50_ms = round(statistics.median(values), 1) if values else 0.0
            rep.wait_p95_ms = round(percentile(values, 0.95), 1)
            rep.wait_max_ms = round(max(values), 1) if values else 0.0
        if starts["vip"] and starts["housekeeping"]:
            last_vip, first_housekeeping = max(starts["vip"]), min(starts["housekeeping"])
            r.vip_before_housekeeping = last_vip <= first_housekeeping
            r.housekeeping_before_last_vip = sum(1 for s in starts["housekeeping"] if s < last_vip)
            r.vip_after_first_housekeeping = sum(1 for s in starts["vip"] if s > first_housekeeping)
        total = sum(per_node.values())
        r.node_share = {node: round(n / total, 3) for node, n in sorted(per_node.items())}

    def _cleanup(self) -> None:
        with contextlib.suppress(redis.RedisError):
            keys = [
                key
                for pattern in (f"rexec:{{{self.namespace}}}:*", f"rexec:{{{self.namespace}/*")
                for key in self.app.client.scan_iter(match=pattern, count=1000)
            ]
            if keys:
                self.app.client.delete(*keys)
        self.app.close()

    def _render(self) -> Group:
        progress = Progress(
            TextColumn("{task.description:>13}"), BarColumn(bar_width=40), MofNCompleteColumn()
        )
        done: Counter[str] = Counter(scenario.CLASSES[row[1]] for row in self.rows)
        for name in scenario.CLASSES:
            progress.add_task(name, total=self.counts.get(name, 0), completed=done[name])
        since = self._since_midnight_local()
        clock = f"in {-since:.1f}s" if since < 0 else f"+{since:.1f}s"
        header = f"[bold]midnight {clock}[/] — {self.phase}"
        table = Table(box=None, show_header=True, header_style="bold")
        for col in (
            "node",
            "jobs",
            "jobs/s (1s)",
            "acq. attempts",
            "acquired",
            "lock failures",
            "idle/backoff lvl",
        ):
            table.add_column(col, justify="right")
        recent = time.time() * 1000 - 1000
        per_node: Counter[str] = Counter()
        per_node_recent: Counter[str] = Counter()
        for row in self.rows:
            node = str(row[5]).split(".")[0]
            per_node[node] += 1
            if row[4] >= recent:
                per_node_recent[node] += 1
        stats = m.cluster_stats(self.app.store)
        workers = m.live_workers(self.app.store)

        def node_sum(name: str, node: str) -> int:
            return sum(v for k, v in stats.get(name, {}).items() if k.split(".")[0] == node)

        for node in sorted({str(w["node"]) for w in workers} | set(per_node)):
            levels = [
                f"{w.get('idle_level', '-')}/{w.get('backoff_level', '-')}"
                for w in workers
                if w["node"] == node
            ]
            table.add_row(
                node,
                str(per_node[node]),
                str(per_node_recent[node]),
                str(node_sum(m.ACQUISITION_ATTEMPT, node)),
                str(node_sum(m.ACQUIRED_SUCCESS, node)),
                str(node_sum(m.ACQUIRED_FAILURE, node)),
                " ".join(levels),
            )
        return Group(header, progress, table)

    def _since_midnight_local(self) -> float:
        return (time.time() * 1000 - self.midnight_ms) / 1000


def render_report(console: Console, r: Report) -> None:
    console.print(
        f"\n[bold]{r.label}[/]: {r.jobs} jobs on {r.nodes} nodes x {r.processes} processes x "
        f"{r.concurrency} slots, {r.acquisition} acquisition{' with' if r.backoff else ' without'}"
        f" backoff, {r.job_ms} ms per job"
        + (f", {r.partitions} partitions" if r.partitions > 1 else "")
    )
    console.print(
        f"done in [bold]{r.drain_s:.2f} s[/] after midnight — {r.throughput_per_s:,.0f} jobs/s; "
        f"committed {r.committed}, executed {r.executed}, "
        f"[{'red' if r.lost else 'green'}]lost {r.lost}[/], "
        f"[{'yellow' if r.ran_twice else 'green'}]ran twice {r.ran_twice}[/]"
    )
    waits = Table(title="wait from due time to start (ms)", box=None, header_style="bold")
    for col in ("class", "jobs", "p50", "p95", "max"):
        waits.add_column(col, justify="right")
    for name, c in r.classes.items():
        waits.add_row(
            name,
            str(c.done),
            f"{c.wait_p50_ms:,.0f}",
            f"{c.wait_p95_ms:,.0f}",
            f"{c.wait_max_ms:,.0f}",
        )
    console.print(waits)
    console.print(
        f"acquisition: {r.acquisition_attempts} attempts, {r.jobs_acquired} jobs acquired "
        f"({r.acquired_per_attempt:.1f} per attempt), {r.locking_failures} locking failures "
        f"({r.lost_lock_rate:.1%} of the jobs tried; {r.failure_rate:.1%} of attempts lost one)"
    )
    console.print(
        "share of work per node: " + ", ".join(f"{n} {s:.0%}" for n, s in r.node_share.items())
    )
    console.print(
        "every VIP delivery started before any housekeeping job: "
        + ("[green]yes[/]" if r.vip_before_housekeeping else "[red]NO[/]")
        + f" (inversions: {r.housekeeping_before_last_vip} housekeeping jobs started before the"
        f" last VIP delivery, {r.vip_after_first_housekeeping} VIP deliveries after the first"
        " housekeeping job)"
    )
    for action in r.operator_actions:
        console.print(f"operator: {action}")


def render_comparison(console: Console, reports: list[Report]) -> None:
    table = Table(title="the same midnight workload, three ways", header_style="bold")
    table.add_column("acquisition", no_wrap=True)
    for col in (
        "attempts lost a lock",
        "locks lost",
        "jobs/attempt",
        "drain",
        "VIP p95",
        "lost",
        "twice",
    ):
        table.add_column(col, justify="right")
    for r in reports:
        table.add_row(
            r.label,
            f"{r.failure_rate:.1%}",
            f"{r.lost_lock_rate:.1%}",
            f"{r.acquired_per_attempt:.1f}",
            f"{r.drain_s:.2f} s",
            f"{r.classes['vip'].wait_p95_ms:,.0f} ms",
            str(r.lost),
            str(r.ran_twice),
        )
    console.print(table)


COMPARE_RUNS = (
    ("optimistic (Camunda 7.3)", "optimistic", False),
    ("optimistic+backoff (7.4)", "optimistic", True),
    ("atomic+backoff (rexec)", "atomic", True),
)


@click.command("demo")
@redis_url_option("Use this Redis instead of an embedded one.")
@click.option("--nodes", default=4, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--processes",
    default=2,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Worker processes per node.",
)
@click.option(
    "--concurrency",
    default=8,
    show_default=True,
    type=click.IntRange(1, 1024),
    help="Slots per process.",
)
@click.option("--jobs", default=50_000, show_default=True, type=click.IntRange(100, 10_000_000))
@click.option(
    "--job-ms",
    default=2.0,
    show_default=True,
    type=click.FloatRange(0, 60_000),
    help="Simulated work per job.",
)
@click.option(
    "--acquisition",
    type=click.Choice(["atomic", "optimistic"]),
    default="atomic",
    show_default=True,
)
@click.option("--no-backoff", is_flag=True, help="Turn the exponential backoff off.")
@click.option(
    "--compare", is_flag=True, help="Run optimistic without/with backoff and atomic, side by side."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--partitions",
    default=1,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Partitions of the demo's namespace (spread over a cluster's masters).",
)
@click.option(
    "--timeout",
    default=300.0,
    show_default=True,
    type=click.FloatRange(1, 86_400),
    help="Seconds to wait for the drain.",
)
def demo_command(  # noqa: PLR0917 - one parameter per click option
    redis_url: str | None,
    nodes: int,
    processes: int,
    concurrency: int,
    jobs: int,
    job_ms: float,
    acquisition: str,
    no_backoff: bool,
    compare: bool,
    as_json: bool,
    partitions: int,
    timeout: float,
) -> None:
    """The midnight scenario: 50,000 jobs due at once on a local cluster, live."""
    console = Console(stderr=as_json, width=None if sys.stdout.isatty() else 120)
    runs = COMPARE_RUNS if compare else (("rexec", acquisition, not no_backoff),)
    reports: list[Report] = []
    with redis_for_demo(redis_url) as url:
        for label, mode, backoff in runs:
            if not as_json:
                console.rule(f"[bold]{label}")
            run = Scenario(
                url,
                label=label,
                jobs=jobs,
                nodes=nodes,
                processes=processes,
                concurrency=concurrency,
                job_ms=job_ms,
                acquisition=mode,
                backoff=backoff,
                timeout_s=timeout,
                partitions=partitions,
            )
            report = run.run(console if not as_json and console.is_terminal else None)
            reports.append(report)
            if not as_json:
                render_report(console, report)
    if as_json:
        payload: Any = [r.as_dict() for r in reports] if compare else reports[0].as_dict()
        click.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())
    elif compare:
        render_comparison(console, reports)
    if any(r.lost for r in reports):
        raise SystemExit(1)


@click.command("demo-load")
@redis_url_option("Redis to load.")
@namespace_option()
@click.option("--jobs", default=50_000, show_default=True, type=click.IntRange(100, 10_000_000))
@click.option(
    "--lead-ms",
    default=5000,
    show_default=True,
    type=click.IntRange(0, 86_400_000),
    help="Midnight is this far ahead.",
)
def demo_load_command(redis_url: str | None, namespace: str, jobs: int, lead_ms: int) -> None:
    """Enqueue the midnight load for workers running rexec.scenario:app (the compose producer)."""
    app = App(redis_url, namespace=namespace)
    app.definitions.update(scenario.app.definitions)
    midnight = app.store.time_ms() + lead_ms
    counts = scenario.enqueue_midnight(app, jobs, midnight)
    click.echo(
        f"{jobs} jobs due in {lead_ms} ms: " + ", ".join(f"{n} {c}" for c, n in counts.items())
    )
    app.close()
