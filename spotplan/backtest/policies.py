"""Online policies: each sees, at the start of every tick, only whether spot is there now, its own
state, and the trace *before* the job started; never the future.

- `on-demand`: on-demand from the start.
- `greedy` (Can't Be Late §4): spot whenever available, else wait; Safety Net (when idle).
- `uniform-progress` (Can't Be Late §4): on-demand when idle and behind t·C/R; take any spot;
  hysteresis on on-demand until progress reaches the expectation at t + 2d; Safety Net.
- `spotplan`: ours. Spends the margin (time left − work left) along a reserve that shrinks to the
  deadline, enters spot when the run's age-conditioned expected remaining life (estimated online
  from the runs seen so far) pays for the changeover, sits out the first d of a run on on-demand
  when a wasted changeover (k·d) outweighs the margin per outage left, and keeps an exact,
  non-sticky safety net: an on-demand finish stays possible after every tick and after every
  changeover it starts (so it never misses a deadline on-demand could meet, nor pays for a
  changeover it would have to abandon) while it can still hop onto spot late in the run.

The Safety Net of the paper (idle and R < C + 2d → on-demand to the end) is checked when the policy
would idle, on the state *after* the coming tick, since a tick-based policy cannot act in the middle
of one. Uniform Progress's hysteresis (stay on on-demand until progress reaches ep(t + 2d)) comes
before taking spot: it exists to stop the job flapping between on-demand and spot.
"""

from __future__ import annotations

import math

import numpy as np

from spotplan.backtest.simulator import IDLE, OD, SPOT, Context, Grid, Policy
from spotplan.backtest.traces import streaks

POLICY_NAMES = ("on-demand", "greedy", "uniform-progress", "optimal", "spotplan")


def _gain(grid: Grid, action: int, mode: int, overhead: int) -> int:
    """Progress grains this tick is sure to make under `action`."""
    if action == IDLE:
        return 0
    ov = overhead if action == mode else grid.D
    return grid.m - min(ov, grid.m)


def _margin_after(grid: Grid, t: int, action: int, mode: int, overhead: int, progress: int) -> int:
    """(time left − compute left) in grains at the end of this tick, if it goes as planned."""
    remaining_time = (grid.T - t - 1) * grid.m
    remaining_work = grid.P - progress - _gain(grid, action, mode, overhead)
    return remaining_time - remaining_work


def _margin_settled(grid: Grid, t: int, action: int, mode: int, overhead: int, progress: int) -> int:
    """The margin once this tick *and* the changeover `action` starts or continues are over. A
    changeover makes no progress, so it spends one grain of margin per grain however many ticks
    it spans; checking only the end of this tick would let a policy start a changeover whose
    later ticks the margin cannot pay for."""
    after = _margin_after(grid, t, action, mode, overhead, progress)
    if action == IDLE:
        return after
    ov = overhead if action == mode else grid.D
    return after - max(ov - grid.m, 0)


class OnDemand:
    name = "on-demand"

    def reset(self, ctx: Context) -> None:
        self.grid = ctx.grid

    def decide(self, t: int, has_spot: bool, mode: int, overhead: int, progress: int) -> int:
        return OD


class Greedy:
    """Spot whenever available, else idle; the Safety Net sends it to on-demand for good. As in the
    paper, the Safety Net is a rule about idling: spot is taken whenever it is there, whatever the
    margin (so a market that flaps with no idle tick between runs can make it miss)."""

    name = "greedy"

    def reset(self, ctx: Context) -> None:
        self.grid = ctx.grid
        self.safety = False

    def _safe(self, t: int, a: int, mode: int, ov: int, prog: int) -> bool:
        return _margin_after(self.grid, t, a, mode, ov, prog) >= 2 * self.grid.D

    def decide(self, t: int, has_spot: bool, mode: int, overhead: int, progress: int) -> int:
        if self.safety:
            return OD
        if has_spot:
            return SPOT
        if not self._safe(t, IDLE, mode, overhead, progress):
            self.safety = True
            return OD
        return IDLE


class UniformProgress(Greedy):
    """Expected progress ep(t) = t·C/R; current progress cp(t). (1) idle and cp < ep → on-demand;
    (2) take any available spot; (3) on on-demand stay until cp ≥ ep(t + 2d) (checked first: it is
    what stops the job flapping); plus the Safety Net when it would idle."""

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
        if a == IDLE and not self._safe(t, a, mode, overhead, progress):
            self.safety = True
            return OD
        return a


