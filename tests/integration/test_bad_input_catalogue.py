"""Catalogue of bad input against the live catalog: exact error, and nothing changed.

Every case runs against real tables on the session's embedded Hive metastore (a JVM) but
never starts a Spark session or Ray: validation and planning run on the driver through
pyiceberg. Each asserts the error class (or CLI exit code) and a message naming the
offending row, value or option, and that the current snapshot ids of target, staging
and audit are the same afterwards (``helpers.snapshot_ids``). ``_ensure_ray`` and
``ray.init`` are replaced by traps, so a case that would start Ray fails loudly.
Fast cases that need no catalog are in tests/unit/test_bad_input_unit.py (U1-U16).

=====  ============================================  =========================================
 #     bad input                                     expected (class / exit code, message)
=====  ============================================  =========================================
 C1    staged month '2023-13'                        InputError/3, row + "backfill_month '2023-13'"
 C2    staged month '2023-1'                         InputError/3, row + value
 C3    staged month '23-12'                          InputError/3, row + value
 C4    staged month ''                               InputError/3, row + value
 C5    staged month NULL                             InputError/3, "backfill_month None"
 C6    staged NULL account                           InputError/3, "acct=None ... account is NULL"
 C7    duplicate (acct, month) in one backfill id    InputError/3, "duplicate entry for acct=..."
 C8    backfill id with no pending rows              InputError/3, id + "no pending rows"
 C9    staging with DECIMAL(38,2) values too wide    TableError/4, "'balance' is decimal(38, 2)"
       for DECIMAL(18,2)
 C10   staging value column missing / of type        TableError/4, names each column
       string / unconfigured extra column
 C11   target table does not exist                   TableError/4, names the table
 C12   target lacks a configured history column     TableError/4, names the column
 C13   target arrays already longer than W           reported before a run (plan notes) and by
                                                     verify; never lengthened (MERGE length rule)
 C14   months whose window covers no partition       InputError/3, "touches an existing partition"
 C15   --resume-from not a month                     ConfigError/2, "--resume-from '2022-1'"
 C16   --backfill-month not a month                  InputError/3, "--backfill-month '2022-13'"
 C17   --max-parallel 0, --window 0                  ConfigError/2, names the field and value
 C18   hadoop catalog with --max-parallel 3          CatalogUnsafeError/2, says what to do
 C19   --sample-accounts non-integer                 ConfigError/2, names the option
 C20   unreachable catalog (hive, closed port,       EnvironmentProblem/5, redacted URI, no secret
       password in URI)
 C21   missing Java (PATH without java)              EnvironmentProblem/5, how to install Java
 C22   --iceberg-jar missing / not a jar             EnvironmentProblem/5, how to fix; Ray not started
 C23   hostile --backfill-id / --target-table /      rejected (3 / 2), tables unchanged
       staged month text (injection, CLI level)
=====  ============================================  =========================================
"""

from __future__ import annotations

import dataclasses
import socket
import zipfile
from decimal import Decimal

import pytest

from backfill import cli, run_backfill
from backfill.cli import options
from backfill.config import HistoryColumn
from backfill.errors import InputError, TableError
from backfill.iceberg.tables import create_audit, create_target, identifier
from backfill.ops.prepare import prepare
from backfill.ops.sample_data import SampleSpec
from backfill.ops.setup import setup_tables, stage_rows
from tests.integration.helpers import COLUMNS, make_config, overlong_tables, pyiceberg_catalog, snapshot_ids

pytestmark = [pytest.mark.spark]

D = Decimal
NS = "badcat"


@pytest.fixture(scope="module")
def env(catalog_service):
    cfg = make_config(catalog_service, NS)
    catalog = pyiceberg_catalog(cfg)
    setup_tables(catalog, cfg, SampleSpec(accounts=10, months=6, staged_accounts=3, backfill_id="bf-ok"))
    return cfg, catalog


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    """No case may start Ray (and so no Spark session)."""
    import ray

    import actors.runtime

    def trap(*a, **k):
        raise AssertionError("Ray must not start for bad input")

    monkeypatch.setattr(actors.runtime, "ensure_ray", trap)
    monkeypatch.setattr(ray, "init", trap)


