"""End to end on the real stack: Ray, RayDP Spark sessions, the embedded Hive catalog and
Iceberg tables, compared cell by cell with the independent reference model."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from backfill import IcebergBackfillProcessor, run_backfill
from backfill.errors import InputError
from backfill.iceberg.schema import target_schema
from backfill.iceberg.tables import identifier, to_arrow
from backfill.ops.sample_data import SampleSpec
from backfill.ops.setup import setup_tables, stage_rows
from bench.reference_model import apply_rule
from tests.integration.helpers import (
    diff_tables,
    make_config,
    model_entries,
    overlong_tables,
    pyiceberg_catalog,
    read_rows,
    read_target,
    snapshot_ids,
)

pytestmark = [pytest.mark.spark, pytest.mark.ray, pytest.mark.slow]

D = Decimal
BID = "bf-e2e"


def _edge_rows(cfg):
    """Hand-made accounts 1..4 for the cases random data might miss."""
    a, m = cfg.tables.account_column, cfg.tables.month_column
    cols = [hc.array_column for hc in cfg.tables.history_columns]

    def row(acct, month, arrays):
        return {a: acct, m: month, **dict(zip(cols, arrays, strict=True))}

    return [
        # acct 1: short array (len 2) at offset 5, NULL array, full array
        row(1, "2023-06", [[D("1.00"), D("2.00")], None, [D(i) for i in range(36)]]),
        # acct 2: empty arrays and an array longer than the window (must not grow or be touched elsewhere)
        row(2, "2023-06", [[], [D("9.99")] * 40, None]),
        row(2, "2023-12", [None, None, None]),
        # acct 3: has rows only in 2023-12 (the 2023-06 row is missing: never created)
        row(3, "2023-12", [[D("5.00")] * 3, [D("6.00")] * 36, [D("7.00")]]),
    ]


def _edge_staging(cfg):
    def st(acct, month, bal, pay, lim):
        return {"backfill_id": BID, "acct": acct, "backfill_month": month,
                "balance": bal, "payment": pay, "credit_limit": lim}

    return [
        st(1, "2023-01", D("100.00"), D("200.00"), None),      # offset 5 in 2023-06
        st(1, "2023-06", D("101.00"), None, D("-3.25")),       # offset 0 in 2023-06, several months
        st(2, "2020-07", D("55.00"), D("66.00"), D("77.00")),   # offset 35 in 2023-06, 41 in 2023-12 (out)
        st(2, "2023-12", None, None, None),                    # all NULL: nothing changes
        st(3, "2023-06", D("8.00"), D("8.00"), D("8.00")),      # 2023-06 row missing; offset 6 in 2023-12
        st(4, "2023-03", D("1.00"), D("1.00"), D("1.00")),      # account with no row at all
    ]


after_snapshot: list[int] = []  # target snapshot right after the first run


def _backfilled(catalog_service, namespace: str, write_mode: str):
    """Generated and hand-made rows in a target created with ``write_mode``, backfilled once."""
    cfg = make_config(catalog_service, namespace, max_parallel=2)
    cfg = dataclasses.replace(cfg, tables=dataclasses.replace(cfg.tables, write_mode=write_mode))
    catalog = pyiceberg_catalog(cfg)
    spec = SampleSpec(accounts=40, months=24, first_month="2022-01", staged_accounts=16,
                      backfill_id=BID, seed=11)
    setup_tables(catalog, cfg, spec)
    target = catalog.load_table(identifier(cfg, "target"))
    target.append(to_arrow(_edge_rows(cfg), target_schema(cfg)))
    stage_rows(catalog, cfg, _edge_staging(cfg))
    before = read_target(catalog, cfg)
    staged = read_rows(catalog, cfg, "staging")
    result = run_backfill(cfg, [BID])
    assert catalog.load_table(identifier(cfg, "target")).properties["write.merge.mode"] == write_mode
    return cfg, catalog, before, staged, result


@pytest.fixture(scope="module")
def e2e(ray_instance, catalog_service):
    """The default layout (merge-on-read), used by every test of this module."""
    out = _backfilled(catalog_service, "e2e", "merge-on-read")
    after_snapshot.append(out[1].load_table(identifier(out[0], "target")).current_snapshot().snapshot_id)
    return out


@pytest.fixture(scope="module")
def e2e_cow(ray_instance, catalog_service):
    """The same data in a copy-on-write target (the other MERGE path: matched rows counted first)."""
    return _backfilled(catalog_service, "e2e_cow", "copy-on-write")


@pytest.mark.parametrize("layout", ["e2e", "e2e_cow"])
def test_table_equals_reference_model_cell_by_cell(request, layout):
    cfg, catalog, before, staged, result = request.getfixturevalue(layout)
    expected = apply_rule(before, model_entries(cfg, staged), cfg.tables.window)
    actual = read_target(catalog, cfg)
    assert result.succeeded, result.summary_lines()
    assert actual == expected, diff_tables(actual, expected)
    # the fixture really exercised the edge cases
    assert actual[(1, "2023-06")]["balance_history"][:6] == [D("101.00"), D("2.00"), None, None, None, D("100.00")]
    assert actual[(1, "2023-06")]["payment_history"] == [None] * 5 + [D("200.00")]
    assert actual[(2, "2023-06")]["balance_history"][35] == D("55.00")
    assert len(actual[(2, "2023-06")]["payment_history"]) == 40
    assert actual[(2, "2023-12")] == before[(2, "2023-12")]
    assert (3, "2023-06") not in actual and (4, "2023-03") not in actual
    assert before != actual


def test_both_layouts_count_the_same_rows(e2e, e2e_cow):
    """Merge-on-read counts from its commit's added-records, copy-on-write with a query first."""
    mor, cow = e2e[4], e2e_cow[4]
    assert (mor.rows_updated, mor.missing_rows) == (cow.rows_updated, cow.missing_rows)
    assert mor.rows_updated > 0
    assert read_target(e2e[1], e2e[0]) == read_target(e2e_cow[1], e2e_cow[0])


