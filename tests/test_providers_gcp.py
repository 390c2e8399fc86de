"""The GCP provider against the Compute emulator directly: idempotent launch, state mapping, and the
operation poller going to the configured endpoint (providers.md B11), not compute.googleapis.com."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from spotplan.providers.base import LaunchSpec
from spotplan.providers.gcp import GcpProvider
from tests.emulators.gcp_compute import GcpComputeEmulator

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[GcpComputeEmulator]:
    e = GcpComputeEmulator(pending_ops=True)
    monkeypatch.setenv("SPOTPLAN_GCP_COMPUTE_ENDPOINT", e.url)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    yield e
    e.stop()


def spec(src: str, **kw: Any) -> LaunchSpec:
    base: dict[str, Any] = dict(move_id="m1", step="acquire#1", market="spot", region="us-central1",
                                zone="us-central1-b", instance_type="a2-highgpu-1g", count=2, max_price=1.0,
                                image="projects/acme/global/images/train-v1", user_data="#!/bin/sh\n", network={},
                                labels={"team": "ML"},
                                source_ids=[src])
    base.update(kw)
    return LaunchSpec(**base)


def test_launch_polls_operations_on_the_emulator_and_is_idempotent(emu: GcpComputeEmulator) -> None:
    src = emu.add_instance("p1", "us-central1-a", "train", "a2-highgpu-1g")
    provider = GcpProvider("us-central1")
    calls, ids = provider.launch(spec(src), dry_run=False)
    assert ids == ["projects/p1/zones/us-central1-b/instances/sp-m1-" + spec(src).token[:8] + f"-{i}"
                   for i in range(2)]
    assert emu.calls.count("zoneOperations.get") == 2  # RUNNING operations were polled here
    assert [c.method for c in calls] == ["list", "insert", "insert"]
    again_calls, again = GcpProvider("us-central1").launch(spec(src), dry_run=False)
    assert again == ids and [c.method for c in again_calls] == ["list"]
    assert emu.calls.count("instances.insert") == 2
    labels = emu.get(ids[0])["labels"]  # type: ignore[index]
    assert labels == {"team": "ml", "spotplan-move": "m1", "spotplan-token": spec(src).token,
                      "spotplan-role": "acquire"}
    _, states = provider.states([*ids, src])
    assert set(states.values()) == {"running"}
    provider.stop([src], dry_run=False)
    provider.release([ids[0]], dry_run=False)
    _, states = provider.states([ids[0], src])
    assert states == {ids[0]: "missing", src: "stopped"}
    assert provider.list_created("m1") == {ids[1]: "running"}


def test_on_demand_launch_is_standard(emu: GcpComputeEmulator) -> None:
    src = emu.add_instance("p1", "us-central1-a", "train", "a2-highgpu-1g")
    _, ids = GcpProvider("us-central1").launch(spec(src, market="on-demand", count=1, step="fallback#1"), False)
    assert emu.get(ids[0])["scheduling"]["provisioningModel"] == "STANDARD"  # type: ignore[index]


def test_preflight_unknown_type_and_quota(emu: GcpComputeEmulator) -> None:
    from spotplan.errors import CloudError

    src = emu.add_instance("p1", "us-central1-a", "train", "a2-highgpu-1g")
    with pytest.raises(CloudError, match="a9-nope is not offered in us-central1-b"):
        GcpProvider("us-central1").preflight(spec(src, instance_type="a9-nope"), False)
    emu.instance_quota = 2
    with pytest.raises(CloudError, match="quota INSTANCES in us-central1 has 1 left, 2 needed"):
        GcpProvider("us-central1").preflight(spec(src), False)


def test_a_fresh_process_finds_created_instances_through_the_preflight_placement(
        emu: GcpComputeEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """A move from another cloud (an AWS source id) to a zone preflight chose: after a crash the
    journal has no target ids yet, only preflight's `placement`, which is where to look."""
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "p9")
    aws_spec = spec("i-0123456789abcdef0", region="europe-west4", zone=None, source_provider="aws", count=1)
    _, data = GcpProvider("europe-west4").preflight(aws_spec, dry_run=False)
    assert data["placement"] == "projects/p9/zones/europe-west4-a"
    placed = spec("i-0123456789abcdef0", region="europe-west4", zone=data["target_zone"], source_provider="aws",
                  count=1)
    _, ids = GcpProvider("europe-west4").launch(placed, dry_run=False)
    fresh = GcpProvider("europe-west4")
    assert fresh.list_created("m1", near=["i-0123456789abcdef0"]) == {}
    assert fresh.list_created("m1", near=["i-0123456789abcdef0", data["placement"]]) == {ids[0]: "running"}


