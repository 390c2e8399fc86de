"""`spotplan migrate` on AWS end to end: boto3 against a moto server (EC2, SSM, S3) behind a
fault-injecting proxy; the SSM checkpoint trigger is answered by a simulated node agent that writes
a real checkpoint to S3 with spotplan.checkpoint."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spotplan.cli.main import app
from tests.emulators._http import LocalServer, QuietHandler
from tests.test_migrate_support import (
    FaultProxy,
    assert_move_invariants,
    journal_consistent,
    journal_of,
    make_move,
    write_plan,
)

pytestmark = pytest.mark.timeout(60)

REGION, ZONE, ITYPE = "us-east-1", "us-east-1a", "g5.xlarge"
BUCKET = "ckpt-bucket"


class Cloud:
    """The moto server, the proxy in front of it, and clients straight to moto (the test's view)."""

    def __init__(self) -> None:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)

        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        host, port = self.moto.get_host_and_port()
        self.moto_url = f"http://{host}:{port}"
        self.proxy = FaultProxy((host, port))
        self.env = {
            "AWS_ENDPOINT_URL": self.proxy.url,
            "AWS_ENDPOINT_URL_S3": self.moto_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
        }
        import boto3

        kw = {"region_name": REGION, "endpoint_url": self.moto_url, "aws_access_key_id": "testing",
              "aws_secret_access_key": "testing"}
        self.ec2 = boto3.client("ec2", **kw)
        self.ssm = boto3.client("ssm", **kw)
        self.s3 = boto3.client("s3", **kw)
        self.s3.create_bucket(Bucket=BUCKET)
        self.image = self.ec2.describe_images()["Images"][0]["ImageId"]
        # The simulated SSM agent: instance id -> checkpoint storage (None: never checkpoints).
        self.agents: dict[str, str | None] = {}
        self.handled: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._agent_loop, daemon=True)
        self._thread.start()

    def _agent_loop(self) -> None:
        from spotplan.checkpoint import CheckpointStore

        while not self._stop.wait(0.2):
            try:
                commands = self.ssm.list_commands()["Commands"]
            except Exception:
                continue
            for cmd in commands:
                if cmd["CommandId"] in self.handled:
                    continue
                self.handled.add(cmd["CommandId"])
                for iid in cmd.get("InstanceIds", []):
                    storage = self.agents.get(iid)
                    if storage:
                        store = CheckpointStore(storage, storage_options={"client_kwargs": {
                            "endpoint_url": self.moto_url}})
                        store.save(len(self.handled), {"model.bin": os.urandom(128)}, metadata={"by": iid})

    def source(self, storage: str | None, count: int = 1) -> list[str]:
        resp = self.ec2.run_instances(ImageId=self.image, InstanceType=ITYPE, MinCount=count, MaxCount=count,
                                      Placement={"AvailabilityZone": ZONE})
        ids = [i["InstanceId"] for i in resp["Instances"]]
        for iid in ids:
            self.agents[iid] = storage
        return ids

    def state(self, iid: str) -> str:
        resp = self.ec2.describe_instances(InstanceIds=[iid])
        return resp["Reservations"][0]["Instances"][0]["State"]["Name"]

    def tagged(self, move_id: str) -> dict[str, dict[str, Any]]:
        resp = self.ec2.describe_instances(Filters=[{"Name": "tag:spotplan-move", "Values": [move_id]}])
        return {i["InstanceId"]: i for r in resp["Reservations"] for i in r["Instances"]}

    def live_tagged(self, move_id: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.tagged(move_id).items()
                if v["State"]["Name"] not in ("terminated", "shutting-down")}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.proxy.stop()
        self.moto.stop()


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    c = Cloud()
    yield c
    c.close()


