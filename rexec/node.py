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
from rexec.settings import WorkerSettings, load_app
from rexec.worker import worker_process_main

log = logging.getLogger("rexec.node")

RESTART_BACKOFF_MAX_S = 5.0


class Node:
    def __init__(self, settings: WorkerSettings) -> None:
        self.node_id = settings.node_id or f"{socket.gethostname()}-{os.getpid()}"
        self.settings = dataclasses.replace(settings, node_id=self.node_id)
        self._context = multiprocessing.get_context("spawn")
        self._processes: dict[int, BaseProcess] = {}
        self._restarts: dict[int, int] = {}
        self._signals = 0
        self._asked_to_stop: set[int] = set()  # workers that were running at the signal
        self.restarted = 0

    def _serve_metrics(self, port: int) -> None:
        # Read from Redis like the cockpit does: the runtime never imports it.
        from rexec.prometheus import serve_metrics

        app = load_app(self.settings)
        # ops13: loopback unless --metrics-host (then a token from REXEC_METRICS_TOKEN)
        server = serve_metrics(app, port, host=self.settings.metrics_host, node=self.node_id)
        log.info("node %s: Prometheus metrics on port %d", self.node_id, server.port)

    def _start(self, index: int) -> None:
        process = self._context.Process(
            target=worker_process_main,
            args=(self.settings, index, self.node_id),
            name=f"rexec-worker-{index}",
            daemon=False,
        )
        process.start()
        self._processes[index] = process

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
        for process in self._processes.values():
            if process.is_alive():
                process.kill()
                process.join(5)
                code = 1
            elif (
                process.exitcode not in (0, None)
                and self._signals == 1
                and process.pid in self._asked_to_stop
            ):
                # A worker that was asked to stop and failed to; one that had died before
                # the signal (and waited for its restart) does not make the stop unclean.
                code = 1
        log.info("node %s: stopped", self.node_id)
        return code


def run_node(settings: WorkerSettings) -> int:
    """Runs a node until it is signalled to stop; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app = load_app(settings)  # fail fast on a bad APP, and pin the embedded Redis URL
    settings = dataclasses.replace(settings, redis_url=app.resolved_url(), namespace=app.namespace)
    worker_types(app.definitions, settings.types)  # refuses --types the app cannot run
    try:
        app.client.ping()
        # The app's job definitions go into the store before any of its jobs runs.
        log.info("deployed job definitions: %s", app.deploy())
    except redis.AuthenticationError as exc:
        # Wrong credentials do not heal by retrying: say so and stop (an unreachable
        # Redis, by contrast, is waited for by the workers' backoff).
        raise ConfigurationError(f"Redis refused the credentials in the URL: {exc}") from exc
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
