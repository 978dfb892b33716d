"""``rexec demo``: its last live frame shows the final counters."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from rexec.demo import Scenario


@pytest.mark.slow
def test_the_final_frame_shows_final_counters(redis_url: str) -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    run = Scenario(redis_url, jobs=300, nodes=1, processes=1, job_ms=0, lead_ms=500, timeout_s=60)
    report = run.run(console)
    assert report.committed == 300 and report.lost == 0
    frames = out.getvalue().split("midnight")
    final = frames[-1]
    assert "done" in final.splitlines()[0]
    row = next(line for line in final.splitlines() if line.strip().startswith("node1"))
    numbers = [int(n) for n in re.findall(r"\b\d+\b", row.split("node1", 1)[1])]
    jobs, _recent, attempts, acquired, _failures = numbers[:5]
    assert jobs == 300
    assert acquired == report.jobs_acquired >= 300  # the final count, not a lagging one
    assert attempts == report.acquisition_attempts


def test_midnight_is_set_after_the_instances_far_enough_for_the_jobs(
    redis_url: str, namespace: str
) -> None:
    """Midnight is chosen once the order instances are started, from how long that
    took, so that on a slow machine every job is written before it falls due."""
    from rexec import scenario
    from rexec.app import App

    app = App(redis_url, namespace=namespace)
    app.definitions.update(scenario.app.definitions)
    load = scenario.prepare_midnight(app, 400)
    assert sum(app.management.counts().values()) == 0  # no job written yet
    instances = sum(1 for spec in load.specs if "process_instance_id" in spec)
    assert instances == load.counts["vip"] + load.counts["delivery"] > 0

    run = Scenario.__new__(Scenario)
    run.lead_ms = None
    load.seconds_per_job = 0.004  # a slow machine: 400 jobs take ~1.6 s to write
    assert run._lead_ms(load) == 2000 * 1.6 + 500
    run.lead_ms = None
    load.seconds_per_job = 0.0
    assert run._lead_ms(load) == 2000  # never less than 2 s
    run.lead_ms = 700
    assert run._lead_ms(load) == 700  # as given

    midnight = app.store.time_ms() + 60_000
    load.enqueue(midnight)
    jobs = list(app.management.jobs(limit=1000))
    assert len(jobs) == 400 and {job.due_ms for job in jobs} == {midnight}
    app.close()
