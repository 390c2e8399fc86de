"""Calibration of analyze against replay: the always-spot replay by hand, the MTBF fit, and the
whole `--inventory` path against the analysis it calibrates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spotplan.backtest.calibrate import fit_mtbf, replay_spot_with_restarts
from spotplan.backtest.traces import Trace
from spotplan.cli.main import app

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[1]


def test_replay_with_restarts_by_hand() -> None:
    # 1 h ticks, 3 h of work, 0.5 h lost and 0.25 h restart per preemption (the first launch is
    # the migration's). h0: 1; h1: 2; h2: gone, lose 0.5 → 1.5; h3: restart 0.25 + work → 2.25;
    # h4: 0.75 h more → 3. Billed 3.75 h, five hours of wall clock, one interruption.
    up = np.array([1, 1, 0, 1, 1, 1], bool)
    assert replay_spot_with_restarts(up, 1.0, 0, 3.0, 0.5, 0.25) == pytest.approx((3.75, 5.0, 1))
    # from h5 it wraps around to h0 and h1 without a preemption
    assert replay_spot_with_restarts(up, 1.0, 5, 3.0, 0.5, 0.25) == pytest.approx((3.0, 3.0, 0))


def test_fit_mtbf() -> None:
    tr = Trace("t", 3600.0, np.array([1, 1, 0, 1, 1, 1, 0, 0]))
    assert fit_mtbf([tr]) == (pytest.approx(2.5), 2, pytest.approx(5.0))
    assert fit_mtbf([Trace("flat", 60.0, np.ones(5, np.int64))])[0] is None


def test_inventory_calibration(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from spotplan.analysis import run
    from spotplan.planner import AnalyzeOptions

    inventory = ROOT / "examples" / "fleet.yaml"
    # a steady market: one preemption every ~20 h on average
    rng = np.random.default_rng(0)
    data, state = [], 1
    for _ in range(3000):
        data.append(state)
        state = int(rng.random() < (0.995 if state else 0.5))
    trace = tmp_path / "zone.json"
    trace.write_text(json.dumps({"metadata": {"gap_seconds": 600}, "data": data}))
    res = runner.invoke(
        app,
        ["backtest", "--trace", str(trace), "--job-hours", "48", "--deadline-hours", "70", "--starts", "3",
         "--policy", "greedy", "--inventory", str(inventory), "-o", "json"],
    )
    assert res.exit_code == 0, res.output
    cal = json.loads(res.stdout)["calibration"]
    analysis, _, _ = run([inventory], None, AnalyzeOptions(seed=0))
    expected = {
        w.id: w.best.cost for w in analysis.workloads if w.status in ("recommended", "conditional") and w.best
    }
    assert {r["workload"]: r["predicted_cost"] for r in cal["rows"]} == pytest.approx(expected)
    for r in cal["rows"]:
        assert r["replayed_cost"] > 0 and r["runs"] == 3
    up = np.array(data, bool)
    assert cal["fitted_interruptions"] == int(np.sum(up[:-1] & ~up[1:]))
    assert cal["fitted_mtbf_hours"] == pytest.approx(up.sum() / 6 / cal["fitted_interruptions"])
    # The refit is §5.5 at the fitted MTBF, worked here from the formula: T = W0 / (1 − (ℓ + r)/MTBF).
    by_id = {w.id: w for w in analysis.workloads}
    for r in cal["rows"]:
        best, current = by_id[r["workload"]].best, by_id[r["workload"]].current
        assert best is not None
        wall = current.hours / (1 - (best.lost_hours_per_interruption + best.restart_hours) / cal["fitted_mtbf_hours"])
        assert r["refit_wall_hours"] == pytest.approx(wall)
        assert r["refit_cost"] == pytest.approx(wall * current.count * best.price_per_hour)


def test_fit_mtbf_counts_a_gang_by_its_size() -> None:
    # A count trace that always shows 1 instance and twice drops from 2 to 1: one instance never fails,
    # a gang of two does.
    tr = Trace("counts", 3600.0, np.array([2, 2, 1, 2, 2, 2, 1, 1]))
    assert fit_mtbf([tr], 1)[0] is None
    assert fit_mtbf([tr], 2) == (pytest.approx(2.5), 2, pytest.approx(5.0))


def test_a_bad_inventory_fails_before_the_replay(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trace = tmp_path / "t.json"
    trace.write_text(json.dumps({"metadata": {"gap_seconds": 3600}, "data": [1, 1, 0, 1] * 30}))
    bad = tmp_path / "inv.yaml"
    bad.write_text("workloads:\n  - {id: a, kind: trainig}\n")
    result = runner.invoke(app, ["backtest", "--trace", str(trace), "--inventory", str(bad), "--starts", "3",
                                 "--job-hours", "4", "--deadline-hours", "8", "--changeover-hours", "0.5"])
    assert result.exit_code == 2, result.output
    assert "inv.yaml" in result.stderr and "kind" in result.stderr
    assert "policies" not in result.stderr  # no replay progress: it failed first
