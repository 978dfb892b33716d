"""Partitioned namespaces: one namespace spread over several hash tags, so that its work
spreads over the masters of a Redis Cluster.

A namespace of P partitions is P sets of the usual keys (rexec/keys.py), each under its
own hash tag: partition 0 is the namespace's own ``{namespace}`` (so a one-partition
namespace is exactly the namespace of before), partition k its own ``{namespace/pk.s}``,
the salt ``s`` chosen so that the tags' Redis Cluster slots lie evenly around the 16384
slots, ``16384 / P`` apart. Every Lua script runs inside one partition, unchanged: the
partitions are a routing layer in Python.

- The layout (count and tags) is written once, when the namespace is created, into
  partition 0's ``partitions`` key; everyone else reads it. A conflicting count is an
  error.
- Ids route themselves: partition k's id counter starts at ``k * ID_STRIDE``, so a job
  id (digits) or a process instance id (``p`` + digits) names its partition by its
  number alone: ``number // ID_STRIDE``.
- A process instance, its variables, joins and jobs live in one partition: exclusivity,
  commits and joins stay single-script and atomic. Jobs without an instance spread
  round-robin over the partitions.
- Acquisition: a worker peeks at the head of every partition in one pipelined round trip
  (lua/peek.lua), merges them, and acquires from each partition only its share of the
  best ``n`` overall, bounded below by the priority of the last job in that share (see
  PartitionedStore.acquire_jobs and docs/internals/redis-schema.md).
"""

from __future__ import annotations

import itertools
import json
import random
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.crc import key_slot

from rexec.connection import node_client
from rexec.errors import (
    ConfigurationError,
    PartialEnqueueError,
    ProcessInstanceNotFoundError,
    RexecError,
    ValidationError,
)
from rexec.job import Job, JobState
from rexec.keys import Keys
from rexec.retry import RetryCycle
from rexec.status import Status, translate_script_error
from rexec.store import (
    DEFAULT_REPLICATION_TIMEOUT_MS,
    AcquiredJobs,
    AcquireOptions,
    Effects,
    NewJob,
    Store,
    _owner_of,
    check_job_id,
    check_owner,
    check_process_instance_id,
    check_unique_key,
)

MAX_PARTITIONS = 256
# Partition k's ids start at k * ID_STRIDE: ten trillion ids each, and the largest id
# (MAX_PARTITIONS * ID_STRIDE) stays below 2**53, exact in Lua's numbers.
ID_STRIDE = 10**13
SLOTS = 16384
_SALT_TRIES = 100_000


class PartitionCountError(ConfigurationError):
    """A namespace was opened with a partition count other than the one it was created
    with (the count is fixed at creation)."""


