"""Checkpoint semantics (in-memory and file stores) and the file store's crash safety."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from actors import checkpoint as cp
from actors.checkpoint import (
    CheckpointStore,
    FileCheckpointStore,
    InMemoryCheckpointStore,
    PartitionCheckpoint,
    default_directory,
    key_filename,
    run_key,
)
from backfill.core.states import CheckpointState
from backfill.iceberg.storage import ObjectFolder

KEY = run_key(["bf-2", "bf-1", "bf-2"])


@pytest.fixture(params=["memory", "file", "object"])
def store(request, tmp_path) -> CheckpointStore:
    if request.param == "memory":
        return InMemoryCheckpointStore()
    if request.param == "object":  # the object-store code path (Arrow file system through pyiceberg's IO)
        (tmp_path / "objects").mkdir()
        return FileCheckpointStore.on(ObjectFolder(f"file://{tmp_path}/objects", {}))
    return FileCheckpointStore(tmp_path / "ckpt")


def test_run_key_and_default_directory(tmp_path):
    assert KEY == "bf-1,bf-2"
    # the same ids on two tables are two keys (a commit to one is not done for the other)
    a = run_key(["bf-1"], "9c4f0b9e-0000-4000-8000-000000000001")
    b = run_key(["bf-1"], "9c4f0b9e-0000-4000-8000-000000000002")
    assert a == "bf-1@9c4f0b9e-0000-4000-8000-000000000001" and a != b
    assert key_filename(a) != key_filename(b)
    assert default_directory(tmp_path) == tmp_path / ".backfill-checkpoints"


def test_protocol_is_implemented(store):
    assert isinstance(store, CheckpointStore)


def test_begin_adds_pending(store):
    state = store.begin(KEY, "run-1", [("2024-03", "d3"), ("2024-02", "d2")])
    assert set(state) == {"2024-03", "2024-02"}
    rec = state["2024-03"]
    got = (rec.state, rec.digest, rec.attempts, rec.run_id, rec.snapshot_id)
    assert got == (CheckpointState.PENDING, "d3", 0, "run-1", None)
    assert store.load(KEY) == state
    assert store.load("other") == {} and store.committed("other") == {}


def test_mark_lifecycle_and_committed(store):
    store.begin(KEY, "run-1", [("2024-03", "d3"), ("2024-02", "d2")])
    r = store.mark(KEY, "2024-03", CheckpointState.RUNNING)
    assert (r.state, r.attempts) == (CheckpointState.RUNNING, 1)
    r = store.mark(KEY, "2024-03", CheckpointState.FAILED, error="boom")
    assert (r.state, r.error, r.attempts) == (CheckpointState.FAILED, "boom", 1)
    r = store.mark(KEY, "2024-03", CheckpointState.RUNNING)
    assert (r.attempts, r.error) == (2, "boom")  # last error stays visible during the retry
    r = store.mark(KEY, "2024-03", CheckpointState.COMMITTED, snapshot_id=42)
    assert (r.state, r.snapshot_id, r.error, r.attempts) == (CheckpointState.COMMITTED, 42, None, 2)
    assert store.committed(KEY) == {"2024-03": ("d3", 42)}
    store.mark(KEY, "2024-02", CheckpointState.COMMITTED)  # a commit that changed nothing has no snapshot
    assert store.committed(KEY) == {"2024-03": ("d3", 42), "2024-02": ("d2", None)}
    assert isinstance(store.load(KEY)["2024-03"], PartitionCheckpoint)


def test_mark_run_id_and_bad_input(store):
    store.begin(KEY, "run-1", [("2024-03", "d3")])
    assert store.mark(KEY, "2024-03", CheckpointState.RUNNING, run_id="run-2").run_id == "run-2"
    assert store.mark(KEY, "2024-03", CheckpointState.FAILED).run_id == "run-2"
    with pytest.raises(ValueError):
        store.mark(KEY, "2024-03", "done")
    with pytest.raises(KeyError):
        store.mark(KEY, "2099-01", CheckpointState.RUNNING)
    with pytest.raises(KeyError):
        store.mark("unknown", "2024-03", CheckpointState.RUNNING)


def test_begin_same_digest_keeps_committed(store):
    store.begin(KEY, "run-1", [("2024-03", "d3"), ("2024-02", "d2"), ("2024-01", "d1")])
    store.mark(KEY, "2024-03", CheckpointState.RUNNING)
    store.mark(KEY, "2024-03", CheckpointState.COMMITTED, snapshot_id=7)
    store.mark(KEY, "2024-02", CheckpointState.RUNNING)          # driver killed while this ran
    store.mark(KEY, "2024-01", CheckpointState.RUNNING)
    store.mark(KEY, "2024-01", CheckpointState.FAILED, error="x")
    state = store.begin(KEY, "run-2", [("2024-03", "d3"), ("2024-02", "d2"), ("2024-01", "d1")])
    c3, c2, c1 = state["2024-03"], state["2024-02"], state["2024-01"]
    assert (c3.state, c3.snapshot_id, c3.run_id, c3.attempts) == (CheckpointState.COMMITTED, 7, "run-1", 1)
    assert (c2.state, c2.attempts, c2.run_id) == (CheckpointState.PENDING, 1, "run-2")  # stale running reset
    assert (c1.state, c1.error, c1.run_id) == (CheckpointState.FAILED, "x", "run-2")
    assert store.committed(KEY) == {"2024-03": ("d3", 7)}


def test_begin_digest_change_resets(store):
    store.begin(KEY, "run-1", [("2024-03", "d3")])
    store.mark(KEY, "2024-03", CheckpointState.RUNNING)
    store.mark(KEY, "2024-03", CheckpointState.COMMITTED, snapshot_id=7)
    state = store.begin(KEY, "run-2", [("2024-03", "d3-new")])
    r = state["2024-03"]
    got = (r.state, r.digest, r.snapshot_id, r.attempts, r.run_id)
    assert got == (CheckpointState.PENDING, "d3-new", None, 0, "run-2")
    assert store.committed(KEY) == {}


def test_begin_keeps_partitions_not_in_tasks_and_forget(store):
    store.begin(KEY, "run-1", [("2024-03", "d3"), ("2024-02", "d2")])
    store.mark(KEY, "2024-02", CheckpointState.COMMITTED, snapshot_id=1)
    state = store.begin(KEY, "run-2", [("2024-03", "d3")])  # e.g. a narrower rerun
    assert state["2024-02"].state == CheckpointState.COMMITTED
    store.begin("bf-9", "run-3", [("2024-01", "d1")])
    store.forget(KEY)
    store.forget(KEY)  # idempotent
    assert store.load(KEY) == {}
    assert set(store.load("bf-9")) == {"2024-01"}


def test_keys_are_separate(store):
    store.begin("a", "r", [("2024-01", "d")])
    store.begin("a,b", "r", [("2024-01", "d")])
    store.mark("a", "2024-01", CheckpointState.COMMITTED, snapshot_id=1)
    assert store.committed("a,b") == {}


def test_long_error_is_truncated(store):
    store.begin(KEY, "r", [("2024-01", "d")])
    assert len(store.mark(KEY, "2024-01", CheckpointState.FAILED, error="e" * 10_000).error) == 4000


# --- file store specifics ---------------------------------------------------------------

def test_file_store_survives_a_new_instance(tmp_path):
    d = tmp_path / "ckpt"
    a = FileCheckpointStore(d)
    a.begin(KEY, "run-1", [("2024-03", "d3")])
    a.mark(KEY, "2024-03", CheckpointState.COMMITTED, snapshot_id=123456789012345678)
    b = FileCheckpointStore(d)
    assert b.load(KEY) == a.load(KEY)
    assert b.committed(KEY) == {"2024-03": ("d3", 123456789012345678)}
    assert b.keys() == [KEY]
    doc = json.loads(b.path_of(KEY).read_text())
    assert doc["key"] == KEY and doc["version"] == 1


@pytest.mark.parametrize("key", ["../../etc/passwd", "a/b", "a_b", "a\x00b", "", ".", "..",
                                 "bf 1,bf:2", "é,ü,日本", "x" * 5000, "CON", "-rf"])
def test_odd_keys_map_to_safe_file_names(tmp_path, key):
    d = tmp_path / "ckpt"
    s = FileCheckpointStore(d)
    name = key_filename(key)
    assert "/" not in name and "\x00" not in name and not name.startswith(".")
    assert len(name) <= 100 and name.endswith(".json")
    assert all(c.isascii() and (c.isalnum() or c in "_.-") for c in name)
    s.begin(key, "r", [("2024-01", "d")])
    assert [p.name for p in d.iterdir()] == [name]
    assert s.path_of(key).parent == s.directory
    assert FileCheckpointStore(d).keys() == [key]
    assert set(s.load(key)) == {"2024-01"}


def test_keys_that_slug_alike_get_distinct_files(tmp_path):
    s = FileCheckpointStore(tmp_path)
    assert key_filename("a/b") != key_filename("a_b") != key_filename("a:b")
    s.begin("a/b", "r", [("2024-01", "d1")])
    s.begin("a_b", "r", [("2024-01", "d2")])
    assert s.load("a/b")["2024-01"].digest == "d1"
    assert s.load("a_b")["2024-01"].digest == "d2"


def test_leftover_temp_file_is_ignored(tmp_path):
    s = FileCheckpointStore(tmp_path)
    s.begin(KEY, "run-1", [("2024-03", "d3")])
    s.mark(KEY, "2024-03", CheckpointState.COMMITTED, snapshot_id=5)
    path = s.path_of(KEY)
    # what a crash between mkstemp and os.replace leaves behind: a torn temp file
    (tmp_path / f".{path.name}.abc123.tmp").write_text('{"key": "bf-1,bf-2", "partitions": {"20')
    (tmp_path / "unrelated.json").write_text("not json")
    fresh = FileCheckpointStore(tmp_path)
    assert fresh.committed(KEY) == {"2024-03": ("d3", 5)}
    assert fresh.keys() == [KEY]


def test_failed_write_keeps_old_file_and_removes_temp(tmp_path, monkeypatch):
    s = FileCheckpointStore(tmp_path)
    s.begin(KEY, "run-1", [("2024-03", "d3")])
    before = s.path_of(KEY).read_bytes()

    def crash(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(cp.os, "replace", crash)
    with pytest.raises(OSError):
        s.mark(KEY, "2024-03", CheckpointState.COMMITTED, snapshot_id=9)
    monkeypatch.undo()
    assert s.path_of(KEY).read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [s.path_of(KEY).name]
    assert s.load(KEY)["2024-03"].state == CheckpointState.PENDING


def test_write_is_fsynced_before_rename(tmp_path, monkeypatch):
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(cp.os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(cp.os, "replace", lambda a, b: (calls.append("replace"), real_replace(a, b))[1])
    FileCheckpointStore(tmp_path).begin(KEY, "r", [("2024-01", "d")])
    assert calls[:2] == ["fsync", "replace"]  # data durable before it becomes visible
    assert calls[2:] == ["fsync"]             # then the directory entry


def test_file_key_mismatch_is_refused(tmp_path):
    s = FileCheckpointStore(tmp_path)
    s.begin("a", "r", [("2024-01", "d")])
    Path(s.path_of("b")).write_text(s.path_of("a").read_text())  # hand-copied file
    with pytest.raises(ValueError, match="belongs to key"):
        s.load("b")


def test_a_copy_with_the_same_uuid_under_another_name_has_its_own_key():
    uuid = "9c4f0b9e-0000-4000-8000-000000000001"
    original, copy = run_key(["bf-1"], uuid, "db.history"), run_key(["bf-1"], uuid, "copy.history")
    assert original != copy and key_filename(original) != key_filename(copy)


def _committed(partition: str, snapshot: int, at: str, digest: str = "d1") -> PartitionCheckpoint:
    from datetime import datetime

    return PartitionCheckpoint(partition, CheckpointState.COMMITTED, digest, snapshot_id=snapshot,
                               updated_at=datetime.fromisoformat(at))


def test_only_a_commit_older_than_every_retained_snapshot_counts_as_expired():
    from datetime import datetime

    history = {10: datetime.fromisoformat("2026-01-02T00:00:00+00:00"),
               11: datetime.fromisoformat("2026-01-03T00:00:00+00:00")}
    records = {
        "2024-01": _committed("2024-01", 5, "2026-01-01T00:00:00+00:00"),   # expired: older than all kept
        "2024-02": _committed("2024-02", 6, "2026-01-02T12:00:00+00:00"),   # younger than a kept one: not ours
        "2024-03": _committed("2024-03", 11, "2026-01-03T00:00:01+00:00"),  # in the history: it speaks for itself
        "2024-04": _committed("2024-04", 7, "2026-01-01T00:00:00+00:00", digest="old"),  # other entries
        "2024-05": PartitionCheckpoint("2024-05", CheckpointState.FAILED, "d1"),
    }
    digests = dict.fromkeys(records, "d1")
    assert cp.expired_commits(records, digests, history) == {"2024-01": 5}
    assert cp.expired_commits(records, digests, {}) == {}  # an empty history vouches for nothing
