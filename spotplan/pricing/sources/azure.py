"""Azure prices: the public Retail Prices API (`Virtual Machines`, regular and Spot meters of the GPU
N-series, `NextPageLink` paging, no auth) and, when credentials allow, Resource Graph `SpotResources`
(azure-mgmt-resourcegraph) for eviction-rate buckets and the ~90-day spot price history. Also the GPU
shape of Azure VM sizes, which the SkyPilot importer uses to correct its source's known errors.

Endpoints: SPOTPLAN_AZURE_RETAIL_PRICES_URL, SPOTPLAN_AZURE_ARM_ENDPOINT; credentials:
SPOTPLAN_AZURE_TOKEN (a static bearer token) or DefaultAzureCredential, with AZURE_SUBSCRIPTION_ID;
REQUESTS_CA_BUNDLE for a private CA.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from spotplan.errors import CloudError, CredentialsError, InputError, require_extra
from spotplan.gpus import gpu_matches
from spotplan.pricing.sources import (
    Progress,
    PullRequest,
    http_retryable,
    no_progress,
    with_retries,
)
from spotplan.times import iso_z

if TYPE_CHECKING:
    import pandas as pd

RETAIL_URL = "https://prices.azure.com/api/retail/prices"
ARM_URL = "https://management.azure.com"
_FIX = "run `az login` (DefaultAzureCredential) and set AZURE_SUBSCRIPTION_ID, or SPOTPLAN_AZURE_TOKEN"
#: Resource Graph eviction buckets → the price table's bands.
EVICTION_BANDS = {"0-5": "<5%", "5-10": "5-10%", "10-15": "10-15%", "15-20": "15-20%", "20+": ">20%"}

#: armSkuName → (gpu_model, GPUs per VM), from Azure's GPU VM size pages. SkyPilot's catalog says
#: ND96isr_H100_v5 has 12 GPUs (it has 8); this table is what such rows are corrected against.
GPU_SKUS: dict[str, tuple[str, float]] = {
    **{f"Standard_NC{n}ads_A100_v4": ("A100-80GB", n / 24) for n in (24, 48, 96)},
    "Standard_ND96asr_v4": ("A100-40GB", 8),
    "Standard_ND96amsr_A100_v4": ("A100-80GB", 8),
    "Standard_ND96isr_H100_v5": ("H100", 8),
    "Standard_NC40ads_H100_v5": ("H100", 1),
    "Standard_NC80adis_H100_v5": ("H100", 2),
    "Standard_NCC40ads_H100_v5": ("H100", 1),
    "Standard_ND96isr_H200_v5": ("H200", 8),
    "Standard_NC4as_T4_v3": ("T4", 1),
    "Standard_NC8as_T4_v3": ("T4", 1),
    "Standard_NC16as_T4_v3": ("T4", 1),
    "Standard_NC64as_T4_v3": ("T4", 4),
    "Standard_NC6s_v3": ("V100", 1),
    "Standard_NC12s_v3": ("V100", 2),
    "Standard_NC24s_v3": ("V100", 4),
    "Standard_NC24rs_v3": ("V100", 4),
    "Standard_ND40rs_v2": ("V100-32GB", 8),
    "Standard_NC8ads_A10_v4": ("A10", 1 / 3),
    "Standard_NC16ads_A10_v4": ("A10", 2 / 3),
    "Standard_NC32ads_A10_v4": ("A10", 4 / 3),
    "Standard_NV36ads_A10_v5": ("A10", 1),
    "Standard_NV36adms_A10_v5": ("A10", 1),
    "Standard_NV72ads_A10_v5": ("A10", 2),
    "Standard_NC6": ("K80", 1),
    "Standard_NC12": ("K80", 2),
    "Standard_NC24": ("K80", 4),
    "Standard_NC24r": ("K80", 4),
    "Standard_NV6": ("M60", 1),
    "Standard_NV12": ("M60", 2),
    "Standard_NV24": ("M60", 4),
    "Standard_NV12s_v3": ("M60", 1),
    "Standard_NV24s_v3": ("M60", 2),
    "Standard_NV48s_v3": ("M60", 4),
    # AMD partitions: NVv4 slices one MI25 into 8, NGads V620 one V620 into 4.
    "Standard_NV4as_v4": ("Radeon MI25", 1 / 8),
    "Standard_NV8as_v4": ("Radeon MI25", 1 / 4),
    "Standard_NV16as_v4": ("Radeon MI25", 1 / 2),
    "Standard_NV32as_v4": ("Radeon MI25", 1),
    "Standard_NG8ads_V620_v1": ("Radeon Pro V620", 1 / 4),
    "Standard_NG16ads_V620_v1": ("Radeon Pro V620", 1 / 2),
    "Standard_NG32ads_V620_v1": ("Radeon Pro V620", 1),
}


def gpu_shape(sku: str) -> tuple[str, float | None]:
    """(gpu_model, GPUs per VM) of an Azure VM size; a best-effort model and None when not listed."""
    base = sku.removesuffix("_Promo")
    if base in GPU_SKUS:
        return GPU_SKUS[base]
    from spotplan.gpus import VOCABULARY, normalize_gpu_model

    for part in base.split("_")[1:]:
        model = normalize_gpu_model(part)
        if model in VOCABULARY:
            return model, None
    return "", None


def retail_currency(item: dict[str, Any]) -> str:
    """The item's currency; the API's default (and an item that names none) is USD."""
    return str(item.get("currencyCode", "USD") or "").strip().upper()


def parse_retail_item(item: dict[str, Any]) -> dict[str, Any] | None:
    """One Retail Prices item → a price-table row, or None for what a Linux VM hour is not: Windows,
    Low Priority, reservations / dev-test, non-hourly units."""
    if item.get("type", "Consumption") != "Consumption" or item.get("unitOfMeasure", "1 Hour") != "1 Hour":
        return None
    if item.get("serviceName", "Virtual Machines") != "Virtual Machines":
        return None
    sku_name = str(item.get("skuName", ""))
    if str(item.get("productName", "")).endswith("Windows") or "Low Priority" in sku_name:
        return None
    arm = str(item.get("armSkuName", ""))
    if not arm:
        return None
    model, count = gpu_shape(arm)
    return {
        "provider": "azure", "region": item.get("armRegionName", ""), "zone": "", "instance_type": arm,
        "gpu_model": model, "gpu_count": count, "vcpus": _vcpus(arm), "memory_gib": None,
        "market": "spot" if sku_name.endswith(" Spot") else "on-demand",
        "price_per_hour": float(item.get("retailPrice", item.get("unitPrice", "nan"))),  # a JSON number
        "interruption_band": "", "observed_at": "", "source": "azure retail prices",
    }


def _vcpus(sku: str) -> float | None:
    m = re.match(r"Standard_[A-Z]+?(\d+)", sku)
    return float(m.group(1)) if m else None


def pull(req: PullRequest, progress: Progress = no_progress) -> pd.DataFrame:
    import pandas as pd

    from spotplan.pricing.table import empty_table

    pulled_at = iso_z(req.now)
    regions: list[str | None] = list(req.regions) or [None]
    with ThreadPoolExecutor(max_workers=max(1, min(req.workers, len(regions)))) as pool:
        parts = list(pool.map(lambda r: _retail(r, progress, req.notes), regions))
    for region, part in zip(regions, parts):
        if region is not None and part is None:
            # The API answers an unknown armRegionName with an empty page, like a region without
            # N-series: either way nothing here is what the user asked for.
            raise InputError(f"--region {region!r}: the Azure Retail Prices API lists no GPU (N-series) VM "
                             "prices there", hint="check the name, e.g. eastus, westeurope, southcentralus")
    rows = [r for part in parts for r in part or []]
    for r in rows:
        r["observed_at"] = pulled_at
    rows = [r for r in rows if gpu_matches(req.gpu, r["gpu_model"])]
    df = pd.DataFrame(rows) if rows else empty_table()
    graph = _resource_graph(sorted({r["region"] for r in rows}), req, progress)
    if graph is not None and not df.empty:
        bands, history = graph
        keys = df["instance_type"].str.lower() + "|" + df["region"].str.lower()
        df["interruption_band"] = [bands.get(k, "") if m == "spot" else "" for k, m in zip(keys, df["market"])]
        shapes = df.drop_duplicates(["instance_type", "region"]).set_index(["instance_type", "region"])
        # Resource Graph lower-cases size names; the table keeps the ARM spelling of the retail rows.
        spelling = {str(t).lower(): str(t) for t in df["instance_type"]}
        extra = []
        for h in history:
            h["instance_type"] = spelling.get(h["instance_type"].lower(), h["instance_type"])
            key = (h["instance_type"], h["region"])
            if key in shapes.index and gpu_matches(req.gpu, str(shapes.loc[key, "gpu_model"])):
                s = shapes.loc[key]
                extra.append({**h, "gpu_model": s["gpu_model"], "gpu_count": s["gpu_count"], "vcpus": s["vcpus"],
                              "interruption_band": bands.get(f"{key[0].lower()}|{key[1].lower()}", "")})
        if extra:
            df = pd.concat([df, pd.DataFrame(extra)], ignore_index=True)
    return df


def _retail(region: str | None, progress: Progress, notes: list[str]) -> list[dict[str, Any]] | None:
    """The region's Linux VM-hour rows; None when the API has no item at all for it."""
    import requests

    base = os.environ.get("SPOTPLAN_AZURE_RETAIL_PRICES_URL") or RETAIL_URL
    flt = "serviceName eq 'Virtual Machines' and priceType eq 'Consumption' and contains(armSkuName, 'Standard_N')"
    if region:
        flt += f" and armRegionName eq '{region}'"
    url: str | None = base
    params: dict[str, str] | None = {"api-version": "2023-01-01-preview", "$filter": flt}
    key = f"azure {region or 'all regions'}"
    out: list[dict[str, Any]] = []
    seen = 0
    other_currency: dict[str, int] = {}
    session = requests.Session()
    while url:

        def fetch(u: str = url, p: dict[str, str] | None = params) -> dict[str, Any]:
            resp = session.get(u, params=p, timeout=60)
            resp.raise_for_status()
            page: dict[str, Any] = resp.json()
            return page

        try:
            page = with_retries(fetch, http_retryable)
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status in (401, 403):
                raise CredentialsError(f"Azure Retail Prices API ({region or 'all regions'}) answered {status}: "
                                       "access denied", hint="check a proxy or SPOTPLAN_AZURE_RETAIL_PRICES_URL "
                                       "(the API itself needs no credentials)") from exc
            raise CloudError(f"Azure Retail Prices API ({region or 'all regions'}): {exc}") from exc
        except requests.RequestException as exc:
            raise CloudError(f"Azure Retail Prices API ({region or 'all regions'}): {exc}") from exc
        for item in page.get("Items", []):
            seen += 1
            currency = retail_currency(item)
            if currency != "USD":  # the table holds USD (§4.2); never store another currency as USD
                other_currency[currency] = other_currency.get(currency, 0) + 1
                continue
            row = parse_retail_item(item)
            if row is not None:
                out.append(row)
        progress(key, 1, None)
        # NextPageLink already carries the filter: follow it verbatim, send no params again.
        url, params = page.get("NextPageLink"), None
    progress(key, 0, None)
    for currency, n in sorted(other_currency.items()):
        notes.append(f"azure {region or 'all regions'}: {n} retail prices in {currency or 'no currency'} left out "
                     "(the price table holds USD)")
    return out if seen else None


