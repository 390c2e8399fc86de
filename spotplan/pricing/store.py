"""The local price store: every pulled or imported observation, one parquet file per provider under
`spotplan.paths.price_store_dir()`, deduplicated on (pool, observed_at) so that re-pulling the same
window adds nothing and each pool keeps one history.

Writes are all-or-nothing: new files are written beside the old ones and swapped in with
`os.replace` only once every provider's file is complete, so a pull that fails half way leaves the
store exactly as it was. A lock file serialises concurrent writers.

The store also owns the one spelling of an AWS zone: pulls see both the zone name (`us-east-1a`,
which differs per account) and its ID (`use1-az1`), while the TSV capture and SkyPilot know only
IDs. The pairs a pull saw are kept in `aws-zones.json`, and every AWS row is stored under the name
when its ID's name is known, so one pool never has two histories.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from spotplan.paths import price_store_dir
from spotplan.pricing.history import newest_by_provider, parse_times
from spotplan.pricing.table import COLUMNS, POOL_KEY, PROVIDERS
from spotplan.times import ISO_Z

if TYPE_CHECKING:
    import pandas as pd

#: Deduplication key: one observation per pool and instant.
OBS_KEY: tuple[str, ...] = (*POOL_KEY, "observed_at")


@dataclass
class MergeResult:
    """What a merge changed, per provider: rows added and rows now held."""

    added: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)
    #: Observations given for a (pool, instant) the store or the same input already held at another
    #: price; the one read last is kept (a newer pull or import corrects an older one).
    conflicts: dict[str, int] = field(default_factory=dict)


def store_file(provider: str, root: Path | None = None) -> Path:
    return (root or price_store_dir()) / f"{provider}.parquet"


def canonical_time(values: pd.Series) -> pd.Series:
    """observed_at to one spelling (UTC, seconds, `Z`), so equal instants deduplicate as equal strings.

    Unparseable values are kept as given (the table allows any ISO-8601 date or time).
    """
    raw = values.fillna("").astype(str)
    parsed = parse_times(raw)
    return parsed.dt.strftime(ISO_Z).where(parsed.notna(), raw)


def read_store(root: Path | None = None) -> pd.DataFrame | None:
    """All stored rows (price-table columns, every observation); None when the store is empty/absent."""
    import pandas as pd

    frames = []
    for provider in PROVIDERS:
        path = store_file(provider, root)
        if path.exists():
            frames.append(_read(path))
    frames = [f for f in frames if not f.empty]
    if not frames:
        return None
    return pd.concat(frames, ignore_index=True)


def store_as_of(root: Path | None = None) -> dict[str, str]:
    """Newest observed_at per provider present in the store, e.g. {"aws": "2026-11-23T01:00:00Z"}."""

    df = read_store(root)
    if df is None:
        return {}
    return {p: ts.strftime(ISO_Z) for p, ts in newest_by_provider(df).items()}


def newest_observations(provider: str, market: str, root: Path | None = None) -> dict[str, datetime]:
    """When the newest stored row of (provider, region, market) was observed, for every stored region
    (where an incremental pull can resume), from one read of the store."""
    import pandas as pd

    path = store_file(provider, root)
    if not path.exists():
        return {}
    df = _read(path)
    df = df[df["market"] == market]
    times = parse_times(df["observed_at"])
    newest = times.groupby(df["region"]).max()
    return {
        str(region): ts.to_pydatetime().astimezone(timezone.utc) for region, ts in newest.items() if pd.notna(ts)
    }


def merge_into_store(
    rows: pd.DataFrame, root: Path | None = None, *, quotes: bool = False,
    aws_zone_names: dict[str, str] | None = None,
) -> MergeResult:
    """Add `rows` (price-table columns) to the store; duplicates of stored observations are dropped.

    A newer copy of an observation replaces the stored one (a feed may fill in a band later), so the
    count of added rows only counts observations the store did not have. Two prices for one pool
    and instant are a conflict: the one read last wins and `conflicts` counts it.

    `quotes`: the rows are list prices re-quoted at every pull, not changes. A quote that repeats
    the pool's price does not add a point each time: the pool keeps the first quote of the price
    (when it took effect, as far as the store knows) and its newest quote (it still held then, which
    keeps `as_of` honest), and the newest moves forward. The step function is unchanged.

    `aws_zone_names`: AZ ID → zone name pairs a pull saw; remembered, and applied to every AWS row.
    """
    import pandas as pd

    from spotplan.pricing.table import normalize

    root = root or price_store_dir()
    result = MergeResult()
    if rows.empty and not aws_zone_names:
        return result
    new = normalize(rows, origin="new prices")
    new["observed_at"] = canonical_time(new["observed_at"])
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root):
        zone_names = {**_zone_names(root), **(aws_zone_names or {})}
        providers = set(new["provider"])
        if aws_zone_names and store_file("aws", root).exists():
            providers.add("aws")  # stored zone IDs take the names this pull just learnt
        staged: list[tuple[Path, Path]] = []
        try:
            for provider in sorted(providers):
                part = new[new["provider"] == provider]
                path = store_file(str(provider), root)
                old = _read(path) if path.exists() else None
                before = 0 if old is None else len(old)
                combined = part if old is None else pd.concat([old, part], ignore_index=True)
                if provider == "aws" and zone_names:
                    combined["zone"] = combined["zone"].map(lambda z: zone_names.get(z, z))
                result.conflicts[str(provider)] = _count_conflicts(combined)
                combined = combined.drop_duplicates(list(OBS_KEY), keep="last")
                combined = combined.sort_values(list(OBS_KEY), kind="stable").reset_index(drop=True)
                if quotes and old is not None:
                    combined = _drop_repeated_quotes(combined, old)
                result.added[str(provider)] = len(combined) - before
                result.total[str(provider)] = len(combined)
                tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
                combined.to_parquet(tmp, index=False)
                staged.append((tmp, path))
            if aws_zone_names:
                tmp = _zones_file(root).with_name(f".aws-zones.json.tmp-{os.getpid()}")
                tmp.write_text(json.dumps(dict(sorted(zone_names.items())), indent=1))
                staged.append((tmp, _zones_file(root)))
        except BaseException:
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)
            raise
        for tmp, path in staged:
            os.replace(tmp, path)
    return result


def aws_zone_names(root: Path | None = None) -> dict[str, str]:
    """AZ ID → zone name pairs the pulls have seen (empty before the first AWS pull)."""
    return _zone_names(root or price_store_dir())


def _zones_file(root: Path) -> Path:
    return root / "aws-zones.json"


def _zone_names(root: Path) -> dict[str, str]:
    path = _zones_file(root)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # a damaged map only costs the renaming; the next AWS pull writes it again
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _count_conflicts(combined: pd.DataFrame) -> int:
    """(pool, instant) keys held at more than one price (rounding below 1e-9 $/h is the same price)."""
    prices = combined["price_per_hour"].round(9)
    distinct = prices.groupby([combined[k] for k in OBS_KEY], sort=False).nunique()
    return int((distinct > 1).sum())


def _drop_repeated_quotes(combined: pd.DataFrame, old: pd.DataFrame) -> pd.DataFrame:
    """Drop a pool's quotes in the middle of a run of one price, from the pool's newest stored
    observation on (older history is left as it was stored): of a run, its first and last remain."""

    keys = list(POOL_KEY)
    newest_old = old.groupby(keys, sort=False)["observed_at"].max().rename("_newest_old")
    df = combined.join(newest_old, on=keys)
    same = df.groupby(keys, sort=False)["price_per_hour"]
    prev, nxt = same.shift(1), same.shift(-1)
    t = parse_times(df["observed_at"])
    recent = df["_newest_old"].isna() | (t >= parse_times(df["_newest_old"].fillna("")))
    middle = recent & (df["price_per_hour"] == prev) & (df["price_per_hour"] == nxt)
    out: pd.DataFrame = combined[~middle.to_numpy()].reset_index(drop=True)
    return out


def _read(path: Path) -> pd.DataFrame:
    import pandas as pd

    df = pd.read_parquet(path)
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = "" if col not in ("gpu_count", "vcpus", "memory_gib", "price_per_hour") else float("nan")
    return df[list(COLUMNS)]


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Serialise writers (two pulls at once must not interleave their swaps)."""
    lock = root / ".lock"
    with open(lock, "a+") as fh:
        try:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        except ImportError:  # Windows: no flock; a single writer is the documented expectation
            pass
        yield
