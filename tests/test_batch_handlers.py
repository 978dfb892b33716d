"""Batch handlers (``@app.job(type, batch=True)``): registration, and what a call's
return value means for each of its jobs. Running them on real worker processes is in
tests/test_executor.py."""

from __future__ import annotations

from typing import Any

import pytest

from rexec import App
from rexec.codec import pack
from rexec.errors import HandlerError, ValidationError
from rexec.executor.execution import COMPLETED, FAILED
from rexec.executor.runtime import Runtime
from rexec.settings import WorkerSettings


def test_a_batch_handler_may_be_async(app: App) -> None:
    @app.job("t", batch=True)
    async def handler(contexts: list[Any], payloads: list[Any]) -> None:
        return None

    assert app.definitions["t"].batch and app.definitions["t"].is_async


def test_batch_must_be_a_bool(app: App) -> None:
    with pytest.raises(ValidationError, match="batch must be True or False"):
        app.job("t", batch="yes")  # type: ignore[arg-type]


def test_a_batch_definition_says_so(app: App) -> None:
    @app.job("t", batch=True, exclusive=False)
    def handler(contexts: list[Any], payloads: list[Any]) -> None:
        return None

    @app.job("u")
    def single(ctx: Any, payload: Any) -> None:
        return None

    assert app.definitions["t"].batch and not app.definitions["u"].batch


def _runs(app: App, count: int) -> tuple[Runtime, list[Any]]:
    @app.job("t", batch=True, exclusive=False)
    def handler(contexts: list[Any], payloads: list[Any]) -> None:
        return None

    app.enqueue_many([{"type": "t", "payload": i} for i in range(count)])
    rt = Runtime(app, WorkerSettings(app_path="x:app"), 0, "node")
    jobs = app.store.acquire_jobs("owner", count).jobs
    return rt, [rt.begin(job, None) for job in jobs]


def _decide(rt: Runtime, runs: list[Any], result: object, error: BaseException | None) -> None:
    for run, (item, item_error) in zip(runs, rt.batch_outcomes(runs, result, error), strict=True):
        rt.handler_ended(run, item, item_error)


def test_none_completes_every_job_and_a_list_decides_each(app: App) -> None:
    rt, runs = _runs(app, 3)
    _decide(rt, runs, [None, ValueError("no"), KeyboardInterrupt()], None)
    assert [r.outcome for r in runs] == [COMPLETED, FAILED, FAILED]
    assert isinstance(runs[1].error, ValueError) and str(runs[1].error) == "no"
    assert isinstance(runs[2].error, KeyboardInterrupt)

    again = [rt.begin(r.job, None) for r in runs]
    _decide(rt, again, None, None)
    assert [r.outcome for r in again] == [COMPLETED] * 3


@pytest.mark.parametrize(
    ("result", "text"),
    [
        ({"a": 1}, "returned a dict;"),
        ([None], "returned a list of 1 items;"),
        ([None] * 4, "returned a list of 4 items;"),
        ("x", "returned a str;"),
    ],
)
def test_anything_else_fails_every_job_of_the_call(app: App, result: object, text: str) -> None:
    rt, runs = _runs(app, 3)
    _decide(rt, runs, result, None)
    for run in runs:
        assert run.outcome == FAILED
        assert isinstance(run.error, HandlerError)
        assert text in str(run.error)
        assert "a list of 3 items" in str(run.error)


def test_a_raising_call_fails_every_job_with_its_error(app: App) -> None:
    rt, runs = _runs(app, 2)
    boom = RuntimeError("down")
    _decide(rt, runs, None, boom)
    assert [r.error for r in runs] == [boom, boom]


def test_an_item_is_its_jobs_result_as_a_single_handlers_return_value_would_be(
    app: App,
) -> None:
    rt, runs = _runs(app, 3)
    _decide(rt, runs, [None, 5, object()], None)
    assert [r.outcome for r in runs[:2]] == [COMPLETED, COMPLETED]
    assert runs[0].result_raw == b"" and runs[1].result_raw == pack(5)
    assert runs[2].outcome == FAILED and "msgpack cannot encode" in str(runs[2].error)
