"""``compact``: fold the small files a merge-on-read backfill adds back into the base files.

Why a separate step: a merge-on-read MERGE writes, for each touched (month, bucket), one
small data file with the changed rows and one delete file masking their old versions.
That is what makes the backfill cheap (bytes written follow the changed rows), but every
later reader pays for the extra files until they are rewritten. Compaction rewrites whole
files, so it costs about what a copy-on-write MERGE would have, once, when the operator
chooses (after the last backfill of a batch, off-peak), and only in the partitions the
backfills touched. Its cost is measured and printed so it can be weighed: files and bytes
before and after, bytes rewritten, seconds per partition.

It runs Iceberg's own ``rewrite_data_files`` procedure per partition (with
``delete-file-threshold`` 1, so every file with a delete is rewritten, and
``remove-dangling-deletes``), in one RayDP session on one Ray actor; each call is an
atomic Iceberg commit that retries on conflicts, so it is safe beside running backfills
and safe to interrupt and rerun.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from actors.partition_actor import one_session, run_statement
from backfill.config import Config
from backfill.core.commit_tags import tagged_ids, tagged_partitions
from backfill.core.identifiers import check_backfill_id, month_literal, quote_identifier, quote_table
from backfill.core.months import is_month
from backfill.errors import BackfillError, InputError
from backfill.iceberg import tables
from backfill.iceberg.filters import equal

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

    from cluster.catalog import ResolvedCatalog

log = logging.getLogger(__name__)

#: Procedure options: rewrite every file that has a delete file (and group small ones),
#: drop delete files that no longer apply, commit in groups so a long run makes progress.
REWRITE_OPTIONS = {
    "delete-file-threshold": "1",
    "min-input-files": "2",
    "remove-dangling-deletes": "true",
    # Rewritten files must get the new commit's sequence number: with the starting one, a
    # delete file committed in that same snapshot (a batch MERGE over several partitions
    # is one) is not older than the rewritten data and is never dropped as dangling.
    # The starting number only helps against concurrent equality deletes, never written here.
    "use-starting-sequence-number": "false",
    "partial-progress.enabled": "true",
}


@dataclass(frozen=True)
class FileStats:
    """Live files of one partition, from the table's current snapshot."""

    data_files: int = 0
    delete_files: int = 0
    data_bytes: int = 0
    delete_bytes: int = 0

    @property
    def files(self) -> int:
        return self.data_files + self.delete_files


@dataclass(frozen=True)
class PartitionCompaction:
    partition: str
    before: FileStats
    after: FileStats
    rewritten_data_files: int
    added_data_files: int
    rewritten_bytes: int
    seconds: float


@dataclass(frozen=True)
class CompactionResult:
    partitions: tuple[PartitionCompaction, ...]
    seconds: float
    dry_run: bool = False

    def totals(self) -> dict[str, int]:
        p = self.partitions
        return {
            "files_before": sum(x.before.files for x in p), "files_after": sum(x.after.files for x in p),
            "delete_files_before": sum(x.before.delete_files for x in p),
            "delete_files_after": sum(x.after.delete_files for x in p),
            "bytes_before": sum(x.before.data_bytes + x.before.delete_bytes for x in p),
            "bytes_after": sum(x.after.data_bytes + x.after.delete_bytes for x in p),
            "rewritten_bytes": sum(x.rewritten_bytes for x in p),
            "rewritten_data_files": sum(x.rewritten_data_files for x in p),
        }

    def lines(self) -> list[str]:
        t = self.totals()
        if self.dry_run:
            return [f"dry run: {len(self.partitions)} partition(s) hold {t['files_before']} files "
                    f"({t['delete_files_before']} delete files, {_mb(t['bytes_before'])}); "
                    f"compaction would rewrite up to {_mb(t['bytes_before'])}"]
        return [
            f"compacted {len(self.partitions)} partition(s) in {self.seconds:.1f} s",
            f"  files {t['files_before']} -> {t['files_after']} (delete files "
            f"{t['delete_files_before']} -> {t['delete_files_after']})",
            f"  bytes {_mb(t['bytes_before'])} -> {_mb(t['bytes_after'])}; rewritten "
            f"{t['rewritten_data_files']} data files, {_mb(t['rewritten_bytes'])}",
        ]


