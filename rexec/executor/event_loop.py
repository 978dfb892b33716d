"""The event loop: runs chains of ``async def`` handlers, many at a time.

A coroutine costs little while it waits, so a process runs up to
``max(concurrency, ASYNC_MIN_INFLIGHT)`` async chains at once, each on one of as many
long-lived runner coroutines (no task per job).

The acquirer hands it a whole acquisition's chains in one call; it runs each job of a
chain in order, and passes finished executions to the committer every few
milliseconds. It never waits on Redis itself: a commit with effects runs in a helper
thread, plain outcomes go to the committer. A chain that meets a ``def`` handler is
handed, whole, to the slots. If ``run_forever`` is ever broken out of (a callback that
raised ``SystemExit``), the loop is logged and started again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from rexec.errors import JobTimeoutError
from rexec.executor.execution import COMPLETED, Chain, Execution
from rexec.executor.runtime import Backoff, Runtime
from rexec.job import Job

log = logging.getLogger("rexec.worker")

BATCH_MAX = 100  # jobs per call of a batch handler, as on the slots
FLUSH_AFTER_S = 0.010  # finished executions per commit group: see slots.FLUSH_AFTER_S
ASYNC_MIN_INFLIGHT = 64


class EventLoop:
    def __init__(
        self,
        rt: Runtime,
        submit: Callable[[Sequence[Execution]], None],
        give_back: Callable[[Sequence[Job]], None],
        to_slots: Callable[[Sequence[Chain]], None],
    ) -> None:
        self.rt = rt
        self.loop = asyncio.new_event_loop()
        self._submit = submit
        self._give_back = give_back
        self._to_slots = to_slots
        self._waiting: deque[Chain] = deque()  # owned by the loop thread
        self._running = 0
        self._work = asyncio.Event()
        self._runners: list[asyncio.Task[None]] = []
        self.inflight = max(rt.settings.concurrency, ASYNC_MIN_INFLIGHT)
        self._done: list[Execution] = []
        self._flush_scheduled = False
        self.current: set[Execution] = set()  # read by the housekeeper (timeouts)
        self.beat = time.monotonic()
        self.thread = threading.Thread(target=self.run, name="rexec-event-loop", daemon=True)
        self._closed = False

    # -- from other threads ---------------------------------------------------------------

    def submit(self, chains: Sequence[Chain]) -> None:
        if chains:
            self.loop.call_soon_threadsafe(self._accept, list(chains))

    def submit_one(self, chain: Chain) -> None:
        self.loop.call_soon_threadsafe(self._accept, [chain])

    def take_all(self) -> list[Chain]:
        """At shutdown: the chains not started yet (thread-safe via the loop)."""
        if not self.thread.is_alive():
            return []
        future = asyncio.run_coroutine_threadsafe(self._take_all(), self.loop)
        try:
            return future.result(5.0)
        except Exception:
            return []

    def busy(self) -> int:
        return self._running

    def close(self) -> None:
        """Cancels the runners and stops the loop (their tasks end cleanly)."""
        self._closed = True
        try:
            self.loop.call_soon_threadsafe(self._cancel_runners)
        except RuntimeError:  # the loop is closed already
            return
        self.thread.join(2.0)

    def _cancel_runners(self) -> None:
        for runner in self._runners:
            runner.cancel()

        async def stop_when_done() -> None:
            await asyncio.gather(*self._runners, return_exceptions=True)
            self.loop.stop()

        self.loop.create_task(stop_when_done())

    # -- the loop thread ---------------------------------------------------------------------

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._heartbeat)
        self.loop.call_soon(self._start_runners)
        backoff = Backoff()
        while not self._closed:
            try:
                self.loop.run_forever()
            except BaseException:
                log.exception("%s: the event loop was broken out of; restarting it", self.rt.id)
                time.sleep(backoff.failed())

    def _heartbeat(self) -> None:
        self.beat = time.monotonic()
        self.loop.call_later(0.1, self._heartbeat)

    async def _take_all(self) -> list[Chain]:
        chains = list(self._waiting)
        self._waiting.clear()
        return chains

    def _accept(self, chains: list[Chain]) -> None:
        self._waiting.extend(chains)
        self._work.set()

    def _start_runners(self) -> None:
        self._runners = [self.loop.create_task(self._runner()) for _ in range(self.inflight)]

    async def _runner(self) -> None:
        while True:
            try:
                while not self._waiting:
                    self._work.clear()
                    await self._work.wait()
                chain = self._waiting.popleft()
                self._running += 1
                try:
                    await self._run_chain(chain)
                finally:
                    self._running -= 1
            except Exception:
                log.exception("%s: event loop runner error; going on", self.rt.id)
                await asyncio.sleep(0.1)

    def _finished(self, execution: Execution) -> None:
        self._done.append(execution)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_later(FLUSH_AFTER_S, self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        done, self._done = self._done, []
        self._submit(done)

    async def _run_chain(self, chain: Chain) -> None:
        handed_on = False
        try:
            handed_on = await self._run_jobs(chain)
        except BaseException:
            log.exception("%s: error running a chain on the event loop", self.rt.id)
            self._give_back(list(chain.jobs))
            chain.jobs.clear()
        finally:
            if not handed_on:
                self.rt.capacity.give(1)

    async def _run_jobs(self, chain: Chain) -> bool:
        rt = self.rt
        jobs = chain.jobs
        while jobs:
            if rt.stopping.is_set():
                rest = list(jobs)
                jobs.clear()
                self._give_back(rest)
                return False
            job = jobs[0]
            if job.type not in rt.async_types:
                self._to_slots([chain])
                return True
            jobs.popleft()
            definition = rt.definitions.get(job.type)
            if definition is not None and definition.batch:
                batch = [job]
                if not jobs and not (job.exclusive and job.process_instance_id is not None):
                    gathered = self._gather(job.type, BATCH_MAX - 1)
                    rt.capacity.give(len(gathered))  # their chains end with this one
                    batch += gathered
                locked = await self._run_batch(chain, batch)
                if locked is None:
                    return True  # timed out and abandoned: the housekeeper has the rest
                jobs.extendleft(reversed(locked))
                continue
            if not rt.held.may_start(job):
                continue
            execution = rt.begin(job, chain)
            if execution.outcome is None and not await self._execute(execution):
                return True  # timed out and abandoned: the housekeeper has the rest
            follow_ups = None
            ctx = execution.ctx
            if execution.outcome == COMPLETED and ctx is not None and ctx.asked_for_more:
                # The commit waits on Redis: in a helper thread, never on the loop.
                follow_ups = await asyncio.to_thread(rt.commit_effects, execution)
            if follow_ups is None:
                self._finished(execution)
            else:
                jobs.extendleft(reversed(follow_ups))
        return False

    def _gather(self, job_type: str, room: int) -> list[Job]:
        """More plain jobs of ``job_type`` from the front of the waiting chains (the
        loop's own deque), for one batch handler call."""
        jobs: list[Job] = []
        waiting = self._waiting
        while len(jobs) < room and waiting:
            first = waiting[0].jobs
            if len(first) != 1:
                break
            job = first[0]
            if job.type != job_type or (job.exclusive and job.process_instance_id is not None):
                break
            waiting.popleft()
            jobs.append(job)
        return jobs

    async def _run_batch(self, chain: Chain, jobs: list[Job]) -> list[Job] | None:
        """Runs jobs of one ``async def`` batch type in one call; returns the exclusive
        follow-ups locked for them, or None if the call timed out and was abandoned."""
        rt = self.rt
        runs, payloads, decided = rt.begin_batch(
            [job for job in jobs if rt.held.may_start(job)], chain
        )
        for execution in decided:
            self._finished(execution)
        if not runs:
            return []
        lead = runs[0]
        lead.batch = runs[1:]
        assert lead.definition is not None
        handler = lead.definition.handler
        result, error, elapsed_ms = await self._call(
            lead,
            lambda: handler([ex.ctx for ex in runs], payloads),
            f" (in a batch of {len(runs)})",
        )
        for _ in runs:
            rt.metrics.execution_time(elapsed_ms)
        outcomes = rt.batch_outcomes(runs, result, error)
        # Whoever decides the lead owns the whole call: this loop, or the housekeeper.
        if not rt.handler_ended(lead, *outcomes[0]):
            if rt.executions.returned(lead):
                self._finished(lead)
            return None
        locked: list[Job] = []
        for execution, (item, item_error) in zip(runs, outcomes, strict=True):
            if execution is not lead:
                rt.handler_ended(execution, item, item_error)
            follow_ups = None
            ctx = execution.ctx
            if execution.outcome == COMPLETED and ctx is not None and ctx.asked_for_more:
                follow_ups = await asyncio.to_thread(rt.commit_effects, execution)
            if follow_ups is None:
                self._finished(execution)
            else:
                locked += follow_ups
        return locked

    async def _call(
        self, execution: Execution, call: Callable[[], Awaitable[object]], where: str
    ) -> tuple[object, BaseException | None, float]:
        """Awaits a handler's call within its execution's timeout: its result, the
        error that ended it (SystemExit, CancelledError too: the job fails, not the
        loop) and the wall time in ms."""
        assert execution.definition is not None
        result: object = None
        error: BaseException | None = None
        timeout = execution.definition.timeout_ms
        self.current.add(execution)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout / 1000 if timeout else None):
                result = await call()
        except TimeoutError as exc:
            if execution.deadline is not None and time.monotonic() >= execution.deadline:
                error = JobTimeoutError(
                    f"job {execution.job.id} ({execution.job.type}) ran past its timeout"
                    f" of {timeout} ms{where}"
                )
            else:
                error = exc
        except BaseException as exc:
            error = exc
        finally:
            self.current.discard(execution)
        return result, error, (time.perf_counter() - started) * 1000

    async def _execute(self, execution: Execution) -> bool:
        """Runs the handler; False if its execution was decided elsewhere (timed out
        while it ignored its cancellation)."""
        rt = self.rt
        ok, payload = rt.payload_of(execution)
        if not ok:
            return True
        assert execution.definition is not None and execution.ctx is not None
        definition, ctx = execution.definition, execution.ctx
        result, error, elapsed_ms = await self._call(
            execution, lambda: definition.handler(ctx, payload), ""
        )
        rt.metrics.execution_time(elapsed_ms)
        if rt.handler_ended(execution, result, error):
            return True
        if rt.executions.returned(execution):
            self._finished(execution)
        return False
