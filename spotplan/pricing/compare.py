"""Spot and on-demand side by side: one row per pool (provider, region, zone, instance type) with both
prices, the spot saving and the interruption band, built from a price table (DESIGN.md §4.2). Pure pandas;
`spotplan prices show` renders it."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, overload

from spotplan.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

#: Columns of the side-by-side table, in display order.
COMPARE_COLUMNS: tuple[str, ...] = (
    "provider",
    "region",
    "zone",
    "instance_type",
    "gpu_model",
    "gpu_count",
    "vcpus",
    "memory_gib",
    "on_demand_per_hour",
    "spot_per_hour",
    "savings_pct",
    "interruption_band",
    "observed_at",
    "source",
)
_FLOATS = ("memory_gib", "on_demand_per_hour", "spot_per_hour", "savings_pct")
_SPEC = ("gpu_model", "gpu_count", "vcpus", "memory_gib")


def parse_market(value: str | None) -> str | None:
    if value is None:
        return None
    from spotplan.pricing.table import MARKET_ALIASES

    market = MARKET_ALIASES.get(value.strip().lower())
    if market is None:
        raise InputError(f"--market is {value!r}, expected 'spot' or 'on-demand'")
    return market


@overload
def parse_provider(value: str) -> str: ...
@overload
def parse_provider(value: None) -> None: ...
def parse_provider(value: str | None) -> str | None:
    from spotplan.pricing.table import PROVIDERS

    if value is None:
        return None
    provider = value.strip().lower()
    if provider not in PROVIDERS:
        raise InputError(f"--provider is {value!r}, expected one of {', '.join(PROVIDERS)}")
    return provider


def filter_table(
    table: pd.DataFrame,
    *,
    gpu: str | None = None,
    provider: str | None = None,
    region: str | None = None,
) -> pd.DataFrame:
    """Rows of `table` (a price table or a side-by-side table) matching every given filter,
    case-insensitively; `gpu` may be any provider's spelling ("nvidia-tesla-a100", "NVIDIA H100")
    and matches the vocabulary name, or a bare family ("A100") and matches all its variants
    (`spotplan.gpus.gpu_matches`)."""
    from spotplan.gpus import gpu_matches

    keep = table["provider"].notna()
    if gpu is not None:
        models = table["gpu_model"].fillna("").astype(str)
        wanted = {m for m in models.unique() if gpu_matches(gpu, m)}
        keep &= models.isin(wanted)
    if provider is not None:
        keep &= table["provider"].astype(str).str.lower() == provider.strip().lower()
    if region is not None:
        keep &= table["region"].astype(str).str.lower() == region.strip().lower()
    return table[keep]


def side_by_side(table: pd.DataFrame) -> pd.DataFrame:
    """One row per pool, newest observation of each market (`latest_rows`), spot next to on-demand.

    Spot pools keyed by zone take the on-demand price of the same zone, else the region-wide one
    (on-demand is priced per region). A region-wide on-demand row already shown next to some zone's
    spot price is not repeated as a pool of its own.
    """
    import pandas as pd

    from spotplan.pricing.table import instants, latest_rows

    if table.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in COMPARE_COLUMNS})
    latest = latest_rows(table)
    spot = latest[latest["market"] == "spot"]
    od = latest[latest["market"] == "on-demand"]

    key = ["provider", "region", "zone", "instance_type"]
    od_cols = key + ["price_per_hour", "observed_at", "source", *_SPEC]
    od_keyed = od[od_cols].rename(
        columns={"price_per_hour": "on_demand_per_hour", "observed_at": "_od_at", "source": "_od_src",
                 **{c: f"_od_{c}" for c in _SPEC}}
    )
    # Exact zone first, then the region-wide on-demand row for zonal spot pools.
    joined = spot.merge(od_keyed, on=key, how="left")
    region_wide = od_keyed[od_keyed["zone"] == ""].drop(columns="zone")
    fallback = spot[["provider", "region", "instance_type"]].merge(
        region_wide, on=["provider", "region", "instance_type"], how="left"
    )
    missing = joined["on_demand_per_hour"].isna().to_numpy()
    for col in region_wide.columns.difference(["provider", "region", "instance_type"]):
        joined.loc[missing, col] = fallback.loc[missing, col].to_numpy()
    joined = joined.rename(columns={"price_per_hour": "spot_per_hour"})

    took_region_wide = missing & joined["on_demand_per_hour"].notna().to_numpy()
    used = set(
        zip(joined["provider"][took_region_wide], joined["region"][took_region_wide],
            joined["instance_type"][took_region_wide])
    )
    spot_keys = set(zip(spot["provider"], spot["region"], spot["zone"], spot["instance_type"]))
    standalone = [
        (p, r, z, i) not in spot_keys and not (z == "" and (p, r, i) in used)
        for p, r, z, i in zip(od["provider"], od["region"], od["zone"], od["instance_type"])
    ]
    od_only = od[standalone].rename(columns={"price_per_hour": "on_demand_per_hour"}).assign(
        spot_per_hour=float("nan"), interruption_band=""
    )

    rows = pd.concat([joined, od_only], ignore_index=True, sort=False)
    for col in _SPEC:  # spec from whichever market row has it
        alt = f"_od_{col}"
        if alt in rows.columns:
            rows[col] = rows[col].where(rows[col].notna() & (rows[col] != ""), rows[alt])
    rows["gpu_model"] = rows["gpu_model"].fillna("").astype(str)
    # As of the newer of the two observations, compared as instants (time zones differ in files).
    own_at = rows["observed_at"].fillna("").astype(str)
    od_at = rows.get("_od_at", pd.Series(index=rows.index, dtype=object)).fillna("").astype(str)
    rows["observed_at"] = own_at.where(instants(od_at) <= instants(own_at), od_at)
    rows["source"] = [
        "; ".join(dict.fromkeys(s for s in (a, b) if isinstance(s, str) and s))
        for a, b in zip(rows["source"], rows.get("_od_src", pd.Series(index=rows.index, dtype=object)))
    ]
    rows["on_demand_per_hour"] = pd.to_numeric(rows["on_demand_per_hour"], errors="coerce")
    rows["spot_per_hour"] = pd.to_numeric(rows["spot_per_hour"], errors="coerce")
    od_price = rows["on_demand_per_hour"]
    rows["savings_pct"] = (100.0 * (1.0 - rows["spot_per_hour"] / od_price)).where(od_price > 0)
    rows["interruption_band"] = rows["interruption_band"].fillna("").astype(str)
    rows["zone"] = rows["zone"].fillna("").astype(str)
    rows = rows.sort_values(
        ["provider", "region", "gpu_model", "gpu_count", "vcpus", "instance_type", "zone"],
        kind="stable", na_position="last",
    )
    return rows[list(COMPARE_COLUMNS)].reset_index(drop=True)


def filter_market(rows: pd.DataFrame, market: str | None) -> pd.DataFrame:
    """Pools that have a price on `market` ('spot' or 'on-demand'); all pools when None."""
    if market is None:
        return rows
    col = "spot_per_hour" if market == "spot" else "on_demand_per_hour"
    return rows[rows[col].notna()].reset_index(drop=True)


def compare(
    table: pd.DataFrame,
    *,
    gpu: str | None = None,
    provider: str | None = None,
    region: str | None = None,
    market: str | None = None,
) -> pd.DataFrame:
    """Filter the price table, join it side by side, keep the pools priced on `market`."""
    provider = parse_provider(provider)
    market = parse_market(market)
    # GPU last: a spot row without GPU columns (e.g. a raw price-history pull) gets them from its
    # on-demand row in the join.
    rows = side_by_side(filter_table(table, provider=provider, region=region))
    if gpu is not None:
        rows = filter_table(rows, gpu=gpu).reset_index(drop=True)
    return filter_market(rows, market)


def records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready dicts: NaN becomes None, counts become ints."""
    out: list[dict[str, Any]] = []
    for rec in rows.to_dict(orient="records"):
        clean: dict[str, Any] = {}
        for col in COMPARE_COLUMNS:
            value = rec.get(col)
            if isinstance(value, float) and math.isnan(value):
                value = None
            if col in ("gpu_count", "vcpus") and value is not None:
                value = int(value) if float(value).is_integer() else float(value)
            elif col in _FLOATS and value is not None:
                value = float(value)
            elif col not in ("gpu_count", "vcpus") and value is not None and not isinstance(value, str):
                value = str(value)
            clean[col] = value
        out.append(clean)
    return out
