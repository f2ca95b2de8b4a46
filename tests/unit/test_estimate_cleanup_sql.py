"""Pure parts of estimate, cleanup-audits and generate-sql (no Spark, no catalog)."""

from __future__ import annotations

import argparse
import dataclasses
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from backfill import cli
from backfill.cli import options
from backfill.config import Config, HistoryColumn, TableConfig
from backfill.core.entries import Entry
from backfill.core.plan import plan_run
from backfill.errors import ConfigError, InputError
from backfill.ops.cleanup import cutoff, is_expired
from backfill.ops.estimate import (
    DEFAULT_SECONDS_PER_PARTITION,
    FileBounds,
    audit_samples,
    count_candidates,
    fit_model,
    iceberg_bucket,
    makespan,
    may_hold_any,
)
from backfill.prepared import PreparedRun
from backfill.sql.script import Step, build_statements, render_script, script_items

D = Decimal
UTC = timezone.utc


# ------------------------------------------------------------------ candidate files


def fb(lo, hi, size=100):
    return FileBounds(size, 10, lo, hi)


def test_file_holds_account_only_within_bounds():
    accts = [5, 50, 500]
    assert may_hold_any(fb(1, 5), accts)            # lower edge inclusive
    assert may_hold_any(fb(500, 900), accts)        # upper edge inclusive
    assert may_hold_any(fb(6, 60), accts)
    assert not may_hold_any(fb(6, 49), accts)       # between two accounts
    assert not may_hold_any(fb(501, 10**12), accts)
    assert not may_hold_any(fb(-10, 4), accts)
    assert not may_hold_any(fb(1, 100), [])


def test_file_without_bounds_counts_as_candidate():
    assert may_hold_any(fb(None, None), [1])
    assert may_hold_any(fb(3, None), [1])


def test_count_candidates_counts_files_and_bytes():
    files = [fb(0, 9, 10), fb(10, 19, 20), fb(20, 29, 40), fb(None, None, 80)]
    assert count_candidates(files, [15, 15, 25]) == (3, 20 + 40 + 80)
    assert count_candidates(files, [100]) == (1, 80)
    assert count_candidates([], [1]) == (0, 0)


def test_bucket_prunes_files_whose_bounds_hold_an_account_of_another_bucket():
    mod4 = lambda n, a: a % n  # noqa: E731
    wide = [FileBounds(10 * (b + 1), 5, 0, 1000, bucket=b, num_buckets=4) for b in range(4)]
    assert count_candidates(wide, [5, 9], bucket_of=mod4) == (1, 20)          # both in bucket 1
    assert count_candidates(wide, [5, 6], bucket_of=mod4) == (2, 20 + 30)
    assert count_candidates(wide, [5, 9], bucket_of=None) == (4, 100)         # bounds only
    # bucket matches but the bounds exclude the account
    assert not may_hold_any(FileBounds(1, 1, 10, 20, bucket=1, num_buckets=4), [5, 25], mod4)
    # a file with no bucket value is only pruned by bounds
    assert may_hold_any(FileBounds(1, 1, 0, 9, bucket=None, num_buckets=None), [6], mod4)


def test_iceberg_bucket_is_the_spec_hash():
    # Iceberg spec, appendix B: hash(34L) = 2017239379 -> bucket 79 of 100
    assert iceberg_bucket(100, 34) == 2017239379 % 100


# ------------------------------------------------------------------ throughput model


def test_model_fit_recovers_a_line():
    samples = [(1e6, 10 + 2e-6 * 1e6), (5e6, 10 + 2e-6 * 5e6), (9e6, 10 + 2e-6 * 9e6)]
    m = fit_model(samples)
    assert m.samples == 3
    assert m.intercept == pytest.approx(10)
    assert m.slope == pytest.approx(2e-6)
    assert m.seconds(2e6) == pytest.approx(14)
    assert m.basis.startswith("learned from 3 past partitions: a=10.0 s")


def test_model_falls_back_below_three_samples_or_without_spread():
    for samples in ([], [(1e6, 5.0)], [(1e6, 5.0), (2e6, 9.0)], [(1e6, 5), (1e6, 6), (1e6, 7)]):
        m = fit_model(samples)
        assert m.samples == 0 and m.basis.startswith("default")
        assert m.intercept == DEFAULT_SECONDS_PER_PARTITION


def test_model_never_predicts_less_for_more_bytes():
    m = fit_model([(1e6, 30.0), (2e6, 20.0), (3e6, 10.0)])
    assert m.slope == 0 and m.intercept == pytest.approx(20) and "clamped" in m.basis
    m = fit_model([(1e6, 1.0), (2e6, 5.0), (3e6, 9.0)])  # negative intercept
    assert m.intercept == 0 and m.slope > 0


