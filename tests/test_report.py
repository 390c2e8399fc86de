"""The renderers of spotplan/report over the analysis result: golden files for every format, plus
the properties each format promises (json round-trips, csv parses back one row per workload,
markdown order, the coverage line, widths and colour of the table, scale)."""

from __future__ import annotations

import copy
import csv
import io
import json
import re
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spotplan.cli.common import OutputFormat
from spotplan.errors import InputError
from spotplan.models import AnalysisResult
from spotplan.report import FORMATS, render
from spotplan.report._format import cents, usd
from spotplan.report.csv import COLUMNS
from tests.golden import assert_golden

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
GOLDEN = HERE / "golden" / "report"
NAMES = ("mixed", "edge", "empty")
EXT = {"json": "json", "csv": "csv", "markdown": "md", "table": "txt"}
ANSI = re.compile(r"\x1b\[[0-9;]*m")

pytestmark = pytest.mark.timeout(60)


def load(name: str) -> AnalysisResult:
    return AnalysisResult.model_validate(json.loads((FIXTURES / f"analysis_{name}.json").read_text()))


def raw(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"analysis_{name}.json").read_text())


# ---- golden files ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", NAMES)
def test_golden(name: str, fmt: str, update_golden: bool) -> None:
    assert_golden(GOLDEN / f"{name}.{EXT[fmt]}", render(load(name), fmt, width=120), update_golden)


@pytest.mark.parametrize("name", ["mixed", "edge"])
def test_golden_table_at_80_columns(name: str, update_golden: bool) -> None:
    assert_golden(GOLDEN / f"{name}.80.txt", render(load(name), "table", width=80), update_golden)


def test_fixtures_cover_every_status_null_best_warnings_and_alternatives() -> None:
    workloads = load("mixed").workloads + load("edge").workloads
    assert {w.status for w in workloads} == {
        "recommended", "conditional", "not-worth-it", "ineligible", "already-spot",
    }
    assert any(w.best is None for w in workloads)
    assert any(w.warnings for w in workloads)
    assert any(len(w.alternatives) == 3 for w in workloads)
    assert {w.current.provider for w in workloads} == {"aws", "gcp", "azure"}
    assert load("empty").workloads == []


# ---- dispatch --------------------------------------------------------------------------------


def test_render_accepts_the_cli_enum_and_rejects_unknown_formats() -> None:
    result = load("mixed")
    assert render(result, OutputFormat.csv) == render(result, "csv")
    assert render(result, "MARKDOWN") == render(result, "markdown")
    with pytest.raises(InputError, match="unknown output format 'yaml'"):
        render(result, "yaml")


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_rendering_ends_with_one_newline(fmt: str) -> None:
    text = render(load("mixed"), fmt)
    assert text.endswith("\n") and not text.endswith("\n\n")


# ---- json ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_json_round_trips_through_the_model(name: str) -> None:
    result = load(name)
    text = render(result, "json")
    doc = json.loads(text)
    assert doc == result.to_json_dict()
    assert AnalysisResult.model_validate(doc) == result
    assert list(doc) == ["schema", "generated_at", "prices", "assumptions", "workloads", "totals"]
    assert text.startswith('{\n  "schema": "spotplan.analysis/1",\n')


def test_json_keeps_floats_unrounded_and_keys_in_schema_order() -> None:
    source = raw("mixed")
    doc = json.loads(render(load("mixed"), "json"))
    best = doc["workloads"][0]["best"]
    assert best["cost"] == source["workloads"][0]["best"]["cost"]
    assert best["cost"] != round(best["cost"], 2)
    # the §4.3 fields in schema order, then extensions
    assert list(best) == [
        "provider", "region", "zone", "instance_type", "price_per_hour", "interruption_band",
        "mtbf_hours", "expected_interruptions", "lost_hours_per_interruption", "restart_hours",
        "wall_hours", "wall_hours_p90", "cost", "cost_p90", "migration_cost", "savings", "savings_pct",
        "recommended_checkpoint_minutes", "price_per_hour_p95",
    ]
    assert list(doc["workloads"][0]["current"]) == [
        "provider", "region", "instance_type", "market", "count", "price_per_hour", "hours", "cost",
    ]


