"""The price table of DESIGN.md §4.2: its columns, reading it from CSV/parquet files or folders,
normalising and validating rows. Snapshot, store, pulls and importers all produce this shape."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from spotplan.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

COLUMNS: tuple[str, ...] = (
    "provider",
    "region",
    "zone",
    "instance_type",
    "gpu_model",
    "gpu_count",
    "vcpus",
    "memory_gib",
    "market",
    "price_per_hour",
    "interruption_band",
    "observed_at",
    "source",
)
REQUIRED: tuple[str, ...] = ("provider", "region", "instance_type", "market", "price_per_hour")
PROVIDERS = ("aws", "gcp", "azure")
MARKETS = ("on-demand", "spot")
#: Spellings of the markets seen in feeds and typed on the command line.
MARKET_ALIASES = {"spot": "spot", "on-demand": "on-demand", "ondemand": "on-demand", "od": "on-demand"}
BANDS = ("<5%", "5-10%", "10-15%", "15-20%", ">20%")
#: Identifies one price history: all rows of a pool at different observed_at form its history.
POOL_KEY: tuple[str, ...] = ("provider", "region", "zone", "instance_type", "market")


class RowError(InputError):
    """A row that breaks the table's rules. Carries the row's position in the frame given to
    `normalize` and the field, so a caller whose rows are not lines of a file (a live pull) can name
    the pool instead of a row number."""

    def __init__(self, message: str, *, position: int, field: str, value: object, expected: str) -> None:
        super().__init__(message)
        self.position = position
        self.field = field
        self.value = value
        self.expected = expected


def empty_table() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in COLUMNS})


def _dtype(col: str) -> str:
    return "float64" if col in ("gpu_count", "vcpus", "memory_gib", "price_per_hour") else "object"


def normalize_band(value: object) -> str:
    """Map the band spellings seen in feeds ("<5%", "5-10 %", "5-10", ">20%") onto BANDS or ''."""
    if value is None or (isinstance(value, float) and value != value):  # None or NaN; pd.NA reads "<NA>"
        return ""
    s = str(value).strip().replace(" ", "")
    if s in ("", "nan", "None", "NaN", "<NA>", "NaT"):
        return ""
    if not s.endswith("%") and s[0:1] not in "<>":
        s = s + "%"
    if s.startswith("<"):
        return "<5%"
    if s.startswith(">"):
        return ">20%"
    return s if s in BANDS else ""


def normalize(df: pd.DataFrame, *, origin: str = "price table") -> pd.DataFrame:
    """Return `df` with exactly COLUMNS, typed, normalised, validated; InputError names the bad row."""
    import pandas as pd

    from spotplan.gpus import normalize_gpu_model

    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise InputError(
            f"{origin}: missing column {missing[0]!r}",
            hint="expected columns: " + ", ".join(COLUMNS),
        )
    out = pd.DataFrame(index=df.index)
    for col in COLUMNS:
        if col in df.columns:
            out[col] = df[col]
        else:
            out[col] = pd.NA if _dtype(col) == "object" else float("nan")
    for col in ("provider", "region", "zone", "instance_type", "market", "source"):
        out[col] = out[col].fillna("").astype(str).str.strip()
    out["provider"] = out["provider"].str.lower()
    # Clouds name regions and zones in lowercase; a table typed otherwise still matches.
    out["region"] = out["region"].str.lower()
    out["zone"] = out["zone"].str.lower()
    out["market"] = out["market"].str.lower().replace(MARKET_ALIASES)
    out["gpu_model"] = out["gpu_model"].map(
        lambda v: normalize_gpu_model(None if pd.isna(v) else str(v))
    )
    raw_band = out["interruption_band"].fillna("").astype(str).str.strip()
    out["interruption_band"] = raw_band.map(normalize_band)
    raw_numbers = {}
    for col in ("gpu_count", "vcpus", "memory_gib", "price_per_hour"):
        raw_numbers[col] = out[col].fillna("").astype(str).str.strip()
        out[col] = pd.to_numeric(out[col], errors="coerce")
    # A parquet file may hold observed_at as a timestamp or date column: spell it as ISO-8601
    # (`2026-01-02T00:00:00+00:00`), not as str() does (`2026-01-02 00:00:00+00:00`).
    out["observed_at"] = out["observed_at"].map(
        lambda v: "" if v is None or (not isinstance(v, str) and pd.isna(v))
        else v if isinstance(v, str) else v.isoformat() if hasattr(v, "isoformat") else str(v)
    )
    # Validation: name the first offending row (1-based data row, as a spreadsheet shows it + header).
    checks = [
        (~out["provider"].isin(PROVIDERS), "provider", "one of aws, gcp, azure"),
        (~out["market"].isin(MARKETS), "market", "'on-demand' or 'spot'"),
        (out["instance_type"] == "", "instance_type", "a non-empty instance type"),
        (out["region"] == "", "region", "a non-empty region"),
        (
            (raw_band != "") & (out["interruption_band"] == ""),
            "interruption_band",
            "one of " + ", ".join(BANDS) + " or empty",
        ),
        (
            not_a_price(out["price_per_hour"]),
            "price_per_hour",
            "a positive number (USD per instance-hour)",
        ),
        *(
            ((raw_numbers[col] != "") & not_an_amount(out[col]), col, "a non-negative number or empty")
            for col in ("gpu_count", "vcpus", "memory_gib")
        ),
        (_unreadable_times(out["observed_at"]), "observed_at", "an ISO-8601 date or time, or empty"),
    ]
    for bad, field, expected in checks:
        if bool(bad.any()):
            pos = int(bad.to_numpy().nonzero()[0][0])
            raw = df.iloc[pos].get(field, "") if field in df.columns else ""
            value = pd.Series([raw]).tolist()[0]
            raise RowError(
                f"{origin}: row {pos + 2}: {field} is {value!r}, expected {expected}",
                position=pos, field=field, value=value, expected=expected,
            )
    out = out.reset_index(drop=True)
    return out[list(COLUMNS)]


def not_an_amount(values: pd.Series) -> pd.Series:
    """Where a number cannot be a price or a count: NaN, negative or infinite."""
    return ~((values >= 0) & (values < float("inf")))


def not_a_price(values: pd.Series) -> pd.Series:
    """Where a number cannot be a price: not an amount, or zero (a $0 pool would win every ranking
    and could not be bid on)."""
    return not_an_amount(values) | (values <= 0)


def _unreadable_times(values: pd.Series) -> pd.Series:
    """Where a non-empty `observed_at` is not an ISO-8601 date or time. Each distinct value is
    parsed once: pulled histories repeat few and snapshots fewer."""
    import pandas as pd

    distinct = pd.Series(values[values != ""].unique(), dtype=object)
    parsed = pd.to_datetime(distinct, utc=True, errors="coerce", format="ISO8601")
    bad = set(distinct[parsed.isna()])
    return values.isin(bad) if bad else pd.Series(False, index=values.index)


def read_price_file(path: Path) -> pd.DataFrame:
    """Read one CSV or parquet price-table file."""
    import pandas as pd

    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            raw = pd.read_parquet(path)
        else:
            raw = pd.read_csv(path, dtype={"zone": str, "observed_at": str}, keep_default_na=False,
                              na_values=[""])
    except InputError:
        raise
    except Exception as exc:  # pandas raises many types; the user needs the file and the reason
        raise InputError(f"{path}: cannot read price table: {one_line(exc)}") from None
    table = normalize(raw, origin=str(path))
    # Where each row came from, to name both rows of a conflict (row 1 is the header).
    table.attrs["origins"] = [f"{path} row {i + 2}" for i in range(len(table))]
    return table


def one_line(exc: BaseException) -> str:
    """An exception's message on one line: pandas' parser messages end in blank lines, and §3 wants
    one line on stderr."""
    return " ".join(str(exc).split()) or type(exc).__name__


def read_price_paths(paths: Iterable[Path]) -> pd.DataFrame:
    """Read files and folders (every *.csv / *.parquet inside, sorted) into one table."""
    import pandas as pd

    frames: list[pd.DataFrame] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files = sorted(
                f for f in p.rglob("*") if f.suffix.lower() in (".csv", ".parquet", ".pq")
            )
            if not files:
                raise InputError(f"{p}: folder holds no .csv or .parquet price table")
            frames.extend(read_price_file(f) for f in files)
        else:
            frames.append(read_price_file(p))
    if not frames:
        return empty_table()
    table = pd.concat(frames, ignore_index=True)
    _refuse_conflicts(table, [origin for frame in frames for origin in frame.attrs.get("origins", [])])
    return table


def _refuse_conflicts(table: pd.DataFrame, origins: list[str]) -> None:
    """Two rows of one pool at one `observed_at` with different prices: which one holds would depend
    on the order the files are read in, so it is an input error naming both rows."""
    key = [*POOL_KEY, "observed_at"]
    dup = table.duplicated(key, keep=False)
    if not bool(dup.any()):
        return
    rows = table[dup]
    for _, group in rows.groupby(key, sort=False):
        prices = group["price_per_hour"].unique()
        if len(prices) > 1:
            a = int(group.index[0])
            b = int(group.index[group["price_per_hour"].to_numpy() != prices[0]][0])
            first = group.iloc[0]
            pool = "/".join(str(first[c]) for c in ("provider", "zone" if first["zone"] else "region",
                                                      "instance_type", "market"))
            where = (f"{origins[a]} and {origins[b]}" if len(origins) == len(table)
                     else f"rows {a + 2} and {b + 2}")
            raise InputError(
                f"conflicting prices for {pool} at {first['observed_at'] or '(no date)'}: "
                f"{float(prices[0]):g} and {float(table['price_per_hour'].iloc[b]):g} ({where})",
                hint="keep one row per pool and observed_at",
            )


def latest_rows(df: pd.DataFrame) -> pd.DataFrame:
    """One row per pool: the newest observation (ties keep the last row read). Times are compared
    as instants, not as text: `2026-01-02T01:00:00+05:00` is older than `2026-01-01T22:00:00Z`, and
    `…00.5Z` newer than `…00Z`. A row without a readable time counts as the oldest."""
    if df.empty:
        return df
    ordered = df.assign(_t=instants(df["observed_at"])).sort_values("_t", kind="stable")
    return ordered.drop_duplicates(list(POOL_KEY), keep="last").drop(columns="_t").reset_index(drop=True)


def instants(values: pd.Series) -> pd.Series:
    """observed_at values as integer UTC times since the epoch, for ordering only; empty or unreadable
    ones sort first. Each distinct value is parsed once (a store repeats few)."""
    import pandas as pd

    from spotplan.pricing.history import parse_times

    text = values.fillna("").astype(str)
    distinct = pd.Series(text.unique(), dtype=object)
    ticks = parse_times(distinct).dt.tz_localize(None).to_numpy().view("int64")  # NaT: the smallest int64
    return text.map(dict(zip(distinct, ticks.tolist()))).astype("int64")
