"""rexec: a distributed job executor for Python on Redis."""

from rexec.app import App, JobDefinition
from rexec.errors import (
    ConfigurationError,
    HandlerNotFoundError,
    InvalidJobTypeError,
    InvalidPriorityError,
    InvalidRetryCycleError,
    InvalidScheduleError,
    JobNotFoundError,
    JobTimeoutError,
    NotFoundError,
    OptimisticLockingError,
    PartialEnqueueError,
    PayloadError,
    PriorityRuleUnavailableError,
    ProcessInstanceNotFoundError,
    RexecError,
    ScriptError,
    UnknownJobTypeError,
    ValidationError,
)
from rexec.job import Job, JobState
from rexec.retry import RetryCycle
from rexec.rules import FromVariable, from_variable
from rexec.store import AcquiredJobs, NewJob, Store

__all__ = [
    "AcquiredJobs",
    "App",
    "ConfigurationError",
    "FromVariable",
    "HandlerNotFoundError",
    "InvalidJobTypeError",
    "InvalidPriorityError",
    "InvalidRetryCycleError",
    "InvalidScheduleError",
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
    "PriorityRuleUnavailableError",
    "ProcessInstanceNotFoundError",
    "RetryCycle",
    "RexecError",
    "ScriptError",
    "Store",
    "UnknownJobTypeError",
    "ValidationError",
    "from_variable",
]
__version__ = "0.1.0"
