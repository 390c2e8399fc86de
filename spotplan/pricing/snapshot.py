"""The bundled price snapshot (`pricing_data/`, shipped inside the wheel as `spotplan/pricing_data`):
where it is, loading it, and how old it is. What it holds and how to refresh it: pricing_data/README.md."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def snapshot_dir() -> Path:
    """Folder of the bundled snapshot: inside the installed package, else the source checkout's."""
    here = Path(__file__).resolve().parent.parent  # spotplan/
    installed = here / "pricing_data"
    if installed.is_dir():
        return installed
    return here.parent / "pricing_data"


def snapshot_files() -> list[Path]:
    return sorted(snapshot_dir().glob("*.csv"))


def load_snapshot() -> pd.DataFrame:
    from spotplan.errors import CloudError
    from spotplan.pricing.table import read_price_paths

    files = snapshot_files()
    if not files:
        # A broken install, not a user mistake: say where it looked.
        raise CloudError(
            f"bundled price snapshot not found in {snapshot_dir()}",
            hint="reinstall spotplan, or pass --prices PATH",
        )
    return read_price_paths(files)


def snapshot_as_of(table: pd.DataFrame | None = None) -> dict[str, str]:
    """Newest `observed_at` per provider, e.g. {'aws': '2025-11-30', ...}, of `table` or the snapshot."""
    from spotplan.pricing.history import parse_times

    df = load_snapshot() if table is None else table
    if df.empty:
        return {}
    # The newest instant per provider, in the spelling its row has (a date stays a date).
    times = parse_times(df["observed_at"]).dropna()
    newest_row = times.groupby(df.loc[times.index, "provider"]).idxmax()
    return {str(p): str(df.loc[i, "observed_at"]) for p, i in sorted(newest_row.items())}


def snapshot_sources(table: pd.DataFrame | None = None) -> dict[str, list[str]]:
    """The distinct `source` names per provider, for footnotes."""
    df = load_snapshot() if table is None else table
    if df.empty:
        return {}
    out: dict[str, list[str]] = {}
    for provider, group in df.groupby("provider"):
        out[str(provider)] = sorted({s for s in group["source"].astype(str) if s})
    return dict(sorted(out.items()))
