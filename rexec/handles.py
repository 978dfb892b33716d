"""Job handles: what became of an enqueued job, and its result.

A :class:`JobHandle` names one job by id. Its status comes from the job's record while
the job exists, and from its kept result once it has left: a job type deployed with
``keep_result`` leaves, in the ``results`` hash, its final status, return value, errors
(class path, message, traceback), attempts and worker ids, for that long (the scripts
write them atomically with the completion, failure or deletion; see
docs/internals/redis-schema.md).

Statuses:

- ``queued``: waiting to run (due; or held back by a suspension);
- ``scheduled``: due later (a delay, a time, or the wait before a retry);
- ``running``: locked by a worker;
- ``completed``: its handler returned and the completion was committed;
- ``incident``: it gave up with an error (retries used up, an exception its retry
  policy does not retry, or ``rexec.Fail``) and waits for an operator: setting its
  retries runs it again, deleting it makes it ``failed``;
- ``failed``: it ended with an error for good: deleted while it was an incident;
- ``deleted``: deleted by an operator before it ended (not as an incident);
- ``unknown``: no such job, and no result kept (never enqueued, its type keeps no
  results, or its result expired).

Finished statuses (``completed``, ``failed``, ``deleted``) are known only for types
that keep results.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from rexec.codec import priority_from_key, unpack
from rexec.definitions import parse_definition
from rexec.errors import (
    JobDeletedError,
    JobFailedError,
    JobNotFoundError,
    JobResultTimeoutError,
    ResultNotKeptError,
    ScriptError,
    ValidationError,
)
from rexec.job import Job, JobState, parse_record
from rexec.store import DEFAULT_RESULT_CAP, check_job_id

if TYPE_CHECKING:
    from rexec.app import App

__all__ = ["DEFAULT_RESULT_CAP", "JobError", "JobHandle", "JobInfo", "JobStatus"]
POLL_MIN_S = 0.01
POLL_MAX_S = 0.5


class JobStatus(StrEnum):
    """Where a job is in its life (see the module docstring for each one's meaning)."""

    QUEUED = "queued"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INCIDENT = "incident"
    DELETED = "deleted"
    UNKNOWN = "unknown"

    @property
    def finished(self) -> bool:
        """The job will not run again by itself: completed, failed, deleted, an
        incident (until an operator acts), or unknown."""
        return self not in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.RUNNING)


@dataclass(frozen=True)
class JobError:
    """One failed execution: the exception's class path (``module.QualName``; empty
    when only a text was recorded), its message, its traceback, and when (Redis ms;
    0 when unknown)."""

    exception: str
    message: str
    traceback: str
    at_ms: int


@dataclass(frozen=True)
class JobInfo:
    """What is known of a job: from its record while it exists, from its kept result
    after. ``errors`` are oldest first; attempts, worker ids and times are kept only
    for types that keep results (else 0, empty and None)."""

    id: str
    type: str
    status: JobStatus
    return_value: Any
    errors: tuple[JobError, ...]
    attempts: int
    worker_ids: tuple[str, ...]
    enqueued_at_ms: int | None
    started_at_ms: int | None
    last_attempt_at_ms: int | None
    finished_at_ms: int | None
    due_ms: int | None
    priority: int | None
    process_instance_id: str | None


# -- parsing what the scripts wrote (pure) ------------------------------------------------


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _ms(field: str) -> int | None:
    return int(field) if field.isdigit() else None


def parse_errors(blob: bytes | None) -> tuple[JobError, ...]:
    """The kept errors: entries ``<at ms>,<len>,<len>,<len>:`` then class path, message
    and traceback (lua/includes/note_attempt.lua). A damaged tail is dropped."""
    found: list[JobError] = []
    if not blob:
        return ()
    pos = 0
    while pos < len(blob):
        colon = blob.find(b":", pos)
        if colon < 0:
            break
        try:
            at, a, b, c = (int(x) for x in blob[pos:colon].split(b","))
        except ValueError:
            break
        start = colon + 1
        parts = blob[start : start + a], blob[start + a : start + a + b]
        trace = blob[start + a + b : start + a + b + c]
        found.append(JobError(_text(parts[0]), _text(parts[1]), _text(trace), at))
        pos = start + a + b + c
    return tuple(found)


def error_from_text(text: str) -> JobError:
    """A JobError from the job's last error text (``Name: message\\n\\ntraceback``), for
    types that keep no results: the class is known by its name only."""
    head, _, trace = text.partition("\n\n")
    name, sep, message = head.partition(": ")
    if not sep or " " in name:
        name, message = "", head
    return JobError(name, message, trace, 0)


