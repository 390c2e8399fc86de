"""AWS prices through boto3: spot history from EC2 `describe_spot_price_history` (paginated, every
AZ, Linux/UNIX, GPU families), on-demand and shapes from the Price List `get_products` (us-east-1),
interruption bands from the Spot Instance Advisor feed. Also the GPU shape of AWS instance types and
AZ-ID → region mapping, which the importers share.

Endpoints follow boto3's own `AWS_ENDPOINT_URL[_EC2|_PRICING]`; retries use botocore's standard
mode (throttling such as `RequestLimitExceeded` and HTTP 429 back off; `AWS_MAX_ATTEMPTS` tunes it).
"""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta, timezone
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

SPOT_ADVISOR_URL = "https://spot-bid-advisor.s3.amazonaws.com/spot-advisor-data.json"
PRICING_REGION = "us-east-1"

_XL = {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "16xlarge": 1}
#: family → (gpu_model in the shared vocabulary, {size: accelerators per instance}) from AWS's
#: accelerated-computing pages. ec2instances.info calls p4de "A100" (it has the 80 GB part) and
#: trn1 "Inferentia"; this table is what those are corrected against.
GPU_FAMILIES: dict[str, tuple[str, dict[str, float]]] = {
    "p2": ("K80", {"xlarge": 1, "8xlarge": 8, "16xlarge": 16}),
    "p3": ("V100", {"2xlarge": 1, "8xlarge": 4, "16xlarge": 8}),
    "p3dn": ("V100-32GB", {"24xlarge": 8}),
    "p4d": ("A100-40GB", {"24xlarge": 8}),
    "p4de": ("A100-80GB", {"24xlarge": 8}),
    "p5": ("H100", {"4xlarge": 1, "48xlarge": 8}),
    "p5e": ("H200", {"48xlarge": 8}),
    "p5en": ("H200", {"48xlarge": 8}),
    "p6-b200": ("B200", {"48xlarge": 8}),
    "p6-b300": ("B300", {"48xlarge": 8}),
    "g2": ("K520", {"2xlarge": 1, "8xlarge": 4}),
    "g3": ("M60", {"4xlarge": 1, "8xlarge": 2, "16xlarge": 4}),
    "g3s": ("M60", {"xlarge": 1}),
    "g4dn": ("T4", {**_XL, "12xlarge": 4, "metal": 8}),
    "g4ad": ("Radeon Pro V520", {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 2, "16xlarge": 4}),
    "g5": ("A10G", {**_XL, "12xlarge": 4, "24xlarge": 4, "48xlarge": 8}),
    "g5g": ("T4G", {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "16xlarge": 2, "metal": 2}),
    "g6": ("L4", {**_XL, "12xlarge": 4, "24xlarge": 4, "48xlarge": 8}),
    "gr6": ("L4", {"4xlarge": 1, "8xlarge": 1}),
    "g6e": ("L40S", {**_XL, "12xlarge": 4, "24xlarge": 4, "48xlarge": 8}),
    "inf1": ("Inferentia", {"xlarge": 1, "2xlarge": 1, "6xlarge": 4, "24xlarge": 16}),
    "inf2": ("Inferentia2", {"xlarge": 1, "8xlarge": 1, "24xlarge": 6, "48xlarge": 12}),
    "trn1": ("Trainium", {"2xlarge": 1, "32xlarge": 16}),
    "trn1n": ("Trainium", {"32xlarge": 16}),
    "dl1": ("Gaudi", {"24xlarge": 8}),
}

_DIRECTIONS = {
    "e": "east", "w": "west", "n": "north", "s": "south", "c": "central",
    "ne": "northeast", "nw": "northwest", "se": "southeast", "sw": "southwest",
}
_CREDENTIAL_CODES = {
    "AuthFailure", "UnauthorizedOperation", "InvalidClientTokenId", "SignatureDoesNotMatch",
    "AccessDenied", "AccessDeniedException", "ExpiredToken", "ExpiredTokenException",
    "UnrecognizedClientException", "OptInRequired",
}
_CREDENTIAL_HINT = "configure a profile (`aws configure`, AWS_PROFILE) or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"


