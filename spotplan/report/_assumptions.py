"""Reading the result's `assumptions` (and `prices`) for people: the one-line footnote of the table
and the full list of the markdown report.

The planner owns the keys; this module knows the few that a footnote must name (`window_hours`,
`mtbf_hours_by_band`, `p90.samples`/`p90.seed`, `overhead_model`) and prints everything else
generically, so a new assumption shows up in the markdown list without a change here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from spotplan.models import AnalysisResult


def value_text(value: Any) -> str:
    """One assumption value as a short human string."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {value_text(v)}" for k, v in value.items()) or "none"
    if isinstance(value, (list, tuple)):
        return ", ".join(value_text(v) for v in value) or "none"
    return str(value)


def when(stamp: str) -> str:
    """A timestamp at midnight UTC reads as its date."""
    for midnight in ("T00:00:00Z", "T00:00:00+00:00"):
        if stamp.endswith(midnight):
            return stamp[: -len(midnight)]
    return stamp


def window_text(a: Mapping[str, Any]) -> str | None:
    """The price window as '30d' / '12h'."""
    hours = a.get("window_hours")
    if not isinstance(hours, (int, float)) or isinstance(hours, bool):
        return None
    return f"{hours / 24:g}d" if hours % 24 == 0 else f"{hours:g}h"


def as_of_text(result: AnalysisResult) -> str:
    """'2026-11-01', or per provider when their snapshots differ: 'aws 2025-11-30, gcp 2026-07-30'."""
    by_provider = result.prices.as_of_by_provider
    if len(set(by_provider.values())) > 1:
        return ", ".join(f"{p} {when(str(t))}" for p, t in by_provider.items())
    return when(result.prices.as_of) if result.prices.as_of else "an unknown date"


def footnote(result: AnalysisResult) -> str:
    """'Spot prices: time-weighted mean over 30d of <source>, as of <date>; MTBF by band: ...; ...'."""
    a = result.assumptions
    source = f"{result.prices.source}, as of {as_of_text(result)}"
    window = window_text(a)
    parts = [f"Spot prices: time-weighted mean over {window} of {source}" if window else f"Spot prices: {source}"]
    mtbf = a.get("mtbf_hours_by_band")
    if isinstance(mtbf, Mapping) and mtbf:
        parts.append("MTBF by band: " + ", ".join(f"{k} {value_text(v)} h" for k, v in mtbf.items()))
    p90 = a.get("p90")
    samples, seed = (p90.get("samples"), p90.get("seed")) if isinstance(p90, Mapping) else (None, None)
    if samples is not None:
        seeded = f", seed {value_text(seed)}" if seed is not None else ""
        parts.append(f"Monte Carlo P90 over {value_text(samples)} runs{seeded}")
    overhead = a.get("overhead_model")
    if overhead is not None and overhead != "explicit":
        parts.append(f"overhead model: {value_text(overhead)}")
    return "; ".join(parts)


def items(result: AnalysisResult) -> list[tuple[str, str]]:
    """Every assumption as (key, text) in the planner's order, after the prices' source, date and
    any staleness warnings."""
    prices = result.prices
    rows = [("prices", prices.source), ("prices as of", when(prices.as_of) if prices.as_of else "unknown")]
    if prices.as_of_by_provider:
        by_provider = prices.as_of_by_provider.items()
        rows.append(("prices as of, by provider", ", ".join(f"{p}: {when(t)}" for p, t in by_provider)))
    rows += [("prices warning", w) for w in prices.warnings]
    rows += [(f"prices {key}", value_text(value)) for key, value in (prices.model_extra or {}).items()]
    rows += [(str(k), value_text(v)) for k, v in result.assumptions.items()]
    return rows