@pytest.fixture(autouse=True)
def _aws_env(cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in cloud.env.items():
        monkeypatch.setenv(k, v)
    cloud.proxy.clear()


def new_move(cloud: Cloud, tmp_path: Path, agent: bool = True, **kw: Any) -> tuple[str, str, list[str], Path]:
    move_id = f"m-{uuid.uuid4().hex[:8]}"
    storage = f"s3://{BUCKET}/{move_id}"
    src = cloud.source(storage if agent else None)
    trigger = {"via": "ssm", "command": "pkill -USR1 -f train.py"}
    move = make_move(move_id, "aws", REGION, ZONE, ITYPE, src, storage, cloud.image, trigger, **kw)
    return move_id, storage, src, write_plan(tmp_path / f"{move_id}.json", [move])


def assert_invariants(cloud: Cloud, move_id: str, src: list[str], expect_done: bool) -> None:
    """No leaked instance; the source is stopped only with a verified checkpoint; journal consistent."""
    assert_move_invariants(move_id, cloud.live_tagged(move_id), {cloud.state(i) for i in src}, "stopped",
                           {"running", "pending"}, expect_done)


def test_dry_run_prints_exact_calls_and_mutates_nothing(cloud: Cloud, runner: Any, tmp_path: Path) -> None:
    move_id, _, src, plan = new_move(cloud, tmp_path)
    result = runner.invoke(app, ["migrate", str(plan), "--dry-run"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for step in ("preflight", "acquire", "trigger_checkpoint", "verify_checkpoint", "stop_source",
                 "resume_target", "health_check", "record"):
        assert step in out
    assert "ec2.run_instances(" in out and "'MarketType': 'spot'" in out and "'MaxPrice': '1'" in out
    assert "permission ok (DryRun)" in out
    assert "service-quotas.get_service_quota(ServiceCode='ec2', QuotaCode='L-3819A6DF')  [not reported" in out
    assert f"ec2.stop_instances(InstanceIds=['{src[0]}'])" in out
    assert "ssm.send_command(" in out
    assert cloud.tagged(move_id) == {}
    assert cloud.state(src[0]) in ("running", "pending")
    listed = runner.invoke(app, ["migrations", "list", "-o", "json"])
    assert move_id not in listed.stdout
    js = runner.invoke(app, ["migrate", str(plan), "--dry-run", "-o", "json"])
    doc = json.loads(js.stdout)
    acquire = next(s for s in doc["moves"][0]["steps"] if s["step"] == "acquire")
    lookup, create = acquire["calls"]
    assert lookup["call"] == "ec2.describe_instances" and lookup["outcome"] == "ok"  # reads are sent
    params = create["params"]
    assert params["InstanceMarketOptions"]["SpotOptions"]["MaxPrice"] == "1"
    assert params["ClientToken"] and "RESUME_FROM_CHECKPOINT" in params["UserData"]


def test_migrate_moves_on_demand_to_spot(cloud: Cloud, runner: Any, tmp_path: Path) -> None:
    move_id, storage, src, plan = new_move(cloud, tmp_path)
    result = runner.invoke(app, ["migrate", str(plan), "--yes", "--checkpoint-timeout", "20"])
    assert result.exit_code == 0, result.output
    assert_invariants(cloud, move_id, src, expect_done=True)
    (target_id, inst), = cloud.live_tagged(move_id).items()
    assert inst["InstanceLifecycle"] == "spot" and inst["InstanceType"] == ITYPE
    tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
    j = journal_of(move_id)
    ckpt = j["state"]["checkpoint_uri"]
    assert ckpt.startswith(storage) and tags["spotplan-resume-from"] == ckpt
    user_data = base64.b64decode(
        cloud.ec2.describe_instance_attribute(InstanceId=target_id, Attribute="userData")["UserData"]["Value"]
    ).decode()
    assert "python train.py --resume-from-latest" in user_data and "RESUME_FROM_CHECKPOINT" in user_data
    # The root volume carries the move's tags too (a sweep by tag sees everything created).
    volumes = cloud.ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [target_id]}])
    assert volumes["Volumes"] and all({"Key": "spotplan-move", "Value": move_id} in v.get("Tags", [])
                                      for v in volumes["Volumes"])
    # The checkpoint really is in S3 and newer than the trigger.
    keys = [o["Key"] for o in cloud.s3.list_objects_v2(Bucket=BUCKET, Prefix=move_id)["Contents"]]
    assert any(k.endswith("MANIFEST.json") for k in keys)
    assert j["state"]["checkpoint_created_at"] > j["state"]["trigger_at"]
    listed = runner.invoke(app, ["migrations", "list"])
    assert move_id in listed.stdout and "done" in listed.stdout
    shown = runner.invoke(app, ["migrations", "show", move_id])
    assert "ec2.run_instances" in shown.stdout and target_id in shown.stdout
    again = runner.invoke(app, ["migrate", str(plan), "--yes"])
    assert again.exit_code == 0 and "already-done" in again.stdout
    assert len(cloud.tagged(move_id)) == 1


def test_no_tty_without_yes_fails_with_hint(cloud: Cloud, runner: Any, tmp_path: Path) -> None:
    _, _, _, plan = new_move(cloud, tmp_path)
    result = runner.invoke(app, ["migrate", str(plan)])
    assert result.exit_code == 2 and "--yes" in result.stderr


def test_never_bids_above_on_demand(cloud: Cloud, runner: Any, tmp_path: Path) -> None:
    move_id, _, src, plan = new_move(cloud, tmp_path, max_price=2.0, on_demand_price=1.0)
    result = runner.invoke(app, ["migrate", str(plan), "--yes"])
    assert result.exit_code == 2 and "above the on-demand price" in result.stderr
    assert_invariants(cloud, move_id, src, expect_done=False)


def test_checkpoint_never_appears_keeps_source_running(cloud: Cloud, runner: Any, tmp_path: Path) -> None:
    move_id, _, src, plan = new_move(cloud, tmp_path, agent=False)
    result = runner.invoke(app, ["migrate", str(plan), "--yes", "--checkpoint-timeout", "1"])
    assert result.exit_code == 1 and "no verified checkpoint" in result.stderr
    assert_invariants(cloud, move_id, src, expect_done=False)
    assert len(cloud.tagged(move_id)) == 1  # the spot instance was created, then released


def test_fallback_to_on_demand(cloud: Cloud, runner: Any, tmp_path: Path) -> None:
    move_id, _, src, plan = new_move(cloud, tmp_path)
    assert runner.invoke(app, ["migrate", str(plan), "--yes"]).exit_code == 0
    spot_id = journal_of(move_id)["state"]["target_ids"][0]
    result = runner.invoke(app, ["migrate", "--fallback", move_id, "--yes"])
    assert result.exit_code == 0, result.output
    j = journal_of(move_id)
    assert j["kind"] == "fallback" and j["status"] == "done"
    (od_id, inst), = cloud.live_tagged(move_id).items()
    assert od_id != spot_id and "InstanceLifecycle" not in inst
    assert cloud.state(spot_id) == "terminated"
    assert {t["Key"]: t["Value"] for t in inst["Tags"]}["spotplan-resume-from"] == j["state"]["checkpoint_uri"]


# ---- fault injection: every provider call fails once ---------------------------------------------

FAULTS = [
    # (action, skip, code, status, expect_done)
    ("GetCallerIdentity", 0, "ExpiredToken", 403, False),
    ("DescribeInstanceTypeOfferings", 0, "RequestLimitExceeded", 400, True),  # throttling: retried
    ("DescribeInstanceTypeOfferings", 0, "UnauthorizedOperation", 403, False),
    ("DescribeInstances", 0, "InternalError", 400, False),      # the acquire lookup
    ("RunInstances", 0, "InsufficientInstanceCapacity", 400, False),
    ("RunInstances", 0, "ServiceUnavailable", 503, True),        # transient: the SDK retries it
    ("SendCommand", 0, "InvalidInstanceId", 400, False),
    ("StopInstances", 0, "IncorrectInstanceState", 400, False),
    ("CreateTags", 0, "InternalError", 400, False),
    ("DescribeInstances", 1, "InternalError", 400, False),      # the health check
    ("TerminateInstances", 0, "InternalError", 503, False),     # during the rollback: retried
]


