"""What the provider modules declare and build without a cloud: permission documents, idempotency
tokens, ids, names and the target's boot script."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from spotplan.cli.main import app
from spotplan.errors import InputError
from spotplan.models import Move
from spotplan.providers import aws, azure, gcp
from spotplan.providers.base import Call, idempotency_token, permission_document
from tests.test_migrate_support import make_move


def test_tokens_are_stable_per_move_and_step() -> None:
    a = idempotency_token("m1", "acquire#1")
    assert a == idempotency_token("m1", "acquire#1") and len(a) == 32
    assert a != idempotency_token("m1", "acquire#2") and a != idempotency_token("m2", "acquire#1")


def test_permission_documents_cover_every_declared_call() -> None:
    doc = permission_document("aws")
    actions = doc["Statement"][0]["Action"]
    assert {"ec2:RunInstances", "ec2:StopInstances", "ssm:SendCommand", "ec2:CreateTags"} <= set(actions)
    assert actions == sorted(set(actions))
    assert set(gcp.permission_document()["includedPermissions"]) >= {
        "compute.instances.create", "compute.instances.stop", "compute.instances.setMetadata"}
    assert "Microsoft.Compute/virtualMachines/deallocate/action" in azure.permission_document()["Actions"]
    for module in (aws, gcp, azure):
        declared = {p for ps in module.PERMISSIONS.values() for p in ps}
        doc_text = json.dumps(module.permission_document())
        assert all(p in doc_text for p in declared)
    with pytest.raises(InputError, match="unknown provider"):
        permission_document("oci")


def test_permission_documents_let_verify_read_the_checkpoint() -> None:
    """verify_checkpoint lists and reads the checkpoint store with spotplan's own credentials."""
    read = permission_document("aws")["Statement"][1]
    assert set(read["Action"]) == {"s3:GetObject", "s3:ListBucket"}
    assert {"storage.objects.get", "storage.objects.list"} <= set(gcp.permission_document()["includedPermissions"])
    assert azure.permission_document()["DataActions"] == [
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"]


def test_the_aws_document_lets_a_first_spot_launch_create_the_spot_role() -> None:
    """RunInstances with a Spot market creates AWSServiceRoleForEC2Spot the first time in an account."""
    (role,) = [st for st in permission_document("aws")["Statement"] if st["Action"] == "iam:CreateServiceLinkedRole"]
    assert role["Condition"] == {"StringEquals": {"iam:AWSServiceName": "spot.amazonaws.com"}}


def test_a_call_missing_from_the_permission_table_is_refused() -> None:
    # What keeps the documents above complete: a provider cannot build a call its table does not list.
    from spotplan.providers.base import Call

    assert Call.of("aws", "ec2", "stop_instances", {}, aws.PERMISSIONS).permissions == ("ec2:StopInstances",)
    assert Call.of("aws", "sts", "get_caller_identity", {}, aws.PERMISSIONS).permissions == ()
    with pytest.raises(KeyError, match="ec2.reboot_instances is not in"):
        Call.of("aws", "ec2", "reboot_instances", {}, aws.PERMISSIONS)


def test_permissions_cli(runner: Any) -> None:
    result = runner.invoke(app, ["permissions"])
    assert result.exit_code == 0
    docs = json.loads(result.stdout)
    assert set(docs) == {"aws", "gcp", "azure"} and docs["aws"]["Version"] == "2012-10-17"
    one = runner.invoke(app, ["permissions", "--provider", "gcp"])
    assert json.loads(one.stdout)["title"] == "spotplan migrate"


def test_ids_names_and_images() -> None:
    assert gcp.parse_id("projects/p/zones/z/instances/vm") == ("p", "z", "vm")
    with pytest.raises(InputError, match="not a GCP instance id"):
        gcp.parse_id("i-123")
    name = gcp.instance_name("Move_With.Caps", "abcdef0123456789", 0)
    assert name == "sp-move-with-caps-abcdef01-0" and len(name) <= 63
    assert gcp.label_value("Team/ML") == "team-ml"
    vid = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"
    assert azure.parse_id(vid) == ("s", "rg", "vm1")
    assert azure.image_reference("pub:offer:sku:latest") == {
        "publisher": "pub", "offer": "offer", "sku": "sku", "version": "latest"}
    with pytest.raises(InputError, match="image URN"):
        azure.image_reference("ubuntu")


def test_call_render_keeps_structures_and_cuts_scripts() -> None:
    call = Call("aws", "ec2", "run_instances",
                {"InstanceMarketOptions": {"MarketType": "spot", "SpotOptions": {"MaxPrice": "1.5"}},
                 "UserData": "#!/bin/sh\n" + "x" * 500})
    text = call.render()
    assert "{'MarketType': 'spot', 'SpotOptions': {'MaxPrice': '1.5'}}" in text
    assert "(510 chars)" in text and len(text) < 200


@pytest.mark.parametrize("provider,fetch", [("aws", "meta-data/tags/instance/spotplan-resume-from"),
                                            ("gcp", "Metadata-Flavor: Google"),
                                            ("azure", "tagsList")])
def test_boot_script_waits_for_the_resume_tag(provider: str, fetch: str) -> None:
    import subprocess

    from spotplan.executor import build_user_data

    move = Move.model_validate(make_move("m1", provider, "r", "z", "t", ["x"], "s3://b/m1", "img",
                                         {"via": "command", "command": "true"}))
    script = build_user_data(move, provider)
    assert script.startswith("#!/bin/sh") and fetch in script
    assert "export RESUME_FROM_CHECKPOINT" in script
    assert "exec sh -c 'python train.py --resume-from-latest'" in script
    assert subprocess.run(["sh", "-n", "-c", script]).returncode == 0  # valid shell


def test_permissions_one_row_per_permission_in_every_rendering(runner: Any, tmp_path: Path) -> None:
    docs = json.loads(runner.invoke(app, ["permissions", "-o", "json"]).stdout)
    rows = list(csv.DictReader(io.StringIO(runner.invoke(app, ["permissions", "-o", "csv"]).stdout)))
    granted = {(r["provider"], r["permission"]) for r in rows}
    assert ("aws", "iam:CreateServiceLinkedRole") in granted and ("aws", "s3:GetObject") in granted
    assert {p for prov, p in granted if prov == "gcp"} == set(docs["gcp"]["includedPermissions"])
    assert {p for prov, p in granted if prov == "azure"} == set(docs["azure"]["Actions"] + docs["azure"]["DataActions"])
    table = runner.invoke(app, ["permissions", "-p", "azure", "-o", "table"]).stdout
    assert table.splitlines()[0].split() == ["PROVIDER", "PERMISSION"]
    assert "Microsoft.Compute/virtualMachines/write" in table
    md = runner.invoke(app, ["permissions", "-o", "markdown"]).stdout
    assert "| provider | permission |" in md and "| gcp | compute.instances.create |" in md
    # Piped or written to a file with no -o, the documents themselves.
    (tmp_path / "p.txt").unlink(missing_ok=True)
    assert runner.invoke(app, ["permissions", "--out", str(tmp_path / "p.txt")]).exit_code == 0
    assert json.loads((tmp_path / "p.txt").read_text()) == docs
