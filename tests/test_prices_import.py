"""`spotplan prices import` through the CLI: into the store, deduplicated, dry-run, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spotplan.cli.main import app
from spotplan.pricing.store import read_store

pytestmark = pytest.mark.timeout(60)


def test_import_real_file_into_store_twice(runner, shared_data: Path) -> None:
    f = shared_data / "skypilot-catalog/catalogs/v6/azure/vms_gpu_subset.csv"
    res = runner.invoke(app, ["prices", "import", str(f), "--observed-at", "2026-11-01T00:00:00Z", "-o", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["format"] == "skypilot"
    row = out["rows"][0]
    assert row["provider"] == "azure" and row["new"] == row["rows"] > 100
    df = read_store()
    assert df is not None and len(df) == row["rows"]
    again = runner.invoke(app, ["prices", "import", str(f), "--observed-at", "2026-11-01T00:00:00Z", "-o", "json"])
    assert json.loads(again.stdout)["rows"][0]["new"] == 0
    stored = read_store()
    assert stored is not None and len(stored) == len(df)


def test_dry_run_and_forced_format(runner, shared_data: Path) -> None:
    f = shared_data / "ec2instances-info-gpu/aws_gpu_prices_by_region.csv"
    res = runner.invoke(app, ["prices", "import", str(f), "--format", "ec2instances", "--dry-run", "-o", "csv"])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[0] == "provider,rows,spot,on_demand,gpu_models,new,skipped"
    assert "dry run" in res.stdout
    assert read_store() is None


def test_malformed_file_exit_2_one_line(runner, tmp_path: Path) -> None:
    f = tmp_path / "catalog.csv"
    f.write_text("InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,Price,SpotPrice,Region\n"
                 "Standard_NC6s_v3,V100,1,6,112,3.06,zero,eastus\n")
    res = runner.invoke(app, ["prices", "import", str(f)])
    assert res.exit_code == 2
    assert res.output.strip() == f"error: {f}: row 2: SpotPrice is 'zero', expected a number"
    assert read_store() is None


def test_observed_at_dates_undated_files_and_bad_values_exit_2(runner, shared_data: Path) -> None:
    f = shared_data / "ec2instances-info-gpu/aws_gpu_prices_by_region.csv"
    bad = runner.invoke(app, ["prices", "import", str(f), "--observed-at", "2025-13-45"])
    assert bad.exit_code == 2
    assert bad.output.strip().splitlines() == [
        "error: --observed-at is '2025-13-45', expected an ISO-8601 date or time such as 2025-11-30 "
        "or 2025-11-30T00:00:00Z"]
    undated = runner.invoke(app, ["prices", "import", str(f), "--dry-run", "-o", "json"])
    assert undated.exit_code == 0, undated.output
    assert f"note: {f} carries no date; using its modification time " in undated.stderr
    dated = runner.invoke(app, ["prices", "import", str(f), "--observed-at", "2025-11-30", "-o", "json"])
    assert dated.exit_code == 0, dated.output
    assert "carries no date" not in dated.stderr
    from spotplan.pricing.store import store_as_of

    assert store_as_of()["aws"].startswith("2025-11-30")  # the publication date, not the copy time


def test_advisor_after_ec2instances_keeps_observed_spot_prices(runner, shared_data: Path) -> None:
    # The QA sequence: real spot prices first, then the advisor feed (bands + savings, no prices).
    ec2 = shared_data / "ec2instances-info-gpu/aws_gpu_prices_by_region.csv"
    advisor = shared_data / "aws-spot-advisor/2025-06-28/spot-advisor-data.json"
    assert runner.invoke(app, ["prices", "import", str(ec2), "--observed-at", "2025-11-30"]).exit_code == 0
    res = runner.invoke(app, ["prices", "import", str(advisor), "--observed-at", "2025-06-28", "-o", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    # p5.48xlarge ca-central-1 (the feed's s=-62) has a real quote here, so it is one of the kept pools.
    assert out["skipped"]["aws"]["observed spot price kept"] > 100
    assert out["rows"][0]["skipped"] == sum(out["skipped"]["aws"].values())
    df = read_store()
    assert df is not None
    p5 = df[(df["instance_type"] == "p5.48xlarge") & (df["market"] == "spot")]
    east = p5[p5["region"] == "us-east-1"]
    assert east["price_per_hour"].tolist() == [pytest.approx(28.106467)]  # not the derived 26.42
    assert p5[p5["region"] == "ca-central-1"]["price_per_hour"].max() <= 63.296  # no 102.54
    derived = df[df["source"].str.startswith("aws spot advisor, derived")]
    assert not derived.empty and (derived["observed_at"] == "2025-06-28T00:00:00Z").all()