@pytest.mark.parametrize("action,skip,code,status,expect_done", FAULTS,
                         ids=[f"{a}-{s}-{c}" for a, s, c, _, _ in FAULTS])
def test_each_call_fails_once(cloud: Cloud, runner: Any, tmp_path: Path, action: str, skip: int, code: str,
                              status: int, expect_done: bool) -> None:
    move_id, _, src, plan = new_move(cloud, tmp_path)
    if action == "TerminateInstances":
        cloud.agents[src[0]] = None  # make verify fail so the rollback terminates the target
    cloud.proxy.fail_next(action, code=code, status=status, skip=skip)
    result = runner.invoke(app, ["migrate", str(plan), "--yes", "--checkpoint-timeout",
                                 "1" if action == "TerminateInstances" else "20"])
    assert action not in cloud.proxy.faults, "the fault was never triggered"
    if expect_done:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == (4 if code in ("ExpiredToken", "UnauthorizedOperation") else 1), result.output
        assert "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("error: move ")
    assert_invariants(cloud, move_id, src, expect_done=expect_done)


# ---- fault injection: SIGKILL at every step boundary, then --resume ------------------------------

# Every step's "after" point (its provider call made, the journal not yet told) and the "before" point
# (start journaled, call not made) of the steps that change the cloud.
BOUNDARIES = [("preflight", "before")] + [
    (s, "after") for s in ("preflight", "acquire", "trigger_checkpoint", "verify_checkpoint", "stop_source",
                           "resume_target", "health_check", "record")
] + [(s, "before") for s in ("acquire", "stop_source", "resume_target")]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("step,when", BOUNDARIES, ids=[f"{s}:{w}" for s, w in BOUNDARIES])
def test_sigkill_at_step_boundary_then_resume(cloud: Cloud, runner: Any, tmp_path: Path, step: str,
                                              when: str) -> None:
    move_id, _, src, plan = new_move(cloud, tmp_path)
    env = {**os.environ, "SPOTPLAN_TEST_CRASH_AT": f"{step}:{when}"}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "spotplan", "migrate", str(plan), "--yes",
                           "--checkpoint-timeout", "20"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == -9, proc.stderr
    print(f"killed run took {time.monotonic() - t0:.2f}s")
    j = journal_of(move_id)
    assert j["status"] == "running"
    journal_consistent(j["events"])
    if cloud.state(src[0]) == "stopped":
        assert j["state"].get("checkpoint_verified") is True
    # A plain rerun refuses and points at --resume.
    rerun = runner.invoke(app, ["migrate", str(plan), "--yes"])
    assert rerun.exit_code == 2 and f"--resume {move_id}" in rerun.stderr
    result = runner.invoke(app, ["migrate", "--resume", move_id, "--yes", "--checkpoint-timeout", "20"])
    assert result.exit_code == 0, result.output
    assert_invariants(cloud, move_id, src, expect_done=True)
    # Never double-created: one spot instance was ever tagged with this move.
    assert len(cloud.tagged(move_id)) == 1


def test_resume_unknown_move_is_a_usage_error(runner: Any) -> None:
    result = runner.invoke(app, ["migrate", "--resume", "nope", "--yes"])
    assert result.exit_code == 2 and "no move 'nope'" in result.stderr


def test_subprocess_timing_note(cloud: Cloud, tmp_path: Path) -> None:
    """`python -m spotplan migrate --dry-run` works as a subprocess (the crash tests rely on it)."""
    _, _, _, plan = new_move(cloud, tmp_path)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "spotplan", "migrate", str(plan), "--dry-run"],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    assert "ec2.run_instances" in proc.stdout and time.monotonic() - t0 < 30


