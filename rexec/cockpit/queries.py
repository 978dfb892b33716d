"""The cockpit's read model, built only on the public App / Management / Store API.

Management lists the jobs of one state (and type) in the order that state keeps them.
On top of that this module lists jobs with more filters (process instance, priority
range) and other orders, counts jobs by type, shows a process instance, and turns the
workers' ever-growing counters into rates. Queue order pages by keyset
(:mod:`rexec.paging`), so any depth costs one page; a process instance's jobs come from
its index. Counts by type are cached so polling browsers cost little.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack
import orjson

from rexec.app import App
from rexec.codec import check_priority, check_type, unpack
from rexec.errors import PayloadError, ValidationError
from rexec.job import Job, JobState
from rexec.metrics import COUNTERS, cluster_stats, live_workers
from rexec.paging import STATE_ORDER, JobPager, parse_cursor
from rexec.prometheus import by_node, histogram_buckets
from rexec.store import check_process_instance_id

SORTS = ("queue", "-priority", "priority", "due", "-due", "id", "-id")
MAX_LIMIT = 500
MAX_OFFSET = 100_000
# Most jobs one source (a state, or a state and type) is read for a sort other than its
# own order; beyond it the list says it is truncated.
SORT_WINDOW = 5_000
# Counting by type walks every job record; above this many jobs it is not attempted, and
# a count is reused for at least TYPE_COUNT_TTL_S, or ten times as long as it took.
TYPE_COUNT_TTL_S = 3.0
TYPE_COUNT_DUTY = 10
PREVIEW_CHARS = 120
DETAIL_PREVIEW_CHARS = 16_000
RATE_WINDOW_MS = 10_000


# -- JSON views ------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(bytes(value))} bytes>"
    if isinstance(value, msgpack.ExtType):
        return f"<msgpack ext {value.code}: {len(value.data)} bytes>"
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    if isinstance(value, int):  # beyond 64 bits
        return str(value)
    return repr(value)


def to_json_text(value: Any, *, indent: bool = False) -> str:
    """``value`` as JSON text, whatever msgpack decoded (bytes, ext types, big ints)."""
    option = orjson.OPT_NON_STR_KEYS | (orjson.OPT_INDENT_2 if indent else 0)
    return orjson.dumps(value, default=_json_default, option=option).decode()


def jsonable(value: Any) -> Any:
    """``value`` reduced to what JSON holds (see :func:`to_json_text`)."""
    return orjson.loads(to_json_text(value))


def payload_preview(job: Job, chars: int) -> tuple[str | None, bool, str | None]:
    """(preview text, truncated, decoding error) of the job's payload."""
    if job.payload_raw is None:
        return None, False, None
    try:
        text = to_json_text(job.payload, indent=chars > PREVIEW_CHARS)
    except PayloadError as exc:
        return f"<undecodable: {len(job.payload_raw)} bytes>", False, str(exc)
    if len(text) > chars:
        return text[: chars - 1] + "…", True, None
    return text, False, None


def split_exception(text: str | None) -> tuple[str | None, str | None]:
    """The stored failure text as (exception line, traceback): workers store
    ``Type: message`` and, after a blank line, the traceback."""
    if not text:
        return None, None
    message, _, rest = text.partition("\n\n")
    return message, rest or None


def job_summary(job: Job) -> dict[str, Any]:
    """A job as a list row."""
    preview, _, _ = payload_preview(job, PREVIEW_CHARS)
    exception, _ = split_exception(job.exception)
    return {
        "id": job.id,
        "type": job.type,
        "state": job.state.value,
        "priority": job.priority,
        "due_ms": job.due_ms,
        "retries": job.retries,
        "exclusive": job.exclusive,
        "process_instance_id": job.process_instance_id,
        "lock_owner": job.lock_owner,
        "lock_expires_ms": job.lock_expires_ms,
        "suspended": job.suspended,
        "payload_preview": preview,
        "exception": exception,
    }


def job_detail(job: Job) -> dict[str, Any]:
    """A job with its whole payload preview, exception and traceback."""
    preview, truncated, error = payload_preview(job, DETAIL_PREVIEW_CHARS)
    exception, traceback = split_exception(job.exception)
    return {
        **job_summary(job),
        "revision": job.revision,
        "payload_preview": preview,
        "payload_truncated": truncated,
        "payload_error": error,
        "payload_bytes": None if job.payload_raw is None else len(job.payload_raw),
        "exception": exception,
        "traceback": traceback,
    }


