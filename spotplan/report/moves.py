"""Renderings of migrate's records: a run's move reports (`spotplan migrate`), the journal
(`spotplan migrations list|show`) and the permission documents (`spotplan permissions`), as the
plain table, CSV and markdown. JSON is the records themselves, dumped as they are."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

LIST_FIELDS = ("move_id", "workload", "provider", "kind", "status", "target_ids", "checkpoint", "error",
               "created_at", "updated_at")
EVENT_FIELDS = ("at", "step", "phase", "calls", "ids", "error")
RUN_FIELDS = ("move_id", "workload", "kind", "move_status", "step_no", "step", "step_status", "call", "params",
              "permissions", "outcome", "ids", "error")
PERMISSION_FIELDS = ("provider", "permission")
_STATE_KEYS = ("target_ids", "checkpoint_uri", "fallback_ids")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


def _csv(fields: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in fields})
    return buf.getvalue()


def _markdown(fields: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = ["| " + " | ".join(fields) + " |", "|" + "|".join("---" for _ in fields) + "|"]
    for row in rows:
        cells = (_cell(row.get(k)).replace("|", "\\|").replace("\n", " ") for k in fields)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _events(move: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"at": ev["at"], "step": ev["step"], "phase": ev["phase"],
             "calls": [c["call"] for c in ev["calls"]], "ids": [i for c in ev["calls"] for i in c.get("ids", [])],
             "error": ev["data"].get("error")} for ev in move["events"]]


def _headline(move: Mapping[str, Any]) -> str:
    return (f"move {move['move_id']} (workload {move['workload']}, {move['provider']}, {move['kind']}): "
            f"{move['status']}" + (f" - {move['error']}" if move["error"] else ""))


def list_text(moves: Sequence[Mapping[str, Any]]) -> str:
    rows = [("MOVE", "WORKLOAD", "PROVIDER", "KIND", "STATUS", "TARGETS", "UPDATED")]
    rows += [(m["move_id"], m["workload"], m["provider"], m["kind"], m["status"],
              ",".join(m["target_ids"]) or "-", m["updated_at"]) for m in moves]
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def list_csv(moves: Sequence[Mapping[str, Any]]) -> str:
    return _csv(LIST_FIELDS, moves)


def list_markdown(moves: Sequence[Mapping[str, Any]]) -> str:
    return "\n".join(["# Migrations", "", *_markdown(LIST_FIELDS, moves), ""])


def show_text(move: Mapping[str, Any]) -> str:
    lines = [_headline(move)]
    lines += [f"  {key}: {move['state'][key]}" for key in _STATE_KEYS if move["state"].get(key)]
    for ev in move["events"]:
        calls = "; ".join(f"{c['call']}{' -> ' + ','.join(c['ids']) if c['ids'] else ''}" for c in ev["calls"])
        detail = ev["data"].get("error") or ""
        lines.append(f"  {ev['at']}  {ev['step']:<24} {ev['phase']:<6} {calls} {detail}".rstrip())
    return "\n".join(lines)


def show_csv(move: Mapping[str, Any]) -> str:
    """One row per journal event of the move."""
    return _csv(EVENT_FIELDS, _events(move))


def show_markdown(move: Mapping[str, Any]) -> str:
    lines = [f"# Move {move['move_id']}", "", _headline(move), ""]
    lines += [f"- {key}: {_cell(move['state'][key])}" for key in _STATE_KEYS if move["state"].get(key)]
    return "\n".join([*lines, "", *_markdown(EVENT_FIELDS, _events(move)), ""])


# ---- a migrate run (the MoveReport dicts of `spotplan migrate -o json`) ----------------------------


def run_text(moves: Sequence[Mapping[str, Any]], dry_run: bool) -> str:
    """Each move's status, then its steps with the calls they made (or, dry, would make)."""
    lines: list[str] = []
    for rep in moves:
        lines.append(f"move {rep['move_id']} (workload {rep['workload']}): {rep['status']}"
                     + (f" - {rep['error']}" if rep.get("error") else ""))
        for n, step in enumerate(rep["steps"], 1):
            head = f"  {n:>2}. {step['step']:<22}"
            calls, error = step["calls"], step.get("error")
            if step["status"] == "skipped":
                lines.append(f"{head} skipped (done before resume)")
                continue
            if error and not calls:
                lines.append(f"{head} FAILED: {error}")
                continue
            if not calls:
                lines.append(f"{head} (journal only)")
            for i, call in enumerate(calls):
                prefix = head if i == 0 else " " * len(head)
                outcome = f"  [{call['outcome']}]" if call["outcome"] else ""
                ids = f" -> {', '.join(call['ids'])}" if call["ids"] and not dry_run else ""
                lines.append(f"{prefix} {call_text(call)}{outcome}{ids}")
            if error:
                lines.append(f"{' ' * len(head)} FAILED: {error}")
    return "\n".join(lines)


