"""The cockpit's JSON API: reads and operator actions over one namespace.

Every route answers JSON. Errors are ``{"error": message, "status": code}``: 400 for bad
input, 401 without the token, 404 for an unknown job, process instance or route, 409
when a job changed under the action, 415 for a body that is not JSON, 503 when Redis
cannot be reached. Redis calls run in a thread pool, never on the event loop.

    GET    /api/overview                               counts by state and type, job types
    GET    /api/jobs?state&type&process_instance&priority_min&priority_max&sort&limit&offset
    GET    /api/jobs/{id}                              one job, payload preview, traceback
    PUT    /api/jobs/{id}/priority     {"priority": p}
    PUT    /api/jobs/{id}/retries      {"retries": n}  (n > 0 resolves an incident)
    POST   /api/jobs/{id}/suspend | /activate
    DELETE /api/jobs/{id}
    GET    /api/types                                  job definitions with counts
    PUT    /api/types/{type}/overriding-priority  {"priority": p, "cascade": false}
    DELETE /api/types/{type}/overriding-priority
    POST   /api/types/{type}/suspend | /activate  {"include_jobs": true}
    GET    /api/process-instances/{id}                 variables and jobs
    GET    /api/cluster                                nodes, workers, counters and rates
    GET    /api/periodic                               periodic schedules, next runs
    GET    /api/series                                 the last hour, for the charts
    GET    /metrics                                    Prometheus text format
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from rexec import timeseries
from rexec.app import App
from rexec.cockpit.queries import (
    ClusterView,
    JobLister,
    JobPage,
    JobQuery,
    TypeCounter,
    job_detail,
    job_summary,
    job_types,
    process_instance,
)
from rexec.errors import (
    JobNotFoundError,
    NotFoundError,
    OptimisticLockingError,
    RexecError,
    ValidationError,
)
from rexec.handles import JobStatus
from rexec.job import JobState
from rexec.periodic import schedules
from rexec.prometheus import render_metrics

INTEGER_RE = re.compile(r"^[+-]?\d{1,20}$")
LONG_INTEGER_RE = re.compile(r"^[+-]?\d{21,400}$")
JOB_QUERY_PARAMS = frozenset(
    {
        "state",
        "type",
        "process_instance",
        "priority_min",
        "priority_max",
        "sort",
        "limit",
        "offset",
        "after",
    }
)


class ApiError(Exception):
    """An error answered as JSON with its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class JSON(JSONResponse):
    """JSON through orjson (integers up to 64 bits exact)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def error_json(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSON:
    return JSON({"error": message, "status": status}, status_code=status, headers=headers)


@dataclass
class Cockpit:
    """What the routes share: the app and the read model's caches."""

    app: App
    lister: JobLister = field(init=False)
    type_counter: TypeCounter = field(init=False)
    cluster: ClusterView = field(init=False)

    def __post_init__(self) -> None:
        self.lister = JobLister(self.app)
        self.type_counter = TypeCounter(self.app)
        self.cluster = ClusterView(self.app)

    def counts(self) -> dict[str, Any]:
        by_state = self.app.management.counts()
        return {"by_state": by_state, "by_type": self.type_counter.get(by_state["total"])}


# -- input -----------------------------------------------------------------------------------


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
HISTORY_LOOKUP = 20_000  # history entries read to say what became of a finished job


