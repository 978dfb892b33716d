"""The public face of rexec: register handlers, enqueue jobs, start process instances."""

from __future__ import annotations

import inspect
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import redis

from rexec.codec import check_ms, check_priority, check_type, pack, unpack, variables_dict
from rexec.connection import connect, connect_async
from rexec.definitions import definition_head, fingerprint, safe_name
from rexec.errors import (
    ConfigurationError,
    InvalidScheduleError,
    OptimisticLockingError,
    ProcessInstanceNotFoundError,
    ValidationError,
    is_transient,
)
from rexec.handles import JobHandle
from rexec.jobtype import JobType
from rexec.management import Management
from rexec.partitions import check_partitions, open_store
from rexec.periodic import DEFAULT_GRACE_MS, PeriodicInfo, Schedule
from rexec.priority import PriorityRule, ProcessPriority, process_priority, rule_priority
from rexec.retry import DEFAULT_RETRY_CYCLE, RetryCycle
from rexec.rules import FromVariable, plain_forms
from rexec.status import Status
from rexec.store import (
    DEFAULT_REPLICATION_TIMEOUT_MS,
    NewJob,
    Store,
    check_acquisition,
    check_durability,
    check_process_instance_id,
    check_replication_timeout,
    class_path,
)

if TYPE_CHECKING:
    import redis.asyncio

Handler = Callable[..., Any]
F = TypeVar("F", bound=Handler)

log = logging.getLogger("rexec")

ENQUEUE_OPTIONS = frozenset(
    {"priority", "due_ms", "delay_ms", "process_instance_id", "exclusive", "retries", "key"}
)
MAX_KEEP_RESULT_MS = 366 * 86_400_000
CLASS_PATH_RE = re.compile(r"^[A-Za-z0-9_.<>]{1,300}$")
SPEC_KEYS = ENQUEUE_OPTIONS | {"type", "payload"}
DEPLOY_STATUSES = ("new", "unchanged", "changed", "conflict")


def _python_rule(definition: JobDefinition | None) -> bool:
    rule = None if definition is None else definition.priority
    return callable(rule) and not isinstance(rule, FromVariable)


@dataclass(frozen=True, slots=True)
class JobDefinition:
    """A handler registered under a job type, with its rules."""

    type: str
    handler: Handler
    priority: PriorityRule | None = None
    exclusive: bool = True
    retry_cycle: RetryCycle = DEFAULT_RETRY_CYCLE
    lock_ms: int | None = None
    timeout_ms: int | None = None
    keep_result_ms: int | None = None
    retry_on: tuple[str, ...] = ()  # exception class paths (module.QualName)
    no_retry_on: tuple[str, ...] = ()
    # ``fn(contexts, payloads)``: called with several jobs of this type at once.
    batch: bool = False

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.handler)