# ---- csv -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_csv_has_one_row_per_workload_and_parses_back(name: str) -> None:
    result = load(name)
    reader = csv.DictReader(io.StringIO(render(result, "csv")))
    rows = list(reader)
    assert tuple(reader.fieldnames or ()) == COLUMNS
    assert len(rows) == len(result.workloads)
    for row, w in zip(rows, result.workloads):
        assert row["id"].removeprefix("'") == w.id
        assert row["status"] == w.status
        assert row["reasons"] == ";".join(r.code for r in w.reasons)
        assert row["warnings"] == ";".join(r.code for r in w.warnings)
        assert int(row["current_count"]) == w.current.count
        assert int(row["alternatives"]) == len(w.alternatives)
        if w.current.cost is None:
            assert row["current_cost"] == ""
        else:
            assert abs(float(row["current_cost"]) - w.current.cost) <= 0.005 + 1e-9
        if w.best is None:
            assert all(row[c] == "" for c in COLUMNS if c.startswith("best_"))
        else:
            assert row["best_provider"] == w.best.provider
            assert row["best_zone"] == (w.best.zone or "")
            assert Decimal(row["best_savings"]) == Decimal(cents(w.best.savings))
            assert abs(float(row["best_wall_hours_p90"]) - w.best.wall_hours_p90) <= 0.005 + 1e-9


def test_csv_columns_flatten_the_schema_in_order() -> None:
    assert COLUMNS[:4] == ("id", "status", "reasons", "warnings")
    assert COLUMNS[4:12] == tuple(
        f"current_{f}" for f in
        ("provider", "region", "instance_type", "market", "count", "price_per_hour", "hours", "cost")
    )
    from spotplan.models import OfferResult

    assert COLUMNS[12:-1] == tuple(f"best_{f}" for f in OfferResult.model_fields)
    assert COLUMNS[-1] == "alternatives"


def test_csv_money_in_cents_and_other_numbers_at_full_precision() -> None:
    result = load("mixed")
    rows = list(csv.DictReader(io.StringIO(render(result, "csv"))))
    for row in rows:
        for col in ("current_cost", "best_cost", "best_cost_p90", "best_migration_cost", "best_savings"):
            assert row[col] == "" or re.fullmatch(r"-?\d+\.\d\d", row[col]), (col, row[col])
    # hours and rates are not rounded: the CSV alone recomputes the cost model
    by_id = {w.id: w for w in result.workloads}
    for row in rows:
        best = by_id[row["id"].lstrip("'")].best
        if best is not None:
            assert float(row["best_wall_hours"]) == best.wall_hours
            assert float(row["best_lost_hours_per_interruption"]) == best.lost_hours_per_interruption
            assert float(row["best_price_per_hour"]) == best.price_per_hour


def test_csv_defuses_spreadsheet_formulas_in_ids() -> None:
    rows = list(csv.DictReader(io.StringIO(render(load("edge"), "csv"))))
    assert rows[0]["id"] == "'" + load("edge").workloads[0].id
    assert not any(row["id"].startswith(("=", "+", "-", "@")) for row in rows)


def test_csv_defuses_formulas_in_every_text_cell() -> None:
    # Zones and regions come from user price tables too, not only ids.
    result = load("edge")
    best = next(w for w in result.workloads if w.best is not None).best
    assert best is not None
    best.zone = "=HYPERLINK(\"http://x\")"
    rows = list(csv.DictReader(io.StringIO(render(result, "csv"))))
    assert '\'=HYPERLINK("http://x")' in [row["best_zone"] for row in rows]


# ---- markdown --------------------------------------------------------------------------------


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_markdown_leads_with_the_total_then_candidates_then_the_rest_then_assumptions() -> None:
    result = load("mixed")
    text = render(result, "markdown")
    order = [text.index(s) for s in ("**Total savings: $5,962.56 (18.1%)**", "## Candidates",
                                     "## Not moved", "## Assumptions")]
    assert order == sorted(order)
    assert "over 3 recommended + 2 conditional workloads" in text.splitlines()[2]
    candidates, rest = _section(text, "Candidates"), _section(text, "Not moved")
    for w in result.workloads:
        home, other = (candidates, rest) if w.status in ("recommended", "conditional") else (rest, candidates)
        assert f"| {w.id} |" in home and f"| {w.id} |" not in other
    # recommended rows come before conditional ones
    assert candidates.index("| llm-pretrain |") < candidates.index("| batch-embed |")
    # every reason message of the rest is spelled out
    for w in result.workloads:
        if w.status not in ("recommended", "conditional"):
            assert all(r.message in rest for r in w.reasons)


