"""`spotplan backtest`: parse options, replay the traces through the policies, render the result."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from spotplan.cli.common import OutPathOpt, OutputOpt, VerboseOpt, emit, handle_errors, rendering
from spotplan.errors import InputError


class TraceFormat(str, Enum):  # traces.FORMATS, spelled out for the same reason
    auto = "auto"
    json = "json"
    events = "events"
    counts = "counts"


class PolicyName(str, Enum):  # POLICY_NAMES, spelled out to keep numpy off `--help` (a test checks they agree)
    on_demand = "on-demand"
    greedy = "greedy"
    uniform_progress = "uniform-progress"
    optimal = "optimal"
    spotplan = "spotplan"


def backtest(
    trace: Annotated[
        list[Path],
        typer.Option(
            "--trace",
            help="Spot trace file (Can't-Be-Late/SpotHedge JSON, Bamboo events CSV, count CSV/TXT), "
            "or a folder of them (the .json/.csv/.txt files directly in it, not in sub-folders). "
            "One per zone: repeat the flag for more (--trace a.json --trace b.json) or list them after "
            "it (--trace a.json b.json, or a shell glob). A file given twice is replayed once.",
            metavar="FILE|DIR",
            show_default=False,
        ),
    ],
    more_traces: Annotated[
        list[Path] | None,
        # DESIGN §3 writes `--trace FILE...`: several files after one flag. Click options take one
        # value each, so the files after the first land here, after those given with the flag.
        typer.Argument(metavar="FILE|DIR", help="More trace files after --trace's first.", show_default=False),
    ] = None,
    job_hours: Annotated[
        float | None,
        typer.Option(
            "--job-hours",
            help="Compute hours C the job needs. Required, except with --inventory (then 48).",
            show_default=False,
        ),
    ] = None,
    deadline_hours: Annotated[
        float | None,
        typer.Option(
            "--deadline-hours",
            help="Hours R from the start to the deadline. Required, except with --inventory (then 52).",
            show_default=False,
        ),
    ] = None,
    fmt: Annotated[TraceFormat, typer.Option("--format", help="Trace format; auto detects it.")] = TraceFormat.auto,
    changeover_hours: Annotated[
        float,
        typer.Option("--changeover-hours", help="Changeover delay d paid on every switch into spot or on-demand."),
    ] = 0.2,
    instances: Annotated[int, typer.Option("--instances", min=1, help="Gang size n: spot needs n available.")] = 1,
    policy: Annotated[
        list[PolicyName] | None,
        typer.Option("--policy", help="Policy to replay (repeatable; default: all five)."),
    ] = None,
    starts: Annotated[int, typer.Option("--starts", min=1, help="Random start points per trace.")] = 100,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the start points.")] = 0,
    spot_price: Annotated[
        float, typer.Option("--spot-price", help="Spot $/h per instance when the trace has no prices.")
    ] = 0.9731,
    on_demand_price: Annotated[float, typer.Option("--on-demand-price", help="On-demand $/h per instance.")] = 3.06,
    inventory: Annotated[
        Path | None,
        typer.Option(
            "--inventory",
            help="Calibrate analyze: replay this inventory's recommended workloads through the traces "
            "and compare predicted and replayed costs.",
            exists=True,  # checked as the flags are parsed, before any trace is read
            dir_okay=False,
        ),
    ] = None,
    png: Annotated[
        Path | None,
        typer.Option(
            "--png",
            metavar="PATH",
            help="Write a PNG chart: cost vs optimal per policy and one timeline.",
            dir_okay=False,
        ),
    ] = None,
    output: OutputOpt = None,
    out: OutPathOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Replay real spot traces: each policy's cost and deadline misses against the omniscient optimum.

    Example: spotplan backtest --trace ../shared/data/skypilot-spot-traces/availability/1-node/aws-10-26-2022
    --job-hours 48 --deadline-hours 52 --changeover-hours 0.2 -o markdown
    """
    with handle_errors(verbose):
        from spotplan.backtest.policies import POLICY_NAMES
        from spotplan.backtest.replay import run_backtest
        from spotplan.backtest.result import render
        from spotplan.backtest.simulator import Job
        from spotplan.backtest.traces import distinct_paths, expand_paths, load_traces

        def progress(msg: str) -> None:
            sys.stderr.write(msg + "\n")
            sys.stderr.flush()

        defaults_note = None
        if job_hours is None or deadline_hours is None:
            if inventory is None:
                missing = "--job-hours" if job_hours is None else "--deadline-hours"
                raise InputError(f"{missing} is required (or give --inventory to calibrate analyze)")
            # Calibration alone: replay the policies on the paper's setup so the report stays whole.
            defaults_note = "policy replay used Can't Be Late's setup: C = 48 h, R = 52 h (no --job-hours given)"
            job_hours = 48.0 if job_hours is None else job_hours
            deadline_hours = 52.0 if deadline_hours is None else deadline_hours
        # every flag is checked before any trace is read or replayed
        job = Job(
            compute_hours=job_hours,
            deadline_hours=deadline_hours,
            changeover_hours=changeover_hours,
            instances=instances,
            spot_price=spot_price,
            on_demand_price=on_demand_price,
        )
        if png is not None:
            from spotplan.backtest.plot import check_png_path

            check_png_path(png)
        paths, path_notes = distinct_paths(expand_paths([*trace, *(more_traces or [])]))
        traces = load_traces(paths, fmt.value)
        analyzed = None
        if inventory is not None:
            from spotplan.backtest.calibrate import analyze_inventory

            analyzed = analyze_inventory(inventory, seed)  # a bad inventory fails before the replay
        # a repeated --policy is one policy: run_backtest keeps it where it first appears
        names = [p.value for p in policy] if policy else list(POLICY_NAMES)
        result = run_backtest(traces, job, names, starts=starts, seed=seed, progress=progress)
        result.notes[:0] = path_notes
        if defaults_note:
            result.notes.append(defaults_note)
        if inventory is not None:
            from spotplan.backtest.calibrate import calibrate

            result.calibration = calibrate(inventory, traces, seed=seed, starts=starts, progress=progress,
                                           analyzed=analyzed)
        shown = rendering(output, out)
        emit(render(result, shown.format.value, color=shown.color), out)
        if png is not None:  # after the result is out, so a chart that fails late cannot lose it
            from spotplan.backtest.plot import write_png

            write_png(result, png)
            progress(f"wrote {png}")
