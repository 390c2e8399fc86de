"""Now, and ISO-8601 times, the one way every module reads and writes them: aware UTC datetimes,
written as `2026-11-23T00:00:00Z`. Standard library only, so the node agent and the checkpoint
library can use it without loading anything else."""

from __future__ import annotations

from datetime import datetime, timezone

from spotplan.errors import InputError

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
