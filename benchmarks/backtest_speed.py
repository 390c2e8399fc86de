"""How long the omniscient optimum and each policy take per start, for a 48 h job.

Markets:
- `45d@195s`: the shape of Can't Be Late's 2-month traces (20,158 ticks of 195 s = 45.5 days),
  built from the real us-west-2b V100 preemption trace in ../shared/data (sampled every 195 s and
  repeated to 45.5 days), since the 45-day files themselves are not in the shared folder;
- the real 600 s (27 days) and 32 s (7.4 days) traces at their native tick.

Run: .venv/bin/python benchmarks/backtest_speed.py [--starts 20]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from spotplan.backtest.optimal import optimal_costs
from spotplan.backtest.policies import make_policy
from spotplan.backtest.replay import pick_starts
from spotplan.backtest.simulator import Job, make_grid, replay
from spotplan.backtest.traces import Trace, load_trace

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "skypilot-spot-traces"
V100_32S = DATA / "preemption/1-node/aws-04-22-2023/us-west-2b_v100_1.json"
K80_600S = DATA / "availability/1-node/aws-10-26-2022/us-west-2a_k80_1.json"


def forty_five_days_at_195s() -> Trace:
    src = load_trace(V100_32S)
    t = np.arange(int(src.ticks * src.gap_seconds // 195)) * 195.0
    one = src.available[(t // src.gap_seconds).astype(int)]
    reps = int(np.ceil(20158 / len(one)))
    return Trace("45d@195s", 195.0, np.tile(one, reps)[:20158])


def bench(trace: Trace, job: Job, starts: int) -> dict[str, float]:
    grid = make_grid(job, trace.gap_seconds)
    up = trace.available >= 1
    chosen = pick_starts(trace, grid.T, starts, np.random.default_rng(0))
    windows = np.stack([up[s : s + grid.T] for s in chosen])
    prices = np.full(windows.shape, job.spot_price)
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    optimal_costs(windows, prices, job, grid)
    out["optimal"] = (time.perf_counter() - t0) / len(chosen)
    for name in ("on-demand", "greedy", "uniform-progress", "spotplan"):
        pol = make_policy(name)
        t0 = time.perf_counter()
        for i, s in enumerate(chosen):
            replay(pol, windows[i], prices[i], job, grid, history=up[:s])
        out[name] = (time.perf_counter() - t0) / len(chosen)
    out["_grid"] = grid.m
    out["_ticks"] = grid.T
    out["_lag"] = grid.slack + 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--starts", type=int, default=20)
    args = ap.parse_args()
    if not V100_32S.exists():
        raise SystemExit(f"needs the real traces in {DATA}")
    markets = [forty_five_days_at_195s(), load_trace(K80_600S), load_trace(V100_32S)]
    names = ("optimal", "on-demand", "greedy", "uniform-progress", "spotplan")
    print(f"seconds per start (mean of {args.starts} starts), 48 h job\n")
    print(f"{'market':>22} {'R h':>4} {'d h':>5} {'ticks':>6} {'lag':>5} " + " ".join(f"{n:>16}" for n in names))
    for tr in markets:
        for R in (52.0, 70.0):
            for d in (0.2, 0.05):
                r = bench(tr, Job(48, R, d), args.starts)
                cells = " ".join(f"{r[n]:16.4f}" for n in names)
                print(f"{tr.name:>22} {R:4.0f} {d:5.2f} {int(r['_ticks']):6d} {int(r['_lag']):5d} {cells}")


if __name__ == "__main__":
    main()
