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
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from backfill.config import Config
from backfill.core.commit_tags import run_branch
from backfill.core.entries import Entry, lenient_values
from backfill.core.identifiers import check_backfill_id
from backfill.core.months import is_month
from backfill.core.plan import PartitionTask, Plan, plan_run
from backfill.core.series import Resolution, Staged, as_staged, resolve
from backfill.core.states import StagingStatus
from backfill.errors import ConfigError, InputError
from backfill.iceberg import tables
from backfill.iceberg.array_lengths import find_overlong, overlong_note
from backfill.iceberg.staged_entries import read_entries
from backfill.iceberg.tables import MonthFilter
from backfill.prepared import DeferredNote, PreparedRun, RunRequest

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

log = logging.getLogger(__name__)


def new_run_id() -> str:
    """A run id that sorts by start time and is unique across drivers."""
    return datetime.now(timezone.utc).strftime("run-%Y%m%dT%H%M%S-") + uuid.uuid4().hex[:6]


def check_request(backfill_ids: Sequence[str], backfill_month: MonthFilter) -> tuple[str, ...]:
    """The sorted distinct ids of a request; InputError for a malformed id or month.

    ``backfill_month`` is one month for every id, or a mapping ``{id: month or None}``
    that restricts each id on its own (the keys must be ids of the request).
    """
    if not backfill_ids:
        raise InputError("at least one backfill id is required (--backfill-id)")
    ids = tuple(sorted({check_backfill_id(b) for b in backfill_ids}))
    per_id = backfill_month if isinstance(backfill_month, Mapping) else {}
    stray = sorted(set(per_id) - set(ids))
    if stray:
        raise InputError(f"backfill_month names id(s) {stray} that are not in the request {list(ids)}")
    months = per_id.values() if isinstance(backfill_month, Mapping) else [backfill_month]
    for month in months:
        if month is not None and not is_month(month):
            raise InputError(f"--backfill-month {month!r} is not a month of the form 'YYYY-MM'")
    return ids


def _month_note(backfill_month: MonthFilter) -> str:
    if isinstance(backfill_month, Mapping):
        return " for " + ", ".join(f"{b}: {m or 'every month'}" for b, m in sorted(backfill_month.items()))
    return f" for month {backfill_month}" if backfill_month else ""


def prepare(cfg: Config, catalog: Catalog, backfill_ids: Sequence[str], backfill_month: MonthFilter = None,
            resume_from: str | None = None, run_id: str | None = None, *,
            defer_array_check: bool = False) -> PreparedRun:
    """Validate input and plan the run; raises a BackfillError and writes nothing on bad input.

    ``defer_array_check``: a run about to execute starts the array-length check in the
    background instead of waiting for it (:class:`backfill.prepared.DeferredNote`); a dry
    run, ``plan`` and the API's ``prepare`` wait, so their notes are complete.
    """
    cfg.validated()
    ids = check_request(backfill_ids, backfill_month)
    target = tables.load(catalog, cfg, "target")
    staging = tables.load(catalog, cfg, "staging")
    tables.load(catalog, cfg, "audit")
    read = tables.read_pending(staging, ids, backfill_month)
    if not read.count:
        month_note = _month_note(backfill_month)
        raise InputError(f"backfill id(s) {', '.join(ids)} have no pending rows in "
                         f"{tables.display_name(cfg, 'staging')}{month_note}; nothing to do")
    value_columns = [hc.value_column for hc in cfg.tables.history_columns]
    entries = read_entries(read, value_columns)
    if isinstance(backfill_month, Mapping):
        _check_per_id_marks(staging, read.snapshot_id, ids, entries)
    resolution = resolve_series(staging, read, entries, value_columns)
    _log_superseded(resolution)
    parts = tables.partitions(target, cfg.tables.month_column)
    plan = plan_run(resolution.entries, parts, cfg.tables.window, cfg.run.order, resume_from)
    if not plan.tasks and not plan.skipped_by_resume and not resolution.superseded:
        reasons = "; ".join(f"acct={r.entry.acct} month={r.entry.month}: {r.reason}" for r in plan.rejected[:5])
        raise InputError(f"no pending entry of {', '.join(ids)} touches an existing partition of "
                         f"{tables.display_name(cfg, 'target')}; nothing was written ({reasons})")
    branch = run_branch(ids) if cfg.run.write_audit_publish else None
    committed = tables.committed_digests(target, tables.ref_or_main(target, branch))
    _check_resumed(plan, committed, resume_from)
    already = {t.partition: committed[(t.partition, t.digest)] for t in plan.tasks
               if (t.partition, t.digest) in committed}
    later: DeferredNote | None = None
    if cfg.run.check_array_lengths:
        todo = [t for t in plan.tasks if t.partition not in already]
        if defer_array_check:
            later = DeferredNote(lambda: array_length_note(target, cfg, todo), "array length check")
        elif note := array_length_note(target, cfg, todo):
            plan = dataclasses.replace(plan, notes=(*plan.notes, note))
    return PreparedRun(cfg, ids, run_id or new_run_id(), plan, read.snapshot_id, already, resolution, branch,
                       RunRequest(backfill_month, resume_from), later)


