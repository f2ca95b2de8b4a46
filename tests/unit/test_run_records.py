"""What the driver records about attempts: interrupted ones and secret-free error text."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

from actors.checkpoint import InMemoryCheckpointStore
from backfill.config import CatalogConfig, Config
from backfill.core.entries import validate_rows
from backfill.core.plan import plan_run
from backfill.core.results import PartitionOutcome
from backfill.core.states import CheckpointState
from backfill.ops.run import interrupted_attempts
from backfill.prepared import PreparedRun

T0 = datetime(2026, 11, 30, tzinfo=timezone.utc)


def _prepared(run_id: str, already: dict[str, int]) -> PreparedRun:
    rows = [{"backfill_id": "bf-1", "acct": 1, "backfill_month": "2024-01", "balance": 1}]
    entries = validate_rows(rows, ["balance"])
    plan = plan_run(entries, ["2024-01", "2024-02", "2024-03"], 36, "newest", None)
    return PreparedRun(Config(), ("bf-1",), run_id, plan, None, already)


def test_attempts_left_running_by_a_dead_driver_are_reported_once_each():
    store = InMemoryCheckpointStore()
    first = _prepared("run-A", {})
    store.begin("bf-1", "run-A", [(t.partition, t.digest) for t in first.plan.tasks])
    store.mark("bf-1", "2024-03", CheckpointState.RUNNING, run_id="run-A", run_attempt=1)
    store.mark("bf-1", "2024-03", CheckpointState.COMMITTED, snapshot_id=11, run_id="run-A")
    store.mark("bf-1", "2024-02", CheckpointState.RUNNING, run_id="run-A", run_attempt=1)
    store.mark("bf-1", "2024-02", CheckpointState.FAILED, error="x", run_id="run-A")
    store.mark("bf-1", "2024-02", CheckpointState.RUNNING, run_id="run-A", run_attempt=2)   # in flight at the kill
    store.mark("bf-1", "2024-01", CheckpointState.RUNNING, run_id="run-A", run_attempt=1)   # in flight, and it landed

    resume = _prepared("run-B", {"2024-01": 77})
    lost = interrupted_attempts(store.load("bf-1"), resume)
    assert [(run, o.partition, o.attempt, o.status, o.snapshot_id) for run, o in lost] == [
        ("run-A", "2024-01", 1, "interrupted", 77), ("run-A", "2024-02", 2, "interrupted", None)]
    assert "its commit landed as snapshot 77 (found by run-B)" in lost[0][1].error
    assert "no commit of it landed" in lost[1][1].error
    assert all(o.entries == 1 for _, o in lost)

    # a run with different entries for 2024-01 cannot tell whether that attempt landed
    other = _prepared("run-B", {})
    other = dataclasses.replace(other, plan=dataclasses.replace(other.plan, tasks=tuple(
        dataclasses.replace(t, digest="changed") if t.partition == "2024-01" else t for t in other.plan.tasks)))
    (changed,) = [o for _, o in interrupted_attempts(store.load("bf-1"), other) if o.partition == "2024-01"]
    assert "entries have changed since, so whether its commit landed was not checked" in changed.error
    assert changed.snapshot_id is None and changed.entries == 0

    # once begun by run-B they are pending: a third run reports nothing again
    store.begin("bf-1", "run-B", [(t.partition, t.digest) for t in resume.plan.tasks])
    assert interrupted_attempts(store.load("bf-1"), _prepared("run-C", {})) == []


def test_own_running_attempts_are_not_interrupted():
    store = InMemoryCheckpointStore()
    prepared = _prepared("run-A", {})
    store.begin("bf-1", "run-A", [(t.partition, t.digest) for t in prepared.plan.tasks])
    store.mark("bf-1", "2024-03", CheckpointState.RUNNING, run_id="run-A", run_attempt=1)
    assert interrupted_attempts(store.load("bf-1"), prepared) == []


def test_outcome_error_text_loses_catalog_secrets():
    catalog = CatalogConfig(type="hive", properties={
        "uri": "thrift://admin:pw-9f8e@metastore:9083", "token": "tok-123456", "warehouse": "s3://w"})
    from cluster.catalog import resolve_catalog

    secrets = resolve_catalog(catalog).secrets()
    failed = PartitionOutcome(partition="2024-01", status="failed", attempt=1, entries=1, started_at=T0,
                              completed_at=T0, error="TTransportException: thrift://admin:pw-9f8e@metastore "
                                                     "refused; header Bearer tok-123456")
    clean = failed.scrubbed(secrets)
    assert clean.error == "TTransportException: thrift://admin:***@metastore refused; header Bearer ***"
    assert clean.audit_row("bf-1", "run-A")["error"] == clean.error
    ok = PartitionOutcome(partition="2024-01", status="committed", attempt=1, entries=1, started_at=T0,
                          completed_at=T0)
    assert ok.scrubbed(secrets) is ok


def test_a_stopped_run_is_not_a_success_and_says_what_is_left():
    from backfill.core.results import RunResult

    done = PartitionOutcome(partition="2024-03", status="committed", attempt=1, entries=1, started_at=T0,
                            completed_at=T0, rows_updated=2, snapshot_id=5)
    stopped = RunResult("run-A", ("bf-1",), 3, (done,), 0, 0, (), 1.0, (), ("2024-02", "2024-01"))
    assert not stopped.succeeded and stopped.failed_partitions == []
    assert "failed 0, not started 2" in stopped.summary_lines()[1]
    assert RunResult("run-A", ("bf-1",), 1, (done,), 1, 0, (), 1.0).succeeded


class _Executor:
    """Records the staging marks a run asks its executor for."""

    def __init__(self):
        self.calls = []

    def mark_staging(self, months, status, reason=None):
        self.calls.append(("mark_staging", str(status), tuple(months)))


def test_staging_is_marked_applied_only_after_every_partition_committed():
    from backfill.ops.run import mark_staging

    prepared = _prepared("run-A", {})
    everything = {t.partition for t in prepared.plan.tasks}
    pool = _Executor()
    assert mark_staging(prepared, everything - {"2024-02"}, pool) == (0, 0)
    assert pool.calls == []          # a partial run leaves every entry pending for the rerun
    assert mark_staging(prepared, everything, pool) == (1, 0)
    assert pool.calls == [("mark_staging", "applied", ("2024-01",))]
