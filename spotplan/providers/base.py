"""The contract between the executor and the cloud modules: the `Provider` Protocol, the `Call`
record every provider request is described by, and the lookup of a provider by name.

A provider method builds its `Call`s the same way whether or not it is a dry run; only
`Call.run(...)` looks at `dry_run`, so `migrate --dry-run` prints exactly what execution sends.
`recording()` collects every Call built while it is open, so a step that fails part-way still
shows the calls it made or would have made, with the failure marked on the one that failed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from spotplan.errors import CredentialsError, InputError, SpotplanError

MOVE_TAG = "spotplan-move"
TOKEN_TAG = "spotplan-token"
RESUME_TAG = "spotplan-resume-from"
ROLE_TAG = "spotplan-role"

MarketChoice = Literal["spot", "on-demand"]


def idempotency_token(move_id: str, step: str, length: int = 32) -> str:
    """A stable token per (move, step): a resumed call reuses it, so the cloud cannot double-create."""
    digest = hashlib.sha256(f"{move_id}\0{step}".encode()).hexdigest()
    return digest[:length]


def _short(value: Any, limit: int = 60) -> str:
    """repr() with long strings (user data, scripts) cut; structures are shown whole."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_short(v, limit)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_short(v, limit) for v in value) + "]"
    if isinstance(value, str) and len(value) > limit:
        first = value.splitlines()[0] if value.strip() else value
        return repr(first[: limit - 10] + f"... ({len(value)} chars)")
    return repr(value)


def render_call(name: str, params: Mapping[str, Any]) -> str:
    """`service.method(key=value, ...)` with long values cut (what a plan's reader needs to see)."""
    args = ", ".join(f"{k}={_short(v)}" for k, v in params.items())
    return f"{name}({args})"


@dataclass
class Call:
    """One provider request: which SDK method, with which arguments, needing which permissions."""

    provider: str
    service: str
    method: str
    params: dict[str, Any]
    permissions: tuple[str, ...] = ()
    note: str = ""
    # Filled by run(): what happened ("ok", "dry-run", "permission ok (DryRun)", "denied (...)",
    # "failed (...)").
    outcome: str = ""
    ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        built = _RECORDING.get()
        if built is not None:
            built.append(self)

    @classmethod
    def of(
        cls,
        provider: str,
        service: str,
        method: str,
        params: dict[str, Any],
        permissions: Mapping[str, tuple[str, ...]],
        note: str = "",
    ) -> Call:
        """A call with the permissions its `service.method` needs, from the provider's table. Every call
        must be in the table (an empty entry for calls that need none), so `spotplan permissions` can
        never miss one."""
        key = f"{service}.{method}"
        if key not in permissions:
            raise KeyError(f"{provider}: {key} is not in the provider's PERMISSIONS table")
        return cls(provider, service, method, params, permissions[key], note)

    def mark_failed(self, exc: SpotplanError, detail: str) -> None:
        """Put the failure beside the call: `denied (...)` for credentials/permissions, else `failed (...)`."""
        self.outcome = f"{'denied' if isinstance(exc, CredentialsError) else 'failed'} ({detail})"

    def render(self) -> str:
        return render_call(f"{self.service}.{self.method}", self.params)

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "call": f"{self.service}.{self.method}",
            "params": json.loads(json.dumps(self.params, default=str)),
            "permissions": list(self.permissions),
            "outcome": self.outcome,
            "ids": list(self.ids),
            **({"note": self.note} if self.note else {}),
        }

    def run(
        self,
        dry_run: bool,
        send: Callable[[], Any],
        check: Callable[[], str] | None = None,
    ) -> Any:
        """Send the request, or in a dry run only `check` it (e.g. EC2 DryRun=True) and send nothing."""
        if dry_run:
            self.outcome = check() if check is not None else "dry-run"
            return None
        result = send()
        self.outcome = "ok"
        return result


#: A provider's reading of its SDK's exceptions: (the spotplan error, a short detail) given the call's
#: `service.method` and the exception, or None for an exception it does not know (re-raised as is).
Translate = Callable[[str, Exception], "tuple[SpotplanError, str] | None"]


@contextmanager
def translated(call: Call, translate: Translate) -> Iterator[None]:
    """Send one SDK request: an exception `translate` knows becomes a one-line spotplan error naming
    the call (credential problems exit 4), marked on the call as denied or failed."""
    try:
        yield
    except SpotplanError:
        raise  # already one of ours (e.g. the missing-extra hint from building the client)
    except Exception as exc:
        mapped = translate(f"{call.service}.{call.method}", exc)
        if mapped is None:
            raise
        failure, detail = mapped
        call.mark_failed(failure, detail)
        raise failure from exc


