"""spotplan.checkpoint: the manifest-last commit protocol on a local disk and on S3 (moto server),
retention, verification, the PreemptionGuard, and kill -9 crash safety of a real writer process."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from spotplan.checkpoint import MANIFEST, CheckpointError, CheckpointInfo, CheckpointStore, PreemptionGuard
from spotplan.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def moto_s3():
    """A moto S3 server on 127.0.0.1 (free port) with a bucket, and the storage_options to reach it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    import boto3

    boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    ).create_bucket(Bucket="ckpt")
    yield url, {"client_kwargs": {"endpoint_url": url, "region_name": "us-east-1"}, "key": "x", "secret": "y"}
    server.stop()


def _s3_store(moto_s3, prefix: str, keep: int = 3) -> CheckpointStore:
    return CheckpointStore(f"s3://ckpt/{prefix}", keep=keep, storage_options=moto_s3[1])


# -- the protocol, locally ------------------------------------------------------------------------
def test_bytes_payload_is_one_file_with_a_manifest(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path / "ck"))
    assert store.latest() is None and store.list() == []
    info = store.save(7, b"weights", {"loss": 0.5})
    assert isinstance(info, CheckpointInfo)
    assert info.step == 7 and info.metadata == {"loss": 0.5}
    assert info.created_at.tzinfo is not None and info.created_at.utcoffset() == timedelta(0)
    assert info.files == {"checkpoint.bin": {"sha256": hashlib.sha256(b"weights").hexdigest(), "size": 7}}
    folder = Path(info.uri)
    assert folder.parent == tmp_path / "ck"
    assert sorted(p.name for p in folder.iterdir()) == ["MANIFEST.json", "checkpoint.bin"]
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["step"] == 7 and manifest["files"] == info.files
    assert datetime.fromisoformat(manifest["created_at"].replace("Z", "+00:00")) == info.created_at
    assert store.latest() == info and store.list() == [info]
    assert store.verify(info) and store.load(info) == b"weights"


def test_mapping_payload_takes_bytes_and_paths(tmp_path: Path) -> None:
    src = tmp_path / "opt.state"
    src.write_bytes(os.urandom(10_000))
    store = CheckpointStore(str(tmp_path / "ck"))
    info = store.save(3, {"model.bin": b"m" * 100, "sub/opt.state": src, "config.json": str(src)})
    assert set(info.files) == {"model.bin", "sub/opt.state", "config.json"}
    assert store.load(info, "sub/opt.state") == src.read_bytes()
    out = store.download(info, tmp_path / "restore")
    assert (out / "sub" / "opt.state").read_bytes() == src.read_bytes()


@pytest.mark.parametrize("name", ["../escape", "/abs", "MANIFEST.json", "a//b", "", "a/./b"])
def test_file_names_that_could_break_the_layout_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(InputError):
        CheckpointStore(str(tmp_path)).save(1, {name: b"x"})


def test_bad_payloads_are_refused(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path))
    with pytest.raises(InputError):
        store.save(1, {})
    with pytest.raises(InputError):
        store.save(1, {"a": tmp_path / "missing"})
    with pytest.raises(InputError):
        store.save(-1, b"x")


def test_latest_ignores_uncommitted_and_corrupt_checkpoints(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path), keep=0)
    good = store.save(1, b"one")
    bad = store.save(2, {"a": b"two", "b": b"two-b"})
    # A newer folder without a manifest: a writer that died before its commit.
    partial = tmp_path / "step-000000000009-20991231T000000000000Z-deadbeef"
    partial.mkdir()
    (partial / "checkpoint.bin").write_bytes(b"half")
    assert store.latest() == bad
    # Flip a byte of the committed step 2 (same size): the checksum catches it.
    path = Path(bad.uri) / "b"
    path.write_bytes(b"twX-b")
    fresh = CheckpointStore(str(tmp_path), keep=0)  # no verification cache
    assert fresh.verify(bad) is False
    assert fresh.latest() == good
    with pytest.raises(CheckpointError, match="checksum"):
        fresh.load(bad, "b")
    # A truncated file, and a manifest that is not JSON, are equally skipped.
    Path(good.uri, "checkpoint.bin").write_bytes(b"on")
    assert CheckpointStore(str(tmp_path)).latest() is None
    newest = store.save(3, b"three")
    Path(newest.uri, MANIFEST).write_text("{not json")
    assert CheckpointStore(str(tmp_path)).latest() is None
    assert [i.step for i in CheckpointStore(str(tmp_path)).list()] == [1, 2]


