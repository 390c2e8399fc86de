"""The bundled price snapshot (pricing_data/): coverage, validity, agreement with the real source
files it was curated from, regeneration by refresh.py, and being found from an installed wheel."""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from spotplan.gpus import VOCABULARY
from spotplan.pricing.snapshot import (
    load_snapshot,
    snapshot_as_of,
    snapshot_dir,
    snapshot_files,
    snapshot_sources,
)
from spotplan.pricing.table import BANDS, COLUMNS, POOL_KEY

ROOT = Path(__file__).resolve().parents[1]

REQUIRED_FAMILIES = {
    "aws": {
        "p5": r"^p5\.", "p4d": r"^p4d\.", "p4de": r"^p4de\.", "p3": r"^p3\.", "g6": r"^g6\.",
        "g6e": r"^g6e\.", "g5": r"^g5\.", "g4dn": r"^g4dn\.",
    },
    "gcp": {"a3": r"^a3-", "a2": r"^a2-", "g2": r"^g2-"},
    "azure": {
        "ND H100 v5": r"^Standard_ND\d+\w*_H100_v5$",
        "ND A100 v4": r"^Standard_ND96a\w*_v4$",
        "NC A100 v4": r"^Standard_NC\d+ads_A100_v4$",
        "NC T4 v3": r"^Standard_NC\d+as_T4_v3$",
        "NV/NC A10": r"_A10_v[45]$",
    },
}
REQUIRED_REGIONS = {
    "aws": {"us-east-1", "us-west-2", "eu-west-1"},
    "gcp": {"us-central1", "us-east1", "europe-west4"},
    "azure": {"eastus", "southcentralus"},
}
# Source errors handled on purpose (pricing_data/README.md): no spot row for these.
NO_SPOT_ON_PURPOSE = {"ND H100 v5"}


@pytest.fixture(scope="module")
def snap() -> pd.DataFrame:
    return load_snapshot()


def _pairs(df: pd.DataFrame) -> pd.DataFrame:
    key = ["provider", "region", "zone", "instance_type"]
    spot = df[df["market"] == "spot"][key + ["price_per_hour"]]
    od = df[df["market"] == "on-demand"][key + ["price_per_hour"]]
    return spot.merge(od, on=key, suffixes=("_spot", "_od"))


def test_snapshot_files_are_the_three_provider_tables() -> None:
    assert [f.name for f in snapshot_files()] == ["aws.csv", "azure.csv", "gcp.csv"]
    for f in snapshot_files():
        with f.open(newline="") as fh:
            assert tuple(next(csv.reader(fh))) == COLUMNS, f"{f.name}: header is not the §4.2 price table"


def test_curated_size_and_one_row_per_pool(snap: pd.DataFrame) -> None:
    assert 300 <= len(snap) <= 2000, "the snapshot is a curated table: hundreds of rows"
    dupes = snap[snap.duplicated(list(POOL_KEY) + ["observed_at"], keep=False)]
    assert dupes.empty, f"duplicate pool rows:\n{dupes}"


@pytest.mark.parametrize("provider", sorted(REQUIRED_FAMILIES))
def test_required_families_have_on_demand_and_spot(snap: pd.DataFrame, provider: str) -> None:
    rows = snap[snap["provider"] == provider]
    for family, pattern in REQUIRED_FAMILIES[provider].items():
        fam = rows[rows["instance_type"].str.contains(pattern, regex=True)]
        assert (fam["market"] == "on-demand").any(), f"{provider} {family}: no on-demand row"
        has_spot = (fam["market"] == "spot").any()
        if family in NO_SPOT_ON_PURPOSE:
            assert not has_spot, f"{provider} {family}: the source's spot price is bogus, expected none"
        else:
            assert has_spot, f"{provider} {family}: no spot row"


@pytest.mark.parametrize("provider", sorted(REQUIRED_REGIONS))
def test_main_regions_covered(snap: pd.DataFrame, provider: str) -> None:
    regions = set(snap[snap["provider"] == provider]["region"])
    assert len(regions) >= 3
    assert REQUIRED_REGIONS[provider] <= regions
    if provider == "azure":
        assert regions & {"westus2", "westus3"}  # a west-coast region beside the eastern ones
    for region in regions:
        markets = set(snap[(snap["provider"] == provider) & (snap["region"] == region)]["market"])
        assert markets == {"on-demand", "spot"}, f"{provider} {region}: markets {markets}"


