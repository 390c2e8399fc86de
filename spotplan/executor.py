"""Runs the moves of a plan, step by step, through the provider modules; the only place that knows
about dry runs, the journal and rollback.

A move is: preflight -> acquire (spot capacity on the target, held by its boot script) -> trigger a
checkpoint on the source -> verify a checkpoint newer than the trigger in durable storage -> check the
target still runs -> stop the source (and wait until it has stopped) -> resume on the target (tag it
with the checkpoint URI the boot script waits for) -> health check -> record. Capacity comes first,
so a move that cannot get spot changes nothing; the source is never stopped before a fresh
checkpoint is verified, nor once the spot capacity it would move to is gone.

Every step is journaled before and after its provider calls. `--resume` skips finished steps and
re-runs the interrupted one, which is safe because each step is idempotent: launches carry a token
(EC2 ClientToken / GCP requestId / a deterministic Azure VM name) and look for what an interrupted
run already created. A dry run builds the very same calls and only skips sending them; a step that
would fail is shown with the calls it built and the failure beside the call that met it.

`exit_status` turns the move reports into the exit code of DESIGN.md §3 (0 ok, 1 runtime, 2 input,
3 partial, 4 credentials), for real runs and dry runs alike.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from spotplan.errors import (
    EXIT_CREDENTIALS,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_RUNTIME,
    EXIT_USAGE,
    CloudError,
    CredentialsError,
    InputError,
    SpotplanError,
)
from spotplan.journal import FINAL_STATUSES, Journal
from spotplan.models import Move
from spotplan.providers.base import (
    Call,
    LaunchSpec,
    Provider,
    distinct,
    get_provider,
    provider_module,
    recording,
)
from spotplan.times import utcnow

STEPS = (
    "preflight",
    "acquire",
    "trigger_checkpoint",
    "verify_checkpoint",
    "check_target",
    "stop_source",
    "resume_target",
    "health_check",
    "record",
)
# The spot copy is released before the on-demand copy resumes, so two copies never train against
# one checkpoint store; the on-demand capacity is held first, and a checkpoint is known to exist.
FALLBACK_STEPS = (
    "fallback_verify",
    "fallback_acquire",
    "fallback_release_spot",
    "fallback_resume",
    "fallback_health",
    "fallback_record",
)
# Once this step has started the source may be down: failures after it restart the source.
SOURCE_STOP_STEP = "stop_source"
# Once this step has started the fallback's on-demand copy may be the only one: failures keep it.
SPOT_RELEASE_STEP = "fallback_release_spot"
# The steps that create instances: a move that failed before they started changed nothing.
CREATING_STEP = {"migrate": "acquire", "fallback": "fallback_acquire"}

# Report statuses. Succeeded and declined moves do not fail a run; every other final status does.
SUCCEEDED = ("done", "already-done", "dry-run")
DECLINED = "declined"
WOULD_FAIL = "dry-run (would fail)"
UNCHANGED = "failed (nothing changed)"
REFUSED = "refused"
KEPT = "failed (on-demand copy kept)"

#: Told (move id, step) as each step starts: the CLI prints it, `watch` logs it as data.
StepLog = Callable[[str, str], None]
ProviderFactory = Callable[[str, str], Provider]


@dataclass
class Options:
    dry_run: bool = False
    checkpoint_timeout: float = 600.0
    health_timeout: float = 600.0
    poll_interval: float = 2.0
    plan_path: str | None = None


@dataclass
class StepReport:
    step: str
    calls: list[Call] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    status: str = "done"  # done | skipped | failed | dry-run
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "status": self.status,
            "calls": [c.to_dict() for c in self.calls],
            "data": self.data,
            **({"error": self.error} if self.error else {}),
        }


@dataclass
class MoveReport:
    move_id: str
    workload: str
    kind: str
    status: str
    steps: list[StepReport] = field(default_factory=list)
    error: str | None = None
    exit_code: int = 0  # of the first failure (the one a real run stops at); 0 when none

    @property
    def failed(self) -> bool:
        return self.status not in (*SUCCEEDED, DECLINED)

    def to_dict(self) -> dict[str, Any]:
        return {
            "move_id": self.move_id,
            "workload": self.workload,
            "kind": self.kind,
            "status": self.status,
            "error": self.error,
            "steps": [s.to_dict() for s in self.steps],
        }


def _crash_point(step: str, when: str) -> None:
    """Test hook for the fault-injection suite: SIGKILL ourselves at a step boundary."""
    target = os.environ.get("SPOTPLAN_TEST_CRASH_AT")
    if target and target == f"{step}:{when}":
        os.kill(os.getpid(), signal.SIGKILL)


def build_user_data(move: Move, provider_name: str) -> str:
    """The target's boot script: hold until spotplan names the checkpoint, then run the resume command.

    The checkpoint URI arrives as an instance tag / metadata key, read from the instance metadata
    service, so the capacity can be acquired before the source has written its final checkpoint.
    """
    launch = move.launch
    resume = (launch.resume_command if launch else None) or "true"
    fetch = provider_module(provider_name).RESUME_FETCH
    storage = move.checkpoint.storage or ""
    return "\n".join(
        [
            "#!/bin/sh",
            f"# spotplan move {move.id}: held until spotplan sets spotplan-resume-from",
            "set -u",
            f"export SPOTPLAN_MOVE_ID={shlex.quote(move.id)}",
            f"export SPOTPLAN_CHECKPOINT_STORAGE={shlex.quote(storage)}",
            "RESUME_FROM_CHECKPOINT=''",
            'while [ -z "$RESUME_FROM_CHECKPOINT" ]; do',
            f"  RESUME_FROM_CHECKPOINT=$({fetch} 2>/dev/null || true)",
            '  [ -n "$RESUME_FROM_CHECKPOINT" ] || sleep 5',
            "done",
            "export RESUME_FROM_CHECKPOINT",
            f"exec sh -c {shlex.quote(resume)}",
            "",
        ]
    )


def _local_call(method: str, params: dict[str, Any], note: str = "") -> Call:
    return Call("local", "spotplan", method, params, (), note)


def _run_local(argv: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv, shell=True, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise CloudError(f"command timed out after {timeout:.0f}s: {argv}") from None


class MoveRun:
    """One move's steps against its source and target providers."""

    def __init__(
        self,
        move: Move,
        journal: Journal | None,
        opts: Options,
        factory: ProviderFactory,
        state: dict[str, Any] | None = None,
        log: StepLog = lambda _move, _step: None,
    ) -> None:
        self.move = move
        self.journal = journal
        self.opts = opts
        self.log = log
        self.source: Provider = factory(move.source.provider, move.source.region)
        self.target: Provider = (
            self.source
            if (move.target.provider, move.target.region) == (move.source.provider, move.source.region)
            else factory(move.target.provider, move.target.region)
        )
        self.state: dict[str, Any] = dict(state or {})
        self.state.setdefault("attempt", 1)

    # ---- helpers ---------------------------------------------------------------------------

    @property
    def dry(self) -> bool:
        return self.opts.dry_run

    def _spec(self, step: str, market: str) -> LaunchSpec:
        m = self.move
        launch = m.launch
        network = launch.network.model_dump() if launch and launch.network else {}
        return LaunchSpec(
            move_id=m.id,
            step=f"{step}#{self.state['attempt']}",
            market=market,  # type: ignore[arg-type]
            region=m.target.region,
            # A zone the target's preflight chose (GCP, when the plan names none) is journaled with it.
            zone=self.state.get("target_zone") or m.target.zone,
            instance_type=m.target.instance_type,
            count=m.count,
            max_price=m.target.max_price if market == "spot" else None,
            image=launch.image if launch else None,
            user_data=build_user_data(m, m.target.provider),
            network=network,
            labels=m.labels,
            source_ids=list(m.source.instance_ids),
            source_provider=m.source.provider,
            sign_in=self.state.get("sign_in"),
        )

    def _target_ids(self, key: str = "target_ids") -> list[str]:
        ids = self.state.get(key)
        if ids:
            return list(ids)
        return [f"<{key[:-4].replace('_', '-')}-{i + 1}>" for i in range(self.move.count)] if self.dry else []

    def _source_ids(self) -> list[str]:
        return list(self.move.source.instance_ids)

    def _env(self) -> dict[str, str]:
        return {
            "SPOTPLAN_MOVE_ID": self.move.id,
            "SPOTPLAN_SOURCE_IDS": " ".join(self._source_ids()),
            "SPOTPLAN_TARGET_IDS": " ".join(self.state.get("target_ids") or []),
            "SPOTPLAN_CHECKPOINT_STORAGE": self.move.checkpoint.storage or "",
            "RESUME_FROM_CHECKPOINT": self.state.get("checkpoint_uri") or "",
        }

    # ---- steps -----------------------------------------------------------------------------

    def step_preflight(self) -> tuple[list[Call], dict[str, Any]]:
        m = self.move
        self._check_bid()
        if not m.source.instance_ids:
            raise InputError(f"move {m.id}: source.instance_ids is empty: nothing to move")
        for iid in m.source.instance_ids:
            try:
                provider_module(m.source.provider).parse_id(iid)
            except InputError as exc:
                raise InputError(f"move {m.id}: source.instance_ids: {exc}") from None
        if not m.checkpoint.enabled or not m.checkpoint.storage:
            raise InputError(f"move {m.id}: a move needs checkpoint.enabled and checkpoint.storage, to verify a "
                             "checkpoint before the source is stopped")
        if not m.checkpoint.is_durable:
            raise InputError(
                f"move {m.id}: checkpoint.storage {m.checkpoint.storage!r} is not durable storage: the source is "
                "stopped only once its checkpoint is safe where the target can read it; use s3://, gs:// or "
                "az://, or set checkpoint.durable: true for a shared or persistent path"
            )
        # The whole trigger is checked here, before any capacity is bought for it.
        via, _command = self._trigger_command()
        if via == "ssm" and m.source.provider != "aws":
            raise InputError(f"move {m.id}: checkpoint_trigger via ssm works only for AWS sources")
        calls, data = self.target.preflight(self._spec("acquire", "spot"), self.dry)
        return calls, data

    def _check_bid(self) -> None:
        """max_price never above on-demand: against the lower of the price the plan carries (analyze
        writes it) and the newest one spotplan knows, so a hand-edited or stale plan cannot raise the
        cap. GCP Spot takes no bid, so there a missing price is no error."""
        m = self.move
        from spotplan.analysis import known_on_demand_price

        known = known_on_demand_price(m.target.provider, m.target.region, m.target.instance_type)
        if m.on_demand_price is None and known is None and m.target.provider != "gcp":
            raise InputError(
                f"move {m.id}: no on-demand price known for {m.target.instance_type} in {m.target.region} to "
                f"check target.max_price {m.target.max_price} against (spotplan never bids above on-demand): "
                "add on_demand_price to the move, as analyze --plan-out does, or pull prices first"
            )
        if round(m.target.max_price, 6) <= 0:
            raise InputError(f"move {m.id}: target.max_price {m.target.max_price} rounds to $0/h: no spot offer "
                             "would be accepted")
        caps = [(c, where) for c, where in ((m.on_demand_price, "the plan's"), (known, "the price data's"))
                if c is not None]
        if not caps:
            return
        cap, where = min(caps, key=lambda c: c[0])
        if m.target.max_price > cap + 1e-9:
            raise InputError(
                f"move {m.id}: target.max_price {m.target.max_price} is above the on-demand price "
                f"{cap} ({where}): spotplan never bids above on-demand"
            )

    def step_acquire(self) -> tuple[list[Call], dict[str, Any]]:
        calls, ids = self.target.launch(self._spec("acquire", "spot"), self.dry)
        if not self.dry and len(ids) < self.move.count:
            # A partial launch is released at once by the rollback (its ids are recorded first).
            self.state["target_ids"] = ids
            raise CloudError(f"move {self.move.id}: got {len(ids)} of {self.move.count} spot instances")
        return calls, {"target_ids": ids, "market": "spot"}

    def _trigger_command(self) -> tuple[str, str]:
        trigger = self.move.launch.checkpoint_trigger if self.move.launch else None
        if trigger is None:
            raise InputError(f"move {self.move.id}: launch.checkpoint_trigger is required")
        extra = trigger.model_extra or {}
        command = trigger.command or ""
        if trigger.via == "signal":
            sig = str(extra.get("signal", "USR1")).upper().removeprefix("SIG")
            if extra.get("pid"):
                command = f"kill -{sig} {int(extra['pid'])}"
            else:
                process = extra.get("process") or command
                command = f"pkill -{sig} -f {shlex.quote(str(process))}"
            return ("ssm" if self.move.source.provider == "aws" else "command"), command
        if not command:
            raise InputError(f"move {self.move.id}: launch.checkpoint_trigger.command is required")
        if trigger.via == "ssh":
            host = extra.get("host")
            if not host:
                raise InputError(f"move {self.move.id}: checkpoint_trigger via ssh needs a host")
            return "command", f"ssh -o BatchMode=yes {shlex.quote(str(host))} {shlex.quote(command)}"
        if trigger.via == "docker":
            container = extra.get("container")
            if not container:
                raise InputError(f"move {self.move.id}: checkpoint_trigger via docker needs a container")
            return "command", f"docker exec {shlex.quote(str(container))} sh -c {shlex.quote(command)}"
        return trigger.via, command

    def step_trigger_checkpoint(self) -> tuple[list[Call], dict[str, Any]]:
        via, command = self._trigger_command()
        trigger_at = utcnow().isoformat()
        if not self.dry and self.journal is not None:
            # Known before the call, so a resumed verify never accepts an older checkpoint.
            self.journal.update_state(self.move.id, {"trigger_at": trigger_at})
        if via == "ssm":
            calls, data = self.source.trigger_checkpoint_ssm(self._source_ids(), command, self.move.id, self.dry)
            return calls, {"trigger_at": trigger_at, **data}
        call = _local_call("run_command", {"command": command}, note="runs where spotplan runs")
        result = call.run(self.dry, lambda: _run_local(command, self._env(), self.opts.checkpoint_timeout))
        if result is not None and result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or [""]
            raise CloudError(f"checkpoint trigger exited {result.returncode}: {tail[0]}")
        return [call], {"trigger_at": trigger_at}

    def step_verify_checkpoint(self) -> tuple[list[Call], dict[str, Any]]:
        storage = self.move.checkpoint.storage or ""
        newer = self.state.get("trigger_at")
        call = _local_call(
            "checkpoint_latest",
            {"uri": storage, "newer_than": "<trigger time>" if self.dry or not newer else newer,
             "timeout_s": self.opts.checkpoint_timeout},
            note="manifest and checksums, via spotplan.checkpoint",
        )
        if self.dry:
            # A read: the dry run checks that the store can be listed, as the real run will need.
            found = _store_read(storage, lambda: len(_store(storage).list()))
            call.outcome = f"dry-run (store readable, {found} checkpoint{'s' * (found != 1)} now)"
            return [call], {}
        info = wait_for_checkpoint(
            storage,
            datetime.fromisoformat(newer) if newer else None,
            self.opts.checkpoint_timeout,
            min(self.opts.poll_interval, 0.25),
        )
        if info is None:
            raise CloudError(
                f"move {self.move.id}: no verified checkpoint newer than the trigger appeared in {storage} "
                f"within {self.opts.checkpoint_timeout:.0f}s"
            )
        call.outcome = "ok"
        call.ids = [info.uri]
        return [call], {
            "checkpoint_uri": info.uri,
            "checkpoint_step": info.step,
            "checkpoint_created_at": info.created_at.isoformat(),
            "checkpoint_verified": True,
        }

    def step_check_target(self) -> tuple[list[Call], dict[str, Any]]:
        """The spot capacity is still there: a target reclaimed while the checkpoint was taken would
        otherwise cost the source a stop and restart for nothing."""
        calls, states = self.target.states(self._target_ids(), self.dry)
        lost = {i: s for i, s in states.items() if s not in ("running", "pending")}
        if lost:
            raise CloudError(f"move {self.move.id}: the spot target was lost before the source was stopped "
                             f"({', '.join(f'{i}: {s}' for i, s in lost.items())}); the source was left running")
        return calls, {}

    def step_stop_source(self) -> tuple[list[Call], dict[str, Any]]:
        if not self.dry and not self.state.get("checkpoint_verified"):
            # The one rule that protects the user's work; enforced here, not only by step order.
            raise CloudError(f"move {self.move.id}: refusing to stop the source without a verified checkpoint")
        calls = self.source.stop(self._source_ids(), self.dry)
        # EC2 answers while the instance is still stopping: wait, so the target never resumes beside a
        # source that is still running, and a rollback can start it again.
        calls += self._wait_states(self.source, self._source_ids(), ("stopped", "terminated"),
                                   time.monotonic() + self.opts.health_timeout, "source not stopped")
        return distinct(calls), {"source_stopped": True}

    def step_resume_target(self) -> tuple[list[Call], dict[str, Any]]:
        uri = self.state.get("checkpoint_uri") or "<verified checkpoint uri>"
        return self.target.signal_resume(self._target_ids(), uri, self.dry), {"resumed_from": uri}

    def _wait_states(self, provider: Provider, ids: list[str], wanted: tuple[str, ...], deadline: float,
                     failure: str, bad: tuple[str, ...] = ()) -> list[Call]:
        """Poll `ids` until every one is in a `wanted` state; the calls of the last poll (built, not
        sent, in a dry run). A `bad` state, or the deadline, fails with `failure`."""
        # Real ids are read in a dry run too (a read); placeholders of what is not created yet are shown.
        return self._wait_for(provider, ids, wanted, deadline, failure, bad)[0]

    def _wait_for(self, provider: Provider, ids: list[str], wanted: tuple[str, ...], deadline: float,
                  failure: str, bad: tuple[str, ...] = ()) -> tuple[list[Call], dict[str, str]]:
        """`_wait_states`, with the states the last poll read."""
        calls, states = provider.states(ids, self.dry and any(i.startswith("<") for i in ids))
        while not self.dry and any(s not in wanted for s in states.values()):
            off = {i: s for i, s in states.items() if s in bad}
            if off or time.monotonic() > deadline:
                raise CloudError(f"move {self.move.id}: {failure}: {off or states}")
            time.sleep(self.opts.poll_interval)
            calls, states = provider.states(ids)
        return calls, states

    def _wait_running(self, ids: list[str], deadline: float) -> list[Call]:
        return self._wait_states(self.target, ids, ("running",), deadline, "target not running",
                                 bad=("terminated", "missing", "stopped"))

    def _health(self, key: str) -> tuple[list[Call], dict[str, Any]]:
        deadline = time.monotonic() + self.opts.health_timeout
        calls = self._wait_running(self._target_ids(key), deadline)
        readiness = self.move.launch.readiness_command if self.move.launch else None
        if readiness:
            call = _local_call("run_command", {"command": readiness}, note="readiness, retried until exit 0")
            calls.append(call)

            def ready() -> None:
                while True:
                    res = _run_local(readiness, self._env(), self.opts.health_timeout)
                    if res.returncode == 0:
                        return
                    if time.monotonic() > deadline:
                        raise CloudError(f"move {self.move.id}: readiness command kept failing "
                                         f"(exit {res.returncode})")
                    time.sleep(self.opts.poll_interval)

            call.run(self.dry, ready)
        return calls, {"healthy": True}

    def step_health_check(self) -> tuple[list[Call], dict[str, Any]]:
        return self._health("target_ids")

    def step_record(self) -> tuple[list[Call], dict[str, Any]]:
        return [], {"recorded_at": utcnow().isoformat()}

    # ---- fallback to on-demand ---------------------------------------------------------------

    def step_fallback_verify(self) -> tuple[list[Call], dict[str, Any]]:
        storage = self.move.checkpoint.storage or ""
        call = _local_call("checkpoint_latest", {"uri": storage}, note="the newest verified checkpoint")
        if self.dry:
            # A read, as in the real run (listing only: the dry run hashes nothing).
            found = _store_read(storage, lambda: len(_store(storage).list()))
            call.outcome = f"dry-run (store readable, {found} checkpoint{'s' * (found != 1)} now)"
            return [call], {}
        info = wait_for_checkpoint(storage, None, 0, 0)
        if info is None:
            raise CloudError(f"move {self.move.id}: no verified checkpoint in {storage} to fall back from")
        call.outcome, call.ids = "ok", [info.uri]
        return [call], {"checkpoint_uri": info.uri, "checkpoint_step": info.step, "checkpoint_verified": True}

    def step_fallback_acquire(self) -> tuple[list[Call], dict[str, Any]]:
        spec = self._spec("fallback_acquire", "on-demand")
        calls, ids = self.target.launch(spec, self.dry)
        if not self.dry and len(ids) < self.move.count:
            self.state["fallback_ids"] = ids
            raise CloudError(f"move {self.move.id}: got {len(ids)} of {self.move.count} on-demand instances")
        return calls, {"fallback_ids": ids}

    def step_fallback_resume(self) -> tuple[list[Call], dict[str, Any]]:
        """Resume from the newest verified checkpoint, read again now that the spot copy is gone (it
        may have saved one on its way down)."""
        storage = self.move.checkpoint.storage or ""
        read = _local_call("checkpoint_latest", {"uri": storage}, note="the newest verified checkpoint")
        data: dict[str, Any] = {}
        if self.dry:
            read.outcome = "dry-run"
        else:
            info = wait_for_checkpoint(storage, None, 0, 0)
            read.outcome = "ok"
            if info is not None:
                read.ids = [info.uri]
                data = {"checkpoint_uri": info.uri, "checkpoint_step": info.step}
        uri = data.get("checkpoint_uri") or self.state.get("checkpoint_uri") or "<latest checkpoint uri>"
        calls = self.target.signal_resume(self._target_ids("fallback_ids"), uri, self.dry)
        return [read, *calls], {**data, "resumed_from": uri}

    def step_fallback_health(self) -> tuple[list[Call], dict[str, Any]]:
        return self._health("fallback_ids")

    def step_fallback_release_spot(self) -> tuple[list[Call], dict[str, Any]]:
        spot = [i for i in self.state.get("target_ids") or [] if i not in (self.state.get("fallback_ids") or [])]
        if not spot:
            return [], {}
        try:
            calls, states = self.target.states(spot)  # a read: sent in a dry run too
        except SpotplanError as exc:
            exc.sent_nothing = True  # no release was sent: the spot copy is as it was
            raise
        live = [i for i, s in states.items() if s not in ("terminated", "missing")]
        if live:
            calls += self.target.release(live, self.dry)
        return calls, {"spot_target_ids": spot}

    def step_fallback_record(self) -> tuple[list[Call], dict[str, Any]]:
        return [], {"target_ids": self.state.get("fallback_ids") or [], "market": "on-demand",
                    "recorded_at": utcnow().isoformat()}

    # ---- running ---------------------------------------------------------------------------

    def run(self, steps: Sequence[str], kind: str) -> MoveReport:
        report = MoveReport(self.move.id, self.move.workload, kind, "running")
        done = set(self.state.get("steps_done") or [])
        for step in steps:
            if step in done:
                report.steps.append(StepReport(step, status="skipped", data={"reason": "done before resume"}))
                continue
            self.log(self.move.id, step)
            if not self.dry and self.journal is not None:
                self.journal.step_start(self.move.id, step)
            _crash_point(step, "before")
            try:
                with recording() as built:
                    try:
                        calls, data = getattr(self, f"step_{step}")()
                    except SpotplanError:
                        raise
                    except Exception as unexpected:
                        # Still roll back: an unknown error must not leave capacity running unaccounted for.
                        raise CloudError(f"{type(unexpected).__name__}: {unexpected}") from unexpected
            except SpotplanError as exc:
                # The calls the step made (or, dry, would make) up to the failure, marked on its call.
                tried = distinct(built)
                report.steps.append(StepReport(step, tried, status="failed", error=str(exc)))
                report.exit_code = report.exit_code or exc.exit_code
                if self.dry:
                    # A dry run shows every step even when one would fail.
                    report.error = report.error or f"{step}: {exc}"
                    continue
                if self.journal is not None:
                    self.journal.step_failed(self.move.id, step, [c.to_dict() for c in tried], str(exc),
                                             sent_nothing=exc.sent_nothing, exit_code=exc.exit_code)
                self._rollback(step, kind, report)
                report.error = f"{step}: {exc}"
                self._finish_failed(report)
                return report
            _crash_point(step, "after")
            self.state.update(data)
            if not self.dry and self.journal is not None:
                self.journal.step_done(self.move.id, step, [c.to_dict() for c in calls], data)
            report.steps.append(StepReport(step, calls, data, "dry-run" if self.dry else "done"))
        report.status = "dry-run" if self.dry else "done"
        if self.dry and report.error:
            report.status = WOULD_FAIL
        if not self.dry and self.journal is not None:
            self.journal.finish(self.move.id, "done")
        return report

    def finish_rollback(self, step: str, error: str, kind: str, exit_code: int = EXIT_RUNTIME) -> MoveReport:
        """Complete a rollback that a crash interrupted (each rollback action is idempotent); exit as
        the failure that started it did (`exit_code`)."""
        assert self.journal is not None
        report = MoveReport(self.move.id, self.move.workload, kind, "running")
        self._rollback(step, kind, report)
        report.error = f"{step}: {error}"
        report.exit_code = exit_code
        self._finish_failed(report)
        return report

    def _finish_failed(self, report: MoveReport) -> None:
        """Name the move's final status after its rollback, in the report and the journal."""
        journal_error = report.error
        if report.status == UNCHANGED:
            # Nothing to undo: the journal calls it rolled back, so a rerun retries it as a fresh attempt.
            journal_status = "rolled-back"
            journal_error = f"{report.error}; nothing was changed"
        elif report.status == KEPT:
            kept = ", ".join(self.state.get("fallback_ids") or []) or "none recorded"
            report.error = journal_error = (f"{report.error}; the spot copy was already released, so the on-demand "
                                            f"copy ({kept}) is kept: fix the cause, then spotplan migrate --resume "
                                            f"{self.move.id}")
            journal_status = "failed"
        elif report.status == "rollback-incomplete":
            left = "; ".join(s.error or "" for s in report.steps if s.step.startswith("rollback_")
                             and s.status == "failed")
            report.error = journal_error = (f"{report.error}; ROLLBACK INCOMPLETE ({left}): "
                                            f"see spotplan migrations show {self.move.id}")
            journal_status = report.status = "failed"
        else:
            journal_status = report.status = "rolled-back"
        if self.journal is not None:
            self.journal.finish(self.move.id, journal_status, journal_error)

    def _rollback(self, failed: str, kind: str, report: MoveReport) -> None:
        """Undo what this move created; restart the source if it may have been stopped.

        A move that failed before its creating step started (preflight, a bad plan) created nothing
        and stopped nothing: there is nothing to look for, and the report says nothing was changed."""
        assert self.journal is not None
        events = self.journal.current_run_events(self.move.id)
        started = {e["step"] for e in events if e["phase"] == "start"}
        if kind == "fallback" and _spot_release_began(events):
            # The spot copy is gone, or may be (a release the cloud accepted can still fail to
            # confirm): the on-demand copy may be the only one left to run the workload, so it is
            # kept, and `--resume` carries the fallback on from the step that failed.
            report.status = KEPT
            return
        if CREATING_STEP.get(kind, "acquire") not in started and not (
            kind == "migrate" and SOURCE_STOP_STEP in started
        ):
            report.status = UNCHANGED
            return
        actions: list[tuple[str, Callable[[], list[Call]]]] = []
        if kind == "migrate" and SOURCE_STOP_STEP in started:
            actions.append(("rollback_start_source", self._restart_source))
        created_key = "fallback_ids" if kind == "fallback" else "target_ids"
        created = set(self.state.get(created_key) or [])
        # An interrupted launch may have created instances that never reached the journal. The
        # target's preflight may have named where it places them (`placement`, opaque here).
        near = [*self._source_ids(), *(self.state.get("target_ids") or []), *(self.state.get("fallback_ids") or []),
                *([self.state["placement"]] if self.state.get("placement") else [])]
        try:
            created |= set(self.target.list_created(self.move.id, near))
        except SpotplanError as exc:
            # Release what the journal knows; say loudly that the tag search could not run.
            self.journal.step_start(self.move.id, "rollback_find_created")
            self.journal.step_failed(self.move.id, "rollback_find_created", [], str(exc))
            report.steps.append(StepReport("rollback_find_created", status="failed", error=str(exc)))
            report.status = "rollback-incomplete"
        if kind == "fallback":
            created -= set(self.state.get("target_ids") or [])
        else:
            created -= set(self.state.get("fallback_ids") or [])
        if created:
            ids = sorted(created)
            actions.append(("rollback_release_target", lambda: self._release_live(ids)))
        for name, action in actions:
            if name == "rollback_release_target" and report.status == "rollback-incomplete" and any(
                    st.step == "rollback_start_source" for st in report.steps if st.status == "failed"):
                # The source could not be restarted: the target is the one capacity left, so it stays.
                report.steps.append(StepReport(name, status="skipped", data={"reason": "the source is down"}))
                continue
            self.journal.step_start(self.move.id, name)
            _crash_point(name, "before")
            try:
                calls = action()
            except SpotplanError as exc:
                self.journal.step_failed(self.move.id, name, [], str(exc))
                report.steps.append(StepReport(name, status="failed", error=str(exc)))
                report.status = "rollback-incomplete"
                continue
            self.journal.step_done(self.move.id, name, [c.to_dict() for c in calls], {})
            report.steps.append(StepReport(name, calls))

    def _restart_source(self) -> list[Call]:
        """Start the source instances that are stopped (after waiting out `stopping`, which cannot be
        started): a stop that was refused or never sent left them running, and starting a running
        instance needs a permission the user may not have granted."""
        ids = self._source_ids()
        calls, states = self._wait_for(self.source, ids, ("running", "pending", "stopped", "terminated", "missing"),
                                       time.monotonic() + self.opts.health_timeout, "source still stopping")
        gone = [i for i, state in states.items() if state in ("terminated", "missing")]
        if gone:
            # Nothing could run the workload but the target: the rollback must not release it.
            raise CloudError(f"source {', '.join(gone)} is gone and cannot be restarted; the target is kept")
        down = [i for i, state in states.items() if state == "stopped"]
        return calls + (self.source.start(down, False) if down else [])

    def _release_live(self, ids: list[str]) -> list[Call]:
        calls, states = self.target.states(ids)
        live = [i for i, s in states.items() if s not in ("terminated", "missing")]
        return calls + (self.target.release(live, False) if live else [])


