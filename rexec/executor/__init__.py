"""The worker runtime: one supervisor per node, N worker processes under it.

- :mod:`~rexec.executor.node` — the node supervisor (``rexec worker``);
- :mod:`~rexec.executor.process` — one worker process, its parts wired together;
- :mod:`~rexec.executor.acquirer` and :mod:`~rexec.executor.wakeups` — acquisition;
- :mod:`~rexec.executor.execution` — executions and the jobs a process holds;
- :mod:`~rexec.executor.slots` and :mod:`~rexec.executor.event_loop` — running them;
- :mod:`~rexec.executor.committer` — writing their outcomes;
- :mod:`~rexec.executor.housekeeper` — timeouts, lock renewal, metrics, heartbeats.
"""

from rexec.executor.node import Node, run_node
from rexec.executor.process import Worker, worker_process_main

__all__ = ["Node", "Worker", "run_node", "worker_process_main"]
