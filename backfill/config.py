"""Typed configuration: what to backfill, where the catalog is, how Spark and Ray run.

Configuration is validated once, on the driver, then shipped to actors as plain data
(frozen dataclasses pickle cleanly). It loads from a TOML file and the command line
overrides single fields. Catalog properties pass through unchanged to both Spark
(``spark.sql.catalog.<name>.<key>``) and pyiceberg (``load_catalog(name, **props)``),
so any catalog Iceberg supports can be used; ``spark_properties`` and
``pyiceberg_properties`` add keys for one side only where the two spell them differently.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from backfill.core.identifiers import check_identifier, split_table_name
from backfill.core.locations import is_local, local_path
from backfill.core.names import CHECKPOINT_DIRNAME, RAY_NAMESPACE
from backfill.core.retry import RetryPolicy
from backfill.core.secrets import redact_properties
from backfill.core.sizing import memory_mib
from backfill.errors import CatalogUnsafeError, ConfigError

_SEED_VALUE_COLUMNS = (
    "balance", "payment", "credit_limit", "available_credit", "past_due",
    "min_payment_due", "interest_charged", "fees_charged", "purchases", "cash_advances",
    "returns", "principal_paid", "interest_paid", "late_fee", "overlimit_amount",
    "statement_balance", "high_balance", "charge_off_amount", "recovery_amount",
    "collateral_value",
)

log = logging.getLogger(__name__)

#: Catalog kinds whose commits are not atomic across processes on a local file system.
NON_ATOMIC_CATALOG_TYPES = frozenset({"hadoop"})
#: Catalog kinds whose ``warehouse`` is always a location (elsewhere it may be a name).
WAREHOUSE_LOCATION_TYPES = frozenset({"embedded", "hadoop", "hive", "jdbc"})
#: ``catalog-impl`` classes that are the same non-atomic catalog under another spelling.
NON_ATOMIC_CATALOG_IMPLS = frozenset({"org.apache.iceberg.hadoop.HadoopCatalog"})

#: Longest history array column: merge_sql adds the suffix '__updates' (identifiers <= 128).
_MAX_ARRAY_COLUMN = 128 - len("__updates")
#: Columns of ``backfill_staging`` besides the value columns: a value column may not reuse one.
_STAGING_FIXED_COLUMNS = frozenset({"backfill_id", "acct", "backfill_month", "created_at", "status",
                                    "processed_at", "error"})



@dataclass(frozen=True)
class HistoryColumn:
    """One history array in the target and the staging column that feeds it."""

    array_column: str
    value_column: str


DEFAULT_HISTORY_COLUMNS: tuple[HistoryColumn, ...] = tuple(
    HistoryColumn(f"{name}_history", name) for name in _SEED_VALUE_COLUMNS
)


@dataclass(frozen=True)
class TableConfig:
    """Names and shape of the target, staging and audit tables.

    Table names are ``namespace.table`` (the Spark catalog name is added) or
    ``catalog.namespace.table`` with the configured catalog's name.
    """

    target_table: str = "db.accounts_history"
    staging_table: str = "db.backfill_staging"
    audit_table: str = "db.backfill_audit"
    account_column: str = "acct"
    month_column: str = "month_partition"
    history_columns: tuple[HistoryColumn, ...] = DEFAULT_HISTORY_COLUMNS
    window: int = 36
    buckets: int = 64
    #: How ``setup`` creates the target: merge-on-read writes only the changed rows plus
    #: delete files (~100x fewer bytes than copy-on-write in the benchmark); compact later
    #: with ``iceberg-backfill compact``. Existing tables keep their own setting.
    write_mode: str = "merge-on-read"
    #: Iceberg format of a target created by ``setup``: 2 (position delete files, read by
    #: every engine) or 3 (deletion vectors: fewer bytes, needs Iceberg >= 1.8 readers).
    format_version: int = 2


@dataclass(frozen=True)
class CatalogConfig:
    """Where the Iceberg catalog lives.

    ``type = "embedded"`` (the default) runs a Hive metastore from pyspark's jars with
    Derby under ``warehouse``; any other type is passed to Spark and pyiceberg as is.
    """

    name: str = "demo"
    type: str = "embedded"
    warehouse: str = "./warehouse"
    properties: Mapping[str, str] = field(default_factory=dict)
    spark_properties: Mapping[str, str] = field(default_factory=dict)
    pyiceberg_properties: Mapping[str, str] = field(default_factory=dict)
    #: Accept a catalog without atomic commits by running one partition at a time.
    allow_unsafe_serial: bool = False

    @property
    def warehouse_path(self) -> Path:
        """Absolute local path of the warehouse (embedded and hadoop catalogs)."""
        return local_path(self.warehouse)

    @property
    def warehouse_is_location(self) -> bool:
        """True when ``warehouse`` names a folder or URI (embedded, Hadoop, Hive and JDBC
        catalogs always; others when it is spelled as one), not a REST or Glue warehouse name."""
        return (self.type.strip().lower() in WAREHOUSE_LOCATION_TYPES or _remote(self.warehouse)
                or _looks_like_path(self.warehouse))

    def redacted_properties(self) -> dict[str, str]:
        """Properties with secret values replaced, for logs, reports and errors.

        Secret-keyed values become ``***``, and so do a password in a URL's user info
        and secret-keyed query parameters of a URL (``...?token=...``).
        """
        return redact_properties(self.properties)

    @property
    def non_atomic(self) -> bool:
        """True for a catalog whose commits are not atomic across processes (hadoop)."""
        if self.type.strip().lower() in NON_ATOMIC_CATALOG_TYPES:
            return True
        impls = {str(p.get("catalog-impl", "")).strip()
                 for p in (self.properties, self.spark_properties)}
        return bool(impls & NON_ATOMIC_CATALOG_IMPLS)


#: ``[spark] engine`` values (see :class:`SparkConfig`); the first two name a session's real kind.
ENGINE_RAYDP, ENGINE_LOCAL, ENGINE_AUTO = "raydp", "local", "auto"
SPARK_ENGINES = (ENGINE_RAYDP, ENGINE_LOCAL, ENGINE_AUTO)


@dataclass(frozen=True)
class SparkConfig:
    """Shape of each partition actor's Spark session."""

    #: Where a session's executors run: "raydp" (Spark on Ray: executors are Ray actors,
    #: on any node), "local" (Spark inside the partition actor's own JVM, on that actor's
    #: node) or "auto": local when the run starts its own Ray on this machine, where RayDP
    #: would only add JVMs on the same cores; RayDP when it joins a cluster.
    engine: str = ENGINE_AUTO
    num_executors: int = 1
    #: Cores per executor; unset: this machine's cores (a local Ray) or the cluster's free
    #: CPUs (a cluster the run connects to), shared among the run's sessions
    #: (:mod:`backfill.core.sizing`).
    executor_cores: int | None = None
    #: Heap per executor ("2g", "768m"); unset: 1 GiB per core within the free memory's share.
    executor_memory: str | None = None
    #: Path to an iceberg-spark-runtime-3.5_2.12 jar; default: the one from the pinned wheel.
    iceberg_jar: str | None = None
    conf: Mapping[str, str] = field(default_factory=dict)


