"""``stage`` without a catalog: reading CSV and Parquet, the checks, and that a bad source writes nothing.

The staging table is a fake whose ``append`` records its calls; the command line runs with
the catalog replaced (or trapped, to show a bad file is refused before any catalog opens).
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.io.pyarrow import schema_to_pyarrow

from backfill import cli
from backfill.cli import options
from backfill.config import Config, HistoryColumn, TableConfig
from backfill.core.states import StagingStatus
from backfill.errors import ConfigError, InputError
from backfill.iceberg.schema import staging_schema
from backfill.ops import stage

D = Decimal
BID = "bf-stage-1"
CFG = Config(tables=TableConfig(history_columns=(
    HistoryColumn("balance_history", "balance"), HistoryColumn("payment_history", "payment"),
    HistoryColumn("limit_history", "credit_limit")))).validated()
NOW = datetime(2024, 7, 1, 12, 0, tzinfo=timezone.utc)


def _csv(tmp_path, text, name="entries.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _check(path, bid=BID):
    return stage.check_source(CFG, bid, stage.open_file(path), now=NOW)


def _error(path, bid=BID):
    with pytest.raises(InputError) as info:
        _check(path, bid)
    return str(info.value)


def _values(staged, *cols):
    return [tuple(r[c] for c in cols) for r in staged.arrow.to_pylist()]


class FakeStaging:
    """A staging table: ``pending`` (acct, backfill_month rows) are the id's pending rows; appends are recorded.

    Its scan returns large_string months, as pyiceberg does.
    """

    def __init__(self, pending=None):
        self.pending = pending
        self.snapshot = None if pending is None else SimpleNamespace(snapshot_id=1, parent_snapshot_id=None)
        self.appended = []

    def current_snapshot(self):
        return self.snapshot

    def scan(self, **kwargs):
        return SimpleNamespace(to_arrow=lambda: pa.Table.from_pylist(
            self.pending or [], schema=pa.schema([("acct", pa.int64()), ("backfill_month", pa.large_string())])))

    def append(self, df, snapshot_properties=None):
        parent = self.snapshot.snapshot_id if self.snapshot else None
        self.appended.append((df, snapshot_properties))
        self.snapshot = SimpleNamespace(snapshot_id=len(self.appended) + 100, parent_snapshot_id=parent)


# ---------------------------------------------------------------------------- CSV


def test_good_csv_becomes_pending_staging_rows_exactly(tmp_path):
    path = _csv(tmp_path, "acct,backfill_month,balance,payment\n"
                          "7,2024-01,0.1,\n8,2024-02,\"9999999999999999.99\",-3\n9,2024-02,1.250,1e2\n")
    staged = _check(path)
    assert staged.arrow.schema == schema_to_pyarrow(staging_schema(CFG), include_field_ids=False)
    assert _values(staged, "acct", "backfill_month", "balance", "payment", "credit_limit") == [
        (7, "2024-01", D("0.10"), None, None),  # empty cell = NULL, absent column = NULL
        (8, "2024-02", D("9999999999999999.99"), D("-3.00"), None),  # exact, never through a float
        (9, "2024-02", D("1.25"), D("100.00"), None),  # trailing zeros past the cents are no rounding
    ]
    rows = staged.arrow.to_pylist()
    assert {(r["backfill_id"], r["status"], r["created_at"], r["processed_at"], r["error"]) for r in rows} == {
        (BID, StagingStatus.PENDING.value, NOW, None, None)}
    assert staged.value_columns == ("balance", "payment") and staged.absent_columns == ("credit_limit",)


def test_backfill_id_column_must_equal_the_option(tmp_path):
    ok = _csv(tmp_path, f"backfill_id,acct,backfill_month,balance\n{BID},1,2024-01,1\n", "ok.csv")
    assert _values(_check(ok), "backfill_id", "acct") == [(BID, 1)]
    bad = _csv(tmp_path, f"backfill_id,acct,backfill_month,balance\n{BID},1,2024-01,1\nbf-other,2,2024-01,1\n"
                         ",3,2024-01,1\n")
    msg = _error(bad)
    assert "2 row(s) cannot be staged; nothing was written" in msg
    assert "row 2 (line 3), column 'backfill_id': 'bf-other' is not the --backfill-id 'bf-stage-1'" in msg
    assert "row 3 (line 4), column 'backfill_id': None is not the --backfill-id" in msg


def test_unknown_column_is_named_with_a_suggestion(tmp_path):
    msg = _error(_csv(tmp_path, "acct,backfill_month,balanse,Payment\n1,2024-01,1,2\n"))
    assert "unknown column 'balanse' (did you mean 'balance'?)" in msg
    assert "unknown column 'Payment' (did you mean 'payment'?)" in msg
    assert "nothing was written" in msg


@pytest.mark.parametrize("header,needle", [
    ("acct,balance", "column 'backfill_month' is missing"),
    ("acct,backfill_month,balance,balance", "column 'balance' appears 2 times"),
    ("acct,backfill_month,balance,status", "column 'status' is set by `stage`"),
    ("acct,backfill_month", "none of the value columns is present"),
])
def test_bad_headers_are_named(tmp_path, header, needle):
    n = header.count(",") + 1
    assert needle in _error(_csv(tmp_path, header + "\n" + ",".join(["1"] * n) + "\n"))


def test_bad_month_names_row_line_and_column(tmp_path):
    msg = _error(_csv(tmp_path, "acct,backfill_month,balance\n1,2024-01,1\n\n2,2024-13,1\n3,,1\n"))
    # row 2 is the second data row; the blank line makes it line 4
    assert "row 2 (line 4), column 'backfill_month': '2024-13' is not a month of the form 'YYYY-MM'" in msg
    assert "row 3 (line 5), column 'backfill_month': is empty" in msg
    assert "row 1 is the first data row after the header" in msg


@pytest.mark.parametrize("cell,why", [
    ("1.125", "1.125 has more than 2 decimal places"),
    ("10000000000000000", "10000000000000000 does not fit DECIMAL(18,2)"),
    ("12,5", "'12,5' is not a number"),
    ("NaN", "NaN is not a finite number"),
])
def test_values_that_do_not_fit_name_row_and_column(tmp_path, cell, why):
    msg = _error(_csv(tmp_path, f'acct,backfill_month,balance,payment\n1,2024-01,1,2\n2,2024-02,1,"{cell}"\n'))
    assert f"row 2 (line 3), column 'payment': {why}" in msg
    assert "1 row(s) cannot be staged" in msg


@pytest.mark.parametrize("acct,why", [("x", "'x' is not an integer account"), ("", "is empty"),
                                      ("1.0", "'1.0' is not an integer account"),
                                      (str(2**63), f"{2**63} does not fit a 64-bit integer")])
def test_bad_accounts_name_row_and_column(tmp_path, acct, why):
    msg = _error(_csv(tmp_path, f"acct,backfill_month,balance\n{acct},2024-01,1\n"))
    assert f"row 1 (line 2), column 'acct': {why}" in msg


def test_duplicate_account_and_month_in_the_file_names_both_rows(tmp_path):
    msg = _error(_csv(tmp_path, "acct,backfill_month,balance\n5,2024-01,1\n6,2024-01,1\n5,2024-01,2\n"))
    assert ("rows 1 (line 2), 3 (line 4), columns 'acct', 'backfill_month': acct 5 and month '2024-01' "
            "appear in 2 rows") in msg


def test_duplicates_and_row_numbers_hold_across_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(stage, "BATCH_ROWS", 2)
    body = "".join(f"{a},2024-0{a % 9 + 1},1\n" for a in range(1, 8))
    msg = _error(_csv(tmp_path, "acct,backfill_month,balance\n" + body + "3,2024-04,2\n9,2024-99,1\n"))
    assert "rows 3 (line 4), 8 (line 9), columns 'acct', 'backfill_month'" in msg
    assert "row 9 (line 10), column 'backfill_month': '2024-99'" in msg
    assert "3 row(s) cannot be staged" in msg


def test_many_bad_rows_are_counted_and_the_first_shown(tmp_path):
    msg = _error(_csv(tmp_path, "acct,backfill_month,balance\n" + "".join(f"{a},2024-1{a % 9},x\n" for a in range(30))))
    assert "30 row(s) cannot be staged" in msg and "only the first 20 problems are shown" in msg
    assert msg.count("\n  row ") == 20


@pytest.mark.parametrize("text,needle", [
    ("", "is empty"),
    ("acct,backfill_month,balance\n", "has no data rows"),
    ("acct,backfill_month,balance\n1,2024-01,1\n2,2024-01\n", "row 2 (line 3) has 2 field(s) but the header has 3"),
])
def test_empty_header_only_and_ragged_files(tmp_path, text, needle):
    assert needle in _error(_csv(tmp_path, text))


def test_a_quoted_newline_counts_as_one_row(tmp_path):
    msg = _error(_csv(tmp_path, 'acct,backfill_month,balance\n1,2024-01,"1\n2"\n2,2024-13,1\n'))
    assert "row 1 (line 2), column 'balance'" in msg and "row 2 (line 4), column 'backfill_month'" in msg


def test_not_utf8_csv_is_an_input_error(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("acct,backfill_month,balance\n1,2024-01,1\n2,2024-01,\xe9\n".encode("latin-1"))
    assert "nothing was written" in _error(path)


@pytest.mark.parametrize("name", ["entries.txt", "missing.csv"])
def test_source_path_is_checked_first(tmp_path, name):
    (tmp_path / "entries.txt").write_text("acct\n")
    with pytest.raises(ConfigError):
        stage.open_file(tmp_path / name)


# -------------------------------------------------------------------------- Parquet


def _parquet(tmp_path, columns, name="entries.parquet"):
    path = tmp_path / name
    pq.write_table(pa.table(columns), path)
    return path


def test_good_parquet_converts_decimals_ints_and_floats_exactly(tmp_path):
    path = _parquet(tmp_path, {
        "acct": pa.array([1, 2, 3], pa.int32()),
        "backfill_month": pa.array(["2024-01", "2024-02", "2024-01"]).dictionary_encode(),
        "balance": pa.array([D("1.5"), None, D("-2.25")], pa.decimal128(10, 2)),
        "payment": pa.array([0.1, 123456789012.34, None], pa.float64()),
        "credit_limit": pa.array([5, None, 7], pa.int64()),
    }, "good.pq")
    staged = _check(path)
    assert _values(staged, "acct", "backfill_month", "balance", "payment", "credit_limit") == [
        (1, "2024-01", D("1.50"), D("0.10"), D("5.00")),
        (2, "2024-02", None, D("123456789012.34"), None),
        (3, "2024-01", D("-2.25"), None, D("7.00")),
    ]


def test_float32_and_wide_decimals_fit_when_exact(tmp_path):
    path = _parquet(tmp_path, {"acct": [1], "backfill_month": ["2024-01"],
                               "balance": pa.array([0.1], pa.float32()),
                               "payment": pa.array([D("1.2500")], pa.decimal128(20, 4))})
    assert _values(_check(path), "balance", "payment") == [(D("0.10"), D("1.25"))]


@pytest.mark.parametrize("column,why", [
    (pa.array([1.0, 0.125], pa.float64()), "float 0.125 is not exactly one DECIMAL(18,2) value"),
    (pa.array([1.0, 1e16], pa.float64()), "float 1e+16 is not exactly one DECIMAL(18,2) value"),
    (pa.array([1.0, float("nan")], pa.float64()), "float nan is not a finite number"),
    (pa.array([1.0, 1234567.89], pa.float32()), "float 1234567.875 is not exactly one"),
    (pa.array([D("1"), D("1.255")], pa.decimal128(18, 3)), "1.255 has more than 2 decimal places"),
    (pa.array([1, 10**17], pa.int64()), "100000000000000000 does not fit DECIMAL(18,2)"),
])
def test_parquet_values_that_do_not_fit_are_not_rounded(tmp_path, column, why):
    msg = _error(_parquet(tmp_path, {"acct": [1, 2], "backfill_month": ["2024-01", "2024-01"], "payment": column}))
    assert f"row 2, column 'payment': {why}" in msg and "row 1 is the first row" in msg


def test_parquet_column_types_are_checked(tmp_path):
    msg = _error(_parquet(tmp_path, {"acct": [1.0], "backfill_month": ["2024-01"], "balance": [True]}))
    assert "column 'acct' has type double; it must hold integers or integer text" in msg
    assert "column 'balance' has type bool" in msg


def test_parquet_unknown_column_duplicates_and_empty(tmp_path):
    assert "unknown column 'balanc'" in _error(
        _parquet(tmp_path, {"acct": [1], "backfill_month": ["2024-01"], "balanc": [1]}, "a.parquet"))
    assert "acct 4 and month '2024-03' appear in 2 rows" in _error(
        _parquet(tmp_path, {"acct": [4, 4], "backfill_month": ["2024-03"] * 2, "balance": [1, 2]}, "b.parquet"))
    empty = {"acct": pa.array([], pa.int64()), "backfill_month": pa.array([], pa.string()),
             "balance": pa.array([], pa.decimal128(18, 2))}
    assert "has no data rows" in _error(_parquet(tmp_path, empty, "c.parquet"))


def test_a_file_that_is_not_parquet(tmp_path):
    path = tmp_path / "x.parquet"
    path.write_text("acct,backfill_month\n")
    assert "not a readable Parquet file" in _error(path)


# ------------------------------------------------------------------------ writing


def _good(tmp_path):
    return _check(_csv(tmp_path, "acct,backfill_month,balance\n1,2024-01,1\n2,2024-01,2\n2,2024-02,3\n", "g.csv"))


def test_write_appends_once_and_reports(tmp_path):
    table = FakeStaging(pending=[{"acct": 1, "backfill_month": "2024-02"}])  # another month: no clash
    result = stage.write_staged(table, _good(tmp_path), "demo.db.backfill_staging")
    ((df, props),) = table.appended
    assert df.num_rows == 3 and props == {stage.KEY_STAGED_ID: BID, stage.KEY_STAGED_FROM: "g.csv"}
    assert (result.rows, result.months, result.accounts, result.snapshot_id) == (3, ("2024-01", "2024-02"), 2, 101)
    text = "\n".join(result.lines())
    assert "staged 3 row(s) from g.csv into demo.db.backfill_staging" in text and "snapshot: 101" in text
    assert "not in the source (NULL, left untouched): payment, credit_limit" in text


def test_rows_already_pending_under_the_id_are_refused_and_nothing_is_appended(tmp_path):
    table = FakeStaging(pending=[{"acct": 2, "backfill_month": "2024-02"}, {"acct": 2, "backfill_month": "2024-02"}])
    with pytest.raises(InputError) as info:
        stage.write_staged(table, _good(tmp_path), "db.backfill_staging")
    assert table.appended == []
    msg = str(info.value)
    assert "1 row(s) cannot be staged" in msg
    assert ("row 3 (line 4), columns 'acct', 'backfill_month': acct 2 and month '2024-02' are already pending "
            "in db.backfill_staging under backfill id 'bf-stage-1'") in msg


def test_dry_run_checks_but_appends_nothing(tmp_path):
    table = FakeStaging()
    result = stage.write_staged(table, _good(tmp_path), "db.backfill_staging", dry_run=True)
    assert table.appended == [] and result.snapshot_id is None
    assert result.lines()[0].startswith("would stage (dry run, nothing written) 3 row(s)")


# -------------------------------------------------------------------- command line


@pytest.fixture
def fake_catalog(monkeypatch):
    """The CLI with its catalog replaced: ``tables.load`` of staging returns a FakeStaging."""
    table = FakeStaging()
    monkeypatch.setattr(options, "catalog_from_config", lambda cfg: (None, object()))
    monkeypatch.setattr(stage.tables, "load", lambda catalog, cfg, which: table)
    return table


def test_cli_stages_a_good_file(tmp_path, fake_catalog, capsys):
    path = _csv(tmp_path, "acct,backfill_month,balance\n1,2024-01,1.5\n")
    assert cli.main(["stage", "--backfill-id", BID, str(path)]) == 0
    assert len(fake_catalog.appended) == 1
    assert "staged 1 row(s) from entries.csv" in capsys.readouterr().out


def test_cli_bad_file_exits_3_before_any_catalog_opens(tmp_path, traps, capsys):
    path = _csv(tmp_path, "acct,backfill_month,balance\n1,2024-1,1\n")
    assert cli.main(["stage", "--backfill-id", BID, str(path)]) == 3
    err = capsys.readouterr().err
    assert "row 1 (line 2), column 'backfill_month'" in err and "nothing was written" in err
    assert traps == []


def test_cli_bad_pending_clash_exits_3_and_appends_nothing(tmp_path, fake_catalog, capsys):
    fake_catalog.pending = [{"acct": 1, "backfill_month": "2024-01"}]
    fake_catalog.snapshot = SimpleNamespace(snapshot_id=1, parent_snapshot_id=None)
    path = _csv(tmp_path, "acct,backfill_month,balance\n1,2024-01,1.5\n")
    assert cli.main(["stage", "--backfill-id", BID, str(path)]) == 3
    assert fake_catalog.appended == [] and "already pending" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["stage", "--backfill-id", BID],
                                  ["stage", "--backfill-id", BID, "x.csv", "--from-table", "db.t"]])
def test_cli_needs_exactly_one_source(argv, traps):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2


@pytest.mark.parametrize("argv,code", [(["--backfill-id", "bad id", "x.csv"], 3),
                                       (["--backfill-id", BID, "missing.csv"], 2),
                                       (["--backfill-id", BID, "--from-table", "db.t.x.y"], 2)])
def test_cli_rejects_bad_options_before_any_catalog(tmp_path, monkeypatch, traps, argv, code):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["stage", *argv]) == code
    assert traps == []


def test_exactly_the_shown_problems_say_nothing_about_more(tmp_path):
    body = "".join(f"{a},2024-13,1\n" for a in range(stage.SHOWN_PROBLEMS))
    msg = _error(_csv(tmp_path, "acct,backfill_month,balance\n" + body))
    assert f"{stage.SHOWN_PROBLEMS} row(s) cannot be staged" in msg and "only the first" not in msg
