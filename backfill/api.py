"""The Python API under the names the original description promised.

Thin, typed wrappers over the operations, for code that runs on the Ray cluster head
(or anywhere the catalog and Ray are reachable). One catalog connection per processor;
every call validates before it writes, exactly like the CLI. Import it from the package:
``from backfill import IcebergBackfillProcessor, load_config``.

Example::

    from backfill import BatchBackfillOrchestrator, IcebergBackfillProcessor, load_config

    processor = IcebergBackfillProcessor(load_config("backfill.toml"))
    result = BatchBackfillOrchestrator(processor).run_backfill("bf-001", backfill_month="2023-12")
    print("\\n".join(result.summary_lines()))

The seed's forms work too (``backfill.seed`` holds its module names): a processor built
from a Spark session (``IcebergBackfillProcessor(spark=..., target_table=...,
history_columns=...)``) reads its catalog from that session's ``spark.sql.catalog.<name>.*``
settings, and ``create_spark_session()`` builds a local session carrying the tool's own
catalog. Calls that take no configuration read the TOML file named by
``$ICEBERG_BACKFILL_CONFIG`` (the built-in defaults when it is unset).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cluster.catalog
from backfill.config import CatalogConfig, Config, HistoryColumn, load_config, with_overrides
from backfill.core.identifiers import split_table_name
from backfill.core.months import is_month
from backfill.core.results import RunResult
from backfill.errors import ConfigError, EnvironmentProblem, InputError, NothingRecorded
from backfill.iceberg.tables import MonthFilter
from backfill.ops import report
from backfill.ops.cleanup import CleanupResult, cleanup_audits
from backfill.ops.prepare import prepare
from backfill.ops.run import execute
from backfill.ops.status import load_audit_rows
from backfill.ops.stop_signal import StopSignal
from backfill.ops.verify import VerifyReport
from backfill.ops.verify import verify_backfill as _verify
from backfill.prepared import PreparedRun
from backfill.sql.script import render_script
from cluster.jars import iceberg_runtime_jar
from cluster.java import find_java
from cluster.metastore import EmbeddedMetastore
from cluster.spark_session import spark_conf

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyspark.sql import SparkSession

    from cluster.catalog import ResolvedCatalog

Progress = Callable[[str], None]

#: Environment variable naming the TOML configuration of calls that take none.
CONFIG_ENV = "ICEBERG_BACKFILL_CONFIG"
#: Spark classes that register an Iceberg catalog (``spark.sql.catalog.<name> = ...``).
ICEBERG_SPARK_CATALOGS = frozenset({cluster.catalog.SPARK_CATALOG_CLASS,
                                    "org.apache.iceberg.spark.SparkSessionCatalog"})
#: Catalog settings that only shape one Spark session; never passed on to actors or pyiceberg.
SESSION_ONLY_KEYS = frozenset({"default-namespace", "cache-enabled"})
SESSION_APP_NAME = "iceberg-backfill"
_CATALOG_KEY = re.compile(r"spark\.sql\.catalog\.([^.]+)")
_PASS_CONFIG = ("pass config=load_config('backfill.toml') (its [catalog] section names the catalog's type "
                "and properties) instead of spark=")


# ---------------------------------------------------------------------------- configuration


def default_config() -> Config:
    """The configuration of calls given none: the file named by $ICEBERG_BACKFILL_CONFIG, else defaults.

    The seed's functions take no configuration (``create_spark_session()``,
    ``generate_sql_script(target_table=...)``); one environment variable points them all
    at the same file the CLI reads with ``--config``.
    """
    return load_config(os.environ.get(CONFIG_ENV) or None).validated()


def _as_config(config: Config | str | Path | None) -> Config:
    if isinstance(config, Config):
        return config.validated()
    return load_config(config).validated() if config is not None else default_config()


# ---------------------------------------------------------------------------- Spark sessions


def session_settings(cfg: Config, resolved: ResolvedCatalog, jar: Path, extra: Mapping[str, str]) -> dict[str, str]:
    """Settings of a local session on the tool's catalog: those of every partition actor, plus
    the catalog and the target's namespace as defaults, so that unqualified SQL such as the
    seed's ``INSERT INTO backfill_staging ...`` reaches the tool's tables, and no table cache."""
    settings = spark_conf(resolved.spark_conf(), cfg.spark, jar)
    _, namespace, _ = cfg.table_parts("target")
    settings["spark.sql.defaultCatalog"] = resolved.name
    settings[f"spark.sql.catalog.{resolved.name}.default-namespace"] = namespace
    # every query sees the commits of the runs going on (the seed watches backfill_audit from
    # its session); the partition actors keep Iceberg's table cache, which their MERGEs need
    settings[f"spark.sql.catalog.{resolved.name}.cache-enabled"] = "false"
    settings.update({str(k): str(v) for k, v in extra.items()})
    return settings


def create_spark_session(config: Config | str | Path | None = None, conf: Mapping[str, str] | None = None,
                         master: str = "local[2]") -> SparkSession:
    """A local pyspark session (on this machine, not on Ray) registered with the tool's catalog.

    For the seed's snippets, ad-hoc SQL and staging rows with ``INSERT``: the runs
    themselves still happen on Ray partition actors. ``config`` is a Config or a TOML path
    (default: $ICEBERG_BACKFILL_CONFIG); ``conf`` adds Spark settings (the seed's
    ``SPARK_CONFIGS``). Starts the embedded catalog service when the catalog is embedded.
    """
    from pyspark.sql import SparkSession

    cfg = _as_config(config)
    resolved = cluster.catalog.resolve_catalog(cfg.catalog)
    find_java()
    settings = session_settings(cfg, resolved, iceberg_runtime_jar(cfg.spark.iceberg_jar), conf or {})
    _refuse_foreign_session(SparkSession.getActiveSession(), settings, resolved.name)
    builder = SparkSession.builder.master(master).appName(SESSION_APP_NAME)
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def _refuse_foreign_session(active: SparkSession | None, settings: Mapping[str, str], name: str) -> None:
    """``getOrCreate`` would hand back a running session as is: refuse one that lacks the catalog."""
    if active is None:
        return
    have = spark_settings(active)
    prefix = f"spark.sql.catalog.{name}"
    wanted = {k: v for k, v in settings.items() if k == "spark.jars" or k == prefix or k.startswith(prefix + ".")}
    if any(have.get(k) != v for k, v in wanted.items()):
        raise EnvironmentProblem(
            f"a Spark session without the tool's catalog {name!r} (or its Iceberg jar) already runs in this "
            "process, and Spark cannot add a catalog jar to a running session: call spark.stop() before "
            "create_spark_session(), or pass the catalog's settings when you build your own session")


def spark_settings(spark: SparkSession) -> dict[str, str]:
    """Every setting the session was started with (its SparkConf)."""
    try:
        pairs = spark.sparkContext.getConf().getAll()
    except AttributeError:
        raise ConfigError(f"spark= must be a pyspark SparkSession, got {type(spark).__name__}") from None
    return {str(k): str(v) for k, v in pairs}


def iceberg_catalog_names(settings: Mapping[str, str]) -> list[str]:
    """Names of the Iceberg catalogs a session's settings register."""
    return sorted(m.group(1) for k, v in settings.items()
                  if (m := _CATALOG_KEY.fullmatch(k)) and v in ICEBERG_SPARK_CATALOGS)


