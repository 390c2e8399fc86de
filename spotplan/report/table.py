"""The terminal table: one row per workload grouped by status, a TOTAL footer, then the
assumptions footnote and the coverage line.

Two layouts, picked by the width. "standard" (when it fits, e.g. at 120 columns): workload, status,
current → best target with the reason/warning codes under it, current $, spot $ (migration
included), savings $ and %, expected interruptions and P90 wall hours. "compact" (e.g. at 80): the
target and the codes go under the workload id, and only current $, savings $ and % stay. The codes
share the widest text column of each layout, which is what lets the standard one fit 120 columns.
Numbers never wrap or get cropped; only the workload and target columns wrap. With `color=False`
the text carries no escape codes at all (NO_COLOR, pipes, golden files).
"""

from __future__ import annotations

import shutil
import textwrap
from dataclasses import dataclass

from spotplan.models import CANDIDATE_STATUSES, AnalysisResult, WorkloadResult
from spotplan.report import _assumptions
from spotplan.report._format import (
    by_status,
    coverage_line,
    current_label,
    number,
    percent,
    place,
    projected,
    status_counts,
    target_label,
    total_pct,
    usd,
)
from spotplan.report._grid import Cell, Column, Grid, Para, longest_word, styled, widest

STATUS_STYLES = {
    "recommended": "green",
    "conditional": "yellow",
    "not-worth-it": "dim magenta",
    "ineligible": "red",
    "already-spot": "cyan",
}
DEFAULT_WIDTH = 120
#: Below this width the compact layout is used whatever the content.
STANDARD_MIN_WIDTH = 100
ARROW = "→ "
GAP = 2
#: Long workload ids fold, but never narrower than this.
WORKLOAD_MIN = 10


@dataclass(frozen=True)
class _Row:
    """The cells of one workload, computed once and shared by both layouts."""

    w: WorkloadResult
    move: list[Para]  # current, then "→ target", then the codes
    target: list[Para]  # "→ target", or nothing
    codes: list[Para]
    lead: str  # "→ provider/zone", which must not be split from its arrow; "" without a target
    status: list[Para]
    cost: str
    spot: str
    savings: list[Para]
    pct: str
    intr: str
    p90: str


def _codes(w: WorkloadResult) -> list[str]:
    """Why it has its status (a conditional's conditions, why the rest are not moved), then warnings."""
    return [r.code for r in w.reasons] + [r.code for r in w.warnings]


def _row(w: WorkloadResult) -> _Row:
    best = w.best
    spot = pct = intr = p90 = "-"
    savings: list[Para] = [("-", "")]
    target: list[Para] = []
    lead = ""
    codes: list[Para] = [(code, "dim") for code in _codes(w)]
    if best is not None:
        spot, pct = usd(projected(best)), percent(best.savings_pct)
        intr, p90 = number(best.expected_interruptions, 1), number(best.wall_hours_p90, 1)
        candidate = w.status in CANDIDATE_STATUSES
        style = ("green" if best.savings > 0 else "red") if candidate else "dim"
        savings = [(usd(best.savings), style)]
        target = [(ARROW + target_label(best), "")]
        lead = ARROW + place(best.provider, best.region, best.zone)
    return _Row(
        w=w,
        move=[(current_label(w), ""), *target, *codes],
        target=target,
        codes=codes,
        lead=lead,
        status=[(w.status, STATUS_STYLES.get(w.status, ""))],
        cost=usd(w.current.cost),
        spot=spot,
        savings=savings,
        pct=pct,
        intr=intr,
        p90=p90,
    )


_Layout = tuple[list[Column], list[list[Cell]], list[int]]


def _natural(columns: list[Column], cells: list[list[Cell]]) -> list[int]:
    return [max(widest([c.header, c.footer]), widest(col)) for c, col in zip(columns, cells)]


def _standard(rows: list[_Row], footers: dict[str, str], width: int) -> _Layout | None:
    """The standard layout when it fits `width` with numbers whole and words unbroken."""
    columns = [
        Column("Workload", "TOTAL"),
        Column("Status"),
        Column("Current → best target"),
        Column("Current $", footers["current"], right=True),
        Column("Spot $*", footers["spot"], right=True),
        Column("Savings $", footers["savings"], right=True),
        Column("%", footers["pct"], right=True),
        Column("Intr.", right=True),
        Column("P90 h", right=True),
    ]
    cells: list[list[Cell]] = [
        [r.w.id for r in rows],
        [r.status for r in rows],
        [r.move for r in rows],
        [r.cost for r in rows],
        [r.spot for r in rows],
        [r.savings for r in rows],
        [r.pct for r in rows],
        [r.intr for r in rows],
        [r.p90 for r in rows],
    ]
    widths = _natural(columns, cells)
    room = width - widths[1] - sum(widths[3:]) - GAP * (len(columns) - 1)
    move_min = max(longest_word([*cells[2], columns[2].header]), widest([r.lead for r in rows]))
    if room < move_min + min(widths[0], WORKLOAD_MIN):
        return None
    if widths[0] + widths[2] > room:
        widths[0] = min(widths[0], room - move_min)
        widths[2] = room - widths[0]
    return columns, cells, widths


def _compact(rows: list[_Row], footers: dict[str, str], width: int) -> _Layout:
    columns = [
        Column("Workload", "TOTAL"),
        Column("Status"),
        Column("Current $", footers["current"], right=True),
        Column("Savings $", footers["savings"], right=True),
        Column("%", footers["pct"], right=True),
    ]
    cells: list[list[Cell]] = [
        [[(r.w.id, ""), *r.target, *r.codes] for r in rows],
        [r.status for r in rows],
        [r.cost for r in rows],
        [r.savings for r in rows],
        [r.pct for r in rows],
    ]
    widths = _natural(columns, cells)
    room = width - sum(widths[1:]) - GAP * (len(columns) - 1)
    if widths[0] > room:
        widths[0] = max(room, WORKLOAD_MIN)
    return columns, cells, widths


def render_table(result: AnalysisResult, *, color: bool = False, width: int | None = None) -> str:
    """The table at `width` columns; None means the terminal's width (COLUMNS), else 120."""
    width = width or shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns
    t = result.totals
    footers = {
        "current": usd(t.current_cost),
        "spot": usd(t.projected_cost),
        "savings": usd(t.savings),
        "pct": percent(total_pct(result)),
    }
    rows = [_row(w) for w in by_status(result)]
    standard = _standard(rows, footers, width) if width >= STANDARD_MIN_WIDTH else None
    columns, cells, widths = standard if standard is not None else _compact(rows, footers, width)
    lines = Grid(columns, widths, color=color, gap=GAP).render(list(zip(*cells)))

    spot_note = (
        "* Spot $: projected cost on spot, one-time migration included; its TOTAL is the fleet's projected cost,"
        " the workloads not moved at their current cost."
        if standard is not None
        else "* Savings are net of the one-time migration."
    )
    footnote = f"{spot_note} {_assumptions.footnote(result)}."
    wrapped = textwrap.wrap(footnote, width, break_on_hyphens=False)
    lines += [styled(line, "dim", color=color) for line in wrapped]
    # The coverage line is a contract ("12 workloads: ..."): never wrapped, always last.
    lines.append(coverage_line(result, status_counts(result)))
    return "\n".join(lines) + "\n"
