"""Replay: draw random start points on every trace, run each policy and the optimum from each,
and aggregate into the `spotplan.backtest/1` result.

Each trace is one market (one zone or pool); a run stays in the market it started in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from spotplan.backtest.optimal import optimal_costs
from spotplan.backtest.policies import POLICY_NAMES, make_policy
from spotplan.backtest.result import (
    SCHEMA,
    BacktestResult,
    JobInfo,
    PolicySummary,
    StartResult,
    TraceInfo,
)
from spotplan.backtest.simulator import Grid, Job, Run, make_grid, replay
from spotplan.backtest.traces import Trace
from spotplan.errors import InputError
from spotplan.times import utcnow_iso


def spot_price_series(trace: Trace, job: Job) -> np.ndarray:
    """The trace's own spot prices when it has them, else the flat `--spot-price`."""
    if trace.prices is not None:
        return np.asarray(trace.prices, dtype=float)
    return np.full(trace.ticks, float(job.spot_price))


# Costs are reported to the micro-dollar; the summaries are computed from the same rounded
# per-start costs, so they can be recomputed from the JSON and the optimum's own ratio is exactly 1.
COST_DECIMALS = 6


def money(x: float) -> float:
    return round(float(x), COST_DECIMALS)


def pick_starts(trace: Trace, window_ticks: int, starts: int, rng: np.random.Generator) -> np.ndarray:
    room = trace.ticks - window_ticks + 1
    if room <= 0:
        return np.zeros(0, dtype=np.int64)
    if starts >= room:
        return np.arange(room, dtype=np.int64)
    return np.sort(rng.choice(room, size=starts, replace=False)).astype(np.int64)


@dataclass(frozen=True)
class Market:
    """One trace ready to replay a job on: its grid, where spot is usable, its prices, the starts."""

    trace: Trace
    grid: Grid
    up: np.ndarray
    prices: np.ndarray
    starts: np.ndarray


def draw_markets(traces: Sequence[Trace], job: Job, starts: int, seed: int) -> list[Market]:
    """The start points of every trace, drawn from one generator in trace order: the draw that makes
    a seed reproducible (benchmarks draw through here too, so their starts are the CLI's)."""
    rng = np.random.default_rng(seed)
    out = []
    for trace in traces:
        grid = make_grid(job, trace.gap_seconds)
        out.append(Market(trace, grid, trace.available >= job.instances, spot_price_series(trace, job),
                          pick_starts(trace, grid.T, starts, rng)))
    return out


