"""Trace loaders: tiny fixtures written here for every format, then the real published files."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from spotplan.backtest.traces import detect_format, display_names, distinct_paths, expand_paths, load_trace
from spotplan.errors import InputError

pytestmark = pytest.mark.timeout(60)


def test_json_with_prices(tmp_path: Path) -> None:
    p = tmp_path / "z.json"
    p.write_text(json.dumps({"metadata": {"gap_seconds": 60}, "data": [0, 1, 2, 1], "prices": [1, 1.5, 2, 1]}))
    tr = load_trace(p)
    assert tr.gap_seconds == 60 and tr.ticks == 4
    assert tr.available.tolist() == [0, 1, 2, 1]
    assert tr.prices is not None and tr.prices.tolist() == [1, 1.5, 2, 1]
    assert tr.availability(1) == 0.75 and tr.availability(2) == 0.25


def test_json_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="bad.json: invalid JSON"):
        load_trace(bad)
    nogap = tmp_path / "nogap.json"
    nogap.write_text(json.dumps({"metadata": {}, "data": [1]}))
    with pytest.raises(InputError, match="gap_seconds"):
        load_trace(nogap)
    short = tmp_path / "short.json"
    short.write_text(json.dumps({"metadata": {"gap_seconds": 5}, "data": [1, 0], "prices": [1]}))
    with pytest.raises(InputError, match="prices"):
        load_trace(short)
    with pytest.raises(InputError, match="not found"):
        load_trace(tmp_path / "missing.json")


def test_events_count_alive_nodes(tmp_path: Path) -> None:
    p = tmp_path / "ev.csv"
    # CRLF and a duplicate add, like the Bamboo files
    p.write_bytes(
        b"0,add,a\r\n0,add,b\r\n0,add,b\r\n120000,remove,a\r\n240000,add,c\r\n300000,remove,b\r\n"
    )
    assert detect_format(p.read_text(), p) == "events"
    tr = load_trace(p, tick_seconds=60)
    # ticks at 0,60,...,300 s: 2,2,1,1,2,1
    assert tr.available.tolist() == [2, 2, 1, 1, 2, 1]


def test_counts_seconds_and_scaled_hours(tmp_path: Path) -> None:
    sec = tmp_path / "counts.csv"
    sec.write_text("0,3\n120,3\n120,1\n300,4\n")
    tr = load_trace(sec, tick_seconds=60)
    assert tr.available.tolist() == [3, 3, 1, 1, 1, 4]
    scaled = tmp_path / "counts_scaled.csv"
    scaled.write_text("0.000,2\n0.050,2\n0.050,0\n0.100,5\n")
    tr2 = load_trace(scaled, tick_seconds=60)
    # 0.05 h = 180 s, 0.1 h = 360 s
    assert tr2.available.tolist() == [2, 2, 2, 0, 0, 0, 5]


def test_gcloud_dated_counts_sorted(tmp_path: Path) -> None:
    p = tmp_path / "a100.txt"
    p.write_text(
        "2021-12-10, 13:00:00, 8\n2021-12-10, 13:01:00, 8\n2021-12-10, 13:00:30, 6\n"
        "2021-12-10, 13:02:00, 6\n"
    )
    tr = load_trace(p, tick_seconds=30)
    assert tr.available.tolist() == [8, 6, 8, 8, 6]
    assert any("out-of-order" in n for n in tr.notes)


def test_expand_folder_and_bad_first_line(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps({"metadata": {"gap_seconds": 1}, "data": [1]}))
    (tmp_path / "b.csv").write_text("0,1\n")
    (tmp_path / "notes.md").write_text("x")
    assert [p.name for p in expand_paths([tmp_path])] == ["a.json", "b.csv"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no trace files"):
        expand_paths([empty])
    odd = tmp_path / "odd.csv"
    odd.write_text("hello\n")
    with pytest.raises(InputError, match="cannot tell"):
        load_trace(odd)


def test_run_lengths(tmp_path: Path) -> None:
    p = tmp_path / "r.json"
    p.write_text(json.dumps({"metadata": {"gap_seconds": 3600}, "data": [1, 1, 0, 1, 0, 0, 1, 1, 1]}))
    ups, downs = load_trace(p).run_lengths_hours()
    assert ups.tolist() == [2, 1, 3] and downs.tolist() == [1, 2]


def _load_quietly(path: Path) -> object:
    """load_trace with every warning an error: a corrupt file must be refused, not cast noisily."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return load_trace(path)


GAP = {"gap_seconds": 600}


