"""The local engine on the real stack: Spark in the partition actor's own JVM (no RayDP app
master or executor actors), the default of a run alone on its machine.

What must hold as for RayDP sessions: the table equals the reference model cell by cell,
and a stopped run resumed later commits every partition exactly once (the commit tags
that make resume exactly-once are written from this session too).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest

from actors.partition_actor import one_session, run_statement
from backfill.config import Config
from backfill.ops.prepare import prepare
from backfill.ops.run import execute
from cluster.catalog import resolve_catalog
from tests.integration.helpers import diff_tables, make_config, pyiceberg_catalog, read_target, run_stopped_after
from tests.integration.runner_env import ROOT, commits_per_partition, expected_table, stage_wide_backfill, write_toml

pytestmark = [pytest.mark.spark, pytest.mark.ray, pytest.mark.slow]


def _local(cfg: Config) -> Config:
    return dataclasses.replace(cfg, spark=dataclasses.replace(cfg.spark, engine="local"))


def test_a_local_session_runs_in_the_actors_own_jvm(ray_instance, catalog_service):
    cfg = _local(make_config(catalog_service, "local_shape", keep_warm_seconds=0))
    with one_session(cfg, resolve_catalog(cfg.catalog), "backfill-local-shape") as actor:
        master = dict(run_statement(actor, "SET spark.master"))["spark.master"]
        masters = [a["name"] for a in ray_instance.util.list_named_actors(all_namespaces=True)
                   if a["name"].startswith("backfill-local-shape")]
    # the test config's 1 executor core, plus the core RayDP's app master would have taken
    assert master == "local[2]"
    assert masters == []  # RayDP names its master actor after the app: none was started


def test_a_stopped_local_run_resumes_exactly_once_and_matches_the_model(ray_instance, catalog_service):
    cfg = _local(make_config(catalog_service, "local_resume", keep_warm_seconds=0, max_parallel=1,
                             partitions_per_merge=2))
    catalog, resolved = pyiceberg_catalog(cfg), resolve_catalog(cfg.catalog)
    before, staged = stage_wide_backfill(catalog, cfg, "bf-local", months=8)
    first, committed = run_stopped_after(cfg, catalog, resolved, ["bf-local"], 2)
    assert committed and first.not_started, first.summary_lines()
    lines: list[str] = []
    second = execute(prepare(cfg, catalog, ["bf-local"]), resolved, catalog, lines.append)
    assert second.succeeded, second.summary_lines()
    assert any("(local, about 3 s each)" in line for line in lines), lines
    actual, expected = read_target(catalog, cfg), expected_table(cfg, before, staged)
    assert actual == expected, diff_tables(actual, expected)
    counts = commits_per_partition(catalog, cfg, "bf-local")
    assert len(counts) == 8 and set(counts.values()) == {1}, counts


def test_the_cli_alone_on_its_machine_runs_local_sessions_by_default(ray_instance, catalog_service, tmp_path):
    """The README's cold run: no RAY_ADDRESS, so the driver starts its own Ray (beside the
    suite's) and "auto" gives it local sessions."""
    cfg = make_config(catalog_service, "local_cli")
    assert cfg.spark.engine == "auto"
    catalog = pyiceberg_catalog(cfg)
    before, staged = stage_wide_backfill(catalog, cfg, "bf-local-cli", months=6)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run([sys.executable, "-m", "backfill", "backfill", "--config",
                           str(write_toml(cfg, tmp_path / "c.toml")), "--backfill-id", "bf-local-cli"],
                          cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "starting a local Ray instance" in out and "(local, about 3 s each)" in out, out[-4000:]
    actual, expected = read_target(catalog, cfg), expected_table(cfg, before, staged)
    assert actual == expected, diff_tables(actual, expected)
