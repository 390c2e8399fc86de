"""summarize() and the history helpers, checked against figures worked out by hand."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from spotplan.pricing.history import count_changes, history_stats, summarize

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)


def _row(zone: str, hours_ago: float, price: float, market: str = "spot", band: str = "") -> dict:
    t = NOW - timedelta(hours=hours_ago)
    return {
        "provider": "aws", "region": "us-east-1", "zone": zone, "instance_type": "p3.2xlarge",
        "gpu_model": "V100", "gpu_count": 1.0, "vcpus": 8.0, "memory_gib": 61.0, "market": market,
        "price_per_hour": price, "interruption_band": band,
        "observed_at": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "source": "test",
    }


def test_time_weighted_mean_over_window_by_hand() -> None:
    # 1.0 from -10h, 2.0 from -4h. Window 8h: 4h at 1.0 + 4h at 2.0 → 1.5 (the plain mean of
    # all quotes would also be 1.5, so add a third: 3.0 from -1h → 4h·1 + 3h·2 + 1h·3 = 13 / 8).
    df = pd.DataFrame([_row("us-east-1a", 10, 1.0), _row("us-east-1a", 4, 2.0), _row("us-east-1a", 1, 3.0)])
    out = summarize(df, window_hours=8, now=NOW)
    assert len(out) == 1
    r = out.iloc[0]
    assert r["price"] == pytest.approx(13 / 8)
    assert r["latest_price"] == 3.0
    # p95 of the prices in force, weighted by how long each held: 3.0 held 1h of 8h (12.5% > 5%),
    # so it is the p95 (a plain quantile of the three quotes would say 2.9, a price never charged).
    assert r["price_p95"] == pytest.approx(3.0)
    assert r["observations"] == 3
    assert r["as_of"] == "2026-11-01T11:00:00Z"


def test_window_wider_than_history_starts_at_first_point() -> None:
    # Window 48h but history only from -10h: 6h·1 + 3h·2 + 1h·3 = 15 over 10h.
    df = pd.DataFrame([_row("a", 10, 1.0), _row("a", 4, 2.0), _row("a", 1, 3.0)])
    assert summarize(df, 48, NOW).iloc[0]["price"] == pytest.approx(1.5)


def test_single_point_and_future_rows_and_zones() -> None:
    df = pd.DataFrame([
        _row("a", 5, 0.9),
        _row("a", -3, 9.9),  # in the future: ignored because the pool has a past
        _row("b", -2, 4.0),  # only future rows: kept, priced at its latest
        _row("", 30, 3.06, market="on-demand", band=""),
    ])
    out = summarize(df, 24, NOW).set_index(["zone", "market"])
    assert out.loc[("a", "spot"), "price"] == pytest.approx(0.9)
    assert out.loc[("b", "spot"), "price"] == pytest.approx(4.0)
    assert out.loc[("", "on-demand"), "price"] == pytest.approx(3.06)


def test_count_changes_counts_only_changes_inside_window() -> None:
    df = pd.DataFrame([
        _row("a", 50, 1.0),
        _row("a", 20, 1.0),
        _row("a", 10, 1.2),
        _row("a", 5, 1.1),
        _row("a", 30, 0.8),  # out of order on purpose
        _row("a", 4, 1.1),  # a repeated quote, not a change
    ])
    # In time order: -50 1.0, -30 0.8, -20 1.0, -10 1.2, -5 1.1, -4 1.1.
    # Inside 24h: 0.8→1.0 (-20h), 1.0→1.2, 1.2→1.1 = 3; inside 40h also 1.0→0.8 (-30h) = 4.
    assert count_changes(df, 24, NOW).iloc[0] == 3
    assert count_changes(df, 40, NOW).iloc[0] == 4


def test_rounding_differences_are_not_changes() -> None:
    df = pd.DataFrame([_row("a", 10, 50.6095408219178), _row("a", 5, 50.609541), _row("a", 2, 50.7)])
    assert count_changes(df, 24, NOW).iloc[0] == 1


def test_history_stats_adds_changes_column() -> None:
    df = pd.DataFrame([_row("a", 10, 1.0), _row("a", 4, 2.0), _row("b", 3, 5.0)])
    out = history_stats(df, 8, NOW).set_index("zone")
    assert out.loc["a", "changes"] == 1
    assert out.loc["b", "changes"] == 0
    assert out.loc["a", "price"] == pytest.approx(1.5)


def test_p95_weighs_each_price_by_how_long_it_held() -> None:
    # 1.0 for 29 days, 9.0 for the last minute of a 30-day window: 9.0 held 0.002% of it, so the
    # price in force 95% of the time is 1.0 (a plain quantile of the two quotes says 8.6).
    df = pd.DataFrame([_row("us-east-1a", 30 * 24, 1.0), _row("us-east-1a", 1 / 60, 9.0)])
    r = summarize(df, window_hours=30 * 24, now=NOW).iloc[0]
    assert r["price_p95"] == 1.0
    # Held for 10% of the window, the higher price is the p95.
    df = pd.DataFrame([_row("us-east-1a", 30 * 24, 1.0), _row("us-east-1a", 72, 9.0)])
    assert summarize(df, window_hours=30 * 24, now=NOW).iloc[0]["price_p95"] == 9.0
