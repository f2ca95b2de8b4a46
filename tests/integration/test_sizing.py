"""The default session shape on real RayDP: with ``[spark] executor_cores`` unset, a run's
executors get this machine's cores shared among its sessions (here: one session), less a
core for each session's Spark driver, and the
table ends equal to the reference model. The run stages 300 accounts, so each MERGE's
account predicate is split into IN lists of 200 joined with OR (``IN_BOUNDS_MAX``): an
account lost between the lists would leave its cells unequal to the model."""

from __future__ import annotations

import dataclasses

import pytest

from actors import runtime
from actors.named import WARM_PREFIX, end_idle, handles, named
from backfill import run_backfill
from backfill.config import RAY_NAMESPACE
from backfill.sql.merge import IN_BOUNDS_MAX
from tests.integration.helpers import diff_tables, make_config, pyiceberg_catalog, read_target
from tests.integration.runner_env import expected_table, stage_wide_backfill

pytestmark = [pytest.mark.spark, pytest.mark.ray, pytest.mark.slow]


def _executor_cores(name: str) -> str:
    """``spark.executor.cores`` as the warm session ``name`` itself reports it."""
    import ray

    [(_, handle)] = handles(RAY_NAMESPACE, [name])
    [(key, value)] = ray.get(handle.sql.remote("SET spark.executor.cores"))
    assert key == "spark.executor.cores"
    return str(value)


def test_unset_executor_cores_take_the_machines_share(ray_instance, catalog_service, monkeypatch):
    # a 4-core machine, as the driver sees it: 3 cores for the one session's executor, one
    # for its Spark driver (the session's Ray instance has the logical CPUs for them)
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    end_idle(RAY_NAMESPACE)
    base = make_config(catalog_service, "sizing", keep_warm_seconds=300, max_parallel=1, partitions_per_actor=1)
    cfg = dataclasses.replace(base, spark=dataclasses.replace(base.spark, executor_cores=None))
    expected_cores = runtime.local_budget().executor_cores(1, 1)
    assert expected_cores == 3
    catalog = pyiceberg_catalog(cfg)
    before, staged = stage_wide_backfill(catalog, cfg, "bf-sizing", months=3, accounts=600, seed=61)
    assert len({r["acct"] for r in staged}) > IN_BOUNDS_MAX
    lines: list[str] = []
    result = run_backfill(cfg, ["bf-sizing"], progress=lines.append)
    assert result.succeeded, result.summary_lines()
    actual, expected = read_target(catalog, cfg), expected_table(cfg, before, staged)
    assert actual == expected, diff_tables(actual, expected)
    assert any(f"starting 1 Spark session(s) of 1 executor(s) x {expected_cores} core(s)" in line
               for line in lines), lines
    try:
        [name] = named(RAY_NAMESPACE, WARM_PREFIX)  # kept warm, so it can be asked
        assert _executor_cores(name) == str(expected_cores)
    finally:
        end_idle(RAY_NAMESPACE)
