"""``generate-sql`` and ``--method sql``: one backfill as a reviewable Spark SQL script.

Why a script: some users must review (or have a DBA run) every statement that touches
a production table. The script holds exactly the statements the merge method runs,
built by :mod:`backfill.sql.merge` from the validated plan: one MERGE per planned
partition reading the staging snapshot the input was validated at, then the staging
status updates. Every identifier and literal in it went through
:mod:`backfill.core.identifiers`; comments are built from validated values only and never
contain ';' so that line-oriented SQL clients split statements correctly.

``backfill.ops.sql_method`` executes the same statements in order in one Spark session
on one Ray actor (``--method sql``).
"""

from __future__ import annotations

from backfill.core.names import ICEBERG_EXTENSIONS
from backfill.core.states import StagingStatus
from backfill.prepared import PreparedRun
from backfill.sql.merge import (
    STATUS_ROWS_PER_STATEMENT,
    entries_source_sql,
    mark_staging_sql,
    merge_sql,
    set_status_sql,
    staging_source_sql,
)


def _comment(text: str) -> str:
    """One SQL comment line per text line; ';' is replaced so clients do not split on it."""
    return "\n".join(f"-- {line}".rstrip() for line in text.replace(";", ",").splitlines())


def script_items(prepared: PreparedRun) -> list[tuple[str, str]]:
    """(comment, statement) pairs in execution order: partition MERGEs, then staging updates.

    Partitions whose exact work is already committed are left out (and counted as done
    for the staging update), as the merge method does.
    """
    cfg, plan = prepared.cfg, prepared.plan
    ids = list(prepared.backfill_ids)
    snap = prepared.staging_snapshot_id
    items: list[tuple[str, str]] = []
    in_script: set[str] = set(prepared.already_committed)
    res = prepared.resolution
    series_changed = bool(res.masked or res.superseded)
    for task in plan.tasks:
        if task.partition in prepared.already_committed:
            continue
        # the series rule changed what the run writes: its entries, not staging, are the source
        source = (entries_source_sql(cfg, task.partition, task.entries) if series_changed
                  else staging_source_sql(cfg, task.partition, ids, snap))
        note = (f"partition {task.partition}: {len(task.entries)} entries, {task.accounts} accounts, "
                f"months {task.first_month}..{task.months[-1]}")
        items.append((note, merge_sql(cfg, task.partition, source)))
        in_script.add(task.partition)
    rejected = {r.entry.month: r.reason for r in plan.rejected}
    months = sorted({e.month for e in plan.entries} - set(rejected))
    done = [m for m in months
            if all(p in in_script for e in plan.entries if e.month == m for p in plan.partitions_of(e))]
    items += _superseded_items(prepared)
    if done:
        items.append((f"staging: mark pending entries of {len(done)} month(s) applied",
                      mark_staging_sql(cfg, ids, done, snap, StagingStatus.APPLIED)))
    for month in sorted(rejected):
        items.append((f"staging: reject entries of {month}: {rejected[month]}",
                      mark_staging_sql(cfg, ids, [month], snap, StagingStatus.REJECTED, rejected[month])))
    return items


def _superseded_items(prepared: PreparedRun) -> list[tuple[str, str]]:
    """Staging updates for the entries a later-staged row supersedes (before 'applied')."""
    res, step, items = prepared.resolution, STATUS_ROWS_PER_STATEMENT, []
    for rows, old, what in ((res.superseded, StagingStatus.PENDING, "superseded entries of this run"),
                            (res.displaced, StagingStatus.APPLIED, "earlier applied entries this run replaces")):
        keyed = [(r.backfill_id, r.acct, r.month, r.reason()) for r in rows]
        for i in range(0, len(keyed), step):
            items.append((f"staging: mark {len(keyed[i:i + step])} {what} superseded",
                          set_status_sql(prepared.cfg, keyed[i:i + step], old, StagingStatus.SUPERSEDED)))
    return items


def build_statements(prepared: PreparedRun) -> list[str]:
    """The statements of the script, without comments or trailing ';'."""
    return [stmt for _, stmt in script_items(prepared)]


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
    body = [f"{_comment(note)}\n{stmt}" for note, stmt in script_items(prepared)]
    return header(prepared) + "\n\n" + ";\n\n".join(body) + ";\n"
