"""Local stand-ins for the node metadata services `spotplan watch` reads, speaking their documented
wire protocol (reference/providers.md §A): AWS IMDSv2, the GCP metadata server, Azure Scheduled
Events, the ECI guest-agent unix socket, a generic notice URL, a webhook receiver and a minimal
Docker Engine API (unix socket) that delivers `docker kill`/`docker stop` to local processes.

Every server binds 127.0.0.1 on a free port (or a unix socket in a temp dir), runs in a daemon
thread and is stopped by `stop()` / the context manager. The notice appears when the test says so:
`schedule_notice(after=seconds)`, so tests never sleep for real grace periods. `start(port=N)` binds a
given port (a service that comes up late), and `reply_delay` makes every answer that much slower to
come back (a slow or far metadata service).
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import json
import os
import signal
import socketserver
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

HTML_ERROR = (
    '<?xml version="1.0" encoding="iso-8859-1"?>\n<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"\n'
    '\t"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n<html xmlns="http://www.w3.org/1999/xhtml" '
    'xml:lang="en" lang="en">\n <head>\n  <title>{code} - {text}</title>\n </head>\n <body>\n  <h1>{code} - {text}'
    "</h1>\n </body>\n</html>\n"
)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def rfc3339(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc1123(value: datetime) -> str:
    return email.utils.format_datetime(value.astimezone(timezone.utc), usegmt=True)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Reply:
    status: int = 200
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/plain; charset=utf-8"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "emulator"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read emulator.requests
        pass

    def address_string(self) -> str:
        return "local"

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        req = Request(
            self.command,
            parts.path,
            parse_qs(parts.query, keep_blank_values=True),
            {k.lower(): v for k, v in self.headers.items()},
            body,
        )
        emulator: Emulator = self.server.emulator  # type: ignore[attr-defined]
        reply = emulator._dispatch(req)
        data = reply.body.encode() if isinstance(reply.body, str) else reply.body
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and data:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up
                self.wfile.write(data)
        self.close_connection = True

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _serve


class _TcpServer(ThreadingHTTPServer):
    daemon_threads = True


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True


class Emulator:
    """Base of every emulator: the server thread, the request log, the notice clock and fault injection."""

    def __init__(self, unix_socket: str | None = None) -> None:
        self.unix_socket = unix_socket
        self.requests: list[Request] = []
        self.notice_at: float | None = None  # monotonic moment the notice appears
        self.notice_wall: datetime | None = None  # the same moment on the wall clock
        self.reply_delay = 0.0  # seconds between reading the state and answering
        self._faults: list[int] = []
        self._cond = threading.Condition()
        self._closing = False
        self._server: socketserver.BaseServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, port: int = 0) -> Emulator:
        if self.unix_socket:
            if os.path.exists(self.unix_socket):
                os.unlink(self.unix_socket)
            self._server = _UnixServer(self.unix_socket, _Handler)
        else:
            self._server = _TcpServer(("127.0.0.1", port), _Handler)
        self._server.emulator = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self.unix_socket and os.path.exists(self.unix_socket):
            os.unlink(self.unix_socket)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        if self.unix_socket:
            return f"unix:{self.unix_socket}"
        assert self._server is not None
        host, port = self._server.server_address[:2]  # type: ignore[misc]
        return f"http://{host}:{port}"

    # -- the notice ---------------------------------------------------------------------------
    def schedule_notice(self, after: float = 0.0) -> datetime:
        """Make the notice appear `after` seconds from now; returns that moment (UTC)."""
        with self._cond:
            self.notice_at = time.monotonic() + after
            self.notice_wall = utcnow() + timedelta(seconds=after)
            self._cond.notify_all()
        return self.notice_wall

    def clear_notice(self) -> None:
        with self._cond:
            self.notice_at = self.notice_wall = None
            self._cond.notify_all()

    @property
    def notice_active(self) -> bool:
        return self.notice_at is not None and time.monotonic() >= self.notice_at

    def fail_next(self, status: int, count: int = 1) -> None:
        """Answer the next `count` requests with `status` (a flaky metadata service)."""
        self._faults.extend([status] * count)

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until `predicate()` holds, the notice clock ticks over, or `timeout` passes."""
        end = time.monotonic() + timeout
        with self._cond:
            while not self._closing:
                if predicate():
                    return True
                left = end - time.monotonic()
                if left <= 0:
                    return False
                if self.notice_at is not None and self.notice_at > time.monotonic():
                    left = min(left, self.notice_at - time.monotonic() + 0.001)
                self._cond.wait(left)
        return False

    def _dispatch(self, req: Request) -> Reply:
        self.requests.append(req)
        if self._faults:
            status = self._faults.pop(0)
            return Reply(status, HTML_ERROR.format(code=status, text="Injected Fault"))
        reply = self.handle(req)
        if self.reply_delay:
            time.sleep(self.reply_delay)  # after handle(): the state is read, the answer is late
        return reply

    def handle(self, req: Request) -> Reply:
        raise NotImplementedError

    def count(self, method: str, path: str) -> int:
        return sum(1 for r in self.requests if r.method == method and r.path == path)


