"""The public face of rexec: register handlers, enqueue jobs, start process instances."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import redis

from rexec.codec import check_ms, check_priority, check_type, pack, unpack, variables_dict
from rexec.connection import connect
from rexec.definitions import definition_head, fingerprint, safe_name
from rexec.errors import (
    OptimisticLockingError,
    ProcessInstanceNotFoundError,
    ValidationError,
    is_transient,
)
from rexec.management import Management
from rexec.partitions import check_partitions, open_store
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
)

Handler = Callable[..., Any]
F = TypeVar("F", bound=Handler)

ENQUEUE_OPTIONS = frozenset(
    {"priority", "due_ms", "delay_ms", "process_instance_id", "exclusive", "retries"}
)
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
        self.app_path: str | None = None  # module:attribute, when loaded by a command
        self._client: redis.Redis | None = None
        self._store: Store | None = None
        Store.validate_namespace(self.namespace)

    @classmethod
    def with_client(
        cls, client: redis.Redis, *, namespace: str = "default", partitions: int | None = None
    ) -> App:
        """An app on an existing client (``decode_responses=False``). Worker nodes need
        a URL to connect their own processes; this is for producers and tests."""
        app = cls(namespace=namespace, partitions=partitions)
        app.redis_url = app.redis_url or "client://"
        app._client = client
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
    ) -> Callable[[F], F]:
        """Registers ``fn(ctx, payload)`` as the handler of job ``type``.

        ``priority`` is the type's priority rule: an int, ``rexec.from_variable(...)``
        (evaluated by the store, for every producer) or ``fn(payload, variables) ->
        int`` (evaluated by this app only); ``retry_cycle`` is ``R5/PT5M`` or
        ``PT1M,PT5M,PT10M``. ``deploy()`` stores the definition in Redis.
        """
        check_type(type)
        if not (priority is None or callable(priority) or isinstance(priority, FromVariable)):
            check_priority(priority)
        cycle = RetryCycle.parse(retry_cycle)
        if lock_ms is not None and (not isinstance(lock_ms, int) or lock_ms < 100):
            raise ValidationError(f"lock_ms must be an integer >= 100, got {lock_ms!r}")
        check_ms(timeout_ms, "timeout_ms")

        def register(fn: F) -> F:
            if type in self.definitions:
                raise ValidationError(f"job type {type!r} already has a handler")
            self.definitions[type] = JobDefinition(
                type, fn, priority, exclusive, cycle, lock_ms, timeout_ms
            )
            return fn

        return register

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
    ) -> str:
        """Creates one job; returns its id. Nothing is written if anything is invalid."""
        spec = {
            "type": type,
            "payload": payload,
            "priority": priority,
            "due_ms": due_ms,
            "delay_ms": delay_ms,
            "process_instance_id": process_instance_id,
            "exclusive": exclusive,
            "retries": retries,
        }
        return self.enqueue_many([spec])[0]

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
        return self.store.enqueue(jobs)

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

    def deploy(self, *, app_path: str | None = None) -> dict[str, str]:
        """Stores this app's job definitions in Redis (one script): from then on every
        producer gets their priority rule, retry cycle and defaults. The last deploy of
        a type wins. Returns, per type, ``new``, ``unchanged``, ``changed`` or
        ``conflict`` (it replaced another app's different definition)."""
        import socket

        path = app_path or self.app_path or "unknown"
        host = safe_name(socket.gethostname())
        rows = []
        for name in sorted(self.definitions):
            head = definition_head(self.definitions[name])
            rows.append((name, head, fingerprint(head), host, safe_name(path)))
        statuses = self.store.deploy(rows)
        return {row[0]: DEPLOY_STATUSES[s] for row, s in zip(rows, statuses, strict=True)}

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
