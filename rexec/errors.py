"""The rexec exception tree: catch ``RexecError`` for everything rexec raises."""

from __future__ import annotations

from typing import TYPE_CHECKING

import redis.exceptions

if TYPE_CHECKING:
    from rexec.handles import JobError, JobInfo


class RexecError(Exception):
    """Root of every error rexec raises on purpose."""


class ValidationError(RexecError, ValueError):
    """Bad input, rejected before anything was written."""


class InvalidPriorityError(ValidationError):
    """A priority that is not an integer in the signed 64-bit range."""


class InvalidRetryCycleError(ValidationError):
    """A retry cycle that is not ``R<n>/<duration>`` or a list of durations."""


class InvalidJobTypeError(ValidationError):
    """A job type name rexec cannot store."""


class InvalidScheduleError(ValidationError):
    """A cron expression, timezone, schedule name or time a periodic job cannot use."""


class PayloadError(ValidationError):
    """A payload or variables that msgpack cannot encode or decode."""


class NotFoundError(RexecError, LookupError):
    """Something named by id does not exist (any more)."""


class JobNotFoundError(NotFoundError):
    """No job with that id: it never existed, was completed or deleted."""


class ProcessInstanceNotFoundError(NotFoundError):
    """No process instance with that id."""


class PartialEnqueueError(RexecError):
    """An enqueue of several chunks wrote some of them and not the others (a process
    instance ended meanwhile, Redis refused a chunk): ``ids`` are the ids of the jobs that
    were written, in the order the jobs were given; ``missing`` the positions (in that
    list of jobs) of those that were not; ``cause`` why."""

    def __init__(
        self, message: str, *, ids: list[str], missing: list[int], cause: BaseException
    ) -> None:
        super().__init__(message)
        self.ids = ids
        self.missing = missing
        self.cause = cause


class OptimisticLockingError(RexecError):
    """The job is no longer locked by this owner at this revision (or a process
    instance changed under it): the change was not applied."""


class UnknownJobTypeError(NotFoundError):
    """An operator action names a job type that was never deployed and has no jobs
    (pass ``force=True`` to create its definition ahead of the deploy)."""


class PriorityRuleUnavailableError(RexecError):
    """The job type's stored priority rule is a Python function this producer does not
    have (it is not the app that deployed the type), so no priority can be given."""


class HandlerNotFoundError(RexecError):
    """A worker acquired a job whose type has no handler registered in its app."""


class JobTimeoutError(RexecError):
    """A handler ran past its job type's ``timeout_ms``."""


class ScriptError(RexecError):
    """A Lua script answered something rexec does not understand."""


class ConfigurationError(RexecError):
    """rexec was set up wrongly (bad URL, missing Redis, bad app path)."""


class RedisUnavailableError(RexecError, redis.exceptions.ConnectionError):
    """No node of the Redis named by the URL answers (a cluster without a reachable
    seed node); a connection error, so whoever retries those retries this too."""


class ReplicationTimeoutError(RexecError):
    """``durability="replicated"``: the write was made on the master, but no replica
    confirmed it within the timeout, so it may be lost if that master fails now."""

    def __init__(self, message: str, *, reply: object = None) -> None:
        super().__init__(message)
        self.reply = reply  # what the write answered on the master


class HandlerError(RexecError):
    """A handler misbehaved in a way that is not an exception of its own: it returned
    an awaitable from a plain function, or a value msgpack cannot encode."""


# Reply prefixes Redis uses for conditions that pass: memory pressure, a failover in
# progress, a server still loading its data set, a script or module busy.
TRANSIENT_REPLIES = ("OOM", "READONLY", "LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN")


def reply_text(exc: BaseException) -> str:
    """The Redis reply behind ``exc`` (a ScriptError keeps the ResponseError it came
    from as its cause), else the exception's own text."""
    seen: BaseException | None = exc
    while seen is not None:
        if type(seen).__module__.startswith("redis"):
            code = getattr(seen, "status_code", None)
            return f"{code} {safe_str(seen)}" if code else safe_str(seen)
        seen = seen.__cause__
    return safe_str(exc)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` says Redis is away or busy for now (retry later), rather than
    that it refused the request itself (retrying would fail the same way)."""
    import redis.exceptions as rx

    transient = tuple(
        getattr(rx, name)
        for name in (
            "ConnectionError",
            "TimeoutError",
            "BusyLoadingError",
            "OutOfMemoryError",
            "ReadOnlyError",
            "TryAgainError",
            "MasterDownError",
            "ClusterDownError",
            "SlotNotCoveredError",
        )
        if hasattr(rx, name)
    )
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (*transient, ConnectionError, TimeoutError)):
            return True
        if isinstance(seen, rx.ResponseError):
            code = getattr(seen, "status_code", None) or safe_str(seen).split(" ", 1)[0]
            return str(code).lstrip("-") in TRANSIENT_REPLIES
        seen = seen.__cause__
    return False


def safe_str(value: object) -> str:
    """``str(value)`` that never raises and is always valid UTF-8 (lone surrogates
    and the like replaced), so it can be stored and logged."""
    try:
        text = str(value)
    except BaseException:  # a __str__ that raises is still an error to report
        try:
            text = f"<unprintable {type(value).__name__}>"
        except BaseException:
            text = "<unprintable>"
    return text.encode("utf-8", "replace").decode("utf-8")


class Fail(Exception):
    """Raised by a handler: the job fails at once and becomes an incident, whatever
    retries it has left (nothing is retried until an operator resolves it)."""


class JobFailedError(RexecError):
    """A job ended with an error (failed) or waits for an operator (incident):
    ``info`` is what is known of it, ``error`` its last error (class path, message
    and traceback), if kept."""

    def __init__(self, message: str, info: JobInfo) -> None:
        super().__init__(message)
        self.info = info
        self.error: JobError | None = info.errors[-1] if info.errors else None


class JobDeletedError(RexecError):
    """A job was deleted (by an operator) before it finished: it has no result."""

    def __init__(self, message: str, info: JobInfo) -> None:
        super().__init__(message)
        self.info = info


class JobResultTimeoutError(RexecError, TimeoutError):
    """A job did not finish within the time ``result()`` was given to wait."""


class ResultNotKeptError(RexecError):
    """A job's type keeps no results (no ``keep_result`` in its stored definition), or
    its result has expired: there is nothing to wait for or read."""


class UniqueKeyError(ValidationError):
    """A unique key that cannot be stored (empty, not text, too long)."""
