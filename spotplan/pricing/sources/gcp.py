"""GCP prices: Compute Engine SKUs from the Cloud Billing Catalog (`google-cloud-billing`
CloudCatalogClient: on-demand and "Spot Preemptible" vCPU, RAM and GPU SKUs per region) combined with
machine-type shapes from `google-cloud-compute` (MachineTypesClient.aggregated_list), giving one price
per accelerator machine type and region, comparable to an AWS instance price.

Endpoints: SPOTPLAN_GCP_BILLING_ENDPOINT / SPOTPLAN_GCP_COMPUTE_ENDPOINT (anonymous credentials when
set and no GOOGLE_APPLICATION_CREDENTIALS is given), else Google's ADC. Project: SPOTPLAN_GCP_PROJECT,
GOOGLE_CLOUD_PROJECT, or the ADC project.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from spotplan.errors import CloudError, CredentialsError, InputError, require_extra
from spotplan.gpus import gpu_matches, normalize_gpu_model
from spotplan.pricing.sources import Progress, PullRequest, no_progress, with_retries
from spotplan.times import iso_z

if TYPE_CHECKING:
    import pandas as pd

COMPUTE_SERVICE = "services/6F81-5844-456A"
_FIX = "run `gcloud auth application-default login` (or set GOOGLE_APPLICATION_CREDENTIALS) and GOOGLE_CLOUD_PROJECT"
_GENERIC_TOKENS = {"nvidia", "tesla", "gpu"}
# SKUs that price something other than a plain VM hour of the family.
_EXCLUDE = re.compile(r"sole tenancy|reserved|commitment|dws|calendar|flex|custom|extended|premium", re.I)
#: Machine-type family → GPU model: what a family always carries, whatever a source says.
GPU_FAMILIES: dict[str, str] = {
    "a2-highgpu": "A100-40GB", "a2-megagpu": "A100-40GB", "a2-ultragpu": "A100-80GB",
    "a3-highgpu": "H100", "a3-megagpu": "H100", "a3-edgegpu": "H100", "a3-ultragpu": "H200",
    "a4-highgpu": "B200", "g2-standard": "L4",
}
_PREFIX = re.compile(r"^(spot preemptible |preemptible |spot )", re.I)


def pull(req: PullRequest, progress: Progress = no_progress) -> pd.DataFrame:
    import pandas as pd

    require_extra("google.cloud.billing_v1", "gcp")
    require_extra("google.cloud.compute_v1", "gcp")
    from spotplan.pricing.table import empty_table

    creds, project = _credentials()
    with ThreadPoolExecutor(max_workers=2) as pool:
        skus_f = pool.submit(_list_skus, creds, progress)
        types_f = pool.submit(_list_machine_types, creds, project, progress)
        skus, machine_types = skus_f.result(), types_f.result()
    index = SkuIndex(skus)
    known = {region for region, _ in machine_types} | {r for sku in skus for r in sku["regions"]}
    unknown = [r for r in req.regions if r not in known]
    if unknown:
        raise InputError(f"--region {unknown[0]!r} is not a GCP region the catalog or Compute lists",
                         hint="e.g. " + ", ".join(sorted({region for region, _ in machine_types})[:4]))
    pulled_at = iso_z(req.now)
    rows: list[dict[str, Any]] = []
    for (region, name), mt in sorted(machine_types.items()):
        if req.regions and region not in req.regions:
            continue
        model = family_gpu(name) or normalize_gpu_model(mt["accelerator"])
        if not gpu_matches(req.gpu, model):
            continue
        for market, usage in (("on-demand", "OnDemand"), ("spot", "Preemptible")):
            parts = index.components(name, mt, region, usage)
            if parts is None:
                continue
            bad = bad_sku(parts)
            if bad is not None:
                req.notes.append(f"gcp {region} {name} {market} left out: the catalog prices its SKU "
                                 f"{bad['description']!r} at {bad['price']} $/h (bad upstream data)")
                continue
            price = machine_price(parts, mt)
            rows.append({
                "provider": "gcp", "region": region, "zone": "", "instance_type": name,
                "gpu_model": model, "gpu_count": mt["gpus"], "vcpus": mt["vcpus"],
                "memory_gib": mt["memory_gib"], "market": market, "price_per_hour": round(price, 6),
                "interruption_band": "", "observed_at": pulled_at,
                "source": "gcp cloudbilling catalog + compute machineTypes",
            })
    progress("gcp catalog", 0, None)
    progress("gcp machine types", 0, None)
    return pd.DataFrame(rows) if rows else empty_table()


def family_gpu(machine_type: str) -> str:
    """GPU model of a machine type's family (`a2-ultragpu-4g` → A100-80GB), or ''."""
    return GPU_FAMILIES.get(machine_type.rsplit("-", 1)[0], "")


