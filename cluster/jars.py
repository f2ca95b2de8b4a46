"""Locate the Iceberg Spark runtime jar that every RayDP session puts on ``spark.jars``.

Apache does not publish the Iceberg Spark runtime on PyPI. The pinned wheel
``snowpark-connect-deps-iceberg==1.0.2`` carries the complete
``iceberg-spark-runtime-3.5_2.12-1.10.2.jar``, so a plain ``pip install`` is enough and
no Maven access is needed. pyspark 3.5 is built for Scala 2.12: the 2.13 jar that the
same wheel also ships would fail at class-load time, so only ``_2.12`` is accepted.
Version 1.0.3 of that wheel ships a jar without Iceberg's shaded Jackson, which only
fails on the first catalog call; we check for it up front to fail early and clearly.
"""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

from backfill.errors import EnvironmentProblem

JAR_PACKAGE = "snowpark_connect_deps_iceberg"
JAR_PACKAGE_PIN = "snowpark-connect-deps-iceberg==1.0.2"
JAR_GLOB = "iceberg-spark-runtime-3.5_2.12-*.jar"
#: A class the broken 1.0.3 wheel's jar lacks (NoClassDefFoundError at first use).
SENTINEL_CLASS = "org/apache/iceberg/shaded/com/fasterxml/jackson/core/JsonFactoryBuilder.class"

_HOW_TO_FIX = (
    f"install it with `pip install {JAR_PACKAGE_PIN}` or pass --iceberg-jar PATH "
    "(an iceberg-spark-runtime-3.5_2.12 jar, e.g. from Maven Central)"
)


def iceberg_runtime_jar(override: str | Path | None = None) -> Path:
    """Absolute path of a usable iceberg-spark-runtime-3.5_2.12 jar.

    ``override`` (the ``--iceberg-jar`` option / ``SparkConfig.iceberg_jar``) wins over
    the jar found in the installed wheel. Raises EnvironmentProblem saying how to fix it
    when no jar is found or the jar is known to be broken.
    """
    if override:
        jar = Path(override).expanduser().resolve()
        if not jar.is_file():
            raise EnvironmentProblem(
                f"Iceberg runtime jar {str(jar)!r} does not exist; {_HOW_TO_FIX}"
            )
    else:
        jar = _jar_from_wheel()
    check_runtime_jar(jar)
    return jar


def _jar_from_wheel() -> Path:
    spec = importlib.util.find_spec(JAR_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EnvironmentProblem(f"the Iceberg Spark runtime jar was not found: {_HOW_TO_FIX}")
    candidates: list[Path] = []
    for location in spec.submodule_search_locations:
        candidates.extend(sorted((Path(location) / "jars").glob(JAR_GLOB)))
    if not candidates:
        raise EnvironmentProblem(
            f"package {JAR_PACKAGE} is installed but holds no {JAR_GLOB}; {_HOW_TO_FIX}"
        )
    return candidates[-1].resolve()


def check_runtime_jar(jar: Path) -> None:
    """Fail early (EnvironmentProblem) on a jar that is unreadable or lacks shaded Jackson."""
    try:
        with zipfile.ZipFile(jar) as zf:
            zf.getinfo(SENTINEL_CLASS)
    except KeyError:
        raise EnvironmentProblem(
            f"Iceberg runtime jar {str(jar)!r} lacks {SENTINEL_CLASS} (Iceberg's shaded "
            "Jackson); snowpark-connect-deps-iceberg 1.0.3 is known to be broken this way. "
            f"To fix it, {_HOW_TO_FIX}"
        ) from None
    except (OSError, zipfile.BadZipFile) as exc:
        raise EnvironmentProblem(
            f"Iceberg runtime jar {str(jar)!r} cannot be read ({exc}); {_HOW_TO_FIX}"
        ) from None