def gpu_shape(instance_type: str) -> tuple[str, float | None]:
    """(gpu_model, accelerators per instance) of an AWS instance type; ("", None) when not a GPU type."""
    family, _, size = instance_type.partition(".")
    spec = GPU_FAMILIES.get(family)
    if spec is None:
        return "", None
    return spec[0], spec[1].get(size)


def family_patterns(gpu: str | None = None) -> list[str]:
    """`instance-type` filter values (wildcards) for the GPU families, optionally one GPU model."""
    return [f"{fam}.*" for fam, (model, _) in GPU_FAMILIES.items() if gpu_matches(gpu, model)]


def region_of_az_id(az_id: str) -> str:
    """`use1-az4` → `us-east-1`, `apne2-az1` → `ap-northeast-2`, `cac1-az1` → `ca-central-1`."""
    m = re.fullmatch(r"([a-z]{2})([a-z]{1,2})(\d+)-az\d+", az_id.strip())
    if not m or m.group(2) not in _DIRECTIONS:
        raise ValueError(f"not an AWS availability-zone ID: {az_id!r}")
    return f"{m.group(1)}-{_DIRECTIONS[m.group(2)]}-{m.group(3)}"


# ---------------------------------------------------------------------------------------------- pull


def pull(req: PullRequest, progress: Progress = no_progress) -> pd.DataFrame:
    """Spot history + on-demand + bands for every requested region, concurrently across regions."""
    import pandas as pd

    require_extra("boto3", "aws")
    import boto3

    from spotplan.pricing.table import empty_table

    # One session builds every client here, in this thread (sessions are not thread-safe, clients
    # are), so the EC2 service model is loaded once rather than once per region.
    session = boto3.session.Session()
    known = _list_regions(session)
    unknown = [r for r in req.regions if r not in known]
    if unknown:
        raise InputError(f"--region {unknown[0]!r} is not an AWS region (DescribeRegions lists {len(known)}, "
                         f"e.g. {', '.join(known[:4])})")
    regions = req.regions or known
    try:
        bands = _advisor_bands()
    except CloudError as exc:
        # The feed gives bands only: without it the prices are still worth storing.
        req.notes.append(f"aws: {exc}; interruption bands left empty (pull again later, or import the feed "
                         "with `spotplan prices import`)")
        bands = {}
    progress("aws advisor", 1, 1)
    pricing = _client(session, "pricing", PRICING_REGION)  # one endpoint serves every region
    ec2 = {r: _client(session, "ec2", r) for r in regions}
    with ThreadPoolExecutor(max_workers=max(1, min(req.workers, len(regions)))) as pool:
        parts = list(pool.map(lambda r: _pull_region(r, req, bands.get(r, {}), ec2[r], pricing, progress), regions))
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else empty_table()


def _client(session: Any, service: str, region: str) -> Any:
    from botocore.config import Config

    # Standard mode retries throttling (RequestLimitExceeded, 429) with backoff; AWS_MAX_ATTEMPTS
    # still applies because max_attempts is left unset here.
    cfg = Config(retries={"mode": "standard"}, connect_timeout=10, read_timeout=60)
    return session.client(service, region_name=region, config=cfg)


def _translate(exc: BaseException, what: str) -> Exception:
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return CredentialsError(f"AWS credentials not found for {what}", hint=_CREDENTIAL_HINT)
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        msg = exc.response.get("Error", {}).get("Message", "")
        if code in _CREDENTIAL_CODES:
            return CredentialsError(f"AWS rejected the credentials for {what}: {code} {msg}".strip(),
                                    hint=_CREDENTIAL_HINT)
        return CloudError(f"AWS {what} failed: {code} {msg}".strip())
    if isinstance(exc, BotoCoreError):
        return CloudError(f"AWS {what} failed: {exc}")
    return exc if isinstance(exc, Exception) else CloudError(str(exc))