def test_newer_than_filters_on_creation_time(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path), keep=0)
    first = store.save(10, b"a")
    cut = datetime.now(timezone.utc)
    time.sleep(0.01)
    assert store.latest(newer_than=cut) is None
    second = store.save(5, b"b")  # a lower step saved later (a restart from an older checkpoint)
    assert store.latest(newer_than=cut) == second
    assert store.latest() == first
    naive = cut.replace(tzinfo=None)  # naive datetimes count as UTC
    assert store.latest(newer_than=naive) == second


def test_retention_never_drops_the_checkpoint_it_just_saved(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path), keep=2)
    store.save(10, b"a")
    store.save(11, b"b")
    restarted = store.save(5, b"c")  # a run restarted from an older checkpoint saves a lower step
    assert store.verify(restarted) and store.load(restarted) == b"c"
    assert [i.step for i in store.list()] == [5, 11]  # keep 2: the one just saved and the highest other


def _age(path: Path, seconds: float) -> None:
    """Make a folder and everything in it look untouched for `seconds`."""
    then = time.time() - seconds
    for item in [*path.rglob("*"), path]:
        os.utime(item, (then, then))


def test_retention_keeps_the_last_n_and_sweeps_dead_writers(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path), keep=2)
    leftover = tmp_path / "step-000000000000-20000101T000000000000Z-00000000"
    leftover.mkdir()
    (leftover / "checkpoint.bin").write_bytes(b"junk")
    _age(leftover, 2 * 3600)  # a writer that died two hours ago
    for step in range(1, 6):
        store.save(step, b"x" * step)
    assert [i.step for i in store.list()] == [4, 5]
    assert len(list(tmp_path.iterdir())) == 2  # older ones and the dead writer's folder are gone
    keep_all = CheckpointStore(str(tmp_path), keep=0)
    for step in range(6, 9):
        keep_all.save(step, b"y")
    assert [i.step for i in keep_all.list()] == [4, 5, 6, 7, 8]


def test_latest_rehashes_a_checkpoint_changed_since_this_store_verified_it(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path), keep=0)
    good = store.save(1, {"a.bin": b"A" * 1000})
    newest = store.save(2, {"a.bin": b"B" * 1000})
    assert store.latest() == newest  # verified (and remembered) by this very store
    time.sleep(0.02)  # file times tick coarsely on some filesystems: damage it a moment later
    Path(newest.uri, "a.bin").write_bytes(b"C" * 1000)  # same size, other bytes
    assert store.latest() == good, "a rewritten file must be hashed again, not trusted"
    Path(good.uri, "a.bin").unlink()  # half-deleted: skipped without reading anything
    assert store.latest() is None
    Path(good.uri, "a.bin").write_bytes(b"A" * 1000)  # repaired: verified again
    assert store.latest() == good


def test_retention_leaves_another_writers_save_in_progress(tmp_path: Path) -> None:
    root = tmp_path / "ck"
    store = CheckpointStore(str(root), keep=1)
    store.save(1, b"one")
    # Another writer's save of step 4, started a moment ago and not committed yet: its name sorts
    # before what we are about to commit, and it must survive our retention.
    other = root / f"step-000000000004-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}Z-0badcafe"
    other.mkdir()
    (other / "model.bin").write_bytes(b"half written")
    # A copy of an old checkpoint in progress (named after its original's time, files fresh).
    copying = root / "step-000000000003-20000101T000000000000Z-c0c0c0c0"
    copying.mkdir()
    (copying / "model.bin").write_bytes(b"being copied")
    # A writer that died long ago.
    dead = root / "step-000000000002-20000101T000000000000Z-deadbeef"
    dead.mkdir()
    (dead / "model.bin").write_bytes(b"junk")
    _age(dead, 2 * 3600)
    store.save(9, b"nine")
    assert other.is_dir() and (other / "model.bin").read_bytes() == b"half written"
    assert copying.is_dir()
    assert not dead.exists()
    assert [i.step for i in store.list()] == [9]


