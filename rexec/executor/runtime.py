"""What the parts of one worker process share: its settings, store, counters, the jobs
it holds, and the rules every execution follows whoever runs it (start, settle)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from rexec import metrics as m
from rexec.app import App
from rexec.codec import pack
from rexec.context import JobContext
from rexec.definitions import worker_types
from rexec.errors import (
    HandlerError,
    HandlerNotFoundError,
    OptimisticLockingError,
    PayloadError,
    is_transient,
    safe_str,
)
from rexec.executor.execution import (
    COMPLETED,
    FAILED,
    Chain,
    Execution,
    Executions,
    Held,
    describe,
)
from rexec.health import ProcessHealth
from rexec.job import Job
from rexec.settings import WorkerSettings
from rexec.store import Store
from rexec.wakeup import WakeFilter

log = logging.getLogger("rexec.worker")

BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 2.0
STILL_DOWN_EVERY_S = 5.0


class Capacity:
    """How many batches this process may hold to run (buffered or running). Sized by
    throughput unless ``queue_size`` fixes it: about BUFFER_S of work, so slots never
    starve for want of acquired jobs, and a slow job type does not hoard locks."""

    BUFFER_S = 0.25
    MAX = 4096

    def __init__(self, concurrency: int, queue_size: int | None) -> None:
        self.fixed = queue_size is not None
        self.floor = concurrency + (queue_size if queue_size is not None else concurrency)
        self.limit = self.floor if self.fixed else max(self.floor, 64)
        self._used = 0
        self.released = 0  # batches finished since start, for the sizing
        self._cond = threading.Condition()

    def take(self, wanted: int) -> int:
        """Reserves room for up to ``wanted`` batches; returns how many fit."""
        with self._cond:
            fits = max(0, min(wanted, self.limit - self._used))
            self._used += fits
            return fits

    def give(self, count: int) -> None:
        if count:
            with self._cond:
                self._used -= count
                self.released += count
                self._cond.notify_all()

    def used(self) -> int:
        with self._cond:
            return self._used

    def wait_for_room(self, room: int, timeout_s: float) -> bool:
        with self._cond:
            return self._cond.wait_for(
                lambda: self.limit - self._used >= min(room, self.limit), timeout_s
            )

    def resize(self, batches_per_s: float) -> None:
        if not self.fixed:
            with self._cond:
                self.limit = min(self.MAX, max(self.floor, int(batches_per_s * self.BUFFER_S)))
                self._cond.notify_all()


class RedisHealth:
    """Says once when Redis goes away and once when it is back (chaos reads these
    lines), and every few seconds in between that it is still away."""

    def __init__(self, worker_id: str, report: Callable[[bool], None] | None = None) -> None:
        self.worker_id = worker_id
        self.report = report  # the supervisor's view: Redis reachable or not
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._last_said = 0.0

    def down(self, exc: BaseException) -> None:
        if self.report is not None:
            self.report(False)
        with self._lock:
            now = time.monotonic()
            if self._down_since is None:
                self._down_since = self._last_said = now
                log.warning(
                    "%s: Redis unreachable (%s); backing off and retrying",
                    self.worker_id,
                    safe_str(exc),
                )
            elif now - self._last_said >= STILL_DOWN_EVERY_S:
                self._last_said = now
                log.warning(
                    "%s: still no Redis after %.0f s (%s)",
                    self.worker_id,
                    now - self._down_since,
                    safe_str(exc),
                )

    def up(self) -> None:
        if self.report is not None:
            self.report(True)
        with self._lock:
            if self._down_since is None:
                return
            down = time.monotonic() - self._down_since
            self._down_since = None
        log.warning("%s: Redis reachable again after %.1f s", self.worker_id, down)


class Backoff:
    """Exponential backoff of one loop after an error, reset by a success."""

    def __init__(self) -> None:
        self.delay_s = 0.0

    def failed(self) -> float:
        self.delay_s = min(BACKOFF_MAX_S, max(BACKOFF_MIN_S, self.delay_s * 2))
        return self.delay_s

    def ok(self) -> None:
        self.delay_s = 0.0


class Runtime:
    """The state one worker process's parts share; each part owns its own."""

    def __init__(self, app: App, settings: WorkerSettings, index: int, node_id: str | None):
        self.app = app
        self.settings = settings
        self.node_id = node_id or settings.node_id or f"{socket.gethostname()}-{os.getpid()}"
        self.id = f"{self.node_id}.{index}.{os.getpid()}"
        self.index = index
        self.store: Store = app.store
        self.keys = self.store.keys
        self.definitions = app.definitions
        self.metrics = m.WorkerMetrics(self.id)
        self.held = Held()
        self.executions = Executions()
        self.capacity = Capacity(settings.concurrency, settings.queue_size)
        self.redis = RedisHealth(self.id, self.report_redis)
        self.stopping = threading.Event()
        self.abort = threading.Event()  # past the shutdown deadline: stop retrying
        self.clock_offset_ms = 0  # Redis time minus local time
        # Deployment awareness: only the types this app can run (narrowed by --types).
        self.types = worker_types(app.definitions, settings.types)
        self.lockable_types = frozenset(self.types)
        self.wake_filter = WakeFilter(
            self.lockable_types, settings.priority_min, settings.priority_max
        )
        self.health = ProcessHealth()  # the supervisor's view (replaced by the node's)
        self.async_types = frozenset(t for t, d in app.definitions.items() if d.is_async)
        self.has_async = bool(self.async_types)

    def report_redis(self, ok: bool) -> None:
        """Tells the supervisor (through ``health``, set by the process) about Redis."""
        self.health.set_redis_ok(ok)

    def now_ms(self) -> int:
        """Redis's clock, as well as this process knows it."""
        return int(time.time() * 1000) + self.clock_offset_ms

    # -- running one job (the same rules on a slot thread and on the event loop) ---------

    def begin(self, job: Job, chain: Chain | None) -> Execution:
        """A new execution of ``job``; fails it at once when it cannot run here."""
        definition = self.definitions.get(job.type)
        execution = self.executions.new(job, definition, chain)
        if definition is None:
            error = HandlerNotFoundError(
                f"no handler for job type {job.type!r} in this worker's app "
                f"({self.settings.app_path})"
            )
            self.executions.decide(execution, FAILED, error)
            return execution
        execution.started_ms = self.now_ms()
        self.metrics.pickup_latency(max(0, execution.started_ms - job.due_ms))
        execution.ctx = JobContext(job, self.app, self.id, self.lockable_types)
        return execution

    def begin_batch(
        self, jobs: list[Job], chain: Chain | None
    ) -> tuple[list[Execution], list[object], list[Execution]]:
        """Executions for one batch handler call: those to run with their payloads,
        and those already decided (cannot run here, or an unreadable payload)."""
        runs: list[Execution] = []
        payloads: list[object] = []
        decided: list[Execution] = []
        for job in jobs:
            execution = self.begin(job, chain)
            if execution.outcome is None:
                ok, payload = self.payload_of(execution)
                if ok:
                    runs.append(execution)
                    payloads.append(payload)
                    continue
            decided.append(execution)
        return runs, payloads, decided

    def payload_of(self, execution: Execution) -> tuple[bool, Any]:
        try:
            return True, execution.job.payload
        except Exception as exc:
            self.executions.decide(execution, FAILED, exc, traceback.format_exc())
            return False, None

    def handler_ended(
        self, execution: Execution, result: object, error: BaseException | None
    ) -> bool:
        """Decides the outcome from what the handler did; False if it was decided
        already (timed out): then this party owns nothing and changes nothing."""
        if error is not None:
            details = "".join(traceback.format_exception(error))
            return self.executions.decide(execution, FAILED, error, details)
        if result is not None:
            if hasattr(result, "__await__"):
                if hasattr(result, "close"):
                    result.close()  # a coroutine never awaited: do not warn about it later
                error = HandlerError(
                    f"the handler of {execution.job.type!r} returned {describe(result)};"
                    " a plain function returns a value, an async one is declared async def"
                )
                return self.executions.decide(execution, FAILED, error)
            try:
                raw = pack(result, "result")
            except PayloadError as exc:
                error = HandlerError(
                    f"the handler of {execution.job.type!r} returned {describe(result)}"
                    f" that msgpack cannot encode ({exc}); return None or plain data"
                )
                return self.executions.decide(execution, FAILED, error)
            if self.executions.decide(execution, COMPLETED):
                execution.result_raw = raw
                return True
            return False
        return self.executions.decide(execution, COMPLETED)

    def batch_outcomes(
        self, runs: list[Execution], result: object, error: BaseException | None
    ) -> list[tuple[object, BaseException | None]]:
        """What a batch handler's call means for each of its jobs: (result, error)."""
        if error is not None:
            return [(None, error)] * len(runs)
        if result is None:
            return [(None, None)] * len(runs)
        if isinstance(result, list) and len(result) == len(runs):
            return [
                (None, item) if isinstance(item, BaseException) else (item, None) for item in result
            ]
        if hasattr(result, "close") and hasattr(result, "__await__"):
            result.close()  # a coroutine never awaited: do not warn about it later
        size = f" of {len(result)} items" if isinstance(result, list) else ""
        bad = HandlerError(
            f"the batch handler of {runs[0].job.type!r} returned {describe(result)}{size};"
            f" batch handlers return None or a list of {len(runs)} items (a job's result,"
            " None, or an exception per job)"
        )
        return [(None, bad)] * len(runs)

    def commit_effects(self, execution: Execution) -> list[Job] | None:
        """For a completed job whose handler asked for more (variables, follow-ups,
        forks, an end): commits it now, in the caller's thread, and returns the
        exclusive follow-ups locked for it. None: a plain completion, for the committer.
        A refusal turns the execution into a failure (a lost lock or changed variables
        rerun it without consuming a retry; anything else consumes one)."""
        ctx = execution.ctx
        if ctx is None or not ctx.asked_for_more:
            return None
        try:
            effects = ctx.effects()
            if effects.empty:
                return None
        except Exception as exc:
            execution.outcome, execution.error = FAILED, exc
            execution.details = traceback.format_exc()
            return None
        backoff = Backoff()
        while True:
            try:
                follow_ups = self.store.commit(
                    execution.job,
                    effects,
                    lock_ms=self.settings.lock_ms,
                    result=execution.result_raw,
                    started_ms=execution.started_ms,
                )
                break
            except Exception as exc:
                if is_transient(exc) and not self.abort.is_set():
                    self.redis.down(exc)
                    self.abort.wait(backoff.failed())
                    continue
                if isinstance(exc, OptimisticLockingError):
                    self.metrics.add(m.COMMIT_CONFLICT)
                execution.outcome, execution.error = FAILED, exc
                execution.details = (
                    None if isinstance(exc, OptimisticLockingError) else (traceback.format_exc())
                )
                return None
        self.redis.up()
        self.metrics.add(m.SUCCESSFUL)
        self.metrics.add(m.LOCKED_EXCLUSIVE, len(follow_ups))
        self.held.add(follow_ups)
        self.held.drop([execution.job])
        return follow_ups
