"""One Spark session per partition actor, RayDP (Spark on Ray) or local, plus Iceberg commit tagging.

Why the shape: RayDP allows one session per process, so each partition actor calls
``start_spark`` once and ``stop_spark`` when done. Several actors of one Ray job may hold
sessions at the same time; ``cluster.raydp_namespace`` keeps their JVM app masters apart
and ``start_spark`` gives every session a unique app name (RayDP names its master actor
after it). A local session (``[spark] engine``) runs its tasks in the actor's own Spark
JVM instead: one JVM where RayDP starts three, for a run alone on one machine.
pyspark and raydp are imported inside the functions so that the domain package imports,
and its unit tests run, without Java.

``run_with_commit_properties`` is how a MERGE's Iceberg snapshot records which backfill,
run and partition wrote it: Iceberg 1.10 on Spark 3.5 has no SQL-level snapshot
properties, but ``CommitMetadata.withCommitProperties`` sets a thread-local that both
write modes copy into the snapshot summary. That is what makes resume exactly-once: a
partition whose tagged snapshot exists is already done.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from backfill.config import ENGINE_LOCAL, ENGINE_RAYDP, SparkConfig
from backfill.core.names import ICEBERG_EXTENSIONS
from backfill.core.results import SparkProgress
from backfill.core.sizing import MIB_PER_CORE, memory_mib
from backfill.errors import EnvironmentProblem
from cluster import raydp_namespace
from cluster.java import find_java

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)
T = TypeVar("T")

COMMIT_METADATA_CLASS = "org.apache.iceberg.spark.CommitMetadata"
_CATALOG_KEY = re.compile(r"spark\.sql\.catalog\.([^.]+)")

#: Defaults sized for small clusters (one partition's MERGE per session); user conf wins.
SMALL_CLUSTER_DEFAULTS: Mapping[str, str] = {
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.adaptive.coalescePartitions.enabled": "true",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
}

#: RayDP's docs ask for these on Java 17. Not set by default: Spark 3.5's launcher and
#: SparkContext.supplementJavaModuleOptions already add JavaModuleOptions to driver and
#: executors, and Iceberg MERGE runs here pass without them.
#: Add them (driver, executor and spark.ray.raydp_app_master.extraJavaOptions) through
#: SparkConfig.conf if an InaccessibleObjectException ever appears.
JAVA17_ADD_OPENS = " ".join(
    f"--add-opens=java.base/{pkg}=ALL-UNNAMED"
    for pkg in ("java.lang", "java.lang.invoke", "java.lang.reflect", "java.io", "java.net",
                "java.nio", "java.util", "java.util.concurrent",
                "java.util.concurrent.atomic", "sun.nio.ch", "sun.nio.cs", "sun.security.action",
                "sun.util.calendar")
)


def spark_conf(catalog_conf: Mapping[str, str], spark: SparkConfig, jar: Path) -> dict[str, str]:
    """Spark settings for one session: Iceberg jar and extensions, catalog, defaults, user conf.

    Precedence, lowest first: small-cluster defaults, Iceberg jar and extensions, the
    catalog entries, then ``spark.conf`` (the user's explicit settings always win).
    The jar is a local path: RayDP does not ship ``spark.jars.packages`` to executors.

    Iceberg's table cache stays on (its default): with it off, a MERGE's runtime file
    filter and its scan may load two different snapshots of a table other sessions commit
    to, and Iceberg aborts with "Runtime file filtering is not possible: the table has been
    concurrently modified". Readers that must see other sessions' commits call
    :func:`refresh_tables` first.
    """
    conf: dict[str, str] = dict(SMALL_CLUSTER_DEFAULTS)
    conf["spark.jars"] = str(Path(jar).resolve())
    conf["spark.sql.extensions"] = ICEBERG_EXTENSIONS
    conf.update({str(k): str(v) for k, v in catalog_conf.items()})
    conf.update({str(k): str(v) for k, v in spark.conf.items()})
    return conf


def refresh_tables(spark: SparkSession, *quoted_names: str) -> None:
    """Drop cached metadata of tables so the next statement sees every session's commits.

    Names must already be validated and quoted (backfill.core.identifiers.quote_table).
    """
    for name in quoted_names:
        spark.sql(f"REFRESH TABLE {name}")


def unique_app_name(app_name: str) -> str:
    """``app_name`` made safe for actor and namespace names, plus a random suffix.

    RayDP names its master actor ``<app>_SPARK_MASTER``, and the app master namespace is
    derived from it, so two sessions must never share an app name.
    """
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", app_name).strip("-") or "backfill"
    return f"{base}-{uuid.uuid4().hex[:8]}"


def start_spark(app_name: str, conf: Mapping[str, str], spark: SparkConfig) -> SparkSession:
    """Start this process's Spark session of ``spark.engine`` and return it (Ray must be
    initialised for RayDP).

    ``conf`` is normally ``spark_conf(...)``. Raises EnvironmentProblem when Java is missing
    (:func:`cluster.java.find_java`: JAVA_HOME first, then PATH) or the installed RayDP is
    not the tested version.
    """
    find_java()
    if spark.executor_cores is None or spark.executor_memory is None:
        raise ValueError("the run sizes its executors (actors.runtime.sized) before a session starts")
    if spark.engine == ENGINE_LOCAL:
        return _start_local(unique_app_name(app_name), conf, spark)
    if spark.engine != ENGINE_RAYDP:
        raise ValueError(f"the run decides the engine (actors.runtime.with_engine) before a session starts, "
                         f"got {spark.engine!r}")
    raydp_namespace.install()
    import raydp

    name = unique_app_name(app_name)
    started = time.monotonic()
    session = raydp.init_spark(
        app_name=name,
        num_executors=spark.num_executors,
        executor_cores=spark.executor_cores,
        executor_memory=spark.executor_memory,
        # Recoverable Spark->Ray dataset conversion is not used; without it the Spark
        # driver JVM does not join Ray as well, which saves start-up time and memory.
        fault_tolerant_mode=False,
        configs=dict(conf),  # RayDP mutates the dict it gets
    )
    log.info("RayDP session %s started in %.1f s", name, time.monotonic() - started)
    return session


def local_settings(spark: SparkConfig, conf: Mapping[str, str]) -> dict[str, str]:
    """A local session's master and heap: the cores of its executors plus the one RayDP's
    app master would take, all as task threads of the one JVM; a heap that holds every
    executor's share plus the driver's own (unless ``spark.driver.memory`` is set)."""
    if spark.executor_cores is None or spark.executor_memory is None:
        raise ValueError("the run sizes its executors (actors.runtime.sized) before a session starts")
    threads = spark.num_executors * spark.executor_cores + 1
    heap = spark.num_executors * memory_mib(spark.executor_memory) + MIB_PER_CORE
    return {"spark.master": f"local[{threads}]", "spark.driver.memory": conf.get("spark.driver.memory", f"{heap}m")}


def _start_local(name: str, conf: Mapping[str, str], spark: SparkConfig) -> SparkSession:
    """A local-mode session in this process's own JVM (see :func:`local_settings`)."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(name)
    for key, value in {**conf, **local_settings(spark, conf)}.items():
        builder = builder.config(key, value)
    started = time.monotonic()
    session = builder.getOrCreate()
    log.info("local Spark session %s started in %.1f s", name, time.monotonic() - started)
    return session


