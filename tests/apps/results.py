"""An app whose job types keep results, for tests/test_handles.py's real-worker tests.

Worker processes import it as ``tests.apps.results:app`` (URL and namespace from
``REXEC_REDIS_URL`` / ``REXEC_NAMESPACE``).

- ``add``: returns ``payload["a"] + payload["b"]`` (kept 60 s);
- ``aadd``: the same as an ``async def`` handler;
- ``explode``: raises ``ValueError(payload)`` (one execution: then an incident);
- ``unencodable``: returns a set, which msgpack cannot encode;
- ``give_up``: raises ``rexec.Fail(payload)`` (5 executions allowed; none retried);
- ``picky``: retried only on ``ConnectionError``; raises ``KeyError`` or
  ``ConnectionError`` as ``payload`` says.
- ``forward``: sets a variable and enqueues ``add`` (a commit with effects) and returns
  ``"forwarded"``.
"""

from __future__ import annotations

from typing import Any

from rexec import App, Fail
from rexec.context import JobContext


def make_app(redis_url: str | None = None, namespace: str | None = None) -> App:
    app = App(redis_url, namespace=namespace)

    @app.job("add", keep_result=60, exclusive=False)
    def add(ctx: JobContext, payload: Any) -> int:
        return int(payload["a"]) + int(payload["b"])

    @app.job("aadd", keep_result=60, exclusive=False)
    async def aadd(ctx: JobContext, payload: Any) -> int:
        return int(payload["a"]) + int(payload["b"])

    @app.job("explode", keep_result=60, retry_cycle="R1/PT0S", exclusive=False)
    def explode(ctx: JobContext, payload: Any) -> None:
        raise ValueError(str(payload))

    @app.job("unencodable", keep_result=60, retry_cycle="R1/PT0S", exclusive=False)
    def unencodable(ctx: JobContext, payload: Any) -> Any:
        return {1, 2, 3}

    @app.job("give_up", keep_result=60, retry_cycle="R5/PT0S", exclusive=False)
    def give_up(ctx: JobContext, payload: Any) -> None:
        raise Fail(str(payload))

    @app.job(
        "picky", keep_result=60, retry_cycle="R3/PT0S", exclusive=False,
        retry_on=(ConnectionError,),
    )  # fmt: skip
    def picky(ctx: JobContext, payload: Any) -> None:
        raise ConnectionError("try again") if payload == "connection" else KeyError(payload)

    @app.job("forward", keep_result=60)
    def forward(ctx: JobContext, payload: Any) -> str:
        ctx.set_variable("forwarded", True)
        ctx.enqueue("add", {"a": 1, "b": 1})
        return "forwarded"

    return app


app = make_app()
