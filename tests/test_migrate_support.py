"""Helpers shared by the migrate test modules (no tests here): a fault-injecting proxy in front of
moto, plan files written by hand, and the invariants checked after every run."""

from __future__ import annotations

import http.client
import json
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from tests.emulators._http import Faults, LocalServer, QuietHandler


class FaultProxy(LocalServer):
    """An HTTP proxy to moto that fails the next call of a named action once.

    AWS query actions (EC2, STS) are named by their `Action=` form field, JSON ones (SSM) by
    `X-Amz-Target`; the injected error uses the envelope of that protocol, so botocore parses it as
    a real ClientError.
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.faults = Faults()
        self.seen: list[str] = []
        # JSON-protocol answers for actions moto lacks (e.g. EC2 quotas in Service Quotas).
        self.canned: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        proxy = self

        class Handler(QuietHandler):
            def _forward(self) -> None:
                body = self.read_body()
                target = self.headers.get("X-Amz-Target")
                action = target.split(".")[-1] if target else (parse_qs(body.decode(errors="replace"))
                                                               .get("Action", [""])[0])
                with proxy.lock:
                    proxy.seen.append(action)
                    canned = proxy.canned.pop(action, None)
                if canned is not None:
                    self.reply(200, json.dumps(canned).encode(), "application/x-amz-json-1.1")
                    return
                with proxy.lock:
                    fault = proxy.faults.take(action)
                if fault is not None:
                    status, code = fault
                    if target:
                        payload = json.dumps({"__type": code, "message": "injected fault"}).encode()
                        ctype = "application/x-amz-json-1.1"
                    else:
                        payload = (f"<Response><Errors><Error><Code>{code}</Code><Message>injected fault"
                                   f"</Message></Error></Errors><RequestID>fault</RequestID></Response>").encode()
                        ctype = "text/xml"
                    self.reply(status, payload, ctype)
                    return
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        super().__init__(Handler)

    def fail_next(self, action: str, code: str = "InternalError", status: int = 400, skip: int = 0) -> None:
        """Fail the next call of `action` (after letting `skip` calls through) once."""
        with self.lock:
            self.faults.arm(action, status, code, skip=skip)

    def answer_next(self, action: str, body: dict[str, Any]) -> None:
        with self.lock:
            self.canned[action] = body

    def clear(self) -> None:
        with self.lock:
            self.faults.clear()
            self.canned.clear()


def write_plan(path: Path, moves: list[dict[str, Any]]) -> Path:
    plan = {
        "schema": "spotplan.plan/1",
        "created_at": "2026-11-23T00:00:00Z",
        "analysis": {"generated_at": "2026-11-23T00:00:00Z"},
        "moves": moves,
    }
    path.write_text(json.dumps(plan, indent=2))
    return path


def make_move(
    move_id: str,
    provider: str,
    region: str,
    zone: str,
    instance_type: str,
    source_ids: list[str],
    storage: str,
    image: str,
    trigger: dict[str, Any],
    max_price: float = 1.0,
    on_demand_price: float = 1.006,
    **launch_extra: Any,
) -> dict[str, Any]:
    return {
        "id": move_id,
        "workload": f"wl-{move_id}",
        "source": {"provider": provider, "region": region, "zone": zone, "instance_type": instance_type,
                   "instance_ids": source_ids},
        "target": {"provider": provider, "region": region, "zone": zone, "instance_type": instance_type,
                   "market": "spot", "max_price": max_price},
        "checkpoint": {"enabled": True, "interval_minutes": 30, "save_seconds": 60, "restore_seconds": 120,
                       "storage": storage, **({} if "://" in storage else {"durable": True})},
        "launch": {"image": image, "resume_command": "python train.py --resume-from-latest",
                   "checkpoint_trigger": trigger, **launch_extra},
        "fallback": "on-demand",
        "expected": {"savings": 10.0, "cost": 5.0},
        "count": len(source_ids),
        "on_demand_price": on_demand_price,
    }


def journal_of(move_id: str) -> dict[str, Any]:
    from spotplan.journal import Journal

    return Journal().show(move_id)


def assert_move_invariants(move_id: str, created: Mapping[str, Any], source_states: set[str], stopped: str,
                           running: set[str], expect_done: bool) -> dict[str, Any]:
    """After a run on any cloud: no leaked target, the source stopped only with a verified checkpoint,
    a consistent journal. `created` are the live instances tagged with the move; `source_states` the
    cloud's own states of the source(s), `stopped`/`running` its words for those."""
    j = journal_of(move_id)
    journal_consistent(j["events"])
    if expect_done:
        assert j["status"] == "done", j
        assert sorted(created) == sorted(j["state"]["target_ids"]), "live instances != the journaled targets"
        assert source_states == {stopped}, source_states
    else:
        assert j["status"] == "rolled-back", j
        assert created == {}, f"leaked instances {list(created)}"
        assert source_states <= running, source_states
    if stopped in source_states:
        assert j["state"].get("checkpoint_verified") is True
    return j


def journal_consistent(events: list[dict[str, Any]]) -> None:
    """Every `done` follows a `start` of the same step; a finished move has no dangling start."""
    open_steps: dict[str, int] = {}
    for ev in events:
        if ev["phase"] == "start":
            open_steps[ev["step"]] = open_steps.get(ev["step"], 0) + 1
        elif ev["phase"] in ("done", "failed"):
            assert open_steps.get(ev["step"]), f"{ev['phase']} of {ev['step']} without a start"
            open_steps[ev["step"]] = 0


TRAINER = """
import os, sys
from spotplan.checkpoint import CheckpointStore
store = CheckpointStore(os.environ["SPOTPLAN_CHECKPOINT_STORAGE"])
last = store.latest()
step = (last.step + 1) if last else 1
store.save(step, {"model.bin": os.urandom(64)}, metadata={"move": os.environ["SPOTPLAN_MOVE_ID"]})
"""


def trainer_script(tmp: Path) -> str:
    """A `via: command` trigger: a tiny workload that writes a checkpoint when asked."""
    script = tmp / "trainer_checkpoint.py"
    script.write_text(TRAINER)
    import sys

    return f"{sys.executable} {script}"


def ids_in(text: str, pattern: str = r"i-[0-9a-f]+") -> list[str]:
    return re.findall(pattern, text)
