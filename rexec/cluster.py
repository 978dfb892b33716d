"""A local cluster: N nodes as separate processes on this machine, the same topology as
``docker compose up --scale engine=N``. Used by ``rexec demo`` and ``rexec bench``."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import orjson

from rexec.errors import ConfigurationError
from rexec.settings import WorkerSettings


class LocalCluster:
    def __init__(self, settings: WorkerSettings, nodes: int, env: dict[str, str] | None = None):
        self.settings = settings
        self.nodes = nodes
        self.env = {**os.environ, **(env or {})}
        self.log_dir = Path(tempfile.mkdtemp(prefix="rexec-cluster-"))
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> LocalCluster:
        for index in range(self.nodes):
            fields = dataclasses.asdict(
                dataclasses.replace(self.settings, node_id=f"node{index + 1}")
            )
            log = open(self.log_dir / f"node{index + 1}.log", "wb")  # noqa: SIM115
            self._procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "rexec.executor.node", orjson.dumps(fields).decode()],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=self.env,
                    start_new_session=True,  # Ctrl-C reaches us; we stop the nodes
                )
            )
            log.close()
        return self

    def check_alive(self) -> None:
        for index, proc in enumerate(self._procs):
            if proc.poll() is not None:
                tail = (self.log_dir / f"node{index + 1}.log").read_text(errors="replace")
                raise ConfigurationError(
                    f"node{index + 1} exited with {proc.returncode}:\n{tail[-2000:]}"
                )

    def stop(self, timeout_s: float = 30.0) -> list[int | None]:
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in self._procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return [proc.returncode for proc in self._procs]

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
