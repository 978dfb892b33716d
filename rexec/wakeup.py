"""Wake-up messages: what scripts publish on the wake channel, and whether a worker
can act on one (pure functions; the worker only calls :func:`relevant`).

A message is either ``1`` (anything may have changed: every worker wakes) or a
space-separated list of ``<type>|<priority key>`` entries, one per job type that got a
job made acquirable (or, from enqueue, newly scheduled), with the highest priority
among those jobs. A worker wakes for an entry whose type it acquires and whose priority
lies within its priority range; otherwise it keeps its idle backoff, as it would had
nothing been published. lua/includes/wake.lua writes the message.
"""

from __future__ import annotations

from dataclasses import dataclass

from rexec.codec import priority_key


@dataclass(frozen=True, slots=True)
class WakeFilter:
    """What one worker acquires: its types (empty = all) and priority range."""

    types: frozenset[str] = frozenset()
    priority_min: int | None = None
    priority_max: int | None = None

    def accepts(self, job_type: str, pk: str) -> bool:
        if self.types and job_type not in self.types:
            return False
        # A smaller key is a higher priority (codec.priority_key).
        if self.priority_max is not None and pk < priority_key(self.priority_max):
            return False
        return not (self.priority_min is not None and pk > priority_key(self.priority_min))


def parse(message: bytes | str) -> list[tuple[str, str]] | None:
    """The entries of a message; None for a message that wakes everyone (``1``, or
    anything this version does not understand)."""
    text = message.decode(errors="replace") if isinstance(message, bytes) else str(message)
    entries = []
    for part in text.split():
        job_type, sep, pk = part.partition("|")
        if not sep or len(pk) != 16 or not job_type:
            return None
        entries.append((job_type, pk))
    return entries or None


def relevant(message: bytes | str, wake_filter: WakeFilter) -> bool:
    """Whether a worker with ``wake_filter`` should wake up for ``message``."""
    entries = parse(message)
    if entries is None:
        return True
    return any(wake_filter.accepts(job_type, pk) for job_type, pk in entries)
