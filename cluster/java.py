"""The one place that finds the Java runtime, and the pyspark jars it runs.

Every Java process this tool starts (the embedded metastore's gateway JVM, each RayDP
session's Spark driver) needs the same ``java``: ``$JAVA_HOME/bin/java`` when JAVA_HOME
names a usable runtime, else ``java`` on PATH, which is also the order spark-submit
follows. Checking it here, before any process is spawned, turns a missing Java into one
clear EnvironmentProblem instead of a launcher stack trace.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from backfill.errors import EnvironmentProblem

_JAVA_HELP = (
    "Install a Java 17 runtime (Debian/Ubuntu: `apt-get install openjdk-17-jre-headless`; "
    "macOS: `brew install openjdk@17`) and put `java` on PATH or set JAVA_HOME"
)


def find_java() -> str:
    """Path of the ``java`` executable: ``$JAVA_HOME/bin/java`` first, else ``java`` on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if found:
        return found
    where = f" (JAVA_HOME={java_home!r} has no bin/java)" if java_home else ""
    raise EnvironmentProblem(f"Java was not found{where}: {_JAVA_HELP}")


def java_home_of(java: str) -> str:
    """The JAVA_HOME that holds the executable ``java`` (``<home>/bin/java``, links resolved)."""
    return str(Path(os.path.realpath(java)).parent.parent)


def pyspark_jars_dir() -> Path:
    """pyspark's ``jars`` folder, which holds the Hive 2.3.9 metastore, Derby and DataNucleus.

    Found without importing pyspark (a slow import the supervisor does not otherwise need).
    """
    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.submodule_search_locations:  # pragma: no cover - hard dependency
        raise EnvironmentProblem("pyspark is not installed: `pip install pyspark==3.5.7`")
    jars = Path(next(iter(spec.submodule_search_locations))).resolve() / "jars"
    if not any(jars.glob("hive-metastore-*.jar")):
        raise EnvironmentProblem(
            f"{jars} holds no hive-metastore jar: reinstall pyspark (`pip install "
            "--force-reinstall pyspark==3.5.7`); the embedded catalog needs its Hive jars"
        )
    return jars
