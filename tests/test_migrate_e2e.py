"""The "done" path across the three clouds: `spotplan analyze inventory --plan-out plan.json`, then
`spotplan migrate plan.json --yes` against moto, the GCP Compute emulator and the Azure ARM
emulator at once, then `spotplan migrations list`. A second plan shows partial failure (exit 3)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from spotplan.cli.main import app
from tests.test_migrate_aws import BUCKET
from tests.test_migrate_support import make_move, trainer_script, write_plan

pytestmark = [pytest.mark.timeout(90), pytest.mark.usefixtures("clouds_env")]


AZ_SUBNET = ("/subscriptions/00000000-0000-0000-0000-0000000000aa/resourceGroups/ml/providers/Microsoft.Network/"
             "virtualNetworks/ml-vnet/subnets/default")


def _workload(wid: str, provider: str, region: str, itype: str, ids: list[str], storage: str, image: str,
              trigger: dict[str, Any], **launch: Any) -> dict[str, Any]:
    return {
        "id": wid, "kind": "training", "provider": provider, "region": region, "instance_type": itype,
        "remaining_hours": 48, "handles_preemption": True, "instance_ids": ids,
        "checkpoint": {"enabled": True, "interval_minutes": 30, "save_seconds": 60, "restore_seconds": 120,
                       "storage": storage, **({} if storage.startswith("s3://") else {"durable": True})},
        "launch": {"image": image, "resume_command": "python train.py --resume", "checkpoint_trigger": trigger,
                   **launch},
    }


def test_analyze_then_migrate_on_three_clouds(clouds: Any, runner: Any, tmp_path: Path) -> None:
    aws, gcp, az = clouds
    tag = uuid.uuid4().hex[:6]
    aws_storage = f"s3://{BUCKET}/e2e-{tag}"
    aws_src = aws.source(aws_storage)
    gcp_src = gcp.add_instance("acme", "us-central1-a", f"embed-{tag}", "a2-highgpu-1g")
    az_src = az.add_vm("00000000-0000-0000-0000-0000000000aa", "ml", f"nb-{tag}", "Standard_NC24ads_A100_v4")
    trainer = {"via": "command", "command": trainer_script(tmp_path)}
    inventory = {"workloads": [
        _workload(f"aws-{tag}", "aws", "us-east-1", "g5.xlarge", aws_src, aws_storage, aws.image,
                  {"via": "ssm", "command": "pkill -USR1 -f train.py"}),
        _workload(f"gcp-{tag}", "gcp", "us-central1", "a2-highgpu-1g", [gcp_src], str(tmp_path / "gcp-ckpt"),
                  "projects/acme/global/images/train-v1", trainer),
        _workload(f"az-{tag}", "azure", "eastus", "Standard_NC24ads_A100_v4", [az_src], str(tmp_path / "az-ckpt"),
                  "microsoft-dsvm:ubuntu-hpc:2204:latest", trainer, network={"subnet": AZ_SUBNET}),
    ]}
    inv = tmp_path / "fleet.yaml"
    inv.write_text(yaml.safe_dump(inventory))
    plan = tmp_path / "plan.json"
    analyzed = runner.invoke(app, ["analyze", str(inv), "--plan-out", str(plan), "-o", "json"])
    assert analyzed.exit_code == 0, analyzed.output
    moves = json.loads(plan.read_text())["moves"]
    assert len(moves) == 3, [w["status"] for w in json.loads(analyzed.stdout)["workloads"]]
    result = runner.invoke(app, ["migrate", str(plan), "--yes", "--checkpoint-timeout", "20"])
    assert result.exit_code == 0, result.output
    listed = json.loads(runner.invoke(app, ["migrations", "list", "-o", "json"]).stdout)
    assert {m["move_id"]: m["status"] for m in listed} == {m["id"]: "done" for m in moves}
    assert aws.state(aws_src[0]) == "stopped"
    assert gcp.get(gcp_src)["status"] == "TERMINATED"  # type: ignore[index]
    assert az.get(az_src)["_power"] == "deallocated"  # type: ignore[index]
    for m in moves:
        assert m["target"]["max_price"] <= m["on_demand_price"]


def test_one_failing_move_is_a_partial_failure(clouds: Any, runner: Any, tmp_path: Path) -> None:
    aws, gcp, _ = clouds
    tag = uuid.uuid4().hex[:6]
    good = make_move(f"ok-{tag}", "gcp", "us-central1", "us-central1-a", "a2-highgpu-1g",
                     [gcp.add_instance("acme", "us-central1-a", f"ok-{tag}", "a2-highgpu-1g")],
                     str(tmp_path / "ok"), "projects/acme/global/images/train-v1",
                     {"via": "command", "command": trainer_script(tmp_path)})
    bad = make_move(f"bad-{tag}", "aws", "us-east-1", "us-east-1a", "g5.xlarge", aws.source(None),
                    f"s3://{BUCKET}/bad-{tag}", aws.image, {"via": "ssm", "command": "true"})
    plan = write_plan(tmp_path / "plan.json", [good, bad])
    result = runner.invoke(app, ["migrate", str(plan), "--yes", "--checkpoint-timeout", "1"])
    assert result.exit_code == 3, result.output
    assert "1 of 2 moves failed" in result.stderr and f"bad-{tag}" in result.stderr
    assert aws.live_tagged(f"bad-{tag}") == {}
