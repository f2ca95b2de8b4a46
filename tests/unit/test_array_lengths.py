"""Finding and describing history arrays already longer than the window (pure parts)."""

from backfill.iceberg.array_lengths import Overlong, overlong_in_rows, overlong_note


def test_only_arrays_longer_than_the_window_count():
    rows = {
        1: {"h": [1] * 37, "g": [1] * 36},   # 37 > 36; exactly W is fine
        2: {"h": None, "g": [None] * 40},   # NULL array is not long; NULL elements still count
        3: {"h": [], "g": []},
        9: {"h": [0] * 50, "g": None},
    }
    assert overlong_in_rows("2024-01", rows, ["h", "g"], 36) == [
        Overlong("2024-01", "h", 2, (1, 9)), Overlong("2024-01", "g", 1, (2,))]
    assert overlong_in_rows("2024-01", rows, ["h", "g"], 50) == []


def test_samples_are_capped_and_sorted():
    rows = {a: {"h": [0] * 5} for a in range(20, 0, -1)}
    (f,) = overlong_in_rows("2024-02", rows, ["h"], 4)
    assert f.count == 20 and f.sample_accounts == (1, 2, 3, 4, 5)


def test_note_totals_by_column_and_names_examples():
    found = [Overlong("2024-01", "h", 2, (1, 9)), Overlong("2023-12", "h", 1, (4,)),
             Overlong("2024-01", "g", 3, (2, 5, 7))]
    assert overlong_note(found, 36, "in rows this run will rewrite") == (
        "6 array(s) longer than the window 36 in rows this run will rewrite (g: 3, h: 3; "
        "e.g. 2024-01 h acct 1, 9; 2023-12 h acct 4; 2024-01 g acct 2, 5, 7); they keep their "
        "length: values are written inside the window only. Fix the source data")
    assert overlong_note([], 36, "anywhere") is None
