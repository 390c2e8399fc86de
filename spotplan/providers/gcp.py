"""GCP for `spotplan migrate`: Compute Engine instances (Spot insert, stop/start/delete, metadata)
through google-cloud-compute over REST, imported lazily.

`SPOTPLAN_GCP_COMPUTE_ENDPOINT` points every client at another address (anonymous credentials when
none are configured). Operations are waited for through a zone-operations client built with the same
endpoint: the SDK's own poller ignores client_options (providers.md B11). Instance ids are
`projects/P/zones/Z/instances/NAME`; targets are created in the project of the source.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Sequence
from typing import Any

from spotplan.errors import CloudError, CredentialsError, InputError, SpotplanError, require_extra
from spotplan.providers.base import (
    MOVE_TAG,
    RESUME_TAG,
    TOKEN_TAG,
    Call,
    LaunchSpec,
    all_permissions,
    translated,
)

NAME = "gcp"

RESUME_FETCH = (
    "curl -sf -H 'Metadata-Flavor: Google' "
    f"http://metadata.google.internal/computeMetadata/v1/instance/attributes/{RESUME_TAG}"
)

PERMISSIONS: dict[str, tuple[str, ...]] = {
    "compute.machine_types.get": ("compute.machineTypes.get",),
    "compute.regions.get": ("compute.regions.get",),
    "compute.instances.list": ("compute.instances.list",),
    "compute.instances.get": ("compute.instances.get",),
    "compute.instances.insert": (
        "compute.instances.create",
        "compute.instances.setLabels",
        "compute.instances.setMetadata",
        "compute.instances.setServiceAccount",
        "compute.disks.create",
        "compute.images.useReadOnly",
        "compute.subnetworks.use",
        "compute.subnetworks.useExternalIp",
    ),
    "compute.instances.stop": ("compute.instances.stop",),
    "compute.instances.start": ("compute.instances.start",),
    "compute.instances.delete": ("compute.instances.delete",),
    "compute.instances.set_metadata": ("compute.instances.setMetadata",),
    "compute.zone_operations.get": ("compute.zoneOperations.get",),
}

_ID = re.compile(r"^projects/(?P<project>[^/]+)/zones/(?P<zone>[^/]+)/instances/(?P<name>[^/]+)$")
_PLACEMENT = re.compile(r"^projects/(?P<project>[^/]+)/zones/(?P<zone>[^/]+)$")
_STATE = {
    "RUNNING": "running",
    "PROVISIONING": "pending",
    "STAGING": "pending",
    "REPAIRING": "pending",
    "STOPPING": "stopping",
    "SUSPENDING": "stopping",
    "PENDING_STOP": "stopping",
    "STOPPED": "stopped",
    "SUSPENDED": "stopped",
    "TERMINATED": "stopped",  # GCP's TERMINATED is a stopped VM, not a deleted one
    "DEPROVISIONING": "terminated",
}


def permission_document() -> dict[str, Any]:
    return {
        "title": "spotplan migrate",
        "description": "What `spotplan migrate` needs to move workloads onto Spot VMs",
        "stage": "GA",
        # verify_checkpoint lists and reads a gs:// checkpoint where spotplan runs.
        "includedPermissions": sorted({*all_permissions(PERMISSIONS), "storage.objects.get", "storage.objects.list"}),
    }


def make(region: str) -> GcpProvider:
    return GcpProvider(region)


def parse_id(instance_id: str) -> tuple[str, str, str]:
    m = _ID.match(instance_id)
    if not m:
        raise InputError(f"{instance_id!r} is not a GCP instance id (projects/P/zones/Z/instances/NAME)")
    return m["project"], m["zone"], m["name"]


def label_value(text: str) -> str:
    """GCP labels: lowercase letters, digits, - and _, at most 63 characters."""
    return re.sub(r"[^a-z0-9_-]", "-", text.lower())[:63]


def move_label(move_id: str) -> str:
    """The `spotplan-move` label of a move: its id when that is a valid label value, else the id
    made valid plus a hash of the exact id, so that `Train.A` and `train-a` (or two long ids that
    share 63 characters) never find, and release, each other's instances."""
    value = label_value(move_id)
    if value == move_id:
        return value
    return f"{value[:54]}-{hashlib.sha256(move_id.encode()).hexdigest()[:8]}"


