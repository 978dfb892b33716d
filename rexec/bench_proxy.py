"""A TCP proxy that delays every chunk by half a round trip each way, so that the drain
benchmark's round trips cost what they cost on a real network (``--rtt-ms``).

Two threads per connection (one per direction), each: receive, sleep until the chunk
is due, send. Redis's request/response traffic never has a second request in flight
on a connection before the first's reply, so holding one chunk at a time is exact.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from urllib.parse import urlsplit, urlunsplit


class DelayProxy:
    def __init__(self, upstream_url: str, rtt_ms: float) -> None:
        self.upstream_url = upstream_url
        self.delay_s = rtt_ms / 2000
        parts = urlsplit(upstream_url)
        self._unix = parts.scheme == "unix"
        self._address: str | tuple[str, int] = (
            parts.path if self._unix else (parts.hostname or "127.0.0.1", parts.port or 6379)
        )
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._closed = False
        host, port = self._listener.getsockname()[:2]
        auth = ""
        if parts.password:
            auth = f"{parts.username or ''}:{parts.password}@"
        db = parts.path.strip("/") if not self._unix else ""
        query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
        db = query.get("db", db) or "0"
        self.url = urlunsplit(("redis", f"{auth}{host}:{port}", f"/{db}", "", ""))

    def start(self) -> DelayProxy:
        threading.Thread(target=self._accept, name="bench-proxy", daemon=True).start()
        return self

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()

    def _connect(self) -> socket.socket:
        if self._unix:
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self._address)
            return upstream
        return socket.create_connection(self._address)  # type: ignore[arg-type]

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream = self._connect()
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                due = time.monotonic() + self.delay_s
                while (left := due - time.monotonic()) > 0:
                    time.sleep(left)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
