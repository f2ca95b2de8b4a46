"""estimate, cleanup-audits and the ``--method sql`` script on the real stack.

estimate and cleanup need only the catalog service (pyiceberg); run_script starts one
RayDP Spark session and its result is compared cell by cell with the reference model.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from backfill import cli
from backfill.core.states import PublishState
from backfill.errors import InputError
from backfill.iceberg.audit import AuditWriter
from backfill.iceberg.tables import committed_digests, identifier, load
from backfill.ops.cleanup import cleanup_audits
from backfill.ops.estimate import estimate
from backfill.ops.prepare import prepare
from backfill.ops.sample_data import SampleSpec
from backfill.ops.setup import setup_tables
from backfill.ops.sql_method import run_script
from backfill.sql.script import build_statements
from bench.reference_model import apply_rule
from tests.integration.helpers import diff_tables, make_config, model_entries, pyiceberg_catalog, read_rows, read_target

pytestmark = [pytest.mark.spark, pytest.mark.slow]

BID = "bf-estsql"
UTC = timezone.utc


@pytest.fixture(scope="module")
def env(catalog_service):
    cfg = make_config(catalog_service, "estsql")
    catalog = pyiceberg_catalog(cfg)
    spec = SampleSpec(accounts=30, months=8, first_month="2023-01", staged_accounts=8,
                      backfill_id=BID, seed=5)
    setup_tables(catalog, cfg, spec)
    return cfg, catalog


def _audit_row(bid, partition, completed, started=None, status="committed", seconds=10.0, size=None):
    return {"backfill_id": bid, "run_id": f"run-{bid}", "target_partition": partition,
            "status": status, "attempt": 1, "duration_seconds": seconds,
            "started_at": started, "completed_at": completed, "bytes_read": size}


def _files_holding(table, cfg, partition, accounts):
    """Paths of the partition's data files that contain one of ``accounts`` (read the rows)."""
    import pyarrow.parquet as pq
    from pyiceberg.expressions import EqualTo

    found = set()
    for t in table.scan(row_filter=EqualTo(cfg.tables.month_column, partition)).plan_files():
        with table.io.new_input(t.file.file_path).open() as fh:
            accts = pq.read_table(fh, columns=[cfg.tables.account_column]).column(0).to_pylist()
        if set(accts) & accounts:
            found.add(t.file.file_path)
    return found


def test_estimate_is_consistent_with_metadata(env):
    cfg, catalog = env
    prepared = prepare(cfg, catalog, [BID])
    est = estimate(prepared, catalog, max_parallel=2)
    target = catalog.load_table(identifier(cfg, "target"))
    assert [p.partition for p in est.partitions] == [t.partition for t in prepared.plan.tasks]
    assert est.partitions and est.basis.startswith("default")
    for p, task in zip(est.partitions, prepared.plan.tasks, strict=True):
        assert p.data_files > 0 and p.data_bytes > 0
        assert 0 <= p.candidate_files <= p.data_files and p.candidate_bytes <= p.data_bytes
        assert (p.entries, p.accounts) == (len(task.entries), task.accounts)
        rows = target.scan(row_filter=f"{cfg.tables.month_column} = '{p.partition}'").to_arrow()
        assert p.records == rows.num_rows
        # a partition holding an affected account has at least one candidate file
        present = set(rows.column(cfg.tables.account_column).to_pylist())
        if present & {e.acct for e in task.entries}:
            assert p.candidate_files >= 1
        # every file really holding an affected row is a candidate (never undercounted)
        holding = _files_holding(target, cfg, p.partition, {e.acct for e in task.entries})
        assert len(holding) <= p.candidate_files
    assert est.wall_seconds <= est.session_start_seconds + est.partition_seconds + 1e-6
    assert est.wall_seconds >= est.session_start_seconds + est.partition_seconds / 2 - 1e-6
    assert "model: default" in "\n".join(est.lines())

    # three past committed partitions: the model is learned from them
    now = datetime.now(UTC)
    AuditWriter(load(catalog, cfg, "audit")).append([
        _audit_row("bf-hist", f"2022-0{i}", now, now, seconds=5.0 + i, size=i * 1_000_000)
        for i in (1, 2, 3)])
    learned = estimate(prepare(cfg, catalog, [BID]), catalog)
    assert learned.basis.startswith("learned from 3 past partitions: a=5.0 s, b=1.000e-06")


