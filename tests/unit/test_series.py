"""The series rule (backfill.core.series): the value staged last wins, per cell, whatever
order the runs happen in."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from backfill.core.series import Staged, newer_rivals, resolve
from backfill.core.states import StagingStatus

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
P, A, S = StagingStatus.PENDING, StagingStatus.APPLIED, StagingStatus.SUPERSEDED


def row(bid: str, minute: int, *values: str | None, acct: int = 1, month: str = "2022-01",
        status: StagingStatus = P) -> Staged:
    vals = tuple(None if v is None else Decimal(v) for v in values)
    return Staged(bid, acct, month, T0 + timedelta(minutes=minute), status, vals)


def test_a_later_row_wins_its_cells_and_leaves_the_others():
    a = row("A", 0, "1.00", "5.00")
    b = row("B", 1, "2.00", None)
    res = resolve([a], [b])
    assert [e.values for e in res.entries] == [(None, Decimal("5.00"))]
    assert res.superseded == ()


def test_an_entry_that_wins_no_cell_is_superseded_naming_the_winner():
    res = resolve([row("A", 0, "1.00", None)], [row("B", 1, "2.00", None, status=A)])
    assert res.entries == ()
    assert [(s.backfill_id, s.by, s.reason()) for s in res.superseded] == [("A", ("B",), "superseded by B")]


def test_an_earlier_row_does_not_mask_and_an_applied_one_is_displaced():
    res = resolve([row("B", 5, "2.00", None)], [row("A", 0, "1.00", None, status=A)])
    assert [e.values for e in res.entries] == [(Decimal("2.00"), None)]
    assert [(d.backfill_id, d.by) for d in res.displaced] == [("A", ("B",))]


def test_a_run_whose_entries_differ_from_its_staged_rows_says_so():
    """A large MERGE may read its source from staging only when staging holds the entries
    as planned: not after the rule took a row out (superseded) or a cell (masked)."""
    assert not resolve([row("B", 5, "2.00", None)], [row("A", 0, "1.00", None, status=A)]).rewrites_staged_rows
    assert resolve([row("A", 0, "1.00", "5.00")], [row("B", 1, "2.00", None)]).rewrites_staged_rows  # masked
    assert resolve([row("A", 0, "1.00", None)], [row("B", 1, "2.00", None)]).rewrites_staged_rows  # superseded
    two_ids = resolve([row("A", 0, "1.00", None), row("B", 1, "2.00", None)], [])
    assert two_ids.rewrites_staged_rows and [e.backfill_id for e in two_ids.entries] == ["B"]


def test_partly_replaced_applied_row_is_not_displaced():
    res = resolve([row("B", 5, "2.00", None)], [row("A", 0, "1.00", "7.00", status=A)])
    assert res.displaced == ()


def test_tie_on_created_at_goes_to_the_greater_id_and_consolidation_follows_the_rule():
    a, b = row("A", 3, "1.00"), row("B", 3, "2.00")
    res = resolve([a, b], [])
    assert [(e.backfill_id, e.values) for e in res.entries] == [("B", (Decimal("2.00"),))]
    assert [s.backfill_id for s in res.superseded] == ["A"]


def test_rejected_and_rolled_back_rows_claim_no_cell():
    for status in (StagingStatus.REJECTED, StagingStatus.ROLLED_BACK):
        res = resolve([row("A", 0, "1.00")], [row("B", 9, "2.00", status=status)])
        assert [e.values for e in res.entries] == [(Decimal("1.00"),)]


def test_other_accounts_and_months_do_not_compete():
    res = resolve([row("A", 0, "1.00")], [row("B", 9, "2.00", acct=2), row("C", 9, "3.00", month="2022-02")])
    assert [e.values for e in res.entries] == [(Decimal("1.00"),)]


def test_a_null_created_at_sorts_first():
    hand = Staged("Z", 1, "2022-01", None, P, (Decimal("9.00"),))
    assert resolve([hand], [row("A", 0, "1.00")]).entries == ()


def test_newer_rivals_names_the_cells_replaced():
    a = row("A", 0, "1.00", "5.00", status=A)
    rivals = newer_rivals(a, [row("B", 1, "2.00", None), row("C", -1, None, "6.00")])
    assert {c: r.backfill_id for c, r in rivals.items()} == {0: "B"}


def _simulate(rows: list[Staged], order: list[str], rng: random.Random) -> dict[tuple[int, str, int], Decimal]:
    """Runs of each id in ``order`` (an id may appear twice: a run cut short, then resumed),
    each resolving against the staging statuses of its time, as the tool does."""
    staging = list(rows)
    cells: dict[tuple[int, str, int], Decimal] = {}
    for i, bid in enumerate(order):
        mine = [r for r in staging if r.backfill_id == bid and r.status == P]
        others = [r for r in staging if not (r.backfill_id == bid and r.status == P)]
        res = resolve(mine, others)
        cut = order.index(bid) == i and order.count(bid) > 1  # first of two: killed part way
        written = [e for e in res.entries if not cut or rng.random() < 0.5]
        for e in written:
            for c, v in enumerate(e.values):
                if v is not None:
                    cells[(e.acct, e.month, c)] = v
        if cut:
            continue  # a killed run marks nothing
        marks = {s.key: S for s in res.superseded}
        marks.update({d.key: S for d in res.displaced})
        marks.update({(e.backfill_id, e.acct, e.month): A for e in res.entries})
        staging = [Staged(r.backfill_id, r.acct, r.month, r.created_at,
                          marks.get(r.key, r.status) if r.status in (P, A) else r.status, r.values)
                   for r in staging]
    return cells


def test_any_order_of_runs_ends_with_the_value_staged_last():
    rng = random.Random(20261202)
    for _ in range(300):
        rows = []
        for n, bid in enumerate(rng.sample(["A", "B", "C", "D"], 4)):
            for acct in range(1, 4):
                if rng.random() < 0.7:
                    vals = [rng.choice([None, f"{rng.randint(1, 99)}.00"]) for _ in range(2)]
                    rows.append(row(bid, n * 10 + rng.randint(0, 12), *vals, acct=acct))
        ids = sorted({r.backfill_id for r in rows})
        order = ids + rng.sample(ids, k=min(2, len(ids)))
        rng.shuffle(order)
        # every id ends with a complete run; its first run (of two or more) is cut short
        cells = _simulate(rows, order + ids, rng)
        expected: dict[tuple[int, str, int], tuple[Staged, Decimal]] = {}
        for r in rows:
            for c, v in enumerate(r.values):
                cell = (r.acct, r.month, c)
                if v is not None and (cell not in expected or r.order() > expected[cell][0].order()):
                    expected[cell] = (r, v)
        assert cells == {k: v for k, (_, v) in expected.items()}, (order, rows)


def test_verify_expects_only_what_a_commit_could_write():
    from backfill.ops.verify import expected_for

    cols = ["balance_history", "payment_history"]
    applied = row("A", 0, "1.00", None, status=A)
    elsewhere = row("A", 1, "3.00", None, month="2021-12")       # pending, outside the run's month filter
    later = row("B", 2, None, "4.00")
    rivalled = row("A", 0, None, "2.00", acct=2, status=A)
    newer = row("B", 3, None, "5.00", acct=2)
    rows = [applied, elsewhere, later, rivalled, newer]
    exp = expected_for({"A"}, 10**15, "2022-03", rows, 36, cols)
    assert exp.must == {1: {"balance_history": {2: Decimal("1.00")}}}
    assert exp.may == {2: {"payment_history": {2: Decimal("2.00")}}}
    planned = expected_for({"A"}, 10**15, "2022-03", rows, 36, cols, planned={elsewhere.key})
    assert planned.must[1]["balance_history"] == {2: Decimal("1.00"), 3: Decimal("3.00")}