def test_audit_samples_keep_committed_rows_once_per_attempt():
    base = {"run_id": "r1", "target_partition": "2023-01", "attempt": 1, "status": "committed",
            "duration_seconds": 12.0, "bytes_read": 1000, "bytes_written": 900}
    rows = [
        {**base, "backfill_id": "a"},
        {**base, "backfill_id": "b"},                       # same attempt, other id: dropped
        {**base, "attempt": 2, "bytes_read": None},         # falls back to bytes_written
        {**base, "target_partition": "2023-02", "status": "failed"},
        {**base, "target_partition": "2023-03", "duration_seconds": None},
        {**base, "target_partition": "2023-04", "bytes_read": None, "bytes_written": None},
    ]
    assert audit_samples(rows) == [(1000.0, 12.0), (900.0, 12.0)]


def test_makespan_is_greedy_over_slots():
    assert makespan([], 4) == 0
    assert makespan([10, 10, 10, 10], 2) == 20
    assert makespan([30, 10, 10, 10], 2) == 30
    assert makespan([5, 5], 8) == 5


# ------------------------------------------------------------------ cleanup cutoff


def test_cutoff_and_expiry():
    now = datetime(2024, 5, 31, 12, tzinfo=UTC)
    limit = cutoff(now, 90)
    assert limit == datetime(2024, 3, 2, 12, tzinfo=UTC)
    assert cutoff(now, 0) == now
    old, new = limit - timedelta(seconds=1), limit + timedelta(seconds=1)
    assert is_expired({"completed_at": old, "started_at": new}, limit)
    assert not is_expired({"completed_at": new, "started_at": old}, limit)  # completed_at wins
    assert is_expired({"completed_at": None, "started_at": old}, limit)
    assert not is_expired({"completed_at": None, "started_at": None}, limit)
    assert not is_expired({"completed_at": limit}, limit)                   # strictly older


@pytest.mark.parametrize("days", [-1, -90, True, 1.5])
def test_cutoff_rejects_bad_retention(days):
    with pytest.raises(ConfigError):
        cutoff(datetime.now(UTC), days)


def test_cleanup_command_rejects_negative_days_before_touching_a_catalog(monkeypatch, capsys):
    monkeypatch.setattr(options, "catalog_from_config", lambda cfg: pytest.fail("catalog used"))
    assert cli.main(["cleanup-audits", "--days-to-keep", "-1"]) == ConfigError.exit_code
    assert "--days-to-keep" in capsys.readouterr().err


# ------------------------------------------------------------------ script rendering


COLS = (HistoryColumn("balance_history", "balance"), HistoryColumn("payment_history", "payment"))


def _cfg(**tables) -> Config:
    return Config(tables=TableConfig(history_columns=COLS, **tables)).validated()


def _prepared(cfg: Config, entries, parts, ids=("bf-1",), already=None, resume_from=None):
    plan = plan_run(entries, parts, cfg.tables.window, "newest", resume_from)
    return PreparedRun(cfg, tuple(ids), "run-test", plan, 4242, dict(already or {}))


def E(acct, month, bid="bf-1"):
    return Entry(month=month, acct=acct, backfill_id=bid, values=(D("1.00"), None))


PARTS = ["2023-01", "2023-02", "2023-03", "2023-04"]


def test_script_has_one_merge_per_partition_then_staging_updates():
    cfg = _cfg(window=3)
    entries = [E(1, "2023-02"), E(2, "2023-04"), E(3, "2019-01")]  # 2019-01: no partition in window
    prepared = _prepared(cfg, entries, PARTS)
    stmts = build_statements(prepared)
    parts = [t.partition for t in prepared.plan.tasks]
    assert parts == ["2023-04", "2023-03", "2023-02"]
    # partitions + one 'applied' update + one 'rejected' update per rejected month
    assert len(stmts) == len(parts) + 1 + 1
    for stmt, p in zip(stmts, parts, strict=False):  # the staging updates follow
        assert stmt.startswith("MERGE INTO `demo`.`db`.`accounts_history` t")
        assert f"t.`month_partition` = '{p}'" in stmt
        assert "`demo`.`db`.`backfill_staging` VERSION AS OF 4242" in stmt
        assert "s.`backfill_id` IN ('bf-1')" in stmt
    applied, rejected = stmts[-2], stmts[-1]
    assert "SET st.`status` = 'applied'" in applied and "IN ('2023-02', '2023-04')" in applied
    assert "SET st.`status` = 'rejected'" in rejected and "IN ('2019-01')" in rejected
    assert "VERSION AS OF 4242" in applied