class LengthStats:
    """Completed run lengths (ticks) seen so far, for the expected remaining length of a run that
    has lasted `age` ticks: E[L − age | L > age]. Spot lifetimes are far from memoryless (a run
    that has lasted tends to last), so the age matters.

    The estimate is shrunk towards a prior run whose remaining life is max(prior, tail·age): once
    a run outlives most of the runs seen, the few longer ones (or none) would otherwise pin the
    estimate to the fixed prior, and a policy on on-demand would sit out the longest spot runs of
    all. tail = 2 is the expected remaining life of a Pareto tail with index 1.5 (heavy, as spot
    lifetimes are); tail = 0 gives a fixed prior."""

    def __init__(self, prior_ticks: float, prior_weight: int = 2, tail: float = 0.0) -> None:
        self.lengths: list[int] = []
        self.prior = prior_ticks
        self.prior_weight = prior_weight
        self.tail = tail
        self._sorted: np.ndarray | None = None
        self._suffix: np.ndarray | None = None

    def add(self, length: int) -> None:
        self.lengths.append(length)
        self._sorted = None

    def mean(self) -> float:
        total = sum(self.lengths) + self.prior * self.prior_weight
        return total / (len(self.lengths) + self.prior_weight)

    def _prepare(self) -> None:
        if self._sorted is None:
            self._sorted = np.sort(np.asarray(self.lengths, dtype=float))
            self._suffix = np.concatenate([np.cumsum(self._sorted[::-1])[::-1], [0.0]])

    def expected_remaining(self, age: int) -> float:
        self._prepare()
        assert self._sorted is not None and self._suffix is not None
        idx = int(np.searchsorted(self._sorted, age, side="right"))
        count = len(self._sorted) - idx
        # shrink towards the prior run when few runs lasted this long
        w = self.prior_weight
        prior = max(self.prior, self.tail * age)
        return (self._suffix[idx] - age * count + prior * w) / (count + w)


def load_streaks(up: np.ndarray, runs: LengthStats, outages: LengthStats) -> tuple[bool | None, int]:
    """Add the complete run and outage lengths of `up` to the stats; return the state of the last
    streak and its age so far (None, 0 for an empty series). The first streak is left out, as its
    start is unknown, and the last, which is still going."""
    lengths, is_up = streaks(up)
    if not len(lengths):
        return None, 0
    for length, was_up in zip(lengths[1:-1].tolist(), is_up[1:-1].tolist()):
        (runs if was_up else outages).add(int(length))
    return bool(is_up[-1]), int(lengths[-1])


