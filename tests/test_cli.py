"""The `rexec` command line, run in-process against a fakeredis server."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import orjson
import pytest
import redis
from click.testing import CliRunner, Result

import rexec.app
import rexec.cli
from rexec import App, JobState
from rexec.cli import main, when
from rexec.store import NewJob

Run = Callable[..., Result]


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch) -> fakeredis.FakeServer:
    """One in-process Redis, shared by the CLI's App and the test's own."""
    server = fakeredis.FakeServer()
    monkeypatch.setattr(rexec.app, "connect", lambda url: fakeredis.FakeRedis(server=server))
    return server


@pytest.fixture
def app(fake_server: fakeredis.FakeServer, namespace: str) -> Iterator[App]:
    with App("redis://fake", namespace=namespace) as test_app:
        yield test_app


@pytest.fixture
def run(fake_server: fakeredis.FakeServer, namespace: str) -> Run:
    runner = CliRunner(env={"COLUMNS": "200", "REXEC_REDIS_URL": None, "REXEC_NAMESPACE": None})

    def invoke(*args: str, connect: bool = True, input: str | None = None) -> Result:
        extra = ["--redis-url", "redis://fake", "--namespace", namespace] if connect else []
        at = args.index("--") if "--" in args else len(args)
        return runner.invoke(main, [*args[:at], *extra, *args[at:]], input=input)

    return invoke


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def failed(result: Result, code: int, *words: str) -> str:
    """Asserts a clean failure: exit ``code``, the words in stderr, no traceback."""
    assert result.exit_code == code, (result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.stderr
    return result.stderr


def as_json(result: Result) -> Any:
    return orjson.loads(ok(result))


def ready_ids(app: App) -> list[str]:
    return [job.id for job in app.management.jobs(state="ready")]


def make_incident(app: App, job_type: str = "flaky") -> str:
    job_id = app.enqueue(job_type, {"n": 1}, retries=1)
    acquired = app.store.acquire_jobs("w", 1, lock_ms=1000, types=[job_type])
    assert app.store.fail(acquired.jobs[0], "boom") is JobState.INCIDENT
    return job_id


class TestEnqueueAndRead:
    def test_enqueue_then_jobs_json(self, run: Run) -> None:
        job_id = ok(
            run("enqueue", "email", '{"to": "ann", "n": [1, 2]}', "--priority", "7")
        ).strip()
        assert job_id.isdigit()
        [job] = as_json(run("jobs", "--json"))
        assert job["id"] == job_id
        assert job["type"] == "email"
        assert job["priority"] == 7
        assert job["state"] == "ready"
        assert job["payload"] == {"to": "ann", "n": [1, 2]}
        assert job["exclusive"] is True
        assert "payload_raw" not in job

    def test_enqueue_options(self, run: Run, app: App) -> None:
        job_id = ok(
            run("enqueue", "report", "--priority", "-5", "--delay-ms", "60000",
                "--non-exclusive", "--retries", "4")
        ).strip()  # fmt: skip
        job = app.management.get_job(job_id)
        assert job is not None
        assert (job.priority, job.state, job.exclusive, job.retries, job.payload) == (
            -5, JobState.SCHEDULED, False, 4, None,
        )  # fmt: skip
        assert as_json(run("jobs", "--state", "scheduled", "--json"))[0]["id"] == job_id
        assert as_json(run("jobs", "--state", "ready", "--json")) == []

    def test_enqueue_count(self, run: Run, app: App) -> None:
        out = ok(run("enqueue", "bulk", "--count", "3"))
        ids = ready_ids(app)
        assert len(ids) == 3
        assert out.strip() == f"enqueued 3 jobs, first id {ids[0]}, last id {ids[-1]}"

    def test_enqueue_count_in_chunks_with_progress(
        self, run: Run, app: App, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(rexec.cli, "ENQUEUE_PROGRESS_CHUNK", 2)
        out = ok(run("enqueue", "bulk", '"x"', "--count", "5"))
        ids = ready_ids(app)
        assert len(ids) == 5
        assert out.strip() == f"enqueued 5 jobs, first id {ids[0]}, last id {ids[-1]}"

    def test_jobs_filters_and_table(self, run: Run, app: App) -> None:
        a = app.enqueue("alpha", {"k": "[bold]v[/bold]"})
        app.enqueue("beta")
        listed = as_json(run("jobs", "--type", "alpha", "--json"))
        assert [job["id"] for job in listed] == [a]
        assert len(as_json(run("jobs", "--limit", "1", "--offset", "1", "--json"))) == 1
        table = ok(run("jobs"))
        assert "2 jobs" in table
        assert "alpha" in table and "beta" in table
        assert "[bold]v[/bold]" in table  # payloads are shown literally, not as markup

    def test_job_details(self, run: Run, app: App) -> None:
        job_id = make_incident(app)
        shown = as_json(run("job", job_id, "--json"))
        assert shown["state"] == "incident"
        assert shown["retries"] == 0
        assert shown["payload"] == {"n": 1}
        assert shown["exception"] == "boom"
        table = ok(run("job", job_id))
        assert "incident" in table and "boom" in table

    def test_undecodable_payload(self, run: Run, app: App) -> None:
        [job_id] = app.store.enqueue([NewJob("raw", payload_raw=b"\xc1\xc1\xc1")])
        assert as_json(run("job", job_id, "--json"))["payload"] == "<undecodable: 3 bytes>"

    def test_unknown_job(self, run: Run) -> None:
        failed(run("job", "999999"), 1, "no job '999999'")
        failed(run("job", "abc"), 1, "not a job id")

    def test_counts_json(self, run: Run, app: App) -> None:
        app.enqueue("a")
        app.enqueue("a", delay_ms=60_000)
        make_incident(app, "b")
        assert as_json(run("counts", "--json")) == {
            "ready": 1, "scheduled": 1, "locked": 0, "suspended": 0, "incident": 1, "total": 3,
        }  # fmt: skip
        assert "total" in ok(run("counts"))

    def test_definitions_json(self, run: Run, app: App) -> None:
        app.enqueue("a")
        app.enqueue("b")
        app.management.suspend_job_definition("b")
        app.management.set_overriding_job_priority("a", 9)
        fields = ("type", "overriding_priority", "suspended", "deployed")
        infos = as_json(run("definitions", "--json"))
        assert [{k: info[k] for k in fields} for info in infos] == [
            {"type": "a", "overriding_priority": 9, "suspended": False, "deployed": False},
            {"type": "b", "overriding_priority": None, "suspended": True, "deployed": False},
        ]
        assert "yes" in ok(run("definitions"))


class TestOperations:
    def test_priority_set_resorts(self, run: Run, app: App) -> None:
        a, b, c = (app.enqueue("t") for _ in range(3))
        assert ready_ids(app) == [a, b, c]
        assert ok(run("priority", "set", c, "10")).strip() == f"job {c}: priority 10"
        ok(run("priority", "set", a, "-3"))
        assert ready_ids(app) == [c, b, a]

    def test_priority_override_cascade_and_clear(self, run: Run, app: App) -> None:
        x1, x2 = app.enqueue("x"), app.enqueue("x")
        y = app.enqueue("y", priority=1)
        out = ok(run("priority", "override", "x", "50", "--cascade"))
        assert "2 existing jobs changed" in out
        assert [app.management.get_job(i).priority for i in (x1, x2, y)] == [50, 50, 1]  # type: ignore[union-attr]
        assert app.management.get_job(app.enqueue("x", priority=3)).priority == 50  # type: ignore[union-attr]
        ok(run("priority", "clear", "x"))
        assert app.management.get_job(app.enqueue("x")).priority == 0  # type: ignore[union-attr]
        assert app.management.get_job(x1).priority == 50  # type: ignore[union-attr]

    def test_priority_override_without_cascade(self, run: Run, app: App) -> None:
        x = app.enqueue("x")
        out = ok(run("priority", "override", "x", "-8"))
        assert "changed" not in out
        assert app.management.get_job(x).priority == 0  # type: ignore[union-attr]
        assert app.management.get_job(app.enqueue("x")).priority == -8  # type: ignore[union-attr]

    def test_suspend_and_activate_job(self, run: Run, app: App) -> None:
        job_id = app.enqueue("t")
        ok(run("suspend", "job", job_id))
        assert app.management.get_job(job_id).state is JobState.SUSPENDED  # type: ignore[union-attr]
        ok(run("activate", "job", job_id))
        assert app.management.get_job(job_id).state is JobState.READY  # type: ignore[union-attr]

    def test_suspend_and_activate_type(self, run: Run, app: App) -> None:
        a, b = app.enqueue("t"), app.enqueue("t")
        other = app.enqueue("u")
        assert "2 jobs suspended" in ok(run("suspend", "type", "t"))
        assert [j.id for j in app.management.jobs(state="suspended")] == [a, b]
        assert ready_ids(app) == [other]
        assert "2 jobs activated" in ok(run("activate", "type", "t"))
        assert ready_ids(app) == [a, b, other]
        assert app.store.acquire_jobs("w", 10).jobs[0].id == a

    def test_suspend_type_without_jobs(self, run: Run, app: App) -> None:
        job_id = app.enqueue("t")
        ok(run("suspend", "type", "t", "--without-jobs"))
        # Shown as suspended (issue 10), though the job's own flag is not set.
        assert app.management.get_job(job_id).state is JobState.SUSPENDED  # type: ignore[union-attr]
        assert app.store.acquire_jobs("w", 10).jobs == []
        [info] = as_json(run("definitions", "--json"))
        assert info["suspended"] is True
        ok(run("activate", "type", "t", "--without-jobs"))
        assert [j.id for j in app.store.acquire_jobs("w", 10).jobs] == [job_id]

    def test_retries_resolve_incident(self, run: Run, app: App) -> None:
        job_id = make_incident(app)
        out = ok(run("retries", job_id, "2"))
        assert out.strip() == f"job {job_id}: 2 retries left (ready)"
        job = app.management.get_job(job_id)
        assert job is not None
        assert (job.state, job.retries) == (JobState.READY, 2)
        assert app.management.counts()["incident"] == 0

    def test_delete(self, run: Run, app: App) -> None:
        job_id = app.enqueue("t")
        ok(run("delete", job_id))
        assert app.management.get_job(job_id) is None
        failed(run("delete", job_id), 1, "no job")


class TestBadInput:
    def test_bad_json_payload(self, run: Run, app: App) -> None:
        failed(run("enqueue", "t", "{not json"), 2, "PAYLOAD_JSON", "not valid JSON")
        failed(run("enqueue", "t", "--prio", "5"), 2, "No such option '--prio'")
        ok(run("enqueue", "t", "--priority", "-1", "--", "-5"))
        assert app.management.jobs()[0].payload == -5
        app.management.delete_job(app.management.jobs()[0].id)
        assert app.management.counts()["total"] == 0

    @pytest.mark.parametrize("value", ["abc", str(2**64), str(-(2**63) - 1), "1.5"])
    def test_bad_priority(self, run: Run, value: str, app: App) -> None:
        job_id = app.enqueue("t")
        failed(run("enqueue", "t", "--priority", value), 2, "priority")
        failed(run("priority", "set", job_id, value), 2, "Invalid value")
        failed(run("priority", "override", "t", value), 2, "Invalid value")
        assert app.management.counts()["total"] == 1

    def test_priority_range_message(self, run: Run, app: App) -> None:
        job_id = app.enqueue("t")
        failed(run("priority", "set", job_id, str(2**64)), 2, "signed 64-bit range")

    def test_invalid_values_from_the_api(self, run: Run) -> None:
        failed(run("enqueue", "bad type!"), 1, "job type must be")
        failed(run("enqueue", "t", "--due-ms", "5", "--delay-ms", "5"), 1, "not both")
        failed(run("jobs", "--type", "bad type!"), 1, "job type must be")
        failed(run("enqueue", "t", "--process-instance", "nope"), 1, "no process instance")

    def test_bad_namespace(self, run: Run) -> None:
        result = CliRunner().invoke(main, ["counts", "--redis-url", "x", "--namespace", "a b"])
        failed(result, 1, "namespace must be")

    def test_unreachable_redis(self, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(
            rexec.app, "connect", lambda url: redis.Redis(unix_socket_path="/nonexistent/r.sock")
        )
        failed(run("counts"), 1, "cannot reach Redis")

    def test_unknown_state(self, run: Run) -> None:
        failed(run("jobs", "--state", "sleeping"), 2, "sleeping")


def _fake_module(monkeypatch: pytest.MonkeyPatch, name: str, **attributes: Any) -> None:
    module = types.ModuleType(name)
    for key, value in attributes.items():
        setattr(module, key, value)
    monkeypatch.setitem(sys.modules, name, module)


class TestMetrics:
    def test_stats(self, run: Run, monkeypatch: pytest.MonkeyPatch, namespace: str) -> None:
        seen: list[str] = []

        def cluster_stats(store: Any) -> dict[str, dict[str, int]]:
            seen.append(store.keys.namespace)
            return {
                "job-successful": {"total": 7, "w1": 3, "w2": 4},
                "job-acquisition-attempt": {"total": 2, "w2": 2},
            }

        _fake_module(monkeypatch, "rexec.metrics", cluster_stats=cluster_stats)
        assert as_json(run("stats", "--json"))["job-successful"] == {"total": 7, "w1": 3, "w2": 4}
        assert seen == [namespace]
        table = ok(run("stats"))
        assert "job-successful" in table and "w1" in table and "w2" in table

    def test_nodes(self, run: Run, app: App, monkeypatch: pytest.MonkeyPatch) -> None:
        now = app.store.time_ms()
        workers = [
            {"id": "n1-0", "node": "n1", "index": 0, "host": "h", "pid": 42,
             "started_ms": now - 60_000, "concurrency": 8, "types": ["a"],
             "acquisition": "atomic", "heartbeat_ms": now - 1500, "heartbeat_age_ms": 1500},
            {"id": "n1-1", "node": "n1", "pid": 43, "heartbeat_ms": now - 2000, "extra": "z"},
        ]  # fmt: skip
        _fake_module(monkeypatch, "rexec.metrics", live_workers=lambda store: workers)
        assert as_json(run("nodes", "--json")) == workers
        table = ok(run("nodes"))
        assert "n1-0" in table and "n1-1" in table and "2 live workers" in table
        assert "1.5s ago" in table and "extra" in table

    def test_real_metrics_module_on_an_idle_namespace(self, run: Run) -> None:
        from rexec.metrics import COUNTERS

        counters = as_json(run("stats", "--json"))
        assert set(COUNTERS) <= set(counters)
        assert all(per == {"total": 0} for per in counters.values())
        assert as_json(run("nodes", "--json")) == []
        assert "job-successful" in ok(run("stats"))
        assert "0 live workers" in ok(run("nodes"))

    @pytest.mark.parametrize("command", ["stats", "nodes"])
    def test_metrics_missing(self, run: Run, monkeypatch: pytest.MonkeyPatch, command: str) -> None:
        monkeypatch.setitem(sys.modules, "rexec.metrics", None)
        failed(run(command), 1, "metrics are not available")


class TestWorker:
    @pytest.fixture
    def in_tmp(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(sys, "path", list(sys.path))
        return tmp_path

    def _write_app(self, directory: Path, name: str) -> None:
        (directory / f"{name}.py").write_text(
            "import rexec\napp = rexec.App('redis://fake', namespace='w')\nnot_an_app = 42\n"
        )

    @pytest.mark.parametrize(
        "value", ["nocolon", "a:", ":b", "a:b:c", "1x:app", "a b:app", "m:Box.app", "m..x:app"]
    )
    def test_bad_app_format(self, run: Run, value: str) -> None:
        failed(run("worker", value), 2, "module:attribute")

    def test_app_not_importable(self, run: Run, in_tmp: Path) -> None:
        failed(run("worker", "rexec_no_such_module_xyz:app"), 1, "cannot import")

    def test_app_attribute_problems(self, run: Run, in_tmp: Path) -> None:
        name = f"cliapp_{in_tmp.name.replace('-', '_')}"
        self._write_app(in_tmp, name)
        try:
            failed(run("worker", f"{name}:missing"), 1, "has no attribute")
            failed(run("worker", f"{name}:not_an_app"), 1, "not a rexec.App")
        finally:
            sys.modules.pop(name, None)

    def test_builds_settings_and_exits_with_node_code(
        self, run: Run, in_tmp: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        name = f"cliapp_{in_tmp.name.replace('-', '_')}"
        self._write_app(in_tmp, name)
        captured: dict[str, Any] = {}

        def settings(**kwargs: Any) -> dict[str, Any]:
            captured.update(kwargs)
            return kwargs

        _fake_module(monkeypatch, "rexec.settings", WorkerSettings=settings)
        _fake_module(
            monkeypatch, "rexec.executor.node", run_node=lambda s: 3 if s is not None else 0
        )
        try:
            result = run(
                "worker", f"{name}:app", "--processes", "3", "--types", "a, b,",
                "--priority-min", "-5", "--priority-max", "5", "--acquisition", "optimistic",
                "--max-jobs", "7", "--idle-increase-factor", "1.5",
                "--health-port", "8081", "--health-host", "0.0.0.0", connect=False,
            )  # fmt: skip
        finally:
            sys.modules.pop(name, None)
        assert result.exit_code == 3, (result.output, result.exception)
        assert captured == {
            "app_path": f"{name}:app",
            "redis_url": None,
            "namespace": None,
            "processes": 3,
            "concurrency": 8,
            "types": ("a", "b"),
            "priority_min": -5,
            "priority_max": 5,
            "lock_ms": 30_000,
            "shutdown_timeout_s": 30.0,
            "acquisition": "optimistic",
            "strategy": {
                "base_idle_wait_ms": 50,
                "idle_increase_factor": 1.5,
                "max_idle_wait_ms": 2000,
                "base_backoff_wait_ms": 50,
                "backoff_increase_factor": 2.0,
                "max_backoff_wait_ms": 1000,
                "backoff_decrease_threshold": 100,
                "base_num_jobs": 7,
            },
            "metrics_port": None,
            "metrics_host": "127.0.0.1",
            "health_port": 8081,
            "health_host": "0.0.0.0",
            "log_level": "INFO",
            "log_format": "text",
            "connect_timeout_s": None,
            "durability": None,  # the app's own
        }

    def test_durability_option_reaches_the_settings(
        self, run: Run, in_tmp: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        name = f"cliapp_{in_tmp.name.replace('-', '_')}"
        self._write_app(in_tmp, name)
        captured: dict[str, Any] = {}
        _fake_module(monkeypatch, "rexec.settings", WorkerSettings=captured.update)
        _fake_module(monkeypatch, "rexec.executor.node", run_node=lambda s: 0)
        try:
            result = run("worker", f"{name}:app", "--durability", "replicated", connect=False)
            refused = run("worker", f"{name}:app", "--durability", "eventual", connect=False)
        finally:
            sys.modules.pop(name, None)
        assert result.exit_code == 0, (result.output, result.exception)
        assert captured["durability"] == "replicated"
        assert refused.exit_code == 2 and "eventual" in refused.output

    def test_metrics_beyond_loopback_need_a_token(self, run: Run) -> None:
        out = failed(
            run("worker", "m:app", "--metrics-port", "0", "--metrics-host", "0.0.0.0"),
            2,
            "error:",
            "--metrics-token",
        )
        assert "REXEC_METRICS_TOKEN" in out

    def test_bad_worker_options(self, run: Run) -> None:
        failed(run("worker", "m:app", "--types", "ok,bad type"), 2, "job type must be")
        failed(run("worker", "m:app", "--priority-min", "5", "--priority-max", "1"), 2, "above")
        failed(run("worker", "m:app", "--processes", "0"), 2, "--processes")
        failed(run("worker", "m:app", "--lock-ms", "10"), 2, "--lock-ms")
        failed(run("worker", "m:app", "--acquisition", "greedy"), 2, "greedy")

    def test_real_settings(self, run: Run, in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """The CLI builds the worker runtime's own WorkerSettings."""
        from rexec.settings import WorkerSettings

        name = f"cliapp_{in_tmp.name.replace('-', '_')}"
        self._write_app(in_tmp, name)
        nodes_run: list[Any] = []
        _fake_module(
            monkeypatch, "rexec.executor.node", run_node=lambda s: nodes_run.append(s) or 0
        )
        try:
            ok(run("worker", f"{name}:app", "--types", "a", "--lock-ms", "5000"))
        finally:
            sys.modules.pop(name, None)
        [settings] = nodes_run
        assert isinstance(settings, WorkerSettings)
        assert (settings.app_path, settings.types, settings.lock_ms) == (
            f"{name}:app",
            ("a",),
            5000,
        )
        assert settings.redis_url == "redis://fake"
        assert settings.strategy["base_num_jobs"] == 50