def all_permissions(table: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Every permission a provider's calls need, sorted, once each: what its policy document grants."""
    return sorted({p for perms in table.values() for p in perms})


_RECORDING: ContextVar[list[Call] | None] = ContextVar("spotplan_calls", default=None)


@contextmanager
def recording() -> Iterator[list[Call]]:
    """Collect every Call built inside the block (a step's calls, even when the step raises)."""
    built: list[Call] = []
    reset = _RECORDING.set(built)
    try:
        yield built
    finally:
        _RECORDING.reset(reset)


def distinct(calls: Sequence[Call]) -> list[Call]:
    """The calls in order, repeats of an identical call (polls) collapsed onto the last one."""
    last = {(c.render(), c.outcome): i for i, c in enumerate(calls)}
    return [c for i, c in enumerate(calls) if last[(c.render(), c.outcome)] == i]


@dataclass
class LaunchSpec:
    """What to start on the target: built once by the executor, rendered per cloud."""

    move_id: str
    step: str
    market: MarketChoice
    region: str
    zone: str | None
    instance_type: str
    count: int
    max_price: float | None
    image: str | None
    user_data: str
    network: Mapping[str, Any]
    labels: Mapping[str, str]
    source_ids: Sequence[str]
    # The source's cloud: a target on another cloud cannot take its placement (project, resource
    # group, zone) from the source ids.
    source_provider: str = ""
    # What the target signs in with, as the target's preflight read it from the source (Azure: the
    # admin user and SSH public keys, no secrets) and the journal kept: a fallback long after the
    # move needs no source VM.
    sign_in: Mapping[str, Any] | None = None

    def from_elsewhere(self, target: str) -> bool:
        """Whether the source is on another cloud than `target` (so its ids say nothing about where
        the target goes, and its launch block names another cloud's image)."""
        return self.source_provider not in ("", target)

    def launch_block_note(self, target: str) -> str:
        """For errors about the launch block: where it came from, when that was another cloud."""
        if not self.from_elsewhere(target):
            return ""
        return f" (the launch block came with the {self.source_provider} workload)"

    @property
    def token(self) -> str:
        return idempotency_token(self.move_id, self.step)

    @property
    def tags(self) -> dict[str, str]:
        """What every created instance is tagged (labelled) with: the workload's labels, then the
        move, the idempotency token and the role (acquire, fallback), which the labels cannot override."""
        return {**self.labels, MOVE_TAG: self.move_id, TOKEN_TAG: self.token, ROLE_TAG: self.step.split("#")[0]}


class Provider(Protocol):
    """What the executor needs from a cloud. Every method takes `dry_run` and returns its Calls."""

    name: str

    def preflight(self, spec: LaunchSpec, dry_run: bool) -> tuple[list[Call], dict[str, Any]]:
        """Credentials and the target type in the zone (and quota where the API tells)."""
        ...

    def launch(self, spec: LaunchSpec, dry_run: bool) -> tuple[list[Call], list[str]]:
        """Create `spec.count` instances (idempotent for one spec.token); return their ids."""
        ...

    def trigger_checkpoint_ssm(
        self, source_ids: Sequence[str], command: str, move_id: str, dry_run: bool
    ) -> tuple[list[Call], dict[str, Any]]:
        """Run `command` on the source instances through the cloud's agent (AWS SSM only)."""
        ...

    def stop(self, ids: Sequence[str], dry_run: bool) -> list[Call]: ...

    def start(self, ids: Sequence[str], dry_run: bool) -> list[Call]: ...

    def release(self, ids: Sequence[str], dry_run: bool) -> list[Call]:
        """Delete/terminate instances spotplan created (never the source)."""
        ...

    def signal_resume(self, ids: Sequence[str], checkpoint_uri: str, dry_run: bool) -> list[Call]:
        """Tell the held target which checkpoint to resume from (a tag / metadata key)."""
        ...

    def states(self, ids: Sequence[str], dry_run: bool = False) -> tuple[list[Call], dict[str, str]]:
        """Normalised state per id: running, pending, stopping, stopped, terminated, missing. In a dry
        run the read is built, not sent (the ids may be placeholders), and every id reads running."""
        ...

    def list_created(self, move_id: str, near: Sequence[str] = ()) -> dict[str, str]:
        """Instances tagged spotplan-move=<move_id> and their normalised states; `near` are known ids
        (source, targets) that tell clouds with scoped listings (GCP zones) where to look."""
        ...


PROVIDER_MODULES = {
    "aws": "spotplan.providers.aws",
    "gcp": "spotplan.providers.gcp",
    "azure": "spotplan.providers.azure",
}


def provider_module(name: str):  # type: ignore[no-untyped-def]
    import importlib

    if name not in PROVIDER_MODULES:
        raise InputError(f"unknown provider {name!r} (expected one of {', '.join(PROVIDER_MODULES)})")
    return importlib.import_module(PROVIDER_MODULES[name])


def get_provider(name: str, region: str) -> Provider:
    """The provider for one region; its SDK is imported here, lazily, with an install hint."""
    return provider_module(name).make(region)  # type: ignore[no-any-return]


def permission_document(name: str) -> dict[str, Any]:
    """The policy document (IAM policy / GCP custom role / Azure role definition) for one provider."""
    return provider_module(name).permission_document()  # type: ignore[no-any-return]