# -- listing jobs --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobQuery:
    """Which jobs to list, in which order, which page."""

    state: JobState | None = None
    type: str | None = None
    process_instance_id: str | None = None
    priority_min: int | None = None
    priority_max: int | None = None
    sort: str = "queue"
    limit: int = 50
    offset: int = 0
    after: str | None = None  # a keyset cursor (queue order): the page after it

    def __post_init__(self) -> None:
        if self.type is not None:
            check_type(self.type)
        if self.process_instance_id is not None:
            check_process_instance_id(self.process_instance_id)
        if self.priority_min is not None:
            check_priority(self.priority_min)
        if self.priority_max is not None:
            check_priority(self.priority_max)
        if (
            self.priority_min is not None
            and self.priority_max is not None
            and self.priority_min > self.priority_max
        ):
            raise ValidationError(
                f"priority_min {self.priority_min} is above priority_max {self.priority_max}"
            )
        if self.sort not in SORTS:
            raise ValidationError(f"unknown sort {self.sort!r}; one of {', '.join(SORTS)}")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ValidationError(f"limit must be 1..{MAX_LIMIT}, got {self.limit}")
        if not 0 <= self.offset <= MAX_OFFSET:
            raise ValidationError(f"offset must be 0..{MAX_OFFSET}, got {self.offset}")
        if self.after is not None:
            if self.sort != "queue" or self.process_instance_id is not None:
                raise ValidationError("'after' pages in queue order, without process_instance")
            if self.offset:
                raise ValidationError("give 'after' or 'offset', not both")
            parse_cursor(self.after)

    def matches(self, job: Job) -> bool:
        return (
            (self.state is None or job.state is self.state)
            and (self.type is None or job.type == self.type)
            and (
                self.process_instance_id is None
                or job.process_instance_id == self.process_instance_id
            )
            and (self.priority_min is None or job.priority >= self.priority_min)
            and (self.priority_max is None or job.priority <= self.priority_max)
        )


@dataclass(frozen=True, slots=True)
class JobPage:
    jobs: list[Job]
    total: int | None  # None: more than were read
    more: bool  # jobs after this page
    truncated: bool  # sorted among the first SORT_WINDOW jobs of some state only
    next: str | None = None  # the cursor of the next page (queue order)


def _acquisition_key(job: Job) -> tuple[int, int, int]:
    return (-job.priority, job.due_ms, int(job.id))


def _queue_key(item: tuple[int, Job]) -> tuple[int, ...]:
    """The order each state keeps (acquisition order for ready and suspended jobs),
    the states in Management's order."""
    position, job = item
    rank = STATE_ORDER.index(job.state)
    if job.state in (JobState.READY, JobState.SUSPENDED):
        return (rank, *_acquisition_key(job))
    if job.state is JobState.SCHEDULED:
        return (rank, job.due_ms, -job.priority, int(job.id))
    if job.state is JobState.LOCKED:
        return (rank, job.lock_expires_ms or 0, int(job.id))
    return (rank, position, int(job.id))  # incidents: by when they became one


SORT_KEYS: dict[str, Callable[[tuple[int, Job]], tuple[int, ...]]] = {
    "queue": _queue_key,
    "-priority": lambda item: _acquisition_key(item[1]),
    "priority": lambda item: (item[1].priority, item[1].due_ms, int(item[1].id)),
    "due": lambda item: (item[1].due_ms, int(item[1].id)),
    "-due": lambda item: (-item[1].due_ms, -int(item[1].id)),
    "id": lambda item: (int(item[1].id),),
    "-id": lambda item: (-int(item[1].id),),
}


