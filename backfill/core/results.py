"""Typed results that travel from partition actors to the driver and into the audit table."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeAlias

from backfill.core.secrets import scrub
from backfill.core.states import DONE_STATUSES, AttemptStatus, PublishState

#: A value of an audit table row, as the audit writer takes it (timestamps as datetimes).
AuditValue: TypeAlias = str | int | float | datetime | None


@dataclass(frozen=True)
class CommitStats:
    """What one partition commit read and wrote, from its snapshot summary and Spark metrics."""

    data_files_read: int | None = None
    data_files_written: int | None = None
    bytes_read: int | None = None
    bytes_written: int | None = None
    records_written: int | None = None
    delete_files_written: int | None = None

    @classmethod
    def from_summary(cls, summary: dict[str, str], bytes_read: int | None = None) -> CommitStats:
        def num(key: str) -> int | None:
            v = summary.get(key)
            return int(v) if v is not None and str(v).lstrip("-").isdigit() else None

        return cls(
            data_files_read=num("deleted-data-files"),
            data_files_written=num("added-data-files"),
            bytes_read=bytes_read if bytes_read is not None else num("removed-files-size"),
            bytes_written=num("added-files-size"),
            records_written=num("added-records"),
            delete_files_written=num("added-delete-files"),
        )


@dataclass(frozen=True)
class SparkProgress:
    """How far the Spark jobs of one running MERGE have got (polled while it runs).

    Bytes and rows read count finished tasks only: Spark reports a task's input metrics
    when the task ends.
    """

    stages_done: int = 0
    stages: int = 0
    tasks_done: int = 0
    tasks: int = 0
    bytes_read: int = 0
    rows_read: int = 0

    @property
    def started(self) -> bool:
        return self.stages > 0


@dataclass(frozen=True)
class RunningMerge:
    """One MERGE in flight: which partitions, where, for how long, and how far its Spark jobs are."""

    partitions: tuple[str, ...]
    actor: str
    seconds: float
    #: None when the actor did not answer the poll in time (starting its Spark session)
    spark: SparkProgress | None

    def text(self) -> str:
        span = self.partitions[0] + (f"..{self.partitions[-1]}" if len(self.partitions) > 1 else "")
        s = self.spark
        if s is None:
            return f"{span} on {self.actor}: waiting for its Spark session, {self.seconds:.0f} s"
        if not s.started:
            return f"{span} on {self.actor}: planning, {self.seconds:.0f} s"
        return (f"{span} on {self.actor}: stages {s.stages_done}/{s.stages}, tasks {s.tasks_done}/{s.tasks}, "
                f"read {s.bytes_read / 1e6:.1f} MB / {s.rows_read:,} rows, {self.seconds:.0f} s")


@dataclass(frozen=True)
class PartitionOutcome:
    """One attempt at one partition.

    ``status`` is 'committed', 'already_committed' (found in the snapshot history, not
    redone), 'noop' (no row of the partition had an entry), 'failed', or 'interrupted'
    (its driver died mid-attempt; written by the next run from the checkpoint).
    """

    partition: str
    status: AttemptStatus
    attempt: int
    entries: int
    started_at: datetime
    completed_at: datetime
    rows_updated: int = 0
    missing_rows: int = 0
    snapshot_id: int | None = None
    stats: CommitStats = field(default_factory=CommitStats)
    error: str | None = None
    transient: bool = False
    actor: str | None = None
    node: str | None = None

    def __post_init__(self) -> None:
        """Accept a status given as its string value (audit rows and older callers), as the member.

        Every reader then gets an ``AttemptStatus``; an unknown string fails here, not in the audit.
        """
        object.__setattr__(self, "status", AttemptStatus(self.status))

    @property
    def ok(self) -> bool:
        return self.status in DONE_STATUSES

    def scrubbed(self, secrets: Iterable[str]) -> PartitionOutcome:
        """This outcome with catalog secrets masked in its error text.

        Error text comes from catalog clients and Spark, which may quote a URI with a
        password or a token; it goes on to the checkpoint, the audit table and the log.
        """
        if not self.error:
            return self
        clean = scrub(self.error, secrets)
        return self if clean == self.error else dataclasses.replace(self, error=clean)

    @property
    def duration_seconds(self) -> float:
        return (self.completed_at - self.started_at).total_seconds()

    def audit_row(self, backfill_id: str, run_id: str) -> dict[str, AuditValue]:
        row: dict[str, AuditValue] = {
            "backfill_id": backfill_id, "run_id": run_id, "target_partition": self.partition,
            "status": str(self.status), "attempt": self.attempt, "entries": self.entries,
            "rows_updated": self.rows_updated, "missing_rows": self.missing_rows,
            "duration_seconds": self.duration_seconds, "started_at": self.started_at,
            "completed_at": self.completed_at, "error": self.error,
            "snapshot_id": self.snapshot_id, "actor": self.actor, "node": self.node,
        }
        row.update(dataclasses.asdict(self.stats))
        return row


@dataclass
class RunEnding:
    """How a run's last steps went: verification, publish, and the staging marks."""

    verified: bool | None = None
    verify_lines: tuple[str, ...] = ()
    published: PublishState | None = None
    applied: int = 0
    rejected: int = 0
    superseded: int = 0


