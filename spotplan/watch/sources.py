"""Where reclaim notices come from: one class per metadata service, all answering `poll()` with a
`Notice` or None, plus auto-detection.

Wire facts (status codes, payloads, headers) follow `reference/providers.md` §A:
- AWS IMDSv2: token PUT with a TTL, refreshed before it expires and after a 401;
  `spot/instance-action` is 404 until a notice exists; `events/recommendations/rebalance` likewise.
- GCP: `instance/preempted` with `Metadata-Flavor: Google`, long-polled with `wait_for_change` and the
  last ETag, so a flip to TRUE is seen the moment it happens; after each poll `instance/maintenance-event`
  is read once (no wait): `TERMINATE_ON_HOST_MAINTENANCE` (GPU VMs cannot live-migrate, and GCP
  announces it about an hour ahead) is a `maintenance` notice, seen within one long-poll (30 s).
- Azure Scheduled Events: `Metadata: true`, `Preempt` (and `Terminate`) events with an RFC 1123
  `NotBefore`, approved by POSTing `StartRequests`; never more than 4 requests/s, backing off on 429.
  Only events naming this VM (or no VM) count; until the VM's name is known, events naming VMs are
  not acted on and the poll fails (retried), since they may be a neighbour's.
- ECI guest agent: a unix socket answering `GET /spot_termination_time` with 404 when no notice is
  pending, else the termination time (JSON `{"spot_termination_time": ...}` or plain text).
- url: any HTTP endpoint; 404/204 or an empty/false body mean "no notice", anything else is one.
  Auto-detection tries it first when `SPOTPLAN_WATCH_URL` names one.
"""

from __future__ import annotations

import email.utils
import json
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from spotplan.times import utcnow
from spotplan.watch.http import HttpError, Response, request, unix_path

# Grace after a notice when the service gives no deadline (DESIGN.md §5: AWS 120 s, GCP/Azure 30 s).
# It becomes the notice's deadline, so the verdict, the log, the command's SPOTPLAN_NOTICE_DEADLINE
# and the alert all name the moment the agent plans for, not "unknown".
GRACE_SECONDS = {"aws": 120.0, "gcp": 30.0, "azure": 30.0, "eci": 30.0, "url": 30.0}

ENDPOINT_ENV = {
    "aws": ("SPOTPLAN_AWS_IMDS_ENDPOINT", "AWS_EC2_METADATA_SERVICE_ENDPOINT"),
    "gcp": ("SPOTPLAN_GCP_METADATA_ENDPOINT", "GCE_METADATA_HOST"),
    "azure": ("SPOTPLAN_AZURE_IMDS_ENDPOINT",),
    "eci": ("SPOTPLAN_ECI_SOCKET",),
    "url": ("SPOTPLAN_WATCH_URL",),
}
DEFAULT_ENDPOINT = {
    "aws": "http://169.254.169.254",
    "gcp": "http://metadata.google.internal",
    "azure": "http://169.254.169.254",
    "eci": "unix:/var/run/eci/guest-agent.sock",
}


class MetadataError(Exception):
    """The metadata service could not be read this time (the agent logs it and retries)."""


def parse_time(text: str) -> datetime | None:
    """RFC 3339 (AWS, ECI) or RFC 1123 (Azure `NotBefore`) to an aware UTC datetime; None if neither."""
    text = (text or "").strip().strip('"')
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            value = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


@dataclass
class Notice:
    """A reclaim notice (or, for `kind == "rebalance"`, an early warning that is not one)."""

    source: str
    kind: str  # terminate | stop | hibernate | preempt | maintenance | rebalance | notice
    detected_at: datetime
    deadline: datetime | None = None
    event_id: str | None = None
    acked: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        # A rebalance recommendation is no reclaim: it gets no made-up deadline.
        if self.deadline is None and self.actionable:
            self.deadline = self.effective_deadline()

    @property
    def actionable(self) -> bool:
        return self.kind != "rebalance"

    def effective_deadline(self) -> datetime:
        """The service's deadline, else the documented default (what a reclaim notice carries from
        construction on; a rebalance handled with act_on_rebalance gets it here)."""
        if self.deadline is not None:
            return self.deadline
        return self.detected_at + timedelta(seconds=GRACE_SECONDS.get(self.source, 30.0))

    def to_dict(self) -> dict[str, Any]:
        iso = lambda d: d.isoformat().replace("+00:00", "Z") if d else None  # noqa: E731
        return {
            "source": self.source,
            "kind": self.kind,
            "detected_at": iso(self.detected_at),
            "deadline": iso(self.deadline),
            "event_id": self.event_id,
        }


