"""Fast half of the bad-input catalogue (the live half is tests/integration/test_bad_input_catalogue.py).

No JVM, no Ray: staged rows are checked with ``validate_rows``, options through
``backfill.cli.main`` with the catalog and Ray replaced by traps (so a rejected option
provably opens no catalog and starts nothing), environment checks with a doctored PATH,
and catalog secrets against an unreachable local port.

=====  ==========================================  ==========================================
 #     bad input                                   expected error (exit code)
=====  ==========================================  ==========================================
 U1    month '2023-13' '2023-1' '23-12' '' NULL,   InputError naming row + value (3)
       '2023-12\\n', fullwidth/Arabic digits
 U2    NULL / bool / 65-bit account                InputError naming the row (3)
 U3    duplicate (acct, month) in one id           InputError naming acct + month (3)
 U4    value > DECIMAL(18,2), 3 decimals, NaN,     InputError naming the column + value (3)
       Infinity, text, float
 U5    --max-parallel 0 / -1                       ConfigError 'max_parallel' (2)
 U6    --window 0 / 1201, --buckets 0,             ConfigError naming the field (2)
       --retries -1
 U7    hadoop catalog + --max-parallel 3 (also     CatalogUnsafeError telling what to do (2);
       'Hadoop', catalog-impl HadoopCatalog)       allow_unsafe_serial clamps to 1
 U8    --backfill-month / --resume-from /          InputError (3) / ConfigError (2) naming the
       --first-month not a month                   option, before any catalog is opened
 U9    --sample-accounts 'a,b'                     ConfigError naming the option (2)
 U10   --days-to-keep -1                           ConfigError (2)
 U11   table name with 1 or 4 parts / another      ConfigError naming the table (2)
       catalog's name
 U12   unknown TOML section/key, missing file,     ConfigError (2)
       invalid TOML, value column clashing with
       bookkeeping columns
 U13   --iceberg-jar missing / not a jar /         EnvironmentProblem saying how to fix (5)
       jar without shaded Jackson
 U14   no java on PATH                             EnvironmentProblem: install Java 17 (5)
 U15   unreachable catalog with secrets in         EnvironmentProblem with redacted URI; no
       properties, URI user info and query         secret in message, logs or stderr (5)
 U16   history arrays longer than W                verify flags any growth and notes them
=====  ==========================================  ==========================================
"""

from __future__ import annotations

import logging
import socket
import warnings
import zipfile
from decimal import Decimal

import pytest

from backfill import cli
from backfill.cli import options
from backfill.config import CatalogConfig, Config, HistoryColumn, with_overrides
from backfill.core.entries import validate_rows
from backfill.errors import CatalogUnsafeError, EnvironmentProblem, InputError

D = Decimal


def _row(**kw):
    base = {"backfill_id": "bf-1", "acct": 1, "backfill_month": "2023-01", "balance": D("1.00")}
    return {**base, **kw}


# ---------------------------------------------------------------------- staged rows (U1-U4)


@pytest.mark.parametrize("month", ["2023-13", "2023-1", "23-12", "", None, "2023-00", "2023/12",
                                   "2023-12\n", " 2023-12", "\uff12\uff10\uff12\uff13-12",
                                   "\u0662\u0660\u0662\u0663-12", 202312])
def test_U1_malformed_months_are_named_with_their_row(month):
    with pytest.raises(InputError) as info:
        validate_rows([_row(acct=7, backfill_month=month)], ["balance"])
    msg = str(info.value)
    assert f"backfill_month={month!r}" in msg and "acct=7" in msg
    assert f"backfill_month {month!r} is not of the form 'YYYY-MM'" in msg
    assert "nothing was written" in msg


@pytest.mark.parametrize("acct,why", [(None, "account is NULL"), (True, "not a 64-bit integer"),
                                      (2**63, "not a 64-bit integer"), ("12", "not a 64-bit integer")])
def test_U2_bad_accounts_are_named(acct, why):
    with pytest.raises(InputError, match=why) as info:
        validate_rows([_row(acct=acct)], ["balance"])
    assert f"acct={acct!r}" in str(info.value)


def test_U3_duplicates_within_one_backfill_id_are_named():
    with pytest.raises(InputError) as info:
        validate_rows([_row(acct=5), _row(acct=5, balance=D("2.00"))], ["balance"])
    assert "duplicate entry for acct=5 month='2023-01'" in str(info.value)
    assert "backfill_id='bf-1'" in str(info.value)


