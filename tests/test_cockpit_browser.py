"""The cockpit in a real browser: Debian's Chromium, headless, driven by Playwright.

The cockpit runs in-process under uvicorn on a free loopback port, over the private real
Redis. The test raises a queued job's priority through the UI and watches it move to the
head of the queue, then overrides a job type's priority with cascade and watches the list
reorder; each step is checked in Redis too. It saves a screenshot in its tmp_path (and,
with REXEC_UPDATE_SCREENSHOT=1, refreshes docs/cockpit.png for the README).

Playwright drives the system Chromium (``/usr/bin/chromium``, or ``REXEC_CHROMIUM``); it
downloads no browser. Without Chromium or Playwright the test skips locally and fails
under CI (``CI=true``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import uvicorn

from rexec import App
from rexec.cockpit.app import LOOPBACK_HOSTS, create_app

if TYPE_CHECKING:
    from playwright.sync_api import Page

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 10_000


def unavailable(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why} (CI must run the browser test: apt-get install -y chromium)")
    pytest.skip(why)


def chromium_path() -> str:
    path = os.environ.get("REXEC_CHROMIUM") or "/usr/bin/chromium"
    if not os.path.exists(path):
        unavailable(f"no Chromium at {path}")
    return path


@contextlib.contextmanager
def serving(app: App, token: str | None = None) -> Iterator[str]:
    """The cockpit served by uvicorn in a thread, as ``rexec cockpit`` serves it."""
    asgi = create_app(app, token=token, allowed_hosts=None if token else LOOPBACK_HOSTS)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(asgi, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def rapp(redis_url: str, namespace: str) -> Iterator[App]:
    with App(redis_url, namespace=namespace) as app:
        yield app


@pytest.fixture
def cockpit_url(rapp: App) -> Iterator[tuple[str, App]]:
    with serving(rapp) as url:
        yield url, rapp


@pytest.fixture
def page() -> Iterator[Page]:
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1440, "height": 900})
            one = context.new_page()
            one.set_default_timeout(TIMEOUT_MS)
            yield one
        finally:
            browser.close()


def queue_ids(page: Page) -> list[str]:
    found: list[str] = page.eval_on_selector_all(
        "#jobs-table tbody tr[data-job-id]", "rows => rows.map(r => r.dataset.jobId)"
    )
    return found


def wait_for_queue(page: Page, head: list[str]) -> None:
    """Waits until the listed jobs start with ``head`` (the UI polls the API)."""
    page.wait_for_function(
        """head => {
            const rows = [...document.querySelectorAll('#jobs-table tbody tr[data-job-id]')];
            return head.every((id, i) => rows[i] && rows[i].dataset.jobId === id);
        }""",
        arg=head,
    )


def test_operator_reorders_the_queue_in_the_browser(
    cockpit_url: tuple[str, App], page: Page, tmp_path: Path
) -> None:
    url, app = cockpit_url
    mail = app.enqueue_many(
        [
            {"type": "mail", "payload": {"to": f"user{i}@example.org"}, "priority": 10 * i}
            for i in (5, 4, 3, 2, 1)
        ]
    )
    slow = app.enqueue_many(
        [{"type": "slow-api", "payload": {"call": i}, "priority": 25} for i in range(3)]
    )
    pi = app.start_process_instance({"order": 42})
    app.enqueue("invoice", {"order": 42}, priority=0, process_instance_id=pi)
    app.enqueue("report", {"month": "2024-05"}, retries=1)
    (job,) = app.store.acquire_jobs("web-1-301.0.302", 1, types=["report"]).jobs
    app.store.fail(job, ConnectionError("the report service timed out"), details="Traceback ...")

    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    # The queue: ready jobs, highest priority first.
    wait_for_queue(page, [mail[0], mail[1], mail[2], *slow, mail[3], mail[4]])
    assert page.locator("#incident-banner").is_visible()
    assert "1 incident" in page.locator("#incident-count").inner_text()

    # Raise the priority of the last queued job: it moves to the head of the queue.
    last = queue_ids(page)[-2]  # the invoice job (priority 0) is last; take the one above
    assert last == mail[4]
    page.locator(f'#jobs-table tr[data-job-id="{last}"] button[data-action="priority"]').click()
    dialog = page.locator("#dialog")
    dialog.locator('input[name="priority"]').fill("1000")
    dialog.locator("#dialog-ok").click()
    wait_for_queue(page, [last, mail[0]])
    assert app.management.get_job(last).priority == 1000  # type: ignore[union-attr]

    # Push slow-api ahead of everything, cascading to its existing jobs.
    page.locator('#types-table tr[data-type="slow-api"] button[data-action="override"]').click()
    dialog.locator('input[name="priority"]').fill("5000")
    dialog.locator('input[name="cascade"]').check()
    dialog.locator("#dialog-ok").click()
    wait_for_queue(page, [*slow, last, mail[0]])
    assert {j.priority for j in app.store.get_jobs(slow)} == {5000}
    definitions = {d.type: d for d in app.management.job_definitions()}
    assert definitions["slow-api"].overriding_priority == 5000
    page.wait_for_function(
        """() => document.querySelector('#types-table tr[data-type="slow-api"] .override-value')
            ?.textContent === '5000'"""
    )

    shot = tmp_path / "cockpit.png"
    page.evaluate("document.querySelector('#toasts').replaceChildren()")  # a clean picture
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("REXEC_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, REPO_ROOT / "docs" / "cockpit.png")

    # A job's details, as an operator opens them before acting on it.
    page.locator(f'#jobs-table tr[data-job-id="{slow[0]}"] td').first.click()
    page.wait_for_selector("#drawer pre.payload")
    assert '"call": 0' in page.locator("#drawer pre.payload").inner_text()
    page.screenshot(path=str(tmp_path / "cockpit-job.png"))
    assert errors == []


def test_the_page_asks_once_for_the_token(rapp: App, page: Page) -> None:
    job_id = rapp.enqueue("mail", priority=7)
    with serving(rapp, token="correct-horse") as url:
        page.goto(url)
        dialog = page.locator("#dialog")
        dialog.locator('input[name="token"]').fill("wrong")
        dialog.locator("#dialog-ok").click()
        page.wait_for_function(
            "() => document.querySelector('#dialog-message').textContent.includes('refused')"
        )
        dialog.locator('input[name="token"]').fill("correct-horse")
        dialog.locator("#dialog-ok").click()
        page.wait_for_selector(f'#jobs-table tr[data-job-id="{job_id}"]')
        assert page.locator("#forget-token").is_visible()

        page.reload()  # the browser kept the token: no question this time
        page.wait_for_selector(f'#jobs-table tr[data-job-id="{job_id}"]')
        assert not page.locator("#dialog").is_visible()


def test_charts_render_with_data_and_pages_go_past_5000_jobs(
    cockpit_url: tuple[str, App], page: Page, tmp_path: Path
) -> None:
    from rexec import timeseries
    from rexec.metrics import WorkerMetrics

    url, app = cockpit_url
    ids = app.enqueue_many(
        [{"type": ("mail", "ship")[i % 2], "priority": i % 7} for i in range(6_200)]
    )
    # A few steps of history, as workers record them: completions, counts and latency.
    now = app.store.time_ms()
    start = now - 5 * timeseries.STEP_MS
    for step in range(6):
        done = app.enqueue_many([{"type": "report"}] * (10 * (step + 1)))
        for job in app.store.acquire_jobs("node-1.0.1", len(done), types=["report"]).jobs:
            app.store.complete(job)
        metrics = WorkerMetrics("node-1.0.1")
        metrics.add("job-successful", len(done))
        for _ in done:
            metrics.pickup_latency(4 + step)
        pipe = app.client.pipeline()
        metrics.flush(pipe, app.store.keys)
        pipe.execute()
        assert timeseries.record(app.store, start + step * timeseries.STEP_MS)

    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    page.locator('.tabs button[data-tab="charts"]').click()
    for box in ("throughput", "depth", "latency", "nodes"):
        # attached, not "visible": a flat line has an empty bounding box
        page.wait_for_selector(f"#chart-{box} svg.chart path.series", state="attached")
    report = page.locator('#chart-throughput path.series[data-series="report"]')
    assert report.count() == 1
    assert report.get_attribute("d").count("L") >= 3  # a line through several samples
    assert int(page.locator("#chart-depth svg.chart").get_attribute("data-points") or 0) >= 6
    page.screenshot(path=str(tmp_path / "cockpit-charts.png"))

    # Page through the queue, 500 at a time, past the 5,000th job.
    page.locator('.tabs button[data-tab="jobs"]').click()
    page.select_option("#page-size", "500")
    expected = [j.id for j in app.management.jobs(state="ready", type=None, limit=10_000)]
    for n in range(11):
        page.wait_for_function(
            "n => document.querySelector('#page-info').textContent.startsWith(n)",
            arg=f"{n * 500 + 1:,}\u2013",
        )
        if n < 10:
            page.locator("#next").click()
    shown = queue_ids(page)
    assert len(shown) == 500  # jobs 5,001-5,500 of 6,200
    assert set(shown) <= set(ids) and set(shown) <= set(expected)

    def at(text: str) -> None:
        page.wait_for_function(
            "t => document.querySelector('#page-info').textContent.startsWith(t)", arg=text
        )

    for text in ("5,501\u20136,000", "6,001\u20136,200"):
        assert page.locator("#next").is_enabled()
        page.locator("#next").click()
        at(text)
    assert page.locator("#next").is_disabled()
    assert len(queue_ids(page)) == 200
    for text in ("5,501\u20136,000", "5,001\u20135,500"):
        page.locator("#prev").click()
        at(text)
    assert queue_ids(page) == shown
    assert errors == []


def test_cluster_tab_shows_periodic_schedules_and_next_runs(
    cockpit_url: tuple[str, App], page: Page, tmp_path: Path
) -> None:
    url, app = cockpit_url
    app.periodic("0 7 * * 1-5", "daily-report", {"to": "ops"}, timezone="Europe/Berlin")
    app.deploy_periodic()
    [info] = app.periodic_schedules()
    page.goto(url)
    page.click(".tabs button[data-tab='cluster']")
    row = page.locator("#periodic-table tbody tr", has_text="daily-report")
    row.first.wait_for()
    text = row.first.inner_text()
    assert "0 7 * * 1-5 (Europe/Berlin)" in text
    local, utc = info.to_dict()["next_local"], info.to_dict()["next_utc"]
    assert local.replace("T", " ") in text and utc.replace("T", " ") in text
    page.screenshot(path=str(tmp_path / "periodic.png"), full_page=True)
