"""iceberg-history-backfill: late and corrected monthly values into Iceberg history arrays.

The public API is what this module exports; everything else is internal and may change.
Layers, bottom to top (imports only ever point down; ``lint-imports`` checks it):
``errors`` <- ``core`` <- ``config`` <- ``prepared`` <- ``sql`` | ``iceberg`` | ``cluster``
<- ``actors`` <- ``ops`` <- ``cli`` | ``api``. See docs/architecture.md.

Example::

    from backfill import IcebergBackfillProcessor, load_config

    processor = IcebergBackfillProcessor(load_config("backfill.toml"))
    print("\\n".join(processor.run(["bf-2024-001"]).summary_lines()))
"""

from backfill.api import (
    BatchBackfillOrchestrator,
    IcebergBackfillProcessor,
    cleanup_old_audits,
    generate_backfill_report,
    generate_sql_script,
    run_backfill,
    run_parallel_backfills,
    verify_backfill,
)
from backfill.config import DEFAULT_HISTORY_COLUMNS, Config, HistoryColumn, load_config
from backfill.core.results import PartitionOutcome, RunResult
from backfill.core.states import AttemptStatus, StagingStatus
from backfill.errors import BackfillError, ExitCode
from backfill.ops.cleanup import CleanupResult
from backfill.ops.verify import VerifyReport
from backfill.prepared import PreparedRun

__all__ = [
    "DEFAULT_HISTORY_COLUMNS",
    "AttemptStatus",
    "BackfillError",
    "BatchBackfillOrchestrator",
    "CleanupResult",
    "Config",
    "ExitCode",
    "HistoryColumn",
    "IcebergBackfillProcessor",
    "PartitionOutcome",
    "PreparedRun",
    "RunResult",
    "StagingStatus",
    "VerifyReport",
    "cleanup_old_audits",
    "generate_backfill_report",
    "generate_sql_script",
    "load_config",
    "run_backfill",
    "run_parallel_backfills",
    "verify_backfill",
]
