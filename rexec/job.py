"""The job model: what a job is, and how its Redis record turns into a ``Job``."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from rexec.codec import priority_from_key, unpack


class JobState(StrEnum):
    SCHEDULED = "scheduled"
    READY = "ready"
    LOCKED = "locked"
    SUSPENDED = "suspended"
    INCIDENT = "incident"


@dataclass(frozen=True, slots=True)
class Job:
    """A snapshot of one job as Redis held it when it was read."""

    id: str
    type: str
    priority: int
    due_ms: int
    retries: int
    exclusive: bool
    process_instance_id: str | None
    revision: int
    lock_owner: str | None
    lock_expires_ms: int | None
    suspended: bool
    state: JobState
    payload_raw: bytes | None = None
    exception: str | None = None

    @property
    def payload(self) -> Any:
        """The decoded payload (``None`` when there is none); raises PayloadError."""
        if self.payload_raw is None:
            return None
        return unpack(self.payload_raw)


# Field order of the record string ``jobs[id]`` (see docs/internals/redis-schema.md and
# lua/includes/decode_job.lua). Fields never contain "|": types, ids and owners are
# validated to exclude it.
RECORD_FIELDS = ("t", "p", "d", "r", "x", "pi", "v", "o", "e", "s")


def parse_record(
    job_id: str,
    record: bytes | str,
    now_ms: int,
    payload: bytes | None = None,
    exception: bytes | str | None = None,
) -> Job:
    text = record.decode() if isinstance(record, bytes) else record
    t, p, d, r, x, pi, v, o, e, s = text.split("|")
    due_ms = int(d)
    retries = int(r)
    suspended = s == "1"
    if o:
        state = JobState.LOCKED
    elif retries <= 0:
        state = JobState.INCIDENT
    elif suspended:
        state = JobState.SUSPENDED
    elif due_ms > now_ms:
        state = JobState.SCHEDULED
    else:
        state = JobState.READY
    if isinstance(exception, bytes):
        exception = exception.decode(errors="replace")
    return _build(
        (
            job_id,
            t,
            priority_from_key(p),
            due_ms,
            retries,
            x == "1",
            pi or None,
            int(v),
            o or None,
            int(e) if e else None,
            suspended,
            state,
            payload,
            exception,
        )
    )


# Workers build a Job per acquired job, tens of thousands a second: filling the slots
# through their descriptors costs a third of the frozen dataclass's generated __init__.
_SLOT_SETTERS = tuple(getattr(Job, name).__set__ for name in Job.__dataclass_fields__)
_new_job = object.__new__


def _build(values: tuple[object, ...]) -> Job:
    job: Job = _new_job(Job)
    for set_slot, value in zip(_SLOT_SETTERS, values, strict=True):
        set_slot(job, value)
    return job
