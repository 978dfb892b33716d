"""The job store: the Python face of the Lua scripts.

Producers, workers and operators all go through it; every method is one script call (or
one pipeline of them), so each change is atomic in Redis.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from rexec.codec import check_ms, check_priority, check_type, priority_from_key, priority_key
from rexec.connection import is_cluster, node_client
from rexec.definitions import StoredDefinition, parse_definition
from rexec.errors import (
    OptimisticLockingError,
    PartialEnqueueError,
    PriorityRuleUnavailableError,
    ProcessInstanceNotFoundError,
    ReplicationTimeoutError,
    RexecError,
    UniqueKeyError,
    ValidationError,
    safe_str,
)
from rexec.job import Job, JobState, parse_record
from rexec.keys import Keys
from rexec.retry import DEFAULT_RETRY_CYCLE, RetryCycle
from rexec.scripts import Scripts
from rexec.status import (
    Status,
    raise_for_status,
    rule_unavailable_message,
    translate_script_error,
)

ENQUEUE_CHUNK = 1000
DEFAULT_EXCLUSIVE_CAP = 100
DEFAULT_PROMOTE_CAP = 2000
DEFAULT_RECLAIM_CAP = 1000
MAX_RETRIES = 1_000_000
DEFAULT_RESULT_CAP = 100_000  # kept results per namespace (lua/includes/trim_results.lua)

DURABILITY_MODES = ("default", "replicated")
DEFAULT_REPLICATION_TIMEOUT_MS = 1000
# The scripts whose success a caller is told of (an enqueue, a commit, a failure, an
# operator's change): with durability="replicated" each waits for a replica. Acquiring,
# renewing, unlocking and reclaiming do not: losing one of those makes a job run again
# (at least once), never lost.
CONFIRMED_SCRIPTS = frozenset(
    {
        "enqueue",
        "complete",
        "commit",
        "fail",
        "set_priority",
        "set_suspended",
        "set_retries",
        "delete_job",
        "start_process",
        "set_variables",
        "deploy",
        "check_repair",
    }
)
# A cluster whose slot map changed answers MOVED (or READONLY, from a master that came
# back as a replica): the script did not run, so it is sent again to the new master
# after the map is re-read.
MOVED_ATTEMPTS = 20
# A refused connection (the master is down, a failover under way): nothing was sent, so
# the pipeline is sent again, for about as long as the cluster client retries its own.
REFUSED_ATTEMPTS = 20
REFUSED_BACKOFF_BASE_S = 0.05
REFUSED_BACKOFF_CAP_S = 0.5


def _refused(exc: BaseException) -> bool:
    """Whether ``exc`` comes from a refused connection (so no command went out)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def check_durability(mode: object) -> str:
    if mode not in DURABILITY_MODES:
        raise ValidationError(f"durability must be 'default' or 'replicated', got {mode!r}")
    return str(mode)


