"""`spotplan prices history`: terminal chart, PNG and statistics of a real history (Cyclenerd's GCP
weekly price changes, imported through the CLI)."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from spotplan.cli.main import app

pytestmark = pytest.mark.timeout(60)
NOW = datetime(2026, 8, 1, tzinfo=timezone.utc)


@pytest.fixture
def gcp_history(runner, shared_data: Path) -> Path:
    f = shared_data / "cyclenerd-gcp-pricing/gcp_gpu_price_changes.csv"
    res = runner.invoke(app, ["prices", "import", str(f)])
    assert res.exit_code == 0, res.output
    return f


def _source_points(f: Path, market_col: str) -> list[tuple[datetime, float]]:
    pts = []
    with open(f) as fh:
        for r in csv.DictReader(fh):
            if r["machine_type"] == "a3-highgpu-8g" and r["region"] == "us-central1" and r[market_col]:
                pts.append((datetime.fromisoformat(r["snapshot_time"]).astimezone(timezone.utc), float(r[market_col])))
    return sorted(pts)


def test_history_stats_match_source(runner, gcp_history: Path) -> None:
    days = 365
    res = runner.invoke(app, ["prices", "history", "a3-highgpu-8g", "--provider", "gcp", "--region", "us-central1",
                              "--days", str(days), "--now", NOW.isoformat(), "-o", "json"])
    assert res.exit_code == 0, res.output
    rows = {r["market"]: r for r in json.loads(res.stdout)["rows"]}
    pts = _source_points(gcp_history, "hour_spot")
    start = NOW - timedelta(days=days)
    # Time-weighted mean of the step function over the window, worked from the source rows.
    total = 0.0
    for i, (t, p) in enumerate(pts):
        a = max(t, start)
        b = pts[i + 1][0] if i + 1 < len(pts) else NOW
        total += p * max((b - a).total_seconds(), 0)
    # (rel 1e-7: the bundled snapshot adds the 2026-07-30 quote, rounded to 50.609541)
    assert rows["spot"]["mean"] == pytest.approx(total / (days * 86400), rel=1e-7)
    changes = sum(1 for (t0, p0), (t1, p1) in zip(pts, pts[1:]) if t1 > start and p1 != p0)
    assert rows["spot"]["changes"] == changes and changes >= 5
    assert rows["spot"]["latest_price"] == pytest.approx(50.6095408219178)
    assert rows["on-demand"]["latest_price"] == pytest.approx(88.4899999025753)


def test_history_terminal_chart_and_png(runner, gcp_history: Path, tmp_path: Path) -> None:
    png = tmp_path / "charts" / "a3.png"
    res = runner.invoke(app, ["prices", "history", "a3-highgpu-8g", "--provider", "gcp", "--region", "us-central1",
                              "--days", "365", "--now", NOW.isoformat(), "--png", str(png)])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0] == "a3-highgpu-8g gcp us-central1: spot vs on-demand, last 365 days"
    spot_line = next(line for line in lines if line.startswith("spot (region)"))
    od_line = next(line for line in lines if line.startswith("on-demand"))
    assert len(set(spot_line.split("  ")[1].strip())) > 2  # the series moves across several levels
    assert "█" in od_line  # on-demand is the top of the scale
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    from PIL import Image

    with Image.open(png) as im:
        assert im.size == (1100, 572)
        # The spot line: some pixels of matplotlib's first colour (C0 = #1f77b4).
        colours = {c for _, c in (im.convert("RGB").getcolors(1 << 24) or [])}
        assert (31, 119, 180) in colours


def test_history_without_data_is_exit_2(runner) -> None:
    res = runner.invoke(app, ["prices", "history", "x9.huge", "--provider", "aws", "--region", "us-east-1"])
    assert res.exit_code == 2
    assert "no price history for x9.huge" in res.output and "spotplan prices pull" in res.output


@pytest.fixture
def small_history(runner, tmp_path: Path) -> None:
    f = tmp_path / "table.csv"
    f.write_text(
        "provider,region,zone,instance_type,gpu_model,gpu_count,market,price_per_hour,observed_at\n"
        "azure,eastus,,Standard_NC24ads_A100_v4,A100-80GB,1,on-demand,3.67,2026-07-01T00:00:00Z\n"
        "azure,eastus,,Standard_NC24ads_A100_v4,A100-80GB,1,spot,1.10,2026-07-01T00:00:00Z\n"
        "azure,eastus,,Standard_NC24ads_A100_v4,A100-80GB,1,spot,1.30,2026-07-15T00:00:00Z\n"
    )
    assert runner.invoke(app, ["prices", "import", str(f)]).exit_code == 0


def test_history_matches_region_and_type_in_any_case(runner, small_history: None) -> None:
    # As `prices show --region` does: sizes and regions typed in another case find the same pool.
    args = ["--provider", "AZURE", "--region", "EastUS", "--days", "60", "--now", NOW.isoformat(), "-o", "json"]
    res = runner.invoke(app, ["prices", "history", "standard_nc24ads_a100_v4", *args])
    assert res.exit_code == 0, res.output
    rows = {r["market"]: r for r in json.loads(res.stdout)["rows"]}
    assert (rows["spot"]["latest_price"], rows["spot"]["changes"]) == (1.30, 1)
    assert rows["on-demand"]["latest_price"] == 3.67


def test_history_png_to_unwritable_path_is_exit_2_naming_it(runner, small_history: None, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the PNG's folder should be")
    png = blocker / "chart.png"
    res = runner.invoke(app, ["prices", "history", "Standard_NC24ads_A100_v4", "--provider", "azure",
                              "--region", "eastus", "--days", "60", "--now", NOW.isoformat(), "--png", str(png)])
    assert res.exit_code == 2, res.output
    lines = res.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {png}: cannot write: "), res.output
    assert ".tmp-" not in res.output
