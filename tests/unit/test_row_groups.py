"""bench.row_groups: which row groups a perfect min/max pruning still reads, on a real
Iceberg table (pyiceberg's SQL catalog on SQLite) of account-sorted files with small row
groups."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa

from backfill.core.entries import Entry
from backfill.core.plan import PartitionTask
from bench.row_groups import _in_range, can_hold


def test_in_range():
    assert _in_range([5, 55], 1, 10) and _in_range([5, 55], 55, 60)
    assert not _in_range([5, 55], 6, 54) and not _in_range([], 0, 100)


def test_only_row_groups_whose_range_holds_an_affected_account_count(tmp_path):
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.transforms import IdentityTransform
    from pyiceberg.types import LongType, NestedField, StringType

    catalog = SqlCatalog("t", uri=f"sqlite:///{tmp_path}/c.db", warehouse=f"file://{tmp_path}")
    catalog.create_namespace("db")
    schema = Schema(NestedField(1, "month", StringType(), required=False),
                    NestedField(2, "acct", LongType(), required=False))
    table = catalog.create_table("db.t", schema, partition_spec=PartitionSpec(
        PartitionField(source_id=1, field_id=1000, transform=IdentityTransform(), name="month")),
        properties={"write.parquet.row-group-limit": "10"})
    rows = [("2024-01", a) for a in range(100)] + [("2024-02", a) for a in range(100)]
    table.append(pa.table({"month": [m for m, _ in rows], "acct": [a for _, a in rows]},
                          schema=pa.schema([("month", pa.string()), ("acct", pa.int64())])))

    def task(month: str, *accounts: int) -> PartitionTask:
        return PartitionTask(month, tuple(Entry(month, a, "bf", (Decimal(1),)) for a in accounts), "d")

    # 2024-01: accounts 5 and 55 sit in 2 of its 10 row groups; 2024-02 is not touched
    got = can_hold(table, [task("2024-01", 5, 55)], "month", "acct")
    assert (got.row_groups, got.row_groups_can_hold) == (10, 2)
    assert 0 < got.bytes_can_hold < got.bytes
    both = can_hold(table, [task("2024-01", 5, 55), task("2024-02", *range(100))], "month", "acct")
    assert (both.row_groups, both.row_groups_can_hold) == (20, 12)