def stop_spark(engine: str) -> None:
    """Stop this process's session of ``engine`` (RayDP: Spark driver, app master,
    executors), if any."""
    if engine == ENGINE_LOCAL:
        from pyspark import SparkContext

        active = SparkContext._active_spark_context
        if active is not None:
            active.stop()
        return
    import raydp

    raydp.stop_spark(cleanup_data=True)


class _JavaCallable:
    """A py4j proxy for java.util.concurrent.Callable that runs a Python function.

    The result and any exception stay on the Python side: Java only sees ``None``, so
    Python objects never cross py4j and the caller gets the original exception (for
    example pyspark's AnalysisException with Spark's own message), not a py4j wrapper.
    """

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._fn = fn
        self.result: Any = None
        self.error: BaseException | None = None

    def call(self) -> None:
        try:
            self.result = self._fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised by run_with_commit_properties
            self.error = exc
        return None

    class Java:
        implements = ["java.util.concurrent.Callable"]


def run_with_commit_properties(
    spark: SparkSession, properties: Mapping[str, str], fn: Callable[[], T]
) -> T:
    """Run ``fn`` (which runs Spark SQL) so its Iceberg commits carry ``properties``.

    ``fn`` runs on the calling thread via a py4j callback inside
    ``CommitMetadata.withCommitProperties``; every Iceberg snapshot it commits gets the
    given keys in its summary. ``fn``'s return value is returned and its exceptions are
    re-raised unchanged.
    """
    from py4j.java_gateway import JavaClass
    from pyspark.java_gateway import ensure_callback_server_started

    gateway, jvm = spark.sparkContext._gateway, spark.sparkContext._jvm
    if gateway is None or jvm is None:
        raise EnvironmentProblem("the Spark session has no JVM gateway: was it stopped?")
    ensure_callback_server_started(gateway)
    commit_metadata = jvm.org.apache.iceberg.spark.CommitMetadata
    if not isinstance(commit_metadata, JavaClass):
        raise EnvironmentProblem(
            f"{COMMIT_METADATA_CLASS} is not on the Spark driver's class path: "
            "is the Iceberg runtime jar in spark.jars?"
        )
    jmap = jvm.java.util.HashMap()
    for key, value in properties.items():
        jmap.put(str(key), str(value))
    task = _JavaCallable(fn)
    exception_class = jvm.java.lang.Class.forName("java.lang.Exception")
    commit_metadata.withCommitProperties(jmap, task, exception_class)
    if task.error is not None:
        raise task.error
    return task.result