def test_embedded_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    import rexec.embedded

    monkeypatch.setattr(rexec.embedded, "stop_shared_server", lambda: False)
    assert ok(CliRunner().invoke(main, ["embedded", "stop"])).strip() == "not running"


def test_optional_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    import click

    group = click.Group()
    _fake_module(monkeypatch, "rexec_fake_demo", demo_command=click.Command("demo"))
    monkeypatch.setitem(sys.modules, "rexec_fake_bench", None)
    rexec.cli._add_optional_commands(
        group, [("rexec_fake_demo", "demo_command"), ("rexec_fake_bench", "bench_command")]
    )
    assert sorted(group.commands) == ["demo"]


def test_help_lists_commands() -> None:
    out = CliRunner().invoke(main, ["--help"]).output
    for command in ("enqueue", "jobs", "job", "priority", "suspend", "activate", "retries",
                    "delete", "definitions", "deploy", "counts", "stats", "nodes",
                    "worker"):  # fmt: skip
        assert command in out


class TestDefinitions:
    """Issue 10 through the CLI: deploy, conflicts, resolution, unknown types."""

    @pytest.fixture
    def in_tmp(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(sys, "path", list(sys.path))
        return tmp_path

    def _write(self, directory: Path, name: str, body: str) -> str:
        (directory / f"{name}.py").write_text(
            "import rexec\napp = rexec.App('redis://fake', namespace='w')\n" + body
        )
        return f"{name}:app"

    def test_deploy_then_cli_enqueue_gets_the_stored_definition(
        self, run: Run, app: App, in_tmp: Path
    ) -> None:
        name = f"defsapp_{in_tmp.name.replace('-', '_')}"
        path = self._write(
            in_tmp,
            name,
            "@app.job('slow', priority=5)\ndef slow(ctx, p): pass\n"
            "@app.job('hang', retry_cycle='R1/PT1S')\ndef hang(ctx, p): pass\n",
        )
        try:
            assert ok(run("deploy", path)).split() == ["hang:", "new", "slow:", "new"]
            assert "unchanged" in ok(run("deploy", path))
        finally:
            sys.modules.pop(name, None)
        slow = ok(run("enqueue", "slow")).split()[-1]
        hang = ok(run("enqueue", "hang")).split()[-1]
        assert app.management.get_job(slow).priority == 5  # type: ignore[union-attr]
        assert app.management.get_job(hang).retries == 1  # type: ignore[union-attr]
        infos = {i["type"]: i for i in as_json(run("definitions", "--json"))}
        assert infos["slow"]["app"] == path and infos["slow"]["priority_rule"] == "5"
        assert "1 executions" in infos["hang"]["retry_cycle"]

    def test_conflict_is_shown(self, run: Run, app: App) -> None:
        first = App.with_client(app.client, namespace=app.namespace)
        first.job("shared", priority=1)(lambda ctx, p: None)
        first.deploy(app_path="one:app")
        second = App.with_client(app.client, namespace=app.namespace)
        second.job("shared", priority=2)(lambda ctx, p: None)
        assert second.deploy(app_path="two:app") == {"shared": "conflict"}
        table = ok(run("definitions"))
        assert "conflict" in table and "one:app" in table and "two:app" in table

    def test_unknown_type_is_one_red_line_unless_forced(self, run: Run, app: App) -> None:
        for args in (
            ("priority", "override", "typo", "5"),
            ("priority", "clear", "typo"),
            ("suspend", "type", "typo"),
            ("activate", "type", "typo"),
        ):
            err = failed(run(*args), 1, "typo", "never deployed")
            # one error line (besides the line saying which Redis and namespace it read)
            assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1
        assert app.management.job_definitions() == []
        ok(run("suspend", "type", "typo", "--force"))
        assert [i.type for i in app.management.job_definitions()] == ["typo"]
        ok(run("priority", "override", "later", "3", "--force"))
        assert app.management.get_job(app.enqueue("later")).priority == 3  # type: ignore[union-attr]


class TestOperability:
    """Process instances, bulk actions, history of every outcome, one error style."""

    def test_instance_start_show_set_end(self, run: Run, app: App) -> None:
        pi = ok(run("instance", "start", '{"order": 7}', "--priority", "-3")).strip()
        job_id = ok(run("enqueue", "ship", "--process-instance", pi)).strip()
        app.enqueue("other")  # not the instance's
        shown = as_json(run("instance", "show", pi, "--json"))
        assert shown["variables"] == {"order": 7} and shown["priority"] == -3
        assert [job["id"] for job in shown["jobs"]] == [job_id]
        assert "ship" in ok(run("instance", "show", pi))
        assert "revision 1" in ok(run("instance", "set", pi, '{"paid": true}'))
        assert app.get_variables(pi) == {"order": 7, "paid": True}
        listed = as_json(run("jobs", "--process-instance", pi, "--json"))
        assert [job["id"] for job in listed] == [job_id]
        assert as_json(run("jobs", "--process-instance", pi, "--state", "locked", "--json")) == []
        assert "ended" in ok(run("instance", "end", pi))
        failed(run("instance", "end", pi), 1, "error: no process instance")
        failed(run("instance", "show", pi), 1, "error: no process instance")
        failed(run("instance", "set", "p999", '{"a": 1}'), 1, "no process instance")
        failed(run("instance", "start", "[1, 2]"), 2, "error:", "JSON object")

    def test_bulk_retries_of_incidents(self, run: Run, app: App) -> None:
        incidents = [make_incident(app, "flaky") for _ in range(3)]
        other = make_incident(app, "steady")
        out = failed(run("retries", "--type", "flaky", "--incidents", "2"), 1, "3 jobs")
        assert "aborted" in out  # no answer: nothing done
        assert app.management.counts()["incident"] == 4
        result = run("retries", "--type", "flaky", "--incidents", "2", input="y\n")
        assert "3 incidents of flaky resolved" in ok(result)
        for job_id in incidents:
            job = app.management.get_job(job_id)
            assert job is not None and job.retries == 2 and job.state is JobState.READY
        steady = app.management.get_job(other)
        assert steady is not None and steady.state is JobState.INCIDENT
        again = run("retries", "--type", "flaky", "--incidents", "2", "--yes")
        assert "nothing to do: 0 jobs" in ok(again)

    def test_bulk_delete_by_type_and_state(self, run: Run, app: App) -> None:
        doomed = [app.enqueue("old") for _ in range(4)]
        kept = app.enqueue("old", delay_ms=60_000)
        other = app.enqueue("new")
        result = run("delete", "--type", "old", "--state", "ready", input="n\n")
        assert result.exit_code == 1 and app.management.counts()["total"] == 6
        assert "4 jobs deleted" in ok(run("delete", "--type", "old", "--state", "ready", "--yes"))
        assert all(app.management.get_job(j) is None for j in doomed)
        assert app.management.get_job(kept) is not None
        assert app.management.get_job(other) is not None
        failed(run("delete", "--type", "old"), 2, "error:", "--state")
        failed(run("delete", "5", "--state", "ready"), 2, "error:")

    def test_negative_and_malformed_numbers(self, run: Run, app: App) -> None:
        job_id = app.enqueue("t")
        failed(run("retries", job_id, "-1"), 2, "error:", "must be 0 or more, got -1")
        failed(run("retries", job_id, "x"), 2, "error:", "whole number")
        failed(run("retries", "--type", "t", "--incidents", "-4"), 2, "0 or more")
        failed(run("retries", "--type", "t", "--incidents", "0"), 2, "at least 1")

    def test_one_error_style(self, run: Run) -> None:
        for args in (("enqueue", "t", "--prio", "5"), ("jobs", "--state", "nope"), ("job", "x")):
            err = run(*args).stderr
            assert err.splitlines()[-1].startswith("error: ") or any(
                line.startswith("error: ") for line in err.splitlines()
            ), err
            assert "Error:" not in err

    def test_history_of_every_outcome_and_job_falls_back_to_it(
        self, run: Run, app: App, namespace: str
    ) -> None:
        from rexec.store import Store

        kept = Store(app.client, namespace, history_max_len=100)
        done = app.enqueue("a")
        (job,) = kept.acquire_jobs("w", 1, lock_ms=5000).jobs
        kept.complete(job)
        flaky = app.enqueue("b", retries=2)
        for _ in range(2):
            (job,) = kept.acquire_jobs("w", 1, lock_ms=5000).jobs
            kept.fail(job, "boom")
        gone = app.enqueue("c")
        ok(run("delete", gone))
        entries = as_json(run("history", "--json"))
        assert [(e["id"], e["outcome"]) for e in entries] == [
            (gone, "deleted"),
            (flaky, "incident"),
            (flaky, "failed"),
            (done, "completed"),
        ]
        assert entries[1]["error"] == "boom"
        table = ok(run("history"))
        assert str(entries[0]["finished_ms"]) not in table  # times are formatted
        assert when(entries[0]["finished_ms"]) in table
        assert "no longer queued: completed" in ok(run("job", done))
        data = as_json(run("job", gone, "--json"))
        assert data["queued"] is False and data["history"][0]["outcome"] == "deleted"
        failed(run("job", "999999"), 1, "not in the history")

    def test_stats_are_sorted(self, run: Run, app: App, namespace: str) -> None:
        app.client.hset(f"rexec:{{{namespace}}}:metrics", "w1|zzz-custom", 1)
        app.client.hset(f"rexec:{{{namespace}}}:metrics", "w1|aaa-custom", 1)
        rows = [line.split()[1] for line in ok(run("stats")).splitlines() if "│" in line]
        names = [row for row in rows if row not in ("counter",)]
        assert names == sorted(names)
        assert list(as_json(run("stats", "--json"))) == sorted(as_json(run("stats", "--json")))


@pytest.mark.parametrize("args", [[], ["periodic"], ["instance"], ["priority"]])
def test_a_group_alone_shows_its_help_not_a_one_line_error(args: list[str]) -> None:
    result = CliRunner().invoke(main, args, prog_name="rexec")
    assert result.exit_code == 2
    assert result.output.startswith(f"Usage: rexec {' '.join(args)}".rstrip())
    assert "\nCommands:\n" in result.output  # laid out as --help lays it out
    assert "error:" not in result.output
