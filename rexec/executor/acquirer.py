"""The acquisition loop (SPEC §5): ask the backoff strategy how many jobs to request,
lock them in one script call, hand the batches to the slots or the event loop —
rejecting those that do not fit, to resubmit first next cycle — then wait, on the
wake-up channel when idle.

Any error is one cycle with ``exception=`` for the strategy (as Camunda's loop does),
so a sick Redis is not hammered; the loop itself never ends before the stop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from rexec import metrics as m
from rexec.acquisition import (
    EXECUTION_SATURATION_WAIT_MS,
    AcquisitionCycle,
    BackoffJobAcquisitionStrategy,
)
from rexec.errors import is_transient, safe_str
from rexec.executor.execution import Chain
from rexec.executor.runtime import Runtime
from rexec.executor.wakeups import Wakeups
from rexec.store import AcquiredJobs, AcquireOptions

log = logging.getLogger("rexec.worker")


class Acquirer:
    def __init__(
        self,
        rt: Runtime,
        dispatch: Callable[[Sequence[Chain]], None],
        on_saturation: Callable[[bool], None],
    ) -> None:
        self.rt = rt
        settings = rt.settings
        self.strategy = BackoffJobAcquisitionStrategy(**settings.strategy)  # type: ignore[arg-type]
        self.options = AcquireOptions(
            lock_ms=settings.lock_ms,
            priority_min=settings.priority_min,
            priority_max=settings.priority_max,
            types=rt.types,
        )
        self._dispatch = dispatch
        self._on_saturation = on_saturation
        self.wakeups = Wakeups(rt, rt.stopping)
        self.rejected: list[Chain] = []
        self._error_streak = 0

    def _fit(self, chains: Sequence[Chain]) -> list[Chain]:
        """Dispatches the chains that fit; returns the rest (still locked, held)."""
        fits = self.rt.capacity.take(len(chains))
        if fits:
            self._dispatch(chains[:fits])
        return list(chains[fits:])

    def run(self) -> None:
        rt = self.rt
        job_added = False
        while not rt.stopping.is_set():
            try:
                job_added = self._cycle(job_added)
            except Exception as exc:  # a bug of ours: log it, back off, go on
                log.exception("%s: acquisition loop error; going on", rt.id)
                self.strategy.reconfigure(AcquisitionCycle(0, 0, 0, 0, exception=exc))
                rt.stopping.wait(self.strategy.wait_time_ms() / 1000 or 0.1)

    def _cycle(self, job_added: bool) -> bool:
        rt = self.rt
        if self.rejected:
            # Saturated: hand the backlog over as room appears; acquire more only once
            # it is gone (its jobs stay locked meanwhile).
            self.rejected = self._fit(self.rejected)
            if self.rejected:
                self._on_saturation(True)
                rt.capacity.wait_for_room(1, EXECUTION_SATURATION_WAIT_MS / 1000)
                return job_added
            self._on_saturation(False)
        requested = self.strategy.num_jobs_to_acquire()
        # Acquire when there is room for a cycle's worth, not for every freed slot.
        rt.capacity.wait_for_room(max(1, requested), EXECUTION_SATURATION_WAIT_MS / 1000)
        if rt.stopping.is_set():
            return job_added
        started = time.monotonic()
        acquired = AcquiredJobs(batches=[])
        error: BaseException | None = None
        if requested > 0:
            try:
                local_ms = time.time() * 1000
                acquired = rt.store.acquire_jobs(rt.id, requested, options=self.options)
                rt.clock_offset_ms = int(acquired.now_ms - local_ms)
                rt.metrics.add(m.ACQUISITION_ATTEMPT)
                rt.redis.up()
                self._error_streak = 0
            except Exception as exc:
                error = exc
                self._acquire_failed(exc)
        chains = [Chain(batch) for batch in acquired.batches]
        if chains:
            rt.held.add(acquired.jobs)
            rt.metrics.add(m.ACQUIRED_SUCCESS, len(acquired.jobs))
        rt.metrics.add(m.ACQUIRED_FAILURE, acquired.failed_to_lock)
        if acquired.failed_to_lock:
            rt.metrics.add(m.ATTEMPT_CONFLICTED)
        rejected = self._fit(chains)
        rt.metrics.add(m.EXECUTION_REJECTED, len(rejected))
        self.rejected = rejected
        self.strategy.reconfigure(
            AcquisitionCycle(
                jobs_requested=requested,
                # n counts jobs (SPEC §2): an exclusive batch of k jobs fills k of them
                batches_acquired=len(acquired.jobs),
                failed_to_lock=acquired.failed_to_lock,
                batches_rejected=len(rejected),
                job_added=job_added,
                exception=error,
            )
        )
        wait_ms = self.strategy.wait_time_ms() - int((time.monotonic() - started) * 1000)
        if acquired.next_due_ms is not None:
            wait_ms = min(wait_ms, max(0, acquired.next_due_ms - acquired.now_ms))
        return self._wait(wait_ms, saturated=bool(rejected))

    def _acquire_failed(self, exc: BaseException) -> None:
        if is_transient(exc):
            self.rt.redis.down(exc)
            return
        self._error_streak += 1
        if self._error_streak == 1:
            log.error(
                "%s: acquisition refused: %s; backing off", self.rt.id, safe_str(exc),
                exc_info=True,
            )  # fmt: skip

    def _wait(self, wait_ms: int, *, saturated: bool) -> bool:
        """Sleeps up to ``wait_ms``; returns whether a wake-up (new job) arrived."""
        if wait_ms <= 0 or self.rt.stopping.is_set():
            return self.wakeups.drain()
        if saturated:
            self.rt.capacity.wait_for_room(1, wait_ms / 1000)
            return False
        return self.wakeups.wait(wait_ms / 1000)
