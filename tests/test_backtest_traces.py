"""Trace loaders: tiny fixtures written here for every format, then the real published files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spotplan.backtest.traces import detect_format, expand_paths, load_trace
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
