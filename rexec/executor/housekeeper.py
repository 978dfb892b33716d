"""Housekeeping: timeouts, lock renewal, metrics, heartbeats, periodic ticks — one
thread, a short tick.

Each duty runs on its own schedule and in its own ``try``: a renewal that fails does
not stop the metrics flush, and nothing stops the tick. Renewal covers exactly the jobs
held (buffered, running, or waiting for their commit); a refused renewal means another
worker owns the job now, and it is dropped.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson

from rexec import metrics as m
from rexec import timeseries
from rexec.acquisition import BackoffJobAcquisitionStrategy
from rexec.errors import JobTimeoutError, is_transient, safe_str
from rexec.executor.committer import Committer
from rexec.executor.event_loop import EventLoop
from rexec.executor.execution import TIMED_OUT, Chain, Execution
from rexec.executor.pacing import Slot
from rexec.executor.runtime import Runtime
from rexec.executor.slots import Slots
from rexec.executor.ticker import periodic_ticker
from rexec.status import Status

log = logging.getLogger("rexec.worker")

TICK_S = 0.02
RETIRE_EVERY_S = 30.0
RESIZE_EVERY_S = 0.5
TUNE_TICKS = 2  # buffer sizings per step of the slots' hill climb (pacing.py)


class Housekeeper:
    def __init__(
        self,
        rt: Runtime,
        slots: Slots,
        event_loop: EventLoop | None,
        committer: Committer,
        *,
        info: dict[str, Any],
        beat: Callable[[float, int, float], None] | None = None,
    ) -> None:
        self.rt = rt
        self.slots = slots
        self.event_loop = event_loop
        self.committer = committer
        self.info = info
        self._beat = beat
        self._expires: dict[str, int] = {}
        self._failing: dict[str, int] = {}  # duty -> consecutive failures
        self.thread = threading.Thread(target=self.run, name="rexec-housekeeping", daemon=True)
        self.saturated = False  # set by the acquirer
        self.strategy: BackoffJobAcquisitionStrategy | None = None  # its levels, for show
        self._completed_before = 0
        self.ticker = periodic_ticker(rt)
        self._rates: list[float] = []

    def run(self) -> None:
        rt = self.rt
        settings = rt.settings
        renew_every = max(0.05, min(settings.lock_ms / 4000, settings.metrics_interval_s))
        now = time.monotonic()
        due = {
            "renew": now,
            "flush": now + settings.metrics_interval_s,
            "retire": now + RETIRE_EVERY_S * (0.5 + random.random()),
            "reclaim": now,
            "resize": now + RESIZE_EVERY_S,
        }
        while not rt.abort.wait(TICK_S):
            now = time.monotonic()
            self._duty("timeouts", self.expire_timeouts)
            self._duty("rebalance", self.slots.rebalance)
            self._duty("beat", self.beat)
            self._duty("periodic", self.ticker.maybe_tick)
            if now >= due["renew"]:
                due["renew"] = now + renew_every
                self._duty("renewal", self.renew_locks)
            if now >= due["flush"]:
                due["flush"] = now + settings.metrics_interval_s
                self._duty("metrics flush", self.flush_metrics)
            if now >= due["resize"]:
                due["resize"] = now + RESIZE_EVERY_S
                self._duty("buffer sizing", self.resize)
            if self.saturated and now >= due["reclaim"]:
                # Saturated workers do not acquire; expired locks must not wait.
                due["reclaim"] = now + max(0.25, settings.lock_ms / 4000)
                self._duty("reclaim", rt.store.reclaim_expired_locks)
            if now >= due["retire"]:
                due["retire"] = now + RETIRE_EVERY_S
                self._duty("retire", lambda: m.retire_stale_workers(rt.store))

    def _duty(self, name: str, call: Callable[[], object]) -> None:
        try:
            call()
        except Exception as exc:
            if is_transient(exc):  # Redis away: said once per outage, no traceback
                self.rt.redis.down(exc)
                return
            failures = self._failing.get(name, 0) + 1
            self._failing[name] = failures
            if failures == 1:  # a bug: once per streak, with its traceback
                log.warning(
                    "%s: %s failed; retrying: %s", self.rt.id, name, safe_str(exc), exc_info=True
                )
        else:
            if self._failing.pop(name, 0):
                log.info("%s: %s works again", self.rt.id, name)

    # -- timeouts ---------------------------------------------------------------------------

    def expire_timeouts(self) -> None:
        now = time.monotonic()
        for slot in self.slots.slots():
            ex = slot.current
            if ex is not None and ex.deadline is not None and now >= ex.deadline:
                self._time_out(ex, slot)
        if self.event_loop is not None:
            grace = 1.0  # asyncio cancels it at the deadline; this is for one that ignores it
            for ex in list(self.event_loop.current):
                if ex.deadline is not None and now >= ex.deadline + grace:
                    self._time_out(ex, None)

    def _time_out(self, ex: Execution, slot: Slot | None) -> None:
        timeout = ex.definition.timeout_ms if ex.definition else 0
        error = JobTimeoutError(
            f"job {ex.job.id} ({ex.job.type}) ran past its timeout of {timeout} ms"
        )
        if not self.rt.executions.time_out(ex, error):
            return
        # A batch handler's call: the timeout owns its other jobs too (one handler is
        # abandoned, whatever the number of jobs it was given).
        for other in ex.batch:
            other_error = JobTimeoutError(
                f"job {other.job.id} ({other.job.type}) ran past its timeout of"
                f" {timeout} ms (in a batch of {len(ex.batch) + 1})"
            )
            if self.rt.executions.decide(other, TIMED_OUT, other_error):
                self.committer.submit([other])
        log.warning(
            "%s: job %s (%s) ran past its timeout of %s ms; failing it%s",
            self.rt.id,
            ex.job.id,
            ex.job.type,
            timeout,
            " once its handler returns (its process instance stays locked until then)"
            if ex.waits_for_handler
            else "",
        )
        rest: list[Chain] = []
        if slot is not None:
            rest = self.slots.abandon(slot, ex)
        elif ex.chain is not None and ex.chain.jobs:
            rest = [Chain(list(ex.chain.jobs))]
            ex.chain.jobs.clear()
        self.committer.give_back([job for chain in rest for job in chain.jobs])
        self.rt.capacity.give(1)
        if not ex.waits_for_handler:
            self.committer.submit([ex])

    # -- renewals -----------------------------------------------------------------------------

    def renew_locks(self) -> None:
        """Extends the locks of held jobs that have used half their lock time."""
        rt = self.rt
        lock_ms = rt.settings.lock_ms
        now = rt.now_ms()
        held = rt.held.snapshot()
        expires = self._expires
        due = [j for j in held if expires.get(j.id, j.lock_expires_ms or 0) - now < lock_ms // 2]
        ids = {job.id for job in held}
        for gone in [i for i in expires if i not in ids]:
            del expires[gone]
        if not due:
            return
        new_expiry, statuses = rt.store.extend_locks(due, lock_ms)
        rt.redis.up()
        lost = []
        for job, status in zip(due, statuses, strict=True):
            if status is Status.OK:
                expires[job.id] = new_expiry
            else:
                expires.pop(job.id, None)
                lost.append(job.id)
        if lost:
            rt.held.lose(lost)
            log.warning(
                "%s: lost the lock of %d job(s) (%s): they had expired and were taken over",
                rt.id,
                len(lost),
                ", ".join(lost[:10]),
            )

    # -- metrics, heartbeats, buffer --------------------------------------------------------

    def beat(self) -> None:
        """The supervisor's view: alive, and how many handlers are abandoned (a slot is
        wedged when its abandoned handler still runs a lock time after it started)."""
        abandoned = self.rt.executions.abandoned()
        now = time.monotonic()
        oldest = max((now - ex.started for ex in abandoned), default=0.0)
        health = self.rt.health
        health.beat()
        health.set_abandoned(len(abandoned), oldest)
        wedged_after = self.rt.settings.lock_ms / 1000
        health.set_wedged(sum(1 for ex in abandoned if now - ex.started > wedged_after))
        if self._beat is not None:
            self._beat(now, len(abandoned), oldest)

    def flush_metrics(self) -> None:
        rt = self.rt
        pipe = rt.store.client.pipeline(transaction=False)
        rt.metrics.flush(pipe, rt.keys)
        pipe.zadd(rt.keys.heartbeats, {rt.id: rt.now_ms()})
        threads = self.threads()
        dead = [t.name for t in threads if not t.is_alive()]
        if self.strategy is not None:
            self.info.update(
                idle_level=self.strategy.idle_level, backoff_level=self.strategy.backoff_level
            )
        self.info.update(
            threads_alive=len(threads) - len(dead),
            threads_expected=len(threads),
            threads_dead=dead,
            abandoned=len(rt.executions.abandoned()),
            held=len(rt.held),
        )
        pipe.hset(rt.keys.workers, rt.id, orjson.dumps(self.info))
        pipe.execute()
        rt.redis.up()
        rt.health.set_registered()  # announced, if Redis was away at the start
        timeseries.record(rt.store)  # the cockpit's charts (one sample per 10 s, cluster-wide)

    def threads(self) -> list[threading.Thread]:
        """The threads this process needs alive (abandoned slots are not counted)."""
        threads = [self.committer.thread, self.thread]
        threads += [s.thread for s in self.slots.slots() if s.thread and not s.abandoned]
        if self.event_loop is not None:
            threads.append(self.event_loop.thread)
        return threads

    def resize(self) -> None:
        total = self.rt.capacity.released
        rate = (total - self._completed_before) / RESIZE_EVERY_S
        self.rt.capacity.resize(rate)
        self._completed_before = total
        self._rates.append(rate)
        if len(self._rates) == TUNE_TICKS:  # a rate over a second: less noisy
            self.slots.pacing.tune(sum(self._rates) / TUNE_TICKS, self.slots.has_work())
            self._rates.clear()
