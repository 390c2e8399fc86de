"""Regenerate the bundled price snapshot (`aws.csv`, `gcp.csv`, `azure.csv`) from the real data sets.

Reads the third-party data folder (`../shared/data` beside the project, or `--data DIR`, or
`$SPOTPLAN_SHARED_DATA`) and writes the curated price table of DESIGN.md §4.2 next to this file:
the GPU shapes people rent, in the main regions of each cloud, on-demand and spot, with the
interruption band where the provider publishes one. Every figure comes from a source file; rows the
source gets wrong are dropped or corrected here, each with the reason (see README.md, "Known gaps").

    .venv/bin/python pricing_data/refresh.py [--data ../shared/data] [--out pricing_data]

It reads the files with the project's own importers (`spotplan prices import`), so a fix to a source's
reading is made once; this script only chooses the regions and families and dates the rows.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # the project's importers and price-table columns, when run from a checkout

from spotplan.pricing.table import COLUMNS  # noqa: E402

# --- AWS: ec2instances.info snapshot (region-wide on-demand + spot min/avg/max over the AZs) -----
AWS_SOURCE = "ec2instances.info"
AWS_AS_OF = "2025-11-30"  # date of the ec2instances.info capture (data/README.md)
AWS_REGIONS = ("us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-north-1")
AWS_FAMILIES = ("p6-b200", "p5", "p5en", "p4d", "p4de", "p3", "p3dn", "g6", "g6e", "g5", "g4dn")
ADVISOR_AS_OF = "2025-06-28"
ADVISOR_SOURCE = f"aws-spot-advisor {ADVISOR_AS_OF}"

# --- GCP: Cyclenerd's weekly price snapshots (hour includes the GPUs) -----------------------------
GCP_SOURCE = "cyclenerd-gcp-pricing"
GCP_REGIONS = ("us-central1", "us-east1", "us-east4", "us-west1", "europe-west4")
GCP_PREFIXES = ("a3-", "a2-", "g2-")

# --- Azure: SkyPilot's v6 Azure catalog (Retail Prices API, fetched by SkyPilot) ------------------
AZURE_SOURCE = "skypilot-catalog-v6"
# The catalog carries no as-of date and SkyPilot refreshes it by hand, so the figures are dated by
# when this project read them (the shared data set was assembled on this day). Replace it with the
# real fetch date when refreshing from a dated catalog or from the Retail Prices API.
AZURE_AS_OF = "2026-11-23"
AZURE_REGIONS = ("eastus", "eastus2", "westus2", "westus3", "southcentralus", "westus")
AZURE_SERIES = re.compile(
    r"_H100_v5$"  # ND H100 v5, NC H100 v5
    r"|_A100_v4$"  # ND A100 v4 (80 GB), NC A100 v4
    r"|^Standard_ND96asr_v4$"  # ND A100 v4 (40 GB)
    r"|_T4_v3$"  # NC T4 v3
    r"|_A10_v5$"  # NV A10 v5
    r"|^Standard_NC\d+r?s_v3$"  # NC v3 (V100)
)


def _import(path: Path, fmt: str) -> pd.DataFrame:
    """The project's own importer (`spotplan prices import`), which already reads these formats and
    corrects their known errors (GPU shapes, Azure's ND H100 v5 GPU count and copied spot prices)."""
    from spotplan.pricing.importers import import_file

    return import_file(path, fmt, observed_at="1970-01-01").rows


def _family(instance_type: str) -> str:
    return instance_type.split(".", 1)[0]


def _advisor_bands(data: Path) -> dict[tuple[str, str], str]:
    path = data / "aws-spot-advisor" / ADVISOR_AS_OF / "spot_advisor_gpu.csv"
    adv = pd.read_csv(path)
    adv = adv[adv["os"] == "Linux"]
    return {(str(r), str(t)): str(b) for r, t, b in zip(adv["region"], adv["instance_type"], adv["interruption_range"])}


def aws_rows(data: Path) -> pd.DataFrame:
    df = _import(data / "ec2instances-info-gpu" / "aws_gpu_prices_by_region.csv", "ec2instances")
    df = df[df["instance_type"].map(_family).isin(AWS_FAMILIES) & df["region"].isin(AWS_REGIONS)].copy()
    # spot is spot_avg: the mean of the per-AZ spot prices at capture time, the region-wide figure.
    df["observed_at"], df["source"] = AWS_AS_OF, AWS_SOURCE
    advisor = _advisor_bands(data)
    for i in df.index[(df["market"] == "spot") & (df["interruption_band"] == "")]:
        pool = (df.at[i, "region"], df.at[i, "instance_type"])
        if pool in advisor:
            df.at[i, "interruption_band"] = advisor[pool]
            df.at[i, "source"] = f"{AWS_SOURCE}; band {ADVISOR_SOURCE}"
    return df


def gcp_rows(data: Path) -> pd.DataFrame:
    df = _import(data / "cyclenerd-gcp-pricing" / "gcp_gpu_latest.csv", "gcp-pricing")
    df = df[df["region"].isin(GCP_REGIONS) & df["instance_type"].str.startswith(GCP_PREFIXES)].copy()
    # GCP publishes no preemption rate; the snapshot is dated by its day.
    df["observed_at"], df["source"] = df["observed_at"].str[:10], GCP_SOURCE
    return df


def azure_rows(data: Path) -> pd.DataFrame:
    df = _import(data / "skypilot-catalog" / "catalogs" / "v6" / "azure" / "vms_gpu_subset.csv", "skypilot")
    keep = df["instance_type"].map(lambda t: bool(AZURE_SERIES.search(t)))
    df = df[keep & df["region"].isin(AZURE_REGIONS)].copy()
    # Eviction rates live in Resource Graph, not in the catalog.
    df["observed_at"], df["source"] = AZURE_AS_OF, AZURE_SOURCE
    return df


def _tidy(df: pd.DataFrame) -> pd.DataFrame:
    df = df[list(COLUMNS)].copy()
    df["price_per_hour"] = df["price_per_hour"].round(6)
    for col in ("gpu_count", "vcpus", "memory_gib"):
        df[col] = df[col].map(lambda v: int(v) if float(v).is_integer() else v)
    return df.sort_values(["region", "instance_type", "market"], kind="stable").reset_index(drop=True)


def build(data: Path) -> dict[str, pd.DataFrame]:
    return {"aws": _tidy(aws_rows(data)), "gcp": _tidy(gcp_rows(data)), "azure": _tidy(azure_rows(data))}


def main(argv: list[str] | None = None) -> int:
    default_data = Path(os.environ.get("SPOTPLAN_SHARED_DATA", ROOT.parent / "shared" / "data"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=default_data, help="the shared data folder")
    ap.add_argument("--out", type=Path, default=HERE, help="where to write aws.csv, gcp.csv, azure.csv")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"error: data folder {args.data} not found (use --data)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for provider, df in build(args.data).items():
        path = args.out / f"{provider}.csv"
        df.to_csv(path, index=False, lineterminator="\n")
        print(f"wrote {path} ({len(df)} rows)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
