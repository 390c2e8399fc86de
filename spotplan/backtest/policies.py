"""Online policies: each sees, at the start of every tick, only whether spot is there now, its own
state, and the trace *before* the job started; never the future.

- `on-demand`: on-demand from the start.
- `greedy` (Can't Be Late §4): spot whenever available, else wait; Safety Net.
- `uniform-progress` (Can't Be Late §4): on-demand when idle and behind t·C/R; take any spot;
  hysteresis on on-demand until progress reaches the expectation at t + 2d; Safety Net.
- `spotplan`: ours. Spot whenever it is there and worth its changeover, on-demand only when the
  projected spot-only progress (from online availability estimates) falls short, hysteresis against
  ping-pong, and an exact, non-sticky safety net that keeps an on-demand finish possible at every
  tick (so it never misses a deadline on-demand could meet) while still hopping onto spot late.

The Safety Net of the paper (idle and R < C + 2d → on-demand to the end) is checked on the state
*after* the coming tick, since a tick-based policy cannot act in the middle of one.
"""

from __future__ import annotations

import math

import numpy as np

from spotplan.backtest.simulator import IDLE, OD, SPOT, Context, Grid

POLICY_NAMES = ("on-demand", "greedy", "uniform-progress", "optimal", "spotplan")


def _gain(grid: Grid, action: int, mode: int, overhead: int) -> int:
    """Progress grains this tick is sure to make under `action`."""
    if action == IDLE:
        return 0
    ov = overhead if action == mode else grid.D
    return grid.m - min(ov, grid.m)


def _overhead_after(grid: Grid, action: int, mode: int, overhead: int) -> int:
    if action == IDLE:
        return 0
    ov = overhead if action == mode else grid.D
    return max(ov - grid.m, 0)


def _margin_after(grid: Grid, t: int, action: int, mode: int, overhead: int, progress: int) -> int:
    """(time left − compute left) in grains at the end of this tick, if it goes as planned."""
    remaining_time = (grid.T - t - 1) * grid.m
    remaining_work = grid.P - progress - _gain(grid, action, mode, overhead)
    return remaining_time - remaining_work


class OnDemand:
    name = "on-demand"

    def reset(self, ctx: Context) -> None:
        self.grid = ctx.grid

    def decide(self, t: int, has_spot: bool, mode: int, overhead: int, progress: int) -> int:
        return OD


class Greedy:
    """Spot whenever available, else idle; the Safety Net sends it to on-demand for good."""

    name = "greedy"

    def reset(self, ctx: Context) -> None:
        self.grid = ctx.grid
        self.safety = False

    def _safe(self, t: int, a: int, mode: int, ov: int, prog: int) -> bool:
        return _margin_after(self.grid, t, a, mode, ov, prog) >= 2 * self.grid.D

    def decide(self, t: int, has_spot: bool, mode: int, overhead: int, progress: int) -> int:
        if self.safety:
            return OD
        a = SPOT if has_spot else IDLE
        if not self._safe(t, a, mode, overhead, progress):
            self.safety = True
            return OD
        return a


class UniformProgress(Greedy):
    """Expected progress ep(t) = t·C/R; current progress cp(t). (1) idle and cp < ep → on-demand;
    (2) take any available spot; (3) on on-demand stay until cp ≥ ep(t + 2d); plus Safety Net."""

    name = "uniform-progress"

    def _ep(self, grains: float) -> float:
        g = self.grid
        return grains * g.P / (g.T * g.m)

    def decide(self, t: int, has_spot: bool, mode: int, overhead: int, progress: int) -> int:
        if self.safety:
            return OD
        g = self.grid
        now = t * g.m
        if mode == OD and progress < self._ep(now + 2 * g.D):
            a = OD
        elif has_spot:
            a = SPOT
        elif progress < self._ep(now):
            a = OD
        else:
            a = IDLE
        if a != OD and not self._safe(t, a, mode, overhead, progress):
            self.safety = True
            return OD
        return a


