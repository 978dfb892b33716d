"""An app for fault injection (tests/test_executor.py): its handlers misbehave on
request, and ``REXEC_TEST_FAULT`` makes one stage of the worker itself raise.

Worker processes import it as ``tests.apps.faulty:app``. ``REXEC_TEST_FAULT`` names a
stage — ``effects``, ``commit``, ``renewal``, ``metrics``, ``wakeup`` — whose call raises
for its first ``REXEC_TEST_FAULT_TIMES`` (default 3) calls, cycling through a plain
bug, a surrogate-laden error text, a connection error and transient replies; the
worker must go on as if Redis had hiccupped. Handlers log ``start``/``end`` records to
the list ``rexec-test:<ns>:log`` as tests/apps/recording.py does.

Job types:

- ``work`` / ``awork``: record start and end (``def`` / ``async def``); a dict payload
  may carry ``sleep`` seconds;
- ``step`` / ``astep``: one link of an exclusive chain: sets variable ``n`` to the
  payload and, below 3, enqueues the next link (alternating ``def`` and ``async def``);
- ``misbehave``: misbehaves as its payload says (see ``MISBEHAVIOURS``);
- ``hang``: exclusive, sleeps ``payload`` seconds under a 200 ms timeout, once per job
  (its later executions return at once);
- ``ender``: ends its instance, then enqueues into it (``ctx.effects()`` refuses);
- ``unset``: sets a variable of an instance that someone ends before the commit.
- ``bwork``: a batch handler: records ``start`` and ``end`` per job (with the size of
  its call); a job whose payload is ``"fail"`` gets a ``ValueError`` as its item of
  the returned list; ``"raise"`` makes the whole call raise; ``"garbage"`` returns a
  dict; ``"step"`` (exclusive, in an instance) enqueues a ``step`` follow-up.
- ``abwork``: ``bwork`` as an ``async def`` batch handler (``"fail"`` only).
- ``abhang``: ``bhang`` as an ``async def`` batch handler (its first call is cancelled at
  the timeout).
- ``bhang``: a batch handler under a 300 ms timeout whose first call ever sleeps
  ``max(payloads)`` seconds (later calls return at once); records the call's size.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import redis

from rexec import App
from rexec.context import JobContext
from rexec.errors import ScriptError

LOG = "rexec-test:{ns}:log"


def log_key(namespace: str) -> str:
    return LOG.format(ns=namespace)


def _record(ctx: JobContext, event: str, payload: Any = None) -> None:
    record = {
        "event": event,
        "id": ctx.job.id,
        "type": ctx.job.type,
        "pid": os.getpid(),
        "thread": threading.current_thread().name,
        "pi": ctx.job.process_instance_id,
        "time": time.time(),
        "payload": payload,
    }
    ctx.app.client.rpush(log_key(ctx.app.namespace), orjson.dumps(record))


class Boom(BaseException):
    """Not an Exception: handlers raising it must still only fail their job."""


def _garbage_coroutine() -> Any:
    async def never_awaited() -> None:
        return None

    return never_awaited()


MISBEHAVIOURS: dict[str, Callable[[], Any]] = {
    "raise": lambda: (_ for _ in ()).throw(ValueError("plain failure")),
    "surrogate": lambda: (_ for _ in ()).throw(ValueError("bad text \udcff\ud800 here")),
    "exit": lambda: sys.exit(3),
    "base": lambda: (_ for _ in ()).throw(Boom("a BaseException")),
    "keyboard": lambda: (_ for _ in ()).throw(KeyboardInterrupt()),
    "garbage": lambda: {"not": {"a set", "msgpack cannot encode"}},
    "coroutine": _garbage_coroutine,
}


def make_app(redis_url: str | None = None, namespace: str | None = None) -> App:
    app = App(redis_url, namespace=namespace, history_max_len=100_000)

    @app.job("work", exclusive=False)
    def work(ctx: JobContext, payload: Any) -> None:
        _record(ctx, "start", payload)
        if isinstance(payload, dict) and payload.get("sleep"):
            time.sleep(float(payload["sleep"]))
        _record(ctx, "end", payload)

    @app.job("awork", exclusive=False)
    async def awork(ctx: JobContext, payload: Any) -> None:
        _record(ctx, "start", payload)
        await asyncio.sleep(0.001)
        _record(ctx, "end", payload)

    def link(ctx: JobContext, payload: Any) -> None:
        _record(ctx, "start", payload)
        ctx.set_variable("n", payload)
        if payload < 3:
            ctx.enqueue("astep" if ctx.job.type == "step" else "step", payload + 1)
        _record(ctx, "end", payload)

    @app.job("step", exclusive=True)
    def step(ctx: JobContext, payload: Any) -> None:
        link(ctx, payload)

    @app.job("astep", exclusive=True)
    async def astep(ctx: JobContext, payload: Any) -> None:
        link(ctx, payload)

    @app.job("misbehave", exclusive=False, retry_cycle="R1/PT0S")
    def misbehave(ctx: JobContext, payload: Any) -> Any:
        _record(ctx, "start", payload)
        return MISBEHAVIOURS[payload]()

    @app.job("amisbehave", exclusive=False, retry_cycle="R1/PT0S")
    async def amisbehave(ctx: JobContext, payload: Any) -> Any:
        _record(ctx, "start", payload)
        if payload == "break-loop":
            # A callback that escapes run_forever: the loop must be restarted.
            asyncio.get_running_loop().call_soon(sys.exit, 4)
            return None
        return MISBEHAVIOURS[payload]()

    @app.job("bwork", exclusive=False, batch=True, retry_cycle="R2/PT0S")
    def bwork(contexts: list[JobContext], payloads: list[Any]) -> Any:
        for ctx, payload in zip(contexts, payloads, strict=True):
            _record(ctx, "start", {"payload": payload, "size": len(contexts)})
        if "raise" in payloads:
            raise ValueError("the whole call failed")
        if "garbage" in payloads:
            return {"not": "a list"}
        results: list[Any] = []
        for ctx, payload in zip(contexts, payloads, strict=True):
            if payload == "step":
                ctx.enqueue("step", 3)
            _record(ctx, "end", {"payload": payload, "size": len(contexts)})
            results.append(ValueError("job said fail") if payload == "fail" else None)
        return results

    @app.job("abwork", exclusive=False, batch=True, retry_cycle="R2/PT0S")
    async def abwork(contexts: list[JobContext], payloads: list[Any]) -> Any:
        results: list[Any] = []
        for ctx, payload in zip(contexts, payloads, strict=True):
            _record(ctx, "start", {"payload": payload, "size": len(contexts)})
            await asyncio.sleep(0)
            _record(ctx, "end", {"payload": payload, "size": len(contexts)})
            results.append(ValueError("job said fail") if payload == "fail" else None)
        return results

    @app.job("abhang", exclusive=False, batch=True, timeout_ms=300, retry_cycle="R3/PT0S")
    async def abhang(contexts: list[JobContext], payloads: list[Any]) -> None:
        lead = contexts[0]
        first = lead.app.client.set(f"{log_key(lead.app.namespace)}:abhung", 1, nx=True)
        for ctx in contexts:
            _record(ctx, "start", len(contexts))
        if first:
            await asyncio.sleep(max(float(p) for p in payloads))
        for ctx in contexts:
            _record(ctx, "end", len(contexts))

    @app.job("bhang", exclusive=False, batch=True, timeout_ms=300, retry_cycle="R3/PT0S")
    def bhang(contexts: list[JobContext], payloads: list[Any]) -> None:
        lead = contexts[0]
        first = lead.app.client.set(f"{log_key(lead.app.namespace)}:bhung", 1, nx=True)
        for ctx in contexts:
            _record(ctx, "start", len(contexts))
        if first:
            time.sleep(max(float(p) for p in payloads))
        for ctx in contexts:
            _record(ctx, "end", len(contexts))

    @app.job("hang", exclusive=True, timeout_ms=200, retry_cycle="R2/PT0S")
    def hang(ctx: JobContext, payload: Any) -> None:
        first = ctx.app.client.set(f"{log_key(ctx.app.namespace)}:hung:{ctx.job.id}", 1, nx=True)
        _record(ctx, "start", payload)
        if first:
            time.sleep(float(payload))
        _record(ctx, "end", payload)

    @app.job("ender", exclusive=True, retry_cycle="R1/PT0S")
    def ender(ctx: JobContext, payload: Any) -> None:
        _record(ctx, "start", payload)
        ctx.end_process_instance()
        ctx.enqueue("work", "into an ended instance")

    @app.job("unset", exclusive=True, retry_cycle="R1/PT0S")
    def unset(ctx: JobContext, payload: Any) -> None:
        _record(ctx, "start", payload)
        ctx.set_variable("x", 1)
        pi = ctx.job.process_instance_id
        assert pi is not None
        ctx.app.end_process_instance(pi)  # gone before this job commits

    return app


# -- stage faults ---------------------------------------------------------------------------


def _errors() -> list[BaseException]:
    def from_reply(error: redis.ResponseError) -> ScriptError:
        try:
            raise ScriptError(f"Redis refused a rexec script: {error}") from error
        except ScriptError as exc:
            return exc

    return [
        RuntimeError("injected bug"),
        redis.ConnectionError("injected: connection reset"),
        from_reply(redis.exceptions.OutOfMemoryError("command not allowed (injected)")),
        redis.ResponseError("READONLY You can't write against a read only replica (injected)"),
        RuntimeError("injected text \udcff with a lone surrogate"),
    ]


def _failing(original: Callable[..., Any], times: int) -> Callable[..., Any]:
    errors = itertools.cycle(_errors())
    left = [times]
    lock = threading.Lock()

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with lock:
            fail = left[0] > 0
            left[0] -= 1
        if fail:
            raise next(errors)
        return original(*args, **kwargs)

    return wrapper


def _inject(stage: str, times: int) -> None:
    from rexec.context import JobContext
    from rexec.executor.wakeups import Wakeups
    from rexec.metrics import WorkerMetrics
    from rexec.store import Store

    targets: dict[str, list[tuple[Any, str]]] = {
        "effects": [(JobContext, "effects")],
        "commit": [(Store, "complete_many"), (Store, "commit"), (Store, "fail")],
        "renewal": [(Store, "extend_locks")],
        "metrics": [(WorkerMetrics, "flush")],
        "wakeup": [(Wakeups, "_subscribe")],
    }
    for owner, name in targets[stage]:
        setattr(owner, name, _failing(getattr(owner, name), times))


if os.environ.get("REXEC_TEST_FAULT"):
    _inject(os.environ["REXEC_TEST_FAULT"], int(os.environ.get("REXEC_TEST_FAULT_TIMES", "3")))

app = make_app()
