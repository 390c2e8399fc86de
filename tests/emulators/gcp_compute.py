"""A local emulator of the Compute Engine REST paths `spotplan migrate` uses (providers.md B11):
machineTypes.get, regions.get, instances insert/list/get/stop/start/delete/setMetadata and
zoneOperations.get, with camelCase JSON bodies and operations returned already DONE. insert refuses
(400) the Scheduling the API refuses (enums; a Spot VM with onHostMaintenance other than TERMINATE
or with automaticRestart), and GET answers with full URLs and the scheduling the API fills in.
`preempt(iid)` reclaims a Spot VM as GCE does (STOP: TERMINATED; DELETE: gone).

`fail_next(action)` makes the next call of one action answer with a Google error once, for the
fault-injection tests. Binds 127.0.0.1 on a free port.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.emulators._http import Faults, LocalServer, QuietHandler

MACHINE_TYPES = {
    "a2-highgpu-1g": 12, "a2-highgpu-2g": 24, "a2-highgpu-4g": 48, "a2-highgpu-8g": 96, "a2-ultragpu-8g": 96,
    "a3-highgpu-8g": 208, "g2-standard-8": 8, "g2-standard-24": 24, "n1-standard-8": 8,
}
# Zones per region (a real subset); `not_offered` takes (zone, machine type) pairs out.
ZONES = {
    "us-central1": ("us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"),
    "europe-west4": ("europe-west4-a", "europe-west4-b", "europe-west4-c"),
    "us-east1": ("us-east1-b", "us-east1-c", "us-east1-d"),
}
_P = r"/compute/v1/projects/(?P<project>[^/]+)"
_Z = _P + r"/zones/(?P<zone>[^/]+)"
ROUTES = [
    ("GET", _Z + r"/machineTypes/(?P<name>[^/]+)$", "machineTypes.get"),
    ("GET", _P + r"/regions/(?P<region>[^/]+)$", "regions.get"),
    ("POST", _Z + r"/instances$", "instances.insert"),
    ("GET", _Z + r"/instances$", "instances.list"),
    ("GET", _Z + r"/instances/(?P<name>[^/]+)$", "instances.get"),
    ("DELETE", _Z + r"/instances/(?P<name>[^/]+)$", "instances.delete"),
    ("POST", _Z + r"/instances/(?P<name>[^/]+)/stop$", "instances.stop"),
    ("POST", _Z + r"/instances/(?P<name>[^/]+)/start$", "instances.start"),
    ("POST", _Z + r"/instances/(?P<name>[^/]+)/setMetadata$", "instances.setMetadata"),
    ("GET", _Z + r"/operations/(?P<name>[^/]+)$", "zoneOperations.get"),
]


class GcpComputeEmulator(LocalServer):
    def __init__(self, instance_quota: int = 24, pending_ops: bool = False) -> None:
        # pending_ops: operations come back RUNNING and are DONE when polled (the B11 poller path).
        self.pending_ops = pending_ops
        self.instances: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.request_ids: dict[str, str] = {}
        self.calls: list[str] = []
        self.faults = Faults()
        self.instance_quota = instance_quota
        self.not_offered: set[tuple[str, str]] = set()
        self.preempt_armed = False
        self.lock = threading.RLock()
        emu = self

        class Handler(QuietHandler):
            def _handle(self) -> None:
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                raw = self.read_body()
                body = json.loads(raw) if raw else {}
                for method, pattern, action in ROUTES:
                    m = re.match(pattern, url.path)
                    if m and method == self.command:
                        status, payload = emu.dispatch(action, m.groupdict(), query, body)
                        break
                else:
                    status, payload = 404, _error(404, f"no route {self.command} {url.path}", "notFound")
                self.reply(status, json.dumps(payload).encode(), "application/json; charset=UTF-8")

            do_GET = do_POST = do_DELETE = _handle

        super().__init__(Handler)

    def fail_next(self, action: str, status: int = 503, skip: int = 0) -> None:
        with self.lock:
            self.faults.arm(action, status, skip=skip)

    # ---- state helpers used by tests --------------------------------------------------------

    def add_instance(self, project: str, zone: str, name: str, machine_type: str, status: str = "RUNNING",
                     **extra: Any) -> str:
        with self.lock:
            self.instances[(project, zone, name)] = {
                "kind": "compute#instance", "id": str(uuid.uuid4().int)[:19], "name": name, "status": status,
                "zone": f"{self.url}/compute/v1/projects/{project}/zones/{zone}",
                "machineType": f"{self.url}/compute/v1/projects/{project}/zones/{zone}/machineTypes/{machine_type}",
                "labels": {}, "metadata": {"kind": "compute#metadata", "fingerprint": _fp(), "items": []},
                "scheduling": {"provisioningModel": "STANDARD"}, **extra,
            }
        return f"projects/{project}/zones/{zone}/instances/{name}"

    def preempt(self, iid: str) -> None:
        """Reclaim a Spot VM as GCE does: with instanceTerminationAction STOP it ends TERMINATED (its
        disks kept), with DELETE it is gone (providers.md A2, B11)."""
        parts = iid.split("/")
        key = (parts[1], parts[3], parts[5])
        with self.lock:
            inst = self.instances[key]
            if inst["scheduling"].get("instanceTerminationAction", "STOP") == "DELETE":
                del self.instances[key]
            else:
                inst["status"] = "TERMINATED"

    def preempt_on_next_get(self) -> None:
        """Preempt the Spot VM the next instances.get asks about, just before answering."""
        with self.lock:
            self.preempt_armed = True

    def get(self, iid: str) -> dict[str, Any] | None:
        parts = iid.split("/")
        return self.instances.get((parts[1], parts[3], parts[5]))

    def labelled(self, key: str, value: str) -> dict[str, dict[str, Any]]:
        return {f"projects/{p}/zones/{z}/instances/{n}": i for (p, z, n), i in self.instances.items()
                if i.get("labels", {}).get(key) == value}

    # ---- the API ------------------------------------------------------------------------------

    def dispatch(self, action: str, p: dict[str, str], query: dict[str, str], body: dict[str, Any]
                 ) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.calls.append(action)
            fault = self.faults.take(action)
            if fault is not None:
                return fault[0], _error(fault[0], "injected fault", "backendError")
            key = (p.get("project", ""), p.get("zone", ""), p.get("name", ""))
            if action == "machineTypes.get":
                if not any(p["zone"] in zones for zones in ZONES.values()):
                    return 404, _error(404, f"The resource 'projects/{key[0]}/zones/{key[1]}' was not found",
                                       "notFound")
                if p["name"] not in MACHINE_TYPES or (p["zone"], p["name"]) in self.not_offered:
                    return 404, _error(404, f"The resource 'projects/{key[0]}/zones/{key[1]}/machineTypes/"
                                            f"{p['name']}' was not found", "notFound")
                return 200, {"kind": "compute#machineType", "name": p["name"],
                             "guestCpus": MACHINE_TYPES[p["name"]], "zone": p["zone"]}
            if action == "regions.get":
                if p["region"] not in ZONES:
                    return 404, _error(404, f"The resource 'projects/{key[0]}/regions/{p['region']}' was not found",
                                       "notFound")
                used = sum(1 for (pr, _z, _n) in self.instances if pr == p["project"])
                base = f"https://www.googleapis.com/compute/v1/projects/{key[0]}/zones"
                zones = [f"{base}/{z}" for z in ZONES[p["region"]]]
                return 200, {"kind": "compute#region", "name": p["region"], "status": "UP", "zones": zones,
                             "quotas": [{"metric": "INSTANCES", "limit": self.instance_quota, "usage": used}]}
            if action == "zoneOperations.get":
                op = self.operations.get(p["name"])
                if op is None:
                    return 404, _error(404, "operation not found", "notFound")
                op["status"], op["progress"] = "DONE", 100
                return 200, op
            if action == "instances.list":
                items = [i for (pr, z, _n), i in self.instances.items() if (pr, z) == key[:2]]
                m = re.match(r'labels\.([\w-]+)\s*=\s*"?([^"]*)"?', query.get("filter", ""))
                if m:
                    items = [i for i in items if i.get("labels", {}).get(m[1]) == m[2]]
                return 200, {"kind": "compute#instanceList", "items": items}
            if action == "instances.insert":
                rid = query.get("requestId")
                if rid and rid in self.request_ids:
                    return 200, self.operations[self.request_ids[rid]]
                name = body["name"]
                if (key[0], key[1], name) in self.instances:
                    return 409, _error(409, f"The resource 'projects/{key[0]}/zones/{key[1]}/instances/{name}'"
                                            " already exists", "alreadyExists")
                refused = _scheduling_refused(body.get("scheduling") or {})
                if refused is not None:
                    return 400, _error(400, refused, "invalid")
                body = json.loads(json.dumps(body))  # the stored copy, not the caller's dict
                base = f"{self.url}/compute/v1/projects/{key[0]}/zones/{key[1]}"
                mtype = str(body.get("machineType", "")).rsplit("/", 1)[-1]
                # GET answers with full URLs (providers.md D), whatever form the insert used.
                inst = {"kind": "compute#instance", "id": str(uuid.uuid4().int)[:19], **body, "status": "RUNNING",
                        "zone": base, "machineType": f"{base}/machineTypes/{mtype}",
                        "selfLink": f"{base}/instances/{name}"}
                inst.setdefault("labels", {})
                inst.setdefault("metadata", {"items": []})
                inst["metadata"]["kind"] = "compute#metadata"
                inst["metadata"]["fingerprint"] = _fp()
                sched = inst.setdefault("scheduling", {})
                sched.setdefault("provisioningModel", "STANDARD")
                if sched["provisioningModel"] == "SPOT" or sched.get("preemptible"):
                    # What the API fills in for a Spot VM (providers.md B11, D): STOP is the default action.
                    sched.update(preemptible=True, automaticRestart=False, onHostMaintenance="TERMINATE")
                    sched.setdefault("instanceTerminationAction", "STOP")
                self.instances[(key[0], key[1], name)] = inst
                op = self._op("insert", key[0], key[1], name)
                if rid:
                    self.request_ids[rid] = op["name"]
                return 200, op
            spot = self.instances.get(key, {}).get("scheduling", {}).get("provisioningModel") == "SPOT"
            if action == "instances.get" and self.preempt_armed and spot:
                self.preempt_armed = False
                self.preempt(f"projects/{key[0]}/zones/{key[1]}/instances/{key[2]}")
            inst = self.instances.get(key)
            if inst is None:
                return 404, _error(404, f"The resource 'projects/{key[0]}/zones/{key[1]}/instances/{key[2]}'"
                                        " was not found", "notFound")
            if action == "instances.get":
                return 200, inst
            if action == "instances.delete":
                del self.instances[key]
                return 200, self._op("delete", *key)
            if action == "instances.stop":
                inst["status"] = "TERMINATED"
                return 200, self._op("stop", *key)
            if action == "instances.start":
                inst["status"] = "RUNNING"
                return 200, self._op("start", *key)
            if action == "instances.setMetadata":
                if body.get("fingerprint") != inst["metadata"].get("fingerprint"):
                    return 412, _error(412, "Supplied fingerprint does not match current metadata fingerprint.",
                                       "conditionNotMet")
                inst["metadata"] = {"kind": "compute#metadata", "fingerprint": _fp(), "items": body.get("items", [])}
                return 200, self._op("setMetadata", *key)
        return 500, _error(500, "unhandled", "backendError")

    def _op(self, kind: str, project: str, zone: str, name: str) -> dict[str, Any]:
        op_name = f"operation-{uuid.uuid4().hex[:16]}"
        op = {"kind": "compute#operation", "id": str(uuid.uuid4().int)[:19], "name": op_name,
              "operationType": kind, "status": "DONE", "progress": 100,
              "zone": f"projects/{project}/zones/{zone}",
              "targetLink": f"projects/{project}/zones/{zone}/instances/{name}",
              "selfLink": f"projects/{project}/zones/{zone}/operations/{op_name}"}
        self.operations[op_name] = op
        if self.pending_ops:
            return {**op, "status": "RUNNING", "progress": 0}
        return op


PROVISIONING_MODELS = ("SPOT", "STANDARD", "FLEX_START", "RESERVATION_BOUND")
TERMINATION_ACTIONS = ("STOP", "DELETE")
HOST_MAINTENANCE = ("MIGRATE", "TERMINATE")


def _scheduling_refused(sched: dict[str, Any]) -> str | None:
    """The Scheduling checks of instances.insert (providers.md B11): the enums, and for a Spot or
    preemptible VM onHostMaintenance TERMINATE (the only value preemptible allows) and no automatic
    restart. The message is the emulator's; the API answers 400 `invalid`."""
    model = sched.get("provisioningModel", "STANDARD")
    if model not in PROVISIONING_MODELS:
        return f"Invalid value for field 'resource.scheduling.provisioningModel': '{model}'."
    action = sched.get("instanceTerminationAction")
    if action is not None and action not in TERMINATION_ACTIONS:
        return f"Invalid value for field 'resource.scheduling.instanceTerminationAction': '{action}'."
    host = sched.get("onHostMaintenance")
    if host is not None and host not in HOST_MAINTENANCE:
        return f"Invalid value for field 'resource.scheduling.onHostMaintenance': '{host}'."
    if model == "SPOT" or sched.get("preemptible"):
        if host not in (None, "TERMINATE"):
            return "Scheduling must have preemptible be false when OnHostMaintenance isn't TERMINATE."
        if sched.get("automaticRestart"):
            return "Scheduling must have preemptible be false when AutomaticRestart is true."
    return None


def _fp() -> str:
    return uuid.uuid4().hex[:12]


def _error(code: int, message: str, reason: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message,
                      "errors": [{"message": message, "domain": "global", "reason": reason}]}}
