"""Real nodes for tests: each a ``rexec.node.run_node`` subprocess in its own session
(so real signals reach it and its whole process tree can be killed), running
``tests.apps.recording:app`` against the session's private redis-server in the test's
own namespace. The handlers log what they do to a Redis list that the tests read.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import orjson
import pytest
import redis

from rexec import App
from rexec.metrics import cluster_stats, live_workers
from tests.apps.recording import LOG_URL_ENV, log_key, make_app

REPO_ROOT = Path(__file__).resolve().parents[1]
APP_PATH = "tests.apps.recording:app"
WAIT_S = 20.0  # generous upper bound for any single condition; tests end far sooner


class Cluster:
    """Nodes of one test, its producer app, and its view of the handlers' log."""

    def __init__(
        self,
        redis_url: str,
        namespace: str,
        tmp_path: Path,
        app_path: str = APP_PATH,
        env: dict[str, str] | None = None,
        *,
        log_url: str | None = None,
    ) -> None:
        self.redis_url = redis_url
        self.namespace = namespace
        self.tmp_path = tmp_path
        self.app_path = app_path
        self.env = env or {}
        self.app: App = make_app(redis_url, namespace)
        # The handlers' records, on another Redis when the test kills masters of this one.
        self._own_log = log_url is not None
        self.log = redis.Redis.from_url(log_url) if log_url else self.app.client
        if log_url:
            self.env = {**self.env, LOG_URL_ENV: log_url}
        self.nodes: list[subprocess.Popen[bytes]] = []
        self._outputs: list[IO[bytes]] = []

    # -- nodes ----------------------------------------------------------------------------

    def start_node(self, **settings: Any) -> subprocess.Popen[bytes]:
        """Starts ``run_node(WorkerSettings(APP, **settings))`` in a new session."""
        settings = {
            "app_path": self.app_path,
            "redis_url": self.redis_url,
            "namespace": self.namespace,
            "lock_ms": 1000,
            **settings,
        }
        code = (
            "import sys\n"
            "from rexec.executor.node import run_node\n"
            "from rexec.settings import WorkerSettings\n"
            f"sys.exit(run_node(WorkerSettings(**{settings!r})))\n"
        )
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        env["REXEC_REDIS_URL"] = self.redis_url
        env["REXEC_NAMESPACE"] = self.namespace
        env.update(self.env)
        output = (self.tmp_path / f"node-{len(self.nodes)}.log").open("wb")
        self._outputs.append(output)
        node = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the node and its workers
        )
        self.nodes.append(node)
        return node

    def stop_node(self, node: subprocess.Popen[bytes], timeout: float = WAIT_S) -> int:
        """SIGTERM (graceful shutdown); returns the node's exit code."""
        node.send_signal(signal.SIGTERM)
        try:
            return node.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"node did not stop within {timeout} s of SIGTERM{self.node_logs()}")

    def node_logs(self) -> str:
        parts = []
        for i in range(len(self.nodes)):
            path = self.tmp_path / f"node-{i}.log"
            text = path.read_text(errors="replace") if path.exists() else ""
            parts.append(f"\n--- node {i} output (last 3000 chars) ---\n{text[-3000:]}")
        return "".join(parts)

    def close(self) -> None:
        for node in self.nodes:
            # The whole process group: a node killed hard would orphan its workers.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(node.pid, signal.SIGKILL)
            node.wait(10)
        for output in self._outputs:
            output.close()
        self.log.delete(log_key(self.namespace))
        if self._own_log:
            self.log.close()
        self.app.close()

    # -- observation ----------------------------------------------------------------------

    def records(self, event: str | None = None) -> list[dict[str, Any]]:
        raw: list[bytes] = self.log.lrange(log_key(self.namespace), 0, -1)  # type: ignore[assignment]
        found = [orjson.loads(item) for item in raw]
        return [r for r in found if event is None or r["event"] == event]

    def wait_for(self, condition: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
        """Polls ``condition`` until it is truthy; fails naming ``what`` on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                counts = self.app.management.counts()
                pytest.fail(
                    f"timed out after {timeout} s waiting for {what}; jobs by state: {counts},"
                    f" {len(self.records())} log records{self.node_logs()}"
                )
            time.sleep(0.02)

    def live_pids(self) -> set[int]:
        return {int(w["pid"]) for w in live_workers(self.app.store)}

    def wait_for_workers(self, count: int) -> set[int]:
        """Waits until ``count`` worker processes have announced themselves."""
        self.wait_for(lambda: len(self.live_pids()) >= count, f"{count} live worker processes")
        return self.live_pids()

    def stats(self, name: str) -> int:
        return cluster_stats(self.app.store).get(name, {"total": 0})["total"]
