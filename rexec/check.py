"""The invariant checker: verifies a namespace's data model (docs/internals/redis-schema.md,
§9) and repairs what can be repaired without losing a job (``rexec check [--repair]``).

It reads in chunks (HSCAN, ZSCAN), so it never blocks Redis for long, and it is safe while
workers run: each chunk is judged on one atomic snapshot (``lua/check_read.lua``) of the
records and every index, so a job that moves meanwhile is never half seen, and what the
scan suggests about a whole process instance or join is counted again atomically
(``check_pilocks.lua``, ``check_joins.lua``) before it is reported. Repairs are small
scripts, atomic per job (``check_repair.lua``), per process instance and per join, and
each re-checks what it repairs, so a repair racing a worker does no harm.

What is checked, by violation kind (``Kind``):

- every namespace key has the Redis type the scripts expect (``key-type``);
- every job record is readable (``bad-record``) and its type is known (``unknown-type``);
- every job is in exactly the places its state calls for (schema §5): a locked job only
  in ``locked``, under its expiry (``lock-index``, ``lock-fields``); an incident only in
  ``incidents``; a suspended job only in ``suspended``; a job due later only in
  ``scheduled``; a due job in ``scheduled`` (promotion is lazy) or ``ready``, an
  exclusive job of a process instance also in ``pijobs``, and only there (parked) while
  its instance is locked — an exclusive job of a locked instance may still sit in
  ``ready``, since parking is lazy too (``job-unindexed``, ``job-misfiled``,
  ``pijobs-missing``, ``parked-unlocked``, ``bad-score``);
- every index member names an existing job and is the member its record calls for
  (``orphan-member``, ``stale-member``, ``bad-member``);
- ``pilocks[pi]`` is the number of locked exclusive jobs of ``pi``, all of one owner
  (``pilocks``, ``exclusive-owners``);
- every payload and error belongs to a job (``orphan-payload``, ``orphan-error``); every
  branch entry belongs to a job and names an existing join (``orphan-branch``,
  ``dangling-branch``); every join waits for exactly the branches naming it and has its
  job fields (``join-count``, ``bad-join``);
- the id counter is ahead of every id in use (``seq``) and the counters are counts
  (``bad-counter``).

``repair`` re-files a job where its state calls for, drops index members and satellites
whose job is gone (a gone branch arrives at its join, so the join still happens),
recomputes ``pilocks`` and join counts, and raises ``seq``. It never deletes a job record.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from typing import Any

import click
import orjson
import redis
from redis.commands.core import Script

from rexec.keys import SCRIPT_KEY_NAMES
from rexec.options import target_options
from rexec.scripts import flatten
from rexec.status import translate_script_error
from rexec.store import Store

DEFAULT_CHUNK = 500
REPAIR_PASSES = 3
CHECK_SCRIPTS = (
    "check_read",
    "check_repair",
    "check_pilocks",
    "check_joins",
    "check_instances",
    "check_keys",
    "check_results",
)
INDEXES = ("ready", "scheduled", "suspended", "pijobs", "parked", "locked", "incidents")
JOB_FIELDS = 15  # fields per job in check_read's reply

# The Redis type each namespace key must have (or be absent); a key not listed here is
# not checked.
KEY_TYPES: dict[str, str] = {
    "jobs": "hash",
    "payloads": "hash",
    "errors": "hash",
    "ready": "zset",
    "scheduled": "zset",
    "locked": "zset",
    "suspended": "zset",
    "incidents": "zset",
    "pijobs": "zset",
    "pilocks": "hash",
    "types": "set",
    "suspended_types": "set",
    "overrides": "hash",
    "pis": "hash",
    "vars": "hash",
    "seq": "string",
    "counters": "hash",
    "joins": "hash",
    "branches": "hash",
    "metrics": "hash",
    "workers": "hash",
    "heartbeats": "zset",
    "history": "stream",
    "parked": "zset",
    "type_jobs": "hash",
    "instance_jobs": "zset",
    "results": "hash",
    "result_expiry": "zset",
    "unique_keys": "hash",
    "job_keys": "hash",
    "settings": "hash",
}

# A record as the scripts write it: t|p|d|r|x|pi|v|o|e|s (schema §3). A due time must
# fit the 12 hex digits of a sort key (schema §4.2), or its members name another id.
MAX_DUE_MS = 2**48 - 1
RECORD_RE = re.compile(
    r"^(?P<t>[A-Za-z0-9_.:\-]{1,200})\|(?P<p>[0-9a-f]{16})\|(?P<d>\d{1,15})\|(?P<r>-?\d+)"
    r"\|(?P<x>[01])\|(?P<pi>[^|]*)\|(?P<v>\d+)\|(?P<o>[^|]*)\|(?P<e>\d*)\|(?P<s>[01])$"
)
JOB_ID_RE = re.compile(r"^\d{1,20}$")
# A join's job fields: type|pk|due|retries|exclusive|pi (schema §4.3); pk, retries and
# exclusive may be the app's defaults ('d' prefix) or empty (from the stored definition).
JOIN_FIELDS_RE = re.compile(
    r"^[A-Za-z0-9_.:\-]{1,200}\|(?:d?[0-9a-f]{16})?\|(?:\+?\d{1,16})?\|(?:d?\d{1,9})?"
    r"\|(?:d?[01])?\|[^|]*$"
)
COUNT_RE = re.compile(r"^(?:0|[1-9]\d{0,17})$")
# Ids taken from seq: jobs "<n>", process instances "p<n>", joins "j<n>".
NUMBERED_ID_RE = {
    "": re.compile(r"^(\d{1,20})$"),
    "p": re.compile(r"^p(\d{1,20})$"),
    "j": re.compile(r"^j(\d{1,20})$"),
}


class Kind(StrEnum):
    """What a violation is about (see the module docstring)."""

    KEY_TYPE = "key-type"
    BAD_RECORD = "bad-record"
    UNKNOWN_TYPE = "unknown-type"
    UNINDEXED = "job-unindexed"
    MISFILED = "job-misfiled"
    LOCK_INDEX = "lock-index"
    LOCK_FIELDS = "lock-fields"
    PIJOBS_MISSING = "pijobs-missing"
    PARKED_UNLOCKED = "parked-unlocked"
    BAD_SCORE = "bad-score"
    ORPHAN_MEMBER = "orphan-member"
    STALE_MEMBER = "stale-member"
    BAD_MEMBER = "bad-member"
    PILOCKS = "pilocks"
    EXCLUSIVE_OWNERS = "exclusive-owners"
    ORPHAN_PAYLOAD = "orphan-payload"
    ORPHAN_ERROR = "orphan-error"
    ORPHAN_BRANCH = "orphan-branch"
    DANGLING_BRANCH = "dangling-branch"
    JOIN_COUNT = "join-count"
    BAD_JOIN = "bad-join"
    SEQ = "seq"
    BAD_COUNTER = "bad-counter"
    INSTANCE_UNINDEXED = "instance-unindexed"
    INSTANCE_STALE = "instance-stale"
    UNIQUE_KEY = "unique-key"
    RESULT = "result"
    KEY_PARTITION = "key-partition"
    PERIODIC_PARTITION = "periodic-partition"


# Kinds check_repair.lua fixes, job by job.
JOB_REPAIRS = frozenset(
    {
        Kind.UNKNOWN_TYPE,
        Kind.UNINDEXED,
        Kind.MISFILED,
        Kind.LOCK_INDEX,
        Kind.LOCK_FIELDS,
        Kind.PIJOBS_MISSING,
        Kind.PARKED_UNLOCKED,
        Kind.BAD_SCORE,
        Kind.ORPHAN_MEMBER,
        Kind.STALE_MEMBER,
        Kind.BAD_MEMBER,
        Kind.ORPHAN_PAYLOAD,
        Kind.ORPHAN_ERROR,
        Kind.ORPHAN_BRANCH,
        Kind.DANGLING_BRANCH,
    }
)


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken invariant: its ``kind``, the job it concerns (if any), the namespace
    key where it shows (short name: ``"ready"``, ``"pilocks"``, ...), the index member,
    hash field or process instance concerned (``item``), what is wrong, and whether
    ``repair`` can fix it without losing a job."""

    kind: str
    job_id: str | None
    key: str
    detail: str
    repairable: bool
    item: str | None = None
    # The exact bytes of the job id / member (or pi, join id), for the repair scripts.
    raw_id: bytes | None = field(default=None, repr=False, compare=False)
    raw_item: bytes | None = field(default=None, repr=False, compare=False)
    # The partition whose keys show it (rexec/partitions.py; 0 when not partitioned).
    partition: int = 0

    @property
    def ident(self) -> tuple[str, str | None, str, str | None, int]:
        """What identifies the violation, whatever its detail says."""
        return (self.kind, self.job_id, self.key, self.item, self.partition)

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "kind": str(self.kind),
            "job_id": self.job_id,
            "key": self.key,
            "item": self.item,
            "detail": self.detail,
            "repairable": self.repairable,
        }
        if self.partition:
            found["partition"] = self.partition
        return found


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value


