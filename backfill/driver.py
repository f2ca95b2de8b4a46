"""The Ray driver: validates, plans, schedules partition actors and records progress.

Order of a run, and why:
1. Everything that can reject the run (config, tables, staged rows, plan) is checked
   before any table is written, so bad input never leaves a half-applied backfill.
2. Partitions whose exact work (same partition, same entries digest) is already
   committed are found in the target's snapshot summaries and not redone.
3. Partition actors apply the rest under the concurrency cap, in batches of neighbouring
   partitions (one MERGE and one commit per batch); each partition's attempt is
   appended to the audit table as soon as its batch ends.
4. Staging rows move to 'applied' only when every partition covering their month is
   committed; entries whose window holds no partition are 'rejected' with the reason.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

from backfill import tables
from backfill.array_lengths import find_overlong, overlong_note
from backfill.audit import AuditWriter
from backfill.config import Config
from backfill.entries import validate_rows
from backfill.errors import InputError
from backfill.identifiers import check_backfill_id
from backfill.months import is_month
from backfill.plan import MergeBatch, Plan, PartitionTask, merge_batches, plan_run
from backfill.results import CommitStats, PartitionOutcome, RunResult
from backfill.retry import RetryPolicy
from backfill.stop_signal import StopSignal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedRun:
    """Everything decided before the first write."""

    cfg: Config
    backfill_ids: tuple[str, ...]
    run_id: str
    plan: Plan
    staging_snapshot_id: int | None
    already_committed: dict[str, int]  # partition -> snapshot id


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("run-%Y%m%dT%H%M%S-") + uuid.uuid4().hex[:6]


def prepare(cfg: Config, catalog: Any, backfill_ids: Sequence[str], backfill_month: str | None = None,
            resume_from: str | None = None, run_id: str | None = None) -> PreparedRun:
    """Validate input and plan the run; raises a BackfillError and writes nothing on bad input."""
    cfg.validated()
    if not backfill_ids:
        raise InputError("at least one backfill id is required (--backfill-id)")
    ids = tuple(sorted({check_backfill_id(b) for b in backfill_ids}))
    if backfill_month is not None and not is_month(backfill_month):
        raise InputError(f"--backfill-month {backfill_month!r} is not a month of the form 'YYYY-MM'")
    target = tables.load(catalog, cfg, "target")
    staging = tables.load(catalog, cfg, "staging")
    tables.load(catalog, cfg, "audit")
    read = tables.read_pending(staging, ids, backfill_month)
    if not read.rows:
        month_note = f" for month {backfill_month}" if backfill_month else ""
        raise InputError(f"backfill id(s) {', '.join(ids)} have no pending rows in "
                         f"{tables.display_name(cfg, 'staging')}{month_note}; nothing to do")
    value_columns = [hc.value_column for hc in cfg.tables.history_columns]
    entries = validate_rows(read.rows, value_columns)
    parts = tables.partitions(target, cfg.tables.month_column)
    plan = plan_run(entries, parts, cfg.tables.window, cfg.run.order, resume_from)
    if not plan.tasks and not plan.skipped_by_resume:
        reasons = "; ".join(f"acct={r.entry.acct} month={r.entry.month}: {r.reason}"
                            for r in plan.rejected[:5])
        raise InputError(f"no pending entry of {', '.join(ids)} touches an existing partition of "
                         f"{tables.display_name(cfg, 'target')}; nothing was written ({reasons})")
    committed = tables.committed_digests(target)
    already = {t.partition: committed[(t.partition, t.digest)] for t in plan.tasks
               if (t.partition, t.digest) in committed}
    if cfg.run.check_array_lengths:
        plan = _with_array_length_notes(plan, target, cfg, [t for t in plan.tasks if t.partition not in already])
    return PreparedRun(cfg, ids, run_id or new_run_id(), plan, read.snapshot_id, already)


def _with_array_length_notes(plan: Plan, target: Any, cfg: Config, tasks: Sequence[PartitionTask]) -> Plan:
    """``plan`` plus a note naming target arrays already longer than the window, if any."""
    found, skipped = find_overlong(target, cfg, tasks)
    note = overlong_note(found, cfg.tables.window, "in rows this run will rewrite") or skipped
    if not note:
        return plan
    log.warning(note)
    return dataclasses.replace(plan, notes=plan.notes + (note,))


def _ensure_ray(cfg: Config) -> None:
    import os

    import ray

    if ray.is_initialized():
        return
    address = cfg.run.ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        s = cfg.spark
        per_session = cfg.run.actor_cpus + s.num_executors * s.executor_cores + 1
        sessions = -(-cfg.run.max_parallel // cfg.run.partitions_per_actor)
        cpus = max(os.cpu_count() or 2, int(sessions * per_session) + 1)
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)


def execute(prepared: PreparedRun, resolved_catalog: Any, catalog: Any,
            progress: Callable[[str], None] | None = None, stop: StopSignal | None = None) -> RunResult:
    """Run the prepared plan on Ray partition actors; returns the run's result.

    ``stop``: a caller that armed its own StopSignal before planning passes it, so a stop
    received while planning already counts; otherwise the run arms one for its duration.
    """
    if stop is not None:
        return _execute(prepared, resolved_catalog, catalog, progress, stop)
    with StopSignal() as own:
        return _execute(prepared, resolved_catalog, catalog, progress, own)


def _execute(prepared: PreparedRun, resolved_catalog: Any, catalog: Any,
             progress: Callable[[str], None] | None, stop: StopSignal) -> RunResult:
    import ray

    from actors.checkpoint import COMMITTED, FAILED, RUNNING, RayCheckpointStore, run_key
    from actors.partition_actor import PartitionWorker
    from actors.pool import PartitionPool
    from cluster.jars import iceberg_runtime_jar

    cfg, plan = prepared.cfg, prepared.plan
    from cluster.metastore import find_java

    find_java()                                 # fail fast, before Ray or any actor starts
    iceberg_runtime_jar(cfg.spark.iceberg_jar)
    if stop.is_set():                           # stopped while planning: start nothing
        return _stopped_before_start(prepared)
    try:
        _ensure_ray(cfg)
    except SystemExit as exc:                   # Ray's own SIGTERM handler, while connecting
        if exc.code != signal.SIGTERM:
            raise
        stop.set()
        return _stopped_before_start(prepared)
    stop.arm()                                  # ray.init replaced the SIGTERM handler
    ckpt = RayCheckpointStore(cfg.checkpoint_directory(), namespace=cfg.run.checkpoint_namespace)
    target = catalog.load_table(tables.identifier(cfg, "target"))
    key = run_key(prepared.backfill_ids, target.metadata.table_uuid)
    lost = interrupted_attempts(ckpt.load(key), prepared)  # before begin() turns them pending
    ckpt.begin(key, prepared.run_id, [(t.partition, t.digest) for t in plan.tasks])
    in_history = {s.snapshot_id for s in target.metadata.snapshots}
    for partition, (dig, snap) in ckpt.committed(key).items():
        task = next((t for t in plan.tasks if t.partition == partition), None)
        # The snapshot summaries are the truth; the checkpoint only speaks for commits
        # whose snapshot has since been expired from the table's history.
        if task and task.digest == dig and snap is not None and snap not in in_history:
            prepared.already_committed.setdefault(partition, snap)
    t0 = time.monotonic()
    audit = AuditWriter(tables.load(catalog, cfg, "audit"))
    outcomes: list[PartitionOutcome] = []
    say = progress or (lambda line: log.info(line))
    total = len(plan.tasks)
    secrets = resolved_catalog.secrets()
    if lost:
        audit.append([row for run_id, outcome in lost for row in
                      (outcome.audit_row(b, run_id) for b in prepared.backfill_ids)])
        say(f"recorded {len(lost)} attempt(s) interrupted when an earlier driver stopped: "
            + ", ".join(f"{o.partition} ({r} attempt {o.attempt})" for r, o in lost))

    def record(outcome: PartitionOutcome) -> None:
        outcome = outcome.scrubbed(secrets)
        outcomes.append(outcome)
        if outcome.ok:
            ckpt.mark(key, outcome.partition, COMMITTED, snapshot_id=outcome.snapshot_id,
                      run_id=prepared.run_id)
        else:
            ckpt.mark(key, outcome.partition, FAILED, error=outcome.error, run_id=prepared.run_id)
        audit.append([outcome.audit_row(b, prepared.run_id) for b in prepared.backfill_ids])
        done = len({o.partition for o in outcomes if o.ok})
        elapsed = time.monotonic() - t0
        eta = (elapsed / done * (total - done)) if done else float("nan")
        say(f"[{done}/{total}] {outcome.partition} {outcome.status} attempt {outcome.attempt} "
            f"rows {outcome.rows_updated} in {outcome.duration_seconds:.1f} s; "
            f"elapsed {elapsed:.0f} s, ETA {eta:.0f} s"
            + (f"; error: {outcome.error.splitlines()[0][:200]}" if outcome.error else ""))

    now = datetime.now(timezone.utc)
    # 'planned' rows let `status` show pending partitions of a run that is still going on
    audit.append([PartitionOutcome(partition=t.partition, status="planned", attempt=0,
                                   entries=len(t.entries), started_at=now, completed_at=now
                                   ).audit_row(b, prepared.run_id)
                  for t in plan.tasks for b in prepared.backfill_ids])
    to_run: list[PartitionTask] = []
    for task in plan.tasks:
        snap = prepared.already_committed.get(task.partition)
        if snap is None:
            to_run.append(task)
        else:
            record(PartitionOutcome(partition=task.partition, status="already_committed", attempt=0,
                                    entries=len(task.entries), started_at=now, completed_at=now,
                                    snapshot_id=snap, stats=CommitStats()))

    spark_conf = resolved_catalog.spark_conf()
    # SPREAD: each actor holds a whole Spark session; spreading them over nodes spreads the
    # executors they start too. A dead actor is replaced by the pool, never restarted.
    actor_cls = ray.remote(PartitionWorker)

    def make_actor(n: int) -> Any:
        # named, so operators (and fault tests) can find a run's actors with `ray list actors`
        name = f"backfill-{prepared.run_id}-a{n}"
        return actor_cls.options(
            name=name, namespace=cfg.run.checkpoint_namespace, num_cpus=cfg.run.actor_cpus,
            max_restarts=0, max_concurrency=cfg.run.partitions_per_actor, scheduling_strategy="SPREAD",
        ).remote(cfg, spark_conf, name), name

    def submit(actor: Any, batch: MergeBatch, attempt: int) -> Any:
        # durable before it starts, with the attempt number a later run may have to report
        for task in batch.tasks:
            ckpt.mark(key, task.partition, RUNNING, run_id=prepared.run_id, run_attempt=attempt)
        return actor.apply.remote(batch, list(prepared.backfill_ids), prepared.run_id,
                                  prepared.staging_snapshot_id, attempt)

    policy = RetryPolicy(cfg.run.retries, cfg.run.retry_backoff_seconds)
    pool = PartitionPool(make_actor, submit, cfg.run.max_parallel, policy, record, stop.is_set,
                         slots_per_actor=cfg.run.partitions_per_actor)
    applied = rejected = 0
    try:
        pool.run(merge_batches(to_run, cfg.run.partitions_per_merge, cfg.run.max_parallel))
        final = {o.partition: o for o in outcomes}
        ok = {p for p, o in final.items() if o.ok}
        applied, rejected = _mark_staging(prepared, ok, pool)
    finally:
        pool.shutdown()
    notes = list(plan.notes)
    attempted = {o.partition for o in outcomes}
    not_started = tuple(t.partition for t in to_run if t.partition not in attempted)
    if stop.is_set() and not_started:
        notes.append(_stopped_note(not_started))
    return RunResult(prepared.run_id, prepared.backfill_ids, len(plan.tasks), tuple(outcomes),
                     applied, rejected, plan.skipped_by_resume, time.monotonic() - t0, tuple(notes),
                     not_started)


def _stopped_note(not_started: Sequence[str]) -> str:
    return f"stopped by signal before {len(not_started)} partition(s) ran; rerun the same command to resume"


def _stopped_before_start(prepared: PreparedRun) -> RunResult:
    """The result of a run stopped before Ray or any table write: every partition not started."""
    plan = prepared.plan
    not_started = tuple(t.partition for t in plan.tasks)
    log.warning("stopped before the run started; nothing was written")
    return RunResult(prepared.run_id, prepared.backfill_ids, len(plan.tasks), (), 0, 0,
                     plan.skipped_by_resume, 0.0, plan.notes + (_stopped_note(not_started),), not_started)


def interrupted_attempts(records: dict[str, Any], prepared: PreparedRun) -> list[tuple[str, PartitionOutcome]]:
    """Audit rows, as (run id, outcome), for attempts an earlier driver left 'running'.

    A driver that dies (SIGKILL, lost node) cannot write the audit row of the attempts it
    had in flight. The checkpoint still says 'running' for them, with their run id and
    attempt number; writing an 'interrupted' row for each keeps the audit complete: every
    attempt of every run has a row. Whether the attempt's commit landed is stated from
    the snapshot history (the same evidence that stops it from being redone).
    """
    from actors.checkpoint import RUNNING

    now = datetime.now(timezone.utc)
    tasks = {t.partition: t for t in prepared.plan.tasks}
    out = []
    for partition, rec in sorted(records.items()):
        if rec.state != RUNNING or not rec.run_id or rec.run_id == prepared.run_id:
            continue
        task = tasks.get(partition)
        same_work = task is not None and task.digest == rec.digest
        snap = prepared.already_committed.get(partition) if same_work else None
        if not same_work:  # the partition's entries changed since: that commit is not looked up
            landed = "its entries have changed since, so whether its commit landed was not checked"
        elif snap is not None:
            landed = f"its commit landed as snapshot {snap}"
        else:
            landed = "no commit of it landed"
        out.append((rec.run_id, PartitionOutcome(
            partition=partition, status="interrupted", attempt=rec.run_attempt,
            entries=len(task.entries) if same_work else 0,
            started_at=rec.updated_at, completed_at=now, snapshot_id=snap,
            error=f"the driver of {rec.run_id} stopped during this attempt; {landed} "
                  f"(found by {prepared.run_id})")))
    return out


def _mark_staging(prepared: PreparedRun, ok_partitions: set[str], pool: Any) -> tuple[int, int]:
    """Mark entries applied once every planned partition is committed; mark rejections.

    Nothing is marked applied after a partial run (a partition failed or never started),
    even for months whose own partitions all committed: the rerun must see the same
    pending entries, hence the same per-partition digests, so it recognises every
    partition already committed instead of rewriting it for the entries still pending.
    """
    plan = prepared.plan
    if any(t.partition not in ok_partitions for t in plan.tasks):
        ok_partitions = set()
    by_month: dict[str, list] = {}
    for e in plan.entries:
        by_month.setdefault(e.month, []).append(e)
    rejected_months = {r.entry.month: r.reason for r in plan.rejected}
    done_months = [m for m, es in by_month.items() if m not in rejected_months
                   and all(p in ok_partitions for p in plan.partitions_of(es[0]))]
    if not done_months and not rejected_months:
        return 0, 0
    ids = list(prepared.backfill_ids)
    if done_months:
        pool.call("mark_staging", ids, done_months, prepared.staging_snapshot_id, "applied")
    for month, reason in rejected_months.items():
        pool.call("mark_staging", ids, [month], prepared.staging_snapshot_id, "rejected", reason)
    applied = sum(len(by_month[m]) for m in done_months)
    rejected = sum(len(by_month[m]) for m in rejected_months)
    return applied, rejected


def run_backfill(cfg: Config, backfill_ids: Sequence[str], backfill_month: str | None = None,
                 resume_from: str | None = None, progress: Callable[[str], None] | None = None) -> RunResult:
    """Python API: validate, plan and run a backfill end to end."""
    from cluster.catalog import load_pyiceberg_catalog, resolve_catalog

    cfg.validated()  # before any service is started or contacted
    resolved = resolve_catalog(cfg.catalog)
    catalog = load_pyiceberg_catalog(resolved)
    prepared = prepare(cfg, catalog, backfill_ids, backfill_month, resume_from)
    return execute(prepared, resolved, catalog, progress)