def check_partitions(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PARTITIONS:
        raise ValidationError(f"partitions must be an integer 1..{MAX_PARTITIONS}, got {value!r}")
    return value


def choose_tags(namespace: str, count: int) -> tuple[str, ...]:
    """The hash tags of ``count`` partitions. Cut the 16384 slots into ``count`` equal
    slices (as a cluster of ``count`` masters, or of a divisor of it, cuts its slot
    ranges); partition 0 is the namespace's own tag (``''``), in whatever slice its slot
    falls, and partition k takes the next slices in turn: the first salt whose slot lies
    in the middle half of slice ``(home + k) % count``. So every slice holds one
    partition, and ``count = masters`` puts one partition on each master (up to the
    rounding of the ranges' edges), ``count = 2 * masters`` two on each."""
    Keys(namespace)
    check_partitions(count)
    width = SLOTS / count
    home = int(key_slot(namespace.encode()) // width)
    tags = [""]
    for k in range(1, count):
        center = ((home + k) % count + 0.5) * width
        for salt in range(_SALT_TRIES):
            tag = f"{namespace}/p{k}.{salt}"
            if abs(key_slot(tag.encode()) + 0.5 - center) <= width / 4:
                tags.append(tag)
                break
        else:  # pragma: no cover - CRC16 reaches every quarter slice within a few thousand
            raise ConfigurationError(f"no hash tag found for partition {k} of {namespace!r}")
    return tuple(tags)


@dataclass(frozen=True, slots=True)
class Layout:
    """Where a namespace's partitions are: their hash tags, partition 0 first."""

    namespace: str
    tags: tuple[str, ...] = ("",)

    @property
    def count(self) -> int:
        return len(self.tags)

    def keys(self, partition: int) -> Keys:
        return Keys(self.namespace, self.tags[partition])

    def of_number(self, number: int) -> int | None:
        part = number // ID_STRIDE
        return part if part < self.count else None

    def of_job(self, job_id: str) -> int | None:
        """The partition a job id belongs to, or None if it belongs to none."""
        return self.of_number(int(check_job_id(job_id)))

    def of_instance(self, process_instance_id: str) -> int:
        """The partition of a process instance (``p<number>``); an id of another form
        (none is created so) is looked for in partition 0."""
        check_process_instance_id(process_instance_id)
        digits = process_instance_id[1:]
        if process_instance_id.startswith("p") and digits.isdigit() and len(digits) <= 20:
            part = self.of_number(int(digits))
            return 0 if part is None else part
        return 0

    def to_json(self) -> str:
        return json.dumps(
            {"partitions": self.count, "tags": list(self.tags), "id_stride": ID_STRIDE},
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, namespace: str, raw: bytes | str) -> Layout:
        try:
            data = json.loads(raw)
            tags = tuple(str(t) for t in data["tags"])
            if int(data["id_stride"]) != ID_STRIDE or int(data["partitions"]) != len(tags):
                raise ValueError("inconsistent layout")
            if not tags or tags[0] != "":
                raise ValueError("partition 0 must be the namespace's own tag")
            layout = cls(namespace, tags)
            for k in range(layout.count):
                layout.keys(k)  # validates the tag
            return layout
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            raise ConfigurationError(
                f"namespace {namespace!r} has an unreadable partition layout: {exc}"
            ) from exc


def read_layout(client: redis.Redis, namespace: str) -> Layout:
    """The namespace's stored layout; one partition when none is stored."""
    try:
        raw = client.get(Keys(namespace).partitions)
    except redis.exceptions.NoPermissionError:
        # A user refused this key is refused every key of partition 0 (ACLs grant a
        # namespace by its prefix): each call then fails on its own, as it did before
        # namespaces had a layout, rather than here.
        return Layout(namespace)
    if raw is None:
        return Layout(namespace)
    return Layout.from_json(namespace, raw)


def _conflict(namespace: str, has: int, asked: int) -> PartitionCountError:
    return PartitionCountError(
        f"namespace {namespace!r} has {has} partition{'s' if has != 1 else ''}, not {asked}:"
        " the count is fixed when the namespace is created"
    )


def open_layout(client: redis.Redis, namespace: str, partitions: int | None = None) -> Layout:
    """The namespace's layout. ``partitions=None`` takes whatever is stored; a count
    creates the namespace with it if it does not exist yet, and must match otherwise
    (PartitionCountError). A namespace that already holds data without a stored layout
    has one partition."""
    if partitions is not None:
        check_partitions(partitions)
    layout = read_layout(client, namespace)
    if partitions is None or partitions == layout.count:
        if layout.count > 1:
            _start_counters(client, layout)
        return layout
    if layout.count > 1:
        raise _conflict(namespace, layout.count, partitions)
    home = Keys(namespace)
    if client.exists(home.seq, home.definitions, home.jobs, home.pis):
        raise _conflict(namespace, 1, partitions)
    created = Layout(namespace, choose_tags(namespace, partitions))
    if not client.set(home.partitions, created.to_json(), nx=True):
        layout = read_layout(client, namespace)  # another process created it first
        if layout.count != partitions:
            raise _conflict(namespace, layout.count, partitions)
        created = layout
    _start_counters(client, created)
    return created


def _start_counters(client: redis.Redis, layout: Layout) -> None:
    """Starts partition k's id counter at k * ID_STRIDE (idempotent: SET NX)."""
    pipe = client.pipeline(transaction=False)
    for k in range(1, layout.count):
        pipe.set(layout.keys(k).seq, k * ID_STRIDE, nx=True)
    pipe.execute()


def _ordered(job: Job) -> tuple[int, int, int]:
    return (-job.priority, job.due_ms, int(job.id))


class PartitionedStore(Store):
    """A Store over every partition of a namespace, with the Store's interface: each call
    is routed by job id or process instance id, or fanned out over the partitions. As a
    Store it stands for partition 0, which also holds what belongs to the namespace as a
    whole: the layout, workers, heartbeats, metrics and the cockpit's series."""

    def __init__(
        self,
        client: redis.Redis,
        layout: Layout,
        *,
        acquisition: str = "atomic",
        history_max_len: int = 0,
        history_ttl_ms: int = 0,
        durability: str = "default",
        replication_timeout_ms: int = DEFAULT_REPLICATION_TIMEOUT_MS,
    ) -> None:
        super().__init__(
            client,
            layout.namespace,
            acquisition=acquisition,
            history_max_len=history_max_len,
            history_ttl_ms=history_ttl_ms,
            durability=durability,
            replication_timeout_ms=replication_timeout_ms,
        )
        self.layout = layout
        self.parts = [
            Store(
                client,
                layout.namespace,
                acquisition=acquisition,
                history_max_len=history_max_len,
                history_ttl_ms=history_ttl_ms,
                durability=durability,
                replication_timeout_ms=replication_timeout_ms,
                tag=tag,
            )
            for tag in layout.tags
        ]
        # Jobs without an instance go round-robin, from a random start per producer.
        self._next = random.randrange(layout.count)

    @property
    def partition_stores(self) -> list[Store]:
        return list(self.parts)

    def _spread(self) -> int:
        part = self._next
        self._next = (part + 1) % self.layout.count
        return part

    def _of_instance(self, process_instance_id: str) -> Store:
        return self.parts[self.layout.of_instance(process_instance_id)]

    def instance_keys(self, process_instance_id: str) -> Keys:
        return self._of_instance(process_instance_id).keys

    def _group(self, job_ids: Iterable[str]) -> dict[int | None, list[int]]:
        """Positions of the ids by partition (None: ids of no partition)."""
        groups: dict[int | None, list[int]] = {}
        for i, job_id in enumerate(job_ids):
            groups.setdefault(self.layout.of_job(job_id), []).append(i)
        return groups

    # -- producers -----------------------------------------------------------------------

    def enqueue(self, jobs: Sequence[NewJob], *, chunk: int = 1000) -> list[str]:
        """As Store.enqueue: a job of an instance goes to the instance's partition, one
        with a unique key to its key's (partition_of_key), any other round-robin. Each
        partition's share is written as Store.enqueue writes it; when a share is refused
        after others were written, PartialEnqueueError."""
        by_part = self._route(jobs, chunk)
        # Every instance is checked before anything is written.
        for part, positions in by_part.items():
            pis = {jobs[i].process_instance_id for i in positions} - {None}
            self.parts[part]._check_instances(pis)
        outcomes: dict[int, list[str] | RexecError] = {}
        for part, positions in sorted(by_part.items()):
            try:
                outcomes[part] = self.parts[part].enqueue([jobs[i] for i in positions], chunk=chunk)
            except RexecError as exc:
                outcomes[part] = exc
        return _merged(jobs, by_part, outcomes)

    async def aenqueue(
        self, aclient: Any, jobs: Sequence[NewJob], *, chunk: int = 1000
    ) -> list[str]:
        """As ``enqueue``, on a redis.asyncio client: the same routing, each partition's
        share written as Store.aenqueue writes it, one partition after another (every
        instance is checked before anything is written)."""
        by_part = self._route(jobs, chunk)
        for part, positions in by_part.items():
            pis = sorted({pi for i in positions if (pi := jobs[i].process_instance_id)})
            if pis:
                found = await aclient.hmget(self.parts[part].keys.pis, pis)
                missing = [pi for pi, record in zip(pis, found, strict=True) if record is None]
                if missing:
                    raise ProcessInstanceNotFoundError(f"no process instance {missing[0]!r}")
        outcomes: dict[int, list[str] | RexecError] = {}
        for part, positions in sorted(by_part.items()):
            try:
                outcomes[part] = await self.parts[part].aenqueue(
                    aclient, [jobs[i] for i in positions], chunk=chunk
                )
            except RexecError as exc:
                outcomes[part] = exc
        return _merged(jobs, by_part, outcomes)

    def partition_of_key(self, unique_key: str) -> int:
        """The partition of a job with unique key ``unique_key`` and no process instance:
        fixed by the key (CRC-32), so every producer looks for it in one place."""
        return zlib.crc32(check_unique_key(unique_key).encode("utf-8")) % self.layout.count

    def _route(self, jobs: Sequence[NewJob], chunk: int) -> dict[int, list[int]]:
        """The positions of ``jobs`` by partition: a job of an instance goes to the
        instance's partition, one with a unique key (and no instance) to its key's, any
        other round-robin."""
        if isinstance(chunk, bool) or not isinstance(chunk, int) or not 1 <= chunk <= 100_000:
            raise ValidationError(f"chunk must be 1..100000, got {chunk!r}")
        by_part: dict[int, list[int]] = {}
        for i, job in enumerate(jobs):
            if not isinstance(job, NewJob):
                raise ValidationError(f"expected a NewJob, got {type(job).__name__}")
            pi = job.process_instance_id
            if pi is not None:
                part = self.layout.of_instance(pi)
            elif job.unique_key is not None:
                part = self.partition_of_key(job.unique_key)
            else:
                part = self._spread()
            by_part.setdefault(part, []).append(i)
        return by_part

    def start_process_instance(
        self, variables_raw: bytes, priority: int | str | None = None, forms: str = ""
    ) -> str:
        return self.parts[self._spread()].start_process_instance(variables_raw, priority, forms)

    def start_process_instances(
        self, instances: Sequence[tuple[bytes, int | str | None, str]]
    ) -> list[str]:
        by_part: dict[int, list[int]] = {}
        for i in range(len(instances)):
            by_part.setdefault(self._spread(), []).append(i)
        ids: list[str] = [""] * len(instances)
        for part, positions in by_part.items():
            started = self.parts[part].start_process_instances([instances[i] for i in positions])
            for i, pi in zip(positions, started, strict=True):
                ids[i] = pi
        return ids

    def set_variables(
        self, process_instance_id: str, revision: int, variables_raw: bytes, forms: str
    ) -> Status:
        return self._of_instance(process_instance_id).set_variables(
            process_instance_id, revision, variables_raw, forms
        )

    def end_process_instance(self, process_instance_id: str) -> bool:
        return self._of_instance(process_instance_id).end_process_instance(process_instance_id)

    def read_process_instance(self, process_instance_id: str) -> tuple[int, int | None, bytes]:
        return self._of_instance(process_instance_id).read_process_instance(process_instance_id)

    # -- job definitions: written to every partition (their scripts read them) ------------

    def deploy(self, definitions: Sequence[tuple[str, str, str, str, str]]) -> list[int]:
        statuses = [part.deploy(definitions) for part in self.parts]
        return statuses[0]

    # -- workers ------------------------------------------------------------------------

    def acquire_jobs(
        self,
        owner: str,
        max_jobs: int,
        *,
        lock_ms: int = 30_000,
        priority_min: int | None = None,
        priority_max: int | None = None,
        types: Iterable[str] | None = None,
        options: AcquireOptions | None = None,
    ) -> AcquiredJobs:
        """Locks the best ``max_jobs`` jobs over all partitions, in two pipelined round
        trips: peek at every partition's head (lua/peek.lua), merge, then acquire from
        each partition its share of the best ``max_jobs``, no lower in priority than the
        last of them. Within a partition the order is the SPEC's; across partitions a
        job is passed over for a lower one only if it became acquirable (or was taken)
        between the peek and the acquire."""
        if options is None:
            options = AcquireOptions(
                lock_ms=lock_ms,
                priority_min=priority_min,
                priority_max=priority_max,
                types=tuple(types or ()),
            )
        check_owner(owner)
        if isinstance(max_jobs, bool) or not isinstance(max_jobs, int) or max_jobs < 0:
            raise ValidationError(f"max_jobs must be a non-negative integer, got {max_jobs!r}")
        lock, high_key, low_key, xcap, promote_cap, reclaim_cap, *type_args = options.args
        peek_args = [max_jobs, high_key, low_key, *type_args]
        peeked = self._per_node(dict.fromkeys(range(len(self.parts)), ("peek", peek_args)))
        heads: list[tuple[bytes, int]] = []
        # A partition with an expired lock gets an acquire call even with no share (of
        # 0 jobs, then): acquire is what reclaims expired locks.
        shares: dict[int, int] = {}
        now_ms, next_due_ms = 0, None
        for k, reply in sorted(peeked.items()):
            now, next_due, expired, *keys = reply
            now_ms = max(now_ms, int(now))
            if next_due >= 0 and (next_due_ms is None or next_due < next_due_ms):
                next_due_ms = int(next_due)
            if expired:
                shares[k] = 0
            heads.extend((bytes(key[:28]), k) for key in keys)
        heads.sort()
        chosen = heads[:max_jobs]
        if not chosen and not shares:
            return AcquiredJobs(batches=[], now_ms=now_ms, next_due_ms=next_due_ms)
        for _, k in chosen:
            shares[k] = shares.get(k, 0) + 1
        # Nothing below the priority of the last job chosen: a partition that lost its
        # head meanwhile does not hand over a job that another partition's beats.
        cut = chosen[-1][0][:16].decode() if chosen else ""
        floor = cut if low_key == "" or (cut and cut < str(low_key)) else str(low_key)
        if self.acquisition == "optimistic":
            parts = [
                self.parts[k]._acquire_optimistic(
                    owner,
                    n,
                    AcquireOptions(
                        lock_ms=options.lock_ms,
                        priority_min=_priority_of(floor),
                        priority_max=options.priority_max,
                        types=options.types,
                        exclusive_cap=options.exclusive_cap,
                        promote_cap=options.promote_cap,
                        reclaim_cap=options.reclaim_cap,
                    ),
                )
                for k, n in sorted(shares.items())
            ]
        else:
            calls = {
                k: ("acquire", [owner, n, lock, high_key, floor, xcap, promote_cap, reclaim_cap])
                for k, n in shares.items()
            }
            for _, args in calls.values():
                args.extend(type_args)
            acquired = self._per_node(calls)
            parts = [Store.parse_acquired(reply) for _, reply in sorted(acquired.items())]
        batches = sorted(
            (batch for got in parts for batch in got.batches), key=lambda b: _ordered(b[0])
        )
        dues = [got.next_due_ms for got in parts if got.next_due_ms is not None]
        if next_due_ms is not None:
            dues.append(next_due_ms)
        return AcquiredJobs(
            batches=batches,
            failed_to_lock=sum(got.failed_to_lock for got in parts),
            now_ms=max([now_ms, *(got.now_ms for got in parts)]),
            next_due_ms=min(dues) if dues else None,
            reclaimed=sum(got.reclaimed for got in parts),
            parked=sum(got.parked for got in parts),
        )

    def _per_node(self, calls: dict[int, tuple[str, list[Any]]]) -> dict[int, Any]:
        """Runs one script call per partition, as one pipeline per Redis server (on a
        cluster, the master of each partition's slot; Store.on_node re-sends it after a
        failover moved the slot): one round trip per master."""
        by_node: dict[int, list[int]] = {}
        for k in calls:
            node = node_client(self.client, self.parts[k].keys.jobs)
            by_node.setdefault(id(node), []).append(k)
        replies: dict[int, Any] = {}
        for partitions in by_node.values():

            def build(pipe: redis.client.Pipeline, partitions: list[int] = partitions) -> None:
                for k in partitions:
                    script, args = calls[k]
                    self.parts[k]._run(script, args, client=pipe)

            try:
                got = self.on_node(build, key=self.parts[partitions[0]].keys.jobs)
            except redis.ResponseError as exc:
                raise translate_script_error(exc) from exc
            replies.update(zip(partitions, got, strict=True))
        return replies

    def reclaim_expired_locks(self, cap: int = 1000) -> int:
        return sum(part.reclaim_expired_locks(cap) for part in self.parts)

    def _by_job(self, jobs: Sequence[Job]) -> dict[int, list[int]]:
        groups: dict[int, list[int]] = {}
        for i, job in enumerate(jobs):
            if not isinstance(job, Job):
                raise ValidationError(f"expected a Job, got {type(job).__name__}")
            part = self.layout.of_job(job.id)
            groups.setdefault(0 if part is None else part, []).append(i)
        return groups

    def _statuses_by_job(self, jobs: Sequence[Job], call: Any) -> list[Status]:
        statuses: list[Status] = [Status.NO_SUCH_JOB] * len(jobs)
        for part, positions in self._by_job(jobs).items():
            got = call(self.parts[part], [jobs[i] for i in positions])
            for i, status in zip(positions, got, strict=True):
                statuses[i] = status
        return statuses

    def _job_part(self, job: Job) -> Store:
        if not isinstance(job, Job):
            raise ValidationError(f"expected a Job, got {type(job).__name__}")
        part = self.layout.of_job(job.id)
        return self.parts[0 if part is None else part]

    def commit(
        self,
        job: Job,
        effects: Effects,
        *,
        lock_ms: int = 30_000,
        result: bytes = b"",
        started_ms: int | None = None,
    ) -> list[Job]:
        """As Store.commit, in the job's partition (its instance's, whose variables,
        joins and follow-ups live there too)."""
        part = self._job_part(job)
        home = self.parts.index(part)
        for new in (*(b.job for b in effects.jobs), *(j for _, j in effects.joins)):
            pi = new.process_instance_id
            if pi is not None and self.layout.of_instance(pi) != home:
                raise ValidationError(
                    f"job {job.id} creates a job for process instance {pi!r}, which lives in"
                    f" partition {self.layout.of_instance(pi)}, not {home}: a commit creates"
                    " jobs in its own partition only (enqueue it with the app instead)"
                )
        return part.commit(job, effects, lock_ms=lock_ms, result=result, started_ms=started_ms)

    def complete_many(
        self,
        jobs: Sequence[Job],
        results: Sequence[bytes] | None = None,
        started_ms: Sequence[int | None] | None = None,
    ) -> list[Status]:
        """As Store.complete_many (each job's result kept in its own partition); the
        partitions' shares go as one pipeline per master (each share through
        Store.complete_many when every write waits for a replica)."""
        if not jobs:
            return []
        values = [b""] * len(jobs) if results is None else list(results)
        starts: list[int | None] = [None] * len(jobs) if started_ms is None else list(started_ms)
        if len(values) != len(jobs) or len(starts) != len(jobs):
            raise ValidationError("one result and one start time per job")
        _owner_of(jobs)  # one owner, every job a Job, before anything is sent
        groups = self._by_job(jobs)
        if self.replicated or len(groups) == 1:
            statuses: list[Status] = [Status.NO_SUCH_JOB] * len(jobs)
            for k, positions in groups.items():
                got = self.parts[k].complete_many(
                    [jobs[i] for i in positions],
                    [values[i] for i in positions],
                    [starts[i] for i in positions],
                )
                for i, status in zip(positions, got, strict=True):
                    statuses[i] = status
            return statuses
        calls: dict[int, tuple[str, list[Any]]] = {}
        for k, positions in groups.items():
            args = self.parts[k]._complete_args(
                [jobs[i] for i in positions],
                [values[i] for i in positions],
                [starts[i] for i in positions],
            )
            calls[k] = ("complete", args)
        statuses = [Status.NO_SUCH_JOB] * len(jobs)
        for k, reply in self._per_node(calls).items():
            for i, status in zip(groups[k], reply, strict=True):
                statuses[i] = Status(status)
        return statuses

    def fail(
        self,
        job: Job,
        error: BaseException | str,
        *,
        retry_cycle: RetryCycle | None = None,
        details: str | None = None,
        give_up: bool = False,
        started_ms: int | None = None,
    ) -> JobState:
        return self._job_part(job).fail(
            job,
            error,
            retry_cycle=retry_cycle,
            details=details,
            give_up=give_up,
            started_ms=started_ms,
        )

    def unlock_many(self, jobs: Sequence[Job]) -> list[Status]:
        return self._statuses_by_job(jobs, lambda part, mine: part.unlock_many(mine))

    def extend_locks(self, jobs: Sequence[Job], lock_ms: int) -> tuple[int, list[Status]]:
        if not jobs:
            return self.time_ms() + lock_ms, []
        expiries: list[int] = []

        def extend(part: Store, mine: list[Job]) -> list[Status]:
            expires, got = part.extend_locks(mine, lock_ms)
            expiries.append(expires)
            return got

        statuses = self._statuses_by_job(jobs, extend)
        return min(expiries), statuses

    # -- results ------------------------------------------------------------------------

    def keys_of_job(self, job_id: str) -> Keys:
        """The keys of job ``job_id``'s partition (partition 0's for an id beyond the
        layout, where nothing is found)."""
        part = self.layout.of_job(job_id)
        return self.parts[0 if part is None else part].keys

    def set_result_cap(self, cap: int | None) -> None:
        """The cap is per partition: written to every partition, each keeps at most
        ``cap`` results (the namespace at most ``cap`` times the partition count)."""
        self.parts[0].set_result_cap(cap)  # validates before anything is written
        for part in self.parts[1:]:
            part.set_result_cap(cap)

    def result_cap(self) -> int:
        """The per-partition cap (as set_result_cap wrote it to every partition)."""
        return self.parts[0].result_cap()

    # -- operators ----------------------------------------------------------------------

    def get_job(self, job_id: str) -> Job | None:
        part = self.layout.of_job(job_id)
        return None if part is None else self.parts[part].get_job(job_id)

    def get_jobs(self, job_ids: Sequence[str]) -> list[Job]:
        ids = self._ids(job_ids)
        found: dict[str, Job] = {}
        for part, positions in self._group(ids).items():
            if part is not None:
                for job in self.parts[part].get_jobs([ids[i] for i in positions]):
                    found[job.id] = job
        return [found[job_id] for job_id in ids if job_id in found]

    def _routed(self, job_ids: Sequence[str], only_type: str, call: Any) -> list[Status]:
        ids = self._ids(job_ids, only_type)
        statuses: list[Status] = [Status.NO_SUCH_JOB] * len(ids)
        for part, positions in self._group(ids).items():
            if part is None:
                continue
            got = call(self.parts[part], [ids[i] for i in positions])
            for i, status in zip(positions, got, strict=True):
                statuses[i] = status
        return statuses

    def set_priority(
        self, job_ids: Sequence[str], priority: int, *, only_type: str = ""
    ) -> list[Status]:
        return self._routed(
            job_ids, only_type, lambda p, ids: p.set_priority(ids, priority, only_type=only_type)
        )

    def set_suspended(
        self, job_ids: Sequence[str], suspended: bool, *, only_type: str = ""
    ) -> list[Status]:
        return self._routed(
            job_ids, only_type, lambda p, ids: p.set_suspended(ids, suspended, only_type=only_type)
        )

    def set_retries(self, job_ids: Sequence[str], retries: int) -> list[Status]:
        self.parts[0].set_retries([], retries)  # validates retries before anything is sent
        return self._routed(job_ids, "", lambda p, ids: p.set_retries(ids, retries))

    def delete(self, job_ids: Sequence[str]) -> list[Status]:
        return self._routed(job_ids, "", lambda p, ids: p.delete(ids))

    def next_due_ms(self, types: Iterable[str], until_ms: int, scan: int = 1000) -> int | None:
        """The earliest of every partition's (``run_until_empty`` waits for it)."""
        wanted = list(types)
        dues = [part.next_due_ms(wanted, until_ms, scan) for part in self.parts]
        return min((due for due in dues if due is not None), default=None)

    def state_counts(self, now_ms: int) -> dict[str, int]:
        total: dict[str, int] = {}
        for part in self.parts:
            for state, count in part.state_counts(now_ms).items():
                total[state] = total.get(state, 0) + count
        return total

    def scan_job_ids(
        self,
        job_type: str | None = None,
        count: int = 1000,
        *,
        process_instance_id: str | None = None,
    ) -> Iterable[list[str]]:
        if process_instance_id is not None:
            return self._of_instance(process_instance_id).scan_job_ids(
                job_type, count, process_instance_id=process_instance_id
            )
        return itertools.chain.from_iterable(
            part.scan_job_ids(job_type, count) for part in self.parts
        )


def _merged(
    jobs: Sequence[NewJob],
    by_part: dict[int, list[int]],
    outcomes: dict[int, list[str] | RexecError],
) -> list[str]:
    """The ids of a routed enqueue in the jobs' order, from each partition's ids or the
    error its share was refused with; PartialEnqueueError when some were written."""
    ids: list[str | None] = [None] * len(jobs)
    first_error: RexecError | None = None
    for part, positions in sorted(by_part.items()):
        got = outcomes[part]
        if isinstance(got, PartialEnqueueError):
            first_error = first_error or (got.cause if isinstance(got.cause, RexecError) else got)
            refused = set(got.missing)
            kept = iter(got.ids)
            for j, i in enumerate(positions):
                if j not in refused:
                    ids[i] = next(kept)
        elif isinstance(got, RexecError):
            first_error = first_error or got
        else:
            for i, job_id in zip(positions, got, strict=True):
                ids[i] = job_id
    written_ids = [job_id for job_id in ids if job_id is not None]
    if first_error is None:
        return written_ids
    if not written_ids:
        raise first_error
    missing = [i for i, job_id in enumerate(ids) if job_id is None]
    raise PartialEnqueueError(
        f"{len(written_ids)} of {len(jobs)} jobs were enqueued, {len(missing)} were not:"
        f" {first_error}",
        ids=written_ids,
        missing=missing,
        cause=first_error,
    ) from first_error


def _priority_of(key: str) -> int | None:
    from rexec.codec import priority_from_key

    return None if key == "" else priority_from_key(key)


def open_store(
    client: redis.Redis,
    namespace: str,
    partitions: int | None = None,
    *,
    acquisition: str = "atomic",
    history_max_len: int = 0,
    history_ttl_ms: int = 0,
    durability: str = "default",
    replication_timeout_ms: int = DEFAULT_REPLICATION_TIMEOUT_MS,
) -> Store:
    """The store of a namespace: a plain Store for one partition (exactly the namespace
    of before), a PartitionedStore for more."""
    layout = open_layout(client, namespace, partitions)
    if layout.count == 1:
        return Store(
            client,
            namespace,
            acquisition=acquisition,
            history_max_len=history_max_len,
            history_ttl_ms=history_ttl_ms,
            durability=durability,
            replication_timeout_ms=replication_timeout_ms,
        )
    return PartitionedStore(
        client,
        layout,
        acquisition=acquisition,
        history_max_len=history_max_len,
        history_ttl_ms=history_ttl_ms,
        durability=durability,
        replication_timeout_ms=replication_timeout_ms,
    )
