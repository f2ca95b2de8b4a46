"""History arrays already longer than the window: found before a run, reported, never lengthened.

The update rule never grows an array past W, but a target may already hold longer arrays
(an older loader, a changed window). The MERGE keeps their length and writes only inside
the window, so they never get worse; they are still a sign of bad source data that the
user should hear about *before* a run rewrites partitions, not only from ``verify``
afterwards. The check reads only the rows the run will touch (its accounts in its
partitions, array columns only), through pyiceberg with file pruning on both columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from backfill.config import Config
from backfill.iceberg.filters import equal, one_of

if TYPE_CHECKING:
    from pyiceberg.table import Table

    from backfill.core.plan import PartitionTask

#: Above this many accounts the pre-run check is skipped (an IN list that long makes
#: pyiceberg's planning slow); the run still never lengthens an array, and ``verify``
#: reports long arrays afterwards.
ACCOUNT_CHECK_LIMIT = 100_000
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
    """Over-long arrays among the rows ``tasks`` will touch, and a note when the check was skipped."""
    import pyarrow.compute as pc
    from pyiceberg.expressions import And

    t = cfg.tables
    accounts = {e.acct for task in tasks for e in task.entries}
    if len(accounts) > ACCOUNT_CHECK_LIMIT:
        return [], (f"array length check skipped: {len(accounts)} accounts exceed its limit of "
                    f"{ACCOUNT_CHECK_LIMIT}; `verify` reports arrays longer than the window afterwards")
    columns = [hc.array_column for hc in t.history_columns]
    found: list[Overlong] = []
    for task in tasks:
        accts = {e.acct for e in task.entries}
        scan = target.scan(row_filter=And(equal(t.month_column, task.partition), one_of(t.account_column, accts)),
                           selected_fields=(t.account_column, *columns))
        data = scan.to_arrow()  # vectorised: no Python objects per array element
        for column in columns:
            longer = pc.fill_null(pc.greater(pc.list_value_length(data[column]), t.window), False)
            f = _finding(task.partition, column, data[t.account_column].filter(longer).to_pylist())
            if f:
                found.append(f)
    return found, None
