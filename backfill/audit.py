"""Streaming audit: one row per partition attempt, appended as soon as the attempt ends.

Only the driver writes audit rows (one writer), through pyiceberg, so ``status`` can read
live progress while a run is going on. Appends are retried on commit conflicts with
other runs' drivers, and for a few minutes while the catalog service cannot be reached:
a catalog restart in the middle of a run must not cost the record of an attempt that
already happened (the chaos test restarts it at random moments).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Sequence

from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from backfill.schema import audit_schema
from backfill.tables import to_arrow

if TYPE_CHECKING:
    from pyiceberg.table import Table

log = logging.getLogger(__name__)


#: How long an append keeps retrying before the run gives up on the catalog.
RETRY_SECONDS = 300.0


def _retryable_errors() -> tuple[type[BaseException], ...]:
    """Commit conflicts, and the catalog being unreachable (refused, reset, timed out)."""
    from pyiceberg.exceptions import CommitFailedException

    errors: tuple[type[BaseException], ...] = (CommitFailedException, ConnectionError, TimeoutError, EOFError)
    try:  # present with the hive extra; other catalogs raise the builtin errors above
        from thrift.transport.TTransport import TTransportException
    except ImportError:
        return errors
    return errors + (TTransportException,)


class AuditWriter:
    """Appends audit rows to the Iceberg audit table; safe to call after every attempt."""

    def __init__(self, table: "Table", retry_seconds: float = RETRY_SECONDS) -> None:
        self._table = table  # refreshed before each retry of a conflicting append
        self._retry_seconds = retry_seconds

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        data = to_arrow(rows, audit_schema())
        for attempt in Retrying(
            retry=retry_if_exception_type(_retryable_errors()),
            stop=stop_after_delay(self._retry_seconds),
            wait=wait_exponential(multiplier=0.2, max=5),
            before_sleep=lambda state: log.warning(
                "audit append attempt %d failed (%s); retrying", state.attempt_number,
                type(state.outcome.exception()).__name__),
            reraise=True,
        ):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    self._table = self._table.refresh()
                self._table.append(data)