def check_replication_timeout(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 600_000:
        raise ValidationError(f"replication_timeout_ms must be 1..600000, got {value!r}")
    return value


def _check_retries(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"retries must be an integer, got {value!r}")
    if not 0 < value <= MAX_RETRIES:
        raise ValidationError(f"retries must be 1..{MAX_RETRIES}, got {value}")


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to create. ``priority``, ``retries`` and ``exclusive`` are explicit values;
    ``None`` leaves them to the store (SPEC §4): the type's stored definition, else the
    enqueuing app's own ``rule_priority``/``default_retries``/``default_exclusive``
    (for a type never deployed), else the process instance's priority, 0, 3 and True."""

    type: str
    payload_raw: bytes | None = None
    priority: int | None = None
    due_ms: int | None = None
    delay_ms: int | None = None
    retries: int | None = None
    exclusive: bool | None = None
    process_instance_id: str | None = None
    rule_priority: int | None = None
    default_retries: int | None = None
    default_exclusive: bool | None = None
    unique_key: str | None = None

    def __post_init__(self) -> None:
        check_type(self.type)
        if self.unique_key is not None:
            check_unique_key(self.unique_key)
        for value in (self.priority, self.rule_priority):
            if value is not None:
                check_priority(value)
        check_ms(self.due_ms, "due_ms")
        check_ms(self.delay_ms, "delay_ms")
        if self.due_ms is not None and self.delay_ms is not None:
            raise ValidationError("give due_ms or delay_ms, not both")
        for retries in (self.retries, self.default_retries):
            if retries is not None:
                _check_retries(retries)
        for flag in (self.exclusive, self.default_exclusive):
            if flag is not None and not isinstance(flag, bool):
                raise ValidationError(f"exclusive must be True or False, got {flag!r}")
        if self.process_instance_id is not None:
            check_process_instance_id(self.process_instance_id)

    def script_args(self) -> list[bytes | str | int]:
        if self.due_ms is not None:
            due: str = str(self.due_ms)
        elif self.delay_ms:
            due = f"+{self.delay_ms}"
        else:
            due = ""
        if self.priority is not None:
            pk = priority_key(self.priority)
        elif self.rule_priority is not None:
            pk = "d" + priority_key(self.rule_priority)
        else:
            pk = ""
        if self.retries is not None:
            retries = str(self.retries)
        else:
            retries = "" if self.default_retries is None else f"d{self.default_retries}"
        if self.exclusive is not None:
            exclusive = "1" if self.exclusive else "0"
        elif self.default_exclusive is not None:
            exclusive = "d1" if self.default_exclusive else "d0"
        else:
            exclusive = ""
        return [
            self.type,
            pk,
            due,
            retries,
            exclusive,
            self.process_instance_id or "",
            self.payload_raw or b"",
        ]


ACQUISITION_MODES = ("atomic", "optimistic")


def check_acquisition(mode: object) -> str:
    if mode not in ACQUISITION_MODES:
        raise ValidationError(f"acquisition must be 'atomic' or 'optimistic', got {mode!r}")
    return str(mode)


def check_process_instance_id(value: object) -> str:
    if not isinstance(value, str) or not value or "|" in value or len(value) > 200:
        raise ValidationError(f"not a process instance id: {value!r}")
    return value


MAX_UNIQUE_KEY_BYTES = 256


def check_unique_key(value: object) -> str:
    """A unique key: a non-empty string of at most MAX_UNIQUE_KEY_BYTES bytes (UTF-8)."""
    if not isinstance(value, str) or not value:
        raise UniqueKeyError(f"a unique key is a non-empty string, got {value!r}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise UniqueKeyError(f"a unique key must be valid text: {exc}") from None
    if size > MAX_UNIQUE_KEY_BYTES:
        raise UniqueKeyError(
            f"a unique key is at most {MAX_UNIQUE_KEY_BYTES} bytes, got {size}: {value[:40]!r}..."
        )
    return value


def check_job_id(value: object) -> str:
    if not isinstance(value, str) or not value.isdigit() or len(value) > 20:
        raise ValidationError(f"not a job id: {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class NewBranch:
    """A job created by a commit: a follow-up, or a branch of the commit's
    ``join``-th fork (1-based; 0 = none). ``lock_now`` locks it for the committing
    owner at once (an exclusive follow-up the same slot runs next)."""

    job: NewJob
    join: int = 0
    lock_now: bool = False


@dataclass(frozen=True, slots=True)
class Effects:
    """What a handler asked for, applied atomically with its job's completion."""

    variables_pi: str | None = None
    variables_revision: int = 0
    variables_raw: bytes = b""
    joins: tuple[tuple[int, NewJob], ...] = ()  # (branches to wait for, the join job)
    jobs: tuple[NewBranch, ...] = ()
    end_instance: bool = False
    variables_forms: str = ""  # plain forms of the new variables (rexec/rules.py)

    @property
    def empty(self) -> bool:
        return (
            self.variables_pi is None and not self.joins and not self.jobs and not self.end_instance
        )


@dataclass(frozen=True, slots=True)
class AcquiredJobs:
    """What one acquisition locked: batches to run (a batch is one plain job or the
    exclusive jobs of one process instance, to run in order)."""

    batches: list[list[Job]]
    failed_to_lock: int = 0
    now_ms: int = 0
    next_due_ms: int | None = None
    reclaimed: int = 0
    parked: int = 0

    @property
    def jobs(self) -> list[Job]:
        return [job for batch in self.batches for job in batch]


@dataclass(frozen=True, slots=True)
class AcquireOptions:
    """Filters and caps of one worker's acquisitions."""

    lock_ms: int = 30_000
    priority_min: int | None = None
    priority_max: int | None = None
    types: tuple[str, ...] = ()
    exclusive_cap: int = DEFAULT_EXCLUSIVE_CAP
    promote_cap: int = DEFAULT_PROMOTE_CAP
    reclaim_cap: int = DEFAULT_RECLAIM_CAP
    args: tuple[str | int, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.lock_ms, bool) or not isinstance(self.lock_ms, int):
            raise ValidationError(f"lock_ms must be an integer, got {self.lock_ms!r}")
        if not 100 <= self.lock_ms <= 86_400_000:
            raise ValidationError(f"lock_ms must be 100..86400000, got {self.lock_ms}")
        low = None if self.priority_min is None else check_priority(self.priority_min)
        high = None if self.priority_max is None else check_priority(self.priority_max)
        if low is not None and high is not None and low > high:
            raise ValidationError(f"priority_min {low} is above priority_max {high}")
        for t in self.types:
            check_type(t)
        for name in ("exclusive_cap", "promote_cap", "reclaim_cap"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValidationError(f"{name} must be a positive integer, got {value!r}")
        # Precomputed once: the tail of every acquire call's ARGV.
        object.__setattr__(
            self,
            "args",
            (
                self.lock_ms,
                "" if high is None else priority_key(high),
                "" if low is None else priority_key(low),
                self.exclusive_cap,
                self.promote_cap,
                self.reclaim_cap,
                *self.types,
            ),
        )


def _start_args(variables_raw: bytes, priority: int | str | None, forms: str) -> list[bytes | str]:
    if not isinstance(variables_raw, bytes):
        raise ValidationError("variables are msgpack bytes (App.start_process_instance packs them)")
    if priority is None:
        pk = ""
    elif isinstance(priority, str):
        pk = priority  # an encoded declarative rule
    else:
        pk = priority_key(priority)
    return [pk, variables_raw, forms]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Store:
    """All reads and writes of one namespace's jobs."""

    @staticmethod
    def validate_namespace(namespace: str) -> None:
        Keys(namespace)

    def __init__(
        self,
        client: redis.Redis,
        namespace: str = "default",
        *,
        acquisition: str = "atomic",
        history_max_len: int = 0,
        history_ttl_ms: int = 0,
        tag: str = "",
        durability: str = "default",
        replication_timeout_ms: int = DEFAULT_REPLICATION_TIMEOUT_MS,
    ) -> None:
        check_acquisition(acquisition)
        self.durability = check_durability(durability)
        self.replication_timeout_ms = check_replication_timeout(replication_timeout_ms)
        for name, value in (
            ("history_max_len", history_max_len),
            ("history_ttl_ms", history_ttl_ms),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**46:
                raise ValidationError(f"{name} must be a non-negative integer, got {value!r}")
        self.acquisition = acquisition
        # Finished jobs are kept in a stream only when asked: by default nothing is.
        self.history_max_len = history_max_len
        self.history_ttl_ms = history_ttl_ms
        self.client = client
        self.keys = Keys(namespace, tag)
        self._script_keys = self.keys.script_keys
        self.scripts = Scripts(client)
        self._enqueue_loaded = False

    @property
    def replicated(self) -> bool:
        return self.durability == "replicated"

    def _run(
        self, script: str, args: Sequence[bytes | str | int], client: redis.Redis | None = None
    ) -> object:
        try:
            if client is None and self.replicated and script in CONFIRMED_SCRIPTS:
                return self._run_confirmed(script, args)
            return getattr(self.scripts, script)(
                keys=self._script_keys, args=list(args), client=client
            )
        except (redis.exceptions.MovedError, redis.exceptions.ReadOnlyError):
            raise  # a failover that did not settle in time: Redis's own (transient) error
        except redis.ResponseError as exc:
            raise translate_script_error(exc) from exc

    @property
    def partition_stores(self) -> list[Store]:
        """One store per partition of the namespace (rexec/partitions.py): this one."""
        return [self]

    def instance_keys(self, process_instance_id: str) -> Keys:
        """The keys of the partition that holds a process instance: this store's."""
        return self.keys

    def counter_totals(self) -> dict[bytes, bytes]:
        """The namespace's script counters (``counters``: outcomes by type, lock
        expiries), summed over its partitions: field -> count as bytes."""
        totals: dict[bytes, int] = {}
        for part in self.partition_stores:
            raw: dict[bytes, bytes] = part.client.hgetall(part.keys.counters)  # type: ignore[assignment]
            for name, value in raw.items():
                totals[name] = totals.get(name, 0) + int(value)
        return {name: str(value).encode() for name, value in totals.items()}

    def on_node(
        self,
        build: Callable[[redis.client.Pipeline], None],
        *,
        transaction: bool = False,
        confirm: bool = False,
        key: str | None = None,
    ) -> list[Any]:
        """Runs what ``build`` queues as ONE pipeline on one connection to the master of
        this namespace: on a cluster, the node of its slot (a cluster pipeline refuses
        EVALSHA, TIME and WAIT, which name no key). A MOVED reply (the slot moved in a
        failover: nothing ran) re-reads the slot map and sends it again. ``confirm``
        with durability="replicated" waits on the same connection for one replica to
        have its writes (WAIT 1), else raises ReplicationTimeoutError with the replies
        in ``exc.reply``. ``key`` names the slot (default: the namespace's keys')."""
        confirm = confirm and self.replicated
        route = key or self._script_keys[0]
        refused = 0
        for attempt in itertools.count():
            pipe = node_client(self.client, route).pipeline(transaction=transaction)
            build(pipe)
            if confirm:
                pipe.execute_command("WAIT", 1, self.replication_timeout_ms)  # type: ignore[no-untyped-call]
            try:
                replies = list(pipe.execute())
            except (redis.exceptions.MovedError, redis.exceptions.ReadOnlyError):
                # The node is no longer the master (READONLY: a master that came back as
                # a replica refuses the first write, so nothing was written).
                self._refresh_slots()
                if attempt >= MOVED_ATTEMPTS - 1:
                    raise
                time.sleep(min(REFUSED_BACKOFF_CAP_S, REFUSED_BACKOFF_BASE_S * 2**attempt))
                continue
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                self._refresh_slots()
                if not _refused(exc) or refused >= REFUSED_ATTEMPTS:
                    raise
                # The master refused the connection (killed, failing over): nothing was
                # sent. Wait for the new master, as the cluster client does for its own.
                refused += 1
                time.sleep(min(REFUSED_BACKOFF_CAP_S, REFUSED_BACKOFF_BASE_S * 2**refused))
                continue
            if not confirm:
                return replies
            *replies, acked = replies
            if int(acked) < 1:
                raise ReplicationTimeoutError(
                    f"no replica confirmed the write within {self.replication_timeout_ms} ms"
                    " (durability='replicated'): it is on the master only",
                    reply=replies,
                )
            return replies
        raise AssertionError("unreachable")

    def _run_confirmed(self, script: str, args: Sequence[bytes | str | int]) -> object:
        def build(pipe: redis.client.Pipeline) -> None:
            getattr(self.scripts, script)(keys=self._script_keys, args=list(args), client=pipe)

        try:
            return self.on_node(build, confirm=True)[0]
        except ReplicationTimeoutError as exc:
            replies: list[object] = exc.reply  # type: ignore[assignment]
            exc.reply = replies[0]
            raise

    def _refresh_slots(self) -> None:
        """After a failover seen by hand (MOVED, a dead node): re-read the slot map."""
        if is_cluster(self.client):
            # The next command tries again anyway.
            with contextlib.suppress(Exception):
                self.client.nodes_manager.initialize()  # type: ignore[attr-defined]

    def time_ms(self) -> int:
        # On a cluster, the clock of the node that holds the namespace (its scripts' clock).
        seconds, micros = node_client(self.client, self._script_keys[0]).time()
        return int(seconds) * 1000 + int(micros) // 1000

    # -- producers -----------------------------------------------------------------------

    def enqueue(self, jobs: Sequence[NewJob], *, chunk: int = ENQUEUE_CHUNK) -> list[str]:
        """Creates jobs in chunks of one script call each; returns their ids in order.

        Each chunk is atomic. Process instances are checked first, so an unknown one
        writes nothing. Each chunk is sent as soon as it is built, so Redis runs one
        chunk while the next is prepared (a pipeline would build them all before Redis
        starts). When some chunks are written and others refused (an instance ended
        meanwhile), it raises PartialEnqueueError with the ids written: never silently
        partial. A connection lost mid-stream raises the connection error: which of the
        chunks sent before it ran is then unknown.
        """
        if not jobs:
            return []
        if isinstance(chunk, bool) or not isinstance(chunk, int) or not 1 <= chunk <= 100_000:
            raise ValidationError(f"chunk must be 1..100000, got {chunk!r}")
        self._check_instances({job.process_instance_id for job in jobs} - {None})
        wake = self.keys.wake_channel
        chunks = [jobs[i : i + chunk] for i in range(0, len(jobs), chunk)]
        if len(chunks) == 1:
            firsts = [self._run("enqueue", self._enqueue_args(wake, chunks[0]))]
        else:
            firsts = self._stream_enqueue(wake, chunks)
        return _collect_ids(firsts, chunks, len(jobs))

    async def aenqueue(
        self, aclient: Any, jobs: Sequence[NewJob], *, chunk: int = ENQUEUE_CHUNK
    ) -> list[str]:
        """``enqueue`` on a redis.asyncio client: the same checks, one script call per
        chunk, awaited in order."""
        if not jobs:
            return []
        if isinstance(chunk, bool) or not isinstance(chunk, int) or not 1 <= chunk <= 100_000:
            raise ValidationError(f"chunk must be 1..100000, got {chunk!r}")
        pis = sorted({str(job.process_instance_id) for job in jobs if job.process_instance_id})
        if pis:
            found = await aclient.hmget(self.keys.pis, pis)
            missing = [pi for pi, record in zip(pis, found, strict=True) if record is None]
            if missing:
                raise ProcessInstanceNotFoundError(f"no process instance {missing[0]!r}")
        wake = self.keys.wake_channel
        chunks = [jobs[i : i + chunk] for i in range(0, len(jobs), chunk)]
        firsts: list[object] = []
        for part in chunks:
            try:
                firsts.append(await self._arun(aclient, "enqueue", self._enqueue_args(wake, part)))
            except RexecError as exc:
                firsts.append(exc)
        return _collect_ids(firsts, chunks, len(jobs))

    async def _arun(self, aclient: Any, name: str, args: Sequence[bytes | str | int]) -> object:
        script = getattr(self.scripts, name)
        keys = self._script_keys
        try:
            try:
                return await aclient.evalsha(script.sha, len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:  # a restart or SCRIPT FLUSH: load it
                await aclient.script_load(script.script)
                return await aclient.evalsha(script.sha, len(keys), *keys, *args)
        except redis.ResponseError as exc:
            raise translate_script_error(exc) from exc

    @staticmethod
    def _enqueue_args(wake: str, part: Sequence[NewJob]) -> list[bytes | str | int]:
        args: list[bytes | str | int] = [wake, len(part)]
        for job in part:
            args.extend(job.script_args())
        if any(job.unique_key is not None for job in part):
            args.extend(job.unique_key or "" for job in part)
        return args

    def _check_instances(self, pis: set[str | None]) -> None:
        if not pis:
            return
        names = sorted(str(pi) for pi in pis)
        found = self.client.hmget(self.keys.pis, names)
        missing = [pi for pi, record in zip(names, found, strict=True) if record is None]
        if missing:
            raise ProcessInstanceNotFoundError(f"no process instance {missing[0]!r}")

    def _stream_enqueue(self, wake: str, chunks: list[Sequence[NewJob]]) -> list[object]:
        """The reply of each chunk: its first id, or the RexecError it was refused with."""
        script = self.scripts.enqueue
        node = node_client(self.client, self._script_keys[0])
        if not self._enqueue_loaded:
            node.script_load(script.script)
            self._enqueue_loaded = True
        pool = node.connection_pool
        conn = pool.get_connection()
        replies: list[object] = []
        acked = 1
        try:
            for part in chunks:
                conn.send_command(  # type: ignore[no-untyped-call]
                    "EVALSHA", script.sha, len(self._script_keys), *self._script_keys,
                    *self._enqueue_args(wake, part),
                )  # fmt: skip
            if self.replicated:
                conn.send_command("WAIT", 1, self.replication_timeout_ms)  # type: ignore[no-untyped-call]
            for _ in chunks:
                try:
                    replies.append(conn.read_response())
                except redis.ResponseError as exc:
                    replies.append(exc)
            if self.replicated:
                acked = int(conn.read_response())
        except BaseException as exc:
            conn.disconnect()  # type: ignore[no-untyped-call]  # replies may be unread
            if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
                self._refresh_slots()
            raise
        finally:
            pool.release(conn)
        for i, reply in enumerate(replies):
            if isinstance(reply, redis.exceptions.NoScriptError):
                # Redis lost its script cache (a restart): that chunk did not run.
                self._enqueue_loaded = False
                try:
                    replies[i] = self._run("enqueue", self._enqueue_args(wake, chunks[i]))
                except RexecError as exc:
                    replies[i] = exc
            elif isinstance(reply, redis.exceptions.MovedError):
                # A failover moved the slot while streaming: that chunk did not run.
                self._refresh_slots()
                try:
                    replies[i] = self._run("enqueue", self._enqueue_args(wake, chunks[i]))
                except RexecError as exc:
                    replies[i] = exc
            elif isinstance(reply, redis.ResponseError):
                replies[i] = translate_script_error(reply)
        if acked < 1:
            raise ReplicationTimeoutError(
                f"no replica confirmed the enqueue within {self.replication_timeout_ms} ms"
                " (durability='replicated'): the jobs are on the master only",
                reply=replies,
            )
        return replies

    def start_process_instance(
        self, variables_raw: bytes, priority: int | str | None = None, forms: str = ""
    ) -> str:
        """Creates a process instance. ``priority`` is an int or an encoded declarative
        rule (rexec/rules.py), ``forms`` the plain forms of its scalar variables."""
        args = _start_args(variables_raw, priority, forms)
        return _text(self._run("start_process", args))  # type: ignore[arg-type]

    def start_process_instances(
        self, instances: Sequence[tuple[bytes, int | str | None, str]]
    ) -> list[str]:
        every = [_start_args(*instance) for instance in instances]

        def build(pipe: redis.client.Pipeline) -> None:
            for args in every:
                self._run("start_process", args, client=pipe)

        try:
            return [_text(pi) for pi in self.on_node(build, confirm=True)]
        except (redis.exceptions.MovedError, redis.exceptions.ReadOnlyError):
            raise  # the slot did not settle on a master in time: Redis's own error
        except redis.ResponseError as exc:
            raise translate_script_error(exc) from exc

    def set_variables(
        self, process_instance_id: str, revision: int, variables_raw: bytes, forms: str
    ) -> Status:
        """Replaces an instance's variables if it is still at ``revision``; OK,
        VARIABLES_CHANGED or PI_NOT_FOUND."""
        check_process_instance_id(process_instance_id)
        reply = self._run("set_variables", [process_instance_id, revision, variables_raw, forms])
        return Status(int(reply))  # type: ignore[call-overload]

    def keys_of_job(self, job_id: str) -> Keys:
        """The keys of the partition that holds job ``job_id`` (its record, errors and
        kept result): this store's own keys unless the namespace is partitioned."""
        check_job_id(job_id)
        return self.keys

    # -- results ----------------------------------------------------------------------------

    def set_result_cap(self, cap: int | None) -> None:
        """At most ``cap`` kept results in this namespace (None: the default,
        DEFAULT_RESULT_CAP); beyond it, those that expire first go first, as results
        are written."""
        if cap is None:
            self.client.hdel(self.keys.settings, "result_cap")
            return
        if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= 100_000_000:
            raise ValidationError(f"result cap must be 1..100000000, got {cap!r}")
        self.client.hset(self.keys.settings, "result_cap", cap)

    def result_cap(self) -> int:
        raw = self.client.hget(self.keys.settings, "result_cap")
        return int(raw) if raw is not None else DEFAULT_RESULT_CAP

    # -- job definitions ------------------------------------------------------------------

    def deploy(self, definitions: Sequence[tuple[str, str, str, str, str]]) -> list[int]:
        """Writes job definitions (type, head, fingerprint, host, app) in one script;
        a status per type (see lua/deploy.lua)."""
        if not definitions:
            return []
        args: list[str | int] = [len(definitions)]
        for fields in definitions:
            args.extend(fields)
        return [int(s) for s in self._run("deploy", args)]  # type: ignore[attr-defined]

    def definitions(self) -> dict[str, StoredDefinition]:
        """Every stored job definition, by type."""
        raw: dict[bytes, bytes] = self.client.hgetall(self.keys.definitions)  # type: ignore[assignment]
        found = {}
        for name, record in raw.items():
            parsed = parse_definition(_text(name), _text(record))
            if parsed is not None:
                found[parsed.type] = parsed
        return dict(sorted(found.items()))

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
        """Locks up to ``max_jobs`` jobs (as Camunda's LIMIT counts them) for ``owner`` in
        one atomic call, as batches: a plain job alone, or exclusive jobs of one process
        instance together (at most the exclusive cap, and what is left of ``max_jobs``)."""
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
        if max_jobs == 0:
            return AcquiredJobs(batches=[], now_ms=self.time_ms())
        if self.acquisition == "optimistic":
            return self._acquire_optimistic(owner, max_jobs, options)
        reply: list[Any] = self._run("acquire", [owner, max_jobs, *options.args])  # type: ignore[assignment]
        return self.parse_acquired(reply)

    @staticmethod
    def parse_acquired(reply: list[Any]) -> AcquiredJobs:
        """The AcquiredJobs of an acquire script's reply."""
        now, next_due, reclaimed, parked, raw_batches = reply
        batches = []
        for flat in raw_batches:
            batch = []
            for i in range(0, len(flat), 3):
                batch.append(parse_record(_text(flat[i]), flat[i + 1], now, flat[i + 2]))
            batches.append(batch)
        return AcquiredJobs(
            batches=batches,
            now_ms=int(now),
            next_due_ms=None if next_due < 0 else int(next_due),
            reclaimed=int(reclaimed),
            parked=int(parked),
        )

    def _acquire_optimistic(
        self, owner: str, max_jobs: int, options: AcquireOptions
    ) -> AcquiredJobs:
        """Camunda 7's two steps: read candidates with their revisions, then lock those
        still at that revision. Jobs another worker took in between are failures."""
        lock_ms, high, low, _, promote_cap, reclaim_cap, *types = options.args
        read: list[Any] = self._run(  # type: ignore[assignment]
            "optimistic_read", [max_jobs, high, low, promote_cap, reclaim_cap, *types]
        )
        now, next_due, reclaimed, found = read
        next_due_ms = None if next_due < 0 else int(next_due)
        if not found:
            return AcquiredJobs([], 0, int(now), next_due_ms, int(reclaimed))
        locked: list[Any] = self._run("optimistic_lock", [owner, lock_ms, *found])  # type: ignore[assignment]
        lock_now, failed, *rows = locked
        batches = [[parse_record(_text(i), rec, lock_now, payload)] for i, rec, payload in rows]
        return AcquiredJobs(batches, int(failed), int(lock_now), next_due_ms, int(reclaimed))

    def next_due_ms(self, types: Iterable[str], until_ms: int, scan: int = 1000) -> int | None:
        """The due time of the first scheduled job of ``types`` due at or before
        ``until_ms`` (None if there is none): a read of the ``scheduled`` index, at most
        ``scan`` entries deep (past them, the last due time seen, so a caller waiting for
        it looks again then)."""
        wanted = {t.encode() for t in types}
        found: list[tuple[bytes, float]] = self.client.zrangebyscore(  # type: ignore[assignment]
            self.keys.scheduled, "-inf", until_ms, start=0, num=scan, withscores=True
        )
        for member, due in found:
            if member.split(b"|")[1] in wanted:
                return int(due)
        return int(found[-1][1]) if len(found) == scan else None

    def reclaim_expired_locks(self, cap: int = DEFAULT_RECLAIM_CAP) -> int:
        """Unlocks jobs whose lock expired; returns how many (acquisition does this too)."""
        reclaimed: int = self._run("reclaim", [self.keys.wake_channel, cap])  # type: ignore[assignment]
        return reclaimed

    def complete(self, job: Job) -> None:
        """Commits a finished job: removes it, if still locked by its owner at its
        revision; else raises OptimisticLockingError and changes nothing."""
        raise_for_status(self.complete_many([job])[0], job.id)

    def commit(
        self,
        job: Job,
        effects: Effects,
        *,
        lock_ms: int = 30_000,
        result: bytes = b"",
        started_ms: int | None = None,
    ) -> list[Job]:
        """Completes ``job`` and applies ``effects`` in one atomic script; returns the
        follow-ups locked for this owner at once. Raises OptimisticLockingError, writing
        nothing, if the job's lock is lost or the variables changed since read."""
        owner = _owner_of([job])
        args: list[bytes | str | int] = [
            self.keys.wake_channel,
            owner,
            job.id,
            job.revision,
            lock_ms,
            self.history_max_len,
            self.history_ttl_ms,
            effects.variables_pi or "",
            effects.variables_revision,
            effects.variables_raw,
            len(effects.joins),
        ]
        for branches, join_job in effects.joins:
            args += (branches, *join_job.script_args())
        args.append(len(effects.jobs))
        for new in effects.jobs:
            args += (*new.job.script_args(), new.join, "1" if new.lock_now else "0")
        args.append("1" if effects.end_instance else "0")
        args.append(effects.variables_forms)
        if not isinstance(result, bytes):
            raise ValidationError("a result is msgpack bytes")
        args.append(result)
        started_ms = check_ms(started_ms, "started_ms")
        args.append("" if started_ms is None else started_ms)
        reply: list[Any] = self._run("commit", args)  # type: ignore[assignment]
        status, locked = reply
        if status == Status.PI_NOT_FOUND:
            raise ProcessInstanceNotFoundError(f"no process instance {_text(locked[0])!r}")
        if status == Status.RULE_UNAVAILABLE:
            raise PriorityRuleUnavailableError(rule_unavailable_message(_text(locked[0])))
        if status == Status.VARIABLES_CHANGED:
            raise OptimisticLockingError(
                f"process instance {effects.variables_pi!r} changed since job {job.id!r}"
                " read its variables"
            )
        raise_for_status(int(status), job.id)
        now = int(job.lock_expires_ms or 0) - lock_ms  # close enough for the state
        return [
            parse_record(_text(locked[i]), locked[i + 1], now, locked[i + 2])
            for i in range(0, len(locked), 3)
        ]

    def end_process_instance(self, process_instance_id: str) -> bool:
        """Removes a process instance's record and variables; False if it did not exist.
        Jobs still naming it can no longer read its variables."""
        check_process_instance_id(process_instance_id)

        def build(pipe: redis.client.Pipeline) -> None:
            # MULTI by hand, so that the WAIT of replicated durability comes after EXEC
            # (inside a transaction WAIT cannot wait).
            pipe.execute_command("MULTI")  # type: ignore[no-untyped-call]
            pipe.hdel(self.keys.pis, process_instance_id)
            pipe.hdel(self.keys.vars, process_instance_id)
            pipe.hdel(self.keys.pvals, process_instance_id)
            pipe.srem(self.keys.suspended_pis, process_instance_id)
            pipe.execute_command("EXEC")  # type: ignore[no-untyped-call]

        replies = self.on_node(build, confirm=True)
        existed = replies[-1][0]
        return bool(int(existed))

    def read_process_instance(self, process_instance_id: str) -> tuple[int, int | None, bytes]:
        """A process instance's revision, own priority (None if it has none) and msgpack
        variables, read together."""
        check_process_instance_id(process_instance_id)

        def build(pipe: redis.client.Pipeline) -> None:
            pipe.hget(self.keys.pis, process_instance_id)
            pipe.hget(self.keys.vars, process_instance_id)

        record, raw = self.on_node(build, transaction=True)
        if record is None:
            raise ProcessInstanceNotFoundError(f"no process instance {process_instance_id!r}")
        revision, _, pk = _text(record).partition("|")
        # The slot holds a priority key, or a declarative rule (no fixed priority).
        own = priority_from_key(pk) if len(pk) == 16 else None
        return int(revision), own, raw or b"\x80"

    def read_variables(self, process_instance_id: str) -> tuple[int, bytes]:
        """A process instance's revision and msgpack variables, read together."""
        revision, _, raw = self.read_process_instance(process_instance_id)
        return revision, raw

    def complete_many(
        self,
        jobs: Sequence[Job],
        results: Sequence[bytes] | None = None,
        started_ms: Sequence[int | None] | None = None,
    ) -> list[Status]:
        """Commits several jobs of one owner in one call; a status per job.
        ``results`` are the handlers' return values as msgpack (``b""``: none) and
        ``started_ms`` when each execution started, both kept for a type whose stored
        definition keeps results."""
        if not jobs:
            return []
        args = self._complete_args(jobs, results, started_ms)
        return [Status(s) for s in self._run("complete", args)]  # type: ignore[attr-defined]

    def _complete_args(
        self,
        jobs: Sequence[Job],
        results: Sequence[bytes] | None = None,
        started_ms: Sequence[int | None] | None = None,
    ) -> list[bytes | str | int]:
        """complete.lua's ARGV for ``jobs`` (checked; raises ValidationError)."""
        owner = _owner_of(jobs)
        values = [b""] * len(jobs) if results is None else list(results)
        starts = [None] * len(jobs) if started_ms is None else list(started_ms)
        if len(values) != len(jobs) or len(starts) != len(jobs):
            raise ValidationError("one result and one start time per job")
        args: list[bytes | str | int] = [
            self.keys.wake_channel,
            owner,
            self.history_max_len,
            self.history_ttl_ms,
        ]
        for job, value, started in zip(jobs, values, starts, strict=True):
            if not isinstance(value, bytes):
                raise ValidationError("results are msgpack bytes")
            at = check_ms(started, "started_ms")
            args += (job.id, job.revision, value, "" if at is None else at)
        return args

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
        """Records a failed execution and unlocks the job. Retries drop by one (not for
        an OptimisticLockingError) and the job is due again after the wait of its
        type's stored retry cycle (``retry_cycle`` only applies to a type that was never
        deployed); at 0 retries it is an incident. ``give_up`` (a ``rexec.Fail``), or a
        stored retry policy that does not retry this exception, makes it an incident at
        once. Returns the state it is in now."""
        conflict = isinstance(error, OptimisticLockingError)
        consumed = 0 if conflict else 1
        cycle = retry_cycle or DEFAULT_RETRY_CYCLE
        delay = 0 if conflict else cycle.delay_ms(max(0, job.retries - 1))
        owner = _owner_of([job])
        started_ms = check_ms(started_ms, "started_ms")
        text = error_text(error, details)
        entry, paths = b"", ""
        if not conflict:
            entry = error_entry(error, details)
            paths = "" if isinstance(error, str) else class_paths(type(error))
        reply: list[Any] = self._run(  # type: ignore[assignment]
            "fail",
            [
                self.keys.wake_channel,
                owner,
                job.id,
                job.revision,
                text,
                consumed,
                delay,
                self.history_max_len,
                self.history_ttl_ms,
                entry,
                "1" if give_up else "0",
                paths,
                "" if started_ms is None else started_ms,
            ],
        )
        status, state = reply
        raise_for_status(int(status), job.id)
        return JobState(_text(state)) if _text(state) != "parked" else JobState.READY

    def unlock(self, job: Job) -> None:
        """Gives a locked job back unchanged, as if it had never been acquired."""
        raise_for_status(self.unlock_many([job])[0], job.id)

    def unlock_many(self, jobs: Sequence[Job]) -> list[Status]:
        if not jobs:
            return []
        args: list[str | int] = [self.keys.wake_channel, _owner_of(jobs)]
        for job in jobs:
            args += (job.id, job.revision)
        return [Status(s) for s in self._run("unlock", args)]  # type: ignore[attr-defined]

    def extend_lock(self, job: Job, lock_ms: int) -> int:
        """Renews a running job's lock; returns the new expiry (server ms)."""
        expires, statuses = self.extend_locks([job], lock_ms)
        raise_for_status(statuses[0], job.id)
        return expires

    def extend_locks(self, jobs: Sequence[Job], lock_ms: int) -> tuple[int, list[Status]]:
        if not jobs:
            return self.time_ms() + lock_ms, []
        AcquireOptions(lock_ms=lock_ms)  # validates lock_ms
        args: list[str | int] = [_owner_of(jobs), lock_ms]
        for job in jobs:
            args += (job.id, job.revision)
        reply = self._run("extend_lock", args)
        return int(reply[0]), [Status(s) for s in reply[1:]]  # type: ignore[index]

    def retire_worker(self, worker_id: str) -> bool:
        """Forgets a worker that stopped cleanly: its counters are folded into the
        cluster's retired totals (``retired|<counter>``) and its fields, announcement and
        heartbeat removed, in one atomic call. Call it after the worker's last metrics
        flush. False if the worker left no trace. Idempotent."""
        check_owner(worker_id)
        return bool(self._run("retire_workers", ["", worker_id]))

    def retire_stale_workers(self, older_than_ms: int) -> int:
        """Retires every worker whose last heartbeat is older than ``older_than_ms``
        (server ms), as retire_worker does; returns how many."""
        if isinstance(older_than_ms, bool) or not isinstance(older_than_ms, int):
            raise ValidationError(f"older_than_ms must be an integer, got {older_than_ms!r}")
        reply: int = self._run("retire_workers", [older_than_ms])  # type: ignore[assignment]
        return int(reply)

    # -- operators ----------------------------------------------------------------------

    def get_job(self, job_id: str) -> Job | None:
        check_job_id(job_id)

        def build(pipe: redis.client.Pipeline) -> None:
            pipe.hget(self.keys.jobs, job_id)
            pipe.hget(self.keys.payloads, job_id)
            pipe.hget(self.keys.errors, job_id)
            pipe.time()

        record, payload, error, (seconds, micros) = self.on_node(build)
        if record is None:
            return None
        now = int(seconds) * 1000 + int(micros) // 1000
        return parse_record(job_id, record, now, payload, error)

    def get_jobs(self, job_ids: Sequence[str]) -> list[Job]:
        """The jobs that still exist among ``job_ids``, in that order."""
        job_ids = self._ids(job_ids)
        if not job_ids:
            return []

        def build(pipe: redis.client.Pipeline) -> None:
            pipe.hmget(self.keys.jobs, list(job_ids))
            pipe.hmget(self.keys.payloads, list(job_ids))
            pipe.hmget(self.keys.errors, list(job_ids))
            pipe.time()

        records, payloads, errors, (seconds, micros) = self.on_node(build)
        now = int(seconds) * 1000 + int(micros) // 1000
        return [
            parse_record(job_id, record, now, payload, error)
            for job_id, record, payload, error in zip(
                job_ids, records, payloads, errors, strict=True
            )
            if record is not None
        ]

    @staticmethod
    def _ids(job_ids: Sequence[str], only_type: str = "") -> list[str]:
        """The ids, checked (and the type filter, if any): before anything is sent."""
        if isinstance(job_ids, str | bytes):
            raise ValidationError("job ids are given as a list of strings")
        if not isinstance(only_type, str):
            raise ValidationError(f"only_type must be a job type or '', got {only_type!r}")
        if only_type:
            check_type(only_type)
        return [check_job_id(job_id) for job_id in job_ids]

    def _statuses(self, script: str, args: Sequence[bytes | str | int]) -> list[Status]:
        return [Status(s) for s in self._run(script, args)]  # type: ignore[attr-defined]

    def set_priority(
        self, job_ids: Sequence[str], priority: int, *, only_type: str = ""
    ) -> list[Status]:
        """Re-sorts jobs under a new priority (only those of ``only_type`` if given)."""
        ids = self._ids(job_ids, only_type)
        if not ids:
            return []
        return self._statuses("set_priority", [priority_key(priority), only_type, *ids])

    def set_suspended(
        self, job_ids: Sequence[str], suspended: bool, *, only_type: str = ""
    ) -> list[Status]:
        """Suspends or activates jobs; UNCHANGED for those already so."""
        ids = self._ids(job_ids, only_type)
        if not ids:
            return []
        flag = "1" if suspended else "0"
        return self._statuses("set_suspended", [self.keys.wake_channel, flag, only_type, *ids])

    def set_retries(self, job_ids: Sequence[str], retries: int) -> list[Status]:
        if isinstance(retries, bool) or not isinstance(retries, int):
            raise ValidationError(f"retries must be an integer, got {retries!r}")
        if not 0 <= retries <= MAX_RETRIES:
            raise ValidationError(f"retries must be 0..{MAX_RETRIES}, got {retries}")
        ids = self._ids(job_ids)
        if not ids:
            return []
        return self._statuses("set_retries", [self.keys.wake_channel, retries, *ids])

    def delete(self, job_ids: Sequence[str]) -> list[Status]:
        ids = self._ids(job_ids)
        if not ids:
            return []
        return self._statuses("delete_job", [self.keys.wake_channel, *ids])

    def state_counts(self, now_ms: int) -> dict[str, int]:
        """Jobs by state at ``now_ms`` (every job is in exactly one), and ``total``. The
        ready jobs of a suspended job definition count as suspended: they are not
        acquired. One round trip for the type list, one for the counts."""
        k = self.keys
        held = sorted(_text(t) for t in self.client.smembers(k.suspended_types))
        pipe = self.client.pipeline(transaction=False)
        pipe.hlen(k.jobs)
        pipe.zcount(k.scheduled, f"({now_ms}", "+inf")
        pipe.zcard(k.locked)
        pipe.zcard(k.suspended)
        pipe.zcard(k.incidents)
        for t in held:
            pipe.zlexcount(k.ready, f"[{t}|", f"[{t}|~")
        total, scheduled, locked, suspended, incidents, *held_ready = (
            int(x) for x in pipe.execute()
        )
        suspended += sum(held_ready)
        return {
            JobState.READY.value: max(0, total - scheduled - locked - suspended - incidents),
            JobState.SCHEDULED.value: scheduled,
            JobState.LOCKED.value: locked,
            JobState.SUSPENDED.value: suspended,
            JobState.INCIDENT.value: incidents,
            "total": total,
        }

    def scan_job_ids(
        self,
        job_type: str | None = None,
        count: int = 1000,
        *,
        process_instance_id: str | None = None,
    ) -> Iterable[list[str]]:
        """Every job id (of one type, or of one process instance), in chunks, without
        blocking Redis: HSCAN over the job records. May repeat an id; the operations it
        feeds are idempotent."""
        if job_type is not None:
            check_type(job_type)
        pi = None if process_instance_id is None else check_process_instance_id(process_instance_id)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 100_000:
            raise ValidationError(f"count must be 1..100000, got {count!r}")
        cursor = 0
        prefix = None if job_type is None else (job_type + "|").encode()
        while True:
            cursor, chunk = self.client.hscan(self.keys.jobs, cursor, count=count)
            records: dict[bytes, bytes] = chunk  # type: ignore[assignment]
            ids = [
                _text(job_id)
                for job_id, record in records.items()
                if (prefix is None or record.startswith(prefix))
                and (pi is None or _text(record).split("|")[5] == pi)
            ]
            if ids:
                yield ids
            if cursor == 0:
                return


def _collect_ids(firsts: list[object], chunks: list[Sequence[NewJob]], total: int) -> list[str]:
    """The ids of an enqueue from each chunk's reply (or the error it was refused with)."""
    ids: list[str] = []
    missing: list[int] = []
    errors: list[RexecError] = []
    offset = 0
    for first, part in zip(firsts, chunks, strict=True):
        if isinstance(first, RexecError):
            errors.append(first)
            missing.extend(range(offset, offset + len(part)))
        elif isinstance(first, list):  # with unique keys: each job's id
            ids.extend(_text(job_id) for job_id in first)
        else:
            ids.extend(str(int(first) + i) for i in range(len(part)))  # type: ignore[call-overload]
        offset += len(part)
    if errors and not ids:
        raise errors[0]
    if errors:
        raise PartialEnqueueError(
            f"{len(ids)} of {total} jobs were enqueued, {len(missing)} were not: {errors[0]}",
            ids=ids,
            missing=missing,
            cause=errors[0],
        ) from errors[0]
    return ids


def error_text(error: BaseException | str, details: str | None = None) -> bytes:
    """The text stored for a failure, as UTF-8: characters that cannot be encoded (a
    lone surrogate) are replaced, and an exception whose ``str()`` raises is named by
    its type, so storing a failure never raises."""
    if isinstance(error, str):
        text = error
    else:
        try:
            message = str(error)
        except Exception:  # any __str__ may raise; the failure is stored anyway
            message = "<the exception's message could not be read>"
        text = f"{type(error).__name__}: {message}"
    if details:
        text = f"{text}\n\n{details}"
    return text.encode("utf-8", "replace")


def class_path(cls: type) -> str:
    """``module.QualName`` of a class (``builtins.ValueError``)."""
    return f"{cls.__module__}.{cls.__qualname__}"


def class_paths(cls: type) -> str:
    """The class paths of ``cls`` and its bases, its own first, comma-separated: what a
    stored retry policy is matched against."""
    return ",".join(class_path(c) for c in cls.__mro__ if c is not object)


MAX_ERROR_PART = 16_384


def error_entry(error: BaseException | str, details: str | None = None) -> bytes:
    """An error as kept with a job's results: ``<len>,<len>,<len>:`` (byte lengths)
    then its class path, message and traceback, each at most MAX_ERROR_PART bytes
    (the traceback keeps its end). Never raises."""
    if isinstance(error, str):
        path, message = "", error
    else:
        path = class_path(type(error))
        try:
            message = str(error)
        except Exception:  # any __str__ may raise; the failure is kept anyway
            message = "<the exception's message could not be read>"
    trace = "" if details is None else safe_str(details)
    parts = [part.encode("utf-8", "replace") for part in (path, safe_str(message), trace)]
    parts[0], parts[1] = parts[0][:MAX_ERROR_PART], parts[1][:MAX_ERROR_PART]
    parts[2] = parts[2][-MAX_ERROR_PART:]
    head = ",".join(str(len(part)) for part in parts) + ":"
    return head.encode() + b"".join(parts)


def check_owner(owner: object) -> str:
    if not isinstance(owner, str) or not owner or "|" in owner or len(owner) > 200:
        raise ValidationError(f"not a lock owner id: {owner!r}")
    return owner


def _owner_of(jobs: Sequence[Job]) -> str:
    for job in jobs:
        if not isinstance(job, Job):
            raise ValidationError(f"expected a Job, got {type(job).__name__}")
        check_job_id(job.id)
        if isinstance(job.revision, bool) or not isinstance(job.revision, int):
            raise ValidationError(f"job {job.id}: revision must be an integer")
    owner = jobs[0].lock_owner
    if owner is None or any(job.lock_owner != owner for job in jobs):
        raise OptimisticLockingError(
            "these jobs are not locked (by one owner): acquire them before committing"
        )
    return check_owner(owner)
