"""A target whose history holds a backfill's commits but that has no current snapshot.

That happens when the table was replaced or its main branch reset after the backfill:
``verify`` must say so (and how to verify a given snapshot) instead of failing on a
missing snapshot or reporting every row as removed.
"""

from __future__ import annotations

from types import SimpleNamespace

import pyarrow as pa
import pytest

from backfill.config import Config
from backfill.core.commit_tags import commit_properties
from backfill.errors import ExitCode, TableError
from backfill.iceberg import tables
from backfill.ops.estimate import iceberg_bucket
from backfill.ops.verify import verify_backfill


class _Scan:
    def to_arrow(self):
        return pa.table({"acct": pa.array([], pa.int64())})


class _Table:
    """Just enough of a pyiceberg Table for ``verify``: snapshot history and empty scans."""

    def __init__(self, snapshots=(), current=None):
        by_id = {s.snapshot_id: s for s in snapshots}
        self.metadata = SimpleNamespace(snapshots=list(snapshots), snapshot_by_id=by_id.get, refs={})
        self._current = current
        self.scans = 0

    def current_snapshot(self):
        return self._current

    def snapshot_by_name(self, name):
        return self._current

    def scan(self, row_filter, snapshot_id=None):
        self.scans += 1
        return _Scan()


def _replaced_target() -> _Table:
    props = commit_properties([("2024-01", "ab" * 8)], "run-1", ["bf-1"])
    commit = SimpleNamespace(snapshot_id=11, parent_snapshot_id=None, sequence_number=1, timestamp_ms=1,
                             summary=SimpleNamespace(additional_properties=props))
    return _Table([commit], current=None)


def _load_fakes(monkeypatch, target: _Table, staging: _Table) -> None:
    monkeypatch.setattr(tables, "load", lambda catalog, cfg, which: target if which == "target" else staging)


def test_verify_of_a_target_without_current_snapshot_says_so_before_reading_staging(monkeypatch):
    staging = _Table()
    _load_fakes(monkeypatch, _replaced_target(), staging)
    with pytest.raises(TableError, match="holds commits of bf-1, but none in the lineage of main.*--as-of") as info:
        verify_backfill(Config(), None, ["bf-1"])
    assert info.value.exit_code == ExitCode.TABLE
    assert staging.scans == 0


def test_verify_with_as_of_does_not_need_a_current_snapshot(monkeypatch):
    _load_fakes(monkeypatch, _replaced_target(), _Table())
    report = verify_backfill(Config(), None, ["bf-1"], as_of=11)
    assert report.ok and report.partitions_checked == 1


def test_iceberg_bucket_of_no_account_is_a_type_error():
    with pytest.raises(TypeError, match="no bucket"):
        iceberg_bucket(16, None)
