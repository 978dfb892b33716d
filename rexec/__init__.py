"""rexec: a distributed job executor for Python on Redis."""

from rexec.app import App, JobDefinition
from rexec.errors import (
    ConfigurationError,
    HandlerNotFoundError,
    InvalidJobTypeError,
    InvalidPriorityError,
    InvalidRetryCycleError,
    JobNotFoundError,
    JobTimeoutError,
    NotFoundError,
    OptimisticLockingError,
    PartialEnqueueError,
    PayloadError,
    ProcessInstanceNotFoundError,
    RexecError,
    ScriptError,
    ValidationError,
)
from rexec.job import Job, JobState
from rexec.retry import RetryCycle
from rexec.store import AcquiredJobs, NewJob, Store

__all__ = [
    "AcquiredJobs",
    "App",
    "ConfigurationError",
    "HandlerNotFoundError",
    "InvalidJobTypeError",
    "InvalidPriorityError",
    "InvalidRetryCycleError",
    "Job",
    "JobDefinition",
    "JobNotFoundError",
    "JobState",
    "JobTimeoutError",
    "NewJob",
    "NotFoundError",
    "OptimisticLockingError",
    "PartialEnqueueError",
    "PayloadError",
    "ProcessInstanceNotFoundError",
    "RetryCycle",
    "RexecError",
    "ScriptError",
    "Store",
    "ValidationError",
]
__version__ = "0.1.0"
