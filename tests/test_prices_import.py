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
