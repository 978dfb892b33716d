"""Keyset paging over the jobs of one state, or of all, in the order each state keeps.

A page ends with a cursor naming its last job's place in its state's index; the next
page starts right after that place, however deep it is, at the cost of one page (an
offset would re-read everything before it). Cursors are short strings:

- ``r:<key>`` / ``s:<key>``: ready / suspended, after the job with sort key ``key``
  (priority key, due hex, id: acquisition order, compared as strings);
- ``d:<due>:<member>``, ``l:<expiry>:<id>``, ``i:<time>:<id>``: scheduled, locked,
  incident, after that member of the scored index (by rank if it is still there, else
  after every member with that score);
- ``<letter>:``: the start of that state (after the previous state ended a page).

Ready jobs are found where :class:`~rexec.management.Management` finds them: in the
ready index per type (a lex range), parked in ``pijobs`` behind a locked instance, or
due but not yet promoted from ``scheduled``; the last two are read whole (acquisition
keeps them short) and merged in.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from rexec.codec import check_type
from rexec.errors import ValidationError
from rexec.job import Job, JobState
from rexec.store import Store

# The order of the states when all are listed (Management's order).
STATE_ORDER: tuple[JobState, ...] = (
    JobState.LOCKED,
    JobState.READY,
    JobState.SCHEDULED,
    JobState.SUSPENDED,
    JobState.INCIDENT,
)
LETTER = {
    JobState.READY: "r",
    JobState.SUSPENDED: "s",
    JobState.SCHEDULED: "d",
    JobState.LOCKED: "l",
    JobState.INCIDENT: "i",
}
STATE_OF = {letter: state for state, letter in LETTER.items()}
KEY_RE = re.compile(r"^[0-9a-f]{28}[a-t]\d{1,20}$")
CURSOR_MAX = 300
PARTITION_CURSOR_RE = re.compile(r"^P(\d{1,3})\.(.*)$", re.DOTALL)
MAX_ROUNDS = 50  # pages read per source to fill one page through a filter
AFTER_ALL = "\xff"


@dataclass(frozen=True, slots=True)
class Cursor:
    state: JobState
    key: str = ""  # lex states: the job key; scored: the member
    score: int | None = None

    def encode(self) -> str:
        letter = LETTER[self.state]
        if not self.key:
            return f"{letter}:"
        if self.score is None:
            return f"{letter}:{self.key}"
        return f"{letter}:{self.score}:{self.key}"


def parse_cursor(text: str) -> Cursor:
    """A cursor from its string; a malformed one is a ValidationError."""
    bad = ValidationError(f"not a page cursor: {text[:60]!r}")
    if not isinstance(text, str) or len(text) > CURSOR_MAX or ":" not in text:
        raise bad
    letter, _, rest = text.partition(":")
    state = STATE_OF.get(letter)
    if state is None:
        raise bad
    if not rest:
        return Cursor(state)
    if state in (JobState.READY, JobState.SUSPENDED):
        if not KEY_RE.match(rest):
            raise bad
        return Cursor(state, rest)
    score_text, _, member = rest.partition(":")
    if not score_text.isdigit() or not member or len(score_text) > 16:
        raise bad
    return Cursor(state, member, int(score_text))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _id_of_key(key: str) -> str:
    return key[29:]


Entry = tuple[Job, str]  # a job and the cursor right after it
JobFilter = Callable[[Job], bool]


class JobPager:
    """Pages of jobs in queue order; see the module's docstring."""

    def __init__(self, store: Store, job_types: Callable[[], list[str]]) -> None:
        self.store = store
        self.client = store.client
        self.keys = store.keys
        self.job_types = job_types

    def page(
        self,
        state: JobState | None,
        job_type: str | None,
        after: str | None,
        limit: int,
        keep: JobFilter | None = None,
    ) -> tuple[list[Job], str | None]:
        """Up to ``limit`` jobs after the cursor ``after`` (None: from the start), and the
        cursor of the next page (None: no more)."""
        if len(self.store.partition_stores) > 1:
            return self._partitioned_page(state, job_type, after, limit, keep)
        if job_type is not None:
            check_type(job_type)
        cursor = parse_cursor(after) if after else None
        states = [state] if state is not None else list(STATE_ORDER)
        if cursor is not None:
            if cursor.state not in states:
                raise ValidationError(f"this cursor is for {cursor.state.value} jobs")
            states = states[states.index(cursor.state) :]
        found: list[Entry] = []
        for one in states:
            mine = cursor if cursor is not None and cursor.state is one else Cursor(one)
            found += self._state_page(mine, job_type, limit + 1 - len(found), keep)
            if len(found) > limit:
                break
        page = found[:limit]
        if len(found) <= limit or not page:
            return [job for job, _ in page], None
        return [job for job, _ in page], page[-1][1]

    def _partitioned_page(
        self,
        state: JobState | None,
        job_type: str | None,
        after: str | None,
        limit: int,
        keep: JobFilter | None,
    ) -> tuple[list[Job], str | None]:
        """A partitioned namespace is paged partition after partition, each in its own
        order; the cursor ``P<k>.<cursor>`` names the partition and the place in it."""
        parts = self.store.partition_stores
        k, inner = 0, None
        if after:
            match = PARTITION_CURSOR_RE.match(after)
            if match is None or int(match[1]) >= len(parts):
                raise ValidationError(f"not a page cursor: {after[:60]!r}")
            k, inner = int(match[1]), match[2] or None
        found: list[Job] = []
        while k < len(parts):
            pager = JobPager(parts[k], self.job_types)
            jobs, following = pager.page(state, job_type, inner, limit - len(found), keep)
            found += jobs
            if following is not None:
                return found, f"P{k}.{following}"
            k, inner = k + 1, None
            if len(found) >= limit:
                return found, (f"P{k}." if k < len(parts) else None)
        return found, None

    def _state_page(
        self, cursor: Cursor, job_type: str | None, count: int, keep: JobFilter | None
    ) -> list[Entry]:
        found: list[Entry] = []
        for _ in range(MAX_ROUNDS):
            if cursor.state in (JobState.READY, JobState.SUSPENDED):
                entries, last, exhausted = self._lex_page(cursor, job_type, count)
            else:
                entries, last, exhausted = self._scored_page(cursor, job_type, count)
            found += [(job, after) for job, after in entries if keep is None or keep(job)]
            if len(found) >= count or exhausted or last is None:
                break
            cursor = last
        return found[:count]

    # -- ready and suspended: lex indexes per type, plus the parked and the due --------

    def _lex_page(
        self, cursor: Cursor, job_type: str | None, count: int
    ) -> tuple[list[Entry], Cursor | None, bool]:
        k = self.keys
        key = k.ready if cursor.state is JobState.READY else k.suspended
        types = [job_type] if job_type is not None else self.job_types()
        candidates: list[str] = []  # job keys
        pipe = self.client.pipeline(transaction=False)
        for t in types:
            low = f"({t}|{cursor.key}|{AFTER_ALL}" if cursor.key else f"[{t}|"
            pipe.zrangebylex(key, low.encode("latin-1"), f"[{t}|~", start=0, num=count)
        for members in pipe.execute() if types else []:
            candidates += [_text(m).split("|")[1] for m in members]
        if cursor.state is JobState.READY:
            candidates += self._parked_and_due_keys(job_type, cursor.key)
        candidates = sorted(set(candidates))[:count]
        exhausted = len(candidates) < count
        jobs = {job.id: job for job in self.store.get_jobs([_id_of_key(c) for c in candidates])}
        entries = [
            (jobs[_id_of_key(c)], Cursor(cursor.state, c).encode())
            for c in candidates
            if _id_of_key(c) in jobs and jobs[_id_of_key(c)].state is cursor.state
        ]
        last = Cursor(cursor.state, candidates[-1]) if candidates else None
        return entries, last, exhausted

    def _parked_and_due_keys(self, job_type: str | None, after: str) -> list[str]:
        k = self.keys
        keys: list[str] = []
        members: list[bytes] = self.client.zrange(k.pijobs, 0, -1)  # type: ignore[assignment]
        parked = [_text(m).split("|") for m in members]  # pi|key|type
        parked = [p for p in parked if (job_type is None or p[2] == job_type) and p[1] > after]
        if parked:
            pipe = self.client.pipeline(transaction=False)
            for pi, job_key, t in parked:
                pipe.zscore(k.ready, f"{t}|{job_key}|{pi}")
            keys += [p[1] for p, score in zip(parked, pipe.execute(), strict=True) if score is None]
        now = self.store.time_ms()
        due: list[bytes] = self.client.zrangebyscore(k.scheduled, "-inf", now)  # type: ignore[assignment]
        for member in due:
            job_key, t = _text(member).split("|")[:2]  # key|type[|pi]
            if (job_type is None or t == job_type) and job_key > after:
                keys.append(job_key)
        return keys

    # -- scheduled, locked, incidents: scored indexes ------------------------------------

    def _scored_page(
        self, cursor: Cursor, job_type: str | None, count: int
    ) -> tuple[list[Entry], Cursor | None, bool]:
        k = self.keys
        key = {
            JobState.SCHEDULED: k.scheduled,
            JobState.LOCKED: k.locked,
            JobState.INCIDENT: k.incidents,
        }[cursor.state]
        scheduled = cursor.state is JobState.SCHEDULED
        if cursor.key and cursor.score is not None:
            rank = self.client.zrank(key, cursor.key)
            if rank is None:  # gone meanwhile: after everything with its score
                start = int(self.client.zcount(key, "-inf", cursor.score))
            else:
                start = int(rank) + 1  # type: ignore[arg-type]
            rows: list[tuple[bytes, float]] = self.client.zrange(  # type: ignore[assignment]
                key, start, start + count - 1, withscores=True
            )
        else:
            low = f"({self.store.time_ms()}" if scheduled else "-inf"
            rows = self.client.zrangebyscore(  # type: ignore[assignment]
                key, low, "+inf", start=0, num=count, withscores=True
            )
        members = [(_text(m), int(score)) for m, score in rows]
        ids = [m.split("|")[0][29:] if scheduled else m for m, _ in members]
        jobs = {job.id: job for job in self.store.get_jobs(ids)}
        entries = []
        for job_id, (member, score) in zip(ids, members, strict=True):
            job = jobs.get(job_id)
            if job is None or job.state is not cursor.state:
                continue
            if job_type is not None and job.type != job_type:
                continue
            entries.append((job, Cursor(cursor.state, member, score).encode()))
        last = Cursor(cursor.state, *members[-1]) if members else None
        return entries, last, len(members) < count
