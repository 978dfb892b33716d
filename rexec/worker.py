"""Compatibility: the worker process now lives in :mod:`rexec.executor`."""

from rexec.executor.process import Worker, worker_process_main

__all__ = ["Worker", "worker_process_main"]
