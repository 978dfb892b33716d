"""Where an operator command reads: which Redis, which namespace, and why.

Every operator command (``rexec jobs``, ``check``, ``cockpit``, ...) resolves its target
the same way, first that applies wins:

1. ``--redis-url`` / ``--namespace``;
2. ``--app module:app``: that app's Redis and namespace;
3. ``REXEC_APP``: the same, from the environment;
4. ``REXEC_REDIS_URL`` / ``REXEC_NAMESPACE``;
5. the embedded Redis, if it is already running (it is never started here).

With none of them, the command stops with :class:`NoTargetError` and starts nothing.
``rexec demo`` and ``App()`` in a script keep the embedded default; they do not come here.
"""

from __future__ import annotations

import copy
import importlib
import os
import re
import sys
from dataclasses import dataclass
from types import ModuleType

import click

from rexec.app import App
from rexec.connection import mask_password
from rexec.errors import ConfigurationError
from rexec.store import Store

APP_ENV = "REXEC_APP"
URL_ENV = "REXEC_REDIS_URL"
NAMESPACE_ENV = "REXEC_NAMESPACE"
APP_PATH_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
NO_TARGET = (
    "no Redis to read: give --redis-url URL (or REXEC_REDIS_URL) or --app module:app"
    " (or REXEC_APP); no embedded Redis is running"
)


class NoTargetError(ConfigurationError):
    """No Redis was named and no embedded Redis is running."""


@dataclass(frozen=True, slots=True)
class Target:
    """A resolved target: the app to use (its URL and namespace set) and where each came
    from, for the line that tells the operator what is being read."""

    app: App
    url_source: str
    namespace_source: str

    @property
    def description(self) -> str:
        url = mask_password(self.app.redis_url or "")
        return (
            f"Redis {url} ({self.url_source}), namespace {self.app.namespace!r}"
            f" ({self.namespace_source})"
        )


def load_app(app_path: str) -> App:
    """Imports ``module:attribute`` (the current directory first on sys.path, as with
    ``python -m``) and checks that it names a rexec App."""
    if not APP_PATH_RE.match(app_path):
        raise ConfigurationError(
            f"{app_path!r} is not module:attribute (for example myproject.jobs:app)"
        )
    module_name, _, attribute = app_path.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module: ModuleType = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {module_name!r} for APP: {exc}") from exc
    except Exception as exc:
        raise ConfigurationError(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    if not hasattr(module, attribute):
        raise ConfigurationError(f"{module_name!r} has no attribute {attribute!r}")
    value = getattr(module, attribute)
    if not isinstance(value, App):
        raise ConfigurationError(f"{app_path} is a {type(value).__name__}, not a rexec.App")
    return value


def _env(name: str) -> str | None:
    return os.environ.get(name, "").strip() or None


def resolve(
    redis_url: str | None = None,
    namespace: str | None = None,
    app_path: str | None = None,
) -> Target:
    """The target of an operator command (see the module's docstring for the order).
    Raises NoTargetError when nothing names a Redis; never starts one."""
    app: App | None = None
    app_source = ""
    if app_path:
        app, app_source = load_app(app_path), f"--app {app_path}"
    elif _env(APP_ENV):
        env_path = _env(APP_ENV) or ""
        app, app_source = load_app(env_path), f"{APP_ENV}={env_path}"
    # An App reads REXEC_REDIS_URL and REXEC_NAMESPACE itself when it names none, so an
    # app's own values come first only when it set them.
    app_url = app.redis_url if app is not None else None
    if redis_url:
        url, url_source = redis_url, "--redis-url"
    elif app_url and app_url != _env(URL_ENV):
        url, url_source = app_url, app_source
    elif _env(URL_ENV):
        url, url_source = _env(URL_ENV) or "", URL_ENV
    else:
        from rexec.embedded import running_server_url

        running = running_server_url()
        if running is None:
            raise NoTargetError(NO_TARGET)
        url, url_source = running, "the embedded Redis, running"
    if namespace:
        ns, ns_source = namespace, "--namespace"
    elif app is not None and app.namespace != (_env(NAMESPACE_ENV) or "default"):
        ns, ns_source = app.namespace, app_source
    elif _env(NAMESPACE_ENV):
        ns, ns_source = _env(NAMESPACE_ENV) or "", NAMESPACE_ENV
    else:
        ns, ns_source = "default", "the default"
    if app is None:
        app = App(url, namespace=ns)
    else:
        # A copy: the imported app stays as its module made it.
        Store.validate_namespace(ns)
        app = copy.copy(app)
        app._client, app._store = None, None
        app.redis_url, app.namespace = url, ns
    return Target(app, url_source, ns_source)


# Keys every namespace in use has at least one of (SCRIPT_KEY_NAMES).
PRESENCE_KEYS = ("seq", "jobs", "types", "pis", "metrics", "workers", "history")


def namespace_is_empty(app: App) -> bool:
    """Whether the namespace holds no rexec keys at all (one EXISTS call)."""
    keys = [app.store.keys.key(name) for name in PRESENCE_KEYS]
    return int(app.client.exists(*keys)) == 0


def tell_target(target: Target, *, warn_empty: bool = True) -> None:
    """Says on stderr what the command reads, and warns if that namespace is empty."""
    click.secho(f"reading {target.description}", dim=True, err=True)
    if warn_empty and namespace_is_empty(target.app):
        click.secho(
            f"warning: namespace {target.app.namespace!r} holds no rexec keys on this Redis"
            " (a typo? see --namespace, --app)",
            fg="yellow",
            err=True,
        )
