"""Executions and the jobs a worker process holds.

An :class:`Execution` is one run of one job. It has exactly one owner at a time (the
slot or event loop running it, then the committer), and its outcome is decided once:
the first :meth:`Executions.decide` wins, any later one — a handler returning after its
timeout already failed it — is a no-op that changes and frees nothing.

:class:`Held` is the set of jobs locked by this process and not yet given up: waiting
in the buffer, running, or finished with an outcome that waits for its commit. It is
the only thing lock renewal reads, so a job nobody runs any more is never renewed and
the cluster reclaims it when its lock expires.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rexec.job import Job

if TYPE_CHECKING:
    from rexec.app import JobDefinition
    from rexec.context import JobContext

COMPLETED = "completed"
FAILED = "failed"
TIMED_OUT = "timed-out"


class Chain:
    """One acquired batch: a plain job, or the exclusive jobs of one process instance
    (plus the follow-ups locked for it on the way), run in order by one owner at a
    time. Ownership moves whole: a slot that meets an ``async def`` job hands the rest
    of the chain to the event loop, and back."""

    __slots__ = ("jobs",)

    def __init__(self, jobs: Iterable[Job]) -> None:
        self.jobs: deque[Job] = deque(jobs)


class Execution:
    """One run of one job: what it runs, until when, and how it ended."""

    __slots__ = (
        "chain",
        "ctx",
        "deadline",
        "definition",
        "details",
        "error",
        "job",
        "outcome",
        "result_raw",
        "started",
        "started_ms",
        "token",
        "waits_for_handler",
    )

    def __init__(
        self, job: Job, definition: JobDefinition | None, token: int, chain: Chain | None
    ) -> None:
        self.job = job
        self.definition = definition
        self.token = token
        self.chain = chain
        self.started = time.monotonic()
        self.started_ms: int | None = None  # Redis time, as the process knows it
        self.result_raw = b""  # the handler's return value as msgpack (b"": None)
        timeout = definition.timeout_ms if definition is not None else None
        self.deadline = self.started + timeout / 1000 if timeout else None
        self.ctx: JobContext | None = None
        self.outcome: str | None = None
        self.error: BaseException | None = None
        self.details: str | None = None
        # A timed-out exclusive job: its failure is committed (and its instance
        # released) only once its abandoned handler has returned.
        self.waits_for_handler = False

    @property
    def exclusive(self) -> bool:
        return self.job.exclusive and self.job.process_instance_id is not None

    def __repr__(self) -> str:
        return f"<Execution #{self.token} job {self.job.id} ({self.job.type}) {self.outcome}>"


class Executions:
    """Creates executions and decides their outcomes, each exactly once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens = itertools.count(1)
        self._abandoned: dict[int, Execution] = {}

    def new(self, job: Job, definition: JobDefinition | None, chain: Chain | None) -> Execution:
        return Execution(job, definition, next(self._tokens), chain)

    def decide(
        self,
        execution: Execution,
        outcome: str,
        error: BaseException | None = None,
        details: str | None = None,
    ) -> bool:
        """Sets the outcome if none is set yet; False if another party decided first."""
        with self._lock:
            if execution.outcome is not None:
                return False
            execution.outcome = outcome
            execution.error = error
            execution.details = details
            return True

    def time_out(self, execution: Execution, error: BaseException) -> bool:
        """Fails ``execution`` for running too long, unless it was decided already.
        An exclusive job's failure then waits for its handler (see ``returned``)."""
        with self._lock:
            if execution.outcome is not None:
                return False
            execution.outcome, execution.error = TIMED_OUT, error
            execution.waits_for_handler = execution.exclusive
            self._abandoned[execution.token] = execution
            return True

    def returned(self, execution: Execution) -> bool:
        """The abandoned handler of ``execution`` has returned at last; True if its
        failure waited for this and is the caller's to commit now."""
        with self._lock:
            self._abandoned.pop(execution.token, None)
            waited = execution.waits_for_handler
            execution.waits_for_handler = False
            return waited

    def release_all(self) -> list[Execution]:
        """At shutdown: the failures still waiting for a handler, to commit now (the
        process, and the handler with it, is going away)."""
        with self._lock:
            waiting = [ex for ex in self._abandoned.values() if ex.waits_for_handler]
            for ex in waiting:
                ex.waits_for_handler = False
            return waiting

    def abandoned(self) -> list[Execution]:
        """Timed-out executions whose handler has not returned yet."""
        with self._lock:
            return list(self._abandoned.values())


class Held:
    """Jobs locked by this process and not given up yet, keyed by id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._lost: set[str] = set()

    def add(self, jobs: Iterable[Job]) -> None:
        with self._lock:
            for job in jobs:
                self._jobs[job.id] = job

    def drop(self, jobs: Iterable[Job]) -> None:
        with self._lock:
            for job in jobs:
                self._jobs.pop(job.id, None)
                self._lost.discard(job.id)

    def lose(self, job_ids: Iterable[str]) -> None:
        """Renewal was refused: another worker owns these now. Not renewed any more;
        one that has not started will not."""
        with self._lock:
            for job_id in job_ids:
                if self._jobs.pop(job_id, None) is not None:
                    self._lost.add(job_id)

    def may_start(self, job: Job) -> bool:
        """False (and forgets it) for a job whose lock was lost before it started."""
        with self._lock:
            if job.id in self._lost:
                self._lost.discard(job.id)
                return False
            return True

    def snapshot(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)

    def ids(self) -> set[str]:
        with self._lock:
            return set(self._jobs)


def describe(value: Any) -> str:
    """A short description of a value a handler returned, for its failure."""
    kind = type(value).__name__
    return f"a coroutine or awaitable ({kind})" if hasattr(value, "__await__") else f"a {kind}"
