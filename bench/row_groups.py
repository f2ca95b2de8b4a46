"""What a MERGE must read at best: the row groups of the touched partitions whose account
min/max can hold an account that partition's MERGE updates.

Issue 15's bytes-read target is "at most 2x the row groups that can hold an affected
account". A row group whose min/max excludes every such account is one a perfect pruning
skips; one whose range includes one must be read (min/max cannot say more; a bloom filter
can, so a reader may read less). Computed from the Parquet footers of the target's data
files before the MERGE, through the table's own FileIO, so it holds for local disk and S3.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from backfill.core.plan import PartitionTask


@dataclass(frozen=True)
class CanHold:
    """Row groups and compressed bytes of the touched partitions, all and those that can hold
    an affected account."""

    row_groups: int
    row_groups_can_hold: int
    bytes: int
    bytes_can_hold: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _in_range(accounts: Sequence[int], low: int, high: int) -> bool:
    i = bisect.bisect_left(accounts, low)
    return i < len(accounts) and accounts[i] <= high


def _month_of(partition: dict[str, Any], month_column: str) -> str:
    return str(partition.get(month_column, next(iter(partition.values()))))


def can_hold(table: Any, tasks: Sequence[PartitionTask], month_column: str, account_column: str) -> CanHold:
    """:class:`CanHold` of pyiceberg ``table``'s current data files for ``tasks``."""
    import pyarrow.parquet as pq

    accounts = {t.partition: sorted({e.acct for e in t.entries}) for t in tasks}
    groups = holding = size = held = 0
    for f in table.inspect.files().to_pylist():
        wanted = accounts.get(_month_of(f["partition"], month_column))
        if f["content"] != 0 or wanted is None:
            continue
        with table.io.new_input(f["file_path"]).open() as stream:
            meta = pq.ParquetFile(stream).metadata
        col = next(i for i in range(meta.num_columns) if meta.schema.column(i).path == account_column)
        for g in range(meta.num_row_groups):
            rg = meta.row_group(g)
            nbytes = sum(rg.column(c).total_compressed_size for c in range(rg.num_columns))
            stats = rg.column(col).statistics
            may = stats is None or not stats.has_min_max or _in_range(wanted, int(stats.min), int(stats.max))
            groups, size = groups + 1, size + nbytes
            if may:
                holding, held = holding + 1, held + nbytes
    return CanHold(groups, holding, size, held)
