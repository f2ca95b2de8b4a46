"""``stage``: put a CSV or Parquet file, or an Iceberg table, into the staging table without SQL."""

from __future__ import annotations

import argparse
from typing import Any

import backfill.cli.options as options
from backfill.errors import ExitCode
from backfill.ops import stage

DESCRIPTION = """\
Stage entries of one backfill id from a CSV file (.csv), a Parquet file (.parquet, .pq) or
an existing Iceberg table (--from-table). Columns: acct, backfill_month (YYYY-MM), any of
the configured value columns (a missing one is NULL: left untouched) and optionally
backfill_id, which must then equal --backfill-id; any other column is an error. CSV cells
are read as exact decimals (an empty cell is NULL); a float is taken only when it is exactly
one DECIMAL(18,2) value. Every row is checked with the rules of a run, also against rows of
the id already pending, before anything is written: a bad source writes nothing and the
error names the row (1 = first data row) and column. All rows are appended in one commit
with status 'pending' and one created_at."""


def cmd_stage(args: argparse.Namespace) -> int:
    cfg = options.config_from_args(args)
    if args.source is not None:
        # a bad file fails before any catalog service starts
        staged = stage.check_source(cfg, args.backfill_id, stage.open_file(args.source))
        _, catalog = options.catalog_from_config(cfg)
    else:
        identifier = stage.table_identifier(cfg, args.from_table)
        _, catalog = options.catalog_from_config(cfg)
        staged = stage.check_source(cfg, args.backfill_id, stage.open_table(catalog, identifier))
    result = stage.stage(catalog, cfg, staged, dry_run=args.dry_run)
    print("\n".join(result.lines()))
    return ExitCode.OK


def register(sub: Any) -> None:
    """Add ``stage``."""
    p = sub.add_parser("stage", help="stage entries from a CSV or Parquet file or an Iceberg table, checked first",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_common_options(p)
    p.add_argument("--backfill-id", required=True, help="backfill id the rows are staged under")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("source", nargs="?", metavar="SOURCE", help="a .csv, .parquet or .pq file")
    source.add_argument("--from-table", metavar="NAMESPACE.TABLE",
                        help="read the rows from this Iceberg table of the configured catalog instead")
    p.add_argument("--dry-run", action="store_true",
                   help="check everything (also against pending rows) and print what would be staged; write nothing")
    p.set_defaults(func=cmd_stage)
