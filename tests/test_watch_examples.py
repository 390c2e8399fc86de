"""The node-agent examples keep their promise: after a handled notice (exit 3) neither the
systemd unit nor the Kubernetes sidecar restarts the agent, which would find the notice still
pending and signal the trainer and alert again; a crash (exit 1) is still restarted. The sidecar's
shell wrapper is run for real, around a stand-in `spotplan` that exits with a chosen code."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "examples" / "systemd" / "spotplan-watch.service"
SIDECAR = ROOT / "examples" / "k8s" / "watch-sidecar.yaml"
pytestmark = pytest.mark.timeout(30)


def _unit_settings() -> dict[str, str]:
    settings: dict[str, str] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings


def test_the_systemd_unit_does_not_restart_after_a_handled_notice() -> None:
    unit = _unit_settings()
    assert unit["Restart"] == "on-failure"  # restarts a crash (exit 1) or a kill
    prevented = set(unit.get("RestartPreventExitStatus", "").split())
    assert "3" in prevented and "1" not in prevented


def _sidecar() -> tuple[list[str], str]:
    pod = yaml.safe_load(SIDECAR.read_text())
    assert pod["spec"]["restartPolicy"] == "OnFailure"
    (container,) = [c for c in pod["spec"]["containers"] if c["name"] == "spotplan-watch"]
    return container["command"], container["args"][0]


FAKE_AGENT = """#!/bin/sh
echo "$@" > "$FAKE_DIR/args"
trap 'echo TERM >> "$FAKE_DIR/signals"' TERM
echo started > "$FAKE_DIR/started"
i=0
while [ $i -lt "$FAKE_RUN" ]; do sleep 0.1; i=$((i + 1)); done
exit "$FAKE_CODE"
"""


def _run_sidecar(tmp_path: Path, code: int, run_ticks: int = 0, term: bool = False) -> int:
    command, script = _sidecar()
    (tmp_path / "spotplan").write_text(FAKE_AGENT)
    (tmp_path / "spotplan").chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "FAKE_DIR": str(tmp_path),
           "FAKE_CODE": str(code), "FAKE_RUN": str(run_ticks), "SLACK_WEBHOOK": "http://127.0.0.1:9/hook"}
    proc = subprocess.Popen([*command, script], env=env, stdout=subprocess.PIPE, text=True)
    if term:
        while not (tmp_path / "started").exists():
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)  # what the kubelet sends the container's main process
    proc.communicate(timeout=20)
    return proc.returncode


@pytest.mark.parametrize("code, container_exit", [(0, 0), (3, 0), (1, 1), (2, 2)])
def test_the_sidecar_turns_verdicts_into_success_and_passes_failures_on(tmp_path: Path, code: int,
                                                                       container_exit: int) -> None:
    assert _run_sidecar(tmp_path, code) == container_exit
    args = (tmp_path / "args").read_text().split()
    assert args[0] == "watch" and "--process=train_resumable.py" in args
    assert "--webhook=http://127.0.0.1:9/hook" in args


def test_the_sidecar_forwards_sigterm_and_keeps_the_agents_verdict(tmp_path: Path) -> None:
    assert _run_sidecar(tmp_path, 3, run_ticks=10, term=True) == 0
    assert (tmp_path / "signals").read_text().split() == ["TERM"]
