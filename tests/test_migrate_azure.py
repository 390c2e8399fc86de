"""`spotplan migrate` on Azure end to end: azure-mgmt-compute against the local HTTPS ARM emulator
(trustme CA through REQUESTS_CA_BUNDLE, static bearer token through SPOTPLAN_AZURE_TOKEN)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spotplan.cli.main import app
from tests.emulators.azure_arm import AzureArmEmulator
from tests.test_migrate_support import (
    assert_move_invariants,
    journal_of,
    make_move,
    trainer_script,
    write_plan,
)

pytestmark = pytest.mark.timeout(60)

SUB, RG, REGION, SIZE = "00000000-0000-0000-0000-000000000001", "ml-rg", "eastus", "Standard_NC24ads_A100_v4"
IMAGE = "microsoft-dsvm:ubuntu-hpc:2204:latest"
SUBNET = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/virtualNetworks/ml-vnet/subnets/default"


@pytest.fixture(scope="module")
def azure() -> Iterator[AzureArmEmulator]:
    emu = AzureArmEmulator(token="s3cret-test-token")
    yield emu
    emu.stop()


@pytest.fixture(autouse=True)
def _azure_env(azure: AzureArmEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOTPLAN_AZURE_ARM_ENDPOINT", azure.url)
    monkeypatch.setenv("SPOTPLAN_AZURE_TOKEN", azure.token)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", azure.ca_file)
    azure.faults.clear()


def new_move(azure: AzureArmEmulator, tmp_path: Path, **kw: Any) -> tuple[str, str, Path]:
    move_id = f"a-{uuid.uuid4().hex[:8]}"
    src = azure.add_vm(SUB, RG, f"train-{move_id}", SIZE)
    storage = str(tmp_path / "ckpt" / move_id)
    trigger = {"via": "command", "command": trainer_script(tmp_path)}
    kw.setdefault("network", {"subnet": SUBNET})
    move = make_move(move_id, "azure", REGION, None, SIZE, [src], storage, IMAGE, trigger,  # type: ignore[arg-type]
                     max_price=1.2, on_demand_price=3.67, **kw)
    return move_id, src, write_plan(tmp_path / f"{move_id}.json", [move])


def assert_invariants(azure: AzureArmEmulator, move_id: str, src: str, expect_done: bool) -> None:
    power = azure.get(src)["_power"]  # type: ignore[index]
    assert_move_invariants(move_id, azure.tagged("spotplan-move", move_id), {power}, "deallocated", {"running"},
                           expect_done)


def test_dry_run_shows_spot_vm(azure: AzureArmEmulator, runner: Any, tmp_path: Path) -> None:
    move_id, _, plan = new_move(azure, tmp_path)
    before = len(azure.calls)
    result = runner.invoke(app, ["migrate", str(plan), "--dry-run"])
    assert result.exit_code == 0, result.output
    # A dry run sends reads only (sizes, usages, the source and the idempotency lookups).
    assert set(azure.calls[before:]) <= {"vmSizes.list", "usages.list", "virtualMachines.get",
                                         "virtualMachines.instanceView"}, azure.calls[before:]
    out = result.stdout
    assert "compute.virtual_machines.begin_create_or_update(" in out
    assert "'priority': 'Spot'" in out and "'evictionPolicy': 'Deallocate'" in out
    assert "'billingProfile': {'maxPrice': 1.2}" in out and "begin_deallocate(" in out
    assert azure.tagged("spotplan-move", move_id) == {}
    assert azure.token not in out and azure.token not in result.stderr


def test_migrate_end_to_end_and_fallback(azure: AzureArmEmulator, runner: Any, tmp_path: Path) -> None:
    move_id, src, plan = new_move(azure, tmp_path)
    result = runner.invoke(app, ["migrate", str(plan), "--yes", "--checkpoint-timeout", "20"])
    assert result.exit_code == 0, result.output
    assert_invariants(azure, move_id, src, expect_done=True)
    (tid, vm), = azure.tagged("spotplan-move", move_id).items()
    props = vm["properties"]
    assert props["priority"] == "Spot" and props["evictionPolicy"] == "Deallocate"
    assert props["billingProfile"]["maxPrice"] == 1.2
    j = journal_of(move_id)
    assert vm["tags"]["spotplan-resume-from"] == j["state"]["checkpoint_uri"]
    custom = base64.b64decode(props["osProfile"]["customData"]).decode()
    assert "RESUME_FROM_CHECKPOINT" in custom and "--resume-from-latest" in custom
    shown = runner.invoke(app, ["migrations", "show", move_id, "-o", "json"])
    assert shown.exit_code == 0 and azure.token not in shown.stdout
    fb = runner.invoke(app, ["migrate", "--fallback", move_id, "--yes"])
    assert fb.exit_code == 0, fb.output
    (od_id, od), = azure.tagged("spotplan-move", move_id).items()
    assert od_id != tid and od["properties"]["priority"] == "Regular"


AZ_FAULTS = [
    ("vmSizes.list", 0, 403, "AuthorizationFailed", False),
    ("usages.list", 0, 400, "BadRequest", False),
    ("virtualMachines.createOrUpdate", 0, 409, "SkuNotAvailable", False),
    ("virtualMachines.deallocate", 0, 409, "OperationNotAllowed", False),
    ("virtualMachines.update", 0, 409, "OperationNotAllowed", False),
    ("virtualMachines.instanceView", 0, 400, "BadRequest", False),
    ("virtualMachines.get", 0, 500, "InternalServerError", True),  # transient: azure-core retries it
]


@pytest.mark.parametrize("action,skip,status,code,expect_done", AZ_FAULTS,
                         ids=[f"{a}-{c}" for a, _, _, c, _ in AZ_FAULTS])
def test_each_call_fails_once(azure: AzureArmEmulator, runner: Any, tmp_path: Path, action: str, skip: int,
                              status: int, code: str, expect_done: bool) -> None:
    move_id, src, plan = new_move(azure, tmp_path)
    azure.fail_next(action, status=status, code=code, skip=skip)
    result = runner.invoke(app, ["migrate", str(plan), "--yes", "--checkpoint-timeout", "20"])
    assert action not in azure.faults, "the fault was never triggered"
    if expect_done:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == (4 if status == 403 else 1), result.output
        assert code in result.stderr and "Traceback" not in result.stderr
    assert_invariants(azure, move_id, src, expect_done=expect_done)


@pytest.mark.timeout(90)
def test_sigkill_after_create_then_resume(azure: AzureArmEmulator, runner: Any, tmp_path: Path) -> None:
    move_id, src, plan = new_move(azure, tmp_path)
    env = {**os.environ, "SPOTPLAN_TEST_CRASH_AT": "acquire:after"}
    proc = subprocess.run([sys.executable, "-m", "spotplan", "migrate", str(plan), "--yes"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -9, proc.stderr
    puts = azure.calls.count("virtualMachines.createOrUpdate")
    result = runner.invoke(app, ["migrate", "--resume", move_id, "--yes", "--checkpoint-timeout", "20"])
    assert result.exit_code == 0, result.output
    assert azure.calls.count("virtualMachines.createOrUpdate") == puts  # reused, not re-created
    assert_invariants(azure, move_id, src, expect_done=True)


def test_bad_token_is_a_credentials_error(azure: AzureArmEmulator, runner: Any, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    move_id, src, plan = new_move(azure, tmp_path)
    monkeypatch.setenv("SPOTPLAN_AZURE_TOKEN", "wrong-token")
    result = runner.invoke(app, ["migrate", str(plan), "--yes"])
    assert result.exit_code == 4, result.output
    assert "wrong-token" not in result.output


def test_dry_run_with_rejected_credentials_exits_4(azure: AzureArmEmulator, runner: Any, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    move_id, _, plan = new_move(azure, tmp_path)
    azure.fail_next("vmSizes.list", status=403, code="AuthorizationFailed")
    denied = runner.invoke(app, ["migrate", str(plan), "--dry-run"])
    assert "vmSizes.list" not in azure.faults, "the fault was never triggered"
    assert denied.exit_code == 4, denied.output
    assert "compute.virtual_machine_sizes.list(location='eastus')  [denied (403 AuthorizationFailed)]" \
        in denied.stdout
    assert "begin_create_or_update(" in denied.stdout and "begin_deallocate(" in denied.stdout
    monkeypatch.setenv("SPOTPLAN_AZURE_TOKEN", "wrong-token")  # a 401 from ARM
    unauthenticated = runner.invoke(app, ["migrate", str(plan), "--dry-run"])
    assert unauthenticated.exit_code == 4, unauthenticated.output
    assert "wrong-token" not in unauthenticated.output
    assert azure.tagged("spotplan-move", move_id) == {}


def test_a_target_without_a_subnet_is_refused_before_anything_is_created(azure: AzureArmEmulator, runner: Any,
                                                                          tmp_path: Path) -> None:
    """ARM creates a VM only with a network interface in a subnet; the emulator would accept one
    without, so the check is spotplan's own, and comes first."""
    move_id, src, plan = new_move(azure, tmp_path, network={})
    result = runner.invoke(app, ["migrate", str(plan), "--yes"])
    assert result.exit_code == 2 and "launch.network.subnet is required" in result.stderr, result.output
    assert azure.tagged("spotplan-move", move_id) == {}
    assert azure.get(src)["_power"] == "running"  # type: ignore[index]


