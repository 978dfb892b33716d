"""The ``rexec`` command line: enqueue jobs, inspect and operate on them, run workers.

Every command works through the public App / Management / Store API, so it sees what
any other client sees. Read commands print a rich table, or JSON with ``--json``.
Errors rexec raises on purpose become one red line on stderr and exit code 1.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, overload

import click
import msgpack
import orjson
import redis
from redis.crc import key_slot
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from rexec.acquisition import BackoffJobAcquisitionStrategy
from rexec.app import App
from rexec.codec import check_priority, check_type
from rexec.errors import (
    ConfigurationError,
    JobNotFoundError,
    NotFoundError,
    PayloadError,
    ProcessInstanceNotFoundError,
    RexecError,
)
from rexec.job import Job, JobState
from rexec.options import APP_URL_HELP, namespace_option, redis_url_option, target_options
from rexec.partitions import MAX_PARTITIONS, read_layout
from rexec.target import NoTargetError, resolve, tell_target
from rexec.target import load_app as import_app

ENQUEUE_PROGRESS_CHUNK = 10_000
APP_PATH_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
ACQUISITION_MODES = ("atomic", "optimistic")
JOB_STATES = tuple(state.value for state in JobState)
# The backoff parameters `rexec worker` exposes, as (option, keyword of
# BackoffJobAcquisitionStrategy, type); their defaults are read from its signature.
STRATEGY_OPTIONS: tuple[tuple[str, str, type[int] | type[float]], ...] = (
    ("--base-idle-wait-ms", "base_idle_wait_ms", int),
    ("--idle-increase-factor", "idle_increase_factor", float),
    ("--max-idle-wait-ms", "max_idle_wait_ms", int),
    ("--base-backoff-wait-ms", "base_backoff_wait_ms", int),
    ("--backoff-increase-factor", "backoff_increase_factor", float),
    ("--max-backoff-wait-ms", "max_backoff_wait_ms", int),
    ("--backoff-decrease-threshold", "backoff_decrease_threshold", int),
    ("--max-jobs", "base_num_jobs", int),
)


# -- errors ---------------------------------------------------------------------------------


class CliError(click.ClickException):
    """An expected failure: one red line on stderr, exit code 1, no traceback."""

    def show(self, file: Any = None) -> None:
        show_error(self)


class NoTargetCliError(CliError):
    """Nothing names a Redis to read: bad usage, exit code 2."""

    exit_code = 2


def show_error(exc: click.ClickException) -> None:
    """Every error the same way: ``error: <message>`` in red on stderr (bad usage adds
    where to find help)."""
    message = " ".join(exc.format_message().split())
    click.secho(f"error: {message}", fg="red", err=True)
    if isinstance(exc, click.UsageError) and exc.ctx is not None:
        click.echo(f"see '{exc.ctx.command_path} --help'", err=True)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, redis.AuthenticationError):
        return f"Redis refused the credentials in the URL: {exc}"
    if isinstance(exc, redis.exceptions.NoPermissionError):
        return f"Redis refused: this user lacks a permission rexec needs: {exc}"
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return f"cannot reach Redis: {exc}"
    if isinstance(exc, redis.RedisError):
        return f"Redis error: {exc}"
    return str(exc) or type(exc).__name__


class RexecGroup(click.Group):
    """A group that turns rexec and Redis errors of its commands into CliErrors, and
    shows every error in one style."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NoTargetError as exc:
            raise NoTargetCliError(str(exc)) from exc
        except (RexecError, redis.RedisError) as exc:
            raise CliError(_describe(exc)) from exc

    def main(self, args: Any = None, prog_name: str | None = None, *more: Any, **extra: Any) -> Any:
        if more or extra.get("standalone_mode", True) is False:
            return super().main(args, prog_name, *more, **extra)
        extra.pop("standalone_mode", None)
        try:
            code = super().main(args, prog_name, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            # `rexec` or `rexec periodic` alone: the help as --help shows it, not as an error
            shown = exc.ctx.get_help() if exc.ctx is not None else exc.format_message()
            click.echo(shown, err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            show_error(exc)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.secho("error: aborted", fg="red", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


# -- parameter types ----------------------------------------------------------------------


def check_priority_option(
    ctx: click.Context, param: click.Parameter, value: int | None
) -> int | None:
    """Rejects integers outside the signed 64-bit range as bad usage."""
    if value is None:
        return None
    try:
        return check_priority(value)
    except RexecError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


# Lets negative numbers through as arguments (`rexec priority set 7 -5`).
NEGATIVE_ARGS = {"ignore_unknown_options": True}


# -- connection ---------------------------------------------------------------------------


Command = Callable[..., None]


@overload
def with_app(fn: Command) -> Command: ...
@overload
def with_app(*, warn_empty: bool) -> Callable[[Command], Command]: ...
def with_app(
    fn: Command | None = None, *, warn_empty: bool = True
) -> Command | Callable[[Command], Command]:
    """Adds ``--app``, ``--redis-url`` and ``--namespace`` (resolved by rexec.target)
    and passes an open App as first argument. ``warn_empty=False`` for commands that
    create things, where an empty namespace is no surprise."""

    def decorate(fn: Callable[..., None]) -> Callable[..., None]:
        @target_options
        @functools.wraps(fn)
        def command(
            *args: Any,
            redis_url: str | None,
            namespace: str | None,
            app_path: str | None,
            **kwargs: Any,
        ) -> None:
            target = resolve(redis_url, namespace, app_path)
            if not kwargs.get("as_json"):
                tell_target(target, warn_empty=warn_empty)
            with target.app as app:
                fn(app, *args, **kwargs)

        return command

    return decorate if fn is None else decorate(fn)


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


# -- output -------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return "base64:" + base64.b64encode(bytes(value)).decode()
    if isinstance(value, msgpack.ExtType):
        return f"<msgpack ext {value.code}: {len(value.data)} bytes>"
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"cannot show {type(value).__name__} as JSON")


def to_json(value: Any, *, indent: bool = False) -> str:
    option = orjson.OPT_NON_STR_KEYS | (orjson.OPT_INDENT_2 if indent else 0)
    return orjson.dumps(value, default=_json_default, option=option).decode()


def print_json(value: Any) -> None:
    click.echo(to_json(value, indent=sys.stdout.isatty()))


def console() -> Console:
    return Console(highlight=False)


def cell(value: object) -> Text:
    """A table cell showing ``value`` literally (no rich markup)."""
    if value is None:
        return Text("-", style="dim")
    if isinstance(value, str):
        return Text(value)
    if isinstance(value, bool | int | float):
        return Text(str(value))
    return Text(to_json(value))


def when(ms: object, pattern: str = "%Y-%m-%d %H:%M:%S.%f") -> str:
    """A server timestamp (ms) as local time."""
    if not isinstance(ms, int) or isinstance(ms, bool):
        return "-" if ms is None else str(ms)
    text = datetime.fromtimestamp(ms / 1000).astimezone().strftime(pattern)
    return text[:-3] if pattern.endswith("%f") else text


def job_payload(job: Job) -> Any:
    try:
        return job.payload
    except PayloadError:
        return f"<undecodable: {len(job.payload_raw or b'')} bytes>"


def job_to_dict(job: Job) -> dict[str, Any]:
    """The job's fields, ``state`` as its name and the payload decoded (not its bytes)."""
    data: dict[str, Any] = {}
    for field in dataclasses.fields(job):
        if field.name == "payload_raw":
            data["payload"] = job_payload(job)
        elif field.name == "state":
            data["state"] = job.state.value
        else:
            data[field.name] = getattr(job, field.name)
    return data


def short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# -- the group ----------------------------------------------------------------------------


@click.group(cls=RexecGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rexec")
def main() -> None:
    """rexec: a distributed job executor on Redis."""


# -- producers ----------------------------------------------------------------------------


def parse_payload(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="PAYLOAD_JSON") from None


@main.command()
@click.argument("job_type", metavar="TYPE")
@click.argument("payload_json", required=False)
@click.option(
    "--priority",
    type=click.INT,
    callback=check_priority_option,
    help="Explicit priority (higher runs first).",
)
@click.option("--delay-ms", type=click.IntRange(min=0), help="Due this many ms from now.")
@click.option("--due-ms", type=click.IntRange(min=0), help="Due at this server time (epoch ms).")
@click.option("--process-instance", "process_instance_id", help="Process instance id.")
@click.option("--non-exclusive", is_flag=True, help="Run in parallel with its process's jobs.")
@click.option("--retries", type=click.IntRange(min=1), help="Executions before an incident.")
@click.option("--count", type=click.IntRange(min=1), default=1, show_default=True)
@with_app(warn_empty=False)
def enqueue(
    app: App,
    *,
    job_type: str,
    payload_json: str | None,
    priority: int | None,
    delay_ms: int | None,
    due_ms: int | None,
    process_instance_id: str | None,
    non_exclusive: bool,
    retries: int | None,
    count: int,
) -> None:
    """Create a job of TYPE with an optional JSON payload; prints its id.

    A payload starting with "-" goes after "--": rexec enqueue TYPE -- -5
    """
    spec: dict[str, Any] = {
        "type": job_type,
        "payload": parse_payload(payload_json),
        "priority": priority,
        "delay_ms": delay_ms,
        "due_ms": due_ms,
        "process_instance_id": process_instance_id,
        "exclusive": False if non_exclusive else None,
        "retries": retries,
    }
    if count == 1:
        click.echo(app.enqueue_many([spec])[0])
        return
    if count <= ENQUEUE_PROGRESS_CHUNK:
        ids = app.enqueue_many([spec] * count)
        first, last = ids[0], ids[-1]
    else:
        first, last = _enqueue_with_progress(app, spec, count)
    click.echo(f"enqueued {count} jobs, first id {first}, last id {last}")


def _enqueue_with_progress(app: App, spec: Mapping[str, Any], count: int) -> tuple[str, str]:
    first = last = ""
    progress = Progress(
        TextColumn("enqueueing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )
    with progress:
        task = progress.add_task("enqueue", total=count)
        done = 0
        while done < count:
            n = min(ENQUEUE_PROGRESS_CHUNK, count - done)
            ids = app.enqueue_many([spec] * n)
            first = first or ids[0]
            last = ids[-1]
            done += n
            progress.update(task, completed=done)
    return first, last


# -- reads --------------------------------------------------------------------------------


@main.command()
@click.option("--state", type=click.Choice(JOB_STATES), help="Only jobs in this state.")
@click.option("--type", "job_type", help="Only jobs of this type.")
@click.option("--limit", type=click.IntRange(0, 10_000), default=100, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--process-instance", "process_instance_id", help="Only this process instance's jobs."
)
@json_option
@with_app
def jobs(
    app: App,
    *,
    state: str | None,
    job_type: str | None,
    limit: int,
    offset: int,
    process_instance_id: str | None,
    as_json: bool,
) -> None:
    """List jobs, by state in the order each state is kept (a process instance's:
    oldest first)."""
    found = app.management.jobs(
        state=state,
        type=job_type,
        limit=limit,
        offset=offset,
        process_instance_id=process_instance_id,
    )
    if as_json:
        print_json([job_to_dict(job) for job in found])
        return
    table = Table(title=f"{len(found)} jobs")
    for name in ("id", "type", "state", "priority", "due", "retries"):
        table.add_column(name, no_wrap=True)
    for name in ("process", "lock owner", "payload"):
        table.add_column(name)
    for job in found:
        table.add_row(
            cell(job.id),
            cell(job.type),
            cell(job.state.value),
            cell(job.priority),
            cell(when(job.due_ms)),
            cell(job.retries),
            cell(job.process_instance_id),
            cell(job.lock_owner),
            cell(short(to_json(job_payload(job)))),
        )
    console().print(table)


@main.command()
@click.argument("job_id")
@json_option
@with_app
def job(app: App, *, job_id: str, as_json: bool) -> None:
    """Show one job, with the error of its last failed execution."""
    found = app.management.get_job(job_id)
    if found is None:
        show_finished_job(app, job_id, as_json=as_json)
        return
    data = job_to_dict(found)
    if as_json:
        print_json(data)
        return
    table = Table("field", "value", show_header=False, title=f"job {found.id}")
    for name, value in data.items():
        if name in ("due_ms", "lock_expires_ms") and value is not None:
            shown = cell(f"{when(value)}  ({value})")
        elif name == "payload":
            shown = cell(to_json(value, indent=True))
        else:
            shown = cell(value)
        table.add_row(Text(name, style="bold"), shown)
    console().print(table)


@main.group(cls=RexecGroup)
def namespace() -> None:
    """Create a namespace with its partitions, or show its partition layout."""


@namespace.command("create")
@click.argument("name")
@click.option(
    "--partitions",
    type=click.IntRange(1, MAX_PARTITIONS),
    default=1,
    show_default=True,
    help="Hash tags to spread the namespace over (fixed from now on; see docs/scaling.md).",
)
@redis_url_option()
def namespace_create(name: str, partitions: int, redis_url: str | None) -> None:
    """Create namespace NAME with its partition count (an existing namespace must have
    the same count: it is fixed at creation)."""
    # The Redis an operator command reads (never a newly started embedded one).
    from rexec.connection import mask_password

    target = resolve(redis_url, name, None)
    with App(target.app.redis_url, namespace=name, partitions=partitions) as app:
        _ = app.store  # creates it, or checks the count
        layout = read_layout(app.client, name)
        where = f"{mask_password(target.app.redis_url or '')} ({target.url_source})"
        many = "s" if layout.count > 1 else ""
        click.echo(f"namespace {name!r}: {layout.count} partition{many}, on Redis {where}")


@namespace.command("show")
@click.argument("name", required=False)
@json_option
@redis_url_option()
def namespace_show(name: str | None, as_json: bool, redis_url: str | None) -> None:
    """The partitions of namespace NAME (or REXEC_NAMESPACE, else default): their hash
    tags, Redis Cluster slots and jobs."""
    target = resolve(redis_url, name, None)
    if not as_json:
        tell_target(target)
    with target.app as app:
        store = app.store
        now = store.time_ms()
        rows = [
            {
                "partition": k,
                "tag": part.keys.prefix[len("rexec:{") : -2],
                "slot": key_slot(part.keys.jobs.encode()),
                "jobs": part.state_counts(now)["total"],
            }
            for k, part in enumerate(store.partition_stores)
        ]
    if as_json:
        print_json({"namespace": app.namespace, "partitions": rows})
        return
    table = Table("partition", "hash tag", "slot", "jobs", title=f"namespace {app.namespace!r}")
    for row in rows:
        table.add_row(*(cell(row[k]) for k in ("partition", "tag", "slot", "jobs")))
    console().print(table)


@main.command()
@json_option
@with_app
def counts(app: App, *, as_json: bool) -> None:
    """Number of jobs in each state."""
    by_state = app.management.counts()
    if as_json:
        print_json(by_state)
        return
    table = Table("state", "jobs")
    for state, n in by_state.items():
        table.add_row(cell(state), cell(n), end_section=state == JOB_STATES[-1])
    console().print(table)


@main.command()
@json_option
@with_app
def definitions(app: App, *, as_json: bool) -> None:
    """Job definitions: every job type, as deployed (rule, retry cycle, by which app)
    and its overriding priority and suspension. A conflict: two apps deployed different
    definitions of the type (the last deploy wins)."""
    infos = [dataclasses.asdict(info) for info in app.management.job_definitions()]
    if as_json:
        print_json(infos)
        return
    table = Table(
        "type", "priority rule", "retry cycle", "deployed by", "overriding priority", "suspended"
    )
    for info in infos:
        deployed = f"{info['app']} on {info['host']}" if info["deployed"] else "not deployed"
        by = Text(deployed)
        if info["conflict"]:
            by.append(f"\nconflict: {info['conflict']}", style="red")
        table.add_row(
            cell(info["type"]),
            cell(info["priority_rule"]),
            cell(info["retry_cycle"]),
            by,
            cell(info["overriding_priority"]),
            cell("yes" if info["suspended"] else "no"),
        )
    console().print(table)


@main.command()
@click.argument("app_path", metavar="APP")
@namespace_option(from_app=True)
@redis_url_option(APP_URL_HELP)
def deploy(*, app_path: str, redis_url: str | None, namespace: str | None) -> None:
    """Store APP's job definitions in Redis (what `rexec worker` does at start), so
    every producer gets their priority rules, retry cycles and defaults; and its
    periodic schedules (removing those it deployed before and no longer declares)."""
    app = load_app(app_path)
    if redis_url:
        app.redis_url = redis_url
    if namespace:
        app.namespace = namespace
    app.app_path = app_path
    from rexec.connection import mask_password

    click.echo(
        f"deploying to Redis {mask_password(app.resolved_url())}, namespace {app.namespace!r}",
        err=True,
    )
    try:
        statuses = app.deploy(periodic=False)
        schedules = app.deploy_periodic(app_path=app_path)
    finally:
        app.close()
    for job_type, status in statuses.items():
        line = f"{job_type}: {status}"
        click.secho(line, fg="red" if status == "conflict" else None)
    for name, status in schedules.items():
        click.echo(f"periodic {name}: {status}")


@main.command()
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@json_option
@with_app
def history(app: App, *, limit: int, as_json: bool) -> None:
    """The last outcomes (completed, failed, incident, deleted), newest first (kept only
    if the app keeps a history: App(history_max_len=...))."""
    entries = app.management.history(limit=limit)
    if as_json:
        print_json(entries)
        return
    console().print(history_table(entries, title=f"{len(entries)} history entries"))


def show_finished_job(app: App, job_id: str, *, as_json: bool) -> None:
    """A job no longer queued, from its kept result (types with ``keep_result``) and the
    history (if the app keeps one)."""
    from rexec.handles import JobStatus

    info = app.handle(job_id).info()
    kept = info.status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.DELETED)
    entries = app.management.job_history(job_id)
    if not entries and not kept:
        raise JobNotFoundError(
            f"no job {job_id!r}: not queued, no result kept and not in the history"
            " (completed or deleted without either, or never created)"
        )
    result = result_to_dict(info) if kept else None
    if as_json:
        print_json({"id": job_id, "queued": False, "result": result, "history": entries})
        return
    if result is not None:
        table = Table("field", "value", show_header=False, title=f"job {job_id} (kept result)")
        for name, value in result.items():
            if name.endswith("_ms") and isinstance(value, int):
                shown = cell(f"{when(value)}  ({value})")
            elif name in ("return_value", "errors"):
                shown = cell(to_json(value, indent=True))
            else:
                shown = cell(value)
            table.add_row(Text(name, style="bold"), shown)
        console().print(table)
    if not entries:
        return
    latest = entries[0]
    click.echo(
        f"job {job_id} ({latest['type']}) is no longer queued:"
        f" {latest['outcome']} at {when(latest['finished_ms'])}"
    )
    console().print(history_table(entries, title=f"history of job {job_id}"))


def result_to_dict(info: Any) -> dict[str, Any]:
    """A finished job's kept result (a JobInfo) as plain data."""
    return {
        "type": info.type,
        "status": info.status.value,
        "return_value": info.return_value,
        "attempts": info.attempts,
        "worker_ids": list(info.worker_ids),
        "enqueued_at_ms": info.enqueued_at_ms,
        "started_at_ms": info.started_at_ms,
        "finished_at_ms": info.finished_at_ms,
        "process_instance_id": info.process_instance_id,
        "errors": [
            {
                "exception": e.exception,
                "message": e.message,
                "traceback": e.traceback,
                "at_ms": e.at_ms,
            }
            for e in info.errors
        ],
    }


def history_table(entries: list[dict[str, Any]], *, title: str | None = None) -> Table:
    table = Table(title=title)
    for name in ("when", "id", "type", "outcome", "priority", "process instance", "error"):
        table.add_column(name, no_wrap=name in ("when", "id"))
    for entry in entries:
        table.add_row(
            cell(when(entry["finished_ms"])),
            cell(entry["id"]),
            cell(entry["type"]),
            cell(entry["outcome"]),
            cell(entry["priority"]),
            cell(entry["process_instance_id"]),
            cell(short(str(entry["error"]).splitlines()[0]) if entry.get("error") else None),
        )
    return table


# -- priorities ---------------------------------------------------------------------------


@main.group(cls=RexecGroup)
def priority() -> None:
    """Change job priorities at runtime."""


@priority.command("set", context_settings=NEGATIVE_ARGS)
@click.argument("job_id")
@click.argument("new_priority", metavar="P", type=click.INT, callback=check_priority_option)
@with_app
def priority_set(app: App, *, job_id: str, new_priority: int) -> None:
    """Give job JOB_ID priority P; it is re-sorted at once."""
    app.management.set_job_priority(job_id, new_priority)
    click.echo(f"job {job_id}: priority {new_priority}")


force_option = click.option(
    "--force", is_flag=True, help="Also for a type never deployed and without jobs."
)


@priority.command("override", context_settings=NEGATIVE_ARGS)
@click.argument("job_type", metavar="TYPE")
@click.argument("new_priority", metavar="P", type=click.INT, callback=check_priority_option)
@click.option("--cascade", is_flag=True, help="Give every existing job of TYPE priority P too.")
@force_option
@with_app
def priority_override(
    app: App, *, job_type: str, new_priority: int, cascade: bool, force: bool
) -> None:
    """New jobs of TYPE get priority P, whatever else applies."""
    changed = app.management.set_overriding_job_priority(
        job_type, new_priority, cascade=cascade, force=force
    )
    click.echo(f"job type {job_type}: overriding priority {new_priority}")
    if cascade:
        click.echo(f"{changed} existing jobs changed")


@priority.command("clear")
@click.argument("job_type", metavar="TYPE")
@force_option
@with_app
def priority_clear(app: App, *, job_type: str, force: bool) -> None:
    """Remove TYPE's overriding priority (existing jobs keep theirs)."""
    app.management.clear_overriding_job_priority(job_type, force=force)
    click.echo(f"job type {job_type}: overriding priority cleared")


# -- suspension ---------------------------------------------------------------------------


@main.group(cls=RexecGroup)
def suspend() -> None:
    """Stop acquisition of a job or a job type."""


@main.group(cls=RexecGroup)
def activate() -> None:
    """Resume acquisition of a job or a job type."""


without_jobs_option = click.option(
    "--without-jobs", is_flag=True, help="Change the job definition only, not its jobs."
)


@suspend.command("job")
@click.argument("job_id")
@with_app
def suspend_job(app: App, *, job_id: str) -> None:
    """Suspend one job."""
    app.management.suspend_job(job_id)
    click.echo(f"job {job_id}: suspended")


@suspend.command("type")
@click.argument("job_type", metavar="TYPE")
@without_jobs_option
@force_option
@with_app
def suspend_type(app: App, *, job_type: str, without_jobs: bool, force: bool) -> None:
    """Suspend a job definition (and, unless --without-jobs, each of its jobs)."""
    changed = app.management.suspend_job_definition(
        job_type, include_jobs=not without_jobs, force=force
    )
    click.echo(f"job type {job_type}: suspended")
    if not without_jobs:
        click.echo(f"{changed} jobs suspended")


@activate.command("job")
@click.argument("job_id")
@with_app
def activate_job(app: App, *, job_id: str) -> None:
    """Activate one suspended job."""
    app.management.activate_job(job_id)
    click.echo(f"job {job_id}: active")


@activate.command("type")
@click.argument("job_type", metavar="TYPE")
@without_jobs_option
@force_option
@with_app
def activate_type(app: App, *, job_type: str, without_jobs: bool, force: bool) -> None:
    """Activate a job definition (and, unless --without-jobs, its suspended jobs)."""
    changed = app.management.activate_job_definition(
        job_type, include_jobs=not without_jobs, force=force
    )
    click.echo(f"job type {job_type}: active")
    if not without_jobs:
        click.echo(f"{changed} jobs activated")


# -- single jobs and bulk operations ---------------------------------------------------------


def count_argument(value: str, what: str) -> int:
    """A count given on the command line: a clear message for what is not one."""
    try:
        number = int(value)
    except ValueError:
        raise click.BadParameter(f"{what} must be a whole number, got {value!r}") from None
    if number < 0:
        raise click.BadParameter(f"{what} must be 0 or more, got {number}")
    return number


def confirm_bulk(count: int, what: str, yes: bool) -> bool:
    """Says how many jobs a bulk action touches; asks unless ``--yes`` (no answer, or
    not yes: aborted, exit code 1)."""
    if count == 0:
        click.echo(f"nothing to do: 0 jobs to {what}")
        return False
    if yes:
        click.echo(f"{what}: {count} jobs", err=True)
        return True
    return click.confirm(f"{what}: {count} jobs. Go ahead?", default=False, abort=True, err=True)


yes_option = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")


@main.command(context_settings=NEGATIVE_ARGS)
@click.argument("job_id", required=False)
@click.argument("retries", metavar="[N]", required=False)
@click.option("--type", "job_type", help="With --incidents: every incident of this type.")
@click.option(
    "--incidents",
    "incident_retries",
    metavar="N",
    help="Give every incident of --type N retries (resolving them).",
)
@yes_option
@with_app
def retries(
    app: App,
    *,
    job_id: str | None,
    retries: str | None,
    job_type: str | None,
    incident_retries: str | None,
    yes: bool,
) -> None:
    """Set the retries left of JOB_ID to N (N > 0 resolves an incident), or, with
    --type T --incidents N, of every incident of type T."""
    if job_type is not None or incident_retries is not None:
        if job_id is not None or job_type is None or incident_retries is None:
            raise click.UsageError("give JOB_ID N, or --type T --incidents N (not both)")
        n = count_argument(incident_retries, "--incidents (retries to give)")
        if n == 0:
            raise click.BadParameter("--incidents must be at least 1 to resolve incidents")
        count = len(app.management.job_ids(JobState.INCIDENT, job_type))
        if confirm_bulk(count, f"resolve, with {n} retries each, incidents of {job_type}", yes):
            resolved = app.management.retry_incidents(job_type, n)
            click.echo(f"{resolved} incidents of {job_type} resolved ({n} retries each)")
        return
    if job_id is None or retries is None:
        raise click.UsageError("give JOB_ID N, or --type T --incidents N")
    n = count_argument(retries, "N (retries left)")
    app.management.set_job_retries(job_id, n)
    now = app.management.get_job(job_id)
    state = f" ({now.state.value})" if now is not None else ""
    click.echo(f"job {job_id}: {n} retries left{state}")


@main.command()
@click.argument("job_id", required=False)
@click.option("--type", "job_type", help="Delete the jobs of this type (with --state).")
@click.option("--state", type=click.Choice(JOB_STATES), help="Delete the jobs in this state.")
@yes_option
@with_app
def delete(
    app: App, *, job_id: str | None, job_type: str | None, state: str | None, yes: bool
) -> None:
    """Delete a job, whatever its state; or every job of --type T in --state S."""
    if job_type is not None or state is not None:
        if job_id is not None or state is None:
            raise click.UsageError("give JOB_ID, or --state S (and optionally --type T)")
        ids = app.management.job_ids(state, job_type)
        what = f"delete, {state}" + (f" of {job_type}" if job_type else "")
        if confirm_bulk(len(ids), what, yes):
            deleted = app.management.delete_jobs(ids)
            click.echo(f"{deleted} jobs deleted")
        return
    if job_id is None:
        raise click.UsageError("give JOB_ID, or --state S (and optionally --type T)")
    app.management.delete_job(job_id)
    click.echo(f"job {job_id}: deleted")


# -- process instances -----------------------------------------------------------------------


@main.group(cls=RexecGroup)
def instance() -> None:
    """Start, show, change and end process instances."""


def parse_variables(text: str | None) -> dict[str, Any]:
    value = {} if text is None else parse_payload(text)
    if not isinstance(value, dict):
        raise click.BadParameter(
            f"variables are a JSON object, got {type(value).__name__}", param_hint="VARIABLES_JSON"
        )
    return value


@instance.command("start", context_settings=NEGATIVE_ARGS)
@click.argument("variables_json", required=False)
@click.option(
    "--priority",
    type=click.INT,
    callback=check_priority_option,
    help="Default priority of the instance's jobs.",
)
@with_app(warn_empty=False)
def instance_start(app: App, *, variables_json: str | None, priority: int | None) -> None:
    """Start a process instance with VARIABLES_JSON (an object); prints its id."""
    click.echo(app.start_process_instance(parse_variables(variables_json), priority=priority))


@instance.command("show")
@click.argument("process_instance_id", metavar="ID")
@json_option
@with_app
def instance_show(app: App, *, process_instance_id: str, as_json: bool) -> None:
    """A process instance: its revision, priority, variables and jobs."""
    info = app.management.process_instance(process_instance_id)
    found = app.management.instance_jobs(process_instance_id)
    if as_json:
        print_json({**info, "jobs": [job_to_dict(job) for job in found]})
        return
    table = Table("field", "value", show_header=False, title=f"process instance {info['id']}")
    table.add_row(Text("revision", style="bold"), cell(info["revision"]))
    table.add_row(Text("priority", style="bold"), cell(info["priority"]))
    table.add_row(Text("variables", style="bold"), cell(to_json(info["variables"], indent=True)))
    console().print(table)
    jobs_table = Table(
        "id", "type", "state", "priority", "due", "retries", title=f"{len(found)} jobs"
    )
    for job in found:
        jobs_table.add_row(
            cell(job.id),
            cell(job.type),
            cell(job.state.value),
            cell(job.priority),
            cell(when(job.due_ms)),
            cell(job.retries),
        )
    console().print(jobs_table)


@instance.command("set")
@click.argument("process_instance_id", metavar="ID")
@click.argument("variables_json", metavar="VARIABLES_JSON")
@with_app
def instance_set(app: App, *, process_instance_id: str, variables_json: str) -> None:
    """Set variables of a process instance (merged into its variables)."""
    revision = app.set_variables(process_instance_id, parse_variables(variables_json))
    click.echo(f"process instance {process_instance_id}: variables set (revision {revision})")


@instance.command("end")
@click.argument("process_instance_id", metavar="ID")
@with_app
def instance_end(app: App, *, process_instance_id: str) -> None:
    """End a process instance: its record and variables go (its jobs stay)."""
    if not app.end_process_instance(process_instance_id):
        raise ProcessInstanceNotFoundError(f"no process instance {process_instance_id!r}")
    click.echo(f"process instance {process_instance_id}: ended")


# -- periodic jobs ----------------------------------------------------------------------------


@main.group(cls=RexecGroup)
def periodic() -> None:
    """Periodic jobs: the cron schedules deployed with the apps (App.periodic)."""


@periodic.command("list")
@json_option
@with_app(warn_empty=False)
def periodic_list(app: App, *, as_json: bool) -> None:
    """Every schedule with its next run (in its own timezone and in UTC), its last
    tick and what became of it, and whether missed ticks are caught up."""
    from rexec.periodic import schedules

    infos = [info.to_dict() for info in schedules(app.store)]
    if as_json:
        print_json(infos)
        return
    table = Table("schedule", "type", "cron", "next run", "next run (UTC)", "last tick",
                  "catch_up", title=f"{len(infos)} periodic schedules")  # fmt: skip
    for info in infos:
        last = "-"
        if info["last_tick_ms"] is not None:
            last = f"{when(info['last_tick_ms'], '%Y-%m-%d %H:%M:%S')} {info['last_outcome']}"
            if info["last_job_id"]:
                last += f" (job {info['last_job_id']})"
        table.add_row(
            cell(info["name"]),
            cell(info["type"]),
            cell(f"{info['cron']} ({info['timezone']})"),
            cell(_local_time(info["next_local"])),
            cell(_local_time(info["next_utc"])),
            cell(last),
            cell("yes" if info["catch_up"] else "no"),
        )
    console().print(table)


def _local_time(iso: str | None) -> str | None:
    """An ISO time with its offset as ``YYYY-MM-DD HH:MM:SS+hh:mm``."""
    return None if iso is None else iso.replace("T", " ")


@periodic.command("remove")
@click.argument("name", metavar="NAME")
@with_app
def periodic_remove(app: App, *, name: str) -> None:
    """Remove schedule NAME: no tick of it creates a job from now on (an app that
    declares it brings it back at its next deploy)."""
    from rexec.periodic import unschedule

    if not unschedule(app.store, name):
        raise NotFoundError(f"no periodic schedule {name!r}")
    click.echo(f"periodic schedule {name}: removed")


# -- workers' metrics -----------------------------------------------------------------------


def _metrics_function(name: str) -> Callable[..., Any]:
    try:
        module = importlib.import_module("rexec.metrics")
    except ImportError as exc:
        raise ConfigurationError(
            f"worker metrics are not available in this rexec installation ({exc})"
        ) from exc
    function = getattr(module, name, None)
    if not callable(function):
        raise ConfigurationError(f"rexec.metrics has no {name}()")
    return function  # type: ignore[no-any-return]


@main.command()
@json_option
@with_app
def stats(app: App, *, as_json: bool) -> None:
    """Worker counters (Camunda's names), in total and per worker."""
    cluster_stats = _metrics_function("cluster_stats")
    counters: dict[str, dict[str, int]] = cluster_stats(app.store)
    if as_json:
        print_json(dict(sorted(counters.items())))
        return
    workers = sorted({w for per in counters.values() for w in per if w != "total"})
    table = Table("counter", "total", *workers)
    for column in table.columns[1:]:
        column.justify = "right"
    for name, per in sorted(counters.items()):
        table.add_row(
            cell(name), cell(per.get("total", 0)), *(cell(per.get(w, 0)) for w in workers)
        )
    console().print(table)


# Columns of `rexec nodes`, from what worker processes announce; other keys follow.
NODE_COLUMNS = ("id", "node", "host", "pid", "concurrency", "acquisition", "types")
NODE_HIDDEN = ("index", "started_ms", "heartbeat_ms", "heartbeat_age_ms")


def _types_cell(types: object) -> Text:
    if isinstance(types, list | tuple):
        return cell(", ".join(map(str, types)) or "all")
    return cell(types)


@main.command()
@json_option
@with_app
def nodes(app: App, *, as_json: bool) -> None:
    """Live worker processes and their last heartbeat."""
    live_workers = _metrics_function("live_workers")
    workers: list[dict[str, Any]] = list(live_workers(app.store))
    if as_json:
        print_json(workers)
        return
    extra = sorted({key for w in workers for key in w} - {*NODE_COLUMNS, *NODE_HIDDEN})
    table = Table(title=f"{len(workers)} live workers")
    for name in (*NODE_COLUMNS, "started", "heartbeat"):
        table.add_column(name, no_wrap=name == "id")
    for name in extra:
        table.add_column(name)
    now: int | None = None
    for w in workers:
        age = w.get("heartbeat_age_ms")
        beat = w.get("heartbeat_ms")
        if not isinstance(age, int) and isinstance(beat, int):
            now = app.store.time_ms() if now is None else now
            age = now - beat
        table.add_row(
            *(cell(w.get(key)) for key in NODE_COLUMNS[:-1]),
            _types_cell(w.get("types")),
            cell(when(w.get("started_ms"))),
            cell(f"{age / 1000:.1f}s ago" if isinstance(age, int) else None),
            *(cell(w.get(key)) for key in extra),
        )
    console().print(table)


# -- the worker ---------------------------------------------------------------------------


def load_app(app_path: str) -> App:
    """The App named ``module:attribute``; a malformed path is bad usage."""
    if not APP_PATH_RE.match(app_path):
        raise click.BadParameter(
            f"{app_path!r} is not module:attribute (for example myproject.jobs:app)",
            param_hint="APP",
        )
    return import_app(app_path)


def parse_types(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    for name in names:
        try:
            check_type(name)
        except RexecError as exc:
            raise click.BadParameter(str(exc), param_hint="--types") from None
    return names


def _strategy_default(keyword: str) -> Any:
    parameters = inspect.signature(BackoffJobAcquisitionStrategy.__init__).parameters
    return parameters[keyword].default


def strategy_options(fn: Callable[..., None]) -> Callable[..., None]:
    for option, keyword, kind in reversed(STRATEGY_OPTIONS):
        low = 1 if keyword == "base_num_jobs" else 0
        number = click.IntRange(min=low) if kind is int else click.FLOAT
        fn = click.option(
            option, keyword, type=number, default=_strategy_default(keyword), show_default=True
        )(fn)
    return fn


def _lazy(module_name: str, attribute: str, what: str) -> Any:
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"{what} is not available ({exc})") from exc
    return getattr(module, attribute)


@main.command()
@click.argument("app_path", metavar="APP")
@click.option("--processes", type=click.IntRange(min=1), default=2, show_default=True)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Executor slots per worker process.",
)
@click.option("--types", help="Only these job types (comma-separated).")
@click.option(
    "--priority-min",
    type=click.INT,
    callback=check_priority_option,
    help="Only jobs with at least this priority.",
)
@click.option(
    "--priority-max",
    type=click.INT,
    callback=check_priority_option,
    help="Only jobs with at most this priority.",
)
@click.option("--lock-ms", type=click.IntRange(100, 86_400_000), default=30_000, show_default=True)
@click.option(
    "--shutdown-timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds running jobs get to finish on shutdown.",
)
@click.option(
    "--acquisition", type=click.Choice(ACQUISITION_MODES), default="atomic", show_default=True
)
@strategy_options
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve this node's Prometheus metrics on this port (0: any free one).",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="Address the metrics are served on; anything but loopback needs a token.",
)
@click.option(
    "--metrics-token",
    envvar="REXEC_METRICS_TOKEN",
    show_envvar=True,
    help="Bearer token /metrics requires; needed with a --metrics-host other than loopback.",
)
@click.option(
    "--health-port",
    type=click.IntRange(0, 65535),
    envvar="REXEC_HEALTH_PORT",
    show_envvar=True,
    help="Answer /livez and /readyz on this port (0: any free one).",
)
@click.option(
    "--health-host",
    default="127.0.0.1",
    show_default=True,
    envvar="REXEC_HEALTH_HOST",
    show_envvar=True,
    help="Address the health endpoints bind to (0.0.0.0 for probes from outside).",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
)
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option(
    "--connect-timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Give up (exit 1) when Redis is unreachable this many seconds at start-up;"
    " by default a node waits for it, saying so every few seconds.",
)
@click.option(
    "--durability",
    type=click.Choice(["default", "replicated"]),
    default=None,
    envvar="REXEC_DURABILITY",
    show_envvar=True,
    help="'replicated': every commit and failure waits for a replica (WAIT 1);"
    " by default the app's own setting.",
)
@namespace_option(from_app=True)
@redis_url_option(APP_URL_HELP)
def worker(
    *,
    app_path: str,
    processes: int,
    concurrency: int,
    types: str | None,
    priority_min: int | None,
    priority_max: int | None,
    lock_ms: int,
    shutdown_timeout: float,
    acquisition: str,
    metrics_port: int | None,
    metrics_host: str,
    metrics_token: str | None,
    health_port: int | None,
    health_host: str,
    log_level: str,
    log_format: str,
    connect_timeout: float | None,
    durability: str | None,
    redis_url: str | None,
    namespace: str | None,
    **strategy: Any,
) -> None:
    """Run a worker node for APP (module:attribute naming a rexec.App) until stopped."""
    job_types = parse_types(types)
    if priority_min is not None and priority_max is not None and priority_min > priority_max:
        raise click.BadParameter(
            f"--priority-min {priority_min} is above --priority-max {priority_max}"
        )
    BackoffJobAcquisitionStrategy(**strategy)  # rejects bad combinations before forking
    if metrics_port is not None:
        from rexec.prometheus import METRICS_TOKEN_ENV, is_loopback

        if not is_loopback(metrics_host) and not metrics_token:
            raise click.UsageError(
                f"--metrics-host {metrics_host} would open the metrics to other machines:"
                f" give a token with --metrics-token or {METRICS_TOKEN_ENV}"
                " (scrapers send 'Authorization: Bearer <token>')"
            )
        if metrics_token:
            os.environ[METRICS_TOKEN_ENV] = metrics_token  # for the node, never on argv
    load_app(app_path)
    worker_settings = _lazy("rexec.settings", "WorkerSettings", "the worker runtime")
    run_node = _lazy("rexec.executor.node", "run_node", "the worker runtime")
    settings = worker_settings(
        app_path=app_path,
        redis_url=redis_url,
        namespace=namespace,
        processes=processes,
        concurrency=concurrency,
        types=job_types,
        priority_min=priority_min,
        priority_max=priority_max,
        lock_ms=lock_ms,
        shutdown_timeout_s=shutdown_timeout,
        acquisition=acquisition,
        strategy=dict(strategy),
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        health_port=health_port,
        health_host=health_host,
        log_level=log_level.upper(),
        log_format=log_format,
        connect_timeout_s=connect_timeout,
        durability=durability,
    )
    click.get_current_context().exit(int(run_node(settings)))


# -- the embedded Redis ---------------------------------------------------------------------


@main.group(cls=RexecGroup)
def embedded() -> None:
    """The embedded Redis used when no Redis URL is configured."""


@embedded.command("url")
def embedded_url() -> None:
    """Print the embedded Redis's URL, starting it if needed."""
    from rexec.embedded import shared_server_url

    click.echo(shared_server_url())


@embedded.command("stop")
def embedded_stop() -> None:
    """Shut the embedded Redis down (its data is kept on disk)."""
    from rexec.embedded import stop_shared_server

    click.echo("stopped" if stop_shared_server() else "not running")


# -- commands from optional modules -----------------------------------------------------------


def _add_optional_commands(group: click.Group, sources: Iterable[tuple[str, str]]) -> None:
    for module_name, attribute in sources:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        group.add_command(getattr(module, attribute))


_add_optional_commands(
    main,
    [
        ("rexec.demo", "demo_command"),
        ("rexec.demo", "demo_load_command"),
        ("rexec.bench", "bench_command"),
        ("rexec.cockpit.cli", "cockpit_command"),
        ("rexec.check", "check_command"),
    ],
)