_LIVE = {
    JobState.READY: JobStatus.QUEUED,
    JobState.SUSPENDED: JobStatus.QUEUED,
    JobState.SCHEDULED: JobStatus.SCHEDULED,
    JobState.LOCKED: JobStatus.RUNNING,
    JobState.INCIDENT: JobStatus.INCIDENT,
}
_FINAL = {
    "completed": JobStatus.COMPLETED,
    "failed": JobStatus.FAILED,
    "deleted": JobStatus.DELETED,
}


def build_info(job_id: str, raw: list[Any], now_ms: int, job_type: str | None = None) -> JobInfo:
    """The JobInfo from one read (see :func:`read_commands`)."""
    record, error_text, meta, value, blob, workers = raw
    fields = _text(meta).split("|") if meta is not None else []
    if len(fields) != 11:
        fields = []
    job: Job | None = None
    if record is not None:
        try:
            job = parse_record(job_id, record, now_ms)
        except ValueError as exc:
            raise ScriptError(f"job {job_id}'s record is not one rexec wrote: {exc}") from exc
    expired = bool(fields) and fields[10].isdigit() and int(fields[10]) <= now_ms
    if job is not None:
        status = _LIVE[job.state]
    elif fields and not expired:
        status = _FINAL.get(fields[0], JobStatus.UNKNOWN)
    else:
        status = JobStatus.UNKNOWN
    if status is JobStatus.UNKNOWN:
        fields = []
    errors = parse_errors(blob) if fields else ()
    if not errors and job is not None and error_text is not None:
        errors = (error_from_text(_text(error_text)),)
    return_value = None
    if status is JobStatus.COMPLETED and value:
        return_value = unpack(value, "result")
    pk = fields[3] if fields else ""
    kept_pi = (fields[2] or None) if fields else None
    return JobInfo(
        id=job_id,
        type=job.type if job else (fields[1] if fields else job_type or ""),
        status=status,
        return_value=return_value,
        errors=errors,
        attempts=int(fields[9]) if fields and fields[9].isdigit() else 0,
        worker_ids=tuple(w for w in _text(workers).split("|") if w) if fields else (),
        enqueued_at_ms=_ms(fields[5]) if fields else None,
        started_at_ms=_ms(fields[6]) if fields else None,
        last_attempt_at_ms=_ms(fields[7]) if fields else None,
        finished_at_ms=_ms(fields[8]) if fields else None,
        due_ms=job.due_ms if job else (_ms(fields[4]) if fields else None),
        priority=job.priority if job else (priority_from_key(pk) if len(pk) == 16 else None),
        process_instance_id=job.process_instance_id if job else kept_pi,
    )


def wait_s(timeout: float | timedelta | None) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, timedelta):
        return timeout.total_seconds()
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
        raise ValidationError(f"timeout is seconds >= 0 or a timedelta, got {timeout!r}")
    return float(timeout)


def settle(info: JobInfo, keeps: bool | None) -> tuple[bool, Any]:
    """(True, value) when ``result()`` can answer now (or raises); (False, None) to
    wait. ``keeps``: whether the job's type keeps results (None: not known)."""
    status = info.status
    if status is JobStatus.COMPLETED:
        return True, info.return_value
    if status in (JobStatus.FAILED, JobStatus.INCIDENT):
        last = info.errors[-1] if info.errors else None
        reason = f": {last.exception or 'error'}: {last.message}" if last else ""
        raise JobFailedError(f"job {info.id} ({info.type}) is {status.value}{reason}", info)
    if status is JobStatus.DELETED:
        raise JobDeletedError(f"job {info.id} ({info.type}) was deleted before it finished", info)
    if keeps is False:
        raise ResultNotKeptError(
            f"job type {info.type!r} keeps no results: deploy it with keep_result=..."
        )
    if status is JobStatus.UNKNOWN:
        raise JobNotFoundError(
            f"no job {info.id} and no result kept for it (never enqueued, or its result expired)"
        )
    return False, None


