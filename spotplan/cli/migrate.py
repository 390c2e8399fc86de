"""`spotplan migrate`, `spotplan migrations list|show` and `spotplan permissions`: parse, call the
executor / journal / provider declarations, render. Heavy imports stay inside the functions."""

from __future__ import annotations

import json
import math
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from spotplan.cli.common import (
    OutPathOpt,
    OutputFormat,
    OutputOpt,
    VerboseOpt,
    emit,
    group_verbose,
    handle_errors,
    rendering,
)
from spotplan.errors import InputError, SpotplanError

migrations_app = typer.Typer(help="Show the migrate journal.", no_args_is_help=True)


@migrations_app.callback()
def _migrations(verbose: VerboseOpt = False) -> None:
    # `spotplan migrations -v show ID` works like `spotplan -v migrations show ID`.
    group_verbose(verbose)


class ProviderName(str, Enum):
    aws = "aws"
    gcp = "gcp"
    azure = "azure"


def _log(move_id: str, step: str) -> None:
    sys.stderr.write(f"  {move_id}: {step}\n")
    sys.stderr.flush()


def _reports_exit(reports: list[Any]) -> None:
    """Exit with the code the executor gives the run (dry runs included), explained in one line."""
    from spotplan.executor import exit_status

    code, message = exit_status(reports)
    if code:
        err = SpotplanError(message)
        err.exit_code = code
        raise err


