"""The Azure provider against the HTTPS ARM emulator directly: Spot quota from the usages API,
idempotent create by name and token, power-state mapping."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from spotplan.errors import CloudError
from spotplan.providers.azure import AzureProvider
from spotplan.providers.base import LaunchSpec
from tests.emulators.azure_arm import SSH_KEY, AzureArmEmulator

pytestmark = pytest.mark.timeout(30)
SUB = "00000000-0000-0000-0000-0000000000bb"


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[AzureArmEmulator]:
    e = AzureArmEmulator(token="t0k", spot_core_limit=48)
    monkeypatch.setenv("SPOTPLAN_AZURE_ARM_ENDPOINT", e.url)
    monkeypatch.setenv("SPOTPLAN_AZURE_TOKEN", e.token)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", e.ca_file)
    yield e
    e.stop()


def spec(src: str, **kw: Any) -> LaunchSpec:
    base: dict[str, Any] = dict(move_id="m1", step="acquire#1", market="spot", region="eastus", zone=None,
                                instance_type="Standard_NC24ads_A100_v4", count=2, max_price=0.9,
                                image="pub:offer:sku:latest", user_data="#!/bin/sh\n",
                                network={"subnet": "/subscriptions/x/subnets/s"}, labels={}, source_ids=[src])
    base.update(kw)
    return LaunchSpec(**base)


def test_quota_launch_reuse_and_states(emu: AzureArmEmulator) -> None:
    src = emu.add_vm(SUB, "rg", "train", "Standard_NC24ads_A100_v4")
    provider = AzureProvider("eastus")
    calls, _ = provider.preflight(spec(src), False)
    assert [c.method for c in calls] == ["list", "list", "get"]
    _, ids = provider.launch(spec(src), False)
    vm = emu.get(ids[0])
    assert vm is not None and vm["properties"]["billingProfile"] == {"maxPrice": 0.9}
    nic = vm["properties"]["networkProfile"]["networkInterfaceConfigurations"][0]
    assert nic["properties"]["ipConfigurations"][0]["properties"]["subnet"]["id"] == "/subscriptions/x/subnets/s"
    assert nic["tags"] == vm["tags"] and vm["tags"]["spotplan-move"] == "m1"  # the NIC is tagged like the VM
    puts = emu.calls.count("virtualMachines.createOrUpdate")
    _, again = AzureProvider("eastus").launch(spec(src), False)
    assert again == ids and emu.calls.count("virtualMachines.createOrUpdate") == puts
    # 48 Spot vCPUs now used of 48: another move of two 24-core VMs does not fit.
    with pytest.raises(CloudError, match="Spot vCPU quota in eastus has 0 left, 48 needed"):
        AzureProvider("eastus").preflight(spec(src, move_id="m2"), False)
    provider.stop([src], False)
    provider.release([ids[1]], False)
    _, states = provider.states([src, *ids])
    assert states == {src: "stopped", ids[0]: "running", ids[1]: "missing"}
    assert provider.list_created("m1") == {ids[0]: "running"}


def test_targets_sign_in_with_the_sources_ssh_keys(emu: AzureArmEmulator) -> None:
    """ARM refuses a Linux VM without keys or a password: the target gets the source's admin user and
    public keys, read once per source, and nothing else of its profile."""
    src = emu.add_vm(SUB, "rg", "train", "Standard_NC24ads_A100_v4")
    provider = AzureProvider("eastus")
    provider.preflight(spec(src), False)
    _, ids = provider.launch(spec(src), False)
    assert emu.calls.count("virtualMachines.get") == 1 + len(ids)  # the source once, each name before its PUT
    for iid in ids:
        vm = emu.get(iid)
        assert vm is not None
        profile = vm["properties"]["osProfile"]
        assert profile["adminUsername"] == "azureuser"
        assert profile["linuxConfiguration"] == {
            "disablePasswordAuthentication": True,
            "ssh": {"publicKeys": [{"path": "/home/azureuser/.ssh/authorized_keys", "keyData": SSH_KEY}]},
        }
        assert "adminPassword" not in profile


def test_a_source_that_signs_in_with_a_password_is_refused_before_anything_is_created(
    emu: AzureArmEmulator,
) -> None:
    src = emu.add_vm(SUB, "rg", "train", "Standard_NC24ads_A100_v4", ssh_key=None)
    with pytest.raises(CloudError, match="source VM train has no SSH public keys .* never copies passwords"):
        AzureProvider("eastus").preflight(spec(src), False)
    with pytest.raises(CloudError, match="no SSH public keys"):
        AzureProvider("eastus").launch(spec(src), False)
    assert "virtualMachines.createOrUpdate" not in emu.calls


def test_the_emulator_refuses_what_arm_refuses(emu: AzureArmEmulator) -> None:
    """The emulator's sign-in checks, so the tests above can fail: a create without keys or a password,
    and keys outside the admin's authorized_keys, are 400s as on ARM."""
    import requests

    base = f"{emu.url}/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines"
    headers = {"Authorization": f"Bearer {emu.token}"}
    for profile, message in (
        ({"adminUsername": "u"}, "Required parameter 'adminPassword' is missing"),
        ({"adminUsername": "u", "linuxConfiguration": {"ssh": {"publicKeys": [
            {"path": "/root/.ssh/authorized_keys", "keyData": SSH_KEY}]}}}, "/home/u/.ssh/authorized_keys"),
    ):
        body = {"location": "eastus", "properties": {"osProfile": profile}}
        r = requests.put(f"{base}/x?api-version=2024-07-01", json=body, headers=headers, verify=emu.ca_file)
        assert r.status_code == 400 and message in r.json()["error"]["message"]


