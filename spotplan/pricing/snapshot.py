"""The bundled price snapshot (`pricing_data/`, shipped inside the wheel as `spotplan/pricing_data`)."""

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
    from spotplan.pricing.table import read_price_paths

    return read_price_paths(snapshot_files())
