"""Declarative priority rules: what the store evaluates in Lua at job creation.

``from_variable(name, mapping, default=...)`` reads one process variable when a job is
created: an integer is the priority, a string or boolean is looked up in ``mapping``, and
anything else (missing, another type, an integer outside the signed 64-bit range, a
string longer than 200 characters) gives ``default``. Lua cannot read msgpack, so every
script that writes an instance's variables also writes the *plain forms* of its scalar
variables (:func:`plain_forms`), and the rule itself is stored as a string the scripts
parse (:func:`encode_rule`). :func:`evaluate` is the same rule in Python, for tests and
for producers in a namespace that has no stored definition yet.

Encodings (no ``|``, so they fit inside ``|``-separated records):

* rule: ``''`` none, ``c<pk>`` a constant, ``py`` a Python function (the enqueuing app
  evaluates it), ``v:<hex name>:<default pk>`` followed by one ``;<form>=<pk>`` per
  mapping entry;
* form of a scalar: ``i<pk>`` an integer, ``s<hex utf-8>`` a string, ``b1``/``b0`` a
  boolean;
* plain forms of an instance: ``,<hex name>=<form>,<hex name>=<form>,`` ('' when none).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rexec.codec import PRIORITY_MAX, PRIORITY_MIN, check_priority, priority_key
from rexec.errors import ValidationError

MAX_STRING = 200


@dataclass(frozen=True, slots=True)
class FromVariable:
    """A priority rule over one process variable (build it with :func:`from_variable`)."""

    name: str
    mapping: tuple[tuple[str | bool, int], ...] = ()
    default: int = 0


def from_variable(
    name: str, mapping: Mapping[str | bool, int] | None = None, *, default: int = 0
) -> FromVariable:
    """A declarative priority rule: the value of process variable ``name`` when a job is
    created (an integer as is, a string or boolean through ``mapping``), else
    ``default``. The store evaluates it, so it holds for every producer."""
    if not isinstance(name, str) or not name:
        raise ValidationError(f"a variable name is a non-empty string, got {name!r}")
    check_priority(default)
    entries: list[tuple[str | bool, int]] = []
    for key, value in (mapping or {}).items():
        if not isinstance(key, str | bool):
            raise ValidationError(
                f"from_variable({name!r}): mapping keys are strings or booleans, got {key!r}"
            )
        if isinstance(key, str) and len(key) > MAX_STRING:
            raise ValidationError(
                f"from_variable({name!r}): mapping keys are at most {MAX_STRING} characters"
            )
        entries.append((key, check_priority(value)))
    return FromVariable(name, tuple(entries), default)


def _hex(text: str) -> str:
    return text.encode().hex()


def form(value: Any) -> str | None:
    """The plain form of a scalar variable, or None when a rule cannot use it."""
    if isinstance(value, bool):
        return "b1" if value else "b0"
    if isinstance(value, int):
        return "i" + priority_key(value) if PRIORITY_MIN <= value <= PRIORITY_MAX else None
    if isinstance(value, str) and len(value) <= MAX_STRING:
        return "s" + _hex(value)
    return None


def plain_forms(variables: Mapping[str, Any]) -> str:
    """The plain forms of an instance's scalar variables, as the scripts store them."""
    parts = [f"{_hex(name)}={f}" for name, value in variables.items() if (f := form(value))]
    return "," + ",".join(parts) + "," if parts else ""


Rule = int | FromVariable | Callable[..., int]


def encode_rule(rule: Rule | None) -> str:
    """A priority rule as the store keeps it (a callable is stored as ``py``)."""
    if rule is None:
        return ""
    if isinstance(rule, FromVariable):
        entries = "".join(f";{form(key)}={priority_key(value)}" for key, value in rule.mapping)
        return f"v:{_hex(rule.name)}:{priority_key(rule.default)}{entries}"
    if callable(rule):
        return "py"
    return "c" + priority_key(check_priority(rule))


def evaluate(rule: FromVariable, variables: Mapping[str, Any]) -> int:
    """The priority ``rule`` gives with these variables (what the Lua scripts compute)."""
    value = variables.get(rule.name)
    if isinstance(value, bool) or (isinstance(value, str) and len(value) <= MAX_STRING):
        for key, priority in rule.mapping:
            if type(key) is type(value) and key == value:
                return priority
        return rule.default
    if isinstance(value, int) and PRIORITY_MIN <= value <= PRIORITY_MAX:
        return value
    return rule.default


def describe_rule(encoded: str) -> str:
    """A stored rule for people: ``5``, ``python``, ``from_variable('tier', ...)``."""
    from rexec.codec import priority_from_key

    if encoded == "":
        return ""
    if encoded == "py":
        return "python function"
    if encoded.startswith("c"):
        return str(priority_from_key(encoded[1:]))
    _, name_hex, rest = encoded.split(":", 2)
    default, *entries = rest.split(";")
    shown = []
    for entry in entries:
        key, pk = entry.split("=")
        label = repr(bytes.fromhex(key[1:]).decode()) if key[0] == "s" else str(key == "b1")
        shown.append(f"{label}: {priority_from_key(pk)}")
    mapping = ", {" + ", ".join(shown) + "}" if shown else ""
    name = bytes.fromhex(name_hex).decode()
    return f"from_variable({name!r}{mapping}, default={priority_from_key(default)})"