class JobLister:
    """Lists the jobs of one app by a :class:`JobQuery`.

    Each state is read through ``Management.jobs`` in the order it keeps; ready and
    suspended jobs, kept per type, are read type by type and merged. In its own order a
    source is read only as far as the page needs; for another sort, up to SORT_WINDOW
    jobs of it are read and sorted. Queue order pages by keyset (any depth), and a
    process instance's jobs are read through its index.
    """

    def __init__(self, app: App) -> None:
        self.app = app

    def pager(self) -> JobPager:
        return JobPager(self.app.store, self._types)

    def find(self, query: JobQuery) -> JobPage:
        if query.process_instance_id is not None:
            mine = self.app.management.instance_jobs(query.process_instance_id)
            matching = [job for job in mine if query.matches(job)]
            return self._page(query, list(enumerate(matching)), exhausted=True)
        if query.sort == "queue":
            return self._keyset(query)
        need = query.offset + query.limit + 1
        states = [query.state] if query.state is not None else list(STATE_ORDER)
        items: list[tuple[int, Job]] = []
        exhausted = True
        truncated = False
        for state in states:
            kept_per_type = state in (JobState.READY, JobState.SUSPENDED)
            in_order = query.sort == "queue" or (query.sort == "-priority" and kept_per_type)
            if kept_per_type and in_order and query.type is None:
                sources: list[str | None] = list(self._types())
            else:
                sources = [query.type]
            for job_type in sources:
                jobs, complete = self._read(state, job_type, query, need if in_order else None)
                exhausted = exhausted and complete
                truncated = truncated or (not in_order and not complete)
                items.extend(enumerate(jobs))
        return self._page(query, items, exhausted=exhausted, truncated=truncated)

    def _page(
        self,
        query: JobQuery,
        items: list[tuple[int, Job]],
        *,
        exhausted: bool,
        truncated: bool = False,
    ) -> JobPage:
        items.sort(key=SORT_KEYS[query.sort])
        page = [job for _, job in items[query.offset : query.offset + query.limit]]
        more = len(items) > query.offset + query.limit
        return JobPage(page, len(items) if exhausted else None, more, truncated)

    def _keyset(self, query: JobQuery) -> JobPage:
        """Queue order, by keyset: any depth costs one page (an offset, for old clients,
        is walked page by page to its start)."""
        pager = self.pager()
        filtered = query.priority_min is not None or query.priority_max is not None
        keep = query.matches if filtered else None
        after = query.after
        skip = query.offset
        while skip:
            step = min(skip, MAX_LIMIT)
            skipped, after = pager.page(query.state, query.type, after, step, keep)
            skip -= len(skipped)
            if after is None:
                return JobPage([], None, False, False)
        jobs, after = pager.page(query.state, query.type, after, query.limit, keep)
        return JobPage(jobs, None, after is not None, False, after)

    def _types(self) -> list[str]:
        return [info.type for info in self.app.management.job_definitions()]

    def _read(
        self, state: JobState, job_type: str | None, query: JobQuery, need: int | None
    ) -> tuple[list[Job], bool]:
        """The first ``need`` matching jobs of one source in its order (all, up to
        SORT_WINDOW, when ``need`` is None), and whether that was all of them."""
        management = self.app.management
        want = SORT_WINDOW if need is None else min(need, SORT_WINDOW)
        filtered = query.priority_min is not None or query.priority_max is not None
        limit = min(SORT_WINDOW, want * 4 if filtered else want)
        while True:
            jobs = management.jobs(state=state, type=job_type, limit=limit)
            found = [job for job in jobs if query.matches(job)]
            complete = len(jobs) < limit
            if len(found) >= want or complete or limit >= SORT_WINDOW:
                return found[:want], complete and len(found) <= want
            limit = min(SORT_WINDOW, limit * 4)


# -- counts by job type ------------------------------------------------------------------------


@dataclass
class TypeCounts:
    """Job type -> state -> count, or ``None`` when the namespace was too big to count."""

    by_type: dict[str, dict[str, int]] | None
    valid_until: float = 0.0


class TypeCounter:
    """Counts jobs by type and state, shared by every request; a count is reused for
    ``ttl_s``, or for ten times as long as counting took, so that polling browsers keep
    the load on Redis low whatever the number of jobs."""

    def __init__(self, app: App, *, ttl_s: float = TYPE_COUNT_TTL_S) -> None:
        self.app = app
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._cached = TypeCounts(None)

    def invalidate(self) -> None:
        with self._lock:
            self._cached = TypeCounts(None)

    def get(self, total_jobs: int) -> dict[str, dict[str, int]] | None:
        with self._lock:
            started = time.monotonic()
            if started < self._cached.valid_until:
                return self._cached.by_type
            by_type = self.app.management.counts_by_type()
            took = time.monotonic() - started
            self._cached = TypeCounts(by_type, started + max(self.ttl_s, took * TYPE_COUNT_DUTY))
            return by_type


def _zero_counts() -> dict[str, int]:
    return {**{state.value: 0 for state in STATE_ORDER}, "total": 0}


def job_types(app: App, counts: Mapping[str, Mapping[str, int]] | None) -> list[dict[str, Any]]:
    """Every job definition with its overriding priority, suspension and counts."""
    definitions = {info.type: info for info in app.management.job_definitions()}
    names = sorted(set(definitions) | set(counts or {}))
    result = []
    for name in names:
        info = definitions.get(name)
        result.append(
            {
                "type": name,
                "overriding_priority": info.overriding_priority if info else None,
                "suspended": info.suspended if info else False,
                "deployed": info.deployed if info else False,
                "priority_rule": info.priority_rule if info else "",
                "deployed_by": info.app if info else "",
                "conflict": info.conflict if info else "",
                "registered": name in app.definitions if app.definitions else None,
                "counts": None if counts is None else dict(counts.get(name) or _zero_counts()),
            }
        )
    return result


