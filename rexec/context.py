"""What a handler receives as ``ctx``: its job and the app, and a way to keep its lock."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rexec.job import Job

if TYPE_CHECKING:
    from rexec.app import App


class JobContext:
    """The context of one job execution."""

    __slots__ = ("_variables", "app", "job", "worker_id")

    def __init__(self, job: Job, app: App, worker_id: str) -> None:
        self.job = job
        self.app = app
        self.worker_id = worker_id
        self._variables: dict[str, Any] | None = None

    @property
    def variables(self) -> dict[str, Any]:
        """The job's process instance variables (empty without an instance)."""
        if self._variables is None:
            pi = self.job.process_instance_id
            self._variables = self.app.get_variables(pi) if pi else {}
        return self._variables


JobRunner = Callable[[JobContext, Any], Any]
