"""The backtest chart: mean cost of each policy relative to the omniscient optimum (with the P75
of per-start ratios), and one example timeline of spot availability and a policy's choices."""

from __future__ import annotations

from pathlib import Path

from spotplan.backtest.result import BacktestResult
from spotplan.report._png import save_png

_COLORS = {"idle": "#d9d9d9", "spot": "#2c7fb8", "on-demand": "#f03b20"}


def write_png(result: BacktestResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    has_timeline = result.example is not None
    fig, axes = plt.subplots(
        2 if has_timeline else 1, 1, figsize=(9, 6.5 if has_timeline else 3.5), squeeze=False
    )
    ax = axes[0][0]
    pols = [p for p in result.policies]
    names = [p.name for p in pols]
    if all(p.mean_cost_vs_optimal is not None for p in pols):
        vals = [p.mean_cost_vs_optimal or 0.0 for p in pols]
        p75 = [p.p75_ratio_to_optimal or 0.0 for p in pols]
        ax.bar(names, vals, color="#756bb1", label="mean cost ÷ optimal mean")
        ax.scatter(names, p75, color="black", marker="_", s=400, label="P75 of per-start ratio", zorder=3)
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_ylabel("cost vs optimal")
        ax.legend(loc="upper right", fontsize=8, frameon=False)
    else:
        ax.bar(names, [p.mean_cost for p in pols], color="#756bb1")
        ax.set_ylabel("mean cost ($)")
    for i, p in enumerate(pols):
        ax.annotate(f"${p.mean_cost:,.0f}\n{p.deadline_misses} miss", (i, 0), xytext=(0, 4),
                    textcoords="offset points", ha="center", fontsize=7, color="white")
    j = result.job
    ax.set_title(
        f"{j.compute_hours:g} h job, deadline {j.deadline_hours:g} h, d = {j.changeover_hours:g} h, "
        f"{len(result.starts)} starts",
        fontsize=10,
    )
    ax.spines[["top", "right"]].set_visible(False)
    if has_timeline:
        ex = result.example or {}
        ax2 = axes[1][0]
        gap_h = float(ex["gap_seconds"]) / 3600.0
        avail = np.asarray(ex["available"], dtype=float)
        acts = np.asarray(ex["actions"], dtype=int)
        t = np.arange(len(avail)) * gap_h
        ax2.fill_between(t, 1.1, 1.1 + 0.8 * avail, step="post", color="#a1d99b", label="spot available")
        for code, label in ((0, "idle"), (1, "spot"), (2, "on-demand")):
            mask = acts == code
            ax2.fill_between(t, 0, 0.9, where=mask, step="post", color=_COLORS[label], label=label)
        ax2.set_yticks([0.45, 1.5], ["choice", "trace"])
        ax2.set_xlabel("hours from start")
        ax2.set_title(f"{ex['policy']} on {ex['trace']} (start tick {ex['start_tick']})", fontsize=10)
        ax2.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=4, fontsize=8, frameon=False)
        ax2.spines[["top", "right", "left"]].set_visible(False)
    fig.tight_layout()
    save_png(fig, path, dpi=110)