class Source:
    """A metadata service. `poll` returns the pending notice or None, raising MetadataError on failure."""

    name = "base"
    # True when poll() waits for a change. Its callers still keep to next_poll_delay, which is
    # negative after a poll that waited: a server that answers at once (no ETag, or one that ignores
    # wait_for_change) must not be re-asked in a tight loop.
    long_poll = False

    def __init__(self, endpoint: str | None = None, timeout: float = 2.0) -> None:
        self.endpoint = endpoint or endpoint_from_env(self.name) or DEFAULT_ENDPOINT.get(self.name, "")
        self.timeout = timeout

    def poll(self, wait: float = 1.0) -> Notice | None:
        raise NotImplementedError

    def probe(self) -> bool:
        """Cheap check that this service answers here (auto-detection)."""
        try:
            self.poll(0)
            return True
        except MetadataError:
            return False

    def acknowledge(self, notice: Notice) -> bool:
        """Tell the platform it may proceed (Azure only); True when an acknowledgement was sent."""
        return False

    def _request(self, method: str, path: str, **kw: Any) -> Response:
        try:
            return request(self.endpoint, method, path, timeout=kw.pop("timeout", self.timeout), **kw)
        except HttpError as exc:
            raise MetadataError(str(exc)) from None

    def describe(self) -> str:
        return f"{self.name} ({self.endpoint})"


def endpoint_from_env(name: str) -> str | None:
    for var in ENDPOINT_ENV.get(name, ()):
        value = os.environ.get(var)
        if value:
            if var == "GCE_METADATA_HOST" and "://" not in value:
                value = f"http://{value}"
            if var == "SPOTPLAN_ECI_SOCKET" and value.startswith("/"):
                value = f"unix:{value}"  # the variable names a socket: a bare path is what people write
            return value
    return None


# Share of the interval by which a poll is due early on top of the round trip: the time the agent
# needs to act on what it read (log, signal), so a notice is acted on, not only read, within it.
ACT_MARGIN = 0.01


def next_poll_delay(started: float, interval: float, now: float | None = None) -> float:
    """Seconds to wait before the next poll of a polled source, given when the last one `started`
    (monotonic). Polls run at a fixed rate: the next is due one interval after the last one started,
    brought forward by the last poll's round trip and ACT_MARGIN (by at most half an interval, so a
    slow service is not hammered). A notice that appears just after the service answered is thus
    read and acted on within one interval, not one interval plus the round trip of the poll that
    carries it (DESIGN.md §8: noticed within 1 s)."""
    now = time.monotonic() if now is None else now
    lead = max(0.0, now - started) + interval * ACT_MARGIN
    return started + interval - min(lead, interval / 2) - now


def _unexpected(resp: Response, what: str) -> MetadataError:
    return MetadataError(f"{what}: HTTP {resp.status} {resp.text.strip()[:120]}")


