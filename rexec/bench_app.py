"""The app that ``rexec bench`` runs on its worker nodes."""

from __future__ import annotations

import time
from typing import Any

from rexec.app import App
from rexec.context import JobContext

app = App()


def stamp_key(namespace: str) -> str:
    return f"rexec:{{{namespace}}}:bench:stamps"


@app.job("noop", exclusive=False)
def noop(ctx: JobContext, payload: Any) -> None:
    """Does nothing: the drain benchmark measures rexec itself."""


@app.job("stamp", exclusive=False)
def stamp(ctx: JobContext, payload: float) -> None:
    """Records how long after its enqueue (``payload``, epoch seconds) it started."""
    started = time.time()
    ctx.app.client.rpush(stamp_key(ctx.app.namespace), f"{(started - payload) * 1000:.3f}")
