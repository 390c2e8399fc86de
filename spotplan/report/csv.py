"""The CSV rendering: one row per workload with the §4.3 fields flattened.

Columns are stable (`COLUMNS`): id, status, reason and warning codes joined by ';', the current
deployment, `best_` plus every field of the best offer (empty when there is none), and the number of
alternatives. Money is in cents; hours, hourly prices and other quantities keep full precision.
Text cells that a spreadsheet would run as a formula are prefixed with a quote.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

from spotplan.models import AnalysisResult, OfferResult, WorkloadResult
from spotplan.report._format import cents

_Fmt = Callable[[Any], str]


# Cells starting with these are run as formulas by spreadsheets (CSV injection).
_FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")


def _text(value: Any) -> str:
    """Free text (ids, regions, zones, types come from user files): never a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_LEADS) else text


def _number(value: float | None) -> str:
    # Only money is rounded when rendered (§4.3): hours, counts, rates and prices keep full precision
    # so a reader can recompute the cost model from the CSV alone.
    return "" if value is None else repr(float(value))


def _int(value: int | None) -> str:
    return "" if value is None else str(int(value))


CURRENT_FIELDS: tuple[tuple[str, _Fmt], ...] = (
    ("provider", _text),
    ("region", _text),
    ("instance_type", _text),
    ("market", _text),
    ("count", _int),
    ("price_per_hour", _number),
    ("hours", _number),
    ("cost", cents),
)

BEST_FIELDS: tuple[tuple[str, _Fmt], ...] = (
    ("provider", _text),
    ("region", _text),
    ("zone", _text),
    ("instance_type", _text),
    ("price_per_hour", _number),
    ("interruption_band", _text),
    ("mtbf_hours", _number),
    ("expected_interruptions", _number),
    ("lost_hours_per_interruption", _number),
    ("restart_hours", _number),
    ("wall_hours", _number),
    ("wall_hours_p90", _number),
    ("cost", cents),
    ("cost_p90", cents),
    ("migration_cost", cents),
    ("savings", cents),
    ("savings_pct", _number),
    ("recommended_checkpoint_minutes", _number),
    ("price_per_hour_p95", _number),
)

COLUMNS: tuple[str, ...] = (
    ("id", "status", "reasons", "warnings")
    + tuple(f"current_{name}" for name, _ in CURRENT_FIELDS)
    + tuple(f"best_{name}" for name, _ in BEST_FIELDS)
    + ("alternatives",)
)

_EMPTY_BEST = [""] * len(BEST_FIELDS)


def _row(w: WorkloadResult) -> list[str]:
    cur = w.current
    best: OfferResult | None = w.best
    row = [
        _text(w.id),
        w.status,
        ";".join(r.code for r in w.reasons),
        ";".join(r.code for r in w.warnings),
    ]
    row += [fmt(getattr(cur, name)) for name, fmt in CURRENT_FIELDS]
    if best is None:
        row += _EMPTY_BEST
    else:
        row += [fmt(getattr(best, name)) for name, fmt in BEST_FIELDS]
    row.append(str(len(w.alternatives)))
    return row


def render_csv(result: AnalysisResult) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(_row(w) for w in result.workloads)
    return buf.getvalue()
