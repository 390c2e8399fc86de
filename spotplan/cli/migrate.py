"""`spotplan migrate`, `spotplan migrations list|show`, `spotplan permissions` (to be written)."""

from __future__ import annotations

import typer

migrations_app = typer.Typer(help="Show the migrate journal.", no_args_is_help=True)


def migrate() -> None:
    """Execute or dry-run an approved plan (not implemented yet)."""
    raise typer.Exit(1)


def permissions() -> None:
    """Print the permissions migrate needs (not implemented yet)."""
    raise typer.Exit(1)
