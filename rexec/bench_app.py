"""The app that ``rexec bench`` runs on its worker nodes.

Job bodies of ``rexec bench drain --job``: ``noop`` (rexec alone), ``rpush`` (one Redis
RPUSH on the process's own client: a realistic minimal job), ``arpush`` (the same from
an ``async def`` handler with redis.asyncio), ``rpush-batch`` (the same from a batch
handler, one pipelined round trip per call), ``arpush-batch`` (the same, ``async
def``, with redis.asyncio), ``sleep`` (a handler blocked for its
payload's milliseconds).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import redis
import redis.asyncio

from rexec.app import App
from rexec.connection import connect, connect_async
from rexec.context import JobContext

app = App()


class _Clients(threading.local):
    """Each process (and thread) its own client, as a real handler would have."""

    sync: redis.Redis | None = None


_clients = _Clients()
_async_clients: dict[int, redis.asyncio.Redis] = {}


def stamp_key(namespace: str) -> str:
    return f"rexec:{{{namespace}}}:bench:stamps"


def rpush_key(namespace: str) -> str:
    return f"rexec:{{{namespace}}}:bench:rpush"


@app.job("noop", exclusive=False)
def noop(ctx: JobContext, payload: Any) -> None:
    """Does nothing: the drain benchmark measures rexec itself."""


@app.job("rpush", exclusive=False)
def rpush(ctx: JobContext, payload: Any) -> None:
    """One RPUSH on this process's own client."""
    if _clients.sync is None:
        _clients.sync = connect(str(ctx.app.redis_url))
    _clients.sync.rpush(rpush_key(ctx.app.namespace), ctx.job.id)


@app.job("rpush-batch", exclusive=False, batch=True)
def rpush_batch(contexts: list[JobContext], payloads: list[Any]) -> None:
    """One RPUSH per job, pipelined: one round trip per batch handler call."""
    if not contexts:
        return
    app_ = contexts[0].app
    if _clients.sync is None:
        _clients.sync = redis.Redis.from_url(str(app_.redis_url))
    pipe = _clients.sync.pipeline(transaction=False)
    key = rpush_key(app_.namespace)
    for ctx in contexts:
        pipe.rpush(key, ctx.job.id)
    pipe.execute()


@app.job("arpush-batch", exclusive=False, batch=True)
async def arpush_batch(contexts: list[JobContext], payloads: list[Any]) -> None:
    """One RPUSH per job, pipelined with redis.asyncio: one round trip per call."""
    import asyncio

    if not contexts:
        return
    app_ = contexts[0].app
    loop_id = id(asyncio.get_running_loop())
    client = _async_clients.get(loop_id)
    if client is None:
        client = _async_clients[loop_id] = redis.asyncio.Redis.from_url(str(app_.redis_url))
    pipe = client.pipeline(transaction=False)
    key = rpush_key(app_.namespace)
    for ctx in contexts:
        pipe.rpush(key, ctx.job.id)
    await pipe.execute()


@app.job("arpush", exclusive=False)
async def arpush(ctx: JobContext, payload: Any) -> None:
    """One RPUSH with redis.asyncio, on a client of this event loop."""
    import asyncio

    loop_id = id(asyncio.get_running_loop())
    client = _async_clients.get(loop_id)
    if client is None:
        client = _async_clients[loop_id] = connect_async(str(ctx.app.redis_url))
    await client.rpush(rpush_key(ctx.app.namespace), ctx.job.id)


@app.job("sleep", exclusive=False)
def sleep(ctx: JobContext, payload: Any) -> None:
    """Blocks for ``payload`` milliseconds (a handler waiting on slow I/O)."""
    time.sleep(float(payload or 0) / 1000)


@app.job("stamp", exclusive=False)
def stamp(ctx: JobContext, payload: float) -> None:
    """Records how long after its enqueue (``payload``, epoch seconds) it started."""
    started = time.time()
    ctx.app.client.rpush(stamp_key(ctx.app.namespace), f"{(started - payload) * 1000:.3f}")