def _credentials() -> tuple[Any, str]:
    import google.auth
    from google.auth.credentials import AnonymousCredentials
    from google.auth.exceptions import DefaultCredentialsError

    project = os.environ.get("SPOTPLAN_GCP_PROJECT") or os.environ.get("GOOGLE_CLOUD_PROJECT") or ""
    overridden = os.environ.get("SPOTPLAN_GCP_BILLING_ENDPOINT") or os.environ.get("SPOTPLAN_GCP_COMPUTE_ENDPOINT")
    if overridden and not os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
        # A local endpoint (emulator, proxy) takes no Google auth; also keeps ADC from probing the
        # metadata server.
        creds: Any = AnonymousCredentials()
    else:
        try:
            creds, adc_project = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        except DefaultCredentialsError:
            raise CredentialsError("Google credentials not found", hint=_FIX) from None
        project = project or adc_project or ""
    if not project:
        raise CredentialsError("no GCP project to list machine types in", hint="set GOOGLE_CLOUD_PROJECT")
    return creds, project


def _options(env: str) -> Any:
    from google.api_core.client_options import ClientOptions

    endpoint = os.environ.get(env)
    return ClientOptions(api_endpoint=endpoint) if endpoint else None


def _retryable(exc: BaseException) -> bool:
    from google.api_core import exceptions as gexc

    return isinstance(exc, (gexc.TooManyRequests, gexc.ServiceUnavailable, gexc.InternalServerError,
                            gexc.BadGateway, gexc.GatewayTimeout))


def _translate(exc: BaseException, what: str) -> Exception:
    from google.api_core import exceptions as gexc
    from google.auth.exceptions import GoogleAuthError

    if isinstance(exc, (gexc.Unauthenticated, gexc.PermissionDenied, gexc.Forbidden, GoogleAuthError)):
        return CredentialsError(f"GCP rejected the credentials for {what}: {exc}", hint=_FIX)
    if isinstance(exc, gexc.GoogleAPICallError):
        return CloudError(f"GCP {what} failed: {exc}")
    if isinstance(exc, OSError):
        # The REST transport lets requests' connection errors (OSError subclasses) through unwrapped:
        # an unreachable endpoint is a cloud error (exit 1) with its cause, like AWS's and Azure's.
        return CloudError(f"GCP {what} failed: cannot reach the API: {type(exc).__name__}: {exc}")
    return exc if isinstance(exc, Exception) else CloudError(str(exc))


def _all_pages(fetch: Callable[[str], tuple[list[Any], str]], what: str, progress: Progress, key: str) -> list[Any]:
    """Follow page tokens; each page retries on its own, so a throttled page resumes where it was."""
    out: list[Any] = []
    token = ""
    try:
        while True:
            items, token = with_retries(lambda t=token: fetch(t), _retryable)  # type: ignore[misc]
            out.extend(items)
            progress(key, 1, None)
            if not token:
                return out
    except Exception as exc:
        raise _translate(exc, what) from exc


def _list_skus(creds: Any, progress: Progress) -> list[dict[str, Any]]:
    from google.cloud import billing_v1

    client = billing_v1.CloudCatalogClient(
        credentials=creds, transport="rest", client_options=_options("SPOTPLAN_GCP_BILLING_ENDPOINT")
    )

    def fetch(token: str) -> tuple[list[Any], str]:
        pager = client.list_skus(request={"parent": COMPUTE_SERVICE, "page_token": token, "page_size": 5000},
                                 retry=None)
        page = next(iter(pager.pages))
        return [_sku_dict(s) for s in page.skus], page.next_page_token

    return _all_pages(fetch, "Cloud Billing list_skus", progress, "gcp catalog")