class AwsImds(Source):
    """EC2 instance metadata with IMDSv2 session tokens (as aws-node-termination-handler uses it)."""

    name = "aws"
    token_ttl = 21600
    refresh_margin = 15.0  # seconds before expiry at which the token is renewed (NTH's rule)

    def __init__(self, endpoint: str | None = None, timeout: float = 2.0) -> None:
        super().__init__(endpoint, timeout)
        self._token: str | None = None
        self._expires = 0.0
        self._granted = float(self.token_ttl)
        self._rebalance_seen = False
        self.token_fetches = 0

    def _fetch_token(self) -> str:
        resp = self._request(
            "PUT", "/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": str(self.token_ttl)}
        )
        if resp.status != 200:
            raise _unexpected(resp, "IMDSv2 token")
        self.token_fetches += 1
        self._token = resp.text.strip()
        self._set_expiry(resp, default=self.token_ttl)
        return self._token

    def _set_expiry(self, resp: Response, default: float | None = None) -> None:
        ttl = resp.header("x-aws-ec2-metadata-token-ttl-seconds")
        try:
            seconds = float(ttl) if ttl is not None else default
        except ValueError:
            seconds = default
        if seconds is not None:
            self._expires = time.monotonic() + seconds
            if default is not None:
                self._granted = seconds

    def _token_now(self) -> str:
        margin = min(self.refresh_margin, self._granted / 4)
        if self._token is None or time.monotonic() > self._expires - margin:
            return self._fetch_token()
        return self._token

    def get(self, path: str) -> Response:
        for _attempt in range(2):
            resp = self._request("GET", path, headers={"X-aws-ec2-metadata-token": self._token_now()})
            if resp.status != 401:
                self._set_expiry(resp)
                return resp
            self._token = None  # expired or revoked: fetch a new one and retry once
        raise _unexpected(resp, f"IMDS {path} (token rejected twice)")

    def poll(self, wait: float = 1.0) -> Notice | None:
        now = utcnow()
        resp = self.get("/latest/meta-data/spot/instance-action")
        if resp.status == 200:
            try:
                doc = json.loads(resp.body)
                action = str(doc.get("action", "terminate"))
            except (ValueError, AttributeError):
                raise _unexpected(resp, "spot/instance-action is not JSON") from None
            deadline = parse_time(str(doc.get("time", "")))
            if action == "hibernate":
                deadline = now  # hibernation starts at once: there is no two-minute warning
            return Notice("aws", action, now, deadline)
        if resp.status != 404:
            raise _unexpected(resp, "spot/instance-action")
        if self._rebalance_seen:
            return None
        resp = self.get("/latest/meta-data/events/recommendations/rebalance")
        if resp.status == 200:
            self._rebalance_seen = True
            return Notice("aws", "rebalance", now, None)
        if resp.status != 404:
            raise _unexpected(resp, "events/recommendations/rebalance")
        return None

    def probe(self) -> bool:
        try:
            return self.get("/latest/meta-data/instance-id").status == 200
        except MetadataError:
            return False


class GcpMetadata(Source):
    """GCE metadata server: `instance/preempted`, long-polled with the last ETag, then
    `instance/maintenance-event` read once per poll."""

    name = "gcp"
    long_poll = True
    path = "/computeMetadata/v1/instance/preempted"
    maintenance_path = "/computeMetadata/v1/instance/maintenance-event"
    headers = {"Metadata-Flavor": "Google"}

    def __init__(self, endpoint: str | None = None, timeout: float = 2.0, long_poll_seconds: int = 30) -> None:
        super().__init__(endpoint, timeout)
        self.long_poll_seconds = long_poll_seconds
        self.etag: str | None = None

    def poll(self, wait: float = 1.0) -> Notice | None:
        if self.etag is None or wait <= 0:
            resp = self._request("GET", self.path, headers=self.headers)
        else:
            query = f"?wait_for_change=true&timeout_sec={self.long_poll_seconds}&last_etag={self.etag}"
            resp = self._request(
                "GET", self.path + query, headers=self.headers, timeout=self.long_poll_seconds + self.timeout + 3
            )
        if resp.status != 200:
            self.etag = None
            raise _unexpected(resp, "instance/preempted")
        self.etag = resp.header("etag")
        if resp.text.strip().upper() == "TRUE":
            return Notice("gcp", "preempt", utcnow(), None)
        return self._maintenance()

    def _maintenance(self) -> Notice | None:
        """A host maintenance that will stop this VM (a GPU VM, which cannot live-migrate, or one set
        to TERMINATE) is a reclaim in all but name: the same checkpoint is needed before it. GCP gives
        no time in the key, so the notice gets the default grace and is acted on at once. A server
        without the key (404) has no maintenance to report."""
        resp = self._request("GET", self.maintenance_path, headers=self.headers)
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise _unexpected(resp, "instance/maintenance-event")
        if resp.text.strip().upper() == "TERMINATE_ON_HOST_MAINTENANCE":
            return Notice("gcp", "maintenance", utcnow(), None)
        return None

    def probe(self) -> bool:
        try:
            resp = self._request("GET", "/computeMetadata/v1/instance/id", headers=self.headers)
        except MetadataError:
            return False
        return resp.status == 200 and resp.header("metadata-flavor") == "Google"


