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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cluster.catalog
from backfill.config import Config
from backfill.core.results import RunResult
from backfill.errors import InputError, NothingRecorded
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

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

Progress = Callable[[str], None]


class IcebergBackfillProcessor:
    """Holds a validated configuration and its catalog connection (pyiceberg, no JVM)."""

    def __init__(self, config: Config) -> None:
        self.config = config.validated()
        self.resolved_catalog = cluster.catalog.resolve_catalog(self.config.catalog)
        self.catalog: Catalog = cluster.catalog.load_pyiceberg_catalog(self.resolved_catalog)

    def prepare(self, backfill_ids: Sequence[str], backfill_month: str | None = None,
                resume_from: str | None = None) -> PreparedRun:
        """Validate and plan (no write)."""
        return prepare(self.config, self.catalog, backfill_ids, backfill_month, resume_from)

    def run(self, backfill_ids: Sequence[str], backfill_month: str | None = None,
            resume_from: str | None = None, progress: Progress | None = None) -> RunResult:
        """Validate, plan and apply on Ray partition actors."""
        with StopSignal() as stop:  # a stop while planning counts too
            prepared = self.prepare(backfill_ids, backfill_month, resume_from)
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


def run_parallel_backfills(processor: IcebergBackfillProcessor,
                           backfills: Sequence[Mapping[str, str]]) -> RunResult:
    """Several backfills in one run: their entries are consolidated so each partition is
    rewritten once, not once per backfill. Each item has ``backfill_id`` and optionally
    ``backfill_month`` (all items must agree on the month filter, or give none)."""
    if not backfills:
        raise InputError("run_parallel_backfills needs at least one backfill")
    months = {b.get("backfill_month") for b in backfills}
    if len(months) > 1:
        raise InputError(
            f"backfills restrict different months {sorted(m or '*' for m in months)}: run them "
            "without backfill_month (each id's pending rows are all applied) or separately")
    return processor.run([b["backfill_id"] for b in backfills], months.pop())


def generate_backfill_report(processor: IcebergBackfillProcessor, backfill_id: str,
                             fmt: str = "text", timeline_png: str | Path | None = None) -> str:
    """Report of a backfill from the audit table (text, markdown or json)."""
    rows = load_audit_rows(processor.catalog, processor.config, backfill_id)
    if not rows:
        raise NothingRecorded(f"no audit rows for backfill id {backfill_id!r}")
    if timeline_png is not None:
        report.timeline_png(rows, timeline_png, backfill_id)
    return report.render(report.build_report(rows, backfill_id), fmt)


def verify_backfill(processor: IcebergBackfillProcessor, backfill_id: str,
                    sample_accounts: Sequence[int] | None = None) -> VerifyReport:
    """Cell-by-cell check of a backfill (``.ok``, ``.lines()``)."""
    return _verify(processor.config, processor.catalog, [backfill_id], sample_accounts)


def cleanup_old_audits(processor: IcebergBackfillProcessor, days_to_keep: int = 90,
                       dry_run: bool = False) -> CleanupResult:
    """Delete (or count, with ``dry_run``) audit rows older than ``days_to_keep`` days."""
    return cleanup_audits(processor.catalog, processor.config, days_to_keep, dry_run=dry_run)


def generate_sql_script(processor: IcebergBackfillProcessor, backfill_id: str,
                        output_file: str | Path | None = None, backfill_month: str | None = None) -> str:
    """The reviewable Spark SQL of a backfill; written to ``output_file`` when given."""
    script = render_script(processor.prepare([backfill_id], backfill_month))
    if output_file is not None:
        Path(output_file).write_text(script)
    return script
