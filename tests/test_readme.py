"""The README's code runs as written.

Every ```python block of the README opens with a comment naming its file (``# shop/jobs.py``).
The test writes them all into a fresh folder, with one change: the Redis URL they name
(``redis://localhost:6379/0``) becomes the tests' private server. It then runs the blocks
that are scripts, in order, and real worker nodes on the worker modules the README names
(``rexec worker shop.jobs:app``, ``rexec worker shop.orders:app``), and checks that every
job ran exactly once — a worker module that enqueued at import would run its enqueues once
per worker process — and that the order process reached its end. The Django project's
modules (``mysite/...``) are set up by the script that uses them. Then it runs every
command of the "Operator command line" block against the same Redis.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from rexec import App
from rexec.errors import ProcessInstanceNotFoundError

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCUMENTED_URL = "redis://localhost:6379/0"
BLOCK_RE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[str]:
    return [body for lang, body in BLOCK_RE.findall(README.read_text()) if lang == language]


def python_files() -> list[tuple[str, str]]:
    """(path, code) of every Python block, in README order."""
    found = []
    for body in blocks("python"):
        first = body.splitlines()[0]
        match = re.fullmatch(r"# ([\w/]+\.py)", first)
        assert match, f"a README Python block must open with '# <file>.py', not {first!r}"
        found.append((match.group(1), body))
    return found


def test_every_python_block_names_its_file_and_compiles() -> None:
    files = python_files()
    assert len(files) >= 5
    for path, code in files:
        compile(code, path, "exec")
    modules = {path for path, _ in files if "/" in path}
    assert modules == {"shop/jobs.py", "shop/orders.py", "mysite/settings.py", "mysite/tasks.py"}
    for path, code in files:
        if path in modules:  # worker modules: handlers only, nothing enqueued at import
            assert "enqueue" not in code.replace("ctx.enqueue", "")
            assert "start_process_instance" not in code


def clean(client: redis.Redis, *namespaces: str) -> None:
    for namespace in namespaces:
        keys = list(client.scan_iter(match=f"rexec:{{{namespace}}}:*"))
        if keys:
            client.delete(*keys)


def wait_until(condition: object, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.slow
def test_the_readme_runs_as_written(
    redis_url: str, real_client: redis.Redis, tmp_path: Path
) -> None:
    clean(real_client, "shop", "orders", "tiers", "signup", "mysite")
    for path, code in python_files():
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(code.replace(DOCUMENTED_URL, redis_url))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("REXEC_", "DJANGO_"))},
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}",
        "REXEC_HOME": str(tmp_path / "state"),
    }
    for path, _ in python_files():
        if "/" not in path:  # the scripts; the worker modules are run by workers
            done = subprocess.run(
                [sys.executable, path],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, (path, done.stderr)
    shop = App(redis_url, namespace="shop")
    orders = App(redis_url, namespace="orders")
    counts = shop.management.counts()
    assert counts["total"] == 1003  # 1,002 invoices and one notification, enqueued once
    (order,) = [p.decode() for p in real_client.hkeys(orders.store.keys.pis)]

    nodes = [
        subprocess.Popen(
            [sys.executable, "-m", "rexec", "worker", app_path, "--processes", "2"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for app_path in ("shop.jobs:app", "shop.orders:app")
    ]
    try:

        def invoices_done() -> bool:
            return shop.management.counts()["total"] == 1  # the notification has no handler

        wait_until(invoices_done, "the invoices to be sent")
        wait_until(lambda: orders.management.counts()["total"] == 0, "the order process")
        with pytest.raises(ProcessInstanceNotFoundError):  # ended by its last job
            orders.management.process_instance(order)
        completed = {
            k.decode(): int(v) for k, v in real_client.hgetall(shop.store.keys.counters).items()
        }
        assert completed["completed|send-invoice"] == 1002  # each exactly once
        done = {
            k.decode(): int(v) for k, v in real_client.hgetall(orders.store.keys.counters).items()
        }
        assert done == {
            "completed|place-order": 1,
            "completed|reserve-stock": 1,
            "completed|charge-card": 1,
            "completed|schedule-delivery": 1,
            "completed|send-confirmation": 1,
        }
    finally:
        for node in nodes:
            node.terminate()
        for node in nodes:
            try:
                node.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, 9)
                node.wait()
        shop.close()
        orders.close()


def operator_commands() -> list[list[str]]:
    """The commands of the README's "Operator command line" block, one per ``;``."""
    text = README.read_text()
    section = text[text.index("### Operator command line") :]
    body = BLOCK_RE.search(section)
    assert body is not None
    commands = []
    for raw in body.group(2).splitlines():
        line = raw.split("  #", 1)[0].strip()
        for part in line.split(" ; "):
            words = shlex.split(part)
            if words and words[0] == "rexec":
                commands.append(words[1:])
    return commands


@pytest.mark.slow
def test_the_documented_operator_commands_run(
    redis_url: str, real_client: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rexec.cli import main

    clean(real_client, "shop")
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "jobs.py").write_text(
        dict(python_files())["shop/jobs.py"].replace(DOCUMENTED_URL, redis_url)
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    for name in ("REXEC_REDIS_URL", "REXEC_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REXEC_APP", "shop.jobs:app")  # the block's first line
    commands = operator_commands()
    assert ["instance", "end", "p1235"] in commands
    runner = CliRunner()
    job_id = pi = ""
    with App(redis_url, namespace="shop") as app:
        for documented in commands:
            args = [a.replace("1234", job_id).replace("p1235", pi) for a in documented]
            result = runner.invoke(main, args)
            assert result.exit_code == 0, (args, result.output, result.exception)
            if args[0] == "deploy":  # names its app itself, and says where it deploys
                assert "deploying to Redis" in result.stderr
            else:
                assert "reading Redis" in result.stderr
                assert "(REXEC_APP=shop.jobs:app)" in result.stderr
            if args[0] == "enqueue":
                job_id = result.stdout.strip()
            if args[:2] == ["instance", "start"]:
                pi = result.stdout.strip()
        with pytest.raises(ProcessInstanceNotFoundError):
            app.get_variables(pi)  # ended by the last instance command


def test_the_demo_sample_in_the_readme_has_the_reports_shape() -> None:
    """The README's sample report reads like today's ``render_report`` output."""
    import io

    from rich.console import Console

    from rexec.demo import ClassReport, Report, render_report

    text = README.read_text()
    section = text[text.index("## What `rexec demo` shows") : text.index("## Using it")]
    match = BLOCK_RE.search(section)
    assert match is not None
    sample = [line.strip() for line in match.group(2).splitlines() if line.strip()]
    report = Report("rexec", 10_000, 4, 2, 8, "atomic", True, 2.0)
    report.classes = {c: ClassReport(1) for c in ("vip", "delivery", "notify", "housekeeping")}
    report.node_share = {"node1": 1.0}
    report.operator_actions = ["+1.00s: slow", "+2.00s: recovered"]
    out = io.StringIO()
    render_report(Console(file=out, width=200, color_system=None), report)
    rendered = [line.strip() for line in out.getvalue().splitlines() if line.strip()]

    def shape(line: str) -> str:
        """The words before the first figure, spaces collapsed."""
        words = " ".join(line.split())
        return re.split(r"[\d+]|\b(?:yes|NO)\b", words, maxsplit=1)[0]

    shapes = {shape(line) for line in rendered}
    for line in sample:
        assert shape(line) in shapes or any(line.startswith(s) for s in shapes if s), line
    assert len(sample) == len(rendered)