class AzureScheduledEvents(Source):
    """Azure Scheduled Events: Preempt/Terminate events, acknowledged with StartRequests."""

    name = "azure"
    path = "/metadata/scheduledevents?api-version=2020-07-01"
    headers = {"Metadata": "true"}
    min_spacing = 0.25  # 4 requests/s at most: the service answers 429 above 5/s
    actionable_types = ("Preempt", "Terminate")

    def __init__(self, endpoint: str | None = None, timeout: float = 2.0, resource: str | None = None) -> None:
        super().__init__(endpoint, timeout)
        self.resource = resource
        self._last_request = 0.0
        self._backoff_until = 0.0
        self._backoff = 0.0
        self._lock = threading.Lock()

    def _azure(self, method: str, path: str, **kw: Any) -> Response:
        with self._lock:
            now = time.monotonic()
            pause = max(self._last_request + self.min_spacing, self._backoff_until) - now
            if pause > 0:
                time.sleep(pause)
            self._last_request = time.monotonic()
            resp = self._request(method, path, **kw)
            if resp.status == 429:
                retry_after = resp.header("retry-after")
                try:
                    self._backoff = float(retry_after) if retry_after else min(max(self._backoff * 2, 1.0), 8.0)
                except ValueError:
                    self._backoff = 1.0
                self._backoff_until = time.monotonic() + self._backoff
            else:
                self._backoff = 0.0
            return resp

    def _lookup_resource(self) -> str | None:
        """Learn this VM's name (events of an availability set go to every member, and only those
        naming this VM are ours); None when it is known, else why it is not yet. Tried on every
        poll until it succeeds: at boot the instance endpoint may not answer yet."""
        if self.resource:
            return None
        try:
            resp = self._azure(
                "GET", "/metadata/instance/compute/name?api-version=2021-02-01&format=text", headers=self.headers
            )
        except MetadataError as exc:
            return str(exc)
        if resp.status == 200 and resp.text.strip():
            self.resource = resp.text.strip()
            return None
        return str(_unexpected(resp, "VM name"))

    def poll(self, wait: float = 1.0) -> Notice | None:
        unknown = self._lookup_resource()
        resp = self._azure("GET", self.path, headers=self.headers)
        if resp.status == 429:
            raise MetadataError(f"scheduled events: HTTP 429 (throttled, backing off {self._backoff:.0f}s)")
        if resp.status != 200:
            raise _unexpected(resp, "scheduled events")
        try:
            doc = json.loads(resp.body)
            events = list(doc.get("Events") or [])
        except (ValueError, AttributeError):
            raise _unexpected(resp, "scheduled events are not JSON") from None
        now = utcnow()
        for event in events:
            if event.get("EventType") not in self.actionable_types:
                continue
            resources = event.get("Resources") or []
            if resources and (unknown or self.resource not in resources):
                # While the name is unknown, an event naming VMs may be a neighbour's: acting on it
                # would stop this VM's training for nothing. The error below keeps polling.
                continue
            # NotBefore is "" once the event has started: the deadline is now.
            deadline = parse_time(str(event.get("NotBefore") or "")) or now
            return Notice(
                "azure", str(event["EventType"]).lower(), now, deadline, event_id=event.get("EventId")
            )
        if unknown:
            # Not a quiet poll: an event of ours may be among those skipped above.
            raise MetadataError(f"this VM's name is not known yet, so its events cannot be told apart ({unknown})")
        return None

    def acknowledge(self, notice: Notice) -> bool:
        if not notice.event_id:
            return False
        body = json.dumps({"StartRequests": [{"EventId": notice.event_id}]}).encode()
        for _ in range(3):
            resp = self._azure(
                "POST", self.path, headers={**self.headers, "Content-Type": "application/json"}, body=body
            )
            if resp.status == 200:
                notice.acked = True
                return True
            if resp.status != 429:
                break
        raise _unexpected(resp, "scheduled events StartRequests")

    def probe(self) -> bool:
        # The instance endpoint answers at once; the first Scheduled Events call can take 2 minutes.
        try:
            resp = self._request(
                "GET", "/metadata/instance/compute/vmId?api-version=2021-02-01&format=text", headers=self.headers
            )
        except MetadataError:
            return False
        return resp.status == 200


