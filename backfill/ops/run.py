"""Running a prepared backfill: bookkeeping around the Ray executor.

Order of a run, and why:
1. Java and the Iceberg jar are checked before Ray or any actor starts (fail fast).
2. Attempts a killed driver left 'running' in the checkpoint get their audit rows now,
   so every attempt of every run has one.
3. A 'planned' audit row per partition lets ``status`` show what is left while the run
   goes on; partitions whose exact work is already committed are recorded, not redone.
4. The executor applies the rest on partition actors; each attempt is checkpointed,
   appended to the audit table and reported as soon as it ends.
5. Staging rows move to 'applied' only when every partition covering their month is
   committed; entries whose window holds no partition are 'rejected' with the reason.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from actors import runtime
from actors.checkpoint import PartitionCheckpoint
from actors.executor import RunExecutor
from actors.metrics import RunMetrics
from actors.warm import sized_for_run
from backfill.core.names import MAIN_BRANCH
from backfill.core.plan import PartitionTask, merge_batches
from backfill.core.results import CommitStats, PartitionOutcome, RunEnding, RunningMerge, RunResult
from backfill.core.states import AttemptStatus, CheckpointState, PublishState, StagingStatus
from backfill.errors import RunFailed
from backfill.iceberg import branches, tables
from backfill.iceberg.audit import AuditWriter
from backfill.iceberg.storage import check_writable
from backfill.ops.prepare import prepare
from backfill.ops.progress import EtaClock, LiveStatus, Reporter, as_reporter, end_live
from backfill.ops.stop_signal import StopSignal
from backfill.ops.verify import verify_backfill
from backfill.prepared import PreparedRun
from cluster.jars import iceberg_runtime_jar
from cluster.java import find_java

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

    from cluster.catalog import ResolvedCatalog

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


def execute(prepared: PreparedRun, resolved_catalog: ResolvedCatalog, catalog: Catalog,
            progress: Reporter | Progress | None = None, stop: StopSignal | None = None,
            verify: bool = False) -> RunResult:
    """Run the prepared plan on Ray partition actors; returns the run's result.

    ``progress``: a Reporter (event lines and live status), or a callable taking plain
    lines; default the log. ``stop``: a caller that armed its own StopSignal before
    planning passes it, so a stop received while planning already counts; otherwise the
    run arms one for its duration. ``verify``: check every commit of the run cell by
    cell before it is published (a failure leaves main untouched).
    """
    report = as_reporter(progress, log.info)
    try:
        if stop is not None:
            return _execute(prepared, resolved_catalog, catalog, report, stop, verify)
        with StopSignal() as own:
            return _execute(prepared, resolved_catalog, catalog, report, own, verify)
    finally:
        end_live(report)


#: How many times a run is planned and applied again because main moved before it could
#: publish; past that, the run stops (its branch is kept) and a rerun tries again.
MAX_REPLAYS = 3


def _execute(prepared: PreparedRun, resolved_catalog: ResolvedCatalog, catalog: Catalog,
             report: Reporter, stop: StopSignal, verify: bool) -> RunResult:
    find_java()                                 # fail fast, before Ray or any actor starts
    iceberg_runtime_jar(prepared.cfg.spark.iceberg_jar)
    if stop.is_set():
        return _stopped_before_start(prepared)
    report.line("connecting to Ray" if runtime.cluster_address(prepared.cfg) else "starting a local Ray instance")
    if not _connect(prepared, stop):
        return _stopped_before_start(prepared)
    stop.arm()                                  # ray.init replaced the SIGTERM handler
    prepared = _sized(prepared, resolved_catalog)
    return with_replays(prepared, catalog, report,
                        lambda run: _run_round(run, resolved_catalog, catalog, report, stop, verify))


def _sized(prepared: PreparedRun, resolved_catalog: ResolvedCatalog) -> PreparedRun:
    """The run with its Spark sessions' cores decided, once: a replay keeps them, so it
    reuses the sessions of the round before."""
    cfg = runtime.with_engine(prepared.cfg)
    merges = len(merge_batches(list(prepared.plan.tasks), cfg.run.partitions_per_merge, cfg.max_parallel))
    sized = sized_for_run(cfg, resolved_catalog.spark_conf(), runtime.sessions_for(cfg, merges))
    return dataclasses.replace(prepared, cfg=sized)


def with_replays(prepared: PreparedRun, catalog: Catalog, report: Reporter,
                 one_round: Callable[[PreparedRun], RunResult]) -> RunResult:
    """``one_round`` of the run, planned and applied again while main moved before it could publish."""
    for replay in range(MAX_REPLAYS + 1):
        result = one_round(prepared)
        if result.published != PublishState.MAIN_MOVED:
            return result
        if replay == MAX_REPLAYS:
            raise RunFailed(f"main kept moving before the run could publish ({MAX_REPLAYS + 1} rounds); "
                            f"nothing of {', '.join(prepared.backfill_ids)} is on main. Rerun to try again")
        prepared = _replan(prepared, catalog, report)
    raise AssertionError("unreachable")  # pragma: no cover


def _run_round(prepared: PreparedRun, resolved_catalog: ResolvedCatalog, catalog: Catalog, report: Reporter,
               stop: StopSignal, verify: bool) -> RunResult:
    """Apply the plan (on the run's branch), verify and publish it, then mark staging."""
    target = tables.load(catalog, prepared.cfg, "target")
    policy = prepared.cfg.run.retry_policy
    ledger, storage = prepared.cfg.checkpoint_location(target.metadata.location), dict(target.io.properties)
    check_writable(ledger, storage)  # before the branch: a run that cannot keep its ledger writes nothing
    if prepared.branch is not None and not branches.ensure_branch(target, prepared.branch, policy):
        prepared = dataclasses.replace(prepared, branch=None)  # an empty target: nothing to publish
    executor = RunExecutor(prepared, resolved_catalog.spark_conf(), target.metadata.table_uuid, ledger, storage)
    lost = interrupted_attempts(executor.records(), prepared)  # before begin() turns them pending
    history = {s.snapshot_id: datetime.fromtimestamp(s.timestamp_ms / 1000, timezone.utc)
               for s in target.metadata.snapshots}
    for partition, snap in executor.begin(history).items():
        prepared.already_committed.setdefault(partition, snap)
    book = RunBook(prepared, AuditWriter(tables.load(catalog, prepared.cfg, "audit"),
                                         prepared.cfg.run.retry_policy),
                   executor.checkpoint, report, resolved_catalog.secrets())
    book.record_interrupted(lost)
    to_run = book.start()
    batches = merge_batches(to_run, prepared.cfg.run.partitions_per_merge, prepared.cfg.max_parallel)
    ending = RunEnding()
    try:
        if batches:
            warm = executor.open_sessions(runtime.sessions_for(prepared.cfg, len(batches)))
            report.line(_start_line(prepared, len(to_run), len(batches), warm))
        executor.run(batches, book.record_attempt, stop.is_set, on_live=book.live)
        end_live(report)  # the MERGEs are over: no stale live line under what follows
        book.add_later_note()
        complete = all(t.partition in book.done_partitions() for t in prepared.plan.tasks)
        if complete:
            ending = verify_and_publish(prepared, catalog, report, verify)
        if ending.published == PublishState.MAIN_MOVED:
            executor.forget()  # its records name commits of a branch that is about to be dropped
            return book.result(to_run, ending, stopped=stop.is_set())
        publishable = complete and ending.verified is not False
        if publishable:
            report.line("updating the staging rows of the run (applied, superseded, rejected)")
        ending.superseded = mark_superseded(prepared, publishable, executor)
        done = book.done_partitions() if publishable else set()
        ending.applied, ending.rejected = mark_staging(prepared, done, executor)
    finally:
        executor.shutdown()
    return book.result(to_run, ending, stopped=stop.is_set())


def verify_and_publish(prepared: PreparedRun, catalog: Catalog, report: Reporter, verify: bool) -> RunEnding:
    """Verification on the branch (if asked), then the one-step publish to main."""
    ending = RunEnding()
    if verify:
        where = f"branch {prepared.branch}" if prepared.branch else "main"
        report.line(f"verifying {', '.join(prepared.backfill_ids)} on {where}, each commit against its parent")
        planned = {(e.backfill_id, e.acct, e.month) for e in prepared.plan.entries}
        checked = verify_backfill(prepared.cfg, catalog, prepared.backfill_ids,
                                  ref=prepared.branch or MAIN_BRANCH, planned=planned, progress=report.line)
        ending.verified, ending.verify_lines = checked.ok, tuple(checked.lines())
        for line in checked.lines():
            report.line(line)
        if not checked.ok:
            return ending
    if prepared.branch is None:
        return ending
    target = tables.load(catalog, prepared.cfg, "target")
    policy = prepared.cfg.run.retry_policy
    ending.published = branches.publish(target, prepared.branch, policy)
    if ending.published == PublishState.MAIN_MOVED:
        report.line(f"main moved since branch {prepared.branch} was made ("
                    + ", ".join(branches.moved_by(target, prepared.branch)[:5])
                    + "): planning and applying the run again on the new main; nothing of it is on main yet")
        return ending
    report.line(f"published: main now holds the whole run (branch {prepared.branch}, {ending.published})")
    branches.drop_branch(target, prepared.branch, policy)
    return ending


def _replan(prepared: PreparedRun, catalog: Catalog, report: Reporter) -> PreparedRun:
    """A new plan on the new main, under a new run id; the old branch is dropped (the
    checkpoint records of its commits were dropped when the round ended)."""
    if prepared.branch is not None:
        branches.drop_branch(tables.load(catalog, prepared.cfg, "target"), prepared.branch,
                             prepared.cfg.run.retry_policy)
    req = prepared.request
    again = prepare(prepared.cfg, catalog, prepared.backfill_ids, req.backfill_month, req.resume_from)
    report.line(f"replaying as run {again.run_id}: {len(again.plan.tasks)} partition(s) on the new main")
    return again
def _start_line(prepared: PreparedRun, partitions: int, merges: int, warm: int) -> str:
    cfg = prepared.cfg
    sessions = runtime.sessions_for(cfg, merges)
    new = max(0, sessions - warm)
    reused = f"reusing {min(warm, sessions)} warm Spark session(s), " if warm else ""
    s = cfg.spark
    starting = (f"starting {new} Spark session(s) of {s.num_executors} executor(s) x {s.executor_cores} core(s) x "
                f"{s.executor_memory} ({runtime.ENGINE_NAMES[s.engine]}, about "
                f"{runtime.ENGINE_START_SECONDS[s.engine]} s each)" if new else "no session to start")
    return (f"applying {partitions} partition(s) in {merges} MERGE(s), up to {cfg.max_parallel} at once; "
            f"{reused}{starting}")


def _connect(prepared: PreparedRun, stop: StopSignal) -> bool:
    """Connect to Ray; False when a stop signal arrived while connecting."""
    try:
        runtime.ensure_ray(prepared.cfg)
    except SystemExit as exc:                   # Ray's own SIGTERM handler, while connecting
        if exc.code != signal.SIGTERM:
            raise
        stop.set()
        return False
    return True


class RunBook:
    """What a run records as it goes: checkpoint, audit rows, progress lines, outcomes."""

    def __init__(self, prepared: PreparedRun, audit: AuditWriter,
                 checkpoint: Callable[[PartitionOutcome], None] | None, report: Reporter,
                 secrets: set[str]) -> None:
        """``checkpoint``: where each outcome is checkpointed (None: a run without a
        checkpoint store, ``--method sql``, whose resume evidence is the commit tags alone)."""
        self.prepared = prepared
        self.outcomes: list[PartitionOutcome] = []
        self._audit = audit
        self._checkpoint = checkpoint
        self._report = report
        self._secrets = secrets
        self._t0 = time.monotonic()
        self._eta = EtaClock(len(prepared.plan.tasks), prepared.cfg.max_parallel)
        self._metrics = RunMetrics(prepared.backfill_ids, prepared.run_id, len(prepared.plan.tasks))
        self._later_notes: list[str] = []

    def add_later_note(self) -> None:
        """The plan's note worked out while the run went on (the array-length check), if
        any: printed and kept in the result's notes."""
        later = self.prepared.later_note
        note = later.result() if later is not None else None
        if note:
            self._later_notes.append(note)
            self._report.line(note)

    def record_interrupted(self, lost: Sequence[tuple[str, PartitionOutcome]]) -> None:
        """Audit rows for the attempts an earlier driver had in flight when it died."""
        if not lost:
            return
        ids = self.prepared.backfill_ids
        self._audit.append([outcome.audit_row(b, run_id) for run_id, outcome in lost for b in ids])
        self._report.line(f"recorded {len(lost)} attempt(s) interrupted when an earlier driver stopped: "
                  + ", ".join(f"{o.partition} ({r} attempt {o.attempt})" for r, o in lost))

    def start(self) -> list[PartitionTask]:
        """Write the 'planned' rows, record work already committed; returns the tasks to run."""
        now = datetime.now(timezone.utc)
        plan, ids = self.prepared.plan, self.prepared.backfill_ids
        self._audit.append([PartitionOutcome(partition=t.partition, status=AttemptStatus.PLANNED, attempt=0,
                                             entries=len(t.entries), started_at=now, completed_at=now
                                             ).audit_row(b, self.prepared.run_id)
                            for t in plan.tasks for b in ids])
        found = {t.partition: s for t in plan.tasks
                 if (s := self.prepared.already_committed.get(t.partition)) is not None}
        self.record_attempt([PartitionOutcome(partition=t.partition, status=AttemptStatus.ALREADY_COMMITTED,
                                              attempt=0, entries=len(t.entries), started_at=now, completed_at=now,
                                              snapshot_id=found[t.partition], stats=CommitStats())
                             for t in plan.tasks if t.partition in found])
        return [t for t in plan.tasks if t.partition not in found]

    def record(self, outcome: PartitionOutcome) -> None:
        """One partition's outcome (see :meth:`record_attempt`)."""
        self.record_attempt([outcome])

    def record_attempt(self, outcomes: Sequence[PartitionOutcome]) -> None:
        """The partition outcomes of one attempt (one MERGE): checkpointed, audited in one
        append, counted and reported, secrets scrubbed first.

        The ETA takes in every partition of the MERGE before the first line is printed,
        so a MERGE of 12 partitions counts as 12 partitions done in its time, never as one
        partition that took all of it.
        """
        done = [o.scrubbed(self._secrets) for o in outcomes]
        self.outcomes += done
        if self._checkpoint is not None:
            for outcome in done:
                self._checkpoint(outcome)
        self._audit.append([o.audit_row(b, self.prepared.run_id) for o in done for b in self.prepared.backfill_ids])
        for outcome in done:
            if outcome.status == AttemptStatus.ALREADY_COMMITTED:
                self._eta.skipped()
            elif outcome.ok:
                self._eta.merged((outcome.actor, outcome.started_at), outcome.duration_seconds)
            self._metrics.record(outcome)
        for outcome in done:
            self._report.line(self._progress_line(outcome))

    def live(self, running: Sequence[RunningMerge]) -> None:
        """What runs now, for the live status line."""
        self._report.live(LiveStatus(len(self.done_partitions()), len(self.prepared.plan.tasks), tuple(running),
                                     time.monotonic() - self._t0, self._eta.eta_seconds()))

    def _progress_line(self, outcome: PartitionOutcome) -> str:
        done, total = len(self.done_partitions()), len(self.prepared.plan.tasks)
        elapsed = time.monotonic() - self._t0
        left = self._eta.eta_seconds()
        eta = f", ETA {left:.0f} s" if left is not None else ""
        error = f"; error: {outcome.error.splitlines()[0][:200]}" if outcome.error else ""
        return (f"[{done}/{total}] {outcome.partition} {outcome.status} attempt {outcome.attempt} "
                f"rows {outcome.rows_updated} in {outcome.duration_seconds:.1f} s; "
                f"elapsed {elapsed:.0f} s{eta}{error}")

    def done_partitions(self) -> set[str]:
        """Partitions whose latest attempt needs no more work."""
        final = {o.partition: o for o in self.outcomes}
        return {p for p, o in final.items() if o.ok}

    def result(self, to_run: Sequence[PartitionTask], ending: RunEnding, stopped: bool) -> RunResult:
        """The run's result; partitions a stop kept from starting are named."""
        plan, notes = self.prepared.plan, [*self.prepared.plan.notes, *self._later_notes]
        attempted = {o.partition for o in self.outcomes}
        not_started = tuple(t.partition for t in to_run if t.partition not in attempted)
        if stopped and not_started:
            notes.append(_stopped_note(not_started))
        return RunResult(self.prepared.run_id, self.prepared.backfill_ids, len(plan.tasks), tuple(self.outcomes),
                         ending.applied, ending.rejected, plan.skipped_by_resume, time.monotonic() - self._t0,
                         tuple(notes), not_started, ending.superseded, self.prepared.branch, ending.published,
                         ending.verified, ending.verify_lines)


def _stopped_note(not_started: Sequence[str]) -> str:
    return f"stopped by signal before {len(not_started)} partition(s) ran; rerun the same command to resume"


def _stopped_before_start(prepared: PreparedRun) -> RunResult:
    """The result of a run stopped before Ray or any table write: every partition not started."""
    plan = prepared.plan
    not_started = tuple(t.partition for t in plan.tasks)
    log.warning("stopped before the run started; nothing was written")
    return RunResult(prepared.run_id, prepared.backfill_ids, len(plan.tasks), (), 0, 0,
                     plan.skipped_by_resume, 0.0, (*plan.notes, _stopped_note(not_started)), not_started)


def interrupted_attempts(records: dict[str, PartitionCheckpoint],
                         prepared: PreparedRun) -> list[tuple[str, PartitionOutcome]]:
    """Audit rows, as (run id, outcome), for attempts an earlier driver left 'running'.

    A driver that dies (SIGKILL, lost node) cannot write the audit row of the attempts it
    had in flight. The checkpoint still says 'running' for them, with their run id and
    attempt number; writing an 'interrupted' row for each keeps the audit complete: every
    attempt of every run has a row. Whether the attempt's commit landed is stated from
    the snapshot history (the same evidence that stops it from being redone).
    """
    now = datetime.now(timezone.utc)
    tasks = {t.partition: t for t in prepared.plan.tasks}
    out = []
    for partition, rec in sorted(records.items()):
        if rec.state != CheckpointState.RUNNING or not rec.run_id or rec.run_id == prepared.run_id:
            continue
        task = tasks.get(partition)
        same_work = task is not None and task.digest == rec.digest
        snap = prepared.already_committed.get(partition) if same_work else None
        out.append((rec.run_id, PartitionOutcome(
            partition=partition, status=AttemptStatus.INTERRUPTED, attempt=rec.run_attempt,
            entries=len(task.entries) if task is not None and same_work else 0,
            started_at=rec.updated_at, completed_at=now, snapshot_id=snap,
            error=f"the driver of {rec.run_id} stopped during this attempt; {_landed(same_work, snap)} "
                  f"(found by {prepared.run_id})")))
    return out


def _landed(same_work: bool, snapshot_id: int | None) -> str:
    if not same_work:  # the partition's entries changed since: that commit is not looked up
        return "its entries have changed since, so whether its commit landed was not checked"
    if snapshot_id is not None:
        return f"its commit landed as snapshot {snapshot_id}"
    return "no commit of it landed"


def mark_staging(prepared: PreparedRun, ok_partitions: set[str], executor: RunExecutor) -> tuple[int, int]:
    """Mark entries applied once every planned partition is committed; mark rejections.

    Nothing is marked applied after a partial run (a partition failed or never started),
    even for months whose own partitions all committed: the rerun must see the same
    pending entries, hence the same per-partition digests, so it recognises every
    partition already committed instead of rewriting it for the entries still pending.
    Returns (entries applied, entries rejected).
    """
    plan = prepared.plan
    if any(t.partition not in ok_partitions for t in plan.tasks):
        ok_partitions = set()
    done_months, rejected_months = plan.months_done(ok_partitions), plan.rejected_months()
    if done_months:
        executor.mark_staging(done_months, StagingStatus.APPLIED)
    for month, reason in rejected_months.items():
        executor.mark_staging([month], StagingStatus.REJECTED, reason)
    return plan.entries_in(done_months), plan.entries_in(rejected_months)


def mark_superseded(prepared: PreparedRun, complete: bool, executor: RunExecutor) -> int:
    """Mark the run's superseded entries, and the earlier rows it displaced, once it is complete.

    Marked before the applied ones, so the month-wide 'applied' update no longer matches
    them. Returns the number of the run's own entries marked superseded.
    """
    res = prepared.resolution
    if not complete or not (res.superseded or res.displaced):
        return 0
    executor.set_status([(s.backfill_id, s.acct, s.month, s.reason()) for s in res.superseded],
                        StagingStatus.PENDING, StagingStatus.SUPERSEDED)
    executor.set_status([(s.backfill_id, s.acct, s.month, s.reason()) for s in res.displaced],
                        StagingStatus.APPLIED, StagingStatus.SUPERSEDED)
    return len(res.superseded)
