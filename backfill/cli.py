"""Command line: ``iceberg-backfill`` / ``python -m backfill``.

Every command has --help, defaults that work on the embedded demo stack, and exit codes:
0 success; 2 bad option or config; 3 bad staged input; 4 table problem; 5 environment
(Java, jar, catalog service); 6 partitions failed after retries; 7 stopped by SIGTERM or
SIGINT before every partition ran (after 6 and 7, rerun the same command to resume).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from typing import Any, Sequence

from backfill.config import Config, load_config
from backfill.errors import BackfillError, ConfigError
from backfill.stop_signal import StopSignal

log = logging.getLogger("backfill")


#: Modules that add their own sub-commands: each has ``register(subparsers)``.
COMMAND_MODULES: tuple[str, ...] = ("backfill.status", "backfill.report", "backfill.estimate",
                                     "backfill.cleanup", "backfill.sql_script", "backfill.compact")


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


#: Exit code of a run stopped by SIGTERM/SIGINT (`ray job stop`) before every partition ran.
STOPPED_EXIT_CODE = 7


def _add_layout_options(p: argparse.ArgumentParser) -> None:
    """How a new target table is created (commands that create one)."""
    p.add_argument("--write-mode", choices=["merge-on-read", "copy-on-write"],
                   help="write mode of a new target (default merge-on-read; compact later with `compact`)")
    p.add_argument("--format-version", type=int, choices=[2, 3],
                   help="Iceberg format of a new target (default 2; 3 = deletion vectors)")


def check_option_values(args: argparse.Namespace) -> None:
    """Reject malformed ids, months and account lists before any catalog or Ray is touched.

    The same checks run again where the values are used (driver, planner, SQL builders);
    doing them first means a typo never starts a catalog service or a Ray instance.
    """
    from backfill.errors import InputError
    from backfill.identifiers import check_backfill_id
    from backfill.months import is_month

    ids = getattr(args, "backfill_id", None)
    for bid in ([ids] if isinstance(ids, str) else ids or []):
        check_backfill_id(bid)
    month = getattr(args, "backfill_month", None)
    if month is not None and not is_month(month):
        raise InputError(f"--backfill-month {month!r} is not a month of the form 'YYYY-MM'")
    first = getattr(args, "first_month", None)
    if first is not None and not is_month(first):
        raise ConfigError(f"--first-month {first!r} is not a month of the form 'YYYY-MM'")
    resume = getattr(args, "resume_from", None)
    if resume is not None and not is_month(resume):
        raise ConfigError(f"--resume-from {resume!r} is not a month of the form 'YYYY-MM'")
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
    props = {"uri": args.catalog_uri} if getattr(args, "catalog_uri", None) else None
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
        spark__iceberg_jar=getattr(args, "iceberg_jar", None),
    )
    if props:
        import dataclasses

        cfg = dataclasses.replace(cfg, catalog=dataclasses.replace(
            cfg.catalog, properties={**cfg.catalog.properties, **props}))
    return cfg.validated()


def catalog_from_config(cfg: Config) -> tuple[Any, Any]:
    """(ResolvedCatalog, pyiceberg catalog); starts the embedded service if needed."""
    from cluster.catalog import load_pyiceberg_catalog, resolve_catalog

    resolved = resolve_catalog(cfg.catalog)
    return resolved, load_pyiceberg_catalog(resolved)


# ------------------------------------------------------------------------ commands


def cmd_setup(args: argparse.Namespace) -> int:
    from backfill.sample_data import SampleSpec
    from backfill.setup import setup_tables

    cfg = config_from_args(args)
    _, catalog = catalog_from_config(cfg)
    sample = None
    if args.sample_data:
        sample = SampleSpec(accounts=args.accounts, months=args.months, first_month=args.first_month,
                            staged_accounts=args.staged_accounts, backfill_id=args.backfill_id,
                            seed=args.seed)
    for line in setup_tables(catalog, cfg, sample).lines():
        print(line)
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    # a Ray run is armed before planning, so a stop at any point of it exits 7; a dry run
    # or a SQL-script run keeps the default handlers (a stop ends it at once)
    on_ray = args.method != "sql" and not args.dry_run
    with StopSignal() if on_ray else contextlib.nullcontext() as stop:
        return _run_backfill(args, cfg, stop)


def _run_backfill(args: argparse.Namespace, cfg: Config, stop: StopSignal | None) -> int:
    from backfill.driver import execute, prepare

    resolved, catalog = catalog_from_config(cfg)
    prepared = prepare(cfg, catalog, args.backfill_id, args.backfill_month, args.resume_from)
    plan = prepared.plan
    print(f"plan: {len(plan.tasks)} partition(s) for {len(plan.entries)} entries "
          f"({len(prepared.already_committed)} already committed), "
          f"{len(plan.rejected)} entries rejected, max parallel {cfg.run.max_parallel}")
    if args.dry_run:
        for t in plan.tasks:
            print(f"  {t.partition}: {len(t.entries)} entries, {t.accounts} accounts, months {t.first_month}..{t.months[-1]}")
        return 0
    if args.method == "sql":
        from backfill.sql_script import run_script

        n = run_script(prepared, resolved, progress=print)
        print(f"method sql: ran {n} statement(s) in one Spark session")
        return 0
    result = execute(prepared, resolved, catalog, progress=print, stop=stop)
    for line in result.summary_lines():
        print(line)
    if result.failed_partitions:
        print(f"error: {len(result.failed_partitions)} partition(s) failed after retries; "
              "rerun the same command to resume", file=sys.stderr)
        return 6
    if result.not_started:
        print(f"stopped: {len(result.not_started)} partition(s) not started; rerun the same command "
              "to resume", file=sys.stderr)
        return STOPPED_EXIT_CODE
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from backfill.verify import verify_backfill

    cfg = config_from_args(args)
    sample = parse_accounts(args.sample_accounts) if args.sample_accounts else None
    _, catalog = catalog_from_config(cfg)
    report = verify_backfill(cfg, catalog, args.backfill_id, sample, args.as_of)
    for line in report.lines():
        print(line)
    return 0 if report.ok else 1


def cmd_demo(args: argparse.Namespace) -> int:
    """Setup with sample data, a backfill, and a verification, on a fresh embedded stack."""
    import shutil
    from pathlib import Path

    from backfill.driver import execute, prepare
    from backfill.sample_data import SampleSpec
    from backfill.setup import setup_tables
    from backfill.verify import verify_backfill
    from cluster.metastore import EmbeddedMetastore

    wh = Path(args.warehouse or "./demo-warehouse").resolve()
    if wh.exists() and any(wh.iterdir()):
        if not (wh / ".metastore").exists():
            raise ConfigError(f"{wh} exists and was not made by the demo; pass another --warehouse")
        print(f"removing the previous demo warehouse {wh}")
        EmbeddedMetastore(wh).stop()
        shutil.rmtree(wh)
    args.warehouse = str(wh)
    cfg = config_from_args(args)
    print(f"1/4 starting the embedded catalog (Hive metastore, Derby under {wh})")
    resolved, catalog = catalog_from_config(cfg)
    spec = SampleSpec(accounts=args.accounts, months=args.months, staged_accounts=args.staged_accounts)
    print(f"2/4 creating tables with sample data ({spec.accounts} accounts x {spec.months} months)")
    for line in setup_tables(catalog, cfg, spec).lines():
        print("    " + line)
    print(f"3/4 backfilling {spec.backfill_id} with up to {cfg.run.max_parallel} MERGEs at once")
    prepared = prepare(cfg, catalog, [spec.backfill_id])
    result = execute(prepared, resolved, catalog, progress=lambda line: print("    " + line))
    for line in result.summary_lines():
        print("  " + line)
    print("4/4 verifying every backfilled partition against its snapshot before the backfill")
    report = verify_backfill(cfg, catalog, [spec.backfill_id])
    for line in report.lines():
        print("  " + line)
    if not args.keep_running:
        EmbeddedMetastore(wh).stop()
    ok = result.succeeded and report.ok
    print("demo " + ("succeeded" if ok else "FAILED"))
    return 0 if ok else 1


def cmd_catalog(args: argparse.Namespace) -> int:
    from cluster.metastore import EmbeddedMetastore

    cfg = config_from_args(args)
    if cfg.catalog.type != "embedded":
        print(f"catalog type {cfg.catalog.type!r} is not managed by this tool", file=sys.stderr)
        return 2
    ms = EmbeddedMetastore(cfg.catalog.warehouse_path)
    if args.action == "start":
        print(ms.start())
    elif args.action == "stop":
        ms.stop()
        print("stopped")
    else:
        print(f"running at {ms.uri}" if ms.is_running() else "not running")
    return 0


# ------------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iceberg-backfill",
        description="Backfill late or corrected monthly values into rolling history arrays of an "
                    "Iceberg table, one partition MERGE per Ray actor.",
        epilog="exit codes: 0 ok, 1 verify found mismatches, 2 bad option or config, 3 bad staged "
               "input, 4 table problem, 5 environment (Java, jar, catalog), 6 partitions failed after "
               "retries, 7 stopped by signal; after 6 and 7 the same command resumes",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("setup", help="create target, staging and audit tables (optionally with sample data)")
    add_common_options(p)
    p.add_argument("--sample-data", action="store_true", help="fill an empty target and stage sample entries")
    p.add_argument("--accounts", type=int, default=200, help="sample accounts (default 200)")
    p.add_argument("--months", type=int, default=24, help="sample months (default 24)")
    p.add_argument("--first-month", default="2022-01", help="first sample month (default 2022-01)")
    p.add_argument("--staged-accounts", type=int, default=40, help="accounts with staged entries (default 40)")
    p.add_argument("--backfill-id", default="bf-demo-001", help="backfill id of the sample entries")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    _add_layout_options(p)
    p.set_defaults(func=cmd_setup)

    p = sub.add_parser("backfill", help="apply pending staged entries to the target table")
    add_common_options(p)
    p.add_argument("--backfill-id", action="append", required=True,
                   help="backfill id to apply; repeat to consolidate several backfills into one run")
    p.add_argument("--backfill-month", help="only entries of this month (YYYY-MM)")
    p.add_argument("--resume-from", help="skip target partitions before this month (YYYY-MM)")
    p.add_argument("--max-parallel", type=int,
                   help="MERGEs running at once, over all actors (default 2; 1 on a hadoop catalog)")
    p.add_argument("--partitions-per-actor", type=int,
                   help="MERGEs one actor runs at once in its Spark session (default 2)")
    p.add_argument("--partitions-per-merge", type=int,
                   help="partitions applied by one MERGE and one commit (default 12; 1 = one per partition)")
    p.add_argument("--retries", type=int, help="extra attempts per partition on transient failure (default 3)")
    p.add_argument("--order", choices=["newest", "oldest"], help="partition order (default newest)")
    p.add_argument("--ray-address", help="Ray cluster address (default: RAY_ADDRESS or a local instance)")
    p.add_argument("--iceberg-jar", help="path to iceberg-spark-runtime-3.5_2.12 jar (default: bundled)")
    p.add_argument("--method", choices=["merge", "sql"], default="merge",
                   help="merge: partition actors (default); sql: run the generate-sql script in one session")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit without writing")
    p.set_defaults(func=cmd_backfill)

    p = sub.add_parser("verify", help="check a backfill cell by cell against the table before it")
    add_common_options(p)
    p.add_argument("--backfill-id", action="append", required=True, help="backfill id (repeatable)")
    p.add_argument("--sample-accounts", help="comma-separated accounts to check (default: all)")
    p.add_argument("--as-of", type=int, help="snapshot id to check instead of the current one")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("demo", help="fresh embedded stack: setup with sample data, backfill, verify")
    add_common_options(p)
    p.add_argument("--accounts", type=int, default=200, help="sample accounts (default 200)")
    p.add_argument("--months", type=int, default=24, help="sample months (default 24)")
    p.add_argument("--staged-accounts", type=int, default=40, help="accounts with staged entries (default 40)")
    p.add_argument("--max-parallel", type=int, default=2, help="MERGEs at once (default 2)")
    p.add_argument("--keep-running", action="store_true", help="leave the catalog service running")
    _add_layout_options(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("catalog", help="start, stop or check the embedded catalog service")
    add_common_options(p)
    p.add_argument("action", choices=["start", "stop", "status"])
    p.set_defaults(func=cmd_catalog)

    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except BackfillError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
