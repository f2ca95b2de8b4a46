"""Helpers shared by the real-stack tests: configs on the session catalog, table reads."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

from backfill.config import CatalogConfig, Config, HistoryColumn, RunConfig, SparkConfig, TableConfig
from backfill.iceberg.tables import identifier
from backfill.ops.prepare import prepare
from backfill.ops.run import execute
from backfill.ops.stop_signal import StopSignal

COLUMNS = (HistoryColumn("balance_history", "balance"), HistoryColumn("payment_history", "payment"),
           HistoryColumn("limit_history", "credit_limit"))


#: Runs of the tests keep their Spark sessions warm for the next test's runs (one session
#: start for most of the suite instead of one per run); a test of sessions that end with
#: their run passes ``keep_warm_seconds=0``.
TEST_KEEP_WARM_SECONDS = 900.0


def make_config(catalog_service: Any, namespace: str, **run: Any) -> Config:
    """Config on the session's embedded catalog, in its own namespace, small and fast."""
    return _small_config(CatalogConfig(type="embedded", warehouse=str(catalog_service.warehouse_dir)),
                         {}, namespace, run)


def stack_config(stack: Any, namespace: str, **run: Any) -> Config:
    """Like :func:`make_config`, on one of the session's test stacks (``tests/stacks.py``:
    the ``seaweed_stack`` or ``postgres_stack`` fixture): its catalog, its Spark jars and
    settings; checkpoints where the run puts them by default unless ``checkpoint_dir`` is given."""
    return _small_config(stack.catalog_config(), stack.spark_conf(), namespace, run)


def _small_config(catalog: CatalogConfig, spark_conf: dict[str, str], namespace: str,
                  run: dict[str, Any]) -> Config:
    return Config(
        tables=TableConfig(target_table=f"{namespace}.accounts_history",
                           staging_table=f"{namespace}.backfill_staging",
                           audit_table=f"{namespace}.backfill_audit",
                           history_columns=COLUMNS, window=36, buckets=4),
        catalog=catalog,
        # one core, not the machine's share: the same session shape whatever a test's parallelism,
        # so the warm sessions the tests share fit each other (tests/integration/test_sizing.py
        # runs the default)
        spark=SparkConfig(executor_cores=1, executor_memory="768m",
                          conf={"spark.sql.shuffle.partitions": "4", **spark_conf}),
        run=RunConfig(**{"retry_backoff_seconds": 0.5, "keep_warm_seconds": TEST_KEEP_WARM_SECONDS, **run}),
    ).validated()


def with_run(cfg: Config, **run: Any) -> Config:
    return dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, **run))


def pyiceberg_catalog(cfg: Config) -> Any:
    from cluster.catalog import load_pyiceberg_catalog, resolve_catalog

    return load_pyiceberg_catalog(resolve_catalog(cfg.catalog))


def read_target(catalog: Any, cfg: Config, snapshot_id: int | None = None) -> dict:
    """{(acct, month): {array_column: list | None}} of the whole target table."""
    table = catalog.load_table(identifier(cfg, "target"))
    scan = table.scan(snapshot_id=snapshot_id) if snapshot_id else table.scan()
    out = {}
    for r in scan.to_arrow().to_pylist():
        key = (r[cfg.tables.account_column], r[cfg.tables.month_column])
        assert key not in out, f"duplicate row {key}"
        out[key] = {hc.array_column: r[hc.array_column] for hc in cfg.tables.history_columns}
    return out


def read_rows(catalog: Any, cfg: Config, which: str) -> list[dict]:
    return catalog.load_table(identifier(cfg, which)).scan().to_arrow().to_pylist()


def model_entries(cfg: Config, staging_rows: list[dict]) -> list[tuple[int, str, dict[str, Decimal | None]]]:
    """Staging rows in the reference model's form."""
    return [(r["acct"], r["backfill_month"],
             {hc.array_column: r.get(hc.value_column) for hc in cfg.tables.history_columns})
            for r in staging_rows]


def snapshot_ids(catalog: Any, cfg: Config) -> dict[str, int | None]:
    out = {}
    for which in ("target", "staging", "audit"):
        snap = catalog.load_table(identifier(cfg, which)).current_snapshot()
        out[which] = snap.snapshot_id if snap else None
    return out


def diff_tables(actual: dict, expected: dict, limit: int = 10) -> list[str]:
    """Cell-by-cell differences, for assertion messages."""
    problems = []
    for key in sorted(set(actual) | set(expected)):
        if key not in actual:
            problems.append(f"row {key} missing")
        elif key not in expected:
            problems.append(f"row {key} unexpected")
        else:
            for col in expected[key]:
                if actual[key][col] != expected[key][col]:
                    problems.append(f"{key} {col}: got {actual[key][col]} expected {expected[key][col]}")
        if len(problems) >= limit:
            break
    return problems


def run_stopped_after(cfg: Config, catalog: Any, resolved_catalog: Any, backfill_ids: list[str],
                      commits: int) -> tuple[Any, list[str]]:
    """A run stopped (as `ray job stop` would) once ``commits`` partitions committed: its
    result and the partitions committed, in order."""
    committed: list[str] = []
    with StopSignal() as stop:

        def watch(line: str) -> None:
            if " committed attempt " in line:
                committed.append(line.split()[1])
                if len(committed) == commits:
                    stop.set()

        result = execute(prepare(cfg, catalog, backfill_ids), resolved_catalog, catalog, watch, stop)
    return result, committed


def overlong_tables(catalog_service: Any, namespace: str) -> tuple[Config, Any]:
    """A target whose arrays hold 40 elements (W = 36) for accounts 1 and 2 in 2022-01 and
    2022-02, and one staged entry (id ``bf-long``, acct 1, 2022-01)."""
    from backfill.iceberg.schema import target_schema
    from backfill.iceberg.tables import create_audit, create_staging, create_target, to_arrow
    from backfill.ops.setup import stage_rows

    cfg = make_config(catalog_service, namespace)
    catalog = pyiceberg_catalog(cfg)
    target, _ = create_target(catalog, cfg)
    create_staging(catalog, cfg)
    create_audit(catalog, cfg)
    rows = [{"acct": a, "month_partition": m, "balance_history": [Decimal("1.00")] * 40,
             "payment_history": None, "limit_history": [Decimal("2.00")] * 3}
            for a in (1, 2) for m in ("2022-01", "2022-02")]
    target.append(to_arrow(rows, target_schema(cfg)))
    stage_rows(catalog, cfg, [{"backfill_id": "bf-long", "acct": 1, "backfill_month": "2022-01",
                               "balance": Decimal("1.00"), "payment": None, "credit_limit": None}])
    return cfg, catalog
