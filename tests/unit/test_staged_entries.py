"""Staged rows checked in Arrow (backfill.iceberg.staged_entries) give exactly what the
row-by-row checks give: the same entries for clean input, the same error for bad input."""

from __future__ import annotations

import pickle
import random
from decimal import Decimal

import pyarrow as pa
import pytest

from backfill.core.entries import Entry, digest, validate_rows
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
    want = validate_rows(rows, COLS)
    assert got == want
    assert len({id(e.month) for e in got}) == len({e.month for e in got})  # one string per month
    # values kept as Arrow's text: the same values, fingerprints (so digests) and hashes
    assert [e.values for e in got] == [e.values for e in want]
    assert [e.fingerprint() for e in got] == [e.fingerprint() for e in want]
    assert digest(got) == digest(want) and {hash(e) for e in got} == {hash(e) for e in want}


def test_packed_entries_travel_to_actors_as_they_are():
    [entry] = read_entries(StagingRead(1, _table([{"backfill_id": "bf-a", "acct": 7, "backfill_month": "2024-01",
                                                   "balance": Decimal("-0.05"), "payment": None}])), COLS)
    back = pickle.loads(pickle.dumps(entry))
    assert back == entry and back.values == (Decimal("-0.05"), None)
    assert len(pickle.dumps(entry)) < len(pickle.dumps(Entry(entry.month, 7, "bf-a", entry.values))) + 64
    with pytest.raises(AttributeError):
        entry.acct = 8


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


def test_packing_in_slices_gives_the_same_entries(monkeypatch):
    import backfill.iceberg.staged_entries as staged

    rows = _rows(500, seed=3)
    whole = read_entries(StagingRead(1, _table(rows)), COLS)
    monkeypatch.setattr(staged, "PACK_ROWS", 7)
    sliced = read_entries(StagingRead(1, _table(rows)), COLS)
    assert [e.fingerprint() for e in sliced] == [e.fingerprint() for e in whole] and sliced == whole
