"""`spotplan watch --fallback-move`: a move migrated onto spot in moto (real boto3), an IMDSv2
emulator raising the spot notice, the watcher saving a fresh checkpoint and then resuming the move
on on-demand through the executor, journaled; plus `fallback: none`, no checkpoint (3) and a failed
fallback (5)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from spotplan.cli.main import app
from tests import test_migrate_aws
from tests.emulators.metadata import AwsImdsEmulator, WebhookReceiver
from tests.test_migrate_aws import Cloud, new_move
from tests.test_migrate_support import journal_consistent, journal_of

pytestmark = pytest.mark.timeout(60)

# The moto cloud behind the fault proxy and its environment: the migrate tests' own fixtures.
cloud, _aws_env = test_migrate_aws.cloud, test_migrate_aws._aws_env

ROOT = Path(__file__).resolve().parents[1]
STEP = 9001  # the step the notice's checkpoint carries; the migrate's own checkpoints are small numbers

SAVER = """
import sys
from spotplan.checkpoint import CheckpointStore
CheckpointStore(sys.argv[1]).save(
    int(sys.argv[2]), {"model.bin": b"weights" * 64}, {"reason": "spot notice"})
"""


def saver(uri: str | Path, step: int = STEP) -> str:
    """The `--command` a trainer would answer a notice with: save one checkpoint."""
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(SAVER)} {shlex.quote(str(uri))} {step}"


def migrated(cloud: Cloud, runner: Any, tmp_path: Path, fallback: str = "on-demand") -> tuple[str, str, str]:
    """A move executed onto spot: (move id, its checkpoint storage, the spot instance id)."""
    move_id, storage, _, plan = new_move(cloud, tmp_path)
    if fallback != "on-demand":
        doc = json.loads(plan.read_text())
        doc["moves"][0]["fallback"] = fallback
        plan.write_text(json.dumps(doc))
    result = runner.invoke(app, ["migrate", str(plan), "--yes", "--checkpoint-timeout", "20"])
    assert result.exit_code == 0, result.output
    (spot_id,) = journal_of(move_id)["state"]["target_ids"]
    return move_id, storage, spot_id


def read_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def since_last_begin(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    last = max(i for i, e in enumerate(events) if e["step"] == "begin")
    return events[last:]


def test_notice_checkpoint_upload_then_on_demand_fallback(cloud: Cloud, runner: Any, tmp_path: Path) -> None:
    """As on the node: watch is its own process, saves locally, uploads to the move's storage, falls back."""
    from spotplan.paths import journal_path

    move_id, storage, spot_id = migrated(cloud, runner, tmp_path)
    ckpt, log = tmp_path / "local-ckpt", tmp_path / "watch.jsonl"
    with AwsImdsEmulator() as imds:
        imds.schedule_notice(0.3)
        proc = subprocess.run(
            [sys.executable, "-m", "spotplan", "watch", "--source", "aws", "--endpoint", imds.endpoint,
             "--interval", "200ms", "--command", saver(ckpt), "--checkpoint-uri", str(ckpt),
             "--upload-to", storage, "--fallback-move", move_id, "--journal", str(journal_path()),
             "--log", str(log)],
            capture_output=True, text=True, timeout=50, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr  # the upload target is the move's storage
    doc = json.loads(proc.stdout)
    assert doc["checkpoint"]["step"] == STEP and doc["uploaded"]["uri"].startswith(storage)
    fb = doc["fallback"]
    assert fb["status"] == "done" and fb["move_id"] == move_id
    assert fb["resumed_from"] == doc["uploaded"]["uri"], "the fallback must resume from the fresh checkpoint"

    # The cloud: one live on-demand instance tagged with the move, pointed at that checkpoint; spot gone.
    (od_id, inst), = cloud.live_tagged(move_id).items()
    assert fb["instance_ids"] == [od_id] and od_id != spot_id
    assert "InstanceLifecycle" not in inst  # on-demand, not spot
    tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
    assert tags["spotplan-move"] == move_id and tags["spotplan-resume-from"] == doc["uploaded"]["uri"]
    assert cloud.state(spot_id) == "terminated"

    # The journal: the executor recorded a fallback run, every step started and done.
    j = journal_of(move_id)
    assert (j["kind"], j["status"]) == ("fallback", "done")
    assert j["state"]["fallback_ids"] == [od_id] and j["state"]["checkpoint_uri"] == doc["uploaded"]["uri"]
    journal_consistent(j["events"])
    done = [e["step"] for e in since_last_begin(j["events"]) if e["phase"] == "done"]
    # The spot copy goes before the on-demand copy resumes: two copies never train at once.
    assert done == ["fallback_verify", "fallback_acquire", "fallback_release_spot", "fallback_resume",
                    "fallback_health", "fallback_record"]

    # The watch log: saved and uploaded first, then the fallback, then the verdict.
    records = read_log(log)
    ev = [r["event"] for r in records]
    assert ev.index("notice") < ev.index("checkpoint_ready") < ev.index("uploaded") < ev.index("fallback_started")
    assert ev.index("fallback_started") < ev.index("fallback_done") < ev.index("exit")
    steps = [r["step"] for r in records if r["event"] == "fallback_step"]
    assert steps[0] == "fallback_verify" and steps[-1] == "fallback_record"
    assert records[-1]["code"] == 0 and records[0]["fallback_move"] == move_id


def test_fallback_none_logs_and_does_nothing_more(cloud: Cloud, runner: Any, tmp_path: Path) -> None:
    move_id, _, spot_id = migrated(cloud, runner, tmp_path, fallback="none")
    before = journal_of(move_id)
    ckpt, log = tmp_path / "ckpt", tmp_path / "w.jsonl"
    with AwsImdsEmulator() as imds:
        imds.schedule_notice(0.2)
        # No --journal: the default journal (XDG_DATA_HOME), the one migrate just wrote.
        result = runner.invoke(app, [
            "watch", "--source", "aws", "--endpoint", imds.endpoint, "--interval", "200ms",
            "--command", saver(ckpt), "--checkpoint-uri", str(ckpt), "--fallback-move", move_id, "--log", str(log),
        ])
    assert result.exit_code == 0, result.output
    # The fresh checkpoint stays local, which the watcher warns about at start.
    assert "may resume from an older checkpoint" in result.stderr
    doc = json.loads(result.stdout)
    assert doc["checkpoint"]["step"] == STEP
    assert doc["fallback"] == {"move_id": move_id, "status": "skipped", "reason": "the move's fallback is 'none'"}
    skipped = [r for r in read_log(log) if r["event"] == "fallback_skipped"]
    assert len(skipped) == 1 and "'none'" in skipped[0]["reason"]
    assert "fallback_started" not in [r["event"] for r in read_log(log)]
    after = journal_of(move_id)
    assert (after["kind"], after["status"]) == ("migrate", "done") and after["events"] == before["events"]
    assert list(cloud.live_tagged(move_id)) == [spot_id]


def test_no_fresh_checkpoint_exits_3_and_never_falls_back(cloud: Cloud, runner: Any, tmp_path: Path) -> None:
    move_id, _, spot_id = migrated(cloud, runner, tmp_path)
    before = journal_of(move_id)
    ckpt, log = tmp_path / "ckpt", tmp_path / "w.jsonl"
    with AwsImdsEmulator() as imds:
        imds.schedule_notice(0.2)
        result = runner.invoke(app, [
            "watch", "--source", "aws", "--endpoint", imds.endpoint, "--interval", "200ms", "--command", "true",
            "--checkpoint-uri", str(ckpt), "--checkpoint-timeout", "1", "--fallback-move", move_id,
            "--log", str(log),
        ])
    assert result.exit_code == 3, result.output
    assert json.loads(result.stdout)["fallback"] is None
    ev = [r["event"] for r in read_log(log)]
    assert ev.index("checkpoint_missing") < ev.index("fallback_skipped") and "fallback_started" not in ev
    assert read_log(log)[ev.index("fallback_skipped")]["reason"] == "no fresh checkpoint in time"
    assert journal_of(move_id)["events"] == before["events"]
    assert list(cloud.live_tagged(move_id)) == [spot_id]


def test_failed_fallback_exits_3_rolls_back_and_keeps_the_checkpoint(cloud: Cloud, runner: Any,
                                                                     tmp_path: Path) -> None:
    """No --checkpoint-uri: the watcher waits on the move's own S3 storage; on-demand capacity is refused."""
    move_id, storage, spot_id = migrated(cloud, runner, tmp_path)
    log = tmp_path / "w.jsonl"
    cloud.proxy.fail_next("RunInstances", code="InsufficientInstanceCapacity")
    hook = WebhookReceiver()
    with AwsImdsEmulator() as imds, hook:
        imds.schedule_notice(0.2)
        result = runner.invoke(app, [
            "watch", "--source", "aws", "--endpoint", imds.endpoint, "--interval", "200ms",
            "--command", saver(storage), "--checkpoint-timeout", "20", "--fallback-move", move_id,
            "--log", str(log), "--webhook", hook.url,
        ])
    assert "RunInstances" not in cloud.proxy.faults, "the fault was never triggered"
    assert result.exit_code == 3, result.output
    doc = json.loads(result.stdout)
    assert doc["checkpoint"]["step"] == STEP and doc["checkpoint"]["uri"].startswith(storage)
    assert doc["fallback"]["status"] == "rolled-back"
    assert "InsufficientInstanceCapacity" in doc["fallback"]["error"]
    failed = [r for r in read_log(log) if r["event"] == "fallback_failed"]
    assert len(failed) == 1 and "fallback_acquire" in failed[0]["error"]
    assert read_log(log)[-1]["code"] == 3
    (alert,) = hook.messages
    assert f"step {STEP}" in alert["text"] and f"on-demand fallback of {move_id} rolled-back; exit 3" in alert["text"]
    j = journal_of(move_id)
    assert (j["kind"], j["status"]) == ("fallback", "rolled-back")
    journal_consistent(j["events"])
    assert [e["step"] for e in since_last_begin(j["events"]) if e["phase"] == "failed"] == ["fallback_acquire"]
    # The spot target is left as it was (the node's own reclaim takes it); nothing on-demand leaked.
    assert list(cloud.live_tagged(move_id)) == [spot_id]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--fallback-move", "m-nope"], "no move 'm-nope'"),
        (["--journal", "/tmp/x.sqlite3"], "--journal needs --fallback-move"),
        (["--fallback-move", "m-nope", "--journal", "/nonexistent/j.sqlite3"], "no journal at"),
    ],
)
def test_fallback_usage_errors_exit_2_before_watching(runner: Any, tmp_path: Path, args: list[str],
                                                      message: str) -> None:
    from spotplan.journal import Journal

    Journal().close()  # an (empty) default journal exists, so the move lookup is what fails
    result = runner.invoke(app, ["watch", "--source", "aws", "--endpoint", "http://127.0.0.1:9", "--once", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.stderr


def test_help_documents_the_fallback_and_its_exit_code(runner: Any) -> None:
    result = runner.invoke(app, ["watch", "--help"])
    assert result.exit_code == 0
    for text in ("--fallback-move", "--journal", "3 a notice handled in part", "but the fallback failed"):
        assert text in result.stdout
