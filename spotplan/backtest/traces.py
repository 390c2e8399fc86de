"""Trace loaders: every published spot-trace format read into one form, a `Trace` holding, per
tick of `gap_seconds`, how many spot instances were available (and the spot price when the file
has one).

Formats (see ../shared/data/README.md):
- `json`: the Can't-Be-Late / SpotHedge files `{"metadata": {"gap_seconds": G}, "data": [...],
  "prices": [...]?}`.
- `events`: Bamboo `time_ms,event,node_id` add/remove events; the count is the nodes alive.
- `counts`: a count over time: `t,n` (seconds, or hours in the `_scaled` files), Parcae
  `time_ms,n_nodes`, or the Bamboo GCP `date, time, count` text files. Change points are held
  (a step function) and sampled on a regular tick. A header that names the time unit is trusted;
  only without one is the unit guessed.

Every count must be a whole number of instances and every time finite: a corrupt file is refused
with its name (and line), never read as garbage.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from spotplan.errors import InputError

FORMATS = ("auto", "json", "events", "counts")
DEFAULT_STEP_TICK_SECONDS = 60.0
# More instances than any cloud has: beyond it a "count" is corrupt (and would overflow int64).
MAX_COUNT = 10**9
# Far above any published trace (20k ticks); beyond it the time unit is almost surely misread,
# and sampling would exhaust memory before saying so.
MAX_TICKS = 10_000_000
_JSON_ARRAY = (
    "a JSON array is not a supported trace format (a JSON trace is an object "
    '{"metadata": {"gap_seconds": G}, "data": [...]}; a count file has `time,count` rows)'
)


@dataclass(frozen=True)
class Trace:
    """Spot availability per tick: `available[i]` instances during [i·gap, (i+1)·gap)."""

    name: str
    gap_seconds: float
    available: np.ndarray
    prices: np.ndarray | None = None
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.gap_seconds <= 0:
            raise InputError(f"{self.source or self.name}: gap_seconds must be positive")
        if self.prices is not None and len(self.prices) != len(self.available):
            raise InputError(
                f"{self.source or self.name}: {len(self.prices)} prices for {len(self.available)} ticks"
            )

    @property
    def ticks(self) -> int:
        return int(len(self.available))

    @property
    def hours(self) -> float:
        return self.ticks * self.gap_seconds / 3600.0

    def availability(self, instances: int = 1) -> float:
        """Share of ticks with at least `instances` spot instances available."""
        return float(np.mean(self.available >= instances)) if self.ticks else 0.0

    def run_lengths_hours(self, instances: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Lengths (hours) of the maximal available runs and of the unavailable gaps."""
        lengths, is_up = streaks(self.available >= instances)
        hours = lengths * self.gap_seconds / 3600.0
        return hours[is_up], hours[~is_up]


