"""Contract checks of `spotplan prices ...` and `spotplan backtest` read from DESIGN.md §3/§4.2 as an
outside user would: small hand-made inputs whose answers can be worked out by hand."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from spotplan.cli.main import app

HEADER = ("provider,region,zone,instance_type,gpu_model,gpu_count,vcpus,memory_gib,market,price_per_hour,"
          "interruption_band,observed_at,source")


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_show_takes_the_newest_observation_as_an_instant_not_as_text(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # §4.2: observed_at is any ISO-8601 time. 01:00+05:00 is 20:00Z, older than 22:00Z, and
    # 00:00:00.5Z is newer than 00:00:00Z although both sort the other way as text.
    table = tmp_path / "prices.csv"
    table.write_text("\n".join([
        HEADER,
        "aws,us-east-1,,p3.2xlarge,V100,1,8,61,on-demand,3.06,,2026-01-01T23:00:00Z,t",
        "aws,us-east-1,us-east-1a,p3.2xlarge,V100,1,8,61,spot,0.9,5-10%,2026-01-01T22:00:00Z,t",
        "aws,us-east-1,us-east-1a,p3.2xlarge,V100,1,8,61,spot,2.9,5-10%,2026-01-02T01:00:00+05:00,t",
        "aws,us-east-1,us-east-1b,p3.2xlarge,V100,1,8,61,spot,1.5,<5%,2026-01-01T00:00:00.5Z,t",
        "aws,us-east-1,us-east-1b,p3.2xlarge,V100,1,8,61,spot,2.5,<5%,2026-01-01T00:00:00Z,t",
    ]) + "\n")
    result = runner.invoke(app, ["prices", "show", "--prices", str(table), "-o", "csv"])
    assert result.exit_code == 0, result.output
    got = {r["zone"]: r for r in _rows(result.stdout)}
    assert got["us-east-1a"]["spot_per_hour"] == "0.9"
    assert got["us-east-1b"]["spot_per_hour"] == "1.5"
    # "As of" is the newer of the spot and on-demand observations, as instants too.
    assert got["us-east-1a"]["observed_at"] == "2026-01-01T23:00:00Z"


def test_alerts_use_the_newest_spot_price_as_an_instant(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # §3 alerts: the current spot price (the newest observation) above ratio × on-demand. Here the
    # newest is 0.9 (22:00Z), below 0.8 × 3.06; the 2.9 quote is older (20:00Z) and must not alert.
    table = tmp_path / "prices.csv"
    table.write_text("\n".join([
        HEADER,
        "aws,us-east-1,,p3.2xlarge,V100,1,8,61,on-demand,3.06,,2026-01-01,t",
        "aws,us-east-1,us-east-1a,p3.2xlarge,V100,1,8,61,spot,0.9,5-10%,2026-01-01T22:00:00Z,t",
        "aws,us-east-1,us-east-1a,p3.2xlarge,V100,1,8,61,spot,2.9,5-10%,2026-01-02T01:00:00+05:00,t",
    ]) + "\n")
    from spotplan.pricing.alerts import find_alerts
    from spotplan.pricing.table import read_price_paths

    hits = find_alerts(read_price_paths([table]), 0.8)
    assert hits.empty, hits.to_dict("records")


def test_backtest_json_matches_hand_computed_costs(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # 1 h ticks, spot [1,0,1,1,1,1], C = 2 h, R = 6 h, d = 0.5 h, spot $1, on-demand $3.
    # on-demand: (0.5 + 2) h × $3 = 7.5. greedy: spot at 0 (0.5 change + 0.5 work), preempted,
    # spot at 2 (0.5 + 0.5), 1 h at 3: 3 h × $1 = 3. optimum: wait, spot from 2: 2.5 h = 2.5.
    trace = tmp_path / "z.json"
    trace.write_text(json.dumps({"metadata": {"gap_seconds": 3600}, "data": [1, 0, 1, 1, 1, 1]}))
    result = runner.invoke(app, [
        "backtest", "--trace", str(trace), "--job-hours", "2", "--deadline-hours", "6",
        "--changeover-hours", "0.5", "--spot-price", "1", "--on-demand-price", "3",
        "--policy", "on-demand", "--policy", "greedy", "--policy", "optimal", "-o", "json",
    ])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["schema"] == "spotplan.backtest/1"
    by = {p["name"]: p for p in doc["policies"]}
    assert by["on-demand"]["mean_cost"] == 7.5 and by["on-demand"]["on_demand_hours"] == 2.5
    assert by["greedy"]["mean_cost"] == 3.0 and by["greedy"]["spot_hours"] == 3.0
    assert by["optimal"]["mean_cost"] == 2.5
    assert by["greedy"]["mean_cost_vs_optimal"] == 3.0 / 2.5
    for p in by.values():
        assert {"mean_cost", "p75_cost", "mean_cost_vs_optimal", "deadline_misses", "spot_hours",
                "on_demand_hours"} <= set(p)
    assert doc["starts"][0]["costs"] == {"on-demand": 7.5, "greedy": 3.0, "optimal": 2.5}


def test_backtest_takes_several_files_after_one_trace_flag(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # §3 and the issue write `--trace FILE...` (several, one per zone), as against `[--prices PATH]...`.
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.json").write_text(json.dumps({"metadata": {"gap_seconds": 3600}, "data": [1, 1, 1, 1]}))
    a, b, c = (str(tmp_path / f"{n}.json") for n in "abc")
    common = ["--job-hours", "2", "--deadline-hours", "4", "--policy", "greedy", "-o", "json"]
    result = runner.invoke(app, ["backtest", "--trace", a, b, c, *common])
    assert result.exit_code == 0, result.output
    assert [t["name"] for t in json.loads(result.stdout)["traces"]] == ["a", "b", "c"]
    # Both spellings together: the files after a flag come after those given with one.
    result = runner.invoke(app, ["backtest", "--trace", a, b, "--trace", c, *common])
    assert result.exit_code == 0, result.output
    assert [t["name"] for t in json.loads(result.stdout)["traces"]] == ["a", "c", "b"]


def test_a_parquet_timestamp_column_reads_as_iso_8601(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # §4.2: observed_at is an ISO-8601 date or time; a parquet writer may store it as a timestamp.
    import pandas as pd

    df = pd.read_csv(io.StringIO("\n".join([
        HEADER,
        "aws,us-east-1,,p3.2xlarge,V100,1,8,61,on-demand,3.06,,2026-01-01T00:00:00Z,t",
        "aws,us-east-1,,p3.2xlarge,V100,1,8,61,spot,0.9,5-10%,2026-01-02T00:00:00Z,t",
    ])), keep_default_na=False)
    df["observed_at"] = pd.to_datetime(df["observed_at"], utc=True)
    path = tmp_path / "prices.parquet"
    df.to_parquet(path)
    result = runner.invoke(app, ["prices", "show", "--prices", str(path), "-o", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["rows"][0]["observed_at"] == "2026-01-02T00:00:00+00:00"
    assert doc["prices"]["as_of"] == {"aws": "2026-01-02T00:00:00+00:00"}
