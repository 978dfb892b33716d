"""Periodic jobs: cron schedules that live in Redis and fire on whichever node ticks first.

A schedule is deployed with its app (``App.periodic(...)`` then ``App.deploy()``) into
the ``periodic`` hash, with its next tick in the ``periodic_due`` zset. Every worker's
housekeeper polls that zset (one ZRANGE of the earliest ticks; nothing else while
nothing is due), computes the following tick in Python with cronsim, and calls
lua/tick.lua, which compares-and-sets the stored tick, so of any number of workers
racing on one tick exactly one creates its job. A tick found late by more than the
schedule's grace, or after the following tick has come, was missed (no node ran): it
is skipped, or with ``catch_up`` run once, and the schedule moves on to its next tick in
the future.

Record in ``periodic`` (name -> ``|``-separated, the payload last and raw)::

    fingerprint|cron|timezone|catch_up|grace ms|app|host|deployed ms|
    type|priority|retries|exclusive|payload

and in ``periodic_last`` (name -> ``tick ms|outcome|job id|at ms``). Cron expressions
are cronsim's: five fields, or six with a leading seconds field.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from rexec.codec import MAX_MS, priority_from_key
from rexec.errors import InvalidScheduleError, ValidationError

if TYPE_CHECKING:
    from rexec.store import NewJob, Store

log = logging.getLogger("rexec.periodic")

NAME_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,200}$")
DEFAULT_GRACE_MS = 60_000
POLL_LIMIT = 100  # due schedules one poll ticks; more are ticked by the next poll
MAX_POLL_WAIT_MS = 1_000  # a newly deployed schedule is seen within this
MIN_POLL_GAP_MS = 50
# tick.lua statuses
CREATED, SKIPPED, LOST, NOT_DUE, RULE_UNAVAILABLE = 0, 1, 2, 3, 4
OUTCOMES = {CREATED: "created", SKIPPED: "skipped", LOST: "lost", NOT_DUE: "not due"}
DEPLOY_STATUSES = ("new", "unchanged", "changed")


def check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidScheduleError(
            f"schedule name must be 1-200 characters of A-Z a-z 0-9 _ . : -, got {name!r}"
        )
    return name


def zone(name: object) -> ZoneInfo:
    """The IANA timezone ``name`` (``UTC``, ``Europe/Berlin``), or InvalidScheduleError."""
    if not isinstance(name, str) or not name:
        raise InvalidScheduleError(f"timezone must be an IANA name like 'UTC', got {name!r}")
    return _zone(name)


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidScheduleError(f"unknown timezone {name!r}") from None


def check_cron(expr: object) -> str:
    """``expr`` if cronsim accepts it (5 fields, or 6 with seconds first), else raise."""
    if not isinstance(expr, str) or "|" in expr or not expr.strip():
        raise InvalidScheduleError(f"not a cron expression: {expr!r}")
    try:
        CronSim(expr, datetime(2000, 1, 1, tzinfo=UTC))
    except (CronSimError, ValueError, KeyError, IndexError) as exc:
        raise InvalidScheduleError(f"invalid cron expression {expr!r}: {exc}") from None
    return " ".join(expr.split())


def aware(value: object, what: str = "time") -> datetime:
    """``value`` if it is a timezone-aware datetime; a naive one is refused (its zone
    would be a guess)."""
    if not isinstance(value, datetime):
        raise InvalidScheduleError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise InvalidScheduleError(
            f"{what} {value.isoformat()} is naive: give a timezone-aware datetime"
        )
    return value


def to_ms(value: datetime | int, what: str = "time") -> int:
    """Milliseconds since the epoch of an aware datetime or an integer ms."""
    if isinstance(value, bool):
        raise InvalidScheduleError(f"{what} must be a datetime or integer ms, got {value!r}")
    if isinstance(value, int):
        if not 0 <= value <= MAX_MS:
            raise InvalidScheduleError(f"{what} must be 0..{MAX_MS} ms, got {value}")
        return value
    return int(aware(value, what).timestamp() * 1000)


def next_tick_ms(cron: str, timezone: str, after_ms: int) -> int:
    """The first tick of ``cron`` in ``timezone`` strictly after ``after_ms``."""
    start = datetime.fromtimestamp(after_ms / 1000, zone(timezone))
    try:
        tick = next(CronSim(cron, start))
    except StopIteration:
        raise InvalidScheduleError(f"cron expression {cron!r} has no tick after {start}") from None
    ms = int(tick.timestamp() * 1000)
    # Ticks are whole seconds and cronsim starts from the whole second: strictly after.
    return ms if ms > after_ms else next_tick_ms(cron, timezone, after_ms + 1000)


def next_runs(
    cron: str, timezone: str = "UTC", after: datetime | int | None = None, count: int = 5
) -> list[datetime]:
    """The next ``count`` ticks after ``after`` (now when None), aware, in ``timezone``."""
    expr, tz = check_cron(cron), zone(timezone)
    ms = to_ms(after, "after") if after is not None else int(datetime.now(UTC).timestamp() * 1000)
    runs = []
    for _ in range(count):
        ms = next_tick_ms(expr, timezone, ms)
        runs.append(datetime.fromtimestamp(ms / 1000, tz))
    return runs


@dataclass(frozen=True, slots=True)
class Schedule:
    """A periodic job as an app declares it: every tick of ``cron`` in ``timezone``
    creates one job as ``job`` describes it (type, payload, priority; the app fills in
    its own defaults at deploy, as for enqueue)."""

    name: str
    cron: str
    timezone: str
    job: NewJob
    catch_up: bool = False
    grace_ms: int = DEFAULT_GRACE_MS

    def __post_init__(self) -> None:
        check_name(self.name)
        object.__setattr__(self, "cron", check_cron(self.cron))
        zone(self.timezone)
        if not isinstance(self.catch_up, bool):
            raise InvalidScheduleError(f"catch_up must be True or False, got {self.catch_up!r}")
        g = self.grace_ms
        if isinstance(g, bool) or not isinstance(g, int) or not 0 <= g <= 86_400_000:
            raise InvalidScheduleError(f"grace_ms must be 0..86400000, got {g!r}")
        if self.job.process_instance_id is not None or self.job.due_ms or self.job.delay_ms:
            raise InvalidScheduleError("a periodic job has no process instance, due or delay")
        next_tick_ms(self.cron, self.timezone, 0)  # one that never fires is refused

    @property
    def head(self) -> str:
        """What defines the schedule (the fingerprint covers it), without the payload."""
        t, pk, _, retries, exclusive, _, _ = self.job.script_args()
        flag = "1" if self.catch_up else "0"
        return "|".join((self.cron, self.timezone, flag, str(self.grace_ms), str(t), str(pk),
                         str(retries), str(exclusive)))  # fmt: skip

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.head.encode())
        digest.update(self.job.payload_raw or b"")
        return digest.hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class PeriodicInfo:
    """A deployed schedule as the store holds it."""

    name: str
    type: str
    cron: str
    timezone: str
    catch_up: bool
    grace_ms: int
    fingerprint: str
    app: str
    host: str
    deployed_ms: int
    priority: int | None  # explicit, or the deploying app's rule result
    payload_raw: bytes | None
    next_ms: int | None
    last_tick_ms: int | None = None
    last_outcome: str = ""
    last_job_id: str = ""
    last_at_ms: int | None = None

    def to_dict(self) -> dict[str, Any]:
        tz = zone(self.timezone)
        nxt = self.next_ms

        def iso(ms: int | None, zone_: Any) -> str | None:
            return None if ms is None else datetime.fromtimestamp(ms / 1000, zone_).isoformat()

        return {
            "name": self.name,
            "type": self.type,
            "cron": self.cron,
            "timezone": self.timezone,
            "catch_up": self.catch_up,
            "grace_ms": self.grace_ms,
            "priority": self.priority,
            "next_ms": nxt,
            "next_local": iso(nxt, tz),
            "next_utc": iso(nxt, UTC),
            "last_tick_ms": self.last_tick_ms,
            "last_outcome": self.last_outcome,
            "last_job_id": self.last_job_id or None,
            "app": self.app,
            "host": self.host,
            "deployed_ms": self.deployed_ms,
        }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def parse_info(
    name: str, record: bytes, next_ms: float | None, last: bytes | None
) -> PeriodicInfo | None:
    """The stored record of ``name`` (None when it is not one this version wrote)."""
    parts = record.split(b"|", 12)
    if len(parts) != 13:
        return None
    try:
        fp, cron, tz, catch_up, grace, app, host, deployed, t, pk = (p.decode() for p in parts[:10])
        zone(tz)  # an InvalidScheduleError is a ValueError: not a record to show
        tick_ms, outcome, job_id, at_ms = None, "", "", None
        if last:
            tick, outcome, job_id, at = _text(last).split("|", 3)
            tick_ms, at_ms = int(tick), int(at)
        return PeriodicInfo(
            name=name,
            type=t,
            cron=cron,
            timezone=tz,
            catch_up=catch_up == "1",
            grace_ms=int(grace),
            fingerprint=fp,
            app=app,
            host=host,
            deployed_ms=int(deployed),
            priority=priority_from_key(pk.removeprefix("d")) if pk else None,
            payload_raw=parts[12] or None,
            next_ms=None if next_ms is None else int(next_ms),
            last_tick_ms=tick_ms,
            last_outcome=outcome,
            last_job_id=job_id,
            last_at_ms=at_ms,
        )
    except (ValueError, UnicodeDecodeError):
        return None


# -- the store side ------------------------------------------------------------------------


def deploy(
    store: Store, schedules: list[Schedule], *, app: str, host: str, now_ms: int | None = None
) -> dict[str, str]:
    """Writes ``schedules`` (one script, all or nothing) and removes the schedules ``app``
    deployed before that are not among them. An unchanged schedule keeps its next tick;
    a new or changed one is due at its first tick after ``now_ms`` (Redis time when
    None). Returns per name ``new``, ``unchanged``, ``changed`` or ``removed``."""
    names = [s.name for s in schedules]
    if len(set(names)) != len(names):
        raise InvalidScheduleError("two schedules share a name")
    now = store.time_ms() if now_ms is None else to_ms(now_ms, "now_ms")
    args: list[bytes | str | int] = [app, host, len(schedules)]
    for s in schedules:
        t, pk, _, retries, exclusive, _, payload = s.job.script_args()
        args += (s.name, s.fingerprint, s.cron, s.timezone, "1" if s.catch_up else "0",
                 s.grace_ms, t, pk, retries, exclusive, payload,
                 next_tick_ms(s.cron, s.timezone, now))  # fmt: skip
    reply: list[Any] = store._run("deploy_periodic", args)  # type: ignore[assignment]
    statuses, removed = reply
    result = {n: DEPLOY_STATUSES[int(st)] for n, st in zip(names, statuses, strict=True)}
    result.update({_text(n): "removed" for n in removed})
    return result


def unschedule(store: Store, name: str) -> bool:
    """Removes a deployed schedule; False when there was none. A worker about to tick it
    then loses its compare-and-set: no job is created after this returns."""
    check_name(name)
    k = store.keys
    pipe = store.client.pipeline(transaction=True)
    pipe.hdel(k.periodic, name)
    pipe.zrem(k.periodic_due, name)
    pipe.hdel(k.periodic_last, name)
    existed, *_ = pipe.execute()
    return bool(existed)


def schedules(store: Store) -> list[PeriodicInfo]:
    """Every deployed schedule, by next tick (one round trip)."""
    k = store.keys
    pipe = store.client.pipeline(transaction=False)
    pipe.hgetall(k.periodic)
    pipe.zrange(k.periodic_due, 0, -1, withscores=True)
    pipe.hgetall(k.periodic_last)
    records, due, last = pipe.execute()
    next_of = {_text(n): score for n, score in due}
    lasts = {_text(n): v for n, v in last.items()}
    found = []
    for raw_name, record in records.items():
        name = _text(raw_name)
        info = parse_info(name, record, next_of.get(name), lasts.get(name))
        if info is not None:
            found.append(info)
    return sorted(found, key=lambda i: (i.next_ms is None, i.next_ms or 0, i.name))


@dataclass(frozen=True, slots=True)
class TickResult:
    name: str
    tick_ms: int
    status: int
    job_id: str | None = None
    next_ms: int | None = None

    @property
    def outcome(self) -> str:
        if self.status == RULE_UNAVAILABLE:
            return "rule unavailable"
        return OUTCOMES.get(self.status, "?")


@dataclass(frozen=True, slots=True)
class TickRound:
    """What one poll did, and when the earliest tick not yet due is (None: none)."""

    results: tuple[TickResult, ...]
    next_due_ms: int | None
    unreadable: tuple[tuple[str, str], ...] = ()  # (name, why): due, but left alone


def decide(
    cron: str, timezone: str, tick_ms: int, now_ms: int, *, catch_up: bool, grace_ms: int
) -> tuple[bool, int, str]:
    """What to do with a due tick at ``now_ms``, as a pure function: whether to create its
    job, the tick to store next, and the outcome to record. A tick whose following tick
    has come too, or that is late by more than ``grace_ms``, was missed: skipped, or run
    once with ``catch_up``; either way the schedule moves to its first tick after now."""
    following = next_tick_ms(cron, timezone, tick_ms)
    missed = now_ms >= following or now_ms - tick_ms > grace_ms
    if not missed:
        return True, following, "created"
    future = next_tick_ms(cron, timezone, max(now_ms, tick_ms))
    return catch_up, future, "caught_up" if catch_up else "skipped"


def tick(store: Store, now_ms: int, *, limit: int = POLL_LIMIT) -> TickRound:
    """One poll: ticks every schedule due at ``now_ms`` (the caller's view of Redis
    time). Idle, it costs one ZRANGE. Each tick is one compare-and-set script call: when
    several workers tick at once, one creates the job and the others get LOST. A record
    this version cannot read is left alone (named in ``unreadable``)."""
    k = store.keys
    rows: list[tuple[bytes, float]] = store.client.zrange(  # type: ignore[assignment]
        k.periodic_due, 0, limit - 1, withscores=True
    )
    due = [(_text(n), int(score)) for n, score in rows if score <= now_ms]
    later = [int(score) for _, score in rows if score > now_ms]
    next_due = later[0] if later else None
    if not due:
        return TickRound((), next_due)
    records: list[bytes | None] = store.client.hmget(k.periodic, [n for n, _ in due])  # type: ignore[assignment]
    results = []
    unreadable = []
    for (name, tick_ms), record in zip(due, records, strict=True):
        info = None if record is None else parse_info(name, record, tick_ms, None)
        if info is None:
            unreadable.append((name, "no record this version can read"))
            continue
        try:
            create, new_due, outcome = decide(
                info.cron, info.timezone, tick_ms, now_ms,
                catch_up=info.catch_up, grace_ms=info.grace_ms,
            )  # fmt: skip
        except ValidationError as exc:
            unreadable.append((name, str(exc)))
            continue
        reply: list[Any] = store._run(  # type: ignore[assignment]
            "tick",
            [k.wake_channel, name, info.fingerprint, tick_ms, new_due,
             "1" if create else "0", outcome],
        )  # fmt: skip
        status, job_id, now_due = int(reply[0]), _text(reply[1]), int(reply[2])
        results.append(TickResult(name, tick_ms, status, job_id or None, now_due))
        if status == RULE_UNAVAILABLE:
            log.warning(
                "periodic schedule %r: job type %r has its priority rule in Python, and the"
                " app that deployed the schedule does not register the type; tick %d"
                " created no job",
                name,
                info.type,
                tick_ms,
            )
    # The next ticks as stored now, by this worker or (LOST) the one that won.
    dues = [r.next_ms for r in results if r.next_ms is not None and r.next_ms >= 0]
    if next_due is not None:
        dues.append(next_due)
    return TickRound(tuple(results), min(dues, default=None), tuple(unreadable))


class Ticker:
    """Polls for due ticks on a schedule of its own: at the earliest stored tick, and at
    least every ``max_wait_ms`` (a newly deployed schedule). ``clock`` gives the caller's
    view of Redis time in ms; ``maybe_tick`` is called often and is cheap between polls."""

    def __init__(self, store: Store, clock: Any, *, max_wait_ms: int = MAX_POLL_WAIT_MS) -> None:
        self.store = store
        self.clock = clock
        self.max_wait_ms = max_wait_ms
        self.next_poll_ms = 0
        self._told: set[str] = set()  # unreadable schedules already logged

    def maybe_tick(self) -> TickRound | None:
        now = int(self.clock())
        if now < self.next_poll_ms:
            return None
        # Set first: a poll that raises (Redis away) waits like an idle one.
        self.next_poll_ms = now + self.max_wait_ms
        result = tick(self.store, now)
        if result.next_due_ms is not None:
            # Not sooner than MIN_POLL_GAP_MS: a tick not yet due by Redis's clock (this
            # process's estimate runs ahead) is retried, not spun on.
            soonest = max(now + MIN_POLL_GAP_MS, result.next_due_ms)
            self.next_poll_ms = min(self.next_poll_ms, soonest)
        for name, why in result.unreadable:
            if name not in self._told:
                self._told.add(name)
                log.warning("periodic schedule %r cannot be ticked: %s", name, why)
        for r in result.results:
            if r.status in (CREATED, SKIPPED):
                log.info(
                    "periodic %s: tick %s %s",
                    r.name,
                    datetime.fromtimestamp(r.tick_ms / 1000, UTC).isoformat(),
                    f"created job {r.job_id}" if r.status == CREATED else "skipped (missed)",
                )
        return result
