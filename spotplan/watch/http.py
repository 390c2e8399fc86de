"""A tiny HTTP/1.1 client over TCP or a unix socket, for metadata services.

Metadata services are link-local, answer in milliseconds and need exact control of headers and
timeouts, so the standard library's http.client is enough; it also keeps the idle watcher free of
heavier imports. Endpoints are `http://host[:port]` or `unix:/path/to.sock` (`unix:///path` too).
"""

from __future__ import annotations

import http.client
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit


class HttpError(Exception):
    """The endpoint could not be reached or did not answer in time."""


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def unix_path(endpoint: str) -> str | None:
    """The socket path of a `unix:` endpoint, else None."""
    if not endpoint.startswith("unix:"):
        return None
    rest = endpoint[len("unix:") :]
    return "/" + rest.lstrip("/") if rest.startswith("//") else rest


def endpoint_problem(endpoint: str) -> str | None:
    """Why `endpoint` cannot be used (a usage error for the CLI to report), or None when it can."""
    if endpoint.startswith("unix:"):
        return None if unix_path(endpoint) else f"{endpoint!r} names no socket path (use unix:/path.sock)"
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"unsupported endpoint {endpoint!r} (use http://host:port or unix:/path)"
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        return f"{endpoint!r}: {exc}"
    return None


def request(
    endpoint: str,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 2.0,
) -> Response:
    """One request to `endpoint` + `path`; raises HttpError on connection problems and timeouts."""
    problem = endpoint_problem(endpoint)
    if problem is not None:
        raise HttpError(problem)
    sock_path = unix_path(endpoint)
    conn: http.client.HTTPConnection
    if sock_path is not None:
        conn = _UnixConnection(sock_path, timeout)
        where = f"{endpoint}{path}"
    else:
        parts = urlsplit(endpoint)
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = cls(parts.hostname or "", parts.port, timeout=timeout)
        # The endpoint's own path is a prefix; with no request path the endpoint is the whole URL.
        path = parts.path.rstrip("/") + path if path else (parts.path or "/") + (
            f"?{parts.query}" if parts.query else ""
        )
        # Named from scheme and host only: the endpoint's path is already part of `path`.
        where = f"{parts.scheme}://{parts.netloc}{path}"
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return Response(resp.status, data, {k.lower(): v for k, v in resp.getheaders()})
    except (OSError, http.client.HTTPException) as exc:
        raise HttpError(f"{method} {where}: {exc or type(exc).__name__}") from None
    finally:
        conn.close()
