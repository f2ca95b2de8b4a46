"""``cleanup-audits``: delete audit rows older than a retention period.

Why through pyiceberg: it is a metadata-plus-small-files operation on a small table, so
no Spark session is worth starting. A row's age is its ``completed_at``, or its
``started_at`` when the attempt never completed; rows with neither are kept, since their
age is unknown. The delete is an Iceberg commit, so older snapshots still hold the rows
until snapshots are expired (table maintenance, outside this tool).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from backfill.config import Config
from backfill.errors import ConfigError
from backfill.iceberg import tables
from backfill.iceberg.filters import is_null, less_than

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.table import Table

DEFAULT_DAYS_TO_KEEP = 90


def cutoff(now: datetime, days_to_keep: int) -> datetime:
    """Instant before which audit rows are removed; rejects negative retention."""
    if isinstance(days_to_keep, bool) or not isinstance(days_to_keep, int) or days_to_keep < 0:
        raise ConfigError(f"--days-to-keep must be a whole number of days >= 0, got {days_to_keep!r}")
    if now.tzinfo is None:
        raise ConfigError("cutoff needs a timezone-aware 'now'")
    return now - timedelta(days=days_to_keep)


def is_expired(row: dict[str, Any], limit: datetime) -> bool:
    """The same predicate as :func:`old_rows_filter`, on one row (for tests and counting)."""
    ts = row.get("completed_at") or row.get("started_at")
    return ts is not None and ts < limit


def old_rows_filter(limit: datetime) -> BooleanExpression:
    """pyiceberg expression: completed before ``limit``, or never completed and started before it."""
    from pyiceberg.expressions import And, Or

    iso = limit.astimezone(timezone.utc).isoformat()
    return Or(less_than("completed_at", iso), And(is_null("completed_at"), less_than("started_at", iso)))


@dataclass(frozen=True)
class CleanupResult:
    cutoff: datetime
    by_backfill_id: dict[str, int]
    deleted: bool

    @property
    def total(self) -> int:
        return sum(self.by_backfill_id.values())

    def lines(self) -> list[str]:
        when = self.cutoff.isoformat(timespec="seconds")
        if not self.deleted:
            out = [f"dry run: {self.total} audit row(s) older than {when} would be removed"]
            out += [f"  {bid}: {n}" for bid, n in sorted(self.by_backfill_id.items())]
            return out
        return [f"removed {self.total} audit row(s) older than {when}"]


def _count(table: Table, limit: datetime) -> Counter[str]:
    if table.current_snapshot() is None:
        return Counter()
    arrow = table.scan(row_filter=old_rows_filter(limit), selected_fields=("backfill_id",)).to_arrow()
    return Counter(str(b) for b in arrow.column("backfill_id").to_pylist())


def cleanup_audits(catalog: Catalog, cfg: Config, days_to_keep: int = DEFAULT_DAYS_TO_KEEP,
                   dry_run: bool = False, now: datetime | None = None) -> CleanupResult:
    """Count (dry run) or delete audit rows older than ``days_to_keep`` days."""
    from pyiceberg.exceptions import CommitFailedException

    limit = cutoff(now or datetime.now(timezone.utc), days_to_keep)
    table = tables.load(catalog, cfg, "audit")
    counts = _count(table, limit)
    if dry_run or not counts:
        return CleanupResult(limit, dict(counts), deleted=not dry_run)
    # a running driver may append audit rows meanwhile: refresh and retry on conflict
    for attempt in Retrying(retry=retry_if_exception_type(CommitFailedException),
                            stop=stop_after_attempt(5), wait=wait_exponential(multiplier=0.2, max=5),
                            reraise=True):
        with attempt:
            if attempt.retry_state.attempt_number > 1:
                table = table.refresh()
                counts = _count(table, limit)
            table.delete(delete_filter=old_rows_filter(limit))
    return CleanupResult(limit, dict(counts), deleted=True)
