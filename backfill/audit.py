"""Streaming audit: one row per partition attempt, appended as soon as the attempt ends.

Only the driver writes audit rows (one writer), through pyiceberg, so ``status`` can read
live progress while a run is going on. Appends are retried on commit conflicts with
other runs' drivers.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Sequence

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from backfill.schema import audit_schema
from backfill.tables import to_arrow

if TYPE_CHECKING:
    from pyiceberg.table import Table

log = logging.getLogger(__name__)


def _commit_errors() -> tuple[type[BaseException], ...]:
    from pyiceberg.exceptions import CommitFailedException

    return (CommitFailedException,)


class AuditWriter:
    """Appends audit rows to the Iceberg audit table; safe to call after every attempt."""

    def __init__(self, table: "Table") -> None:
        self._table = table  # refreshed before each retry of a conflicting append

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        data = to_arrow(rows, audit_schema())
        for attempt in Retrying(
            retry=retry_if_exception_type(_commit_errors()),
            stop=stop_after_attempt(10),
            wait=wait_exponential(multiplier=0.2, max=5),
            reraise=True,
        ):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    self._table = self._table.refresh()
                self._table.append(data)