def _spot_release_began(events: Sequence[dict[str, Any]]) -> bool:
    """Whether a fallback run's release of the spot copy may have been sent: an attempt of the step
    that finished, failed after sending, or never ended (a crash mid-step, so it may have). Only a
    failure journaled as having sent nothing (its first read failed) leaves the spot copy as it was."""
    began = pending = False
    for e in events:
        if e["step"] != SPOT_RELEASE_STEP:
            continue
        if e["phase"] == "start":
            began, pending = began or pending, True
        else:
            began, pending = began or not (e["phase"] == "failed" and e["data"].get("sent_nothing")), False
    return began or pending


def _store(storage: str) -> Any:
    from spotplan.checkpoint import CheckpointStore

    # s3:// follows AWS_ENDPOINT_URL[_S3] through botocore, like the SDK calls.
    return CheckpointStore(storage)


def _store_read(storage: str, read: Callable[[], Any]) -> Any:
    """A read of the checkpoint store; a denial (PermissionError, or an HTTP 401/403 from a cloud
    store's client) is a permission problem, exit 4, like the provider calls'."""
    try:
        return read()
    except SpotplanError:
        raise
    except Exception as exc:
        status = next((v for a in ("status", "status_code", "code") if isinstance(v := getattr(exc, a, None), int)),
                      None)
        if isinstance(exc, PermissionError) or status in (401, 403):
            raise CredentialsError(f"checkpoint storage {storage}: access denied ({exc})",
                                   hint="grant the read permissions of: spotplan permissions") from exc
        raise


