"""The management API: what an operator (CLI, cockpit, code) reads and changes.

Mass operations over one job type (cascading an overriding priority, suspending a job
definition with its jobs) walk the job records in chunks and change each chunk in one
script call, so they never block Redis for long, whatever the number of jobs.

Over a partitioned namespace (rexec/partitions.py) every read spans the partitions
(lists merged in their order, counts summed) and every change of a job type's operator
state is written to each partition, whose scripts read it.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rexec.codec import (
    check_priority,
    check_type,
    priority_from_key,
    priority_key,
    unpack,
    variables_dict,
)
from rexec.definitions import StoredDefinition
from rexec.errors import ProcessInstanceNotFoundError, UnknownJobTypeError, ValidationError
from rexec.job import Job, JobState
from rexec.retry import RetryCycle
from rexec.rules import describe_rule
from rexec.status import Status, raise_for_status
from rexec.store import Store, check_job_id, check_process_instance_id

HISTORY_PAGE = 1000
HISTORY_SEARCH_MAX = 200_000


@dataclass(frozen=True, slots=True)
class JobDefinitionInfo:
    """A job type as the store knows it: its stored definition (``deployed`` False for
    a type that has jobs or operator state but was never deployed) and operator state."""

    type: str
    overriding_priority: int | None
    suspended: bool
    deployed: bool = False
    priority_rule: str = ""
    retry_cycle: str = ""
    exclusive: bool | None = None
    lock_ms: int | None = None
    timeout_ms: int | None = None
    app: str = ""
    host: str = ""
    deployed_ms: int | None = None
    fingerprint: str = ""
    conflict: str = ""  # the other app's deployment the last deploy replaced


def _cycle_text(cycle: RetryCycle) -> str:
    return f"{cycle.executions} executions, waits {','.join(map(str, cycle.intervals_ms))} ms"


def _info(
    name: str, override: int | None, suspended: bool, d: StoredDefinition | None
) -> JobDefinitionInfo:
    if d is None:
        return JobDefinitionInfo(name, override, suspended)
    replaced = d.replaced
    conflict = ""
    if d.conflict and replaced is not None:
        conflict = (
            f"replaced {replaced.app} on {replaced.host} (fingerprint {replaced.fingerprint})"
        )
    return JobDefinitionInfo(
        name,
        override,
        suspended,
        deployed=True,
        priority_rule=describe_rule(d.rule),
        retry_cycle=_cycle_text(d.retry_cycle),
        exclusive=d.exclusive,
        lock_ms=d.lock_ms,
        timeout_ms=d.timeout_ms,
        app=d.deployment.app,
        host=d.deployment.host,
        deployed_ms=d.deployment.deployed_ms,
        fingerprint=d.deployment.fingerprint,
        conflict=conflict,
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _history_entry(entry_id: bytes | str, fields: dict[bytes, bytes]) -> dict[str, object]:
    values = {_text(k): _text(v) for k, v in fields.items()}
    return {
        "id": values["id"],
        "type": values["type"],
        "priority": priority_from_key(values["priority_key"]),
        "process_instance_id": values["pi"] or None,
        "due_ms": int(values["due"]),
        "outcome": values["outcome"],
        "finished_ms": int(_text(entry_id).split("-")[0]),
        "error": values.get("error") or None,
    }


class Management:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.keys = store.keys
        self.client = store.client
        stores = store.partition_stores
        # One Management per partition when there are several; [] for a plain store.
        self.parts = [Management(part) for part in stores] if len(stores) > 1 else []

    def _part_of_instance(self, process_instance_id: str) -> Management:
        keys = self.store.instance_keys(process_instance_id)
        return next(part for part in self.parts if part.keys == keys)

    def _every(self) -> list[Management]:
        """The Management of each partition (this one alone when not partitioned)."""
        return self.parts or [self]

    # -- reads --------------------------------------------------------------------------

    def get_job(self, job_id: str) -> Job | None:
        job = self.store.get_job(job_id)
        if job is not None and job.state is JobState.READY and job.type in self._suspended_types():
            return dataclasses.replace(job, state=JobState.SUSPENDED)
        return job

    def _suspended_types(self) -> set[str]:
        return {_text(t) for t in self.client.smembers(self.keys.suspended_types)}

    def counts(self) -> dict[str, int]:
        """Jobs by state (every job is in exactly one). The ready jobs of a suspended
        job definition count as suspended: they are not acquired."""
        return self.store.state_counts(self.store.time_ms())

    def counts_by_type(self, page: int = 1000) -> dict[str, dict[str, int]]:
        """Jobs by type and state. Ready and suspended jobs are counted per type by lex
        range (O(log N) each); only the scheduled, locked, incident and parked jobs are
        read, so the cost does not grow with the ready queue."""
        if self.parts:
            merged: dict[str, dict[str, int]] = {}
            for part in self.parts:
                for job_type, per_state in part.counts_by_type(page).items():
                    into = merged.setdefault(job_type, dict.fromkeys(per_state, 0))
                    for state, count in per_state.items():
                        into[state] = into.get(state, 0) + count
            return dict(sorted(merged.items()))
        k = self.keys
        now = self.store.time_ms()
        types = [info.type for info in self.job_definitions()]
        counts = {t: {state.value: 0 for state in JobState} for t in types}
        pipe = self.client.pipeline(transaction=False)
        for t in types:
            pipe.zlexcount(k.ready, f"[{t}|", f"[{t}|~")
            pipe.zlexcount(k.suspended, f"[{t}|", f"[{t}|~")
        results = pipe.execute()
        for i, t in enumerate(types):
            counts[t][JobState.READY.value] = int(results[2 * i])
            counts[t][JobState.SUSPENDED.value] = int(results[2 * i + 1])

        def bump(job_type: str, state: JobState) -> None:
            counts.setdefault(job_type, {s.value: 0 for s in JobState})[state.value] += 1

        for member, due in self.client.zscan_iter(k.scheduled, count=page):
            job_type = _text(member).split("|")[1]  # key|type[|pi]
            bump(job_type, JobState.SCHEDULED if due > now else JobState.READY)
        for key, state in ((k.locked, JobState.LOCKED), (k.incidents, JobState.INCIDENT)):
            ids = [_text(member) for member, _ in self.client.zscan_iter(key, count=page)]
            for start in range(0, len(ids), page):
                for job in self.store.get_jobs(ids[start : start + page]):
                    bump(job.type, state)
        # Parked: ready exclusive jobs of a locked instance that have left the ready
        # queue (kept only in pijobs).
        entries = [_text(member) for member, _ in self.client.zscan_iter(k.pijobs, count=page)]
        for start in range(0, len(entries), page):
            chunk = [entry.split("|") for entry in entries[start : start + page]]  # pi|key|type
            pipe = self.client.pipeline(transaction=False)
            for pi, key, job_type in chunk:
                pipe.zscore(k.ready, f"{job_type}|{key}|{pi}")
            for (_, _, job_type), score in zip(chunk, pipe.execute(), strict=True):
                if score is None:
                    bump(job_type, JobState.READY)
        for t in self._suspended_types():
            if t in counts:
                per_type = counts[t]
                per_type[JobState.SUSPENDED.value] += per_type[JobState.READY.value]
                per_type[JobState.READY.value] = 0
        for per_type in counts.values():
            per_type["total"] = sum(per_type.values())
        return counts

    def process_instance(self, process_instance_id: str) -> dict[str, Any]:
        """A process instance: its revision, its own priority (if any) and variables."""
        revision, priority, raw = self.store.read_process_instance(process_instance_id)
        return {
            "id": process_instance_id,
            "revision": revision,
            "priority": priority,
            "variables": variables_dict(unpack(raw, "variables"), process_instance_id),
        }

    def jobs(
        self,
        state: JobState | str | None = None,
        type: str | None = None,
        limit: int = 100,
        offset: int = 0,
        process_instance_id: str | None = None,
    ) -> list[Job]:
        """Jobs in one state (or all), in the order that state is kept: ready and
        suspended by priority, scheduled by due time, locked by lock expiry,
        incidents by time. With ``process_instance_id``: that instance's jobs (read
        through its index), oldest first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= 10_000:
            raise ValidationError(f"limit must be 0..10000, got {limit!r}")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValidationError(f"offset must be a non-negative integer, got {offset!r}")
        if type is not None:
            check_type(type)
        if state is None:
            states = [
                JobState.LOCKED,
                JobState.READY,
                JobState.SCHEDULED,
                JobState.SUSPENDED,
                JobState.INCIDENT,
            ]
        else:
            try:
                states = [JobState(state)]
            except ValueError:
                raise ValidationError(
                    f"unknown state {state!r}; one of {', '.join(s.value for s in JobState)}"
                ) from None
        if process_instance_id is not None:
            wanted = {s.value for s in states}
            mine = [
                job
                for job in self.instance_jobs(process_instance_id)
                if job.state.value in wanted and (type is None or job.type == type)
            ]
            return mine[offset : offset + limit]
        found: list[Job] = []
        skip = offset
        page = max(10, min(500, limit + offset))
        held = self._suspended_types()
        for one in states:
            for job in self._iter_state(one, type, page, held):
                if skip:
                    skip -= 1
                    continue
                if len(found) >= limit:
                    return found
                found.append(job)
        return found

    def _iter_state(
        self,
        state: JobState,
        job_type: str | None,
        page: int = 500,
        held: frozenset[str] | set[str] = frozenset(),
    ) -> Iterator[Job]:
        if self.parts:
            # Each partition lists in its order; merged here in the same order.
            return heapq.merge(
                *(part._iter_state(state, job_type, page, held) for part in self.parts),
                key=_list_order(state),
            )
        return self._iter_one_state(state, job_type, page, held)

    def _iter_one_state(
        self,
        state: JobState,
        job_type: str | None,
        page: int,
        held: frozenset[str] | set[str],
    ) -> Iterator[Job]:
        k = self.keys
        if state is JobState.READY:
            # In the ready queue (by priority), then those held in pijobs by a locked
            # process instance (parked), then those due but not yet promoted. Jobs of a
            # suspended job definition are listed as suspended instead.
            for job in itertools.chain(
                self._iter_index(k.ready, "lex", job_type, state, page),
                self._iter_parked(job_type, page),
                self._iter_index(k.scheduled, "scheduled", job_type, state, page),
            ):
                if job.type not in held:
                    yield job
        elif state is JobState.SUSPENDED:
            yield from self._iter_index(k.suspended, "lex", job_type, state, page)
            for t in sorted(held):
                if job_type is None or job_type == t:
                    for job in self._iter_index(k.ready, "lex", t, JobState.READY, page):
                        yield dataclasses.replace(job, state=JobState.SUSPENDED)
        elif state is JobState.SCHEDULED:
            yield from self._iter_index(k.scheduled, "scheduled", job_type, state, page)
        else:
            key = k.locked if state is JobState.LOCKED else k.incidents
            yield from self._iter_index(key, "ids", job_type, state, page)

    def _iter_index(
        self, key: str, kind: str, job_type: str | None, state: JobState, page: int
    ) -> Iterator[Job]:
        start = 0
        while True:
            if kind == "lex":  # type|key[|pi]
                low, high = ("-", "+") if job_type is None else (f"[{job_type}|", f"[{job_type}|~")
                members: list[bytes] = self.client.zrangebylex(  # type: ignore[assignment]
                    key, low, high, start=start, num=page
                )
                ids = [_text(m).split("|")[1][29:] for m in members]
            elif kind == "scheduled":  # key|type[|pi]
                members = self.client.zrange(key, start, start + page - 1)  # type: ignore[assignment]
                parts = [_text(m).split("|") for m in members]
                ids = [p[0][29:] for p in parts if job_type is None or p[1] == job_type]
            else:
                members = self.client.zrange(key, start, start + page - 1)  # type: ignore[assignment]
                ids = [_text(m) for m in members]
            for job in self.store.get_jobs(ids):
                if (job_type is None or job.type == job_type) and job.state is state:
                    yield job
            if len(members) < page:
                return
            start += page

    def _iter_parked(self, job_type: str | None, page: int) -> Iterator[Job]:
        k = self.keys
        start = 0
        while True:
            members: list[bytes] = self.client.zrange(k.pijobs, start, start + page - 1)  # type: ignore[assignment]
            parts = [_text(m).split("|") for m in members]  # pi|key|type
            parts = [p for p in parts if job_type is None or p[2] == job_type]
            pipe = self.client.pipeline(transaction=False)
            for pi, key, t in parts:
                pipe.zscore(k.ready, f"{t}|{key}|{pi}")
            in_ready = pipe.execute() if parts else []
            ids = [p[1][29:] for p, score in zip(parts, in_ready, strict=True) if score is None]
            for job in self.store.get_jobs(ids):
                if job.state is JobState.READY:
                    yield job
            if len(members) < page:
                return
            start += page

    def history(self, limit: int = 100) -> list[dict[str, object]]:
        """The last outcomes (completed, failed, incident, deleted), newest first (empty
        unless the app keeps a history)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= 10_000:
            raise ValidationError(f"limit must be 1..10000, got {limit!r}")
        if self.parts:
            every = [entry for part in self.parts for entry in part.history(limit)]
            every.sort(key=lambda entry: entry["finished_ms"], reverse=True)  # type: ignore[arg-type, return-value]
            return every[:limit]
        entries: list[tuple[bytes, dict[bytes, bytes]]] = self.client.xrevrange(  # type: ignore[assignment]
            self.keys.history, count=limit
        )
        return [_history_entry(entry_id, fields) for entry_id, fields in entries]

    def job_history(
        self, job_id: str, *, max_entries: int = HISTORY_SEARCH_MAX
    ) -> list[dict[str, object]]:
        """The history entries of one job, newest first: read newest first, at most
        ``max_entries`` of the history (it is capped by the app's history_max_len)."""
        check_job_id(job_id)
        if self.parts:
            found_all = [
                entry
                for part in self.parts
                for entry in part.job_history(job_id, max_entries=max_entries)
            ]
            found_all.sort(key=lambda entry: entry["finished_ms"], reverse=True)  # type: ignore[arg-type, return-value]
            return found_all
        found: list[dict[str, object]] = []
        high = "+"
        seen = 0
        while seen < max_entries:
            entries: list[tuple[bytes, dict[bytes, bytes]]] = self.client.xrevrange(  # type: ignore[assignment]
                self.keys.history, max=high, count=HISTORY_PAGE
            )
            if high != "+":
                entries = entries[1:]  # the entry the previous page ended on
            if not entries:
                break
            seen += len(entries)
            for entry_id, fields in entries:
                if fields.get(b"id") == job_id.encode():
                    found.append(_history_entry(entry_id, fields))
            high = _text(entries[-1][0])
        return found

    def instance_job_ids(self, process_instance_id: str) -> list[str]:
        """The ids of a process instance's jobs, oldest first, read from its index (a lex
        range: O(log N + its jobs), whatever the number of other jobs)."""
        check_process_instance_id(process_instance_id)
        if self.parts:
            return self._part_of_instance(process_instance_id).instance_job_ids(process_instance_id)
        prefix = process_instance_id.encode() + b"|"
        members: list[bytes] = self.client.zrangebylex(  # type: ignore[assignment]
            self.keys.instance_jobs, b"[" + prefix, b"[" + prefix + b"\xff"
        )
        return sorted((_text(m[len(prefix) :]) for m in members), key=int)

    def instance_jobs(self, process_instance_id: str) -> list[Job]:
        """A process instance's jobs, oldest first."""
        ids = self.instance_job_ids(process_instance_id)
        return [
            job for i in range(0, len(ids), 500) for job in self.store.get_jobs(ids[i : i + 500])
        ]

    def job_ids(self, state: JobState | str, type: str | None = None) -> list[str]:
        """The ids of every job in one state (of one type), read in pages."""
        return [job.id for job in self._iter_state(JobState(state), type, 500)]

    def retry_incidents(self, job_type: str, retries: int) -> int:
        """Gives every incident of ``job_type`` ``retries`` retries (resolving them);
        returns how many were resolved."""
        check_type(job_type)
        ids = self.job_ids(JobState.INCIDENT, job_type)
        return sum(
            self._changed(self.store.set_retries(ids[i : i + 500], retries))
            for i in range(0, len(ids), 500)
        )

    def delete_jobs(self, job_ids: list[str]) -> int:
        """Deletes jobs in chunks; returns how many existed."""
        return sum(
            self._changed(self.store.delete(job_ids[i : i + 500]))
            for i in range(0, len(job_ids), 500)
        )

    def job_definitions(self) -> list[JobDefinitionInfo]:
        """Every job type: deployed, with jobs, or with operator state."""
        k = self.keys
        pipe = self.client.pipeline(transaction=False)
        pipe.smembers(k.types)
        pipe.smembers(k.suspended_types)
        pipe.hgetall(k.overrides)
        types, suspended, overrides = pipe.execute()
        for part in self.parts[1:]:  # a type may have jobs in some partitions only
            types |= part.client.smembers(part.keys.types)
        stored = self.store.definitions()
        suspended_names = {_text(t) for t in suspended}
        override_of = {_text(t): priority_from_key(_text(p)) for t, p in overrides.items()}
        names = sorted({_text(t) for t in types} | suspended_names | set(override_of) | set(stored))
        return [
            _info(name, override_of.get(name), name in suspended_names, stored.get(name))
            for name in names
        ]

    def _known_type(self, job_type: str, force: bool) -> None:
        """Refuses an operator action on a type never deployed and without jobs (a
        typo would otherwise leave a definition behind forever), unless ``force``."""
        check_type(job_type)
        if force:
            return
        pipe = self.client.pipeline(transaction=False)
        for part in self._every():
            pipe.hexists(part.keys.definitions, job_type)
            pipe.sismember(part.keys.types, job_type)
            pipe.sismember(part.keys.suspended_types, job_type)
            pipe.hexists(part.keys.overrides, job_type)
        if not any(pipe.execute()):
            raise UnknownJobTypeError(
                f"no job type {job_type!r}: it was never deployed and has no jobs"
                " (force it to create the definition ahead of its deploy)"
            )

    # -- single jobs --------------------------------------------------------------------

    @staticmethod
    def _one(statuses: list[Status], job_id: str) -> None:
        raise_for_status(statuses[0], job_id, locked=False)

    @staticmethod
    def _changed(statuses: list[Status]) -> int:
        return sum(1 for status in statuses if status is Status.OK)

    def set_job_priority(self, job_id: str, priority: int) -> None:
        """Gives one job a new priority; it is re-sorted at once."""
        check_job_id(job_id)
        check_priority(priority)
        self._one(self.store.set_priority([job_id], priority), job_id)

    def suspend_job(self, job_id: str) -> None:
        check_job_id(job_id)
        self._one(self.store.set_suspended([job_id], True), job_id)

    def activate_job(self, job_id: str) -> None:
        check_job_id(job_id)
        self._one(self.store.set_suspended([job_id], False), job_id)

    def set_job_retries(self, job_id: str, retries: int) -> None:
        """Sets the retries left; on an incident, this resolves it."""
        check_job_id(job_id)
        self._one(self.store.set_retries([job_id], retries), job_id)

    def delete_job(self, job_id: str) -> None:
        check_job_id(job_id)
        self._one(self.store.delete([job_id]), job_id)

    # -- process instances ----------------------------------------------------------------

    def suspend_process_instance(self, process_instance_id: str) -> int:
        """Stops acquisition of the instance's jobs, those it has and those it gets
        (Camunda's suspendProcessInstanceById); returns the jobs suspended."""
        return self._set_instance_suspended(process_instance_id, True)

    def activate_process_instance(self, process_instance_id: str) -> int:
        """Resumes acquisition of the instance's jobs, back in their original order."""
        return self._set_instance_suspended(process_instance_id, False)

    def _set_instance_suspended(self, process_instance_id: str, suspended: bool) -> int:
        check_process_instance_id(process_instance_id)
        if self.parts:
            return self._part_of_instance(process_instance_id)._set_instance_suspended(
                process_instance_id, suspended
            )
        if not self.client.hexists(self.keys.pis, process_instance_id):
            raise ProcessInstanceNotFoundError(f"no process instance {process_instance_id!r}")
        # Flag first: jobs created from now on are born suspended (or active); the
        # scan then reaches every job that existed before.
        if suspended:
            self.client.sadd(self.keys.suspended_pis, process_instance_id)
        else:
            self.client.srem(self.keys.suspended_pis, process_instance_id)
        return sum(
            self._changed(self.store.set_suspended(ids, suspended))
            for ids in self.store.scan_job_ids(process_instance_id=process_instance_id)
        )

    # -- job definitions ------------------------------------------------------------------

    def set_overriding_job_priority(
        self, job_type: str, priority: int, *, cascade: bool = False, force: bool = False
    ) -> int:
        """New jobs of ``job_type`` get ``priority`` whatever else applies; with
        ``cascade`` every existing job of the type gets it too. Returns the number of
        existing jobs changed (0 without cascade)."""
        pk = priority_key(priority)
        self._known_type(job_type, force)
        for part in self._every():
            part.client.hset(part.keys.overrides, job_type, pk)
        if not cascade:
            return 0
        return sum(
            self._changed(self.store.set_priority(ids, priority, only_type=job_type))
            for ids in self.store.scan_job_ids(job_type)
        )

    def clear_overriding_job_priority(self, job_type: str, *, force: bool = False) -> None:
        """New jobs of the type get their priority as usual again; existing jobs keep
        the one they have."""
        self._known_type(job_type, force)
        for part in self._every():
            part.client.hdel(part.keys.overrides, job_type)

    def suspend_job_definition(
        self, job_type: str, *, include_jobs: bool = True, force: bool = False
    ) -> int:
        """Stops acquisition of every job of the type; with ``include_jobs`` each job is
        suspended too (and stays so if the definition alone is activated)."""
        self._known_type(job_type, force)
        for part in self._every():
            part.client.sadd(part.keys.suspended_types, job_type)
        if not include_jobs:
            return 0
        return sum(
            self._changed(self.store.set_suspended(ids, True, only_type=job_type))
            for ids in self.store.scan_job_ids(job_type)
        )

    def activate_job_definition(
        self, job_type: str, *, include_jobs: bool = True, force: bool = False
    ) -> int:
        """Resumes acquisition of the type; with ``include_jobs`` its suspended jobs
        are activated too, back in their original order."""
        self._known_type(job_type, force)
        changed = 0
        if include_jobs:
            changed = sum(
                self._changed(self.store.set_suspended(ids, False, only_type=job_type))
                for ids in self.store.scan_job_ids(job_type)
            )
        was_suspended = sum(
            int(part.client.srem(part.keys.suspended_types, job_type)) for part in self._every()
        )
        if changed or was_suspended:
            self.client.publish(self.keys.wake_channel, "1")  # its jobs are ready again
        return changed


def _list_order(state: JobState) -> Any:
    """The sort key of the order ``Management.jobs`` lists a state in (to merge the
    partitions' lists): priority then due for ready and suspended jobs, due for
    scheduled ones, lock expiry for locked ones; incidents by id within a partition."""
    if state in (JobState.READY, JobState.SUSPENDED):
        return lambda job: (-job.priority, job.due_ms, int(job.id))
    if state is JobState.SCHEDULED:
        return lambda job: (job.due_ms, int(job.id))
    if state is JobState.LOCKED:
        return lambda job: (job.lock_expires_ms or 0, int(job.id))
    return lambda job: 0
