"""Loading a plan file (`spotplan.plan/1`, DESIGN.md §4.4) into `spotplan.models.Plan`, with one-line
errors naming the file and field, and the plan-level checks migrate relies on."""

from __future__ import annotations

import json
from pathlib import Path

from spotplan.errors import InputError
from spotplan.models import Move, Plan


def load_plan(path: Path | str) -> Plan:
    from pydantic import ValidationError

    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such plan file") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not JSON (line {exc.lineno}: {exc.msg})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a plan file (not UTF-8 text)") from None
    except RecursionError:
        raise InputError(f"{path}: not a plan (JSON nested too deeply)") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a plan file") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: a plan is a JSON object with schema {'spotplan.plan/1'!r}")
    try:
        plan = Plan.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["loc"][:1] == ("moves",) and len(err["loc"]) > 1 and isinstance(err["loc"][1], int):
            moves = raw.get("moves") or []
            idx = err["loc"][1]
            if idx < len(moves) and isinstance(moves[idx], dict) and moves[idx].get("id"):
                where = f"{where} (move {moves[idx]['id']})"
        raise InputError(f"{path}: {where}: {err['msg']}") from None
    check_plan(plan, path)
    return plan


def check_plan(plan: Plan, path: Path | str = "plan") -> None:
    """Unique move ids and no instance ids shared between moves."""
    seen: set[str] = set()
    owners: dict[str, str] = {}
    for move in plan.moves:
        if move.id in seen:
            raise InputError(f"{path}: move id {move.id!r} appears twice")
        seen.add(move.id)
        for iid in move.source.instance_ids:
            if iid in owners:
                raise InputError(f"{path}: instance {iid} is in moves {owners[iid]} and {move.id}")
            owners[iid] = move.id


def select_moves(plan: Plan, only: list[str] | None) -> list[Move]:
    if not only:
        return list(plan.moves)
    known = {m.id for m in plan.moves}
    unknown = [o for o in only if o not in known]
    if unknown:
        raise InputError(f"--only {unknown[0]}: no such move in the plan (moves: {', '.join(sorted(known))})")
    return [m for m in plan.moves if m.id in only]


def what_migrate_would_refuse(move: Move) -> list[str]:
    """What in a planned move `spotplan migrate` will refuse before it changes anything: analyze plans
    every recommended or conditional workload, and says so here when the inventory lacks something
    a move needs (the cost model does not)."""
    missing = []
    if not move.source.instance_ids:
        missing.append("no instance_ids")
    if not move.checkpoint.enabled or not move.checkpoint.storage:
        missing.append("no checkpoint to verify before the source is stopped")
    elif not move.checkpoint.is_durable:
        missing.append("checkpoint storage is not durable")
    launch = move.launch
    if launch is None or not launch.image:
        missing.append("no launch.image")
    if launch is None or launch.checkpoint_trigger is None:
        missing.append("no launch.checkpoint_trigger")
    if move.target.provider == "azure" and not (launch and launch.network and launch.network.subnet):
        missing.append("no launch.network.subnet (an Azure target needs one)")
    return missing
