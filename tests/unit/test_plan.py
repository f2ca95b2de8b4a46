from decimal import Decimal

import pytest

from backfill.core.entries import Entry
from backfill.core.months import month_range
from backfill.core.plan import plan_run
from backfill.errors import ConfigError


def e(acct, month):
    return Entry(month=month, acct=acct, backfill_id="bf", values=(Decimal(1),))


PARTS = month_range("2022-01", "2024-12")


def test_window_bounds_k0_and_k_w_minus_1_only():
    plan = plan_run([e(1, "2023-12")], PARTS, window=3)
    assert [t.partition for t in plan.tasks] == ["2024-02", "2024-01", "2023-12"]


def test_partitions_before_the_month_or_past_the_window_are_never_planned():
    plan = plan_run([e(1, "2024-11")], PARTS, window=36)
    assert sorted(t.partition for t in plan.tasks) == ["2024-11", "2024-12"]


def test_missing_partitions_are_not_planned_and_entries_outside_are_rejected():
    parts = ["2024-01", "2024-03", "not-a-month"]
    plan = plan_run([e(1, "2024-02"), e(2, "2020-01")], parts, window=2, order="oldest")
    assert [t.partition for t in plan.tasks] == ["2024-03"]
    assert [(r.entry.acct, r.entry.month) for r in plan.rejected] == [(2, "2020-01")]
    assert "2020-01..2020-02" in plan.rejected[0].reason
    assert any("not 'YYYY-MM'" in n for n in plan.notes)


def test_several_months_for_one_account_share_one_task():
    plan = plan_run([e(1, "2024-01"), e(1, "2024-02")], ["2024-02"], window=36)
    (task,) = plan.tasks
    assert task.months == ("2024-01", "2024-02") and task.accounts == 1


def test_resume_from_skips_earlier_partitions():
    plan = plan_run([e(1, "2024-01")], PARTS, window=6, resume_from="2024-04")
    assert [t.partition for t in plan.tasks] == ["2024-06", "2024-05", "2024-04"]
    assert plan.skipped_by_resume == ("2024-01", "2024-02", "2024-03")
    with pytest.raises(ConfigError, match="resume-from"):
        plan_run([e(1, "2024-01")], PARTS, window=6, resume_from="April")


def test_digest_changes_with_the_entries_of_the_partition():
    a = plan_run([e(1, "2024-01")], ["2024-01", "2024-02"], window=36)
    b = plan_run([e(1, "2024-01"), e(2, "2024-02")], ["2024-01", "2024-02"], window=36)
    da = {t.partition: t.digest for t in a.tasks}
    db = {t.partition: t.digest for t in b.tasks}
    assert da["2024-01"] == db["2024-01"] and da["2024-02"] != db["2024-02"]


def _tasks(n, entries_each=1):
    from backfill.core.plan import PartitionTask

    months = month_range("2021-01", "2030-12")[:n]
    return [PartitionTask(m, tuple(e(a, m) for a in range(entries_each)), f"{i:032x}")
            for i, m in enumerate(months)]


@pytest.mark.parametrize("n,per,parallel,sizes", [
    (24, 12, 1, [12, 12]),
    (24, 12, 2, [12, 12]),
    (13, 12, 1, [7, 6]),          # balanced, never 12 + 1
    (13, 12, 4, [4, 3, 3, 3]),    # at least one batch per parallel slot
    (3, 12, 8, [1, 1, 1]),        # no empty batch
    (5, 1, 1, [1, 1, 1, 1, 1]),   # per_merge 1 = one MERGE per partition
    (36, 36, 1, [36]),
    (1, 12, 1, [1]),
])
def test_merge_batches_are_balanced_and_keep_plan_order(n, per, parallel, sizes):
    from backfill.core.plan import merge_batches

    tasks = _tasks(n)
    batches = merge_batches(tasks, per, parallel)
    assert [len(b.tasks) for b in batches] == sizes
    assert [t for b in batches for t in b.tasks] == tasks   # every task once, in order
    assert all(len(b.tasks) <= per for b in batches)