def wait_for_checkpoint(storage: str, newer_than: datetime | None, timeout: float, interval: float) -> Any:
    """Poll the checkpoint store until a verified checkpoint newer than `newer_than` appears."""
    store = _store(storage)
    deadline = time.monotonic() + timeout
    while True:
        # lists afresh: the store drops fsspec's listing cache
        info = _store_read(storage, lambda: store.latest(newer_than=newer_than))
        if info is not None or time.monotonic() >= deadline:
            return info
        time.sleep(interval)


# ---- entry points used by the CLI --------------------------------------------------------------


def migrate_moves(
    moves: Sequence[Move],
    opts: Options,
    journal: Journal | None,
    confirm: Callable[[Move], bool] | None = None,
    factory: ProviderFactory = get_provider,
    log: StepLog = lambda _move, _step: None,
) -> list[MoveReport]:
    reports: list[MoveReport] = []
    # A dry run reads the journal, so that it reports (and exits) as the real run would, but never
    # writes it.
    live = None if opts.dry_run else journal
    for move in moves:
        state: dict[str, Any] = {}
        prior = journal.get_move(move.id) if journal is not None else None
        if prior is not None:
            if prior["status"] == "done":
                reports.append(MoveReport(move.id, move.workload, prior["kind"], "already-done"))
                continue
            if prior["kind"] == "fallback" and prior["status"] == "rolled-back":
                # Only a migrated move has a fallback: its source is stopped and its workload runs
                # on the target. Running the move again would stop nothing and buy a second copy.
                where = prior["state"].get("market") or "spot"
                retry = "" if where == "on-demand" else f": retry it with spotplan migrate --fallback {move.id}"
                reports.append(MoveReport(move.id, move.workload, "fallback", "already-done",
                                          error=f"migrated (runs on {where}); a later fallback was rolled back ("
                                                f"{prior['error']}){retry}"))
                continue
            refusal = None
            if prior["status"] not in FINAL_STATUSES:
                refusal = f"move {move.id} was interrupted; continue it with: spotplan migrate --resume {move.id}"
            elif prior["status"] == "failed" and prior["kind"] == "fallback":
                refusal = (f"the fallback of move {move.id} failed ({prior['error']}); continue it with: "
                           f"spotplan migrate --resume {move.id}")
            elif prior["status"] == "failed":
                refusal = (f"move {move.id} failed and its rollback did not finish; retry the rollback with: "
                           f"spotplan migrate --resume {move.id}")
            if refusal is not None:
                # Only this move is refused (nothing is touched); the other moves of the plan still run.
                reports.append(MoveReport(move.id, move.workload, prior["kind"], REFUSED, error=refusal,
                                          exit_code=EXIT_USAGE))
                continue
        if confirm is not None and not opts.dry_run and not confirm(move):
            reports.append(MoveReport(move.id, move.workload, "migrate", "declined"))
            continue
        if live is not None:
            if prior is None:
                live.begin_move(move.id, move.workload, move.target.provider, "migrate",
                                move.model_dump(mode="json"), opts.plan_path)
            else:
                # A rolled-back move tried again: fresh idempotency tokens, fresh steps.
                attempt = int(prior["state"].get("attempt", 1)) + 1
                state = {"attempt": attempt}
                live.restart(move.id, "migrate", {"attempt": attempt, "steps_done": [], "target_ids": [],
                                                  "checkpoint_verified": False})
        try:
            run = MoveRun(move, live, opts, factory, state, log)
        except SpotplanError as exc:
            # No provider could even be set up: nothing was created or stopped.
            if live is not None:
                live.finish(move.id, "rolled-back", f"{exc}; nothing was changed")
            reports.append(MoveReport(move.id, move.workload, "migrate", WOULD_FAIL if opts.dry_run else UNCHANGED,
                                      error=str(exc), exit_code=exc.exit_code))
            continue
        reports.append(run.run(STEPS, "migrate"))
    return reports


