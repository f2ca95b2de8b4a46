"""Options shared by several commands, and turning parsed options into a configuration.

Every value a person types is checked here first (ids, months, account lists), before
any catalog service or Ray instance starts: a typo costs nothing. The same checks run
again where the values are used.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING

import cluster.catalog
from backfill.config import Config, load_config
from backfill.core.identifiers import check_backfill_id
from backfill.core.months import is_month
from backfill.errors import ConfigError, InputError

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

    from cluster.catalog import ResolvedCatalog


def add_common_options(p: argparse.ArgumentParser) -> None:
    """Options every command shares (configuration, catalog, logging)."""
    g = p.add_argument_group("configuration")
    g.add_argument("--config", help="TOML configuration file (sections tables, catalog, spark, run)")
    g.add_argument("--warehouse", help="warehouse folder of the embedded catalog (default ./warehouse)")
    g.add_argument("--catalog-type", help="embedded (default), hive, rest, glue, jdbc, hadoop, ...")
    g.add_argument("--catalog-uri", help="catalog URI (thrift://..., http://...) for non-embedded catalogs")
    g.add_argument("--catalog-name", help="Spark catalog name (default demo)")
    g.add_argument("--target-table", help="history table, [catalog.]namespace.table (default db.accounts_history)")
    g.add_argument("--staging-table", help="staging table (default db.backfill_staging)")
    g.add_argument("--audit-table", help="audit table (default db.backfill_audit)")
    g.add_argument("--window", type=int, help="history length W in months (default 36)")
    g.add_argument("--buckets", type=int, help="bucket count of the account column (default 64)")
    g.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="logging level (default INFO)")


def add_layout_options(p: argparse.ArgumentParser) -> None:
    """How a new target table is created (commands that create one)."""
    p.add_argument("--write-mode", choices=["merge-on-read", "copy-on-write"],
                   help="write mode of a new target (default merge-on-read; compact later with `compact`)")
    p.add_argument("--format-version", type=int, choices=[2, 3],
                   help="Iceberg format of a new target (default 2; 3 = deletion vectors)")


def add_request_options(p: argparse.ArgumentParser, what: str) -> None:
    """--backfill-id (repeatable) / --backfill-month / --resume-from of a planned run."""
    p.add_argument("--backfill-id", action="append", required=True,
                   help=f"backfill id; repeat to consolidate several backfills into one {what}")
    p.add_argument("--backfill-month", help="only entries of this month (YYYY-MM)")
    p.add_argument("--resume-from", help="skip target partitions before this month (YYYY-MM)")


def add_id_options(p: argparse.ArgumentParser) -> None:
    """--backfill-id / --run-id of the commands that read the audit table."""
    p.add_argument("--backfill-id", required=True, help="backfill id to show")
    p.add_argument("--run-id", help="only this run (default: every run of the backfill id)")


def check_option_values(args: argparse.Namespace) -> None:
    """Reject malformed ids, months and account lists before any catalog or Ray is touched."""
    ids = getattr(args, "backfill_id", None)
    for bid in ([ids] if isinstance(ids, str) else ids or []):
        check_backfill_id(bid)
    month = getattr(args, "backfill_month", None)
    if month is not None and not is_month(month):
        raise InputError(f"--backfill-month {month!r} is not a month of the form 'YYYY-MM'")
    for option in ("first_month", "resume_from"):
        value = getattr(args, option, None)
        if value is not None and not is_month(value):
            flag = "--" + option.replace("_", "-")
            raise ConfigError(f"{flag} {value!r} is not a month of the form 'YYYY-MM'")
    sample = getattr(args, "sample_accounts", None)
    if sample:
        parse_accounts(sample)


def parse_accounts(text: str) -> list[int]:
    """``--sample-accounts 1,2,3`` as integers; ConfigError naming the option otherwise."""
    try:
        return [int(a) for a in text.split(",") if a.strip()]
    except ValueError:
        raise ConfigError(f"--sample-accounts {text!r} must be comma-separated integers") from None


def config_from_args(args: argparse.Namespace) -> Config:
    """The validated Config of a command: file, then command-line overrides."""
    check_option_values(args)
    cfg = load_config(
        args.config,
        catalog__warehouse=args.warehouse,
        catalog__type=args.catalog_type,
        catalog__name=args.catalog_name,
        tables__target_table=args.target_table,
        tables__staging_table=args.staging_table,
        tables__audit_table=args.audit_table,
        tables__window=args.window,
        tables__buckets=args.buckets,
        tables__write_mode=getattr(args, "write_mode", None),
        tables__format_version=getattr(args, "format_version", None),
        run__max_parallel=getattr(args, "max_parallel", None),
        run__retries=getattr(args, "retries", None),
        run__partitions_per_actor=getattr(args, "partitions_per_actor", None),
        run__partitions_per_merge=getattr(args, "partitions_per_merge", None),
        run__order=getattr(args, "order", None),
        run__ray_address=getattr(args, "ray_address", None),
        run__keep_warm_seconds=getattr(args, "keep_warm", None),
        run__write_audit_publish=False if getattr(args, "no_wap", False) else None,
        spark__iceberg_jar=getattr(args, "iceberg_jar", None),
        spark__engine=getattr(args, "spark_engine", None),
    )
    if getattr(args, "catalog_uri", None):
        cfg = dataclasses.replace(cfg, catalog=dataclasses.replace(
            cfg.catalog, properties={**cfg.catalog.properties, "uri": args.catalog_uri}))
    return cfg.validated()


def catalog_from_config(cfg: Config) -> tuple[ResolvedCatalog, Catalog]:
    """(ResolvedCatalog, pyiceberg catalog); starts the embedded service if needed."""
    resolved = cluster.catalog.resolve_catalog(cfg.catalog)
    return resolved, cluster.catalog.load_pyiceberg_catalog(resolved)
