"""AWS for `spotplan migrate`: EC2 (spot launch, stop/start/terminate, tags), SSM (checkpoint trigger)
and STS (credential check) through boto3, which is imported lazily.

Endpoints follow boto3's own `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>`, so a local moto
server works without any spotplan-specific switch. Mutating EC2 calls are sent with DryRun=True in
a dry run, which makes EC2 check the caller's permissions without acting.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
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

NAME = "aws"

# How the held boot script reads the resume tag (IMDSv2; needs InstanceMetadataTags=enabled).
RESUME_FETCH = (
    "curl -sf -H \"X-aws-ec2-metadata-token: $(curl -sf -X PUT http://169.254.169.254/latest/api/token"
    " -H 'X-aws-ec2-metadata-token-ttl-seconds: 300')\""
    f" http://169.254.169.254/latest/meta-data/tags/instance/{RESUME_TAG}"
)

# The IAM actions each SDK call needs; `spotplan permissions` is generated from this table.
PERMISSIONS: dict[str, tuple[str, ...]] = {
    "sts.get_caller_identity": (),
    "ec2.describe_instance_type_offerings": ("ec2:DescribeInstanceTypeOfferings",),
    "ec2.describe_instance_types": ("ec2:DescribeInstanceTypes",),
    "ec2.describe_images": ("ec2:DescribeImages",),
    "ec2.describe_subnets": ("ec2:DescribeSubnets",),
    "service-quotas.get_service_quota": ("servicequotas:GetServiceQuota",),
    "ec2.describe_instances": ("ec2:DescribeInstances",),
    "ec2.run_instances": ("ec2:RunInstances", "ec2:CreateTags"),
    "ec2.stop_instances": ("ec2:StopInstances",),
    "ec2.start_instances": ("ec2:StartInstances",),
    "ec2.terminate_instances": ("ec2:TerminateInstances",),
    "ec2.create_tags": ("ec2:CreateTags",),
    "ssm.send_command": ("ssm:SendCommand",),
}

#: What verify_checkpoint needs on an s3:// checkpoint store.
CHECKPOINT_READ = ("s3:GetObject", "s3:ListBucket")

_CREDENTIAL_CODES = {
    "AuthFailure",
    "UnauthorizedOperation",
    "InvalidClientTokenId",
    "ExpiredToken",
    "AccessDenied",
    "AccessDeniedException",
    "SignatureDoesNotMatch",
}
_LIVE_STATES = ["pending", "running", "stopping", "stopped"]

# Spot vCPU quotas (Service Quotas codes) by instance family letter; families not listed go unchecked.
SPOT_QUOTAS = {
    "g": ("L-3819A6DF", "All G and VT Spot Instance Requests"),
    "vt": ("L-3819A6DF", "All G and VT Spot Instance Requests"),
    "p": ("L-7212CCBC", "All P Spot Instance Requests"),
    **{f: ("L-34B43A08", "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests") for f in "acdhimrtz"},
}


def spot_quota_for(instance_type: str) -> tuple[str, str] | None:
    family = instance_type.split(".")[0]
    letters = "".join(ch for ch in family if ch.isalpha()).lower()
    return SPOT_QUOTAS.get(letters[:2]) or SPOT_QUOTAS.get(letters[:1])
_STATE = {"shutting-down": "terminated"}


def permission_document() -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "SpotplanMigrate", "Effect": "Allow", "Action": all_permissions(PERMISSIONS), "Resource": "*"},
            # verify_checkpoint lists and reads the checkpoint (manifest and checksums) where spotplan runs.
            {"Sid": "SpotplanVerifyCheckpoint", "Effect": "Allow", "Action": list(CHECKPOINT_READ),
             "Resource": ["arn:aws:s3:::<checkpoint-bucket>", "arn:aws:s3:::<checkpoint-bucket>/*"]},
            # The first Spot launch in an account creates the Spot service-linked role.
            {"Sid": "SpotplanSpotServiceLinkedRole", "Effect": "Allow", "Action": "iam:CreateServiceLinkedRole",
             "Resource": "*", "Condition": {"StringEquals": {"iam:AWSServiceName": "spot.amazonaws.com"}}},
        ],
    }


_ID = re.compile(r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$")


def parse_id(instance_id: str) -> str:
    """An EC2 instance id (i- and 8 or 17 hex digits), or InputError."""
    if not _ID.match(instance_id):
        raise InputError(f"{instance_id!r} is not an EC2 instance id (i-0123456789abcdef0)")
    return instance_id


def make(region: str) -> AwsProvider:
    return AwsProvider(region)


def _tags(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _translate(where: str, exc: Exception) -> tuple[SpotplanError, str] | None:
    """botocore errors as spotplan errors; credentials problems exit 4."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        hint = "configure AWS credentials (aws configure)"
        return CredentialsError(f"{where}: {exc}", hint=hint), "no AWS credentials"
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code, message = err.get("Code", "Error"), err.get("Message", "")
        return (CredentialsError if code in _CREDENTIAL_CODES else CloudError)(f"{where}: {code}: {message}"), code
    if isinstance(exc, BotoCoreError):
        return CloudError(f"{where}: {exc}"), type(exc).__name__
    return None


