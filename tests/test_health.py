"""Worker health for orchestrators: ``rexec worker --health-port`` answers /livez and
/readyz. The server and the rules on their own, then a real node on a real Redis: ready
once it works, a wedged slot makes it not live, and bad configuration (no URL, Redis
unreachable, wrong password) makes it say why in one line and report not ready, alive,
instead of crash-looping."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from rexec import App
from rexec.health import (
    STALE_AFTER_S,
    START_GRACE_S,
    HealthServer,
    Probe,
    ProcessHealth,
    ProcessState,
    liveness,
    main,
    readiness,
)
from rexec.redis_server import RedisServer, RedisServerConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
WAIT_S = 60.0


def get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the server ------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[Callable[..., HealthServer]]:
    started: list[HealthServer] = []

    def start(live: Callable[[], Probe], ready: Callable[[], Probe]) -> HealthServer:
        s = HealthServer("127.0.0.1", 0, live=live, ready=ready).start()
        started.append(s)
        return s

    yield start
    for s in started:
        s.close()


def test_server_answers_200_or_503_with_the_reasons(
    server: Callable[..., HealthServer],
) -> None:
    s = server(lambda: Probe(True), lambda: Probe(False, ("worker 0 is not connected to Redis",)))
    base = f"http://127.0.0.1:{s.port}"
    assert get(base + "/livez") == (200, {"status": "ok"})
    assert get(base + "/readyz") == (
        503,
        {"status": "fail", "reasons": ["worker 0 is not connected to Redis"]},
    )
    assert get(base + "/readyz?verbose")[0] == 503
    status, body = get(base + "/metrics")
    assert status == 404 and body["paths"] == ["/livez", "/readyz"]
    head = urllib.request.Request(base + "/livez", method="HEAD")
    with urllib.request.urlopen(head, timeout=5) as resp:
        assert resp.status == 200 and resp.read() == b""


def test_a_check_that_raises_is_a_503_not_a_crash(server: Callable[..., HealthServer]) -> None:
    def broken() -> Probe:
        raise RuntimeError("state unreadable")

    s = server(broken, lambda: Probe(True))
    status, body = get(f"http://127.0.0.1:{s.port}/livez")
    assert status == 503
    assert body["reasons"] == ["check failed: RuntimeError: state unreadable"]
    assert get(f"http://127.0.0.1:{s.port}/readyz")[0] == 200  # and the server goes on


def test_probe_client_exit_codes(
    server: Callable[..., HealthServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    s = server(lambda: Probe(True), lambda: Probe(False, ("stopping",)))
    monkeypatch.setenv("REXEC_HEALTH_PORT", str(s.port))
    assert main(["livez"]) == 0
    assert main(["readyz"]) == 1
    assert main(["nonsense"]) == 2
    monkeypatch.setenv("REXEC_HEALTH_PORT", "http")
    assert main(["livez"]) == 2
    monkeypatch.setenv("REXEC_HEALTH_PORT", str(free_port()))  # nobody listens
    assert main(["livez"]) == 1


# -- the rules ---------------------------------------------------------------------------------


def state(**fields: object) -> ProcessState:
    values: dict[str, object] = {
        "index": 0,
        "alive": True,
        "started_s": 100.0,
        "beat_s": 100.0,
        "redis_ok": True,
        "registered": True,
        "acquiring": True,
    }
    values.update(fields)
    return ProcessState(**values)  # type: ignore[arg-type]


def test_liveness_rules() -> None:
    def live(*states: ProcessState, now: float = 101.0, beat: float | None = None) -> Probe:
        return liveness(states, supervisor_beat_s=now if beat is None else beat, now_s=now)

    assert live(state(), state(index=1)).ok
    assert live(state(redis_ok=False, registered=False, acquiring=False)).ok  # Redis is away
    assert live(state(alive=False)).reasons == ("worker 0 is not running",)
    stale = live(state(beat_s=100.0), now=100.0 + STALE_AFTER_S + 1)
    assert not stale.ok and "heartbeat" in stale.reasons[-1]
    assert live(state(beat_s=None), now=100.0 + START_GRACE_S - 1).ok
    assert not live(state(beat_s=None), now=100.0 + START_GRACE_S + 1).ok
    assert "wedged" in live(state(wedged_slots=1)).reasons[0]
    assert "supervisor" in live(state(), now=200.0, beat=101.0).reasons[0]


def test_readiness_rules() -> None:
    assert readiness([state(), state(index=1)], stopping=False, problem=None).ok
    assert readiness([], stopping=False, problem="no Redis URL").reasons == ("no Redis URL",)
    assert readiness([state()], stopping=True, problem=None).reasons == ("stopping",)
    cases = {
        "worker 1 is not running": state(index=1, alive=False),
        "worker 1 is not connected to Redis": state(index=1, redis_ok=False),
        "worker 1 has not registered its job types": state(index=1, registered=False),
        "worker 1 is not acquiring": state(index=1, acquiring=False),
    }
    for reason, bad in cases.items():
        assert readiness([state(), bad], stopping=False, problem=None).reasons == (reason,)


def test_process_health_reads_back_what_was_written() -> None:
    health = ProcessHealth()
    fresh = health.state(3, alive=True, started_s=1.0)
    assert (fresh.beat_s, fresh.redis_ok, fresh.registered, fresh.acquiring) == (
        None,
        False,
        False,
        False,
    )
    health.beat()
    health.set_registered()
    health.set_acquiring(True)
    health.set_wedged(2)
    s = health.state(3, alive=True, started_s=1.0)
    assert s.beat_s is not None and s.redis_ok and s.registered and s.acquiring
    assert s.wedged_slots == 2
    health.set_redis_ok(False)
    assert not health.state(3, alive=True, started_s=1.0).redis_ok


# -- a real node -------------------------------------------------------------------------------


class Node:
    def __init__(self, proc: subprocess.Popen[str], port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log

    def get(self, path: str) -> tuple[int, dict[str, object]]:
        return get(f"http://127.0.0.1:{self.port}{path}")

    def wait_for(
        self, path: str, want: Callable[[int, dict[str, object]], bool]
    ) -> dict[str, object]:
        deadline = time.monotonic() + WAIT_S
        last: tuple[int, dict[str, object]] | None = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"node exited {self.proc.returncode}:\n{self.output()}"
            try:
                last = self.get(path)
            except OSError:
                last = None  # not listening yet
            if last is not None and want(*last):
                return last[1]
            time.sleep(0.1)
        pytest.fail(f"{path} never matched; last answer {last}\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            raise


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[Callable[..., Node]]:
    nodes: list[Node] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Node:
        port = free_port()
        log = tmp_path / f"node-{len(nodes)}.log"
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("REXEC_")}
        with open(log, "w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "rexec", "worker", "tests.apps.recording:app",
                 "--health-port", str(port), "--processes", "2", "--concurrency", "2",
                 "--shutdown-timeout", "5", *args],
                stdout=out, stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT,
                env={**base_env, "PYTHONPATH": str(REPO_ROOT), **(env or {})},
                start_new_session=True,
            )  # fmt: skip
        node = Node(proc, port, log)
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        if node.proc.poll() is None:
            os.killpg(node.proc.pid, signal.SIGKILL)
            node.proc.wait(10)


def ok(status: int, body: dict[str, object]) -> bool:
    return status == 200


@pytest.mark.slow
def test_node_is_ready_when_working_and_a_wedged_slot_makes_it_not_live(
    start_node: Callable[..., Node], redis_url: str, namespace: str
) -> None:
    # 4 slots: the 2 executions of `hang` (its retry cycle) stay under the number of
    # abandoned handlers that makes the supervisor recycle the process.
    node = start_node(
        "--redis-url", redis_url, "--namespace", namespace, "--lock-ms", "1000",
        "--concurrency", "4",
    )  # fmt: skip
    node.wait_for("/readyz", ok)
    assert node.get("/livez") == (200, {"status": "ok"})
    # `hang` sleeps its payload's seconds under a 300 ms timeout: the slot is abandoned
    # at 0.3 s and counts as wedged a lock time (1 s) later, while it still runs.
    with App(redis_url, namespace=namespace) as app:
        app.enqueue("hang", 6)
    body = node.wait_for("/livez", lambda status, body: status == 503)
    assert any("wedged slot" in r for r in body["reasons"]), body  # type: ignore[attr-defined]
    assert node.get("/readyz")[0] == 200  # still acquiring with its other slots
    assert node.stop() == 0, node.output()


@pytest.mark.slow
def test_node_not_ready_while_redis_is_away_and_ready_again_after(
    start_node: Callable[..., Node], namespace: str
) -> None:
    port = free_port()
    server = RedisServer(RedisServerConfig(port=port)).start()
    try:
        node = start_node("--redis-url", server.url, "--namespace", namespace)
        node.wait_for("/readyz", ok)
        server.stop()
        body = node.wait_for("/readyz", lambda status, body: status == 503)
        assert any("not connected to Redis" in r for r in body["reasons"]), body  # type: ignore[attr-defined]
        assert node.get("/livez")[0] == 200  # restarting would not bring Redis back
        server = RedisServer(RedisServerConfig(port=port)).start()
        node.wait_for("/readyz", ok)
        assert node.stop() == 0, node.output()
    finally:
        server.stop()


def bad_config_line(node: Node) -> str:
    lines = [line for line in node.output().splitlines() if "not ready:" in line]
    assert len(lines) == 1, node.output()
    assert "Traceback" not in node.output()
    return lines[0]


@pytest.mark.slow
def test_no_redis_url_in_a_container_is_one_line_and_not_ready(
    start_node: Callable[..., Node],
) -> None:
    node = start_node(env={"REXEC_EMBEDDED_REDIS": "off"})
    body = node.wait_for("/readyz", lambda status, body: status == 503 and "reasons" in body)
    assert "set REXEC_REDIS_URL" in body["reasons"][0]  # type: ignore[index]
    assert node.get("/livez")[0] == 200  # alive: no crash loop, the orchestrator shows why
    time.sleep(0.5)
    assert "set REXEC_REDIS_URL" in bad_config_line(node)
    assert node.stop() == 1


def test_no_redis_url_without_health_port_is_a_clear_error() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REXEC_")}
    result = subprocess.run(
        [sys.executable, "-m", "rexec", "worker", "tests.apps.recording:app"],
        capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, check=False,
        env={**env, "PYTHONPATH": str(REPO_ROOT), "REXEC_EMBEDDED_REDIS": "off"},
    )  # fmt: skip
    assert result.returncode == 1
    assert "set REXEC_REDIS_URL" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_unreachable_redis_is_not_ready_and_says_so(
    start_node: Callable[..., Node], namespace: str
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    node = start_node("--redis-url", url, "--namespace", namespace)
    # The node waits for Redis before it starts its worker processes, and says so.
    body = node.wait_for("/readyz", lambda status, body: "waiting for Redis" in str(body))
    assert body["status"] == "fail"
    deadline = time.monotonic() + WAIT_S
    while "waiting for Redis at" not in node.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "waiting for Redis at" in node.output()
    assert node.get("/livez")[0] == 200
    assert node.get("/readyz")[0] == 503
    assert node.stop() == 0, node.output()


@pytest.mark.slow
def test_wrong_password_is_one_line_and_not_ready(
    start_node: Callable[..., Node], namespace: str
) -> None:
    with RedisServer(RedisServerConfig(password="right")) as server:
        conn = redis.Redis.from_url(server.url)
        assert conn.ping()
        conn.close()
        url = f"redis://:wrong@127.0.0.1:{server.port}/0"
        node = start_node("--redis-url", url, "--namespace", namespace)
        # Not ready at first because it is still connecting, then because of the password.
        body = node.wait_for(
            "/readyz",
            lambda status, body: status == 503 and "credentials" in str(body.get("reasons")),
        )
        assert "refused the credentials" in body["reasons"][0]  # type: ignore[index]
        assert node.get("/livez")[0] == 200
        assert "refused the credentials" in bad_config_line(node)
        assert "wrong" not in bad_config_line(node)  # the password is not logged
        assert node.stop() == 1


def test_a_health_port_in_use_is_a_clear_error(redis_url: str, namespace: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REXEC_")}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = subprocess.run(
            [sys.executable, "-m", "rexec", "worker", "tests.apps.recording:app",
             "--redis-url", redis_url, "--namespace", namespace,
             "--health-port", str(taken.getsockname()[1])],
            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, check=False,
            env={**env, "PYTHONPATH": str(REPO_ROOT)},
        )  # fmt: skip
    assert result.returncode == 1
    assert "cannot serve health on 127.0.0.1:" in result.stderr
    assert "Traceback" not in result.stderr