#: MERGEs at once when ``[run] max_parallel`` is not set. One MERGE leaves a core idle
#: during its planning and commit; a second one in the same session (``partitions_per_actor``
#: 2) can fill it without a second Spark start-up. Measured in README "Performance".
DEFAULT_MAX_PARALLEL = 2
#: Longest keep-warm time: a day (a forgotten session holds a JVM and cluster CPUs).
MAX_KEEP_WARM_SECONDS = 86400.0


@dataclass(frozen=True)
class RunConfig:
    """How the driver schedules partitions."""

    #: MERGEs at once over all actors, as asked; unset: :data:`DEFAULT_MAX_PARALLEL`, or 1
    #: on a catalog without atomic commits (:attr:`Config.max_parallel` resolves it).
    max_parallel: int | None = None
    #: MERGEs one actor runs at once, from threads sharing its Spark session (one JVM and
    #: one set of executors for several MERGEs: less memory, no extra session start).
    partitions_per_actor: int = 2
    #: Partitions one MERGE (and one commit) applies. A MERGE costs ~2 s of planning and
    #: commit whatever its size, so small partitions share one; see README "Performance".
    partitions_per_merge: int = 12
    #: The retry budget (:class:`backfill.core.retry.RetryPolicy`), used by every retry site.
    retries: int = 3
    retry_backoff_seconds: float = 2.0
    retry_max_backoff_seconds: float = 60.0
    #: How long bookkeeping (audit appends, checkpoint calls) rides out a catalog or actor restart.
    retry_ride_out_seconds: float = 300.0
    order: str = "newest"
    ray_address: str | None = None
    actor_cpus: float = 1.0
    #: Keep the run's Spark sessions this many seconds after it for the next run to reuse
    #: (0: end them with the run). Detached on a cluster the driver connects to; on a Ray
    #: instance the driver starts they serve later runs of the same process. See
    #: :mod:`actors.warm` and ``iceberg-backfill sessions``.
    keep_warm_seconds: float = 0.0
    checkpoint_namespace: str = RAY_NAMESPACE
    #: Local folder (on the Ray head) for durable checkpoints; default: beside the warehouse.
    checkpoint_dir: str | None = None
    #: Before a run, read the rows it will rewrite and report arrays longer than the window.
    check_array_lengths: bool = True
    #: Write-audit-publish: commit to a branch of the target and move main to it in one
    #: step once every partition is committed (and verified, with --verify). False
    #: commits every MERGE to main as it ends (readers see a run part way).
    write_audit_publish: bool = True

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.retries, self.retry_backoff_seconds, self.retry_max_backoff_seconds,
                           self.retry_ride_out_seconds)


