"""Retry cycles, ISO 8601 style (pure: values in, values out).

``R5/PT5M``          5 executions in total, 5 minutes apart.
``PT1M,PT5M,PT10M``  one more execution than intervals, waiting 1, 5, then 10 minutes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rexec.codec import MAX_MS
from rexec.errors import InvalidRetryCycleError

_DURATION_RE = re.compile(
    r"^P(?:(?P<d>\d+)D)?(?:T(?=\d)(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d{1,3})?)S)?)?$"
)
_REPEAT_RE = re.compile(r"^R(?P<n>\d+)/(?P<duration>.+)$")
MAX_EXECUTIONS = 1_000_000


def parse_duration_ms(text: str) -> int:
    """``PT5M`` → 300000. Days, hours, minutes and (fractional) seconds."""
    match = _DURATION_RE.match(text.strip())
    if match is None or text.strip() in ("P", "PT"):
        raise InvalidRetryCycleError(f"not an ISO 8601 duration such as PT5M or PT30S: {text!r}")
    days, hours, minutes = (int(match[g] or 0) for g in ("d", "h", "m"))
    seconds = float(match["s"] or 0)
    total = ((days * 24 + hours) * 60 + minutes) * 60_000 + round(seconds * 1000)
    if total > MAX_MS:
        raise InvalidRetryCycleError(f"duration {text!r} is longer than {MAX_MS} ms")
    return total


@dataclass(frozen=True, slots=True)
class RetryCycle:
    """How often a job runs in total and how long it waits before each retry."""

    executions: int
    intervals_ms: tuple[int, ...]

    @classmethod
    def parse(cls, text: str | None) -> RetryCycle:
        if text is None:
            return DEFAULT_RETRY_CYCLE
        if not isinstance(text, str) or not text.strip():
            raise InvalidRetryCycleError(f"retry cycle must be a non-empty string, got {text!r}")
        text = text.strip()
        repeat = _REPEAT_RE.match(text)
        if repeat is not None:
            executions = int(repeat["n"])
            if not 1 <= executions <= MAX_EXECUTIONS:
                raise InvalidRetryCycleError(
                    f"retry cycle {text!r}: executions must be 1..{MAX_EXECUTIONS}"
                )
            return cls(executions, (parse_duration_ms(repeat["duration"]),))
        intervals = tuple(parse_duration_ms(part) for part in text.split(","))
        return cls(len(intervals) + 1, intervals)

    def delay_ms(self, retries_left: int) -> int:
        """Wait before the next execution after a failure that leaves ``retries_left``
        retries (counted after the decrement)."""
        failures_so_far = max(1, self.executions - retries_left)
        return self.intervals_ms[min(failures_so_far, len(self.intervals_ms)) - 1]


DEFAULT_RETRY_CYCLE = RetryCycle(3, (0,))
