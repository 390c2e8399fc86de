"""`spotplan prices show`."""

from __future__ import annotations

from spotplan.cli.prices import app


@app.command("show")
def show() -> None:
    """Show prices (not implemented yet)."""
    raise SystemExit(1)