def test_a_dry_run_shows_the_create_even_when_the_source_could_not_be_read(emu: AzureArmEmulator) -> None:
    src = emu.add_vm(SUB, "rg", "train", "Standard_NC24ads_A100_v4")
    before = list(emu.calls)
    calls, _ = AzureProvider("eastus").launch(spec(src), True)
    # Only the reads are sent (the idempotency lookups, which find nothing); nothing is created.
    assert emu.calls[len(before):] == ["virtualMachines.get"] * 2
    assert [c.method for c in calls] == ["get", "begin_create_or_update"] * 2
    assert [c.outcome for c in calls][::2] == ["not found"] * 2
    profile = calls[1].params["parameters"]["properties"]["osProfile"]
    assert profile["adminUsername"] == "<the source's>"


def test_the_emulator_refuses_the_spot_fields_arm_refuses(emu: AzureArmEmulator) -> None:
    """providers.md B10: priority Regular|Low|Spot|SpotPlus, evictionPolicy Deallocate|Delete,
    billingProfile.maxPrice -1 or a positive price that exceeds the current Spot price; -1 and
    Deallocate are the defaults ARM stores."""
    import requests

    emu.spot_prices[("eastus", "Standard_NC24ads_A100_v4")] = 1.1
    base = f"{emu.url}/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines"
    headers = {"Authorization": f"Bearer {emu.token}"}
    profile = {"adminUsername": "u", "linuxConfiguration": {"ssh": {"publicKeys": [
        {"path": "/home/u/.ssh/authorized_keys", "keyData": SSH_KEY}]}}}

    def put(name: str, **props: Any) -> requests.Response:
        body = {"location": "eastus", "properties": {"osProfile": profile,
                                                     "hardwareProfile": {"vmSize": "Standard_NC24ads_A100_v4"},
                                                     **props}}
        return requests.put(f"{base}/{name}?api-version=2026-04-01", json=body, headers=headers,
                            verify=emu.ca_file, timeout=10)

    for props, status in (({"priority": "Cheap"}, 400), ({"priority": "Spot", "evictionPolicy": "Stop"}, 400),
                          ({"priority": "Spot", "billingProfile": {"maxPrice": 0}}, 400),
                          ({"priority": "Spot", "billingProfile": {"maxPrice": -2}}, 400),
                          ({"priority": "Spot", "billingProfile": {"maxPrice": 1.0}}, 409)):
        assert put("x", **props).status_code == status, props
    assert emu.vms == {}
    ok = put("x", priority="Spot")
    assert ok.status_code == 201
    assert ok.json()["properties"]["evictionPolicy"] == "Deallocate"
    assert ok.json()["properties"]["billingProfile"] == {"maxPrice": -1}
    assert put("y", priority="Spot", billingProfile={"maxPrice": 1.5}).status_code == 201
    evict = requests.post(f"{base}/y/simulateEviction?api-version=2026-04-01", headers=headers,
                          verify=emu.ca_file, timeout=10)
    assert evict.status_code == 204 and evict.content == b""


def test_a_max_price_below_the_current_spot_price_creates_nothing(emu: AzureArmEmulator) -> None:
    """A positive maxPrice that does not exceed the current Spot price fails the create (providers.md
    B10): the launch fails with ARM's code, and no VM is left."""
    emu.spot_prices[("eastus", "Standard_NC24ads_A100_v4")] = 0.95
    src = emu.add_vm(SUB, "rg", "train", "Standard_NC24ads_A100_v4")
    with pytest.raises(CloudError, match="409 OperationNotAllowed"):
        AzureProvider("eastus").launch(spec(src, count=1), False)
    assert emu.tagged("spotplan-move", "m1") == {}
    _, ids = AzureProvider("eastus").launch(spec(src, count=1, max_price=1.2), False)
    assert emu.get(ids[0])["properties"]["billingProfile"] == {"maxPrice": 1.2}  # type: ignore[index]


def test_power_states_deallocated_and_stopped_and_eviction(emu: AzureArmEmulator) -> None:
    """PowerState/deallocated (compute no longer billed) and PowerState/stopped (still allocated and
    billed) both read `stopped`; spotplan's own stop deallocates. A Spot VM evicted with the
    Deallocate policy reads stopped, with Delete missing."""
    src = emu.add_vm(SUB, "rg", "train", "Standard_NC24ads_A100_v4")
    provider = AzureProvider("eastus")
    _, ids = provider.launch(spec(src), False)
    assert emu.get(ids[0])["properties"]["evictionPolicy"] == "Deallocate"  # type: ignore[index]
    provider.stop([src], False)
    assert emu.get(src)["_power"] == "deallocated"  # type: ignore[index]
    assert "virtualMachines.powerOff" not in emu.calls
    emu.evict_on_next("virtualMachines.instanceView")
    assert provider.states([ids[0]])[1] == {ids[0]: "stopped"}
    emu.get(ids[1])["properties"]["evictionPolicy"] = "Delete"  # type: ignore[index]
    emu.evict_on_next("virtualMachines.instanceView")
    assert provider.states([ids[1]])[1] == {ids[1]: "missing"}
    for power, state in (("stopped", "stopped"), ("deallocating", "stopping"), ("starting", "pending")):
        emu.get(src)["_power"] = power  # type: ignore[index]
        assert provider.states([src])[1] == {src: state}
