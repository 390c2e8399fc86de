"""The I/O edge of `spotplan analyze`: read inventories and price tables, run the pure planner,
and write the plan. The CLI calls this; tests and notebooks can too."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from spotplan.models import AnalysisResult, Plan, Workload
from spotplan.planner import AnalyzeOptions, analyze, build_plan, on_demand_index
from spotplan.times import parse_duration

if TYPE_CHECKING:
    import pandas as pd

def parse_window(text: str) -> float:
    """'30d', '12h', '2w' or a bare number of days → hours."""
    return parse_duration(text, "--window", units=("h", "d", "w"), default="d") / 3600.0


@dataclass
class Prices:
    table: pd.DataFrame
    source: str


def load_prices(paths: Sequence[Path] | None) -> Prices:
    """`--prices` files/folders replace the defaults; else the bundled snapshot plus the local store."""
    import pandas as pd

    from spotplan.pricing.snapshot import load_snapshot, snapshot_dir
    from spotplan.pricing.table import read_price_paths

    if paths:
        return Prices(read_price_paths(paths), ", ".join(str(p) for p in paths))
    table = load_snapshot()
    source = f"bundled snapshot ({snapshot_dir().name})"
    from spotplan.pricing.store import read_store

    stored = read_store()
    if stored is not None and not stored.empty:
        table = pd.concat([table, stored], ignore_index=True)
        source += " + local price store (spotplan prices pull)"
    return Prices(table, source)


def known_instance_types(table: pd.DataFrame) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for prov, itype in zip(table["provider"], table["instance_type"]):
        out.setdefault(str(prov), set()).add(str(itype))
    return out


def read_workloads(paths: Sequence[Path], prices: Prices) -> list[Workload]:
    from spotplan.inventory import read_inventories

    return read_inventories(list(paths), known_instance_types=known_instance_types(prices.table))


def run(
    inventories: Sequence[Path], price_paths: Sequence[Path] | None, options: AnalyzeOptions
) -> tuple[AnalysisResult, list[Workload], Prices]:
    prices = load_prices(price_paths)
    workloads = read_workloads(inventories, prices)
    result = analyze(workloads, prices.table, options, prices_source=prices.source)
    return result, workloads, prices


def make_plan(result: AnalysisResult, workloads: Sequence[Workload], prices: Prices,
              options: AnalyzeOptions) -> Plan:
    od = on_demand_index(prices.table, options.window_hours, options.now)
    return build_plan(result, workloads, od, created_at=options.now)


def known_on_demand_price(provider: str, region: str, instance_type: str) -> float | None:
    """The on-demand price of one pool in the default price data (the bundled snapshot plus the
    local store), read as analyze reads it for a plan's cap (`planner.on_demand_index`), or None:
    what migrate checks a plan's max_price against when the plan does not carry it."""
    from spotplan.times import utcnow

    index = on_demand_index(load_prices(None).table, AnalyzeOptions().window_hours, utcnow())
    return index.get((provider, region, instance_type))