class App:
    """A rexec application: one namespace on one Redis.

    ``redis_url=None`` uses ``REXEC_REDIS_URL`` if set, else the embedded Redis (a
    private ``redis-server`` shared by the rexec commands of this machine). Completed
    jobs leave nothing behind, unless ``history_max_len`` > 0 keeps the last that many
    (about) in a history, for at most ``history_ttl_ms`` if given.

    ``partitions`` spreads the namespace over that many hash tags (Redis Cluster
    masters; see docs/scaling.md). The count is fixed when the namespace is created:
    ``None`` takes the stored one (1 for a namespace never partitioned), another count
    than the stored one is a PartitionCountError.

    ``redis_url`` may name a Redis Cluster (``redis+cluster://host:port``) or a Sentinel
    group (``redis+sentinel://host:port,…/service``); see rexec/connection.py.
    ``durability="replicated"`` makes every acknowledged write (enqueue, commit, fail,
    operator change) wait until a replica has it (``WAIT 1 replication_timeout_ms``),
    else raise ReplicationTimeoutError, so it survives the loss of its master.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        namespace: str | None = None,
        acquisition: str = "atomic",
        history_max_len: int = 0,
        history_ttl_ms: int = 0,
        partitions: int | None = None,
        durability: str = "default",
        replication_timeout_ms: int = DEFAULT_REPLICATION_TIMEOUT_MS,
    ) -> None:
        check_acquisition(acquisition)
        if partitions is not None:
            check_partitions(partitions)
        self.partitions = partitions
        self.durability = check_durability(durability)
        self.replication_timeout_ms = check_replication_timeout(replication_timeout_ms)
        self.redis_url = redis_url or os.environ.get("REXEC_REDIS_URL") or None
        self.namespace = namespace or os.environ.get("REXEC_NAMESPACE") or "default"
        self.acquisition = acquisition
        self.history_max_len = history_max_len
        self.history_ttl_ms = history_ttl_ms
        self.definitions: dict[str, JobDefinition] = {}
        self.schedules: dict[str, Schedule] = {}
        self._schedule_payloads: dict[str, Any] = {}
        self.app_path: str | None = None  # module:attribute, when loaded by a command
        self._client: redis.Redis | None = None
        self._aclient: redis.asyncio.Redis | None = None
        self._store: Store | None = None
        self._known_types: set[str] = set()
        Store.validate_namespace(self.namespace)

    @classmethod
    def with_client(
        cls,
        client: redis.Redis,
        *,
        namespace: str = "default",
        aclient: redis.asyncio.Redis | None = None,
        partitions: int | None = None,
    ) -> App:
        """An app on an existing client (``decode_responses=False``), and optionally a
        redis.asyncio client on the same server for the async producers. Worker nodes
        need a URL to connect their own processes; this is for producers and tests."""
        app = cls(namespace=namespace, partitions=partitions)
        app.redis_url = app.redis_url or "client://"
        app._client = client
        app._aclient = aclient
        return app

    # -- connection ---------------------------------------------------------------------

    def resolved_url(self) -> str:
        """The Redis URL in use, starting the embedded Redis when none is configured."""
        if self.redis_url is None:
            from rexec.embedded import shared_server_url

            self.redis_url = shared_server_url()
        return self.redis_url

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = connect(self.resolved_url())
        return self._client

    @property
    def aclient(self) -> redis.asyncio.Redis:
        """A redis.asyncio client on the same Redis, for ``aenqueue`` and the async
        handle methods (created on first use, bound to the event loop that first uses
        it)."""
        if self._aclient is None:
            url = self.resolved_url()
            if url == "client://":
                raise ConfigurationError(
                    "this app was made with_client(...) without aclient=: pass a"
                    " redis.asyncio client for the async producers"
                )
            self._aclient = connect_async(url)  # a cluster or Sentinel URL too
        return self._aclient

    async def aclose(self) -> None:
        """Closes the async client (``close()`` closes the sync one)."""
        if self._aclient is not None:
            await self._aclient.aclose()
            self._aclient = None

    @property
    def store(self) -> Store:
        if self._store is not None:
            return self._store
        try:
            return self.open_store()
        except Exception as exc:
            if self.partitions not in (None, 1) or not is_transient(exc):
                raise
            # Redis is away, so the partition layout cannot be read: partition 0's store
            # for now (its every call fails while Redis is away, as before), not kept, so
            # the next use reads the layout. A worker process opens its store with
            # open_store, once Redis answers (rexec/executor/process.py).
            return Store(self.client, self.namespace, **self._store_options())

    def open_store(self) -> Store:
        """Opens (and keeps) the namespace's store, reading its partition layout: raises
        when Redis cannot be reached, where ``store`` would make do for now."""
        if self._store is None:
            self._store = open_store(
                self.client, self.namespace, self.partitions, **self._store_options()
            )
        return self._store

    def _store_options(self) -> dict[str, Any]:
        return {
            "acquisition": self.acquisition,
            "history_max_len": self.history_max_len,
            "history_ttl_ms": self.history_ttl_ms,
            "durability": self.durability,
            "replication_timeout_ms": self.replication_timeout_ms,
        }

    @property
    def management(self) -> Management:
        return Management(self.store)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
            self._store = None

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- handlers -----------------------------------------------------------------------

    def job(
        self,
        type: str,
        *,
        priority: PriorityRule | None = None,
        exclusive: bool = True,
        retry_cycle: str | None = None,
        lock_ms: int | None = None,
        timeout_ms: int | None = None,
        keep_result: float | timedelta | None = None,
        retry_on: Iterable[type[BaseException]] | type[BaseException] = (),
        no_retry_on: Iterable[type[BaseException]] | type[BaseException] = (),
        batch: bool = False,
    ) -> Callable[[Callable[..., Any]], JobType[..., Any]]:
        """Registers ``fn(ctx, payload)`` as the handler of job ``type``; returns a
        :class:`~rexec.jobtype.JobType`, still callable as ``fn``, with ``enqueue``.

        With ``batch=True`` the handler is ``fn(contexts, payloads)`` (or an ``async def``),
        called with up to 100 plain jobs of this type at once (an exclusive job
        of a process instance comes alone), so it can pipeline its own I/O. It returns
        None (all completed) or a list with one item per job: that job's result (None
        too: completed, the result kept as a single handler's return value is) or an
        exception (that job failed); raising fails them all. ``timeout_ms`` then bounds
        the whole call.

        ``priority`` is the type's priority rule: an int, ``rexec.from_variable(...)``
        (evaluated by the store, for every producer) or ``fn(payload, variables) ->
        int`` (evaluated by this app only); ``retry_cycle`` is ``R5/PT5M`` or
        ``PT1M,PT5M,PT10M``. ``keep_result`` (seconds or a timedelta) keeps each job's
        return value or final error that long after it finished (``JobHandle.result``).
        ``retry_on``: only these exceptions (and their subclasses) are retried, any other
        makes an incident at once; ``no_retry_on``: these make an incident at once (it
        wins over ``retry_on``). ``deploy()`` stores the definition in Redis, so every
        worker and producer applies it.
        """
        check_type(type)
        if not (priority is None or callable(priority) or isinstance(priority, FromVariable)):
            check_priority(priority)
        cycle = RetryCycle.parse(retry_cycle)
        if lock_ms is not None and (not isinstance(lock_ms, int) or lock_ms < 100):
            raise ValidationError(f"lock_ms must be an integer >= 100, got {lock_ms!r}")
        check_ms(timeout_ms, "timeout_ms")
        keep_ms = keep_result_ms(keep_result)
        retry_paths = exception_paths(retry_on, "retry_on")
        no_retry_paths = exception_paths(no_retry_on, "no_retry_on")
        if not isinstance(batch, bool):
            raise ValidationError(f"batch must be True or False, got {batch!r}")

        def register(fn: Callable[..., Any]) -> JobType[..., Any]:
            if type in self.definitions:
                raise ValidationError(f"job type {type!r} already has a handler")
            handler = fn.handler if isinstance(fn, JobType) else fn
            if not callable(handler):
                raise ValidationError(f"a handler is a function, got {handler!r}")
            self.definitions[type] = JobDefinition(
                type,
                handler,
                priority,
                exclusive,
                cycle,
                lock_ms,
                timeout_ms,
                keep_ms,
                retry_paths,
                no_retry_paths,
                batch,
            )
            return JobType(self, type, handler)

        return register

    # -- periodic jobs ------------------------------------------------------------------

    def periodic(
        self,
        cron: str,
        type: str,
        payload: Any = None,
        *,
        name: str | None = None,
        timezone: str = "UTC",
        priority: int | None = None,
        catch_up: bool = False,
        grace_ms: int = DEFAULT_GRACE_MS,
    ) -> Callable[[Callable[..., Any]], JobType[..., Any]]:
        """Declares a periodic job: every tick of ``cron`` (five fields, or six with a
        leading seconds field) in ``timezone`` creates one job of ``type`` with
        ``payload``, however many workers run. ``deploy()`` stores it in Redis; from
        then on any worker of the namespace fires it. A tick no worker ran within
        ``grace_ms`` is skipped, or run once with ``catch_up=True``. ``name`` (default:
        the type) tells several schedules of one type apart.

        Returns a decorator: ``@app.periodic(...)`` over a function also registers it
        as the handler of ``type`` (as ``@app.job(type)`` would)."""
        check_type(type)
        schedule_name = type if name is None else name
        if priority is not None:
            check_priority(priority)
        job = NewJob(type=type, payload_raw=None if payload is None else pack(payload),
                     priority=priority)  # fmt: skip
        schedule = Schedule(
            schedule_name, cron, timezone, job, catch_up=catch_up, grace_ms=grace_ms
        )
        if schedule_name in self.schedules:
            raise InvalidScheduleError(
                f"a schedule named {schedule_name!r} exists: give another name=..."
            )
        self.schedules[schedule_name] = schedule
        self._schedule_payloads[schedule_name] = payload

        def register(fn: Callable[..., Any]) -> JobType[..., Any]:
            return self.job(type)(fn)

        return register

    def unschedule(self, name: str) -> bool:
        """Removes schedule ``name`` from this app and from Redis (whichever app deployed
        it); False when Redis had no such schedule."""
        from rexec.periodic import check_name, unschedule

        check_name(name)
        self.schedules.pop(name, None)
        self._schedule_payloads.pop(name, None)
        return unschedule(self.store, name)

    def periodic_schedules(self) -> list[PeriodicInfo]:
        """The schedules deployed in this namespace (by any app), by next run."""
        from rexec.periodic import schedules

        return schedules(self.store)

    def deploy_periodic(
        self, *, app_path: str | None = None, now_ms: int | None = None
    ) -> dict[str, str]:
        """Stores this app's schedules in Redis and removes those it (the same app path)
        deployed before and no longer declares; ``deploy()`` does this too. ``now_ms``
        (Redis time when None) is when a new schedule starts counting. Returns per name
        ``new``, ``unchanged``, ``changed`` or ``removed``."""
        import socket

        from rexec.periodic import deploy

        schedules = [self._resolved_schedule(s) for s in self.schedules.values()]
        return deploy(
            self.store,
            schedules,
            app=safe_name(app_path or self.app_path or "unknown"),
            host=safe_name(socket.gethostname()),
            now_ms=now_ms,
        )

    def _resolved_schedule(self, schedule: Schedule) -> Schedule:
        """The schedule with this app's own defaults for its type (as enqueue takes
        them): a priority rule in Python is evaluated once, with the payload."""
        import dataclasses

        spec: dict[str, Any] = {
            "type": schedule.job.type,
            "payload": self._schedule_payloads.get(schedule.name),
            "priority": schedule.job.priority,
        }
        return dataclasses.replace(schedule, job=self._new_job(spec, {}))

    def handle(self, job_id: str) -> JobHandle:
        """A handle on job ``job_id`` (its status, info and result)."""
        return JobHandle(self, job_id)

    # -- producers ----------------------------------------------------------------------

    def enqueue(
        self,
        type: str,
        payload: Any = None,
        *,
        priority: int | None = None,
        due_ms: int | None = None,
        delay_ms: int | None = None,
        process_instance_id: str | None = None,
        exclusive: bool | None = None,
        retries: int | None = None,
        key: str | None = None,
    ) -> str:
        """Creates one job; returns its id. Nothing is written if anything is invalid.
        ``key`` makes it unique: while a job with that key is queued, scheduled or
        running, that job's id is returned instead."""
        return self.enqueue_many([self._spec(locals())])[0]

    async def aenqueue(
        self,
        type: str,
        payload: Any = None,
        *,
        priority: int | None = None,
        due_ms: int | None = None,
        delay_ms: int | None = None,
        process_instance_id: str | None = None,
        exclusive: bool | None = None,
        retries: int | None = None,
        key: str | None = None,
    ) -> str:
        """``enqueue`` for asyncio producers, on ``aclient`` (redis.asyncio)."""
        return (await self.aenqueue_many([self._spec(locals())]))[0]

    @staticmethod
    def _spec(given: Mapping[str, Any]) -> dict[str, Any]:
        return {name: given[name] for name in SPEC_KEYS}

    def enqueue_many(self, specs: Iterable[Mapping[str, Any]]) -> list[str]:
        """Creates many jobs in pipelined chunks; returns their ids in order. Every spec
        is checked before anything is written."""
        specs = list(specs)
        for spec in specs:
            if not isinstance(spec, Mapping):
                raise ValidationError(f"a job spec is a mapping, got {type(spec).__name__}")
        variables: dict[str, Mapping[str, Any]] = {}
        rules_need = {
            spec.get("process_instance_id")
            for spec in specs
            if spec.get("priority") is None
            and spec.get("process_instance_id") is not None
            and _python_rule(self.definitions.get(spec.get("type", "")))
        }
        for pi in rules_need:
            variables[str(pi)] = self.get_variables(str(pi))
        jobs = [self._new_job(spec, variables) for spec in specs]
        ids = self.store.enqueue(jobs)
        self._note_unknown_types(jobs, self._deployed)
        return ids

    async def aenqueue_many(self, specs: Iterable[Mapping[str, Any]]) -> list[str]:
        """``enqueue_many`` for asyncio producers, on ``aclient`` (redis.asyncio)."""
        specs = list(specs)
        for spec in specs:
            if not isinstance(spec, Mapping):
                raise ValidationError(f"a job spec is a mapping, got {type(spec).__name__}")
        variables: dict[str, Mapping[str, Any]] = {}
        for spec in specs:
            pi = spec.get("process_instance_id")
            if (
                spec.get("priority") is None
                and isinstance(pi, str)
                and pi not in variables
                and _python_rule(self.definitions.get(spec.get("type", "")))
            ):
                check_process_instance_id(pi)
                keys = self.store.instance_keys(pi)
                raw: bytes | None = await self.aclient.hget(keys.vars, pi)  # type: ignore[assignment]
                if raw is None:
                    raise ProcessInstanceNotFoundError(f"no process instance {pi!r}")
                variables[pi] = variables_dict(unpack(raw, "variables"), pi)
        jobs = [self._new_job(spec, variables) for spec in specs]
        ids = await self.store.aenqueue(self.aclient, jobs)
        new = sorted({job.type for job in jobs} - self._known_types - set(self.definitions))
        if new:
            try:
                found = await self.aclient.hmget(self.store.keys.definitions, new)
            except redis.RedisError:  # only a warning is at stake
                return ids
            stored = {name for name, record in zip(new, found, strict=True) if record}
            self._note_unknown_types(jobs, lambda _: stored)
        return ids

    def _deployed(self, types: list[str]) -> set[str]:
        found = self.client.hmget(self.store.keys.definitions, types)
        return {name for name, record in zip(types, found, strict=True) if record}

    def _note_unknown_types(
        self, jobs: list[NewJob], deployed_of: Callable[[list[str]], set[str]]
    ) -> None:
        """Says once per type when a job's type is neither registered in this app nor
        deployed: likely a typo, and no worker may ever run it. Asked after the jobs
        are written (it never stands in the way of an enqueue)."""
        new = {job.type for job in jobs} - self._known_types - set(self.definitions)
        if not new:
            return
        try:
            deployed = deployed_of(sorted(new))
        except redis.RedisError:  # only a warning is at stake; the jobs are written
            return
        for name in sorted(new):
            if name not in deployed:
                log.warning(
                    "job type %r is neither registered in this app nor deployed: its jobs"
                    " wait for a worker that runs it (a typo?)",
                    name,
                )
        self._known_types |= new

    def _new_job(
        self, spec: Mapping[str, Any], variables: Mapping[str, Mapping[str, Any]]
    ) -> NewJob:
        # NewJob validates every field; this only resolves the defaults and the rule.
        if not isinstance(spec, Mapping):
            raise ValidationError(f"a job spec is a mapping, got {type(spec).__name__}")
        if not spec.keys() <= SPEC_KEYS:
            unknown = ", ".join(sorted(map(str, set(spec) - SPEC_KEYS)))
            raise ValidationError(f"unknown job spec keys: {unknown}")
        job_type = spec.get("type")
        if not isinstance(job_type, str):
            raise ValidationError(f"a job spec needs a 'type' string, got {job_type!r}")
        # What is not given explicitly comes from the type's stored definition (the
        # store resolves it); this app's own definition only stands in for a type never
        # deployed, and supplies the result of a priority rule that lives in Python.
        definition = self.definitions.get(job_type)
        payload = spec.get("payload")
        pi = spec.get("process_instance_id")
        own_priority = None
        if spec.get("priority") is None and definition is not None:
            rule_variables = variables.get(pi, {}) if isinstance(pi, str) else {}
            own_priority = rule_priority(definition.priority, payload, rule_variables)
        exclusive = spec.get("exclusive")
        return NewJob(
            unique_key=spec.get("key"),
            type=job_type,
            payload_raw=None if payload is None else pack(payload),
            priority=spec.get("priority"),
            due_ms=spec.get("due_ms"),
            delay_ms=spec.get("delay_ms"),
            retries=spec.get("retries"),
            exclusive=None if exclusive is None else bool(exclusive),
            process_instance_id=pi,
            rule_priority=own_priority,
            default_retries=definition.retry_cycle.executions if definition else None,
            default_exclusive=definition.exclusive if definition else None,
        )

    # -- job definitions ----------------------------------------------------------------

    def deploy(self, *, app_path: str | None = None, periodic: bool = True) -> dict[str, str]:
        """Stores this app's job definitions in Redis (one script): from then on every
        producer gets their priority rule, retry cycle and defaults. The last deploy of
        a type wins. Returns, per type, ``new``, ``unchanged``, ``changed`` or
        ``conflict`` (it replaced another app's different definition). Then, unless
        ``periodic=False``, its periodic schedules (``deploy_periodic``)."""
        import socket

        path = app_path or self.app_path or "unknown"
        host = safe_name(socket.gethostname())
        rows = []
        for name in sorted(self.definitions):
            head = definition_head(self.definitions[name])
            rows.append((name, head, fingerprint(head), host, safe_name(path)))
        statuses = self.store.deploy(rows)
        if periodic:
            self.deploy_periodic(app_path=path)
        return {row[0]: DEPLOY_STATUSES[s] for row, s in zip(rows, statuses, strict=True)}

    # -- testing ------------------------------------------------------------------------

    def run_until_empty(self, timeout: float | timedelta | None = None) -> int:
        """Runs every due job of this app's types in the calling process, through the
        real store and the worker's own scripts and rules (for test suites, like Celery's
        eager mode, but nothing is bypassed); returns how many executions it ran (a job
        retried counts once per attempt).

        Like a worker node, it first deploys the app's job definitions (``deploy()``).
        Follow-ups, fork branches and joins the jobs create are run when due; a failure
        is recorded as a worker records it (retries, retry cycle, incident). Types this
        app has no handler for are left for other workers. Without ``timeout`` it never
        sleeps: jobs scheduled for later (a delay, a retry cycle's wait) stay scheduled.
        With ``timeout`` (seconds or a timedelta) it also waits for jobs of its types that
        fall due before the deadline, and stops acquiring once the deadline has passed.
        A ``def`` handler runs to its end in the caller's thread (its ``timeout_ms`` is
        not enforced); an ``async def`` one runs on an event loop within it."""
        from rexec.executor.inline import run_until_empty

        return run_until_empty(self, timeout)

    # -- process instances ------------------------------------------------------------------

    def start_process_instance(
        self,
        variables: Mapping[str, Any] | None = None,
        *,
        priority: ProcessPriority | None = None,
    ) -> str:
        """Creates a process instance with its variables; ``priority`` (an int or a
        function of the variables) is the default priority of its jobs."""
        if variables is not None and not isinstance(variables, Mapping):
            raise ValidationError(f"variables are a mapping, got {type(variables).__name__}")
        variables = dict(variables or {})
        if not all(isinstance(name, str) for name in variables):
            raise ValidationError("variable names must be strings")
        raw = pack(variables, "variables")
        return self.store.start_process_instance(
            raw, process_priority(priority, variables), plain_forms(variables)
        )

    def start_process_instances(
        self,
        variables: Iterable[Mapping[str, Any]],
        *,
        priority: ProcessPriority | None = None,
    ) -> list[str]:
        """Creates many process instances in one pipeline; returns their ids in order."""
        prepared = []
        for one in variables:
            if not isinstance(one, Mapping):
                raise ValidationError(f"variables are a mapping, got {type(one).__name__}")
            values = dict(one)
            if not all(isinstance(name, str) for name in values):
                raise ValidationError("variable names must be strings")
            prepared.append(
                (pack(values, "variables"), process_priority(priority, values), plain_forms(values))
            )
        return self.store.start_process_instances(prepared)

    def set_variables(self, process_instance_id: str, variables: Mapping[str, Any]) -> int:
        """Sets variables of a process instance from outside (Camunda's setVariables):
        merged into its variables atomically, bumping its revision, so a running job
        that read the old ones cannot commit changes over them. Returns the new
        revision."""
        if not isinstance(variables, Mapping):
            raise ValidationError(f"variables are a mapping, got {type(variables).__name__}")
        changes = dict(variables)
        if not all(isinstance(name, str) and name for name in changes):
            raise ValidationError("variable names must be non-empty strings")
        pack(changes, "variables")  # refuse what msgpack cannot hold before reading
        for _ in range(100):
            revision, _, raw = self.store.read_process_instance(process_instance_id)
            merged = {**variables_dict(unpack(raw, "variables"), process_instance_id), **changes}
            status = self.store.set_variables(
                process_instance_id, revision, pack(merged, "variables"), plain_forms(merged)
            )
            if status == Status.OK:
                return revision + 1
            if status == Status.PI_NOT_FOUND:
                raise ProcessInstanceNotFoundError(f"no process instance {process_instance_id!r}")
        raise OptimisticLockingError(
            f"process instance {process_instance_id!r} kept changing; variables not set"
        )

    def end_process_instance(self, process_instance_id: str) -> bool:
        """Removes a process instance (record and variables); False if there was none.
        A handler ends its own instance with ``ctx.end_process_instance()`` instead, which
        happens atomically with its job's completion."""
        return self.store.end_process_instance(process_instance_id)

    def get_variables(self, process_instance_id: str) -> dict[str, Any]:
        check_process_instance_id(process_instance_id)
        keys = self.store.instance_keys(process_instance_id)
        raw: bytes | None = self.client.hget(keys.vars, process_instance_id)  # type: ignore[assignment]
        if raw is None:
            raise ProcessInstanceNotFoundError(f"no process instance {process_instance_id!r}")
        return variables_dict(unpack(raw, "variables"), process_instance_id)