def exit_status(reports: Sequence[MoveReport]) -> tuple[int, str]:
    """The exit code of a migrate run (DESIGN.md §3) and the one line that explains it.

    0 when no move failed (declined moves are not failures); 3 when some failed and others
    succeeded; when every attempted move failed: 4 if any failed on credentials or permissions
    (fixing them is the first thing to do), 2 if all failed on input, else 1. A dry run is judged
    the same way on what would fail, so it exits as the real run would.
    """
    failed = [r for r in reports if r.failed]
    if not failed:
        return EXIT_OK, ""
    verb = "would fail" if all(r.status == WOULD_FAIL for r in failed) else "failed"
    names = ", ".join(r.move_id for r in failed)
    if any(r.status in SUCCEEDED for r in reports):
        counted = [r for r in reports if r.status != DECLINED]
        return EXIT_PARTIAL, f"{len(failed)} of {len(counted)} moves {verb}: {names}"
    codes = {r.exit_code or EXIT_RUNTIME for r in failed}
    code = EXIT_CREDENTIALS if EXIT_CREDENTIALS in codes else EXIT_USAGE if codes == {EXIT_USAGE} else EXIT_RUNTIME
    # Name the failure the code is about (e.g. the credentials one when it is 4).
    lead = next((r for r in failed if (r.exit_code or EXIT_RUNTIME) == code), failed[0])
    if len(failed) == 1:
        return code, f"move {lead.move_id} {verb if lead.status == WOULD_FAIL else lead.status}: {lead.error}"
    return code, f"all {len(failed)} moves {verb}: {names} ({lead.move_id}: {lead.error})"


