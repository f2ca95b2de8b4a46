"""The run's own rows are taken out of the competing rows whatever string type each side has."""

from __future__ import annotations

import pyarrow as pa

from backfill.iceberg.tables import competing_rows


def _rows(string_type: pa.DataType, rows: list[tuple[str, int, str, str]]) -> pa.Table:
    schema = pa.schema([("backfill_id", string_type), ("acct", pa.int64()),
                        ("backfill_month", string_type), ("status", string_type)])
    return pa.Table.from_pylist([dict(zip(schema.names, r, strict=True)) for r in rows], schema)


SCANNED = [("bf-a", 1, "2024-01", "pending"), ("bf-b", 1, "2024-01", "applied"),
           ("bf-a", 2, "2024-02", "pending"), ("bf-c", 3, "2024-02", "pending")]
OWN = [("bf-a", 1, "2024-01", "pending"), ("bf-a", 2, "2024-02", "pending")]


def test_own_rows_are_excluded_when_the_scan_returns_large_strings():
    # a scan of selected fields gives large_string, the run's whole-row read gives string
    left = competing_rows(_rows(pa.large_string(), SCANNED), {1, 2, 3}, _rows(pa.string(), OWN))
    assert sorted(left.column("backfill_id").to_pylist()) == ["bf-b", "bf-c"]


def test_same_types_and_account_filter():
    left = competing_rows(_rows(pa.string(), SCANNED), {1}, _rows(pa.string(), OWN))
    assert left.to_pylist() == [{"backfill_id": "bf-b", "acct": 1, "backfill_month": "2024-01",
                                 "status": "applied"}]


def test_a_row_of_another_status_is_not_the_run_s_own():
    own = [("bf-a", 1, "2024-01", "applied")]   # the run's row is applied; the pending one competes
    left = competing_rows(_rows(pa.large_string(), SCANNED), {1}, _rows(pa.string(), own))
    assert sorted(left.column("backfill_id").to_pylist()) == ["bf-a", "bf-b"]


def test_no_exclusion_keeps_every_row_of_the_accounts():
    assert competing_rows(_rows(pa.string(), SCANNED), {2, 3}, None).num_rows == 2
