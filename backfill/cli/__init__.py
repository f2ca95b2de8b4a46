"""The command line, argparse only: each module registers one group of sub-commands."""

from backfill.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
