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
