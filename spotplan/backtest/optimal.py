"""The omniscient optimum: the cheapest schedule that knows the whole future of the trace, by
dynamic programming over time × progress × changeover state, exact on the simulator's grid.

State at the start of tick t: the mode the job is in (none, running on spot, running on
on-demand, with any changeover finished) and its *lag* L = t·m − progress in grains. Running keeps L,
idling adds m, a changeover adds D. Because the deadline caps L at the slack T·m − P, the progress
dimension is only `slack + 1` wide, whatever the job length: this is what makes a 48 h job at a
32 s tick tractable. A changeover is taken as one jump over its ticks (paying for them and landing
with its first progress made); abandoning a changeover half-way, or starting one on spot that is
preempted before it makes progress, only spends money without progress, so the jump loses nothing.

The spot and on-demand hours of the cheapest plan are tracked through the programme, so they are
exact even when the spot price varies tick by tick.

Vectorised with numpy over lag and over many start points at once; starts are processed in chunks
to bound memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spotplan.backtest.simulator import Grid, Job
from spotplan.errors import InputError

_CHUNK_CELLS = 2_000_000  # starts × lag cells per chunk: bounds the ring buffer to ~0.5 GB worst case


@dataclass(frozen=True)
class OptimalRuns:
    cost: np.ndarray  # per start, USD
    spot_hours: np.ndarray
    on_demand_hours: np.ndarray


def optimal_costs(
    available: np.ndarray, spot_prices: np.ndarray, job: Job, grid: Grid, track_hours: bool = True
) -> OptimalRuns:
    """Optimal cost per start. `available` (bool) and `spot_prices` are (starts, ≥T) windows."""
    available = np.atleast_2d(np.asarray(available, dtype=bool))
    spot_prices = np.atleast_2d(np.asarray(spot_prices, dtype=float))
    S = available.shape[0]
    width = grid.slack + 1
    per = max(1, _CHUNK_CELLS // (width * (grid.D // grid.m + 3)))
    costs, spot_h, od_h = [], [], []
    for lo in range(0, S, per):
        c, sg, og = _solve(available[lo : lo + per], spot_prices[lo : lo + per], job, grid, track_hours)
        costs.append(c)
        spot_h.append(sg)
        od_h.append(og)
    scale = grid.grain_hours * job.instances
    return OptimalRuns(
        cost=np.concatenate(costs) * scale,
        spot_hours=np.concatenate(spot_h) * grid.grain_hours,
        on_demand_hours=np.concatenate(od_h) * grid.grain_hours,
    )


def _run_lengths(avail: np.ndarray, horizon: int) -> np.ndarray:
    """run[s, t] = consecutive available ticks starting at t (0 when unavailable)."""
    S = avail.shape[0]
    a = avail[:, :horizon]
    if a.shape[1] < horizon:
        a = np.concatenate([a, np.zeros((S, horizon - a.shape[1]), bool)], axis=1)
    run = np.zeros((S, horizon + 1), dtype=np.int64)
    for t in range(horizon - 1, -1, -1):
        run[:, t] = np.where(a[:, t], run[:, t + 1] + 1, 0)
    return run[:, :horizon]


def _solve(
    avail: np.ndarray, sprice: np.ndarray, job: Job, grid: Grid, track: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m, D, P, T = grid.m, grid.D, grid.P, grid.T
    S = avail.shape[0]
    W = grid.slack + 1
    pad = max(D, m) + 1
    j, f = divmod(D, m)
    od = float(job.on_demand_price)
    inf = np.inf

    horizon = T + j + 2
    run = _run_lengths(avail, horizon)
    sp = np.zeros((S, horizon))
    n = min(sprice.shape[1], horizon)
    sp[:, :n] = sprice[:, :n]
    # money of the full ticks of a changeover starting at t: prefix sums of price·m
    csum = np.concatenate([np.zeros((S, 1)), np.cumsum(sp * m, axis=1)], axis=1)
    up = np.zeros((S, horizon), bool)
    up[:, : min(avail.shape[1], horizon)] = avail[:, :horizon]

    L = np.arange(W)
    # ring of value arrays V[t'] for t' in [t, t+j+1]: (modes none/spot/od, starts, lag + inf pad).
    # The billed grains (on-demand and spot) of the best plan ride along in a parallel ring when
    # asked for, packed into one number (see `_pack_unit`): a second ring costs about half again.
    od_unit = _pack_unit(grid) if track else 0.0
    R = j + 2
    ring = np.full((R, 3, S, W + pad), inf)
    ring[T % R, :, :, :W] = 0.0
    rbill = np.zeros((R, 3, S, W + pad)) if track else None

    tmp_v = np.empty((3, S, W))
    tmp_o = np.empty((3, S, W)) if track else None

    def take(dst: int, v: np.ndarray, o: np.ndarray | None) -> None:
        """dst := min(dst, v) elementwise, carrying the tracked grains of the winner."""
        if not track:
            np.minimum(tmp_v[dst], v, out=tmp_v[dst])
            return
        better = v < tmp_v[dst]
        np.copyto(tmp_v[dst], v, where=better)
        np.copyto(tmp_o[dst], o, where=better)  # type: ignore[index,arg-type]

    for t in range(T - 1, -1, -1):
        nxt = ring[(t + 1) % R]
        need = P - t * m + L  # grains still to do, per lag
        needc = np.clip(need, 0, None)[None, :]
        spot_now = up[:, t]
        # idle: "none" at t+1, lag + m
        idle_v = nxt[0, :, m : m + W]
        idle_o = rbill[(t + 1) % R, 0, :, m : m + W] if track else None  # type: ignore[index]

        # keep running (changeover already paid)
        p_t = sp[:, t : t + 1]
        run_sp_v = p_t * m + nxt[1, :, :W]
        run_od_v = od * m + nxt[2, :, :W]
        if track:
            run_sp_o = rbill[(t + 1) % R, 1, :, :W] + m  # type: ignore[index]
            run_od_o = rbill[(t + 1) % R, 2, :, :W] + m * od_unit  # type: ignore[index]
        else:
            run_sp_o = run_od_o = None
        if need[0] <= m:
            fin = np.broadcast_to((need <= m)[None, :], run_sp_v.shape)
            np.copyto(run_sp_v, p_t * needc, where=fin)
            np.copyto(run_od_v, od * needc, where=fin)
            if track:
                np.copyto(run_sp_o, np.broadcast_to(needc, fin.shape), where=fin)  # type: ignore[arg-type]
                np.copyto(run_od_o, np.broadcast_to(needc * od_unit, fin.shape), where=fin)  # type: ignore[arg-type]
        run_sp_v[~spot_now] = inf

        # a changeover into X at t: j overhead ticks, then tick t+j with f overhead grains
        sw: list[tuple[np.ndarray, np.ndarray | None]] = []
        for x in (1, 2):
            if t + j > T - 1:
                sw.append((np.full((S, W), inf), np.zeros((S, W))))
                continue
            if x == 1:
                pre = (csum[:, t + j] - csum[:, t])[:, None]
                last = sp[:, t + j : t + j + 1]
            else:
                pre = np.full((S, 1), od * m * j)
                last = np.full((S, 1), od)
            land = (t + j + 1) % R
            v = (pre + last * m) + ring[land, x, :, D : D + W]
            unit = od_unit if x == 2 else 1.0  # tracked grains billed on X
            o = None
            if track:
                o = rbill[land, x, :, D : D + W] + (j * m + m) * unit  # type: ignore[index]
            if need[0] <= m - f:
                fin = np.broadcast_to((need <= m - f)[None, :], v.shape)
                np.copyto(v, pre + last * (f + needc), where=fin)
                if track:
                    billed_fin = np.broadcast_to((j * m + f + needc) * unit, fin.shape)
                    np.copyto(o, billed_fin, where=fin)  # type: ignore[arg-type]
            if x == 1:
                v[run[:, t] < j + 1] = inf
            sw.append((v, o))

        # none: idle, or a changeover into spot or on-demand
        tmp_v[0] = idle_v
        if track:
            tmp_o[0] = idle_o  # type: ignore[index]
        take(0, *sw[0])
        take(0, *sw[1])
        # spot: keep running, idle, or change over to on-demand; preempted means "none"
        tmp_v[1] = run_sp_v
        if track:
            tmp_o[1] = run_sp_o  # type: ignore[index]
        take(1, idle_v, idle_o)
        take(1, *sw[1])
        gone = ~spot_now
        tmp_v[1][gone] = tmp_v[0][gone]
        if track:
            tmp_o[1][gone] = tmp_o[0][gone]  # type: ignore[index]
        # on-demand: keep running, idle, or change over to spot
        tmp_v[2] = run_od_v
        if track:
            tmp_o[2] = run_od_o  # type: ignore[index]
        take(2, idle_v, idle_o)
        take(2, *sw[0])

        cur = t % R
        ring[cur, :, :, :W] = tmp_v
        if track:
            rbill[cur, :, :, :W] = tmp_o  # type: ignore[index]
    v0 = ring[0, 0, :, 0].copy()
    if track:
        packed = rbill[0, 0, :, 0]  # type: ignore[index]
        od_grains = np.floor(packed / od_unit)
        return v0, packed - od_grains * od_unit, od_grains
    return v0, np.full(S, np.nan), np.full(S, np.nan)


def _pack_unit(grid: Grid) -> float:
    """The weight of one on-demand grain in the packed tracker `od_grains · unit + spot_grains`.

    A plan bills at most T·m grains of each kind (nothing after the deadline), so a power of two
    above T·m keeps the two counts apart, and while unit² ≤ 2**53 every packed value is an exact
    integer in a float64: both counts come back exact, whatever the prices."""
    unit = 2.0 ** (grid.T * grid.m).bit_length()
    if unit * unit > 2.0**53:
        raise InputError(
            f"a {grid.T}-tick deadline window at {grid.m} grains a tick is too long for the optimum"
        )
    return unit
