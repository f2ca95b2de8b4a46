"""``rollback``: put back the values a backfill replaced, except where something newer holds.

Order, and why:
1. A run not yet published lives on its branch only: dropping the branch is the whole
   rollback of it (main never saw it).
2. For a published backfill, each of its commits on main is compared with its parent
   (:mod:`backfill.core.rollback`): the cells it changed, what they held before and what
   it wrote. A cell a later backfill or another writer has written since keeps that
   value and is listed.
3. The restored arrays are written on a rollback branch and published in one step, so
   readers see the whole rollback or none of it; if main moved meanwhile, the cells are
   judged again on the new main. Then the id's staging rows become ``rolled_back``, rows
   of other ids that were superseded in the same cells become pending again (an older
   correction may now win; its rerun decides), and the audit table gets a row per
   partition. A rerun finds the cells already restored and only finishes the bookkeeping.

The cells are judged on the driver through pyiceberg, reading each commit's partitions
twice; the restore itself is a Spark MERGE of the changed rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from actors.partition_actor import one_session, run_statement
from backfill.config import Config
from backfill.core.commit_tags import rollback_branch, run_branch, tagged_partitions
from backfill.core.identifiers import check_backfill_id, quote_table
from backfill.core.months import parse_month
from backfill.core.names import MAIN_BRANCH
from backfill.core.results import PartitionOutcome
from backfill.core.rollback import Cell, Change, Verdict, changes_of, judge, merge_changes, restored_arrays
from backfill.core.series import Staged
from backfill.core.states import AttemptStatus, PublishState, StagingStatus
from backfill.errors import InputError, RunFailed
from backfill.iceberg import branches, tables
from backfill.iceberg.audit import AuditWriter
from backfill.ops.verify import backfill_commits, read_competing_rows, rows_at
from backfill.sql.merge import restore_sql, revive_superseded_sql, rollback_staging_sql

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

    from cluster.catalog import ResolvedCatalog

log = logging.getLogger(__name__)

#: Rows per restore MERGE (each row carries its whole arrays as literals).
RESTORE_ROWS_PER_STATEMENT = 1_000
#: Rounds of judge-write-publish when main keeps moving under the rollback.
MAX_ROUNDS = 3
_LISTED = 20


@dataclass(frozen=True)
class RollbackResult:
    """What a rollback did (or, with ``dry_run``, would do)."""

    backfill_ids: tuple[str, ...]
    dry_run: bool
    dropped_branch: str | None
    commits: int
    restored_cells: int
    restored_rows: int
    kept: dict[Cell, str] = field(default_factory=dict)
    already_restored: int = 0
    snapshot_id: int | None = None
    #: other ids whose superseded rows shared a cell with the rolled-back ones: pending
    #: again, so their rerun writes them where they now win
    revived: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        verb = "would" if self.dry_run else "did"
        out = [f"rollback {', '.join(self.backfill_ids)}" + (" (dry run: nothing written)" if self.dry_run else "")]
        if self.dropped_branch:
            out.append(f"  unpublished branch {self.dropped_branch}: {verb} drop it (main never saw it)")
        out.append(f"  {self.commits} commit(s) on main; cells {verb} restore: {self.restored_cells} "
                   f"in {self.restored_rows} row(s); already restored {self.already_restored}; "
                   f"kept {len(self.kept)}")
        for (partition, acct, col, k), why in sorted(self.kept.items())[:_LISTED]:
            out.append(f"  kept {partition} acct={acct} {col}[{k}]: {why}")
        if len(self.kept) > _LISTED:
            out.append(f"  ... and {len(self.kept) - _LISTED} more kept")
        if self.snapshot_id is not None:
            out.append(f"  published as snapshot {self.snapshot_id}")
        if self.revived:
            out.append(f"  superseded rows of {', '.join(self.revived)} {'would be' if self.dry_run else 'are'} "
                       "pending again: rerun those backfills, an older correction may win its cells back")
        return out


def rollback(cfg: Config, catalog: Catalog, resolved_catalog: ResolvedCatalog, backfill_ids: Sequence[str],
             dry_run: bool = False, progress: Callable[[str], None] | None = None) -> RollbackResult:
    """Roll back ``backfill_ids`` (see the module docstring); safe to rerun."""
    say = progress or log.info
    ids = tuple(sorted({check_backfill_id(b) for b in backfill_ids}))
    target = tables.load(catalog, cfg, "target")
    unpublished = _unpublished_branch(target, ids)
    commits = backfill_commits(target, ids, MAIN_BRANCH)
    if not commits and unpublished is None:
        raise InputError(f"backfill id(s) {', '.join(ids)} have no commit on main and no unpublished branch: "
                         "nothing to roll back")
    verdict, rows = _judge(cfg, catalog, ids) if commits else (Verdict({}, {}, 0), {})
    revived = _revived(cfg, catalog, ids)
    result = RollbackResult(ids, dry_run, unpublished, len(commits), len(verdict.restore), len(rows),
                            verdict.kept, verdict.already, revived=revived)
    if dry_run:
        return result
    if unpublished is not None:
        branches.drop_branch(target, unpublished, cfg.run.retry_policy)
        say(f"dropped the unpublished branch {unpublished}")
    staging = (quote_table(cfg.table_parts("staging")),)
    with one_session(cfg, resolved_catalog, f"backfill-rollback-{ids[0]}") as actor:
        snap, verdict, rows = _write(cfg, catalog, ids, actor, verdict, rows, say)
        run_statement(actor, revive_superseded_sql(cfg, ids), staging)
        run_statement(actor, rollback_staging_sql(cfg, ids, "rolled back"), staging)
    _audit(cfg, catalog, ids, rows, snap)
    return RollbackResult(ids, False, unpublished, len(commits), len(verdict.restore), len(rows), verdict.kept,
                          verdict.already, snap, revived)


def _revived(cfg: Config, catalog: Catalog, ids: Sequence[str]) -> tuple[str, ...]:
    """Other ids with superseded rows in the cells of ``ids`` (see :func:`revive_superseded_sql`)."""
    rows = read_competing_rows(tables.load(catalog, cfg, "staging"), cfg, ids, None)
    keys = {(r.acct, r.month) for r in rows if r.backfill_id in ids}
    return tuple(sorted({r.backfill_id for r in rows if r.backfill_id not in ids
                         and r.status == StagingStatus.SUPERSEDED and (r.acct, r.month) in keys}))


def _unpublished_branch(target: Table, ids: Sequence[str]) -> str | None:
    """The run branch of ``ids`` if it holds commits main does not."""
    branch = run_branch(ids)
    head = target.snapshot_by_name(branch)
    if head is None:
        return None
    on_main = {s.snapshot_id for s in tables.lineage(target, MAIN_BRANCH)}
    return None if head.snapshot_id in on_main else branch


Rows = dict[tuple[str, int], dict[str, Any]]


def _judge(cfg: Config, catalog: Catalog, ids: Sequence[str]) -> tuple[Verdict, dict[tuple[str, int], Any]]:
    """The verdict on main as it is now, and the rows to rewrite."""
    target = tables.load(catalog, cfg, "target")
    history = [hc.array_column for hc in cfg.tables.history_columns]
    changes: dict[Cell, Change] = {}
    for commit in backfill_commits(target, ids, MAIN_BRANCH):
        for partition in tagged_partitions(dict(commit.summary.additional_properties) if commit.summary else {}):
            before = rows_at(target, commit.parent_snapshot_id, cfg, partition, None)
            after = rows_at(target, commit.snapshot_id, cfg, partition, None)
            changes = merge_changes(changes, changes_of(before, after, partition, history))
    current: Rows = {}
    head = target.current_snapshot()
    for partition in sorted({c[0] for c in changes}):
        accounts = sorted({c[1] for c in changes if c[0] == partition})
        for acct, row in rows_at(target, head.snapshot_id if head else None, cfg, partition, accounts).items():
            current[(partition, acct)] = row
    staged = read_competing_rows(tables.load(catalog, cfg, "staging"), cfg, ids, None)
    verdict = judge(changes, current, _later_cells(changes, staged, ids, history))
    return verdict, restored_arrays(verdict, current)


def _later_cells(changes: Mapping[Cell, Change], staged: Sequence[Staged], ids: Sequence[str],
                 history: Sequence[str]) -> set[Cell]:
    """Changed cells that a row of another backfill, staged after this one's and already
    written (applied or superseded), holds."""
    by_key: dict[tuple[int, int], list[Staged]] = {}
    for r in staged:
        by_key.setdefault((r.acct, parse_month(r.month)), []).append(r)
    out = set()
    for partition, acct, col, k in changes:
        rows = by_key.get((acct, parse_month(partition) - k), [])
        mine = [r.order() for r in rows if r.backfill_id in ids]
        c = history.index(col)
        if mine and any(r.backfill_id not in ids and r.status != StagingStatus.PENDING and r.values[c] is not None
                        and r.order() > max(mine) for r in rows):
            out.add((partition, acct, col, k))
    return out


def _write(cfg: Config, catalog: Catalog, ids: Sequence[str], actor: Any, verdict: Verdict,
           rows: dict[tuple[str, int], Any], say: Callable[[str], None]
           ) -> tuple[int | None, Verdict, dict[tuple[str, int], Any]]:
    """Restore ``rows`` on the rollback branch and publish it; judged again if main moved."""
    branch = rollback_branch(ids)
    for _ in range(MAX_ROUNDS):
        if not rows:
            return None, verdict, rows
        target = tables.load(catalog, cfg, "target")
        branches.drop_branch(target, branch)  # a branch left by an interrupted rollback is stale
        branches.ensure_branch(target, branch)
        items = sorted(rows.items())
        for i in range(0, len(items), RESTORE_ROWS_PER_STATEMENT):
            chunk = dict(items[i:i + RESTORE_ROWS_PER_STATEMENT])
            run_statement(actor, restore_sql(cfg, chunk, branch), (quote_table(cfg.table_parts("target")),))
        state = branches.publish(target, branch)
        if state != PublishState.MAIN_MOVED:
            head = tables.load(catalog, cfg, "target").current_snapshot()
            branches.drop_branch(target, branch)
            say(f"restored {len(verdict.restore)} cell(s) in {len(rows)} row(s); main published")
            return (head.snapshot_id if head else None), verdict, rows
        say("main moved during the rollback: judging the cells again on the new main")
        verdict, rows = _judge(cfg, catalog, ids)
    raise RunFailed(f"main kept moving during the rollback of {', '.join(ids)}; nothing was published, rerun it")


def _audit(cfg: Config, catalog: Catalog, ids: Sequence[str], rows: Mapping[tuple[str, int], Any],
           snapshot_id: int | None) -> None:
    """One 'rolled_back' audit row per partition and id."""
    now = datetime.now(timezone.utc)
    run_id = now.strftime("rollback-%Y%m%dT%H%M%S")
    per_partition: dict[str, int] = {}
    for partition, _ in rows:
        per_partition[partition] = per_partition.get(partition, 0) + 1
    outcomes = [PartitionOutcome(partition=p, status=AttemptStatus.ROLLED_BACK, attempt=1, entries=0,
                                 started_at=now, completed_at=now, rows_updated=n, snapshot_id=snapshot_id)
                for p, n in sorted(per_partition.items())]
    if outcomes:
        writer = AuditWriter(tables.load(catalog, cfg, "audit"), cfg.run.retry_policy)
        writer.append([o.audit_row(b, run_id) for o in outcomes for b in ids])
