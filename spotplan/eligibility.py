"""The eligibility rules of DESIGN.md §6 and the warnings beside them: each a small pure function
returning a reason (code, message) or None. The planner applies them in the order of §6."""

from __future__ import annotations

from dataclasses import dataclass

from spotplan.costmodel import SPOT_NEAR_ON_DEMAND_RATIO
from spotplan.models import Workload
from spotplan.report._format import usd as _usd  # the reports' rounding, so messages agree with tables


@dataclass(frozen=True)
class Finding:
    code: str
    message: str


SHORT_JOB_HOURS = 0.5


def serving(w: Workload) -> Finding | None:
    """Rule 1: production inference and real-time work must not be reclaimed."""
    if w.kind == "inference":
        return Finding("PRODUCTION_SERVING", "production inference is not moved to spot")
    if w.kind == "realtime":
        return Finding("REALTIME", "real-time workloads are not moved to spot")
    return None


def already_spot(w: Workload) -> Finding | None:
    """Rule 2."""
    if w.market == "spot":
        return Finding("ALREADY_SPOT", "already runs on spot capacity")
    return None


def short_job(w: Workload) -> Finding | None:
    """Rule 3: under 30 minutes the migration overhead outweighs any saving."""
    if w.remaining_hours < SHORT_JOB_HOURS:
        return Finding(
            "SHORT_JOB",
            f"{w.remaining_hours * 60:.0f} min left, under 30 min: not worth the migration overhead",
        )
    return None


def no_checkpointing(w: Workload) -> Finding | None:
    """Rule 4: training and batch jobs without checkpoints would restart from zero."""
    if w.kind in ("training", "batch") and not w.checkpoint.enabled:
        return Finding(
            "NO_CHECKPOINTING", f"{w.kind} without checkpointing would restart from zero on every interruption"
        )
    return None


PRE_OFFER_RULES = (serving, already_spot, short_job, no_checkpointing)


def no_spot_offer(w: Workload, gpu_model: str, gpu_count: float, scope: str) -> Finding:
    """Rule 5."""
    what = f"{gpu_count:g}× {gpu_model}" if gpu_model else w.instance_type
    where = {"region": f"{w.provider} {w.region}", "provider": w.provider, "any": "any provider"}[scope]
    return Finding("NO_SPOT_OFFER", f"no spot offer with {what} in {where} (--scope {scope})")


def no_progress() -> Finding:
    """Rule 6a (§5.5)."""
    return Finding(
        "NO_PROGRESS",
        "interruptions arrive faster than the job can restart and recover: it would never finish on spot",
    )


def deadline_infeasible(w0_hours: float, hours_to_deadline: float | None) -> Finding | None:
    """Rule 6b: the deadline cannot be met even on on-demand."""
    if hours_to_deadline is not None and hours_to_deadline < w0_hours:
        return Finding(
            "DEADLINE_INFEASIBLE",
            f"needs {w0_hours:.1f} h but the deadline is {max(hours_to_deadline, 0):.1f} h away, even on on-demand",
        )
    return None


def below_threshold(savings: float, savings_pct: float, min_savings: float, min_pct: float) -> Finding | None:
    """Rule 7."""
    if savings < min_savings or savings_pct < min_pct:
        return Finding(
            "SAVINGS_BELOW_THRESHOLD",
            f"saves {_usd(savings)} ({savings_pct:.1f}%), below the threshold "
            f"({_usd(min_savings)}, {min_pct:g}%)",
        )
    return None


def ephemeral_checkpoints(w: Workload) -> Finding | None:
    """Rule 8a: checkpoints on local disk die with the spot instance."""
    if w.checkpoint.enabled and not w.checkpoint.is_durable:
        where = w.checkpoint.storage or "no storage given"
        return Finding(
            "EPHEMERAL_CHECKPOINTS",
            f"checkpoints go to {where}, not durable storage: move them to s3://, gs:// or az:// first",
        )
    return None


def deadline_risk(wall_p90: float, hours_to_deadline: float | None) -> Finding | None:
    """Rule 8b: the P90 run misses the deadline: plan the on-demand fallback."""
    if hours_to_deadline is not None and wall_p90 > hours_to_deadline:
        return Finding(
            "DEADLINE_RISK",
            f"P90 wall time {wall_p90:.1f} h is past the deadline ({hours_to_deadline:.1f} h away): "
            "plan the on-demand fallback",
        )
    return None


# ---- warnings (never change the status) ------------------------------------------------------


def warnings_for(
    w: Workload,
    *,
    band: str,
    p_s: float,
    p_od: float,
    tau_hours: float,
    tau_star_hours: float | None,
    delta_hours: float,
    notice_hours: float,
) -> list[Finding]:
    out: list[Finding] = []
    ck = w.checkpoint.enabled
    if ck and not w.handles_preemption:
        out.append(
            Finding("NO_PREEMPTION_HANDLER", "no checkpoint on the reclaim notice: each interruption loses τ/2 of work")
        )
    elif ck and delta_hours > notice_hours:
        out.append(
            Finding(
                "NO_PREEMPTION_HANDLER",
                f"a checkpoint takes {delta_hours * 3600:.0f} s, longer than the {notice_hours * 3600:.0f} s notice: "
                "each interruption loses τ/2 of work",
            )
        )
    if ck and tau_star_hours and tau_star_hours > 0 and (
        tau_hours > 2 * tau_star_hours or tau_hours < tau_star_hours / 2
    ):
        out.append(
            Finding(
                "CHECKPOINT_INTERVAL",
                f"checkpoint every {tau_hours * 60:.0f} min; about {tau_star_hours * 60:.0f} min is optimal (Daly)",
            )
        )
    if band == ">20%":
        out.append(Finding("HIGH_INTERRUPTION", "interruption band >20%: expect frequent reclaims"))
    if p_od > 0 and p_s > SPOT_NEAR_ON_DEMAND_RATIO * p_od:
        out.append(
            Finding(
                "SPOT_NEAR_ON_DEMAND",
                f"spot ${p_s:,.2f}/h is {100 * p_s / p_od:.0f}% of on-demand ${p_od:,.2f}/h",
            )
        )
    if w.kind in ("dev", "test") and not ck:
        out.append(Finding("UNSAVED_STATE", f"{w.kind} work without checkpoints loses its unsaved state on reclaim"))
    return out
