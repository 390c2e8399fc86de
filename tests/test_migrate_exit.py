"""The exit codes of `spotplan migrate` (DESIGN.md §3: 0 ok, 1 runtime, 2 input, 3 partial, 4
credentials), for real runs and dry runs: the aggregation over moves on its own, then the CLI against
an AWS endpoint that refuses every connection (127.0.0.1:9), where a dry run must still print the exact
call it would make and a failed preflight must say that nothing was changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from spotplan.cli.main import app
from spotplan.executor import STEPS, MoveReport, exit_status
from tests.test_migrate_support import make_move, write_plan

pytestmark = pytest.mark.timeout(30)


def _rep(move_id: str, status: str, code: int = 0) -> MoveReport:
    return MoveReport(move_id, f"wl-{move_id}", "migrate", status, error=f"why {move_id}" if code else None,
                      exit_code=code)


AGGREGATION = [
    # (reports as (id, status, code), expected exit code)
    ([], 0),
    ([("a", "done", 0), ("b", "already-done", 0), ("c", "declined", 0)], 0),
    ([("a", "dry-run", 0), ("b", "dry-run", 0)], 0),
    ([("a", "done", 0), ("b", "rolled-back", 1)], 3),
    ([("a", "done", 0), ("b", "failed (nothing changed)", 2)], 3),
    ([("a", "already-done", 0), ("b", "refused", 2)], 3),
    ([("a", "done", 0), ("b", "rolled-back", 4)], 3),  # partial wins: some moves did happen
    ([("a", "dry-run", 0), ("b", "dry-run (would fail)", 2)], 3),
    ([("a", "rolled-back", 1), ("b", "failed (nothing changed)", 2)], 1),  # the QA case, either order
    ([("a", "failed (nothing changed)", 2), ("b", "rolled-back", 1)], 1),
    ([("a", "failed (nothing changed)", 2), ("b", "refused", 2), ("c", "declined", 0)], 2),
    ([("a", "rolled-back", 1), ("b", "failed (nothing changed)", 4), ("c", "failed (nothing changed)", 2)], 4),
    ([("a", "failed", 1)], 1),  # rollback incomplete
    ([("a", "rolled-back", 0)], 1),  # an unknown cause is a runtime error
    ([("a", "dry-run (would fail)", 4)], 4),
    ([("a", "dry-run (would fail)", 2)], 2),
    ([("a", "dry-run (would fail)", 1), ("b", "dry-run (would fail)", 1)], 1),
]


@pytest.mark.parametrize("reports,expected", AGGREGATION, ids=[str(i) for i in range(len(AGGREGATION))])
def test_exit_status_aggregates_moves(reports: list[tuple[str, str, int]], expected: int) -> None:
    code, message = exit_status([_rep(*r) for r in reports])
    assert code == expected
    assert (message == "") == (expected == 0)
    if expected == 4 and len(reports) > 1:
        assert "why b" in message  # names the credentials failure, not merely the first one
    if expected == 3:
        failed = [r[0] for r in reports if r[1] not in ("done", "already-done", "dry-run", "declined")]
        assert message.startswith(f"{len(failed)} of ") and all(m in message for m in failed)


@pytest.fixture
def unreachable_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials, an endpoint nobody listens on, no retries (so the tests stay fast)."""
    for key, value in {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
    }.items():
        monkeypatch.setenv(key, value)


def _aws_move(move_id: str, source: str, **kw: Any) -> dict[str, Any]:
    return make_move(move_id, "aws", "us-east-1", "us-east-1a", "g5.xlarge", [source], f"s3://ckpt/{move_id}",
                     "ami-0123456789abcdef0", {"via": "ssm", "command": "pkill -USR1 -f train.py"}, **kw)


