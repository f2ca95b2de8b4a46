"""``stage`` against a real staging table on the session's embedded catalog (pyiceberg only).

No Spark session and no Ray: CSV, Parquet and an Iceberg table are staged through the
command line, read back and checked as the run reads them; a bad file, and a file whose
rows are already pending, leave the staging snapshot exactly where it was.
"""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from backfill import cli
from backfill.core.entries import validate_rows
from backfill.iceberg import tables
from backfill.ops.stage import KEY_STAGED_ID
from tests.integration.helpers import make_config, pyiceberg_catalog, read_rows
from tests.integration.runner_env import write_toml

#: the embedded catalog is a JVM (the metastore): not one of the seconds-fast unit tests
pytestmark = [pytest.mark.spark]

D = Decimal
NS = "stagelive"


@pytest.fixture(scope="module")
def env(catalog_service, tmp_path_factory):
    cfg = make_config(catalog_service, NS)
    catalog = pyiceberg_catalog(cfg)
    tables.create_staging(catalog, cfg)
    toml = write_toml(cfg, tmp_path_factory.mktemp("stage") / "backfill.toml")
    return cfg, catalog, ["--config", str(toml), "--log-level", "WARNING"]


def _stage(common, capsys, bid, *source):
    code = cli.main(["stage", *common, "--backfill-id", bid, *source])
    out = capsys.readouterr()
    return code, out.out, out.err


def _snapshot(catalog, cfg):
    snap = tables.load(catalog, cfg, "staging").current_snapshot()
    return snap.snapshot_id if snap else None


def _rows_of(catalog, cfg, bid):
    return sorted((r for r in read_rows(catalog, cfg, "staging") if r["backfill_id"] == bid),
                  key=lambda r: (r["acct"], r["backfill_month"]))


def test_csv_is_staged_in_one_commit_and_reads_back_exactly(env, tmp_path, capsys):
    cfg, catalog, common = env
    path = tmp_path / "late.csv"
    path.write_text("acct,backfill_month,balance,payment\n"
                    "100,2024-01,0.1,\n101,2024-02,\"-12.50\",3\n102,2024-02,9999999999999999.99,\n")
    before = _snapshot(catalog, cfg)
    code, out, err = _stage(common, capsys, "bf-csv", str(path))
    assert code == 0, err
    assert "staged 3 row(s) from late.csv" in out and "months:   2 (2024-01..2024-02)" in out
    rows = _rows_of(catalog, cfg, "bf-csv")
    assert [(r["acct"], r["backfill_month"], r["balance"], r["payment"], r["credit_limit"]) for r in rows] == [
        (100, "2024-01", D("0.10"), None, None), (101, "2024-02", D("-12.50"), D("3.00"), None),
        (102, "2024-02", D("9999999999999999.99"), None, None)]
    assert {r["status"] for r in rows} == {"pending"} and len({r["created_at"] for r in rows}) == 1
    assert {(r["processed_at"], r["error"]) for r in rows} == {(None, None)}
    staging = tables.load(catalog, cfg, "staging")
    snap = staging.current_snapshot()
    assert snap.parent_snapshot_id == before and f"snapshot: {snap.snapshot_id}" in out  # one commit
    assert snap.summary.additional_properties[KEY_STAGED_ID] == "bf-csv"
    # the run reads these rows as they are and accepts them
    read = tables.read_pending(staging, ["bf-csv"])
    assert len(validate_rows(read.iter_rows(), [hc.value_column for hc in cfg.tables.history_columns])) == 3


def test_parquet_is_staged(env, tmp_path, capsys):
    cfg, catalog, common = env
    path = tmp_path / "late.parquet"
    pq.write_table(pa.table({"backfill_id": ["bf-pq", "bf-pq"], "acct": pa.array([7, 8], pa.int32()),
                             "backfill_month": ["2023-12", "2024-01"],
                             "balance": pa.array([D("1.25"), None], pa.decimal128(18, 2)),
                             "credit_limit": pa.array([0.1, 5000.0])}), path)
    code, out, err = _stage(common, capsys, "bf-pq", str(path))
    assert code == 0, err
    assert [(r["acct"], r["backfill_month"], r["balance"], r["credit_limit"], r["status"])
            for r in _rows_of(catalog, cfg, "bf-pq")] == [
        (7, "2023-12", D("1.25"), D("0.10"), "pending"), (8, "2024-01", None, D("5000.00"), "pending")]


@pytest.mark.parametrize("name,text,needle", [
    ("typo.csv", "acct,backfill_month,balanse\n1,2024-01,1\n", "unknown column 'balanse'"),
    ("month.csv", "acct,backfill_month,balance\n1,2024-01,1\n2,2024-13,1\n", "row 2 (line 3), column 'backfill_month'"),
    ("cents.csv", "acct,backfill_month,balance\n1,2024-01,0.125\n", "row 1 (line 2), column 'balance'"),
    ("dup.csv", "acct,backfill_month,balance\n1,2024-01,1\n1,2024-01,2\n", "rows 1 (line 2), 2 (line 3)"),
])
def test_bad_file_leaves_the_staging_snapshot_unchanged(env, tmp_path, capsys, name, text, needle):
    cfg, catalog, common = env
    before = _snapshot(catalog, cfg)
    path = tmp_path / name
    path.write_text(text)
    code, _, err = _stage(common, capsys, "bf-bad", str(path))
    assert code == 3 and needle in err and "nothing was written" in err
    assert _snapshot(catalog, cfg) == before and _rows_of(catalog, cfg, "bf-bad") == []


def test_rows_already_pending_under_the_id_are_refused(env, tmp_path, capsys):
    cfg, catalog, common = env
    first = tmp_path / "first.csv"
    first.write_text("acct,backfill_month,balance\n1,2024-01,1\n2,2024-01,2\n")
    assert _stage(common, capsys, "bf-again", str(first))[0] == 0
    before = _snapshot(catalog, cfg)
    again = tmp_path / "again.csv"
    again.write_text("acct,backfill_month,balance\n3,2024-01,3\n2,2024-01,5\n")
    code, _, err = _stage(common, capsys, "bf-again", str(again))
    assert code == 3 and "row 2 (line 3), columns 'acct', 'backfill_month'" in err and "already pending" in err
    assert _snapshot(catalog, cfg) == before and len(_rows_of(catalog, cfg, "bf-again")) == 2
    # the same entries under another id are another backfill: accepted
    assert _stage(common, capsys, "bf-again-2", str(again))[0] == 0


def test_from_table_and_dry_run(env, capsys):
    cfg, catalog, common = env
    schema = pa.schema([("acct", pa.int64()), ("backfill_month", pa.string()), ("payment", pa.decimal128(18, 2))])
    source = catalog.create_table(f"{NS}.corrections", schema=schema)
    source.append(pa.Table.from_pylist([{"acct": 5, "backfill_month": "2024-03", "payment": D("42.00")}],
                                       schema=schema))
    before = _snapshot(catalog, cfg)
    code, out, err = _stage(common, capsys, "bf-table", "--from-table", f"{NS}.corrections", "--dry-run")
    assert code == 0, err
    assert out.startswith("would stage (dry run, nothing written) 1 row(s) from table stagelive.corrections")
    assert _snapshot(catalog, cfg) == before
    assert _stage(common, capsys, "bf-table", "--from-table", f"{NS}.corrections")[0] == 0
    assert [(r["acct"], r["payment"]) for r in _rows_of(catalog, cfg, "bf-table")] == [(5, D("42.00"))]
    code, _, err = _stage(common, capsys, "bf-table", "--from-table", f"{NS}.no_such_table")
    assert code == 4 and "does not exist" in err