def test_rendered_script_is_statements_separated_by_semicolons():
    cfg = _cfg(window=3)
    prepared = _prepared(cfg, [E(1, "2023-02"), E(3, "2019-01")], PARTS, ids=("bf-1", "bf.2"))
    script = render_script(prepared)
    stmts = build_statements(prepared)
    assert script.endswith(";\n")
    assert script.count(";\n") == len(stmts)
    # header: ids, plan, window, staging snapshot, all as comments without ';'
    head = script.split("\nMERGE", 1)[0]
    assert all(line.startswith("--") for line in head.splitlines() if line.strip())
    for text in ("bf-1, bf.2", "run-test", "window: 3 months", "snapshot 4242", "partitions: 3"):
        assert text in head
    comments = [line for line in script.splitlines() if line.startswith("--")]
    assert not any(";" in line for line in comments)
    # each statement appears verbatim, in order
    pos = 0
    for s in stmts:
        pos = script.index(s, pos) + len(s)
        assert script[pos] == ";"


def test_script_skips_already_committed_partitions_but_counts_them_done():
    cfg = _cfg(window=3)
    prepared = _prepared(cfg, [E(1, "2023-02")], PARTS, already={"2023-03": 99})
    stmts = build_statements(prepared)
    assert len(stmts) == 2 + 1
    assert not any("'2023-03'" in s and s.startswith("MERGE INTO `demo`.`db`.`accounts") for s in stmts)
    assert "'applied'" in stmts[-1]
    assert "already committed, left out: 2023-03" in render_script(prepared)


def test_month_with_a_resume_skipped_partition_is_not_marked_applied_early():
    cfg = _cfg(window=3)
    # 2023-01 entry covers 2023-01..2023-03; resume from 2023-02 leaves 2023-02, 2023-03 planned
    prepared = _prepared(cfg, [E(1, "2023-01")], PARTS, resume_from="2023-02")
    stmts = build_statements(prepared)
    assert len(stmts) == 3 and "'applied'" in stmts[-1]


def _branched(prepared: PreparedRun, branch: str = "backfill_0a1b2c") -> PreparedRun:
    return dataclasses.replace(prepared, branch=branch)


def test_script_with_a_branch_merges_there_then_publishes_in_one_step_before_staging():
    cfg = _cfg(window=3)
    prepared = _branched(_prepared(cfg, [E(1, "2023-02"), E(3, "2019-01")], PARTS))
    items = script_items(prepared)
    assert [i.step for i in items] == [Step.BRANCH, Step.MERGE, Step.MERGE, Step.MERGE, Step.PUBLISH,
                                       Step.DROP_BRANCH, Step.STAGING, Step.STAGING]
    assert items[0].statement == ("ALTER TABLE `demo`.`db`.`accounts_history` "
                                  "CREATE BRANCH IF NOT EXISTS `backfill_0a1b2c`")
    for item in items[1:4]:
        assert item.statement.startswith("MERGE INTO `demo`.`db`.`accounts_history`.`branch_backfill_0a1b2c` t")
        assert item.task is not None and f"'{item.task.partition}'" in item.statement
    assert items[4].statement == ("CALL `demo`.system.fast_forward(table => 'db.accounts_history', "
                                  "branch => 'main', to => 'backfill_0a1b2c')")
    assert items[5].statement.endswith("DROP BRANCH IF EXISTS `backfill_0a1b2c`")
    assert "'applied'" in items[6].statement and "'rejected'" in items[7].statement
    # the rendered script holds them in the same order
    script = render_script(prepared)
    assert script.index("CREATE BRANCH") < script.index("MERGE INTO") < script.index("fast_forward") \
        < script.index("DROP BRANCH") < script.index("'applied'")


def test_script_publishes_a_branch_even_when_every_partition_is_already_committed():
    cfg = _cfg(window=3)
    prepared = _branched(_prepared(cfg, [E(1, "2023-04")], PARTS, already={"2023-04": 7}))
    steps = [i.step for i in script_items(prepared)]
    assert steps == [Step.BRANCH, Step.PUBLISH, Step.DROP_BRANCH, Step.STAGING]


def test_staging_source_reads_only_the_months_of_the_task():
    # pending rows of months the request left out (--backfill-month) are not the run's
    cfg = _cfg(window=3)
    stmts = build_statements(_prepared(cfg, [E(1, "2023-02"), E(2, "2023-03")], PARTS))
    merge_04, merge_03, merge_02 = stmts[:3]
    assert "s.`backfill_month` IN ('2023-02', '2023-03')" in merge_04
    assert "s.`backfill_month` IN ('2023-02')" in merge_02


