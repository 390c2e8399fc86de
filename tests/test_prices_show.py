"""`spotplan prices show`: filters, the four renderings, `--prices` replacing the snapshot, the
side-by-side join (newest observation, zonal spot next to regional on-demand) and bad input."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from spotplan.cli.main import app
from spotplan.pricing.compare import COMPARE_COLUMNS
from spotplan.pricing.snapshot import load_snapshot

HEADER = ",".join(
    ["provider", "region", "zone", "instance_type", "gpu_model", "gpu_count", "vcpus", "memory_gib",
     "market", "price_per_hour", "interruption_band", "observed_at", "source"]
)
# A small hand-written price table: one pool with a history, one zonal spot market, one on-demand only.
CUSTOM = "\n".join([
    HEADER,
    "aws,us-east-1,,p4d.24xlarge,A100-40GB,8,96,1152,on-demand,20.0,,2026-01-01,test-od",
    "aws,us-east-1,,p4d.24xlarge,A100-40GB,8,96,1152,spot,9.0,>20%,2026-01-01,test-old",
    "aws,us-east-1,,p4d.24xlarge,A100-40GB,8,96,1152,spot,5.0,<5%,2026-02-01,test-new",
    "aws,us-east-1,,p3.2xlarge,V100,1,8,61,on-demand,3.0,,2026-01-01,test-od",
    "aws,us-east-1,us-east-1a,p3.2xlarge,V100,1,8,61,spot,0.9,10-15%,2026-01-02,test-zone",
    "aws,us-east-1,us-east-1b,p3.2xlarge,,,,,spot,1.2,,2026-01-03,test-zone",  # no GPU columns
    "gcp,us-central1,,a3-highgpu-8g,nvidia-h100-80gb,8,208,1872,on-demand,88.49,,2026-07-30,test-gcp",
])


def _invoke(runner, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["prices", "show", *args])


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def custom(tmp_path: Path) -> Path:
    path = tmp_path / "custom.csv"
    path.write_text(CUSTOM + "\n")
    return path


def test_default_table_over_the_snapshot(runner) -> None:  # type: ignore[no-untyped-def]
    result = _invoke(runner)
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())  # the footnote wraps at the table's width
    n_pools = out.split("Spot and on-demand prices (", 1)[1].split(" pools)", 1)[0]
    assert int(n_pools) > 300
    for text in ("On-demand $/h", "Spot $/h", "Savings", "Band", "p5.48xlarge", "a3-highgpu-8g",
                 "Standard_ND96isr_H100_v5", "bundled snapshot", "ec2instances.info, as of 2025-11-30",
                 "cyclenerd-gcp-pricing, as of 2026-07-30"):
        assert text in out, text
    assert "\x1b[" not in result.stdout  # NO_COLOR


def test_filters_are_case_insensitive_and_take_provider_spellings(runner) -> None:  # type: ignore[no-untyped-def]
    result = _invoke(runner, "--gpu", "NVIDIA-TESLA-A100", "--provider", "GCP", "--region", "US-Central1",
                     "-o", "csv")
    assert result.exit_code == 0, result.output
    rows = _csv_rows(result.stdout)
    assert rows
    assert {r["gpu_model"] for r in rows} == {"A100-40GB"}
    assert {r["provider"] for r in rows} == {"gcp"}
    assert {r["region"] for r in rows} == {"us-central1"}
    assert {r["instance_type"] for r in rows} == {
        "a2-highgpu-1g", "a2-highgpu-2g", "a2-highgpu-4g", "a2-highgpu-8g", "a2-megagpu-16g"}


def test_market_filter_keeps_pools_priced_on_that_market(runner) -> None:  # type: ignore[no-untyped-def]
    spot = _csv_rows(_invoke(runner, "--gpu", "h100", "--provider", "azure", "--market", "spot",
                             "-o", "csv").stdout)
    od = _csv_rows(_invoke(runner, "--gpu", "h100", "--provider", "azure", "--market", "on-demand",
                           "-o", "csv").stdout)
    # ND and NC H100 v5 have no trustworthy spot price in the snapshot (the source copies on-demand):
    # on-demand only. NCC H100 v5 is the one H100 v5 with a real spot price.
    assert [r["instance_type"] for r in spot] == ["Standard_NCC40ads_H100_v5"]
    copied = [r for r in od if r["instance_type"] != "Standard_NCC40ads_H100_v5"]
    assert copied and all(r["spot_per_hour"] == "" and r["savings_pct"] == "" for r in copied)
    assert {r["instance_type"] for r in od} >= {"Standard_ND96isr_H100_v5", "Standard_NC40ads_H100_v5"}
    aws_spot = _csv_rows(_invoke(runner, "--provider", "aws", "--market", "SPOT", "-o", "csv").stdout)
    assert aws_spot and all(r["spot_per_hour"] for r in aws_spot)
    assert "p5.4xlarge" not in {r["instance_type"] for r in aws_spot}  # on-demand only in the source


def test_csv_savings_and_columns_match_the_snapshot(runner) -> None:  # type: ignore[no-untyped-def]
    result = _invoke(runner, "--provider", "aws", "--region", "us-east-1", "-o", "csv")
    assert result.exit_code == 0
    rows = _csv_rows(result.stdout)
    assert tuple(rows[0]) == COMPARE_COLUMNS
    snap = load_snapshot()
    snap = snap[(snap["provider"] == "aws") & (snap["region"] == "us-east-1")]
    assert len(rows) == snap["instance_type"].nunique()
    for r in rows:
        pool = snap[snap["instance_type"] == r["instance_type"]]
        od = pool[pool["market"] == "on-demand"]["price_per_hour"].item()
        assert float(r["on_demand_per_hour"]) == pytest.approx(od)
        if r["spot_per_hour"]:
            spot = pool[pool["market"] == "spot"]
            assert float(r["spot_per_hour"]) == pytest.approx(spot["price_per_hour"].item())
            assert r["interruption_band"] == spot["interruption_band"].item()
            expected = 100 * (1 - float(r["spot_per_hour"]) / od)
            assert float(r["savings_pct"]) == pytest.approx(expected, abs=0.006)
    p4de = next(r for r in rows if r["instance_type"] == "p4de.24xlarge")
    assert (p4de["gpu_model"], p4de["gpu_count"]) == ("A100-80GB", "8")


def test_json_document(runner) -> None:  # type: ignore[no-untyped-def]
    result = _invoke(runner, "--gpu", "L4", "--provider", "gcp", "-o", "json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["schema"] == "spotplan.prices/1"
    assert doc["prices"]["as_of"] == {"gcp": "2026-07-30"}
    assert doc["rows"] and all(set(r) == set(COMPARE_COLUMNS) for r in doc["rows"])
    g2 = next(
        r for r in doc["rows"] if r["instance_type"] == "g2-standard-4" and r["region"] == "us-central1"
    )
    assert g2["gpu_count"] == 1 and isinstance(g2["spot_per_hour"], float)
    assert g2["savings_pct"] == pytest.approx(100 * (1 - g2["spot_per_hour"] / g2["on_demand_per_hour"]))


def test_markdown_and_out_file(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "sub" / "prices.md"
    result = _invoke(runner, "--gpu", "A10G", "--region", "eu-west-1", "-o", "markdown", "--out", str(target))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    text = target.read_text()
    assert text.startswith("# Spot and on-demand prices\n")
    assert "| Provider | Region | Instance type | GPU |" in text
    assert "| aws | eu-west-1 | g5.xlarge | A10G | 1 |" in text
    assert "ec2instances.info, as of 2025-11-30" in text


def test_prices_replaces_the_snapshot(runner, custom: Path) -> None:  # type: ignore[no-untyped-def]
    result = _invoke(runner, "--prices", str(custom), "-o", "csv")
    assert result.exit_code == 0, result.output
    rows = {(r["instance_type"], r["zone"]): r for r in _csv_rows(result.stdout)}
    # Nothing of the bundled snapshot, only the given table's pools.
    assert set(rows) == {("p4d.24xlarge", ""), ("p3.2xlarge", "us-east-1a"), ("p3.2xlarge", "us-east-1b"),
                         ("a3-highgpu-8g", "")}
    p4d = rows[("p4d.24xlarge", "")]
    newest = (p4d["spot_per_hour"], p4d["interruption_band"], p4d["observed_at"])
    assert newest == ("5.0", "<5%", "2026-02-01")
    assert p4d["savings_pct"] == "75.0"
    # Zonal spot markets sit next to the region-wide on-demand price, which is not repeated alone.
    for zone, spot in (("us-east-1a", "0.9"), ("us-east-1b", "1.2")):
        row = rows[("p3.2xlarge", zone)]
        assert (row["on_demand_per_hour"], row["spot_per_hour"]) == ("3.0", spot)
    assert rows[("p3.2xlarge", "us-east-1b")]["gpu_model"] == "V100"  # from its on-demand row
    assert rows[("a3-highgpu-8g", "")]["gpu_model"] == "H100"
    assert rows[("a3-highgpu-8g", "")]["spot_per_hour"] == ""

    v100 = _csv_rows(_invoke(runner, "--prices", str(custom), "--gpu", "Tesla V100", "-o", "csv").stdout)
    assert [r["zone"] for r in v100] == ["us-east-1a", "us-east-1b"]

    table = _invoke(runner, "--prices", str(custom))
    assert "Zone" in table.stdout and "us-east-1a" in table.stdout
    assert f"Prices from {custom}" in table.stdout.replace("\n", "")


def test_prices_takes_a_folder_and_repeats(runner, custom: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "more"
    folder.mkdir()
    (folder / "azure.csv").write_text(
        HEADER + "\nazure,eastus,,Standard_NC4as_T4_v3,T4,1,4,28,spot,0.05,,2026-03-01,test-az\n"
    )
    result = _invoke(
        runner, "--prices", str(custom), "--prices", str(folder), "--provider", "azure", "-o", "json"
    )
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["rows"]
    assert (row["instance_type"], row["spot_per_hour"], row["on_demand_per_hour"]) == (
        "Standard_NC4as_T4_v3", 0.05, None)


def test_prices_reads_parquet(runner, custom: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    parquet = tmp_path / "custom.parquet"
    pd.read_csv(custom, dtype={"zone": str}).to_parquet(parquet)
    from_csv = _invoke(runner, "--prices", str(custom), "-o", "json")
    from_parquet = _invoke(runner, "--prices", str(parquet), "-o", "json")
    assert from_parquet.exit_code == 0, from_parquet.output
    assert json.loads(from_parquet.stdout)["rows"] == json.loads(from_csv.stdout)["rows"]


def test_no_match_is_a_message_and_exit_0(runner) -> None:  # type: ignore[no-untyped-def]
    result = _invoke(runner, "--gpu", "B200", "--provider", "azure")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "no prices match --gpu B200 --provider azure" in result.stderr
    as_json = _invoke(runner, "--gpu", "B200", "--provider", "azure", "-o", "json")
    assert json.loads(as_json.stdout)["rows"] == []
    as_csv = _invoke(runner, "--gpu", "nonexistent-gpu", "-o", "csv")
    assert as_csv.stdout.strip() == ",".join(COMPARE_COLUMNS)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--provider", "ibm"], "--provider is 'ibm'"),
        (["--market", "reserved"], "--market is 'reserved'"),
        (["--prices", "/nonexistent/prices.csv"], "no such file"),
        (["-o", "yaml"], "yaml"),
    ],
)
def test_bad_input_exits_2_with_one_line(runner, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    result = _invoke(runner, *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_bad_price_file_names_the_row(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "\naws,us-east-1,,p3.2xlarge,V100,1,8,61,reserved,3.0,,2026-01-01,x\n")
    result = _invoke(runner, "--prices", str(bad))
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "\n" not in line and str(bad) in line and "row 2" in line and "market" in line


@pytest.mark.parametrize(("price", "shown"), [("-1.0", "-1.0"), ("-0.25", "-0.25"), ("abc", "'abc'"), ("0", "0")])
def test_bad_price_shows_the_plain_value(runner, tmp_path: Path, price: str, shown: str) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + f"\naws,us-east-1,,p3.2xlarge,V100,1,8,61,spot,{price},,2026-01-01,x\n")
    result = _invoke(runner, "--prices", str(bad))
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: {bad}: row 2: price_per_hour is {shown}, expected a positive "
                                     "number (USD per instance-hour)")


@pytest.mark.timeout(60)
def test_help_imports_no_pandas() -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "spotplan", "prices", "show", "--help"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "--market" in proc.stdout
    imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line}
    assert not imported & {"pandas", "numpy", "boto3", "google", "azure", "matplotlib"}


def test_show_includes_the_local_store_like_analyze(runner, shared_data: Path) -> None:  # type: ignore[no-untyped-def]
    # p5.48xlarge in ca-central-1 is not in the bundled snapshot; ec2instances.info has it.
    before = _invoke(runner, "--gpu", "H100", "--region", "ca-central-1", "-o", "json")
    assert before.exit_code == 0 and json.loads(before.stdout)["rows"] == []
    f = shared_data / "ec2instances-info-gpu/aws_gpu_prices_by_region.csv"
    assert runner.invoke(app, ["prices", "import", str(f), "--observed-at", "2025-11-30"]).exit_code == 0
    after = _invoke(runner, "--gpu", "H100", "--region", "ca-central-1", "-o", "json")
    doc = json.loads(after.stdout)
    p5 = next(r for r in doc["rows"] if r["instance_type"] == "p5.48xlarge")
    assert p5["on_demand_per_hour"] == pytest.approx(63.296)
    assert "local price store" in doc["prices"]["source"]
    from spotplan.analysis import load_prices

    assert doc["prices"]["source"] == load_prices(None).source  # the same loader as analyze


def test_prices_option_replaces_the_store_too(runner, custom: Path, shared_data: Path) -> None:  # type: ignore[no-untyped-def]
    f = shared_data / "ec2instances-info-gpu/aws_gpu_prices_by_region.csv"
    assert runner.invoke(app, ["prices", "import", str(f), "--observed-at", "2025-11-30"]).exit_code == 0
    rows = _csv_rows(_invoke(runner, "--prices", str(custom), "-o", "csv").stdout)
    assert {r["instance_type"] for r in rows} == {"p4d.24xlarge", "p3.2xlarge", "a3-highgpu-8g"}


@pytest.mark.parametrize(
    ("gpu", "models"),
    [
        ("A100", {"A100-40GB", "A100-80GB"}),
        ("a100", {"A100-40GB", "A100-80GB"}),
        ("A100-80GB", {"A100-80GB"}),
        ("V100", {"V100", "V100-32GB"}),
        ("V100-32GB", {"V100-32GB"}),
    ],
)
def test_bare_family_matches_every_variant(runner, gpu: str, models: set[str]) -> None:  # type: ignore[no-untyped-def]
    rows = _csv_rows(_invoke(runner, "--gpu", gpu, "-o", "csv").stdout)
    assert {r["gpu_model"] for r in rows} == models


def test_a_gpu_typo_matches_nothing_and_says_what_was_meant(runner) -> None:  # type: ignore[no-untyped-def]
    """H1000 is no H100 (a model number is never followed by another digit): nothing matches, and the
    note names the close models; still exit 0, as for any filter that matches nothing."""
    result = runner.invoke(app, ["prices", "show", "--gpu", "H1000", "-o", "csv"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().count("\n") == 0  # the header only
    assert "not a known GPU model" in result.stderr and "did you mean H100" in result.stderr