@contextmanager
def job_group(spark: SparkSession, group: str) -> Iterator[None]:
    """Run the calling thread's Spark jobs under ``group``, so their progress can be found.

    Job groups are thread-local properties of the Spark context (pyspark pins each Python
    thread to one JVM thread), so two MERGEs running from two threads of one session keep
    apart. The group is cleared afterwards: a later statement of the thread must not report
    as this one.
    """
    sc = spark.sparkContext
    sc.setJobGroup(group, group, interruptOnCancel=False)
    try:
        yield
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]  # None clears it
        sc.setLocalProperty("spark.job.description", None)  # type: ignore[arg-type]


def spark_progress(spark: SparkSession, group: str) -> SparkProgress:
    """Stages and tasks done of the jobs of ``group`` so far, with the bytes and rows their
    finished tasks read (Spark's status store: no job, no query)."""
    tracker = spark.sparkContext.statusTracker()
    stage_ids: set[int] = set()
    for job_id in tracker.getJobIdsForGroup(group):
        info = tracker.getJobInfo(job_id)
        if info is not None:
            stage_ids.update(info.stageIds)
    store = spark.sparkContext._jsc.sc().statusStore()
    done = tasks_done = tasks = read = rows = 0
    for stage_id in sorted(stage_ids):
        try:
            data = store.lastStageAttempt(stage_id)
        except Exception:  # noqa: BLE001 - a stage not yet in the store has no figures yet
            continue
        done += str(data.status()) in ("COMPLETE", "SKIPPED")
        tasks_done += int(data.numCompleteTasks())
        tasks += int(data.numTasks())
        read += int(data.inputBytes())
        rows += int(data.inputRecords())
    return SparkProgress(done, len(stage_ids), tasks_done, tasks, read, rows)