def resolve_series(staging: Table, read: tables.StagingRead, entries: Sequence[Entry],
                   value_columns: Sequence[str]) -> Resolution:
    """The series rule over the run's entries and every row staged for the same cells.

    The competing rows are read from the same pinned staging snapshot as the run's own,
    so the verdict and the entries agree; rows staged after it are settled by their own
    run, which sees this run's rows as earlier ones.
    """
    others = [Staged(r["backfill_id"], r["acct"], r["backfill_month"], r.get("created_at"),
                     StagingStatus(r["status"]), lenient_values(r, value_columns))
              for r in tables.read_competing(staging, {e.month for e in entries}, read.snapshot_id,
                                             {e.acct for e in entries}, exclude=read.table)]
    claims = Counter((e.acct, e.month) for e in entries)
    claims.update((r.acct, r.month) for r in others)
    contested = [e for e in entries if claims[(e.acct, e.month)] > 1]
    if not contested:  # the rule settles cells two rows claim; alone, an entry keeps every cell
        return Resolution(tuple(entries), (), ())
    created = _created_at(read, {(e.backfill_id, e.acct, e.month) for e in contested})
    res = resolve([as_staged(e, created.get((e.backfill_id, e.acct, e.month))) for e in contested], others)
    alone = [e for e in entries if claims[(e.acct, e.month)] == 1]
    return dataclasses.replace(res, entries=tuple(sorted((*alone, *res.entries), key=Entry.sort_key)))


def _created_at(read: tables.StagingRead, keys: set[tuple[str, int, str]]) -> dict[tuple[str, int, str], datetime]:
    """``created_at`` of the read's rows with ``keys`` (timestamps are slow to convert: only these)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if read.table is None:
        return {}
    accounts = pa.array(sorted({a for _, a, _ in keys}), read.table.schema.field("acct").type)
    rows = read.table.filter(pc.is_in(read.table.column("acct"), value_set=accounts))
    cols = (rows.column(c).to_pylist() for c in ("backfill_id", "acct", "backfill_month", "created_at"))
    return {(b, a, m): at for b, a, m, at in zip(*cols, strict=True) if (b, a, m) in keys}


def _log_superseded(resolution: Resolution) -> None:
    if resolution.superseded:
        log.info("%d entr(ies) of this run are superseded by later-staged rows and are not written",
                 len(resolution.superseded))
    if resolution.displaced:
        log.info("%d applied entr(ies) of earlier backfills are replaced by this run", len(resolution.displaced))


def _check_per_id_marks(staging: Table, snapshot_id: int | None, ids: Sequence[str],
                        entries: Sequence[Entry]) -> None:
    """Refuse a per-id month filter that would let the run mark rows it does not apply.

    The staging update after a run matches the pending rows of all the run's ids in each
    applied month. With one filter for every id those are exactly the run's entries; with
    a filter per id, an id may have pending rows in a month another id brought in, and
    they would be marked applied without being written. Found here, before any write.
    """
    planned = {(e.backfill_id, e.acct, e.month) for e in entries}
    extra = tables.pending_keys(staging, ids, {e.month for e in entries}, snapshot_id) - planned
    if extra:
        pairs = sorted({f"{b} {m}" for b, _, m in extra})
        raise InputError(
            f"pending rows of {', '.join(pairs)} lie outside their id's backfill_month but in a month "
            "another id of this run applies: the run's staging update would mark them applied without "
            "writing them. Run those backfills separately, or give them the same backfill_month; "
            "nothing was written")


def _check_resumed(plan: Plan, committed: Mapping[tuple[str, str], int], resume_from: str | None) -> None:
    """Refuse ``--resume-from`` when a partition it skips lacks its commit for these entries.

    A skipped partition counts as done only if the table holds its commit for exactly
    these entries (same partition, same digest); otherwise the run would finish, mark the
    entries applied, and leave those partitions without the values. Nothing is written.
    """
    lacking = [t.partition for t in plan.skipped_tasks if (t.partition, t.digest) not in committed]
    if not lacking:
        return
    shown = ", ".join(sorted(lacking)[:12]) + (", ..." if len(lacking) > 12 else "")
    raise ConfigError(
        f"--resume-from {resume_from} would skip {len(lacking)} partition(s) that hold no commit of these "
        f"entries: {shown}. Rerun without --resume-from (partitions already committed are found and not "
        "redone) or with an earlier month; nothing was written")


def array_length_note(target: Table, cfg: Config, tasks: Sequence[PartitionTask]) -> str | None:
    """A note naming target arrays already longer than the window in the rows ``tasks`` touch, if any."""
    found, skipped = find_overlong(target, cfg, tasks)
    note = overlong_note(found, cfg.tables.window, "in rows this run will rewrite") or skipped
    if note:
        log.warning(note)
    return note
