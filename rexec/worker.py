"""A worker process: acquire, execute, complete — and back off when idle or colliding.

Threads of one worker process:
- the acquisition loop (the caller of :meth:`Worker.run`): asks the backoff strategy how
  many jobs to request, acquires them in one script call, hands batches to the slots
  (rejecting those that do not fit, to resubmit first next cycle), then waits — on the
  Redis wake-up channel when idle, so new work is picked up in milliseconds;
- ``concurrency`` slot threads, each running one batch at a time, its jobs in order;
  ``async def`` handlers run on the process's event loop thread instead;
- the committer: completes finished jobs in groups (one script call for all the jobs
  finished since its last call) and records failures;
- housekeeping: renews the locks of held jobs well before they expire, flushes the
  metrics, and keeps the worker's heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import random
import signal
import socket
import threading
import time
import traceback
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from rexec import metrics as m
from rexec import timeseries
from rexec.acquisition import (
    EXECUTION_SATURATION_WAIT_MS,
    AcquisitionCycle,
    BackoffJobAcquisitionStrategy,
)
from rexec.app import App, JobDefinition
from rexec.context import JobContext
from rexec.definitions import worker_types
from rexec.errors import HandlerNotFoundError, JobTimeoutError, OptimisticLockingError
from rexec.health import ProcessHealth
from rexec.job import Job
from rexec.settings import WorkerSettings
from rexec.status import Status
from rexec.store import AcquiredJobs, AcquireOptions, Store
from rexec.wakeup import WakeFilter, relevant

log = logging.getLogger("rexec.worker")

COMMIT_BATCH = 500
MAX_BATCHES_PER_TAKE = 16
OUTCOMES_PER_PUT = 32
OUTCOME_DELAY_S = 0.005
RETIRE_EVERY_S = 30.0


@dataclass(frozen=True, slots=True)
class Outcome:
    job: Job
    error: BaseException | None = None
    details: str | None = None
    definition: JobDefinition | None = None


class Worker:
    """One worker process's engine. ``run()`` blocks until :meth:`stop` is called."""

    def __init__(
        self,
        app: App,
        settings: WorkerSettings,
        *,
        index: int = 0,
        node_id: str | None = None,
        health: ProcessHealth | None = None,
    ) -> None:
        self.app = app
        self.health = health or ProcessHealth()  # what the supervisor's /livez, /readyz read
        self._announced = False
        self.settings = settings
        self.index = index
        self.node_id = node_id or settings.node_id or f"{socket.gethostname()}-{os.getpid()}"
        self.id = f"{self.node_id}.{index}.{os.getpid()}"
        self.store: Store = app.store
        self.keys = self.store.keys
        self.metrics = m.WorkerMetrics(self.id)
        self.strategy = BackoffJobAcquisitionStrategy(**settings.strategy)  # type: ignore[arg-type]
        # Deployment awareness: only the types this app can run (narrowed by --types).
        types = worker_types(app.definitions, settings.types)
        self.options = AcquireOptions(
            lock_ms=settings.lock_ms,
            priority_min=settings.priority_min,
            priority_max=settings.priority_max,
            types=types,
        )
        self._wake_filter = WakeFilter(
            frozenset(types), settings.priority_min, settings.priority_max
        )
        self.capacity = settings.concurrency + (
            settings.concurrency if settings.queue_size is None else settings.queue_size
        )
        self._stopping = threading.Event()
        self._abort = threading.Event()
        self._slot_freed = threading.Event()
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        self._batches: queue.SimpleQueue[list[Job] | None] = queue.SimpleQueue()
        self._outcomes: queue.SimpleQueue[list[Outcome] | None] = queue.SimpleQueue()
        self._held: dict[str, Job] = {}  # locked by us, not yet committed or unlocked
        self._held_lock = threading.Lock()
        self._rejected: list[list[Job]] = []
        self._clock_offset_ms = 0  # Redis time minus local time
        self._pubsub: redis.client.PubSub | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads: list[threading.Thread] = []
        self._redis_down_since: float | None = None
        self._info: dict[str, Any] = {
            "id": self.id,
            "node": self.node_id,
            "index": index,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "concurrency": settings.concurrency,
            "types": list(types),
            "acquisition": settings.acquisition,
            "idle_level": 0,
            "backoff_level": 0,
        }
        # Jobs running on slot threads, for timeouts: thread id -> (job, deadline, rest
        # of its batch). A timed-out thread is abandoned and replaced (Python cannot
        # stop a thread); whoever removes the entry first decides the job's outcome.
        self._running: dict[int, tuple[Job, float, deque[Job], int]] = {}
        self._running_lock = threading.Lock()
        self._abandoned: set[int] = set()
        self._abandoned_at: dict[int, float] = {}  # for wedged slots: still running long after
        self._lost: set[str] = set()  # held jobs whose lock renewal was refused
        self._lockable_types = frozenset(types)

    # -- lifecycle ------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop acquiring; running jobs finish, unstarted ones are given back."""
        self._stopping.set()
        self._slot_freed.set()

    def run(self) -> int:
        self._start_threads()
        try:
            self._announce()
            self._acquisition_loop()
        finally:
            self._shutdown()
        return 0

    def _start_threads(self) -> None:
        def spawn(target: Any, name: str) -> None:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

        for i in range(self.settings.concurrency):
            spawn(self._slot_loop, f"rexec-slot-{i}")
        spawn(self._commit_loop, "rexec-committer")
        spawn(self._housekeeping_loop, "rexec-housekeeping")
        if any(d.is_async for d in self.app.definitions.values()):
            self._loop = asyncio.new_event_loop()
            spawn(self._loop.run_forever, "rexec-event-loop")

    def _shutdown(self) -> None:
        deadline = time.monotonic() + self.settings.shutdown_timeout_s
        self._stopping.set()
        self.health.set_acquiring(False)
        # Batches that never started go back to Redis at once.
        leftovers = self._rejected
        self._rejected = []
        while True:
            try:
                batch = self._batches.get_nowait()
            except queue.Empty:
                break
            if batch is not None:
                leftovers.append(batch)
                self._release_slots()
        self._give_back([job for batch in leftovers for job in batch])
        for _ in range(self.settings.concurrency):
            self._batches.put(None)
        while self._inflight > 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        self._outcomes.put(None)
        for thread in self._threads:
            if thread.name == "rexec-committer":
                thread.join(max(0.0, deadline - time.monotonic()) + 5.0)
        with self._held_lock:
            still_running = list(self._held.values())
        if still_running:
            log.warning(
                "%s: %d job(s) still running at the shutdown deadline; their locks will"
                " expire and other workers will run them again",
                self.id,
                len(still_running),
            )
        self._abort.set()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        with contextlib.suppress(redis.RedisError):
            self._flush_metrics()
            pipe = self.store.client.pipeline(transaction=False)
            pipe.hdel(self.keys.workers, self.id)
            pipe.zrem(self.keys.heartbeats, self.id)
            pipe.execute()
        if self._pubsub is not None:
            with contextlib.suppress(redis.RedisError):
                self._pubsub.close()

    # -- acquisition ----------------------------------------------------------------------

    def _acquisition_loop(self) -> None:
        job_added = False
        self.health.set_acquiring(not self._stopping.is_set())
        while not self._stopping.is_set():
            if self._rejected:
                # Saturated: hand the backlog to slots as they free up, and ask Redis
                # for more only once it is gone (its jobs stay locked meanwhile).
                self._slot_freed.clear()
                self._rejected = self._dispatch(self._rejected)
                if self._rejected:
                    self._slot_freed.wait(EXECUTION_SATURATION_WAIT_MS / 1000)
                    continue
            started = time.monotonic()
            requested = self.strategy.num_jobs_to_acquire()
            acquired = AcquiredJobs(batches=[])
            error: BaseException | None = None
            try:
                if requested > 0:
                    local_ms = time.time() * 1000
                    acquired = self.store.acquire_jobs(self.id, requested, options=self.options)
                    self._clock_offset_ms = int(acquired.now_ms - local_ms)
                    self.metrics.add(m.ACQUISITION_ATTEMPT)
                    self._redis_is_up()
            except redis.RedisError as exc:
                error = exc
                self._redis_is_down(exc)
            if acquired.batches:
                with self._held_lock:
                    for job in acquired.jobs:
                        self._held[job.id] = job
                self.metrics.add(m.ACQUIRED_SUCCESS, len(acquired.jobs))
            self.metrics.add(m.ACQUIRED_FAILURE, acquired.failed_to_lock)
            if acquired.failed_to_lock:
                self.metrics.add(m.ATTEMPT_CONFLICTED)
            rejected = self._dispatch(acquired.batches)
            self.metrics.add(m.EXECUTION_REJECTED, len(rejected))
            self._rejected = rejected
            self.strategy.reconfigure(
                AcquisitionCycle(
                    jobs_requested=requested,
                    batches_acquired=len(acquired.batches),
                    failed_to_lock=acquired.failed_to_lock,
                    batches_rejected=len(rejected),
                    job_added=job_added,
                    exception=error,
                )
            )
            wait_ms = self.strategy.wait_time_ms() - int((time.monotonic() - started) * 1000)
            if acquired.next_due_ms is not None:
                wait_ms = min(wait_ms, max(0, acquired.next_due_ms - acquired.now_ms))
            job_added = self._wait(wait_ms, saturated=bool(rejected))

    def _dispatch(self, batches: Sequence[list[Job]]) -> list[list[Job]]:
        """Hands batches to free slots; returns those that did not fit."""
        rejected: list[list[Job]] = []
        for batch in batches:
            with self._inflight_lock:
                fits = self._inflight < self.capacity
                if fits:
                    self._inflight += 1
            if not fits:
                rejected.append(batch)
                continue
            definition = self.app.definitions.get(batch[0].type)
            if definition is not None and definition.is_async and self._loop is not None:
                asyncio.run_coroutine_threadsafe(self._run_batch_async(batch), self._loop)
            else:
                self._batches.put(batch)
        return rejected

    def _wait(self, wait_ms: int, *, saturated: bool) -> bool:
        """Sleeps up to ``wait_ms``; returns whether a wake-up (new job) arrived."""
        if wait_ms <= 0 or self._stopping.is_set():
            return self._drain_wakeups()
        if saturated:
            self._slot_freed.clear()
            self._slot_freed.wait(wait_ms / 1000)
            return False
        deadline = time.monotonic() + wait_ms / 1000
        try:
            pubsub = self._subscribe()
            while not self._stopping.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                # Short slices keep a stop request prompt.
                message = pubsub.get_message(timeout=min(left, 0.25))
                if self._is_wakeup(message):
                    self._drain_wakeups()
                    return True
        except redis.RedisError as exc:
            self._pubsub = None
            self._redis_is_down(exc)
            self._stopping.wait(max(0.0, deadline - time.monotonic()))
        return False

    def _drain_wakeups(self) -> bool:
        if self._pubsub is None:
            return False
        woke = False
        try:
            while (message := self._pubsub.get_message(timeout=0)) is not None:
                woke = self._is_wakeup(message) or woke
        except redis.RedisError:
            self._pubsub = None
        return woke

    def _is_wakeup(self, message: dict[str, Any] | None) -> bool:
        """A wake-up this worker can act on (rexec/wakeup.py); others are ignored."""
        if message is None or message.get("type") != "message":
            return False
        return relevant(message.get("data") or b"1", self._wake_filter)

    def _subscribe(self) -> redis.client.PubSub:
        if self._pubsub is None:
            pubsub = self.store.client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
            pubsub.subscribe(self.keys.wake_channel)
            self._pubsub = pubsub
        return self._pubsub

    def _redis_is_down(self, exc: BaseException) -> None:
        self.health.set_redis_ok(False)
        if self._redis_down_since is None:
            self._redis_down_since = time.monotonic()
            log.warning("%s: Redis unreachable (%s); backing off and retrying", self.id, exc)

    def _redis_is_up(self) -> None:
        self.health.set_redis_ok(True)
        if self._redis_down_since is not None:
            down = time.monotonic() - self._redis_down_since
            self._redis_down_since = None
            log.warning("%s: Redis reachable again after %.1f s", self.id, down)

    # -- execution ------------------------------------------------------------------------

    def _release_slots(self, count: int = 1) -> None:
        with self._inflight_lock:
            self._inflight -= count
        self._slot_freed.set()

    def _take_batches(self) -> tuple[deque[Job], int] | None:
        """Blocks for a batch, then also takes a fair share of any others queued, so a
        slot runs many short jobs per wake-up (thread hand-offs are what costs)."""
        batch = self._batches.get()
        if batch is None:
            return None
        jobs = deque(batch)
        taken = 1
        share = min(MAX_BATCHES_PER_TAKE, self._batches.qsize() // self.settings.concurrency)
        for _ in range(share):
            try:
                more = self._batches.get_nowait()
            except queue.Empty:
                break
            if more is None:
                self._batches.put(None)  # not ours: leave the stop signal for its slot
                break
            jobs.extend(more)
            taken += 1
        return jobs, taken

    def _slot_loop(self) -> None:
        me = threading.get_ident()
        while True:
            taken = self._take_batches()
            if taken is None:
                return
            pending, slots = taken
            done: list[Outcome] = []
            since = 0.0
            try:
                while pending:
                    if self._stopping.is_set():
                        # Shutting down: the job that was running has finished; what
                        # has not started goes back to Redis for other workers.
                        self._give_back(list(pending))
                        break
                    job = pending.popleft()
                    if self._lost and job.id in self._lost:
                        self._forget(job)
                        continue
                    self._start_timer(me, job, pending, slots)
                    outcome, ctx = self._execute(job)
                    if not self._stop_timer(me):
                        return  # timed out: failed and replaced by the housekeeper
                    pending.extendleft(reversed(self._finish(outcome, ctx, done)))
                    # Outcomes go to the committer in groups, but none waits long.
                    now = time.monotonic()
                    if done and (len(done) >= OUTCOMES_PER_PUT or now - since > OUTCOME_DELAY_S):
                        self._outcomes.put(done)
                        done = []
                    if not done:
                        since = now
            finally:
                if done:
                    self._outcomes.put(done)
                if me not in self._abandoned:
                    self._release_slots(slots)

    def _start_timer(self, thread: int, job: Job, rest: deque[Job], slots: int) -> None:
        definition = self.app.definitions.get(job.type)
        if definition is not None and definition.timeout_ms:
            deadline = time.monotonic() + definition.timeout_ms / 1000
            with self._running_lock:
                self._running[thread] = (job, deadline, rest, slots)

    def _stop_timer(self, thread: int) -> bool:
        """False when the job already timed out (the housekeeper failed it)."""
        if not self._running:
            return True
        with self._running_lock:
            self._running.pop(thread, None)
            return thread not in self._abandoned

    def _expire_timeouts(self) -> None:
        now = time.monotonic()
        with self._running_lock:
            expired = [(t, entry) for t, entry in self._running.items() if entry[1] <= now]
            for thread, _ in expired:
                del self._running[thread]
                self._abandoned.add(thread)
                self._abandoned_at[thread] = now
        for _thread, (job, _, rest, slots) in expired:
            definition = self.app.definitions.get(job.type)
            timeout = definition.timeout_ms if definition else 0
            log.warning(
                "%s: job %s (%s) ran past %s ms; failing it", self.id, job.id, job.type, timeout
            )
            error = JobTimeoutError(
                f"job {job.id} ({job.type}) ran past its timeout of {timeout} ms"
            )
            self._outcomes.put([Outcome(job, error, None, definition)])
            rest_of_batch = list(rest)
            rest.clear()
            self._give_back(rest_of_batch)
            self._release_slots(slots)
            replacement = threading.Thread(target=self._slot_loop, name="rexec-slot-r", daemon=True)
            replacement.start()
            self._threads.append(replacement)

    async def _run_batch_async(self, batch: list[Job]) -> None:
        done: list[Outcome] = []
        try:
            pending = deque(batch)
            while pending:
                job = pending.popleft()
                outcome, ctx = await self._execute_async(job)
                pending.extendleft(reversed(self._finish(outcome, ctx, done)))
        finally:
            if done:
                self._outcomes.put(done)
            self._release_slots()

    def _finish(self, outcome: Outcome, ctx: JobContext | None, done: list[Outcome]) -> list[Job]:
        """Hands a plain outcome to the committer; commits a job whose handler asked
        for more (variables, follow-ups, forks) at once, in this slot, and returns the
        exclusive follow-ups locked for it, to run next."""
        effects = ctx.effects() if ctx is not None and outcome.error is None else None
        if effects is None or effects.empty:
            done.append(outcome)
            return []
        while True:
            try:
                follow_ups = self.store.commit(outcome.job, effects, lock_ms=self.settings.lock_ms)
                break
            except OptimisticLockingError as exc:
                # Lock lost, or the variables changed under us: run it again, as Camunda
                # does, without consuming a retry (the store knows this error).
                self.metrics.add(m.COMMIT_CONFLICT)
                done.append(Outcome(outcome.job, exc, None, outcome.definition))
                return []
            except redis.RedisError as exc:
                self._redis_is_down(exc)
                if self._abort.wait(0.5):
                    return []  # the lock will expire; another worker runs the job again
        self.metrics.add(m.SUCCESSFUL)
        self.metrics.add(m.LOCKED_EXCLUSIVE, len(follow_ups))
        with self._held_lock:
            self._held.pop(outcome.job.id, None)
            for job in follow_ups:
                self._held[job.id] = job
        return follow_ups

    def _prepare(self, job: Job) -> tuple[JobDefinition | None, Outcome | None, Any]:
        definition = self.app.definitions.get(job.type)
        if definition is None:
            error = HandlerNotFoundError(
                f"no handler for job type {job.type!r} in this worker's app "
                f"({self.settings.app_path})"
            )
            return None, Outcome(job, error), None
        self._record_pickup(job)
        try:
            payload = job.payload
        except Exception as exc:
            return definition, Outcome(job, exc, None, definition), None
        return definition, None, payload

    def _execute(self, job: Job) -> tuple[Outcome, JobContext | None]:
        definition, early, payload = self._prepare(job)
        if early is not None or definition is None:
            return early or Outcome(job), None
        ctx = JobContext(job, self.app, self.id, self._lockable_types)
        started = time.perf_counter()
        try:
            definition.handler(ctx, payload)
        except BaseException as exc:  # a handler's SystemExit must not end the slot
            return Outcome(job, exc, traceback.format_exc(), definition), None
        finally:
            self.metrics.execution_time((time.perf_counter() - started) * 1000)
        return Outcome(job, definition=definition), ctx

    async def _execute_async(self, job: Job) -> tuple[Outcome, JobContext | None]:
        definition, early, payload = self._prepare(job)
        if early is not None or definition is None:
            return early or Outcome(job), None
        ctx = JobContext(job, self.app, self.id, self._lockable_types)
        timeout = definition.timeout_ms / 1000 if definition.timeout_ms else None
        started = time.perf_counter()
        try:
            await asyncio.wait_for(definition.handler(ctx, payload), timeout)
        except TimeoutError:
            error = JobTimeoutError(
                f"job {job.id} ({job.type}) ran past its timeout of {definition.timeout_ms} ms"
            )
            return Outcome(job, error, None, definition), None
        except Exception as exc:
            return Outcome(job, exc, traceback.format_exc(), definition), None
        finally:
            self.metrics.execution_time((time.perf_counter() - started) * 1000)
        return Outcome(job, definition=definition), ctx

    def _record_pickup(self, job: Job) -> None:
        now = int(time.time() * 1000) + self._clock_offset_ms
        self.metrics.pickup_latency(max(0, now - job.due_ms))

    # -- commits --------------------------------------------------------------------------

    def _commit_loop(self) -> None:
        done = False
        while not done:
            first = self._outcomes.get()
            outcomes: list[Outcome] = []
            if first is None:
                done = True
            else:
                outcomes.extend(first)
            while not done and len(outcomes) < COMMIT_BATCH:
                try:
                    more = self._outcomes.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    done = True
                else:
                    outcomes.extend(more)
            if outcomes:
                self._commit(outcomes)

    def _commit(self, outcomes: list[Outcome]) -> None:
        """Writes outcomes to Redis, retrying while Redis is away (until aborted)."""
        successes = [o.job for o in outcomes if o.error is None]
        failures = [o for o in outcomes if o.error is not None]
        while True:
            try:
                if successes:
                    statuses = self.store.complete_many(successes)
                    ok = sum(1 for s in statuses if s is Status.OK)
                    self.metrics.add(m.SUCCESSFUL, ok)
                    self.metrics.add(m.COMMIT_REFUSED, len(statuses) - ok)
                    successes = []
                while failures:
                    self._record_failure(failures[0])
                    failures.pop(0)
                break
            except redis.RedisError as exc:
                self._redis_is_down(exc)
                if self._abort.wait(0.5):
                    return
        with self._held_lock:
            for outcome in outcomes:
                self._held.pop(outcome.job.id, None)
                self._lost.discard(outcome.job.id)

    def _record_failure(self, outcome: Outcome) -> None:
        definition = outcome.definition
        error = outcome.error
        assert error is not None
        if not isinstance(error, OptimisticLockingError):  # a conflict reruns, not fails
            self.metrics.add(m.FAILED)
        try:
            self.store.fail(
                outcome.job,
                error,
                retry_cycle=definition.retry_cycle if definition else None,
                details=outcome.details,
            )
        except OptimisticLockingError:
            self.metrics.add(m.COMMIT_REFUSED)
        if not isinstance(error, Exception):
            log.warning("%s: job %s raised %r", self.id, outcome.job.id, error)

    def _forget(self, job: Job) -> None:
        """Drops a job we no longer own, unstarted."""
        self._lost.discard(job.id)
        self.metrics.add(m.LOCK_LOST_UNSTARTED)
        with self._held_lock:
            self._held.pop(job.id, None)

    def _give_back(self, jobs: list[Job]) -> None:
        if not jobs:
            return
        with contextlib.suppress(redis.RedisError):
            self.store.unlock_many(jobs)
        with self._held_lock:
            for job in jobs:
                self._held.pop(job.id, None)

    # -- housekeeping ---------------------------------------------------------------------

    def _housekeeping_loop(self) -> None:
        lock_ms = self.settings.lock_ms
        renew_every = max(0.05, min(lock_ms / 4000, self.settings.metrics_interval_s))
        if any(d.timeout_ms for d in self.app.definitions.values()):
            renew_every = min(renew_every, 0.05)  # timeouts are checked on this tick
        next_flush = time.monotonic() + self.settings.metrics_interval_s
        next_retire = time.monotonic() + RETIRE_EVERY_S * (0.5 + random.random())
        next_reclaim = 0.0
        expires: dict[str, int] = {}
        while not self._abort.wait(renew_every):
            self.health.beat()
            self._expire_timeouts()
            self.health.set_wedged(self._wedged_slots())
            try:
                if not self._announced:
                    self._announce()  # Redis was away at the start
                self._renew_locks(expires, lock_ms)
                if time.monotonic() >= next_flush:
                    next_flush = time.monotonic() + self.settings.metrics_interval_s
                    self._flush_metrics()
                if self._rejected and time.monotonic() >= next_reclaim:
                    # Saturated workers do not acquire; expired locks must not wait.
                    next_reclaim = time.monotonic() + max(0.25, lock_ms / 4000)
                    self.store.reclaim_expired_locks()
                if time.monotonic() >= next_retire:
                    next_retire = time.monotonic() + RETIRE_EVERY_S
                    m.retire_stale_workers(self.store)
            except redis.RedisError as exc:
                self._redis_is_down(exc)

    def _wedged_slots(self) -> int:
        """Slot threads abandoned at their job's timeout that still run a lock time later:
        Python cannot stop them, and the job may already run again elsewhere."""
        if not self._abandoned_at:
            return 0
        running = {t.ident for t in self._threads if t.is_alive()}
        for ident in [i for i in self._abandoned_at if i not in running]:
            del self._abandoned_at[ident]
        wedged_before = time.monotonic() - self.settings.lock_ms / 1000
        return sum(1 for at in self._abandoned_at.values() if at < wedged_before)

    def _renew_locks(self, expires: dict[str, int], lock_ms: int) -> None:
        """Extends the locks of held jobs that have used half their lock time."""
        now = int(time.time() * 1000) + self._clock_offset_ms
        with self._held_lock:
            held = list(self._held.values())
        due = [
            job
            for job in held
            if expires.get(job.id, job.lock_expires_ms or 0) - now < lock_ms // 2
        ]
        for gone in set(expires) - {job.id for job in held}:
            del expires[gone]
        if not due:
            return
        new_expiry, statuses = self.store.extend_locks(due, lock_ms)
        for job, status in zip(due, statuses, strict=True):
            if status is Status.OK:
                expires[job.id] = new_expiry
            else:
                # Taken over while we held it (we stalled past its lock): if it has not
                # started here yet, it will not; another worker owns it now.
                expires.pop(job.id, None)
                self._lost.add(job.id)

    def _flush_metrics(self) -> None:
        now = int(time.time() * 1000) + self._clock_offset_ms
        pipe = self.store.client.pipeline(transaction=False)
        self.metrics.flush(pipe, self.keys)
        pipe.zadd(self.keys.heartbeats, {self.id: now})
        levels = (self.strategy.idle_level, self.strategy.backoff_level)
        if levels != (self._info["idle_level"], self._info["backoff_level"]):
            self._info["idle_level"], self._info["backoff_level"] = levels
            pipe.hset(self.keys.workers, self.id, orjson.dumps(self._info))
        pipe.execute()
        timeseries.record(self.store)  # ops13: the cockpit's charts (once per 10 s cluster-wide)

    def _announce(self) -> None:
        with contextlib.suppress(redis.RedisError):
            self._clock_offset_ms = self.store.time_ms() - int(time.time() * 1000)
        now = int(time.time() * 1000) + self._clock_offset_ms
        self._info.update(started_ms=now, idle_level=0, backoff_level=0)
        with contextlib.suppress(redis.RedisError):
            pipe = self.store.client.pipeline(transaction=False)
            pipe.hset(self.keys.workers, self.id, orjson.dumps(self._info))
            pipe.zadd(self.keys.heartbeats, {self.id: now})
            pipe.execute()
            # Registered: its job types are where nodes and the cockpit read them.
            self._announced = True
            self.health.set_registered()


def worker_process_main(
    settings: WorkerSettings, index: int, node_id: str, health: ProcessHealth | None = None
) -> None:
    """Entry point of a worker process (spawned by the node supervisor)."""
    from rexec.settings import load_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor handles Ctrl-C
    app = load_app(settings)
    worker = Worker(app, settings, index=index, node_id=node_id, health=health)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    worker.health.set_handles_signals()
    try:
        code = worker.run()
    finally:
        app.close()
    raise SystemExit(code)