def catalog_from_spark_conf(settings: Mapping[str, str], name: str | None = None) -> CatalogConfig:
    """The CatalogConfig of an Iceberg catalog registered in Spark settings.

    ``name`` (the catalog part of a target table) or else the session's default catalog,
    else its only Iceberg catalog. A hive catalog served by this tool's embedded metastore
    becomes ``embedded`` again (pyiceberg needs its Hive 2 settings, and the service is
    restarted on demand). Refuses, naming what to pass instead, a catalog the partition
    actors and pyiceberg could not open from these settings alone.
    """
    names = iceberg_catalog_names(settings)
    chosen = name or _default_catalog(settings, names)
    if chosen not in names:
        raise ConfigError(
            f"the Spark session has no Iceberg catalog {chosen!r} (no spark.sql.catalog.{chosen} = "
            f"{cluster.catalog.SPARK_CATALOG_CLASS}); its Iceberg catalogs: {', '.join(names) or 'none'}. "
            f"Name one of them in target_table ('<catalog>.<namespace>.<table>'), or {_PASS_CONFIG}")
    prefix = f"spark.sql.catalog.{chosen}."
    props = {k[len(prefix):]: v for k, v in settings.items()
             if k.startswith(prefix) and k[len(prefix):] not in SESSION_ONLY_KEYS}
    kind = props.pop("type", None) or _impl_type(props.get("catalog-impl"), chosen)
    warehouse = props.pop("warehouse", "")
    local = _local_path(warehouse)
    if kind == "hive" and local is not None and _is_embedded(local, props.get("uri")):
        props.pop("uri", None)
        return CatalogConfig(name=chosen, type="embedded", warehouse=str(local), properties=props)
    if warehouse:
        props["warehouse"] = warehouse
    return CatalogConfig(name=chosen, type=kind, warehouse=warehouse, properties=props)


