"""`spotplan prices import` through the CLI: into the store, deduplicated, dry-run, clear errors."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
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


@pytest.mark.parametrize(("name", "content", "fmt", "reason"), [
    ("ec2i.json", '[{"instance_type":"p3.2xlarge","GPU":1,"pricing":{"us-east-1":["a"]}}]', "auto",
     "item 1 (p3.2xlarge, us-east-1): pricing.us-east-1: is a list, expected an object"),
    ("advisor.json", '{"instance_types":{},"ranges":[],"spot_advisor":{"us-east-1":["x"]}}', "auto",
     "spot_advisor.us-east-1: is a list, expected an object"),
    ("pages.json", '[{"SpotPriceHistory":[]}, 5]', "auto", "page 2: is 5, expected an object"),
    ("history.json", '{"SpotPriceHistory": "nope"}', "auto",
     "the document: SpotPriceHistory: is 'nope', expected a list"),
    ("advisor2.json", '{"ranges":[{"index":0,"label":"<5%"}],"spot_advisor":{"us-east-1":{"Linux":{"p3.2xlarge":7}}}}',
     "spot-advisor", "spot_advisor.us-east-1.Linux.p3.2xlarge: is 7, expected an object"),
    ("retail.csv", "InstanceType,Price\nStandard_NC6s_v3,3.06\n", "azure-retail",
     "invalid JSON at line 1: Expecting value"),
])
def test_malformed_json_is_exit_2_one_line_naming_the_file(runner, tmp_path: Path, name: str, content: str,
                                                            fmt: str, reason: str) -> None:
    f = tmp_path / name
    f.write_text(content)
    res = runner.invoke(app, ["prices", "import", str(f), "--format", fmt])
    assert res.exit_code == 2, res.output
    assert res.output.splitlines() == [f"error: {f}: {reason}"]
    assert read_store() is None


def test_price_table_read_error_is_one_line(runner, tmp_path: Path) -> None:
    # pandas' tokenizer message ends in a newline; §3 wants one line naming the file.
    f = tmp_path / "table.csv"
    f.write_text("provider,region\naws,us-east-1\n1,2,3,4\n")
    res = runner.invoke(app, ["prices", "import", str(f), "--format", "price-table"])
    assert res.exit_code == 2, res.output
    lines = res.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {f}: cannot read price table: "), res.output


def test_ec2instances_gpu_names_are_one_vocabulary(runner, shared_data: Path) -> None:
    f = shared_data / "ec2instances-info-gpu/aws_gpu_prices_by_region.csv"
    assert runner.invoke(app, ["prices", "import", str(f), "--observed-at", "2025-11-30"]).exit_code == 0
    df = read_store()
    assert df is not None
    models = set(df["gpu_model"])
    assert {"B300", "K520", "AI100", "V520"} <= models
    assert not {m for m in models if m.upper().startswith("NVIDIA")}, models
    # p6-b300.48xlarge,GPU instance,NVIDIA B300,8,2100,192,4096,...
    res = runner.invoke(app, ["prices", "show", "--gpu", "B300", "-o", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["rows"]
    assert rows and {(r["instance_type"], r["gpu_model"], r["gpu_count"]) for r in rows} == {
        ("p6-b300.48xlarge", "B300", 8)}
    k520 = df[df["instance_type"] == "g2.8xlarge"]
    assert set(k520["gpu_model"]) == {"K520"} and set(k520["gpu_count"]) == {4.0}


def test_advisor_band_reaches_pools_with_observed_spot_prices(runner, shared_data: Path) -> None:
    # describe-spot-price-history data carries no bands; the advisor is where they come from. The
    # capture: use1-az{1,2,4,5,6} g4dn.2xlarge Linux/UNIX 0.225600 at 2022-05-31T21:38:27Z. The
    # 2021-02-10 feed says r=0 ("<5%") for g4dn.2xlarge in us-east-1, the 2025-06-28 feed r=4 (">20%").
    tsv = shared_data / "ericpauley-aws-spot-price-history/prices/2022/05_gpu_subset.tsv"
    feeds = shared_data / "aws-spot-advisor"
    assert runner.invoke(app, ["prices", "import", str(tsv)]).exit_code == 0
    before = read_store()
    assert before is not None

    def pools() -> pd.DataFrame:
        df = read_store()
        assert df is not None and len(df) == len(before)  # bands fill in: no observation is added
        sel = df[(df["instance_type"] == "g4dn.2xlarge") & df["zone"].str.startswith("use1-az")]
        assert sorted(sel["zone"]) == ["use1-az1", "use1-az2", "use1-az4", "use1-az5", "use1-az6"]
        # The observation stays what was quoted, when it was quoted.
        assert set(sel["price_per_hour"]) == {0.2256} and set(sel["observed_at"]) == {"2022-05-31T21:38:27Z"}
        return sel

    res = runner.invoke(app, ["prices", "import", str(feeds / "2021-02-10/spot-advisor-data.json"),
                              "--observed-at", "2021-02-10", "-o", "json"])
    assert res.exit_code == 0, res.output
    assert "take the advisor's interruption band; their prices and times stay as observed" in res.stderr
    assert set(pools()["interruption_band"]) == {"<5%"}
    # A newer feed replaces an older feed's band; the older one, imported again, does not win back.
    for feed, date in (("2025-06-28", "2025-06-28"), ("2021-02-10", "2021-02-10")):
        res = runner.invoke(app, ["prices", "import", str(feeds / feed / "spot-advisor-data.json"),
                                  "--observed-at", date])
        assert res.exit_code == 0, res.output
        sel = pools()
        assert set(sel["interruption_band"]) == {">20%"}
        assert set(sel["source"]) == {"aws describe-spot-price-history; band: aws spot advisor as of 2025-06-28"}
    # What analyze prices with (history.summarize over the snapshot + store) and `prices show` carry it.
    from spotplan.analysis import load_prices
    from spotplan.pricing.history import summarize

    summary = summarize(load_prices(None).table, 24 * 30, datetime(2026, 1, 1, tzinfo=timezone.utc))
    az1 = summary[(summary["zone"] == "use1-az1") & (summary["instance_type"] == "g4dn.2xlarge")]
    assert az1["interruption_band"].tolist() == [">20%"]
    shown = runner.invoke(app, ["prices", "show", "--provider", "aws", "--region", "us-east-1", "--gpu", "T4",
                                "-o", "json"])
    rows = [r for r in json.loads(shown.stdout)["rows"] if r["zone"].startswith("use1-az")]
    assert rows and {r["interruption_band"] for r in rows if r["instance_type"] == "g4dn.2xlarge"} == {">20%"}
    assert all(r["interruption_band"] for r in rows)
