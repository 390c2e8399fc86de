"""spotplan.checkpoint under an adopter's odd inputs and failures: storage errors as one-line
CheckpointErrors that lose nothing, readers racing a writer's retention, verified copies, streaming."""

from __future__ import annotations

import errno
import hashlib
import os
import sys
import tracemalloc
from pathlib import Path

import pytest

from spotplan.checkpoint import MANIFEST, CheckpointAccessError, CheckpointError, CheckpointStore
from spotplan.errors import EXIT_CREDENTIALS, InputError, SpotplanError
from tests.test_checkpoint import moto_s3  # noqa: F401 - the module-scoped moto server fixture

ROOT = Path(__file__).resolve().parents[1]


def _one_line(exc: BaseException) -> None:
    assert isinstance(exc, SpotplanError) and "\n" not in str(exc) and len(str(exc)) < 600, repr(exc)


# -- a failed save: a clear error, nothing kept of it, nothing saved before lost -------------------
def test_a_full_disk_is_a_checkpoint_error_that_frees_the_failed_save(tmp_path: Path, monkeypatch) -> None:
    store = CheckpointStore(str(tmp_path), keep=2)
    good = store.save(1, b"one")
    real = CheckpointStore._write_file

    def full(self, path, chunks):  # the second file hits ENOSPC half-way
        if path.endswith("/b.bin"):
            for _ in chunks:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, path, chunks)

    monkeypatch.setattr(CheckpointStore, "_write_file", full)
    with pytest.raises(CheckpointError, match="No space left on device; nothing was committed") as caught:
        store.save(2, {"a.bin": b"a" * 1000, "b.bin": b"b" * 1000})
    _one_line(caught.value)
    assert [p.name for p in tmp_path.iterdir()] == [Path(good.uri).name], "the failed save's folder fills the disk"
    assert store.latest() == good
    monkeypatch.setattr(CheckpointStore, "_write_file", real)
    assert store.save(3, {"a.bin": b"a"}).step == 3 and [i.step for i in store.list()] == [1, 3]


def test_permission_denied_is_an_access_error_with_exit_4(tmp_path: Path, monkeypatch) -> None:
    store = CheckpointStore(str(tmp_path), keep=0)
    store.save(1, b"one")

    def denied(*_a, **_k):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path))

    monkeypatch.setattr(store.fs, "ls", denied)
    for call in (store.latest, store.list):
        with pytest.raises(CheckpointAccessError, match="access denied") as caught:
            call()
        _one_line(caught.value)
        assert caught.value.exit_code == EXIT_CREDENTIALS
    monkeypatch.undo()
    # A manifest this process may not read is no proof of damage: not silently skipped for an older one.
    newest = store.save(2, b"two")
    real_cat = store.fs.cat_file

    def cat(path, *a, **k):
        if path.startswith(newest.uri):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_cat(path, *a, **k)

    monkeypatch.setattr(store.fs, "cat_file", cat)
    with pytest.raises(CheckpointAccessError, match="access denied"):
        CheckpointStore(str(tmp_path)).latest()


@pytest.mark.timeout(60)
def test_a_missing_bucket_is_named_not_an_empty_store(moto_s3) -> None:  # noqa: F811
    store = CheckpointStore("s3://no-such-bucket/run", storage_options=moto_s3[1])
    for call in (store.latest, store.list, lambda: store.save(1, b"x")):
        with pytest.raises(CheckpointError, match="bucket or container does not exist") as caught:
            call()
        _one_line(caught.value)
    # A missing prefix in a bucket that exists is an empty store, as before.
    assert CheckpointStore("s3://ckpt/not-yet", storage_options=moto_s3[1]).latest() is None


# -- odd payloads ----------------------------------------------------------------------------------
@pytest.mark.parametrize("files,match", [
    ({"a\\b": b"1", "a/b": b"2"}, "name the same file"),
    ({"a": b"1", "a/b": b"2"}, "is also the folder of"),
])
def test_file_names_that_collide_are_refused_before_anything_is_written(tmp_path: Path, files, match) -> None:
    with pytest.raises(InputError, match=match):
        CheckpointStore(str(tmp_path / "ck")).save(1, files)
    assert not (tmp_path / "ck").exists() or list((tmp_path / "ck").iterdir()) == []


def test_a_large_buffer_is_saved_without_a_copy(tmp_path: Path) -> None:
    big = bytearray(os.urandom(1 << 20)) * 48  # 48 MiB, e.g. a numpy array's memory
    store = CheckpointStore(str(tmp_path))
    tracemalloc.start()
    try:
        info = store.save(1, {"w.bin": big, "v.bin": memoryview(big)[1:]})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.files["w.bin"]["sha256"] == hashlib.sha256(big).hexdigest()
    assert info.files["v.bin"]["sha256"] == hashlib.sha256(big[1:]).hexdigest()
    assert peak < 8 << 20, f"{peak >> 20} MiB allocated to save a 48 MiB buffer"
    strided = store.save(2, memoryview(big)[::1024])  # not contiguous: saved from one copy
    assert store.load(strided) == bytes(big[::1024])


