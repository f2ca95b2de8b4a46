"""Which Spark engine a run's sessions use, and the shape of a local session.

"auto" is local only for a run alone on its machine (it starts its own Ray): on a
cluster, or a Ray someone else started, the design's RayDP sessions stay the rule.
"""

from __future__ import annotations

import dataclasses

import pytest

import actors.runtime as runtime
from backfill.config import Config, RunConfig, SparkConfig
from backfill.core.sizing import memory_mib
from cluster.spark_session import local_settings


def _cfg(engine: str = "auto", **run) -> Config:
    return dataclasses.replace(Config(), spark=SparkConfig(engine=engine), run=RunConfig(**run))


@pytest.mark.parametrize("engine", ["raydp", "local"])
def test_a_named_engine_is_kept_wherever_the_run_is(ray_at, engine):
    ray_at("10.0.0.1:6379")
    assert runtime.engine_for(_cfg(engine, ray_address="10.0.0.1:6379")) == engine
    ray_at(None)
    assert runtime.engine_for(_cfg(engine)) == engine


def test_auto_is_local_for_a_run_that_starts_its_own_ray(ray_at):
    ray_at(None)  # nothing running yet: ensure_ray will start an instance for this run
    assert runtime.engine_for(_cfg()) == "local"
    ray_at("127.0.0.1:40000", own="127.0.0.1:40000")  # the instance ensure_ray started
    assert runtime.engine_for(_cfg()) == "local"


def test_auto_is_raydp_on_a_cluster_or_a_ray_someone_else_started(ray_at, monkeypatch):
    ray_at(None)
    assert runtime.engine_for(_cfg(ray_address="10.0.0.1:6379")) == "raydp"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")  # as `ray job submit` sets it
    assert runtime.engine_for(_cfg()) == "raydp"
    monkeypatch.delenv("RAY_ADDRESS")
    ray_at("127.0.0.1:40000", own=None)  # the Python API on a head: ray.init() by the caller
    assert runtime.engine_for(_cfg()) == "raydp"
    ray_at("127.0.0.1:40001", own="127.0.0.1:40000")  # not the instance this process started
    assert runtime.engine_for(_cfg()) == "raydp"


def test_with_engine_decides_auto_once_and_leaves_the_rest(ray_at):
    ray_at(None)
    cfg = _cfg()
    decided = runtime.with_engine(cfg)
    assert decided.spark.engine == "local"
    assert dataclasses.replace(decided.spark, engine="auto") == cfg.spark
    named = _cfg("raydp")
    assert runtime.with_engine(named) is named


@pytest.mark.parametrize(("text", "mib"), [("768m", 768), ("2g", 2048), ("2G", 2048), ("1t", 1048576),
                                           ("4096k", 4), ("512mb", 512)])
def test_memory_sizes_read_as_spark_writes_them(text, mib):
    assert memory_mib(text) == mib


@pytest.mark.parametrize("text", ["", "g", "2", "2x", "-1g", "1.5g", "lots"])
def test_a_bad_memory_size_is_named(text):
    with pytest.raises(ValueError, match="is not a memory size"):
        memory_mib(text)


def test_a_local_session_gets_its_executors_cores_plus_the_app_masters_and_their_heap():
    spark = SparkConfig(engine="local", num_executors=2, executor_cores=3, executor_memory="2g")
    assert local_settings(spark, {}) == {"spark.master": "local[7]", "spark.driver.memory": "5120m"}


def test_a_users_driver_memory_wins_and_unsized_executors_are_refused():
    spark = SparkConfig(engine="local", executor_cores=1, executor_memory="768m")
    assert local_settings(spark, {"spark.driver.memory": "6g"})["spark.driver.memory"] == "6g"
    with pytest.raises(ValueError, match="sizes its executors"):
        local_settings(SparkConfig(engine="local"), {})
