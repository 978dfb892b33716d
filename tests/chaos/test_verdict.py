"""The chaos run's judges, on made-up evidence: they must pass a clean run and catch
each way the guarantees can break (a job committed twice or never, a rerun no expired
lock explains, a join that ran early, a traceback, a worker that died on its own, a
"Redis unreachable" flood). No Redis, no processes: these run in every test session.
"""

from __future__ import annotations

import itertools
from typing import Any

from rexec.chaos import Disruptions, Workload, scan_logs, verify

LOCK_MS = 1000
_tokens = itertools.count()

# One instance of each kind: a plain job (1), two exclusive jobs (2, 3), and a fork (4)
# whose branches (5, 6) and join (7) are created on the way.
WORKLOAD = Workload(plain={"p1": "1"}, exclusive={"p2": ["2", "3"]}, forks={"p3": "4"}, branches=2)


def run(
    job_id: str,
    job_type: str,
    *,
    rev: int = 1,
    retries: int = 10,
    exp: int = 10_000,
    pid: int = 100,
    **extra: Any,
) -> dict[str, Any]:
    """An execution record as the chaos app writes it."""
    return {
        "id": job_id,
        "type": job_type,
        "pi": None,
        "rev": rev,
        "retries": retries,
        "exp": exp,
        "owner": f"n1.0.{pid}",
        "pid": pid,
        "n": 1,
        "t": exp / 1000 - 0.5,
        "tok": str(next(_tokens)),
        **extra,
    }


def clean() -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    variables: dict[str, dict[str, Any]] = {
        "p1": {"plain:1": 1},
        "p2": {"exclusive:2": 1, "exclusive:3": 1},
        "p3": {"fork:4": 1, "branch:5": 1, "branch:6": 1, "join:7": 1},
    }
    records = [
        run("1", "plain"),
        run("2", "exclusive"),
        run("3", "exclusive"),
        run("4", "fork"),
        run("5", "branch"),
        run("6", "branch"),
        run("7", "join", seen=2),
    ]
    return variables, records


def judge(
    variables: dict[str, dict[str, Any]],
    records: list[dict[str, Any]],
    lock_expiries: int = 0,
    disruptions: Disruptions | None = None,
) -> tuple[dict[str, Any], list[str]]:
    verdict = verify(
        WORKLOAD,
        variables,
        records,
        lock_ms=LOCK_MS,
        lock_expiries=lock_expiries,
        disruptions=disruptions or Disruptions(),
    )
    return verdict.figures, verdict.violations


def test_a_clean_run_passes_with_its_figures() -> None:
    figures, violations = judge(*clean())
    assert violations == []
    assert figures["jobs"] == 7
    assert (figures["executed"], figures["committed"]) == (7, 7)
    assert figures["duplicated_executions"] == 0
    assert figures["committed_exactly_once"] == 7


def test_a_job_committed_twice_is_caught() -> None:
    variables, records = clean()
    variables["p2"]["exclusive:3"] = 2
    _, violations = judge(variables, records)
    assert violations == ["job 3 committed 2 times"]


def test_a_job_never_committed_is_caught_even_if_it_ran() -> None:
    variables, records = clean()
    del variables["p1"]["plain:1"]
    _, violations = judge(variables, records)
    assert "job 1 (plain, instance p1) never committed" in violations
    assert "job 1 executed but never committed" in violations


def test_a_missing_branch_or_join_is_caught() -> None:
    variables, records = clean()
    del variables["p3"]["join:7"]
    _, violations = judge(variables, [r for r in records if r["id"] != "7"])
    assert violations == ["instance p3: 0 join job(s) committed, 1 expected"]


def test_a_commit_without_an_execution_record_is_caught() -> None:
    variables, records = clean()
    _, violations = judge(variables, [r for r in records if r["id"] != "2"])
    assert violations == ["job 2 committed without an execution record"]


def test_a_rerun_after_the_lock_expired_is_explained() -> None:
    variables, records = clean()
    # Locked by pid 100 until 10 s, which ran it at 9.5 s and was killed at 9.6 s;
    # pid 200 locked it at 10.2 s.
    records.append(run("1", "plain", rev=2, exp=11_200, pid=200))
    figures, violations = judge(
        variables, records, lock_expiries=1, disruptions=Disruptions({100: 9.6})
    )
    assert violations == []
    assert figures["duplicated_executions"] == 1
    assert figures["reruns_after_lock_expiry"] == 1
    assert figures["rerun_causes"] == {"owner killed": 1}


