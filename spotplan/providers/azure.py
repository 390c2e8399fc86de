"""Azure for `spotplan migrate`: virtual machines (Spot create, deallocate/start/delete, tags) through
azure-mgmt-compute, imported lazily.

`SPOTPLAN_AZURE_ARM_ENDPOINT` replaces https://management.azure.com, `SPOTPLAN_AZURE_TOKEN` is a
static bearer token (otherwise azure-identity's DefaultAzureCredential), and `REQUESTS_CA_BUNDLE`
trusts a private CA. Instance ids are full ARM ids; targets are created in the subscription and
resource group of the source. VM names are derived from the move and step, so a resumed
create_or_update (a PUT) cannot create a second VM.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Sequence
from functools import partial
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

NAME = "azure"

RESUME_FETCH = (
    "curl -sf -H Metadata:true 'http://169.254.169.254/metadata/instance/compute/tagsList?api-version=2021-02-01'"
    " | python3 -c \"import json,sys; print(next((t['value'] for t in json.load(sys.stdin)"
    f" if t['name'] == '{RESUME_TAG}'), ''))\""
)

PERMISSIONS: dict[str, tuple[str, ...]] = {
    "compute.virtual_machine_sizes.list": ("Microsoft.Compute/locations/vmSizes/read",),
    "compute.usage.list": ("Microsoft.Compute/locations/usages/read",),
    "compute.virtual_machines.get": ("Microsoft.Compute/virtualMachines/read",),
    "compute.virtual_machines.list": ("Microsoft.Compute/virtualMachines/read",),
    "compute.virtual_machines.instance_view": ("Microsoft.Compute/virtualMachines/instanceView/read",),
    "compute.virtual_machines.begin_create_or_update": (
        "Microsoft.Compute/virtualMachines/write",
        "Microsoft.Compute/disks/write",
        "Microsoft.Network/virtualNetworks/subnets/join/action",
        "Microsoft.Network/networkInterfaces/write",
        "Microsoft.Network/networkInterfaces/join/action",
    ),
    "compute.virtual_machines.begin_update": ("Microsoft.Compute/virtualMachines/write",),
    "compute.virtual_machines.begin_deallocate": ("Microsoft.Compute/virtualMachines/deallocate/action",),
    "compute.virtual_machines.begin_start": ("Microsoft.Compute/virtualMachines/start/action",),
    "compute.virtual_machines.begin_delete": (
        "Microsoft.Compute/virtualMachines/delete",
        "Microsoft.Network/networkInterfaces/delete",
        "Microsoft.Compute/disks/delete",
    ),
}

_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Compute/"
    r"virtualMachines/(?P<name>[^/]+)$",
    re.IGNORECASE,
)
_POWER = {
    "running": "running",
    "starting": "pending",
    "stopping": "stopping",
    "deallocating": "stopping",
    "stopped": "stopped",
    "deallocated": "stopped",
}


def permission_document() -> dict[str, Any]:
    return {
        "Name": "spotplan migrate",
        "IsCustom": True,
        "Description": "What `spotplan migrate` needs to move workloads onto Spot VMs",
        "Actions": all_permissions(PERMISSIONS),
        "NotActions": [],
        # verify_checkpoint lists and reads an az:// / abfs:// checkpoint where spotplan runs.
        "DataActions": ["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"],
        "AssignableScopes": ["/subscriptions/<subscription-id>"],
    }


def make(region: str) -> AzureProvider:
    return AzureProvider(region)


def parse_id(instance_id: str) -> tuple[str, str, str]:
    m = _ID.match(instance_id)
    if not m:
        raise InputError(f"{instance_id!r} is not an Azure VM resource id "
                         "(/subscriptions/S/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/NAME)")
    return m["sub"], m["rg"], m["name"]


def vm_name(move_id: str, token: str, index: int) -> str:
    base = re.sub(r"[^A-Za-z0-9-]", "-", move_id).strip("-")[:40] or "move"
    return f"sp-{base}-{token[:8]}-{index}"


def image_reference(image: str) -> dict[str, Any]:
    """An image URN publisher:offer:sku:version, or a full image resource id."""
    if image.startswith("/"):
        return {"id": image}
    parts = image.split(":")
    if len(parts) != 4:
        raise InputError(f"launch.image {image!r}: expected an Azure image URN publisher:offer:sku:version")
    return dict(zip(("publisher", "offer", "sku", "version"), parts))


class _StaticToken:
    """A TokenCredential for SPOTPLAN_AZURE_TOKEN (never printed)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken(self._token, 4102444800)


