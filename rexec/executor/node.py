"""A node: the supervisor of N worker processes (``rexec worker``).

The supervisor starts the processes with plain settings (each connects on its own),
restarts one that dies, and on SIGTERM/SIGINT asks them to stop: they stop acquiring,
let running jobs finish within the shutdown timeout and give back the rest. A second
signal ends everything at once.

Each process beats into a small shared array (its housekeeper's tick): the supervisor
kills and restarts one whose beat stops for WEDGED_AFTER_S, and recycles (stops
gracefully, then restarts) one that holds too many handlers abandoned after their
timeout — ``abandoned_max`` of them (default: its concurrency), or one abandoned for
``abandoned_max_age_s`` — since Python cannot stop a thread. :meth:`Node.health` is
that view; with ``--health-port`` the node also answers ``/livez`` and ``/readyz``
(rexec/health.py) from what each process reports.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

import redis

from rexec.definitions import worker_types
from rexec.errors import ConfigurationError, ReplicationTimeoutError, safe_str
from rexec.executor.logs import banner, configure_logging, mask_url
from rexec.executor.process import worker_process_main
from rexec.health import HealthServer, Probe, ProcessHealth, ProcessState, liveness, readiness
from rexec.settings import WorkerSettings, load_app

log = logging.getLogger("rexec.node")

RESTART_BACKOFF_MAX_S = 5.0
WEDGED_AFTER_S = 60.0
WAITING_SAY_EVERY_S = 5.0


# Set by the lab tools that start nodes (demo, bench, chaos) to their own pid: such a node
# stops, as on SIGTERM, once that process is gone, instead of running on orphaned.
STOP_WITH_PARENT_ENV = "REXEC_STOP_WITH_PARENT"


def _parent_pid() -> int | None:
    value = os.environ.get(STOP_WITH_PARENT_ENV, "")
    return int(value) if value.isdigit() else None


class Node:
    def __init__(
        self,
        settings: WorkerSettings,
        *,
        problem: str | None = None,
        prepare: Callable[[Callable[[], bool]], bool] | None = None,
    ) -> None:
        # ``prepare(stopped)`` runs once the health endpoints answer and before any worker
        # process starts (waiting for Redis, deploying); False: stopped meanwhile.
        self._prepare = prepare
        self.node_id = settings.node_id or f"{socket.gethostname()}-{os.getpid()}"
        self.settings = dataclasses.replace(settings, node_id=self.node_id)
        self._context = multiprocessing.get_context("spawn")
        self._processes: dict[int, BaseProcess] = {}
        self._health: dict[int, ProcessHealth] = {}
        self._started: dict[int, float] = {}
        # A configuration error: the node reports not ready (and why) instead of exiting
        # and being restarted in a loop by its orchestrator.
        self.problem = problem
        self._beat = time.monotonic()  # the supervisor loop's own beat, for /livez
        self._restarts: dict[int, int] = {}
        self._recycling: dict[int, float] = {}  # index -> when it was asked to stop
        self._signals = 0
        self._asked_to_stop: set[int] = set()  # workers that were running at the signal
        self.restarted = 0
        self.abandoned_max = settings.abandoned_max or settings.concurrency
        self._parent = _parent_pid()

    def _serve_metrics(self, port: int) -> None:
        # Read from Redis like the cockpit does: the runtime never imports it.
        from rexec.prometheus import serve_metrics

        app = load_app(self.settings)
        server = serve_metrics(app, port, host=self.settings.metrics_host, node=self.node_id)
        log.info("node %s: Prometheus metrics on port %d", self.node_id, server.port)

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
        self._health[index] = health
        self._started[index] = time.monotonic()
        self._recycling.pop(index, None)

    def _serve_health(self, host: str, port: int) -> HealthServer:
        try:
            server = HealthServer(host, port, live=self.live, ready=self.ready).start()
        except OSError as exc:
            raise ConfigurationError(f"cannot serve health on {host}:{port}: {exc}") from exc
        log.info("node %s: health on %s:%d (/livez, /readyz)", self.node_id, host, server.port)
        return server

    def _states(self) -> list[ProcessState]:
        return [
            self._health[index].state(
                index, alive=process.is_alive(), started_s=self._started[index]
            )
            for index, process in sorted(self._processes.items())
        ]

    def live(self) -> Probe:
        return liveness(self._states(), supervisor_beat_s=self._beat, now_s=time.monotonic())

    def ready(self) -> Probe:
        return readiness(self._states(), stopping=self._signals > 0, problem=self.problem)

    def health(self) -> list[dict[str, Any]]:
        """Per worker process: alive, seconds since its last beat, abandoned handlers,
        and whether it is wedged (alive but not beating)."""
        now = time.monotonic()
        report = []
        for index, process in sorted(self._processes.items()):
            beat = self._health[index].last_beat() or self._started[index]
            abandoned, oldest = self._health[index].abandoned()
            age = max(0.0, now - beat)
            report.append(
                {
                    "index": index,
                    "pid": process.pid,
                    "alive": process.is_alive(),
                    "beat_age_s": round(age, 3),
                    "abandoned": int(abandoned),
                    "oldest_abandoned_s": round(oldest, 1),
                    "wedged": process.is_alive() and age > WEDGED_AFTER_S,
                }
            )
        return report

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

    def _watch_parent(self) -> None:
        """Stops the node, as SIGTERM would, once the lab tool that started it is gone."""
        if self._parent is not None and self._signals == 0 and os.getppid() != self._parent:
            log.warning(
                "node %s: the process that started it (pid %d) is gone; stopping",
                self.node_id,
                self._parent,
            )
            self._on_signal(signal.SIGTERM, None)

    def _check(self, index: int, process: BaseProcess) -> None:
        """Recycles a live process with too many abandoned handlers; kills a wedged one."""
        beat = self._health[index].last_beat() or self._started[index]
        abandoned, oldest = self._health[index].abandoned()
        now = time.monotonic()
        if index in self._recycling:
            grace = self.settings.shutdown_timeout_s + 10.0
            if now - self._recycling[index] > grace and process.pid is not None:
                os.kill(process.pid, signal.SIGKILL)
            return
        if now - beat > WEDGED_AFTER_S and process.pid is not None:
            log.error(
                "node %s: worker %d (pid %s) has not beaten for %.0f s; killing it",
                self.node_id, index, process.pid, now - beat,
            )  # fmt: skip
            self._recycling[index] = now
            os.kill(process.pid, signal.SIGKILL)
        elif abandoned >= self.abandoned_max or (
            abandoned and oldest > self.settings.abandoned_max_age_s
        ):
            log.warning(
                "node %s: worker %d (pid %s) holds %d handler(s) abandoned after their"
                " timeout (oldest %.0f s); recycling it",
                self.node_id, index, process.pid, int(abandoned), oldest,
            )  # fmt: skip
            self._recycling[index] = now
            if process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        health = None
        if self.settings.health_port is not None:
            health = self._serve_health(self.settings.health_host, self.settings.health_port)
        if self.problem is None and self._prepare is not None:
            # not ready meanwhile, and says why
            self.problem = f"waiting for Redis at {mask_url(self.settings.redis_url or '')}"
            try:
                prepared = self._prepare(self._tick)
            except ConfigurationError as exc:
                if health is None:
                    raise
                self.problem = str(exc)
            else:
                self.problem = None
                if not prepared:
                    if health is not None:
                        health.close()
                    return 0
        if self.problem is not None:
            return self._wait_not_ready(health)
        if self.settings.metrics_port is not None:
            self._serve_metrics(self.settings.metrics_port)
        for index in range(self.settings.processes):
            self._start(index)
        next_restart: dict[int, float] = {}
        while self._signals == 0:
            time.sleep(0.1)
            self._beat = time.monotonic()
            self._watch_parent()
            for index, process in list(self._processes.items()):
                if self._signals:
                    break
                if process.is_alive():
                    self._check(index, process)
                    continue
                if index not in next_restart:
                    count = self._restarts.get(index, 0)
                    recycled = index in self._recycling
                    delay = 0.0 if recycled else min(RESTART_BACKOFF_MAX_S, 0.1 * 2**count)
                    next_restart[index] = time.monotonic() + delay
                    log.warning(
                        "node %s: worker %d (pid %s) %s with exit code %s; restarting in %.1fs",
                        self.node_id,
                        index,
                        process.pid,
                        "was recycled" if recycled else "died",
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

    def _tick(self) -> bool:
        """The supervisor's beat while it waits before starting processes; True once
        it has been signalled to stop."""
        self._beat = time.monotonic()
        self._watch_parent()
        return self._signals > 0

    def _killed_while_starting(self, index: int, process: BaseProcess) -> bool:
        """A process our SIGTERM reached before it had its handler held no job yet."""
        return process.exitcode == -signal.SIGTERM and not self._health[index].handles_signals()

    def _wait_not_ready(self, health: HealthServer | None) -> int:
        """A node that cannot work as configured: says why once, reports not ready (and
        live) until stopped, then exits 1. An orchestrator shows it as not ready."""
        log.error("node %s: not ready: %s", self.node_id, self.problem)
        while self._signals == 0:
            time.sleep(0.1)
            self._beat = time.monotonic()
            self._watch_parent()
        if health is not None:
            health.close()
        return 1


def wait_for_redis(
    client: redis.Redis | Callable[[], redis.Redis],
    url: str,
    timeout_s: float | None,
    stopped: Callable[[], bool] = lambda: False,
) -> bool:
    """Blocks until Redis answers, saying so every few seconds; containers may start
    before Redis. Raises ConfigurationError on bad credentials at once, and when
    ``timeout_s`` passes; returns False if ``stopped()`` turns true meanwhile."""
    started = time.monotonic()
    said = started
    while not stopped():
        try:
            # A callable makes the client in the loop: a cluster client connects when
            # it is made, and a cluster that is not up yet is waited for too.
            (client() if callable(client) else client).ping()
            if time.monotonic() - started > 1.0:
                log.info("Redis at %s answers now", mask_url(url))
            return True
        except redis.AuthenticationError as exc:
            # Wrong credentials do not heal by retrying: say so and stop.
            raise ConfigurationError(f"Redis refused the credentials in the URL: {exc}") from exc
        except redis.RedisError as exc:
            waited = time.monotonic() - started
            if timeout_s is not None and waited >= timeout_s:
                raise ConfigurationError(
                    f"Redis at {mask_url(url)} unreachable for {waited:.0f} s"
                    f" (--connect-timeout {timeout_s:g}): {safe_str(exc)}"
                ) from exc
            if waited < 0.5 or time.monotonic() - said >= WAITING_SAY_EVERY_S:
                said = time.monotonic()
                log.warning(
                    "waiting for Redis at %s (%s)%s",
                    mask_url(url),
                    safe_str(exc),
                    "" if timeout_s is None else f"; giving up after {timeout_s:g} s",
                )
            time.sleep(0.5)
    return False


def run_node(settings: WorkerSettings) -> int:
    """Runs a node until it is signalled to stop; returns the exit code."""
    configure_logging(settings.log_level, settings.log_format)
    app = load_app(settings)  # fail fast on a bad APP, and pin the embedded Redis URL
    worker_types(app.definitions, settings.types)  # refuses --types the app cannot run
    node_id = settings.node_id or f"{socket.gethostname()}-{os.getpid()}"
    settings = dataclasses.replace(settings, node_id=node_id)
    try:
        settings = dataclasses.replace(
            settings,
            redis_url=app.resolved_url(),
            namespace=app.namespace,
            durability=app.durability,
            replication_timeout_ms=app.replication_timeout_ms,
        )
        for line in banner(app, settings, node_id):
            log.info("%s", line)
    except ConfigurationError as exc:
        app.close()
        if settings.health_port is None:
            raise
        return Node(settings, problem=str(exc)).run()  # no crash loop: not ready, and why

    def prepare(stopped: Callable[[], bool]) -> bool:
        url = settings.redis_url or ""
        if not wait_for_redis(lambda: app.client, url, settings.connect_timeout_s, stopped):
            return False
        # The app's job definitions go into the store before any of its jobs runs.
        try:
            log.info("deployed job definitions: %s", app.deploy())
        except ReplicationTimeoutError as exc:
            log.warning("deployed job definitions, not confirmed by a replica: %s", exc)
        return True

    try:
        return Node(settings, prepare=prepare).run()
    finally:
        app.close()


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
