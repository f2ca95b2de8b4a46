"""Smoke test of the benchmark at tiny size: every strategy ran, every result was checked
cell by cell against the reference model, and the JSON and PNG were written.
Timings are not asserted (the machine is shared; the benchmark is not a timed test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.spark, pytest.mark.ray, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def test_tiny_benchmark_verifies_every_strategy_and_writes_results(tmp_path):
    from bench.strategies import STRATEGIES

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "bench.benchmark", "--tiny", "--no-scaling",
                           "--out", str(tmp_path)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    doc = json.loads((tmp_path / "benchmark.json").read_text())
    assert (tmp_path / "benchmark.png").stat().st_size > 1000
    names = [r["strategy"] for r in doc["results"]]
    assert names == [s.name for s in STRATEGIES if s.in_default]
    for r in doc["results"]:
        assert r["verified"], r["verify"]
        assert r["verify"]["wrong_affected_rows"] == 0 and r["verify"]["differing_rows"] == 0
        assert r["rows_updated"] > 0 and r["commits"] >= 1
        best = r["can_hold"]  # every affected partition has files, and one holds an affected account
        assert best["row_groups"] >= best["row_groups_can_hold"] >= 1 and best["bytes"] >= best["bytes_can_hold"] > 0
    (compacted,) = [r for r in doc["results"] if r["compaction"]]
    assert compacted["strategy"] == doc["default_strategy"]
    assert compacted["compaction"]["verified"] and compacted["compaction"]["delete_files_after"] == 0
    assert compacted["delete_files_after"] > 0  # the merge-on-read backfill did add delete files
    assert "compaction after engine_mor_v2" in proc.stdout
    assert doc["scale"]["accounts"] == 200 and doc["scale"]["history_columns"] == 2
    assert "strategy" in proc.stdout and "wall s" in proc.stdout


@pytest.mark.soak
def test_tiny_benchmark_runs_a_variant_by_name_on_a_relaid_table(tmp_path):
    """A variant run by name (not in the default set): the account-sorted table with small
    row groups and a bloom filter is rewritten before timing and still verified cell by cell."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "bench.benchmark", "--tiny", "--no-scaling", "--no-baseline",
                           "--strategies", "engine_mor_v2_rowgroups", "--out", str(tmp_path)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    (result,) = json.loads((tmp_path / "benchmark.json").read_text())["results"]
    assert result["strategy"] == "engine_mor_v2_rowgroups"
    assert result["verified"], result["verify"]
    assert result["rows_updated"] > 0
    assert result["properties"]["write.parquet.bloom-filter-enabled.column.acct"] == "true"
    best = result["can_hold"]  # sorted into small row groups: some hold no affected account
    assert best["row_groups"] > best["row_groups_can_hold"] >= 1, best
