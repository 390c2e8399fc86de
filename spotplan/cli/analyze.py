"""`spotplan analyze` (to be written)."""

from __future__ import annotations

import typer


def analyze(inventory: list[str]) -> None:
    """Analyze an inventory (not implemented yet)."""
    raise typer.Exit(1)
