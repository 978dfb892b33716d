"""Pacing: how many slots should run, from how the handlers spend their time.

Each slot times its handlers (wall and thread CPU time). Over a window of jobs, the
median wall time is the handler's typical waiting (network, sleep), little inflated by
the occasional wait for the GIL held by other threads; ``ceil(wall / cpu)`` slots keep
one CPU busy.
A slot whose handler has run STUCK_AFTER_S is not counted as available, so one hung
handler never holds up the rest of the buffer. The figures are statistics, written
without a lock by the slots: a lost update is harmless.

The wall time also counts the waits for the GIL, which grow with the threads that run:
left alone, the ratio of a handler doing short I/O (one Redis call) climbs to the full
concurrency, and the threads then spend their time handing the GIL to each other. So a
cap on top of it climbs the hill of throughput: while the buffer has work, every
second the cap moves one slot down, or up again when going down cut the jobs done per
second; a thread added that did not raise them is taken away again.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence

from rexec.executor.execution import Execution

STUCK_AFTER_S = 0.05
EMA = 0.2
WINDOW = 32  # jobs per timing sample
TUNE_NOISE = 0.05  # a fall in throughput smaller than this is noise


class Slot:
    """One slot thread's state, written by it alone (the housekeeper reads
    ``current`` to enforce timeouts)."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.current: Execution | None = None
        self.window_walls: list[float] = []
        self.window_cpu = 0.0
        self.window_jobs = 0
        self.abandoned = False
        self.waiting = False
        self.thread: threading.Thread | None = None


class Pacing:
    def __init__(self, concurrency: int = 1) -> None:
        self.wall_ema = 0.0
        self.cpu_ema = 0.0
        self.concurrency = concurrency
        self.cap = concurrency  # written by the housekeeper alone
        self._step = -1
        self._last_rate = 0.0

    def tune(self, jobs_per_s: float, has_work: bool) -> None:
        """One step of the hill climb (see the module's docstring); the cap goes back
        to the full concurrency when the buffer runs dry (throughput then says nothing
        about the slots)."""
        if not has_work:
            self.cap, self._step, self._last_rate = self.concurrency, -1, 0.0
            return
        if self._step > 0 and jobs_per_s <= self._last_rate * (1 + TUNE_NOISE):
            self._step = -1  # one more thread did not pay: fewer threads cost less
        elif self._step < 0 and jobs_per_s < self._last_rate * (1 - TUNE_NOISE):
            self._step = 1
        self._last_rate = jobs_per_s
        self.cap = max(1, min(self.concurrency, self.cap + self._step))
        if self.cap == self.concurrency:
            self._step = -1  # nowhere further up: try down next

    def sample(self, slot: Slot, wall: float, cpu: float) -> None:
        walls = slot.window_walls
        walls.append(wall)
        slot.window_cpu += cpu
        slot.window_jobs += 1
        if slot.window_jobs >= WINDOW:
            cpu_mean = max(slot.window_cpu / slot.window_jobs, 1e-6)
            walls.sort()
            median = walls[len(walls) // 2]
            self.wall_ema += EMA * (max(median, cpu_mean) - self.wall_ema)
            self.cpu_ema += EMA * (cpu_mean - self.cpu_ema)
            walls.clear()
            slot.window_cpu, slot.window_jobs = 0.0, 0

    def wanted(self, slots: Sequence[Slot], concurrency: int) -> int:
        """How many slots should be running."""
        ratio = self.wall_ema / self.cpu_ema if self.cpu_ema > 0 else 1.0
        now = time.monotonic()
        stuck = 0
        for slot in slots:
            current = slot.current
            if current is not None and now - current.started > STUCK_AFTER_S:
                stuck += 1
        return min(concurrency, min(self.cap, max(1, math.ceil(ratio - 0.05))) + stuck)