def streaks(up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The maximal streaks of a 0/1 series, in order: their lengths (ticks) and whether each is up."""
    up = np.asarray(up, dtype=bool)
    if not len(up):
        return np.zeros(0, np.int64), np.zeros(0, bool)
    edges = np.flatnonzero(np.diff(up.astype(np.int8))) + 1
    bounds = np.concatenate(([0], edges, [len(up)]))
    return np.diff(bounds), up[bounds[:-1]]


def expand_paths(paths: list[Path]) -> list[Path]:
    """Files as given; a folder stands for the trace files in it (sorted, non-recursive)."""
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = sorted(
                q for q in p.iterdir() if q.is_file() and q.suffix.lower() in (".json", ".csv", ".txt")
            )
            if not found:
                raise InputError(f"{p}: no trace files (.json, .csv, .txt) in this folder")
            out.extend(found)
        else:
            out.append(p)
    return out


def load_traces(paths: list[Path], fmt: str = "auto") -> list[Trace]:
    """Read every file, each named by `display_names` so that no two traces share a name."""
    traces = [load_trace(p, fmt) for p in paths]
    names = display_names([Path(p) for p in paths])
    return [t if t.name == n else replace(t, name=n) for t, n in zip(traces, names)]


def distinct_paths(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """Each file once, in the order first given, and a note per file given more than once (the
    same file twice, or a folder and a file in it): replayed twice it would weigh double in
    every mean."""
    first: dict[Path, Path] = {}
    times: dict[Path, int] = {}
    for p in paths:
        key = Path(p).resolve()
        first.setdefault(key, Path(p))
        times[key] = times.get(key, 0) + 1
    notes = [f"{first[key]}: given {n} times, replayed once" for key, n in times.items() if n > 1]
    return list(first.values()), notes


def display_names(paths: list[Path]) -> list[str]:
    """A short name per trace file that no other file in `paths` shares: its stem, or when stems
    clash (the same zone in two trace sets) the stem under as many parent folders as tell the
    clashing files apart; the full path when none do. Per-start rows name their trace, so a
    shared name would make them ambiguous."""
    resolved = [Path(p).resolve() for p in paths]
    names = [p.stem for p in resolved]
    for stem in {n for n in names if names.count(n) > 1}:
        clash = [i for i, n in enumerate(names) if n == stem]
        folders = {i: resolved[i].parent.parts[1:] for i in clash}  # without the root
        for k in range(1, max(len(f) for f in folders.values()) + 1):
            tried = ["/".join((*folders[i][-k:], stem)) for i in clash]
            if len(set(tried)) == len(tried):
                break
        else:
            tried = [str(resolved[i]) for i in clash]
        for i, name in zip(clash, tried):
            names[i] = name
    return names


def load_trace(path: Path, fmt: str = "auto", tick_seconds: float | None = None) -> Trace:
    """Read one trace file; `fmt` is one of FORMATS (`auto` detects from the content)."""
    path = Path(path)
    if fmt not in FORMATS:
        raise InputError(f"unknown trace format {fmt!r} (choose from {', '.join(FORMATS)})")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: trace file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read trace ({exc})") from None
    if not text.strip():
        raise InputError(f"{path}: empty file")
    if fmt == "auto":
        fmt = detect_format(text, path)
    if fmt == "json":
        return _parse_json(text, path)
    if fmt == "events":
        return _parse_events(text, path, tick_seconds)
    return _parse_counts(text, path, tick_seconds)


def detect_format(text: str, path: Path) -> str:
    head = text.lstrip()[:1]
    if head == "{":
        return "json"
    if head == "[":
        # its commas would otherwise pass for a count file's, which then finds "no rows"
        raise InputError(f"{path}: {_JSON_ARRAY}")
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    cells = [c.strip().lower() for c in first.split(",")]
    if len(cells) >= 3 and cells[1] in ("add", "remove"):
        return "events"
    if len(cells) >= 2:
        return "counts"
    raise InputError(f"{path}: cannot tell the trace format from its first line {first[:60]!r}")


def _parse_json(text: str, path: Path) -> Trace:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    if isinstance(doc, list):
        raise InputError(f"{path}: {_JSON_ARRAY}")
    if not isinstance(doc, dict) or "data" not in doc:
        raise InputError(f"{path}: expected an object with 'metadata' and 'data'")
    meta = doc.get("metadata") or {}
    if not isinstance(meta, dict):
        raise InputError(f"{path}: 'metadata' must be an object holding gap_seconds")
    gap = _real(meta.get("gap_seconds"))
    if gap is None or gap <= 0:
        raise InputError(f"{path}: metadata.gap_seconds must be a positive number")
    data = doc["data"]
    if not isinstance(data, list):
        raise InputError(f"{path}: 'data' must be a list of non-negative counts")
    if not data:
        raise InputError(f"{path}: no ticks ('data' is empty)")
    counts = np.zeros(len(data), dtype=np.int64)
    for i, v in enumerate(data):
        n = _count(v)
        if n is None:
            raise InputError(f"{path}: data[{i}] = {json.dumps(v)} is not {_COUNT_RULE}")
        counts[i] = n
    prices = None
    if doc.get("prices") is not None:
        raw = doc["prices"]
        if not isinstance(raw, list) or len(raw) != len(data):
            raise InputError(f"{path}: 'prices' must be a list as long as 'data' ({len(data)})")
        values = [_real(v) for v in raw]
        if any(v is None or v < 0 for v in values):
            raise InputError(f"{path}: 'prices' must be finite, non-negative numbers")
        prices = np.asarray(values, dtype=float)
    return Trace(
        name=path.stem,
        gap_seconds=gap,
        available=counts,
        prices=prices,
        source=str(path),
    )


_COUNT_RULE = f"a count of instances (a whole number from 0 to {MAX_COUNT:,})"


def _real(v: object) -> float | None:
    """A finite JSON number as a float, else None (bools are ints to Python, not numbers to a
    trace; JSON allows Infinity, NaN and integers too large for a float)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def _count(v: object) -> int | None:
    """`v` as an instance count, or None when it is not one: a bool, a string, a fraction (1.7
    instances would be silently truncated), NaN, infinite, negative or beyond MAX_COUNT."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v if 0 <= v <= MAX_COUNT else None
    if isinstance(v, float) and math.isfinite(v) and v.is_integer() and 0 <= v <= MAX_COUNT:
        return int(v)
    return None


def _refuse_json(text: str, path: Path, fmt: str) -> None:
    """A CSV parser forced onto a JSON file would only report a confusing first row."""
    head = text.lstrip()[:1]
    if head == "[":
        raise InputError(f"{path}: {_JSON_ARRAY}")
    if head == "{":
        raise InputError(f"{path}: a JSON object, not a {fmt} CSV (read it with --format json)")


def _rows(text: str) -> list[tuple[int, list[str]]]:
    """Non-blank CSV rows with their 1-based line numbers (for error messages)."""
    return [
        (lineno, [c.strip() for c in row])
        for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1)
        if row and any(c.strip() for c in row)
    ]


def _parse_events(text: str, path: Path, tick_seconds: float | None) -> Trace:
    times: list[float] = []
    deltas: list[int] = []
    alive: set[str] = set()
    _refuse_json(text, path, "events")
    for lineno, row in _rows(text):
        if len(row) < 3:
            raise InputError(f"{path}:{lineno}: expected time_ms,event,node_id")
        try:
            t = float(row[0]) / 1000.0
        except ValueError:
            t = math.nan
        if not math.isfinite(t):  # NaN or infinity would sort and sample as garbage
            raise InputError(f"{path}:{lineno}: time {row[0]!r} is not a finite number")
        event, node = row[1].lower(), row[2]
        if event == "add":
            delta = 0 if node in alive else 1
            alive.add(node)
        elif event == "remove":
            delta = -1 if node in alive else 0
            alive.discard(node)
        else:
            raise InputError(f"{path}:{lineno}: event {row[1]!r} is neither add nor remove")
        times.append(t)
        deltas.append(delta)
    if not times:
        raise InputError(f"{path}: no events")
    counts = np.cumsum(deltas)
    return _step_trace(np.asarray(times), counts, path, tick_seconds)


_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _parse_counts(text: str, path: Path, tick_seconds: float | None) -> Trace:
    _refuse_json(text, path, "counts")
    rows = _rows(text)
    header: list[str] = []
    if rows and not _is_number(rows[0][1][0]) and not _DATE_TIME.match(rows[0][1][0]):
        header = rows[0][1]
        rows = rows[1:]
    if not rows:
        raise InputError(f"{path}: no rows")
    times: list[float] = []
    counts: list[int] = []
    dated = bool(_DATE_TIME.match(rows[0][1][0]))
    for lineno, row in rows:
        try:
            when, cell = _time_and_count(row, dated)
            count = _count(float(cell))
        except (ValueError, IndexError):
            raise InputError(f"{path}:{lineno}: expected time,count, got {','.join(row)[:60]!r}") from None
        if not math.isfinite(when):  # NaN or infinity would sort and sample as garbage
            raise InputError(f"{path}:{lineno}: time {row[0]!r} is not a finite number")
        if count is None:
            raise InputError(f"{path}:{lineno}: count {cell!r} is not {_COUNT_RULE}")
        times.append(when)
        counts.append(count)
    t = np.asarray(times, dtype=float)
    c = np.asarray(counts, dtype=np.int64)
    notes = []
    backwards = int(np.sum(np.diff(t) < 0))
    if backwards:
        # the Bamboo GCP logs hold overlapping sampling windows; the later line wins at a tie
        order = np.argsort(t, kind="stable")
        t, c = t[order], c[order]
        notes.append(f"{backwards} out-of-order rows sorted by time")
    t = t - t[0]
    if not dated:
        unit = _header_unit(header[0]) if header else None
        if unit is None:
            unit = _time_unit_seconds(path, t)
            if unit != 1.0:
                notes.append(f"time column guessed to be in {_UNIT_NAMES[unit]} (no unit in a header)")
        t = t * unit
    trace = _step_trace(t, c, path, tick_seconds)
    trace.notes.extend(notes)
    return trace


# Time-column headers that name their unit, in seconds per unit. `t` is Bamboo's column in
# seconds. `m` is left out: minutes or metres is a guess, and guessing is what a header avoids.
_UNIT_WORDS = {
    **dict.fromkeys(("ms", "msec", "millis", "millisecond", "milliseconds"), 0.001),
    **dict.fromkeys(("t", "s", "sec", "secs", "second", "seconds"), 1.0),
    **dict.fromkeys(("min", "mins", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600.0),
}
_UNIT_NAMES = {0.001: "milliseconds", 1.0: "seconds", 60.0: "minutes", 3600.0: "hours"}


def _time_and_count(row: list[str], dated: bool) -> tuple[float, str]:
    """A count row's time (seconds since the epoch when dated, else in the file's unit) and its
    count cell. Raises ValueError or IndexError on a malformed row."""
    if dated:
        stamp = datetime.strptime(f"{row[0]} {row[1]}", "%Y-%m-%d %H:%M:%S")
        return stamp.replace(tzinfo=timezone.utc).timestamp(), row[2]
    return float(row[0]), row[1]


def _header_unit(cell: str) -> float | None:
    """Seconds per unit of the time column when its header names the unit (`time_ms`, `t_ms`,
    `ms`; `t`, `s`, `seconds`; `hours`, `h`; `time (min)`), else None (`time`, `timestamp`). The
    last unit word wins, so `t_ms` is milliseconds."""
    words = [w for w in re.split(r"[^a-z]+", cell.lower()) if w]
    named = [_UNIT_WORDS[w] for w in words if w in _UNIT_WORDS]
    return named[-1] if named else None


def _time_unit_seconds(path: Path, t: np.ndarray) -> float:
    """The guess for a file whose header names no unit: seconds per unit of the time column, ms
    (Parcae `time_ms`), hours (Bamboo `_scaled` and fractional-hour files) or seconds."""
    name = path.name.lower()
    if "_scaled" in name:
        return 3600.0
    span = float(t[-1]) if len(t) else 0.0
    fractional = bool(np.any(np.abs(t - np.rint(t)) > 1e-9))
    if fractional and span < 1000:
        return 3600.0
    if "time_ms" in name or span > 3 * 86400 * 10:
        # more than a month in "seconds" is really milliseconds
        return 0.001
    return 1.0


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _step_trace(
    times_s: np.ndarray, counts: np.ndarray, path: Path, tick_seconds: float | None
) -> Trace:
    """Sample a step function (value holds from its time until the next change) on a regular tick;
    several changes at one time keep the last."""
    times_s = times_s - times_s[0]
    gap = float(tick_seconds) if tick_seconds else _natural_tick(times_s)
    if times_s[-1] / gap >= MAX_TICKS:
        raise InputError(
            f"{path}: spans {times_s[-1] / 86400:.3g} days, over {MAX_TICKS:,} ticks of {gap:g} s "
            "(is the time unit right? name it in a header, e.g. time_ms or hours)"
        )
    n_ticks = max(1, int(np.floor(times_s[-1] / gap)) + 1)
    grid = np.arange(n_ticks) * gap
    idx = np.searchsorted(times_s, grid, side="right") - 1
    return Trace(
        name=path.stem,
        gap_seconds=gap,
        available=np.maximum(counts[idx], 0).astype(np.int64),
        source=str(path),
        notes=[f"step function sampled every {gap:g} s"],
    )


def _natural_tick(times_s: np.ndarray) -> float:
    """A regularly sampled file keeps its own spacing; a change-point file gets a 60 s tick."""
    diffs = np.diff(times_s)
    diffs = diffs[diffs > 0]
    if len(diffs) >= 10:
        med = float(np.median(diffs))
        if med >= 1 and np.mean(np.abs(diffs - med) <= 0.1 * med) > 0.8:
            return float(round(med))
    return DEFAULT_STEP_TICK_SECONDS
