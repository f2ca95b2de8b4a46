"""The partition actor: one RayDP Spark session, reused for many partitions.

Each actor pays the Spark start-up once (~15 s) and then applies batches of partitions
(one MERGE and one commit per batch) one after another. An attempt first looks for
commits of the same partitions and the same entries (digests) in the target's snapshot
history: work found there is already in the table and is not redone. That is what makes
an actor killed after its commit, or a driver killed before it recorded the result,
safe to retry.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from tenacity import Retrying

from actors import runtime
from actors.lease import SessionLease
from actors.named import end_actor, make_room
from backfill.config import Config
from backfill.core.commit_tags import KEY_RUN, commit_properties, tagged_work
from backfill.core.identifiers import quote_table
from backfill.core.names import MAIN_BRANCH
from backfill.core.plan import MergeBatch, PartitionTask
from backfill.core.results import CommitStats, PartitionOutcome, SparkProgress
from backfill.core.states import AttemptStatus, StagingStatus
from backfill.errors import BackfillError, PermanentError, TransientError
from backfill.sql.merge import (
    LITERAL_SOURCE_MAX_ENTRIES,
    STATUS_ROWS_PER_STATEMENT,
    entries_source_sql,
    mark_staging_sql,
    matched_rows_sql,
    merge_sql,
    set_status_sql,
    staging_source_sql,
)
from cluster.commit_files import commit_stats_by_partition
from cluster.jars import iceberg_runtime_jar
from cluster.java_errors import error_for, is_retryable
from cluster.spark_session import (
    job_group,
    refresh_tables,
    run_with_commit_properties,
    spark_conf,
    spark_progress,
    start_spark,
    stop_spark,
)

if TYPE_CHECKING:
    from cluster.catalog import ResolvedCatalog

log = logging.getLogger(__name__)

#: How often a warm worker checks whether it has been idle long enough to end.
IDLE_CHECK_SECONDS = 2.0


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _lineage(table: Any, ref: str) -> Iterator[Any]:
    """Snapshots of branch ``ref`` of an Iceberg Java ``Table``, newest first."""
    snap = table.snapshot(ref)
    while snap is not None:
        yield snap
        parent = snap.parentId()
        snap = table.snapshot(parent) if parent is not None else None


def _accounts(task: PartitionTask) -> int:
    """Distinct accounts with an entry in ``task`` (each is one row the MERGE should match)."""
    return len({e.acct for e in task.entries})


@dataclass(frozen=True)
class _Attempt:
    """What every partition outcome of one attempt shares."""

    attempt: int
    started_at: datetime
    actor: str
    node: str
    #: the run's write-audit-publish branch, or None to commit to main
    branch: str | None = None
    #: the MERGE statement given by the caller (a SQL script's), else None: built here
    statement: str | None = None
    #: the run's pending staging rows are exactly its planned entries (no series rule
    #: took a row or a cell out), so a large batch may read them from staging
    staging_is_exact: bool = False

    def outcome(self, task: PartitionTask, status: AttemptStatus, *, rows_updated: int = 0, missing_rows: int = 0,
                snapshot_id: int | None = None, stats: CommitStats | None = None, error: str | None = None,
                transient: bool = False) -> PartitionOutcome:
        """The outcome of ``task`` in this attempt, completed now."""
        return PartitionOutcome(
            partition=task.partition, status=status, attempt=self.attempt, entries=len(task.entries),
            started_at=self.started_at, completed_at=_now(), rows_updated=rows_updated,
            missing_rows=missing_rows, snapshot_id=snapshot_id, stats=stats if stats is not None else CommitStats(),
            error=error, transient=transient, actor=self.actor, node=self.node)


class PartitionWorker:
    """Applies partitions with its own Spark session. Wrapped as a Ray actor by the driver.

    A warm worker (``keep_warm_seconds`` > 0) outlives its run: the next run leases it
    (:meth:`lease`) and binds its own configuration, and the worker ends itself once it
    has been idle for ``keep_warm_seconds``. Only the Spark session is kept between runs;
    what a run reads (tables, columns, window) comes with the lease.
    """

    def __init__(self, cfg: Config, catalog_spark_conf: Mapping[str, str], name: str,
                 keep_warm_seconds: float = 0.0, lease_run: str | None = None) -> None:
        import ray  # heavy: only actor processes and drivers load it

        self.name = name
        jar = iceberg_runtime_jar(cfg.spark.iceberg_jar)
        self._engine = cfg.spark.engine  # what to stop: a lease never changes it (the session key holds it)
        self.spark = start_spark(name, spark_conf(catalog_spark_conf, cfg.spark, jar), cfg.spark)
        # host and Ray node id: several simulated nodes may share one host
        self.node = f"{socket.gethostname()}/{ray.get_runtime_context().get_node_id()[:12]}"
        self._bind(cfg)
        self._lease = SessionLease(keep_warm_seconds, time.monotonic())
        if lease_run is not None:
            self._lease.take(lease_run, time.monotonic())
        if keep_warm_seconds > 0:
            threading.Thread(target=self._end_when_idle, name="keep-warm", daemon=True).start()

    def _bind(self, cfg: Config) -> None:
        self.cfg = cfg
        self._target = quote_table(cfg.table_parts("target"))
        self._staging = quote_table(cfg.table_parts("staging"))

    # ------------------------------------------------------------------ warm sessions

    def lease(self, run_id: str, cfg: Config | None) -> bool:
        """Lease this warm worker to ``run_id``, bound to ``cfg`` (None: to end it); False
        while another run holds it."""
        if not self._lease.take(run_id, time.monotonic()):
            return False
        if cfg is not None:
            self._bind(cfg)
        return True

    def renew(self, run_id: str) -> bool:
        return self._lease.renew(run_id, time.monotonic())

    def release(self, run_id: str) -> None:
        self._lease.release(run_id, time.monotonic())

    def describe(self) -> dict[str, Any]:
        """What ``sessions`` shows: who holds the worker and how long it has been idle."""
        now = time.monotonic()
        return {"name": self.name, "pid": os.getpid(), "node": self.node, "holder": self._lease.holder(now),
                "idle_seconds": self._lease.idle_seconds(now),
                "keep_warm_seconds": self._lease.keep_warm_seconds}

    def _end_when_idle(self) -> None:
        """Stop the Spark session and end the actor once idle past the keep-warm time."""
        import ray

        while not self._lease.should_close(time.monotonic()):
            time.sleep(IDLE_CHECK_SECONDS)
        log.info("%s idle for %.0f s: ending its Spark session", self.name, self._lease.keep_warm_seconds)
        try:
            stop_spark(self._engine)
        finally:
            ray.kill(ray.get_runtime_context().current_actor, no_restart=True)

    def _refresh(self, *names: str) -> None:
        """Other sessions commit to these tables: drop this session's cached metadata."""
        refresh_tables(self.spark, *names)

    # ------------------------------------------------------------------ helpers

    def ping(self) -> dict[str, Any]:
        """Identity of this worker (pid, node) — used by tests and the driver's logs."""
        return {"name": self.name, "pid": os.getpid(), "node": self.node}

    def sql(self, query: str, refresh: Sequence[str] = ()) -> list[tuple[Any, ...]]:
        """Run a query and return plain tuples (tests, SQL scripts); ``refresh`` quoted tables first.

        A failure is raised as a TransientError or PermanentError decided here, where the
        Java exception's class can still be read (it does not survive the trip to the caller).
        """
        self._refresh(*refresh)
        try:
            return [tuple(r) for r in self.spark.sql(query).collect()]
        except Exception as exc:
            raise error_for(exc, "statement") from None

    def _activate(self) -> None:
        """Make this session the active one of the calling thread's JVM thread.

        With ``partitions_per_actor`` > 1 Ray calls methods from several threads, and each
        Python thread gets its own JVM thread (pyspark's pinned threads) that has no active
        session. ``spark.sql`` sets one for its own duration, but Iceberg's Java API called
        directly (``Spark3Util.loadIcebergTable``) reads ``SQLConf.get`` and would see a
        blank configuration without this session's catalogs.
        """
        self._jvm().org.apache.spark.sql.SparkSession.setActiveSession(self.spark._jsparkSession)

    def _jvm(self) -> Any:
        """The session's py4j JVM view (pyspark types it Optional: None only once stopped)."""
        jvm = self.spark._jvm
        if jvm is None:
            raise RuntimeError(f"the Spark session of {self.name} has no JVM (stopped)")
        return jvm

    def _iceberg_table(self) -> Any:
        """The target as an Iceberg Java ``Table`` (this session's catalog), refreshed."""
        self._activate()
        name = ".".join(self.cfg.table_parts("target"))
        table = self._jvm().org.apache.iceberg.spark.Spark3Util.loadIcebergTable(self.spark._jsparkSession, name)
        table.refresh()
        return table

    def _find_commits(self, tasks: Sequence[PartitionTask], branch: str | None, run_id: str | None = None,
                      table: Any = None) -> dict[str, tuple[int, dict[str, str]]]:
        """{partition: (snapshot id, summary)} of the newest commit tagged with each task's
        partition and digest (and ``run_id``), for the tasks that have one.

        Only commits in the lineage of the run's branch (or main) count: a commit on an
        abandoned branch is not in what this run publishes. Reads the table metadata
        through Iceberg's Java API: no Spark job, unlike a query on the ``snapshots``
        metadata table (it was a third of a small partition's time).
        """
        table = table if table is not None else self._iceberg_table()
        wanted = {t.partition: t.digest for t in tasks}
        found: dict[str, tuple[int, dict[str, str]]] = {}
        for snap in _lineage(table, branch or MAIN_BRANCH):
            summary = {str(k): str(v) for k, v in snap.summary().items()}
            if run_id is not None and summary.get(KEY_RUN) != run_id:
                continue
            for part, dig in tagged_work(summary).items():
                if wanted.get(part) == dig and part not in found:
                    found[part] = (int(snap.snapshotId()), summary)
            if len(found) == len(wanted):
                break
        return found

    # ------------------------------------------------------------------ work

    def apply(self, batch: MergeBatch, backfill_ids: Sequence[str], run_id: str,
              staging_snapshot_id: int | None, attempt: int, branch: str | None = None,
              statement: str | None = None, staging_is_exact: bool = False) -> list[PartitionOutcome]:
        """Apply every entry of the batch's partitions in one MERGE (on ``branch``, else
        main); one outcome per partition, in batch order. Never raises: a failure is
        every partition's outcome.

        ``statement``: the MERGE to run instead of the one built here (``--method sql``
        runs its script's own statement, with the same tags and bookkeeping).
        ``staging_is_exact``: see :meth:`source_for`.
        """
        att = _Attempt(attempt=attempt, started_at=_now(), actor=self.name, node=self.node, branch=branch,
                       statement=statement, staging_is_exact=staging_is_exact)
        if self._lease.keep_warm_seconds > 0 and not self._lease.take(run_id, time.monotonic()):
            lost = f"{self.name} is leased to another run now (this run's lease ran out)"
            return [att.outcome(t, AttemptStatus.FAILED, error=lost, transient=True) for t in batch.tasks]
        self._lease.begin_work()
        try:
            return self._apply(batch, backfill_ids, run_id, staging_snapshot_id, att)
        except Exception as exc:  # reported, classified by type and retried by the driver
            error = error_for(exc, f"partitions {','.join(batch.partitions)} attempt {attempt}")
            log.warning("%s", str(error)[:500])
            return [att.outcome(t, AttemptStatus.FAILED, error=str(error), transient=error.retryable)
                    for t in batch.tasks]
        finally:
            self._lease.end_work(time.monotonic())

    def _apply(self, batch: MergeBatch, backfill_ids: Sequence[str], run_id: str,
               staging_snapshot_id: int | None, att: _Attempt) -> list[PartitionOutcome]:
        table = self._iceberg_table()
        outcomes = self._already_committed(batch, table, att)
        todo = batch.without(outcomes)
        if todo is None:
            return [outcomes[p] for p in batch.partitions]
        self._refresh(self._target)  # this session's Spark view of the table: every session's commits
        # Merge-on-read writes exactly the matched rows, so its commit's added records are
        # the matched rows: no separate counting query. Copy-on-write rewrites whole files,
        # so the matched rows are counted first (a partition without any is not rewritten).
        mor = str(table.properties().get("write.merge.mode") or "") == "merge-on-read"
        matched: dict[str, int] | None = None
        if not mor:
            matched = self._matched_rows(todo, backfill_ids, staging_snapshot_id, att)
            outcomes.update({t.partition: att.outcome(t, AttemptStatus.NOOP, missing_rows=_accounts(t))
                             for t in todo.tasks if not matched.get(t.partition)})
            todo = todo.without(outcomes)
            if todo is None:
                return [outcomes[p] for p in batch.partitions]
        outcomes.update(self._merge(todo, backfill_ids, run_id, staging_snapshot_id, table, matched, att))
        return [outcomes[p] for p in batch.partitions]

    def _already_committed(self, batch: MergeBatch, table: Any, att: _Attempt) -> dict[str, PartitionOutcome]:
        """Outcomes of the batch's partitions whose exact work (same digest) is in the table's history."""
        outcomes: dict[str, PartitionOutcome] = {}
        done = self._find_commits(batch.tasks, att.branch, table=table)
        for task in batch.tasks:
            if task.partition in done:
                snap, summary = done[task.partition]
                one = len(tagged_work(summary)) == 1  # a batch commit's summary is not this partition's
                outcomes[task.partition] = att.outcome(
                    task, AttemptStatus.ALREADY_COMMITTED, snapshot_id=snap,
                    stats=CommitStats.from_summary(summary) if one else CommitStats())
        return outcomes

    def _matched_rows(self, batch: MergeBatch, backfill_ids: Sequence[str],
                      staging_snapshot_id: int | None, att: _Attempt) -> dict[str, int]:
        """{partition: target rows the batch's entries match}, counted before a copy-on-write MERGE."""
        source, accounts = self.source_for(batch, backfill_ids, staging_snapshot_id, att.staging_is_exact)
        return {str(p): int(n) for p, n in self.spark.sql(
            matched_rows_sql(self.cfg, batch.partitions, source, accounts, att.branch)).collect()}

    def _merge(self, todo: MergeBatch, backfill_ids: Sequence[str], run_id: str, staging_snapshot_id: int | None,
               table: Any, matched: dict[str, int] | None, att: _Attempt) -> dict[str, PartitionOutcome]:
        """One MERGE and one commit, tagged with each partition's digest, over ``todo``; its outcomes.

        ``matched`` is the copy-on-write pre-count; without it (merge-on-read) a partition's
        updated rows are the records its commit added.
        """
        props = commit_properties([(t.partition, t.digest) for t in todo.tasks], run_id, backfill_ids)
        statement = att.statement or merge_sql(self.cfg, todo.partitions,
                                               *self.source_for(todo, backfill_ids, staging_snapshot_id,
                                                                att.staging_is_exact),
                                               branch=att.branch)
        t0 = time.monotonic()
        with job_group(self.spark, todo.job_group(run_id, att.attempt)):  # the driver polls its progress
            run_with_commit_properties(self.spark, props, lambda: self.spark.sql(statement).collect())
        log.info("partitions %s merged in %.1f s", ",".join(todo.partitions), time.monotonic() - t0)
        after = self._iceberg_table()  # the table as the commit left it
        found = self._find_commits(todo.tasks[:1], att.branch, run_id, table=after).get(todo.tasks[0].partition)
        snap, summary = found if found else (None, {})
        stats = self._stats_by_partition(todo, snap, summary, after)
        outcomes: dict[str, PartitionOutcome] = {}
        for task in todo.tasks:
            st = stats.get(task.partition, CommitStats())
            rows = matched[task.partition] if matched is not None else int(st.records_written or 0)
            status = AttemptStatus.COMMITTED if (rows and snap is not None) else AttemptStatus.NOOP
            outcomes[task.partition] = att.outcome(task, status, rows_updated=rows,
                                                   missing_rows=_accounts(task) - rows, snapshot_id=snap, stats=st)
        return outcomes

    def _stats_by_partition(self, batch: MergeBatch, snapshot_id: int | None,
                            summary: dict[str, str], table: Any) -> dict[str, CommitStats]:
        """Each partition's files, bytes and rows in the commit ``snapshot_id``.

        A one-partition commit's summary is that partition's. A batch commit's is split
        by partition from the files the commit added and removed (its own manifests, read
        through the Java API: no Spark job).
        """
        if snapshot_id is None:
            return {}
        if len(batch.tasks) == 1:
            return {batch.tasks[0].partition: CommitStats.from_summary(summary)}
        return commit_stats_by_partition(self._jvm(), table, snapshot_id, self._month_field(table))

    def _month_field(self, table: Any) -> str:
        """Name of the target's identity partition field on the month column (the spec
        does not change between the commit and this lookup: the same ``table`` serves)."""
        source_id = table.schema().findField(self.cfg.tables.month_column).fieldId()
        for f in table.spec().fields():
            if f.sourceId() == source_id and str(f.transform()) == "identity":
                return str(f.name())
        raise ValueError(f"the target is not partitioned by identity({self.cfg.tables.month_column})")

    def source_for(self, batch: MergeBatch, backfill_ids: Sequence[str], staging_snapshot_id: int | None,
                   staging_is_exact: bool = False) -> tuple[str, list[int]]:
        """The MERGE source for ``batch`` and the accounts it holds.

        Small batches (the usual case) inline their planned entries as literals: no
        staging scan, and the account list becomes a pruning predicate. Large ones read
        the pinned staging snapshot, but only when ``staging_is_exact`` says its pending
        rows are the planned entries: after the series rule took rows or cells out, only
        the entries themselves are the source, however many. Both yield exactly the
        batch's entries.
        """
        entries = batch.entries
        accounts = sorted({e.acct for e in entries})
        if entries and (len(entries) <= LITERAL_SOURCE_MAX_ENTRIES or not staging_is_exact):
            return entries_source_sql(self.cfg, batch.partitions, entries), accounts
        self._refresh(self._staging)
        # narrowed to the batch's months: pending rows of months the request left out
        # (--backfill-month) are not the run's and must not be written
        months = sorted({e.month for e in entries})
        return staging_source_sql(self.cfg, batch.partitions, backfill_ids, staging_snapshot_id, months), accounts

    def mark_staging(self, backfill_ids: Sequence[str], months: Sequence[str],
                     staging_snapshot_id: int | None, status: str, error: str | None = None) -> None:
        """Move pending staging rows of ``months`` to ``status`` in one Iceberg commit."""
        if not months:
            return
        self._update_staging(mark_staging_sql(self.cfg, backfill_ids, months, staging_snapshot_id,
                                              StagingStatus(status), error))

    def set_status(self, rows: Sequence[tuple[str, int, str, str]], from_status: str, to_status: str) -> None:
        """Move single staging rows ``(id, acct, month, reason)`` from one status to another."""
        step = STATUS_ROWS_PER_STATEMENT
        for i in range(0, len(rows), step):
            self._update_staging(set_status_sql(self.cfg, rows[i:i + step], StagingStatus(from_status),
                                                StagingStatus(to_status)))

    def _update_staging(self, statement: str) -> None:
        # Other runs update staging too: a conflicting commit is retried on fresh metadata
        # (every statement only touches rows still in their old status: a retry is idempotent).
        for attempt in Retrying(**self.cfg.run.retry_policy.attempts(is_retryable)):
            with attempt:
                self._refresh(self._staging)
                self.spark.sql(statement).collect()

    def spark_progress(self, group: str) -> SparkProgress:
        """How far the MERGE running under job group ``group`` is (a call beside the running
        MERGEs: the actor keeps one concurrency slot free for it). Never raises: progress is
        a courtesy, and a session busy dying must not fail the poll."""
        try:
            return spark_progress(self.spark, group)
        except Exception:  # noqa: BLE001 - see docstring
            return SparkProgress()

    def shutdown(self) -> None:
        stop_spark(self._engine)


