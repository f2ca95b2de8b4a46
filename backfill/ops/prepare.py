"""Validation and planning: everything that can reject a run, done before any write.

Order, and why: the configuration, the three tables, every staged row and the plan are
checked first, so bad input never leaves a half-applied backfill; work whose exact
commit (same partition, same entries digest) is already in the target's snapshot
history is found here and not redone.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from backfill.config import Config
from backfill.core.entries import validate_rows
from backfill.core.identifiers import check_backfill_id
from backfill.core.months import is_month
from backfill.core.plan import PartitionTask, Plan, plan_run
from backfill.errors import InputError
from backfill.iceberg import tables
from backfill.iceberg.array_lengths import find_overlong, overlong_note
from backfill.prepared import PreparedRun

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

log = logging.getLogger(__name__)


def new_run_id() -> str:
    """A run id that sorts by start time and is unique across drivers."""
    return datetime.now(timezone.utc).strftime("run-%Y%m%dT%H%M%S-") + uuid.uuid4().hex[:6]


def check_request(backfill_ids: Sequence[str], backfill_month: str | None) -> tuple[str, ...]:
    """The sorted distinct ids of a request; InputError for a malformed id or month."""
    if not backfill_ids:
        raise InputError("at least one backfill id is required (--backfill-id)")
    if backfill_month is not None and not is_month(backfill_month):
        raise InputError(f"--backfill-month {backfill_month!r} is not a month of the form 'YYYY-MM'")
    return tuple(sorted({check_backfill_id(b) for b in backfill_ids}))


def prepare(cfg: Config, catalog: Catalog, backfill_ids: Sequence[str], backfill_month: str | None = None,
            resume_from: str | None = None, run_id: str | None = None) -> PreparedRun:
    """Validate input and plan the run; raises a BackfillError and writes nothing on bad input."""
    cfg.validated()
    ids = check_request(backfill_ids, backfill_month)
    target = tables.load(catalog, cfg, "target")
    staging = tables.load(catalog, cfg, "staging")
    tables.load(catalog, cfg, "audit")
    read = tables.read_pending(staging, ids, backfill_month)
    if not read.rows:
        month_note = f" for month {backfill_month}" if backfill_month else ""
        raise InputError(f"backfill id(s) {', '.join(ids)} have no pending rows in "
                         f"{tables.display_name(cfg, 'staging')}{month_note}; nothing to do")
    entries = validate_rows(read.rows, [hc.value_column for hc in cfg.tables.history_columns])
    parts = tables.partitions(target, cfg.tables.month_column)
    plan = plan_run(entries, parts, cfg.tables.window, cfg.run.order, resume_from)
    if not plan.tasks and not plan.skipped_by_resume:
        reasons = "; ".join(f"acct={r.entry.acct} month={r.entry.month}: {r.reason}" for r in plan.rejected[:5])
        raise InputError(f"no pending entry of {', '.join(ids)} touches an existing partition of "
                         f"{tables.display_name(cfg, 'target')}; nothing was written ({reasons})")
    committed = tables.committed_digests(target)
    already = {t.partition: committed[(t.partition, t.digest)] for t in plan.tasks
               if (t.partition, t.digest) in committed}
    if cfg.run.check_array_lengths:
        plan = _with_array_length_notes(plan, target, cfg, [t for t in plan.tasks if t.partition not in already])
    return PreparedRun(cfg, ids, run_id or new_run_id(), plan, read.snapshot_id, already)


def _with_array_length_notes(plan: Plan, target: Table, cfg: Config, tasks: Sequence[PartitionTask]) -> Plan:
    """``plan`` plus a note naming target arrays already longer than the window, if any."""
    found, skipped = find_overlong(target, cfg, tasks)
    note = overlong_note(found, cfg.tables.window, "in rows this run will rewrite") or skipped
    if not note:
        return plan
    log.warning(note)
    return dataclasses.replace(plan, notes=(*plan.notes, note))
