"""One worker process: its parts, wired together, started and stopped.

- the acquirer (the caller of :meth:`Worker.run`) locks jobs and hands them over;
- the slots run ``def`` handlers inline, the event loop ``async def`` ones;
- the committer writes outcomes to Redis in groups;
- the housekeeper enforces timeouts, renews locks, flushes metrics, beats.

Each part owns its state; executions move between them by hand-off.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from rexec.app import App
from rexec.errors import is_transient
from rexec.executor.acquirer import Acquirer
from rexec.executor.committer import Committer
from rexec.executor.event_loop import EventLoop
from rexec.executor.execution import Chain
from rexec.executor.housekeeper import Housekeeper
from rexec.executor.runtime import RedisHealth, Runtime
from rexec.executor.slots import Slots
from rexec.health import ProcessHealth
from rexec.settings import WorkerSettings

log = logging.getLogger("rexec.worker")

Beat = Callable[[float, int, float], None]


class Worker:
    """One worker process's engine. ``run()`` blocks until :meth:`stop` is called."""

    def __init__(
        self,
        app: App,
        settings: WorkerSettings,
        *,
        index: int = 0,
        node_id: str | None = None,
        beat: Beat | None = None,
        health: ProcessHealth | None = None,
    ) -> None:
        rt = self.rt = Runtime(app, settings, index, node_id)
        if health is not None:
            rt.health = health
        self.id = rt.id
        self.node_id = rt.node_id
        self.store = rt.store
        self.metrics = rt.metrics
        self.committer = Committer(rt)
        self.event_loop: EventLoop | None = None
        if rt.has_async:
            self.event_loop = EventLoop(
                rt, self.committer.submit, self.committer.give_back, self._to_slots
            )
        self.slots = Slots(
            rt,
            self.committer.submit,
            self.committer.give_back,
            self.event_loop.submit_one if self.event_loop else None,
        )
        self.info: dict[str, Any] = {
            "id": rt.id,
            "node": rt.node_id,
            "index": index,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "concurrency": settings.concurrency,
            "types": list(rt.types),
            "acquisition": settings.acquisition,
            "idle_level": 0,
            "backoff_level": 0,
        }
        self.housekeeper = Housekeeper(
            rt, self.slots, self.event_loop, self.committer, info=self.info, beat=beat
        )
        self.acquirer = Acquirer(rt, self._dispatch, self._saturated)
        self.strategy = self.acquirer.strategy
        self.housekeeper.strategy = self.strategy

    def _to_slots(self, chains: Sequence[Chain]) -> None:
        self.slots.submit(chains)

    def _dispatch(self, chains: Sequence[Chain]) -> None:
        """Per chain, by its first job's handler: ``def`` to the slots, ``async def``
        to the event loop (a chain changes hands later if its kinds mix)."""
        if self.event_loop is None:
            self.slots.submit(chains)
            return
        async_types = self.rt.async_types
        to_loop: list[Chain] = []
        to_slots: list[Chain] = []
        for chain in chains:
            (to_loop if chain.jobs[0].type in async_types else to_slots).append(chain)
        self.event_loop.submit(to_loop)
        if to_slots:
            self.slots.submit(to_slots)

    def _saturated(self, saturated: bool) -> None:
        self.housekeeper.saturated = saturated

    # -- lifecycle ------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop acquiring; running jobs finish, unstarted ones are given back."""
        self.rt.stopping.set()
        self.slots.stop()

    def run(self) -> int:
        self._announce()
        self.committer.thread.start()
        self.housekeeper.thread.start()
        if self.event_loop is not None:
            self.event_loop.thread.start()
        self.slots.start()
        self.rt.health.set_acquiring(True)
        try:
            self.acquirer.run()
        finally:
            self._shutdown()
        return 0

    def _shutdown(self) -> None:
        rt = self.rt
        deadline = time.monotonic() + rt.settings.shutdown_timeout_s
        rt.stopping.set()
        rt.health.set_acquiring(False)
        self.slots.stop()
        unstarted = self.acquirer.rejected + self.slots.take_all()
        if self.event_loop is not None:
            unstarted += self.event_loop.take_all()
        self.committer.give_back([job for chain in unstarted for job in chain.jobs])
        rt.capacity.give(len(unstarted) - len(self.acquirer.rejected))
        self.acquirer.rejected = []
        while time.monotonic() < deadline and self._busy():
            time.sleep(0.01)
        # The process leaves: a handler still abandoned goes with it, so the failures
        # that waited for one are committed now.
        self.committer.submit(rt.executions.release_all())
        self.committer.close()
        self.committer.thread.join(max(0.0, deadline - time.monotonic()) + 5.0)
        if self._busy() or len(rt.held):
            log.warning(
                "%s: %d job(s) still held at the shutdown deadline; their locks will"
                " expire and other workers will run them again",
                self.id,
                len(rt.held),
            )
        rt.abort.set()
        if self.event_loop is not None:
            self.event_loop.close()
        with contextlib.suppress(Exception):
            self.housekeeper.flush_metrics()
            if rt.settings.retire_on_stop:
                fold_metrics_on_clean_stop(self)
            pipe = self.store.client.pipeline(transaction=False)
            pipe.hdel(rt.keys.workers, self.id)
            pipe.zrem(rt.keys.heartbeats, self.id)
            pipe.execute()
        self.acquirer.wakeups.close()

    def _busy(self) -> bool:
        slots = sum(
            1
            for s in self.slots.slots()
            if s.thread is not None and s.thread.is_alive() and not s.waiting
        )
        loop = self.event_loop.busy() if self.event_loop else 0
        return slots + loop > 0

    def _announce(self) -> None:
        rt = self.rt
        with contextlib.suppress(Exception):
            rt.clock_offset_ms = rt.store.time_ms() - int(time.time() * 1000)
        self.info.update(started_ms=rt.now_ms(), idle_level=0, backoff_level=0)
        with contextlib.suppress(Exception):
            pipe = self.store.client.pipeline(transaction=False)
            pipe.hset(rt.keys.workers, self.id, orjson.dumps(self.info))
            pipe.zadd(rt.keys.heartbeats, {self.id: rt.now_ms()})
            pipe.execute()
            rt.health.set_registered()  # its types are where nodes and the cockpit read them


