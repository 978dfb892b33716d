"""Health endpoints for orchestrators: ``/livez`` and ``/readyz`` on a small HTTP server.

The server knows nothing of workers: it is given two callables that each return a
:class:`Probe` (healthy or not, and why not) and answers 200 or 503 with a short JSON
body. A callable that raises answers 503 with the error, never a crash.

The node supervisor (``rexec worker --health-port``) feeds it from :class:`ProcessHealth`,
a few numbers in shared memory that each worker process keeps up to date (its heartbeat,
whether it reaches Redis, has registered its job types, is acquiring, has wedged slots);
:func:`liveness` and :func:`readiness` turn them into probes.

``python -m rexec.health [livez|readyz]`` asks the node on this machine (the port from
``REXEC_HEALTH_PORT``) and exits 0 when it answers 200: the image's ``HEALTHCHECK``.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import multiprocessing
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8081  # what the image's HEALTHCHECK asks when REXEC_HEALTH_PORT is unset
PORT_ENV = "REXEC_HEALTH_PORT"
# A worker process whose heartbeat (its housekeeping thread, which ticks at least once a
# second) is older than this is stuck; one that has not beaten yet gets the start grace.
STALE_AFTER_S = 15.0
START_GRACE_S = 60.0
SUPERVISOR_STALE_AFTER_S = 10.0


@dataclass(frozen=True, slots=True)
class Probe:
    """The answer of one health check: ok, or the reasons it is not."""

    ok: bool
    reasons: tuple[str, ...] = ()

    @classmethod
    def of(cls, reasons: Sequence[str]) -> Probe:
        return cls(not reasons, tuple(reasons))


# -- what a worker process reports --------------------------------------------------------

_BEAT, _REDIS_OK, _REGISTERED, _ACQUIRING, _WEDGED, _SIGNALS, _ABANDONED, _OLDEST = range(8)


class ProcessHealth:
    """What one worker process reports to its supervisor, in shared memory.

    The worker writes (each field from one thread), the supervisor reads; plain doubles,
    so no lock is needed. Made fresh for every start of a process, handed over as an
    argument of the spawned process.
    """

    def __init__(self, context: BaseContext | None = None) -> None:
        ctx = context or multiprocessing.get_context("spawn")
        self._values: Any = ctx.RawArray("d", 8)
        self._values[_BEAT] = 0.0

    def beat(self) -> None:
        self._values[_BEAT] = time.monotonic()

    def set_redis_ok(self, ok: bool) -> None:
        self._values[_REDIS_OK] = 1.0 if ok else 0.0

    def set_registered(self) -> None:
        self._values[_REGISTERED] = 1.0
        self._values[_REDIS_OK] = 1.0

    def set_acquiring(self, acquiring: bool) -> None:
        self._values[_ACQUIRING] = 1.0 if acquiring else 0.0

    def set_wedged(self, slots: int) -> None:
        self._values[_WEDGED] = float(slots)

    def set_abandoned(self, count: int, oldest_s: float) -> None:
        """Handlers abandoned after their timeout, and how long the oldest has run."""
        self._values[_ABANDONED] = float(count)
        self._values[_OLDEST] = oldest_s

    def abandoned(self) -> tuple[int, float]:
        return int(self._values[_ABANDONED]), float(self._values[_OLDEST])

    def last_beat(self) -> float:
        """Monotonic time of the last beat (0: none yet)."""
        return float(self._values[_BEAT])

    def set_handles_signals(self) -> None:
        self._values[_SIGNALS] = 1.0

    def handles_signals(self) -> bool:
        """Whether the process has its SIGTERM handler (before, SIGTERM kills it)."""
        return bool(self._values[_SIGNALS])

    def state(self, index: int, *, alive: bool, started_s: float) -> ProcessState:
        v = self._values
        return ProcessState(
            index=index,
            alive=alive,
            started_s=started_s,
            beat_s=v[_BEAT] or None,
            redis_ok=bool(v[_REDIS_OK]),
            registered=bool(v[_REGISTERED]),
            acquiring=bool(v[_ACQUIRING]),
            wedged_slots=int(v[_WEDGED]),
        )


@dataclass(frozen=True, slots=True)
class ProcessState:
    """A snapshot of one worker process, as its supervisor sees it (monotonic seconds)."""

    index: int
    alive: bool
    started_s: float
    beat_s: float | None = None
    redis_ok: bool = False
    registered: bool = False
    acquiring: bool = False
    wedged_slots: int = 0


def liveness(processes: Sequence[ProcessState], *, supervisor_beat_s: float, now_s: float) -> Probe:
    """Live: the supervisor loop turns, every worker process runs and beats, no slot is
    wedged. Redis being away is not a liveness failure: restarting would not help."""
    reasons: list[str] = []
    if now_s - supervisor_beat_s > SUPERVISOR_STALE_AFTER_S:
        reasons.append(f"supervisor loop stalled for {now_s - supervisor_beat_s:.0f} s")
    for p in processes:
        if not p.alive:
            reasons.append(f"worker {p.index} is not running")
        elif p.beat_s is None:
            if now_s - p.started_s > START_GRACE_S:
                reasons.append(f"worker {p.index} has not started in {START_GRACE_S:.0f} s")
        elif now_s - p.beat_s > STALE_AFTER_S:
            reasons.append(f"worker {p.index} heartbeat is {now_s - p.beat_s:.0f} s old")
        if p.alive and p.wedged_slots:
            reasons.append(
                f"worker {p.index} has {p.wedged_slots} wedged slot(s): jobs still running"
                " long after their timeout"
            )
    return Probe.of(reasons)


def readiness(processes: Sequence[ProcessState], *, stopping: bool, problem: str | None) -> Probe:
    """Ready: no configuration problem, not stopping, and every worker process has
    reached Redis, registered its job types and is acquiring."""
    if problem is not None:
        return Probe(False, (problem,))
    if stopping:
        return Probe(False, ("stopping",))
    reasons: list[str] = []
    for p in processes:
        if not p.alive:
            reasons.append(f"worker {p.index} is not running")
        elif not p.redis_ok:
            reasons.append(f"worker {p.index} is not connected to Redis")
        elif not p.registered:
            reasons.append(f"worker {p.index} has not registered its job types")
        elif not p.acquiring:
            reasons.append(f"worker {p.index} is not acquiring")
    return Probe.of(reasons)


# -- the server -----------------------------------------------------------------------------


class HealthServer:
    """``GET /livez`` and ``GET /readyz`` (also ``HEAD``) on ``host:port``, in a thread."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        live: Callable[[], Probe],
        ready: Callable[[], Probe],
    ) -> None:
        checks = {"/livez": live, "/readyz": ready}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer(body=True)

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def _answer(self, *, body: bool) -> None:
                check = checks.get(self.path.split("?", 1)[0])
                if check is None:
                    status, payload = 404, {"status": "not found", "paths": sorted(checks)}
                else:
                    try:
                        probe = check()
                    except Exception as exc:
                        probe = Probe(False, (f"check failed: {type(exc).__name__}: {exc}",))
                    status = 200 if probe.ok else 503
                    payload = {"status": "ok" if probe.ok else "fail"}
                    if probe.reasons:
                        payload["reasons"] = list(probe.reasons)
                data = json.dumps(payload).encode() + b"\n"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # probes every few seconds would drown the node's log

        self._server = http.server.ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="rexec-health", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# -- the probe client (the image's HEALTHCHECK) ---------------------------------------------


def probe(path: str, port: int, host: str = DEFAULT_HOST, timeout_s: float = 3.0) -> Probe:
    """Asks a health endpoint; any failure to get a 200 is a failed probe."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=timeout_s) as resp:
            return Probe(resp.status == 200)
    except urllib.error.HTTPError as exc:
        with contextlib.suppress(Exception):
            reasons = tuple(json.loads(exc.read()).get("reasons", ()))
            return Probe(False, reasons or (f"HTTP {exc.code}",))
        return Probe(False, (f"HTTP {exc.code}",))
    except (OSError, ValueError) as exc:
        return Probe(False, (f"no answer from {host}:{port}: {exc}",))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    which = args[0] if args else "readyz"
    if which not in ("livez", "readyz"):
        print(f"usage: python -m rexec.health [livez|readyz] (got {which!r})", file=sys.stderr)
        return 2
    raw = os.environ.get(PORT_ENV) or str(DEFAULT_PORT)
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        print(f"{PORT_ENV}={raw!r} is not a port", file=sys.stderr)
        return 2
    result = probe(f"/{which}", int(raw))
    print(f"{which}: " + ("ok" if result.ok else "; ".join(result.reasons)))
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