def keep_result_ms(keep: object) -> int | None:
    """``keep_result`` (seconds or a timedelta) in ms; None keeps nothing."""
    if keep is None:
        return None
    if isinstance(keep, timedelta):
        ms = int(keep / timedelta(milliseconds=1))
    elif isinstance(keep, int | float) and not isinstance(keep, bool):
        ms = int(keep * 1000)
    else:
        raise ValidationError(f"keep_result is seconds or a timedelta, got {keep!r}")
    if not 1000 <= ms <= MAX_KEEP_RESULT_MS:
        raise ValidationError(f"keep_result must be 1 s to 366 days, got {keep!r}")
    return ms


def exception_paths(given: object, what: str) -> tuple[str, ...]:
    """Exception classes as the class paths a stored definition keeps."""
    classes = (given,) if isinstance(given, type) else given
    if isinstance(classes, str | bytes) or not isinstance(classes, Iterable):
        raise ValidationError(f"{what} is a tuple of exception classes, got {given!r}")
    paths = []
    for cls in classes:
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise ValidationError(f"{what} takes exception classes, got {cls!r}")
        path = class_path(cls)
        if not CLASS_PATH_RE.fullmatch(path):
            raise ValidationError(f"{what}: cannot store the class path {path!r}")
        paths.append(path)
    return tuple(dict.fromkeys(paths))
