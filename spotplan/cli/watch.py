"""`spotplan watch`: parse options, run the node agent (spotplan.watch.agent), print its verdict.

Exit codes: 0 no notice (--once) or checkpoint saved (and --fallback-move done), 3 a notice handled in
part (no fresh checkpoint in time, or the checkpoint saved but the on-demand fallback failed), 2 usage,
1 runtime error.
"""

from __future__ import annotations

import json
import math
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from spotplan.cli.common import VerboseOpt, emit, handle_errors, is_verbose
from spotplan.errors import InputError
from spotplan.times import parse_duration


class SourceName(str, Enum):
    auto = "auto"
    aws = "aws"
    gcp = "gcp"
    azure = "azure"
    eci = "eci"
    url = "url"


def watch(
    source: Annotated[
        SourceName,
        typer.Option(help="Metadata service to watch; auto probes SPOTPLAN_WATCH_URL if set, then ECI, AWS, GCP, "
                     "Azure."),
    ] = SourceName.auto,
    endpoint: Annotated[
        str | None,
        typer.Option(help="Point the source at another address: http://host:port or unix:/path.sock "
                     "(--source url: the notice URL, default SPOTPLAN_WATCH_URL)."),
    ] = None,
    interval: Annotated[str, typer.Option(help="Poll interval (GCP long-polls instead).")] = "1s",
    signal_name: Annotated[
        str | None,
        typer.Option("--signal", help="Signal for --pid/--process/--docker, e.g. SIGUSR1 (default SIGTERM)."),
    ] = None,
    pid: Annotated[int | None, typer.Option(help="Send the signal to this process id.")] = None,
    process: Annotated[
        str | None, typer.Option(help="Send the signal to processes with this name (or script name).")
    ] = None,
    docker: Annotated[
        str | None,
        typer.Option(help="Container to `docker kill -s SIG` (`docker stop -t N` with --docker-stop-timeout)."),
    ] = None,
    docker_stop_timeout: Annotated[
        int | None,
        typer.Option("--docker-stop-timeout", min=0, help="Use `docker stop -t N` instead of `docker kill`."),
    ] = None,
    command: Annotated[
        str | None, typer.Option(help="Shell command to run on a notice (gets SPOTPLAN_NOTICE_* env vars).")
    ] = None,
    checkpoint_uri: Annotated[
        str | None,
        typer.Option("--checkpoint-uri", help="Checkpoint store (path or fsspec URL) to expect a fresh checkpoint in."),
    ] = None,
    checkpoint_timeout: Annotated[
        float | None,
        typer.Option(
            "--checkpoint-timeout", min=0, help="Seconds to wait for it (default: the time left before the deadline)."
        ),
    ] = None,
    upload_to: Annotated[
        str | None,
        typer.Option("--upload-to", help="Copy a local fresh checkpoint to this remote store (s3://, gs://, az://)."),
    ] = None,
    webhook: Annotated[str | None, typer.Option(help="Slack-compatible webhook URL to alert.")] = None,
    once: Annotated[bool, typer.Option("--once", help="Check once and exit (0 when no notice).")] = False,
    act_on_rebalance: Annotated[
        bool,
        typer.Option("--act-on-rebalance", help="Treat an AWS rebalance recommendation as a notice."),
    ] = False,
    log: Annotated[
        Path | None, typer.Option("--log", help="Append a JSON line per state change to this file.", dir_okay=False)
    ] = None,
    fallback_move: Annotated[
        str | None,
        typer.Option(
            "--fallback-move", metavar="MOVE_ID",
            help="After a fresh checkpoint, run `spotplan migrate --fallback MOVE_ID` (when the move's fallback "
            "is on-demand). Without --checkpoint-uri, watches the move's checkpoint storage.",
        ),
    ] = None,
    journal: Annotated[
        Path | None,
        typer.Option("--journal", help="Migrate journal holding --fallback-move (default: the user data dir's).",
                     dir_okay=False),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Watch the node's metadata service for a spot reclaim notice, then signal, checkpoint and alert.

    Exit codes: 0 checkpoint saved (or no notice with --once), and any --fallback-move done;
    3 a notice handled in part: no fresh checkpoint in time (no fallback run), or the checkpoint saved
    but the fallback failed (the log says which); 2 usage error; 1 runtime error.

    Example: spotplan watch --signal SIGUSR1 --process train.py --checkpoint-uri /ckpt --upload-to s3://b/run
    """
    with handle_errors(verbose):
        from spotplan.watch.actions import signal_number
        from spotplan.watch.agent import Agent, EventLog, WatchConfig
        from spotplan.watch.sources import MetadataError

        if pid is not None and process:
            raise InputError("give --pid or --process, not both")
        if signal_name and not (pid is not None or process or docker):
            raise InputError("--signal needs a target: --pid, --process or --docker")
        if docker_stop_timeout is not None and not docker:
            raise InputError("--docker-stop-timeout needs --docker")
        if upload_to and not checkpoint_uri:
            raise InputError("--upload-to needs --checkpoint-uri (the local store to upload from)")
        _check_endpoint(source, endpoint)
        if checkpoint_timeout is not None and not math.isfinite(checkpoint_timeout):
            raise InputError("--checkpoint-timeout must be a finite number of seconds")
        if journal is not None and not fallback_move:
            raise InputError("--journal needs --fallback-move")
        if webhook:
            from spotplan.webhook import check_webhook_url

            check_webhook_url(webhook)
        if fallback_move:
            storage = _fallback_storage(fallback_move, journal)
            if not checkpoint_uri:
                # Check freshness in the very store the fallback resumes from.
                checkpoint_uri = storage
            elif storage and storage.rstrip("/") not in {u.rstrip("/") for u in (checkpoint_uri, upload_to) if u}:
                sys.stderr.write(
                    f"spotplan watch: warning: move {fallback_move} resumes from {storage}, which is neither "
                    "--checkpoint-uri nor --upload-to: the fallback may resume from an older checkpoint\n"
                )
        for flag, uri in (("--checkpoint-uri", checkpoint_uri), ("--upload-to", upload_to)):
            if uri:
                _check_store(flag, uri)
        config = WatchConfig(
            source=source.value,
            endpoint=endpoint,
            interval=parse_duration(interval, "--interval"),
            signal=signal_number(signal_name) if signal_name else None,
            pid=pid,
            process=process,
            docker=docker,
            docker_stop_timeout=docker_stop_timeout,
            command=command,
            checkpoint_uri=checkpoint_uri,
            checkpoint_timeout=checkpoint_timeout,
            upload_to=upload_to,
            webhook=webhook,
            once=once,
            act_on_rebalance=act_on_rebalance,
            log=log,
            verbose=is_verbose(verbose),
            fallback_move=fallback_move,
            journal=journal,
        )
        try:
            event_log = EventLog(log, config.verbose)
        except OSError as exc:
            raise InputError(f"--log: cannot write {log}: {exc.strerror or exc}") from None
        # The verdict is printed as soon as it is known, not when a slow --command is done.
        # (emit: a reader gone from stdout must not cut the agent short or turn exit 3 into 0.)
        agent = Agent(config, log=event_log, on_verdict=lambda verdict: emit(json.dumps(verdict.to_dict()), None))
        try:
            result = agent.run()
        except MetadataError as exc:
            from spotplan.errors import CloudError

            raise CloudError(str(exc)) from None
        finally:
            agent.log.close()
    raise typer.Exit(result.exit_code)


def _check_endpoint(source: SourceName, endpoint: str | None) -> None:
    """Fail at start on an address the source could never reach: --endpoint, or for the URL source
    SPOTPLAN_WATCH_URL, which stands in for it (and which auto-detection tries first)."""
    from spotplan.watch.http import endpoint_problem
    from spotplan.watch.sources import endpoint_from_env

    env_url = endpoint_from_env("url") if source in (SourceName.url, SourceName.auto) else None
    if source is SourceName.url and not (endpoint or env_url):
        raise InputError("--source url needs --endpoint URL (or SPOTPLAN_WATCH_URL)")
    for flag, value in (("--endpoint", endpoint), ("SPOTPLAN_WATCH_URL", None if endpoint else env_url)):
        problem = endpoint_problem(value) if value else None
        if problem is not None:
            raise InputError(f"{flag}: {problem}")


def _check_store(flag: str, uri: str) -> None:
    """Fail at start, not at the notice, when a store's protocol is unknown or its extra is missing:
    at the notice there is no time left to install anything."""
    from spotplan.checkpoint import check_uri
    from spotplan.errors import SpotplanError

    try:
        check_uri(uri)
    except SpotplanError as exc:
        raise type(exc)(f"{flag}: {exc.message}", hint=exc.hint) from None


def _fallback_storage(move_id: str, journal: Path | None) -> str:
    """Fail at start, not at the notice, when the move cannot be found; return its checkpoint storage."""
    from spotplan.errors import SpotplanError
    from spotplan.journal import Journal
    from spotplan.paths import journal_path

    path = journal or journal_path()
    if not path.is_file():
        raise InputError(f"--fallback-move: no journal at {path}",
                         hint="pass --journal PATH, or point XDG_DATA_HOME at the data dir spotplan migrate used")
    if path.stat().st_size == 0:
        # Opening it would write a journal's tables into whatever empty file was named.
        raise InputError(f"--fallback-move: {path} is empty, not a migrate journal")
    try:
        store = Journal(path)
    except SpotplanError as exc:
        if journal is None:
            raise
        raise InputError(f"--journal {path}: {exc.message}", hint=exc.hint) from None
    try:
        prior = store.get_move(move_id)
    finally:
        store.close()
    if prior is None:
        raise InputError(f"--fallback-move: no move {move_id!r} in the journal {path}",
                         hint="spotplan migrations list")
    return str((prior["move"].get("checkpoint") or {}).get("storage") or "")
