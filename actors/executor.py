"""The Ray half of a run: the checkpoint store, the partition actors and the pool over them.

:mod:`backfill.ops.run` decides what a run does and records it (audit rows, progress,
the result); this module makes it happen on Ray. Kept apart so the operations layer
never touches actor options or Ray handles, and so this layer never formats a line
for a person.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from actors import runtime
from actors.checkpoint import PartitionCheckpoint, RayCheckpointStore, expired_commits, run_key
from actors.named import make_room
from actors.partition_actor import start_worker
from actors.pool import PartitionPool, RunningAttempt
from actors.warm import WarmPool
from backfill.core.plan import MergeBatch
from backfill.core.results import PartitionOutcome, RunningMerge, SparkProgress
from backfill.core.states import CheckpointState, StagingStatus
from backfill.prepared import PreparedRun

log = logging.getLogger(__name__)

#: Seconds between two progress polls of the running MERGEs.
LIVE_SECONDS = 3.0
#: How long a poll waits for busy actors; one still starting its Spark session is skipped.
POLL_TIMEOUT_SECONDS = 2.0


class RunExecutor:
    """Checkpoints and partition actors of one prepared run, on a connected Ray.

    Args:
        prepared: the run.
        spark_conf: the catalog's Spark settings, shipped to every actor as plain data.
        table_uuid: the target's table UUID (part of the checkpoint key, so a table
            dropped and recreated under the same name never inherits checkpoints).
        checkpoint_location: the checkpoint folder, where the warehouse lives.
        storage: the target's storage properties (its FileIO's), to reach that folder.
    """

    def __init__(self, prepared: PreparedRun, spark_conf: dict[str, str], table_uuid: object,
                 checkpoint_location: str, storage: Mapping[str, str]) -> None:
        cfg = prepared.cfg
        self.prepared = prepared
        self._spark_conf = spark_conf
        self.store = RayCheckpointStore(checkpoint_location, namespace=cfg.run.checkpoint_namespace,
                                        policy=cfg.run.retry_policy, properties=storage)
        self.key = run_key(prepared.backfill_ids, table_uuid, cfg.tables.target_table)
        self._pool: PartitionPool | None = None
        self._warm: WarmPool | None = None
        self._on_live: Callable[[list[RunningMerge]], None] | None = None
        self._last_live = time.monotonic()

    def records(self) -> dict[str, PartitionCheckpoint]:
        """The checkpoint records of this run's key, as an earlier driver left them."""
        return self.store.load(self.key)

    def begin(self, history: Mapping[int, datetime]) -> dict[str, int]:
        """Start the run in the checkpoint store; returns work the checkpoint alone knows.

        ``history``: the target's snapshots (id -> commit time). The snapshot summaries are
        the truth about what is committed; the checkpoint only speaks for commits whose
        snapshot has since been expired from that history (:func:`expired_commits`).
        """
        plan = self.prepared.plan
        self.store.begin(self.key, self.prepared.run_id, [(t.partition, t.digest) for t in plan.tasks])
        return expired_commits(self.store.load(self.key), {t.partition: t.digest for t in plan.tasks}, history)

    def forget(self) -> None:
        """Drop this run's checkpoint records (the run is planned again from scratch)."""
        self.store.forget(self.key)

    def checkpoint(self, outcome: PartitionOutcome) -> None:
        """Make an attempt's outcome durable in the checkpoint store."""
        run_id = self.prepared.run_id
        if outcome.ok:
            self.store.mark(self.key, outcome.partition, CheckpointState.COMMITTED,
                            snapshot_id=outcome.snapshot_id, run_id=run_id)
        else:
            self.store.mark(self.key, outcome.partition, CheckpointState.FAILED, error=outcome.error,
                            run_id=run_id)

    def open_sessions(self, wanted: int) -> int:
        """With keep-warm on, lease up to ``wanted`` warm sessions of earlier runs; how many."""
        cfg = self.prepared.cfg
        if cfg.run.keep_warm_seconds <= 0:
            return 0
        if self._warm is None:
            self._warm = WarmPool(cfg, self._spark_conf, self.prepared.run_id,
                                  detached=runtime.cluster_address(cfg) is not None, wanted=wanted)
        return self._warm.reused

    def run(self, batches: Sequence[MergeBatch], on_outcomes: Callable[[Sequence[PartitionOutcome]], None],
            should_stop: Callable[[], bool],
            on_live: Callable[[list[RunningMerge]], None] | None = None) -> list[PartitionOutcome]:
        """Apply ``batches`` under the concurrency cap; ``on_outcomes`` sees every attempt's outcomes,
        ``on_live`` the MERGEs in flight every few seconds."""
        cfg = self.prepared.cfg
        self._on_live = on_live
        self._pool = PartitionPool(self._make_actor, self._submit, cfg.max_parallel, cfg.run.retry_policy,
                                   on_outcomes, should_stop, slots_per_actor=cfg.run.partitions_per_actor,
                                   on_tick=self._tick if on_live is not None else None)
        return self._pool.run(list(batches))

    def _tick(self, running: list[RunningAttempt]) -> None:
        """Every LIVE_SECONDS, ask each busy actor how far its MERGE's Spark jobs are."""
        now = time.monotonic()
        if self._on_live is None or now - self._last_live < LIVE_SECONDS:
            return
        self._last_live = now
        self._on_live(poll_progress(running, self.prepared.run_id))

    def mark_staging(self, months: Sequence[str], status: StagingStatus, reason: str | None = None) -> None:
        """Move the run's pending staging rows of ``months`` to ``status`` (on an actor's session)."""
        if self._pool is None:
            raise RuntimeError("mark_staging() needs the actors of run()")
        self._pool.call("mark_staging", list(self.prepared.backfill_ids), list(months),
                        self.prepared.staging_snapshot_id, status.value, reason)

    def set_status(self, rows: Sequence[tuple[str, int, str, str]], from_status: StagingStatus,
                   to_status: StagingStatus) -> None:
        """Move single staging rows ``(id, acct, month, reason)`` (on an actor's session)."""
        if self._pool is None:
            raise RuntimeError("set_status() needs the actors of run()")
        if rows:
            self._pool.call("set_status", list(rows), from_status.value, to_status.value)

    def shutdown(self) -> None:
        """End every partition actor, or give warm ones back for the next run (the
        checkpoint actor stays: it outlives runs)."""
        if self._warm is not None:
            self._warm.release()
        elif self._pool is not None:
            self._pool.shutdown()

    def _make_actor(self, n: int) -> tuple[Any, str]:
        cfg = self.prepared.cfg
        if self._warm is not None:  # open_sessions() made the pool: keep-warm is on
            return self._warm.make_actor(n)
        make_room(cfg.run.checkpoint_namespace, runtime.session_cpus(cfg))
        # named, so operators (and fault tests) can find a run's actors with `ray list actors`
        name = f"backfill-{self.prepared.run_id}-a{n}"
        # SPREAD: each actor holds a whole Spark session; spreading them over nodes spreads
        # the executors they start too. A dead actor is replaced by the pool, never restarted.
        handle = start_worker(
            cfg, self._spark_conf, name,
            name=name, namespace=cfg.run.checkpoint_namespace, num_cpus=cfg.run.actor_cpus,
            # one thread more than its MERGEs: progress polls are answered while they run
            max_restarts=0, max_concurrency=cfg.run.partitions_per_actor + 1, scheduling_strategy="SPREAD",
        )
        return handle, name

    def _submit(self, actor: Any, batch: MergeBatch, attempt: int) -> Any:
        # durable before it starts, with the attempt number a later run may have to report
        for task in batch.tasks:
            self.store.mark(self.key, task.partition, CheckpointState.RUNNING, run_id=self.prepared.run_id,
                            run_attempt=attempt)
        return actor.apply.remote(batch, list(self.prepared.backfill_ids), self.prepared.run_id,
                                  self.prepared.staging_snapshot_id, attempt, self.prepared.branch,
                                  staging_is_exact=not self.prepared.resolution.rewrites_staged_rows)


def poll_progress(running: Sequence[RunningAttempt], run_id: str) -> list[RunningMerge]:
    """The Spark progress of each attempt in flight; None for an actor that did not answer in
    time (still starting its Spark session, or too busy)."""
    import ray
    from ray.exceptions import GetTimeoutError, RayError

    refs = [r.actor.spark_progress.remote(r.batch.job_group(run_id, r.attempt)) for r in running]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=POLL_TIMEOUT_SECONDS)
    done = set(ready)
    now = datetime.now(timezone.utc)
    out = []
    for r, ref in zip(running, refs, strict=True):
        progress: SparkProgress | None = None
        if ref in done:
            try:
                progress = ray.get(ref)
            except (RayError, GetTimeoutError):  # the actor died: its outcome says so
                progress = None
        out.append(RunningMerge(r.batch.partitions, r.name or "?", (now - r.started).total_seconds(), progress))
    return out
