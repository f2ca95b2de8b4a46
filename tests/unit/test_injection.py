"""Hostile strings never reach SQL: they are rejected before anything runs, or bound as data.

Every value that can end up in Spark SQL text — table names, catalog name, account/month/
history column names (TOML), backfill ids, months, ``--resume-from``, snapshot ids, the
rejection reason — goes through :mod:`backfill.core.identifiers` (validate, then quote) or is a
bound pyiceberg literal. These tests feed hostile strings (quotes, ';', ``--`` and ``/*``
comments, backticks, newlines, a trailing newline that ``re.match(...$)`` used to accept,
NUL, unicode look-alikes such as fullwidth digits, Cyrillic letters, a modifier-letter
apostrophe, a zero-width space and a right-to-left override) through:

* every CLI option that can reach SQL, with the catalog and Ray replaced by traps: the
  command must fail with the option's exit code and a message quoting the value, and must
  not open a catalog or start Ray;
* the Python API (``prepare``, ``verify_backfill``, ``cleanup_audits``, ``plan_run``) with
  a catalog object that fails on any use;
* the SQL generators (``merge_sql``, ``staging_source_sql``, ``mark_staging_sql``,
  ``matched_rows_sql``) directly.

No JVM, no Ray: these run in the unit suite.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from backfill import cli
from backfill.config import CatalogConfig, Config, HistoryColumn, TableConfig, config_from_mapping
from backfill.core.entries import Entry, validate_rows
from backfill.core.identifiers import (
    check_backfill_id,
    check_identifier,
    month_literal,
    quote_identifier,
    split_table_name,
    string_literal,
)
from backfill.core.months import is_month
from backfill.core.plan import plan_run
from backfill.errors import BackfillError, ConfigError, InputError
from backfill.sql import merge as merge_sql

#: Hostile identifier / id / month fragments.
HOSTILE = [
    "x'y",                      # single quote
    'x"y',                      # double quote
    "x;DROP TABLE t",           # statement separator
    "x -- c",                   # line comment
    "x--c",
    "x/*c*/",                   # block comment
    "x`y",                      # backtick (closes a quoted identifier)
    "x\ny",                     # newline
    "x\n",                      # trailing newline: re.match(r'...$') accepted this
    "x\r",
    "x\x00y",                   # NUL
    "x y",                      # space
    "x\\y",                     # backslash
    "\u0445y",                  # Cyrillic 'х' look-alike of 'x'
    "x\u02bcy",                 # modifier letter apostrophe (looks like ')
    "x\uff1by",                 # fullwidth semicolon
    "x\u200by",                 # zero-width space
    "x\u202ey",                 # right-to-left override
    "",
]
HOSTILE_MONTHS = [
    "2023-12'; DROP TABLE t; --", "2023-12\n", "2023-12 ", " 2023-12", "2023-12--",
    "2023-12/*", "\uff12\uff10\uff12\uff13-12",  # fullwidth digits
    "\u0662\u0660\u0662\u0663-12",                # Arabic-Indic digits
    "2023\u201012",                               # unicode hyphen
    "2023-1\u0662", "`2023-12`", "",
]
HOSTILE_IDS = ["bf'1", "bf;1", "bf--1'", "bf/*1*/", "bf`1", "bf\n", "bf 1", "bf\\1", "bf\u20101",
               "b\u0444", "-bf", "bf\x00", "bf\u200b", "bf\uff1b1", "x" * 129]


# ---------------------------------------------------------------------- validators


@pytest.mark.parametrize("bad", HOSTILE)
def test_identifiers_reject_hostile_names(bad):
    with pytest.raises(ConfigError) as info:
        quote_identifier(bad, "account column")
    assert repr(bad) in str(info.value)
    with pytest.raises(ConfigError):
        split_table_name(f"db.{bad}", "target table")
    with pytest.raises(ConfigError):
        split_table_name(f"{bad}.t", "target table")


@pytest.mark.parametrize("bad", HOSTILE_MONTHS)
def test_months_reject_hostile_values(bad):
    assert not is_month(bad)
    with pytest.raises(InputError):
        month_literal(bad)
    try:  # the generic literal accepts id-shaped text ('2023-12--'): still one inert literal
        lit = string_literal(bad)
    except InputError:
        return
    assert lit == f"'{bad}'" and not set(bad) & set("'\"`\\\n;/* ")


@pytest.mark.parametrize("bad", HOSTILE_IDS)
def test_backfill_ids_reject_hostile_values(bad):
    with pytest.raises(InputError) as info:
        check_backfill_id(bad)
    assert repr(bad) in str(info.value)


def test_comment_markers_inside_an_id_stay_inside_its_literal():
    """'bf--1' is a legal id (hyphens are): it only ever appears quoted, where '--' is inert."""
    assert check_backfill_id("bf--1") == "bf--1"
    sql = merge_sql.staging_source_sql(GOOD, "2023-01", ["bf--1"])
    assert "IN ('bf--1')" in sql


def test_quoted_values_are_exactly_the_validated_ones():
    assert quote_identifier("acct") == "`acct`"
    assert string_literal("bf-2024.01:x") == "'bf-2024.01:x'"
    assert month_literal("2023-01") == "'2023-01'"
    assert check_identifier("a" * 128) == "a" * 128
    with pytest.raises(ConfigError):
        check_identifier("a" * 129)


# ---------------------------------------------------------------------- CLI




def _run(capsys, argv):
    code = cli.main(argv)
    return code, capsys.readouterr().err


#: Commands whose options can reach SQL, with the arguments each needs besides the bad one.
COMMANDS = {
    "backfill": ["--backfill-id", "bf-ok"],
    "generate-sql": ["--backfill-id", "bf-ok"],
    "estimate": ["--backfill-id", "bf-ok"],
    "verify": ["--backfill-id", "bf-ok"],
    "status": ["--backfill-id", "bf-ok"],
    "report": ["--backfill-id", "bf-ok"],
    "cleanup-audits": [],
    "setup": [],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("option", ["--target-table", "--staging-table", "--audit-table"])
@pytest.mark.parametrize("bad", ["db.t'x", "db.t;DROP TABLE db.t", "db.t -- x", "db.`t`/*x*/",
                                 "db.t\n", "db.t\u0445", "t"])
def test_cli_rejects_hostile_table_names_before_anything_runs(traps, capsys, command, option, bad):
    code, err = _run(capsys, [command, *COMMANDS[command], f"{option}={bad}"])
    assert code == ConfigError.exit_code, err
    assert repr(bad) in err
    assert traps == []


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("bad", ["demo;x", "demo'", "de`mo", "demo\n", "d\u0435mo", "1demo"])
def test_cli_rejects_a_hostile_catalog_name(traps, capsys, command, bad):
    code, err = _run(capsys, [command, *COMMANDS[command], f"--catalog-name={bad}"])
    assert code == ConfigError.exit_code, err
    assert repr(bad) in err and "catalog name" in err
    assert traps == []


@pytest.mark.parametrize("command", ["backfill", "generate-sql", "estimate", "verify", "status", "report"])
@pytest.mark.parametrize("bad", HOSTILE_IDS)
def test_cli_rejects_hostile_backfill_ids(traps, capsys, command, bad):
    code, err = _run(capsys, [command, f"--backfill-id={bad}"])
    assert code == InputError.exit_code, err
    assert repr(bad) in err and "backfill id" in err
    assert traps == []


def test_cli_rejects_a_hostile_id_among_good_ones(traps, capsys):
    code, err = _run(capsys, ["backfill", "--backfill-id", "bf-1", "--backfill-id", "bf'; --"])
    assert code == 3 and repr("bf'; --") in err
    assert traps == []


@pytest.mark.parametrize("command", ["backfill", "generate-sql", "estimate"])
@pytest.mark.parametrize("option,exit_code", [("--backfill-month", 3), ("--resume-from", 2)])
@pytest.mark.parametrize("bad", HOSTILE_MONTHS)
def test_cli_rejects_hostile_months(traps, capsys, command, option, exit_code, bad):
    code, err = _run(capsys, [command, "--backfill-id", "bf-1", f"{option}={bad}"])
    assert code == exit_code, err
    assert option in err and repr(bad) in err
    assert traps == []


def test_cli_rejects_a_hostile_first_month_and_sample_id(traps, capsys):
    code, err = _run(capsys, ["setup", "--sample-data", "--first-month", "2022-01'; --"])
    assert code == 2 and "--first-month" in err
    code, err = _run(capsys, ["setup", "--sample-data", "--backfill-id", "bf'x"])
    assert code == 3 and "\"bf'x\"" in err
    assert traps == []


@pytest.mark.parametrize("bad", ["1,2;DROP", "1,'2'", "1 -- 2", "0x10", "1e3"])
def test_cli_sample_accounts_must_be_integers(traps, capsys, bad):
    code, err = _run(capsys, ["verify", "--backfill-id", "bf-1", f"--sample-accounts={bad}"])
    assert code == 2 and "--sample-accounts" in err and repr(bad) in err
    assert traps == []


# ---------------------------------------------------------------------- TOML column names


def _toml_value(s: str) -> str:
    """A TOML basic string for any Python string (escapes quotes, backslashes, controls)."""
    out = []
    for ch in s:
        if ch in '"\\' or ord(ch) < 0x20 or ord(ch) == 0x7f:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


@pytest.mark.parametrize("key", ["account_column", "month_column", "target_table", "staging_table",
                                 "audit_table"])
@pytest.mark.parametrize("bad", HOSTILE)
def test_toml_table_settings_reject_hostile_names(traps, capsys, tmp_path, key, bad):
    value = f"db.{bad}" if key.endswith("_table") else bad
    f = tmp_path / "c.toml"
    f.write_text(f"[tables]\n{key} = {_toml_value(value)}\n", encoding="utf-8")
    code, err = _run(capsys, ["backfill", "--config", str(f), "--backfill-id", "bf-1"])
    assert code == 2, err
    assert repr(bad) in err or repr(value) in err
    assert traps == []


@pytest.mark.parametrize("slot", [0, 1])
@pytest.mark.parametrize("bad", HOSTILE)
def test_toml_history_columns_reject_hostile_names(traps, capsys, tmp_path, slot, bad):
    pair = ["balance_history", "balance"]
    pair[slot] = bad
    f = tmp_path / "c.toml"
    f.write_text(f"[tables]\nhistory_columns = [[{_toml_value(pair[0])}, {_toml_value(pair[1])}]]\n",
                 encoding="utf-8")
    code, err = _run(capsys, ["generate-sql", "--config", str(f), "--backfill-id", "bf-1"])
    assert code == 2, err
    assert repr(bad) in err
    assert ("history array column" if slot == 0 else "staging value column") in err
    assert traps == []


def test_toml_catalog_name_is_checked(traps, capsys, tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[catalog]\nname = "demo.x; DROP"\n')
    code, err = _run(capsys, ["status", "--config", str(f), "--backfill-id", "bf-1"])
    assert code == 2 and "catalog name 'demo.x; DROP'" in err
    assert traps == []


def test_non_string_history_columns_are_rejected():
    with pytest.raises(ConfigError, match="not a plain identifier"):
        config_from_mapping({"tables": {"history_columns": [[1, 2]]}}).validated()
    with pytest.raises(ConfigError, match="must be"):
        config_from_mapping({"tables": {"history_columns": ["a; DROP"]}}).validated()


def test_a_history_column_too_long_for_the_merge_helper_column_is_refused_up_front():
    ok = "h" * 119
    cfg = Config(tables=TableConfig(history_columns=(HistoryColumn(ok, "v"),))).validated()
    src = merge_sql.staging_source_sql(cfg, "2023-01", ["bf-1"])
    assert f"`{ok}__updates`" in merge_sql.merge_sql(cfg, "2023-01", src)
    with pytest.raises(ConfigError, match="longer than 119"):
        Config(tables=TableConfig(history_columns=(HistoryColumn("h" * 120, "v"),))).validated()


# ---------------------------------------------------------------------- Python API


class _Untouchable:
    """A catalog that fails the test on any use."""

    def __getattr__(self, name):
        raise AssertionError(f"catalog.{name} used for rejected input")


def _hostile_cfg(**tables) -> Config:
    """A Config built without validation (dataclasses do not validate on construction)."""
    return Config(tables=dataclasses.replace(TableConfig(), **tables))


@pytest.mark.parametrize("tables", [
    {"target_table": "db.t;DROP"}, {"staging_table": "db.`s`"}, {"audit_table": "db.a\n"},
    {"account_column": "acct' OR '1'='1"}, {"month_column": "m--"},
    {"history_columns": (HistoryColumn("h/*", "v"),)},
    {"history_columns": (HistoryColumn("h", "v;x"),)},
])
def test_prepare_rejects_hostile_config_before_touching_the_catalog(tables):
    from backfill.ops.prepare import prepare

    with pytest.raises(ConfigError):
        prepare(_hostile_cfg(**tables), _Untouchable(), ["bf-1"])


def test_prepare_rejects_a_hostile_catalog_name_before_touching_the_catalog():
    from backfill.ops.prepare import prepare

    cfg = Config(catalog=CatalogConfig(name="demo`; DROP"))
    with pytest.raises(ConfigError, match="catalog name"):
        prepare(cfg, _Untouchable(), ["bf-1"])


@pytest.mark.parametrize("bad", HOSTILE_IDS)
def test_prepare_and_verify_reject_hostile_ids_before_touching_the_catalog(bad):
    from backfill.ops.prepare import prepare
    from backfill.ops.verify import verify_backfill

    with pytest.raises(InputError, match="backfill id"):
        prepare(Config(), _Untouchable(), ["bf-ok", bad])
    with pytest.raises(InputError, match="backfill id"):
        verify_backfill(Config(), _Untouchable(), [bad])


@pytest.mark.parametrize("bad", HOSTILE_MONTHS)
def test_prepare_rejects_a_hostile_backfill_month_before_touching_the_catalog(bad):
    from backfill.ops.prepare import prepare

    with pytest.raises(InputError, match="--backfill-month"):
        prepare(Config(), _Untouchable(), ["bf-1"], backfill_month=bad)


@pytest.mark.parametrize("bad", HOSTILE_MONTHS + ["2023-1", "23-12"])
def test_plan_rejects_a_hostile_resume_from(bad):
    e = Entry("2023-01", 1, "bf-1", (Decimal("1.00"),))
    with pytest.raises(ConfigError, match="--resume-from"):
        plan_run([e], ["2023-01"], 36, resume_from=bad)


def test_cleanup_rejects_a_non_integer_retention_before_touching_the_catalog():
    from backfill.ops.cleanup import cleanup_audits

    for bad in ("1; DROP", -1, 1.5, True):
        with pytest.raises(ConfigError, match="days-to-keep"):
            cleanup_audits(_Untouchable(), Config(), bad)


def test_status_run_id_is_a_bound_value_not_sql(monkeypatch):
    """--run-id only ever reaches a pyiceberg filter literal: plain data, never SQL text."""
    from pyiceberg.expressions import And, EqualTo

    from backfill.iceberg import tables
    from backfill.ops import status

    seen = {}

    class FakeScan:
        def to_arrow(self):
            import pyarrow as pa
            return pa.table({"x": pa.array([], pa.int64())})

    class FakeTable:
        def current_snapshot(self):
            return object()

        def scan(self, row_filter):
            seen["filter"] = row_filter
            return FakeScan()

    monkeypatch.setattr(tables, "load", lambda catalog, cfg, which: FakeTable())
    hostile = "run-1' OR '1'='1; DROP TABLE t; --"
    assert status.load_audit_rows(None, Config(), "bf-1", hostile) == []
    assert seen["filter"] == And(EqualTo("backfill_id", "bf-1"), EqualTo("run_id", hostile))


def test_hostile_staged_values_are_reported_as_data():
    rows = [{"backfill_id": "bf-1", "acct": 1, "backfill_month": "2023-01'; DROP TABLE t; --",
             "balance": Decimal("1.00")},
            {"backfill_id": "bf-1", "acct": 2, "backfill_month": "2023-01",
             "balance": "1; DROP TABLE t"}]
    with pytest.raises(InputError) as info:
        validate_rows(rows, ["balance"])
    msg = str(info.value)
    assert "backfill_month \"2023-01'; DROP TABLE t; --\" is not of the form" in msg
    assert "value '1; DROP TABLE t' is not a decimal" in msg


# ---------------------------------------------------------------------- SQL generators


GOOD = Config(tables=TableConfig(history_columns=(HistoryColumn("balance_history", "balance"),)))


@pytest.mark.parametrize("bad", HOSTILE_MONTHS)
def test_sql_generators_reject_hostile_partitions(bad):
    src = merge_sql.staging_source_sql(GOOD, "2023-01", ["bf-1"])
    for make in (lambda: merge_sql.staging_source_sql(GOOD, bad, ["bf-1"]),
                 lambda: merge_sql.merge_sql(GOOD, bad, src),
                 lambda: merge_sql.matched_rows_sql(GOOD, bad, src),
                 lambda: merge_sql.mark_staging_sql(GOOD, ["bf-1"], [bad], None, "applied")):
        with pytest.raises(BackfillError):
            make()


@pytest.mark.parametrize("bad", HOSTILE_IDS)
def test_sql_generators_reject_hostile_ids(bad):
    with pytest.raises(InputError):
        merge_sql.staging_source_sql(GOOD, "2023-01", ["bf-1", bad])
    with pytest.raises(InputError):
        merge_sql.mark_staging_sql(GOOD, [bad], ["2023-01"], None, "applied")


@pytest.mark.parametrize("snap", ["1; DROP TABLE t", 1.5, True, "1"])
def test_sql_generators_reject_non_integer_snapshot_ids(snap):
    with pytest.raises(InputError, match="snapshot id"):
        merge_sql.staging_source_sql(GOOD, "2023-01", ["bf-1"], snap)
    with pytest.raises(InputError, match="snapshot id"):
        merge_sql.mark_staging_sql(GOOD, ["bf-1"], ["2023-01"], snap, "applied")


def test_sql_generators_reject_hostile_status():
    with pytest.raises(ValueError):
        merge_sql.mark_staging_sql(GOOD, ["bf-1"], ["2023-01"], None, "applied' --")


@pytest.mark.parametrize("tables", [
    {"target_table": "db.t;DROP"}, {"staging_table": "db.`s`"},
    {"account_column": "acct' OR '1'='1"}, {"month_column": "m--"},
    {"history_columns": (HistoryColumn("h/*", "balance"),)},
    {"history_columns": (HistoryColumn("h", "v\n"),)},
])
def test_sql_generators_refuse_an_unvalidated_hostile_config(tables):
    cfg = _hostile_cfg(**tables)
    with pytest.raises(ConfigError):
        src = merge_sql.staging_source_sql(cfg, "2023-01", ["bf-1"])
        merge_sql.merge_sql(cfg, "2023-01", src)
        merge_sql.matched_rows_sql(cfg, "2023-01", src)


@pytest.mark.parametrize("reason", [
    "x'); DROP TABLE t; --", "a\\' OR 1=1", "line\nbreak", "`tick`", "/* c */", "\u02bc\uff07quote",
])
def test_free_text_reasons_cannot_break_out_of_their_literal(reason):
    sql = merge_sql.mark_staging_sql(GOOD, ["bf-1"], ["2023-01"], 7, "rejected", reason)
    literal = sql.split("st.`error` = ", 1)[1]
    assert literal.startswith("'") and literal.endswith("'")
    inner = literal[1:-1]
    assert not set(inner) & set("'\"\\`\n\r*"), inner


def test_generated_sql_holds_only_validated_values():
    """The staged row values never appear in SQL: the MERGE reads them as data from staging."""
    cfg = Config(tables=TableConfig(history_columns=(HistoryColumn("balance_history", "balance"),)))
    src = merge_sql.staging_source_sql(cfg, "2023-03", ["bf-1", "bf-2"], 42)
    sql = merge_sql.merge_sql(cfg, "2023-03", src)
    literals = set(sql.split("'")[1::2])
    assert literals <= {"bf-1", "bf-2", "pending", "2023-03", "2020-04"}, literals
