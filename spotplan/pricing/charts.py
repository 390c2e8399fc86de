"""Charts of one instance type's price history in one region: a terminal chart (one row of block
characters per zone, spot and on-demand on one scale) and a PNG (matplotlib, Agg backend, imported
only here and only when a PNG is asked for). Both take the rows `history.select_history` returns and
the per-pool statistics of `history.history_stats`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spotplan.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

_BLOCKS = "▁▂▃▄▅▆▇█"


def _label(zone: str, market: str) -> str:
    if market == "on-demand":
        return "on-demand" if not zone else f"{zone} on-demand"
    return zone or "spot (region)"


def _steps(rows: pd.DataFrame, edges: list[pd.Timestamp]) -> list[float | None]:
    """The price in force at each edge (each observation holds until the next)."""
    times = list(rows["_t"])
    prices = list(rows["price_per_hour"].astype(float))
    out: list[float | None] = []
    i = -1
    for edge in edges:
        while i + 1 < len(times) and times[i + 1] <= edge:
            i += 1
        out.append(prices[i] if i >= 0 else None)
    return out


def terminal_chart(
    rows: pd.DataFrame, stats: pd.DataFrame, *, title: str, start: datetime, now: datetime, width: int = 60
) -> str:
    """A text chart: one line per pool (spot zones first, then on-demand), shared vertical scale."""
    import pandas as pd

    if rows.empty:
        return f"{title}\n(no observations)\n"
    t0, t1 = pd.Timestamp(start), pd.Timestamp(now)
    edges = [t0 + (t1 - t0) * ((i + 1) / width) for i in range(width)]
    lo = float(rows["price_per_hour"].min())
    hi = float(rows["price_per_hour"].max())
    span = hi - lo
    stat_by = {(r.zone, r.market): r for r in stats.itertuples()}
    pools = sorted({(str(z), str(m)) for z, m in zip(rows["zone"], rows["market"])},
                   key=lambda p: (p[1] != "spot", p[0]))
    name_w = max(len(_label(z, m)) for z, m in pools)
    bin_days = (t1 - t0).total_seconds() / 86400 / width
    lines = [title, f"scale {lo:.4f} (▁) to {hi:.4f} (█) USD/h; one column = {_fmt_span(bin_days)}; "
             f"{t0:%Y-%m-%d %H:%M} → {t1:%Y-%m-%d %H:%M} UTC", ""]
    lines.append(f"{'':{name_w}}  {'':{width}}  {'mean':>9} {'p95':>9} {'latest':>9} {'changes':>7}")
    for zone, market in pools:
        sel = rows[(rows["zone"] == zone) & (rows["market"] == market)]
        # Every line starts at its first observation: drawing a list price back to the window start
        # would chart a price nobody had seen there (and the statistics do not count it either).
        steps = _steps(sel, edges)
        chars = []
        for v in steps:
            if v is None:
                chars.append(" ")
            else:
                level = 0 if span == 0 else int(round((v - lo) / span * (len(_BLOCKS) - 1)))
                chars.append(_BLOCKS[level])
        st = stat_by.get((zone, market))
        tail = (f"{st.price:9.4f} {st.price_p95:9.4f} {st.latest_price:9.4f} {st.changes:7d}"
                if st is not None else "")
        lines.append(f"{_label(zone, market):{name_w}}  {''.join(chars)}  {tail}")
    return "\n".join(lines) + "\n"


def _fmt_span(days: float) -> str:
    if days >= 1:
        return f"{days:.1f} d"
    hours = days * 24
    return f"{hours:.1f} h" if hours >= 1 else f"{hours * 60:.0f} min"


def write_png(
    rows: pd.DataFrame, stats: pd.DataFrame, path: Path, *, title: str, start: datetime, now: datetime
) -> Path:
    """Step lines of spot (one per zone) and on-demand (dashed) over the window; the legend carries
    each pool's time-weighted mean, p95 and number of price changes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    import pandas as pd

    from spotplan.report._png import save_png

    t0, t1 = pd.Timestamp(start), pd.Timestamp(now)
    stat_by = {(r.zone, r.market): r for r in stats.itertuples()}
    fig, ax = plt.subplots(figsize=(10, 5.2), dpi=110)
    try:
        pools = sorted({(str(z), str(m)) for z, m in zip(rows["zone"], rows["market"])},
                       key=lambda p: (p[1] != "spot", p[0]))
        for zone, market in pools:
            sel = rows[(rows["zone"] == zone) & (rows["market"] == market)].sort_values("_t")
            times = [max(t, t0) for t in sel["_t"]] + [t1]  # from its first observation, as the stats
            prices = list(sel["price_per_hour"].astype(float))
            prices.append(prices[-1])  # the last observation holds until now
            st = stat_by.get((zone, market))
            label = _label(zone, market)
            if st is not None:
                label += f"  mean {st.price:.4f}  p95 {st.price_p95:.4f}  changes {st.changes}"
            style: dict[str, Any] = {"linewidth": 1.6}
            if market == "on-demand":
                style = {"linestyle": "--", "color": "black", "linewidth": 1.4}
            ax.step([t.to_pydatetime() for t in times], prices, where="post", label=label, **style)
        ax.set_xlim(t0.to_pydatetime(), t1.to_pydatetime())  # type: ignore[arg-type]
        ax.set_ylim(bottom=0)
        ax.set_title(title)
        ax.set_ylabel("USD per instance-hour")
        ax.set_xlabel("time (UTC)")
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(mdates.AutoDateLocator()))
        ax.legend(loc="upper left", bbox_to_anchor=(0, -0.15), ncol=1, fontsize=8, frameon=False)
        fig.tight_layout()
    except BaseException:
        plt.close(fig)
        raise
    try:
        return save_png(fig, path)
    except OSError as exc:
        # Name the path the user asked for, not the temp file beside it that failed first.
        raise InputError(f"{path}: cannot write: {exc.strerror or exc}") from None
