"""What the watcher does about a notice: signal processes, poke a Docker container, run a command,
wait for a fresh checkpoint, upload it, and post an alert. Each returns plain data for the log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from spotplan.errors import InputError


def signal_number(name: str | int) -> int:
    """`TERM`, `SIGTERM`, `15` -> 15; InputError for anything else."""
    text = str(name).strip().upper()
    if text.isdigit():
        return int(text)
    try:
        return int(signal.Signals[text if text.startswith("SIG") else f"SIG{text}"])
    except KeyError:
        raise InputError(f"unknown signal {name!r}") from None


def find_processes(name: str) -> list[int]:
    """PIDs whose command name, or the basename of one of whose first arguments, equals `name`.

    So `--process train_resumable.py` finds `python examples/train_resumable.py --resume`, without
    matching every process that merely mentions the name somewhere in its arguments.
    """
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            argv = [a for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue
        names = {comm} | {os.path.basename(a.decode(errors="replace")) for a in argv[:3]}
        if name in names:
            found.append(int(entry.name))
    return sorted(found)


def send_signal(sig: int, pid: int | None = None, process: str | None = None) -> dict[str, Any]:
    pids = [pid] if pid is not None else find_processes(process or "")
    sent, failed = [], {}
    for target in pids:
        try:
            os.kill(target, sig)
            sent.append(target)
        except OSError as exc:
            failed[str(target)] = exc.strerror or str(exc)
    return {"signal": signal.Signals(sig).name, "pids": sent, "failed": failed, "target": process or pid}


def start_docker(
    container: str, sig: int | None, stop_timeout: int | None
) -> tuple[list[str], subprocess.Popen[bytes]]:
    """`docker kill -s SIG` (or `docker stop -t N` when a stop timeout is given), started, not awaited."""
    if stop_timeout is not None:
        argv = ["docker", "stop", "-t", str(stop_timeout)]  # -t: --time/--timeout differ by version
        if sig is not None:
            argv += ["--signal", signal.Signals(sig).name]
    else:
        argv = ["docker", "kill", "--signal", signal.Signals(sig or signal.SIGTERM).name]
    argv.append(container)
    return argv, _popen(argv)


def start_command(command: str, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    return _popen(["/bin/sh", "-c", command], env={**os.environ, **env})


def _popen(argv: list[str], env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
        )
    except OSError as exc:
        raise RuntimeError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None


def wait_for_checkpoint(store: Any, newer_than: datetime, until: float, every: float = 0.25) -> Any:
    """Poll `store.latest(newer_than)` until a verified checkpoint appears or `until` (monotonic) passes."""
    while True:
        try:
            info = store.latest(newer_than=newer_than)
        except (OSError, ValueError):  # a store hiccup is not a verdict: look again
            info = None
        if info is not None:
            return info
        left = until - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(every, left))


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def post_webhook(url: str, text: str, details: Mapping[str, Any], timeout: float = 5.0) -> int:
    """POST a Slack-compatible JSON message (`text`, plus the details for other receivers)."""
    body = json.dumps({"text": text, "spotplan": dict(details)}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (the user's own URL)
        return int(resp.status)
