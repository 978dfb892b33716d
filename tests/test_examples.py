"""The examples run as documented."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
