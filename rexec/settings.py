"""What a node and its worker processes are told: plain values, picklable, no clients."""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rexec.errors import ConfigurationError

if TYPE_CHECKING:
    from rexec.app import App


@dataclass(frozen=True)
class WorkerSettings:
    """Settings of one node (``rexec worker``); every worker process gets a copy."""

    app_path: str
    redis_url: str | None = None
    namespace: str | None = None
    processes: int = 2
    concurrency: int = 8
    types: tuple[str, ...] = ()
    priority_min: int | None = None
    priority_max: int | None = None
    lock_ms: int = 30_000
    shutdown_timeout_s: float = 30.0
    acquisition: str = "atomic"
    strategy: dict[str, float] = field(default_factory=dict)
    node_id: str | None = None
    queue_size: int | None = None
    metrics_interval_s: float = 1.0
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    health_port: int | None = None
    health_host: str = "127.0.0.1"
    log_level: str = "INFO"
    log_format: str = "text"
    connect_timeout_s: float | None = None
    # A worker process is recycled once this many of its handlers are abandoned after
    # a timeout (0: its concurrency), or one has been for abandoned_max_age_s.
    abandoned_max: int = 0
    abandoned_max_age_s: float = 300.0
    # A cleanly stopped worker folds its counters into the cluster totals and removes
    # its own fields; a tool that reports per worker after the stop (rexec demo, which
    # then drops its namespace) keeps them.
    retire_on_stop: bool = True
    # The app's durability ("default" or "replicated"); None keeps the app's own. The
    # node pins the app's value here, so every worker process writes alike.
    durability: str | None = None
    replication_timeout_ms: int | None = None

    def __post_init__(self) -> None:
        if ":" not in self.app_path or self.app_path.startswith(":"):
            raise ConfigurationError(
                f"APP must be 'module:attribute' naming a rexec.App, got {self.app_path!r}"
            )
        if self.processes < 1:
            raise ConfigurationError(f"processes must be at least 1, got {self.processes}")
        if self.concurrency < 1:
            raise ConfigurationError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.shutdown_timeout_s < 0:
            raise ConfigurationError("shutdown timeout must not be negative")
        if self.log_format not in ("text", "json"):
            raise ConfigurationError(
                f"log format must be 'text' or 'json', got {self.log_format!r}"
            )
        if self.acquisition not in ("atomic", "optimistic"):
            raise ConfigurationError(
                f"acquisition must be 'atomic' or 'optimistic', got {self.acquisition!r}"
            )


def load_app(settings: WorkerSettings) -> App:
    """Imports ``module:attribute`` and applies the settings' URL and namespace."""
    from rexec.app import App

    module_name, _, attribute = settings.app_path.partition(":")
    if "" not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: modules in the working directory
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {module_name!r}: {exc}") from exc
    app = getattr(module, attribute, None)
    if not isinstance(app, App):
        raise ConfigurationError(
            f"{settings.app_path!r} is not a rexec.App (got {type(app).__name__})"
        )
    app.app_path = settings.app_path
    if settings.redis_url:
        app.redis_url = settings.redis_url
    if settings.namespace:
        app.namespace = settings.namespace
    app.acquisition = settings.acquisition
    if settings.durability is not None:
        from rexec.store import check_durability

        app.durability = check_durability(settings.durability)
    if settings.replication_timeout_ms is not None:
        from rexec.store import check_replication_timeout

        app.replication_timeout_ms = check_replication_timeout(settings.replication_timeout_ms)
    return app