def test_staging_and_audit_record_the_run(e2e):
    cfg, catalog, before, staged, result = e2e
    rows = read_rows(catalog, cfg, "staging")
    by_key = {(r["acct"], r["backfill_month"]): r for r in rows}
    for plan_rejected in [r for r in rows if r["status"] == "rejected"]:
        assert "no partition" in plan_rejected["error"]
    assert all(r["status"] in ("applied", "rejected") for r in rows), {r["status"] for r in rows}
    assert by_key[(1, "2023-01")]["status"] == "applied"
    assert by_key[(1, "2023-01")]["processed_at"] is not None
    audit = [r for r in read_rows(catalog, cfg, "audit") if r["run_id"] == result.run_id]
    committed = {r["target_partition"] for r in audit if r["status"] == "committed"}
    assert committed == set(result.final()) - {p for p, o in result.final().items() if o.status == "noop"}
    assert all(r["snapshot_id"] for r in audit if r["status"] == "committed")
    assert result.rows_updated == sum(r["rows_updated"] for r in audit if r["status"] == "committed")
    assert result.missing_rows > 0  # accounts 3 and 4 have entries but no row somewhere


@pytest.mark.parametrize("layout", ["e2e", "e2e_cow"])
def test_each_partition_of_a_batch_commit_reports_its_own_rows_and_files(request, layout):
    """Several partitions share one MERGE and one commit; each audit row still carries that
    partition's own rows updated, files and bytes, and together they add up to the commit."""
    from collections import defaultdict

    from backfill.core.commit_tags import tagged_work
    from backfill.core.months import parse_month

    cfg, catalog, before, staged, result = request.getfixturevalue(layout)
    window = cfg.tables.window
    expected_rows: dict[str, int] = defaultdict(int)
    for acct, part in before:
        months = {r["backfill_month"] for r in staged if r["acct"] == acct}
        if any(0 <= parse_month(part) - parse_month(m) < window for m in months):
            expected_rows[part] += 1
    final = result.final()
    assert {p: o.rows_updated for p, o in final.items() if o.rows_updated} == dict(expected_rows)
    table = catalog.load_table(identifier(cfg, "target"))
    summaries = {s.snapshot_id: s.summary for s in table.metadata.snapshots}
    by_snapshot: dict[int, list] = defaultdict(list)
    for o in final.values():
        if o.status == "committed":
            by_snapshot[o.snapshot_id].append(o)
    assert any(len(tagged_work(summaries[s].additional_properties)) > 1 for s in by_snapshot), \
        "no commit covered several partitions: the batch path was not exercised"
    for snap, outs in by_snapshot.items():
        summary = summaries[snap].additional_properties
        assert set(tagged_work(summary)) >= {o.partition for o in outs}
        def total(f, outs=outs):
            return sum(getattr(o.stats, f) or 0 for o in outs)

        assert total("bytes_written") == int(summary["added-files-size"])
        assert total("data_files_written") == int(summary["added-data-files"])
        assert total("records_written") == int(summary["added-records"])
        assert total("delete_files_written") == int(summary.get("added-delete-files", 0))
        assert total("data_files_read") == int(summary.get("deleted-data-files", 0))
        assert total("bytes_read") == int(summary.get("removed-files-size", 0))


def test_python_api_under_the_seed_names(e2e, tmp_path):
    from backfill import api

    cfg, catalog, before, staged, result = e2e
    processor = api.IcebergBackfillProcessor(cfg)
    text = api.generate_backfill_report(processor, BID, "markdown", tmp_path / "t.png")
    assert "rows updated" in text and (tmp_path / "t.png").stat().st_size > 1000
    assert api.verify_backfill(processor, BID).ok
    assert api.cleanup_old_audits(processor, 90, dry_run=True) is not None
    with pytest.raises(InputError, match="no pending rows"):
        api.BatchBackfillOrchestrator(processor).run_backfill(BID)
    # each item's month restricts its own id (issue 13); ids without pending rows are refused
    with pytest.raises(InputError, match="no pending rows"):
        api.run_parallel_backfills(processor, [{"backfill_id": "a", "backfill_month": "2023-01"},
                                               {"backfill_id": "b"}])


