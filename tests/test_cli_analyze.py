"""`spotplan analyze` from the outside: formats (golden files), --prices, --plan-out, bad input."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from spotplan.cli.main import app
from spotplan.models import AnalysisResult, Plan
from tests.golden import assert_golden

FIX = Path(__file__).parent / "fixtures" / "analyze"
GOLDEN = Path(__file__).parent / "golden" / "analyze"
ROOT = Path(__file__).resolve().parents[1]
BASE = [
    "analyze",
    str(FIX / "fleet.yaml"),
    "--prices",
    str(FIX / "prices.csv"),
    "--now",
    "2026-11-23T00:00:00Z",
]


@pytest.mark.parametrize("fmt,ext", [("json", "json"), ("csv", "csv"), ("markdown", "md"), ("table", "txt")])
def test_renderings_match_golden(runner, update_golden: bool, monkeypatch, fmt: str, ext: str) -> None:  # type: ignore[no-untyped-def]
    # Relative paths from inside the fixture directory: the table wraps its footnote at a fixed width, so an
    # absolute path (which differs per checkout) would move the line breaks.
    monkeypatch.chdir(FIX)
    args = ["analyze", "fleet.yaml", "--prices", "prices.csv", *BASE[4:]]
    result = runner.invoke(app, [*args, "-o", fmt])
    assert result.exit_code == 0, result.output
    assert_golden(GOLDEN / f"fleet.{ext}", result.stdout, update_golden)


def test_json_validates_and_recomputes(runner) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(app, [*BASE, "-o", "json"])
    doc = json.loads(result.stdout)
    parsed = AnalysisResult.model_validate(doc)
    assert doc["schema"] == "spotplan.analysis/1"
    assert doc["prices"]["source"] == str(FIX / "prices.csv")
    for w in parsed.workloads:
        if w.best is None:
            continue
        b, c = w.best, w.current
        # §5.7 from the JSON fields alone
        assert c.cost is not None
        assert b.savings == pytest.approx(c.cost - b.cost - b.migration_cost)
        assert b.savings_pct == pytest.approx(100 * b.savings / c.cost)
        assert b.cost == pytest.approx(c.count * b.price_per_hour * b.wall_hours)
        assert b.wall_hours_p90 >= c.hours
    t = parsed.totals
    assert (t.workloads, t.recommended, t.conditional) == (13, 3, 2)


def test_prices_option_uses_only_that_table(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # A table with only the p4d pools: every other workload's type becomes unknown → exit 2 with a hint,
    # proving the bundled snapshot (which knows g5.xlarge) is not consulted.
    lines = (FIX / "prices.csv").read_text().splitlines()
    only = tmp_path / "p4d.csv"
    only.write_text("\n".join([lines[0], *[ln for ln in lines if ",p4d.24xlarge," in ln]]) + "\n")
    inv = tmp_path / "one.yaml"
    inv.write_text((FIX / "fleet.yaml").read_text().split("  - id: serving")[0])
    ok = runner.invoke(app, ["analyze", str(inv), "--prices", str(only), "--now", "2026-11-23", "-o", "json"])
    assert ok.exit_code == 0, ok.output
    doc = json.loads(ok.stdout)
    assert doc["workloads"][0]["current"]["price_per_hour"] == 20.0
    bad = runner.invoke(app, ["analyze", str(FIX / "fleet.yaml"), "--prices", str(only)])
    assert bad.exit_code == 2
    assert "g5.xlarge" in bad.stderr


def test_plan_out(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan_path = tmp_path / "plan.json"
    result = runner.invoke(app, [*BASE, "-o", "json", "--plan-out", str(plan_path)])
    assert result.exit_code == 0, result.output
    plan = Plan.model_validate(json.loads(plan_path.read_text()))
    analysis = json.loads(result.stdout)
    chosen = {w["id"] for w in analysis["workloads"] if w["status"] in ("recommended", "conditional")}
    assert {m.workload for m in plan.moves} == chosen
    assert plan.analysis.generated_at == analysis["generated_at"]
    assert all(m.target.max_price <= (m.on_demand_price or 0) for m in plan.moves)


def test_out_writes_file_and_csv_has_one_row_per_workload(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "report.csv"
    result = runner.invoke(app, [*BASE, "-o", "csv", "--out", str(out)])
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 13 and rows[0]["id"] == "pretrain"


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--window", "soon"], "--window"),
        (["--now", "yesterday"], "--now"),
        (["--scope", "galaxy"], "galaxy"),
        (["--seed", "-1"], "--seed"),
        (["--samples", "0"], "--samples"),
    ],
)
def test_bad_options_exit_2(runner, args: list[str], needle: str) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(app, [*BASE, *args])
    assert result.exit_code == 2
    assert needle in result.output
    assert "Traceback" not in result.output


def test_missing_inventory_exit_2(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(app, ["analyze", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "nope.yaml" in result.stderr


def test_bundled_example_runs_on_the_snapshot(runner) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(app, ["analyze", str(ROOT / "examples" / "fleet.yaml"), "--now", "2026-11-23", "-o", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    statuses = {w["status"] for w in doc["workloads"]}
    assert statuses == {"recommended", "conditional", "not-worth-it", "ineligible", "already-spot"}
    assert doc["prices"]["source"].startswith("bundled snapshot")
    warnings = {x["code"] for w in doc["workloads"] for x in w["warnings"]}
    assert len(warnings) >= 3


def test_out_suffix_picks_the_format_and_bad_paths_exit_2(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for name, probe in (("r.json", '"schema": "spotplan.analysis/1"'), ("r.md", "# "), ("r.csv", "id,status,")):
        result = runner.invoke(app, [*BASE, "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        assert probe in (tmp_path / name).read_text()
    explicit = runner.invoke(app, [*BASE, "-o", "csv", "--out", str(tmp_path / "r.json")])
    assert (tmp_path / "r.json").read_text().startswith("id,status,") and explicit.exit_code == 0
    (tmp_path / "file.txt").write_text("")
    bad = runner.invoke(app, [*BASE, "--out", str(tmp_path / "file.txt" / "x.csv")])
    assert bad.exit_code == 2 and "cannot write" in bad.stderr and "Traceback" not in bad.output


def test_out_to_a_fifo_writes_through_instead_of_replacing_it(tmp_path: Path) -> None:
    """--out /dev/null (or a FIFO) must be written to, never renamed over."""
    import os
    import stat
    import threading

    from spotplan.cli.common import emit

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    emit("hello", fifo)
    reader.join(timeout=10)
    assert got == ["hello\n"]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_cli_choices_are_the_planner_names() -> None:
    # The CLI spells its choices out (importing the planner would load numpy for `--help`).
    from spotplan.cli.analyze import OverheadModel, Scope
    from spotplan.planner import OVERHEAD_MODELS, SCOPES

    assert tuple(s.value for s in Scope) == SCOPES
    assert tuple(m.value for m in OverheadModel) == OVERHEAD_MODELS
