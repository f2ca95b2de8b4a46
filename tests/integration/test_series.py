"""Backfills as a series (issue 12): the value staged last wins whatever order the runs
happen in; readers of main see a run whole or not at all; verify checks a backfill's own
commits; a run whose branch fell behind main is applied again on the new main.

Each case failed on the code before the change (checked by running this file on 262f10d):
case 1 left 1.00 in 27 of 30 partitions, case 3 exited with mismatches, and the reader of
case 4 saw 1..29 partitions changed.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest

from backfill import IcebergBackfillProcessor
from backfill.core.months import add_months, parse_month
from backfill.core.states import PublishState, StagingStatus
from backfill.iceberg.schema import target_schema
from backfill.iceberg.tables import identifier, to_arrow
from backfill.ops.prepare import prepare
from backfill.ops.run import execute
from backfill.ops.sample_data import SampleSpec, account_ids
from backfill.ops.setup import setup_tables, stage_rows
from backfill.ops.verify import verify_backfill
from bench.reference_model import apply_rule
from tests.integration.helpers import (
    diff_tables,
    make_config,
    model_entries,
    pyiceberg_catalog,
    read_rows,
    read_target,
    run_stopped_after,
    with_run,
)

pytestmark = [pytest.mark.spark, pytest.mark.ray, pytest.mark.slow]

FIRST = "2022-01"
ACCT, OTHER = account_ids(2)
D2 = Decimal("2.00")


def _tables(catalog_service, namespace: str, months: int = 30, accounts: int = 4, **run):
    cfg = make_config(catalog_service, namespace, **run)
    catalog = pyiceberg_catalog(cfg)
    setup_tables(catalog, cfg, SampleSpec(accounts=accounts, months=months, first_month=FIRST,
                                          staged_accounts=0, backfill_id="unused"))
    return cfg, catalog


def _stage(catalog, cfg, bid: str, balance: str, acct: int = ACCT, month: str = FIRST, payment: str | None = None):
    stage_rows(catalog, cfg, [{"backfill_id": bid, "acct": acct, "backfill_month": month,
                               "balance": Decimal(balance), "payment": None if payment is None else Decimal(payment),
                               "credit_limit": None}])


def newest_wins(cfg, before: dict, staging: list[dict]) -> dict:
    """Independent model of the series rule: per cell, the value of the row staged last
    (created_at, then the greater id), applied to the table before every run."""
    best: dict[tuple[int, str, str], tuple[tuple, Decimal]] = {}
    for r in staging:
        if r["status"] in ("rejected", "rolled_back"):
            continue
        for hc in cfg.tables.history_columns:
            v = r.get(hc.value_column)
            key = (r["acct"], r["backfill_month"], hc.array_column)
            order = (r["created_at"], r["backfill_id"])
            if v is not None and (key not in best or order > best[key][0]):
                best[key] = (order, v)
    entries: dict[tuple[int, str], dict[str, Decimal | None]] = {}
    for (acct, month, col), (_, v) in best.items():
        entries.setdefault((acct, month), {})[col] = v
    return apply_rule(before, [(a, m, vals) for (a, m), vals in entries.items()], cfg.tables.window)


def _status(catalog, cfg) -> dict[str, tuple[str, str | None]]:
    return {r["backfill_id"]: (r["status"], r["error"]) for r in read_rows(catalog, cfg, "staging")
            if r["backfill_id"] != "unused"}


def test_case1_a_resumed_older_correction_never_overwrites_a_later_one(ray_instance, catalog_service):
    cfg, catalog = _tables(catalog_service, "series_case1", max_parallel=1, partitions_per_merge=1,
                           order="oldest")
    before = read_target(catalog, cfg)
    _stage(catalog, cfg, "A", "1.00")
    processor = IcebergBackfillProcessor(cfg)
    first, committed = run_stopped_after(cfg, catalog, processor.resolved_catalog, ["A"], 3)
    assert first.not_started and len(committed) == 3
    assert read_target(catalog, cfg) == before, "a stopped run published nothing to main"
    _stage(catalog, cfg, "B", "2.00")
    fast = IcebergBackfillProcessor(with_run(cfg, partitions_per_merge=12, max_parallel=2))
    assert fast.run(["B"]).succeeded
    again = processor.run(["A"])  # resumed, as the README says
    assert again.succeeded and again.superseded_entries == 1, again.summary_lines()
    after = read_target(catalog, cfg)
    assert diff_tables(after, newest_wins(cfg, before, read_rows(catalog, cfg, "staging"))) == []
    holding = {m for (a, m), row in after.items() if a == ACCT and _holds({**row, "month_partition": m}, D2)}
    assert len(holding) == 30
    assert _status(catalog, cfg) == {"A": ("superseded", "superseded by B"), "B": ("applied", None)}
    assert verify_backfill(cfg, catalog, ["B"]).ok


def test_case3_verify_checks_each_commit_against_its_parent(ray_instance, catalog_service):
    cfg, catalog = _tables(catalog_service, "series_case3", months=6)
    before = read_target(catalog, cfg)
    _stage(catalog, cfg, "C", "1.00", payment="3.00")
    _stage(catalog, cfg, "C", "5.00", acct=OTHER)
    processor = IcebergBackfillProcessor(cfg)
    assert processor.run(["C"]).succeeded
    _stage(catalog, cfg, "D", "2.00")  # a later correction of one of C's cells (acct 1 balance)
    result = processor.run(["D"])
    assert result.succeeded
    c = verify_backfill(cfg, catalog, ["C"])
    assert c.ok, c.lines()
    d = verify_backfill(cfg, catalog, ["D"])
    assert d.ok and d.commits_checked >= 1
    # an older correction (staged with C's time: it wins the tie with C, loses to D) run last
    # leaves the cell D holds, writes the payment, and verify reports the cell superseded
    c_time = min(r["created_at"] for r in read_rows(catalog, cfg, "staging") if r["backfill_id"] == "C")
    stage_rows(catalog, cfg, [{"backfill_id": "E", "acct": ACCT, "backfill_month": FIRST, "balance": Decimal("9.00"),
                               "payment": Decimal("4.00"), "credit_limit": None, "created_at": c_time}])
    assert processor.run(["E"]).succeeded
    e = verify_backfill(cfg, catalog, ["E"])
    assert e.ok, e.lines()
    assert e.superseded_cells >= 6, e.lines()  # balance of 2022-01 in every partition: D's, not E's
    assert diff_tables(read_target(catalog, cfg), newest_wins(cfg, before, read_rows(catalog, cfg, "staging"))) == []
    statuses = {(r["backfill_id"], r["acct"]): r["status"] for r in read_rows(catalog, cfg, "staging")
                if r["backfill_id"] != "unused"}
    # C's first row lost its balance to D and its payment to E: superseded by both
    assert statuses == {("C", ACCT): "superseded", ("C", OTHER): "applied", ("D", ACCT): "applied",
                        ("E", ACCT): "applied"}


def _holds(row: dict, value: Decimal) -> bool:
    arr = row["balance_history"] or []
    k = parse_month(row["month_partition"]) - parse_month(FIRST)
    return k < len(arr) and arr[k] == value


def _reader(cfg, months: list[str], stop: threading.Event, seen: list[int]) -> None:
    """Polls main with its own catalog client: how many partitions hold the new value."""
    from pyiceberg.expressions import EqualTo

    table = pyiceberg_catalog(cfg).load_table(identifier(cfg, "target"))
    while not stop.is_set():
        table.refresh()
        rows = table.scan(row_filter=EqualTo("acct", ACCT)).to_arrow().to_pylist()
        seen.append(sum(1 for r in rows if r["month_partition"] in months and _holds(r, Decimal("7.77"))))
        time.sleep(0.2)


def test_case4_a_reader_of_main_sees_a_run_whole_or_not_at_all(ray_instance, catalog_service):
    cfg, catalog = _tables(catalog_service, "series_case4", months=30, max_parallel=2, partitions_per_merge=2)
    _stage(catalog, cfg, "W", "7.77")
    months = [add_months(FIRST, i) for i in range(30)]
    stop, seen = threading.Event(), []
    reader = threading.Thread(target=_reader, args=(cfg, months, stop, seen), daemon=True)
    reader.start()
    try:
        result = IcebergBackfillProcessor(cfg).run(["W"])
        time.sleep(1.0)
    finally:
        stop.set()
        reader.join(30)
    assert result.succeeded and result.published == PublishState.PUBLISHED
    print(f"reader made {len(seen)} reads of main; partitions holding the new value: {sorted(set(seen))}")
    assert len(seen) > 10 and set(seen) == {0, 30}


def test_main_moved_during_the_run_is_replayed_and_nothing_is_lost(ray_instance, catalog_service):
    cfg, catalog = _tables(catalog_service, "series_moved", months=4, max_parallel=1, partitions_per_merge=1)
    _stage(catalog, cfg, "M", "4.44")
    new_month = add_months(FIRST, 4)
    loaded = threading.Event()

    def monthly_load(line: str) -> None:
        if " committed attempt " in line and not loaded.is_set():
            loaded.set()  # the monthly load appends a new month while the backfill runs
            table = catalog.load_table(identifier(cfg, "target"))
            row = {"acct": ACCT, "month_partition": new_month, "balance_history": [Decimal("0.50")] * 5,
                   "payment_history": None, "limit_history": None}
            table.append(to_arrow([row], target_schema(cfg)))

    processor = IcebergBackfillProcessor(cfg)
    result = execute(prepare(cfg, catalog, ["M"]), processor.resolved_catalog, catalog, monthly_load)
    assert loaded.is_set() and result.succeeded and result.published == PublishState.PUBLISHED
    after = read_target(catalog, cfg)
    assert after[(ACCT, new_month)]["balance_history"] == [Decimal("0.50")] * 4 + [Decimal("4.44")]
    for i in range(4):
        assert after[(ACCT, add_months(FIRST, i))]["balance_history"][i] == Decimal("4.44")
    assert {r["status"] for r in read_rows(catalog, cfg, "staging") if r["backfill_id"] == "M"} == {
        StagingStatus.APPLIED}
    assert verify_backfill(cfg, catalog, ["M"]).ok


def test_rollback_puts_back_what_it_replaced_and_keeps_later_writes(ray_instance, catalog_service):
    from pyiceberg.expressions import And, EqualTo

    from backfill.ops.rollback import rollback

    cfg, catalog = _tables(catalog_service, "series_rollback", months=5)
    before = read_target(catalog, cfg)
    processor = IcebergBackfillProcessor(cfg)
    _stage(catalog, cfg, "O", "5.55", acct=OTHER)  # an older correction, run after R: superseded
    _stage(catalog, cfg, "R", "1.00")
    _stage(catalog, cfg, "R", "3.00", acct=OTHER)
    assert processor.run(["R"]).succeeded
    assert processor.run(["O"]).superseded_entries == 1
    _stage(catalog, cfg, "L", "2.00")  # a later backfill writes one of R's cells
    assert processor.run(["L"]).succeeded
    # another writer changes one of R's cells by hand (no backfill): it must stay too
    hand = add_months(FIRST, 2)
    table = catalog.load_table(identifier(cfg, "target"))
    flt = And(EqualTo("acct", OTHER), EqualTo("month_partition", hand))
    row = table.scan(row_filter=flt).to_arrow().to_pylist()[0]
    row["balance_history"] = [*row["balance_history"][:2], Decimal("8.88"), *row["balance_history"][3:]]
    table.overwrite(to_arrow([row], target_schema(cfg)), overwrite_filter=flt)
    written = read_target(catalog, cfg)

    dry = rollback(cfg, catalog, processor.resolved_catalog, ["R"], dry_run=True)
    print("\n".join(dry.lines()))
    assert read_target(catalog, cfg) == written, "a dry run writes nothing"
    kept = {(p, a, k): why for (p, a, _, k), why in dry.kept.items()}
    assert kept[(hand, OTHER, 2)].startswith("changed since by another writer")
    assert all(kept[(add_months(FIRST, i), ACCT, i)] == "a later backfill holds it" for i in range(5))
    assert dry.restored_cells == 4  # OTHER's cells in the four partitions nobody touched since

    assert dry.revived == ("O",)
    done = rollback(cfg, catalog, processor.resolved_catalog, ["R"])
    print("\n".join(done.lines()))
    assert done.snapshot_id is not None and done.restored_cells == 4
    others = [r for r in read_rows(catalog, cfg, "staging") if r["backfill_id"] not in ("R", "O")]
    expected = newest_wins(cfg, before, others)
    expected[(OTHER, hand)]["balance_history"][2] = Decimal("8.88")
    assert diff_tables(read_target(catalog, cfg), expected) == []
    statuses = {r["backfill_id"]: r["status"] for r in read_rows(catalog, cfg, "staging")}
    assert statuses["R"] == "rolled_back" and statuses["O"] == "pending"
    audit = [r for r in read_rows(catalog, cfg, "audit") if r["backfill_id"] == "R" and r["status"] == "rolled_back"]
    assert len(audit) == 4
    again = rollback(cfg, catalog, processor.resolved_catalog, ["R"])  # safe to rerun
    assert again.restored_cells == 0 and again.already_restored == 4
    assert diff_tables(read_target(catalog, cfg), expected) == []
    assert verify_backfill(cfg, catalog, ["L"]).ok
    # with R withdrawn the older correction O wins OTHER's cells again: its rerun writes them
    assert processor.run(["O"]).succeeded
    rows = read_rows(catalog, cfg, "staging")
    assert diff_tables(read_target(catalog, cfg), newest_wins(cfg, before, rows)) == []
    assert {r["backfill_id"]: r["status"] for r in rows}["O"] == "applied"


def test_rollback_of_an_unpublished_run_drops_its_branch(ray_instance, catalog_service):
    from backfill.ops.rollback import rollback

    cfg, catalog = _tables(catalog_service, "series_unpublished", months=4, max_parallel=1, partitions_per_merge=1)
    before = read_target(catalog, cfg)
    _stage(catalog, cfg, "U", "6.66")
    processor = IcebergBackfillProcessor(cfg)
    first, _ = run_stopped_after(cfg, catalog, processor.resolved_catalog, ["U"], 1)
    assert first.not_started and first.branch in catalog.load_table(identifier(cfg, "target")).metadata.refs
    done = rollback(cfg, catalog, processor.resolved_catalog, ["U"])
    assert done.dropped_branch == first.branch and done.commits == 0
    assert first.branch not in catalog.load_table(identifier(cfg, "target")).metadata.refs
    assert read_target(catalog, cfg) == before
    assert {r["status"] for r in read_rows(catalog, cfg, "staging") if r["backfill_id"] == "U"} == {"rolled_back"}


def test_a_large_older_correction_run_after_a_later_one_keeps_the_later_value(ray_instance, catalog_service):
    """Above LITERAL_SOURCE_MAX_ENTRIES entries a batch's MERGE read its source from staging,
    where the run's rows are as staged, before the series rule: the older correction's
    superseded value was written over the later one (1.00 where 2.00 belongs)."""
    from backfill.sql.merge import LITERAL_SOURCE_MAX_ENTRIES

    cfg, catalog = _tables(catalog_service, "series_large", months=3)
    before = read_target(catalog, cfg)
    # accounts with no target row: they make the batch large without growing the table
    stage_rows(catalog, cfg, [{"backfill_id": "A", "acct": 10_000_000 + i, "backfill_month": FIRST,
                               "balance": Decimal("9.00"), "payment": None, "credit_limit": None}
                              for i in range(LITERAL_SOURCE_MAX_ENTRIES + 1)])
    _stage(catalog, cfg, "A", "1.00")
    _stage(catalog, cfg, "B", "2.00")
    processor = IcebergBackfillProcessor(cfg)
    assert processor.run(["B"]).succeeded
    again = processor.run(["A"])
    assert again.succeeded and again.superseded_entries == 1, again.summary_lines()
    after = read_target(catalog, cfg)
    assert diff_tables(after, newest_wins(cfg, before, read_rows(catalog, cfg, "staging"))) == []
    assert all(_holds({**row, "month_partition": m}, D2) for (a, m), row in after.items() if a == ACCT)


def test_a_large_batch_reads_exactly_its_entries_from_staging(ray_instance, catalog_service):
    """Above LITERAL_SOURCE_MAX_ENTRIES a batch whose pending rows are its entries reads them
    from the pinned staging snapshot: the table equals the reference model cell by cell, and
    the pending rows of a month the request left out (``backfill_month``) stay unwritten."""
    from backfill.sql.merge import LITERAL_SOURCE_MAX_ENTRIES

    cfg, catalog = _tables(catalog_service, "large_exact", months=4, accounts=6)
    before = read_target(catalog, cfg)
    second = add_months(FIRST, 1)
    fillers = [{"backfill_id": "L", "acct": 10_000_000 + i, "backfill_month": FIRST, "balance": Decimal("9.00"),
                "payment": None, "credit_limit": None} for i in range(LITERAL_SOURCE_MAX_ENTRIES + 1)]
    real = [{"backfill_id": "L", "acct": a, "backfill_month": m, "balance": Decimal(f"{i}.{j}5"),
             "payment": Decimal("1.25") if j == 0 else None, "credit_limit": None}
            for i, a in enumerate(account_ids(6)) for j, m in enumerate((FIRST, second))]
    stage_rows(catalog, cfg, fillers + real)
    result = IcebergBackfillProcessor(cfg).run(["L"], backfill_month=FIRST)
    assert result.succeeded and result.rows_updated == len(before), result.summary_lines()  # every row has one
    wanted = model_entries(cfg, [r for r in fillers + real if r["backfill_month"] == FIRST])
    assert diff_tables(read_target(catalog, cfg), apply_rule(before, wanted, cfg.tables.window)) == []
    pending = {r["backfill_month"] for r in read_rows(catalog, cfg, "staging") if r["status"] == "pending"}
    assert pending == {second}
