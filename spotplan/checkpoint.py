"""Crash-safe checkpoints for training loops on any fsspec store, and the guard that says when to save.

Layout under the store URI (local path, `s3://`, `gs://`, `az://` ... with the matching extra):

    <uri>/step-000000000042-20261123T010203123456Z-1a2b3c4d/   one checkpoint folder
        checkpoint.bin | model.pt | ...                      the payload files
        MANIFEST.json                                         written last: the commit point

Object stores have no atomic rename, so a checkpoint is never "moved into place". Instead every
payload file is written first, and only then the manifest (step, created_at, sha256 and size of every
file). A single PUT is atomic on object stores and the local manifest goes through an atomic
`os.replace`, so a manifest is either absent or complete. `save` checks the folder's listing before
and after committing, so it raises rather than commit a manifest whose files are not all there. A
folder without a manifest is a partial write and is ignored; `latest()` also re-checks every
checksum, so even a manifest whose files were later damaged or half-deleted is skipped in favour of
the previous good checkpoint. Within one store object a checkpoint is re-hashed only when its
manifest or one of its files' size or modification time (as listed) changed since it was verified.
Retention deletes the manifest of an old checkpoint before its files for the same reason, counts
only checkpoints whose manifest reads towards `keep`, and treats a folder without a readable
manifest as another writer's save in progress until nothing in it has changed for
`ABANDONED_AFTER` seconds.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import numbers
import os
import re
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from spotplan.errors import CredentialsError, InputError, MissingExtraError, SpotplanError
from spotplan.times import as_utc, parse_iso, utcnow

MANIFEST = "MANIFEST.json"
DEFAULT_FILE = "checkpoint.bin"
SCHEMA = "spotplan.checkpoint/1"
_CHUNK = 4 * 1024 * 1024
# Steps are zero-padded to 12 digits and grow wider beyond 10**12 (steps counted in samples or
# tokens get there); folders are ordered by the number, so both widths sort together.
_FOLDER_RE = re.compile(r"^step-(\d{12,})-(\d{8}T\d{12}Z)-([0-9a-f]{8})$")
# A folder without a manifest is someone's save in progress until nothing in it has changed for this
# long; only then does retention sweep it as a dead writer's leftover. An hour is far longer than any
# pause between two writes of one save, and leftovers cost only disk space meanwhile.
ABANDONED_AFTER = 3600.0
# The listing fields (by filesystem) that change when a file is rewritten: local, S3, GCS, Azure,
# and memory:// (whose "created" is set anew by every write).
_MODIFIED_KEYS = ("mtime", "LastModified", "last_modified", "updated", "modified", "created")
_VERSION_KEYS = ("ETag", "etag", "generation", "version_id")
_EXTRAS = {"s3": "aws", "s3a": "aws", "gs": "gcp", "gcs": "gcp", "az": "azure", "abfs": "azure", "abfss": "azure"}

Payload = bytes | Mapping[str, "bytes | str | os.PathLike[str]"]


class CheckpointError(SpotplanError):
    """A checkpoint could not be written, read or verified."""


class CheckpointAccessError(CheckpointError, CredentialsError):
    """The store refused access (permission denied, HTTP 401/403): exit code 4, like the cloud calls."""


@dataclass
class CheckpointInfo:
    """One committed checkpoint, as its manifest describes it."""

    step: int
    created_at: datetime
    uri: str
    files: dict[str, dict[str, Any]]
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "created_at": self.created_at.isoformat().replace("+00:00", "Z"),
            "uri": self.uri,
            "files": self.files,
            "metadata": self.metadata,
        }


def _check_name(name: str) -> str:
    parts = name.replace("\\", "/").split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts) or name == MANIFEST:
        raise InputError(f"invalid checkpoint file name {name!r}")
    return "/".join(parts)


def _folder_time(folder: str) -> datetime:
    """The creation time a checkpoint folder's name carries (the minimum for a foreign name)."""
    match = _FOLDER_RE.match(folder.rsplit("/", 1)[-1])
    if match is None:
        return datetime.min.replace(tzinfo=timezone.utc)
    return datetime.strptime(match.group(2), "%Y%m%dT%H%M%S%fZ").replace(tzinfo=timezone.utc)


