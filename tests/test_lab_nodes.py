"""Nodes started by the lab tools (demo, bench, chaos) stop by themselves when the process
that started them dies without stopping them, instead of running on, orphaned."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PARENT = textwrap.dedent(
    """
    import sys, time
    from rexec.cluster import LocalCluster
    from rexec.settings import WorkerSettings

    settings = WorkerSettings(
        app_path="rexec.scenario:app", redis_url=sys.argv[1], namespace=sys.argv[2],
        processes=1, concurrency=1,
    )
    cluster = LocalCluster(settings, nodes=1).start()
    print(cluster._procs[0].pid, cluster.log_dir, flush=True)
    time.sleep(600)
    """
)


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in state  # exited, not yet reaped by its new parent


def test_a_lab_node_stops_when_the_process_that_started_it_is_killed(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen(
        [sys.executable, str(script), redis_url, namespace],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert parent.stdout is not None
    pid_text, log_dir = parent.stdout.readline().split()
    node_pid = int(pid_text)
    log = Path(log_dir) / "node1.log"
    try:
        deadline = time.monotonic() + 60
        while "deployed job definitions" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, "the node did not start"
            time.sleep(0.1)
        assert not _gone(node_pid)
        parent.send_signal(signal.SIGKILL)  # no chance to stop its nodes
        parent.wait()
        deadline = time.monotonic() + 30
        while not _gone(node_pid):
            assert time.monotonic() < deadline, "the orphaned node ran on"
            time.sleep(0.1)
        text = log.read_text()
        assert "the process that started it" in text and "is gone; stopping" in text
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        parent.stdout.close()
        if not _gone(node_pid):
            os.killpg(node_pid, signal.SIGKILL)
