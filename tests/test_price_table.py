"""The price table format (DESIGN.md §4.2): reading files and folders, normalising, validating."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from spotplan.errors import InputError
from spotplan.pricing.table import COLUMNS, latest_rows, normalize, normalize_band, read_price_paths


def _row(**kw: object) -> dict[str, object]:
    base: dict[str, object] = dict(provider="aws", region="us-east-1", zone="", instance_type="p4d.24xlarge",
                                   gpu_model="NVIDIA A100", gpu_count=8, market="spot", price_per_hour=9.5,
                                   interruption_band="", observed_at="2026-11-01", source="t")
    base.update(kw)
    return base


@pytest.mark.parametrize(
    ("raw", "band"),
    [("<5%", "<5%"), ("5-10 %", "5-10%"), ("10-15", "10-15%"), (">20%", ">20%"), ("", ""), (None, ""),
     (pd.NA, ""), (float("nan"), "")],
)
def test_band_spellings(raw: object, band: str) -> None:
    assert normalize_band(raw) == band


def test_normalize_vocabulary_and_columns() -> None:
    out = normalize(pd.DataFrame([_row(provider="AWS", market="Spot")]))
    assert list(out.columns) == list(COLUMNS)
    assert out.loc[0, "provider"] == "aws" and out.loc[0, "market"] == "spot"
    assert out.loc[0, "gpu_model"] == "A100-40GB"


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (dict(provider="oracle"), "provider"),
        (dict(market="reserved"), "market"),
        (dict(price_per_hour=-1.0), "price_per_hour"),
        (dict(price_per_hour="abc"), "price_per_hour"),
        (dict(interruption_band="30%"), "interruption_band"),
        (dict(region=""), "region"),
        (dict(price_per_hour=float("inf")), "price_per_hour"),
        (dict(gpu_count="one"), "gpu_count"),
        (dict(vcpus=-4), "vcpus"),
        (dict(memory_gib="lots"), "memory_gib"),
        (dict(observed_at="yesterday"), "observed_at"),
        (dict(observed_at="2025-13-45"), "observed_at"),
    ],
)
def test_bad_rows_name_row_and_field(bad: dict[str, object], field: str) -> None:
    df = pd.DataFrame([_row(), _row(**bad)])
    with pytest.raises(InputError) as err:
        normalize(df, origin="t.csv")
    assert str(err.value).startswith(f"t.csv: row 3: {field}")


def test_missing_column_is_named() -> None:
    with pytest.raises(InputError, match="missing column 'price_per_hour'"):
        normalize(pd.DataFrame([{"provider": "aws", "region": "r", "instance_type": "x", "market": "spot"}]))


def test_folder_of_csv_and_parquet(tmp_path: Path) -> None:
    pd.DataFrame([_row()]).to_csv(tmp_path / "a.csv", index=False)
    normalize(pd.DataFrame([_row(region="us-west-2")])).to_parquet(tmp_path / "b.parquet")
    table = read_price_paths([tmp_path])
    assert sorted(table["region"]) == ["us-east-1", "us-west-2"]
    with pytest.raises(InputError, match="no such file"):
        read_price_paths([tmp_path / "nope.csv"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="holds no"):
        read_price_paths([empty])


def test_latest_rows_keeps_newest_observation_per_pool() -> None:
    df = normalize(pd.DataFrame([_row(price_per_hour=1.0, observed_at="2026-01-01"),
                                 _row(price_per_hour=2.0, observed_at="2026-02-01")]))
    assert latest_rows(df)["price_per_hour"].tolist() == [2.0]


def test_empty_optional_fields_are_accepted() -> None:
    rows = [_row(gpu_count="", observed_at="", vcpus=None), _row(observed_at="2026-11-01T10:00:00+02:00")]
    out = normalize(pd.DataFrame(rows))
    assert pd.isna(out.loc[0, "gpu_count"]) and out.loc[0, "observed_at"] == ""