@dataclass(frozen=True)
class RunResult:
    """Summary of a run, printed by the CLI and returned by the Python API."""

    run_id: str
    backfill_ids: tuple[str, ...]
    planned: int
    outcomes: tuple[PartitionOutcome, ...]
    applied_entries: int
    rejected_entries: int
    skipped_by_resume: tuple[str, ...]
    duration_seconds: float
    notes: tuple[str, ...] = ()
    #: Planned partitions never attempted because the run was stopped (SIGTERM/SIGINT).
    not_started: tuple[str, ...] = ()
    #: The run's entries a later-staged row replaced in every cell (series rule): not written.
    superseded_entries: int = 0
    #: The write-audit-publish branch the run committed to (None: straight to main).
    branch: str | None = None
    #: What publishing did (None: not published, or no branch).
    published: PublishState | None = None
    #: ``--verify``: None when not asked or not reached, else whether every cell checked out.
    verified: bool | None = None
    verify_lines: tuple[str, ...] = ()

    def final(self) -> dict[str, PartitionOutcome]:
        """Last attempt per partition."""
        last: dict[str, PartitionOutcome] = {}
        for o in self.outcomes:
            last[o.partition] = o
        return last

    @property
    def failed_partitions(self) -> list[str]:
        return sorted(p for p, o in self.final().items() if not o.ok)

    @property
    def rows_updated(self) -> int:
        return sum(o.rows_updated for o in self.final().values() if o.status == AttemptStatus.COMMITTED)

    @property
    def missing_rows(self) -> int:
        return sum(o.missing_rows for o in self.final().values() if o.status == AttemptStatus.COMMITTED)

    @property
    def succeeded(self) -> bool:
        """Every planned partition ended committed, already committed or with nothing to do."""
        return not self.failed_partitions and not self.not_started

    def _publish_line(self) -> str:
        if self.published in (PublishState.PUBLISHED, PublishState.ALREADY_ON_MAIN):
            return f"published to main in one step (branch {self.branch})"
        if self.verified is False:
            return f"NOT published: verification failed; main is untouched, branch {self.branch} holds the run"
        return f"not published yet: main is untouched, branch {self.branch} holds the commits so far"

    def summary_lines(self) -> list[str]:
        fin = self.final()

        def count(status: AttemptStatus) -> int:
            return sum(1 for o in fin.values() if o.status == status)

        lines = [
            f"backfill {', '.join(self.backfill_ids)}  run {self.run_id}",
            f"  partitions planned {self.planned}: committed {count(AttemptStatus.COMMITTED)}, "
            f"already committed {count(AttemptStatus.ALREADY_COMMITTED)}, "
            f"no matching rows {count(AttemptStatus.NOOP)}, "
            f"failed {len(self.failed_partitions)}"
            + (f", not started {len(self.not_started)}" if self.not_started else "")
            + (f", skipped by --resume-from {len(self.skipped_by_resume)}" if self.skipped_by_resume else ""),
            f"  rows updated {self.rows_updated}, entries without a target row (not created) "
            f"{self.missing_rows}",
            f"  staging entries applied {self.applied_entries}, superseded {self.superseded_entries}, "
            f"rejected {self.rejected_entries}",
            f"  attempts {len(self.outcomes)}, elapsed {self.duration_seconds:.1f} s",
        ]
        if self.branch is not None:
            lines.append(f"  {self._publish_line()}")
        lines += [f"  note: {n}" for n in self.notes]
        if self.failed_partitions:
            lines.append(f"  FAILED: {', '.join(self.failed_partitions)} (rerun the same command to resume)")
        return lines
