from decimal import Decimal

import pytest

from backfill.core.entries import digest, validate_rows
from backfill.errors import InputError

COLS = ["balance", "payment"]


def row(acct=1, month="2023-12", bid="bf-1", **vals):
    r = {"backfill_id": bid, "acct": acct, "backfill_month": month}
    r.update({c: vals.get(c, Decimal("1.00")) for c in COLS})
    return r


def test_valid_rows_become_sorted_entries():
    es = validate_rows([row(2, "2024-01"), row(1, "2023-12", payment=None)], COLS)
    assert [(e.acct, e.month) for e in es] == [(1, "2023-12"), (2, "2024-01")]
    assert es[0].values == (Decimal("1.00"), None)


@pytest.mark.parametrize("bad,match", [
    (row(month="2023-13"), "'2023-13' is not of the form"),
    (row(month="2023-1"), "'2023-1'"),
    (row(month="23-12"), "'23-12'"),
    (row(month=""), "''"),
    (row(month=None), "None"),
    (row(acct=None), "account is NULL"),
    (row(bid="x'; drop"), "backfill id"),
    (row(balance=Decimal("1.234")), "more than 2 decimal places"),
    (row(balance=Decimal("1E+17")), "does not fit DECIMAL"),
    (row(balance=Decimal("NaN")), "not finite"),
])
def test_each_bad_row_is_named(bad, match):
    with pytest.raises(InputError, match=match) as exc:
        validate_rows([row(5, "2023-01"), bad], COLS)
    assert "nothing was written" in str(exc.value)


def test_duplicates_within_one_backfill_id_are_an_error_across_ids_a_correction():
    with pytest.raises(InputError, match="duplicate entry for acct=1 month='2023-12' in backfill_id='bf-1'"):
        validate_rows([row(), row()], COLS)
    # the same cell under two ids is a correction of a correction: the series rule decides
    assert [e.backfill_id for e in validate_rows([row(), row(bid="bf-2")], COLS)] == ["bf-1", "bf-2"]


def test_all_problems_are_listed():
    with pytest.raises(InputError, match="3 invalid staging row"):
        validate_rows([row(acct=None), row(month="x"), row(acct=2), row(acct=2)], COLS)


def test_digest_is_order_independent_and_content_sensitive():
    a = validate_rows([row(1), row(2)], COLS)
    b = validate_rows([row(2), row(1)], COLS)
    c = validate_rows([row(1), row(2, balance=Decimal("2.00"))], COLS)
    assert digest(a) == digest(b) != digest(c)


def test_an_entry_survives_pickling_as_ray_sends_it():
    import pickle

    from backfill.core.entries import Entry

    entry = Entry("2024-01", 5, "bf", (Decimal("1.00"), None))
    assert pickle.loads(pickle.dumps(entry)) == entry