@pytest.mark.timeout(90)
def test_sigkill_from_outside_while_waiting_for_the_checkpoint(cloud: Cloud, runner: Any, tmp_path: Path) -> None:
    """Kill the executor when the journal shows it waiting for the checkpoint; the source must still run."""
    from spotplan.checkpoint import CheckpointStore
    from spotplan.journal import Journal

    move_id, storage, src, plan = new_move(cloud, tmp_path, agent=False)
    proc = subprocess.Popen([sys.executable, "-m", "spotplan", "migrate", str(plan), "--yes",
                             "--checkpoint-timeout", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            move = Journal().get_move(move_id)
            if move is not None and any(e["step"] == "verify_checkpoint" and e["phase"] == "start"
                                        for e in Journal().events(move_id)):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the executor never reached verify_checkpoint")
        proc.send_signal(9)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -9
    assert cloud.state(src[0]) in ("running", "pending")
    assert len(cloud.live_tagged(move_id)) == 1  # the held spot capacity, journaled
    # The workload's save lands late; the resumed run finds it (it is newer than the trigger).
    CheckpointStore(storage, storage_options={"client_kwargs": {"endpoint_url": cloud.moto_url}}).save(
        7, {"model.bin": b"late"})
    result = runner.invoke(app, ["migrate", "--resume", move_id, "--yes", "--checkpoint-timeout", "10"])
    assert result.exit_code == 0, result.output
    assert_invariants(cloud, move_id, src, expect_done=True)
    assert journal_of(move_id)["state"]["checkpoint_step"] == 7


def test_rolled_back_move_can_be_retried_with_fresh_tokens(cloud: Cloud, runner: Any, tmp_path: Path) -> None:
    move_id, _, src, plan = new_move(cloud, tmp_path)
    cloud.proxy.fail_next("RunInstances", code="InsufficientInstanceCapacity")
    assert runner.invoke(app, ["migrate", str(plan), "--yes"]).exit_code == 1
    fb = runner.invoke(app, ["migrate", "--fallback", move_id, "--yes"])
    assert fb.exit_code == 2 and "nothing to fall back from" in fb.stderr
    again = runner.invoke(app, ["migrate", str(plan), "--yes", "--checkpoint-timeout", "20"])
    assert again.exit_code == 0, again.output
    assert_invariants(cloud, move_id, src, expect_done=True)
    j = journal_of(move_id)
    assert j["state"]["attempt"] == 2 and [e["step"] for e in j["events"]].count("begin") == 2


def test_gang_of_two_with_signal_trigger(cloud: Cloud, runner: Any, tmp_path: Path) -> None:
    """count=2 launches two spot instances in one call; a `via: signal` trigger goes through SSM."""
    move_id = f"m-{uuid.uuid4().hex[:8]}"
    storage = f"s3://{BUCKET}/{move_id}"
    src = cloud.source(storage, count=2)
    trigger = {"via": "signal", "signal": "SIGUSR1", "process": "train.py"}
    plan = write_plan(tmp_path / "p.json", [make_move(move_id, "aws", REGION, ZONE, ITYPE, src, storage,
                                                      cloud.image, trigger)])
    result = runner.invoke(app, ["migrate", str(plan), "--yes", "--checkpoint-timeout", "20"])
    assert result.exit_code == 0, result.output
    assert_invariants(cloud, move_id, src, expect_done=True)
    assert len(cloud.live_tagged(move_id)) == 2
    sent = [c for c in cloud.ssm.list_commands()["Commands"] if move_id in c.get("Comment", "")]
    assert len(sent) == 1 and set(src) <= set(sent[0]["InstanceIds"])
    trigger_done = next(e for e in journal_of(move_id)["events"]
                        if e["step"] == "trigger_checkpoint" and e["phase"] == "done")
    assert sorted(trigger_done["calls"][0]["params"]["InstanceIds"]) == sorted(src)
    assert sent[0]["Parameters"]["commands"] == ["pkill -USR1 -f train.py"]


def test_rollback_that_cannot_finish_is_reported_failed(cloud: Cloud, runner: Any, tmp_path: Path) -> None:
    """Acquire fails, then the rollback's terminate fails for good: status `failed`, named ids."""
    move_id, _, src, plan = new_move(cloud, tmp_path, agent=False)
    cloud.proxy.fail_next("TerminateInstances", code="UnauthorizedOperation", status=403)
    result = runner.invoke(app, ["migrate", str(plan), "--yes", "--checkpoint-timeout", "0.5"])
    assert result.exit_code == 1, result.output
    j = journal_of(move_id)
    assert j["status"] == "failed"
    assert "ROLLBACK INCOMPLETE" in result.stderr and "terminate_instances" in result.stderr
    failed = [e for e in j["events"] if e["phase"] == "failed"]
    assert [e["step"] for e in failed] == ["verify_checkpoint", "rollback_release_target"]
    # What is left running is exactly what the journal names, and the source was never stopped.
    assert sorted(cloud.live_tagged(move_id)) == sorted(j["state"]["target_ids"])
    assert cloud.state(src[0]) in ("running", "pending")
    listed = runner.invoke(app, ["migrations", "list"])
    assert move_id in listed.stdout and "failed" in listed.stdout
    rerun = runner.invoke(app, ["migrate", str(plan), "--yes"])
    assert rerun.exit_code == 2 and f"--resume {move_id}" in rerun.stderr
    # --resume retries the rollback (the fault is gone): now nothing is left.
    retried = runner.invoke(app, ["migrate", "--resume", move_id, "--yes"])
    assert retried.exit_code == 1 and "verify_checkpoint" in retried.stderr
    assert_invariants(cloud, move_id, src, expect_done=False)


def test_dry_run_reports_a_denied_permission(cloud: Cloud, runner: Any, tmp_path: Path) -> None:
    move_id, _, _, plan = new_move(cloud, tmp_path)
    cloud.proxy.fail_next("StopInstances", code="UnauthorizedOperation", status=403)
    result = runner.invoke(app, ["migrate", str(plan), "--dry-run"])
    assert result.exit_code == 4, result.output  # the real run would stop there on a permission
    stop_line = next(line for line in result.stdout.splitlines() if "ec2.stop_instances(" in line)
    assert stop_line.endswith("[denied (UnauthorizedOperation)]")
    assert "StopInstances" in cloud.proxy.seen and cloud.tagged(move_id) == {}


DRY_DENIALS = [
    # (action, code, the call line that must carry the denial)
    ("GetCallerIdentity", "InvalidClientTokenId", "sts.get_caller_identity()"),
    ("DescribeInstanceTypeOfferings", "AuthFailure", "ec2.describe_instance_type_offerings("),
    ("RunInstances", "UnauthorizedOperation", "ec2.run_instances("),
]


@pytest.mark.parametrize("action,code,call", DRY_DENIALS, ids=[c for _, c, _ in DRY_DENIALS])
def test_dry_run_with_rejected_credentials_exits_4(cloud: Cloud, runner: Any, tmp_path: Path, action: str,
                                                   code: str, call: str) -> None:
    move_id, _, _, plan = new_move(cloud, tmp_path)
    cloud.proxy.fail_next(action, code=code, status=403)
    result = runner.invoke(app, ["migrate", str(plan), "--dry-run"])
    assert action not in cloud.proxy.faults, "the fault was never triggered"
    assert result.exit_code == 4, result.output
    line = next(line for line in result.stdout.splitlines() if call in line)
    assert line.endswith(f"[denied ({code})]")
    for step in ("preflight", "acquire", "trigger_checkpoint", "stop_source", "resume_target", "record"):
        assert step in result.stdout  # every step is still printed
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: move {move_id} would fail: ")
    assert cloud.tagged(move_id) == {}


def test_dry_run_exit_codes_follow_the_moves(cloud: Cloud, runner: Any, tmp_path: Path) -> None:
    """One move would fail on input (a bid above on-demand): 2 alone, 3 beside a move that would work."""
    tag = uuid.uuid4().hex[:8]
    trigger = {"via": "ssm", "command": "true"}
    good = make_move(f"ok-{tag}", "aws", REGION, ZONE, ITYPE, cloud.source(None), f"s3://{BUCKET}/ok-{tag}",
                     cloud.image, trigger)
    bad = make_move(f"bad-{tag}", "aws", REGION, ZONE, ITYPE, cloud.source(None), f"s3://{BUCKET}/bad-{tag}",
                    cloud.image, trigger, max_price=2.0, on_demand_price=1.0)
    alone = runner.invoke(app, ["migrate", str(write_plan(tmp_path / "bad.json", [bad])), "--dry-run"])
    assert alone.exit_code == 2, alone.output
    assert "ec2.run_instances(" in alone.stdout and "[permission ok (DryRun)]" in alone.stdout
    both = runner.invoke(app, ["migrate", str(write_plan(tmp_path / "both.json", [good, bad])), "--dry-run"])
    assert both.exit_code == 3, both.output
    assert f"1 of 2 moves would fail: bad-{tag}" in both.stderr
    assert f"move ok-{tag} (workload wl-ok-{tag}): dry-run\n" in both.stdout


def test_real_run_with_one_ok_one_cloud_and_one_input_failure_is_partial(cloud: Cloud, runner: Any,
                                                                       tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    trigger = {"via": "ssm", "command": "pkill -USR1 -f train.py"}
    moves = {}
    for name, kw in (("input", {"max_price": 2.0, "on_demand_price": 1.0}), ("cloud", {}), ("ok", {})):
        storage = f"s3://{BUCKET}/{name}-{tag}"
        moves[name] = make_move(f"{name}-{tag}", "aws", REGION, ZONE, ITYPE, cloud.source(storage), storage,
                                cloud.image, trigger, **kw)
    # The input move never reaches RunInstances, so the fault hits the cloud move's launch.
    cloud.proxy.fail_next("RunInstances", code="InsufficientInstanceCapacity")
    plan = write_plan(tmp_path / "p.json", [moves["input"], moves["cloud"], moves["ok"]])
    result = runner.invoke(app, ["migrate", str(plan), "--yes", "--checkpoint-timeout", "20"])
    assert result.exit_code == 3, result.output
    assert f"2 of 3 moves failed: input-{tag}, cloud-{tag}" in result.stderr
    statuses = {m["move_id"]: m["status"] for m in json.loads(runner.invoke(
        app, ["migrations", "list", "-o", "json"]).stdout)}
    assert statuses[f"ok-{tag}"] == "done" and statuses[f"cloud-{tag}"] == "rolled-back"
    assert cloud.live_tagged(f"cloud-{tag}") == {} and cloud.tagged(f"input-{tag}") == {}


@pytest.mark.timeout(90)
def test_sigkill_during_rollback_then_resume_finishes_the_rollback(cloud: Cloud, runner: Any,
                                                                   tmp_path: Path) -> None:
    move_id, _, src, plan = new_move(cloud, tmp_path)
    cloud.proxy.fail_next("CreateTags", code="InternalError")  # resume_target fails after the source stop
    env = {**os.environ, "SPOTPLAN_TEST_CRASH_AT": "rollback_release_target:before"}
    proc = subprocess.run([sys.executable, "-m", "spotplan", "migrate", str(plan), "--yes",
                           "--checkpoint-timeout", "20"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == -9, proc.stderr
    assert cloud.state(src[0]) in ("running", "pending")  # restarted before the kill
    assert len(cloud.live_tagged(move_id)) == 1  # not yet released
    result = runner.invoke(app, ["migrate", "--resume", move_id, "--yes"])
    assert result.exit_code == 1 and "resume_target" in result.stderr
    assert_invariants(cloud, move_id, src, expect_done=False)
    assert "CreateTags" not in cloud.proxy.faults


def test_spot_quota_too_small_refuses_before_anything_is_created(cloud: Cloud, runner: Any,
                                                                 tmp_path: Path) -> None:
    move_id, _, src, plan = new_move(cloud, tmp_path)
    cloud.proxy.answer_next("GetServiceQuota", {"Quota": {
        "ServiceCode": "ec2", "QuotaCode": "L-3819A6DF", "QuotaName": "All G and VT Spot Instance Requests",
        "Value": 0.0, "Unit": "None", "Adjustable": True, "GlobalQuota": False}})
    result = runner.invoke(app, ["migrate", str(plan), "--yes"])
    assert result.exit_code == 1 and "Spot vCPU quota 'All G and VT Spot Instance Requests' is 0, 4 needed" \
        in result.stderr
    assert_invariants(cloud, move_id, src, expect_done=False)
    assert cloud.tagged(move_id) == {}


# ---- what a lost target, a failed fallback or a denied store must not do --------------------------


def test_a_failed_fallback_leaves_the_move_migrated(cloud: Cloud, runner: Any, tmp_path: Path) -> None:
    """A fallback that fails (no on-demand capacity) is rolled back, but the move stays migrated:
    running the plan again must neither buy a second copy nor sweep away the live spot target."""
    move_id, _, src, plan = new_move(cloud, tmp_path)
    assert runner.invoke(app, ["migrate", str(plan), "--yes"]).exit_code == 0
    spot_id = journal_of(move_id)["state"]["target_ids"][0]
    cloud.proxy.fail_next("RunInstances", "InsufficientInstanceCapacity")
    fb = runner.invoke(app, ["migrate", "--fallback", move_id, "--yes"])
    assert fb.exit_code == 1 and "InsufficientInstanceCapacity" in fb.stderr
    again = runner.invoke(app, ["migrate", str(plan), "--yes"])
    assert again.exit_code == 0, again.output
    assert "already-done" in again.stdout and f"--fallback {move_id}" in again.stdout
    assert set(cloud.live_tagged(move_id)) == {spot_id} and cloud.state(src[0]) == "stopped"
    resumed = runner.invoke(app, ["migrate", "--resume", move_id, "--yes"])
    assert resumed.exit_code == 2 and f"--fallback {move_id}" in resumed.stderr
    retried = runner.invoke(app, ["migrate", "--fallback", move_id, "--yes"])
    assert retried.exit_code == 0, retried.output
    (od_id, _), = cloud.live_tagged(move_id).items()
    assert od_id != spot_id


LOSE_TARGET = """
import os, boto3
from spotplan.checkpoint import CheckpointStore
boto3.client("ec2", region_name="us-east-1").terminate_instances(InstanceIds=os.environ["SPOTPLAN_TARGET_IDS"].split())
CheckpointStore(os.environ["SPOTPLAN_CHECKPOINT_STORAGE"]).save(1, {"model.bin": b"w"})
"""


def test_a_target_lost_during_the_checkpoint_leaves_the_source_alone(cloud: Cloud, runner: Any,
                                                                     tmp_path: Path) -> None:
    script = tmp_path / "lose_target.py"
    script.write_text(LOSE_TARGET)
    move_id = f"m-{uuid.uuid4().hex[:8]}"
    storage = f"s3://{BUCKET}/{move_id}"
    src = cloud.source(None)
    move = make_move(move_id, "aws", REGION, ZONE, ITYPE, src, storage, cloud.image,
                     {"via": "command", "command": f"{sys.executable} {script}"})
    plan = write_plan(tmp_path / "p.json", [move])
    result = runner.invoke(app, ["migrate", str(plan), "--yes", "--checkpoint-timeout", "20"])
    assert result.exit_code == 1 and "lost before the source was stopped" in result.stderr, result.output
    j = journal_of(move_id)
    assert j["status"] == "rolled-back"
    assert not any(e["step"] in ("stop_source", "rollback_start_source") for e in j["events"])
    assert cloud.state(src[0]) == "running"
    assert_invariants(cloud, move_id, src, expect_done=False)


def test_the_source_is_stopped_before_the_target_resumes(cloud: Cloud, runner: Any, tmp_path: Path) -> None:
    """The stop step waits for `stopped` (EC2 answers StopInstances while still stopping) and
    shows the read it polled with."""
    move_id, _, src, plan = new_move(cloud, tmp_path)
    result = runner.invoke(app, ["migrate", str(plan), "--yes", "-o", "json"])
    assert result.exit_code == 0, result.output
    steps = {s["step"]: s for s in json.loads(result.stdout)["moves"][0]["steps"]}
    assert [c["call"] for c in steps["stop_source"]["calls"]] == ["ec2.stop_instances", "ec2.describe_instances"]
    assert [c["call"] for c in steps["check_target"]["calls"]] == ["ec2.describe_instances"]
    assert cloud.state(src[0]) == "stopped"


class _Deny(QuietHandler):
    """An S3 endpoint that refuses everything with 403 AccessDenied."""

    def _deny(self) -> None:
        self.read_body()
        body = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
                b"<Message>Access Denied</Message></Error>")
        self.reply(403, body if self.command != "HEAD" else b"", "application/xml")

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _deny


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "real"])
def test_a_denied_checkpoint_store_exits_4(cloud: Cloud, runner: Any, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch, dry_run: bool) -> None:
    deny = LocalServer(_Deny)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", deny.url)
        move_id, _, src, plan = new_move(cloud, tmp_path)
        args = ["--dry-run"] if dry_run else ["--yes", "--checkpoint-timeout", "5"]
        result = runner.invoke(app, ["migrate", str(plan), *args])
    finally:
        deny.stop()
    assert result.exit_code == 4, result.output
    assert "access denied" in result.stderr and "Traceback" not in result.stderr
    assert cloud.state(src[0]) == "running"
    if not dry_run:
        assert_invariants(cloud, move_id, src, expect_done=False)


def test_a_fallback_that_fails_after_the_spot_copy_is_gone_keeps_the_on_demand_copy(cloud: Cloud, runner: Any,
                                                                                     tmp_path: Path) -> None:
    """Once the spot copy is released, the on-demand copy is the only one: a failure after that (here
    pointing it at the checkpoint) must not release it too; --resume carries the fallback on."""
    move_id, _, src, plan = new_move(cloud, tmp_path)
    assert runner.invoke(app, ["migrate", str(plan), "--yes"]).exit_code == 0
    spot_id = journal_of(move_id)["state"]["target_ids"][0]
    cloud.proxy.fail_next("CreateTags", "InvalidParameterValue")
    fb = runner.invoke(app, ["migrate", "--fallback", move_id, "--yes"])
    assert fb.exit_code == 1 and "on-demand copy" in fb.stderr and f"--resume {move_id}" in fb.stderr, fb.output
    j = journal_of(move_id)
    assert (j["kind"], j["status"]) == ("fallback", "failed")
    (od_id, _), = cloud.live_tagged(move_id).items()
    assert od_id == j["state"]["fallback_ids"][0] and cloud.state(spot_id) == "terminated"
    for args in (["migrate", str(plan), "--yes"], ["migrate", "--fallback", move_id, "--yes"]):
        refused = runner.invoke(app, args)
        assert refused.exit_code == 2 and f"--resume {move_id}" in refused.output, refused.output
    assert set(cloud.live_tagged(move_id)) == {od_id}
    resumed = runner.invoke(app, ["migrate", "--resume", move_id, "--yes"])
    assert resumed.exit_code == 0, resumed.output
    assert journal_of(move_id)["status"] == "done" and set(cloud.live_tagged(move_id)) == {od_id}
    assert cloud.state(src[0]) == "stopped"


def test_a_fallback_dry_run_reads_what_the_real_one_reads(cloud: Cloud, runner: Any, tmp_path: Path) -> None:
    move_id, _, _, plan = new_move(cloud, tmp_path)
    assert runner.invoke(app, ["migrate", str(plan), "--yes"]).exit_code == 0
    dry = runner.invoke(app, ["migrate", "--fallback", move_id, "--dry-run", "-o", "json"])
    assert dry.exit_code == 0, dry.output
    steps = {s["step"]: s for s in json.loads(dry.stdout)["moves"][0]["steps"]}
    assert [c["call"] for c in steps["fallback_release_spot"]["calls"]] == [
        "ec2.describe_instances", "ec2.terminate_instances"]
    assert steps["fallback_verify"]["calls"][0]["outcome"].startswith("dry-run (store readable, 1 checkpoint")


def test_a_fallback_whose_spot_release_fails_keeps_both_and_resumes(cloud: Cloud, runner: Any,
                                                                    tmp_path: Path) -> None:
    """A release the cloud may have accepted can still fail to confirm: the on-demand copy is then
    kept (never released), and --resume finishes the release and the fallback."""
    move_id, _, _, plan = new_move(cloud, tmp_path)
    assert runner.invoke(app, ["migrate", str(plan), "--yes"]).exit_code == 0
    spot_id = journal_of(move_id)["state"]["target_ids"][0]
    cloud.proxy.fail_next("TerminateInstances", "InvalidParameterValue")
    fb = runner.invoke(app, ["migrate", "--fallback", move_id, "--yes"])
    assert fb.exit_code == 1 and "on-demand copy" in fb.stderr, fb.output
    od_id = journal_of(move_id)["state"]["fallback_ids"][0]
    assert set(cloud.live_tagged(move_id)) == {spot_id, od_id}
    assert runner.invoke(app, ["migrate", "--resume", move_id, "--yes"]).exit_code == 0
    assert set(cloud.live_tagged(move_id)) == {od_id}


def test_a_second_fallback_leaves_the_on_demand_copy_alone(cloud: Cloud, runner: Any, tmp_path: Path) -> None:
    move_id, _, _, plan = new_move(cloud, tmp_path)
    assert runner.invoke(app, ["migrate", str(plan), "--yes"]).exit_code == 0
    assert runner.invoke(app, ["migrate", "--fallback", move_id, "--yes"]).exit_code == 0
    (od_id, _), = cloud.live_tagged(move_id).items()
    again = runner.invoke(app, ["migrate", "--fallback", move_id, "--yes"])
    assert again.exit_code == 0 and "already-done" in again.stdout and "on-demand" in again.stdout, again.output
    assert set(cloud.live_tagged(move_id)) == {od_id}


def test_a_lost_kept_copy_can_be_replaced_by_a_new_fallback(cloud: Cloud, runner: Any, tmp_path: Path) -> None:
    move_id, _, _, plan = new_move(cloud, tmp_path)
    assert runner.invoke(app, ["migrate", str(plan), "--yes"]).exit_code == 0
    cloud.proxy.fail_next("CreateTags", "InvalidParameterValue")
    assert runner.invoke(app, ["migrate", "--fallback", move_id, "--yes"]).exit_code == 1
    kept = journal_of(move_id)["state"]["fallback_ids"][0]
    refused = runner.invoke(app, ["migrate", "--fallback", move_id, "--yes"])
    assert refused.exit_code == 2 and f"--resume {move_id}" in refused.stderr
    cloud.ec2.terminate_instances(InstanceIds=[kept])  # the kept copy is lost (host failure, a person)
    again = runner.invoke(app, ["migrate", "--fallback", move_id, "--yes"])
    assert again.exit_code == 0, again.output
    (od_id, _), = cloud.live_tagged(move_id).items()
    assert od_id != kept


def test_a_refused_stop_never_restarts_the_running_source(cloud: Cloud, runner: Any, tmp_path: Path) -> None:
    """A stop the cloud refused left the source running: the rollback reads its state and starts
    nothing (a start would need a permission the role may lack, and the move would end INCOMPLETE)."""
    move_id, _, src, plan = new_move(cloud, tmp_path)
    cloud.proxy.fail_next("StopInstances", "UnauthorizedOperation")
    cloud.proxy.fail_next("StartInstances", "UnauthorizedOperation")
    result = runner.invoke(app, ["migrate", str(plan), "--yes", "-o", "json"])
    assert result.exit_code == 4, result.output
    steps = {s["step"]: s for s in json.loads(result.stdout)["moves"][0]["steps"]}
    assert [c["call"] for c in steps["rollback_start_source"]["calls"]] == ["ec2.describe_instances"]
    assert journal_of(move_id)["status"] == "rolled-back" and cloud.state(src[0]) == "running"
    cloud.proxy.clear()


def test_a_fallback_whose_spot_release_sent_nothing_is_rolled_back(cloud: Cloud, runner: Any,
                                                                  tmp_path: Path) -> None:
    """A release step that fails on its first read sent no release: the spot copy is as it was, so
    the fallback is rolled back (its on-demand copy released) rather than kept as if the spot copy
    were gone, and the move stays migrated for a new --fallback."""
    move_id, _, _, plan = new_move(cloud, tmp_path)
    assert runner.invoke(app, ["migrate", str(plan), "--yes"]).exit_code == 0
    spot_id = journal_of(move_id)["state"]["target_ids"][0]
    cloud.proxy.fail_next("DescribeInstances", "UnauthorizedOperation", skip=1)  # the launch reads once first
    fb = runner.invoke(app, ["migrate", "--fallback", move_id, "--yes", "-o", "json"])
    assert fb.exit_code == 4, fb.output
    steps = {s["step"]: s for s in json.loads(fb.stdout)["moves"][0]["steps"]}
    assert steps["fallback_release_spot"]["status"] == "failed"
    assert "on-demand copy" not in fb.stderr and "already released" not in fb.stderr, fb.output
    j = journal_of(move_id)
    assert (j["kind"], j["status"]) == ("fallback", "rolled-back")
    assert set(cloud.live_tagged(move_id)) == {spot_id}
    again = runner.invoke(app, ["migrate", "--fallback", move_id, "--yes"])
    assert again.exit_code == 0, again.output
    (od_id, _), = cloud.live_tagged(move_id).items()
    assert od_id != spot_id and cloud.state(spot_id) == "terminated"


LOSE_SOURCE = """
import os, sys, boto3
boto3.client("ec2", region_name="us-east-1").terminate_instances(InstanceIds=os.environ["SPOTPLAN_SOURCE_IDS"].split())
sys.exit(1)
"""


def test_a_rollback_whose_source_is_gone_keeps_the_target(cloud: Cloud, runner: Any, tmp_path: Path) -> None:
    """The health check fails after the source was stopped, and the source has been terminated in
    the meantime: its restart fails, so the rollback keeps the spot target (the one copy left that
    can run the workload) and the move ends failed, ROLLBACK INCOMPLETE, naming the source."""
    script = tmp_path / "lose_source.py"
    script.write_text(LOSE_SOURCE)
    move_id, _, src, plan = new_move(cloud, tmp_path, readiness_command=f"{sys.executable} {script}")
    result = runner.invoke(app, ["migrate", str(plan), "--yes", "--health-timeout", "1", "-o", "json"])
    assert result.exit_code == 1, result.output
    assert "ROLLBACK INCOMPLETE" in result.stderr and src[0] in result.stderr, result.output
    steps = {s["step"]: s for s in json.loads(result.stdout)["moves"][0]["steps"]}
    assert steps["rollback_start_source"]["status"] == "failed"
    assert steps["rollback_release_target"]["status"] == "skipped"
    j = journal_of(move_id)
    assert j["status"] == "failed" and cloud.state(src[0]) == "terminated"
    (target, _), = cloud.live_tagged(move_id).items()
    assert target == j["state"]["target_ids"][0]


def test_the_bid_is_capped_by_the_lower_of_the_plans_and_the_known_on_demand_price(cloud: Cloud, runner: Any,
                                                                                  tmp_path: Path) -> None:
    """A plan carrying an on-demand price above the one the price data knows ($1.006/h for g5.xlarge
    in us-east-1, bundled snapshot) cannot raise the cap: a bid between the two is refused."""
    move_id, _, src, plan = new_move(cloud, tmp_path, max_price=1.5, on_demand_price=2.0)
    result = runner.invoke(app, ["migrate", str(plan), "--yes"])
    assert result.exit_code == 2, result.output
    assert "above the on-demand price 1.006 (the price data's)" in result.stderr, result.stderr
    assert_invariants(cloud, move_id, src, expect_done=False)


def test_resume_that_finishes_a_rollback_exits_as_the_first_failure(cloud: Cloud, runner: Any,
                                                                    tmp_path: Path) -> None:
    """The trigger is denied (exit 4) and the rollback's terminate is denied too: the move is left
    ROLLBACK INCOMPLETE. --resume finishes the rollback and exits 4 again, the permission failure
    that started it, not 1."""
    move_id, _, src, plan = new_move(cloud, tmp_path)
    cloud.proxy.fail_next("SendCommand", code="AccessDeniedException", status=400)
    cloud.proxy.fail_next("TerminateInstances", code="UnauthorizedOperation", status=403)
    first = runner.invoke(app, ["migrate", str(plan), "--yes"])
    assert first.exit_code == 4 and "ROLLBACK INCOMPLETE" in first.stderr, first.output
    retried = runner.invoke(app, ["migrate", "--resume", move_id, "--yes"])
    assert retried.exit_code == 4 and "trigger_checkpoint" in retried.stderr, retried.output
    assert journal_of(move_id)["status"] == "rolled-back"
    assert_invariants(cloud, move_id, src, expect_done=False)


def test_migrate_renders_in_every_output_format(cloud: Cloud, runner: Any, tmp_path: Path) -> None:
    """-o csv has one row per call (a step without calls gets one), the same calls as -o json;
    -o markdown a section per move; --out FILE.md picks markdown from the suffix."""
    move_id, _, _, plan = new_move(cloud, tmp_path)
    as_json = json.loads(runner.invoke(app, ["migrate", str(plan), "--dry-run", "-o", "json"]).stdout)
    steps = as_json["moves"][0]["steps"]
    as_csv = runner.invoke(app, ["migrate", str(plan), "--dry-run", "-o", "csv"])
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [r["call"] for r in rows if r["call"]] == [c["call"] for s in steps for c in s["calls"]]
    assert [r["step"] for r in rows] == [s["step"] for s in steps for _ in (s["calls"] or [None])]
    assert {r["move_id"] for r in rows} == {move_id} and {r["move_status"] for r in rows} == {"dry-run"}
    run = next(r for r in rows if r["call"] == "ec2.run_instances")
    assert "ec2:RunInstances" in run["permissions"] and json.loads(run["params"])["InstanceType"] == ITYPE
    md = tmp_path / "dry.md"
    assert runner.invoke(app, ["migrate", str(plan), "--dry-run", "--out", str(md)]).exit_code == 0
    text = md.read_text()
    assert text.startswith("# spotplan migrate (dry run)") and f"## Move {move_id}" in text
    assert "| step_no | step | step_status | call |" in text and "ec2.run_instances" in text