@pytest.fixture(scope="module")
def toml(env, tmp_path_factory):
    """A config file for the CLI: same tables, columns and catalog as ``env``."""
    cfg, _ = env
    cols = ", ".join(f'["{c.array_column}", "{c.value_column}"]' for c in COLUMNS)
    path = tmp_path_factory.mktemp("cfg") / "backfill.toml"
    path.write_text(
        "[tables]\n"
        f'target_table = "{NS}.accounts_history"\nstaging_table = "{NS}.backfill_staging"\n'
        f'audit_table = "{NS}.backfill_audit"\nhistory_columns = [{cols}]\nwindow = 36\nbuckets = 4\n'
        f'[catalog]\ntype = "embedded"\nwarehouse = "{cfg.catalog.warehouse}"\n')
    return str(path)


def _stage(catalog, cfg, bid, rows):
    base = {"backfill_id": bid, "balance": D("1.00"), "payment": None, "credit_limit": None}
    stage_rows(catalog, cfg, [{**base, **r} for r in rows])


def _cli(capsys, *argv):
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.err


# ---------------------------------------------------------------------- staged rows C1-C8, C14


@pytest.mark.parametrize("case,bid,rows,needles", [
    ("C1", "cat-m13", [{"acct": 100000, "backfill_month": "2023-13"}],
     ["backfill_id='cat-m13', acct=100000, backfill_month='2023-13'", "backfill_month '2023-13' is not"]),
    ("C2", "cat-m1", [{"acct": 100000, "backfill_month": "2023-1"}], ["backfill_month '2023-1' is not"]),
    ("C3", "cat-m23", [{"acct": 100000, "backfill_month": "23-12"}], ["backfill_month '23-12' is not"]),
    ("C4", "cat-mempty", [{"acct": 100000, "backfill_month": ""}], ["backfill_month '' is not"]),
    ("C5", "cat-mnull", [{"acct": 100000, "backfill_month": None}], ["backfill_month None is not"]),
    ("C6", "cat-nullacct", [{"acct": None, "backfill_month": "2022-03"}], ["acct=None", "account is NULL"]),
    ("C7", "cat-dup", [{"acct": 100000, "backfill_month": "2022-03"},
                       {"acct": 100000, "backfill_month": "2022-03", "balance": D("2.00")}],
     ["duplicate entry for acct=100000 month='2022-03'"]),
    ("C14", "cat-nowindow", [{"acct": 100000, "backfill_month": "2010-01"}],
     ["touches an existing partition", "acct=100000 month=2010-01", "2010-01..2012-12"]),
    ("C23", "cat-hostile", [{"acct": 100000, "backfill_month": "2022-01'; DROP TABLE t; --"}],
     ["backfill_month \"2022-01'; DROP TABLE t; --\" is not"]),
])
def test_bad_staged_rows(env, toml, capsys, case, bid, rows, needles):
    cfg, catalog = env
    _stage(catalog, cfg, bid, rows)
    before = snapshot_ids(catalog, cfg)
    with pytest.raises(InputError) as info:
        run_backfill(cfg, [bid])
    for needle in needles:
        assert needle in str(info.value), str(info.value)
    code, err = _cli(capsys, "backfill", "--config", toml, "--backfill-id", bid)
    assert code == 3 and needles[0] in err, err
    code, err = _cli(capsys, "generate-sql", "--config", toml, "--backfill-id", bid)
    assert code == 3, err
    assert snapshot_ids(catalog, cfg) == before


def test_C8_backfill_id_with_no_pending_rows(env, toml, capsys):
    cfg, catalog = env
    before = snapshot_ids(catalog, cfg)
    with pytest.raises(InputError, match=r"cat-never-staged have no pending rows in demo\.badcat\.backfill_staging"):
        run_backfill(cfg, ["cat-never-staged"])
    code, err = _cli(capsys, "backfill", "--config", toml, "--backfill-id", "cat-never-staged",
                     "--backfill-month", "2022-02")
    assert code == 3 and "no pending rows" in err and "for month 2022-02" in err
    code, err = _cli(capsys, "estimate", "--config", toml, "--backfill-month", "1999-01")
    assert code == 3 and "no pending staging rows for month 1999-01" in err
    assert snapshot_ids(catalog, cfg) == before