def _save_in_thread(store: CheckpointStore, step: int, data: dict) -> tuple:  # type: ignore[type-arg]
    import threading

    outcome: dict = {}  # type: ignore[type-arg]

    def run() -> None:
        try:
            outcome["info"] = store.save(step, data)
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _wait_for_second_file(root: Path, step: int) -> Path:
    """The folder of the save of `step` once its first file is complete (the second one exists)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for folder in root.glob(f"step-{step:012d}-*"):
            if (folder / "b.bin").exists():
                return folder
        time.sleep(0.001)
    raise AssertionError("the save never reached its second file")


BIG = {"a.bin": b"a" * (8 << 20), "b.bin": os.urandom(1 << 20) * 64, "c.bin": b"c" * (64 << 20)}


@pytest.mark.timeout(60)
def test_two_writers_a_slow_save_survives_the_other_writers_retention(tmp_path: Path) -> None:
    root = tmp_path / "ck"
    slow = CheckpointStore(str(root), keep=2)
    thread, outcome = _save_in_thread(slow, 5, BIG)
    _wait_for_second_file(root, 5)
    fast = CheckpointStore(str(root), keep=1).save(6, b"small and quick")  # its retention runs now
    thread.join(30)
    assert "error" not in outcome, outcome
    assert slow.verify(outcome["info"]), "the slow writer's checkpoint lost files to the other's retention"
    assert CheckpointStore(str(root)).verify(fast)


@pytest.mark.timeout(60)
def test_a_save_whose_folder_vanishes_raises_instead_of_committing(tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "ck"
    store = CheckpointStore(str(root), keep=0)
    thread, outcome = _save_in_thread(store, 5, BIG)
    shutil.rmtree(_wait_for_second_file(root, 5))  # removed under the writer (another tool, a person)
    thread.join(30)
    assert isinstance(outcome.get("error"), CheckpointError), outcome
    assert "a.bin" in str(outcome["error"]) and "nothing was committed" in str(outcome["error"])
    assert CheckpointStore(str(root)).list() == [] and list(root.glob("*/" + MANIFEST)) == []


def test_steps_past_twelve_digits_are_listed_resumed_and_retained(tmp_path: Path) -> None:
    """Steps counted in samples or tokens pass 10**12: the folder name grows a digit, and folders
    still sort by the number, next to the 12-digit ones an older version wrote."""
    store = CheckpointStore(str(tmp_path), keep=3)
    for step in (5, 999_999_999_999, 10**12, 10**13):
        info = store.save(step, str(step).encode())
        assert Path(info.uri).name.startswith(f"step-{step:012d}-")
    assert [i.step for i in store.list()] == [999_999_999_999, 10**12, 10**13]
    newest = CheckpointStore(str(tmp_path)).latest()
    assert newest is not None and newest.step == 10**13 and store.load(newest) == str(10**13).encode()
    assert len(list(tmp_path.iterdir())) == 3, "retention reaches the wide folders too"


def test_retention_does_not_count_a_manifest_that_does_not_read(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path), keep=3)
    for step in (1, 2, 3):
        store.save(step, bytes([step]) * 10)
    damaged = next(tmp_path.glob("step-000000000003-*"))
    (damaged / MANIFEST).write_text("{garbage")
    for step in (4, 5):
        store.save(step, bytes([step]) * 10)
    assert [i.step for i in store.list()] == [2, 4, 5], "three checkpoints to resume from, as keep=3 says"
    assert damaged.exists(), "a damaged folder is swept only once nothing in it changed for an hour"
    _age(damaged, 2 * 3600)
    store.save(6, b"6")
    assert not damaged.exists() and [i.step for i in store.list()] == [4, 5, 6]


@pytest.mark.parametrize("step", [2.9, 3.0, True, "4", None])
def test_a_step_that_is_no_integer_is_refused(tmp_path: Path, step: object) -> None:
    with pytest.raises(InputError, match="step must be an integer"):
        CheckpointStore(str(tmp_path)).save(step, b"x")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_numpy_integer_steps_are_integers(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    info = CheckpointStore(str(tmp_path)).save(np.int64(12), b"x")
    assert info.step == 12 and type(info.step) is int
    assert json.loads((Path(info.uri) / MANIFEST).read_text())["step"] == 12


def test_metadata_that_is_no_json_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path / "ck"))
    for metadata in ({"t": object()}, {1: "a", "b": 2}):
        with pytest.raises(InputError, match="metadata must be JSON-serialisable"):
            store.save(1, {"a.bin": b"x", "b.bin": b"y"}, metadata)  # type: ignore[dict-item]
    assert not (tmp_path / "ck").exists() or list((tmp_path / "ck").iterdir()) == []


@pytest.mark.parametrize("uri", ["", "  ", None])
def test_an_empty_store_uri_is_refused(tmp_path: Path, monkeypatch, uri: object) -> None:
    monkeypatch.chdir(tmp_path)  # where "" would have put the step folders
    with pytest.raises(InputError, match="needs a path or fsspec URL"):
        CheckpointStore(uri)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_memory_store_rehashes_a_same_size_rewrite(tmp_path: Path) -> None:
    store = CheckpointStore(f"memory://ckpt-{os.getpid()}-{tmp_path.name}", keep=0)
    good = store.save(1, {"m.bin": b"A" * 100})
    newest = store.save(2, {"m.bin": b"B" * 100})
    assert store.latest() == newest
    store.fs.pipe_file(store._path_of(newest.uri) + "/m.bin", b"C" * 100)  # same size, other bytes
    assert store.latest() == good, "a rewritten file must be hashed again on memory:// too"


# -- S3 through s3fs, against moto ----------------------------------------------------------------
@pytest.mark.timeout(60)
def test_s3_store_roundtrip_partial_and_corrupt(moto_s3) -> None:
    import boto3

    store = _s3_store(moto_s3, "run-a", keep=2)
    assert store.latest() is None
    infos = [store.save(s, {"model.bin": os.urandom(1000 + s), "meta": b"m"}, {"s": s}) for s in (1, 2, 3)]
    assert infos[-1].uri.startswith("s3://ckpt/run-a/step-000000000003-")
    assert [i.step for i in store.list()] == [2, 3]
    assert store.latest() == infos[-1] and store.verify(infos[-1])
    assert store.load(infos[-1], "meta") == b"m"
    s3 = boto3.client("s3", endpoint_url=moto_s3[0], region_name="us-east-1",
                      aws_access_key_id="x", aws_secret_access_key="y")
    # A payload object without its manifest (writer killed before the commit PUT).
    s3.put_object(Bucket="ckpt", Key="run-a/step-000000000099-20991231T000000000000Z-abcdef01/model.bin", Body=b"p")
    assert store.latest() == infos[-1]
    # Overwrite a committed object: the newest is skipped, the one before is returned.
    key = infos[-1].uri[len("s3://ckpt/"):] + "/model.bin"
    s3.put_object(Bucket="ckpt", Key=key, Body=b"tampered")
    other = _s3_store(moto_s3, "run-a")
    assert other.latest() == infos[-2]


@pytest.mark.timeout(60)
def test_copy_local_checkpoint_to_s3_and_env_endpoint(tmp_path: Path, moto_s3, monkeypatch) -> None:
    local = CheckpointStore(str(tmp_path))
    info = local.save(42, {"model.bin": os.urandom(50_000)}, {"run": "x"})
    remote = _s3_store(moto_s3, "run-b")
    copied = local.copy_to(info, remote)
    assert copied.step == 42 and copied.files == info.files and copied.created_at == info.created_at
    # The same objects through boto3's own AWS_ENDPOINT_URL instead of storage_options.
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_s3[0])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    via_env = CheckpointStore("s3://ckpt/run-b", storage_options={"skip_instance_cache": True})
    found = via_env.latest()
    assert found is not None and found.uri == copied.uri
    assert via_env.load(found, "model.bin") == local.load(info, "model.bin")


# -- crash safety: kill -9 a real writer process many times ---------------------------------------
# A "zygote" process imports everything once, then forks one writer per round, so each round costs
# a fork instead of an interpreter start; the writer is a separate process killed with SIGKILL.
ZYGOTE = textwrap.dedent(
    """
    import hashlib, json, os, random, sys
    from spotplan.checkpoint import CheckpointStore
    uri, opts = sys.argv[1], json.loads(sys.argv[2])
    CheckpointStore(uri, keep=3, storage_options=opts)  # warm the lazy fsspec imports before forking

    def payload(step, name, size):
        seed = hashlib.sha256(f"{step}:{name}".encode()).digest()
        return (seed * (size // 32 + 1))[:size]

    for line in sys.stdin:
        pid = os.fork()
        if pid == 0:
            store = CheckpointStore(uri, keep=3, storage_options=opts)
            latest = store.latest()
            step = latest.step if latest else 0
            rng = random.Random(os.getpid())
            while True:
                step += 1
                names = [f"f{i}.bin" for i in range(rng.randint(1, 3))]
                files = {n: payload(step, n, rng.randint(0, 96_000)) for n in names}
                store.save(step, files, {"writer": os.getpid()})
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print("dead", os.WTERMSIG(status) if os.WIFSIGNALED(status) else -1, flush=True)
    """
)


def _expected(step: int, name: str, size: int) -> bytes:
    seed = hashlib.sha256(f"{step}:{name}".encode()).digest()
    return (seed * (size // 32 + 1))[:size]


def _kill_loop(uri: str, opts: dict, kills: int, max_delay: float, reader: CheckpointStore, count_partials) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    zygote = subprocess.Popen(
        [sys.executable, "-c", ZYGOTE, uri, json.dumps(opts)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )
    assert zygote.stdin is not None and zygote.stdout is not None
    rng = random.Random(1234)
    best = 0
    partial_seen = 0
    try:
        for _ in range(kills):
            zygote.stdin.write("go\n")
            zygote.stdin.flush()
            pid = int(zygote.stdout.readline())
            time.sleep(rng.uniform(0, max_delay))
            os.kill(pid, signal.SIGKILL)
            assert zygote.stdout.readline().split() == ["dead", str(int(signal.SIGKILL))]
            partial_seen += count_partials()
            info = reader.latest()
            if info is None:
                assert best == 0, "a committed checkpoint was lost"
                continue
            # Independent check: every file matches the manifest AND is the content of that step.
            for name, entry in info.files.items():
                body = reader.load(info, name)
                assert len(body) == entry["size"]
                assert body == _expected(info.step, name, entry["size"]), "files of different saves mixed"
            assert info.step >= best, f"latest went back from step {best} to {info.step}"
            best = info.step
    finally:
        zygote.stdin.close()
        zygote.wait(10)
    print(f"crash safety {uri}: {kills} kills, newest step {best}, {partial_seen} partial folders seen")
    return {"best": best, "partials": partial_seen}


@pytest.mark.timeout(120)
def test_kill_9_during_save_never_yields_a_partial_checkpoint(tmp_path: Path) -> None:
    kills = int(os.environ.get("SPOTPLAN_CRASH_KILLS", "200"))
    root = tmp_path / "ck"
    reader = CheckpointStore(str(root), keep=0)

    def partials() -> int:
        return sum(1 for d in root.iterdir() if d.is_dir() and not (d / MANIFEST).exists()) if root.exists() else 0

    stats = _kill_loop(str(root), {}, kills, 0.06, reader, partials)
    assert stats["best"] > kills / 4, "the writer barely committed anything: the test exercised nothing"
    assert stats["partials"] > kills / 10, "kills never landed mid-save: the test exercised nothing"


@pytest.mark.timeout(120)
def test_kill_9_during_save_on_s3(moto_s3) -> None:
    kills = int(os.environ.get("SPOTPLAN_CRASH_KILLS_S3", "30"))
    reader = _s3_store(moto_s3, "crash", keep=0)

    def partials() -> int:
        folders = reader._folders()
        return sum(1 for f in folders if not reader.fs.exists(f"{f}/{MANIFEST}"))

    stats = _kill_loop("s3://ckpt/crash", moto_s3[1], kills, 0.4, reader, partials)
    assert stats["best"] > 0
    assert stats["partials"] > 0


# -- PreemptionGuard ------------------------------------------------------------------------------
def test_guard_flags_signals_and_restores_handlers() -> None:
    before = signal.getsignal(signal.SIGUSR1)
    with PreemptionGuard() as guard:
        assert not guard.should_stop
        os.kill(os.getpid(), signal.SIGUSR1)
        assert guard.wait(2) and guard.should_stop and guard.reason == "SIGUSR1"
        os.kill(os.getpid(), signal.SIGTERM)  # a second signal does not overwrite the first reason
        time.sleep(0.01)
        assert guard.reason == "SIGUSR1"
    assert signal.getsignal(signal.SIGUSR1) == before


@pytest.mark.timeout(30)
def test_guard_polls_a_metadata_source() -> None:
    from tests.emulators.metadata import GcpMetadataEmulator

    with GcpMetadataEmulator() as emu, PreemptionGuard(signals=(), source="gcp", endpoint=emu.endpoint) as guard:
        assert not guard.wait(0.3)
        emu.schedule_notice(0.1)
        assert guard.wait(5), "the metadata notice never reached the guard"
        assert guard.reason == "gcp:preempt" and guard.notice.kind == "preempt"


@pytest.mark.timeout(30)
def test_guard_with_a_polled_source_waits_between_polls() -> None:
    from tests.emulators.metadata import AwsImdsEmulator

    with AwsImdsEmulator() as emu, PreemptionGuard(signals=(), source="aws", endpoint=emu.endpoint,
                                                   interval=0.2) as guard:
        time.sleep(1.0)
        polls = emu.count("GET", "/latest/meta-data/spot/instance-action")
        assert 3 <= polls <= 7, f"{polls} polls in 1 s at a 0.2 s interval"
        emu.schedule_notice(0)
        assert guard.wait(3) and guard.reason == "aws:terminate"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("server", [{"etags": False}, {"long_polls": False}], ids=["no-etag", "no-long-poll"])
def test_guard_polls_a_gcp_server_that_answers_at_once_at_the_interval(server: dict) -> None:
    from tests.emulators.metadata import GcpMetadataEmulator

    with GcpMetadataEmulator(**server) as emu, PreemptionGuard(signals=(), source="gcp", endpoint=emu.endpoint,
                                                               interval=0.2):
        time.sleep(1.0)
        polls = emu.count("GET", "/computeMetadata/v1/instance/preempted")
    assert polls <= 8, f"{polls} polls in 1 s at a 0.2 s interval"


@pytest.mark.timeout(30)
def test_guard_auto_keeps_probing_until_a_service_answers(monkeypatch, sockdir: Path) -> None:
    """At boot no metadata service may answer yet: the guard must not fail the training loop, but
    find the service once it is up, as `spotplan watch --source auto` does."""
    from tests.emulators._http import closed_url
    from tests.emulators.metadata import AwsImdsEmulator

    aws = closed_url()
    monkeypatch.setenv("SPOTPLAN_AWS_IMDS_ENDPOINT", aws)
    for var in ("SPOTPLAN_GCP_METADATA_ENDPOINT", "SPOTPLAN_AZURE_IMDS_ENDPOINT"):
        monkeypatch.setenv(var, closed_url())
    monkeypatch.setenv("SPOTPLAN_ECI_SOCKET", f"unix:{sockdir}/none.sock")
    monkeypatch.delenv("SPOTPLAN_WATCH_URL", raising=False)
    imds = AwsImdsEmulator()
    try:
        with PreemptionGuard(signals=(), source="auto", interval=0.2) as guard:
            assert not guard.wait(0.5)
            imds.start(port=int(aws.rsplit(":", 1)[1]))
            imds.schedule_notice(0)
            assert guard.wait(10) and guard.reason == "aws:terminate"
    finally:
        imds.stop()
    with pytest.raises(InputError, match="unknown source"):
        PreemptionGuard(source="nosuch").__enter__()


def test_a_missing_filesystem_is_a_missing_extra() -> None:
    import importlib.util

    from spotplan.errors import MissingExtraError

    if importlib.util.find_spec("paramiko") is not None:
        pytest.skip("paramiko is installed, so sftp:// has its filesystem")
    with pytest.raises(MissingExtraError, match="no filesystem for sftp://") as caught:
        CheckpointStore("sftp://127.0.0.1/ckpt")
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("uri,local", [("/tmp/ckpt", True), ("relative/ckpt", True), ("file:///tmp/ckpt", True),
                                       ("s3://b/ckpt", False), ("gs://b/ckpt", False), ("az://c/ckpt", False),
                                       ("memory://ckpt", False), ("simplecache::s3://b/ckpt", False)])
def test_is_local_uri_reads_the_protocol_as_fsspec_does(uri: str, local: bool) -> None:
    from spotplan.checkpoint import is_local_uri

    assert is_local_uri(uri) is local