def _html(status: int, text: str) -> Reply:
    return Reply(status, HTML_ERROR.format(code=status, text=text))


class AwsImdsEmulator(Emulator):
    """EC2 IMDS like amazon-ec2-metadata-mock with `--imdsv2`: tokens, spot ITN, rebalance."""

    def __init__(
        self,
        imdsv2_required: bool = True,
        action: str = "terminate",
        notice_lead: float = 120.0,
        token_ttl_cap: int | None = None,
    ) -> None:
        super().__init__()
        self.imdsv2_required = imdsv2_required
        self.action = action
        self.notice_lead = notice_lead
        self.token_ttl_cap = token_ttl_cap
        self.tokens: dict[str, float] = {}
        self.rebalance_at: float | None = None
        self.rebalance_wall: datetime | None = None

    def schedule_rebalance(self, after: float = 0.0) -> None:
        self.rebalance_at = time.monotonic() + after
        self.rebalance_wall = utcnow() + timedelta(seconds=after)

    def handle(self, req: Request) -> Reply:
        path = req.path.rstrip("/") or "/"
        if req.method == "PUT":
            if req.header("x-forwarded-for"):
                return _html(403, "Forbidden")
            if path != "/latest/api/token":
                return _html(403, "Forbidden")
            raw = req.header("x-aws-ec2-metadata-token-ttl-seconds")
            try:
                ttl = int(raw or "")
            except ValueError:
                return _html(400, "Bad Request")
            if not 1 <= ttl <= 21600:
                return _html(400, "Bad Request")
            if self.token_ttl_cap:
                ttl = min(ttl, self.token_ttl_cap)
            token = base64.b64encode(os.urandom(32)).decode()
            self.tokens[token] = time.monotonic() + ttl
            return Reply(200, token, {"X-aws-ec2-metadata-token-ttl-seconds": str(ttl)})
        if req.method not in ("GET", "HEAD"):
            return _html(405, "Method Not Allowed")
        token = req.header("x-aws-ec2-metadata-token")
        headers: dict[str, str] = {}
        if token is not None:
            expiry = self.tokens.get(token)
            if expiry is None or expiry <= time.monotonic():
                return _html(401, "Unauthorized")
            headers["X-aws-ec2-metadata-token-ttl-seconds"] = str(max(0, int(expiry - time.monotonic())))
        elif self.imdsv2_required:
            return _html(401, "Unauthorized")
        prefix = "/latest/meta-data/"
        key = path[len(prefix) :] if path.startswith(prefix) else None
        if key == "instance-id":
            return Reply(200, "i-1234567890abcdef0", headers)
        if key == "instance-life-cycle":
            return Reply(200, "spot", headers)
        if key in ("spot/instance-action", "spot/termination-time") and self.notice_active:
            assert self.notice_wall is not None
            when = rfc3339(self.notice_wall + timedelta(seconds=self.notice_lead))
            if key == "spot/termination-time":
                return Reply(200, when, headers) if self.action == "terminate" else _html(404, "Not Found")
            body = f'{{\n\t"action": "{self.action}",\n\t"time": "{when}"\n}}'
            return Reply(200, body, headers, "application/json")
        if key == "events/recommendations/rebalance" and self.rebalance_at and time.monotonic() >= self.rebalance_at:
            assert self.rebalance_wall is not None
            return Reply(200, json.dumps({"noticeTime": rfc3339(self.rebalance_wall)}), headers, "application/json")
        return _html(404, "Not Found")


