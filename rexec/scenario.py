"""The midnight scenario: the workload of ``rexec demo`` and ``rexec bench cluster``.

50,000 jobs fall due at one instant in four classes: VIP deliveries (their priority comes
from the order's process variables: the customer is a VIP), normal deliveries, partner
notifications that call an external service, and housekeeping (lowest priority). Worker
processes import this module as their app (``rexec.scenario:app``); each handler records
when it ran, which the demo turns into its report.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Mapping
from typing import Any

import msgpack
import redis

from rexec.app import App
from rexec.connection import connect
from rexec.context import JobContext

CLASSES = ("vip", "delivery", "notify", "housekeeping")
SHARES = {"vip": 0.05, "delivery": 0.40, "notify": 0.25, "housekeeping": 0.30}
TYPE_OF = {
    "vip": "deliver",
    "delivery": "deliver",
    "notify": "notify",
    "housekeeping": "housekeeping",
}
VIP_PRIORITY = 100
NOTIFY_PRIORITY = 60  # partners want to hear first, while their service is healthy
DELIVERY_PRIORITY = 50
HOUSEKEEPING_PRIORITY = -10
SLOW_SERVICE_PRIORITY = 0  # what the operator overrides notifications to when it is slow
SLOW_FACTOR = 10


def log_key(namespace: str) -> str:
    return f"rexec:{{{namespace}}}:demo:log"


def slow_key(namespace: str) -> str:
    return f"rexec:{{{namespace}}}:demo:slow"


def order_priority(variables: Mapping[str, Any]) -> int:
    """Process-level priority of an order, computed from its variables at start."""
    return VIP_PRIORITY if variables.get("vip") else DELIVERY_PRIORITY


class Recorder:
    """Buffers one record per execution and pushes them to Redis in the background
    (every 50 ms), so recording costs the jobs nothing; also watches the "external
    service is slow" flag the demo sets."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.slow = False
        self._lock = threading.Lock()
        self._buffer: list[bytes] = []
        self._thread: threading.Thread | None = None

    def record(self, ctx: JobContext, klass: int, started_ms: float) -> None:
        row = msgpack.packb(
            [int(ctx.job.id), klass, ctx.job.due_ms, started_ms, time.time() * 1000, ctx.worker_id]
        )
        with self._lock:
            self._buffer.append(row)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="demo-log")
                self._thread.start()

    def _run(self) -> None:
        client: redis.Redis = connect(self.app.resolved_url())
        namespace = self.app.namespace
        while True:
            time.sleep(0.05)
            with self._lock:
                rows, self._buffer = self._buffer, []
            try:
                pipe = client.pipeline(transaction=False)
                if rows:
                    pipe.rpush(log_key(namespace), *rows)
                pipe.get(slow_key(namespace))
                self.slow = pipe.execute()[-1] is not None
            except redis.RedisError:
                with self._lock:
                    self._buffer[:0] = rows


app = App()
recorder = Recorder(app)
JOB_MS = float(os.environ.get("REXEC_DEMO_JOB_MS", "0"))


def _work(ms: float) -> None:
    if ms > 0:
        time.sleep(ms / 1000)


@app.job("deliver")
def deliver(ctx: JobContext, payload: dict[str, Any]) -> None:
    started = time.time() * 1000
    _work(JOB_MS)
    recorder.record(ctx, payload["c"], started)


@app.job("notify", priority=NOTIFY_PRIORITY, exclusive=False)
def notify(ctx: JobContext, payload: dict[str, Any]) -> None:
    started = time.time() * 1000
    _work(JOB_MS * SLOW_FACTOR if recorder.slow else JOB_MS)
    recorder.record(ctx, payload["c"], started)


@app.job("housekeeping", priority=HOUSEKEEPING_PRIORITY, exclusive=False)
def housekeeping(ctx: JobContext, payload: dict[str, Any]) -> None:
    started = time.time() * 1000
    _work(JOB_MS)
    recorder.record(ctx, payload["c"], started)


def class_counts(total: int) -> dict[str, int]:
    counts = {c: int(total * SHARES[c]) for c in CLASSES}
    counts["housekeeping"] += total - sum(counts.values())
    return counts


def enqueue_midnight(producer: App, total: int, due_ms: int, seed: int = 7) -> dict[str, int]:
    """Creates the midnight load (shuffled, so no class is first by creation order);
    returns the number of jobs per class."""
    load = prepare_midnight(producer, total, seed)
    load.enqueue(due_ms)
    return load.counts


class MidnightLoad:
    """The midnight load with its order instances started, its jobs not yet written:
    ``seconds_per_job`` (how long starting the instances took, per instance) lets the
    caller set midnight far enough ahead for the jobs to be written before it."""

    def __init__(
        self, producer: App, counts: dict[str, int], specs: list[dict[str, Any]], seconds: float
    ) -> None:
        self.producer = producer
        self.counts = counts
        self.specs = specs
        instances = sum(1 for spec in specs if "process_instance_id" in spec)
        self.seconds_per_job = seconds / max(1, instances)

    def enqueue(self, due_ms: int) -> None:
        for spec in self.specs:
            spec["due_ms"] = due_ms
        for start in range(0, len(self.specs), 10_000):
            self.producer.enqueue_many(self.specs[start : start + 10_000])


def prepare_midnight(producer: App, total: int, seed: int = 7) -> MidnightLoad:
    """Starts the order instances of the midnight load and returns its job specs."""
    counts = class_counts(total)
    rng = random.Random(seed)
    classes = [c for c in CLASSES for _ in range(counts[c])]
    rng.shuffle(classes)
    deliveries = [c for c in classes if TYPE_OF[c] == "deliver"]
    began = time.monotonic()
    orders = producer.start_process_instances(
        ({"customer": f"c{i}", "vip": c == "vip"} for i, c in enumerate(deliveries)),
        priority=order_priority,
    )
    seconds = time.monotonic() - began
    order_of = iter(orders)
    specs: list[dict[str, Any]] = []
    for c in classes:
        spec: dict[str, Any] = {"type": TYPE_OF[c], "payload": {"c": CLASSES.index(c)}}
        if TYPE_OF[c] == "deliver":
            spec["process_instance_id"] = next(order_of)
        specs.append(spec)
    return MidnightLoad(producer, counts, specs, seconds)