@dataclass(frozen=True)
class Config:
    """Everything one invocation needs."""

    tables: TableConfig = field(default_factory=TableConfig)
    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    spark: SparkConfig = field(default_factory=SparkConfig)
    run: RunConfig = field(default_factory=RunConfig)

    @property
    def max_parallel(self) -> int:
        """MERGEs at once: as asked, else parallel unless the catalog cannot take it.

        ``allow_unsafe_serial`` accepts a non-atomic catalog by running one partition at a
        time, whatever was asked: resolved here, so every path (CLI, API, actors) agrees.
        """
        if self.catalog.non_atomic and (self.catalog.allow_unsafe_serial or self.run.max_parallel is None):
            return 1
        return self.run.max_parallel if self.run.max_parallel is not None else DEFAULT_MAX_PARALLEL

    def checkpoint_location(self, table_location: str | None = None) -> str:
        """Where checkpoints persist, beside the data they describe.

        ``run.checkpoint_dir`` if set (a folder or an object-store URI); else under a
        warehouse given as a location (``s3://wh`` -> ``s3://wh/.backfill-checkpoints``,
        or the local warehouse folder); else, for a catalog whose warehouse is a name
        (REST, Glue), beside the target's namespace folder on its object store. Never
        inside a table's own location: orphan-file clean-up would delete it there.
        """
        if self.run.checkpoint_dir:
            return self.run.checkpoint_dir
        w = self.catalog.warehouse
        if _remote(w):
            return f"{w.rstrip('/')}/{CHECKPOINT_DIRNAME}"
        if table_location and not self.catalog.warehouse_is_location:
            return f"{table_location.rstrip('/').rsplit('/', 1)[0]}/{CHECKPOINT_DIRNAME}"
        return str(self.catalog.warehouse_path / CHECKPOINT_DIRNAME)

    def table_parts(self, which: str) -> tuple[str, str, str]:
        """(catalog, namespace, table) of ``which`` in {'target', 'staging', 'audit'}."""
        return qualify(getattr(self.tables, f"{which}_table"), self.catalog.name, f"{which} table")

    def validated(self) -> Config:
        """Return self after checking every field; raises ConfigError naming the field."""
        validate(self)
        return self


