"""What the watcher does about a notice: signal processes, poke a Docker container, run a command,
wait for a fresh checkpoint, upload it, and post an alert. Each returns plain data for the log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

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


@dataclass
class Child:
    """An action started and not awaited. Its output goes to an unnamed temporary file, not a pipe:
    nobody reads a pipe while the checkpoint is awaited, and a command that printed more than the
    pipe holds would block on its own output instead of saving."""

    proc: subprocess.Popen[bytes]
    output: IO[bytes]

    def finish(self, timeout: float) -> tuple[int, str | None]:
        """Wait up to `timeout` s; the exit code and the last 500 characters of the output.
        Raises subprocess.TimeoutExpired when it is still running."""
        code = self.proc.wait(timeout=timeout)
        self.output.seek(0, os.SEEK_END)
        self.output.seek(max(0, self.output.tell() - 2000))
        tail = self.output.read().decode(errors="replace").strip()[-500:]
        self.output.close()
        return code, tail or None


def start_docker(container: str, sig: int | None, stop_timeout: int | None) -> tuple[list[str], Child]:
    """`docker kill -s SIG` (or `docker stop -t N` when a stop timeout is given), started, not awaited."""
    if stop_timeout is not None:
        argv = ["docker", "stop", "-t", str(stop_timeout)]  # -t: --time/--timeout differ by version
        if sig is not None:
            argv += ["--signal", signal.Signals(sig).name]
    else:
        argv = ["docker", "kill", "--signal", signal.Signals(sig or signal.SIGTERM).name]
    argv.append(container)
    return argv, _spawn(argv)


def start_command(command: str, env: Mapping[str, str]) -> Child:
    return _spawn(["/bin/sh", "-c", command], env={**os.environ, **env})


def _spawn(argv: list[str], env: Mapping[str, str] | None = None) -> Child:
    output = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the Child, closed by finish()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, env=env)
    except OSError as exc:
        output.close()
        raise RuntimeError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    return Child(proc, output)


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


def post_webhook(url: str, text: str, details: Mapping[str, Any], timeout: float = 5.0) -> int:
    """POST a Slack-compatible JSON message (`text`, plus the details for other receivers). Two
    short attempts: the checkpoint is already safe, and the watcher should not linger on an alert."""
    from spotplan.webhook import post_json

    return post_json(url, {"text": text, "spotplan": dict(details)}, timeout=timeout, attempts=2, backoff=0.2)
