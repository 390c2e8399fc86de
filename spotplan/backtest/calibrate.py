"""Calibration of analyze against replay: each recommended (or conditional) workload of an
analysis is replayed through the traces *always on spot, restarting after every preemption*, with
the lost work and restart time the cost model defines (§5.3-5.4); the replayed billed hours and
cost are set beside the prediction, and the MTBF the traces imply is fitted.

Replay rules: the job needs W0 = H·(1 + δ/τ) failure-free hours. It runs while the trace shows
spot; a preemption loses ℓ hours of progress and, once spot is back, costs r hours of restart
(billed, no progress). Waiting for spot to come back is not billed (no instances are held), which
is what the cost model assumes too; the first launch belongs to the migration cost, as in §5.6.
A 0/1 trace is read as all-or-none for a gang (Can't Be Late §6: > 94% of the time all or none of
4-16 instances were available). A run that reaches the end of its trace wraps around to its start.

The fitted MTBF is the exponential maximum-likelihood estimate: available instance-hours divided
by the number of preemptions (available → gone) over all traces. Each row also reprices the
workload with §5.5 at the fitted MTBF (`refit_cost`), which is what analyze would predict with a
table refitted to these traces.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from spotplan.backtest.result import Calibration, CalibrationRow
from spotplan.backtest.traces import Trace
from spotplan.errors import InputError
from spotplan.models import CANDIDATE_STATUSES, AnalysisResult, Workload


def fit_mtbf(traces: Sequence[Trace], instances: int = 1) -> tuple[float | None, int, float]:
    """(MTBF hours or None when no preemption was seen, preemptions, exposure hours)."""
    events = 0
    exposure = 0.0
    for tr in traces:
        up = tr.available >= _needed(tr, instances)
        exposure += float(np.sum(up)) * tr.gap_seconds / 3600.0
        events += int(np.sum(up[:-1] & ~up[1:]))
    return (exposure / events if events else None), events, exposure


def _needed(trace: Trace, instances: int) -> int:
    return instances if int(trace.available.max(initial=0)) >= instances else 1


def replay_spot_with_restarts(
    up: np.ndarray,
    gap_hours: float,
    start: int,
    work_hours: float,
    lost_hours: float,
    restart_hours: float,
) -> tuple[float, float, int]:
    """(billed hours, wall hours, interruptions) of one always-spot run from tick `start`."""
    n = len(up)
    if not up.any():
        raise InputError("the trace never shows spot capacity: nothing to replay")
    done = 0.0
    billed = 0.0
    # the first launch is priced in the migration cost (§5.6), not in the spot run
    pending_restart = 0.0
    interruptions = 0
    running = False
    i = start
    ticks = 0
    limit = 1_000_000
    while done < work_hours - 1e-12:
        if ticks > limit:
            raise InputError("the job makes no progress on this trace (restarts outlast spot runs)")
        avail = bool(up[i % n])
        if avail:
            left = gap_hours
            if pending_restart > 0:
                use = min(pending_restart, left)
                pending_restart -= use
                left -= use
                billed += use
            if left > 0:
                step = min(left, work_hours - done)
                done += step
                billed += step
            running = True
        elif running:
            interruptions += 1
            done = max(0.0, done - lost_hours)
            pending_restart = restart_hours
            running = False
        i += 1
        ticks += 1
    wall = ticks * gap_hours
    return billed, wall, interruptions


Analyzed = tuple[AnalysisResult, list[Workload]]


def analyze_inventory(inventory: Path, seed: int = 0) -> Analyzed:
    """The analysis calibration replays (default options and prices). The CLI runs it before the
    replay, so a bad inventory fails at once instead of after minutes of replaying."""
    from spotplan.analysis import run
    from spotplan.planner import AnalyzeOptions

    result, workloads, _prices = run([inventory], None, AnalyzeOptions(seed=seed))
    return result, workloads


def calibrate(
    inventory: Path,
    traces: Sequence[Trace],
    seed: int = 0,
    starts: int = 100,
    progress: Callable[[str], None] | None = None,
    analyzed: Analyzed | None = None,
) -> Calibration:
    """`analyzed`: the inventory's analysis when the caller ran it already (`analyze_inventory`)."""
    from spotplan import costmodel as cm

    if not traces:
        raise InputError("calibration needs at least one --trace")
    result, workloads = analyzed if analyzed is not None else analyze_inventory(inventory, seed)
    by_id = {w.id: w for w in workloads}
    rng = np.random.default_rng(seed)
    fitted, events, exposure = fit_mtbf(traces)
    rows: list[CalibrationRow] = []
    notes: list[str] = []
    for wr in result.workloads:
        if wr.status not in CANDIDATE_STATUSES or wr.best is None:
            continue
        best = wr.best
        # the analysis already priced the current run over W0 (§5.2): replay that same work
        w0 = wr.current.hours
        n = int(wr.current.count)
        gang = by_id[wr.id].is_gang
        billed_all: list[float] = []
        ints: list[int] = []
        for tr in traces:
            need = _needed(tr, n if gang else 1)
            up = tr.available >= need
            if not up.any():
                notes.append(f"{tr.name}: never {need} instance(s) available; skipped for {wr.id}")
                continue
            gap_h = tr.gap_seconds / 3600.0
            picks = rng.integers(0, tr.ticks, size=starts)
            for s in picks:
                b, _wall, k = replay_spot_with_restarts(
                    up, gap_h, int(s), w0, best.lost_hours_per_interruption, best.restart_hours
                )
                billed_all.append(b)
                ints.append(k)
        if not billed_all:
            continue
        billed = np.asarray(billed_all)
        # the cost model's per-instance price × n, as analyze prices the spot run
        replay_cost = billed * n * best.price_per_hour
        mean_cost = float(replay_cost.mean())
        refit_wall = refit_cost = None
        # The rate the replay above saw: the same availability rule (a gang needs n, `_needed`).
        fitted_here = fit_mtbf(traces, n if gang else 1)[0]
        if fitted_here:
            # §5.5 with that MTBF as the job's rate: the gang's all-or-none rate on the traces
            t_refit, progresses = cm.expected_wall_hours(
                w0, 1.0 / fitted_here, best.lost_hours_per_interruption, best.restart_hours
            )
            if bool(progresses):
                refit_wall = float(t_refit)
                refit_cost = refit_wall * n * best.price_per_hour
        rows.append(
            CalibrationRow(
                workload=wr.id,
                band=best.interruption_band,
                predicted_mtbf_hours=best.mtbf_hours,
                predicted_wall_hours=best.wall_hours,
                predicted_cost=best.cost,
                replayed_wall_hours=float(billed.mean()),
                replayed_cost=mean_cost,
                replayed_cost_p90=float(np.percentile(replay_cost, 90)),
                replayed_interruptions=float(np.mean(ints)),
                runs=len(billed),
                cost_error_pct=100.0 * (best.cost - mean_cost) / mean_cost if mean_cost else 0.0,
                refit_wall_hours=refit_wall,
                refit_cost=refit_cost,
            )
        )
        if progress:
            progress(f"calibrated {wr.id}: predicted ${best.cost:,.2f}, replayed ${mean_cost:,.2f}")
    if not rows:
        notes.append("no recommended or conditional workload in the analysis: nothing replayed")
    notes.append(
        "replayed wall hours are billed hours (running + restarts); waiting for spot is not billed"
    )
    return Calibration(
        rows=rows,
        fitted_mtbf_hours=fitted,
        fitted_interruptions=events,
        fitted_exposure_hours=exposure,
        band_mtbf_hours=dict(cm.DEFAULT_MTBF_HOURS),
        notes=notes,
    )