@pytest.mark.parametrize("value,why", [
    (D("10000000000000000.00"), "does not fit DECIMAL(18,2)"),
    (D("-10000000000000000"), "does not fit DECIMAL(18,2)"),
    (D("1.005"), "more than 2 decimal places"),
    (D("NaN"), "not finite"), (D("Infinity"), "not finite"),
    ("abc", "not a decimal"), (1.5, "not a decimal"), (True, "not a decimal"),
])
def test_U4_values_that_do_not_fit_are_named(value, why):
    with pytest.raises(InputError) as info:
        validate_rows([_row(balance=value)], ["balance"])
    assert "column 'balance'" in str(info.value) and why in str(info.value)


def test_U4_largest_decimal_18_2_fits():
    (e,) = validate_rows([_row(balance=D("9999999999999999.99"))], ["balance"])
    assert e.values == (D("9999999999999999.99"),)


# ---------------------------------------------------------------------- options (U5-U12)




def _cli(capsys, *argv):
    code = cli.main(list(argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("argv,code,needle", [
    (["backfill", "--backfill-id", "b", "--max-parallel", "0"], 2, "max_parallel must be at least 1, got 0"),
    (["backfill", "--backfill-id", "b", "--max-parallel=-1"], 2, "max_parallel must be at least 1, got -1"),
    (["estimate", "--max-parallel", "0", "--backfill-id", "b"], 2, "max_parallel must be at least 1, got 0"),
    (["backfill", "--backfill-id", "b", "--window", "0"], 2, "window must be between 1 and 1200 months, got 0"),
    (["generate-sql", "--backfill-id", "b", "--window", "1201"], 2, "got 1201"),
    (["backfill", "--backfill-id", "b", "--buckets", "0"], 2, "buckets must be between 1 and 100000, got 0"),
    (["backfill", "--backfill-id", "b", "--retries=-1"], 2, "retries must be 0 or more, got -1"),
    (["backfill", "--backfill-id", "b", "--backfill-month", "2023-13"], 3, "--backfill-month '2023-13'"),
    (["estimate", "--backfill-month", "2023-1"], 3, "--backfill-month '2023-1'"),
    (["backfill", "--backfill-id", "b", "--resume-from", "23-12"], 2, "--resume-from '23-12'"),
    (["generate-sql", "--backfill-id", "b", "--resume-from", "last"], 2, "--resume-from 'last'"),
    (["setup", "--sample-data", "--first-month", "2022-1"], 2, "--first-month '2022-1'"),
    (["verify", "--backfill-id", "b", "--sample-accounts", "1,x"], 2, "--sample-accounts '1,x'"),
    (["cleanup-audits", "--days-to-keep=-1"], 2, "--days-to-keep must be 0 or more, got -1"),
    (["compact", "--partition", "2023-13"], 3, "month '2023-13' is not of the form 'YYYY-MM'"),
    (["compact", "--backfill-id", "x'; DROP TABLE t; --"], 3, "backfill id \"x'; DROP TABLE t; --\" is not valid"),
    (["compact", "--partition", "2023-01", "--target-table", "db.t`; --"], 2, "is not a plain identifier"),
    (["backfill", "--backfill-id", "b", "--target-table", "history"], 2, "target table 'history' must have"),
    (["backfill", "--backfill-id", "b", "--staging-table", "a.b.c.d"], 2, "staging table 'a.b.c.d'"),
    (["backfill", "--backfill-id", "b", "--audit-table", "other.db.audit"], 2,
     "audit table 'other.db.audit' names catalog 'other'"),
    (["backfill", "--backfill-id", "b", "--catalog-type", "hadoop", "--max-parallel", "3"], 2,
     "--max-parallel 1"),
    (["backfill", "--backfill-id", "b", "--config", "/nonexistent/bf.toml"], 2, "does not exist"),
])
def test_U5_to_U12_bad_options_fail_before_anything_runs(traps, capsys, argv, code, needle):
    got, err = _cli(capsys, *argv)
    assert got == code, err
    assert needle in err
    assert err.startswith("error: ")
    assert traps == []


@pytest.mark.parametrize("toml,needle", [
    ("[bogus]\nx = 1", "unknown section(s) ['bogus']"),
    ("[run]\nspeed = 1", "unknown key(s) ['speed'] in [run]"),
    ("[tables\n", "not valid TOML"),
    ('[tables]\nhistory_columns = [["status_history", "status"]]', "clash with staging bookkeeping"),
    ('[tables]\nhistory_columns = [["acct", "x"]]\naccount_column = "acct"',
     "cannot also be the account or month column"),
    ('[catalog]\ntype = "hadoop"\n[run]\nmax_parallel = 2', "allow_unsafe_serial = true"),
])
def test_U12_bad_config_files_fail_before_anything_runs(traps, capsys, tmp_path, toml, needle):
    f = tmp_path / "bf.toml"
    f.write_text(toml)
    got, err = _cli(capsys, "backfill", "--backfill-id", "b", "--config", str(f))
    assert got == 2 and needle in err, err
    assert traps == []


# ---------------------------------------------------------------------- catalog safety (U7)


@pytest.mark.parametrize("catalog", [
    CatalogConfig(type="hadoop"), CatalogConfig(type="Hadoop"), CatalogConfig(type=" hadoop "),
    CatalogConfig(type="custom", properties={"catalog-impl": "org.apache.iceberg.hadoop.HadoopCatalog"}),
    CatalogConfig(type="custom",
                  spark_properties={"catalog-impl": "org.apache.iceberg.hadoop.HadoopCatalog"}),
])
def test_U7_parallel_partitions_are_refused_on_a_non_atomic_catalog(catalog):
    cfg = Config(catalog=catalog)
    assert cfg.validated().max_parallel == 1  # serial is accepted
    with pytest.raises(CatalogUnsafeError) as info:
        with_overrides(cfg, run__max_parallel=3).validated()
    msg = str(info.value)
    assert "no atomic commits" in msg and "max_parallel 3" in msg
    assert "--max-parallel 1" in msg and "allow_unsafe_serial = true under [catalog]" in msg
    assert "Hive metastore" in msg


def test_U7_allow_unsafe_serial_runs_one_partition_at_a_time(caplog):
    cfg = Config(catalog=CatalogConfig(type="hadoop", allow_unsafe_serial=True))
    for parallel in (1, 3, 16):
        clamped = with_overrides(cfg, run__max_parallel=parallel)
        with caplog.at_level(logging.WARNING, logger="backfill.config"):
            assert clamped.validated().max_parallel == 1
    assert "running one partition at a time" in caplog.text


def test_U7_allow_unsafe_serial_from_toml_and_cli(tmp_path):
    f = tmp_path / "bf.toml"
    f.write_text('[catalog]\ntype = "hadoop"\nallow_unsafe_serial = true\n')
    args = cli.build_parser().parse_args(["backfill", "--backfill-id", "b", "--config", str(f),
                                          "--max-parallel", "4"])
    assert options.config_from_args(args).max_parallel == 1


def test_U7_atomic_catalogs_keep_their_parallelism():
    for kind in ("hive", "rest", "glue", "jdbc", "embedded"):
        cfg = with_overrides(Config(catalog=CatalogConfig(type=kind, allow_unsafe_serial=True)),
                             run__max_parallel=4)
        assert cfg.validated().max_parallel == 4


# ---------------------------------------------------------------------- environment (U13-U14)


def test_U13_iceberg_jar_missing_or_broken(tmp_path):
    from cluster.jars import iceberg_runtime_jar

    with pytest.raises(EnvironmentProblem) as info:
        iceberg_runtime_jar(tmp_path / "nope.jar")
    assert "nope.jar" in str(info.value) and "does not exist" in str(info.value)
    assert "pip install snowpark-connect-deps-iceberg==1.0.2" in str(info.value)
    assert "--iceberg-jar" in str(info.value)

    text = tmp_path / "notes.jar"
    text.write_text("not a zip")
    with pytest.raises(EnvironmentProblem, match=r"notes\.jar.*cannot be read.*pip install"):
        iceberg_runtime_jar(text)

    hollow = tmp_path / "iceberg-spark-runtime-3.5_2.12-9.9.jar"
    with zipfile.ZipFile(hollow, "w") as zf:
        zf.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
    with pytest.raises(EnvironmentProblem, match=r"shaded Jackson.*To fix it, install it"):
        iceberg_runtime_jar(hollow)


def _no_java(monkeypatch, tmp_path):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))


