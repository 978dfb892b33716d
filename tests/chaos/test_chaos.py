"""The chaos suite's bounded run, for CI: 4,000 jobs (plain, exclusive per process
instance, fork/join) drained by 2 nodes x 2 worker processes while, every 0.5-2 s, a
worker process or a whole node is SIGKILLed, one worker is SIGSTOPped for longer than
its lock time, and Redis (append-only file, ``appendfsync always``) is restarted once
and taken away for 5 s once. ``rexec bench chaos`` is the full, longer run.

What is checked, and how, is in rexec/chaos.py and docs/reliability.md: every job
committed exactly once (per-job commit counters written by the commit script), none
missing, every extra execution explained by a lock that expired, the nodes' logs free of
tracebacks and of worker deaths we did not cause, and "Redis unreachable" logged once
per worker process and outage.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rexec.chaos import ChaosConfig, run_chaos

pytestmark = pytest.mark.slow

JOBS = 4000


def test_every_job_is_committed_exactly_once_through_kills_stops_and_redis_outages(
    tmp_path: Path,
) -> None:
    config = ChaosConfig(
        jobs=JOBS,
        duration_s=20.0,
        job_ms=80.0,
        lock_ms=1000,
        drain_timeout_s=45.0,
        work_dir=str(tmp_path),
    )
    report = run_chaos(config)
    figures = {k: v for k, v in report.items() if k not in ("environment", "parameters")}
    print(json.dumps(figures, indent=1))  # the run's figures, shown with pytest -s
    seed = report["parameters"]["seed"]
    where = f"(seed {seed}; node logs and Redis data in {report['work_dir']})"

    assert report["violations"] == [], where
    assert report["drained_s"] is not None, where
    assert report["jobs"] == report["committed"] == report["committed_exactly_once"] == JOBS
    assert report["executed"] >= report["committed"]
    assert report["duplicated_executions"] == (
        report["reruns_after_lock_expiry"] + report["reruns_after_failure"]
    )
    assert report["reruns_after_lock_expiry"] <= report["lock_expiries_reclaimed"]

    disruptions = report["disruptions"]
    assert disruptions["worker_kills"] + disruptions["node_kills"] >= 5, disruptions
    assert disruptions["worker_stops"] == 1
    assert disruptions["redis_restarts"] == 1
    assert disruptions["redis_outages"] == 1
    # The disruptions hit work in progress: jobs ran again after their locks expired.
    assert report["reruns_after_lock_expiry"] > 0
    # Every live worker process noticed the 5 s outage, and said so once.
    assert report["logs"]["workers_logging_unreachable"] >= 2, report["logs"]
    assert report["logs"]["tracebacks"] == 0