def _default_options(uri: str, given: dict[str, Any] | None) -> dict[str, Any]:
    """s3:// follows the same endpoint override as the SDK calls (AWS_ENDPOINT_URL[_S3]). Naming the
    endpoint in the options, rather than leaving botocore to read it, also keys fsspec's instance
    cache by endpoint, so a process that talks to two endpoints never reuses the wrong client."""
    if given is not None:
        return given
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if uri.startswith("s3://") and endpoint:
        return {"client_kwargs": {"endpoint_url": endpoint}}
    return {}


class CheckpointStore:
    """Save, list, verify and load checkpoints under one fsspec URI (see the module docstring)."""

    def __init__(self, uri: str, keep: int = 3, storage_options: dict[str, Any] | None = None) -> None:
        import fsspec.core

        if keep is not None and keep < 0:
            raise InputError("keep must be 0 (keep all) or more")
        if not isinstance(uri, (str, os.PathLike)) or not str(uri).strip():
            # "" would resolve to the current directory and scatter step folders there.
            raise InputError(f"a checkpoint store needs a path or fsspec URL, not {uri!r}")
        self.uri = str(uri)
        self.keep = keep
        try:
            self.fs, root = fsspec.core.url_to_fs(self.uri, **_default_options(self.uri, storage_options))
        except ImportError as exc:
            raise _missing_extra(self.uri.split("://", 1)[0], exc) from None
        self.root = root.rstrip("/")
        self.local = "file" in _protocols(self.fs)
        # folder -> ((manifest digest, listing fingerprint of its files), whether they matched) when
        # last hashed: what `latest()` need not hash again while neither changes
        self._checked: dict[str, tuple[tuple[str, tuple[Any, ...]], bool]] = {}

    # -- writing ------------------------------------------------------------------------------
    def save(
        self,
        step: int,
        data: Payload,
        metadata: dict[str, Any] | None = None,
        *,
        created_at: datetime | None = None,
    ) -> CheckpointInfo:
        """Write the payload, then commit it with the manifest; apply retention. Returns the new info.
        `step` is an integer (numpy's too); `metadata` must be JSON-serialisable."""
        if isinstance(step, bool) or not isinstance(step, numbers.Integral):
            # int(2.9) would store step 2, int(True) step 1: a checkpoint under another step.
            raise InputError(f"step must be an integer, not {step!r}")
        if isinstance(data, (bytes, bytearray, memoryview)):
            sources: dict[str, Callable[[], Iterable[bytes]]] = {DEFAULT_FILE: _bytes_source(data)}
        elif isinstance(data, Mapping):
            sources = {}
            given: dict[str, str] = {}
            for name, value in data.items():
                key = _check_name(str(name))
                if key in sources:  # "a\\b" and "a/b": one would silently replace the other
                    raise InputError(f"checkpoint file names {given[key]!r} and {str(name)!r} name the same file")
                given[key] = str(name)
                if isinstance(value, (bytes, bytearray, memoryview)):
                    sources[key] = _bytes_source(value)
                elif isinstance(value, (str, os.PathLike)):
                    if not Path(value).is_file():
                        what = "is not a file" if Path(value).exists() else "does not exist"
                        raise InputError(f"checkpoint file {value} {what}")
                    sources[key] = _file_source(Path(value))
                else:
                    raise InputError(f"checkpoint file {name!r}: expected bytes or a path")
            if not sources:
                raise InputError("a checkpoint needs at least one file")
            for key in sources:  # "a" and "a/b": a file cannot also be a folder
                parts = key.split("/")
                for depth in range(1, len(parts)):
                    if "/".join(parts[:depth]) in sources:
                        raise InputError(f"checkpoint file {'/'.join(parts[:depth])!r} is also the folder of {key!r}")
        else:
            raise InputError("checkpoint data must be bytes or a mapping of name -> bytes | path")
        return self._commit(int(step), sources, dict(metadata or {}), created_at or utcnow())

    def _commit(
        self,
        step: int,
        sources: Mapping[str, Callable[[], Iterable[bytes]]],
        metadata: dict[str, Any],
        created_at: datetime,
        expected: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> CheckpointInfo:
        """Write the files, then the manifest. `expected` (a copy's source manifest) must match what
        was written before anything is committed. On any failure the folder (ours) is removed, so a
        full disk is not kept full by the failed save, and a CheckpointError says what broke."""
        if step < 0:
            raise InputError("step must be >= 0")
        try:  # as the manifest will: before any file is written, not after
            json.dumps(metadata, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise InputError(f"checkpoint metadata must be JSON-serialisable: {exc}") from None
        if created_at.tzinfo is None:  # naive means UTC, as in latest(newer_than=...)
            created_at = created_at.replace(tzinfo=timezone.utc)
        created_at = created_at.astimezone(timezone.utc)
        stamp = created_at.strftime("%Y%m%dT%H%M%S%f") + "Z"
        folder = f"{self.root}/step-{step:012d}-{stamp}-{secrets.token_hex(4)}"
        files: dict[str, dict[str, Any]] = {}
        try:
            for name, chunks in sources.items():
                files[name] = self._write_file(f"{folder}/{name}", chunks())
            if expected is not None and files != expected:
                differ = sorted(n for n in {*files, *expected} if files.get(n) != expected.get(n))
                self._discard(folder)
                raise CheckpointError(
                    f"checkpoint {self._uri_of(folder)}: {', '.join(differ)} did not match the source "
                    "manifest as copied (source changed or damaged?); nothing was committed"
                )
            manifest = {
                "schema": SCHEMA,
                "step": step,
                "created_at": created_at.isoformat().replace("+00:00", "Z"),
                "files": files,
                "metadata": metadata,
            }
            # Another process may have removed the folder while we wrote (a local writer then
            # re-creates it for its next file): never commit a manifest for files that are not there.
            self._check_written(folder, files, committed=False)
            self._write_manifest(folder, json.dumps(manifest, indent=1, sort_keys=True).encode())
            listing = self._check_written(folder, files, committed=True)
        except SpotplanError:
            raise
        except Exception as exc:
            self._discard(folder)
            raise _store_error(exc, f"cannot save checkpoint step {step} to {self.uri}",
                               "; nothing was committed") from exc
        info = CheckpointInfo(step, created_at, self._uri_of(folder), files, metadata)
        self._checked[folder] = ((_digest(manifest), _fingerprint(listing, files) or ()), True)
        with contextlib.suppress(OSError):  # committed: a listing that fails now must not undo that
            self._retain(folder)
        return info

    def _check_written(self, folder: str, files: Mapping[str, Mapping[str, Any]], committed: bool) -> dict[str, Any]:
        """The folder's listing, when it holds every file at its written size (and, once committed,
        the manifest). Otherwise the folder is dropped (it is ours) and CheckpointError raised."""
        listing = self._listing(folder)
        lost = _mismatched(listing, files) + ([MANIFEST] if committed and MANIFEST not in listing else [])
        if not lost:
            return listing
        self._discard(folder)
        raise CheckpointError(
            f"checkpoint {self._uri_of(folder)} lost {', '.join(sorted(lost))} while it was being saved "
            "(removed by another process?); nothing was committed"
        )

    def _discard(self, folder: str) -> None:
        """Remove a folder of ours that must not be (or stay) committed: manifest first, as retention."""
        with contextlib.suppress(Exception):
            self.fs.rm_file(f"{folder}/{MANIFEST}")
        with contextlib.suppress(Exception):
            self.fs.rm(folder, recursive=True)

    def _write_file(self, path: str, chunks: Iterable[bytes]) -> dict[str, Any]:
        digest = hashlib.sha256()
        size = 0
        if self.local:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        else:
            with self.fs.open(path, "wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
        return {"sha256": digest.hexdigest(), "size": size}

    def _write_manifest(self, folder: str, body: bytes) -> None:
        path = f"{folder}/{MANIFEST}"
        if not self.local:
            self.fs.pipe_file(path, body)  # one PUT: the object appears whole or not at all
            return
        tmp = f"{folder}/.{MANIFEST}.tmp-{os.getpid()}"
        with open(tmp, "wb") as out:
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        with contextlib.suppress(OSError):  # make the rename itself durable across a power cut
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _retain(self, committed: str) -> None:
        """Drop all but the `keep` highest steps (0: keep all) and the folders of dead writers. The
        checkpoint just committed is never dropped, even when it has a lower step than the others (a
        run restarted from an older checkpoint): `save` has just handed it to the caller. Only
        manifests that read count towards `keep`. A folder without a manifest (or with one that does
        not read) is dropped only once abandoned: it may be another writer's save."""
        folders = self._folders()
        committed_name = committed.rsplit("/", 1)[-1]
        # One listing for all manifests, not a HEAD per folder.
        try:
            manifests = self.fs.glob(f"{self.root}/step-*/{MANIFEST}")
        except OSError:
            return
        manifested = {str(p).rstrip("/").rsplit("/", 2)[-2] for p in manifests}
        name = {f: f.rsplit("/", 1)[-1] for f in folders}
        with_manifest = [f for f in folders if name[f] in manifested and name[f] != committed_name]
        doomed: builtins.list[str] = []
        unreadable: set[str] = set()
        if self.keep:
            kept = 1  # the one just committed
            for folder in reversed(with_manifest):
                if kept >= self.keep:
                    doomed.append(folder)
                elif self._read(folder) is None:
                    # No checkpoint to resume from, so it must not take the place of one that is:
                    # swept like a folder without a manifest, once nothing in it changes.
                    unreadable.add(folder)
                else:
                    kept += 1
        now = time.time()
        doomed += [
            f for f in folders if (name[f] not in manifested or f in unreadable) and self._abandoned(f, now)
        ]
        for folder in doomed:
            self._checked.pop(folder, None)
            with contextlib.suppress(FileNotFoundError, OSError):
                self.fs.rm_file(f"{folder}/{MANIFEST}")  # uncommit first: never a half-deleted "committed" one
            with contextlib.suppress(FileNotFoundError, OSError):
                self.fs.rm(folder, recursive=True)

    def _abandoned(self, folder: str, now: float) -> bool:
        """Whether a folder without a manifest is a dead writer's: nothing in it changed for
        ABANDONED_AFTER seconds. The name's time (the writer's clock at the start of the save) rules
        out recent folders without a listing; an old name alone is not enough, since `copy_to` names
        a copy after its original's creation time."""
        if now - _folder_time(folder).timestamp() <= ABANDONED_AFTER:
            return False
        entries = list(self._listing(folder).values())
        if not entries:  # an empty local folder: the writer has made it but written nothing yet
            with contextlib.suppress(FileNotFoundError, OSError):
                entries = [self.fs.info(folder)]
        stamps = [t for t in map(_modified, entries) if t is not None]
        return bool(stamps) and now - max(stamps) > ABANDONED_AFTER

    # -- reading ------------------------------------------------------------------------------
    def list(self) -> builtins.list[CheckpointInfo]:
        """Committed checkpoints (manifest present and readable), oldest first; not checksum-verified."""
        out = []
        with _translated(f"cannot list checkpoints in {self.uri}"):
            for folder in self._folders():
                info = self._read(folder)
                if info is not None:
                    out.append(info[0])
        return out

    def latest(self, newer_than: datetime | None = None, *, verify: bool = True) -> CheckpointInfo | None:
        """The newest committed checkpoint whose files all match their manifest checksums.

        `newer_than` keeps only checkpoints created strictly after that moment (tz-aware, or UTC).
        """
        if newer_than is not None and newer_than.tzinfo is None:
            newer_than = newer_than.replace(tzinfo=timezone.utc)
        with _translated(f"cannot read checkpoints in {self.uri}"):
            folders = self._folders()
            # Another writer may commit, and its retention delete, the candidates while they are
            # checked (a save in progress becomes the newest, the one before it goes): when nothing
            # passed, look again while the listing changes, and once more when a folder had no
            # manifest or failed its check, so a store holding a good checkpoint never answers None.
            retry_same = True
            for _ in range(20):
                info, unsettled = self._latest_of(folders, newer_than, verify)
                if info is not None:
                    return info
                again = self._folders()
                if again == folders:
                    if not (unsettled and retry_same):
                        return None
                    retry_same = False
                folders = again
        return None

    def _latest_of(self, folders: builtins.list[str], newer_than: datetime | None,
                   verify: bool) -> tuple[CheckpointInfo | None, bool]:
        """The newest good checkpoint among `folders`, and whether any candidate was unsettled
        (no manifest yet, or files that did not match: it may be mid-save or mid-delete)."""
        unsettled = False
        for folder in reversed(folders):
            if newer_than is not None and _folder_time(folder) <= newer_than:
                continue  # the name carries the creation time: no manifest read for old checkpoints
            read = self._read(folder)
            if read is None:
                unsettled = True
                continue
            info, manifest = read
            if newer_than is not None and info.created_at <= newer_than:
                continue
            if not verify:
                return info, unsettled
            if self._verified_now(folder, info, manifest):
                return info, unsettled
            unsettled = True
        return None, unsettled

    def _verified_now(self, folder: str, info: CheckpointInfo, manifest: Mapping[str, Any]) -> bool:
        """Whether the folder's files match the manifest. The files are hashed again unless this
        store hashed the very same manifest and files (same size and modification time in the
        listing) before, so a file rewritten since is caught, and a damaged checkpoint is not
        re-read on every call while it stays as it is; a missing file fails without reading."""
        fingerprint = _fingerprint(self._listing(folder), info.files)
        if fingerprint is None:
            self._checked.pop(folder, None)
            return False
        key = (_digest(manifest), fingerprint)
        known = self._checked.get(folder)
        if known is not None and known[0] == key:
            return known[1]
        # The listing was taken before hashing: a change made meanwhile shows as a new key next time.
        ok = self._verify_folder(folder, info)
        self._checked[folder] = (key, ok)
        return ok

    def verify(self, info: CheckpointInfo) -> bool:
        """Re-read every file of `info` and compare sizes and sha256 with its manifest."""
        folder = self._path_of(info.uri)
        with _translated(f"cannot verify {info.uri}"):
            read = self._read(folder)
            if read is None or read[0].files != info.files:
                return False
            return self._verify_folder(folder, read[0])

    def load(self, info: CheckpointInfo, name: str = DEFAULT_FILE) -> bytes:
        """The bytes of one file of a checkpoint, checked against its manifest entry."""
        name = _check_name(name)
        entry = info.files.get(name)
        if entry is None:
            raise CheckpointError(f"checkpoint {info.uri} has no file {name!r}")
        try:
            body = self.fs.cat_file(f"{self._path_of(info.uri)}/{name}")
        except FileNotFoundError:
            raise CheckpointError(f"{info.uri}/{name} is missing") from None
        except Exception as exc:
            raise _store_error(exc, f"cannot read {info.uri}/{name}") from exc
        if len(body) != entry["size"] or hashlib.sha256(body).hexdigest() != entry["sha256"]:
            raise CheckpointError(f"{info.uri}/{name} does not match its manifest checksum")
        return bytes(body)

    def download(self, info: CheckpointInfo, dest: str | os.PathLike[str]) -> Path:
        """Copy every file of `info` into the local folder `dest` (checked), returning it. Files are
        streamed (a checkpoint larger than memory downloads too) into a temporary name and renamed
        into place only once their size and sha256 match the manifest."""
        dest = Path(dest)
        folder = self._path_of(info.uri)
        for name, entry in info.files.items():
            name = _check_name(name)
            target = dest / name
            tmp = target.with_name(f".{target.name}.part-{os.getpid()}")
            digest, size = hashlib.sha256(), 0
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with self.fs.open(f"{folder}/{name}", "rb") as handle, open(tmp, "wb") as out:
                    while chunk := handle.read(_CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
                if size != entry["size"] or digest.hexdigest() != entry["sha256"]:
                    raise CheckpointError(f"{info.uri}/{name} does not match its manifest checksum")
                os.replace(tmp, target)
            except FileNotFoundError as exc:
                if not Path(exc.filename or "").is_relative_to(dest):
                    raise CheckpointError(f"{info.uri}/{name} is missing") from None
                raise _store_error(exc, f"cannot download {info.uri}/{name} to {dest}") from exc
            except SpotplanError:
                raise
            except Exception as exc:
                raise _store_error(exc, f"cannot download {info.uri}/{name} to {dest}") from exc
            finally:
                with contextlib.suppress(OSError):
                    tmp.unlink()
        return dest

    def copy_to(self, info: CheckpointInfo, other: CheckpointStore) -> CheckpointInfo:
        """Commit `info` into another store with the same protocol (files first, manifest last)."""
        folder = self._path_of(info.uri)
        sources = {name: self._stream_source(f"{folder}/{name}") for name in info.files}
        # The hashes of what was written must match the source manifest before the copy's manifest
        # goes out: a source file changed or damaged since it was verified is never committed.
        copied = other._commit(info.step, sources, dict(info.metadata), info.created_at, expected=info.files)
        if copied.files != info.files:
            raise CheckpointError(f"copy of {info.uri} to {other.uri} does not match the source checksums")
        return copied

    # -- internals ----------------------------------------------------------------------------
    def _folders(self) -> builtins.list[str]:
        """Checkpoint folders under the root, oldest first: by step, then creation time."""
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache(self.root)
        try:
            entries = self.fs.ls(self.root, detail=False)
        except FileNotFoundError as exc:
            if _missing_container(exc):  # a typo in the bucket is no empty store: say so now
                raise CheckpointError(f"{self.uri}: the bucket or container does not exist") from exc
            return []
        names = (str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries)
        # The step as a number: a 13-digit step comes after every 12-digit one.
        found = sorted((n for n in names if _FOLDER_RE.match(n)), key=lambda n: (int(n.split("-")[1]), n))
        return [f"{self.root}/{n}" for n in found]

    def _listing(self, folder: str) -> dict[str, Any]:
        """Every file under `folder` as the store lists it (name relative to the folder -> details),
        in one call; empty when the folder is gone."""
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache(folder)  # remote listings are cached: a check must see now
        try:
            found = self.fs.find(folder, detail=True)
        except FileNotFoundError:
            return {}
        prefix = folder.rstrip("/") + "/"
        return {str(path)[len(prefix) :]: entry for path, entry in found.items() if str(path).startswith(prefix)}

    def _read(self, folder: str) -> tuple[CheckpointInfo, dict[str, Any]] | None:
        try:
            manifest = json.loads(self.fs.cat_file(f"{folder}/{MANIFEST}"))
            match = _FOLDER_RE.match(folder.rsplit("/", 1)[-1])
            if manifest.get("schema") != SCHEMA or match is None or int(match.group(1)) != manifest["step"]:
                return None
            files = {str(k): {"sha256": str(v["sha256"]), "size": int(v["size"])} for k, v in manifest["files"].items()}
            info = CheckpointInfo(
                step=int(manifest["step"]),
                created_at=parse_iso(manifest["created_at"]),
                uri=self._uri_of(folder),
                files=files,
                metadata=dict(manifest.get("metadata") or {}),
            )
        except (FileNotFoundError, IsADirectoryError, ValueError, KeyError, TypeError, AttributeError):
            return None  # (not a PermissionError: a manifest we may not read is no proof of damage)
        return info, manifest

    def _verify_folder(self, folder: str, info: CheckpointInfo) -> bool:
        for name, entry in info.files.items():
            digest = hashlib.sha256()
            size = 0
            try:
                with self.fs.open(f"{folder}/{name}", "rb") as handle:
                    while chunk := handle.read(_CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
            except PermissionError:
                raise  # no proof of damage: falling back to an older checkpoint would hide it
            except (FileNotFoundError, OSError):
                return False
            if size != entry["size"] or digest.hexdigest() != entry["sha256"]:
                return False
        return True

    def _stream_source(self, path: str) -> Callable[[], Iterator[bytes]]:
        def chunks() -> Iterator[bytes]:
            with self.fs.open(path, "rb") as handle:
                while chunk := handle.read(_CHUNK):
                    yield chunk

        return chunks

    def _uri_of(self, folder: str) -> str:
        return folder if self.local else self.fs.unstrip_protocol(folder)

    def _path_of(self, uri: str) -> str:
        return uri if self.local else self.fs._strip_protocol(uri)

    def __repr__(self) -> str:
        return f"CheckpointStore({self.uri!r}, keep={self.keep})"


def check_uri(uri: str) -> None:
    """Raise when `uri` could not be opened as a store: InputError for a protocol fsspec does not
    know, MissingExtraError (with the pip command) when its package is missing. It only looks the
    filesystem class up: building one may reach the network (credential lookups)."""
    import fsspec
    import fsspec.core

    *chained, last = str(uri).split("::")
    for protocol in [*chained, fsspec.core.split_protocol(last)[0] or "file"]:
        try:
            fsspec.get_filesystem_class(protocol)
        except ImportError as exc:
            raise _missing_extra(protocol, exc) from None
        except ValueError:
            raise InputError(f"unknown storage protocol {protocol}:// in {uri!r}",
                             hint="use a local path, s3://, gs:// or az://") from None


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    """Turn a storage failure (permission, network, a missing bucket) into a one-line CheckpointError."""
    try:
        yield
    except SpotplanError:
        raise
    except Exception as exc:
        raise _store_error(exc, what) from exc


def _store_error(exc: BaseException, what: str, tail: str = "") -> CheckpointError:
    """A one-line CheckpointError for a storage failure; CheckpointAccessError (exit 4) for a denial."""
    if isinstance(exc, OSError) and exc.strerror:
        detail = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    else:
        detail = str(exc) or type(exc).__name__
    detail = " ".join(detail.split())[:300]
    status = next((v for a in ("status", "status_code", "code") if isinstance(v := getattr(exc, a, None), int)), None)
    if isinstance(exc, PermissionError) or status in (401, 403):
        return CheckpointAccessError(f"{what}: access denied ({detail}){tail}",
                                     hint="check the credentials and the store's permissions")
    if _missing_container(exc):
        return CheckpointError(f"{what}: the bucket or container does not exist ({detail}){tail}")
    return CheckpointError(f"{what}: {detail}{tail}")


def _missing_container(exc: BaseException) -> bool:
    """Whether a not-found error means the bucket (S3, GCS) or container (Azure) itself is missing,
    rather than a path in it: fsspec raises FileNotFoundError for both."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code")
        else:
            code = getattr(seen, "error_code", None)
        if str(code) in ("NoSuchBucket", "ContainerNotFound"):
            return True
        if any(t in str(seen) for t in ("bucket does not exist", "ContainerNotFound")):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _missing_extra(scheme: str, exc: ImportError) -> MissingExtraError:
    extra = _EXTRAS.get(scheme)
    hint = f"pip install 'spotplan[{extra}]'" if extra else "install the package fsspec names"
    return MissingExtraError(f"no filesystem for {scheme}:// ({exc})", hint=hint)


def is_local_uri(uri: str) -> bool:
    """Whether `uri` names this machine's filesystem (a path or `file://`), as fsspec reads it,
    without building the filesystem (that would need the remote store's extra)."""
    import fsspec.core

    protocol, _ = fsspec.core.split_protocol(str(uri))
    return protocol in (None, "file", "local")


def _protocols(fs: Any) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)


def _digest(manifest: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


def _mismatched(listing: Mapping[str, Any], files: Mapping[str, Mapping[str, Any]]) -> builtins.list[str]:
    """Files of a manifest that the listing lacks or shows at another size."""
    return [n for n, e in files.items() if n not in listing or listing[n].get("size") != e["size"]]


def _fingerprint(listing: Mapping[str, Any], files: Mapping[str, Mapping[str, Any]]) -> tuple[Any, ...] | None:
    """What the listing says about each file of a manifest (size, modification time, ETag or
    generation where the store has them): it changes when a file is rewritten. None when a file
    is missing or has the wrong size, which no hashing can repair."""
    if _mismatched(listing, files):
        return None
    keys = ("size", *_MODIFIED_KEYS, *_VERSION_KEYS)
    return tuple((n, tuple(str(listing[n].get(k)) for k in keys)) for n in sorted(files))


def _modified(entry: Mapping[str, Any]) -> float | None:
    """The POSIX time a listing entry was last modified, whatever the store calls it."""
    for key in _MODIFIED_KEYS:
        value = entry.get(key)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, datetime):
            return as_utc(value).timestamp()
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return parse_iso(value).timestamp()
    return None


def _bytes_source(data: bytes | bytearray | memoryview) -> Callable[[], Iterator[bytes]]:
    """Chunks of a bytes-like payload, as views: a large buffer (a numpy array's memory) is not copied."""
    view = memoryview(data)
    try:
        body = view.cast("B")
    except TypeError:  # not C-contiguous: one copy is unavoidable
        body = memoryview(view.tobytes())

    def chunks() -> Iterator[bytes]:
        for start in range(0, max(len(body), 1), _CHUNK):
            yield body[start : start + _CHUNK]  # type: ignore[misc]

    return chunks


def _file_source(path: Path) -> Callable[[], Iterator[bytes]]:
    def chunks() -> Iterator[bytes]:
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                yield chunk

    return chunks


class PreemptionGuard:
    """Turns SIGTERM/SIGUSR1 (and optionally a metadata notice) into a flag the loop checks at step ends.

        with PreemptionGuard() as guard:
            for step in ...:
                train_step()
                if guard.should_stop:
                    store.save(step, state)
                    break

    `source` ("aws", "gcp", "azure", "eci", "url" or "auto") also polls that metadata service in a
    background thread, with the same code `spotplan watch` uses. With "auto", that thread probes every
    `interval` until a service answers (at boot none may be up yet), as the agent does, instead of
    failing the training loop at its start. Signal handlers can only be installed from the main
    thread; the previous handlers are restored on exit.
    """

    def __init__(
        self,
        signals: Iterable[int | str] = ("SIGTERM", "SIGUSR1"),
        *,
        source: str | None = None,
        endpoint: str | None = None,
        interval: float = 1.0,
    ) -> None:
        from spotplan.watch.actions import signal_number  # standard library only, like this module

        self.signals = [signal_number(s) for s in signals]
        self.source = source
        self.endpoint = endpoint
        self.interval = interval
        self.reason: str | None = None
        self.notice: Any = None
        self._event = threading.Event()
        self._previous: dict[int, Any] = {}
        self._stop_polling = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def should_stop(self) -> bool:
        return self._event.is_set()

    def trigger(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
        self._event.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def _handle(self, signum: int, frame: Any) -> None:
        from spotplan.watch.actions import signal_name

        self.trigger(signal_name(signum))

    def __enter__(self) -> PreemptionGuard:
        src: Any = None
        if self.source and self.source != "auto":
            from spotplan.watch.sources import MetadataError, make_source

            try:  # before any handler, so a failure leaves none behind
                src = make_source(self.source, self.endpoint)
            except MetadataError as exc:  # an unknown source, or the URL source without a URL
                raise InputError(str(exc)) from None
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._handle)
        if self.source:
            self._thread = threading.Thread(target=self._poll, args=(src,), name="preemption-guard", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_polling.set()
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _poll(self, src: Any) -> None:
        from spotplan.watch.sources import make_source, next_poll_delay  # the watcher's code and schedule

        while not self._stop_polling.is_set() and not self.should_stop:
            started = time.monotonic()
            try:
                if src is None:  # "auto": detected here, so no answer at start is no failure
                    src = make_source("auto", self.endpoint)
                notice = src.poll(self.interval)
            except Exception:  # metadata hiccups must not kill training; try again next interval
                self._stop_polling.wait(max(0.0, next_poll_delay(started, self.interval)))
                continue
            if notice is not None and notice.actionable:
                self.notice = notice
                self.trigger(f"{notice.source}:{notice.kind}")
            else:  # a long-poll that waited is due again at once; one that answered early is not
                self._stop_polling.wait(max(0.0, next_poll_delay(started, self.interval)))


