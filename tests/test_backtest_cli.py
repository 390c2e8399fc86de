"""`spotplan backtest` through the CLI: renderings, the chart, and one-line errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from spotplan.cli.main import app

pytestmark = pytest.mark.timeout(60)


def _trace(tmp_path: Path, name: str = "zone-a.json", seed: int = 0, prices: bool = False) -> Path:
    rng = np.random.default_rng(seed)
    state, data = 1, []
    for _ in range(600):
        data.append(state)
        state = int(rng.random() < (0.9 if state else 0.3))
    doc: dict[str, object] = {"metadata": {"gap_seconds": 600}, "data": data}
    if prices:
        doc["prices"] = [0.5] * len(data)
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return p


BASE = ["backtest", "--job-hours", "12", "--deadline-hours", "15", "--starts", "4"]


def test_json_schema(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, b = _trace(tmp_path), _trace(tmp_path, "zone-b.json", seed=1, prices=True)
    res = runner.invoke(app, [*BASE, "--trace", str(a), "--trace", str(b), "-o", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["schema"] == "spotplan.backtest/1"
    names = [p["name"] for p in doc["policies"]]
    assert names == ["on-demand", "greedy", "uniform-progress", "optimal", "spotplan"]
    for p in doc["policies"]:
        for key in ("mean_cost", "p75_cost", "mean_cost_vs_optimal", "deadline_misses", "spot_hours"):
            assert key in p
        assert "on_demand_hours" in p
    opt = next(p for p in doc["policies"] if p["name"] == "optimal")
    assert opt["mean_cost_vs_optimal"] == pytest.approx(1.0)
    assert len(doc["starts"]) == 8
    assert set(doc["starts"][0]["costs"]) == set(names)
    assert {t["name"]: t["has_prices"] for t in doc["traces"]} == {"zone-a": False, "zone-b": True}
    # on-demand: (12 h + 0.2 h changeover) × $3.06
    od = next(p for p in doc["policies"] if p["name"] == "on-demand")
    assert od["mean_cost"] == pytest.approx(12.2 * 3.06)


def test_table_markdown_csv_and_policy_filter(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    t = _trace(tmp_path)
    res = runner.invoke(app, [*BASE, "--trace", str(t), "--policy", "greedy", "--policy", "optimal"])
    assert res.exit_code == 0, res.output
    assert "greedy" in res.stdout and "spotplan" not in res.stdout and "vs optimal" in res.stdout
    md = runner.invoke(app, [*BASE, "--trace", str(t), "-o", "markdown"])
    assert md.exit_code == 0 and md.stdout.startswith("**Backtest: 12 h job")
    assert "| uniform-progress |" in md.stdout
    out = tmp_path / "runs.csv"
    c = runner.invoke(app, [*BASE, "--trace", str(t), "-o", "csv", "--out", str(out)])
    assert c.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 4 and "cost_optimal" in rows[0]


def test_png(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    png = tmp_path / "bt.png"
    res = runner.invoke(app, [*BASE, "--trace", str(_trace(tmp_path)), "--png", str(png), "-o", "json"])
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(res.stdout)["example"]["policy"] == "spotplan"


def test_folder_of_traces(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _trace(tmp_path, "a.json", 0)
    _trace(tmp_path, "b.json", 1)
    res = runner.invoke(app, [*BASE, "--trace", str(tmp_path), "-o", "json", "--policy", "greedy"])
    assert res.exit_code == 0
    assert [t["name"] for t in json.loads(res.stdout)["traces"]] == ["a", "b"]


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--deadline-hours", "12"], "even on-demand misses it"),
        (["--trace", "nope.json"], "not found"),
    ],
)
def test_errors_are_one_line_exit_2(runner, tmp_path: Path, extra: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    args = ["backtest", "--job-hours", "12", "--deadline-hours", "15"]
    if "--trace" not in extra:
        args += ["--trace", str(_trace(tmp_path))]
    res = runner.invoke(app, args + extra)
    assert res.exit_code == 2
    assert message in res.output
    assert "Traceback" not in res.output


def test_trace_too_short(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "short.json"
    p.write_text(json.dumps({"metadata": {"gap_seconds": 600}, "data": [1] * 10}))
    res = runner.invoke(app, [*BASE, "--trace", str(p)])
    assert res.exit_code == 2 and "no trace is long enough" in res.output


def test_real_traces(runner, shared_data: Path) -> None:  # type: ignore[no-untyped-def]
    folder = shared_data / "skypilot-spot-traces/availability/1-node/aws-10-26-2022"
    res = runner.invoke(
        app,
        ["backtest", "--trace", str(folder / "us-west-2a_v100_1.json"), "--job-hours", "48",
         "--deadline-hours", "52", "--starts", "3", "-o", "json"],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert all(p["deadline_misses"] == 0 for p in doc["policies"])


def test_same_seed_same_json(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    t = _trace(tmp_path)
    runs = []
    for _ in range(2):
        res = runner.invoke(app, [*BASE, "--trace", str(t), "-o", "json", "--seed", "7"])
        assert res.exit_code == 0, res.output
        doc = json.loads(res.stdout)
        doc.pop("generated_at")
        runs.append(doc)
    assert runs[0] == runs[1]
    other = json.loads(runner.invoke(app, [*BASE, "--trace", str(t), "-o", "json", "--seed", "8"]).stdout)
    assert [s["start_tick"] for s in other["starts"]] != [s["start_tick"] for s in runs[0]["starts"]]


def test_job_hours_required_without_inventory(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    res = runner.invoke(app, ["backtest", "--trace", str(_trace(tmp_path)), "--deadline-hours", "10"])
    assert res.exit_code == 2
    assert "--job-hours is required" in res.stderr


def test_cli_choices_are_the_library_names() -> None:
    # The CLI spells its choices out (importing the library would load numpy for `--help`).
    from spotplan.backtest.policies import POLICY_NAMES
    from spotplan.backtest.traces import FORMATS
    from spotplan.cli.backtest import PolicyName, TraceFormat

    assert tuple(p.value for p in PolicyName) == POLICY_NAMES
    assert tuple(f.value for f in TraceFormat) == tuple(FORMATS)


@pytest.mark.parametrize(
    "name,text",
    [
        ("meta.json", '{"metadata": [600], "data": [1, 1]}'),
        ("meta2.json", '{"metadata": "x", "data": [1, 1]}'),
        ("inf.json", '{"metadata": {"gap_seconds": 600}, "data": [1, Infinity]}'),
        ("big.json", '{"metadata": {"gap_seconds": 600}, "data": [1, 1e30]}'),
        ("frac.json", '{"metadata": {"gap_seconds": 600}, "data": [1, 1.7]}'),
        ("nan.csv", "0,1\n60,nan\n120,1\n"),
        ("inf.csv", "0,1\n60,inf\n120,1\n"),
        ("tnan.csv", "0,1\nnan,1\n120,1\n"),
        ("array.json", "[1, 2, 3]\n"),
    ],
)
def test_corrupt_trace_is_one_line_exit_2(runner, tmp_path: Path, name: str, text: str) -> None:  # type: ignore[no-untyped-def]
    import warnings

    p = tmp_path / name
    p.write_text(text)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy cast warning would be garbage read, not refused
        res = runner.invoke(app, [*BASE, "--trace", str(p)])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0], res.stderr
    assert "Warning" not in res.stderr and "Traceback" not in res.output
    if name == "array.json":
        assert "a JSON array is not a supported trace format" in lines[0]


def _json(runner, args: list[str]) -> dict:  # type: ignore[no-untyped-def,type-arg]
    res = runner.invoke(app, [*args, "-o", "json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def test_repeated_policy_is_replayed_once(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    t = str(_trace(tmp_path))
    doc = _json(runner, [*BASE, "--trace", t, "--policy", "greedy", "--policy", "optimal", "--policy", "greedy"])
    assert [p["name"] for p in doc["policies"]] == ["greedy", "optimal"]
    assert all(p["runs"] == 4 for p in doc["policies"])
    greedy = doc["policies"][0]
    assert greedy["mean_cost_vs_optimal"] is not None and greedy["mean_cost_vs_optimal"] >= 1.0


def test_ratios_to_optimal_without_optimal_selected(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    t = str(_trace(tmp_path, prices=True))
    some = _json(runner, [*BASE, "--trace", t, "--policy", "uniform-progress", "--policy", "greedy"])
    every = _json(runner, [*BASE, "--trace", t])
    # the optimum is solved for the ratios but not listed as a policy
    assert [p["name"] for p in some["policies"]] == ["uniform-progress", "greedy"]
    assert all(set(s["costs"]) == {"uniform-progress", "greedy"} for s in some["starts"])
    for p in some["policies"]:
        full = next(q for q in every["policies"] if q["name"] == p["name"])
        for key in ("mean_cost_vs_optimal", "mean_ratio_to_optimal", "p75_ratio_to_optimal"):
            assert p[key] is not None and p[key] == full[key], key
    table = runner.invoke(app, [*BASE, "--trace", t, "--policy", "greedy"])
    assert table.exit_code == 0, table.output
    row = next(line for line in table.stdout.splitlines() if line.strip().startswith("greedy"))
    assert row.count("×") == 2  # vs optimal and the P75 ratio, not "-"
    assert "optimum's mean cost on the same starts (solved, though not listed)" in table.stdout


def test_optimal_ratio_is_exactly_one(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # costs with many decimals (600 s ticks, d = 0.2 h, $0.9731 spot) once gave 0.99999999783
    doc = _json(runner, [*BASE, "--starts", "20", "--trace", str(_trace(tmp_path)), "--trace",
                         str(_trace(tmp_path, "b.json", seed=3, prices=True))])
    opt = next(p for p in doc["policies"] if p["name"] == "optimal")
    assert opt["mean_cost_vs_optimal"] == 1.0
    assert opt["mean_ratio_to_optimal"] == 1.0 and opt["p75_ratio_to_optimal"] == 1.0
    # the summary is the per-start costs' own: it can be recomputed from the JSON exactly
    for p in doc["policies"]:
        costs = np.array([s["costs"][p["name"]] for s in doc["starts"]])
        opt_costs = np.array([s["costs"]["optimal"] for s in doc["starts"]])
        assert p["mean_cost"] == float(np.mean(costs))
        assert p["mean_cost_vs_optimal"] == float(np.mean(costs) / np.mean(opt_costs))


@pytest.mark.parametrize(
    "policies,shown",
    [
        ([], "spotplan"),
        (["greedy", "optimal", "spotplan"], "spotplan"),
        (["optimal", "uniform-progress", "greedy"], "uniform-progress"),
        (["greedy", "optimal"], "greedy"),
        (["optimal"], None),
    ],
)
def test_timeline_policy(runner, tmp_path: Path, policies: list[str], shown: str | None) -> None:  # type: ignore[no-untyped-def]
    png = tmp_path / "bt.png"
    args = [*BASE, "--trace", str(_trace(tmp_path)), "--png", str(png)]
    for p in policies:
        args += ["--policy", p]
    doc = _json(runner, args)
    assert (doc["example"] or {}).get("policy") == shown
    assert png.read_bytes()[:4] == b"\x89PNG"


def _extents(collection) -> list[tuple[float, float]]:  # type: ignore[no-untyped-def]
    """The x ranges of a drawn bar collection, in data units (hours)."""
    return [(round(b.x0, 9), round(b.x1, 9)) for b in (p.get_extents() for p in collection.get_paths())]


def test_timeline_draws_whole_ticks() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spotplan.backtest.plot import draw_timeline

    fig, ax = plt.subplots()
    try:
        # the audit's case: on-demand for ticks 1-4 is 1-5 h, spot available for ticks 3-5 is 3-6 h
        ex = {"trace": "gs", "policy": "greedy", "start_tick": 0, "gap_seconds": 3600,
              "available": [0, 0, 0, 1, 1, 1], "actions": [0, 2, 2, 2, 2, 0]}
        drawn = draw_timeline(ax, ex)
        assert _extents(drawn["on-demand"]) == [(1.0, 5.0)]
        assert _extents(drawn["spot available"]) == [(3.0, 6.0)]
        assert _extents(drawn["idle"]) == [(0.0, 1.0), (5.0, 6.0)]
        assert _extents(drawn["spot"]) == []
        # one-tick choices are bars one tick wide (here half-hour ticks); they used to vanish
        ex2 = {**ex, "gap_seconds": 1800, "available": [1, 0, 1, 1], "actions": [1, 0, 1, 2]}
        ax.clear()
        drawn = draw_timeline(ax, ex2)
        assert _extents(drawn["spot"]) == [(0.0, 0.5), (1.0, 1.5)]
        assert _extents(drawn["on-demand"]) == [(1.5, 2.0)]
        assert _extents(drawn["idle"]) == [(0.5, 1.0)]
        assert _extents(drawn["spot available"]) == [(0.0, 0.5), (1.0, 2.0)]
    finally:
        plt.close(fig)


@pytest.mark.parametrize(
    "flag,value",
    [
        ("--job-hours", "nan"),
        ("--deadline-hours", "inf"),
        ("--changeover-hours", "nan"),
        ("--spot-price", "nan"),
        ("--on-demand-price", "inf"),
        ("--on-demand-price", "0"),
    ],
)
def test_non_finite_or_bad_numbers_name_the_flag(runner, tmp_path: Path, flag: str, value: str) -> None:  # type: ignore[no-untyped-def]
    # NaN used to pass every check (exit 1 from deep in the grid, or NaN in exit-0 JSON)
    res = runner.invoke(app, [*BASE, "--trace", str(_trace(tmp_path)), flag, value, "-o", "json"])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0], res.stderr
    assert res.stdout == ""


def test_negative_seed_is_a_usage_error(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    res = runner.invoke(app, [*BASE, "--trace", str(_trace(tmp_path)), "--seed", "-1"])
    assert res.exit_code == 2 and "--seed" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "where,message",
    [("in-a-file/bt.png", "cannot write"), ("bt.pdf", "ending in .png")],
)
def test_unusable_png_is_refused_before_the_replay(runner, tmp_path: Path, where: str, message: str) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "in-a-file").write_text("a file, not a folder")
    png = tmp_path / where
    res = runner.invoke(app, [*BASE, "--trace", str(_trace(tmp_path)), "--png", str(png), "-o", "json"])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {png}: ") and message in lines[0], res.stderr
    assert not png.exists()


def test_png_is_written_after_the_result(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # a chart that fails late must not take the result with it
    png = tmp_path / "new" / "bt.png"
    res = runner.invoke(app, [*BASE, "--trace", str(_trace(tmp_path)), "--png", str(png), "-o", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["schema"] == "spotplan.backtest/1"
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert list((tmp_path / "new").iterdir()) == [png]  # the writability probe left nothing behind


def _missing_trace(tmp_path: Path) -> Path:
    # 15-minute ticks, spot for the first hour only: with C = 2 h, R = 2.75 h, d = 0.5 h Greedy
    # and Uniform Progress ride the hour of spot and then miss; finished afterwards on on-demand
    # they cost less than the optimum, which meets the deadline on on-demand
    p = tmp_path / "miss.json"
    p.write_text(json.dumps({"metadata": {"gap_seconds": 900}, "data": [1, 1, 1, 1] + [0] * 8}))
    return p


def test_ratios_of_a_policy_that_missed_are_marked(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    args = ["backtest", "--trace", str(_missing_trace(tmp_path)), "--job-hours", "2", "--deadline-hours", "2.75",
            "--changeover-hours", "0.5", "--spot-price", "1", "--on-demand-price", "3"]
    doc = _json(runner, args)
    greedy = next(p for p in doc["policies"] if p["name"] == "greedy")
    assert greedy["deadline_misses"] > 0 and greedy["mean_cost_vs_optimal"] < 1
    for fmt in ("table", "markdown"):
        res = runner.invoke(app, [*args, "-o", fmt])
        assert res.exit_code == 0, res.output
        rows = {line.split()[1 if fmt == "markdown" else 0]: line for line in res.stdout.splitlines()
                if line.strip().startswith(("greedy", "optimal", "| greedy", "| optimal"))}
        assert "0.967×†" in rows["greedy"] and "†" not in rows["optimal"], res.stdout
        assert "† greedy, uniform-progress missed deadlines" in res.stdout


def test_traces_sharing_a_file_name_get_distinct_names(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # the docs' own example loads us-west-2b_v100_1 from two trace sets
    (tmp_path / "set-a").mkdir()
    (tmp_path / "set-b").mkdir()
    a = _trace(tmp_path / "set-a", "zone.json", seed=0)
    b = _trace(tmp_path / "set-b", "zone.json", seed=1)
    other = _trace(tmp_path, "other.json", seed=2)
    doc = _json(runner, [*BASE, "--trace", str(a), "--trace", str(b), "--trace", str(other), "--policy", "greedy"])
    names = [t["name"] for t in doc["traces"]]
    assert names == ["set-a/zone", "set-b/zone", "other"]
    assert [s["trace"] for s in doc["starts"]] == [n for n in names for _ in range(4)]
    assert doc["example"]["trace"] == "set-a/zone"


def test_a_file_given_twice_is_replayed_once(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    t = _trace(tmp_path)
    again = tmp_path / "." / t.name
    doc = _json(runner, [*BASE, "--trace", str(t), "--trace", str(again), "--trace", str(tmp_path)])
    assert [tr["name"] for tr in doc["traces"]] == ["zone-a"]
    assert len(doc["starts"]) == 4
    assert f"{t}: given 3 times, replayed once" in doc["notes"]


def test_trace_help_says_the_flag_repeats_and_takes_folders(runner) -> None:  # type: ignore[no-untyped-def]
    res = runner.invoke(app, ["backtest", "--help"], env={"COLUMNS": "400"})
    assert res.exit_code == 0
    text = " ".join(res.stdout.split())
    assert "repeat the flag for more" in text and "--trace a.json --trace b.json" in text
    assert "not in sub-folders" in text


def test_gang_no_trace_can_hold_is_a_usage_error(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    res = runner.invoke(app, [*BASE, "--trace", str(_trace(tmp_path)), "--instances", "5"])
    assert res.exit_code == 2, res.output
    assert "--instances 5: no trace ever shows 5 spot instances" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "name,text,message",
    [("empty.json", '{"metadata": {"gap_seconds": 600}, "data": []}', "no ticks"), ("zero.json", "", "empty file")],
)
def test_empty_trace_is_named(runner, tmp_path: Path, name: str, text: str, message: str) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / name
    p.write_text(text)
    res = runner.invoke(app, [*BASE, "--trace", str(p)])
    assert res.exit_code == 2
    assert res.stderr.strip() == f"error: {p}: {message}" + (" ('data' is empty)" if name == "empty.json" else "")


def test_missing_inventory_is_reported_before_the_traces_are_read(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    short = tmp_path / "short.json"
    short.write_text(json.dumps({"metadata": {"gap_seconds": 600}, "data": [1] * 10}))
    res = runner.invoke(app, ["backtest", "--trace", str(short), "--inventory", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 2
    assert "nope.yaml" in res.stderr and "long enough" not in res.stderr


def test_job_rounded_to_the_grain_is_reported(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "hourly.json"
    p.write_text(json.dumps({"metadata": {"gap_seconds": 3600}, "data": [1] * 8}))
    args = ["backtest", "--trace", str(p), "--job-hours", "0.123", "--deadline-hours", "4", "--changeover-hours",
            "0.5", "--spot-price", "1", "--on-demand-price", "3", "--policy", "on-demand"]
    doc = _json(runner, args)
    tr = doc["traces"][0]
    assert tr["compute_hours_effective"] == 0.125 and tr["changeover_hours_effective"] == 0.5
    od = doc["policies"][0]
    assert od["mean_cost"] == pytest.approx((0.125 + 0.5) * 3)
    md = runner.invoke(app, [*args, "-o", "markdown"])
    assert "- At the 3600 s tick the job is 0.125 h (rounded up to the 450 s grain)." in md.stdout
    exact = [*args[:3], "--job-hours", "2", *args[5:]]
    assert _json(runner, exact)["traces"][0]["compute_hours_effective"] == 2.0
    assert "the job is" not in runner.invoke(app, [*exact, "-o", "markdown"]).stdout
