"""The policy study of docs/backtest.md: mean cost of each online policy ÷ the omniscient optimum's on
the twelve AWS GPU traces, for R ∈ {52, 70} h and d ∈ {0.2, 0.05} h, per trace group.

Start points are drawn exactly as `spotplan backtest` draws them (one generator for all traces, the
eight availability traces first), so `--seed 0 --starts 100` reproduces the CLI's numbers. The
optimum does not depend on the policies, so its costs are cached per (trace, R, d, seed, starts) in
`--cache` (default: a folder in the system temp dir); the first full run computes them (~10 min of
CPU, mostly the 32 s traces at R = 70 h), later runs take ~20 s.

Run: .venv/bin/python benchmarks/backtest_policies.py [--seed 0] [--starts 100]
     [--group all|availability|preemption|cpu] [--policy uniform-progress --policy spotplan]
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from spotplan.backtest.optimal import optimal_costs
from spotplan.backtest.policies import make_policy
from spotplan.backtest.replay import Market, draw_markets
from spotplan.backtest.simulator import Job, Policy, replay
from spotplan.backtest.traces import Trace, expand_paths, load_trace

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "skypilot-spot-traces"
FOLDERS = {
    "availability": DATA / "availability/1-node/aws-10-26-2022",
    "preemption": DATA / "preemption/1-node/aws-04-22-2023",
}
# The CPU (r5.16xlarge) preemption traces, with their own varying spot prices: only on request, and
# drawn after the GPU traces so that the GPU traces keep their starts.
EXTRA = {"cpu": DATA / "preemption/1-node/aws-04-19-2023"}
SCENARIOS = ((52.0, 0.2), (52.0, 0.05), (70.0, 0.2), (70.0, 0.05))
ONLINE = ("on-demand", "greedy", "uniform-progress", "spotplan")
_OPTIMUM_CODE = hashlib.sha1(Path(optimal_costs.__code__.co_filename).read_bytes()).hexdigest()


@dataclass
class Case:
    """One trace of one scenario: the market as `spotplan backtest` draws it and the optimum's cost on
    each start."""

    group: str
    market: Market
    job: Job
    opt: np.ndarray


def load_markets(extra: bool = False) -> list[tuple[str, Trace]]:
    folders = {**FOLDERS, **EXTRA} if extra else FOLDERS
    return [(g, load_trace(p)) for g, folder in folders.items() for p in expand_paths([folder])]


def _cached_optimum(cache: Path, key: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
    path = cache / (hashlib.sha1(key.encode()).hexdigest()[:16] + ".npy")
    if path.exists():
        return np.load(path)
    value = compute()
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, value)
    return value


def _optimum(m: Market, job: Job) -> np.ndarray:
    w = np.stack([m.up[s : s + m.grid.T] for s in m.starts])
    p = np.stack([m.prices[s : s + m.grid.T] for s in m.starts])
    return optimal_costs(w, p, job, m.grid, track_hours=False).cost


def build_cases(
    markets: Sequence[tuple[str, Trace]],
    R: float,
    d: float,
    seed: int,
    starts: int,
    cache: Path,
    groups: Sequence[str] = tuple(FOLDERS),
) -> list[Case]:
    """Starts drawn by `draw_markets` over all traces (so that a subset keeps its starts), with the
    optimum's costs (cached), for the markets of `groups`."""
    job = Job(48.0, R, d)
    cases = []
    drawn = draw_markets([trace for _, trace in markets], job, starts, seed)
    for (group, trace), m in zip(markets, drawn):
        if group not in groups:
            continue
        # Everything the optimum depends on, its own code included, so a stale cache cannot be served.
        key = "|".join([trace.source or trace.name, str(trace.ticks), str(R), str(d), str(seed), str(starts),
                        hashlib.sha1(m.up.tobytes() + m.prices.tobytes()).hexdigest(), _OPTIMUM_CODE])
        opt = _cached_optimum(cache, key, partial(_optimum, m, job))
        cases.append(Case(group, m, job, opt))
    return cases


@dataclass
class Outcome:
    """Per-start results of one policy over a list of cases, in order."""

    cost: np.ndarray
    spot_hours: np.ndarray
    on_demand_hours: np.ndarray
    misses: int


def evaluate(cases: Sequence[Case], factory: Callable[[], Policy]) -> Outcome:
    cost, spot, od, misses = [], [], [], 0
    for c in cases:
        grid, up, prices = c.market.grid, c.market.up, c.market.prices
        pol = factory()
        for s in c.market.starts:
            r = replay(pol, up[s : s + grid.T], prices[s : s + grid.T], c.job, grid, history=up[:s])
            cost.append(r.cost)
            spot.append(r.spot_hours)
            od.append(r.on_demand_hours)
            misses += not r.met_deadline
    return Outcome(np.asarray(cost), np.asarray(spot), np.asarray(od), misses)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--starts", type=int, default=100)
    ap.add_argument("--group", choices=("all", *FOLDERS, *EXTRA), default="all", help="'all' is the GPU traces")
    ap.add_argument("--policy", action="append", choices=ONLINE, help="repeatable (default: all)")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "spotplan-backtest-optimum")
    args = ap.parse_args()
    if not DATA.exists():
        raise SystemExit(f"needs the real traces in {DATA}")
    names = args.policy or list(ONLINE)
    markets = load_markets(extra=args.group in EXTRA)
    print(
        f"mean cost ÷ optimal (P75 of per-start ratios), seed {args.seed}, {args.starts} starts a trace,"
        f" traces: {args.group}; misses per policy in brackets after the group means\n"
    )
    header = f"{'R h':>4} {'d h':>5} {'group':>12} " + " ".join(f"{n:>18}" for n in names)
    print(header)
    print(f"{'':>23}" + " ".join(f"{'mean $ spot/OD h':>18}" for _ in names))
    overall: dict[str, list[float]] = {n: [] for n in names}
    for R, d in SCENARIOS:
        wanted = tuple(FOLDERS) if args.group == "all" else (args.group,)
        cases = build_cases(markets, R, d, args.seed, args.starts, args.cache, wanted)
        results = {n: evaluate(cases, partial(make_policy, n)) for n in names}
        opt = np.concatenate([c.opt for c in cases])
        groups = np.concatenate([[c.group] * len(c.market.starts) for c in cases])
        for label in (*wanted, "all") if len(wanted) > 1 else wanted:
            sel = np.ones(len(opt), bool) if label == "all" else groups == label
            cells = []
            for n in names:
                cost, misses = results[n].cost, results[n].misses
                ratio = cost[sel].mean() / opt[sel].mean()
                p75 = np.percentile(cost[sel] / opt[sel], 75)
                last = label == ("all" if len(wanted) > 1 else wanted[0])
                cells.append(f"{ratio:6.3f} ({p75:4.2f})" + (f" [{misses}]" if last else "     "))
                if last:
                    overall[n].append(ratio)
            print(f"{R:4.0f} {d:5.2f} {label:>12} " + " ".join(f"{c:>18}" for c in cells))
        money = [
            f"${o.cost.mean():.2f} {o.spot_hours.mean():.1f}/{o.on_demand_hours.mean():.1f}" for o in results.values()
        ]
        print(f"{'':>23}" + " ".join(f"{c:>18}" for c in money) + f"   (optimal ${opt.mean():.2f})")
    print("\nmean over the four scenarios: " + ", ".join(f"{n} {np.mean(v):.3f}" for n, v in overall.items()))


if __name__ == "__main__":
    main()
