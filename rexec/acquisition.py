"""How many jobs to acquire next and how long to wait first (pure: no I/O, no clock).

A port of Camunda 7's ``BackoffJobAcquisitionStrategy``. Two exponential waits are
kept as *levels* (0 means "no wait"):

* idle: no (or too few) jobs were available, so poll less often;
* backoff: jobs were there but other acquirers locked them first (optimistic locking
  failures), so back off, with jitter, and ask for more jobs per cycle to spread out.

The wait for level ``L`` is ``base * factor ** (L - 1)``, or the maximum once ``L``
reaches the maximum level ``int(log10(max // base) / log10(factor)) + 2``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from rexec.errors import ValidationError

__all__ = [
    "EXECUTION_SATURATION_WAIT_MS",
    "AcquisitionCycle",
    "BackoffJobAcquisitionStrategy",
]

EXECUTION_SATURATION_WAIT_MS = 100
"""Wait when every batch handed to the executor was rejected (its queue is full)."""

# Camunda computes levels and job counts in Java ints; mirroring their saturation keeps
# odd configurations (factor == 1, huge factors) behaving as they do there.
_JAVA_INT_MAX = 2**31 - 1


@dataclass(frozen=True, slots=True)
class AcquisitionCycle:
    """What one acquisition cycle observed; fed to
    :meth:`BackoffJobAcquisitionStrategy.reconfigure`.

    ``batches_acquired`` counts the batches locked by this cycle (jobs that failed to
    lock excluded); ``batches_rejected`` counts the batches the executor refused
    because it was saturated (it may include batches resubmitted from earlier cycles).
    ``job_added`` says a wake-up ("new job") notification arrived during the cycle.
    """

    jobs_requested: int
    batches_acquired: int
    failed_to_lock: int
    batches_rejected: int
    job_added: bool = False
    exception: BaseException | None = None

    def __post_init__(self) -> None:
        for name in ("jobs_requested", "batches_acquired", "failed_to_lock", "batches_rejected"):
            value = getattr(self, name)
            if value < 0:
                raise ValidationError(f"{name} must be >= 0, got {value}")


class BackoffJobAcquisitionStrategy:
    """Idle and optimistic-locking backoff between acquisition cycles.

    Call :meth:`reconfigure` after every cycle, then :meth:`wait_time_ms` (once: it
    draws the jitter) and :meth:`num_jobs_to_acquire` for the next one. The caller
    subtracts the time the acquisition itself took from the wait.
    """

    __slots__ = (
        "_apply_jitter",
        "_backoff_decrease_threshold",
        "_backoff_increase_factor",
        "_backoff_level",
        "_base_backoff_wait_ms",
        "_base_idle_wait_ms",
        "_base_num_jobs",
        "_clean_cycles",
        "_execution_saturated",
        "_idle_increase_factor",
        "_idle_level",
        "_max_backoff_level",
        "_max_backoff_wait_ms",
        "_max_idle_level",
        "_max_idle_wait_ms",
        "_num_jobs",
        "_random",
    )

    def __init__(
        self,
        *,
        base_idle_wait_ms: int = 50,
        idle_increase_factor: float = 2.0,
        max_idle_wait_ms: int = 2000,
        base_backoff_wait_ms: int = 50,
        backoff_increase_factor: float = 2.0,
        max_backoff_wait_ms: int = 1000,
        backoff_decrease_threshold: int = 100,
        base_num_jobs: int = 50,
        random: Callable[[], float] = random.random,
    ) -> None:
        """Factors <= 0 or a maximum below its base turn that wait off (as in Camunda).

        ``random`` returns a float in [0, 1) for the backoff jitter; inject one in tests.
        """
        for name, value in (
            ("base_idle_wait_ms", base_idle_wait_ms),
            ("max_idle_wait_ms", max_idle_wait_ms),
            ("base_backoff_wait_ms", base_backoff_wait_ms),
            ("max_backoff_wait_ms", max_backoff_wait_ms),
            ("backoff_decrease_threshold", backoff_decrease_threshold),
        ):
            if value < 0:
                raise ValidationError(f"{name} must be >= 0, got {value}")
        if base_num_jobs <= 0:
            raise ValidationError(f"base_num_jobs must be > 0, got {base_num_jobs}")

        self._base_idle_wait_ms = base_idle_wait_ms
        self._idle_increase_factor = idle_increase_factor
        self._max_idle_wait_ms = max_idle_wait_ms
        self._max_idle_level = _max_level(base_idle_wait_ms, idle_increase_factor, max_idle_wait_ms)
        self._idle_level = 0

        self._base_backoff_wait_ms = base_backoff_wait_ms
        self._backoff_increase_factor = backoff_increase_factor
        self._max_backoff_wait_ms = max_backoff_wait_ms
        self._max_backoff_level = _max_level(
            base_backoff_wait_ms, backoff_increase_factor, max_backoff_wait_ms
        )
        self._backoff_level = 0
        self._backoff_decrease_threshold = backoff_decrease_threshold
        self._clean_cycles = 0
        self._apply_jitter = False

        self._base_num_jobs = base_num_jobs
        self._num_jobs = base_num_jobs
        self._execution_saturated = False
        self._random = random

    @property
    def idle_level(self) -> int:
        """Current idle level, 0 (not idle) to :attr:`max_idle_level`."""
        return self._idle_level

    @property
    def backoff_level(self) -> int:
        """Current backoff level, 0 (no backoff) to :attr:`max_backoff_level`."""
        return self._backoff_level

    @property
    def max_idle_level(self) -> int:
        """Level at which the idle wait is ``max_idle_wait_ms``; 0 if idling is off."""
        return self._max_idle_level

    @property
    def max_backoff_level(self) -> int:
        """Level at which the backoff wait is ``max_backoff_wait_ms``; 0 if backoff is off."""
        return self._max_backoff_level

    def reconfigure(self, cycle: AcquisitionCycle) -> None:
        """Update the levels and the next request size from what a cycle observed."""
        self._reconfigure_idle_level(cycle)
        self._reconfigure_backoff_level(cycle)
        self._reconfigure_num_jobs(cycle)
        self._execution_saturated = _all_submitted_batches_rejected(cycle)

    def wait_time_ms(self) -> int:
        """Milliseconds to wait before the next cycle (jitter drawn on each call)."""
        if self._idle_level > 0:
            return self._idle_wait_ms()
        if self._backoff_level > 0:
            return self._backoff_wait_ms()
        if self._execution_saturated:
            return EXECUTION_SATURATION_WAIT_MS
        return 0

    def num_jobs_to_acquire(self) -> int:
        """How many jobs the next cycle should request (never negative)."""
        return self._num_jobs

    def _reconfigure_idle_level(self, cycle: AcquisitionCycle) -> None:
        if cycle.job_added:
            # A wake-up means work is waiting right now: any idle wait would only delay it.
            self._idle_level = 0
        elif _is_idle(cycle) or cycle.exception is not None:
            # An acquisition that failed outright is treated like an idle one so that a
            # broken store is not hammered in a tight loop.
            self._idle_level = min(self._idle_level + 1, self._max_idle_level)
        else:
            self._idle_level = 0

    def _reconfigure_backoff_level(self, cycle: AcquisitionCycle) -> None:
        if cycle.failed_to_lock > 0:
            self._clean_cycles = 0
            # Jitter stops competing acquirers from waking up in lock step again.
            self._apply_jitter = True
            self._backoff_level = min(self._backoff_level + 1, self._max_backoff_level)
        else:
            self._apply_jitter = False
            self._clean_cycles += 1
            # Step down slowly: one level per threshold clean cycles, not all at once,
            # so contention that merely paused does not bring the stampede back.
            if self._clean_cycles >= self._backoff_decrease_threshold and self._backoff_level > 0:
                self._backoff_level -= 1
                self._clean_cycles = 0

    def _reconfigure_num_jobs(self, cycle: AcquisitionCycle) -> None:
        # Backing-off acquirers ask for more jobs so that competitors pick from a wider
        # window and collide less; rejected batches are still waiting to be resubmitted,
        # so they take up part of the next request.
        try:
            scaled = self._base_num_jobs * self._backoff_increase_factor**self._backoff_level
        except OverflowError:
            scaled = math.inf
        requested = _JAVA_INT_MAX if scaled >= _JAVA_INT_MAX else int(scaled)
        self._num_jobs = max(0, requested - cycle.batches_rejected)

    def _idle_wait_ms(self) -> int:
        return _level_wait_ms(
            self._idle_level,
            self._max_idle_level,
            self._base_idle_wait_ms,
            self._idle_increase_factor,
            self._max_idle_wait_ms,
        )

    def _backoff_wait_ms(self) -> int:
        wait_ms = _level_wait_ms(
            self._backoff_level,
            self._max_backoff_level,
            self._base_backoff_wait_ms,
            self._backoff_increase_factor,
            self._max_backoff_wait_ms,
        )
        if self._apply_jitter:
            # Bounded to +50 % so the maximum backoff stays predictable.
            wait_ms = int(wait_ms + self._random() * (wait_ms // 2))
        return wait_ms


def _is_idle(cycle: AcquisitionCycle) -> bool:
    # Jobs that failed to lock were available, so they count against idleness.
    return cycle.batches_acquired + cycle.failed_to_lock < cycle.jobs_requested


def _all_submitted_batches_rejected(cycle: AcquisitionCycle) -> bool:
    # Camunda's test: something was rejected and nothing submitted got through. Rejected
    # may exceed acquired because resubmitted batches from earlier cycles count too.
    return cycle.batches_rejected > 0 and cycle.batches_rejected >= cycle.batches_acquired


def _level_wait_ms(level: int, top_level: int, base_ms: int, factor: float, max_ms: int) -> int:
    if level <= 0:
        return 0
    if level >= top_level:
        return max_ms
    return int(base_ms * factor ** (level - 1))


def _max_level(base_ms: int, factor: float, max_ms: int) -> int:
    # The first level whose wait is the maximum; 0 turns the wait off.
    if not (base_ms > 0 and max_ms > 0 and factor > 0 and max_ms >= base_ms):
        return 0
    log_ratio = math.log10(max_ms // base_ms)
    log_factor = math.log10(factor)
    if log_factor == 0.0:
        # factor == 1: Java divides by 0.0. A ratio of 1 gives 0/0 = NaN, which Java
        # casts to 0 (level 2); any larger ratio gives +Infinity, which saturates to
        # Integer.MAX_VALUE and overflows to a negative level: the wait never engages.
        return 2 if log_ratio == 0.0 else 0
    # int() truncates toward zero as Java's (int) cast does; the two differ from floor
    # only for 0 < factor < 1, where Camunda's behaviour is kept.
    level = int(log_ratio / log_factor) + 2
    # Java's int arithmetic wraps such a level to a negative one, which never engages.
    if level > _JAVA_INT_MAX:
        return 0
    return max(level, 0)
