"""Price histories reduced to what the planner prices with: one row per pool, its time-weighted mean
over a window (each observation holds until the next one), its time-weighted p95 (the 95th
percentile of the prices in force), latest price and as-of time.

A pool is (provider, region, zone, instance_type, market); several rows of a pool at different
`observed_at` form its history (DESIGN.md §4.2).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from spotplan.pricing.table import POOL_KEY
from spotplan.times import as_utc

if TYPE_CHECKING:
    import pandas as pd

SUMMARY_COLUMNS = (
    *POOL_KEY,
    "gpu_model",
    "gpu_count",
    "vcpus",
    "memory_gib",
    "interruption_band",
    "source",
    "price",
    "price_p95",
    "latest_price",
    "as_of",
    "observations",
)


def parse_times(values: pd.Series) -> pd.Series:
    """observed_at strings (dates or times, any ISO-8601) to UTC timestamps; unparseable → NaT."""
    import pandas as pd

    return pd.to_datetime(values.astype(str), utc=True, errors="coerce", format="mixed")


def newest_by_provider(table: pd.DataFrame, column: str = "observed_at") -> dict[str, pd.Timestamp]:
    """Each provider's newest time in `column`, compared as instants (a `+02:00` time and a `Z` one are
    ordered by when they happened, not as text); providers with no parseable time are left out."""
    times = parse_times(table[column]).dropna()
    newest = times.groupby(table.loc[times.index, "provider"]).max()
    return {str(p): ts for p, ts in sorted(newest.items())}


def summarize(table: pd.DataFrame, window_hours: float, now: datetime | None = None) -> pd.DataFrame:
    """One row per pool: `price` is the time-weighted mean of its history over (now − window, now].

    A pool whose history has no time span inside the window (one observation, or all at `now`) is
    priced at its latest observation. Observations after `now` are ignored unless a pool has
    nothing else. Rows without a parseable `observed_at` count as the oldest observation.
    """
    import numpy as np
    import pandas as pd

    now = as_utc(now)
    if table.empty:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    now_ts = pd.Timestamp(now)
    start_ts = now_ts - pd.Timedelta(hours=float(window_hours))

    df = table.copy()
    df["zone"] = df["zone"].fillna("")
    df["_t"] = parse_times(df["observed_at"]).fillna(pd.Timestamp("1970-01-01", tz="UTC"))
    future = df["_t"] > now_ts
    if bool(future.any()):
        # Keep future rows only for pools that have no past rows at all.
        has_past = (~future).groupby([df[k] for k in POOL_KEY]).transform("any")
        df = df[~future | ~has_past]
    df = df.sort_values([*POOL_KEY, "_t"], kind="stable").reset_index(drop=True)
    keys = [df[k] for k in POOL_KEY]
    next_t = df.groupby(keys, sort=False)["_t"].shift(-1)
    end_cap = df["_t"].where(df["_t"] > now_ts, now_ts)  # future-only pools: zero-length segments
    next_t = next_t.fillna(end_cap)
    begin = df["_t"].where(df["_t"] > start_ts, start_ts)
    end = next_t.where(next_t < end_cap, end_cap)
    weight = ((end - begin).dt.total_seconds()).clip(lower=0).fillna(0.0)
    df["_w"] = weight
    df["_wp"] = weight * df["price_per_hour"]

    g = df.groupby(keys, sort=False)
    last = g.tail(1).set_index(list(POOL_KEY))
    sums = g[["_w", "_wp"]].sum()
    band = (
        df[df["interruption_band"].astype(str) != ""]
        .groupby([df[k] for k in POOL_KEY], sort=False)["interruption_band"]
        .last()
    )
    p95 = weighted_quantile(df[df["_w"] > 0], 0.95)

    out = last[["gpu_model", "gpu_count", "vcpus", "memory_gib", "source"]].copy()
    out["latest_price"] = last["price_per_hour"].astype(float)
    out["as_of"] = last["observed_at"].astype(str)
    total_w = sums["_w"].reindex(out.index)
    mean = (sums["_wp"].reindex(out.index) / total_w.replace(0, np.nan)).astype(float)
    out["price"] = mean.where(total_w > 0, out["latest_price"])
    out["price_p95"] = p95.reindex(out.index).fillna(out["latest_price"])
    out["interruption_band"] = band.reindex(out.index).fillna("")
    out["observations"] = g.size().reindex(out.index).astype(int)
    out = out.reset_index()
    return out[list(SUMMARY_COLUMNS)]


def weighted_quantile(df: pd.DataFrame, q: float) -> pd.Series:
    """Per pool, the q-quantile of the prices in force over the window: the lowest price that held
    for at least q of the window's time (`_w`, seconds each price held). A price held a minute
    weighs a minute, and the answer is always a price that occurred."""
    import pandas as pd

    if df.empty:
        return pd.Series(dtype=float)
    keys = list(POOL_KEY)
    ordered = df.sort_values([*keys, "price_per_hour"], kind="stable")
    by_pool = ordered.groupby(keys, sort=False)["_w"]
    reached = by_pool.cumsum() >= q * by_pool.transform("sum") * (1 - 1e-12)
    first = ordered[reached].groupby(keys, sort=False)["price_per_hour"].first()
    return first


def count_changes(table: pd.DataFrame, window_hours: float, now: datetime | None = None) -> pd.Series:
    """Per pool, how many times its price changed inside (now − window, now].

    A change is an observation whose price differs (by more than 1e-6 relative) from the pool's
    previous observation, which may lie before the window: it is the price in force when the window
    opens. Repeated quotes of the same price are not changes.
    """
    import pandas as pd

    now = as_utc(now)
    if table.empty:
        return pd.Series(dtype=int)
    now_ts = pd.Timestamp(now)
    start_ts = now_ts - pd.Timedelta(hours=float(window_hours))
    df = table.copy()
    df["zone"] = df["zone"].fillna("")
    df["_t"] = parse_times(df["observed_at"]).fillna(pd.Timestamp("1970-01-01", tz="UTC"))
    df = df[df["_t"] <= now_ts].sort_values([*POOL_KEY, "_t"], kind="stable")
    keys = [df[k] for k in POOL_KEY]
    prev = df.groupby(keys, sort=False)["price_per_hour"].shift(1)
    # Sources round differently (50.6095408 vs 50.609541): a relative difference under 1e-6 is the
    # same price quoted twice, not a change.
    moved = (df["price_per_hour"] - prev).abs() > 1e-6 * prev.abs().clip(lower=1e-9)
    changed = prev.notna() & moved & (df["_t"] > start_ts)
    return changed.groupby(keys, sort=False).sum().astype(int).rename("changes")


def history_stats(table: pd.DataFrame, window_hours: float, now: datetime | None = None) -> pd.DataFrame:
    """`summarize()` plus a `changes` column: what `prices history` reports per zone and market."""
    out = summarize(table, window_hours, now)
    if out.empty:
        out["changes"] = []
        return out
    changes = count_changes(table, window_hours, now)
    idx = out.set_index(list(POOL_KEY)).index
    out["changes"] = changes.reindex(idx).fillna(0).astype(int).to_numpy()
    return out


def select_history(
    table: pd.DataFrame, provider: str, region: str, instance_type: str, days: float, now: datetime | None = None
) -> pd.DataFrame:
    """The rows of one instance type in one region (every zone, both markets) that matter for the
    last `days`: those inside the window plus, per pool, the last one before it (the price in force
    when the window opens). Adds a parsed `_t` column; sorted by time."""
    import pandas as pd

    from spotplan.pricing.compare import filter_table

    now = as_utc(now)
    # Names match in any case, as `prices show --region` does (AWS and GCP names are lower case,
    # Azure sizes mixed, and Resource Graph lower-cases them).
    sel = filter_table(table, provider=provider, region=region)
    sel = sel[sel["instance_type"].astype(str).str.lower() == instance_type.strip().lower()].copy()
    if sel.empty:
        return sel.assign(_t=pd.Series(dtype="datetime64[ns, UTC]"))
    sel["zone"] = sel["zone"].fillna("")
    sel["_t"] = parse_times(sel["observed_at"])
    sel = sel[sel["_t"].notna() & (sel["_t"] <= pd.Timestamp(now))]
    start = pd.Timestamp(now) - pd.Timedelta(days=float(days))
    sel = sel.sort_values([*POOL_KEY, "_t"], kind="stable").drop_duplicates([*POOL_KEY, "_t"], keep="last")
    inside = sel["_t"] > start
    last_before = (~inside) & ~(~inside).groupby([sel[k] for k in POOL_KEY]).shift(-1, fill_value=False)
    return sel[inside | last_before].sort_values("_t", kind="stable").reset_index(drop=True)
