"""``backfill --method sql``: the reviewable script's statements, run in order in one session.

Its MERGE statements run exactly as the script writes them, through the partition
actor's apply path, so each commit carries the same tags and each attempt the same audit
row as with the merge method: ``--report``, ``verify``, ``rollback`` and a later run of
either method see this work. The script's branch statement runs verbatim too. Its
publish and drop statements (``CALL ... fast_forward``, ``DROP BRANCH``) are done
through the catalog API instead, after ``--verify``: there a main that moved meanwhile
is a typed answer (the run is planned again on the new main), not a Spark error to read.
The staging statements run last, verbatim, once main holds the run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from actors.executor import LIVE_SECONDS, poll_progress
from actors.partition_actor import one_session, run_statement
from actors.pool import RunningAttempt
from backfill.core.plan import MergeBatch
from backfill.core.results import PartitionOutcome, RunEnding, RunResult
from backfill.core.states import PublishState
from backfill.errors import BackfillError
from backfill.iceberg import tables
from backfill.iceberg.audit import AuditWriter
from backfill.ops.progress import Reporter, as_reporter, end_live
from backfill.ops.run import RunBook, verify_and_publish, with_replays
from backfill.prepared import PreparedRun
from backfill.sql.script import ScriptItem, Step, script_items

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

    from cluster.catalog import ResolvedCatalog

log = logging.getLogger(__name__)


def run_script(prepared: PreparedRun, resolved_catalog: ResolvedCatalog, catalog: Catalog,
               progress: Reporter | Callable[[str], None] | None = None, verify: bool = False) -> RunResult:
    """Run the script's statements in order in one Spark session on one Ray actor.

    A failed MERGE stops the script before any later statement: what is committed stays
    (on the run's branch, so main is untouched), and rerunning the same command finishes
    the rest, because every statement is idempotent and committed partitions are found
    by their tags. ``verify`` checks the run before it is published, as the merge method does.
    """
    report = as_reporter(progress, log.info)
    try:
        return with_replays(prepared, catalog, report,
                            lambda run: _run_once(run, resolved_catalog, catalog, report, verify))
    finally:
        end_live(report)


def _run_once(prepared: PreparedRun, resolved_catalog: ResolvedCatalog, catalog: Catalog,
              report: Reporter, verify: bool) -> RunResult:
    cfg = prepared.cfg
    items = script_items(prepared)
    book = RunBook(prepared, AuditWriter(tables.load(catalog, cfg, "audit"), cfg.run.retry_policy),
                   None, report, resolved_catalog.secrets())
    to_run = book.start()
    report.line(f"method sql: {len(items)} statement(s) in one Spark session (RayDP, about 15 s to start)")
    # the script puts its writes (branch, MERGEs) first; verify and publish come between
    # them and the rest (publish and drop, done by verify_and_publish, then staging)
    writes = [item for item in items if item.step in (Step.BRANCH, Step.MERGE)]
    name = f"backfill-sql-{prepared.run_id}"
    with one_session(cfg, resolved_catalog, name) as actor:
        for i, item in enumerate(writes, start=1):
            where = f"[statement {i}/{len(items)}] {item.note}"
            if item.step == Step.BRANCH:
                _statement(actor, item, where)
            elif not _merge(actor, name, prepared, item, book):
                return book.result(to_run, RunEnding(), stopped=False)
            report.line(where if item.step == Step.BRANCH else f"{where}: done")
        ending = verify_and_publish(prepared, catalog, report, verify)
        if ending.published == PublishState.MAIN_MOVED or ending.verified is False:
            return book.result(to_run, ending, stopped=False)
        for i, item in enumerate(items[len(writes):], start=len(writes) + 1):
            where = f"[statement {i}/{len(items)}] {item.note}"
            if item.step == Step.STAGING:
                _statement(actor, item, where)
            report.line(where)
    return book.result(to_run, _counted(prepared, ending), stopped=False)


def _merge(actor: object, name: str, prepared: PreparedRun, item: ScriptItem, book: RunBook) -> bool:
    """Run one MERGE statement of the script as tagged, audited attempts under the retry
    policy (an attempt after a failure finds a commit that landed and does not redo it);
    False once it failed for good."""
    import ray

    assert item.task is not None, "a MERGE item names its partition"
    policy = prepared.cfg.run.retry_policy
    batch, attempt = MergeBatch((item.task,)), 1
    while True:
        ref = actor.apply.remote(  # type: ignore[attr-defined]
            batch, prepared.backfill_ids, prepared.run_id, prepared.staging_snapshot_id,
            attempt, prepared.branch, item.statement)
        running = [RunningAttempt(actor, name, batch, attempt, datetime.now(timezone.utc))]
        while not ray.wait([ref], timeout=LIVE_SECONDS)[0]:  # a live line while the MERGE runs
            book.live(poll_progress(running, prepared.run_id))
        outcome: PartitionOutcome = ray.get(ref)[0]
        book.record(outcome)
        if outcome.ok or not policy.should_retry(attempt, outcome.transient):
            return outcome.ok
        time.sleep(policy.delay(attempt))
        attempt += 1


def _statement(actor: object, item: ScriptItem, where: str) -> None:
    try:
        run_statement(actor, item.statement)
    except BackfillError as exc:
        raise type(exc)(f"{where}: {exc}; earlier statements are committed, rerun to finish "
                        "(statements are idempotent)") from None


def _counted(prepared: PreparedRun, ending: RunEnding) -> RunEnding:
    """The ending with the staging counts the script's updates stand for (every MERGE committed)."""
    plan = prepared.plan
    ending.applied = plan.entries_in(plan.months_done(t.partition for t in plan.tasks))
    ending.rejected = plan.entries_in(plan.rejected_months())
    ending.superseded = len(prepared.resolution.superseded)
    return ending
