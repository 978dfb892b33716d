"""Stored job definitions: the record a deploy writes per job type, as pure functions.

A job type's semantics belong to the store, not to whoever enqueues: ``App.deploy()``
writes one record per registered type into the ``definitions`` hash (lua/deploy.lua),
and every script that creates a job or records a failure reads it. The record is
``|``-separated so the scripts can parse it::

    executions|intervals ms,..|exclusive|lock ms|timeout ms|rule|keep result ms|
    retry_on|no_retry_on|fingerprint|deployed ms|host|app|replaced fingerprint|
    replaced ms|replaced host|replaced app

``rule`` is a priority rule as rexec/rules.py encodes it; ``keep result ms`` how long a
finished job's result stays readable (empty: none kept); ``retry_on`` and
``no_retry_on`` comma-separated exception class paths (``module.QualName``) that the
fail script matches against a failure's class and its bases. A type without results or
retry policy is stored without those three fields (14 fields, as before they existed),
so its fingerprint does not change. The last four fields name the
deployment this one replaced when that had another fingerprint (empty otherwise): when
it came from another app, the two apps disagree about the type (a *conflict*).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rexec.errors import ConfigurationError
from rexec.retry import RetryCycle
from rexec.rules import encode_rule

if TYPE_CHECKING:
    from rexec.app import JobDefinition

_UNSAFE = re.compile(r"[|\s]")


@dataclass(frozen=True, slots=True)
class Deployment:
    """Who deployed a definition, and when (Redis time)."""

    fingerprint: str
    deployed_ms: int
    host: str
    app: str


@dataclass(frozen=True, slots=True)
class StoredDefinition:
    """A job type's definition as the store holds it."""

    type: str
    retry_cycle: RetryCycle
    exclusive: bool
    lock_ms: int | None
    timeout_ms: int | None
    rule: str
    deployment: Deployment
    replaced: Deployment | None = None
    keep_result_ms: int | None = None
    retry_on: tuple[str, ...] = ()
    no_retry_on: tuple[str, ...] = ()

    @property
    def conflict(self) -> bool:
        """The last deploy replaced a different definition deployed by another app."""
        return self.replaced is not None and self.replaced.app != self.deployment.app


def definition_head(definition: JobDefinition) -> str:
    """The part of the record that defines the type (what the fingerprint covers)."""
    cycle = definition.retry_cycle
    fields = [
        str(cycle.executions),
        ",".join(str(ms) for ms in cycle.intervals_ms),
        "1" if definition.exclusive else "0",
        "" if definition.lock_ms is None else str(definition.lock_ms),
        "" if definition.timeout_ms is None else str(definition.timeout_ms),
        encode_rule(definition.priority),
    ]
    keep = definition.keep_result_ms
    if keep or definition.retry_on or definition.no_retry_on:
        fields += [
            str(keep) if keep else "",
            ",".join(definition.retry_on),
            ",".join(definition.no_retry_on),
        ]
    return "|".join(fields)


def fingerprint(head: str) -> str:
    return hashlib.sha256(head.encode()).hexdigest()[:12]


def safe_name(text: str) -> str:
    """A host or app path as a record field (no ``|`` or blanks)."""
    return _UNSAFE.sub("_", text)[:200] or "-"


def parse_definition(job_type: str, record: str) -> StoredDefinition | None:
    """The record of ``job_type`` (None when it is not one this version wrote)."""
    fields = record.split("|")
    if len(fields) == 17:
        extra, fields = fields[6:9], fields[:6] + fields[9:]
    elif len(fields) == 14:
        extra = ["", "", ""]
    else:
        return None
    try:
        keep = int(extra[0]) if extra[0] else None
        executions, intervals = int(fields[0]), tuple(int(ms) for ms in fields[1].split(","))
        deployment = Deployment(fields[6], int(fields[7]), fields[8], fields[9])
        replaced = (
            Deployment(fields[10], int(fields[11]), fields[12], fields[13]) if fields[10] else None
        )
    except ValueError:
        return None
    return StoredDefinition(
        type=job_type,
        retry_cycle=RetryCycle(executions, intervals),
        exclusive=fields[2] == "1",
        lock_ms=int(fields[3]) if fields[3] else None,
        timeout_ms=int(fields[4]) if fields[4] else None,
        rule=fields[5],
        deployment=deployment,
        replaced=replaced,
        keep_result_ms=keep or None,
        retry_on=tuple(p for p in extra[1].split(",") if p),
        no_retry_on=tuple(p for p in extra[2].split(",") if p),
    )


def worker_types(registered: Iterable[str], narrowed: Iterable[str] = ()) -> tuple[str, ...]:
    """The job types a worker acquires: those its app registers (Camunda's deployment
    awareness), narrowed by ``--types``. A narrowing type the app cannot run, or an app
    that registers nothing, is a configuration error: such a worker would only turn
    other apps' jobs into incidents."""
    own = set(registered)
    wanted = tuple(dict.fromkeys(narrowed))
    unknown = [t for t in wanted if t not in own]
    if unknown:
        raise ConfigurationError(
            f"--types names {', '.join(unknown)}, which the app registers no handler for"
        )
    types = wanted or tuple(sorted(own))
    if not types:
        raise ConfigurationError("the app registers no job types: a worker has nothing to run")
    return types