def _list_regions(session: Any) -> list[str]:
    try:
        resp = _client(session, "ec2", os.environ.get("AWS_DEFAULT_REGION") or "us-east-1").describe_regions()
    except Exception as exc:
        raise _translate(exc, "DescribeRegions") from exc
    return sorted(r["RegionName"] for r in resp.get("Regions", []))


def _pull_region(
    region: str, req: PullRequest, bands: dict[str, str], ec2: Any, pricing: Any, progress: Progress
) -> pd.DataFrame:
    import pandas as pd

    key = f"aws {region}"
    spot = _spot_history(ec2, region, req, progress, key)
    types = sorted({r["instance_type"] for r in spot})
    products = _on_demand(pricing, region, types, progress, key) if types else {}
    pulled_at = iso_z(req.now)
    rows: list[dict[str, Any]] = []
    for r in spot:
        r["interruption_band"] = bands.get(r["instance_type"], "")
        rows.append(_with_shape(r, products.get(r["instance_type"])))
    for itype, prod in products.items():
        if prod.get("price") is None:
            continue
        rows.append(_with_shape({
            "provider": "aws", "region": region, "zone": "", "instance_type": itype,
            "market": "on-demand", "price_per_hour": prod["price"], "interruption_band": "",
            "observed_at": pulled_at, "source": "aws pricing get_products",
        }, prod))
    progress(key, 0, None)
    return pd.DataFrame(rows)


def _with_shape(row: dict[str, Any], prod: dict[str, Any] | None) -> dict[str, Any]:
    model, count = gpu_shape(row["instance_type"])
    prod = prod or {}
    row["gpu_model"] = model
    row["gpu_count"] = count if count is not None else prod.get("gpus")
    row["vcpus"] = prod.get("vcpus")
    row["memory_gib"] = prod.get("memory_gib")
    return row


def _spot_history(client: Any, region: str, req: PullRequest, progress: Progress, key: str) -> list[dict[str, Any]]:
    patterns = family_patterns(req.gpu)
    if not patterns:
        return []  # no GPU family of this model; an empty filter would return every instance type
    end = req.now
    start = end - timedelta(days=req.days)
    resume = req.resume_from(region)
    if resume is not None and resume > start:
        # The API also returns the last change before StartTime, so resuming at the newest stored
        # point re-fetches it (deduplicated by the store) and never leaves a gap.
        start = resume
    paginator = client.get_paginator("describe_spot_price_history")
    pages = paginator.paginate(
        StartTime=start,
        EndTime=end,
        ProductDescriptions=["Linux/UNIX"],
        Filters=[{"Name": "instance-type", "Values": patterns}],
        PaginationConfig={"PageSize": 1000},
    )
    out: list[dict[str, Any]] = []
    try:
        for page in pages:
            for item in page.get("SpotPriceHistory", []):
                ts = item["Timestamp"]
                if ts.tzinfo is None:
                    ts = ts.replace(tzinfo=timezone.utc)
                if item.get("AvailabilityZoneId") and item.get("AvailabilityZone"):
                    req.zone_names[item["AvailabilityZoneId"]] = item["AvailabilityZone"]
                out.append({
                    "provider": "aws", "region": region, "zone": item.get("AvailabilityZone", ""),
                    "instance_type": item["InstanceType"], "market": "spot",
                    "price_per_hour": float(item["SpotPrice"]),  # a string on the wire
                    "observed_at": iso_z(ts), "source": "aws ec2 describe_spot_price_history",
                })
            progress(key, 1, None)
    except Exception as exc:
        raise _translate(exc, f"DescribeSpotPriceHistory in {region}") from exc
    return out


