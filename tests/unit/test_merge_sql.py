import re

import pytest

from backfill.config import Config, HistoryColumn, TableConfig
from backfill.errors import ConfigError, InputError
from backfill.merge_sql import mark_staging_sql, merge_sql, staging_source_sql

CFG = Config(tables=TableConfig(history_columns=(HistoryColumn("bal_h", "bal"), HistoryColumn("pay_h", "pay")),
                                window=36))


def test_source_reads_only_the_window_and_pending_rows_of_the_ids():
    sql = staging_source_sql(CFG, "2024-05", ["bf-2", "bf-1"], staging_snapshot_id=42)
    assert "BETWEEN '2021-06' AND '2024-05'" in sql
    assert "IN ('bf-1', 'bf-2')" in sql
    assert "VERSION AS OF 42" in sql
    assert "s.`status` = 'pending'" in sql
    # offset relative to the partition's month index (2024*12 + 4)
    assert f"({2024 * 12 + 4} - " in sql


def test_merge_pins_partition_and_never_inserts():
    sql = merge_sql(CFG, "2024-05", "SELECT 1")
    assert "ON t.`month_partition` = '2024-05' AND t.`acct` = s.`acct`" in sql
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
