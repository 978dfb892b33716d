"""Builds the cockpit's ASGI app: the JSON API, ``/metrics``, and the web UI's files.

When a token is configured, every ``/api`` and ``/metrics`` request must carry
``Authorization: Bearer <token>``; the UI's own files are public (the page asks for the
token once and keeps it in the browser's localStorage). Without a token the cockpit is
meant for loopback only, and it then also refuses requests whose ``Host`` is not a
loopback name (a web page cannot reach it through DNS rebinding) and POST/PUT requests
that are not JSON (a web page cannot send those cross-origin without asking first).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from pathlib import Path

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from rexec.app import App
from rexec.cockpit.api import EXCEPTION_HANDLERS, Cockpit, api_routes, error_json

STATIC_DIR = Path(__file__).resolve().parent / "static"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
PROTECTED_PREFIXES = ("/api/", "/metrics")


def host_name(header: str) -> str:
    """The name in a ``Host`` header, without the port (``[::1]:8080`` -> ``[::1]``)."""
    if header.startswith("["):
        return header[: header.find("]") + 1] if "]" in header else header
    return header.rsplit(":", 1)[0]


class GuardMiddleware:
    """Token, Host and content-type checks in front of every route."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        allowed_hosts: Iterable[str] | None,
    ) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.allowed_hosts = None if allowed_hosts is None else frozenset(allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> Response | None:
        headers = Headers(scope=scope)
        path: str = scope["path"]
        if self.allowed_hosts is not None:
            host = host_name(headers.get("host", ""))
            if host not in self.allowed_hosts:
                return error_json(400, f"this cockpit does not answer for host {host!r}")
        if not path.startswith(PROTECTED_PREFIXES):
            return None
        if self.token is not None:
            scheme, _, given = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), self.token
            ):
                return error_json(
                    401,
                    "this cockpit needs a token: send 'Authorization: Bearer <token>'",
                    {"WWW-Authenticate": 'Bearer realm="rexec cockpit"'},
                )
        if scope["method"] in ("POST", "PUT", "PATCH"):
            media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
            if media_type != "application/json":
                return error_json(
                    415, "send actions as JSON (Content-Type: application/json), even empty"
                )
        return None


async def index(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def create_app(
    app: App,
    *,
    token: str | None = None,
    allowed_hosts: Iterable[str] | None = None,
) -> Starlette:
    """The cockpit for ``app``'s namespace. ``token``: required as a bearer token on
    the API; ``allowed_hosts``: the only ``Host`` names answered (None: any)."""
    routes = [
        Route("/", index),
        *api_routes(Cockpit(app)),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(GuardMiddleware, token=token, allowed_hosts=allowed_hosts)],
        exception_handlers=EXCEPTION_HANDLERS,
    )
