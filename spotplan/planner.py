"""The planner: joins workloads × spot offers, applies the eligibility rules (§6) and the cost model
(§5), picks the best offer per workload and builds the one versioned analysis result (§4.3) and the
plan (§4.4). Pure: plain data in, plain data out; no I/O, no clock unless `now` is left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from spotplan import costmodel as cm
from spotplan import eligibility as el
from spotplan.gpus import normalize_gpu_model
from spotplan.models import (
    ANALYSIS_SCHEMA,
    CANDIDATE_STATUSES,
    PLAN_SCHEMA,
    AnalysisResult,
    CurrentCost,
    Move,
    OfferResult,
    Plan,
    Reason,
    Totals,
    Workload,
    WorkloadResult,
)
from spotplan.times import as_utc, iso_z

if TYPE_CHECKING:
    import pandas as pd

SCOPES = ("region", "provider", "any")
OVERHEAD_MODELS = ("explicit", "seed")
MAX_ALTERNATIVES = 3
STALE_AFTER_DAYS = 7


@dataclass(frozen=True)
class AnalyzeOptions:
    scope: str = "region"
    window_hours: float = 30 * 24.0
    min_savings: float = 0.0
    min_savings_pct: float = 0.0
    overhead_model: str = "explicit"
    samples: int = 2000
    seed: int = 0
    now: datetime | None = None
    mtbf_hours: Mapping[str, float] = field(default_factory=lambda: dict(cm.DEFAULT_MTBF_HOURS))
    provision_minutes: Mapping[str, float] = field(
        default_factory=lambda: {p: cm.DEFAULT_PROVISION_MINUTES for p in ("aws", "gcp", "azure")}
    )


def _reason(f: el.Finding) -> Reason:
    return Reason(code=f.code, message=f.message)


def analyze(
    workloads: Sequence[Workload],
    prices: pd.DataFrame,
    options: AnalyzeOptions | None = None,
    *,
    prices_source: str = "price table",
) -> AnalysisResult:
    """Score every workload against the spot offers in `prices` (price-table rows, §4.2)."""
    import pandas as pd

    from spotplan.pricing.history import newest_by_provider, summarize

    opt = options or AnalyzeOptions()
    if opt.scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}")
    if opt.overhead_model not in OVERHEAD_MODELS:
        raise ValueError(f"overhead model must be one of {OVERHEAD_MODELS}")
    now = as_utc(opt.now)
    seed_model = opt.overhead_model == "seed"

    pools = summarize(prices, opt.window_hours, now)
    spot = pools[pools["market"] == "spot"].reset_index(drop=True)
    od = pools[pools["market"] == "on-demand"].reset_index(drop=True)

    shapes = _shapes(pools)
    spot = _with_region_bands(_with_shapes(spot, shapes))
    known_regions: dict[str, set[str]] = {}
    for prov, reg in zip(pools["provider"], pools["region"]):
        known_regions.setdefault(str(prov), set()).add(str(reg))
    # §5: p_od is the current pool's on-demand price (its latest list price); only p_s is averaged.
    od_price = _price_lookup(od, "latest_price")
    spot_price = _price_lookup(spot)

    # ---- per workload: inputs, current cost, rules 1-4 -------------------------------------
    n_w = len(workloads)
    results: list[dict[str, Any]] = []
    cand_rows: list[dict[str, Any]] = []
    for i, w in enumerate(workloads):
        ck = w.checkpoint
        enabled = bool(ck.enabled)
        tau = (ck.interval_minutes or 0.0) / 60.0 if enabled else 0.0
        delta = (ck.save_seconds or 0.0) / 3600.0 if enabled else 0.0
        rho = (ck.restore_seconds or 0.0) / 3600.0 if enabled else 0.0
        gpu_model, gpu_count = w.gpu_model, w.gpu_count
        shape = shapes.get((w.provider, w.instance_type))
        if shape is not None:
            gpu_model = gpu_model or shape[0]
            gpu_count = gpu_count or shape[1]
        gpu_model = normalize_gpu_model(gpu_model) if gpu_model else ""
        gpu_count = float(gpu_count or 0.0)
        w0 = w.remaining_hours if seed_model else float(cm.failure_free_hours(w.remaining_hours, tau, delta, enabled))
        p_cur = (spot_price if w.market == "spot" else od_price).get((w.provider, w.region, w.instance_type), {})
        cur_price = _pick_zone(p_cur, w.zone)
        p_od = _pick_zone(od_price.get((w.provider, w.region, w.instance_type), {}), w.zone)
        hours_to_deadline = (
            (w.deadline.astimezone(timezone.utc) - now).total_seconds() / 3600.0
            if w.deadline is not None
            else None
        )
        current = CurrentCost(
            provider=w.provider,
            region=w.region,
            instance_type=w.instance_type,
            market=w.market,
            count=w.count,
            price_per_hour=cur_price,
            hours=w0,
            cost=None if cur_price is None else w.count * cur_price * w0,
        )
        rec: dict[str, Any] = {
            "w": w,
            "current": current,
            "status": None,
            "reasons": [],
            "warnings": [],
            "best": None,
            "alternatives": [],
            "hours_to_deadline": hours_to_deadline,
        }
        results.append(rec)
        for rule in el.PRE_OFFER_RULES:
            found = rule(w)
            if found is not None:
                rec["status"] = "already-spot" if found.code == "ALREADY_SPOT" else "ineligible"
                if found.code != "ALREADY_SPOT":
                    rec["reasons"].append(_reason(found))
                break
        if rec["status"] is not None:
            continue
        if p_od is None:
            # Without p_od there is no S to rank by, but §6 decides rules 5 and 6 (no offer, no
            # progress, an impossible deadline) first: those do not need it, and they are the
            # contract's codes, so NO_ON_DEMAND_PRICE only stands where none of them applies.
            message = f"no on-demand price for {w.instance_type} in {w.provider} {w.region}"
            regions = known_regions.get(w.provider, set())
            if w.region not in regions:
                import difflib

                near = difflib.get_close_matches(w.region, sorted(regions), n=1)
                rec["unknown_region"] = f"the price table has no {w.provider} region {w.region!r}" + (
                    f" (did you mean {near[0]!r}?)" if near else ""
                )
                message += ": " + rec["unknown_region"]
            rec["no_on_demand"] = Reason(code="NO_ON_DEMAND_PRICE", message=message)
        cand_rows.append(
            {
                "wi": i,
                "provider_w": w.provider,
                "region_w": w.region,
                "type_w": w.instance_type,
                "gpu_model": gpu_model,
                "need_gpus": gpu_count,
                "n": float(w.count),
                "gang": w.is_gang,
                "H": float(w.remaining_hours),
                "W0": float(w0),
                "tau": tau,
                "delta": delta,
                "rho": rho,
                "ck": enabled,
                "hp": bool(w.handles_preemption),
                "p_od": float("nan") if p_od is None else float(p_od),
                "size_gb": float(ck.size_gb or 0.0),  # §5.6 counts it whatever checkpointing says
                "prov_min": (
                    w.provision_minutes
                    if w.provision_minutes is not None
                    else opt.provision_minutes.get(w.provider, cm.DEFAULT_PROVISION_MINUTES)
                ),
            }
        )
        rec["gpu"] = (gpu_model, gpu_count)

    # ---- workloads × offers, vectorised -------------------------------------------------------
    priced = _price_candidates(pd.DataFrame(cand_rows), spot, opt, seed_model)
    with_offer: set[int] = set()
    top_by_w: dict[int, list[dict[str, Any]]] = {}
    if not priced.empty:
        with_offer = set(priced["wi"].astype(int).tolist())
        live = priced[priced["progresses"]]
        # One conversion for all workloads: per-workload frame slicing is what made 10k slow.
        for rec_row in live.groupby("wi", sort=False).head(1 + MAX_ALTERNATIVES).to_dict("records"):
            top_by_w.setdefault(int(rec_row["wi"]), []).append({str(k): v for k, v in rec_row.items()})

    for row in cand_rows:
        wi = int(row["wi"])
        rec = results[wi]
        w = rec["w"]
        if wi not in with_offer:
            gm, gc = rec.get("gpu", ("", 0.0))
            rec["status"] = "ineligible"
            found = el.no_spot_offer(w, gm, gc, opt.scope)
            hint = rec.get("unknown_region")
            rec["reasons"].append(Reason(code=found.code, message=found.message + (f": {hint}" if hint else "")))
            continue
        top = top_by_w.get(wi)
        if not top:
            rec["status"] = "ineligible"
            rec["reasons"].append(_reason(el.no_progress()))
            continue
        infeasible = el.deadline_infeasible(row["W0"], rec["hours_to_deadline"])
        if infeasible is not None:
            rec["status"] = "ineligible"
            rec["reasons"].append(_reason(infeasible))
            continue
        if "no_on_demand" in rec:
            rec["status"] = "ineligible"
            rec["reasons"].append(rec["no_on_demand"])
            continue
        offers = [_offer(r) for r in top]
        best_row = top[0]
        rec["best"], rec["alternatives"] = offers[0], offers[1:]
        tau_star = offers[0].recommended_checkpoint_minutes
        rec["warnings"] = [
            _reason(f)
            for f in el.warnings_for(
                w,
                band=str(best_row["interruption_band"] or ""),
                p_s=float(best_row["p_s"]),
                p_od=float(row["p_od"]),
                tau_hours=row["tau"],
                tau_star_hours=None if tau_star is None else tau_star / 60.0,
                delta_hours=row["delta"],
                notice_hours=float(best_row["notice_h"]),
            )
        ]
        low = el.below_threshold(offers[0].savings, offers[0].savings_pct, opt.min_savings, opt.min_savings_pct)
        if low is not None:
            rec["status"] = "not-worth-it"
            rec["reasons"].append(_reason(low))
            continue
        cond = [
            f
            for f in (
                el.ephemeral_checkpoints(w),
                el.deadline_risk(offers[0].wall_hours_p90, rec["hours_to_deadline"]),
            )
            if f is not None
        ]
        rec["status"] = "conditional" if cond else "recommended"
        rec["reasons"].extend(_reason(f) for f in cond)

    # ---- result ------------------------------------------------------------------------------
    wl_results = [
        WorkloadResult(
            id=r["w"].id,
            status=r["status"],
            reasons=r["reasons"],
            warnings=r["warnings"],
            current=r["current"],
            best=r["best"],
            alternatives=r["alternatives"],
        )
        for r in results
    ]
    chosen = [r for r in wl_results if r.status in CANDIDATE_STATUSES and r.best is not None]
    current_cost = float(sum(r.current.cost or 0.0 for r in wl_results))
    savings = float(sum(r.best.savings for r in chosen if r.best is not None))
    totals = Totals(
        workloads=n_w,
        recommended=sum(r.status == "recommended" for r in wl_results),
        conditional=sum(r.status == "conditional" for r in wl_results),
        current_cost=current_cost,
        projected_cost=current_cost - savings,
        savings=savings,
    )
    as_of_by_provider: dict[str, str] = {}
    stale: list[str] = []
    if not pools.empty:
        for prov, newest in newest_by_provider(pools, "as_of").items():
            as_of_by_provider[prov] = iso_z(newest.to_pydatetime())
            age_days = (now - newest.to_pydatetime()).total_seconds() / 86400.0
            if age_days > STALE_AFTER_DAYS:
                stale.append(
                    f"{str(prov).upper()} prices are {age_days:.0f} days old (newest {newest.date()}); "
                    "run `spotplan prices pull` for fresh ones"
                )
    as_of = max(as_of_by_provider.values()) if as_of_by_provider else None
    assumptions = _assumptions(opt, now, as_of_by_provider)
    return AnalysisResult.model_validate(
        {
            "schema": ANALYSIS_SCHEMA,
            "generated_at": iso_z(now),
            "prices": {
                "source": prices_source,
                "as_of": as_of,
                "as_of_by_provider": as_of_by_provider,
                "warnings": stale,
            },
            "assumptions": assumptions,
            "workloads": wl_results,
            "totals": totals,
        }
    )


def _assumptions(opt: AnalyzeOptions, now: datetime, as_of: Mapping[str, str]) -> dict[str, Any]:
    window_days = opt.window_hours / 24.0
    return {
        "cost_model": "v1",
        "overhead_model": opt.overhead_model,
        "scope": opt.scope,
        "window_hours": opt.window_hours,
        "spot_price": (
            f"time-weighted mean of each pool's history over the last {window_days:g} days, "
            "else its latest price"
        ),
        "prices_as_of": {p: f"{p.upper()} prices as of {t}" for p, t in sorted(as_of.items())},
        "mtbf_hours_by_band": dict(opt.mtbf_hours),
        "empty_band_counts_as": cm.EMPTY_BAND,
        "notice_seconds": dict(cm.NOTICE_SECONDS),
        "provision_minutes": dict(opt.provision_minutes),
        "egress_usd_per_gb": dict(cm.EGRESS_USD_PER_GB),
        "seed_overhead_share": cm.SEED_OVERHEAD_SHARE if opt.overhead_model == "seed" else None,
        "spot_near_on_demand_ratio": cm.SPOT_NEAR_ON_DEMAND_RATIO,
        "min_savings_usd": opt.min_savings,
        "min_savings_pct": opt.min_savings_pct,
        "p90": {"samples": opt.samples, "seed": opt.seed, "method": "Monte Carlo, Poisson interruptions"},
        "now": iso_z(now),
        "currency": "USD",
    }


def _shapes(pools: pd.DataFrame) -> dict[tuple[str, str], tuple[str, float]]:
    """(provider, instance_type) → (gpu_model, gpu_count), from any row that knows them."""
    known = pools[(pools["gpu_model"].astype(str) != "") & pools["gpu_count"].notna()]
    known = known.drop_duplicates(["provider", "instance_type"])
    return {
        (str(p), str(t)): (str(g), float(c))
        for p, t, g, c in zip(known["provider"], known["instance_type"], known["gpu_model"], known["gpu_count"])
    }


def _with_shapes(offers: pd.DataFrame, shapes: Mapping[tuple[str, str], tuple[str, float]]) -> pd.DataFrame:
    """Offers whose rows leave the GPU model or count empty take them from any row of the same
    instance type that has them (the snapshot's, when a pulled or imported row lacks them)."""
    import pandas as pd

    if offers.empty:
        return offers
    missing = (offers["gpu_model"].astype(str) == "") | offers["gpu_count"].isna()
    if not bool(missing.any()):
        return offers
    known = [shapes.get(key, ("", float("nan"))) for key in zip(offers["provider"].astype(str),
                                                                 offers["instance_type"].astype(str))]
    model = pd.Series([k[0] for k in known], index=offers.index)
    count = pd.Series([k[1] for k in known], index=offers.index)
    return offers.assign(gpu_model=offers["gpu_model"].where(offers["gpu_model"].astype(str) != "", model),
                         gpu_count=offers["gpu_count"].fillna(count))


def _with_region_bands(offers: pd.DataFrame) -> pd.DataFrame:
    """Spot pools without an interruption band take the band published for their region and type
    (the region-wide row's, else a zone's): AWS, and Azure's eviction rates, give it per region, and
    a zone price pulled or imported on its own would otherwise count as `10-15%` and look safer."""
    if offers.empty:
        return offers
    banded = offers[offers["interruption_band"].astype(str) != ""]
    if banded.empty:
        return offers
    key = ["provider", "region", "instance_type"]
    region_first = banded.assign(_zoned=banded["zone"].astype(str) != "").sort_values("_zoned", kind="stable")
    first = region_first.drop_duplicates(key)
    bands = {(str(p), str(r), str(t)): str(b) for p, r, t, b in
             zip(first["provider"], first["region"], first["instance_type"], first["interruption_band"])}
    return offers.assign(interruption_band=[
        own or bands.get((str(p), str(r), str(t)), "")
        for own, p, r, t in zip(offers["interruption_band"].astype(str), offers["provider"], offers["region"],
                                offers["instance_type"])])


def _price_lookup(pools: pd.DataFrame, column: str = "price") -> dict[tuple[str, str, str], dict[str, float]]:
    """(provider, region, instance_type) → {zone: price from `column`}."""
    out: dict[tuple[str, str, str], dict[str, float]] = {}
    for p, r, t, z, price in zip(
        pools["provider"], pools["region"], pools["instance_type"], pools["zone"], pools[column]
    ):
        out.setdefault((str(p), str(r), str(t)), {})[str(z or "")] = float(price)
    return out


def _pick_zone(prices: Mapping[str, float], zone: str | None) -> float | None:
    """The workload's zone if priced, else the region-wide price, else the cheapest zone."""
    if not prices:
        return None
    if zone and zone in prices:
        return prices[zone]
    if "" in prices:
        return prices[""]
    return min(prices.values())


def _price_candidates(
    wl: pd.DataFrame,
    spot: pd.DataFrame,
    opt: AnalyzeOptions,
    seed_model: bool,
) -> pd.DataFrame:
    """Every (workload, spot offer) pair in scope with the GPU model and enough GPUs, costed."""
    import pandas as pd

    if wl.empty or spot.empty:
        return pd.DataFrame()
    offers = spot.rename(columns={"price": "p_s", "price_p95": "p_s95"})[
        ["provider", "region", "zone", "instance_type", "gpu_model", "gpu_count", "interruption_band", "p_s", "p_s95"]
    ]
    by_gpu = wl.merge(offers[offers["gpu_model"].astype(str) != ""], on="gpu_model", how="inner")
    by_gpu = by_gpu[by_gpu["gpu_count"].fillna(0) >= by_gpu["need_gpus"]]
    # The workload's own instance type is always an offer for it, even where no row of the table
    # says which GPUs it has.
    same = wl.merge(offers.drop(columns="gpu_model"), left_on=["provider_w", "type_w"],
                    right_on=["provider", "instance_type"], how="inner")
    df = pd.concat([by_gpu, same[by_gpu.columns]], ignore_index=True).drop_duplicates(
        ["wi", "provider", "region", "zone", "instance_type"])
    keep = pd.Series(True, index=df.index)
    if opt.scope in ("region", "provider"):
        keep &= df["provider"] == df["provider_w"]
    if opt.scope == "region":
        keep &= df["region"] == df["region_w"]
    df = df[keep].reset_index(drop=True)
    if df.empty:
        return df

    n, H, W0 = df["n"].to_numpy(), df["H"].to_numpy(), df["W0"].to_numpy()
    tau, delta, rho = df["tau"].to_numpy(), df["delta"].to_numpy(), df["rho"].to_numpy()
    ck, hp = df["ck"].to_numpy(bool), df["hp"].to_numpy(bool)
    p_od, p_s = df["p_od"].to_numpy(float), df["p_s"].to_numpy(float)
    notice_h = df["provider"].map(cm.NOTICE_SECONDS).fillna(30.0).to_numpy() / 3600.0
    mtbf = cm.mtbf_hours(df["interruption_band"].fillna("").to_numpy(), opt.mtbf_hours)
    lam_job = cm.job_rate(mtbf, n, df["gang"].to_numpy(bool))
    lost = cm.lost_hours(tau, delta, ck, hp, notice_h)
    restart = cm.restart_hours(df["prov_min"].to_numpy(float) / 60.0, rho)
    per_int = lost + restart
    if seed_model:
        wall = H.astype(float)
        progresses = np.ones(len(df), dtype=bool)
        c_cur, c_spot, migration, savings = cm.seed_costs(n, p_od, p_s, H)
        wall_p90 = wall
    else:
        wall, progresses = cm.expected_wall_hours(W0, lam_job, lost, restart)
        egress = cm.egress_usd_per_gb(
            df["provider"].to_numpy() == df["provider_w"].to_numpy(),
            (df["provider"].to_numpy() == df["provider_w"].to_numpy())
            & (df["region"].to_numpy() == df["region_w"].to_numpy()),
        )
        migration = cm.migration_cost(n, p_od, p_s, delta, restart, df["size_gb"].to_numpy(float), egress)
        c_cur = n * p_od * W0
        c_spot = n * p_s * wall
        savings = c_cur - c_spot - migration
        wall_p90 = cm.p90_wall_hours(lam_job, W0, per_int, opt.samples, opt.seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        pct = np.where(c_cur > 0, 100.0 * savings / c_cur, 0.0)
        tau_star = cm.daly_interval_hours(delta, 1.0 / lam_job) * 60.0
    df = df.assign(
        notice_h=notice_h,
        mtbf=mtbf,
        lam_job=lam_job,
        lost=lost,
        restart=restart,
        wall=wall,
        wall_p90=wall_p90,
        k=lam_job * wall,
        cost=c_spot,
        cost_p90=n * p_s * wall_p90,
        migration=migration,
        savings=savings,
        savings_pct=pct,
        tau_star=np.where(ck & (delta > 0), tau_star, np.nan),
        progresses=progresses,
    )
    # Best first; ties broken by price then name so the choice is stable.
    df["_neg"] = -df["savings"].where(df["progresses"], -np.inf)
    df = df.sort_values(["wi", "_neg", "p_s", "provider", "region", "zone", "instance_type"], kind="stable")
    return df.drop(columns="_neg")


def _offer(r: Mapping[str, Any]) -> OfferResult:
    tau_star = r["tau_star"]
    return OfferResult(
        provider=str(r["provider"]),
        region=str(r["region"]),
        zone=str(r["zone"]) or None,
        instance_type=str(r["instance_type"]),
        price_per_hour=float(r["p_s"]),
        price_per_hour_p95=float(r["p_s95"]),
        interruption_band=str(r["interruption_band"]) or None,
        mtbf_hours=float(r["mtbf"]),
        expected_interruptions=float(r["k"]),
        lost_hours_per_interruption=float(r["lost"]),
        restart_hours=float(r["restart"]),
        wall_hours=float(r["wall"]),
        wall_hours_p90=float(r["wall_p90"]),
        cost=float(r["cost"]),
        cost_p90=float(r["cost_p90"]),
        migration_cost=float(r["migration"]),
        savings=float(r["savings"]),
        savings_pct=float(r["savings_pct"]),
        recommended_checkpoint_minutes=None if tau_star != tau_star else float(tau_star),
    )


def build_plan(
    result: AnalysisResult,
    workloads: Sequence[Workload],
    on_demand_prices: Mapping[tuple[str, str, str], float] | None = None,
    *,
    created_at: datetime | None = None,
) -> Plan:
    """The plan (§4.4): one move per recommended or conditional workload.

    `max_price` is the target pool's on-demand price when known, else the current on-demand price,
    so a bid never exceeds on-demand; `on_demand_price` records that price (the executor refuses a
    hand-edited plan whose bid exceeds it).
    """
    by_id = {w.id: w for w in workloads}
    moves: list[Move] = []
    for r in result.workloads:
        if r.status not in CANDIDATE_STATUSES or r.best is None:
            continue
        w = by_id[r.id]
        b = r.best
        od_target = (on_demand_prices or {}).get((b.provider, b.region, b.instance_type))
        cap = od_target if od_target is not None else r.current.price_per_hour
        max_price = float(cap) if cap is not None else b.price_per_hour
        moves.append(
            Move.model_validate(
                {
                    "id": f"move-{w.id}",
                    "workload": w.id,
                    "source": {
                        "provider": w.provider,
                        "region": w.region,
                        "zone": w.zone,
                        "instance_type": w.instance_type,
                        "instance_ids": list(w.instance_ids),
                    },
                    "target": {
                        "provider": b.provider,
                        "region": b.region,
                        "zone": b.zone,
                        "instance_type": b.instance_type,
                        "market": "spot",
                        "max_price": max_price,
                    },
                    "checkpoint": w.checkpoint.model_dump(mode="json"),
                    "launch": None if w.launch is None else w.launch.model_dump(mode="json"),
                    "fallback": "on-demand",
                    "expected": {"savings": b.savings, "cost": b.cost + b.migration_cost},
                    "count": w.count,
                    "labels": dict(w.labels),
                    "on_demand_price": None if cap is None else float(cap),
                    "status": r.status,
                }
            )
        )
    return Plan.model_validate(
        {
            "schema": PLAN_SCHEMA,
            "created_at": iso_z(as_utc(created_at)),
            "analysis": {"generated_at": result.generated_at},
            "moves": moves,
        }
    )


def on_demand_index(
    prices: pd.DataFrame, window_hours: float, now: datetime | None
) -> dict[tuple[str, str, str], float]:
    """(provider, region, instance_type) → on-demand price (region-wide, else cheapest zone)."""
    from spotplan.pricing.history import summarize

    pools = summarize(prices, window_hours, now)
    od = pools[pools["market"] == "on-demand"]
    return {k: v for k, z in _price_lookup(od, "latest_price").items() if (v := _pick_zone(z, None)) is not None}
