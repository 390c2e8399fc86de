"""`spotplan prices pull` through the real SDKs (boto3, google-cloud-billing/compute, requests +
azure-mgmt-resourcegraph) against the local emulators of tests/emulators/pricing.py, whose answers
are built from the real captures in ../shared/data."""

from __future__ import annotations

import csv
import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from spotplan.cli.main import app
from spotplan.paths import price_store_dir
from spotplan.pricing.store import read_store
from tests.emulators.pricing import PricingEmulator, region_of_az_id

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def emu(pricing_emu: PricingEmulator) -> PricingEmulator:
    return pricing_emu


def _pull(runner, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["prices", "pull", *args, "-o", "json"])


def _store_bytes() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(price_store_dir().glob("*.parquet"))}


# ------------------------------------------------------------------------------------------- AWS


def test_aws_pull_fills_store_with_real_capture_values(runner, emu: PricingEmulator, shared_data: Path) -> None:
    res = _pull(runner, "--provider", "aws", "--region", "us-east-1")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["rows"][0]["provider"] == "aws" and summary["rows"][0]["new"] > 0
    df = read_store()
    assert df is not None
    spot = df[(df["market"] == "spot") & (df["instance_type"] == "p3.2xlarge")]
    # Every Linux p3.2xlarge quote of us-east-1 in the real capture, with its AZ and price.
    expected = set()
    with open(shared_data / "ericpauley-aws-spot-price-history/prices/2022/05_gpu_subset.tsv") as fh:
        for az_id, itype, product, price, _ts in csv.reader(fh, delimiter="\t"):
            region, zone = region_of_az_id(az_id)
            if region == "us-east-1" and itype == "p3.2xlarge" and product == "Linux/UNIX":
                expected.add((zone, round(float(price), 6)))
    got = {(z, round(p, 6)) for z, p in zip(spot["zone"], spot["price_per_hour"])}
    assert got == expected and len(expected) >= 3
    assert set(spot["gpu_model"]) == {"V100"} and set(spot["gpu_count"]) == {1.0}
    # On-demand from the Price List (ec2instances.info: p3.2xlarge us-east-1 = 3.06), not the
    # Windows or reserved-capacity decoys; vCPUs/memory from the product attributes.
    od = df[(df["market"] == "on-demand") & (df["instance_type"] == "p3.2xlarge")]
    assert od["price_per_hour"].tolist() == [3.06]
    assert od["vcpus"].tolist() == [8.0] and od["memory_gib"].tolist() == [61.0]
    # The band comes from the real advisor feed's range index, mapped through its labels.
    feed = json.loads((shared_data / "aws-spot-advisor/2025-06-28/spot-advisor-data.json").read_text())
    labels = {r["index"]: r["label"] for r in feed["ranges"]}
    want_band = labels[feed["spot_advisor"]["us-east-1"]["Linux"]["p3.2xlarge"]["r"]]
    assert set(spot["interruption_band"]) == {want_band}
    assert set(df["region"]) == {"us-east-1"}


def test_second_pull_adds_only_new_points(runner, emu: PricingEmulator) -> None:
    assert _pull(runner, "--provider", "aws", "--region", "us-east-1").exit_code == 0
    first = read_store()
    assert first is not None
    n_spot = int((first["market"] == "spot").sum())
    n_od = int((first["market"] == "on-demand").sum())
    now = datetime.now(timezone.utc).replace(microsecond=0)
    emu.data.add_spot_point("us-east-1", "us-east-1b", "p3.2xlarge", "0.701000", now - timedelta(minutes=20))
    emu.data.add_spot_point("us-east-1", "us-east-1b", "g5.xlarge", "0.455500", now - timedelta(minutes=10))
    # Observations are stamped to the second: two pulls within one second are one observation.
    while datetime.now(timezone.utc).replace(microsecond=0) <= now:
        time.sleep(0.05)
    res = _pull(runner, "--provider", "aws", "--region", "us-east-1")
    assert res.exit_code == 0, res.output
    second = read_store()
    assert second is not None
    assert int((second["market"] == "spot").sum()) == n_spot + 2
    # On-demand list prices are observations stamped at each pull: one new point per pool.
    assert int((second["market"] == "on-demand").sum()) == 2 * n_od
    new = second[(second["zone"] == "us-east-1b") & (second["instance_type"] == "g5.xlarge")]
    assert 0.4555 in new["price_per_hour"].tolist()
    assert json.loads(res.stdout)["rows"][0]["new"] == 2 + n_od


