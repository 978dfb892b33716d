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
