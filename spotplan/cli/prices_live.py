"""`spotplan prices pull|import|history|alerts` (to be written)."""

from __future__ import annotations
