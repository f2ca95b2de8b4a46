"""``setup``: create the target, staging and audit tables, optionally with sample data.

Runs entirely through pyiceberg, so it is quick and needs no Spark. Sample data is only
written into a target that is still empty, so running ``setup --sample-data`` twice never
duplicates rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from backfill.config import Config
from backfill.core.states import StagingStatus
from backfill.iceberg import tables
from backfill.iceberg.schema import staging_schema, target_schema
from backfill.ops.sample_data import SampleSpec, staging_rows, target_rows

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SetupResult:
    created: tuple[str, ...]
    existing: tuple[str, ...]
    target_rows: int = 0
    staged_rows: int = 0

    def lines(self) -> list[str]:
        out = [f"created {name}" for name in self.created]
        out += [f"exists  {name}" for name in self.existing]
        if self.target_rows or self.staged_rows:
            out.append(f"sample data: {self.target_rows} history rows, {self.staged_rows} staged entries")
        return out


def setup_tables(catalog: Catalog, cfg: Config, sample: SampleSpec | None = None) -> SetupResult:
    """Create missing tables; with ``sample``, fill an empty target and stage entries."""
    created: list[str] = []
    existing: list[str] = []
    handles: dict[str, Table] = {}
    for which, create in (("target", tables.create_target), ("staging", tables.create_staging),
                          ("audit", tables.create_audit)):
        table, new = create(catalog, cfg)
        handles[which] = table
        (created if new else existing).append(tables.display_name(cfg, which))
    # check shapes even for tables that already existed
    target = tables.load(catalog, cfg, "target")
    staging = tables.load(catalog, cfg, "staging")
    n_target = n_staged = 0
    if sample is not None:
        if target.current_snapshot() is None:
            rows = target_rows(cfg, sample)
            rows.sort(key=lambda r: (r[cfg.tables.month_column], r[cfg.tables.account_column]))
            log.info("writing %d sample history rows", len(rows))
            target.append(tables.to_arrow(rows, target_schema(cfg)))
            n_target = len(rows)
        else:
            log.info("target already has data: sample history rows not written again")
        existing_ids = tables.read_pending(staging, [sample.backfill_id]).count
        if not existing_ids:
            now = datetime.now(timezone.utc)
            srows = staging_rows(cfg, sample)
            for r in srows:
                r["created_at"] = now
            staging.append(tables.to_arrow(srows, staging_schema(cfg)))
            n_staged = len(srows)
    return SetupResult(tuple(created), tuple(existing), n_target, n_staged)


def stage_rows(catalog: Catalog, cfg: Config, rows: list[dict[str, Any]]) -> int:
    """Append rows to staging (tests and the Python API); created_at/status defaulted."""
    staging = tables.load(catalog, cfg, "staging")
    now = datetime.now(timezone.utc)
    full = []
    for r in rows:
        r = dict(r)
        r.setdefault("created_at", now)
        r.setdefault("status", StagingStatus.PENDING.value)
        full.append(r)
    staging.append(tables.to_arrow(full, staging_schema(cfg)))
    return len(full)
