"""`spotplan analyze`: parse options, run the analysis, render it, optionally write the plan."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from spotplan.cli.common import (
    OutPathOpt,
    OutputOpt,
    VerboseOpt,
    emit,
    handle_errors,
    refuse_overwriting,
    rendering,
)


class Scope(str, Enum):
    region = "region"
    provider = "provider"
    any = "any"


class OverheadModel(str, Enum):
    explicit = "explicit"
    seed = "seed"


def analyze(
    inventory: Annotated[
        list[Path],
        typer.Argument(help="Workload inventory files (YAML or CSV, DESIGN.md §4.1).", show_default=False),
    ],
    prices: Annotated[
        list[Path] | None,
        typer.Option(
            "--prices",
            help="Price table CSV/parquet file or folder; replaces the bundled snapshot and local store. Repeatable.",
        ),
    ] = None,
    scope: Annotated[
        Scope, typer.Option(help="Where offers may be: same region, same provider, or any cloud.")
    ] = Scope.region,
    window: Annotated[
        str, typer.Option(help="Price spot pools by their time-weighted mean over this window (30d, 12h, 2w).")
    ] = "30d",
    min_savings: Annotated[
        float, typer.Option("--min-savings", help="Below this saving (USD) a move is not worth it.")
    ] = 0.0,
    min_savings_pct: Annotated[
        float, typer.Option("--min-savings-pct", help="Below this saving (% of current cost) a move is not worth it.")
    ] = 0.0,
    overhead_model: Annotated[
        OverheadModel,
        typer.Option(
            "--overhead-model",
            help="explicit: interruptions, lost work, restarts, migration (cost model v1); "
            "seed: the seed documents' flat 10% overhead.",
        ),
    ] = OverheadModel.explicit,
    samples: Annotated[int, typer.Option(min=1, help="Monte Carlo runs for the P90s.")] = 2000,
    seed: Annotated[int, typer.Option(min=0, help="Random seed of the Monte Carlo P90s.")] = 0,
    now: Annotated[
        str | None, typer.Option(help="Pretend it is this ISO-8601 time (deadlines, price windows).")
    ] = None,
    plan_out: Annotated[
        Path | None,
        # dir_okay=False: a folder fails as the flags are parsed, not after the whole analysis.
        typer.Option("--plan-out", help="Write the plan (recommended and conditional moves) to this JSON file.",
                     dir_okay=False),
    ] = None,
    output: OutputOpt = None,
    out: OutPathOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Score each workload for spot: eligibility, expected cost with interruptions, and savings.

    Example: spotplan analyze examples/fleet.yaml -o markdown --plan-out plan.json
    """
    with handle_errors(verbose):
        import json
        import math

        from spotplan.analysis import make_plan, parse_window, run
        from spotplan.errors import InputError
        from spotplan.planner import AnalyzeOptions
        from spotplan.report import render
        from spotplan.times import parse_now

        for flag, value in (("--min-savings", min_savings), ("--min-savings-pct", min_savings_pct)):
            if not math.isfinite(value):
                raise InputError(f"{flag} {value}: expected a finite number")
        price_files = [f for p in prices or [] for f in ([p] if not p.is_dir() else p.rglob("*"))]
        refuse_overwriting([*inventory, *price_files], out=out, plan_out=plan_out)
        options = AnalyzeOptions(
            scope=scope.value,
            window_hours=parse_window(window),
            min_savings=min_savings,
            min_savings_pct=min_savings_pct,
            overhead_model=overhead_model.value,
            samples=samples,
            seed=seed,
            now=parse_now(now),
        )
        shown = rendering(output, out)
        result, workloads, price_data = run(inventory, prices, options)
        for warning in result.prices.warnings:
            sys.stderr.write(f"warning: {warning}\n")
        emit(render(result, shown.format.value, color=shown.color), out)
        if plan_out is not None:
            from spotplan.plan import what_migrate_would_refuse

            plan = make_plan(result, workloads, price_data, options)
            text = json.dumps(plan.to_json_dict(), indent=2)
            emit(text, plan_out)
            for move in plan.moves:
                missing = what_migrate_would_refuse(move)
                if missing:
                    sys.stderr.write(f"note: {move.id} is planned, but spotplan migrate will refuse it: "
                                     f"{'; '.join(missing)} (add them to the inventory)\n")


__all__ = ["analyze"]