def test_throttling_is_retried(runner, emu: PricingEmulator) -> None:
    emu.data.throttle.update({"ec2": 1, "pricing": 1, "advisor": 1})
    res = _pull(runner, "--provider", "aws", "--region", "us-east-1")
    assert res.exit_code == 0, res.output
    assert emu.data.throttle == {"ec2": 0, "pricing": 0, "advisor": 0}
    assert read_store() is not None


def test_page_failing_mid_pull_leaves_store_as_it_was(runner, emu: PricingEmulator, monkeypatch) -> None:
    assert _pull(runner, "--provider", "aws", "--region", "us-east-1").exit_code == 0
    before = _store_bytes()
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    emu.data.page_size["ec2"] = 20  # several pages, the second always fails
    emu.data.fail_page["ec2"] = 1
    emu.data.add_spot_point("us-east-1", "us-east-1a", "p3.2xlarge", "0.9", datetime.now(timezone.utc))
    res = _pull(runner, "--provider", "aws", "--region", "us-east-1")
    assert res.exit_code == 1
    assert "InternalError" in res.output and "Traceback" not in res.output
    assert _store_bytes() == before


def test_rejected_aws_credentials_exit_4(runner, emu: PricingEmulator, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "rejected")
    res = _pull(runner, "--provider", "aws", "--region", "us-east-1")
    assert res.exit_code == 4
    assert "AuthFailure" in res.output and "aws configure" in res.output
    # One error line (progress lines may come before it), never a traceback.
    assert "Traceback" not in res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "AuthFailure" in errors[0], res.output


def test_missing_aws_credentials_exit_4(runner, emu: PricingEmulator, monkeypatch, tmp_path: Path) -> None:
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(k)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    res = _pull(runner, "--provider", "aws", "--region", "us-east-1")
    assert res.exit_code == 4
    assert "credentials not found" in res.output
    assert read_store() is None


# ------------------------------------------------------------------------------------------- GCP


def test_gcp_pull_prices_machine_types_from_sku_components(runner, emu: PricingEmulator) -> None:
    emu.data.throttle["gcp_billing"] = 1
    res = _pull(runner, "--provider", "gcp", "--region", "us-central1")
    assert res.exit_code == 0, res.output
    df = read_store()
    assert df is not None and set(df["provider"]) == {"gcp"} and set(df["region"]) == {"us-central1"}
    px = df.set_index(["instance_type", "market"])["price_per_hour"]
    # Cyclenerd's real 2026-07-30 prices: a2-highgpu-8g 29.38708 $/h on-demand; a3-highgpu-8g spot
    # 50.6095 $/h (ram + vCPU + GPU SKUs × the machine type's shape).
    assert px[("a2-highgpu-8g", "on-demand")] == pytest.approx(29.38708, abs=1e-5)
    assert px[("a2-highgpu-8g", "spot")] == pytest.approx(15.42416, abs=1e-5)
    assert px[("a3-highgpu-8g", "spot")] == pytest.approx(50.6095408, abs=1e-5)
    row = df[(df["instance_type"] == "a2-ultragpu-4g") & (df["market"] == "spot")].iloc[0]
    assert (row["gpu_model"], row["gpu_count"], row["vcpus"], row["memory_gib"]) == ("A100-80GB", 4.0, 48.0, 680.0)
    assert "n2-standard-4" not in set(df["instance_type"])
    assert emu.data.count("gcp_billing") > 2  # paged (and one throttled request retried)