def test_a_fallback_needs_no_source_vm(azure: AzureArmEmulator, runner: Any, tmp_path: Path) -> None:
    """The sign-in a target gets (admin user, SSH public keys) is journaled at the move's preflight,
    so a fallback after the stopped source VM was cleaned up still starts, and its dry run agrees."""
    move_id, src, plan = new_move(azure, tmp_path)
    assert runner.invoke(app, ["migrate", str(plan), "--yes", "--checkpoint-timeout", "20"]).exit_code == 0
    assert "sign_in" in journal_of(move_id)["state"]
    parts = src.split("/")
    del azure.vms[(parts[2], parts[4].lower(), parts[8].lower())]
    dry = runner.invoke(app, ["migrate", "--fallback", move_id, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    fb = runner.invoke(app, ["migrate", "--fallback", move_id, "--yes"])
    assert fb.exit_code == 0, fb.output
    (vm,) = azure.tagged("spotplan-move", move_id).values()
    assert vm["properties"]["priority"] == "Regular"
    assert vm["properties"]["osProfile"]["computerName"].endswith("-0")  # a gang's VMs get distinct names


def test_a_spot_target_evicted_before_the_stop_leaves_the_source_running(azure: AzureArmEmulator, runner: Any,
                                                                        tmp_path: Path) -> None:
    """Azure evicts the Spot target (evictionPolicy Deallocate: PowerState/deallocated) while the
    checkpoint is taken: check_target sees it, the source is never deallocated, and the rollback
    deletes the deallocated target (its disks would still be billed)."""
    move_id, src, plan = new_move(azure, tmp_path)
    before = len(azure.calls)
    azure.evict_on_next("virtualMachines.instanceView")
    try:
        result = runner.invoke(app, ["migrate", str(plan), "--yes", "--checkpoint-timeout", "20"])
        assert azure.evict_armed is None, "the eviction never happened"
    finally:
        azure.evict_armed = None
    assert result.exit_code == 1, result.output
    assert "the spot target was lost" in result.stderr and "stopped" in result.stderr
    assert "virtualMachines.deallocate" not in azure.calls[before:]
    assert_invariants(azure, move_id, src, expect_done=False)


def test_a_max_price_the_spot_price_has_passed_changes_nothing(azure: AzureArmEmulator, runner: Any,
                                                               tmp_path: Path) -> None:
    """ARM refuses a maxPrice that does not exceed the current Spot price (providers.md B10): the move
    fails at acquire with ARM's code, nothing is left and the source keeps running."""
    move_id, src, plan = new_move(azure, tmp_path)
    azure.spot_prices[(REGION, SIZE)] = 1.3  # the plan bids 1.2
    try:
        result = runner.invoke(app, ["migrate", str(plan), "--yes", "--checkpoint-timeout", "20"])
    finally:
        azure.spot_prices.clear()
    assert result.exit_code == 1, result.output
    assert "OperationNotAllowed" in result.stderr and "Traceback" not in result.stderr
    assert_invariants(azure, move_id, src, expect_done=False)