@pytest.mark.parametrize(
    "doc,message",
    [
        ({"metadata": [600], "data": [1, 1]}, "'metadata' must be an object"),
        ({"metadata": "x", "data": [1, 1]}, "'metadata' must be an object"),
        ({"metadata": {"gap_seconds": float("inf")}, "data": [1]}, "gap_seconds must be a positive number"),
        ({"metadata": GAP, "data": [1, float("inf")]}, r"data\[1\] = Infinity is not a count"),
        ({"metadata": GAP, "data": [1, float("nan")]}, r"data\[1\] = NaN is not a count"),
        ({"metadata": GAP, "data": [1, 1e30]}, r"data\[1\] = 1e\+30 is not a count"),
        ({"metadata": GAP, "data": [1, 10**30]}, rf"data\[1\] = {10**30} is not a count"),
        ({"metadata": GAP, "data": [1, 1.7]}, r"data\[1\] = 1.7 is not a count"),
        ({"metadata": GAP, "data": [1, True]}, r"data\[1\] = true is not a count"),
        ({"metadata": GAP, "data": [1, 1], "prices": [1, 10**400]}, "'prices' must be finite"),
        ({"metadata": GAP, "data": [1, 1], "prices": [1, True]}, "'prices' must be finite"),
    ],
)
def test_corrupt_json_is_refused_with_its_name(tmp_path: Path, doc: dict[str, object], message: str) -> None:
    p = tmp_path / "corrupt.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=rf"corrupt.json: .*{message}"):
        _load_quietly(p)


def test_whole_float_counts_are_read(tmp_path: Path) -> None:
    p = tmp_path / "f.json"
    p.write_text(json.dumps({"metadata": {"gap_seconds": 60}, "data": [1.0, 0, 2.0]}))
    assert load_trace(p).available.tolist() == [1, 0, 2]


@pytest.mark.parametrize(
    "text,message",
    [
        ("0,1\n60,nan\n120,1\n", r"counts.csv:2: count 'nan' is not a count"),
        ("t,n\n0,1\n60,inf\n120,1\n", r"counts.csv:3: count 'inf' is not a count"),
        ("0,1\n60,1.7\n", r"counts.csv:2: count '1.7' is not a count"),
        ("0,1\n60,1e30\n", r"counts.csv:2: count '1e30' is not a count"),
        ("0,1\nnan,1\n120,1\n", r"counts.csv:2: time 'nan' is not a finite number"),
        ("0,1\n60,1\ninf,1\n", r"counts.csv:3: time 'inf' is not a finite number"),
        ("0,1\n-inf,1\n", r"counts.csv:2: time '-inf' is not a finite number"),
        # finite, but no tick grid can hold it: refused before sampling exhausts memory
        ("0,1\n1e300,2\n", r"counts.csv: spans .* days"),
    ],
)
def test_corrupt_counts_are_refused_with_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "counts.csv"
    p.write_text(text)
    with pytest.raises(InputError, match=message):
        _load_quietly(p)


def test_event_time_must_be_finite(tmp_path: Path) -> None:
    p = tmp_path / "ev.csv"
    p.write_text("0,add,a\nnan,add,b\n")
    with pytest.raises(InputError, match=r"ev.csv:2: time 'nan' is not a finite number"):
        _load_quietly(p)


@pytest.mark.parametrize("fmt", ["auto", "json", "counts", "events"])
def test_json_array_is_named_as_unsupported(tmp_path: Path, fmt: str) -> None:
    # e.g. Parcae's gpt-1.5b/trace_*.txt (one JSON array a line); "no rows" said nothing useful
    p = tmp_path / "array.json"
    p.write_text("[1, 2, 3]\n")
    with pytest.raises(InputError, match=r"array.json: a JSON array is not a supported trace format"):
        load_trace(p, fmt)


@pytest.mark.parametrize(
    "header,hours",
    [
        ("time_ms,n_nodes", 660 / 3600),  # 600,000 ms: 11 ticks of 60 s, not 10,001
        ("t_ms,n", 660 / 3600),
        ("ms,n", 660 / 3600),
        ("time (ms),n", 660 / 3600),
        ("t,n", 600_060 / 3600),  # seconds, as the header says, though the span is over a week
        ("seconds,n", 600_060 / 3600),
    ],
)
def test_counts_header_names_the_time_unit(tmp_path: Path, header: str, hours: float) -> None:
    p = tmp_path / "counts.csv"
    p.write_text(f"{header}\n0,2\n120000,1\n300000,2\n600000,1\n")
    tr = load_trace(p, tick_seconds=60)
    assert tr.hours == pytest.approx(hours)
    assert tr.available[:3].tolist() == ([2, 2, 1] if hours < 1 else [2, 2, 2])
    assert not any("guessed" in n for n in tr.notes)


@pytest.mark.parametrize("header", ["t,n", "seconds,n", "time_s,count"])
def test_counts_header_in_seconds_over_a_month(tmp_path: Path, header: str) -> None:
    # over 30 days "in seconds" used to be taken for milliseconds (an hour of trace)
    p = tmp_path / "counts.csv"
    p.write_text(f"{header}\n0,2\n3000000,1\n")
    tr = load_trace(p, tick_seconds=600)
    assert tr.ticks == 5001 and tr.available[[0, -1]].tolist() == [2, 1]


