"""``generate-sql`` and ``--method sql``: one backfill as a reviewable Spark SQL script.

Why a script: some users must review (or have a DBA run) every statement that touches
a production table. The script holds exactly the statements the merge method runs,
built by :mod:`backfill.sql.merge` from the validated plan: one MERGE per planned
partition reading the staging snapshot the input was validated at, then the staging
status updates. With write-audit-publish (the default) the MERGEs commit to the run's
branch, which one ``fast_forward`` call then publishes to main, so a reader of main sees
the whole backfill or none of it, as with the merge method. Every identifier and literal in it went through
:mod:`backfill.core.identifiers`; comments are built from validated values only and never
contain ';' so that line-oriented SQL clients split statements correctly.

``backfill.ops.sql_method`` executes the same statements in order in one Spark session
on one Ray actor (``--method sql``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from backfill.core.identifiers import check_identifier, quote_identifier, string_literal
from backfill.core.names import ICEBERG_EXTENSIONS, MAIN_BRANCH
from backfill.core.plan import PartitionTask
from backfill.core.states import StagingStatus
from backfill.prepared import PreparedRun
from backfill.sql.merge import (
    STATUS_ROWS_PER_STATEMENT,
    entries_source_sql,
    mark_staging_sql,
    merge_sql,
    set_status_sql,
    staging_source_sql,
    target_table,
)


class Step(str, Enum):
    """What a script statement does: the SQL method runs each kind at its own point."""

    BRANCH = "branch"
    MERGE = "merge"
    PUBLISH = "publish"
    DROP_BRANCH = "drop-branch"
    STAGING = "staging"


@dataclass(frozen=True)
class ScriptItem:
    """One statement of the script, its comment, and (for a MERGE) the partition it writes."""

    note: str
    statement: str
    step: Step
    task: PartitionTask | None = None


def _comment(text: str) -> str:
    """One SQL comment line per text line; ';' is replaced so clients do not split on it."""
    return "\n".join(f"-- {line}".rstrip() for line in text.replace(";", ",").splitlines())


def script_items(prepared: PreparedRun) -> list[ScriptItem]:
    """The statements in execution order: (branch), partition MERGEs, (publish, drop
    branch), then staging updates.

    Partitions whose exact work is already committed are left out (and counted as done
    for the staging update), as the merge method does. The branch statements stay even
    then: partitions committed on the branch by an earlier, stopped run still need it
    published (the publish of a branch main already holds changes nothing).
    """
    cfg, plan = prepared.cfg, prepared.plan
    merges = _merge_items(prepared)
    in_script = set(prepared.already_committed) | {i.task.partition for i in merges if i.task}
    items = _branch_items(prepared, merges) if prepared.branch and plan.tasks else merges
    rejected, done = plan.rejected_months(), plan.months_done(in_script)
    items += _superseded_items(prepared)
    ids, snap = list(prepared.backfill_ids), prepared.staging_snapshot_id
    if done:
        items.append(ScriptItem(f"staging: mark pending entries of {len(done)} month(s) applied",
                                mark_staging_sql(cfg, ids, done, snap, StagingStatus.APPLIED), Step.STAGING))
    for month in sorted(rejected):
        items.append(ScriptItem(f"staging: reject entries of {month}: {rejected[month]}",
                                mark_staging_sql(cfg, ids, [month], snap, StagingStatus.REJECTED, rejected[month]),
                                Step.STAGING))
    return items


def _merge_items(prepared: PreparedRun) -> list[ScriptItem]:
    """One MERGE per partition not already committed, into the run's branch if it has one."""
    cfg, ids, snap = prepared.cfg, list(prepared.backfill_ids), prepared.staging_snapshot_id
    series_changed = prepared.resolution.rewrites_staged_rows
    items: list[ScriptItem] = []
    for task in prepared.plan.tasks:
        if task.partition in prepared.already_committed:
            continue
        # the series rule changed what the run writes: its entries, not staging, are the source
        # the staging source is narrowed to the task's months: pending rows of other months
        # (left out by --backfill-month) are not the run's and must not be written
        source = (entries_source_sql(cfg, task.partition, task.entries) if series_changed
                  else staging_source_sql(cfg, task.partition, ids, snap, months=task.months))
        note = (f"partition {task.partition}: {len(task.entries)} entries, {task.accounts} accounts, "
                f"months {task.first_month}..{task.months[-1]}")
        items.append(ScriptItem(note, merge_sql(cfg, task.partition, source, branch=prepared.branch),
                                Step.MERGE, task))
    return items


