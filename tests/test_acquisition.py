"""BackoffJobAcquisitionStrategy: Camunda 7's own cases, edge cases and properties."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rexec.acquisition import (
    EXECUTION_SATURATION_WAIT_MS,
    AcquisitionCycle,
    BackoffJobAcquisitionStrategy,
)

# Camunda's BackoffJobAcquisitionStrategyTest configuration.
NUM_JOBS = 10


def camunda_unit_strategy(
    random: Callable[[], float] = lambda: 0.5,
) -> BackoffJobAcquisitionStrategy:
    return BackoffJobAcquisitionStrategy(
        base_idle_wait_ms=50,
        idle_increase_factor=1.5,
        max_idle_wait_ms=500,
        base_backoff_wait_ms=80,
        backoff_increase_factor=2.0,
        max_backoff_wait_ms=1000,
        backoff_decrease_threshold=3,
        base_num_jobs=NUM_JOBS,
        random=random,
    )


# Camunda's JobAcquisitionBackoffTest configuration (idle off: base 0).
def camunda_backoff_strategy(
    random: Callable[[], float] = lambda: 0.5,
) -> BackoffJobAcquisitionStrategy:
    return BackoffJobAcquisitionStrategy(
        base_idle_wait_ms=0,
        base_backoff_wait_ms=1000,
        backoff_increase_factor=2.0,
        max_backoff_wait_ms=5000,
        backoff_decrease_threshold=2,
        base_num_jobs=3,
        random=random,
    )


# Camunda's JobAcquisitionBackoffIdleTest configuration.
def camunda_idle_strategy() -> BackoffJobAcquisitionStrategy:
    return BackoffJobAcquisitionStrategy(
        base_idle_wait_ms=5000,
        idle_increase_factor=2.0,
        max_idle_wait_ms=60000,
        base_num_jobs=1,
    )


def empty(requested: int = NUM_JOBS) -> AcquisitionCycle:
    return AcquisitionCycle(
        jobs_requested=requested, batches_acquired=0, failed_to_lock=0, batches_rejected=0
    )


def full(requested: int = NUM_JOBS, rejected: int = 0) -> AcquisitionCycle:
    return AcquisitionCycle(
        jobs_requested=requested,
        batches_acquired=requested,
        failed_to_lock=0,
        batches_rejected=rejected,
    )


def lock_lost(requested: int, failed: int | None = None) -> AcquisitionCycle:
    """Every job was there, but some (default: all) were locked by a competitor."""
    failed = requested if failed is None else failed
    return AcquisitionCycle(
        jobs_requested=requested,
        batches_acquired=requested - failed,
        failed_to_lock=failed,
        batches_rejected=0,
    )


def never_called() -> float:
    pytest.fail("random() must only be drawn in a cycle that lost locks")


# --- Camunda's BackoffJobAcquisitionStrategyTest --------------------------------------


def test_initial_state_requests_base_jobs_without_waiting() -> None:
    strategy = camunda_unit_strategy()
    assert strategy.wait_time_ms() == 0
    assert strategy.num_jobs_to_acquire() == NUM_JOBS
    assert (strategy.idle_level, strategy.backoff_level) == (0, 0)
    assert (strategy.max_idle_level, strategy.max_backoff_level) == (7, 5)


def test_idle_wait_grows_exponentially_to_the_max() -> None:
    strategy = camunda_unit_strategy()
    waits = []
    for _ in range(9):
        strategy.reconfigure(empty())
        waits.append(strategy.wait_time_ms())
    assert waits == [50, 75, 112, 168, 253, 379, 500, 500, 500]
    assert strategy.idle_level == strategy.max_idle_level == 7


def test_acquisition_after_idle_wait_resets_idle_time() -> None:
    strategy = camunda_unit_strategy()
    strategy.reconfigure(empty())
    assert strategy.wait_time_ms() == 50

    strategy.reconfigure(full())

    assert strategy.wait_time_ms() == 0
    assert strategy.idle_level == 0


def test_acquire_less_jobs_on_rejection() -> None:
    strategy = camunda_unit_strategy()
    strategy.reconfigure(full(rejected=5))
    assert strategy.num_jobs_to_acquire() == NUM_JOBS - 5
    assert strategy.wait_time_ms() == 0


def test_wait_time_on_full_rejection() -> None:
    strategy = camunda_unit_strategy()
    strategy.reconfigure(full(rejected=NUM_JOBS))
    assert strategy.wait_time_ms() == EXECUTION_SATURATION_WAIT_MS == 100
    assert strategy.num_jobs_to_acquire() == 0


# --- Camunda's JobAcquisitionBackoffTest ------------------------------------------------


def test_backoff_on_optimistic_locking() -> None:
    strategy = camunda_backoff_strategy()
    winner = camunda_backoff_strategy(random=never_called)

    strategy.reconfigure(lock_lost(3))
    winner.reconfigure(full(3))
    assert 1000 <= strategy.wait_time_ms() < 1500
    assert strategy.num_jobs_to_acquire() == 6
    assert winner.wait_time_ms() == 0
    assert winner.num_jobs_to_acquire() == 3

    strategy.reconfigure(lock_lost(6))
    winner.reconfigure(full(3))
    assert 2000 <= strategy.wait_time_ms() < 3000
    assert strategy.num_jobs_to_acquire() == 12
    assert winner.wait_time_ms() == 0
    assert winner.num_jobs_to_acquire() == 3


def test_backoff_decrease_after_threshold_clean_cycles() -> None:
    strategy = camunda_backoff_strategy()
    strategy.reconfigure(lock_lost(3))
    assert strategy.wait_time_ms() > 0

    strategy.reconfigure(full(6))
    assert strategy.wait_time_ms() == 1000  # not decreased yet, and no jitter any more
    strategy.reconfigure(full(6))

    assert strategy.wait_time_ms() == 0
    assert strategy.backoff_level == 0
    assert strategy.num_jobs_to_acquire() == 3


def test_two_losing_cycles_need_two_thresholds_of_clean_cycles() -> None:
    strategy = camunda_backoff_strategy()
    strategy.reconfigure(lock_lost(3))
    strategy.reconfigure(lock_lost(6))
    assert strategy.backoff_level == 2

    strategy.reconfigure(full(12))
    strategy.reconfigure(full(12))
    # One level down per threshold: still backing off, at the level-1 time, unjittered.
    assert strategy.backoff_level == 1
    assert strategy.wait_time_ms() == 1000
    assert strategy.num_jobs_to_acquire() == 6

    strategy.reconfigure(full(6))
    strategy.reconfigure(full(6))
    assert strategy.backoff_level == 0
    assert strategy.wait_time_ms() == 0
    assert strategy.num_jobs_to_acquire() == 3


def test_backoff_wait_reaches_its_max() -> None:
    strategy = camunda_backoff_strategy(random=lambda: 0.0)
    waits = []
    for _ in range(6):
        strategy.reconfigure(lock_lost(strategy.num_jobs_to_acquire()))
        waits.append(strategy.wait_time_ms())
    assert waits == [1000, 2000, 4000, 5000, 5000, 5000]
    assert strategy.backoff_level == strategy.max_backoff_level == 4
    assert strategy.num_jobs_to_acquire() == 3 * 2**4


# --- Camunda's JobAcquisitionBackoffIdleTest --------------------------------------------


def test_idle_wait_to_max_then_wake_up_resets() -> None:
    strategy = camunda_idle_strategy()
    waits = []
    for _ in range(6):
        strategy.reconfigure(empty(1))
        waits.append(strategy.wait_time_ms())
    assert waits == [5000, 10000, 20000, 40000, 60000, 60000]

    strategy.reconfigure(
        AcquisitionCycle(
            jobs_requested=1,
            batches_acquired=0,
            failed_to_lock=0,
            batches_rejected=0,
            job_added=True,
        )
    )
    assert strategy.idle_level == 0
    assert strategy.wait_time_ms() == 0

    strategy.reconfigure(empty(1))
    assert strategy.wait_time_ms() == 5000


def test_wake_up_wins_over_an_empty_cycle() -> None:
    strategy = camunda_idle_strategy()
    strategy.reconfigure(empty(1))
    strategy.reconfigure(
        AcquisitionCycle(
            jobs_requested=1,
            batches_acquired=0,
            failed_to_lock=0,
            batches_rejected=0,
            job_added=True,
            exception=RuntimeError("redis down"),
        )
    )
    assert strategy.wait_time_ms() == 0


# --- idle level -------------------------------------------------------------------------


def test_exception_raises_the_idle_level_even_when_jobs_were_acquired() -> None:
    strategy = camunda_unit_strategy()
    failed = AcquisitionCycle(
        jobs_requested=NUM_JOBS,
        batches_acquired=NUM_JOBS,
        failed_to_lock=0,
        batches_rejected=0,
        exception=ConnectionError("redis down"),
    )
    strategy.reconfigure(failed)
    assert strategy.idle_level == 1
    assert strategy.wait_time_ms() == 50
    strategy.reconfigure(failed)
    assert strategy.wait_time_ms() == 75


def test_failed_locks_count_as_available_jobs() -> None:
    strategy = camunda_unit_strategy(random=lambda: 0.0)
    strategy.reconfigure(lock_lost(NUM_JOBS, failed=4))
    assert strategy.idle_level == 0
    assert strategy.backoff_level == 1
    assert strategy.wait_time_ms() == 80


def test_idle_wait_wins_over_backoff_wait_and_has_no_jitter() -> None:
    strategy = camunda_unit_strategy(random=never_called)
    strategy.reconfigure(
        AcquisitionCycle(
            jobs_requested=NUM_JOBS, batches_acquired=2, failed_to_lock=3, batches_rejected=0
        )
    )
    assert (strategy.idle_level, strategy.backoff_level) == (1, 1)
    assert strategy.wait_time_ms() == 50


def test_zero_jobs_requested_is_not_idle() -> None:
    strategy = camunda_unit_strategy()
    strategy.reconfigure(empty(requested=0))
    assert strategy.idle_level == 0
    assert strategy.wait_time_ms() == 0


# --- backoff level and jitter -----------------------------------------------------------


@pytest.mark.parametrize(
    ("draw", "first_ms", "second_ms"),
    [(lambda: 0.0, 1000, 2000), (lambda: 0.5, 1250, 2500), (lambda: 0.999, 1499, 2999)],
)
def test_jitter_is_deterministic_with_injected_random(
    draw: Callable[[], float], first_ms: int, second_ms: int
) -> None:
    strategy = camunda_backoff_strategy(random=draw)
    strategy.reconfigure(lock_lost(3))
    assert strategy.wait_time_ms() == first_ms
    strategy.reconfigure(lock_lost(6))
    assert strategy.wait_time_ms() == second_ms


def test_jitter_only_in_the_cycle_that_lost_locks() -> None:
    strategy = camunda_backoff_strategy(random=lambda: 0.999)
    strategy.reconfigure(lock_lost(3))
    assert strategy.wait_time_ms() == 1499
    strategy.reconfigure(full(6))
    assert strategy.wait_time_ms() == 1000


def test_jitter_uses_half_the_wait_rounded_down() -> None:
    strategy = BackoffJobAcquisitionStrategy(
        base_idle_wait_ms=0, base_backoff_wait_ms=5, max_backoff_wait_ms=5, random=lambda: 0.999
    )
    strategy.reconfigure(lock_lost(50))
    # 5 + 0.999 * (5 // 2) = 6.998, truncated.
    assert strategy.wait_time_ms() == 6


def test_decrease_threshold_over_many_clean_cycles() -> None:
    strategy = camunda_unit_strategy(random=lambda: 0.0)
    for _ in range(10):
        strategy.reconfigure(lock_lost(strategy.num_jobs_to_acquire()))
    assert strategy.backoff_level == strategy.max_backoff_level == 5

    levels = []
    for _ in range(18):
        strategy.reconfigure(full(strategy.num_jobs_to_acquire()))
        levels.append(strategy.backoff_level)
    assert levels == [5, 5, 4, 4, 4, 3, 3, 3, 2, 2, 2, 1, 1, 1, 0, 0, 0, 0]
    assert strategy.wait_time_ms() == 0
    assert strategy.num_jobs_to_acquire() == NUM_JOBS


def test_a_lock_failure_restarts_the_clean_cycle_count() -> None:
    strategy = camunda_unit_strategy(random=lambda: 0.0)
    strategy.reconfigure(lock_lost(NUM_JOBS))
    strategy.reconfigure(lock_lost(20))
    assert strategy.backoff_level == 2

    strategy.reconfigure(full(40))
    strategy.reconfigure(full(40))
    strategy.reconfigure(lock_lost(40, failed=1))
    strategy.reconfigure(full(80))
    strategy.reconfigure(full(80))
    assert strategy.backoff_level == 3
    strategy.reconfigure(full(80))
    assert strategy.backoff_level == 2


def test_clean_cycles_at_level_zero_are_not_banked() -> None:
    strategy = camunda_unit_strategy(random=lambda: 0.0)
    for _ in range(10):
        strategy.reconfigure(full())
    strategy.reconfigure(lock_lost(NUM_JOBS))
    strategy.reconfigure(full(20))
    assert strategy.backoff_level == 1


def test_threshold_zero_steps_down_on_every_clean_cycle() -> None:
    strategy = BackoffJobAcquisitionStrategy(base_idle_wait_ms=0, backoff_decrease_threshold=0)
    for _ in range(3):
        strategy.reconfigure(lock_lost(strategy.num_jobs_to_acquire()))
    assert strategy.backoff_level == 3
    strategy.reconfigure(full(strategy.num_jobs_to_acquire()))
    assert strategy.backoff_level == 2
    strategy.reconfigure(full(strategy.num_jobs_to_acquire()))
    assert strategy.backoff_level == 1


# --- jobs to acquire and execution saturation -------------------------------------------


def test_rejections_are_taken_from_the_scaled_request() -> None:
    strategy = camunda_unit_strategy()
    strategy.reconfigure(
        AcquisitionCycle(
            jobs_requested=NUM_JOBS, batches_acquired=7, failed_to_lock=3, batches_rejected=4
        )
    )
    assert strategy.num_jobs_to_acquire() == 2 * NUM_JOBS - 4


def test_jobs_to_acquire_never_negative() -> None:
    strategy = camunda_unit_strategy()
    strategy.reconfigure(full(rejected=25))
    assert strategy.num_jobs_to_acquire() == 0


def test_rejecting_more_than_acquired_is_saturation() -> None:
    # Batches resubmitted from the previous cycle were rejected again, and nothing new came.
    strategy = camunda_unit_strategy()
    strategy.reconfigure(full(requested=2, rejected=5))
    assert strategy.wait_time_ms() == 100


def test_saturation_waits_only_without_idle_or_backoff() -> None:
    strategy = camunda_unit_strategy(random=lambda: 0.0)
    strategy.reconfigure(
        AcquisitionCycle(
            jobs_requested=NUM_JOBS, batches_acquired=8, failed_to_lock=2, batches_rejected=8
        )
    )
    assert strategy.wait_time_ms() == 80


def test_saturation_is_recomputed_every_cycle() -> None:
    strategy = camunda_unit_strategy()
    strategy.reconfigure(full(rejected=NUM_JOBS))
    strategy.reconfigure(full(requested=0))
    assert strategy.wait_time_ms() == 0


# --- max level formula and feature-off cases --------------------------------------------


@pytest.mark.parametrize(
    ("base_ms", "factor", "max_ms", "expected"),
    [
        (50, 1.5, 500, 7),
        (80, 2.0, 1000, 5),
        (1000, 2.0, 5000, 4),
        (5000, 2.0, 60000, 5),
        (100, 2.0, 100, 2),
        (100, 2.0, 199, 2),  # max // base == 1
        (100, 10.0, 100_000, 5),
        # factor == 1: Java's 0/0 -> NaN -> 0 gives level 2; x/0 -> Infinity overflows.
        (100, 1.0, 150, 2),
        (100, 1.0, 1000, 0),
        # just above 1: a level beyond Java's int range wraps negative there, so it is off.
        (100, 1.0 + 1e-12, 1000, 0),
        (100, 1.001, 1000, 2305),
        # 0 < factor < 1: Java's (int) cast truncates toward zero, negative levels are off.
        (100, 0.5, 300, 1),
        (100, 0.5, 800, 0),
        # feature off
        (0, 2.0, 1000, 0),
        (50, 2.0, 0, 0),
        (50, 0.0, 500, 0),
        (50, -2.0, 500, 0),
        (500, 2.0, 50, 0),
    ],
)
def test_max_level(base_ms: int, factor: float, max_ms: int, expected: int) -> None:
    strategy = BackoffJobAcquisitionStrategy(
        base_idle_wait_ms=base_ms,
        idle_increase_factor=factor,
        max_idle_wait_ms=max_ms,
        base_backoff_wait_ms=base_ms,
        backoff_increase_factor=factor,
        max_backoff_wait_ms=max_ms,
    )
    assert strategy.max_idle_level == expected
    assert strategy.max_backoff_level == expected


def test_idle_off_never_waits() -> None:
    strategy = BackoffJobAcquisitionStrategy(base_idle_wait_ms=0)
    for _ in range(5):
        strategy.reconfigure(empty())
    assert strategy.idle_level == 0
    assert strategy.wait_time_ms() == 0


def test_backoff_off_never_waits_nor_scales_the_request() -> None:
    strategy = BackoffJobAcquisitionStrategy(
        base_idle_wait_ms=0, max_backoff_wait_ms=10, random=never_called
    )
    for _ in range(5):
        strategy.reconfigure(lock_lost(50))
    assert strategy.backoff_level == 0
    assert strategy.wait_time_ms() == 0
    assert strategy.num_jobs_to_acquire() == 50


def test_factor_below_one_jumps_straight_to_the_max() -> None:
    strategy = BackoffJobAcquisitionStrategy(
        base_idle_wait_ms=100, idle_increase_factor=0.5, max_idle_wait_ms=300
    )
    strategy.reconfigure(empty())
    assert strategy.wait_time_ms() == 300


def test_huge_factor_saturates_the_request_like_java() -> None:
    strategy = BackoffJobAcquisitionStrategy(
        base_idle_wait_ms=0,
        backoff_increase_factor=1e300,
        base_backoff_wait_ms=100,
        max_backoff_wait_ms=100,
        random=lambda: 0.0,
    )
    strategy.reconfigure(lock_lost(50))
    strategy.reconfigure(lock_lost(50))
    assert strategy.backoff_level == 2
    assert strategy.wait_time_ms() == 100
    assert strategy.num_jobs_to_acquire() == 2**31 - 1


# --- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_idle_wait_ms": -1}, "base_idle_wait_ms must be >= 0"),
        ({"max_idle_wait_ms": -1}, "max_idle_wait_ms must be >= 0"),
        ({"base_backoff_wait_ms": -1}, "base_backoff_wait_ms must be >= 0"),
        ({"max_backoff_wait_ms": -5}, "max_backoff_wait_ms must be >= 0"),
        ({"backoff_decrease_threshold": -1}, "backoff_decrease_threshold must be >= 0"),
        ({"base_num_jobs": 0}, "base_num_jobs must be > 0"),
        ({"base_num_jobs": -3}, "base_num_jobs must be > 0"),
    ],
)
def test_invalid_configuration_raises_value_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BackoffJobAcquisitionStrategy(**kwargs)


@pytest.mark.parametrize(
    "field", ["jobs_requested", "batches_acquired", "failed_to_lock", "batches_rejected"]
)
def test_negative_cycle_counts_raise_value_error(field: str) -> None:
    counts: dict[str, Any] = dict.fromkeys(
        ("jobs_requested", "batches_acquired", "failed_to_lock", "batches_rejected"), 0
    )
    counts[field] = -1
    with pytest.raises(ValueError, match=f"{field} must be >= 0"):
        AcquisitionCycle(**counts)


def test_cycle_is_a_frozen_value() -> None:
    cycle = empty()
    assert cycle == empty()
    with pytest.raises(AttributeError):
        cycle.jobs_requested = 3  # type: ignore[misc]


# --- properties -------------------------------------------------------------------------

waits_ms = st.integers(min_value=0, max_value=100_000)
factors = st.one_of(
    st.sampled_from([-1.0, 0.0, 0.5, 1.0, 1.5, 2.0]),
    st.floats(min_value=-2.0, max_value=20.0, allow_nan=False),
)


@dataclass(frozen=True, slots=True)
class Config:
    base_idle_wait_ms: int
    idle_increase_factor: float
    max_idle_wait_ms: int
    base_backoff_wait_ms: int
    backoff_increase_factor: float
    max_backoff_wait_ms: int
    backoff_decrease_threshold: int
    base_num_jobs: int
    jitter_draw: float

    def build(self) -> BackoffJobAcquisitionStrategy:
        return BackoffJobAcquisitionStrategy(
            base_idle_wait_ms=self.base_idle_wait_ms,
            idle_increase_factor=self.idle_increase_factor,
            max_idle_wait_ms=self.max_idle_wait_ms,
            base_backoff_wait_ms=self.base_backoff_wait_ms,
            backoff_increase_factor=self.backoff_increase_factor,
            max_backoff_wait_ms=self.max_backoff_wait_ms,
            backoff_decrease_threshold=self.backoff_decrease_threshold,
            base_num_jobs=self.base_num_jobs,
            random=lambda: self.jitter_draw,
        )


configs = st.builds(
    Config,
    base_idle_wait_ms=waits_ms,
    idle_increase_factor=factors,
    max_idle_wait_ms=waits_ms,
    base_backoff_wait_ms=waits_ms,
    backoff_increase_factor=factors,
    max_backoff_wait_ms=waits_ms,
    backoff_decrease_threshold=st.integers(min_value=0, max_value=10),
    base_num_jobs=st.integers(min_value=1, max_value=1000),
    jitter_draw=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
counts = st.integers(min_value=0, max_value=200)
cycles = st.builds(
    AcquisitionCycle,
    jobs_requested=counts,
    batches_acquired=counts,
    failed_to_lock=st.one_of(st.just(0), counts),
    batches_rejected=st.one_of(st.just(0), counts),
    job_added=st.booleans(),
    exception=st.one_of(st.none(), st.just(RuntimeError("boom"))),
)


@settings(database=None, max_examples=300)
@given(configs, st.lists(cycles, max_size=60))
def test_waits_levels_and_requests_stay_in_bounds(
    config: Config, history: list[AcquisitionCycle]
) -> None:
    strategy = config.build()
    for cycle in history:
        strategy.reconfigure(cycle)
        wait_ms = strategy.wait_time_ms()

        assert 0 <= strategy.idle_level <= strategy.max_idle_level
        assert 0 <= strategy.backoff_level <= strategy.max_backoff_level
        assert strategy.num_jobs_to_acquire() >= 0
        assert isinstance(wait_ms, int)
        assert wait_ms >= 0
        if strategy.idle_level > 0:
            assert wait_ms <= config.max_idle_wait_ms
        elif strategy.backoff_level > 0:
            assert wait_ms <= config.max_backoff_wait_ms * 1.5
        else:
            assert wait_ms in (0, EXECUTION_SATURATION_WAIT_MS)


@settings(database=None, max_examples=300)
@given(configs, st.lists(cycles, max_size=60))
def test_levels_and_requests_follow_the_rules(
    config: Config, history: list[AcquisitionCycle]
) -> None:
    strategy = config.build()
    clean_cycles = 0  # a reference model of the backoff decrease
    for cycle in history:
        idle_before, backoff_before = strategy.idle_level, strategy.backoff_level
        strategy.reconfigure(cycle)

        idle = cycle.batches_acquired + cycle.failed_to_lock < cycle.jobs_requested
        if cycle.job_added:
            assert strategy.idle_level == 0
        elif idle or cycle.exception is not None:
            assert strategy.idle_level == min(idle_before + 1, strategy.max_idle_level)
        else:
            assert strategy.idle_level == 0

        if cycle.failed_to_lock > 0:
            clean_cycles = 0
            assert strategy.backoff_level == min(backoff_before + 1, strategy.max_backoff_level)
        else:
            clean_cycles += 1
            if clean_cycles >= config.backoff_decrease_threshold and backoff_before > 0:
                clean_cycles = 0
                assert strategy.backoff_level == backoff_before - 1
            else:
                assert strategy.backoff_level == backoff_before

        if strategy.backoff_level == 0:
            expected_jobs = config.base_num_jobs - cycle.batches_rejected
            assert strategy.num_jobs_to_acquire() == max(0, expected_jobs)


@settings(database=None)
@given(configs, st.integers(min_value=1, max_value=30))
def test_enough_idle_cycles_reach_exactly_the_max_idle_wait(config: Config, extra: int) -> None:
    strategy = config.build()
    for _ in range(strategy.max_idle_level + extra):
        strategy.reconfigure(empty())
    assert strategy.idle_level == strategy.max_idle_level
    expected_ms = config.max_idle_wait_ms if strategy.max_idle_level else 0
    assert strategy.wait_time_ms() == expected_ms