# -- process instances -----------------------------------------------------------------------


def process_instance(app: App, process_instance_id: str, lister: JobLister) -> dict[str, Any]:
    """A process instance's revision, variables and jobs (raises NotFoundError)."""
    check_process_instance_id(process_instance_id)
    revision, priority, raw = app.store.read_process_instance(process_instance_id)
    try:
        variables: Any = jsonable(unpack(raw, "variables"))
        error = None
    except PayloadError as exc:
        variables, error = None, str(exc)
    page = lister.find(JobQuery(process_instance_id=process_instance_id, limit=MAX_LIMIT))
    return {
        "id": process_instance_id,
        "revision": revision,
        "priority": priority,
        "variables": variables,
        "variables_error": error,
        "jobs": [job_summary(job) for job in page.jobs],
        "jobs_total": page.total,
    }


# -- the cluster ---------------------------------------------------------------------------


@dataclass
class _Sample:
    at_ms: int
    totals: dict[str, int]
    nodes: dict[str, dict[str, int]] = field(default_factory=dict)


def _rate(new: int, old: int, seconds: float) -> float:
    return round(max(0, new - old) / seconds, 3)


class ClusterView:
    """Live nodes and workers, counters, and counters as rates over the last seconds.

    Rates come from the samples this view took (one per request, at most one a second),
    so the first request has none."""

    def __init__(self, app: App, *, window_ms: int = RATE_WINDOW_MS) -> None:
        self.app = app
        self.window_ms = window_ms
        self._lock = threading.Lock()
        self._samples: deque[_Sample] = deque()

    def _observe(self, sample: _Sample) -> _Sample | None:
        """Records ``sample``; returns the oldest sample in the window to compare with."""
        with self._lock:
            samples = self._samples
            if samples and sample.at_ms < samples[-1].at_ms:
                samples.clear()  # another Redis, or its clock went back
            if not samples or sample.at_ms - samples[-1].at_ms >= 1000:
                samples.append(sample)
            while samples and sample.at_ms - samples[0].at_ms > self.window_ms:
                samples.popleft()
            oldest = samples[0] if samples else None
        if oldest is None or sample.at_ms - oldest.at_ms < 1000:
            return None
        return oldest

    def snapshot(self) -> dict[str, Any]:
        store = self.app.store
        now = store.time_ms()
        stats = cluster_stats(store)
        workers = live_workers(store)
        node_counts = by_node(stats)
        counter_names = [*COUNTERS, "lock-expired"]
        totals = {name: stats.get(name, {}).get("total", 0) for name in counter_names}
        per_node: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNTERS, 0))
        for name in COUNTERS:
            for node, count in node_counts.get(name, {}).items():
                per_node[node][name] = count
        sample = _Sample(now, totals, dict(per_node))
        base = self._observe(sample)
        seconds = (now - base.at_ms) / 1000 if base else 0.0

        def rates(new: Mapping[str, int], old: Mapping[str, int] | None) -> dict[str, float] | None:
            if base is None or old is None:
                return None
            return {name: _rate(count, old.get(name, 0), seconds) for name, count in new.items()}

        nodes: dict[str, dict[str, Any]] = {}
        for worker in workers:
            node = str(worker.get("node"))
            entry = nodes.setdefault(node, {"node": node, "workers": []})
            entry["workers"].append(jsonable(worker))
        for node, entry in nodes.items():
            counters = per_node[node]
            entry["counters"] = counters
            entry["rates"] = rates(counters, base.nodes.get(node, {}) if base else None)
        total_rates = rates(totals, base.totals if base else None)
        latency = histogram_buckets({name: per.get("total", 0) for name, per in stats.items()})
        return {
            "now_ms": now,
            "window_s": round(seconds, 3) if base else None,
            "nodes": sorted(nodes.values(), key=lambda entry: str(entry["node"])),
            "workers": len(workers),
            "counters": totals,
            "rates": total_rates,
            "throughput_per_s": (
                None
                if total_rates is None
                else round(total_rates["job-successful"] + total_rates["job-failed"], 3)
            ),
            "histograms": {
                name: [
                    {"le_ms": None if bound == float("inf") else int(bound), "count": count}
                    for bound, count in buckets
                ]
                for name, buckets in latency.items()
            },
        }
