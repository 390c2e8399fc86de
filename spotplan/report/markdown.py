"""The markdown report: it leads with the total, then the candidates, then the rest with their
reasons, then the assumptions and the coverage line (DESIGN.md §4.3)."""

from __future__ import annotations

from spotplan.models import CANDIDATE_STATUSES, AnalysisResult, Reason, WorkloadResult
from spotplan.report import _assumptions
from spotplan.report._format import (
    by_status,
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

TITLE = "# Spot savings report"

_CANDIDATE_HEAD = (
    "| Workload | Status | Current → best target | Current cost | Projected cost incl. migration | Savings | Savings % "
    "| P90 wall h | Interruptions | Checkpoint every | Conditions, warnings |\n"
    "|---|---|---|--:|--:|--:|--:|--:|--:|--:|---|"
)
_REST_HEAD = (
    "| Workload | Status | Current | Best savings | Reasons |\n"
    "|---|---|---|--:|---|"
)

#: What a row without a reason says, when its status explains itself.
_NO_REASON = {"already-spot": "already runs on spot capacity"}


def _cell(text: str) -> str:
    """Text safe inside a table cell: pipes escaped, line breaks flattened."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _code(text: str) -> str:
    return f"`{text}`" if "`" not in text else text


def _codes(reasons: list[Reason]) -> str:
    return " ".join(_code(r.code) for r in reasons)


def _explained(reasons: list[Reason]) -> str:
    return "; ".join(f"{_code(r.code)} {r.message}".rstrip() for r in reasons)


def _candidate_row(w: WorkloadResult) -> str:
    best = w.best
    if best is None:  # a candidate always has a best offer; render defensively all the same
        cells = ["-"] * 8
    else:
        minutes = best.recommended_checkpoint_minutes
        cells = [
            usd(w.current.cost),
            usd(projected(best)),
            usd(best.savings),
            percent(best.savings_pct),
            number(best.wall_hours_p90, 1),
            number(best.expected_interruptions, 1),
            "-" if minutes is None else f"{number(minutes, 0)} min",
            _codes([*w.reasons, *w.warnings]),
        ]
    move = f"{current_label(w)} → {target_label(best)}"
    return "| " + " | ".join(_cell(c) for c in [w.id, w.status, move, *cells]) + " |"


def _rest_row(w: WorkloadResult) -> str:
    reasons = _explained(w.reasons) or _NO_REASON.get(w.status, "-")
    if w.warnings:
        reasons += "; warnings: " + _codes(w.warnings)
    savings = usd(w.best.savings) if w.best is not None else "-"
    cells = [w.id, w.status, current_label(w), savings, reasons]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def render_markdown(result: AnalysisResult) -> str:
    counts = status_counts(result)
    ordered = by_status(result)
    candidates = [w for w in ordered if w.status in CANDIDATE_STATUSES]
    rest = [w for w in ordered if w.status not in CANDIDATE_STATUSES]
    t = result.totals
    pct = total_pct(result)
    nrec, ncond = counts.get("recommended", 0), counts.get("conditional", 0)

    out: list[str] = [TITLE, ""]
    out.append(
        f"**Total savings: {usd(t.savings)} ({percent(pct, missing='n/a')})** over {nrec} recommended"
        f" + {ncond} conditional workload{'' if nrec + ncond == 1 else 's'}: current cost"
        f" {usd(t.current_cost)} → projected {usd(t.projected_cost)} (the moved workloads on spot, migration"
        " included; the rest at their current cost)."
    )

    out += ["", "## Candidates", ""]
    if candidates:
        out.append(_CANDIDATE_HEAD)
        out.extend(_candidate_row(w) for w in candidates)
        warned = [w for w in candidates if w.reasons or w.warnings]
        if warned:
            out += ["", "Conditions and warnings:", ""]
            for w in warned:
                out.extend(f"- **{_cell(w.id)}**: {_explained([r])}" for r in [*w.reasons, *w.warnings])
    else:
        out.append("No workload is a spot candidate.")

    out += ["", "## Not moved", ""]
    if rest:
        out.append(_REST_HEAD)
        out.extend(_rest_row(w) for w in rest)
    else:
        out.append("Every workload is a candidate.")

    out += ["", "## Assumptions", ""]
    out.extend(f"- {key}: {value}" for key, value in _assumptions.items(result))
    out += [
        "",
        f"_{coverage_line(result, counts)}. Generated {result.generated_at} ({result.schema_})._",
        "",
    ]
    return "\n".join(out)
