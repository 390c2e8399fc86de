"""The local price store: every pulled or imported observation, one parquet file per provider under
`spotplan.paths.price_store_dir()`, deduplicated on (pool, observed_at) so that re-pulling the same
window adds nothing and each pool keeps one history.

Writes are all-or-nothing: new files are written beside the old ones and swapped in with
`os.replace` only once every provider's file is complete, so a pull that fails half way leaves the
store exactly as it was. A lock file serialises concurrent writers.
"""

from __future__ import annotations

import contextlib
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


def merge_into_store(rows: pd.DataFrame, root: Path | None = None) -> MergeResult:
    """Add `rows` (price-table columns) to the store; duplicates of stored observations are dropped.

    A newer copy of an observation replaces the stored one (a feed may fill in a band later), so the
    count of added rows only counts observations the store did not have.
    """
    import pandas as pd

    from spotplan.pricing.table import normalize

    root = root or price_store_dir()
    result = MergeResult()
    if rows.empty:
        return result
    new = normalize(rows, origin="new prices")
    new["observed_at"] = canonical_time(new["observed_at"])
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root):
        staged: list[tuple[Path, Path]] = []
        try:
            for provider, part in new.groupby("provider", sort=True):
                path = store_file(str(provider), root)
                old = _read(path) if path.exists() else None
                before = 0 if old is None else len(old)
                combined = part if old is None else pd.concat([old, part], ignore_index=True)
                combined = combined.drop_duplicates(list(OBS_KEY), keep="last")
                combined = combined.sort_values(list(OBS_KEY), kind="stable").reset_index(drop=True)
                result.added[str(provider)] = len(combined) - before
                result.total[str(provider)] = len(combined)
                tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
                combined.to_parquet(tmp, index=False)
                staged.append((tmp, path))
        except BaseException:
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)
            raise
        for tmp, path in staged:
            os.replace(tmp, path)
    return result


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