def test_what_made_a_lock_expire_is_told_from_the_drivers_log() -> None:
    # Locked by pid 100 at 9 s (until 10 s), locked again by pid 200 at 10.2 s.
    stopped = Disruptions(stopped=((100, 9.5, 11.5),))
    redis_down = Disruptions(redis_down=((9.8, 10.1),))
    killed_later = Disruptions({100: 30.0})
    for disruptions, cause in (
        (stopped, "owner stopped"),
        (redis_down, "redis away"),
        (killed_later, "renewal late"),
    ):
        variables, records = clean()
        records.append(run("1", "plain", rev=2, exp=11_200, pid=200))
        figures, violations = judge(variables, records, 1, disruptions)
        assert violations == []
        assert figures["rerun_causes"] == {cause: 1}


def test_a_rerun_before_the_lock_expired_is_caught() -> None:
    variables, records = clean()
    records.append(run("1", "plain", rev=2, exp=10_900, pid=200))  # locked at 9.9 s
    _, violations = judge(variables, records, lock_expiries=1)
    assert len(violations) == 1
    assert "job 1 ran again (rev 1 -> 2, by n1.0.200) before its lock" in violations[0]


def test_reruns_need_as_many_reclaimed_locks() -> None:
    variables, records = clean()
    records.append(run("1", "plain", rev=2, exp=11_200, pid=200))
    _, violations = judge(variables, records, lock_expiries=0)
    assert violations == ["1 reruns after a lock expiry, but only 0 locks were reclaimed"]


def test_a_rerun_after_a_failure_is_explained() -> None:
    variables, records = clean()
    records.append(run("2", "exclusive", rev=2, retries=9, exp=10_100))
    figures, violations = judge(variables, records)
    assert violations == []
    assert figures["reruns_after_failure"] == 1


def test_two_executions_under_one_lock_are_caught_but_a_resent_record_is_not() -> None:
    variables, records = clean()
    records.append({**records[0], "tok": "resent"})
    records.append({**records[0], "tok": "resent"})
    figures, violations = judge(variables, records)
    assert violations == ["job 1 executed twice under one lock (rev 1)"]
    assert figures["records_resent"] == 1


def test_a_join_that_ran_before_its_branches_committed_is_caught() -> None:
    variables, records = clean()
    records[-1]["seen"] = 1
    _, violations = judge(variables, records)
    assert violations == ["join 7 ran having seen 1 of 2 branches committed"]


# -- node logs ---------------------------------------------------------------------------

OUTAGE = """\
2025-01-01 10:00:00,000 rexec.worker n1.0.100: Redis unreachable (Error 111); backing off
2025-01-01 10:00:00,001 rexec.worker n1.1.101: Redis unreachable (Error 111); backing off
2025-01-01 10:00:05,000 rexec.worker n1.0.100: Redis reachable again after 5.0 s
2025-01-01 10:00:05,100 rexec.worker n1.1.101: Redis reachable again after 5.1 s
"""


def test_logs_of_an_outage_noticed_once_per_worker_pass() -> None:
    verdict = scan_logs([OUTAGE], killed_pids=[], outages=1)
    assert verdict.violations == []
    assert verdict.figures["workers_logging_unreachable"] == 2
    assert verdict.figures["reachable_again_lines"] == 2


def test_logs_with_a_flood_a_traceback_or_a_stuck_worker_fail() -> None:
    flood = OUTAGE.splitlines()[0]
    log = "\n".join([flood, flood, "Traceback (most recent call last):"])
    violations = scan_logs([log], killed_pids=[], outages=1).violations
    assert any("twice in one outage" in v for v in violations)
    assert any("traceback" in v for v in violations)
    assert any("never logged 'Redis reachable again'" in v for v in violations)
    # A worker killed while Redis was away never gets to say it is back: that is fine.
    assert scan_logs([flood], killed_pids=[100], outages=1).violations == []


def test_logs_of_a_worker_that_died_on_its_own_fail() -> None:
    line = "rexec.node node n1: worker 0 (pid {pid}) died with exit code {code}; restarting"
    ours = line.format(pid=100, code=-9)
    assert scan_logs([ours], killed_pids=[100], outages=0).violations == []
    for other in (line.format(pid=101, code=-9), line.format(pid=100, code=1)):
        assert scan_logs([other], killed_pids=[100], outages=0).violations != []
