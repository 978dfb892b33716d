"""The last hour of a namespace, sampled every 10 seconds into fixed-size rings in Redis.

Workers call :func:`record` from their periodic metrics flush; the first call of each
10-second step anywhere in the cluster samples, the others return after one HGET. A
sample holds, per metric, the value at that moment: cumulative counts (jobs completed,
failed and turned into incidents per job type, jobs done per node, pickup-latency
histogram buckets) and gauges (jobs by state). The cockpit's charts read them back with
:func:`read` and turn neighbouring samples into rates and percentiles.

Layout: one hash (``Keys.series``) with, per metric, ``SLOTS`` fields
``<metric>|<slot>`` = ``<step>:<value>`` where ``step = now_ms // STEP_MS`` and
``slot = step % SLOTS``: a ring, so memory stays flat however long the cluster runs. A
field whose step is not the expected one is stale (nobody sampled then) and reads as a
gap. ``@step`` is the last step sampled. At most ``MAX_TYPES`` job types and
``MAX_NODES`` nodes are kept, so a namespace with thousands of types stays bounded.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from rexec.metrics import (
    FAILED,
    LATENCY_BUCKETS_MS,
    PICKUP_LATENCY,
    SUCCESSFUL,
    cluster_stats,
)

log = logging.getLogger(__name__)

STEP_MS = 10_000
SLOTS = 360  # one hour of 10-second steps
MAX_TYPES = 50
MAX_NODES = 50
STATES = ("ready", "scheduled", "locked", "suspended", "incident")
OUTCOMES = ("completed", "failed", "incident")
PERCENTILES = (0.5, 0.95, 0.99)
LAST_STEP = "@step"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _node_of(worker_id: str) -> str:
    """``<node>.<index>.<pid>`` -> ``<node>`` (node ids may contain dots)."""
    parts = worker_id.rsplit(".", 2)
    return parts[0] if len(parts) == 3 else worker_id


def sample(store: Any, now_ms: int) -> dict[str, int]:
    """The metrics of one moment: metric name -> value."""
    depth = store.state_counts(now_ms)  # jobs of a suspended type count as suspended
    values = {f"depth|{state}": depth[state] for state in STATES}
    counters: dict[bytes, bytes] = store.counter_totals()
    by_type: dict[str, dict[str, int]] = {}
    for field, raw in counters.items():
        outcome, _, job_type = _text(field).partition("|")
        if outcome in OUTCOMES and job_type:
            by_type.setdefault(job_type, {})[outcome] = int(raw)
    for job_type in sorted(by_type)[:MAX_TYPES]:
        for outcome, count in by_type[job_type].items():
            values[f"{outcome}|{job_type}"] = count
    stats = cluster_stats(store)
    per_node: dict[str, int] = {}
    for name in (SUCCESSFUL, FAILED):
        for worker, count in stats.get(name, {}).items():
            if worker not in ("total", "retired"):
                node = _node_of(worker)
                per_node[node] = per_node.get(node, 0) + count
    for node in sorted(per_node)[:MAX_NODES]:
        values[f"node|{node}"] = per_node[node]
    for bound in (*LATENCY_BUCKETS_MS, None):
        name = f"{PICKUP_LATENCY}-le-{bound}" if bound else f"{PICKUP_LATENCY}-gt-10000"
        values[f"pickup|{bound or 'inf'}"] = stats.get(name, {}).get("total", 0)
    return values


def record(store: Any, now_ms: int | None = None) -> bool:
    """Samples the namespace into the rings if nobody did in this step; True if this
    call did. Redis errors propagate (the caller's loop handles Redis being down);
    anything else is logged and swallowed, so a bad sample never stops a worker."""
    try:
        key = store.keys.series

        def build(pipe: redis.client.Pipeline) -> None:
            pipe.time()
            pipe.hget(key, LAST_STEP)

        (seconds, micros), last = store.on_node(build)  # one round trip on most calls
        now = int(seconds) * 1000 + int(micros) // 1000 if now_ms is None else now_ms
        step = now // STEP_MS
        if last is not None and int(last) >= step:
            return False
        # Two workers may both get here in one step: they write the same step, harmless.
        store.client.hset(key, LAST_STEP, step)
        slot = step % SLOTS
        values = sample(store, now)
        store.client.hset(
            key, mapping={f"{name}|{slot}": f"{step}:{value}" for name, value in values.items()}
        )
        return True
    except redis.RedisError:
        raise
    except Exception:
        log.exception("recording the time series failed")
        return False


@dataclass(frozen=True, slots=True)
class Series:
    """The rings read back: ``steps`` oldest first, and per metric one value per step
    (None where nobody sampled)."""

    steps: list[int]
    values: dict[str, list[int | None]]


def read_raw(store: Any, now_ms: int | None = None) -> Series:
    """Every metric's ring, ordered oldest step first, gaps as None."""
    now = store.time_ms() if now_ms is None else now_ms
    last_step = now // STEP_MS
    steps = list(range(last_step - SLOTS + 1, last_step + 1))
    raw: dict[bytes, bytes] = store.client.hgetall(store.keys.series)
    values: dict[str, list[int | None]] = {}
    first = steps[0]
    for field, value in raw.items():
        name, _, slot_text = _text(field).rpartition("|")
        if not name or not slot_text.isdigit():
            continue
        step_text, _, number = _text(value).partition(":")
        try:
            step, count = int(step_text), int(number)
        except ValueError:
            continue
        if not first <= step <= last_step or step % SLOTS != int(slot_text):
            continue  # stale: a step more than an hour ago
        values.setdefault(name, [None] * SLOTS)[step - first] = count
    return Series(steps, values)


def rates(points: list[int | None], step_s: float) -> list[float | None]:
    """Per-second increase between neighbouring samples (None across a gap; a counter
    that went down, after a worker's counts were retired, reads as 0)."""
    out: list[float | None] = [None]
    for before, after in itertools.pairwise(points):
        if before is None or after is None:
            out.append(None)
        else:
            out.append(round(max(0, after - before) / step_s, 3))
    return out


def percentile(counts: Mapping[float, int], q: float) -> float | None:
    """The upper bound (ms) of the histogram bucket holding the ``q`` quantile."""
    total = sum(counts.values())
    if total <= 0:
        return None
    bounds = sorted(counts)
    running = 0
    for bound in bounds:
        running += counts[bound]
        if running >= q * total:
            return bound
    return bounds[-1]


def read(store: Any, now_ms: int | None = None) -> dict[str, Any]:
    """The cockpit's charts: throughput per job type, failures, queue depth by state,
    pickup-latency percentiles and per-node rates over the last hour."""
    series = read_raw(store, now_ms)
    step_s = STEP_MS / 1000
    # A step was sampled when its depth was; a counter missing from a sampled step had
    # not started counting yet (its type or node was new): 0, not a gap.
    sampled = [v is not None for v in series.values.get("depth|ready", [None] * SLOTS)]
    by_kind: dict[str, dict[str, list[int | None]]] = {}
    for name, raw in series.values.items():
        kind, _, label = name.partition("|")
        points = raw
        if kind != "depth":
            points = [0 if v is None and seen else v for v, seen in zip(raw, sampled, strict=True)]
        by_kind.setdefault(kind, {})[label] = points
    throughput = {t: rates(p, step_s) for t, p in sorted(by_kind.get("completed", {}).items())}
    failures: dict[str, list[float | None]] = {}
    for kind in ("failed", "incident"):
        for job_type, points in by_kind.get(kind, {}).items():
            failed = rates(points, step_s)
            mine = failures.setdefault(job_type, [None] * len(failed))
            failures[job_type] = [
                None if a is None and b is None else (a or 0) + (b or 0)
                for a, b in zip(mine, failed, strict=True)
            ]
    depth = {state: by_kind.get("depth", {}).get(state, [None] * SLOTS) for state in STATES}
    nodes = {node: rates(p, step_s) for node, p in sorted(by_kind.get("node", {}).items())}
    pickup = by_kind.get("pickup", {})
    bounds = {label: (float("inf") if label == "inf" else float(label)) for label in pickup}
    latency: dict[str, list[float | None]] = {f"p{int(q * 100)}": [] for q in PERCENTILES}
    for i in range(SLOTS):
        diffs: dict[float, int] = {}
        for label, points in pickup.items():
            before, after = (points[i - 1] if i else None), points[i]
            if before is not None and after is not None:
                diffs[bounds[label]] = max(0, after - before)
        for q in PERCENTILES:
            value = percentile(diffs, q) if diffs else None
            if value == float("inf"):
                value = float(LATENCY_BUCKETS_MS[-1])
            latency[f"p{int(q * 100)}"].append(value)
    return {
        "step_ms": STEP_MS,
        "times_ms": [(step + 1) * STEP_MS for step in series.steps],
        "throughput_per_s": throughput,
        "failures_per_s": failures,
        "depth": depth,
        "pickup_latency_ms": latency,
        "node_rates_per_s": nodes,
        "latency_buckets_ms": list(LATENCY_BUCKETS_MS),
    }
