"""Importers on the real files of ../shared/data (figures spot-checked against the source rows) and
on small fixtures written here: detection, GPU vocabulary, known source errors, malformed rows."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from spotplan.errors import InputError
from spotplan.pricing.importers import detect_format, import_file
from spotplan.pricing.sources.aws import gpu_shape

pytestmark = pytest.mark.timeout(60)


def _one(df: pd.DataFrame, **eq: object) -> pd.Series:
    sel = df
    for k, v in eq.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, sel
    return sel.iloc[0]


def test_aws_price_history_capture(shared_data: Path) -> None:
    res = import_file(shared_data / "ericpauley-aws-spot-price-history/prices/2022/05_gpu_subset.tsv")
    assert res.format == "aws-spot-history"
    df = res.rows
    # Source line 1: euw3-az2 g4dn.4xlarge Linux/UNIX 0.466400 2022-05-31T18:20:41+00:00
    r = _one(df, zone="euw3-az2", instance_type="g4dn.4xlarge", observed_at="2022-05-31T18:20:41Z")
    assert (r["region"], r["price_per_hour"], r["gpu_model"], r["gpu_count"]) == ("eu-west-3", 0.4664, "T4", 1.0)
    assert r["interruption_band"] == ""  # the capture has no bands
    assert set(df["market"]) == {"spot"}
    # Only Linux/UNIX rows: the RHEL and SUSE quotes of the same line are not imported.
    same = df[(df["zone"] == "euw3-az2") & (df["instance_type"] == "g4dn.4xlarge")]
    assert 0.5964 not in same["price_per_hour"].tolist()
    assert len(df) == 510


def test_aws_cli_json_output(tmp_path: Path) -> None:
    doc = {"SpotPriceHistory": [
        {"AvailabilityZone": "us-east-1a", "InstanceType": "p4d.24xlarge", "ProductDescription": "Linux/UNIX",
         "SpotPrice": "9.832100", "Timestamp": "2024-05-01T12:00:00+00:00"},
        {"AvailabilityZone": "us-west-2-lax-1a", "InstanceType": "g5.xlarge", "ProductDescription": "Linux/UNIX",
         "SpotPrice": "0.4", "Timestamp": "2024-05-01T12:00:00.000Z"},
        {"AvailabilityZone": "us-east-1a", "InstanceType": "p4d.24xlarge", "ProductDescription": "Windows",
         "SpotPrice": "12.0", "Timestamp": "2024-05-01T12:00:00+00:00"},
        {"AvailabilityZone": "us-east-1b", "InstanceType": "m5.large", "ProductDescription": "Linux/UNIX",
         "SpotPrice": "0.04", "Timestamp": "2024-05-01T12:00:00+00:00"},
    ], "NextToken": ""}
    f = tmp_path / "history.json"
    f.write_text(json.dumps(doc))
    res = import_file(f)
    assert res.format == "aws-spot-history"
    df = res.rows.set_index("instance_type")
    assert df.loc["p4d.24xlarge", "price_per_hour"] == 9.8321
    assert (df.loc["p4d.24xlarge", "gpu_model"], df.loc["p4d.24xlarge", "gpu_count"]) == ("A100-40GB", 8.0)
    assert df.loc["g5.xlarge", "region"] == "us-west-2"
    assert "m5.large" not in df.index  # not a GPU type


def test_ec2instances_json_and_csv(shared_data: Path) -> None:
    for name in ("gpu_instances_raw.json", "aws_gpu_prices_by_region.csv"):
        res = import_file(shared_data / "ec2instances-info-gpu" / name)
        assert res.format == "ec2instances"
        df = res.rows
        # p5.48xlarge,...,8,640,192,2048,x86_64,us-east-1,55.04,13.2182,28.106467,52.0766,5-10%,49
        od = _one(df, instance_type="p5.48xlarge", region="us-east-1", market="on-demand")
        spot = _one(df, instance_type="p5.48xlarge", region="us-east-1", market="spot")
        assert (od["price_per_hour"], spot["price_per_hour"]) == (55.04, pytest.approx(28.106467))
        assert (spot["gpu_model"], spot["gpu_count"], spot["vcpus"], spot["memory_gib"]) == ("H100", 8.0, 192.0, 2048.0)
        assert spot["interruption_band"] == "5-10%"
        # The source calls p4de "NVIDIA A100"; it carries the 80 GB part.
        p4de = _one(df, instance_type="p4de.24xlarge", region="us-east-1", market="on-demand")
        assert p4de["gpu_model"] == "A100-80GB"
        g5 = _one(df, instance_type="g5.xlarge", region="us-east-1", market="spot")
        assert g5["price_per_hour"] == pytest.approx(0.39388)
        # 255 rows of the CSV have no spot price: they give on-demand rows only.
        assert (df["market"] == "on-demand").sum() - (df["market"] == "spot").sum() == 255


def test_spot_advisor_needs_on_demand_reference(shared_data: Path) -> None:
    ec2 = import_file(shared_data / "ec2instances-info-gpu/aws_gpu_prices_by_region.csv").rows
    reference = ec2[ec2["market"] == "on-demand"]  # no observed spot prices: every pool is derived
    for name in ("spot-advisor-data.json", "spot_advisor_gpu.csv"):
        res = import_file(shared_data / "aws-spot-advisor/2025-06-28" / name, reference=reference)
        assert res.format == "spot-advisor"
        # us-east-1 Linux p5.48xlarge: s=52, r=4 (">20%"); on-demand 55.04 → spot 55.04 × 0.48.
        r = _one(res.rows, instance_type="p5.48xlarge", region="us-east-1")
        assert r["price_per_hour"] == pytest.approx(55.04 * 0.48)
        assert (r["interruption_band"], r["gpu_model"], r["gpu_count"]) == (">20%", "H100", 8.0)
        assert r["source"].startswith("aws spot advisor, derived")
        g5 = _one(res.rows, instance_type="g5.xlarge", region="us-east-1")
        assert g5["price_per_hour"] == pytest.approx(1.006 * 0.41)
    # With no on-demand price known for a pool, it is skipped and said so.
    small = reference[reference["instance_type"] == "p5.48xlarge"]
    res = import_file(shared_data / "aws-spot-advisor/2025-06-28/spot-advisor-data.json", reference=small,
                      observed_at="2025-06-28")
    assert set(res.rows["instance_type"]) == {"p5.48xlarge"}
    assert res.skipped["aws"]["no on-demand price"] > 0
    assert any("skipped: no on-demand price" in n for n in res.notes)


def test_spot_advisor_never_replaces_observed_spot_prices(shared_data: Path) -> None:
    ec2 = import_file(shared_data / "ec2instances-info-gpu/aws_gpu_prices_by_region.csv").rows
    res = import_file(shared_data / "aws-spot-advisor/2025-06-28/spot-advisor-data.json", reference=ec2,
                      observed_at="2025-06-28")
    derived = set(zip(res.rows["region"], res.rows["instance_type"]))
    observed = set(zip(*[ec2.loc[ec2["market"] == "spot", c] for c in ("region", "instance_type")]))
    # p5.48xlarge us-east-1 has a real spot_avg (28.106467): no derived 26.42 next to it.
    assert ("us-east-1", "p5.48xlarge") in observed and ("us-east-1", "p5.48xlarge") not in derived
    assert not derived & observed
    both = {(r, t) for r, t in observed & _advisor_pools(shared_data) if gpu_shape(t)[0]}
    assert res.skipped["aws"]["observed spot price kept"] == len(both) > 100
    # Pools with an on-demand price but no spot quote in ec2instances still get a derived one.
    assert len(res.rows) > 0 and set(res.rows["market"]) == {"spot"}
    assert res.rows["source"].str.startswith("aws spot advisor, derived").all()


def _advisor_pools(shared_data: Path) -> set[tuple[str, str]]:
    feed = json.loads((shared_data / "aws-spot-advisor/2025-06-28/spot-advisor-data.json").read_text())
    return {(r, t) for r, by_os in feed["spot_advisor"].items() for t in by_os.get("Linux", {})}


def test_spot_advisor_drops_spot_above_on_demand(shared_data: Path) -> None:
    ec2 = import_file(shared_data / "ec2instances-info-gpu/aws_gpu_prices_by_region.csv").rows
    reference = ec2[ec2["market"] == "on-demand"]
    res = import_file(shared_data / "aws-spot-advisor/2025-06-28/spot-advisor-data.json", reference=reference,
                      observed_at="2025-06-28")
    # The feed says s=-62 for p5.48xlarge in ca-central-1: 63.296 × 1.62 = 102.54, above on-demand.
    assert res.rows[(res.rows["region"] == "ca-central-1") & (res.rows["instance_type"] == "p5.48xlarge")].empty
    assert res.skipped["aws"]["spot above on-demand"] == 1
    assert any("1 GPU pools skipped: the advisor's savings are negative" in n for n in res.notes)
    od = reference.set_index(["region", "instance_type"])["price_per_hour"]
    ratio = [p / od[(r, t)] for r, t, p in zip(res.rows["region"], res.rows["instance_type"],
                                                res.rows["price_per_hour"])]
    assert max(ratio) <= 1.0


def test_undated_formats_say_they_use_the_mtime(shared_data: Path, tmp_path: Path) -> None:
    import os

    src = shared_data / "ec2instances-info-gpu/aws_gpu_prices_by_region.csv"
    copy = tmp_path / "ec2.csv"
    copy.write_bytes(src.read_bytes())
    os.utime(copy, (1_700_000_000, 1_700_000_000))  # 2023-11-14T22:13:20Z
    res = import_file(copy)
    assert set(res.rows["observed_at"]) == {"2023-11-14T22:13:20Z"}
    assert res.notes[0] == (f"{copy} carries no date; using its modification time 2023-11-14T22:13:20Z; "
                            "pass --observed-at with the date the data was published")
    dated = import_file(copy, observed_at="2025-11-30")
    assert set(dated.rows["observed_at"]) == {"2025-11-30"}
    assert not any("carries no date" in n for n in dated.notes)
    timed = import_file(copy, observed_at="2025-11-30T12:00:00+02:00")
    assert set(timed.rows["observed_at"]) == {"2025-11-30T10:00:00Z"}
    with pytest.raises(InputError, match="--observed-at is 'last tuesday'"):
        import_file(copy, observed_at="last tuesday")


def test_dated_formats_keep_their_own_time_and_say_nothing(shared_data: Path) -> None:
    res = import_file(shared_data / "ericpauley-aws-spot-price-history/prices/2022/05_gpu_subset.tsv")
    assert not any("carries no date" in n for n in res.notes)
    assert res.rows["observed_at"].str.startswith("2022-05-31T").all()
    # --observed-at is for undated rows: it never rewrites a quote's own timestamp.
    forced = import_file(shared_data / "ericpauley-aws-spot-price-history/prices/2022/05_gpu_subset.tsv",
                         observed_at="2025-01-01")
    assert forced.rows["observed_at"].str.startswith("2022-05-31T").all()


def test_skypilot_azure_catalog_with_known_errors_corrected(shared_data: Path) -> None:
    res = import_file(shared_data / "skypilot-catalog/catalogs/v6/azure/vms_gpu_subset.csv",
                      observed_at="2026-11-01")
    assert res.format == "skypilot"
    df = res.rows
    # Standard_NC24ads_A100_v4,A100-80GB,1,24.0,220,A100-80GB,3.673,0.444433,eastus,V2
    spot = _one(df, instance_type="Standard_NC24ads_A100_v4", region="eastus", market="spot")
    assert (spot["price_per_hour"], spot["gpu_model"], spot["gpu_count"]) == (0.444433, "A100-80GB", 1.0)
    assert spot["observed_at"] == "2026-11-01"
    # Known source errors: ND96isr_H100_v5 "12 GPUs" (it has 8) and SpotPrice == Price; *_Promo
    # sizes have no spot price.
    h100 = df[(df["instance_type"] == "Standard_ND96isr_H100_v5") & (df["region"] == "eastus")]
    assert h100["market"].tolist() == ["on-demand"] and h100["gpu_count"].tolist() == [8.0]
    assert set(df[df["instance_type"].str.endswith("_Promo")]["market"]) == {"on-demand"}
    assert set(df["provider"]) == {"azure"}


def test_skypilot_provider_follows_the_instance_type_shape(tmp_path: Path) -> None:
    # AWS types are family.size, even with a dash in the family (p6-b200); GCP machine types have no dot.
    f = tmp_path / "vms.csv"
    f.write_text(
        "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,AvailabilityZone\n"
        "p6-b200.48xlarge,B200,8,192,2048,,113.93,60.5,us-east-1,us-east-1a\n"
        "a3-highgpu-8g,H100,8,208,1872,,88.49,50.61,us-central1,us-central1-a\n"
        "Standard_NC24ads_A100_v4,A100-80GB,1,24,220,,3.673,0.444433,eastus,\n"
    )
    df = import_file(f, "skypilot", observed_at="2026-11-01").rows
    assert dict(zip(df["instance_type"], df["provider"])) == {
        "p6-b200.48xlarge": "aws", "a3-highgpu-8g": "gcp", "Standard_NC24ads_A100_v4": "azure"}


def test_cyclenerd_gcp_history(shared_data: Path) -> None:
    res = import_file(shared_data / "cyclenerd-gcp-pricing/gcp_gpu_price_changes.csv")
    assert res.format == "gcp-pricing"
    df = res.rows
    a3 = df[(df["instance_type"] == "a3-highgpu-8g") & (df["region"] == "us-central1") & (df["market"] == "spot")]
    by_time = dict(zip(a3["observed_at"], a3["price_per_hour"]))
    # README: a3-highgpu-8g us-central1 spot 50.61 on 2026-07-22 (a +02:00 time in the source).
    assert by_time["2026-07-22T14:23:37Z"] == pytest.approx(50.6095408219178)
    assert set(a3["gpu_model"]) == {"H100"} and set(a3["gpu_count"]) == {8.0}
    # Rows of 2023-05-09 list a2-ultragpu-2g without its GPU, and 35 rows call its GPU "a100"; the
    # family decides (ultragpu = A100 80GB).
    u2 = df[(df["instance_type"] == "a2-ultragpu-2g")]
    assert set(u2["gpu_model"]) == {"A100-80GB"} and set(u2["gpu_count"]) == {2.0}


def test_azure_retail_pages(tmp_path: Path) -> None:
    base = {"currencyCode": "USD", "armRegionName": "eastus", "serviceName": "Virtual Machines", "type": "Consumption",
            "unitOfMeasure": "1 Hour", "effectiveStartDate": "2024-01-01T00:00:00Z",
            "armSkuName": "Standard_ND96isr_H100_v5", "productName": "Virtual Machines NDsr H100 v5 Series"}
    pages = [
        {"Items": [{**base, "retailPrice": 98.32, "skuName": "ND96isr H100 v5"},
                   {**base, "retailPrice": 16.0, "skuName": "ND96isr H100 v5 Spot"}],
         "NextPageLink": "https://prices.azure.com/api/retail/prices?$skip=1000"},
        {"Items": [{**base, "retailPrice": 20.0, "skuName": "ND96isr H100 v5 Low Priority"},
                   {**base, "retailPrice": 120.0, "skuName": "ND96isr H100 v5",
                    "productName": "Virtual Machines NDsr H100 v5 Series Windows"}], "NextPageLink": None},
    ]
    f = tmp_path / "retail.json"
    f.write_text(json.dumps(pages))
    res = import_file(f)
    assert res.format == "azure-retail"
    px = res.rows.set_index("market")["price_per_hour"].to_dict()
    assert px == {"on-demand": 98.32, "spot": 16.0}
    assert set(res.rows["gpu_count"]) == {8.0}


def test_price_table_roundtrip(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_text("provider,region,zone,instance_type,gpu_model,gpu_count,market,price_per_hour,observed_at\n"
                 "aws,us-east-1,,p3.2xlarge,NVIDIA Tesla V100,1,spot,0.9,2026-11-01\n")
    res = import_file(f)
    assert res.format == "price-table" and res.rows.iloc[0]["gpu_model"] == "V100"


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.tsv", "use1-az1\tp3.2xlarge\tLinux/UNIX\t0.9\t2022-05-31T18:20:41+00:00\n"
                    "use1-az1\tp3.2xlarge\tLinux/UNIX\tcheap\t2022-05-31T18:21:41+00:00\n",
         "line 2: spot_price is 'cheap'"),
        ("bad.csv", "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,Price,SpotPrice,Region\n"
                    "Standard_NC6s_v3,V100,1,6,112,3.06,0.3,eastus\nStandard_NC6s_v3,V100,1,6,112,abc,,eastus\n",
         "row 3: Price is 'abc'"),
        ("bad.json", json.dumps({"SpotPriceHistory": [{"InstanceType": "p3.2xlarge", "AvailabilityZone": "us-east-1a",
                                                       "SpotPrice": "0.9", "Timestamp": "yesterday"}]}),
         "SpotPriceHistory item 1: timestamp is 'yesterday'"),
        ("what.csv", "a,b,c\n1,2,3\n", "cannot tell the format"),
        ("broken.json", '{"Items": [', "invalid JSON"),
    ],
)
def test_malformed_files_name_the_row(tmp_path: Path, name: str, text: str, message: str) -> None:
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(InputError) as err:
        import_file(f)
    assert message in str(err.value) and str(f) in str(err.value)


def test_detect_format_shapes() -> None:
    assert detect_format('[{"instance_type": "p3.2xlarge", "pricing": {}}]') == "ec2instances"
    assert detect_format('{"spot_advisor": {}, "ranges": []}') == "spot-advisor"
    assert detect_format('{"Items": [], "NextPageLink": null}') == "azure-retail"
    assert detect_format("snapshot_time,commit,machine_type,gpu_name,gpu_count,vcpus,ram_gib,region,hour,hour_spot\n") \
        == "gcp-pricing"


def test_cyclenerd_g4_is_the_rtx_pro_6000(shared_data: Path) -> None:
    # 2026-07-30,...,g4-standard-12,rtx6000,0.25,12,45,asia-east1,1.46247725,0.585415
    res = import_file(shared_data / "cyclenerd-gcp-pricing/gcp_gpu_latest.csv")
    g4 = res.rows[res.rows["instance_type"].str.startswith("g4-")]
    assert set(g4["gpu_model"]) == {"RTX-PRO-6000"}
    spot = _one(g4, instance_type="g4-standard-12", region="asia-east1", market="spot")
    assert spot["price_per_hour"] == pytest.approx(0.585415)
    assert not any("carries no date" in n for n in res.notes)  # snapshot_time dates every row


def test_spot_advisor_band_goes_on_observed_pools_without_one(shared_data: Path) -> None:
    ec2 = import_file(shared_data / "ec2instances-info-gpu/aws_gpu_prices_by_region.csv", observed_at="2025-11-30").rows
    tsv = import_file(shared_data / "ericpauley-aws-spot-price-history/prices/2022/05_gpu_subset.tsv").rows
    res = import_file(shared_data / "aws-spot-advisor/2025-06-28/spot-advisor-data.json",
                      reference=pd.concat([ec2, tsv], ignore_index=True), observed_at="2025-06-28")
    banded = res.rows[~res.rows["source"].str.startswith("aws spot advisor")]
    assert set(banded["source"]) == {"aws describe-spot-price-history; band: aws spot advisor as of 2025-06-28"}
    # One row per observed pool without a band: a copy of its newest quote, with the feed's band.
    newest = tsv.sort_values("observed_at").drop_duplicates(["region", "zone", "instance_type"], keep="last")
    key = ["region", "zone", "instance_type", "observed_at", "price_per_hour"]
    assert set(map(tuple, banded[key].to_numpy())) <= set(map(tuple, newest[key].to_numpy()))
    assert banded.duplicated(["region", "zone", "instance_type"]).sum() == 0
    r = _one(banded, zone="use1-az1", instance_type="g4dn.2xlarge")
    assert (r["interruption_band"], r["price_per_hour"], r["observed_at"]) == (">20%", 0.2256, "2022-05-31T21:38:27Z")
    # ec2instances.info's own band (pct_interrupt 5-10% for p5.48xlarge us-east-1) is kept, not the feed's.
    assert _one(ec2, instance_type="p5.48xlarge", region="us-east-1", market="spot")["interruption_band"] == "5-10%"
    assert banded[banded["source"].str.startswith("ec2instances")].empty
    assert any("take the advisor's interruption band; their prices and times stay as observed" in n for n in res.notes)
