"""Retry cycles (SPEC §3): parsing, and the wait before each retry.

Semantics, from rexec/retry.py and Store.fail: a job starts with ``retries`` equal to
the cycle's ``executions``; each failure decrements it and asks
``delay_ms(retries_left)`` (counted after the decrement) for the wait before the next
execution; at 0 retries the job is an incident instead.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rexec.errors import InvalidRetryCycleError, ValidationError
from rexec.retry import DEFAULT_RETRY_CYCLE, MAX_EXECUTIONS, RetryCycle, parse_duration_ms

MINUTE = 60_000


def waits_before_retries(cycle: RetryCycle) -> list[int]:
    """The wait after failure k = 1 .. executions - 1 of a job that started with
    ``cycle.executions`` retries (the last failure makes an incident, not a retry)."""
    return [cycle.delay_ms(cycle.executions - k) for k in range(1, cycle.executions)]


# -- parsing -------------------------------------------------------------------------------


def test_repeat_form() -> None:
    cycle = RetryCycle.parse("R5/PT5M")
    assert cycle.executions == 5
    assert cycle.intervals_ms == (5 * MINUTE,)


def test_list_form_has_one_more_execution_than_intervals() -> None:
    cycle = RetryCycle.parse("PT1M,PT5M,PT10M")
    assert cycle.executions == 4
    assert cycle.intervals_ms == (MINUTE, 5 * MINUTE, 10 * MINUTE)


def test_single_duration_is_a_list_of_one() -> None:
    assert RetryCycle.parse("PT30S") == RetryCycle(2, (30_000,))


def test_none_is_the_default_cycle() -> None:
    cycle = RetryCycle.parse(None)
    assert cycle is DEFAULT_RETRY_CYCLE
    assert cycle.executions == 3
    assert waits_before_retries(cycle) == [0, 0]
    assert cycle.delay_ms(0) == 0


@pytest.mark.parametrize(
    ("duration", "ms"),
    [
        ("PT0S", 0),
        ("PT1S", 1_000),
        ("PT30S", 30_000),
        ("PT1.5S", 1_500),
        ("PT0.001S", 1),
        ("PT0.25S", 250),
        ("PT1.001S", 1_001),
        ("PT2.1S", 2_100),
        ("PT5M", 300_000),
        ("PT90M", 5_400_000),
        ("PT1H", 3_600_000),
        ("PT1H30M", 5_400_000),
        ("PT1H0M1S", 3_601_000),
        ("P1D", 86_400_000),
        ("P2DT3H", 2 * 86_400_000 + 3 * 3_600_000),
        ("P1DT2H3M4.5S", ((26 * 60 + 3) * 60 + 4) * 1000 + 500),
    ],
)
def test_durations(duration: str, ms: int) -> None:
    assert parse_duration_ms(duration) == ms
    assert RetryCycle.parse(f"R2/{duration}").intervals_ms == (ms,)
    assert RetryCycle.parse(duration).intervals_ms == (ms,)


@given(
    st.integers(0, 400),
    st.integers(0, 99),
    st.integers(0, 999),
    st.integers(0, 9_999),
    st.integers(0, 999),
)
def test_duration_arithmetic(days: int, hours: int, minutes: int, seconds: int, ms: int) -> None:
    text = f"P{days}DT{hours}H{minutes}M{seconds}.{ms:03d}S"
    expected = (((days * 24 + hours) * 60 + minutes) * 60 + seconds) * 1000 + ms
    assert parse_duration_ms(text) == expected


@pytest.mark.parametrize("executions", [1, 2, 10, MAX_EXECUTIONS])
def test_repeat_counts(executions: int) -> None:
    assert RetryCycle.parse(f"R{executions}/PT1S").executions == executions


@pytest.mark.parametrize(
    "text",
    [
        "R5",
        "R0/PT5M",
        f"R{MAX_EXECUTIONS + 1}/PT5M",
        "R-1/PT5M",
        "R/PT5M",
        "R5/",
        "R5/PT",
        "R5/5M",
        "R5/PT5M,PT1M",
        "R5/PT5M/PT1M",
        "PT",
        "P",
        "P1DT",
        "5M",
        "T5M",
        "PT5",
        "PT5X",
        "PT5S5M",
        "PT1.2345S",
        "PT.5S",
        "PT-5M",
        "pt5m",
        "PT5M,,PT1M",
        "PT5M,",
        ",PT5M",
        ",",
        "",
        "   ",
    ],
)
def test_malformed_cycles(text: str) -> None:
    with pytest.raises(InvalidRetryCycleError):
        RetryCycle.parse(text)


@pytest.mark.parametrize("text", [5, 5.0, b"R5/PT5M", ["PT1M"], True])
def test_non_str_cycles(text: object) -> None:
    with pytest.raises(InvalidRetryCycleError):
        RetryCycle.parse(text)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["", "PT", "P", "5M", "PT1M,,PT5M"])
def test_malformed_durations(text: str) -> None:
    with pytest.raises(InvalidRetryCycleError):
        parse_duration_ms(text)


def test_error_is_a_validation_error_naming_the_input() -> None:
    with pytest.raises(ValidationError, match="PT5X"):
        RetryCycle.parse("PT5X")


# -- waits ---------------------------------------------------------------------------------


def test_repeat_form_waits_the_same_before_every_retry() -> None:
    cycle = RetryCycle.parse("R5/PT5M")
    # 5 executions: 4 failures are retried, each 5 minutes later; the 5th is an incident.
    assert waits_before_retries(cycle) == [5 * MINUTE] * 4
    assert [cycle.delay_ms(left) for left in (4, 3, 2, 1)] == [5 * MINUTE] * 4


def test_list_form_waits_grow() -> None:
    cycle = RetryCycle.parse("PT1M,PT5M,PT10M")
    # 4 executions: failure 1 leaves 3 retries and waits 1 minute, then 5, then 10.
    assert cycle.delay_ms(3) == MINUTE
    assert cycle.delay_ms(2) == 5 * MINUTE
    assert cycle.delay_ms(1) == 10 * MINUTE
    assert waits_before_retries(cycle) == [MINUTE, 5 * MINUTE, 10 * MINUTE]


def test_single_execution_never_retries() -> None:
    assert waits_before_retries(RetryCycle.parse("R1/PT5M")) == []


def test_more_retries_than_the_cycle_has_start_at_the_first_wait() -> None:
    # set_job_retries (or an explicit retries=) may leave more retries than the cycle
    # counts executions: those extra failures wait the first interval.
    cycle = RetryCycle.parse("PT1M,PT5M,PT10M")
    assert [cycle.delay_ms(left) for left in (9, 5, 4, 3)] == [MINUTE] * 4


def test_last_failure_still_has_a_wait() -> None:
    # The failure that leaves 0 retries makes an incident; the wait it asks for is the
    # last interval (and ends up as the incident's due time).
    assert RetryCycle.parse("PT1M,PT5M,PT10M").delay_ms(0) == 10 * MINUTE
    assert RetryCycle.parse("R5/PT5M").delay_ms(0) == 5 * MINUTE


@given(
    st.lists(st.integers(0, 10**9), min_size=1, max_size=10),
)
def test_list_form_wait_k_is_interval_k(intervals: list[int]) -> None:
    text = ",".join(f"PT{ms // 1000}.{ms % 1000:03d}S" for ms in intervals)
    cycle = RetryCycle.parse(text)
    assert cycle.executions == len(intervals) + 1
    assert waits_before_retries(cycle) == intervals


@given(st.integers(1, 1000), st.integers(0, 10**9))
def test_repeat_form_wait_is_constant(executions: int, ms: int) -> None:
    cycle = RetryCycle.parse(f"R{executions}/PT{ms // 1000}.{ms % 1000:03d}S")
    assert cycle.executions == executions
    assert set(waits_before_retries(cycle)) <= {ms}
    assert len(waits_before_retries(cycle)) == executions - 1


def test_cycle_is_a_frozen_value() -> None:
    cycle = RetryCycle.parse("R5/PT5M")
    assert cycle == RetryCycle(5, (300_000,))
    with pytest.raises(AttributeError):
        cycle.executions = 1  # type: ignore[misc]
