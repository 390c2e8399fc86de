"""Where spotplan keeps local state: the pulled price store (user cache dir) and the migrate journal
(user data dir), both from platformdirs so XDG_CACHE_HOME / XDG_DATA_HOME move them."""

from __future__ import annotations

from pathlib import Path

APP = "spotplan"


def cache_dir() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir(APP, appauthor=False))


def data_dir() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir(APP, appauthor=False))


def price_store_dir() -> Path:
    """Folder of the local price history store (parquet, one file per provider)."""
    return cache_dir() / "prices"


def journal_path() -> Path:
    """SQLite file of the migrate journal."""
    return data_dir() / "journal.sqlite3"
