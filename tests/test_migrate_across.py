"""Moves to another region or another cloud (`analyze --scope provider|any` plans them): the target is
placed in the target region, or refused in preflight with what to set, before anything is created.
moto (EC2, SSM, S3), the GCP Compute emulator and the Azure ARM emulator run at once."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from spotplan.cli.main import app
from tests.emulators.gcp_compute import GcpComputeEmulator
from tests.test_migrate_support import assert_move_invariants, journal_of, make_move, trainer_script, write_plan

pytestmark = pytest.mark.timeout(90)

GCP_IMAGE = "projects/acme/global/images/train-v1"
GCP_TYPE = "a2-highgpu-1g"


@pytest.fixture(autouse=True)
def _env(clouds_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The three clouds, and a GCP project for targets whose source is on another cloud."""
    _, gcp, _ = clouds_env
    monkeypatch.delenv("CLOUDSDK_CORE_PROJECT", raising=False)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "acme")
    gcp.not_offered.clear()


def _move(tmp_path: Path, source: tuple[str, str, str, str, list[str]], target: dict[str, Any], image: str,
          trigger: dict[str, Any] | None = None, **launch: Any) -> tuple[str, Path]:
    provider, region, zone, itype, ids = source
    move_id = f"x-{uuid.uuid4().hex[:8]}"
    move = make_move(move_id, provider, region, zone, itype, ids, str(tmp_path / "ckpt" / move_id), image,
                     trigger or {"via": "command", "command": trainer_script(tmp_path)}, **launch)
    move["target"] = {"zone": None, "market": "spot", "max_price": 1.0, **target}
    return move_id, write_plan(tmp_path / f"{move_id}.json", [move])


def _gcp_source(gcp: GcpComputeEmulator, zone: str = "us-central1-a") -> tuple[str, str, str, str, list[str]]:
    name = f"train-{uuid.uuid4().hex[:6]}"
    return "gcp", zone.rsplit("-", 1)[0], zone, GCP_TYPE, [gcp.add_instance("acme", zone, name, GCP_TYPE)]


def test_gcp_to_aws_end_to_end(clouds: Any, runner: Any, tmp_path: Path) -> None:
    aws, gcp, _ = clouds
    source = _gcp_source(gcp)
    move_id, plan = _move(tmp_path, source, {"provider": "aws", "region": "us-east-1", "instance_type": "g5.xlarge"},
                          aws.image)
    result = runner.invoke(app, ["migrate", str(plan), "--yes", "--checkpoint-timeout", "20"])
    assert result.exit_code == 0, result.output
    assert_move_invariants(move_id, aws.live_tagged(move_id), {gcp.get(source[4][0])["status"]}, "TERMINATED",
                           {"RUNNING"}, expect_done=True)
    (target, inst), = aws.live_tagged(move_id).items()
    assert inst["InstanceLifecycle"] == "spot" and inst["InstanceType"] == "g5.xlarge"
    tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
    assert tags["spotplan-resume-from"] == journal_of(move_id)["state"]["checkpoint_uri"]
    assert gcp.labelled("spotplan-move", move_id) == {}