def test_U14_missing_java_says_how_to_install_it(monkeypatch, tmp_path):
    from cluster.java import find_java
    from cluster.spark_session import start_spark

    _no_java(monkeypatch, tmp_path)
    with pytest.raises(EnvironmentProblem) as info:
        find_java()
    assert "Java was not found" in str(info.value)
    assert "apt-get install openjdk-17-jre-headless" in str(info.value)
    assert "JAVA_HOME" in str(info.value)
    with pytest.raises(EnvironmentProblem, match="Java was not found.*Java 17"):
        start_spark("x", {}, Config().spark)


def test_U14_missing_java_through_the_cli(monkeypatch, tmp_path, capsys):
    """A fresh embedded warehouse needs Java for its catalog: exit 5, nothing created."""
    _no_java(monkeypatch, tmp_path)
    wh = tmp_path / "wh"
    code, err = _cli(capsys, "setup", "--warehouse", str(wh))
    assert code == 5
    assert "Java was not found" in err and "JAVA_HOME" in err
    assert not (wh / ".metastore" / "state.json").exists()
    assert not any(p.name != ".metastore" for p in wh.iterdir()) if wh.exists() else True


def test_U14_a_java_home_without_java_is_named(monkeypatch, tmp_path):
    from cluster.java import find_java

    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(EnvironmentProblem, match=r"JAVA_HOME=.*jdk.*has no bin/java"):
        find_java()