def _one_line(exc: Any) -> str:
    """azure-core's message spans lines ("(Code) text\\nCode: ...\\nMessage: ..."); §3 wants one line:
    its first line carries the code and the text."""
    lines = [line.strip() for line in str(getattr(exc, "message", None) or exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


class _StaticToken:
    """A TokenCredential for a bearer token given in SPOTPLAN_AZURE_TOKEN."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken(self._token, 2**31 - 1)


def _resource_graph(
    regions: list[str], req: PullRequest, progress: Progress
) -> tuple[dict[str, str], list[dict[str, Any]]] | None:
    """Eviction buckets (sku|region → band) and spot price points from Resource Graph, or None when
    no subscription is configured (the retail prices still stand)."""
    sub = os.environ.get("AZURE_SUBSCRIPTION_ID")
    token = os.environ.get("SPOTPLAN_AZURE_TOKEN")
    if not sub or not regions:
        if not sub:
            req.notes.append("azure: AZURE_SUBSCRIPTION_ID not set; Resource Graph eviction rates and spot "
                             "history skipped (retail prices only)")
        return None
    require_extra("azure.mgmt.resourcegraph", "azure")
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
    from azure.mgmt.resourcegraph import ResourceGraphClient
    from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

    cred: Any
    if token:
        cred = _StaticToken(token)
    else:
        require_extra("azure.identity", "azure")
        from azure.identity import DefaultAzureCredential

        cred = DefaultAzureCredential()
    verify: Any = os.environ.get("REQUESTS_CA_BUNDLE") or True
    client = ResourceGraphClient(cred, base_url=os.environ.get("SPOTPLAN_AZURE_ARM_ENDPOINT") or ARM_URL,
                                 connection_verify=verify)
    where = "| where location in~ (" + ", ".join(f"'{r}'" for r in regions) + ") "
    queries = {
        "evictions": "SpotResources | where type =~ 'microsoft.compute/skuspotevictionrate/location' "
        + where + "| where sku.name startswith 'standard_n' "
        "| project skuName = tostring(sku.name), location, spotEvictionRate = tostring(properties.evictionRate)",
        "prices": "SpotResources | where type =~ 'microsoft.compute/skuspotpricehistory/ostype/location' "
        + where + "| where sku.name startswith 'standard_n' | where properties.osType =~ 'linux' "
        "| project skuName = tostring(sku.name), osType = tostring(properties.osType), location, "
        "spotPrices = properties.spotPrices",
    }

    def retryable(exc: BaseException) -> bool:
        return isinstance(exc, HttpResponseError) and exc.status_code in (429, 500, 502, 503, 504)

    def run(query: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        skip: str | None = None
        while True:
            opts = QueryRequestOptions(result_format="objectArray", skip_token=skip)
            resp = with_retries(lambda o=opts: client.resources(  # type: ignore[misc]
                QueryRequest(subscriptions=[sub], query=query, options=o)), retryable)
            data: Any = resp.data or []  # objectArray: a list of dicts
            rows.extend(data)
            progress("azure resource graph", 1, None)
            skip = resp.skip_token
            if not skip:
                return rows

    try:
        evictions = run(queries["evictions"])
        prices = run(queries["prices"])
        progress("azure resource graph", 0, None)
    except ClientAuthenticationError as exc:
        raise CredentialsError(f"Azure rejected the credentials for Resource Graph: {_one_line(exc)}",
                               hint=_FIX) from exc
    except HttpResponseError as exc:
        if exc.status_code in (401, 403):
            raise CredentialsError(f"Azure Resource Graph: {_one_line(exc)}", hint=_FIX) from exc
        raise CloudError(f"Azure Resource Graph query failed: {_one_line(exc)}") from exc
    bands = {f"{r['skuName'].lower()}|{r['location'].lower()}": EVICTION_BANDS.get(str(r.get("spotEvictionRate")), "")
             for r in evictions}
    history: list[dict[str, Any]] = []
    start = req.now.timestamp() - req.days * 86400
    import pandas as pd

    for r in prices:
        for point in r.get("spotPrices") or []:
            # The timestamp key is undocumented: effectiveDate seen in scripts, dateTime in one tool.
            when = point.get("effectiveDate") or point.get("dateTime")
            if when is None or point.get("priceUSD") is None:
                continue
            ts = pd.Timestamp(when)
            if ts.tzinfo is None:
                ts = ts.tz_localize("UTC")
            if ts.timestamp() < start:
                continue
            history.append({"provider": "azure", "region": r["location"], "zone": "",
                            "instance_type": r["skuName"], "market": "spot",
                            "price_per_hour": float(point["priceUSD"]),
                            "observed_at": iso_z(ts.to_pydatetime()), "source": "azure resource graph SpotResources"})
    return bands, history
