"""The terminal table (rich): one row per workload grouped by status, a TOTAL footer, then the
assumptions footnote and the coverage line.

At 110 columns and more it shows every column; narrower, it folds current and target into one
"move" column and drops the interruption count so that 80 columns stay readable. With
`color=False` the text carries no escape codes at all (NO_COLOR, pipes, golden files).
"""

from __future__ import annotations

import io

from spotplan.models import AnalysisResult, WorkloadResult
from spotplan.report import _assumptions
from spotplan.report._format import (
    CANDIDATE_STATUSES,
    by_status,
    codes,
    coverage_line,
    current_label,
    number,
    percent,
    projected,
    status_counts,
    target_label,
    total_pct,
    usd,
)

STATUS_STYLES = {
    "recommended": "green",
    "conditional": "yellow",
    "not-worth-it": "dim magenta",
    "ineligible": "red",
    "already-spot": "cyan",
}
DEFAULT_WIDTH = 120
#: Below this width the compact layout is used.
WIDE = 110


def _notes(w: WorkloadResult) -> str:
    if w.status in CANDIDATE_STATUSES:
        return codes(w.warnings)
    return ", ".join(filter(None, (codes(w.reasons), codes(w.warnings))))


def render_table(result: AnalysisResult, *, color: bool = False, width: int | None = None) -> str:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    width = width or DEFAULT_WIDTH
    wide = width >= WIDE
    buf = io.StringIO()
    console = Console(
        file=buf,
        width=width,
        color_system="standard" if color else None,
        force_terminal=color,
        no_color=not color,
        highlight=False,
        emoji=False,
        markup=False,
        legacy_windows=False,
        soft_wrap=False,
    )

    t = result.totals
    table = Table(
        box=box.SIMPLE_HEAD,
        show_footer=True,
        header_style="bold",
        footer_style="bold",
        pad_edge=False,
        title=f"Spot savings, {result.prices.source}" if wide else None,
        title_justify="left",
        expand=False,
    )
    table.add_column("Workload", footer="TOTAL", overflow="fold", ratio=None)
    table.add_column("Status", no_wrap=True)
    if wide:
        table.add_column("Current", overflow="fold")
        table.add_column("Best target", overflow="fold")
    else:
        table.add_column("Move", overflow="fold")
    table.add_column("Current $", justify="right", footer=usd(t.current_cost), no_wrap=True)
    table.add_column("Spot $*", justify="right", footer=usd(t.projected_cost), no_wrap=True)
    table.add_column("Savings $", justify="right", footer=usd(t.savings), no_wrap=True)
    table.add_column("%", justify="right", footer=percent(total_pct(result)), no_wrap=True)
    if wide:
        table.add_column("Intr.", justify="right", no_wrap=True)
    table.add_column("P90 h", justify="right", no_wrap=True)
    table.add_column("Notes", overflow="fold")

    for w in by_status(result):
        best = w.best
        style = STATUS_STYLES.get(w.status, "")
        cells: list[str | Text] = [w.id, Text(w.status, style=style)]
        if wide:
            cells += [current_label(w), target_label(best)]
        else:
            cells.append(f"{current_label(w)} → {target_label(best)}" if best else current_label(w))
        cells.append(usd(w.current.cost))
        if best is None:
            cells += ["-", "-", "-"]
            if wide:
                cells.append("-")
            cells.append("-")
        else:
            savings_style = "green" if best.savings > 0 else "red"
            cells += [
                usd(projected(best)),
                Text(usd(best.savings), style=savings_style if w.status in CANDIDATE_STATUSES else "dim"),
                percent(best.savings_pct),
            ]
            if wide:
                cells.append(number(best.expected_interruptions, 1))
            cells.append(number(best.wall_hours_p90, 1))
        cells.append(_notes(w))
        table.add_row(*cells)

    console.print(table)
    console.print(
        Text(
            "* Spot $ is the projected cost on spot with the one-time migration included. "
            + _assumptions.footnote(result)
            + ".",
            style="dim",
        )
    )
    console.print(coverage_line(result, status_counts(result)))
    return buf.getvalue()
