"""Wall time and peak memory of `spotplan analyze` on 10, 1,000 and 10,000 generated workloads.

Each size runs `python -m spotplan analyze FILE -o json --out /dev/null` in a fresh process (so
import time counts, as a user sees it) against the bundled snapshot; peak memory is the child's
max RSS. Budgets (DESIGN.md §8): 10,000 workloads under 5 s on 2 cores, and under 4× the 10-workload
run. Usage: python benchmarks/analyze_scale.py [--sizes 10 1000 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import csv
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from spotplan.pricing.snapshot import load_snapshot

KINDS = ["training", "training", "batch", "batch", "dev", "test", "inference", "realtime"]


def generate(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    table = load_snapshot()
    od = table[table["market"] == "on-demand"][["provider", "region", "instance_type"]].drop_duplicates()
    pools = list(od.itertuples(index=False))
    fields = [
        "id", "kind", "provider", "region", "instance_type", "count", "market", "remaining_hours",
        "checkpoint_enabled", "checkpoint_interval_minutes", "checkpoint_save_seconds",
        "checkpoint_restore_seconds", "checkpoint_storage", "checkpoint_size_gb", "handles_preemption",
    ]
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for i in range(n):
            p = rng.choice(pools)
            ck = rng.random() < 0.8
            w.writerow(
                {
                    "id": f"w{i:05d}",
                    "kind": rng.choice(KINDS),
                    "provider": p.provider,
                    "region": p.region,
                    "instance_type": p.instance_type,
                    "count": rng.choice([1, 1, 2, 4]),
                    "market": "spot" if rng.random() < 0.1 else "on-demand",
                    "remaining_hours": round(rng.uniform(0.2, 200), 2),
                    "checkpoint_enabled": str(ck).lower(),
                    "checkpoint_interval_minutes": rng.choice([10, 30, 60]) if ck else "",
                    "checkpoint_save_seconds": rng.choice([10, 60, 300]) if ck else "",
                    "checkpoint_restore_seconds": rng.choice([30, 120, 600]) if ck else "",
                    "checkpoint_storage": rng.choice(["s3://b/c", "gs://b/c", "/local/c"]) if ck else "",
                    "checkpoint_size_gb": rng.choice([1, 50, 200]) if ck else "",
                    "handles_preemption": str(rng.random() < 0.6).lower(),
                }
            )


def run_once(path: Path) -> tuple[float, float]:
    cmd = [sys.executable, "-m", "spotplan", "analyze", str(path), "-o", "json", "--out", "/dev/null",
           "--now", "2026-11-23T00:00:00Z"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"analyze failed on {path}: {proc.stderr.strip()}")
    peak_mb = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024.0
    return wall, peak_mb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 1000, 10000])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            path = Path(tmp) / f"fleet-{n}.csv"
            generate(path, n)
            runs = [run_once(path) for _ in range(args.repeat)]
            best = min(r[0] for r in runs)
            rows.append((n, best, max(r[1] for r in runs)))
    base = rows[0][1]
    print(f"{'workloads':>10} {'wall s (best)':>14} {'x smallest':>11} {'peak RSS MB':>12}")
    for n, wall, mb in rows:
        print(f"{n:>10} {wall:>14.2f} {wall / base:>11.2f} {mb:>12.0f}")


if __name__ == "__main__":
    main()