class EciGuestAgent(Source):
    """The ECI guest agent's unix socket: `GET /spot_termination_time`, 404 while none is pending."""

    name = "eci"
    path = "/spot_termination_time"

    def poll(self, wait: float = 1.0) -> Notice | None:
        resp = self._request("GET", self.path)
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise _unexpected(resp, "spot_termination_time")
        now = utcnow()
        text = resp.text.strip()
        try:
            doc = json.loads(text)
        except ValueError:
            doc = text
        value = doc.get("spot_termination_time") if isinstance(doc, dict) else doc
        if value in (None, "", "null"):
            return None
        return Notice("eci", "terminate", now, parse_time(str(value)) or None)

    def probe(self) -> bool:
        path = unix_path(self.endpoint)
        return bool(path and Path(path).exists() and super().probe())


class UrlSource(Source):
    """Any HTTP endpoint: 404/204 or an empty/false/none body is "no notice"; anything else is one."""

    name = "url"
    _quiet = {"", "false", "none", "null", "{}", "[]", "0", "no"}
    _time_keys = ("deadline", "time", "notBefore", "NotBefore", "terminationTime", "spot_termination_time")

    def __init__(self, endpoint: str | None = None, timeout: float = 2.0) -> None:
        super().__init__(endpoint, timeout)
        if not self.endpoint:
            raise MetadataError("--source url needs --endpoint URL (or SPOTPLAN_WATCH_URL)")

    def poll(self, wait: float = 1.0) -> Notice | None:
        resp = self._request("GET", "")
        if resp.status in (404, 204):
            return None
        if resp.status != 200:
            raise _unexpected(resp, "notice URL")
        text = resp.text.strip()
        if text.lower() in self._quiet:
            return None
        now = utcnow()
        try:
            doc: Any = json.loads(text)
        except ValueError:
            doc = text
        deadline = None
        kind = "notice"
        if isinstance(doc, dict):
            kind = str(doc.get("action") or doc.get("kind") or kind)
            for key in self._time_keys:
                if doc.get(key):
                    deadline = parse_time(str(doc[key]))
                    break
        elif isinstance(doc, str):
            deadline = parse_time(doc)
        return Notice("url", kind, now, deadline)


SOURCES: dict[str, type[Source]] = {
    "aws": AwsImds,
    "gcp": GcpMetadata,
    "azure": AzureScheduledEvents,
    "eci": EciGuestAgent,
    "url": UrlSource,
}


def make_source(name: str, endpoint: str | None = None, timeout: float = 2.0) -> Source:
    """The source called `name` ("auto" detects it), pointed at `endpoint` when given."""
    if name == "auto":
        return detect_source(endpoint, timeout=timeout)
    try:
        cls = SOURCES[name]
    except KeyError:
        raise MetadataError(f"unknown source {name!r} (choose auto, {', '.join(SOURCES)})") from None
    return cls(endpoint, timeout)


def _dmi_vendor() -> str:
    for name in ("sys_vendor", "bios_vendor", "product_name"):
        try:
            text = Path(f"/sys/class/dmi/id/{name}").read_text(errors="replace")
        except OSError:
            continue
        if text.strip():
            return text.strip().lower()
    return ""


def detect_source(endpoint: str | None = None, timeout: float = 1.0) -> Source:
    """Probe the services in the order the machine's DMI vendor suggests; the first that answers wins.
    A URL named by SPOTPLAN_WATCH_URL is probed first: it is the operator's explicit choice. An
    `endpoint` addresses the metadata services, so it never makes the URL source a candidate (any
    HTTP server that answers would pass that source's probe)."""
    order = ["eci", "aws", "gcp", "azure"]
    vendor = _dmi_vendor()
    hint = "aws" if "amazon" in vendor else "gcp" if "google" in vendor else "azure" if "microsoft" in vendor else None
    if hint:
        order.remove(hint)
        order.insert(1, hint)
    if endpoint and unix_path(endpoint):
        order = ["eci"]
    elif not endpoint and endpoint_from_env("url"):
        order.insert(0, "url")
    tried = []
    for name in order:
        source = SOURCES[name](endpoint, timeout)
        tried.append(source.describe())
        if source.probe():
            return source
    raise MetadataError("no metadata service answered (tried " + ", ".join(tried) + "); pass --source")

