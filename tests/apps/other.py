"""A second app sharing a namespace with tests.apps.recording, with disjoint job types
(``other``, ``other_slow`` with priority 7 and a 2-execution retry cycle), for the
deployment-awareness tests. Its handler records like the recording app's."""

from __future__ import annotations

from typing import Any

from rexec import App
from rexec.context import JobContext
from tests.apps.recording import _record


def make_app(redis_url: str | None = None, namespace: str | None = None) -> App:
    app = App(redis_url, namespace=namespace)

    @app.job("other", exclusive=False)
    def other(ctx: JobContext, payload: Any) -> None:
        _record(ctx, "start", payload)

    @app.job("other_slow", priority=7, retry_cycle="R2/PT0S")
    def other_slow(ctx: JobContext, payload: Any) -> None:
        _record(ctx, "start", payload)
        raise ValueError("other_slow always fails")

    return app


app = make_app()
