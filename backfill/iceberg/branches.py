"""Write-audit-publish on the target: a run's branch, and moving main to it in one step.

Why a branch: every MERGE of a run commits on its own; on main, a reader would see some
partitions corrected and others not, and histories that contradict each other. On a
branch, main changes once, when every partition is committed (and verified).

Publishing is a fast-forward with a compare-and-swap: main moves to the branch's head
only if main is still an ancestor of it, and the catalog commit asserts that main has
not moved since it was read. If another writer moved main meanwhile (the monthly load,
another backfill, a compaction), nothing is lost or overwritten: the caller plans and
applies the run again on the new main.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from backfill.core.names import MAIN_BRANCH
from backfill.core.retry import RetryPolicy
from backfill.core.states import PublishState
from backfill.iceberg.retrying import commit_retryable_errors, ride_out, unreachable_errors
from backfill.iceberg.tables import lineage

if TYPE_CHECKING:
    from pyiceberg.table import Table

log = logging.getLogger(__name__)


def ensure_branch(table: Table, branch: str, policy: RetryPolicy | None = None) -> bool:
    """Create ``branch`` at main's head unless it exists; False when main has no snapshot
    (an empty target: there is nothing a branch could start from, nor anything to write)."""
    return ride_out(policy or RetryPolicy(), commit_retryable_errors(), lambda: _ensure_branch(table, branch))


def _ensure_branch(table: Table, branch: str) -> bool:
    table.refresh()
    if branch in table.metadata.refs:
        return True
    head = table.current_snapshot()
    if head is None:
        return False
    table.manage_snapshots().create_branch(head.snapshot_id, branch).commit()
    log.info("created branch %s of the target at main's snapshot %s", branch, head.snapshot_id)
    return True


def publish(table: Table, branch: str, policy: RetryPolicy | None = None) -> PublishState:
    """Move main to ``branch``'s head if main is an ancestor of it (one catalog commit).

    Safe to retry when the catalog was unreachable: a commit that landed is found on main.
    """
    return ride_out(policy or RetryPolicy(), unreachable_errors(), lambda: _publish(table, branch))


def _publish(table: Table, branch: str) -> PublishState:
    from pyiceberg.exceptions import CommitFailedException

    table.refresh()
    head, main = table.snapshot_by_name(branch), table.snapshot_by_name(MAIN_BRANCH)
    if head is None:
        raise ValueError(f"the target has no branch {branch!r} to publish")
    main_ids = {s.snapshot_id for s in lineage(table, MAIN_BRANCH)}
    if head.snapshot_id in main_ids:
        return PublishState.ALREADY_ON_MAIN
    if main is not None and main.snapshot_id not in {s.snapshot_id for s in lineage(table, branch)}:
        return PublishState.MAIN_MOVED
    try:
        table.manage_snapshots().set_current_snapshot(snapshot_id=head.snapshot_id).commit()
    except CommitFailedException:  # main moved between the read and the commit
        return PublishState.MAIN_MOVED
    log.info("published branch %s: main is now snapshot %s", branch, head.snapshot_id)
    return PublishState.PUBLISHED


def drop_branch(table: Table, branch: str, policy: RetryPolicy | None = None) -> bool:
    """Remove ``branch`` (its snapshots stay until expired); False if it did not exist."""
    return ride_out(policy or RetryPolicy(), commit_retryable_errors(), lambda: _drop_branch(table, branch))


def _drop_branch(table: Table, branch: str) -> bool:
    table.refresh()
    if branch not in table.metadata.refs:
        return False
    table.manage_snapshots().remove_branch(branch).commit()
    return True


def moved_by(table: Table, branch: str) -> list[str]:
    """What moved main since the branch left it: one line per snapshot, oldest first."""
    table.refresh()
    ours = {s.snapshot_id for s in lineage(table, branch)}
    theirs = [s for s in lineage(table, MAIN_BRANCH) if s.snapshot_id not in ours]
    return [f"snapshot {s.snapshot_id} ({s.summary.operation.value if s.summary else '?'})" for s in reversed(theirs)]
