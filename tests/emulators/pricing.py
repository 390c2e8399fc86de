"""Local emulators of the pricing APIs spotplan pulls from, speaking the real wire formats of
`../shared/reference/providers.md` so the real SDK clients can talk to them on 127.0.0.1:

- EC2 query API (form POST, XML 2016-11-15): DescribeSpotPriceHistory (paging, StartTime semantics:
  the last change before StartTime is included, wildcard `instance-type` filters), DescribeRegions.
- AWS Price List GetProducts (JSON 1.1, `PriceList` of JSON *strings*, TERM_MATCH/ANY_OF filters).
- The Spot Instance Advisor feed (GET JSON).
- GCP Cloud Billing Catalog `services/6F81-5844-456A/skus` (units as int64 strings, pageToken) and
  Compute `aggregated/machineTypes`.
- Azure Retail Prices (OData `$filter` subset, `NextPageLink` that carries the filter, null at the end)
  and Resource Graph `SpotResources` (bearer token checked, objectArray, `resultTruncated` string).

Responses are built from the real data in ../shared/data where it fits: the AWS price-history capture
(timestamps shifted so the newest point is one hour old), ec2instances.info on-demand prices, the
2025-06-28 advisor feed, Cyclenerd's GCP prices and SkyPilot's Azure catalog. Resource Graph
eviction buckets and spot-price histories have no public capture: they are generated from the Azure
spot prices (flagged as such). Faults (throttling, a page that always fails) are switched on per
service by the tests.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import re
import ssl
import threading
import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlparse

EC2_NS = "http://ec2.amazonaws.com/doc/2016-11-15/"
GCP_COMPUTE_SERVICE = "6F81-5844-456A"
ADVISOR_PATH = "/spot-advisor-data.json"
ARG_TOKEN = "test-arm-token"
PROJECT = "spotplan-test"

_DIR = {"east": "e", "west": "w", "north": "n", "south": "s", "central": "c", "northeast": "ne",
        "northwest": "nw", "southeast": "se", "southwest": "sw"}


def _iso_z(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def region_of_az_id(az_id: str) -> tuple[str, str]:
    """use1-az4 → (us-east-1, us-east-1d): the emulator's fixed AZ-ID → name mapping."""
    m = re.fullmatch(r"([a-z]{2})([a-z]{1,2})(\d+)-az(\d+)", az_id)
    assert m, az_id
    inv = {v: k for k, v in _DIR.items()}
    region = f"{m.group(1)}-{inv[m.group(2)]}-{m.group(3)}"
    return region, region + "abcdefgh"[int(m.group(4)) - 1]


