"""Command line: ``iceberg-backfill`` / ``python -m backfill``.

Every command has --help and defaults that work on the embedded demo stack. Exit codes
come from the error that ended the command (:class:`backfill.errors.ExitCode`); after
6 and 7, rerun the same command to resume.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import backfill.cli.maintenance as maintenance
import backfill.cli.observe as observe
import backfill.cli.run as run
import backfill.cli.stage as stage
from backfill.errors import BackfillError, ExitCode, RunStopped

EPILOG = ("exit codes: 0 ok, 1 verify found mismatches, 2 bad option or config, 3 bad staged input, "
          "4 table problem, 5 environment (Java, jar, catalog), 6 partitions failed after retries, "
          "7 stopped by signal, 8 nothing recorded for that backfill id; after 6 and 7 the same "
          "command resumes")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iceberg-backfill",
        description="Backfill late or corrected monthly values into rolling history arrays of an "
                    "Iceberg table, one partition MERGE per Ray actor.",
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (run, observe, maintenance, stage):
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except BackfillError as exc:
        label = "stopped" if isinstance(exc, RunStopped) else "error"
        print(f"{label}: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
