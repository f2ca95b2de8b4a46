from decimal import Decimal

import pytest

from backfill.entries import Entry
from backfill.errors import ConfigError
from backfill.months import month_range
from backfill.plan import plan_run


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
