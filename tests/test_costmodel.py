"""Cost model v1 (DESIGN.md §5): each formula against numbers worked out by hand.

Reference case "pretrain": n = 2 gang instances, H = 48 h, τ = 30 min, δ = 90 s, ρ = 300 s,
P = 6 min, band >20% (MTBF 12 h), AWS notice 120 s, handles preemption, p_od = $20, p_s = $6,
size 200 GB in the same region.
  λ_job = 2/12 = 1/6 per hour
  W0 = 48·(1 + 0.025/0.5) = 50.4 h
  ℓ = δ = 0.025 h (90 s ≤ 120 s notice, handler present)
  r = 0.1 + 0.0833333 = 0.1833333 h
  λ_job·(ℓ + r) = 0.2083333/6 = 0.0347222
  T = 50.4 / 0.9652778 = 52.212950 h;  K = T/6 = 8.702158
  C_cur = 2·20·50.4 = 2016;  C_spot = 2·6·52.212950 = 626.555396
  M = 2·(20·0.025 + 6·0.1833333) + 200·0 = 3.2
  S = 2016 − 626.555396 − 3.2 = 1386.244604;  S% = 68.762133
  Daly: F = 6 h, δ/(2F) = 0.00208333, sqrt(2δF) = sqrt(0.3) = 0.5477226
        τ* = 0.5477226·(1 + 0.0456435/3 + 0.00208333/9) − 0.025 = 0.5311827 h = 31.87096 min
"""

from __future__ import annotations

import numpy as np
import pytest

from spotplan import costmodel as cm


def test_mtbf_table_and_empty_band() -> None:
    got = cm.mtbf_hours(["<5%", "5-10%", "10-15%", "15-20%", ">20%", "", None])
    assert got.tolist() == [156, 49, 28, 19, 12, 28, 28]


def test_job_rate_gang_multiplies_by_count() -> None:
    assert cm.job_rate(12.0, 2, True) == pytest.approx(1 / 6)
    assert cm.job_rate(12.0, 2, False) == pytest.approx(1 / 12)


def test_failure_free_hours() -> None:
    assert cm.failure_free_hours(48, 0.5, 0.025, True) == pytest.approx(50.4)
    assert cm.failure_free_hours(48, 0.0, 0.0, False) == pytest.approx(48)


@pytest.mark.parametrize(
    ("tau", "delta", "ck", "hp", "notice", "expected"),
    [
        (0.5, 0.025, True, True, 120 / 3600, 0.025),  # checkpoint fits in the notice
        (0.5, 0.025, True, False, 120 / 3600, 0.25),  # no handler: τ/2
        (0.5, 0.025, True, True, 30 / 3600, 0.25),  # 90 s save > 30 s notice: τ/2
        (0.0, 0.0, False, False, 30 / 3600, 0.0),  # dev/test without checkpoints
    ],
)
def test_lost_work(tau: float, delta: float, ck: bool, hp: bool, notice: float, expected: float) -> None:
    assert cm.lost_hours(tau, delta, ck, hp, notice) == pytest.approx(expected)


def test_expected_wall_time_and_no_progress() -> None:
    t, ok = cm.expected_wall_hours(50.4, 1 / 6, 0.025, 0.1 + 300 / 3600)
    assert bool(ok) and float(t) == pytest.approx(52.212950, rel=1e-6)
    t, ok = cm.expected_wall_hours(10, 0.5, 1.0, 1.0)  # λ(ℓ+r) = 1
    assert not bool(ok) and np.isinf(t)


def test_migration_cost_and_egress() -> None:
    assert cm.migration_cost(2, 20, 6, 0.025, 0.1 + 300 / 3600, 200, 0.0) == pytest.approx(3.2)
    assert cm.egress_usd_per_gb([True, True, False], [True, False, False]).tolist() == [0.0, 0.02, 0.09]
    # 200 GB across regions adds 200 × 0.02 = 4
    assert cm.migration_cost(2, 20, 6, 0.025, 0.1 + 300 / 3600, 200, 0.02) == pytest.approx(7.2)


def test_daly_interval() -> None:
    assert cm.daly_interval_hours(0.025, 6.0) * 60 == pytest.approx(31.87096, rel=1e-5)
    # Daly's published example: δ = 5 min, M = 24 h → about 117 min (papers.md §3)
    assert cm.daly_interval_hours(5 / 60, 24.0) * 60 == pytest.approx(116.7, abs=0.1)
    # δ ≥ 2F → τ* = F
    assert cm.daly_interval_hours(3.0, 1.0) == pytest.approx(1.0)


def _busy_period_counts(lam: float, w0: float, c: float, runs: int, seed: int) -> np.ndarray:
    """Brute force: Poisson interruptions along the run, each adding c to it."""
    rng = np.random.default_rng(seed)
    out = np.empty(runs)
    for i in range(runs):
        k, t = 0, rng.exponential(1 / lam)
        while t < w0 + k * c:
            k += 1
            t += rng.exponential(1 / lam)
        out[i] = k
    return out


def test_p90_matches_a_brute_force_simulation() -> None:
    lam, w0, c = 0.2, 50.0, 1.5
    brute = np.percentile(_busy_period_counts(lam, w0, c, 20000, 7), 90)
    got = float(cm.interruption_quantile(lam, w0, c, 0.9, samples=20000, seed=1))
    assert abs(got - brute) <= 1.0
    # and its mean is the §5.5 expectation K = λ·W0/(1 − λc)
    assert _busy_period_counts(lam, w0, c, 4000, 3).mean() == pytest.approx(lam * w0 / (1 - lam * c), rel=0.05)


def test_p90_is_deterministic_per_seed_and_monotone() -> None:
    a = cm.interruption_quantile([1 / 6, 0.05], [50.4, 10.0], [0.2083333, 0.5], 0.9, 2000, 0)
    b = cm.interruption_quantile([1 / 6, 0.05], [50.4, 10.0], [0.2083333, 0.5], 0.9, 2000, 0)
    assert a.tolist() == b.tolist()
    # the P90 count is at least the mean count for this right-skewed law
    assert a[0] >= (1 / 6) * 52.212950
    assert cm.interruption_quantile(0.0, 10.0, 0.5) == 0.0


def test_seed_model_by_hand() -> None:
    # The seed documents' p4d example: 48 h at $25/h on-demand against $8.3333/h spot, one instance.
    # C_cur = 25·48 = 1200; C_spot = 8.3333·48 = 400; M = 0.10·400 = 40; S = (25 − 8.3333)·48 − 40 = 760.
    c_cur, c_spot, m, s = cm.seed_costs(1, 25.0, 25.0 / 3, 48.0)
    assert (float(c_cur), float(c_spot), float(m), float(s)) == pytest.approx((1200.0, 400.0, 40.0, 760.0))
    # Two instances double every term.
    assert float(cm.seed_costs(2, 25.0, 25.0 / 3, 48.0)[3]) == pytest.approx(1520.0)


def test_p90_wall_is_w0_plus_the_p90_count_of_interruptions() -> None:
    # No interruptions at all (λ = 0): the P90 wall time is W0.
    assert float(cm.p90_wall_hours(0.0, 50.4, 0.2)) == pytest.approx(50.4)
    k90 = float(cm.interruption_quantile(1 / 12, 50.4, 0.2, 0.90, 2000, 0))
    assert k90 >= 1
    assert float(cm.p90_wall_hours(1 / 12, 50.4, 0.2)) == pytest.approx(50.4 + k90 * 0.2)
