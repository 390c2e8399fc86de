"""The root command: help, version, python -m, and the import budget of `spotplan --help`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from spotplan import __version__
from spotplan.cli.main import app


def test_version(runner) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.stdout


def test_python_m_spotplan_help_imports_no_heavy_modules() -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "spotplan", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "analyze" in proc.stdout
    imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line}
    for heavy in ("pandas", "boto3", "botocore", "google", "azure", "numpy", "matplotlib"):
        assert heavy not in imported, f"`spotplan --help` imports {heavy}"


def test_usage_errors_are_one_line_with_exit_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "spotplan", "analyze", "x.yaml", "--scope", "galaxy"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "galaxy" in lines[0]


@pytest.mark.parametrize("command", [["analyze"], ["prices", "pull"], ["migrate"], ["watch"], ["backtest"]])
def test_help_shows_click_style_types_and_nothing_after_a_flag(runner, command: list[str]) -> None:  # type: ignore[no-untyped-def]
    """On/off flags take no value, so their help row shows no type; values read as PATH, TEXT, FLOAT."""
    text = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"}).stdout
    assert "<bool>" not in text and "<list[" not in text and "<str>" not in text, text
    assert any(kind in text for kind in ("PATH", "FILE", "TEXT", "FLOAT"))
