"""Rollback as pure logic (backfill.core.rollback): which cells go back, which stay."""

from __future__ import annotations

from decimal import Decimal

from backfill.core.rollback import Change, changes_of, judge, merge_changes, restored_arrays

D = Decimal


def test_changes_of_a_commit_name_each_cell_with_before_and_after():
    before = {1: {"h": [D(1), D(2)]}, 2: {"h": None}}
    after = {1: {"h": [D(1), D(9)]}, 2: {"h": [None, None, D(5)]}}
    ch = changes_of(before, after, "2024-01", ["h"])
    assert ch == {("2024-01", 1, "h", 1): Change(D(2), D(9), 2), ("2024-01", 2, "h", 2): Change(None, D(5), None)}


def test_merged_changes_keep_the_first_before_and_the_last_written():
    a = {("p", 1, "h", 0): Change(D(1), D(2), 3)}
    b = {("p", 1, "h", 0): Change(D(2), D(3), 3)}
    assert merge_changes(a, b) == {("p", 1, "h", 0): Change(D(1), D(3), 3)}


def test_judge_restores_only_what_still_holds_the_backfill_value():
    changes = {("p", 1, "h", 0): Change(D(1), D(2), 1), ("p", 1, "h", 1): Change(D(5), D(6), 2),
               ("p", 2, "h", 0): Change(D(1), D(2), 1), ("p", 3, "h", 0): Change(D(1), D(2), 1),
               ("p", 4, "h", 0): Change(D(1), D(2), 1)}
    current = {("p", 1): {"h": [D(2), D(6)]}, ("p", 2): {"h": [D(7)]}, ("p", 3): {"h": [D(1)]},
               ("p", 4): {"h": [D(2)]}}
    v = judge(changes, current, later_rows=[("p", 4, "h", 0)])
    assert set(v.restore) == {("p", 1, "h", 0), ("p", 1, "h", 1)}
    assert v.kept == {("p", 2, "h", 0): "changed since by another writer (now 7)",
                      ("p", 4, "h", 0): "a later backfill holds it"}
    assert v.already == 1
    assert restored_arrays(v, current) == {("p", 1): {"h": [D(1), D(5)]}}


def test_an_array_the_backfill_lengthened_or_created_is_shortened_again():
    changes = {("p", 1, "h", 3): Change(None, D(4), 1), ("p", 2, "h", 2): Change(None, D(4), None)}
    current = {("p", 1): {"h": [D(1), None, None, D(4)]}, ("p", 2): {"h": [None, None, D(4)]}}
    v = judge(changes, current, later_rows=[])
    assert restored_arrays(v, current) == {("p", 1): {"h": [D(1)]}, ("p", 2): {"h": None}}
