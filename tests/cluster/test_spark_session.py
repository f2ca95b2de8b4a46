"""RayDP sessions against the embedded Hive catalog: concurrent commits and commit tags."""

from __future__ import annotations

import sys
import time
import uuid
import zipfile
from pathlib import Path

import pytest

from backfill.config import SparkConfig
from backfill.core.names import ICEBERG_EXTENSIONS
from backfill.errors import EnvironmentProblem, PermanentError
from cluster import jars
from cluster.spark_session import spark_conf, unique_app_name

# ------------------------------------------------------------------ pure unit tests


def test_spark_conf_precedence_and_iceberg_settings(tmp_path):
    jar = tmp_path / "iceberg.jar"
    catalog = {"spark.sql.catalog.demo": "org.apache.iceberg.spark.SparkCatalog",
               "spark.sql.shuffle.partitions": "4"}
    user = SparkConfig(conf={"spark.sql.shuffle.partitions": "2", "spark.ui.enabled": "true"})
    conf = spark_conf(catalog, user, jar)
    assert conf["spark.jars"] == str(jar.resolve())
    assert conf["spark.sql.extensions"] == ICEBERG_EXTENSIONS
    assert conf["spark.sql.catalog.demo"] == "org.apache.iceberg.spark.SparkCatalog"
    assert conf["spark.sql.adaptive.enabled"] == "true"
    # The user's conf wins over catalog entries and defaults.
    assert conf["spark.sql.shuffle.partitions"] == "2"
    assert conf["spark.ui.enabled"] == "true"
    assert spark_conf({}, SparkConfig(), jar)["spark.ui.enabled"] == "false"
    assert not any("add-opens" in v for v in conf.values())
    # Iceberg's table cache stays on (runtime file filtering needs one snapshot per
    # statement); an explicit setting still wins.
    assert "spark.sql.catalog.demo.cache-enabled" not in conf
    uncached = dict(catalog, **{"spark.sql.catalog.demo.cache-enabled": "false"})
    assert spark_conf(uncached, user, jar)["spark.sql.catalog.demo.cache-enabled"] == "false"


def test_unique_app_names():
    names = {unique_app_name("backfill 2024/01") for _ in range(50)}
    assert len(names) == 50
    assert all(n.startswith("backfill-2024-01-") for n in names)


def test_runtime_jar_is_the_scala_212_one_from_the_wheel():
    jar = jars.iceberg_runtime_jar()
    assert jar.name.startswith("iceberg-spark-runtime-3.5_2.12-") and jar.is_file()
    assert jars.iceberg_runtime_jar(str(jar)) == jar


def test_runtime_jar_problems_say_how_to_fix(tmp_path, monkeypatch):
    with pytest.raises(EnvironmentProblem, match="--iceberg-jar"):
        jars.iceberg_runtime_jar(str(tmp_path / "missing.jar"))
    broken = tmp_path / "iceberg-spark-runtime-3.5_2.12-1.10.2.jar"
    with zipfile.ZipFile(broken, "w") as zf:
        zf.writestr("org/apache/iceberg/Table.class", b"")
    with pytest.raises(EnvironmentProblem, match="1.0.3"):
        jars.iceberg_runtime_jar(str(broken))
    monkeypatch.setattr(jars.importlib.util, "find_spec", lambda _name: None)
    with pytest.raises(EnvironmentProblem, match="snowpark-connect-deps-iceberg==1.0.2"):
        jars.iceberg_runtime_jar()


def test_domain_modules_import_without_pyspark():
    import subprocess

    code = ("import sys, cluster.spark_session, cluster.jars, cluster.raydp_namespace; "
            "sys.exit(int('pyspark' in sys.modules or 'raydp' in sys.modules))")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


# ------------------------------------------------------------------ real stack

