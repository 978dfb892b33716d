"""The housekeeper's periodic duty: fire the cluster's due periodic ticks (rexec/periodic.py).

Every worker process ticks, whichever app it runs: a schedule fires even when no node
registers it. Between polls it costs nothing; a poll is one ZRANGE (at the earliest
stored tick, and at least every second for newly deployed schedules).
"""

from __future__ import annotations

from rexec.executor.runtime import Runtime
from rexec.periodic import Ticker


def periodic_ticker(rt: Runtime) -> Ticker:
    """A ticker on this process's store, on its estimate of Redis time."""
    return Ticker(rt.store, rt.now_ms)
