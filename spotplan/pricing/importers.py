"""Importers of the public price formats users already have, each turned into price-table rows with
one GPU vocabulary, and auto-detection of which format a file is:

- `aws-spot-history`: `aws ec2 describe-spot-price-history` JSON output, or the same data as the
  tab-separated capture of ericpauley/aws-spot-price-history (`az_id, type, product, price, time`).
- `ec2instances`: the ec2instances.info JSON (or its flattened per-region CSV).
- `spot-advisor`: the AWS Spot Instance Advisor JSON (or its flattened CSV). It holds bands and
  savings, not prices: spot = on-demand × (1 − savings), with on-demand from a reference table. Such
  derived prices never stand in for observed ones: a pool that already has an observed spot price
  gets no derived row (its newest observation takes the feed's band instead, when it has none of
  its own), and neither does one whose "savings" are negative (spot above on-demand).
- `skypilot`: a SkyPilot catalog `vms.csv` (AWS, GCP or Azure).
- `azure-retail`: Azure Retail Prices API JSON pages.
- `gcp-pricing`: Cyclenerd's google-cloud-pricing-cost-calculator GCP CSVs (a weekly history).
- `price-table`: the price table itself (CSV or parquet).

Formats that carry no time (ec2instances, the advisor, SkyPilot) are stamped with `observed_at`
when given, else with the file's modification time, and a note says so: a copied file's mtime is the
copy time, which would pass a months-old price off as today's.

Malformed input raises InputError naming the file and the line as the file numbers it (CSV lines
with the header as line 1, TSV lines) or the JSON item, and the source's own field name. Rows left
out on purpose (other operating systems, non-GPU types, other currencies, ...) are counted per
reason in `ImportResult.skipped`.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spotplan.errors import InputError
from spotplan.times import iso_z, parse_iso

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("aws-spot-history", "ec2instances", "spot-advisor", "skypilot", "azure-retail", "gcp-pricing",
           "price-table")
_AZ_ID = re.compile(r"^[a-z]{2}[a-z]{1,2}\d+-az\d+$")
_LINUX = ("Linux/UNIX", "Linux/UNIX (Amazon VPC)")


#: `source` of advisor-derived spot rows (one name, so footnotes list it once); rows whose source
#: starts with "aws spot advisor" are not observations.
DERIVED_ADVISOR_SOURCE = "aws spot advisor, derived: on-demand x (1 - savings)"


@dataclass
class ImportResult:
    format: str
    rows: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    #: Rows left out on purpose, per provider and reason (e.g. {"aws": {"spot above on-demand": 1}}).
    skipped: dict[str, dict[str, int]] = field(default_factory=dict)

    def skipped_total(self, provider: str) -> int:
        return sum(self.skipped.get(provider, {}).values())


def import_file(
    path: Path,
    fmt: str = "auto",
    *,
    reference: pd.DataFrame | None = None,
    observed_at: str | None = None,
) -> ImportResult:
    """Read `path` in format `fmt` (or detect it) into normalised price-table rows.

    `observed_at` (ISO-8601 date or time) stamps the rows that carry no time of their own; without
    it they get the file's mtime and a note saying so. `reference` is what is already known to the
    spot advisor: its on-demand prices and its observed spot pools (default: snapshot + store).
    """
    from spotplan.pricing.table import RowError, normalize

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.suffix.lower() in (".parquet", ".pq"):
        fmt = "price-table" if fmt == "auto" else fmt
    text = "" if path.suffix.lower() in (".parquet", ".pq") else _read_text(path)
    if fmt == "auto":
        fmt = detect_format(text, path)
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}", hint="one of: auto, " + ", ".join(FORMATS))
    if observed_at:
        stamp = parse_observed_at(observed_at)
    else:
        stamp = iso_z(datetime.fromtimestamp(path.stat().st_mtime, timezone.utc))
    notes: list[str] = []
    if fmt == "price-table":
        from spotplan.pricing.table import read_price_file

        return ImportResult(fmt, read_price_file(path), notes)
    parser: Callable[..., list[dict[str, Any]]] = {
        "aws-spot-history": _aws_spot_history,
        "ec2instances": _ec2instances,
        "spot-advisor": _spot_advisor,
        "skypilot": _skypilot,
        "azure-retail": _azure_retail,
        "gcp-pricing": _gcp_pricing,
    }[fmt]
    ctx = _Ctx(path=path, _stamp=stamp, notes=notes, reference=reference)
    rows = parser(text, ctx)
    import pandas as pd

    from spotplan.pricing.table import empty_table

    if ctx.stamp_used and not observed_at:
        notes.insert(0, f"{path} carries no date; using its modification time {stamp}; pass --observed-at "
                        "with the date the data was published")
    df = pd.DataFrame(rows) if rows else empty_table()
    if df.empty:
        if ctx.skipped:  # everything was left out on purpose: an import of nothing, not a bad file
            return ImportResult(fmt, empty_table(), notes, ctx.skipped)
        raise InputError(f"{path}: no GPU price rows found in this {fmt} file")
    try:
        table = normalize(df, origin=str(path))
    except RowError as exc:
        # normalize() counts rows of the frame (spot and on-demand apart); the user needs the line
        # or item of the file, which each parser recorded as `_where`.
        where = df.iloc[exc.position].get("_where") if "_where" in df.columns else None
        if not isinstance(where, str) or not where:
            raise
        raise ctx.bad(where, f"{exc.field} is {exc.value!r}, expected {exc.expected}") from None
    for provider, reasons in sorted(ctx.skipped.items()):
        if fmt != "spot-advisor":  # the advisor explains its own reasons above
            listed = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))
            notes.append(f"{provider}: rows left out: {listed}")
    return ImportResult(fmt, table, notes, ctx.skipped)


def parse_observed_at(value: str) -> str:
    """An ISO-8601 date (kept as `YYYY-MM-DD`) or time (naive means UTC; → `YYYY-MM-DDTHH:MM:SSZ`);
    InputError otherwise."""
    try:
        ts = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"--observed-at is {value!r}, expected an ISO-8601 date or time such as 2025-11-30 "
                         "or 2025-11-30T00:00:00Z") from None
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(value).strip()):
        return ts.strftime("%Y-%m-%d")  # a date stays a date, as in the bundled snapshot
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return iso_z(ts)


@dataclass
class _Ctx:
    path: Path
    _stamp: str
    notes: list[str]
    reference: pd.DataFrame | None
    stamp_used: bool = False
    skipped: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def stamp(self) -> str:
        """The time for rows without one of their own (reading it records that some row needed it)."""
        self.stamp_used = True
        return self._stamp

    def skip(self, provider: str, reason: str, n: int = 1) -> None:
        by_reason = self.skipped.setdefault(provider, {})
        by_reason[reason] = by_reason.get(reason, 0) + n

    def bad(self, where: str, reason: str) -> InputError:
        return InputError(f"{self.path}: {where}: {reason}")

    def json(self, text: str) -> Any:
        """The file's JSON; InputError naming the file and line when it is not JSON (a forced
        --format of a JSON format on a CSV, say)."""
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg == "Extra data":  # saved pages appended one per line (NDJSON): a list of pages
                return _json_lines(text, self.path)
            raise InputError(f"{self.path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None

    def expect(self, value: Any, kind: type, where: str) -> Any:
        """`value` when it is a `kind` (dict or list); else InputError naming where it sits, so a
        hand-edited or truncated file is a one-line input error, not a Python exception."""
        if not isinstance(value, kind):
            raise self.bad(where, f"is {_json_kind(value)}, expected {'an object' if kind is dict else 'a list'}")
        return value


def _json_lines(text: str, path: Path) -> list[Any]:
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}: invalid JSON at line {n}: {exc.msg}") from None
    return out


def _page_label(doc: Any, n: int) -> str:
    """Where a page sits: the n-th of a list of saved pages, or the one document."""
    return f"page {n}" if isinstance(doc, list) else "the document"


def _json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return repr(value) if isinstance(value, (str, int, float, bool)) or value is None else type(value).__name__


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file (expected JSON, CSV or TSV)") from None


def detect_format(text: str, path: Path | str = "<input>") -> str:
    """Name the format of a file's text from its structure (JSON keys, CSV header)."""
    head = text.lstrip()[:1]
    if head in ("{", "["):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg != "Extra data":
                raise InputError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
            doc = _json_lines(text, Path(path))
        first = doc[0] if isinstance(doc, list) and doc else doc
        if isinstance(first, dict):
            if "SpotPriceHistory" in first or {"SpotPrice", "InstanceType"} <= set(first):
                return "aws-spot-history"
            if "spot_advisor" in first:
                return "spot-advisor"
            if "Items" in first or "armSkuName" in first:
                return "azure-retail"
            if "instance_type" in first and "pricing" in first:
                return "ec2instances"
        raise InputError(f"{path}: JSON of an unknown shape", hint="pass --format")
    first_line = text.splitlines()[0] if text else ""
    cells = first_line.split("\t")
    if len(cells) == 5 and _AZ_ID.match(cells[0].strip()):
        return "aws-spot-history"
    header = {c.strip() for c in next(csv.reader([first_line]), [])}
    if {"InstanceType", "Price", "SpotPrice", "Region"} <= header:
        return "skypilot"
    if {"instance_type", "ondemand_linux"} <= header:
        return "ec2instances"
    if {"interruption_range", "savings_over_ondemand_pct"} <= header:
        return "spot-advisor"
    if {"machine_type", "hour", "hour_spot", "region"} <= header:
        return "gcp-pricing"
    if {"provider", "instance_type", "market", "price_per_hour"} <= header:
        return "price-table"
    raise InputError(f"{path}: cannot tell the format from its first line", hint="pass --format")


