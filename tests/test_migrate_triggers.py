"""The checkpoint triggers that run where spotplan runs (`via: ssh`, `docker`, `signal` off AWS), end to
end through `spotplan migrate` against the GCP emulator. `ssh` and `docker` on PATH are stand-ins
that record their arguments and then do what the real ones do with them: sshd hands the remote
command to the user's shell, `docker exec C sh -c CMD` runs CMD in a shell, so the workload's
command must arrive as one word, quoted exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from spotplan.cli.main import app
from tests.emulators.gcp_compute import GcpComputeEmulator
from tests.test_migrate_support import assert_move_invariants, make_move, trainer_script, write_plan

pytestmark = pytest.mark.timeout(60)

PROJECT, REGION, ZONE, MTYPE = "proj-t", "us-central1", "us-central1-a", "a2-highgpu-1g"

# argv[1:] as JSON, appended to $FAKE_LOG; then the command run as the real tool would run it.
FAKE_SSH = """#!{python}
import json, os, subprocess, sys
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(["ssh", *args]) + "\\n")
# ssh [-o OPT]... HOST COMMAND: the remote shell gets COMMAND as one string
while args[0] == "-o":
    args = args[2:]
sys.exit(subprocess.call(["sh", "-c", " ".join(args[1:])]))
"""
FAKE_DOCKER = """#!{python}
import json, os, subprocess, sys
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(["docker", *args]) + "\\n")
assert args[0] == "exec", args
sys.exit(subprocess.call(args[2:]))
"""


@pytest.fixture(autouse=True)
def _env(gcp_env: GcpComputeEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The GCP emulator, and stand-in `ssh` and `docker` first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("ssh", FAKE_SSH), ("docker", FAKE_DOCKER)):
        tool = bin_dir / name
        tool.write_text(text.format(python=sys.executable))
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "calls.jsonl"))


def _run(gcp: GcpComputeEmulator, runner: Any, tmp_path: Path, trigger: dict[str, Any]) -> tuple[str, str, Any]:
    move_id = f"t-{uuid.uuid4().hex[:8]}"
    src = gcp.add_instance(PROJECT, ZONE, f"train-{move_id}", MTYPE)
    move = make_move(move_id, "gcp", REGION, ZONE, MTYPE, [src], str(tmp_path / "ckpt" / move_id),
                     "projects/deeplearning-platform-release/global/images/family/common-cu121", trigger)
    plan = write_plan(tmp_path / f"{move_id}.json", [move])
    result = runner.invoke(app, ["migrate", str(plan), "--yes", "--checkpoint-timeout", "20"])
    return move_id, src, result


def _logged(tmp_path: Path) -> list[list[str]]:
    return [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]


def _done(gcp: GcpComputeEmulator, move_id: str, src: str) -> None:
    assert_move_invariants(move_id, gcp.labelled("spotplan-move", move_id), {gcp.get(src)["status"]},  # type: ignore[index]
                           "TERMINATED", {"RUNNING"}, expect_done=True)


def test_via_ssh_runs_the_command_on_the_host_quoted_once(gcp: GcpComputeEmulator, runner: Any,
                                                          tmp_path: Path) -> None:
    # Quotes and spaces in the workload's command must reach the remote shell intact.
    command = f"{trainer_script(tmp_path)} && echo 'saved, step done' > {tmp_path / 'said'}"
    move_id, src, result = _run(gcp, runner, tmp_path, {"via": "ssh", "host": "trainer@10.0.0.7",
                                                        "command": command})
    assert result.exit_code == 0, result.output
    assert _logged(tmp_path) == [["ssh", "-o", "BatchMode=yes", "trainer@10.0.0.7", command]]
    assert (tmp_path / "said").read_text() == "saved, step done\n"
    _done(gcp, move_id, src)


def test_via_docker_execs_in_the_container(gcp: GcpComputeEmulator, runner: Any, tmp_path: Path) -> None:
    command = f"{trainer_script(tmp_path)} && echo \"it's saved\" > {tmp_path / 'said'}"
    move_id, src, result = _run(gcp, runner, tmp_path, {"via": "docker", "container": "trainer-1",
                                                        "command": command})
    assert result.exit_code == 0, result.output
    assert _logged(tmp_path) == [["docker", "exec", "trainer-1", "sh", "-c", command]]
    assert (tmp_path / "said").read_text() == "it's saved\n"
    _done(gcp, move_id, src)


def test_a_failing_remote_command_rolls_back(gcp: GcpComputeEmulator, runner: Any, tmp_path: Path) -> None:
    move_id, src, result = _run(gcp, runner, tmp_path, {"via": "ssh", "host": "h", "command": "exit 5"})
    assert result.exit_code == 1 and "checkpoint trigger exited 5" in result.stderr
    assert gcp.labelled("spotplan-move", move_id) == {}
    assert gcp.get(src)["status"] == "RUNNING"  # type: ignore[index]


def test_via_signal_off_aws_signals_the_local_process(gcp: GcpComputeEmulator, runner: Any, tmp_path: Path) -> None:
    """Off AWS a signal trigger is sent where spotplan runs: the trainer saves its checkpoint on SIGUSR1."""
    storage = tmp_path / "ckpt-signal"
    ready = tmp_path / "ready"
    trainer = tmp_path / "trainer_on_signal.py"
    trainer.write_text(
        "import os, signal, sys, time\n"
        "from spotplan.checkpoint import CheckpointStore\n"
        f"store = CheckpointStore({str(storage)!r})\n"
        "def save(*_):\n"
        "    store.save(1, {'model.bin': os.urandom(32)})\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGUSR1, save)\n"
        f"open({str(ready)!r}, 'w').close()\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, str(trainer)])
    try:
        deadline = time.monotonic() + 20
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        move_id = f"t-{uuid.uuid4().hex[:8]}"
        src = gcp.add_instance(PROJECT, ZONE, f"train-{move_id}", MTYPE)
        move = make_move(move_id, "gcp", REGION, ZONE, MTYPE, [src], str(storage), "global/images/train",
                         {"via": "signal", "signal": "SIGUSR1", "pid": proc.pid})
        plan = write_plan(tmp_path / f"{move_id}.json", [move])
        result = runner.invoke(app, ["migrate", str(plan), "--yes", "--checkpoint-timeout", "20"])
        assert result.exit_code == 0, result.output
        assert f"kill -USR1 {proc.pid}" in result.stdout
        assert proc.wait(timeout=10) == 0
        _done(gcp, move_id, src)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
