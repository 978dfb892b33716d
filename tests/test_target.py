"""Where an operator command reads: the resolution order, and a fresh machine where
nothing is configured (no embedded Redis may be started behind the user's back)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from rexec import App
from rexec.connection import mask_password
from rexec.embedded import shared_server_url, stop_shared_server
from rexec.target import NoTargetError, resolve

ENV_NAMES = ("REXEC_APP", "REXEC_REDIS_URL", "REXEC_NAMESPACE", "REXEC_HOME", "XDG_STATE_HOME")


@pytest.fixture
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh HOME and state folder, no rexec variables, the test's folder on sys.path."""
    home = Path("/tmp") / f"rexec-t-{uuid.uuid4().hex[:8]}"  # short: socket path limit
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    try:
        yield home
    finally:
        monkeypatch.setenv("HOME", str(home))
        stop_shared_server()
        subprocess.run(["rm", "-rf", str(home)], check=False)


def write_app(directory: Path, url: str | None, namespace: str | None) -> str:
    name = f"tgt_{uuid.uuid4().hex[:10]}"
    args = ", ".join(
        part
        for part in (repr(url) if url else "", f"namespace={namespace!r}" if namespace else "")
        if part
    )
    (directory / f"{name}.py").write_text(f"import rexec\napp = rexec.App({args})\n")
    return f"{name}:app"


def test_nothing_configured_exits_2_and_starts_nothing(fresh: Path) -> None:
    from rexec.cli import main

    for command in (["jobs"], ["counts"], ["check"], ["history"], ["job", "1"]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 2, (command, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert "--redis-url" in lines[0] and "--app" in lines[0]
    assert not fresh.exists(), "a command created state (and so may have started a Redis)"


def test_the_real_command_in_a_fresh_home(fresh: Path) -> None:
    env = {"HOME": str(fresh), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "rexec", "jobs"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "--redis-url" in done.stderr and "--app" in done.stderr
    assert "Traceback" not in done.stderr
    assert not fresh.exists()


def test_order_of_resolution(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tmp = Path.cwd()
    app_path = write_app(tmp, "redis://app-host:1/0", "from_app")
    env_app_path = write_app(tmp, "redis://envapp-host:1/0", "from_env_app")

    # 1. flags beat everything
    monkeypatch.setenv("REXEC_APP", env_app_path)
    monkeypatch.setenv("REXEC_REDIS_URL", "redis://env-host:1/0")
    monkeypatch.setenv("REXEC_NAMESPACE", "from_env")
    t = resolve("redis://flag-host:1/0", "from_flag", app_path)
    assert (t.app.redis_url, t.app.namespace) == ("redis://flag-host:1/0", "from_flag")
    assert t.url_source == "--redis-url" and t.namespace_source == "--namespace"
    # 2. then --app
    t = resolve(None, None, app_path)
    assert (t.app.redis_url, t.app.namespace) == ("redis://app-host:1/0", "from_app")
    assert t.url_source == f"--app {app_path}"
    # 3. then REXEC_APP
    t = resolve()
    assert (t.app.redis_url, t.app.namespace) == ("redis://envapp-host:1/0", "from_env_app")
    assert t.url_source.startswith("REXEC_APP=")
    # 4. then REXEC_REDIS_URL / REXEC_NAMESPACE
    monkeypatch.delenv("REXEC_APP")
    t = resolve()
    assert (t.app.redis_url, t.app.namespace) == ("redis://env-host:1/0", "from_env")
    assert t.url_source == "REXEC_REDIS_URL" and t.namespace_source == "REXEC_NAMESPACE"
    # an app naming no Redis falls through to the environment for what it left open
    bare = write_app(tmp, None, None)
    t = resolve(None, None, bare)
    assert (t.app.redis_url, t.app.namespace) == ("redis://env-host:1/0", "from_env")
    # 5. then the embedded Redis, only when it is running
    monkeypatch.delenv("REXEC_REDIS_URL")
    monkeypatch.delenv("REXEC_NAMESPACE")
    with pytest.raises(NoTargetError):
        resolve()
    with pytest.raises(NoTargetError):
        resolve(None, None, write_app(tmp, None, None))
    url = shared_server_url()
    t = resolve()
    assert (t.app.redis_url, t.app.namespace) == (url, "default")
    assert "embedded" in t.url_source


def test_commands_say_what_they_read_and_warn_on_empty_namespaces(
    redis_url: str, namespace: str, fresh: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rexec.cli import main

    with App(redis_url, namespace=namespace) as app:
        app.enqueue("t")
    monkeypatch.setenv("REXEC_REDIS_URL", redis_url)
    monkeypatch.setenv("REXEC_NAMESPACE", namespace)
    result = CliRunner().invoke(main, ["jobs"])
    assert result.exit_code == 0
    assert f"namespace {namespace!r}" in result.stderr and "REXEC_REDIS_URL" in result.stderr
    assert "warning" not in result.stderr
    for command in (["jobs"], ["check"], ["counts"]):
        result = CliRunner().invoke(main, [*command, "--namespace", "nonexistent"])
        assert "warning: namespace 'nonexistent' holds no rexec keys" in result.stderr, command
    # JSON output stays clean: nothing on stderr
    result = CliRunner().invoke(main, ["jobs", "--json"])
    assert result.exit_code == 0 and result.stderr == ""
    # creating into a new namespace is no surprise
    result = CliRunner().invoke(main, ["enqueue", "t", "--namespace", f"{namespace}x"])
    assert result.exit_code == 0 and "warning" not in result.stderr


def test_passwords_are_masked() -> None:
    assert mask_password("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert mask_password("rediss://user:pw@h/1") == "rediss://user:***@h/1"
    assert mask_password("redis://host:6379/0") == "redis://host:6379/0"
    assert mask_password("unix:///tmp/x.sock") == "unix:///tmp/x.sock"
    t = resolve("redis://:s3cret@localhost:1/0", "n")
    assert "s3cret" not in t.description and "***" in t.description
