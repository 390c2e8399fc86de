"""The local price store: dedup, one history per pool, as-of, atomic all-or-nothing writes."""

from __future__ import annotations

import pandas as pd
import pytest

from spotplan.paths import price_store_dir
from spotplan.pricing import store


def _rows(times: list[str], price: float = 1.0, provider: str = "aws", zone: str = "us-east-1a") -> pd.DataFrame:
    return pd.DataFrame([
        {"provider": provider, "region": "us-east-1", "zone": zone, "instance_type": "p3.2xlarge",
         "gpu_model": "NVIDIA V100", "gpu_count": 1, "market": "spot", "price_per_hour": price + i,
         "observed_at": t, "source": "test"}
        for i, t in enumerate(times)
    ])


def test_empty_store_reads_none() -> None:
    assert store.read_store() is None
    assert store.store_as_of() == {}


def test_merge_dedups_equal_instants_in_any_spelling() -> None:
    r1 = store.merge_into_store(_rows(["2026-11-01T10:00:00Z", "2026-11-01T11:00:00Z"]))
    assert r1.added == {"aws": 2}
    assert (price_store_dir() / "aws.parquet").exists()
    # Same first instant spelled differently, plus one new point.
    r2 = store.merge_into_store(_rows(["2026-11-01T10:00:00+00:00", "2026-11-01T12:30:00.000Z"]))
    assert r2.added == {"aws": 1}
    assert r2.total == {"aws": 3}
    df = store.read_store()
    assert df is not None and len(df) == 3
    assert df["gpu_model"].unique().tolist() == ["V100"]  # normalised on the way in
    assert sorted(df["observed_at"]) == ["2026-11-01T10:00:00Z", "2026-11-01T11:00:00Z", "2026-11-01T12:30:00Z"]
    assert store.store_as_of() == {"aws": "2026-11-01T12:30:00Z"}


def test_one_file_per_provider_and_as_of_per_provider() -> None:
    store.merge_into_store(pd.concat([
        _rows(["2026-10-01"]), _rows(["2026-11-02T08:00:00Z"], provider="gcp", zone=""),
    ]))
    assert store.store_as_of() == {"aws": "2026-10-01T00:00:00Z", "gcp": "2026-11-02T08:00:00Z"}
    newest = store.newest_observations("gcp", "spot").get("us-east-1")
    assert newest is not None and newest.isoformat() == "2026-11-02T08:00:00+00:00"
    assert store.newest_observations("azure", "spot").get("eastus") is None


def test_failed_write_leaves_store_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    store.merge_into_store(_rows(["2026-11-01T10:00:00Z"]))
    before = (price_store_dir() / "aws.parquet").read_bytes()
    calls = {"n": 0}
    real = pd.DataFrame.to_parquet

    def flaky(self, path, *a, **k):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:  # the second provider's file fails after the first one was staged
            raise OSError("disk full")
        return real(self, path, *a, **k)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", flaky)
    with pytest.raises(OSError):
        store.merge_into_store(pd.concat([
            _rows(["2026-11-01T11:00:00Z"]), _rows(["2026-11-01T11:00:00Z"], provider="gcp", zone=""),
        ]))
    assert (price_store_dir() / "aws.parquet").read_bytes() == before
    assert not (price_store_dir() / "gcp.parquet").exists()
    assert [p.name for p in price_store_dir().iterdir() if p.name.startswith(".aws")] == []
