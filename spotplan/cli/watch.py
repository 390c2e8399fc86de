"""`spotplan watch` (to be written)."""

from __future__ import annotations

import typer


def watch() -> None:
    """Watch for reclaim notices (not implemented yet)."""
    raise typer.Exit(1)