def _num(value: Any, ctx: _Ctx, where: str, field_name: str, *, required: bool = True,
         price: bool = False) -> float | None:
    """A number of the source; `price`: also positive and finite (USD per hour), checked here
    so the error names the source's field and line rather than a price-table column."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        if required:
            raise ctx.bad(where, f"{field_name} is empty")
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ctx.bad(where, f"{field_name} is {value!r}, expected a number") from None
    if price and not 0 < number < float("inf"):
        raise ctx.bad(where, f"{field_name} is {value!r}, expected a positive number (USD per hour)")
    return number


def _csv_rows(text: str) -> Iterable[tuple[int, dict[str, str]]]:
    # Line numbers as an editor shows them (the header is line 1), also when a quoted cell spans lines.
    reader = csv.DictReader(io.StringIO(text))
    start = 2
    for r in reader:
        yield start, r
        start = reader.line_num + 1


# ------------------------------------------------------------------------------------------- AWS


def _aws_shape(itype: str, fallback_model: str = "", fallback_count: float | None = None) -> tuple[str, float | None]:
    from spotplan.pricing.sources.aws import gpu_shape

    model, count = gpu_shape(itype)
    return (model or fallback_model), (count if count is not None else fallback_count)


def _aws_spot_history(text: str, ctx: _Ctx) -> list[dict[str, Any]]:
    from spotplan.pricing.sources.aws import region_of_az_id

    rows: list[dict[str, Any]] = []
    if text.lstrip()[:1] in ("{", "["):
        doc = ctx.json(text)
        pages = doc if isinstance(doc, list) else [doc]
        items: list[Any] = []
        for p, page in enumerate(pages, start=1):
            label = _page_label(doc, p)
            page = ctx.expect(page, dict, label)
            if "SpotPriceHistory" in page:
                items.extend(ctx.expect(page["SpotPriceHistory"], list, f"{label}: SpotPriceHistory"))
            else:
                items.append(page)
        for n, it in enumerate(items, start=1):
            where = f"SpotPriceHistory item {n}"
            if not isinstance(it, dict) or "InstanceType" not in it or not (
                    "AvailabilityZone" in it or "AvailabilityZoneId" in it):
                raise ctx.bad(where, "expected InstanceType, AvailabilityZone (or AvailabilityZoneId), SpotPrice, "
                                     "Timestamp")
            if not isinstance(it["InstanceType"], str):
                raise ctx.bad(where, f"InstanceType is {_json_kind(it['InstanceType'])}, expected a name")
            if it.get("ProductDescription", "Linux/UNIX") not in _LINUX:
                ctx.skip("aws", "not Linux/UNIX")
                continue
            if "AvailabilityZone" in it:
                az = str(it["AvailabilityZone"])
                m = re.match(r"^([a-z]{2}(?:-gov)?-[a-z]+-\d+)", az)
                if not m:
                    raise ctx.bad(where, f"AvailabilityZone is {az!r}")
                region = m.group(1)
            else:  # the ID only; the store names it when a pull has seen the pair
                az = str(it["AvailabilityZoneId"])
                try:
                    region = region_of_az_id(az)
                except ValueError as exc:
                    raise ctx.bad(where, f"AvailabilityZoneId: {exc}") from None
            rows.append(_aws_spot_row(it["InstanceType"], region, az,
                                      _num(it.get("SpotPrice"), ctx, where, "SpotPrice", price=True),
                                      _time(it.get("Timestamp"), ctx, where), where))
    else:
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            cells = line.split("\t")
            where = f"line {n}"
            if len(cells) != 5:
                raise ctx.bad(where, f"expected 5 tab-separated fields, found {len(cells)}")
            az_id, itype, product, price, ts = (c.strip() for c in cells)
            if product not in _LINUX:
                ctx.skip("aws", "not Linux/UNIX")
                continue
            try:
                region = region_of_az_id(az_id)
            except ValueError as exc:
                raise ctx.bad(where, str(exc)) from None
            # Only the AZ *ID* is known here (names differ per account); the store names it when a
            # pull has seen the pair.
            rows.append(_aws_spot_row(itype, region, az_id, _num(price, ctx, where, "spot_price", price=True),
                                      _time(ts, ctx, where), where))
    gpu_rows = [r for r in rows if r["gpu_model"]]
    if len(gpu_rows) < len(rows):
        ctx.skip("aws", "not a GPU instance type", len(rows) - len(gpu_rows))
    return gpu_rows


def _aws_spot_row(itype: str, region: str, zone: str, price: float | None, ts: str, where: str) -> dict[str, Any]:
    model, count = _aws_shape(itype)
    return {"provider": "aws", "region": region, "zone": zone, "instance_type": itype, "gpu_model": model,
            "gpu_count": count, "market": "spot", "price_per_hour": price, "observed_at": ts, "interruption_band": "",
            "source": "aws describe-spot-price-history", "_where": where}


def _time(value: Any, ctx: _Ctx, where: str) -> str:
    text = str(value).strip() if value is not None else ""
    try:
        return _iso_z_of(text)
    except ValueError:
        raise ctx.bad(where, f"timestamp is {value!r}") from None


@functools.lru_cache(maxsize=100_000)  # history files repeat each snapshot time on many rows
def _iso_z_of(text: str) -> str:
    return iso_z(parse_iso(text))


def _ec2instances(text: str, ctx: _Ctx) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    source = "ec2instances.info"
    if text.lstrip()[:1] in ("[", "{"):
        for n, inst in enumerate(ctx.expect(ctx.json(text), list, "the document"), start=1):
            where = f"item {n}"
            if not isinstance(inst, dict) or "instance_type" not in inst:
                raise ctx.bad(where, "expected an object with instance_type")
            itype = str(inst["instance_type"])
            if not inst.get("GPU"):
                ctx.skip("aws", "not a GPU instance type")
                continue
            model, count = _aws_shape(itype, _ec2i_model(inst), _num(inst.get("GPU"), ctx, where, "GPU"))
            shape = {"gpu_model": model, "gpu_count": count,
                     "vcpus": _num(inst.get("vCPU"), ctx, where, "vCPU", required=False),
                     "memory_gib": _num(inst.get("memory"), ctx, where, "memory", required=False)}
            for region, by_os in ctx.expect(inst.get("pricing") or {}, dict, f"{where} ({itype}): pricing").items():
                w = f"{where} ({itype}, {region})"
                linux = ctx.expect(ctx.expect(by_os, dict, f"{w}: pricing.{region}").get("linux") or {}, dict,
                                   f"{w}: pricing.{region}.linux")
                rows += _ec2i_rows(itype, region, shape, linux.get("ondemand"), linux.get("spot_avg"),
                                   linux.get("pct_interrupt"), ctx, w, source, ("ondemand", "spot_avg"))
    else:
        for n, r in _csv_rows(text):
            where = f"row {n}"
            itype = r.get("instance_type", "")
            model, count = _aws_shape(itype, r.get("gpu_model", ""), _num(r.get("gpu_count"), ctx, where,
                                                                         "gpu_count", required=False))
            shape = {"gpu_model": model, "gpu_count": count,
                     "vcpus": _num(r.get("vcpus"), ctx, where, "vcpus", required=False),
                     "memory_gib": _num(r.get("memory_gib"), ctx, where, "memory_gib", required=False)}
            rows += _ec2i_rows(itype, r.get("region", ""), shape, r.get("ondemand_linux"),
                               r.get("spot_avg_linux"), r.get("pct_interrupt"), ctx, where, source,
                               ("ondemand_linux", "spot_avg_linux"))
    return rows


def _ec2i_model(inst: dict[str, Any]) -> str:
    model = str(inst.get("GPU_model") or "")
    # ec2instances.info says "NVIDIA A100" for both p4d and p4de; per-GPU memory tells them apart.
    if "A100" in model and inst.get("GPU") and inst.get("GPU_memory"):
        per_gpu = float(inst["GPU_memory"]) / float(inst["GPU"])
        return "A100-80GB" if per_gpu >= 80 else "A100-40GB"
    return model


def _ec2i_rows(itype: str, region: str, shape: dict[str, Any], od: Any, spot: Any, band: Any,
               ctx: _Ctx, where: str, source: str, fields: tuple[str, str]) -> list[dict[str, Any]]:
    out = []
    base = {"provider": "aws", "region": region, "zone": "", "instance_type": itype, **shape,
            "observed_at": ctx.stamp, "source": source, "_where": where}
    od_price = _num(od, ctx, where, fields[0], required=False, price=True)
    if od_price is not None:
        out.append({**base, "market": "on-demand", "price_per_hour": od_price, "interruption_band": ""})
    spot_price = _num(spot, ctx, where, fields[1], required=False, price=True)
    if spot_price is not None:
        # ec2instances.info publishes min/avg/max over its window; the average is the fair price.
        out.append({**base, "market": "spot", "price_per_hour": spot_price, "interruption_band": band or "",
                    "source": source + " (spot_avg)"})
    return out


def _spot_advisor(text: str, ctx: _Ctx) -> list[dict[str, Any]]:
    from spotplan.pricing.sources.aws import advisor_bands

    entries: list[tuple[str, str, str, float, str]] = []  # region, type, band, savings, where
    if text.lstrip()[:1] in ("{", "["):
        feed = _checked_advisor_feed(ctx.json(text), ctx)
        bands = advisor_bands(feed)
        for region, by_os in feed["spot_advisor"].items():
            for itype, v in (by_os.get("Linux") or {}).items():
                where = f"spot_advisor.{region}.Linux.{itype}"
                s = _num(v.get("s"), ctx, where, "s (savings %)")
                entries.append((region, itype, bands.get(region, {}).get(itype, ""), float(s or 0), where))
    else:
        for n, r in _csv_rows(text):
            if r.get("os", "Linux") != "Linux":
                continue
            where = f"row {n}"
            s = _num(r.get("savings_over_ondemand_pct"), ctx, where, "savings_over_ondemand_pct")
            entries.append((r.get("region", ""), r.get("instance_type", ""), r.get("interruption_range", ""),
                            float(s or 0), where))
    reference = _advisor_reference(ctx.reference)
    od = _reference_on_demand(reference)
    observed = _observed_spot_pools(reference)
    rows: list[dict[str, Any]] = []
    banded: list[dict[str, Any]] = []
    for region, itype, band, savings, where in entries:
        model, count = _aws_shape(itype)
        if not model:
            continue
        if (region, itype) in observed:
            ctx.skip("aws", _OBSERVED)
            banded += _with_advisor_band(observed[(region, itype)], band, ctx)
            continue
        ref = od.get((region, itype))
        if ref is None:
            ctx.skip("aws", _NO_ON_DEMAND)
            continue
        if savings < 0:
            # The feed says e.g. -62% for p5.48xlarge in ca-central-1: spot above on-demand is not an
            # offer anyone takes, and at 162% of on-demand it is not a price either.
            ctx.skip("aws", _NEGATIVE)
            continue
        rows.append({"provider": "aws", "region": region, "zone": "", "instance_type": itype,
                     "gpu_model": model, "gpu_count": count, "vcpus": ref["vcpus"], "memory_gib": ref["memory_gib"],
                     "market": "spot", "price_per_hour": round(ref["price"] * (1 - savings / 100.0), 6),
                     "interruption_band": band, "observed_at": ctx.stamp,
                     "source": DERIVED_ADVISOR_SOURCE, "_where": where})
    explain = {
        _NO_ON_DEMAND: "no on-demand price known to apply the advisor's savings to (pull or import on-demand "
                       "prices first)",
        _OBSERVED: "an observed spot price is already known (a derived price never replaces one)",
        _NEGATIVE: "the advisor's savings are negative (spot above on-demand)",
    }
    for reason, n in ctx.skipped.get("aws", {}).items():
        ctx.notes.append(f"{n} GPU pools skipped: {explain[reason]}")
    if banded:
        ctx.notes.append(f"{len(banded)} observed spot pools (each zone counts) take the advisor's interruption "
                         "band; their prices and times stay as observed (source names the band's feed)")
    return rows + banded


#: Appended to `source` of an observation whose band an advisor feed filled in, with the feed's date.
ADVISOR_BAND_TAG = "; band: aws spot advisor as of "


def _with_advisor_band(pools: list[dict[str, Any]], band: str, ctx: _Ctx) -> list[dict[str, Any]]:
    """The advisor's band for pools that already have observed spot prices: a copy of each pool's
    newest observation (same pool, same observed_at, same price) carrying the band, which the store
    takes in place of the stored one (its dedup keeps the newer copy so a feed can fill in a band
    later). No price is invented and no observation time moves, so histories, means and "as of"
    stay true; `source` says where the band came from and as of when.

    A band that came with the observation itself (ec2instances.info's `pct_interrupt`, Azure's
    eviction rate) is kept, and so is one from a newer feed than this one."""
    from spotplan.pricing.table import COLUMNS, normalize_band

    band = normalize_band(band)
    if not band:
        return []
    out = []
    for rec in pools:
        source = str(rec.get("source") or "")
        own, tagged, as_of = source.partition(ADVISOR_BAND_TAG)
        had = str(rec.get("interruption_band") or "")
        if had and not tagged:
            continue  # the observation's own band
        if (tagged and as_of > ctx.stamp) or (had == band and as_of == ctx.stamp):
            continue  # a newer feed's band, or this feed's already
        out.append({**{c: rec.get(c) for c in COLUMNS}, "interruption_band": band,
                    "source": f"{own}{ADVISOR_BAND_TAG}{ctx.stamp}"})
    return out


def _checked_advisor_feed(feed: Any, ctx: _Ctx) -> dict[str, Any]:
    """The advisor feed with the shape `advisor_bands` walks: ranges of {index, label} and
    spot_advisor → region → OS → type → {s, r}; InputError naming the first part that is not."""
    ctx.expect(feed, dict, "the document")
    for n, r in enumerate(ctx.expect(feed.get("ranges", []), list, "ranges")):
        ctx.expect(r, dict, f"ranges[{n}]")
        if not isinstance(r.get("index"), int) or "label" not in r:
            raise ctx.bad(f"ranges[{n}]", "expected an integer index and a label")
    for region, by_os in ctx.expect(feed.get("spot_advisor", {}), dict, "spot_advisor").items():
        ctx.expect(by_os, dict, f"spot_advisor.{region}")
        for itype, v in ctx.expect(by_os.get("Linux") or {}, dict, f"spot_advisor.{region}.Linux").items():
            where = f"spot_advisor.{region}.Linux.{itype}"
            ctx.expect(v, dict, where)
            if not isinstance(v.get("r", -1), int):
                raise ctx.bad(where, f"r (the range index) is {v['r']!r}, expected an integer")
    return {**feed, "spot_advisor": feed.get("spot_advisor", {})}


_NO_ON_DEMAND = "no on-demand price"
_OBSERVED = "observed spot price kept"
_NEGATIVE = "spot above on-demand"


def _advisor_reference(reference: pd.DataFrame | None) -> pd.DataFrame:
    if reference is not None:
        return reference
    from spotplan.analysis import load_prices

    return load_prices(None).table  # the bundled snapshot plus the local store


def _observed_spot_pools(reference: pd.DataFrame) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(region, instance type) of AWS spot pools with an observed price, in any zone at any time →
    the newest observation of each of its pools (one per zone), which is where a band goes.

    Any time, not only later ones: the advisor's savings are rounded percentages of a list price, so
    even an older real quote of the pool says more than they do, and a region-wide derived row would
    otherwise compete with zonal quotes as a pool of its own. Earlier derived rows do not count, so a
    newer feed refreshes them.
    """
    from spotplan.pricing.table import latest_rows

    spot = reference[(reference["provider"] == "aws") & (reference["market"] == "spot")]
    real = ~spot["source"].fillna("").astype(str).str.startswith(("aws spot advisor",))
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rec in latest_rows(spot[real]).to_dict("records"):
        out.setdefault((str(rec["region"]), str(rec["instance_type"])), []).append({str(k): v for k, v in rec.items()})
    return out


