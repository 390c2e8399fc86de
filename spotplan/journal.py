"""The migrate journal: one SQLite file under the user data dir recording every move and every
step's start, result and provider ids, written before and after each provider call.

It is what makes `migrate --resume` safe after a crash (a step with a `start` but no `done` row was
interrupted mid-call), and what `spotplan migrations list|show` print. Each write is its own
committed transaction, so a SIGKILL loses at most the write in progress.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from spotplan.errors import InputError, SpotplanError
from spotplan.times import utcnow_iso

_SCHEMA = """
CREATE TABLE IF NOT EXISTS moves (
    move_id    TEXT PRIMARY KEY,
    workload   TEXT NOT NULL,
    provider   TEXT NOT NULL,
    kind       TEXT NOT NULL,          -- migrate | fallback
    status     TEXT NOT NULL,          -- running | done | rolled-back | failed | dry-run
    plan_path  TEXT,
    move_json  TEXT NOT NULL,
    state_json TEXT NOT NULL DEFAULT '{}',
    error      TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    move_id   TEXT NOT NULL REFERENCES moves(move_id),
    step      TEXT NOT NULL,
    phase     TEXT NOT NULL,           -- start | done | failed | info
    calls     TEXT NOT NULL DEFAULT '[]',
    data      TEXT NOT NULL DEFAULT '{}',
    at        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_move ON events(move_id, seq);
"""

FINAL_STATUSES = ("done", "rolled-back", "failed")


class Journal:
    """Append-only events plus one summary row per move."""

    def __init__(self, path: Path | None = None) -> None:
        if path is None:
            from spotplan.paths import journal_path

            path = journal_path()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            # Never replaced or repaired here: it may be the only record of a move in flight.
            raise SpotplanError(f"the migrate journal {self.path} cannot be read ({exc})",
                                hint="restore it from a backup, or move it aside to start a new journal") from None

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ---- moves -----------------------------------------------------------------------------

    def get_move(self, move_id: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM moves WHERE move_id = ?", (move_id,)).fetchone()
        if row is None:
            return None
        out = dict(row)
        out["move"] = json.loads(out.pop("move_json"))
        out["state"] = json.loads(out.pop("state_json"))
        return out

    def begin_move(self, move_id: str, workload: str, provider: str, kind: str,
                   move: dict[str, Any], plan_path: str | None) -> None:
        now = utcnow_iso()
        with self._tx() as db:
            db.execute(
                "INSERT INTO moves (move_id, workload, provider, kind, status, plan_path, move_json,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?)",
                (move_id, workload, provider, kind, plan_path, json.dumps(move), now, now),
            )
            db.execute(
                "INSERT INTO events (move_id, step, phase, data, at) VALUES (?, 'begin', 'info', ?, ?)",
                (move_id, json.dumps({"kind": kind, "plan": plan_path}), now),
            )

    def restart(self, move_id: str, kind: str, state: dict[str, Any]) -> None:
        """Start a new run (a retry, or a fallback) of a recorded move: a fresh `begin` event and the
        state it starts from, in one transaction, so a crash never leaves the new run with the old
        run's steps, attempt or targets."""
        now = utcnow_iso()
        with self._tx() as db:
            db.execute("UPDATE moves SET kind = ?, status = 'running', error = NULL, updated_at = ?"
                       " WHERE move_id = ?", (kind, now, move_id))
            db.execute(
                "INSERT INTO events (move_id, step, phase, data, at) VALUES (?, 'begin', 'info', ?, ?)",
                (move_id, json.dumps({"kind": kind}), now),
            )
            self._merge_state(db, move_id, state, now)

    def finish(self, move_id: str, status: str, error: str | None = None) -> None:
        now = utcnow_iso()
        with self._tx() as db:
            db.execute(
                "UPDATE moves SET status = ?, error = ?, updated_at = ? WHERE move_id = ?",
                (status, error, now, move_id),
            )
            db.execute(
                "INSERT INTO events (move_id, step, phase, data, at) VALUES (?, 'end', 'info', ?, ?)",
                (move_id, json.dumps({"status": status, "error": error}), now),
            )

    # ---- steps -----------------------------------------------------------------------------

    def step_start(self, move_id: str, step: str, calls: list[dict[str, Any]] | None = None) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO events (move_id, step, phase, calls, at) VALUES (?, ?, 'start', ?, ?)",
                (move_id, step, json.dumps(calls or []), utcnow_iso()),
            )

    def step_done(self, move_id: str, step: str, calls: list[dict[str, Any]], data: dict[str, Any]) -> None:
        """Record the result and merge it into the move's state in one transaction."""
        now = utcnow_iso()
        with self._tx() as db:
            state = self._merge_state(db, move_id, data, now)
            if step not in state.setdefault("steps_done", []):
                state["steps_done"].append(step)
                db.execute("UPDATE moves SET state_json = ? WHERE move_id = ?", (json.dumps(state), move_id))
            db.execute(
                "INSERT INTO events (move_id, step, phase, calls, data, at) VALUES (?, ?, 'done', ?, ?, ?)",
                (move_id, step, json.dumps(calls), json.dumps(data), now),
            )

    def step_failed(self, move_id: str, step: str, calls: list[dict[str, Any]], error: str,
                    sent_nothing: bool = False, exit_code: int | None = None) -> None:
        """`sent_nothing`: the step failed before it sent any change; `exit_code`: the code its error
        maps to, so a rollback finished later by --resume exits as the first run would have (each
        recorded only when given)."""
        data: dict[str, Any] = {"error": error, **({"sent_nothing": True} if sent_nothing else {}),
                                **({"exit_code": exit_code} if exit_code is not None else {})}
        with self._tx() as db:
            db.execute(
                "INSERT INTO events (move_id, step, phase, calls, data, at) VALUES (?, ?, 'failed', ?, ?, ?)",
                (move_id, step, json.dumps(calls), json.dumps(data), utcnow_iso()),
            )

    def update_state(self, move_id: str, data: dict[str, Any]) -> None:
        with self._tx() as db:
            self._merge_state(db, move_id, data, utcnow_iso())

    @staticmethod
    def _merge_state(db: sqlite3.Connection, move_id: str, data: dict[str, Any], now: str) -> dict[str, Any]:
        """Merge `data` into the move's state inside the caller's transaction; return the new state."""
        row = db.execute("SELECT state_json FROM moves WHERE move_id = ?", (move_id,)).fetchone()
        state: dict[str, Any] = json.loads(row["state_json"]) if row else {}
        state.update(data)
        db.execute("UPDATE moves SET state_json = ?, updated_at = ? WHERE move_id = ?",
                   (json.dumps(state), now, move_id))
        return state

    # ---- reading ---------------------------------------------------------------------------

    def current_run_events(self, move_id: str) -> list[dict[str, Any]]:
        """The events since the move's last `begin` (a retry or a fallback starts a new run)."""
        events = self.events(move_id)
        last_begin = max((i for i, e in enumerate(events) if e["step"] == "begin"), default=0)
        return events[last_begin:]

    def events(self, move_id: str) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT * FROM events WHERE move_id = ? ORDER BY seq", (move_id,)).fetchall()
        out = []
        for row in rows:
            item = dict(row)
            item["calls"] = json.loads(item["calls"])
            item["data"] = json.loads(item["data"])
            out.append(item)
        return out

    def list_moves(self) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT move_id, workload, provider, kind, status, error, created_at, updated_at, state_json"
            " FROM moves ORDER BY created_at, move_id"
        ).fetchall()
        out = []
        for row in rows:
            item = dict(row)
            state = json.loads(item.pop("state_json"))
            item["target_ids"] = state.get("target_ids", [])
            item["checkpoint"] = state.get("checkpoint_uri")
            out.append(item)
        return out

    def show(self, move_id: str) -> dict[str, Any]:
        move = self.get_move(move_id)
        if move is None:
            raise InputError(f"no move {move_id!r} in the journal {self.path}",
                             hint="spotplan migrations list shows the recorded moves")
        move["events"] = self.events(move_id)
        return move
