"""Plumbing shared by the local emulators and the migrate fault proxy: a threaded HTTP(S) server on
a free 127.0.0.1 port, a quiet request handler with body/reply helpers, and one-shot fault switches."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def closed_url(path: str = "") -> str:
    """An http://127.0.0.1 address nothing listens on (a port just bound and released): a
    connection there is refused at once, and never leaves the machine."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}{path}"


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive, no access log, and the two halves every route needs."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        return

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def reply(self, status: int, data: bytes, content_type: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class LocalServer:
    """Serves `handler` on 127.0.0.1 (TLS when given a context) from a daemon thread until stop()."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext | None = None) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.server.daemon_threads = True
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Faults(dict[str, list[Any]]):
    """Fault switches by action name: `arm` fails the next call of an action once, after letting
    `skip` calls through. `action in faults` is true until the fault has fired. Callers hold their
    own lock around arm/take."""

    def arm(self, action: str, *answer: Any, skip: int = 0) -> None:
        self[action] = [skip, *answer]

    def take(self, action: str) -> tuple[Any, ...] | None:
        """The armed answer if this call is the one to fail (the switch is then cleared), else None."""
        entry = self.get(action)
        if entry is None:
            return None
        if entry[0] > 0:
            entry[0] -= 1
            return None
        del self[action]
        return tuple(entry[1:])
