"""`spotplan watch` end to end: a real trainer process (examples/train_resumable.py), an emulated
metadata service raising a notice, and the verdict: signal delivered, fresh verified checkpoint,
Azure event acknowledged, webhook posted, JSON-lines log, and the documented exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from spotplan.checkpoint import CheckpointStore
from spotplan.cli.main import app
from tests.emulators.metadata import (
    AwsImdsEmulator,
    AzureScheduledEventsEmulator,
    DockerEngineEmulator,
    EciGuestAgentEmulator,
    GcpMetadataEmulator,
    NoticeUrlEmulator,
    WebhookReceiver,
)

ROOT = Path(__file__).resolve().parents[1]
TRAINER = ROOT / "examples" / "train_resumable.py"
pytestmark = pytest.mark.timeout(40)


class Trainer:
    """examples/train_resumable.py as a child process, ready once its PreemptionGuard is installed."""

    def __init__(self, ckpt: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(TRAINER), "--checkpoint-uri", str(ckpt), "--steps", "100000000",
             "--save-every", "500", "--step-seconds", "0.002", *extra],
            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        assert line.startswith("training from step"), line

    @property
    def pid(self) -> int:
        return self.proc.pid

    def finish(self, timeout: float = 10) -> tuple[int, str]:
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
            return -9, err
        return self.proc.returncode, err


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as hook:
        yield hook


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def events(path: Path) -> list[str]:
    return [r["event"] for r in read_log(path)]


def watch_subprocess(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "spotplan", "watch", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


# -- the whole story, as on a real node (watch and trainer are both separate processes) -----------
def test_azure_preempt_signal_checkpoint_ack_webhook(tmp_path: Path, webhook: WebhookReceiver) -> None:
    ckpt, log = tmp_path / "ckpt", tmp_path / "watch.jsonl"
    # No periodic saves: one that lands between the last quiet poll and the notice is fresh too
    # (docs/node-agent.md step 3), and the verdict would rightly name it instead of the SIGUSR1 one.
    trainer = Trainer(ckpt, "--save-every", "0")
    try:
        with AzureScheduledEventsEmulator(not_before_seconds=20) as emu:
            watch = watch_subprocess(
                "--source", "azure", "--endpoint", emu.endpoint, "--signal", "SIGUSR1", "--process",
                "train_resumable.py", "--checkpoint-uri", str(ckpt), "--webhook", webhook.url, "--log", str(log),
            )
            while not log.exists() or "started" not in log.read_text():
                time.sleep(0.05)
            notice_at = emu.schedule_notice(0.3)
            out, err = watch.communicate(timeout=20)
    finally:
        code, trainer_err = trainer.finish()
    assert watch.returncode == 0, err
    assert code == 0 and "preempted (SIGUSR1)" in trainer_err
    result = json.loads(out)
    store = CheckpointStore(str(ckpt))
    fresh = store.latest(newer_than=notice_at)
    assert fresh is not None and store.verify(fresh) and fresh.metadata["reason"] == "SIGUSR1"
    assert result["checkpoint"]["uri"] == fresh.uri and result["acknowledged"] is True
    assert emu.acks == [result["notice"]["event_id"]]
    assert emu.throttled == 0
    ev = events(log)
    assert ev[:2] == ["started", "notice"]
    assert ev.index("signal_sent") < ev.index("checkpoint_ready") < ev.index("acknowledged") < ev.index("exit")
    assert "webhook_sent" in ev and read_log(log)[-1] == {**read_log(log)[-1], "event": "exit", "code": 0}
    (message,) = webhook.messages
    assert "azure preempt notice" in message["text"] and f"step {fresh.step}" in message["text"]
    # The trainer resumes where the preemption checkpoint left it.
    again = subprocess.run(
        [sys.executable, str(TRAINER), "--checkpoint-uri", str(ckpt), "--steps", str(fresh.step + 5)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=30,
    )
    assert again.returncode == 0 and f"resumed from step {fresh.step}" in again.stderr


def test_no_fresh_checkpoint_in_time_exits_3_without_acknowledging(tmp_path: Path, webhook) -> None:
    ckpt, log = tmp_path / "ckpt", tmp_path / "watch.jsonl"
    # Stale: saved well before the notice (and more than an interval before the watcher can see it).
    CheckpointStore(str(ckpt)).save(1, b"old", created_at=datetime.now(timezone.utc) - timedelta(minutes=1))
    sleeper = subprocess.Popen(["sleep", "30"])  # gets the signal but never checkpoints
    try:
        with AzureScheduledEventsEmulator(not_before_seconds=1.5) as emu:
            emu.schedule_notice(0.2)
            t0 = time.monotonic()
            watch = watch_subprocess(
                "--source", "azure", "--endpoint", emu.endpoint, "--pid", str(sleeper.pid),
                "--checkpoint-uri", str(ckpt), "--webhook", webhook.url, "--log", str(log),
            )
            out, err = watch.communicate(timeout=20)
            took = time.monotonic() - t0
    finally:
        sleeper.kill()
    assert watch.returncode == 3, err
    assert sleeper.wait() == -signal.SIGTERM  # SIGTERM is the default signal
    assert emu.acks == []  # never approve the eviction before a checkpoint is safe
    assert took < 6, "the wait is bounded by the event's NotBefore"
    assert "checkpoint_missing" in events(log) and json.loads(out)["checkpoint"] is None
    assert "NO fresh checkpoint" in webhook.messages[0]["text"]


def test_idle_watcher_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "w.jsonl"
    with GcpMetadataEmulator() as emu:
        watch = watch_subprocess("--source", "gcp", "--endpoint", emu.endpoint, "--log", str(log))
        while not log.exists():
            time.sleep(0.05)
        time.sleep(0.3)  # inside the long-poll by now
        watch.send_signal(signal.SIGTERM)
        out, err = watch.communicate(timeout=10)
    assert watch.returncode == 0 and json.loads(out)["stopped"] is True
    assert events(log) == ["started", "stopped"]


# -- each source and action, in-process through the CLI runner (the trainer is still a real child) --
def test_gcp_notice_with_upload_to_s3(tmp_path: Path, runner, monkeypatch) -> None:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for key, value in {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "x",
                       "AWS_SECRET_ACCESS_KEY": "y", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    import boto3
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()  # a cached filesystem may still point at an older endpoint
    boto3.client("s3").create_bucket(Bucket="durable")
    ckpt, log = tmp_path / "ckpt", tmp_path / "w.jsonl"
    trainer = Trainer(ckpt)
    try:
        with GcpMetadataEmulator() as emu:
            emu.schedule_notice(0.5)
            result = runner.invoke(app, [
                "watch", "--source", "gcp", "--endpoint", emu.endpoint, "--signal", "USR1", "--pid", str(trainer.pid),
                "--checkpoint-uri", str(ckpt), "--upload-to", "s3://durable/run1", "--log", str(log),
            ])
            assert len(emu.requests) <= 4, "GCP is long-polled, not polled every second"
    finally:
        trainer.finish()
        remote = CheckpointStore("s3://durable/run1", storage_options={"skip_instance_cache": True})
        uploaded = remote.latest()
        server.stop()
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert uploaded is not None and uploaded.uri == doc["uploaded"]["uri"]
    assert uploaded.step == doc["checkpoint"]["step"] and uploaded.files == doc["checkpoint"]["files"]
    assert events(log).index("checkpoint_ready") < events(log).index("uploaded")


def test_aws_notice_via_docker_kill(tmp_path: Path, sockdir: Path, runner, monkeypatch) -> None:
    ckpt, log = tmp_path / "ckpt", tmp_path / "w.jsonl"
    trainer = Trainer(ckpt)
    try:
        with AwsImdsEmulator() as imds, DockerEngineEmulator(str(sockdir / "docker.sock")) as engine:
            engine.containers["trainer"] = trainer.pid
            monkeypatch.setenv("DOCKER_HOST", f"unix://{sockdir}/docker.sock")
            imds.schedule_notice(0.3)
            result = runner.invoke(app, [
                "watch", "--source", "aws", "--endpoint", imds.endpoint, "--interval", "200ms",
                "--docker", "trainer", "--signal", "SIGUSR1", "--checkpoint-uri", str(ckpt), "--log", str(log),
            ])
    finally:
        code, trainer_err = trainer.finish()
    assert result.exit_code == 0, result.output
    assert ("kill", "trainer", {"signal": "SIGUSR1"}) in engine.calls
    assert code == 0 and "preempted (SIGUSR1)" in trainer_err
    assert {"docker_started", "docker_done", "checkpoint_ready"} <= set(events(log))
    doc = json.loads(result.stdout)
    assert doc["notice"]["kind"] == "terminate" and doc["acknowledged"] is False


def test_eci_notice_runs_a_command_with_notice_env(tmp_path: Path, sockdir: Path, runner) -> None:
    marker = tmp_path / "marker"
    with EciGuestAgentEmulator(str(sockdir / "eci.sock")) as eci:
        eci.schedule_notice(0.2)
        result = runner.invoke(app, [
            "watch", "--source", "eci", "--endpoint", eci.endpoint, "--interval", "0.2",
            "--command", f'echo "$SPOTPLAN_NOTICE_SOURCE $SPOTPLAN_NOTICE_KIND" > {marker}',
        ])
    assert result.exit_code == 0, result.output
    assert marker.read_text().strip() == "eci terminate"


def test_a_chatty_command_still_gets_its_checkpoint_saved(tmp_path: Path, sockdir: Path, runner) -> None:
    # 200 kB of output before the save: more than a pipe holds, so a child writing into an unread pipe
    # would block before saving and the watcher would give up (exit 3).
    ckpt, log = tmp_path / "ckpt", tmp_path / "w.jsonl"
    save = f"from spotplan.checkpoint import CheckpointStore; CheckpointStore({str(ckpt)!r}).save(7, b'w')"
    command = f"head -c 200000 /dev/zero | tr '\\0' x; {sys.executable} -c \"{save}\"; echo saved"
    with EciGuestAgentEmulator(str(sockdir / "eci.sock")) as eci:
        eci.schedule_notice(0.2)
        result = runner.invoke(app, [
            "watch", "--source", "eci", "--endpoint", eci.endpoint, "--interval", "0.2", "--command", command,
            "--checkpoint-uri", str(ckpt), "--checkpoint-timeout", "20", "--log", str(log),
        ], env={"PYTHONPATH": str(ROOT)})
    assert result.exit_code == 0, result.output
    done = next(r for r in read_log(log) if r["event"] == "command_done")
    assert done["returncode"] == 0 and done["output"].endswith("saved")
    assert CheckpointStore(str(ckpt)).latest().step == 7  # type: ignore[union-attr]


def test_url_source_metadata_errors_are_retried(tmp_path: Path, runner) -> None:
    log = tmp_path / "w.jsonl"
    with NoticeUrlEmulator() as emu:
        emu.fail_next(500, 2)
        emu.schedule_notice(0.5)
        result = runner.invoke(app, ["watch", "--source", "url", "--endpoint", emu.url, "--interval", "100ms",
                                     "--log", str(log)])
    assert result.exit_code == 0, result.output
    ev = events(log)
    assert ev.count("metadata_error") == 1, "the same error twice is one state change"
    assert ev.index("metadata_error") < ev.index("metadata_ok") < ev.index("notice")


def test_rebalance_is_logged_and_acted_on_only_when_asked(tmp_path: Path, runner) -> None:
    log = tmp_path / "w.jsonl"
    with AwsImdsEmulator() as imds:
        imds.schedule_rebalance(0)
        once = runner.invoke(app, ["watch", "--source", "aws", "--endpoint", imds.endpoint, "--once",
                                   "--log", str(log)])
        assert once.exit_code == 0 and json.loads(once.stdout)["notice"] is None
        assert events(log)[-2:] == ["rebalance", "no_notice"]
        acted = runner.invoke(app, ["watch", "--source", "aws", "--endpoint", imds.endpoint,
                                    "--act-on-rebalance", "--once"])
        assert acted.exit_code == 0 and json.loads(acted.stdout)["notice"]["kind"] == "rebalance"


# -- once, usage and failure modes ----------------------------------------------------------------
def test_once_without_notice(tmp_path: Path, runner) -> None:
    log = tmp_path / "w.jsonl"
    with AzureScheduledEventsEmulator() as emu:
        result = runner.invoke(app, ["watch", "--source", "azure", "--endpoint", emu.endpoint, "--once",
                                     "--log", str(log), "-v"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["notice"] is None
    assert events(log) == ["started", "no_notice"]
    # -v mirrors the same JSON lines on stderr; stdout keeps only the verdict.
    assert [json.loads(line)["event"] for line in result.stderr.splitlines()] == ["started", "no_notice"]


def test_once_with_unreachable_metadata_is_one_line_exit_1(runner) -> None:
    result = runner.invoke(app, ["watch", "--source", "aws", "--endpoint", "http://127.0.0.1:9", "--once"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--pid", "1", "--process", "x"], "not both"),
        (["--signal", "SIGNOPE", "--pid", "1"], "unknown signal"),
        (["--signal", "USR1"], "needs a target"),
        (["--interval", "soon"], "duration"),
        (["--source", "url"], "--endpoint"),
        (["--upload-to", "s3://b/x"], "--checkpoint-uri"),
        (["--docker-stop-timeout", "5"], "--docker"),
    ],
)
def test_usage_errors_exit_2(runner, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["watch", "--once", *args])
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_watch_modules_stay_light() -> None:
    code = (
        "import sys; import spotplan.cli.watch, spotplan.watch.agent; "
        "heavy = [m for m in ('fsspec', 'pandas', 'numpy', 'boto3', 's3fs', 'requests') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30)
    assert out.stdout.strip() == "[]"


def test_trainer_alone_saves_on_a_metadata_notice(tmp_path: Path) -> None:
    """Without the agent: the trainer's own PreemptionGuard polls the notice URL and saves."""
    ckpt = tmp_path / "ckpt"
    with NoticeUrlEmulator() as emu:
        trainer = Trainer(ckpt, "--guard-source", "url", "--guard-endpoint", emu.url)
        notice_at = emu.schedule_notice(0.2)
        code, err = trainer.finish(timeout=15)
    assert code == 0 and "preempted (url:terminate)" in err
    fresh = CheckpointStore(str(ckpt)).latest(newer_than=notice_at)
    assert fresh is not None and fresh.metadata["reason"] == "url:terminate"
