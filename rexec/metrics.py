"""Counters (Camunda's names, SPEC §7) per worker process, summed per cluster.

A worker counts in memory and adds its counts to Redis about once a second
(``metrics`` hash, field ``<worker id>|<counter>``), so counting costs nothing per job.
Workers announce themselves in ``workers`` (id -> JSON) with a heartbeat in
``heartbeats`` (id -> ms), which is how operators list live nodes.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import Counter
from typing import Any

import orjson
import redis

from rexec.keys import Keys

ACQUISITION_ATTEMPT = "job-acquisition-attempt"
ACQUIRED_SUCCESS = "job-acquired-success"
ACQUIRED_FAILURE = "job-acquired-failure"
EXECUTION_REJECTED = "job-execution-rejected"
SUCCESSFUL = "job-successful"
FAILED = "job-failed"
LOCKED_EXCLUSIVE = "job-locked-exclusive"
COMMIT_REFUSED = "job-commit-refused"
COMMIT_CONFLICT = "job-commit-conflict"
# Acquisition attempts that lost at least one job to another worker: the "wasted"
# cycles of Camunda's backoff post (not one of Camunda's own counter names).
ATTEMPT_CONFLICTED = "job-acquisition-conflicted"
LOCK_LOST_UNSTARTED = "job-lock-lost-unstarted"
COUNTERS = (
    ACQUISITION_ATTEMPT,
    ACQUIRED_SUCCESS,
    ACQUIRED_FAILURE,
    EXECUTION_REJECTED,
    SUCCESSFUL,
    FAILED,
    LOCKED_EXCLUSIVE,
    COMMIT_REFUSED,
    COMMIT_CONFLICT,
    ATTEMPT_CONFLICTED,
    LOCK_LOST_UNSTARTED,
)
PICKUP_LATENCY = "pickup-latency"
EXECUTION_TIME = "execution-time"
# Histogram bucket upper bounds, ms (the last is open-ended).
LATENCY_BUCKETS_MS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
HEARTBEAT_STALE_MS = 10_000
RETIRE_AFTER_MS = 60_000  # a worker silent this long is gone: fold its counts in


class _Histogram:
    """Bucket counts, sum and count of one histogram (bounds: LATENCY_BUCKETS_MS)."""

    __slots__ = ("buckets", "count", "names", "sum_ms")

    def __init__(self, name: str) -> None:
        self.names = (*(f"{name}-le-{b}" for b in LATENCY_BUCKETS_MS), f"{name}-gt-10000")
        self.buckets = [0] * len(self.names)
        self.count = 0
        self.sum_ms = 0.0


class WorkerMetrics:
    """Thread-safe in-memory counts of one worker process, flushed to Redis. Counting is
    on every job's path, so it is a few integer additions under one lock."""

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self._lock = threading.Lock()
        self._pending: Counter[str] = Counter()
        self._histograms = {name: _Histogram(name) for name in (PICKUP_LATENCY, EXECUTION_TIME)}
        self.totals: Counter[str] = Counter()  # everything flushed so far

    def add(self, name: str, amount: int = 1) -> None:
        if amount:
            with self._lock:
                self._pending[name] += amount

    def observe(self, histogram: str, value_ms: float) -> None:
        """Counts one observation in ``<histogram>-le-<bound>`` (or ``-gt-10000``),
        ``<histogram>-count`` and ``<histogram>-sum-ms``."""
        index = bisect_left(LATENCY_BUCKETS_MS, value_ms)
        h = self._histograms[histogram]
        with self._lock:
            h.buckets[index] += 1
            h.count += 1
            h.sum_ms += value_ms

    def pickup_latency(self, latency_ms: int) -> None:
        self.observe(PICKUP_LATENCY, latency_ms)

    def execution_time(self, duration_ms: float) -> None:
        self.observe(EXECUTION_TIME, duration_ms)

    def take(self) -> Counter[str]:
        """The counts since the last take, histograms spelled out as counters."""
        with self._lock:
            pending, self._pending = self._pending, Counter()
            for name, h in self._histograms.items():
                for bucket, n in zip(h.names, h.buckets, strict=True):
                    if n:
                        pending[bucket] += n
                if h.count:
                    pending[f"{name}-count"] += h.count
                    pending[f"{name}-sum-ms"] += round(h.sum_ms)
                h.buckets = [0] * len(h.names)
                h.count = 0
                h.sum_ms = 0.0
        self.totals.update(pending)
        return pending

    def flush(self, pipe: redis.client.Pipeline, keys: Keys) -> None:
        """Queues the counts since the last flush on ``pipe``."""
        for name, amount in self.take().items():
            pipe.hincrby(keys.metrics, f"{self.worker_id}|{name}", amount)


def cluster_stats(store: Any) -> dict[str, dict[str, int]]:
    """Counter name -> {"total": n, worker id: n, ...} over every worker that ever ran."""
    raw: dict[bytes, bytes] = store.client.hgetall(store.keys.metrics)
    stats: dict[str, dict[str, int]] = {name: {"total": 0} for name in COUNTERS}
    for field, value in raw.items():
        worker, _, name = field.decode().rpartition("|")
        entry = stats.setdefault(name, {"total": 0})
        entry[worker] = int(value)
        entry["total"] += int(value)
    stats["lock-expired"] = {"total": int(store.counter_totals().get(b"lock-expired", 0))}
    return stats


def live_workers(store: Any, stale_ms: int = HEARTBEAT_STALE_MS) -> list[dict[str, Any]]:
    """The worker processes whose heartbeat is recent, with their announcement."""
    now = store.time_ms()
    keys: Keys = store.keys
    beats = store.client.zrangebyscore(keys.heartbeats, now - stale_ms, "+inf", withscores=True)
    if not beats:
        return []
    ids = [member for member, _ in beats]
    infos = store.client.hmget(keys.workers, ids)
    workers = []
    for (_member, beat), info in zip(beats, infos, strict=True):
        if info is None:
            continue
        entry: dict[str, Any] = orjson.loads(info)
        entry["heartbeat_ms"] = int(beat)
        entry["heartbeat_age_ms"] = max(0, now - int(beat))
        workers.append(entry)
    return sorted(workers, key=lambda w: (str(w.get("node")), int(w.get("index", 0))))


def retire_stale_workers(store: Any, stale_ms: int = RETIRE_AFTER_MS) -> int:
    """Forgets workers whose heartbeat stopped more than ``stale_ms`` ago, keeping
    their counts in the cluster totals (field ``retired|<counter>``). Live workers call
    this now and then, so a cluster that restarts processes for months stays small."""
    cutoff = store.time_ms() - stale_ms
    return int(store.retire_stale_workers(cutoff))