class SpotplanPolicy:
    """Progress-aware switching with online estimates (see module docstring).

    Estimates, updated every tick from what has been seen (the pre-start history plus the run so
    far): the share of time spot is available `a`, and the mean length of an available run `o`
    (the expected remaining spot lifetime under a memoryless reading). On-demand is used only when
    the work left exceeds what spot alone is expected to deliver in the time left; a spot run is
    entered from on-demand only when `o` pays back the two changeovers (Can't Be Late's lifetime
    rule o > 2kd/(k−1)).
    """

    name = "spotplan"

    def __init__(self, prior_availability: float = 0.5, prior_run_hours: float = 2.0,
                 prior_weight_hours: float = 24.0, caution: float = 0.9) -> None:
        self.prior_availability = prior_availability
        self.prior_run_hours = prior_run_hours
        self.prior_weight_hours = prior_weight_hours
        self.caution = caution

    def reset(self, ctx: Context) -> None:
        g = ctx.grid
        self.grid = g
        self.k = ctx.k
        gap_h = g.gap_seconds / 3600.0
        self.gap_h = gap_h
        prior_ticks = self.prior_weight_hours / gap_h
        hist = ctx.history
        # availability counts (ticks) and run statistics seen so far
        self.seen_up = self.prior_availability * prior_ticks + float(np.sum(hist))
        self.seen = prior_ticks + float(len(hist))
        runs_prior = max(prior_ticks * self.prior_availability / (self.prior_run_hours / gap_h), 1e-9)
        if len(hist):
            ups = int(np.sum(np.diff(hist.astype(np.int8)) == 1) + int(hist[0]))
        else:
            ups = 0
        self.runs = runs_prior + ups
        self.prev = bool(hist[-1]) if len(hist) else False
        self.on_od_hold = False

    def _observe(self, has_spot: bool) -> None:
        self.seen += 1
        if has_spot:
            self.seen_up += 1
            if not self.prev:
                self.runs += 1
        self.prev = has_spot

    def _availability(self) -> float:
        return self.seen_up / self.seen

    def _mean_run_hours(self) -> float:
        return self.seen_up / self.runs * self.gap_h

    def decide(self, t: int, has_spot: bool, mode: int, overhead: int, progress: int) -> int:
        self._observe(has_spot)
        g = self.grid
        if progress >= g.P:
            return IDLE
        d_h = g.D * g.grain_hours
        k = self.k
        o = self._mean_run_hours()
        # the cheapest safe choice first, falling back towards on-demand
        for a in self._preferences(t, has_spot, mode, overhead, progress, d_h, k, o):
            if a == OD or _margin_after(g, t, a, mode, overhead, progress) >= g.D:
                return a
        return OD

    def _preferences(
        self, t: int, has_spot: bool, mode: int, overhead: int, progress: int, d_h: float, k: float, o: float
    ) -> list[int]:
        g = self.grid
        time_left = (g.T - t) * g.m
        work_left = g.P - progress
        avail = self._availability() * self.caution
        # expected spot progress in the time left: availability less a changeover per run
        cycle = max(o / max(self._availability(), 1e-6), 1e-6)  # hours between run starts
        runs_left = (time_left * g.grain_hours) / cycle
        spot_capacity = avail * time_left - runs_left * g.D
        behind = work_left > spot_capacity
        if mode == OD:
            # hysteresis: leave on-demand only once ahead by two changeovers' worth
            stay = work_left + 2 * g.D > spot_capacity
            worth = math.isinf(k) or o > 2 * k * d_h / max(k - 1, 1e-9)
            if has_spot and worth and not (stay and overhead > 0):
                return [SPOT, OD]
            return [OD] if stay else [IDLE, OD]
        if has_spot:
            if mode == SPOT or math.isinf(k) or o > k * d_h / max(k - 1, 1e-9):
                return [SPOT, OD]
        return [OD] if behind else [IDLE, OD]


def make_policy(name: str) -> object:
    if name == "on-demand":
        return OnDemand()
    if name == "greedy":
        return Greedy()
    if name == "uniform-progress":
        return UniformProgress()
    if name == "spotplan":
        return SpotplanPolicy()
    raise ValueError(f"unknown policy {name!r}")
