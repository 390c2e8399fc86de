"""`spotplan analyze` on price tables and options a demanding user gets wrong or the clouds hand
over incomplete: $0 prices, conflicting rows, rows without GPU fields or band, regions in another
case, non-finite thresholds, outputs that would overwrite inputs, and a reader that stops early."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from spotplan.cli.main import app

HEADER = ("provider,region,zone,instance_type,gpu_model,gpu_count,vcpus,memory_gib,market,price_per_hour,"
          "interruption_band,observed_at,source")
NOW = ["--now", "2026-10-15T00:00:00Z"]
JOB = """workloads:
  - id: job
    kind: batch
    provider: aws
    region: {region}
    instance_type: g5.xlarge
    remaining_hours: 10
    checkpoint: {{enabled: true, interval_minutes: 30, save_seconds: 60, restore_seconds: 60, storage: s3://b/k}}
    handles_preemption: true
"""


def _files(tmp_path: Path, *rows: str, region: str = "us-east-1") -> tuple[Path, Path]:
    inv = tmp_path / "inv.yaml"
    inv.write_text(JOB.format(region=region))
    table = tmp_path / "prices.csv"
    table.write_text("\n".join([HEADER, *rows]) + "\n")
    return inv, table


def _json(runner: Any, *args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["analyze", *args, *NOW, "-o", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["workloads"][0]  # type: ignore[no-any-return]


OD = "aws,us-east-1,,g5.xlarge,A10G,1,4,16,on-demand,1.0,,2026-10-01,t"
SPOT = "aws,us-east-1,,g5.xlarge,A10G,1,4,16,spot,0.4,<5%,2026-10-01,t"


@pytest.mark.parametrize("row", [OD.replace(",1.0,", ",0,"), SPOT.replace(",0.4,", ",0.0,")])
def test_a_zero_price_is_an_input_error_naming_the_row(runner: Any, tmp_path: Path, row: str) -> None:
    inv, table = _files(tmp_path, OD, SPOT, row)
    result = runner.invoke(app, ["analyze", str(inv), "--prices", str(table), *NOW,
                                 "--plan-out", str(tmp_path / "plan.json")])
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert line.startswith(f"error: {table}: row 4: price_per_hour is 0") and "\n" not in line
    assert line.endswith("expected a positive number (USD per instance-hour)")
    assert not (tmp_path / "plan.json").exists()


def test_conflicting_rows_name_both_files_whatever_the_order(runner: Any, tmp_path: Path) -> None:
    inv, a = _files(tmp_path, OD, SPOT)
    b = tmp_path / "b.csv"
    b.write_text("\n".join([HEADER, SPOT.replace(",0.4,", ",0.2,")]) + "\n")
    for order in ((a, b), (b, a)):
        result = runner.invoke(app, ["analyze", str(inv), "--prices", str(order[0]), "--prices", str(order[1]), *NOW])
        assert result.exit_code == 2, result.output
        line = result.stderr.strip()
        assert line.startswith("error: conflicting prices for aws/us-east-1/g5.xlarge/spot at 2026-10-01")
        assert f"{a} row 3" in line and f"{b} row 2" in line
    # The same row twice (two exports that overlap) is no conflict.
    same = tmp_path / "same.csv"
    same.write_text("\n".join([HEADER, SPOT]) + "\n")
    assert _json(runner, str(inv), "--prices", str(a), "--prices", str(same))["status"] == "recommended"


def test_the_workloads_own_type_is_an_offer_without_gpu_fields(runner: Any, tmp_path: Path) -> None:
    # No row says which GPU a g5.xlarge has: the same type still matches itself.
    bare_od, bare_spot = (r.replace("A10G,1,", ",,") for r in (OD, SPOT))
    inv, table = _files(tmp_path, bare_od, bare_spot)
    w = _json(runner, str(inv), "--prices", str(table))
    assert w["status"] == "recommended" and w["best"]["instance_type"] == "g5.xlarge"
    # A spot row without them takes them from another row of its type, so other types with the same
    # GPU are offers as before.
    other = "aws,us-east-1,,g5.2xlarge,A10G,1,8,32,spot,0.3,<5%,2026-10-01,t"
    inv, table = _files(tmp_path, OD, bare_spot, other)
    w = _json(runner, str(inv), "--prices", str(table))
    assert {w["best"]["instance_type"], *(a["instance_type"] for a in w["alternatives"])} == {
        "g5.xlarge", "g5.2xlarge"}


def test_a_zone_pool_takes_its_regions_band(runner: Any, tmp_path: Path) -> None:
    # AWS publishes the band per region and type: a zone price imported on its own must not count
    # as the 10-15% default (MTBF 28 h) when the region's row says >20% (12 h).
    zone = "aws,us-east-1,us-east-1a,g5.xlarge,A10G,1,4,16,spot,0.3,,2026-10-01,t"
    inv, table = _files(tmp_path, OD, SPOT.replace("<5%", ">20%"), zone)
    w = _json(runner, str(inv), "--prices", str(table))
    offers = {(o["zone"] or ""): o for o in [w["best"], *w["alternatives"]]}
    assert offers["us-east-1a"]["interruption_band"] == ">20%" and offers["us-east-1a"]["mtbf_hours"] == 12.0


def test_regions_match_in_any_case(runner: Any, tmp_path: Path) -> None:
    inv, table = _files(tmp_path, *(r.replace("us-east-1", "US-East-1") for r in (OD, SPOT)), region="us-EAST-1")
    w = _json(runner, str(inv), "--prices", str(table))
    assert w["status"] == "recommended" and w["current"]["region"] == "us-east-1"


@pytest.mark.parametrize("option", ["--min-savings", "--min-savings-pct"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_threshold_that_is_not_finite_is_a_usage_error(runner: Any, tmp_path: Path, option: str,
                                                         value: str) -> None:
    inv, table = _files(tmp_path, OD, SPOT)
    result = runner.invoke(app, ["analyze", str(inv), "--prices", str(table), *NOW, option, value])
    assert result.exit_code == 2 and result.stderr.startswith(f"error: {option} "), result.output


def test_outputs_never_overwrite_inputs_or_each_other(runner: Any, tmp_path: Path) -> None:
    inv, table = _files(tmp_path, OD, SPOT)
    before = inv.read_text()
    for args, flag in ((["--out", str(inv)], "--out"), (["--plan-out", str(table)], "--plan-out"),
                       (["--out", str(tmp_path / "x.json"), "--plan-out", str(tmp_path / "x.json")], "--plan-out")):
        result = runner.invoke(app, ["analyze", str(inv), "--prices", str(table), *NOW, *args])
        assert result.exit_code == 2 and result.stderr.startswith(f"error: {flag} "), result.output
    assert inv.read_text() == before and not (tmp_path / "x.json").exists()
    # A folder of prices: its files are inputs too.
    result = runner.invoke(app, ["analyze", str(inv), "--prices", str(tmp_path), *NOW, "--out", str(table)])
    assert result.exit_code == 2


def test_a_reader_that_stops_early_is_not_an_error(tmp_path: Path) -> None:
    inv, table = _files(tmp_path, OD, SPOT)
    proc = subprocess.run(
        f"{sys.executable} -m spotplan analyze {inv} --prices {table} {' '.join(NOW)} -o json | head -c 1",
        shell=True, capture_output=True, text=True, timeout=120, executable="/bin/bash",
    )
    assert proc.stdout == "{"
    assert "BrokenPipe" not in proc.stderr and "error" not in proc.stderr, proc.stderr


def test_plan_out_names_moves_migrate_would_refuse(runner: Any, tmp_path: Path) -> None:
    # The cost model needs no instance ids or launch block; migrate does, so analyze says so.
    inv, table = _files(tmp_path, OD, SPOT)
    result = runner.invoke(app, ["analyze", str(inv), "--prices", str(table), *NOW,
                                 "--plan-out", str(tmp_path / "plan.json"), "-o", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "plan.json").read_text())["moves"][0]["id"] == "move-job"
    note = next(line for line in result.stderr.splitlines() if line.startswith("note: move-job"))
    assert "no instance_ids" in note and "no launch.image" in note and "no launch.checkpoint_trigger" in note
