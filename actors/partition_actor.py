"""The partition actor: one RayDP Spark session, reused for many partitions.

Each actor pays the Spark start-up once (~15 s) and then applies partitions one after
another. An attempt first looks for a commit of the same partition and the same
entries (digest) in the target's snapshot history: if one exists the work is already in
the table and is not redone. That is what makes an actor killed after its commit, or a
driver killed before it recorded the result, safe to retry.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping, Sequence

from backfill.config import Config
from backfill.identifiers import quote_table
from backfill.merge_sql import (LITERAL_SOURCE_MAX_ENTRIES, entries_source_sql, mark_staging_sql,
                                matched_rows_sql, merge_sql, staging_source_sql)
from backfill.plan import PartitionTask
from backfill.results import CommitStats, PartitionOutcome
from backfill.retry import is_transient

log = logging.getLogger(__name__)

#: Snapshot summary keys written with every partition commit.
KEY_PARTITION = "backfill.partition"
KEY_DIGEST = "backfill.digest"
KEY_RUN = "backfill.run-id"
KEY_IDS = "backfill.ids"


def _now() -> datetime:
    return datetime.now(timezone.utc)


class PartitionWorker:
    """Applies partitions with its own Spark session. Wrapped as a Ray actor by the driver."""

    def __init__(self, cfg: Config, catalog_spark_conf: Mapping[str, str], name: str) -> None:
        from cluster.jars import iceberg_runtime_jar
        from cluster.spark_session import spark_conf, start_spark

        self.cfg = cfg
        self.name = name
        jar = iceberg_runtime_jar(cfg.spark.iceberg_jar)
        self.spark = start_spark(name, spark_conf(catalog_spark_conf, cfg.spark, jar), cfg.spark)
        import ray

        # host and Ray node id: several simulated nodes may share one host
        self.node = f"{socket.gethostname()}/{ray.get_runtime_context().get_node_id()[:12]}"
        self._target = quote_table(cfg.table_parts("target"))
        self._staging = quote_table(cfg.table_parts("staging"))

    def _refresh(self, *names: str) -> None:
        """Other sessions commit to these tables: drop this session's cached metadata."""
        from cluster.spark_session import refresh_tables

        refresh_tables(self.spark, *names)

    # ------------------------------------------------------------------ helpers

    def ping(self) -> dict[str, Any]:
        """Identity of this worker (pid, node) — used by tests and the driver's logs."""
        return {"name": self.name, "pid": os.getpid(), "node": self.node}

    def sql(self, query: str, refresh: Sequence[str] = ()) -> list[tuple]:
        """Run a query and return plain tuples (tests, SQL scripts); ``refresh`` quoted tables first."""
        self._refresh(*refresh)
        return [tuple(r) for r in self.spark.sql(query).collect()]

    def _activate(self) -> None:
        """Make this session the active one of the calling thread's JVM thread.

        With ``partitions_per_actor`` > 1 Ray calls methods from several threads, and each
        Python thread gets its own JVM thread (pyspark's pinned threads) that has no active
        session. ``spark.sql`` sets one for its own duration, but Iceberg's Java API called
        directly (``Spark3Util.loadIcebergTable``) reads ``SQLConf.get`` and would see a
        blank configuration without this session's catalogs.
        """
        self.spark._jvm.org.apache.spark.sql.SparkSession.setActiveSession(self.spark._jsparkSession)

    def _iceberg_table(self) -> Any:
        """The target as an Iceberg Java ``Table`` (this session's catalog), refreshed."""
        self._activate()
        jvm = self.spark._jvm
        name = ".".join(self.cfg.table_parts("target"))
        table = jvm.org.apache.iceberg.spark.Spark3Util.loadIcebergTable(self.spark._jsparkSession, name)
        table.refresh()
        return table

    def _find_commit(self, partition: str, digest: str, run_id: str | None = None,
                     table: Any = None) -> tuple[int, dict[str, str]] | None:
        """Newest snapshot tagged with ``partition`` and ``digest`` (and ``run_id``), if any.

        Reads the table metadata through Iceberg's Java API: no Spark job, unlike a query
        on the ``snapshots`` metadata table (it was a third of a small partition's time).
        """
        table = table if table is not None else self._iceberg_table()
        for snap in reversed(list(table.snapshots())):
            summary = snap.summary()
            if (summary.get(KEY_PARTITION) == partition and summary.get(KEY_DIGEST) == digest
                    and (run_id is None or summary.get(KEY_RUN) == run_id)):
                return int(snap.snapshotId()), {str(k): str(v) for k, v in summary.items()}
        return None

    # ------------------------------------------------------------------ work

    def apply(self, task: PartitionTask, backfill_ids: Sequence[str], run_id: str,
              staging_snapshot_id: int | None, attempt: int) -> PartitionOutcome:
        """Apply every entry of ``task`` to its partition in one MERGE; never raises."""
        started = _now()
        base = dict(partition=task.partition, attempt=attempt, entries=len(task.entries),
                    started_at=started, actor=self.name, node=self.node)
        try:
            return self._apply(task, backfill_ids, run_id, staging_snapshot_id, base)
        except Exception as exc:  # reported, classified and retried by the driver
            text = f"{type(exc).__name__}: {exc}"
            log.warning("partition %s attempt %d failed: %s", task.partition, attempt, text[:500])
            return PartitionOutcome(status="failed", completed_at=_now(), error=text[:4000],
                                    transient=is_transient(text), **base)

    def _apply(self, task: PartitionTask, backfill_ids: Sequence[str], run_id: str,
               staging_snapshot_id: int | None, base: dict[str, Any]) -> PartitionOutcome:
        from cluster.spark_session import run_with_commit_properties

        table = self._iceberg_table()
        done = self._find_commit(task.partition, task.digest, table=table)
        if done is not None:
            snap, summary = done
            return PartitionOutcome(status="already_committed", completed_at=_now(), snapshot_id=snap,
                                    stats=CommitStats.from_summary(summary), **base)
        self._refresh(self._target)  # this session's Spark view of the table: every session's commits
        source, accounts = self.source_for(task, backfill_ids, staging_snapshot_id)
        # Merge-on-read writes exactly the matched rows, so its commit's added-records is the
        # matched count: no separate counting query. Copy-on-write rewrites whole files, so
        # the matched rows are counted first (and a partition without any is not rewritten).
        mor = str(table.properties().get("write.merge.mode") or "") == "merge-on-read"
        matched = None
        if not mor:
            matched, _ = self.spark.sql(
                matched_rows_sql(self.cfg, task.partition, source, accounts)).collect()[0]
            if matched == 0:
                return PartitionOutcome(status="noop", completed_at=_now(),
                                        missing_rows=len(accounts), **base)
        props = {KEY_PARTITION: task.partition, KEY_DIGEST: task.digest, KEY_RUN: run_id,
                 KEY_IDS: ",".join(sorted(set(backfill_ids)))}
        statement = merge_sql(self.cfg, task.partition, source, accounts)
        t0 = time.monotonic()
        run_with_commit_properties(self.spark, props, lambda: self.spark.sql(statement).collect())
        log.info("partition %s merged in %.1f s", task.partition, time.monotonic() - t0)
        found = self._find_commit(task.partition, task.digest, run_id)
        snap, summary = found if found else (None, {})
        if matched is None:
            matched = int(summary.get("added-records", "0") or 0)
        missing = len(accounts) - int(matched)
        status = "committed" if (matched and snap is not None) else "noop"
        return PartitionOutcome(status=status, completed_at=_now(), rows_updated=int(matched),
                                missing_rows=missing, snapshot_id=snap,
                                stats=CommitStats.from_summary(summary), **base)

    def source_for(self, task: PartitionTask, backfill_ids: Sequence[str],
                   staging_snapshot_id: int | None) -> tuple[str, list[int]]:
        """The MERGE source for ``task`` and the accounts it holds.

        Small tasks (the usual case) inline their planned entries as literals: no staging
        scan per partition, and the account list becomes a pruning predicate. Large tasks
        read the pinned staging snapshot. Both yield exactly the task's entries.
        """
        accounts = sorted({e.acct for e in task.entries})
        if task.entries and len(task.entries) <= LITERAL_SOURCE_MAX_ENTRIES:
            return entries_source_sql(self.cfg, task.partition, task.entries), accounts
        self._refresh(self._staging)
        return staging_source_sql(self.cfg, task.partition, backfill_ids, staging_snapshot_id), accounts

    def mark_staging(self, backfill_ids: Sequence[str], months: Sequence[str],
                     staging_snapshot_id: int | None, status: str, error: str | None = None) -> None:
        """Move pending staging rows of ``months`` to ``status`` in one Iceberg commit."""
        if not months:
            return
        from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

        statement = mark_staging_sql(self.cfg, backfill_ids, months, staging_snapshot_id, status, error)
        # Other runs update staging too: a conflicting commit is retried on fresh metadata
        # (the statement only touches rows still pending, so a retry is idempotent).
        for attempt in Retrying(retry=retry_if_exception(lambda e: is_transient(f"{type(e).__name__}: {e}")),
                                stop=stop_after_attempt(max(1, self.cfg.run.retries + 3)),
                                wait=wait_exponential_jitter(multiplier=self.cfg.run.retry_backoff_seconds, max=30),
                                reraise=True):
            with attempt:
                self._refresh(self._staging)
                self.spark.sql(statement).collect()

    def shutdown(self) -> None:
        from cluster.spark_session import stop_spark

        stop_spark()


@contextmanager
def one_session(cfg: Config, resolved_catalog: Any, name: str) -> Iterator[Any]:
    """One partition actor (a RayDP Spark session) for statements run in order; always ended."""
    import ray

    from backfill.driver import _ensure_ray
    from cluster.jars import iceberg_runtime_jar

    iceberg_runtime_jar(cfg.spark.iceberg_jar)  # fail fast, before the actor starts
    _ensure_ray(cfg)
    actor = ray.remote(PartitionWorker).options(num_cpus=cfg.run.actor_cpus, max_restarts=0).remote(
        cfg, resolved_catalog.spark_conf(), name)
    try:
        yield actor
    finally:
        try:
            ray.get(actor.shutdown.remote(), timeout=60)
        except Exception:  # the actor may already be dead; it is killed next anyway
            pass
        ray.kill(actor)