def _journaled_move(journal: Journal, move_id: str) -> tuple[dict[str, Any], Move]:
    """The journal's record of a move and the move itself, or an input error naming the fix."""
    prior = journal.get_move(move_id)
    if prior is None:
        raise InputError(f"no move {move_id!r} in the journal", hint="spotplan migrations list")
    return prior, _journaled(move_id, prior["move"])


def _journaled(move_id: str, raw: dict[str, Any]) -> Move:
    """A move as the journal recorded it. Plans are read strictly, but a journal written by an
    earlier version may hold keys the plan model no longer takes: those are dropped (pydantic names
    them all in one error), so a move in flight can always be resumed or rolled back."""
    import copy

    from pydantic import ValidationError

    data = copy.deepcopy(raw)
    try:
        return Move.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            if err["type"] == "extra_forbidden":
                parent: Any = data
                for key in err["loc"][:-1]:
                    parent = parent[key]
                parent.pop(err["loc"][-1], None)
    try:
        return Move.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(f"the journal's record of move {move_id} cannot be read: {where}: {first['msg']}") from None


def resume_move(
    move_id: str,
    opts: Options,
    journal: Journal,
    factory: ProviderFactory = get_provider,
    log: StepLog = lambda _move, _step: None,
) -> MoveReport:
    prior, move = _journaled_move(journal, move_id)
    if prior["status"] == "done":
        return MoveReport(move.id, move.workload, prior["kind"], "already-done")
    if prior["status"] == "rolled-back" and prior["kind"] == "fallback":
        on_demand = prior["state"].get("market") == "on-demand"
        raise InputError(f"the fallback of move {move_id} was rolled back ({prior['error']}); the move stays "
                         f"migrated{' on on-demand' if on_demand else ''}: there is nothing to resume",
                         hint=None if on_demand else "retry it with: spotplan migrate --fallback " + move_id)
    if prior["status"] == "rolled-back":
        raise InputError(f"move {move_id} was rolled back ({prior['error']}): there is nothing to resume",
                         hint="run it again from its plan: spotplan migrate PLAN.json --only " + move_id)
    steps = FALLBACK_STEPS if prior["kind"] == "fallback" else STEPS
    run = MoveRun(move, journal, opts, factory, prior["state"], log)
    events = journal.current_run_events(move_id)
    failed = [e for e in events if e["phase"] == "failed" and e["step"] in steps]
    if failed and not opts.dry_run and not (prior["kind"] == "fallback" and _spot_release_began(events)):
        # A crash hit the rollback, or the rollback itself failed: finish undoing, never carry on.
        first = failed[-1]["data"]
        return run.finish_rollback(failed[-1]["step"], first.get("error", ""), prior["kind"],
                                   int(first.get("exit_code") or EXIT_RUNTIME))
    return run.run(steps, prior["kind"])