# ---------------------------------------------------------------------- tables C9-C12


def _staging_with(catalog, cfg, *value_fields):
    from pyiceberg.schema import Schema
    from pyiceberg.types import LongType, NestedField, StringType

    fields = [NestedField(1, "backfill_id", StringType()), NestedField(2, "acct", LongType()),
              NestedField(3, "backfill_month", StringType()), NestedField(4, "status", StringType())]
    fields += [NestedField(10 + i, name, typ) for i, (name, typ) in enumerate(value_fields)]
    return catalog.create_table(identifier(cfg, "staging"), schema=Schema(*fields))


def test_C9_user_staging_with_a_wider_decimal_is_named(catalog_service, toml, capsys):
    """A user-made staging table with DECIMAL(38,2) can hold values DECIMAL(18,2) cannot."""
    import pyarrow as pa
    from pyiceberg.types import DecimalType

    cfg = make_config(catalog_service, "badcat_wide")
    catalog = pyiceberg_catalog(cfg)
    create_target(catalog, cfg)
    create_audit(catalog, cfg)
    staging = _staging_with(catalog, cfg, ("balance", DecimalType(38, 2)), ("payment", DecimalType(18, 2)),
                            ("credit_limit", DecimalType(18, 2)))
    staging.append(pa.table({
        "backfill_id": ["bf-wide"], "acct": pa.array([1], pa.int64()), "backfill_month": ["2022-01"],
        "status": ["pending"],
        "balance": pa.array([D("123456789012345678901234.00")], pa.decimal128(38, 2)),
        "payment": pa.array([None], pa.decimal128(18, 2)),
        "credit_limit": pa.array([None], pa.decimal128(18, 2))}))
    before = snapshot_ids(catalog, cfg)
    with pytest.raises(TableError) as info:
        run_backfill(cfg, ["bf-wide"])
    assert "staging table demo.badcat_wide.backfill_staging" in str(info.value)
    assert "value column 'balance' is decimal(38, 2), expected decimal(18, 2)" in str(info.value)
    code, err = _cli(capsys, "backfill", "--config", toml, "--backfill-id", "bf-wide",
                     "--target-table", "badcat_wide.accounts_history",
                     "--staging-table", "badcat_wide.backfill_staging",
                     "--audit-table", "badcat_wide.backfill_audit")
    assert code == 4 and "'balance' is decimal(38, 2)" in err
    assert snapshot_ids(catalog, cfg) == before


def test_C10_staging_columns_missing_or_mistyped(catalog_service):
    from pyiceberg.types import DecimalType, StringType

    cfg = make_config(catalog_service, "badcat_cols")
    catalog = pyiceberg_catalog(cfg)
    create_target(catalog, cfg)
    create_audit(catalog, cfg)
    _staging_with(catalog, cfg, ("balance", DecimalType(18, 2)), ("credit_limit", StringType()),
                  ("bogus", DecimalType(18, 2)))
    before = snapshot_ids(catalog, cfg)
    with pytest.raises(TableError) as info:
        run_backfill(cfg, ["bf-x"])
    msg = str(info.value)
    assert "value column 'payment' (configured) is missing" in msg
    assert "value column 'credit_limit' is string, expected decimal(18, 2)" in msg
    assert "['bogus'] are not configured history value columns" in msg
    assert snapshot_ids(catalog, cfg) == before