class PricingData:
    """Everything the emulators answer with; tests may add points or faults between pulls."""

    def __init__(self, shared_data: Path | None, now: datetime | None = None) -> None:
        self.now = now or datetime.now(timezone.utc).replace(microsecond=0)
        self.spot: list[dict[str, Any]] = []  # {region, zone, az_id, type, product, price: str, ts}
        self.products: list[dict[str, Any]] = []  # full Price List items (dicts; served as strings)
        self.advisor: dict[str, Any] = {"instance_types": {}, "ranges": [], "spot_advisor": {}, "global_rate": "<10%"}
        self.gcp_skus: list[dict[str, Any]] = []
        self.gcp_machine_types: dict[str, list[dict[str, Any]]] = defaultdict(list)  # zone → types
        self.azure_items: list[dict[str, Any]] = []
        self.arg_eviction: list[dict[str, Any]] = []
        self.arg_prices: list[dict[str, Any]] = []
        self.time_shift = timedelta(0)
        self.lock = threading.Lock()
        # Faults: service → how many next requests to throttle; service → page index that always fails.
        self.throttle: dict[str, int] = defaultdict(int)
        self.fail_page: dict[str, int] = {}
        #: Services that answer 403 Access Denied to every request (a proxy or bucket policy says no).
        self.deny: set[str] = set()
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.page_size = {"ec2": 200, "pricing": 100, "gcp_billing": 300, "gcp_compute": 40, "azure": 100}
        if shared_data is not None:
            self._load(shared_data)

    # -- building from the real data -------------------------------------------------------------
    def _load(self, root: Path) -> None:
        self._load_spot(root / "ericpauley-aws-spot-price-history/prices/2022/05_gpu_subset.tsv")
        self._load_products(root / "ec2instances-info-gpu/aws_gpu_prices_by_region.csv")
        self.advisor = json.loads((root / "aws-spot-advisor/2025-06-28/spot-advisor-data.json").read_text())
        self._load_gcp(root / "cyclenerd-gcp-pricing/gcp_gpu_latest.csv")
        self._load_azure(root / "skypilot-catalog/catalogs/v6/azure/vms_gpu_subset.csv")

    def _load_spot(self, path: Path) -> None:
        rows = []
        with open(path, newline="") as fh:
            for az_id, itype, product, price, ts in csv.reader(fh, delimiter="\t"):
                region, zone = region_of_az_id(az_id)
                rows.append({"region": region, "zone": zone, "az_id": az_id, "type": itype, "product": product,
                             "price": price, "ts": datetime.fromisoformat(ts)})
        newest = max(r["ts"] for r in rows)
        # Shift the 2022 capture so its newest point is one hour old: real values, recent times.
        self.time_shift = (self.now - timedelta(hours=1)) - newest
        for r in rows:
            r["ts"] = r["ts"] + self.time_shift
        self.spot = rows

    def add_spot_point(self, region: str, zone: str, itype: str, price: str, ts: datetime) -> None:
        with self.lock:
            self.spot.append({"region": region, "zone": zone, "az_id": "", "type": itype,
                              "product": "Linux/UNIX", "price": price, "ts": ts})

    def _load_products(self, path: Path) -> None:
        with open(path, newline="") as fh:
            for r in csv.DictReader(fh):
                if not r["ondemand_linux"]:
                    continue
                attrs = {
                    "instanceType": r["instance_type"], "regionCode": r["region"], "vcpu": r["vcpus"],
                    "memory": f"{float(r['memory_gib']):g} GiB", "gpu": r["gpu_count"].split(".")[0],
                    "operatingSystem": "Linux", "tenancy": "Shared", "preInstalledSw": "NA",
                    "capacitystatus": "Used", "licenseModel": "No License required",
                    "marketoption": "OnDemand", "operation": "RunInstances", "servicecode": "AmazonEC2",
                }
                self.products.append(self._product(attrs, float(r["ondemand_linux"])))
                # Decoys the filters must exclude: a Windows product and a reservation-capacity one.
                self.products.append(self._product({**attrs, "operatingSystem": "Windows"},
                                                   float(r["ondemand_linux"]) + 1.0))
                self.products.append(self._product({**attrs, "capacitystatus": "UnusedCapacityReservation"},
                                                   float(r["ondemand_linux"]) * 2))

    @staticmethod
    def _product(attrs: dict[str, str], usd: float) -> dict[str, Any]:
        sku = uuid.uuid4().hex[:16].upper()
        term = f"{sku}.JRTCKXETXF"
        return {
            "product": {"productFamily": "Compute Instance", "attributes": attrs, "sku": sku},
            "serviceCode": "AmazonEC2",
            "terms": {"OnDemand": {term: {
                "priceDimensions": {f"{term}.6YS6EN2CT7": {
                    "unit": "Hrs", "endRange": "Inf", "beginRange": "0", "appliesTo": [],
                    "rateCode": f"{term}.6YS6EN2CT7", "description": "On Demand Linux",
                    "pricePerUnit": {"USD": f"{usd:.10f}"}}},
                "sku": sku, "effectiveDate": "2025-11-01T00:00:00Z", "offerTermCode": "JRTCKXETXF",
                "termAttributes": {}}}},
            "version": "20251101000000", "publicationDate": "2025-11-01T00:00:00Z",
        }

    # GCP list prices of the vCPU/RAM components (us-central1, 2025); the GPU SKU absorbs the rest so
    # that the smallest machine type of each family (fewest GPUs, then fewest vCPUs) totals exactly
    # Cyclenerd's real $/h. Catalog list prices are never negative (providers.md B11): the GPU share
    # must stay positive, which a bigger shape's vCPUs and RAM at us-central1 rates can exceed
    # (g2-standard-12 spot in europe-north1: $0.109/h in total, $0.175/h of vCPUs and RAM).
    GCP_CORE = {"OnDemand": 0.031611, "Preemptible": 0.0094833}
    GCP_RAM = {"OnDemand": 0.004237, "Preemptible": 0.0012711}
    GCP_ACCEL = {"a100": "nvidia-tesla-a100", "a100-80gb": "nvidia-a100-80gb", "h100-80gb": "nvidia-h100-80gb",
                 "h100-80gb-mega": "nvidia-h100-mega-80gb", "l4": "nvidia-l4", "rtx6000": "nvidia-rtx-pro-6000"}
    GCP_GPU_DESC = {"a100": "Nvidia Tesla A100 GPU", "a100-80gb": "Nvidia Tesla A100 80GB GPU",
                    "h100-80gb": "Nvidia H100 80GB GPU", "h100-80gb-mega": "Nvidia H100 80GB Mega GPU",
                    "l4": "Nvidia L4 GPU", "rtx6000": "Nvidia RTX PRO 6000 GPU"}

    def _load_gcp(self, path: Path) -> None:
        with open(path, newline="") as fh:
            # Fractional-GPU shapes have no per-GPU SKU arithmetic that fits; leave them out.
            rows = [r for r in csv.DictReader(fh) if float(r["gpu_count"]).is_integer()]
        def size(r: dict[str, str]) -> tuple[float, float]:
            return float(r["gpu_count"]), float(r["vcpus"])

        smallest: dict[tuple[str, str, str], dict[str, str]] = {}
        for r in rows:
            fam = r["machine_type"].split("-")[0]
            key = (fam, r["gpu_name"], r["region"])
            if key not in smallest or size(r) < size(smallest[key]):
                smallest[key] = r
        families_regions: set[tuple[str, str]] = set()
        for (fam, gpu, region), r in sorted(smallest.items()):
            families_regions.add((fam, region))
            for usage, col in (("OnDemand", "hour"), ("Preemptible", "hour_spot")):
                if not r[col]:
                    continue
                rest = float(r["vcpus"]) * self.GCP_CORE[usage] + float(r["ram_gib"]) * self.GCP_RAM[usage]
                per_gpu = (float(r[col]) - rest) / float(r["gpu_count"])
                assert per_gpu > 0, (fam, gpu, region, usage, per_gpu)  # see GCP_CORE above
                self.gcp_skus.append(self._sku(self.GCP_GPU_DESC[gpu], "GPU", usage, region, per_gpu, "h"))
        for fam, region in sorted(families_regions):
            for usage in ("OnDemand", "Preemptible"):
                self.gcp_skus.append(self._sku(f"{fam.upper()} Instance Core", "CPU", usage, region,
                                               self.GCP_CORE[usage], "h"))
                self.gcp_skus.append(self._sku(f"{fam.upper()} Instance Ram", "RAM", usage, region,
                                               self.GCP_RAM[usage], "GiBy.h"))
        # Decoys: a commitment SKU and a non-GPU family.
        self.gcp_skus.append(self._sku("Commitment v1: A2 Cpu", "CPU", "Commit1Yr", "us-central1", 0.02, "h"))
        self.gcp_skus.append(self._sku("N2 Instance Core", "CPU", "OnDemand", "us-central1", 0.031611, "h"))
        for r in rows:
            for suffix in ("a", "b"):
                zone = f"{r['region']}-{suffix}"
                self.gcp_machine_types[zone].append({
                    "kind": "compute#machineType", "id": str(abs(hash((zone, r["machine_type"]))) % 10**12),
                    "name": r["machine_type"], "description": f"{r['vcpus']} vCPUs",
                    "guestCpus": int(r["vcpus"]), "memoryMb": int(float(r["ram_gib"]) * 1024),
                    "zone": zone, "isSharedCpu": False,
                    "accelerators": [{"guestAcceleratorType": self.GCP_ACCEL[r["gpu_name"]],
                                      "guestAcceleratorCount": int(r["gpu_count"])}],
                    "selfLink": f"https://www.googleapis.com/compute/v1/projects/{PROJECT}/zones/{zone}/"
                                f"machineTypes/{r['machine_type']}",
                })
        for zone in list(self.gcp_machine_types)[:3]:
            self.gcp_machine_types[zone].append({"kind": "compute#machineType", "name": "n2-standard-4",
                                                 "guestCpus": 4, "memoryMb": 16384, "zone": zone})

    def set_gcp_sku_price(self, desc: str, usage: str, region: str, price: float) -> None:
        """Bad upstream data on demand: reprice the SKU `desc` (e.g. "Nvidia L4 GPU") of one region."""
        with self.lock:
            for i, sku in enumerate(self.gcp_skus):
                same = (sku["category"]["usageType"] == usage and sku["serviceRegions"] == [region]
                        and sku["description"].endswith(f"{desc} running in {region}"))
                if same:
                    self.gcp_skus[i] = self._sku(desc, sku["category"]["resourceGroup"], usage, region, price,
                                                 sku["pricingInfo"][0]["pricingExpression"]["usageUnit"])
                    return
        raise KeyError((desc, usage, region))

    def _sku(self, desc: str, group: str, usage: str, region: str, price: float, unit: str) -> dict[str, Any]:
        prefix = {"OnDemand": "", "Preemptible": "Spot Preemptible "}.get(usage, "")
        sku_id = uuid.uuid4().hex[:12].upper()
        units = int(price)
        nanos = int(round((price - units) * 1e9))
        return {
            "name": f"services/{GCP_COMPUTE_SERVICE}/skus/{sku_id}", "skuId": sku_id,
            "description": f"{prefix}{desc} running in {region}",
            "category": {"serviceDisplayName": "Compute Engine", "resourceFamily": "Compute",
                         "resourceGroup": group, "usageType": usage},
            "serviceRegions": [region],
            "pricingInfo": [{"summary": "", "pricingExpression": {
                "usageUnit": unit, "usageUnitDescription": "hour", "baseUnit": "s", "baseUnitDescription": "second",
                "baseUnitConversionFactor": 3600, "displayQuantity": 1,
                "tieredRates": [{"startUsageAmount": 0,
                                 "unitPrice": {"currencyCode": "USD", "units": str(units), "nanos": nanos}}]},
                "currencyConversionRate": 1, "effectiveTime": "2026-07-01T00:00:00Z"}],
            "serviceProviderName": "Google", "geoTaxonomy": {"type": "REGIONAL", "regions": [region]},
        }

    def _load_azure(self, path: Path) -> None:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        for r in rows:
            if not r["Price"]:
                continue  # SkyPilot's *_Promo rows carry no price
            sku = r["InstanceType"]
            short = sku.removeprefix("Standard_").replace("_", " ")
            series = re.sub(r"\d+", "", short.split(" ")[0])
            product = f"Virtual Machines {series} {' '.join(short.split(' ')[1:])} Series".replace("  ", " ")
            base = {"currencyCode": "USD", "tierMinimumUnits": 0.0, "armRegionName": r["Region"],
                    "location": r["Region"], "effectiveStartDate": "2024-01-01T00:00:00Z",
                    "productId": "DZH318Z0BQ4L", "serviceName": "Virtual Machines", "serviceId": "DZH313Z7MMC8",
                    "serviceFamily": "Compute", "unitOfMeasure": "1 Hour", "type": "Consumption",
                    "isPrimaryMeterRegion": True, "armSkuName": sku, "productName": product}
            price = float(r["Price"])
            self._azure_item(base, short, price)
            # SkyPilot's H100 v5 rows have SpotPrice == Price, which is not a spot price: leave it out.
            if r["SpotPrice"] and float(r["SpotPrice"]) != price:
                spot = float(r["SpotPrice"])
                self._azure_item(base, f"{short} Spot", spot)
                # No public capture of SpotResources exists; derive a bucket and a 3-point history.
                bucket = ["0-5", "5-10", "10-15", "15-20", "20+"][int(spot * 1000) % 5]
                self.arg_eviction.append({"skuName": sku.lower(), "location": r["Region"], "spotEvictionRate": bucket})
                self.arg_prices.append({"skuName": sku.lower(), "osType": "linux", "location": r["Region"],
                                        "spotPrices": [
                                            {"effectiveDate": _iso_z(self.now - timedelta(days=2)), "priceUSD": spot},
                                            {"effectiveDate": _iso_z(self.now - timedelta(days=20)),
                                             "priceUSD": round(spot * 1.1, 5)},
                                            {"effectiveDate": _iso_z(self.now - timedelta(days=60)),
                                             "priceUSD": round(spot * 0.9, 5)}]})
            self._azure_item(base, f"{short} Low Priority", price * 0.2)
            self._azure_item({**base, "productName": product + " Windows"}, short, price * 1.4)
            self._azure_item({**base, "type": "DevTestConsumption"}, short, price * 0.9)

    def _azure_item(self, base: dict[str, Any], sku_name: str, price: float) -> None:
        self.azure_items.append({**base, "retailPrice": price, "unitPrice": price, "skuName": sku_name,
                                 "meterName": sku_name, "meterId": str(uuid.uuid4()),
                                 "skuId": f"DZH318Z0BQ4L/{uuid.uuid4().hex[:4].upper()}"})

    # -- fault switches ----------------------------------------------------------------------------
    def take_fault(self, service: str, page: int) -> str | None:
        with self.lock:
            self.requests.append((service, {"page": page}))
            if service in self.deny:
                return "deny"
            if self.throttle[service] > 0:
                self.throttle[service] -= 1
                return "throttle"
            if self.fail_page.get(service) == page:
                return "fail"
        return None

    def count(self, service: str) -> int:
        return sum(1 for s, _ in self.requests if s == service)