def _reference_on_demand(reference: pd.DataFrame) -> dict[tuple[str, str], dict[str, Any]]:
    from spotplan.pricing.table import latest_rows

    ref = latest_rows(reference[(reference["provider"] == "aws") & (reference["market"] == "on-demand")])
    return {
        (str(region), str(itype)): {"price": float(price), "vcpus": vcpus, "memory_gib": mem}
        for region, itype, price, vcpus, mem in zip(
            ref["region"], ref["instance_type"], ref["price_per_hour"], ref["vcpus"], ref["memory_gib"]
        )
    }


# ---------------------------------------------------------------------------------- SkyPilot, Azure, GCP


def _skypilot(text: str, ctx: _Ctx) -> list[dict[str, Any]]:
    from spotplan.pricing.sources import azure

    rows: list[dict[str, Any]] = []
    for n, r in _csv_rows(text):
        where = f"row {n}"
        itype = (r.get("InstanceType") or "").strip()
        if not itype:
            raise ctx.bad(where, "InstanceType is empty")
        if not r.get("AcceleratorName") and not itype.startswith("Standard_"):
            ctx.skip(_skypilot_provider(itype), "not a GPU instance type")
            continue
        provider = _skypilot_provider(itype)
        price = _num(r.get("Price"), ctx, where, "Price", required=False, price=True)
        spot = _num(r.get("SpotPrice"), ctx, where, "SpotPrice", required=False, price=True)
        if price is None and spot is None:
            ctx.skip(provider, "no price")
            continue  # e.g. Azure *_Promo sizes: listed without prices
        count = _num(r.get("AcceleratorCount"), ctx, where, "AcceleratorCount", required=False)
        model = r.get("AcceleratorName") or ""
        if provider == "azure":
            known_model, known_count = azure.gpu_shape(itype)
            model, count = known_model or model, known_count if known_count is not None else count
        elif provider == "aws":
            model, count = _aws_shape(itype, model, count)
        if not model:
            ctx.skip(provider, "not a GPU instance type")
            continue
        base = {"provider": provider, "region": r.get("Region", ""), "zone": r.get("AvailabilityZone") or "",
                "instance_type": itype, "gpu_model": model, "gpu_count": count,
                "vcpus": _num(r.get("vCPUs"), ctx, where, "vCPUs", required=False),
                "memory_gib": _num(r.get("MemoryGiB"), ctx, where, "MemoryGiB", required=False),
                "interruption_band": "", "observed_at": ctx.stamp, "source": "skypilot catalog", "_where": where}
        if price is not None:
            # An on-demand price is the region's (§4.2: zone empty means region-wide), even where the
            # catalog repeats it on every zone's line; the repeats collapse to one row below.
            rows.append({**base, "zone": "", "market": "on-demand", "price_per_hour": price})
        if spot is not None and spot != price:  # SpotPrice == Price marks "no spot price" (H100 v5 rows)
            rows.append({**base, "market": "spot", "price_per_hour": spot})
    seen: set[tuple[str, str, str, str]] = set()
    out = []
    for row in rows:
        if row["market"] == "on-demand":
            key = (row["provider"], row["region"], row["instance_type"], str(row["price_per_hour"]))
            if key in seen:
                continue
            seen.add(key)
        out.append(row)
    return out


