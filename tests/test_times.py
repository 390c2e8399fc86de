"""`spotplan.times`: the one reading of durations (`--interval`, `--window`) and ISO times."""

from __future__ import annotations

import pytest

from spotplan.analysis import parse_window
from spotplan.errors import InputError
from spotplan.times import iso_z, parse_duration, parse_iso


@pytest.mark.parametrize("text,seconds", [("500ms", 0.5), ("1s", 1.0), ("1.5", 1.5), ("2m", 120.0), ("1h", 3600.0),
                                          (" 3 S ", 3.0)])
def test_interval_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, "--interval") == pytest.approx(seconds)


@pytest.mark.parametrize("text,hours", [("30d", 720.0), ("30", 720.0), ("12h", 12.0), ("2w", 336.0), ("1.5D", 36.0)])
def test_windows_are_days_by_default(text: str, hours: float) -> None:
    assert parse_window(text) == pytest.approx(hours)


@pytest.mark.parametrize("text,what,message", [
    ("5x", "--interval", "--interval: expected a duration like 500ms, 1s, 2m, 12h, got '5x'"),
    ("0", "--interval", "--interval: must be longer than zero, got '0'"),
    ("-1s", "--interval", "--interval: expected a duration"),
    ("", "--interval", "--interval: expected a duration"),
    ("3m", "--window", "--window: expected a duration like 12h, 30d, 2w, got '3m'"),  # months are not minutes
    ("0d", "--window", "--window: must be longer than zero"),
])
def test_bad_durations_name_the_option(text: str, what: str, message: str) -> None:
    with pytest.raises(InputError, match="^" + message.replace("(", r"\(").replace(".", r"\.")):
        parse_window(text) if what == "--window" else parse_duration(text, what)


def test_iso_round_trip_is_utc_whole_seconds() -> None:
    assert iso_z(parse_iso("2026-11-23T01:30:00.75+01:30")) == "2026-11-23T00:00:00Z"
    assert iso_z(parse_iso("2026-11-23")) == "2026-11-23T00:00:00Z"