def test_second_run_changes_nothing(e2e):
    cfg, catalog, before, staged, result = e2e
    after_first = read_target(catalog, cfg)
    # the same backfill again: nothing pending any more
    with pytest.raises(InputError, match="no pending rows"):
        run_backfill(cfg, [BID])
    # the same values staged again under a new id: the MERGEs run again, the table is identical
    again = [{**{k: v for k, v in r.items() if k not in ("status", "processed_at", "error", "created_at")},
              "backfill_id": "bf-e2e-again"} for r in staged]
    stage_rows(catalog, cfg, again)
    second = run_backfill(cfg, ["bf-e2e-again"])
    assert second.succeeded
    assert any(o.status == "committed" for o in second.outcomes)
    assert read_target(catalog, cfg) == after_first


def test_resume_of_committed_work_is_detected_not_redone(e2e):
    cfg, catalog, before, staged, result = e2e
    # stage a fresh backfill, run it, then put its staging rows back to pending: a rerun
    # finds every partition's commit in the snapshot summaries and redoes none of them
    rows = [{"backfill_id": "bf-e2e-resume", "acct": 1, "backfill_month": "2023-02",
             "balance": D("42.00"), "payment": None, "credit_limit": None}]
    stage_rows(catalog, cfg, rows)
    first = run_backfill(cfg, ["bf-e2e-resume"])
    assert first.succeeded and any(o.status == "committed" for o in first.outcomes)
    target_snap = snapshot_ids(catalog, cfg)["target"]
    stage_rows(catalog, cfg, rows)  # the same entry pending again (as if never marked applied)
    second = run_backfill(cfg, ["bf-e2e-resume"])
    assert {o.status for o in second.outcomes} <= {"already_committed", "noop"}
    assert snapshot_ids(catalog, cfg)["target"] == target_snap


def test_verify_passes_then_catches_corrupted_cells(e2e, tmp_path, capsys):
    """Runs last: a faulty commit of the backfill (tagged as its own, as a broken MERGE
    would be) corrupts two cells of a backfilled row; verify must name both. A write by
    someone else is a later write, which verify never counts (test_series case 3)."""
    from pyiceberg.expressions import And, EqualTo

    from backfill import cli
    from backfill.core.commit_tags import commit_properties
    from backfill.ops.verify import verify_backfill
    from tests.integration.runner_env import write_toml

    cfg, catalog, before, staged, result = e2e
    clean = verify_backfill(cfg, catalog, [BID], as_of=after_snapshot[0])
    assert clean.ok, clean.lines()
    assert clean.partitions_checked >= 12 and clean.cells_checked > 1000
    table = catalog.load_table(identifier(cfg, "target"))
    flt = And(EqualTo("acct", 1), EqualTo("month_partition", "2023-06"))
    row = table.scan(row_filter=flt).to_arrow().to_pylist()[0]
    bal = list(row["balance_history"])
    bal[5] = D("999.99")   # the staged cell (offset 5 of the 2023-01 entry)
    bal[1] = D("123.45")   # an element no entry touches
    row["balance_history"] = bal
    faulty = commit_properties([("2023-06", "0" * 32)], "run-faulty", [BID])
    table.overwrite(to_arrow([row], target_schema(cfg)), overwrite_filter=flt, snapshot_properties=faulty)
    report = verify_backfill(cfg, catalog, [BID])
    found = {(m.acct, m.partition, m.column, m.index, m.why) for m in report.mismatches}
    assert (1, "2023-06", "balance_history", 5, "staged value not at its offset") in found
    assert (1, "2023-06", "balance_history", 1, "element outside the staged offsets changed") in found
    toml = write_toml(cfg, tmp_path / "cfg.toml")
    assert cli.main(["verify", "--config", str(toml), "--backfill-id", BID, "--sample-accounts", "1"]) == 1
    out = capsys.readouterr().out
    assert ("2023-06 acct=1 balance_history[5]: staged value not at its offset: "
            "expected Decimal('100.00'), found Decimal('999.99')") in out


def test_C13_a_run_reports_overlong_arrays_it_checked_while_it_ran(ray_instance, catalog_service):
    """A run does not wait for the check (it reads the touched files on the driver): the note
    comes once the MERGEs are done, before publishing, in the result's notes."""
    cfg, _ = overlong_tables(catalog_service, "e2e_long_run")
    lines: list[str] = []
    result = IcebergBackfillProcessor(cfg).run(["bf-long"], progress=lines.append)
    assert result.succeeded
    note = [n for n in result.notes if "longer than the window" in n]
    assert note and note[0].startswith("2 array(s) longer than the window 36 in rows this run will rewrite"), \
        result.notes
    assert lines.index(note[0]) < next(i for i, line in enumerate(lines) if line.startswith("published"))
