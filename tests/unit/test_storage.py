"""Where checkpoints live, and the folder code that writes them on disk or an object store."""

from __future__ import annotations

import pytest

from actors.checkpoint import FileCheckpointStore, normal_location, run_key
from backfill.config import CatalogConfig, Config, RunConfig
from backfill.core.locations import is_local
from backfill.iceberg.storage import LocalFolder, ObjectFolder, open_folder


def _cfg(type_: str, warehouse: str, checkpoint_dir: str | None = None) -> Config:
    return Config(catalog=CatalogConfig(type=type_, warehouse=warehouse),
                  run=RunConfig(checkpoint_dir=checkpoint_dir))


@pytest.mark.parametrize(("type_", "warehouse", "table", "expected"), [
    # an object-store warehouse: under it, on the store (never on the head node's disk)
    ("rest", "s3://warehouse", "s3://warehouse/db/t-1", "s3://warehouse/.backfill-checkpoints"),
    ("rest", "s3://warehouse/", None, "s3://warehouse/.backfill-checkpoints"),
    ("hive", "gs://lake/wh", "gs://lake/wh/db.db/t", "gs://lake/wh/.backfill-checkpoints"),
    # a warehouse *name* (REST, Glue): beside the table's namespace folder, outside the table
    ("rest", "prod_warehouse", "s3://bucket/db/accounts_history", "s3://bucket/db/.backfill-checkpoints"),
    ("glue", "123456789012", "s3://b/x.db/t/", "s3://b/x.db/.backfill-checkpoints"),
])
def test_checkpoints_live_where_the_table_lives(type_, warehouse, table, expected):
    assert _cfg(type_, warehouse).checkpoint_location(table) == expected


def test_local_warehouses_keep_their_folder(tmp_path):
    assert _cfg("embedded", str(tmp_path)).checkpoint_location("file:/x/db.db/t") == \
        str(tmp_path / ".backfill-checkpoints")
    assert _cfg("jdbc", f"file:{tmp_path}").checkpoint_location(None) == str(tmp_path / ".backfill-checkpoints")
    # a JDBC warehouse is always a location, even spelled without a leading '/'
    assert _cfg("jdbc", "wh").checkpoint_location("s3://b/db/t").endswith("/wh/.backfill-checkpoints")


def test_an_explicit_checkpoint_dir_wins():
    cfg = _cfg("rest", "s3://warehouse", checkpoint_dir="s3://ledger/bf")
    assert cfg.checkpoint_location("s3://warehouse/db/t") == "s3://ledger/bf"


def test_local_or_object_folder():
    assert is_local("/a/b") and is_local("file:/a") and is_local("file:///a") and is_local("rel/x")
    assert not is_local("s3://b/x") and not is_local("abfs://c@a.dfs.core.windows.net/x")
    assert normal_location("s3://b/x/") == "s3://b/x"


def test_object_folder_round_trip(tmp_path):
    (tmp_path / "o").mkdir()
    folder = ObjectFolder(f"file://{tmp_path}/o/", {})
    assert folder.read("missing.json") is None and folder.names() == []
    folder.write("a.json", b"{}")
    (tmp_path / "o" / ".a.json.123.tmp").write_bytes(b"torn")  # never listed
    assert folder.names() == ["a.json"] and folder.read("a.json") == b"{}"
    folder.delete("a.json")
    folder.delete("a.json")  # deleting twice is fine
    assert folder.names() == []


def test_a_store_reopened_on_the_same_object_folder_sees_every_key(tmp_path):
    (tmp_path / "o").mkdir()
    key = run_key(["bf-1"], "uuid-1", "db.t")
    first = FileCheckpointStore.on(ObjectFolder(f"file://{tmp_path}/o", {}))
    first.begin(key, "run-1", [("2024-01", "d1")])
    first.mark(key, "2024-01", "committed", snapshot_id=7)
    again = FileCheckpointStore.on(ObjectFolder(f"file://{tmp_path}/o", {}))
    assert again.keys() == [key] and again.committed(key) == {"2024-01": ("d1", 7)}
    # the same files read through the local code path agree
    assert FileCheckpointStore(tmp_path / "o").committed(key) == {"2024-01": ("d1", 7)}


def test_open_folder_picks_the_local_code_path_for_file_uris(tmp_path):
    assert isinstance(open_folder(f"file:{tmp_path}/x"), LocalFolder)
    assert isinstance(open_folder(str(tmp_path / "y")), LocalFolder)



def test_an_unwritable_checkpoint_folder_is_a_config_error_naming_it(tmp_path):
    from backfill.errors import CheckpointUnwritable, ConfigError, ExitCode
    from backfill.iceberg.storage import check_writable

    (tmp_path / "a-file").write_text("x")
    with pytest.raises(CheckpointUnwritable) as err:
        check_writable(str(tmp_path / "a-file" / "ckpt"))
    assert isinstance(err.value, ConfigError) and err.value.exit_code == ExitCode.CONFIG
    assert "a-file/ckpt" in str(err.value) and "checkpoint_dir" in str(err.value)
    check_writable(str(tmp_path / "ok"))  # a writable folder: no error, no probe left behind
    assert list((tmp_path / "ok").iterdir()) == []


def test_the_checkpoint_actor_takes_fresh_storage_properties_and_keeps_its_records(tmp_path):
    from actors.checkpoint import _CheckpointActor

    key = run_key(["bf-1"], "uuid-1", "db.t")
    actor = _CheckpointActor(str(tmp_path / "c"), {"s3.access-key-id": "old"})
    actor.begin(key, "run-1", [("2024-01", "d1")])
    actor.use_storage({"s3.access-key-id": "new"})
    actor.mark(key, "2024-01", "committed", snapshot_id=3)
    assert FileCheckpointStore(tmp_path / "c").committed(key) == {"2024-01": ("d1", 3)}
    assert "new" not in str(actor.info()) and "old" not in str(actor.info())
