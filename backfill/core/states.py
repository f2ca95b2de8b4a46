"""Every state a partition attempt, a checkpoint record or a staging row can be in.

They are written to tables and files as their string values, so the values are a
storage format: old audit rows and checkpoints must keep reading the same. The enums
mix in ``str`` so a value read back from a table compares equal to its member.
"""

from __future__ import annotations

from enum import Enum


class _Text(str, Enum):
    """A str enum that prints as its value (the same on every Python version)."""

    def __str__(self) -> str:
        return str(self.value)


class AttemptStatus(_Text):
    """The status of one partition attempt, as the audit table records it."""

    #: written for every partition when a run starts, so ``status`` shows what is left
    PLANNED = "planned"
    COMMITTED = "committed"
    #: the same work (partition, digest) was found in the snapshot history: not redone
    ALREADY_COMMITTED = "already_committed"
    #: no row of the partition had an entry: nothing to write
    NOOP = "noop"
    FAILED = "failed"
    #: its driver died mid-attempt; written by the next run from the checkpoint
    INTERRUPTED = "interrupted"
    #: ``rollback`` put back the values a backfill replaced in this partition
    ROLLED_BACK = "rolled_back"

    @property
    def done(self) -> bool:
        """True when the partition needs no more work after this attempt."""
        return self in DONE_STATUSES


#: Attempt statuses after which the partition needs no more work.
DONE_STATUSES: frozenset[AttemptStatus] = frozenset(
    {AttemptStatus.COMMITTED, AttemptStatus.ALREADY_COMMITTED, AttemptStatus.NOOP, AttemptStatus.ROLLED_BACK})


class PartitionProgress(_Text):
    """Where a partition stands for ``status`` and ``report``: the latest audit row decides."""

    DONE = "done"
    FAILED = "failed"
    PENDING = "pending"


class CheckpointState(_Text):
    """A partition's state in the Ray-side checkpoint store."""

    PENDING = "pending"
    RUNNING = "running"
    COMMITTED = "committed"
    FAILED = "failed"


class StagingStatus(_Text):
    """The status column of ``backfill_staging``."""

    PENDING = "pending"
    APPLIED = "applied"
    REJECTED = "rejected"
    #: every cell of the row is held by a row staged after it (the series rule)
    SUPERSEDED = "superseded"
    #: ``rollback`` put back the values the row's backfill replaced
    ROLLED_BACK = "rolled_back"


class PublishState(_Text):
    """What publishing a run's branch did to main."""

    #: main moved to the branch's head in one step
    PUBLISHED = "published"
    #: main already held every commit of the branch (published before, or nothing to publish)
    ALREADY_ON_MAIN = "already_on_main"
    #: main moved since the branch was made (another writer): the run is replayed on the new main
    MAIN_MOVED = "main_moved"