N_INSERTS = 8
N_SESSIONS = 3
SPARK = SparkConfig(engine="raydp", executor_cores=1, executor_memory="512m", conf={
    "spark.driver.memory": "512m",
    "spark.ray.raydp_app_master.extraJavaOptions": "-Xmx256m",
})


@pytest.fixture(scope="module")
def catalog_conf(catalog_service) -> dict[str, str]:
    """Spark catalog ``demo`` on the embedded Hive metastore."""
    prefix = "spark.sql.catalog.demo"
    return {
        prefix: "org.apache.iceberg.spark.SparkCatalog",
        f"{prefix}.type": "hive",
        f"{prefix}.uri": catalog_service.uri,
        f"{prefix}.warehouse": Path(catalog_service.warehouse_dir).as_uri(),
    }


@pytest.fixture(scope="module")
def sessions(ray_instance, catalog_conf):
    """Three Ray actors of this Ray job, each holding its own RayDP session."""
    from ray import cloudpickle

    ray = ray_instance
    # Ray workers cannot import test modules: ship this module's code by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])

    @ray.remote(num_cpus=1)
    class Session:
        def start(self, app_name: str, catalog: dict[str, str]) -> float:
            from cluster.jars import iceberg_runtime_jar
            from cluster.spark_session import start_spark

            began = time.monotonic()
            conf = spark_conf(catalog, SPARK, iceberg_runtime_jar(SPARK.iceberg_jar))
            self.spark = start_spark(app_name, conf, SPARK)
            return time.monotonic() - began

        def sql(self, query: str) -> list[tuple]:
            return [tuple(r) for r in self.spark.sql(query).collect()]

        def insert_many(self, table: str, worker: int, n: int) -> tuple[float, float]:
            began = time.time()
            for i in range(n):
                self.spark.sql(f"INSERT INTO {table} VALUES ({worker}, {i}, 'w{worker}-{i}')")
            return began, time.time()

        def tagged_merge(self, table: str, properties: dict[str, str]) -> int:
            from cluster.spark_session import run_with_commit_properties

            merge = (f"MERGE INTO {table} t USING (SELECT 1 AS id, 'new' AS v) s "
                     "ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = s.v")
            rows = run_with_commit_properties(
                self.spark, properties, lambda: self.spark.sql(merge).collect())
            return len(rows)

        def failing_merge(self) -> tuple[str, str]:
            from cluster.spark_session import run_with_commit_properties

            merge = ("MERGE INTO demo.db.no_such_table t USING (SELECT 1 AS id) s "
                     "ON t.id = s.id WHEN MATCHED THEN DELETE")
            try:
                run_with_commit_properties(self.spark, {"k": "v"}, lambda: self.spark.sql(merge))
            except Exception as exc:  # noqa: BLE001 - reported to the test
                return type(exc).__name__, str(exc)
            return "", ""

        def classify_failure(self, query: str) -> tuple[BaseException | None, list[str]]:
            """error_for and java_class_chain of ``query``'s failure (read here: it holds JVM objects)."""
            from cluster.java_errors import error_for, java_class_chain

            try:
                self.spark.sql(query).collect()
            except Exception as exc:  # noqa: BLE001 - classified and reported to the test
                return error_for(exc, "probe"), java_class_chain(exc)
            return None, []

        def stop(self) -> None:
            from cluster.spark_session import stop_spark

            stop_spark("raydp")

    actors = [Session.remote() for _ in range(N_SESSIONS)]
    try:
        startup = ray.get([a.start.remote("spark-session-test", catalog_conf) for a in actors],
                          timeout=900)
        print(f"RayDP session start-up, {N_SESSIONS} in parallel: "
              + ", ".join(f"{s:.1f}s" for s in startup))
        yield actors
    finally:
        ray.get([a.stop.remote() for a in actors], timeout=300)
        for a in actors:
            ray.kill(a)
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.mark.spark
def test_concurrent_commits_from_three_sessions_lose_nothing(ray_instance, sessions):
    ray = ray_instance
    table = f"demo.db.concurrent_{uuid.uuid4().hex[:8]}"
    first = sessions[0]
    ray.get(first.sql.remote("CREATE NAMESPACE IF NOT EXISTS demo.db"))
    ray.get(first.sql.remote(
        f"CREATE TABLE {table} (worker INT, i INT, tag STRING) USING iceberg "
        "TBLPROPERTIES ('commit.retry.num-retries'='20', 'commit.retry.min-wait-ms'='50')"))

    windows = ray.get([a.insert_many.remote(table, w, N_INSERTS) for w, a in enumerate(sessions)],
                      timeout=900)
    # The three insert loops really overlapped in time.
    assert max(b for b, _ in windows) < min(e for _, e in windows)

    ray.get(first.sql.remote(f"REFRESH TABLE {table}"))  # see the other sessions' commits
    rows = ray.get(first.sql.remote(f"SELECT worker, i, tag FROM {table}"))
    expected = {(w, i, f"w{w}-{i}") for w in range(N_SESSIONS) for i in range(N_INSERTS)}
    assert len(rows) == N_SESSIONS * N_INSERTS
    assert set(rows) == expected
    snapshots = ray.get(first.sql.remote(
        f"SELECT summary['spark.app.id'] FROM {table}.snapshots WHERE operation = 'append'"))
    assert len(snapshots) == N_SESSIONS * N_INSERTS
    assert len({app for (app,) in snapshots}) == N_SESSIONS  # one Spark app per session


