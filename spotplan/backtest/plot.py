"""The backtest chart: mean cost of each policy relative to the omniscient optimum (with the P75
of per-start ratios), and one example timeline of spot availability and a policy's choices."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spotplan.backtest.result import BacktestResult
from spotplan.errors import InputError
from spotplan.report._png import save_png

_COLORS = {"idle": "#d9d9d9", "spot": "#2c7fb8", "on-demand": "#f03b20"}
_ACTIONS = ((0, "idle"), (1, "spot"), (2, "on-demand"))


def spans(values: Sequence[int], code: int) -> list[tuple[int, int]]:
    """(first tick, ticks) of each maximal run of `code` in `values`."""
    out: list[tuple[int, int]] = []
    for t, v in enumerate(values):
        if v != code:
            continue
        if out and out[-1][0] + out[-1][1] == t:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((t, 1))
    return out


def draw_timeline(ax: Any, example: dict[str, Any]) -> dict[str, Any]:
    """Spot availability and the policy's choice per tick, as bars over whole ticks: a choice made
    at tick i holds for [i, i+1)·gap, so a one-tick choice is a visible bar (a stepped fill with
    `where=` drops each run's last tick). Returns the drawn collections by label."""
    gap_h = float(example["gap_seconds"]) / 3600.0
    avail = [int(v > 0) for v in example["available"]]
    acts = [int(a) for a in example["actions"]]

    def bars(values: list[int], code: int, y: tuple[float, float], color: str, label: str) -> Any:
        xr = [(t * gap_h, n * gap_h) for t, n in spans(values, code)]
        return ax.broken_barh(xr, y, color=color, label=label)

    drawn = {"spot available": bars(avail, 1, (1.1, 0.8), "#a1d99b", "spot available")}
    for code, label in _ACTIONS:
        drawn[label] = bars(acts, code, (0.0, 0.9), _COLORS[label], label)
    ax.set_xlim(0, len(acts) * gap_h)
    ax.set_ylim(0, 2.0)
    ax.set_yticks([0.45, 1.5], ["choice", "trace"])
    ax.set_xlabel("hours from start")
    ax.set_title(
        f"{example['policy']} on {example['trace']} (start tick {example['start_tick']})", fontsize=10
    )
    ax.spines[["top", "right", "left"]].set_visible(False)
    return drawn


def check_png_path(path: Path) -> None:
    """Refuse, before the replay, a chart path that cannot be written: a name that is not .png
    (the chart is a PNG whatever the name says) or a place where no file can be created. The
    probe is a real file: permission bits do not tell (root, read-only mounts, /proc)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError(f"{path}: the chart is a PNG image; give --png a path ending in .png")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # save_png creates the missing folders below this one
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.probe-", dir=folder)
    except OSError as exc:
        raise InputError(f"{path}: cannot write: {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(probe)


def write_png(result: BacktestResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
        ax2 = axes[1][0]
        draw_timeline(ax2, result.example or {})
        ax2.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=4, fontsize=8, frameon=False)
    fig.tight_layout()
    try:
        save_png(fig, path, dpi=110)
    except OSError as exc:
        raise InputError(f"{path}: cannot write: {exc.strerror or exc}") from None
