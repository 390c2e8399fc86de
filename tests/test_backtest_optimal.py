"""The simulator and the omniscient optimum: hand-worked tiny traces, and an exhaustive search
over every action sequence on random tiny cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from spotplan.backtest.optimal import optimal_costs
from spotplan.backtest.simulator import IDLE, OD, SPOT, Grid, Job, make_grid, replay

pytestmark = pytest.mark.timeout(60)


def _opt(avail: list[int], job: Job, gap: float = 3600.0, prices: list[float] | None = None) -> float:
    grid = make_grid(job, gap)
    a = np.asarray(avail, dtype=bool)[None, :]
    p = np.asarray(prices if prices is not None else [job.spot_price] * len(avail), dtype=float)[None, :]
    return float(optimal_costs(a, p, job, grid).cost[0])


class Script:
    """Plays a fixed action sequence (idles once the job is done)."""

    name = "script"

    def __init__(self, seq: tuple[int, ...]) -> None:
        self.seq = seq

    def reset(self, ctx: object) -> None:
        pass

    def decide(self, t: int, has_spot: bool, mode: int, overhead: int, progress: int) -> int:
        return self.seq[t]


def test_grid_keeps_changeover_exact() -> None:
    g = make_grid(Job(48, 52, 0.2), 600)  # 720 s changeover on a 600 s tick: 120 s grains
    assert (g.m, g.D, g.P, g.T) == (5, 6, 1440, 312)
    g2 = make_grid(Job(48, 70, 0.2), 195)  # the 45-day traces' tick
    assert g2.D * g2.gap_seconds / g2.m == pytest.approx(720)
    assert g2.changeover_hours_effective == pytest.approx(0.2)


def test_changeover_makes_idling_optimal() -> None:
    # C = 4 h, R = 6 h, d = 0.5 h, spot $1, on-demand $3, spot gone for the third hour.
    # Best: spot 2 h (0.5 h changeover + 1.5 h work), idle through the gap, spot 3 h again
    # (0.5 h changeover + 2.5 h work): 5 h of spot = $5. Covering the gap with on-demand pays
    # two more changeovers and $3/h, and staying idle costs nothing.
    job = Job(4, 6, 0.5, spot_price=1.0, on_demand_price=3.0)
    trace = [1, 1, 0, 1, 1, 1]
    assert _opt(trace, job) == pytest.approx(5.0)
    grid = make_grid(job, 3600)
    a = np.asarray(trace, bool)
    p = np.ones(6)
    idle_gap = replay(Script((SPOT, SPOT, IDLE, SPOT, SPOT, SPOT)), a, p, job, grid)
    od_gap = replay(Script((SPOT, SPOT, OD, SPOT, SPOT, SPOT)), a, p, job, grid)
    assert idle_gap.met_deadline and idle_gap.cost == pytest.approx(5.0)
    assert od_gap.cost > idle_gap.cost
    # without a changeover the optimum is trivial: spot whenever available, 4 h
    assert _opt(trace, Job(4, 6, 0.0, spot_price=1.0, on_demand_price=3.0)) == pytest.approx(4.0)


def test_hand_cases() -> None:
    job = Job(4, 6, 0.5, spot_price=1.0, on_demand_price=3.0)
    # no spot at all: on-demand with one changeover, (4 + 0.5) h × $3
    assert _opt([0] * 6, job) == pytest.approx(13.5)
    # spot throughout: one changeover on spot
    assert _opt([1] * 6, job) == pytest.approx(4.5)
    # per-second billing of the last tick: 1.25 h job + 0.25 h changeover = 1.5 h
    assert _opt([1] * 3, Job(1.25, 3, 0.25, spot_price=1.0, on_demand_price=3.0)) == pytest.approx(1.5)
    # a price spike in hour 2 is waited out: start at hour 2, 0.5 + 1 + 1 + 0.5 h of work, $3.5
    job3 = Job(3, 6, 0.5, spot_price=1.0, on_demand_price=3.0)
    assert _opt([1] * 6, job3, prices=[1, 5, 1, 1, 1, 1]) == pytest.approx(3.5)


def test_instances_scale_cost() -> None:
    one = _opt([1, 1, 0, 1, 1, 1], Job(4, 6, 0.5, 1, 1.0, 3.0))
    four = _opt([1, 1, 0, 1, 1, 1], Job(4, 6, 0.5, 4, 1.0, 3.0))
    assert four == pytest.approx(4 * one)


def _brute(
    avail: np.ndarray, prices: np.ndarray, job: Job, grid: Grid
) -> tuple[float, set[tuple[float, float]]]:
    """The cheapest cost, and the (spot, on-demand) hours of every schedule that reaches it."""
    best, hours = np.inf, set()
    for seq in itertools.product((IDLE, SPOT, OD), repeat=grid.T):
        if any(a == SPOT and not avail[t] for t, a in enumerate(seq)):
            continue
        r = replay(Script(seq), avail, prices, job, grid)
        if not r.met_deadline or r.cost > best + 1e-9:
            continue
        if r.cost < best - 1e-9:
            best, hours = r.cost, set()
        hours.add((round(r.spot_hours, 9), round(r.on_demand_hours, 9)))
    return float(best), hours


def test_optimum_equals_exhaustive_search() -> None:
    rng = np.random.default_rng(7)
    for _ in range(40):
        m = int(rng.integers(1, 4))
        T = int(rng.integers(3, 7))
        D = int(rng.integers(0, min(3 * m, T * m - 1) + 1))
        P = int(rng.integers(1, T * m - D + 1))
        grid = Grid(3600.0, m, D, P, T)
        job = Job(P / m, T, D / m, spot_price=1.0, on_demand_price=float(rng.choice([1.5, 2.0, 3.0])))
        avail = rng.random(T) < 0.6
        prices = np.round(rng.uniform(0.5, 1.5, T), 2)
        want, hours = _brute(avail, prices, job, grid)
        got = optimal_costs(avail[None, :], prices[None, :], job, grid)
        assert got.cost[0] == pytest.approx(want), (m, D, P, T, avail)
        # the hours are those of a cheapest schedule, though the prices vary tick by tick
        assert (round(got.spot_hours[0], 9), round(got.on_demand_hours[0], 9)) in hours


def test_tracked_hours_add_up() -> None:
    rng = np.random.default_rng(3)
    job = Job(10, 14, 0.2, spot_price=1.0, on_demand_price=3.0)
    grid = make_grid(job, 600)
    a = rng.random((30, grid.T)) < 0.5
    o = optimal_costs(a, np.ones_like(a, dtype=float), job, grid)
    assert np.allclose(o.cost, o.spot_hours * 1.0 + o.on_demand_hours * 3.0)
    assert np.all(o.spot_hours + o.on_demand_hours >= job.compute_hours - 1e-9)
    plain = optimal_costs(a, np.ones_like(a, dtype=float), job, grid, track_hours=False)
    assert np.allclose(plain.cost, o.cost)


def test_missed_deadline_is_finished_on_demand() -> None:
    job = Job(2, 4, 0.5, spot_price=1.0, on_demand_price=3.0)
    grid = make_grid(job, 3600)
    r = replay(Script((IDLE,) * 4), np.zeros(4, bool), np.ones(4), job, grid)
    assert not r.met_deadline
    assert r.cost == pytest.approx((2 + 0.5) * 3.0)
    assert r.finish_hours == pytest.approx(4 + 2.5)


def test_policy_may_not_take_absent_spot() -> None:
    job = Job(2, 4, 0.5)
    grid = make_grid(job, 3600)
    with pytest.raises(RuntimeError, match="asked for spot"):
        replay(Script((SPOT,) * 4), np.zeros(4, bool), np.ones(4), job, grid)


@pytest.mark.parametrize(
    "avail,prices,job_hours,cost,spot_h,od_h",
    [
        # idle through the dear hours, then 0.5 h changeover + 1 h work at $0.5
        ([1, 1, 1, 1], [5, 5, 0.5, 0.5], 1.0, 0.75, 1.5, 0.0),
        # spot t0-t1 ($0.5 + $2: changeover + 1.5 h work), then on-demand 0.5 h changeover + 1 h
        ([1, 1, 0, 0], [0.5, 2, 2, 2], 2.5, 7.0, 2.0, 1.5),
    ],
)
def test_hours_exact_when_prices_vary(
    avail: list[int], prices: list[float], job_hours: float, cost: float, spot_h: float, od_h: float
) -> None:
    # Spot hours used to be the spot spend ÷ the window's mean price (0.27 h and 1.54 h here).
    job = Job(job_hours, 4, 0.5, spot_price=1.0, on_demand_price=3.0)
    grid = make_grid(job, 3600)
    o = optimal_costs(np.asarray(avail, bool)[None, :], np.asarray(prices, float)[None, :], job, grid)
    assert o.cost[0] == pytest.approx(cost)
    assert o.spot_hours[0] == spot_h and o.on_demand_hours[0] == od_h
