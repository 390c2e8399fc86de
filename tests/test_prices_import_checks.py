"""`prices import` and the store on what the second audit found: errors naming the file's own line
or item and field, rows left out counted, non-USD prices refused, SkyPilot on-demand region-wide,
AZ-ID-only items, NDJSON pages, conflicting prices reported, the summary's full GPU list; and
`prices history --png` refusing a name that is not .png."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from spotplan.cli.main import app
from spotplan.errors import InputError
from spotplan.pricing import store
from spotplan.pricing.importers import import_file

pytestmark = pytest.mark.timeout(60)

_EC2I_HEAD = "instance_type,gpu_model,gpu_count,vcpus,memory_gib,region,ondemand_linux,spot_avg_linux,pct_interrupt\n"
_EC2I_ROW = "p3.2xlarge,NVIDIA V100,1,8,61,{region},3.06,{spot},5-10%\n"


@pytest.mark.parametrize(("name", "content", "message"), [
    # Line 4 of the file holds the bad spot price; spot and on-demand rows are not counted apart.
    ("e.csv", _EC2I_HEAD + "".join(_EC2I_ROW.format(region=r, spot=s) for r, s in
                                  [("us-east-1", "0.9"), ("us-west-2", "0.8"), ("eu-west-1", "-1")]),
     "row 4: spot_avg_linux is '-1', expected a positive number"),
    ("g.csv", "snapshot_time,machine_type,gpu_name,gpu_count,vcpus,ram_gib,region,hour,hour_spot\n"
              "2026-07-30T06:13:37+00:00,a2-highgpu-1g,a100,1,12,85,asia-east1,3.79,0.44\n"
              "2026-07-30T06:13:37+00:00,a2-highgpu-1g,a100,1,12,85,asia-east2,4.72,nan\n",
     "row 3: hour_spot is 'nan', expected a positive number"),
    ("t.tsv", "euw3-az2\tg4dn.4xlarge\tLinux/UNIX\t0.4664\t2022-05-31T18:20:41+00:00\n"
              "euw3-az2\tg4dn.4xlarge\tSUSE Linux\t0.5914\t2022-05-31T18:20:41+00:00\n"
              "euw3-az1\tg4dn.4xlarge\tLinux/UNIX\t-1\t2022-05-31T18:21:59+00:00\n",
     "line 3: spot_price is '-1', expected a positive number"),
    ("s.json", json.dumps({"SpotPriceHistory": [
        {"AvailabilityZone": "us-east-1a", "InstanceType": "p3.2xlarge", "ProductDescription": "Linux/UNIX",
         "SpotPrice": "0.9", "Timestamp": "2024-01-01T00:00:00Z"},
        {"AvailabilityZone": "us-east-1a", "InstanceType": "p3.2xlarge", "ProductDescription": "Linux/UNIX",
         "SpotPrice": "inf", "Timestamp": "2024-01-02T00:00:00Z"}]}),
     "SpotPriceHistory item 2: SpotPrice is 'inf', expected a positive number"),
    ("a.json", json.dumps({"Items": [
        {"currencyCode": "USD", "armRegionName": "eastus", "effectiveStartDate": "2024-01-01T00:00:00Z",
         "armSkuName": "Standard_NC6s_v3", "skuName": "NC6s v3", "productName": "Virtual Machines NCSv3 Series",
         "retailPrice": 3.06},
        {"currencyCode": "USD", "armRegionName": "eastus", "effectiveStartDate": "not a date",
         "armSkuName": "Standard_NC6s_v3", "skuName": "NC6s v3 Spot",
         "productName": "Virtual Machines NCSv3 Series", "retailPrice": 0.3}]}),
     "item 2: observed_at is 'not a date'"),
])
def test_bad_value_names_the_files_own_line_or_item(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError) as err:
        import_file(path, observed_at="2025-01-01")
    assert str(err.value) == f"{path}: {message}" or str(err.value).startswith(f"{path}: {message}"), err.value


def _azure_item(**kw: object) -> dict[str, object]:
    return {"currencyCode": "USD", "armRegionName": "eastus", "effectiveStartDate": "2024-01-01T00:00:00Z",
            "armSkuName": "Standard_NC8as_T4_v3", "skuName": "NC8as T4 v3", "type": "Consumption",
            "productName": "Virtual Machines NCasT4_v3 Series", "retailPrice": 0.752, "unitOfMeasure": "1 Hour",
            **kw}


def test_azure_retail_non_usd_and_windows_items_are_left_out_and_counted(runner, tmp_path: Path) -> None:
    path = tmp_path / "az.json"
    path.write_text(json.dumps({"Items": [
        _azure_item(),
        _azure_item(currencyCode="EUR", retailPrice=0.69),
        _azure_item(productName="Virtual Machines NCasT4_v3 Series Windows", retailPrice=1.2),
    ]}))
    res = runner.invoke(app, ["prices", "import", str(path), "-o", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["rows"][0]["rows"] == 1 and out["rows"][0]["skipped"] == 2
    assert out["skipped"] == {"azure": {"priced in EUR, not USD": 1, "not a Linux pay-as-you-go VM hour": 1}}
    assert "priced in EUR" in res.stderr
    df = store.read_store()
    assert df is not None and df["price_per_hour"].tolist() == [0.752]


def test_azure_retail_zero_priced_items_that_are_left_out_do_not_fail_the_import(runner, tmp_path: Path) -> None:
    """Free meters and $0 lines of sizes the importer drops anyway say nothing about the table; only a
    kept row must carry a positive price."""
    path = tmp_path / "az.json"
    path.write_text(json.dumps({"Items": [
        _azure_item(),
        _azure_item(armSkuName="Standard_B1s", skuName="B1s", productName="Virtual Machines BS Series",
                    retailPrice=0.0),
        _azure_item(productName="Virtual Machines NCasT4_v3 Series Windows", retailPrice=0.0, currencyCode="EUR"),
    ]}))
    res = runner.invoke(app, ["prices", "import", str(path), "-o", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["rows"][0]["rows"] == 1
    kept_zero = tmp_path / "zero.json"
    kept_zero.write_text(json.dumps({"Items": [_azure_item(retailPrice=0.0)]}))
    res = runner.invoke(app, ["prices", "import", str(kept_zero)])
    assert res.exit_code == 2 and "item 1: retailPrice is 0.0, expected a positive number" in res.stderr


def test_azure_retail_pages_as_ndjson(tmp_path: Path) -> None:
    path = tmp_path / "pages.json"
    path.write_text(json.dumps({"Items": [_azure_item()]}) + "\n"
                    + json.dumps({"Items": [_azure_item(armRegionName="westus2", retailPrice=0.8)]}) + "\n")
    df = import_file(path).rows
    assert sorted(df["region"]) == ["eastus", "westus2"]


def test_spot_history_item_with_zone_id_only(tmp_path: Path) -> None:
    path = tmp_path / "sph.json"
    path.write_text(json.dumps({"SpotPriceHistory": [
        {"AvailabilityZoneId": "use1-az4", "InstanceType": "p3.2xlarge", "ProductDescription": "Linux/UNIX",
         "SpotPrice": "0.9", "Timestamp": "2024-01-01T00:00:00Z"}]}))
    r = import_file(path).rows.iloc[0]
    assert (r["region"], r["zone"], r["price_per_hour"]) == ("us-east-1", "use1-az4", 0.9)


def test_skypilot_aws_on_demand_is_region_wide(tmp_path: Path) -> None:
    path = tmp_path / "vms.csv"
    path.write_text(
        "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,Price,SpotPrice,Region,AvailabilityZone\n"
        "g5.xlarge,A10G,1,4,16,1.006,0.41,us-east-1,use1-az1\n"
        "g5.xlarge,A10G,1,4,16,1.006,0.43,us-east-1,use1-az2\n"
        "m5.large,,,2,8,0.096,0.04,us-east-1,use1-az1\n")
    res = import_file(path, observed_at="2025-01-01")
    od = res.rows[res.rows["market"] == "on-demand"]
    assert od["zone"].tolist() == [""] and od["price_per_hour"].tolist() == [1.006]
    assert sorted(res.rows.loc[res.rows["market"] == "spot", "zone"]) == ["use1-az1", "use1-az2"]
    assert res.skipped == {"aws": {"not a GPU instance type": 1}}


def test_conflicting_prices_for_one_pool_and_time_are_reported(runner, tmp_path: Path) -> None:
    head = "provider,region,zone,instance_type,gpu_model,gpu_count,market,price_per_hour,observed_at\n"
    first = tmp_path / "a.csv"
    first.write_text(head + "aws,us-east-1,,p4d.24xlarge,A100-40GB,8,spot,10.0,2025-01-01\n"
                            "aws,us-east-1,,p4d.24xlarge,A100-40GB,8,spot,11.0,2025-01-01T00:00:00Z\n")
    res = runner.invoke(app, ["prices", "import", str(first), "-o", "json"])
    assert res.exit_code == 0, res.output
    assert "1 observation(s) came with another price" in res.stderr and "read last was kept" in res.stderr
    second = tmp_path / "b.csv"
    second.write_text(head + "aws,us-east-1,,p4d.24xlarge,A100-40GB,8,spot,12.0,2025-01-01\n")
    res = runner.invoke(app, ["prices", "import", str(second), "-o", "json"])
    assert "1 observation(s) came with another price" in res.stderr
    df = store.read_store()
    assert df is not None and df["price_per_hour"].tolist() == [12.0]


def test_store_counts_conflicts_but_not_repeats() -> None:
    rows = pd.DataFrame([{"provider": "gcp", "region": "us-central1", "zone": "", "instance_type": "g2-standard-4",
                          "market": "spot", "price_per_hour": p, "observed_at": "2025-01-01"} for p in (1.0, 1.0)])
    assert store.merge_into_store(rows).conflicts == {"gcp": 0}
    assert store.merge_into_store(rows.assign(price_per_hour=2.0)).conflicts == {"gcp": 1}


def test_import_summary_lists_every_gpu_model_in_json(runner, shared_data: Path) -> None:
    path = shared_data / "ec2instances-info-gpu/aws_gpu_prices_by_region.csv"
    res = runner.invoke(app, ["prices", "import", str(path), "--observed-at", "2025-11-30", "--dry-run", "-o", "json"])
    assert res.exit_code == 0, res.output
    models = json.loads(res.stdout)["rows"][0]["gpu_models"].split(", ")
    assert {"T4", "V100", "L4", "L40S", "K80"} <= set(models) and len(models) > 8


def test_history_png_must_end_in_png(runner, tmp_path: Path) -> None:
    res = runner.invoke(app, ["prices", "history", "p3.2xlarge", "--provider", "aws", "--region", "us-east-1",
                              "--png", str(tmp_path / "x.svg")])
    assert res.exit_code == 2 and "give a path ending in .png" in res.output
    assert not (tmp_path / "x.svg").exists()


def test_history_chart_draws_on_demand_only_from_its_first_observation() -> None:
    from datetime import datetime, timedelta, timezone

    from spotplan.pricing.charts import terminal_chart
    from spotplan.pricing.history import history_stats

    now = datetime(2026, 11, 1, tzinfo=timezone.utc)
    rows = pd.DataFrame([
        {"provider": "aws", "region": "us-east-1", "zone": z, "instance_type": "g5.xlarge", "gpu_model": "A10G",
         "gpu_count": 1.0, "vcpus": 4.0, "memory_gib": 16.0, "market": m, "price_per_hour": p,
         "interruption_band": "", "observed_at": (now - timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ"),
         "source": "test"}
        for z, m, p, h in [("us-east-1a", "spot", 0.4, 20), ("", "on-demand", 1.0, 2)]])
    rows["_t"] = pd.to_datetime(rows["observed_at"], utc=True)
    stats = history_stats(rows.drop(columns="_t"), 24, now)
    chart = terminal_chart(rows, stats, title="t", start=now - timedelta(days=1), now=now, width=24)
    od = next(line for line in chart.splitlines() if line.startswith("on-demand"))
    cells = od[len("on-demand"):].lstrip(" ")  # the label is padded to the longest one
    # 24 columns of one hour, each the price in force at its end: first seen 2 hours ago, so only the
    # columns ending at -2h, -1h and now are drawn (the old chart drew all 24).
    assert od.count("█") == 3, (od, cells)