def _default_catalog(settings: Mapping[str, str], names: Sequence[str]) -> str:
    default = settings.get("spark.sql.defaultCatalog")
    if default in names:
        return str(default)
    if len(names) == 1:
        return names[0]
    raise ConfigError(
        f"the Spark session registers {len(names)} Iceberg catalogs ({', '.join(names) or 'none'}) and none of "
        f"them is its default catalog: name one in target_table ('<catalog>.<namespace>.<table>'), or {_PASS_CONFIG}")


def _impl_type(impl: str | None, name: str) -> str:
    """The catalog type of a ``catalog-impl`` catalog, for the kinds pyiceberg can open too."""
    if impl == cluster.catalog.GLUE_CATALOG_IMPL:
        return "glue"
    what = f"catalog-impl {impl}" if impl else "no type and no catalog-impl (Iceberg then guesses from Hadoop settings)"
    raise ConfigError(f"Iceberg catalog {name!r} of the Spark session has {what}: the partition actors and "
                      f"pyiceberg cannot open it from the session's settings; {_PASS_CONFIG}")


def _local_path(warehouse: str) -> Path | None:
    if not warehouse or ("://" in warehouse and not warehouse.startswith("file:")):
        return None
    return CatalogConfig(warehouse=warehouse).warehouse_path


def _is_embedded(warehouse: Path, uri: str | None) -> bool:
    """True when ``uri`` is this tool's embedded metastore of ``warehouse`` (or it is stopped)."""
    metastore = EmbeddedMetastore(warehouse)
    if not metastore.state_dir.is_dir():
        return False
    return not metastore.is_running() or metastore.uri == uri


def catalog_from_session(spark: SparkSession, name: str | None = None) -> CatalogConfig:
    """The catalog settings a session carries (see :func:`catalog_from_spark_conf`)."""
    return catalog_from_spark_conf(spark_settings(spark), name)


# ---------------------------------------------------------------------------- processor


def processor_config(config: Config | None, spark: SparkSession | None, target_table: str | None = None,
                     history_columns: Sequence[HistoryColumn] | None = None, staging_table: str | None = None,
                     audit_table: str | None = None) -> Config:
    """The Config of a processor: ``config`` (else :func:`default_config`) with the given tables,
    and with ``spark``, the catalog read from that session.

    The catalog is taken from one place only: a session and a configuration together
    could name two different catalogs, so they are refused together.
    """
    if config is not None and spark is not None:
        raise ConfigError(
            "pass config= or spark=, not both: the processor takes its catalog from one place, the "
            "[catalog] section of config= or the spark.sql.catalog.<name>.* settings of spark=. Pass "
            "config= alone to set other options too: runs happen on Ray actors, not in your session")
    base = with_overrides(config if config is not None else default_config(),
                          tables__target_table=target_table, tables__staging_table=staging_table,
                          tables__audit_table=audit_table,
                          tables__history_columns=None if history_columns is None else tuple(history_columns))
    if spark is not None:
        parts = split_table_name(base.tables.target_table, "target table")
        base = dataclasses.replace(base, catalog=catalog_from_session(spark, parts[0] if len(parts) == 3 else None))
    return base.validated()