def _int(value: bytes | None) -> int | None:
    text = _text(value)
    return int(text) if COUNT_RE.match(text) else None


def _score(value: bytes | None) -> float | None:
    return None if value is None else float(value)


@cache
def _source(name: str) -> str:
    return flatten(name)


class _Checker:
    """One run of the checker over one namespace."""

    def __init__(self, store: Store, chunk: int) -> None:
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
        self.store = store
        self.client = store.client
        self.keys = store.keys
        self.chunk = chunk
        self.scripts: dict[str, Script] = {
            name: self.client.register_script(_source(name)) for name in CHECK_SCRIPTS
        }
        self.found: dict[tuple[str, str | None, str, str | None, int], Violation] = {}
        self.max_id = 0
        self.max_id_where = ""
        self.locked_exclusive: defaultdict[bytes, set[bytes]] = defaultdict(set)
        self.owners: defaultdict[bytes, set[bytes]] = defaultdict(set)
        self.branch_counts: Counter[bytes] = Counter()

    # -- plumbing -------------------------------------------------------------------------

    def call(self, name: str, args: Sequence[bytes | str | int]) -> Any:
        try:
            return self.scripts[name](keys=self.keys.script_keys, args=list(args))
        except redis.ResponseError as exc:
            raise translate_script_error(exc) from exc

    def add(self, violation: Violation) -> None:
        self.found.setdefault(violation.ident, violation)

    def key(self, name: str) -> str:
        return self.keys.key(name)

    def hscan(self, name: str) -> Iterator[dict[bytes, bytes]]:
        cursor = 0
        while True:
            cursor, chunk = self.client.hscan(self.key(name), cursor, count=self.chunk)
            if chunk:
                yield chunk  # type: ignore[misc]
            if cursor == 0:
                return

    def zscan(self, name: str) -> Iterator[list[bytes]]:
        cursor = 0
        while True:
            cursor, chunk = self.client.zscan(self.key(name), cursor, count=self.chunk)
            if chunk:
                yield [member for member, _ in chunk]  # type: ignore[misc]
            if cursor == 0:
                return

    def saw_id(self, value: bytes | str, where: str, prefix: str = "") -> None:
        match = NUMBERED_ID_RE[prefix].match(_text(value))
        if match and int(match[1]) > self.max_id:
            self.max_id = int(match[1])
            self.max_id_where = where

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> list[Violation]:
        if self.check_key_types():
            return list(self.found.values())
        for chunk in self.hscan("jobs"):
            self.check_jobs(list(chunk), full=True)
        for index in INDEXES:
            for members in self.zscan(index):
                self.check_members(index, members)
        for name in ("payloads", "errors"):
            for chunk in self.hscan(name):
                self.check_jobs(list(chunk), full=False)
        for chunk in self.hscan("branches"):
            for join in chunk.values():
                self.branch_counts[join] += 1
                self.saw_id(join, "branches", "j")
            self.check_jobs(list(chunk), full=False)
        self.check_pilocks()
        self.check_joins()
        self.check_seq()
        self.check_counters()
        self.check_instance_index()
        self.check_unique_keys()
        self.check_results()
        return list(self.found.values())

    def check_key_types(self) -> bool:
        names = [name for name in SCRIPT_KEY_NAMES if name in KEY_TYPES]
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.type(self.key(name))
        wrong = False
        for name, found in zip(names, pipe.execute(), strict=True):
            found_type = _text(found)
            if found_type not in ("none", KEY_TYPES[name]):
                wrong = True
                self.add(
                    Violation(
                        Kind.KEY_TYPE,
                        None,
                        name,
                        f"{self.key(name)} is a {found_type}, not a {KEY_TYPES[name]}: every"
                        " script touching it fails; nothing else was checked",
                        False,
                    )
                )
        return wrong

    # -- jobs -------------------------------------------------------------------------------

    def check_jobs(self, ids: list[bytes], *, full: bool) -> None:
        now, flat = self.call("check_read", ["jobs", *ids])
        for i, raw_id in enumerate(ids):
            fields = flat[i * JOB_FIELDS : (i + 1) * JOB_FIELDS]
            self.check_job(raw_id, int(now), fields, full=full)

    def check_job(self, raw_id: bytes, now: int, fields: list[Any], *, full: bool) -> None:
        record, has_payload, has_error, join, join_n, join_f, *places = fields
        job_id = _text(raw_id)

        def report(kind: Kind, key: str, detail: str, repairable: bool = True) -> None:
            self.add(Violation(kind, job_id, key, detail, repairable, raw_id=raw_id))

        if record is None:
            if has_payload:
                report(Kind.ORPHAN_PAYLOAD, "payloads", "a payload without its job")
            if has_error:
                report(Kind.ORPHAN_ERROR, "errors", "an error text without its job")
            if join is not None:
                if join_n is None or join_f is None or not JOIN_FIELDS_RE.match(_text(join_f)):
                    detail = (
                        f"a branch entry of a gone job, naming join {_text(join)!r}, which is"
                        " gone or broken too (repair drops it)"
                    )
                else:
                    detail = (
                        f"a branch of join {_text(join)!r} is gone without arriving: the join"
                        " would wait for it for ever (repair counts its arrival)"
                    )
                report(Kind.ORPHAN_BRANCH, "branches", detail)
            return
        if join is not None and join_n is None:
            report(
                Kind.DANGLING_BRANCH,
                "branches",
                f"a branch of join {_text(join)!r}, which does not exist: completing the"
                " job would fail",
            )
        if not full:
            return
        self.saw_id(raw_id, "jobs")
        text = _text(record)
        match = RECORD_RE.match(text)
        if (
            not JOB_ID_RE.match(job_id)
            or match is None
            or places[0] is None
            or int(match["d"]) > MAX_DUE_MS
        ):
            what = "job id" if not JOB_ID_RE.match(job_id) else "record"
            report(Kind.BAD_RECORD, "jobs", f"unreadable {what}: {text!r}", False)
            return
        in_types, ready, scheduled, suspended, pijobs, locked, incidents, pilock, parked = places
        j = match.groupdict()
        pi = j["pi"].encode()
        if pi:
            self.saw_id(pi, "a job's process instance", "p")
        if not int(in_types):
            report(
                Kind.UNKNOWN_TYPE,
                "types",
                f"type {j['t']!r} is not in the known types (or type_jobs counts no job of"
                " it): acquisition never looks at it, or soon no longer",
            )
        exclusive = j["x"] == "1" and pi != b""
        scores = {
            "ready": _score(ready),
            "scheduled": _score(scheduled),
            "suspended": _score(suspended),
            "pijobs": _score(pijobs),
            "parked": _score(parked),
            "locked": _score(locked),
            "incidents": _score(incidents),
        }
        found = {name for name, score in scores.items() if score is not None}
        listed = ", ".join(sorted(found)) or "nowhere"
        due = int(j["d"])
        if j["o"]:
            if exclusive:
                self.locked_exclusive[pi].add(raw_id)
                self.owners[pi].add(j["o"].encode())
            if not j["e"]:
                report(Kind.LOCK_FIELDS, "jobs", f"locked by {j['o']!r} without a lock expiry")
            if "locked" not in found:
                report(
                    Kind.LOCK_INDEX,
                    "locked",
                    f"locked by {j['o']!r} but not in the lock index: its lock never expires",
                )
            elif j["e"] and scores["locked"] != int(j["e"]):
                report(
                    Kind.LOCK_INDEX,
                    "locked",
                    f"lock index score {scores['locked']:.0f}, but the lock expires at {j['e']}",
                )
            if found - {"locked"}:
                report(
                    Kind.MISFILED,
                    "jobs",
                    f"locked, yet also in {', '.join(sorted(found - {'locked'}))}",
                )
            return
        if j["e"]:
            report(Kind.LOCK_FIELDS, "jobs", f"not locked, yet has a lock expiry {j['e']}")
        if int(j["r"]) <= 0:
            state, allowed = "an incident", [{"incidents"}]
        elif j["s"] == "1":
            state, allowed = "suspended", [{"suspended"}]
        elif due > now:
            state, allowed = "due later", [{"scheduled"}]
        elif exclusive:
            state, allowed = "due", [{"scheduled"}, {"ready", "pijobs"}]
            if pilock is not None:
                allowed.append({"pijobs", "parked"})
        else:
            state, allowed = "due", [{"scheduled"}, {"ready"}]
        if not found:
            report(Kind.UNINDEXED, "jobs", f"{state}, but in no index: it is never acquired")
        elif found not in allowed:
            if exclusive and state == "due" and pilock is None and found <= {"pijobs", "parked"}:
                report(
                    Kind.PARKED_UNLOCKED,
                    "pijobs",
                    f"parked, but process instance {j['pi']!r} is not locked: it is never acquired",
                )
            elif exclusive and state == "due" and found == {"pijobs"}:
                report(
                    Kind.MISFILED,
                    "parked",
                    "out of the ready queue but not in parked: releasing process instance"
                    f" {j['pi']!r} would never bring it back",
                )
            elif exclusive and state == "due" and found == {"ready"}:
                report(
                    Kind.PIJOBS_MISSING,
                    "pijobs",
                    f"ready, but missing from pijobs: acquiring it would drop it without"
                    f" locking it (process instance {j['pi']!r})",
                )
            else:
                expected = " or ".join("+".join(sorted(a)) for a in allowed)
                report(Kind.MISFILED, "jobs", f"{state}: in {listed}, expected {expected}")
        for name in ("ready", "suspended", "pijobs", "parked"):
            if scores[name] not in (None, 0):
                report(Kind.BAD_SCORE, name, f"score {scores[name]} in {name}, expected 0")
        if scores["scheduled"] is not None and scores["scheduled"] != due:
            report(
                Kind.BAD_SCORE,
                "scheduled",
                f"score {scores['scheduled']:.0f} in scheduled, but due at {due}",
            )

    # -- index members ------------------------------------------------------------------------

    def check_members(self, index: str, members: list[bytes]) -> None:
        _, flat = self.call("check_read", [index, *members])
        for i, member in enumerate(members):
            score, raw_id, record, expected = flat[i * 4 : i * 4 + 4]
            if score is None:
                continue  # gone meanwhile
            shown = _text(member)
            if raw_id is None:
                self.add(
                    Violation(
                        Kind.BAD_MEMBER,
                        None,
                        index,
                        "names no job",
                        True,
                        shown,
                        raw_id=b"",
                        raw_item=member,
                    )
                )
            elif record is None:
                self.add(
                    Violation(
                        Kind.ORPHAN_MEMBER,
                        _text(raw_id),
                        index,
                        "its job is gone",
                        True,
                        shown,
                        raw_id=raw_id,
                        raw_item=member,
                    )
                )
            elif expected is not None and expected != member:
                self.add(
                    Violation(
                        Kind.STALE_MEMBER,
                        _text(raw_id),
                        index,
                        f"the job's record calls for {_text(expected)!r}",
                        True,
                        shown,
                        raw_id=raw_id,
                        raw_item=member,
                    )
                )
            elif (
                expected is None
                and index in ("pijobs", "parked")
                and RECORD_RE.match(_text(record))
            ):
                self.add(
                    Violation(
                        Kind.STALE_MEMBER,
                        _text(raw_id),
                        index,
                        "the job is not an exclusive job of a process instance",
                        True,
                        shown,
                        raw_id=raw_id,
                        raw_item=member,
                    )
                )

    # -- process instances and joins --------------------------------------------------------

    def check_pilocks(self) -> None:
        stored: dict[bytes, bytes] = {}
        for chunk in self.hscan("pilocks"):
            stored.update(chunk)

        def expected(pi: bytes) -> bytes | None:
            count = len(self.locked_exclusive.get(pi, ()))
            return str(count).encode() if count else None

        suspects = {
            pi
            for pi in set(stored) | set(self.locked_exclusive)
            if stored.get(pi) != expected(pi) or len(self.owners.get(pi, ())) > 1
        }
        for pi in sorted(suspects):
            value, count, owners, _ = self.call(
                "check_pilocks",
                [self.keys.wake_channel, "0", pi, *self.locked_exclusive.get(pi, ())],
            )
            want = str(count).encode() if count else None
            shown = _text(pi)
            if value != want:
                said = "absent" if value is None else repr(_text(value))
                self.add(
                    Violation(
                        Kind.PILOCKS,
                        None,
                        "pilocks",
                        f"pilocks of {shown!r} is {said}, but {count} of its exclusive jobs"
                        " are locked",
                        True,
                        shown,
                        raw_item=pi,
                    )
                )
            if owners > 1:
                self.add(
                    Violation(
                        Kind.EXCLUSIVE_OWNERS,
                        None,
                        "jobs",
                        f"{count} locked exclusive jobs of {shown!r} have {owners} owners",
                        False,
                        shown,
                        raw_item=pi,
                    )
                )

    def check_joins(self) -> None:
        joins: defaultdict[bytes, dict[bytes, bytes]] = defaultdict(dict)
        for chunk in self.hscan("joins"):
            for name, value in chunk.items():
                join, _, suffix = name.rpartition(b"|")
                joins[join or name][suffix] = value
        suspects = set()
        for join, fields in joins.items():
            self.saw_id(join, "joins", "j")
            n = _int(fields.get(b"n"))
            if (
                n is None
                or n != self.branch_counts[join]
                or n == 0
                or b"f" not in fields
                or not set(fields) <= {b"n", b"f", b"pl"}
            ):
                suspects.add(join)
        ordered = sorted(suspects)
        for start in range(0, len(ordered), self.chunk):
            part = ordered[start : start + self.chunk]
            flat = self.call("check_joins", [self.keys.wake_channel, "0", *part])
            for i, join in enumerate(part):
                n_raw, f_raw, counted, _, has_payload = flat[i * 5 : i * 5 + 5]
                if (
                    n_raw is None
                    and f_raw is None
                    and not has_payload
                    and not int(counted)
                    and set(joins[join]) <= {b"n", b"f", b"pl"}
                ):
                    continue  # gone on the atomic re-read: it fired meanwhile
                self.check_join(join, n_raw, f_raw, int(counted))

    def check_join(
        self, join: bytes, n_raw: bytes | None, f_raw: bytes | None, counted: int
    ) -> None:
        shown = _text(join)
        n = _int(n_raw)
        if f_raw is None or not JOIN_FIELDS_RE.match(_text(f_raw)):
            if n_raw is None and f_raw is None and not counted:
                what = "only stray fields are left"
            else:
                what = f"its job fields are {'missing' if f_raw is None else 'unreadable'}"
            self.add(
                Violation(
                    Kind.BAD_JOIN,
                    None,
                    "joins",
                    f"join {shown!r}: {what}, so its join job can never be created",
                    False,
                    shown,
                    raw_item=join,
                )
            )
            return
        if counted == 0:
            detail = f"join {shown!r} waits for no branch: its join job was never created"
        elif n != counted:
            said = "absent" if n_raw is None else repr(_text(n_raw))
            detail = f"join {shown!r} counts {said} branches to arrive, but {counted} name it"
        else:
            return
        self.add(Violation(Kind.JOIN_COUNT, None, "joins", detail, True, shown, raw_item=join))

    # -- counters ---------------------------------------------------------------------------

    def check_seq(self) -> None:
        for chunk in self.hscan("pis"):
            for pi in chunk:
                self.saw_id(pi, "pis", "p")
        raw: bytes | None = self.client.get(self.key("seq"))  # type: ignore[assignment]
        value = None if raw is None else _int(raw)
        if raw is not None and value is None:
            detail = f"seq is {_text(raw)!r}, not a counter: every new id fails"
        elif (value or 0) < self.max_id:
            detail = (
                f"seq is {value or 0}, behind id {self.max_id} in {self.max_id_where}:"
                " new ids would overwrite existing ones"
            )
        else:
            return
        self.add(Violation(Kind.SEQ, None, "seq", detail, True, str(self.max_id)))

    def check_counters(self) -> None:
        counters: dict[bytes, bytes] = self.client.hgetall(self.key("counters"))  # type: ignore[assignment]
        for name, value in counters.items():
            if _int(value) is None:
                self.add(
                    Violation(
                        Kind.BAD_COUNTER,
                        None,
                        "counters",
                        f"counter {_text(name)!r} is {_text(value)!r}, not a count",
                        False,
                        _text(name),
                    )
                )

    def check_instance_index(self) -> None:
        """Invariant 17: ``instance_jobs`` holds exactly ``<pi>|<id>`` for every job of a
        process instance. Candidates come from scans; the script re-reads them atomically."""
        for chunk in self.hscan("jobs"):
            ids = [
                i
                for i, record in chunk.items()
                if record.count(b"|") >= 9 and record.split(b"|")[5]
            ]
            self.report_instances([arg for i in ids for arg in (b"j", i)])
        for members in self.zscan("instance_jobs"):
            self.report_instances([arg for m in members for arg in (b"m", m)])

    def report_instances(self, args: list[bytes]) -> None:
        if not args:
            return
        found = self.call("check_instances", ["0", *args])
        for kind, raw in zip(found[::2], found[1::2], strict=True):
            if _text(kind) == "missing":
                self.add(
                    Violation(
                        Kind.INSTANCE_UNINDEXED,
                        _text(raw),
                        "instance_jobs",
                        "a job of a process instance missing from its index (created by an"
                        " older rexec?): the instance's views do not show it",
                        True,
                        raw_id=raw,
                    )
                )
            else:
                pi, _, job_id = _text(raw).rpartition("|")
                self.add(
                    Violation(
                        Kind.INSTANCE_STALE,
                        job_id or None,
                        "instance_jobs",
                        f"an index entry of process instance {pi!r} naming a job that is gone"
                        " or belongs elsewhere",
                        True,
                        _text(raw),
                        raw_item=raw,
                    )
                )

    def check_unique_keys(self) -> None:
        """Invariant 18: every ``unique_keys`` entry names a job that exists and whose
        ``job_keys`` entry names the key back; every ``job_keys`` entry names a job that
        exists. The script re-reads each entry atomically."""
        for chunk in self.hscan("unique_keys"):
            self.report_keys([arg for key in chunk for arg in (b"u", key)])
        for chunk in self.hscan("job_keys"):
            self.report_keys([arg for job_id in chunk for arg in (b"j", job_id)])

    def report_keys(self, args: list[bytes]) -> None:
        if not args:
            return
        found = self.call("check_keys", ["0", *args])
        for kind, raw in zip(found[::2], found[1::2], strict=True):
            what = _text(kind)
            if what == "stale-job":
                detail = "a job_keys entry of a job that is gone"
                job_id, item, key = _text(raw), None, "job_keys"
            else:
                detail = {
                    "stale-key": "a unique key held by a job that is gone: it blocks nothing"
                    " (an enqueue takes it over) but is never freed",
                    "incident-key": "a unique key held by an incident (incidents free theirs)",
                }.get(
                    what,
                    "a unique key whose job lacks its job_keys entry: leaving would not free it",
                )
                job_id, item, key = None, _text(raw), "unique_keys"
            self.add(
                Violation(
                    Kind.UNIQUE_KEY,
                    job_id,
                    key,
                    detail,
                    True,
                    item,
                    raw_id=raw if job_id else None,
                    raw_item=None if job_id else raw,
                )
            )

    def check_results(self) -> None:
        """Invariant 19: a kept result of a job that left has a final status and an
        expiry; one without a final status belongs to a job that exists."""
        for chunk in self.hscan("results"):
            ids = [field for field in chunk if b"|" not in field]
            if not ids:
                continue
            found = self.call("check_results", ["0", *ids])
            for kind, raw in zip(found[::2], found[1::2], strict=True):
                orphan = _text(kind) == "orphan"
                self.add(
                    Violation(
                        Kind.RESULT,
                        _text(raw),
                        "results",
                        "the result of a job that is gone without a final status: nothing"
                        " would remove it"
                        if orphan
                        else "a final result without an expiry: it would never expire",
                        True,
                        raw_id=raw,
                    )
                )

    # -- repairs ------------------------------------------------------------------------------

    def apply(self, violations: Sequence[Violation]) -> None:
        """Applies the repair of each repairable violation: ids first, then jobs and
        members, then what depends on the lock index (pilocks) and on branches (joins)."""
        todo = [v for v in violations if v.repairable]
        seq = [v for v in todo if v.kind == Kind.SEQ]
        if seq:
            self.raise_seq(max(int(v.item or 0) for v in seq))
        groups: dict[bytes, list[bytes]] = {}
        for v in todo:
            if v.kind in JOB_REPAIRS and v.raw_id is not None:
                members = groups.setdefault(v.raw_id, [])
                if v.raw_item is not None and v.kind in (
                    Kind.ORPHAN_MEMBER,
                    Kind.STALE_MEMBER,
                    Kind.BAD_MEMBER,
                ):
                    members += (v.key.encode(), v.raw_item)
        batch: list[bytes | str | int] = []
        for raw_id, members in groups.items():
            batch += (raw_id, len(members) // 2, *members)
            if len(batch) >= self.chunk * 4:
                self.call("check_repair", [self.keys.wake_channel, *batch])
                batch = []
        if batch:
            self.call("check_repair", [self.keys.wake_channel, *batch])
        for v in todo:
            if v.kind == Kind.PILOCKS and v.raw_item is not None:
                self.call("check_pilocks", [self.keys.wake_channel, "1", v.raw_item])
        index: list[bytes] = []
        for v in todo:
            if v.kind == Kind.INSTANCE_UNINDEXED and v.raw_id is not None:
                index += (b"j", v.raw_id)
            elif v.kind == Kind.INSTANCE_STALE and v.raw_item is not None:
                index += (b"m", v.raw_item)
        for start in range(0, len(index), self.chunk * 2):
            self.call("check_instances", ["1", *index[start : start + self.chunk * 2]])
        keys: list[bytes] = []
        for v in todo:
            if v.kind == Kind.UNIQUE_KEY and v.raw_item is not None:
                keys += (b"u", v.raw_item)
            elif v.kind == Kind.UNIQUE_KEY and v.raw_id is not None:
                keys += (b"j", v.raw_id)
        for start in range(0, len(keys), self.chunk * 2):
            self.call("check_keys", ["1", *keys[start : start + self.chunk * 2]])
        kept = [v.raw_id for v in todo if v.kind == Kind.RESULT and v.raw_id is not None]
        for start in range(0, len(kept), self.chunk):
            self.call("check_results", ["1", *kept[start : start + self.chunk]])
        joins = [v.raw_item for v in todo if v.kind == Kind.JOIN_COUNT and v.raw_item]
        for start in range(0, len(joins), self.chunk):
            self.call(
                "check_joins", [self.keys.wake_channel, "1", *joins[start : start + self.chunk]]
            )

    def raise_seq(self, at_least: int) -> None:
        """Moves the id counter up to ``at_least`` (never down), as one transaction."""
        key = self.key("seq")

        def bump(pipe: redis.client.Pipeline) -> None:
            current = _int(pipe.get(key))  # type: ignore[arg-type]
            if current is not None and current >= at_least:
                return
            pipe.multi()
            pipe.set(key, at_least)

        self.client.transaction(bump, key)


# -- the API ---------------------------------------------------------------------------------


def check(store: Store, *, chunk: int = DEFAULT_CHUNK) -> list[Violation]:
    """Every invariant violation in ``store``'s namespace (empty when it is sound).

    Safe while workers run: only what is still wrong on an atomic re-read is reported.
    A partitioned namespace is checked partition by partition (each is self-contained:
    an instance and all its jobs live in one); ``partition`` says where.
    """
    found: list[Violation] = []
    for k, part in enumerate(store.partition_stores):
        found.extend(
            v if k == 0 else dataclasses.replace(v, partition=k)
            for v in _Checker(part, chunk).run()
        )
    from rexec.partitions import PartitionedStore

    if isinstance(store, PartitionedStore):
        found.extend(_placement(store, chunk))
    return found


def _placement(store: Any, chunk: int) -> Iterator[Violation]:
    """What only a partitioned namespace can get wrong (reported, not repaired: moving a
    job between partitions would change its id). Invariant 20: a unique key held by a
    job without a process instance is in the partition its key routes to (producers look
    for it there only). Invariant 21: periodic schedules are in partition 0 only (no
    worker ticks them elsewhere)."""
    for k, part in enumerate(store.parts):
        for entries in _Checker(part, chunk).hscan("unique_keys"):
            held = {_text(key): _text(job_id) for key, job_id in entries.items()}
            jobs = {job.id: job for job in part.get_jobs(list(set(held.values())))}
            for key, job_id in held.items():
                job = jobs.get(job_id)
                if job is None or job.process_instance_id is not None:
                    continue  # a stale key is invariant 18's; an instance's key is at home
                home = store.partition_of_key(key)
                if home != k:
                    yield Violation(
                        Kind.KEY_PARTITION,
                        job_id,
                        "unique_keys",
                        f"a unique key of a job without a process instance, in partition {k}"
                        f" while the key routes to partition {home}: a producer would not"
                        " find it and could make a second job with it",
                        False,
                        key,
                        partition=k,
                    )
        if k == 0:
            continue
        keys = part.keys
        for name in ("periodic", "periodic_due", "periodic_last"):
            if store.client.exists(keys.key(name)):
                yield Violation(
                    Kind.PERIODIC_PARTITION,
                    None,
                    name,
                    f"periodic schedules in partition {k}: only partition 0's are ticked",
                    False,
                    partition=k,
                )


def repair(store: Store, *, chunk: int = DEFAULT_CHUNK) -> list[Violation]:
    """Repairs every repairable violation without losing a job; returns the violations
    it fixed. What it cannot fix, ``check`` still reports afterwards."""
    fixed: dict[tuple[str, str | None, str, str | None, int], Violation] = {}
    found = check(store, chunk=chunk)
    for _ in range(REPAIR_PASSES):
        todo = [v for v in found if v.repairable]
        if not todo:
            break
        parts = store.partition_stores
        for k, part in enumerate(parts):
            mine = [v for v in todo if v.partition == k]
            if mine:
                _Checker(part, chunk).apply(mine)
        found = check(store, chunk=chunk)
        remaining = {v.ident for v in found}
        for v in todo:
            if v.ident not in remaining:
                fixed.setdefault(v.ident, v)
    return list(fixed.values())


# -- the command -----------------------------------------------------------------------------


def _table(title: str, violations: Sequence[Violation]) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title)
    for name in ("kind", "job", "key", "item", "repairable", "detail"):
        table.add_column(name, no_wrap=name in ("kind", "job"))
    for v in violations:
        table.add_row(
            Text(str(v.kind)),
            Text(v.job_id or "-"),
            Text(v.key if not v.partition else f"{v.key} (partition {v.partition})"),
            Text(v.item or "-"),
            Text("yes" if v.repairable else "no"),
            Text(v.detail),
        )
    return table


@click.command("check")
@click.option(
    "--repair", "do_repair", is_flag=True, help="Repair what can be repaired without losing a job."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@target_options
def check_command(
    *,
    do_repair: bool,
    as_json: bool,
    namespace: str | None,
    redis_url: str | None,
    app_path: str | None,
) -> None:
    """Verify the data model's invariants in a namespace; with --repair, fix what can be
    fixed without losing a job. Exit code 1 when violations remain."""
    from rich.console import Console

    from rexec.target import resolve, tell_target

    target = resolve(redis_url, namespace, app_path)
    namespace = target.app.namespace
    if not as_json:
        tell_target(target)
    with target.app as app:
        repaired = repair(app.store) if do_repair else []
        remaining = check(app.store)
    if as_json:
        report = {
            "namespace": namespace,
            "repaired": [v.as_dict() for v in repaired],
            "violations": [v.as_dict() for v in remaining],
        }
        click.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        console = Console(highlight=False)
        if do_repair:
            console.print(_table(f"{len(repaired)} violations repaired", repaired))
        if remaining:
            console.print(_table(f"{len(remaining)} violations in {namespace!r}", remaining))
        else:
            console.print(f"namespace {namespace!r}: no violations")
    if remaining:
        click.get_current_context().exit(1)