def test_gcp_failing_page_leaves_store_and_exits_1(runner, emu: PricingEmulator, monkeypatch) -> None:
    monkeypatch.setenv("SPOTPLAN_RETRY_ATTEMPTS", "2")
    emu.data.fail_page["gcp_billing"] = 3
    res = _pull(runner, "--provider", "gcp")
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "GCP Cloud Billing list_skus failed" in res.output
    assert read_store() is None


# ----------------------------------------------------------------------------------------- Azure


def test_azure_pull_retail_pages_and_resource_graph(runner, emu: PricingEmulator, shared_data: Path) -> None:
    emu.data.page_size["azure"] = 10
    emu.data.throttle["azure"] = 1
    res = _pull(runner, "--provider", "azure", "--region", "eastus")
    assert res.exit_code == 0, res.output
    df = read_store()
    assert df is not None
    catalog = pd.read_csv(shared_data / "skypilot-catalog/catalogs/v6/azure/vms_gpu_subset.csv")
    real = catalog[(catalog["InstanceType"] == "Standard_NC24ads_A100_v4") & (catalog["Region"] == "eastus")].iloc[0]
    pool = df[df["instance_type"] == "Standard_NC24ads_A100_v4"]
    retail = pool[pool["source"] == "azure retail prices"].set_index("market")["price_per_hour"]
    assert retail["on-demand"] == pytest.approx(real["Price"])  # not the Windows / dev-test decoys
    assert retail["spot"] == pytest.approx(real["SpotPrice"])  # not the Low Priority meter
    assert set(pool["gpu_model"]) == {"A100-80GB"}
    # Resource Graph: the eviction bucket becomes the band, the spot history adds older points.
    spot = pool[pool["market"] == "spot"]
    assert spot["interruption_band"].iloc[0] in ("<5%", "5-10%", "10-15%", "15-20%", ">20%")
    assert len(spot) == 3 + 1  # 3 history points (days 2, 20, 60 ago) + the retail quote
    assert emu.data.count("azure") >= 4  # followed NextPageLink over several pages (+1 throttled)
    # H100 v5 rows carry SpotPrice == Price in the source, so no spot price comes out of them.
    h100 = df[df["instance_type"] == "Standard_NC40ads_H100_v5"]
    assert set(h100["market"]) == {"on-demand"}


def test_azure_rejected_token_exit_4_and_store_untouched(runner, emu: PricingEmulator, monkeypatch) -> None:
    monkeypatch.setenv("SPOTPLAN_AZURE_TOKEN", "wrong")
    res = _pull(runner, "--provider", "azure", "--region", "eastus")
    assert res.exit_code == 4
    assert "Azure" in res.output and "az login" in res.output
    assert read_store() is None


# ------------------------------------------------------------------------------- all + analyze