def _on_demand(
    client: Any, region: str, types: list[str], progress: Progress, key: str
) -> dict[str, dict[str, Any]]:
    """instance type → {price, vcpus, memory_gib, gpus} from the Price List (Linux, shared, no SW)."""
    paginator = client.get_paginator("get_products")
    base = [
        {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region},
        {"Type": "TERM_MATCH", "Field": "operatingSystem", "Value": "Linux"},
        {"Type": "TERM_MATCH", "Field": "tenancy", "Value": "Shared"},
        {"Type": "TERM_MATCH", "Field": "preInstalledSw", "Value": "NA"},
        {"Type": "TERM_MATCH", "Field": "capacitystatus", "Value": "Used"},
        {"Type": "TERM_MATCH", "Field": "licenseModel", "Value": "No License required"},
    ]
    out: dict[str, dict[str, Any]] = {}
    try:
        for i in range(0, len(types), 50):
            chunk = types[i : i + 50]
            flt = [*base, {"Type": "ANY_OF", "Field": "instanceType", "Value": ",".join(chunk)}]
            for page in paginator.paginate(ServiceCode="AmazonEC2", Filters=flt, FormatVersion="aws_v1",
                                           PaginationConfig={"PageSize": 100}):
                for raw in page.get("PriceList", []):
                    prod = parse_price_list_item(raw)
                    if prod and prod["instance_type"] in chunk:
                        out[prod["instance_type"]] = prod
                progress(key, 1, None)
    except Exception as exc:
        raise _translate(exc, f"pricing GetProducts for {region}") from exc
    return out


def parse_price_list_item(raw: str | dict[str, Any]) -> dict[str, Any] | None:
    """One Price List product (a JSON *string* on the wire) → {instance_type, price, vcpus, memory_gib,
    gpus}; the hourly USD on-demand price, or price None when the product has no hourly term."""
    item = json.loads(raw) if isinstance(raw, str) else raw
    attrs = item.get("product", {}).get("attributes", {})
    itype = attrs.get("instanceType")
    if not itype:
        return None
    price = None
    for term in item.get("terms", {}).get("OnDemand", {}).values():
        for dim in term.get("priceDimensions", {}).values():
            if dim.get("unit") == "Hrs" and "USD" in dim.get("pricePerUnit", {}):
                price = float(dim["pricePerUnit"]["USD"])
    return {
        "instance_type": itype,
        "price": price,
        "vcpus": _num(attrs.get("vcpu")),
        "memory_gib": _num(str(attrs.get("memory", "")).replace("GiB", "").replace(",", "")),
        "gpus": _num(attrs.get("gpu")),
    }


def _num(value: Any) -> float | None:
    try:
        return float(str(value).strip())
    except (TypeError, ValueError):
        return None


def _advisor_bands() -> dict[str, dict[str, str]]:
    """region → instance type → band, Linux, from the Spot Instance Advisor feed."""
    import requests

    from spotplan.pricing.table import one_line

    url = os.environ.get("SPOTPLAN_AWS_SPOT_ADVISOR_URL") or SPOT_ADVISOR_URL

    def fetch() -> dict[str, Any]:
        resp = requests.get(url, timeout=30)
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
        return data

    try:
        feed = with_retries(fetch, http_retryable)
    except Exception as exc:
        raise CloudError(f"the Spot Instance Advisor feed failed ({url}: {one_line(exc)})") from exc
    return advisor_bands(feed)


def advisor_bands(feed: dict[str, Any], os_name: str = "Linux") -> dict[str, dict[str, str]]:
    """Map the advisor's range indexes onto band labels (use the labels: `ranges[].max` disagrees)."""
    labels = {int(r["index"]): str(r["label"]) for r in feed.get("ranges") or []}
    out: dict[str, dict[str, str]] = {}
    for region, by_os in (feed.get("spot_advisor") or {}).items():
        for itype, v in (by_os.get(os_name) or {}).items():
            out.setdefault(region, {})[itype] = labels.get(int(v.get("r", -1)), "")
    return out