def call_text(call: Mapping[str, Any]) -> str:
    """`service.method(key=value, ...)`, as `Call.render` shows a call."""
    from spotplan.providers.base import render_call

    return render_call(call["call"], call["params"])


def _run_rows(moves: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per call of each step (a step without calls gets one row), in the order they ran."""
    rows: list[dict[str, Any]] = []
    for rep in moves:
        head = {"move_id": rep["move_id"], "workload": rep["workload"], "kind": rep["kind"],
                "move_status": rep["status"]}
        for n, step in enumerate(rep["steps"], 1):
            base = {**head, "step_no": n, "step": step["step"], "step_status": step["status"],
                    "error": step.get("error")}
            for call in step["calls"] or [None]:
                rows.append({**base, **({} if call is None else {
                    "call": call["call"], "params": json.dumps(call["params"], sort_keys=True),
                    "permissions": call["permissions"], "outcome": call["outcome"], "ids": call["ids"]})})
    return rows


def run_csv(moves: Sequence[Mapping[str, Any]]) -> str:
    return _csv(RUN_FIELDS, _run_rows(moves))


def run_markdown(moves: Sequence[Mapping[str, Any]], dry_run: bool) -> str:
    lines = [f"# spotplan migrate{' (dry run)' if dry_run else ''}", ""]
    fields = [f for f in RUN_FIELDS if f not in ("move_id", "workload", "kind", "move_status")]
    for rep in moves:
        lines += [f"## Move {rep['move_id']}", "",
                  f"{rep['workload']}, {rep['kind']}: **{rep['status']}**"
                  + (f" - {rep['error']}" if rep.get("error") else ""), ""]
        lines += [*_markdown(fields, _run_rows([rep])), ""]
    return "\n".join(lines)


# ---- permission documents ------------------------------------------------------------------------


def permission_rows(docs: Mapping[str, Any]) -> list[dict[str, str]]:
    """Every permission the documents grant, one row each: AWS statement actions, GCP
    `includedPermissions`, Azure `Actions` and `DataActions`."""
    rows = []
    for provider, doc in docs.items():
        found: list[str] = []
        for st in doc.get("Statement", []):
            action = st.get("Action", [])
            found += [action] if isinstance(action, str) else list(action)
        found += doc.get("includedPermissions", [])
        found += [*doc.get("Actions", []), *doc.get("DataActions", [])]
        rows += [{"provider": provider, "permission": p} for p in found]
    return rows


def permissions_text(docs: Mapping[str, Any]) -> str:
    rows = [("PROVIDER", "PERMISSION")] + [(r["provider"], r["permission"]) for r in permission_rows(docs)]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{a.ljust(width)}  {b}" for a, b in rows)


def permissions_csv(docs: Mapping[str, Any]) -> str:
    return _csv(PERMISSION_FIELDS, permission_rows(docs))


def permissions_markdown(docs: Mapping[str, Any]) -> str:
    return "\n".join(["# Permissions spotplan migrate needs", "", *_markdown(PERMISSION_FIELDS, permission_rows(docs)),
                      "", "The policy documents themselves: `spotplan permissions -o json`.", ""])
