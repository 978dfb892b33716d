"""Job types: what ``@app.job(...)`` returns.

A :class:`JobType` is still the plain function (call it in unit tests) and enqueues
jobs of its type, returning :class:`~rexec.handles.JobHandle` objects::

    @app.job("email", keep_result=60)
    def send(ctx, payload): ...

    handle = send.enqueue({"to": "ann"}, delay=timedelta(seconds=5), key="welcome-ann")
    handle.result(timeout=10)
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from rexec.codec import MAX_MS, check_ms
from rexec.errors import ValidationError
from rexec.handles import JobHandle

if TYPE_CHECKING:
    from rexec.app import App

P = ParamSpec("P")
R = TypeVar("R")


def delay_ms(delay: timedelta | int | None) -> int | None:
    """A delay (``timedelta`` or int milliseconds) in ms; None for none."""
    if delay is None:
        return None
    if isinstance(delay, timedelta):
        if delay < timedelta(0):
            raise ValidationError(f"delay must not be negative, got {delay}")
        return check_ms(int(delay / timedelta(milliseconds=1)), "delay")
    return check_ms(delay, "delay")


def due_ms(at: datetime | None) -> int | None:
    """A timezone-aware datetime in epoch ms; a naive one is refused (it would mean
    whatever the local clock's zone is on the machine that enqueues)."""
    if at is None:
        return None
    if not isinstance(at, datetime):
        raise ValidationError(f"at must be a datetime, got {type(at).__name__}")
    if at.tzinfo is None or at.tzinfo.utcoffset(at) is None:
        raise ValidationError(
            f"at must be timezone-aware (e.g. datetime.now(timezone.utc)), got naive {at}"
        )
    ms = int(at.timestamp() * 1000)
    if not 0 <= ms <= MAX_MS:
        raise ValidationError(f"at is out of range: {at}")
    return ms


def enqueue_spec(
    job_type: str,
    payload: Any,
    *,
    priority: int | None,
    delay: timedelta | int | None,
    at: datetime | None,
    process_instance_id: str | None,
    key: str | None,
) -> dict[str, Any]:
    """The ``App.enqueue_many`` spec of one job, checked."""
    if delay is not None and at is not None:
        raise ValidationError("give delay or at, not both")
    spec: dict[str, Any] = {"type": job_type, "payload": payload}
    if priority is not None:
        spec["priority"] = priority
    if delay is not None:
        spec["delay_ms"] = delay_ms(delay)
    if at is not None:
        spec["due_ms"] = due_ms(at)
    if process_instance_id is not None:
        spec["process_instance_id"] = process_instance_id
    if key is not None:
        spec["key"] = key
    return spec


class JobType(Generic[P, R]):
    """A registered handler: callable as the plain function, and a producer of its
    type's jobs."""

    def __init__(self, app: App, job_type: str, handler: Any) -> None:
        self.app = app
        self.type = job_type
        self.handler = handler
        functools.update_wrapper(self, handler)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = self.handler(*args, **kwargs)
        return result

    def __repr__(self) -> str:
        return f"<JobType {self.type!r} {getattr(self.handler, '__qualname__', self.handler)!r}>"

    def handle(self, job_id: str) -> JobHandle:
        """A handle on an existing job of this type."""
        return JobHandle(self.app, job_id, self.type)

    def enqueue(
        self,
        payload: Any = None,
        *,
        priority: int | None = None,
        delay: timedelta | int | None = None,
        at: datetime | None = None,
        process_instance_id: str | None = None,
        key: str | None = None,
    ) -> JobHandle:
        """Creates one job of this type. ``delay`` is a timedelta or int ms, ``at`` a
        timezone-aware datetime; ``key`` makes it unique: while a job with that key
        is queued, scheduled or running, this returns that job's handle instead of
        creating another (an incident frees its key)."""
        spec = enqueue_spec(
            self.type,
            payload,
            priority=priority,
            delay=delay,
            at=at,
            process_instance_id=process_instance_id,
            key=key,
        )
        return JobHandle(self.app, self.app.enqueue_many([spec])[0], self.type)

    def enqueue_many(self, payloads: Iterable[Any]) -> list[JobHandle]:
        """Creates one job per payload (checked before anything is written)."""
        specs = [{"type": self.type, "payload": payload} for payload in _listed(payloads)]
        return [JobHandle(self.app, i, self.type) for i in self.app.enqueue_many(specs)]

    async def aenqueue(
        self,
        payload: Any = None,
        *,
        priority: int | None = None,
        delay: timedelta | int | None = None,
        at: datetime | None = None,
        process_instance_id: str | None = None,
        key: str | None = None,
    ) -> JobHandle:
        """``enqueue`` for asyncio producers (redis.asyncio)."""
        spec = enqueue_spec(
            self.type,
            payload,
            priority=priority,
            delay=delay,
            at=at,
            process_instance_id=process_instance_id,
            key=key,
        )
        ids = await self.app.aenqueue_many([spec])
        return JobHandle(self.app, ids[0], self.type)

    async def aenqueue_many(self, payloads: Iterable[Any]) -> list[JobHandle]:
        specs = [{"type": self.type, "payload": payload} for payload in _listed(payloads)]
        return [JobHandle(self.app, i, self.type) for i in await self.app.aenqueue_many(specs)]


def _listed(payloads: Iterable[Any]) -> list[Any]:
    if isinstance(payloads, str | bytes | dict):
        raise ValidationError("enqueue_many takes an iterable of payloads, one per job")
    return list(payloads)
