"""The seed's ``backfill_batch`` module: the orchestrator and several backfills in one run."""

from __future__ import annotations

from backfill.api import BatchBackfillOrchestrator, run_parallel_backfills

__all__ = ["BatchBackfillOrchestrator", "run_parallel_backfills"]
