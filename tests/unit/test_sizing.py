"""Automatic executor cores (``[spark] executor_cores`` unset): the free CPUs' share per
session, bounded by one node and MAX_AUTO_EXECUTOR_CORES; a kept warm session's shape wins."""

from __future__ import annotations

import dataclasses

import pytest

import actors.warm
from actors import runtime
from actors.named import WARM_PREFIX
from actors.warm import session_key, sized_for_run
from backfill.config import Config, RunConfig, SparkConfig, load_config
from backfill.core.sizing import MAX_AUTO_EXECUTOR_CORES, SessionBudget
from backfill.errors import ConfigError


def _local(cores: int) -> SessionBudget:
    return SessionBudget(free=cores, largest_node=cores, reserved_per_session=1, node_memory_mib=24_000,
                         source="here")


@pytest.mark.parametrize(("cores", "sessions", "executors", "expected"), [
    (2, 1, 1, 1),    # the 2-core machine: one core stays with the Spark driver
    (2, 2, 1, 1),    # never below one
    (8, 1, 1, 7),
    (8, 2, 1, 3),    # each session's driver keeps a core
    (16, 1, 2, 7),   # the share is split over a session's executors
    (64, 1, 1, MAX_AUTO_EXECUTOR_CORES),
])
def test_local_share(cores, sessions, executors, expected):
    assert _local(cores).executor_cores(sessions, executors) == expected


def test_a_cluster_share_leaves_each_sessions_actor_and_spare_and_fits_one_node():
    free = SessionBudget(free=14, largest_node=16, reserved_per_session=2, node_memory_mib=64_000,
                         source="cluster")
    assert free.executor_cores(2, 1) == 5          # 14 / 2 - 2
    small_nodes = dataclasses.replace(free, largest_node=4)
    assert small_nodes.executor_cores(1, 1) == 4   # an executor lives on one node
    assert dataclasses.replace(free, free=0).executor_cores(3, 1) == 1
    assert free.describe(2, 1) == "sized from cluster over 2 session(s): 5 core(s) per executor"


def test_memory_follows_the_cores_within_a_quarter_of_a_node():
    budget = _local(4)
    assert budget.executor_memory(2) == "2048m"
    assert dataclasses.replace(budget, node_memory_mib=4096).executor_memory(8) == "1024m"
    assert dataclasses.replace(budget, node_memory_mib=1024).executor_memory(1) == "512m"  # the floor


def test_configured_cores_are_kept_and_unset_ones_decided(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    fixed = dataclasses.replace(Config(), spark=SparkConfig(executor_cores=3, executor_memory="5g"))
    assert runtime.sized(fixed, 4) is fixed
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert runtime.sized(Config(), 2).spark.executor_cores == 3
    only_cores = runtime.sized(dataclasses.replace(Config(), spark=SparkConfig(executor_cores=3)), 4).spark
    assert (only_cores.executor_cores, only_cores.executor_memory) == (3, "3072m")
    with pytest.raises(ValueError, match="sized"):
        runtime.session_cpus(Config())


def test_a_local_instance_fits_every_session_at_any_count(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 6)
    cfg = dataclasses.replace(Config(), run=RunConfig(max_parallel=4, partitions_per_actor=1))
    # 1 session of 5 cores needs 1 + 5 + 1 = 7, 2 of 2: 8, 3 of 1: 9, 4 of 1: 12
    assert runtime.local_cpus(cfg) == 13
    assert runtime.local_cpus(dataclasses.replace(cfg, run=RunConfig(max_parallel=1))) == 8


def test_toml_leaves_cores_unset_by_default():
    assert load_config().spark.executor_cores is None
    assert load_config().spark.executor_memory is None


@pytest.mark.parametrize(("value", "says"), [('"auto"', "executor_cores must be int"),
                                             ("0", "executor_cores must be at least 1")])
def test_toml_cores_must_be_a_positive_number(tmp_path, value, says):
    path = tmp_path / "c.toml"
    path.write_text(f"[spark]\nexecutor_cores = {value}\n")
    with pytest.raises(ConfigError, match=says):
        load_config(path).validated()


def test_a_kept_warm_sessions_cores_win_over_the_share(monkeypatch):
    """The free CPUs exclude those an idle warm session holds, so the share would size a
    new session smaller than the warm one and miss it."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 3)
    cfg = dataclasses.replace(Config(), run=RunConfig(keep_warm_seconds=60))
    conf = {"spark.sql.catalog.x": "y"}
    kept = runtime.sized(runtime.with_cores(cfg, 3), 2)  # as the run that kept it sized it
    warm = f"{WARM_PREFIX}{session_key(kept, conf)}-1a2b3c4d"
    monkeypatch.setattr(actors.warm, "named", lambda namespace, prefix: [warm])
    assert sized_for_run(cfg, conf, 2).spark == kept.spark
    monkeypatch.setattr(actors.warm, "named", lambda namespace, prefix: [])
    assert sized_for_run(cfg, conf, 2).spark.executor_cores == 1
    no_keep = dataclasses.replace(cfg, run=RunConfig(keep_warm_seconds=0))
    assert sized_for_run(no_keep, conf, 1).spark.executor_cores == 2