def _remote(location: str) -> bool:
    """An object-store (or other non-local) URI: ``s3://``, ``gs://``, ``abfs://``, ``hdfs://``."""
    return not is_local(location)


def _looks_like_path(warehouse: str) -> bool:
    """A warehouse written as a folder (``/x``, ``./x``, ``~/x``, ``file:``), not a catalog's warehouse name."""
    return warehouse.startswith(("/", ".", "~", "file:"))


def qualify(name: str, catalog: str, what: str) -> tuple[str, str, str]:
    """Validated (catalog, namespace, table) for a 2- or 3-part table name."""
    parts = split_table_name(name, what)
    if len(parts) == 2:
        return (catalog, parts[0], parts[1])
    if parts[0] != catalog:
        raise ConfigError(
            f"{what} {name!r} names catalog {parts[0]!r} but the configured catalog is {catalog!r}"
        )
    return (parts[0], parts[1], parts[2])


def validate(cfg: Config) -> None:
    """Check every field of ``cfg``; raises ConfigError naming the first bad one."""
    _validate_tables(cfg)
    _validate_run(cfg.run)
    s = cfg.spark
    if s.num_executors < 1 or (s.executor_cores is not None and s.executor_cores < 1):
        raise ConfigError("spark num_executors and executor_cores must be at least 1")
    if s.engine not in SPARK_ENGINES:
        raise ConfigError(f"spark engine must be one of {', '.join(SPARK_ENGINES)}, got {s.engine!r}")
    if s.executor_memory is not None:
        try:
            memory_mib(s.executor_memory)
        except ValueError as exc:
            raise ConfigError(f"spark executor_memory: {exc}") from None
    _check_catalog_safety(cfg)


def _validate_tables(cfg: Config) -> None:
    """Names go quoted into generated SQL, so they are checked as identifiers before any bound."""
    t = cfg.tables
    check_identifier(cfg.catalog.name, "catalog name")
    for which in ("target", "staging", "audit"):
        cfg.table_parts(which)
    check_identifier(t.account_column, "account column")
    check_identifier(t.month_column, "month column")
    _validate_history_columns(t)
    if not 1 <= t.window <= 1200:
        raise ConfigError(f"window must be between 1 and 1200 months, got {t.window}")
    if not 1 <= t.buckets <= 100_000:
        raise ConfigError(f"buckets must be between 1 and 100000, got {t.buckets}")
    if t.write_mode not in WRITE_MODES:
        raise ConfigError(f"write_mode must be one of {', '.join(WRITE_MODES)}, got {t.write_mode!r}")
    if t.format_version not in (2, 3):
        raise ConfigError(f"format_version must be 2 or 3, got {t.format_version!r}")


def _validate_history_columns(t: TableConfig) -> None:
    """Each array and value column once, and none that the MERGE or the staging table already uses.

    Names compare case-insensitively, as Spark resolves them.
    """
    if not t.history_columns:
        raise ConfigError("at least one history column must be configured")
    seen: set[str] = set()
    for hc in t.history_columns:
        check_identifier(hc.array_column, "history array column")
        if len(hc.array_column) > _MAX_ARRAY_COLUMN:
            # the MERGE names a helper column '<array_column>__updates', itself an identifier
            raise ConfigError(f"history array column {hc.array_column!r} is longer than "
                              f"{_MAX_ARRAY_COLUMN} characters")
        check_identifier(hc.value_column, "staging value column")
        for name in (hc.array_column.lower(), "v:" + hc.value_column.lower()):
            if name in seen:
                raise ConfigError(f"history column {name.removeprefix('v:')!r} is configured twice")
            seen.add(name)
    reserved = {t.account_column.lower(), t.month_column.lower()}
    if any(hc.array_column.lower() in reserved for hc in t.history_columns):
        raise ConfigError("a history array column cannot also be the account or month column")
    clash = [hc.value_column for hc in t.history_columns if hc.value_column.lower() in _STAGING_FIXED_COLUMNS]
    if clash:
        raise ConfigError(f"staging value column(s) {clash} clash with staging bookkeeping columns")


