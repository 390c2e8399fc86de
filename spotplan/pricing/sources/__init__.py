"""Live price pulls, one module per cloud (`aws`, `gcp`, `azure`), each through the cloud's real SDK
and each returning price-table rows (DESIGN.md §4.2); plus what the three share: retry with backoff
on throttling and a per-region progress callback.

Every SDK is imported inside the functions, so importing this package costs nothing and a missing
extra becomes `MissingExtraError` with the pip command that fixes it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import pandas as pd

T = TypeVar("T")

#: Called as progress(task_key, advance, total_or_None) by the pulls; the CLI draws bars from it.
Progress = Callable[[str, int, "int | None"], None]


def no_progress(key: str, advance: int, total: int | None) -> None:
    return None


@dataclass
class PullRequest:
    """What `prices pull` asked for, shared by every source."""

    regions: list[str] = field(default_factory=list)  # empty: every region the provider lists
    days: int = 90
    #: A --gpu filter, applied with `spotplan.gpus.gpu_matches`: one model (any provider's spelling),
    #: a bare family (A100: every variant), or None for all GPU types.
    gpu: str | None = None
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    #: Where each region's spot history may resume: (region) -> newest stored time, or None.
    resume_from: Callable[[str], datetime | None] = lambda region: None
    workers: int = 8
    #: Things the user should know that are not errors (a skipped optional source); the CLI prints them.
    notes: list[str] = field(default_factory=list)
    #: AWS AZ ID → zone name, as the spot history answered them (the store keeps one name per zone).
    zone_names: dict[str, str] = field(default_factory=dict)


def retry_base_seconds() -> float:
    """Backoff base for throttled calls; tests shrink it with SPOTPLAN_RETRY_BASE_SECONDS."""
    try:
        return max(0.0, float(os.environ.get("SPOTPLAN_RETRY_BASE_SECONDS", "1.0")))
    except ValueError:
        return 1.0


def retry_attempts() -> int:
    try:
        return max(1, int(os.environ.get("SPOTPLAN_RETRY_ATTEMPTS", "5")))
    except ValueError:
        return 5


def with_retries(fn: Callable[[], T], is_retryable: Callable[[BaseException], bool]) -> T:
    """Call `fn`, retrying throttling/transient errors with exponential backoff and jitter."""
    from tenacity import (
        Retrying,
        retry_if_exception,
        stop_after_attempt,
        wait_random_exponential,
    )

    base = retry_base_seconds()
    retrying = Retrying(
        retry=retry_if_exception(is_retryable),
        stop=stop_after_attempt(retry_attempts()),
        wait=wait_random_exponential(multiplier=base, max=max(base * 30, 0.001)),
        reraise=True,
    )
    return retrying(fn)


def http_retryable(exc: BaseException) -> bool:
    """429 and 5xx answers and dropped connections are worth another try; 4xx are not."""
    import requests

    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return exc.response.status_code == 429 or exc.response.status_code >= 500
    return isinstance(exc, (requests.ConnectionError, requests.Timeout))


def pull_all(providers: list[str], req: PullRequest, progress: Progress = no_progress) -> Any:
    """Pull every provider in turn and return all rows as one price table (nothing is stored here:
    the caller merges into the store only when every provider succeeded, so a failure changes
    nothing). Spot histories resume from the store's newest point per region."""
    import dataclasses

    import pandas as pd

    from spotplan.pricing import store
    from spotplan.pricing.sources import aws, azure, gcp
    from spotplan.pricing.table import empty_table

    modules = {"aws": aws, "gcp": gcp, "azure": azure}
    # Region names are lower case on every cloud; `prices show --region` matches in any case too.
    unknown = [r for r in req.regions if not any(region_belongs(p, r.strip().lower()) for p in modules)]
    req.regions = [r.strip().lower() for r in req.regions]
    if unknown:
        from spotplan.errors import InputError

        raise InputError(f"--region {unknown[0]!r} is not an AWS, GCP or Azure region name")
    names = {"aws": "AWS", "gcp": "GCP", "azure": "Azure"}
    elsewhere = [r for r in req.regions if not any(region_belongs(p, r) for p in providers)]
    if elsewhere:
        from spotplan.errors import InputError

        raise InputError(f"--region {elsewhere[0]!r} is not a region name of "
                         + " or ".join(names[p] for p in providers),
                         hint="--provider all sends each region to the cloud whose names it matches")
    check_gpu(req.gpu)
    frames = []
    for provider in providers:
        regions = [r for r in req.regions if region_belongs(provider, r)]
        if req.regions and not regions:
            continue  # regions were given, none of them this provider's
        newest = store.newest_observations(provider, "spot")  # one read of the store per provider
        sub = dataclasses.replace(req, regions=regions, resume_from=newest.get)
        frame = drop_bad_prices(modules[provider].pull(sub, progress), req.notes)
        check_pulled(frame, provider)
        frames.append(frame)
    frames = [f for f in frames if not f.empty]
    if not frames:
        return empty_table()
    return fill_shapes(pd.concat(frames, ignore_index=True))


def known_gpu_models() -> list[str]:
    """Every GPU model a pull can return: the vocabulary plus the per-cloud tables' names."""
    from spotplan.gpus import VOCABULARY, normalize_gpu_model
    from spotplan.pricing.sources import aws, azure, gcp

    names = {*VOCABULARY, *(m for m, _ in aws.GPU_FAMILIES.values()), *(m for m, _ in azure.GPU_SKUS.values()),
             *gcp.GPU_FAMILIES.values()}
    return sorted({normalize_gpu_model(n) for n in names})