def run_backtest(
    traces: Sequence[Trace],
    job: Job,
    policies: Sequence[str] = POLICY_NAMES,
    starts: int = 100,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    example: str | None = "auto",
) -> BacktestResult:
    """Replay `policies` from random starts on every trace. The optimum is always solved, listed or
    not: every policy's cost is reported against it. `example` names the policy whose first run is
    recorded as the timeline ("auto": spotplan when selected, else the first online policy)."""
    policies = list(dict.fromkeys(policies))  # a repeated policy is replayed and reported once
    for p in policies:
        if p not in POLICY_NAMES:
            raise InputError(f"unknown policy {p!r} (choose from {', '.join(POLICY_NAMES)})")
    if not traces:
        raise InputError("no trace given (use --trace FILE)")
    if starts < 1:
        raise InputError("--starts must be at least 1")
    if not any(t.ticks and int(t.available.max()) >= job.instances for t in traces):
        # every policy would be on-demand on every start: a usage error, not a result
        most = max((int(t.available.max()) for t in traces if t.ticks), default=0)
        raise InputError(
            f"--instances {job.instances}: no trace ever shows {job.instances} spot instances at once "
            f"(the most is {most}), so spot is never usable (a 0/1 trace counts instances, not gangs)"
        )
    online = [p for p in policies if p != "optimal"]
    want_opt = "optimal" in policies
    if example == "auto":
        example = timeline_policy(online)
    trace_infos: list[TraceInfo] = []
    rows: list[StartResult] = []
    runs: dict[str, list[Run]] = {p: [] for p in policies}
    opt_costs: list[float] = []  # per row of `rows`, whether or not "optimal" is a listed policy
    example_timeline: dict[str, object] | None = None
    notes: list[str] = []
    for market in draw_markets(traces, job, starts, seed):
        trace, grid, up, prices, chosen = market.trace, market.grid, market.up, market.prices, market.starts
        ups, _downs = trace.run_lengths_hours(job.instances)
        trace_infos.append(
            TraceInfo(
                name=trace.name,
                source=trace.source,
                gap_seconds=trace.gap_seconds,
                ticks=trace.ticks,
                hours=round(trace.hours, 3),
                availability=round(trace.availability(job.instances), 4),
                mean_available_run_hours=round(float(np.mean(ups)), 3) if len(ups) else 0.0,
                has_prices=trace.prices is not None,
                starts=int(len(chosen)),
                grains_per_tick=grid.m,
                changeover_hours_effective=round(grid.changeover_hours_effective, 6),
                compute_hours_effective=round(grid.compute_hours_effective, 6),
                deadline_hours_effective=round(grid.T * trace.gap_seconds / 3600.0, 6),
                notes=list(trace.notes),
            )
        )
        if trace.ticks and int(trace.available.max()) < job.instances:
            notes.append(
                f"{trace.name}: never shows {job.instances} spot instances at once, so spot is never "
                "usable there (a 0/1 trace counts instances, not gangs)"
            )
        if not len(chosen):
            notes.append(
                f"{trace.name}: {trace.hours:.1f} h is shorter than the {job.deadline_hours:g} h "
                "deadline window; skipped"
            )
            continue
        if progress:
            progress(f"{trace.name}: {len(chosen)} starts × {len(policies)} policies")
        windows = np.stack([up[s : s + grid.T] for s in chosen])
        pwin = np.stack([prices[s : s + grid.T] for s in chosen])
        # hours are only reported for a listed optimum; the ratios need its cost alone
        o = optimal_costs(windows, pwin, job, grid, track_hours=want_opt)
        opt_cost = [money(c) for c in o.cost]
        opt_costs.extend(opt_cost)
        if want_opt:
            for i in range(len(chosen)):
                runs["optimal"].append(
                    Run(
                        cost=float(o.cost[i]),
                        met_deadline=bool(np.isfinite(o.cost[i])),
                        spot_hours=float(o.spot_hours[i]),
                        on_demand_hours=float(o.on_demand_hours[i]),
                        changeovers=0,
                        preemptions=0,
                        finish_hours=math.nan,
                    )
                )
        per_start: list[dict[str, float]] = [{} for _ in chosen]
        missed: list[list[str]] = [[] for _ in chosen]
        for name in online:
            policy = make_policy(name)
            for i, s in enumerate(chosen):
                record = example_timeline is None and name == example and i == 0
                r = replay(policy, windows[i], pwin[i], job, grid, history=up[:s], record=record)
                runs[name].append(r)
                per_start[i][name] = money(r.cost)
                if not r.met_deadline:
                    missed[i].append(name)
                if record and r.actions is not None:
                    example_timeline = {
                        "trace": trace.name,
                        "policy": name,
                        "start_tick": int(s),
                        "gap_seconds": trace.gap_seconds,
                        "available": windows[i].astype(int).tolist(),
                        "actions": r.actions.astype(int).tolist(),
                    }
        for i, s in enumerate(chosen):
            if want_opt:
                per_start[i]["optimal"] = opt_cost[i]
            rows.append(
                StartResult(
                    trace=trace.name,
                    start_tick=int(s),
                    start_hours=round(float(s) * trace.gap_seconds / 3600.0, 4),
                    costs=per_start[i],
                    missed=missed[i],
                )
            )
    if not rows:
        longest = max(traces, key=lambda t: t.hours)
        raise InputError(
            f"no trace is long enough for a {job.deadline_hours:g} h deadline window (the longest, "
            f"{longest.name}, is {longest.hours:.1f} h)"
        )
    summaries = _summaries(policies, runs, np.asarray(opt_costs, dtype=float))
    return BacktestResult(
        schema=SCHEMA,
        generated_at=utcnow_iso(),
        job=JobInfo(
            compute_hours=job.compute_hours,
            deadline_hours=job.deadline_hours,
            changeover_hours=job.changeover_hours,
            instances=job.instances,
            spot_price=job.spot_price,
            on_demand_price=job.on_demand_price,
        ),
        seed=seed,
        starts_per_trace=starts,
        traces=trace_infos,
        policies=summaries,
        starts=rows,
        example=example_timeline,
        notes=notes,
    )


def timeline_policy(online: Sequence[str]) -> str | None:
    """The policy the example timeline shows: ours when selected, else the first online one (the
    optimum records no choices)."""
    if "spotplan" in online:
        return "spotplan"
    return online[0] if online else None


def _summaries(policies: Sequence[str], runs: dict[str, list[Run]], opt: np.ndarray) -> list[PolicySummary]:
    """Per policy, from the same rounded per-start costs the JSON lists; `opt` is the optimum's
    cost on those starts (solved even when "optimal" is not a listed policy)."""
    out = []
    for name in policies:
        rs = runs[name]
        if not rs:
            continue
        cost = np.array([money(r.cost) for r in rs])
        mean_vs, mean_ratio, p75_ratio = _ratios(cost, opt)
        out.append(
            PolicySummary(
                name=name,
                runs=len(rs),
                mean_cost=float(np.mean(cost)),
                p75_cost=float(np.percentile(cost, 75)),
                mean_cost_vs_optimal=mean_vs,
                mean_ratio_to_optimal=mean_ratio,
                p75_ratio_to_optimal=p75_ratio,
                deadline_misses=int(sum(not r.met_deadline for r in rs)),
                spot_hours=float(np.mean([r.spot_hours for r in rs])),
                on_demand_hours=float(np.mean([r.on_demand_hours for r in rs])),
            )
        )
    return out


def _ratios(cost: np.ndarray, opt: np.ndarray) -> tuple[float | None, float | None, float | None]:
    """Mean cost ÷ the optimum's mean, and the mean and P75 of the per-start ratios. A ratio to a
    free optimum (spot priced at $0) has no meaning, so it is left out rather than infinite."""
    if len(opt) != len(cost) or not len(cost) or not np.all(np.isfinite(opt)):
        return None, None, None
    mean_vs = float(np.mean(cost) / np.mean(opt)) if np.mean(opt) > 0 else None
    if not np.all(opt > 0):
        return mean_vs, None, None
    per = cost / opt
    return mean_vs, float(np.mean(per)), float(np.percentile(per, 75))
