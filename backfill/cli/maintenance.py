"""Commands that look after the tables and the stack: ``compact``, ``cleanup-audits``,
``generate-sql``, ``rollback`` and the embedded ``catalog`` service."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import backfill.cli.options as options
from backfill.core.identifiers import check_backfill_id, month_literal
from backfill.errors import ConfigError, ExitCode
from backfill.iceberg import tables
from backfill.ops.cleanup import DEFAULT_DAYS_TO_KEEP, cleanup_audits
from backfill.ops.compact import backfilled_partitions, compact
from backfill.ops.prepare import prepare
from backfill.ops.rollback import rollback
from backfill.ops.sessions import warm_sessions
from backfill.sql.script import build_statements, render_script
from cluster.metastore import EmbeddedMetastore


def cmd_compact(args: argparse.Namespace) -> int:
    for p in args.partition or []:
        month_literal(p)  # a typo fails before any service starts
    for b in args.backfill_id or []:
        check_backfill_id(b)
    cfg = options.config_from_args(args)
    resolved, catalog = options.catalog_from_config(cfg)
    partitions = list(args.partition or [])
    if args.backfill_id:
        partitions += backfilled_partitions(tables.load(catalog, cfg, "target"), args.backfill_id)
    result = compact(cfg, catalog, resolved, sorted(set(partitions), reverse=True), args.dry_run,
                     progress=print)
    print("\n".join(result.lines()))
    return ExitCode.OK


def cmd_cleanup(args: argparse.Namespace) -> int:
    if args.days_to_keep < 0:  # before any catalog service is started
        raise ConfigError(f"--days-to-keep must be 0 or more, got {args.days_to_keep}")
    cfg = options.config_from_args(args)
    _, catalog = options.catalog_from_config(cfg)
    result = cleanup_audits(catalog, cfg, args.days_to_keep, args.dry_run)
    print("\n".join(result.lines()))
    return ExitCode.OK


def cmd_generate_sql(args: argparse.Namespace) -> int:
    cfg = options.config_from_args(args)
    _, catalog = options.catalog_from_config(cfg)
    prepared = prepare(cfg, catalog, args.backfill_id, args.backfill_month, args.resume_from)
    script = render_script(prepared)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(script)
        print(f"wrote {len(build_statements(prepared))} statement(s) to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(script)
    return ExitCode.OK


def cmd_rollback(args: argparse.Namespace) -> int:
    cfg = options.config_from_args(args)
    resolved, catalog = options.catalog_from_config(cfg)
    result = rollback(cfg, catalog, resolved, args.backfill_id, dry_run=args.dry_run, progress=print)
    for line in result.lines():
        print(line)
    return ExitCode.OK


def cmd_catalog(args: argparse.Namespace) -> int:
    cfg = options.config_from_args(args)
    if cfg.catalog.type != "embedded":
        raise ConfigError(f"catalog type {cfg.catalog.type!r} is not managed by this tool")
    ms = EmbeddedMetastore(cfg.catalog.warehouse_path)
    if args.action == "start":
        print(ms.start())
    elif args.action == "stop":
        ms.stop()
        print("stopped")
    else:
        print(f"running at {ms.uri}" if ms.is_running() else "not running")
    return ExitCode.OK


def cmd_sessions(args: argparse.Namespace) -> int:
    cfg = options.config_from_args(args)
    print("\n".join(warm_sessions(cfg, stop=args.stop).lines()))
    return ExitCode.OK


def register(sub: Any) -> None:
    """Add ``compact``, ``cleanup-audits``, ``generate-sql``, ``rollback`` and ``catalog``."""
    p = sub.add_parser(
        "compact", help="rewrite small data and delete files left by merge-on-read backfills, with the cost")
    options.add_common_options(p)
    p.add_argument("--backfill-id", action="append",
                   help="compact every partition this backfill committed to (repeatable)")
    p.add_argument("--partition", action="append", help="a month partition to compact, YYYY-MM (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="print the files and bytes at stake; rewrite nothing")
    p.set_defaults(func=cmd_compact)

    p = sub.add_parser("cleanup-audits", help="delete audit rows older than --days-to-keep days")
    options.add_common_options(p)
    p.add_argument("--days-to-keep", type=int, default=DEFAULT_DAYS_TO_KEEP,
                   help=f"keep audit rows of the last N days (default {DEFAULT_DAYS_TO_KEEP})")
    p.add_argument("--dry-run", action="store_true",
                   help="print how many rows per backfill id would be removed; delete nothing")
    p.set_defaults(func=cmd_cleanup)

    p = sub.add_parser("generate-sql", help="write the Spark SQL of a backfill for review or manual execution")
    options.add_common_options(p)
    options.add_request_options(p, "script")
    p.add_argument("--output", help="write the script to this file (default: standard output)")
    p.set_defaults(func=cmd_generate_sql)

    p = sub.add_parser(
        "rollback", help="put back the values a backfill replaced (cells written since by others are kept)",
        description="Undo a backfill: an unpublished run's branch is dropped; for a published one, every cell "
                    "its commits changed goes back to the value before, unless a later backfill or another "
                    "writer has written it since (those are kept and listed). Published in one step; its "
                    "staging rows become 'rolled_back'. Safe to rerun.")
    options.add_common_options(p)
    p.add_argument("--backfill-id", action="append", required=True, help="backfill id to roll back (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="list what would be restored and kept; write nothing")
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser("sessions", help="list the warm Spark sessions kept by --keep-warm runs; --stop ends idle ones")
    options.add_common_options(p)
    p.add_argument("--ray-address", help="Ray cluster address (default: RAY_ADDRESS)")
    p.add_argument("--stop", action="store_true", help="end every idle warm session now (one a run holds is left)")
    p.set_defaults(func=cmd_sessions)

    p = sub.add_parser("catalog", help="start, stop or check the embedded catalog service")
    options.add_common_options(p)
    p.add_argument("action", choices=["start", "stop", "status"])
    p.set_defaults(func=cmd_catalog)
