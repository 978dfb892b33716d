"""The embedded Redis: what rexec uses when no Redis URL is configured.

One ``redis-server`` per user on this machine, on a Unix socket in rexec's state
directory, started on first use and left running (with an append-only file) so that
every ``rexec`` command and every ``App()`` of this user sees the same jobs.
``rexec embedded stop`` shuts it down. ``rexec demo`` uses a private server instead.
``REXEC_EMBEDDED_REDIS=off`` (set in the container image) turns it off: where every
container would get a private Redis of its own, a missing URL must be an error.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import subprocess
import time
from pathlib import Path

import redis

from rexec.errors import ConfigurationError
from rexec.redis_server import RedisServerError, find_redis_server

MAX_SOCKET_PATH = 100
SWITCH_ENV = "REXEC_EMBEDDED_REDIS"


def state_dir() -> Path:
    """``$REXEC_HOME``, else ``$XDG_STATE_HOME/rexec``, else ``~/.local/state/rexec``."""
    home = os.environ.get("REXEC_HOME")
    if home:
        return Path(home)
    xdg = os.environ.get("XDG_STATE_HOME")
    return Path(xdg) / "rexec" if xdg else Path.home() / ".local" / "state" / "rexec"


def socket_path() -> Path:
    path = state_dir() / "redis.sock"
    if len(str(path)) > MAX_SOCKET_PATH:  # Unix sockets have a short path limit
        path = Path(f"/tmp/rexec-{os.getuid()}") / "redis.sock"
    return path


def private_dir(path: Path) -> Path:
    """Creates ``path`` (mode 0700) or checks the one there: a directory of this user,
    not a symlink, and closed to others (tightened to 0700 if it is not). Refuses a
    folder someone else owns, such as a ``/tmp`` name another user created first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise ConfigurationError(f"refusing to use {path} for the embedded Redis: not a directory")
    if info.st_uid != os.getuid():
        raise ConfigurationError(
            f"refusing to use {path} for the embedded Redis: it belongs to uid {info.st_uid},"
            f" not to this user (uid {os.getuid()}); remove it or set REXEC_HOME"
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o700)
    return path


def _tighten(data: Path) -> None:
    """Makes the files an older rexec left in the state folder private (0600/0700)."""
    for root, dirs, files in os.walk(data):
        for name in dirs:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(root, name), 0o700)
        for name in files:
            full = os.path.join(root, name)
            with contextlib.suppress(OSError):
                if not os.path.islink(full) and not stat.S_ISSOCK(os.lstat(full).st_mode):
                    os.chmod(full, 0o600)


def running_server_url() -> str | None:
    """The URL of the embedded Redis if it is running; never starts it."""
    sock = socket_path()
    return f"unix://{sock}" if _answers(sock) else None


def _answers(path: Path) -> bool:
    if not path.exists():
        return False
    client = redis.Redis(unix_socket_path=str(path), socket_timeout=1.0)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def shared_server_url(timeout_s: float = 10.0) -> str:
    """The URL of the embedded Redis, starting it if it is not running."""
    if os.environ.get(SWITCH_ENV, "").strip().lower() in ("off", "0", "no", "false"):
        raise ConfigurationError(
            f"no Redis URL configured: set REXEC_REDIS_URL (or --redis-url); the embedded"
            f" Redis is off here ({SWITCH_ENV}={os.environ[SWITCH_ENV]})"
        )
    sock = socket_path()
    url = f"unix://{sock}"
    if _answers(sock):
        return url
    data = private_dir(state_dir())
    private_dir(sock.parent)
    _tighten(data)
    fd = os.open(data / "start.lock", os.O_WRONLY | os.O_CREAT, 0o600)
    with open(fd, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two commands starting at once start one server
        if _answers(sock):
            return url
        try:
            binary = find_redis_server()
        except RedisServerError as exc:
            raise ConfigurationError(
                f"no Redis URL configured and no embedded Redis available: {exc}"
            ) from exc
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        try:
            _daemonize(binary, sock, data)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise ConfigurationError(
                f"the embedded Redis ({binary}) failed to start: {exc}; see {data / 'redis.log'}"
            ) from exc
        deadline = time.monotonic() + timeout_s
        while not _answers(sock):
            if time.monotonic() > deadline:
                raise ConfigurationError(
                    f"the embedded Redis did not start; see {data / 'redis.log'}"
                )
            time.sleep(0.05)
    return url


def _daemonize(binary: str, sock: Path, data: Path) -> None:
    subprocess.run(
        [
            binary,
            "--daemonize", "yes",
            "--port", "0",
            "--unixsocket", str(sock),
            "--unixsocketperm", "700",
            "--dir", str(data),
            "--appendonly", "yes",
            "--save", "",
            "--pidfile", str(data / "redis.pid"),
            "--logfile", str(data / "redis.log"),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        umask=0o077,  # its append-only files, log and pid file: this user only
    )  # fmt: skip


def stop_shared_server() -> bool:
    """Shuts the embedded Redis down (saving its data); False if it was not running."""
    sock = socket_path()
    if not _answers(sock):
        return False
    client = redis.Redis(unix_socket_path=str(sock))
    try:
        client.shutdown(nosave=False)
    except redis.ConnectionError:
        pass  # the server closes the connection as it goes down
    finally:
        client.close()
    return True
