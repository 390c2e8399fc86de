"""Renderings of the migrate journal for `spotplan migrations list|show`: the plain table, CSV and
markdown (JSON is the journal's own records, dumped as they are)."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

LIST_FIELDS = ("move_id", "workload", "provider", "kind", "status", "target_ids", "checkpoint", "error",
               "created_at", "updated_at")
EVENT_FIELDS = ("at", "step", "phase", "calls", "ids", "error")
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
