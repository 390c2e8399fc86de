"""Reading the result's `assumptions` for people: the one-line footnote of the table and the full
list of the markdown report.

The planner owns the keys; this module only knows a few spellings of the ones a footnote must
name (price window, MTBF table, Monte Carlo runs and seed) and prints everything else generically,
so a new assumption shows up in the markdown list without a change here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from spotplan.models import AnalysisResult

_WINDOW_KEYS = ("window", "price_window", "window_days")
_MTBF_KEYS = ("mtbf_hours", "mtbf_hours_by_band", "mtbf_by_band", "mtbf")
_SAMPLES_KEYS = ("samples", "monte_carlo_samples", "p90_samples")
_SEED_KEYS = ("seed", "monte_carlo_seed")
_OVERHEAD_KEYS = ("overhead_model",)


def _pick(a: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if a.get(key) is not None:
            return a[key]
    return None


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


def prices_text(result: AnalysisResult) -> str:
    as_of = result.prices.as_of or "an unknown date"
    return f"{result.prices.source}, as of {as_of}"


def footnote(result: AnalysisResult) -> str:
    """'Spot prices: time-weighted mean over 30d of <source>, as of <date>; MTBF by band: ...; ...'."""
    a = result.assumptions
    window = _pick(a, _WINDOW_KEYS)
    if window is not None:
        span = f"{window}d" if isinstance(window, (int, float)) and not isinstance(window, bool) else window
        parts = [f"Spot prices: time-weighted mean over {span} of {prices_text(result)}"]
    else:
        parts = [f"Spot prices: {prices_text(result)}"]
    mtbf = _pick(a, _MTBF_KEYS)
    if isinstance(mtbf, Mapping) and mtbf:
        parts.append("MTBF by band: " + ", ".join(f"{k} {value_text(v)} h" for k, v in mtbf.items()))
    samples, seed = _pick(a, _SAMPLES_KEYS), _pick(a, _SEED_KEYS)
    if samples is not None:
        parts.append(f"Monte Carlo P90 over {value_text(samples)} runs" + (
            f", seed {value_text(seed)}" if seed is not None else ""
        ))
    overhead = _pick(a, _OVERHEAD_KEYS)
    if overhead is not None and overhead != "explicit":
        parts.append(f"overhead model: {value_text(overhead)}")
    return "; ".join(parts)


def items(result: AnalysisResult) -> list[tuple[str, str]]:
    """Every assumption as (key, text), in the planner's order, after the prices source and date."""
    rows = [("prices", result.prices.source), ("prices as of", result.prices.as_of or "unknown")]
    extra = result.prices.model_extra or {}
    rows += [(f"prices {k}", value_text(v)) for k, v in extra.items()]
    rows += [(str(k), value_text(v)) for k, v in result.assumptions.items()]
    return rows