def test_markdown_lists_every_assumption_and_the_prices_source() -> None:
    result = load("mixed")
    assumptions = _section(render(result, "markdown"), "Assumptions")
    assert f"- prices: {result.prices.source}\n" in assumptions
    assert f"- prices as of: {result.prices.as_of}\n" in assumptions
    for key in result.assumptions:
        assert f"- {key}: " in assumptions
    assert "- mtbf_hours_by_band: <5%: 156, 5-10%: 49, 10-15%: 28, 15-20%: 19, >20%: 12\n" in assumptions


def test_markdown_escapes_pipes_and_newlines_inside_cells() -> None:
    text = render(load("edge"), "markdown")
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows and all(re.sub(r"\\\|", "", line).count("|") in (6, 12) for line in rows)
    assert "in azure/southafricanorth \\| scope region see --scope any" in text


def test_markdown_ends_with_the_coverage_line() -> None:
    text = render(load("mixed"), "markdown")
    assert text.splitlines()[-1].startswith(
        "_10 workloads: 3 recommended, 2 conditional, 1 not-worth-it, 1 already-spot, 3 ineligible."
    )


# ---- coverage line ---------------------------------------------------------------------------


def _with_statuses(statuses: list[str]) -> AnalysisResult:
    doc = raw("mixed")
    by_status = {w["status"]: w for w in doc["workloads"]}
    doc["workloads"] = [dict(copy.deepcopy(by_status[s]), id=f"w{i}") for i, s in enumerate(statuses)]
    counts = Counter(statuses)
    doc["totals"].update(workloads=len(statuses), recommended=counts["recommended"],
                         conditional=counts["conditional"])
    return AnalysisResult.model_validate(doc)


@pytest.mark.parametrize(
    ("statuses", "line"),
    [
        (["recommended"] * 7 + ["conditional"] * 2 + ["ineligible"] * 3,
         "12 workloads: 7 recommended, 2 conditional, 3 ineligible"),
        (["recommended"] * 7 + ["conditional"] * 2 + ["not-worth-it", "already-spot", "ineligible"],
         "12 workloads: 7 recommended, 2 conditional, 1 not-worth-it, 1 already-spot, 1 ineligible"),
        (["ineligible", "already-spot"], "2 workloads: 0 recommended, 0 conditional, 1 already-spot, 1 ineligible"),
        (["conditional"], "1 workload: 0 recommended, 1 conditional"),
    ],
)
def test_coverage_line_counts_statuses(statuses: list[str], line: str) -> None:
    result = _with_statuses(statuses)
    assert render(result, "table", width=120).splitlines()[-1] == line
    assert render(result, "markdown").splitlines()[-1].startswith(f"_{line}.")


# ---- table -----------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [80, 100, 120, 160])
@pytest.mark.parametrize("name", ["mixed", "edge"])
def test_table_fits_the_width_and_never_cuts_a_number(name: str, width: int) -> None:
    result = load(name)
    text = render(result, "table", width=width)
    lines = text.splitlines()
    assert all(len(line) <= width for line in lines[:-1]), "\n".join(lines)
    assert "…" not in text
    for w in result.workloads:
        if w.current.cost is not None:
            assert usd(w.current.cost) in text
        if w.best is not None:
            assert usd(w.best.savings) in text
        for code in [r.code for r in w.warnings]:
            assert code in text
    t = result.totals
    assert re.search(rf"^TOTAL .*{re.escape(usd(t.current_cost))} .*{re.escape(usd(t.savings))}", text, re.M)