def test_C11_target_table_that_does_not_exist(env, toml, capsys):
    cfg, catalog = env
    before = snapshot_ids(catalog, cfg)
    bad = dataclasses.replace(cfg, tables=dataclasses.replace(cfg.tables, target_table=f"{NS}.nope"))
    with pytest.raises(TableError, match=r"^target table demo\.badcat\.nope does not exist$"):
        run_backfill(bad, ["bf-ok"])
    code, err = _cli(capsys, "backfill", "--config", toml, "--backfill-id", "bf-ok",
                     "--target-table", "nowhere.accounts_history")
    assert code == 4 and "target table demo.nowhere.accounts_history does not exist" in err
    assert snapshot_ids(catalog, cfg) == before


def test_C12_target_lacking_a_configured_column(env):
    cfg, catalog = env
    before = snapshot_ids(catalog, cfg)
    bad = dataclasses.replace(cfg, tables=dataclasses.replace(
        cfg.tables, history_columns=cfg.tables.history_columns + (HistoryColumn("fees_history", "fees"),)))
    with pytest.raises(TableError, match=r"target table demo\.badcat\.accounts_history: "
                                         r"history column 'fees_history' is missing"):
        run_backfill(bad, ["bf-ok"])
    assert snapshot_ids(catalog, cfg) == before


# ---------------------------------------------------------------------- over-long arrays C13


@pytest.fixture(scope="module")
def overlong(catalog_service):
    """A target whose arrays hold 40 elements (W = 36) and one staged entry."""
    return overlong_tables(catalog_service, "badcat_long")


def test_C13_overlong_arrays_are_reported_before_a_run(overlong, capsys):
    """prepare() (used by backfill, --dry-run and the API) names them; nothing is written."""
    cfg, catalog = overlong
    before = snapshot_ids(catalog, cfg)
    prepared = prepare(cfg, catalog, ["bf-long"])
    notes = [n for n in prepared.plan.notes if "longer than the window" in n]
    assert notes == [
        "2 array(s) longer than the window 36 in rows this run will rewrite (balance_history: 2; "
        "e.g. 2022-02 balance_history acct 1; 2022-01 balance_history acct 1); they keep their "
        "length: values are written inside the window only. Fix the source data"], prepared.plan.notes
    # acct 2 also has long arrays but no staged entry: not read, not reported
    assert snapshot_ids(catalog, cfg) == before
    # the check can be switched off
    off = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, check_array_lengths=False))
    assert not [n for n in prepare(off, catalog, ["bf-long"]).plan.notes if "longer" in n]


def test_C13_overlong_arrays_are_reported_by_verify_and_never_lengthened(overlong):
    """Simulate the MERGE's result (length kept, value at k) as a tagged commit, then verify."""
    from pyiceberg.expressions import EqualTo

    from backfill.iceberg.schema import target_schema
    from backfill.iceberg.tables import to_arrow
    from backfill.ops.verify import verify_backfill

    cfg, catalog = overlong
    target = catalog.load_table(identifier(cfg, "target"))
    part = "2022-02"
    rows = target.scan(row_filter=EqualTo("month_partition", part)).to_arrow().to_pylist()
    for r in rows:
        if r["acct"] == 1:
            r["balance_history"][1] = D("1.00")  # staged value at k = 1; length stays 40
    target.overwrite(to_arrow(rows, target_schema(cfg)), overwrite_filter=EqualTo("month_partition", part),
                     snapshot_properties={"backfill.partition": part, "backfill.ids": "bf-long"})
    staging = catalog.load_table(identifier(cfg, "staging"))
    staging.overwrite(to_arrow([{"backfill_id": "bf-long", "acct": 1, "backfill_month": "2022-01",
                                 "balance": D("1.00"), "status": "applied"}],
                               __import__("backfill.iceberg.schema", fromlist=["x"]).staging_schema(cfg)))
    report = verify_backfill(cfg, catalog, ["bf-long"])
    assert report.ok, report.lines()
    assert any("2 array(s) longer than the window 36 in the checked rows" in n for n in report.notes), report.notes




# ---------------------------------------------------------------------- options C15-C19


