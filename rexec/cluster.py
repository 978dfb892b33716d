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
from rexec.executor.node import STOP_WITH_PARENT_ENV
from rexec.settings import WorkerSettings


def node_command(settings: WorkerSettings) -> tuple[list[str], dict[str, str]]:
    """The command line and extra environment of one ``python -m rexec.node``. The Redis
    URL, which may hold a password, goes in ``REXEC_REDIS_URL``, never on the command
    line (``ps`` shows every user the command lines of every process)."""
    fields = dataclasses.asdict(dataclasses.replace(settings, redis_url=None))
    env = {"REXEC_REDIS_URL": settings.redis_url} if settings.redis_url else {}
    return [sys.executable, "-m", "rexec.node", orjson.dumps(fields).decode()], env


class LocalCluster:
    def __init__(self, settings: WorkerSettings, nodes: int, env: dict[str, str] | None = None):
        self.settings = settings
        self.nodes = nodes
        # The nodes stop by themselves if this process dies without stopping them.
        self.env = {**os.environ, **(env or {}), STOP_WITH_PARENT_ENV: str(os.getpid())}
        self.log_dir = Path(tempfile.mkdtemp(prefix="rexec-cluster-"))
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> LocalCluster:
        for index in range(self.nodes):
            argv, env = node_command(dataclasses.replace(self.settings, node_id=f"node{index + 1}"))
            log = open(self.log_dir / f"node{index + 1}.log", "wb")  # noqa: SIM115
            self._procs.append(
                subprocess.Popen(
                    argv,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env={**self.env, **env},
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