def _translate(where: str, exc: Exception) -> tuple[SpotplanError, str] | None:
    """azure-core errors as spotplan errors; credentials problems (and 401/403) exit 4."""
    from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError

    if isinstance(exc, ClientAuthenticationError):
        first = (exc.message or "authentication failed").strip().splitlines()[0]
        failure = CredentialsError(f"{where}: {first}", hint="az login, or set SPOTPLAN_AZURE_TOKEN")
        return failure, f"{exc.status_code or ''} {type(exc).__name__}".strip()
    if isinstance(exc, HttpResponseError):
        code = getattr(exc.error, "code", None) or exc.reason
        if exc.status_code in (401, 403):
            return CredentialsError(f"{where}: {exc.status_code} {code}"), f"{exc.status_code} {code}"
        message = (exc.message or "").splitlines()[0]
        return CloudError(f"{where}: {exc.status_code} {code}: {message}"), f"{exc.status_code} {code}"
    if isinstance(exc, AzureError):
        return CloudError(f"{where}: {exc}"), type(exc).__name__
    return None


class AzureProvider:
    name = NAME

    def __init__(self, region: str) -> None:
        self.region = region
        self._clients: dict[str, Any] = {}
        self.seen: set[tuple[str, str]] = set()
        self._access: dict[str, dict[str, Any]] = {}  # source VM id → the sign-in its targets get

    def _client(self, subscription: str) -> Any:
        if subscription not in self._clients:
            require_extra("azure.mgmt.compute", "azure")
            from azure.mgmt.compute import ComputeManagementClient

            token = os.environ.get("SPOTPLAN_AZURE_TOKEN")
            if token:
                credential: Any = _StaticToken(token)
            else:
                require_extra("azure.identity", "azure")
                from azure.identity import DefaultAzureCredential

                credential = DefaultAzureCredential()
            kwargs: dict[str, Any] = {}
            endpoint = os.environ.get("SPOTPLAN_AZURE_ARM_ENDPOINT")
            if endpoint:
                kwargs["base_url"] = endpoint
                kwargs["credential_scopes"] = ["https://management.azure.com/.default"]
            self._clients[subscription] = ComputeManagementClient(credential, subscription, **kwargs)
        return self._clients[subscription]

    def _call(self, service: str, method: str, params: dict[str, Any], note: str = "") -> Call:
        return Call.of(NAME, f"compute.{service}", method, params, PERMISSIONS, note)

    def _send(self, call: Call, sub: str) -> Any:
        service = call.service.split(".", 1)[1]
        with translated(call, _translate):
            result = getattr(getattr(self._client(sub), service), call.method)(**call.params)
            if call.method.startswith("begin_"):
                return result.result()
            if call.method == "list":
                return list(result)
            return result

    def _spec_scope(self, spec: LaunchSpec) -> tuple[str, str]:
        if not spec.source_ids:
            raise InputError(f"move {spec.move_id}: source.instance_ids is empty")
        sub, rg, _ = parse_id(spec.source_ids[0])
        self.seen.add((sub, rg))
        return sub, rg

    # ---- Provider protocol ------------------------------------------------------------------

    def preflight(self, spec: LaunchSpec, dry_run: bool) -> tuple[list[Call], dict[str, Any]]:
        if spec.from_elsewhere(NAME):
            raise InputError(
                f"move {spec.move_id}: an Azure target is created in the source VM's subscription and resource "
                f"group, with its admin user and SSH keys, so it needs an Azure source (this one is on "
                f"{spec.source_provider}): plan it with --scope region or provider"
            )
        if not spec.image:
            raise InputError(f"move {spec.move_id}: launch.image (an image URN) is required to start the target")
        image_reference(spec.image)
        if not spec.network.get("subnet"):
            # ARM creates a VM only with a network interface, and its NIC needs a subnet.
            raise InputError(
                f"move {spec.move_id}: launch.network.subnet is required for an Azure target (a VM needs a network "
                "interface in a subnet): set it to the subnet's ARM id, /subscriptions/SUB/resourceGroups/RG/"
                "providers/Microsoft.Network/virtualNetworks/VNET/subnets/NAME"
            )
        sub, _rg = self._spec_scope(spec)
        sizes = self._call("virtual_machine_sizes", "list", {"location": spec.region},
                           note="credentials, and the target size exists in the region")
        found = [s for s in self._send(sizes, sub) if s.name.lower() == spec.instance_type.lower()]
        sizes.outcome = "ok"
        if not found:
            raise CloudError(f"move {spec.move_id}: {spec.instance_type} is not offered in {spec.region}")
        usage = self._call("usage", "list", {"location": spec.region}, note="Spot vCPU quota")
        need = spec.count * (found[0].number_of_cores or 0)
        for item in self._send(usage, sub):
            if item.name.value == "lowPriorityCores" and item.limit - item.current_value < need:
                raise CloudError(f"move {spec.move_id}: Spot vCPU quota in {spec.region} has "
                                 f"{item.limit - item.current_value} left, {need} needed")
        usage.outcome = "ok"
        calls = [sizes, usage]
        access = self._source_access(spec, calls)
        return calls, {"subscription": sub, "sign_in": access}

    def _source_access(self, spec: LaunchSpec, calls: list[Call]) -> dict[str, Any]:
        """The target's sign-in, copied from the first source VM: its admin user and SSH public keys.
        Azure will not create a Linux VM without keys or a password, and spotplan never handles
        secrets, so a source that signs in with a password (or runs Windows) is refused here, before
        anything is created."""
        source = spec.source_ids[0]
        if source in self._access:
            return self._access[source]
        sub, rg, name = parse_id(source)
        vm = self._get(sub, rg, name, calls)
        if vm is None:
            raise CloudError(f"move {spec.move_id}: source VM {name} was not found in resource group {rg}")
        calls[-1].note = "the source's admin user and SSH public keys, for the target"
        profile = vm.os_profile
        linux = profile.linux_configuration if profile is not None else None
        keys = list(linux.ssh.public_keys or []) if linux is not None and linux.ssh is not None else []
        if profile is None or not profile.admin_username or not keys:
            raise CloudError(
                f"move {spec.move_id}: source VM {name} has no SSH public keys to give the target (it signs in "
                "with a password, or runs Windows); Azure needs the sign-in at creation and spotplan never "
                "copies passwords: add an SSH key to the source VM, then run the move again"
            )
        access = {
            "adminUsername": profile.admin_username,
            "linuxConfiguration": {
                "disablePasswordAuthentication": True,
                "ssh": {"publicKeys": [{"path": k.path, "keyData": k.key_data} for k in keys]},
            },
        }
        self._access[source] = access
        return access

    def launch(self, spec: LaunchSpec, dry_run: bool) -> tuple[list[Call], list[str]]:
        sub, rg = self._spec_scope(spec)
        calls: list[Call] = []
        ids: list[str] = []
        from_network = spec.network.get("subnet")
        access: dict[str, Any]
        if spec.sign_in:
            access = dict(spec.sign_in)  # journaled by the move's preflight
        elif dry_run and spec.source_ids[0] not in self._access:
            # preflight read (or failed to read) the source already; the dry run still shows the create
            access = {"adminUsername": "<the source's>",
                                      "linuxConfiguration": "<the source's SSH public keys>"}
        else:
            access = self._source_access(spec, calls)
        for index in range(spec.count):
            name = vm_name(spec.move_id, spec.token, index)
            iid = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}"
            ids.append(iid)
            # The lookup is a read, so a dry run sends it too and says when an interrupted run's VM
            # would be reused; when it fails, the dry run still builds the create.
            try:
                existing = self._get(sub, rg, name, calls)
            except SpotplanError:
                if not dry_run:
                    raise
                existing = None
            if existing is not None and (existing.tags or {}).get(TOKEN_TAG) == spec.token:
                calls[-1].note = "reused: created by an interrupted run"
                calls[-1].ids = [iid]
                continue
            props: dict[str, Any] = {
                "hardwareProfile": {"vmSize": spec.instance_type},
                "storageProfile": {"imageReference": image_reference(spec.image or ""),
                                   "osDisk": {"createOption": "FromImage", "deleteOption": "Delete"}},
                # Linux host names take 64 characters: the whole name, so a gang's VMs differ.
                "osProfile": {"computerName": name[:64], **access,
                              "customData": base64.b64encode(spec.user_data.encode()).decode()},
            }
            if spec.market == "spot":
                props.update(priority="Spot", evictionPolicy="Deallocate",
                             billingProfile={"maxPrice": spec.max_price if spec.max_price is not None else -1})
            else:
                props["priority"] = "Regular"
            if from_network:
                props["networkProfile"] = {
                    "networkApiVersion": "2020-11-01",
                    # The NIC is created with the VM: its configuration carries the VM's tags, so it is
                    # found and attributed like everything else migrate creates.
                    "networkInterfaceConfigurations": [{
                        "name": f"{name}-nic", "tags": spec.tags, "properties": {
                            "primary": True, "deleteOption": "Delete",
                            "ipConfigurations": [{"name": "ipconfig1",
                                                  "properties": {"subnet": {"id": from_network}}}]}}],
                }
            body = {"location": spec.region,
                    "tags": spec.tags,
                    "properties": props}
            call = self._call("virtual_machines", "begin_create_or_update",
                              {"resource_group_name": rg, "vm_name": name, "parameters": body})
            call.ids = [iid]
            call.run(dry_run, partial(self._send, call, sub))
            calls.append(call)
        return calls, ids

    def _get(self, sub: str, rg: str, name: str, calls: list[Call], method: str = "get") -> Any:
        """virtual_machines.<method> (get or instance_view) of one VM, or None when there is no such VM."""
        call = self._call("virtual_machines", method, {"resource_group_name": rg, "vm_name": name})
        calls.append(call)
        try:
            vm = self._send(call, sub)
        except CloudError as exc:
            from azure.core.exceptions import ResourceNotFoundError  # here: the SDK is there once a call was sent

            if isinstance(exc.__cause__, ResourceNotFoundError):
                call.outcome = "not found"
                return None
            raise
        call.outcome = "ok"
        return vm

    def trigger_checkpoint_ssm(
        self, source_ids: Sequence[str], command: str, move_id: str, dry_run: bool
    ) -> tuple[list[Call], dict[str, Any]]:
        raise InputError("checkpoint_trigger via ssm is AWS-only; use via: command (e.g. az vm run-command)")

    def _each(self, method: str, ids: Sequence[str], dry_run: bool) -> list[Call]:
        calls = []
        for iid in ids:
            sub, rg, name = parse_id(iid)
            self.seen.add((sub, rg))
            call = self._call("virtual_machines", method, {"resource_group_name": rg, "vm_name": name})
            call.run(dry_run, partial(self._send, call, sub))
            calls.append(call)
        return calls

    def stop(self, ids: Sequence[str], dry_run: bool) -> list[Call]:
        return self._each("begin_deallocate", ids, dry_run)

    def start(self, ids: Sequence[str], dry_run: bool) -> list[Call]:
        return self._each("begin_start", ids, dry_run)

    def release(self, ids: Sequence[str], dry_run: bool) -> list[Call]:
        return self._each("begin_delete", ids, dry_run)

    def signal_resume(self, ids: Sequence[str], checkpoint_uri: str, dry_run: bool) -> list[Call]:
        calls: list[Call] = []
        for iid in ids:
            if iid.startswith("<"):
                sub, rg, name = "<subscription>", "<resource-group>", iid
                tags: dict[str, str] = {}
            else:
                sub, rg, name = parse_id(iid)
                tags = {}
                if not dry_run:
                    vm = self._get(sub, rg, name, calls)
                    tags = dict((vm.tags if vm is not None else None) or {})
            if dry_run:
                # Read-modify-write: the tags come from a get (built, not sent, in a dry run).
                get = self._call("virtual_machines", "get", {"resource_group_name": rg, "vm_name": name})
                get.outcome = "dry-run"
                calls.append(get)
            tags[RESUME_TAG] = checkpoint_uri
            call = self._call("virtual_machines", "begin_update",
                              {"resource_group_name": rg, "vm_name": name, "parameters": {"tags": tags}})
            if dry_run:
                call.note = "sent with the VM's current tags (the get above) plus this one"
            call.run(dry_run, partial(self._send, call, sub))
            calls.append(call)
        return calls

    def states(self, ids: Sequence[str], dry_run: bool = False) -> tuple[list[Call], dict[str, str]]:
        calls: list[Call] = []
        out: dict[str, str] = {}
        for iid in ids:
            if dry_run:
                rg, name = ("<resource-group>", iid) if iid.startswith("<") else parse_id(iid)[1:]
                call = self._call("virtual_machines", "instance_view", {"resource_group_name": rg, "vm_name": name})
                call.outcome, out[iid] = "dry-run", "running"
                calls.append(call)
                continue
            view = self._get(*parse_id(iid), calls, method="instance_view")
            if view is None:
                out[iid] = "missing"
                continue
            power = [s.code.split("/", 1)[1] for s in (view.statuses or []) if s.code.startswith("PowerState/")]
            out[iid] = _POWER.get(power[0], "pending") if power else "pending"
        return calls, out

    def list_created(self, move_id: str, near: Sequence[str] = ()) -> dict[str, str]:
        for iid in near:
            if _ID.match(iid):
                self.seen.add(parse_id(iid)[:2])
        found: list[str] = []
        for sub, rg in sorted(self.seen):
            call = self._call("virtual_machines", "list", {"resource_group_name": rg})
            for vm in self._send(call, sub):
                if (vm.tags or {}).get(MOVE_TAG) == move_id:
                    found.append(f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/"
                                 f"virtualMachines/{vm.name}")
        return self.states(found)[1] if found else {}
