"""The pool's slot accounting (no Ray needed: actors are plain objects here)."""

from __future__ import annotations

from actors.pool import PartitionPool
from backfill.core.retry import RetryPolicy


def _pool(max_parallel, slots):
    made = []

    def make(n):
        made.append(f"a{n}")
        return f"a{n}", f"actor-{n}"

    return PartitionPool(make, lambda *a: None, max_parallel, RetryPolicy(), lambda o: None,
                         slots_per_actor=slots), made


def test_one_slot_per_actor_is_one_actor_per_partition():
    pool, made = _pool(3, 1)
    assert [pool.acquire() for _ in range(4)] == ["a1", "a2", "a3", None]
    pool.release("a2")
    assert pool.acquire() == "a2" and made == ["a1", "a2", "a3"]


def test_slots_share_an_actor_under_the_total_cap():
    pool, made = _pool(4, 2)
    # new actors first (spread sessions), then second slots, never more than 4 at once
    assert [pool.acquire() for _ in range(5)] == ["a1", "a2", "a1", "a2", None]
    assert made == ["a1", "a2"]
    pool.release("a1")
    assert pool.acquire() == "a1"


def test_an_idle_actor_is_reused_before_a_busy_one_gets_a_second_attempt():
    pool, made = _pool(3, 2)   # at most 2 actors
    assert [pool.acquire(), pool.acquire()] == ["a1", "a2"]
    pool.release("a1")
    assert pool.acquire() == "a1"
    assert pool.acquire() in ("a1", "a2") and made == ["a1", "a2"]
    assert pool.acquire() is None  # 3 running


def test_a_dropped_actor_frees_its_slots_and_is_replaced():
    import ray  # noqa: F401  (_drop_actor calls ray.kill; a plain object makes it raise, which is ignored)

    pool, made = _pool(2, 2)
    assert [pool.acquire(), pool.acquire()] == ["a1", "a1"]
    pool._drop_actor("a1")
    pool._drop_actor("a1")            # the second failed attempt of the same actor: no-op
    assert pool.acquire() == "a2" and made == ["a1", "a2"]
    pool.release("a1")                # a late release of the dead actor changes nothing
    assert pool.acquire() == "a2" and pool.acquire() is None


def _outcome(partition, status, attempt, transient=False):
    from datetime import datetime, timezone

    from backfill.core.results import PartitionOutcome

    now = datetime.now(timezone.utc)
    return PartitionOutcome(partition=partition, status=status, attempt=attempt, entries=1,
                            started_at=now, completed_at=now, transient=transient,
                            error=None if status != "failed" else "boom")


def _batch(*parts):
    from backfill.core.plan import MergeBatch, PartitionTask

    return MergeBatch(tuple(PartitionTask(p, (), f"{i:032x}") for i, p in enumerate(parts)))


def _run_batches(monkeypatch, batches, answer, retries=3):
    """Run the pool with Ray's wait/get replaced: ``answer(batch, attempt)`` gives outcomes."""
    import ray

    submitted, seen = [], []
    monkeypatch.setattr(ray, "wait", lambda refs, num_returns=1, timeout=None: (refs[:1], refs[1:]))
    monkeypatch.setattr(ray, "get", lambda ref: answer(*ref))

    def submit(actor, batch, attempt):
        submitted.append((batch.partitions, attempt))
        return (batch, attempt)

    pool = PartitionPool(lambda n: (f"a{n}", f"actor-{n}"), submit, 1, RetryPolicy(retries, 0.0),
                         seen.extend)
    return pool.run(batches), submitted, seen


def test_a_failed_batch_is_retried_whole_minus_the_partitions_that_are_done(monkeypatch):
    def answer(batch, attempt):
        if attempt == 1:  # the first partition's commit is found; the MERGE of the rest failed
            return [_outcome(batch.partitions[0], "already_committed", 1)] + [
                _outcome(p, "failed", 1, transient=True) for p in batch.partitions[1:]]
        return [_outcome(p, "committed", attempt) for p in batch.partitions]

    outcomes, submitted, seen = _run_batches(monkeypatch, [_batch("2024-03", "2024-02", "2024-01")], answer)
    assert submitted == [(("2024-03", "2024-02", "2024-01"), 1), (("2024-02", "2024-01"), 2)]
    assert [(o.partition, o.status, o.attempt) for o in outcomes] == [
        ("2024-03", "already_committed", 1), ("2024-02", "failed", 1), ("2024-01", "failed", 1),
        ("2024-02", "committed", 2), ("2024-01", "committed", 2)]
    assert seen == outcomes  # every partition's attempt was reported as it ended


def test_a_permanent_batch_failure_is_not_retried_and_other_batches_still_run(monkeypatch):
    def answer(batch, attempt):
        if "2024-02" in batch.partitions:
            return [_outcome(p, "failed", attempt, transient=False) for p in batch.partitions]
        return [_outcome(p, "committed", attempt) for p in batch.partitions]

    outcomes, submitted, _ = _run_batches(monkeypatch, [_batch("2024-02", "2024-01"), _batch("2023-12")], answer)
    assert submitted == [(("2024-02", "2024-01"), 1), (("2023-12",), 1)]
    assert [(o.partition, o.status) for o in outcomes] == [
        ("2024-02", "failed"), ("2024-01", "failed"), ("2023-12", "committed")]
