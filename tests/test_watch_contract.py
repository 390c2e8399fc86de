"""`spotplan watch` keeps its documented contract at the edges: bad flags fail at start (exit 2), a
broken upload still ends in a verdict, actions take effect in order, polling is fast enough for a
notice to be read within one interval, a checkpoint saved before our poll still counts as fresh,
every notice carries a deadline, auto-detection waits for a metadata service that is not up yet
(and tries SPOTPLAN_WATCH_URL), `--process` finds a script wherever its interpreter's options put
it, and a slow `--command` holds back neither the alert nor the verdict.

Everything runs against the local emulators, real child processes and the real docker CLI; no test
reaches beyond 127.0.0.1 or its own unix sockets (auto-detection is always given an `--endpoint`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from spotplan.checkpoint import CheckpointStore
from spotplan.cli.main import app
from spotplan.errors import InputError
from spotplan.watch.actions import send_signal, signal_number
from spotplan.watch.agent import Agent, WatchConfig
from tests.emulators._http import closed_url
from tests.emulators.metadata import (
    AwsImdsEmulator,
    AzureScheduledEventsEmulator,
    DockerEngineEmulator,
    GcpMetadataEmulator,
    NoticeUrlEmulator,
    WebhookReceiver,
)
from tests.test_watch import events, read_log, watch_subprocess

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(40)


# A source that is safe to name in usage-error tests: should the check under test be missing, the
# agent fails on this closed local port (exit 1) instead of probing real metadata addresses.
SAFE = ["--source", "url", "--endpoint", closed_url() + "/notice", "--once"]


def _iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _after_a_poll(emu: NoticeUrlEmulator | GcpMetadataEmulator, polls: int, then: float) -> None:
    """Block until the emulator has received `polls` requests (each read the state at once), then
    `then` seconds more."""
    while len(emu.requests) < polls:
        time.sleep(0.001)
    time.sleep(then)


def _in_thread(target, *args) -> threading.Thread:  # type: ignore[no-untyped-def]
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


# -- 1. --signal ----------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["99", "0", "-1", "65"])
def test_signals_that_do_not_exist_are_usage_errors(runner, value: str) -> None:
    with pytest.raises(InputError, match="unknown signal"):
        signal_number(value)
    result = runner.invoke(app, ["watch", *SAFE, "--signal", value, "--pid", "1"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: unknown signal") and len(result.stderr.strip().splitlines()) == 1


def test_real_signals_by_number_and_name() -> None:
    assert signal_number("10") == signal_number("USR1") == signal_number("SIGUSR1") == 10
    assert signal_number(" term ") == 15


# -- 2. stores: checked at start; an upload that breaks at the notice is still a verdict ----------
@pytest.mark.parametrize(
    "flags, message",
    [
        (["--checkpoint-uri", "nosuch://bucket/run"], "--checkpoint-uri: unknown storage protocol nosuch://"),
        (["--checkpoint-uri", "CKPT", "--upload-to", "nosuch://bucket/run"], "--upload-to: unknown storage protocol"),
        (["--checkpoint-uri", "CKPT", "--upload-to", "dropbox://bucket/run"], "--upload-to: no filesystem for dropbox://"),
    ],
)
def test_unusable_stores_are_usage_errors_at_start(runner, tmp_path: Path, flags: list[str], message: str) -> None:
    if "dropbox://bucket/run" in flags and importlib.util.find_spec("dropboxdrivefs") is not None:
        pytest.skip("dropboxdrivefs is installed, so dropbox:// has its filesystem")
    flags = [str(tmp_path / "ckpt") if f == "CKPT" else f for f in flags]
    result = runner.invoke(app, ["watch", *SAFE, *flags])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {message}") and len(result.stderr.strip().splitlines()) == 1
    if "dropbox" in message:
        assert "install" in result.stderr  # the install hint


def test_an_upload_that_cannot_start_is_an_upload_failure(tmp_path: Path, monkeypatch) -> None:
    """The upload target's filesystem is missing at the notice (checked at start by the CLI, so the
    agent is driven directly): upload_failed and exit 1, but the event is still acknowledged, the
    alert still sent and the verdict still returned."""
    if importlib.util.find_spec("dropboxdrivefs") is not None:
        pytest.skip("dropboxdrivefs is installed, so dropbox:// has its filesystem")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    ckpt, log = tmp_path / "ckpt", tmp_path / "w.jsonl"
    save = f"{sys.executable} -c \"from spotplan.checkpoint import CheckpointStore; " \
           f"CheckpointStore({str(ckpt)!r}).save(7, b'w')\""
    with AzureScheduledEventsEmulator(not_before_seconds=20) as emu, WebhookReceiver() as hook:
        emu.schedule_notice(0.2)
        config = WatchConfig(source="azure", endpoint=emu.endpoint, interval=0.2, command=save,
                             checkpoint_uri=str(ckpt), upload_to="dropbox://bucket/run", webhook=hook.url, log=log)
        agent = Agent(config)
        try:
            result = agent.run()
        finally:
            agent.log.close()
    assert result.exit_code == 1
    verdict = json.loads(json.dumps(result.to_dict()))
    assert verdict["checkpoint"]["step"] == 7 and verdict["uploaded"] is None
    assert result.acknowledged and emu.acks == [verdict["notice"]["event_id"]]
    (message,) = hook.messages
    assert "step 7" in message["text"] and "exit 1" in message["text"]
    ev = events(log)
    assert ev.index("checkpoint_ready") < ev.index("upload_failed") < ev.index("acknowledged") < ev.index("exit")
    assert "dropbox" in next(r for r in read_log(log) if r["event"] == "upload_failed")["error"]
    assert read_log(log)[-1]["event"] == "exit" and read_log(log)[-1]["code"] == 1


# -- 3. action order ------------------------------------------------------------------------------
CONTAINER = """
import signal, sys, time
out = sys.argv[1]
def got(signum, frame):
    with open(out, "a") as f:
        f.write(f"got {time.time()}\\n")
    time.sleep(0.4)  # what a container does before it exits: flush, save
    with open(out, "a") as f:
        f.write(f"exit {time.time()}\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, got)
signal.signal(signal.SIGUSR1, got)
print("ready", flush=True)
while True:
    time.sleep(0.01)
"""


@pytest.mark.parametrize("mode", ["kill", "stop"])
def test_docker_takes_effect_before_the_command_runs(tmp_path: Path, sockdir: Path, runner, monkeypatch,
                                                     mode: str) -> None:
    stamps, command_stamp, log = tmp_path / "container", tmp_path / "command", tmp_path / "w.jsonl"
    container = subprocess.Popen([sys.executable, "-c", CONTAINER, str(stamps)], stdout=subprocess.PIPE, text=True)
    try:
        assert container.stdout is not None and container.stdout.readline().strip() == "ready"
        with NoticeUrlEmulator() as emu, DockerEngineEmulator(str(sockdir / "docker.sock")) as engine:
            engine.containers["trainer"] = container.pid
            monkeypatch.setenv("DOCKER_HOST", f"unix://{sockdir}/docker.sock")
            emu.schedule_notice(0.2)
            extra = ["--signal", "SIGUSR1"] if mode == "kill" else ["--docker-stop-timeout", "5"]
            result = runner.invoke(app, [
                "watch", "--source", "url", "--endpoint", emu.url, "--interval", "100ms", "--docker", "trainer",
                *extra, "--command", f"{sys.executable} -c 'import time; print(time.time())' > {command_stamp}",
                "--log", str(log),
            ])
        assert result.exit_code == 0, result.output
    finally:
        container.kill()
        container.wait()
    assert engine.calls and engine.calls[0][0] == mode
    seen = dict(line.split() for line in stamps.read_text().splitlines())
    ran = float(command_stamp.read_text())
    # kill: the container has its signal; stop: it has exited, before the command starts.
    assert float(seen["got" if mode == "kill" else "exit"]) < ran
    ev = events(log)
    assert ev.index("docker_started") < ev.index("docker_done") < ev.index("command_started")


# -- 4. auto-detection waits for a service that is not up yet -------------------------------------
def test_auto_keeps_probing_until_a_metadata_service_answers(tmp_path: Path, runner) -> None:
    log = tmp_path / "w.jsonl"
    endpoint = closed_url()
    imds = AwsImdsEmulator()

    def come_up_late() -> None:
        while not log.exists() or "metadata_error" not in log.read_text():
            time.sleep(0.01)
        time.sleep(0.5)  # a few more failed probes
        imds.start(port=int(endpoint.rsplit(":", 1)[1]))
        imds.schedule_notice(0.3)

    thread = _in_thread(come_up_late)
    try:
        result = runner.invoke(app, ["watch", "--source", "auto", "--endpoint", endpoint, "--interval", "100ms",
                                     "--log", str(log)])
    finally:
        thread.join(5)
        imds.stop()
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["notice"]["source"] == "aws"
    ev = events(log)
    assert ev[:4] == ["metadata_error", "metadata_ok", "started", "notice"], "the failure is logged once"
    assert "no metadata service answered" in read_log(log)[0]["error"]


def test_auto_with_once_still_exits_1_when_nothing_answers(runner) -> None:
    result = runner.invoke(app, ["watch", "--source", "auto", "--endpoint", closed_url(), "--once"])
    assert result.exit_code == 1 and "no metadata service answered" in result.stderr


# -- 5. polling rate ------------------------------------------------------------------------------
def test_a_notice_is_read_within_one_interval_even_from_a_slow_service(tmp_path: Path, runner) -> None:
    """Each answer takes 0.3 s to come back. The notice appears 0.1 s after a poll read the state;
    with --interval 1s it must be read within 1 s, so the polls cannot be 1 s apart."""
    log = tmp_path / "w.jsonl"
    appeared: list[datetime] = []
    with NoticeUrlEmulator() as emu:
        emu.reply_delay = 0.3

        def notice_after_a_poll() -> None:
            _after_a_poll(emu, 2, 0.1)
            appeared.append(emu.schedule_notice(0))

        thread = _in_thread(notice_after_a_poll)
        result = runner.invoke(app, ["watch", "--source", "url", "--endpoint", emu.url, "--interval", "1s",
                                     "--log", str(log)])
        thread.join(5)
        arrivals = [r.at for r in emu.requests]
    assert result.exit_code == 0, result.output
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert all(0.5 <= g < 0.85 for g in gaps), gaps  # fixed rate, brought forward by the round trip
    latency = (_iso(json.loads(result.stdout)["notice"]["detected_at"]) - appeared[0]).total_seconds()
    assert latency < 1.0, latency


# -- 6. what counts as a fresh checkpoint ---------------------------------------------------------
def test_a_checkpoint_saved_between_the_notice_and_our_poll_is_fresh(tmp_path: Path, runner) -> None:
    """The trainer saw the notice first (its own PreemptionGuard) and saved before the watcher's
    next poll: that checkpoint is newer than the notice and must count."""
    ckpt, log = tmp_path / "ckpt", tmp_path / "w.jsonl"
    saved = []
    with NoticeUrlEmulator() as emu:

        def trainer_saves_first() -> None:
            _after_a_poll(emu, 2, 0.05)
            emu.schedule_notice(0)
            time.sleep(0.2)
            saved.append(CheckpointStore(str(ckpt)).save(11, b"saved on the trainer's own notice"))

        thread = _in_thread(trainer_saves_first)
        result = runner.invoke(app, ["watch", "--source", "url", "--endpoint", emu.url, "--interval", "1s",
                                     "--checkpoint-uri", str(ckpt), "--checkpoint-timeout", "1", "--log", str(log)])
        thread.join(5)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["checkpoint"]["uri"] == saved[0].uri
    wait = next(r for r in read_log(log) if r["event"] == "checkpoint_wait")
    # The bound is the start of the last poll that saw no notice: before the notice, before the save.
    assert _iso(wait["newer_than"]) < saved[0].created_at < _iso(doc["notice"]["detected_at"])


def test_a_long_poll_does_not_make_an_old_checkpoint_fresh(tmp_path: Path, runner) -> None:
    """GCP long-polls: the poll that saw no notice may have started half a minute earlier, but the
    notice is seen the moment it appears, so a checkpoint saved seconds before it is stale."""
    ckpt = tmp_path / "ckpt"
    with GcpMetadataEmulator() as emu:

        def stale_save_then_notice() -> None:
            _after_a_poll(emu, 2, 0.2)  # inside the long-poll
            CheckpointStore(str(ckpt)).save(3, b"before the notice")
            time.sleep(1.5)
            emu.schedule_notice(0)

        thread = _in_thread(stale_save_then_notice)
        result = runner.invoke(app, ["watch", "--source", "gcp", "--endpoint", emu.endpoint,
                                     "--checkpoint-uri", str(ckpt), "--checkpoint-timeout", "0.5"])
        thread.join(5)
    assert result.exit_code == 3, result.output
    assert json.loads(result.stdout)["checkpoint"] is None


def test_an_outage_before_the_notice_vouches_for_nothing(tmp_path: Path, runner) -> None:
    """A quiet poll, then the service fails for a while (the notice may have come during it), then
    the notice: a routine save made during the outage predates what anything vouches for, so it
    must not count as the fresh checkpoint (exit 3), or the node would go with work unsaved."""
    ckpt = tmp_path / "ckpt"
    with NoticeUrlEmulator() as emu:

        def outage_save_then_notice() -> None:
            _after_a_poll(emu, 1, 0.02)
            emu.fail_next(500, count=4)
            _after_a_poll(emu, 2, 0.0)  # the outage has begun
            CheckpointStore(str(ckpt)).save(1, b"routine, before the notice")
            _after_a_poll(emu, 5, 0.0)  # the failures are answered
            emu.schedule_notice(0)

        thread = _in_thread(outage_save_then_notice)
        result = runner.invoke(app, ["watch", "--source", "url", "--endpoint", emu.url, "--interval", "100ms",
                                     "--checkpoint-uri", str(ckpt), "--checkpoint-timeout", "0.5"])
        thread.join(5)
    assert result.exit_code == 3, result.output
    assert json.loads(result.stdout)["checkpoint"] is None


# -- 7. default deadlines -------------------------------------------------------------------------
def test_a_notice_without_a_service_deadline_carries_the_default_one(tmp_path: Path, runner) -> None:
    log, seen = tmp_path / "w.jsonl", tmp_path / "env"
    with GcpMetadataEmulator() as emu, WebhookReceiver() as hook:
        emu.schedule_notice(0.2)
        result = runner.invoke(app, ["watch", "--source", "gcp", "--endpoint", emu.endpoint, "--log", str(log),
                                     "--command", f'echo "$SPOTPLAN_NOTICE_DEADLINE" > {seen}', "--webhook", hook.url])
        messages = hook.messages
    assert result.exit_code == 0, result.output
    notice = json.loads(result.stdout)["notice"]
    assert notice["deadline"] is not None
    assert _iso(notice["deadline"]) - _iso(notice["detected_at"]) == timedelta(seconds=30)  # GCP: +30 s
    assert next(r for r in read_log(log) if r["event"] == "notice")["deadline"] == notice["deadline"]
    assert seen.read_text().strip() == notice["deadline"]
    assert f"(deadline {notice['deadline']})" in messages[0]["text"]


def test_url_true_and_aws_without_a_time_get_the_default_deadline() -> None:
    from spotplan.watch.sources import Notice, UrlSource

    with NoticeUrlEmulator(body="true") as emu:
        emu.schedule_notice(0)
        notice = UrlSource(emu.url).poll()
    assert notice is not None and notice.deadline == notice.detected_at + timedelta(seconds=30)
    assert notice.to_dict()["deadline"] is not None
    now = datetime.now().astimezone()
    assert Notice("aws", "terminate", now).deadline == now + timedelta(seconds=120)


# -- 8. --log -------------------------------------------------------------------------------------
def test_an_unwritable_log_is_a_usage_error(tmp_path: Path, runner) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = runner.invoke(app, ["watch", *SAFE, "--log", str(blocker / "watch.jsonl")])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: --log: cannot write ") and len(result.stderr.strip().splitlines()) == 1


# -- 9. second audit ------------------------------------------------------------------------------
def test_spotplan_watch_url_serves_auto_and_url_without_endpoint(runner, monkeypatch, sockdir: Path) -> None:
    for var in ("SPOTPLAN_AWS_IMDS_ENDPOINT", "SPOTPLAN_GCP_METADATA_ENDPOINT", "SPOTPLAN_AZURE_IMDS_ENDPOINT"):
        monkeypatch.setenv(var, closed_url())
    monkeypatch.setenv("SPOTPLAN_ECI_SOCKET", f"unix:{sockdir}/none.sock")
    with NoticeUrlEmulator() as emu:
        emu.schedule_notice(0)
        monkeypatch.setenv("SPOTPLAN_WATCH_URL", emu.url)
        for flags in ([], ["--source", "auto"], ["--source", "url"]):
            result = runner.invoke(app, ["watch", "--once", *flags])
            assert result.exit_code == 0, (flags, result.output)
            assert json.loads(result.stdout)["notice"]["source"] == "url"
    monkeypatch.setenv("SPOTPLAN_WATCH_URL", "ftp://127.0.0.1/notice")
    result = runner.invoke(app, ["watch", "--once", "--source", "url"])
    assert result.exit_code == 2 and result.stderr.startswith("error: SPOTPLAN_WATCH_URL: unsupported endpoint")
    monkeypatch.delenv("SPOTPLAN_WATCH_URL")
    result = runner.invoke(app, ["watch", "--once", "--source", "url"])
    assert result.exit_code == 2 and "--source url needs --endpoint URL (or SPOTPLAN_WATCH_URL)" in result.stderr


@pytest.mark.parametrize("value", ["inf", "Infinity", "nan", "-1"])
def test_a_checkpoint_timeout_that_is_no_finite_number_is_a_usage_error(runner, value: str) -> None:
    result = runner.invoke(app, ["watch", *SAFE, "--checkpoint-timeout", value])
    assert result.exit_code == 2, result.output


WAITS_FOR_USR1 = """
import signal, sys, time
signal.signal(signal.SIGUSR1, lambda *a: sys.exit(7))
print("ready", flush=True)
time.sleep(30)
"""


@pytest.mark.parametrize("options", [["-u"], ["-W", "ignore"], ["-X", "dev", "-u"], ["-B", "-u", "-O"]])
def test_process_finds_the_script_after_interpreter_options(tmp_path: Path, options: list[str]) -> None:
    script = tmp_path / f"trainer_{os.getpid()}_{len(options)}.py"
    script.write_text(WAITS_FOR_USR1)
    proc = subprocess.Popen([sys.executable, *options, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        outcome = send_signal(signal.SIGUSR1, process=script.name)
        assert outcome["pids"] == [proc.pid] and proc.wait(5) == 7
    finally:
        proc.kill()
        proc.wait()


def test_process_skips_a_wrapper_that_passed_the_agent_its_arguments(tmp_path: Path) -> None:
    """`sudo`/`timeout ... spotplan watch --process NAME` hold NAME only because they pass the agent
    its arguments (sudo would relay the signal to the agent): not a match. A trainer that started
    the agent is one, by its own arguments."""
    name = f"trainer_{os.getpid()}.py"
    finder = "import sys; from spotplan.watch.actions import find_processes; print(find_processes(sys.argv[-1]))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # sh hands "$@" (--process NAME) on to the finder, so sh's own arguments end with them; `; true`
    # keeps sh from exec-ing the finder in its place.
    wrapper = subprocess.run(["sh", "-c", f'{sys.executable} -c "$0" "$@"; true', finder, "--process", name],
                             capture_output=True, text=True, env=env, timeout=20)
    assert wrapper.stdout.strip() == "[]", wrapper.stderr
    trainer = tmp_path / name
    trainer.write_text(f"import os, subprocess, sys\nsubprocess.run([sys.executable, '-c', {finder!r}, "
                       f"'--process', {name!r}])\nprint(os.getpid())\n")
    started = subprocess.run([sys.executable, str(trainer)], capture_output=True, text=True, env=env, timeout=20)
    found, pid = started.stdout.split("\n")[:2]
    assert found == f"[{pid}]", started.stderr


def test_a_slow_command_holds_back_neither_the_alert_nor_the_verdict(tmp_path: Path) -> None:
    """A --command still running does not delay the alert and the stdout verdict until the deadline
    (when the node may already be gone); the agent waits for it only after them."""
    log = tmp_path / "w.jsonl"
    with NoticeUrlEmulator(notice_lead=5) as emu, WebhookReceiver() as hook:
        watch = watch_subprocess("--source", "url", "--endpoint", emu.url, "--interval", "100ms",
                                 "--command", "exec sleep 30", "--webhook", hook.url, "--log", str(log))
        try:
            emu.schedule_notice(0.3)
            assert watch.stdout is not None
            verdict = json.loads(watch.stdout.readline())
            at_verdict = time.monotonic()
            lingering = watch.poll() is None
            messages = hook.messages
            watch.wait(20)
        finally:
            watch.kill()
            watch.wait()
            for record in read_log(log) if log.exists() else []:
                if record["event"] == "command_running":
                    os.kill(record["pid"], signal.SIGKILL)  # left running by design: the node goes anyway
        assert emu.notice_at is not None
        assert at_verdict - emu.notice_at < 2.0 and lingering, "the verdict waited for the command"
    assert watch.returncode == 0 and verdict["exit_code"] == 0
    assert len(messages) == 1 and "url terminate notice" in messages[0]["text"]
    ev = events(log)
    assert ev.index("command_started") < ev.index("webhook_sent") < ev.index("command_running") < ev.index("exit")