def test_the_emulator_refuses_the_scheduling_gce_refuses(emu: GcpComputeEmulator) -> None:
    """providers.md B11: onHostMaintenance TERMINATE is the only value a Spot (preemptible) VM allows, it
    takes no automatic restart, and the enums are closed; STOP is the default termination action. An
    emulator that took any scheduling would let a wrong Spot request pass the tests above."""
    import requests

    url = f"{emu.url}/compute/v1/projects/p1/zones/us-central1-b/instances"
    base = {"machineType": "zones/us-central1-b/machineTypes/a2-highgpu-1g"}
    for i, sched in enumerate((
        {"provisioningModel": "SPOT", "onHostMaintenance": "MIGRATE"},
        {"provisioningModel": "SPOT", "automaticRestart": True},
        {"provisioningModel": "SPOT", "instanceTerminationAction": "HIBERNATE"},
        {"provisioningModel": "CHEAP"},
    )):
        r = requests.post(url, json={**base, "name": f"bad-{i}", "scheduling": sched}, timeout=10)
        assert r.status_code == 400 and r.json()["error"]["errors"][0]["reason"] == "invalid", sched
    assert emu.instances == {}
    r = requests.post(url, json={**base, "name": "ok", "scheduling": {"provisioningModel": "SPOT"}}, timeout=10)
    assert r.status_code == 200 and r.json()["kind"] == "compute#operation"
    got = requests.get(f"{url}/ok", timeout=10).json()
    assert got["scheduling"] == {"provisioningModel": "SPOT", "instanceTerminationAction": "STOP",
                                 "preemptible": True, "automaticRestart": False, "onHostMaintenance": "TERMINATE"}
    assert got["machineType"] == f"{emu.url}/compute/v1/projects/p1/zones/us-central1-b/machineTypes/a2-highgpu-1g"


def test_spot_insert_fields_labels_and_request_id(emu: GcpComputeEmulator) -> None:
    """The Spot request (no bid anywhere), the labels on the instance and its boot disk, and a
    requestId that a rerun repeats: when the token lookup misses the first run's instance, the
    insert is answered by the first operation instead of creating a second VM."""
    src = emu.add_instance("p1", "us-central1-a", "train", "a2-highgpu-1g")
    calls, ids = GcpProvider("us-central1").launch(spec(src, count=1), dry_run=False)
    inst = emu.get(ids[0])
    assert inst is not None
    assert inst["scheduling"] == {"provisioningModel": "SPOT", "instanceTerminationAction": "STOP",
                                  "preemptible": True, "automaticRestart": False, "onHostMaintenance": "TERMINATE"}
    assert "max_price" not in str(calls[-1].params) and "maxPrice" not in str(inst)
    assert inst["disks"][0]["initializeParams"]["labels"] == inst["labels"]
    rid = calls[-1].params["request_id"]
    assert list(emu.request_ids) == [rid]
    inst["labels"] = {}  # the lookup by token now finds nothing
    again_calls, again = GcpProvider("us-central1").launch(spec(src, count=1), dry_run=False)
    assert again == ids and again_calls[-1].params["request_id"] == rid
    assert emu.calls.count("instances.insert") == 2 and len(emu.instances) == 2  # the source and one target


@pytest.mark.parametrize("status,state", [
    ("PROVISIONING", "pending"), ("STAGING", "pending"), ("RUNNING", "running"), ("STOPPING", "stopping"),
    ("PENDING_STOP", "stopping"), ("SUSPENDING", "stopping"), ("SUSPENDED", "stopped"), ("STOPPED", "stopped"),
    ("TERMINATED", "stopped"), ("REPAIRING", "pending"), ("DEPROVISIONING", "terminated"),
])
def test_instance_status_mapping(emu: GcpComputeEmulator, status: str, state: str) -> None:
    """Every Instance.status of providers.md B11; TERMINATED is a stopped VM (a Spot VM preempted with
    STOP ends there), not a deleted one."""
    iid = emu.add_instance("p1", "us-central1-a", "vm", "a2-highgpu-1g", status=status)
    assert GcpProvider("us-central1").states([iid])[1] == {iid: state}


def test_a_preempted_spot_target_reads_stopped_or_missing(emu: GcpComputeEmulator) -> None:
    src = emu.add_instance("p1", "us-central1-a", "train", "a2-highgpu-1g")
    provider = GcpProvider("us-central1")
    _, ids = provider.launch(spec(src), dry_run=False)
    emu.preempt(ids[0])
    emu.get(ids[1])["scheduling"]["instanceTerminationAction"] = "DELETE"  # type: ignore[index]
    emu.preempt(ids[1])
    assert provider.states(ids)[1] == {ids[0]: "stopped", ids[1]: "missing"}


def test_the_on_demand_fallback_restarts_after_a_host_event(emu: GcpComputeEmulator) -> None:
    """Spot takes no automatic restart, but the on-demand copy (the fallback) is the one that must
    keep running: it is created with automaticRestart, and TERMINATE on maintenance (GPU VMs)."""
    src = emu.add_instance("p1", "us-central1-a", "train", "a2-highgpu-1g")
    _, ids = GcpProvider("us-central1").launch(spec(src, count=1, market="on-demand", max_price=None), dry_run=False)
    inst = emu.get(ids[0])
    assert inst is not None
    assert inst["scheduling"]["provisioningModel"] == "STANDARD"
    assert inst["scheduling"]["automaticRestart"] is True and inst["scheduling"]["onHostMaintenance"] == "TERMINATE"
