"""``RexecBackend``: Django Tasks on rexec.

How a Django task maps to rexec:

- **job type**: one per task function, ``django:<module path>`` (``django:shop.tasks.
  send_receipt``). The worker (``manage.py rexec_worker``) imports the ``tasks`` module
  of every installed app (and ``OPTIONS["MODULES"]``), registers a handler for each
  task of this backend it finds there, and deploys their definitions, so every producer
  and worker of the namespace agrees on them.
- **payload**: ``{"args": [...], "kwargs": {...}, "queue": name}`` as msgpack, after
  Django's own normalisation to JSON types.
- **priority**: Django's -100..100 is the rexec priority itself (higher runs first in
  both), so Django tasks sort among the namespace's other jobs on one scale and operator
  overrides apply. Outside -100..100 is ``InvalidTask``, nothing written.
- **run_after**: the due time; it must be an aware datetime (a naive one is
  ``InvalidTask`` whatever ``USE_TZ`` says: the due time is absolute).
- **queues**: ``QUEUES`` lists the names tasks may use (another is ``InvalidTask``); the
  name travels with the job. rexec has no queues of its own: ``--types`` and the priority
  filters of the worker split work instead.
- **failures**: Django's contract is one attempt, so a type's retry cycle is ``R1/PT0S``
  unless ``OPTIONS["RETRY_CYCLE"]`` says otherwise; while a retry is pending the result
  is ``READY`` with the errors so far, after the last one ``FAILED``.
- **results**: the result id is the job id; ``get_result`` reads the job's
  ``JobInfo`` (status, return value, errors, workers, attempts, times).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import traceback
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

from django.utils import timezone

from rexec.app import App, keep_result_ms
from rexec.codec import check_ms, check_type
from rexec.context import JobContext
from rexec.contrib.django.compat import (
    TASK_MAX_PRIORITY,
    TASK_MIN_PRIORITY,
    BaseTaskBackend,
    InvalidTask,
    Task,
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_backends,
    task_enqueued,
    task_finished,
    task_started,
)
from rexec.errors import RexecError, ValidationError
from rexec.retry import RetryCycle

if TYPE_CHECKING:
    from rexec.handles import JobInfo

TYPE_PREFIX = "django:"
DEFAULT_RETRY_CYCLE = "R1/PT0S"
DEFAULT_KEEP_RESULT = 7 * 86_400  # seconds
WORKER_APP = "rexec.contrib.django.worker:app"
OPTION_NAMES = frozenset(
    {"REDIS_URL", "NAMESPACE", "RETRY_CYCLE", "KEEP_RESULT", "TIMEOUT_MS", "MODULES"}
)

# Django's TextChoices, typed as what they are (the stubs see tuples).
READY = cast(TaskResultStatus, TaskResultStatus.READY)
RUNNING = cast(TaskResultStatus, TaskResultStatus.RUNNING)
SUCCESSFUL = cast(TaskResultStatus, TaskResultStatus.SUCCESSFUL)
FAILED = cast(TaskResultStatus, TaskResultStatus.FAILED)

# rexec's JobStatus values (a StrEnum) to Django's: a job waiting for a retry is ready
# again; one deleted by an operator will never run (failed); unknown ones have no result.
_STATUS = {
    "queued": READY,
    "scheduled": READY,
    "running": RUNNING,
    "completed": SUCCESSFUL,
    "failed": FAILED,
    "incident": FAILED,
    "deleted": FAILED,
}


def job_type(task: Task[Any, Any]) -> str:
    """The rexec job type of a Django task: ``django:<module path>``."""
    return TYPE_PREFIX + task.module_path


def _datetime(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def _class_path(value: type) -> str:
    return f"{value.__module__}.{value.__qualname__}"


class RexecBackend(BaseTaskBackend):
    """A Django Tasks backend that enqueues into rexec and reads results back from it.

    ``OPTIONS``: ``REDIS_URL`` (default: ``REXEC_REDIS_URL``, else the embedded Redis),
    ``NAMESPACE`` (default ``REXEC_NAMESPACE``, else ``"default"``), ``RETRY_CYCLE``
    (default ``R1/PT0S``: one attempt, as Django's contract has it), ``KEEP_RESULT``
    (seconds results are kept, as ``app.job(keep_result=...)`` takes it; 7 days),
    ``TIMEOUT_MS`` (per execution) and ``MODULES`` (modules the worker imports besides
    each installed app's ``tasks``)."""

    supports_defer = True
    supports_priority = True
    supports_get_result = True
    supports_async_task = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        options = dict(self.options)
        unknown = set(options) - OPTION_NAMES
        if unknown:
            raise ValidationError(
                f"TASKS[{alias!r}]['OPTIONS'] has unknown keys: {', '.join(sorted(unknown))}"
                f" (known: {', '.join(sorted(OPTION_NAMES))})"
            )
        self.retry_cycle = options.get("RETRY_CYCLE") or DEFAULT_RETRY_CYCLE
        RetryCycle.parse(self.retry_cycle)  # a bad cycle is refused at start
        self.keep_result = options.get("KEEP_RESULT", DEFAULT_KEEP_RESULT)
        keep_result_ms(self.keep_result)  # a bad value is refused at start
        self.timeout_ms: int | None = check_ms(options.get("TIMEOUT_MS"), "TIMEOUT_MS")
        modules = options.get("MODULES", ())
        if isinstance(modules, str) or not all(isinstance(m, str) for m in modules):
            raise ValidationError(f"TASKS[{alias!r}]['OPTIONS']['MODULES'] is a list of modules")
        self.modules: tuple[str, ...] = tuple(modules)
        self.app = App(options.get("REDIS_URL"), namespace=options.get("NAMESPACE"))
        self.app.app_path = WORKER_APP  # its deploys are the workers' own definitions

    # -- validation -------------------------------------------------------------------------

    def validate_task(self, task: Task[Any, Any]) -> None:
        priority = task.priority
        if (
            isinstance(priority, bool)
            or not isinstance(priority, int)
            or not TASK_MIN_PRIORITY <= priority <= TASK_MAX_PRIORITY
        ):
            raise InvalidTask(
                f"priority must be a whole number between {TASK_MIN_PRIORITY} and"
                f" {TASK_MAX_PRIORITY}, got {priority!r}"
            )
        if task.run_after is not None and not timezone.is_aware(task.run_after):
            raise InvalidTask(
                f"run_after must be an aware datetime (rexec's due times are absolute),"
                f" got {task.run_after!r}"
            )
        super().validate_task(task)
        try:
            check_type(job_type(task))
        except RexecError as exc:
            raise InvalidTask(f"{task.module_path!r} cannot name a rexec job type: {exc}") from None

    # -- producers --------------------------------------------------------------------------

    def _define(self, app: App, task: Task[Any, Any]) -> None:
        app.job(
            job_type(task),
            retry_cycle=self.retry_cycle,
            timeout_ms=self.timeout_ms,
            keep_result=self.keep_result,
        )(self._handler(task))

    def _prepare(
        self, task: Task[Any, Any], args: Iterable[Any], kwargs: Mapping[str, Any]
    ) -> tuple[TaskResult[Any], dict[str, Any]]:
        self.validate_task(task)
        result: TaskResult[Any] = TaskResult(
            task=task,
            id="",
            status=READY,
            enqueued_at=None,
            started_at=None,
            last_attempted_at=None,
            finished_at=None,
            args=list(args),
            kwargs=dict(kwargs),
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )  # refuses arguments JSON cannot hold, before anything is written
        if job_type(task) not in self.app.definitions:
            # The settings define the type (one attempt, results kept): deployed by the
            # first producer as by the workers, so its first jobs already follow them.
            self._define(self.app, task)
            self.app.deploy()
        spec = {
            "type": job_type(task),
            "payload": {"args": result.args, "kwargs": result.kwargs, "queue": task.queue_name},
            "priority": task.priority,
            "due_ms": None
            if task.run_after is None
            else max(0, int(task.run_after.timestamp() * 1000)),
        }
        return result, spec

    def _enqueued(self, result: TaskResult[Any], job_id: str) -> TaskResult[Any]:
        object.__setattr__(result, "id", job_id)
        object.__setattr__(result, "enqueued_at", timezone.now())
        task_enqueued.send(type(self), task_result=result)
        return result

    def enqueue(
        self, task: Task[Any, Any], args: Iterable[Any], kwargs: Mapping[str, Any]
    ) -> TaskResult[Any]:
        result, spec = self._prepare(task, args, kwargs)
        (job_id,) = self.app.enqueue_many([spec])
        return self._enqueued(result, job_id)

    async def aenqueue(
        self, task: Task[Any, Any], args: Iterable[Any], kwargs: Mapping[str, Any]
    ) -> TaskResult[Any]:
        result, spec = self._prepare(task, args, kwargs)
        (job_id,) = await self.app.aenqueue_many([spec])
        return self._enqueued(result, job_id)

    # -- results ----------------------------------------------------------------------------

    def get_result(self, result_id: str) -> TaskResult[Any]:
        try:
            info = self.app.handle(result_id).info()
        except RexecError as exc:
            raise TaskResultDoesNotExist(result_id) from exc
        return self._task_result(result_id, info, self._payload(result_id, info))

    async def aget_result(self, result_id: str) -> TaskResult[Any]:
        try:
            info = await self.app.handle(result_id).ainfo()
        except RexecError as exc:
            raise TaskResultDoesNotExist(result_id) from exc
        payload = None
        if info.status != "completed":
            payload = await asyncio.to_thread(self._payload, result_id, info)
        return self._task_result(result_id, info, payload)

    def _payload(self, result_id: str, info: JobInfo) -> Any:
        """The job's payload while it exists (a completed job's arguments come back
        with its result instead)."""
        if info.status == "completed":
            return None
        job = self.app.store.get_job(result_id)
        try:
            return None if job is None else job.payload
        except RexecError:
            return None

    def _task_result(self, result_id: str, info: JobInfo, payload: Any) -> TaskResult[Any]:
        if info.status not in _STATUS or not info.type.startswith(TYPE_PREFIX):
            raise TaskResultDoesNotExist(result_id)
        task = self._task_of(info.type)
        value = None
        if info.status == "completed":
            envelope = info.return_value if isinstance(info.return_value, Mapping) else {}
            payload, value = envelope, envelope.get("value")
        arguments = payload if isinstance(payload, Mapping) else {}
        queue = arguments.get("queue")
        if isinstance(queue, str) and queue != task.queue_name:
            task = task.using(queue_name=queue)
        result: TaskResult[Any] = TaskResult(
            task=task,
            id=info.id,
            status=_STATUS[info.status],
            enqueued_at=_datetime(info.enqueued_at_ms),
            started_at=_datetime(info.started_at_ms),
            last_attempted_at=_datetime(info.last_attempt_at_ms),
            finished_at=_datetime(info.finished_at_ms),
            args=list(arguments.get("args") or []),
            kwargs=dict(arguments.get("kwargs") or {}),
            backend=self.alias,
            errors=[
                TaskError(exception_class_path=e.exception, traceback=e.traceback)
                for e in info.errors
            ],
            worker_ids=list(info.worker_ids),
        )
        object.__setattr__(result, "_return_value", value)
        return result

    def _task_of(self, rexec_type: str) -> Task[Any, Any]:
        from django.utils.module_loading import import_string

        path = rexec_type.removeprefix(TYPE_PREFIX)
        try:
            task = import_string(path)
        except ImportError as exc:
            raise TaskResultDoesNotExist(f"the task {path!r} cannot be imported: {exc}") from exc
        if not isinstance(task, Task):
            raise TaskResultDoesNotExist(f"{path!r} is not a task")
        return task

    # -- workers ----------------------------------------------------------------------------

    def worker_app(self) -> App:
        """A rexec App with a handler for every task of this backend that the installed
        apps' ``tasks`` modules and ``MODULES`` define: what ``rexec_worker`` runs."""
        from django.utils.module_loading import autodiscover_modules

        autodiscover_modules("tasks")
        found: dict[str, Task[Any, Any]] = {}
        for module in [importlib.import_module(name) for name in self.modules] + _tasks_modules():
            for value in vars(module).values():
                if isinstance(value, Task) and value.backend == self.alias:
                    found.setdefault(job_type(value), value)
        app = App(self.app.redis_url, namespace=self.app.namespace)
        app.app_path = WORKER_APP
        for _, task in sorted(found.items()):
            self._define(app, task)
        return app

    def _handler(self, task: Task[Any, Any]) -> Callable[..., Any]:
        backend = self

        if inspect.iscoroutinefunction(task.func):

            async def run_async(ctx: JobContext, payload: Any) -> Any:
                result, args, kwargs = backend._started(task, ctx, payload)
                try:
                    value = await task.func(*args, **kwargs)
                except BaseException as exc:
                    backend._finished(result, exc)
                    raise
                return backend._finished(result, None, value, payload)

            return run_async

        def run(ctx: JobContext, payload: Any) -> Any:
            result, args, kwargs = backend._started(task, ctx, payload)
            try:
                value = task.func(*args, **kwargs)
            except BaseException as exc:
                backend._finished(result, exc)
                raise
            return backend._finished(result, None, value, payload)

        return run

    def _started(
        self, task: Task[Any, Any], ctx: JobContext, payload: Any
    ) -> tuple[TaskResult[Any], list[Any], dict[str, Any]]:
        if not isinstance(payload, Mapping):
            raise InvalidTask(f"job {ctx.job.id} has no Django task arguments: {payload!r}")
        args = list(payload.get("args") or [])
        kwargs = dict(payload.get("kwargs") or {})
        queue = payload.get("queue")
        if isinstance(queue, str) and queue != task.queue_name:
            task = task.using(queue_name=queue)
        info = self.app.handle(ctx.job.id).info()
        worker_ids = list(info.worker_ids)
        if not worker_ids or worker_ids[-1] != ctx.worker_id:
            worker_ids.append(ctx.worker_id)
        now = timezone.now()
        result: TaskResult[Any] = TaskResult(
            task=task,
            id=ctx.job.id,
            status=RUNNING,
            enqueued_at=_datetime(info.enqueued_at_ms),
            started_at=_datetime(info.started_at_ms) or now,
            last_attempted_at=now,
            finished_at=None,
            args=args,
            kwargs=kwargs,
            backend=self.alias,
            errors=[
                TaskError(exception_class_path=e.exception, traceback=e.traceback)
                for e in info.errors
            ],
            worker_ids=worker_ids,
        )
        task_started.send(type(self), task_result=result)
        if task.takes_context:
            args = [TaskContext(task_result=result), *args]
        return result, args, kwargs

    def _finished(
        self,
        result: TaskResult[Any],
        error: BaseException | None,
        value: Any = None,
        payload: Any = None,
    ) -> Any:
        """Tells Django's signals how the task ended; returns what the job keeps as
        its result: the return value with the arguments (``{"value", "args", "kwargs",
        "queue"}``), since a finished job's payload is gone."""
        now = timezone.now()
        object.__setattr__(result, "finished_at", now)
        if error is None:
            object.__setattr__(result, "status", SUCCESSFUL)
            object.__setattr__(result, "_return_value", value)
        else:
            object.__setattr__(result, "status", FAILED)
            result.errors.append(
                TaskError(
                    exception_class_path=_class_path(type(error)),
                    traceback="".join(traceback.format_exception(error)),
                )
            )
        task_finished.send(type(self), task_result=result)
        return {**payload, "value": value} if isinstance(payload, Mapping) else None


def _tasks_modules() -> list[ModuleType]:
    """The ``tasks`` modules of the installed apps that exist (after autodiscovery)."""
    import sys

    from django.apps import apps

    found = []
    for config in apps.get_app_configs():
        module = sys.modules.get(f"{config.name}.tasks")
        if module is not None:
            found.append(module)
    return found


def backend(alias: str = "default") -> RexecBackend:
    """The configured ``RexecBackend`` called ``alias``; a clear error for another."""
    configured = task_backends[alias]
    if not isinstance(configured, RexecBackend):
        raise ValidationError(
            f"TASKS[{alias!r}] is {type(configured).__module__}.{type(configured).__name__},"
            " not rexec.contrib.django.RexecBackend"
        )
    return configured
