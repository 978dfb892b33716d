"""``rexec.contrib.django.RexecBackend``: the Django Tasks API on rexec.

The tests run the Django project in tests/django_project: in this process for the
producer side (enqueue, bad input, results after an in-process run), and with a real
worker node started by ``django-admin rexec_worker`` for the whole path.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
PROJECT = REPO / "tests" / "django_project"

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "storefront_site.settings")
if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))

import django  # noqa: E402

django.setup()

from django.test import override_settings  # noqa: E402
from storefront import tasks  # noqa: E402

from rexec import App  # noqa: E402
from rexec.contrib.django.backend import RexecBackend, backend, job_type  # noqa: E402
from rexec.contrib.django.compat import (  # noqa: E402
    InvalidTask,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_backends,
)


def settings_for(redis_url: str, namespace: str, **options: Any) -> dict[str, Any]:
    return {
        "default": {
            "BACKEND": "rexec.contrib.django.RexecBackend",
            "QUEUES": ["default", "emails"],
            "OPTIONS": {"REDIS_URL": redis_url, "NAMESPACE": namespace, **options},
        }
    }


@pytest.fixture
def rexec_backend(redis_url: str, namespace: str) -> Iterator[RexecBackend]:
    with override_settings(TASKS=settings_for(redis_url, namespace)):
        configured = backend()
        try:
            yield configured
        finally:
            configured.app.close()


@pytest.fixture
def producer(redis_url: str, namespace: str) -> Iterator[App]:
    with App(redis_url, namespace=namespace) as app:
        yield app


# -- the producer side --------------------------------------------------------------------


def test_the_backend_says_what_it_supports(rexec_backend: RexecBackend) -> None:
    assert rexec_backend.supports_defer
    assert rexec_backend.supports_priority
    assert rexec_backend.supports_get_result
    assert rexec_backend.supports_async_task


def test_enqueue_writes_one_job_per_call_under_the_tasks_module_path(
    rexec_backend: RexecBackend, producer: App
) -> None:
    result = tasks.add.enqueue(2, 3)
    assert result.status == TaskResultStatus.READY
    assert result.args == [2, 3] and result.kwargs == {}
    assert result.enqueued_at is not None and result.backend == "default"
    job = producer.management.get_job(result.id)
    assert job is not None
    assert job.type == "django:storefront.tasks.add" == job_type(tasks.add)
    assert job.payload == {"args": [2, 3], "kwargs": {}, "queue": "default"}
    assert job.priority == 0


def test_priority_queue_and_run_after_map_onto_the_job(
    rexec_backend: RexecBackend, producer: App
) -> None:
    when = datetime.now(UTC) + timedelta(hours=1)
    result = tasks.send_receipt.using(run_after=when).enqueue(7, to="ann@example.com")
    job = producer.management.get_job(result.id)
    assert job is not None
    assert job.priority == 50  # Django's priority is the rexec priority
    assert job.payload == {"args": [7], "kwargs": {"to": "ann@example.com"}, "queue": "emails"}
    assert job.due_ms == int(when.timestamp() * 1000)
    low = tasks.add.using(priority=-100).enqueue(1, 1)
    assert producer.management.get_job(low.id).priority == -100  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"priority": 101}, "priority"),
        ({"priority": -101}, "priority"),
        ({"run_after": datetime(2030, 1, 1)}, "aware"),  # naive on purpose
        ({"queue_name": "nope"}, "nope"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(
    rexec_backend: RexecBackend, producer: App, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidTask, match=message):
        tasks.add.using(**change).enqueue(1, 2)
    assert producer.management.counts()["total"] == 0


def test_arguments_json_cannot_hold_are_refused_before_writing(
    rexec_backend: RexecBackend, producer: App
) -> None:
    with pytest.raises(TypeError):
        tasks.add.enqueue(object(), 1)
    assert producer.management.counts()["total"] == 0
    assert producer.store.definitions() == {}  # not even the definition


def test_a_naive_run_after_is_refused_even_without_use_tz(
    redis_url: str, namespace: str, producer: App
) -> None:
    with override_settings(USE_TZ=False, TASKS=settings_for(redis_url, namespace)):
        with pytest.raises(InvalidTask, match="aware"):
            tasks.add.using(run_after=datetime(2030, 1, 1)).enqueue(1, 2)
        backend().app.close()
    assert producer.management.counts()["total"] == 0


def test_bad_options_are_refused_when_the_backend_is_made(redis_url: str, namespace: str) -> None:
    for options, message in (
        ({"RETRY_CYCLE": "often"}, "often"),
        ({"TYPO": 1}, "TYPO"),
        ({"MODULES": "storefront.tasks"}, "MODULES"),
        ({"KEEP_RESULT": "forever"}, "keep_result"),
        ({"TIMEOUT_MS": -5}, "TIMEOUT_MS"),
    ):
        with (
            override_settings(TASKS=settings_for(redis_url, namespace, **options)),
            pytest.raises(Exception, match=message),
        ):
            task_backends["default"]


def test_an_unknown_result_id_does_not_exist(rexec_backend: RexecBackend) -> None:
    with pytest.raises(TaskResultDoesNotExist):
        rexec_backend.get_result("999999")
    with pytest.raises(TaskResultDoesNotExist):
        rexec_backend.get_result("not-an-id")


# -- results, after an in-process run -----------------------------------------------------


def test_results_of_an_in_process_run(rexec_backend: RexecBackend, producer: App) -> None:
    ok = tasks.add.enqueue(2, 3)
    receipt = tasks.send_receipt.enqueue(9, to="bob@example.com")
    failed = tasks.explode.enqueue("no stock")
    assert rexec_backend.worker_app().run_until_empty() == 3

    done = tasks.add.get_result(ok.id)
    assert done.status == TaskResultStatus.SUCCESSFUL and done.return_value == 5
    assert done.args == [2, 3]
    assert done.enqueued_at and done.started_at and done.finished_at and done.last_attempted_at
    assert done.enqueued_at <= done.started_at <= done.finished_at
    assert done.attempts == 1 and len(done.worker_ids) == 1
    assert receipt.task.get_backend().get_result(receipt.id).return_value == {
        "order": 9,
        "to": "bob@example.com",
        "sent": True,
    }

    bad = tasks.explode.get_result(failed.id)
    assert bad.status == TaskResultStatus.FAILED
    assert [e.exception_class_path for e in bad.errors] == ["builtins.ValueError"]
    assert bad.errors[0].exception_class is ValueError
    assert "no stock" in bad.errors[0].traceback and "Traceback" in bad.errors[0].traceback
    with pytest.raises(ValueError, match="failed"):
        _ = bad.return_value
    ok.refresh()
    assert ok.status == TaskResultStatus.SUCCESSFUL and ok.return_value == 5


def test_takes_context_sees_its_own_result(rexec_backend: RexecBackend) -> None:
    result = tasks.introspect.enqueue("x")
    rexec_backend.worker_app().run_until_empty()
    value = tasks.introspect.get_result(result.id).return_value
    assert value["tag"] == "x" and value["id"] == result.id and value["attempt"] == 1
    assert len(value["workers"]) == 1


def test_retries_leave_a_result_ready_with_its_errors(redis_url: str, namespace: str) -> None:
    with override_settings(TASKS=settings_for(redis_url, namespace, RETRY_CYCLE="R2/PT1H")):
        configured = backend()
        result = tasks.explode.enqueue("first")
        assert configured.worker_app().run_until_empty() == 1
        pending = tasks.explode.get_result(result.id)
        assert pending.status == TaskResultStatus.READY  # its retry is due in an hour
        assert len(pending.errors) == 1 and pending.attempts == 1
        configured.app.close()


def test_async_enqueue_and_results(rexec_backend: RexecBackend) -> None:
    async def scenario() -> tuple[Any, Any, Any]:
        result = await tasks.fetch.aenqueue("https://example.com")
        before = await tasks.fetch.aget_result(result.id)
        ran = await asyncio.to_thread(rexec_backend.worker_app().run_until_empty)
        after = await tasks.fetch.aget_result(result.id)
        await rexec_backend.app.aclose()
        return before, ran, after

    before, ran, after = asyncio.run(scenario())
    assert before.status == TaskResultStatus.READY and before.args == ["https://example.com"]
    assert ran == 1
    assert after.status == TaskResultStatus.SUCCESSFUL
    assert after.return_value == "fetched https://example.com"
    assert after.args == ["https://example.com"]


def test_the_worker_app_has_one_type_per_task(rexec_backend: RexecBackend) -> None:
    app = rexec_backend.worker_app()
    assert set(app.definitions) == {
        "django:storefront.tasks.add",
        "django:storefront.tasks.send_receipt",
        "django:storefront.tasks.explode",
        "django:storefront.tasks.fetch",
        "django:storefront.tasks.introspect",
    }
    assert app.definitions["django:storefront.tasks.fetch"].is_async
    assert app.definitions["django:storefront.tasks.add"].retry_cycle.executions == 1


# -- a real worker node -------------------------------------------------------------------


def django_env(redis_url: str, namespace: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REXEC_")}
    env.update(
        DJANGO_SETTINGS_MODULE="storefront_site.settings",
        PYTHONPATH=os.pathsep.join((str(PROJECT), str(REPO))),
        REXEC_REDIS_URL=redis_url,
        REXEC_NAMESPACE=namespace,
    )
    return env


def django_admin() -> list[str]:
    return [sys.executable, "-m", "django"]


@pytest.mark.slow
def test_a_worker_started_by_django_admin_runs_enqueued_tasks(
    rexec_backend: RexecBackend, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    results = [tasks.add.enqueue(n, n) for n in range(5)]
    results.append(tasks.fetch.enqueue("https://example.org"))
    results.append(tasks.explode.enqueue("bad"))
    log = (tmp_path / "worker.log").open("wb")
    node = subprocess.Popen(
        [*django_admin(), "rexec_worker", "--processes", "1", "--concurrency", "2"],
        cwd=tmp_path,
        env=django_env(redis_url, namespace),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            for result in results:
                result.refresh()
            if all(result.is_finished for result in results):
                break
            assert node.poll() is None, (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
            time.sleep(0.2)
        assert [r.return_value for r in results[:5]] == [0, 2, 4, 6, 8]
        assert results[5].return_value == "fetched https://example.org"
        assert results[6].status == TaskResultStatus.FAILED
        assert results[6].errors[0].exception_class_path == "builtins.ValueError"
        assert all(len(r.worker_ids) == 1 and r.attempts == 1 for r in results)
        node.send_signal(signal.SIGTERM)
        assert node.wait(30) == 0
    finally:
        if node.poll() is None:
            os.killpg(node.pid, signal.SIGKILL)
            node.wait()
        log.close()
    text = (tmp_path / "worker.log").read_text()
    assert "django:storefront.tasks.add" in text  # the banner names the task types


def test_manage_py_rexec_worker_refuses_an_unknown_backend(redis_url: str, namespace: str) -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", "rexec_worker", "--backend", "nope"],
        cwd=PROJECT,
        env=django_env(redis_url, namespace),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "CommandError" in done.stderr and "nope" in done.stderr


def test_rexec_worker_takes_rexec_workers_options(redis_url: str, namespace: str) -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", "rexec_worker", "--help"],
        cwd=PROJECT,
        env=django_env(redis_url, namespace),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for option in ("--backend", "--processes", "--concurrency", "--types", "--lock-ms"):
        assert option in done.stdout
    bad = subprocess.run(
        [sys.executable, "manage.py", "rexec_worker", "--processes", "zero"],
        cwd=PROJECT,
        env=django_env(redis_url, namespace),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and "--processes" in bad.stderr
