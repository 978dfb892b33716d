"""Slots: the threads that run chains of ``def`` handlers, each job inline.

A slot takes a chain from the buffer and runs its jobs on its own thread — no hand-off
per job — collecting finished executions and passing them to the committer in groups.
Up to ``concurrency`` slots exist, but only as many run as the handlers need (see
:mod:`~rexec.executor.pacing`): fast handlers are run by one or two threads per process
with little GIL contention, handlers that wait on I/O or run long by all of them.

A batch handler (``@app.job(type, batch=True)``) is called once for a plain job of its
type and the plain jobs of that type waiting at the front of the buffer, up to
BATCH_MAX; each job keeps its own execution, and whoever decides the first one (this
slot when the call returns, the housekeeper at its timeout) decides them all.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from rexec import metrics as m
from rexec.executor.execution import COMPLETED, Chain, Execution
from rexec.executor.pacing import Pacing, Slot
from rexec.executor.runtime import Backoff, Runtime
from rexec.job import Job

log = logging.getLogger("rexec.worker")

# Finished executions go to the committer in groups: each commit call has a fixed cost
# (in Python and in Redis) that a group of a few jobs does not amortize. A group waits
# at most FLUSH_AFTER_S, and never on a handler that could hang (see ``_execute``).
FLUSH_EVERY = 256  # executions per hand-off to the committer
FLUSH_AFTER_S = 0.010
RELEASE_EVERY = 16  # chains per capacity release
BATCH_MAX = 100  # jobs per call of a batch handler


class Slots:
    def __init__(
        self,
        rt: Runtime,
        submit: Callable[[Sequence[Execution]], None],
        give_back: Callable[[Sequence[Job]], None],
        to_event_loop: Callable[[Chain], None] | None,
    ) -> None:
        self.rt = rt
        self.concurrency = rt.settings.concurrency
        self._submit = submit
        self._give_back = give_back
        self._to_event_loop = to_event_loop
        self._chains: deque[Chain] = deque()
        self._cond = threading.Condition()
        self._slots: list[Slot] = []
        self._numbers = 0
        self.pacing = Pacing(self.concurrency)

    # -- the buffer -------------------------------------------------------------------------

    def start(self) -> None:
        for _ in range(self.concurrency):
            self._spawn()

    def _spawn(self) -> None:
        slot = Slot(self._numbers)
        self._numbers += 1
        slot.thread = threading.Thread(
            target=self._loop, args=(slot,), name=f"rexec-slot-{slot.number}", daemon=True
        )
        slot.thread.start()
        with self._cond:
            self._slots.append(slot)

    def submit(self, chains: Sequence[Chain]) -> None:
        self._chains.extend(chains)
        self.rebalance()

    def take_all(self) -> list[Chain]:
        """Empties the buffer (at shutdown)."""
        chains = []
        while True:
            try:
                chains.append(self._chains.popleft())
            except IndexError:
                return chains

    def wanted(self) -> int:
        return self.pacing.wanted(self._slots, self.concurrency)

    def rebalance(self) -> None:
        """Wakes waiting slots when the buffer has work and too few are running."""
        if not self._chains:
            return
        with self._cond:
            running = self.busy_locked()
            waiting = len(self._slots) - running
            wake = min(waiting, len(self._chains), self.wanted() - running)
            if wake > 0:
                self._cond.notify(wake)

    def has_work(self) -> bool:
        return bool(self._chains)

    def busy(self) -> int:
        with self._cond:
            return self.busy_locked()

    def busy_locked(self) -> int:
        return sum(1 for s in self._slots if not s.waiting)

    def slots(self) -> list[Slot]:
        with self._cond:
            return list(self._slots)

    def stop(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # -- timeouts (called by the housekeeper) ---------------------------------------------

    def abandon(self, slot: Slot, execution: Execution) -> list[Chain]:
        """After ``execution`` timed out: the slot thread is left to its handler and
        replaced; returns the rest of its chain, now the caller's."""
        slot.abandoned = True
        with self._cond:
            self._slots.remove(slot)
        self._spawn()
        rest = []
        if execution.chain is not None and execution.chain.jobs:
            rest = [Chain(list(execution.chain.jobs))]
            execution.chain.jobs.clear()
        return rest

    # -- one slot ---------------------------------------------------------------------------

    def _take(self, slot: Slot, done: list[Execution], releases: list[int]) -> Chain | None:
        if self.busy() <= self.wanted():
            try:
                return self._chains.popleft()
            except IndexError:
                pass
        self._flush(done, releases)
        with self._cond:
            slot.waiting = True
            try:
                while not self.rt.stopping.is_set():
                    # Rest while the buffer is empty, or while more slots run than the
                    # handlers need (this one is not counted while it waits).
                    if self._chains and self.busy_locked() < self.wanted():
                        try:
                            return self._chains.popleft()
                        except IndexError:
                            pass
                    self._cond.wait(0.5)
                return None
            finally:
                slot.waiting = False

    def _flush(self, done: list[Execution], releases: list[int]) -> None:
        if done:
            self._submit(done[:])
            done.clear()
        if releases[0]:
            self.rt.capacity.give(releases[0])
            releases[0] = 0

    def _loop(self, slot: Slot) -> None:
        done: list[Execution] = []
        releases = [0]
        backoff = Backoff()
        oldest = 0.0  # when the oldest execution in ``done`` finished
        while not slot.abandoned:
            try:
                chain = self._take(slot, done, releases)
                if chain is None:
                    self._flush(done, releases)
                    return
                if not done:
                    oldest = time.monotonic()
                if not self._run_chain(slot, chain, done, releases):
                    releases[0] += 1
                # Room is released in small groups when the buffer is small: freed room
                # must reach the acquirer before the other slots run dry.
                every = min(RELEASE_EVERY, self.rt.capacity.limit // (4 * self.concurrency))
                if releases[0] >= max(1, every):
                    self.rt.capacity.give(releases[0])
                    releases[0] = 0
                if done and (len(done) >= FLUSH_EVERY or time.monotonic() - oldest > FLUSH_AFTER_S):
                    self._submit(done[:])
                    done.clear()
                backoff.ok()
            except BaseException:
                log.exception("%s: slot %d error; going on", self.rt.id, slot.number)
                slot.current = None
                time.sleep(backoff.failed())
        self._flush(done, releases)

    def _run_chain(
        self, slot: Slot, chain: Chain, done: list[Execution], releases: list[int]
    ) -> bool:
        """Runs a chain's jobs in order; True if it was handed on (still held)."""
        rt = self.rt
        jobs = chain.jobs
        while jobs:
            if rt.stopping.is_set():
                rest = list(jobs)
                jobs.clear()
                self._give_back(rest)
                return False
            job = jobs[0]
            if job.type in rt.async_types and self._to_event_loop:
                self._to_event_loop(chain)  # the rest of the chain moves, whole
                return True
            jobs.popleft()
            definition = rt.definitions.get(job.type)
            if definition is not None and definition.batch:
                batch = [job]
                if not jobs and not _in_instance(job):
                    gathered = self._gather(job.type, BATCH_MAX - 1)
                    releases[0] += len(gathered)  # their chains end with this one
                    batch += gathered
                locked = self._run_batch(slot, chain, batch, done)
                if slot.abandoned:
                    return True  # the housekeeper owns the rest of the chain now
                jobs.extendleft(reversed(locked))
                continue
            if not rt.held.may_start(job):
                rt.metrics.add(m.LOCK_LOST_UNSTARTED)
                continue
            execution = rt.begin(job, chain)
            if execution.outcome is None:
                self._execute(slot, execution, done)
                if slot.abandoned:
                    return True  # the housekeeper owns the rest of the chain now
            follow_ups = rt.commit_effects(execution) if execution.outcome == COMPLETED else None
            if follow_ups is None:
                done.append(execution)
                if len(done) >= FLUSH_EVERY:  # a long chain
                    self._submit(done[:])
                    done.clear()
            else:
                jobs.extendleft(reversed(follow_ups))
        return False

    def _gather(self, job_type: str, room: int) -> list[Job]:
        """More plain jobs of ``job_type`` from the front of the buffer, for one batch
        handler call; stops at the first chain that is anything else."""
        jobs: list[Job] = []
        chains = self._chains
        while len(jobs) < room:
            try:
                chain = chains.popleft()
            except IndexError:
                break
            if len(chain.jobs) == 1:
                job = chain.jobs[0]
                if job.type == job_type and not _in_instance(job):
                    jobs.append(job)
                    continue
            chains.appendleft(chain)
            break
        return jobs

    def _run_batch(
        self, slot: Slot, chain: Chain, jobs: list[Job], done: list[Execution]
    ) -> list[Job]:
        """Runs jobs of one batch type in one handler call; returns the exclusive
        follow-ups locked for them (to run next in ``chain``, whose rest a timeout
        takes over)."""
        rt = self.rt
        startable = [job for job in jobs if rt.held.may_start(job)]
        rt.metrics.add(m.LOCK_LOST_UNSTARTED, len(jobs) - len(startable))
        runs, payloads, decided = rt.begin_batch(startable, chain)
        done += decided
        if not runs:
            return []
        lead = runs[0]
        lead.batch = runs[1:]
        if done and (lead.deadline is not None or self.pacing.wall_ema > FLUSH_AFTER_S):
            self._submit(done[:])
            done.clear()
        assert lead.definition is not None
        handler = lead.definition.handler
        result: object = None
        error: BaseException | None = None
        slot.current = lead
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            result = handler([ex.ctx for ex in runs], payloads)
        except BaseException as exc:  # SystemExit and friends end the jobs, not the slot
            error = exc
        cpu = time.thread_time() - cpu
        wall = time.perf_counter() - wall
        slot.current = None
        for _ in runs:
            rt.metrics.execution_time(wall * 1000)
        self.pacing.sample(slot, wall, cpu)
        outcomes = rt.batch_outcomes(runs, result, error)
        # Whoever decides the lead owns the whole call: this slot, or the timeout.
        if not rt.handler_ended(lead, *outcomes[0]):
            self._returned_late(slot, lead)
            return []
        follow_ups: list[Job] = []
        for execution, (item, item_error) in zip(runs, outcomes, strict=True):
            if execution is not lead:
                rt.handler_ended(execution, item, item_error)
            more = rt.commit_effects(execution) if execution.outcome == COMPLETED else None
            if more is None:
                done.append(execution)
            else:
                follow_ups += more
        return follow_ups

    def _execute(self, slot: Slot, execution: Execution, done: list[Execution]) -> None:
        rt = self.rt
        ok, payload = rt.payload_of(execution)
        if not ok:
            return
        if done and (execution.deadline is not None or self.pacing.wall_ema > FLUSH_AFTER_S):
            # Nothing finished may wait on a handler that could hang, nor on slow ones.
            self._submit(done[:])
            done.clear()
        assert execution.definition is not None and execution.ctx is not None
        handler = execution.definition.handler
        result: object = None
        error: BaseException | None = None
        slot.current = execution
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            result = handler(execution.ctx, payload)
        except BaseException as exc:  # SystemExit and friends end the job, not the slot
            error = exc
        cpu = time.thread_time() - cpu
        wall = time.perf_counter() - wall
        slot.current = None
        rt.metrics.execution_time(wall * 1000)
        self.pacing.sample(slot, wall, cpu)
        if not rt.handler_ended(execution, result, error):
            self._returned_late(slot, execution)

    def _returned_late(self, slot: Slot, execution: Execution) -> None:
        """The handler returned after its execution timed out: it owns nothing, but
        a timed-out exclusive job's failure waited for this moment."""
        slot.abandoned = True
        if self.rt.executions.returned(execution):
            self._submit([execution])


def _in_instance(job: Job) -> bool:
    """An exclusive job of a process instance: it runs in its instance's chain, alone."""
    return job.exclusive and job.process_instance_id is not None
