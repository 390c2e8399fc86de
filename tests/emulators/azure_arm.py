"""A local HTTPS emulator of the Azure Resource Manager compute paths `spotplan migrate` uses
(providers.md B10): vmSizes and usages per location, and virtual machines PUT/GET/PATCH/DELETE,
deallocate/start, instanceView, simulateEviction (204) and list per resource group. Long-running
operations finish at once (200 with provisioningState Succeeded), as ARM allows. A create refuses
the Spot fields ARM refuses (priority/evictionPolicy enums; maxPrice other than -1 or a positive
price, or not above `spot_prices` for the size) and stores ARM's defaults (Deallocate, -1).

It serves TLS with a trustme test CA (azure-core refuses bearer tokens over http); `ca_file` is the
PEM to put in REQUESTS_CA_BUNDLE. It checks the bearer token, and `fail_next(action, status, code)`
fails the next call of one action once.
"""

from __future__ import annotations

import json
import re
import ssl
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tests.emulators._http import Faults, LocalServer, QuietHandler

# a source VM's public key (public keys are not secrets; ARM returns them)
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHjX2yfbHq5lQp0vM7d6wB3s9kY2rT8uN4pZ1cE6fG7h research@laptop"
SIZES = {
    "Standard_NC24ads_A100_v4": 24, "Standard_NC48ads_A100_v4": 48, "Standard_ND96isr_H100_v5": 96,
    "Standard_NC4as_T4_v3": 4, "Standard_NV36ads_A10_v5": 36,
}
_S = r"/subscriptions/(?P<sub>[^/]+)"
_VM = _S + r"/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Compute/virtualMachines"
ROUTES = [
    ("GET", _S + r"/providers/Microsoft\.Compute/locations/(?P<loc>[^/]+)/vmSizes$", "vmSizes.list"),
    ("GET", _S + r"/providers/Microsoft\.Compute/locations/(?P<loc>[^/]+)/usages$", "usages.list"),
    ("GET", _VM + r"$", "virtualMachines.list"),
    ("PUT", _VM + r"/(?P<name>[^/]+)$", "virtualMachines.createOrUpdate"),
    ("GET", _VM + r"/(?P<name>[^/]+)$", "virtualMachines.get"),
    ("PATCH", _VM + r"/(?P<name>[^/]+)$", "virtualMachines.update"),
    ("DELETE", _VM + r"/(?P<name>[^/]+)$", "virtualMachines.delete"),
    ("POST", _VM + r"/(?P<name>[^/]+)/deallocate$", "virtualMachines.deallocate"),
    ("POST", _VM + r"/(?P<name>[^/]+)/start$", "virtualMachines.start"),
    ("POST", _VM + r"/(?P<name>[^/]+)/powerOff$", "virtualMachines.powerOff"),
    ("GET", _VM + r"/(?P<name>[^/]+)/instanceView$", "virtualMachines.instanceView"),
    ("POST", _VM + r"/(?P<name>[^/]+)/simulateEviction$", "virtualMachines.simulateEviction"),
]
PRIORITIES = ("Regular", "Low", "Spot", "SpotPlus")
EVICTION_POLICIES = ("Deallocate", "Delete")


