"""How numbers and shared phrases read in the human renderings (table, markdown, csv).

Money is rounded to cents half-up from the shortest decimal form of the float (so 1.005 reads
1.01, as a person expects); the JSON document keeps the unrounded floats, and the CSV rounds only
money (hours and hourly prices keep full precision, see report.csv).
"""

from __future__ import annotations

import math
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from spotplan.models import AnalysisResult, OfferResult, WorkloadResult

#: Display order of statuses: candidates first, then the rest.
STATUS_ORDER: tuple[str, ...] = ("recommended", "conditional", "not-worth-it", "already-spot", "ineligible")

_QUANTA = {places: Decimal(1).scaleb(-places) for places in range(7)}


def fixed(value: float | None, places: int = 2) -> str:
    """`value` rounded half-up to `places` decimals without separators; '' for None."""
    if value is None:
        return ""
    if not math.isfinite(value):
        return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
    try:
        text = str(Decimal(repr(value)).quantize(_QUANTA[places], rounding=ROUND_HALF_UP))
    except InvalidOperation:  # beyond Decimal's 28 digits: nothing left to round anyway
        text = f"{value:.{places}f}"
    # Rounding a tiny negative must not print "-0.00".
    if text.startswith("-") and not text.strip("-0."):
        text = text[1:]
    return text


def cents(value: float | None) -> str:
    """Money for machines: '1234.57'."""
    return fixed(value, 2)


def usd(value: float | None, *, missing: str = "-") -> str:
    """Money for people: '$1,234.57', '-$12.00'."""
    if value is None:
        return missing
    text = fixed(value, 2)
    if text in ("inf", "-inf", "nan"):
        return text
    negative = text.startswith("-")
    whole, _, frac = text.lstrip("-").partition(".")
    return f"{'-' if negative else ''}${int(whole):,}.{frac}"


def number(value: float | None, places: int = 1, *, missing: str = "-") -> str:
    """A plain quantity for people, with thousands separators: '1,234.5'."""
    if value is None:
        return missing
    text = fixed(value, places)
    if text in ("inf", "-inf", "nan"):
        return text
    negative = text.startswith("-")
    whole, dot, frac = text.lstrip("-").partition(".")
    return f"{'-' if negative else ''}{int(whole):,}{dot}{frac}"


def percent(value: float | None, *, missing: str = "-") -> str:
    return missing if value is None else f"{number(value, 1)}%"


def projected(best: OfferResult) -> float:
    """What the move costs on spot, the one-time migration included."""
    return best.cost + best.migration_cost


def total_pct(result: AnalysisResult) -> float | None:
    """Total savings as a share of the current cost of every workload; None when that is zero."""
    current = result.totals.current_cost
    return 100.0 * result.totals.savings / current if current else None


def place(provider: str, region: str, zone: str | None = None) -> str:
    """'aws/us-east-1b' when the zone names its region (AWS, GCP), else 'azure/eastus/1'."""
    if not zone:
        return f"{provider}/{region}"
    if zone.startswith(region):
        return f"{provider}/{zone}"
    return f"{provider}/{region}/{zone}"


def current_label(w: WorkloadResult) -> str:
    cur = w.current
    count = f" x{cur.count}" if cur.count != 1 else ""
    return f"{place(cur.provider, cur.region)} {cur.instance_type}{count}"


def target_label(best: OfferResult | None, *, missing: str = "-") -> str:
    if best is None:
        return missing
    return f"{place(best.provider, best.region, best.zone)} {best.instance_type}"


def status_counts(result: AnalysisResult) -> Counter[str]:
    return Counter(w.status for w in result.workloads)


def coverage_line(result: AnalysisResult, counts: Counter[str] | None = None) -> str:
    """'12 workloads: 7 recommended, 2 conditional, 1 not-worth-it, 1 already-spot, 1 ineligible'.

    Recommended and conditional are always listed; the other statuses only when nonzero.
    """
    counts = status_counts(result) if counts is None else counts
    n = len(result.workloads)
    parts = [f"{counts.get(s, 0)} {s}" for s in ("recommended", "conditional")]
    parts += [f"{counts[s]} {s}" for s in ("not-worth-it", "already-spot", "ineligible") if counts.get(s)]
    return f"{n} workload{'' if n == 1 else 's'}: " + ", ".join(parts)


def by_status(result: AnalysisResult) -> list[WorkloadResult]:
    """Workloads grouped in STATUS_ORDER, keeping the planner's order inside each group."""
    rank = {s: i for i, s in enumerate(STATUS_ORDER)}
    return sorted(result.workloads, key=lambda w: rank.get(w.status, len(rank)))
