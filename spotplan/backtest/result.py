"""The one versioned backtest result, `spotplan.backtest/1`, and its renderings (table, csv,
markdown, json). Every rendering is made from the result; nothing is recomputed here.

Per policy: `mean_cost`, `p75_cost`, `mean_cost_vs_optimal` (mean cost over the optimum's mean
cost on the same starts; the optimum is solved whether or not it is a listed policy),
`mean_ratio_to_optimal` and `p75_ratio_to_optimal` (over per-start ratios), `deadline_misses`, and
mean `spot_hours` / `on_demand_hours` per run. Per start: the cost of each policy.

A run that misses its deadline is finished on on-demand afterwards; free of the deadline it can
cost less than the optimum, so the renderings mark the ratios of a policy with misses (`†`) rather
than let it look better than the optimum.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from pydantic import BaseModel, Field

SCHEMA = "spotplan.backtest/1"


class JobInfo(BaseModel):
    compute_hours: float
    deadline_hours: float
    changeover_hours: float
    instances: int
    spot_price: float
    on_demand_price: float


class TraceInfo(BaseModel):
    name: str
    source: str
    gap_seconds: float
    ticks: int
    hours: float
    availability: float
    mean_available_run_hours: float
    has_prices: bool
    starts: int
    grains_per_tick: int
    changeover_hours_effective: float
    compute_hours_effective: float
    deadline_hours_effective: float
    notes: list[str] = Field(default_factory=list)


class PolicySummary(BaseModel):
    name: str
    runs: int
    mean_cost: float
    p75_cost: float
    mean_cost_vs_optimal: float | None
    mean_ratio_to_optimal: float | None
    p75_ratio_to_optimal: float | None
    deadline_misses: int
    spot_hours: float
    on_demand_hours: float


class StartResult(BaseModel):
    trace: str
    start_tick: int
    start_hours: float
    costs: dict[str, float]
    missed: list[str] = Field(default_factory=list)


class CalibrationRow(BaseModel):
    workload: str
    band: str | None
    predicted_mtbf_hours: float | None
    predicted_wall_hours: float
    predicted_cost: float
    replayed_wall_hours: float
    replayed_cost: float
    replayed_cost_p90: float
    replayed_interruptions: float
    runs: int
    cost_error_pct: float
    refit_wall_hours: float | None = None
    refit_cost: float | None = None


class Calibration(BaseModel):
    rows: list[CalibrationRow]
    fitted_mtbf_hours: float | None
    fitted_interruptions: int
    fitted_exposure_hours: float
    band_mtbf_hours: dict[str, float]
    notes: list[str] = Field(default_factory=list)


class BacktestResult(BaseModel):
    schema_: str = Field(SCHEMA, alias="schema")
    generated_at: str
    job: JobInfo
    seed: int
    starts_per_trace: int
    traces: list[TraceInfo]
    policies: list[PolicySummary]
    starts: list[StartResult]
    example: dict[str, Any] | None = None
    calibration: Calibration | None = None
    notes: list[str] = Field(default_factory=list)

    model_config = {"populate_by_name": True}

    def policy(self, name: str) -> PolicySummary:
        for p in self.policies:
            if p.name == name:
                return p
        raise KeyError(name)


def render(result: BacktestResult, fmt: str, *, color: bool = False) -> str:
    if fmt == "json":
        return to_json(result)
    if fmt == "csv":
        return to_csv(result)
    if fmt == "markdown":
        return to_markdown(result)
    if fmt == "table":
        return to_table(result, color=color)
    raise ValueError(f"unknown format {fmt!r}")


def to_json(result: BacktestResult) -> str:
    doc = result.model_dump(by_alias=True, mode="json")
    return json.dumps(doc, indent=2)


MISS_MARK = "†"


def _ratio(v: float | None, missed: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}×" + (MISS_MARK if missed else "")


def _headline(result: BacktestResult) -> str:
    j = result.job
    n_starts = len(result.starts)
    return (
        f"Backtest: {j.compute_hours:g} h job, deadline {j.deadline_hours:g} h, changeover "
        f"{j.changeover_hours:g} h, {j.instances} instance(s); {n_starts} starts on "
        f"{sum(1 for t in result.traces if t.starts)} trace(s), seed {result.seed}"
    )


def _footnotes(result: BacktestResult) -> list[str]:
    j = result.job
    priced = [t.name for t in result.traces if t.has_prices]
    lines = [
        f"On-demand ${j.on_demand_price:g}/h; spot "
        + (f"from the trace prices ({', '.join(priced)}), else " if priced else "")
        + f"${j.spot_price:g}/h; costs are per job (× {j.instances} instance(s)).",
        "vs optimal = mean cost ÷ the omniscient optimum's mean cost on the same starts"
        + ("." if any(p.name == "optimal" for p in result.policies) else " (solved, though not listed)."),
        "A missed deadline is finished on on-demand afterwards and counted as a miss.",
    ]
    missers = [p.name for p in result.policies if p.deadline_misses]
    if missers:
        lines.append(
            f"{MISS_MARK} {', '.join(missers)} missed deadlines: a run finished after its deadline "
            "can cost less than one that meets it, so these ratios can fall below the optimum's 1."
        )
    adjusted = {
        (t.changeover_hours_effective, t.gap_seconds)
        for t in result.traces
        if abs(t.changeover_hours_effective - j.changeover_hours) > 1e-9
    }
    for d_eff, gap in sorted(adjusted):
        lines.append(f"At the {gap:g} s tick the changeover is {d_eff * 3600:.0f} s (nearest grain).")
    rounded = {
        (t.compute_hours_effective, t.gap_seconds, t.gap_seconds / t.grains_per_tick)
        for t in result.traces
        if abs(t.compute_hours_effective - j.compute_hours) > 1e-9
    }
    for c_eff, gap, grain in sorted(rounded):
        lines.append(
            f"At the {gap:g} s tick the job is {c_eff:.6g} h (rounded up to the {grain:.3g} s grain)."
        )
    lines.extend(result.notes)
    return lines


_COLUMNS = [
    ("policy", "Policy"),
    ("mean_cost", "Mean $"),
    ("p75_cost", "P75 $"),
    ("vs_opt", "vs optimal"),
    ("p75_ratio", "P75 ratio"),
    ("misses", "Misses"),
    ("spot_h", "Spot h"),
    ("od_h", "On-demand h"),
]


def _policy_rows(result: BacktestResult) -> list[dict[str, str]]:
    return [
        {
            "policy": p.name,
            "mean_cost": f"{p.mean_cost:,.2f}",
            "p75_cost": f"{p.p75_cost:,.2f}",
            "vs_opt": _ratio(p.mean_cost_vs_optimal, bool(p.deadline_misses)),
            "p75_ratio": _ratio(p.p75_ratio_to_optimal, bool(p.deadline_misses)),
            "misses": f"{p.deadline_misses}/{p.runs}",
            "spot_h": f"{p.spot_hours:.1f}",
            "od_h": f"{p.on_demand_hours:.1f}",
        }
        for p in result.policies
    ]


def to_table(result: BacktestResult, color: bool = False) -> str:
    from rich.table import Table

    table = Table(show_edge=False)
    for key, label in _COLUMNS:
        table.add_column(label, justify="left" if key == "policy" else "right")
    for row in _policy_rows(result):
        table.add_row(*[row[k] for k, _ in _COLUMNS])
    from spotplan.report._console import capture_console

    console = capture_console(width=200, color=color)
    with console.capture() as cap:
        console.print(_headline(result), highlight=False)
        console.print(table)
        cal = result.calibration
        if cal is not None:
            fitted = f"{cal.fitted_mtbf_hours:.1f} h" if cal.fitted_mtbf_hours else "n/a"
            console.print(
                f"\nCalibration of analyze: fitted MTBF {fitted} from {cal.fitted_interruptions} "
                f"preemptions over {cal.fitted_exposure_hours:.0f} instance-hours",
                highlight=False,
            )
            console.print(_calibration_table(result))
        for line in _footnotes(result):
            console.print(f"  * {line}", highlight=False)
    return cap.get()


def _calibration_table(result: BacktestResult) -> Any:
    from rich.table import Table

    cal = result.calibration
    assert cal is not None
    table = Table(show_edge=False)
    labels = ("Workload", "Band", "MTBF h", "Predicted $", "Replayed $", "Error", "Refit $", "Pred. h", "Replayed h")
    for label in labels:
        table.add_column(label, justify="left" if label in ("Workload", "Band") else "right")
    for r in cal.rows:
        table.add_row(
            r.workload,
            r.band or "-",
            f"{r.predicted_mtbf_hours:.0f}" if r.predicted_mtbf_hours else "-",
            f"{r.predicted_cost:,.2f}",
            f"{r.replayed_cost:,.2f}",
            f"{r.cost_error_pct:+.1f}%",
            f"{r.refit_cost:,.2f}" if r.refit_cost is not None else "-",
            f"{r.predicted_wall_hours:.1f}",
            f"{r.replayed_wall_hours:.1f}",
        )
    return table


def to_markdown(result: BacktestResult) -> str:
    out = [f"**{_headline(result)}**", ""]
    out.append("| " + " | ".join(label for _, label in _COLUMNS) + " |")
    out.append("|" + "|".join("---" if k == "policy" else "---:" for k, _ in _COLUMNS) + "|")
    for row in _policy_rows(result):
        out.append("| " + " | ".join(row[k] for k, _ in _COLUMNS) + " |")
    if result.calibration is not None:
        cal = result.calibration
        out += ["", "**Calibration of analyze**", ""]
        out.append("| Workload | Band | MTBF h | Predicted $ | Replayed $ | Error | With fitted MTBF $ |")
        out.append("|---|---|---:|---:|---:|---:|---:|")
        for r in cal.rows:
            mtbf = f"{r.predicted_mtbf_hours:.0f}" if r.predicted_mtbf_hours else "-"
            refit = f"{r.refit_cost:,.2f}" if r.refit_cost is not None else "-"
            out.append(
                f"| {r.workload} | {r.band or '-'} | {mtbf} | {r.predicted_cost:,.2f} | "
                f"{r.replayed_cost:,.2f} | {r.cost_error_pct:+.1f}% | {refit} |"
            )
        if cal.fitted_mtbf_hours:
            out += ["", f"Fitted MTBF from the traces: {cal.fitted_mtbf_hours:.1f} h."]
    out += [
        "",
        "Per trace:",
        "",
        "| Trace | Tick s | Hours | Spot availability | Mean spot run h | Starts |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for t in result.traces:
        out.append(
            f"| {t.name} | {t.gap_seconds:g} | {t.hours:.1f} | {t.availability:.2f} | "
            f"{t.mean_available_run_hours:.2f} | {t.starts} |"
        )
    out.append("")
    out.extend(f"- {line}" for line in _footnotes(result))
    return "\n".join(out) + "\n"


def to_csv(result: BacktestResult) -> str:
    """One row per start: trace, start, then the cost of each policy (and which missed)."""
    names = [p.name for p in result.policies]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["trace", "start_tick", "start_hours", *[f"cost_{n}" for n in names], "missed"])
    for s in result.starts:
        w.writerow(
            [s.trace, s.start_tick, s.start_hours]
            + [f"{s.costs[n]:.4f}" if n in s.costs else "" for n in names]
            + [";".join(s.missed)]
        )
    return buf.getvalue()
