"""rexec: a distributed job executor for Python on Redis."""

from rexec.app import App, JobDefinition
from rexec.errors import (
    ConfigurationError,
    Fail,
    HandlerNotFoundError,
    InvalidJobTypeError,
    InvalidPriorityError,
    InvalidRetryCycleError,
    JobDeletedError,
    JobFailedError,
    JobNotFoundError,
    JobResultTimeoutError,
    JobTimeoutError,
    NotFoundError,
    OptimisticLockingError,
    PartialEnqueueError,
    PayloadError,
    PriorityRuleUnavailableError,
    ProcessInstanceNotFoundError,
    ResultNotKeptError,
    RexecError,
    ScriptError,
    UniqueKeyError,
    UnknownJobTypeError,
    ValidationError,
)
from rexec.handles import JobError, JobHandle, JobInfo, JobStatus
from rexec.job import Job, JobState
from rexec.jobtype import JobType
from rexec.retry import RetryCycle
from rexec.rules import FromVariable, from_variable
from rexec.store import AcquiredJobs, NewJob, Store

__all__ = [
    "AcquiredJobs",
    "App",
    "ConfigurationError",
    "Fail",
    "FromVariable",
    "HandlerNotFoundError",
    "InvalidJobTypeError",
    "InvalidPriorityError",
    "InvalidRetryCycleError",
    "Job",
    "JobDefinition",
    "JobDeletedError",
    "JobError",
    "JobFailedError",
    "JobHandle",
    "JobInfo",
    "JobNotFoundError",
    "JobResultTimeoutError",
    "JobState",
    "JobStatus",
    "JobTimeoutError",
    "JobType",
    "NewJob",
    "NotFoundError",
    "OptimisticLockingError",
    "PartialEnqueueError",
    "PayloadError",
    "PriorityRuleUnavailableError",
    "ProcessInstanceNotFoundError",
    "ResultNotKeptError",
    "RetryCycle",
    "RexecError",
    "ScriptError",
    "Store",
    "UniqueKeyError",
    "UnknownJobTypeError",
    "ValidationError",
    "from_variable",
]
__version__ = "0.1.0"