def test_estimate_cli_keeps_the_seed_form(env, tmp_path, capsys):
    cfg, catalog = env
    month = next(r["backfill_month"] for r in read_rows(catalog, cfg, "staging")
                 if "2023-01" <= r["backfill_month"] <= "2023-08")
    conf = tmp_path / "estsql.toml"
    cols = ", ".join(f'["{hc.array_column}", "{hc.value_column}"]' for hc in cfg.tables.history_columns)
    conf.write_text(
        "[tables]\n"
        f'staging_table = "{cfg.tables.staging_table}"\naudit_table = "{cfg.tables.audit_table}"\n'
        f"history_columns = [{cols}]\nbuckets = 4\n"
        f'[catalog]\ntype = "embedded"\nwarehouse = "{cfg.catalog.warehouse}"\n')
    argv = ["estimate", "--config", str(conf), "--target-table", cfg.tables.target_table,
            "--backfill-month", month, "--json", "--max-parallel", "2"]
    assert cli.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["backfill_ids"] == [BID] and out["max_parallel"] == 2
    assert out["totals"]["candidate_files"] <= out["totals"]["data_files"]
    assert all(p["partition"] >= month for p in out["partitions"])


def test_cleanup_dry_run_then_delete(env):
    cfg, catalog = env
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=100), now - timedelta(days=5)
    AuditWriter(load(catalog, cfg, "audit")).append([
        _audit_row("bf-old", "2023-01", old, old),
        _audit_row("bf-old", "2023-02", old, old, status="failed"),
        _audit_row("bf-old", "2023-03", None, old, status="planned"),   # never completed: started_at
        _audit_row("bf-mixed", "2023-01", old, old),
        _audit_row("bf-mixed", "2023-02", recent, old),                 # completed recently: kept
        _audit_row("bf-new", "2023-01", recent, recent),
        _audit_row("bf-unknown", "2023-01", None, None),                # no timestamp: kept
    ])
    before = read_rows(catalog, cfg, "audit")
    dry = cleanup_audits(catalog, cfg, days_to_keep=90, dry_run=True)
    assert dry.by_backfill_id == {"bf-old": 3, "bf-mixed": 1} and not dry.deleted
    assert "dry run: 4 audit row(s)" in dry.lines()[0]
    assert len(read_rows(catalog, cfg, "audit")) == len(before)

    assert cleanup_audits(catalog, cfg, days_to_keep=200, dry_run=False).total == 0
    done = cleanup_audits(catalog, cfg, days_to_keep=90)
    assert done.deleted and done.total == 4 and done.lines() == [
        f"removed 4 audit row(s) older than {done.cutoff.isoformat(timespec='seconds')}"]
    after = read_rows(catalog, cfg, "audit")
    assert len(after) == len(before) - 4
    left = {(r["backfill_id"], r["target_partition"]) for r in after}
    assert not any(b == "bf-old" for b, _ in left)
    assert {("bf-mixed", "2023-02"), ("bf-new", "2023-01"), ("bf-unknown", "2023-01")} <= left
    assert cleanup_audits(catalog, cfg, days_to_keep=90, dry_run=True).total == 0


def _sql_env(catalog_service, name, bid, seed):
    cfg = make_config(catalog_service, name)
    catalog = pyiceberg_catalog(cfg)
    spec = SampleSpec(accounts=5, months=6, first_month="2023-01", staged_accounts=5, backfill_id=bid, seed=seed)
    setup_tables(catalog, cfg, spec)
    return cfg, catalog, read_target(catalog, cfg), read_rows(catalog, cfg, "staging")


