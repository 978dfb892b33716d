"""The committer: writes finished executions to Redis in groups, and gives back jobs.

Slots and the event loop hand it lists of executions whose outcome is decided; it takes
everything queued (up to COMMIT_MAX) and completes the successes in one script call,
then records the failures. Whatever Redis answers, the thread goes on:

- Redis away or busy (connection errors, OOM, READONLY, LOADING, BUSY, ...): retried
  with backoff, the jobs still held (so still renewed);
- a refusal for a lost lock: counted and logged; the job belongs to someone else;
- any other refusal of a completion: the job is failed with that error (a retry is
  consumed), one job at a time so one bad job does not sink its group;
- a failure that cannot be recorded: logged, and the job let go; its lock expires and
  the cluster reclaims it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from rexec import metrics as m
from rexec.errors import (
    Fail,
    JobTimeoutError,
    OptimisticLockingError,
    ReplicationTimeoutError,
    is_transient,
    safe_str,
)
from rexec.executor.execution import COMPLETED, FAILED, Execution
from rexec.executor.runtime import Backoff, Runtime
from rexec.job import Job, JobState
from rexec.status import Status

log = logging.getLogger("rexec.worker")

COMMIT_MAX = 2000
# Each commit call has a fixed cost (packing its keys, the script call) that a group of
# a few jobs does not amortize. While jobs flow (the last group had COMMIT_BUSY or
# more), a group waits up to COMMIT_LINGER_S for more, until COMMIT_TARGET; a lone
# job is committed at once.
COMMIT_BUSY = 16
COMMIT_TARGET = 256
COMMIT_LINGER_S = 0.008
T = TypeVar("T")

_Item = tuple[str, Sequence[Execution] | Sequence[Job]] | None


class Committer:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self.run, name="rexec-committer", daemon=True)

    # -- the hand-off ------------------------------------------------------------------

    def submit(self, executions: Sequence[Execution]) -> None:
        if executions:
            self._queue.put(("commit", executions))

    def give_back(self, jobs: Sequence[Job]) -> None:
        """Unlocks jobs that will not run here (never started), unchanged."""
        if jobs:
            self._queue.put(("unlock", jobs))

    def close(self) -> None:
        self._queue.put(None)

    def commit_now(self, executions: Sequence[Execution], unlocks: Sequence[Job]) -> None:
        """Gives back ``unlocks`` and writes the outcomes of ``executions`` in the
        caller's thread, by the same rules as the loop (``App.run_until_empty``)."""
        self._unlock(list(unlocks))
        self._commit(list(executions))

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> None:
        done = False
        linger = False
        while not done:
            group: list[Execution] = []
            unlocks: list[Job] = []
            item = self._queue.get()
            until = time.monotonic() + COMMIT_LINGER_S if linger else 0.0
            while True:
                if item is None:
                    done = True
                elif item[0] == "commit":
                    group.extend(item[1])  # type: ignore[arg-type]
                else:
                    unlocks.extend(item[1])  # type: ignore[arg-type]
                if done or len(group) >= COMMIT_MAX:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    left = until - time.monotonic()
                    if left <= 0 or len(group) >= COMMIT_TARGET:
                        break
                    try:
                        item = self._queue.get(timeout=left)
                    except queue.Empty:
                        break
            linger = len(group) >= COMMIT_BUSY
            try:
                self._unlock(unlocks)
                self._commit(group)
            except BaseException:  # never reached by design; the loop must not end
                log.exception("%s: committer error; going on", self.rt.id)
                self.rt.held.drop([ex.job for ex in group])
                self.rt.held.drop(unlocks)

    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        """``call()``, retried while Redis is away (until the shutdown deadline);
        any other error is raised."""
        backoff = Backoff()
        while True:
            try:
                result = call()
                self.rt.redis.up()
                return result
            except Exception as exc:
                if not is_transient(exc) or self.rt.abort.is_set():
                    raise
                self.rt.redis.down(exc)
                self.rt.abort.wait(backoff.failed())

    def _unlock(self, jobs: list[Job]) -> None:
        if not jobs:
            return
        try:
            self._retrying("unlock", lambda: self.rt.store.unlock_many(jobs))
        except Exception as exc:
            log.warning(
                "%s: could not give back %d job(s) (%s); their locks will expire",
                self.rt.id,
                len(jobs),
                safe_str(exc),
            )
        self.rt.held.drop(jobs)

    def _commit(self, group: list[Execution]) -> None:
        if not group:
            return
        successes = [ex for ex in group if ex.outcome == COMPLETED]
        failures = [ex for ex in group if ex.outcome != COMPLETED]
        if successes:
            failures += self._complete(successes)
        for ex in failures:
            self._fail(ex)
        self.rt.held.drop([ex.job for ex in group])

    def _complete(self, executions: list[Execution]) -> list[Execution]:
        """Completes jobs; returns those whose completion was refused for another
        reason than a lost lock, now failures."""
        jobs = [ex.job for ex in executions]
        results = [ex.result_raw for ex in executions]
        started = [ex.started_ms for ex in executions]
        try:
            statuses = self._retrying(
                "complete", lambda: self.rt.store.complete_many(jobs, results, started)
            )
        except ReplicationTimeoutError as exc:
            # Made on the master, not yet on a replica: done as far as this worker can
            # tell (a master lost now brings the jobs back, locked, to run again).
            log.warning(
                "%s: completion of %d job(s) not confirmed by a replica: %s",
                self.rt.id,
                len(jobs),
                safe_str(exc),
            )
            statuses = [Status(int(s)) for s in exc.reply or [Status.OK] * len(jobs)]  # type: ignore[attr-defined]
        except Exception as exc:
            if len(executions) > 1:  # find the job it is about
                return [bad for ex in executions for bad in self._complete([ex])]
            log.warning(
                "%s: completing job %s was refused (%s); failing it",
                self.rt.id,
                jobs[0].id,
                safe_str(exc),
            )
            executions[0].outcome, executions[0].error = FAILED, exc
            return executions
        ok = 0
        for ex, status in zip(executions, statuses, strict=True):
            if status is Status.OK:
                ok += 1
            else:
                log.warning(
                    "%s: job %s (%s) finished but its lock was lost (taken over after it"
                    " expired); its completion was not recorded",
                    self.rt.id,
                    ex.job.id,
                    ex.job.type,
                )
        self.rt.metrics.add(m.SUCCESSFUL, ok)
        self.rt.metrics.add(m.COMMIT_REFUSED, len(statuses) - ok)
        return []

    def _fail(self, ex: Execution) -> None:
        job, error = ex.job, ex.error
        conflict = isinstance(error, OptimisticLockingError)
        if not conflict:
            self.rt.metrics.add(m.FAILED)
        definition = ex.definition
        reason: BaseException | str = error if error is not None else "NoneType: None"
        details = None if conflict or not ex.details else safe_str(ex.details)
        try:
            state = self._retrying(
                "fail",
                lambda: self.rt.store.fail(
                    job,
                    reason,
                    retry_cycle=definition.retry_cycle if definition else None,
                    details=details,
                    give_up=isinstance(error, Fail),
                    started_ms=ex.started_ms,
                ),
            )
        except ReplicationTimeoutError as exc:
            log.warning(
                "%s: the failure of job %s (%s) is recorded but not confirmed by a replica: %s",
                self.rt.id,
                job.id,
                job.type,
                safe_str(exc),
            )
            return
        except OptimisticLockingError:
            self.rt.metrics.add(m.COMMIT_REFUSED)
            log.warning(
                "%s: job %s (%s) failed but its lock was lost; not recorded",
                self.rt.id,
                job.id,
                job.type,
            )
            return
        except Exception as exc:
            log.error(
                "%s: could not record the failure of job %s (%s): %s; its lock will expire",
                self.rt.id,
                job.id,
                job.type,
                safe_str(exc),
                exc_info=not is_transient(exc),
            )
            return
        if conflict:
            log.info("%s: job %s (%s) conflicted; it runs again", self.rt.id, job.id, job.type)
            return
        summary = f"{type(error).__name__}: {safe_str(error)}".splitlines()[0][:500]
        if isinstance(error, JobTimeoutError):
            summary += " (timed out)"
        if state is JobState.INCIDENT:
            log.warning(
                "%s: job %s (%s) failed on its last retry and is now an incident: %s",
                self.rt.id,
                job.id,
                job.type,
                summary,
            )
        else:
            log.info(
                "%s: job %s (%s) failed, %d retr%s left: %s",
                self.rt.id,
                job.id,
                job.type,
                max(0, job.retries - 1),
                "y" if job.retries - 1 == 1 else "ies",
                summary,
            )
        if ex.details:
            log.debug("%s: job %s traceback:\n%s", self.rt.id, job.id, safe_str(ex.details))
