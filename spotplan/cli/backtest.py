"""`spotplan backtest` (to be written)."""

from __future__ import annotations

import typer


def backtest() -> None:
    """Replay spot traces (not implemented yet)."""
    raise typer.Exit(1)