def test_rows_are_complete_and_dated(snap: pd.DataFrame) -> None:
    assert (snap["source"] != "").all()
    assert snap["observed_at"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    assert (snap["price_per_hour"] > 0).all()
    for col in ("gpu_count", "vcpus", "memory_gib"):
        assert (snap[col] > 0).all(), f"{col} missing somewhere"
    assert set(snap["gpu_model"]) <= set(VOCABULARY), set(snap["gpu_model"]) - set(VOCABULARY)


def test_bands_valid_and_only_on_spot(snap: pd.DataFrame) -> None:
    assert set(snap["interruption_band"]) <= set(BANDS) | {""}
    assert (snap[snap["market"] == "on-demand"]["interruption_band"] == "").all()
    aws_spot = snap[(snap["provider"] == "aws") & (snap["market"] == "spot")]
    unbanded = aws_spot[aws_spot["interruption_band"] == ""]
    # AWS publishes a band per pool; the README lists the one the sources lack (p4d in eu-north-1).
    assert len(unbanded) <= 2, unbanded[["region", "instance_type"]]


def test_no_spot_above_on_demand(snap: pd.DataFrame) -> None:
    pairs = _pairs(snap)
    assert len(pairs) > 300
    above = pairs[pairs["price_per_hour_spot"] > pairs["price_per_hour_od"]]
    assert above.empty, f"spot above on-demand:\n{above}"
    # A spot price equal to on-demand is the Azure H100 v5 copy error; it must not come back.
    equal = pairs[pairs["price_per_hour_spot"] == pairs["price_per_hour_od"]]
    assert equal.empty, f"spot equals on-demand (suspicious source rows):\n{equal}"


@pytest.mark.parametrize(
    ("provider", "instance_type", "gpu_model", "gpu_count"),
    [
        ("aws", "p4d.24xlarge", "A100-40GB", 8),
        ("aws", "p4de.24xlarge", "A100-80GB", 8),
        ("aws", "p5.48xlarge", "H100", 8),
        ("aws", "p3dn.24xlarge", "V100-32GB", 8),
        ("aws", "g5.xlarge", "A10G", 1),
        ("aws", "g6e.48xlarge", "L40S", 8),
        ("gcp", "a2-highgpu-8g", "A100-40GB", 8),
        ("gcp", "a2-ultragpu-8g", "A100-80GB", 8),
        ("gcp", "a3-highgpu-8g", "H100", 8),
        ("gcp", "g2-standard-48", "L4", 4),
        ("azure", "Standard_ND96isr_H100_v5", "H100", 8),  # the source says 12
        ("azure", "Standard_ND96asr_v4", "A100-40GB", 8),
        ("azure", "Standard_ND96amsr_A100_v4", "A100-80GB", 8),
        ("azure", "Standard_NC4as_T4_v3", "T4", 1),
    ],
)
def test_gpu_vocabulary(
    snap: pd.DataFrame, provider: str, instance_type: str, gpu_model: str, gpu_count: int
) -> None:
    rows = snap[(snap["provider"] == provider) & (snap["instance_type"] == instance_type)]
    assert not rows.empty
    assert set(rows["gpu_model"]) == {gpu_model}
    assert set(rows["gpu_count"]) == {gpu_count}


def test_as_of_and_sources_helpers(snap: pd.DataFrame) -> None:
    as_of = snapshot_as_of(snap)
    assert set(as_of) == {"aws", "azure", "gcp"}
    for provider, date in as_of.items():
        assert date == snap[snap["provider"] == provider]["observed_at"].max()
    assert snapshot_as_of() == as_of
    assert snapshot_as_of(snap.iloc[0:0]) == {}
    sources = snapshot_sources(snap)
    assert "ec2instances.info" in sources["aws"]
    assert sources["gcp"] == ["cyclenerd-gcp-pricing"]


def test_readme_states_the_row_counts_and_dates(snap: pd.DataFrame) -> None:
    readme = (ROOT / "pricing_data" / "README.md").read_text()
    as_of = snapshot_as_of(snap)
    for provider in ("aws", "gcp", "azure"):
        n = int((snap["provider"] == provider).sum())
        assert f"| `{provider}.csv` | {n} |" in readme, f"README row count for {provider}.csv is stale"
        assert as_of[provider] in readme


# --- agreement with the real source files --------------------------------------------------------


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_aws_figures_match_ec2instances(snap: pd.DataFrame, shared_data: Path) -> None:
    src = {
        (r["region"], r["instance_type"]): r
        for r in _read(shared_data / "ec2instances-info-gpu" / "aws_gpu_prices_by_region.csv")
    }
    aws = snap[snap["provider"] == "aws"]
    for row in aws.itertuples():
        ref = src[(row.region, row.instance_type)]
        expected = ref["ondemand_linux"] if row.market == "on-demand" else ref["spot_avg_linux"]
        assert row.price_per_hour == pytest.approx(float(expected), abs=1e-6), row
        assert row.gpu_count == int(ref["gpu_count"])
        if row.market == "spot" and ref["pct_interrupt"]:
            assert row.interruption_band == ref["pct_interrupt"], row
    # Two figures quoted in data/README.md, as a check that the join above is not vacuous.
    p5 = aws[(aws["region"] == "us-east-1") & (aws["instance_type"] == "p5.48xlarge")]
    assert dict(zip(p5["market"], p5["price_per_hour"])) == {"on-demand": 55.04, "spot": 28.106467}


def test_gcp_figures_match_cyclenerd(snap: pd.DataFrame, shared_data: Path) -> None:
    src = {
        (r["region"], r["machine_type"]): r
        for r in _read(shared_data / "cyclenerd-gcp-pricing" / "gcp_gpu_latest.csv")
    }
    gcp = snap[snap["provider"] == "gcp"]
    for row in gcp.itertuples():
        ref = src[(row.region, row.instance_type)]
        expected = ref["hour"] if row.market == "on-demand" else ref["hour_spot"]
        assert row.price_per_hour == pytest.approx(float(expected), abs=1e-6), row
        assert row.observed_at == ref["snapshot_time"][:10]
    a3 = gcp[(gcp["region"] == "us-central1") & (gcp["instance_type"] == "a3-highgpu-8g")
             & (gcp["market"] == "spot")]
    assert a3["price_per_hour"].round(2).tolist() == [50.61]  # data/README.md: 50.61 on 2026-07-22


def test_azure_figures_match_skypilot_catalog(snap: pd.DataFrame, shared_data: Path) -> None:
    src = {
        (r["Region"], r["InstanceType"]): r
        for r in _read(shared_data / "skypilot-catalog" / "catalogs" / "v6" / "azure" / "vms_gpu_subset.csv")
    }
    azure = snap[snap["provider"] == "azure"]
    for row in azure.itertuples():
        ref = src[(row.region, row.instance_type)]
        expected = ref["Price"] if row.market == "on-demand" else ref["SpotPrice"]
        assert row.price_per_hour == pytest.approx(float(expected), abs=1e-6), row
    # Every H100 v5 pool of the source is there on-demand, and none of its bogus spot figures.
    h100 = [k for k, r in src.items() if k[1].endswith("_H100_v5") and r["AcceleratorName"] == "H100"]
    assert h100
    for region, itype in h100:
        pool = azure[(azure["region"] == region) & (azure["instance_type"] == itype)]
        if region in set(azure["region"]):
            assert pool["market"].tolist() == ["on-demand"], (region, itype)


def test_refresh_regenerates_the_committed_csvs(shared_data: Path, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("spotplan_refresh", ROOT / "pricing_data" / "refresh.py")
    assert spec and spec.loader
    refresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(refresh)
    assert refresh.main(["--data", str(shared_data), "--out", str(tmp_path)]) == 0
    for name in ("aws.csv", "gcp.csv", "azure.csv"):
        assert (tmp_path / name).read_text() == (snapshot_dir() / name).read_text(), (
            f"{name} differs from what refresh.py writes: run pricing_data/refresh.py"
        )
    assert refresh.main(["--data", str(tmp_path / "absent")]) == 2


@pytest.mark.timeout(120)
def test_installed_wheel_finds_the_snapshot(tmp_path: Path) -> None:
    if importlib.util.find_spec("hatchling") is None:
        pytest.skip("hatchling (the build backend) is not installed in this environment")
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT)],
        capture_output=True, text=True, timeout=100,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("spotplan-*.whl")
    install = subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=100,
    )
    assert install.returncode == 0, install.stderr
    probe = (
        "import spotplan.pricing.snapshot as s; df = s.load_snapshot(); "
        "print(s.__file__); print(s.snapshot_dir()); print(len(df)); print(sorted(set(df.provider)))"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    run = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env
    )
    assert run.returncode == 0, run.stderr
    module_file, folder, n, providers = run.stdout.splitlines()
    assert Path(module_file).is_relative_to(target), "imported the checkout, not the installed wheel"
    assert Path(folder) == target / "spotplan" / "pricing_data"
    assert int(n) == len(load_snapshot())
    assert providers == "['aws', 'azure', 'gcp']"


def test_as_of_compares_times_not_text() -> None:
    # 14:00+02:00 is 12:00Z: earlier than 13:00Z although it sorts later as text.
    table = pd.DataFrame({"provider": ["gcp", "gcp", "aws"],
                          "observed_at": ["2026-07-22T14:00:00+02:00", "2026-07-22T13:00:00Z", "2025-11-30"]})
    assert snapshot_as_of(table) == {"aws": "2025-11-30", "gcp": "2026-07-22T13:00:00Z"}
