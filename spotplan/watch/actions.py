"""What the watcher does about a notice: signal processes, poke a Docker container, run a command,
wait for a fresh checkpoint, upload it, and post an alert. Each returns plain data for the log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from spotplan.errors import InputError, SpotplanError


def signal_number(name: str | int) -> int:
    """`TERM`, `SIGTERM`, `15` -> 15; InputError for anything that is not a signal of this OS.

    0 is refused too: kill(pid, 0) only checks that the process exists, so "--signal 0" would
    deliver nothing while the log said a signal was sent.
    """
    text = str(name).strip().upper()
    if text.isdigit():
        number = int(text)
        if number > 0 and number in signal.valid_signals():
            return number
        raise InputError(f"unknown signal {name!r} (not a signal number of this system; e.g. SIGTERM, USR1, 10)")
    try:
        return int(signal.Signals[text if text.startswith("SIG") else f"SIG{text}"])
    except KeyError:
        raise InputError(f"unknown signal {name!r}") from None


def signal_name(sig: int) -> str:
    """`SIGUSR1` for 10; the number itself for a real-time signal, which has no name of its own
    (both `docker kill --signal` and the log take it that way)."""
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)


def find_processes(name: str) -> list[int]:
    """PIDs whose command name, or the basename of any of whose arguments, equals `name`.

    So `--process train.py` finds `python train.py`, `python -W ignore -X dev examples/train.py
    --resume` and `torchrun --nproc_per_node 8 train.py` alike, wherever interpreter options put the
    script. A whole argument must match (not a substring, which would also hit `train.py.log`), but
    any process naming the file does, e.g. an editor open on it, as with `pkill -f`.

    The agent never matches itself, nor a wrapper it runs under by way of the arguments it passed
    down (`sudo`/`timeout`/`nice ... spotplan watch --process train.py`): sudo would relay the signal
    to the agent. A trainer that started the agent still matches by its own arguments.
    """
    me = os.getpid()
    ancestors = _ancestors(me)
    ours = [os.fsencode(a) for a in sys.argv[1:]]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            argv = [a for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue
        if int(entry.name) in ancestors and ours and argv[-len(ours):] == ours:
            argv = argv[: -len(ours)]
        names = {comm} | {os.path.basename(a.decode(errors="replace")) for a in argv}
        if name in names:
            found.append(int(entry.name))
    return sorted(found)


def _ancestors(pid: int) -> set[int]:
    found: set[int] = set()
    while True:
        try:
            # The parent is the 2nd field after the command name (which may itself hold ") ").
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return found
        if pid <= 0 or pid in found:
            return found
        found.add(pid)


def send_signal(sig: int, pid: int | None = None, process: str | None = None) -> dict[str, Any]:
    pids = [pid] if pid is not None else find_processes(process or "")
    sent, failed = [], {}
    for target in pids:
        try:
            os.kill(target, sig)
            sent.append(target)
        except OSError as exc:
            failed[str(target)] = exc.strerror or str(exc)
    return {"signal": signal_name(sig), "pids": sent, "failed": failed, "target": process or pid}


@dataclass
class Child:
    """An action run as a child process. Its output goes to an unnamed temporary file, not a pipe:
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


# How long `docker kill`/`docker stop` may take beyond the stop timeout before the command starts
# anyway: the CLI and the daemon answer in well under a second, so only a hung daemon reaches it.
DOCKER_GRACE = 10.0


def start_docker(container: str, sig: int | None, stop_timeout: int | None) -> tuple[list[str], Child]:
    """`docker kill -s SIG` (or `docker stop -t N` when a stop timeout is given), started; the agent
    awaits it (`Child.finish`, at most `docker_wait(stop_timeout)` s) before running the command."""
    if stop_timeout is not None:
        argv = ["docker", "stop", "-t", str(stop_timeout)]  # -t: --time/--timeout differ by version
        if sig is not None:
            argv += ["--signal", signal_name(sig)]
    else:
        argv = ["docker", "kill", "--signal", signal_name(sig if sig is not None else signal.SIGTERM)]
    argv.append(container)
    return argv, _spawn(argv)


def docker_wait(stop_timeout: int | None) -> float:
    """The longest the docker action may take: its stop timeout plus the daemon's own round trip."""
    return (stop_timeout or 0) + DOCKER_GRACE


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
        except (OSError, ValueError, SpotplanError):  # a store hiccup (a CheckpointError) is no verdict: look again
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