class JobHandle:
    """One job, by id: its status, what is known of it, and its result."""

    __slots__ = ("_app", "_type", "id")

    def __init__(self, app: App, job_id: str, job_type: str | None = None) -> None:
        self._app = app
        self.id = check_job_id(job_id)
        self._type = job_type

    def __repr__(self) -> str:
        return f"<JobHandle {self.id}{' ' + self._type if self._type else ''}>"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, JobHandle)
            and other.id == self.id
            and other._app.namespace == self._app.namespace
        )

    def __hash__(self) -> int:
        return hash((self._app.namespace, self.id))

    def _commands(self) -> list[tuple[str, tuple[Any, ...]]]:
        """The reads of ``info()``, all in the job's partition (one slot), then TIME."""
        k = self._app.store.keys_of_job(self.id)
        i = self.id
        return [
            ("hget", (k.jobs, i)),
            ("hget", (k.errors, i)),
            ("hmget", (k.results, [i, i + "|v", i + "|e", i + "|w"])),
            ("time", ()),
        ]

    @staticmethod
    def _flatten(replies: list[Any]) -> tuple[list[Any], int]:
        record, error, (meta, value, blob, workers), (seconds, micros) = replies
        now = int(seconds) * 1000 + int(micros) // 1000
        return [record, error, meta, value, blob, workers], now

    # -- sync ------------------------------------------------------------------------------

    def info(self) -> JobInfo:
        """What is known of the job now."""
        commands = self._commands()

        def build(pipe: Any) -> None:
            for name, args in commands:
                getattr(pipe, name)(*args)

        # On the master of the job's slot (a cluster pipeline refuses TIME), re-sent if
        # a failover moved the slot.
        replies = self._app.store.on_node(build, transaction=True, key=commands[0][1][0])
        raw, now = self._flatten(replies)
        return build_info(self.id, raw, now, self._type)

    def status(self) -> JobStatus:
        return self.info().status

    def _keeps(self, job_type: str) -> bool | None:
        if not job_type:
            return None
        record = self._app.client.hget(self._app.store.keys_of_job(self.id).definitions, job_type)
        return _keeps(job_type, record)

    def result(self, timeout: float | timedelta | None = None) -> Any:
        """Waits until the job has finished (for ever when ``timeout`` is None) and
        returns its handler's return value. Raises JobFailedError for a failed job or
        an incident, JobDeletedError for a deleted one, ResultNotKeptError when its
        type keeps no results, JobResultTimeoutError when it has not finished in time."""
        limit = wait_s(timeout)
        deadline = None if limit is None else time.monotonic() + limit
        keeps: bool | None = None
        pause = POLL_MIN_S
        while True:
            info = self.info()
            if (keeps is None and not info.status.finished) or info.status is JobStatus.UNKNOWN:
                keeps = self._keeps(info.type)
            done, value = settle(info, keeps)
            if done:
                return value
            if deadline is not None and time.monotonic() >= deadline:
                raise JobResultTimeoutError(
                    f"job {self.id} ({info.type}) is still {info.status.value} after {limit} s"
                )
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            time.sleep(pause if left is None else min(pause, left))
            pause = min(POLL_MAX_S, pause * 1.5)

    # -- async -----------------------------------------------------------------------------

    async def ainfo(self) -> JobInfo:
        import redis.asyncio.cluster

        client = self._app.aclient
        commands = self._commands()
        if isinstance(client, redis.asyncio.cluster.RedisCluster):
            # A cluster transaction takes keyed commands only: TIME is asked of the
            # master of the job's slot on its own.
            node = client.get_node_from_key(commands[0][1][0])
            async with client.pipeline(transaction=True) as pipe:
                for name, args in commands[:-1]:
                    getattr(pipe, name)(*args)
                replies = await pipe.execute()
            replies.append(await client.execute_command("TIME", target_nodes=node))
        else:
            async with client.pipeline(transaction=True) as pipe:
                for name, args in commands:
                    getattr(pipe, name)(*args)
                replies = await pipe.execute()
        raw, now = self._flatten(replies)
        return build_info(self.id, raw, now, self._type)

    async def astatus(self) -> JobStatus:
        return (await self.ainfo()).status

    async def _akeeps(self, job_type: str) -> bool | None:
        if not job_type:
            return None
        record = await self._app.aclient.hget(
            self._app.store.keys_of_job(self.id).definitions, job_type
        )
        return _keeps(job_type, record)

    async def aresult(self, timeout: float | timedelta | None = None) -> Any:
        """``result()`` for asyncio: waits without blocking the event loop."""
        limit = wait_s(timeout)
        loop = asyncio.get_running_loop()
        deadline = None if limit is None else loop.time() + limit
        keeps: bool | None = None
        pause = POLL_MIN_S
        while True:
            info = await self.ainfo()
            if (keeps is None and not info.status.finished) or info.status is JobStatus.UNKNOWN:
                keeps = await self._akeeps(info.type)
            done, value = settle(info, keeps)
            if done:
                return value
            if deadline is not None and loop.time() >= deadline:
                raise JobResultTimeoutError(
                    f"job {self.id} ({info.type}) is still {info.status.value} after {limit} s"
                )
            left = None if deadline is None else max(0.0, deadline - loop.time())
            await asyncio.sleep(pause if left is None else min(pause, left))
            pause = min(POLL_MAX_S, pause * 1.5)


def _keeps(job_type: str, record: bytes | str | None) -> bool:
    if record is None:
        return False
    parsed = parse_definition(job_type, _text(record))
    return parsed is not None and bool(parsed.keep_result_ms)
