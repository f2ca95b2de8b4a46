"""Merge-on-read backfill (the default table layout), then `compact`, on the real stack.

The backfill must write delete files (that is what makes it cheap); compaction must fold
them away without changing one cell, and report what it cost.
"""

from __future__ import annotations

import pytest

from backfill import cli, run_backfill
from backfill.iceberg.tables import identifier
from backfill.ops.compact import compact, file_stats
from backfill.ops.sample_data import SampleSpec
from backfill.ops.setup import setup_tables
from cluster.catalog import resolve_catalog
from tests.integration.helpers import diff_tables, make_config, pyiceberg_catalog, read_rows, read_target
from tests.integration.runner_env import expected_table, write_toml

pytestmark = [pytest.mark.spark, pytest.mark.ray, pytest.mark.slow]

BID = "bf-compact"


@pytest.fixture(scope="module")
def backfilled(ray_instance, catalog_service):
    cfg = make_config(catalog_service, "compactns", max_parallel=2)
    assert cfg.tables.write_mode == "merge-on-read"  # the default layout
    catalog = pyiceberg_catalog(cfg)
    setup_tables(catalog, cfg, SampleSpec(accounts=40, months=5, first_month="2023-01", staged_accounts=12,
                                          backfill_id=BID, seed=23))
    before = read_target(catalog, cfg)
    staged = [r for r in read_rows(catalog, cfg, "staging") if r["backfill_id"] == BID]
    result = run_backfill(cfg, [BID])
    assert result.succeeded, result.summary_lines()
    return cfg, catalog, expected_table(cfg, before, staged)


def test_default_target_is_merge_on_read_and_the_backfill_adds_delete_files(backfilled):
    cfg, catalog, expected = backfilled
    table = catalog.load_table(identifier(cfg, "target"))
    assert table.properties["write.merge.mode"] == "merge-on-read"
    assert table.metadata.format_version == 2
    assert read_target(catalog, cfg) == expected
    stats = [file_stats(table, cfg.tables.month_column, p) for p in ("2023-05", "2023-04", "2023-03")]
    assert all(s.delete_files > 0 for s in stats), stats


def test_compact_dry_run_then_compact_keeps_every_cell(backfilled, tmp_path, capsys):
    cfg, catalog, expected = backfilled
    table = catalog.load_table(identifier(cfg, "target"))
    month = cfg.tables.month_column
    snapshot = table.current_snapshot().snapshot_id
    toml = write_toml(cfg, tmp_path / "c.toml")
    assert cli.main(["compact", "--config", str(toml), "--backfill-id", BID, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("dry run: 5 partition(s) hold ") and "delete files" in out, out
    assert catalog.load_table(identifier(cfg, "target")).current_snapshot().snapshot_id == snapshot

    before = {p: file_stats(table, month, p) for p in ("2023-05", "2023-04", "2023-03", "2023-02", "2023-01")}
    result = compact(cfg, catalog, resolve_catalog(cfg.catalog), sorted(before, reverse=True))
    assert [p.partition for p in result.partitions] == sorted(before, reverse=True)
    for p in result.partitions:
        assert p.before == before[p.partition]
        assert p.after.delete_files == 0, p
        assert p.after.data_files <= p.before.data_files, p
        if p.before.delete_files:
            assert p.rewritten_data_files > 0 and p.rewritten_bytes > 0, p
    t = result.totals()
    assert t["delete_files_before"] > 0 and t["delete_files_after"] == 0
    assert read_target(catalog, cfg) == expected, diff_tables(read_target(catalog, cfg), expected)
    # a second compaction finds nothing left to fold
    again = compact(cfg, catalog, resolve_catalog(cfg.catalog), ["2023-05"])
    assert again.partitions[0].rewritten_data_files == 0
    assert again.partitions[0].after == again.partitions[0].before
