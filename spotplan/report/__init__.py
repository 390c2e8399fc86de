"""Renderers over the one versioned analysis result (schema spotplan.analysis/1): table, csv,
markdown and json, chosen by one switch (as infracost's FormatOutput does)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from spotplan.errors import InputError

if TYPE_CHECKING:
    from spotplan.models import AnalysisResult

FORMATS: tuple[str, ...] = ("table", "csv", "markdown", "json")


def render(result: AnalysisResult, fmt: str, *, color: bool = False, width: int | None = None) -> str:
    """Render `result` as `fmt` (table, csv, markdown or json); the text ends with a newline.

    `color` and `width` only affect the table; `width=None` means the terminal's width (COLUMNS),
    else 120. An OutputFormat enum member works as `fmt` too.
    """
    name = str(getattr(fmt, "value", fmt)).lower()
    if name == "json":
        from spotplan.report.json import render_json

        return render_json(result)
    if name == "csv":
        from spotplan.report.csv import render_csv

        return render_csv(result)
    if name in ("markdown", "md"):
        from spotplan.report.markdown import render_markdown

        return render_markdown(result)
    if name == "table":
        from spotplan.report.table import render_table

        return render_table(result, color=color, width=width)
    raise InputError(f"unknown output format {name!r}: expected one of {', '.join(FORMATS)}")
