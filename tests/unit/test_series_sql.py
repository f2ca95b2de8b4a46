"""SQL of the series rule, publish branches and rollback: every identifier and value checked."""

from __future__ import annotations

from decimal import Decimal

import pytest

from backfill.config import Config
from backfill.core.commit_tags import rollback_branch, run_branch
from backfill.core.states import StagingStatus
from backfill.errors import BackfillError, InputError
from backfill.sql.merge import (
    merge_sql,
    restore_sql,
    revive_superseded_sql,
    rollback_staging_sql,
    set_status_sql,
    target_table,
)

CFG = Config()


def test_run_branch_is_stable_per_id_set_and_a_plain_identifier():
    assert run_branch(["b", "a"]) == run_branch(["a", "b", "a"]) != run_branch(["a"])
    assert run_branch(["a"]).startswith("backfill_") and rollback_branch(["a"]).startswith("rollback_")
    with pytest.raises(InputError):
        run_branch(["x'; drop table t --"])


def test_a_branch_target_is_quoted_and_checked():
    assert target_table(CFG, run_branch(["a"])).endswith(f".`branch_{run_branch(['a'])}`")
    assert "branch_" in merge_sql(CFG, "2024-01", "SELECT 1", None, run_branch(["a"]))
    with pytest.raises(BackfillError):
        target_table(CFG, "main`; DROP TABLE x; --")


def test_set_status_names_single_rows_and_matches_only_the_old_status():
    sql = set_status_sql(CFG, [("A", 7, "2024-01", "superseded by B")], StagingStatus.PENDING,
                         StagingStatus.SUPERSEDED)
    assert "('A', 7, '2024-01', 'superseded by B')" in sql
    assert "st.`status` = 'pending'" in sql and "st.`status` = 'superseded'" in sql
    with pytest.raises(InputError):
        set_status_sql(CFG, [("A'--", 7, "2024-01", "x")], StagingStatus.PENDING, StagingStatus.SUPERSEDED)
    with pytest.raises(InputError):
        set_status_sql(CFG, [("A", 7, "2024-13", "x")], StagingStatus.PENDING, StagingStatus.SUPERSEDED)


def test_a_free_text_reason_cannot_end_the_literal():
    sql = set_status_sql(CFG, [("A", 7, "2024-01", "x'); DROP TABLE t; --")], StagingStatus.PENDING,
                         StagingStatus.SUPERSEDED)
    assert "DROP TABLE t" in sql and "x'" not in sql


def test_restore_sets_whole_arrays_and_only_the_named_columns():
    sql = restore_sql(CFG, {("2024-01", 5): {"balance_history": [Decimal("1.00"), None], "payment_history": None}})
    assert ("CAST(array(CAST('1.00' AS DECIMAL(18,2)), CAST(NULL AS DECIMAL(18,2))) AS ARRAY<DECIMAL(18,2)>), true"
            in sql)
    assert "CAST(NULL AS ARRAY<DECIMAL(18,2)>), true" in sql  # payment_history set to NULL
    assert sql.count(", false") == len(CFG.tables.history_columns) - 2
    with pytest.raises(ValueError, match="unknown history column"):
        restore_sql(CFG, {("2024-01", 5): {"nope": None}})
    with pytest.raises(InputError):
        restore_sql(CFG, {("2024-1", 5): {"balance_history": None}})


def test_rollback_and_revive_statements_touch_only_live_rows_of_the_ids():
    sql = rollback_staging_sql(CFG, ["A"], "rolled back")
    assert "`backfill_id` IN ('A')" in sql and "IN ('pending', 'applied', 'superseded')" in sql
    revive = revive_superseded_sql(CFG, ["A"])
    assert "st.`status` = 'superseded' AND st.`backfill_id` NOT IN ('A')" in revive