# ---------------------------------------------------------------------- secrets (U15)

SECRETS = ("pw-in-userinfo-1", "tok-in-query-2", "client-secret-3", "cred-4", "s3-key-5", "token-6")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _assert_clean(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"secret {secret!r} leaked: {text[:400]}"


@pytest.mark.parametrize("kind,uri", [
    ("hive", "thrift://alice:pw-in-userinfo-1@127.0.0.1:{port}"),
    ("rest", "http://alice:pw-in-userinfo-1@127.0.0.1:{port}/api?token=tok-in-query-2&x=1"),
])
def test_U15_unreachable_catalog_error_and_logs_hold_no_secret(caplog, kind, uri):
    from cluster.catalog import ResolvedCatalog, load_pyiceberg_catalog

    port = _closed_port()
    resolved = ResolvedCatalog("demo", kind, {
        "uri": uri.format(port=port), "client.secret": "client-secret-3", "credential": "cred-4",
        "s3.secret-access-key": "s3-key-5"}, pyiceberg_extra={"token": "token-6"})
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(EnvironmentProblem) as info:
            load_pyiceberg_catalog(resolved)
    _assert_clean(*(str(w.message) for w in caught))  # pyiceberg warns with the full uri
    msg = str(info.value)
    assert f"cannot reach catalog 'demo' ({kind}) at " in msg
    assert f"alice:***@127.0.0.1:{port}" in msg
    assert info.value.__cause__ is None and info.value.__suppress_context__
    _assert_clean(msg, caplog.text, repr(resolved.redacted()))


def test_U15_unreachable_catalog_through_the_cli(capsys, caplog, tmp_path):
    port = _closed_port()
    f = tmp_path / "bf.toml"
    f.write_text(f'[catalog]\ntype = "hive"\nproperties = {{ uri = "thrift://bob:pw-in-userinfo-1@127.0.0.1:{port}", '
                 '"client.password" = "client-secret-3" }\n')
    with caplog.at_level(logging.DEBUG):
        code = cli.main(["status", "--config", str(f), "--backfill-id", "bf-1", "--log-level", "DEBUG"])
    captured = capsys.readouterr()
    assert code == 5
    assert f"thrift://bob:***@127.0.0.1:{port}" in captured.err
    _assert_clean(captured.out, captured.err, caplog.text)


def test_U15_catalog_uri_option_with_a_password_is_redacted(capsys, caplog):
    port = _closed_port()
    with caplog.at_level(logging.DEBUG):
        code = cli.main(["report", "--backfill-id", "bf-1", "--catalog-type", "hive",
                         "--catalog-uri", f"thrift://bob:pw-in-userinfo-1@127.0.0.1:{port}"])
    captured = capsys.readouterr()
    assert code == 5 and "bob:***@" in captured.err
    _assert_clean(captured.out, captured.err, caplog.text)


def test_U15_client_errors_quoting_a_secret_are_scrubbed(monkeypatch):
    """A non-connection error whose text quotes a secret is re-raised without it."""
    import pyiceberg.catalog

    from cluster.catalog import ResolvedCatalog, load_pyiceberg_catalog

    def boom(name, **props):
        raise ValueError(f"bad credential {props['credential']!r} for {props['uri']}")

    monkeypatch.setattr(pyiceberg.catalog, "load_catalog", boom)
    resolved = ResolvedCatalog("demo", "rest", {"uri": "https://u:pw-in-userinfo-1@cat/api",
                                                "credential": "cred-4"})
    with pytest.raises(EnvironmentProblem) as info:
        load_pyiceberg_catalog(resolved)
    assert "cannot open catalog 'demo'" in str(info.value) and "***" in str(info.value)
    _assert_clean(str(info.value))


@pytest.mark.parametrize("value,shown", [
    ("thrift://u:pw-in-userinfo-1@h:9083", "thrift://u:***@h:9083"),
    ("https://h/api?token=tok-in-query-2&warehouse=w", "https://h/api?token=***&warehouse=w"),
    ("jdbc:postgresql://h:5432/db?user=u&password=pw-in-userinfo-1", "jdbc:postgresql://h:5432/db?user=u&password=***"),
    ("postgresql+psycopg2://u:pw-in-userinfo-1@h/db", "postgresql+psycopg2://u:***@h/db"),
    ("http://h:8181", "http://h:8181"),
])
def test_U15_redaction_of_urls(value, shown):
    from backfill.core.secrets import redact_url

    assert redact_url(value) == shown


def test_U15_config_and_resolved_redaction_agree():
    from cluster.catalog import resolve_catalog

    cat = CatalogConfig(type="rest", properties={
        "uri": "https://u:pw-in-userinfo-1@h/api?credential=cred-4", "token": "token-6",
        "s3.access-key-id": "s3-key-5"}, spark_properties={"client.secret": "client-secret-3"})
    shown = repr(cat.redacted_properties()) + repr(resolve_catalog(cat).redacted())
    _assert_clean(shown)
    assert "https://u:***@h/api?credential=***" in shown


def test_U15_secrets_never_reach_a_generated_sql_script_header():
    """The script header names the catalog but never its properties."""
    from backfill.core.plan import plan_run
    from backfill.prepared import PreparedRun
    from backfill.sql.script import header

    cfg = Config(catalog=CatalogConfig(type="rest", properties={
        "uri": "https://u:pw-in-userinfo-1@h", "token": "token-6"}))
    prepared = PreparedRun(cfg, ("bf-1",), "run-1", plan_run([], [], 36), 1, {})
    text = header(prepared)
    assert "demo" in text
    _assert_clean(text)


# ---------------------------------------------------------------------- over-long arrays (U16)


def test_U16_verify_flags_an_overlong_array_that_grew_and_accepts_one_left_as_is():
    from backfill.ops.verify import check_row

    window = 36
    before = {"balance_history": [D(i) for i in range(40)]}  # already longer than W
    updates = {"balance_history": {3: D("9.99")}}
    same_length = list(before["balance_history"])
    same_length[3] = D("9.99")
    problems, _ = check_row("2023-06", 1, before, {"balance_history": same_length}, updates,
                            ["balance_history"], window)
    assert problems == []
    grown = same_length + [None]
    problems, _ = check_row("2023-06", 1, before, {"balance_history": grown}, updates,
                            ["balance_history"], window)
    assert [p.why for p in problems] == ["wrong array length"]


def test_verify_accepts_a_null_array_left_alone_for_a_later_row_and_flags_one_created():
    from backfill.ops.verify import check_row

    maybe = {"balance_history": {3: D("9.99")}}  # a later-staged row holds the only cell
    problems, _ = check_row("2023-06", 1, {"balance_history": None}, {"balance_history": None}, {},
                            ["balance_history"], 36, maybe)
    assert problems == []
    problems, _ = check_row("2023-06", 1, {"balance_history": None},
                            {"balance_history": [None, None, None, D("9.99")]}, {}, ["balance_history"], 36, maybe)
    assert problems == []
    problems, _ = check_row("2023-06", 1, {"balance_history": None},
                            {"balance_history": [None, None, None, D("1.00")]}, {}, ["balance_history"], 36, maybe)
    assert [p.why for p in problems] == ["staged value not at its offset"]


def test_U16_reference_rule_never_lengthens_an_overlong_array():
    from bench.reference_model import apply_rule

    table = {(1, "2023-06"): {"h": [D(i) for i in range(40)]}}
    after = apply_rule(table, [(1, "2023-03", {"h": D("7.00")})], 36)
    assert len(after[(1, "2023-06")]["h"]) == 40 and after[(1, "2023-06")]["h"][3] == D("7.00")


def test_U16_merge_sql_length_never_exceeds_the_existing_or_the_window():
    from backfill.sql.merge import updated_array_sql

    expr = updated_array_sql(HistoryColumn("h", "v"))
    # new length = greatest(size(h), max staged offset + 1); offsets are < W by planning
    assert ("greatest(CASE WHEN t.`h` IS NULL THEN 0 ELSE size(t.`h`) END, "
            "array_max(map_keys(s.`h__updates`)) + 1)") in expr
    assert "concat(" not in expr and "slice(" not in expr
