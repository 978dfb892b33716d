"""An app whose handlers record what they do in Redis, for tests/test_worker.py.

Worker processes import it as ``tests.apps.recording:app``; the Redis URL and the
namespace come from ``REXEC_REDIS_URL`` / ``REXEC_NAMESPACE`` (or the node's settings).
Every handler RPUSHes orjson records to :func:`log_key` (``rexec-test:<ns>:log``):
``{"event": "start" | "end", "id", "type", "pid", "worker", "thread", "pi", "time",
"started", "payload"}`` with ``time.time()`` stamps, so a test can see which process ran
which job, when, and how often.

Job types:

- ``work``: records ``start``, sleeps ``payload["sleep"]`` seconds (if given), records
  ``end``.
- ``block``: on a job's first execution records ``start`` and sleeps 60 s (a test kills
  the process meanwhile); on later executions it behaves like ``work``.
- ``boom``: records ``start`` and raises ``ValueError``.
- ``async_work``: an ``async def`` handler; like ``work`` but awaits ``asyncio.sleep``.
- ``hang``: sleeps ``payload`` seconds under a 300 ms timeout (2 executions in all).
- ``order``: forks ``payload["branches"]`` ``branch`` jobs (exclusive or not, as
  ``payload["exclusive"]`` says) joining into ``joined``.
- ``branch``: records ``start``, sleeps a little, sets variable ``b<i>``, records ``end``.
- ``joined``: records ``join`` with the instance's variables.
- ``first``: enqueues an exclusive ``second`` for its own instance; records ``end``.
- ``second``: records ``end`` (the test checks it ran in the same thread, right after).
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
from typing import Any

import orjson
import redis

from rexec import App
from rexec.context import JobContext

LOG_URL_ENV = "REXEC_TEST_LOG_URL"


def log_key(namespace: str) -> str:
    return f"rexec-test:{namespace}:log"


@functools.cache
def _log_redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def log_client(app: App) -> redis.Redis:
    """Where the records go: the Redis of ``REXEC_TEST_LOG_URL`` when set (so a test
    that kills a master of the app's Redis keeps its records), else the app's own."""
    url = os.environ.get(LOG_URL_ENV)
    return _log_redis(url) if url else app.client


def _record(ctx: JobContext, event: str, payload: Any, started: float | None = None) -> float:
    now = time.time()
    record = {
        "event": event,
        "id": ctx.job.id,
        "type": ctx.job.type,
        "pid": os.getpid(),
        "worker": ctx.worker_id,
        "thread": threading.current_thread().name,
        "pi": ctx.job.process_instance_id,
        "time": now,
        "started": started,
        "payload": payload,
    }
    log_client(ctx.app).rpush(log_key(ctx.app.namespace), orjson.dumps(record))
    return now


def _sleep_of(payload: Any) -> float:
    if isinstance(payload, dict):
        return float(payload.get("sleep", 0))
    return 0.0


def make_app(redis_url: str | None = None, namespace: str | None = None) -> App:
    """A new app with the recording handlers (the tests' producers use one too)."""
    app = App(redis_url, namespace=namespace)

    @app.job("work")
    def work(ctx: JobContext, payload: Any) -> None:
        started = _record(ctx, "start", payload)
        if delay := _sleep_of(payload):
            time.sleep(delay)
        _record(ctx, "end", payload, started)

    @app.job("block")
    def block(ctx: JobContext, payload: Any) -> None:
        first = ctx.app.client.set(f"{log_key(ctx.app.namespace)}:blocked:{ctx.job.id}", 1, nx=True)
        started = _record(ctx, "start", payload)
        if first:
            time.sleep(60)  # until the test kills this process
        _record(ctx, "end", payload, started)

    @app.job("boom")
    def boom(ctx: JobContext, payload: Any) -> None:
        _record(ctx, "start", payload)
        raise ValueError(f"boom from job {ctx.job.id}")

    @app.job("async_work")
    async def async_work(ctx: JobContext, payload: Any) -> None:
        started = _record(ctx, "start", payload)
        await asyncio.sleep(_sleep_of(payload))
        _record(ctx, "end", payload, started)

    @app.job("hang", timeout_ms=300, retry_cycle="R2/PT0S")
    def hang(ctx: JobContext, payload: Any) -> None:
        started = _record(ctx, "start", payload)
        time.sleep(float(payload))
        _record(ctx, "end", payload, started)

    @app.job("order")
    def order(ctx: JobContext, payload: Any) -> None:
        ctx.fork(
            [
                {"type": "branch", "payload": {"i": i}, "exclusive": payload["exclusive"]}
                for i in range(payload["branches"])
            ],
            join="joined",
        )

    @app.job("branch")
    def branch(ctx: JobContext, payload: Any) -> None:
        started = _record(ctx, "start", payload)
        time.sleep(0.002)
        ctx.set_variable(f"b{payload['i']}", ctx.job.id)
        _record(ctx, "end", payload, started)

    @app.job("joined")
    def joined(ctx: JobContext, payload: Any) -> None:
        _record(ctx, "join", ctx.variables)

    @app.job("first")
    def first(ctx: JobContext, payload: Any) -> None:
        ctx.enqueue("second", payload)
        _record(ctx, "end", payload)

    @app.job("second")
    def second(ctx: JobContext, payload: Any) -> None:
        _record(ctx, "end", payload)

    return app


app = make_app()