def _skypilot_provider(itype: str) -> str:
    # AWS types are family.size (p6-b200.48xlarge has a dash too); GCP machine types have no dot.
    return "azure" if itype.startswith("Standard_") else ("aws" if "." in itype else "gcp")


def _azure_retail(text: str, ctx: _Ctx) -> list[dict[str, Any]]:
    from spotplan.pricing.sources.azure import parse_retail_item, retail_currency

    doc = ctx.json(text)
    pages = doc if isinstance(doc, list) else [doc]
    items: list[Any] = []
    for p, page in enumerate(pages, start=1):
        if isinstance(page, dict) and "Items" in page:
            items.extend(ctx.expect(page["Items"], list, f"{_page_label(doc, p)}: Items"))
        else:
            items.append(page)
    rows = []
    for n, it in enumerate(items, start=1):
        where = f"item {n}"
        if not isinstance(it, dict) or "armSkuName" not in it or "retailPrice" not in it:
            raise ctx.bad(where, "expected an Azure retail price item (armSkuName, retailPrice, ...)")
        if not isinstance(it["retailPrice"], (int, float)) or isinstance(it["retailPrice"], bool):
            raise ctx.bad(where, f"retailPrice is {it['retailPrice']!r}, expected a number")
        currency = retail_currency(it)
        if currency != "USD":
            # The table holds USD (§4.2); converting at some day's rate would invent a price.
            ctx.skip("azure", f"priced in {currency or 'no currency'}, not USD")
            continue
        row = parse_retail_item(it)
        if row is None:
            ctx.skip("azure", "not a Linux pay-as-you-go VM hour")
            continue
        if not row["gpu_model"]:
            ctx.skip("azure", "not a GPU size")
            continue
        # Only a row that is kept must carry a real price: a $0 item the filters above drop (a free
        # non-GPU meter, a Windows or EUR line) says nothing about the table.
        _num(it["retailPrice"], ctx, where, "retailPrice", price=True)
        row["observed_at"] = it.get("effectiveStartDate") or ctx.stamp
        row["source"] = "azure retail prices (import)"
        row["_where"] = where
        rows.append(row)
    return rows


