"""Compaction command: the procedure call it builds, which partitions it picks, its report."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from backfill.config import Config, TableConfig
from backfill.errors import ConfigError, InputError
from backfill.ops.compact import CompactionResult, FileStats, PartitionCompaction, backfilled_partitions, rewrite_sql


def test_rewrite_call_names_one_partition_with_quoted_parts():
    cfg = Config(tables=TableConfig(target_table="risk.history", month_column="snapshot_month"))
    sql = rewrite_sql(cfg, "2023-07")
    assert sql == (
        "CALL `demo`.system.rewrite_data_files(table => 'risk.history', where => \"`snapshot_month` = "
        "'2023-07'\", options => map('delete-file-threshold', '1', 'min-input-files', '2', "
        "'remove-dangling-deletes', 'true', 'use-starting-sequence-number', 'false', "
        "'partial-progress.enabled', 'true'))")


@pytest.mark.parametrize("month", ["2023-7", "2023-07' OR '1'='1", "2023-07\"); DROP TABLE x; --", ""])
def test_rewrite_call_refuses_anything_but_a_month(month):
    with pytest.raises(InputError, match="is not of the form 'YYYY-MM'"):
        rewrite_sql(Config(), month)


def test_rewrite_call_refuses_hostile_identifiers():
    cfg = Config(tables=TableConfig(month_column="m` = 1 OR `x"))
    with pytest.raises(ConfigError):
        rewrite_sql(cfg, "2023-07")


def _snap(props):
    return SimpleNamespace(summary=SimpleNamespace(additional_properties=props))


def test_partitions_come_from_tagged_commits_of_the_named_backfills():
    table = SimpleNamespace(metadata=SimpleNamespace(snapshots=[
        _snap({"backfill.partition": "2023-01", "backfill.ids": "bf-a"}),
        _snap({"backfill.partition": "2023-03", "backfill.ids": "bf-a,bf-b"}),
        _snap({"backfill.partition": "2023-02", "backfill.ids": "bf-c"}),
        _snap({}),                                                 # an ordinary append
        SimpleNamespace(summary=None),
    ]))
    assert backfilled_partitions(table, ["bf-a"]) == ["2023-03", "2023-01"]
    assert backfilled_partitions(table, ["bf-b", "bf-c"]) == ["2023-03", "2023-02"]
    assert backfilled_partitions(table, ["bf-z"]) == []
    with pytest.raises(InputError):
        backfilled_partitions(table, ["bf-a'--"])


def test_report_states_files_bytes_and_rewrite_cost():
    mib = 2**20
    done = CompactionResult((
        PartitionCompaction("2023-02", FileStats(64, 61, 40 * mib, 1 * mib), FileStats(64, 0, 39 * mib, 0),
                            122, 61, 38 * mib, 12.5),
        PartitionCompaction("2023-01", FileStats(10, 5, 8 * mib, mib // 2), FileStats(10, 0, 8 * mib, 0),
                            15, 5, 7 * mib, 3.0),
    ), 16.0)
    t = done.totals()
    assert (t["files_before"], t["files_after"], t["delete_files_before"], t["delete_files_after"]) == (140, 74, 66, 0)
    assert done.lines() == [
        "compacted 2 partition(s) in 16.0 s",
        "  files 140 -> 74 (delete files 66 -> 0)",
        "  bytes 49.50 MiB -> 47.00 MiB; rewritten 137 data files, 45.00 MiB",
    ]
    dry = CompactionResult((PartitionCompaction("2023-02", FileStats(3, 2, mib, mib), FileStats(3, 2, mib, mib),
                                                0, 0, 0, 0.0),), 0.0, dry_run=True)
    assert dry.lines() == ["dry run: 1 partition(s) hold 5 files (2 delete files, 2.00 MiB); "
                           "compaction would rewrite up to 2.00 MiB"]
