"""NO_COLOR for every rich table outside analyze: `prices show`, `prices alerts`, `prices import` and
`backtest` write no escape code at all under NO_COLOR, even on a terminal (rich's `no_color` alone
keeps bold and italic), and still style their tables on a terminal without it.

FORCE_COLOR makes rich treat the CliRunner's captured stdout as a terminal; one test runs the real
command under a pseudo-terminal."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from spotplan.cli.main import app

pytestmark = pytest.mark.timeout(60)

ESC = "\x1b"


def _table(tmp_path: Path) -> Path:
    f = tmp_path / "table.csv"
    f.write_text(
        "provider,region,zone,instance_type,gpu_model,gpu_count,market,price_per_hour,observed_at\n"
        "aws,us-test-1,,p3.2xlarge,V100,1,on-demand,3.06,2026-11-01T00:00:00Z\n"
        "aws,us-test-1,us-test-1a,p3.2xlarge,V100,1,spot,2.90,2026-11-02T00:00:00Z\n"
    )
    return f


def _trace(tmp_path: Path) -> Path:
    p = tmp_path / "zone-a.json"
    p.write_text(json.dumps({"metadata": {"gap_seconds": 600}, "data": ([1] * 30 + [0] * 5) * 12}))
    return p


def _commands(tmp_path: Path) -> dict[str, list[str]]:
    table = _table(tmp_path)
    return {
        "import": ["prices", "import", str(table), "--dry-run"],
        "show": ["prices", "show", "--prices", str(table)],
        "alerts": ["prices", "alerts", "--provider", "aws"],
        "backtest": ["backtest", "--trace", str(_trace(tmp_path)), "--job-hours", "12", "--deadline-hours", "30",
                     "--starts", "2", "--policy", "greedy"],
    }


@pytest.mark.parametrize("command", ["import", "show", "alerts", "backtest"])
def test_no_escape_codes_under_no_color_on_a_terminal(runner, tmp_path: Path, monkeypatch, command: str) -> None:  # type: ignore[no-untyped-def]
    args = _commands(tmp_path)[command]
    monkeypatch.setenv("FORCE_COLOR", "1")  # a terminal, as far as rich can tell
    monkeypatch.setenv("NO_COLOR", "1")
    plain = runner.invoke(app, args)
    assert plain.exit_code == 0, plain.output
    assert plain.stdout.strip() and ESC not in plain.stdout
    monkeypatch.delenv("NO_COLOR")
    styled = runner.invoke(app, args)
    assert styled.exit_code == 0, styled.output
    assert ESC in styled.stdout  # without NO_COLOR a terminal does get styles: the check above means something


def test_out_files_follow_their_suffix_and_carry_no_escape_codes(runner, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Every command renders through the same choice as analyze: -o, else the --out suffix, else a table;
    # and a file is never a terminal, even when stdout is one.
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("NO_COLOR")
    for name, args in _commands(tmp_path).items():
        table = tmp_path / f"{name}.txt"
        res = runner.invoke(app, [*args, "--out", str(table)])
        assert res.exit_code == 0, res.output
        assert table.read_text().strip() and ESC not in table.read_text(), name
        as_json = tmp_path / f"{name}.json"
        assert runner.invoke(app, [*args, "--out", str(as_json)]).exit_code == 0
        json.loads(as_json.read_text())
        as_csv = tmp_path / f"{name}.csv"
        assert runner.invoke(app, [*args, "--out", str(as_csv), "-o", "markdown"]).exit_code == 0
        # An explicit -o wins over the suffix: a markdown table row, not CSV.
        assert any(line.startswith("|") and line.endswith("|") for line in as_csv.read_text().splitlines()), name


def test_piped_output_has_no_escape_codes(runner, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    for args in _commands(tmp_path).values():
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
        assert ESC not in res.stdout, args


def on_a_pty(args: list[str], env: dict[str, str]) -> str:
    """`python -m spotplan ARGS` with stdout on a pseudo-terminal; what it wrote there."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "spotplan", *args], stdout=follower, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait(timeout=30) == 0
    return b"".join(chunks).decode()


def test_prices_show_on_a_real_terminal(tmp_path: Path) -> None:
    args = ["prices", "show", "--prices", str(_table(tmp_path))]
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    env.update(TERM="xterm-256color", COLUMNS="160")
    styled = on_a_pty(args, env)
    assert "p3.2xlarge" in styled and ESC in styled
    plain = on_a_pty(args, {**env, "NO_COLOR": "1"})
    assert "p3.2xlarge" in plain and ESC not in plain
