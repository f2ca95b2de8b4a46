"""Staged rows checked in Arrow (backfill.iceberg.staged_entries) give exactly what the
row-by-row checks give: the same entries for clean input, the same error for bad input."""

from __future__ import annotations

import random
from decimal import Decimal

import pyarrow as pa
import pytest

from backfill.core.entries import validate_rows
from backfill.errors import InputError
from backfill.iceberg.staged_entries import read_entries
from backfill.iceberg.tables import StagingRead

COLS = ["balance", "payment"]
DEC = pa.decimal128(18, 2)
LONG = pa.int64()


def _table(rows, acct_type=LONG, value_type=DEC):
    schema = pa.schema([("backfill_id", pa.string()), ("acct", acct_type), ("backfill_month", pa.string()),
                        ("balance", value_type), ("payment", value_type)])
    return pa.Table.from_pylist(rows, schema=schema)


def _rows(n, seed=1):
    rng = random.Random(seed)
    keys = {(rng.choice(["bf-a", "bf-b"]), rng.randint(1, 10**12), f"20{rng.randint(10, 30)}-{rng.randint(1, 12):02d}")
            for _ in range(n)}
    return [{"backfill_id": b, "acct": a, "backfill_month": m,
             "balance": rng.choice([None, Decimal(rng.randint(-10**17 + 1, 10**17 - 1)).scaleb(-2)]),
             "payment": rng.choice([None, Decimal("0.01")])} for b, a, m in keys]


def test_clean_rows_give_the_row_checks_entries_in_the_same_order():
    rows = _rows(3000)
    got = read_entries(StagingRead(1, _table(rows)), COLS)
    assert got == validate_rows(rows, COLS)
    assert len({id(e.month) for e in got}) == len({e.month for e in got})  # one string per month


@pytest.mark.parametrize("change", [
    lambda rows: rows[5].update(backfill_month="2024-13"),
    lambda rows: rows[7].update(backfill_id="bad id"),
    lambda rows: rows[9].update(acct=None),
    lambda rows: rows.append(dict(rows[3], balance=Decimal("1.00"))),   # duplicate key in one id
])
def test_a_bad_row_gets_the_row_checks_error(change):
    rows = _rows(200)
    change(rows)
    with pytest.raises(InputError) as fast:
        read_entries(StagingRead(1, _table(rows)), COLS)
    with pytest.raises(InputError) as slow:
        validate_rows(rows, COLS)
    assert str(fast.value) == str(slow.value) and "nothing was written" in str(fast.value)


def test_a_wider_decimal_column_is_checked_value_by_value():
    """A type that does not prove the values fit sends the rows through the row checks."""
    rows = _rows(50)
    with pytest.raises(InputError) as fast:
        read_entries(StagingRead(1, _table(rows, value_type=pa.decimal128(20, 3))), COLS)
    with pytest.raises(InputError) as slow:
        validate_rows(StagingRead(1, _table(rows, value_type=pa.decimal128(20, 3))).iter_rows(), COLS)
    assert str(fast.value) == str(slow.value) and "more than 2 decimal places" in str(fast.value)


def test_an_empty_read_has_no_entries():
    assert read_entries(StagingRead(None, None), COLS) == []
