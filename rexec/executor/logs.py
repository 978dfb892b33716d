"""How a node talks: log set-up (text or JSON lines) and the start-up banner."""

from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from rexec.app import App
    from rexec.settings import WorkerSettings
from rexec.connection import mask_password

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def mask_url(url: str | None) -> str:
    """A Redis URL fit for logs: any password replaced by ``***``."""
    return mask_password(url) if url else "(none)"


def banner(app: App, settings: WorkerSettings, node_id: str) -> list[str]:
    """The lines a node logs as it starts: what it runs, where, and how."""
    from rexec import __version__

    lines = [
        f"rexec {__version__} node {node_id}: Redis {mask_url(settings.redis_url)},"
        f" namespace {settings.namespace!r}",
        f"{settings.processes} worker process(es) x {settings.concurrency} slots;"
        f" acquisition {settings.acquisition}, lock {settings.lock_ms} ms,"
        f" strategy {settings.strategy or 'defaults'}, durability {app.durability}",
    ]
    if settings.types or settings.priority_min is not None or settings.priority_max is not None:
        lines.append(
            f"only types {list(settings.types) or 'all'},"
            f" priorities {settings.priority_min}..{settings.priority_max}"
        )
    for name in sorted(app.definitions):
        d = app.definitions[name]
        lines.append(
            f"job type {name!r}: {'async ' if d.is_async else ''}"
            f"{'batch ' if d.batch else ''}handler"
            f" {getattr(d.handler, '__qualname__', d.handler)!s}, priority"
            f" {d.priority if d.priority is not None else 'default'}, retry cycle"
            f" {d.retry_cycle}, {'exclusive' if d.exclusive else 'not exclusive'}"
            + (f", timeout {d.timeout_ms} ms" if d.timeout_ms else "")
        )
    if not app.definitions:
        lines.append("no job types registered: this node will fail every job it acquires")
    return lines