def integer(value: object, name: str) -> int:
    """An integer given as a JSON number or a decimal string; nothing else. A whole
    number beyond 64 bits (``1e+23``, 30 digits) is said to be out of range, not
    "not an integer"."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and (
        INTEGER_RE.match(value.strip()) or LONG_INTEGER_RE.match(value.strip())
    ):
        number = int(value.strip())
    elif isinstance(value, float) and value.is_integer() and abs(value) >= 2**63:
        # JSON numbers beyond 64 bits arrive as floats (1e23, or -2**63 - 1 rounded)
        raise ValidationError(
            f"{name} is out of range: it must be from {INT64_MIN} to {INT64_MAX}, got {value:.3e}"
        )
    else:
        raise ValidationError(f"{name} must be an integer, got {value!r}")
    if not INT64_MIN <= number <= INT64_MAX:
        shown = f"{number:.3e}" if len(str(abs(number))) > 24 else str(number)
        raise ValidationError(
            f"{name} is out of range: it must be from {INT64_MIN} to {INT64_MAX}, got {shown}"
        )
    return number


def boolean(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    raise ValidationError(f"{name} must be true or false, got {value!r}")


async def body_of(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValidationError(f"the request body must be a JSON object, got {type(data).__name__}")
    return data


def required(body: Mapping[str, Any], name: str) -> Any:
    if name not in body:
        raise ValidationError(f"the request body needs {name!r}")
    return body[name]


def job_query(params: Mapping[str, str]) -> JobQuery:
    unknown = sorted(set(params) - JOB_QUERY_PARAMS)
    if unknown:
        raise ValidationError(
            f"unknown parameter {unknown[0]!r}; one of {', '.join(sorted(JOB_QUERY_PARAMS))}"
        )

    def text(name: str) -> str | None:
        value = params.get(name, "").strip()
        return value or None

    def number(name: str) -> int | None:
        value = text(name)
        return None if value is None else integer(value, name)

    state_name = text("state")
    state = None
    if state_name is not None and state_name != "all":
        try:
            state = JobState(state_name)
        except ValueError:
            raise ValidationError(
                f"unknown state {state_name!r}; one of all, {', '.join(s.value for s in JobState)}"
            ) from None
    limit = number("limit")
    offset = number("offset")
    return JobQuery(
        state=state,
        type=text("type"),
        process_instance_id=text("process_instance"),
        priority_min=number("priority_min"),
        priority_max=number("priority_max"),
        sort=text("sort") or "queue",
        limit=50 if limit is None else limit,
        offset=0 if offset is None else offset,
        after=text("after"),
    )


# -- routes ----------------------------------------------------------------------------------

Endpoint = Callable[[Request], Awaitable[Response]]


def api_routes(cockpit: Cockpit) -> list[BaseRoute]:
    app = cockpit.app
    # app.management per call: the store (and the namespace's partition layout) is
    # read on first use, so the cockpit starts even while Redis is down.

    def detail_of(job_id: str) -> dict[str, Any]:
        job = app.management.get_job(job_id)
        if job is None:
            info = app.handle(job_id).info()
            if info.status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.DELETED):
                last = info.errors[-1] if info.errors else None
                said = f", returned {info.return_value!r}"[:300] if info.return_value else ""
                if last is not None and info.status is not JobStatus.COMPLETED:
                    said = f": {last.exception}: {last.message}"[:300]
                raise JobNotFoundError(
                    f"job {job_id} ({info.type}) is no longer queued: {info.status.value}"
                    f" after {info.attempts} attempt(s) (server time {info.finished_at_ms}"
                    f" ms){said}"
                )
            past = app.management.job_history(job_id, max_entries=HISTORY_LOOKUP)
            if past:
                raise JobNotFoundError(
                    f"job {job_id} is no longer queued: {past[0]['outcome']}"
                    f" (server time {past[0]['finished_ms']} ms)"
                )
            raise JobNotFoundError(f"no job {job_id!r} (completed, deleted or never created)")
        return job_detail(job)

    def act(change: Callable[[], Any], reply: Callable[[], Any] | None = None) -> Any:
        """Makes a change; answers with ``reply()`` (read afresh), else the change's result."""
        result = change()
        cockpit.type_counter.invalidate()
        return result if reply is None else reply()

    async def overview(request: Request) -> Response:
        def read() -> dict[str, Any]:
            counts = cockpit.counts()
            return {
                "namespace": app.namespace,
                "now_ms": app.store.time_ms(),
                **counts,
                "types": job_types(app, counts["by_type"]),
            }

        return JSON(await run_in_threadpool(read))

    async def types(request: Request) -> Response:
        def read() -> list[dict[str, Any]]:
            return job_types(app, cockpit.counts()["by_type"])

        return JSON(await run_in_threadpool(read))

    def total_of(query: JobQuery) -> int | None:
        """The number of jobs a state (and type) filter selects, from the counts."""
        filters = (query.process_instance_id, query.priority_min, query.priority_max)
        if any(value is not None for value in filters):
            return None
        counts = cockpit.counts()
        state = "total" if query.state is None else query.state.value
        if query.type is None:
            return int(counts["by_state"][state])
        by_type = counts["by_type"]
        if by_type is None:
            return None
        return int(by_type.get(query.type, {}).get(state, 0))

    def find(query: JobQuery) -> tuple[JobPage, int | None]:
        page = cockpit.lister.find(query)
        return page, page.total if page.total is not None else total_of(query)

    async def jobs(request: Request) -> Response:
        query = job_query(request.query_params)
        page, total = await run_in_threadpool(find, query)
        return JSON(
            {
                "jobs": [job_summary(job) for job in page.jobs],
                "total": total,
                "more": page.more,
                "next": page.next,
                "truncated": page.truncated,
                "offset": query.offset,
                "limit": query.limit,
            }
        )

    async def job(request: Request) -> Response:
        return JSON(await run_in_threadpool(detail_of, request.path_params["job_id"]))

    async def job_priority(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        priority = integer(required(await body_of(request), "priority"), "priority")
        return JSON(
            await run_in_threadpool(
                act,
                lambda: app.management.set_job_priority(job_id, priority),
                lambda: detail_of(job_id),
            )
        )

    async def job_retries(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        retries = integer(required(await body_of(request), "retries"), "retries")
        return JSON(
            await run_in_threadpool(
                act,
                lambda: app.management.set_job_retries(job_id, retries),
                lambda: detail_of(job_id),
            )
        )

    async def job_suspend(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        await body_of(request)
        return JSON(
            await run_in_threadpool(
                act, lambda: app.management.suspend_job(job_id), lambda: detail_of(job_id)
            )
        )

    async def job_activate(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        await body_of(request)
        return JSON(
            await run_in_threadpool(
                act, lambda: app.management.activate_job(job_id), lambda: detail_of(job_id)
            )
        )

    async def job_delete(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        await run_in_threadpool(act, lambda: app.management.delete_job(job_id))
        return JSON({"deleted": job_id})

    def type_state(job_type: str, changed: int | None) -> dict[str, Any]:
        info = {i.type: i for i in app.management.job_definitions()}.get(job_type)
        return {
            "type": job_type,
            "overriding_priority": info.overriding_priority if info else None,
            "suspended": info.suspended if info else False,
            "changed": changed,
        }

    async def type_override(request: Request) -> Response:
        job_type = request.path_params["job_type"]
        body = await body_of(request)
        priority = integer(required(body, "priority"), "priority")
        cascade = boolean(body.get("cascade", False), "cascade")

        def change() -> dict[str, Any]:
            changed = app.management.set_overriding_job_priority(
                job_type, priority, cascade=cascade
            )
            return type_state(job_type, changed if cascade else None)

        return JSON(await run_in_threadpool(act, change))

    async def type_clear(request: Request) -> Response:
        job_type = request.path_params["job_type"]
        return JSON(
            await run_in_threadpool(
                act,
                lambda: app.management.clear_overriding_job_priority(job_type),
                lambda: type_state(job_type, None),
            )
        )

    def type_suspension(suspend: bool) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            job_type = request.path_params["job_type"]
            body = await body_of(request)
            include_jobs = boolean(body.get("include_jobs", True), "include_jobs")

            def change() -> dict[str, Any]:
                if suspend:
                    changed = app.management.suspend_job_definition(
                        job_type, include_jobs=include_jobs
                    )
                else:
                    changed = app.management.activate_job_definition(
                        job_type, include_jobs=include_jobs
                    )
                return type_state(job_type, changed if include_jobs else None)

            return JSON(await run_in_threadpool(act, change))

        return endpoint

    async def instance(request: Request) -> Response:
        return JSON(
            await run_in_threadpool(
                process_instance, app, request.path_params["pi"], cockpit.lister
            )
        )

    async def series(request: Request) -> Response:
        return JSON(await run_in_threadpool(timeseries.read, app.store))

    async def cluster(request: Request) -> Response:
        return JSON(await run_in_threadpool(cockpit.cluster.snapshot))

    async def periodic(request: Request) -> Response:
        def read() -> dict[str, Any]:
            return {
                "now_ms": app.store.time_ms(),
                "schedules": [info.to_dict() for info in schedules(app.store)],
            }

        return JSON(await run_in_threadpool(read))

    async def metrics(request: Request) -> Response:
        def read() -> bytes:
            return render_metrics(app, type_counts=cockpit.counts()["by_type"])

        return Response(await run_in_threadpool(read), media_type=CONTENT_TYPE_LATEST)

    job_path = "/api/jobs/{job_id}"
    type_path = "/api/types/{job_type}"
    return [
        Route("/api/overview", overview),
        Route("/api/jobs", jobs),
        Route(job_path, job),
        Route(job_path, job_delete, methods=["DELETE"]),
        Route(job_path + "/priority", job_priority, methods=["PUT", "POST"]),
        Route(job_path + "/retries", job_retries, methods=["PUT", "POST"]),
        Route(job_path + "/suspend", job_suspend, methods=["POST"]),
        Route(job_path + "/activate", job_activate, methods=["POST"]),
        Route("/api/types", types),
        Route(type_path + "/overriding-priority", type_override, methods=["PUT", "POST"]),
        Route(type_path + "/overriding-priority", type_clear, methods=["DELETE"]),
        Route(type_path + "/suspend", type_suspension(True), methods=["POST"]),
        Route(type_path + "/activate", type_suspension(False), methods=["POST"]),
        Route("/api/process-instances/{pi}", instance),
        Route("/api/cluster", cluster),
        Route("/api/periodic", periodic),
        Route("/api/series", series),
        Route("/metrics", metrics),
    ]


# -- errors ----------------------------------------------------------------------------------


def _status_of(exc: Exception) -> int:
    if isinstance(exc, ApiError):
        return exc.status
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, OptimisticLockingError):
        return 409
    if isinstance(exc, ValidationError):
        return 400
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return 503
    return 500


async def rexec_error(request: Request, exc: Exception) -> Response:
    status = _status_of(exc)
    message = str(exc) or type(exc).__name__
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        message = f"cannot reach Redis: {exc}"
    elif isinstance(exc, redis.RedisError):
        message = f"Redis error: {exc}"
    return error_json(status, message)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail
    if exc.status_code == 404:
        message = f"no such route: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    return error_json(exc.status_code, message, exc.headers)


EXCEPTION_HANDLERS: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
    HTTPException: http_error,
    ApiError: rexec_error,
    RexecError: rexec_error,
    redis.RedisError: rexec_error,
}