def _sku_dict(s: Any) -> dict[str, Any]:
    rates: list[tuple[float, float]] = []
    unit = ""
    if s.pricing_info:
        expr = s.pricing_info[0].pricing_expression
        unit = expr.usage_unit
        for r in expr.tiered_rates:
            rates.append((float(r.start_usage_amount), int(r.unit_price.units) + r.unit_price.nanos / 1e9))
    return {
        "description": s.description,
        "group": s.category.resource_group,
        "usage": s.category.usage_type,
        "regions": list(s.service_regions),
        "unit": unit,
        # The first tier (from 0) is the list price of an hour.
        "price": min(rates)[1] if rates else None,
    }


def _list_machine_types(creds: Any, project: str, progress: Progress) -> dict[tuple[str, str], dict[str, Any]]:
    from google.cloud import compute_v1

    client = compute_v1.MachineTypesClient(
        credentials=creds, transport="rest", client_options=_options("SPOTPLAN_GCP_COMPUTE_ENDPOINT")
    )

    def fetch(token: str) -> tuple[list[Any], str]:
        pager = client.aggregated_list(request={"project": project, "page_token": token, "max_results": 500},
                                       retry=None)
        page = next(iter(pager.pages))
        items = []
        for scope, scoped in page.items.items():
            for mt in scoped.machine_types:
                items.append((scope, mt))
        return items, page.next_page_token

    out: dict[tuple[str, str], dict[str, Any]] = {}
    for scope, mt in _all_pages(fetch, "Compute machineTypes.aggregatedList", progress, "gcp machine types"):
        if not mt.accelerators:
            continue
        zone = (mt.zone or scope.split("/")[-1]).split("/")[-1]
        region = zone.rsplit("-", 1)[0]
        acc = mt.accelerators[0]
        out[(region, mt.name)] = {
            "vcpus": float(mt.guest_cpus), "memory_gib": mt.memory_mb / 1024.0,
            "accelerator": acc.guest_accelerator_type, "gpus": float(acc.guest_accelerator_count),
        }
    return out


class SkuIndex:
    """Finds the vCPU, RAM and GPU SKUs of a machine type in a region."""

    def __init__(self, skus: list[dict[str, Any]]) -> None:
        self._by_region: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for s in skus:
            if s["price"] is None or _EXCLUDE.search(s["description"]):
                continue
            if s["usage"] not in ("OnDemand", "Preemptible"):
                continue
            for region in s["regions"]:
                self._by_region.setdefault((region, s["usage"]), []).append(s)

    def components(self, name: str, mt: dict[str, Any], region: str, usage: str) -> dict[str, dict[str, Any]] | None:
        """The vCPU ("core"), RAM and GPU SKUs a machine type is priced from; None when one is missing."""
        skus = self._by_region.get((region, usage), [])
        family = name.split("-")[0].upper()
        found: dict[str, dict[str, Any]] = {}
        want_gpu = _tokens(mt["accelerator"])
        for s in skus:
            desc = _PREFIX.sub("", s["description"]).split(" running in ")[0].strip()
            if re.fullmatch(rf"{family} Instance Core", desc, re.I):
                found["core"] = s
            elif re.fullmatch(rf"{family} Instance Ram", desc, re.I):
                found["ram"] = s
            elif s["group"] == "GPU" and _tokens(desc) == want_gpu:
                found["gpu"] = s
        return found if len(found) == 3 else None


def machine_price(parts: dict[str, dict[str, Any]], mt: dict[str, Any]) -> float:
    """vCPUs × core SKU + GiB × RAM SKU + GPUs × GPU SKU (RAM SKUs come per GiB or per TiB hour)."""
    ram = parts["ram"]["price"] * (1024.0 if parts["ram"]["unit"].lower().startswith("tiby") else 1.0)
    return float(mt["vcpus"] * parts["core"]["price"] + mt["memory_gib"] * ram + mt["gpus"] * parts["gpu"]["price"])


def bad_sku(parts: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """A SKU priced negative or not finite: bad catalog data that makes every sum with it wrong,
    even the sums that stay positive."""
    return next((s for s in parts.values() if not 0 <= s["price"] < math.inf), None)


def _tokens(name: str) -> frozenset[str]:
    """`nvidia-a100-80gb` and "Nvidia Tesla A100 80GB GPU" both → {a100, 80gb}."""
    return frozenset(t for t in re.split(r"[\s\-_]+", name.lower()) if t and t not in _GENERIC_TOKENS)