def _step_block(out: str, step: str) -> str:
    """The lines of one step in the table rendering (its own line and the indented ones after it)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split(". ", 1)[-1].startswith(step + " "))
    end = next((i for i in range(start + 1, len(lines)) if ". " in lines[i][:6]), len(lines))
    return "\n".join(lines[start:end])


def test_dry_run_prints_the_call_when_the_endpoint_is_unreachable(unreachable_aws: None, runner: Any,
                                                                  tmp_path: Path) -> None:
    plan = write_plan(tmp_path / "p.json", [_aws_move("m1", "i-0aaaaaaaaaaaaaaa1")])
    result = runner.invoke(app, ["migrate", str(plan), "--dry-run"])
    assert result.exit_code == 1, result.output
    out = result.stdout
    assert all(step in out for step in STEPS)
    acquire = _step_block(out, "acquire")
    assert "ec2.run_instances(ImageId='ami-0123456789abcdef0', InstanceType='g5.xlarge'" in acquire
    assert "InstanceMarketOptions={'MarketType': 'spot'" in acquire and "'MaxPrice': '1'" in acquire
    assert "[failed (EndpointConnectionError)]" in acquire and "FAILED: ec2.run_instances:" in acquire
    assert "sts.get_caller_identity()  [failed (EndpointConnectionError)]" in _step_block(out, "preflight")
    assert "ec2.stop_instances(InstanceIds=['i-0aaaaaaaaaaaaaaa1'])  [failed" in _step_block(out, "stop_source")
    assert result.stderr.strip().splitlines()[-1].startswith("error: move m1 would fail: preflight: ")
    assert "Traceback" not in result.stderr


def test_dry_run_bid_above_on_demand_is_an_input_error(unreachable_aws: None, runner: Any, tmp_path: Path) -> None:
    plan = write_plan(tmp_path / "p.json", [_aws_move("m1", "i-0aaaaaaaaaaaaaaa1", max_price=2.0,
                                                      on_demand_price=1.0)])
    result = runner.invoke(app, ["migrate", str(plan), "--dry-run"])
    assert result.exit_code == 2, result.output
    assert all(step in result.stdout for step in STEPS) and "ec2.run_instances(" in result.stdout
    assert "above the on-demand price" in result.stderr


def test_failed_preflight_says_nothing_was_changed(unreachable_aws: None, runner: Any, tmp_path: Path) -> None:
    from spotplan.journal import Journal

    plan = write_plan(tmp_path / "p.json", [_aws_move("m1", "i-0aaaaaaaaaaaaaaa1")])
    result = runner.invoke(app, ["migrate", str(plan), "--yes"])
    assert result.exit_code == 1, result.output
    assert "ROLLBACK INCOMPLETE" not in result.output
    assert "move m1 (workload wl-m1): failed (nothing changed)" in result.stdout
    assert "sts.get_caller_identity()  [failed (EndpointConnectionError)]" in result.stdout
    move = Journal().show("m1")
    assert move["status"] == "rolled-back" and move["error"].endswith("nothing was changed")
    assert not any(e["step"].startswith("rollback_") for e in move["events"])
    # Nothing is left to undo, so a rerun is a fresh attempt, not a refusal pointing at --resume.
    again = runner.invoke(app, ["migrate", str(plan), "--yes"])
    assert again.exit_code == 1 and "--resume" not in again.stderr
    assert Journal().show("m1")["state"]["attempt"] == 2


@pytest.mark.parametrize("first_input", [True, False], ids=["input-first", "cloud-first"])
def test_all_moves_failed_for_mixed_reasons_is_a_runtime_error(unreachable_aws: None, runner: Any,
                                                              tmp_path: Path, first_input: bool) -> None:
    cloud = _aws_move("cloud", "i-0aaaaaaaaaaaaaaa1")
    bad = _aws_move("input", "i-0aaaaaaaaaaaaaaa2", max_price=2.0, on_demand_price=1.0)
    plan = write_plan(tmp_path / "p.json", [bad, cloud] if first_input else [cloud, bad])
    result = runner.invoke(app, ["migrate", str(plan), "--yes"])
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines()[-1].startswith("error: all 2 moves failed: ")


def test_all_moves_failed_on_input_is_an_input_error(unreachable_aws: None, runner: Any, tmp_path: Path) -> None:
    moves = [_aws_move(f"m{i}", f"i-0aaaaaaaaaaaaaaa{i}", max_price=2.0, on_demand_price=1.0) for i in (1, 2)]
    result = runner.invoke(app, ["migrate", str(write_plan(tmp_path / "p.json", moves)), "--yes"])
    assert result.exit_code == 2, result.output


def _trigger(trigger: dict[str, Any]) -> Any:
    return lambda m: m["launch"].update(checkpoint_trigger=trigger)


@pytest.mark.parametrize("edit,message", [
    (_trigger({"via": "docker", "command": "kill -USR1 1"}), "needs a container"),
    (_trigger({"via": "ssh", "command": "pkill -USR1 -f train.py"}), "needs a host"),
    (_trigger({"via": "command"}), "checkpoint_trigger.command is required"),
    (lambda m: m.update(on_demand_price=None, target={**m["target"], "max_price": 999.0}),
     "target.max_price 999.0 is above the on-demand price 1.006"),  # the bundled snapshot's g5.xlarge
    (lambda m: m.update(on_demand_price=None, target={**m["target"], "instance_type": "g5.nonesuch"}),
     "no on-demand price known for g5.nonesuch in us-east-1"),
    (lambda m: m["source"].update(instance_ids=["projects/p/zones/z/instances/x"]),
     "source.instance_ids: 'projects/p/zones/z/instances/x' is not an EC2 instance id"),
    (lambda m: m["checkpoint"].update(storage="/mnt/local/ckpt"), "is not durable storage"),
    (lambda m: m["checkpoint"].update(enabled=False), "a move needs checkpoint.enabled"),
])
def test_preflight_refuses_on_the_plan_alone_before_any_call(unreachable_aws: None, runner: Any, tmp_path: Path,
                                                             edit: Any, message: str) -> None:
    move = _aws_move("m1", "i-0aaaaaaaaaaaaaaa1")
    edit(move)
    result = runner.invoke(app, ["migrate", str(write_plan(tmp_path / "p.json", [move])), "--yes"])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    # Refused on the plan alone: not even the credential check was sent.
    assert "sts.get_caller_identity" not in result.stdout and "ec2.run_instances" not in result.stdout


def test_out_json_suffix_writes_json(unreachable_aws: None, runner: Any, tmp_path: Path) -> None:
    import json

    plan = write_plan(tmp_path / "p.json", [_aws_move("m1", "i-0aaaaaaaaaaaaaaa1")])
    result = runner.invoke(app, ["migrate", str(plan), "--dry-run", "--out", str(tmp_path / "run.json")])
    assert result.exit_code == 1  # the endpoint is unreachable; the report is written all the same
    doc = json.loads((tmp_path / "run.json").read_text())
    assert doc["dry_run"] is True and doc["moves"][0]["move_id"] == "m1"


def test_dry_run_reads_the_journal_and_exits_as_the_run_would(unreachable_aws: None, runner: Any,
                                                              tmp_path: Path) -> None:
    from spotplan.journal import Journal

    plan = write_plan(tmp_path / "p.json", [_aws_move("m1", "i-0aaaaaaaaaaaaaaa1")])
    journal = Journal()
    journal.begin_move("m1", "wl-m1", "aws", "migrate", _aws_move("m1", "i-0aaaaaaaaaaaaaaa1"), str(plan))
    dry = runner.invoke(app, ["migrate", str(plan), "--dry-run"])
    assert dry.exit_code == 2 and "was interrupted; continue it with: spotplan migrate --resume m1" in dry.stderr
    assert "run_instances" not in dry.stdout
    journal.finish("m1", "done")
    dry = runner.invoke(app, ["migrate", str(plan), "--dry-run"])
    assert dry.exit_code == 0 and "m1 (workload wl-m1): already-done" in dry.stdout
    assert Journal().show("m1")["status"] == "done"


def test_resume_of_a_rolled_back_move_says_to_rerun_it(unreachable_aws: None, runner: Any, tmp_path: Path) -> None:
    plan = write_plan(tmp_path / "p.json", [_aws_move("m1", "i-0aaaaaaaaaaaaaaa1")])
    assert runner.invoke(app, ["migrate", str(plan), "--yes"]).exit_code == 1  # nothing reachable
    result = runner.invoke(app, ["migrate", "--resume", "m1", "--yes"])
    assert result.exit_code == 2, result.output
    assert "move m1 was rolled back" in result.stderr and "nothing to resume" in result.stderr


def test_a_move_journaled_with_keys_plans_no_longer_take_can_still_be_resumed(unreachable_aws: None, runner: Any,
                                                                              tmp_path: Path) -> None:
    from spotplan.journal import Journal

    move = _aws_move("m1", "i-0aaaaaaaaaaaaaaa1")
    move["note"] = "approved by alice"  # an earlier version journaled plans with any extra key
    Journal().begin_move("m1", "wl-m1", "aws", "migrate", move, "plan.json")
    result = runner.invoke(app, ["migrate", "--resume", "m1", "--yes"])
    # It gets as far as the cloud (unreachable here), instead of failing on the journal's record.
    assert result.exit_code == 1, result.output
    assert "sts.get_caller_identity" in result.stdout and "ValidationError" not in result.output


def test_a_bid_that_rounds_to_zero_is_an_input_error(unreachable_aws: None, runner: Any, tmp_path: Path) -> None:
    plan = write_plan(tmp_path / "p.json", [_aws_move("m1", "i-0aaaaaaaaaaaaaaa1", max_price=1e-9)])
    result = runner.invoke(app, ["migrate", str(plan), "--dry-run"])
    assert result.exit_code == 2 and "rounds to $0/h" in result.stderr, result.output


def test_a_missing_sdk_names_the_extra_to_install(unreachable_aws: None, runner: Any, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the aws extra, the first SDK client says which extra to install, rather than the
    ImportError of the error translator (which imports botocore too)."""
    import sys

    for name in ("boto3", "botocore", "botocore.exceptions"):
        monkeypatch.setitem(sys.modules, name, None)  # type: ignore[arg-type]
    plan = write_plan(tmp_path / "p.json", [_aws_move("m1", "i-0aaaaaaaaaaaaaaa1")])
    result = runner.invoke(app, ["migrate", str(plan), "--dry-run"])
    assert "pip install 'spotplan[aws]'" in result.stderr, result.output
    assert "ModuleNotFoundError" not in result.output and "Traceback" not in result.output


def test_an_unknown_move_is_named_before_approval_is_asked_for(runner: Any, tmp_path: Path) -> None:
    """Off a terminal without --yes, a typo'd --resume id is the error reported, not the missing --yes."""
    from spotplan.journal import Journal

    Journal().close()  # a journal exists, without that move
    for flag in ("--resume", "--fallback"):
        result = runner.invoke(app, ["migrate", flag, "m-nope"])
        assert result.exit_code == 2 and "no move 'm-nope' in the journal" in result.stderr, result.output
