"""The cost model v1 of DESIGN.md §5: pure, vectorised formulas over numpy arrays (scalars work too).

Every function takes arrays that broadcast together, one element per (workload, offer) pair, so the
planner prices thousands of workloads × offers in a handful of numpy operations. The planner owns
which inputs go in; this module owns only the arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]

#: Band → mean time between interruptions (hours) of one instance. AWS's band is the share of
#: instances reclaimed over a month; these assume a 4-hour mean instance life, λ = p/(1-p)/4h at
#: the band midpoints. Configurable; the backtest refits it from real traces.
DEFAULT_MTBF_HOURS: dict[str, float] = {
    "<5%": 156.0,
    "5-10%": 49.0,
    "10-15%": 28.0,
    "15-20%": 19.0,
    ">20%": 12.0,
}
#: A pool with no published band is priced as this band (and the assumptions say so).
EMPTY_BAND = "10-15%"
#: Reclaim notice per provider, seconds (AWS two-minute warning; GCP and Azure 30 s).
NOTICE_SECONDS: dict[str, float] = {"aws": 120.0, "gcp": 30.0, "azure": 30.0}
DEFAULT_PROVISION_MINUTES = 6.0
#: Checkpoint egress, USD per GB, by how far the move goes.
EGRESS_USD_PER_GB: dict[str, float] = {"same-region": 0.0, "cross-region": 0.02, "cross-provider": 0.09}
#: SPOT_NEAR_ON_DEMAND fires above this share of the on-demand price (the seed's alert rule).
SPOT_NEAR_ON_DEMAND_RATIO = 0.8
#: The seed documents' flat migration overhead: 10% of the spot run.
SEED_OVERHEAD_SHARE = 0.10


def _f(x: ArrayLike) -> Array:
    return np.asarray(x, dtype=np.float64)


def mtbf_hours(bands: ArrayLike, table: Mapping[str, float] | None = None) -> Array:
    """§5.1: MTBF (hours) per band; an empty or unknown band counts as EMPTY_BAND."""
    table = dict(DEFAULT_MTBF_HOURS if table is None else table)
    fallback = table[EMPTY_BAND]
    arr = np.asarray(bands, dtype=object)
    # Look up each distinct band once; a fleet has five bands but many thousand (workload, offer) rows.
    uniq, inverse = np.unique(np.where(arr == None, "", arr).astype(str), return_inverse=True)  # noqa: E711
    return np.array([table.get(b, fallback) for b in uniq], dtype=np.float64)[inverse].reshape(arr.shape)


def job_rate(mtbf: ArrayLike, count: ArrayLike, gang: ArrayLike) -> Array:
    """§5.1: λ_job = n·λ for gang-scheduled jobs (any instance lost stops all), else λ."""
    lam = 1.0 / _f(mtbf)
    return np.where(np.asarray(gang, dtype=bool), _f(count) * lam, lam)


def failure_free_hours(hours: ArrayLike, tau: ArrayLike, delta: ArrayLike, checkpointing: ArrayLike) -> Array:
    """§5.2: W0 = H·(1 + δ/τ) when checkpointing, else H."""
    h, t, d = _f(hours), _f(tau), _f(delta)
    ck = np.asarray(checkpointing, dtype=bool) & (t > 0)
    safe_t = np.where(ck, t, 1.0)
    return np.where(ck, h * (1.0 + d / safe_t), h)


def lost_hours(
    tau: ArrayLike,
    delta: ArrayLike,
    checkpointing: ArrayLike,
    handles_preemption: ArrayLike,
    notice_hours: ArrayLike,
) -> Array:
    """§5.3: ℓ = δ when a checkpoint fits in the notice, τ/2 with checkpoints, else 0.

    Jobs without checkpoints reach this only as dev/test (training/batch are ineligible first);
    their unsaved state is lost, which the UNSAVED_STATE warning says rather than this number.
    """
    t, d, n = _f(tau), _f(delta), _f(notice_hours)
    ck = np.asarray(checkpointing, dtype=bool)
    hp = np.asarray(handles_preemption, dtype=bool)
    return np.where(ck & hp & (d <= n), d, np.where(ck, t / 2.0, 0.0))


def restart_hours(provision_hours: ArrayLike, restore: ArrayLike) -> Array:
    """§5.4: r = P + ρ."""
    return _f(provision_hours) + _f(restore)


def expected_wall_hours(
    w0: ArrayLike, lam_job: ArrayLike, lost: ArrayLike, restart: ArrayLike
) -> tuple[Array, NDArray[np.bool_]]:
    """§5.5: T = W0 / (1 − λ_job·(ℓ + r)) and whether the job progresses at all.

    Returns (T, progresses); T is +inf where λ_job·(ℓ + r) ≥ 1 (status NO_PROGRESS).
    """
    load = _f(lam_job) * (_f(lost) + _f(restart))
    progresses = load < 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(progresses, _f(w0) / np.where(progresses, 1.0 - load, 1.0), np.inf)
    return t, progresses


def egress_usd_per_gb(same_provider: ArrayLike, same_region: ArrayLike) -> Array:
    """§5.6: 0 within a region, 0.02 across regions of one provider, 0.09 across providers."""
    sp = np.asarray(same_provider, dtype=bool)
    sr = np.asarray(same_region, dtype=bool)
    return np.where(
        sp & sr,
        EGRESS_USD_PER_GB["same-region"],
        np.where(sp, EGRESS_USD_PER_GB["cross-region"], EGRESS_USD_PER_GB["cross-provider"]),
    )


def migration_cost(
    count: ArrayLike, p_od: ArrayLike, p_s: ArrayLike, delta: ArrayLike, restart: ArrayLike,
    size_gb: ArrayLike, egress_per_gb: ArrayLike,
) -> Array:
    """§5.6: M = n·(p_od·δ + p_s·r) + size_gb·egress (one last checkpoint, one start on spot)."""
    return _f(count) * (_f(p_od) * _f(delta) + _f(p_s) * _f(restart)) + _f(size_gb) * _f(egress_per_gb)


def seed_costs(
    count: ArrayLike, p_od: ArrayLike, p_s: ArrayLike, hours: ArrayLike
) -> tuple[Array, Array, Array, Array]:
    """§5.8, the seed documents' rule: (C_cur, C_spot, M, S) with T = H, M = 0.10·n·p_s·H and
    S = n·(p_od − p_s)·H − M."""
    n, od, s, h = _f(count), _f(p_od), _f(p_s), _f(hours)
    migration = SEED_OVERHEAD_SHARE * n * s * h
    return n * od * h, n * s * h, migration, n * (od - s) * h - migration


def p90_wall_hours(
    lam_job: ArrayLike, w0: ArrayLike, per_interruption: ArrayLike, samples: int = 2000, seed: int = 0
) -> Array:
    """§5.10: the P90 of wall time, W0 plus the P90 number of interruptions times ℓ + r each."""
    k90 = interruption_quantile(lam_job, w0, per_interruption, 0.90, samples, seed)
    return _f(w0) + k90 * _f(per_interruption)


def daly_interval_hours(delta: ArrayLike, mtbf_job: ArrayLike) -> Array:
    """§5.9: Daly's (2006) higher-order optimum checkpoint interval, hours.

    τ* = sqrt(2δF)·[1 + (1/3)·sqrt(δ/(2F)) + (1/9)·(δ/(2F))] − δ for δ < 2F, else F.
    """
    d, f = _f(delta), _f(mtbf_job)
    x = d / (2.0 * f)
    tau = np.sqrt(2.0 * d * f) * (1.0 + np.sqrt(x) / 3.0 + x / 9.0) - d
    return np.where(d < 2.0 * f, tau, f)


def interruption_quantile(
    lam_job: ArrayLike,
    w0: ArrayLike,
    per_interruption: ArrayLike,
    q: float = 0.90,
    samples: int = 2000,
    seed: int = 0,
) -> Array:
    """§5.10: the `q` quantile, over `samples` seeded Monte Carlo runs, of the number of interruptions.

    Interruptions arrive as a Poisson process of rate λ_job over wall time and each adds
    c = ℓ + r to the run, so a run is a busy period that starts with W0 of work; its number of
    interruptions K has the exact law (Takács) P(K=k) = W0/(W0+kc)·e^{−λ(W0+kc)}·(λ(W0+kc))^k/k!.
    Each run draws one uniform U (seeded, shared by all rows: common random numbers) and gets
    K = F⁻¹(U); the sample quantile (numpy's linear interpolation) is then exact for that draw and
    costs O(rows × K) instead of O(rows × samples × K).
    """
    lam, x, c = np.broadcast_arrays(_f(lam_job), _f(w0), _f(per_interruption))
    shape = lam.shape
    lam, x, c = lam.ravel().copy(), x.ravel().copy(), c.ravel().copy()
    u = np.sort(np.random.default_rng(seed).random(int(samples)))
    pos = q * (len(u) - 1)
    lo_i, hi_i = int(math.floor(pos)), int(math.ceil(pos))
    frac = pos - lo_i
    k_lo = _inverse_cdf(lam, x, c, float(u[lo_i]))
    k_hi = k_lo if hi_i == lo_i else _inverse_cdf(lam, x, c, float(u[hi_i]))
    with np.errstate(invalid="ignore"):  # inf − inf where the run never ends: stays inf below
        k = np.where(np.isinf(k_hi), np.inf, k_lo + frac * (k_hi - k_lo))
    return k.reshape(shape)


def _inverse_cdf(lam: Array, x: Array, c: Array, u: float, max_k: int = 200_000) -> Array:
    """Smallest k with P(K ≤ k) ≥ u, per row; +inf where the run never ends (λc ≥ 1)."""
    out = np.full(lam.shape, np.inf)
    live = (lam * c < 1.0) & np.isfinite(x)
    zero = live & ((lam <= 0) | (x <= 0))
    out[zero] = 0.0
    live &= ~zero
    idx = np.nonzero(live)[0]
    if idx.size == 0:
        return out
    lam_l, x_l, c_l = lam[idx], x[idx], c[idx]
    cdf = np.zeros(idx.size)
    done = np.zeros(idx.size, dtype=bool)
    res = np.full(idx.size, np.inf)
    log_x = np.log(x_l)
    for k in range(max_k):
        span = x_l + k * c_l
        logp = log_x - np.log(span) - lam_l * span + k * np.log(lam_l * span) - math.lgamma(k + 1)
        cdf += np.exp(logp)
        hit = ~done & (cdf >= u - 1e-12)
        res[hit] = k
        done |= hit
        if done.all():
            break
    out[idx] = res
    return out