def _kept_copy_alive(move: Move, prior: dict[str, Any], factory: ProviderFactory) -> bool:
    """Whether a failed fallback's kept on-demand copy still exists (if it was lost, a new fallback
    is the way on)."""
    ids = list(prior["state"].get("fallback_ids") or [])
    if not ids:
        return False
    _, states = factory(move.target.provider, move.target.region).states(ids)
    return any(state not in ("terminated", "missing") for state in states.values())


def fallback_move(
    move_id: str,
    opts: Options,
    journal: Journal,
    factory: ProviderFactory = get_provider,
    log: StepLog = lambda _move, _step: None,
) -> MoveReport:
    """Resume a move's workload from its latest checkpoint on on-demand capacity."""
    prior, move = _journaled_move(journal, move_id)
    if prior["kind"] == "fallback" and prior["state"].get("market") == "on-demand" and prior["status"] != "failed":
        # A finished fallback recorded the on-demand copy as the target: another would release it.
        return MoveReport(move.id, move.workload, "fallback", "already-done",
                          error="already runs on on-demand capacity (a fallback finished): nothing to fall back from")
    if move.fallback != "on-demand":
        raise InputError(f"move {move_id} has fallback {move.fallback!r}, not 'on-demand'")
    if prior["kind"] == "migrate" and prior["status"] != "done":
        raise InputError(f"move {move_id} is {prior['status']}, not migrated: there is nothing to fall back from")
    if prior["kind"] == "fallback" and prior["status"] == "running":
        raise InputError(f"the fallback of {move_id} was interrupted; continue it with --resume {move_id}")
    if prior["kind"] == "fallback" and prior["status"] == "failed" and _kept_copy_alive(move, prior, factory):
        # Its on-demand copy is the one left to run the workload: a fresh fallback would buy another.
        raise InputError(f"the fallback of {move_id} failed and its on-demand copy is kept; continue it with "
                         f"--resume {move_id}")
    state = dict(prior["state"])
    state["steps_done"] = [s for s in state.get("steps_done", []) if s not in FALLBACK_STEPS]
    state["fallback_ids"] = []
    state["attempt"] = int(state.get("attempt", 1)) + (1 if prior["kind"] == "fallback" else 0)
    if not opts.dry_run:
        journal.restart(move_id, "fallback", {"steps_done": state["steps_done"], "fallback_ids": [],
                                              "attempt": state["attempt"]})
    run = MoveRun(move, journal, opts, factory, state, log)
    return run.run(FALLBACK_STEPS, "fallback")
