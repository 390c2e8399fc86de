"""The migrate journal: events before/after each step, merged state, and reading it back."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from spotplan.errors import InputError
from spotplan.journal import Journal


def test_steps_merge_state_and_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    j = Journal(path)
    j.begin_move("m1", "wl", "aws", "migrate", {"id": "m1"}, "plan.json")
    j.step_start("m1", "acquire")
    j.step_done("m1", "acquire", [{"call": "ec2.run_instances", "ids": ["i-1"]}], {"target_ids": ["i-1"]})
    j.step_start("m1", "trigger_checkpoint")
    j.close()

    again = Journal(path)
    move = again.get_move("m1")
    assert move is not None and move["status"] == "running" and move["plan_path"] == "plan.json"
    assert move["state"] == {"target_ids": ["i-1"], "steps_done": ["acquire"]}
    phases = [(e["step"], e["phase"]) for e in again.events("m1")]
    # The interrupted step shows as a start without a done: what --resume re-runs.
    assert phases == [("begin", "info"), ("acquire", "start"), ("acquire", "done"), ("trigger_checkpoint", "start")]
    again.finish("m1", "done")
    listed = again.list_moves()
    assert listed[0]["move_id"] == "m1" and listed[0]["status"] == "done" and listed[0]["target_ids"] == ["i-1"]


def test_failed_step_and_show(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite3")
    j.begin_move("m2", "wl", "gcp", "migrate", {"id": "m2"}, None)
    j.step_start("m2", "acquire")
    j.step_failed("m2", "acquire", [], "quota exceeded")
    j.finish("m2", "rolled-back", "acquire: quota exceeded")
    shown = j.show("m2")
    assert shown["status"] == "rolled-back" and shown["error"] == "acquire: quota exceeded"
    assert [e["data"].get("error") for e in shown["events"] if e["phase"] == "failed"] == ["quota exceeded"]


def test_unknown_move_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no move 'nope'"):
        Journal(tmp_path / "j.sqlite3").show("nope")


def test_duplicate_move_is_refused_by_the_database(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite3")
    j.begin_move("m3", "wl", "aws", "migrate", {}, None)
    with pytest.raises(sqlite3.IntegrityError):
        j.begin_move("m3", "wl", "aws", "migrate", {}, None)
    # The failed transaction left nothing behind.
    assert [e["step"] for e in j.events("m3")] == ["begin"]


def test_restart_is_one_transaction(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite3")
    j.begin_move("m4", "wl", "aws", "migrate", {}, None)
    j.step_done("m4", "acquire", [], {"target_ids": ["i-old"], "attempt": 1})
    j.finish("m4", "rolled-back", "capacity")
    j.restart("m4", "migrate", {"attempt": 2, "steps_done": [], "target_ids": []})
    move = j.get_move("m4")
    assert move is not None and move["status"] == "running" and move["error"] is None
    assert move["state"] == {"attempt": 2, "steps_done": [], "target_ids": []}
    assert [e["step"] for e in j.events("m4")] == ["begin", "acquire", "end", "begin"]
    assert [e["step"] for e in j.current_run_events("m4")] == ["begin"]  # what --resume looks at

    # A state that cannot be stored aborts the whole restart: no fresh begin over the old run's state.
    with pytest.raises(TypeError):
        j.restart("m4", "fallback", {"unstorable": object()})
    move = j.get_move("m4")
    assert move is not None and move["kind"] == "migrate"
    assert [e["step"] for e in j.events("m4")] == ["begin", "acquire", "end", "begin"]


def test_default_path_follows_xdg_data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    j = Journal()
    assert str(j.path).startswith(str(tmp_path / "data")) and j.path.exists()


def test_migrations_list_and_show_cli(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from spotplan.cli.main import app

    empty = runner.invoke(app, ["migrations", "list"])
    assert empty.exit_code == 0 and "no moves recorded" in empty.stderr
    assert empty.stdout.split() == ["MOVE", "WORKLOAD", "PROVIDER", "KIND", "STATUS", "TARGETS", "UPDATED"]
    j = Journal()
    j.begin_move("m4", "wl-4", "azure", "migrate", {"id": "m4"}, None)
    j.step_start("m4", "acquire")
    j.step_done("m4", "acquire", [{"call": "compute.virtual_machines.begin_create_or_update", "ids": ["/vm/x"]}],
                {"target_ids": ["/vm/x"]})
    listed = runner.invoke(app, ["migrations", "list"])
    assert "m4" in listed.stdout and "running" in listed.stdout and "/vm/x" in listed.stdout
    shown = runner.invoke(app, ["migrations", "show", "m4"])
    assert "begin_create_or_update -> /vm/x" in shown.stdout
    missing = runner.invoke(app, ["migrations", "show", "zzz"])
    assert missing.exit_code == 2 and missing.stderr.startswith("error: no move 'zzz'")


def test_migrations_render_as_csv_and_markdown(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import csv
    import io

    from spotplan.cli.main import app

    j = Journal()
    j.begin_move("m5", "wl-5", "aws", "migrate", {"id": "m5"}, None)
    j.step_start("m5", "acquire")
    j.step_done("m5", "acquire", [{"call": "ec2.run_instances", "ids": ["i-1", "i-2"]}], {"target_ids": ["i-1", "i-2"]})
    j.step_start("m5", "trigger_checkpoint")
    j.step_failed("m5", "trigger_checkpoint", [], "trigger | exited 1")
    rows = list(csv.DictReader(io.StringIO(runner.invoke(app, ["migrations", "list", "-o", "csv"]).stdout)))
    assert [(r["move_id"], r["status"], r["target_ids"]) for r in rows] == [("m5", "running", "i-1 i-2")]
    out = tmp_path / "moves.md"
    assert runner.invoke(app, ["migrations", "list", "--out", str(out)]).exit_code == 0
    assert out.read_text().startswith("# Migrations") and "| m5 | wl-5 | aws |" in out.read_text()
    events = list(csv.DictReader(io.StringIO(runner.invoke(app, ["migrations", "show", "m5", "-o", "csv"]).stdout)))
    assert [(e["step"], e["phase"]) for e in events] == [
        ("begin", "info"), ("acquire", "start"), ("acquire", "done"), ("trigger_checkpoint", "start"),
        ("trigger_checkpoint", "failed")]
    assert events[2]["calls"] == "ec2.run_instances" and events[2]["ids"] == "i-1 i-2"
    assert events[4]["error"] == "trigger | exited 1"
    md = runner.invoke(app, ["migrations", "show", "m5", "-o", "markdown"]).stdout
    assert md.startswith("# Move m5") and "trigger \\| exited 1" in md


def test_a_corrupt_journal_is_named(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from spotplan.cli.main import app
    from spotplan.paths import journal_path

    journal_path().parent.mkdir(parents=True, exist_ok=True)
    journal_path().write_bytes(b"garbage, not a database" * 100)
    for args in (["migrations", "list"], ["migrations", "show", "x"], ["migrate", "--resume", "x", "--yes"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and str(journal_path()) in result.stderr, (args, result.output)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert journal_path().read_bytes().startswith(b"garbage")  # never replaced


def test_reading_commands_never_create_the_journal(runner) -> None:  # type: ignore[no-untyped-def]
    from spotplan.cli.main import app
    from spotplan.paths import journal_path

    assert runner.invoke(app, ["migrations", "list"]).exit_code == 0
    for args in (["migrations", "show", "m1"], ["migrate", "--resume", "m1", "--yes"],
                 ["migrate", "--fallback", "m1", "--yes"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "no migrate journal yet" in result.stderr, (args, result.output)
    assert not journal_path().exists()
