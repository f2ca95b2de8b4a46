"""A run's figures as Ray metrics, so a cluster's dashboard shows a running backfill.

Ray exports metrics of every process, the driver included, to its metrics agent
(Prometheus format, the dashboard's Grafana panels). Counters only ever grow within a
process; a gauge tells how many partitions are left. All carry the run's backfill ids
and run id as tags, so two backfills on one cluster read apart.
"""

from __future__ import annotations

from typing import Any

from backfill.core.results import PartitionOutcome
from backfill.core.states import AttemptStatus

#: Metric names, once (dashboards and alerts refer to them).
PARTITIONS_COMMITTED = "backfill_partitions_committed"
PARTITIONS_FAILED = "backfill_partitions_failed"
ATTEMPTS_RETRIED = "backfill_attempts_retried"
ROWS_WRITTEN = "backfill_rows_written"
BYTES_WRITTEN = "backfill_bytes_written"
PARTITIONS_LEFT = "backfill_partitions_left"
TAG_KEYS = ("backfill_ids", "run_id")


class RunMetrics:
    """Counters and a gauge for one run; call :meth:`record` with every attempt's outcome."""

    def __init__(self, backfill_ids: tuple[str, ...], run_id: str, total: int) -> None:
        from ray.util.metrics import Counter, Gauge  # heavy: needs a connected Ray

        self._tags = {"backfill_ids": ",".join(backfill_ids), "run_id": run_id}
        self._counters: dict[str, Any] = {
            name: Counter(name, description=text, tag_keys=TAG_KEYS) for name, text in (
                (PARTITIONS_COMMITTED, "partitions whose commit landed (or was found landed)"),
                (PARTITIONS_FAILED, "partition attempts that failed"),
                (ATTEMPTS_RETRIED, "partition attempts after the first"),
                (ROWS_WRITTEN, "history rows rewritten"),
                (BYTES_WRITTEN, "bytes of data and delete files written"),
            )}
        self._left = Gauge(PARTITIONS_LEFT, description="planned partitions not yet done", tag_keys=TAG_KEYS)
        self._remaining = total
        self._left.set(total, tags=self._tags)

    def record(self, outcome: PartitionOutcome) -> None:
        if outcome.attempt > 1:
            self._inc(ATTEMPTS_RETRIED, 1)
        if outcome.status == AttemptStatus.FAILED:
            self._inc(PARTITIONS_FAILED, 1)
            return
        if not outcome.ok:
            return
        if outcome.status != AttemptStatus.NOOP:
            self._inc(PARTITIONS_COMMITTED, 1)
        self._inc(ROWS_WRITTEN, outcome.rows_updated)
        self._inc(BYTES_WRITTEN, outcome.stats.bytes_written or 0)
        self._remaining = max(0, self._remaining - 1)
        self._left.set(self._remaining, tags=self._tags)

    def _inc(self, name: str, value: float) -> None:
        if value > 0:  # Ray counters refuse zero and negative increments
            self._counters[name].inc(value, tags=self._tags)
