"""Now, and ISO-8601 times, the one way every module reads and writes them: aware UTC datetimes,
written as `2026-11-23T00:00:00Z`. Standard library only, so the node agent and the checkpoint
library can use it without loading anything else."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timezone

from spotplan.errors import InputError

_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_EXAMPLES = {"ms": "500ms", "s": "1s", "m": "2m", "h": "12h", "d": "30d", "w": "2w"}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)

#: The written form (whole seconds, `Z`), as a strftime pattern for pandas' vectorised formatting.
ISO_Z = "%Y-%m-%dT%H:%M:%SZ"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def utcnow_iso() -> str:
    return iso_z(utcnow())


def as_utc(when: datetime | None) -> datetime:
    """`when` as an aware UTC time (naive means UTC); None means now."""
    if when is None:
        return utcnow()
    return when.astimezone(timezone.utc) if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


def iso_z(when: datetime) -> str:
    """`2026-11-23T00:00:00Z`: UTC, whole seconds."""
    return as_utc(when).strftime(ISO_Z)


def parse_iso(text: str) -> datetime:
    """An ISO-8601 date or time (`Z` or an offset; naive means UTC) as aware UTC. ValueError if not."""
    return as_utc(datetime.fromisoformat(text.strip().replace("Z", "+00:00")))


def parse_now(text: str | None) -> datetime | None:
    """The `--now` option: None stays None (the current time is taken where it is needed)."""
    if text is None:
        return None
    try:
        return parse_iso(text)
    except ValueError:
        raise InputError(f"--now: expected an ISO-8601 time like 2026-11-23T00:00:00Z, got {text!r}") from None


def parse_duration(text: str, what: str, units: Sequence[str] = ("ms", "s", "m", "h"), default: str = "s") -> float:
    """A duration option (`500ms`, `1s`, `2m`, `30d`, `2w`; a bare number is in `default` units) as
    seconds, more than zero. `units` are the suffixes the option takes (`m` is minutes)."""
    match = _DURATION.match(str(text or ""))
    unit = (match.group(2) or default).lower() if match else ""
    if not match or unit not in units:
        examples = ", ".join(_EXAMPLES[u] for u in units)
        raise InputError(f"{what}: expected a duration like {examples}, got {text!r}")
    seconds = float(match.group(1)) * _SECONDS[unit]
    if seconds <= 0:
        raise InputError(f"{what}: must be longer than zero, got {text!r}")
    return seconds
