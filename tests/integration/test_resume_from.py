"""``--resume-from`` keeps the promise: a partition it skips counts as done only when its
commit for these entries is in the table; otherwise the run is refused, nothing written.

Before the fix a run of an id that never ran, with ``--resume-from 2023-07``, applied the
later partitions only and then marked every entry 'applied' although the partitions
before 2023-07 never received the value (issue 12, case 2).
"""

from __future__ import annotations

import pytest

from backfill import IcebergBackfillProcessor
from backfill.core.states import StagingStatus
from backfill.errors import ConfigError
from backfill.iceberg.tables import identifier
from tests.integration.helpers import make_config, pyiceberg_catalog, read_rows, read_target, run_stopped_after
from tests.integration.runner_env import expected_table, stage_wide_backfill

pytestmark = [pytest.mark.spark, pytest.mark.ray, pytest.mark.slow]


def _statuses(catalog, cfg, backfill_id):
    """Statuses of the id's rows, leaving out those rejected (the sample stages a few
    entries whose window holds no partition: they are rejected whatever happens)."""
    return {r["status"] for r in read_rows(catalog, cfg, "staging")
            if r["backfill_id"] == backfill_id and r["status"] != StagingStatus.REJECTED}


def test_resume_from_is_refused_when_skipped_partitions_lack_their_commit(ray_instance, catalog_service):
    cfg = make_config(catalog_service, "resume_never")
    catalog = pyiceberg_catalog(cfg)
    before, _ = stage_wide_backfill(catalog, cfg, "bf-never", months=14)
    target_snaps = len(catalog.load_table(identifier(cfg, "target")).metadata.snapshots)
    with pytest.raises(ConfigError, match=r"--resume-from 2023-07 would skip 6 partition\(s\) .*2023-01"):
        IcebergBackfillProcessor(cfg).run(["bf-never"], resume_from="2023-07")
    assert read_target(catalog, cfg) == before
    assert len(catalog.load_table(identifier(cfg, "target")).metadata.snapshots) == target_snaps
    assert _statuses(catalog, cfg, "bf-never") == {StagingStatus.PENDING}


def test_resume_from_after_a_stopped_run_skips_only_committed_partitions(ray_instance, catalog_service):
    cfg = make_config(catalog_service, "resume_stop", max_parallel=1, partitions_per_merge=1, order="oldest")
    catalog = pyiceberg_catalog(cfg)
    before, staged = stage_wide_backfill(catalog, cfg, "bf-stop", months=14)
    processor = IcebergBackfillProcessor(cfg)
    first, committed = run_stopped_after(cfg, catalog, processor.resolved_catalog, ["bf-stop"], 3)
    assert first.not_started and committed == ["2023-01", "2023-02", "2023-03"]
    assert _statuses(catalog, cfg, "bf-stop") == {StagingStatus.PENDING}
    second = processor.run(["bf-stop"], resume_from="2023-04")
    assert second.succeeded, second.summary_lines()
    assert second.skipped_by_resume == ("2023-01", "2023-02", "2023-03")
    assert read_target(catalog, cfg) == expected_table(cfg, before, staged)
    assert _statuses(catalog, cfg, "bf-stop") == {StagingStatus.APPLIED}
