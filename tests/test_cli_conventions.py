"""DESIGN.md §3's global conventions, checked from outside for the commands that broke them: no
escape codes under NO_COLOR (help included), -v on a command group, data on stdout and nothing lost
when its reader leaves, quiet library logs without -v, and exit 2 naming the flag or file for bad
input."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from spotplan.cli.main import app
from tests.test_prices_no_color import on_a_pty

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
FLEET = ROOT / "examples" / "fleet.yaml"
TABLE = (
    "provider,region,zone,instance_type,gpu_model,gpu_count,market,price_per_hour,observed_at\n"
    "aws,us-east-1,,p3.2xlarge,V100,1,on-demand,3.06,2026-11-01T00:00:00Z\n"
    "aws,us-east-1,us-east-1a,p3.2xlarge,V100,1,spot,2.90,2026-11-02T00:00:00Z\n"
)


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The price store and the journal under tmp_path, for in-process and subprocess runs alike."""
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "XDG_DATA_HOME": str(tmp_path / "data")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return {**os.environ, **env}


def test_no_color_help_on_a_terminal_has_no_escape_codes(isolated: dict[str, str]) -> None:
    """rich's no_color keeps bold and dim; under NO_COLOR help must write no escape code at all."""
    text = on_a_pty(["analyze", "--help"], {**isolated, "NO_COLOR": "1"})
    assert "--plan-out" in text and "\x1b" not in text


@pytest.mark.parametrize("args", [["prices", "-v", "show", "--prices", "missing.csv"],
                                  ["migrations", "-v", "show", "no-such-move"]])
def test_verbose_is_accepted_on_a_command_group(runner, isolated: dict[str, str], args: list[str]) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "No such option" not in result.stderr and "Traceback" in result.stderr, result.stderr


def test_library_log_records_print_no_traceback_without_verbose(isolated: dict[str, str]) -> None:
    """gcsfs logs its retries with exc_info: Python's last-resort handler printed the traceback."""
    code = (
        "import logging\n"
        "from spotplan.cli.common import handle_errors\n"
        "with handle_errors():\n"
        "    try:\n"
        "        raise OSError('unreachable')\n"
        "    except OSError:\n"
        "        logging.getLogger('gcsfs').exception('_request out of retries')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=isolated)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def _closed_stdout(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run spotplan with a stdout pipe whose reader is already gone (`| head -c0`)."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([sys.executable, "-m", "spotplan", *args], stdout=write, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, text=True, timeout=120, env=env)
    finally:
        os.close(write)


def test_a_reader_leaving_stdout_does_not_lose_the_plan(tmp_path: Path, isolated: dict[str, str]) -> None:
    plan = tmp_path / "plan.json"
    proc = _closed_stdout(["analyze", str(FLEET), "--samples", "20", "--plan-out", str(plan)], isolated)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert plan.is_file() and '"spotplan.plan/1"' in plan.read_text()


class _Notice(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = b"terminate"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_watch_keeps_its_exit_code_when_the_verdict_reader_has_left(tmp_path: Path, isolated: dict[str, str]) -> None:
    """No fresh checkpoint is exit 3 (DESIGN §3); a closed stdout used to turn it into 0."""
    server = HTTPServer(("127.0.0.1", 0), _Notice)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (tmp_path / "ckpt").mkdir()
        proc = _closed_stdout(["watch", "--source", "url", "--endpoint", f"http://127.0.0.1:{server.server_port}/",
                               "--once", "--checkpoint-uri", str(tmp_path / "ckpt"), "--checkpoint-timeout", "0.5"],
                              isolated)
    finally:
        server.shutdown()
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("days", ["inf", "1e6"])
def test_history_days_beyond_any_calendar_is_a_usage_error(runner, tmp_path: Path, isolated: dict[str, str],  # type: ignore[no-untyped-def]
                                                           days: str) -> None:
    table = tmp_path / "p.csv"
    table.write_text(TABLE)
    assert runner.invoke(app, ["prices", "import", str(table)]).exit_code == 0
    result = runner.invoke(app, ["prices", "history", "p3.2xlarge", "--provider", "aws", "--region", "us-east-1",
                                 "--days", days])
    assert result.exit_code == 2 and "--days" in result.stderr, result.output


def test_import_of_a_folder_says_it_is_a_folder(runner, tmp_path: Path, isolated: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(app, ["prices", "import", str(tmp_path)])
    assert result.exit_code == 2 and "is a directory" in result.stderr, result.stderr


def test_plan_out_folder_fails_before_the_analysis(runner, tmp_path: Path, isolated: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(app, ["analyze", str(FLEET), "--samples", "20", "--plan-out", str(tmp_path)])
    assert result.exit_code == 2 and "--plan-out" in result.stderr
    assert result.stdout == ""


def test_watch_journal_empty_file_is_refused_and_left_untouched(  # type: ignore[no-untyped-def]
    runner, tmp_path: Path, isolated: dict[str, str]
) -> None:
    empty = tmp_path / "journal.db"
    empty.write_bytes(b"")
    result = runner.invoke(app, ["watch", "--fallback-move", "m1", "--journal", str(empty), "--once",
                                 "--source", "url", "--endpoint", "http://127.0.0.1:9/"])
    assert result.exit_code == 2 and str(empty) in result.stderr, result.stderr
    assert empty.stat().st_size == 0


def test_watch_journal_that_is_not_a_journal_is_a_usage_error(  # type: ignore[no-untyped-def]
    runner, tmp_path: Path, isolated: dict[str, str]
) -> None:
    junk = tmp_path / "journal.db"
    junk.write_text("not,a,database\n" * 100)
    result = runner.invoke(app, ["watch", "--fallback-move", "m1", "--journal", str(junk), "--once",
                                 "--source", "url", "--endpoint", "http://127.0.0.1:9/"])
    assert result.exit_code == 2 and "--journal" in result.stderr, result.stderr


@pytest.mark.parametrize("flag", ["--checkpoint-timeout", "--health-timeout"])
def test_migrate_timeouts_must_be_finite(runner, isolated: dict[str, str], flag: str) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(app, ["migrate", "no-such-plan.json", "--dry-run", flag, "inf"])
    assert result.exit_code == 2 and flag in result.stderr, result.stderr