def migrate(
    plan: Annotated[Path | None, typer.Argument(help="Plan file (spotplan.plan/1) from analyze --plan-out.",
                                                 dir_okay=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print every step and call; change nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Approve every move without asking.")] = False,
    only: Annotated[list[str] | None, typer.Option("--only", help="Run only this move id (repeatable).")] = None,
    checkpoint_timeout: Annotated[
        float, typer.Option("--checkpoint-timeout", min=0, help="Seconds to wait for a fresh checkpoint.")
    ] = 600.0,
    health_timeout: Annotated[
        float, typer.Option("--health-timeout", min=0, help="Seconds to wait for the target to be healthy.")
    ] = 600.0,
    resume: Annotated[str | None, typer.Option("--resume", metavar="MOVE_ID",
                                               help="Continue a move interrupted by a crash.")] = None,
    fallback: Annotated[str | None, typer.Option("--fallback", metavar="MOVE_ID",
                                                 help="Resume a move from its latest checkpoint on on-demand.")] = None,
    output: OutputOpt = None,
    out: OutPathOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Execute (or --dry-run) the moves of an approved plan: acquire spot capacity, checkpoint, stop
    the source, resume on the target. Journaled; --resume continues after a crash."""
    with handle_errors(verbose):
        from spotplan.executor import Options, fallback_move, migrate_moves, resume_move
        from spotplan.journal import Journal

        for flag, seconds in (("--checkpoint-timeout", checkpoint_timeout), ("--health-timeout", health_timeout)):
            if not math.isfinite(seconds):  # as in watch: a wait must end
                raise InputError(f"{flag} {seconds}: expected a finite number of seconds")
        if sum(x is not None for x in (plan, resume, fallback)) != 1:
            raise InputError("give a PLAN file, or --resume MOVE_ID, or --fallback MOVE_ID (exactly one)")
        opts = Options(dry_run=dry_run, checkpoint_timeout=checkpoint_timeout, health_timeout=health_timeout,
                       plan_path=str(plan) if plan else None)
        moves = None
        if plan is not None:
            from spotplan.plan import load_plan, select_moves

            # A bad plan is named before anything is asked about it.
            moves = select_moves(load_plan(plan), only)
        unapproved = not dry_run and not yes and not sys.stdin.isatty()
        no_tty = InputError("stdin is not a terminal, so moves cannot be approved interactively",
                            hint="pass --yes to approve, or --dry-run to look first")
        if unapproved and plan is not None:
            raise no_tty  # before the journal is opened (and created)

        def confirm(move: Any) -> bool:
            if yes:
                return True
            return typer.confirm(
                f"Move {move.id}: stop {', '.join(move.source.instance_ids)} after a verified checkpoint and "
                f"resume on {move.target.instance_type} spot in {move.target.zone or move.target.region} "
                f"(max ${move.target.max_price}/h)?", err=True)

        from spotplan.paths import journal_path

        # A dry run of a plan reads the journal when there is one, and creates none; so do --resume
        # and --fallback, which have nothing to act on without one.
        if plan is None and not journal_path().exists():
            raise InputError(f"no move {resume or fallback!r}: there is no migrate journal yet ({journal_path()})",
                             hint="spotplan migrate PLAN.json --yes records moves")
        journal = None if dry_run and plan is not None and not journal_path().exists() else Journal()
        if journal is not None and plan is None and journal.get_move(resume or fallback or "") is None:
            # Named before approval is asked for: a typo'd id is the error, not the missing --yes.
            raise InputError(f"no move {resume or fallback!r} in the journal", hint="spotplan migrations list")
        if unapproved:
            raise no_tty
        if moves is not None:
            sys.stderr.write(f"{'dry run: ' if dry_run else ''}{len(moves)} move(s) from {plan}\n")
            reports = migrate_moves(moves, opts, journal, confirm=confirm, log=_log)
        else:
            assert journal is not None
            if not dry_run and fallback is not None and not yes and not confirm_fallback(fallback):
                raise typer.Exit(0)
            run = resume_move if resume is not None else fallback_move
            reports = [run(resume or fallback or "", opts, journal, log=_log)]
        from spotplan.report import moves as render

        done = [r.to_dict() for r in reports]
        fmt = rendering(output, out).format
        text = {OutputFormat.json: lambda: json.dumps({"dry_run": dry_run, "moves": done}, indent=2),
                OutputFormat.csv: lambda: render.run_csv(done),
                OutputFormat.markdown: lambda: render.run_markdown(done, dry_run)}.get(
                    fmt, lambda: render.run_text(done, dry_run))()
        emit(text, out)
        _reports_exit(reports)


def confirm_fallback(move_id: str) -> bool:
    return typer.confirm(f"Resume move {move_id} from its latest checkpoint on on-demand capacity?", err=True)


@migrations_app.command("list")
def migrations_list(output: OutputOpt = None, out: OutPathOpt = None, verbose: VerboseOpt = False) -> None:
    """Every move in the journal with its status."""
    with handle_errors(verbose):
        from spotplan.journal import Journal
        from spotplan.paths import journal_path
        from spotplan.report import moves as render

        # A read: it never creates the journal.
        moves = Journal().list_moves() if journal_path().exists() else []
        fmt = rendering(output, out).format
        if fmt == OutputFormat.json:
            emit(json.dumps(moves, indent=2), out)
        elif fmt == OutputFormat.csv:
            emit(render.list_csv(moves), out)
        elif fmt == OutputFormat.markdown:
            emit(render.list_markdown(moves), out)
        else:
            if not moves:  # a note, not data: stderr, as prices show does; the table keeps its header
                sys.stderr.write("no moves recorded yet (spotplan migrate PLAN.json --yes records them)\n")
            emit(render.list_text(moves), out)


@migrations_app.command("show")
def migrations_show(
    move_id: Annotated[str, typer.Argument(help="Move id (see spotplan migrations list).")],
    output: OutputOpt = None,
    out: OutPathOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """One move's journal: every step's start, result and provider ids (CSV: one row per event)."""
    with handle_errors(verbose):
        from spotplan.journal import Journal
        from spotplan.paths import journal_path
        from spotplan.report import moves as render

        if not journal_path().exists():
            raise InputError(f"no move {move_id!r}: there is no migrate journal yet ({journal_path()})",
                             hint="spotplan migrate PLAN.json --yes records moves")
        move = Journal().show(move_id)
        fmt = rendering(output, out).format
        text = {OutputFormat.json: lambda: json.dumps(move, indent=2), OutputFormat.csv: lambda: render.show_csv(move),
                OutputFormat.markdown: lambda: render.show_markdown(move)}.get(fmt, lambda: render.show_text(move))()
        emit(text, out)


def permissions(
    provider: Annotated[ProviderName | None, typer.Option("--provider", "-p", help="Only this cloud.")] = None,
    output: Annotated[OutputFormat | None, typer.Option(
        "--output", "-o", case_sensitive=False, show_default=False,
        help="Rendering: table, csv, markdown (one permission a row) or json (the documents themselves, "
             "ready to attach). Default: from the --out suffix (.csv, .md, .json), else table on a terminal "
             "and json when piped.")] = None,
    out: OutPathOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """The IAM policy / GCP custom role / Azure role definition migrate needs."""
    with handle_errors(verbose):
        from spotplan.providers.base import PROVIDER_MODULES, permission_document
        from spotplan.report import moves as render

        names = [provider.value] if provider else list(PROVIDER_MODULES)
        docs = {name: permission_document(name) for name in names}
        fmt = rendering(output, out).format
        if output is None and fmt == OutputFormat.table and (out is not None or not sys.stdout.isatty()):
            # The documents are what a pipe or a file wants: `spotplan permissions -p aws > policy.json`.
            fmt = OutputFormat.json
        text = {OutputFormat.json: lambda: json.dumps(docs[names[0]] if provider else docs, indent=2),
                OutputFormat.csv: lambda: render.permissions_csv(docs),
                OutputFormat.markdown: lambda: render.permissions_markdown(docs)}.get(
                    fmt, lambda: render.permissions_text(docs))()
        emit(text, out)


__all__ = ["migrate", "migrations_app", "permissions"]
