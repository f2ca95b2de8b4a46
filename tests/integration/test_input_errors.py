"""Bad input is rejected before anything is written, with a message naming the problem.

Needs the catalog service (a JVM) but no Spark session: validation runs on the driver.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from backfill import run_backfill
from backfill.errors import InputError, TableError
from backfill.ops.sample_data import SampleSpec
from backfill.ops.setup import setup_tables, stage_rows
from tests.integration.helpers import make_config, pyiceberg_catalog, snapshot_ids

pytestmark = [pytest.mark.spark]

D = Decimal


@pytest.fixture(scope="module")
def env(catalog_service):
    cfg = make_config(catalog_service, "inputerr")
    catalog = pyiceberg_catalog(cfg)
    setup_tables(catalog, cfg, SampleSpec(accounts=10, months=6, staged_accounts=3, backfill_id="bf-ok"))
    return cfg, catalog


def _stage(catalog, cfg, bid, rows):
    base = {"backfill_id": bid, "balance": D("1.00"), "payment": None, "credit_limit": None}
    stage_rows(catalog, cfg, [{**base, **r} for r in rows])


@pytest.mark.parametrize("bid,rows,match", [
    ("bf-month13", [{"acct": 100000, "backfill_month": "2022-13"}], r"backfill_month '2022-13'"),
    ("bf-month1", [{"acct": 100000, "backfill_month": "2022-1"}], r"backfill_month '2022-1' "),
    ("bf-nullmonth", [{"acct": 100000, "backfill_month": None}], r"backfill_month None"),
    ("bf-nullacct", [{"acct": None, "backfill_month": "2022-03"}], r"acct=None.*account is NULL"),
    ("bf-dup", [{"acct": 100000, "backfill_month": "2022-03"}, {"acct": 100000, "backfill_month": "2022-03"}],
     r"duplicate entry for acct=100000 month='2022-03'"),
    ("bf-nowindow", [{"acct": 100000, "backfill_month": "2010-01"}], r"touches an existing partition"),
])
def test_bad_staged_rows_are_rejected_and_nothing_is_written(env, bid, rows, match):
    cfg, catalog = env
    _stage(catalog, cfg, bid, rows)
    before = snapshot_ids(catalog, cfg)
    with pytest.raises(InputError, match=match):
        run_backfill(cfg, [bid])
    assert snapshot_ids(catalog, cfg) == before


def test_unknown_backfill_id(env):
    cfg, catalog = env
    with pytest.raises(InputError, match="bf-never-staged.*no pending rows"):
        run_backfill(cfg, ["bf-never-staged"])


def test_unknown_target_table(env):
    cfg, catalog = env
    bad = dataclasses.replace(cfg, tables=dataclasses.replace(cfg.tables, target_table="inputerr.nope"))
    with pytest.raises(TableError, match=r"target table demo.inputerr.nope does not exist"):
        run_backfill(bad, ["bf-ok"])


def test_target_lacking_a_configured_column(env, catalog_service):
    cfg, catalog = env
    extra = dataclasses.replace(cfg.tables, history_columns=cfg.tables.history_columns
                                + (type(cfg.tables.history_columns[0])("fees_history", "fees"),))
    bad = dataclasses.replace(cfg, tables=extra)
    with pytest.raises(TableError, match="history column 'fees_history' is missing"):
        run_backfill(bad, ["bf-ok"])