# ------------------------------------------------------------------------------------ the handler


def _make_handler(data: PricingData) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def _send(self, status: int, body: bytes | str, ctype: str, headers: dict[str, str] | None = None) -> None:
            raw = body.encode() if isinstance(body, str) else body
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(raw)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(raw)

        def _json(self, status: int, obj: Any, ctype: str = "application/json") -> None:
            self._send(status, json.dumps(obj), ctype)

        def _body(self) -> bytes:
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        # -------------------------------------------------------------- routing
        def do_GET(self) -> None:
            url = urlparse(self.path)
            q = parse_qs(url.query)
            if url.path == ADVISOR_PATH:
                fault = data.take_fault("advisor", 0)
                if fault == "throttle":
                    return self._send(429, "Slow Down", "text/plain")
                if fault == "deny":  # what S3 answers a bucket policy that refuses the caller
                    return self._send(403, "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>",
                                      "application/xml")
                return self._json(200, data.advisor)
            if url.path == f"/v1/services/{GCP_COMPUTE_SERVICE}/skus":
                return self._gcp_skus(q)
            m = re.fullmatch(r"/compute/v1/projects/([^/]+)/aggregated/machineTypes", url.path)
            if m:
                return self._gcp_machine_types(q)
            if url.path == "/api/retail/prices":
                return self._azure_retail(q)
            self._send(404, "not found", "text/plain")

        def do_POST(self) -> None:
            url = urlparse(self.path)
            body = self._body()
            if url.path == "/providers/Microsoft.ResourceGraph/resources":
                return self._arg(body)
            target = self.headers.get("X-Amz-Target", "")
            if target == "AWSPriceListService.GetProducts":
                return self._get_products(json.loads(body or b"{}"))
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            region = self._aws_region()
            if form.get("Action") == "DescribeSpotPriceHistory":
                return self._spot_history(form, region)
            if form.get("Action") == "DescribeRegions":
                regions = sorted({r["region"] for r in data.spot})
                items = "".join(f"<item><regionName>{r}</regionName><regionEndpoint>ec2.{r}.amazonaws.com"
                                f"</regionEndpoint><optInStatus>opt-in-not-required</optInStatus></item>"
                                for r in regions)
                return self._send(200, f'<DescribeRegionsResponse xmlns="{EC2_NS}"><requestId>r</requestId>'
                                       f"<regionInfo>{items}</regionInfo></DescribeRegionsResponse>", "text/xml")
            self._ec2_error(400, "InvalidAction", f"unknown action {form.get('Action')}")

        # -------------------------------------------------------------- AWS
        def _aws_region(self) -> str:
            m = re.search(r"Credential=[^/]+/\d+/([^/]+)/", self.headers.get("Authorization", ""))
            return m.group(1) if m else "us-east-1"

        def _ec2_error(self, status: int, code: str, msg: str) -> None:
            self._send(status, f"<Response><Errors><Error><Code>{code}</Code><Message>{msg}</Message></Error>"
                               f"</Errors><RequestID>{uuid.uuid4()}</RequestID></Response>", "text/xml")

        def _spot_history(self, form: dict[str, str], region: str) -> None:
            if self.headers.get("Authorization", "").find("Credential=rejected") >= 0:
                return self._ec2_error(401, "AuthFailure",
                                       "AWS was not able to validate the provided access credentials")
            offset = int(form.get("NextToken") or 0)
            size = min(int(form.get("MaxResults") or 1000), data.page_size["ec2"])
            page_no = offset // size if size else 0
            fault = data.take_fault("ec2", page_no)
            if fault == "throttle":
                return self._ec2_error(503, "RequestLimitExceeded", "Request limit exceeded.")
            if fault == "fail":
                return self._ec2_error(500, "InternalError", "An internal error has occurred")
            products = [v for k, v in form.items() if k.startswith("ProductDescription.")]
            types = [v for k, v in form.items() if k.startswith("InstanceType.")]
            patterns: list[str] = []
            for k, v in form.items():
                m = re.fullmatch(r"Filter\.(\d+)\.Name", k)
                if m and v == "instance-type":
                    patterns += [fv for fk, fv in form.items() if fk.startswith(f"Filter.{m.group(1)}.Value.")]
            start = datetime.fromisoformat(form["StartTime"].replace("Z", "+00:00")) if "StartTime" in form else None
            end = datetime.fromisoformat(form["EndTime"].replace("Z", "+00:00")) if "EndTime" in form else data.now
            with data.lock:
                pts = [p for p in data.spot if p["region"] == region
                       and (not products or p["product"] in products)
                       and (not types or p["type"] in types)
                       and (not patterns or any(fnmatch.fnmatchcase(p["type"], pat) for pat in patterns))
                       and p["ts"] <= end]
            chosen = [p for p in pts if start is None or p["ts"] >= start]
            if start is not None:  # plus the price in force at StartTime: the last change before it
                before: dict[tuple[str, str, str], dict[str, Any]] = {}
                for p in pts:
                    if p["ts"] < start:
                        k = (p["zone"], p["type"], p["product"])
                        if k not in before or p["ts"] > before[k]["ts"]:
                            before[k] = p
                chosen += list(before.values())
            chosen.sort(key=lambda p: (p["ts"], p["zone"], p["type"]), reverse=True)
            page = chosen[offset : offset + size]
            nxt = str(offset + size) if offset + size < len(chosen) else ""
            items = "".join(
                f"<item><instanceType>{p['type']}</instanceType><productDescription>{p['product']}"
                f"</productDescription><spotPrice>{p['price']}</spotPrice><timestamp>{_iso_z(p['ts'])}</timestamp>"
                f"<availabilityZone>{p['zone']}</availabilityZone>"
                + (f"<availabilityZoneId>{p['az_id']}</availabilityZoneId>" if p["az_id"] else "")
                + "</item>" for p in page)
            self._send(200, f'<DescribeSpotPriceHistoryResponse xmlns="{EC2_NS}"><requestId>{uuid.uuid4()}'
                            f"</requestId><spotPriceHistorySet>{items}</spotPriceHistorySet>"
                            f"<nextToken>{nxt}</nextToken></DescribeSpotPriceHistoryResponse>", "text/xml")

        def _get_products(self, req: dict[str, Any]) -> None:
            offset = int(req.get("NextToken") or 0)
            size = min(int(req.get("MaxResults") or 100), data.page_size["pricing"])
            fault = data.take_fault("pricing", offset // size)
            if fault == "throttle":
                return self._json(400, {"__type": "ThrottlingException", "message": "Rate exceeded"},
                                  "application/x-amz-json-1.1")
            if fault == "fail":
                return self._json(500, {"__type": "InternalErrorException", "message": "boom"},
                                  "application/x-amz-json-1.1")

            def match(p: dict[str, Any]) -> bool:
                attrs = p["product"]["attributes"]
                for f in req.get("Filters", []):
                    val = attrs.get(f["Field"], "")
                    if f["Type"] == "TERM_MATCH" and val.lower() != f["Value"].lower():
                        return False
                    if f["Type"] == "ANY_OF" and val not in f["Value"].split(","):
                        return False
                return True

            hits = [p for p in data.products if match(p)]
            page = hits[offset : offset + size]
            out: dict[str, Any] = {"FormatVersion": "aws_v1", "PriceList": [json.dumps(p) for p in page]}
            if offset + size < len(hits):
                out["NextToken"] = str(offset + size)
            self._json(200, out, "application/x-amz-json-1.1")

        # -------------------------------------------------------------- GCP
        def _gcp_page(self, service: str, q: dict[str, list[str]], items: list[Any]) -> tuple[list[Any], str] | None:
            offset = int((q.get("pageToken") or ["0"])[0] or 0)
            size = min(int((q.get("pageSize") or q.get("maxResults") or ["5000"])[0]), data.page_size[service])
            fault = data.take_fault(service, offset // size)
            if fault == "throttle":
                self._json(429, {"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}})
                return None
            if fault == "fail":
                self._json(500, {"error": {"code": 500, "message": "Internal error", "status": "INTERNAL"}})
                return None
            nxt = str(offset + size) if offset + size < len(items) else ""
            return items[offset : offset + size], nxt

        def _gcp_skus(self, q: dict[str, list[str]]) -> None:
            got = self._gcp_page("gcp_billing", q, data.gcp_skus)
            if got is not None:
                self._json(200, {"skus": got[0], "nextPageToken": got[1]})

        def _gcp_machine_types(self, q: dict[str, list[str]]) -> None:
            zones = sorted(data.gcp_machine_types)
            got = self._gcp_page("gcp_compute", q, zones)
            if got is not None:
                items = {f"zones/{z}": {"machineTypes": data.gcp_machine_types[z]} for z in got[0]}
                out: dict[str, Any] = {"kind": "compute#machineTypeAggregatedList", "items": items,
                                       "id": f"projects/{PROJECT}/aggregated/machineTypes"}
                if got[1]:
                    out["nextPageToken"] = got[1]
                self._json(200, out)

        # -------------------------------------------------------------- Azure
        def _azure_retail(self, q: dict[str, list[str]]) -> None:
            flt = (q.get("$filter") or [""])[0]
            skip = int((q.get("$skip") or ["0"])[0])
            size = data.page_size["azure"]
            fault = data.take_fault("azure", skip // size)
            if fault == "throttle":
                return self._json(429, {"Error": {"Code": "TooManyRequests", "Message": "Too many requests"}})
            if fault == "fail":
                return self._json(500, {"Error": {"Code": "InternalServerError", "Message": "boom"}})
            if fault == "deny":
                return self._json(403, {"Error": {"Code": "Forbidden", "Message": "Access denied"}})
            try:
                hits = [i for i in data.azure_items if _odata_match(flt, i)]
            except ValueError as exc:
                return self._json(400, {"Error": {"Code": "BadRequest", "Message": str(exc)}})
            page = hits[skip : skip + size]
            nxt = None
            if skip + size < len(hits):
                host = self.headers.get("Host", "127.0.0.1")
                scheme = "https" if isinstance(self.connection, ssl.SSLSocket) else "http"
                params = {k: v[0] for k, v in q.items() if k != "$skip"}
                params["$skip"] = str(skip + size)
                nxt = f"{scheme}://{host}/api/retail/prices?" + urlencode(params, quote_via=quote, safe="$'(),")
            self._json(200, {"BillingCurrency": "USD", "CustomerEntityId": "Default",
                             "CustomerEntityType": "Retail", "Items": page, "NextPageLink": nxt, "Count": len(page)})

        def _arg(self, body: bytes) -> None:
            if self.headers.get("Authorization") != f"Bearer {ARG_TOKEN}":
                return self._json(401, {"error": {"code": "InvalidAuthenticationToken",
                                                  "message": "The access token is invalid."}})
            if data.take_fault("arg", 0) == "throttle":
                return self._json(429, {"error": {"code": "RateLimiting", "message": "throttled"}})
            req = json.loads(body)
            query = req.get("query", "")
            rows: list[dict[str, Any]]
            if "skuspotevictionrate" in query:
                rows = [dict(r) for r in data.arg_eviction]
            elif "skuspotpricehistory" in query:
                rows = [dict(r) for r in data.arg_prices]
            else:
                rows = []
            locs = re.search(r"location in~ \(([^)]*)\)", query)
            if locs:
                wanted = {s.strip().strip("'").lower() for s in locs.group(1).split(",")}
                rows = [r for r in rows if r["location"].lower() in wanted]
            opts = req.get("options") or {}
            skip = int(opts.get("$skipToken") or 0)
            size = 50
            page = rows[skip : skip + size]
            out: dict[str, Any] = {"totalRecords": len(rows), "count": len(page),
                                   "resultTruncated": "false", "data": page, "facets": []}
            if skip + size < len(rows):
                out["$skipToken"] = str(skip + size)
            self._json(200, out)

    return Handler


def _odata_match(flt: str, item: dict[str, Any]) -> bool:
    """The subset of OData the Retail Prices API is queried with: `a eq 'v'`, `contains(a, 'v')`,
    `... eq false`, joined by `and`. Values are case-sensitive (api-version 2023-01-01-preview)."""
    if not flt.strip():
        return True
    for clause in re.split(r"\s+and\s+", flt.strip()):
        clause = clause.strip()
        m = re.fullmatch(r"(\w+)\s+eq\s+'([^']*)'", clause)
        if m:
            field = "type" if m.group(1) == "priceType" else m.group(1)
            if str(item.get(field, "")) != m.group(2):
                return False
            continue
        m = re.fullmatch(r"contains\((\w+),\s*'([^']*)'\)(\s+eq\s+(true|false))?", clause)
        if m:
            has = m.group(2) in str(item.get(m.group(1), ""))
            if has != (m.group(4) != "false"):
                return False
            continue
        raise ValueError(f"unsupported filter clause: {clause}")
    return True


_CA: list[Any] = []


def _test_ca() -> tuple[Any, Any]:
    """One test CA per process: generating keys is the slow part of starting an emulator."""
    import trustme

    if not _CA:
        ca = trustme.CA()
        _CA.extend([ca, ca.issue_cert("127.0.0.1", "localhost")])
    return _CA[0], _CA[1]


class PricingEmulator:
    """Two servers on 127.0.0.1 sharing one PricingData: plain HTTP (AWS, GCP, Azure retail) and
    HTTPS with a trustme CA (Azure Resource Graph: azure-core refuses bearer tokens over http)."""

    def __init__(self, data: PricingData, ca_dir: Path) -> None:
        self.data = data
        handler = _make_handler(data)
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.https = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        ca, cert = _test_ca()
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        self.https.socket = ctx.wrap_socket(self.https.socket, server_side=True)
        self.ca_path = ca_dir / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_path))
        self._threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
                         for s in (self.http, self.https)]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}"

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https.server_address[1]}"

    def env(self) -> dict[str, str]:
        """Environment that points every SDK at this emulator."""
        return {
            "AWS_ENDPOINT_URL_EC2": self.url,
            "AWS_ENDPOINT_URL_PRICING": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_MAX_ATTEMPTS": "3",
            "SPOTPLAN_AWS_SPOT_ADVISOR_URL": self.url + ADVISOR_PATH,
            "SPOTPLAN_GCP_BILLING_ENDPOINT": self.url,
            "SPOTPLAN_GCP_COMPUTE_ENDPOINT": self.url,
            "SPOTPLAN_GCP_PROJECT": PROJECT,
            "SPOTPLAN_AZURE_RETAIL_PRICES_URL": self.url + "/api/retail/prices",
            "SPOTPLAN_AZURE_ARM_ENDPOINT": self.https_url,
            "SPOTPLAN_AZURE_TOKEN": ARG_TOKEN,
            "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
            "REQUESTS_CA_BUNDLE": str(self.ca_path),
            "SPOTPLAN_RETRY_BASE_SECONDS": "0.01",
        }

    def start(self) -> PricingEmulator:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        for s in (self.http, self.https):
            s.shutdown()
            s.server_close()