def test_pull_all_then_analyze_prices_pool_by_time_weighted_mean(runner, emu: PricingEmulator, tmp_path: Path) -> None:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    # A moving pool: the capture's p3.2xlarge us-east-1b price, then two recent changes.
    emu.data.add_spot_point("us-east-1", "us-east-1b", "p3.2xlarge", "0.500000", now - timedelta(minutes=50))
    emu.data.add_spot_point("us-east-1", "us-east-1b", "p3.2xlarge", "0.700000", now - timedelta(minutes=20))
    res = _pull(runner, "--provider", "all", "--region", "us-east-1", "--region", "us-central1",
                "--region", "eastus")
    assert res.exit_code == 0, res.output
    assert {r["provider"]: r["new"] > 0 for r in json.loads(res.stdout)["rows"]} == {
        "aws": True, "gcp": True, "azure": True}
    df = read_store()
    assert df is not None and set(df["provider"]) == {"aws", "gcp", "azure"}

    inv = tmp_path / "inv.yaml"
    inv.write_text(
        "workloads:\n  - id: t1\n    kind: training\n    provider: aws\n    region: us-east-1\n"
        "    instance_type: p3.2xlarge\n    count: 1\n    market: on-demand\n    remaining_hours: 24\n"
        "    checkpoint: {enabled: true, interval_minutes: 30, save_seconds: 60, restore_seconds: 120,"
        " storage: 's3://b/x'}\n    handles_preemption: true\n"
    )
    at = now + timedelta(seconds=5)
    res = runner.invoke(app, ["analyze", str(inv), "--window", "12h", "--now", at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                              "-o", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    w = out["workloads"][0]
    offers = [o for o in [w["best"], *w["alternatives"]] if o and o["zone"] == "us-east-1b"]
    assert offers, w
    # Hand-rolled time-weighted mean of the stored us-east-1b history over (at − 12h, at].
    hist = df[(df["zone"] == "us-east-1b") & (df["instance_type"] == "p3.2xlarge") & (df["market"] == "spot")]
    pts = sorted((pd.Timestamp(t).to_pydatetime(), p) for t, p in zip(hist["observed_at"], hist["price_per_hour"]))
    start = at - timedelta(hours=12)
    total = weight = 0.0
    for i, (t, p) in enumerate(pts):
        seg_start = max(t, start)
        seg_end = pts[i + 1][0] if i + 1 < len(pts) else at
        if seg_end > seg_start:
            total += p * (seg_end - seg_start).total_seconds()
            weight += (seg_end - seg_start).total_seconds()
    expected = total / weight
    assert offers[0]["price_per_hour"] == pytest.approx(expected, rel=1e-9)
    assert expected != pytest.approx(0.7) and expected < 0.918  # a mean, not the latest quote
    assert "local price store" in out["prices"]["source"]


def test_missing_google_credentials_exit_4(runner, emu: PricingEmulator, monkeypatch, tmp_path: Path) -> None:
    # Without a local endpoint spotplan uses Google's ADC; a credentials file that isn't there fails
    # before anything is sent (and never probes the metadata server).
    monkeypatch.delenv("SPOTPLAN_GCP_BILLING_ENDPOINT")
    monkeypatch.delenv("SPOTPLAN_GCP_COMPUTE_ENDPOINT")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    res = _pull(runner, "--provider", "gcp")
    assert res.exit_code == 4
    assert res.output.startswith("error: Google credentials not found") and "gcloud auth" in res.output


def test_unknown_region_is_exit_2(runner, emu: PricingEmulator) -> None:
    res = _pull(runner, "--provider", "all", "--region", "Mars-1")
    assert res.exit_code == 2 and "Mars-1" in res.output


def test_aws_every_region_one_gpu(runner, emu: PricingEmulator) -> None:
    res = _pull(runner, "--provider", "aws", "--gpu", "V100")
    assert res.exit_code == 0, res.output
    df = read_store()
    assert df is not None
    # A bare family takes every variant: V100 (p3) and V100-32GB (p3dn), nothing else.
    assert set(df["gpu_model"]) == {"V100", "V100-32GB"}
    assert {t.split(".")[0] for t in df["instance_type"]} == {"p3", "p3dn"}
    spot_regions = set(df.loc[df["market"] == "spot", "region"])
    want = {r["region"] for r in emu.data.spot
            if r["type"].startswith(("p3.", "p3dn.")) and r["product"] == "Linux/UNIX"}
    assert spot_regions == want and len(want) >= 5  # every region DescribeRegions listed, concurrently


def test_azure_without_subscription_keeps_retail_prices(runner, emu: PricingEmulator, monkeypatch) -> None:
    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID")
    res = _pull(runner, "--provider", "azure", "--region", "westus2")
    assert res.exit_code == 0, res.output
    assert "AZURE_SUBSCRIPTION_ID not set" in res.output
    df = read_store()
    assert df is not None and set(df["source"]) == {"azure retail prices"}
    assert set(df["interruption_band"]) == {""}
    assert emu.data.count("arg") == 0


def test_missing_sdk_extra_gives_install_hint(runner, monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec

    def find_spec(name: str, *a, **k):  # type: ignore[no-untyped-def]
        return None if name == "boto3" else real(name, *a, **k)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    res = _pull(runner, "--provider", "aws", "--region", "us-east-1")
    assert res.exit_code == 2
    assert res.output.strip() == "error: boto3 is not installed (pip install 'spotplan[aws]')"


# ------------------------------------------------------------------------- bad upstream data


def test_pull_all_every_region_fills_store_for_three_clouds(runner, emu: PricingEmulator) -> None:
    # The Done criterion, without --region: every region each emulated cloud lists.
    res = _pull(runner, "--provider", "all", "--days", "30")
    assert res.exit_code == 0, res.output
    assert {r["provider"]: r["new"] > 0 for r in json.loads(res.stdout)["rows"]} == {
        "aws": True, "gcp": True, "azure": True}
    df = read_store()
    assert df is not None and set(df["provider"]) == {"aws", "gcp", "azure"}
    assert (df["price_per_hour"] >= 0).all()
    for provider in ("aws", "gcp", "azure"):
        assert df.loc[df["provider"] == provider, "region"].nunique() >= 5, provider
    # The pool the first emulator priced below zero (its GPU SKU came from g2-standard-12's total).
    l4 = df[(df["region"] == "europe-north1") & (df["instance_type"] == "g2-standard-4") & (df["market"] == "spot")]
    assert l4["price_per_hour"].tolist() == [pytest.approx(0.07724, abs=1e-6)]  # Cyclenerd's real $/h


def test_pull_leaves_out_pools_with_bad_upstream_prices_and_keeps_the_rest(runner, emu: PricingEmulator) -> None:
    # A catalog SKU below zero: every g2 spot price of us-east5 is built from it, so none is a price.
    emu.data.set_gcp_sku_price("Nvidia L4 GPU", "Preemptible", "us-east5", -0.06)
    # And an Azure retail meter priced below zero.
    item = next(i for i in emu.data.azure_items if i["armSkuName"] == "Standard_NC24ads_A100_v4"
                and i["armRegionName"] == "eastus" and i["skuName"].endswith(" Spot"))
    item["retailPrice"] = item["unitPrice"] = -1.5
    res = _pull(runner, "--provider", "all", "--region", "us-east-1", "--region", "us-east5", "--region", "eastus")
    assert res.exit_code == 0, res.output
    df = read_store()
    assert df is not None and set(df["provider"]) == {"aws", "gcp", "azure"}
    east5 = df[(df["region"] == "us-east5") & df["instance_type"].str.startswith("g2-")]
    assert set(east5["market"]) == {"on-demand"}  # the spot pools are left out, on-demand kept
    assert "note: gcp us-east5 g2-standard-4 spot left out: the catalog prices its SKU " \
           "'Spot Preemptible Nvidia L4 GPU running in us-east5' at -0.06 $/h (bad upstream data)" in res.stderr
    a100 = df[(df["instance_type"] == "Standard_NC24ads_A100_v4") & (df["region"] == "eastus")]
    assert set(a100["market"]) == {"on-demand"}  # the whole spot pool goes, Resource Graph points too
    assert "note: azure eastus Standard_NC24ads_A100_v4 spot left out: the cloud's data prices it at -1.5 $/h" \
        in res.stderr
    assert (df["price_per_hour"] >= 0).all()


def test_bad_pulled_row_is_exit_1_naming_the_pool(runner, emu: PricingEmulator) -> None:
    # A retail meter without a region: the cloud's data is wrong (exit 1, not a usage error), and the
    # error names the pool, not a row of a frame the user never saw.
    item = next(i for i in emu.data.azure_items if i["armSkuName"] == "Standard_NC24ads_A100_v4"
                and not i["skuName"].endswith((" Spot", " Low Priority")) and i["type"] == "Consumption"
                and not i["productName"].endswith("Windows"))
    emu.data.azure_items.append({**item, "armRegionName": ""})
    res = _pull(runner, "--provider", "azure")
    assert res.exit_code == 1, res.output
    assert res.output.strip().splitlines()[-1] == (
        "error: azure returned bad data for azure Standard_NC24ads_A100_v4 on-demand: region is '', "
        "expected a non-empty region")
    assert read_store() is None
