import re

import pytest

from backfill.config import Config, HistoryColumn, TableConfig
from backfill.errors import ConfigError, InputError
from backfill.sql.merge import mark_staging_sql, merge_sql, staging_source_sql

CFG = Config(tables=TableConfig(history_columns=(HistoryColumn("bal_h", "bal"), HistoryColumn("pay_h", "pay")),
                                window=36))


def test_source_reads_only_the_window_and_pending_rows_of_the_ids():
    sql = staging_source_sql(CFG, "2024-05", ["bf-2", "bf-1"], staging_snapshot_id=42)
    assert "BETWEEN '2021-06' AND '2024-05'" in sql
    assert "IN ('bf-1', 'bf-2')" in sql
    assert "VERSION AS OF 42" in sql
    assert "s.`status` = 'pending'" in sql
    # the partition and its month index (2024*12 + 4) as a literal relation
    assert f"('2024-05', {2024 * 12 + 4})" in sql
    assert "GROUP BY s.`acct`, p.`p_month`" in sql


def test_merge_pins_partition_and_never_inserts():
    sql = merge_sql(CFG, "2024-05", "SELECT 1")
    assert ("ON t.`month_partition` = '2024-05' AND t.`month_partition` = s.`month_partition` "
            "AND t.`acct` = s.`acct`") in sql
    assert "WHEN NOT MATCHED" not in sql and "INSERT" not in sql
    assert sql.count("transform(sequence(0,") == 2
    assert "concat(" not in sql and "slice(" not in sql and "months_between" not in sql


def test_hostile_inputs_never_reach_sql():
    with pytest.raises(InputError):
        staging_source_sql(CFG, "2024-05' OR '1'='1", ["bf-1"])
    with pytest.raises(InputError):
        staging_source_sql(CFG, "2024-05", ["bf-1'; DROP TABLE x; --"])
    bad = Config(tables=TableConfig(target_table="db.t`; DROP"))
    with pytest.raises(ConfigError):
        merge_sql(bad, "2024-05", "SELECT 1")


def test_mark_staging_is_pinned_and_reason_is_sanitised():
    sql = mark_staging_sql(CFG, ["bf-1"], ["2020-01"], 7, "rejected", "no partition'; DROP TABLE x --")
    assert "VERSION AS OF 7" in sql
    reason = re.search(r"st.`error` = '([^']*)'", sql).group(1)
    assert "'" not in reason and "DROP TABLE x" in reason
    with pytest.raises(ValueError):
        mark_staging_sql(CFG, ["bf-1"], ["2020-01"], 7, "pending")


def _entry(acct, month, *values):
    from decimal import Decimal

    from backfill.core.entries import Entry

    return Entry(month=month, acct=acct, backfill_id="bf-1",
                 values=tuple(None if v is None else Decimal(v) for v in values))


def test_entries_source_inlines_typed_literals_with_the_staging_shape():
    from backfill.sql.merge import entries_source_sql

    sql = entries_source_sql(CFG, "2024-05", [_entry(7, "2024-05", "1.50", None), _entry(7, "2021-06", None, "-2")])
    assert "(7, '2024-05', CAST('1.50' AS DECIMAL(18,2)), CAST(NULL AS DECIMAL(18,2)))" in sql
    assert "CAST('-2.00' AS DECIMAL(18,2))" in sql
    assert "AS s(`acct`, `backfill_month`, `bal`, `pay`)" in sql
    assert "GROUP BY s.`acct`, p.`p_month`" in sql and "AS `bal_h__updates`" in sql
    # same aggregation as the staging source: offsets relative to the partition index
    assert f"('2024-05', {2024 * 12 + 4})" in sql