def _check_applied(catalog, cfg, prepared, before, staged):
    expected = apply_rule(before, model_entries(cfg, staged), cfg.tables.window)
    actual = read_target(catalog, cfg)
    assert actual == expected, diff_tables(actual, expected)
    assert actual != before
    rejected = {(r.entry.acct, r.entry.month) for r in prepared.plan.rejected}
    for r in read_rows(catalog, cfg, "staging"):
        want = "rejected" if (r["acct"], r["backfill_month"]) in rejected else "applied"
        assert r["status"] == want and r["processed_at"] is not None, r
        if want == "rejected":
            assert "no partition" in r["error"]


@pytest.mark.ray
def test_method_sql_verifies_on_its_branch_publishes_and_audits_like_merge(ray_instance, catalog_service):
    from cluster.catalog import resolve_catalog

    cfg, catalog, before, staged = _sql_env(catalog_service, "estsql_run", "bf-sqlrun", 9)
    main_before = load(catalog, cfg, "target").current_snapshot().snapshot_id
    prepared = prepare(cfg, catalog, ["bf-sqlrun"])
    assert prepared.plan.rejected, "sample data should include an entry outside every window"
    assert prepared.branch, "write-audit-publish is the default"
    lines: list[str] = []
    result = run_script(prepared, resolve_catalog(cfg.catalog), catalog, progress=lines.append, verify=True)
    text = "\n".join(lines)
    assert result.succeeded and result.verified and result.published == PublishState.PUBLISHED, text
    # verification ran on the branch, before main moved
    assert text.index(f"on branch {prepared.branch}") < text.index("published: main now holds the whole run")
    assert len(build_statements(prepared)) == sum(1 for line in lines if line.startswith("[statement "))
    _check_applied(catalog, cfg, prepared, before, staged)
    # every partition's commit is tagged with its digest, on main, made after main_before
    target = load(catalog, cfg, "target")
    committed = committed_digests(target, "main")
    assert all((t.partition, t.digest) in committed for t in prepared.plan.tasks)
    assert prepared.branch not in target.metadata.refs
    assert target.snapshot_by_id(main_before) is not None and target.current_snapshot().snapshot_id != main_before
    # the audit holds the run: planned and committed per partition (what --report reads)
    audit = [r for r in read_rows(catalog, cfg, "audit") if r["run_id"] == prepared.run_id]
    assert {r["target_partition"] for r in audit if r["status"] == "committed"} == \
        {t.partition for t in prepared.plan.tasks}
    assert sum(1 for r in audit if r["status"] == "planned") == len(prepared.plan.tasks)
    # a second run finds nothing pending
    with pytest.raises(InputError, match="no pending rows"):
        prepare(cfg, catalog, ["bf-sqlrun"])


@pytest.mark.ray
def test_generated_script_runs_verbatim_in_one_session(ray_instance, catalog_service):
    """What a DBA does with `generate-sql`: every statement as written, the branch and publish
    included (no tags: a later run of the tool redoes those partitions, harmlessly)."""
    from actors.partition_actor import one_session, run_statement
    from cluster.catalog import resolve_catalog

    cfg, catalog, before, staged = _sql_env(catalog_service, "estsql_dba", "bf-sqldba", 11)
    prepared = prepare(cfg, catalog, ["bf-sqldba"])
    statements = build_statements(prepared)
    assert any(s.startswith("CALL ") and "fast_forward" in s for s in statements)
    with one_session(cfg, resolve_catalog(cfg.catalog), "dba-script") as actor:
        for statement in statements:
            run_statement(actor, statement)
    _check_applied(catalog, cfg, prepared, before, staged)
    assert prepared.branch not in load(catalog, cfg, "target").metadata.refs
