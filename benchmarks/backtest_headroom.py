"""How much of the spotplan policy's gap to the omniscient optimum an online policy could still win
(docs/backtest.md, "Where the gap is"). Each row is the spotplan policy, or an expected-cost programme,
given one piece of knowledge an online policy does not have, on the starts `spotplan backtest` draws:

- `life-oracle-od`: spotplan told the true remaining life of the current spot run whenever it decides
  whether to leave on-demand for it, and nothing else;
- `life-oracle-idle`: the same, only when it decides whether to start spot from idle;
- `outage-oracle`: spotplan idling through an outage exactly when the outage's true remaining length
  leaves the margin above the reserve (and a changeover) at its end, else on-demand;
- `semi-markov-history`: an online policy: the expected-cost optimum over a semi-Markov model of the
  market (hazards of run and outage ends by age, to 6 h, pooled beyond) fitted on the trace before
  the start, solved once per start;
- `semi-markov-law`: the same model fitted on the whole trace, future included: a policy that knows
  the market's law, though not its path.

The semi-Markov rows run on the 600 s traces only (their state, ticks × lag × age, is ~10⁴ times larger
at 32 s); they take ~0.15 s per start at R = 52 h, ~1 s at R = 70 h.

Run: .venv/bin/python benchmarks/backtest_headroom.py [--deadline 52] [--changeover 0.2] [--seed 0]
     [--starts 100] [--row life-oracle-od --row semi-markov-law]
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from backtest_policies import DATA, Case, build_cases, load_markets

from spotplan.backtest.optimal import _run_lengths
from spotplan.backtest.policies import IDLE, OD, SPOT, LengthStats, SpotplanPolicy, _margin_after, load_streaks
from spotplan.backtest.simulator import Context, replay

MISS = 1e6  # $ for a missed deadline in the programme: never worth it
AGE_CAP_HOURS = 6.0
HAZARD_PRIOR_WEIGHT = 2.0


class _Oracle(SpotplanPolicy):
    """spotplan with the future window at hand, for the oracle rows only."""

    def see(self, up: np.ndarray, start: int, ticks: int) -> None:
        window = up[start : start + ticks][None, :]
        self.run_left = _run_lengths(window, ticks)[0]  # ticks the run at t still lasts (0: none)
        self.outage_left = _run_lengths(~window, ticks)[0]

    def decide(self, t: int, has_spot: bool, mode: int, overhead: int, progress: int) -> int:
        self.t, self.mode = t, mode
        return super().decide(t, has_spot, mode, overhead, progress)


class LifeOracle(_Oracle):
    at_mode = OD

    def _life_hours(self) -> float:
        if self.mode == self.at_mode:
            return float(self.run_left[self.t]) * self.gap_h
        return super()._life_hours()


class LifeOracleIdle(LifeOracle):
    at_mode = IDLE


class OutageOracle(_Oracle):
    def _preferences(self, t: int, has_spot: bool, mode: int, progress: int) -> list[int]:
        if has_spot or mode == OD:
            return super()._preferences(t, has_spot, mode, progress)
        g = self.grid
        margin = (g.T - t) * g.m - (g.P - progress)
        r = int(self.outage_left[t])
        reserve_then = self._reserve((g.T - t - r) * g.m)
        return [IDLE, OD] if margin - r * g.m >= reserve_then + g.D else [OD]


def hazards(lengths: Sequence[int], ages: int, prior_ticks: float) -> np.ndarray:
    """h[a-1] = P(a streak ends after this tick | it has lasted a ticks), a = 1..ages; the last one
    pooled over all older ages. Shrunk towards a constant hazard 1/prior."""
    seen = np.asarray(lengths, dtype=float)
    h0 = 1.0 / max(prior_ticks, 1.0)
    w = HAZARD_PRIOR_WEIGHT
    h = np.empty(ages)
    for a in range(1, ages):
        h[a - 1] = ((seen == a).sum() + w * h0) / ((seen >= a).sum() + w)
    tail = seen[seen >= ages]
    exposure = (tail - ages + 1).sum()
    h[ages - 1] = (len(tail) + w * h0) / (exposure + w / h0) if len(tail) else h0 / 4
    return np.clip(h, 1e-4, 1.0)


class SemiMarkov(SpotplanPolicy):
    """The expected-cost optimum of the job over a semi-Markov availability model, by backward
    induction over (tick, mode with changeover left, availability, its age, lag), then followed
    tick by tick (behind spotplan's exact safety net)."""

    def reset(self, ctx: Context) -> None:
        super().reset(ctx)
        runs, outages = self._fit_on(ctx)
        self.ages = max(2, int(round(AGE_CAP_HOURS / self.gap_h)))
        self.h_up = hazards(runs.lengths, self.ages, runs.prior)
        self.h_down = hazards(outages.lengths, self.ages, outages.prior)
        self._solve(ctx)

    def _fit_on(self, ctx: Context) -> tuple[LengthStats, LengthStats]:
        return self.runs, self.outages

    def _solve(self, ctx: Context) -> None:
        g = self.grid
        m, D, P, T, A = g.m, g.D, g.P, g.T, self.ages
        ovs = sorted({max(D - m * i, 0) for i in range(1, D // m + 2)})
        self.ovs = ovs
        where = {ov: i for i, ov in enumerate(ovs)}
        n = len(ovs)
        modes = 1 + 2 * n  # none, spot with ovs[i] left, on-demand with ovs[i] left
        W = g.slack + 1
        pad = max(D, m) + 1
        ps, po = ctx.job.spot_price, ctx.job.on_demand_price
        lag = np.arange(W)
        V = np.zeros((modes, 2, A, W + pad))
        need_at_T = np.arange(W + pad) - g.slack
        for ms in range(modes):
            left = ovs[ms - 1 - n] if ms > n else D
            V[ms] = np.where(need_at_T > 0, po * (need_at_T + left) + MISS, 0.0)
        older = np.minimum(np.arange(1, A + 1), A - 1)
        hu, hd = self.h_up, self.h_down
        policy = np.zeros((T, modes, 2, A, W), dtype=np.int8)
        for t in range(T - 1, -1, -1):
            EV = np.empty_like(V)
            EV[:, 1] = (1 - hu)[None, :, None] * V[:, 1][:, older] + hu[None, :, None] * V[:, 0, 0][:, None, :]
            EV[:, 0] = (1 - hd)[None, :, None] * V[:, 0][:, older] + hd[None, :, None] * V[:, 1, 0][:, None, :]
            need = P - t * m + lag

            def run(kind: int, ov: int, s: int, EV: np.ndarray = EV, need: np.ndarray = need) -> np.ndarray:
                use = min(ov, m)
                gain = m - use
                price = ps if kind == SPOT else po
                ms2 = (1 if kind == SPOT else 1 + n) + where[ov - use]
                value = price * m + EV[ms2, s][:, use : use + W]
                done = need <= gain
                if done.any():
                    value = np.where(done[None, :], price * (use + np.clip(need, 0, None))[None, :], value)
                return value

            new = np.full((modes, 2, A, W), np.inf)
            for s in (0, 1):
                idle = EV[0, s][:, m : m + W]
                to_od = run(OD, D, s)
                to_spot = run(SPOT, D, s) if s else None
                for ms in range(modes):
                    if ms == 0 or (ms <= n and not s):
                        options = [(IDLE, idle), (OD, to_od)] + ([(SPOT, to_spot)] if s else [])
                    elif ms <= n:
                        options = [(SPOT, run(SPOT, ovs[ms - 1], 1)), (IDLE, idle), (OD, to_od)]
                    else:
                        options = [(OD, run(OD, ovs[ms - 1 - n], s)), (IDLE, idle)] + ([(SPOT, to_spot)] if s else [])
                    best = options[0][1].copy()
                    act = np.full(best.shape, options[0][0], dtype=np.int8)
                    for a, v in options[1:]:
                        better = v < best  # type: ignore[operator]
                        best = np.where(better, v, best)
                        act = np.where(better, a, act)
                    new[ms, s] = best
                    policy[t, ms, s] = act
            V = np.full((modes, 2, A, W + pad), np.inf)
            V[:, :, :, :W] = new
        self.table = policy

    def decide(self, t: int, has_spot: bool, mode: int, overhead: int, progress: int) -> int:
        self._observe(has_spot)
        g = self.grid
        if progress >= g.P:
            return IDLE
        lag = t * g.m - progress
        if mode == IDLE or (mode == SPOT and not has_spot):
            ms = 0
        elif mode == SPOT:
            ms = 1 + self.ovs.index(overhead)
        else:
            ms = 1 + len(self.ovs) + self.ovs.index(overhead)
        if lag >= self.table.shape[-1]:
            return OD
        a = int(self.table[t, ms, int(has_spot), min(self.age, self.ages) - 1, lag])
        if a == OD or _margin_after(g, t, a, mode, overhead, progress) >= g.D:
            return a
        return OD


class SemiMarkovLaw(SemiMarkov):
    def see(self, up: np.ndarray, start: int, ticks: int) -> None:
        self.whole = up

    def _fit_on(self, ctx: Context) -> tuple[LengthStats, LengthStats]:
        runs, outages = LengthStats(self.runs.prior), LengthStats(self.outages.prior)
        load_streaks(self.whole, runs, outages)
        return runs, outages


ROWS: dict[str, Callable[[], SpotplanPolicy]] = {
    "spotplan": SpotplanPolicy,
    "life-oracle-od": LifeOracle,
    "life-oracle-idle": LifeOracleIdle,
    "outage-oracle": OutageOracle,
    "semi-markov-history": SemiMarkov,
    "semi-markov-law": SemiMarkovLaw,
}
SLOW = ("semi-markov-history", "semi-markov-law")


def _coarse(c: Case) -> bool:
    """The 600 s traces: where the semi-Markov programme is tractable."""
    return c.market.grid.gap_seconds >= 300


def costs(cases: Sequence[Case], row: str) -> np.ndarray:
    out = []
    for c in cases:
        g, up, prices = c.market.grid, c.market.up, c.market.prices
        for s in c.market.starts:
            policy = ROWS[row]()
            if isinstance(policy, (_Oracle, SemiMarkovLaw)):
                policy.see(up, int(s), g.T)
            out.append(replay(policy, up[s : s + g.T], prices[s : s + g.T], c.job, g, history=up[:s]).cost)
    return np.asarray(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deadline", type=float, default=52.0, help="R, hours")
    ap.add_argument("--changeover", type=float, default=0.2, help="d, hours")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--starts", type=int, default=100)
    ap.add_argument("--row", action="append", choices=tuple(ROWS), help="repeatable (default: all)")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "spotplan-backtest-optimum")
    args = ap.parse_args()
    if not DATA.exists():
        raise SystemExit(f"needs the real traces in {DATA}")
    rows = args.row or list(ROWS)
    markets = load_markets()
    cases = build_cases(markets, args.deadline, args.changeover, args.seed, args.starts, args.cache)
    coarse = [c for c in cases if _coarse(c)]
    print(f"R {args.deadline:g} h, d {args.changeover:g} h, seed {args.seed}: mean cost ÷ optimal\n")
    print(f"{'row':>20} {'all 12 traces':>14} {'600 s traces':>13}")
    for row in rows:
        if row in SLOW:
            cost = costs(coarse, row)
            opt = np.concatenate([c.opt for c in coarse])
            print(f"{row:>20} {'':>14} {cost.mean() / opt.mean():13.4f}", flush=True)
            continue
        cost = costs(cases, row)
        opt = np.concatenate([c.opt for c in cases])
        on_coarse = np.concatenate([np.full(len(c.market.starts), _coarse(c)) for c in cases])
        print(
            f"{row:>20} {cost.mean() / opt.mean():14.4f} {cost[on_coarse].mean() / opt[on_coarse].mean():13.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
