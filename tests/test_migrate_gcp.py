"""`spotplan migrate` on GCP end to end: google-cloud-compute (REST, anonymous credentials) against
the local Compute emulator; the checkpoint trigger is a `via: command` workload script that writes
a real checkpoint with spotplan.checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from spotplan.cli.main import app
from tests.emulators.gcp_compute import GcpComputeEmulator
from tests.test_migrate_support import (
    assert_move_invariants,
    journal_of,
    make_move,
    trainer_script,
    write_plan,
)

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("gcp_env")]

PROJECT, REGION, ZONE, MTYPE = "proj-1", "us-central1", "us-central1-a", "a2-highgpu-1g"


def new_move(gcp: GcpComputeEmulator, tmp_path: Path, trigger_cmd: str | None = None,
             **kw: Any) -> tuple[str, str, Path]:
    move_id = f"g-{uuid.uuid4().hex[:8]}"
    src = gcp.add_instance(PROJECT, ZONE, f"train-{move_id}", MTYPE)
    storage = str(tmp_path / "ckpt" / move_id)
    trigger = {"via": "command", "command": trigger_cmd or trainer_script(tmp_path)}
    move = make_move(move_id, "gcp", REGION, ZONE, MTYPE, [src], storage,
                     "projects/deeplearning-platform-release/global/images/family/common-cu121", trigger, **kw)
    return move_id, src, write_plan(tmp_path / f"{move_id}.json", [move])


def assert_invariants(gcp: GcpComputeEmulator, move_id: str, src: str, expect_done: bool) -> None:
    source_status = gcp.get(src)["status"]  # type: ignore[index]
    assert_move_invariants(move_id, gcp.labelled("spotplan-move", move_id), {source_status}, "TERMINATED",
                           {"RUNNING"}, expect_done)


def test_dry_run_shows_spot_insert(gcp: GcpComputeEmulator, runner: Any, tmp_path: Path) -> None:
    move_id, src, plan = new_move(gcp, tmp_path)
    before = len(gcp.calls)
    result = runner.invoke(app, ["migrate", str(plan), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "compute.instances.insert(" in result.stdout
    assert "'provisioning_model': 'SPOT'" in result.stdout
    assert "'instance_termination_action': 'STOP'" in result.stdout
    assert "compute.instances.stop(" in result.stdout
    assert gcp.labelled("spotplan-move", move_id) == {}
    # A dry run sends reads only (the quota, type and idempotency lookups).
    assert set(gcp.calls[before:]) <= {"machineTypes.get", "regions.get", "instances.list", "instances.get"}, \
        gcp.calls[before:]


def test_migrate_end_to_end(gcp: GcpComputeEmulator, runner: Any, tmp_path: Path) -> None:
    move_id, src, plan = new_move(gcp, tmp_path)
    result = runner.invoke(app, ["migrate", str(plan), "--yes", "--checkpoint-timeout", "20"])
    assert result.exit_code == 0, result.output
    assert_invariants(gcp, move_id, src, expect_done=True)
    (tid, inst), = gcp.labelled("spotplan-move", move_id).items()
    assert inst["scheduling"]["provisioningModel"] == "SPOT"
    assert inst["scheduling"]["instanceTerminationAction"] == "STOP"
    assert inst["disks"][0]["initializeParams"]["labels"]["spotplan-move"] == move_id  # the boot disk too
    meta = {i["key"]: i["value"] for i in inst["metadata"]["items"]}
    j = journal_of(move_id)
    assert meta["spotplan-resume-from"] == j["state"]["checkpoint_uri"]
    assert "RESUME_FROM_CHECKPOINT" in meta["startup-script"]
    assert "python train.py --resume-from-latest" in meta["startup-script"]
    listed = runner.invoke(app, ["migrations", "list"])
    assert move_id in listed.stdout
    fb = runner.invoke(app, ["migrate", "--fallback", move_id, "--yes"])
    assert fb.exit_code == 0, fb.output
    (od_id, od), = gcp.labelled("spotplan-move", move_id).items()
    assert od_id != tid and od["scheduling"]["provisioningModel"] == "STANDARD"


GCP_FAULTS = [
    ("machineTypes.get", 0, 403, False),
    ("instances.list", 0, 500, False),
    ("instances.insert", 0, 503, False),
    ("instances.stop", 0, 500, False),
    ("instances.get", 0, 500, False),          # the target still runs, before the source is stopped
    ("instances.get", 1, 500, False),          # the source has stopped
    ("instances.get", 2, 500, False),          # reading the metadata fingerprint before setMetadata
    ("instances.setMetadata", 0, 412, False),
    ("instances.get", 3, 500, False),          # the health check
]


@pytest.mark.parametrize("action,skip,status,expect_done", GCP_FAULTS,
                         ids=[f"{a}-{s}-{c}" for a, s, c, _ in GCP_FAULTS])
def test_each_call_fails_once(gcp: GcpComputeEmulator, runner: Any, tmp_path: Path, action: str, skip: int,
                              status: int, expect_done: bool) -> None:
    move_id, src, plan = new_move(gcp, tmp_path)
    gcp.fail_next(action, status=status, skip=skip)
    result = runner.invoke(app, ["migrate", str(plan), "--yes", "--checkpoint-timeout", "20"])
    assert action not in gcp.faults, "the fault was never triggered"
    assert result.exit_code == (4 if status == 403 else 1), result.output
    assert "Traceback" not in result.stderr
    assert_invariants(gcp, move_id, src, expect_done=expect_done)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("point", ["acquire:after", "stop_source:after"])
def test_sigkill_then_resume(gcp: GcpComputeEmulator, runner: Any, tmp_path: Path, point: str) -> None:
    move_id, src, plan = new_move(gcp, tmp_path)
    env = {**os.environ, "SPOTPLAN_TEST_CRASH_AT": point}
    proc = subprocess.run([sys.executable, "-m", "spotplan", "migrate", str(plan), "--yes"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -9, proc.stderr
    result = runner.invoke(app, ["migrate", "--resume", move_id, "--yes", "--checkpoint-timeout", "20"])
    assert result.exit_code == 0, result.output
    assert_invariants(gcp, move_id, src, expect_done=True)
    assert len(gcp.labelled("spotplan-move", move_id)) == 1


def test_failing_trigger_command_rolls_back(gcp: GcpComputeEmulator, runner: Any, tmp_path: Path) -> None:
    move_id, src, plan = new_move(gcp, tmp_path, trigger_cmd="exit 7")
    result = runner.invoke(app, ["migrate", str(plan), "--yes"])
    assert result.exit_code == 1 and "exited 7" in result.stderr
    assert_invariants(gcp, move_id, src, expect_done=False)


@pytest.mark.parametrize("status", [401, 403])
def test_dry_run_with_rejected_credentials_exits_4(gcp: GcpComputeEmulator, runner: Any, tmp_path: Path,
                                                   status: int) -> None:
    move_id, _, plan = new_move(gcp, tmp_path)
    gcp.fail_next("machineTypes.get", status=status)
    result = runner.invoke(app, ["migrate", str(plan), "--dry-run"])
    assert "machineTypes.get" not in gcp.faults, "the fault was never triggered"
    assert result.exit_code == 4, result.output
    line = next(line for line in result.stdout.splitlines() if "compute.machine_types.get(" in line)
    # A 401 makes google-auth try to refresh the anonymous credentials, which is the error raised.
    assert line.endswith("[denied (403 Forbidden)]" if status == 403 else "[denied (InvalidOperation)]"), line
    assert "compute.instances.insert(" in result.stdout and "compute.instances.stop(" in result.stdout
    assert gcp.labelled("spotplan-move", move_id) == {}


def test_moves_whose_ids_make_the_same_label_never_touch_each_other(gcp: GcpComputeEmulator, runner: Any,
                                                                    tmp_path: Path) -> None:
    """GCP labels are lowercase: `g-ab.cd` and `G-AB-CD` both read `g-ab-cd`. A rollback releases what
    carries its move's label, so the label must tell the two apart."""
    base = f"g-{uuid.uuid4().hex[:6]}"
    done_id, failing_id = f"{base}-x", f"{base.upper()}.X"
    src1 = gcp.add_instance(PROJECT, ZONE, f"train-{base}-1", MTYPE)
    src2 = gcp.add_instance(PROJECT, ZONE, f"train-{base}-2", MTYPE)
    image = "projects/deeplearning-platform-release/global/images/family/common-cu121"
    ok = make_move(done_id, "gcp", REGION, ZONE, MTYPE, [src1], str(tmp_path / "c1"), image,
                   {"via": "command", "command": trainer_script(tmp_path)})
    bad = make_move(failing_id, "gcp", REGION, ZONE, MTYPE, [src2], str(tmp_path / "c2"), image,
                    {"via": "command", "command": "exit 7"})
    first = runner.invoke(app, ["migrate", str(write_plan(tmp_path / "ok.json", [ok])), "--yes",
                                "--checkpoint-timeout", "20"])
    assert first.exit_code == 0, first.output
    (target,) = [iid for iid, inst in gcp.instances.items() if inst["labels"].get("spotplan-move") == done_id]
    second = runner.invoke(app, ["migrate", str(write_plan(tmp_path / "bad.json", [bad])), "--yes"])
    assert second.exit_code == 1, second.output
    assert gcp.instances[target]["status"] == "RUNNING"  # the first move's target survived the rollback
    assert gcp.get(src2)["status"] == "RUNNING"  # type: ignore[index]
    labels = [i["labels"].get("spotplan-move") for i in gcp.instances.values()]
    assert not any(lab and lab.startswith(base) and lab != done_id for lab in labels if lab)


def test_a_spot_target_preempted_before_the_stop_leaves_the_source_running(gcp: GcpComputeEmulator, runner: Any,
                                                                          tmp_path: Path) -> None:
    """GCE preempts the Spot target (instanceTerminationAction STOP: it reads TERMINATED) while the
    checkpoint is taken: check_target sees it, the source is never stopped, and the rollback releases
    the TERMINATED target, whose disks would otherwise still be billed."""
    move_id, src, plan = new_move(gcp, tmp_path)
    before = len(gcp.calls)
    gcp.preempt_on_next_get()
    result = runner.invoke(app, ["migrate", str(plan), "--yes", "--checkpoint-timeout", "20"])
    assert not gcp.preempt_armed, "the preemption never happened"
    assert result.exit_code == 1, result.output
    assert "the spot target was lost" in result.stderr and "stopped" in result.stderr
    assert "instances.stop" not in gcp.calls[before:]
    assert_invariants(gcp, move_id, src, expect_done=False)