def start_worker(cfg: Config, catalog_spark_conf: Mapping[str, str], name: str, /, *worker_args: Any,
                 **options: Any) -> Any:
    """A new :class:`PartitionWorker` actor created with Ray actor ``options``; its handle.

    The worker's arguments (``worker_args``: the keep-warm time and the first lease's run)
    are positional-only, so ``options`` may hold Ray's own ``name``.

    The handle is typed Any on purpose: Ray's stubs type ``ActorClass.remote()`` as
    ``ActorHandle[T] | type[T]``, on which neither ``handle.method.remote()`` nor
    ``ray.kill(handle)`` type-checks.
    """
    import ray  # heavy: only actor processes and drivers load it

    handle: Any = ray.remote(PartitionWorker).options(**options).remote(cfg, catalog_spark_conf, name, *worker_args)
    return handle


@contextmanager
def one_session(cfg: Config, resolved_catalog: ResolvedCatalog, name: str) -> Iterator[Any]:
    """One partition actor (a Spark session) for statements run in order; always ended."""

    iceberg_runtime_jar(cfg.spark.iceberg_jar)  # fail fast, before the actor starts
    runtime.ensure_ray(cfg)
    cfg = runtime.sized(runtime.with_engine(cfg), 1)
    make_room(cfg.run.checkpoint_namespace, runtime.session_cpus(cfg))  # idle warm sessions may hold its CPUs
    # one thread more than the statement it runs: progress polls are answered meanwhile
    actor = start_worker(cfg, resolved_catalog.spark_conf(), name, num_cpus=cfg.run.actor_cpus, max_restarts=0,
                         max_concurrency=2)
    try:
        yield actor
    finally:
        end_actor(actor)


def run_statement(actor: Any, statement: str, refresh: Sequence[str] = ()) -> list[tuple[Any, ...]]:
    """``actor.sql`` on a partition actor, raising its classified BackfillError as such.

    Ray wraps an actor's exception in a ``RayTaskError``; callers want the error the actor
    classified (transient or permanent), and a dead actor counts as transient.
    """
    import ray
    from ray.exceptions import RayActorError, RayTaskError

    try:
        return list(ray.get(actor.sql.remote(statement, tuple(refresh))))
    except RayTaskError as exc:
        if isinstance(exc.cause, BackfillError):
            raise exc.cause from None
        raise PermanentError(f"statement failed: {exc}"[:4000]) from None
    except RayActorError as exc:
        raise TransientError(f"the Spark session's actor died: {exc}"[:4000]) from None