def test_aws_to_gcp_takes_the_project_from_the_environment_and_a_zone_that_offers_the_type(
        clouds: Any, runner: Any, tmp_path: Path) -> None:
    aws, gcp, _ = clouds
    src = aws.source(None)
    gcp.not_offered.add(("europe-west4-a", GCP_TYPE))
    move_id, plan = _move(tmp_path, ("aws", "us-east-1", "us-east-1a", "g5.xlarge", src),
                          {"provider": "gcp", "region": "europe-west4", "instance_type": GCP_TYPE}, GCP_IMAGE)
    dry = runner.invoke(app, ["migrate", str(plan), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "machine_types.get(project='acme', zone='europe-west4-a', machine_type='a2-highgpu-1g')  [not offered]" \
        in dry.stdout
    assert "instances.insert(project='acme', zone='europe-west4-b'" in dry.stdout
    result = runner.invoke(app, ["migrate", str(plan), "--yes", "--checkpoint-timeout", "20"])
    assert result.exit_code == 0, result.output
    created = gcp.labelled("spotplan-move", move_id)
    assert [i.split("/")[3] for i in created] == ["europe-west4-b"]
    assert_move_invariants(move_id, created, {aws.state(src[0])}, "stopped", {"running", "pending"}, True)
    assert journal_of(move_id)["state"]["target_zone"] == "europe-west4-b"


def test_gcp_to_another_region_is_not_created_in_the_source_zone(clouds: Any, runner: Any, tmp_path: Path) -> None:
    _, gcp, _ = clouds
    move_id, plan = _move(tmp_path, _gcp_source(gcp), {"provider": "gcp", "region": "us-east1",
                                                       "instance_type": GCP_TYPE}, GCP_IMAGE)
    result = runner.invoke(app, ["migrate", str(plan), "--yes", "--checkpoint-timeout", "20"])
    assert result.exit_code == 0, result.output
    assert [i.split("/")[3] for i in gcp.labelled("spotplan-move", move_id)] == ["us-east1-b"]


def test_aws_to_gcp_without_a_project_is_refused(clouds: Any, runner: Any, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    aws, gcp, _ = clouds
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT")
    src = aws.source(None)
    move_id, plan = _move(tmp_path, ("aws", "us-east-1", "us-east-1a", "g5.xlarge", src),
                          {"provider": "gcp", "region": "us-central1", "instance_type": GCP_TYPE}, GCP_IMAGE)
    for args in (["--dry-run"], ["--yes"]):
        result = runner.invoke(app, ["migrate", str(plan), *args])
        assert result.exit_code == 2, result.output
        assert "the source is on aws, so there is no source project" in result.stderr
        assert "set GOOGLE_CLOUD_PROJECT" in result.stderr
    assert gcp.labelled("spotplan-move", move_id) == {}
    assert aws.state(src[0]) in ("running", "pending")


def test_an_image_of_the_source_cloud_is_refused(clouds: Any, runner: Any, tmp_path: Path) -> None:
    aws, gcp, _ = clouds
    _, plan = _move(tmp_path, ("aws", "us-east-1", "us-east-1a", "g5.xlarge", aws.source(None)),
                    {"provider": "gcp", "region": "us-central1", "instance_type": GCP_TYPE}, aws.image)
    result = runner.invoke(app, ["migrate", str(plan), "--dry-run"])
    assert result.exit_code == 2, result.output
    assert f"launch.image '{aws.image}' is not a GCP image" in result.stderr
    assert "came with the aws workload" in result.stderr
    _, plan = _move(tmp_path, _gcp_source(gcp), {"provider": "aws", "region": "us-east-1",
                                                 "instance_type": "g5.xlarge"}, GCP_IMAGE)
    result = runner.invoke(app, ["migrate", str(plan), "--dry-run"])
    assert result.exit_code == 2, result.output
    assert f"launch.image '{GCP_IMAGE}' is not an AMI id" in result.stderr


def test_to_azure_from_another_cloud_is_refused_before_anything_is_created(
        clouds: Any, runner: Any, tmp_path: Path) -> None:
    aws, _, az = clouds
    src = aws.source(None)
    move_id, plan = _move(tmp_path, ("aws", "us-east-1", "us-east-1a", "g5.xlarge", src),
                          {"provider": "azure", "region": "eastus", "instance_type": "Standard_NC24ads_A100_v4"},
                          "microsoft-dsvm:ubuntu-hpc:2204:latest")
    before = len(az.calls)
    result = runner.invoke(app, ["migrate", str(plan), "--yes"])
    assert result.exit_code == 2, result.output
    assert "an Azure target is created in the source VM's subscription" in result.stderr
    assert "this one is on aws" in result.stderr
    assert az.calls[before:] == []
    assert aws.state(src[0]) in ("running", "pending")
    assert "failed (nothing changed)" in result.stdout
    j = journal_of(move_id)
    assert j["status"] == "rolled-back" and j["error"].endswith("nothing was changed")


def test_aws_to_another_region_checks_the_ami_and_subnet_there(clouds: Any, runner: Any, tmp_path: Path) -> None:
    import boto3

    aws, _, _ = clouds
    src = aws.source(None)
    own = aws.ec2.create_image(InstanceId=src[0], Name=f"train-{uuid.uuid4().hex[:6]}")["ImageId"]
    west = boto3.client("ec2", region_name="us-west-2", endpoint_url=aws.moto_url, aws_access_key_id="testing",
                        aws_secret_access_key="testing")
    west_image = west.describe_images()["Images"][0]["ImageId"]
    assert own not in {i["ImageId"] for i in west.describe_images()["Images"]}
    source = ("aws", "us-east-1", "us-east-1a", "g5.xlarge", src)
    target = {"provider": "aws", "region": "us-west-2", "instance_type": "g5.xlarge"}

    _, plan = _move(tmp_path, source, target, own)
    result = runner.invoke(app, ["migrate", str(plan), "--dry-run", "-o", "json"])
    assert result.exit_code == 2, result.output
    assert f"AMI {own} is not in us-west-2: AMIs are regional" in result.stderr
    steps = json.loads(result.stdout)["moves"][0]["steps"]
    images = next(c for c in steps[0]["calls"] if c["call"] == "ec2.describe_images")
    assert images["outcome"] == "not found" and images["permissions"] == ["ec2:DescribeImages"]

    east_subnet = aws.ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    _, plan = _move(tmp_path, source, target, west_image, network={"subnet": east_subnet})
    result = runner.invoke(app, ["migrate", str(plan), "--dry-run"])
    assert result.exit_code == 2, result.output
    assert f"launch.network.subnet {east_subnet} is not in us-west-2" in result.stderr

    west_subnet = west.describe_subnets()["Subnets"][0]
    _, plan = _move(tmp_path, source, {**target, "zone": "us-west-2c"} if west_subnet["AvailabilityZone"] !=
                    "us-west-2c" else {**target, "zone": "us-west-2a"}, west_image,
                    network={"subnet": west_subnet["SubnetId"]})
    result = runner.invoke(app, ["migrate", str(plan), "--dry-run"])
    assert result.exit_code == 2, result.output
    assert f"is in {west_subnet['AvailabilityZone']}, not in the target zone" in result.stderr

    _, plan = _move(tmp_path, source, target, west_image, network={"subnet": west_subnet["SubnetId"]})
    result = runner.invoke(app, ["migrate", str(plan), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert f"ec2.describe_images(ImageIds=['{west_image}'])  [ok]" in result.stdout