class SpotplanPolicy:
    """Ours: progress-aware switching with age-conditioned lifetime estimates and an exact,
    non-sticky safety net.

    The margin M = time left − work left is what idling and changeovers spend. The policy keeps M
    above a reserve that shrinks linearly to d at the deadline, `d + β·M0·(time left / R)`, idling
    through spot outages while M stays above it and moving to on-demand otherwise; it never leaves
    on-demand to idle (that would buy a second changeover). β falls from 1 for tight deadlines
    (slack/R ≤ 0.1) to 0.5 for loose ones (slack/R ≥ 0.3): with little slack, margin is the scarce
    thing; with plenty, on-demand hours are.

    Spot is entered when its expected *remaining* life, estimated online from the lengths of the
    spot runs seen so far (history before the start plus the run) given the current run's age,
    pays for the changeover: from idle o > kd/(k−1), from on-demand o > 2·(2kd/(k−1)) (Can't Be
    Late's oracle rule with the oracle replaced by the estimate, and a factor 2 against the
    estimate's optimism in flapping markets). Spot lifetimes are far from memoryless, so the age
    matters; a run older than nearly all runs seen is credited with a heavy tail (expected
    remaining life ≥ `tail`·age, see `LengthStats`), so a job on on-demand does not sit out the
    longest spot runs when margin is short. Below the reserve each excursion from on-demand (2d
    of margin) is dearer, so the required life grows with the shortfall (`scarcity`), which keeps
    flapping markets from eating the margin and locking the job onto on-demand. On on-demand it
    also waits out the first d (`od_wait`·d, rounded to ticks) of a new spot run when a wasted
    changeover, k·d, exceeds the margin per outage left (time left ÷ the mean run + outage cycle
    seen): a run that dies that young would cost a changeover back that the margin cannot
    absorb; with margin to spare the wait would only buy on-demand hours. The safety net
    checks every tick that an on-demand finish stays possible (margin ≥ d after the tick, and
    after the whole changeover when one is started: a changeover longer than a tick that only
    the first tick's check allowed would have to be abandoned, paid for and wasted), so the job
    never misses a deadline on-demand could meet, yet it can still hop onto spot late in the
    run.

    β, the factors and the reserve shape were chosen on the 600 s availability traces with
    d = 0.2 h, `tail` on the same traces (seed-0 starts, R = 52 h); the 32 s preemption traces were
    held out (docs/backtest.md, `benchmarks/backtest_policies.py`). The wait on on-demand has no
    constant of its own (d and k·d are the job's); it was measured on both seeds and all twelve
    traces.
    """

    name = "spotplan"

    def __init__(
        self,
        prior_run_hours: float = 2.0,
        od_exit_factor: float = 2.0,
        scarcity: float = 10.0,
        tail: float = 2.0,
        od_wait: float = 1.0,
    ) -> None:
        self.od_wait = od_wait
        self.prior_run_hours = prior_run_hours
        self.tail = tail
        self.od_exit_factor = od_exit_factor
        self.scarcity = scarcity

    def reset(self, ctx: Context) -> None:
        g = ctx.grid
        self.grid = g
        self.k = ctx.k
        self.gap_h = g.gap_seconds / 3600.0
        self.runs = LengthStats(self.prior_run_hours / self.gap_h, tail=self.tail)
        # outage lengths only to count the outages left (for the wait on on-demand)
        self.outages = LengthStats(self.prior_run_hours / self.gap_h)
        self.state, self.age = load_streaks(ctx.history, self.runs, self.outages)
        d_h = g.D * g.grain_hours
        k = self.k
        unit = 0.0 if math.isinf(k) else k * d_h / max(k - 1.0, 1e-9)
        self.enter_from_idle_h = unit
        self.enter_from_od_h = 2 * unit * self.od_exit_factor
        tightness = g.slack / (g.T * g.m)
        self.beta = min(1.0, max(0.5, 1.25 - 2.5 * tightness))
        self.M0 = g.slack
        self.wasted_changeover_h = k * d_h  # d on on-demand, in spot-hours; k = ∞ never waits
        self.wait_ticks = round(self.od_wait * d_h / self.gap_h)

    def _observe(self, has_spot: bool) -> None:
        if self.state is None or has_spot != self.state:
            if self.state:
                self.runs.add(self.age)
            elif self.state is not None:
                self.outages.add(self.age)
            self.state = has_spot
            self.age = 0
        self.age += 1

    def decide(self, t: int, has_spot: bool, mode: int, overhead: int, progress: int) -> int:
        self._observe(has_spot)
        g = self.grid
        if progress >= g.P:
            return IDLE
        for a in self._preferences(t, has_spot, mode, progress):
            # the net: an on-demand finish must stay possible once any changeover `a` starts is
            # over, not just after this tick (a changeover can span several ticks)
            if a == OD or _margin_settled(g, t, a, mode, overhead, progress) >= g.D:
                return a
        return OD

    def _wait_on_od(self, margin: int, time_left: int) -> bool:
        """Whether to sit out the first `od_wait`·d of a spot run on on-demand: only when a wasted
        changeover, k·d (d on on-demand, in spot-hours), exceeds the margin per outage left
        (time left ÷ the mean run + outage cycle seen): then the margin cannot absorb the short
        runs and a run that dies young costs a changeover back; otherwise waiting only buys
        on-demand hours."""
        if self.age > self.wait_ticks or math.isinf(self.k):
            return False
        g = self.grid
        cycle_ticks = max(self.runs.mean() + self.outages.mean(), 1.0)
        outages_left = max(time_left / g.m / cycle_ticks, 1e-9)
        return self.wasted_changeover_h > margin * g.grain_hours / outages_left

    def _reserve(self, time_left: int) -> float:
        """The margin (grains) to keep with `time_left` grains to go: d + β·M0·(time left ÷ R)."""
        g = self.grid
        return g.D + self.beta * self.M0 * time_left / (g.T * g.m)

    def _life_hours(self) -> float:
        """The current spot run's expected remaining life, in hours, given its age."""
        return self.runs.expected_remaining(self.age - 1) * self.gap_h

    def _preferences(self, t: int, has_spot: bool, mode: int, progress: int) -> list[int]:
        g = self.grid
        time_left = (g.T - t) * g.m
        margin = time_left - (g.P - progress)
        reserve = self._reserve(time_left)
        if has_spot:
            if mode == SPOT:
                return [SPOT, OD]
            life_h = self._life_hours()
            need = self.enter_from_od_h if mode == OD else self.enter_from_idle_h
            if mode == OD and margin < reserve:
                need *= 1.0 + self.scarcity * (reserve - margin) / max(reserve, 1)
            if mode == OD and self._wait_on_od(margin, time_left):
                return [OD]
            if life_h > need:
                return [SPOT, OD]
            return [OD] if mode == OD else [IDLE, OD]
        if mode == OD:
            return [OD]
        return [IDLE, OD] if margin - g.m >= reserve else [OD]


def make_policy(name: str) -> Policy:
    if name == "on-demand":
        return OnDemand()
    if name == "greedy":
        return Greedy()
    if name == "uniform-progress":
        return UniformProgress()
    if name == "spotplan":
        return SpotplanPolicy()
    raise ValueError(f"unknown policy {name!r}")
