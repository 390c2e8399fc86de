"""Regenerate the bundled price snapshot (`aws.csv`, `gcp.csv`, `azure.csv`) from the real data sets.

Reads the third-party data folder (`../shared/data` beside the project, or `--data DIR`, or
`$SPOTPLAN_SHARED_DATA`) and writes the curated price table of DESIGN.md §4.2 next to this file:
the GPU shapes people rent, in the main regions of each cloud, on-demand and spot, with the
interruption band where the provider publishes one. Every figure comes from a source file; rows the
source gets wrong are dropped or corrected here, each with the reason (see README.md, "Known gaps").

    .venv/bin/python pricing_data/refresh.py [--data ../shared/data] [--out pricing_data]

Only stdlib + pandas (+ the project's own GPU vocabulary), so it runs from the project venv.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

COLUMNS = [
    "provider", "region", "zone", "instance_type", "gpu_model", "gpu_count", "vcpus", "memory_gib",
    "market", "price_per_hour", "interruption_band", "observed_at", "source",
]

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
# Known errors of the source (data/README.md): a VM's real GPU count, by instance type.
AZURE_GPU_COUNT_FIXES = {"Standard_ND96isr_H100_v5": 8}
# Series whose SpotPrice equals Price in the source: a bogus copy, not a spot price; left out.
AZURE_BOGUS_SPOT = ("_H100_v5",)


def _gpu_model(name: Any, count: Any, memory_gib: Any) -> str:
    """Vocabulary name; A100/V100 memory variants are told apart by memory per GPU (source data)."""
    from spotplan.gpus import normalize_gpu_model

    model = normalize_gpu_model(str(name))
    per_gpu = float(memory_gib) / float(count) if count else 0.0
    if model == "A100-40GB" and per_gpu >= 79:
        return "A100-80GB"
    if model == "V100" and per_gpu >= 31:
        return "V100-32GB"
    return model


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in rec.items()} for rec in df.to_dict(orient="records")]


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and value != value) and value != ""


def _family(instance_type: str) -> str:
    return instance_type.split(".", 1)[0]


def _advisor_bands(data: Path) -> dict[tuple[str, str], str]:
    path = data / "aws-spot-advisor" / ADVISOR_AS_OF / "spot_advisor_gpu.csv"
    adv = pd.read_csv(path)
    adv = adv[adv["os"] == "Linux"]
    return {(r["region"], r["instance_type"]): str(r["interruption_range"]) for r in _records(adv)}


def aws_rows(data: Path) -> pd.DataFrame:
    src = pd.read_csv(data / "ec2instances-info-gpu" / "aws_gpu_prices_by_region.csv")
    src = src[src["instance_type"].map(_family).isin(AWS_FAMILIES) & src["region"].isin(AWS_REGIONS)]
    advisor = _advisor_bands(data)
    rows = []
    for r in _records(src):
        base = {
            "provider": "aws", "region": r["region"], "zone": "", "instance_type": r["instance_type"],
            "gpu_model": _gpu_model(r["gpu_model"], r["gpu_count"], r["gpu_memory_gib"]),
            "gpu_count": int(r["gpu_count"]), "vcpus": int(r["vcpus"]), "memory_gib": float(r["memory_gib"]),
            "observed_at": AWS_AS_OF,
        }
        if _present(r["ondemand_linux"]):
            rows.append({**base, "market": "on-demand", "price_per_hour": float(r["ondemand_linux"]),
                         "interruption_band": "", "source": AWS_SOURCE})
        # spot_avg is the mean of the per-AZ spot prices at capture time: the region-wide figure.
        if _present(r["spot_avg_linux"]):
            band = str(r["pct_interrupt"]) if _present(r["pct_interrupt"]) else ""
            source, pool = AWS_SOURCE, (r["region"], r["instance_type"])
            if not band and pool in advisor:
                band, source = advisor[pool], f"{AWS_SOURCE}; band {ADVISOR_SOURCE}"
            rows.append({**base, "market": "spot", "price_per_hour": float(r["spot_avg_linux"]),
                         "interruption_band": band, "source": source})
    return pd.DataFrame(rows, columns=COLUMNS)


def gcp_rows(data: Path) -> pd.DataFrame:
    src = pd.read_csv(data / "cyclenerd-gcp-pricing" / "gcp_gpu_latest.csv")
    src = src[src["region"].isin(GCP_REGIONS) & src["machine_type"].str.startswith(GCP_PREFIXES)]
    rows = []
    for r in _records(src):
        base = {
            "provider": "gcp", "region": r["region"], "zone": "", "instance_type": r["machine_type"],
            "gpu_model": _gpu_model(r["gpu_name"], r["gpu_count"], 0.0),
            "gpu_count": int(r["gpu_count"]), "vcpus": int(r["vcpus"]), "memory_gib": float(r["ram_gib"]),
            "interruption_band": "",  # GCP publishes no preemption rate
            "observed_at": str(r["snapshot_time"])[:10], "source": GCP_SOURCE,
        }
        if _present(r["hour"]):
            rows.append({**base, "market": "on-demand", "price_per_hour": float(r["hour"])})
        if _present(r["hour_spot"]):
            rows.append({**base, "market": "spot", "price_per_hour": float(r["hour_spot"])})
    return pd.DataFrame(rows, columns=COLUMNS)


def azure_rows(data: Path) -> pd.DataFrame:
    src = pd.read_csv(data / "skypilot-catalog" / "catalogs" / "v6" / "azure" / "vms_gpu_subset.csv")
    keep = src["InstanceType"].map(lambda t: bool(AZURE_SERIES.search(t)))
    # _Promo rows and rows without a GPU name carry no usable figures (data/README.md).
    src = src[keep & src["Region"].isin(AZURE_REGIONS) & src["AcceleratorName"].notna()
              & ~src["InstanceType"].str.endswith("_Promo")]
    rows = []
    for r in _records(src):
        itype = str(r["InstanceType"])
        count = AZURE_GPU_COUNT_FIXES.get(itype, r["AcceleratorCount"])
        base = {
            "provider": "azure", "region": r["Region"], "zone": "", "instance_type": itype,
            "gpu_model": _gpu_model(r["AcceleratorName"], count, 0.0),
            "gpu_count": int(count), "vcpus": int(r["vCPUs"]), "memory_gib": float(r["MemoryGiB"]),
            "interruption_band": "",  # eviction rates live in Resource Graph, not in the catalog
            "observed_at": AZURE_AS_OF, "source": AZURE_SOURCE,
        }
        if _present(r["Price"]):
            rows.append({**base, "market": "on-demand", "price_per_hour": float(r["Price"])})
        bogus = any(s in itype for s in AZURE_BOGUS_SPOT) and r["SpotPrice"] == r["Price"]
        if _present(r["SpotPrice"]) and not bogus:
            rows.append({**base, "market": "spot", "price_per_hour": float(r["SpotPrice"])})
    return pd.DataFrame(rows, columns=COLUMNS)


def _tidy(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["price_per_hour"] = df["price_per_hour"].round(6)
    df["memory_gib"] = df["memory_gib"].map(lambda v: int(v) if float(v).is_integer() else v)
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
    sys.path.insert(0, str(ROOT))  # the project's GPU vocabulary, when run from a checkout
    args.out.mkdir(parents=True, exist_ok=True)
    for provider, df in build(args.data).items():
        path = args.out / f"{provider}.csv"
        df.to_csv(path, index=False, lineterminator="\n")
        print(f"wrote {path} ({len(df)} rows)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