class AwsProvider:
    """EC2/SSM/STS for one region."""

    name = NAME

    def __init__(self, region: str) -> None:
        self.region = region
        self._clients: dict[str, Any] = {}

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            require_extra("boto3", "aws")
            import boto3
            from botocore.config import Config

            # Retries absorb throttling and 5xx; everything else reaches the executor. boto3's own
            # AWS_MAX_ATTEMPTS / AWS_RETRY_MODE still win, as they would without spotplan's default.
            attempts = os.environ.get("AWS_MAX_ATTEMPTS") or "4"
            if not attempts.isdigit():
                raise InputError(f"AWS_MAX_ATTEMPTS={attempts!r}: expected a whole number of attempts")
            retries = {"max_attempts": int(attempts), "mode": os.environ.get("AWS_RETRY_MODE") or "standard"}
            config = Config(retries=retries, connect_timeout=10, read_timeout=60)
            self._clients[service] = boto3.client(service, region_name=self.region, config=config)
        return self._clients[service]

    def _call(self, service: str, method: str, params: dict[str, Any], note: str = "") -> Call:
        return Call.of(NAME, service, method, params, PERMISSIONS, note)

    def _send(self, call: Call) -> Any:
        with translated(call, _translate):
            return getattr(self._client(call.service), call.method)(**call.params)

    def _ec2_check(self, call: Call) -> Callable[[], str]:
        """A dry-run check: the same request with DryRun=True; EC2 answers DryRunOperation when allowed.

        Any other answer (denied, invalid, unreachable) is the failure the real call would meet: it
        is marked on the call and raised, so the dry run fails with the exit code execution would."""

        def check() -> str:
            client = self._client("ec2")  # first: without the extra, its install hint is the error
            from botocore.exceptions import ClientError

            with translated(call, _translate):
                try:
                    getattr(client, call.method)(**call.params, DryRun=True)
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code", "") == "DryRunOperation":
                        return "permission ok (DryRun)"
                    raise
            return "checked"

        return check

    def _read(self, call: Call) -> Any:
        # Reads are sent in dry runs too: they change nothing and make the dry run truthful.
        result = self._send(call)
        call.outcome = "ok"
        return result

    # ---- Provider protocol ------------------------------------------------------------------

    def preflight(self, spec: LaunchSpec, dry_run: bool) -> tuple[list[Call], dict[str, Any]]:
        if not spec.image:
            raise InputError(f"move {spec.move_id}: launch.image (an AMI id) is required to start the target")
        ident = self._call("sts", "get_caller_identity", {}, note="credentials")
        who = self._read(ident)
        where = spec.zone or spec.region
        offer = self._call(
            "ec2",
            "describe_instance_type_offerings",
            {
                "LocationType": "availability-zone" if spec.zone else "region",
                "Filters": [
                    {"Name": "instance-type", "Values": [spec.instance_type]},
                    {"Name": "location", "Values": [where]},
                ],
            },
            note="the target type exists in the zone",
        )
        offers = self._read(offer)
        if not offers.get("InstanceTypeOfferings"):
            raise CloudError(f"move {spec.move_id}: {spec.instance_type} is not offered in {where}")
        calls = [ident, offer, *self._check_placement(spec)]
        quota = spot_quota_for(spec.instance_type) if spec.market == "spot" else None
        if quota is not None:
            calls += self._check_spot_quota(spec, *quota)
        return calls, {"account": who.get("Account")}

    def _read_unless(self, call: Call, absent: Callable[[str], bool]) -> Any:
        """A read whose ClientError, when `absent(code)` holds, means "not there" (None, and the code
        in the call's outcome) rather than a failure."""
        client = self._client(call.service)  # first: without the extra, its install hint is the error
        from botocore.exceptions import ClientError

        with translated(call, _translate):
            try:
                result = getattr(client, call.method)(**call.params)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "error")
                if not absent(code):
                    raise
                call.outcome = f"not found ({code})"
                return None
        call.outcome = "ok"
        return result

    def _check_placement(self, spec: LaunchSpec) -> list[Call]:
        """The AMI and subnet must exist in the target region. Both are regional, so a plan that
        moves a workload to another region, or from another cloud, can name ones EC2 there does not
        have; run_instances would refuse them only after the move had begun."""
        image = spec.image or ""
        elsewhere = spec.launch_block_note(NAME)
        calls: list[Call] = []
        if not image.startswith(("ami-", "resolve:ssm:")):
            raise InputError(f"move {spec.move_id}: launch.image {image!r} is not an AMI id (ami-...){elsewhere}: "
                             f"set it to an AMI of {self.region} in the plan")
        if image.startswith("ami-"):  # a resolve:ssm: parameter is resolved in the region at launch
            call = self._call("ec2", "describe_images", {"ImageIds": [image]}, note="the AMI is in the target region")
            calls.append(call)
            found = self._read_unless(call, lambda code: code.startswith("InvalidAMIID"))
            if not (found or {}).get("Images"):
                call.outcome = "not found"
                raise InputError(f"move {spec.move_id}: AMI {image} is not in {self.region}{elsewhere}: AMIs are "
                                 f"regional; copy it there (aws ec2 copy-image) and set launch.image in the plan")
        subnet = spec.network.get("subnet")
        if subnet:
            call = self._call("ec2", "describe_subnets", {"SubnetIds": [subnet]},
                              note="the subnet is in the target region")
            calls.append(call)
            found = self._read_unless(call, lambda code: code == "InvalidSubnetID.NotFound")
            subnets = (found or {}).get("Subnets") or []
            if not subnets:
                call.outcome = "not found"
                raise InputError(f"move {spec.move_id}: launch.network.subnet {subnet} is not in {self.region}"
                                 f"{elsewhere}: set a subnet of the target region in the plan")
            zone = subnets[0].get("AvailabilityZone")
            if spec.zone and zone and zone != spec.zone:
                raise InputError(f"move {spec.move_id}: launch.network.subnet {subnet} is in {zone}, not in the "
                                 f"target zone {spec.zone}")
        return calls

    def _check_spot_quota(self, spec: LaunchSpec, code: str, name: str) -> list[Call]:
        """The account's Spot vCPU quota must at least fit this move (new accounts often have 0)."""
        types = self._call("ec2", "describe_instance_types", {"InstanceTypes": [spec.instance_type]})
        info = self._read(types).get("InstanceTypes") or [{}]
        need = spec.count * int(info[0].get("VCpuInfo", {}).get("DefaultVCpus", 0))
        call = self._call("service-quotas", "get_service_quota", {"ServiceCode": "ec2", "QuotaCode": code},
                          note=name)
        # Not every partition/account (or emulator) reports it: go on, and say so.
        found = self._read_unless(call, lambda _code: True)
        if found is None:
            call.outcome = call.outcome.replace("not found", "not reported")
            return [types, call]
        value = found["Quota"]["Value"]
        call.outcome = f"ok ({value:g} vCPUs)"
        if need > value:
            raise CloudError(f"move {spec.move_id}: Spot vCPU quota '{name}' is {value:g}, {need} needed "
                             f"(request an increase in Service Quotas, code {code})")
        return [types, call]

    def _find_by_token(self, token: str) -> tuple[Call, list[str]]:
        call = self._call(
            "ec2",
            "describe_instances",
            {
                "Filters": [
                    {"Name": f"tag:{TOKEN_TAG}", "Values": [token]},
                    {"Name": "instance-state-name", "Values": _LIVE_STATES},
                ]
            },
            note="instances already created by this step (resume)",
        )
        resp = self._read(call)
        ids = [i["InstanceId"] for r in resp.get("Reservations", []) for i in r.get("Instances", [])]
        return call, sorted(ids)

    def launch(self, spec: LaunchSpec, dry_run: bool) -> tuple[list[Call], list[str]]:
        params: dict[str, Any] = {
            "ImageId": spec.image,
            "InstanceType": spec.instance_type,
            "MinCount": spec.count,
            "MaxCount": spec.count,
            "ClientToken": spec.token,
            "UserData": spec.user_data,
            # Instance tags in IMDS let the held boot script see the resume tag set later.
            "MetadataOptions": {"HttpTokens": "required", "InstanceMetadataTags": "enabled"},
            # The volumes too, so a cost or leak sweep by tag sees everything the move created.
            "TagSpecifications": [{"ResourceType": kind, "Tags": _tags(spec.tags)} for kind in ("instance", "volume")],
        }
        if spec.market == "spot":
            spot: dict[str, Any] = {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}
            if spec.max_price is not None:
                spot["MaxPrice"] = f"{spec.max_price:.6f}".rstrip("0").rstrip(".")
            params["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": spot}
        if spec.zone:
            params["Placement"] = {"AvailabilityZone": spec.zone}
        if spec.network.get("subnet"):
            params["SubnetId"] = spec.network["subnet"]
        if spec.network.get("security_groups"):
            params["SecurityGroupIds"] = list(spec.network["security_groups"])
        # The lookup is a read, so a dry run sends it too and says when an interrupted run's
        # instances would be reused; when it fails, the dry run still builds (and checks) the create.
        calls: list[Call] = []
        try:
            lookup, existing = self._find_by_token(spec.token)
        except SpotplanError:
            if not dry_run:
                raise
            existing = []
        else:
            calls.append(lookup)
        if existing:
            lookup.note = "reused: created by an interrupted run"
            lookup.ids = existing
            return calls, existing
        call = self._call("ec2", "run_instances", params)
        calls.append(call)
        resp = call.run(dry_run, lambda: self._send(call), self._ec2_check(call))
        ids = sorted(i["InstanceId"] for i in resp["Instances"]) if resp else []
        call.ids = ids
        return calls, ids

    def trigger_checkpoint_ssm(
        self, source_ids: Sequence[str], command: str, move_id: str, dry_run: bool
    ) -> tuple[list[Call], dict[str, Any]]:
        call = self._call(
            "ssm",
            "send_command",
            {
                "InstanceIds": list(source_ids),
                "DocumentName": "AWS-RunShellScript",
                "Parameters": {"commands": [command]},
                "Comment": f"{MOVE_TAG}={move_id} checkpoint"[:100],
            },
        )
        resp = call.run(dry_run, lambda: self._send(call))
        command_id = resp["Command"]["CommandId"] if resp else None
        if command_id:
            call.ids = [command_id]
        return [call], {"command_id": command_id}

    def _mutate(self, method: str, params: dict[str, Any], dry_run: bool) -> list[Call]:
        call = self._call("ec2", method, params)
        ids = params.get("InstanceIds") or params.get("Resources") or []
        # Placeholders (ids only known after acquire) cannot be permission-checked.
        check = None if any(str(i).startswith("<") for i in ids) else self._ec2_check(call)
        call.run(dry_run, lambda: self._send(call), check)
        return [call]

    def stop(self, ids: Sequence[str], dry_run: bool) -> list[Call]:
        return self._mutate("stop_instances", {"InstanceIds": list(ids)}, dry_run)

    def start(self, ids: Sequence[str], dry_run: bool) -> list[Call]:
        return self._mutate("start_instances", {"InstanceIds": list(ids)}, dry_run)

    def release(self, ids: Sequence[str], dry_run: bool) -> list[Call]:
        return self._mutate("terminate_instances", {"InstanceIds": list(ids)}, dry_run)

    def signal_resume(self, ids: Sequence[str], checkpoint_uri: str, dry_run: bool) -> list[Call]:
        return self._mutate(
            "create_tags", {"Resources": list(ids), "Tags": _tags({RESUME_TAG: checkpoint_uri})}, dry_run
        )

    def states(self, ids: Sequence[str], dry_run: bool = False) -> tuple[list[Call], dict[str, str]]:
        call = self._call("ec2", "describe_instances", {"InstanceIds": list(ids)})
        if dry_run:
            call.outcome = "dry-run"
            return [call], {i: "running" for i in ids}
        found = _states_of(self._read(call))
        return [call], {i: found.get(i, "missing") for i in ids}

    def list_created(self, move_id: str, near: Sequence[str] = ()) -> dict[str, str]:
        call = self._call("ec2", "describe_instances", {"Filters": [{"Name": f"tag:{MOVE_TAG}", "Values": [move_id]}]})
        return _states_of(self._send(call))


def _states_of(resp: dict[str, Any]) -> dict[str, str]:
    """Normalised state per instance id in a describe_instances answer."""
    return {
        i["InstanceId"]: _STATE.get(i["State"]["Name"], i["State"]["Name"])
        for r in resp.get("Reservations", [])
        for i in r.get("Instances", [])
    }
