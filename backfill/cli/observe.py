"""Commands that only read: ``status`` and ``report`` (audit table), ``estimate`` (metadata)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import backfill.cli.options as options
from backfill.errors import ExitCode, InputError, NothingRecorded
from backfill.ops.estimate import estimate, pending_backfill_ids
from backfill.ops.prepare import prepare
from backfill.ops.report import FORMATS, build_report, render, timeline_png
from backfill.ops.status import (
    entries_line,
    format_status,
    format_status_json,
    load_audit_rows,
    load_entry_counts,
    partition_states,
)


def rows_for_args(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Audit rows selected by a command's options (NothingRecorded when there are none),
    and the id's staging entries by status."""
    cfg = options.config_from_args(args)
    _, catalog = options.catalog_from_config(cfg)
    rows = load_audit_rows(catalog, cfg, args.backfill_id, args.run_id)
    if not rows:
        run = f" and run id {args.run_id!r}" if args.run_id else ""
        raise NothingRecorded(f"no audit rows for backfill id {args.backfill_id!r}{run}")
    return rows, load_entry_counts(catalog, cfg, args.backfill_id)


def cmd_status(args: argparse.Namespace) -> int:
    rows, entries = rows_for_args(args)
    states = partition_states(rows)
    if args.json:
        print(format_status_json(states, args.backfill_id, args.run_id, entries))
    else:
        print(format_status(states, args.backfill_id, args.run_id))
        if entries:  # none when there is no staging table to count
            print(entries_line(entries, args.backfill_id))
    return ExitCode.OK


def cmd_report(args: argparse.Namespace) -> int:
    rows, entries = rows_for_args(args)
    text = render(build_report(rows, args.backfill_id), args.format)
    if args.format == "text" and entries:
        text += "\n" + entries_line(entries, args.backfill_id)
    if args.output:
        Path(args.output).write_text(text + "\n")
        print(f"report written to {args.output}")
    else:
        print(text)
    if args.timeline:
        print(f"timeline written to {timeline_png(rows, args.timeline, args.backfill_id)}")
    return ExitCode.OK


def cmd_estimate(args: argparse.Namespace) -> int:
    cfg = options.config_from_args(args)
    _, catalog = options.catalog_from_config(cfg)
    ids = args.backfill_id or pending_backfill_ids(catalog, cfg, args.backfill_month)
    if not ids:
        month_note = f" for month {args.backfill_month}" if args.backfill_month else ""
        raise InputError(f"no pending staging rows{month_note}; nothing to estimate")
    prepared = prepare(cfg, catalog, ids, args.backfill_month, args.resume_from)
    est = estimate(prepared, catalog, args.max_parallel)
    print(est.to_json() if args.json else "\n".join(est.lines()))
    return ExitCode.OK


def register(sub: Any) -> None:
    """Add ``status``, ``report`` and ``estimate``."""
    nothing = f"Exit {int(NothingRecorded.exit_code)} when the id has no audit rows."
    p = sub.add_parser(
        "status", help="show per-partition progress of a backfill from the audit table",
        description="Per-partition state of a backfill, read from the audit table only "
                    f"(safe while a run is going on). {nothing}")
    options.add_common_options(p)
    options.add_id_options(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "report", help="summarise a backfill (throughput, retries, slowest partitions, timeline)",
        description="Totals, throughput, retries and slowest partitions of a backfill, read from "
                    f"the audit table only. {nothing}")
    options.add_common_options(p)
    options.add_id_options(p)
    p.add_argument("--format", choices=FORMATS, default="text", help="output format (default text)")
    p.add_argument("--output", help="write the report to this file instead of stdout")
    p.add_argument("--timeline", metavar="PNG", help="also draw a per-actor timeline to this PNG file")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "estimate", help="estimate files, bytes and time of a backfill from Iceberg metadata (no Spark)")
    options.add_common_options(p)
    p.add_argument("--backfill-id", action="append",
                   help="backfill id to estimate; repeat for several (default: every id with "
                        "pending rows, of --backfill-month if given)")
    p.add_argument("--backfill-month", help="only entries of this month (YYYY-MM)")
    p.add_argument("--resume-from", help="skip target partitions before this month (YYYY-MM)")
    p.add_argument("--max-parallel", type=int, help="partition actors at once (default 1)")
    p.add_argument("--json", action="store_true", help="print the estimate as JSON")
    p.set_defaults(func=cmd_estimate)
