"""Priority precedence (SPEC §4), as pure functions.

The first that applies wins: the job definition's overriding priority, an explicit
priority given at enqueue, the job type's priority rule, the process instance's priority,
then 0. The first and fourth live in Redis, so the enqueue script applies them
(lua/enqueue.lua); :func:`resolve_priority` states the whole rule for tests and readers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rexec.codec import check_priority
from rexec.rules import FromVariable, encode_rule

PriorityRule = int | FromVariable | Callable[[Any, Mapping[str, Any]], int]
ProcessPriority = int | FromVariable | Callable[[Mapping[str, Any]], int]


def rule_priority(
    rule: PriorityRule | None, payload: Any, variables: Mapping[str, Any]
) -> int | None:
    """Evaluate a job type's priority rule in Python; ``None`` when the type has none or
    its rule is declarative (the store evaluates those)."""
    if rule is None or isinstance(rule, FromVariable):
        return None
    if callable(rule):
        return check_priority(rule(payload, variables))
    return check_priority(rule)


def process_priority(
    rule: ProcessPriority | None, variables: Mapping[str, Any]
) -> int | str | None:
    """A process instance's priority as the store keeps it: an int (a Python function
    is evaluated once, now), or an encoded declarative rule the store re-evaluates at
    each job creation."""
    if rule is None:
        return None
    if isinstance(rule, FromVariable):
        return encode_rule(rule)
    if callable(rule):
        return check_priority(rule(variables))
    return check_priority(rule)


def resolve_priority(
    *,
    overriding: int | None = None,
    explicit: int | None = None,
    rule: int | None = None,
    process_instance: int | None = None,
) -> int:
    for candidate in (overriding, explicit, rule, process_instance):
        if candidate is not None:
            return candidate
    return 0