def _branch_items(prepared: PreparedRun, merges: list[ScriptItem]) -> list[ScriptItem]:
    """The MERGEs between creating the run's branch and publishing it to main in one step.

    ``fast_forward`` refuses when main is no longer an ancestor of the branch (another
    writer moved it): main is then untouched, and rerunning the backfill plans again.
    """
    cfg, branch = prepared.cfg, check_identifier(prepared.branch or "", "branch")
    target = target_table(cfg)
    catalog, namespace, table = cfg.table_parts("target")
    name = f"'{check_identifier(namespace, 'namespace')}.{check_identifier(table, 'table')}'"
    return [
        ScriptItem(f"write-audit-publish: the MERGEs commit to branch {branch}, main is untouched until publish",
                   f"ALTER TABLE {target} CREATE BRANCH IF NOT EXISTS {quote_identifier(branch)}", Step.BRANCH),
        *merges,
        ScriptItem(f"publish: main moves to the head of branch {branch} in one step",
                   f"CALL {quote_identifier(catalog)}.system.fast_forward(table => {name}, "
                   f"branch => {string_literal(MAIN_BRANCH)}, to => {string_literal(branch)})", Step.PUBLISH),
        ScriptItem(f"drop branch {branch} (its snapshots are now main's)",
                   f"ALTER TABLE {target} DROP BRANCH IF EXISTS {quote_identifier(branch)}", Step.DROP_BRANCH),
    ]


def _superseded_items(prepared: PreparedRun) -> list[ScriptItem]:
    """Staging updates for the entries a later-staged row supersedes (before 'applied')."""
    res, step, items = prepared.resolution, STATUS_ROWS_PER_STATEMENT, []
    for rows, old, what in ((res.superseded, StagingStatus.PENDING, "superseded entries of this run"),
                            (res.displaced, StagingStatus.APPLIED, "earlier applied entries this run replaces")):
        keyed = [(r.backfill_id, r.acct, r.month, r.reason()) for r in rows]
        for i in range(0, len(keyed), step):
            items.append(ScriptItem(f"staging: mark {len(keyed[i:i + step])} {what} superseded",
                                    set_status_sql(prepared.cfg, keyed[i:i + step], old, StagingStatus.SUPERSEDED),
                                    Step.STAGING))
    return items


def build_statements(prepared: PreparedRun) -> list[str]:
    """The statements of the script, without comments or trailing ';'."""
    return [item.statement for item in script_items(prepared)]


def header(prepared: PreparedRun) -> str:
    cfg, plan = prepared.cfg, prepared.plan
    parts = [t.partition for t in plan.tasks if t.partition not in prepared.already_committed]
    lines = [
        "iceberg-backfill generated script: review, then run in spark-sql",
        f"needs spark.sql.extensions={ICEBERG_EXTENSIONS}",
        f"and the Iceberg catalog {cfg.catalog.name} configured as in the backfill config",
        f"backfill id(s): {', '.join(prepared.backfill_ids)}",
        f"plan id: {prepared.run_id}",
        f"target: {'.'.join(cfg.table_parts('target'))}   staging: {'.'.join(cfg.table_parts('staging'))}",
        f"window: {cfg.tables.window} months",
        f"staging validated at snapshot {prepared.staging_snapshot_id} (the MERGEs read that snapshot)",
        f"entries: {len(plan.entries)}, rejected: {len(plan.rejected)}, "
        f"partitions: {len(parts)}" + (f" ({min(parts)}..{max(parts)})" if parts else ""),
    ]
    if prepared.already_committed:
        lines.append("already committed, left out: " + ", ".join(sorted(prepared.already_committed)))
    if plan.skipped_by_resume:
        lines.append("skipped by --resume-from: " + ", ".join(plan.skipped_by_resume))
    lines += list(plan.notes)
    lines.append("statements are idempotent: rerunning the script after a failure is safe")
    return _comment("\n".join(lines))


def render_script(prepared: PreparedRun) -> str:
    """The whole script: header comment, then each statement with its comment, ';'-terminated."""
    body = [f"{_comment(item.note)}\n{item.statement}" for item in script_items(prepared)]
    return header(prepared) + "\n\n" + ";\n\n".join(body) + ";\n"
