"""The rich console that rich-rendered tables (prices, backtest) are captured from: plain text
unless the rendering goes to a terminal that accepts colour."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


def capture_console(width: int | None = None, color: bool = False) -> Console:
    """A console to `capture()` a rendering from. `color=False` (a file, a pipe, golden files) gives no
    escape codes at all, bold and italic included; NO_COLOR always wins."""
    from rich.console import Console

    plain = not color or bool(os.environ.get("NO_COLOR"))
    return Console(
        no_color=plain or None,
        color_system=None if plain else "auto",
        highlight=False,
        width=width,
        soft_wrap=False,
    )
