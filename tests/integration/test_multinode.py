"""The runner on a Ray cluster of several simulated nodes: partition actors land on more
than one node and the table still equals the reference model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.integration.helpers import diff_tables, make_config, pyiceberg_catalog, read_target
from tests.integration.runner_env import ROOT, expected_table, stage_wide_backfill, write_toml

pytestmark = [pytest.mark.spark, pytest.mark.ray, pytest.mark.slow, pytest.mark.soak]


def test_partition_actors_spread_over_nodes(catalog_service, tmp_path):
    cfg = make_config(catalog_service, "multinode", max_parallel=2, partitions_per_actor=1)
    catalog = pyiceberg_catalog(cfg)
    before, staged = stage_wide_backfill(catalog, cfg, "bf-multi", months=6, seed=23)
    toml = write_toml(cfg, tmp_path / "cfg.toml")
    out = tmp_path / "out.json"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-m", "tests.integration.multinode_driver", str(toml),
                           "bf-multi", str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert len(report["nodes"]) == 3
    used = {a["node"].split("/")[1] for a in report["attempts"] if a["node"]}
    assert len(used) >= 2, report
    actual, expected = read_target(catalog, cfg), expected_table(cfg, before, staged)
    assert actual == expected, diff_tables(actual, expected)