class GcpMetadataEmulator(Emulator):
    """GCE metadata server: Metadata-Flavor check, ETags, `wait_for_change` long-poll on any key.

    `etags=False` sends no ETag and `long_polls=False` answers a `wait_for_change` at once, as a
    proxy or an older metadata server may.
    """

    FORBIDDEN = (
        "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <title>Error 403 (Forbidden)!!1</title>\n"
        "  <p><b>403.</b> <ins>That's an error.</ins>\n  <p>Your client does not have permission to get URL "
        "<code>{path}</code> from this server. Missing Metadata-Flavor:Google header.\n"
    )

    def __init__(self, etags: bool = True, long_polls: bool = True) -> None:
        super().__init__()
        self.etags = etags
        self.long_polls = long_polls
        self.values: dict[str, str] = {
            "instance/id": "4520031799277581759",
            "instance/name": "vm1",
            "instance/zone": "projects/123456789/zones/us-central1-a",
            "instance/scheduling/preemptible": "TRUE",
            "instance/scheduling/provisioning-model": "SPOT",
            "instance/maintenance-event": "NONE",
        }

    def value(self, key: str) -> str | None:
        if key == "instance/preempted":
            return "TRUE" if self.notice_active else "FALSE"
        return self.values.get(key)

    @staticmethod
    def etag(body: str) -> str:
        return hashlib.md5(body.encode()).hexdigest()[-16:]

    def handle(self, req: Request) -> Reply:
        base = {"Metadata-Flavor": "Google", "Server": "Metadata Server for VM"}
        if req.header("metadata-flavor") != "Google":
            return Reply(403, self.FORBIDDEN.format(path=req.path), base, "text/html; charset=UTF-8")
        prefix = "/computeMetadata/v1/"
        if not req.path.startswith(prefix) or req.method != "GET":
            return Reply(404, "Error: Not found", base, "text/html")
        key = req.path[len(prefix) :]
        current = self.value(key)
        if current is None:
            return Reply(404, "Error: Not found", base, "text/html")
        if self.long_polls and req.query.get("wait_for_change", [""])[0].lower() == "true":
            last = req.query.get("last_etag", [None])[0]
            baseline = last if last is not None else self.etag(current)
            timeout = float(req.query.get("timeout_sec", ["3600"])[0])
            if last is None or last == self.etag(current):
                self.wait_for(lambda: self.etag(self.value(key) or "") != baseline, timeout)
            current = self.value(key) or ""
        etag = {"ETag": self.etag(current)} if self.etags else {}
        return Reply(200, current, {**base, **etag}, "application/text")


