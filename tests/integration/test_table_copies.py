"""Two tables that share an Iceberg table UUID (one registered from the other's metadata,
as a clone, a restore or the benchmark's copies do) never share checkpoints: a run on the
copy writes its entries even though the same id already ran on the original.

Found by the whole-process benchmark: the copy's run took every partition as "already
committed" (the original's checkpoint, trusted as a commit since expired from history),
wrote nothing and marked its entries applied."""

from __future__ import annotations

import pytest

from backfill import run_backfill
from backfill.iceberg import tables
from backfill.ops.setup import stage_rows
from tests.integration.helpers import diff_tables, make_config, pyiceberg_catalog, read_target
from tests.integration.runner_env import expected_table, stage_wide_backfill

pytestmark = [pytest.mark.spark, pytest.mark.ray, pytest.mark.slow]

STAGED_KEYS = ("backfill_id", "acct", "backfill_month", "balance", "payment", "credit_limit")


def test_a_copy_with_the_same_table_uuid_gets_its_own_run(ray_instance, catalog_service):
    cfg = make_config(catalog_service, "uuid_original", max_parallel=2)
    catalog = pyiceberg_catalog(cfg)
    before, staged = stage_wide_backfill(catalog, cfg, "bf-copy", months=4, seed=61)
    metadata_before = tables.load(catalog, cfg, "target").metadata_location
    first = run_backfill(cfg, ["bf-copy"])
    assert first.succeeded, first.summary_lines()

    copy = make_config(catalog_service, "uuid_copy", max_parallel=2)
    catalog.create_namespace("uuid_copy")
    catalog.register_table(tables.identifier(copy, "target"), metadata_before)
    tables.create_staging(catalog, copy)
    tables.create_audit(catalog, copy)
    assert tables.load(catalog, copy, "target").metadata.table_uuid == \
        tables.load(catalog, cfg, "target").metadata.table_uuid
    stage_rows(catalog, copy, [{k: r[k] for k in STAGED_KEYS} for r in staged])

    second = run_backfill(copy, ["bf-copy"])
    assert second.succeeded, second.summary_lines()
    assert {o.status for o in second.outcomes} == {"committed"}, [(o.partition, o.status) for o in second.outcomes]
    actual, expected = read_target(catalog, copy), expected_table(copy, before, staged)
    assert actual == expected, diff_tables(actual, expected)
