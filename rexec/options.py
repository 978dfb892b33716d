"""Command-line options shared by every rexec command that talks to Redis."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

EMBEDDED_HELP = "Redis URL (redis://, rediss://, unix://); default: the embedded Redis."
APP_URL_HELP = "Redis URL; default: the app's, else the embedded Redis."


def redis_url_option(help: str = EMBEDDED_HELP) -> Decorator:
    """``--redis-url``, from ``REXEC_REDIS_URL``; None means the embedded Redis."""
    return click.option(
        "--redis-url", envvar="REXEC_REDIS_URL", default=None, show_envvar=True, help=help
    )


def namespace_option(*, from_app: bool = False) -> Decorator:
    """``--namespace``, from ``REXEC_NAMESPACE``: ``default`` unless ``from_app``, where
    None leaves it to the app being loaded."""
    if from_app:
        return click.option(
            "--namespace",
            envvar="REXEC_NAMESPACE",
            default=None,
            show_envvar=True,
            help="Namespace of the jobs; default: the app's, else 'default'.",
        )
    return click.option(
        "--namespace",
        envvar="REXEC_NAMESPACE",
        default="default",
        show_default=True,
        show_envvar=True,
        help="Namespace of the jobs.",
    )


def target_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--app``, ``--namespace`` and ``--redis-url`` of an operator command, resolved
    by rexec.target in one order (no envvar here: the environment comes after --app)."""
    fn = click.option(
        "--redis-url",
        default=None,
        help="Redis URL; default: the app's, else $REXEC_REDIS_URL, else the embedded"
        " Redis if it is running.",
    )(fn)
    fn = click.option(
        "--namespace",
        default=None,
        help="Namespace of the jobs; default: the app's, else $REXEC_NAMESPACE, else 'default'.",
    )(fn)
    return click.option(
        "--app",
        "app_path",
        metavar="MODULE:APP",
        default=None,
        help="Read the Redis and namespace of this rexec.App; default: $REXEC_APP.",
    )(fn)
