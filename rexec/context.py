"""What a handler receives as ``ctx``: its job, its process instance's variables, and
the follow-up work it asks for — none of which takes effect until the job completes.

When the handler returns, the worker commits the job and everything asked for in one
Lua script (``lua/commit.lua``): variable changes are checked against the instance
revision they were read at; on a conflict nothing is written and the job runs again
without consuming a retry. A handler that raises leaves no trace but its failure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from rexec.codec import check_type, pack, unpack, variables_dict
from rexec.errors import ValidationError
from rexec.job import Job
from rexec.rules import plain_forms
from rexec.store import Effects, NewBranch, NewJob

if TYPE_CHECKING:
    from rexec.app import App


class JobContext:
    """The context of one job execution."""

    __slots__ = (
        "_changes",
        "_end",
        "_jobs",
        "_joins",
        "_revision",
        "_variables",
        "app",
        "job",
        "lockable_types",
        "worker_id",
    )

    def __init__(
        self,
        job: Job,
        app: App,
        worker_id: str,
        lockable_types: frozenset[str] | None = None,
    ) -> None:
        self.job = job
        self.app = app
        self.worker_id = worker_id
        # Types this worker may run: exclusive follow-ups of these are locked at once.
        self.lockable_types = lockable_types
        self._variables: dict[str, Any] | None = None
        self._revision = 0
        self._changes: dict[str, Any] = {}
        self._joins: list[tuple[int, NewJob]] = []
        self._jobs: list[NewBranch] = []
        self._end = False

    # -- variables ------------------------------------------------------------------------

    @property
    def variables(self) -> dict[str, Any]:
        """The process instance's variables as read at a known revision, with this
        handler's own changes applied (empty without a process instance)."""
        if self._variables is None:
            pi = self.job.process_instance_id
            if pi is None:
                self._variables = {}
            else:
                self._revision, raw = self.app.store.read_variables(pi)
                self._variables = variables_dict(unpack(raw, "variables"), pi)
        return {**self._variables, **self._changes}

    def set_variable(self, name: str, value: Any) -> None:
        """Sets a process variable when the job completes."""
        if self.job.process_instance_id is None:
            raise ValidationError(f"job {self.job.id} has no process instance to set variables on")
        if not isinstance(name, str) or not name:
            raise ValidationError(f"a variable name is a non-empty string, got {name!r}")
        pack(value, f"variable {name!r}")  # fail in the handler, not at commit
        _ = self.variables  # the revision the change is checked against
        self._changes[name] = value

    # -- follow-up work -----------------------------------------------------------------

    def enqueue(self, type: str, payload: Any = None, **options: Any) -> None:
        """Creates a follow-up job when this job completes. It belongs to this job's
        process instance unless ``process_instance_id`` says otherwise."""
        self._jobs.append(self._branch({"type": type, "payload": payload, **options}, 0))

    def fork(
        self,
        specs: Iterable[Mapping[str, Any]],
        *,
        join: str,
        join_payload: Any = None,
        **join_options: Any,
    ) -> None:
        """Creates parallel branch jobs (each spec as ``app.enqueue_many`` takes it) when
        this job completes; when the last branch completes, the ``join`` job is created,
        exactly once."""
        check_type(join)
        branches = [dict(spec) for spec in specs]
        if not branches:
            raise ValidationError("a fork needs at least one branch")
        join_job = self._new_job({"type": join, "payload": join_payload, **join_options})
        index = len(self._joins) + 1
        made = [self._branch(spec, index) for spec in branches]  # all checked first
        self._joins.append((len(branches), join_job))
        self._jobs.extend(made)

    def _new_job(self, spec: dict[str, Any]) -> NewJob:
        if spec.get("key") is not None:
            raise ValidationError(
                "a follow-up, branch or join job cannot take a unique key (only producers'"
                " enqueue does)"
            )
        pi = self.job.process_instance_id
        if pi is not None:
            spec.setdefault("process_instance_id", pi)
        variables = (
            {pi: self.variables} if pi is not None and spec.get("process_instance_id") == pi else {}
        )
        return self.app._new_job(spec, variables)

    def _branch(self, spec: dict[str, Any], join: int) -> NewBranch:
        job = self._new_job(spec)
        # The store checks the job's resolved exclusivity before it locks it.
        lock_now = (
            job.exclusive is not False
            and job.process_instance_id is not None
            and job.process_instance_id == self.job.process_instance_id
            and self.job.exclusive
            and self.lockable_types is not None
            and job.type in self.lockable_types
            and job.due_ms is None
            and not job.delay_ms
        )
        return NewBranch(job, join, lock_now)

    def end_process_instance(self) -> None:
        """Ends this job's process instance when the job completes (Camunda's end
        event): its record and variables are removed in the same commit, so finished
        processes leave nothing behind."""
        if self.job.process_instance_id is None:
            raise ValidationError(f"job {self.job.id} has no process instance to end")
        self._end = True

    # -- for the worker ------------------------------------------------------------------

    @property
    def asked_for_more(self) -> bool:
        """Whether the handler asked for anything beyond its job's completion."""
        return bool(self._changes or self._jobs or self._joins or self._end)

    def effects(self) -> Effects:
        """Everything the handler asked for, ready for ``Store.commit``."""
        pi = self.job.process_instance_id
        if self._end and any(new.job.process_instance_id == pi for new in self._jobs):
            raise ValidationError(
                f"job {self.job.id} ends process instance {pi!r} and also creates jobs in it"
            )
        variables_pi = None
        raw = b""
        forms = ""
        if self._changes and not self._end:
            assert self._variables is not None
            variables_pi = self.job.process_instance_id
            merged = {**self._variables, **self._changes}
            raw = pack(merged, "variables")
            forms = plain_forms(merged)
        return Effects(
            variables_pi=variables_pi,
            variables_revision=self._revision,
            variables_raw=raw,
            joins=tuple(self._joins),
            jobs=tuple(self._jobs),
            end_instance=self._end,
            variables_forms=forms,
        )
