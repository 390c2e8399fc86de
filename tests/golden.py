"""Golden files: compare a rendering with the file checked in, or rewrite it under --update-golden.

Use with the `update_golden` fixture of conftest:

    assert_golden(GOLDEN / "mixed.md", render(result, "markdown"), update_golden)
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest


def assert_golden(path: Path, text: str, update: bool) -> None:
    """Fail with a unified diff when `text` differs from the golden file at `path`.

    With `update` the file is (re)written and the test passes; a missing file fails with the
    command that creates it.
    """
    path = Path(path)
    if update:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="")
        return
    if not path.exists():
        pytest.fail(f"golden file {path} is missing: run `pytest --update-golden` to create it", pytrace=False)
    expected = path.read_text(encoding="utf-8")
    if text == expected:
        return
    diff = "".join(
        difflib.unified_diff(
            expected.splitlines(keepends=True),
            text.splitlines(keepends=True),
            fromfile=f"{path} (golden)",
            tofile="rendered",
        )
    )
    pytest.fail(
        f"rendering differs from {path} (rerun with --update-golden if the change is intended):\n{diff}",
        pytrace=False,
    )
