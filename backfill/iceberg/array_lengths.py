"""History arrays already longer than the window: found by the plan, reported, never lengthened.

The update rule never grows an array past W, but a target may already hold longer arrays
(an older loader, a changed window). The MERGE keeps their length and writes only inside
the window, so they never get worse; they are still a sign of bad source data that the
user should hear about before main changes, not only from ``verify`` afterwards: a dry
run prints it with the plan, a run (which never stops for it) works it out in the
background and prints it before it publishes. The check reads only the rows the run will
touch (its accounts in its partitions, array columns only), through pyiceberg with file
pruning on both columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from backfill.config import Config
from backfill.iceberg.filters import equal, one_of

if TYPE_CHECKING:
    from pyiceberg.table import DataScan, Table

    from backfill.core.plan import PartitionTask

#: The pre-run check reads at most this many bytes of data files on the driver (summed
#: over the planned partitions, after pruning). A larger read would make validation as
#: slow as the run; past it the check is skipped with a note, the run still never
#: lengthens an array, and ``verify`` reports long arrays afterwards.
CHECK_MAX_BYTES = 1 << 30
#: Iceberg's metrics evaluators stop using min/max statistics for IN lists longer than
#: this (pyiceberg and Java alike), so a longer list buys no pruning, only binding cost.
PRUNING_IN_LIMIT = 200
_SAMPLES = 5


@dataclass(frozen=True)
class Overlong:
    """Arrays of one column in one partition that are longer than the window."""

    partition: str
    column: str
    count: int
    sample_accounts: tuple[int, ...]


def overlong_in_rows(partition: str, rows: Mapping[int, Mapping[str, Any]], columns: Sequence[str],
                     window: int) -> list[Overlong]:
    """Pure: the over-long arrays among ``rows`` (account -> row) of one partition."""
    return [f for column in columns if (f := _finding(partition, column, (
        a for a, r in rows.items() if r.get(column) is not None and len(r[column]) > window)))]


def _finding(partition: str, column: str, accounts: Iterable[int]) -> Overlong | None:
    accts = sorted(accounts)
    return Overlong(partition, column, len(accts), tuple(accts[:_SAMPLES])) if accts else None


def overlong_note(found: Iterable[Overlong], window: int, when: str) -> str | None:
    """One line for plan or verify notes; None when nothing is over-long."""
    found = list(found)
    if not found:
        return None
    total = sum(f.count for f in found)
    by_column: dict[str, int] = {}
    for f in found:
        by_column[f.column] = by_column.get(f.column, 0) + f.count
    columns = ", ".join(f"{c}: {n}" for c, n in sorted(by_column.items()))
    examples = "; ".join(f"{f.partition} {f.column} acct {', '.join(map(str, f.sample_accounts))}"
                         for f in found[:3])
    return (f"{total} array(s) longer than the window {window} {when} ({columns}; e.g. {examples}); "
            "they keep their length: values are written inside the window only. Fix the source data")


def find_overlong(target: Table, cfg: Config, tasks: Sequence[PartitionTask]) -> tuple[list[Overlong], str | None]:
    """Over-long arrays among the rows ``tasks`` will touch, and a note when the check was skipped.

    Each partition is read in record batches (bounded memory) and filtered on the run's
    accounts with Arrow's ``is_in``; the scan filter names the accounts only when the list
    is short enough for file pruning.
    """
    scans = [(task.partition, _scan(target, cfg, task)) for task in tasks]
    size = sum(f.file.file_size_in_bytes for _, scan in scans for f in scan.plan_files())
    if size > CHECK_MAX_BYTES:
        return [], (f"array length check skipped: it would read {size / 2**20:.0f} MiB of data files on the "
                    f"driver (limit {CHECK_MAX_BYTES / 2**20:.0f} MiB); `verify` reports arrays longer than "
                    "the window afterwards")
    found: list[Overlong] = []
    for (partition, scan), task in zip(scans, tasks, strict=True):
        found += _overlong_in_scan(partition, scan, cfg, {e.acct for e in task.entries})
    return found, None


def _scan(target: Table, cfg: Config, task: PartitionTask) -> DataScan:
    from pyiceberg.expressions import And

    t = cfg.tables
    accts = {e.acct for e in task.entries}
    flt = equal(t.month_column, task.partition)
    if len(accts) <= PRUNING_IN_LIMIT:
        flt = And(flt, one_of(t.account_column, accts))
    return target.scan(row_filter=flt, selected_fields=(t.account_column, *(h.array_column for h in t.history_columns)))


def _overlong_in_scan(partition: str, scan: DataScan, cfg: Config, accounts: set[int]) -> list[Overlong]:
    import pyarrow as pa
    import pyarrow.compute as pc

    t = cfg.tables
    columns = [hc.array_column for hc in t.history_columns]
    hits: dict[str, list[int]] = {c: [] for c in columns}
    wanted = pa.array(sorted(accounts), pa.int64())
    for batch in scan.to_arrow_batch_reader():
        mine = pc.is_in(pc.cast(batch.column(t.account_column), pa.int64()), value_set=wanted)
        for column in columns:
            lengths = pc.list_value_length(batch.column(column))
            longer = pc.and_(mine, pc.fill_null(pc.greater(lengths, t.window), False))
            hits[column] += batch.column(t.account_column).filter(longer).to_pylist()
    return [f for column in columns if (f := _finding(partition, column, hits[column]))]