def instance_name(move_id: str, token: str, index: int) -> str:
    base = re.sub(r"[^a-z0-9-]", "-", move_id.lower()).strip("-")[:40] or "move"
    return f"sp-{base}-{token[:8]}-{index}"


def _translate(where: str, exc: Exception) -> tuple[SpotplanError, str] | None:
    """google-api-core and google-auth errors as spotplan errors; credentials problems exit 4."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as authexc

    if isinstance(exc, authexc.GoogleAuthError):
        return CredentialsError(f"{where}: {exc}", hint="gcloud auth application-default login"), type(exc).__name__
    if isinstance(exc, (gexc.Unauthenticated, gexc.PermissionDenied, gexc.Forbidden)):
        return CredentialsError(f"{where}: {exc.code} {exc.message}"), f"{exc.code} {type(exc).__name__}"
    if isinstance(exc, gexc.GoogleAPICallError):
        return CloudError(f"{where}: {exc.code} {exc.message}"), f"{exc.code} {type(exc).__name__}"
    # requests' ConnectionError (an OSError) escapes google-api-core on an unreachable endpoint.
    if isinstance(exc, (gexc.GoogleAPIError, OSError)):
        return CloudError(f"{where}: {exc}"), type(exc).__name__
    return None


class GcpProvider:
    name = NAME

    def __init__(self, region: str) -> None:
        self.region = region
        self._clients: dict[str, Any] = {}
        self.seen: set[tuple[str, str]] = set()  # (project, zone) pairs this run touched

    # ---- clients ---------------------------------------------------------------------------

    def _client(self, kind: str) -> Any:
        if kind not in self._clients:
            require_extra("google.cloud.compute_v1", "gcp")
            from google.api_core.client_options import ClientOptions
            from google.cloud import compute_v1

            endpoint = os.environ.get("SPOTPLAN_GCP_COMPUTE_ENDPOINT")
            kwargs: dict[str, Any] = {"transport": "rest"}
            if endpoint:
                kwargs["client_options"] = ClientOptions(api_endpoint=endpoint)
                if not os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
                    from google.auth.credentials import AnonymousCredentials

                    kwargs["credentials"] = AnonymousCredentials()
            factory = {
                "instances": compute_v1.InstancesClient,
                "machine_types": compute_v1.MachineTypesClient,
                "regions": compute_v1.RegionsClient,
                "zone_operations": compute_v1.ZoneOperationsClient,
            }[kind]
            try:
                client: Any = factory(**kwargs)
            except Exception as exc:
                from google.auth import exceptions as authexc

                if isinstance(exc, authexc.GoogleAuthError):
                    raise CredentialsError(f"GCP credentials: {exc}",
                                           hint="gcloud auth application-default login") from exc
                raise
            if kind == "instances":
                # The operation poller otherwise reaches compute.googleapis.com whatever the endpoint.
                client._transport._extended_operations_services["zone_operations"] = self._client(
                    "zone_operations")
            self._clients[kind] = client
        return self._clients[kind]

    def _call(self, service: str, method: str, params: dict[str, Any], note: str = "") -> Call:
        return Call.of(NAME, f"compute.{service}", method, params, PERMISSIONS, note)

    def _send(self, call: Call, wait: bool = False) -> Any:
        service = call.service.split(".", 1)[1]
        # The whole request message (not the flattened arguments): request_id and filter are only there.
        params = {"request": dict(call.params)}
        with translated(call, _translate):
            result = getattr(self._client(service), call.method)(**params)
            if wait:
                result.result(timeout=600)
                if result.error_code:
                    failure = CloudError(f"{call.service}.{call.method}: {result.error_code} {result.error_message}")
                    call.mark_failed(failure, str(result.error_code))
                    raise failure
        return result

    def _op(self, call: Call, dry_run: bool) -> None:
        call.run(dry_run, lambda: self._send(call, wait=True))

    # ---- Provider protocol ------------------------------------------------------------------

    def _project(self, spec: LaunchSpec) -> str:
        if not spec.source_ids:
            raise InputError(f"move {spec.move_id}: source.instance_ids is empty")
        if not spec.from_elsewhere(NAME):
            return parse_id(spec.source_ids[0])[0]
        # From another cloud there is no source project: the one gcloud and the client libraries use.
        project = os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("CLOUDSDK_CORE_PROJECT")
        if not project:
            raise InputError(f"move {spec.move_id}: the source is on {spec.source_provider}, so there is no source "
                             "project to create the GCP target in: set GOOGLE_CLOUD_PROJECT")
        return project

    def _known_zone(self, spec: LaunchSpec) -> str | None:
        """The plan's target zone, else the source's when it is in the target region; None when
        preflight must choose one."""
        if spec.zone:
            return spec.zone
        if not spec.from_elsewhere(NAME) and spec.source_ids:
            zone = parse_id(spec.source_ids[0])[1]
            if zone.startswith(f"{spec.region}-"):
                return zone
        return None

    def _zone(self, spec: LaunchSpec) -> str:
        zone = self._known_zone(spec)
        if zone is None:
            raise InputError(f"move {spec.move_id}: no zone for the GCP target in {spec.region}: set target.zone "
                             "in the plan")
        return zone

    def preflight(self, spec: LaunchSpec, dry_run: bool) -> tuple[list[Call], dict[str, Any]]:
        if not spec.image:
            raise InputError(f"move {spec.move_id}: launch.image (a GCP image) is required to start the target")
        if not any(mark in spec.image for mark in ("images/", "://")):
            elsewhere = spec.launch_block_note(NAME)
            raise InputError(f"move {spec.move_id}: launch.image {spec.image!r} is not a GCP image "
                             f"(projects/P/global/images/NAME or .../images/family/F){elsewhere}")
        project = self._project(spec)
        region = self._call("regions", "get", {"project": project, "region": spec.region},
                            note="quota, and the region's zones")
        calls: list[Call] = []
        reg = None
        zone = self._known_zone(spec)
        if zone is None:
            # Another region or cloud, and the plan names no zone: the first zone of the target
            # region that offers the type.
            reg = self._read(region, calls)
            zones = sorted(z.rsplit("/", 1)[-1] for z in reg.zones)
        else:
            zones = [zone]
        got = None
        for zone in zones:
            mt = self._call("machine_types", "get", {"project": project, "zone": zone,
                                                     "machine_type": spec.instance_type},
                            note="credentials, and the target type exists in the zone")
            calls.append(mt)
            got = self._machine_type(mt, spec, zone, alone=len(zones) == 1)
            if got is not None:
                break
        if got is None:
            raise CloudError(f"move {spec.move_id}: {spec.instance_type} is not offered in any zone of {spec.region}")
        if reg is None:
            reg = self._read(region, calls)
        for quota in reg.quotas:
            if quota.metric in ("INSTANCES", "PREEMPTIBLE_CPUS", "CPUS"):
                need = spec.count * (got.guest_cpus if quota.metric != "INSTANCES" else 1)
                if quota.limit - quota.usage < need:
                    raise CloudError(f"move {spec.move_id}: quota {quota.metric} in {spec.region} has "
                                     f"{quota.limit - quota.usage:g} left, {need} needed")
        # `placement` comes back to list_created after a crash: where to look for instances a launch
        # created but never journaled, when the target is not in the source's zone.
        return calls, {"project": project, "target_zone": zone, "placement": f"projects/{project}/zones/{zone}"}

    def _read(self, call: Call, calls: list[Call]) -> Any:
        calls.append(call)
        result = self._send(call)
        call.outcome = "ok"
        return result

    def _machine_type(self, call: Call, spec: LaunchSpec, zone: str, alone: bool) -> Any:
        """The machine type in one zone, or None when the zone does not offer it and others are
        tried."""
        try:
            got = self._send(call)
        except CloudError as exc:
            from google.api_core import exceptions as gexc  # here: the SDK is there once a call was sent

            # Only an answer about the type means "not offered"; an unreachable endpoint says so itself.
            if isinstance(exc.__cause__, (gexc.NotFound, gexc.BadRequest)):
                if not alone:
                    call.outcome = "not offered"
                    return None
                raise CloudError(f"move {spec.move_id}: {spec.instance_type} is not offered in {zone} ({exc})") from exc
            raise
        call.outcome = "ok"
        return got

    def _existing(self, project: str, zone: str, key: str, value: str) -> tuple[Call, list[str]]:
        call = self._call("instances", "list",
                          {"project": project, "zone": zone, "filter": f'labels.{key} = "{value}"'})
        names = [i.name for i in self._send(call) if i.labels.get(key) == value
                 and _STATE.get(i.status, "pending") != "terminated"]
        call.outcome = "ok"
        return call, sorted(f"projects/{project}/zones/{zone}/instances/{n}" for n in names)

    def launch(self, spec: LaunchSpec, dry_run: bool) -> tuple[list[Call], list[str]]:
        project, zone = self._project(spec), self._zone(spec)
        self.seen.add((project, zone))
        # The lookup is a read, so a dry run sends it too and says when an interrupted run's
        # instances would be reused; when it fails, the dry run still builds the inserts.
        calls: list[Call] = []
        existing: list[str] = []
        try:
            lookup, existing = self._existing(project, zone, TOKEN_TAG, spec.token)
        except SpotplanError:
            if not dry_run:
                raise
        else:
            calls.append(lookup)
        ids = []
        for index in range(spec.count):
            name = instance_name(spec.move_id, spec.token, index)
            iid = f"projects/{project}/zones/{zone}/instances/{name}"
            ids.append(iid)
            if iid in existing:
                calls[0].note = "reused: created by an interrupted run"
                calls[0].ids.append(iid)
                continue
            # GPU VMs cannot live-migrate: TERMINATE on host maintenance, whatever the market.
            scheduling: dict[str, Any] = {"on_host_maintenance": "TERMINATE"}
            if spec.market == "spot":
                # GCP Spot has no bid: max_price is only checked against on-demand in preflight. Spot
                # takes no automatic restart.
                scheduling.update(provisioning_model="SPOT", instance_termination_action="STOP",
                                  automatic_restart=False)
            else:
                # The on-demand fallback is the copy that must keep running: after a host event it is
                # restarted, and its boot script resumes from the checkpoint its metadata names.
                scheduling.update(provisioning_model="STANDARD", automatic_restart=True)
            network: dict[str, Any] = {"subnetwork": spec.network["subnet"]} if spec.network.get("subnet") else {
                "network": "global/networks/default"}
            labels = {label_value(k): move_label(v) if k == MOVE_TAG else label_value(v) for k, v in spec.tags.items()}
            resource = {
                "name": name,
                "machine_type": f"zones/{zone}/machineTypes/{spec.instance_type}",
                "scheduling": scheduling,
                "labels": labels,
                "metadata": {"items": [{"key": "startup-script", "value": spec.user_data}]},
                # The boot disk carries the labels too, so a sweep by label sees it.
                "disks": [{"boot": True, "auto_delete": True,
                           "initialize_params": {"source_image": spec.image, "labels": labels}}],
                "network_interfaces": [network],
            }
            request_id = str(uuid.UUID(hex=(spec.token + f"{index:08x}")[-32:]))
            call = self._call("instances", "insert",
                              {"project": project, "zone": zone, "instance_resource": resource,
                               "request_id": request_id})
            call.ids = [iid]
            self._op(call, dry_run)
            calls.append(call)
        return calls, ids

    def trigger_checkpoint_ssm(
        self, source_ids: Sequence[str], command: str, move_id: str, dry_run: bool
    ) -> tuple[list[Call], dict[str, Any]]:
        raise InputError("checkpoint_trigger via ssm is AWS-only; use via: command (e.g. gcloud compute ssh)")

    def _each(self, method: str, ids: Sequence[str], dry_run: bool) -> list[Call]:
        calls = []
        for iid in ids:
            project, zone, name = parse_id(iid)
            self.seen.add((project, zone))
            call = self._call("instances", method, {"project": project, "zone": zone, "instance": name})
            self._op(call, dry_run)
            calls.append(call)
        return calls

    def stop(self, ids: Sequence[str], dry_run: bool) -> list[Call]:
        return self._each("stop", ids, dry_run)

    def start(self, ids: Sequence[str], dry_run: bool) -> list[Call]:
        return self._each("start", ids, dry_run)

    def release(self, ids: Sequence[str], dry_run: bool) -> list[Call]:
        return self._each("delete", ids, dry_run)

    def signal_resume(self, ids: Sequence[str], checkpoint_uri: str, dry_run: bool) -> list[Call]:
        calls = []
        for iid in ids:
            project, zone, name = parse_id(iid) if not iid.startswith("<") else ("<project>", "<zone>", iid)
            items: list[dict[str, Any]] = []
            fingerprint = "<current fingerprint>"
            # Read-modify-write: the metadata's fingerprint and items come from a get (built, not sent,
            # in a dry run, where the target does not exist yet).
            get = self._call("instances", "get", {"project": project, "zone": zone, "instance": name})
            calls.append(get)
            if dry_run:
                get.outcome = "dry-run"
            else:
                inst = self._send(get)
                get.outcome = "ok"
                fingerprint = inst.metadata.fingerprint
                items = [{"key": i.key, "value": i.value} for i in inst.metadata.items if i.key != RESUME_TAG]
            items.append({"key": RESUME_TAG, "value": checkpoint_uri})
            call = self._call("instances", "set_metadata",
                              {"project": project, "zone": zone, "instance": name,
                               "metadata_resource": {"fingerprint": fingerprint, "items": items}})
            if dry_run:
                call.note = "sent with the instance's current items (the get above) plus this one"
            self._op(call, dry_run)
            calls.append(call)
        return calls

    def states(self, ids: Sequence[str], dry_run: bool = False) -> tuple[list[Call], dict[str, str]]:
        calls, out = [], {}
        for iid in ids:
            project, zone, name = parse_id(iid) if not iid.startswith("<") else ("<project>", "<zone>", iid)
            call = self._call("instances", "get", {"project": project, "zone": zone, "instance": name})
            calls.append(call)
            if dry_run:
                call.outcome, out[iid] = "dry-run", "running"
                continue
            try:
                inst = self._send(call)
            except CloudError as exc:
                from google.api_core import exceptions as gexc  # here: the SDK is there once a call was sent

                if isinstance(exc.__cause__, gexc.NotFound):
                    call.outcome = "not found"
                    out[iid] = "missing"
                    continue
                raise
            call.outcome = "ok"
            out[iid] = _STATE.get(inst.status, "pending")
        return calls, out

    def list_created(self, move_id: str, near: Sequence[str] = ()) -> dict[str, str]:
        """Instances labelled with the move, in every (project, zone) this run touched or `near`
        names (instance ids, or `projects/P/zones/Z` placements)."""
        out: dict[str, str] = {}
        for iid in near:
            if _ID.match(iid):
                self.seen.add(parse_id(iid)[:2])
            elif placement := _PLACEMENT.match(iid):
                self.seen.add((placement["project"], placement["zone"]))
        # Only the exact move label: the plain cleaned id an earlier version used can be another
        # move's label (`Train.A` and `train-a`), and what is found here is released.
        label = move_label(move_id)
        for project, zone in sorted(self.seen):
            call = self._call("instances", "list", {"project": project, "zone": zone,
                                                    "filter": f'labels.{MOVE_TAG} = "{label}"'})
            for inst in self._send(call):
                if inst.labels.get(MOVE_TAG) == label:
                    out[f"projects/{project}/zones/{zone}/instances/{inst.name}"] = _STATE.get(inst.status, "pending")
        return out