def test_merge_batches_cap_the_source_rows_and_refuse_bad_sizes():
    from backfill.core.plan import merge_batches

    tasks = _tasks(6, entries_each=4)
    # 4 entries each, cap 10: at most two tasks share a MERGE; a bigger task is alone
    assert [len(b.tasks) for b in merge_batches(tasks, 6, 1, max_source_rows=10)] == [2, 2, 2]
    assert [len(b.tasks) for b in merge_batches(tasks, 6, 1, max_source_rows=3)] == [1] * 6
    assert merge_batches([], 12) == []
    with pytest.raises(ConfigError):
        merge_batches(tasks, 0)


def test_merge_batch_union_of_entries_and_without():
    from backfill.core.plan import MergeBatch, PartitionTask

    a = PartitionTask("2024-01", (e(1, "2024-01"),), "a" * 32)
    b = PartitionTask("2024-02", (e(1, "2024-01"), e(2, "2024-02")), "b" * 32)
    batch = MergeBatch((a, b))
    assert batch.partitions == ("2024-01", "2024-02")
    assert batch.entries == (e(1, "2024-01"), e(2, "2024-02"))   # shared entry once
    assert batch.without(["2024-01"]) == MergeBatch((b,))
    assert batch.without({"2024-01": 1, "2024-02": 2}) is None
    with pytest.raises(ValueError):
        MergeBatch(())
    with pytest.raises(ValueError):
        MergeBatch((a, a))


def test_resume_from_keeps_the_skipped_tasks_with_their_digests():
    """--resume-from may only skip partitions whose commit for these entries exists: the
    plan keeps what it skipped, digests included, so the run can look each one up."""
    plan = plan_run([e(1, "2024-01"), e(2, "2024-02")], PARTS, window=6, resume_from="2024-03")
    assert [t.partition for t in plan.skipped_tasks] == ["2024-02", "2024-01"]
    full = {t.partition: t for t in plan_run([e(1, "2024-01"), e(2, "2024-02")], PARTS, window=6).tasks}
    assert all(t.digest == full[t.partition].digest for t in plan.skipped_tasks)
    assert not {t.partition for t in plan.tasks} & set(plan.skipped_by_resume)


def test_a_partition_digest_is_the_one_earlier_releases_wrote():
    """Resume and replay match commits by digest: the planner's per-month hashing must give
    exactly the digest of the previous (per-entry) formula, pinned here from it."""
    es = [Entry("2023-02", 7, "bf-b", (Decimal("1.50"), None)), Entry("2023-01", 9, "bf-a", (None, Decimal("-2.00"))),
          Entry("2023-01", 7, "bf-a", (Decimal("0.10"), Decimal("3.00")))]
    plan = plan_run(es, ["2023-01", "2023-02"], window=36)
    assert {t.partition: t.digest for t in plan.tasks} == {
        "2023-02": "271ecd58aabae646ef443223f2d2a0c5", "2023-01": "b8477863bbd20cbb18e355d967ef12b2"}


def test_tasks_hold_their_window_entries_in_sort_order_with_matching_digests():
    import random

    from backfill.core.entries import digest

    rng = random.Random(3)
    months = month_range("2021-06", "2024-12")
    es = list({(a, m): Entry(m, a, rng.choice(["x", "y"]), (Decimal(rng.randint(0, 9)), None))
               for a, m in ((rng.randint(1, 50), rng.choice(months)) for _ in range(400))}.values())
    plan = plan_run(es, PARTS, window=12)
    for t in plan.tasks:
        want = sorted((x for x in es if 0 <= months.index(t.partition) - months.index(x.month) < 12),
                      key=Entry.sort_key)
        assert list(t.entries) == want and t.digest == digest(want)
    assert list(plan.entries) == sorted(es, key=Entry.sort_key)
    assert not plan.rejected