class IcebergBackfillProcessor:
    """Holds a validated configuration and its catalog connection (pyiceberg, no JVM).

    ``IcebergBackfillProcessor(config)``, or the seed's
    ``IcebergBackfillProcessor(spark=spark, target_table=..., history_columns=...)``: then the
    catalog is read from the session's settings (refused, saying what to pass, when the
    session has no Iceberg catalog the actors can open) and the rest from
    $ICEBERG_BACKFILL_CONFIG or the defaults. The session itself runs nothing: MERGEs run
    on Ray partition actors, metadata is read through pyiceberg.
    """

    def __init__(self, config: Config | None = None, *, spark: SparkSession | None = None,
                 target_table: str | None = None, history_columns: Sequence[HistoryColumn] | None = None,
                 staging_table: str | None = None, audit_table: str | None = None) -> None:
        self.spark = spark
        self.config = processor_config(config, spark, target_table, history_columns, staging_table, audit_table)
        self.resolved_catalog = cluster.catalog.resolve_catalog(self.config.catalog)
        self.catalog: Catalog = cluster.catalog.load_pyiceberg_catalog(self.resolved_catalog)

    def prepare(self, backfill_ids: Sequence[str], backfill_month: MonthFilter = None,
                resume_from: str | None = None, *, defer_array_check: bool = False) -> PreparedRun:
        """Validate and plan (no write). ``backfill_month``: one month, or ``{id: month or None}``.
        ``defer_array_check``: see :func:`backfill.ops.prepare.prepare` (a run passes True)."""
        return prepare(self.config, self.catalog, backfill_ids, backfill_month, resume_from,
                       defer_array_check=defer_array_check)

    def run(self, backfill_ids: Sequence[str], backfill_month: MonthFilter = None,
            resume_from: str | None = None, progress: Progress | None = None) -> RunResult:
        """Validate, plan and apply on Ray partition actors."""
        with StopSignal() as stop:  # a stop while planning counts too
            prepared = self.prepare(backfill_ids, backfill_month, resume_from,
                                    defer_array_check=True)  # reported before it publishes
            return execute(prepared, self.resolved_catalog, self.catalog, progress, stop)


@dataclass
class BatchBackfillOrchestrator:
    """Runs backfills with the processor's configuration (retries, checkpoints, resume)."""

    processor: IcebergBackfillProcessor
    progress: Progress | None = field(default=None)

    def run_backfill(self, backfill_id: str, backfill_month: str | None = None,
                     resume_from: str | None = None) -> RunResult:
        return self.processor.run([backfill_id], backfill_month, resume_from, self.progress)


def run_backfill(config: Config, backfill_ids: Sequence[str], backfill_month: str | None = None,
                 resume_from: str | None = None, progress: Progress | None = None) -> RunResult:
    """Validate, plan and run a backfill end to end with a configuration (no processor kept)."""
    return IcebergBackfillProcessor(config).run(backfill_ids, backfill_month, resume_from, progress)


def months_by_id(backfills: Sequence[Mapping[str, str]]) -> dict[str, str | None]:
    """``{backfill_id: backfill_month or None}`` of the items of :func:`run_parallel_backfills`.

    An unknown key is refused rather than ignored (a misspelt ``backfill_month`` would
    silently apply every month), and so is one id listed with two different months.
    """
    if not backfills:
        raise InputError("run_parallel_backfills needs at least one backfill")
    out: dict[str, str | None] = {}
    for item in backfills:
        unknown = sorted(set(item) - {"backfill_id", "backfill_month"})
        if unknown or "backfill_id" not in item:
            raise InputError(f"backfill {dict(item)!r} must have 'backfill_id' and may have 'backfill_month'"
                             + (f"; unknown key(s) {unknown}" if unknown else ""))
        bid, month = item["backfill_id"], item.get("backfill_month")
        if bid in out and out[bid] != month:
            raise InputError(f"backfill id {bid!r} is listed with two months ({out[bid] or 'every month'} and "
                             f"{month or 'every month'}): list it once, without backfill_month for all its months")
        out[bid] = month
    return out


def run_parallel_backfills(processor: IcebergBackfillProcessor,
                           backfills: Sequence[Mapping[str, str]]) -> RunResult:
    """Several backfills in one run: their entries are consolidated so each partition is
    rewritten once, not once per backfill. Each item has ``backfill_id`` and optionally
    ``backfill_month``, which restricts that id's entries to that month.

    Refused before any write when a per-id month would leave pending rows that the run's
    staging update marks anyway (see :func:`backfill.ops.prepare.prepare`).
    """
    months = months_by_id(backfills)
    distinct = set(months.values())
    month_filter: MonthFilter = distinct.pop() if len(distinct) == 1 else months
    return processor.run(list(months), month_filter)


# ---------------------------------------------------------------------------- reading and checking


