"""Status codes the Lua scripts answer with, and the one place they become exceptions."""

from __future__ import annotations

from enum import IntEnum

import redis

from rexec.errors import (
    JobNotFoundError,
    OptimisticLockingError,
    PriorityRuleUnavailableError,
    ProcessInstanceNotFoundError,
    RexecError,
    ScriptError,
)


class Status(IntEnum):
    OK = 0
    NO_SUCH_JOB = 1
    LOCK_LOST = 2
    UNCHANGED = 3
    VARIABLES_CHANGED = 4
    PI_NOT_FOUND = 5
    RULE_UNAVAILABLE = 6


def raise_for_status(status: int, job_id: str, *, locked: bool = True) -> None:
    """Raise the exception a per-job script status stands for (nothing for OK).

    For operations on a locked job (``locked``), a job that is gone means the lock is
    lost too: the caller gets the OptimisticLockingError its commit protocol expects.
    """
    if status in (Status.OK, Status.UNCHANGED):
        return
    if status == Status.NO_SUCH_JOB and locked:
        raise OptimisticLockingError(
            f"job {job_id!r} no longer exists (deleted, or committed by another worker)"
        )
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
    "RULE_UNAVAILABLE": PriorityRuleUnavailableError,
}


def rule_unavailable_message(job_type: str) -> str:
    return (
        f"job type {job_type!r} has its priority rule in Python, in the app that deployed"
        " it: enqueue it from that app, or give an explicit priority"
    )


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
    if error is PriorityRuleUnavailableError:
        return error(rule_unavailable_message(detail.strip()))
    return error(f"{code}: {detail}".strip())
