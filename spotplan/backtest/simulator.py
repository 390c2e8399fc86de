"""The job model of "Can't Be Late" (NSDI'24) on an integer grid, and the replay of one policy.

A job needs C hours of compute on n gang-scheduled instances before a deadline R hours away. Each
tick it runs on spot (only when the trace shows at least n instances), on on-demand (always there)
or idles. Every switch into spot or on-demand costs the changeover delay d: no progress, billed at
the new price. A preemption (spot gone at a tick) ends the spot run; the next spot run pays d again.
Billing is per second, so the tick in which the job completes is billed only up to completion.

Everything is counted in integer *grains*, a tick split into `m` equal parts chosen so that d is a
whole number of grains (exactly when the tick and d allow it, else rounded to the nearest grain and
reported as `changeover_hours_effective`); so, when it can be, is the job (else it is rounded up
to the grain: `compute_hours_effective`). The deadline is rounded down to whole ticks. The
simulator and the dynamic programme of `optimal` share this grid, so "the optimum is never above a
policy that meets its deadline" holds exactly, not approximately. (A run that misses is finished on
on-demand after the deadline; with the deadline gone that can cost less than meeting it.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from spotplan.errors import InputError

IDLE, SPOT, OD = 0, 1, 2

# The optimum's work grows with the slack in grains; this bounds it while keeping d exact on
# every published trace (600 s, 195 s, 150 s ticks) and within a few seconds on the 32/34 s ones.
MAX_SLACK_GRAINS = 6000
MAX_GRAINS_PER_TICK = 60


@dataclass(frozen=True)
class Job:
    compute_hours: float
    deadline_hours: float
    changeover_hours: float = 0.2
    instances: int = 1
    spot_price: float = 0.9731
    on_demand_price: float = 3.06

    def __post_init__(self) -> None:
        # NaN passes every comparison below unnoticed and infinity overflows the grid: refuse both
        # first, naming the flag that carries the value
        for flag, value in (
            ("--job-hours", self.compute_hours),
            ("--deadline-hours", self.deadline_hours),
            ("--changeover-hours", self.changeover_hours),
            ("--spot-price", self.spot_price),
            ("--on-demand-price", self.on_demand_price),
        ):
            if not math.isfinite(value):
                raise InputError(f"{flag} must be a finite number, not {value:g}")
        if self.compute_hours <= 0:
            raise InputError("--job-hours must be positive")
        if self.deadline_hours < self.compute_hours + self.changeover_hours:
            raise InputError(
                f"deadline {self.deadline_hours:g} h is shorter than the job plus one changeover "
                f"({self.compute_hours:g} + {self.changeover_hours:g} h): even on-demand misses it"
            )
        if self.changeover_hours < 0:
            raise InputError("--changeover-hours must not be negative")
        if self.instances < 1:
            raise InputError("--instances must be at least 1")
        if self.spot_price < 0:
            raise InputError("--spot-price must not be negative")
        if self.on_demand_price <= 0:
            raise InputError("--on-demand-price must be positive")


@dataclass(frozen=True)
class Grid:
    """A job on a trace's tick: `m` grains a tick, changeover `D` grains, job `P` grains,
    deadline `T` ticks."""

    gap_seconds: float
    m: int
    D: int
    P: int
    T: int

    @property
    def grain_hours(self) -> float:
        return self.gap_seconds / self.m / 3600.0

    @property
    def slack(self) -> int:
        """Grains of the deadline not needed for compute: what idling and changeovers consume."""
        return self.T * self.m - self.P

    @property
    def changeover_hours_effective(self) -> float:
        return self.D * self.grain_hours

    @property
    def compute_hours_effective(self) -> float:
        """C on the grid: a job that is not a whole number of grains is rounded up to the grain."""
        return self.P * self.grain_hours


def _off_grid(grains: float) -> float:
    """How far `grains` is from a whole number, relative to it (0 when whole or zero)."""
    return abs(grains - round(grains)) / grains if grains > 0 else 0.0


def make_grid(job: Job, gap_seconds: float) -> Grid:
    d_ticks = job.changeover_hours * 3600.0 / gap_seconds
    c_ticks = job.compute_hours * 3600.0 / gap_seconds
    T = int(math.floor(job.deadline_hours * 3600.0 / gap_seconds + 1e-9))
    slack_ticks = max(T - c_ticks, 1.0)
    m_max = max(1, min(MAX_GRAINS_PER_TICK, int(MAX_SLACK_GRAINS / slack_ticks)))
    best_m, best_err = 1, math.inf
    for m in range(1, m_max + 1):
        # Both the changeover and the job should be whole grains: a job rounded up to the grain
        # would be billed for compute it does not need.
        err = _off_grid(d_ticks * m) + _off_grid(c_ticks * m)
        if err < best_err - 1e-12:
            best_m, best_err = m, err
        if err < 1e-9:
            break
    m = best_m
    D = int(round(d_ticks * m))
    P = int(math.ceil(c_ticks * m - 1e-9))
    if T * m < P + D:
        raise InputError(
            f"deadline {job.deadline_hours:g} h leaves no room for the job and one changeover "
            f"at this trace's {gap_seconds:g} s tick"
        )
    return Grid(gap_seconds=gap_seconds, m=m, D=D, P=P, T=T)


@dataclass
class Context:
    """What a policy may know at the start of a run: the job, the grid, prices, and the trace
    *before* the start (availability history for online estimates; never the future)."""

    job: Job
    grid: Grid
    history: np.ndarray  # bool per tick before the start, oldest first
    k: float  # on-demand ÷ spot price as the job starts (the trace's own price when it has one)


class Policy(Protocol):
    name: str

    def reset(self, ctx: Context) -> None: ...

    def decide(self, t: int, has_spot: bool, mode: int, overhead: int, progress: int) -> int: ...


@dataclass
class Run:
    cost: float
    met_deadline: bool
    spot_hours: float
    on_demand_hours: float
    changeovers: int
    preemptions: int
    finish_hours: float
    actions: np.ndarray | None = field(default=None, repr=False)


def replay(
    policy: Policy,
    available: np.ndarray,
    spot_prices: np.ndarray,
    job: Job,
    grid: Grid,
    history: np.ndarray | None = None,
    record: bool = False,
) -> Run:
    """Run `policy` over one window: `available` (bool per tick, at least T long) and the spot
    price per tick. A run that misses the deadline is finished on on-demand afterwards (the work
    left plus a changeover unless already there, billed at the on-demand price) and counted as a
    miss; free of the deadline, it can cost less than the optimum, which meets it."""
    m, D, P, T = grid.m, grid.D, grid.P, grid.T
    # the price the job faces as it starts (the trace's own when it has one), not the flag's
    p0 = float(spot_prices[0]) if len(spot_prices) else job.spot_price
    k = job.on_demand_price / p0 if p0 > 0 else math.inf
    policy.reset(Context(job, grid, history if history is not None else np.zeros(0, bool), k))
    od = job.on_demand_price
    mode, ov, prog = IDLE, 0, 0
    spot_money = 0.0
    od_grains = spot_grains = changeovers = preemptions = 0
    actions = np.zeros(T, dtype=np.int8) if record else None
    finish = -1.0
    avail = available[:T].tolist()
    prices = spot_prices[:T].tolist()
    for t in range(T):
        has = bool(avail[t])
        if mode == SPOT and not has:
            mode, ov = IDLE, 0
            preemptions += 1
        a = policy.decide(t, has, mode, ov, prog)
        if a == SPOT and not has:
            raise RuntimeError(f"policy {policy.name} asked for spot at tick {t} when none was available")
        if actions is not None:
            actions[t] = a
        if a == IDLE:
            mode, ov = IDLE, 0
            continue
        if a != mode:
            mode, ov = a, D
            changeovers += 1
        use = ov if ov < m else m
        ov -= use
        gain = m - use
        need = P - prog
        billed = m
        if gain >= need:
            billed = use + need
            prog = P
        else:
            prog += gain
        if a == SPOT:
            spot_grains += billed
            spot_money += prices[t] * billed
        else:
            od_grains += billed
        if prog >= P:
            finish = (t * m + billed) * grid.grain_hours
            break
    met = prog >= P
    if not met:
        # finish on on-demand after the deadline: a changeover unless already there
        extra = (P - prog) + (ov if mode == OD else D)
        od_grains += extra
        finish = T * grid.m * grid.grain_hours + extra * grid.grain_hours
    scale = grid.grain_hours * job.instances
    cost = (spot_money + od * od_grains) * scale
    return Run(
        cost=cost,
        met_deadline=met,
        spot_hours=spot_grains * grid.grain_hours,
        on_demand_hours=od_grains * grid.grain_hours,
        changeovers=changeovers,
        preemptions=preemptions,
        finish_hours=finish,
        actions=actions,
    )