def _validate_run(r: RunConfig) -> None:
    """Scheduling and retry bounds, so that a typo fails here and not mid-run on the cluster."""
    if r.max_parallel is not None and r.max_parallel < 1:
        raise ConfigError(f"max_parallel must be at least 1, got {r.max_parallel}")
    if not 1 <= r.partitions_per_actor <= 16:
        raise ConfigError(f"partitions_per_actor must be between 1 and 16, got {r.partitions_per_actor}")
    if not 1 <= r.partitions_per_merge <= 1000:
        raise ConfigError(f"partitions_per_merge must be between 1 and 1000, got {r.partitions_per_merge}")
    if r.retries < 0:
        raise ConfigError(f"retries must be 0 or more, got {r.retries}")
    if min(r.retry_backoff_seconds, r.retry_max_backoff_seconds, r.retry_ride_out_seconds) < 0:
        raise ConfigError("retry_backoff_seconds, retry_max_backoff_seconds and retry_ride_out_seconds "
                          "must be 0 or more")
    if r.order not in ("newest", "oldest"):
        raise ConfigError(f"order must be 'newest' or 'oldest', got {r.order!r}")
    if not 0 <= r.keep_warm_seconds <= MAX_KEEP_WARM_SECONDS:
        raise ConfigError(f"keep_warm_seconds must be between 0 and {MAX_KEEP_WARM_SECONDS:.0f}, "
                          f"got {r.keep_warm_seconds}")
    if r.actor_cpus <= 0:
        raise ConfigError(f"actor_cpus must be positive, got {r.actor_cpus}")


def _check_catalog_safety(cfg: Config) -> None:
    """Refuse parallel MERGEs on a catalog without atomic commits: they could silently lose commits."""
    if cfg.catalog.non_atomic and cfg.max_parallel > 1:
        kind = cfg.catalog.type if cfg.catalog.type.strip().lower() in NON_ATOMIC_CATALOG_TYPES \
            else "hadoop (catalog-impl HadoopCatalog)"
        raise CatalogUnsafeError(
            f"catalog type {kind!r} has no atomic commits across processes: max_parallel "
            f"{cfg.max_parallel} (--max-parallel) would run partition MERGEs in parallel and could "
            "lose commits. To fix it, do one of: pass --max-parallel 1 (or set max_parallel = 1 "
            "under [run]); set allow_unsafe_serial = true under [catalog] in the config file to "
            "run one partition at a time whatever max_parallel says; or use a catalog with "
            "atomic commits (Hive metastore, REST, Glue, JDBC on PostgreSQL)"
        )
    if cfg.catalog.non_atomic and cfg.catalog.allow_unsafe_serial:
        log.warning("catalog %r has no atomic commits across processes: running one partition "
                    "at a time (allow_unsafe_serial = true); no other process may write to its "
                    "tables meanwhile", cfg.catalog.name)


# ---------------------------------------------------------------------------- loading


WRITE_MODES = ("merge-on-read", "copy-on-write")