def test_download_streams_and_checks_each_file(tmp_path: Path, monkeypatch) -> None:
    store = CheckpointStore(str(tmp_path / "ck"))
    info = store.save(1, {"m/a.bin": os.urandom(3 << 20), "b.bin": b"b" * 10})

    def whole_file(*_a, **_k):
        raise AssertionError("download read a whole file into memory")

    monkeypatch.setattr(store.fs, "cat_file", whole_file)
    out = store.download(info, tmp_path / "out")
    assert (out / "m" / "a.bin").read_bytes() == Path(info.uri, "m", "a.bin").read_bytes()
    Path(info.uri, "b.bin").write_bytes(b"X" * 10)  # damaged: same size
    with pytest.raises(CheckpointError, match="does not match its manifest"):
        store.download(info, tmp_path / "out2")
    assert sorted(p.name for p in (tmp_path / "out2").iterdir()) == ["m"], "a damaged file, or its .part, was left"


# -- a reader racing another writer ----------------------------------------------------------------
def test_latest_finds_the_checkpoint_that_replaced_the_one_it_was_reading(tmp_path: Path, monkeypatch) -> None:
    """keep=1: the writer commits step 2 and deletes step 1 while a reader is checking step 1."""
    writer = CheckpointStore(str(tmp_path), keep=1)
    writer.save(1, b"one")
    reader = CheckpointStore(str(tmp_path), keep=0)
    real = CheckpointStore._read
    fired: list[str] = []

    def racing(self, folder):
        if self is reader and not fired:
            fired.append(folder)
            writer.save(2, b"two")
        return real(self, folder)

    monkeypatch.setattr(CheckpointStore, "_read", racing)
    found = reader.latest()
    assert fired and found is not None and found.step == 2, "latest() said None while step 2 was committed"


def test_latest_looks_again_when_a_save_in_progress_commits_during_the_scan(tmp_path: Path, monkeypatch) -> None:
    writer = CheckpointStore(str(tmp_path), keep=0)
    one = writer.save(1, b"one")
    two = writer.save(2, b"two")
    hidden = Path(two.uri, MANIFEST)
    hidden.rename(hidden.with_name("held"))  # step 2: files written, manifest not yet
    reader = CheckpointStore(str(tmp_path), keep=0)
    real = CheckpointStore._read

    def racing(self, folder):
        if self is reader and folder == one.uri and not hidden.exists():
            hidden.with_name("held").rename(hidden)  # step 2 commits...
            Path(one.uri, MANIFEST).unlink()  # ...and its retention uncommits step 1
        return real(self, folder)

    monkeypatch.setattr(CheckpointStore, "_read", racing)
    found = reader.latest()
    assert found is not None and found.step == 2


# -- copies (`spotplan watch --upload-to`) ---------------------------------------------------------
def test_a_copy_that_does_not_match_the_source_manifest_is_never_committed(tmp_path: Path) -> None:
    local = CheckpointStore(str(tmp_path / "local"), keep=0)
    info = local.save(5, {"model.bin": b"A" * 5000, "opt.bin": b"o" * 10})
    assert local.latest() == info
    Path(info.uri, "model.bin").write_bytes(b"B" * 5000)  # changed after it was verified, same size
    remote = CheckpointStore(str(tmp_path / "remote"), keep=0)
    with pytest.raises(CheckpointError, match="model.bin did not match the source manifest") as caught:
        local.copy_to(info, remote)
    _one_line(caught.value)
    assert remote.latest() is None and remote.list() == []
    assert not (tmp_path / "remote").exists() or list((tmp_path / "remote").iterdir()) == []


@pytest.mark.timeout(60)
def test_a_copy_to_s3_whose_source_vanishes_leaves_no_checkpoint(tmp_path: Path, moto_s3) -> None:  # noqa: F811
    local = CheckpointStore(str(tmp_path), keep=0)
    info = local.save(3, {"a.bin": os.urandom(1000), "b.bin": os.urandom(1000)})
    Path(info.uri, "b.bin").unlink()  # the trainer's retention removed it during the upload
    remote = CheckpointStore("s3://ckpt/vanish", keep=0, storage_options=moto_s3[1])
    with pytest.raises(CheckpointError, match="nothing was committed") as caught:
        local.copy_to(info, remote)
    _one_line(caught.value)
    assert remote.latest() is None and remote._folders() == []


# -- the example ----------------------------------------------------------------------------------
def test_the_example_saves_a_step_once(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("numpy")
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    sys.modules.pop("train_resumable", None)
    import train_resumable

    uri = str(tmp_path / "ck")
    assert train_resumable.main(["--checkpoint-uri", uri, "--steps", "200", "--save-every", "100"]) == 0
    assert train_resumable.main(["--checkpoint-uri", uri, "--steps", "200", "--save-every", "100"]) == 0
    steps = [i.step for i in CheckpointStore(uri).list()]
    assert steps == [100, 200], f"{steps}: the final step saved twice takes one of the 3 kept places"
