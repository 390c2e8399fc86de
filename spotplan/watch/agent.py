"""The watch loop: poll a source at a fixed rate, and on a reclaim notice run the actions in order
(signal, docker, command: each takes effect before the next starts), wait for a checkpoint fresher
than the notice within the time left, upload it, acknowledge the event, alert, give the verdict,
then wait for a command still running until the deadline, and return the exit code. Every state
change is one JSON line in the log.

`--source auto` keeps probing every interval until a metadata service answers (with `--once`, no
answer is the verdict: exit 1).

With `fallback_move`, a notice handled with a fresh checkpoint then runs the move's fallback to
on-demand through the executor (`spotplan.executor.fallback_move`, which journals it).

Exit codes: 0 no notice (`--once`) or a notice handled with a fresh verified checkpoint (or with no
`--checkpoint-uri` to check), and the fallback done if one was asked; 3 a notice but no fresh
checkpoint in time; 5 the checkpoint was saved but the fallback to on-demand failed; 1 a runtime
failure (metadata unreachable with `--once`, an upload that failed).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from spotplan.errors import EXIT_OK, EXIT_PARTIAL, EXIT_RUNTIME
from spotplan.times import utcnow
from spotplan.watch import actions
from spotplan.watch.sources import MetadataError, Notice, Source, make_source, next_poll_delay

# A notice handled in part: no fresh checkpoint, or (the work safe) no on-demand replacement. Both
# are DESIGN.md's 3, a partial failure; the log and the verdict say which. A distinct code keeps
# supervisors from restarting an agent that would find the same notice pending and act again.
EXIT_NO_CHECKPOINT = EXIT_PARTIAL
EXIT_FALLBACK_FAILED = EXIT_PARTIAL


@dataclass
class WatchConfig:
    source: str = "auto"
    endpoint: str | None = None
    interval: float = 1.0
    signal: int | None = None
    pid: int | None = None
    process: str | None = None
    docker: str | None = None
    docker_stop_timeout: int | None = None
    command: str | None = None
    checkpoint_uri: str | None = None
    checkpoint_timeout: float | None = None
    upload_to: str | None = None
    webhook: str | None = None
    once: bool = False
    act_on_rebalance: bool = False
    log: Path | None = None
    verbose: bool = False
    fallback_move: str | None = None
    journal: Path | None = None  # None: the default journal (XDG_DATA_HOME)


class EventLog:
    """JSON lines, one per state change, to `--log` (appended, flushed at once) and stderr in verbose.
    Opening raises OSError when the path cannot be written (the CLI reports it as a usage error)."""

    def __init__(self, path: Path | None, verbose: bool) -> None:
        self.verbose = verbose
        self._file: IO[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())
        self._lock = threading.Lock()

    def __call__(self, event: str, **fields: Any) -> None:
        record = {"ts": utcnow().isoformat(timespec="milliseconds").replace("+00:00", "Z"), "event": event}
        record.update({k: v for k, v in fields.items() if v is not None})
        line = json.dumps(record, default=str)
        with self._lock:
            if self._file is not None:
                self._file.write(line + "\n")
                self._file.flush()
            if self.verbose:
                sys.stderr.write(line + "\n")
                sys.stderr.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class _Stop(Exception):
    """Raised from the SIGTERM/SIGINT handler while the agent is only waiting for a notice."""


@dataclass
class WatchResult:
    exit_code: int
    notice: Notice | None = None
    checkpoint: Any = None
    uploaded: Any = None
    acknowledged: bool = False
    stopped: bool = False
    fallback: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "notice": self.notice.to_dict() if self.notice else None,
            "checkpoint": self.checkpoint.to_dict() if self.checkpoint else None,
            "uploaded": self.uploaded.to_dict() if self.uploaded else None,
            "acknowledged": self.acknowledged,
            "stopped": self.stopped,
            "fallback": self.fallback,
        }


class Agent:
    """`on_verdict` is called once with the result as soon as it is known (on a notice, before a
    command still running is waited for), so the caller can print it while the agent lingers."""

    def __init__(
        self,
        config: WatchConfig,
        source: Source | None = None,
        log: EventLog | None = None,
        on_verdict: Callable[[WatchResult], None] | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self.log = log or EventLog(config.log, config.verbose)
        self._interruptible = False
        self._on_verdict = on_verdict
        self._verdict_given = False

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> WatchResult:
        cfg = self.config
        previous = self._install_stop_handlers()
        try:
            if self.source is None:
                self.source = self._find_source()
            self.log("started", source=self.source.name, endpoint=self.source.endpoint, interval=cfg.interval,
                     pid=os.getpid(), host=socket.gethostname(), fallback_move=cfg.fallback_move)
            result = self._loop(self.source)
        except _Stop:
            self.log("stopped", reason="signal")
            result = WatchResult(EXIT_OK, stopped=True)
        finally:
            self._interruptible = False
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        self._verdict(result)
        return result

    def _find_source(self) -> Source:
        """The configured source. `auto` probes every interval until a service answers, logging the
        failure once like any metadata error: at boot the metadata service may not be up yet, and a
        node agent that exits then is not watching when the notice comes. With `--once` the first
        failure is the verdict (exit 1)."""
        cfg = self.config
        error: str | None = None
        while True:
            started = time.monotonic()
            self._interruptible = True  # nothing is being handled yet: SIGTERM may stop it
            try:
                source = make_source(cfg.source, cfg.endpoint)
            except MetadataError as exc:
                self._interruptible = False
                if cfg.once or cfg.source != "auto":
                    raise
                error = self._metadata_error(exc, error)
                self._sleep(next_poll_delay(started, cfg.interval))
                continue
            self._interruptible = False
            if error is not None:
                self.log("metadata_ok", source=source.name)
            return source

    def _metadata_error(self, exc: MetadataError, previous: str | None) -> str:
        """Log a metadata error once per distinct message (a state change, not a heartbeat)."""
        if str(exc) != previous:
            self.log("metadata_error", error=str(exc))
        return str(exc)

    def _loop(self, source: Source) -> WatchResult:
        cfg = self.config
        error: str | None = None
        seen_rebalance = False
        quiet_since: datetime | None = None  # see _fresh_after
        follows_quiet = False  # the previous poll answered "no notice" (no error in between)
        while True:
            started, started_at = time.monotonic(), utcnow()
            self._interruptible = True
            try:
                notice = source.poll(0 if cfg.once else cfg.interval)
            except MetadataError as exc:
                self._interruptible = False
                error = self._metadata_error(exc, error)
                if cfg.once:
                    raise
                # Nothing vouches for the time before an outage: the notice may have come during it.
                quiet_since, follows_quiet = None, False
                self._sleep(next_poll_delay(started, cfg.interval))
                continue
            self._interruptible = False
            if error is not None:
                self.log("metadata_ok")
                error = None
            if notice is not None and not notice.actionable:
                if not seen_rebalance:
                    self.log("rebalance", **notice.to_dict())
                    seen_rebalance = True
                if not cfg.act_on_rebalance:
                    notice = None
            if notice is not None:
                return self.handle(notice, self._fresh_after(source, notice, quiet_since, follows_quiet))
            if cfg.once:
                self.log("no_notice", source=source.name)
                return WatchResult(EXIT_OK)
            quiet_since = self._quiet_from(source, started_at)
            follows_quiet = True
            # Also after a long-poll: one that waited is due again at once (the delay is negative),
            # one that answered early keeps to the interval instead of spinning.
            self._sleep(next_poll_delay(started, cfg.interval))

    def _quiet_from(self, source: Source, started_at: datetime) -> datetime:
        """The moment a poll that saw no notice vouches for: a short poll read the service's state
        after it started; a long-poll answers at its end, after waiting for a change all along."""
        if source.long_poll:
            return max(started_at, utcnow() - timedelta(seconds=self.config.interval))
        return started_at

    def _fresh_after(self, source: Source, notice: Notice, quiet_since: datetime | None,
                     follows_quiet: bool) -> datetime:
        """Since when a checkpoint counts as fresh (`newer_than`). When the poll just before this one
        saw no notice, the notice appeared after that poll started, so a checkpoint saved since then
        counts, including one the trainer saved on its own between the notice and our poll (e.g.
        with its PreemptionGuard). A long-poll answers the moment the notice appears, so after a
        quiet long-poll the bound is detection minus one interval (the start of that long-poll
        could be half a minute earlier). With no quiet poll just before (the first poll, or one
        after an outage) nothing vouches for an earlier moment: detection itself."""
        if quiet_since is None or not follows_quiet:
            return notice.detected_at
        if source.long_poll:
            return max(quiet_since, notice.detected_at - timedelta(seconds=self.config.interval))
        return quiet_since

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._interruptible = True
            time.sleep(seconds)
            self._interruptible = False

    def _install_stop_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def stop(signum: int, frame: Any) -> None:
            # While a notice is being handled the node is going away anyway (GCP and Azure send ACPI
            # soft-off, i.e. SIGTERM to everyone): finish the job instead of dying half-way.
            if self._interruptible:
                raise _Stop()
            self.log("signal_ignored", signal=signal.Signals(signum).name, reason="handling a notice")

        return {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}

    # -- a notice -----------------------------------------------------------------------------
    def handle(self, notice: Notice, fresh_after: datetime | None = None) -> WatchResult:
        """Act on `notice`; a checkpoint created after `fresh_after` (default: the notice's
        detection) is fresh."""
        cfg = self.config
        if fresh_after is None:
            fresh_after = notice.detected_at
        if cfg.checkpoint_timeout is not None:
            budget = cfg.checkpoint_timeout
        else:
            budget = max(0.0, (notice.effective_deadline() - utcnow()).total_seconds())
        budget_end = time.monotonic() + budget
        details = notice.to_dict()
        self.log("notice", **details, seconds_left=round(max(0.0, budget_end - time.monotonic()), 3))
        sys.stderr.write(f"spotplan watch: {notice.source} {notice.kind} notice, deadline {details['deadline']}\n")
        env = {
            "SPOTPLAN_NOTICE_SOURCE": notice.source,
            "SPOTPLAN_NOTICE_KIND": notice.kind,
            "SPOTPLAN_NOTICE_DEADLINE": details["deadline"] or "",
        }
        children: list[tuple[str, actions.Child]] = []
        if cfg.pid is not None or cfg.process:
            sig = cfg.signal if cfg.signal is not None else signal.SIGTERM
            outcome = actions.send_signal(sig, pid=cfg.pid, process=cfg.process)
            self.log("signal_sent" if outcome["pids"] else "signal_failed", **outcome)
        if cfg.docker:
            self._docker(cfg.docker, budget_end)
        if cfg.command:
            try:
                children.append(("command", actions.start_command(cfg.command, env)))
                self.log("command_started", command=cfg.command)
            except RuntimeError as exc:
                self.log("command_failed", error=str(exc))

        result = WatchResult(EXIT_OK, notice=notice)
        if cfg.checkpoint_uri:
            self._checkpoint(notice, fresh_after, budget_end, result)
        if cfg.fallback_move:
            self._fallback(cfg.fallback_move, result)
        # The verdict does not depend on the command: alert now, while there is time to deliver it,
        # and only then give a command still running (a slow sync, say) until the deadline.
        if cfg.webhook:
            self._alert(notice, result)
        self._verdict(result)
        self._reap(children, budget_end)
        self.log("exit", code=result.exit_code)
        return result

    def _verdict(self, result: WatchResult) -> None:
        if self._on_verdict is not None and not self._verdict_given:
            self._verdict_given = True
            self._on_verdict(result)

    def _docker(self, container: str, budget_end: float) -> None:
        """`docker kill`/`docker stop`, awaited before the command starts: the command may sync what
        the container saves, so the container must have had its signal (or stopped) first. The wait
        is bounded by the stop timeout plus a grace, so a hung daemon cannot hold the command back,
        and by the notice's deadline."""
        cfg = self.config
        try:
            argv, child = actions.start_docker(container, cfg.signal, cfg.docker_stop_timeout)
        except RuntimeError as exc:
            self.log("docker_failed", error=str(exc))
            return
        self.log("docker_started", argv=argv)
        # The command must still run before the node goes.
        left = max(0.1, budget_end - time.monotonic())
        self._finish("docker", child, min(actions.docker_wait(cfg.docker_stop_timeout), left))

    def _checkpoint(self, notice: Notice, fresh_after: datetime, budget_end: float, result: WatchResult) -> None:
        from spotplan.checkpoint import CheckpointStore, is_local_uri

        cfg = self.config
        assert cfg.checkpoint_uri is not None
        try:
            store = CheckpointStore(cfg.checkpoint_uri, keep=0)
        except Exception as exc:  # checked at start; if it still breaks, the verdict must go out
            self.log("checkpoint_failed", uri=cfg.checkpoint_uri, error=str(exc))
            result.exit_code = EXIT_RUNTIME
            return
        newer_than = fresh_after.isoformat().replace("+00:00", "Z")
        self.log("checkpoint_wait", uri=cfg.checkpoint_uri, newer_than=newer_than)
        info = actions.wait_for_checkpoint(store, fresh_after, budget_end)
        if info is None:
            self.log("checkpoint_missing", uri=cfg.checkpoint_uri, newer_than=newer_than)
            result.exit_code = EXIT_NO_CHECKPOINT
            return
        result.checkpoint = info
        self.log("checkpoint_ready", uri=info.uri, step=info.step, created_at=info.to_dict()["created_at"],
                 age_after_notice=round((info.created_at - notice.detected_at).total_seconds(), 3))
        if cfg.upload_to and not (store.local and not is_local_uri(cfg.upload_to)):
            self.log("upload_skipped", reason="only a local checkpoint is copied to a remote store")
        elif cfg.upload_to:
            try:
                remote = CheckpointStore(cfg.upload_to, keep=0)
                result.uploaded = store.copy_to(info, remote)
                self.log("uploaded", uri=result.uploaded.uri, step=info.step)
            except Exception as exc:  # a missing extra, credentials, the network: all "the upload failed"
                self.log("upload_failed", error=str(exc))
                result.exit_code = EXIT_RUNTIME
        # Acknowledged even after a failed upload: the save and the upload are over, so approving
        # cuts nothing short, and holding the event back would only idle the VM until NotBefore.
        assert self.source is not None
        try:
            if self.source.acknowledge(notice):
                result.acknowledged = True
                self.log("acknowledged", event_id=notice.event_id)
        except MetadataError as exc:
            self.log("acknowledge_failed", error=str(exc))

    def _fallback(self, move_id: str, result: WatchResult) -> None:
        """Resume the move on on-demand capacity, but only once its work is known to be safe."""
        if result.exit_code != EXIT_OK:
            reason = "no fresh checkpoint in time" if result.checkpoint is None else "the checkpoint upload failed"
            self.log("fallback_skipped", move_id=move_id, reason=reason)
            return
        try:
            outcome = self._run_fallback(move_id)
        except Exception as exc:  # whatever broke, the checkpoint is saved: say so with its own code
            outcome = {"move_id": move_id, "status": "failed", "error": str(exc)}
        result.fallback = outcome
        if outcome["status"] == "skipped":
            self.log("fallback_skipped", **outcome)
        elif outcome["status"] == "done":
            self.log("fallback_done", **outcome)
        else:
            self.log("fallback_failed", **outcome)
            result.exit_code = EXIT_FALLBACK_FAILED

    def _run_fallback(self, move_id: str) -> dict[str, Any]:
        from spotplan.errors import InputError
        from spotplan.executor import Options, fallback_move
        from spotplan.journal import Journal

        journal = Journal(self.config.journal)
        try:
            prior = journal.get_move(move_id)
            if prior is None:
                raise InputError(f"no move {move_id!r} in the journal {journal.path}")
            mode = prior["move"].get("fallback", "on-demand")
            if mode != "on-demand":
                return {"move_id": move_id, "status": "skipped", "reason": f"the move's fallback is {mode!r}"}
            self.log("fallback_started", move_id=move_id, journal=str(journal.path))
            report = fallback_move(
                move_id, Options(), journal,
                log=lambda move, step: self.log("fallback_step", move_id=move, step=step),
            )
        finally:
            journal.close()
        data = {s.step: s.data for s in report.steps}
        return {
            "move_id": move_id,
            "status": report.status,
            "error": report.error,
            "instance_ids": data.get("fallback_acquire", {}).get("fallback_ids"),
            "resumed_from": data.get("fallback_resume", {}).get("resumed_from"),
        }

    def _reap(self, children: list[tuple[str, actions.Child]], budget_end: float) -> None:
        for what, child in children:
            self._finish(what, child, max(0.1, budget_end - time.monotonic()))

    def _finish(self, what: str, child: actions.Child, timeout: float) -> None:
        try:
            code, tail = child.finish(timeout=timeout)
            self.log(f"{what}_done", returncode=code, output=tail)
        except Exception:  # still running when its time is up: leave it, the node is going anyway
            self.log(f"{what}_running", pid=child.proc.pid)

    def _alert(self, notice: Notice, result: WatchResult) -> None:
        cfg = self.config
        assert cfg.webhook is not None
        ck = result.uploaded or result.checkpoint
        outcome = (
            f"checkpoint step {ck.step} at {ck.uri}" if ck else
            "NO fresh checkpoint in time" if cfg.checkpoint_uri else "actions run"
        )
        text = (
            f"[spotplan] {notice.source} {notice.kind} notice on {socket.gethostname()} "
            f"(deadline {notice.to_dict()['deadline']}): {outcome}"
            + (f"; on-demand fallback of {result.fallback['move_id']} {result.fallback['status']}"
               if result.fallback else "")
            + f"; exit {result.exit_code}"
        )
        try:
            status = actions.post_webhook(cfg.webhook, text, result.to_dict())
            self.log("webhook_sent", status=status)
        except Exception as exc:  # an alert that fails must not change the verdict
            self.log("webhook_failed", error=str(exc))

