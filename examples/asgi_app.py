"""An ASGI web app (Starlette) that hands slow work to rexec and lets clients poll for it.

    POST /reports {"rows": 1000}  -> 202 {"id": "17", "poll": "/reports/17"}
    GET  /reports/17              -> 200 {"status": "queued" | "running" | ...,
                                          "result": {...} once completed}

The web process only enqueues (``await render_report.aenqueue(...)``, on redis.asyncio,
never blocking the event loop) and reads job handles; a worker node runs the jobs:

    uvicorn examples.asgi_app:web            # the web app
    rexec worker examples.asgi_app:app       # the worker node

``python examples/asgi_app.py`` runs one request through both in this process (the
worker's part with ``app.run_until_empty()``, as a test suite would).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from rexec import App, JobStatus, RexecError

app = App(namespace="reports")  # REXEC_REDIS_URL, else the embedded Redis


@app.job("render-report", keep_result=3600, exclusive=False)  # results kept an hour
async def render_report(ctx: Any, payload: dict[str, int]) -> dict[str, int]:
    await asyncio.sleep(0.01)  # the slow part: queries, rendering, uploads
    rows = payload["rows"]
    return {"rows": rows, "total": rows * (rows - 1) // 2}


async def create_report(request: Request) -> JSONResponse:
    body = await request.json()
    rows = body.get("rows") if isinstance(body, dict) else None
    if isinstance(rows, bool) or not isinstance(rows, int) or not 0 < rows <= 1_000_000:
        return JSONResponse({"error": "rows must be an integer in 1..1000000"}, status_code=400)
    handle = await render_report.aenqueue({"rows": rows})
    return JSONResponse({"id": handle.id, "poll": f"/reports/{handle.id}"}, status_code=202)


async def report_status(request: Request) -> JSONResponse:
    try:
        info = await app.handle(request.path_params["job_id"]).ainfo()
    except RexecError as exc:  # not a job id
        return JSONResponse({"error": str(exc)}, status_code=400)
    if info.status in (JobStatus.UNKNOWN, JobStatus.DELETED):
        return JSONResponse({"error": "no such report"}, status_code=404)
    body: dict[str, Any] = {"id": info.id, "status": str(info.status)}
    if info.status is JobStatus.COMPLETED:
        body["result"] = info.return_value
    if info.errors:
        body["error"] = info.errors[-1].message
    return JSONResponse(body)


@contextlib.asynccontextmanager
async def lifespan(_: Starlette) -> AsyncIterator[None]:
    yield
    await app.aclose()  # the async client lives on the server's event loop


web = Starlette(
    routes=[
        Route("/reports", create_report, methods=["POST"]),
        Route("/reports/{job_id}", report_status),
    ],
    lifespan=lifespan,
)


def main() -> None:
    from starlette.testclient import TestClient

    with TestClient(web) as client:
        created = client.post("/reports", json={"rows": 1000}).json()
        print("enqueued", created)
        print("before a worker:", client.get(created["poll"]).json())
        print("jobs run:", app.run_until_empty())
        print("after:", client.get(created["poll"]).json())


if __name__ == "__main__":
    main()