def _gcp_pricing(text: str, ctx: _Ctx) -> list[dict[str, Any]]:
    from spotplan.pricing.sources.gcp import family_gpu

    rows: list[dict[str, Any]] = []
    for n, r in _csv_rows(text):
        where = f"row {n}"
        base: dict[str, Any] = {
            "provider": "gcp", "region": r.get("region", ""), "zone": "",
            "instance_type": r.get("machine_type", ""),
            "gpu_model": family_gpu(r.get("machine_type", "")) or r.get("gpu_name", ""),
            "gpu_count": _num(r.get("gpu_count"), ctx, where, "gpu_count", required=False),
            "vcpus": _num(r.get("vcpus"), ctx, where, "vcpus", required=False),
            "memory_gib": _num(r.get("ram_gib"), ctx, where, "ram_gib", required=False),
            "interruption_band": "",
            "observed_at": _time(r.get("snapshot_time"), ctx, where) if r.get("snapshot_time") else ctx.stamp,
            "source": "cyclenerd google-cloud-pricing-cost-calculator", "_where": where,
        }
        od = _num(r.get("hour"), ctx, where, "hour", required=False, price=True)
        spot = _num(r.get("hour_spot"), ctx, where, "hour_spot", required=False, price=True)
        if od is not None:
            rows.append({**base, "market": "on-demand", "price_per_hour": od})
        if spot is not None:
            rows.append({**base, "market": "spot", "price_per_hour": spot})
    # Some snapshots (e.g. 2023-05-09) list a machine type without its GPU: take it from other rows.
    models = {r["instance_type"]: r["gpu_model"] for r in rows if r["gpu_model"]}
    counts = {r["instance_type"]: r["gpu_count"] for r in rows if r["gpu_count"] is not None}
    for r in rows:
        r["gpu_model"] = r["gpu_model"] or models.get(r["instance_type"], "")
        if r["gpu_count"] is None:
            r["gpu_count"] = counts.get(r["instance_type"])
    return rows
