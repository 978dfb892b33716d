"""The embedded Redis: one shared server per user, started on first use."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rexec import App
from rexec.embedded import shared_server_url, socket_path, stop_shared_server


@pytest.fixture
def rexec_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = Path("/tmp") / f"rexec-home-{tmp_path.name[-12:]}"  # short: socket path limit
    monkeypatch.setenv("REXEC_HOME", str(home))
    monkeypatch.delenv("REXEC_REDIS_URL", raising=False)
    try:
        yield home
    finally:
        stop_shared_server()


def test_apps_without_a_url_share_one_embedded_server(rexec_home: Path) -> None:
    assert not socket_path().exists()
    with App(namespace="shared") as producer:
        job_id = producer.enqueue("a", {"n": 1})
        url = producer.resolved_url()
    assert url == f"unix://{rexec_home / 'redis.sock'}"
    assert shared_server_url() == url  # already running: reused, not restarted
    with App(namespace="shared") as other:
        job = other.management.get_job(job_id)
        assert job is not None and job.payload == {"n": 1}
    assert stop_shared_server() is True
    assert stop_shared_server() is False


def test_the_embedded_server_keeps_jobs_across_restarts(rexec_home: Path) -> None:
    with App(namespace="kept") as producer:
        job_id = producer.enqueue("a")
    assert stop_shared_server()
    with App(namespace="kept") as again:
        assert again.management.get_job(job_id) is not None


def test_state_folder_and_files_are_private(rexec_home: Path) -> None:
    import stat

    shared_server_url()
    App().enqueue("t")  # the append-only file gets written
    assert stat.S_IMODE(rexec_home.stat().st_mode) == 0o700
    files = [p for p in rexec_home.rglob("*") if not p.is_socket()]
    assert files, "the embedded Redis wrote nothing"
    for path in files:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, (path, oct(mode))


def test_a_folder_owned_by_someone_else_is_refused(
    rexec_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    import rexec.embedded
    from rexec.errors import ConfigurationError

    rexec_home.mkdir(mode=0o755, exist_ok=True)
    real_uid = os.getuid()
    monkeypatch.setattr(rexec.embedded.os, "getuid", lambda: real_uid + 1)
    with pytest.raises(ConfigurationError, match="belongs to uid"):
        shared_server_url()
    monkeypatch.undo()


def test_the_tmp_fallback_is_checked_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import rexec.embedded
    from rexec.errors import ConfigurationError

    long_home = tmp_path / ("x" * 120)
    monkeypatch.setenv("REXEC_HOME", str(long_home))
    monkeypatch.delenv("REXEC_REDIS_URL", raising=False)
    fallback = tmp_path / "fallback"
    fallback.mkdir(mode=0o777)
    (tmp_path / "elsewhere").mkdir()
    fallback.rmdir()
    fallback.symlink_to(tmp_path / "elsewhere")  # someone planted a link
    monkeypatch.setattr(rexec.embedded, "socket_path", lambda: fallback / "redis.sock")
    with pytest.raises(ConfigurationError, match="not a directory"):
        shared_server_url()