class AzureScheduledEventsEmulator(Emulator):
    """Azure IMDS Scheduled Events: Metadata header, api-version, 429 above the rate, StartRequests."""

    PATH = "/metadata/scheduledevents"

    def __init__(
        self,
        not_before_seconds: float = 30.0,
        max_per_second: int = 5,
        vm_name: str = "vm-spot",
        event_type: str = "Preempt",
        resources: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.not_before_seconds = not_before_seconds
        self.max_per_second = max_per_second
        self.vm_name = vm_name
        self.event_type = event_type
        self.resources = resources
        self.acks: list[str] = []
        self.throttled = 0
        self._recent: list[float] = []
        self._event: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def document(self) -> dict[str, Any]:
        with self._lock:
            if self.notice_active and self._event is None:
                assert self.notice_wall is not None
                self._event = {
                    "EventId": str(uuid.uuid4()).upper(),
                    "EventStatus": "Scheduled",
                    "EventType": self.event_type,
                    "ResourceType": "VirtualMachine",
                    "Resources": self.resources if self.resources is not None else [self.vm_name],
                    "NotBefore": rfc1123(self.notice_wall + timedelta(seconds=self.not_before_seconds)),
                    "Description": "",
                    "EventSource": "Platform",
                    "DurationInSeconds": -1,
                }
            if self._event is None:
                return {"DocumentIncarnation": 1, "Events": []}
            started = self._event["EventStatus"] == "Started"
            return {"DocumentIncarnation": 3 if started else 2, "Events": [dict(self._event)]}

    def handle(self, req: Request) -> Reply:
        now = time.monotonic()
        with self._lock:
            self._recent = [t for t in self._recent if now - t < 1.0] + [now]
            too_fast = len(self._recent) > self.max_per_second
        if too_fast:
            self.throttled += 1
            return Reply(429, json.dumps({"error": "Too many requests"}), content_type="application/json")
        if (req.header("metadata") or "").lower() != "true":
            return Reply(400, json.dumps({"error": "Bad request. Required metadata header not specified"}),
                         content_type="application/json")
        if not req.query.get("api-version"):
            return Reply(400, json.dumps({"error": "Bad request. api-version was not specified in the request."}),
                         content_type="application/json")
        if req.path.startswith("/metadata/instance/compute/") and req.method == "GET":
            field_name = req.path.rsplit("/", 1)[-1]
            values = {"name": self.vm_name, "vmId": "02aab8a4-74ef-476e-8182-f6d2ba4166a6"}
            if field_name in values:
                return Reply(200, values[field_name])
            return Reply(404, json.dumps({"error": "Not found"}), content_type="application/json")
        if req.path != self.PATH:
            return Reply(404, json.dumps({"error": "Not found"}), content_type="application/json")
        if req.method == "GET":
            return Reply(200, json.dumps(self.document()), content_type="application/json")
        if req.method == "POST":
            try:
                ids = [str(item["EventId"]) for item in req.json()["StartRequests"]]
            except (ValueError, KeyError, TypeError):
                return Reply(400, json.dumps({"error": "Bad request"}), content_type="application/json")
            with self._lock:
                self.acks.extend(ids)
                if self._event is not None and self._event["EventId"] in ids:
                    self._event.update(EventStatus="Started", NotBefore="")
            return Reply(200, "")
        return Reply(405, json.dumps({"error": "Method not allowed"}), content_type="application/json")


class EciGuestAgentEmulator(Emulator):
    """The ECI guest agent on a unix socket: `GET /spot_termination_time`, 404 until a notice."""

    def __init__(self, socket_path: str, notice_lead: float = 30.0, as_text: bool = False) -> None:
        super().__init__(unix_socket=socket_path)
        self.notice_lead = notice_lead
        self.as_text = as_text

    def handle(self, req: Request) -> Reply:
        if req.path != "/spot_termination_time" or req.method != "GET":
            return Reply(404, json.dumps({"message": "not found"}), content_type="application/json")
        if not self.notice_active:
            return Reply(404, json.dumps({"message": "no spot termination scheduled"}), content_type="application/json")
        assert self.notice_wall is not None
        when = rfc3339(self.notice_wall + timedelta(seconds=self.notice_lead))
        if self.as_text:
            return Reply(200, when)
        return Reply(200, json.dumps({"spot_termination_time": when}), content_type="application/json")


class NoticeUrlEmulator(Emulator):
    """A generic notice URL (`/notice`): 404 until the notice, then `{"action", "time"}` (or `body`,
    e.g. a bare `true` that names no time)."""

    def __init__(self, notice_lead: float = 30.0, body: str | None = None) -> None:
        super().__init__()
        self.notice_lead = notice_lead
        self.body = body

    @property
    def url(self) -> str:
        return self.endpoint + "/notice"

    def handle(self, req: Request) -> Reply:
        if req.path != "/notice":
            return Reply(404, "not found")
        if not self.notice_active:
            return Reply(404, "no notice")
        if self.body is not None:
            return Reply(200, self.body)
        assert self.notice_wall is not None
        when = rfc3339(self.notice_wall + timedelta(seconds=self.notice_lead))
        return Reply(200, json.dumps({"action": "terminate", "time": when}), content_type="application/json")


class WebhookReceiver(Emulator):
    """Records what a Slack-style incoming webhook receives and answers `ok` like Slack does."""

    @property
    def url(self) -> str:
        return self.endpoint + "/hooks/T000/B000/XXXX"

    @property
    def messages(self) -> list[Any]:
        return [r.json() for r in self.requests if r.method == "POST"]

    def handle(self, req: Request) -> Reply:
        if req.method != "POST":
            return Reply(405, "method not allowed")
        try:
            doc = req.json()
        except ValueError:
            return Reply(400, "invalid_payload")
        if not isinstance(doc, dict) or not doc.get("text"):
            return Reply(400, "no_text")
        return Reply(200, "ok")


class DockerEngineEmulator(Emulator):
    """The slice of the Docker Engine API that `docker kill` and `docker stop` use, on a unix socket.

    Containers are local processes (name -> pid): kill delivers the signal, stop sends the stop
    signal, waits up to `t` seconds for the process to exit, then SIGKILLs it.
    """

    API = "1.47"

    def __init__(self, socket_path: str) -> None:
        super().__init__(unix_socket=socket_path)
        self.containers: dict[str, int] = {}
        self.calls: list[tuple[str, str, dict[str, str]]] = []

    def handle(self, req: Request) -> Reply:
        headers = {"Api-Version": self.API, "Docker-Experimental": "false", "Ostype": "linux"}
        if req.path == "/_ping":
            return Reply(200, "OK", headers)
        parts = req.path.strip("/").split("/")
        if parts and parts[0].startswith("v"):
            parts = parts[1:]
        if len(parts) == 3 and parts[0] == "containers" and req.method == "POST":
            name, op = parts[1], parts[2]
            query = {k: v[0] for k, v in req.query.items()}
            self.calls.append((op, name, query))
            pid = self.containers.get(name)
            if pid is None:
                return Reply(404, json.dumps({"message": f"No such container: {name}"}), headers, "application/json")
            if op == "kill":
                os.kill(pid, _signum(query.get("signal") or "SIGKILL"))
                return Reply(204, b"", headers)
            if op == "stop":
                os.kill(pid, _signum(query.get("signal") or "SIGTERM"))
                end = time.monotonic() + float(query.get("t") or 10)
                while time.monotonic() < end and _alive(pid):
                    time.sleep(0.02)
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
                return Reply(204, b"", headers)
        return Reply(404, json.dumps({"message": "page not found"}), headers, "application/json")


def _signum(name: str) -> int:
    if name.isdigit():
        return int(name)
    name = name.upper()
    return int(signal.Signals[name if name.startswith("SIG") else "SIG" + name])


def _alive(pid: int) -> bool:
    """Running and not a zombie (the "container" may be the test's own child, reaped by the test)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