@pytest.mark.parametrize("case,argv,code,needle", [
    ("C15", ["backfill", "--backfill-id", "bf-ok", "--resume-from", "2022-1"], 2, "--resume-from '2022-1'"),
    ("C15", ["generate-sql", "--backfill-id", "bf-ok", "--resume-from", "next"], 2, "--resume-from 'next'"),
    ("C16", ["backfill", "--backfill-id", "bf-ok", "--backfill-month", "2022-13"], 3, "--backfill-month '2022-13'"),
    ("C16", ["estimate", "--backfill-month", ""], 3, "--backfill-month ''"),
    ("C17", ["backfill", "--backfill-id", "bf-ok", "--max-parallel", "0"], 2, "max_parallel must be at least 1, got 0"),
    ("C17", ["backfill", "--backfill-id", "bf-ok", "--window", "0"], 2,
     "window must be between 1 and 1200 months, got 0"),
    ("C18", ["backfill", "--backfill-id", "bf-ok", "--catalog-type", "hadoop", "--max-parallel", "3"], 2,
     "set allow_unsafe_serial = true under [catalog]"),
    ("C19", ["verify", "--backfill-id", "bf-ok", "--sample-accounts", "1,two"], 2, "--sample-accounts '1,two'"),
    ("C23", ["backfill", "--backfill-id", "bf-ok'; DROP TABLE demo.badcat.accounts_history; --"], 3,
     "backfill id \"bf-ok'; DROP TABLE demo.badcat.accounts_history; --\" is not valid"),
    ("C23", ["backfill", "--backfill-id", "bf-ok", "--target-table", f"{NS}.accounts_history; DROP"], 2,
     "is not a plain identifier"),
    ("C23", ["generate-sql", "--backfill-id", "bf-ok", "--staging-table", f"{NS}.`backfill_staging`"], 2,
     "is not a plain identifier"),
])
def test_bad_options(env, toml, capsys, monkeypatch, case, argv, code, needle):
    cfg, catalog = env
    opened = []
    real = options.catalog_from_config
    monkeypatch.setattr(options, "catalog_from_config", lambda c: opened.append(c) or real(c))
    before = snapshot_ids(catalog, cfg)
    got, err = _cli(capsys, argv[0], "--config", toml, *argv[1:])
    assert got == code, err
    assert needle in err
    assert opened == [], "the option must be rejected before the catalog is opened"
    assert snapshot_ids(catalog, cfg) == before


# ---------------------------------------------------------------------- environment C20-C22


def test_C20_unreachable_catalog(capsys, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, err = _cli(capsys, "backfill", "--backfill-id", "bf-ok", "--catalog-type", "hive",
                     "--catalog-uri", f"thrift://svc:hunter2-secret@127.0.0.1:{port}",
                     "--warehouse", str(tmp_path))
    assert code == 5
    assert f"cannot reach catalog 'demo' (hive) at thrift://svc:***@127.0.0.1:{port}" in err
    assert "hunter2-secret" not in err


def test_C21_missing_java(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "no-java-here"))
    wh = tmp_path / "fresh-warehouse"
    code, err = _cli(capsys, "backfill", "--backfill-id", "bf-ok", "--warehouse", str(wh))
    assert code == 5
    assert "Java was not found" in err and "openjdk-17-jre-headless" in err and "JAVA_HOME" in err
    assert not (wh / ".metastore" / "state.json").exists()


@pytest.mark.parametrize("kind", ["missing", "not-a-jar", "no-shaded-jackson"])
def test_C22_missing_or_broken_iceberg_jar(env, toml, capsys, tmp_path, kind):
    cfg, catalog = env
    jar = tmp_path / "iceberg-spark-runtime-3.5_2.12-0.0.jar"
    if kind == "not-a-jar":
        jar.write_text("plain text")
    elif kind == "no-shaded-jackson":
        with zipfile.ZipFile(jar, "w") as zf:
            zf.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
    before = snapshot_ids(catalog, cfg)
    code, err = _cli(capsys, "backfill", "--config", toml, "--backfill-id", "bf-ok", "--iceberg-jar", str(jar))
    assert code == 5, err
    assert str(jar) in err
    assert "pip install snowpark-connect-deps-iceberg==1.0.2" in err and "--iceberg-jar" in err
    assert snapshot_ids(catalog, cfg) == before
