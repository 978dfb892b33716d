"""``rexec cockpit``: serve the web UI, the JSON API and ``/metrics`` of one namespace.

Imports nothing heavy until the command runs, so ``rexec --help`` stays fast.
"""

from __future__ import annotations

import click

from rexec.options import target_options

TOKEN_ENV = "REXEC_COCKPIT_TOKEN"


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` keeps the cockpit on this machine."""
    from rexec.prometheus import is_loopback as loopback

    return loopback(host)


@click.command("cockpit")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="Port to bind."
)
@click.option(
    "--token",
    envvar=TOKEN_ENV,
    show_envvar=True,
    help="Bearer token the API requires; needed to bind to anything but loopback.",
)
@target_options
@click.option("--access-log", is_flag=True, help="Log every HTTP request.")
def cockpit_command(
    *,
    app_path: str | None,
    host: str,
    port: int,
    token: str | None,
    namespace: str | None,
    redis_url: str | None,
    access_log: bool,
) -> None:
    """Serve the cockpit: a web UI and JSON API to watch and operate on jobs."""
    from rexec.target import resolve, tell_target

    token = token or None
    if not is_loopback(host) and token is None:
        raise click.UsageError(
            f"--host {host} would open the cockpit to other machines: give a token with"
            f" --token or {TOKEN_ENV} (clients send it as 'Authorization: Bearer <token>')"
        )
    try:
        import uvicorn

        from rexec.cockpit.app import LOOPBACK_HOSTS, create_app
    except ImportError as exc:  # pragma: no cover - they are dependencies of rexec
        raise click.ClickException(f"the cockpit needs starlette and uvicorn: {exc}") from exc
    target = resolve(redis_url, namespace, app_path)
    tell_target(target)
    with target.app as app:
        app.store.time_ms()  # fails now, clearly, if Redis cannot be reached
        allowed = None if token else {*LOOPBACK_HOSTS, host}
        asgi = create_app(app, token=token, allowed_hosts=allowed)
        shown = f"[{host}]" if ":" in host else host
        click.echo(
            f"rexec cockpit for namespace {app.namespace!r} on http://{shown}:{port}/"
            + (" (token required)" if token else ""),
            err=True,
        )
        uvicorn.run(asgi, host=host, port=port, log_level="info", access_log=access_log)
