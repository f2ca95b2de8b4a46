"""Streaming audit: one row per partition attempt, appended as soon as the attempt ends.

Only the driver writes audit rows (one writer), through pyiceberg, so ``status`` can read
live progress while a run is going on. Appends are retried on commit conflicts with
other runs' drivers, and for a few minutes while the catalog service cannot be reached:
a catalog restart in the middle of a run must not cost the record of an attempt that
already happened (the chaos test restarts it at random moments).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tenacity import RetryCallState, Retrying

from backfill.core.retry import RetryPolicy
from backfill.iceberg.retrying import commit_retryable_errors
from backfill.iceberg.schema import audit_schema
from backfill.iceberg.tables import to_arrow

if TYPE_CHECKING:
    from pyiceberg.table import Table

log = logging.getLogger(__name__)


class AuditWriter:
    """Appends audit rows to the Iceberg audit table; safe to call after every attempt."""

    def __init__(self, table: Table, policy: RetryPolicy | None = None) -> None:
        self._table = table  # refreshed before each retry of a conflicting append
        self._policy = policy or RetryPolicy()

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        data = to_arrow(rows, audit_schema())
        for attempt in Retrying(**self._policy.ride_out(commit_retryable_errors()), before_sleep=_log_retry):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    self._table = self._table.refresh()
                self._table.append(data)


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    log.warning("audit append attempt %d failed (%s); retrying", state.attempt_number, type(error).__name__)
