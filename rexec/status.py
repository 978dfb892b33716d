"""Status codes the Lua scripts answer with, and the one place they become exceptions."""

from __future__ import annotations

from enum import IntEnum

import redis

from rexec.errors import (
    JobNotFoundError,
    OptimisticLockingError,
    ProcessInstanceNotFoundError,
    RexecError,
    ScriptError,
)


class Status(IntEnum):
    OK = 0
    NO_SUCH_JOB = 1
    LOCK_LOST = 2


def raise_for_status(status: int, job_id: str) -> None:
    """Raise the exception a per-job script status stands for (nothing for OK)."""
    if status == Status.OK:
        return
    if status == Status.NO_SUCH_JOB:
        raise JobNotFoundError(f"no job {job_id!r} (completed, deleted or never created)")
    if status == Status.LOCK_LOST:
        raise OptimisticLockingError(
            f"job {job_id!r} is no longer locked by this owner at this revision"
            " (its lock expired and it was taken over, or it was changed)"
        )
    raise ScriptError(f"unknown script status {status!r} for job {job_id!r}")


_SCRIPT_ERRORS: dict[str, type[RexecError]] = {
    "PI_NOT_FOUND": ProcessInstanceNotFoundError,
}


def translate_script_error(exc: redis.ResponseError) -> RexecError:
    """Turn a script's ``REXEC:<CODE> detail`` error reply into its exception."""
    message = str(exc)
    marker = message.find("REXEC:")
    if marker < 0:
        return ScriptError(f"Redis refused a rexec script: {message}")
    code, _, detail = message[marker + 6 :].partition(" ")
    error = _SCRIPT_ERRORS.get(code, ScriptError)
    if error is ProcessInstanceNotFoundError:
        return error(f"no process instance {detail.strip()!r}")
    return error(f"{code}: {detail}".strip())
