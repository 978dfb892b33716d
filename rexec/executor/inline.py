"""Running due jobs in the calling process, for users' test suites (``App.run_until_empty``).

The jobs go through the real store with the scripts a worker uses: one acquisition
locks them (only the types the app has handlers for), the handler runs in the caller's
thread (an ``async def`` one on an event loop of this call), and the outcome is written
by the worker's own rules (:class:`~rexec.executor.runtime.Runtime` decides it, the
:class:`~rexec.executor.committer.Committer` records it): a completion with its effects,
a failure with its retry cycle, an incident when the retries run out. Follow-ups, forks
and joins that the jobs create are run in turn when they are due.

Without a timeout it runs what is due now and what that makes due now, and returns
when an acquisition finds nothing: it never sleeps, so a retry cycle with a wait, a
``delay_ms`` or a ``due_ms`` in the future leaves its job scheduled. With a timeout it
also waits for jobs of its types that fall due before the deadline, and it stops
acquiring once the deadline has passed (jobs it has locked are run first, never left
locked).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Coroutine
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from rexec.errors import JobTimeoutError, ValidationError, safe_str
from rexec.executor.committer import Committer
from rexec.executor.execution import COMPLETED, Chain, Execution
from rexec.executor.runtime import Runtime
from rexec.job import Job
from rexec.settings import WorkerSettings
from rexec.status import Status
from rexec.store import AcquireOptions

if TYPE_CHECKING:
    from rexec.app import App

log = logging.getLogger("rexec.worker")

ACQUIRE_JOBS = 16  # jobs asked for per acquisition
POLL_MIN_S = 0.01  # shortest wait for a job falling due (no hot loop on a late promotion)
SCAN_SCHEDULED = 1000  # scheduled jobs looked at for the next one of this app's types


def seconds_of(timeout: float | timedelta | None) -> float | None:
    """``timeout`` as seconds (None: no timeout); a clear error for anything else."""
    if timeout is None:
        return None
    if isinstance(timeout, timedelta):
        timeout = timeout.total_seconds()
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
        raise ValidationError(f"timeout must be seconds >= 0 or a timedelta, got {timeout!r}")
    return float(timeout)


class Renewal:
    """Renews the locks of the jobs a call holds, so a handler that runs longer than
    the lock time keeps its job (as a worker's housekeeper does)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="rexec-inline-renewal", daemon=True)

    def run(self) -> None:
        rt = self.rt
        lock_ms = rt.settings.lock_ms
        while not self._stop.wait(lock_ms / 3000):
            try:
                jobs = rt.held.snapshot()
                if jobs:
                    _, statuses = rt.store.extend_locks(jobs, lock_ms)
                    rt.held.lose(
                        [j.id for j, st in zip(jobs, statuses, strict=True) if st is not Status.OK]
                    )
            except Exception as exc:  # the next round tries again; the lock may expire
                log.warning("%s: could not renew locks: %s", rt.id, safe_str(exc))

    def __enter__(self) -> Renewal:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join()


class InlineRunner:
    """One ``run_until_empty`` call: a worker of one slot, in the caller's thread."""

    def __init__(self, app: App, timeout_s: float | None, *, lock_ms: int = 30_000) -> None:
        settings = WorkerSettings(
            app_path=app.app_path or "<in-process>:run_until_empty",
            node_id=f"inline-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}",
            processes=1,
            concurrency=1,
            lock_ms=lock_ms,
        )
        self.rt = Runtime(app, settings, 0, None)
        self.committer = Committer(self.rt)
        self.options = AcquireOptions(lock_ms=settings.lock_ms, types=self.rt.types)
        self.deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self.ran = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> int:
        # As a worker node does at start: the stored definitions (retry cycle, results
        # kept, ...) are the ones the scripts apply.
        self.rt.app.deploy()
        with Renewal(self.rt):
            return self._run()

    def _run(self) -> int:
        try:
            while True:
                acquired = self.rt.store.acquire_jobs(
                    self.rt.id, ACQUIRE_JOBS, options=self.options
                )
                if acquired.batches:
                    chains = deque(Chain(batch) for batch in acquired.batches)
                    self.rt.held.add(acquired.jobs)
                    self._run_chains(chains)
                    if self._past_deadline():
                        return self.ran
                    continue
                wait_s = self._wait_for_next(acquired.now_ms)
                if wait_s is None:
                    return self.ran
                time.sleep(wait_s)
        finally:
            if self._loop is not None:
                self._loop.close()

    def _past_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _wait_for_next(self, now_ms: int) -> float | None:
        """How long to sleep for the next job of this app's types that falls due before
        the deadline; None when there is none (or no deadline)."""
        if self.deadline is None:
            return None
        left_s = self.deadline - time.monotonic()
        if left_s <= 0:
            return None
        due = self.rt.store.next_due_ms(self.rt.types, now_ms + int(left_s * 1000), SCAN_SCHEDULED)
        if due is None:
            return None
        return min(left_s, max(POLL_MIN_S, (due - now_ms) / 1000))

    def _run_chains(self, chains: deque[Chain]) -> None:
        """Runs every acquired chain; whatever escapes (a KeyboardInterrupt), the jobs
        not run yet are given back unlocked."""
        try:
            while chains:
                chain = chains[0]
                while chain.jobs:
                    self._run_job(chain, chain.jobs.popleft())
                chains.popleft()
        except BaseException:
            rest = [job for chain in chains for job in chain.jobs]
            if rest:
                self.committer.commit_now([], rest)
            raise

    def _run_job(self, chain: Chain, job: Job) -> None:
        rt = self.rt
        if not rt.held.may_start(job):  # its lock was lost meanwhile: another worker's now
            return
        execution = rt.begin(job, chain)
        self.ran += 1
        if execution.outcome is None:
            try:
                self._execute(execution)
            except BaseException:
                self.committer.commit_now([], [job])
                raise
        follow_ups = rt.commit_effects(execution) if execution.outcome == COMPLETED else None
        if follow_ups is None:
            self.committer.commit_now([execution], [])
        else:
            chain.jobs.extendleft(reversed(follow_ups))

    # -- one handler ------------------------------------------------------------------------

    def _execute(self, execution: Execution) -> None:
        rt = self.rt
        ok, payload = rt.payload_of(execution)
        if not ok:
            return
        definition, ctx = execution.definition, execution.ctx
        assert definition is not None and ctx is not None
        result: object = None
        error: BaseException | None = None
        try:
            if definition.is_async:
                result = self._await(execution, definition.handler(ctx, payload))
            else:
                result = definition.handler(ctx, payload)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # SystemExit and friends end the job, as in a worker
            error = exc
        rt.handler_ended(execution, result, error)

    def _await(self, execution: Execution, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Awaits an ``async def`` handler, within its type's timeout (a ``def`` handler
        here runs to its end: the caller's thread cannot be abandoned)."""
        job, timeout_ms = execution.job, execution.definition and execution.definition.timeout_ms

        async def bounded() -> Any:
            try:
                async with asyncio.timeout(timeout_ms / 1000 if timeout_ms else None):
                    return await coroutine
            except TimeoutError as exc:
                raise JobTimeoutError(
                    f"job {job.id} ({job.type}) ran past its timeout of {timeout_ms} ms"
                ) from exc

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
            return self._loop.run_until_complete(bounded())
        # Called from async code (an async test): its loop is busy running us, so the
        # handler gets a loop of its own in a helper thread.
        outcome: list[Any] = []

        def run() -> None:
            try:
                outcome.append((True, asyncio.run(bounded())))
            except BaseException as exc:
                outcome.append((False, exc))

        helper = threading.Thread(target=run, name="rexec-inline-async")
        helper.start()
        helper.join()
        ok, value = outcome[0]
        if not ok:
            raise value
        return value


def run_until_empty(app: App, timeout: float | timedelta | None = None) -> int:
    """See :meth:`rexec.App.run_until_empty`."""
    timeout_s = seconds_of(timeout)
    if not app.definitions:
        return 0
    return InlineRunner(app, timeout_s).run()
