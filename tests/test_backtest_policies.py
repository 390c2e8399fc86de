"""Policies on traces built to trigger each rule of the paper; spotplan's guarantees (no misses,
no look-ahead); the optimum below every policy on every start; determinism of a replay."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spotplan.backtest.policies import Greedy, LengthStats, SpotplanPolicy, UniformProgress
from spotplan.backtest.replay import run_backtest
from spotplan.backtest.simulator import IDLE, OD, SPOT, Context, Job, make_grid, replay
from spotplan.backtest.traces import Trace, expand_paths, load_trace

pytestmark = pytest.mark.timeout(90)


def _actions(policy: object, avail: list[int], job: Job, gap: float = 3600.0) -> list[int]:
    grid = make_grid(job, gap)
    a = np.asarray(avail, bool)
    r = replay(policy, a, np.full(len(a), job.spot_price), job, grid, record=True)  # type: ignore[arg-type]
    assert r.actions is not None
    return r.actions.tolist()


def _markov(n: int, p_up: float, p_down: float, seed: int) -> np.ndarray:
    """A two-state availability chain: stays up with p_up, stays down with p_down."""
    rng = np.random.default_rng(seed)
    out = np.zeros(n, bool)
    state = True
    for i in range(n):
        out[i] = state
        state = rng.random() < (p_up if state else 1 - p_down)
    return out


def test_greedy_exploits_spot_and_waits() -> None:
    job = Job(2, 8, 0.5, spot_price=1.0, on_demand_price=3.0)
    # spot, gone (wait), back (take it again): 0.5 + 1 h, then 0.5 + 0.5 h
    assert _actions(Greedy(), [1, 1, 0, 1, 1, 1, 1, 1], job)[:4] == [SPOT, SPOT, IDLE, SPOT]


def test_greedy_safety_net_goes_on_demand_for_good() -> None:
    # C = 2 h, R = 4 h, d = 0.5 h, no spot: idling hour 0 leaves R = 3 ≥ C + 2d = 3; idling
    # hour 1 would leave R = 2 < 3, so it switches at hour 1 and stays on on-demand even when spot
    # comes back in hour 2.
    job = Job(2, 4, 0.5, spot_price=1.0, on_demand_price=3.0)
    assert _actions(Greedy(), [0, 0, 1, 1], job) == [IDLE, OD, OD, OD]


def test_uniform_progress_rules() -> None:
    # C = 4 h, R = 8 h, d = 0.5 h: ep(t) = t/2. Hour 0: cp = ep = 0, idle. Hour 1: behind
    # (0 < 0.5), rule 1 → on-demand. Hours 2-3: hysteresis, stay until cp ≥ ep(t + 2d):
    # cp(2) = 0.5 < ep(3) = 1.5, cp(3) = 2 < ep(4) = 2.5 (wait: ep(3 + 1) = 2) → on-demand.
    # Hour 4: cp = 2.5 ≥ ep(5) = 2.5 and spot is back: rule 2 takes it.
    job = Job(4, 8, 0.5, spot_price=1.0, on_demand_price=3.0)
    acts = _actions(UniformProgress(), [0, 0, 0, 0, 1, 1, 1, 1], job)
    assert acts[:6] == [IDLE, OD, OD, OD, SPOT, SPOT]


def test_uniform_progress_idles_when_ahead() -> None:
    # ahead of ep after a long spot run, a gap is waited out rather than paid on on-demand
    job = Job(4, 10, 0.5, spot_price=1.0, on_demand_price=3.0)
    acts = _actions(UniformProgress(), [1, 1, 1, 0, 1, 1, 1, 1, 1, 1], job)
    assert acts[:5] == [SPOT, SPOT, SPOT, IDLE, SPOT]


def test_uniform_progress_safety_net() -> None:
    job = Job(2, 4, 0.5, spot_price=1.0, on_demand_price=3.0)
    assert _actions(UniformProgress(), [0, 0, 1, 1], job) == [IDLE, OD, OD, OD]
    # The net is a rule about idling (paper §4): spot back at hour 1 is taken even though the margin
    # after it (0.5 h of changeover) is under 2d; when it is gone at hour 2 the job is behind and
    # goes on-demand: 0.5 h on spot, then 0.5 + 1 h on on-demand, done exactly at the deadline.
    assert _actions(UniformProgress(), [0, 1, 0, 0], job) == [IDLE, SPOT, OD, OD]


def test_greedy_takes_spot_whatever_the_margin() -> None:
    # C = 3 h, R = 4 h, d = 0.5 h: a margin of 1 h = 2d. The paper's Greedy takes spot at hours 0-1
    # (0.5 h changeover + 1.5 h work); idle at hour 2 would leave R = 1 < C + 2d = 2.5, so the net
    # sends it to on-demand (0.5 + 1.5 h), done exactly at 4 h: $2 of spot + $6 of on-demand.
    job = Job(3, 4, 0.5, spot_price=1.0, on_demand_price=3.0)
    grid = make_grid(job, 3600.0)
    a = np.asarray([1, 1, 0, 0], bool)
    r = replay(Greedy(), a, np.full(4, 1.0), job, grid, record=True)
    assert r.actions is not None and r.actions.tolist() == [SPOT, SPOT, OD, OD]
    assert r.met_deadline and r.cost == pytest.approx(8.0)


def test_job_and_changeover_are_whole_grains() -> None:
    # C = 1.25 h on 1 h ticks with d = 0.5 h: 4 grains a tick make both exact, so on-demand costs
    # (C + d) × $3 = $5.25, not the $6 of a job rounded up to 1.5 h.
    job = Job(1.25, 4, 0.5, spot_price=1.0, on_demand_price=3.0)
    grid = make_grid(job, 3600.0)
    assert grid.P * grid.grain_hours == pytest.approx(1.25) and grid.changeover_hours_effective == 0.5
    from spotplan.backtest.policies import OnDemand

    r = replay(OnDemand(), np.ones(4, bool), np.full(4, 1.0), job, grid)
    assert r.cost == pytest.approx(5.25) and r.on_demand_hours == pytest.approx(1.75)


@pytest.mark.parametrize("d", [0.05, 0.2, 0.5])
def test_spotplan_never_misses_what_on_demand_meets(d: float) -> None:
    rng = np.random.default_rng(11)
    for trial in range(30):
        gap = float(rng.choice([60, 600, 1800]))
        C = float(rng.uniform(2, 12))
        # deadlines on the tick grid, from the tightest on-demand can meet to a few hours more
        ticks = int(np.ceil((C + d) * 3600 / gap)) + int(rng.integers(0, int(4 * 3600 // gap) + 1))
        R = ticks * gap / 3600
        job = Job(C, R, d, spot_price=1.0, on_demand_price=3.0)
        grid = make_grid(job, gap)
        avail = _markov(grid.T + 400, float(rng.uniform(0.5, 0.99)), float(rng.uniform(0.3, 0.95)), trial)
        hist = avail[:400]
        r = replay(SpotplanPolicy(), avail[400:], np.ones(grid.T), job, grid, history=hist)
        assert r.met_deadline, (trial, gap, C, R)


def test_spotplan_uses_only_the_past() -> None:
    job = Job(8, 14, 0.2, spot_price=1.0, on_demand_price=3.0)
    grid = make_grid(job, 600)
    base = _markov(grid.T + 300, 0.9, 0.7, 1)
    rng = np.random.default_rng(5)
    for cut in (10, 30, 50):
        other = base.copy()
        other[300 + cut + 1 :] = rng.random(len(other) - 300 - cut - 1) < 0.5
        a = replay(SpotplanPolicy(), base[300:], np.ones(grid.T), job, grid, history=base[:300], record=True)
        b = replay(SpotplanPolicy(), other[300:], np.ones(grid.T), job, grid, history=base[:300], record=True)
        assert a.actions is not None and b.actions is not None
        assert a.actions[: cut + 1].tolist() == b.actions[: cut + 1].tolist()


def _synthetic_traces() -> list[Trace]:
    return [
        Trace("flappy", 600.0, _markov(1500, 0.8, 0.6, 2).astype(np.int64)),
        Trace("steady", 600.0, _markov(1500, 0.97, 0.9, 3).astype(np.int64)),
        Trace(
            "priced",
            600.0,
            _markov(1500, 0.9, 0.8, 4).astype(np.int64),
            prices=np.round(np.random.default_rng(4).uniform(0.8, 1.2, 1500), 3),
        ),
    ]


@pytest.mark.parametrize("R,d", [(13, 0.2), (18, 0.05)])
def test_optimum_never_above_any_policy(R: float, d: float) -> None:
    job = Job(12, R, d)
    res = run_backtest(_synthetic_traces(), job, starts=15, seed=1)
    assert len(res.starts) == 45
    for s in res.starts:
        for name, cost in s.costs.items():
            assert s.costs["optimal"] <= cost + 1e-6, (s.trace, s.start_tick, name)
    assert res.policy("on-demand").deadline_misses == 0
    assert res.policy("spotplan").deadline_misses == 0


def test_optimum_never_above_any_policy_on_real_traces(shared_data: Path) -> None:
    folder = shared_data / "skypilot-spot-traces/availability/1-node/aws-10-26-2022"
    traces = [load_trace(p) for p in expand_paths([folder])[:3]]
    res = run_backtest(traces, Job(48, 52, 0.2), starts=5, seed=0)
    for s in res.starts:
        assert all(s.costs["optimal"] <= c + 1e-6 for c in s.costs.values())
    assert res.policy("spotplan").deadline_misses == 0


def test_replay_is_deterministic_for_a_seed() -> None:
    job = Job(12, 14, 0.2)
    a = run_backtest(_synthetic_traces(), job, starts=6, seed=42)
    b = run_backtest(_synthetic_traces(), job, starts=6, seed=42)
    c = run_backtest(_synthetic_traces(), job, starts=6, seed=43)
    assert [s.model_dump() for s in a.starts] == [s.model_dump() for s in b.starts]
    assert [p.mean_cost for p in a.policies] == [p.mean_cost for p in b.policies]
    assert [s.start_tick for s in a.starts] != [s.start_tick for s in c.starts]


def test_trace_shorter_than_the_deadline_is_skipped() -> None:
    short = Trace("short", 3600.0, np.ones(10, np.int64))
    res = run_backtest([short, *_synthetic_traces()[:1]], Job(12, 14, 0.2), starts=2, seed=0)
    assert any("short" in n for n in res.notes)
    assert {s.trace for s in res.starts} == {"flappy"}


def _all_patterns(n: int) -> np.ndarray:
    """Every 0/1 availability sequence of length n, one per row."""
    return ((np.arange(2**n)[:, None] >> np.arange(n)[::-1]) & 1).astype(bool)


@pytest.mark.parametrize("slack_ticks", [0, 1, 2, 3])
def test_spotplan_safety_net_on_every_tiny_trace(slack_ticks: int) -> None:
    # Adversarial by exhaustion: C = 2 h on 30-minute ticks, d = 1 tick, and every possible
    # availability sequence (spot vanishing right after each changeover, flapping every tick,
    # arriving only at the end...). With the deadline at C + d + slack, on-demand always meets it,
    # so spotplan must too, whatever the history it was given.
    d = 0.5
    ticks = 4 + 1 + slack_ticks
    job = Job(2.0, ticks * 0.5, d, spot_price=1.0, on_demand_price=3.0)
    grid = make_grid(job, 1800.0)
    histories = [np.zeros(0, bool), np.ones(40, bool), np.tile([True, False], 20)]
    for hist in histories:
        for avail in _all_patterns(grid.T):
            r = replay(SpotplanPolicy(), avail, np.ones(grid.T), job, grid, history=hist)
            assert r.met_deadline, (slack_ticks, avail.astype(int).tolist(), len(hist))


def test_spotplan_never_starts_a_changeover_its_margin_cannot_finish() -> None:
    # The audit's case: 15-minute ticks, C = 2 h, R = 2.75 h, d = 0.5 h (two ticks). A spot
    # changeover would leave 0.75 − 0.5 = 0.25 h < d of margin, so the net could never let the job
    # stay on spot. Checking only the end of the first tick, the policy entered spot, abandoned
    # the changeover a tick later and paid 0.25 h of spot on top of the on-demand run ($7.75
    # against on-demand's $7.50).
    job = Job(2, 2.75, 0.5, spot_price=1.0, on_demand_price=3.0)
    grid = make_grid(job, 900.0)
    assert grid.m < grid.D
    for avail in ([1] * 12, [1, 1, 1, 1] + [0] * 8):
        a = np.asarray(avail, bool)
        r = replay(SpotplanPolicy(), a, np.ones(len(a)), job, grid, record=True)
        assert r.actions is not None and SPOT not in r.actions.tolist(), avail
        assert r.met_deadline and r.cost == pytest.approx(7.5) and r.spot_hours == 0


@pytest.mark.parametrize("slack_ticks", [0, 1, 2, 3, 4])
def test_spotplan_never_abandons_spot_while_it_is_there(slack_ticks: int) -> None:
    # Exhaustive, with a changeover two ticks long: once on spot (changeover included), the
    # policy leaves it for on-demand only when spot goes. Leaving a spot that is still there can
    # only be the net undoing an entry it should not have allowed: money spent, no progress made.
    # (After the job is done the recorded actions are idle.)
    job = Job(2.0, (4 + 2 + slack_ticks) * 0.5, 1.0, spot_price=1.0, on_demand_price=3.0)
    grid = make_grid(job, 1800.0)
    assert 2 * grid.m == grid.D
    for hist in (np.zeros(0, bool), np.ones(40, bool), np.tile([True, False], 20)):
        for avail in _all_patterns(grid.T):
            r = replay(SpotplanPolicy(), avail, np.ones(grid.T), job, grid, history=hist, record=True)
            assert r.actions is not None and r.met_deadline
            acts = r.actions.tolist()
            for t in range(1, grid.T):
                left = acts[t - 1] == SPOT and avail[t] and acts[t] == OD
                assert not left, (slack_ticks, avail.astype(int).tolist(), acts)


def test_spotplan_decisions_depend_only_on_the_prefix() -> None:
    # Every tiny trace at once: two traces that agree up to tick t must get the same actions up
    # to t, however they differ afterwards (no look-ahead, checked exhaustively).
    job = Job(2.0, 4.0, 0.5, spot_price=1.0, on_demand_price=3.0)
    grid = make_grid(job, 1800.0)
    hist = _markov(60, 0.8, 0.6, 7)
    seen: dict[tuple[int, ...], tuple[int, ...]] = {}
    for avail in _all_patterns(grid.T):
        r = replay(SpotplanPolicy(), avail, np.ones(grid.T), job, grid, history=hist, record=True)
        assert r.actions is not None
        for t in range(grid.T):
            key = tuple(avail[: t + 1].astype(int).tolist())
            acts = tuple(r.actions[: t + 1].tolist())
            assert seen.setdefault(key, acts) == acts, key


def test_spotplan_is_deterministic_and_reset_between_runs() -> None:
    # One policy object replayed over many windows must act exactly as a fresh one on each:
    # reset() forgets the previous run (the backtest reuses one object for all starts).
    job = Job(12, 14, 0.2)
    grid = make_grid(job, 600)
    trace = _markov(3000, 0.9, 0.7, 9)
    shared = SpotplanPolicy()
    for s in (200, 900, 1500, 2100):
        win, hist = trace[s : s + grid.T], trace[:s]
        a = replay(shared, win, np.ones(grid.T), job, grid, history=hist, record=True)
        b = replay(SpotplanPolicy(), win, np.ones(grid.T), job, grid, history=hist, record=True)
        c = replay(SpotplanPolicy(), win, np.ones(grid.T), job, grid, history=hist, record=True)
        assert a.actions is not None and b.actions is not None and c.actions is not None
        assert a.actions.tolist() == b.actions.tolist() == c.actions.tolist()
        assert a.cost == b.cost == c.cost


def test_length_stats_heavy_tail_beyond_the_runs_seen() -> None:
    fixed, tail = LengthStats(4.0, tail=0.0), LengthStats(4.0, tail=2.0)
    for st in (fixed, tail):
        for x in (1, 2, 3, 10, 30):
            st.add(x)
    # within the data both follow the runs: of the runs > 2 ticks (3, 10, 30), 1 + 8 + 28 left
    assert fixed.expected_remaining(2) == pytest.approx((1 + 8 + 28 + 4 * 2) / 5)
    assert tail.expected_remaining(2) == pytest.approx((1 + 8 + 28 + 4 * 2) / 5)
    # past the longest run seen, the fixed prior pins the estimate; the tail grows with the age
    assert fixed.expected_remaining(40) == pytest.approx(4.0)
    assert tail.expected_remaining(40) == pytest.approx(80.0)
    assert tail.expected_remaining(80) > tail.expected_remaining(40)


def test_spotplan_leaves_on_demand_for_a_run_longer_than_any_seen() -> None:
    # History of 30-minute runs, then spot for good after a 40-minute outage. A fixed 0.5 h prior
    # caps the estimated remaining life below the bar for leaving on-demand, so the job would stay
    # there to the end; with the heavy tail the run's age alone soon clears the bar.
    job = Job(12, 14, 0.2, spot_price=1.0, on_demand_price=3.0)
    grid = make_grid(job, 600)
    hist = np.tile([True] * 3 + [False] * 3, 100)
    win = np.concatenate([np.zeros(4, bool), np.ones(grid.T - 4, bool)])
    fixed = replay(
        SpotplanPolicy(prior_run_hours=0.5, tail=0.0), win, np.ones(grid.T), job, grid, history=hist, record=True
    )
    heavy = replay(
        SpotplanPolicy(prior_run_hours=0.5, tail=2.0), win, np.ones(grid.T), job, grid, history=hist, record=True
    )
    assert fixed.actions is not None and heavy.actions is not None
    assert SPOT not in fixed.actions.tolist()
    first_spot = heavy.actions.tolist().index(SPOT)
    assert 4 < first_spot < 20
    assert heavy.met_deadline and heavy.cost < fixed.cost / 2


@pytest.mark.parametrize(("run_ticks", "waits"), [(12, True), (18, True), (30, False), (60, False)])
def test_spotplan_waits_d_on_on_demand_only_when_a_wasted_changeover_outweighs_the_margin_per_outage(
    run_ticks: int, waits: bool
) -> None:
    # C = 12 h, R = 14 h, d = 0.2 h (one 600 s tick), k = 3: a wasted changeover costs k·d = 0.6 h.
    # No spot for 40 minutes puts the job on on-demand; then spot comes back for good. History of
    # runs of `run_ticks` ticks and 20-minute outages: with 2-3 h runs there are ~4-6 outages left
    # in the ~13 h to go, under 0.6 h of the ~1.8 h margin each, so the job sits out the run's first
    # d on on-demand; with 5-10 h runs each outage left has more margin than k·d, so it enters at
    # once, as without the rule.
    job = Job(12, 14, 0.2, spot_price=1.0, on_demand_price=3.0)
    grid = make_grid(job, 600)
    hist = np.tile([True] * run_ticks + [False] * 2, 40)
    win = np.concatenate([np.zeros(4, bool), np.ones(grid.T - 4, bool)])
    acts = {}
    for od_wait in (0.0, 1.0):
        r = replay(SpotplanPolicy(od_wait=od_wait), win, np.ones(grid.T), job, grid, history=hist, record=True)
        assert r.actions is not None and r.met_deadline
        acts[od_wait] = r.actions.tolist()
    assert acts[0.0][:5] == [OD, OD, OD, OD, SPOT]
    assert acts[1.0][:6] == ([OD] * 5 + [SPOT] if waits else [OD] * 4 + [SPOT, SPOT])


def test_policies_price_their_decisions_at_the_traces_own_spot_price() -> None:
    """A trace with its own prices is billed at them, so a policy must weigh on-demand against the
    price it faces as the job starts, not the --spot-price the trace overrides."""
    seen: list[float] = []

    class Recorder(Greedy):
        def reset(self, ctx: Context) -> None:
            seen.append(ctx.k)
            super().reset(ctx)

    job = Job(2, 8, 0.5, spot_price=1.0, on_demand_price=3.0)
    grid = make_grid(job, 3600.0)
    up = np.ones(8, bool)
    replay(Recorder(), up, np.full(8, 1.5), job, grid)
    replay(Recorder(), up, np.full(8, 1.0), job, grid)
    replay(Recorder(), up, np.r_[0.0, np.full(7, 1.0)], job, grid)
    assert seen == [2.0, 3.0, float("inf")]