def test_a_hostile_branch_name_never_reaches_sql():
    prepared = _branched(_prepared(_cfg(), [E(1, "2023-02")], PARTS), "x'); DROP TABLE t; --")
    with pytest.raises(ConfigError, match="branch"):
        build_statements(prepared)


def test_months_done_needs_every_covering_partition():
    plan = plan_run([E(1, "2023-01"), E(2, "2023-03"), E(3, "2019-01")], PARTS, 3, "newest")
    assert plan.months_done(["2023-01", "2023-02", "2023-03", "2023-04"]) == ["2023-01", "2023-03"]
    assert plan.months_done(["2023-03", "2023-04"]) == ["2023-03"]  # 2023-01 also needs 2023-01, 2023-02
    assert plan.rejected_months() == {"2019-01": plan.rejected[0].reason}
    assert plan.entries_in(["2023-01", "2019-01"]) == 2


def test_identifiers_are_quoted_everywhere():
    cfg = _cfg(target_table="prod.hist", staging_table="prod.stage")
    stmts = build_statements(_prepared(cfg, [E(1, "2023-02")], PARTS))
    merge = stmts[0]
    assert "`prod`.`hist`" in merge and "`prod`.`stage`" in merge
    assert "t.`balance_history`" in merge and "s.`payment`" in merge


@pytest.mark.parametrize("bad_id", ["x'); DROP TABLE t; --", "a b", "", "`x`", "-lead"])
def test_hostile_backfill_ids_never_reach_sql(bad_id):
    cfg = _cfg()
    prepared = _prepared(cfg, [E(1, "2023-02")], PARTS, ids=(bad_id,))
    with pytest.raises(InputError):
        build_statements(prepared)
    with pytest.raises(InputError):
        render_script(prepared)


@pytest.mark.parametrize("table", ["db.t`; DROP", "db.t--x", "a.b.c.d", "db.t t2"])
def test_hostile_table_names_are_rejected(table):
    with pytest.raises(ConfigError):
        _cfg(target_table=table)


def test_hostile_column_names_are_rejected():
    with pytest.raises(ConfigError):
        Config(tables=TableConfig(history_columns=(HistoryColumn("h`) --", "v"),))).validated()


def test_hostile_partition_values_are_ignored_not_spliced():
    cfg = _cfg(window=3)
    hostile = ["2023-02' OR '1'='1", "2023-03\nDROP TABLE x", "2023-04\u2028DROP TABLE y"]
    prepared = _prepared(cfg, [E(1, "2023-02")], PARTS + hostile)
    script = render_script(prepared)
    head, body = script.split("\nMERGE", 1)
    assert "OR '1'='1" not in body and "DROP" not in body
    # the plan's note names the ignored values, but only inside comment lines
    assert "ignored 3 partition value(s)" in head
    assert all(line.startswith("--") for line in head.splitlines() if line.strip())
    assert len(build_statements(prepared)) == 3 + 1  # 2023-02..2023-04, then 'applied'


# ------------------------------------------------------------------ CLI wiring


def test_subcommands_register_and_parse(monkeypatch):
    parser = cli.build_parser()
    a = parser.parse_args(["estimate", "--target-table", "db.t", "--backfill-month", "2023-12"])
    assert a.backfill_id is None and a.backfill_month == "2023-12" and a.target_table == "db.t"
    a = parser.parse_args(["estimate", "--backfill-id", "x", "--backfill-id", "y", "--max-parallel", "3",
                           "--json", "--resume-from", "2024-01"])
    assert a.backfill_id == ["x", "y"] and a.max_parallel == 3 and a.json
    a = parser.parse_args(["cleanup-audits"])
    assert a.days_to_keep == 90 and not a.dry_run
    a = parser.parse_args(["generate-sql", "--backfill-id", "x", "--output", "f.sql"])
    assert a.output == "f.sql" and a.backfill_month is None
    assert isinstance(a, argparse.Namespace) and callable(a.func)


def test_estimate_rejects_bad_month_before_touching_a_catalog(monkeypatch):
    monkeypatch.setattr(options, "catalog_from_config", lambda cfg: pytest.fail("catalog used"))
    assert cli.main(["estimate", "--backfill-month", "2023-13"]) == InputError.exit_code


def test_prepared_run_is_a_plain_dataclass():
    # build_statements only needs the fields the driver fills; keep this contract visible
    names = {f.name for f in dataclasses.fields(PreparedRun)}
    assert {"cfg", "backfill_ids", "run_id", "plan", "staging_snapshot_id", "already_committed"} <= names