@pytest.mark.spark
def test_commit_properties_reach_the_merge_snapshot(ray_instance, sessions):
    ray = ray_instance
    table = f"demo.db.tagged_{uuid.uuid4().hex[:8]}"
    actor = sessions[1]
    ray.get(actor.sql.remote("CREATE NAMESPACE IF NOT EXISTS demo.db"))
    ray.get(actor.sql.remote(f"CREATE TABLE {table} (id INT, v STRING) USING iceberg"))
    ray.get(actor.sql.remote(f"INSERT INTO {table} VALUES (1, 'old'), (2, 'keep')"))

    tags = {"backfill.id": "bf-1", "backfill.partition": "2024-01"}
    ray.get(actor.tagged_merge.remote(table, tags))

    snaps = ray.get(actor.sql.remote(
        f"SELECT operation, summary FROM {table}.snapshots ORDER BY committed_at"))
    assert [op for op, _ in snaps] == ["append", "overwrite"]
    append_summary, merge_summary = snaps[0][1], snaps[1][1]
    assert {k: merge_summary.get(k) for k in tags} == tags
    assert not set(tags) & set(append_summary)
    assert ray.get(actor.sql.remote(f"SELECT id, v FROM {table} ORDER BY id")) == [
        (1, "new"), (2, "keep")]

    # The thread-local is cleared afterwards: a plain commit carries no tags.
    ray.get(actor.sql.remote(f"INSERT INTO {table} VALUES (3, 'later')"))
    (last,) = ray.get(actor.sql.remote(
        f"SELECT summary FROM {table}.snapshots ORDER BY committed_at DESC LIMIT 1"))
    assert not set(tags) & set(last[0])


@pytest.mark.spark
def test_errors_inside_commit_properties_keep_the_spark_message(ray_instance, sessions):
    kind, message = ray_instance.get(sessions[2].failing_merge.remote())
    assert kind == "AnalysisException"
    assert "TABLE_OR_VIEW_NOT_FOUND" in message and "no_such_table" in message


@pytest.mark.spark
def test_a_missing_table_is_a_permanent_java_failure(ray_instance, sessions):
    error, chain = ray_instance.get(sessions[0].classify_failure.remote(
        "SELECT * FROM no_such_table_xyz"))
    assert isinstance(error, PermanentError), (error, chain)
    assert "org.apache.spark.sql.AnalysisException" in chain
    assert "no_such_table_xyz" in str(error)
