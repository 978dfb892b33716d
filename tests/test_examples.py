"""The examples run as documented."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from rexec.embedded import stop_shared_server

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_delivery_example_puts_vip_first_and_obeys_the_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = Path("/tmp") / f"rexec-ex-{tmp_path.name[-10:]}"  # short: socket path limit
    monkeypatch.setenv("REXEC_HOME", str(home))
    monkeypatch.delenv("REXEC_REDIS_URL", raising=False)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        result = subprocess.run(
            [sys.executable, str(REPO / "examples" / "delivery.py")],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    finally:
        stop_shared_server()
    lines = [line.split("s  ", 1)[1] for line in result.stdout.splitlines()]
    scheduled = [line.strip() for line in lines if "delivery scheduled" in line]
    first_six = scheduled[:6]
    assert [("VIP" in line) for line in first_six] == [True, True, False, False, False, False]
    outage = lines[
        lines.index("the delivery service slows down: override schedule-delivery's priority to 0") :
    ]
    outage = outage[: outage.index("the service has recovered: clear the override")]
    assert "delivery scheduled for Gus (VIP) (priority 0)" in [line.strip() for line in outage]
    assert lines[-1] == "done"


def test_asgi_example_enqueues_and_answers_polls(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from starlette.testclient import TestClient

    monkeypatch.setenv("REXEC_REDIS_URL", redis_url)
    spec = importlib.util.spec_from_file_location("asgi_example", REPO / "examples" / "asgi_app.py")
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    app = example.app
    keys = list(app.client.scan_iter(match=f"rexec:{{{app.namespace}}}:*"))
    if keys:
        app.client.delete(*keys)
    try:
        with TestClient(example.web) as client:
            created = client.post("/reports", json={"rows": 1000})
            assert created.status_code == 202
            poll = created.json()["poll"]
            assert client.get(poll).json()["status"] == "queued"
            assert app.run_until_empty() == 1
            done = client.get(poll).json()
            assert done["status"] == "completed"
            assert done["result"] == {"rows": 1000, "total": 499500}
            assert client.post("/reports", json={"rows": "many"}).status_code == 400
            assert client.get("/reports/not-a-job").status_code == 400
            assert client.get("/reports/99999999").status_code == 404
    finally:
        app.close()


@pytest.mark.slow
def test_asgi_example_runs_as_a_script(redis_url: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "REXEC_REDIS_URL": redis_url}
    env["REXEC_NAMESPACE"] = "ignored"  # the example names its own namespace
    with redis.Redis.from_url(redis_url) as client:
        keys = list(client.scan_iter(match="rexec:{reports}:*"))
        if keys:
            client.delete(*keys)
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "asgi_app.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert lines[2] == "jobs run: 1"
    assert "'status': 'completed'" in lines[3] and "'total': 499500" in lines[3]