#: TOML types accepted for a field annotated with each scalar type (bool is not an int here).
_SCALARS: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def _check_scalar(value: Any, annotation: str, where: str, name: str) -> None:
    """A TOML value of the wrong type fails here, naming the key, not deep inside a run."""
    kinds = [k.strip() for k in annotation.split("|")]
    if value is None and "None" in kinds:
        return
    if not all(k in _SCALARS or k == "None" for k in kinds):
        return  # containers (history columns, properties, conf) are checked where they are used
    ok = any(isinstance(value, _SCALARS[k]) and not (k != "bool" and isinstance(value, bool))
             for k in kinds if k in _SCALARS)
    if not ok:
        want = " or ".join(k for k in kinds if k != "None")
        raise ConfigError(f"[{where}] {name} must be {want}, got {value!r}")


def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in [{where}]; known: {sorted(names)}")
    for key, value in data.items():
        _check_scalar(value, str(names[key].type), where, key)
    return cls(**data)


def config_from_mapping(data: Mapping[str, Any]) -> Config:
    """Build a Config from parsed TOML (sections tables, catalog, spark, run)."""
    unknown = sorted(set(data) - {"tables", "catalog", "spark", "run"})
    if unknown:
        raise ConfigError(f"unknown section(s) {unknown}; known: catalog, run, spark, tables")
    tables = dict(data.get("tables", {}))
    if "history_columns" in tables:
        cols: list[HistoryColumn] = []
        for item in tables["history_columns"]:
            if isinstance(item, Mapping):
                cols.append(_build(HistoryColumn, item, "tables.history_columns"))
            elif isinstance(item, (list, tuple)) and len(item) == 2:
                cols.append(HistoryColumn(str(item[0]), str(item[1])))
            else:
                raise ConfigError(
                    f"history column {item!r} must be [array_column, value_column] or a table "
                    "with array_column and value_column"
                )
        tables["history_columns"] = tuple(cols)
    return Config(
        tables=_build(TableConfig, tables, "tables"),
        catalog=_build(CatalogConfig, dict(data.get("catalog", {})), "catalog"),
        spark=_build(SparkConfig, dict(data.get("spark", {})), "spark"),
        run=_build(RunConfig, dict(data.get("run", {})), "run"),
    )


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, HistoryColumn):
        return f"[{json.dumps(value.array_column)}, {json.dumps(value.value_column)}]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write {value!r} as TOML")


def config_toml(cfg: Config) -> str:
    """``cfg`` as the TOML text :func:`load_config` reads back to an equal Config: every
    option that differs from its default (drivers started as other processes, benchmarks)."""
    lines: list[str] = []
    for section in ("tables", "catalog", "spark", "run"):
        current = getattr(cfg, section)
        default = type(current)()
        changed = [(f.name, getattr(current, f.name)) for f in dataclasses.fields(current)
                   if getattr(current, f.name) != getattr(default, f.name) and getattr(current, f.name) is not None]
        if changed:
            lines.append(f"[{section}]")
            lines += [f"{name} = {_toml_value(value)}" for name, value in changed]
    return "\n".join(lines) + "\n"


def load_config(path: str | Path | None = None, **overrides: Any) -> Config:
    """Load TOML from ``path`` (optional) and apply ``section__field=value`` overrides.

    Overrides whose value is None are ignored so that unset command-line options keep
    the file's (or the default) value.
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} does not exist")
        try:
            data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {str(p)!r} is not valid TOML: {exc}") from None
    cfg = config_from_mapping(data)
    return with_overrides(cfg, **overrides)


def with_overrides(cfg: Config, **overrides: Any) -> Config:
    """Copy of ``cfg`` with ``section__field=value`` replaced (None values skipped)."""
    sections: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        section, _, name = key.partition("__")
        if not name or section not in ("tables", "catalog", "spark", "run"):
            raise ConfigError(f"override {key!r} must look like 'section__field'")
        sections.setdefault(section, {})[name] = value
    for section, values in sections.items():
        current = getattr(cfg, section)
        known = {f.name for f in dataclasses.fields(current)}
        bad = sorted(set(values) - known)
        if bad:
            raise ConfigError(f"unknown option(s) {bad} for [{section}]")
        cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(current, **values)})
    return cfg
