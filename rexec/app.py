"""The public face of rexec: register handlers, enqueue jobs, start process instances."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import redis

from rexec.codec import check_ms, check_priority, check_type, pack, unpack, variables_dict
from rexec.errors import ConfigurationError, ProcessInstanceNotFoundError, ValidationError
from rexec.management import Management
from rexec.priority import PriorityRule, ProcessPriority, process_priority, rule_priority
from rexec.retry import DEFAULT_RETRY_CYCLE, RetryCycle
from rexec.store import NewJob, Store, check_acquisition, check_process_instance_id

Handler = Callable[..., Any]
F = TypeVar("F", bound=Handler)

ENQUEUE_OPTIONS = frozenset(
    {"priority", "due_ms", "delay_ms", "process_instance_id", "exclusive", "retries"}
)
SPEC_KEYS = ENQUEUE_OPTIONS | {"type", "payload"}


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
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        namespace: str | None = None,
        acquisition: str = "atomic",
        history_max_len: int = 0,
        history_ttl_ms: int = 0,
    ) -> None:
        check_acquisition(acquisition)
        self.redis_url = redis_url or os.environ.get("REXEC_REDIS_URL") or None
        self.namespace = namespace or os.environ.get("REXEC_NAMESPACE") or "default"
        self.acquisition = acquisition
        self.history_max_len = history_max_len
        self.history_ttl_ms = history_ttl_ms
        self.definitions: dict[str, JobDefinition] = {}
        self._client: redis.Redis | None = None
        self._store: Store | None = None
        Store.validate_namespace(self.namespace)

    @classmethod
    def with_client(cls, client: redis.Redis, *, namespace: str = "default") -> App:
        """An app on an existing client (``decode_responses=False``). Worker nodes need
        a URL to connect their own processes; this is for producers and tests."""
        app = cls(namespace=namespace)
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
        if self._store is None:
            self._store = Store(
                self.client,
                self.namespace,
                acquisition=self.acquisition,
                history_max_len=self.history_max_len,
                history_ttl_ms=self.history_ttl_ms,
            )
        return self._store

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

        ``priority`` is an int or ``fn(payload, variables) -> int`` (the type's priority
        rule); ``retry_cycle`` is ``R5/PT5M`` or ``PT1M,PT5M,PT10M``.
        """
        check_type(type)
        if priority is not None and not callable(priority):
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
            and callable(getattr(self.definitions.get(spec.get("type", "")), "priority", None))
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
        definition = self.definitions.get(job_type)
        payload = spec.get("payload")
        pi = spec.get("process_instance_id")
        priority = spec.get("priority")
        if priority is None and definition is not None and definition.priority is not None:
            rule_variables = variables.get(pi, {}) if isinstance(pi, str) else {}
            priority = rule_priority(definition.priority, payload, rule_variables)
        exclusive = spec.get("exclusive")
        if exclusive is None:
            exclusive = definition.exclusive if definition is not None else True
        retries = spec.get("retries")
        if retries is None:
            retries = (definition.retry_cycle if definition else DEFAULT_RETRY_CYCLE).executions
        return NewJob(
            type=job_type,
            payload_raw=None if payload is None else pack(payload),
            priority=priority,
            due_ms=spec.get("due_ms"),
            delay_ms=spec.get("delay_ms"),
            retries=retries,
            exclusive=bool(exclusive),
            process_instance_id=pi,
        )

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
        return self.store.start_process_instance(raw, process_priority(priority, variables))

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
            prepared.append((pack(values, "variables"), process_priority(priority, values)))
        return self.store.start_process_instances(prepared)

    def end_process_instance(self, process_instance_id: str) -> bool:
        """Removes a process instance (record and variables); False if there was none.
        A handler ends its own instance with ``ctx.end_process_instance()`` instead, which
        happens atomically with its job's completion."""
        return self.store.end_process_instance(process_instance_id)

    def set_variables(self, process_instance_id: str, values: Mapping[str, Any]) -> int:
        """Merges ``values`` into a process instance's variables from outside a handler;
        returns its new revision. A handler that read the old variables then fails its
        commit with OptimisticLockingError and runs again, as with any concurrent change."""
        if not isinstance(values, Mapping) or not all(isinstance(k, str) for k in values):
            raise ValidationError("variables are a mapping with string names")
        check_process_instance_id(process_instance_id)
        while True:
            revision, raw = self.store.read_variables(process_instance_id)
            merged = {**variables_dict(unpack(raw, "variables"), process_instance_id), **values}
            new_revision = self.store.write_variables(
                process_instance_id, revision, pack(merged, "variables")
            )
            if new_revision is not None:
                return new_revision

    def get_variables(self, process_instance_id: str) -> dict[str, Any]:
        check_process_instance_id(process_instance_id)
        raw: bytes | None = self.client.hget(self.store.keys.vars, process_instance_id)  # type: ignore[assignment]
        if raw is None:
            raise ProcessInstanceNotFoundError(f"no process instance {process_instance_id!r}")
        return variables_dict(unpack(raw, "variables"), process_instance_id)


def connect(url: str) -> redis.Redis:
    """A client for ``url`` (redis://, rediss:// or unix://) that keeps bytes as bytes."""
    try:
        return redis.Redis.from_url(url, decode_responses=False, health_check_interval=30)
    except ValueError as exc:
        raise ConfigurationError(f"bad Redis URL {url!r}: {exc}") from exc
