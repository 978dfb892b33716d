"""A node: the supervisor of N worker processes (``rexec worker``).

The supervisor starts the processes with plain settings (each connects on its own),
restarts one that dies, and on SIGTERM/SIGINT asks them to stop: they stop acquiring,
let running jobs finish within the shutdown timeout and give back the rest. A second
signal ends everything at once.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import signal
import socket
import time
from multiprocessing.process import BaseProcess
from types import FrameType

import redis

from rexec.definitions import worker_types
from rexec.errors import ConfigurationError
from rexec.health import (
    HealthServer,
    Probe,
    ProcessHealth,
    ProcessState,
    liveness,
    readiness,
)
from rexec.settings import WorkerSettings, load_app
from rexec.worker import worker_process_main

log = logging.getLogger("rexec.node")

RESTART_BACKOFF_MAX_S = 5.0


class Node:
    def __init__(self, settings: WorkerSettings, *, problem: str | None = None) -> None:
        self.node_id = settings.node_id or f"{socket.gethostname()}-{os.getpid()}"
        self.settings = dataclasses.replace(settings, node_id=self.node_id)
        self._context = multiprocessing.get_context("spawn")
        self._processes: dict[int, BaseProcess] = {}
        self._restarts: dict[int, int] = {}
        self._signals = 0
        self._asked_to_stop: set[int] = set()  # workers that were running at the signal
        self.restarted = 0
        # Health (--health-port): what each process reports, and the supervisor's own beat.
        self.problem = problem  # a configuration error: never ready, never crash-loops
        self._health: dict[int, tuple[ProcessHealth, float]] = {}
        self._beat = time.monotonic()

    def _serve_metrics(self, port: int) -> None:
        # Read from Redis like the cockpit does: the runtime never imports it.
        from rexec.prometheus import serve_metrics

        app = load_app(self.settings)
        # ops13: loopback unless --metrics-host (then a token from REXEC_METRICS_TOKEN)
        server = serve_metrics(app, port, host=self.settings.metrics_host, node=self.node_id)
        log.info("node %s: Prometheus metrics on port %d", self.node_id, server.port)

    def _serve_health(self, host: str, port: int) -> HealthServer:
        try:
            server = HealthServer(host, port, live=self.live, ready=self.ready).start()
        except OSError as exc:
            raise ConfigurationError(f"cannot serve health on {host}:{port}: {exc}") from exc
        log.info("node %s: health on %s:%d (/livez, /readyz)", self.node_id, host, server.port)
        return server

    def _states(self) -> list[ProcessState]:
        return [
            health.state(index, alive=self._processes[index].is_alive(), started_s=started)
            for index, (health, started) in sorted(self._health.items())
        ]

    def live(self) -> Probe:
        return liveness(self._states(), supervisor_beat_s=self._beat, now_s=time.monotonic())

    def ready(self) -> Probe:
        return readiness(self._states(), stopping=self._signals > 0, problem=self.problem)

    def _start(self, index: int) -> None:
        health = ProcessHealth(self._context)
        process = self._context.Process(
            target=worker_process_main,
            args=(self.settings, index, self.node_id, health),
            name=f"rexec-worker-{index}",
            daemon=False,
        )
        process.start()
        self._processes[index] = process
        self._health[index] = (health, time.monotonic())

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info("node %s: stopping (signal %d)", self.node_id, signum)
            for process in self._processes.values():
                if process.pid is not None and process.is_alive():
                    self._asked_to_stop.add(process.pid)
                    os.kill(process.pid, signal.SIGTERM)
        else:
            log.warning("node %s: second signal, stopping at once", self.node_id)
            for process in self._processes.values():
                if process.pid is not None and process.is_alive():
                    os.kill(process.pid, signal.SIGKILL)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        health = None
        if self.settings.health_port is not None:
            health = self._serve_health(self.settings.health_host, self.settings.health_port)
        if self.problem is not None:
            return self._wait_not_ready(health)
        if self.settings.metrics_port is not None:
            self._serve_metrics(self.settings.metrics_port)
        for index in range(self.settings.processes):
            self._start(index)
        log.info(
            "node %s: %d worker processes x %d slots",
            self.node_id,
            self.settings.processes,
            self.settings.concurrency,
        )
        next_restart: dict[int, float] = {}
        while self._signals == 0:
            time.sleep(0.1)
            self._beat = time.monotonic()
            for index, process in list(self._processes.items()):
                if process.is_alive() or self._signals:
                    continue
                if index not in next_restart:
                    count = self._restarts.get(index, 0)
                    delay = min(RESTART_BACKOFF_MAX_S, 0.1 * 2**count)
                    next_restart[index] = time.monotonic() + delay
                    log.warning(
                        "node %s: worker %d (pid %s) died with exit code %s; restarting in %.1fs",
                        self.node_id,
                        index,
                        process.pid,
                        process.exitcode,
                        delay,
                    )
                elif time.monotonic() >= next_restart[index]:
                    del next_restart[index]
                    self._restarts[index] = self._restarts.get(index, 0) + 1
                    self.restarted += 1
                    self._start(index)
        deadline = time.monotonic() + self.settings.shutdown_timeout_s + 10.0
        for process in self._processes.values():
            process.join(max(0.0, deadline - time.monotonic()))
        code = 0
        for index, process in self._processes.items():
            if process.is_alive():
                process.kill()
                process.join(5)
                code = 1
            elif (
                process.exitcode not in (0, None)
                and self._signals == 1
                and process.pid in self._asked_to_stop
                and not self._killed_while_starting(index, process)
            ):
                # A worker that was asked to stop and failed to; one that had died before
                # the signal (and waited for its restart) does not make the stop unclean.
                code = 1
        if health is not None:
            health.close()
        log.info("node %s: stopped", self.node_id)
        return code

    def _killed_while_starting(self, index: int, process: BaseProcess) -> bool:
        """A process our SIGTERM reached before it had its handler held no job yet."""
        health, _ = self._health[index]
        return process.exitcode == -signal.SIGTERM and not health.handles_signals()

    def _wait_not_ready(self, health: HealthServer | None) -> int:
        """A node that cannot work as configured: says why once, reports not ready (and
        live) until stopped, then exits 1. An orchestrator shows it as not ready."""
        log.error("node %s: not ready: %s", self.node_id, self.problem)
        while self._signals == 0:
            time.sleep(0.1)
            self._beat = time.monotonic()
        if health is not None:
            health.close()
        return 1


def run_node(settings: WorkerSettings) -> int:
    """Runs a node until it is signalled to stop; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app = load_app(settings)  # fail fast on a bad APP, and pin the embedded Redis URL
    worker_types(app.definitions, settings.types)  # refuses --types the app cannot run
    try:
        settings = dataclasses.replace(
            settings, redis_url=app.resolved_url(), namespace=app.namespace
        )
        app.client.ping()
        # The app's job definitions go into the store before any of its jobs runs.
        log.info("deployed job definitions: %s", app.deploy())
    except redis.AuthenticationError as exc:
        # Wrong credentials do not heal by retrying: say so and stop (an unreachable
        # Redis, by contrast, is waited for by the workers' backoff).
        problem = f"Redis refused the credentials in the URL: {exc}"
        if settings.health_port is None:
            raise ConfigurationError(problem) from exc
        return Node(settings, problem=problem).run()
    except ConfigurationError as exc:
        if settings.health_port is None:
            raise
        return Node(settings, problem=str(exc)).run()  # no crash loop: not ready, and why
    except redis.RedisError as exc:
        log.warning("Redis unreachable at start, job definitions not deployed: %s", exc)
    finally:
        app.close()
    return Node(settings).run()


def main(argv: list[str] | None = None) -> int:
    """``python -m rexec.node '<settings as JSON>'``: how local clusters start nodes."""
    import sys

    import orjson

    args = sys.argv[1:] if argv is None else argv
    fields = orjson.loads(args[0])
    fields["types"] = tuple(fields.get("types", ()))
    return run_node(WorkerSettings(**fields))


if __name__ == "__main__":
    raise SystemExit(main())