class AzureArmEmulator(LocalServer):
    def __init__(self, token: str = "test-token", spot_core_limit: int = 1000) -> None:
        import trustme

        self.token = token
        self.spot_core_limit = spot_core_limit
        # The current Spot price per (location, size), USD/h: a positive billingProfile.maxPrice must
        # exceed it at create time (providers.md B10). Sizes without one accept any positive price.
        self.spot_prices: dict[tuple[str, str], float] = {}
        self.evict_armed: str | None = None
        self.vms: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.calls: list[str] = []
        self.faults = Faults()
        self.lock = threading.RLock()
        self._dir = tempfile.TemporaryDirectory(prefix="azure-arm-")
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = str(Path(self._dir.name) / "ca.pem")
        ca.cert_pem.write_to_path(self.ca_file)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        emu = self

        class Handler(QuietHandler):
            def _handle(self) -> None:
                url = urlparse(self.path)
                raw = self.read_body()
                body = json.loads(raw) if raw else {}
                if self.headers.get("Authorization") != f"Bearer {emu.token}":
                    status, payload = 401, _error("InvalidAuthenticationToken", "The access token is invalid.")
                else:
                    for method, pattern, action in ROUTES:
                        m = re.match(pattern, url.path, re.IGNORECASE)
                        if m and method == self.command:
                            status, payload = emu.dispatch(action, m.groupdict(), body)
                            break
                    else:
                        status, payload = 404, _error("NotFound", f"no route {self.command} {url.path}")
                data = b"" if payload is None else json.dumps(payload).encode()
                self.reply(status, data, "application/json; charset=utf-8",
                           [("x-ms-request-id", str(uuid.uuid4()))])

            do_GET = do_PUT = do_PATCH = do_DELETE = do_POST = _handle

        super().__init__(Handler, tls=ctx)

    def stop(self) -> None:
        super().stop()
        self._dir.cleanup()

    def fail_next(self, action: str, status: int = 409, code: str = "OperationNotAllowed", skip: int = 0) -> None:
        with self.lock:
            self.faults.arm(action, status, code, skip=skip)

    # ---- test helpers ---------------------------------------------------------------------------

    def add_vm(
        self, sub: str, rg: str, name: str, size: str, location: str = "eastus", ssh_key: str | None = SSH_KEY
    ) -> str:
        """A running Linux VM that signs in with `ssh_key` (None: with a password, which ARM never returns)."""
        vid = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}"
        linux: dict[str, Any] = {"disablePasswordAuthentication": ssh_key is not None, "provisionVMAgent": True}
        if ssh_key is not None:
            linux["ssh"] = {"publicKeys": [{"path": "/home/azureuser/.ssh/authorized_keys", "keyData": ssh_key}]}
        with self.lock:
            self.vms[(sub, rg.lower(), name.lower())] = {
                "id": vid, "name": name, "type": "Microsoft.Compute/virtualMachines", "location": location,
                "tags": {}, "properties": {"hardwareProfile": {"vmSize": size}, "priority": "Regular",
                                           "osProfile": {"computerName": name[:15], "adminUsername": "azureuser",
                                                         "linuxConfiguration": linux, "secrets": [],
                                                         "allowExtensionOperations": True},
                                           "provisioningState": "Succeeded"},
                "_power": "running",
            }
        return vid

    def evict_on_next(self, action: str) -> None:
        """Evict the Spot VM the next call of `action` is about, just before answering (as
        simulateEviction does: its evictionPolicy decides whether it is deallocated or deleted)."""
        with self.lock:
            self.evict_armed = action

    def _evict(self, key: tuple[str, str, str]) -> None:
        vm = self.vms[key]
        if vm["properties"].get("evictionPolicy") == "Delete":
            del self.vms[key]
        else:  # Deallocate, the default for Spot
            vm["_power"] = "deallocated"

    def _spot_refused(self, location: Any, props: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """Refuse the Spot settings ARM refuses, and fill in its defaults (evictionPolicy Deallocate,
        maxPrice -1) on what is stored."""
        refused = _price_refused(props)
        if refused is not None:
            return 400, refused
        if props.get("priority") not in ("Spot", "Low"):
            return None
        props.setdefault("evictionPolicy", "Deallocate")
        props.setdefault("billingProfile", {"maxPrice": -1})
        props["billingProfile"].setdefault("maxPrice", -1)
        price = props["billingProfile"]["maxPrice"]
        current = self.spot_prices.get((str(location).lower(), props.get("hardwareProfile", {}).get("vmSize", "")))
        if price != -1 and current is not None and price <= current:
            # [unverified] the code and status; the rule (a positive maxPrice must exceed the current
            # Spot price, or the create fails) is providers.md B10.
            return 409, _error("OperationNotAllowed", f"Unable to perform operation 'Create VM' since the provided "
                               f"max price '{price} USD' is lower than the current spot price '{current} USD' "
                               f"for Azure Spot VM size '{props['hardwareProfile']['vmSize']}'.")
        return None

    def get(self, vid: str) -> dict[str, Any] | None:
        parts = vid.split("/")
        return self.vms.get((parts[2], parts[4].lower(), parts[8].lower()))

    def tagged(self, key: str, value: str) -> dict[str, dict[str, Any]]:
        return {vm["id"]: vm for vm in self.vms.values() if vm.get("tags", {}).get(key) == value}

    # ---- the API ------------------------------------------------------------------------------

    def dispatch(self, action: str, p: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        with self.lock:
            self.calls.append(action)
            fault = self.faults.take(action)
            if fault is not None:
                return fault[0], _error(fault[1], "injected fault")
            if action == "vmSizes.list":
                return 200, {"value": [{"name": n, "numberOfCores": c, "memoryInMB": c * 8192,
                                        "maxDataDiskCount": 8, "osDiskSizeInMB": 1047552,
                                        "resourceDiskSizeInMB": 65536} for n, c in SIZES.items()]}
            if action == "usages.list":
                used = sum(SIZES.get(vm["properties"]["hardwareProfile"]["vmSize"], 0) for vm in self.vms.values()
                           if vm["properties"].get("priority") == "Spot")
                return 200, {"value": [{"unit": "Count", "currentValue": used, "limit": self.spot_core_limit,
                                        "name": {"value": "lowPriorityCores",
                                                 "localizedValue": "Total Regional Low-priority vCPUs"}}]}
            if action == "virtualMachines.list":
                items = [_public(vm) for (s, rg, _n), vm in self.vms.items() if (s, rg) == (p["sub"], p["rg"].lower())]
                return 200, {"value": items}
            key = (p["sub"], p["rg"].lower(), p["name"].lower())
            if action == "virtualMachines.createOrUpdate":
                vm = self.vms.get(key)
                vid = (f"/subscriptions/{p['sub']}/resourceGroups/{p['rg']}/providers/Microsoft.Compute/"
                       f"virtualMachines/{p['name']}")
                props = dict(body.get("properties", {}))
                refused = _sign_in_refused(props.get("osProfile")) if vm is None else None
                if refused is not None:
                    return 400, refused
                spot_refused = self._spot_refused(body.get("location"), props)
                if spot_refused is not None:
                    return spot_refused
                props["provisioningState"] = "Succeeded"
                props.setdefault("vmId", str(uuid.uuid4()))
                new = {"id": vid, "name": p["name"], "type": "Microsoft.Compute/virtualMachines",
                       "location": body.get("location"), "tags": body.get("tags", {}), "properties": props,
                       "_power": vm["_power"] if vm else "running"}
                self.vms[key] = new
                return (200 if vm else 201), _public(new)
            vm = self.vms.get(key)
            if vm is not None and self.evict_armed == action and vm["properties"].get("priority") == "Spot":
                self.evict_armed = None
                self._evict(key)
                vm = self.vms.get(key)
            if vm is None:
                return 404, _error("ResourceNotFound", f"The Resource 'Microsoft.Compute/virtualMachines/"
                                                       f"{p['name']}' under resource group '{p['rg']}' was not found.")
            if action == "virtualMachines.get":
                return 200, _public(vm)
            if action == "virtualMachines.update":
                if "tags" in body:
                    vm["tags"] = body["tags"]
                return 200, _public(vm)
            if action == "virtualMachines.delete":
                del self.vms[key]
                return 200, None
            if action == "virtualMachines.deallocate":
                vm["_power"] = "deallocated"
                return 200, None
            if action == "virtualMachines.powerOff":
                vm["_power"] = "stopped"
                return 200, None
            if action == "virtualMachines.start":
                vm["_power"] = "running"
                return 200, None
            if action == "virtualMachines.simulateEviction":
                if vm["properties"].get("priority") != "Spot":
                    # [unverified] code/status for a VM that is not Spot; the 204 below is providers.md B10.
                    return 409, _error("OperationNotAllowed", "Simulate eviction is only supported for Spot VMs.")
                self._evict(key)
                return 204, None
            if action == "virtualMachines.instanceView":
                return 200, {"statuses": [
                    {"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded"},
                    {"code": f"PowerState/{vm['_power']}", "level": "Info",
                     "displayStatus": f"VM {vm['_power']}"}]}
        return 500, _error("InternalServerError", "unhandled")


def _price_refused(props: dict[str, Any]) -> dict[str, Any] | None:
    """The Spot fields' enums and maxPrice's domain (providers.md B10): -1, or a positive USD price."""
    priority = props.get("priority", "Regular")
    if priority not in PRIORITIES:
        return _error("InvalidParameter", f"The value '{priority}' of parameter 'priority' is not allowed. "
                      f"Allowed values are {', '.join(PRIORITIES)}.")
    policy = props.get("evictionPolicy")
    if policy is not None and policy not in EVICTION_POLICIES:
        return _error("InvalidParameter", f"The value '{policy}' of parameter 'evictionPolicy' is not allowed. "
                      f"Allowed values are {', '.join(EVICTION_POLICIES)}.")
    price = (props.get("billingProfile") or {}).get("maxPrice")
    if price is not None and (isinstance(price, bool) or not isinstance(price, (int, float))
                              or (price != -1 and price <= 0)):
        return _error("InvalidParameter", f"The value {price!r} of parameter 'billingProfile.maxPrice' is not "
                      "allowed: use -1 (up to the pay-as-you-go price) or a price above 0.")
    return None


def _sign_in_refused(profile: dict[str, Any] | None) -> dict[str, Any] | None:
    """ARM's checks of a new Linux VM's sign-in: a password or SSH keys, keys only at the admin's
    authorized_keys. ARM never returns a password, so none is stored."""
    if profile is None:
        return _error("InvalidParameter", "Required parameter 'osProfile' is missing (null).")
    user = profile.get("adminUsername")
    if not user:
        return _error("InvalidParameter", "Required parameter 'adminUsername' is missing (null).")
    keys = ((profile.get("linuxConfiguration") or {}).get("ssh") or {}).get("publicKeys") or []
    if not keys and not profile.get("adminPassword"):
        return _error("InvalidParameter", "Required parameter 'adminPassword' is missing (null).")
    for key in keys:
        if key.get("path") != f"/home/{user}/.ssh/authorized_keys":
            return _error("InvalidParameter", "Destination path for SSH public keys is currently limited to its "
                          f"default value /home/{user}/.ssh/authorized_keys due to a known issue in Linux "
                          "provisioning agent.")
    profile.pop("adminPassword", None)
    return None


def _public(vm: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in vm.items() if not k.startswith("_")}


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}