def _mb(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


def rewrite_sql(cfg: Config, partition: str) -> str:
    """The ``rewrite_data_files`` call for one month partition (validated, quoted values only)."""
    catalog, namespace, table = cfg.table_parts("target")
    where = f"{quote_identifier(cfg.tables.month_column, 'month column')} = {month_literal(partition)}"
    options = ", ".join(f"'{k}', '{v}'" for k, v in REWRITE_OPTIONS.items())
    # The table argument is parsed as a dotted identifier; its parts passed check_identifier.
    return (f"CALL {quote_identifier(catalog, 'catalog name')}.system.rewrite_data_files("
            f"table => '{namespace}.{table}', where => \"{where}\", options => map({options}))")


def backfilled_partitions(table: Table, backfill_ids: Sequence[str]) -> list[str]:
    """Partitions with a commit of any of ``backfill_ids`` (from snapshot summaries), newest first."""
    ids = {check_backfill_id(b) for b in backfill_ids}
    found: set[str] = set()
    for snap in table.metadata.snapshots:
        props = snap.summary.additional_properties if snap.summary else {}
        if ids & tagged_ids(props):
            found.update(tagged_partitions(props))
    return sorted(found, reverse=True)


def file_stats(table: Table, month_column: str, partition: str) -> FileStats:
    """Live data and delete files of ``partition`` (scan planning, metadata only)."""
    data = deletes = data_bytes = delete_bytes = 0
    seen: set[str] = set()
    for task in table.scan(row_filter=equal(month_column, partition)).plan_files():
        data += 1
        data_bytes += task.file.file_size_in_bytes
        for d in task.delete_files:
            if d.file_path not in seen:
                seen.add(d.file_path)
                deletes += 1
                delete_bytes += d.file_size_in_bytes
    return FileStats(data, deletes, data_bytes, delete_bytes)


def compact(cfg: Config, catalog: Catalog, resolved_catalog: ResolvedCatalog, partitions: Sequence[str],
            dry_run: bool = False, progress: Callable[[str], None] | None = None) -> CompactionResult:
    """Rewrite the data and delete files of ``partitions``; report what it cost."""
    bad = [p for p in partitions if not is_month(p)]
    if bad:
        raise InputError(f"partition(s) {bad} are not months of the form 'YYYY-MM'")
    if not partitions:
        raise InputError("no partition to compact: name --backfill-id or --partition")
    target = tables.load(catalog, cfg, "target")
    month = cfg.tables.month_column
    statements = [(p, rewrite_sql(cfg, p)) for p in partitions]  # every value checked before Spark
    if dry_run:
        stats = [file_stats(target, month, p) for p in partitions]
        return CompactionResult(tuple(PartitionCompaction(p, s, s, 0, 0, 0, 0.0)
                                      for p, s in zip(partitions, stats, strict=True)), 0.0, dry_run=True)
    say = progress or log.info
    t0 = time.monotonic()
    done: list[PartitionCompaction] = []
    with one_session(cfg, resolved_catalog, f"backfill-compact-{int(time.time())}") as actor:
        for i, (partition, statement) in enumerate(statements, start=1):
            item = _compact_one(cfg, target, actor, partition, statement)
            done.append(item)
            say(f"[{i}/{len(statements)}] {partition}: files {item.before.files} -> {item.after.files} "
                f"(delete files {item.before.delete_files} -> {item.after.delete_files}), rewrote "
                f"{_mb(item.rewritten_bytes)} in {item.seconds:.1f} s")
    return CompactionResult(tuple(done), time.monotonic() - t0)


def _compact_one(cfg: Config, target: Table, actor: Any, partition: str, statement: str) -> PartitionCompaction:
    """One partition's ``rewrite_data_files`` call, with its files before and after."""
    month = cfg.tables.month_column
    before = file_stats(target.refresh(), month, partition)
    started = time.monotonic()
    try:
        row = run_statement(actor, statement, (quote_table(cfg.table_parts("target")),))[0]
    except BackfillError as exc:
        raise type(exc)(f"compacting {partition}: {exc}; partitions compacted before it stay compacted, "
                        "rerun to finish") from None
    seconds = time.monotonic() - started
    after = file_stats(target.refresh(), month, partition)
    # rewrite_data_files returns (rewritten files, added files, rewritten bytes, failed files)
    return PartitionCompaction(partition, before, after, int(row[0]), int(row[1]), int(row[2]), seconds)
