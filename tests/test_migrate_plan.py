"""Loading plan files for migrate: one-line errors naming the file and field, exit code 2."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from spotplan.cli.main import app
from spotplan.errors import InputError
from spotplan.plan import load_plan, select_moves
from tests.test_migrate_support import make_move, write_plan


def _move(move_id: str, ids: list[str]) -> dict[str, Any]:
    return make_move(move_id, "aws", "us-east-1", "us-east-1a", "g5.xlarge", ids, "s3://b/x", "ami-1",
                     {"via": "ssm", "command": "true"})


def test_valid_plan_loads(tmp_path: Path) -> None:
    plan = load_plan(write_plan(tmp_path / "p.json", [_move("a", ["i-1"]), _move("b", ["i-2"])]))
    assert [m.id for m in plan.moves] == ["a", "b"]
    assert [m.id for m in select_moves(plan, ["b"])] == ["b"]
    with pytest.raises(InputError, match="--only c: no such move"):
        select_moves(plan, ["c"])


@pytest.mark.parametrize(
    "content,message",
    [
        ("{not json", "not JSON (line 1"),
        ("[]", "a plan is a JSON object"),
        (json.dumps({"schema": "other/1", "created_at": "x", "analysis": {"generated_at": "x"}, "moves": []}),
         "schema: Value error, expected schema 'spotplan.plan/1'"),
    ],
)
def test_bad_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(InputError, match=re.escape(message)):
        load_plan(path)


def test_field_error_names_the_move(tmp_path: Path) -> None:
    bad = _move("a", ["i-1"])
    bad["target"]["max_price"] = -1
    with pytest.raises(InputError, match=r"moves\.0\.target\.max_price \(move a\): Input should be greater"):
        load_plan(write_plan(tmp_path / "p.json", [bad]))


def test_duplicates_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="move id 'a' appears twice"):
        load_plan(write_plan(tmp_path / "p.json", [_move("a", ["i-1"]), _move("a", ["i-2"])]))
    with pytest.raises(InputError, match="instance i-1 is in moves a and b"):
        load_plan(write_plan(tmp_path / "q.json", [_move("a", ["i-1"]), _move("b", ["i-1"])]))


def test_cli_errors_are_one_line_exit_2(runner: Any, tmp_path: Path) -> None:
    result = runner.invoke(app, ["migrate", str(tmp_path / "missing.json"), "--dry-run"])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'missing.json'}: no such plan file"
    both = runner.invoke(app, ["migrate", str(tmp_path / "x.json"), "--resume", "m"])
    assert both.exit_code == 2 and "exactly one" in both.stderr
    none = runner.invoke(app, ["migrate"])
    assert none.exit_code == 2


def test_help_imports_no_cloud_sdk() -> None:
    import subprocess
    import sys

    code = ("import sys; from spotplan.cli.main import app; "
            "from typer.testing import CliRunner; CliRunner().invoke(app, ['migrate', '--help']); "
            "bad = [m for m in ('boto3', 'botocore', 'google.cloud.compute_v1', 'azure.mgmt.compute', 'pandas')"
            " if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("edit,message", [
    (lambda m: m.update(count=0), "moves.0.count (move a): Input should be greater than or equal to 1"),
    (lambda m: m.update(count=True), "moves.0.count (move a): Input should be a valid integer"),
    (lambda m: m.update(id=""), "moves.0.id: String should have at least 1 character"),
    (lambda m: m.update(fallbak="none"), "moves.0.fallbak (move a): Extra inputs are not permitted"),
    (lambda m: m["target"].update(max_price="0.5"),
     "moves.0.target.max_price (move a): Input should be a valid number"),
    (lambda m: m["target"].update(max_price=float("inf")),
     "moves.0.target.max_price (move a): Input should be a finite"),
    (lambda m: m.update(on_demand_price=float("nan")), "moves.0.on_demand_price (move a): Input should be a finite"),
])
def test_hand_edits_that_would_change_what_runs_are_refused(tmp_path: Path, edit: Any, message: str) -> None:
    move = _move("a", ["i-1"])
    edit(move)
    with pytest.raises(InputError, match=re.escape(message)):
        load_plan(write_plan(tmp_path / "p.json", [move]))


def test_schema_is_required(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"created_at": "x", "analysis": {"generated_at": "x"}, "moves": []}))
    with pytest.raises(InputError, match="schema: Field required"):
        load_plan(path)


@pytest.mark.parametrize("content,message", [
    (b"\xff\xfe{}", "not a plan file (not UTF-8 text)"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
])
def test_undecodable_plans_are_input_errors(runner: Any, tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "p.json"
    path.write_bytes(content)
    result = runner.invoke(app, ["migrate", str(path), "--dry-run"])
    assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.output


def test_a_bad_plan_is_named_before_approval_is_asked(runner: Any, tmp_path: Path) -> None:
    result = runner.invoke(app, ["migrate", str(tmp_path / "missing.json")])  # no --yes, stdin is not a TTY
    assert result.exit_code == 2
    assert "missing.json: no such plan file" in result.stderr