def check_gpu(gpu: str | None) -> None:
    """InputError for a --gpu that matches no known model: a typo must not pull nothing on two
    clouds and, through an empty filter, everything on a third."""
    import difflib

    from spotplan.errors import InputError
    from spotplan.gpus import gpu_matches

    if not gpu or not gpu.strip():
        return
    known = known_gpu_models()
    if any(gpu_matches(gpu, m) for m in known):
        return
    close = difflib.get_close_matches(gpu.strip().upper(), [k.upper() for k in known], n=3, cutoff=0.5)
    by_upper = {k.upper(): k for k in known}
    hint = f"did you mean {', '.join(by_upper[c] for c in close)}? " if close else ""
    raise InputError(f"--gpu {gpu!r} is not a known GPU model",
                     hint=f"{hint}known: {', '.join(known)}; a family such as A100 takes every variant")


#: Shape columns a source may not give (the Azure Retail API has no memory, say).
_SHAPE = ("gpu_model", "gpu_count", "vcpus", "memory_gib")


def fill_shapes(rows: pd.DataFrame, reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """Fill the shape columns a pulled row lacks from what the bundled snapshot and the store know
    of the same provider and instance type, so a pull never blanks out a known shape (the newest
    observation is what `prices show` prints)."""
    import pandas as pd

    if reference is None:
        from spotplan.pricing.snapshot import load_snapshot
        from spotplan.pricing.store import read_store

        stored = read_store()
        snap = load_snapshot()
        reference = snap if stored is None else pd.concat([snap, stored], ignore_index=True)
    out = rows.copy()
    key = out["provider"].astype(str) + "|" + out["instance_type"].astype(str).str.lower()
    ref_key = reference["provider"].astype(str) + "|" + reference["instance_type"].astype(str).str.lower()
    for col in _SHAPE:
        if col not in out.columns:
            out[col] = None
        have = reference[col].notna() & (reference[col].astype(str).str.strip() != "")
        known = pd.Series(reference.loc[have, col].to_numpy(), index=ref_key[have].to_numpy())
        known = known[~known.index.duplicated(keep="last")]
        missing = out[col].isna() | (out[col].astype(str).str.strip() == "")
        if bool(missing.any()):
            filled = key[missing].map(known)
            out[col] = out[col].astype(object)
            out.loc[missing, col] = filled.to_numpy()
    return out


def pool_label(row: Any) -> str:
    """How a pull names a pool to the user: `gcp us-east5 g2-standard-4 spot` (zone when it has one)."""
    parts = [row.get("provider"), row.get("region"), row.get("zone"), row.get("instance_type"), row.get("market")]
    return " ".join(str(p) for p in parts if isinstance(p, str) and p)


#: How many skipped pools a pull names one by one before it only counts the rest.
_NAMED_POOLS = 10


def drop_bad_prices(rows: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """Leave out every pool the cloud priced at zero, negative or not at all (NaN, infinite) in this pull,
    with a note naming each. That is bad upstream data (e.g. catalog SKUs that sum below zero), not
    the user's input: one bad pool must not cost the pull every other pool and provider. The whole
    pool goes, not just the bad quote: its neighbours in the same answer are no more trustworthy."""
    import pandas as pd

    from spotplan.pricing.table import POOL_KEY, not_a_price

    if rows.empty:
        return rows
    bad = not_a_price(pd.to_numeric(rows["price_per_hour"], errors="coerce"))
    if not bool(bad.any()):
        return rows
    keys = pd.MultiIndex.from_frame(rows[list(POOL_KEY)].fillna("").astype(str))
    first_bad = rows[bad].drop_duplicates(list(POOL_KEY))
    for n, (_, row) in enumerate(first_bad.iterrows()):
        if n == _NAMED_POOLS:
            notes.append(f"... and {len(first_bad) - n} more pools left out for the same reason")
            break
        notes.append(f"{pool_label(row)} left out: the cloud's data prices it at {row['price_per_hour']} $/h, "
                     "zero, negative or not a number (bad upstream data)")
    dropped = keys.isin(keys[bad.to_numpy()])
    return rows[~dropped].reset_index(drop=True)


def check_pulled(rows: pd.DataFrame, provider: str) -> None:
    """Validate pulled rows as the store will; a bad one is the cloud's data, not the user's: exit 1
    (CloudError) naming the pool, not a row number of a frame the user never saw."""
    from spotplan.errors import CloudError
    from spotplan.pricing.table import RowError, normalize

    if rows.empty:
        return
    try:
        normalize(rows, origin=f"{provider} pull")
    except RowError as exc:
        row = rows.iloc[exc.position]
        raise CloudError(f"{provider} returned bad data for {pool_label(row)}: {exc.field} is {exc.value!r}, "
                         f"expected {exc.expected}") from None


_REGION_PATTERNS = {
    "aws": r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d+",  # us-east-1, us-gov-west-1
    "gcp": r"[a-z]+-[a-z]+\d+",  # us-central1, europe-west4
    "azure": r"[a-z]+\d*",  # eastus, westus2, southcentralus
}


def region_belongs(provider: str, region: str) -> bool:
    """Does a region name have the shape of this provider's names? (They don't overlap.)"""
    import re

    return re.fullmatch(_REGION_PATTERNS[provider], region) is not None