def fold_metrics_on_clean_stop(worker: Worker) -> None:
    """Folds a cleanly stopped worker's counters into the cluster totals and removes its
    fields, so the metrics hash does not grow with every worker that ever ran."""
    worker.store.retire_worker(worker.id)


def open_store_when_reachable(
    app: App, worker_id: str, health: ProcessHealth | None, max_wait_s: float = 2.0
) -> None:
    """Opens the app's store, waiting while Redis is away: opening reads the namespace's
    partition layout (rexec/partitions.py), and a worker started during an outage waits
    for Redis, saying so as its loops do (once), instead of dying."""
    redis_health = RedisHealth(worker_id, None if health is None else health.set_redis_ok)
    wait_s = 0.05
    while True:
        try:
            app.open_store()
        except Exception as exc:
            if not is_transient(exc):
                raise
            redis_health.down(exc)
            time.sleep(wait_s)
            wait_s = min(max_wait_s, wait_s * 2)
        else:
            redis_health.up()
            return


def worker_process_main(
    settings: WorkerSettings, index: int, node_id: str, health: ProcessHealth | None = None
) -> None:
    """Entry point of a worker process (spawned by the node supervisor). ``health`` is
    what the supervisor reads (rexec/health.py): heartbeat, abandoned handlers, Redis
    reachable, types registered, acquiring."""
    from rexec.executor.logs import configure_logging
    from rexec.settings import load_app

    configure_logging(settings.log_level, settings.log_format)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor handles Ctrl-C
    app = load_app(settings)
    open_store_when_reachable(app, f"{node_id}.{index}.{os.getpid()}", health)

    worker = Worker(app, settings, index=index, node_id=node_id, health=health)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    worker.rt.health.set_handles_signals()
    try:
        code = worker.run()
    finally:
        app.close()
    raise SystemExit(code)
