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

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the same names, for type checkers and IDEs
    from backfill.api import (
        BatchBackfillOrchestrator,
        IcebergBackfillProcessor,
        VerifyResult,
        cleanup_old_audits,
        create_spark_session,
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

#: Public name -> the module that defines it. This package also holds the bottom layers
#: (``errors``, ``core``, ``config``), which every other layer imports; if this module
#: imported the top layer (``api``) eagerly, importing ``backfill.errors`` from
#: ``cluster`` or ``actors`` would pull the whole stack in mid-import. So the public names
#: are resolved on first use (PEP 562), and ``import backfill.core.months`` stays cheap.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(["BatchBackfillOrchestrator", "IcebergBackfillProcessor", "VerifyResult", "cleanup_old_audits",
                     "create_spark_session", "generate_backfill_report", "generate_sql_script", "run_backfill",
                     "run_parallel_backfills", "verify_backfill"], "backfill.api"),
    **dict.fromkeys(["DEFAULT_HISTORY_COLUMNS", "Config", "HistoryColumn", "load_config"], "backfill.config"),
    **dict.fromkeys(["PartitionOutcome", "RunResult"], "backfill.core.results"),
    **dict.fromkeys(["AttemptStatus", "StagingStatus"], "backfill.core.states"),
    **dict.fromkeys(["BackfillError", "ExitCode"], "backfill.errors"),
    "CleanupResult": "backfill.ops.cleanup",
    "VerifyReport": "backfill.ops.verify",
    "PreparedRun": "backfill.prepared",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'backfill' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


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
    "VerifyResult",
    "cleanup_old_audits",
    "create_spark_session",
    "generate_backfill_report",
    "generate_sql_script",
    "load_config",
    "run_backfill",
    "run_parallel_backfills",
    "verify_backfill",
]
