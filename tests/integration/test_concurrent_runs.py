"""Two backfill runs started at the same time on overlapping partitions of one table both
end applied, with no lost update: Iceberg's conflict validation rejects the later commit
to a partition and the runner retries it on top of the earlier one."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from backfill import run_backfill
from backfill.ops.sample_data import SampleSpec, account_ids
from backfill.ops.setup import setup_tables, stage_rows
from bench.reference_model import apply_rule
from tests.integration.helpers import diff_tables, make_config, model_entries, pyiceberg_catalog, read_rows, read_target

pytestmark = [pytest.mark.spark, pytest.mark.ray, pytest.mark.slow]


def test_two_runs_on_overlapping_partitions_lose_nothing(ray_instance, catalog_service):
    cfg = make_config(catalog_service, "concurrent", max_parallel=1, retries=6)
    catalog = pyiceberg_catalog(cfg)
    setup_tables(catalog, cfg, SampleSpec(accounts=20, months=4, first_month="2024-01",
                                          staged_accounts=0, backfill_id="unused"))
    before = read_target(catalog, cfg)
    accts = account_ids(20)

    def rows(bid, accounts, value):
        # same accounts in both runs for some rows: both values must land (different months)
        return [{"backfill_id": bid, "acct": a, "backfill_month": month, "balance": Decimal(value),
                 "payment": None, "credit_limit": Decimal(value)}
                for a in accounts for month in (("2024-01",) if bid == "bf-left" else ("2024-02",))]

    left = rows("bf-left", accts[:12], "111.11")
    right = rows("bf-right", accts[6:], "222.22")
    stage_rows(catalog, cfg, left + right)
    results: dict[str, object] = {}

    def run(bid):
        try:
            results[bid] = run_backfill(cfg, [bid])
        except Exception as exc:  # surfaced by the assertions below
            results[bid] = exc

    threads = [threading.Thread(target=run, args=(b,)) for b in ("bf-left", "bf-right")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=1800)
    for bid in ("bf-left", "bf-right"):
        assert not isinstance(results[bid], Exception), results[bid]
        assert results[bid].succeeded, results[bid].summary_lines()
    expected = apply_rule(before, model_entries(cfg, left + right), cfg.tables.window)
    actual = read_target(catalog, cfg)
    assert actual == expected, diff_tables(actual, expected)
    assert {r["status"] for r in read_rows(catalog, cfg, "staging")} == {"applied"}