def _processor_for(source: IcebergBackfillProcessor | SparkSession | None, spark: SparkSession | None = None,
                   target_table: str | None = None,
                   history_columns: Sequence[HistoryColumn] | None = None) -> IcebergBackfillProcessor:
    """The processor a call works with: the one given, or one built from a session (or, given
    neither, from $ICEBERG_BACKFILL_CONFIG) with the given tables. A processor together with
    tables or a session is refused: one of them would be ignored."""
    if isinstance(source, IcebergBackfillProcessor):
        if spark is not None or target_table is not None or history_columns is not None:
            raise ConfigError("pass a processor, or spark=/target_table=/history_columns= to build one, not both: "
                              "the processor already has its catalog and tables")
        return source
    if source is not None and spark is not None and source is not spark:
        raise ConfigError("two different Spark sessions were passed (as the first argument and as spark=)")
    return IcebergBackfillProcessor(spark=source if source is not None else spark, target_table=target_table,
                                    history_columns=history_columns)


def generate_backfill_report(processor: IcebergBackfillProcessor | SparkSession, backfill_id: str,
                             fmt: str = "text", timeline_png: str | Path | None = None) -> str:
    """Report of a backfill from the audit table (text, markdown or json).

    ``processor`` may be a Spark session, as in the seed (``generate_backfill_report(spark, id)``).
    """
    proc = _processor_for(processor)
    rows = load_audit_rows(proc.catalog, proc.config, backfill_id)
    if not rows:
        raise NothingRecorded(f"no audit rows for backfill id {backfill_id!r}")
    if timeline_png is not None:
        report.timeline_png(rows, timeline_png, backfill_id)
    return report.render(report.build_report(rows, backfill_id), fmt)


@dataclass(frozen=True)
class VerifyResult(VerifyReport):
    """A :class:`VerifyReport` that prints itself: the seed calls ``verify_result.show()``."""

    def show(self) -> None:
        print("\n".join(self.lines()))


def verify_backfill(processor: IcebergBackfillProcessor | SparkSession | None = None, backfill_id: str | None = None,
                    sample_accounts: Sequence[int] | None = None, *, spark: SparkSession | None = None,
                    target_table: str | None = None, backfill_month: str | None = None,
                    history_columns: Sequence[HistoryColumn] | None = None) -> VerifyResult:
    """Cell-by-cell check of a backfill (``.ok``, ``.lines()``, ``.show()``).

    The seed's form ``verify_backfill(spark=..., target_table=..., backfill_id=...,
    backfill_month=..., sample_accounts=[...])`` works. Verification compares whole
    partitions with the table before the id's first commit, so it checks every applied
    entry of the id; ``backfill_month`` does not narrow it, and the report says so.
    """
    if backfill_id is None:
        raise InputError("verify_backfill needs backfill_id")
    if backfill_month is not None and not is_month(backfill_month):
        raise InputError(f"backfill_month {backfill_month!r} is not a month of the form 'YYYY-MM'")
    proc = _processor_for(processor, spark, target_table, history_columns)
    found = _verify(proc.config, proc.catalog, [backfill_id], sample_accounts)
    notes = found.notes
    if backfill_month is not None:
        notes += (f"backfill_month {backfill_month}: verify compares whole partitions, so every applied entry "
                  f"of {backfill_id} was checked, not only those of {backfill_month}",)
    return VerifyResult(**{f.name: getattr(found, f.name) for f in dataclasses.fields(found)} | {"notes": notes})


def cleanup_old_audits(processor: IcebergBackfillProcessor | SparkSession, days_to_keep: int = 90,
                       dry_run: bool = False) -> CleanupResult:
    """Delete (or count, with ``dry_run``) audit rows older than ``days_to_keep`` days.

    ``processor`` may be a Spark session, as in the seed (``cleanup_old_audits(spark, days_to_keep=90)``).
    """
    proc = _processor_for(processor)
    return cleanup_audits(proc.catalog, proc.config, days_to_keep, dry_run=dry_run)


def generate_sql_script(processor: IcebergBackfillProcessor | SparkSession | None = None,
                        backfill_id: str | None = None, output_file: str | Path | None = None,
                        backfill_month: str | None = None, *, spark: SparkSession | None = None,
                        target_table: str | None = None,
                        history_columns: Sequence[HistoryColumn] | None = None) -> str:
    """The reviewable Spark SQL of a backfill; written to ``output_file`` when given.

    The seed's form ``generate_sql_script(target_table=..., backfill_month=..., backfill_id=...,
    history_columns=..., output_file=...)`` reads the catalog from $ICEBERG_BACKFILL_CONFIG.
    """
    if backfill_id is None:
        raise InputError("generate_sql_script needs backfill_id")
    proc = _processor_for(processor, spark, target_table, history_columns)
    script = render_script(proc.prepare([backfill_id], backfill_month))
    if output_file is not None:
        Path(output_file).write_text(script)
    return script