def test_counts_header_in_hours_and_fractional_seconds(tmp_path: Path) -> None:
    hours = tmp_path / "h.csv"
    hours.write_text("hours,n\n0,1\n0.5,0\n1,1\n")
    assert load_trace(hours, tick_seconds=60).hours == pytest.approx(61 / 60)
    short = tmp_path / "h2.csv"
    short.write_text("h,n\n0,1\n2,0\n")
    assert load_trace(short, tick_seconds=60).hours == pytest.approx(121 / 60)
    # fractional times spanning under 1000 units were guessed to be hours; `s` says seconds
    secs = tmp_path / "s.csv"
    secs.write_text("s,n\n0.0,1\n30.5,0\n90.5,1\n")
    tr = load_trace(secs, tick_seconds=30)
    assert tr.available.tolist() == [1, 1, 0, 0] and tr.hours == pytest.approx(120 / 3600)


def test_counts_without_a_unit_are_guessed_as_before(tmp_path: Path) -> None:
    # a header that names no unit falls back to the guess: fractional and short means hours
    p = tmp_path / "counts.csv"
    p.write_text("time,count\n0.000,2\n0.050,0\n0.100,5\n")
    tr = load_trace(p, tick_seconds=60)
    assert tr.available.tolist() == [2, 2, 2, 0, 0, 0, 5]
    assert any("guessed to be in hours" in n for n in tr.notes)


# ---- the real files in ../shared/data --------------------------------------------------------

REAL_JSON = {
    # folder: (gap seconds, ticks)
    "skypilot-spot-traces/availability/1-node/aws-10-26-2022": (600, 3895),
    "skypilot-spot-traces/preemption/1-node/aws-04-22-2023": (32, 19961),
    "skypilot-spot-traces/preemption/1-node/aws-04-19-2023": (34, 16090),
    "spothedge-traces/data/GCP1": (150, 770),
}


@pytest.mark.parametrize("folder", sorted(REAL_JSON))
def test_real_json_traces(shared_data: Path, folder: str) -> None:
    gap, ticks = REAL_JSON[folder]
    files = expand_paths([shared_data / folder])
    assert files
    for f in files:
        tr = load_trace(f)
        assert (tr.gap_seconds, tr.ticks) == (gap, ticks), f
        assert tr.available.min() >= 0
    priced = [load_trace(f) for f in files if "aws-04-19-2023" in str(f)]
    for tr in priced:
        assert tr.prices is not None and 1.0 < float(np.mean(tr.prices)) < 2.0


def test_real_bamboo_and_parcae(shared_data: Path) -> None:
    ev = load_trace(shared_data / "bamboo-traces/traces/p3-trace.csv")
    assert 10 < ev.hours < 12 and ev.available.max() <= 32
    stem = "bamboo-traces/doc/data/aws-spot-instances-g4dn-xlarge-us-east-1c-2020-11-20-1930-to-2020-11-21-2200"
    scaled = load_trace(shared_data / f"{stem}_scaled.csv")
    plain = load_trace(shared_data / f"{stem}.csv")
    # the hours file and the seconds file describe the same market
    assert abs(scaled.hours - plain.hours) < 0.1
    n = min(scaled.ticks, plain.ticks)
    assert np.mean(scaled.available[:n] == plain.available[:n]) > 0.95
    gcl = load_trace(shared_data / "bamboo-traces/traces/gcloud/v100x1-east1c.txt")
    assert 20 < gcl.hours < 30
    parcae = load_trace(shared_data / "parcae-traces/aws/traces/p3.csv")
    # Parcae's p3.csv is the Bamboo p3 trace as a node count (time in ms)
    assert abs(parcae.hours - ev.hours) < 1.0


def test_bad_row_names_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "counts.csv"
    p.write_text("t,n\n0,1\n\n60,2\nx,3\n")
    with pytest.raises(InputError, match=r"counts.csv:5: expected time,count"):
        load_trace(p)


def test_display_names_are_unique(tmp_path: Path) -> None:
    a, b = tmp_path / "2022" / "1-node", tmp_path / "2023" / "1-node"
    paths = [a / "us-west-2b_v100_1.json", b / "us-west-2b_v100_1.json", a / "other.json"]
    # the nearest folders are the same ("1-node"): one more level tells them apart
    assert display_names(paths) == ["2022/1-node/us-west-2b_v100_1", "2023/1-node/us-west-2b_v100_1", "other"]
    # the same stem in one folder (two formats): only the full paths differ
    same = [a / "z.json", a / "z.csv"]
    assert display_names(same) == [str(p.resolve()) for p in same]


def test_distinct_paths_keep_the_first_and_note_repeats(tmp_path: Path) -> None:
    x, y = tmp_path / "x.json", tmp_path / "y.json"
    paths, notes = distinct_paths([x, y, tmp_path / "." / "x.json", x])
    assert paths == [x, y]
    assert notes == [f"{x}: given 3 times, replayed once"]