def test_table_at_120_columns_shows_every_column() -> None:
    header = render(load("mixed"), "table", width=120).splitlines()[0].split()
    assert header == ["Workload", "Status", "Current", "→", "best", "target", "Current", "$", "Spot", "$*",
                      "Savings", "$", "%", "Intr.", "P90", "h"]


@pytest.mark.parametrize("columns", [80, 200])
def test_table_defaults_to_the_terminal_width(columns: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    assert render(load("mixed"), "table") == render(load("mixed"), "table", width=columns)


def test_table_groups_rows_by_status_candidates_first() -> None:
    text = render(load("mixed"), "table", width=160)
    found = [m.group(1) for m in re.finditer(
        r"\b(recommended|conditional|not-worth-it|already-spot|ineligible)\b", text.split("TOTAL")[0])]
    ranks = ["recommended", "conditional", "not-worth-it", "already-spot", "ineligible"]
    assert [ranks.index(s) for s in found] == sorted(ranks.index(s) for s in found)


def test_table_footnote_states_the_assumptions() -> None:
    text = " ".join(render(load("mixed"), "table", width=120).split())
    assert ("Spot prices: time-weighted mean over 30d of bundled snapshot pricing_data/v1, as of 2026-11-01; "
            "MTBF by band: <5% 156 h, 5-10% 49 h, 10-15% 28 h, 15-20% 19 h, >20% 12 h; "
            "Monte Carlo P90 over 2000 runs, seed 0.") in text


def test_table_colours_statuses_only_when_asked() -> None:
    result = load("mixed")
    plain = render(result, "table", color=False, width=120)
    assert "\x1b" not in plain
    coloured = render(result, "table", color=True, width=120)
    for status, code in [("recommended", "32"), ("conditional", "33"), ("not-worth-it", "2;35"),
                         ("ineligible", "31"), ("already-spot", "36")]:
        assert f"\x1b[{code}m{status}\x1b[0m" in coloured
    assert ANSI.sub("", coloured) == plain


# ---- numbers ---------------------------------------------------------------------------------


@given(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False))
def test_usd_rounds_to_cents(x: float) -> None:
    text = usd(x)
    assert re.fullmatch(r"-?\$\d{1,3}(,\d{3})*\.\d\d", text)
    assert text != "-$0.00"
    value = Decimal(text.replace("$", "").replace(",", ""))
    assert abs(value - Decimal(repr(x))) <= Decimal("0.005")


def test_money_rounds_half_up_as_people_expect() -> None:
    assert [cents(v) for v in (1.005, 0.125, 2.675, -0.004, 1234.5)] == ["1.01", "0.13", "2.68", "0.00", "1234.50"]
    assert cents(1e30) == f"{1e30:.2f}" and cents(None) == "" and cents(float("inf")) == "inf"
    assert usd(-1234567.891) == "-$1,234,567.89" and usd(None) == "-"


# ---- scale -----------------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_ten_thousand_workloads_render_in_every_format() -> None:
    doc = raw("mixed")
    base = doc["workloads"]
    doc["workloads"] = [dict(base[i % len(base)], id=f"{base[i % len(base)]['id']}-{i}") for i in range(10_000)]
    result = AnalysisResult.model_validate(doc)
    assert len(list(csv.reader(io.StringIO(render(result, "csv"))))) == 10_001
    assert len(json.loads(render(result, "json"))["workloads"]) == 10_000
    markdown = render(result, "markdown").splitlines()
    assert sum(line.startswith("| ") and not line.startswith("| Workload |") for line in markdown) == 10_000
    table = render(result, "table", width=120)
    assert table.splitlines()[-1].startswith("10000 workloads: 3000 recommended, 2000 conditional")


# ---- the golden helper -----------------------------------------------------------------------


def test_assert_golden_fails_with_a_diff_then_updates(tmp_path: Path) -> None:
    path = tmp_path / "g" / "x.txt"
    with pytest.raises(pytest.fail.Exception, match="--update-golden"):
        assert_golden(path, "a\nb\n", update=False)
    assert_golden(path, "a\nb\n", update=True)
    assert_golden(path, "a\nb\n", update=False)
    with pytest.raises(pytest.fail.Exception) as info:
        assert_golden(path, "a\nc\n", update=False)
    assert "-b\n+c\n" in str(info.value)
