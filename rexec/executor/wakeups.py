"""Wake-ups: an idle worker blocks on the namespace's wake-up channel rather than
sleeping blind, so a new job is picked up in milliseconds at any idle level.

Everything about the subscription lives here: subscribing (lazily, again after any
error), waiting, draining, and :func:`is_relevant`, the one place that decides whether
a message means "work for this worker" (a filter by job type or priority plugs in
there). A subscription that fails is logged once per streak and the wait falls back to
a plain sleep: wake-ups make pickup fast, they are never needed for correctness.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis

from rexec.errors import safe_str
from rexec.executor.runtime import Runtime
from rexec.wakeup import relevant

log = logging.getLogger("rexec.worker")

SLICE_S = 0.25  # a stop request is noticed within this


def is_relevant(message: dict[str, Any] | None, rt: Runtime) -> bool:
    """Whether a pub/sub message announces work this worker may take: a job of a type
    it acquires, within its priority range (rexec/wakeup.py); others keep it idle."""
    if message is None or message.get("type") != "message":
        return False
    return relevant(message.get("data") or b"1", rt.wake_filter)


class Wakeups:
    def __init__(self, rt: Runtime, stop: threading.Event) -> None:
        self.rt = rt
        self._stop = stop
        self._pubsub: redis.client.PubSub | None = None
        self._failing = False

    def _subscribe(self) -> redis.client.PubSub:
        if self._pubsub is None:
            pubsub = self.rt.store.client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
            try:
                pubsub.subscribe(self.rt.keys.wake_channel)
            except BaseException:
                pubsub.close()
                raise
            self._pubsub = pubsub
        return self._pubsub

    def _failed(self, exc: BaseException) -> None:
        self.close()
        if not self._failing:
            self._failing = True
            log.warning(
                "%s: wake-up subscription failed (%s); polling until it works again",
                self.rt.id,
                safe_str(exc),
                exc_info=not isinstance(exc, redis.RedisError),
            )

    def wait(self, wait_s: float) -> bool:
        """Blocks up to ``wait_s`` for a wake-up; True if one arrived."""
        deadline = time.monotonic() + wait_s
        try:
            pubsub = self._subscribe()
            while not self._stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                message = pubsub.get_message(timeout=min(left, SLICE_S))
                if is_relevant(message, self.rt):
                    self.drain()
                    self._failing = False
                    return True
            return False
        except Exception as exc:
            self._failed(exc)
            self._stop.wait(max(0.0, deadline - time.monotonic()))
            return False

    def drain(self) -> bool:
        """Consumes the messages already there; True if one was a wake-up."""
        if self._pubsub is None:
            return False
        woke = False
        try:
            while (message := self._pubsub.get_message(timeout=0)) is not None:
                woke = woke or is_relevant(message, self.rt)
        except Exception as exc:
            self._failed(exc)
        return woke

    def close(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                pubsub.close()
            except Exception:
                log.debug("closing the wake-up subscription failed", exc_info=True)
