"""The RAY_APP_MASTER namespace fix: unit checks first, then three real sessions in one job."""

from __future__ import annotations

import json
import sys
import uuid

import pytest

from backfill.errors import EnvironmentProblem
from cluster import raydp_namespace


def test_namespace_is_unique_per_job_and_app_name():
    a = raydp_namespace.app_master_namespace("job1", "app-a_SPARK_MASTER")
    b = raydp_namespace.app_master_namespace("job1", "app-b_SPARK_MASTER")
    other_job = raydp_namespace.app_master_namespace("job2", "app-a_SPARK_MASTER")
    assert a == "job1.raydp.app-a"
    assert len({a, b, other_job}) == 3


def test_untested_raydp_version_is_refused(monkeypatch):
    monkeypatch.setattr(raydp_namespace.importlib.metadata, "version", lambda _name: "9.9.9")
    monkeypatch.delenv(raydp_namespace.ALLOW_UNTESTED_ENV, raising=False)
    with pytest.raises(EnvironmentProblem, match=r"raydp 9\.9\.9 .*raydp==1\.6\.5"):
        raydp_namespace.check_raydp_version()
    monkeypatch.setenv(raydp_namespace.ALLOW_UNTESTED_ENV, "1")
    assert raydp_namespace.check_raydp_version() == "9.9.9"


def test_installed_raydp_is_the_tested_version():
    import raydp

    assert raydp_namespace.check_raydp_version() == raydp.__version__ == "1.6.5"


def test_install_swaps_the_master_class_once():
    from raydp.spark import ray_cluster

    original = ray_cluster.RayDPSparkMaster
    try:
        raydp_namespace.install()
        patched = ray_cluster.RayDPSparkMaster
        assert patched is not original
        raydp_namespace.install()
        assert ray_cluster.RayDPSparkMaster is patched
    finally:
        ray_cluster.RayDPSparkMaster = original


@pytest.mark.ray
def test_patched_master_config_gives_each_app_its_own_namespace(ray_instance):
    """Runs the real (patched) ``_generate_ray_configs`` in master actors; no JVM starts."""
    ray = ray_instance
    master_class = raydp_namespace.namespaced_master_class()
    apps = [f"ns-unit-{i}-{uuid.uuid4().hex[:6]}" for i in range(3)]
    masters = [master_class.options(name=f"{app}_SPARK_MASTER", num_cpus=0).remote({})
               for app in apps]
    try:
        options = [json.loads(ray.get(m._generate_ray_configs.remote())) for m in masters]
    finally:
        for m in masters:
            ray.kill(m)
    job_namespace = ray.get_runtime_context().namespace
    namespaces = [o["ray.job.namespace"] for o in options]
    assert namespaces == [f"{job_namespace}.raydp.{app}" for app in apps]
    # Everything else RayDP generates is left as it was.
    assert all(o["ray.run-mode"] == "CLUSTER" and o["ray.address"] for o in options)


@pytest.fixture(scope="module")
def _pickle_this_module_by_value():
    """Ray workers cannot import test modules; ship this module's code by value."""
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.mark.spark
def test_three_sessions_side_by_side_in_one_job(ray_instance, _pickle_this_module_by_value):
    ray = ray_instance

    @ray.remote(num_cpus=1)
    class Session:
        def start(self, app_name: str) -> str:
            from backfill.config import SparkConfig
            from cluster.spark_session import start_spark

            cfg = SparkConfig(engine="raydp", executor_cores=1, executor_memory="512m", conf={
                "spark.driver.memory": "512m",
                "spark.ray.raydp_app_master.extraJavaOptions": "-Xmx256m",
            })
            self.spark = start_spark(app_name, SMALL_CONF, cfg)
            return self.spark.sparkContext.appName

        def square_sum(self, n: int) -> int:
            return self.spark.range(n).selectExpr("sum(id * id)").first()[0]

        def stop(self) -> None:
            from cluster.spark_session import stop_spark

            stop_spark("raydp")

    actors = [Session.remote() for _ in range(3)]
    try:
        app_names = ray.get([a.start.remote("ns-spark") for a in actors], timeout=600)
        assert len(set(app_names)) == 3
        # Each session works while the others are alive.
        assert ray.get([a.square_sum.remote(10) for a in actors]) == [285] * 3
        job_namespace = ray.get_runtime_context().namespace
        # warm sessions of earlier tests have masters of their own, each in its own namespace
        masters = [
            (a["namespace"], a["name"])
            for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"] == "RAY_APP_MASTER"
            and a["namespace"].removeprefix(f"{job_namespace}.raydp.") in app_names
        ]
        assert sorted(masters) == sorted(
            (f"{job_namespace}.raydp.{name}", "RAY_APP_MASTER") for name in app_names
        )
        assert not [a for a in ray.util.list_named_actors(all_namespaces=True)
                    if a["name"] == "RAY_APP_MASTER" and a["namespace"] == job_namespace]
    finally:
        ray.get([a.stop.remote() for a in actors], timeout=120)
        for a in actors:
            ray.kill(a)


#: Small, Iceberg-free Spark settings: this test is about the sessions, not the catalog.
SMALL_CONF = {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2"}