def test_entries_source_rejects_entries_outside_the_window_and_bad_values():
    from backfill.sql.merge import entries_source_sql

    with pytest.raises(ValueError):
        entries_source_sql(CFG, "2024-05", [_entry(7, "2024-06", "1", "1")])   # k = -1
    with pytest.raises(ValueError):
        entries_source_sql(CFG, "2024-05", [_entry(7, "2021-05", "1", "1")])   # k = 36 = W
    with pytest.raises(InputError):
        entries_source_sql(CFG, "2024-05", [_entry(7, "2024-05", "1.234", "1")])  # not DECIMAL(18,2)


def test_account_predicate_only_for_short_literal_lists():
    from backfill.sql.merge import ACCT_IN_MAX, account_predicate

    sql = merge_sql(CFG, "2024-05", "SELECT 1", accounts=[3, 1, 3])
    assert "AND t.`acct` = s.`acct` AND t.`acct` IN (1, 3)" in sql
    assert account_predicate(CFG, range(ACCT_IN_MAX + 1)) == ""
    assert account_predicate(CFG, None) == "" and account_predicate(CFG, []) == ""
    with pytest.raises(InputError):
        account_predicate(CFG, ["1); DROP TABLE x; --"])


def test_batch_source_pairs_each_entry_with_every_partition_whose_window_holds_it():
    from backfill.sql.merge import entries_source_sql

    small = Config(tables=TableConfig(history_columns=(HistoryColumn("bal_h", "bal"),), window=3))
    sql = entries_source_sql(small, ["2024-03", "2024-01", "2024-02"], [_entry(7, "2024-01", "1")])
    # partitions sorted, each with its month index; offsets 0..W-1 only
    assert "(VALUES ('2024-01', 24288), ('2024-02', 24289), ('2024-03', 24290))" in sql
    assert "BETWEEN 0 AND 2" in sql
    assert "p.`p_month` AS `month_partition`" in sql
    # an entry no partition of the batch covers is refused, naming the batch
    with pytest.raises(ValueError, match="any of 2024-01..2024-03"):
        entries_source_sql(small, ["2024-01", "2024-02", "2024-03"], [_entry(7, "2023-10", "1")])


def test_batch_merge_pins_every_partition_and_matches_rows_of_their_own_partition():
    sql = merge_sql(CFG, ["2024-06", "2024-05"], "SELECT 1", accounts=[3])
    assert ("ON t.`month_partition` IN ('2024-05', '2024-06') "
            "AND t.`month_partition` = s.`month_partition` AND t.`acct` = s.`acct` AND t.`acct` IN (3)") in sql
    with pytest.raises(InputError):
        merge_sql(CFG, ["2024-05", "2024-06') OR ('1'='1"], "SELECT 1")
    with pytest.raises(ValueError):
        merge_sql(CFG, [], "SELECT 1")


def test_matched_rows_are_counted_per_partition():
    from backfill.sql.merge import matched_rows_sql

    sql = matched_rows_sql(CFG, ["2024-05", "2024-06"], "SELECT 1", accounts=[1])
    assert "LEFT SEMI JOIN" in sql and "GROUP BY t.`month_partition`" in sql
    assert "t.`month_partition` IN ('2024-05', '2024-06')" in sql


def test_long_account_lists_are_split_so_min_max_pruning_still_applies():
    """Iceberg checks bounds only for IN lists of at most 200 values: 450 accounts become
    three lists (200, 200, 50) joined with OR, each account exactly once, in order."""
    import re

    from backfill.sql.merge import IN_BOUNDS_MAX, account_predicate

    pred = account_predicate(CFG, range(450, 0, -1))
    assert pred.startswith(" AND (t.`acct` IN (1, 2,") and pred.endswith("449, 450))")
    lists = re.findall(r"t\.`acct` IN \(([^)]*)\)", pred)
    assert [len(x.split(", ")) for x in lists] == [IN_BOUNDS_MAX, IN_BOUNDS_MAX, 50]
    assert [int(v) for x in lists for v in x.split(", ")] == list(range(1, 451))
    assert pred.count(" OR ") == 2
    assert account_predicate(CFG, range(1, IN_BOUNDS_MAX + 1)).count(" IN (") == 1
